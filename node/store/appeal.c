#include "appeal.h"
#include "outbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assert.h"
#include "grants.h"
#include "roles.h"
#include "util.h"
#include "cal.h"
#include "lifecycle.h"
#include "bounds.h"
#include "i18n.h"

static int text_field(const char *s, size_t max, bool required, bool multiline, const char *what,
                      struct errbuf *e) {
    size_t n = strlen(s);
    if (required && n == 0) {
        return err_set(e, APL_EINVAL, "%s is required", what);
    }
    if (n > max) {
        return err_set(e, APL_ETOOBIG, "%s is %zu bytes long; the limit is %zu", what, n, max);
    }
    const char *why = pb_text_problem(s, multiline);
    if (why != NULL) {
        return err_set(e, APL_EINVAL, "%s holds %s", what, why);
    }
    return 0;
}

/* An office whose clock is off its region's node's signs nothing timed:
 * the registration time and the deadline would be wrong. */
static int clock_check(const struct appeal_ctx *c, struct errbuf *e) {
    if (c->clock_off_ms == 0) {
        return 0;
    }
    int64_t off = c->clock_off_ms < 0 ? -c->clock_off_ms : c->clock_off_ms;
    long long secs = (long long)((off + 500) / 1000);
    char sec[24] = "";
    if (secs % 60 != 0) {
        snprintf(sec, sizeof sec, " %lld s", secs % 60);
    }
    return err_set(e, APL_EUNAVAIL,
                   "this node's clock is %lld min%s %s of %s's: registration refused until the "
                   "clock is corrected",
                   secs / 60, sec, c->clock_off_ms > 0 ? "ahead" : "behind", c->clock_ref);
}

static int32_t today(const struct appeal_ctx *c) {
    return day_from_ms(c->now_ms, c->rules->utc_offset_min);
}

/* Signs `b` as this node's next record and folds it into the state. */
static int commit_record(struct appeal_ctx *c, Appeal__Body *b, struct appeal_result *out) {
    if (c->self->frozen) {
        return APL_EUNAVAIL; /* a fork of our own log: sign nothing more */
    }
    b->actor.data = (uint8_t *)c->actor;
    b->actor.len = c->actor != NULL ? KEY_PK_BYTES : 0;
    uint8_t *env = NULL;
    size_t len = 0;
    int rc = chain_sign_append(c->s, c->t, c->self, c->keys, b, c->now_ms, &env, &len);
    if (rc != 0) {
        return rc;
    }
    ASSERT(b->seq == c->self->head_seq && env != NULL);
    uint64_t ignored_before = c->st->ignored;
    rc = state_apply(c->st, c->t, c->self, c->self->head_seq, b);
    if (rc == 0 && c->st->ignored != ignored_before) {
        rc = APL_ECORRUPT; /* our own checked event must apply: a bug */
    }
    if (rc == 0 && c->notify) {
        rc = outbox_note(c->s, c->t, c->keys, c->self->juris, b, c->now_ms);
    }
    if (rc != 0 || out == NULL) {
        free(env);
        return rc;
    }
    out->seq = c->self->head_seq;
    out->record = env;
    out->record_len = len;
    return 0;
}

static int check_applicant(const struct appeal_ctx *c, const Appeal__FileRequest *q,
                           struct errbuf *e) {
    bool any = q->name[0] || q->iin[0] || q->address[0] || q->contacts[0];
    if (q->anonymous) {
        if ((c->rules->anonymous_types & (1u << q->type)) == 0) {
            return err_set(e, APL_EREFUSED,
                           "anonymous appeals are considered only as reports of crimes or of "
                           "threats to state or public security (type report); a %s needs the "
                           "applicant's name",
                           appeal_type_name(q->type));
        }
        if (any) {
            return err_set(e, APL_EINVAL, "an anonymous appeal carries no applicant data");
        }
        return 0;
    }
    int rc = text_field(q->name, NAME_BYTES_MAX, true, false, "the applicant's name", e);
    if (rc == 0) {
        rc = text_field(q->address, ADDRESS_BYTES_MAX, false, false, "the address", e);
    }
    if (rc == 0) {
        rc = text_field(q->contacts, CONTACTS_BYTES_MAX, false, false, "the contacts", e);
    }
    if (rc == 0 && q->iin[0] != '\0') {
        rc = iin_check(q->iin, e);
    }
    return rc;
}

static int check_complaint_window(const struct appeal_ctx *c, const Appeal__FileRequest *q,
                                  struct errbuf *e) {
    if (q->learned_day == 0) {
        return q->late_reason[0] ? err_set(e, APL_EINVAL, "a late reason needs --learned DATE") : 0;
    }
    if (q->type != APPEAL__APPEAL_TYPE__TYPE_COMPLAINT) {
        return err_set(e, APL_EINVAL, "the date the act became known applies to complaints only");
    }
    int32_t now = today(c);
    if (q->learned_day > now) {
        return err_set(e, APL_EINVAL, "the date the act became known cannot be in the future");
    }
    if (!cal_in_range(&c->rules->cal, q->learned_day)) {
        char first[11];
        day_format(c->rules->cal.first_day, first);
        return err_set(e, APL_EINVAL,
                       "the date the act became known is too far in the past: the calendar of "
                       "working days starts on %s",
                       first);
    }
    int32_t last = day_add_months(q->learned_day, c->rules->complaint_window_months);
    int rc = text_field(q->late_reason, REASON_BYTES_MAX, false, false, "the late reason", e);
    if (rc == 0 && now > last && q->late_reason[0] == '\0') {
        char d[11];
        day_format(last, d);
        rc = err_set(e, APL_EREFUSED,
                     "a complaint is filed within %d months of learning of the act (here by %s); "
                     "give --late-reason to register it with the reason the term was missed",
                     c->rules->complaint_window_months, d);
    }
    return rc;
}

static int check_file(const struct appeal_ctx *c, const Appeal__FileRequest *q, struct errbuf *e) {
    if (q->type <= 0 || (int)q->type >= (int)APPEAL_TYPE_COUNT) {
        return err_set(e, APL_EINVAL,
                       "unknown appeal type: use statement, proposal, request, complaint, report "
                       "or feedback");
    }
    int rc = text_field(q->category, CATEGORY_BYTES_MAX, true, false, "the category", e);
    if (rc == 0 && ruleset_category(c->rules, q->category) == NULL) {
        rc = err_set(e, APL_EINVAL, "unknown category %s (see categories.tsv)", q->category);
    }
    if (rc == 0) {
        rc = text_field(q->subject, SUBJECT_BYTES_MAX, true, false, "the subject", e);
    }
    if (rc == 0) {
        rc = text_field(q->body, BODY_TEXT_BYTES_MAX, false, true, "the text", e);
    }
    if (rc == 0) {
        rc = check_applicant(c, q, e);
    }
    if (rc == 0 && q->co_signers > c->rules->co_signers_max) {
        rc = err_set(e, APL_EINVAL, "co-signers: at most %u", c->rules->co_signers_max);
    }
    if (rc == 0 && q->anonymous && q->co_signers > 0) {
        rc = err_set(e, APL_EINVAL, "an anonymous appeal has no co-signers");
    }
    if (rc == 0) {
        rc = check_complaint_window(c, q, e);
    }
    if (rc == 0 && q->lang[0] != '\0' && !i18n_lang_valid(q->lang)) {
        rc = err_set(e, APL_EINVAL, "the language of the appeal is kk, ru or en");
    }
    if (rc == 0 && q->repeat_of[0] != '\0') {
        MDB_val v;
        if (!number_valid(q->repeat_of)) {
            rc = err_set(e, APL_EINVAL, "repeat-of is not a registration number");
        } else if (store_get(c->t, c->s, DB_APPEALS, q->repeat_of, strlen(q->repeat_of), &v) != 0) {
            rc = err_set(e, APL_ENOTFOUND, "repeat-of: no appeal %s", q->repeat_of);
        }
    }
    return rc;
}

/* The latest appeal of the same applicant in the same category that this
 * jurisdiction handles, if any. */
