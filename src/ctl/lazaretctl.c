/*
 * lazaretctl — the administrator's command line over the manager's REST API
 * (docs/openapi.yaml). Each command is one or a few HTTP requests with the
 * admin Bearer token; answers are printed as readable tables, or as the server's
 * JSON with --json. Subjects and addresses come from hostile mail: control
 * characters are never written to the terminal, and columns are aligned by display
 * width (East Asian wide characters take two cells).
 *
 * Not for: talking to the store directly, or to gateways. It keeps no state
 * between runs; the server is the only authority.
 *
 * Exit status: 0 success, 1 the API or the network failed (the server's error
 * message is printed), 2 the command line is wrong (usage is printed).
 */
#include <curl/curl.h>
#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <locale.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>
#include <wchar.h>

#include "common/strbuf.h"

#define CTL_EXIT_OK    0
#define CTL_EXIT_API   1
#define CTL_EXIT_USAGE 2

/* Defaults and limits of the client, each with its reason. */
#define CTL_DEFAULT_URL		  "http://127.0.0.1:8080"
#define CTL_DEFAULT_TIMEOUT_S	  60L /* a bulk release over a large filter takes a while */
#define CTL_CONNECT_TIMEOUT_S	  10L /* the manager is near; a dead one should fail fast */
#define CTL_MAX_RESPONSE	  (256UL * 1024 * 1024) /* above the largest raw message */
#define CTL_MAX_RCPTS		  1000	 /* the manager's own per-message recipient limit */
#define CTL_MAX_POSITIONAL	  64	 /* gateway mapping NAME and its pairs */
#define CTL_MAX_PAGES		  100000 /* --all stops here even if the server loops */
#define CTL_SUBJECT_MIN_WIDTH	  20
#define CTL_SUBJECT_DEFAULT_WIDTH 60 /* when stdout is not a terminal */
#define CTL_SENDER_MAX_WIDTH	  32
#define CTL_RCPTS_MAX_WIDTH	  48

struct ctl {
	const char *url; /* without trailing '/' (copied into url_buf) */
	char *url_buf;
	const char *token;
	const char *cacert; /* PEM CA file for an https URL, or NULL: the system's store */
	long timeout_s;
	bool timeout_given; /* --timeout: else a backup has no overall limit */
	CURL *curl;
};

/* ---- allocation: the CLI cannot continue without memory ---- */

static void *ctl_xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (q == NULL) {
		fprintf(stderr, "lazaretctl: out of memory\n");
		exit(CTL_EXIT_API);
	}
	return q;
}

static char *ctl_xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	return memcpy(ctl_xrealloc(NULL, n), s, n);
}

static char *ctl_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *ctl_xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	va_start(ap, fmt);
	int r = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (r < 0) {
		fprintf(stderr, "lazaretctl: out of memory\n");
		exit(CTL_EXIT_API);
	}
	return s;
}

/* ---- usage ---- */

struct command_help {
	const char *name;
	const char *synopsis;
	const char *text;
};

static const char filter_flags_help[] =
    "  --quarantine NAME   only this quarantine\n"
    "  --recipient ADDR    envelope recipient (exact, case-insensitive)\n"
    "  --sender ADDR|DOM   envelope sender or From: address, or their domain\n"
    "  --subject TEXT      decoded subject contains TEXT (case-insensitive)\n"
    "  --since TIME        received at or after TIME (RFC 3339, or an age: 30m 24h 7d)\n"
    "  --until TIME        received before TIME (same forms)\n"
    "  --verdict V         spam | suspect | ...\n"
    "  --gateway NAME      reported by this gateway\n"
    "  --state STATE       with a recipient in STATE (quarantined, releasing,\n"
    "                      released, deleted, expired, failed)\n";

static const struct command_help command_helps[] = {
    {"quarantines", "quarantines [--json]",
     "Lists the quarantines with how many messages and bytes they hold.\n"},
    {"search", "search [FILTERS] [--limit N] [--cursor C | --all] [--wide] [--json]",
     "Lists quarantined messages, newest first, as a table: id, received time,\n"
     "sender, recipients with their state, score and subject.\n"
     "  --limit N           messages per page (1..1000, server default 50)\n"
     "  --cursor C          continue after a previous page\n"
     "  --all               follow the pages to the end\n"
     "  --wide              do not shorten subjects\n"
     "  --json              print the server's JSON instead of a table\n"},
    {"show", "show ID [--json]",
     "Shows one message: its envelope, state per recipient, headers and attachments.\n"},
    {"raw", "raw ID", "Writes the original message bytes to standard output.\n"},
    {"release",
     "release ID [--rcpt ADDR]... | release ID --quarantine NAME [--no-rescan] |\n"
     "       release --filter FILTERS [--no-rescan] [--json]",
     "Releases a message to all recipients still quarantined, or only to the\n"
     "given ones. With --filter, releases every message matching the filters\n"
     "(at least one filter is required) and prints how many recipients changed.\n"
     "A policy, virus or outbreak message is released out of one quarantine:\n"
     "--quarantine NAME (with --filter, the filter's --quarantine); with --filter\n"
     "it prints how many messages left that quarantine and how many of them were\n"
     "queued for delivery (the others are still held in another quarantine).\n"
     "  --no-rescan         admins only: the gateway does not rescan the released\n"
     "                      Outbreak message, so it is delivered even when an\n"
     "                      outbreak rule still matches it\n"},
    {"delete",
     "delete ID [--rcpt ADDR]... | delete ID --quarantine NAME |\n"
     "       delete --filter FILTERS [--json]",
     "Deletes a message for all recipients still quarantined, or only for the\n"
     "given ones. With --filter, deletes every message matching the filters\n"
     "(at least one filter is required) and prints how many recipients changed.\n"
     "A policy, virus or outbreak message is deleted from one quarantine:\n"
     "--quarantine NAME (with --filter, the filter's --quarantine; it prints how\n"
     "many messages left that quarantine).\n"},
    {"health", "health", "Checks that the manager answers /healthz.\n"},
    {"user",
     "user add NAME --role ROLE [--address ADDR]... --password-stdin | user list [--json] |\n"
     "       user delete NAME | user totp-reset NAME",
     "Manages accounts for the web console. add creates NAME with ROLE (admin,\n"
     "operator or enduser) and the password read from the first line of standard\n"
     "input (at least 8 characters); --address gives an end user's mail addresses,\n"
     "the first being the primary one. list shows the accounts; delete removes one\n"
     "and ends its sessions. totp-reset removes an account's second factor (TOTP)\n"
     "and recovery codes, for a user who lost both.\n"
     "  --role ROLE         admin | operator | enduser\n"
     "  --address ADDR      a mail address of the account (repeatable)\n"
     "  --password-stdin    read the password from standard input\n"},
    {"gateway",
     "gateway add NAME --address IP [--group G] [--cluster C] [--release-port N] [--json] |\n"
     "       gateway list [--json] | gateway remove NAME |\n"
     "       gateway mapping NAME [--automatic | LOCAL=CENTRAL | LOCAL= ...] [--json]",
     "Manages the manager's gateway registry. add registers NAME, sending from IP,\n"
     "and prints its token once: the manager keeps only a hash of it. Put it in the\n"
     "gateway's lazaret-gw.conf as [manager] api_token; it opens only the gateway's\n"
     "own API (its hello and the safelist sync). list shows registered gateways and\n"
     "pending ones (they said hello without a token) and each one's migration to\n"
     "centralized PVO quarantines; remove forgets either. mapping shows how NAME's\n"
     "local quarantines map to central ones when it migrates, or sets it: each\n"
     "LOCAL=CENTRAL moves LOCAL into CENTRAL, LOCAL= leaves it out (its messages are\n"
     "deleted on the gateway); the pairs given replace the whole mapping.\n"
     "--automatic maps every quarantine to the same name.\n"
     "  --address IP        the address the gateway sends from (IPv4 or IPv6)\n"
     "  --group G           its group\n"
     "  --cluster C         its cluster\n"
     "  --release-port N    where it takes released mail (default 25)\n"
     "  --automatic         mapping: the same names (no pairs)\n"},
    {"track",
     "track [FILTERS] [--subject-op OP] [--message-id ID] [--client-ip IP]\n"
     "       [--attachment NAME] [--event E,..] [--limit N] [--cursor C | --all] [--json] |\n"
     "       track show ID [--json]",
     "Message tracking over every gateway with [tracking] mode = central. Without\n"
     "show, lists the tracked messages the filters match, newest first (--since,\n"
     "--until, --sender, --recipient, --subject, --gateway as for search); show ID\n"
     "prints one message and the timeline of its events, with those of the same mail\n"
     "relayed by other gateways.\n"
     "  --subject-op OP     contains (default) | begins | is\n"
     "  --message-id ID     the Message-ID header\n"
     "  --client-ip IP      the SMTP client's address\n"
     "  --attachment NAME   an attachment's file name\n"
     "  --event E,..        spam suspect virus delivered hard_bounce soft_bounce\n"
     "                      quarantined outbreak dlp (any of them)\n"},
    {"backup", "backup FILE",
     "Saves a backup of the whole manager into FILE (a new file, mode 0600: it holds\n"
     "the store's secrets), taken while the manager keeps receiving mail: on SQLite\n"
     "the store's database with every message and state, and data_dir's files; on\n"
     "PostgreSQL data_dir's files only (back up the database with pg_dump or\n"
     "pgBackRest; see docs/OPERATIONS.md). Progress goes to a terminal's stderr; the\n"
     "file's checksum is verified before it is kept. lazaretd --restore FILE makes a\n"
     "replacement manager from it. --timeout, if given, bounds the whole transfer.\n"},
    {"help", "help [COMMAND]", "Shows help for COMMAND.\n"},
};

static const struct command_help *command_help_find(const char *name)
{
	for (size_t i = 0; i < sizeof(command_helps) / sizeof(command_helps[0]); i++)
		if (strcmp(command_helps[i].name, name) == 0)
			return &command_helps[i];
	return NULL;
}

