#include "store.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "assert.h"
#include "olog.h"
#include "util.h"

/* LMDB's longest key (MDB_MAXKEYSIZE, its default build): every key the
 * node writes is built from bounded parts (record validation). */
enum { LMDB_KEY_BYTES_MAX = 511 };

struct db_spec {
    const char *name;
    unsigned flags;
    bool derived;
};

static const struct db_spec db_specs[DB_COUNT] = {
    [DB_META] = {"meta", 0, false},
    [DB_ORIGINS] = {"origins", 0, false},
    [DB_ORIGIN_IDX] = {"origin_idx", 0, false},
    [DB_LOG] = {"log", 0, false},
    [DB_APPEALS] = {"appeals", 0, true},
    [DB_EVENTS] = {"events", MDB_DUPSORT | MDB_DUPFIXED, true},
    [DB_PENDING] = {"pending", 0, true},
    [DB_BY_STATUS] = {"by_status", 0, true},
    [DB_BY_DEADLINE] = {"by_deadline", 0, true},
    [DB_AGG] = {"agg", 0, true},
    [DB_DUE] = {"due", 0, true},
    [DB_REGNO] = {"regno", 0, true},
    [DB_APPLICANTS] = {"applicants", 0, true},
    [DB_FORKS] = {"forks", 0, false},
    [DB_GRANTS] = {"grants", 0, true},
    [DB_OUTBOX] = {"outbox", 0, false},
    [DB_OUTBOX_DUE] = {"outbox_due", 0, false},
};

const char *store_db_name(enum store_db db) {
    ASSERT(db >= 0 && db < DB_COUNT);
    return db_specs[db].name;
}

bool store_db_derived(enum store_db db) {
    return db_specs[db].derived;
}

int store_rc(int mdb_rc) {
    switch (mdb_rc) {
    case MDB_SUCCESS:
        return 0;
    case MDB_NOTFOUND:
        return APL_ENOTFOUND;
    case MDB_MAP_FULL:
        return APL_EMAPFULL;
    case MDB_KEYEXIST:
        return APL_EEXIST;
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
        return APL_ECORRUPT;
    case ENOMEM:
        return APL_ENOMEM;
    case ENOSPC:
    case EIO:
        return APL_EIO;
    default:
        return APL_EDB;
    }
}

int store_mark_current(struct store *s) {
    MDB_txn *t;
    int rc = store_wr_begin(s, &t);
    if (rc != 0) {
        return rc;
    }
    uint8_t ver[4];
    be32_put(ver, STORE_SCHEMA_VERSION);
    rc = store_put(t, s, DB_META, "schema", 6, ver, 4, 0);
    if (rc == 0) {
        rc = store_commit(s, t);
        s->derived_stale = rc != 0;
    } else {
        store_abort(s, t);
    }
    return rc;
}

