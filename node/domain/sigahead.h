/*
 * sigahead.h: Ed25519 signatures whose costly half is computed ahead, on
 * another thread (ADR 0022).
 *
 * An Ed25519 signature (RFC 8032 5.1.6) is R = r·B and S = r + k·a mod L,
 * with k = SHA-512(R ‖ A ‖ M) and `a` the signer's secret scalar. The
 * scalar multiplication r·B is most of the cost of signing (~15 µs of
 * ~18 µs here), and it does not depend on the message when r is drawn at
 * random instead of derived from the message. RFC 8032 derives r from the
 * message so that a weak random generator cannot leak the key; any r that
 * is uniform, secret and used for one signature only gives a signature
 * every verifier accepts and that is as strong (this is how Schnorr
 * signatures were defined). The records this node signs must be signed in
 * order (each covers the previous record's hash, signature included), so
 * the writer cannot sign in parallel; with a sigahead it only finishes
 * each signature: one SHA-512 and two scalar operations, ~2 µs.
 *
 * A sigahead keeps up to SIGAHEAD_PAIRS_MAX pairs (r, R) in memory from
 * sodium_malloc (locked, guarded, wiped when freed), made by its own
 * thread from libsodium's random scalars (getrandom). The thread runs at
 * SCHED_IDLE: it takes only CPU time no other thread wants, so it never
 * delays the API's or the writer's threads. sigahead_sign takes
 * one pair under the lock and wipes it there, so no pair signs twice; when
 * none is left (the filler thread behind) it signs as crypto_sign_detached
 * does (r from the message). Either way the signature is standard Ed25519.
 *
 * Costs: the same CPU as signing, moved to the filler thread and to idle
 * time; 64 bytes of locked memory per pair. Fails: sigahead_start when the memory or the
 * thread cannot be had (the caller signs without it: pass NULL).
 */
#ifndef APPEAL_SIGAHEAD_H
#define APPEAL_SIGAHEAD_H

#include <stddef.h>
#include <stdint.h>

#include "keys.h"

enum {
    SIGAHEAD_PAIRS_MAX = 1024, /* ~40 ms of signing at 25 k records/s; 64 KiB */
};

struct sigahead;

/* Starts the filler thread; *out is NULL on failure. */
int sigahead_start(struct sigahead **out);
/* Stops the thread and wipes and frees every pair. NULL is a no-op. */
void sigahead_stop(struct sigahead *a);

/* Signs `m` with `sk` (libsodium's 64-byte secret key: seed ‖ public key)
 * into `sig`, as crypto_sign_detached would verify; `a` may be NULL. */
void sigahead_sign(struct sigahead *a, uint8_t sig[SIG_BYTES], const uint8_t *m, size_t mlen,
                   const uint8_t sk[KEY_SK_BYTES]);

/* Pairs made and pairs used, and signatures made without a pair. */
struct sigahead_stats {
    uint64_t made, used, fallback;
};
void sigahead_stats(struct sigahead *a, struct sigahead_stats *out);

#endif
