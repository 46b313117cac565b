/*
 * store.h: the node's LMDB environment and its sub-databases.
 *
 * One environment in DATA/db, opened by one process. Tables:
 *
 *   meta        string -> bytes     schema version, node settings
 *   origins     origin pk (32) -> OriginRow   high-water mark and head hash
 *   origin_idx  idx (4, BE) -> origin pk      the local short name of an origin
 *   log         idx (4, BE) | seq (8, BE) -> exact envelope bytes
 *   appeals     number -> AppealRow           current state of each appeal
 *   events      number -> version (4) | idx | seq (dupsort)   the appeal's history
 *   pending     number | version (4, BE) -> idx|seq   events parked until
 *               their predecessor arrives (replication order)
 *   by_status   owner \0 status (1) number -> ""      lists
 *   by_deadline owner \0 deadline (4, BE) number -> "" open appeals, overdue
 *   agg         grain|period|dims -> AggCell    aggregates without scans (agg.h)
 *   due         deadline|registered|dims -> n    open appeals, for overdue counts
 *   regno       jurisdiction \0 year (4, BE) -> last number (4)
 *   applicants  tag (16) | category -> number  latest appeal of an applicant on
 *               an issue (repeated appeals)
 *   forks       origin | seq -> evidence      conflicting records
 *   grants      key id -> grant               officials' roles
 *   outbox      number \0 id (8, BE) -> OutboxRow   notifications (outbox.h);
 *               not derived: rebuild keeps it
 *   outbox_due  id (8, BE) -> outbox key          the unsettled notifications
 *
 * `log` (with `origins`/`origin_idx` naming its origins) is the source of
 * truth; every other table is derived and rebuilt from it by
 * state_rebuild(). Writes come from one writer thread (writer.h) in group
 * commits; reads use short read-only transactions from any thread
 * (MDB_NOTLS).
 *
 * Durability: commits are synchronous (no MDB_NOSYNC): when
 * store_commit() returns 0 the transaction is on disk, except with
 * `defer_meta_sync`, where it is on disk after store_sync().
 *
 * Growth: a write that hits MDB_MAP_FULL returns APL_EMAPFULL; the writer
 * aborts, calls store_grow() and retries. store_grow() waits for readers
 * to leave (a rwlock that every transaction holds shared) and fails with
 * APL_EFULL at the configured maximum.
 */
#ifndef APPEAL_STORE_H
#define APPEAL_STORE_H

#include <lmdb.h>
#include <protobuf-c/protobuf-c.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "bounds.h"
#include "err.h"
#include "pbdecode.h"

enum store_db {
    DB_META,
    DB_ORIGINS,
    DB_ORIGIN_IDX,
    DB_LOG,
    DB_APPEALS,
    DB_EVENTS,
    DB_PENDING,
    DB_BY_STATUS,
    DB_BY_DEADLINE,
    DB_AGG,
    DB_DUE,
    DB_REGNO,
    DB_APPLICANTS,
    DB_FORKS,
    DB_GRANTS,
    DB_OUTBOX,     /* not derived: notifications (outbox.h) */
    DB_OUTBOX_DUE, /* not derived: the unsettled ones, in order */
    DB_COUNT
};

enum {
    STORE_SCHEMA_VERSION = 4,
    /* Schema 2 lacks the aggregate rollups of 3, and 3 the office fields of
     * the aggregate keys of 4 (agg.h): opened read-write, an older schema
     * from this one on is marked `derived_stale` and node_open rebuilds it. */
    STORE_SCHEMA_REBUILDABLE = 2,
    STORE_READERS_MAX = 256,
    NUMBER_BYTES_MAX = 32, /* registration numbers */
    JURIS_BYTES_MAX = 15,  /* "KZ-75.751210000" (JURIS_CHARS_MAX) */
};

/* Record validation (node/domain/record.c) accepts a number of at most 31
 * bytes (number_valid) and a jurisdiction of at most JURIS_CHARS_MAX
 * ("KZ-75.751210000", juris_valid): the keys built from them fit these. */
_Static_assert(NUMBER_BYTES_MAX >= 31 && (int)JURIS_BYTES_MAX >= (int)JURIS_CHARS_MAX,
               "every valid number and jurisdiction fits the store's keys");

