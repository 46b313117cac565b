#include "i18n.h"

#include <assert.h>
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

#ifndef APPEAL_LOCALEDIR
#define APPEAL_LOCALEDIR "/usr/share/locale"
#endif

enum {
    MO_MAGIC = 0x950412de,
    MO_MAGIC_SWAPPED = 0xde120495,
    MO_HEADER_BYTES = 28,
    PLURAL_FORMS_BYTES_MAX = 256,
};

static const char *const lang_codes[I18N_LANG_COUNT] = {"en", "kk", "ru"};

/* The Plural-Forms rules a catalogue may have, spaces removed. */
enum { RULE_N_NE_1 = 0, RULE_RU = 1, RULE_ONE_FORM = 2, RULE_COUNT = 3 };
static const char *const rules_known[RULE_COUNT] = {
    "nplurals=2;plural=(n!=1);",
    "nplurals=3;plural=(n%10==1&&n%100!=11?0:n%10>=2&&n%10<=4&&(n%100<10||n%100>=20)?1:2);",
    "nplurals=1;plural=0;",
};

static unsigned plural_index(int rule, unsigned long n) {
    switch (rule) {
    case RULE_RU:
        return n % 10 == 1 && n % 100 != 11                                    ? 0
               : n % 10 >= 2 && n % 10 <= 4 && (n % 100 < 10 || n % 100 >= 20) ? 1
                                                                               : 2;
    case RULE_ONE_FORM:
        return 0;
    default:
        return n != 1;
    }
}

const char *i18n_lang_code(enum i18n_lang lang) {
    return lang >= 0 && lang < I18N_LANG_COUNT ? lang_codes[lang] : "en";
}

bool i18n_lang_valid(const char *code) {
    for (int i = 0; i < I18N_LANG_COUNT; i++) {
        if (strcmp(code, lang_codes[i]) == 0) {
            return true;
        }
    }
    return false;
}

int i18n_lang_parse(const char *s, enum i18n_lang *out) {
    if (s == NULL) {
        return APL_EINVAL;
    }
    /* The language is the part before any of - _ . @ */
    size_t n = strcspn(s, "-_.@");
    if (n != 2) {
        return APL_EINVAL;
    }
    for (int i = 0; i < I18N_LANG_COUNT; i++) {
        if (tolower((unsigned char)s[0]) == lang_codes[i][0] &&
            tolower((unsigned char)s[1]) == lang_codes[i][1]) {
            *out = (enum i18n_lang)i;
            return 0;
        }
    }
    return APL_EINVAL;
}

enum i18n_lang i18n_lang_from_env(void) {
    enum i18n_lang l = I18N_EN;
    const char *language = getenv("LANGUAGE");
    if (language != NULL) {
        char buf[256];
        snprintf(buf, sizeof buf, "%s", language);
        for (char *save = NULL, *t = strtok_r(buf, ":", &save); t != NULL;
             t = strtok_r(NULL, ":", &save)) {
            if (i18n_lang_parse(t, &l) == 0) {
                return l;
            }
        }
    }
    static const char *const vars[] = {"LC_ALL", "LC_MESSAGES", "LANG"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v != NULL && v[0] != '\0') {
            /* The first one set decides, as for setlocale(): LC_ALL=C
             * means C (English) even with LANG=ru_RU.UTF-8. */
            return i18n_lang_parse(v, &l) == 0 ? l : I18N_EN;
        }
    }
    return I18N_EN;
}

/* q of one Accept-Language entry's parameters ("q=0.5"), 1000ths; -1 if malformed. */
static int accept_q(const char *params) {
    const char *q = strstr(params, "q=");
    if (q == NULL) {
        return 1000;
    }
    q += 2;
    if (q[0] == '1') {
        return 1000;
    }
    if (q[0] != '0') {
        return -1;
    }
    int v = 0, scale = 100;
    for (q++, q += (*q == '.'); isdigit((unsigned char)*q) && scale > 0; q++, scale /= 10) {
        v += (*q - '0') * scale;
    }
    return v;
}

enum i18n_lang i18n_negotiate(const char *accept_language, enum i18n_lang fallback) {
    if (accept_language == NULL) {
        return fallback;
    }
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", accept_language);
    enum i18n_lang best = fallback;
    int best_q = 0, items = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save);
         t != NULL && items < I18N_ACCEPT_ITEMS_MAX; t = strtok_r(NULL, ",", &save), items++) {
        char *semi = strchr(t, ';');
        int q = semi != NULL ? accept_q(semi + 1) : 1000;
        if (semi != NULL) {
            *semi = '\0';
        }
        enum i18n_lang l;
        if (q > best_q && i18n_lang_parse(util_trim(t), &l) == 0) {
            best = l;
            best_q = q;
        }
    }
    return best;
}

