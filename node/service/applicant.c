/* applicant.c: the applicant's own view (applicant.h). */
#include "applicant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "access.h"
#include "appeal.h"
#include "cal.h"
#include "chain.h"
#include "lifecycle.h"
#include "ruleset.h"
#include "names.h"
#include "node.h"
#include "olog.h"
#include "open311.h"
#include "open311_out.h"
#include "pbdecode.h"
#include "record.h"
#include "state.h"
#include "util.h"
#include "view.h"
#include "writer.h"

struct tries {
    char key[HTTPD_PEER_BYTES + NUMBER_BYTES_MAX]; /* "n:NUMBER" or "a:ADDRESS" */
    int64_t since_ms;
    uint32_t wrong;
};

struct applicant {
    struct node *n;
    const struct i18n *tr;
    struct arena arena;
    struct tries *t; /* APPLICANT_TRACKED_MAX */
    uint32_t n_t;
};

int applicant_open(struct applicant **out, struct node *n, const struct i18n *tr) {
    struct applicant *a = calloc(1, sizeof *a);
    if (a == NULL || (a->t = calloc(APPLICANT_TRACKED_MAX, sizeof *a->t)) == NULL ||
        arena_init(&a->arena, APPLICANT_ARENA_BYTES) != 0) {
        applicant_close(a);
        return APL_ENOMEM;
    }
    a->n = n;
    a->tr = tr;
    *out = a;
    return 0;
}

void applicant_close(struct applicant *a) {
    if (a == NULL) {
        return;
    }
    if (a->arena.base != NULL) {
        arena_fini(&a->arena);
    }
    free(a->t);
    free(a);
}

/* The window of `key`, made (in the oldest slot if full) when absent. */
static struct tries *window(struct applicant *a, const char *key, int64_t now) {
    struct tries *oldest = NULL;
    for (uint32_t i = 0; i < a->n_t; i++) {
        struct tries *w = &a->t[i];
        if (strcmp(w->key, key) == 0) {
            if (now - w->since_ms >= APPLICANT_WINDOW_MS) {
                w->since_ms = now;
                w->wrong = 0;
            }
            return w;
        }
        oldest = oldest == NULL || w->since_ms < oldest->since_ms ? w : oldest;
    }
    struct tries *w = a->n_t < APPLICANT_TRACKED_MAX ? &a->t[a->n_t++] : oldest;
    snprintf(w->key, sizeof w->key, "%s", key);
    w->since_ms = now;
    w->wrong = 0;
    return w;
}

static void error_doc(bool xml, int status, const char *why, struct httpd_res *res) {
    struct out o;
    if (out_begin(&o, xml) != 0) {
        *res = (struct httpd_res){.status = 503, .content_type = "text/plain"};
        return;
    }
    out_list(&o, NULL, "errors");
    out_obj(&o, NULL, "error");
    out_int(&o, "code", status);
    out_str(&o, "description", why);
    out_obj_end(&o, "error");
    out_list_end(&o, "errors");
    out_finish(&o, status, res);
}

/* `NAME=` (`eq`: "NAME=") of the query, copied into `out` (shorter than
 * `cap`; a longer value is absent). */
static bool param_of(const char *query, const char *eq, char *out, size_t cap) {
    const char *p = query;
    size_t el = strlen(eq);
    while (p != NULL && *p != '\0') {
        size_t len = strcspn(p, "&");
        if (len > el && strncmp(p, eq, el) == 0 && len - el < cap) {
            memcpy(out, p + el, len - el);
            out[len - el] = '\0';
            for (char *q = out; *q != '\0'; q++) {
                *q = *q == '+' ? ' ' : *q; /* a form's space; '%' stays and fails the check */
            }
            return true;
        }
        p += len;
        p += *p == '&';
    }
    return false;
}

/* `code=` of the query, copied into `out` (at most ACCESS_INPUT_CHARS_MAX). */
static bool code_of(const char *query, char out[ACCESS_INPUT_CHARS_MAX + 1]) {
    return param_of(query, "code=", out, ACCESS_INPUT_CHARS_MAX + 1);
}

/* The language of the view: `locale=`, else Accept-Language, else the
 * appeal's, else the node's default_lang. */
