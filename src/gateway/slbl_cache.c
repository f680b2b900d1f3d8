/*
 * slbl_cache — the gateway's copy of the manager's safelists and blocklists:
 * a hash table recipient -> (safelist, blocklist) in memory, a JSON file on disk so
 * the lists apply from start-up even while the manager is down, and a sync that
 * pulls GET {api_url}/api/v1/slbl?since=VERSION with libcurl.
 *
 * Matching (slbl_cache_check), case-insensitive, on the bare envelope sender:
 *   "a@x.com"  the sender is exactly that address;
 *   "x.com"    the sender's domain is exactly x.com;
 *   ".x.com"   the sender's domain is x.com or any domain below it (a.x.com,
 *              b.a.x.com): "subdomains too" (docs/openapi.yaml).
 * The blocklist is looked at first: a sender on both lists is blocked. The null
 * sender (<>) matches nothing.
 *
 * State: `version` is the manager's change version the table reflects; `dirty`
 * says the table is newer than the file.
 *   open:   file absent -> empty, version 0; file readable -> its table and
 *           version; file unreadable as JSON -> logged, empty, version 0 (the next
 *           sync fetches everything again).
 *   sync:   fetches every page of changes after `version` (all pages or none),
 *           then applies them under the write lock (a change with two empty lists
 *           removes the recipient) and sets `version` and `dirty`; then saves.
 *           When the manager's version is below ours (its store was restored from
 *           an older backup), the sync starts again from 0 and replaces the table.
 *   save:   writes FILE.tmp, fsyncs it, renames it over FILE, fsyncs the folder;
 *           clears `dirty`. A failed save leaves `dirty` set and is retried by
 *           the next sync even when nothing changed.
 * Locks: lookups take the read lock only, and never wait on the network: the
 * fetch happens before the write lock is taken. One sync runs at a time.
 *
 * Not for: deciding what a verdict does to a message (the filter pipeline), or
 * checking entries (the manager already did).
 */
#include "gateway/slbl_cache.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/readfile.h"
#include "common/unconst.h"
#include "common/xalloc.h"

/*
 * The largest answer of one sync page we read: 1000 recipients with 500 entries
 * each in both lists is about 30 MiB of JSON; more than that is not a manager
 * talking. The same bound applies to the saved file.
 */
#define SLBL_CACHE_MAX_DOCUMENT (128u * 1024 * 1024)
/* Pages of changes in one sync; the manager sends up to 10000 recipients a page. */
#define SLBL_CACHE_MAX_PAGES 10000
/* Buckets of a new table; it doubles when it holds more recipients than buckets. */
#define SLBL_CACHE_INITIAL_BUCKETS 64
/* The saved file's format, so that a later one can be told apart. */
#define SLBL_CACHE_FILE_FORMAT 1

enum { SLBL_LIST_SAFE = 0, SLBL_LIST_BLOCK = 1 };
static const char *const slbl_cache_list_names[2] = {"safelist", "blocklist"};

struct slbl_rcpt {
	char *recipient;
	char **lists[2];
	size_t nlists[2];
	struct slbl_rcpt *next; /* bucket chain */
};

struct slbl_table {
	struct slbl_rcpt **buckets;
	size_t nbuckets;
	size_t count;
};

struct slbl_cache {
	char *path;
	pthread_rwlock_t lock; /* table, version */
	struct slbl_table table;
	int64_t version;
	pthread_mutex_t sync_lock; /* one sync (and save) at a time; guards dirty */
	bool dirty;
};

/* ---- strings ---- */

static void slbl_lower(char *s)
{
	for (; *s != '\0'; s++) {
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
	}
}

static uint64_t slbl_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

/* ---- the table ---- */

static void slbl_rcpt_free(struct slbl_rcpt *r)
{
	if (r == NULL)
		return;
	for (size_t k = 0; k < 2; k++) {
		for (size_t i = 0; i < r->nlists[k]; i++)
			free(r->lists[k][i]);
		free(r->lists[k]);
	}
	free(r->recipient);
	free(r);
}

static void slbl_table_clear(struct slbl_table *t)
{
	for (size_t b = 0; b < t->nbuckets; b++) {
		struct slbl_rcpt *r = t->buckets[b];
		while (r != NULL) {
			struct slbl_rcpt *next = r->next;
			slbl_rcpt_free(r);
			r = next;
		}
	}
	free(t->buckets);
	memset(t, 0, sizeof(*t));
}

