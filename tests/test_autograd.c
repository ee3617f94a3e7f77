/* The tape: backward through linear/matmul/views, several passes, non-parameter leaves, no-grad,
 * arena marks, and gradcheck itself. */
#include "retort/retort.h"
#include "test.h"
#include "test_util.h"

/* Test tensors live until the test's end: release() frees them all. */
static void *owned[256];
static int nowned;
static void *own(void *p) {
    if (nowned < 256) owned[nowned++] = p;
    return p;
}
static void release(void) {
    while (nowned) free(owned[--nowned]);
}

/* An rt_test_tensor whose buffers release() frees. */
static rt_tensor *owned_tensor(int ndim, const int64_t *shape, uint64_t seed, int grad) {
    rt_tensor *t = rt_test_tensor(ndim, shape, seed, grad);
    own(t->data);
    if (t->grad) own(t->grad);
    return own(t);
}

static rt_tensor *f_linear(rt_ctx *ctx, rt_tensor **in, void *u) { return rt_linear(ctx, in[0], in[1], in[2]); }
static rt_tensor *f_matmul(rt_ctx *ctx, rt_tensor **in, void *u) { return rt_matmul(ctx, in[0], in[1]); }
static rt_tensor *f_views(rt_ctx *ctx, rt_tensor **in, void *u) {
    rt_tensor *t = rt_transpose(ctx, in[0], 0, 1);              /* (4,3) view */
    rt_tensor *s = rt_slice(ctx, t, 0, 1, 3);                   /* (2,3) */
    rt_tensor *c = rt_concat(ctx, 2, (rt_tensor *[]){s, in[1]}, 0); /* (4,3) */
    rt_tensor *r = rt_reshape(ctx, c, 2, (int64_t[]){3, -1});
    return rt_matmul(ctx, r, rt_transpose(ctx, r, 0, 1));
}

TEST(gradcheck_linear) {
    rt_ctx *ctx = rt_ctx_new();
    rt_tensor *in[3] = {owned_tensor(2, (int64_t[]){5, 7}, 1, 1), owned_tensor(2, (int64_t[]){4, 7}, 2, 1),
                        owned_tensor(1, (int64_t[]){4}, 3, 1)};
    char rep[512];
    int rc = rt_gradcheck(ctx, f_linear, NULL, 3, in, NULL, rep);
    CHECKF(rc == 0, "%s / %s", rep, rt_errmsg(ctx));
    rt_ctx_free(ctx);
    release();
}

TEST(gradcheck_matmul_batched) {
    rt_ctx *ctx = rt_ctx_new();
    rt_tensor *in[2] = {owned_tensor(3, (int64_t[]){2, 3, 4}, 4, 1), owned_tensor(3, (int64_t[]){2, 4, 5}, 5, 1)};
    char rep[512];
    CHECKF(rt_gradcheck(ctx, f_matmul, NULL, 2, in, NULL, rep) == 0, "%s / %s", rep, rt_errmsg(ctx));
    rt_tensor *in2[2] = {owned_tensor(3, (int64_t[]){2, 3, 4}, 6, 1), owned_tensor(2, (int64_t[]){4, 5}, 7, 1)};
    CHECKF(rt_gradcheck(ctx, f_matmul, NULL, 2, in2, NULL, rep) == 0, "shared b: %s / %s", rep, rt_errmsg(ctx));
    rt_ctx_free(ctx);
    release();
}

TEST(gradcheck_views) {
    rt_ctx *ctx = rt_ctx_new();
    rt_tensor *in[2] = {owned_tensor(2, (int64_t[]){3, 4}, 8, 1), owned_tensor(2, (int64_t[]){2, 3}, 9, 1)};
    char rep[512];
    CHECKF(rt_gradcheck(ctx, f_views, NULL, 2, in, NULL, rep) == 0, "%s / %s", rep, rt_errmsg(ctx));
    rt_ctx_free(ctx);
    release();
}

/* The check must be able to fail: a deliberately wrong backward is caught. */
static void wrong_backward(rt_ctx *ctx, rt_node *n) {
    float *gx = rt_grad_of(ctx, n->src[0]);
    for (int64_t i = 0; gx && i < rt_numel(n->out); i++) gx[i] += 1.1f * n->out->grad[i];
}
static const rt_opdef op_wrong = {"wrong_identity", wrong_backward};
static rt_tensor *f_wrong(rt_ctx *ctx, rt_tensor **in, void *u) {
    rt_tensor *y = rt_empty_like(ctx, in[0]);
    memcpy(y->data, in[0]->data, rt_numel(y) * sizeof(float));
    rt_record(ctx, &op_wrong, y, 1, in, 0);
    return y;
}
TEST(gradcheck_catches_wrong_backward) {
    rt_ctx *ctx = rt_ctx_new();
    rt_tensor *in[1] = {owned_tensor(1, (int64_t[]){6}, 10, 1)};
    char rep[512];
    CHECK(rt_gradcheck(ctx, f_wrong, NULL, 1, in, NULL, rep) != 0);
    rt_ctx_free(ctx);
    release();
}

