#include "sigahead.h"

#include <pthread.h>
#include <sched.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "assert.h"
#include "err.h"

enum {
    SCALAR_BYTES = 32,
    POINT_BYTES = 32,
    FILL_BATCH_PAIRS = 32, /* made outside the lock, then stored together */
    REFILL_BELOW_PAIRS = SIGAHEAD_PAIRS_MAX * 3 / 4,
};

struct pair {
    uint8_t r[SCALAR_BYTES]; /* the secret nonce */
    uint8_t rb[POINT_BYTES]; /* R = r·B, encoded */
};

struct sigahead {
    pthread_mutex_t mu;
    pthread_cond_t need; /* the filler waits here while the store is full enough */
    pthread_t filler;
    struct pair *pairs; /* sodium_malloc: SIGAHEAD_PAIRS_MAX, the first `count` usable */
    uint32_t count;
    bool filler_idle, stop;
    uint64_t made, used, fallback;
};

static void make_pair(struct pair *p) {
    /* r uniform in ]0, L[; base_noclamp refuses only r = 0 (identity). */
    do {
        crypto_core_ed25519_scalar_random(p->r);
    } while (crypto_scalarmult_ed25519_base_noclamp(p->rb, p->r) != 0);
}

static void *fill_main(void *arg) {
    struct sigahead *a = arg;
    struct pair batch[FILL_BATCH_PAIRS];
    /* Only on a core nothing else wants: the writer signs in full when
     * the store runs out, which costs it no more than before. */
    struct sched_param idle = {0};
    (void)pthread_setschedparam(pthread_self(), SCHED_IDLE, &idle);
    pthread_mutex_lock(&a->mu);
    while (!a->stop) {
        if (a->count >= REFILL_BELOW_PAIRS) {
            a->filler_idle = true;
            pthread_cond_wait(&a->need, &a->mu);
            a->filler_idle = false;
            continue;
        }
        while (!a->stop && a->count < SIGAHEAD_PAIRS_MAX) {
            uint32_t n = SIGAHEAD_PAIRS_MAX - a->count;
            n = n < FILL_BATCH_PAIRS ? n : FILL_BATCH_PAIRS;
            pthread_mutex_unlock(&a->mu);
            for (uint32_t i = 0; i < n; i++) {
                make_pair(&batch[i]);
            }
            pthread_mutex_lock(&a->mu);
            /* Only the filler adds, so the room counted above is still there. */
            ASSERT(a->count + n <= SIGAHEAD_PAIRS_MAX);
            memcpy(&a->pairs[a->count], batch, n * sizeof batch[0]);
            a->count += n;
            a->made += n;
        }
    }
    pthread_mutex_unlock(&a->mu);
    sodium_memzero(batch, sizeof batch);
    return NULL;
}

int sigahead_start(struct sigahead **out) {
    *out = NULL;
    struct sigahead *a = calloc(1, sizeof *a);
    if (a == NULL) {
        return APL_ENOMEM;
    }
    a->pairs = sodium_malloc(SIGAHEAD_PAIRS_MAX * sizeof a->pairs[0]);
    if (a->pairs == NULL) {
        free(a);
        return APL_ENOMEM;
    }
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->need, NULL);
    if (pthread_create(&a->filler, NULL, fill_main, a) != 0) {
        pthread_cond_destroy(&a->need);
        pthread_mutex_destroy(&a->mu);
        sodium_free(a->pairs);
        free(a);
        return APL_ENOMEM;
    }
    pthread_setname_np(a->filler, "sigahead");
    *out = a;
    return 0;
}

void sigahead_stop(struct sigahead *a) {
    if (a == NULL) {
        return;
    }
    pthread_mutex_lock(&a->mu);
    a->stop = true;
    pthread_cond_signal(&a->need);
    pthread_mutex_unlock(&a->mu);
    pthread_join(a->filler, NULL);
    pthread_cond_destroy(&a->need);
    pthread_mutex_destroy(&a->mu);
    sodium_free(a->pairs); /* wipes them */
    free(a);
}

/* Takes the last pair into `p` and wipes it from the store; false when
 * there is none. */
static bool take(struct sigahead *a, struct pair *p) {
    pthread_mutex_lock(&a->mu);
    bool got = a->count > 0;
    if (got) {
        struct pair *last = &a->pairs[--a->count];
        *p = *last;
        sodium_memzero(last, sizeof *last);
        a->used++;
    } else {
        a->fallback++;
    }
    if (a->count < REFILL_BELOW_PAIRS && a->filler_idle) {
        pthread_cond_signal(&a->need);
    }
    pthread_mutex_unlock(&a->mu);
    return got;
}

void sigahead_sign(struct sigahead *a, uint8_t sig[SIG_BYTES], const uint8_t *m, size_t mlen,
                   const uint8_t sk[KEY_SK_BYTES]) {
    struct pair p;
    if (a == NULL || !take(a, &p)) {
        crypto_sign_detached(sig, NULL, m, mlen, sk);
        return;
    }
    /* The secret scalar a: SHA-512 of the seed, clamped (RFC 8032 5.1.5),
     * reduced mod L for the scalar arithmetic (k·a mod L is unchanged). */
    uint8_t h[crypto_hash_sha512_BYTES], wide[crypto_core_ed25519_NONREDUCEDSCALARBYTES] = {0};
    uint8_t s_a[SCALAR_BYTES], k[SCALAR_BYTES], ka[SCALAR_BYTES];
    crypto_hash_sha512(h, sk, 32);
    h[0] &= 248;
    h[31] &= 127;
    h[31] |= 64;
    memcpy(wide, h, SCALAR_BYTES);
    crypto_core_ed25519_scalar_reduce(s_a, wide);
    /* k = SHA-512(R ‖ A ‖ M) mod L; A is the second half of libsodium's sk. */
    crypto_hash_sha512_state st;
    crypto_hash_sha512_init(&st);
    crypto_hash_sha512_update(&st, p.rb, POINT_BYTES);
    crypto_hash_sha512_update(&st, sk + 32, 32);
    crypto_hash_sha512_update(&st, m, mlen);
    crypto_hash_sha512_final(&st, h);
    crypto_core_ed25519_scalar_reduce(k, h);
    crypto_core_ed25519_scalar_mul(ka, k, s_a);
    memcpy(sig, p.rb, POINT_BYTES);
    crypto_core_ed25519_scalar_add(sig + POINT_BYTES, ka, p.r);
    sodium_memzero(&p, sizeof p);
    sodium_memzero(h, sizeof h);
    sodium_memzero(wide, sizeof wide);
    sodium_memzero(s_a, sizeof s_a);
    sodium_memzero(ka, sizeof ka);
}

void sigahead_stats(struct sigahead *a, struct sigahead_stats *out) {
    memset(out, 0, sizeof *out);
    if (a == NULL) {
        return;
    }
    pthread_mutex_lock(&a->mu);
    out->made = a->made;
    out->used = a->used;
    out->fallback = a->fallback;
    pthread_mutex_unlock(&a->mu);
}
