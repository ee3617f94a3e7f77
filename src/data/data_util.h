/* Helpers shared by the data readers, the generator and the loader (private to src/data). */
#ifndef RT_DATA_UTIL_H
#define RT_DATA_UTIL_H
#include <stdint.h>

#include "retort/data.h"

/* A 64-bit hash of two words (splitmix64's finaliser over a combination): seeds for independent
 * RNG streams derived from (seed, epoch, batch, purpose). */
static inline uint64_t rt_data_mix(uint64_t a, uint64_t b) {
    uint64_t z = a ^ (b * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull + (a << 6) + (a >> 2));
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Fisher-Yates shuffle of idx[0..n) with r. */
static inline void rt_data_shuffle(rt_rng *r, int64_t *idx, int64_t n) {
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)rt_rng_below(r, (uint64_t)i + 1), t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}

#endif
