/*
 * api_static — serves the web application (the console for administrators and the
 * end users' quarantine portal) from the folder api_config.web_root: index.html for
 * "/" and for the application's own routes ("/messages", "/m/{id}", "/login"), the
 * files beside it (scripts, styles, images) by name.
 *
 * A request path is checked before it comes near the file system: only
 * [A-Za-z0-9._~-] and "/" are allowed, no segment may be empty or start with a dot,
 * so "..", encoded forms ("%2e%2e", "%00", "%5c"), backslashes and hidden files never
 * reach open(). The file's real path (symbolic links resolved) must then still lie
 * under the real path of the web root, and be a regular file of a type we know.
 * There is no directory listing. Every answer carries an ETag and a Last-Modified;
 * a matching If-None-Match (or, without one, If-Modified-Since) answers 304.
 * Files are revalidated on each use (Cache-Control: no-cache): they have no
 * fingerprints in their names, so an upgrade must be seen at once.
 * The security headers (CSP default-src 'self', nosniff) come from http_server;
 * the application therefore has no inline script or style.
 *
 * Not for: the API, uploads, templating, compression.
 */
#include "api/api_static.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/xalloc.h"
#include "http/http_server.h"
#include "api/api.h"

static const struct {
	const char *ext;
	const char *type;
} api_static_types[] = {
    {".html", "text/html; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".mjs", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".ico", "image/x-icon"},
    {".woff2", "font/woff2"},
    {".json", "application/json"},
    {".webmanifest", "application/manifest+json"},
    {".txt", "text/plain; charset=utf-8"},
};

const char *api_static_content_type(const char *name)
{
	const char *slash = strrchr(name, '/');
	const char *dot = strrchr(slash != NULL ? slash : name, '.');
	if (dot == NULL)
		return NULL;
	for (size_t i = 0; i < sizeof(api_static_types) / sizeof(api_static_types[0]); i++) {
		if (strcmp(dot, api_static_types[i].ext) == 0)
			return api_static_types[i].type;
	}
	return NULL;
}

/* True when path is prefix itself or lies under it ("/api" and "/api/x", not "/apix"). */
static bool api_static_under(const char *path, const char *prefix)
{
	size_t n = strlen(prefix);
	return strncmp(path, prefix, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

static bool api_static_char_ok(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == '-' || c == '~' || c == '/';
}

int api_static_classify(const char *path, const char **rel)
{
	if (path == NULL || path[0] != '/')
		return -EINVAL;
	/* /auth: single sign-on's own paths, 404 while it is off (not the application). */
	if (api_static_under(path, "/api") || api_static_under(path, "/healthz") ||
	    api_static_under(path, "/metrics") || api_static_under(path, "/auth"))
		return -EINVAL;
	if (strcmp(path, "/") == 0) {
		*rel = "index.html";
		return 0;
	}
	for (const char *p = path; *p != '\0'; p++) {
		if (!api_static_char_ok(*p))
			return -EINVAL;
	}
	const char *last = path;
	for (const char *seg = path + 1;; seg++) {
		/* seg is the start of a segment: it may be neither empty nor hidden. */
		if (*seg == '/' || *seg == '\0' || *seg == '.')
			return -EINVAL;
		last = seg;
		seg = strchr(seg, '/');
		if (seg == NULL)
			break;
	}
	*rel = strchr(last, '.') == NULL ? "index.html" : path + 1;
	return 0;
}

/* "Thu, 27 Nov 2026 19:30:00 GMT" of t. */
static void api_static_http_date(time_t t, char *out, size_t size)
{
	struct tm tm;
	static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
					   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	gmtime_r(&t, &tm);
	/* Not strftime: %a and %b follow the locale, HTTP dates do not. */
	snprintf(out, size, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday], tm.tm_mday,
		 months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* Parses an HTTP date (IMF-fixdate only; others are ignored): 0 or -EINVAL. */
static int api_static_parse_http_date(const char *s, time_t *out)
{
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	char mon[4], day[4];
	int mday, year, h, m, sec;
	if (s == NULL ||
	    sscanf(s, "%3s, %d %3s %d %d:%d:%d GMT", day, &mday, mon, &year, &h, &m, &sec) != 7)
		return -EINVAL;
	const char *found = strstr(months, mon);
	if (found == NULL || strlen(mon) != 3 || (found - months) % 3 != 0)
		return -EINVAL;
	tm.tm_mon = (int)((found - months) / 3);
	tm.tm_mday = mday;
	tm.tm_year = year - 1900;
	tm.tm_hour = h;
	tm.tm_min = m;
	tm.tm_sec = sec;
	*out = timegm(&tm);
	return 0;
}

/* True when one of the entity tags in an If-None-Match list is etag (or it is "*"). */
static bool api_static_etag_listed(const char *list, const char *etag)
{
	size_t n = strlen(etag);
	for (const char *p = list; *p != '\0';) {
		p += strspn(p, " \t,");
		if (*p == '*')
			return true;
		if (strncmp(p, "W/", 2) == 0)
			p += 2;
		if (strncmp(p, etag, n) == 0 && (p[n] == '\0' || p[n] == ',' || p[n] == ' '))
			return true;
		p += strcspn(p, ",");
	}
	return false;
}

/* Reads the regular file at path (at most API_STATIC_MAX_FILE_SIZE). 0 or negative errno. */
static int api_static_read(const char *path, struct stat *st, char **data)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	char *buf = NULL;
	int rc;
	if (fd < 0)
		return -errno;
	if (fstat(fd, st) < 0) {
		rc = -errno;
		goto fail;
	}
	if (!S_ISREG(st->st_mode)) {
		rc = -ENOENT;
		goto fail;
	}
	if (st->st_size > API_STATIC_MAX_FILE_SIZE) {
		rc = -EFBIG;
		goto fail;
	}
	size_t size = (size_t)st->st_size, got = 0;
	buf = xmalloc(size + 1);
	while (got < size) {
		ssize_t r = read(fd, buf + got, size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			rc = r < 0 ? -errno : -EIO;
			goto fail;
		}
		got += (size_t)r;
	}
	close(fd);
	*data = buf;
	return 0;

fail:
	free(buf);
	close(fd);
	return rc;
}

static void api_static_not_found(struct http_server_request *req)
{
	http_server_reply_error(req, 404, "no such resource");
}

static void api_static_serve(struct http_server_request *req, void *arg)
{
	struct api *a = arg;
	const char *root = api_current_config(a)->web_root;
	const char *rel = NULL;
	char *root_real = NULL, *joined = NULL, *file_real = NULL, *data = NULL;
	if (root == NULL || api_static_classify(http_server_request_path(req), &rel) < 0) {
		api_static_not_found(req);
		return;
	}
	const char *type = api_static_content_type(rel);
	root_real = realpath(root, NULL);
	if (type == NULL || root_real == NULL) {
		if (root_real == NULL)
			log_warn("web.root_missing", "web_root=%s error=%s", root, strerror(errno));
		api_static_not_found(req);
		goto done;
	}
	joined = xasprintf("%s/%s", root_real, rel);
	file_real = realpath(joined, NULL);
	size_t rlen = strlen(root_real);
	/* Whatever links the tree holds, the file must lie inside the root. */
	if (file_real == NULL || strncmp(file_real, root_real, rlen) != 0 ||
	    file_real[rlen] != '/') {
		api_static_not_found(req);
		goto done;
	}
	struct stat st;
	int rc = api_static_read(file_real, &st, &data);
	if (rc < 0) {
		if (rc != -ENOENT)
			log_warn("web.read_failed", "file=%s error=%s", file_real, strerror(-rc));
		api_static_not_found(req);
		goto done;
	}
	char etag[64], modified[64];
	snprintf(etag, sizeof(etag), "\"%llx-%llx-%lx\"", (unsigned long long)st.st_size,
		 (unsigned long long)st.st_mtim.tv_sec, (unsigned long)st.st_mtim.tv_nsec);
	api_static_http_date(st.st_mtim.tv_sec, modified, sizeof(modified));
	http_server_add_header(req, "ETag", etag);
	http_server_add_header(req, "Last-Modified", modified);
	http_server_add_header(req, "Cache-Control", "no-cache");
	http_server_add_header(req, "X-Frame-Options", "DENY");
	http_server_add_header(req, "Referrer-Policy", "same-origin");

	const char *inm = http_server_request_header(req, "If-None-Match");
	const char *ims = http_server_request_header(req, "If-Modified-Since");
	time_t since;
	bool fresh = inm != NULL ? api_static_etag_listed(inm, etag)
				 : ims != NULL && api_static_parse_http_date(ims, &since) == 0 &&
				       st.st_mtim.tv_sec <= since;
	if (fresh)
		http_server_reply_bytes(req, 304, type, "", 0);
	else
		http_server_reply_bytes(req, 200, type, data, (size_t)st.st_size);

done:
	free(data);
	free(file_real);
	free(joined);
	free(root_real);
}

void api_static_register(struct api *a)
{
	/* "/", "/{p1}", "/{p1}/{p2}", ...: the router has no wildcard, so one per depth. */
	char pattern[API_STATIC_MAX_DEPTH * 8 + 2];
	if (http_server_route(api_http(a), "GET", "/", HTTP_SERVER_ROUTE_PUBLIC, api_static_serve,
			      a) < 0)
		panic("api_static: cannot add route /");
	size_t len = 0;
	for (int depth = 1; depth <= API_STATIC_MAX_DEPTH; depth++) {
		len += (size_t)snprintf(pattern + len, sizeof(pattern) - len, "/{p%d}", depth);
		if (http_server_route(api_http(a), "GET", pattern, HTTP_SERVER_ROUTE_PUBLIC,
				      api_static_serve, a) < 0)
			panic("api_static: cannot add route %s", pattern);
	}
}
