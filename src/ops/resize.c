/* Resizing of (N,C,H,W) to (N,C,OH,OW) as F.interpolate(size=...): nearest or bilinear (with or
 * without align_corners), over the kernels of src/kernels/pool.c. */
#include "kernels/pool.h"
#include "ops/op_util.h"

typedef struct {
    rt_resize_mode mode;
    int align_corners;
} resize_saved;

static void resize_backward(rt_ctx *ctx, rt_node *n) {
    resize_saved *sv = n->saved;
    rt_tensor *x = n->src[0], *y = n->out;
    float *gx = rt_grad_of(ctx, x);
    if (!gx) return;
    int64_t P = x->shape[0] * x->shape[1];
    if (sv->mode == RT_RESIZE_NEAREST)
        rt_resize_nearest_backward(P, x->shape[2], x->shape[3], y->shape[2], y->shape[3], gx, y->grad);
    else
        rt_resize_bilinear_backward(P, x->shape[2], x->shape[3], y->shape[2], y->shape[3], sv->align_corners, gx,
                                    y->grad);
}
static const rt_opdef op_resize = {"resize", resize_backward};

rt_tensor *rt_resize(rt_ctx *ctx, rt_tensor *x, int64_t oh, int64_t ow, rt_resize_mode mode, int align_corners) {
    RT_OP_INPUTS(ctx, x);
    char b[96];
    if (mode != RT_RESIZE_NEAREST && mode != RT_RESIZE_BILINEAR) {
        rt_fail(ctx, RT_EINVAL, "resize: unknown mode %d", (int)mode);
        return NULL;
    }
    if (x->ndim != 4) {
        rt_fail(ctx, RT_ESHAPE, "resize: input must be (N,C,H,W), got %s", rt_shape_str(x, b));
        return NULL;
    }
    if (oh <= 0 || ow <= 0 || x->shape[2] <= 0 || x->shape[3] <= 0) {
        rt_fail(ctx, RT_ESHAPE, "resize: output size (%lld,%lld) for input %s", (long long)oh, (long long)ow,
                rt_shape_str(x, b));
        return NULL;
    }
    x = rt_need_contiguous(ctx, x);
    if (!x) return NULL;
    rt_tensor *y = rt_new4(ctx, x->shape[0], x->shape[1], oh, ow);
    if (!y) return NULL;
    int64_t P = x->shape[0] * x->shape[1];
    if (mode == RT_RESIZE_NEAREST)
        rt_resize_nearest_forward(P, x->shape[2], x->shape[3], oh, ow, y->data, x->data);
    else
        rt_resize_bilinear_forward(P, x->shape[2], x->shape[3], oh, ow, align_corners, y->data, x->data);
    rt_node *nd = rt_record(ctx, &op_resize, y, 1, &x, sizeof(resize_saved));
    if (nd) *(resize_saved *)nd->saved = (resize_saved){mode, align_corners != 0};
    return rt_status(ctx) ? NULL : y;
}
