#include "open311.h"

#include <ctype.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api.h"
#include "auth.h"
#include "cal.h"
#include "channel.h"
#include "clusterfile.h"
#include "httpd.h"
#include "i18n.h"
#include "lifecycle.h"
#include "names.h"
#include "chain.h"
#include "node.h"
#include "olog.h"
#include "open311_out.h"
#include "receipt.h"
#include "applicant.h"
#include "record.h"
#include "state.h"
#include "util.h"
#include "view.h"

/* A channel's filings in the current minute (httpd thread only). */
struct rate_window {
    uint8_t key[KEY_PK_BYTES];
    int64_t minute;
    uint32_t used;
    int64_t last_ms;
};

struct open311 {
    struct node *n;
    struct httpd *srv;
    /* httpd thread only: a request's query fields, one appeal row, one
     * record (each reset before reuse) */
    struct arena scratch, row_arena, rec_arena;
    struct rate_window windows[OPEN311_CHANNELS_TRACKED_MAX];
    struct i18n tr;           /* kk and ru catalogues, read-only after start */
    enum i18n_lang dflt_lang; /* rules.conf default_lang */
    uint32_t n_windows;
    char paths[10][64];          /* the routes' paths (httpd keeps pointers) */
    struct applicant *applicant; /* requests/NUMBER/mine (applicant.h) */
};

enum { FMT_JSON, FMT_XML };

/* ---- small helpers ---- */

/* "2026-03-01T10:00:00+05:00": ISO 8601 in the jurisdiction's offset. */
static void iso_time(int64_t ms, int32_t offset_min, char out[48]) {
    time_t secs = (time_t)(ms / 1000 + (int64_t)offset_min * 60);
    struct tm tm;
    gmtime_r(&secs, &tm);
    int32_t off = offset_min < 0 ? -offset_min : offset_min;
    snprintf(out, 48, "%04d-%02d-%02dT%02d:%02d:%02d%c%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, offset_min < 0 ? '-' : '+',
             (int)(off / 60), (int)(off % 60));
}

/* The end of local day `day` (the last moment of a legal term). */
static void iso_day_end(int32_t day, int32_t offset_min, char out[48]) {
    int64_t ms = ((int64_t)day * 86400 + 86399) * 1000 - (int64_t)offset_min * 60000;
    iso_time(ms, offset_min, out);
}

/* ISO 8601 date-time ("Z" or an offset; seconds optional) or a date. */
static int parse_time(const char *s, int64_t *ms) {
    int y, mo, d, h = 0, mi = 0, sec = 0, n = 0;
    if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3 || n != 10 ||
        !day_valid(y, (unsigned)mo, (unsigned)d)) {
        return APL_EINVAL;
    }
    const char *p = s + 10;
    int64_t off_s = 5 * 3600; /* a bare date or time is Kazakhstan's */
    if (*p == 'T' || *p == ' ') {
        int m = 0;
        if (sscanf(p + 1, "%2d:%2d%n", &h, &mi, &m) != 2 || m != 5) {
            return APL_EINVAL;
        }
        p += 1 + m;
        if (*p == ':' && sscanf(p + 1, "%2d%n", &sec, &m) == 1 && m == 2) {
            p += 3;
        }
        if (*p == '.') { /* fractions of a second are ignored */
            p++;
            while (isdigit((unsigned char)*p)) {
                p++;
            }
        }
        int oh, om;
        if (*p == 'Z') {
            off_s = 0;
            p++;
        } else if ((*p == '+' || *p == '-') && sscanf(p + 1, "%2d:%2d%n", &oh, &om, &m) == 2 &&
                   m == 5) {
            off_s = (*p == '-' ? -1 : 1) * (oh * 3600 + om * 60);
            p += 1 + m;
        }
    }
    if (*p != '\0' || h > 23 || mi > 59 || sec > 60) {
        return APL_EINVAL;
    }
    int64_t day = day_from_civil(y, (unsigned)mo, (unsigned)d);
    *ms = ((day * 86400 + h * 3600 + mi * 60 + sec) - off_s) * 1000;
    return 0;
}

/* ---- form and query fields ---- */

struct field {
    char *key, *val;
};

struct fields {
    struct field f[OPEN311_FIELDS_MAX];
    size_t n;
};

static int hexval(int c) {
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Decodes one x-www-form-urlencoded token into the arena. */
static char *form_decode(const char *s, size_t len, struct arena *a) {
    char *out = arena_new(a, len + 1);
    if (out == NULL) {
        return NULL;
    }
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '+') {
            out[k++] = ' ';
        } else if (s[i] == '%') {
            int hi = i + 1 < len ? hexval((unsigned char)s[i + 1]) : -1;
            int lo = i + 2 < len ? hexval((unsigned char)s[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                return NULL; /* malformed escape, or a NUL */
            }
            out[k++] = (char)(hi * 16 + lo);
            i += 2;
        } else if (s[i] == '\0') {
            return NULL;
        } else {
            out[k++] = s[i];
        }
    }
    out[k] = '\0';
    return out;
}

/* Adds the fields of `s` (a query string or a form body). */
static int form_parse(const char *s, size_t len, struct arena *a, struct fields *fs,
                      struct errbuf *e) {
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && s[j] != '&') {
            j++;
        }
        if (j > i) {
            if (fs->n == OPEN311_FIELDS_MAX) {
                return err_set(e, APL_EINVAL, "too many fields: at most %d", OPEN311_FIELDS_MAX);
            }
            const char *eq = memchr(s + i, '=', j - i);
            size_t kl = eq != NULL ? (size_t)(eq - (s + i)) : j - i;
            struct field *f = &fs->f[fs->n];
            f->key = form_decode(s + i, kl, a);
            f->val =
                eq != NULL ? form_decode(eq + 1, (size_t)(s + j - eq - 1), a) : arena_strdup(a, "");
            if (f->key == NULL || f->val == NULL) {
                return err_set(e, APL_EINVAL, "malformed form encoding (a bad %%-escape or a NUL)");
            }
            fs->n++;
        }
        i = j + 1;
    }
    return 0;
}

/* The first value of `key`, or NULL. */
static const char *field(const struct fields *fs, const char *key) {
    for (size_t i = 0; i < fs->n; i++) {
        if (strcmp(fs->f[i].key, key) == 0) {
            return fs->f[i].val;
        }
    }
    return NULL;
}

static const char *field_or(const struct fields *fs, const char *key, const char *dflt) {
    const char *v = field(fs, key);
    return v != NULL ? v : dflt;
}

/* ---- paths, formats, errors ---- */

/* "/open311/v2/requests.json" -> stem "/open311/v2/requests", FMT_JSON;
 * -1 without a known extension. */
static int path_format(const char *path, char *stem, size_t cap) {
    size_t n = strlen(path);
    int fmt = -1;
    size_t cut = n;
    if (n > 5 && strcmp(path + n - 5, ".json") == 0) {
        fmt = FMT_JSON;
        cut = n - 5;
    } else if (n > 4 && strcmp(path + n - 4, ".xml") == 0) {
        fmt = FMT_XML;
        cut = n - 4;
    }
    if (stem != NULL) {
        snprintf(stem, cap, "%.*s", (int)(cut < cap ? cut : cap - 1), path);
    }
    return fmt;
}

