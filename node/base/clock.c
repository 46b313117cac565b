#include "clock.h"

#include <fcntl.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "olog.h"

int64_t clock_system_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t clock_now_ms(const struct clock *c) {
    if (c == NULL || c->path[0] == '\0') {
        return clock_system_ms();
    }
    char buf[32];
    int fd = open(c->path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0) {
        close(fd);
    }
    if (n > 0) {
        buf[n] = '\0';
        char *end;
        long long v = strtoll(buf, &end, 10);
        if (end != buf && v > 0) {
            return (int64_t)v;
        }
    }
    olog(OLOG_WARN, "clock_file_unreadable", "path", c->path, NULL);
    return clock_system_ms();
}
