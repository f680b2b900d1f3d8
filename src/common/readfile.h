/*
 * readfile — reads a whole file into memory, up to a size the caller names. The
 * one place that loops over read(2) for config files, rule files, caches and time
 * zone data, so that every reader handles EINTR, short reads, oversized and
 * unreadable files the same way.
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

#endif
