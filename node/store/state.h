/*
 * state.h: the derived tables, computed from records.
 *
 * state_apply() folds one record into the appeal state, the indexes and the
 * counters, inside the caller's write transaction, so a record and
 * everything derived from it commit together. It uses nothing but the
 * record and the tables (no clock, no rules file): the origin decided the
 * deadlines when it signed. Every node therefore derives the same state
 * from the same records, and `appeal-node rebuild` reproduces it.
 *
 * Records of one appeal may arrive out of order (from different origins,
 * through different peers). An event whose predecessor (version - 1) has
 * not been applied is parked in `pending` and applied when it arrives. An
 * event that the lifecycle does not allow, or that comes from a
 * jurisdiction that may not act on the appeal, is kept in the log (it is
 * signed history) but changes no state; it is logged as ignored.
 */
#ifndef APPEAL_STATE_H
#define APPEAL_STATE_H

#include <stdbool.h>
#include <stdint.h>

#include "applicants.h"
#include "chain.h"
#include "pbdecode.h"
#include "store.h"
#include "store.pb-c.h"

struct agg_batch;

struct state {
    struct store *s;
    struct arena rows;           /* appeal rows, reset per event */
    struct arena parked;         /* parked records, reset per record */
    struct arena folding;        /* the fold's decoded record, reset per record */
    uint64_t ignored;            /* events that changed nothing */
    bool fold_pending;           /* records may wait for the fold (set at init, by ingest) */
    struct agg_batch *batch;     /* between state_batch_begin and _end: `sums` */
    struct agg_batch *sums;      /* the batch's memory, kept for the next one */
    struct app_stage applicants; /* the applicants index's staged entries (applicants.h) */
};

int state_init(struct state *st, struct store *s);
void state_fini(struct state *st);

/* Applies record `seq` of origin `o` (already in the log). */
int state_apply(struct state *st, MDB_txn *t, const struct origin_state *o, uint64_t seq,
                const Appeal__Body *b);

/* A batch of many records in one transaction: aggregates are summed in
 * memory and written once by state_batch_end(), which must run before the
 * transaction commits; with `t` NULL (the transaction is being aborted)
 * it only forgets them. */
int state_batch_begin(struct state *st);
int state_batch_end(struct state *st, MDB_txn *t);

/* Reads an appeal row; APL_ENOTFOUND if unknown. Decoded into `a`. */
int state_appeal(struct store *s, MDB_txn *t, const char *number, struct arena *a,
                 Appeal__AppealRow **row);

/* Last number given in `year` by `juris` (0 if none). */
int state_regno(struct store *s, MDB_txn *t, const char *juris, int year, uint32_t *last);

/* Key of the applicants table: tag | category. `out` holds 16 + 31 bytes. */
size_t applicant_key(uint8_t *out, const uint8_t tag[APPLICANT_TAG_BYTES], const char *category);

/* ---- the fold behind the log (docs/architecture.md, "The fold") ----
 *
 * Replicated records of other origins are appended to the log by the
 * ingest and folded into the derived tables later, by the writer when it
 * has nothing queued. How far each origin is folded is a mark in `meta`
 * ("fold" | origin index (4, BE) -> seq (8, BE)), written in the same
 * transaction as what it covers, so a crash resumes the fold where its
 * last commit left it. No mark: folded up to the origin's head. Grants
 * (origin-level records) are applied by the ingest itself: the revoked
 * actor check of the next record needs them. */

/* Seq up to which origin `idx`, whose head is `head`, is folded. */
int state_folded(struct store *s, MDB_txn *t, uint32_t idx, uint64_t head, uint64_t *folded);
/* Before appending records of origin `idx` (head `head`) without folding
 * them: sets its mark to `head` unless it has one already. */
int state_fold_defer(struct store *s, MDB_txn *t, uint32_t idx, uint64_t head);
/* Folds up to `budget` records of the origins behind, and moves their
 * marks, in `t`; `*folded` the records folded, `*bytes` their log bytes. `*more` whether any
 * origin is still behind after this. */
int state_fold_step(struct state *st, MDB_txn *t, uint64_t budget, uint64_t *folded,
                    uint64_t *bytes, bool *more);
/* Whether any origin is behind (any mark). */
int state_fold_behind(struct store *s, MDB_txn *t, bool *behind);

/* Recomputes every derived table from the log alone, checking each chain
 * link on the way. Progress and problems are logged. */
int state_rebuild(struct store *s, struct errbuf *e);

/* In by_status, the status byte that marks the receiving jurisdiction's
 * queue of appeals forwarded to it. */
enum { STATUS_KEY_INCOMING = 0xFF };

#endif
