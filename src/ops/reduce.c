/* Reductions and normalisers: sum/mean/max along a dim, whole-tensor sum/mean, L2 normalisation,
 * softmax and log-softmax with temperature, over the kernels in src/kernels/reduce.c. Each sees its
 * input as (outer, D, inner) around the reduced dim. */
#include <math.h>

#include "kernels/reduce.h"
#include "ops/op_util.h"

typedef struct {
    int64_t outer, D, inner;
    float scale;  /* sum/mean: 1 or 1/D; softmax: 1/T; l2: eps */
    int lg;       /* log_softmax */
    int64_t *idx; /* max: argmax along D (arena) */
    float *norm;  /* l2: the unclamped norms (arena) */
} reduce_saved;

/* Resolves dim (negative counts from the end; a 0-dim tensor has one dim of size 1), the
 * (outer, D, inner) view and the output shape without dim (or with size 1 when keepdim). Returns
 * the output rank, or -1 with the error set. */
static int split_dim(rt_ctx *ctx, const char *op, const rt_tensor *x, int dim, int keepdim, reduce_saved *s,
                     int64_t *out_shape) {
    int nd = x->ndim ? x->ndim : 1, d = rt_dim_index(dim, nd);
    if (d < 0) {
        char b[96];
        rt_fail(ctx, RT_ESHAPE, "%s: dim %d out of range for %s", op, dim, rt_shape_str(x, b));
        return -1;
    }
    s->outer = s->inner = 1;
    s->D = x->ndim ? x->shape[d] : 1;
    for (int i = 0; i < d; i++) s->outer *= x->shape[i];
    for (int i = d + 1; i < x->ndim; i++) s->inner *= x->shape[i];
    int on = 0;
    for (int i = 0; i < x->ndim; i++)
        if (i != d)
            out_shape[on++] = x->shape[i];
        else if (keepdim)
            out_shape[on++] = 1;
    return on;
}

static rt_node *record_reduce(rt_ctx *ctx, const rt_opdef *op, rt_tensor *y, rt_tensor *x, const reduce_saved *s) {
    rt_node *n = rt_record(ctx, op, y, 1, &x, sizeof(reduce_saved));
    if (n) *(reduce_saved *)n->saved = *s;
    return n;
}

/* ---- sum and mean along a dim ---- */

static void sum_backward(rt_ctx *ctx, rt_node *n) {
    reduce_saved *s = n->saved;
    float *gx = rt_grad_of(ctx, n->src[0]);
    if (gx) rt_reduce_sum_backward(s->outer, s->D, s->inner, s->scale, gx, n->out->grad);
}
static const rt_opdef op_sum = {"sum", sum_backward};
static const rt_opdef op_mean = {"mean", sum_backward};

static rt_tensor *reduce_sum(rt_ctx *ctx, const rt_opdef *op, rt_tensor *x, int dim, int keepdim, int mean) {
    reduce_saved s = {0};
    int64_t sh[RT_MAX_DIMS];
    int on = split_dim(ctx, op->name, x, dim, keepdim, &s, sh);
    if (on < 0 || !(x = rt_need_contiguous(ctx, x))) return NULL;
    rt_tensor *y = rt_empty(ctx, on, sh);
    if (!y) return NULL;
    double scale = mean ? 1.0 / (double)s.D : 1.0;
    s.scale = (float)scale;
    rt_reduce_sum_forward(s.outer, s.D, s.inner, scale, y->data, x->data);
    record_reduce(ctx, op, y, x, &s);
    return rt_status(ctx) ? NULL : y;
}

rt_tensor *rt_sum(rt_ctx *ctx, rt_tensor *x, int dim, int keepdim) {
    RT_OP_INPUTS(ctx, x);
    return reduce_sum(ctx, &op_sum, x, dim, keepdim, 0);
}

rt_tensor *rt_mean(rt_ctx *ctx, rt_tensor *x, int dim, int keepdim) {
    RT_OP_INPUTS(ctx, x);
    return reduce_sum(ctx, &op_mean, x, dim, keepdim, 1);
}