static int find_repeat(struct appeal_ctx *c, const uint8_t tag[APPLICANT_TAG_BYTES],
                       const char *category, char out[NUMBER_BYTES_MAX + 1]) {
    uint8_t key[APPLICANT_TAG_BYTES + 32];
    return apst_latest(&c->st->applicants, c->s, c->t, key, applicant_key(key, tag, category), out);
}

/* The copy of an office's Sealed plaintext for its region's node
 * (docs/record-format.md 7.1): boxed to the region's box key from the
 * cluster file. Nothing for a region's own appeals. */
static int seal_for_region(const struct appeal_ctx *c, const char *owner, const uint8_t *pt,
                           size_t ptlen, uint8_t **out, size_t *len, struct errbuf *e) {
    *out = NULL;
    *len = 0;
    if (!juris_is_office(owner)) {
        return 0;
    }
    char region[JURIS_CHARS_MAX + 1];
    juris_region(owner, region);
    uint8_t box[BOX_PK_BYTES];
    if (c->box_key_of == NULL || c->box_key_of(c->box_key_arg, region, box) != 0) {
        return err_set(e, APL_ENOTFOUND,
                       "no node of %s in the cluster file to seal the office's applicant data to",
                       region);
    }
    int rc = seal_box(box, pt, ptlen, out, len);
    return rc != 0 ? err_set(e, rc, "cannot seal the applicant data to %s", region) : 0;
}

/* Seals the applicant's data under this node's data key and, for an
 * office, boxed to its region (`region_sealed`). */
static int seal_filing(struct appeal_ctx *c, const Appeal__FileRequest *q, const char *number,
                       ProtobufCBinaryData *sealed, ProtobufCBinaryData *region_sealed,
                       struct errbuf *e) {
    Appeal__Sealed s = APPEAL__SEALED__INIT;
    s.number = (char *)number;
    s.name = q->name;
    s.iin = q->iin;
    s.address = q->address;
    s.contacts = q->contacts;
    s.subject = q->subject;
    s.body = q->body;
    uint8_t *pt;
    size_t ptlen;
    int rc = pb_pack(&s.base, &pt, &ptlen);
    if (rc == 0) {
        rc = seal_data(c->keys, number, pt, ptlen, &sealed->data, &sealed->len);
        if (rc == 0) {
            rc = seal_for_region(c, c->self->juris, pt, ptlen, &region_sealed->data,
                                 &region_sealed->len, e);
        }
        util_wipe_free(pt, ptlen);
    }
    return rc;
}

/* An official's reason, sealed (docs/record-format.md 7.6): under this
 * node's data key, and boxed to the node of `box_to` when not NULL. The
 * event in `b` must already carry its number and version (they are the
 * associated data). An empty reason leaves both empty. */
struct reason_seal {
    uint8_t *sealed;
    size_t sealed_len;
    uint8_t *boxed;
    size_t boxed_len;
};

static int seal_reason(struct appeal_ctx *c, const Appeal__Body *b, const char *reason,
                       const char *box_to, struct reason_seal *out, struct errbuf *e) {
    memset(out, 0, sizeof *out);
    struct rec_reason r;
    size_t len = strlen(reason);
    if (len == 0 || !rec_reason_of(b, &r)) {
        return 0;
    }
    char ad[REASON_AD_BYTES];
    rec_reason_ad(b, &r, ad);
    int rc =
        seal_data_ad(c->keys, ad, (const uint8_t *)reason, len, &out->sealed, &out->sealed_len);
    if (rc != 0 || box_to == NULL) {
        return rc;
    }
    uint8_t box[BOX_PK_BYTES];
    if (c->box_key_of == NULL || c->box_key_of(c->box_key_arg, box_to, box) != 0) {
        return err_set(e, APL_ENOTFOUND, "no node of %s in the cluster file to seal the reason to",
                       box_to);
    }
    size_t adlen = strlen(ad) + 1, ptlen = adlen + len;
    uint8_t *pt = malloc(ptlen);
    if (pt == NULL) {
        return APL_ENOMEM;
    }
    memcpy(pt, ad, adlen); /* with its terminator: the zero byte of 7.6 */
    memcpy(pt + adlen, reason, len);
    rc = seal_box(box, pt, ptlen, &out->boxed, &out->boxed_len);
    util_wipe_free(pt, ptlen);
    return rc;
}

static void reason_seal_free(struct reason_seal *s) {
    free(s->sealed);
    free(s->boxed);
    memset(s, 0, sizeof *s);
}

static void set_bytes(ProtobufCBinaryData *f, uint8_t *data, size_t len) {
    f->data = data;
    f->len = len;
}

static int check_signing(const struct appeal_ctx *c, struct errbuf *e) {
    if (c->self->frozen) {
        return err_set(e, APL_EUNAVAIL,
                       "this node's log is frozen after a fork (%s): it signs nothing more; see "
                       "docs/operations.md",
                       c->self->frozen_reason);
    }
    return clock_check(c, e);
}

/* The next registration number of this node's jurisdiction in the year
 * of `day`, into `number`. */
static int next_number(struct appeal_ctx *c, int32_t day, char *number, size_t cap,
                       struct errbuf *e) {
    int year;
    unsigned mon, mday;
    civil_from_day(day, &year, &mon, &mday);
    uint32_t last;
    int rc = state_regno(c->s, c->t, c->self->juris, year, &last);
    if (rc != 0) {
        return rc;
    }
    if (last >= REGNO_MAX) {
        return err_set(e, APL_EFULL, "registration numbers for %d are exhausted", year);
    }
    int n = snprintf(number, cap, "%s-%04d-%06u", c->self->juris, year, last + 1);
    ASSERT(n > 0 && (size_t)n < cap); /* a valid jurisdiction and REGNO_MAX fit */
    return 0;
}

/* The filing's fields that come from the request, the day and the rules
 * (not the applicant's tag, the repeat or the sealed parts). */
static void filed_fields(const struct appeal_ctx *c, const Appeal__FileRequest *q, int32_t day,
                         char *number, Appeal__AppealFiled *f) {
    f->number = number;
    f->type = q->type;
    f->category = q->category;
    f->jurisdiction = c->self->juris;
    f->registered_ms = c->now_ms;
    f->registered_day = day;
    f->deadline_day = cal_add_working(&c->rules->cal, day, c->rules->term_working_days);
    f->anonymous = q->anonymous;
    f->co_signers = q->co_signers;
    f->learned_day = q->learned_day;
    f->lang = (char *)(q->lang[0] != '\0' ? q->lang : c->rules->default_lang);
    /* f->late_reason stays empty: the reason is sealed (appeal_file). */
    f->urgent = q->anonymous && (c->rules->urgent_anonymous & (1u << q->type)) != 0;
}

