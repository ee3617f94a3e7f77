/* Elementwise ops: finite-difference checks of every op (broadcast shapes, scalar operands,
 * strided inputs), forward values against closed forms, fast kernels against the references,
 * thread-count independence, and broadcast errors. */
#include "kernels/elementwise.h"
#include "retort/retort.h"
#include "test.h"
#include "test_util.h"

/* A leaf with a gradient over N(0,1) data, or |N(0,1)| + 0.5 when positive (log, sqrt, ...). */
static rt_tensor *grad_leaf(int ndim, const int64_t *shape, uint64_t seed, int positive) {
    rt_tensor *t = rt_test_tensor(ndim, shape, seed, 1);
    if (positive)
        for (int64_t i = 0; i < rt_numel(t); i++) t->data[i] = fabsf(t->data[i]) + 0.5f;
    return t;
}

/* ---- binary ops, every broadcast case ---- */

typedef rt_tensor *(*binary_fn)(rt_ctx *, rt_tensor *, rt_tensor *);
static const binary_fn binary_ops[4] = {rt_add, rt_sub, rt_mul, rt_div};
static const char *binary_names[4] = {"add", "sub", "mul", "div"};

static rt_tensor *f_binary(rt_ctx *ctx, rt_tensor **in, void *u) { return binary_ops[*(int *)u](ctx, in[0], in[1]); }
static rt_tensor *f_square(rt_ctx *ctx, rt_tensor **in, void *u) { return binary_ops[*(int *)u](ctx, in[0], in[0]); }
/* a strided operand: a transposed view of in[0] */
static rt_tensor *f_binary_strided(rt_ctx *ctx, rt_tensor **in, void *u) {
    return binary_ops[*(int *)u](ctx, rt_transpose(ctx, in[0], 0, 1), in[1]);
}

static const struct {
    int na, nb;
    int64_t a[4], b[4];
} bcast_cases[] = {
    {3, 2, {3, 1, 4}, {2, 1}},       /* both sides broadcast -> (3,2,4) */
    {2, 1, {2, 3}, {3}},             /* row vector */
    {1, 2, {3}, {2, 3}},             /* on the left */
    {2, 0, {2, 3}, {0}},             /* 0-dim scalar */
    {0, 3, {0}, {2, 1, 3}},          /* 0-dim scalar on the left */
    {2, 1, {2, 3}, {1}},             /* (1) */
    {3, 3, {2, 3, 4}, {2, 3, 4}},    /* same shape */
    {2, 2, {4, 1}, {1, 5}},          /* outer product */
    {4, 3, {2, 3, 2, 2}, {3, 1, 1}}, /* per-channel */
    {4, 4, {2, 3, 2, 2}, {2, 1, 2, 2}},
    {3, 3, {2, 1, 3}, {2, 1, 3}}, /* size-1 dims on both */
};

TEST(gradcheck_binary_broadcast) {
    rt_ctx *ctx = rt_ctx_new();
    char rep[512];
    for (int op = 0; op < 4; op++)
        for (size_t c = 0; c < sizeof bcast_cases / sizeof bcast_cases[0]; c++) {
            rt_tensor *in[2] = {grad_leaf(bcast_cases[c].na, bcast_cases[c].a, 10 + c, 0),
                                grad_leaf(bcast_cases[c].nb, bcast_cases[c].b, 50 + c, op == 3)};
            int rc = rt_gradcheck(ctx, f_binary, &op, 2, in, NULL, rep);
            CHECKF(rc == 0, "%s case %zu: %s / %s", binary_names[op], c, rep, rt_errmsg(ctx));
            rt_test_tensor_free(in[0]);
            rt_test_tensor_free(in[1]);
        }
    rt_ctx_free(ctx);
}