static bool has_catalogues(const char *dir) {
    char path[I18N_PATH_BYTES_MAX];
    struct stat st;
    int n = snprintf(path, sizeof path, "%s/kk/LC_MESSAGES/" I18N_DOMAIN ".mo", dir);
    return n > 0 && (size_t)n < sizeof path && stat(path, &st) == 0; /* a cut path: none */
}

void i18n_localedir(char *out, size_t cap) {
    const char *env = getenv("APPEAL_LOCALEDIR");
    if (env != NULL && env[0] != '\0') {
        snprintf(out, cap, "%s", env);
        return;
    }
    char exe[I18N_PATH_BYTES_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash != NULL) {
            *slash = '\0';
            char dir[I18N_PATH_BYTES_MAX + 32];
            snprintf(dir, sizeof dir, "%s/../share/locale", exe);
            if (has_catalogues(dir)) {
                snprintf(out, cap, "%s", dir);
                return;
            }
        }
    }
    snprintf(out, cap, "%s", APPEAL_LOCALEDIR);
}

static uint32_t mo_u32(const struct i18n_catalog *c, size_t off, bool swapped) {
    uint32_t v;
    memcpy(&v, c->data + off, 4);
    return swapped ? __builtin_bswap32(v) : v;
}

/* The string of entry `i` of the table at `table`: checked at load. */
static const char *mo_str(const struct i18n_catalog *c, uint32_t table, uint32_t i, uint32_t *len) {
    uint32_t l, off;
    memcpy(&l, c->data + table + 8u * i, 4);
    memcpy(&off, c->data + table + 8u * i + 4, 4);
    if (len != NULL) {
        *len = l;
    }
    return (const char *)c->data + off;
}

/* Checks every table entry lies in the file and ends with a NUL, puts the
 * tables in host order, and checks the msgids are sorted (binary search). */
static int mo_check(struct i18n_catalog *c, bool swapped) {
    uint32_t tables[2] = {c->orig_off, c->trans_off};
    for (int t = 0; t < 2; t++) {
        if (tables[t] % 4 != 0 || tables[t] > c->len || (c->len - tables[t]) / 8 < c->count) {
            return APL_ECORRUPT;
        }
        for (uint32_t i = 0; i < c->count; i++) {
            uint32_t l = mo_u32(c, tables[t] + 8u * i, swapped);
            uint32_t off = mo_u32(c, tables[t] + 8u * i + 4, swapped);
            if (off > c->len || l >= c->len - off || c->data[off + l] != '\0') {
                return APL_ECORRUPT;
            }
            memcpy(c->data + tables[t] + 8u * i, &l, 4);
            memcpy(c->data + tables[t] + 8u * i + 4, &off, 4);
        }
    }
    for (uint32_t i = 1; i < c->count; i++) {
        if (strcmp(mo_str(c, c->orig_off, i - 1, NULL), mo_str(c, c->orig_off, i, NULL)) >= 0) {
            return APL_ECORRUPT;
        }
    }
    return 0;
}

static long mo_find(const struct i18n_catalog *c, const char *key) {
    uint32_t lo = 0, hi = c->count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int cmp = strcmp(key, mo_str(c, c->orig_off, mid, NULL));
        if (cmp == 0) {
            return (long)mid;
        }
        if (cmp < 0) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    return -1;
}

/* The Plural-Forms of the header (the translation of ""), matched against
 * the known rules. A catalogue without one gets n != 1. */
static int mo_plural_rule(const struct i18n_catalog *c, int *rule) {
    *rule = RULE_N_NE_1;
    long h = mo_find(c, "");
    if (h < 0) {
        return 0;
    }
    const char *hdr = mo_str(c, c->trans_off, (uint32_t)h, NULL);
    const char *p = strstr(hdr, "Plural-Forms:");
    if (p == NULL) {
        return 0;
    }
    char norm[PLURAL_FORMS_BYTES_MAX];
    size_t n = 0;
    for (p += strlen("Plural-Forms:"); *p != '\0' && *p != '\n'; p++) {
        if (!isspace((unsigned char)*p)) {
            if (n + 1 >= sizeof norm) {
                return APL_ECORRUPT;
            }
            norm[n++] = *p;
        }
    }
    norm[n] = '\0';
    for (int i = 0; i < RULE_COUNT; i++) {
        if (strcmp(norm, rules_known[i]) == 0) {
            *rule = i;
            return 0;
        }
    }
    return APL_ECORRUPT;
}

