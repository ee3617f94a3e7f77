/* Tensors: fp32, up to RT_MAX_DIMS dims, 64-bit shape and strides (in elements). A tensor does
 * not own its data: it points into a parameter buffer, the step arena, or user memory. */
#ifndef RETORT_TENSOR_H
#define RETORT_TENSOR_H
#include "retort/core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RT_MAX_DIMS 6

typedef struct rt_node rt_node;

typedef struct rt_tensor {
    float *data;
    int64_t shape[RT_MAX_DIMS];
    int64_t stride[RT_MAX_DIMS];
    int ndim;
    int requires_grad;  /* a leaf that wants a gradient, or computed from one */
    float *grad;        /* contiguous, in this tensor's shape; owned by caller for leaves */
    uint32_t grad_pass; /* backward pass that last zeroed grad (intermediates only) */
    rt_node *node;      /* tape node that produced it; NULL for leaves */
    const char *name;   /* optional, for messages */
} rt_tensor;

/* Shapes */
int64_t rt_numel(const rt_tensor *t);
int rt_is_contiguous(const rt_tensor *t);
int rt_same_shape(const rt_tensor *a, const rt_tensor *b);
/* Writes "(2,3,32,32)" into buf (at least 96 bytes) and returns buf. */
char *rt_shape_str(const rt_tensor *t, char *buf);
void rt_set_contiguous_strides(rt_tensor *t);

/* Fill a caller-owned struct as a contiguous tensor over data (no allocation). */
void rt_tensor_init(rt_tensor *t, float *data, int ndim, const int64_t *shape);

/* Arena tensors (valid until rt_step_reset). NULL on error, with the context's message set. */
rt_tensor *rt_empty(rt_ctx *ctx, int ndim, const int64_t *shape);
rt_tensor *rt_zeros(rt_ctx *ctx, int ndim, const int64_t *shape);
rt_tensor *rt_full(rt_ctx *ctx, int ndim, const int64_t *shape, float v);
rt_tensor *rt_empty_like(rt_ctx *ctx, const rt_tensor *t);
/* An arena tensor header over external data (no copy). */
rt_tensor *rt_wrap(rt_ctx *ctx, float *data, int ndim, const int64_t *shape);
/* Shorthands for the common ranks: rt_new2(ctx, B, K), rt_new4(ctx, N, C, H, W) (uninitialised). */
rt_tensor *rt_new1(rt_ctx *ctx, int64_t a);
rt_tensor *rt_new2(rt_ctx *ctx, int64_t a, int64_t b);
rt_tensor *rt_new4(rt_ctx *ctx, int64_t a, int64_t b, int64_t c, int64_t d);

/* Mark t as a leaf that wants a gradient (parameters, loss weights, per-sample weights). grad is
 * the caller's buffer (numel floats, accumulated into by every backward pass); NULL = a zeroed
 * arena buffer is allocated. Returns status. */
int rt_leaf(rt_ctx *ctx, rt_tensor *t, float *grad);

/* Element access for tests and small code (no bounds check beyond RT_ASSERT). */
float rt_at(const rt_tensor *t, const int64_t *idx);
/* Copies t (any strides) into dst as contiguous data. */
void rt_copy_to(const rt_tensor *t, float *dst);

#ifdef __cplusplus
}
#endif
#endif
