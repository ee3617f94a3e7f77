/* AVX-512 instance of the Winograd block kernels (template: winograd_simd.h). Compiled with the
 * AVX-512 flags by the Makefile and called only when rt_cpu_isa() reports AVX-512. */
#include <immintrin.h>

#include "kernels/winograd.h"

typedef __m512 vf;
#define VW 16
#define VZERO() _mm512_setzero_ps()
#define VLOAD(p) _mm512_loadu_ps(p)
#define VSTORE(p, v) _mm512_storeu_ps(p, v)
#define VSET1(x) _mm512_set1_ps(x)
#define VADD(a, b) _mm512_add_ps(a, b)
#define VSUB(a, b) _mm512_sub_ps(a, b)
#define VMUL(a, b) _mm512_mul_ps(a, b)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define OCB_G 8 /* 8 x 3 accumulators of 32 registers */
#define NV_G 3
#define WG_RC 4 /* weight gradient: 4 x 4 accumulators */
#define WG_RO 4
#define HSUM(v) _mm512_reduce_add_ps(v)
#define SFX(name) name##_avx512

static inline __m512 quads(const float *const *p, int k, int64_t off) {
    __m512 v = _mm512_castps128_ps512(_mm_loadu_ps(p[k] + off));
    v = _mm512_insertf32x4(v, _mm_loadu_ps(p[k + 4] + off), 1);
    v = _mm512_insertf32x4(v, _mm_loadu_ps(p[k + 8] + off), 2);
    return _mm512_insertf32x4(v, _mm_loadu_ps(p[k + 12] + off), 3);
}
#define QUADS(p, k, off) quads(p, k, off)

static inline void trans4(__m512 *r) {
    __m512 t0 = _mm512_unpacklo_ps(r[0], r[1]), t1 = _mm512_unpackhi_ps(r[0], r[1]);
    __m512 t2 = _mm512_unpacklo_ps(r[2], r[3]), t3 = _mm512_unpackhi_ps(r[2], r[3]);
    __m512d a = _mm512_castps_pd(t0), b = _mm512_castps_pd(t1), c = _mm512_castps_pd(t2), d = _mm512_castps_pd(t3);
    r[0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c)), r[1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d)), r[3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
}
#define TRANS4(r) trans4(r)

static inline __m128 lane(__m512 v, int L) {
    switch (L) {
    case 0:
        return _mm512_castps512_ps128(v);
    case 1:
        return _mm512_extractf32x4_ps(v, 1);
    case 2:
        return _mm512_extractf32x4_ps(v, 2);
    default:
        return _mm512_extractf32x4_ps(v, 3);
    }
}
#define LANE(v, L) lane(v, L)

static inline __m512 maskload(const float *p, int64_t lo, int64_t hi) {
    lo = lo < 0 ? 0 : lo > 16 ? 16 : lo, hi = hi < 0 ? 0 : hi > 16 ? 16 : hi;
    __mmask16 m = (__mmask16)(((1u << hi) - 1) & ~((1u << lo) - 1));
    return _mm512_maskz_loadu_ps(m, p);
}
#define MASKLOAD(p, lo, hi) maskload(p, lo, hi)

static inline void partial_store(float *d, __m128 x, int n, int accumulate) {
    __mmask8 m = (__mmask8)((1u << n) - 1);
    if (accumulate) x = _mm_add_ps(_mm_maskz_loadu_ps(m, d), x);
    _mm_mask_storeu_ps(d, m, x);
}
#define PARTIAL_STORE(d, x, n, acc) partial_store(d, x, n, acc)

#include "kernels/winograd_simd.h"