static void errors_doc(bool xml, int status, const char *why, struct httpd_res *res) {
    struct out o;
    if (out_begin(&o, xml) != 0) {
        *res = (struct httpd_res){.status = 503, .content_type = "text/plain"};
        return;
    }
    char text[512];
    snprintf(text, sizeof text, "%s", why);
    size_t tl = strlen(text);
    while (tl > 0 && (text[tl - 1] == '\n' || text[tl - 1] == ' ')) {
        text[--tl] = '\0';
    }
    out_list(&o, NULL, "errors");
    out_obj(&o, NULL, "error");
    out_int(&o, "code", status);
    out_str(&o, "description", text);
    out_obj_end(&o, "error");
    out_list_end(&o, "errors");
    out_finish(&o, status, res);
}

/* httpd's own errors (404, 405, 413, 408, ...) as the spec's errors. */
static void on_error(void *arg, const char *path, int status, const char *why,
                     struct httpd_res *res) {
    (void)arg;
    bool xml = path != NULL && path_format(path, NULL, 0) == FMT_XML;
    errors_doc(xml, status, why, res);
}

static int http_status_of(int rc) {
    switch (rc) {
    case APL_EINVAL:
    case APL_EREFUSED:
    case APL_ETRANSITION:
        return 400;
    case APL_EAUTH:
    case APL_EFORBIDDEN:
        return 403;
    case APL_ENOTFOUND:
        return 404;
    case APL_ETOOBIG:
        return 413;
    case APL_EUNAVAIL:
    case APL_EFULL:
    case APL_ESTORAGE:
        return 503;
    default:
        return 500;
    }
}

/* The language of an answer (docs/open311.md "Languages"): the `locale`
 * parameter when it names kk, ru or en ("kk", "ru_RU", "en-GB"); else the
 * best of Accept-Language; else the node's default_lang. */
static enum i18n_lang locale_or(const struct httpd_req *r, const struct fields *q,
                                enum i18n_lang fallback) {
    const char *l = field(q, "locale");
    enum i18n_lang lang;
    if (l != NULL && i18n_lang_parse(l, &lang) == 0) {
        return lang;
    }
    return i18n_negotiate(httpd_header(r, "Accept-Language"), fallback);
}

static enum i18n_lang locale_of(const struct open311 *o, const struct httpd_req *r,
                                const struct fields *q) {
    return locale_or(r, q, o->dflt_lang);
}

static const char *category_name(const struct category *c, enum i18n_lang lang) {
    return names_category(c, lang);
}

static const char *tr(const struct open311 *o, enum i18n_lang lang, const char *msgid)
    __attribute__((format_arg(3)));
static const char *tr(const struct open311 *o, enum i18n_lang lang, const char *msgid) {
    return i18n_get(&o->tr, lang, msgid);
}

/* ---- discovery and services ---- */

static void on_discovery(void *arg, const struct httpd_req *r, struct httpd_res *res) {
    struct open311 *o = arg;
    bool xml = path_format(r->path, NULL, 0) == FMT_XML;
    const char *host = httpd_header(r, "Host");
    const char *proto = httpd_header(r, "X-Forwarded-Proto");
    char url[512];
    snprintf(url, sizeof url, "%s://%.256s/open311/v2/",
             proto != NULL && strcmp(proto, "https") == 0 ? "https" : "http",
             host != NULL ? host : "localhost");
    struct out d;
    if (out_begin(&d, xml) != 0) {
        errors_doc(xml, 503, "out of memory", res);
        return;
    }
    out_obj(&d, NULL, "discovery");
    out_str(&d, "changeset", "2026-12-01T00:00:00+05:00");
    out_str(&d, "contact", o->n->eng.juris);
    out_str(&d, "key_service", "appealctl channel add (the node's administrator)");
    out_list(&d, "endpoints", "endpoints");
    out_obj(&d, NULL, "endpoint");
    out_str(&d, "specification", "http://wiki.open311.org/GeoReport_v2");
    out_str(&d, "url", url);
    out_str(&d, "changeset", "2026-12-01T00:00:00+05:00");
    out_str(&d, "type", "production");
    out_list(&d, "formats", "formats");
    out_item(&d, "format", "text/xml");
    out_item(&d, "format", "application/json");
    out_list_end(&d, "formats");
    out_obj_end(&d, "endpoint");
    out_list_end(&d, "endpoints");
    /* Extension: the languages of names and notes (the `locale` parameter). */
    out_list(&d, "locales", "locales");
    out_item(&d, "locale", "kk");
    out_item(&d, "locale", "ru");
    out_item(&d, "locale", "en");
    out_list_end(&d, "locales");
    out_str(&d, "default_locale", i18n_lang_code(o->dflt_lang));
    out_obj_end(&d, "discovery");
    out_finish(&d, 200, res);
}

static void service_fields(struct out *d, const struct ruleset *ru, const struct category *c,
                           enum i18n_lang locale) {
    out_str(d, "service_code", c->code);
    out_str(d, "service_name", category_name(c, locale));
    out_str(d, "description", category_name(c, locale));
    out_bool(d, "metadata", true);
    out_str(d, "type", "realtime");
    out_str(d, "keywords", NULL);
    char section[RULES_CATEGORY_CODE_BYTES];
    snprintf(section, sizeof section, "%.*s", (int)strcspn(c->code, "."), c->code);
    const struct category *g = ruleset_category(ru, section);
    out_str(d, "group", g != NULL ? category_name(g, locale) : NULL);
}

static void on_services(void *arg, const struct httpd_req *r, struct httpd_res *res) {
    struct open311 *o = arg;
    bool xml = path_format(r->path, NULL, 0) == FMT_XML;
    struct fields q = {.n = 0};
    arena_reset(&o->scratch);
    struct errbuf e;
    err_clear(&e);
    if (form_parse(r->query, strlen(r->query), &o->scratch, &q, &e) != 0) {
        errors_doc(xml, 400, e.msg, res);
        return;
    }
    enum i18n_lang locale = locale_of(o, r, &q);
    const struct ruleset *ru = &o->n->rules;
    struct out d;
    if (out_begin(&d, xml) != 0) {
        errors_doc(xml, 503, "out of memory", res);
        return;
    }
    out_list(&d, NULL, "services");
    for (uint32_t i = 0; i < ru->category_count; i++) {
        out_obj(&d, NULL, "service");
        service_fields(&d, ru, &ru->categories[i], locale);
        out_obj_end(&d, "service");
    }
    out_list_end(&d, "services");
    out_finish(&d, 200, res);
}

struct attr {
    const char *code, *datatype, *description, *datatype_description;
    bool required;
};

/* The descriptions are translated where they are shown (tr). */
static const struct attr attrs[] = {
    {"type", "singlevaluelist", N_("The kind of appeal (Administrative Procedural Code)"), NULL,
     true},
    {"subject", "string", N_("What the appeal is about, one line (default: the service's name)"),
     N_("at most 1000 bytes"), false},
    {"iin", "string", N_("The applicant's IIN (sealed; never shown publicly)"), N_("12 digits"),
     false},
    {"co_signers", "number", N_("Co-signers of a collective appeal besides the applicant"),
     N_("0 or more; not with anonymous"), false},
    {"anonymous", "singlevaluelist",
     N_("Anonymous: only reports of crimes or threats to state or public security (type "
        "report); then no name, IIN or contacts"),
     NULL, false},
    {"repeat_of", "string", N_("The number of an earlier appeal on the same issue"),
     N_("a registration number, e.g. KZ-75-2026-000001"), false},
    {"learned_date", "datetime",
     N_("Complaints: the day the applicant learned of the act (the 3-month window counts from "
        "it)"),
     "YYYY-MM-DD", false},
    {"late_reason", "text", N_("Complaints past the window: why the term was missed"), NULL, false},
};

