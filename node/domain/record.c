#include "record.h"
#include "access.h"

#include <ctype.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "roles.h"
#include "sigahead.h"
#include "bounds.h"
#include "i18n.h"

enum { RECORD_REPEATED_MAX = 16 };

int rec_sign_ahead(const Appeal__Body *body, const uint8_t sk[KEY_SK_BYTES], struct sigahead *ahead,
                   uint8_t **out, size_t *len) {
    uint8_t *bb = NULL;
    size_t blen = 0;
    int rc = pb_pack(&body->base, &bb, &blen);
    if (rc != 0) {
        return rc;
    }
    uint8_t sig[SIG_BYTES];
    sigahead_sign(ahead, sig, bb, blen, sk);
    Appeal__Envelope env = APPEAL__ENVELOPE__INIT;
    env.body.data = bb;
    env.body.len = blen;
    env.sig.data = sig;
    env.sig.len = SIG_BYTES;
    rc = pb_pack(&env.base, out, len);
    free(bb);
    return rc;
}

int rec_sign(const Appeal__Body *body, const uint8_t sk[KEY_SK_BYTES], uint8_t **out, size_t *len) {
    return rec_sign_ahead(body, sk, NULL, out, len);
}

bool rec_verify_sig(const struct record *r, const uint8_t pk[KEY_PK_BYTES]) {
    return r->env->sig.len == SIG_BYTES &&
           crypto_sign_verify_detached(r->env->sig.data, r->env->body.data, r->env->body.len, pk) ==
               0;
}

void rec_hash(const uint8_t *bytes, size_t len, uint8_t out[HASH_BYTES]) {
    hash_bytes(bytes, len, out);
}

/* A region's code: two capitals, optionally a dash and 1..3 capitals or
 * digits ("KZ", "KZ-75", "KZ-ALA"); `n` bytes of `s`. */
static bool region_valid(const char *s, size_t n) {
    if (n < 2 || !isupper((unsigned char)s[0]) || !isupper((unsigned char)s[1])) {
        return false;
    }
    if (n == 2) {
        return true;
    }
    if (s[2] != '-' || n < 4 || n > 6) {
        return false;
    }
    for (size_t i = 3; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isupper(c) && !isdigit(c)) {
            return false;
        }
    }
    return true;
}

bool juris_valid(const char *s) {
    size_t n = strnlen(s, JURIS_CHARS_MAX + 1);
    const char *dot = memchr(s, '.', n);
    if (dot == NULL) {
        return n <= JURIS_CHARS_MAX && region_valid(s, n);
    }
    /* An office: its region's code, '.', its 9-digit KATO code (not all
     * zeros), at most JURIS_CHARS_MAX bytes in all. */
    size_t rl = (size_t)(dot - s), ol = n - rl - 1;
    return n <= JURIS_CHARS_MAX && region_valid(s, rl) && ol == KATO_DIGITS &&
           strspn(dot + 1, "0123456789") == KATO_DIGITS && strspn(dot + 1, "0") < KATO_DIGITS;
}

void juris_region(const char *juris, char out[JURIS_CHARS_MAX + 1]) {
    size_t n = strcspn(juris, ".");
    if (n > JURIS_CHARS_MAX) {
        n = JURIS_CHARS_MAX;
    }
    memcpy(out, juris, n);
    out[n] = '\0';
}

bool juris_is_office(const char *juris) {
    return strchr(juris, '.') != NULL;
}

bool juris_under(const char *juris, const char *region) {
    size_t rl = strlen(region);
    return strncmp(juris, region, rl) == 0 && (juris[rl] == '\0' || juris[rl] == '.');
}

void number_juris(const char *number, char out[16]) {
    /* The jurisdiction is everything before "-YYYY-N". */
    size_t n = strlen(number);
    size_t cut = 0, dashes = 0;
    for (size_t i = n; i > 0; i--) {
        if (number[i - 1] == '-' && ++dashes == 2) {
            cut = i - 1;
            break;
        }
    }
    if (cut >= 16) {
        cut = 0;
    }
    memcpy(out, number, cut);
    out[cut] = '\0';
}

bool number_valid(const char *s) {
    size_t n = strlen(s);
    if (n < 2 + 1 + 4 + 1 + 6 || n > 31) {
        return false;
    }
    char juris[16];
    number_juris(s, juris);
    size_t jl = strlen(juris);
    if (jl == 0 || !juris_valid(juris)) {
        return false;
    }
    const char *p = s + jl;
    if (p[0] != '-' || p[5] != '-') {
        return false;
    }
    for (int i = 1; i <= 4; i++) {
        if (!isdigit((unsigned char)p[i])) {
            return false;
        }
    }
    size_t digits = strlen(p + 6);
    return digits >= 6 && digits <= 8 && strspn(p + 6, "0123456789") == digits;
}

