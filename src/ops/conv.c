/* conv2d as torch's F.conv2d: argument checks with messages naming the shapes, the forward over
 * the fast kernels of src/kernels/conv.c, and the backward (data, weight, bias gradients). */
#include <math.h>

#include "kernels/conv.h"
#include "ops/op_util.h"

typedef struct {
    rt_conv2d_shape s;
} conv2d_saved;

static void conv2d_backward(rt_ctx *ctx, rt_node *n) {
    const rt_conv2d_shape *s = &((conv2d_saved *)n->saved)->s;
    rt_tensor *x = n->src[0], *w = n->src[1], *b = n->nsrc > 2 ? n->src[2] : NULL;
    int fresh; /* x's first gradient this pass: written, not added to zeros */
    float *gx = rt_grad_of_fresh(ctx, x, &fresh), *gw = rt_grad_of(ctx, w), *gb = b ? rt_grad_of(ctx, b) : NULL;
    void *ws = NULL;
    size_t wsb = rt_conv2d_workspace(s);
    if ((gx || gw) && wsb && !(ws = rt_scratch(ctx, wsb))) {
        if (fresh) memset(gx, 0, (size_t)rt_numel(x) * sizeof(float)); /* keep the contract on failure */
        return; /* out of memory: error set */
    }
    if (gx) rt_conv2d_backward_data_ex(s, gx, n->out->grad, w->data, ws, fresh);
    if (gw || gb) rt_conv2d_backward_weight(s, gw, gb, n->out->grad, x->data, ws);
}
static const rt_opdef op_conv2d = {"conv2d", conv2d_backward};

/* Checks the arguments of op (named in errors) and fills s; 0, or -1 with the error set. */
static int conv_shape(rt_ctx *ctx, const char *op, const rt_tensor *x, const rt_tensor *w, const rt_tensor *bias,
                      const rt_conv2d_args *a, rt_conv2d_shape *out) {
    rt_conv2d_args d = a ? *a : (rt_conv2d_args){0};
    char sx[96], sw[96];
    if (d.stride_h < 0 || d.stride_w < 0 || d.pad_h < 0 || d.pad_w < 0 || d.dil_h < 0 || d.dil_w < 0 || d.groups < 0) {
        rt_fail(ctx, RT_EINVAL, "%s: negative stride (%d,%d), padding (%d,%d), dilation (%d,%d) or groups %d", op,
                d.stride_h, d.stride_w, d.pad_h, d.pad_w, d.dil_h, d.dil_w, d.groups);
        return -1;
    }
    rt_conv2d_shape s = {0};
    s.sh = d.stride_h ? d.stride_h : 1;
    s.sw = d.stride_w ? d.stride_w : 1;
    s.ph = d.pad_h;
    s.pw = d.pad_w;
    s.dh = d.dil_h ? d.dil_h : 1;
    s.dw = d.dil_w ? d.dil_w : 1;
    s.groups = d.groups ? d.groups : 1;
    if (x->ndim != 4) return rt_shape_fail(ctx, op, "input must be (N,C,H,W), got", x, NULL), -1;
    if (w->ndim != 4) return rt_shape_fail(ctx, op, "weight must be (OC,C/groups,KH,KW), got", w, NULL), -1;
    s.N = x->shape[0], s.C = x->shape[1], s.H = x->shape[2], s.W = x->shape[3];
    s.OC = w->shape[0], s.KH = w->shape[2], s.KW = w->shape[3];
    if (w->shape[1] * s.groups != s.C) {
        rt_fail(ctx, RT_ESHAPE, "%s: input %s has %lld channels, weight %s expects %lld (groups %lld)", op,
                rt_shape_str(x, sx), (long long)s.C, rt_shape_str(w, sw), (long long)(w->shape[1] * s.groups),
                (long long)s.groups);
        return -1;
    }
    if (s.OC % s.groups) {
        rt_fail(ctx, RT_ESHAPE, "%s: weight %s has %lld output channels, not divisible by groups %lld", op,
                rt_shape_str(w, sw), (long long)s.OC, (long long)s.groups);
        return -1;
    }
    if (bias && (bias->ndim != 1 || bias->shape[0] != s.OC))
        return rt_shape_fail(ctx, op, "bias must be (OC) for weight", w, bias), -1;
    if (rt_conv2d_shape_finish(&s)) {
        rt_fail(ctx, RT_ESHAPE,
                "%s: weight %s with padding (%lld,%lld) and dilation (%lld,%lld) does not fit input %s", op,
                rt_shape_str(w, sw), (long long)s.ph, (long long)s.pw, (long long)s.dh, (long long)s.dw,
                rt_shape_str(x, sx));
        return -1;
    }
    *out = s;
    return 0;
}