static struct slbl_rcpt *slbl_table_find(const struct slbl_table *t, const char *rcpt)
{
	if (t->nbuckets == 0)
		return NULL;
	for (struct slbl_rcpt *r = t->buckets[slbl_hash(rcpt) % t->nbuckets]; r != NULL;
	     r = r->next) {
		if (strcmp(r->recipient, rcpt) == 0)
			return r;
	}
	return NULL;
}

/* Unlinks and frees the entry of rcpt, if any. */
static void slbl_table_remove(struct slbl_table *t, const char *rcpt)
{
	if (t->nbuckets == 0)
		return;
	struct slbl_rcpt **pp = &t->buckets[slbl_hash(rcpt) % t->nbuckets];
	for (; *pp != NULL; pp = &(*pp)->next) {
		if (strcmp((*pp)->recipient, rcpt) == 0) {
			struct slbl_rcpt *r = *pp;
			*pp = r->next;
			slbl_rcpt_free(r);
			t->count--;
			return;
		}
	}
}

static void slbl_table_grow(struct slbl_table *t)
{
	size_t n = t->nbuckets != 0 ? t->nbuckets * 2 : SLBL_CACHE_INITIAL_BUCKETS;
	struct slbl_rcpt **b = xcalloc(n, sizeof(*b));
	for (size_t i = 0; i < t->nbuckets; i++) {
		struct slbl_rcpt *r = t->buckets[i];
		while (r != NULL) {
			struct slbl_rcpt *next = r->next;
			size_t h = slbl_hash(r->recipient) % n;
			r->next = b[h];
			b[h] = r;
			r = next;
		}
	}
	free(t->buckets);
	t->buckets = b;
	t->nbuckets = n;
}

/* Takes r, replacing the entry of the same recipient; an empty r only removes. */
static void slbl_table_put(struct slbl_table *t, struct slbl_rcpt *r)
{
	slbl_table_remove(t, r->recipient);
	if (r->nlists[SLBL_LIST_SAFE] == 0 && r->nlists[SLBL_LIST_BLOCK] == 0) {
		slbl_rcpt_free(r);
		return;
	}
	if (t->count + 1 > t->nbuckets)
		slbl_table_grow(t);
	size_t h = slbl_hash(r->recipient) % t->nbuckets;
	r->next = t->buckets[h];
	t->buckets[h] = r;
	t->count++;
}

/* ---- JSON of one recipient ---- */

/*
 * A recipient from obj's "safelist"/"blocklist" arrays (both required, strings
 * only). NULL when malformed.
 */
static struct slbl_rcpt *slbl_rcpt_from_json(const char *recipient, const json_t *obj)
{
	if (recipient == NULL || *recipient == '\0' || !json_is_object(obj))
		return NULL;
	struct slbl_rcpt *r = xcalloc(1, sizeof(*r));
	r->recipient = xstrdup(recipient);
	slbl_lower(r->recipient);
	for (size_t k = 0; k < 2; k++) {
		const json_t *arr = json_object_get(obj, slbl_cache_list_names[k]);
		if (!json_is_array(arr))
			goto bad;
		size_t n = json_array_size(arr);
		r->lists[k] = n > 0 ? xcalloc(n, sizeof(char *)) : NULL;
		for (size_t i = 0; i < n; i++) {
			const char *s = json_string_value(json_array_get(arr, i));
			if (s == NULL || *s == '\0')
				goto bad;
			r->lists[k][i] = xstrdup(s);
			slbl_lower(r->lists[k][i]);
			r->nlists[k]++;
		}
	}
	return r;
bad:
	slbl_rcpt_free(r);
	return NULL;
}

/* ---- the file ---- */

/* The table of a saved document into t, its version into *version. -EINVAL when malformed. */
static int slbl_table_from_document(const json_t *doc, struct slbl_table *t, int64_t *version)
{
	const json_t *v = json_object_get(doc, "version");
	const json_t *rcpts = json_object_get(doc, "recipients");
	if (!json_is_integer(v) || json_integer_value(v) < 0 || !json_is_object(rcpts) ||
	    json_integer_value(json_object_get(doc, "format")) != SLBL_CACHE_FILE_FORMAT)
		return -EINVAL;
	const char *key;
	const json_t *val;
	json_object_foreach(unconst(rcpts), key, val) /* jansson has no const iterator */
	{
		struct slbl_rcpt *r = slbl_rcpt_from_json(key, val);
		if (r == NULL) {
			slbl_table_clear(t);
			return -EINVAL;
		}
		slbl_table_put(t, r);
	}
	*version = json_integer_value(v);
	return 0;
}

