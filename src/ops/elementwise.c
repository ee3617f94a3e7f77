/* Elementwise ops: broadcasting add/sub/mul/div, scalar maps and activations, and the fused
 * relu(a + b) of residual blocks, over the kernels in src/kernels/elementwise.c. Backward of a
 * broadcast operand sums the gradient back to its shape. */
#include "kernels/elementwise.h"
#include "ops/op_util.h"

/* ---- binary, NumPy broadcasting ---- */

typedef struct {
    rt_binop op;
    rt_bcast plan;
} binary_saved;

static void binary_backward(rt_ctx *ctx, rt_node *n) {
    binary_saved *s = n->saved;
    rt_tensor *a = n->src[0], *b = n->src[1];
    const float *gy = n->out->grad, *y = n->out->data;
    float *ga = rt_grad_of(ctx, a);
    if (ga) rt_binary_backward(s->op, 0, &s->plan, ga, gy, a->data, b->data, y);
    float *gb = rt_grad_of(ctx, b); /* after ga: a and b may be one tensor (x * x), both add into it */
    if (gb) rt_binary_backward(s->op, 1, &s->plan, gb, gy, a->data, b->data, y);
}

static const rt_opdef op_add = {"add", binary_backward};
static const rt_opdef op_sub = {"sub", binary_backward};
static const rt_opdef op_mul = {"mul", binary_backward};
static const rt_opdef op_div = {"div", binary_backward};

static rt_tensor *binary(rt_ctx *ctx, rt_binop op, const rt_opdef *def, rt_tensor *a, rt_tensor *b) {
    rt_bcast plan;
    int64_t shape[RT_MAX_DIMS];
    int nd;
    if (rt_bcast_plan(&plan, shape, &nd, a->ndim, a->shape, b->ndim, b->shape))
        return rt_shape_fail(ctx, def->name, "cannot broadcast", a, b);
    a = rt_need_contiguous(ctx, a);
    b = a ? rt_need_contiguous(ctx, b) : NULL;
    if (!a || !b) return NULL;
    rt_tensor *y = rt_empty(ctx, nd, shape);
    if (!y) return NULL;
    rt_binary_forward(op, &plan, y->data, a->data, b->data);
    rt_tensor *src[2] = {a, b};
    rt_node *node = rt_record(ctx, def, y, 2, src, sizeof(binary_saved));
    if (node) *(binary_saved *)node->saved = (binary_saved){op, plan};
    return rt_status(ctx) ? NULL : y;
}

rt_tensor *rt_add(rt_ctx *ctx, rt_tensor *a, rt_tensor *b) {
    RT_OP_INPUTS(ctx, a, b);
    return binary(ctx, RT_BIN_ADD, &op_add, a, b);
}
rt_tensor *rt_sub(rt_ctx *ctx, rt_tensor *a, rt_tensor *b) {
    RT_OP_INPUTS(ctx, a, b);
    return binary(ctx, RT_BIN_SUB, &op_sub, a, b);
}
rt_tensor *rt_mul(rt_ctx *ctx, rt_tensor *a, rt_tensor *b) {
    RT_OP_INPUTS(ctx, a, b);
    return binary(ctx, RT_BIN_MUL, &op_mul, a, b);
}
rt_tensor *rt_div(rt_ctx *ctx, rt_tensor *a, rt_tensor *b) {
    RT_OP_INPUTS(ctx, a, b);
    return binary(ctx, RT_BIN_DIV, &op_div, a, b);
}

/* ---- unary maps: one table entry per op, one shared backward ---- */

typedef struct {
    rt_unop op;
    float s;
} unary_saved;

static void unary_backward(rt_ctx *ctx, rt_node *n) {
    unary_saved *s = n->saved;
    rt_tensor *x = n->src[0];
    float *gx = rt_grad_of(ctx, x);
    if (gx) rt_unary_backward(s->op, s->s, rt_numel(x), gx, n->out->grad, x->data, n->out->data);
}

static const rt_opdef unary_ops[] = {
    [RT_UN_ADD_SCALAR] = {"add_scalar", unary_backward},
    [RT_UN_MUL_SCALAR] = {"mul_scalar", unary_backward},
    [RT_UN_POW] = {"pow_scalar", unary_backward},
    [RT_UN_SQRT] = {"sqrt", unary_backward},
    [RT_UN_EXP] = {"exp", unary_backward},
    [RT_UN_LOG] = {"log", unary_backward},
    [RT_UN_ABS] = {"abs", unary_backward},
    [RT_UN_NEG] = {"neg", unary_backward},
    [RT_UN_RELU] = {"relu", unary_backward},
    [RT_UN_LEAKY_RELU] = {"leaky_relu", unary_backward},
    [RT_UN_SIGMOID] = {"sigmoid", unary_backward},
    [RT_UN_TANH] = {"tanh", unary_backward},
    [RT_UN_GELU] = {"gelu", unary_backward},
};

