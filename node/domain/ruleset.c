#include "ruleset.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "i18n.h"
#include "record.h"
#include "util.h"

const char rules_default_conf[] =
    "# Appeal rules of this node. Defaults: Kazakhstan's Administrative Procedural\n"
    "# and Process Code (No. 350-VI, 2020) and Law No. 221-III (2007).\n"
    "# Changes apply to appeals registered or acted on after the node restarts;\n"
    "# deadlines already written into the log never change.\n"
    "\n"
    "# Local time of the jurisdiction, minutes east of UTC (Kazakhstan: UTC+5).\n"
    "utc_offset_minutes = 300\n"
    "# Term for an answer, in working days from registration.\n"
    "term_working_days = 15\n"
    "# A reasoned extension may bring the term to at most this many months in total.\n"
    "extension_max_months = 2\n"
    "# An appeal outside the body's competence is forwarded within this many working days.\n"
    "forward_working_days = 3\n"
    "# A complaint is filed within this many months of learning of the act.\n"
    "complaint_window_months = 3\n"
    "# Term for a reopened appeal (a complaint against the answer), in working days.\n"
    "reopen_working_days = 15\n"
    "# Anonymous appeals are considered only for these types (reports of crimes\n"
    "# or of threats to state or public security), and are marked urgent.\n"
    "anonymous_types = report\n"
    "# Upper bound on the co-signers of one collective appeal.\n"
    "co_signers_max = 1000000\n"
    "# The language of an appeal filed without one (kk, ru or en): the applicant\n"
    "# is answered and notified in the language of the appeal.\n"
    "default_lang = kk\n"
    "# The body a complaint about an answer goes to (APPC: the higher body):\n"
    "# the republic's node for the regions. higher_body.JURIS = BODY overrides it\n"
    "# for one jurisdiction; `none` means there is no higher body in the system.\n"
    "# The country's own node (KZ) has none.\n"
    "higher_body = KZ\n";

const char rules_default_categories[] =
    "# Classifier of appeal topics: CODE<TAB>ENGLISH<TAB>KAZAKH<TAB>RUSSIAN\n"
    "# (or CODE<TAB>NAME: one name for all three languages). Sections after the\n"
    "# Russian federal appeals classifier; edit to the national classifier.\n"
    "0001\tState, society, politics\tМемлекет, қоғам, саясат\tГосударство, общество, политика\n"
    "0001.0001\tConstitutional order and rights\tКонституциялық құрылыс және құқықтар\t"
    "Конституционный строй и права\n"
    "0001.0002\tWork of state bodies\tМемлекеттік органдардың жұмысы\t"
    "Работа государственных органов\n"
    "0001.0003\tCitizenship and migration\tАзаматтық және көші-қон\tГражданство и миграция\n"
    "0002\tSocial sphere\tӘлеуметтік сала\tСоциальная сфера\n"
    "0002.0001\tSocial security and pensions\tӘлеуметтік қамсыздандыру және зейнетақы\t"
    "Социальное обеспечение и пенсии\n"
    "0002.0002\tHealth care\tДенсаулық сақтау\tЗдравоохранение\n"
    "0002.0003\tEducation\tБілім беру\tОбразование\n"
    "0002.0004\tEmployment and labour\tЖұмыспен қамту және еңбек\tЗанятость и труд\n"
    "0003\tEconomy\tЭкономика\tЭкономика\n"
    "0003.0001\tLand relations\tЖер қатынастары\tЗемельные отношения\n"
    "0003.0002\tRoads and transport\tЖолдар және көлік\tДороги и транспорт\n"
    "0003.0003\tEntrepreneurship\tКәсіпкерлік\tПредпринимательство\n"
    "0003.0004\tAgriculture\tАуыл шаруашылығы\tСельское хозяйство\n"
    "0004\tDefence, security, legality\tҚорғаныс, қауіпсіздік, заңдылық\t"
    "Оборона, безопасность, законность\n"
    "0004.0001\tLaw enforcement\tҚұқық қорғау қызметі\tПравоохранительная деятельность\n"
    "0004.0002\tCourts and justice\tСоттар және сот төрелігі\tСуды и правосудие\n"
    "0004.0003\tCorruption\tСыбайлас жемқорлық\tКоррупция\n"
    "0005\tHousing and utilities\tТұрғын үй-коммуналдық сала\tЖилищно-коммунальная сфера\n"
    "0005.0001\tHousing\tТұрғын үй\tЖилище\n"
    "0005.0002\tUtilities and tariffs\tКоммуналдық қызметтер және тарифтер\t"
    "Коммунальные услуги и тарифы\n"
    "0005.0003\tImprovement of settlements\tЕлді мекендерді абаттандыру\t"
    "Благоустройство населённых пунктов\n";