static int slbl_load(struct slbl_cache *c)
{
	char *text = NULL;
	size_t len = 0;
	int rc = read_file(c->path, SLBL_CACHE_MAX_DOCUMENT, &text, &len);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0 && rc != -EFBIG) {
		log_error("slbl_cache.load_failed", "path=%s error=%s", c->path, strerror(-rc));
		return rc;
	}
	json_error_t jerr;
	json_t *doc = rc == 0 ? json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
	free(text);
	struct slbl_table t = {NULL, 0, 0};
	int64_t version = 0;
	if (doc == NULL || slbl_table_from_document(doc, &t, &version) < 0) {
		/* Not fatal: an empty cache at version 0 is refilled by the next sync. */
		log_error("slbl_cache.file_unusable", "path=%s action=start_empty", c->path);
		json_decref(doc);
		return 0;
	}
	json_decref(doc);
	c->table = t;
	c->version = version;
	log_info("slbl_cache.loaded", "path=%s recipients=%zu version=%lld", c->path, t.count,
		 (long long)version);
	return 0;
}

/* The table as a saved document (taken under the read lock). The caller frees. */
static char *slbl_document(struct slbl_cache *c)
{
	json_t *rcpts = json_object();
	pthread_rwlock_rdlock(&c->lock);
	for (size_t b = 0; b < c->table.nbuckets; b++) {
		for (struct slbl_rcpt *r = c->table.buckets[b]; r != NULL; r = r->next) {
			json_t *o = json_object();
			for (size_t k = 0; k < 2; k++) {
				json_t *arr = json_array();
				for (size_t i = 0; i < r->nlists[k]; i++)
					json_array_append_new(arr, json_string(r->lists[k][i]));
				json_object_set_new(o, slbl_cache_list_names[k], arr);
			}
			json_object_set_new(rcpts, r->recipient, o);
		}
	}
	json_t *doc = json_pack("{s:i,s:I,s:o}", "format", SLBL_CACHE_FILE_FORMAT, "version",
				(json_int_t)c->version, "recipients", rcpts);
	pthread_rwlock_unlock(&c->lock);
	char *text = doc != NULL ? json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(doc);
	if (text == NULL)
		panic("slbl_cache: cannot build the saved document");
	return text;
}

/* Saves when the table is newer than the file. Called with sync_lock held. */
static int slbl_save_if_dirty(struct slbl_cache *c)
{
	if (!c->dirty)
		return 0;
	char *text = slbl_document(c);
	int rc = write_file_atomic(c->path, text, strlen(text));
	free(text);
	if (rc < 0) {
		log_error("slbl_cache.save_failed", "path=%s error=%s", c->path, strerror(-rc));
		return rc;
	}
	c->dirty = false;
	return 0;
}

/* ---- open / check ---- */

static pthread_once_t slbl_curl_once = PTHREAD_ONCE_INIT;

static void slbl_curl_init(void)
{
	/* Not thread-safe in libcurl, hence once, before any sync can run. */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		panic("slbl_cache: libcurl does not initialise");
}

int slbl_cache_open(const char *path, struct slbl_cache **out)
{
	if (path == NULL || *path == '\0')
		return -EINVAL;
	pthread_once(&slbl_curl_once, slbl_curl_init);
	struct slbl_cache *c = xcalloc(1, sizeof(*c));
	c->path = xstrdup(path);
	pthread_rwlock_init(&c->lock, NULL);
	pthread_mutex_init(&c->sync_lock, NULL);
	int rc = slbl_load(c);
	if (rc < 0) {
		slbl_cache_free(c);
		return rc;
	}
	*out = c;
	return 0;
}

void slbl_cache_free(struct slbl_cache *c)
{
	if (c == NULL)
		return;
	slbl_table_clear(&c->table);
	pthread_rwlock_destroy(&c->lock);
	pthread_mutex_destroy(&c->sync_lock);
	free(c->path);
	free(c);
}

/* Does entry (lower-case) match the sender (lower-case) whose domain is domain? */
static bool slbl_match(const char *entry, const char *sender, const char *domain)
{
	if (strchr(entry, '@') != NULL)
		return strcmp(entry, sender) == 0;
	if (entry[0] == '.') {
		size_t dl = strlen(domain), el = strlen(entry);
		if (strcmp(domain, entry + 1) == 0)
			return true;
		return dl > el && strcmp(domain + dl - el, entry) == 0;
	}
	return strcmp(domain, entry) == 0;
}

