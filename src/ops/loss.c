/* Losses: cross-entropy with hard (optionally smoothed) and soft labels, KL divergence, and the
 * pointwise regression losses (MSE, L1, smooth-L1, Huber). The kernels give one double per sample;
 * the reductions sum those in sample order, so a loss does not depend on the thread count. */
#include "kernels/loss.h"
#include "ops/op_util.h"

/* ---- reductions over per-sample values ----
 * Each sample's value is divided by `norm` (its element count for the pointwise losses' per-sample
 * mean, 1 for CE and KL), so: RT_NONE out_i = per_i / norm; RT_SUM sum_i per_i; RT_MEAN
 * sum_i per_i / (B * norm). */

typedef struct {
    rt_reduction red;
    int64_t B, D;       /* samples, elements per sample (K for CE/KL) */
    double norm;        /* see above */
    float param;        /* smoothing, beta or delta */
    rt_ploss_kind kind; /* pointwise losses */
    float *lse;         /* (B), CE: the rows' log-sum-exp */
    int32_t *labels;    /* (B), CE: a copy of the labels */
} loss_saved;

static int check_reduction(rt_ctx *ctx, const char *op, rt_reduction red) {
    if (red == RT_MEAN || red == RT_SUM || red == RT_NONE) return 0;
    return rt_fail(ctx, RT_EINVAL, "%s: unknown reduction %d", op, (int)red);
}

/* The loss tensor from per-sample values: (B,) for RT_NONE, else a 0-dim scalar. */
static rt_tensor *reduce_output(rt_ctx *ctx, const double *per, int64_t B, double norm, rt_reduction red) {
    if (red == RT_NONE) {
        rt_tensor *y = rt_new1(ctx, B);
        if (y)
            for (int64_t i = 0; i < B; i++) y->data[i] = (float)(per[i] / norm);
        return y;
    }
    double s = 0;
    for (int64_t i = 0; i < B; i++) s += per[i];
    rt_tensor *y = rt_empty(ctx, 0, NULL);
    if (y) y->data[0] = (float)(red == RT_SUM ? s : s / ((double)B * norm));
    return y;
}

/* Per-sample gradients (B) of the output with respect to each sample's element losses, in scratch. */
static float *sample_grads(rt_ctx *ctx, rt_node *n) {
    loss_saved *s = n->saved;
    float *g = rt_scratch(ctx, (size_t)s->B * sizeof(float));
    if (!g) return NULL;
    const float *gy = n->out->grad;
    for (int64_t i = 0; i < s->B; i++)
        g[i] = (float)(s->red == RT_NONE  ? gy[i] / s->norm
                       : s->red == RT_SUM ? (double)gy[0]
                                          : gy[0] / ((double)s->B * s->norm));
    return g;
}

/* The loss output from per-sample values (reduce_output with s's B, norm and reduction), recorded as
 * a node over src that saves s (and a copy of labels when given); returns it, or NULL on error. */
static rt_tensor *finish_loss(rt_ctx *ctx, const rt_opdef *op, const double *per, int nsrc, rt_tensor **src,
                              loss_saved s, const int32_t *labels) {
    rt_tensor *y = reduce_output(ctx, per, s.B, s.norm, s.red);
    if (!y) return NULL;
    rt_node *nd = rt_record(ctx, op, y, nsrc, src, sizeof(loss_saved));
    if (nd) {
        if (labels) {
            s.labels = rt_arena_alloc(ctx, (size_t)s.B * sizeof(int32_t));
            if (!s.labels) return NULL;
            memcpy(s.labels, labels, (size_t)s.B * sizeof(int32_t));
        }
        *(loss_saved *)nd->saved = s;
    }
    return rt_status(ctx) ? NULL : y;
}

/* Two (B,K) inputs for CE/KL: checks shapes, makes them contiguous. */
static int check_bk(rt_ctx *ctx, const char *op, const char *what, rt_tensor **a, rt_tensor **b) {
    if ((*a)->ndim != 2 || rt_numel(*a) == 0 || (b && !rt_same_shape(*a, *b))) {
        rt_shape_fail(ctx, op, what, *a, b ? *b : NULL);
        return -1;
    }
    if (!(*a = rt_need_contiguous(ctx, *a))) return -1;
    if (b && !(*b = rt_need_contiguous(ctx, *b))) return -1;
    return 0;
}

/* ---- cross-entropy with integer labels ---- */

