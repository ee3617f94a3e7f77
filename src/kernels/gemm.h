/* Dense products: the one place Retort calls BLAS (OpenBLAS's cblas), row-major.
 * C = alpha * op(A) @ op(B) + beta * C, op(A) (M,K), op(B) (K,N), C (M,N). */
#ifndef RT_GEMM_H
#define RT_GEMM_H
#include <stdint.h>

void rt_sgemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
              const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
/* The reference: triple loop in double, for tests of everything built on rt_sgemm. */
void rt_sgemm_ref(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                  int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
#endif