static void print_usage(FILE *f)
{
	fprintf(f, "usage: lazaretctl [--url URL] [--token TOKEN] [--cacert FILE] "
		   "[--timeout SECONDS] COMMAND [ARGS]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(command_helps) / sizeof(command_helps[0]); i++)
		fprintf(f, "  %s\n", command_helps[i].synopsis);
	fprintf(f, "\nThe URL and token also come from LAZARET_URL and LAZARET_TOKEN\n"
		   "(default URL " CTL_DEFAULT_URL "). For an https URL, --cacert FILE (or\n"
		   "LAZARET_CACERT) is the PEM CA file the manager's certificate must chain\n"
		   "to; without it, the system's CA store.\n"
		   "\"lazaretctl help COMMAND\" for details.\n"
		   "Exit status: 0 ok, 1 API or network error, 2 usage error.\n");
}

static void print_command_help(FILE *f, const struct command_help *h)
{
	fprintf(f, "usage: lazaretctl %s\n\n%s", h->synopsis, h->text);
	if (strcmp(h->name, "search") == 0 || strcmp(h->name, "release") == 0 ||
	    strcmp(h->name, "delete") == 0)
		fprintf(f, "\nfilters:\n%s", filter_flags_help);
}

/* Prints a usage error and the command's usage to stderr; returns the usage exit code. */
static int usage_error(const char *command, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int usage_error(const char *command, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "lazaretctl: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	const struct command_help *h = command ? command_help_find(command) : NULL;
	if (h != NULL)
		print_command_help(stderr, h);
	else
		print_usage(stderr);
	return CTL_EXIT_USAGE;
}

/* ---- HTTP ---- */

/* A response body as it arrives, bounded by CTL_MAX_RESPONSE. */
struct response_sink {
	struct strbuf *body;
	bool too_large;
};

static size_t write_to_buf(char *p, size_t size, size_t nmemb, void *userdata)
{
	struct response_sink *sink = userdata;
	size_t n = size * nmemb;
	if (sink->body->len + n > CTL_MAX_RESPONSE) {
		sink->too_large = true;
		return 0; /* makes curl stop with CURLE_WRITE_ERROR */
	}
	strbuf_add(sink->body, p, n);
	return n;
}

/*
 * Sends one request to base URL + path (path already percent-encoded). body NULL:
 * no body; otherwise it is sent as application/json. The response body goes to
 * *resp (caller frees with strbuf_free), the status to *status. Returns 0 when an
 * HTTP answer came back (of any status), -EIO after printing why when not.
 */
static int http_request(struct ctl *c, const char *method, const char *path, const char *body,
			struct strbuf *resp, long *status)
{
	struct curl_slist *hdrs = NULL;
	char *url = ctl_xasprintf("%s%s", c->url, path);
	char *auth = NULL;
	char errbuf[CURL_ERROR_SIZE] = "";
	int rc = -EIO;
	struct response_sink sink = {.body = resp, .too_large = false};

	*resp = (struct strbuf)STRBUF_INIT;
	curl_easy_reset(c->curl);
	curl_easy_setopt(c->curl, CURLOPT_URL, url);
	curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT, CTL_CONNECT_TIMEOUT_S);
	curl_easy_setopt(c->curl, CURLOPT_TIMEOUT, c->timeout_s);
	/* https: the certificate and the URL's host are always checked; TLS 1.2 or newer. */
	curl_easy_setopt(c->curl, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(c->curl, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(c->curl, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	if (c->cacert != NULL && c->cacert[0] != '\0')
		curl_easy_setopt(c->curl, CURLOPT_CAINFO, c->cacert);
	curl_easy_setopt(c->curl, CURLOPT_USERAGENT, "lazaretctl/" LAZARET_VERSION);
	curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, write_to_buf);
	curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &sink);
	if (c->token != NULL && c->token[0] != '\0') {
		auth = ctl_xasprintf("Authorization: Bearer %s", c->token);
		hdrs = curl_slist_append(hdrs, auth);
	}
	hdrs = curl_slist_append(hdrs, "Accept: application/json");
	if (strcmp(method, "POST") == 0 || body != NULL) {
		/* a body goes as POST's does; CURLOPT_CUSTOMREQUEST below names a PUT */
		curl_easy_setopt(c->curl, CURLOPT_POST, 1L);
		curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body ? body : "");
		curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE, (long)(body ? strlen(body) : 0));
		if (body != NULL)
			hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
		/* Without this curl waits for "100 Continue" before a larger body. */
		hdrs = curl_slist_append(hdrs, "Expect:");
	}
	if (strcmp(method, "POST") != 0 && strcmp(method, "GET") != 0)
		curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, hdrs);

	CURLcode cr = curl_easy_perform(c->curl);
	if (cr != CURLE_OK) {
		if (sink.too_large)
			fprintf(stderr, "lazaretctl: %s: response larger than %lu bytes\n", url,
				CTL_MAX_RESPONSE);
		else
			fprintf(stderr, "lazaretctl: %s: %s\n", url,
				errbuf[0] ? errbuf : curl_easy_strerror(cr));
		strbuf_free(resp);
		goto fail;
	}
	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, status);
	rc = 0;
fail:
	curl_slist_free_all(hdrs);
	free(auth);
	free(url);
	return rc;
}

/*
 * Prints a non-2xx answer as "lazaretctl: <message> (<code>, HTTP <status>)" when
 * the body has the contract's error shape, else with the start of the body.
 */
static void print_api_error(long status, const struct strbuf *resp)
{
	json_t *root = NULL;
	if (resp->len > 0)
		root = json_loadb(resp->p, resp->len, 0, NULL);
	json_t *err = json_object_get(root, "error");
	const char *message = json_string_value(json_object_get(err, "message"));
	const char *code = json_string_value(json_object_get(err, "code"));
	if (message != NULL) {
		fprintf(stderr, "lazaretctl: %s (%s, HTTP %ld)\n", message, code ? code : "error",
			status);
	} else {
		/* Not our server's error format (a proxy?): show a bounded, printable excerpt. */
		fprintf(stderr, "lazaretctl: HTTP %ld", status);
		if (resp->len > 0) {
			fputs(": ", stderr);
			for (size_t i = 0; i < resp->len && i < 200; i++) {
				unsigned char ch = (unsigned char)resp->p[i];
				fputc(ch >= 0x20 && ch != 0x7f ? ch : ' ', stderr);
			}
		}
		fputc('\n', stderr);
	}
	json_decref(root);
}

/*
 * One API call expecting a JSON answer. On 2xx, *out is the parsed body (caller
 * json_decref()s) and, when raw is non-NULL, *raw the body text (caller frees with
 * strbuf_free). Returns CTL_EXIT_OK, or CTL_EXIT_API after printing the error.
 */
static int api_json(struct ctl *c, const char *method, const char *path, const char *body,
		    json_t **out, struct strbuf *raw)
{
	struct strbuf resp;
	long status = 0;
	json_error_t jerr;

	*out = NULL;
	if (http_request(c, method, path, body, &resp, &status) < 0)
		return CTL_EXIT_API;
	if (status < 200 || status > 299) {
		print_api_error(status, &resp);
		strbuf_free(&resp);
		return CTL_EXIT_API;
	}
	*out = json_loadb(strbuf_str(&resp), resp.len, 0, &jerr);
	if (*out == NULL) {
		fprintf(stderr, "lazaretctl: %s: the server sent invalid JSON: %s\n", path,
			jerr.text);
		strbuf_free(&resp);
		return CTL_EXIT_API;
	}
	if (raw != NULL)
		*raw = resp;
	else
		strbuf_free(&resp);
	return CTL_EXIT_OK;
}

/* Appends "&key=value" (or "?key=value" first) with value percent-encoded. */
static void query_add(struct ctl *c, struct strbuf *q, const char *key, const char *value)
{
	if (value == NULL)
		return;
	char *esc = curl_easy_escape(c->curl, value, (int)strlen(value));
	if (esc == NULL) {
		fprintf(stderr, "lazaretctl: out of memory\n");
		exit(CTL_EXIT_API);
	}
	strbuf_add(q, q->len ? "&" : "?", 1);
	strbuf_add(q, key, strlen(key));
	strbuf_add(q, "=", 1);
	strbuf_add(q, esc, strlen(esc));
	curl_free(esc);
}

/* "/api/v1/messages/<id>[suffix]" with the id percent-encoded; caller frees. */
static char *message_path(struct ctl *c, const char *id, const char *suffix)
{
	char *esc = curl_easy_escape(c->curl, id, (int)strlen(id));
	if (esc == NULL) {
		fprintf(stderr, "lazaretctl: out of memory\n");
		exit(CTL_EXIT_API);
	}
	char *p = ctl_xasprintf("/api/v1/messages/%s%s", esc, suffix);
	curl_free(esc);
	return p;
}

/* ---- terminal text: display width, sanitising, truncation ---- */

/*
 * Decodes the character at s (len bytes left): *n bytes long, *w cells wide.
 * *printable is false for control characters and invalid UTF-8, which are shown
 * as one '?' cell (a subject must not move the cursor or change colours).
 */
static void next_char(const char *s, size_t len, mbstate_t *st, size_t *n, int *w, bool *printable)
{
	wchar_t wc;
	size_t r = mbrtowc(&wc, s, len, st);
	*printable = true;
	if (r == (size_t)-1 || r == (size_t)-2 || r == 0) {
		memset(st, 0, sizeof(*st));
		*n = 1;
		*w = 1;
		*printable = false;
		return;
	}
	*n = r;
	*w = wcwidth(wc);
	if (*w < 0) {
		*w = 1;
		*printable = false;
	}
}

/* Display width of s as put_cells writes it without a limit. NULL is 0. */
static int cells(const char *s)
{
	mbstate_t st;
	size_t len = s ? strlen(s) : 0, n;
	int total = 0, w;
	bool printable;

	memset(&st, 0, sizeof(st));
	for (size_t i = 0; i < len; i += n) {
		next_char(s + i, len - i, &st, &n, &w, &printable);
		total += w;
	}
	return total;
}

/*
 * Writes s to f, at most max_width display cells (max_width < 0: no limit),
 * replacing control characters and invalid UTF-8 by '?'. When s is cut, it ends
 * in "…". Pads with spaces to pad_to cells (0: no padding). Returns cells written.
 */
static int put_cells(FILE *f, const char *s, int max_width, int pad_to)
{
	mbstate_t st;
	size_t len = s ? strlen(s) : 0, n;
	int used = 0, w;
	bool printable;
	bool cut = max_width >= 0 && cells(s) > max_width;
	/* A cut string keeps one cell for the ellipsis. */
	int limit = cut ? max_width - 1 : max_width;

	memset(&st, 0, sizeof(st));
	for (size_t i = 0; i < len; i += n) {
		next_char(s + i, len - i, &st, &n, &w, &printable);
		if (limit >= 0 && used + w > limit)
			break;
		if (printable)
			fwrite(s + i, 1, n, f);
		else
			fputc('?', f);
		used += w;
	}
	if (cut && max_width >= 1) {
		fputs("…", f);
		used += 1;
	}
	while (used < pad_to) {
		fputc(' ', f);
		used++;
	}
	return used;
}

static int terminal_width(void)
{
	struct winsize ws;
	if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
		return ws.ws_col;
	const char *cols = getenv("COLUMNS");
	if (cols != NULL && atoi(cols) > 0)
		return atoi(cols);
	return 0;
}

/* ---- filters ---- */

struct filter {
	const char *quarantine, *recipient, *sender, *subject, *verdict, *gateway, *state;
	char *since, *until; /* RFC 3339, normalised from ages */
};

static bool filter_empty(const struct filter *f)
{
	return !f->quarantine && !f->recipient && !f->sender && !f->subject && !f->verdict &&
	       !f->gateway && !f->state && !f->since && !f->until;
}

static void filter_free(struct filter *f)
{
	free(f->since);
	free(f->until);
}

/*
 * Accepts an RFC 3339 time (passed through for the server to check) or an age
 * "N[smhd]" meaning that long before now. *out is a new string. 0 or -EINVAL.
 */