int appeal_file(struct appeal_ctx *c, const Appeal__FileRequest *q, struct appeal_result *out,
                struct errbuf *e) {
    int rc = check_signing(c, e);
    if (rc == 0) {
        rc = check_file(c, q, e);
    }
    if (rc != 0) {
        return rc;
    }
    int32_t day = today(c);
    memset(out, 0, sizeof *out);
    if ((rc = next_number(c, day, out->number, sizeof out->number, e)) != 0) {
        return rc;
    }
    Appeal__AppealFiled f = APPEAL__APPEAL_FILED__INIT;
    filed_fields(c, q, day, out->number, &f);
    uint8_t access_hash[ACCESS_HASH_BYTES];
    access_code_new(out->access_code, access_hash);
    set_bytes(&f.access_hash, access_hash, sizeof access_hash);
    uint8_t tag[APPLICANT_TAG_BYTES];
    char repeat[NUMBER_BYTES_MAX + 1] = "";
    snprintf(repeat, sizeof repeat, "%s", q->repeat_of);
    if (q->iin[0] != '\0') {
        applicant_tag(c->keys, q->iin, tag);
        f.applicant_tag.data = tag;
        f.applicant_tag.len = sizeof tag;
        if (repeat[0] == '\0' && (rc = find_repeat(c, tag, q->category, repeat)) != 0) {
            return rc;
        }
    }
    f.repeat_of = repeat;
    if (!q->anonymous || q->subject[0] || q->body[0]) {
        rc = seal_filing(c, q, out->number, &f.sealed, &f.region_sealed, e);
        if (rc != 0) {
            free(f.sealed.data);
            return rc;
        }
        f.data_key_id.data = (uint8_t *)c->keys->data_key_id;
        f.data_key_id.len = DATA_KEY_ID_BYTES;
    }
    Appeal__Body b = APPEAL__BODY__INIT;
    b.event_case = APPEAL__BODY__EVENT_FILED;
    b.filed = &f;
    struct reason_seal rs;
    rc = seal_reason(c, &b, q->late_reason, NULL, &rs, e);
    if (rc == 0 && rs.sealed != NULL) {
        set_bytes(&f.sealed_late_reason, rs.sealed, rs.sealed_len);
        set_bytes(&f.data_key_id, (uint8_t *)c->keys->data_key_id, DATA_KEY_ID_BYTES);
    }
    if (rc == 0) {
        rc = commit_record(c, &b, out);
    }
    reason_seal_free(&rs);
    free(f.sealed.data);
    free(f.region_sealed.data);
    if (rc == 0) {
        out->type = q->type;
        out->status = APPEAL__STATUS__STATUS_REGISTERED;
        out->deadline_day = f.deadline_day;
        out->registered_ms = c->now_ms;
        out->urgent = f.urgent;
        snprintf(out->repeat_of, sizeof out->repeat_of, "%s", repeat);
    }
    return rc;
}

static Appeal__Body__EventCase event_of(Appeal__Action a) {
    switch (a) {
    case APPEAL__ACTION__ACTION_ASSIGN:
        return APPEAL__BODY__EVENT_ASSIGNED;
    case APPEAL__ACTION__ACTION_EXTEND:
        return APPEAL__BODY__EVENT_EXTENDED;
    case APPEAL__ACTION__ACTION_ANSWER:
        return APPEAL__BODY__EVENT_ANSWERED;
    case APPEAL__ACTION__ACTION_CLOSE:
        return APPEAL__BODY__EVENT_CLOSED;
    case APPEAL__ACTION__ACTION_WITHDRAW:
        return APPEAL__BODY__EVENT_WITHDRAWN;
    case APPEAL__ACTION__ACTION_REOPEN:
        return APPEAL__BODY__EVENT_REOPENED;
    case APPEAL__ACTION__ACTION_FORWARD:
        return APPEAL__BODY__EVENT_FORWARDED;
    case APPEAL__ACTION__ACTION_ACCEPT:
        return APPEAL__BODY__EVENT_ACCEPTED;
    case APPEAL__ACTION__ACTION_RETURN:
        return APPEAL__BODY__EVENT_RETURNED;
    default:
        return APPEAL__BODY__EVENT__NOT_SET;
    }
}

static const char *action_verb(Appeal__Action a) {
    static const char *const verbs[] = {"act on",   "assign", "extend",  "answer", "close",
                                        "withdraw", "reopen", "forward", "accept", "return"};
    return a >= 0 && a <= APPEAL__ACTION__ACTION_RETURN ? verbs[a] : "act on";
}

static int check_actor(const struct appeal_ctx *c, const Appeal__AppealRow *row, Appeal__Action a,
                       struct errbuf *e) {
    bool forwarded = row->status == APPEAL__STATUS__STATUS_FORWARDED;
    const char *may = forwarded ? row->forwarded_to : row->owner;
    if (strcmp(may, c->self->juris) == 0) {
        return 0;
    }
    if (forwarded && strcmp(row->owner, c->self->juris) == 0) {
        return err_set(e, APL_ENOTOWNER,
                       "cannot %s %s: it is forwarded to %s and waits for its acceptance",
                       action_verb(a), row->number, row->forwarded_to);
    }
    return err_set(e, APL_ENOTOWNER,
                   "cannot %s %s: it is handled by %s; only that "
                   "jurisdiction's node acts on it",
                   action_verb(a), row->number, may);
}

/* The last event record of an appeal (for accept: the forward). */
static int last_event(struct appeal_ctx *c, const char *number, struct arena *a, struct record *r) {
    MDB_cursor *cur;
    int rc = store_rc(mdb_cursor_open(c->t, c->s->dbi[DB_EVENTS], &cur));
    if (rc != 0) {
        return rc;
    }
    MDB_val k = {strlen(number), (void *)number}, v;
    rc = store_rc(mdb_cursor_get(cur, &k, &v, MDB_SET_KEY));
    if (rc == 0) {
        rc = store_rc(mdb_cursor_get(cur, &k, &v, MDB_LAST_DUP));
    }
    mdb_cursor_close(cur);
    if (rc != 0 || v.mv_size != 16) {
        return rc != 0 ? rc : APL_ECORRUPT;
    }
    MDB_val env;
    rc = chain_get(c->s, c->t, be32_get((const uint8_t *)v.mv_data + 4),
                   be64_get((const uint8_t *)v.mv_data + 8), &env);
    if (rc == 0 && rec_decode(env.mv_data, env.mv_size, a, r, NULL) != 0) {
        rc = APL_ECORRUPT;
    }
    return rc;
}

struct act_parts {
    Appeal__Body body;
    union {
        Appeal__Assigned assigned;
        Appeal__Extended extended;
        Appeal__Answered answered;
        Appeal__Closed closed;
        Appeal__Withdrawn withdrawn;
        Appeal__Reopened reopened;
        Appeal__Forwarded forwarded;
        Appeal__Accepted accepted;
        Appeal__Returned returned;
    } ev;
    uint8_t *owned; /* a ciphertext to free after signing */
    size_t owned_len;
    uint8_t *owned_region; /* an office's copy for its region (Accepted) */
    size_t owned_region_len;
    struct reason_seal reason; /* the official's reason, sealed */
    uint8_t tag[APPLICANT_TAG_BYTES];
    int32_t deadline_day;
    int status_after;
};

static int build_extend(struct appeal_ctx *c, const Appeal__AppealRow *row,
                        const Appeal__ActRequest *q, struct act_parts *p, struct errbuf *e) {
    int rc =
        text_field(q->reason, REASON_BYTES_MAX, true, false, "a reasoned extension's reason", e);
    if (rc != 0) {
        return rc;
    }
    int32_t start = row->term_start_day ? row->term_start_day : row->registered_day;
    int32_t limit = day_add_months(start, c->rules->extension_max_months);
    char d[11];
    if (q->until_day <= row->deadline_day) {
        day_format(row->deadline_day, d);
        return err_set(e, APL_EINVAL, "an extension must move the deadline past %s", d);
    }
    if (q->until_day > limit) {
        day_format(limit, d);
        return err_set(e, APL_EREFUSED,
                       "an extension may bring the term to at most %d months in total (here "
                       "until %s)",
                       c->rules->extension_max_months, d);
    }
    Appeal__Extended x = APPEAL__EXTENDED__INIT;
    x.until_day = q->until_day;
    p->ev.extended = x;
    p->body.event_case = APPEAL__BODY__EVENT_EXTENDED;
    p->body.extended = &p->ev.extended;
    p->deadline_day = q->until_day;
    return 0;
}

static int build_answer(struct appeal_ctx *c, const Appeal__AppealRow *row,
                        const Appeal__ActRequest *q, struct act_parts *p, struct errbuf *e) {
    if (q->outcome <= 0 || q->outcome > APPEAL__OUTCOME__OUTCOME_EXPLAINED) {
        return err_set(e, APL_EINVAL,
                       "an answer needs an outcome: satisfied, partly, rejected or explained");
    }
    int rc = text_field(q->text, ANSWER_TEXT_BYTES_MAX, true, true, "the answer text", e);
    if (rc == 0) {
        rc = seal_data(c->keys, row->number, (const uint8_t *)q->text, strlen(q->text), &p->owned,
                       &p->owned_len);
    }
    if (rc != 0) {
        return rc;
    }
    Appeal__Answered x = APPEAL__ANSWERED__INIT;
    x.outcome = q->outcome;
    x.sealed_text.data = p->owned;
    x.sealed_text.len = p->owned_len;
    x.answered_day = today(c);
    x.data_key_id.data = (uint8_t *)c->keys->data_key_id;
    x.data_key_id.len = DATA_KEY_ID_BYTES;
    p->ev.answered = x;
    p->body.event_case = APPEAL__BODY__EVENT_ANSWERED;
    p->body.answered = &p->ev.answered;
    return 0;
}

