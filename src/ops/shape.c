/* Shapes and views: reshape, flatten, transpose, slice, contiguous, concat. Views share the
 * source's data; their gradients are separate contiguous buffers routed back by the backward. */
#include <stdlib.h>

#include "ops/op_util.h"

/* Walk every element of a strided view in row-major order of its shape, calling body with the
 * linear (contiguous) index i and the strided offset off. */
#define RT_FOR_STRIDED(t, i, off, body)                                               \
    do {                                                                              \
        int64_t idx_[RT_MAX_DIMS] = {0}, n_ = rt_numel(t);                             \
        for (int64_t i = 0; i < n_; i++) {                                            \
            int64_t off = 0;                                                          \
            for (int d_ = 0; d_ < (t)->ndim; d_++) off += idx_[d_] * (t)->stride[d_]; \
            body;                                                                     \
            for (int d_ = (t)->ndim - 1; d_ >= 0; d_--) {                             \
                if (++idx_[d_] < (t)->shape[d_]) break;                               \
                idx_[d_] = 0;                                                         \
            }                                                                         \
        }                                                                             \
    } while (0)

/* ---- reshape of a contiguous tensor: a view; gradient passes through unchanged ---- */

static void reshape_backward(rt_ctx *ctx, rt_node *n) {
    float *gx = rt_grad_of(ctx, n->src[0]);
    if (gx) rt_axpy1(gx, n->out->grad, rt_numel(n->out));
}
static const rt_opdef op_reshape = {"reshape", reshape_backward};

rt_tensor *rt_reshape(rt_ctx *ctx, rt_tensor *x, int ndim, const int64_t *shape) {
    RT_OP_INPUTS(ctx, x);
    if (ndim < 0 || ndim > RT_MAX_DIMS) return rt_shape_fail(ctx, "reshape", "bad rank for", x, NULL);
    int64_t sh[RT_MAX_DIMS], known = 1;
    int infer = -1;
    for (int i = 0; i < ndim; i++) {
        sh[i] = shape[i];
        if (sh[i] == -1 && infer < 0) infer = i;
        else if (sh[i] < 0) return rt_shape_fail(ctx, "reshape", "bad target size for", x, NULL);
        else known *= sh[i];
    }
    int64_t n = rt_numel(x);
    if (infer >= 0) sh[infer] = known ? n / known : 0;
    int64_t total = 1;
    for (int i = 0; i < ndim; i++) total *= sh[i];
    if (total != n) {
        char b[96];
        rt_tensor tmp;
        rt_tensor_init(&tmp, NULL, ndim, sh);
        rt_fail(ctx, RT_ESHAPE, "reshape: cannot view %s (%lld elements) as %s", rt_shape_str(x, b), (long long)n,
                rt_shape_str(&tmp, (char[96]){0}));
        return NULL;
    }
    x = rt_need_contiguous(ctx, x);
    if (!x) return NULL;
    rt_tensor *y = rt_wrap(ctx, x->data, ndim, sh);
    if (!y) return NULL;
    rt_record(ctx, &op_reshape, y, 1, &x, 0);
    return rt_status(ctx) ? NULL : y;
}

rt_tensor *rt_flatten(rt_ctx *ctx, rt_tensor *x, int start_dim) {
    RT_OP_INPUTS(ctx, x);
    int s = x->ndim == 0 ? 0 : rt_dim_index(start_dim, x->ndim);
    if (s < 0) return rt_shape_fail(ctx, "flatten", "start dim out of range for", x, NULL);
    int64_t sh[RT_MAX_DIMS], rest = 1;
    for (int i = 0; i < s; i++) sh[i] = x->shape[i];
    for (int i = s; i < x->ndim; i++) rest *= x->shape[i];
    sh[s] = rest;
    return rt_reshape(ctx, x, s + 1, sh);
}

/* ---- strided views (transpose, slice): gradient scattered back through the view's strides ---- */

typedef struct {
    rt_tensor view_of_grad; /* the view's geometry applied to the source's gradient buffer */
} view_saved;

static void view_backward(rt_ctx *ctx, rt_node *n) {
    rt_tensor *x = n->src[0];
    float *gx = rt_grad_of(ctx, x);
    if (!gx) return;
    view_saved *s = n->saved;
    rt_tensor v = s->view_of_grad;
    /* the view's offset into x->data, applied to gx (x's grad is contiguous in x's shape, and x is
     * contiguous here, so the same offsets hold) */
    float *base = gx + (n->out->data - x->data);
    const float *gy = n->out->grad;
    RT_FOR_STRIDED(&v, i, off, base[off] += gy[i]);
}
static const rt_opdef op_view = {"view", view_backward};

static rt_tensor *record_view(rt_ctx *ctx, rt_tensor *x, rt_tensor *y) {
    rt_node *nd = rt_record(ctx, &op_view, y, 1, &x, sizeof(view_saved));
    if (nd) ((view_saved *)nd->saved)->view_of_grad = *y;
    return rt_status(ctx) ? NULL : y;
}

rt_tensor *rt_transpose(rt_ctx *ctx, rt_tensor *x, int d0, int d1) {
    RT_OP_INPUTS(ctx, x);
    int a = rt_dim_index(d0, x->ndim), b = rt_dim_index(d1, x->ndim);
    if (a < 0 || b < 0) return rt_shape_fail(ctx, "transpose", "dim out of range for", x, NULL);
    x = rt_need_contiguous(ctx, x); /* views of views are made from a contiguous base */
    if (!x) return NULL;
    rt_tensor *y = rt_wrap(ctx, x->data, x->ndim, x->shape);
    if (!y) return NULL;
    int64_t t = y->shape[a];
    y->shape[a] = y->shape[b];
    y->shape[b] = t;
    t = y->stride[a];
    y->stride[a] = y->stride[b];
    y->stride[b] = t;
    return record_view(ctx, x, y);
}