enum slbl_verdict slbl_cache_check(struct slbl_cache *c, const char *rcpt, const char *sender)
{
	if (c == NULL || rcpt == NULL || sender == NULL || *sender == '\0' || *rcpt == '\0')
		return SLBL_NONE;
	char *r = xstrdup(rcpt), *s = xstrdup(sender);
	slbl_lower(r);
	slbl_lower(s);
	const char *at = strrchr(s, '@');
	const char *domain = at != NULL ? at + 1 : "";
	enum slbl_verdict v = SLBL_NONE;
	pthread_rwlock_rdlock(&c->lock);
	const struct slbl_rcpt *e = slbl_table_find(&c->table, r);
	if (e != NULL) {
		for (size_t i = 0; i < e->nlists[SLBL_LIST_BLOCK] && v == SLBL_NONE; i++) {
			if (slbl_match(e->lists[SLBL_LIST_BLOCK][i], s, domain))
				v = SLBL_BLOCK;
		}
		for (size_t i = 0; i < e->nlists[SLBL_LIST_SAFE] && v == SLBL_NONE; i++) {
			if (slbl_match(e->lists[SLBL_LIST_SAFE][i], s, domain))
				v = SLBL_SAFE;
		}
	}
	pthread_rwlock_unlock(&c->lock);
	free(r);
	free(s);
	return v;
}

int64_t slbl_cache_version(struct slbl_cache *c)
{
	pthread_rwlock_rdlock(&c->lock);
	int64_t v = c->version;
	pthread_rwlock_unlock(&c->lock);
	return v;
}

/* ---- sync ---- */

struct slbl_body {
	char *p;
	size_t len;
	bool too_big;
};

static size_t slbl_curl_write(char *data, size_t size, size_t nmemb, void *arg)
{
	struct slbl_body *b = arg;
	size_t n = size * nmemb;
	if (b->len + n > SLBL_CACHE_MAX_DOCUMENT) {
		b->too_big = true;
		return 0; /* makes curl stop with CURLE_WRITE_ERROR */
	}
	b->p = xrealloc(b->p, b->len + n + 1);
	memcpy(b->p + b->len, data, n);
	b->len += n;
	b->p[b->len] = '\0';
	return n;
}

/* GET url with the Bearer token; *body is the 200 answer. -ETIMEDOUT, -EIO, -EPROTO. */
static int slbl_fetch(const char *url, const char *token, const char *ca_file, int64_t timeout_ms,
		      struct slbl_body *body)
{
	CURL *h = curl_easy_init();
	if (h == NULL)
		return -ENOMEM;
	char *auth = xasprintf("Authorization: Bearer %s", token != NULL ? token : "");
	struct curl_slist *hdrs = curl_slist_append(NULL, auth);
	hdrs = curl_slist_append(hdrs, "Accept: application/json");
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, slbl_curl_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, body);
	/* https: the peer and its name are always verified; ca_file replaces the system's store. */
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	if (ca_file != NULL)
		curl_easy_setopt(h, CURLOPT_CAINFO, ca_file);
	CURLcode cc = curl_easy_perform(h);
	long status = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	int rc = 0;
	char q[256];
	if (cc != CURLE_OK) {
		rc = cc == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT : body->too_big ? -EFBIG : -EIO;
		log_warn("slbl_cache.fetch_failed", "url=%s error=%s", url,
			 log_quote(q, sizeof(q), curl_easy_strerror(cc)));
	} else if (status != 200) {
		rc = status == 401 || status == 403 ? -EACCES : -EPROTO;
		log_warn("slbl_cache.fetch_failed", "url=%s status=%ld", url, status);
	}
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(h);
	free(auth);
	return rc;
}

/* The changes of one page, in order. */
struct slbl_page {
	struct slbl_rcpt **changes;
	size_t n;
	int64_t version;
	bool more;
};

static void slbl_changes_free(struct slbl_rcpt **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		slbl_rcpt_free(v[i]);
	free(v);
}

