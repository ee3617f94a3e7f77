/* Layers: Linear, Conv2d, BatchNorm2d, ReLU and Sequential, each declaring its parameters under
 * PyTorch's state_dict names, and the PyTorch-default initialisation walk. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn_impl.h"

/* ---- Linear: weight (out,in), bias (out) ---- */

typedef struct {
    rt_module m;
    rt_tensor *w, *b;
} nn_linear;

static rt_tensor *linear_forward(rt_module *m, rt_ctx *ctx, rt_tensor *x, rt_taps *taps) {
    nn_linear *l = (nn_linear *)m;
    return rt_linear(ctx, x, l->w, l->b);
}

rt_module *rt_nn_linear(rt_ctx *ctx, rt_paramset *ps, const char *prefix, int64_t in, int64_t out, int bias) {
    if (in <= 0 || out <= 0) {
        rt_fail(ctx, RT_EINVAL, "Linear %s: sizes in %lld, out %lld must be positive", prefix, (long long)in,
                (long long)out);
        return NULL;
    }
    nn_linear *l = rt_nn_module_alloc(ctx, sizeof *l, "Linear", prefix, linear_forward);
    char name[128];
    if (!l || rt_nn_join(ctx, name, prefix, "weight")) goto fail;
    l->w = rt_params_add(ctx, ps, name, RT_PARAM, 2, (int64_t[]){out, in});
    if (bias && !rt_nn_join(ctx, name, prefix, "bias")) l->b = rt_params_add(ctx, ps, name, RT_PARAM, 1, &out);
    if (!rt_status(ctx)) return &l->m;
fail:
    rt_module_free(l ? &l->m : NULL);
    return NULL;
}

/* ---- Conv2d: weight (out,in/groups,k,k), bias (out) ---- */

typedef struct {
    rt_module m;
    rt_tensor *w, *b;
    rt_conv2d_args args;
} nn_conv;

static rt_tensor *conv_forward(rt_module *m, rt_ctx *ctx, rt_tensor *x, rt_taps *taps) {
    nn_conv *c = (nn_conv *)m;
    return rt_conv2d(ctx, x, c->w, c->b, &c->args);
}

rt_module *rt_nn_conv2d(rt_ctx *ctx, rt_paramset *ps, const char *prefix, int64_t in, int64_t out, int k, int stride,
                        int pad, int groups, int bias) {
    if (in <= 0 || out <= 0 || k <= 0 || stride <= 0 || pad < 0 || groups <= 0 || in % groups || out % groups) {
        rt_fail(ctx, RT_EINVAL,
                "Conv2d %s: bad configuration in %lld, out %lld, kernel %d, stride %d, pad %d, groups %d "
                "(sizes positive, pad >= 0, channels divisible by groups)",
                prefix, (long long)in, (long long)out, k, stride, pad, groups);
        return NULL;
    }
    nn_conv *c = rt_nn_module_alloc(ctx, sizeof *c, "Conv2d", prefix, conv_forward);
    char name[128];
    if (!c || rt_nn_join(ctx, name, prefix, "weight")) goto fail;
    c->w = rt_params_add(ctx, ps, name, RT_PARAM, 4, (int64_t[]){out, in / groups, k, k});
    if (bias && !rt_nn_join(ctx, name, prefix, "bias")) c->b = rt_params_add(ctx, ps, name, RT_PARAM, 1, &out);
    c->args = (rt_conv2d_args){stride, stride, pad, pad, 1, 1, groups};
    if (!rt_status(ctx)) return &c->m;
fail:
    rt_module_free(c ? &c->m : NULL);
    return NULL;
}

/* ---- BatchNorm2d: weight, bias, running_mean, running_var, num_batches_tracked ---- */

typedef struct {
    rt_module m;
    rt_tensor *w, *b, *mean, *var, *count;
    float momentum, eps;
} nn_bn;

static rt_tensor *bn_forward(rt_module *m, rt_ctx *ctx, rt_tensor *x, rt_taps *taps) {
    nn_bn *bn = (nn_bn *)m;
    rt_tensor *y =
        rt_batchnorm(ctx, x, bn->w, bn->b, bn->mean->data, bn->var->data, m->training, bn->momentum, bn->eps);
    if (y && m->training) bn->count->data[0] += 1; /* PyTorch counts batches in training mode only */
    return y;
}