TEST(gradcheck_binary_same_tensor_and_strided) {
    rt_ctx *ctx = rt_ctx_new();
    char rep[512];
    for (int op = 0; op < 4; op++) {
        rt_tensor *x = grad_leaf(2, (int64_t[]){3, 4}, 7, 1);
        CHECKF(rt_gradcheck(ctx, f_square, &op, 1, &x, NULL, rep) == 0, "%s(x, x): %s / %s", binary_names[op], rep,
               rt_errmsg(ctx));
        rt_tensor *in[2] = {grad_leaf(2, (int64_t[]){4, 3}, 8, 0), grad_leaf(2, (int64_t[]){3, 1}, 9, 1)};
        CHECKF(rt_gradcheck(ctx, f_binary_strided, &op, 2, in, NULL, rep) == 0, "%s strided: %s / %s", binary_names[op],
               rep, rt_errmsg(ctx));
        rt_test_tensor_free(x);
        rt_test_tensor_free(in[0]);
        rt_test_tensor_free(in[1]);
    }
    rt_ctx_free(ctx);
}

TEST(binary_values_and_shapes) {
    rt_ctx *ctx = rt_ctx_new();
    float av[6] = {1, 2, 3, 4, 5, 6}, bv[3] = {10, 20, 40};
    rt_tensor *a = rt_wrap(ctx, av, 2, (int64_t[]){2, 3}), *b = rt_wrap(ctx, bv, 1, (int64_t[]){3});
    rt_tensor *s = rt_sub(ctx, a, b), *d = rt_div(ctx, b, a);
    CHECK(s && d && s->ndim == 2 && s->shape[0] == 2 && s->shape[1] == 3);
    for (int i = 0; i < 6; i++) {
        CHECK(s->data[i] == av[i] - bv[i % 3]);
        CHECK(d->data[i] == bv[i % 3] / av[i]);
    }
    /* (3,1,4) + (2,1) -> (3,2,4): out[i,j,k] = a[i,0,k] + b[j,0] */
    float a3[12], b2[2] = {100, 200};
    for (int i = 0; i < 12; i++) a3[i] = (float)i;
    rt_tensor *y = rt_add(ctx, rt_wrap(ctx, a3, 3, (int64_t[]){3, 1, 4}), rt_wrap(ctx, b2, 2, (int64_t[]){2, 1}));
    CHECK(y && y->ndim == 3 && y->shape[0] == 3 && y->shape[1] == 2 && y->shape[2] == 4);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 2; j++)
            for (int k = 0; k < 4; k++) CHECK(y->data[(i * 2 + j) * 4 + k] == a3[i * 4 + k] + b2[j]);
    /* 0-dim op 0-dim stays 0-dim */
    float p = 3, q = 4;
    rt_tensor *z = rt_mul(ctx, rt_wrap(ctx, &p, 0, NULL), rt_wrap(ctx, &q, 0, NULL));
    CHECK(z && z->ndim == 0 && rt_numel(z) == 1 && z->data[0] == 12);
    /* empty broadcasts: (2,1) + (1,0) -> (2,0) */
    rt_tensor *e = rt_add(ctx, rt_wrap(ctx, av, 2, (int64_t[]){2, 1}), rt_wrap(ctx, bv, 2, (int64_t[]){1, 0}));
    CHECK(e && e->ndim == 2 && e->shape[0] == 2 && e->shape[1] == 0 && rt_numel(e) == 0);
    rt_ctx_free(ctx);
}

TEST(broadcast_error_names_op_and_shapes) {
    rt_ctx *ctx = rt_ctx_new();
    float av[6] = {0}, bv[4] = {0};
    rt_tensor *a = rt_wrap(ctx, av, 2, (int64_t[]){2, 3}), *b = rt_wrap(ctx, bv, 2, (int64_t[]){4, 1});
    CHECK(rt_mul(ctx, a, b) == NULL && rt_status(ctx) == RT_ESHAPE);
    const char *m = rt_errmsg(ctx);
    CHECKF(strstr(m, "mul") && strstr(m, "(2,3)") && strstr(m, "(4,1)"), "%s", m);
    /* errors propagate: later ops on NULL return NULL and keep the first message */
    CHECK(rt_relu(ctx, rt_add(ctx, NULL, a)) == NULL && strstr(rt_errmsg(ctx), "(4,1)"));
    rt_clear_error(ctx);
    CHECK(rt_sub(ctx, rt_wrap(ctx, av, 1, (int64_t[]){3}), rt_wrap(ctx, bv, 1, (int64_t[]){2})) == NULL);
    CHECKF(strstr(rt_errmsg(ctx), "sub") && strstr(rt_errmsg(ctx), "(3)") && strstr(rt_errmsg(ctx), "(2)"), "%s",
           rt_errmsg(ctx));
    rt_ctx_free(ctx);
}

