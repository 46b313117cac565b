/*
 * assert.h: ASSERT, always on (not compiled out by NDEBUG), for invariants
 * only: what this node's own code guarantees (seq == head + 1 on append,
 * arena bounds, a walk's preconditions, a lock held). A failed ASSERT is
 * a bug: it logs one line and aborts. Bad input from a user, a file or a
 * peer is never ASSERTed: it is an ordinary error, answered and logged.
 *
 * This directory is on the include path, so `#include <assert.h>` anywhere
 * (protobuf-c.h does) finds this file first: it passes the C library's
 * <assert.h> on (include_next) so that assert() keeps working.
 */
#include_next <assert.h>

#ifndef APPEAL_ASSERT_H
#define APPEAL_ASSERT_H

#define ASSERT(cond) ((cond) ? (void)0 : appeal_assert_fail(#cond, __FILE__, __LINE__))

/* Logs `level=fatal event=assert_failed cond=... file=... line=...` to
 * stderr, then abort(). */
void appeal_assert_fail(const char *cond, const char *file, int line) __attribute__((noreturn));

#endif