static const char *const type_names[APPEAL_TYPE_COUNT] = {
    NULL, "statement", "proposal", "request", "complaint", "report", "feedback"};

const char *appeal_type_name(int type) {
    return type > 0 && type < APPEAL_TYPE_COUNT ? type_names[type] : "unknown";
}

int appeal_type_parse(const char *s) {
    for (int i = 1; i < APPEAL_TYPE_COUNT; i++) {
        if (strcmp(s, type_names[i]) == 0) {
            return i;
        }
    }
    return 0;
}

static int parse_types(const char *v, uint32_t *mask, unsigned lineno, struct errbuf *e) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", v);
    *mask = 0;
    for (char *save = NULL, *t = strtok_r(buf, ", ", &save); t != NULL;
         t = strtok_r(NULL, ", ", &save)) {
        int ty = appeal_type_parse(t);
        if (ty == 0) {
            return err_set(e, APL_EINVAL, "rules.conf line %u: unknown appeal type `%s`", lineno,
                           t);
        }
        *mask |= 1u << ty;
    }
    return 0;
}

struct int_key {
    const char *name;
    size_t offset;
    long min, max;
};

static const struct int_key int_keys[] = {
    {"utc_offset_minutes", offsetof(struct ruleset, utc_offset_min), -720, 840},
    {"term_working_days", offsetof(struct ruleset, term_working_days), 1, 365},
    {"extension_max_months", offsetof(struct ruleset, extension_max_months), 0, 24},
    {"forward_working_days", offsetof(struct ruleset, forward_working_days), 0, 60},
    {"complaint_window_months", offsetof(struct ruleset, complaint_window_months), 1, 120},
    {"reopen_working_days", offsetof(struct ruleset, reopen_working_days), 1, 365},
};

static bool body_ok(const char *v) {
    return strcmp(v, "none") == 0 || juris_valid(v);
}

/* higher_body = BODY, or higher_body.JURIS = BODY. */
static int higher_line(struct ruleset *r, const char *key, const char *val, unsigned lineno,
                       struct errbuf *e) {
    const char *juris = key[11] == '.' ? key + 12 : NULL;
    if (key[11] != '\0' && (juris == NULL || !juris_valid(juris))) {
        return err_set(e, APL_EINVAL,
                       "rules.conf line %u: expected higher_body or higher_body.JURISDICTION",
                       lineno);
    }
    if (!body_ok(val) || strlen(val) >= RULES_JURIS_BYTES) {
        return err_set(e, APL_EINVAL,
                       "rules.conf line %u: higher_body is a jurisdiction (KZ, KZ-75) or none",
                       lineno);
    }
    if (juris == NULL) {
        snprintf(r->higher_body, sizeof r->higher_body, "%s", val);
        return 0;
    }
    uint32_t i = 0;
    while (i < r->higher_over_count && strcmp(r->higher_over[i].juris, juris) != 0) {
        i++;
    }
    if (i == RULES_HIGHER_OVERRIDES_MAX) {
        return err_set(e, APL_ETOOBIG, "rules.conf line %u: more than %d higher_body overrides",
                       lineno, RULES_HIGHER_OVERRIDES_MAX);
    }
    snprintf(r->higher_over[i].juris, sizeof r->higher_over[i].juris, "%s", juris);
    snprintf(r->higher_over[i].body, sizeof r->higher_over[i].body, "%s", val);
    r->higher_over_count += i == r->higher_over_count;
    return 0;
}

