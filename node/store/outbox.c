/* outbox.c: notifications written with the record that causes them (outbox.h). */
#include "outbox.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "appeal.h"
#include "record.h"
#include "state.h"

enum {
    OUTBOX_ARENA_BYTES = 256 * 1024, /* the appeal row, its sealed data, a reason */
};

static const uint8_t next_id_key[] = "outbox_next";

size_t outbox_key(const char *number, uint64_t id, uint8_t out[OUTBOX_KEY_BYTES_MAX]) {
    size_t nl = strnlen(number, NUMBER_BYTES_MAX);
    memcpy(out, number, nl);
    out[nl] = 0;
    be64_put(out + nl + 1, id);
    return nl + 1 + 8;
}

static bool email_like(const char *s) {
    const char *at = strchr(s, '@');
    return at != NULL && at != s && strchr(at + 1, '@') == NULL && strchr(at + 1, '.') != NULL &&
           at[1] != '.' && s[strlen(s) - 1] != '.';
}

/* A phone number: + and 7..15 digits, or digits only; spaces, dashes and
 * brackets inside are dropped. Writes "+DIGITS" into `out`. */
static bool phone_like(const char *s, char *out, size_t cap) {
    size_t n = 0, digits = 0;
    if (cap < OUTBOX_PHONE_DIGITS_MAX + 2) {
        return false;
    }
    out[n++] = '+';
    for (size_t i = 0; s[i] != '\0'; i++) {
        if (isdigit((unsigned char)s[i])) {
            if (++digits > OUTBOX_PHONE_DIGITS_MAX) {
                return false;
            }
            out[n++] = s[i];
        } else if (!(s[i] == '+' && i == 0) && strchr("-() ", s[i]) == NULL) {
            return false;
        }
    }
    out[n] = '\0';
    return digits >= OUTBOX_PHONE_DIGITS_MIN;
}

size_t outbox_contacts(const char *contacts, const char *channel[OUTBOX_CONTACTS_MAX],
                       char addr[OUTBOX_CONTACTS_MAX][OUTBOX_ADDRESS_BYTES_MAX + 1]) {
    size_t n = 0;
    const char *p = contacts != NULL ? contacts : "";
    p += strspn(p, ",; \t\r\n");
    while (*p != '\0' && n < OUTBOX_CONTACTS_MAX) {
        size_t len = strcspn(p, ",;\r\n");
        char tok[OUTBOX_ADDRESS_BYTES_MAX + 1];
        size_t tl = len;
        while (tl > 0 && (p[tl - 1] == ' ' || p[tl - 1] == '\t')) {
            tl--; /* the item without its trailing blanks */
        }
        if (tl > 0 && tl <= OUTBOX_ADDRESS_BYTES_MAX) {
            memcpy(tok, p, tl);
            tok[tl] = '\0';
            const char *ch = NULL;
            if (email_like(tok)) {
                ch = strpbrk(tok, " \t") == NULL ? "email" : NULL;
                memcpy(addr[n], tok, tl + 1);
            } else if (phone_like(tok, addr[n], sizeof addr[n])) {
                ch = "sms";
            }
            bool dup = false;
            for (size_t i = 0; ch != NULL && i < n; i++) {
                dup = dup || strcmp(addr[i], addr[n]) == 0;
            }
            if (ch != NULL && !dup) {
                channel[n++] = ch;
            }
        }
        p += len;
        p += strspn(p, ",; \t\r\n"); /* and the next one's leading blanks */
    }
    return n;
}

/* What the applicant hears of `b`, into `row`; false for other records. */
static bool describe(const Appeal__Body *b, Appeal__OutboxRow *row) {
    switch (b->event_case) {
    case APPEAL__BODY__EVENT_FILED:
        row->deadline_day = b->filed->deadline_day;
        row->type = b->filed->type;
        return true;
    case APPEAL__BODY__EVENT_FORWARDED:
        row->to_jurisdiction = b->forwarded->to_jurisdiction;
        return true;
    case APPEAL__BODY__EVENT_ACCEPTED:
        row->deadline_day = b->accepted->deadline_day;
        return true;
    case APPEAL__BODY__EVENT_EXTENDED:
        row->deadline_day = b->extended->until_day;
        return true;
    case APPEAL__BODY__EVENT_ANSWERED:
        row->outcome = b->answered->outcome;
        return true;
    case APPEAL__BODY__EVENT_CLOSED:
        return true;
    case APPEAL__BODY__EVENT_REOPENED:
        row->deadline_day = b->reopened->deadline_day;
        return true;
    default:
        return false;
    }
}

static int next_id(struct store *s, MDB_txn *t, uint64_t *id) {
    MDB_val v;
    int rc = store_get(t, s, DB_META, next_id_key, sizeof next_id_key - 1, &v);
    if (rc == APL_ENOTFOUND) {
        *id = 1;
        rc = 0;
    } else if (rc == 0 && v.mv_size != 8) {
        rc = APL_ECORRUPT;
    } else if (rc == 0) {
        *id = be64_get(v.mv_data);
    }
    if (rc == 0) {
        uint8_t nb[8];
        be64_put(nb, *id + 1);
        rc = store_put(t, s, DB_META, next_id_key, sizeof next_id_key - 1, nb, 8, 0);
    }
    return rc;
}