static void ce_backward(rt_ctx *ctx, rt_node *n) {
    loss_saved *s = n->saved;
    float *gx = rt_grad_of(ctx, n->src[0]), *g = gx ? sample_grads(ctx, n) : NULL;
    if (g) rt_ce_backward(n->src[0]->data, s->labels, s->lse, s->param, g, s->B, s->D, gx);
}
static const rt_opdef op_cross_entropy = {"cross_entropy", ce_backward};

rt_tensor *rt_cross_entropy(rt_ctx *ctx, rt_tensor *logits, const int32_t *labels, float label_smoothing,
                            rt_reduction red) {
    RT_OP_INPUTS(ctx, logits, labels);
    if (check_reduction(ctx, "cross_entropy", red)) return NULL;
    if (check_bk(ctx, "cross_entropy", "logits must be a non-empty (B,K), got", &logits, NULL)) return NULL;
    if (!(label_smoothing >= 0 && label_smoothing <= 1)) {
        rt_fail(ctx, RT_EINVAL, "cross_entropy: label_smoothing must be in [0, 1], got %g", (double)label_smoothing);
        return NULL;
    }
    const int64_t B = logits->shape[0], K = logits->shape[1];
    for (int64_t i = 0; i < B; i++)
        if (labels[i] < 0 || labels[i] >= K) {
            char b[96];
            rt_fail(ctx, RT_EINVAL, "cross_entropy: label %d at index %lld out of range [0, %lld) for logits %s",
                    (int)labels[i], (long long)i, (long long)K, rt_shape_str(logits, b));
            return NULL;
        }
    float *lse = rt_arena_alloc(ctx, (size_t)B * sizeof(float));
    double *per = lse ? rt_scratch(ctx, (size_t)B * sizeof(double)) : NULL;
    if (!per) return NULL;
    rt_ce_forward(logits->data, labels, label_smoothing, B, K, per, lse);
    loss_saved s = {red, B, K, 1.0, label_smoothing, 0, lse, NULL};
    return finish_loss(ctx, &op_cross_entropy, per, 1, &logits, s, labels);
}

/* ---- cross-entropy with soft targets ---- */

static void soft_ce_backward(rt_ctx *ctx, rt_node *n) {
    loss_saved *s = n->saved;
    float *gx = rt_grad_of(ctx, n->src[0]), *gt = rt_grad_of(ctx, n->src[1]);
    float *g = gx || gt ? sample_grads(ctx, n) : NULL;
    if (g) rt_soft_ce_backward(n->src[0]->data, n->src[1]->data, s->lse, g, s->B, s->D, gx, gt);
}
static const rt_opdef op_soft_cross_entropy = {"soft_cross_entropy", soft_ce_backward};

rt_tensor *rt_soft_cross_entropy(rt_ctx *ctx, rt_tensor *logits, rt_tensor *target, rt_reduction red) {
    RT_OP_INPUTS(ctx, logits, target);
    if (check_reduction(ctx, "soft_cross_entropy", red)) return NULL;
    if (check_bk(ctx, "soft_cross_entropy", "logits and target must be the same non-empty (B,K), got", &logits,
                 &target))
        return NULL;
    const int64_t B = logits->shape[0], K = logits->shape[1];
    float *lse = rt_arena_alloc(ctx, (size_t)B * sizeof(float));
    double *per = lse ? rt_scratch(ctx, (size_t)B * sizeof(double)) : NULL;
    if (!per) return NULL;
    rt_soft_ce_forward(logits->data, target->data, B, K, per, lse);
    loss_saved s = {red, B, K, 1.0, 0, 0, lse, NULL};
    return finish_loss(ctx, &op_soft_cross_entropy, per, 2, (rt_tensor *[]){logits, target}, s, NULL);
}

/* ---- KL(target || input), input given as log-probabilities ---- */

static void kl_backward(rt_ctx *ctx, rt_node *n) {
    loss_saved *s = n->saved;
    float *gx = rt_grad_of(ctx, n->src[0]), *gt = rt_grad_of(ctx, n->src[1]);
    float *g = gx || gt ? sample_grads(ctx, n) : NULL;
    if (g) rt_kl_backward(n->src[0]->data, n->src[1]->data, g, s->B, s->D, gx, gt);
}
static const rt_opdef op_kl_div = {"kl_div", kl_backward};

