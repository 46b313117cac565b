/*
 * clock.h: where the node takes the time from.
 *
 * In production, the system clock. Tests (and drills) can point the node
 * at a clock file (`appeal-node run --clock-file F`) holding milliseconds
 * since the epoch; the node reads it on every call, so a test moves time
 * past a deadline by rewriting the file, without sleeping. A file that
 * cannot be read falls back to the system clock, with a warning.
 */
#ifndef APPEAL_CLOCK_H
#define APPEAL_CLOCK_H

#include <stdint.h>

struct clock {
    char path[4096]; /* empty: the system clock */
};

int64_t clock_now_ms(const struct clock *c);
int64_t clock_system_ms(void);

#endif
