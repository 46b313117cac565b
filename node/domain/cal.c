#include "cal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assert.h"

/* Howard Hinnant's days_from_civil / civil_from_days. */
int32_t day_from_civil(int y, unsigned m, unsigned d) {
    y -= m <= 2;
    const int era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return (int32_t)(era * 146097 + (int)doe - 719468);
}

void civil_from_day(int32_t day, int *y, unsigned *m, unsigned *d) {
    int32_t z = day + 719468;
    const int era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int)yoe + era * 400 + (*m <= 2);
    ASSERT(*m >= 1 && *m <= 12 && *d >= 1 && *d <= 31);
}

int day_weekday(int32_t day) {
    /* 1970-01-01 was a Thursday (3 when Monday is 0). */
    int w = (int)((day + 3) % 7);
    w = w < 0 ? w + 7 : w;
    ASSERT(w >= 0 && w < 7);
    return w;
}

int32_t day_from_ms(int64_t ms, int32_t utc_offset_min) {
    int64_t local = ms + (int64_t)utc_offset_min * 60000;
    int64_t day = local / 86400000;
    if (local < 0 && local % 86400000 != 0) {
        day--;
    }
    return (int32_t)day;
}

static unsigned days_in_month(int y, unsigned m) {
    static const unsigned dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    ASSERT(m >= 1 && m <= 12); /* callers check the month first */
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : dim[m - 1];
}

bool day_valid(int y, unsigned m, unsigned d) {
    return y >= 1900 && y <= 2200 && m >= 1 && m <= 12 && d >= 1 && d <= days_in_month(y, m);
}

int32_t day_add_months(int32_t day, int months) {
    int y;
    unsigned m, d;
    civil_from_day(day, &y, &m, &d);
    int total = y * 12 + (int)m - 1 + months;
    y = total / 12;
    m = (unsigned)(total % 12) + 1;
    unsigned dim = days_in_month(y, m);
    return day_from_civil(y, m, d > dim ? dim : d);
}

int day_parse(const char *s, int32_t *day) {
    if (strlen(s) != 10 || s[4] != '-' || s[7] != '-') {
        return APL_EINVAL;
    }
    for (int i = 0; i < 10; i++) {
        if (i != 4 && i != 7 && !isdigit((unsigned char)s[i])) {
            return APL_EINVAL;
        }
    }
    int y = atoi(s);
    unsigned m = (unsigned)atoi(s + 5), d = (unsigned)atoi(s + 8);
    if (!day_valid(y, m, d)) {
        return APL_EINVAL;
    }
    *day = day_from_civil(y, m, d);
    return 0;
}

void day_format(int32_t day, char buf[11]) {
    int y;
    unsigned m, d;
    civil_from_day(day, &y, &m, &d);
    unsigned yy = y < 0 ? 0u : (unsigned)y % 10000u;
    buf[0] = (char)('0' + yy / 1000);
    buf[1] = (char)('0' + yy / 100 % 10);
    buf[2] = (char)('0' + yy / 10 % 10);
    buf[3] = (char)('0' + yy % 10);
    buf[4] = '-';
    buf[5] = (char)('0' + m / 10 % 10);
    buf[6] = (char)('0' + m % 10);
    buf[7] = '-';
    buf[8] = (char)('0' + d / 10 % 10);
    buf[9] = (char)('0' + d % 10);
    buf[10] = '\0';
}

const char cal_default_text[] =
    "# Non-working days for deadline counting (Kazakhstan's defaults).\n"
    "# The operator edits this file; the node reads it when it starts.\n"
    "#\n"
    "#   fixed MM-DD [stays] NAME   every year; on a Saturday or Sunday it moves to\n"
    "#                              the next working day, unless marked `stays`\n"
    "#   off   YYYY-MM-DD NAME      one year only: movable feasts, decreed transfers\n"
    "#   work  YYYY-MM-DD NAME      a weekend day declared a working day\n"
    "#\n"
    "# Saturdays and Sundays are never working days unless listed under `work`.\n"
    "fixed 01-01 New Year\n"
    "fixed 01-02 New Year\n"
    "fixed 01-07 stays Orthodox Christmas\n"
    "fixed 03-08 International Women's Day\n"
    "fixed 03-21 Nauryz meiramy\n"
    "fixed 03-22 Nauryz meiramy\n"
    "fixed 03-23 Nauryz meiramy\n"
    "fixed 05-01 Kazakhstan People's Unity Day\n"
    "fixed 05-07 Defender of the Fatherland Day\n"
    "fixed 05-09 Victory Day\n"
    "fixed 07-06 Capital Day\n"
    "fixed 08-30 Constitution Day\n"
    "fixed 10-25 Republic Day\n"
    "fixed 12-16 Independence Day\n"
    "# Kurban Ait (first day) follows the lunar calendar: set each year by decree.\n"
    "off 2025-06-06 Kurban Ait\n"
    "off 2026-05-27 Kurban Ait\n"
    "off 2027-05-16 Kurban Ait (to be confirmed)\n";

