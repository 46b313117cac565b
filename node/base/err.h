/*
 * err.h: the node's error codes and the error buffer that carries a
 * human-readable message alongside the code.
 *
 * Every function that can fail returns an int: 0 on success, or one of the
 * APL_E* codes below (all negative, in one reserved range so that they never
 * collide with LMDB's or nng's codes). When a caller passes a `struct errbuf`,
 * the failing function writes a sentence an operator or a citizen-facing
 * registrar can read ("cannot close KZ-75-2026-000001: it is registered").
 * Messages never contain personal data.
 */
#ifndef APPEAL_ERR_H
#define APPEAL_ERR_H

#include <stdarg.h>
#include <stddef.h>

enum {
    APL_OK = 0,
    APL_EINVAL = -30600, /* malformed or out-of-bounds input */
    APL_ENOTFOUND = -30601,
    APL_ETRANSITION = -30602, /* the appeal's state does not allow the action */
    APL_EREFUSED = -30603,    /* the rules refuse it */
    APL_ETOOBIG = -30604,
    APL_EFULL = -30605,    /* the LMDB map is at its configured maximum */
    APL_EUNAVAIL = -30606, /* shutting down, or not ready */
    APL_ENOMEM = -30607,
    APL_EIO = -30608,      /* a file or the OS failed */
    APL_ECORRUPT = -30609, /* stored data fails a check */
    APL_ENOTOWNER = -30610,
    APL_EAUTH = -30611,      /* unsigned, unknown key, bad signature, replay */
    APL_EFORBIDDEN = -30612, /* the key's role does not allow it */
    APL_ECHAIN = -30613,     /* a hash link does not hold */
    APL_ESIG = -30614,       /* a signature does not verify */
    APL_EGAP = -30615,       /* records do not continue the chain */
    APL_EFORK = -30616,      /* two different records for one (origin, seq) */
    APL_EORIGIN = -30617,    /* origin not in the trust store */
    APL_EFROZEN = -30618,    /* origin frozen after a fork */
    APL_EMAPFULL = -30619,   /* internal: grow the map and retry */
    APL_EDB = -30620,        /* any other LMDB error */
    APL_ENET = -30621,       /* any nng error */
    APL_EEXIST = -30622,
    APL_ETIMEDOUT = -30623,
    APL_ESTORAGE = -30624, /* a sync of the store failed: the node stopped writing */
    APL_ELAST = -30624,
};

/* A short fixed description of a code (never NULL). */
const char *apl_strerror(int code);

enum { ERRBUF_MSG_BYTES = 320 };

struct errbuf {
    int code;
    char msg[ERRBUF_MSG_BYTES];
};

/* Sets `e` (if not NULL) to `code` and a formatted message; returns `code`
 * so that callers can write `return err_set(e, APL_EINVAL, "...")`. */
int err_set(struct errbuf *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Clears `e`. */
void err_clear(struct errbuf *e);

/* The message of `e`, or apl_strerror(code) if no message was set. */
const char *err_msg(const struct errbuf *e, int code);

#endif