static int text(const char *s, size_t max, bool multiline, const char *what, struct errbuf *e) {
    if (strlen(s) > max) {
        return err_set(e, APL_ETOOBIG, "record field %s longer than %zu bytes", what, max);
    }
    const char *why = pb_text_problem(s, multiline);
    if (why != NULL) {
        return err_set(e, APL_EINVAL, "record field %s holds %s", what, why);
    }
    return 0;
}

static int bytes_len(const ProtobufCBinaryData *b, size_t min, size_t max, const char *what,
                     struct errbuf *e) {
    if (b->len < min || b->len > max) {
        return err_set(e, APL_EINVAL, "record field %s has %zu bytes (allowed %zu..%zu)", what,
                       b->len, min, max);
    }
    return 0;
}

/* An optional fixed-size field: absent, or exactly `n` bytes. */
static int key_len(const ProtobufCBinaryData *b, size_t n, const char *what, struct errbuf *e) {
    if (b->len != 0 && b->len != n) {
        return err_set(e, APL_EINVAL, "record field %s has %zu bytes (0 or %zu)", what, b->len, n);
    }
    return 0;
}

static int appeal_ref(const char *number, struct errbuf *e) {
    if (!number_valid(number)) {
        return err_set(e, APL_EINVAL, "record names a malformed appeal number");
    }
    return 0;
}

bool category_valid(const char *s) {
    size_t n = strlen(s);
    return n >= 1 && n <= CATEGORY_BYTES_MAX && strspn(s, "0123456789.") == n;
}

/* Replicated categories get the classifier's syntax, as local ones do: a
 * member cannot plant a spreadsheet formula or a comma in exports. */
static int check_category(const char *category, struct errbuf *e) {
    if (!category_valid(category)) {
        return err_set(e, APL_EINVAL,
                       "record field category is not a classifier code (1..%d digits and dots)",
                       CATEGORY_BYTES_MAX);
    }
    return 0;
}

/* AppealFiled.complaint_of, when set: a number, not the filing's own, on
 * a complaint only. */
static int check_complaint_of(const Appeal__AppealFiled *f, struct errbuf *e) {
    if (!number_valid(f->complaint_of)) {
        return err_set(e, APL_EINVAL, "record has a malformed complaint_of");
    }
    if (f->type != APPEAL__APPEAL_TYPE__TYPE_COMPLAINT) {
        return err_set(e, APL_EINVAL, "record has complaint_of on an appeal not of type complaint");
    }
    if (strcmp(f->complaint_of, f->number) == 0) {
        return err_set(e, APL_EINVAL, "record has complaint_of naming the appeal itself");
    }
    return 0;
}

static int check_filed(const Appeal__AppealFiled *f, struct errbuf *e) {
    int rc = appeal_ref(f->number, e);
    if (rc == 0 && (f->type <= 0 || f->type > APPEAL__APPEAL_TYPE__TYPE_FEEDBACK)) {
        rc = err_set(e, APL_EINVAL, "record has an unknown appeal type %d", f->type);
    }
    if (rc == 0 && f->version != 0) {
        rc = err_set(e, APL_EINVAL, "a filing has version 0");
    }
    if (rc == 0) {
        rc = check_category(f->category, e);
    }
    if (rc == 0 && !juris_valid(f->jurisdiction)) {
        rc = err_set(e, APL_EINVAL, "record has a malformed jurisdiction");
    }
    if (rc == 0 && f->repeat_of[0] != '\0' && !number_valid(f->repeat_of)) {
        rc = err_set(e, APL_EINVAL, "record has a malformed repeat_of");
    }
    if (rc == 0) {
        rc = text(f->late_reason, REASON_BYTES_MAX, false, "late_reason", e);
    }
    if (rc == 0) {
        rc = bytes_len(&f->sealed, 0, SEALED_BYTES_MAX, "sealed", e);
    }
    if (rc == 0) {
        rc = bytes_len(&f->region_sealed, 0, SEALED_BYTES_MAX, "region_sealed", e);
    }
    if (rc == 0 && f->region_sealed.len > 0 && !juris_is_office(f->jurisdiction)) {
        rc = err_set(e, APL_EINVAL, "record has region_sealed on a region's filing");
    }
    if (rc == 0) {
        rc = key_len(&f->applicant_tag, APPLICANT_TAG_BYTES, "applicant_tag", e);
    }
    if (rc == 0) {
        rc = key_len(&f->data_key_id, DATA_KEY_ID_BYTES, "data_key_id", e);
    }
    if (rc == 0 && f->lang[0] != '\0' && !i18n_lang_valid(f->lang)) {
        rc = err_set(e, APL_EINVAL, "record field lang is not kk, ru or en");
    }
    if (rc == 0) {
        rc = key_len(&f->access_hash, ACCESS_HASH_BYTES, "access_hash", e);
    }
    if (rc == 0 && f->complaint_of[0] != '\0') {
        rc = check_complaint_of(f, e);
    }
    return rc;
}

