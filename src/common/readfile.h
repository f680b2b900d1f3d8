/*
 * readfile — reads a whole file into memory, up to a size the caller names, and
 * writes one atomically. The one place that loops over read(2) for config files,
 * rule files, caches and time zone data, so that every reader handles EINTR,
 * short reads, oversized and unreadable files the same way; and the one place
 * that replaces a small file (a cache, kept settings) so that a crash leaves the
 * old one or the new one, never a mix.
 */
#ifndef LAZARET_READFILE_H
#define LAZARET_READFILE_H

#include <stddef.h>

/*
 * Reads path ("-" is standard input) into a new buffer of *len bytes plus a NUL
 * (so text can be used as a string; binary data may contain NULs). At most max
 * bytes: a longer file is -EFBIG. 0, or -errno (-ENOENT, -EACCES, -EISDIR, -EIO
 * ...); on error *out is NULL.
 */
int read_file(const char *path, size_t max, char **out, size_t *len);

/*
 * Replaces path with the len bytes of data, atomically and durably: written to
 * path.tmp (mode 0600), fsync'd, renamed over path, then the folder fsync'd.
 * 0, or -errno (path.tmp removed, path as it was).
 */
int write_file_atomic(const char *path, const void *data, size_t len);

#endif
