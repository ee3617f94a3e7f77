/* Gram matrices of K long float vectors (per-path gradients: millions of floats each), accumulated in
 * double. The fast kernel splits the n elements into at most RT_GRAM_NBLK fixed blocks (their
 * bounds depend on n only), computes every pair's partial dot product per block in parallel and sums
 * the blocks in order: the bits do not depend on the thread count. The _ref kernel is the oracle. */
#ifndef RT_KERNELS_GRAM_H
#define RT_KERNELS_GRAM_H
#include <stddef.h>
#include <stdint.h>

#define RT_GRAM_NBLK 64 /* most blocks the n elements are split into */

/* Doubles of workspace rt_gram_f32 needs for K vectors. */
static inline size_t rt_gram_work_doubles(int64_t K) { return (size_t)RT_GRAM_NBLK * (size_t)(K * (K + 1) / 2); }

// vecs: K pointers to n floats; gram (K,K) row-major, symmetric, overwritten; work rt_gram_work_doubles(K)
void rt_gram_f32(int64_t K, int64_t n, const float *const *vecs, double *gram, double *work);
// vecs: K pointers to n floats; gram (K,K) overwritten; plain serial double loops
void rt_gram_f32_ref(int64_t K, int64_t n, const float *const *vecs, double *gram);

#endif