static int time_arg(const char *s, char **out)
{
	char *end = NULL;
	errno = 0;
	long long n = strtoll(s, &end, 10);
	if (end != s && errno == 0 && n >= 0 && end[0] != '\0' && end[1] == '\0' &&
	    strchr("smhd", end[0]) != NULL) {
		long long mult = end[0] == 's'	 ? 1
				 : end[0] == 'm' ? 60
				 : end[0] == 'h' ? 3600
						 : 86400;
		if (n > 100LL * 365 * 86400 / mult)
			return -EINVAL;
		time_t t = time(NULL) - (time_t)(n * mult);
		struct tm tm;
		char tbuf[32];
		gmtime_r(&t, &tm);
		strftime(tbuf, sizeof(tbuf), "%Y-%m-%dT%H:%M:%SZ", &tm);
		*out = ctl_xstrdup(tbuf);
		return 0;
	}
	/* Looks like a date: let the server judge the details. */
	if (strlen(s) >= 10 && s[4] == '-' && s[7] == '-') {
		*out = ctl_xstrdup(s);
		return 0;
	}
	return -EINVAL;
}

static void filter_to_query(struct ctl *c, const struct filter *f, struct strbuf *q)
{
	query_add(c, q, "quarantine", f->quarantine);
	query_add(c, q, "recipient", f->recipient);
	query_add(c, q, "sender", f->sender);
	query_add(c, q, "subject", f->subject);
	query_add(c, q, "since", f->since);
	query_add(c, q, "until", f->until);
	query_add(c, q, "verdict", f->verdict);
	query_add(c, q, "gateway", f->gateway);
	query_add(c, q, "state", f->state);
}

static json_t *filter_to_json(const struct filter *f)
{
	json_t *o = json_object();
	const char *keys[] = {"quarantine", "recipient", "sender",  "subject", "since",
			      "until",	    "verdict",	 "gateway", "state"};
	const char *vals[] = {f->quarantine, f->recipient, f->sender,  f->subject, f->since,
			      f->until,	     f->verdict,   f->gateway, f->state};
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (vals[i] != NULL)
			json_object_set_new(o, keys[i], json_string(vals[i]));
	return o;
}

/* ---- command line ---- */

enum opt_id {
	OPT_URL = 256,
	OPT_CACERT,
	OPT_TOKEN,
	OPT_TIMEOUT,
	OPT_JSON,
	OPT_QUARANTINE,
	OPT_RECIPIENT,
	OPT_SENDER,
	OPT_SUBJECT,
	OPT_SINCE,
	OPT_UNTIL,
	OPT_VERDICT,
	OPT_GATEWAY,
	OPT_STATE,
	OPT_LIMIT,
	OPT_CURSOR,
	OPT_ALL,
	OPT_WIDE,
	OPT_RCPT,
	OPT_FILTER,
	OPT_ROLE,
	OPT_ADDRESS,
	OPT_PASSWORD_STDIN,
	OPT_GROUP,
	OPT_CLUSTER,
	OPT_RELEASE_PORT,
	OPT_SUBJECT_OP,
	OPT_MESSAGE_ID,
	OPT_CLIENT_IP,
	OPT_ATTACHMENT,
	OPT_EVENT,
	OPT_AUTOMATIC,
	OPT_NO_RESCAN,
};

static const struct option long_options[] = {
    {"help", no_argument, NULL, 'h'},
    {"url", required_argument, NULL, OPT_URL},
    {"cacert", required_argument, NULL, OPT_CACERT},
    {"token", required_argument, NULL, OPT_TOKEN},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"json", no_argument, NULL, OPT_JSON},
    {"quarantine", required_argument, NULL, OPT_QUARANTINE},
    {"recipient", required_argument, NULL, OPT_RECIPIENT},
    {"sender", required_argument, NULL, OPT_SENDER},
    {"subject", required_argument, NULL, OPT_SUBJECT},
    {"since", required_argument, NULL, OPT_SINCE},
    {"until", required_argument, NULL, OPT_UNTIL},
    {"verdict", required_argument, NULL, OPT_VERDICT},
    {"gateway", required_argument, NULL, OPT_GATEWAY},
    {"state", required_argument, NULL, OPT_STATE},
    {"limit", required_argument, NULL, OPT_LIMIT},
    {"cursor", required_argument, NULL, OPT_CURSOR},
    {"all", no_argument, NULL, OPT_ALL},
    {"wide", no_argument, NULL, OPT_WIDE},
    {"rcpt", required_argument, NULL, OPT_RCPT},
    {"filter", no_argument, NULL, OPT_FILTER},
    {"role", required_argument, NULL, OPT_ROLE},
    {"address", required_argument, NULL, OPT_ADDRESS},
    {"password-stdin", no_argument, NULL, OPT_PASSWORD_STDIN},
    {"group", required_argument, NULL, OPT_GROUP},
    {"cluster", required_argument, NULL, OPT_CLUSTER},
    {"release-port", required_argument, NULL, OPT_RELEASE_PORT},
    {"subject-op", required_argument, NULL, OPT_SUBJECT_OP},
    {"message-id", required_argument, NULL, OPT_MESSAGE_ID},
    {"client-ip", required_argument, NULL, OPT_CLIENT_IP},
    {"attachment", required_argument, NULL, OPT_ATTACHMENT},
    {"event", required_argument, NULL, OPT_EVENT},
    {"automatic", no_argument, NULL, OPT_AUTOMATIC},
    {"no-rescan", no_argument, NULL, OPT_NO_RESCAN},
    {NULL, 0, NULL, 0},
};

/* Everything a command may take; which options a command accepts is checked after parsing. */
struct args {
	const char *command;
	bool help, json, all, wide, bulk;
	struct filter filter;
	bool any_filter;
	const char *limit;
	const char *cursor;
	const char *rcpts[CTL_MAX_RCPTS];
	size_t nrcpts;
	const char *positional[CTL_MAX_POSITIONAL];
	size_t npositional;
	/* user add */
	const char *role;
	const char *addresses[CTL_MAX_RCPTS];
	size_t naddresses;
	bool password_stdin;
	/* gateway add */
	const char *group, *cluster;
	long release_port; /* 0: not given */
	bool automatic;	   /* gateway mapping --automatic */
	bool no_rescan;	   /* release --no-rescan */
	/* track: the tracking search's own filters */
	const char *subject_op, *message_id, *client_ip, *attachment, *event;
	bool track_seen;
};

/* ---- commands ---- */

static int cmd_health(struct ctl *c, struct args *a)
{
	struct strbuf resp;
	long status = 0;
	if (http_request(c, "GET", "/healthz", NULL, &resp, &status) < 0)
		return CTL_EXIT_API;
	if (status != 200) {
		print_api_error(status, &resp);
		strbuf_free(&resp);
		return CTL_EXIT_API;
	}
	printf("ok\n");
	strbuf_free(&resp);
	return CTL_EXIT_OK;
}

static void print_json_text(const struct strbuf *raw)
{
	fwrite(strbuf_str(raw), 1, raw->len, stdout);
	if (raw->len == 0 || raw->p[raw->len - 1] != '\n')
		fputc('\n', stdout);
}

static int cmd_quarantines(struct ctl *c, struct args *a)
{
	json_t *root = NULL;
	struct strbuf raw = STRBUF_INIT;
	int rc = api_json(c, "GET", "/api/v1/quarantines", NULL, &root, &raw);
	if (rc != CTL_EXIT_OK)
		return rc;
	if (a->json) {
		print_json_text(&raw);
		goto out;
	}
	json_t *list = json_object_get(root, "quarantines");
	size_t i;
	json_t *q;
	int wname = 4;
	json_array_foreach(list, i, q)
	{
		int w = cells(json_string_value(json_object_get(q, "name")));
		if (w > wname)
			wname = w;
	}
	put_cells(stdout, "NAME", -1, wname + 2);
	printf("%-8s %10s %14s\n", "TYPE", "MESSAGES", "BYTES");
	json_array_foreach(list, i, q)
	{
		put_cells(stdout, json_string_value(json_object_get(q, "name")), -1, wname + 2);
		put_cells(stdout, json_string_value(json_object_get(q, "type")), 8, 9);
		printf("%10" JSON_INTEGER_FORMAT " %14" JSON_INTEGER_FORMAT "\n",
		       json_integer_value(json_object_get(q, "messages")),
		       json_integer_value(json_object_get(q, "bytes")));
	}
out:
	json_decref(root);
	strbuf_free(&raw);
	return CTL_EXIT_OK;
}

/* "a@x (quarantined), b@y (released)"; caller frees. */
static char *recipients_text(json_t *rcpts)
{
	struct strbuf b = STRBUF_INIT;
	size_t i;
	json_t *r;
	json_array_foreach(rcpts, i, r)
	{
		const char *addr = json_string_value(json_object_get(r, "address"));
		const char *state = json_string_value(json_object_get(r, "state"));
		if (i > 0)
			strbuf_add(&b, ", ", 2);
		if (addr != NULL)
			strbuf_add(&b, addr, strlen(addr));
		if (state != NULL) {
			strbuf_add(&b, " (", 2);
			strbuf_add(&b, state, strlen(state));
			strbuf_add(&b, ")", 1);
		}
	}
	return strbuf_take(&b);
}

/* The score as the server sent it: a number, or a string, or "-". */
static void score_text(json_t *score, char *out, size_t size)
{
	if (json_is_number(score)) {
		/* Two decimals at most, without trailing zeros: 7.25, 5.1, 12 */
		snprintf(out, size, "%.2f", json_number_value(score));
		char *dot = strchr(out, '.');
		if (dot != NULL) {
			char *end = out + strlen(out);
			while (end > dot + 1 && end[-1] == '0')
				*--end = '\0';
			if (end == dot + 1)
				*dot = '\0';
		}
	} else if (json_is_string(score))
		snprintf(out, size, "%s", json_string_value(score));
	else
		snprintf(out, size, "-");
}

/* "2026-11-27T19:30:00Z" -> "2026-11-27 19:30:00" (UTC); unknown forms as they are. */
static void received_text(const char *s, char *out, size_t size)
{
	if (s == NULL) {
		snprintf(out, size, "-");
		return;
	}
	snprintf(out, size, "%.19s", s);
	if (strlen(out) == 19 && out[10] == 'T')
		out[10] = ' ';
}

#define MAX_COLS 6

