/* Batch normalisation (training: batch statistics and a running-stat update; eval: running
 * statistics), the fused relu(batchnorm(x) + residual) of residual networks, and inverted dropout,
 * over the kernels in src/kernels/batchnorm.c. */
#include <math.h>

#include "kernels/batchnorm.h"
#include "ops/op_util.h"

/* ---- batchnorm: x (N,C) or (N,C,H,W), gamma/beta (C) or NULL; fused: relu(batchnorm(x) + r) ---- */

typedef struct {
    float *mean, *invstd; /* (C), arena: the statistics the forward normalised with */
    uint8_t *mask;        /* the fused op's ReLU mask (batchnorm.h), arena; NULL for batchnorm */
    int64_t N, C, S;
    int training; /* 1: batch statistics (gradient flows through them), 0: running statistics */
} bn_saved;

/* src: x, gamma, beta and, for the fused op, the residual (NULL when there is none) */
static void batchnorm_backward(rt_ctx *ctx, rt_node *n) {
    bn_saved *s = n->saved;
    rt_tensor *x = n->src[0], *gamma = n->src[1], *beta = n->src[2];
    int fx; /* x's first gradient of the pass: written, not added to zeros */
    float *gx = rt_grad_of_fresh(ctx, x, &fx), *gg = rt_grad_of(ctx, gamma), *gb = rt_grad_of(ctx, beta);
    rt_bn_act_backward_ex(n->out->grad, x->data, NULL, s->mean, s->invstd, gamma ? gamma->data : NULL, s->training, 0,
                          s->N, s->C, s->S, gx, gg, gb, NULL, fx);
}
static const rt_opdef op_batchnorm = {"batchnorm", batchnorm_backward};

/* The ReLU's mask (bits saved by the forward) folded into the batch norm's reductions and its apply
 * pass, the residual's gradient written alongside. */
static void batchnorm_relu_backward(rt_ctx *ctx, rt_node *n) {
    bn_saved *s = n->saved;
    rt_tensor *x = n->src[0], *gamma = n->src[1], *beta = n->src[2], *r = n->src[3];
    /* a pass's first gradient of x (and of r) is written, not added to zeros; r may be x: one buffer,
     * whose first writer is then r's update (the kernel stores it before adding x's) */
    int fx = 0, fr = 0;
    float *gx = r == x ? NULL : rt_grad_of_fresh(ctx, x, &fx), *gg = rt_grad_of(ctx, gamma), *gb = rt_grad_of(ctx, beta);
    float *gr = rt_grad_of_fresh(ctx, r, &fr);
    if (r == x) gx = gr, fx = 0;
    rt_bn_act_backward_ex(n->out->grad, x->data, s->mask, s->mean, s->invstd, gamma ? gamma->data : NULL, s->training,
                          1, s->N, s->C, s->S, gx, gg, gb, gr, fx | fr << 1);
}
static const rt_opdef op_batchnorm_relu = {"batchnorm_relu", batchnorm_relu_backward};

/* The checks both ops share; on success *xp, *gp, *bp, *rp are contiguous (copies where needed). */
static int bn_prepare(rt_ctx *ctx, const char *name, rt_tensor **xp, rt_tensor **gp, rt_tensor **bp, rt_tensor **rp,
                      const float *running_mean, const float *running_var, int training, float eps) {
    rt_tensor *x = *xp, *gamma = *gp, *beta = *bp, *r = rp ? *rp : NULL;
    if (x->ndim != 2 && x->ndim != 4)
        return !rt_shape_fail(ctx, name, "input must be (N,C) or (N,C,H,W), got", x, NULL);
    const int64_t N = x->shape[0], C = x->shape[1], S = x->ndim == 4 ? x->shape[2] * x->shape[3] : 1;
    if (gamma && (gamma->ndim != 1 || gamma->shape[0] != C))
        return !rt_shape_fail(ctx, name, "gamma must be (C) for input", x, gamma);
    if (beta && (beta->ndim != 1 || beta->shape[0] != C))
        return !rt_shape_fail(ctx, name, "beta must be (C) for input", x, beta);
    if (r && !rt_same_shape(x, r)) return !rt_shape_fail(ctx, name, "residual must have the input's shape", x, r);
    if (!(eps >= 0)) return rt_fail(ctx, RT_EINVAL, "%s: eps must be >= 0, got %g", name, (double)eps);
    if (!training && (!running_mean || !running_var))
        return rt_fail(ctx, RT_EINVAL, "%s: eval mode needs running_mean and running_var", name);
    if (training && N * S < 2) {
        char b[96];
        return rt_fail(ctx, RT_ESHAPE, "%s: training needs more than one value per channel, got input %s", name,
                       rt_shape_str(x, b));
    }
    if (!(*xp = rt_need_contiguous(ctx, x))) return -1;
    if (gamma && !(*gp = rt_need_contiguous(ctx, gamma))) return -1;
    if (beta && !(*bp = rt_need_contiguous(ctx, beta))) return -1;
    if (r && !(*rp = rt_need_contiguous(ctx, r))) return -1;
    return 0;
}