static int catalog_load(struct i18n_catalog *c, const char *path, struct errbuf *e) {
    char *data = NULL;
    size_t len = 0;
    int rc = util_read_file(path, I18N_CATALOG_BYTES_MAX, &data, &len);
    if (rc == APL_ENOTFOUND) {
        return 0; /* that language shows English */
    }
    if (rc != 0) {
        return err_set(e, rc, "cannot read %s: %s", path, apl_strerror(rc));
    }
    *c = (struct i18n_catalog){.data = (unsigned char *)data, .len = len};
    bool swapped = false;
    if (len >= MO_HEADER_BYTES) {
        uint32_t magic;
        memcpy(&magic, data, 4);
        swapped = magic == MO_MAGIC_SWAPPED;
        rc = magic == MO_MAGIC || swapped ? 0 : APL_ECORRUPT;
    } else {
        rc = APL_ECORRUPT;
    }
    if (rc == 0 && (mo_u32(c, 4, swapped) >> 16) != 0) {
        rc = APL_ECORRUPT; /* a major revision this reader does not know */
    }
    if (rc == 0) {
        c->count = mo_u32(c, 8, swapped);
        c->orig_off = mo_u32(c, 12, swapped);
        c->trans_off = mo_u32(c, 16, swapped);
        rc = mo_check(c, swapped);
    }
    if (rc == 0) {
        rc = mo_plural_rule(c, &c->plural_rule);
    }
    if (rc != 0) {
        free(c->data);
        *c = (struct i18n_catalog){0};
        return err_set(e, APL_ECORRUPT,
                       "%s is not a catalogue this program reads (a gettext .mo file with "
                       "sorted entries and a known Plural-Forms)",
                       path);
    }
    return 0;
}

int i18n_open(struct i18n *t, const char *localedir, struct errbuf *e) {
    memset(t, 0, sizeof *t);
    char dir[I18N_PATH_BYTES_MAX];
    if (localedir == NULL) {
        i18n_localedir(dir, sizeof dir);
        localedir = dir;
    }
    int rc = 0;
    for (int l = I18N_KK; l < I18N_LANG_COUNT && rc == 0; l++) {
        char path[I18N_PATH_BYTES_MAX + 64];
        snprintf(path, sizeof path, "%s/%s/LC_MESSAGES/" I18N_DOMAIN ".mo", localedir,
                 lang_codes[l]);
        rc = catalog_load(&t->cat[l], path, e);
    }
    if (rc != 0) {
        i18n_close(t);
    }
    return rc;
}

void i18n_close(struct i18n *t) {
    for (int l = 0; l < I18N_LANG_COUNT; l++) {
        free(t->cat[l].data);
    }
    memset(t, 0, sizeof *t);
}

bool i18n_has(const struct i18n *t, enum i18n_lang lang) {
    return lang == I18N_EN ||
           (t != NULL && lang > 0 && lang < I18N_LANG_COUNT && t->cat[lang].data != NULL);
}

/* The translation of `key` (which may carry a context) in `lang`, or NULL. */
static const char *lookup(const struct i18n *t, enum i18n_lang lang, const char *key,
                          uint32_t *len) {
    if (!i18n_has(t, lang) || lang == I18N_EN) {
        return NULL;
    }
    const struct i18n_catalog *c = &t->cat[lang];
    long i = mo_find(c, key);
    if (i < 0) {
        return NULL;
    }
    const char *s = mo_str(c, c->trans_off, (uint32_t)i, len);
    return s[0] != '\0' ? s : NULL; /* an empty msgstr is untranslated */
}

const char *i18n_get(const struct i18n *t, enum i18n_lang lang, const char *msgid) {
    const char *s = lookup(t, lang, msgid, NULL);
    return s != NULL ? s : msgid;
}

const char *i18n_pget(const struct i18n *t, enum i18n_lang lang, const char *ctx,
                      const char *msgid) {
    char key[1024];
    int n = snprintf(key, sizeof key, "%s\004%s", ctx, msgid);
    if (n < 0 || (size_t)n >= sizeof key) {
        return msgid;
    }
    const char *s = lookup(t, lang, key, NULL);
    return s != NULL ? s : msgid;
}

const char *i18n_nget(const struct i18n *t, enum i18n_lang lang, const char *singular,
                      const char *plural, unsigned long n) {
    uint32_t len = 0;
    const char *s = lookup(t, lang, singular, &len);
    if (s == NULL) {
        return n == 1 ? singular : plural;
    }
    unsigned form = plural_index(t->cat[lang].plural_rule, n);
    const char *end = s + len;
    for (unsigned k = 0; k < form; k++) {
        s += strlen(s) + 1;
        if (s >= end) {
            return n == 1 ? singular : plural; /* fewer forms than the rule */
        }
    }
    return s;
}