/* ---- unary ops ---- */

typedef struct {
    const char *name;
    rt_unop op;
    float s;
    int positive; /* domain needs x > 0 */
} unary_case;

static const unary_case unary_cases[] = {
    {"add_scalar", RT_UN_ADD_SCALAR, 1.5f, 0},
    {"mul_scalar", RT_UN_MUL_SCALAR, -2.5f, 0},
    {"pow 3", RT_UN_POW, 3.0f, 0},
    {"pow 2", RT_UN_POW, 2.0f, 0},
    {"pow 0.5", RT_UN_POW, 0.5f, 1},
    {"pow -1.5", RT_UN_POW, -1.5f, 1},
    {"pow 0", RT_UN_POW, 0.0f, 1},
    {"sqrt", RT_UN_SQRT, 0, 1},
    {"exp", RT_UN_EXP, 0, 0},
    {"log", RT_UN_LOG, 0, 1},
    {"abs", RT_UN_ABS, 0, 0},
    {"neg", RT_UN_NEG, 0, 0},
    {"relu", RT_UN_RELU, 0, 0},
    {"leaky_relu", RT_UN_LEAKY_RELU, 0.1f, 0},
    {"sigmoid", RT_UN_SIGMOID, 0, 0},
    {"tanh", RT_UN_TANH, 0, 0},
    {"gelu", RT_UN_GELU, 0, 0},
};

static rt_tensor *call_unary(rt_ctx *ctx, const unary_case *c, rt_tensor *x) {
    switch (c->op) {
    case RT_UN_ADD_SCALAR:
        return rt_add_scalar(ctx, x, c->s);
    case RT_UN_MUL_SCALAR:
        return rt_mul_scalar(ctx, x, c->s);
    case RT_UN_POW:
        return rt_pow_scalar(ctx, x, c->s);
    case RT_UN_SQRT:
        return rt_sqrt(ctx, x);
    case RT_UN_EXP:
        return rt_exp(ctx, x);
    case RT_UN_LOG:
        return rt_log(ctx, x);
    case RT_UN_ABS:
        return rt_abs(ctx, x);
    case RT_UN_NEG:
        return rt_neg(ctx, x);
    case RT_UN_RELU:
        return rt_relu(ctx, x);
    case RT_UN_LEAKY_RELU:
        return rt_leaky_relu(ctx, x, c->s);
    case RT_UN_SIGMOID:
        return rt_sigmoid(ctx, x);
    case RT_UN_TANH:
        return rt_tanh(ctx, x);
    case RT_UN_GELU:
        return rt_gelu(ctx, x);
    }
    return NULL;
}

static rt_tensor *f_unary(rt_ctx *ctx, rt_tensor **in, void *u) { return call_unary(ctx, u, in[0]); }
static rt_tensor *f_unary_strided(rt_ctx *ctx, rt_tensor **in, void *u) {
    return call_unary(ctx, u, rt_transpose(ctx, in[0], 0, 2));
}

TEST(gradcheck_unary) {
    rt_ctx *ctx = rt_ctx_new();
    char rep[512];
    const int64_t shapes[3][3] = {{7, 1, 1}, {3, 4, 1}, {2, 3, 5}};
    for (size_t c = 0; c < sizeof unary_cases / sizeof unary_cases[0]; c++) {
        const unary_case *uc = &unary_cases[c];
        for (int s = 0; s < 3; s++) {
            rt_tensor *x = grad_leaf(s + 1, shapes[s], 100 + 3 * c + s, uc->positive);
            int rc = rt_gradcheck(ctx, f_unary, (void *)uc, 1, &x, NULL, rep);
            CHECKF(rc == 0, "%s shape %d: %s / %s", uc->name, s, rep, rt_errmsg(ctx));
            rt_test_tensor_free(x);
        }
        rt_tensor *x = grad_leaf(3, shapes[2], 200 + c, uc->positive);
        CHECKF(rt_gradcheck(ctx, f_unary_strided, (void *)uc, 1, &x, NULL, rep) == 0, "%s strided: %s / %s", uc->name,
               rep, rt_errmsg(ctx));
        rt_test_tensor_free(x);
    }
    rt_ctx_free(ctx);
}

