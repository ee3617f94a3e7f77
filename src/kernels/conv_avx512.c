/* AVX-512 instance of the direct convolution micro-kernels (template: conv_simd.h). Compiled with
 * the AVX-512 flags by the Makefile and called only when rt_cpu_isa() reports AVX-512. */
#include <immintrin.h>

#include "kernels/conv_direct.h"

typedef __m512 vf;
#define VW 16
#define VZERO() _mm512_setzero_ps()
#define VLOAD(p) _mm512_loadu_ps(p)
#define VSTORE(p, v) _mm512_storeu_ps(p, v)
#define VSET1(x) _mm512_set1_ps(x)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VMAX(a, b) _mm512_max_ps(a, b)
#define VHSUM(v) _mm512_reduce_add_ps(v)
#define OCB_F 8 /* 8 x 3 accumulators of 32 registers */
#define NV_F 3
#define OCB_W 4 /* 4 x 6 accumulators */
#define KB_W 6
#define WG3_NB 4 /* 24 accumulators: 1 x 8 rows, 2 x 4, 3 x 2 (18), 4 x 2 */
#define WG3_R(nb) ((nb) == 1 ? 8 : (nb) == 2 ? 4 : 2)
#define SFX(name) name##_avx512

#include "kernels/conv_simd.h"

// src (rows, 2n-1 readable on the last row) with row stride ss -> dst (rows, n), row stride ds: even columns
void rt_convd_gather2_avx512(float *dst, int64_t ds, const float *src, int64_t ss, int64_t rows, int64_t n) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    for (int64_t i = 0; i < rows; i++) {
        float *d = dst + i * ds;
        const float *s = src + i * ss;
        /* a vector reads 2*16 floats; on the last row the final odd column may lie past the
         * source's end, so the last full vector there is left to the scalar tail */
        int64_t j = 0, lim = i == rows - 1 ? n - 1 : n;
        for (; j + 16 <= lim; j += 16)
            _mm512_storeu_ps(d + j,
                             _mm512_permutex2var_ps(_mm512_loadu_ps(s + 2 * j), even, _mm512_loadu_ps(s + 2 * j + 16)));
        for (; j < n; j++) d[j] = s[2 * j];
    }
}
