#include "metrics.h"

const double hist_bounds_s[HIST_BUCKETS] = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1,
                                            0.2,    0.5,   1,     2,     5,    10,   30,   60};

void hist_observe_us(struct histogram *h, uint64_t us) {
    double s = (double)us / 1e6;
    int b = 0;
    while (b < HIST_BUCKETS && s > hist_bounds_s[b]) {
        b++;
    }
    atomic_fetch_add_explicit(&h->buckets[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, us, memory_order_relaxed);
}

double hist_quantile(const uint64_t *buckets, uint64_t count, double q) {
    if (count == 0) {
        return 0;
    }
    double want = q * (double)count, seen = 0;
    for (int b = 0; b <= HIST_BUCKETS; b++) {
        double lo = b == 0 ? 0 : hist_bounds_s[b - 1];
        double hi = b < HIST_BUCKETS ? hist_bounds_s[b] : hist_bounds_s[HIST_BUCKETS - 1] * 2;
        double in = (double)buckets[b];
        if (seen + in >= want && in > 0) {
            return lo + (hi - lo) * (want - seen) / in; /* linear within the bucket */
        }
        seen += in;
    }
    return hist_bounds_s[HIST_BUCKETS - 1];
}