static enum i18n_lang view_lang(const struct applicant *a, const struct httpd_req *r,
                                const Appeal__AppealRow *row) {
    enum i18n_lang l;
    char loc[32];
    if (param_of(r->query, "locale=", loc, sizeof loc) && i18n_lang_parse(loc, &l) == 0) {
        return l;
    }
    if (i18n_lang_parse(row->lang, &l) != 0 && i18n_lang_parse(a->n->rules.default_lang, &l) != 0) {
        l = I18N_KK;
    }
    return i18n_negotiate(httpd_header(r, "Accept-Language"), l);
}

/* AppealFiled.access_hash of `number`, copied into `hash` (len 0: none). */
static int access_hash_of(struct node *n, MDB_txn *t, const char *number, struct arena *ar,
                          uint8_t hash[ACCESS_HASH_BYTES], size_t *len) {
    *len = 0;
    MDB_cursor *c;
    int rc = store_rc(mdb_cursor_open(t, n->eng.store.dbi[DB_EVENTS], &c));
    if (rc != 0) {
        return rc;
    }
    MDB_val k = {strlen(number), (void *)number}, val, env;
    rc = store_rc(mdb_cursor_get(c, &k, &val, MDB_SET_KEY)); /* the first: version 0 */
    mdb_cursor_close(c);
    if (rc == 0 && val.mv_size != 16) {
        rc = APL_ECORRUPT;
    }
    struct record r;
    if (rc == 0) {
        const uint8_t *ref = val.mv_data;
        rc = chain_get(&n->eng.store, t, be32_get(ref + 4), be64_get(ref + 8), &env);
    }
    if (rc == 0 && (rec_decode(env.mv_data, env.mv_size, ar, &r, NULL) != 0 ||
                    r.body->event_case != APPEAL__BODY__EVENT_FILED)) {
        rc = APL_ECORRUPT;
    }
    if (rc == 0 && r.body->filed->access_hash.len == ACCESS_HASH_BYTES) {
        memcpy(hash, r.body->filed->access_hash.data, ACCESS_HASH_BYTES);
        *len = ACCESS_HASH_BYTES;
    }
    return rc;
}

static void day_str(int32_t day, char out[11]) {
    out[0] = '\0';
    if (day != 0) {
        day_format(day, out);
    }
}

/* The whole appeal, as its applicant may see it; names and notes in `l`. */
static void mine_doc(const struct applicant *a, const Appeal__AppealView *v, enum i18n_lang l,
                     bool xml, struct httpd_res *res) {
    const Appeal__AppealRow *row = v->row;
    const Appeal__Personal *p = v->personal;
    const struct category *c = ruleset_category(&a->n->rules, row->category);
    char reg[11], dl[11], ans[11], notes[512];
    open311_status_notes(a->tr, a->n, l, node_today(a->n), row, notes, sizeof notes);
    day_str(row->registered_day, reg);
    day_str(row->deadline_day, dl);
    day_str(row->answered_day, ans);
    struct out d;
    if (out_begin(&d, xml) != 0) {
        *res = (struct httpd_res){.status = 503, .content_type = "text/plain"};
        return;
    }
    out_list(&d, NULL, "service_requests");
    out_obj(&d, NULL, "request");
    out_str(&d, "service_request_id", row->number);
    out_str(&d, "status", status_name(row->status));
    out_str(&d, "status_name", names_status(a->tr, l, row->status));
    out_str(&d, "status_notes", notes);
    out_str(&d, "appeal_type", appeal_type_name(row->type));
    out_str(&d, "appeal_type_name", names_type(a->tr, l, row->type));
    out_str(&d, "service_code", row->category);
    out_str(&d, "service_name", c != NULL ? names_category(c, l) : "");
    out_str(&d, "agency_responsible", row->owner);
    out_str(&d, "registered", reg);
    out_str(&d, "deadline", dl);
    out_bool(&d, "overdue", v->overdue);
    out_str(&d, "lang", row->lang);
    out_str(&d, "locale", i18n_lang_code(l)); /* of the names and notes */
    out_str(&d, "name", p != NULL ? p->name : "");
    out_str(&d, "address", p != NULL ? p->address : "");
    out_str(&d, "contacts", p != NULL ? p->contacts : "");
    out_str(&d, "subject", p != NULL ? p->subject : "");
    out_str(&d, "description", p != NULL ? p->body : "");
    out_str(&d, "outcome", row->outcome != 0 ? outcome_name(row->outcome) : "");
    out_str(&d, "outcome_name", row->outcome != 0 ? names_outcome(a->tr, l, row->outcome) : "");
    out_str(&d, "answered", ans);
    out_str(&d, "answer_text", p != NULL ? p->answer_text : "");
    out_str(&d, "rating",
            row->rating == APPEAL__RATING__RATING_SATISFIED       ? "satisfied"
            : row->rating == APPEAL__RATING__RATING_NOT_SATISFIED ? "not_satisfied"
                                                                  : "");
    out_list(&d, "history", "history");
    for (size_t i = 0; i < v->n_history; i++) {
        const Appeal__HistoryEntry *h = v->history[i];
        out_obj(&d, NULL, "event");
        out_str(&d, "kind", h->kind);
        out_str(&d, "jurisdiction", h->jurisdiction);
        out_int(&d, "time_ms", h->time_ms);
        out_str(&d, "detail", h->detail);
        out_obj_end(&d, "event");
    }
    out_list_end(&d, "history");
    out_obj_end(&d, "request");
    out_list_end(&d, "service_requests");
    out_finish(&d, 200, res);
}

