/* Rules as data: defaults, overrides, malformed files, categories, IINs. */
#include "check.h"
#include "names.h"
#include "ruleset.h"

static void iins(void) {
    struct errbuf e;
    CHECK(iin_check("900101300126", &e) == 0);
    CHECK(iin_check("851231400567", &e) == 0);
    CHECK(iin_check("010203500018", &e) == 0);
    CHECK(iin_check("900101300127", &e) == APL_EINVAL);
    CHECK_CONTAINS(e.msg, "check digit");
    CHECK(iin_check("90010130012", &e) == APL_EINVAL);
    CHECK_CONTAINS(e.msg, "12 digits");
    CHECK(iin_check("9001013001a6", &e) == APL_EINVAL);
    /* The message never echoes the number. */
    CHECK(strstr(e.msg, "9001013001a6") == NULL);
    /* A valid check digit on an impossible birth date (month 13). */
    char bad[13] = "901301300120";
    for (int d = 0; d <= 9; d++) {
        bad[11] = (char)('0' + d);
        if (iin_check(bad, &e) != APL_EINVAL) {
            CHECK(!"an IIN born in month 13 passed");
        }
    }
}

static void defaults_and_overrides(void) {
    struct ruleset r;
    struct errbuf e;
    CHECK(ruleset_parse(&r, NULL, NULL, NULL, &e) == 0);
    CHECK_INT(r.term_working_days, 15);
    CHECK_INT(r.extension_max_months, 2);
    CHECK_INT(r.forward_working_days, 3);
    CHECK_INT(r.complaint_window_months, 3);
    CHECK_INT(r.utc_offset_min, 300);
    CHECK(r.anonymous_types == (1u << 5)); /* report only */
    CHECK(ruleset_category(&r, "0002.0001") != NULL);
    CHECK_STR(ruleset_category(&r, "0005")->name, "Housing and utilities");
    CHECK(ruleset_category(&r, "9999") == NULL);
    ruleset_fini(&r);

    CHECK(ruleset_parse(&r, "term_working_days = 10\nanonymous_types = report, complaint\n", NULL,
                        "1\tOne\n2\tTwo\n", &e) == 0);
    CHECK_INT(r.term_working_days, 10);
    CHECK_INT(r.extension_max_months, 2); /* untouched keys keep defaults */
    CHECK(r.anonymous_types == ((1u << 5) | (1u << 4)));
    CHECK_INT(r.category_count, 2);
    ruleset_fini(&r);
}

static void higher_bodies(void) {
    struct ruleset r;
    struct errbuf e;
    char b[RULES_JURIS_BYTES];
    CHECK(ruleset_parse(&r, NULL, NULL, NULL, &e) == 0);
    ruleset_higher_body(&r, "KZ-75", b);
    CHECK_STR(b, "KZ");
    ruleset_higher_body(&r, "KZ", b);
    CHECK_STR(b, ""); /* the republic has no higher body */
    ruleset_fini(&r);
    CHECK(ruleset_parse(&r, "higher_body.KZ-75 = KZ-71\nhigher_body.KZ-19 = none\n", NULL, NULL,
                        &e) == 0);
    ruleset_higher_body(&r, "KZ-75", b);
    CHECK_STR(b, "KZ-71");
    ruleset_higher_body(&r, "KZ-19", b);
    CHECK_STR(b, "");
    ruleset_higher_body(&r, "KZ-11", b);
    CHECK_STR(b, "KZ");
    ruleset_fini(&r);
    CHECK(ruleset_parse(&r, "higher_body = Astana\n", NULL, NULL, &e) == APL_EINVAL);
    CHECK_CONTAINS(e.msg, "higher_body is a jurisdiction");
    CHECK(ruleset_parse(&r, "higher_body.kz = KZ\n", NULL, NULL, &e) == APL_EINVAL);
    CHECK_CONTAINS(e.msg, "higher_body.JURISDICTION");
}