static int build_forward(struct appeal_ctx *c, const Appeal__AppealRow *row,
                         const Appeal__ActRequest *q, struct act_parts *p, struct errbuf *e) {
    if (!juris_valid(q->to_jurisdiction)) {
        return err_set(e, APL_EINVAL, "forward needs --to JURISDICTION (e.g. KZ-71)");
    }
    if (strcmp(q->to_jurisdiction, c->self->juris) == 0) {
        return err_set(e, APL_EINVAL, "cannot forward an appeal to its own jurisdiction");
    }
    int rc = text_field(q->reason, REASON_BYTES_MAX, true, false, "the reason for forwarding", e);
    if (rc != 0) {
        return rc;
    }
    uint8_t box[BOX_PK_BYTES];
    if (c->box_key_of == NULL || c->box_key_of(c->box_key_arg, q->to_jurisdiction, box) != 0) {
        return err_set(e, APL_ENOTFOUND, "no node of %s in the cluster file to forward to",
                       q->to_jurisdiction);
    }
    Appeal__Forwarded x = APPEAL__FORWARDED__INIT;
    if (row->sealed_at != NULL) {
        struct arena a;
        if (arena_init(&a, RECORD_ARENA_BYTES) != 0) {
            return APL_ENOMEM;
        }
        Appeal__Sealed *sd = NULL;
        rc = appeal_open_personal(c->s, c->t, c->keys, row, &a, &sd, NULL);
        uint8_t *pt = NULL;
        size_t ptlen = 0;
        if (rc == 0 && sd != NULL) {
            rc = pb_pack(&sd->base, &pt, &ptlen);
        }
        if (rc == 0 && pt != NULL) {
            rc = seal_box(box, pt, ptlen, &p->owned, &p->owned_len);
            util_wipe_free(pt, ptlen);
        }
        util_wipe(a.base, a.used_bytes);
        arena_fini(&a);
        if (rc != 0) {
            return err_set(e, rc, "cannot open the applicant's data to forward it");
        }
        x.sealed.data = p->owned;
        x.sealed.len = p->owned_len;
    }
    int32_t start = row->term_start_day ? row->term_start_day : row->registered_day;
    x.to_jurisdiction = q->to_jurisdiction;
    x.late = today(c) > cal_add_working(&c->rules->cal, start, c->rules->forward_working_days);
    p->ev.forwarded = x;
    p->body.event_case = APPEAL__BODY__EVENT_FORWARDED;
    p->body.forwarded = &p->ev.forwarded;
    return 0;
}

static int build_accept(struct appeal_ctx *c, const Appeal__AppealRow *row, struct act_parts *p,
                        struct errbuf *e) {
    struct arena a;
    if (arena_init(&a, RECORD_ARENA_BYTES) != 0) {
        return APL_ENOMEM;
    }
    struct record fwd;
    int rc = last_event(c, row->number, &a, &fwd);
    if (rc == 0 && fwd.body->event_case != APPEAL__BODY__EVENT_FORWARDED) {
        rc = APL_ECORRUPT;
    }
    uint8_t *pt = NULL;
    size_t ptlen = 0;
    Appeal__Accepted x = APPEAL__ACCEPTED__INIT;
    if (rc == 0 && fwd.body->forwarded->sealed.len > 0) {
        rc = open_box(c->keys, fwd.body->forwarded->sealed.data, fwd.body->forwarded->sealed.len,
                      &pt, &ptlen);
        Appeal__Sealed *sd = NULL;
        if (rc == 0) {
            sd = (Appeal__Sealed *)pb_unpack(&appeal__sealed__descriptor, pt, ptlen, &a, 4, NULL);
            rc = sd != NULL && strcmp(sd->number, row->number) == 0 ? 0 : APL_EAUTH;
        }
        if (rc == 0) {
            rc = seal_data(c->keys, row->number, pt, ptlen, &p->owned, &p->owned_len);
        }
        if (rc == 0) {
            rc = seal_for_region(c, c->self->juris, pt, ptlen, &p->owned_region,
                                 &p->owned_region_len, e);
        }
        if (rc == 0 && sd->iin[0] != '\0') {
            applicant_tag(c->keys, sd->iin, p->tag);
            x.applicant_tag.data = p->tag;
            x.applicant_tag.len = APPLICANT_TAG_BYTES;
        }
        x.sealed.data = p->owned;
        x.sealed.len = p->owned_len;
        x.region_sealed.data = p->owned_region;
        x.region_sealed.len = p->owned_region_len;
        x.data_key_id.data = (uint8_t *)c->keys->data_key_id;
        x.data_key_id.len = DATA_KEY_ID_BYTES;
    }
    util_wipe_free(pt, ptlen);
    util_wipe(a.base, a.used_bytes);
    arena_fini(&a);
    if (rc != 0) {
        return err_set(e, rc, "cannot open the applicant's data sealed to this node");
    }
    x.start_day = today(c);
    x.deadline_day = cal_add_working(&c->rules->cal, x.start_day, c->rules->term_working_days);
    p->ev.accepted = x;
    p->body.event_case = APPEAL__BODY__EVENT_ACCEPTED;
    p->body.accepted = &p->ev.accepted;
    p->deadline_day = x.deadline_day;
    return 0;
}

static int build_simple(struct appeal_ctx *c, const Appeal__AppealRow *row,
                        const Appeal__ActRequest *q, struct act_parts *p, struct errbuf *e) {
    int rc = 0;
    switch (q->action) {
    case APPEAL__ACTION__ACTION_ASSIGN:
        rc = text_field(q->assignee, ASSIGNEE_BYTES_MAX, true, false, "the assignee", e);
        appeal__assigned__init(&p->ev.assigned);
        p->ev.assigned.assignee = q->assignee;
        p->body.assigned = &p->ev.assigned;
        break;
    case APPEAL__ACTION__ACTION_CLOSE:
        appeal__closed__init(&p->ev.closed);
        p->ev.closed.closed_day = today(c);
        p->body.closed = &p->ev.closed;
        break;
    case APPEAL__ACTION__ACTION_WITHDRAW:
        rc = text_field(q->reason, REASON_BYTES_MAX, false, false, "the reason", e);
        appeal__withdrawn__init(&p->ev.withdrawn);
        p->body.withdrawn = &p->ev.withdrawn;
        break;
    case APPEAL__ACTION__ACTION_REOPEN:
        rc = text_field(q->reason, REASON_BYTES_MAX, true, false, "the reason for reopening", e);
        appeal__reopened__init(&p->ev.reopened);
        p->ev.reopened.start_day = today(c);
        p->ev.reopened.deadline_day =
            cal_add_working(&c->rules->cal, today(c), c->rules->reopen_working_days);
        p->deadline_day = p->ev.reopened.deadline_day;
        p->body.reopened = &p->ev.reopened;
        break;
    case APPEAL__ACTION__ACTION_RETURN:
        rc = text_field(q->reason, REASON_BYTES_MAX, true, false, "the reason for returning", e);
        appeal__returned__init(&p->ev.returned);
        p->body.returned = &p->ev.returned;
        break;
    default:
        return err_set(e, APL_EINVAL, "unknown action");
    }
    (void)row;
    return rc;
}

/* Seals the request's reason into the event `p` holds (its number and
 * version set): forwards box it to the receiver, returns to the owner. */
