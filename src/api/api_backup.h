/*
 * api_backup — POST /api/v1/backup (admins only): a backup archive of the whole
 * manager (quarantine/backup.h), taken while it keeps ingesting and sent as the
 * reply's body. lazaretctl backup FILE saves it. Not for: the [backup] schedule
 * (lazaretd runs quarantine/backup.h's), restores (lazaretd --restore).
 */
#ifndef LAZARET_API_BACKUP_H
#define LAZARET_API_BACKUP_H

struct api;

struct api_backup_config {
	const char *backend;  /* [store] backend */
	const char *data_dir; /* [manager] data_dir: its files, and room for the archive */
	const char *manager_name;
};

/*
 * Adds the route; cfg's strings are copied. The result is the daemon's to free
 * with api_backup_free after api_stop (NULL is a no-op).
 */
struct api_backup;
struct api_backup *api_backup_attach(struct api *a, const struct api_backup_config *cfg);
void api_backup_free(struct api_backup *b);

#endif