static int check_event(const Appeal__Body *b, struct errbuf *e) {
    switch (b->event_case) {
    case APPEAL__BODY__EVENT_GENESIS:
        if (!juris_valid(b->genesis->jurisdiction)) {
            return err_set(e, APL_EINVAL, "genesis has a malformed jurisdiction");
        }
        return bytes_len(&b->genesis->box_key, BOX_PK_BYTES, BOX_PK_BYTES, "box_key", e);
    case APPEAL__BODY__EVENT_FILED:
        return check_filed(b->filed, e);
    case APPEAL__BODY__EVENT_ASSIGNED:
        return appeal_ref(b->assigned->number, e) ||
               text(b->assigned->assignee, ASSIGNEE_BYTES_MAX, false, "assignee", e);
    case APPEAL__BODY__EVENT_EXTENDED:
        return appeal_ref(b->extended->number, e) ||
               text(b->extended->reason, REASON_BYTES_MAX, false, "reason", e);
    case APPEAL__BODY__EVENT_FORWARDED:
        if (!juris_valid(b->forwarded->to_jurisdiction)) {
            return err_set(e, APL_EINVAL, "forward names a malformed jurisdiction");
        }
        return appeal_ref(b->forwarded->number, e) ||
               text(b->forwarded->reason, REASON_BYTES_MAX, false, "reason", e) ||
               bytes_len(&b->forwarded->sealed, 0, SEALED_BYTES_MAX, "sealed", e);
    case APPEAL__BODY__EVENT_ACCEPTED:
        return appeal_ref(b->accepted->number, e) ||
               bytes_len(&b->accepted->sealed, 0, SEALED_BYTES_MAX, "sealed", e) ||
               bytes_len(&b->accepted->region_sealed, 0, SEALED_BYTES_MAX, "region_sealed", e) ||
               key_len(&b->accepted->applicant_tag, APPLICANT_TAG_BYTES, "tag", e) ||
               key_len(&b->accepted->data_key_id, DATA_KEY_ID_BYTES, "data_key_id", e);
    case APPEAL__BODY__EVENT_RETURNED:
        return appeal_ref(b->returned->number, e) ||
               text(b->returned->reason, REASON_BYTES_MAX, false, "reason", e);
    case APPEAL__BODY__EVENT_ANSWERED:
        if (b->answered->outcome <= 0 ||
            b->answered->outcome > APPEAL__OUTCOME__OUTCOME_EXPLAINED) {
            return err_set(e, APL_EINVAL, "answer has an unknown outcome");
        }
        return appeal_ref(b->answered->number, e) ||
               bytes_len(&b->answered->sealed_text, 0, SEALED_BYTES_MAX, "sealed_text", e) ||
               key_len(&b->answered->data_key_id, DATA_KEY_ID_BYTES, "data_key_id", e);
    case APPEAL__BODY__EVENT_CLOSED:
        return appeal_ref(b->closed->number, e);
    case APPEAL__BODY__EVENT_REOPENED:
        return appeal_ref(b->reopened->number, e) ||
               text(b->reopened->reason, REASON_BYTES_MAX, false, "reason", e);
    case APPEAL__BODY__EVENT_WITHDRAWN:
        return appeal_ref(b->withdrawn->number, e) ||
               text(b->withdrawn->reason, REASON_BYTES_MAX, false, "reason", e);
    case APPEAL__BODY__EVENT_RATED:
        if (b->rated->rating <= 0 || b->rated->rating > APPEAL__RATING__RATING_NOT_SATISFIED) {
            return err_set(e, APL_EINVAL, "rating is neither satisfied nor not satisfied");
        }
        return appeal_ref(b->rated->number, e) ||
               bytes_len(&b->rated->sealed_comment, 0, SEALED_BYTES_MAX, "sealed_comment", e) ||
               key_len(&b->rated->data_key_id, DATA_KEY_ID_BYTES, "data_key_id", e);
    case APPEAL__BODY__EVENT_HEARTBEAT:
        return 0;
    case APPEAL__BODY__EVENT_KEY_GRANTED:
        if (b->key_granted->jurisdiction[0] != '\0' && !juris_valid(b->key_granted->jurisdiction)) {
            return err_set(e, APL_EINVAL, "grant names a malformed jurisdiction");
        }
        if (role_parse(b->key_granted->role) == 0) {
            return err_set(e, APL_EINVAL, "grant names no known role");
        }
        if (b->key_granted->rate_per_minute != 0 &&
            role_parse(b->key_granted->role) != ROLE_CHANNEL) {
            return err_set(e, APL_EINVAL, "only a channel's grant carries a rate");
        }
        return bytes_len(&b->key_granted->key, KEY_PK_BYTES, KEY_PK_BYTES, "key", e) ||
               text(b->key_granted->label, LABEL_BYTES_MAX, false, "label", e);
    case APPEAL__BODY__EVENT_KEY_REVOKED:
        return bytes_len(&b->key_revoked->key, KEY_PK_BYTES, KEY_PK_BYTES, "key", e) ||
               text(b->key_revoked->reason, REASON_BYTES_MAX, false, "reason", e);
    case APPEAL__BODY__EVENT_KEY_ROTATED:
        if (b->key_rotated->from_seq != b->seq + 1) {
            return err_set(e, APL_EINVAL, "a rotated key must sign from the next record on");
        }
        return bytes_len(&b->key_rotated->new_key, KEY_PK_BYTES, KEY_PK_BYTES, "new_key", e) ||
               key_len(&b->key_rotated->new_box_key, BOX_PK_BYTES, "new_box_key", e);
    default:
        return err_set(e, APL_EINVAL, "record carries no known event");
    }
}