static const char *skip_space(const char *p) {
    while (*p == ' ' || *p == '\t') {
        p++;
    }
    return p;
}

static int parse_line(struct calendar *c, char *line, unsigned lineno, struct errbuf *e) {
    const char *p = skip_space(line);
    if (*p == '\0' || *p == '#') {
        return 0;
    }
    char kind[8] = {0}, date[16] = {0};
    int used = 0;
    if (sscanf(p, "%7s %15s %n", kind, date, &used) < 2) {
        return err_set(e, APL_EINVAL, "holiday file line %u: expected `KIND DATE NAME`", lineno);
    }
    const char *name = skip_space(p + used);
    if (strcmp(kind, "fixed") == 0) {
        unsigned m, d;
        char tail;
        if (sscanf(date, "%2u-%2u%c", &m, &d, &tail) != 2 || strlen(date) != 5 ||
            !day_valid(2000, m, d)) {
            return err_set(e, APL_EINVAL, "holiday file line %u: bad month-day `%s`", lineno, date);
        }
        if (c->fixed_count >= CAL_FIXED_MAX) {
            return err_set(e, APL_ETOOBIG, "holiday file line %u: more than %d fixed holidays",
                           lineno, CAL_FIXED_MAX);
        }
        struct cal_fixed *f = &c->fixed[c->fixed_count++];
        f->month = (uint8_t)m;
        f->mday = (uint8_t)d;
        f->stays = strncmp(name, "stays", 5) == 0 && (name[5] == ' ' || name[5] == '\0');
        if (f->stays) {
            name = skip_space(name + 5);
        }
        snprintf(f->name, sizeof f->name, "%s", name);
        return 0;
    }
    bool off = strcmp(kind, "off") == 0;
    if (!off && strcmp(kind, "work") != 0) {
        return err_set(e, APL_EINVAL, "holiday file line %u: unknown kind `%s` (fixed, off, work)",
                       lineno, kind);
    }
    int32_t day;
    if (day_parse(date, &day) != 0) {
        return err_set(e, APL_EINVAL, "holiday file line %u: bad date `%s`", lineno, date);
    }
    int32_t *arr = off ? c->extra_off : c->extra_work;
    uint32_t *count = off ? &c->extra_off_count : &c->extra_work_count;
    if (*count >= CAL_DATES_MAX) {
        return err_set(e, APL_ETOOBIG, "holiday file line %u: more than %d dated entries", lineno,
                       CAL_DATES_MAX);
    }
    arr[(*count)++] = day;
    return 0;
}

static void mark_year(struct calendar *c, int y) {
    int32_t base = c->first_day;
    for (uint32_t i = 0; i < c->fixed_count; i++) {
        int32_t d = day_from_civil(y, c->fixed[i].month, c->fixed[i].mday);
        c->off[d - base] = 1;
    }
    /* In date order, each moving holiday on a weekend gives the next working
     * day that is not already off. */
    for (unsigned m = 1; m <= 12; m++) {
        for (uint32_t i = 0; i < c->fixed_count; i++) {
            const struct cal_fixed *f = &c->fixed[i];
            if (f->month != m || f->stays) {
                continue;
            }
            int32_t d = day_from_civil(y, f->month, f->mday);
            if (day_weekday(d) < 5) {
                continue;
            }
            for (int32_t t = d + 1; t <= c->last_day && t < d + 14; t++) {
                if (day_weekday(t) < 5 && c->off[t - base] == 0) {
                    c->off[t - base] = 1;
                    break;
                }
            }
        }
    }
}