static int open_dbs(struct store *s, struct errbuf *e) {
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, s->read_only ? MDB_RDONLY : 0, &txn);
    if (rc != 0) {
        return err_set(e, store_rc(rc), "cannot begin LMDB transaction: %s", mdb_strerror(rc));
    }
    for (int i = 0; i < DB_COUNT; i++) {
        unsigned flags = db_specs[i].flags | (s->read_only ? 0u : (unsigned)MDB_CREATE);
        rc = mdb_dbi_open(txn, db_specs[i].name, flags, &s->dbi[i]);
        if (rc != 0) {
            mdb_txn_abort(txn);
            return err_set(e, store_rc(rc), "cannot open table %s: %s", db_specs[i].name,
                           mdb_strerror(rc));
        }
    }
    if (s->read_only) {
        /* Handles opened in a transaction live on only if it commits. */
        rc = mdb_txn_commit(txn);
        return rc == 0 ? 0 : err_set(e, store_rc(rc), "cannot open tables: %s", mdb_strerror(rc));
    }
    MDB_val k = {6, "schema"}, v;
    rc = mdb_get(txn, s->dbi[DB_META], &k, &v);
    if (rc == MDB_NOTFOUND) {
        uint8_t ver[4];
        be32_put(ver, STORE_SCHEMA_VERSION);
        v.mv_size = 4;
        v.mv_data = ver;
        rc = mdb_put(txn, s->dbi[DB_META], &k, &v, 0);
    } else if (rc == 0 && v.mv_size == 4 && be32_get(v.mv_data) >= STORE_SCHEMA_REBUILDABLE &&
               be32_get(v.mv_data) < STORE_SCHEMA_VERSION) {
        s->derived_stale = true; /* the log is the same; the derived tables are older */
    } else if (rc == 0 && (v.mv_size != 4 || be32_get(v.mv_data) != STORE_SCHEMA_VERSION)) {
        mdb_txn_abort(txn);
        return err_set(e, APL_ECORRUPT, "database schema is not version %d", STORE_SCHEMA_VERSION);
    }
    if (rc == 0) {
        rc = mdb_txn_commit(txn);
    } else {
        mdb_txn_abort(txn);
    }
    if (rc != 0) {
        return err_set(e, store_rc(rc), "cannot initialise the database: %s", mdb_strerror(rc));
    }
    return 0;
}

int store_open(struct store *s, const char *dir, const struct store_opts *o, struct errbuf *e) {
    memset(s, 0, sizeof *s);
    char path[4096];
    snprintf(path, sizeof path, "%s/db", dir);
    s->read_only = o->read_only;
    if (!o->read_only && util_mkdir(path, 0700) != 0) {
        return err_set(e, APL_EIO, "cannot create %s", path);
    }
    int rc = mdb_env_create(&s->env);
    if (rc != 0) {
        return err_set(e, store_rc(rc), "mdb_env_create: %s", mdb_strerror(rc));
    }
    s->map_bytes = o->map_bytes;
    s->map_max_bytes = o->map_max_bytes < o->map_bytes ? o->map_bytes : o->map_max_bytes;
    mdb_env_set_maxdbs(s->env, DB_COUNT + 4);
    mdb_env_set_maxreaders(s->env, STORE_READERS_MAX);
    mdb_env_set_mapsize(s->env, (size_t)s->map_bytes);
    unsigned flags = MDB_NOTLS | (o->read_only ? (unsigned)MDB_RDONLY : 0u) |
                     (o->defer_meta_sync ? (unsigned)MDB_NOMETASYNC : 0u);
    rc = mdb_env_open(s->env, path, flags, 0600);
    if (rc != 0) {
        mdb_env_close(s->env);
        s->env = NULL;
        return err_set(e, store_rc(rc), "cannot open database %s: %s", path, mdb_strerror(rc));
    }
    /* The file may already be larger than asked: LMDB adopts its size. */
    MDB_envinfo info;
    mdb_env_info(s->env, &info);
    if (info.me_mapsize > s->map_bytes) {
        s->map_bytes = info.me_mapsize;
        if (s->map_max_bytes < s->map_bytes) {
            s->map_max_bytes = s->map_bytes;
        }
    }
    pthread_rwlock_init(&s->resize_lock, NULL);
    int dead = 0;
    mdb_reader_check(s->env, &dead);
    if (dead > 0) {
        char n[16];
        snprintf(n, sizeof n, "%d", dead);
        olog(OLOG_WARN, "stale_readers_cleared", "count", n, NULL);
    }
    rc = open_dbs(s, e);
    if (rc != 0) {
        store_close(s);
    }
    return rc;
}

void store_close(struct store *s) {
    if (s->env != NULL) {
        mdb_env_close(s->env);
        pthread_rwlock_destroy(&s->resize_lock);
        s->env = NULL;
    }
}

int store_rd_begin(struct store *s, MDB_txn **txn) {
    pthread_rwlock_rdlock(&s->resize_lock);
    int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
    if (rc != 0) {
        pthread_rwlock_unlock(&s->resize_lock);
        return store_rc(rc);
    }
    return 0;
}

