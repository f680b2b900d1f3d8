/*
 * backup — the archive's writer, its reader for restores, and the [backup]
 * schedule (see backup.h for the format).
 */
#include "quarantine/backup.h"

#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <jansson.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/fault.h"
#include "common/log.h"
#include "common/workpool.h"
#include "common/xalloc.h"
#include "quarantine/metrics.h"
#include "store/store.h"

/* Longest member name, most members, largest header: far beyond what we write. */
#define BACKUP_NAME_MAX	   64
#define BACKUP_MEMBERS_MAX 64
#define BACKUP_HEADER_MAX  65536
#define BACKUP_COPY_CHUNK  (1 << 16)
/* A temporary file of ours in data_dir (never a member: hidden names are not). */
#define BACKUP_TMP_PREFIX  ".backup-"
#define RESTORE_TMP_PREFIX ".restore-"

/* One backup at a time in a process (the API's and the schedule's). */
static atomic_bool backup_running;

bool backup_member_name_ok(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > BACKUP_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		bool alnum =
		    (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
		if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
			return false;
	}
	return true;
}

/* ---- writing ---- */

struct backup_out {
	int fd;
	crypto_hash_sha256_state h;
	uint64_t n, next_report;
};

static int backup_put(struct backup_out *w, const void *p, size_t len)
{
	crypto_hash_sha256_update(&w->h, p, len);
	const unsigned char *b = p;
	size_t done = 0;
	while (done < len) {
		ssize_t k = write(w->fd, b + done, len - done);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		done += (size_t)k;
	}
	w->n += len;
	if (w->n >= w->next_report) {
		log_info("backup.progress", "bytes=%llu", (unsigned long long)w->n);
		w->next_report += BACKUP_PROGRESS_BYTES;
	}
	return 0;
}

static void be32(unsigned char *b, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		b[i] = (unsigned char)(v >> (24 - 8 * i));
}

static void be64(unsigned char *b, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char)(v >> (56 - 8 * i));
}

/* One member: the file at path under name. */
static int backup_put_file(struct backup_out *w, const char *name, const char *path, char **err)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	struct stat sb;
	if (fd < 0 || fstat(fd, &sb) < 0) {
		int rc = -errno;
		*err = xasprintf("cannot read %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return rc;
	}
	unsigned char head[1 + 2 + BACKUP_NAME_MAX + 8];
	size_t nl = strlen(name);
	head[0] = 'F';
	head[1] = (unsigned char)(nl >> 8);
	head[2] = (unsigned char)nl;
	memcpy(head + 3, name, nl);
	be64(head + 3 + nl, (uint64_t)sb.st_size);
	int rc = backup_put(w, head, 3 + nl + 8);
	unsigned char *buf = xmalloc(BACKUP_COPY_CHUNK);
	uint64_t left = (uint64_t)sb.st_size;
	while (rc == 0 && left > 0) {
		ssize_t k =
		    read(fd, buf, left < BACKUP_COPY_CHUNK ? (size_t)left : BACKUP_COPY_CHUNK);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			rc = k < 0 ? -errno : -EIO; /* shrank while read */
			break;
		}
		rc = backup_put(w, buf, (size_t)k);
		left -= (uint64_t)k;
	}
	free(buf);
	close(fd);
	if (rc < 0 && *err == NULL)
		*err = xasprintf("cannot write the archive (%s): %s", name, strerror(-rc));
	return rc;
}

/* data_dir's plain files that are members besides the database. */
static int backup_dir_filter(const struct dirent *de)
{
	return backup_member_name_ok(de->d_name) &&
	       strncmp(de->d_name, BACKUP_DB_MEMBER, strlen(BACKUP_DB_MEMBER)) != 0;
}

static int backup_stale_filter(const struct dirent *de)
{
	size_t n = strlen(de->d_name), np = strlen(BACKUP_TMP_PREFIX);
	return n > np + 3 && strncmp(de->d_name, BACKUP_TMP_PREFIX, np) == 0 &&
	       strcmp(de->d_name + n - 3, ".db") == 0;
}