/* A wrong try: counted for the number and the address, logged. */
static void refuse(struct tries *wn, struct tries *wa, const char *number, const char *peer,
                   bool xml, struct httpd_res *res) {
    wn->wrong++;
    wa->wrong++;
    olog(OLOG_INFO, "applicant_refused", "number", number, "client", peer, NULL);
    error_doc(xml, 403, "wrong number or access code", res);
}

void applicant_mine(struct applicant *a, const struct httpd_req *r, const char *number, bool xml,
                    struct httpd_res *res) {
    struct node *n = a->n;
    int64_t now = node_now_ms(n);
    const char *peer = r->peer != NULL ? r->peer : "";
    char key[sizeof a->t[0].key], code[ACCESS_INPUT_CHARS_MAX + 1];
    snprintf(key, sizeof key, "n:%.*s", NUMBER_BYTES_MAX, number);
    struct tries *wn = window(a, key, now);
    snprintf(key, sizeof key, "a:%s", peer);
    struct tries *wa = window(a, key, now);
    if (wn->wrong >= APPLICANT_TRIES_MAX || wa->wrong >= APPLICANT_TRIES_MAX) {
        olog(OLOG_WARN, "applicant_rate_limited", "number", number, "client", peer, NULL);
        error_doc(xml, 429, "too many wrong access codes: try again in 15 minutes", res);
        return;
    }
    if (!code_of(r->query, code)) {
        error_doc(xml, 400, "give the access code from the receipt: mine.json?code=CODE", res);
        return;
    }
    uint8_t hash[ACCESS_HASH_BYTES];
    size_t hl = 0;
    MDB_txn *t;
    if (store_rd_begin(&n->eng.store, &t) != 0) {
        error_doc(xml, 503, "cannot read the database", res);
        return;
    }
    arena_reset(&a->arena);
    int rc =
        number_valid(number) ? access_hash_of(n, t, number, &a->arena, hash, &hl) : APL_ENOTFOUND;
    if ((rc != 0 && rc != APL_ENOTFOUND) || (rc == 0 && hl == 0)) {
        store_rd_end(&n->eng.store, t);
        error_doc(xml, rc == 0 ? 403 : 503,
                  rc == 0 ? "this appeal was filed before access codes" : "cannot read", res);
        return;
    }
    if (rc == APL_ENOTFOUND || !access_code_check(code, hash, hl)) {
        store_rd_end(&n->eng.store, t);
        refuse(wn, wa, number, peer, xml, res);
        return;
    }
    Appeal__AppealView *v = NULL;
    struct errbuf e;
    err_clear(&e);
    rc = view_appeal(n, t, number, true, &a->arena, &v, &e);
    if (rc == 0 && strcmp(v->row->owner, n->eng.juris) != 0) {
        char why[200];
        snprintf(why, sizeof why,
                 "%s handles this appeal now: ask its node (this node, %s, holds only a copy "
                 "without your data)",
                 v->row->owner, n->eng.juris);
        error_doc(xml, 421, why, res);
    } else if (rc == 0) {
        mine_doc(a, v, view_lang(a, r, v->row), xml, res);
    } else {
        error_doc(xml, 503, err_msg(&e, rc), res);
    }
    store_rd_end(&n->eng.store, t);
}

/* ---- rating the answer ---- */

/* One POST requests/NUMBER/rating in flight: the handler's until queued,
 * then the writer's, then its completion's (which frees it). */