void store_rd_end(struct store *s, MDB_txn *txn) {
    mdb_txn_abort(txn);
    pthread_rwlock_unlock(&s->resize_lock);
}

int store_wr_begin(struct store *s, MDB_txn **txn) {
    pthread_rwlock_rdlock(&s->resize_lock);
    int rc = mdb_txn_begin(s->env, NULL, 0, txn);
    if (rc != 0) {
        pthread_rwlock_unlock(&s->resize_lock);
        return store_rc(rc);
    }
    return 0;
}

int store_commit(struct store *s, MDB_txn *txn) {
    ASSERT(txn != NULL);
    int rc = mdb_txn_commit(txn);
    pthread_rwlock_unlock(&s->resize_lock);
    return store_rc(rc);
}

void store_abort(struct store *s, MDB_txn *txn) {
    ASSERT(txn != NULL);
    mdb_txn_abort(txn);
    pthread_rwlock_unlock(&s->resize_lock);
}

int store_reserve(struct store *s, uint64_t bytes) {
    if (bytes > s->map_max_bytes) {
        bytes = s->map_max_bytes;
    }
    if (bytes <= s->map_bytes) {
        return 0;
    }
    pthread_rwlock_wrlock(&s->resize_lock);
    int rc = mdb_env_set_mapsize(s->env, (size_t)bytes);
    if (rc == 0) {
        s->map_bytes = bytes;
    }
    ASSERT(s->map_bytes <= s->map_max_bytes);
    pthread_rwlock_unlock(&s->resize_lock);
    return store_rc(rc);
}

int store_grow(struct store *s) {
    const uint64_t step_min = 64ull << 20;
    if (s->map_bytes >= s->map_max_bytes) {
        return APL_EFULL;
    }
    uint64_t next = s->map_bytes * 2;
    if (next < s->map_bytes + step_min) {
        next = s->map_bytes + step_min;
    }
    int rc = store_reserve(s, next);
    if (rc != 0) {
        return rc;
    }
    char mib[24];
    snprintf(mib, sizeof mib, "%llu", (unsigned long long)(s->map_bytes >> 20));
    olog(OLOG_INFO, "map_grown", "map_mib", mib, NULL);
    return 0;
}

int store_sync(struct store *s) {
    return store_rc(mdb_env_sync(s->env, 1));
}

int store_reader_check(struct store *s) {
    int dead = 0;
    mdb_reader_check(s->env, &dead);
    return dead;
}

int store_get(MDB_txn *t, const struct store *s, enum store_db db, const void *key, size_t klen,
              MDB_val *val) {
    MDB_val k = {klen, (void *)key};
    return store_rc(mdb_get(t, s->dbi[db], &k, val));
}

int store_put(MDB_txn *t, const struct store *s, enum store_db db, const void *key, size_t klen,
              const void *val, size_t vlen, unsigned flags) {
    ASSERT(db >= 0 && db < DB_COUNT && klen > 0 && klen <= LMDB_KEY_BYTES_MAX);
    MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
    return store_rc(mdb_put(t, s->dbi[db], &k, &v, flags));
}

int store_del(MDB_txn *t, const struct store *s, enum store_db db, const void *key, size_t klen,
              const void *val, size_t vlen) {
    MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
    return store_rc(mdb_del(t, s->dbi[db], &k, val != NULL ? &v : NULL));
}

enum { STORE_ROW_REPEATED_MAX = 4096 };

int store_get_msg(MDB_txn *t, const struct store *s, enum store_db db, const void *key, size_t klen,
                  const ProtobufCMessageDescriptor *desc, struct arena *a, ProtobufCMessage **out) {
    ASSERT(desc != NULL && a != NULL);
    MDB_val v;
    int rc = store_get(t, s, db, key, klen, &v);
    if (rc != 0) {
        return rc;
    }
    ProtobufCMessage *m = pb_unpack(desc, v.mv_data, v.mv_size, a, STORE_ROW_REPEATED_MAX, NULL);
    if (m == NULL) {
        return APL_ECORRUPT;
    }
    *out = m;
    return 0;
}