static int add_row(struct store *s, MDB_txn *t, Appeal__OutboxRow *row, size_t index) {
    int rc = next_id(s, t, &row->id);
    char idem[NUMBER_BYTES_MAX + 48];
    snprintf(idem, sizeof idem, "%s.v%u.%s.%zu", row->number, row->version, row->channel, index);
    row->idem_key = idem;
    uint8_t key[OUTBOX_KEY_BYTES_MAX];
    size_t kl = outbox_key(row->number, row->id, key);
    if (rc == 0) {
        rc = store_put_msg(t, s, DB_OUTBOX, key, kl, &row->base);
    }
    if (rc == 0) {
        rc = store_put(t, s, DB_OUTBOX_DUE, key + kl - 8, 8, key, kl, 0);
    }
    return rc;
}

int outbox_note(struct store *s, MDB_txn *t, const struct node_keys *k, const char *juris,
                const Appeal__Body *b, int64_t now_ms) {
    const char *number;
    uint32_t version;
    Appeal__OutboxRow row = APPEAL__OUTBOX_ROW__INIT;
    if (!rec_appeal_ref(b, &number, &version) || !describe(b, &row)) {
        return 0;
    }
    struct arena a;
    int rc = arena_init(&a, OUTBOX_ARENA_BYTES);
    if (rc != 0) {
        return rc;
    }
    Appeal__AppealRow *ar = NULL;
    Appeal__Sealed *personal = NULL;
    rc = state_appeal(s, t, number, &a, &ar);
    if (rc == 0) {
        rc = appeal_open_personal(s, t, k, ar, &a, &personal, NULL);
    }
    char *reason = NULL;
    if (rc == 0 && b->event_case == APPEAL__BODY__EVENT_EXTENDED &&
        appeal_open_reason(k, b, &a, &reason) != 0) {
        reason = NULL; /* the notice goes out without the reason */
    }
    const char *channel[OUTBOX_CONTACTS_MAX];
    char addr[OUTBOX_CONTACTS_MAX][OUTBOX_ADDRESS_BYTES_MAX + 1];
    size_t n = rc == 0 && personal != NULL ? outbox_contacts(personal->contacts, channel, addr) : 0;
    row.number = (char *)number;
    row.version = version;
    row.event = (char *)rec_kind(b);
    row.lang = ar != NULL ? ar->lang : "";
    row.type = ar != NULL && row.type == 0 ? ar->type : row.type;
    row.jurisdiction = (char *)juris;
    row.created_ms = now_ms;
    row.next_ms = now_ms;
    row.reason = reason != NULL ? reason : "";
    for (size_t i = 0; rc == 0 && i < n; i++) {
        row.channel = (char *)channel[i];
        row.address = addr[i];
        rc = add_row(s, t, &row, i);
    }
    arena_fini(&a);
    return rc;
}

int outbox_settle(struct store *s, MDB_txn *t, const Appeal__OutboxRow *row) {
    uint8_t key[OUTBOX_KEY_BYTES_MAX];
    size_t kl = outbox_key(row->number, row->id, key);
    Appeal__OutboxRow r = *row;
    int rc = 0;
    if (r.state != APPEAL__OUTBOX_STATE__OUTBOX_QUEUED) {
        /* Settled: the contact and the reason are not kept past their use. */
        r.address = "";
        r.reason = "";
        rc = store_del(t, s, DB_OUTBOX_DUE, key + kl - 8, 8, NULL, 0);
        rc = rc == APL_ENOTFOUND ? 0 : rc;
    }
    if (rc == 0) {
        rc = store_put_msg(t, s, DB_OUTBOX, key, kl, &r.base);
    }
    return rc;
}

/* Appends `row` to the array `*rows` of `*n` (capacity `*cap`) in `a`. */
static int list_push(struct arena *a, Appeal__OutboxRow ***rows, size_t *n, size_t *cap,
                     Appeal__OutboxRow *row) {
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        Appeal__OutboxRow **grown = arena_new(a, *cap * sizeof *grown);
        if (grown == NULL) {
            return APL_ETOOBIG;
        }
        if (*n) {
            memcpy(grown, *rows, *n * sizeof *grown);
        }
        *rows = grown;
    }
    row->address = (char *)"";
    row->reason = (char *)"";
    (*rows)[(*n)++] = row;
    return 0;
}

int outbox_list(struct store *s, MDB_txn *t, const char *number, bool failed_only, struct arena *a,
                Appeal__OutboxRow ***rows, size_t *n, bool *more) {
    *rows = NULL;
    *n = 0;
    *more = false;
    MDB_cursor *c;
    int rc = store_rc(mdb_cursor_open(t, s->dbi[DB_OUTBOX], &c));
    if (rc != 0) {
        return rc;
    }
    /* Keys are number \0 id: one appeal's rows are the range of its prefix. */
    size_t plen = number != NULL ? strlen(number) + 1 : 0;
    MDB_val k = {.mv_size = plen, .mv_data = (void *)number}, v;
    size_t cap = 0;
    int m = plen ? mdb_cursor_get(c, &k, &v, MDB_SET_RANGE) : mdb_cursor_get(c, &k, &v, MDB_FIRST);
    for (; m == 0 && rc == 0; m = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (plen && (k.mv_size != plen + 8 || memcmp(k.mv_data, number, plen) != 0)) {
            break;
        }
        Appeal__OutboxRow *row = (Appeal__OutboxRow *)pb_unpack(&appeal__outbox_row__descriptor,
                                                                v.mv_data, v.mv_size, a, 16, NULL);
        if (row == NULL) {
            rc = APL_ECORRUPT;
        } else if (failed_only && row->state != APPEAL__OUTBOX_STATE__OUTBOX_FAILED) {
            continue;
        } else if (*n == OUTBOX_LIST_MAX) {
            *more = true;
            break;
        } else {
            rc = list_push(a, rows, n, &cap, row);
        }
    }
    mdb_cursor_close(c);
    return rc != 0 ? rc : (m == 0 || m == MDB_NOTFOUND ? 0 : store_rc(m));
}