static void print_messages_table(json_t *messages, bool wide)
{
	static const char *const titles[MAX_COLS] = {"ID",	   "RECEIVED (UTC)", "SENDER",
						     "RECIPIENTS", "SCORE",	     "SUBJECT"};
	size_t n = json_array_size(messages);
	char **cellv = ctl_xrealloc(NULL, (n ? n : 1) * MAX_COLS * sizeof(char *));
	int width[MAX_COLS];
	static const int cap[MAX_COLS] = {-1, -1, CTL_SENDER_MAX_WIDTH, CTL_RCPTS_MAX_WIDTH, 8, -1};

	for (int k = 0; k < MAX_COLS; k++)
		width[k] = cells(titles[k]);
	for (size_t i = 0; i < n; i++) {
		json_t *m = json_array_get(messages, i);
		char tbuf[64], sbuf[32];
		const char *id = json_string_value(json_object_get(m, "id"));
		const char *sender = json_string_value(json_object_get(m, "sender"));
		const char *subject = json_string_value(json_object_get(m, "subject"));
		received_text(json_string_value(json_object_get(m, "received_at")), tbuf,
			      sizeof(tbuf));
		score_text(json_object_get(m, "score"), sbuf, sizeof(sbuf));
		char **row = &cellv[i * MAX_COLS];
		row[0] = ctl_xstrdup(id ? id : "-");
		row[1] = ctl_xstrdup(tbuf);
		row[2] = ctl_xstrdup(sender && sender[0] ? sender : "<>");
		row[3] = recipients_text(json_object_get(m, "recipients"));
		row[4] = ctl_xstrdup(sbuf);
		row[5] = ctl_xstrdup(subject ? subject : "");
		for (int k = 0; k < MAX_COLS - 1; k++) {
			int w = cells(row[k]);
			if (cap[k] >= 0 && w > cap[k])
				w = cap[k];
			if (w > width[k])
				width[k] = w;
		}
	}
	/* The subject takes what is left of the terminal line, or a fixed width in a pipe. */
	int subject_width = -1;
	if (!wide) {
		int used = 0;
		for (int k = 0; k < MAX_COLS - 1; k++)
			used += width[k] + 2;
		int term = terminal_width();
		subject_width = term > 0 ? term - used : CTL_SUBJECT_DEFAULT_WIDTH;
		if (subject_width < CTL_SUBJECT_MIN_WIDTH)
			subject_width = CTL_SUBJECT_MIN_WIDTH;
	}
	for (int k = 0; k < MAX_COLS - 1; k++)
		put_cells(stdout, titles[k], -1, width[k] + 2);
	printf("%s\n", titles[MAX_COLS - 1]);
	for (size_t i = 0; i < n; i++) {
		char **row = &cellv[i * MAX_COLS];
		for (int k = 0; k < MAX_COLS - 1; k++) {
			if (k == 4) { /* the score is right-aligned */
				for (int pad = cells(row[k]); pad < width[k]; pad++)
					fputc(' ', stdout);
				put_cells(stdout, row[k], width[k], 0);
				fputs("  ", stdout);
				continue;
			}
			put_cells(stdout, row[k], width[k], width[k] + 2);
		}
		put_cells(stdout, row[MAX_COLS - 1], subject_width, 0);
		fputc('\n', stdout);
		for (int k = 0; k < MAX_COLS; k++)
			free(row[k]);
	}
	free(cellv);
}

/*
 * GET route with the query filters (plus a->limit and *cursor) page after page
 * while a->all, at most CTL_MAX_PAGES: each page's "messages" appended to out,
 * *cursor the last page's next_cursor (or NULL). The last page and its text are
 * left in *page and *raw.
 */
static int fetch_pages(struct ctl *c, const char *route, const struct strbuf *filters,
		       const struct args *a, char **cursor, json_t *out, json_t **page,
		       struct strbuf *raw)
{
	for (int pages = 0; pages < CTL_MAX_PAGES; pages++) {
		struct strbuf q = STRBUF_INIT;
		strbuf_add(&q, strbuf_str(filters), filters->len);
		query_add(c, &q, "limit", a->limit);
		query_add(c, &q, "cursor", *cursor);
		char *path = ctl_xasprintf("%s%s", route, strbuf_str(&q));
		strbuf_free(&q);
		int rc = api_json(c, "GET", path, NULL, page, raw);
		free(path);
		if (rc != CTL_EXIT_OK)
			return rc;
		json_t *msgs = json_object_get(*page, "messages");
		if (!json_is_array(msgs)) {
			fprintf(stderr,
				"lazaretctl: the server's answer has no \"messages\" list\n");
			return CTL_EXIT_API;
		}
		json_array_extend(out, msgs);
		const char *next = json_string_value(json_object_get(*page, "next_cursor"));
		free(*cursor);
		*cursor = next ? ctl_xstrdup(next) : NULL;
		if (!a->all || *cursor == NULL || json_array_size(msgs) == 0)
			break;
		json_decref(*page);
		*page = NULL;
		strbuf_free(raw);
	}
	return CTL_EXIT_OK;
}

static int cmd_search(struct ctl *c, struct args *a)
{
	json_t *all_messages = json_array();
	json_t *page = NULL;
	struct strbuf raw = STRBUF_INIT;
	char *cursor = a->cursor ? ctl_xstrdup(a->cursor) : NULL;
	int rc = CTL_EXIT_OK;

	struct strbuf q = STRBUF_INIT;
	filter_to_query(c, &a->filter, &q);
	rc = fetch_pages(c, "/api/v1/messages", &q, a, &cursor, all_messages, &page, &raw);
	strbuf_free(&q);
	if (rc != CTL_EXIT_OK)
		goto out;

	if (a->json) {
		if (!a->all) {
			print_json_text(&raw);
		} else {
			json_t *o =
			    json_pack("{s:O, s:n}", "messages", all_messages, "next_cursor");
			json_dumpf(o, stdout, JSON_INDENT(2));
			fputc('\n', stdout);
			json_decref(o);
		}
		goto out;
	}
	print_messages_table(all_messages, a->wide);
	if (!a->all && cursor != NULL)
		fprintf(stderr, "more: --cursor %s (or --all)\n", cursor);
	else if (json_array_size(all_messages) == 0)
		fprintf(stderr, "no messages\n");
out:
	json_decref(page);
	json_decref(all_messages);
	strbuf_free(&raw);
	free(cursor);
	return rc;
}

static void print_field(const char *label, const char *value)
{
	printf("%-12s ", label);
	put_cells(stdout, value ? value : "-", -1, 0);
	fputc('\n', stdout);
}

/* Headers as the server sends them: [{"name","value"}], [[name,value]] or {name:value}. */
static void print_headers(json_t *headers)
{
	size_t i;
	json_t *h;
	const char *k;
	if (json_is_array(headers)) {
		json_array_foreach(headers, i, h)
		{
			const char *name, *value;
			if (json_is_array(h)) {
				name = json_string_value(json_array_get(h, 0));
				value = json_string_value(json_array_get(h, 1));
			} else {
				name = json_string_value(json_object_get(h, "name"));
				value = json_string_value(json_object_get(h, "value"));
			}
			printf("  ");
			put_cells(stdout, name ? name : "?", -1, 0);
			printf(": ");
			put_cells(stdout, value ? value : "", -1, 0);
			fputc('\n', stdout);
		}
	} else if (json_is_object(headers)) {
		json_object_foreach(headers, k, h)
		{
			printf("  ");
			put_cells(stdout, k, -1, 0);
			printf(": ");
			put_cells(stdout, json_is_string(h) ? json_string_value(h) : "", -1, 0);
			fputc('\n', stdout);
		}
	}
}

static const char *first_string(json_t *o, const char *k1, const char *k2)
{
	const char *s = json_string_value(json_object_get(o, k1));
	return s ? s : json_string_value(json_object_get(o, k2));
}

static void print_message(json_t *m, bool details)
{
	char sbuf[32];
	print_field("id:", json_string_value(json_object_get(m, "id")));
	print_field("quarantine:", json_string_value(json_object_get(m, "quarantine")));
	print_field("received:", json_string_value(json_object_get(m, "received_at")));
	print_field("sender:", json_string_value(json_object_get(m, "sender")));
	print_field("from:", json_string_value(json_object_get(m, "from")));
	print_field("subject:", json_string_value(json_object_get(m, "subject")));
	printf("%-12s %" JSON_INTEGER_FORMAT "\n",
	       "size:", json_integer_value(json_object_get(m, "size")));
	print_field("verdict:", json_string_value(json_object_get(m, "verdict")));
	score_text(json_object_get(m, "score"), sbuf, sizeof(sbuf));
	print_field("score:", sbuf);
	print_field("gateway:", json_string_value(json_object_get(m, "gateway")));
	print_field("expires:", json_string_value(json_object_get(m, "expires_at")));
	printf("recipients:\n");
	size_t i;
	json_t *r;
	json_array_foreach(json_object_get(m, "recipients"), i, r)
	{
		printf("  ");
		put_cells(stdout, json_string_value(json_object_get(r, "address")), -1, 0);
		printf("  ");
		put_cells(stdout, json_string_value(json_object_get(r, "state")), -1, 0);
		fputc('\n', stdout);
	}
	if (!details)
		return;
	printf("headers:\n");
	print_headers(json_object_get(m, "headers"));
	printf("attachments:\n");
	json_t *att;
	json_array_foreach(json_object_get(m, "attachments"), i, att)
	{
		printf("  ");
		put_cells(stdout, first_string(att, "filename", "name") ?: "(no name)", -1, 0);
		printf("  ");
		put_cells(stdout, first_string(att, "content_type", "type") ?: "-", -1, 0);
		json_t *size = json_object_get(att, "size");
		if (json_is_integer(size))
			printf("  %" JSON_INTEGER_FORMAT " bytes", json_integer_value(size));
		fputc('\n', stdout);
	}
}

static int cmd_show(struct ctl *c, struct args *a)
{
	json_t *m = NULL;
	struct strbuf raw = STRBUF_INIT;
	char *path = message_path(c, a->positional[0], "");
	int rc = api_json(c, "GET", path, NULL, &m, &raw);
	free(path);
	if (rc != CTL_EXIT_OK)
		return rc;
	if (a->json)
		print_json_text(&raw);
	else
		print_message(m, true);
	json_decref(m);
	strbuf_free(&raw);
	return CTL_EXIT_OK;
}

static int cmd_raw(struct ctl *c, struct args *a)
{
	struct strbuf resp;
	long status = 0;
	char *path = message_path(c, a->positional[0], "/raw");
	int rc = http_request(c, "GET", path, NULL, &resp, &status);
	free(path);
	if (rc < 0)
		return CTL_EXIT_API;
	if (status != 200) {
		print_api_error(status, &resp);
		strbuf_free(&resp);
		return CTL_EXIT_API;
	}
	rc = CTL_EXIT_OK;
	if (resp.len > 0 && fwrite(resp.p, 1, resp.len, stdout) != resp.len) {
		perror("lazaretctl: stdout");
		rc = CTL_EXIT_API;
	}
	if (fflush(stdout) != 0 && rc == CTL_EXIT_OK) {
		perror("lazaretctl: stdout");
		rc = CTL_EXIT_API;
	}
	strbuf_free(&resp);
	return rc;
}

/* The changed-recipient count from a bulk answer; -1 when absent. */
static json_int_t bulk_changed(json_t *root)
{
	static const char *const keys[] = {"changed", "recipients_changed", "count"};
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		json_t *v = json_object_get(root, keys[i]);
		if (json_is_integer(v))
			return json_integer_value(v);
	}
	return -1;
}

/*
 * What a bulk release or delete changed: recipients of spam messages; in a
 * policy, virus or outbreak quarantine (the answer says "queued") memberships,
 * one per message, and how many messages that released queued for delivery.
 */
static void print_bulk_changed(json_t *root, const char *action, const char *quarantine)
{
	bool release = strcmp(action, "release") == 0;
	const char *done = release ? "released" : "deleted";
	json_int_t n = bulk_changed(root);
	json_t *queued = json_object_get(root, "queued");
	if (n < 0) {
		printf("%s: done (the server did not say how many recipients changed)\n", action);
	} else if (!json_is_integer(queued)) {
		printf("%" JSON_INTEGER_FORMAT " recipient%s %s\n", n, n == 1 ? "" : "s", done);
	} else {
		printf("%" JSON_INTEGER_FORMAT " message%s %s from quarantine \"%s\"", n,
		       n == 1 ? "" : "s", done, quarantine != NULL ? quarantine : "");
		if (release)
			printf(" (%" JSON_INTEGER_FORMAT " queued for delivery)",
			       json_integer_value(queued));
		printf("\n");
	}
}

