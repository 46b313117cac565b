/*
 * fuzz_holidays: the text of DATA/holidays.conf (cal_load, node/domain/cal.h), then
 * the questions deadlines ask of the calendar it built, on a few days taken
 * from the input. A text the node accepts must give a calendar on which
 * "the n-th working day after d" is a working day exactly n working days on.
 */
#include <stdlib.h>
#include <string.h>

#include "cal.h"
#include "fuzz.h"

enum { PROBES_MAX = 8, PROBE_WORKING_DAYS_MAX = 64 };

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    fuzz_init(NULL, 0);
    return 0;
}

/* FNV-1a of the input: picks probe days that move as the input does. */
static uint32_t input_hash(const uint8_t *data, size_t size) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < size; i++) {
        h = (h ^ data[i]) * 16777619u;
    }
    return h;
}

static void probe(const struct calendar *c, int32_t day, int n) {
    FUZZ_ASSERT(cal_in_range(c, day));
    (void)cal_holiday_name(c, day);
    int32_t due = cal_add_working(c, day, n);
    FUZZ_ASSERT(due > day || day == c->last_day);
    FUZZ_ASSERT(due <= c->last_day);
    if (due < c->last_day) {
        FUZZ_ASSERT(cal_is_working(c, due));
        FUZZ_ASSERT(cal_working_between(c, day, due) == n);
    }
}

static void check_calendar(const struct calendar *c, const uint8_t *data, size_t size) {
    FUZZ_ASSERT(c->off != NULL && c->ordinal != NULL);
    FUZZ_ASSERT(c->fixed_count <= CAL_FIXED_MAX);
    FUZZ_ASSERT(c->extra_off_count <= CAL_DATES_MAX && c->extra_work_count <= CAL_DATES_MAX);
    uint32_t h = input_hash(data, size);
    uint32_t span = (uint32_t)(c->last_day - c->first_day + 1);
    int n = 1 + (int)(h % PROBE_WORKING_DAYS_MAX);
    probe(c, c->first_day + (int32_t)(h % span), n);
    probe(c, c->last_day, n);
    /* The days the file names are where its mistakes would show. */
    for (uint32_t i = 0; i < c->extra_off_count && i < PROBES_MAX; i++) {
        if (cal_in_range(c, c->extra_off[i])) {
            FUZZ_ASSERT(!cal_is_working(c, c->extra_off[i]) ||
                        /* a later `work` line may make it working again */
                        c->extra_work_count > 0);
            probe(c, c->extra_off[i], n);
        }
    }
    for (uint32_t i = 0; i < c->extra_work_count && i < PROBES_MAX; i++) {
        int32_t d = c->extra_work[i];
        if (cal_in_range(c, d)) {
            FUZZ_ASSERT(cal_is_working(c, d));
        }
        if (d > c->first_day && d <= c->last_day) {
            probe(c, d - 1, n); /* the day before: does the count reach it? */
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = fuzz_cstr(data, size);
    struct calendar *c = malloc(sizeof *c); /* about 9 KB: keep it off the stack */
    FUZZ_ASSERT(c != NULL);
    struct errbuf e;
    err_clear(&e);
    int rc = cal_load(c, text, &e);
    free(text);
    if (rc == 0) {
        check_calendar(c, data, size);
        cal_fini(c);
    } else {
        /* cal_load releases what it built before refusing. */
        FUZZ_ASSERT(rc < 0 && c->off == NULL && c->ordinal == NULL);
    }
    free(c);
    return 0;
}