/* Parses one answer of GET /api/v1/slbl; appends its changes to *all. -EPROTO when malformed. */
static int slbl_parse_page(const struct slbl_body *b, struct slbl_page *pg, struct slbl_rcpt ***all,
			   size_t *nall)
{
	json_error_t jerr;
	json_t *doc = b->p != NULL ? json_loadb(b->p, b->len, 0, &jerr) : NULL;
	const json_t *v = json_object_get(doc, "version");
	const json_t *ch = json_object_get(doc, "changes");
	const json_t *more = json_object_get(doc, "more");
	int rc = -EPROTO;
	if (!json_is_integer(v) || json_integer_value(v) < 0 || !json_is_array(ch) ||
	    (more != NULL && !json_is_boolean(more)))
		goto done;
	size_t base = *nall;
	for (size_t i = 0; i < json_array_size(ch); i++) {
		const json_t *o = json_array_get(ch, i);
		struct slbl_rcpt *r =
		    slbl_rcpt_from_json(json_string_value(json_object_get(o, "recipient")), o);
		if (r == NULL) {
			for (size_t j = base; j < *nall; j++)
				slbl_rcpt_free((*all)[j]);
			*nall = base;
			goto done;
		}
		*all = xreallocarray(*all, *nall + 1, sizeof(**all));
		(*all)[(*nall)++] = r;
	}
	pg->version = json_integer_value(v);
	pg->more = json_is_true(more);
	rc = 0;
done:
	if (rc < 0)
		log_warn("slbl_cache.bad_answer", "what=%s", doc == NULL ? "not_json" : "shape");
	json_decref(doc);
	return rc;
}

int slbl_cache_sync(struct slbl_cache *c, const char *api_url, const char *token,
		    int64_t timeout_ms)
{
	return slbl_cache_sync_ca(c, api_url, token, NULL, timeout_ms);
}

int slbl_cache_sync_ca(struct slbl_cache *c, const char *api_url, const char *token,
		       const char *ca_file, int64_t timeout_ms)
{
	if (c == NULL || api_url == NULL || timeout_ms <= 0)
		return -EINVAL;
	pthread_mutex_lock(&c->sync_lock);
	int64_t deadline = clock_mono_ms() + timeout_ms;
	size_t ul = strlen(api_url);
	while (ul > 0 && api_url[ul - 1] == '/')
		ul--;
	int64_t start = slbl_cache_version(c), since = start;
	bool replace = false;
	struct slbl_rcpt **all = NULL;
	size_t nall = 0;
	int rc = 0;
	for (unsigned page = 0;; page++) {
		int64_t left = deadline - clock_mono_ms();
		if (left <= 0 || page >= SLBL_CACHE_MAX_PAGES) {
			rc = left <= 0 ? -ETIMEDOUT : -EPROTO;
			goto fail;
		}
		char *url =
		    xasprintf("%.*s/api/v1/slbl?since=%lld", (int)ul, api_url, (long long)since);
		struct slbl_body body = {NULL, 0, false};
		rc = slbl_fetch(url, token, ca_file, left, &body);
		struct slbl_page pg = {NULL, 0, 0, false};
		if (rc == 0)
			rc = slbl_parse_page(&body, &pg, &all, &nall);
		free(body.p);
		free(url);
		if (rc < 0)
			goto fail;
		if (pg.version < since) {
			if (replace) {
				rc = -EPROTO; /* going backwards while starting over */
				goto fail;
			}
			/* The manager has forgotten changes we have: start over from 0. */
			log_warn("slbl_cache.manager_behind", "ours=%lld manager=%lld",
				 (long long)since, (long long)pg.version);
			slbl_changes_free(all, nall);
			all = NULL;
			nall = 0;
			replace = true;
			since = 0;
			continue;
		}
		since = pg.version;
		if (!pg.more)
			break;
	}

	pthread_rwlock_wrlock(&c->lock);
	if (replace)
		slbl_table_clear(&c->table);
	for (size_t i = 0; i < nall; i++) {
		slbl_table_put(&c->table, all[i]);
		all[i] = NULL;
	}
	bool changed = replace || nall > 0 || c->version != since;
	c->version = since;
	size_t count = c->table.count;
	pthread_rwlock_unlock(&c->lock);
	if (changed) {
		c->dirty = true;
		log_info("slbl_cache.synced", "changes=%zu recipients=%zu version=%lld from=%lld",
			 nall, count, (long long)since, (long long)start);
	}
	rc = slbl_save_if_dirty(c);
fail:
	slbl_changes_free(all, nall);
	pthread_mutex_unlock(&c->sync_lock);
	return rc;
}
