/* AVX2 + FMA instance of the direct convolution micro-kernels (template: conv_simd.h). Compiled
 * with the AVX2 flags by the Makefile and called only when rt_cpu_isa() reports AVX2 or better. */
#include <immintrin.h>

#include "kernels/conv_direct.h"

typedef __m256 vf;
#define VW 8
#define VZERO() _mm256_setzero_ps()
#define VLOAD(p) _mm256_loadu_ps(p)
#define VSTORE(p, v) _mm256_storeu_ps(p, v)
#define VSET1(x) _mm256_set1_ps(x)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VMAX(a, b) _mm256_max_ps(a, b)
#define OCB_F 4 /* 4 x 3 accumulators of 16 registers */
#define NV_F 3
#define OCB_W 4 /* 4 x 3 accumulators */
#define KB_W 3
#define WG3_NB 2 /* 12 accumulators: 1 x 4 rows, 2 x 2 */
#define WG3_R(nb) ((nb) == 1 ? 4 : 2)
#define SFX(name) name##_avx2

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#define VHSUM(v) hsum8(v)

#include "kernels/conv_simd.h"

// src (rows, 2n-1 readable on the last row) with row stride ss -> dst (rows, n), row stride ds: even columns
void rt_convd_gather2_avx2(float *dst, int64_t ds, const float *src, int64_t ss, int64_t rows, int64_t n) {
    for (int64_t i = 0; i < rows; i++) {
        float *d = dst + i * ds;
        const float *s = src + i * ss;
        /* a vector reads 2*8 floats; on the last row the final odd column may lie past the
         * source's end, so the last full vector there is left to the scalar tail */
        int64_t j = 0, lim = i == rows - 1 ? n - 1 : n;
        for (; j + 8 <= lim; j += 8) {
            /* [a0 a2 b0 b2 | a4 a6 b4 b6] -> [a0 a2 a4 a6 b0 b2 b4 b6] */
            __m256 e = _mm256_shuffle_ps(_mm256_loadu_ps(s + 2 * j), _mm256_loadu_ps(s + 2 * j + 8), 0x88);
            _mm256_storeu_ps(d + j, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), 0xd8)));
        }
        for (; j < n; j++) d[j] = s[2 * j];
    }
}
