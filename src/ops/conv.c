/* conv2d as torch's F.conv2d: argument checks with messages naming the shapes, the forward over
 * the fast kernels of src/kernels/conv.c, and the backward (data, weight, bias gradients). */
#include "kernels/conv.h"
#include "ops/op_util.h"

typedef struct {
    rt_conv2d_shape s;
} conv2d_saved;

static void conv2d_backward(rt_ctx *ctx, rt_node *n) {
    const rt_conv2d_shape *s = &((conv2d_saved *)n->saved)->s;
    rt_tensor *x = n->src[0], *w = n->src[1], *b = n->nsrc > 2 ? n->src[2] : NULL;
    float *gx = rt_grad_of(ctx, x), *gw = rt_grad_of(ctx, w), *gb = b ? rt_grad_of(ctx, b) : NULL;
    void *ws = NULL;
    size_t wsb = rt_conv2d_workspace(s);
    if ((gx || gw) && wsb && !(ws = rt_scratch(ctx, wsb))) return; /* out of memory: error set */
    if (gx) rt_conv2d_backward_data(s, gx, n->out->grad, w->data, ws);
    if (gw || gb) rt_conv2d_backward_weight(s, gw, gb, n->out->grad, x->data, ws);
}
static const rt_opdef op_conv2d = {"conv2d", conv2d_backward};

rt_tensor *rt_conv2d(rt_ctx *ctx, rt_tensor *x, rt_tensor *w, rt_tensor *bias, const rt_conv2d_args *a) {
    RT_OP_INPUTS(ctx, x, w);
    rt_conv2d_args d = a ? *a : (rt_conv2d_args){0};
    char sx[96], sw[96];
    if (d.stride_h < 0 || d.stride_w < 0 || d.pad_h < 0 || d.pad_w < 0 || d.dil_h < 0 || d.dil_w < 0 || d.groups < 0) {
        rt_fail(ctx, RT_EINVAL, "conv2d: negative stride (%d,%d), padding (%d,%d), dilation (%d,%d) or groups %d",
                d.stride_h, d.stride_w, d.pad_h, d.pad_w, d.dil_h, d.dil_w, d.groups);
        return NULL;
    }
    rt_conv2d_shape s = {0};
    s.sh = d.stride_h ? d.stride_h : 1;
    s.sw = d.stride_w ? d.stride_w : 1;
    s.ph = d.pad_h;
    s.pw = d.pad_w;
    s.dh = d.dil_h ? d.dil_h : 1;
    s.dw = d.dil_w ? d.dil_w : 1;
    s.groups = d.groups ? d.groups : 1;
    if (x->ndim != 4) return rt_shape_fail(ctx, "conv2d", "input must be (N,C,H,W), got", x, NULL);
    if (w->ndim != 4) return rt_shape_fail(ctx, "conv2d", "weight must be (OC,C/groups,KH,KW), got", w, NULL);
    s.N = x->shape[0], s.C = x->shape[1], s.H = x->shape[2], s.W = x->shape[3];
    s.OC = w->shape[0], s.KH = w->shape[2], s.KW = w->shape[3];
    if (w->shape[1] * s.groups != s.C) {
        rt_fail(ctx, RT_ESHAPE, "conv2d: input %s has %lld channels, weight %s expects %lld (groups %lld)",
                rt_shape_str(x, sx), (long long)s.C, rt_shape_str(w, sw), (long long)(w->shape[1] * s.groups),
                (long long)s.groups);
        return NULL;
    }
    if (s.OC % s.groups) {
        rt_fail(ctx, RT_ESHAPE, "conv2d: weight %s has %lld output channels, not divisible by groups %lld",
                rt_shape_str(w, sw), (long long)s.OC, (long long)s.groups);
        return NULL;
    }
    if (bias && (bias->ndim != 1 || bias->shape[0] != s.OC))
        return rt_shape_fail(ctx, "conv2d", "bias must be (OC) for weight", w, bias);
    if (rt_conv2d_shape_finish(&s)) {
        rt_fail(ctx, RT_ESHAPE,
                "conv2d: weight %s with padding (%lld,%lld) and dilation (%lld,%lld) does not fit input %s",
                rt_shape_str(w, sw), (long long)s.ph, (long long)s.pw, (long long)s.dh, (long long)s.dw,
                rt_shape_str(x, sx));
        return NULL;
    }
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
