/* Through the include path, not relative to this file: the header's
 * include_next then finds the C library's <assert.h> (clang refuses an
 * include_next from a header found relative to the source). */
#include <assert.h>

#include <stdio.h>
#include <stdlib.h>

void appeal_assert_fail(const char *cond, const char *file, int line) {
    /* One line, key=value, written at once: the process is going down and
     * the operational log may be what failed. */
    fprintf(stderr, "level=fatal event=assert_failed cond=\"%s\" file=%s line=%d\n", cond, file,
            line);
    fflush(stderr);
    abort();
}