struct rating_req {
    struct httpd_ticket ticket;
    bool xml;
    char number[NUMBER_BYTES_MAX + 1];
    char code[ACCESS_INPUT_CHARS_MAX + 1];
    char comment[RATING_COMMENT_BYTES_MAX + 1];
    int rating;
    struct node *n;
    struct appeal_result res;
    struct wreq wreq;
};

static int hexdigit(int c) {
    return c >= '0' && c <= '9'                     ? c - '0'
           : (c | 0x20) >= 'a' && (c | 0x20) <= 'f' ? (c | 0x20) - 'a' + 10
                                                    : -1;
}

/* The value of `key` in a form (x-www-form-urlencoded), decoded into `out`
 * (at most cap - 1 bytes): 0, APL_ENOTFOUND, or APL_EINVAL (too long, a
 * bad escape or a NUL). */
static int form_value(const char *form, size_t len, const char *key, char *out, size_t cap) {
    size_t kl = strlen(key);
    for (size_t at = 0; at < len;) {
        size_t end = at;
        while (end < len && form[end] != '&') {
            end++;
        }
        if (end - at > kl && form[at + kl] == '=' && memcmp(form + at, key, kl) == 0) {
            size_t n = 0;
            for (size_t i = at + kl + 1; i < end; i++) {
                int ch = (unsigned char)form[i];
                if (ch == '%') {
                    int h = i + 2 < end ? hexdigit(form[i + 1]) : -1;
                    int l = i + 2 < end ? hexdigit(form[i + 2]) : -1;
                    if (h < 0 || l < 0) {
                        return APL_EINVAL;
                    }
                    ch = h * 16 + l;
                    i += 2;
                } else if (ch == '+') {
                    ch = ' ';
                }
                if (ch == 0 || n + 1 >= cap) {
                    return APL_EINVAL;
                }
                out[n++] = (char)ch;
            }
            out[n] = '\0';
            return 0;
        }
        at = end + 1;
    }
    return APL_ENOTFOUND;
}

static int rating_parse(struct rating_req *q, const struct httpd_req *r, struct errbuf *e) {
    const char *ct = httpd_header(r, "Content-Type");
    if (ct == NULL || strncasecmp(ct, "application/x-www-form-urlencoded", 33) != 0) {
        return err_set(e, APL_EINVAL, "send the rating as application/x-www-form-urlencoded");
    }
    const char *body = (const char *)r->body;
    char rating[32];
    if (form_value(body, r->body_len, "code", q->code, sizeof q->code) != 0) {
        return err_set(e, APL_EINVAL, "give the access code from the receipt: code=CODE");
    }
    if (form_value(body, r->body_len, "rating", rating, sizeof rating) != 0 ||
        (strcmp(rating, "satisfied") != 0 && strcmp(rating, "not_satisfied") != 0)) {
        return err_set(e, APL_EINVAL, "rating is satisfied or not_satisfied");
    }
    q->rating = strcmp(rating, "satisfied") == 0 ? APPEAL__RATING__RATING_SATISFIED
                                                 : APPEAL__RATING__RATING_NOT_SATISFIED;
    int rc = form_value(body, r->body_len, "comment", q->comment, sizeof q->comment);
    if (rc == APL_EINVAL) {
        return err_set(e, APL_EINVAL, "the comment has at most %d bytes", RATING_COMMENT_BYTES_MAX);
    }
    return 0;
}

static int http_status(int rc) {
    switch (rc) {
    case APL_EAUTH:
        return 403;
    case APL_ENOTOWNER:
        return 421;
    case APL_EINVAL:
        return 400;
    case APL_ETRANSITION:
    case APL_EEXIST:
    case APL_EREFUSED:
        return 409;
    default:
        return 503;
    }
}

/* On the writer: every check again, then the record. */
static int rating_run(void *node, MDB_txn *t, struct wreq *w) {
    struct rating_req *q = w->arg;
    struct appeal_ctx c;
    node_appeal_ctx(node, t, &c);
    struct appeal_rating ar = {q->number, q->code, q->rating, q->comment};
    free(q->res.record);
    memset(&q->res, 0, sizeof q->res);
    return appeal_rate(&c, &ar, &q->res, &w->err);
}

