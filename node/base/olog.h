/*
 * olog.h: the operational log. One line per event, `key=value`, with the
 * node's jurisdiction and key id on every line:
 *
 *   ts=2026-11-27T12:00:00.123Z level=info juris=KZ-75 node=1a2b3c4d event=started api=tcp://...
 *
 * Values containing spaces, quotes or `=` are double-quoted with escapes.
 * Personal data never goes into the log: callers pass numbers, codes,
 * counts and key ids only.
 *
 * olog_init() is called once from main before any thread starts; after that
 * the logger's identity is read-only. Writes are one write(2) per line, so
 * lines from threads never interleave.
 */
#ifndef APPEAL_OLOG_H
#define APPEAL_OLOG_H

#include <stdbool.h>

enum olog_level { OLOG_DEBUG, OLOG_INFO, OLOG_WARN, OLOG_ERROR, OLOG_ALERT };

/* Sets the identity printed on each line and the file descriptor (2 by
 * default). `min_level` drops lines below it. */
void olog_init(const char *jurisdiction, const char *node_id, int fd, enum olog_level min_level);

/* Logs `event` with the pairs given as alternating key, value strings,
 * terminated by NULL: olog(OLOG_INFO, "started", "api", url, NULL). */
void olog(enum olog_level level, const char *event, ...) __attribute__((sentinel));

/* Logs `event` at level "fatal", whatever the minimum level, to the log
 * and to stderr if the log is elsewhere: for a failed assertion
 * (assert.h), just before the process aborts. */
void olog_fatal(const char *event, ...) __attribute__((sentinel));

/* Parses "debug", "info", ...; returns false if unknown. */
bool olog_level_parse(const char *s, enum olog_level *out);

#endif
