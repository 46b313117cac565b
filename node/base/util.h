/*
 * util.h: small helpers shared by the node and the tools: files, hex,
 * number parsing, monotonic time.
 */
#ifndef APPEAL_UTIL_H
#define APPEAL_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

/* Trims spaces and tabs at both ends in place; returns the new start. */
char *util_trim(char *s);

/* Parses a decimal integer within [min, max]; APL_EINVAL otherwise. */
int util_parse_long(const char *s, long min, long max, long *out);
int util_parse_u64(const char *s, uint64_t *out);

/* Reads up to `len` bytes from `fd`, retrying short reads until end of
 * file; the number read, or -1 on an error. */
ssize_t util_read_full(int fd, void *buf, size_t len);

/* Reads a whole file of at most `max_bytes` into a NUL-terminated malloc'd
 * buffer. APL_ENOTFOUND if it does not exist, APL_ETOOBIG if larger. */
int util_read_file(const char *path, size_t max_bytes, char **out, size_t *len);

/* Writes `len` bytes to `path` atomically (temp file, fsync, rename, fsync
 * of the directory) with permissions `mode`. With `exclusive`, fails with
 * APL_EEXIST if `path` exists. */
int util_write_file(const char *path, const void *data, size_t len, unsigned mode, bool exclusive);

/* fsyncs the directory holding `path` (after a rename in it). */
int util_fsync_dir_of(const char *path);

/* Copies a file of any size (streaming), fsyncs it; `to` is created. */
int util_copy_file(const char *from, const char *to, unsigned mode);

/* mkdir -p with `mode` for the last component. */
int util_mkdir(const char *path, unsigned mode);

/* Lowercase hex of `len` bytes into `out` (2*len+1 bytes). */
void util_hex(const uint8_t *in, size_t len, char *out);
/* Exactly `len` bytes from 2*len hex digits; APL_EINVAL otherwise. */
int util_unhex(const char *hex, uint8_t *out, size_t len);

/* Monotonic clock in nanoseconds. */
uint64_t util_mono_ns(void);

/* Writes `s` as one CSV field (RFC 4180): always in double quotes, inner
 * quotes doubled, so commas and newlines stay inside the field. A field
 * that starts with = + - @, a tab or a carriage return, which spreadsheets
 * read as a formula, gets a single quote in front (OWASP's advice on CSV
 * injection). `last` ends the row with CRLF, else a comma follows. Every
 * CSV writer goes through this one function. */
void util_csv_field(FILE *f, const char *s, bool last);

/* Zeroes `len` bytes of `p` (a barrier the compiler keeps). */
void util_wipe(void *p, size_t len);
/* Zeroes `len` bytes of `p` and frees it. */
void util_wipe_free(void *p, size_t len);

#endif
