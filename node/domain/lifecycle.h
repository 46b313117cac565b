/*
 * lifecycle.h: which event may follow which state, in one table used both
 * when a client asks for an action (to refuse it with a clear message) and
 * when any record is applied (so that every node derives the same state
 * from the same records, whatever order they arrived in).
 *
 *   registered -> assigned -> (extended) -> answered -> closed
 *   side exits: forwarded (the receiver accepts or returns it),
 *               withdrawn, reopened (from answered or closed)
 *
 * At any moment exactly one jurisdiction may write an appeal's next event:
 * the owner, or while it is forwarded, the receiver. So each appeal's
 * events form a single line, numbered by `version`.
 */
#ifndef APPEAL_LIFECYCLE_H
#define APPEAL_LIFECYCLE_H

#include <stdbool.h>

#include "record.pb-c.h"
#include "store.pb-c.h"

/* True if an event of `event_case` may follow an appeal in `status`. */
bool lifecycle_allowed(Appeal__Body__EventCase event_case, Appeal__Status status);
/* "registered, assigned, extended or reopened": the states it needs. */
const char *lifecycle_needs(Appeal__Body__EventCase event_case);
/* Open: not answered, closed or withdrawn; may become overdue. */
bool lifecycle_open(Appeal__Status status);
const char *status_name(Appeal__Status status);
/* 0 if unknown. */
Appeal__Status status_parse(const char *s);
const char *outcome_name(Appeal__Outcome o);
Appeal__Outcome outcome_parse(const char *s);

#endif
