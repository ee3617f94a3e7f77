/* Batch-norm kernels over x viewed as (N,C,S), S = H*W (1 for (N,C) input). Statistics are per
 * channel over its N*S values. The fast kernels (batchnorm.c) run OpenMP over channels and sum each
 * channel in a fixed order, so results do not depend on the thread count; the references
 * (batchnorm_ref.c) are plain loops for tests. */
#ifndef RT_KERNELS_BATCHNORM_H
#define RT_KERNELS_BATCHNORM_H
#include <stdint.h>

// x (N,C,S); mean, var (C), overwritten: the batch mean and biased variance per channel
void rt_bn_stats(const float *x, int64_t N, int64_t C, int64_t S, float *mean, float *var);
void rt_bn_stats_ref(const float *x, int64_t N, int64_t C, int64_t S, float *mean, float *var);

// x, y (N,C,S); mean, invstd, gamma, beta (C), gamma/beta may be NULL (1, 0); y overwritten:
// y = (x - mean) * invstd * gamma + beta
void rt_bn_apply(const float *x, const float *mean, const float *invstd, const float *gamma, const float *beta,
                 int64_t N, int64_t C, int64_t S, float *y);
void rt_bn_apply_ref(const float *x, const float *mean, const float *invstd, const float *gamma, const float *beta,
                     int64_t N, int64_t C, int64_t S, float *y);

// dy, x, dx (N,C,S); mean, invstd, gamma, dgamma, dbeta (C). Accumulates into dx, dgamma, dbeta (each
// may be NULL: skipped); gamma NULL = 1. batch_stats = 1: mean/invstd are the batch's own statistics
// (training, gradient flows through them); 0: they are constants (eval, running statistics).
void rt_bn_backward(const float *dy, const float *x, const float *mean, const float *invstd, const float *gamma,
                    int batch_stats, int64_t N, int64_t C, int64_t S, float *dx, float *dgamma, float *dbeta);
void rt_bn_backward_ref(const float *dy, const float *x, const float *mean, const float *invstd, const float *gamma,
                        int batch_stats, int64_t N, int64_t C, int64_t S, float *dx, float *dgamma, float *dbeta);

#endif