static void backup_time_text(int64_t ms, char *out, size_t size, bool compact)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	char base[32];
	strftime(base, sizeof(base), compact ? "%Y%m%dT%H%M%S" : "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, size, "%s.%03dZ", base, (int)(ms % 1000));
}

static int backup_write_locked(struct store *st, const char *backend, const char *data_dir,
			       const char *manager_name, int fd, struct backup_info *info,
			       char **err)
{
	struct backup_out w = {.fd = fd, .next_report = BACKUP_PROGRESS_BYTES};
	crypto_hash_sha256_init(&w.h);
	memset(info, 0, sizeof(*info));
	info->created_at = clock_now_ms();
	snprintf(info->backend, sizeof(info->backend), "%s", backend);
	snprintf(info->version, sizeof(info->version), "%s", LAZARET_VERSION);

	/* A copy left by a backup that a crash cut short: one backup runs at a time. */
	struct dirent **stale = NULL;
	int ns = scandir(data_dir, &stale, backup_stale_filter, NULL);
	for (int i = 0; i < ns; i++) {
		char *p = xasprintf("%s/%s", data_dir, stale[i]->d_name);
		if (unlink(p) == 0)
			log_info("backup.stale_removed", "file=%s", p);
		free(p);
		free(stale[i]);
	}
	free(stale);

	/* The database first: the moment of the snapshot is the archive's. */
	unsigned char rnd[8];
	randombytes_buf(rnd, sizeof(rnd));
	char hex[17];
	sodium_bin2hex(hex, sizeof(hex), rnd, sizeof(rnd));
	char *snap = xasprintf("%s/" BACKUP_TMP_PREFIX "%s.db", data_dir, hex);
	int rc = store_snapshot(st, snap);
	if (rc == 0)
		info->database = true;
	else if (rc != -ENOSYS) {
		*err = xasprintf("cannot copy the store's database: %s", strerror(-rc));
		free(snap);
		return rc;
	}
	rc = 0;
	/* Tests: a backup that takes a while after its moment (mail goes on meanwhile). */
	if (fault_is_armed("backup_slow"))
		sleep(3);

	char created[40];
	backup_time_text(info->created_at, created, sizeof(created), false);
	json_t *h =
	    json_pack("{s:i, s:s, s:I, s:s, s:s, s:s, s:b}", "format", BACKUP_FORMAT_VERSION,
		      "backend", backend, "created_at", (json_int_t)info->created_at, "created",
		      created, "lazaret_version", LAZARET_VERSION, "manager",
		      manager_name != NULL ? manager_name : "", "database", info->database);
	char *htext = json_dumps(h, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(h);
	unsigned char head[8 + 4 + 4];
	memcpy(head, BACKUP_MAGIC, 8);
	be32(head + 8, BACKUP_FORMAT_VERSION);
	be32(head + 12, (uint32_t)strlen(htext));
	rc = backup_put(&w, head, sizeof(head));
	if (rc == 0)
		rc = backup_put(&w, htext, strlen(htext));
	free(htext);
	if (rc < 0)
		*err = xasprintf("cannot write the archive: %s", strerror(-rc));

	if (rc == 0 && info->database) {
		rc = backup_put_file(&w, BACKUP_DB_MEMBER, snap, err);
		info->files++;
	}
	if (info->database)
		unlink(snap);
	free(snap);

	struct dirent **list = NULL;
	int n = rc == 0 ? scandir(data_dir, &list, backup_dir_filter, alphasort) : 0;
	if (n < 0) {
		rc = -errno;
		*err = xasprintf("cannot list %s: %s", data_dir, strerror(errno));
		n = 0;
	}
	for (int i = 0; i < n; i++) {
		char *p = xasprintf("%s/%s", data_dir, list[i]->d_name);
		struct stat sb;
		if (rc == 0 && lstat(p, &sb) == 0 && S_ISREG(sb.st_mode)) {
			rc = backup_put_file(&w, list[i]->d_name, p, err);
			info->files++;
		}
		free(p);
		free(list[i]);
	}
	free(list);

	if (rc == 0) {
		unsigned char e = 'E', sum[crypto_hash_sha256_BYTES];
		rc = backup_put(&w, &e, 1);
		crypto_hash_sha256_final(&w.h, sum);
		if (rc == 0) {
			rc = write(fd, sum, sizeof(sum)) == (ssize_t)sizeof(sum) ? 0 : -EIO;
			w.n += sizeof(sum);
		}
		if (rc == 0 && fsync(fd) < 0 && errno != EINVAL)
			rc = -errno;
		if (rc < 0)
			*err = xasprintf("cannot write the archive: %s", strerror(-rc));
		sodium_bin2hex(info->sha256, sizeof(info->sha256), sum, sizeof(sum));
	}
	info->bytes = w.n;
	return rc;
}

int backup_write(struct store *st, const char *backend, const char *data_dir,
		 const char *manager_name, int fd, struct backup_info *info, char **err)
{
	*err = NULL;
	bool idle = false;
	if (!atomic_compare_exchange_strong(&backup_running, &idle, true)) {
		*err = xstrdup("another backup is running");
		return -EBUSY;
	}
	int64_t t0 = clock_mono_ms();
	log_info("backup.start", "backend=%s", backend);
	int rc = backup_write_locked(st, backend, data_dir, manager_name, fd, info, err);
	metrics_add(rc == 0 ? METRICS_BACKUPS : METRICS_BACKUP_FAILURES, 1);
	if (rc == 0)
		log_info("backup.done", "bytes=%llu files=%u database=%s sha256=%s ms=%lld",
			 (unsigned long long)info->bytes, info->files,
			 info->database ? "yes" : "no", info->sha256,
			 (long long)(clock_mono_ms() - t0));
	else {
		char q[256];
		log_error("backup.failed", "rc=%d error=%s", rc,
			  log_quote(q, sizeof(q), *err != NULL ? *err : "?"));
	}
	atomic_store(&backup_running, false);
	return rc;
}

/* ---- restoring ---- */

struct backup_in {
	int fd;
	crypto_hash_sha256_state h;
	uint64_t n;
};

/* Reads len bytes (hashed): len, fewer at the end of the file, or -errno. */
static ssize_t backup_get(struct backup_in *r, void *p, size_t len, bool hash)
{
	unsigned char *b = p;
	size_t done = 0;
	while (done < len) {
		ssize_t k = read(r->fd, b + done, len - done);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0)
			break;
		done += (size_t)k;
	}
	if (hash)
		crypto_hash_sha256_update(&r->h, b, done);
	r->n += done;
	return (ssize_t)done;
}

