/* Helpers shared by the distillation losses: argument checks that name the loss and both shapes,
 * the per-sample-to-reduction step, pooling two maps to a common size, small constant tensors. */
#ifndef RT_KD_UTIL_H
#define RT_KD_UTIL_H
#include <stdio.h>
#include <string.h>

#include "retort/kd.h"

/* Return NULL from a loss if any input is NULL (an earlier op failed: its message stands) or the
 * context already holds an error. */
#define KD_INPUTS(ctx, loss, ...)                                                                                      \
    do {                                                                                                               \
        const void *ins_[] = {__VA_ARGS__};                                                                            \
        if (rt_status(ctx)) return NULL;                                                                               \
        for (size_t i_ = 0; i_ < sizeof ins_ / sizeof ins_[0]; i_++)                                                   \
            if (!ins_[i_]) {                                                                                           \
                rt_fail(ctx, RT_EINVAL, "%s: input %zu is NULL", loss, i_);                                            \
                return NULL;                                                                                           \
            }                                                                                                          \
    } while (0)

/* "loss: student <what> (..) and teacher <what> (..): why"; returns NULL. */
static inline rt_tensor *kd_fail2(rt_ctx *ctx, const char *loss, const char *what, const rt_tensor *s,
                                  const rt_tensor *t, const char *why) {
    char bs[96], bt[96];
    rt_fail(ctx, RT_ESHAPE, "%s: student %s %s and teacher %s %s: %s", loss, what, rt_shape_str(s, bs), what,
            rt_shape_str(t, bt), why);
    return NULL;
}

static inline int kd_check_reduction(rt_ctx *ctx, const char *loss, rt_reduction red) {
    if (red == RT_MEAN || red == RT_SUM || red == RT_NONE) return 0;
    return rt_fail(ctx, RT_EINVAL, "%s: unknown reduction %d", loss, (int)red);
}

/* per (B,) -> itself (RT_NONE), its mean or its sum (0-dim). */
static inline rt_tensor *kd_reduce(rt_ctx *ctx, rt_tensor *per, rt_reduction red) {
    if (!per || red == RT_NONE) return per;
    return red == RT_SUM ? rt_sum_all(ctx, per) : rt_mean_all(ctx, per);
}

/* Per-sample MSE (mean over each sample's elements) under a kd reduction: rt_mse's NONE and MEAN
 * agree with it; its SUM (over elements) does not, so SUM sums the per-sample values. */
static inline rt_tensor *kd_mse(rt_ctx *ctx, rt_tensor *a, rt_tensor *b, rt_reduction red) {
    return red == RT_SUM ? rt_sum_all(ctx, rt_mse(ctx, a, b, RT_NONE)) : rt_mse(ctx, a, b, red);
}

/* Per-sample mean of x (B,...) over everything but the batch dim: (B,). */
static inline rt_tensor *kd_sample_mean(rt_ctx *ctx, rt_tensor *x) {
    if (!x) return NULL;
    rt_tensor *f = rt_reshape(ctx, x, 2, (int64_t[]){x->shape[0], -1});
    return rt_mean(ctx, f, 1, 0);
}

/* Pools whichever of *a, *b (both (B,C,H,W)) is larger in a spatial dim to the smaller size
 * (min H, min W); no-op when they match. 0 ok, else the context's error. */
static inline int kd_pool_common(rt_ctx *ctx, rt_tensor **a, rt_tensor **b) {
    int64_t h = (*a)->shape[2] < (*b)->shape[2] ? (*a)->shape[2] : (*b)->shape[2];
    int64_t w = (*a)->shape[3] < (*b)->shape[3] ? (*a)->shape[3] : (*b)->shape[3];
    if ((*a)->shape[2] != h || (*a)->shape[3] != w) *a = rt_adaptive_avgpool2d(ctx, *a, h, w);
    if ((*b)->shape[2] != h || (*b)->shape[3] != w) *b = rt_adaptive_avgpool2d(ctx, *b, h, w);
    return rt_status(ctx);
}

/* Flattens x (B,...) to (B, D). */
static inline rt_tensor *kd_flat2(rt_ctx *ctx, rt_tensor *x) {
    if (!x) return NULL;
    return rt_reshape(ctx, x, 2, (int64_t[]){x->shape[0], -1});
}

/* A non-empty 4-D map with at least one sample and a non-empty plane. */
static inline int kd_is_map(const rt_tensor *x) {
    return x->ndim == 4 && x->shape[0] > 0 && x->shape[1] > 0 && x->shape[2] > 0 && x->shape[3] > 0;
}

#endif