rt_tensor *rt_slice(rt_ctx *ctx, rt_tensor *x, int dim, int64_t start, int64_t end) {
    RT_OP_INPUTS(ctx, x);
    int d = rt_dim_index(dim, x->ndim);
    if (d < 0) return rt_shape_fail(ctx, "slice", "dim out of range for", x, NULL);
    if (start < 0) start += x->shape[d];
    if (end < 0) end += x->shape[d];
    if (start < 0 || end > x->shape[d] || start > end) {
        char b[96];
        rt_fail(ctx, RT_ESHAPE, "slice: [%lld, %lld) out of range for dim %d of %s", (long long)start, (long long)end,
                d, rt_shape_str(x, b));
        return NULL;
    }
    x = rt_need_contiguous(ctx, x);
    if (!x) return NULL;
    rt_tensor *y = rt_wrap(ctx, x->data + start * x->stride[d], x->ndim, x->shape);
    if (!y) return NULL;
    y->shape[d] = end - start;
    for (int i = 0; i < x->ndim; i++) y->stride[i] = x->stride[i];
    return record_view(ctx, x, y);
}

/* ---- contiguous copy of a strided view ---- */

static void contiguous_backward(rt_ctx *ctx, rt_node *n) {
    rt_tensor *x = n->src[0];
    float *gx = rt_grad_of(ctx, x);
    if (gx) rt_axpy1(gx, n->out->grad, rt_numel(x)); /* x's grad is contiguous in x's shape */
}
static const rt_opdef op_contiguous = {"contiguous", contiguous_backward};

rt_tensor *rt_contiguous(rt_ctx *ctx, rt_tensor *x) {
    RT_OP_INPUTS(ctx, x);
    if (rt_is_contiguous(x)) return x;
    rt_tensor *y = rt_empty(ctx, x->ndim, x->shape);
    if (!y) return NULL;
    rt_copy_to(x, y->data);
    rt_record(ctx, &op_contiguous, y, 1, &x, 0);
    return rt_status(ctx) ? NULL : y;
}

/* ---- concat along dim ---- */

typedef struct {
    int dim;
} concat_saved;

static void concat_backward(rt_ctx *ctx, rt_node *n) {
    int dim = ((concat_saved *)n->saved)->dim;
    rt_tensor *y = n->out;
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < dim; i++) outer *= y->shape[i];
    for (int i = dim + 1; i < y->ndim; i++) inner *= y->shape[i];
    int64_t off = 0, ystep = y->shape[dim] * inner;
    for (int k = 0; k < n->nsrc; k++) {
        rt_tensor *x = n->src[k];
        int64_t len = x->shape[dim] * inner;
        float *gx = rt_grad_of(ctx, x);
        if (gx)
            for (int64_t o = 0; o < outer; o++) rt_axpy1(gx + o * len, y->grad + o * ystep + off, len);
        off += len;
    }
}
static const rt_opdef op_concat = {"concat", concat_backward};

rt_tensor *rt_concat(rt_ctx *ctx, int n, rt_tensor *const *xs, int dim) {
    if (rt_status(ctx)) return NULL;
    if (n <= 0) {
        rt_fail(ctx, RT_EINVAL, "concat: no inputs");
        return NULL;
    }
    for (int k = 0; k < n; k++)
        if (!xs[k]) {
            rt_fail(ctx, RT_EINVAL, "concat: input %d is NULL", k);
            return NULL;
        }
    int d = rt_dim_index(dim, xs[0]->ndim);
    if (d < 0) return rt_shape_fail(ctx, "concat", "dim out of range for", xs[0], NULL);
    rt_tensor **c = rt_arena_alloc(ctx, (size_t)n * sizeof *c);
    if (!c) return NULL;
    int64_t sh[RT_MAX_DIMS];
    for (int i = 0; i < xs[0]->ndim; i++) sh[i] = xs[0]->shape[i];
    sh[d] = 0;
    for (int k = 0; k < n; k++) {
        if (xs[k]->ndim != xs[0]->ndim) return rt_shape_fail(ctx, "concat", "ranks differ:", xs[0], xs[k]);
        for (int i = 0; i < xs[0]->ndim; i++)
            if (i != d && xs[k]->shape[i] != xs[0]->shape[i])
                return rt_shape_fail(ctx, "concat", "shapes differ outside the concat dim:", xs[0], xs[k]);
        if (!(c[k] = rt_need_contiguous(ctx, xs[k]))) return NULL;
        sh[d] += xs[k]->shape[d];
    }
    rt_tensor *y = rt_empty(ctx, xs[0]->ndim, sh);
    if (!y) return NULL;
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < d; i++) outer *= sh[i];
    for (int i = d + 1; i < y->ndim; i++) inner *= sh[i];
    int64_t off = 0, ystep = sh[d] * inner;
    for (int k = 0; k < n; k++) {
        int64_t len = c[k]->shape[d] * inner;
        for (int64_t o = 0; o < outer; o++)
            memcpy(y->data + o * ystep + off, c[k]->data + o * len, (size_t)len * sizeof(float));
        off += len;
    }
    rt_node *nd = rt_record(ctx, &op_concat, y, n, c, sizeof(concat_saved));
    if (nd) ((concat_saved *)nd->saved)->dim = d;
    return rt_status(ctx) ? NULL : y;
}
