/* Gram matrix kernels: the blocked, parallel, deterministic one and the serial reference. Within a
 * block, the vectors are walked in tiles of RT_GRAM_TILE elements so every pair of one tile is
 * computed while the K tiles sit in cache (reads each vector once instead of K times). */
#include "kernels/gram.h"

#define RT_GRAM_MIN_BLOCK 8192    /* elements per block at least: smaller blocks cost more than they save */
#define RT_GRAM_TILE 2048         /* elements of each vector per tile (K x 8 KB in cache) */
#define RT_GRAM_PAR_MIN (1 << 16) /* K * n below which one thread does it all */

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// a, b (m); returns sum a*b in double
static inline double dot_f64(const float *a, const float *b, int64_t m) {
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < m; i++) s += (double)a[i] * (double)b[i];
    return s;
}

void rt_gram_f32(int64_t K, int64_t n, const float *const *vecs, double *gram, double *work) {
    int64_t npair = K * (K + 1) / 2;
    int64_t bs = (n + RT_GRAM_NBLK - 1) / RT_GRAM_NBLK;
    if (bs < RT_GRAM_MIN_BLOCK) bs = RT_GRAM_MIN_BLOCK;
    int64_t nb = n > 0 ? (n + bs - 1) / bs : 0;
    /* parallel over the fixed blocks of n; their partial sums are added in block order below */
#pragma omp parallel for schedule(static) if (K * n > RT_GRAM_PAR_MIN)
    for (int64_t b = 0; b < nb; b++) {
        double *acc = work + b * npair;
        for (int64_t p = 0; p < npair; p++) acc[p] = 0;
        int64_t end = min64(n, (b + 1) * bs);
        for (int64_t t0 = b * bs; t0 < end; t0 += RT_GRAM_TILE) {
            int64_t m = min64(RT_GRAM_TILE, end - t0);
            int64_t p = 0;
            for (int64_t i = 0; i < K; i++)
                for (int64_t j = i; j < K; j++) acc[p++] += dot_f64(vecs[i] + t0, vecs[j] + t0, m);
        }
    }
    int64_t p = 0;
    for (int64_t i = 0; i < K; i++)
        for (int64_t j = i; j < K; j++, p++) {
            double s = 0;
            for (int64_t b = 0; b < nb; b++) s += work[b * npair + p];
            gram[i * K + j] = gram[j * K + i] = s;
        }
}

void rt_gram_f32_ref(int64_t K, int64_t n, const float *const *vecs, double *gram) {
    for (int64_t i = 0; i < K; i++)
        for (int64_t j = 0; j < K; j++) {
            double s = 0;
            for (int64_t t = 0; t < n; t++) s += (double)vecs[i][t] * (double)vecs[j][t];
            gram[i * K + j] = s;
        }
}
