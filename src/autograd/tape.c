/* The tape: recording nodes, lazily zeroed per-pass gradients, and the reverse walk. */
#include <string.h>

#include "core/profile.h"
#include "retort/autograd.h"

rt_node *rt_record(rt_ctx *ctx, const rt_opdef *op, rt_tensor *out, int nsrc, rt_tensor *const *src,
                   size_t saved_bytes) {
    const char *scope = rt_prof_on(ctx) ? rt_prof_op(ctx, op->name) : NULL; /* the op's forward ends here */
    out->node = NULL;
    out->requires_grad = 0;
    out->grad = NULL;
    if (!ctx->grad_enabled) return NULL;
    int any = 0;
    for (int i = 0; i < nsrc; i++) any |= src[i] && src[i]->requires_grad;
    if (!any) return NULL;
    rt_node *n = rt_arena_zalloc(ctx, sizeof *n);
    rt_tensor **s = n ? rt_arena_alloc(ctx, (size_t)nsrc * sizeof *s) : NULL;
    void *saved = s && saved_bytes ? rt_arena_zalloc(ctx, saved_bytes) : NULL;
    if (!n || !s || (saved_bytes && !saved)) return NULL;
    memcpy(s, src, (size_t)nsrc * sizeof *s);
    n->op = op;
    n->out = out;
    n->src = s;
    n->nsrc = nsrc;
    n->saved = saved;
    n->prev = ctx->tape;
    n->index = ctx->ntape++;
    n->scope = scope;
    ctx->tape = n;
    out->node = n;
    out->requires_grad = 1;
    return n;
}

void rt_op_end(rt_ctx *ctx, const rt_opdef *op) {
    if (rt_prof_on(ctx)) rt_prof_op(ctx, op->name);
}

float *rt_grad_of_fresh(rt_ctx *ctx, rt_tensor *t, int *fresh) {
    *fresh = 0;
    if (!t || !t->requires_grad) return NULL;
    if (!t->node) return t->grad;
    if (t->grad && t->grad_pass == ctx->pass) return t->grad;
    if (!t->grad && !(t->grad = rt_arena_alloc(ctx, (size_t)rt_numel(t) * sizeof(float)))) return NULL;
    t->grad_pass = ctx->pass;
    *fresh = 1;
    return t->grad;
}

float *rt_grad_of(rt_ctx *ctx, rt_tensor *t) {
    if (!t || !t->requires_grad) return NULL;
    if (!t->node) return t->grad; /* leaf: the caller's buffer, accumulated across passes */
    size_t bytes = (size_t)rt_numel(t) * sizeof(float);
    if (!t->grad) {
        t->grad = rt_arena_zalloc(ctx, bytes);
        t->grad_pass = ctx->pass;
    } else if (t->grad_pass != ctx->pass) {
        memset(t->grad, 0, bytes);
        t->grad_pass = ctx->pass;
    }
    return t->grad;
}

int rt_backward_seed(rt_ctx *ctx, rt_tensor *out, const float *seed) {
    if (!out) return rt_status(ctx) ? rt_status(ctx) : rt_fail(ctx, RT_EINVAL, "backward: NULL tensor");
    if (ctx->status) return ctx->status;
    if (!out->requires_grad)
        return rt_fail(ctx, RT_ESTATE, "backward: '%s' does not require grad (no leaf with a gradient reaches it, "
                                       "or it was computed with grad mode off)",
                       out->name ? out->name : "tensor");
    ctx->pass++;
    if (rt_prof_on(ctx)) rt_prof_mark(ctx);
    float *g = rt_grad_of(ctx, out);
    if (!g) return rt_status(ctx);
    for (int64_t i = 0, n = rt_numel(out); i < n; i++) g[i] += seed[i];
    for (rt_node *n = out->node; n; n = n->prev) {
        rt_tensor *o = n->out;
        if (!o->grad || o->grad_pass != ctx->pass) continue; /* no gradient reached this node */
        n->op->backward(ctx, n);
        if (rt_prof_on(ctx)) rt_prof_backward(ctx, n);
        if (ctx->status) return ctx->status;
    }
    return RT_OK;
}

int rt_backward(rt_ctx *ctx, rt_tensor *scalar) {
    if (scalar && rt_numel(scalar) != 1) {
        char b[96];
        return rt_fail(ctx, RT_ESHAPE, "backward: needs a scalar, got shape %s (use rt_backward_seed)",
                       rt_shape_str(scalar, b));
    }
    const float one = 1.0f;
    return rt_backward_seed(ctx, scalar, &one);
}

rt_tensor *rt_detach(rt_ctx *ctx, rt_tensor *t) {
    if (!t) return NULL;
    rt_tensor *d = rt_arena_alloc(ctx, sizeof *d);
    if (!d) return NULL;
    *d = *t;
    d->requires_grad = 0;
    d->grad = NULL;
    d->node = NULL;
    return d;
}

uint32_t rt_tape_size(const rt_ctx *ctx) { return ctx->ntape; }
