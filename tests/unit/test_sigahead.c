/* Signatures finished from nonces made ahead (node/domain/sigahead.h):
 * every one verifies with libsodium's own Ed25519 verification, under
 * messages of every length and keys of both kinds this node signs with;
 * no nonce signs twice (two signatures of one message differ, and R is
 * never repeated); an altered message, signature or key fails; with no
 * sigahead (or an exhausted one) it signs as crypto_sign_detached does. */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "sigahead.h"

enum { MESSAGES = 3000, LONG_BYTES = 4096 };

static int cmp_r(const void *a, const void *b) {
    return memcmp(a, b, 32);
}

/* MESSAGES signatures from `a` under one key: all verify, all R differ,
 * and each fails once the message, the signature or the key is altered. */
static void sign_many(struct sigahead *a, const uint8_t pk[32], const uint8_t sk[64]) {
    static uint8_t rs[MESSAGES][32];
    uint8_t m[LONG_BYTES], sig[SIG_BYTES], other_pk[32], other_sk[64];
    crypto_sign_keypair(other_pk, other_sk);
    int bad = 0, tamper_passed = 0;
    for (int i = 0; i < MESSAGES; i++) {
        size_t len = (size_t)(i * 7) % sizeof m; /* 0 .. 4 KiB, the empty message too */
        randombytes_buf(m, len);
        sigahead_sign(a, sig, m, len, sk);
        bad += crypto_sign_verify_detached(sig, m, len, pk) != 0;
        memcpy(rs[i], sig, 32);
        if (len > 0) {
            m[i % len] ^= 1;
            tamper_passed += crypto_sign_verify_detached(sig, m, len, pk) == 0;
            m[i % len] ^= 1;
        }
        sig[32 + i % 32] ^= 0x10;
        tamper_passed += crypto_sign_verify_detached(sig, m, len, pk) == 0;
        sig[32 + i % 32] ^= 0x10;
        tamper_passed += crypto_sign_verify_detached(sig, m, len, other_pk) == 0;
    }
    CHECK_INT(bad, 0);
    CHECK_INT(tamper_passed, 0);
    qsort(rs, MESSAGES, 32, cmp_r);
    int repeated = 0;
    for (int i = 1; i < MESSAGES; i++) {
        repeated += memcmp(rs[i - 1], rs[i], 32) == 0;
    }
    CHECK_INT(repeated, 0);
}

/* Sleeps until the filler has made `n` pairs in all. */
static void wait_made(struct sigahead *a, uint64_t n) {
    struct sigahead_stats st;
    for (sigahead_stats(a, &st); st.made < n; sigahead_stats(a, &st)) {
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
}

int main(void) {
    CHECK(sodium_init() >= 0);
    uint8_t pk[32], sk[64], seed[32], pk2[32], sk2[64];
    crypto_sign_keypair(pk, sk);
    randombytes_buf(seed, sizeof seed); /* a key from a seed, as a rotation's successor */
    crypto_sign_seed_keypair(pk2, sk2, seed);

    struct sigahead *a = NULL;
    CHECK_INT(sigahead_start(&a), 0);
    CHECK(a != NULL);
    struct sigahead_stats st;
    wait_made(a, 64); /* the filler runs at SCHED_IDLE: give it an idle core */
    sign_many(a, pk, sk);
    sign_many(a, pk2, sk2);
    sigahead_stats(a, &st);
    /* The pairs the filler had not made in time were signed in full: every
     * signature is one or the other, and the filler did make pairs. */
    CHECK_INT(st.used + st.fallback, 2 * MESSAGES);
    CHECK(st.used > 0);
    CHECK(st.made >= st.used);

    /* Randomized: the same message twice gives two valid, different
     * signatures; without a sigahead, the deterministic one of RFC 8032. */
    uint8_t m[] = "appeal KZ-75-2026-000001", s1[SIG_BYTES], s2[SIG_BYTES], det[SIG_BYTES];
    sigahead_stats(a, &st);
    wait_made(a, st.used + 2); /* a pair for each */
    sigahead_sign(a, s1, m, sizeof m, sk);
    sigahead_sign(a, s2, m, sizeof m, sk);
    CHECK(memcmp(s1, s2, SIG_BYTES) != 0);
    CHECK(crypto_sign_verify_detached(s1, m, sizeof m, pk) == 0);
    CHECK(crypto_sign_verify_detached(s2, m, sizeof m, pk) == 0);
    crypto_sign_detached(det, NULL, m, sizeof m, sk);
    sigahead_sign(NULL, s1, m, sizeof m, sk);
    CHECK(memcmp(s1, det, SIG_BYTES) == 0);
    sigahead_stop(a);
    sigahead_stop(NULL); /* a no-op */
    return check_failures != 0;
}
