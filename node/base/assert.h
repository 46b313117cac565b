/*
 * assert.h: always-on assertions, as LMDB (mdb_assert), nng (NNI_ASSERT)
 * and SQLite (assert + ALWAYS/NEVER) use them. ASSERT states an invariant
 * of the node's own code: a batch's state, seq == head + 1 on append, a
 * version that only grows, an arena's bounds. It stays in release builds
 * (it costs a compare); a failure is a bug: the node logs one line
 *
 *   level=fatal event=assert_failed cond=... file=... line=...
 *
 * and aborts, rather than write or serve from a state it does not
 * understand. Bad input from a user, a file or a peer is never an
 * assertion: it is an ordinary error (err.h), answered and logged, and the
 * node keeps running.
 *
 * The file is named like the C library's <assert.h> and this folder is on
 * the include path, so it also brings in the C library's assert() for the
 * code (and system headers) that include <assert.h>.
 */
#ifndef APPEAL_ASSERT_H
#define APPEAL_ASSERT_H

#include_next <assert.h>

#define ASSERT(cond) ((cond) ? (void)0 : appeal_assert_fail(#cond, __FILE__, __LINE__))

void appeal_assert_fail(const char *cond, const char *file, int line) __attribute__((noreturn));

#endif
