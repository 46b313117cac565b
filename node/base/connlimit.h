/*
 * connlimit.h: bounds on the connections (nng pipes) of one listening
 * socket (docs/operations.md "Limits").
 *
 *  - at most `max` connections: one past it is closed as it arrives
 *    (NNG_PIPE_EV_ADD_PRE), logged once a second at most;
 *  - a connection with no request in progress and none received for
 *    `idle_ms` is closed: idle clients, and senders that stall part-way
 *    through a message (nng holds the declared size of a message, up to
 *    NNG_OPT_RECVMAXSZ, while its bytes arrive).
 *
 * Memory held by stalled senders is thus at most max x RECVMAXSZ, for at
 * most idle_ms. The owner reports requests with conn_limit_busy.
 */
#ifndef APPEAL_CONNLIMIT_H
#define APPEAL_CONNLIMIT_H

#include <nng/nng.h>
#include <stdatomic.h>
#include <stdint.h>

struct conn_limit;

/* Registers the pipe callbacks on `s` (before it listens); `gauge`, if
 * not NULL, counts the open connections. */
int conn_limit_start(struct conn_limit **out, nng_socket s, const char *listener, uint32_t max,
                     int64_t idle_ms, _Atomic uint64_t *gauge);
/* A request arrived on `p` (+1) or was answered (-1); 0 only marks activity. */
void conn_limit_busy(struct conn_limit *cl, nng_pipe p, int delta);
/* Calls `fn(arg, pipe id)` on nng's thread after each counted connection
 * closed (sessions bound to it are wiped there). Set before listening. */
void conn_limit_on_close(struct conn_limit *cl, void (*fn)(void *arg, uint32_t pipe), void *arg);
/* Stops closing idle connections; call before closing the socket. */
void conn_limit_stop(struct conn_limit *cl);
/* After the socket is closed (no callback can come). */
void conn_limit_free(struct conn_limit *cl);

#endif