/* release / delete: one message (optionally some recipients) or every match of a filter. */
static int cmd_change(struct ctl *c, struct args *a, const char *action)
{
	json_t *body = NULL, *root = NULL;
	char *body_text = NULL, *path = NULL;
	struct strbuf raw = STRBUF_INIT;
	int rc;

	if (a->bulk) {
		body = json_pack("{s:o}", "filter", filter_to_json(&a->filter));
		path = ctl_xasprintf("/api/v1/messages/%s", action);
	} else {
		if (a->filter.quarantine != NULL) /* a PVO message's membership */
			body = json_pack("{s:s}", "quarantine", a->filter.quarantine);
		if (a->nrcpts > 0) {
			json_t *list = json_array();
			for (size_t i = 0; i < a->nrcpts; i++)
				json_array_append_new(list, json_string(a->rcpts[i]));
			body = json_pack("{s:o}", "recipients", list);
		}
		char *suffix = ctl_xasprintf("/%s", action);
		path = message_path(c, a->positional[0], suffix);
		free(suffix);
	}
	if (a->no_rescan)
		json_object_set_new(body, "rescan", json_false());
	if (body != NULL)
		body_text = json_dumps(body, JSON_COMPACT);
	rc = api_json(c, "POST", path, body_text, &root, &raw);
	if (rc != CTL_EXIT_OK)
		goto out;
	if (a->json) {
		print_json_text(&raw);
	} else if (a->bulk) {
		print_bulk_changed(root, action, a->filter.quarantine);
	} else {
		print_message(root, false);
	}
out:
	json_decref(body);
	json_decref(root);
	free(body_text);
	free(path);
	strbuf_free(&raw);
	return rc;
}

/* ---- main ---- */

struct command {
	const char *name;
	int (*run)(struct ctl *c, struct args *a);
	size_t positional; /* exact count required (bulk release/delete: 0) */
	bool filters, paging, rcpts, bulk, json;
};

static int cmd_release(struct ctl *c, struct args *a)
{
	return cmd_change(c, a, "release");
}

static int cmd_delete(struct ctl *c, struct args *a)
{
	return cmd_change(c, a, "delete");
}

/* Longest password line read from standard input (the server's own limit is 1024). */
#define CTL_PASSWORD_MAX 1024

static int cmd_user_add(struct ctl *c, struct args *a)
{
	if (a->npositional != 2)
		return usage_error("user", "user add needs a NAME");
	if (a->role == NULL)
		return usage_error("user", "user add needs --role");
	if (!a->password_stdin)
		return usage_error("user", "user add needs --password-stdin");
	char line[CTL_PASSWORD_MAX + 2];
	if (fgets(line, sizeof(line), stdin) == NULL) {
		fprintf(stderr, "lazaretctl: no password on standard input\n");
		return CTL_EXIT_USAGE;
	}
	line[strcspn(line, "\r\n")] = '\0';
	json_t *addrs = json_array();
	for (size_t i = 0; i < a->naddresses; i++)
		json_array_append_new(addrs, json_string(a->addresses[i]));
	json_t *body = json_pack("{s:s,s:s,s:s,s:o}", "username", a->positional[1], "password",
				 line, "role", a->role, "addresses", addrs);
	memset(line, 0, sizeof(line));
	if (body == NULL) {
		fprintf(stderr, "lazaretctl: name, role and addresses must be UTF-8\n");
		return CTL_EXIT_USAGE;
	}
	char *text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	json_t *root = NULL;
	int rc = api_json(c, "POST", "/api/v1/users", text, &root, NULL);
	free(text);
	if (rc == CTL_EXIT_OK)
		printf("created %s (%s)\n", a->positional[1], a->role);
	json_decref(root);
	return rc;
}

static int cmd_user_list(struct ctl *c, struct args *a)
{
	json_t *root = NULL;
	struct strbuf raw;
	int rc = api_json(c, "GET", "/api/v1/users", NULL, &root, &raw);
	if (rc != CTL_EXIT_OK)
		return rc;
	if (a->json) {
		print_json_text(&raw);
	} else {
		size_t i;
		json_t *u;
		printf("%-24s %-9s %s\n", "USERNAME", "ROLE", "ADDRESSES");
		json_array_foreach(json_object_get(root, "users"), i, u)
		{
			const char *name = json_string_value(json_object_get(u, "username"));
			const char *role = json_string_value(json_object_get(u, "role"));
			struct strbuf addrs = STRBUF_INIT;
			size_t j;
			json_t *addr;
			json_array_foreach(json_object_get(u, "addresses"), j, addr)
			{
				const char *text = json_string_value(addr);
				if (j > 0)
					strbuf_add(&addrs, ", ", 2);
				if (text != NULL)
					strbuf_add(&addrs, text, strlen(text));
			}
			put_cells(stdout, name != NULL ? name : "", 64, 24);
			printf(" %-9s ", role != NULL ? role : "");
			put_cells(stdout, strbuf_str(&addrs), CTL_RCPTS_MAX_WIDTH * 4, 0);
			fputc('\n', stdout);
			strbuf_free(&addrs);
		}
	}
	strbuf_free(&raw);
	json_decref(root);
	return CTL_EXIT_OK;
}

static int cmd_user(struct ctl *c, struct args *a)
{
	const char *sub = a->npositional > 0 ? a->positional[0] : "";
	if (strcmp(sub, "add") == 0)
		return cmd_user_add(c, a);
	if (a->role != NULL || a->naddresses > 0 || a->password_stdin)
		return usage_error("user",
				   "--role, --address and --password-stdin are for user add");
	if (strcmp(sub, "list") == 0 && a->npositional == 1)
		return cmd_user_list(c, a);
	bool reset = strcmp(sub, "totp-reset") == 0;
	if ((strcmp(sub, "delete") == 0 || reset) && a->npositional == 2) {
		char *esc = curl_easy_escape(c->curl, a->positional[1], 0);
		if (esc == NULL) {
			fprintf(stderr, "lazaretctl: out of memory\n");
			return CTL_EXIT_API;
		}
		char *path = ctl_xasprintf("/api/v1/users/%s%s", esc, reset ? "/totp" : "");
		curl_free(esc);
		json_t *root = NULL;
		int rc = api_json(c, "DELETE", path, NULL, &root, NULL);
		free(path);
		if (rc == CTL_EXIT_OK)
			printf(reset ? "second factor of %s removed\n" : "deleted %s\n",
			       a->positional[1]);
		json_decref(root);
		return rc;
	}
	return usage_error("user", "user wants add NAME, list, delete NAME or totp-reset NAME");
}

/* ---- gateway add | list | remove ---- */

static const char *json_text(json_t *o, const char *key)
{
	const char *v = json_string_value(json_object_get(o, key));
	return v != NULL ? v : "-";
}

static int cmd_gateway_add(struct ctl *c, struct args *a)
{
	if (a->npositional != 2)
		return usage_error("gateway", "gateway add needs a NAME");
	if (a->naddresses != 1)
		return usage_error("gateway", "gateway add needs one --address");
	json_t *body = json_pack("{s:s,s:s}", "name", a->positional[1], "address", a->addresses[0]);
	if (body == NULL) {
		fprintf(stderr, "lazaretctl: the name and address must be UTF-8\n");
		return CTL_EXIT_USAGE;
	}
	if (a->group != NULL)
		json_object_set_new(body, "group", json_string(a->group));
	if (a->cluster != NULL)
		json_object_set_new(body, "cluster", json_string(a->cluster));
	if (a->release_port != 0)
		json_object_set_new(body, "release_port", json_integer(a->release_port));
	char *text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	if (text == NULL) {
		fprintf(stderr, "lazaretctl: --group and --cluster must be UTF-8\n");
		return CTL_EXIT_USAGE;
	}
	json_t *root = NULL;
	struct strbuf raw;
	int rc = api_json(c, "POST", "/api/v1/gateways", text, &root, &raw);
	free(text);
	if (rc != CTL_EXIT_OK)
		return rc;
	if (a->json) {
		print_json_text(&raw);
	} else {
		json_t *g = json_object_get(root, "gateway");
		printf("added gateway ");
		put_cells(stdout, json_text(g, "name"), 64, 0);
		printf(" (");
		put_cells(stdout, json_text(g, "address"), 64, 0);
		printf(")\ntoken: ");
		put_cells(stdout, json_text(root, "token"), 128, 0);
		printf("\nThe token is shown only now. Put it in the gateway's lazaret-gw.conf as\n"
		       "[manager] api_token.\n");
	}
	strbuf_free(&raw);
	json_decref(root);
	return CTL_EXIT_OK;
}

/* "2026-12-05T07:00:00Z" as "2026-12-05 07:00:00", "-" for null. */
static void gateway_time(json_t *v, char *out, size_t size)
{
	const char *s = json_string_value(v);
	if (s == NULL || strlen(s) < 19) {
		snprintf(out, size, "-");
		return;
	}
	snprintf(out, size, "%.10s %.8s", s, s + 11);
}

/*
 * "migrating 1200/20000 (3 failed)", "migrated 2026-12-06 03:00:00", "-" for
 * null; a "done" mail not sent yet, or refused for good, adds ", mail pending"
 * or ", mail failed".
 */
static void gateway_migration(json_t *m, char *out, size_t size)
{
	if (!json_is_object(m)) {
		snprintf(out, size, "-");
		return;
	}
	long long total = json_integer_value(json_object_get(m, "total"));
	long long done = json_integer_value(json_object_get(m, "done"));
	long long failed = json_integer_value(json_object_get(m, "failed"));
	const char *state = json_string_value(json_object_get(m, "state"));
	char fin[32], tail[40] = "";
	if (failed > 0)
		snprintf(tail, sizeof(tail), " (%lld failed)", failed);
	if (state != NULL && strcmp(state, "done") == 0) {
		gateway_time(json_object_get(m, "finished_at"), fin, sizeof(fin));
		const char *mail =
		    json_string_value(json_object_get(json_object_get(m, "notice"), "state"));
		snprintf(out, size, "migrated %s%s%s", fin, tail,
			 mail == NULL || strcmp(mail, "sent") == 0 ? ""
			 : strcmp(mail, "pending") == 0		   ? ", mail pending"
								   : ", mail failed");
	} else {
		snprintf(out, size, "migrating %lld/%lld%s", done, total, tail);
	}
}

/* Prints a mapping reply {"gateway", "mode", "mapping"}. */
static void gateway_mapping_print(json_t *root)
{
	json_t *map = json_object_get(root, "mapping");
	printf("gateway ");
	put_cells(stdout, json_text(root, "gateway"), 64, 0);
	printf(": %s mapping\n", json_text(root, "mode"));
	const char *key;
	json_t *v;
	json_object_foreach(map, key, v)
	{
		printf("  ");
		put_cells(stdout, key, 64, 0);
		printf(" -> ");
		if (json_is_string(v))
			put_cells(stdout, json_string_value(v), 64, 0);
		else
			printf("(not migrated: deleted on the gateway)");
		fputc('\n', stdout);
	}
}