TEST(unary_closed_forms) {
    rt_ctx *ctx = rt_ctx_new();
    float xv[5] = {-2.0f, -0.5f, 0.0f, 1.0f, 3.0f};
    rt_tensor *x = rt_wrap(ctx, xv, 1, (int64_t[]){5});
    rt_tensor *g = rt_gelu(ctx, x), *sg = rt_sigmoid(ctx, x), *th = rt_tanh(ctx, x), *r = rt_relu(ctx, x);
    rt_tensor *lr = rt_leaky_relu(ctx, x, 0.2f), *ab = rt_abs(ctx, x), *ng = rt_neg(ctx, x);
    rt_tensor *p3 = rt_pow_scalar(ctx, x, 3.0f), *as = rt_add_scalar(ctx, x, 0.25f), *ms = rt_mul_scalar(ctx, x, -3);
    CHECK(g && sg && th && r && lr && ab && ng && p3 && as && ms);
    CHECK_CLOSE(g->data[3], 0.8413447, 1e-6);   /* gelu(1) = Phi(1) */
    CHECK_CLOSE(g->data[0], -0.04550026, 1e-6); /* gelu(-2) = -2 Phi(-2) */
    CHECK(g->data[2] == 0);
    CHECK(sg->data[2] == 0.5f);
    CHECK_CLOSE(sg->data[4], 0.95257413, 1e-6);
    CHECK_CLOSE(th->data[1], -0.46211716, 1e-6);
    for (int i = 0; i < 5; i++) {
        CHECK(r->data[i] == (xv[i] > 0 ? xv[i] : 0));
        CHECK(lr->data[i] == (xv[i] > 0 ? xv[i] : 0.2f * xv[i]));
        CHECK(ab->data[i] == fabsf(xv[i]) && ng->data[i] == -xv[i]);
        CHECK(p3->data[i] == xv[i] * xv[i] * xv[i]);
        CHECK(as->data[i] == xv[i] + 0.25f && ms->data[i] == -3 * xv[i]);
    }
    float pv[3] = {0.25f, 1.0f, 4.0f};
    rt_tensor *px = rt_wrap(ctx, pv, 1, (int64_t[]){3});
    rt_tensor *sq = rt_sqrt(ctx, px), *lg = rt_log(ctx, px), *ex = rt_exp(ctx, rt_log(ctx, px));
    rt_tensor *ph = rt_pow_scalar(ctx, px, -0.5f);
    CHECK(sq && lg && ex && ph);
    CHECK(sq->data[0] == 0.5f && sq->data[2] == 2.0f);
    CHECK(lg->data[1] == 0.0f);
    CHECK_CLOSE(lg->data[2], 1.3862944, 1e-6);
    for (int i = 0; i < 3; i++) {
        CHECK_CLOSE(ex->data[i], pv[i], 1e-6);
        CHECK_CLOSE(ph->data[i], 1.0 / sqrt(pv[i]), 1e-6);
    }
    rt_ctx_free(ctx);
}

TEST(relu_abs_gradient_at_zero) {
    /* PyTorch's conventions at the kink: relu'(0) = 0, abs'(0) = 0, leaky'(0) = slope */
    rt_ctx *ctx = rt_ctx_new();
    float xv[3] = {-1, 0, 1}, gx[3] = {0};
    rt_tensor x;
    rt_tensor_init(&x, xv, 1, (int64_t[]){3});
    CHECK(rt_leaf(ctx, &x, gx) == 0);
    rt_tensor *y = rt_add(ctx, rt_add(ctx, rt_relu(ctx, &x), rt_abs(ctx, &x)), rt_leaky_relu(ctx, &x, 0.5f));
    CHECK(y && rt_backward_seed(ctx, y, (float[]){1, 1, 1}) == 0);
    CHECK(gx[0] == 0 - 1 + 0.5f && gx[1] == 0 + 0 + 0.5f && gx[2] == 1 + 1 + 1);
    rt_ctx_free(ctx);
}