/* The names of the values of a singlevaluelist attribute: the appeal
 * types in the terms of the Code, or anonymity. */
static const char *value_name(const struct open311 *o, enum i18n_lang lang, bool types, int t) {
    if (types) {
        return names_type(&o->tr, lang, t);
    }
    return t == 1 ? tr(o, lang, N_("not anonymous")) : tr(o, lang, N_("anonymous"));
}

static void on_service_def(void *arg, const struct httpd_req *r, struct httpd_res *res) {
    struct open311 *o = arg;
    char stem[256];
    bool xml = path_format(r->path, stem, sizeof stem) == FMT_XML;
    const char *code = stem + strlen("/open311/v2/services/");
    const struct category *c =
        strlen(stem) > strlen("/open311/v2/services/") && path_format(r->path, NULL, 0) >= 0
            ? ruleset_category(&o->n->rules, code)
            : NULL;
    if (c == NULL) {
        errors_doc(xml, 404, "no such service_code (see services.json)", res);
        return;
    }
    struct fields q = {.n = 0};
    arena_reset(&o->scratch);
    struct errbuf e;
    err_clear(&e);
    if (form_parse(r->query, strlen(r->query), &o->scratch, &q, &e) != 0) {
        errors_doc(xml, 400, e.msg, res);
        return;
    }
    enum i18n_lang lang = locale_of(o, r, &q);
    struct out d;
    if (out_begin(&d, xml) != 0) {
        errors_doc(xml, 503, "out of memory", res);
        return;
    }
    out_obj(&d, NULL, "service_definition");
    out_str(&d, "service_code", c->code);
    out_list(&d, "attributes", "attributes");
    for (size_t i = 0; i < sizeof attrs / sizeof attrs[0]; i++) {
        const struct attr *a = &attrs[i];
        out_obj(&d, NULL, "attribute");
        out_bool(&d, "variable", true);
        out_str(&d, "code", a->code);
        out_str(&d, "datatype", a->datatype);
        out_bool(&d, "required", a->required);
        out_str(&d, "datatype_description",
                a->datatype_description != NULL ? tr(o, lang, a->datatype_description) : NULL);
        out_int(&d, "order", (int64_t)i + 1);
        out_str(&d, "description", tr(o, lang, a->description));
        if (strcmp(a->datatype, "singlevaluelist") == 0) {
            out_list(&d, "values", "values");
            bool types = strcmp(a->code, "type") == 0;
            for (int t = 1; t < (types ? APPEAL_TYPE_COUNT : 3); t++) {
                out_obj(&d, NULL, "value");
                const char *k = types ? appeal_type_name(t) : t == 1 ? "false" : "true";
                out_str(&d, "key", k);
                out_str(&d, "name", value_name(o, lang, types, t));
                out_obj_end(&d, "value");
            }
            out_list_end(&d, "values");
        }
        out_obj_end(&d, "attribute");
    }
    out_list_end(&d, "attributes");
    out_obj_end(&d, "service_definition");
    out_finish(&d, 200, res);
}

/* ---- public status ---- */

struct status_ctx {
    struct open311 *o;
    MDB_txn *t;
    int64_t now_ms;
    int32_t today;
    enum i18n_lang locale;
    struct {
        char juris[16];
        int64_t staleness_ms; /* -1: no record of it held */
    } seen[16];
    size_t n_seen;
};

/* How old this node's view of `owner`'s log is: 0 for its own; else now
 * minus the time of the newest record of that origin held here. */
static int64_t staleness_of(struct status_ctx *sc, const char *owner) {
    struct node *n = sc->o->n;
    if (strcmp(owner, n->eng.juris) == 0) {
        return 0;
    }
    for (size_t i = 0; i < sc->n_seen; i++) {
        if (strcmp(sc->seen[i].juris, owner) == 0) {
            return sc->seen[i].staleness_ms;
        }
    }
    int64_t st = -1;
    MDB_cursor *c;
    if (mdb_cursor_open(sc->t, n->eng.store.dbi[DB_ORIGINS], &c) == 0) {
        MDB_val k, v;
        for (int m = mdb_cursor_get(c, &k, &v, MDB_FIRST); m == 0;
             m = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
            struct origin_state os;
            if (k.mv_size == KEY_PK_BYTES &&
                chain_origin_get(&n->eng.store, sc->t, k.mv_data, &os) == 0 &&
                strcmp(os.juris, owner) == 0 && os.head_time_ms > 0) {
                int64_t s = sc->now_ms - os.head_time_ms;
                st = s < 0 ? 0 : s;
            }
        }
        mdb_cursor_close(c);
    }
    if (sc->n_seen < sizeof sc->seen / sizeof sc->seen[0]) {
        snprintf(sc->seen[sc->n_seen].juris, 16, "%s", owner);
        sc->seen[sc->n_seen++].staleness_ms = st;
    }
    return st;
}

/* The time of the appeal's last event (its newest record). */
static int64_t last_event_ms(struct status_ctx *sc, const char *number, int64_t dflt) {
    struct node *n = sc->o->n;
    MDB_cursor *c;
    int64_t ms = dflt;
    if (mdb_cursor_open(sc->t, n->eng.store.dbi[DB_EVENTS], &c) != 0) {
        return ms;
    }
    MDB_val k = {strlen(number), (void *)number}, v;
    if (mdb_cursor_get(c, &k, &v, MDB_SET_KEY) == 0 &&
        mdb_cursor_get(c, &k, &v, MDB_LAST_DUP) == 0 && v.mv_size >= 16) {
        const uint8_t *ref = v.mv_data;
        MDB_val env;
        struct record rec;
        arena_reset(&sc->o->rec_arena);
        if (chain_get(&n->eng.store, sc->t, be32_get(ref + 4), be64_get(ref + 8), &env) == 0 &&
            rec_decode(env.mv_data, env.mv_size, &sc->o->rec_arena, &rec, NULL) == 0) {
            ms = rec.body->time_ms;
        }
    }
    mdb_cursor_close(c);
    return ms;
}

/* status_notes (open311.h): what happened, in our words and the caller's
 * language, without any personal data (no assignee, no reasons: officials'
 * reasons are sealed). */
