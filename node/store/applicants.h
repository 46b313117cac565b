/*
 * applicants.h: the applicants index (applicant tag | category -> the
 * latest registration number), which finds a repeated appeal while the
 * appeal is filed (appeal.c) and is kept by every record that files or
 * accepts one (state.c).
 *
 * Its key is a keyed hash of the applicant, so every new entry lands on a
 * random page of `applicants`: one more page written by every filing's
 * commit. While the node serves (`enabled`), new entries are staged
 * instead: appended to table `meta` under "apst" | counter (8, BE) in the
 * filing's own transaction, and kept in memory in a hash table. When
 * APST_MERGE_ENTRIES keys are staged, the transaction that finds it
 * (apst_settle, before its commit) writes them into `applicants` in key
 * order and deletes the staged rows: the random pages are written once per
 * merge instead of once per filing. A lookup takes the greater of the
 * staged and the indexed number ("latest" is the greatest number, as
 * before), so an entry is found whether staged or merged.
 *
 * The memory follows the transaction: apst_committed after a commit,
 * apst_rollback after an abort (the writer's hooks); a restart loads the
 * staged rows again (apst_init). Not enabled (offline commands, rebuild,
 * appeal-gen), or with APST_ENTRIES_MAX keys staged, entries go straight
 * into `applicants`, as before.
 *
 * Costs: up to APST_SLOTS entries of ~90 bytes in memory (about 3 MB),
 * allocated at the first staged entry; a merge writes up to
 * APST_MERGE_ENTRIES entries in one commit.
 */
#ifndef APPEAL_APPLICANTS_H
#define APPEAL_APPLICANTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keys.h"
#include "store.h"

enum {
    APST_KEY_BYTES_MAX = APPLICANT_TAG_BYTES + CATEGORY_BYTES_MAX,
    APST_SLOTS = 1 << 15,              /* the hash table (a power of two) */
    APST_ENTRIES_MAX = APST_SLOTS / 2, /* then straight into `applicants` */
    APST_MERGE_ENTRIES = 8192,         /* merged when this many are staged */
};

struct apst_entry {
    uint8_t kl, nl; /* kl 0: an empty slot */
    uint8_t key[APST_KEY_BYTES_MAX];
    char number[NUMBER_BYTES_MAX];
};

struct apst_undo {
    uint32_t slot;
    struct apst_entry was;
};

struct app_stage {
    bool enabled;                  /* set by the serving node before its writer starts */
    bool merged;                   /* this transaction merged: forget the stage at its commit */
    uint32_t merge_at;             /* APST_MERGE_ENTRIES, or APPEAL_TEST_APPLICANTS_MERGE */
    struct apst_entry *slots;      /* APST_SLOTS, NULL until needed */
    uint32_t count;                /* keys staged */
    uint32_t count_committed;      /* ... as of the last commit */
    uint64_t next, next_committed; /* the next staged row's counter */
    struct apst_undo *undo;        /* this transaction's changes to `slots` */
    size_t n_undo, cap_undo;
};

/* Loads the staged rows of `s` (a read transaction of its own). */
int apst_init(struct app_stage *g, struct store *s);
void apst_fini(struct app_stage *g);

/* The latest number noted for `key` (staged or indexed) into `out`, ""
 * when none. */
int apst_latest(struct app_stage *g, struct store *s, MDB_txn *t, const uint8_t *key, size_t kl,
                char out[NUMBER_BYTES_MAX + 1]);
/* Notes `number` for `key` unless a greater one is noted already. */
int apst_note(struct app_stage *g, struct store *s, MDB_txn *t, const uint8_t *key, size_t kl,
              const char *number);
/* Before a commit: merges the stage into `applicants` once it is full. */
int apst_settle(struct app_stage *g, struct store *s, MDB_txn *t);
/* After the transaction committed, or was aborted. */
void apst_committed(struct app_stage *g);
void apst_rollback(struct app_stage *g);
/* Calls fn for every applicant in key order, with its latest number,
 * staged or indexed: what `applicants` holds once merged. */
int apst_each(struct app_stage *g, struct store *s, MDB_txn *t,
              void (*fn)(void *arg, const uint8_t *key, size_t kl, const char *number, size_t nl),
              void *arg);
/* Rebuild: deletes the staged rows and forgets them. */
int apst_clear(struct app_stage *g, struct store *s, MDB_txn *t);

#endif
