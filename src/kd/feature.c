/* Feature-map distillation losses: FitNet hints, feature MSE, attention transfer, NST, FSP and
 * ReviewKD's hierarchical context loss, composed from pooling, reductions, matmul and MSE. */
#include "kd/kd_util.h"

/* Student and teacher maps (B,C,H,W) with the same batch size; same_channels also requires equal C. */
static int check_maps(rt_ctx *ctx, const char *loss, const rt_tensor *s, const rt_tensor *t, int same_channels) {
    if (!kd_is_map(s) || !kd_is_map(t)) {
        kd_fail2(ctx, loss, "feature", s, t, "must be non-empty (B,C,H,W) maps");
        return -1;
    }
    if (s->shape[0] != t->shape[0]) {
        kd_fail2(ctx, loss, "feature", s, t, "batch sizes differ");
        return -1;
    }
    if (same_channels && s->shape[1] != t->shape[1]) {
        kd_fail2(ctx, loss, "feature", s, t, "channel counts differ (map the student's with an adapter first)");
        return -1;
    }
    return 0;
}

rt_tensor *rt_kd_fitnet(rt_ctx *ctx, rt_tensor *s, rt_tensor *t, rt_reduction red) {
    KD_INPUTS(ctx, "fitnet", s, t);
    if (kd_check_reduction(ctx, "fitnet", red)) return NULL;
    if (s->ndim < 1 || rt_numel(s) == 0 || !rt_same_shape(s, t))
        return kd_fail2(ctx, "fitnet", "feature", s, t,
                        "must have the same non-empty shape (map the student's with an adapter first)");
    return kd_mse(ctx, s, t, red);
}

rt_tensor *rt_kd_feature_mse(rt_ctx *ctx, rt_tensor *s, rt_tensor *t, rt_reduction red) {
    KD_INPUTS(ctx, "feature_mse", s, t);
    if (kd_check_reduction(ctx, "feature_mse", red)) return NULL;
    if (s->ndim != 4 || t->ndim != 4) {
        if (s->ndim < 1 || rt_numel(s) == 0 || !rt_same_shape(s, t))
            return kd_fail2(ctx, "feature_mse", "feature", s, t,
                            "must be (B,C,H,W) maps or have the same non-empty shape");
    } else if (check_maps(ctx, "feature_mse", s, t, 1) || kd_pool_common(ctx, &s, &t)) {
        return NULL;
    }
    return kd_mse(ctx, s, t, red);
}

/* ---- attention transfer ---- */

/* at(f) = l2_normalize(mean_c(f^2) flattened over HW): (B, HW). */
static rt_tensor *attention_map(rt_ctx *ctx, rt_tensor *f) {
    rt_tensor *a = rt_mean_sq(ctx, f, 1, 0); /* (B,H,W) */
    return rt_l2_normalize(ctx, rt_flatten(ctx, a, 1), 1, 1e-12f);
}

rt_tensor *rt_kd_at(rt_ctx *ctx, rt_tensor *s, rt_tensor *t, rt_reduction red) {
    KD_INPUTS(ctx, "at", s, t);
    if (kd_check_reduction(ctx, "at", red) || check_maps(ctx, "at", s, t, 0) || kd_pool_common(ctx, &s, &t))
        return NULL;
    return kd_mse(ctx, attention_map(ctx, s), attention_map(ctx, t), red);
}

/* ---- neuron selectivity transfer ---- */

/* (B,C,HW) l2-normalised along HW. */
static rt_tensor *nst_rows(rt_ctx *ctx, rt_tensor *f) {
    rt_tensor *r = rt_reshape(ctx, f, 3, (int64_t[]){f->shape[0], f->shape[1], -1});
    return rt_l2_normalize(ctx, r, 2, 1e-12f);
}

/* Per sample, the mean over (Ca, Cb) of (a_i . b_j)^2: (B). */
static rt_tensor *poly2_mean(rt_ctx *ctx, rt_tensor *a, rt_tensor *b) {
    rt_tensor *g = rt_matmul(ctx, a, rt_transpose(ctx, b, 1, 2)); /* (B, Ca, Cb) */
    return kd_sample_mean(ctx, rt_pow_scalar(ctx, g, 2.0f));
}

