/* Parameter sets: named views into one parameter buffer, one gradient buffer and one buffer of
 * non-trained state (BN running statistics), so optimisers and checkpoints see flat arrays and a
 * look-ahead is a re-pointing of views (rt_params_bind). Also the feature-tap list. */
#include <stdlib.h>
#include <string.h>

#include "retort/nn.h"

void rt_params_init(rt_paramset *ps) { memset(ps, 0, sizeof *ps); }

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

rt_tensor *rt_params_add(rt_ctx *ctx, rt_paramset *ps, const char *name, rt_param_kind kind, int ndim,
                         const int64_t *shape) {
    if (rt_status(ctx)) return NULL;
    if (ps->finalized) {
        rt_fail(ctx, RT_ESTATE, "params: cannot add '%s' after rt_params_finalize", name);
        return NULL;
    }
    if (!name || !name[0] || strlen(name) >= sizeof ps->items[0]->name) {
        rt_fail(ctx, RT_EINVAL, "params: name '%s' is empty or longer than %zu characters", name ? name : "",
                sizeof ps->items[0]->name - 1);
        return NULL;
    }
    if (kind != RT_PARAM && kind != RT_BUFFER) {
        rt_fail(ctx, RT_EINVAL, "params: '%s' has an unknown kind %d", name, (int)kind);
        return NULL;
    }
    if (ndim < 0 || ndim > RT_MAX_DIMS) {
        rt_fail(ctx, RT_ESHAPE, "params: '%s' has %d dims (at most %d)", name, ndim, RT_MAX_DIMS);
        return NULL;
    }
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0) {
            rt_fail(ctx, RT_ESHAPE, "params: '%s' has a negative size in dim %d", name, i);
            return NULL;
        }
    if (rt_params_find(ps, name)) {
        rt_fail(ctx, RT_EINVAL, "params: duplicate name '%s'", name);
        return NULL;
    }
    if (ps->count == ps->cap) {
        int cap = ps->cap ? 2 * ps->cap : 32;
        rt_param **items = realloc(ps->items, (size_t)cap * sizeof *items);
        if (!items) {
            rt_fail(ctx, RT_ENOMEM, "params: out of memory adding '%s'", name);
            return NULL;
        }
        ps->items = items;
        ps->cap = cap;
    }
    rt_param *p = calloc(1, sizeof *p); /* one allocation each: modules keep &p->t across growth */
    if (!p) {
        rt_fail(ctx, RT_ENOMEM, "params: out of memory adding '%s'", name);
        return NULL;
    }
    strcpy(p->name, name);
    p->kind = kind;
    rt_tensor_init(&p->t, NULL, ndim, shape);
    p->t.name = p->name;
    p->numel = (size_t)rt_numel(&p->t);
    if (kind == RT_PARAM) {
        p->offset = ps->n;
        ps->n += p->numel;
        /* 1-D parameters are biases and normalisation affines: the usual no-weight-decay set */
        p->no_decay = ndim <= 1;
    } else {
        p->offset = ps->nbuf;
        ps->nbuf += p->numel;
        p->is_int = ends_with(name, "num_batches_tracked");
    }
    ps->items[ps->count++] = p;
    return &p->t;
}