struct store_opts {
    uint64_t map_bytes;     /* initial map size */
    uint64_t map_max_bytes; /* growth stops here: APL_EFULL */
    bool read_only;
    /* MDB_NOMETASYNC: commits fsync the data pages, and the meta page is
     * made durable by the next commit or store_sync(). Only for a node
     * whose writer syncs before it answers (writer.h). */
    bool defer_meta_sync;
};

struct store {
    MDB_env *env;
    MDB_dbi dbi[DB_COUNT];
    pthread_rwlock_t resize_lock;
    uint64_t map_bytes;
    uint64_t map_max_bytes;
    bool read_only;
    bool derived_stale; /* an older schema: rebuild, then store_mark_current() */
};

/* Records that the derived tables are of STORE_SCHEMA_VERSION now. */
int store_mark_current(struct store *s);

/* Opens (creating if needed) DIR/db. Clears stale reader slots. */
int store_open(struct store *s, const char *dir, const struct store_opts *o, struct errbuf *e);
void store_close(struct store *s);

/* Read-only transaction; pair with store_rd_end(). */
int store_rd_begin(struct store *s, MDB_txn **txn);
void store_rd_end(struct store *s, MDB_txn *txn);
/* Write transaction; pair with store_commit() or store_abort(). Only the
 * writer thread (or offline commands) write. */
int store_wr_begin(struct store *s, MDB_txn **txn);
int store_commit(struct store *s, MDB_txn *txn);
void store_abort(struct store *s, MDB_txn *txn);
/* Makes every commit so far durable (fsync). */
int store_sync(struct store *s);
/* Makes the map at least `bytes` (up to the maximum); no transaction of
 * this process may be open. */
int store_reserve(struct store *s, uint64_t bytes);
/* Doubles the map (at least +64 MiB) up to the maximum. */
int store_grow(struct store *s);
/* Clears stale reader slots; returns how many were cleared. */
int store_reader_check(struct store *s);

/* LMDB return code to APL_*: NOTFOUND, MAP_FULL -> EMAPFULL, else EDB. */
int store_rc(int mdb_rc);

int store_get(MDB_txn *t, const struct store *s, enum store_db db, const void *key, size_t klen,
              MDB_val *val);
int store_put(MDB_txn *t, const struct store *s, enum store_db db, const void *key, size_t klen,
              const void *val, size_t vlen, unsigned flags);
int store_del(MDB_txn *t, const struct store *s, enum store_db db, const void *key, size_t klen,
              const void *val, size_t vlen);

/* Protobuf rows: decoded into `a` (checked with pb_guard) / packed. */
int store_get_msg(MDB_txn *t, const struct store *s, enum store_db db, const void *key, size_t klen,
                  const ProtobufCMessageDescriptor *desc, struct arena *a, ProtobufCMessage **out);
int store_put_msg(MDB_txn *t, const struct store *s, enum store_db db, const void *key, size_t klen,
                  const ProtobufCMessage *m);

/* Empties a table (rebuild). */
int store_drop(MDB_txn *t, const struct store *s, enum store_db db);
/* Visits, in key order, the rows of `db` whose key is `klen` bytes long and
 * starts with the `plen` bytes of `prefix`: fn(arg, key, value) returns 0
 * to go on, STORE_EACH_DELETE to delete the row and go on, anything else
 * to stop (returned). */
enum { STORE_EACH_DELETE = 2 };
int store_each_prefixed(MDB_txn *t, const struct store *s, enum store_db db, const void *prefix,
                        size_t plen, size_t klen,
                        int (*fn)(void *arg, const MDB_val *k, const MDB_val *v), void *arg);

/* Big-endian encoders for keys that sort numerically. */
void be32_put(uint8_t *p, uint32_t v);
void be64_put(uint8_t *p, uint64_t v);
uint32_t be32_get(const uint8_t *p);
uint64_t be64_get(const uint8_t *p);

/* Names of the tables, for dumps and stats. */
const char *store_db_name(enum store_db db);
bool store_db_derived(enum store_db db);

/* The bytes in use as of the last commit, without the resize lock: only
 * for the writer thread (the only one that remaps), e.g. inside its
 * transaction. */
int store_used_bytes(struct store *s, uint64_t *used_bytes);

/* Map size and the bytes in use (last page * page size). */
int store_usage(struct store *s, uint64_t *map_bytes, uint64_t *used_bytes, uint32_t *readers);

#endif