static int seal_act_reason(struct appeal_ctx *c, const Appeal__AppealRow *row,
                           const Appeal__ActRequest *q, struct act_parts *p, struct errbuf *e) {
    ProtobufCBinaryData *sealed, *kid, *boxed = NULL;
    const char *box_to = NULL;
#define AT(f) sealed = &p->ev.f.sealed_reason, kid = &p->ev.f.data_key_id
    switch (p->body.event_case) {
    case APPEAL__BODY__EVENT_EXTENDED:
        AT(extended);
        break;
    case APPEAL__BODY__EVENT_FORWARDED:
        AT(forwarded);
        boxed = &p->ev.forwarded.boxed_reason, box_to = q->to_jurisdiction;
        break;
    case APPEAL__BODY__EVENT_RETURNED:
        AT(returned);
        boxed = &p->ev.returned.boxed_reason, box_to = row->owner;
        break;
    case APPEAL__BODY__EVENT_REOPENED:
        AT(reopened);
        break;
    case APPEAL__BODY__EVENT_WITHDRAWN:
        AT(withdrawn);
        break;
    default:
        return 0;
    }
#undef AT
    int rc = seal_reason(c, &p->body, q->reason, box_to, &p->reason, e);
    if (rc == 0 && p->reason.sealed != NULL) {
        set_bytes(sealed, p->reason.sealed, p->reason.sealed_len);
        set_bytes(kid, (uint8_t *)c->keys->data_key_id, DATA_KEY_ID_BYTES);
    }
    if (rc == 0 && boxed != NULL) {
        set_bytes(boxed, p->reason.boxed, p->reason.boxed_len);
    }
    return rc;
}

/* Sets the version of whichever event `p` holds. */
static void set_ref(struct act_parts *p, const char *number, uint32_t version) {
    const char **num = NULL;
    uint32_t *ver = NULL;
#define REF(f) num = (const char **)&p->body.f->number, ver = &p->body.f->version
    switch (p->body.event_case) {
    case APPEAL__BODY__EVENT_ASSIGNED:
        REF(assigned);
        break;
    case APPEAL__BODY__EVENT_EXTENDED:
        REF(extended);
        break;
    case APPEAL__BODY__EVENT_FORWARDED:
        REF(forwarded);
        break;
    case APPEAL__BODY__EVENT_ACCEPTED:
        REF(accepted);
        break;
    case APPEAL__BODY__EVENT_RETURNED:
        REF(returned);
        break;
    case APPEAL__BODY__EVENT_ANSWERED:
        REF(answered);
        break;
    case APPEAL__BODY__EVENT_CLOSED:
        REF(closed);
        break;
    case APPEAL__BODY__EVENT_REOPENED:
        REF(reopened);
        break;
    case APPEAL__BODY__EVENT_WITHDRAWN:
        REF(withdrawn);
        break;
    default:
        return;
    }
#undef REF
    *num = number;
    *ver = version;
}

/* The event of action `q` on `row`, into `p`. */
static int build_act(struct appeal_ctx *c, const Appeal__AppealRow *row,
                     const Appeal__ActRequest *q, struct act_parts *p, struct errbuf *e) {
    switch (q->action) {
    case APPEAL__ACTION__ACTION_EXTEND:
        return build_extend(c, row, q, p, e);
    case APPEAL__ACTION__ACTION_ANSWER:
        return build_answer(c, row, q, p, e);
    case APPEAL__ACTION__ACTION_FORWARD:
        return build_forward(c, row, q, p, e);
    case APPEAL__ACTION__ACTION_ACCEPT:
        return build_accept(c, row, p, e);
    default:
        return build_simple(c, row, q, p, e);
    }
}

int appeal_act(struct appeal_ctx *c, const Appeal__ActRequest *q, struct appeal_result *out,
               struct errbuf *e) {
    Appeal__Body__EventCase ev = event_of(q->action);
    if (check_signing(c, e) != 0) {
        return e->code;
    }
    if (ev == APPEAL__BODY__EVENT__NOT_SET) {
        return err_set(e, APL_EINVAL, "unknown action");
    }
    if (!number_valid(q->number)) {
        return err_set(e, APL_EINVAL, "`%.40s` is not a registration number", q->number);
    }
    _Alignas(16) uint8_t rowbuf[16384];
    struct arena a;
    arena_on(&a, rowbuf, sizeof rowbuf);
    Appeal__AppealRow *row;
    int rc = state_appeal(c->s, c->t, q->number, &a, &row);
    if (rc == APL_ENOTFOUND) {
        return err_set(e, rc, "no appeal %s", q->number);
    }
    if (rc != 0) {
        return rc;
    }
    if ((rc = check_actor(c, row, q->action, e)) != 0) {
        return rc;
    }
    if (!lifecycle_allowed(ev, row->status)) {
        return err_set(e, APL_ETRANSITION, "cannot %s %s: it is %s; %s needs it %s",
                       action_verb(q->action), row->number, status_name(row->status),
                       action_verb(q->action), lifecycle_needs(ev));
    }
    struct act_parts p;
    memset(&p, 0, sizeof p);
    appeal__body__init(&p.body);
    p.body.event_case = ev;
    p.deadline_day = row->deadline_day;
    rc = build_act(c, row, q, &p, e);
    if (rc == 0) {
        set_ref(&p, row->number, row->version + 1);
        rc = seal_act_reason(c, row, q, &p, e);
    }
    if (rc == 0) {
        memset(out, 0, sizeof *out);
        snprintf(out->number, sizeof out->number, "%s", row->number);
        rc = commit_record(c, &p.body, out);
    }
    free(p.owned);
    free(p.owned_region);
    reason_seal_free(&p.reason);
    if (rc == 0) {
        arena_on(&a, rowbuf, sizeof rowbuf);
        rc = state_appeal(c->s, c->t, out->number, &a, &row);
        if (rc == 0) {
            out->type = row->type;
            out->status = row->status;
            out->deadline_day = row->deadline_day;
            out->registered_ms = row->registered_ms;
        }
    }
    return rc;
}

/* AppealFiled.access_hash of `number` (len 0: none); APL_ENOTFOUND. */
static int filed_access_hash(struct appeal_ctx *c, const char *number,
                             uint8_t hash[ACCESS_HASH_BYTES], size_t *len) {
    *len = 0;
    MDB_cursor *cur;
    int rc = store_rc(mdb_cursor_open(c->t, c->s->dbi[DB_EVENTS], &cur));
    if (rc != 0) {
        return rc;
    }
    MDB_val k = {strlen(number), (void *)number}, v, env;
    rc = store_rc(mdb_cursor_get(cur, &k, &v, MDB_SET_KEY)); /* the first: the filing */
    mdb_cursor_close(cur);
    if (rc == 0 && v.mv_size != 16) {
        rc = APL_ECORRUPT;
    }
    if (rc == 0) {
        rc = chain_get(c->s, c->t, be32_get((const uint8_t *)v.mv_data + 4),
                       be64_get((const uint8_t *)v.mv_data + 8), &env);
    }
    struct arena a;
    if (rc != 0 || arena_init(&a, RECORD_ARENA_BYTES) != 0) {
        return rc != 0 ? rc : APL_ENOMEM;
    }
    struct record r;
    if (rec_decode(env.mv_data, env.mv_size, &a, &r, NULL) != 0 ||
        r.body->event_case != APPEAL__BODY__EVENT_FILED) {
        rc = APL_ECORRUPT;
    } else if (r.body->filed->access_hash.len == ACCESS_HASH_BYTES) {
        memcpy(hash, r.body->filed->access_hash.data, ACCESS_HASH_BYTES);
        *len = ACCESS_HASH_BYTES;
    }
    arena_fini(&a);
    return rc;
}

/* The applicant's acts (rating, complaint): `code` must open the appeal's
 * access hash, and this node must own the appeal now (`verb` names the act
 * in the error that says where to go). */
