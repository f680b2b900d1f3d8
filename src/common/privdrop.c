/*
 * privdrop — creating a daemon's data folder and dropping root for its service
 * user (see privdrop.h). The order is the caller's: bind privileged ports first,
 * then privdrop_make_dirs() and privdrop_to_user(), then open stores and other
 * listeners as the service user.
 * Not for: anything after start-up; a reload never regains or drops privileges.
 */
#include "common/privdrop.h"

#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/xalloc.h"

/* Room for "<who>.privdrop_skipped" with a short program name. */
#define PRIVDROP_EVENT_MAX 64

/* mkdir that accepts an existing folder (and nothing else) in its place. */
static int make_one(const char *path, mode_t mode)
{
	if (mkdir(path, mode) == 0)
		return 0;
	int e = errno;
	struct stat st;
	if (e == EEXIST) {
		if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
			return 0;
		return -ENOTDIR;
	}
	return -e;
}

int privdrop_make_dirs(const char *path)
{
	if (path == NULL || path[0] == '\0')
		return -EINVAL;
	char *p = xstrdup(path);
	int rc = 0;
	/* "var/gw1/" is "var/gw1": the last folder gets the private mode. */
	for (size_t n = strlen(p); n > 1 && p[n - 1] == '/'; n--)
		p[n - 1] = '\0';
	for (char *s = p + 1; *s != '\0'; s++) {
		if (*s != '/' || s[-1] == '/')
			continue;
		*s = '\0';
		rc = make_one(p, 0755);
		*s = '/';
		if (rc < 0)
			goto fail;
	}
	rc = make_one(p, 0700);
fail:
	free(p);
	return rc;
}

static const char *event_name(char *buf, size_t size, const char *who, const char *what)
{
	snprintf(buf, size, "%s.%s", who, what);
	return buf;
}

int privdrop_to_user(const char *who, const char *user, const char *data_dir)
{
	char ev[PRIVDROP_EVENT_MAX];
	if (geteuid() != 0)
		return 0;
	struct passwd *pw = getpwnam(user);
	if (pw == NULL) {
		log_warn(event_name(ev, sizeof(ev), who, "privdrop_skipped"),
			 "user=%s reason=\"no such user; running as root\"", user);
		return 0;
	}
	/* The store, its journal and caches were perhaps created by root earlier. */
	if (chown(data_dir, pw->pw_uid, pw->pw_gid) < 0)
		return -errno;
	DIR *d = opendir(data_dir);
	if (d != NULL) {
		struct dirent *de;
		while ((de = readdir(d)) != NULL) {
			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			char *f = xasprintf("%s/%s", data_dir, de->d_name);
			if (chown(f, pw->pw_uid, pw->pw_gid) < 0)
				log_warn(event_name(ev, sizeof(ev), who, "chown_failed"), "file=%s",
					 f);
			free(f);
		}
		closedir(d);
	}
	if (setgroups(1, &pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0)
		return -errno;
	if (setuid(0) == 0)
		panic("privileges could be regained after dropping them");
	log_info(event_name(ev, sizeof(ev), who, "privdrop"), "user=%s uid=%ld", user,
		 (long)pw->pw_uid);
	return 0;
}