void ruleset_higher_body(const struct ruleset *r, const char *juris, char out[RULES_JURIS_BYTES]) {
    const char *b = r->higher_body;
    for (uint32_t i = 0; i < r->higher_over_count; i++) {
        if (strcmp(r->higher_over[i].juris, juris) == 0) {
            b = r->higher_over[i].body;
        }
    }
    bool none = strcmp(b, "none") == 0 || strcmp(b, juris) == 0;
    snprintf(out, RULES_JURIS_BYTES, "%s", none ? "" : b);
}

static int conf_line(struct ruleset *r, char *line, unsigned lineno, struct errbuf *e) {
    char *p = util_trim(line);
    if (*p == '\0' || *p == '#') {
        return 0;
    }
    char *eq = strchr(p, '=');
    if (eq == NULL) {
        return err_set(e, APL_EINVAL, "rules.conf line %u: expected `key = value`", lineno);
    }
    *eq = '\0';
    char *key = util_trim(p), *val = util_trim(eq + 1);
    for (size_t i = 0; i < sizeof int_keys / sizeof int_keys[0]; i++) {
        if (strcmp(key, int_keys[i].name) == 0) {
            long v;
            if (util_parse_long(val, int_keys[i].min, int_keys[i].max, &v) != 0) {
                return err_set(e, APL_EINVAL, "rules.conf line %u: %s must be %ld..%ld", lineno,
                               key, int_keys[i].min, int_keys[i].max);
            }
            *(int32_t *)((char *)r + int_keys[i].offset) = (int32_t)v;
            return 0;
        }
    }
    if (strcmp(key, "anonymous_types") == 0) {
        int rc = parse_types(val, &r->anonymous_types, lineno, e);
        r->urgent_anonymous = r->anonymous_types;
        return rc;
    }
    if (strcmp(key, "co_signers_max") == 0) {
        long v;
        if (util_parse_long(val, 0, 100000000, &v) != 0) {
            return err_set(e, APL_EINVAL, "rules.conf line %u: co_signers_max must be 0..1e8",
                           lineno);
        }
        r->co_signers_max = (uint32_t)v;
        return 0;
    }
    if (strcmp(key, "default_lang") == 0) {
        if (!i18n_lang_valid(val)) {
            return err_set(e, APL_EINVAL, "rules.conf line %u: default_lang is kk, ru or en",
                           lineno);
        }
        snprintf(r->default_lang, sizeof r->default_lang, "%s", val);
        return 0;
    }
    if (strncmp(key, "higher_body", 11) == 0) {
        return higher_line(r, key, val, lineno, e);
    }
    return err_set(e, APL_EINVAL, "rules.conf line %u: unknown key `%s`", lineno, key);
}

static int cat_cmp(const void *a, const void *b) {
    return strcmp(((const struct category *)a)->code, ((const struct category *)b)->code);
}

/* The names of a categories.tsv line: NAME (all three languages) or
 * ENGLISH<TAB>KAZAKH<TAB>RUSSIAN, each non-empty and one line. */