static void malformed(void) {
    struct ruleset r;
    struct errbuf e;
    CHECK(ruleset_parse(&r, "term_working_dayz = 10\n", NULL, NULL, &e) == APL_EINVAL);
    CHECK_CONTAINS(e.msg, "unknown key `term_working_dayz`");
    CHECK(ruleset_parse(&r, "\n\nterm_working_days = 0\n", NULL, NULL, &e) == APL_EINVAL);
    CHECK_CONTAINS(e.msg, "line 3");
    CHECK(ruleset_parse(&r, "anonymous_types = rumour\n", NULL, NULL, &e) == APL_EINVAL);
    CHECK_CONTAINS(e.msg, "rumour");
    CHECK(ruleset_parse(&r, NULL, NULL, "1\tOne\n1\tAgain\n", &e) == APL_EINVAL);
    CHECK_CONTAINS(e.msg, "listed twice");
    CHECK(ruleset_parse(&r, NULL, NULL, "x1\tBad\n", &e) == APL_EINVAL);
    CHECK(ruleset_parse(&r, NULL, "fixed 02-30 Nope\n", NULL, &e) == APL_EINVAL);
}

/* categories.tsv: CODE<TAB>ENGLISH<TAB>KAZAKH<TAB>RUSSIAN, or one name for
 * all three; each name shown in its language (names.h). Any other number of
 * names, or an empty one, refuses the file with its line. */
static void category_names(void) {
    struct ruleset r;
    struct errbuf e;
    CHECK(ruleset_parse(&r, NULL, NULL, "# roads\n7\tRoads\tЖолдар\tДороги\n8\tOne name\n", &e) ==
          0);
    CHECK_INT(r.category_count, 2);
    const struct category *c = ruleset_category(&r, "7");
    CHECK(c != NULL);
    if (c != NULL) {
        CHECK_STR(names_category(c, I18N_EN), "Roads");
        CHECK_STR(names_category(c, I18N_KK), "Жолдар");
        CHECK_STR(names_category(c, I18N_RU), "Дороги");
    }
    c = ruleset_category(&r, "8");
    CHECK(c != NULL);
    if (c != NULL) {
        CHECK_STR(names_category(c, I18N_KK), "One name");
        CHECK_STR(names_category(c, I18N_RU), "One name");
    }
    ruleset_fini(&r);

    CHECK(ruleset_parse(&r, NULL, NULL, NULL, &e) == 0); /* the built-in classifier */
    c = ruleset_category(&r, "0002.0001");
    CHECK(c != NULL);
    if (c != NULL) {
        CHECK_STR(names_category(c, I18N_EN), "Social security and pensions");
        CHECK_STR(names_category(c, I18N_KK), "Әлеуметтік қамсыздандыру және зейнетақы");
        CHECK_STR(names_category(c, I18N_RU), "Социальное обеспечение и пенсии");
    }
    ruleset_fini(&r);

    static const char *const bad[] = {
        "1\tOne\n7\tRoads\tЖолдар\n",                /* two names */
        "1\tOne\n7\tRoads\tЖолдар\t\n",              /* an empty Russian name (trimmed) */
        "1\tOne\n7\tRoads\tЖолдар\tДороги\tRoads\n", /* four */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err_clear(&e);
        CHECK(ruleset_parse(&r, NULL, NULL, bad[i], &e) == APL_EINVAL);
        CHECK_CONTAINS(e.msg, "categories.tsv line 2: expected CODE<TAB>NAME or "
                              "CODE<TAB>ENGLISH<TAB>KAZAKH<TAB>RUSSIAN");
    }
    err_clear(&e);
    CHECK(ruleset_parse(&r, NULL, NULL, "7\tRoads\t \tДороги\n", &e) == APL_EINVAL);
    CHECK_CONTAINS(e.msg, "categories.tsv line 1: a name is 1..");
}

static void type_names(void) {
    CHECK_INT(appeal_type_parse("complaint"), 4);
    CHECK_INT(appeal_type_parse("Complaint"), 0);
    CHECK_STR(appeal_type_name(6), "feedback");
    CHECK_STR(appeal_type_name(99), "unknown");
}

int main(void) {
    iins();
    defaults_and_overrides();
    malformed();
    higher_bodies();
    type_names();
    category_names();
    CHECK_DONE();
}