void open311_status_notes(const struct i18n *trs, struct node *nd, enum i18n_lang l, int32_t today,
                          const Appeal__AppealRow *r, char *buf, size_t cap) {
    const char *outcome = names_outcome(trs, l, r->outcome);
    char d[11];
    size_t n = 0;
    switch (r->status) {
    case APPEAL__STATUS__STATUS_EXTENDED:
        day_format(r->deadline_day, d);
        n = (size_t)snprintf(buf, cap, i18n_get(trs, l, N_("term extended until %s")), d);
        break;
    case APPEAL__STATUS__STATUS_FORWARDED:
        n = (size_t)snprintf(buf, cap, i18n_get(trs, l, N_("forwarded to %s")), r->forwarded_to);
        break;
    case APPEAL__STATUS__STATUS_ANSWERED:
        n = (size_t)snprintf(buf, cap, i18n_get(trs, l, N_("answered: %s")), outcome);
        break;
    case APPEAL__STATUS__STATUS_CLOSED:
        n = r->outcome ? (size_t)snprintf(
                             buf, cap, i18n_get(trs, l, N_("closed after the answer: %s")), outcome)
                       : (size_t)snprintf(buf, cap, "%s", names_status(trs, l, r->status));
        break;
    case APPEAL__STATUS__STATUS_REOPENED:
        day_format(r->deadline_day, d);
        n = (size_t)snprintf(buf, cap, i18n_get(trs, l, N_("reopened; new term until %s")), d);
        break;
    default:
        n = (size_t)snprintf(buf, cap, "%s", names_status(trs, l, r->status));
    }
    if (n < cap && strcmp(r->owner, r->received_by) != 0 &&
        r->status != APPEAL__STATUS__STATUS_FORWARDED) {
        n += (size_t)snprintf(buf + n, cap - n,
                              i18n_get(trs, l, N_("; handled by %s (registered by %s)")), r->owner,
                              r->received_by);
    }
    int32_t late = 0;
    if (n < cap && view_overdue(nd, r, today, &late)) {
        snprintf(buf + n, cap - n,
                 i18n_nget(trs, l, "; overdue by %d working day", "; overdue by %d working days",
                           (unsigned long)late),
                 late);
    }
}

static void request_fields(struct out *d, struct status_ctx *sc, const Appeal__AppealRow *r) {
    int32_t off = sc->o->n->rules.utc_offset_min;
    const struct category *c = ruleset_category(&sc->o->n->rules, r->category);
    char notes[512], req[48], exp[48], upd[48];
    open311_status_notes(&sc->o->tr, sc->o->n, sc->locale, sc->today, r, notes, sizeof notes);
    iso_time(r->registered_ms, off, req);
    iso_day_end(r->deadline_day, off, exp);
    iso_time(last_event_ms(sc, r->number, r->registered_ms), off, upd);
    bool closed =
        r->status == APPEAL__STATUS__STATUS_CLOSED || r->status == APPEAL__STATUS__STATUS_WITHDRAWN;
    out_str(d, "service_request_id", r->number);
    out_str(d, "status", closed ? "closed" : "open");
    out_str(d, "status_notes", notes);
    out_str(d, "service_name", c != NULL ? category_name(c, sc->locale) : NULL);
    out_str(d, "service_code", r->category);
    out_str(d, "description", ""); /* never the applicant's text (docs/open311.md) */
    out_str(d, "agency_responsible", r->owner);
    out_str(d, "service_notice", NULL);
    out_str(d, "requested_datetime", req);
    out_str(d, "updated_datetime", upd);
    out_str(d, "expected_datetime", exp);
    /* Extensions: the appeal's kind, and where the answer comes from. */
    out_str(d, "appeal_type", appeal_type_name(r->type));
    bool own = strcmp(r->owner, sc->o->n->eng.juris) == 0;
    out_str(d, "answered_by", sc->o->n->eng.juris);
    out_str(d, "source", own ? "owner" : "replica");
    out_int(d, "staleness_ms", staleness_of(sc, r->owner));
}

static void status_begin(struct status_ctx *sc, struct open311 *o, MDB_txn *t,
                         enum i18n_lang locale) {
    memset(sc, 0, sizeof *sc);
    sc->o = o;
    sc->t = t;
    sc->now_ms = node_now_ms(o->n);
    sc->today = node_today(o->n);
    sc->locale = locale;
}

/* GET requests/NUMBER.{json,xml} */
static void on_request(void *arg, const struct httpd_req *r, struct httpd_res *res) {
    struct open311 *o = arg;
    char stem[256];
    int fmt = path_format(r->path, stem, sizeof stem);
    bool xml = fmt == FMT_XML;
    const char *number = stem + strlen("/open311/v2/requests/");
    if (fmt < 0 || strlen(stem) <= strlen("/open311/v2/requests/")) {
        errors_doc(xml, 404, "not found: ask for requests/NUMBER.json or .xml", res);
        return;
    }
    size_t nl = strlen(number);
    if (fmt >= 0 && nl > 5 && strcmp(number + nl - 5, "/mine") == 0) {
        char num[NUMBER_BYTES_MAX + 1];
        snprintf(num, sizeof num, "%.*s", (int)(nl - 5), number);
        applicant_mine(o->applicant, r, num, xml, res);
        return;
    }
    if (!number_valid(number)) {
        errors_doc(xml, 404, "not a registration number (e.g. KZ-75-2026-000001)", res);
        return;
    }
    struct fields q = {.n = 0};
    arena_reset(&o->scratch);
    struct errbuf e;
    err_clear(&e);
    if (form_parse(r->query, strlen(r->query), &o->scratch, &q, &e) != 0) {
        errors_doc(xml, 400, e.msg, res);
        return;
    }
    MDB_txn *t;
    if (store_rd_begin(&o->n->eng.store, &t) != 0) {
        errors_doc(xml, 503, "cannot read the database", res);
        return;
    }
    Appeal__AppealRow *row;
    arena_reset(&o->row_arena);
    int rc = state_appeal(&o->n->eng.store, t, number, &o->row_arena, &row);
    if (rc != 0) {
        store_rd_end(&o->n->eng.store, t);
        char why[160];
        snprintf(why, sizeof why,
                 "no appeal %.64s on this node (not registered, or not "
                 "replicated here yet)",
                 number);
        errors_doc(xml, rc == APL_ENOTFOUND ? 404 : 503,
                   rc == APL_ENOTFOUND ? why : "cannot read the appeal", res);
        return;
    }
    struct status_ctx sc;
    status_begin(&sc, o, t, locale_of(o, r, &q));
    struct out d;
    if (out_begin(&d, xml) != 0) {
        store_rd_end(&o->n->eng.store, t);
        errors_doc(xml, 503, "out of memory", res);
        return;
    }
    out_list(&d, NULL, "service_requests");
    out_obj(&d, NULL, "request");
    request_fields(&d, &sc, row);
    out_obj_end(&d, "request");
    out_list_end(&d, "service_requests");
    store_rd_end(&o->n->eng.store, t);
    out_finish(&d, 200, res);
}

/* POST requests/NUMBER/rating.{json,xml} and requests/NUMBER/complaint.{json,xml}:
 * the applicant's (applicant.h). */
static void on_request_post(void *arg, const struct httpd_req *r, struct httpd_res *res) {
    struct open311 *o = arg;
    char stem[256];
    int fmt = path_format(r->path, stem, sizeof stem);
    const char *number = stem + strlen("/open311/v2/requests/");
    size_t nl = fmt >= 0 ? strlen(number) : 0;
    if (nl > 7 && nl - 7 <= NUMBER_BYTES_MAX && strcmp(number + nl - 7, "/rating") == 0) {
        char num[NUMBER_BYTES_MAX + 1];
        snprintf(num, sizeof num, "%.*s", (int)(nl - 7), number);
        applicant_rate(o->applicant, r, num, fmt == FMT_XML, res);
        return;
    }
    if (nl > 10 && nl - 10 <= NUMBER_BYTES_MAX && strcmp(number + nl - 10, "/complaint") == 0) {
        char num[NUMBER_BYTES_MAX + 1];
        snprintf(num, sizeof num, "%.*s", (int)(nl - 10), number);
        applicant_complain(o->applicant, r, num, fmt == FMT_XML, res);
        return;
    }
    errors_doc(fmt == FMT_XML, 404,
               "not found: POST requests/NUMBER/rating.json or requests/NUMBER/complaint.json",
               res);
}