static int cat_names(struct category *c, char *names, unsigned lineno, struct errbuf *e) {
    char *cols[3] = {names, NULL, NULL};
    int n = 1;
    for (char *p = strchr(names, '\t'); p != NULL && n <= 3; p = strchr(p + 1, '\t')) {
        *p = '\0';
        if (n < 3) {
            cols[n] = p + 1;
        }
        n++;
    }
    if (n != 1 && n != 3) {
        return err_set(e, APL_EINVAL,
                       "categories.tsv line %u: expected CODE<TAB>NAME or "
                       "CODE<TAB>ENGLISH<TAB>KAZAKH<TAB>RUSSIAN",
                       lineno);
    }
    char *name[3];
    for (int i = 0; i < 3; i++) {
        name[i] = util_trim(cols[n == 1 ? 0 : i]);
        if (name[i][0] == '\0' || strlen(name[i]) >= RULES_CATEGORY_NAME_BYTES) {
            return err_set(e, APL_EINVAL, "categories.tsv line %u: a name is 1..%d bytes", lineno,
                           RULES_CATEGORY_NAME_BYTES - 1);
        }
    }
    snprintf(c->name, sizeof c->name, "%s", name[0]);
    snprintf(c->name_kk, sizeof c->name_kk, "%s", name[1]);
    snprintf(c->name_ru, sizeof c->name_ru, "%s", name[2]);
    return 0;
}

static int cat_line(struct ruleset *r, char *line, unsigned lineno, struct errbuf *e) {
    char *p = util_trim(line);
    if (*p == '\0' || *p == '#') {
        return 0;
    }
    char *tab = strchr(p, '\t');
    if (tab == NULL) {
        return err_set(e, APL_EINVAL, "categories.tsv line %u: expected CODE<TAB>NAME", lineno);
    }
    *tab = '\0';
    char *code = util_trim(p);
    size_t cl = strlen(code);
    if (cl == 0 || cl >= RULES_CATEGORY_CODE_BYTES || strspn(code, "0123456789.") != cl) {
        return err_set(e, APL_EINVAL, "categories.tsv line %u: a code is 1..%d digits and dots",
                       lineno, RULES_CATEGORY_CODE_BYTES - 1);
    }
    if (r->category_count >= RULES_CATEGORIES_MAX) {
        return err_set(e, APL_ETOOBIG, "categories.tsv: more than %d categories",
                       RULES_CATEGORIES_MAX);
    }
    struct category *c = &r->categories[r->category_count];
    snprintf(c->code, sizeof c->code, "%s", code);
    int rc = cat_names(c, tab + 1, lineno, e);
    if (rc == 0) {
        r->category_count++;
    }
    return rc;
}

typedef int (*line_fn)(struct ruleset *, char *, unsigned, struct errbuf *);

static int each_line(struct ruleset *r, const char *text, line_fn fn, struct errbuf *e) {
    if (strlen(text) > RULES_FILE_BYTES_MAX) {
        return err_set(e, APL_ETOOBIG, "rules file larger than %d bytes", RULES_FILE_BYTES_MAX);
    }
    char *copy = strdup(text);
    if (copy == NULL) {
        return APL_ENOMEM;
    }
    int rc = 0;
    unsigned lineno = 0;
    char *p = copy;
    while (rc == 0 && p != NULL && *p != '\0') {
        char *nl = strchr(p, '\n');
        if (nl != NULL) {
            *nl = '\0';
        }
        rc = fn(r, p, ++lineno, e);
        p = nl != NULL ? nl + 1 : NULL;
    }
    free(copy);
    return rc;
}

int ruleset_parse(struct ruleset *r, const char *conf, const char *holidays, const char *categories,
                  struct errbuf *e) {
    memset(r, 0, sizeof *r);
    r->co_signers_max = 1000000;
    r->categories = calloc(RULES_CATEGORIES_MAX, sizeof *r->categories);
    if (r->categories == NULL) {
        return APL_ENOMEM;
    }
    int rc = each_line(r, rules_default_conf, conf_line, e);
    if (rc == 0 && conf != NULL) {
        rc = each_line(r, conf, conf_line, e);
    }
    if (rc == 0) {
        rc = each_line(r, categories ? categories : rules_default_categories, cat_line, e);
    }
    if (rc == 0 && r->category_count == 0) {
        rc = err_set(e, APL_EINVAL, "categories.tsv lists no category");
    }
    if (rc == 0) {
        qsort(r->categories, r->category_count, sizeof *r->categories, cat_cmp);
        for (uint32_t i = 1; i < r->category_count; i++) {
            if (strcmp(r->categories[i - 1].code, r->categories[i].code) == 0) {
                rc = err_set(e, APL_EINVAL, "categories.tsv: code %s listed twice",
                             r->categories[i].code);
                break;
            }
        }
    }
    if (rc == 0) {
        rc = cal_load(&r->cal, holidays ? holidays : cal_default_text, e);
    }
    if (rc != 0) {
        free(r->categories);
        r->categories = NULL;
    }
    return rc;
}