/* On the completion thread, after the durable commit. */
static void rating_done(struct wreq *w) {
    struct rating_req *q = w->arg;
    struct httpd_res res;
    if (w->rc != 0) {
        olog(OLOG_INFO, "request_refused", "op", "rate", "via", "open311", "number", q->number,
             "reason", err_msg(&w->err, w->rc), NULL);
        error_doc(q->xml, http_status(w->rc), err_msg(&w->err, w->rc), &res);
    } else {
        olog(OLOG_INFO, "appeal_changed", "number", q->number, "change", "rated", "via", "open311",
             NULL);
        struct out d;
        if (out_begin(&d, q->xml) != 0) {
            res = (struct httpd_res){.status = 503, .content_type = "text/plain"};
        } else {
            out_list(&d, NULL, "service_requests");
            out_obj(&d, NULL, "request");
            out_str(&d, "service_request_id", q->number);
            out_str(&d, "rating",
                    q->rating == APPEAL__RATING__RATING_SATISFIED ? "satisfied" : "not_satisfied");
            out_int(&d, "seq", (int64_t)q->res.seq);
            out_obj_end(&d, "request");
            out_list_end(&d, "service_requests");
            out_finish(&d, 200, &res);
        }
    }
    httpd_answer(&q->ticket, &res);
    free(q->res.record);
    free(q);
}

/* The code of `number` against its filing, on the httpd thread: wrong
 * tries are counted here (the windows are this thread's). 0 when right;
 * otherwise `res` holds the answer. */
static int code_gate(struct applicant *a, const struct httpd_req *r, const char *number,
                     const char *code, bool xml, struct httpd_res *res) {
    struct node *n = a->n;
    int64_t now = node_now_ms(n);
    const char *peer = r->peer != NULL ? r->peer : "";
    char key[sizeof a->t[0].key];
    snprintf(key, sizeof key, "n:%.*s", NUMBER_BYTES_MAX, number);
    struct tries *wn = window(a, key, now);
    snprintf(key, sizeof key, "a:%s", peer);
    struct tries *wa = window(a, key, now);
    if (wn->wrong >= APPLICANT_TRIES_MAX || wa->wrong >= APPLICANT_TRIES_MAX) {
        olog(OLOG_WARN, "applicant_rate_limited", "number", number, "client", peer, NULL);
        error_doc(xml, 429, "too many wrong access codes: try again in 15 minutes", res);
        return APL_EREFUSED;
    }
    uint8_t hash[ACCESS_HASH_BYTES];
    size_t hl = 0;
    MDB_txn *t;
    if (store_rd_begin(&n->eng.store, &t) != 0) {
        error_doc(xml, 503, "cannot read the database", res);
        return APL_EUNAVAIL;
    }
    arena_reset(&a->arena);
    int rc =
        number_valid(number) ? access_hash_of(n, t, number, &a->arena, hash, &hl) : APL_ENOTFOUND;
    store_rd_end(&n->eng.store, t);
    if (rc != 0 && rc != APL_ENOTFOUND) {
        error_doc(xml, 503, "cannot read", res);
        return rc;
    }
    if (rc == APL_ENOTFOUND || hl == 0 || !access_code_check(code, hash, hl)) {
        refuse(wn, wa, number, peer, xml, res);
        return APL_EAUTH;
    }
    return 0;
}

/* Hands an applicant's act to the writer: true once submitted (its `done`
 * answers after the commit); false with a 503 in `res`. */
static bool submit_deferred(struct applicant *a, struct wreq *w, bool xml, struct httpd_res *res) {
    struct errbuf e;
    err_clear(&e);
    int rc = node_writable(a->n, &e);
    if (rc == 0) {
        rc = writer_submit(&a->n->eng.writer, w);
        if (rc == 0) {
            res->defer = true;
            return true;
        }
        err_set(&e, rc, "the node is busy or stopping: try again");
    }
    error_doc(xml, 503, err_msg(&e, rc), res);
    return false;
}

void applicant_rate(struct applicant *a, const struct httpd_req *r, const char *number, bool xml,
                    struct httpd_res *res) {
    struct rating_req *q = calloc(1, sizeof *q);
    if (q == NULL) {
        error_doc(xml, 503, "out of memory", res);
        return;
    }
    struct errbuf e;
    err_clear(&e);
    snprintf(q->number, sizeof q->number, "%.*s", NUMBER_BYTES_MAX, number);
    q->xml = xml;
    q->ticket = r->ticket;
    q->n = a->n;
    int rc = rating_parse(q, r, &e);
    if (rc != 0) {
        error_doc(xml, 400, err_msg(&e, rc), res);
    } else if (code_gate(a, r, q->number, q->code, xml, res) == 0) {
        q->wreq = (struct wreq){.run = rating_run, .done = rating_done, .arg = q};
        if (submit_deferred(a, &q->wreq, xml, res)) {
            return; /* rating_done answers after the commit */
        }
    }
    free(q);
}

