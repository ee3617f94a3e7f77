/* Optimiser update kernels: element-wise, in place over raw float ranges. Each overwrites the
 * parameters and its state (it is an update, not a gradient accumulation). The formulas are
 * PyTorch's single-tensor paths; the caller folds the step count into the scalar arguments. */
#ifndef RT_KERNELS_OPTIM_H
#define RT_KERNELS_OPTIM_H
#include <stdint.h>

/* SGD. p, g (n), buf (n, or NULL when mu == 0). d = g + wd p; buf = first ? d : mu buf + d;
 * d = nesterov ? d + mu buf : buf; p -= lr d. */
void rt_sgd_update(float *p, const float *g, float *buf, int64_t n, float lr, float wd, float mu, int nesterov,
                   int first);

/* Adam / AdamW. p, g, m, v (n). l2: g += l2 p; decoupled: p *= 1 - lr decoupled (AdamW);
 * m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= step_size m / (sqrt(v) / bc2_sqrt + eps),
 * with step_size = lr / (1 - b1^t) and bc2_sqrt = sqrt(1 - b2^t) computed by the caller. */
void rt_adam_update(float *p, const float *g, float *m, float *v, int64_t n, float lr, float l2, float decoupled,
                    float b1, float b2, float eps, float step_size, float bc2_sqrt);

#endif
