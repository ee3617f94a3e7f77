/* Tensor headers, shapes and arena-allocated tensors. */
#include <stdio.h>
#include <string.h>

#include "core/ctx_impl.h"
#include "retort/tensor.h"

int64_t rt_numel(const rt_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

void rt_set_contiguous_strides(rt_tensor *t) {
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        t->stride[i] = s;
        s *= t->shape[i];
    }
}

int rt_is_contiguous(const rt_tensor *t) {
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != s) return 0;
        s *= t->shape[i];
    }
    return 1;
}

int rt_same_shape(const rt_tensor *a, const rt_tensor *b) {
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

char *rt_shape_str(const rt_tensor *t, char *buf) {
    int n = sprintf(buf, "(");
    for (int i = 0; i < t->ndim && n < 80; i++) n += sprintf(buf + n, "%s%lld", i ? "," : "", (long long)t->shape[i]);
    sprintf(buf + n, ")");
    return buf;
}

void rt_tensor_init(rt_tensor *t, float *data, int ndim, const int64_t *shape) {
    memset(t, 0, sizeof *t);
    RT_ASSERT(ndim >= 0 && ndim <= RT_MAX_DIMS);
    t->data = data;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    rt_set_contiguous_strides(t);
}

rt_tensor *rt_wrap(rt_ctx *ctx, float *data, int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > RT_MAX_DIMS) {
        rt_fail(ctx, RT_ESHAPE, "tensor: %d dims (at most %d)", ndim, RT_MAX_DIMS);
        return NULL;
    }
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0) {
            rt_fail(ctx, RT_ESHAPE, "tensor: negative size %lld in dim %d", (long long)shape[i], i);
            return NULL;
        }
    rt_tensor *t = rt_arena_alloc(ctx, sizeof *t);
    if (!t) return NULL;
    rt_tensor_init(t, data, ndim, shape);
    return t;
}

rt_tensor *rt_empty(rt_ctx *ctx, int ndim, const int64_t *shape) {
    rt_tensor *t = rt_wrap(ctx, NULL, ndim, shape);
    if (!t) return NULL;
    t->data = rt_arena_alloc(ctx, (size_t)rt_numel(t) * sizeof(float));
    return t->data ? t : NULL;
}

rt_tensor *rt_zeros(rt_ctx *ctx, int ndim, const int64_t *shape) {
    rt_tensor *t = rt_empty(ctx, ndim, shape);
    if (t) memset(t->data, 0, (size_t)rt_numel(t) * sizeof(float));
    return t;
}

rt_tensor *rt_full(rt_ctx *ctx, int ndim, const int64_t *shape, float v) {
    rt_tensor *t = rt_empty(ctx, ndim, shape);
    if (t)
        for (int64_t i = 0, n = rt_numel(t); i < n; i++) t->data[i] = v;
    return t;
}

rt_tensor *rt_empty_like(rt_ctx *ctx, const rt_tensor *t) { return rt_empty(ctx, t->ndim, t->shape); }

rt_tensor *rt_new1(rt_ctx *ctx, int64_t a) { return rt_empty(ctx, 1, (int64_t[]){a}); }
rt_tensor *rt_new2(rt_ctx *ctx, int64_t a, int64_t b) { return rt_empty(ctx, 2, (int64_t[]){a, b}); }
rt_tensor *rt_new4(rt_ctx *ctx, int64_t a, int64_t b, int64_t c, int64_t d) {
    return rt_empty(ctx, 4, (int64_t[]){a, b, c, d});
}

int rt_leaf(rt_ctx *ctx, rt_tensor *t, float *grad) {
    if (t->node) return rt_fail(ctx, RT_EINVAL, "leaf: tensor '%s' was computed by an op", t->name ? t->name : "?");
    if (!grad) {
        grad = rt_arena_zalloc(ctx, (size_t)rt_numel(t) * sizeof(float));
        if (!grad) return rt_status(ctx);
    }
    t->grad = grad;
    t->requires_grad = 1;
    return RT_OK;
}

float rt_at(const rt_tensor *t, const int64_t *idx) {
    int64_t off = 0;
    for (int i = 0; i < t->ndim; i++) {
        RT_ASSERT(idx[i] >= 0 && idx[i] < t->shape[i]);
        off += idx[i] * t->stride[i];
    }
    return t->data[off];
}

void rt_copy_to(const rt_tensor *t, float *dst) {
    int64_t n = rt_numel(t);
    if (rt_is_contiguous(t)) {
        memcpy(dst, t->data, (size_t)n * sizeof(float));
        return;
    }
    int64_t idx[RT_MAX_DIMS] = {0};
    for (int64_t i = 0; i < n; i++) {
        int64_t off = 0;
        for (int d = 0; d < t->ndim; d++) off += idx[d] * t->stride[d];
        dst[i] = t->data[off];
        for (int d = t->ndim - 1; d >= 0; d--) {
            if (++idx[d] < t->shape[d]) break;
            idx[d] = 0;
        }
    }
}