static uint64_t get_be(const unsigned char *b, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v = (v << 8) | b[i];
	return v;
}

static int restore_fail(char **err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int restore_fail(char **err, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(err, fmt, ap) < 0)
		*err = NULL;
	va_end(ap);
	return -code;
}

/* Exactly len bytes, else the failure: truncated at the end of the file. */
static int restore_need(struct backup_in *r, void *p, size_t len, const char *path, char **err)
{
	ssize_t k = backup_get(r, p, len, true);
	if (k < 0)
		return restore_fail(err, BACKUP_ERR_IO, "cannot read %s: %s", path,
				    strerror((int)-k));
	if ((size_t)k < len)
		return restore_fail(err, BACKUP_ERR_TRUNCATED,
				    "%s is truncated: it ends at byte %llu, before its checksum",
				    path, (unsigned long long)r->n);
	return 0;
}

/* True when dir holds nothing (or does not exist). */
static int restore_dir_empty(const char *dir, bool *empty)
{
	*empty = true;
	DIR *d = opendir(dir);
	if (d == NULL)
		return errno == ENOENT ? 0 : -errno;
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
			*empty = false;
			break;
		}
	closedir(d);
	return 0;
}

struct restore_members {
	char *names[BACKUP_MEMBERS_MAX];
	size_t n;
};