bool rec_reason_of(const Appeal__Body *b, struct rec_reason *out) {
    memset(out, 0, sizeof *out);
#define REASON(f, clear_field, sealed_field, key_field)                                            \
    out->number = b->f->number, out->version = b->f->version, out->clear = b->f->clear_field,      \
    out->sealed = &b->f->sealed_field, out->data_key_id = &b->f->key_field
    switch (b->event_case) {
    case APPEAL__BODY__EVENT_FILED:
        REASON(filed, late_reason, sealed_late_reason, data_key_id);
        break;
    case APPEAL__BODY__EVENT_EXTENDED:
        REASON(extended, reason, sealed_reason, data_key_id);
        break;
    case APPEAL__BODY__EVENT_FORWARDED:
        REASON(forwarded, reason, sealed_reason, data_key_id);
        out->boxed = &b->forwarded->boxed_reason;
        break;
    case APPEAL__BODY__EVENT_RETURNED:
        REASON(returned, reason, sealed_reason, data_key_id);
        out->boxed = &b->returned->boxed_reason;
        break;
    case APPEAL__BODY__EVENT_REOPENED:
        REASON(reopened, reason, sealed_reason, data_key_id);
        break;
    case APPEAL__BODY__EVENT_WITHDRAWN:
        REASON(withdrawn, reason, sealed_reason, data_key_id);
        break;
    default:
        return false;
    }
#undef REASON
    return true;
}

void rec_reason_ad(const Appeal__Body *b, const struct rec_reason *r, char out[REASON_AD_BYTES]) {
    snprintf(out, REASON_AD_BYTES, "%s:%s:%u", r->number, rec_kind(b), (unsigned)r->version);
}

/* The sealed reason fields (docs/record-format.md 7.6). Their contents only
 * the writer and the other node of a forward or return can open; every
 * node checks their shape, and that a reason is not both clear and sealed. */
