/* Pooling ops: max, average (count_include_pad) and adaptive average over (N,C,H,W), as PyTorch's
 * max_pool2d, avg_pool2d and adaptive_avg_pool2d, over the kernels of src/kernels/pool.c. */
#include "kernels/pool.h"
#include "ops/op_util.h"

/* Checks x and the window and fills s; a stride of 0 means the window size (PyTorch's default). */
static int pool_shape(rt_ctx *ctx, const char *op, const rt_tensor *x, int kh, int kw, int sh, int sw, int ph, int pw,
                      rt_pool2d_shape *s) {
    char b[96];
    if (x->ndim != 4) {
        rt_fail(ctx, RT_ESHAPE, "%s: input must be (N,C,H,W), got %s", op, rt_shape_str(x, b));
        return 0;
    }
    *s = (rt_pool2d_shape){
        x->shape[0] * x->shape[1], x->shape[2], x->shape[3], kh, kw, sh ? sh : kh, sw ? sw : kw, ph, pw, 0, 0};
    if (sh < 0 || sw < 0 || rt_pool2d_shape_finish(s)) {
        rt_fail(ctx, RT_ESHAPE,
                "%s: window (%d,%d) with stride (%d,%d) and padding (%d,%d) does not fit input %s (window and "
                "stride must be positive, padding at most half the window)",
                op, kh, kw, sh, sw, ph, pw, rt_shape_str(x, b));
        return 0;
    }
    return 1;
}

/* ---- max pooling ---- */

typedef struct {
    rt_pool2d_shape s;
    int32_t *argmax; /* (N*C, OH, OW) winner index in its input plane */
} maxpool_saved;

static void maxpool2d_backward(rt_ctx *ctx, rt_node *n) {
    maxpool_saved *sv = n->saved;
    float *gx = rt_grad_of(ctx, n->src[0]);
    if (gx) rt_maxpool2d_backward(&sv->s, gx, n->out->grad, sv->argmax);
}
static const rt_opdef op_maxpool2d = {"maxpool2d", maxpool2d_backward};

rt_tensor *rt_maxpool2d(rt_ctx *ctx, rt_tensor *x, int kh, int kw, int sh, int sw, int ph, int pw) {
    RT_OP_INPUTS(ctx, x);
    rt_pool2d_shape s;
    if (!pool_shape(ctx, "maxpool2d", x, kh, kw, sh, sw, ph, pw, &s)) return NULL;
    if (s.H * s.W > INT32_MAX) {
        char b[96];
        rt_fail(ctx, RT_ESHAPE, "maxpool2d: input planes of %s are too large", rt_shape_str(x, b));
        return NULL;
    }
    x = rt_need_contiguous(ctx, x);
    if (!x) return NULL;
    rt_tensor *y = rt_new4(ctx, x->shape[0], x->shape[1], s.OH, s.OW);
    if (!y) return NULL;
    /* the winners are kept only when a backward can need them */
    int32_t *am = NULL;
    if (rt_grad_enabled(ctx) && x->requires_grad && !(am = rt_arena_alloc(ctx, (size_t)rt_numel(y) * sizeof(int32_t))))
        return NULL;
    rt_maxpool2d_forward(&s, y->data, am, x->data);
    rt_node *nd = rt_record(ctx, &op_maxpool2d, y, 1, &x, sizeof(maxpool_saved));
    if (nd) *(maxpool_saved *)nd->saved = (maxpool_saved){s, am};
    return rt_status(ctx) ? NULL : y;
}

/* ---- average pooling ---- */

typedef struct {
    rt_pool2d_shape s;
} avgpool_saved;

static void avgpool2d_backward(rt_ctx *ctx, rt_node *n) {
    float *gx = rt_grad_of(ctx, n->src[0]);
    if (gx) rt_avgpool2d_backward(&((avgpool_saved *)n->saved)->s, gx, n->out->grad);
}
static const rt_opdef op_avgpool2d = {"avgpool2d", avgpool2d_backward};

rt_tensor *rt_avgpool2d(rt_ctx *ctx, rt_tensor *x, int kh, int kw, int sh, int sw, int ph, int pw) {
    RT_OP_INPUTS(ctx, x);
    rt_pool2d_shape s;
    if (!pool_shape(ctx, "avgpool2d", x, kh, kw, sh, sw, ph, pw, &s)) return NULL;
    x = rt_need_contiguous(ctx, x);
    if (!x) return NULL;
    rt_tensor *y = rt_new4(ctx, x->shape[0], x->shape[1], s.OH, s.OW);
    if (!y) return NULL;
    rt_avgpool2d_forward(&s, y->data, x->data);
    rt_node *nd = rt_record(ctx, &op_avgpool2d, y, 1, &x, sizeof(avgpool_saved));
    if (nd) ((avgpool_saved *)nd->saved)->s = s;
    return rt_status(ctx) ? NULL : y;
}

/* ---- adaptive average pooling ---- */

static void adaptive_avgpool2d_backward(rt_ctx *ctx, rt_node *n) {
    rt_tensor *x = n->src[0], *y = n->out;
    float *gx = rt_grad_of(ctx, x);
    if (gx)
        rt_adaptive_avgpool2d_backward(x->shape[0] * x->shape[1], x->shape[2], x->shape[3], y->shape[2], y->shape[3],
                                       gx, y->grad);
}
static const rt_opdef op_adaptive_avgpool2d = {"adaptive_avgpool2d", adaptive_avgpool2d_backward};

rt_tensor *rt_adaptive_avgpool2d(rt_ctx *ctx, rt_tensor *x, int64_t oh, int64_t ow) {
    RT_OP_INPUTS(ctx, x);
    char b[96];
    if (x->ndim != 4) {
        rt_fail(ctx, RT_ESHAPE, "adaptive_avgpool2d: input must be (N,C,H,W), got %s", rt_shape_str(x, b));
        return NULL;
    }
    if (oh <= 0 || ow <= 0 || x->shape[2] <= 0 || x->shape[3] <= 0) {
        rt_fail(ctx, RT_ESHAPE, "adaptive_avgpool2d: output size (%lld,%lld) for input %s", (long long)oh,
                (long long)ow, rt_shape_str(x, b));
        return NULL;
    }
    x = rt_need_contiguous(ctx, x);
    if (!x) return NULL;
    rt_tensor *y = rt_new4(ctx, x->shape[0], x->shape[1], oh, ow);
    if (!y) return NULL;
    rt_adaptive_avgpool2d_forward(x->shape[0] * x->shape[1], x->shape[2], x->shape[3], oh, ow, y->data, x->data);
    rt_record(ctx, &op_adaptive_avgpool2d, y, 1, &x, 0);
    return rt_status(ctx) ? NULL : y;
}