static rt_tensor *unary(rt_ctx *ctx, rt_tensor *x, rt_unop op, float s) {
    x = rt_need_contiguous(ctx, x);
    if (!x) return NULL;
    rt_tensor *y = rt_empty_like(ctx, x);
    if (!y) return NULL;
    rt_unary_forward(op, s, rt_numel(x), y->data, x->data);
    rt_node *node = rt_record(ctx, &unary_ops[op], y, 1, &x, sizeof(unary_saved));
    if (node) *(unary_saved *)node->saved = (unary_saved){op, s};
    return rt_status(ctx) ? NULL : y;
}

#define RT_UNARY_OP(fname, OP, S)                                                                                      \
    rt_tensor *fname {                                                                                                 \
        RT_OP_INPUTS(ctx, x);                                                                                          \
        return unary(ctx, x, OP, S);                                                                                   \
    }

RT_UNARY_OP(rt_add_scalar(rt_ctx *ctx, rt_tensor *x, float s), RT_UN_ADD_SCALAR, s)
RT_UNARY_OP(rt_mul_scalar(rt_ctx *ctx, rt_tensor *x, float s), RT_UN_MUL_SCALAR, s)
RT_UNARY_OP(rt_pow_scalar(rt_ctx *ctx, rt_tensor *x, float p), RT_UN_POW, p)
RT_UNARY_OP(rt_sqrt(rt_ctx *ctx, rt_tensor *x), RT_UN_SQRT, 0.0f)
RT_UNARY_OP(rt_exp(rt_ctx *ctx, rt_tensor *x), RT_UN_EXP, 0.0f)
RT_UNARY_OP(rt_log(rt_ctx *ctx, rt_tensor *x), RT_UN_LOG, 0.0f)
RT_UNARY_OP(rt_abs(rt_ctx *ctx, rt_tensor *x), RT_UN_ABS, 0.0f)
RT_UNARY_OP(rt_neg(rt_ctx *ctx, rt_tensor *x), RT_UN_NEG, 0.0f)
RT_UNARY_OP(rt_relu(rt_ctx *ctx, rt_tensor *x), RT_UN_RELU, 0.0f)
RT_UNARY_OP(rt_leaky_relu(rt_ctx *ctx, rt_tensor *x, float slope), RT_UN_LEAKY_RELU, slope)
RT_UNARY_OP(rt_sigmoid(rt_ctx *ctx, rt_tensor *x), RT_UN_SIGMOID, 0.0f)
RT_UNARY_OP(rt_tanh(rt_ctx *ctx, rt_tensor *x), RT_UN_TANH, 0.0f)
RT_UNARY_OP(rt_gelu(rt_ctx *ctx, rt_tensor *x), RT_UN_GELU, 0.0f)

/* ---- relu(a + b): a residual block's end in one pass each way ---- */

static void add_relu_backward(rt_ctx *ctx, rt_node *n) {
    float *ga = rt_grad_of(ctx, n->src[0]), *gb = rt_grad_of(ctx, n->src[1]); /* one buffer when a is b */
    rt_add_relu_backward(rt_numel(n->out), ga, gb, n->out->grad, n->out->data);
}
static const rt_opdef op_add_relu = {"add_relu", add_relu_backward};

rt_tensor *rt_add_relu(rt_ctx *ctx, rt_tensor *a, rt_tensor *b, int inplace) {
    RT_OP_INPUTS(ctx, a, b);
    if (!rt_same_shape(a, b)) return rt_shape_fail(ctx, "add_relu", "operands must have one shape, got", a, b);
    a = rt_need_contiguous(ctx, a);
    b = a ? rt_need_contiguous(ctx, b) : NULL;
    if (!a || !b) return NULL;
    /* in place only where nothing will be recorded (the backward needs the output) and a is no leaf */
    int records = rt_grad_enabled(ctx) && (a->requires_grad || b->requires_grad);
    rt_tensor *y = inplace && !records && !a->requires_grad ? a : rt_empty_like(ctx, a);
    if (!y) return NULL;
    rt_add_relu_forward(rt_numel(a), y->data, a->data, b->data);
    rt_tensor *src[2] = {a, b};
    rt_record(ctx, &op_add_relu, y, 2, src, 0); /* in place it records nothing: nothing requires a gradient */
    return rt_status(ctx) ? NULL : y;
}