static int check_reason(const Appeal__Body *b, struct errbuf *e) {
    struct rec_reason r;
    if (!rec_reason_of(b, &r)) {
        return 0;
    }
    bool sealed = r.sealed->len != 0;
    if (sealed && r.clear[0] != '\0') {
        return err_set(e, APL_EINVAL, "record holds a reason both in clear and sealed");
    }
    int rc = 0;
    if (sealed) {
        rc = bytes_len(r.sealed, SEAL_OVERHEAD_BYTES + 1, SEALED_REASON_BYTES_MAX, "sealed_reason",
                       e);
    }
    if (rc == 0 && sealed && r.data_key_id->len != DATA_KEY_ID_BYTES) {
        rc = err_set(e, APL_EINVAL, "record field data_key_id must name the key of sealed_reason");
    }
    /* AppealFiled.data_key_id also names the key of `sealed`: checked there. */
    if (rc == 0 && !sealed && b->event_case != APPEAL__BODY__EVENT_FILED &&
        r.data_key_id->len != 0) {
        rc = err_set(e, APL_EINVAL, "record field data_key_id is set without a sealed_reason");
    }
    if (rc == 0 && r.boxed != NULL && (r.boxed->len != 0) != sealed) {
        rc = err_set(e, APL_EINVAL,
                     "record has a boxed_reason without a sealed_reason or "
                     "the reverse");
    }
    if (rc == 0 && r.boxed != NULL && sealed) {
        rc = bytes_len(r.boxed, BOX_SEAL_OVERHEAD_BYTES + 1, BOXED_REASON_BYTES_MAX, "boxed_reason",
                       e);
    }
    return rc;
}

int rec_decode(const uint8_t *bytes, size_t len, struct arena *a, struct record *out,
               struct errbuf *e) {
    if (len > RECORD_BYTES_MAX) {
        return err_set(e, APL_ETOOBIG, "record of %zu bytes exceeds %d", len, RECORD_BYTES_MAX);
    }
    memset(out, 0, sizeof *out);
    out->bytes = bytes;
    out->len = len;
    out->env = (Appeal__Envelope *)pb_unpack(&appeal__envelope__descriptor, bytes, len, a,
                                             RECORD_REPEATED_MAX, e);
    if (out->env == NULL) {
        return e != NULL && e->code != 0 ? e->code : APL_EINVAL;
    }
    if (out->env->sig.len != SIG_BYTES) {
        return err_set(e, APL_EINVAL, "record signature is not %d bytes", SIG_BYTES);
    }
    out->body = (Appeal__Body *)pb_unpack(&appeal__body__descriptor, out->env->body.data,
                                          out->env->body.len, a, RECORD_REPEATED_MAX, e);
    if (out->body == NULL) {
        return e != NULL && e->code != 0 ? e->code : APL_EINVAL;
    }
    const Appeal__Body *b = out->body;
    int rc = bytes_len(&b->origin, KEY_PK_BYTES, KEY_PK_BYTES, "origin", e);
    if (rc == 0) {
        rc = bytes_len(&b->prev, HASH_BYTES, HASH_BYTES, "prev", e);
    }
    if (rc == 0 && b->actor.len != 0) {
        rc = bytes_len(&b->actor, KEY_PK_BYTES, KEY_PK_BYTES, "actor", e);
    }
    if (rc == 0 && b->seq == 0) {
        rc = err_set(e, APL_EINVAL, "record seq is 0");
    }
    if (rc == 0) {
        rc = check_event(b, e);
    }
    if (rc == 0) {
        rc = check_reason(b, e);
    }
    return rc != 0 ? (rc < 0 ? rc : APL_EINVAL) : 0;
}

bool rec_appeal_ref(const Appeal__Body *b, const char **number, uint32_t *version) {
#define REF(field)                                                                                 \
    do {                                                                                           \
        *number = b->field->number;                                                                \
        *version = b->field->version;                                                              \
        return true;                                                                               \
    } while (0)
    switch (b->event_case) {
    case APPEAL__BODY__EVENT_FILED:
        REF(filed);
    case APPEAL__BODY__EVENT_ASSIGNED:
        REF(assigned);
    case APPEAL__BODY__EVENT_EXTENDED:
        REF(extended);
    case APPEAL__BODY__EVENT_FORWARDED:
        REF(forwarded);
    case APPEAL__BODY__EVENT_ACCEPTED:
        REF(accepted);
    case APPEAL__BODY__EVENT_RETURNED:
        REF(returned);
    case APPEAL__BODY__EVENT_ANSWERED:
        REF(answered);
    case APPEAL__BODY__EVENT_CLOSED:
        REF(closed);
    case APPEAL__BODY__EVENT_REOPENED:
        REF(reopened);
    case APPEAL__BODY__EVENT_WITHDRAWN:
        REF(withdrawn);
    case APPEAL__BODY__EVENT_RATED:
        REF(rated);
    default:
        return false;
    }
#undef REF
}