static int applicant_owns(struct appeal_ctx *c, const char *code, const Appeal__AppealRow *row,
                          const char *verb, struct errbuf *e) {
    uint8_t hash[ACCESS_HASH_BYTES];
    size_t hl = 0;
    int rc = filed_access_hash(c, row->number, hash, &hl);
    if (rc != 0) {
        return rc;
    }
    if (hl == 0 || !access_code_check(code, hash, hl)) {
        return err_set(e, APL_EAUTH, "wrong number or access code");
    }
    if (row->status == APPEAL__STATUS__STATUS_FORWARDED ||
        strcmp(row->owner, c->self->juris) != 0) {
        return err_set(
            e, APL_ENOTOWNER, "%s handles this appeal now: %s on its node",
            row->status == APPEAL__STATUS__STATUS_FORWARDED ? row->forwarded_to : row->owner, verb);
    }
    return 0;
}

/* The checks of appeal_rate that need the row and the code. */
static int rate_check(struct appeal_ctx *c, const struct appeal_rating *q,
                      const Appeal__AppealRow *row, struct errbuf *e) {
    int rc = applicant_owns(c, q->code, row, "rate it", e);
    if (rc != 0) {
        return rc;
    }
    if (q->rating != APPEAL__RATING__RATING_SATISFIED &&
        q->rating != APPEAL__RATING__RATING_NOT_SATISFIED) {
        return err_set(e, APL_EINVAL, "rating is satisfied or not_satisfied");
    }
    if (!lifecycle_allowed(APPEAL__BODY__EVENT_RATED, row->status)) {
        return err_set(e, APL_ETRANSITION, "%s is %s: only an answer can be rated", row->number,
                       status_name(row->status));
    }
    if (row->rating != 0) {
        return err_set(e, APL_EEXIST, "%s is already rated: one rating per appeal", row->number);
    }
    return text_field(q->comment, RATING_COMMENT_BYTES_MAX, false, true, "the comment", e);
}

/* The row of the appeal an applicant acts on (a rating, a complaint), after
 * the signing checks; a malformed or unknown number is told apart from a
 * wrong access code by nothing. */
static int applicant_row(struct appeal_ctx *c, const char *number, struct arena *a,
                         Appeal__AppealRow **row, struct errbuf *e) {
    if (check_signing(c, e) != 0) {
        return e->code;
    }
    if (!number_valid(number)) {
        return err_set(e, APL_EAUTH, "wrong number or access code");
    }
    int rc = state_appeal(c->s, c->t, number, a, row);
    if (rc == APL_ENOTFOUND) {
        return err_set(e, APL_EAUTH, "wrong number or access code");
    }
    return rc;
}

int appeal_rate(struct appeal_ctx *c, const struct appeal_rating *q, struct appeal_result *out,
                struct errbuf *e) {
    _Alignas(16) uint8_t rowbuf[16384];
    struct arena a;
    arena_on(&a, rowbuf, sizeof rowbuf);
    Appeal__AppealRow *row;
    int rc = applicant_row(c, q->number, &a, &row, e);
    if (rc != 0 || (rc = rate_check(c, q, row, e)) != 0) {
        return rc;
    }
    Appeal__Rated x = APPEAL__RATED__INIT;
    uint8_t *sealed = NULL;
    size_t sealed_len = 0;
    if (q->comment[0] != '\0') {
        rc = seal_data(c->keys, row->number, (const uint8_t *)q->comment, strlen(q->comment),
                       &sealed, &sealed_len);
        if (rc != 0) {
            return rc;
        }
        x.sealed_comment.data = sealed;
        x.sealed_comment.len = sealed_len;
        x.data_key_id.data = (uint8_t *)c->keys->data_key_id;
        x.data_key_id.len = DATA_KEY_ID_BYTES;
    }
    x.number = row->number;
    x.version = row->version + 1;
    x.rating = q->rating;
    x.rated_day = today(c);
    Appeal__Body b = APPEAL__BODY__INIT;
    b.event_case = APPEAL__BODY__EVENT_RATED;
    b.rated = &x;
    memset(out, 0, sizeof *out);
    snprintf(out->number, sizeof out->number, "%s", row->number);
    out->type = row->type;
    out->status = row->status;
    out->deadline_day = row->deadline_day;
    out->registered_ms = row->registered_ms;
    rc = commit_record(c, &b, out);
    free(sealed);
    return rc;
}

int appeal_genesis(struct appeal_ctx *c, const char *juris, struct errbuf *e) {
    if (c->self->head_seq != 0) {
        return err_set(e, APL_EEXIST, "the log already has a genesis record");
    }
    Appeal__Genesis g = APPEAL__GENESIS__INIT;
    g.jurisdiction = (char *)juris;
    g.box_key.data = (uint8_t *)c->keys->box_pk;
    g.box_key.len = BOX_PK_BYTES;
    Appeal__Body b = APPEAL__BODY__INIT;
    b.event_case = APPEAL__BODY__EVENT_GENESIS;
    b.genesis = &g;
    return commit_record(c, &b, NULL);
}

int appeal_grant(struct appeal_ctx *c, const Appeal__GrantRequest *q, struct appeal_result *out,
                 struct errbuf *e) {
    if (q->key.len != KEY_PK_BYTES) {
        return err_set(e, APL_EINVAL, "a grant needs a %d-byte Ed25519 public key", KEY_PK_BYTES);
    }
    uint32_t role = role_parse(q->role);
    if (role == 0) {
        return err_set(e, APL_EINVAL,
                       "`%.32s` is not a role (registrar, official, national, operator, admin, "
                       "channel)",
                       q->role);
    }
    const char *juris = q->jurisdiction[0] ? q->jurisdiction : c->self->juris;
    char country[16];
    if (role == ROLE_NATIONAL && !q->jurisdiction[0]) {
        snprintf(country, sizeof country, "%.*s", (int)strcspn(c->self->juris, "-"),
                 c->self->juris);
        juris = country;
    }
    if (!role_scope_ok(role, juris, c->self->juris, e)) {
        return APL_EINVAL;
    }
    int rc = text_field(q->label, LABEL_BYTES_MAX, false, false, "the label", e);
    if (rc != 0) {
        return rc;
    }
    _Alignas(16) uint8_t buf[GRANT_ROW_ARENA_BYTES];
    struct arena a;
    arena_on(&a, buf, sizeof buf);
    Appeal__GrantRow *g;
    rc = grant_get(c->s, c->t, c->self->idx, q->key.data, &a, &g);
    if (rc == 0 && g->revoked_seq != 0) {
        return err_set(e, APL_EREFUSED, "that key was revoked (log seq %llu); make a new one",
                       (unsigned long long)g->revoked_seq);
    }
    if (rc != 0 && rc != APL_ENOTFOUND) {
        return rc;
    }
    Appeal__KeyGranted kg = APPEAL__KEY_GRANTED__INIT;
    kg.key = q->key;
    kg.role = (char *)role_name(role);
    kg.jurisdiction = (char *)juris;
    kg.label = q->label;
    kg.rate_per_minute = role == ROLE_CHANNEL ? q->rate_per_minute : 0;
    Appeal__Body b = APPEAL__BODY__INIT;
    b.event_case = APPEAL__BODY__EVENT_KEY_GRANTED;
    b.key_granted = &kg;
    return commit_record(c, &b, out);
}

int appeal_revoke(struct appeal_ctx *c, const Appeal__RevokeRequest *q, struct appeal_result *out,
                  struct errbuf *e) {
    if (q->key.len != KEY_PK_BYTES) {
        return err_set(e, APL_EINVAL, "a revocation needs a %d-byte Ed25519 public key",
                       KEY_PK_BYTES);
    }
    int rc = text_field(q->reason, REASON_BYTES_MAX, false, false, "the reason", e);
    if (rc != 0) {
        return rc;
    }
    _Alignas(16) uint8_t buf[GRANT_ROW_ARENA_BYTES];
    struct arena a;
    arena_on(&a, buf, sizeof buf);
    Appeal__GrantRow *g;
    rc = grant_get(c->s, c->t, c->self->idx, q->key.data, &a, &g);
    if (rc == APL_ENOTFOUND) {
        return err_set(e, rc, "this node never granted that key");
    }
    if (rc != 0) {
        return rc;
    }
    if (g->revoked_seq != 0) {
        return err_set(e, APL_EREFUSED, "that key is already revoked (log seq %llu)",
                       (unsigned long long)g->revoked_seq);
    }
    if (c->actor != NULL && memcmp(q->key.data, c->actor, KEY_PK_BYTES) == 0) {
        return err_set(e, APL_EREFUSED, "a key cannot revoke itself; use another admin key");
    }
    Appeal__KeyRevoked kr = APPEAL__KEY_REVOKED__INIT;
    kr.key = q->key;
    kr.reason = q->reason;
    Appeal__Body b = APPEAL__BODY__INIT;
    b.event_case = APPEAL__BODY__EVENT_KEY_REVOKED;
    b.key_revoked = &kr;
    return commit_record(c, &b, out);
}