/* The filters of GET requests. */
struct list_query {
    const char *ids; /* comma-separated numbers, or NULL */
    const char *service_code;
    int status; /* 0 any, 1 open, 2 closed */
    int64_t start_ms, end_ms;
    uint32_t emitted, scanned;
};

static int list_query_parse(const struct fields *q, int64_t now_ms, struct list_query *lq,
                            struct errbuf *e) {
    memset(lq, 0, sizeof *lq);
    lq->ids = field(q, "service_request_id");
    lq->service_code = field(q, "service_code");
    const char *st = field(q, "status");
    if (st != NULL) {
        bool open = strstr(st, "open") != NULL, closed = strstr(st, "closed") != NULL;
        if (!open && !closed) {
            return err_set(e, APL_EINVAL, "status is open or closed");
        }
        lq->status = open && closed ? 0 : open ? 1 : 2;
    }
    const char *sd = field(q, "start_date"), *ed = field(q, "end_date");
    if ((sd != NULL && parse_time(sd, &lq->start_ms) != 0) ||
        (ed != NULL && parse_time(ed, &lq->end_ms) != 0)) {
        return err_set(e, APL_EINVAL,
                       "start_date and end_date are ISO 8601 (2026-03-01T00:00:00+05:00)");
    }
    int64_t span = (int64_t)OPEN311_RANGE_DAYS_DEFAULT * 86400 * 1000;
    if (ed == NULL) {
        lq->end_ms = sd != NULL ? lq->start_ms + span : now_ms;
    }
    if (sd == NULL) {
        lq->start_ms = lq->end_ms - span;
    }
    if (lq->start_ms > lq->end_ms) {
        return err_set(e, APL_EINVAL, "start_date is after end_date");
    }
    return 0;
}

static bool list_match(const struct list_query *lq, const Appeal__AppealRow *r) {
    bool closed =
        r->status == APPEAL__STATUS__STATUS_CLOSED || r->status == APPEAL__STATUS__STATUS_WITHDRAWN;
    if ((lq->status == 1 && closed) || (lq->status == 2 && !closed)) {
        return false;
    }
    if (lq->service_code != NULL && strcmp(lq->service_code, r->category) != 0) {
        return false;
    }
    return lq->ids != NULL || (r->registered_ms >= lq->start_ms && r->registered_ms <= lq->end_ms);
}

static void list_emit(struct out *d, struct status_ctx *sc, struct list_query *lq,
                      const Appeal__AppealRow *r) {
    if (lq->emitted < OPEN311_RESULTS_MAX && list_match(lq, r)) {
        out_obj(d, NULL, "request");
        request_fields(d, sc, r);
        out_obj_end(d, "request");
        lq->emitted++;
    }
}

/* service_request_id=A,B,C: those appeals (other filters still apply). */
static void list_ids(struct out *d, struct status_ctx *sc, struct list_query *lq) {
    const char *p = lq->ids;
    for (uint32_t k = 0; *p != '\0' && k < OPEN311_IDS_MAX; k++) {
        size_t len = strcspn(p, ",");
        char number[NUMBER_BYTES_MAX + 1];
        Appeal__AppealRow *row;
        if (len > 0 && len <= NUMBER_BYTES_MAX) {
            snprintf(number, sizeof number, "%.*s", (int)len, p);
            arena_reset(&sc->o->row_arena);
            if (number_valid(number) &&
                state_appeal(&sc->o->n->eng.store, sc->t, number, &sc->o->row_arena, &row) == 0) {
                list_emit(d, sc, lq, row);
            }
        }
        p += len + (p[len] == ',');
    }
}

/* One jurisdiction's appeals of one year, newest first (numbers grow with
 * registration), until older than start_date. */
static void list_scan_year(struct out *d, struct status_ctx *sc, struct list_query *lq,
                           const char *juris, int year, MDB_cursor *c) {
    char prefix[32], past[32]; /* a jurisdiction code is at most 16 bytes (cluster file) */
    int pl = snprintf(prefix, sizeof prefix, "%.16s-%04d-", juris, year);
    snprintf(past, sizeof past, "%.16s-%04d.", juris, year); /* '.' follows '-' */
    MDB_val k = {(size_t)pl, past}, v;
    int m = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    m = m == 0 ? mdb_cursor_get(c, &k, &v, MDB_PREV) : mdb_cursor_get(c, &k, &v, MDB_LAST);
    for (; m == 0 && lq->emitted < OPEN311_RESULTS_MAX && lq->scanned < OPEN311_SCAN_ROWS_MAX;
         m = mdb_cursor_get(c, &k, &v, MDB_PREV)) {
        if (k.mv_size < (size_t)pl || memcmp(k.mv_data, prefix, (size_t)pl) != 0) {
            break;
        }
        lq->scanned++;
        arena_reset(&sc->o->row_arena);
        Appeal__AppealRow *row = (Appeal__AppealRow *)pb_unpack(
            &appeal__appeal_row__descriptor, v.mv_data, v.mv_size, &sc->o->row_arena, 16, NULL);
        if (row == NULL) {
            continue;
        }
        if (row->registered_ms < lq->start_ms) {
            break;
        }
        list_emit(d, sc, lq, row);
    }
}

/* Every jurisdiction this node holds appeals of: its own and its origins'. */
static void list_scan(struct out *d, struct status_ctx *sc, struct list_query *lq) {
    struct node *n = sc->o->n;
    char juris[CLUSTER_NODES_MAX + 1][16];
    size_t nj = 0;
    snprintf(juris[nj++], 16, "%s", n->eng.juris);
    MDB_cursor *c;
    if (mdb_cursor_open(sc->t, n->eng.store.dbi[DB_ORIGINS], &c) == 0) {
        MDB_val k, v;
        for (int m = mdb_cursor_get(c, &k, &v, MDB_FIRST); m == 0 && nj <= CLUSTER_NODES_MAX;
             m = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
            struct origin_state os;
            if (k.mv_size == KEY_PK_BYTES &&
                chain_origin_get(&n->eng.store, sc->t, k.mv_data, &os) == 0 &&
                os.juris[0] != '\0' && strcmp(os.juris, n->eng.juris) != 0) {
                snprintf(juris[nj++], 16, "%s", os.juris);
            }
        }
        mdb_cursor_close(c);
    }
    int32_t off = n->rules.utc_offset_min;
    int y_end, y_start;
    unsigned mo, dd;
    civil_from_day(day_from_ms(lq->end_ms, off), &y_end, &mo, &dd);
    civil_from_day(day_from_ms(lq->start_ms, off), &y_start, &mo, &dd);
    if (mdb_cursor_open(sc->t, n->eng.store.dbi[DB_APPEALS], &c) != 0) {
        return;
    }
    for (size_t j = 0; j < nj; j++) {
        for (int y = y_end; y >= y_start && y > y_end - 5; y--) {
            list_scan_year(d, sc, lq, juris[j], y, c);
        }
    }
    mdb_cursor_close(c);
}