rt_tensor *rt_kl_div(rt_ctx *ctx, rt_tensor *input_logp, rt_tensor *target_p, rt_reduction red) {
    RT_OP_INPUTS(ctx, input_logp, target_p);
    if (check_reduction(ctx, "kl_div", red)) return NULL;
    if (check_bk(ctx, "kl_div", "input and target must be the same non-empty (B,K), got", &input_logp, &target_p))
        return NULL;
    const int64_t B = input_logp->shape[0], K = input_logp->shape[1];
    double *per = rt_scratch(ctx, (size_t)B * sizeof(double));
    if (!per) return NULL;
    rt_kl_forward(input_logp->data, target_p->data, B, K, per);
    loss_saved s = {red, B, K, 1.0, 0, 0, NULL, NULL}; /* norm 1, so RT_MEAN is sum / B: PyTorch's 'batchmean' */
    return finish_loss(ctx, &op_kl_div, per, 2, (rt_tensor *[]){input_logp, target_p}, s, NULL);
}

/* ---- pointwise losses of a - b ---- */

static void ploss_backward(rt_ctx *ctx, rt_node *n) {
    loss_saved *s = n->saved;
    float *ga = rt_grad_of(ctx, n->src[0]), *gb = rt_grad_of(ctx, n->src[1]);
    float *g = ga || gb ? sample_grads(ctx, n) : NULL;
    if (g) rt_ploss_backward(s->kind, s->param, n->src[0]->data, n->src[1]->data, g, s->B, s->D, ga, gb);
}
static const rt_opdef op_mse = {"mse", ploss_backward};
static const rt_opdef op_l1 = {"l1", ploss_backward};
static const rt_opdef op_smooth_l1 = {"smooth_l1", ploss_backward};
static const rt_opdef op_huber = {"huber", ploss_backward};

static rt_tensor *pointwise_loss(rt_ctx *ctx, const rt_opdef *op, rt_ploss_kind kind, float param, rt_tensor *a,
                                 rt_tensor *b, rt_reduction red) {
    if (check_reduction(ctx, op->name, red)) return NULL;
    if (!rt_same_shape(a, b)) return rt_shape_fail(ctx, op->name, "input and target shapes differ:", a, b);
    if (rt_numel(a) == 0 || (red == RT_NONE && a->ndim == 0))
        return rt_shape_fail(ctx, op->name, "needs a non-empty input (with a batch dim for RT_NONE), got", a, NULL);
    if (!(a = rt_need_contiguous(ctx, a)) || !(b = rt_need_contiguous(ctx, b))) return NULL;
    const int64_t n = rt_numel(a), B = a->ndim == 0 ? 1 : a->shape[0], D = n / B;
    double *per = rt_scratch(ctx, (size_t)B * sizeof(double));
    if (!per) return NULL;
    rt_ploss_forward(kind, param, a->data, b->data, B, D, per);
    loss_saved s = {red, B, D, (double)D, param, kind, NULL, NULL};
    return finish_loss(ctx, op, per, 2, (rt_tensor *[]){a, b}, s, NULL);
}

rt_tensor *rt_mse(rt_ctx *ctx, rt_tensor *a, rt_tensor *b, rt_reduction red) {
    RT_OP_INPUTS(ctx, a, b);
    return pointwise_loss(ctx, &op_mse, RT_PLOSS_MSE, 0, a, b, red);
}

rt_tensor *rt_l1(rt_ctx *ctx, rt_tensor *a, rt_tensor *b, rt_reduction red) {
    RT_OP_INPUTS(ctx, a, b);
    return pointwise_loss(ctx, &op_l1, RT_PLOSS_L1, 0, a, b, red);
}

rt_tensor *rt_smooth_l1(rt_ctx *ctx, rt_tensor *a, rt_tensor *b, float beta, rt_reduction red) {
    RT_OP_INPUTS(ctx, a, b);
    if (!(beta >= 0)) {
        rt_fail(ctx, RT_EINVAL, "smooth_l1: beta must be >= 0, got %g", (double)beta);
        return NULL;
    }
    return pointwise_loss(ctx, &op_smooth_l1, RT_PLOSS_SMOOTH_L1, beta, a, b, red);
}

rt_tensor *rt_huber(rt_ctx *ctx, rt_tensor *a, rt_tensor *b, float delta, rt_reduction red) {
    RT_OP_INPUTS(ctx, a, b);
    if (!(delta > 0)) {
        rt_fail(ctx, RT_EINVAL, "huber: delta must be > 0, got %g", (double)delta);
        return NULL;
    }
    return pointwise_loss(ctx, &op_huber, RT_PLOSS_HUBER, delta, a, b, red);
}