rt_tensor *rt_conv2d(rt_ctx *ctx, rt_tensor *x, rt_tensor *w, rt_tensor *bias, const rt_conv2d_args *a) {
    RT_OP_INPUTS(ctx, x, w);
    rt_conv2d_shape s;
    if (conv_shape(ctx, "conv2d", x, w, bias, a, &s)) return NULL;
    x = rt_need_contiguous(ctx, x);
    w = x ? rt_need_contiguous(ctx, w) : NULL;
    if (!x || !w) return NULL;
    if (bias && !(bias = rt_need_contiguous(ctx, bias))) return NULL;
    rt_tensor *y = rt_new4(ctx, s.N, s.OC, s.OH, s.OW);
    if (!y) return NULL;
    size_t wsb = rt_conv2d_workspace(&s);
    void *ws = wsb ? rt_scratch(ctx, wsb) : NULL;
    if (wsb && !ws) return NULL;
    rt_conv2d_forward(&s, y->data, x->data, w->data, bias ? bias->data : NULL, ws);
    rt_tensor *src[3] = {x, w, bias};
    rt_node *nd = rt_record(ctx, &op_conv2d, y, bias ? 3 : 2, src, sizeof(conv2d_saved));
    if (nd) ((conv2d_saved *)nd->saved)->s = s;
    return rt_status(ctx) ? NULL : y;
}

/* ---- eval-mode conv + batch norm (+ residual) (+ ReLU), folded ---- */

rt_tensor *rt_conv2d_bn_eval(rt_ctx *ctx, rt_tensor *x, rt_tensor *w, rt_tensor *bias, const rt_conv2d_args *a,
                             rt_tensor *gamma, rt_tensor *beta, const float *running_mean, const float *running_var,
                             float eps, rt_tensor *residual, int relu) {
    RT_OP_INPUTS(ctx, x, w, running_mean, running_var);
    rt_conv2d_shape s;
    if (conv_shape(ctx, "conv2d_bn_eval", x, w, bias, a, &s)) return NULL;
    rt_tensor *in[5] = {x, w, bias, gamma, beta};
    for (int i = 0; i < 5 && rt_grad_enabled(ctx); i++)
        if (in[i] && in[i]->requires_grad) {
            rt_fail(ctx, RT_ESTATE, "conv2d_bn_eval: forward only, but grad mode is on and input %d requires a gradient",
                    i);
            return NULL;
        }
    for (int i = 3; i < 5; i++)
        if (in[i] && (in[i]->ndim != 1 || in[i]->shape[0] != s.OC))
            return rt_shape_fail(ctx, "conv2d_bn_eval", i == 3 ? "gamma must be (OC) for weight" :
                                 "beta must be (OC) for weight", w, in[i]);
    if (residual && (residual->ndim != 4 || residual->shape[0] != s.N || residual->shape[1] != s.OC ||
                     residual->shape[2] != s.OH || residual->shape[3] != s.OW)) {
        char sr[96];
        rt_fail(ctx, RT_ESHAPE, "conv2d_bn_eval: residual %s must be the output's shape (%lld,%lld,%lld,%lld)",
                rt_shape_str(residual, sr), (long long)s.N, (long long)s.OC, (long long)s.OH, (long long)s.OW);
        return NULL;
    }
    x = rt_need_contiguous(ctx, x);
    w = x ? rt_need_contiguous(ctx, w) : NULL;
    if (!x || !w) return NULL;
    if (bias && !(bias = rt_need_contiguous(ctx, bias))) return NULL;
    if (residual && !(residual = rt_need_contiguous(ctx, residual))) return NULL;
    rt_tensor *y = rt_new4(ctx, s.N, s.OC, s.OH, s.OW);
    if (!y) return NULL;
    /* the folded weights and bias go in the scratch after the convolution's workspace, not in the
     * arena, where a forward's copies would pile up until the step ends */
    int64_t per = rt_numel(w) / s.OC;
    size_t wsb = (rt_conv2d_workspace(&s) + 63) & ~(size_t)63, wfb = ((size_t)(per * s.OC) * sizeof(float) + 63) & ~(size_t)63;
    char *sc = rt_scratch(ctx, wsb + wfb + (size_t)s.OC * sizeof(float));
    if (!sc) return NULL;
    float *wf = (float *)(sc + wsb), *bf = (float *)(sc + wsb + wfb);
    for (int64_t o = 0; o < s.OC; o++) {
        double g = gamma ? gamma->data[o] : 1.0, k = g / sqrt((double)running_var[o] + (double)eps);
        double b0 = bias ? bias->data[o] : 0.0, be = beta ? beta->data[o] : 0.0;
        bf[o] = (float)(be + (b0 - running_mean[o]) * k);
        for (int64_t i = 0; i < per; i++) wf[o * per + i] = (float)(w->data[o * per + i] * k);
    }
    rt_conv_epi epi = {residual ? residual->data : NULL, relu};
    rt_conv2d_forward_epi(&s, y->data, x->data, wf, bf, &epi, wsb ? sc : NULL);
    static const rt_opdef op_conv2d_bn = {"conv2d_bn_eval", NULL};
    rt_op_end(ctx, &op_conv2d_bn); /* for the profiler: nothing is recorded */
    return rt_status(ctx) ? NULL : y;
}
