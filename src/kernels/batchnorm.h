/* Batch-norm kernels over x viewed as (N,C,S), S = H*W (1 for (N,C) input). Statistics are per
 * channel over its N*S values. The fast kernels (batchnorm.c, with AVX2 / AVX-512 instances of
 * batchnorm_simd.h chosen at run time) run OpenMP over channels and sum each channel in a fixed
 * order, so results do not depend on the thread count; the references (batchnorm_ref.c) are plain
 * loops in double for tests.
 *
 * The "act" kernels fuse what follows a batch norm in a residual network: y = act(bn(x) + r), r an
 * optional residual (same shape as x) and act the identity or ReLU. Their forward can write the
 * ReLU's mask as bits, which their backward reads: the ReLU never needs a tensor of its own. */
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

/* ---- fused: y = act(bn(x) + r), act = ReLU when relu, else the identity; r NULL = no residual ---- */

/* The ReLU's mask, which the backward reads instead of y (1/32 of its bytes): one row of
 * RT_BN_MASK_ROW_BYTES(S) bytes per (n,c), element s of the row being bit s % 8 of byte s / 8, set
 * where y > 0. Rows are padded to 16-bit words (the bits of one AVX-512 vector, loaded aligned).
 * The format is the same for every ISA. */
#define RT_BN_MASK_ROW_BYTES(S) (2 * (((S) + 15) / 16))

// x, r, y (N,C,S); gamma, beta (C) or NULL; mean, var, invstd (C), overwritten. Training forward: the
// batch statistics of each channel (as rt_bn_stats; invstd = 1 / sqrt(var + eps)), then that
// channel's outputs while its values are still in cache. y overwritten; y may be x (in place). mask
// (N*C rows, see above) is written when relu and mask != NULL.
void rt_bn_act_train(const float *x, const float *r, const float *gamma, const float *beta, float eps, int relu,
                     int64_t N, int64_t C, int64_t S, float *mean, float *var, float *invstd, float *y, uint8_t *mask);
// Normalisation with given statistics (eval: the running ones). y overwritten, may be x; mask as above.
void rt_bn_act_apply(const float *x, const float *r, const float *mean, const float *invstd, const float *gamma,
                     const float *beta, int relu, int64_t N, int64_t C, int64_t S, float *y, uint8_t *mask);
void rt_bn_act_apply_ref(const float *x, const float *r, const float *mean, const float *invstd, const float *gamma,
                         const float *beta, int relu, int64_t N, int64_t C, int64_t S, float *y, uint8_t *mask);
// dy, x, dx, dr (N,C,S); mean, invstd, gamma, dgamma, dbeta (C); mask the forward's (read only when
// relu). dz = relu ? dy * mask : dy is accumulated into dr and goes through the batch norm's
// backward as rt_bn_backward's dy. dx, dgamma, dbeta, dr accumulate; each may be NULL; dx and dr may
// be one buffer (r = x).
void rt_bn_act_backward(const float *dy, const float *x, const uint8_t *mask, const float *mean, const float *invstd,
                        const float *gamma, int batch_stats, int relu, int64_t N, int64_t C, int64_t S, float *dx,
                        float *dgamma, float *dbeta, float *dr);
void rt_bn_act_backward_ref(const float *dy, const float *x, const uint8_t *mask, const float *mean,
                            const float *invstd, const float *gamma, int batch_stats, int relu, int64_t N, int64_t C,
                            int64_t S, float *dx, float *dgamma, float *dbeta, float *dr);
// The same where set (bit 0: dx, bit 1: dr) says which of dx, dr to overwrite instead of adding to
// (a pass's first gradient: every element is written). With dx and dr one buffer only bit 1 may be
// set: dr's value is stored first, then dx's added.
void rt_bn_act_backward_ex(const float *dy, const float *x, const uint8_t *mask, const float *mean, const float *invstd,
                           const float *gamma, int batch_stats, int relu, int64_t N, int64_t C, int64_t S, float *dx,
                           float *dgamma, float *dbeta, float *dr, int set);

/* The per-ISA instances of batchnorm_simd.h behind the dispatchers above (same contracts). */
#define RT_BN_DECLARE_ISA(SFX)                                                                                         \
    void rt_bn_stats_##SFX(const float *x, int64_t N, int64_t C, int64_t S, float *mean, float *var);                  \
    void rt_bn_act_train_##SFX(const float *x, const float *r, const float *gamma, const float *beta, float eps,       \
                               int relu, int64_t N, int64_t C, int64_t S, float *mean, float *var, float *invstd,      \
                               float *y, uint8_t *mask);                                                               \
    void rt_bn_act_apply_##SFX(const float *x, const float *r, const float *mean, const float *invstd,                 \
                               const float *gamma, const float *beta, int relu, int64_t N, int64_t C, int64_t S,       \
                               float *y, uint8_t *mask);                                                               \
    void rt_bn_act_backward_##SFX(const float *dy, const float *x, const uint8_t *mask, const float *mean,             \
                                  const float *invstd, const float *gamma, int batch_stats, int relu, int64_t N,       \
                                  int64_t C, int64_t S, float *dx, float *dgamma, float *dbeta, float *dr, int set);
RT_BN_DECLARE_ISA(generic)
RT_BN_DECLARE_ISA(avx2)
RT_BN_DECLARE_ISA(avx512)

#endif