/* ---- fast kernels against the references ---- */

TEST(unary_fast_vs_ref) {
    int64_t n = 100003; /* above the parallel threshold, not a multiple of the run length */
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float)), *yr = malloc(n * sizeof(float));
    float *gy = malloc(n * sizeof(float)), *g = malloc(n * sizeof(float)), *gr = malloc(n * sizeof(float));
    rt_test_fill_normal(gy, n, 2);
    for (size_t c = 0; c < sizeof unary_cases / sizeof unary_cases[0]; c++) {
        const unary_case *uc = &unary_cases[c];
        rt_test_fill_normal(x, n, 1 + c);
        if (uc->positive)
            for (int64_t i = 0; i < n; i++) x[i] = fabsf(x[i]) + 0.1f;
        rt_unary_forward(uc->op, uc->s, n, y, x);
        rt_unary_forward_ref(uc->op, uc->s, n, yr, x);
        double e = rt_test_maxrel(y, yr, n);
        CHECKF(e < 1e-6, "%s forward: %g", uc->name, e);
        for (int64_t i = 0; i < n; i++) g[i] = gr[i] = 0.5f; /* backward accumulates */
        rt_unary_backward(uc->op, uc->s, n, g, gy, x, y);
        rt_unary_backward_ref(uc->op, uc->s, n, gr, gy, x, y);
        e = rt_test_maxrel(g, gr, n);
        CHECKF(e < 1e-5, "%s backward: %g", uc->name, e);
    }
    free(x), free(y), free(yr), free(gy), free(g), free(gr);
}

static const struct {
    int na, nb;
    int64_t a[4], b[4];
} big_cases[] = {
    {4, 3, {8, 16, 24, 24}, {16, 1, 1}}, /* per-channel bias */
    {2, 1, {64, 1000}, {1000}},          /* row vector */
    {2, 2, {64, 1000}, {64, 1}},         /* column */
    {3, 3, {40, 30, 50}, {40, 30, 50}},  /* same shape */
    {3, 0, {40, 30, 50}, {0}},           /* scalar */
    {3, 2, {300, 1, 40}, {7, 1}},        /* both broadcast */
    {4, 4, {4, 1, 30, 30}, {4, 16, 30, 30}},
    {2, 2, {1, 5000}, {30, 1}},
};

TEST(binary_fast_vs_ref) {
    for (size_t c = 0; c < sizeof big_cases / sizeof big_cases[0]; c++) {
        int na = big_cases[c].na, nb = big_cases[c].nb;
        const int64_t *ash = big_cases[c].a, *bsh = big_cases[c].b;
        rt_bcast p;
        int64_t osh[RT_MAX_DIMS], an = 1, bn = 1, on = 1;
        int ond;
        CHECK(rt_bcast_plan(&p, osh, &ond, na, ash, nb, bsh) == 0);
        for (int i = 0; i < na; i++) an *= ash[i];
        for (int i = 0; i < nb; i++) bn *= bsh[i];
        for (int i = 0; i < ond; i++) on *= osh[i];
        float *a = malloc(an * 4), *b = malloc(bn * 4), *y = malloc(on * 4), *yr = malloc(on * 4), *gy = malloc(on * 4);
        float *ga = malloc(an * 4), *gar = malloc(an * 4), *gb = malloc(bn * 4), *gbr = malloc(bn * 4);
        rt_test_fill_normal(a, an, 3 + c);
        rt_test_fill_normal(b, bn, 4 + c);
        rt_test_fill_normal(gy, on, 5 + c);
        for (int64_t i = 0; i < bn; i++) b[i] = fabsf(b[i]) + 0.5f; /* safe divisor */
        for (int op = 0; op < 4; op++) {
            rt_binary_forward(op, &p, y, a, b);
            rt_binary_forward_ref(op, na, ash, nb, bsh, yr, a, b);
            double e = rt_test_maxrel(y, yr, on);
            CHECKF(e < 1e-6, "%s case %zu forward: %g", binary_names[op], c, e);
            for (int64_t i = 0; i < an; i++) ga[i] = gar[i] = 0.25f;
            for (int64_t i = 0; i < bn; i++) gb[i] = gbr[i] = -0.25f;
            rt_binary_backward(op, 0, &p, ga, gy, a, b, y);
            rt_binary_backward_ref(op, 0, na, ash, nb, bsh, gar, gy, a, b, y);
            rt_binary_backward(op, 1, &p, gb, gy, a, b, y);
            rt_binary_backward_ref(op, 1, na, ash, nb, bsh, gbr, gy, a, b, y);
            e = rt_test_maxrel(ga, gar, an);
            CHECKF(e < 1e-5, "%s case %zu grad a: %g", binary_names[op], c, e);
            e = rt_test_maxrel(gb, gbr, bn);
            CHECKF(e < 1e-5, "%s case %zu grad b: %g", binary_names[op], c, e);
        }
        free(a), free(b), free(y), free(yr), free(gy), free(ga), free(gar), free(gb), free(gbr);
    }
}