/* ---- complaint to the higher body ---- */

/* One POST requests/NUMBER/complaint in flight (as struct rating_req). */
struct complaint_req {
    struct httpd_ticket ticket;
    bool xml;
    char number[NUMBER_BYTES_MAX + 1];
    char code[ACCESS_INPUT_CHARS_MAX + 1];
    char description[BODY_TEXT_BYTES_MAX + 1];
    struct node *n;
    struct appeal_result res;
    struct wreq wreq;
};

static int complaint_parse(struct complaint_req *q, const struct httpd_req *r, struct errbuf *e) {
    const char *ct = httpd_header(r, "Content-Type");
    if (ct == NULL || strncasecmp(ct, "application/x-www-form-urlencoded", 33) != 0) {
        return err_set(e, APL_EINVAL, "send the complaint as application/x-www-form-urlencoded");
    }
    const char *body = (const char *)r->body;
    if (form_value(body, r->body_len, "code", q->code, sizeof q->code) != 0) {
        return err_set(e, APL_EINVAL, "give the access code from the receipt: code=CODE");
    }
    int rc = form_value(body, r->body_len, "description", q->description, sizeof q->description);
    if (rc == APL_EINVAL) {
        return err_set(e, APL_EINVAL, "the description has at most %d bytes", BODY_TEXT_BYTES_MAX);
    }
    return 0;
}

/* On the writer: every check again, then the two records. */
static int complaint_run(void *node, MDB_txn *t, struct wreq *w) {
    struct complaint_req *q = w->arg;
    struct appeal_ctx c;
    node_appeal_ctx(node, t, &c);
    struct appeal_complaint ac = {q->number, q->code, q->description};
    free(q->res.record);
    memset(&q->res, 0, sizeof q->res);
    return appeal_complain(&c, &ac, &q->res, &w->err);
}

static void complaint_done(struct wreq *w) {
    struct complaint_req *q = w->arg;
    struct httpd_res res;
    struct out d;
    if (w->rc != 0) {
        olog(OLOG_INFO, "request_refused", "op", "complain", "via", "open311", "number", q->number,
             "reason", err_msg(&w->err, w->rc), NULL);
        error_doc(q->xml, http_status(w->rc), err_msg(&w->err, w->rc), &res);
    } else if (out_begin(&d, q->xml) != 0) {
        res = (struct httpd_res){.status = 503, .content_type = "text/plain"};
    } else {
        olog(OLOG_INFO, "appeal_filed", "number", q->res.number, "complaint_of", q->number, "via",
             "open311", NULL);
        char dl[11];
        day_str(q->res.deadline_day, dl);
        out_list(&d, NULL, "service_requests");
        out_obj(&d, NULL, "request");
        out_str(&d, "service_request_id", q->res.number);
        out_str(&d, "complaint_of", q->number);
        out_str(&d, "access_code", q->res.access_code);
        out_str(&d, "status", status_name(q->res.status));
        out_str(&d, "deadline", dl);
        out_int(&d, "seq", (int64_t)q->res.seq);
        out_obj_end(&d, "request");
        out_list_end(&d, "service_requests");
        out_finish(&d, 200, &res);
    }
    httpd_answer(&q->ticket, &res);
    free(q->res.record);
    util_wipe(q, sizeof *q);
    free(q);
}

void applicant_complain(struct applicant *a, const struct httpd_req *r, const char *number,
                        bool xml, struct httpd_res *res) {
    struct complaint_req *q = calloc(1, sizeof *q);
    if (q == NULL) {
        error_doc(xml, 503, "out of memory", res);
        return;
    }
    struct errbuf e;
    err_clear(&e);
    snprintf(q->number, sizeof q->number, "%.*s", NUMBER_BYTES_MAX, number);
    q->xml = xml;
    q->ticket = r->ticket;
    q->n = a->n;
    int rc = complaint_parse(q, r, &e);
    if (rc != 0) {
        error_doc(xml, 400, err_msg(&e, rc), res);
    } else if (code_gate(a, r, q->number, q->code, xml, res) == 0) {
        q->wreq = (struct wreq){.run = complaint_run, .done = complaint_done, .arg = q};
        if (submit_deferred(a, &q->wreq, xml, res)) {
            return; /* complaint_done answers after the commit */
        }
    }
    util_wipe(q, sizeof *q);
    free(q);
}
