/*
 * survey.h: live federated queries (docs/queries.md).
 *
 * Every node answers live queries on its `query` address (RESPONDENT):
 * a signed query from a node of the cluster file, answered for the appeals
 * this node owns, from its own store. A node asked for a live query
 * surveys every peer at once (SURVEYOR, one survey at a time per socket:
 * nng 1.5 loses answers with concurrent survey contexts), waits up to the
 * query's deadline, merges the answers, and for the jurisdictions that
 * stayed silent uses its replica, marking them as such in `sources`.
 */
#ifndef APPEAL_SURVEY_H
#define APPEAL_SURVEY_H

#include <lmdb.h>

#include "api.pb-c.h"
#include "clusterfile.h"
#include "err.h"
#include "pbdecode.h"

struct engine;
struct repl;
struct survey;
struct tls;

struct survey_opts {
    struct repl *repl;    /* NULL: not replicating (no recovery, no status) */
    struct tls *tls;      /* NULL: no TLS files */
    int64_t peer_skew_ms; /* drills only */
    int utc_offset_min;   /* the jurisdiction's: "today" for overdue counts */
};

int survey_start(struct survey **out, struct engine *g, struct cluster *c,
                 const struct survey_opts *o, struct errbuf *e);
void survey_stop(struct survey *s);

/* Runs a live query; the answer lives in `a`. Blocks up to the query's
 * deadline: call it off nng's threads (api.c queues it). */
int survey_run(struct survey *s, const Appeal__QueryRequest *q, struct arena *a,
               Appeal__QueryResult **out, struct errbuf *e);

/* Shutdown: the running survey and any later one stop waiting for peers
 * at once and fail with APL_EUNAVAIL. Thread-safe. */
void survey_cancel(struct survey *s);

/* Fills result->sources for a replica answer from the cluster status. */
int survey_sources_replica(struct engine *g, struct repl *repl, MDB_txn *t, Appeal__QueryResult *r,
                           struct arena *a);

#endif