int store_put_msg(MDB_txn *t, const struct store *s, enum store_db db, const void *key, size_t klen,
                  const ProtobufCMessage *m) {
    ASSERT(db >= 0 && db < DB_COUNT && klen > 0 && klen <= LMDB_KEY_BYTES_MAX);
    size_t n = protobuf_c_message_get_packed_size(m);
    MDB_val k = {klen, (void *)key}, v = {n, NULL};
    /* MDB_RESERVE: pack straight into the page, no intermediate buffer. */
    int rc = mdb_put(t, s->dbi[db], &k, &v, MDB_RESERVE);
    if (rc != 0) {
        return store_rc(rc);
    }
    size_t packed = protobuf_c_message_pack(m, v.mv_data);
    ASSERT(packed == n && v.mv_size == n); /* exactly the room reserved */
    return 0;
}

int store_drop(MDB_txn *t, const struct store *s, enum store_db db) {
    return store_rc(mdb_drop(t, s->dbi[db], 0));
}

int store_each_prefixed(MDB_txn *t, const struct store *s, enum store_db db, const void *prefix,
                        size_t plen, size_t klen,
                        int (*fn)(void *arg, const MDB_val *k, const MDB_val *v), void *arg) {
    MDB_cursor *c;
    int rc = store_rc(mdb_cursor_open(t, s->dbi[db], &c));
    if (rc != 0) {
        return rc;
    }
    MDB_val k = {plen, (void *)prefix}, v;
    int m = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    while (rc == 0 && m == 0 && k.mv_size == klen && memcmp(k.mv_data, prefix, plen) == 0) {
        rc = fn(arg, &k, &v);
        bool deleted = rc == STORE_EACH_DELETE;
        if (deleted) {
            rc = store_rc(mdb_cursor_del(c, 0));
        }
        if (rc == 0) {
            m = mdb_cursor_get(c, &k, &v, deleted ? MDB_GET_CURRENT : MDB_NEXT);
        }
    }
    mdb_cursor_close(c);
    return rc != 0 ? rc : (m == 0 || m == MDB_NOTFOUND || m == EINVAL ? 0 : store_rc(m));
}

void be32_put(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

void be64_put(uint8_t *p, uint64_t v) {
    be32_put(p, (uint32_t)(v >> 32));
    be32_put(p + 4, (uint32_t)v);
}

uint32_t be32_get(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

uint64_t be64_get(const uint8_t *p) {
    return (uint64_t)be32_get(p) << 32 | be32_get(p + 4);
}

int store_usage(struct store *s, uint64_t *map_bytes, uint64_t *used_bytes, uint32_t *readers) {
    MDB_envinfo info;
    MDB_stat st;
    /* Both read the map's meta pages: not while the writer remaps it. */
    pthread_rwlock_rdlock(&s->resize_lock);
    int rc = mdb_env_info(s->env, &info);
    if (rc == 0) {
        rc = mdb_env_stat(s->env, &st);
    }
    pthread_rwlock_unlock(&s->resize_lock);
    if (rc != 0) {
        return store_rc(rc);
    }
    *map_bytes = info.me_mapsize;
    *used_bytes = (uint64_t)(info.me_last_pgno + 1) * st.ms_psize;
    *readers = info.me_numreaders;
    return 0;
}

int store_used_bytes(struct store *s, uint64_t *used_bytes) {
    MDB_envinfo info;
    MDB_stat st;
    int rc = mdb_env_info(s->env, &info);
    if (rc == 0) {
        rc = mdb_env_stat(s->env, &st);
    }
    if (rc != 0) {
        return store_rc(rc);
    }
    *used_bytes = (uint64_t)(info.me_last_pgno + 1) * st.ms_psize;
    return 0;
}