const char *rec_kind(const Appeal__Body *b) {
    switch (b->event_case) {
    case APPEAL__BODY__EVENT_GENESIS:
        return "genesis";
    case APPEAL__BODY__EVENT_FILED:
        return "filed";
    case APPEAL__BODY__EVENT_ASSIGNED:
        return "assigned";
    case APPEAL__BODY__EVENT_EXTENDED:
        return "extended";
    case APPEAL__BODY__EVENT_FORWARDED:
        return "forwarded";
    case APPEAL__BODY__EVENT_ACCEPTED:
        return "accepted";
    case APPEAL__BODY__EVENT_RETURNED:
        return "returned";
    case APPEAL__BODY__EVENT_ANSWERED:
        return "answered";
    case APPEAL__BODY__EVENT_CLOSED:
        return "closed";
    case APPEAL__BODY__EVENT_REOPENED:
        return "reopened";
    case APPEAL__BODY__EVENT_WITHDRAWN:
        return "withdrawn";
    case APPEAL__BODY__EVENT_RATED:
        return "rated";
    case APPEAL__BODY__EVENT_HEARTBEAT:
        return "heartbeat";
    case APPEAL__BODY__EVENT_KEY_GRANTED:
        return "key_granted";
    case APPEAL__BODY__EVENT_KEY_REVOKED:
        return "key_revoked";
    case APPEAL__BODY__EVENT_KEY_ROTATED:
        return "key_rotated";
    default:
        return "unknown";
    }
}

static bool wire_varint(const uint8_t **p, const uint8_t *end, uint64_t *out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
            *out = v;
            return true;
        }
    }
    return false;
}

/* Walks one message's fields; calls `fn` for each (number, wire type,
 * value or bytes). Returns false on malformed input. */
typedef void (*field_fn)(void *arg, uint32_t num, uint32_t wire, uint64_t v, const uint8_t *b,
                         size_t blen);

static bool wire_walk(const uint8_t *p, const uint8_t *end, field_fn fn, void *arg) {
    while (p < end) {
        uint64_t key, v = 0;
        if (!wire_varint(&p, end, &key) || key >> 3 == 0 || key >> 3 > 0x1fffffff) {
            return false;
        }
        uint32_t wire = (uint32_t)(key & 7), num = (uint32_t)(key >> 3);
        const uint8_t *b = NULL;
        switch (wire) {
        case 0:
            if (!wire_varint(&p, end, &v)) {
                return false;
            }
            break;
        case 1:
        case 5:
            if (end - p < (wire == 1 ? 8 : 4)) {
                return false;
            }
            p += wire == 1 ? 8 : 4;
            break;
        case 2:
            if (!wire_varint(&p, end, &v) || v > (uint64_t)(end - p)) {
                return false;
            }
            b = p;
            p += v;
            break;
        default:
            return false;
        }
        fn(arg, num, wire, v, b, b ? (size_t)v : 0);
    }
    return true;
}

static void env_field(void *arg, uint32_t num, uint32_t wire, uint64_t v, const uint8_t *b,
                      size_t blen) {
    (void)v;
    struct rec_peek *o = arg;
    if (num == 1 && wire == 2) {
        o->body = b;
        o->body_len = blen;
    }
}

static void body_field(void *arg, uint32_t num, uint32_t wire, uint64_t v, const uint8_t *b,
                       size_t blen) {
    struct rec_peek *o = arg;
    if (num == 1 && wire == 2) {
        o->origin = blen == KEY_PK_BYTES ? b : NULL;
    } else if (num == 2 && wire == 0) {
        o->seq = v;
    } else if (num == 3 && wire == 2) {
        o->prev = blen == HASH_BYTES ? b : NULL;
    } else if (num == 5 && wire == 2) {
        o->actor = blen == KEY_PK_BYTES ? b : NULL;
    } else if (num >= 10 && num <= 25 && wire == 2) {
        o->event = num;
    }
}

int rec_peek(const uint8_t *bytes, size_t len, struct rec_peek *out) {
    memset(out, 0, sizeof *out);
    if (len == 0 || bytes == NULL) {
        return APL_EINVAL;
    }
    if (len > RECORD_BYTES_MAX || !wire_walk(bytes, bytes + len, env_field, out) ||
        out->body == NULL || !wire_walk(out->body, out->body + out->body_len, body_field, out) ||
        out->origin == NULL || out->prev == NULL || out->seq == 0 || out->event == 0) {
        return APL_EINVAL;
    }
    return 0;
}
