/*
 * appeal.h: what a registrar or an official asks of the node, checked
 * against the rules and the appeal's state, and turned into a signed
 * record. Runs on the writer thread inside its write transaction.
 *
 * Each function first checks everything (the request, the rules, the
 * lifecycle) and writes nothing if anything fails: `e` then carries the
 * code and a sentence for the client. Only then does it sign the record,
 * append it to the node's own log and fold it into the derived state.
 */
#ifndef APPEAL_APPEAL_H
#define APPEAL_APPEAL_H

#include <stdint.h>

#include "access.h"
#include "api.pb-c.h"
#include "keys.h"
#include "chain.h"
#include "ruleset.h"
#include "state.h"
#include "store.h"

struct appeal_ctx {
    struct store *s;
    MDB_txn *t;
    const struct ruleset *rules;
    const struct node_keys *keys;
    struct origin_state *self; /* this node's origin, head advanced on append */
    struct state *st;
    int64_t now_ms;
    const uint8_t *actor; /* public key of the acting official (KEY_PK_BYTES) */
    /* Box key of another jurisdiction's node, for forwarding; NULL when the
     * node knows no federation. Returns APL_ENOTFOUND if unknown. */
    int (*box_key_of)(void *arg, const char *juris, uint8_t out[BOX_PK_BYTES]);
    void *box_key_arg;
    /* Notifications configured: own appeal records add their outbox rows
     * in this transaction (outbox.h). */
    bool notify;
    /* An office whose clock is off its region's (engine.clock_off_ms, read
     * in this write): non-zero refuses filings and actions. */
    int64_t clock_off_ms;
    const char *clock_ref;
};

/* The outcome of a successful request: what the receipt shows. */
struct appeal_result {
    char number[NUMBER_BYTES_MAX + 1];
    int type;
    int status;
    int32_t deadline_day;
    int64_t registered_ms;
    char repeat_of[NUMBER_BYTES_MAX + 1];
    bool urgent;
    uint64_t seq;
    uint8_t *record; /* the signed envelope, malloc'd: caller frees */
    size_t record_len;
    char access_code[ACCESS_CODE_CHARS + 1]; /* filings: the applicant's code, told once */
};

int appeal_file(struct appeal_ctx *c, const Appeal__FileRequest *req, struct appeal_result *out,
                struct errbuf *e);
int appeal_act(struct appeal_ctx *c, const Appeal__ActRequest *req, struct appeal_result *out,
               struct errbuf *e);

/* The applicant's rating of the answer (docs/open311.md "Rating the
 * answer"), asked with the number and the access code. */
enum {
    RATING_COMMENT_BYTES_MAX = 2000, /* the applicant's optional comment, UTF-8 */
};
struct appeal_rating {
    const char *number;
    const char *code;    /* the access code as the applicant typed it */
    int rating;          /* Appeal__Rating: satisfied or not satisfied */
    const char *comment; /* "" for none; sealed under the data key like the answer */
};

/* Checks, in the write transaction, in this order: the number and the
 * code (APL_EAUTH "wrong number or access code" for an unknown number and
 * a wrong code alike), that this node handles the appeal (APL_ENOTOWNER),
 * the rating (APL_EINVAL), that it is answered or closed (APL_ETRANSITION),
 * that it is not rated yet (APL_EEXIST: one rating per appeal); then signs
 * a Rated record. Nothing is written on any refusal. */
int appeal_rate(struct appeal_ctx *c, const struct appeal_rating *q, struct appeal_result *out,
                struct errbuf *e);

/* The applicant's complaint about the answer to the higher body
 * (docs/open311.md "Complaint to the higher body", decisions/0017). */
struct appeal_complaint {
    const char *number;      /* the original appeal */
    const char *code;        /* its access code as the applicant typed it */
    const char *description; /* the complaint's text, "" for none */
};

/* Checks, in the write transaction, in this order: the number and the
 * code (APL_EAUTH, as appeal_rate), that this node handles the original
 * (APL_ENOTOWNER), that it is answered or closed (APL_ETRANSITION), that
 * this jurisdiction has a higher body (rules higher_body; APL_EREFUSED),
 * that today is within complaint_window_months of the answer day
 * (APL_EREFUSED naming the day the window closed), the description
 * (APL_EINVAL/APL_ETOOBIG) and that the cluster file knows the higher
 * body's node (APL_ENOTFOUND). Then, in this transaction: an AppealFiled
 * of type complaint with complaint_of and the original's applicant data
 * (re-sealed under the data key, under the new number), and a Forwarded
 * to the higher body with the data sealed to its box key. `out` holds the
 * new number, its access code and the Forwarded record. Nothing is
 * written on any refusal. */
int appeal_complain(struct appeal_ctx *c, const struct appeal_complaint *q,
                    struct appeal_result *out, struct errbuf *e);

/* The node's genesis record (seq 1). */
int appeal_genesis(struct appeal_ctx *c, const char *juris, struct errbuf *e);
/* Grants an official's key a role (KeyGranted), or revokes a key
 * (KeyRevoked); c->actor is the administrator asking. */
int appeal_grant(struct appeal_ctx *c, const Appeal__GrantRequest *q, struct appeal_result *out,
                 struct errbuf *e);
int appeal_revoke(struct appeal_ctx *c, const Appeal__RevokeRequest *q, struct appeal_result *out,
                  struct errbuf *e);
/* KeyRotated: from the next record on, `new_pk` signs. The record itself
 * is the old key's last; it is kept in meta ("rotation" + seq) as proof
 * of the new key for peers. */
int appeal_rotate(struct appeal_ctx *c, const uint8_t new_pk[KEY_PK_BYTES],
                  struct appeal_result *out, struct errbuf *e);
/* A heartbeat record. */
int appeal_heartbeat(struct appeal_ctx *c, struct errbuf *e);

/* Opens the sealed applicant data of `row` (owner only). */
int appeal_open_personal(struct store *s, MDB_txn *t, const struct node_keys *k,
                         const Appeal__AppealRow *row, struct arena *a, Appeal__Sealed **out,
                         char **answer_text);

/* The text of the official's reason an event carries, as this node may
 * show it (docs/record-format.md 7.6): a legacy clear reason as it stands;
 * a sealed one opened with this node's data key (it wrote it) or box key
 * (it received the forward or the return); "" when there is none.
 * APL_EAUTH: a reason exists that this node cannot open. */
int appeal_open_reason(const struct node_keys *k, const Appeal__Body *b, struct arena *a,
                       char **text);

#endif
