/*
 * api_backup — the backup route (see the header). The archive is written by a
 * reader thread (api_read.h) into an unnamed file in data_dir, then sent from
 * it as the connection drains; the file goes when the reply is sent. One backup
 * at a time: another request meanwhile gets 409. Every backup is audited
 * (backup, with its size and checksum) and logged.
 */
#include "api/api_backup.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"
#include "api/api_read.h"
#include "common/xalloc.h"
#include "http/http_server.h"
#include "quarantine/backup.h"

struct api_backup {
	struct api *a;
	char *backend, *data_dir, *manager_name;
};

struct api_backup_job {
	struct api_backup *b;
	struct backup_info info;
	bool ok;
};

/* An unnamed file in dir, readable by nobody else: the archive holds secrets. */
static int api_backup_tmpfile(const char *dir)
{
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
		return fd < 0 ? -errno : fd;
	char *p = xasprintf("%s/.backup-XXXXXX", dir);
	fd = mkostemp(p, O_CLOEXEC);
	if (fd >= 0)
		unlink(p);
	int rc = fd < 0 ? -errno : fd;
	free(p);
	return rc;
}

/* Reader thread. */
static void api_backup_run(void *arg, struct api_read_reply *out)
{
	struct api_backup_job *j = arg;
	struct api_backup *b = j->b;
	int fd = api_backup_tmpfile(b->data_dir);
	if (fd < 0) {
		api_read_reply_error(out, 500, "cannot create a file in data_dir: %s",
				     strerror(-fd));
		return;
	}
	char *err = NULL;
	int rc = backup_write(api_store(b->a), b->backend, b->data_dir, b->manager_name, fd,
			      &j->info, &err);
	if (rc == -EBUSY) {
		api_read_reply_error(out, 409, "another backup is running; try again when it ends");
	} else if (rc < 0) {
		api_read_reply_error(out, 500, "the backup failed: %s", err != NULL ? err : "?");
	} else if (lseek(fd, 0, SEEK_SET) != 0) {
		api_read_reply_error(out, 500, "cannot read the archive back");
	} else {
		char when[32];
		time_t t = (time_t)(j->info.created_at / 1000);
		struct tm tm;
		gmtime_r(&t, &tm);
		strftime(when, sizeof(when), "%Y%m%dT%H%M%SZ", &tm);
		out->disposition = xasprintf("attachment; filename=\"" BACKUP_FILE_PREFIX
					     "%s" BACKUP_FILE_SUFFIX "\"",
					     when);
		api_read_reply_file(out, 200, "application/octet-stream", fd,
				    (size_t)j->info.bytes);
		j->ok = true;
		fd = -1;
	}
	free(err);
	if (fd >= 0)
		close(fd);
}

/* Loop thread, before the reply: what the archive holds, and the audit row. */
static void api_backup_finish(struct http_server_request *req, void *arg,
			      const struct api_read_reply *out)
{
	struct api_backup_job *j = arg;
	if (!j->ok)
		return;
	http_server_add_header(req, "X-Lazaret-Backup-SHA256", j->info.sha256);
	http_server_add_header(req, "X-Lazaret-Backup-Backend", j->info.backend);
	http_server_add_header(req, "X-Lazaret-Backup-Database", j->info.database ? "yes" : "no");
	api_audit(j->b->a, req, "backup", NULL,
		  json_pack("{s:I, s:s, s:b}", "bytes", (json_int_t)j->info.bytes, "sha256",
			    j->info.sha256, "database", j->info.database));
}

/* POST /api/v1/backup */
static void api_backup_post(struct http_server_request *req, void *arg)
{
	struct api_backup *b = arg;
	if (!api_require_role(b->a, req, API_ROLE_ADMIN))
		return;
	struct api_backup_job *j = xcalloc(1, sizeof(*j));
	j->b = b;
	api_read_submit(api_reads(b->a), req, "backup", api_backup_run, api_backup_finish, j, free);
}

struct api_backup *api_backup_attach(struct api *a, const struct api_backup_config *cfg)
{
	struct api_backup *b = xcalloc(1, sizeof(*b));
	b->a = a;
	b->backend = xstrdup(cfg->backend);
	b->data_dir = xstrdup(cfg->data_dir);
	b->manager_name = xstrdup_or_null(cfg->manager_name);
	static const struct http_server_route_row routes[] = {
	    {"POST", "/api/v1/backup", HTTP_SERVER_ROUTE_AUTH, api_backup_post},
	};
	http_server_route_table(api_http(a), routes, sizeof(routes) / sizeof(routes[0]), b);
	return b;
}

void api_backup_free(struct api_backup *b)
{
	if (b == NULL)
		return;
	free(b->backend);
	free(b->data_dir);
	free(b->manager_name);
	free(b);
}
