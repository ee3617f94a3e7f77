/* Helpers shared by the op implementations: argument checks with good messages. */
#ifndef RT_OP_UTIL_H
#define RT_OP_UTIL_H
#include <stdio.h>
#include <string.h>

#include "retort/ops.h"

/* Return NULL from an op if any input is NULL (an earlier op failed: its message stands) or the
 * context already holds an error. */
#define RT_OP_INPUTS(ctx, ...)                                                        \
    do {                                                                              \
        const void *ins_[] = {__VA_ARGS__};                                           \
        if (rt_status(ctx)) return NULL;                                              \
        for (size_t i_ = 0; i_ < sizeof ins_ / sizeof ins_[0]; i_++)                  \
            if (!ins_[i_]) {                                                          \
                rt_fail(ctx, RT_EINVAL, "%s: input %zu is NULL", __func__ + 3, i_);   \
                return NULL;                                                          \
            }                                                                         \
    } while (0)

/* Fail with a shape error naming the op and the shapes of up to two tensors. */
static inline rt_tensor *rt_shape_fail(rt_ctx *ctx, const char *op, const char *what, const rt_tensor *a,
                                       const rt_tensor *b) {
    char sa[96] = "", sb[96] = "";
    if (a) rt_shape_str(a, sa);
    if (b) rt_shape_str(b, sb);
    rt_fail(ctx, RT_ESHAPE, "%s: %s%s%s%s%s", op, what, a ? " " : "", sa, b ? " vs " : "", sb);
    return NULL;
}

/* Normalise a possibly negative dim; -1 if out of range. */
static inline int rt_dim_index(int dim, int ndim) {
    if (dim < 0) dim += ndim;
    return dim >= 0 && dim < ndim ? dim : -1;
}

/* A contiguous version of x for a kernel that needs one: x itself, or a recorded copy. */
static inline rt_tensor *rt_need_contiguous(rt_ctx *ctx, rt_tensor *x) {
    return rt_is_contiguous(x) ? x : rt_contiguous(ctx, x);
}

/* dst += src over n floats (the common backward step). */
static inline void rt_axpy1(float *dst, const float *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] += src[i];
}

#endif
