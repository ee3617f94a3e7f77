/* AVX2 + FMA instance of the batch-norm kernels (template: batchnorm_simd.h). Compiled with the AVX2
 * flags by the Makefile and called only when rt_cpu_isa() reports AVX2 or better. */
#include <immintrin.h>

#include "kernels/batchnorm.h"

typedef __m256 vf;
#define VW 8
#define VZERO() _mm256_setzero_ps()
#define VLOAD(p) _mm256_loadu_ps(p)
#define VSTORE(p, v) _mm256_storeu_ps(p, v)
#define VSET1(x) _mm256_set1_ps(x)
#define VADD(a, b) _mm256_add_ps(a, b)
#define VSUB(a, b) _mm256_sub_ps(a, b)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
/* maxps returns its second operand when one is NaN: 0, as rt_relu */
#define VRELU(v) _mm256_max_ps(v, _mm256_setzero_ps())
#define VPOSBITS(v) ((unsigned)_mm256_movemask_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_GT_OQ)))
/* lane l keeps d where bit l is set: the byte broadcast, each lane testing its own bit */
static inline __m256 keepbits8(__m256 d, unsigned bits) {
    const __m256i sel = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    __m256i on = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32((int)bits), sel), sel);
    return _mm256_and_ps(d, _mm256_castsi256_ps(on));
}
#define VKEEPBITS(d, bits) keepbits8(d, bits)
#define SFX(name) name##_avx2

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#define VHSUM(v) hsum8(v)

#include "kernels/batchnorm_simd.h"