TEST(multiple_passes_and_nonparam_leaves) {
    /* y = x @ w^T; two scalar losses from one forward: L1 = sum(y[:,0]), L2 = sum(y * s) with s a
     * non-parameter leaf. Separate passes give separate gradients; leaf grads accumulate. */
    rt_ctx *ctx = rt_ctx_new();
    rt_tensor *x = owned_tensor(2, (int64_t[]){3, 2}, 11, 0), *w = owned_tensor(2, (int64_t[]){2, 2}, 12, 1);
    rt_tensor *s = owned_tensor(2, (int64_t[]){2, 1}, 13, 1);
    rt_tensor *y = rt_linear(ctx, x, w, NULL); /* (3,2) */
    rt_tensor *ones = rt_full(ctx, 2, (int64_t[]){1, 3}, 1.0f);
    rt_tensor *col = rt_matmul(ctx, ones, y); /* (1,2) column sums */
    rt_tensor *L1 = rt_slice(ctx, col, 1, 0, 1);
    rt_tensor *L2 = rt_matmul(ctx, col, s);   /* (1,1) */
    CHECK(L1 && L2);
    CHECK(rt_backward(ctx, L1) == 0);
    float g1[4];
    memcpy(g1, w->grad, sizeof g1);
    /* dL1/dw[0,k] = sum_i x[i,k]; row 1 zero */
    for (int k = 0; k < 2; k++) {
        float sx = 0;
        for (int i = 0; i < 3; i++) sx += x->data[i * 2 + k];
        CHECK_CLOSE(g1[k], sx, 1e-5);
        CHECK_CLOSE(g1[2 + k], 0, 1e-6);
    }
    memset(w->grad, 0, sizeof g1);
    CHECK(rt_backward(ctx, L2) == 0);
    for (int j = 0; j < 2; j++) CHECK_CLOSE(s->grad[j], col->data[j], 1e-5); /* dL2/ds = col */
    for (int k = 0; k < 2; k++) {
        float sx = 0;
        for (int i = 0; i < 3; i++) sx += x->data[i * 2 + k];
        CHECK_CLOSE(w->grad[k], s->data[0] * sx, 1e-5);
        CHECK_CLOSE(w->grad[2 + k], s->data[1] * sx, 1e-5);
    }
    /* a second pass of L2 accumulates into leaves: doubled */
    float before = s->grad[0];
    CHECK(rt_backward(ctx, L2) == 0);
    CHECK_CLOSE(s->grad[0], 2 * before, 1e-6);
    rt_ctx_free(ctx);
    release();
}

TEST(no_grad_mode_records_nothing) {
    rt_ctx *ctx = rt_ctx_new();
    rt_tensor *x = owned_tensor(2, (int64_t[]){3, 2}, 11, 0), *w = owned_tensor(2, (int64_t[]){2, 2}, 12, 1);
    int prev = rt_set_grad_enabled(ctx, 0);
    rt_tensor *y = rt_linear(ctx, x, w, NULL);
    rt_set_grad_enabled(ctx, prev);
    CHECK(y && !y->requires_grad && rt_tape_size(ctx) == 0);
    CHECK(rt_backward(ctx, rt_slice(ctx, rt_reshape(ctx, y, 1, (int64_t[]){-1}), 0, 0, 1)) == RT_ESTATE);
    CHECK(strstr(rt_errmsg(ctx), "does not require grad"));
    rt_ctx_free(ctx);
    release();
}

TEST(detach_stops_gradient) {
    rt_ctx *ctx = rt_ctx_new();
    rt_tensor *x = owned_tensor(2, (int64_t[]){1, 2}, 14, 1), *w = owned_tensor(2, (int64_t[]){1, 2}, 15, 1);
    rt_tensor *y = rt_linear(ctx, rt_detach(ctx, x), w, NULL);
    CHECK(rt_backward(ctx, y) == 0);
    CHECK(x->grad[0] == 0 && x->grad[1] == 0);
    CHECK_CLOSE(w->grad[0], x->data[0], 1e-6);
    rt_ctx_free(ctx);
    release();
}

TEST(errors_name_op_layer_and_shapes) {
    rt_ctx *ctx = rt_ctx_new();
    rt_tensor *x = owned_tensor(2, (int64_t[]){3, 5}, 1, 0), *w = owned_tensor(2, (int64_t[]){4, 7}, 2, 0);
    rt_scope_push(ctx, "head");
    rt_scope_push(ctx, "fc");
    rt_tensor *y = rt_linear(ctx, x, w, NULL);
    CHECK(y == NULL && rt_status(ctx) == RT_ESHAPE);
    CHECKF(strstr(rt_errmsg(ctx), "linear") && strstr(rt_errmsg(ctx), "(3,5)") && strstr(rt_errmsg(ctx), "(4,7)") &&
               strstr(rt_errmsg(ctx), "head.fc"),
           "%s", rt_errmsg(ctx));
    /* errors propagate: the next op on NULL returns NULL and keeps the first message */
    CHECK(rt_linear(ctx, y, w, NULL) == NULL && strstr(rt_errmsg(ctx), "(3,5)"));
    rt_ctx_free(ctx);
    release();
}

TEST(arena_marks_and_highwater) {
    rt_ctx *ctx = rt_ctx_new();
    rt_mark m = rt_arena_mark(ctx);
    void *a = rt_arena_alloc(ctx, 1000);
    CHECK(a && rt_arena_used(ctx) >= 1000);
    rt_arena_release(ctx, m);
    CHECK(rt_arena_used(ctx) == 0 && rt_arena_alloc(ctx, 10) == a);
    void *big = rt_arena_alloc(ctx, (size_t)40 << 20); /* forces a second block */
    CHECK(big && rt_arena_highwater(ctx) >= ((size_t)40 << 20));
    rt_step_reset(ctx);
    CHECK(rt_arena_used(ctx) == 0);
    CHECK(rt_arena_alloc(ctx, (size_t)40 << 20)); /* coalesced block holds it */
    rt_ctx_free(ctx);
    release();
}

TEST(rng_is_deterministic) {
    rt_rng a, b;
    rt_rng_seed(&a, 42);
    rt_rng_seed(&b, 42);
    for (int i = 0; i < 100; i++) CHECK(rt_rng_u64(&a) == rt_rng_u64(&b));
    double m = 0;
    for (int i = 0; i < 20000; i++) m += rt_rng_normal(&a);
    CHECK(fabs(m / 20000) < 0.03);
}
