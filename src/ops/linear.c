/* Dense products: matmul (batched) and linear, forward and backward through rt_sgemm. */
#include "kernels/gemm.h"
#include "ops/op_util.h"

/* ---- linear: x (B,IN), w (OUT,IN), bias (OUT) -> y (B,OUT) ---- */

static void linear_backward(rt_ctx *ctx, rt_node *n) {
    rt_tensor *x = n->src[0], *w = n->src[1], *b = n->nsrc > 2 ? n->src[2] : NULL;
    const float *gy = n->out->grad;
    int64_t B = x->shape[0], IN = x->shape[1], OUT = w->shape[0];
    float *gx = rt_grad_of(ctx, x), *gw = rt_grad_of(ctx, w), *gb = b ? rt_grad_of(ctx, b) : NULL;
    if (gx) rt_sgemm(0, 0, B, IN, OUT, 1.0f, gy, OUT, w->data, IN, 1.0f, gx, IN);  /* gx += gy @ w */
    if (gw) rt_sgemm(1, 0, OUT, IN, B, 1.0f, gy, OUT, x->data, IN, 1.0f, gw, IN);  /* gw += gy^T @ x */
    if (gb)
        for (int64_t i = 0; i < B; i++) rt_axpy1(gb, gy + i * OUT, OUT);
}
static const rt_opdef op_linear = {"linear", linear_backward};

rt_tensor *rt_linear(rt_ctx *ctx, rt_tensor *x, rt_tensor *w, rt_tensor *bias) {
    RT_OP_INPUTS(ctx, x, w);
    if (x->ndim != 2 || w->ndim != 2 || x->shape[1] != w->shape[1])
        return rt_shape_fail(ctx, "linear", "input (B,IN) and weight (OUT,IN) do not match:", x, w);
    if (bias && (bias->ndim != 1 || bias->shape[0] != w->shape[0]))
        return rt_shape_fail(ctx, "linear", "bias must be (OUT):", bias, w);
    x = rt_need_contiguous(ctx, x);
    if (!x) return NULL;
    RT_ASSERT(rt_is_contiguous(w));
    int64_t B = x->shape[0], IN = x->shape[1], OUT = w->shape[0];
    rt_tensor *y = rt_new2(ctx, B, OUT);
    if (!y) return NULL;
    if (bias)
        for (int64_t i = 0; i < B; i++) memcpy(y->data + i * OUT, bias->data, (size_t)OUT * sizeof(float));
    rt_sgemm(0, 1, B, OUT, IN, 1.0f, x->data, IN, w->data, IN, bias ? 1.0f : 0.0f, y->data, OUT);
    rt_tensor *src[3] = {x, w, bias};
    rt_record(ctx, &op_linear, y, bias ? 3 : 2, src, 0);
    return rt_status(ctx) ? NULL : y;
}

/* ---- matmul: a (...,M,K) @ b (...,K,N); b may be 2-D and shared across the batch ---- */

typedef struct {
    int64_t batch, M, K, N;
    int b_shared;
} matmul_saved;

static void matmul_backward(rt_ctx *ctx, rt_node *n) {
    matmul_saved *s = n->saved;
    rt_tensor *a = n->src[0], *b = n->src[1];
    const float *gy = n->out->grad;
    float *ga = rt_grad_of(ctx, a), *gb = rt_grad_of(ctx, b);
    int64_t M = s->M, K = s->K, N = s->N;
    for (int64_t i = 0; i < s->batch; i++) {
        const float *ai = a->data + i * M * K, *bi = b->data + (s->b_shared ? 0 : i * K * N);
        const float *gyi = gy + i * M * N;
        if (ga) rt_sgemm(0, 1, M, K, N, 1.0f, gyi, N, bi, N, 1.0f, ga + i * M * K, K); /* ga += gy @ b^T */
        if (gb) rt_sgemm(1, 0, K, N, M, 1.0f, ai, K, gyi, N, 1.0f, gb + (s->b_shared ? 0 : i * K * N), N);
    }
}
static const rt_opdef op_matmul = {"matmul", matmul_backward};

rt_tensor *rt_matmul(rt_ctx *ctx, rt_tensor *a, rt_tensor *b) {
    RT_OP_INPUTS(ctx, a, b);
    if (a->ndim < 2 || b->ndim < 2) return rt_shape_fail(ctx, "matmul", "needs at least 2-D operands:", a, b);
    int b_shared = b->ndim == 2 && a->ndim > 2;
    if (!b_shared && a->ndim != b->ndim) return rt_shape_fail(ctx, "matmul", "batch dims differ:", a, b);
    for (int d = 0; d < a->ndim - 2 && !b_shared; d++)
        if (a->shape[d] != b->shape[d]) return rt_shape_fail(ctx, "matmul", "batch dims differ:", a, b);
    int64_t M = a->shape[a->ndim - 2], K = a->shape[a->ndim - 1];
    int64_t K2 = b->shape[b->ndim - 2], N = b->shape[b->ndim - 1];
    if (K != K2) return rt_shape_fail(ctx, "matmul", "inner dims differ:", a, b);
    a = rt_need_contiguous(ctx, a);
    b = a ? rt_need_contiguous(ctx, b) : NULL;
    if (!a || !b) return NULL;
    int64_t shape[RT_MAX_DIMS];
    int64_t batch = 1;
    for (int d = 0; d < a->ndim - 2; d++) batch *= (shape[d] = a->shape[d]);
    shape[a->ndim - 2] = M;
    shape[a->ndim - 1] = N;
    rt_tensor *y = rt_empty(ctx, a->ndim, shape);
    if (!y) return NULL;
    for (int64_t i = 0; i < batch; i++)
        rt_sgemm(0, 0, M, N, K, 1.0f, a->data + i * M * K, K, b->data + (b_shared ? 0 : i * K * N), N, 0.0f,
                 y->data + i * M * N, N);
    rt_tensor *src[2] = {a, b};
    rt_node *nd = rt_record(ctx, &op_matmul, y, 2, src, sizeof(matmul_saved));
    if (nd) *(matmul_saved *)nd->saved = (matmul_saved){batch, M, K, N, b_shared};
    return rt_status(ctx) ? NULL : y;
}
