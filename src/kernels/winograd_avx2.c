/* AVX2 + FMA instance of the Winograd block kernels (template: winograd_simd.h). Compiled with
 * the AVX2 flags by the Makefile and called only when rt_cpu_isa() reports AVX2 or better. */
#include <immintrin.h>

#include "kernels/winograd.h"

typedef __m256 vf;
#define VW 8
#define VZERO() _mm256_setzero_ps()
#define VLOAD(p) _mm256_loadu_ps(p)
#define VSTORE(p, v) _mm256_storeu_ps(p, v)
#define VSET1(x) _mm256_set1_ps(x)
#define VADD(a, b) _mm256_add_ps(a, b)
#define VSUB(a, b) _mm256_sub_ps(a, b)
#define VMUL(a, b) _mm256_mul_ps(a, b)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define OCB_G 4 /* 4 x 3 accumulators of 16 registers */
#define NV_G 3
#define WG_RC 3 /* weight gradient: 3 x 4 accumulators */
#define WG_RO 4
#define SFX(name) name##_avx2

static inline __m256 quads(const float *const *p, int k, int64_t off) {
    return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(p[k] + off)), _mm_loadu_ps(p[k + 4] + off), 1);
}
#define QUADS(p, k, off) quads(p, k, off)

static inline void trans4(__m256 *r) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256d a = _mm256_castps_pd(t0), b = _mm256_castps_pd(t1), c = _mm256_castps_pd(t2), d = _mm256_castps_pd(t3);
    r[0] = _mm256_castpd_ps(_mm256_unpacklo_pd(a, c)), r[1] = _mm256_castpd_ps(_mm256_unpackhi_pd(a, c));
    r[2] = _mm256_castpd_ps(_mm256_unpacklo_pd(b, d)), r[3] = _mm256_castpd_ps(_mm256_unpackhi_pd(b, d));
}
#define TRANS4(r) trans4(r)

static inline __m128 lane(__m256 v, int L) { return L ? _mm256_extractf128_ps(v, 1) : _mm256_castps256_ps128(v); }
#define LANE(v, L) lane(v, L)

static inline __m256 maskload(const float *p, int64_t lo, int64_t hi) {
    lo = lo < 0 ? 0 : lo > 8 ? 8 : lo, hi = hi < 0 ? 0 : hi > 8 ? 8 : hi;
    __m256i i = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i m = _mm256_and_si256(_mm256_cmpgt_epi32(i, _mm256_set1_epi32((int)lo - 1)),
                                 _mm256_cmpgt_epi32(_mm256_set1_epi32((int)hi), i));
    return _mm256_maskload_ps(p, m);
}
#define MASKLOAD(p, lo, hi) maskload(p, lo, hi)

static inline void partial_store(float *d, __m128 x, int n, int accumulate) {
    __m128i m = _mm_cmpgt_epi32(_mm_set1_epi32(n), _mm_setr_epi32(0, 1, 2, 3));
    if (accumulate) x = _mm_add_ps(_mm_maskload_ps(d, m), x);
    _mm_maskstore_ps(d, m, x);
}
#define PARTIAL_STORE(d, x, n, acc) partial_store(d, x, n, acc)

static inline float hsum(__m256 v) {
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    return _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)));
}
#define HSUM(v) hsum(v)

#include "kernels/winograd_simd.h"