/* gateway mapping NAME [--automatic | LOCAL=CENTRAL | LOCAL= ...] */
static int cmd_gateway_mapping(struct ctl *c, struct args *a)
{
	if (a->npositional < 2)
		return usage_error("gateway", "gateway mapping needs a NAME");
	if (a->automatic && a->npositional > 2)
		return usage_error("gateway", "--automatic takes no LOCAL=CENTRAL pairs");
	char *esc = curl_easy_escape(c->curl, a->positional[1], 0);
	if (esc == NULL) {
		fprintf(stderr, "lazaretctl: out of memory\n");
		return CTL_EXIT_API;
	}
	char *path = ctl_xasprintf("/api/v1/gateways/%s/mapping", esc);
	curl_free(esc);
	char *text = NULL;
	if (a->automatic || a->npositional > 2) {
		json_t *body = json_object();
		for (size_t i = 2; i < a->npositional; i++) {
			const char *pair = a->positional[i];
			const char *eq = strrchr(pair, '=');
			if (eq == NULL || eq == pair) {
				json_decref(body);
				free(path);
				return usage_error("gateway",
						   "a mapping pair is LOCAL=CENTRAL or "
						   "LOCAL= (not \"%s\")",
						   pair);
			}
			char *local = strndup(pair, (size_t)(eq - pair));
			json_t *v = eq[1] != '\0' ? json_string(eq + 1) : json_null();
			if (local == NULL || v == NULL || json_object_get(body, local) != NULL) {
				bool dup = local != NULL && v != NULL;
				free(local);
				json_decref(v);
				json_decref(body);
				free(path);
				return usage_error(
				    "gateway",
				    dup ? "\"%s\" is mapped twice" : "\"%s\" must be UTF-8", pair);
			}
			json_object_set_new(body, local, v);
			free(local);
		}
		text = json_dumps(body, JSON_COMPACT);
		json_decref(body);
	}
	json_t *root = NULL;
	struct strbuf raw;
	int rc = api_json(c, text != NULL ? "PUT" : "GET", path, text, &root, &raw);
	free(text);
	free(path);
	if (rc != CTL_EXIT_OK)
		return rc;
	if (a->json)
		print_json_text(&raw);
	else
		gateway_mapping_print(root);
	strbuf_free(&raw);
	json_decref(root);
	return CTL_EXIT_OK;
}

static int cmd_gateway_list(struct ctl *c, struct args *a)
{
	json_t *root = NULL;
	struct strbuf raw;
	int rc = api_json(c, "GET", "/api/v1/gateways", NULL, &root, &raw);
	if (rc != CTL_EXIT_OK)
		return rc;
	if (a->json) {
		print_json_text(&raw);
	} else {
		size_t i;
		json_t *g;
		printf("%-24s %-10s %-39s %-16s %-16s %-19s %-16s %s\n", "NAME", "STATE", "ADDRESS",
		       "GROUP", "CLUSTER", "LAST SEEN", "VERSION", "MIGRATION");
		json_array_foreach(json_object_get(root, "gateways"), i, g)
		{
			char seen[32];
			gateway_time(json_object_get(g, "last_seen"), seen, sizeof(seen));
			put_cells(stdout, json_text(g, "name"), 64, 24);
			fputc(' ', stdout);
			put_cells(stdout, json_text(g, "state"), 10, 10);
			fputc(' ', stdout);
			put_cells(stdout, json_text(g, "address"), 45, 39);
			fputc(' ', stdout);
			put_cells(stdout, json_text(g, "group"), 64, 16);
			fputc(' ', stdout);
			put_cells(stdout, json_text(g, "cluster"), 64, 16);
			printf(" %-19s ", seen);
			put_cells(stdout, json_text(g, "version"), 64, 16);
			char mig[96];
			gateway_migration(json_object_get(g, "migration"), mig, sizeof(mig));
			printf(" %s\n", mig);
		}
	}
	strbuf_free(&raw);
	json_decref(root);
	return CTL_EXIT_OK;
}

static int cmd_gateway(struct ctl *c, struct args *a)
{
	const char *sub = a->npositional > 0 ? a->positional[0] : "";
	if (a->role != NULL || a->password_stdin)
		return usage_error("gateway", "--role and --password-stdin are for user add");
	if (a->automatic && strcmp(sub, "mapping") != 0)
		return usage_error("gateway", "--automatic is for gateway mapping");
	if (strcmp(sub, "add") == 0)
		return cmd_gateway_add(c, a);
	if (a->naddresses > 0 || a->group != NULL || a->cluster != NULL || a->release_port != 0)
		return usage_error("gateway",
				   "--address, --group, --cluster and --release-port are for "
				   "gateway add");
	if (strcmp(sub, "mapping") == 0)
		return cmd_gateway_mapping(c, a);
	if (strcmp(sub, "list") == 0 && a->npositional == 1)
		return cmd_gateway_list(c, a);
	if (strcmp(sub, "remove") == 0 && a->npositional == 2) {
		if (a->json)
			return usage_error("gateway", "gateway remove has no --json");
		char *esc = curl_easy_escape(c->curl, a->positional[1], 0);
		if (esc == NULL) {
			fprintf(stderr, "lazaretctl: out of memory\n");
			return CTL_EXIT_API;
		}
		char *path = ctl_xasprintf("/api/v1/gateways/%s", esc);
		curl_free(esc);
		json_t *root = NULL;
		int rc = api_json(c, "DELETE", path, NULL, &root, NULL);
		free(path);
		if (rc == CTL_EXIT_OK) {
			printf("removed gateway ");
			put_cells(stdout, a->positional[1], 64, 0);
			fputc('\n', stdout);
		}
		json_decref(root);
		return rc;
	}
	return usage_error("gateway", "gateway wants add NAME, list, remove NAME or mapping NAME");
}

/* One line per tracked message: RECEIVED ID SENDER RECIPIENTS STATE SUBJECT. */
static void print_tracking_table(json_t *messages)
{
	enum { NCOL = 6 };
	static const char *const titles[NCOL] = {"RECEIVED",   "ID",	"SENDER",
						 "RECIPIENTS", "STATE", "SUBJECT"};
	static const int cap[NCOL] = {-1, -1, CTL_SENDER_MAX_WIDTH, CTL_RCPTS_MAX_WIDTH, -1, -1};
	size_t n = json_array_size(messages);
	char **cellv = ctl_xrealloc(NULL, (n ? n : 1) * NCOL * sizeof(char *));
	int width[NCOL];
	for (int k = 0; k < NCOL; k++)
		width[k] = cells(titles[k]);
	for (size_t i = 0; i < n; i++) {
		json_t *m = json_array_get(messages, i);
		char tbuf[64];
		received_text(json_string_value(json_object_get(m, "received_at")), tbuf,
			      sizeof(tbuf));
		const char *sender = json_string_value(json_object_get(m, "sender"));
		const char *state = json_string_value(json_object_get(m, "last_state"));
		const char *subject = json_string_value(json_object_get(m, "subject"));
		const char *id = json_string_value(json_object_get(m, "id"));
		struct strbuf r = STRBUF_INIT;
		size_t j;
		json_t *x;
		json_array_foreach(json_object_get(m, "recipients"), j, x)
		{
			if (j > 0)
				strbuf_puts(&r, ", ");
			strbuf_puts(&r, json_string_value(x) ? json_string_value(x) : "");
		}
		char **row = &cellv[i * NCOL];
		row[0] = ctl_xstrdup(tbuf);
		row[1] = ctl_xstrdup(id ? id : "-");
		row[2] = ctl_xstrdup(sender == NULL ? "-" : sender[0] ? sender : "<>");
		row[3] = strbuf_take(&r);
		row[4] = ctl_xstrdup(state ? state : "-");
		row[5] = ctl_xstrdup(subject ? subject : "");
		for (int k = 0; k < NCOL - 1; k++) {
			int w = cells(row[k]);
			if (cap[k] >= 0 && w > cap[k])
				w = cap[k];
			if (w > width[k])
				width[k] = w;
		}
	}
	for (int k = 0; k < NCOL - 1; k++)
		put_cells(stdout, titles[k], -1, width[k] + 2);
	printf("%s\n", titles[NCOL - 1]);
	for (size_t i = 0; i < n; i++) {
		char **row = &cellv[i * NCOL];
		for (int k = 0; k < NCOL - 1; k++)
			put_cells(stdout, row[k], width[k], width[k] + 2);
		put_cells(stdout, row[NCOL - 1], -1, 0);
		fputc('\n', stdout);
		for (int k = 0; k < NCOL; k++)
			free(row[k]);
	}
	free(cellv);
}

/* track show ID: the message, its headers and its timeline. */
static int cmd_track_show(struct ctl *c, struct args *a)
{
	json_t *m = NULL;
	struct strbuf raw = STRBUF_INIT;
	struct strbuf path = STRBUF_INIT;
	strbuf_puts(&path, "/api/v1/tracking/messages/");
	char *esc = curl_easy_escape(c->curl, a->positional[1], 0);
	if (esc == NULL) {
		fprintf(stderr, "lazaretctl: out of memory\n");
		exit(CTL_EXIT_API);
	}
	strbuf_puts(&path, esc);
	curl_free(esc);
	int rc = api_json(c, "GET", strbuf_str(&path), NULL, &m, &raw);
	strbuf_free(&path);
	if (rc != CTL_EXIT_OK) {
		strbuf_free(&raw);
		return rc;
	}
	if (a->json) {
		print_json_text(&raw);
	} else {
		print_field("id:", json_string_value(json_object_get(m, "id")));
		print_field("gateway:", json_string_value(json_object_get(m, "gateway")));
		print_field("received:", json_string_value(json_object_get(m, "received_at")));
		print_field("sender:", json_string_value(json_object_get(m, "sender")));
		char *r = NULL;
		struct strbuf rb = STRBUF_INIT;
		size_t i;
		json_t *x;
		json_array_foreach(json_object_get(m, "recipients"), i, x)
		{
			if (i > 0)
				strbuf_puts(&rb, ", ");
			strbuf_puts(&rb, json_string_value(x) ? json_string_value(x) : "");
		}
		r = strbuf_take(&rb);
		print_field("recipients:", r);
		free(r);
		print_field("subject:", json_string_value(json_object_get(m, "subject")));
		print_field("message-id:", json_string_value(json_object_get(m, "message_id")));
		print_field("client:", json_string_value(json_object_get(m, "client_ip")));
		print_field("helo:", json_string_value(json_object_get(m, "helo")));
		print_field("state:", json_string_value(json_object_get(m, "last_state")));
		printf("headers:\n");
		print_headers(json_object_get(m, "headers"));
		printf("events:\n");
		json_array_foreach(json_object_get(m, "events"), i, x)
		{
			const char *at = json_string_value(json_object_get(x, "at"));
			const char *gw = json_string_value(json_object_get(x, "gateway"));
			const char *type = json_string_value(json_object_get(x, "type"));
			char *detail = json_dumps(json_object_get(x, "detail"), JSON_COMPACT);
			put_cells(stdout, at ? at : "-", -1, 0);
			fputc(' ', stdout);
			put_cells(stdout, gw ? gw : "-", -1, 0);
			fputc(' ', stdout);
			put_cells(stdout, type ? type : "-", -1, 0);
			fputc(' ', stdout);
			put_cells(stdout, detail ? detail : "{}", -1, 0);
			fputc('\n', stdout);
			free(detail);
		}
	}
	json_decref(m);
	strbuf_free(&raw);
	return CTL_EXIT_OK;
}