rt_tensor *rt_nn_batchnorm_relu(rt_module *m, rt_ctx *ctx, rt_tensor *x, rt_tensor *residual, int inplace) {
    if (rt_status(ctx) || !x) return NULL;
    if (!m || m->forward != bn_forward) {
        rt_fail(ctx, RT_EINVAL, "batchnorm_relu: module %s is not a BatchNorm2d", m ? m->name : "(null)");
        return NULL;
    }
    nn_bn *bn = (nn_bn *)m;
    /* the scope rt_module_forward would push from the parent's: the name's last part */
    const char *dot = strrchr(m->name, '.'), *local = dot ? dot + 1 : m->name;
    if (local[0]) rt_scope_push(ctx, local);
    rt_tensor *y = rt_batchnorm_relu(ctx, x, residual, bn->w, bn->b, bn->mean->data, bn->var->data, m->training,
                                     bn->momentum, bn->eps, inplace);
    if (local[0]) rt_scope_pop(ctx);
    if (y && m->training) bn->count->data[0] += 1;
    return y;
}

/* RETORT_FOLD_BN=0 turns the folding off (to compare, or to rule it out) */
static int fold_enabled(void) {
    const char *e = getenv("RETORT_FOLD_BN");
    return !e || strcmp(e, "0") != 0;
}

rt_tensor *rt_nn_conv_bn(rt_module *conv, rt_module *bn, rt_ctx *ctx, rt_tensor *x, rt_tensor *residual, int relu) {
    if (rt_status(ctx) || !x) return NULL;
    if (!conv || conv->forward != conv_forward || !bn || bn->forward != bn_forward) {
        rt_fail(ctx, RT_EINVAL, "conv_bn: modules %s, %s are not a Conv2d and a BatchNorm2d", conv ? conv->name : "(null)",
                bn ? bn->name : "(null)");
        return NULL;
    }
    if (bn->training || rt_grad_enabled(ctx) || !fold_enabled()) {
        rt_tensor *y = rt_module_forward(conv, ctx, x, NULL);
        if (relu) return rt_nn_batchnorm_relu(bn, ctx, y, residual, 1);
        y = rt_module_forward(bn, ctx, y, NULL);
        return residual ? rt_add(ctx, y, residual) : y;
    }
    nn_conv *c = (nn_conv *)conv;
    nn_bn *b = (nn_bn *)bn;
    const char *dot = strrchr(conv->name, '.'), *local = dot ? dot + 1 : conv->name;
    if (local[0]) rt_scope_push(ctx, local);
    rt_tensor *y = rt_conv2d_bn_eval(ctx, x, c->w, c->b, &c->args, b->w, b->b, b->mean->data, b->var->data, b->eps,
                                     residual, relu);
    if (local[0]) rt_scope_pop(ctx);
    return y;
}