/* GET requests.{json,xml} */
static void on_requests_get(void *arg, const struct httpd_req *r, struct httpd_res *res) {
    struct open311 *o = arg;
    bool xml = path_format(r->path, NULL, 0) == FMT_XML;
    struct fields q = {.n = 0};
    arena_reset(&o->scratch);
    struct errbuf e;
    err_clear(&e);
    struct list_query lq;
    if (form_parse(r->query, strlen(r->query), &o->scratch, &q, &e) != 0 ||
        list_query_parse(&q, node_now_ms(o->n), &lq, &e) != 0) {
        errors_doc(xml, 400, e.msg, res);
        return;
    }
    MDB_txn *t;
    if (store_rd_begin(&o->n->eng.store, &t) != 0) {
        errors_doc(xml, 503, "cannot read the database", res);
        return;
    }
    struct status_ctx sc;
    status_begin(&sc, o, t, locale_of(o, r, &q));
    struct out d;
    if (out_begin(&d, xml) != 0) {
        store_rd_end(&o->n->eng.store, t);
        errors_doc(xml, 503, "out of memory", res);
        return;
    }
    out_list(&d, NULL, "service_requests");
    if (lq.ids != NULL) {
        list_ids(&d, &sc, &lq);
    } else {
        list_scan(&d, &sc, &lq);
    }
    out_list_end(&d, "service_requests");
    store_rd_end(&o->n->eng.store, t);
    out_finish(&d, 200, res);
}

/* ---- filing ---- */

/* One POST requests in flight: owned by the httpd handler until queued,
 * then by the writer, then by its completion (which frees it). */
struct filing {
    struct open311 *o;
    struct httpd_ticket ticket;
    bool xml;
    struct arena a; /* the form's fields and every string below */
    struct principal who;
    Appeal__Request req;
    Appeal__FileRequest file;
    struct appeal_result res;
    struct wreq wreq;
    enum i18n_lang locale; /* of the answer */
    enum i18n_lang lang;   /* of the appeal: AppealFiled.lang */
    bool rate_limited;     /* refused: 429 */
};

static void filing_free(struct filing *f) {
    free(f->res.record);
    arena_fini(&f->a);
    free(f);
}

static char *join(struct arena *a, const char *x, const char *sep, const char *y) {
    size_t n = strlen(x) + strlen(sep) + strlen(y) + 1;
    char *s = arena_new(a, n);
    if (s != NULL) {
        snprintf(s, n, "%s%s%s", x, x[0] && y[0] ? sep : "", y);
    }
    return s;
}

/* The channel of `api_key`, its grant in force: APL_EAUTH (403) if not. */
static int channel_check(struct open311 *o, const char *api_key, struct principal *p,
                         uint32_t *rate, struct errbuf *e) {
    size_t len = strlen(api_key);
    if (len == 0 || len > CHANNEL_API_KEY_BYTES_MAX) {
        return err_set(e, APL_EAUTH,
                       "api_key missing or malformed: ask the node's "
                       "administrator for a channel key");
    }
    memset(p, 0, sizeof *p);
    channel_key_hash(api_key, len, p->pk);
    key_id(p->pk, p->id);
    util_hex(p->pk, KEY_SHORT_HEX / 2, p->kid);
    MDB_txn *t;
    if (store_rd_begin(&o->n->eng.store, &t) != 0) {
        return err_set(e, APL_EUNAVAIL, "cannot read the grants");
    }
    uint8_t buf[GRANT_ROW_ARENA_BYTES];
    struct arena ga;
    arena_on(&ga, buf, sizeof buf);
    Appeal__GrantRow *g;
    int rc = grant_get(&o->n->eng.store, t, o->n->eng.self_idx, p->pk, &ga, &g);
    if (rc == 0 && (g->revoked_seq != 0 || (g->roles & ROLE_CHANNEL) == 0)) {
        rc = APL_EAUTH;
    }
    if (rc == 0) {
        *rate = g->rate_per_minute ? g->rate_per_minute : CHANNEL_RATE_PER_MIN_DEFAULT;
    }
    store_rd_end(&o->n->eng.store, t);
    if (rc == APL_ENOTFOUND || rc == APL_EAUTH) {
        return err_set(e, APL_EAUTH, "api_key not valid (unknown or revoked channel)");
    }
    return rc != 0 ? err_set(e, rc, "cannot read the grant of this channel") : 0;
}

/* Whether the channel may file once more this minute (httpd thread). */
static bool rate_take(struct open311 *o, const uint8_t key[KEY_PK_BYTES], uint32_t rate,
                      int64_t now_ms) {
    int64_t minute = now_ms / 60000;
    struct rate_window *w = NULL, *oldest = NULL;
    for (uint32_t i = 0; i < o->n_windows && w == NULL; i++) {
        if (memcmp(o->windows[i].key, key, KEY_PK_BYTES) == 0) {
            w = &o->windows[i];
        } else if (oldest == NULL || o->windows[i].last_ms < oldest->last_ms) {
            oldest = &o->windows[i];
        }
    }
    if (w == NULL) {
        w = o->n_windows < OPEN311_CHANNELS_TRACKED_MAX ? &o->windows[o->n_windows++] : oldest;
        memset(w, 0, sizeof *w);
        memcpy(w->key, key, KEY_PK_BYTES);
    }
    if (w->minute != minute) {
        w->minute = minute;
        w->used = 0;
    }
    w->last_ms = now_ms;
    if (w->used >= rate) {
        return false;
    }
    w->used++;
    return true;
}

/* The form into the same FileRequest `appealctl file` sends. */
static int filing_request(struct filing *f, const struct fields *q, struct errbuf *e) {
    Appeal__FileRequest *fr = &f->file;
    appeal__file_request__init(fr);
    const char *type = field_or(q, "attribute[type]", "");
    fr->type = appeal_type_parse(type);
    if (fr->type == 0) {
        return err_set(e, APL_EINVAL,
                       "attribute[type] is one of statement, proposal, request, "
                       "complaint, report, feedback");
    }
    fr->category = (char *)field_or(q, "service_code", "");
    const struct category *c = ruleset_category(&f->o->n->rules, fr->category);
    if (c == NULL) {
        return err_set(e, APL_EINVAL, "service_code: no such service (see services.json)");
    }
    fr->subject = (char *)field_or(q, "attribute[subject]", category_name(c, f->locale));
    const char *media = field_or(q, "media_url", "");
    fr->body = join(&f->a, field_or(q, "description", ""), "\n\nmedia: ", media);
    fr->name = join(&f->a, field_or(q, "first_name", ""), " ", field_or(q, "last_name", ""));
    fr->iin = (char *)field_or(q, "attribute[iin]", "");
    fr->contacts = join(&f->a, field_or(q, "email", ""), "; ", field_or(q, "phone", ""));
    const char *lat = field_or(q, "lat", ""), *lon = field_or(q, "long", "");
    char *coords = lat[0] || lon[0] ? join(&f->a, lat, ",", lon) : (char *)"";
    char *where = coords != NULL ? join(&f->a, "(", "", coords) : NULL;
    where = where != NULL && coords[0] ? join(&f->a, where, "", ")") : (char *)"";
    fr->address = join(&f->a, field_or(q, "address_string", ""), " ", where != NULL ? where : "");
    fr->anonymous = strcmp(field_or(q, "attribute[anonymous]", "false"), "true") == 0;
    fr->lang = (char *)i18n_lang_code(f->lang);
    fr->repeat_of = (char *)field_or(q, "attribute[repeat_of]", "");
    fr->late_reason = (char *)field_or(q, "attribute[late_reason]", "");
    const char *cs = field_or(q, "attribute[co_signers]", "0"),
               *ld = field(q, "attribute[learned_date]");
    long co;
    if (util_parse_long(cs, 0, 1000000, &co) != 0) {
        return err_set(e, APL_EINVAL, "attribute[co_signers] is a number");
    }
    fr->co_signers = (uint32_t)co;
    if (ld != NULL && ld[0] && day_parse(ld, &fr->learned_day) != 0) {
        return err_set(e, APL_EINVAL, "attribute[learned_date] is YYYY-MM-DD");
    }
    if (fr->body == NULL || fr->name == NULL || fr->contacts == NULL || fr->address == NULL) {
        return APL_ENOMEM;
    }
    appeal__request__init(&f->req);
    f->req.version = 1;
    f->req.node = f->o->n->eng.juris;
    f->req.op_case = APPEAL__REQUEST__OP_FILE;
    f->req.file = fr;
    return 0;
}