static int cmd_track(struct ctl *c, struct args *a)
{
	if (a->npositional > 0) {
		if (strcmp(a->positional[0], "show") != 0 || a->npositional != 2)
			return usage_error("track", "track wants filters, or show ID");
		return cmd_track_show(c, a);
	}
	json_t *all = json_array();
	json_t *page = NULL;
	struct strbuf raw = STRBUF_INIT;
	char *cursor = a->cursor ? ctl_xstrdup(a->cursor) : NULL;
	int rc = CTL_EXIT_OK;
	struct strbuf q = STRBUF_INIT;
	query_add(c, &q, "since", a->filter.since);
	query_add(c, &q, "until", a->filter.until);
	query_add(c, &q, "sender", a->filter.sender);
	query_add(c, &q, "recipient", a->filter.recipient);
	query_add(c, &q, "subject", a->filter.subject);
	query_add(c, &q, "subject_op", a->subject_op);
	query_add(c, &q, "message_id", a->message_id);
	query_add(c, &q, "gateway", a->filter.gateway);
	query_add(c, &q, "client_ip", a->client_ip);
	query_add(c, &q, "attachment", a->attachment);
	query_add(c, &q, "event", a->event);
	rc = fetch_pages(c, "/api/v1/tracking/messages", &q, a, &cursor, all, &page, &raw);
	strbuf_free(&q);
	if (rc != CTL_EXIT_OK)
		goto out;
	if (a->json) {
		json_t *o = json_pack("{s:O, s:s?}", "messages", all, "next_cursor", cursor);
		json_dumpf(o, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
		json_decref(o);
		goto out;
	}
	print_tracking_table(all);
	if (!a->all && cursor != NULL)
		fprintf(stderr, "more: --cursor %s (or --all)\n", cursor);
	else if (json_array_size(all) == 0)
		fprintf(stderr, "no messages\n");
out:
	json_decref(page);
	json_decref(all);
	strbuf_free(&raw);
	free(cursor);
	return rc;
}

/* ---- backup ---- */

/* The download of an archive: into fd while the status is 200, else kept as an error. */
struct backup_sink {
	CURL *curl;
	int fd;
	crypto_hash_sha256_state h;
	unsigned char tail[crypto_hash_sha256_BYTES]; /* the last bytes seen, in order */
	uint64_t n;
	struct strbuf err;
	bool write_failed, tty;
	time_t last_report;
};

static size_t backup_write_cb(char *p, size_t size, size_t nmemb, void *userdata)
{
	struct backup_sink *k = userdata;
	size_t n = size * nmemb;
	long status = 0;
	curl_easy_getinfo(k->curl, CURLINFO_RESPONSE_CODE, &status);
	if (status != 200) {
		if (k->err.len + n > 65536)
			return 0;
		strbuf_add(&k->err, p, n);
		return n;
	}
	size_t done = 0;
	while (done < n) {
		ssize_t w = write(k->fd, p + done, n - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			k->write_failed = true;
			return 0;
		}
		done += (size_t)w;
	}
	/* Everything but the last 32 bytes is hashed; those are the archive's checksum. */
	size_t t = sizeof(k->tail), held = k->n < t ? (size_t)k->n : t;
	if (n >= t) {
		crypto_hash_sha256_update(&k->h, k->tail, held);
		crypto_hash_sha256_update(&k->h, (const unsigned char *)p, n - t);
		memcpy(k->tail, p + n - t, t);
	} else {
		size_t out = held + n > t ? held + n - t : 0; /* leaves the window */
		crypto_hash_sha256_update(&k->h, k->tail, out);
		memmove(k->tail, k->tail + out, held - out);
		memcpy(k->tail + held - out, p, n);
	}
	k->n += n;
	return n;
}

static int backup_progress_cb(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ult,
			      curl_off_t ulnow)
{
	struct backup_sink *k = arg;
	time_t now = time(NULL);
	if (!k->tty || now == k->last_report)
		return 0;
	k->last_report = now;
	if (dltotal > 0)
		fprintf(stderr, "\rbackup: %.1f of %.1f MiB (%d%%)   ", dlnow / 1048576.0,
			dltotal / 1048576.0, (int)(dlnow * 100 / dltotal));
	else
		fprintf(stderr, "\rbackup: the manager is taking the snapshot...   ");
	return 0;
}

static int cmd_backup(struct ctl *c, struct args *a)
{
	const char *file = a->positional[0];
	int fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		fprintf(stderr, "lazaretctl: cannot create %s: %s%s\n", file, strerror(errno),
			errno == EEXIST ? " (a backup never overwrites a file)" : "");
		return CTL_EXIT_API;
	}
	if (sodium_init() < 0) {
		fprintf(stderr, "lazaretctl: cannot initialise libsodium\n");
		close(fd);
		unlink(file);
		return CTL_EXIT_API;
	}
	struct backup_sink k = {
	    .curl = c->curl, .fd = fd, .err = STRBUF_INIT, .tty = isatty(STDERR_FILENO) == 1};
	crypto_hash_sha256_init(&k.h);
	char *url = ctl_xasprintf("%s/api/v1/backup", c->url);
	char *auth = ctl_xasprintf("Authorization: Bearer %s", c->token != NULL ? c->token : "");
	char errbuf[CURL_ERROR_SIZE] = "";
	struct curl_slist *hdrs = NULL;
	hdrs = curl_slist_append(hdrs, auth);
	hdrs = curl_slist_append(hdrs, "Expect:");
	curl_easy_reset(c->curl);
	curl_easy_setopt(c->curl, CURLOPT_URL, url);
	curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT, CTL_CONNECT_TIMEOUT_S);
	curl_easy_setopt(c->curl, CURLOPT_TIMEOUT, c->timeout_given ? c->timeout_s : 0L);
	curl_easy_setopt(c->curl, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(c->curl, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(c->curl, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	if (c->cacert != NULL && c->cacert[0] != '\0')
		curl_easy_setopt(c->curl, CURLOPT_CAINFO, c->cacert);
	curl_easy_setopt(c->curl, CURLOPT_USERAGENT, "lazaretctl/" LAZARET_VERSION);
	curl_easy_setopt(c->curl, CURLOPT_POST, 1L);
	curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, "");
	curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE, 0L);
	curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, backup_write_cb);
	curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &k);
	curl_easy_setopt(c->curl, CURLOPT_XFERINFOFUNCTION, backup_progress_cb);
	curl_easy_setopt(c->curl, CURLOPT_XFERINFODATA, &k);
	curl_easy_setopt(c->curl, CURLOPT_NOPROGRESS, 0L);
	CURLcode cr = curl_easy_perform(c->curl);
	if (k.tty)
		fprintf(stderr, "\r%60s\r", "");
	long status = 0;
	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
	int rc = CTL_EXIT_API;
	unsigned char sum[crypto_hash_sha256_BYTES], want[crypto_hash_sha256_BYTES];
	crypto_hash_sha256_final(&k.h, sum);
	size_t t = sizeof(k.tail);
	memcpy(want, k.tail, t);
	if (cr != CURLE_OK && k.write_failed)
		fprintf(stderr, "lazaretctl: cannot write %s: %s\n", file, strerror(errno));
	else if (cr != CURLE_OK)
		fprintf(stderr, "lazaretctl: %s: %s\n", url,
			errbuf[0] ? errbuf : curl_easy_strerror(cr));
	else if (status != 200)
		print_api_error(status, &k.err);
	else if (k.n <= t || sodium_memcmp(sum, want, t) != 0)
		fprintf(stderr, "lazaretctl: the archive received does not match its checksum\n");
	else if (fsync(fd) < 0)
		fprintf(stderr, "lazaretctl: cannot write %s: %s\n", file, strerror(errno));
	else
		rc = CTL_EXIT_OK;
	if (close(fd) < 0 && rc == CTL_EXIT_OK) {
		fprintf(stderr, "lazaretctl: cannot write %s: %s\n", file, strerror(errno));
		rc = CTL_EXIT_API;
	}
	if (rc == CTL_EXIT_OK) {
		/* curl_easy_header's answer lasts until its next call: copy it. */
		struct curl_header *h = NULL;
		char backend[32] = "?";
		if (curl_easy_header(c->curl, "X-Lazaret-Backup-Backend", 0, CURLH_HEADER, -1,
				     &h) == CURLHE_OK)
			snprintf(backend, sizeof(backend), "%s", h->value);
		bool db = curl_easy_header(c->curl, "X-Lazaret-Backup-Database", 0, CURLH_HEADER,
					   -1, &h) == CURLHE_OK &&
			  strcmp(h->value, "yes") == 0;
		char hex[2 * crypto_hash_sha256_BYTES + 1];
		sodium_bin2hex(hex, sizeof(hex), want, sizeof(want));
		printf("wrote %s: %llu bytes, sha256 %s\n", file, (unsigned long long)k.n, hex);
		if (db)
			printf("covers: the store's database (%s: messages and bodies, recipients' "
			       "states, release queue, safelists, accounts, audit, gateways and "
			       "tokens, tracking and reports, secrets) and data_dir's files\n",
			       backend);
		else
			printf("covers: data_dir's files only. The %s database is NOT in this "
			       "file: back it up with pg_dump or pgBackRest (docs/OPERATIONS.md)\n",
			       backend);
	} else {
		unlink(file);
	}
	strbuf_free(&k.err);
	curl_slist_free_all(hdrs);
	free(auth);
	free(url);
	return rc;
}

static const struct command commands[] = {
    {"quarantines", cmd_quarantines, 0, false, false, false, false, true},
    {"search", cmd_search, 0, true, true, false, false, true},
    {"show", cmd_show, 1, false, false, false, false, true},
    {"raw", cmd_raw, 1, false, false, false, false, false},
    {"release", cmd_release, 1, true, false, true, true, true},
    {"delete", cmd_delete, 1, true, false, true, true, true},
    {"health", cmd_health, 0, false, false, false, false, false},
    /* Positional words are checked by cmd_user (SIZE_MAX: any count). */
    {"user", cmd_user, SIZE_MAX, false, false, false, false, true},
    {"gateway", cmd_gateway, SIZE_MAX, false, false, false, false, true},
    /* Positional words ("show ID") are checked by cmd_track. */
    {"track", cmd_track, SIZE_MAX, true, true, false, false, true},
    {"backup", cmd_backup, 1, false, false, false, false, false},
};

/*
 * Parses argv into *a and the connection settings into *c. Options may come before
 * or after the command. Returns CTL_EXIT_OK, or CTL_EXIT_USAGE after printing why.
 */
