/*
 * cal.h: civil dates and the working-day calendar.
 *
 * A day is an int32 count of days since 1970-01-01 in the jurisdiction's
 * local time (the rules' UTC offset), so 2026-11-27 is 20784. Deadlines
 * are days: "15 working days from registration" is the 15th working day
 * after the day of registration, and an appeal is overdue from the day
 * after its deadline day.
 *
 * The calendar is data (docs/rules.md): the holiday file lists fixed
 * annual holidays (which move to the next working day when they fall on a
 * weekend, unless marked `stays`), one-off non-working dates and weekend
 * days made working. cal_load() precomputes a table of working-day ordinals
 * for CAL_FIRST_YEAR..CAL_LAST_YEAR, so every question below is O(1) or a
 * binary search; days outside that range are refused by cal_load's callers
 * (dates are validated against cal_in_range()).
 */
#ifndef APPEAL_CAL_H
#define APPEAL_CAL_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"

enum {
    CAL_FIRST_YEAR = 2000,
    CAL_LAST_YEAR = 2099,
    CAL_FIXED_MAX = 64,
    CAL_DATES_MAX = 1024,
    CAL_FILE_BYTES_MAX = 256 * 1024,
    CAL_NAME_BYTES = 48,
};

/* Days since 1970-01-01 of a civil date (proleptic Gregorian). */
int32_t day_from_civil(int y, unsigned m, unsigned d);
void civil_from_day(int32_t day, int *y, unsigned *m, unsigned *d);
/* 0 = Monday ... 6 = Sunday. */
int day_weekday(int32_t day);
/* Local day of a UTC instant at `utc_offset_min`. */
int32_t day_from_ms(int64_t ms, int32_t utc_offset_min);
/* `day` plus `months` calendar months, the day of month clamped. */
int32_t day_add_months(int32_t day, int months);
/* "YYYY-MM-DD" (strict) into a day; APL_EINVAL if malformed or impossible. */
int day_parse(const char *s, int32_t *day);
/* Formats into buf (at least 11 bytes). */
void day_format(int32_t day, char buf[11]);
bool day_valid(int y, unsigned m, unsigned d);

struct cal_fixed {
    uint8_t month, mday;
    bool stays; /* religious holidays do not move off a weekend */
    char name[CAL_NAME_BYTES];
};

struct calendar {
    struct cal_fixed fixed[CAL_FIXED_MAX];
    uint32_t fixed_count;
    int32_t extra_off[CAL_DATES_MAX]; /* one-off non-working dates */
    uint32_t extra_off_count;
    int32_t extra_work[CAL_DATES_MAX]; /* weekend days made working */
    uint32_t extra_work_count;
    int32_t first_day, last_day; /* the table's range */
    int32_t *ordinal;            /* working days in [first_day, d], per d; owned */
    uint8_t *off;                /* 1 if d is not a working day; owned */
};

/* Parses the holiday file text and builds the tables. On error, `e` names
 * the line. The calendar must be released with cal_fini(). */
int cal_load(struct calendar *c, const char *text, struct errbuf *e);
void cal_fini(struct calendar *c);

bool cal_in_range(const struct calendar *c, int32_t day);
bool cal_is_working(const struct calendar *c, int32_t day);
/* The `n`-th working day after `day` (n >= 1). Saturates at the range end. */
int32_t cal_add_working(const struct calendar *c, int32_t day, int n);
/* Working days in (from, to]; 0 if to <= from. */
int32_t cal_working_between(const struct calendar *c, int32_t from, int32_t to);
/* Name of the holiday on `day` or NULL (for explanations in the CLI). */
const char *cal_holiday_name(const struct calendar *c, int32_t day);

/* The default holiday file: Kazakhstan's fixed-date public holidays. */
extern const char cal_default_text[];

#endif
