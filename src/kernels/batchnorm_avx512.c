/* AVX-512 instance of the batch-norm kernels (template: batchnorm_simd.h). Compiled with the AVX-512
 * flags by the Makefile and called only when rt_cpu_isa() reports AVX-512. */
#include <immintrin.h>

#include "kernels/batchnorm.h"

typedef __m512 vf;
#define VW 16
#define VZERO() _mm512_setzero_ps()
#define VLOAD(p) _mm512_loadu_ps(p)
#define VSTORE(p, v) _mm512_storeu_ps(p, v)
#define VSET1(x) _mm512_set1_ps(x)
#define VADD(a, b) _mm512_add_ps(a, b)
#define VSUB(a, b) _mm512_sub_ps(a, b)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
/* maxps returns its second operand when one is NaN: 0, as rt_relu */
#define VRELU(v) _mm512_max_ps(v, _mm512_setzero_ps())
#define VPOSBITS(v) ((unsigned)_mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_GT_OQ))
#define VKEEPBITS(d, bits) _mm512_maskz_mov_ps((__mmask16)(bits), d)
#define VHSUM(v) _mm512_reduce_add_ps(v)
#define SFX(name) name##_avx512

#include "kernels/batchnorm_simd.h"