static void filing_answer(struct filing *f, int status, const char *why) {
    struct httpd_res res;
    errors_doc(f->xml, status, why, &res);
    httpd_answer(&f->ticket, &res);
}

/* On the writer: exactly the write of `appealctl file`, the channel acting. */
static int filing_run(void *node, MDB_txn *t, struct wreq *r) {
    struct filing *f = r->arg;
    return api_write(node, t, &f->who, &f->req, &f->res, &r->err);
}

static void filed_doc(struct filing *f, struct out *d) {
    struct node *n = f->o->n;
    const struct appeal_result *res = &f->res;
    int32_t off = n->rules.utc_offset_min;
    const struct open311 *o = f->o;
    enum i18n_lang l = f->locale;
    char req[48], exp[48], day[11], notice[1024];
    iso_time(res->registered_ms, off, req);
    iso_day_end(res->deadline_day, off, exp);
    day_format(res->deadline_day, day);
    int nn =
        snprintf(notice, sizeof notice,
                 tr(o, l,
                    N_("Registered by %s as %s (%s). The answer is due by %s, the end "
                       "of the legal term; follow it at requests/%s.json on any node "
                       "of the federation.")),
                 n->eng.juris, res->number, names_type(&o->tr, l, res->type), day, res->number);
    if (res->urgent && nn > 0 && (size_t)nn < sizeof notice) {
        snprintf(notice + nn, sizeof notice - (size_t)nn, " %s",
                 tr(o, l, N_("Marked urgent: it goes to the competent body at once.")));
    }
    char *hex = malloc(2 * res->record_len + 1);
    if (hex != NULL) {
        util_hex(res->record, res->record_len, hex);
    }
    out_list(d, NULL, "service_requests");
    out_obj(d, NULL, "request");
    out_str(d, "service_request_id", res->number);
    out_str(d, "service_notice", notice);
    out_str(d, "account_id", NULL);
    out_str(d, "status", "open");
    out_str(d, "service_code", f->file.category);
    out_str(d, "requested_datetime", req);
    out_str(d, "expected_datetime", exp);
    out_str(d, "agency_responsible", n->eng.juris);
    out_str(d, "appeal_type", appeal_type_name(res->type));
    out_str(d, "lang", i18n_lang_code(f->lang)); /* the language of the appeal */
    out_str(d, "receipt", hex != NULL ? hex : "");
    /* Told once: with the number it opens requests/{id}/mine (docs/open311.md). */
    out_str(d, "access_code", res->access_code);
    out_obj_end(d, "request");
    out_list_end(d, "service_requests");
    free(hex);
}

/* On the completion thread, after the durable commit. */
static void filing_done(struct wreq *r) {
    struct filing *f = r->arg;
    if (r->rc != 0) {
        olog(OLOG_INFO, "request_refused", "op", "file", "via", "open311", "channel", f->who.kid,
             "reason", err_msg(&r->err, r->rc), NULL);
        filing_answer(f, http_status_of(r->rc), err_msg(&r->err, r->rc));
        filing_free(f);
        return;
    }
    atomic_fetch_add_explicit(&f->o->n->eng.metrics.appeals_filed, 1, memory_order_relaxed);
    olog(OLOG_INFO, "appeal_changed", "number", f->res.number, "change", "filed", "type",
         appeal_type_name(f->res.type), "by", f->who.kid, "via", "open311", NULL);
    struct out d;
    struct httpd_res res;
    if (out_begin(&d, f->xml) != 0) {
        filing_answer(f, 500, "filed, but out of memory for the answer");
    } else {
        filed_doc(f, &d);
        out_finish(&d, 200, &res);
        httpd_answer(&f->ticket, &res);
    }
    filing_free(f);
}

static int filing_prepare(struct filing *f, const struct httpd_req *r, struct errbuf *e) {
    const char *ct = httpd_header(r, "Content-Type");
    if (ct == NULL || strncasecmp(ct, "application/x-www-form-urlencoded", 33) != 0) {
        return err_set(e, APL_EINVAL, "send the request as application/x-www-form-urlencoded");
    }
    if (arena_init(&f->a, 3 * r->body_len + strlen(r->query) * 2 + 16 * 1024) != 0) {
        return APL_ENOMEM;
    }
    struct fields *q = arena_new(&f->a, sizeof *q);
    if (q == NULL) {
        return APL_ENOMEM;
    }
    q->n = 0;
    int rc = form_parse(r->query, strlen(r->query), &f->a, q, e);
    if (rc == 0) {
        rc = form_parse((const char *)r->body, r->body_len, &f->a, q, e);
    }
    if (rc != 0) {
        return rc;
    }
    /* The language of the appeal (docs/open311.md "Languages"): `lang`, else
     * as the answer's; the answer by `locale`, else Accept-Language, else it. */
    const char *lf = field(q, "lang");
    if (lf != NULL && lf[0] != '\0' && i18n_lang_parse(lf, &f->lang) != 0) {
        return err_set(e, APL_EINVAL, "lang (the language of the appeal) is kk, ru or en");
    }
    if (lf == NULL || lf[0] == '\0') {
        f->lang = locale_of(f->o, r, q);
    }
    f->locale = locale_or(r, q, f->lang);
    uint32_t rate = 0;
    rc = channel_check(f->o, field_or(q, "api_key", ""), &f->who, &rate, e);
    if (rc != 0) {
        return rc;
    }
    if (!rate_take(f->o, f->who.pk, rate, node_now_ms(f->o->n))) {
        f->rate_limited = true;
        return err_set(e, APL_EREFUSED,
                       "this channel's rate is %u filings a minute: try again in "
                       "a minute",
                       rate);
    }
    return filing_request(f, q, e);
}