/* ---- mean of squares along a dim ---- */

static void mean_sq_backward(rt_ctx *ctx, rt_node *n) {
    reduce_saved *s = n->saved;
    int fresh; /* x's first gradient this pass (AT's taps): written, not added to zeros */
    float *gx = rt_grad_of_fresh(ctx, n->src[0], &fresh);
    if (gx) rt_reduce_sumsq_backward(s->outer, s->D, s->inner, s->scale, gx, n->out->grad, n->src[0]->data, fresh);
}
static const rt_opdef op_mean_sq = {"mean_sq", mean_sq_backward};

rt_tensor *rt_mean_sq(rt_ctx *ctx, rt_tensor *x, int dim, int keepdim) {
    RT_OP_INPUTS(ctx, x);
    reduce_saved s = {0};
    int64_t sh[RT_MAX_DIMS];
    int on = split_dim(ctx, op_mean_sq.name, x, dim, keepdim, &s, sh);
    if (on < 0 || !(x = rt_need_contiguous(ctx, x))) return NULL;
    rt_tensor *y = rt_empty(ctx, on, sh);
    if (!y) return NULL;
    double scale = 1.0 / (double)s.D;
    s.scale = (float)scale;
    rt_reduce_sumsq_forward(s.outer, s.D, s.inner, scale, y->data, x->data);
    record_reduce(ctx, &op_mean_sq, y, x, &s);
    return rt_status(ctx) ? NULL : y;
}

/* ---- whole-tensor sum and mean: 0-dim outputs ---- */

static const rt_opdef op_sum_all = {"sum_all", sum_backward};
static const rt_opdef op_mean_all = {"mean_all", sum_backward};

static rt_tensor *reduce_all(rt_ctx *ctx, const rt_opdef *op, rt_tensor *x, int mean) {
    if (!(x = rt_need_contiguous(ctx, x))) return NULL;
    int64_t n = rt_numel(x);
    rt_tensor *y = rt_empty(ctx, 0, NULL);
    if (!y) return NULL;
    double scale = mean ? 1.0 / (double)n : 1.0;
    y->data[0] = (float)(rt_sum_all_f64(n, x->data) * scale);
    reduce_saved s = {.outer = 1, .D = n, .inner = 1, .scale = (float)scale};
    record_reduce(ctx, op, y, x, &s);
    return rt_status(ctx) ? NULL : y;
}

rt_tensor *rt_sum_all(rt_ctx *ctx, rt_tensor *x) {
    RT_OP_INPUTS(ctx, x);
    return reduce_all(ctx, &op_sum_all, x, 0);
}

rt_tensor *rt_mean_all(rt_ctx *ctx, rt_tensor *x) {
    RT_OP_INPUTS(ctx, x);
    return reduce_all(ctx, &op_mean_all, x, 1);
}

/* ---- max along a dim: the gradient goes to the first maximum ---- */

static void max_backward(rt_ctx *ctx, rt_node *n) {
    reduce_saved *s = n->saved;
    float *gx = rt_grad_of(ctx, n->src[0]);
    if (gx) rt_reduce_max_backward(s->outer, s->D, s->inner, gx, n->out->grad, s->idx);
}
static const rt_opdef op_max = {"max", max_backward};

rt_tensor *rt_max(rt_ctx *ctx, rt_tensor *x, int dim, int keepdim) {
    RT_OP_INPUTS(ctx, x);
    reduce_saved s = {0};
    int64_t sh[RT_MAX_DIMS];
    int on = split_dim(ctx, "max", x, dim, keepdim, &s, sh);
    if (on < 0) return NULL;
    if (s.D == 0) {
        char b[96];
        rt_fail(ctx, RT_ESHAPE, "max: cannot reduce an empty dim %d of %s", dim, rt_shape_str(x, b));
        return NULL;
    }
    if (!(x = rt_need_contiguous(ctx, x))) return NULL;
    rt_tensor *y = rt_empty(ctx, on, sh);
    s.idx = y ? rt_arena_alloc(ctx, (size_t)(s.outer * s.inner) * sizeof(int64_t)) : NULL;
    if (!s.idx) return NULL;
    rt_reduce_max_forward(s.outer, s.D, s.inner, y->data, s.idx, x->data);
    record_reduce(ctx, &op_max, y, x, &s);
    return rt_status(ctx) ? NULL : y;
}

