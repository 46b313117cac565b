#include "olog.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { OLOG_LINE_BYTES = 2048 };

static struct {
    char juris[16];
    char node[20];
    int fd;
    enum olog_level min;
} olog_id = {"-", "-", 2, OLOG_INFO};

static const char *const level_names[] = {"debug", "info", "warn", "error", "alert"};

void olog_init(const char *jurisdiction, const char *node_id, int fd, enum olog_level min_level) {
    snprintf(olog_id.juris, sizeof olog_id.juris, "%s", jurisdiction ? jurisdiction : "-");
    snprintf(olog_id.node, sizeof olog_id.node, "%s", node_id ? node_id : "-");
    olog_id.fd = fd;
    olog_id.min = min_level;
}

bool olog_level_parse(const char *s, enum olog_level *out) {
    for (int i = 0; i <= OLOG_ALERT; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum olog_level)i;
            return true;
        }
    }
    return false;
}

/* Appends what fits, always leaving room for the newline. */
static size_t append(char *buf, size_t at, const char *s) {
    size_t room = at < OLOG_LINE_BYTES - 2 ? OLOG_LINE_BYTES - 2 - at : 0;
    size_t n = strnlen(s, room);
    memcpy(buf + at, s, n);
    return at + n;
}

static size_t append_value(char *buf, size_t at, const char *v) {
    bool quote = v[0] == '\0' || strpbrk(v, " \"=\t\n\\") != NULL;
    if (!quote) {
        return append(buf, at, v);
    }
    at = append(buf, at, "\"");
    for (const char *p = v; *p != '\0' && at < OLOG_LINE_BYTES - 8; p++) {
        if (*p == '"' || *p == '\\') {
            buf[at++] = '\\';
            buf[at++] = *p;
        } else if (*p == '\n' || *p == '\t') {
            buf[at++] = ' ';
        } else {
            buf[at++] = *p;
        }
    }
    return append(buf, at, "\"");
}

/* Formats one line and writes it to the log (and to stderr too if asked
 * and the log is elsewhere). No ASSERT in this file: appeal_assert_fail
 * reports through it. */
static void olog_line(const char *level, const char *event, va_list ap, bool also_stderr) {
    char line[OLOG_LINE_BYTES];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line,
                     "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s juris=%s node=%s event=",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, level, olog_id.juris, olog_id.node);
    size_t at = n > 0 ? (size_t)n : 0;
    at = append_value(line, at, event);
    for (;;) {
        const char *k = va_arg(ap, const char *);
        if (k == NULL) {
            break;
        }
        const char *v = va_arg(ap, const char *);
        at = append(line, at, " ");
        at = append(line, at, k);
        at = append(line, at, "=");
        at = append_value(line, at, v ? v : "");
    }
    line[at++] = '\n';
    ssize_t w = write(olog_id.fd, line, at);
    (void)w; /* nowhere to report a failed log write */
    if (also_stderr && olog_id.fd != 2) {
        w = write(2, line, at);
        (void)w;
    }
}

void olog(enum olog_level level, const char *event, ...) {
    if (level < olog_id.min) {
        return;
    }
    va_list ap;
    va_start(ap, event);
    olog_line(level_names[level], event, ap, false);
    va_end(ap);
}

void olog_fatal(const char *event, ...) {
    va_list ap;
    va_start(ap, event);
    olog_line("fatal", event, ap, true);
    va_end(ap);
}