int ruleset_load(struct ruleset *r, const char *dir, struct errbuf *e) {
    static const char *const names[3] = {"rules.conf", "holidays.conf", "categories.tsv"};
    char *texts[3] = {NULL, NULL, NULL};
    int rc = 0;
    for (int i = 0; i < 3 && rc == 0; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        rc = util_read_file(path, RULES_FILE_BYTES_MAX, &texts[i], NULL);
        if (rc == APL_ENOTFOUND) {
            rc = 0; /* the default applies */
        } else if (rc != 0) {
            err_set(e, rc, "cannot read %s: %s", path, apl_strerror(rc));
        }
    }
    if (rc == 0) {
        rc = ruleset_parse(r, texts[0], texts[1], texts[2], e);
    }
    for (int i = 0; i < 3; i++) {
        free(texts[i]);
    }
    return rc;
}

void ruleset_fini(struct ruleset *r) {
    free(r->categories);
    r->categories = NULL;
    cal_fini(&r->cal);
}

const struct category *ruleset_category(const struct ruleset *r, const char *code) {
    struct category key;
    snprintf(key.code, sizeof key.code, "%s", code);
    return bsearch(&key, r->categories, r->category_count, sizeof key, cat_cmp);
}

int iin_check_digit(const char *digits) {
    int sum = 0;
    for (int i = 0; i < 11; i++) {
        sum += (i + 1) * (digits[i] - '0');
    }
    int check = sum % 11;
    if (check == 10) {
        static const int w2[11] = {3, 4, 5, 6, 7, 8, 9, 10, 11, 1, 2};
        sum = 0;
        for (int i = 0; i < 11; i++) {
            sum += w2[i] * (digits[i] - '0');
        }
        check = sum % 11;
    }
    return check == 10 ? -1 : check;
}

int iin_check(const char *iin, struct errbuf *e) {
    if (strlen(iin) != 12 || strspn(iin, "0123456789") != 12) {
        return err_set(e, APL_EINVAL, "an IIN/BIN is exactly 12 digits");
    }
    int d[12];
    for (int i = 0; i < 12; i++) {
        d[i] = iin[i] - '0';
    }
    int check = iin_check_digit(iin);
    if (check < 0) {
        return err_set(e, APL_EINVAL, "the IIN/BIN is not valid (no check digit fits)");
    }
    if (check != d[11]) {
        return err_set(e, APL_EINVAL, "the IIN/BIN is not valid (check digit mismatch)");
    }
    /* A BIN has the organisation type (4, 5 or 6) in the fifth digit, where
     * an IIN has the first digit of the day of birth (0..3). */
    if (d[4] >= 4 && d[4] <= 6) {
        return 0;
    }
    int century = d[6];
    if (century < 1 || century > 6) {
        return err_set(e, APL_EINVAL, "the IIN is not valid (century digit must be 1..6)");
    }
    int year = 1800 + (century - 1) / 2 * 100 + d[0] * 10 + d[1];
    unsigned month = (unsigned)(d[2] * 10 + d[3]), mday = (unsigned)(d[4] * 10 + d[5]);
    if (!day_valid(year < 1900 ? 1900 : year, month, mday)) {
        return err_set(e, APL_EINVAL, "the IIN is not valid (birth date digits)");
    }
    return 0;
}