static int restore_member(struct backup_in *r, const char *path, const char *dir,
			  struct restore_members *m, char **err)
{
	unsigned char b[8];
	int rc = restore_need(r, b, 2, path, err);
	if (rc < 0)
		return rc;
	size_t nl = (size_t)get_be(b, 2);
	char name[BACKUP_NAME_MAX + 1];
	if (nl == 0 || nl > BACKUP_NAME_MAX)
		return restore_fail(err, BACKUP_ERR_CORRUPT,
				    "%s is corrupt: a member name of %zu bytes", path, nl);
	if ((rc = restore_need(r, name, nl, path, err)) < 0)
		return rc;
	name[nl] = '\0';
	if (memchr(name, '\0', nl) != NULL || !backup_member_name_ok(name))
		return restore_fail(err, BACKUP_ERR_CORRUPT,
				    "%s is corrupt: a member's name is not a plain file name "
				    "(refused: it could point outside data_dir)",
				    path);
	for (size_t i = 0; i < m->n; i++)
		if (strcmp(m->names[i], name) == 0)
			return restore_fail(err, BACKUP_ERR_CORRUPT,
					    "%s is corrupt: member %s twice", path, name);
	if (m->n == BACKUP_MEMBERS_MAX)
		return restore_fail(err, BACKUP_ERR_CORRUPT, "%s is corrupt: too many members",
				    path);
	if ((rc = restore_need(r, b, 8, path, err)) < 0)
		return rc;
	uint64_t left = get_be(b, 8);
	m->names[m->n++] = xstrdup(name);
	char *tmp = xasprintf("%s/" RESTORE_TMP_PREFIX "%s", dir, name);
	int out = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (out < 0) {
		rc = restore_fail(err, BACKUP_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
		free(tmp);
		return rc;
	}
	unsigned char *buf = xmalloc(BACKUP_COPY_CHUNK);
	while (rc == 0 && left > 0) {
		size_t want = left < BACKUP_COPY_CHUNK ? (size_t)left : BACKUP_COPY_CHUNK;
		if ((rc = restore_need(r, buf, want, path, err)) < 0)
			break;
		if (write(out, buf, want) != (ssize_t)want)
			rc = restore_fail(err, BACKUP_ERR_IO, "cannot write %s: %s", tmp,
					  strerror(errno));
		left -= want;
	}
	free(buf);
	if (rc == 0 && fsync(out) < 0)
		rc = restore_fail(err, BACKUP_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
	close(out);
	free(tmp);
	return rc;
}

/* Header: magic, version, JSON; checks the backend. */
static int restore_header(struct backup_in *r, const char *path, const char *backend,
			  struct backup_info *info, char **err)
{
	unsigned char head[16];
	ssize_t k = backup_get(r, head, sizeof(head), true);
	if (k < 0)
		return restore_fail(err, BACKUP_ERR_IO, "cannot read %s: %s", path,
				    strerror((int)-k));
	size_t cmp = (size_t)k < 8 ? (size_t)k : 8;
	if (k == 0 || memcmp(head, BACKUP_MAGIC, cmp) != 0)
		return restore_fail(err, BACKUP_ERR_FOREIGN,
				    "%s is not a Lazaret backup (no %s signature)", path,
				    BACKUP_MAGIC);
	if (k < (ssize_t)sizeof(head))
		return restore_fail(err, BACKUP_ERR_TRUNCATED,
				    "%s is truncated: it ends at byte %llu, before its checksum",
				    path, (unsigned long long)r->n);
	uint64_t version = get_be(head + 8, 4), hlen = get_be(head + 12, 4);
	if (version != BACKUP_FORMAT_VERSION)
		return restore_fail(err, BACKUP_ERR_MISMATCH,
				    "%s has backup format version %llu; this lazaretd reads "
				    "version %d",
				    path, (unsigned long long)version, BACKUP_FORMAT_VERSION);
	if (hlen == 0 || hlen > BACKUP_HEADER_MAX)
		return restore_fail(err, BACKUP_ERR_CORRUPT,
				    "%s is corrupt: a header of %llu bytes", path,
				    (unsigned long long)hlen);
	char *text = xmalloc((size_t)hlen);
	int rc = restore_need(r, text, (size_t)hlen, path, err);
	json_t *h = rc == 0 ? json_loadb(text, (size_t)hlen, 0, NULL) : NULL;
	free(text);
	if (rc < 0)
		return rc;
	const char *be = NULL, *ver = NULL;
	json_int_t created = 0;
	int database = 0;
	if (h == NULL ||
	    json_unpack(h, "{s:s, s:I, s:s, s:b}", "backend", &be, "created_at", &created,
			"lazaret_version", &ver, "database", &database) < 0) {
		json_decref(h);
		return restore_fail(err, BACKUP_ERR_CORRUPT,
				    "%s is corrupt: its header is unreadable", path);
	}
	snprintf(info->backend, sizeof(info->backend), "%s", be);
	snprintf(info->version, sizeof(info->version), "%s", ver);
	/* Printed on a terminal: nothing but printable ASCII from a file we do not trust. */
	for (char *c = info->version; *c != '\0'; c++)
		if (*c < 0x21 || *c > 0x7e)
			*c = '?';
	info->created_at = (int64_t)created;
	info->database = database != 0;
	json_decref(h);
	if (strcmp(info->backend, backend) != 0)
		return restore_fail(err, BACKUP_ERR_MISMATCH,
				    "%s is a backup of a %s store; this configuration uses "
				    "[store] backend = %s",
				    path, info->backend, backend);
	return 0;
}

int backup_restore(const char *path, const char *data_dir, const char *backend,
		   struct backup_info *info, char **err)
{
	*err = NULL;
	memset(info, 0, sizeof(*info));
	struct backup_in r = {.fd = -1};
	crypto_hash_sha256_init(&r.h);
	struct restore_members m = {.n = 0};
	bool empty;
	int rc = restore_dir_empty(data_dir, &empty);
	if (rc < 0)
		return restore_fail(err, BACKUP_ERR_IO, "cannot read %s: %s", data_dir,
				    strerror(-rc));
	if (!empty)
		return restore_fail(err, BACKUP_ERR_NOT_EMPTY,
				    "data_dir %s is not empty: a restore goes into an empty "
				    "data_dir only",
				    data_dir);
	r.fd = open(path, O_RDONLY | O_CLOEXEC);
	if (r.fd < 0)
		return restore_fail(err, BACKUP_ERR_IO, "cannot read %s: %s", path,
				    strerror(errno));
	if (mkdir(data_dir, 0700) < 0 && errno != EEXIST) {
		rc = restore_fail(err, BACKUP_ERR_IO, "cannot create %s: %s", data_dir,
				  strerror(errno));
		goto done;
	}
	if ((rc = restore_header(&r, path, backend, info, err)) < 0)
		goto done;
	for (;;) {
		unsigned char type;
		if ((rc = restore_need(&r, &type, 1, path, err)) < 0)
			goto done;
		if (type == 'E')
			break;
		if (type != 'F') {
			rc = restore_fail(err, BACKUP_ERR_CORRUPT,
					  "%s is corrupt: unknown content at byte %llu", path,
					  (unsigned long long)(r.n - 1));
			goto done;
		}
		if ((rc = restore_member(&r, path, data_dir, &m, err)) < 0)
			goto done;
	}
	unsigned char want[crypto_hash_sha256_BYTES], got[crypto_hash_sha256_BYTES];
	crypto_hash_sha256_final(&r.h, want);
	ssize_t k = backup_get(&r, got, sizeof(got), false);
	if (k >= 0 && (size_t)k < sizeof(got)) {
		rc = restore_fail(err, BACKUP_ERR_TRUNCATED,
				  "%s is truncated: it ends at byte %llu, before its checksum",
				  path, (unsigned long long)r.n);
		goto done;
	}
	unsigned char extra;
	if (k < 0 || sodium_memcmp(want, got, sizeof(want)) != 0 ||
	    backup_get(&r, &extra, 1, false) != 0) {
		rc = restore_fail(err, BACKUP_ERR_CORRUPT,
				  "%s is corrupt: its SHA-256 checksum does not match its content",
				  path);
		goto done;
	}
	bool has_db = false;
	for (size_t i = 0; i < m.n; i++)
		has_db = has_db || strcmp(m.names[i], BACKUP_DB_MEMBER) == 0;
	if (has_db != info->database) {
		rc = restore_fail(err, BACKUP_ERR_CORRUPT,
				  "%s is corrupt: its header and its members disagree on the "
				  "database",
				  path);
		goto done;
	}
	/* All checked: the files take their names. */
	for (size_t i = 0; i < m.n && rc == 0; i++) {
		char *tmp = xasprintf("%s/" RESTORE_TMP_PREFIX "%s", data_dir, m.names[i]);
		char *fin = xasprintf("%s/%s", data_dir, m.names[i]);
		if (rename(tmp, fin) < 0)
			rc = restore_fail(err, BACKUP_ERR_IO, "cannot rename %s: %s", tmp,
					  strerror(errno));
		free(tmp);
		free(fin);
	}
	if (rc == 0) {
		int dfd = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
		sodium_bin2hex(info->sha256, sizeof(info->sha256), got, sizeof(got));
		info->files = (unsigned)m.n;
		info->bytes = r.n;
	}
done:
	close(r.fd);
	for (size_t i = 0; i < m.n; i++) {
		if (rc < 0) {
			char *tmp = xasprintf("%s/" RESTORE_TMP_PREFIX "%s", data_dir, m.names[i]);
			unlink(tmp);
			free(tmp);
		}
		free(m.names[i]);
	}
	return rc;
}

/* ---- the schedule ---- */

struct backup_schedule {
	struct event *timer;
	struct workpool *wp;
	struct store *st;
	char *backend, *data_dir, *manager_name, *dir;
	unsigned keep;
	int64_t every_ms;
	atomic_bool busy;
};

static int backup_archive_filter(const struct dirent *de)
{
	size_t n = strlen(de->d_name), np = strlen(BACKUP_FILE_PREFIX),
	       ns = strlen(BACKUP_FILE_SUFFIX);
	return n > np + ns && strncmp(de->d_name, BACKUP_FILE_PREFIX, np) == 0 &&
	       strcmp(de->d_name + n - ns, BACKUP_FILE_SUFFIX) == 0;
}

/* Keeps the newest keep archives of dir (their names sort by time). */
static void backup_prune(const char *dir, unsigned keep)
{
	struct dirent **list = NULL;
	int n = scandir(dir, &list, backup_archive_filter, alphasort);
	for (int i = 0; i < n; i++) {
		if ((unsigned)(n - i) > keep) {
			char *p = xasprintf("%s/%s", dir, list[i]->d_name);
			if (unlink(p) == 0)
				log_info("backup.pruned", "file=%s", p);
			else
				log_warn("backup.prune_failed", "file=%s errno=%d", p, errno);
			free(p);
		}
		free(list[i]);
	}
	free(list);
}

static void backup_schedule_run(void *arg)
{
	struct backup_schedule *b = arg;
	char when[40];
	backup_time_text(clock_now_ms(), when, sizeof(when), true);
	char *name = xasprintf(BACKUP_FILE_PREFIX "%s" BACKUP_FILE_SUFFIX, when);
	char *fin = xasprintf("%s/%s", b->dir, name);
	char *tmp = xasprintf("%s/.%s.tmp", b->dir, name);
	if (mkdir(b->dir, 0700) < 0 && errno != EEXIST)
		log_error("backup.failed", "dir=%s errno=%d", b->dir, errno);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		log_error("backup.failed", "file=%s errno=%d", tmp, errno);
	} else {
		struct backup_info info;
		char *err = NULL;
		int rc =
		    backup_write(b->st, b->backend, b->data_dir, b->manager_name, fd, &info, &err);
		close(fd);
		free(err);
		if (rc == 0 && rename(tmp, fin) == 0) {
			log_info("backup.scheduled", "file=%s bytes=%llu", fin,
				 (unsigned long long)info.bytes);
			backup_prune(b->dir, b->keep);
		} else {
			unlink(tmp);
		}
	}
	free(name);
	free(fin);
	free(tmp);
	atomic_store(&b->busy, false);
}

static void backup_schedule_arm(struct backup_schedule *b, int64_t ms)
{
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
	event_add(b->timer, &tv);
}

/*
 * The first backup is due every_ms after the newest archive in dir was written:
 * a manager restarted more often than every_ms still takes its backups.
 */
static int64_t backup_schedule_first(const char *dir, int64_t every_ms)
{
	struct dirent **list = NULL;
	int n = scandir(dir, &list, backup_archive_filter, alphasort);
	int64_t newest = -1;
	for (int i = 0; i < n; i++) {
		char *p = xasprintf("%s/%s", dir, list[i]->d_name);
		struct stat sb;
		if (stat(p, &sb) == 0) {
			int64_t at =
			    (int64_t)sb.st_mtim.tv_sec * 1000 + sb.st_mtim.tv_nsec / 1000000;
			if (at > newest)
				newest = at;
		}
		free(p);
		free(list[i]);
	}
	free(list);
	if (newest < 0)
		return every_ms;
	int64_t due = newest + every_ms - clock_now_ms();
	return due < 0 ? 0 : due > every_ms ? every_ms : due;
}

static void backup_schedule_tick(evutil_socket_t fd, short what, void *arg)
{
	struct backup_schedule *b = arg;
	backup_schedule_arm(b, b->every_ms);
	bool idle = false;
	if (!atomic_compare_exchange_strong(&b->busy, &idle, true)) {
		log_warn("backup.skipped", "reason=\"the previous backup is still running\"");
		return;
	}
	workpool_submit(b->wp, backup_schedule_run, b);
}

struct backup_schedule *backup_schedule_new(struct event_base *base, struct store *st,
					    const char *backend, const char *data_dir,
					    const char *manager_name, const char *dir,
					    int64_t every_ms, unsigned keep)
{
	if (dir == NULL || dir[0] == '\0')
		return NULL;
	struct backup_schedule *b = xcalloc(1, sizeof(*b));
	b->st = st;
	b->backend = xstrdup(backend);
	b->data_dir = xstrdup(data_dir);
	b->manager_name = xstrdup(manager_name != NULL ? manager_name : "");
	b->dir = xstrdup(dir);
	b->keep = keep > 0 ? keep : 1;
	b->wp = workpool_new(1);
	b->every_ms = every_ms;
	b->timer = evtimer_new(base, backup_schedule_tick, b);
	int64_t first = backup_schedule_first(dir, every_ms);
	backup_schedule_arm(b, first);
	log_info("backup.schedule", "dir=%s every_ms=%lld keep=%u first_in_ms=%lld", dir,
		 (long long)every_ms, b->keep, (long long)first);
	return b;
}

void backup_schedule_free(struct backup_schedule *b)
{
	if (b == NULL)
		return;
	event_free(b->timer);
	workpool_free(b->wp);
	free(b->backend);
	free(b->data_dir);
	free(b->manager_name);
	free(b->dir);
	free(b);
}
