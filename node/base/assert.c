#include <assert.h> /* ours: node/base is on the include path */

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "olog.h"

/* Set while a thread reports a failed assertion: an assertion failing
 * inside the report (the logger) falls back to a plain write, never loops. */
static _Thread_local int reporting;

void appeal_assert_fail(const char *cond, const char *file, int line) {
    char num[16];
    snprintf(num, sizeof num, "%d", line);
    if (!reporting) {
        reporting = 1;
        olog_fatal("assert_failed", "cond", cond, "file", file, "line", num, NULL);
    } else {
        char buf[512];
        int n = snprintf(buf, sizeof buf,
                         "level=fatal event=assert_failed cond=\"%s\" file=%s line=%s\n", cond,
                         file, num);
        if (n > 0) {
            ssize_t w = write(2, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
            (void)w; /* about to abort: nowhere else to say it */
        }
    }
    abort();
}
