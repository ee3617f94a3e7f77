/* Batch normalisation (training: batch statistics and a running-stat update; eval: running
 * statistics) and inverted dropout, over the kernels in src/kernels/batchnorm.c. */
#include <math.h>

#include "kernels/batchnorm.h"
#include "ops/op_util.h"

/* ---- batchnorm: x (N,C) or (N,C,H,W), gamma/beta (C) or NULL ---- */

typedef struct {
    float *mean, *invstd; /* (C), arena: the statistics the forward normalised with */
    int64_t N, C, S;
    int training; /* 1: batch statistics (gradient flows through them), 0: running statistics */
} bn_saved;

static void batchnorm_backward(rt_ctx *ctx, rt_node *n) {
    bn_saved *s = n->saved;
    rt_tensor *x = n->src[0], *gamma = n->src[1], *beta = n->src[2];
    float *gx = rt_grad_of(ctx, x), *gg = rt_grad_of(ctx, gamma), *gb = rt_grad_of(ctx, beta);
    rt_bn_backward(n->out->grad, x->data, s->mean, s->invstd, gamma ? gamma->data : NULL, s->training, s->N, s->C, s->S,
                   gx, gg, gb);
}
static const rt_opdef op_batchnorm = {"batchnorm", batchnorm_backward};

rt_tensor *rt_batchnorm(rt_ctx *ctx, rt_tensor *x, rt_tensor *gamma, rt_tensor *beta, float *running_mean,
                        float *running_var, int training, float momentum, float eps) {
    RT_OP_INPUTS(ctx, x);
    if (x->ndim != 2 && x->ndim != 4)
        return rt_shape_fail(ctx, "batchnorm", "input must be (N,C) or (N,C,H,W), got", x, NULL);
    const int64_t N = x->shape[0], C = x->shape[1], S = x->ndim == 4 ? x->shape[2] * x->shape[3] : 1;
    if (gamma && (gamma->ndim != 1 || gamma->shape[0] != C))
        return rt_shape_fail(ctx, "batchnorm", "gamma must be (C) for input", x, gamma);
    if (beta && (beta->ndim != 1 || beta->shape[0] != C))
        return rt_shape_fail(ctx, "batchnorm", "beta must be (C) for input", x, beta);
    if (!(eps >= 0)) {
        rt_fail(ctx, RT_EINVAL, "batchnorm: eps must be >= 0, got %g", (double)eps);
        return NULL;
    }
    if (!training && (!running_mean || !running_var)) {
        rt_fail(ctx, RT_EINVAL, "batchnorm: eval mode needs running_mean and running_var");
        return NULL;
    }
    if (training && N * S < 2) {
        char b[96];
        rt_fail(ctx, RT_ESHAPE, "batchnorm: training needs more than one value per channel, got input %s",
                rt_shape_str(x, b));
        return NULL;
    }
    if (!(x = rt_need_contiguous(ctx, x))) return NULL;
    if (gamma && !(gamma = rt_need_contiguous(ctx, gamma))) return NULL;
    if (beta && !(beta = rt_need_contiguous(ctx, beta))) return NULL;

    /* mean and invstd stay in the arena for the backward; var is only needed here */
    float *mean = rt_arena_alloc(ctx, 3 * (size_t)C * sizeof(float));
    if (!mean) return NULL;
    float *invstd = mean + C, *var = mean + 2 * C;
    if (training) {
        rt_bn_stats(x->data, N, C, S, mean, var);
        const double M = (double)(N * S), m = momentum;
        for (int64_t c = 0; c < C; c++) {
            invstd[c] = (float)(1.0 / sqrt((double)var[c] + eps));
            /* PyTorch's convention: running = (1 - momentum) * running + momentum * stat, with the
             * unbiased variance */
            if (running_mean) running_mean[c] = (float)((1 - m) * running_mean[c] + m * mean[c]);
            if (running_var) running_var[c] = (float)((1 - m) * running_var[c] + m * var[c] * M / (M - 1));
        }
    } else {
        for (int64_t c = 0; c < C; c++) {
            mean[c] = running_mean[c];
            invstd[c] = (float)(1.0 / sqrt((double)running_var[c] + eps));
        }
    }
    rt_tensor *y = rt_empty_like(ctx, x);
    if (!y) return NULL;
    rt_bn_apply(x->data, mean, invstd, gamma ? gamma->data : NULL, beta ? beta->data : NULL, N, C, S, y->data);
    rt_tensor *src[3] = {x, gamma, beta};
    rt_node *nd = rt_record(ctx, &op_batchnorm, y, 3, src, sizeof(bn_saved));
    if (nd) *(bn_saved *)nd->saved = (bn_saved){mean, invstd, N, C, S, training != 0};
    return rt_status(ctx) ? NULL : y;
}

/* ---- dropout: y = x * keep / (1 - p), keep ~ Bernoulli(1 - p) from the context's RNG ---- */

typedef struct {
    const uint8_t *keep; /* (numel), arena */
    float scale;         /* 1 / (1 - p) */
} dropout_saved;

static void dropout_backward(rt_ctx *ctx, rt_node *n) {
    dropout_saved *s = n->saved;
    float *gx = rt_grad_of(ctx, n->src[0]);
    if (!gx) return;
    const float *gy = n->out->grad;
    for (int64_t i = 0, len = rt_numel(n->out); i < len; i++)
        if (s->keep[i]) gx[i] += gy[i] * s->scale;
}
static const rt_opdef op_dropout = {"dropout", dropout_backward};

rt_tensor *rt_dropout(rt_ctx *ctx, rt_tensor *x, float p, int training) {
    RT_OP_INPUTS(ctx, x);
    if (!(p >= 0 && p < 1)) {
        rt_fail(ctx, RT_EINVAL, "dropout: p must be in [0, 1), got %g", (double)p);
        return NULL;
    }
    if (!training || p == 0) return x;
    x = rt_need_contiguous(ctx, x);
    if (!x) return NULL;
    const int64_t len = rt_numel(x);
    rt_tensor *y = rt_empty_like(ctx, x);
    uint8_t *keep = y ? rt_arena_alloc(ctx, (size_t)len) : NULL;
    if (!keep) return NULL;
    /* the mask is drawn sequentially in element order: the same seed gives the same mask whatever
     * the thread count */
    rt_rng *rng = rt_ctx_rng(ctx);
    const float scale = (float)(1.0 / (1.0 - (double)p));
    for (int64_t i = 0; i < len; i++) {
        keep[i] = rt_rng_uniform(rng) >= (double)p;
        y->data[i] = keep[i] ? x->data[i] * scale : 0.0f;
    }
    rt_node *nd = rt_record(ctx, &op_dropout, y, 1, &x, sizeof(dropout_saved));
    if (nd) *(dropout_saved *)nd->saved = (dropout_saved){keep, scale};
    return rt_status(ctx) ? NULL : y;
}