rt_tensor *rt_kd_nst(rt_ctx *ctx, rt_tensor *s, rt_tensor *t, rt_reduction red) {
    KD_INPUTS(ctx, "nst", s, t);
    if (kd_check_reduction(ctx, "nst", red) || check_maps(ctx, "nst", s, t, 0) || kd_pool_common(ctx, &s, &t))
        return NULL;
    rt_tensor *fs = nst_rows(ctx, s), *ft = nst_rows(ctx, t);
    rt_tensor *kss = poly2_mean(ctx, fs, fs), *ktt = poly2_mean(ctx, ft, ft), *kst = poly2_mean(ctx, fs, ft);
    rt_tensor *per = rt_sub(ctx, rt_add(ctx, ktt, kss), rt_mul_scalar(ctx, kst, 2.0f));
    return kd_reduce(ctx, per, red);
}

/* ---- FSP ---- */

/* The flow matrix hi_flat @ lo_flat^T / HW: (B, C_hi, C_lo), after pooling the pair to a common size. */
static rt_tensor *fsp_matrix(rt_ctx *ctx, rt_tensor *lo, rt_tensor *hi) {
    if (kd_pool_common(ctx, &lo, &hi)) return NULL;
    const int64_t B = lo->shape[0], hw = lo->shape[2] * lo->shape[3];
    rt_tensor *l = rt_reshape(ctx, lo, 3, (int64_t[]){B, lo->shape[1], hw});
    rt_tensor *h = rt_reshape(ctx, hi, 3, (int64_t[]){B, hi->shape[1], hw});
    return rt_mul_scalar(ctx, rt_matmul(ctx, h, rt_transpose(ctx, l, 1, 2)), (float)(1.0 / (double)hw));
}

rt_tensor *rt_kd_fsp(rt_ctx *ctx, rt_tensor *s_lo, rt_tensor *s_hi, rt_tensor *t_lo, rt_tensor *t_hi,
                     rt_reduction red) {
    KD_INPUTS(ctx, "fsp", s_lo, s_hi, t_lo, t_hi);
    if (kd_check_reduction(ctx, "fsp", red)) return NULL;
    const rt_tensor *maps[4] = {s_lo, s_hi, t_lo, t_hi};
    static const char *const names[4] = {"student low", "student high", "teacher low", "teacher high"};
    for (int i = 0; i < 4; i++) {
        char b[96], b0[96];
        if (!kd_is_map(maps[i])) {
            rt_fail(ctx, RT_ESHAPE, "fsp: %s map %s must be a non-empty (B,C,H,W) map", names[i],
                    rt_shape_str(maps[i], b));
            return NULL;
        }
        if (maps[i]->shape[0] != s_lo->shape[0]) {
            rt_fail(ctx, RT_ESHAPE, "fsp: %s map %s and student low map %s: batch sizes differ", names[i],
                    rt_shape_str(maps[i], b), rt_shape_str(s_lo, b0));
            return NULL;
        }
    }
    if (s_lo->shape[1] != t_lo->shape[1]) return kd_fail2(ctx, "fsp", "low map", s_lo, t_lo, "channel counts differ");
    if (s_hi->shape[1] != t_hi->shape[1]) return kd_fail2(ctx, "fsp", "high map", s_hi, t_hi, "channel counts differ");
    return kd_mse(ctx, fsp_matrix(ctx, s_lo, s_hi), fsp_matrix(ctx, t_lo, t_hi), red);
}

/* ---- hierarchical context loss (ReviewKD) ---- */

rt_tensor *rt_kd_hcl(rt_ctx *ctx, rt_tensor *s, rt_tensor *t, rt_reduction red) {
    KD_INPUTS(ctx, "hcl", s, t);
    if (kd_check_reduction(ctx, "hcl", red)) return NULL;
    if (!kd_is_map(s) || !rt_same_shape(s, t))
        return kd_fail2(ctx, "hcl", "feature", s, t, "must be non-empty (B,C,H,W) maps of the same shape");
    rt_tensor *per = rt_mse(ctx, s, t, RT_NONE);
    double cnt = 1.0, tot = 1.0;
    static const int64_t levels[3] = {4, 2, 1};
    for (int i = 0; i < 3; i++) {
        int64_t l = levels[i];
        if (l >= s->shape[2] || l >= s->shape[3]) continue;
        cnt /= 2.0;
        rt_tensor *m = rt_mse(ctx, rt_adaptive_avgpool2d(ctx, s, l, l), rt_adaptive_avgpool2d(ctx, t, l, l), RT_NONE);
        per = rt_add(ctx, per, rt_mul_scalar(ctx, m, (float)cnt));
        tot += cnt;
    }
    return kd_reduce(ctx, rt_mul_scalar(ctx, per, (float)(1.0 / tot)), red);
}
