/* Variational information distillation: a 1x1-conv regressor of the student's map predicts the
 * teacher's map as the mean of a Gaussian with a learnable per-channel variance; the loss is the
 * negative log-likelihood (without its constant), as RepDistiller's VIDLoss. */
#include <math.h>
#include <stdlib.h>

#include "kd/kd_util.h"
#include "nn/nn_impl.h"

rt_kd_vid *rt_kd_vid_new(rt_ctx *ctx, rt_paramset *ps, const char *prefix, int64_t c_in, int64_t c_mid, int64_t c_out,
                         float init_var) {
    if (rt_status(ctx)) return NULL;
    if (!ps || !prefix) {
        rt_fail(ctx, RT_EINVAL, "vid: parameter set or prefix is NULL");
        return NULL;
    }
    if (c_in <= 0 || c_mid <= 0 || c_out <= 0 || !(init_var > 1e-5f)) {
        rt_fail(ctx, RT_EINVAL, "vid %s: channels in %lld, mid %lld, out %lld must be positive and init_var %g > 1e-5",
                prefix, (long long)c_in, (long long)c_mid, (long long)c_out, (double)init_var);
        return NULL;
    }
    rt_kd_vid *v = calloc(1, sizeof *v);
    if (!v) {
        rt_fail(ctx, RT_ENOMEM, "vid %s: out of memory", prefix);
        return NULL;
    }
    *v = (rt_kd_vid){c_in, c_mid, c_out, init_var, 1e-5f, NULL, NULL};
    char reg[128], n0[128], n2[128], n4[128], ls[128];
    if (rt_nn_join(ctx, reg, prefix, "regressor") || rt_nn_join(ctx, n0, reg, "0") || rt_nn_join(ctx, n2, reg, "2") ||
        rt_nn_join(ctx, n4, reg, "4") || rt_nn_join(ctx, ls, prefix, "log_scale"))
        goto fail;
    rt_module *mods[5] = {rt_nn_conv2d(ctx, ps, n0, c_in, c_mid, 1, 1, 0, 1, 0), rt_nn_relu(),
                          rt_nn_conv2d(ctx, ps, n2, c_mid, c_mid, 1, 1, 0, 1, 0), rt_nn_relu(),
                          rt_nn_conv2d(ctx, ps, n4, c_mid, c_out, 1, 1, 0, 1, 0)};
    v->regressor = rt_nn_sequential(ctx, reg, 5, mods); /* takes the children, also on failure */
    if (!v->regressor) goto fail;
    v->log_scale = rt_params_add(ctx, ps, ls, RT_PARAM, 1, &c_out);
    if (!rt_status(ctx)) return v;
fail:
    rt_kd_vid_free(v);
    return NULL;
}

void rt_kd_vid_init(rt_kd_vid *v, rt_rng *rng) {
    if (!v || !v->log_scale || !v->log_scale->data) return;
    rt_module_init(v->regressor, rng);
    /* softplus(log_scale) + eps = init_var */
    float ls = (float)log(expm1((double)v->init_var - (double)v->eps));
    for (int64_t i = 0; i < v->c_out; i++) v->log_scale->data[i] = ls;
}

void rt_kd_vid_free(rt_kd_vid *v) {
    if (!v) return;
    rt_module_free(v->regressor);
    free(v);
}

rt_tensor *rt_kd_vid_loss(rt_ctx *ctx, rt_kd_vid *v, rt_tensor *s, rt_tensor *t, rt_reduction red) {
    KD_INPUTS(ctx, "vid", v, s, t);
    if (kd_check_reduction(ctx, "vid", red)) return NULL;
    if (!kd_is_map(s) || !kd_is_map(t) || s->shape[0] != t->shape[0])
        return kd_fail2(ctx, "vid", "feature", s, t, "must be non-empty (B,C,H,W) maps with the same batch size");
    if (s->shape[1] != v->c_in || t->shape[1] != v->c_out) {
        char b[160];
        snprintf(b, sizeof b, "the loss was built for %lld student and %lld teacher channels", (long long)v->c_in,
                 (long long)v->c_out);
        return kd_fail2(ctx, "vid", "feature", s, t, b);
    }
    if (kd_pool_common(ctx, &s, &t)) return NULL;
    rt_tensor *mu = rt_module_forward(v->regressor, ctx, s, NULL);
    /* var = softplus(log_scale) + eps, as (1,C,1,1) */
    rt_tensor *var = rt_add_scalar(ctx, rt_log(ctx, rt_add_scalar(ctx, rt_exp(ctx, v->log_scale), 1.0f)), v->eps);
    var = rt_reshape(ctx, var, 4, (int64_t[]){1, v->c_out, 1, 1});
    rt_tensor *d2 = rt_pow_scalar(ctx, rt_sub(ctx, mu, t), 2.0f);
    rt_tensor *nlp = rt_mul_scalar(ctx, rt_add(ctx, rt_div(ctx, d2, var), rt_log(ctx, var)), 0.5f);
    return kd_reduce(ctx, kd_sample_mean(ctx, nlp), red);
}