static int build_tables(struct calendar *c) {
    c->first_day = day_from_civil(CAL_FIRST_YEAR, 1, 1);
    c->last_day = day_from_civil(CAL_LAST_YEAR, 12, 31);
    size_t n = (size_t)(c->last_day - c->first_day + 1);
    c->off = calloc(n, 1);
    c->ordinal = calloc(n, sizeof *c->ordinal);
    if (c->off == NULL || c->ordinal == NULL) {
        return APL_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        c->off[i] = day_weekday(c->first_day + (int32_t)i) >= 5;
    }
    for (int y = CAL_FIRST_YEAR; y <= CAL_LAST_YEAR; y++) {
        mark_year(c, y);
    }
    for (uint32_t i = 0; i < c->extra_off_count; i++) {
        if (cal_in_range(c, c->extra_off[i])) {
            c->off[c->extra_off[i] - c->first_day] = 1;
        }
    }
    for (uint32_t i = 0; i < c->extra_work_count; i++) {
        if (cal_in_range(c, c->extra_work[i])) {
            c->off[c->extra_work[i] - c->first_day] = 0;
        }
    }
    int32_t count = 0;
    for (size_t i = 0; i < n; i++) {
        count += c->off[i] == 0;
        c->ordinal[i] = count;
    }
    return 0;
}

int cal_load(struct calendar *c, const char *text, struct errbuf *e) {
    memset(c, 0, sizeof *c);
    size_t len = strlen(text);
    if (len > CAL_FILE_BYTES_MAX) {
        return err_set(e, APL_ETOOBIG, "holiday file larger than %d bytes", CAL_FILE_BYTES_MAX);
    }
    char *copy = strdup(text);
    if (copy == NULL) {
        return APL_ENOMEM;
    }
    unsigned lineno = 0;
    int rc = 0;
    for (char *save = NULL, *line = strtok_r(copy, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        size_t l = strlen(line);
        if (l > 0 && line[l - 1] == '\r') {
            line[l - 1] = '\0';
        }
        rc = parse_line(c, line, lineno, e);
        if (rc != 0) {
            break;
        }
    }
    free(copy);
    if (rc == 0) {
        rc = build_tables(c);
    }
    if (rc != 0) {
        cal_fini(c);
    }
    return rc;
}

void cal_fini(struct calendar *c) {
    free(c->off);
    free(c->ordinal);
    c->off = NULL;
    c->ordinal = NULL;
}

bool cal_in_range(const struct calendar *c, int32_t day) {
    return day >= c->first_day && day <= c->last_day;
}

bool cal_is_working(const struct calendar *c, int32_t day) {
    if (!cal_in_range(c, day)) {
        return day_weekday(day) < 5;
    }
    return c->off[day - c->first_day] == 0;
}

static int32_t ordinal_at(const struct calendar *c, int32_t day) {
    if (day < c->first_day) {
        return 0;
    }
    if (day > c->last_day) {
        day = c->last_day;
    }
    ASSERT(day >= c->first_day && day <= c->last_day);
    return c->ordinal[day - c->first_day];
}

int32_t cal_add_working(const struct calendar *c, int32_t day, int n) {
    if (day < c->first_day) {
        day = c->first_day;
    }
    if (day >= c->last_day) {
        return c->last_day;
    }
    int32_t target = ordinal_at(c, day) + n;
    int32_t lo = day + 1, hi = c->last_day;
    if (c->ordinal[hi - c->first_day] < target) {
        return c->last_day;
    }
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        if (c->ordinal[mid - c->first_day] >= target) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    ASSERT(lo > day && lo <= c->last_day); /* a later working day, inside the calendar */
    return lo;
}

int32_t cal_working_between(const struct calendar *c, int32_t from, int32_t to) {
    if (to <= from) {
        return 0;
    }
    return ordinal_at(c, to) - ordinal_at(c, from);
}

const char *cal_holiday_name(const struct calendar *c, int32_t day) {
    int y;
    unsigned m, d;
    civil_from_day(day, &y, &m, &d);
    for (uint32_t i = 0; i < c->fixed_count; i++) {
        if (c->fixed[i].month == m && c->fixed[i].mday == d) {
            return c->fixed[i].name;
        }
    }
    if (cal_in_range(c, day) && c->off[day - c->first_day] && day_weekday(day) < 5) {
        return "holiday (transferred or decreed)";
    }
    return NULL;
}
