/* Relational distillation losses: similarity preserving, relational KD (distance and angle),
 * probabilistic knowledge transfer and correlation congruence. Each compares (B,B) or (B,B,B)
 * structures of the batch built from matmuls of the flattened features. */
#include <math.h>

#include "kd/kd_util.h"

/* Student and teacher (B,...) with the same B >= min_b and non-empty features. */
static int check_pair(rt_ctx *ctx, const char *loss, const rt_tensor *s, const rt_tensor *t, int64_t min_b) {
    if (s->ndim < 2 || t->ndim < 2 || rt_numel(s) == 0 || rt_numel(t) == 0) {
        kd_fail2(ctx, loss, "feature", s, t, "must be non-empty (B,...) with a feature dim");
        return -1;
    }
    if (s->shape[0] != t->shape[0]) {
        kd_fail2(ctx, loss, "feature", s, t, "batch sizes differ");
        return -1;
    }
    if (s->shape[0] < min_b) {
        char b[64];
        snprintf(b, sizeof b, "needs a batch of at least %lld", (long long)min_b);
        kd_fail2(ctx, loss, "feature", s, t, b);
        return -1;
    }
    return 0;
}

/* f f^T for f (B,D): (B,B). */
static rt_tensor *gram(rt_ctx *ctx, rt_tensor *f) { return rt_matmul(ctx, f, rt_transpose(ctx, f, 0, 1)); }

/* ---- similarity preserving ---- */

static rt_tensor *sp_gram(rt_ctx *ctx, rt_tensor *f) {
    return rt_l2_normalize(ctx, gram(ctx, kd_flat2(ctx, f)), 1, 1e-12f);
}

rt_tensor *rt_kd_sp(rt_ctx *ctx, rt_tensor *s, rt_tensor *t) {
    KD_INPUTS(ctx, "sp", s, t);
    if (check_pair(ctx, "sp", s, t, 1)) return NULL;
    return rt_mse(ctx, sp_gram(ctx, s), sp_gram(ctx, t), RT_MEAN); /* sum / B^2 */
}

/* ---- relational KD ---- */

/* Pairwise distances of the rows of e (B,D), clamped at eps before the sqrt, the diagonal 0, divided
 * by their mean over the off-diagonal pairs: (B,B). */
static rt_tensor *rkd_distances(rt_ctx *ctx, rt_tensor *e, rt_tensor *offdiag) {
    const int64_t B = e->shape[0];
    rt_tensor *sq = rt_sum(ctx, rt_pow_scalar(ctx, e, 2.0f), 1, 1); /* (B,1) */
    rt_tensor *sqt = rt_reshape(ctx, sq, 2, (int64_t[]){1, B});
    rt_tensor *d2 = rt_sub(ctx, rt_add(ctx, sq, sqt), rt_mul_scalar(ctx, gram(ctx, e), 2.0f));
    d2 = rt_add_scalar(ctx, rt_relu(ctx, rt_add_scalar(ctx, d2, -1e-12f)), 1e-12f); /* clamp(min = 1e-12) */
    rt_tensor *d = rt_mul(ctx, rt_sqrt(ctx, d2), offdiag);
    /* the off-diagonal distances are >= 1e-6 > 0, so RepDistiller's mean of d[d > 0] is this */
    rt_tensor *mean = rt_mul_scalar(ctx, rt_sum_all(ctx, d), (float)(1.0 / ((double)B * (double)(B - 1))));
    return rt_div(ctx, d, mean);
}

/* <n(e_j - e_i), n(e_k - e_i)> for all (i,j,k): (B,B,B). */
static rt_tensor *rkd_angles(rt_ctx *ctx, rt_tensor *e) {
    const int64_t B = e->shape[0], D = e->shape[1];
    rt_tensor *a = rt_reshape(ctx, e, 3, (int64_t[]){1, B, D}), *b = rt_reshape(ctx, e, 3, (int64_t[]){B, 1, D});
    rt_tensor *n = rt_l2_normalize(ctx, rt_sub(ctx, a, b), 2, 1e-12f); /* [i,j] = n(e_j - e_i) */
    return rt_matmul(ctx, n, rt_transpose(ctx, n, 1, 2));
}