int appeal_rotate(struct appeal_ctx *c, const uint8_t new_pk[KEY_PK_BYTES],
                  struct appeal_result *out, struct errbuf *e) {
    if (c->self->head_seq == 0) {
        return err_set(e, APL_EINVAL, "the log is empty: nothing to rotate");
    }
    Appeal__KeyRotated kr = APPEAL__KEY_ROTATED__INIT;
    kr.new_key.data = (uint8_t *)new_pk;
    kr.new_key.len = KEY_PK_BYTES;
    kr.from_seq = c->self->head_seq + 2; /* this record is the old key's last */
    Appeal__Body b = APPEAL__BODY__INIT;
    b.event_case = APPEAL__BODY__EVENT_KEY_ROTATED;
    b.key_rotated = &kr;
    int rc = commit_record(c, &b, out);
    if (rc != 0) {
        return rc;
    }
    uint8_t k[16];
    memcpy(k, "rotation", 8);
    be64_put(k + 8, out->seq);
    return store_put(c->t, c->s, DB_META, k, sizeof k, out->record, out->record_len, 0);
}

int appeal_heartbeat(struct appeal_ctx *c, struct errbuf *e) {
    (void)e;
    Appeal__Heartbeat h = APPEAL__HEARTBEAT__INIT;
    h.records_total = c->self->head_seq;
    Appeal__Body b = APPEAL__BODY__INIT;
    b.event_case = APPEAL__BODY__EVENT_HEARTBEAT;
    b.heartbeat = &h;
    return commit_record(c, &b, NULL);
}

static int open_at(struct store *s, MDB_txn *t, const Appeal__LogRef *at, struct arena *a,
                   struct record *r) {
    MDB_val env;
    int rc = chain_get(s, t, at->origin_idx, at->seq, &env);
    if (rc == 0 && rec_decode(env.mv_data, env.mv_size, a, r, NULL) != 0) {
        rc = APL_ECORRUPT;
    }
    return rc;
}

/* The Sealed plaintext of the record at `at` (a filing or an acceptance):
 * under this node's data key, else, for an office's appeal read by its
 * region's node, the copy boxed to this node (`region_sealed`, which sets
 * `*via_region`). APL_EAUTH when neither opens. */
static int open_sealed(const struct node_keys *k, const char *number, const struct record *r,
                       uint8_t **pt, size_t *ptlen, bool *via_region) {
    const ProtobufCBinaryData *ct = NULL, *boxed = NULL;
    if (r->body->event_case == APPEAL__BODY__EVENT_FILED) {
        ct = &r->body->filed->sealed;
        boxed = &r->body->filed->region_sealed;
    } else if (r->body->event_case == APPEAL__BODY__EVENT_ACCEPTED) {
        ct = &r->body->accepted->sealed;
        boxed = &r->body->accepted->region_sealed;
    }
    *via_region = false;
    if (ct == NULL || ct->len == 0) {
        return 0;
    }
    int rc = open_data(k, number, ct->data, ct->len, pt, ptlen);
    if (rc == APL_EAUTH && boxed->len > 0) {
        rc = open_box(k, boxed->data, boxed->len, pt, ptlen);
        *via_region = rc == 0;
    }
    return rc;
}

static int open_answer(struct store *s, MDB_txn *t, const struct node_keys *k,
                       const Appeal__AppealRow *row, struct arena *a, char **answer_text) {
    struct record r;
    int rc = open_at(s, t, row->answer_at, a, &r);
    uint8_t *pt = NULL;
    size_t ptlen = 0;
    if (rc == 0 && r.body->event_case == APPEAL__BODY__EVENT_ANSWERED) {
        const ProtobufCBinaryData *ct = &r.body->answered->sealed_text;
        rc = open_data(k, row->number, ct->data, ct->len, &pt, &ptlen);
    }
    if (rc == 0 && pt != NULL) {
        char *txt = a->allocator.alloc(a, ptlen + 1);
        if (txt != NULL) {
            memcpy(txt, pt, ptlen);
            txt[ptlen] = '\0';
            *answer_text = txt;
        }
        util_wipe_free(pt, ptlen);
    }
    return rc;
}

int appeal_open_personal(struct store *s, MDB_txn *t, const struct node_keys *k,
                         const Appeal__AppealRow *row, struct arena *a, Appeal__Sealed **out,
                         char **answer_text) {
    *out = NULL;
    if (answer_text != NULL) {
        *answer_text = NULL;
    }
    struct record r;
    int rc = 0;
    bool via_region = false;
    if (row->sealed_at != NULL) {
        rc = open_at(s, t, row->sealed_at, a, &r);
        uint8_t *pt = NULL;
        size_t ptlen = 0;
        if (rc == 0) {
            rc = open_sealed(k, row->number, &r, &pt, &ptlen, &via_region);
        }
        if (pt != NULL) {
            *out = (Appeal__Sealed *)pb_unpack(&appeal__sealed__descriptor, pt, ptlen, a, 4, NULL);
            rc = *out != NULL && strcmp((*out)->number, row->number) == 0 ? 0 : APL_EAUTH;
            util_wipe_free(pt, ptlen);
        }
    }
    /* The answer is sealed under the office's data key alone: its region
     * reads the applicant's data, not the answer. */
    if (rc == 0 && answer_text != NULL && row->answer_at != NULL && !via_region) {
        rc = open_answer(s, t, k, row, a, answer_text);
    }
    return rc;
}

/* A boxed reason's plaintext is the associated data, a zero byte and the
 * text; the prefix binds it to its appeal and event. */
static int open_boxed_reason(const struct node_keys *k, const char *ad,
                             const ProtobufCBinaryData *boxed, struct arena *a, char **text) {
    uint8_t *pt = NULL;
    size_t ptlen = 0;
    int rc = open_box(k, boxed->data, boxed->len, &pt, &ptlen);
    if (rc != 0) {
        return rc;
    }
    size_t adlen = strlen(ad) + 1;
    rc = ptlen >= adlen && memcmp(pt, ad, adlen) == 0 ? 0 : APL_EAUTH;
    if (rc == 0) {
        *text = a->allocator.alloc(a, ptlen - adlen + 1);
        rc = *text != NULL ? 0 : APL_ENOMEM;
    }
    if (rc == 0) {
        memcpy(*text, pt + adlen, ptlen - adlen);
        (*text)[ptlen - adlen] = '\0';
    }
    util_wipe_free(pt, ptlen);
    return rc;
}

int appeal_open_reason(const struct node_keys *k, const Appeal__Body *b, struct arena *a,
                       char **text) {
    struct rec_reason r;
    *text = "";
    if (!rec_reason_of(b, &r)) {
        return 0;
    }
    if (r.clear[0] != '\0' || r.sealed->len == 0) {
        *text = (char *)r.clear; /* a legacy clear reason, or none */
        return 0;
    }
    char ad[REASON_AD_BYTES];
    rec_reason_ad(b, &r, ad);
    if (r.data_key_id->len == DATA_KEY_ID_BYTES &&
        memcmp(r.data_key_id->data, k->data_key_id, DATA_KEY_ID_BYTES) == 0) {
        uint8_t *pt = NULL;
        size_t ptlen = 0;
        int rc = open_data_ad(k, ad, r.sealed->data, r.sealed->len, &pt, &ptlen);
        if (rc != 0) {
            return rc;
        }
        *text = a->allocator.alloc(a, ptlen + 1);
        if (*text != NULL) {
            memcpy(*text, pt, ptlen);
            (*text)[ptlen] = '\0';
        }
        util_wipe_free(pt, ptlen);
        return *text != NULL ? 0 : APL_ENOMEM;
    }
    if (r.boxed != NULL && r.boxed->len != 0) {
        return open_boxed_reason(k, ad, r.boxed, a, text);
    }
    return APL_EAUTH;
}

