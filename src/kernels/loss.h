/* Loss kernels: per-sample losses (double, one value per row) and their backward given per-sample
 * output gradients g (B). Rows run in parallel (OpenMP over the batch); each row is summed in a fixed
 * order, so results do not depend on the thread count. Backward kernels accumulate. */
#ifndef RT_KERNELS_LOSS_H
#define RT_KERNELS_LOSS_H
#include <stdint.h>

// logits (B,K), labels (B) in [0,K); per (B), lse (B) overwritten: sample losses
// (1-eps)*nll + eps*mean_k(-logp_k) and the rows' log-sum-exp
void rt_ce_forward(const float *logits, const int32_t *labels, float smoothing, int64_t B, int64_t K, double *per,
                   float *lse);
// logits, dlogits (B,K); labels, lse, g (B); accumulates dlogits
void rt_ce_backward(const float *logits, const int32_t *labels, const float *lse, float smoothing, const float *g,
                    int64_t B, int64_t K, float *dlogits);

// logits, target (B,K); per, lse (B) overwritten: -sum_k target_k * logp_k and the log-sum-exp
void rt_soft_ce_forward(const float *logits, const float *target, int64_t B, int64_t K, double *per, float *lse);
// logits, target, dlogits, dtarget (B,K); lse, g (B); accumulates dlogits, dtarget (either may be NULL)
void rt_soft_ce_backward(const float *logits, const float *target, const float *lse, const float *g, int64_t B,
                         int64_t K, float *dlogits, float *dtarget);

// logp, target (B,K); per (B) overwritten: sum_k target * (log target - logp), target <= 0 giving
// -target * logp (the t log t -> 0 convention)
void rt_kl_forward(const float *logp, const float *target, int64_t B, int64_t K, double *per);
// logp, target, dlogp, dtarget (B,K); g (B); accumulates dlogp (-t) and dtarget (log t + 1 - logp for
// t > 0, -logp otherwise), either may be NULL
void rt_kl_backward(const float *logp, const float *target, const float *g, int64_t B, int64_t K, float *dlogp,
                    float *dtarget);

/* Pointwise losses of d = a - b: MSE d^2; L1 |d|; smooth-L1(beta) 0.5 d^2/beta if |d| < beta else
 * |d| - 0.5 beta (L1 when beta = 0); Huber(delta) 0.5 d^2 if |d| < delta else delta (|d| - 0.5 delta). */
typedef enum { RT_PLOSS_MSE = 0, RT_PLOSS_L1 = 1, RT_PLOSS_SMOOTH_L1 = 2, RT_PLOSS_HUBER = 3 } rt_ploss_kind;
// a, b (B,D); per (B) overwritten: each sample's sum of element losses
void rt_ploss_forward(rt_ploss_kind kind, float param, const float *a, const float *b, int64_t B, int64_t D,
                      double *per);
// a, b, da, db (B,D); g (B), the gradient of each element's loss; accumulates da (+f'(d)), db (-f'(d)),
// either may be NULL
void rt_ploss_backward(rt_ploss_kind kind, float param, const float *a, const float *b, const float *g, int64_t B,
                       int64_t D, float *da, float *db);

#endif