static float *alloc_floats(size_t n) {
    size_t bytes = (n ? n : 1) * sizeof(float);
    bytes = (bytes + 63) / 64 * 64; /* aligned_alloc wants a multiple of the alignment */
    float *p = aligned_alloc(64, bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

/* Points every view at data/grad (parameters) and the buffer array (buffers). */
static void point_views(rt_paramset *ps, float *data, float *grad, float *buffers) {
    for (int i = 0; i < ps->count; i++) {
        rt_param *p = ps->items[i];
        if (p->kind == RT_PARAM) {
            p->t.data = data + p->offset;
            p->t.grad = grad + p->offset;
            p->t.requires_grad = 1;
        } else {
            p->t.data = buffers + p->offset;
            p->t.grad = NULL;
            p->t.requires_grad = 0;
        }
        p->t.node = NULL;
    }
    ps->bound_data = data;
    ps->bound_grad = grad;
    ps->bound_buffers = buffers;
}

int rt_params_finalize(rt_ctx *ctx, rt_paramset *ps) {
    if (rt_status(ctx)) return rt_status(ctx);
    if (ps->finalized) return rt_fail(ctx, RT_ESTATE, "params: finalized twice");
    ps->data = alloc_floats(ps->n);
    ps->grad = alloc_floats(ps->n);
    ps->buffers = alloc_floats(ps->nbuf);
    if (!ps->data || !ps->grad || !ps->buffers) {
        free(ps->data);
        free(ps->grad);
        free(ps->buffers);
        ps->data = ps->grad = ps->buffers = NULL;
        return rt_fail(ctx, RT_ENOMEM, "params: out of memory for %zu parameters and %zu buffer values", ps->n,
                       ps->nbuf);
    }
    point_views(ps, ps->data, ps->grad, ps->buffers);
    ps->finalized = 1;
    return RT_OK;
}

void rt_params_free(rt_paramset *ps) {
    if (!ps) return;
    for (int i = 0; i < ps->count; i++) free(ps->items[i]);
    free(ps->items);
    free(ps->data);
    free(ps->grad);
    free(ps->buffers);
    rt_params_init(ps);
}

rt_param *rt_params_find(const rt_paramset *ps, const char *name) {
    for (int i = 0; i < ps->count; i++)
        if (strcmp(ps->items[i]->name, name) == 0) return ps->items[i];
    return NULL;
}

/* Zeroes the gradients the views point at now (the set's own unless re-bound). */
void rt_params_zero_grad(rt_paramset *ps) {
    if (ps->bound_grad) memset(ps->bound_grad, 0, ps->n * sizeof(float));
}

/* A NULL data or grad means the set's own buffer for that one. */
void rt_params_bind(rt_paramset *ps, float *data, float *grad) {
    if (!ps->finalized) return;
    point_views(ps, data ? data : ps->data, grad ? grad : ps->grad, ps->bound_buffers);
}

void rt_params_bind_buffers(rt_paramset *ps, float *buffers) {
    if (!ps->finalized) return;
    point_views(ps, ps->bound_data, ps->bound_grad, buffers ? buffers : ps->buffers);
}

void rt_params_lookahead(const rt_paramset *ps, float *dst, float xi, const float *g) {
    const float *theta = ps->data;
    int64_t n = (int64_t)ps->n;
#pragma omp parallel for schedule(static) /* over parameter elements */
    for (int64_t i = 0; i < n; i++) dst[i] = theta[i] - xi * g[i];
}

/* ---- feature taps ---- */

void rt_taps_put(rt_taps *taps, const char *name, rt_tensor *t) {
    if (!taps || !t) return; /* an unwanted tap a model skipped, or an op that failed (the error is in ctx) */
    for (int i = 0; i < taps->n; i++)
        if (strcmp(taps->name[i], name) == 0) {
            taps->t[i] = t;
            return;
        }
    RT_ASSERT(taps->n < RT_MAX_TAPS);
    if (taps->n >= RT_MAX_TAPS) return;
    taps->name[taps->n] = name;
    taps->t[taps->n++] = t;
}

int rt_taps_wants(const rt_taps *taps, const char *name) {
    if (!taps) return 0;
    if (!taps->want) return 1;
    for (int i = 0; i < taps->nwant; i++)
        if (strcmp(taps->want[i], name) == 0) return 1;
    return 0;
}

rt_tensor *rt_taps_get(const rt_taps *taps, const char *name) {
    if (!taps) return NULL;
    for (int i = 0; i < taps->n; i++)
        if (strcmp(taps->name[i], name) == 0) return taps->t[i];
    return NULL;
}