static int parse_args(int argc, char **argv, struct ctl *c, struct args *a,
		      const struct command **cmd)
{
	int opt;
	bool filter_flag_seen = false, paging_seen = false;

	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "-h", long_options, NULL)) != -1) {
		char **since_until = NULL;
		switch (opt) {
		case 1: /* a non-option: the command, then its arguments */
			if (a->command == NULL)
				a->command = optarg;
			else if (a->npositional < sizeof(a->positional) / sizeof(a->positional[0]))
				a->positional[a->npositional++] = optarg;
			else
				return usage_error(a->command, "too many arguments");
			break;
		case 'h':
			a->help = true;
			break;
		case OPT_URL:
			c->url = optarg;
			break;
		case OPT_CACERT:
			c->cacert = optarg;
			break;
		case OPT_TOKEN:
			c->token = optarg;
			break;
		case OPT_TIMEOUT: {
			char *end;
			long t = strtol(optarg, &end, 10);
			if (*optarg == '\0' || *end != '\0' || t <= 0 || t > 86400)
				return usage_error(NULL, "--timeout wants seconds (1..86400)");
			c->timeout_s = t;
			c->timeout_given = true;
			break;
		}
		case OPT_JSON:
			a->json = true;
			break;
		case OPT_QUARANTINE:
			a->filter.quarantine = optarg;
			filter_flag_seen = true;
			break;
		case OPT_RECIPIENT:
			a->filter.recipient = optarg;
			filter_flag_seen = true;
			break;
		case OPT_SENDER:
			a->filter.sender = optarg;
			filter_flag_seen = true;
			break;
		case OPT_SUBJECT:
			a->filter.subject = optarg;
			filter_flag_seen = true;
			break;
		case OPT_SINCE:
		case OPT_UNTIL:
			since_until = opt == OPT_SINCE ? &a->filter.since : &a->filter.until;
			free(*since_until);
			*since_until = NULL;
			if (time_arg(optarg, since_until) < 0)
				return usage_error(a->command, "%s: not a time: %s",
						   opt == OPT_SINCE ? "--since" : "--until",
						   optarg);
			filter_flag_seen = true;
			break;
		case OPT_VERDICT:
			a->filter.verdict = optarg;
			filter_flag_seen = true;
			break;
		case OPT_GATEWAY:
			a->filter.gateway = optarg;
			filter_flag_seen = true;
			break;
		case OPT_STATE:
			a->filter.state = optarg;
			filter_flag_seen = true;
			break;
		case OPT_LIMIT: {
			char *end;
			long n = strtol(optarg, &end, 10);
			if (*optarg == '\0' || *end != '\0' || n < 1 || n > 1000)
				return usage_error(a->command, "--limit wants 1..1000");
			a->limit = optarg;
			paging_seen = true;
			break;
		}
		case OPT_CURSOR:
			a->cursor = optarg;
			paging_seen = true;
			break;
		case OPT_ALL:
			a->all = true;
			paging_seen = true;
			break;
		case OPT_WIDE:
			a->wide = true;
			paging_seen = true;
			break;
		case OPT_RCPT:
			if (a->nrcpts == CTL_MAX_RCPTS)
				return usage_error(a->command, "more than %d --rcpt",
						   CTL_MAX_RCPTS);
			a->rcpts[a->nrcpts++] = optarg;
			break;
		case OPT_FILTER:
			a->bulk = true;
			break;
		case OPT_NO_RESCAN:
			a->no_rescan = true;
			break;
		case OPT_ROLE:
			a->role = optarg;
			break;
		case OPT_ADDRESS:
			if (a->naddresses == CTL_MAX_RCPTS)
				return usage_error(a->command, "more than %d --address",
						   CTL_MAX_RCPTS);
			a->addresses[a->naddresses++] = optarg;
			break;
		case OPT_PASSWORD_STDIN:
			a->password_stdin = true;
			break;
		case OPT_GROUP:
			a->group = optarg;
			break;
		case OPT_CLUSTER:
			a->cluster = optarg;
			break;
		case OPT_SUBJECT_OP:
			a->subject_op = optarg;
			a->track_seen = true;
			break;
		case OPT_MESSAGE_ID:
			a->message_id = optarg;
			a->track_seen = true;
			break;
		case OPT_CLIENT_IP:
			a->client_ip = optarg;
			a->track_seen = true;
			break;
		case OPT_ATTACHMENT:
			a->attachment = optarg;
			a->track_seen = true;
			break;
		case OPT_EVENT:
			a->event = optarg;
			a->track_seen = true;
			break;
		case OPT_AUTOMATIC:
			a->automatic = true;
			break;
		case OPT_RELEASE_PORT: {
			char *end;
			long n = strtol(optarg, &end, 10);
			if (*optarg == '\0' || *end != '\0' || n < 1 || n > 65535)
				return usage_error(a->command, "--release-port wants 1..65535");
			a->release_port = n;
			break;
		}
		case '?':
		default:
			if (optopt != 0 && optopt < 256)
				return usage_error(a->command, "unknown option -%c", optopt);
			if (optopt != 0)
				return usage_error(a->command, "option needs a value: %s",
						   argv[optind - 1]);
			return usage_error(a->command, "unknown option %s", argv[optind - 1]);
		}
	}
	a->any_filter = filter_flag_seen;

	if (a->command == NULL && a->help)
		return CTL_EXIT_OK;
	if (a->command == NULL)
		return usage_error(NULL, "no command given");
	if (strcmp(a->command, "help") == 0 || a->help)
		return CTL_EXIT_OK;
	*cmd = NULL;
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(commands[i].name, a->command) == 0)
			*cmd = &commands[i];
	if (*cmd == NULL)
		return usage_error(NULL, "unknown command: %s", a->command);

	const struct command *k = *cmd;
	if (a->json && !k->json)
		return usage_error(k->name, "%s has no --json", k->name);
	if (paging_seen && !k->paging)
		return usage_error(k->name, "--limit/--cursor/--all/--wide are for search");
	if (a->track_seen && strcmp(k->name, "track") != 0)
		return usage_error(k->name, "--subject-op/--message-id/--client-ip/--attachment/"
					    "--event are for track");
	if (a->all && a->cursor)
		return usage_error(k->name, "--all and --cursor exclude each other");
	if (a->nrcpts > 0 && !k->rcpts)
		return usage_error(k->name, "%s has no --rcpt", k->name);
	if (a->bulk && !k->bulk)
		return usage_error(k->name, "%s has no --filter", k->name);
	if (a->no_rescan && strcmp(k->name, "release") != 0)
		return usage_error(k->name, "--no-rescan is for release");
	if (a->no_rescan && a->filter.quarantine == NULL)
		return usage_error(k->name, "--no-rescan needs --quarantine (the outbreak "
					    "quarantine the message is released from)");
	if (k->bulk && a->bulk) {
		if (a->npositional > 0)
			return usage_error(k->name, "--filter takes no message id");
		if (a->nrcpts > 0)
			return usage_error(k->name, "--filter takes no --rcpt (use --recipient)");
		/* Releasing or deleting everything must not be one typo away. */
		if (filter_empty(&a->filter))
			return usage_error(k->name, "--filter needs at least one filter");
		return CTL_EXIT_OK;
	}
	if (filter_flag_seen && !k->filters)
		return usage_error(k->name, "%s takes no filters", k->name);
	if (filter_flag_seen && k->bulk) {
		/* one PVO message: --quarantine alone names its membership */
		struct filter rest = a->filter;
		rest.quarantine = NULL;
		if (a->filter.quarantine == NULL || !filter_empty(&rest))
			return usage_error(k->name, "filters need --filter");
		if (a->nrcpts > 0)
			return usage_error(k->name, "--quarantine takes no --rcpt: a policy, "
						    "virus or outbreak message leaves a "
						    "quarantine for all its recipients");
	}
	if ((a->group != NULL || a->cluster != NULL || a->release_port != 0) &&
	    strcmp(k->name, "gateway") != 0)
		return usage_error(k->name,
				   "--group, --cluster and --release-port are for gateway add");
	if (a->automatic && strcmp(k->name, "gateway") != 0)
		return usage_error(k->name, "--automatic is for gateway mapping");
	if (k->positional == SIZE_MAX)
		return CTL_EXIT_OK;
	if ((a->role != NULL || a->naddresses > 0 || a->password_stdin) &&
	    strcmp(k->name, "user") != 0)
		return usage_error(k->name,
				   "--role, --address and --password-stdin are for user add");
	if (a->npositional != k->positional)
		return usage_error(
		    k->name, k->positional ? "%s needs one message id" : "%s takes no arguments",
		    k->name);
	if (k->positional && a->positional[0][0] == '\0')
		return usage_error(k->name, "empty message id");
	return CTL_EXIT_OK;
}

static int run_help(struct args *a)
{
	const char *topic = NULL;
	if (strcmp(a->command, "help") == 0)
		topic = a->npositional > 0 ? a->positional[0] : NULL;
	else
		topic = a->command;
	if (topic == NULL) {
		print_usage(stdout);
		return CTL_EXIT_OK;
	}
	const struct command_help *h = command_help_find(topic);
	if (h == NULL)
		return usage_error(NULL, "no such command: %s", topic);
	print_command_help(stdout, h);
	return CTL_EXIT_OK;
}

int main(int argc, char **argv)
{
	struct ctl c = {0};
	struct args a = {0};
	const struct command *cmd = NULL;
	int rc;

	/* Display widths of Japanese text need a UTF-8 character type, whatever LANG says. */
	if (setlocale(LC_CTYPE, "C.UTF-8") == NULL)
		setlocale(LC_CTYPE, "");
	c.url = getenv("LAZARET_URL");
	c.token = getenv("LAZARET_TOKEN");
	c.cacert = getenv("LAZARET_CACERT");
	c.timeout_s = CTL_DEFAULT_TIMEOUT_S;

	rc = parse_args(argc, argv, &c, &a, &cmd);
	if (rc != CTL_EXIT_OK)
		goto out;
	if (a.help && a.command == NULL) {
		print_usage(stdout);
		goto out;
	}
	if (a.help || strcmp(a.command, "help") == 0) {
		rc = run_help(&a);
		goto out;
	}
	if (c.url == NULL || c.url[0] == '\0')
		c.url = CTL_DEFAULT_URL;
	c.url_buf = ctl_xstrdup(c.url);
	size_t ulen = strlen(c.url_buf);
	while (ulen > 0 && c.url_buf[ulen - 1] == '/')
		c.url_buf[--ulen] = '\0';
	c.url = c.url_buf;

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
		fprintf(stderr, "lazaretctl: cannot initialise libcurl\n");
		rc = CTL_EXIT_API;
		goto out;
	}
	c.curl = curl_easy_init();
	if (c.curl == NULL) {
		fprintf(stderr, "lazaretctl: cannot initialise libcurl\n");
		rc = CTL_EXIT_API;
		curl_global_cleanup();
		goto out;
	}
	rc = cmd->run(&c, &a);
	if (fflush(stdout) != 0 && rc == CTL_EXIT_OK) {
		perror("lazaretctl: stdout");
		rc = CTL_EXIT_API;
	}
	curl_easy_cleanup(c.curl);
	curl_global_cleanup();
out:
	filter_free(&a.filter);
	free(c.url_buf);
	return rc;
}