rt_tensor *rt_kd_rkd(rt_ctx *ctx, rt_tensor *s, rt_tensor *t, float w_dist, float w_angle) {
    KD_INPUTS(ctx, "rkd", s, t);
    if (check_pair(ctx, "rkd", s, t, 2)) return NULL;
    if (!(w_dist >= 0) || !(w_angle >= 0)) {
        rt_fail(ctx, RT_EINVAL, "rkd: weights must be >= 0, got distance %g and angle %g", (double)w_dist,
                (double)w_angle);
        return NULL;
    }
    rt_tensor *fs = kd_flat2(ctx, s), *ft = kd_flat2(ctx, t);
    if (!fs || !ft) return NULL;
    const int64_t B = fs->shape[0];
    rt_tensor *loss = rt_zeros(ctx, 0, NULL);
    if (w_dist > 0) {
        rt_tensor *offdiag = rt_full(ctx, 2, (int64_t[]){B, B}, 1.0f);
        if (!offdiag) return NULL;
        for (int64_t i = 0; i < B; i++) offdiag->data[i * B + i] = 0.0f;
        rt_tensor *ld =
            rt_smooth_l1(ctx, rkd_distances(ctx, fs, offdiag), rkd_distances(ctx, ft, offdiag), 1.0f, RT_MEAN);
        loss = rt_add(ctx, loss, rt_mul_scalar(ctx, ld, w_dist));
    }
    if (w_angle > 0) {
        rt_tensor *la = rt_smooth_l1(ctx, rkd_angles(ctx, fs), rkd_angles(ctx, ft), 1.0f, RT_MEAN);
        loss = rt_add(ctx, loss, rt_mul_scalar(ctx, la, w_angle));
    }
    return loss;
}

/* ---- probabilistic knowledge transfer ---- */

#define PKT_EPS 1e-7f

/* Rows divided by (norm + eps), cosine kernel (K + 1) / 2, rows normalised to sum 1: (B,B). */
static rt_tensor *pkt_probs(rt_ctx *ctx, rt_tensor *f) {
    f = kd_flat2(ctx, f);
    rt_tensor *norm = rt_sqrt(ctx, rt_sum(ctx, rt_pow_scalar(ctx, f, 2.0f), 1, 1));
    rt_tensor *fn = rt_div(ctx, f, rt_add_scalar(ctx, norm, PKT_EPS));
    rt_tensor *k = rt_mul_scalar(ctx, rt_add_scalar(ctx, gram(ctx, fn), 1.0f), 0.5f);
    return rt_div(ctx, k, rt_sum(ctx, k, 1, 1));
}

rt_tensor *rt_kd_pkt(rt_ctx *ctx, rt_tensor *s, rt_tensor *t) {
    KD_INPUTS(ctx, "pkt", s, t);
    if (check_pair(ctx, "pkt", s, t, 1)) return NULL;
    rt_tensor *ps = pkt_probs(ctx, s), *pt = pkt_probs(ctx, t);
    rt_tensor *lr =
        rt_sub(ctx, rt_log(ctx, rt_add_scalar(ctx, pt, PKT_EPS)), rt_log(ctx, rt_add_scalar(ctx, ps, PKT_EPS)));
    return rt_mean_all(ctx, rt_mul(ctx, pt, lr));
}

/* ---- correlation congruence ---- */

/* sum_{p=0..P} c_p S^p with c_p = exp(-2g) (2g)^p / p!, S the Gram matrix of the normalised rows,
 * by Horner's rule. */
static rt_tensor *cc_correlation(rt_ctx *ctx, rt_tensor *f, float gamma, int order) {
    rt_tensor *fn = rt_l2_normalize(ctx, kd_flat2(ctx, f), 1, 1e-12f);
    rt_tensor *S = gram(ctx, fn);
    double c[64];
    c[0] = exp(-2.0 * gamma);
    for (int p = 1; p <= order; p++) c[p] = c[p - 1] * 2.0 * gamma / p;
    rt_tensor *acc = rt_mul_scalar(ctx, S, (float)c[order]);
    for (int p = order - 1; p >= 0; p--) {
        acc = rt_add_scalar(ctx, acc, (float)c[p]);
        if (p > 0) acc = rt_mul(ctx, acc, S);
    }
    return acc;
}

rt_tensor *rt_kd_cc(rt_ctx *ctx, rt_tensor *s, rt_tensor *t, float gamma, int order) {
    KD_INPUTS(ctx, "cc", s, t);
    if (check_pair(ctx, "cc", s, t, 1)) return NULL;
    if (order < 1 || order > 63 || !(gamma > 0)) {
        rt_fail(ctx, RT_EINVAL, "cc: order %d must be in [1, 63] and gamma %g > 0", order, (double)gamma);
        return NULL;
    }
    return rt_mse(ctx, cc_correlation(ctx, s, gamma, order), cc_correlation(ctx, t, gamma, order), RT_MEAN);
}