/* Normalises x into y (NULL: in place over x) with batch statistics (training, which also moves
 * the running ones) or the running statistics, then adds r and applies the ReLU when relu, writing
 * its mask when mask is non-NULL. Returns the (C) mean and invstd in the arena, or NULL on error. */
static float *bn_forward(rt_ctx *ctx, const rt_tensor *x, const rt_tensor *r, const rt_tensor *gamma,
                         const rt_tensor *beta, float *running_mean, float *running_var, int training, float momentum,
                         float eps, int relu, float *y, uint8_t *mask) {
    const int64_t N = x->shape[0], C = x->shape[1], S = x->ndim == 4 ? x->shape[2] * x->shape[3] : 1;
    /* mean and invstd stay in the arena for the backward; var is only needed here */
    float *mean = rt_arena_alloc(ctx, 3 * (size_t)C * sizeof(float));
    if (!mean) return NULL;
    float *invstd = mean + C, *var = mean + 2 * C;
    const float *g = gamma ? gamma->data : NULL, *b = beta ? beta->data : NULL, *rd = r ? r->data : NULL;
    if (training) {
        rt_bn_act_train(x->data, rd, g, b, eps, relu, N, C, S, mean, var, invstd, y ? y : x->data, mask);
        const double M = (double)(N * S), m = momentum;
        for (int64_t c = 0; c < C; c++) {
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
        rt_bn_act_apply(x->data, rd, mean, invstd, g, b, relu, N, C, S, y ? y : x->data, mask);
    }
    return mean;
}

static void bn_save(rt_node *nd, float *mean, uint8_t *mask, const rt_tensor *x, int training) {
    if (!nd) return;
    const int64_t C = x->shape[1];
    *(bn_saved *)nd->saved = (bn_saved){.mean = mean,
                                        .invstd = mean + C,
                                        .mask = mask,
                                        .N = x->shape[0],
                                        .C = C,
                                        .S = x->ndim == 4 ? x->shape[2] * x->shape[3] : 1,
                                        .training = training != 0};
}

rt_tensor *rt_batchnorm(rt_ctx *ctx, rt_tensor *x, rt_tensor *gamma, rt_tensor *beta, float *running_mean,
                        float *running_var, int training, float momentum, float eps) {
    RT_OP_INPUTS(ctx, x);
    if (bn_prepare(ctx, "batchnorm", &x, &gamma, &beta, NULL, running_mean, running_var, training, eps)) return NULL;
    rt_tensor *y = rt_empty_like(ctx, x);
    float *mean =
        y ? bn_forward(ctx, x, NULL, gamma, beta, running_mean, running_var, training, momentum, eps, 0, y->data, NULL)
          : NULL;
    if (!mean) return NULL;
    rt_tensor *src[3] = {x, gamma, beta};
    bn_save(rt_record(ctx, &op_batchnorm, y, 3, src, sizeof(bn_saved)), mean, NULL, x, training);
    return rt_status(ctx) ? NULL : y;
}

rt_tensor *rt_batchnorm_relu(rt_ctx *ctx, rt_tensor *x, rt_tensor *residual, rt_tensor *gamma, rt_tensor *beta,
                             float *running_mean, float *running_var, int training, float momentum, float eps,
                             int inplace) {
    RT_OP_INPUTS(ctx, x);
    if (bn_prepare(ctx, "batchnorm_relu", &x, &gamma, &beta, &residual, running_mean, running_var, training, eps))
        return NULL;
    rt_tensor *src[4] = {x, gamma, beta, residual};
    int records = 0; /* as rt_record will decide */
    for (int i = 0; i < 4; i++) records |= rt_grad_enabled(ctx) && src[i] && src[i]->requires_grad;
    /* in place only where nothing is recorded (the backward reads x) and x is no leaf */
    const int in_place = inplace && !records && !x->requires_grad;
    rt_tensor *y = in_place ? x : rt_empty_like(ctx, x);
    const int64_t rows = x->shape[0] * x->shape[1], S = x->ndim == 4 ? x->shape[2] * x->shape[3] : 1;
    uint8_t *mask = records ? rt_arena_alloc(ctx, (size_t)(rows * RT_BN_MASK_ROW_BYTES(S))) : NULL;
    if (!y || (records && !mask)) return NULL;
    float *mean = bn_forward(ctx, x, residual, gamma, beta, running_mean, running_var, training, momentum, eps, 1,
                             in_place ? NULL : y->data, mask);
    if (!mean) return NULL;
    /* in place this records nothing (nothing requires a gradient); the op still ends here */
    bn_save(rt_record(ctx, &op_batchnorm_relu, y, 4, src, records ? sizeof(bn_saved) : 0), mean, mask, x, training);
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