/* ---- complaint to the higher body ---- */

enum { IIN_DIGITS = 12 }; /* an IIN or BIN */

/* The checks of appeal_complain that need the original's row: the code,
 * the owner, the answer, the higher body and the window. `to` receives
 * the higher body. */
static int complain_check(struct appeal_ctx *c, const struct appeal_complaint *q,
                          const Appeal__AppealRow *row, char to[RULES_JURIS_BYTES],
                          struct errbuf *e) {
    int rc = applicant_owns(c, q->code, row, "complain", e);
    if (rc != 0) {
        return rc;
    }
    if ((row->status != APPEAL__STATUS__STATUS_ANSWERED &&
         row->status != APPEAL__STATUS__STATUS_CLOSED) ||
        row->answered_day == 0) {
        return err_set(e, APL_ETRANSITION,
                       "%s is %s: a complaint to the higher body is about an answer", row->number,
                       status_name(row->status));
    }
    ruleset_higher_body(c->rules, c->self->juris, to);
    if (to[0] == '\0') {
        return err_set(e, APL_EREFUSED,
                       "%s has no higher body in this system: a complaint about its answer goes "
                       "to court",
                       c->self->juris);
    }
    int32_t last = day_add_months(row->answered_day, c->rules->complaint_window_months);
    if (today(c) > last) {
        char d[11];
        day_format(last, d);
        return err_set(e, APL_EREFUSED,
                       "a complaint is filed within %d months of the answer; the window closed "
                       "on %s. To restore the term, file a complaint with the reason the term "
                       "was missed at %s (a registrar registers it with --learned and "
                       "--late-reason)",
                       c->rules->complaint_window_months, d, to);
    }
    return text_field(q->description, BODY_TEXT_BYTES_MAX, false, true, "the description", e);
}

/* The complaint's sealed applicant data: the original's, opened with the
 * data key, with the complaint's number, subject and text. */
static int complain_seal(struct appeal_ctx *c, const Appeal__AppealRow *row,
                         const struct appeal_complaint *q, const char *number, uint8_t **sealed,
                         size_t *len, char iin[IIN_DIGITS + 1]) {
    struct arena a;
    if (arena_init(&a, RECORD_ARENA_BYTES) != 0) {
        return APL_ENOMEM;
    }
    Appeal__Sealed *sd = NULL;
    int rc = appeal_open_personal(c->s, c->t, c->keys, row, &a, &sd, NULL);
    if (rc == 0 && sd == NULL) {
        rc = APL_ECORRUPT; /* an answered appeal with a code always has applicant data */
    }
    char subject[SUBJECT_BYTES_MAX + 1];
    snprintf(subject, sizeof subject, "Complaint about the answer to %s", row->number);
    if (rc == 0) {
        snprintf(iin, IIN_DIGITS + 1, "%s", sd->iin);
        Appeal__Sealed s = *sd;
        s.number = (char *)number;
        s.subject = subject;
        s.body = (char *)q->description;
        uint8_t *pt;
        size_t ptlen;
        rc = pb_pack(&s.base, &pt, &ptlen);
        if (rc == 0) {
            rc = seal_data(c->keys, number, pt, ptlen, sealed, len);
            util_wipe_free(pt, ptlen);
        }
    }
    util_wipe(a.base, a.used_bytes);
    arena_fini(&a);
    return rc;
}

/* The complaint's filing (version 0 of a new number), committed. */
static int complain_file(struct appeal_ctx *c, const Appeal__AppealRow *row,
                         const struct appeal_complaint *q, struct appeal_result *out,
                         struct errbuf *e) {
    int32_t day = today(c);
    int rc = next_number(c, day, out->number, sizeof out->number, e);
    if (rc != 0) {
        return rc;
    }
    Appeal__AppealFiled f = APPEAL__APPEAL_FILED__INIT;
    f.number = out->number;
    f.type = APPEAL__APPEAL_TYPE__TYPE_COMPLAINT;
    f.category = row->category;
    f.jurisdiction = c->self->juris;
    f.registered_ms = c->now_ms;
    f.registered_day = day;
    f.deadline_day = cal_add_working(&c->rules->cal, day, c->rules->term_working_days);
    f.learned_day = row->answered_day;
    f.lang = row->lang[0] != '\0' ? row->lang : (char *)c->rules->default_lang;
    f.complaint_of = row->number;
    f.repeat_of = "";
    uint8_t access_hash[ACCESS_HASH_BYTES], tag[APPLICANT_TAG_BYTES];
    access_code_new(out->access_code, access_hash);
    set_bytes(&f.access_hash, access_hash, sizeof access_hash);
    char iin[IIN_DIGITS + 1] = "";
    uint8_t *sealed = NULL;
    size_t sealed_len = 0;
    rc = complain_seal(c, row, q, out->number, &sealed, &sealed_len, iin);
    if (rc != 0) {
        return err_set(e, rc, "cannot open the applicant's data of %s", row->number);
    }
    set_bytes(&f.sealed, sealed, sealed_len);
    set_bytes(&f.data_key_id, (uint8_t *)c->keys->data_key_id, DATA_KEY_ID_BYTES);
    if (iin[0] != '\0') {
        applicant_tag(c->keys, iin, tag);
        set_bytes(&f.applicant_tag, tag, sizeof tag);
    }
    util_wipe(iin, sizeof iin);
    Appeal__Body b = APPEAL__BODY__INIT;
    b.event_case = APPEAL__BODY__EVENT_FILED;
    b.filed = &f;
    rc = commit_record(c, &b, out);
    free(sealed);
    free(out->record); /* the forward's record is the answer's */
    out->record = NULL;
    return rc;
}

int appeal_complain(struct appeal_ctx *c, const struct appeal_complaint *q,
                    struct appeal_result *out, struct errbuf *e) {
    _Alignas(16) uint8_t rowbuf[16384];
    struct arena a;
    arena_on(&a, rowbuf, sizeof rowbuf);
    Appeal__AppealRow *row;
    int rc = applicant_row(c, q->number, &a, &row, e);
    char to[RULES_JURIS_BYTES];
    if (rc != 0 || (rc = complain_check(c, q, row, to, e)) != 0) {
        return rc;
    }
    uint8_t box[BOX_PK_BYTES];
    if (c->box_key_of == NULL || c->box_key_of(c->box_key_arg, to, box) != 0) {
        return err_set(e, APL_ENOTFOUND, "no node of %s (the higher body) in the cluster file", to);
    }
    memset(out, 0, sizeof *out);
    if ((rc = complain_file(c, row, q, out, e)) != 0) {
        return rc;
    }
    char reason[REASON_BYTES_MAX + 1];
    snprintf(reason, sizeof reason, "complaint about the answer to %s: to the higher body",
             row->number);
    Appeal__ActRequest fw = APPEAL__ACT_REQUEST__INIT;
    fw.number = out->number;
    fw.action = APPEAL__ACTION__ACTION_FORWARD;
    fw.to_jurisdiction = to;
    fw.reason = reason;
    struct appeal_result r2;
    rc = appeal_act(c, &fw, &r2, e);
    if (rc == 0) {
        out->seq = r2.seq;
        out->record = r2.record;
        out->record_len = r2.record_len;
        out->type = r2.type;
        out->status = r2.status;
        out->deadline_day = r2.deadline_day;
        out->registered_ms = r2.registered_ms;
    }
    return rc;
}