/* ---- L2 normalisation, as F.normalize ---- */

static void l2_backward(rt_ctx *ctx, rt_node *n) {
    reduce_saved *s = n->saved;
    float *gx = rt_grad_of(ctx, n->src[0]);
    if (gx) rt_l2norm_backward(s->outer, s->D, s->inner, s->scale, gx, n->out->grad, n->out->data, s->norm);
}
static const rt_opdef op_l2_normalize = {"l2_normalize", l2_backward};

rt_tensor *rt_l2_normalize(rt_ctx *ctx, rt_tensor *x, int dim, float eps) {
    RT_OP_INPUTS(ctx, x);
    if (!(eps >= 0)) {
        rt_fail(ctx, RT_EINVAL, "l2_normalize: eps must be >= 0, got %g", (double)eps);
        return NULL;
    }
    reduce_saved s = {.scale = eps};
    int64_t sh[RT_MAX_DIMS];
    if (split_dim(ctx, "l2_normalize", x, dim, 1, &s, sh) < 0 || !(x = rt_need_contiguous(ctx, x))) return NULL;
    rt_tensor *y = rt_empty_like(ctx, x);
    s.norm = y ? rt_arena_alloc(ctx, (size_t)(s.outer * s.inner) * sizeof(float)) : NULL;
    if (!s.norm) return NULL;
    rt_l2norm_forward(s.outer, s.D, s.inner, eps, y->data, s.norm, x->data);
    record_reduce(ctx, &op_l2_normalize, y, x, &s);
    return rt_status(ctx) ? NULL : y;
}

/* ---- softmax and log-softmax of x / T ---- */

static void softmax_backward(rt_ctx *ctx, rt_node *n) {
    reduce_saved *s = n->saved;
    float *gx = rt_grad_of(ctx, n->src[0]);
    if (gx) rt_softmax_backward(s->outer, s->D, s->inner, s->scale, s->lg, gx, n->out->grad, n->out->data);
}
static const rt_opdef op_softmax = {"softmax", softmax_backward};
static const rt_opdef op_log_softmax = {"log_softmax", softmax_backward};

static rt_tensor *softmax(rt_ctx *ctx, const rt_opdef *op, rt_tensor *x, int dim, float T, int lg) {
    if (!(T > 0) || !isfinite(T)) {
        rt_fail(ctx, RT_EINVAL, "%s: temperature must be positive and finite, got %g", op->name, (double)T);
        return NULL;
    }
    reduce_saved s = {.scale = 1.0f / T, .lg = lg};
    int64_t sh[RT_MAX_DIMS];
    if (split_dim(ctx, op->name, x, dim, 1, &s, sh) < 0 || !(x = rt_need_contiguous(ctx, x))) return NULL;
    rt_tensor *y = rt_empty_like(ctx, x);
    if (!y) return NULL;
    rt_softmax_forward(s.outer, s.D, s.inner, s.scale, lg, y->data, x->data);
    record_reduce(ctx, op, y, x, &s);
    return rt_status(ctx) ? NULL : y;
}

rt_tensor *rt_softmax(rt_ctx *ctx, rt_tensor *x, int dim, float T) {
    RT_OP_INPUTS(ctx, x);
    return softmax(ctx, &op_softmax, x, dim, T, 0);
}

rt_tensor *rt_log_softmax(rt_ctx *ctx, rt_tensor *x, int dim, float T) {
    RT_OP_INPUTS(ctx, x);
    return softmax(ctx, &op_log_softmax, x, dim, T, 1);
}
