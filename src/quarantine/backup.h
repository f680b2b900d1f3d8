/*
 * backup — the manager's backup archive: writing one while the manager runs
 * (lazaretctl backup through POST /api/v1/backup, and the [backup] schedule),
 * and restoring one into an empty data_dir (lazaretd --restore).
 *
 * The archive (all integers big-endian; docs/OPERATIONS.md):
 *   magic      8 bytes  "LZBACKUP"
 *   version    u32      BACKUP_FORMAT_VERSION
 *   header     u32 length, then a JSON object: format, backend, created_at (Unix
 *              ms), created (RFC 3339), lazaret_version, manager, database (bool)
 *   members    each: 'F', u16 name length, name, u64 size, the bytes. The first is
 *              "lazaret.db" (SQLite: the store as of one moment, VACUUM INTO), then
 *              the other plain files of data_dir (digest.key)
 *   end        'E', then the SHA-256 of every byte before it
 * A member's name is one plain file name ([A-Za-z0-9][A-Za-z0-9._-]*, at most
 * 64 characters): never a path, so a crafted archive writes nowhere but data_dir.
 *
 * On PostgreSQL the database is not in the archive ("database": false): it is
 * backed up with PostgreSQL's own tools; the archive keeps data_dir's files.
 */
#ifndef LAZARET_BACKUP_H
#define LAZARET_BACKUP_H

#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct store;

#define BACKUP_MAGIC	      "LZBACKUP"
#define BACKUP_FORMAT_VERSION 1
/* The store's file in data_dir and the archive's member for it. */
#define BACKUP_DB_MEMBER "lazaret.db"
/* Scheduled archives: BACKUP_FILE_PREFIX + UTC time + BACKUP_FILE_SUFFIX. */
#define BACKUP_FILE_PREFIX "lazaret-"
#define BACKUP_FILE_SUFFIX ".lzb"

/* What a written or restored archive holds. */
struct backup_info {
	uint64_t bytes;	    /* the archive's size */
	bool database;	    /* the store's database is in it */
	unsigned files;	    /* members, the database included */
	int64_t created_at; /* Unix ms */
	char backend[16];
	char version[32];
	char sha256[65]; /* hex */
};

/* Why a restore failed; lazaretd --restore exits with these (docs/OPERATIONS.md). */
enum backup_restore_error {
	BACKUP_ERR_IO = 1,	  /* the file cannot be read, data_dir cannot be written */
	BACKUP_ERR_FOREIGN = 3,	  /* not a Lazaret backup */
	BACKUP_ERR_CORRUPT = 4,	  /* checksum mismatch, malformed content */
	BACKUP_ERR_TRUNCATED = 5, /* ends before its checksum */
	BACKUP_ERR_MISMATCH = 6,  /* another backend, or a format version we do not read */
	BACKUP_ERR_NOT_EMPTY = 7, /* data_dir has files */
};

/*
 * Writes an archive of st (backend "sqlite" or "postgresql") and data_dir's files
 * to fd, which must be a new, empty file. Blocking: for a thread off the loop. The
 * database copy goes through a temporary file in data_dir. One backup runs at a
 * time in a process: -EBUSY while another does. Logs backup.progress every
 * BACKUP_PROGRESS_BYTES. 0 (info filled) or a negative errno, with *err a new
 * message.
 */
#define BACKUP_PROGRESS_BYTES ((uint64_t)256 << 20)
int backup_write(struct store *st, const char *backend, const char *data_dir,
		 const char *manager_name, int fd, struct backup_info *info, char **err);

/*
 * Restores the archive at path into data_dir (created when missing; it must hold
 * nothing) for a manager configured with backend. Everything is checked (format,
 * backend, names, checksum) before a file gets its final name: on failure
 * data_dir is left as it was. 0 (info filled), or a negative enum
 * backup_restore_error with *err a new message.
 */
int backup_restore(const char *path, const char *data_dir, const char *backend,
		   struct backup_info *info, char **err);

/* True for a name an archive member may have. */
bool backup_member_name_ok(const char *name);

/*
 * The [backup] schedule: every every_ms an archive into dir (created 0700 when
 * missing) named lazaret-YYYYMMDDTHHMMSS.mmmZ.lzb, written as a hidden file and
 * renamed when complete; then only the newest keep archives stay. The first is
 * due every_ms after the newest archive already in dir (at once when that is
 * past; every_ms after the start when there is none). NULL dir: returns NULL.
 */
struct backup_schedule;
struct backup_schedule *backup_schedule_new(struct event_base *base, struct store *st,
					    const char *backend, const char *data_dir,
					    const char *manager_name, const char *dir,
					    int64_t every_ms, unsigned keep);
/* Waits for a backup in progress. NULL is a no-op. */
void backup_schedule_free(struct backup_schedule *b);

#endif
