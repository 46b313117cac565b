/* The working-day calendar: civil dates, weekends, Kazakhstan's holidays and
 * their transfers, year ends, the holiday file's format and its errors. */
#include "cal.h"
#include "check.h"

static int32_t D(const char *s) {
    int32_t d = 0;
    CHECK(day_parse(s, &d) == 0);
    return d;
}

static const char *S(int32_t d) {
    static char buf[8][11];
    static int i;
    i = (i + 1) % 8;
    day_format(d, buf[i]);
    return buf[i];
}

static void civil_dates(void) {
    CHECK_INT(day_from_civil(1970, 1, 1), 0);
    CHECK_INT(D("2026-11-27"), 20784);
    CHECK_INT(day_weekday(D("2026-11-27")), 4); /* Friday */
    CHECK_INT(day_weekday(D("1970-01-01")), 3); /* Thursday */
    for (int32_t d = D("1999-12-01"); d < D("2101-01-01"); d++) {
        int y;
        unsigned m, dd;
        civil_from_day(d, &y, &m, &dd);
        if (day_from_civil(y, m, dd) != d) {
            CHECK(!"civil round trip");
            break;
        }
    }
    int32_t x;
    CHECK(day_parse("2026-02-29", &x) != 0);
    CHECK(day_parse("2028-02-29", &x) == 0);
    CHECK(day_parse("2026-13-01", &x) != 0);
    CHECK(day_parse("2026-1-01", &x) != 0);
    CHECK(day_parse("20261101xx", &x) != 0);
    CHECK_STR(S(day_add_months(D("2026-01-31"), 1)), "2026-02-28");
    CHECK_STR(S(day_add_months(D("2028-01-31"), 1)), "2028-02-29");
    CHECK_STR(S(day_add_months(D("2026-11-27"), 2)), "2027-01-27");
    CHECK_STR(S(day_add_months(D("2026-11-30"), 3)), "2027-02-28");
    /* Local days: 2026-11-27 19:30 UTC is already the 28th at UTC+5. */
    int64_t ms = (int64_t)D("2026-11-27") * 86400000 + (19 * 60 + 30) * 60000LL;
    CHECK_STR(S(day_from_ms(ms, 300)), "2026-11-28");
    CHECK_STR(S(day_from_ms(ms, 0)), "2026-11-27");
}

static void default_holidays(void) {
    struct calendar c;
    struct errbuf e;
    CHECK(cal_load(&c, cal_default_text, &e) == 0);
    CHECK(!cal_is_working(&c, D("2026-11-28"))); /* Saturday */
    CHECK(!cal_is_working(&c, D("2026-11-29"))); /* Sunday */
    CHECK(cal_is_working(&c, D("2026-11-30")));
    CHECK(!cal_is_working(&c, D("2026-01-01")));
    CHECK(!cal_is_working(&c, D("2026-01-02")));
    CHECK(!cal_is_working(&c, D("2026-01-07"))); /* Orthodox Christmas, Wednesday */
    CHECK(!cal_is_working(&c, D("2026-12-16"))); /* Independence Day */
    CHECK(!cal_is_working(&c, D("2026-05-27"))); /* Kurban Ait, from the file */
    /* 8 March 2026 is a Sunday: Monday the 9th is off instead. */
    CHECK(!cal_is_working(&c, D("2026-03-09")));
    CHECK(cal_is_working(&c, D("2026-03-10")));
    /* Nauryz 2026: 21 (Sat), 22 (Sun), 23 (Mon); the weekend days move to
     * the 24th and 25th. */
    CHECK(!cal_is_working(&c, D("2026-03-23")));
    CHECK(!cal_is_working(&c, D("2026-03-24")));
    CHECK(!cal_is_working(&c, D("2026-03-25")));
    CHECK(cal_is_working(&c, D("2026-03-26")));
    /* 7 January 2029 is a Sunday and does not move (religious holiday). */
    CHECK(cal_is_working(&c, D("2029-01-08")));
    /* 2 January 2027 is a Saturday: Monday the 4th is off. */
    CHECK(!cal_is_working(&c, D("2027-01-04")));
    CHECK(cal_is_working(&c, D("2027-01-05")));
    CHECK_STR(cal_holiday_name(&c, D("2026-12-16")), "Independence Day");
    cal_fini(&c);
}

static void deadlines(void) {
    struct calendar c;
    struct errbuf e;
    CHECK(cal_load(&c, cal_default_text, &e) == 0);
    /* Friday 27 Nov 2026 + 15 working days skips Independence Day. */
    CHECK_STR(S(cal_add_working(&c, D("2026-11-27"), 15)), "2026-12-21");
    /* Across the year end: New Year, its transfer, Christmas. */
    CHECK_STR(S(cal_add_working(&c, D("2026-12-20"), 15)), "2027-01-13");
    /* Registered on a Saturday: the count starts on Monday. */
    CHECK_STR(S(cal_add_working(&c, D("2026-11-28"), 1)), "2026-11-30");
    CHECK_STR(S(cal_add_working(&c, D("2026-11-27"), 3)), "2026-12-02");
    CHECK_INT(cal_working_between(&c, D("2026-12-21"), D("2026-12-28")), 5);
    CHECK_INT(cal_working_between(&c, D("2026-12-21"), D("2026-12-21")), 0);
    CHECK_INT(cal_working_between(&c, D("2026-12-21"), D("2026-12-19")), 0);
    cal_fini(&c);
}

static void custom_file(void) {
    struct calendar c;
    struct errbuf e;
    const char *text = "# one-off changes\n"
                       "fixed 12-16 Independence Day\n"
                       "off 2026-12-18 decreed day off\n"
                       "work 2026-12-19 working Saturday\r\n";
    CHECK(cal_load(&c, text, &e) == 0);
    CHECK(!cal_is_working(&c, D("2026-12-18")));
    CHECK(cal_is_working(&c, D("2026-12-19")));
    CHECK(cal_is_working(&c, D("2026-01-01"))); /* not listed here */
    cal_fini(&c);
    CHECK(cal_load(&c, "fixed 13-01 Nothing\n", &e) == APL_EINVAL);
    CHECK_CONTAINS(e.msg, "line 1");
    CHECK(cal_load(&c, "# ok\nholiday 2026-01-01 X\n", &e) == APL_EINVAL);
    CHECK_CONTAINS(e.msg, "line 2");
    CHECK_CONTAINS(e.msg, "unknown kind");
    CHECK(cal_load(&c, "off 2026-02-30 X\n", &e) == APL_EINVAL);
    CHECK_CONTAINS(e.msg, "bad date");
}

int main(void) {
    civil_dates();
    default_holidays();
    deadlines();
    custom_file();
    CHECK_DONE();
}