/* POST requests.{json,xml} */
static void on_requests_post(void *arg, const struct httpd_req *r, struct httpd_res *res) {
    struct open311 *o = arg;
    bool xml = path_format(r->path, NULL, 0) == FMT_XML;
    struct errbuf e;
    err_clear(&e);
    struct filing *f = calloc(1, sizeof *f);
    if (f == NULL) {
        errors_doc(xml, 503, "out of memory", res);
        return;
    }
    f->o = o;
    f->xml = xml;
    f->ticket = r->ticket;
    int rc = filing_prepare(f, r, &e);
    if (rc == 0) {
        rc = node_writable(o->n, &e);
    }
    if (rc == 0) {
        f->wreq = (struct wreq){.run = filing_run, .done = filing_done, .arg = f};
        rc = writer_submit(&o->n->eng.writer, &f->wreq);
        if (rc == 0) {
            res->defer = true; /* filing_done answers after the commit */
            return;
        }
        err_set(&e, rc, "the node is busy or stopping: try again");
    }
    if (rc != APL_EAUTH) {
        olog(OLOG_INFO, "request_refused", "op", "file", "via", "open311", "channel",
             f->who.kid[0] ? f->who.kid : "-", "reason", err_msg(&e, rc), NULL);
    }
    errors_doc(xml, f->rate_limited ? 429 : http_status_of(rc), err_msg(&e, rc), res);
    filing_free(f);
}

/* ---- receipts ---- */

/* POST receipts/verify.{json,xml}: receipt=HEX (form) or the hex as the body. */
static void on_verify(void *arg, const struct httpd_req *r, struct httpd_res *res) {
    struct open311 *o = arg;
    bool xml = path_format(r->path, NULL, 0) == FMT_XML;
    struct errbuf e;
    err_clear(&e);
    const char *ct = httpd_header(r, "Content-Type");
    const char *hex = (const char *)r->body;
    size_t hex_len = r->body_len;
    struct fields q = {.n = 0};
    arena_reset(&o->scratch);
    struct arena fa;
    int rc = arena_init(&fa, 2 * r->body_len + 4096);
    if (rc == 0 && ct != NULL && strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0) {
        rc = form_parse((const char *)r->body, r->body_len, &fa, &q, &e);
        hex = field_or(&q, "receipt", "");
        hex_len = strlen(hex);
    }
    uint8_t *env = NULL;
    size_t len = 0;
    if (rc == 0) {
        rc = receipt_unhex(hex, hex_len, &env, &len, &e);
    }
    struct receipt_info ri;
    if (rc == 0) {
        rc = receipt_check(env, len, o->n->cluster, o->n->eng.keys.sign_pk, o->n->eng.juris,
                           o->n->eng.keys.sign_pk, &ri, &e);
    }
    free(env);
    if (fa.base != NULL) {
        arena_fini(&fa);
    }
    if (rc != 0) {
        errors_doc(xml, rc == APL_ETOOBIG ? 413 : 400, err_msg(&e, rc), res);
        return;
    }
    int32_t off = o->n->rules.utc_offset_min;
    char req[48], exp[48], at[48], origin[2 * KEY_PK_BYTES + 1], actor[KEY_SHORT_HEX + 1];
    iso_time(ri.registered_ms, off, req);
    iso_day_end(ri.deadline_day, off, exp);
    iso_time(ri.time_ms, off, at);
    util_hex(ri.origin, KEY_PK_BYTES, origin);
    util_hex(ri.actor, KEY_SHORT_HEX / 2, actor);
    struct out d;
    if (out_begin(&d, xml) != 0) {
        errors_doc(xml, 503, "out of memory", res);
        return;
    }
    out_list(&d, NULL, "receipts");
    out_obj(&d, NULL, "receipt");
    out_bool(&d, "valid", true);
    out_str(&d, "service_request_id", ri.number);
    out_str(&d, "appeal_type", appeal_type_name(ri.type));
    out_str(&d, "service_code", ri.category);
    out_str(&d, "agency_responsible", ri.jurisdiction);
    out_str(&d, "requested_datetime", req);
    out_str(&d, "expected_datetime", exp);
    out_str(&d, "signed_datetime", at);
    out_int(&d, "seq", (int64_t)ri.seq);
    out_str(&d, "origin", origin);
    out_str(&d, "actor", actor);
    out_obj_end(&d, "receipt");
    out_list_end(&d, "receipts");
    out_finish(&d, 200, res);
}

/* ---- the listener ---- */

int open311_start(struct open311 **out, struct node *n, const char *addr, struct errbuf *e) {
    struct open311 *o = calloc(1, sizeof *o);
    if (o == NULL) {
        return err_set(e, APL_ENOMEM, "out of memory");
    }
    o->n = n;
    if (i18n_lang_parse(n->rules.default_lang, &o->dflt_lang) != 0) {
        o->dflt_lang = I18N_KK;
    }
    int lrc = i18n_open(&o->tr, NULL, e);
    if (lrc != 0) {
        free(o);
        return lrc;
    }
    if (arena_init(&o->scratch, 256 * 1024) != 0 || arena_init(&o->row_arena, 64 * 1024) != 0 ||
        arena_init(&o->rec_arena, RECORD_ARENA_BYTES) != 0 ||
        applicant_open(&o->applicant, n, &o->tr) != 0) {
        open311_stop(o);
        return err_set(e, APL_ENOMEM, "out of memory");
    }
    static const char *const fmts[] = {".json", ".xml"};
    static const struct {
        const char *method, *path;
        httpd_fn fn;
    } table[] = {
        {"GET", "/open311/discovery", on_discovery},
        {"GET", "/open311/v2/services", on_services},
        {"GET", "/open311/v2/requests", on_requests_get},
        {"POST", "/open311/v2/requests", on_requests_post},
        {"POST", "/open311/v2/receipts/verify", on_verify},
    };
    struct httpd_route routes[16];
    size_t nr = 0;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        for (size_t k = 0; k < 2; k++) {
            char *p = o->paths[2 * i + k];
            snprintf(p, sizeof o->paths[0], "%s%s", table[i].path, fmts[k]);
            routes[nr++] = (struct httpd_route){table[i].method, p, table[i].fn, o};
        }
    }
    routes[nr++] = (struct httpd_route){"GET", "/open311/v2/services/*", on_service_def, o};
    routes[nr++] = (struct httpd_route){"GET", "/open311/v2/requests/*", on_request, o};
    routes[nr++] = (struct httpd_route){"POST", "/open311/v2/requests/*", on_request_post, o};
    struct httpd_limits lim = {.connections_max = n->connections_max,
                               .idle_ms = n->idle_ms,
                               .body_bytes_max = OPEN311_BODY_BYTES_MAX,
                               .on_error = on_error,
                               .on_error_arg = o,
                               .listener = "open311"};
    int rc = httpd_start(&o->srv, addr, routes, nr, &lim, NULL, e);
    if (rc != 0) {
        open311_stop(o);
        return rc;
    }
    char url[300];
    snprintf(url, sizeof url, "http://%s/open311/v2/", addr);
    olog(OLOG_INFO, "open311_listening", "url", url, NULL);
    *out = o;
    return 0;
}

void open311_stop(struct open311 *o) {
    if (o == NULL) {
        return;
    }
    httpd_stop(o->srv);
    i18n_close(&o->tr);
    arena_fini(&o->scratch);
    arena_fini(&o->row_arena);
    arena_fini(&o->rec_arena);
    free(o);
}