TEST(bcast_plan_merges_dims) {
    rt_bcast p;
    int64_t osh[RT_MAX_DIMS];
    int nd;
    CHECK(rt_bcast_plan(&p, osh, &nd, 4, (int64_t[]){8, 16, 4, 4}, 3, (int64_t[]){16, 1, 1}) == 0);
    CHECK(nd == 4 && p.nd == 3 && p.shape[0] == 8 && p.shape[1] == 16 && p.shape[2] == 16);
    CHECK(p.sb[0] == 0 && p.sb[1] == 1 && p.sb[2] == 0 && p.sa[2] == 1);
    CHECK(rt_bcast_plan(&p, osh, &nd, 3, (int64_t[]){2, 3, 4}, 3, (int64_t[]){2, 3, 4}) == 0);
    CHECK(p.nd == 1 && p.shape[0] == 24);
    CHECK(rt_bcast_plan(&p, osh, &nd, 2, (int64_t[]){2, 3}, 2, (int64_t[]){3, 2}) == -1);
}

/* Same inputs with 1 and 2 threads: the bits agree (each task owns its outputs and sums in order). */
TEST(results_independent_of_thread_count) {
    int64_t ash[4] = {8, 16, 24, 24}, bsh[3] = {16, 1, 1}, an = 8 * 16 * 24 * 24, bn = 16;
    rt_bcast p;
    int64_t osh[RT_MAX_DIMS];
    int nd;
    CHECK(rt_bcast_plan(&p, osh, &nd, 4, ash, 3, bsh) == 0);
    float *a = malloc(an * 4), *b = malloc(bn * 4), *gy = malloc(an * 4), *y[2], *ga[2], *gb[2];
    rt_test_fill_normal(a, an, 1);
    rt_test_fill_normal(b, bn, 2);
    rt_test_fill_normal(gy, an, 3);
    int prev = rt_threads();
    for (int k = 0; k < 2; k++) {
        rt_set_threads(k + 1);
        y[k] = malloc(an * 4), ga[k] = calloc(an, 4), gb[k] = calloc(bn, 4);
        rt_binary_forward(RT_BIN_MUL, &p, y[k], a, b);
        rt_binary_backward(RT_BIN_MUL, 0, &p, ga[k], gy, a, b, y[k]);
        rt_binary_backward(RT_BIN_MUL, 1, &p, gb[k], gy, a, b, y[k]);
    }
    rt_set_threads(prev);
    CHECK(!memcmp(y[0], y[1], an * 4) && !memcmp(ga[0], ga[1], an * 4) && !memcmp(gb[0], gb[1], bn * 4));
    free(a), free(b), free(gy);
    for (int k = 0; k < 2; k++) free(y[k]), free(ga[k]), free(gb[k]);
}