rt_module *rt_nn_batchnorm2d(rt_ctx *ctx, rt_paramset *ps, const char *prefix, int64_t channels) {
    if (channels <= 0) {
        rt_fail(ctx, RT_EINVAL, "BatchNorm2d %s: %lld channels", prefix, (long long)channels);
        return NULL;
    }
    nn_bn *bn = rt_nn_module_alloc(ctx, sizeof *bn, "BatchNorm2d", prefix, bn_forward);
    if (!bn) return NULL;
    bn->momentum = 0.1f;
    bn->eps = 1e-5f;
    static const char *const leaf[5] = {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"};
    rt_tensor **slot[5] = {&bn->w, &bn->b, &bn->mean, &bn->var, &bn->count};
    for (int i = 0; i < 5; i++) {
        char name[128];
        if (rt_nn_join(ctx, name, prefix, leaf[i])) break;
        *slot[i] = rt_params_add(ctx, ps, name, i < 2 ? RT_PARAM : RT_BUFFER, i < 4 ? 1 : 0, &channels);
    }
    if (!rt_status(ctx)) return &bn->m;
    rt_module_free(&bn->m);
    return NULL;
}

/* ---- ReLU and Sequential ---- */

static rt_tensor *relu_forward(rt_module *m, rt_ctx *ctx, rt_tensor *x, rt_taps *taps) { return rt_relu(ctx, x); }

/* Parameter-free and created outside any context: NULL only when memory runs out. */
rt_module *rt_nn_relu(void) {
    rt_module *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->type = "ReLU";
    m->forward = relu_forward;
    m->training = 1;
    return m;
}

/* A BatchNorm2d followed by a ReLU runs as one fused op (neither takes taps), in place over its input
 * when a Conv2d child made that input (nothing else holds it). */
static rt_tensor *sequential_forward(rt_module *m, rt_ctx *ctx, rt_tensor *x, rt_taps *taps) {
    for (int i = 0; i < m->nchildren && x; i++) {
        rt_module *c = m->children[i];
        if (c->forward == conv_forward && i + 1 < m->nchildren && m->children[i + 1]->forward == bn_forward) {
            int relu = i + 2 < m->nchildren && m->children[i + 2]->forward == relu_forward;
            x = rt_nn_conv_bn(c, m->children[i + 1], ctx, x, NULL, relu);
            i += 1 + relu;
            continue;
        }
        if (c->forward == bn_forward && i + 1 < m->nchildren && m->children[i + 1]->forward == relu_forward) {
            x = rt_nn_batchnorm_relu(c, ctx, x, NULL, i > 0 && m->children[i - 1]->forward == conv_forward);
            i++;
            continue;
        }
        x = rt_module_forward(c, ctx, x, taps);
    }
    return x;
}

/* Children are named "prefix.0", "prefix.1", ...: an unnamed child (ReLU) gets its name here, a named
 * one must already have it (its parameters were declared under it). Takes ownership of mods, also
 * on failure. */
rt_module *rt_nn_sequential(rt_ctx *ctx, const char *prefix, int n, rt_module **mods) {
    rt_module *m = n >= 0 ? rt_nn_module_alloc(ctx, sizeof *m, "Sequential", prefix, sequential_forward) : NULL;
    if (n < 0) rt_fail(ctx, RT_EINVAL, "Sequential %s: %d children", prefix, n);
    for (int i = 0; m && i < n; i++) {
        char want[128], idx[24];
        snprintf(idx, sizeof idx, "%d", i);
        if (!mods[i]) {
            if (!rt_status(ctx)) rt_fail(ctx, RT_EINVAL, "Sequential %s: child %d is NULL", prefix, i);
            break;
        }
        if (rt_nn_join(ctx, want, prefix, idx)) break;
        if (!mods[i]->name[0]) {
            strcpy(mods[i]->name, want);
        } else if (strcmp(mods[i]->name, want) != 0) {
            rt_fail(ctx, RT_EINVAL, "Sequential %s: child %d is named '%s', expected '%s'", prefix, i, mods[i]->name,
                    want);
            break;
        }
    }
    if (rt_status(ctx)) {
        for (int i = 0; i < n; i++) rt_module_free(mods[i]);
        rt_module_free(m);
        return NULL;
    }
    return rt_nn_adopt(ctx, m, n, mods);
}

/* ---- initialisation ---- */

static void fill_uniform(rt_rng *rng, rt_tensor *t, double bound) {
    for (int64_t i = 0, n = rt_numel(t); i < n; i++) t->data[i] = (float)((2 * rt_rng_uniform(rng) - 1) * bound);
}

static void fill_const(rt_tensor *t, float v) {
    for (int64_t i = 0, n = rt_numel(t); i < n; i++) t->data[i] = v;
}

/* Modules are recognised by their forward function, so a custom module that happens to reuse a
 * type name is never mistaken for one of these structs. */
void rt_nn_init_tree(rt_module *m, rt_rng *rng, int kaiming_fan_out) {
    if (!m) return;
    if (m->forward == linear_forward) {
        nn_linear *l = (nn_linear *)m;
        /* kaiming_uniform_(a = sqrt(5)) = uniform(+-1/sqrt(fan_in)); the bias uses the same bound */
        double bound = 1.0 / sqrt((double)l->w->shape[1]);
        fill_uniform(rng, l->w, bound);
        if (l->b) fill_uniform(rng, l->b, bound);
    } else if (m->forward == conv_forward) {
        nn_conv *c = (nn_conv *)m;
        int64_t rf = c->w->shape[2] * c->w->shape[3];
        double fan_in = (double)(c->w->shape[1] * rf), fan_out = (double)(c->w->shape[0] * rf);
        if (kaiming_fan_out) {
            double std = sqrt(2.0 / fan_out);
            for (int64_t i = 0, n = rt_numel(c->w); i < n; i++) c->w->data[i] = (float)(std * rt_rng_normal(rng));
        } else {
            fill_uniform(rng, c->w, 1.0 / sqrt(fan_in));
        }
        if (c->b) fill_uniform(rng, c->b, 1.0 / sqrt(fan_in));
    } else if (m->forward == bn_forward) {
        nn_bn *bn = (nn_bn *)m;
        fill_const(bn->w, 1.0f);
        fill_const(bn->b, 0.0f);
        fill_const(bn->mean, 0.0f);
        fill_const(bn->var, 1.0f);
        fill_const(bn->count, 0.0f);
    }
    for (int i = 0; i < m->nchildren; i++) rt_nn_init_tree(m->children[i], rng, kaiming_fan_out);
}

void rt_module_init(rt_module *m, rt_rng *rng) { rt_nn_init_tree(m, rng, 0); }
