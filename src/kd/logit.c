/* Logit distillation losses: soft targets (Hinton), l2-logit and decoupled KD (as mdistiller),
 * composed from softmax/log-softmax with temperature and the KL and MSE losses. */
#include "kd/kd_util.h"

/* Two logit matrices of the same non-empty (B,K). */
static int check_logits(rt_ctx *ctx, const char *loss, const rt_tensor *s, const rt_tensor *t) {
    if (s->ndim != 2 || !rt_same_shape(s, t) || rt_numel(s) == 0) {
        kd_fail2(ctx, loss, "logits", s, t, "must be the same non-empty (B,K)");
        return -1;
    }
    return 0;
}

rt_tensor *rt_kd_soft_target(rt_ctx *ctx, rt_tensor *s, rt_tensor *t, float T, rt_reduction red) {
    KD_INPUTS(ctx, "soft_target", s, t);
    if (kd_check_reduction(ctx, "soft_target", red) || check_logits(ctx, "soft_target", s, t)) return NULL;
    if (!(T > 0)) {
        rt_fail(ctx, RT_EINVAL, "soft_target: temperature must be > 0, got %g", (double)T);
        return NULL;
    }
    /* rt_kl_div's reductions are per-sample KL (NONE), their sum (SUM) and 'batchmean' (MEAN) */
    rt_tensor *kl = rt_kl_div(ctx, rt_log_softmax(ctx, s, 1, T), rt_softmax(ctx, t, 1, T), red);
    return rt_mul_scalar(ctx, kl, T * T);
}

rt_tensor *rt_kd_l2_logit(rt_ctx *ctx, rt_tensor *s, rt_tensor *t, rt_reduction red) {
    KD_INPUTS(ctx, "l2_logit", s, t);
    if (kd_check_reduction(ctx, "l2_logit", red) || check_logits(ctx, "l2_logit", s, t)) return NULL;
    return kd_mse(ctx, s, t, red);
}

/* ---- decoupled KD ---- */

/* (B,2): the probability of the target class and the summed probability of the others. */
static rt_tensor *binary_probs(rt_ctx *ctx, rt_tensor *p, rt_tensor *gt, rt_tensor *other) {
    rt_tensor *parts[2] = {rt_sum(ctx, rt_mul(ctx, p, gt), 1, 1), rt_sum(ctx, rt_mul(ctx, p, other), 1, 1)};
    if (!parts[0] || !parts[1]) return NULL;
    return rt_concat(ctx, 2, parts, 1);
}

rt_tensor *rt_kd_dkd(rt_ctx *ctx, rt_tensor *s, rt_tensor *t, const int32_t *labels, float alpha, float beta, float T,
                     rt_reduction red) {
    KD_INPUTS(ctx, "dkd", s, t, labels);
    if (kd_check_reduction(ctx, "dkd", red) || check_logits(ctx, "dkd", s, t)) return NULL;
    const int64_t B = s->shape[0], K = s->shape[1];
    if (K < 2) return kd_fail2(ctx, "dkd", "logits", s, t, "need at least 2 classes");
    if (!(T > 0)) {
        rt_fail(ctx, RT_EINVAL, "dkd: temperature must be > 0, got %g", (double)T);
        return NULL;
    }
    for (int64_t i = 0; i < B; i++)
        if (labels[i] < 0 || labels[i] >= K) {
            char b[96];
            rt_fail(ctx, RT_EINVAL, "dkd: label %d at index %lld out of range [0, %lld) for logits %s", (int)labels[i],
                    (long long)i, (long long)K, rt_shape_str(s, b));
            return NULL;
        }
    /* constant masks: gt (one-hot), other (its complement), 1000 * gt (mdistiller's NCKD mask) */
    rt_tensor *gt = rt_zeros(ctx, 2, (int64_t[]){B, K}), *other = rt_full(ctx, 2, (int64_t[]){B, K}, 1.0f);
    rt_tensor *big = rt_zeros(ctx, 2, (int64_t[]){B, K});
    if (!gt || !other || !big) return NULL;
    for (int64_t i = 0; i < B; i++) {
        gt->data[i * K + labels[i]] = 1.0f;
        other->data[i * K + labels[i]] = 0.0f;
        big->data[i * K + labels[i]] = 1000.0f;
    }
    /* TCKD: KL between the binary (target, rest) distributions */
    rt_tensor *bs = binary_probs(ctx, rt_softmax(ctx, s, 1, T), gt, other);
    rt_tensor *bt = binary_probs(ctx, rt_softmax(ctx, t, 1, T), gt, other);
    rt_tensor *tckd = rt_kl_div(ctx, rt_log(ctx, bs), bt, RT_NONE);
    /* NCKD: KL between the distributions over the non-target classes (the target pushed to -1000) */
    rt_tensor *qs = rt_log_softmax(ctx, rt_sub(ctx, rt_mul_scalar(ctx, s, 1.0f / T), big), 1, 1.0f);
    rt_tensor *qt = rt_softmax(ctx, rt_sub(ctx, rt_mul_scalar(ctx, t, 1.0f / T), big), 1, 1.0f);
    rt_tensor *nckd = rt_kl_div(ctx, qs, qt, RT_NONE);
    rt_tensor *per = rt_add(ctx, rt_mul_scalar(ctx, tckd, alpha * T * T), rt_mul_scalar(ctx, nckd, beta * T * T));
    return kd_reduce(ctx, per, red);
}
