/* Reductions and normalisers: finite-difference checks along every kind of dim (first, middle,
 * last, negative; keepdim both ways), closed forms (softmax sums to 1, log_softmax = log softmax,
 * temperature, stability), max ties, fast kernels against the references, and argument errors. */
#include <math.h>

#include "kernels/reduce.h"
#include "retort/retort.h"
#include "test.h"
#include "test_util.h"

enum { OP_SUM, OP_MEAN, OP_MAX, OP_L2, OP_SOFTMAX, OP_LOG_SOFTMAX, OP_SUM_ALL, OP_MEAN_ALL, OP_MEAN_SQ, NOPS };
static const char *op_names[NOPS] = {"sum",         "mean",    "max",      "l2_normalize", "softmax",
                                     "log_softmax", "sum_all", "mean_all", "mean_sq"};

typedef struct {
    int op, dim, keepdim;
    float arg; /* T for softmax, eps for l2 */
} rcase;

static rt_tensor *call(rt_ctx *ctx, const rcase *c, rt_tensor *x) {
    switch (c->op) {
    case OP_SUM:
        return rt_sum(ctx, x, c->dim, c->keepdim);
    case OP_MEAN:
        return rt_mean(ctx, x, c->dim, c->keepdim);
    case OP_MAX:
        return rt_max(ctx, x, c->dim, c->keepdim);
    case OP_L2:
        return rt_l2_normalize(ctx, x, c->dim, c->arg);
    case OP_SOFTMAX:
        return rt_softmax(ctx, x, c->dim, c->arg);
    case OP_LOG_SOFTMAX:
        return rt_log_softmax(ctx, x, c->dim, c->arg);
    case OP_SUM_ALL:
        return rt_sum_all(ctx, x);
    case OP_MEAN_SQ:
        return rt_mean_sq(ctx, x, c->dim, c->keepdim);
    default:
        return rt_mean_all(ctx, x);
    }
}

static rt_tensor *f_reduce(rt_ctx *ctx, rt_tensor **in, void *u) { return call(ctx, u, in[0]); }
/* a strided input: the op applied to a transposed view */
static rt_tensor *f_reduce_strided(rt_ctx *ctx, rt_tensor **in, void *u) {
    return call(ctx, u, rt_transpose(ctx, in[0], 0, 1));
}

TEST(gradcheck_every_op_dim_and_keepdim) {
    rt_ctx *ctx = rt_ctx_new();
    char rep[512];
    const int64_t shape[3] = {2, 3, 4};
    const float args[NOPS] = {0, 0, 0, 1e-12f, 1, 1, 0, 0, 0};
    for (int op = 0; op < NOPS; op++)
        for (int dim = -3; dim < 3; dim++)
            for (int keep = 0; keep < 2; keep++) {
                rcase c = {op, dim, keep, args[op]};
                rt_tensor *x = rt_test_tensor(3, shape, 1000 + 97 * op + 7 * dim + keep, 1);
                int rc = rt_gradcheck(ctx, f_reduce, &c, 1, &x, NULL, rep);
                CHECKF(rc == 0, "%s dim %d keepdim %d: %s / %s", op_names[op], dim, keep, rep, rt_errmsg(ctx));
                rc = rt_gradcheck(ctx, f_reduce_strided, &c, 1, &x, NULL, rep);
                CHECKF(rc == 0, "%s strided dim %d keepdim %d: %s / %s", op_names[op], dim, keep, rep, rt_errmsg(ctx));
                rt_test_tensor_free(x);
            }
    rt_ctx_free(ctx);
}

TEST(gradcheck_shapes_and_temperatures) {
    rt_ctx *ctx = rt_ctx_new();
    char rep[512];
    rt_gradcheck_opts few = {.max_points = 40}; /* larger inputs: a sample of points */
    struct {
        int nd;
        int64_t shape[4];
        rcase c;
    } cases[] = {
        {1, {6}, {OP_SOFTMAX, 0, 0, 1}},
        {1, {6}, {OP_MAX, -1, 0, 0}},
        {1, {6}, {OP_L2, 0, 0, 1e-12f}},
        {2, {3, 5}, {OP_SOFTMAX, -1, 0, 4}}, /* distillation temperature */
        {2, {3, 5}, {OP_LOG_SOFTMAX, -1, 0, 4}},
        {2, {3, 5}, {OP_SOFTMAX, 0, 0, 0.5f}},
        {2, {3, 5}, {OP_LOG_SOFTMAX, 0, 0, 0.5f}},
        {4, {2, 3, 2, 2}, {OP_SOFTMAX, 1, 0, 2}}, /* channel softmax of NCHW */
        {4, {2, 3, 2, 2}, {OP_L2, 1, 0, 1e-12f}}, /* channel L2 normalisation */
        {4, {2, 3, 2, 2}, {OP_MEAN, -2, 1, 0}},
        {3, {2, 5, 70}, {OP_SOFTMAX, 1, 0, 3}}, /* inner > one column block */
        {3, {2, 5, 70}, {OP_LOG_SOFTMAX, 1, 0, 3}},
        {3, {2, 5, 70}, {OP_MAX, 1, 1, 0}},
        {3, {2, 5, 70}, {OP_L2, 1, 0, 1e-12f}},
        {3, {2, 5, 70}, {OP_MEAN, 1, 0, 0}},
        {0, {0}, {OP_SUM, 0, 0, 0}}, /* 0-dim input */
        {0, {0}, {OP_SUM_ALL, 0, 0, 0}},
        {0, {0}, {OP_SOFTMAX, -1, 0, 1}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rt_tensor *x = rt_test_tensor(cases[i].nd, cases[i].shape, 77 + i, 1);
        int rc = rt_gradcheck(ctx, f_reduce, &cases[i].c, 1, &x, &few, rep);
        CHECKF(rc == 0, "case %zu (%s): %s / %s", i, op_names[cases[i].c.op], rep, rt_errmsg(ctx));
        rt_test_tensor_free(x);
    }
    rt_ctx_free(ctx);
}

TEST(l2_normalize_below_eps) {
    /* a row with norm < eps is divided by eps (constant): gradient gy / eps */
    rt_ctx *ctx = rt_ctx_new();
    char rep[512];
    rt_tensor *x = rt_test_tensor(2, (int64_t[]){3, 4}, 5, 1);
    for (int k = 0; k < 4; k++) x->data[4 + k] *= 1e-3f; /* row 1: norm ~ 2e-3 */
    rcase c = {OP_L2, 1, 0, 0.05f};
    CHECKF(rt_gradcheck(ctx, f_reduce, &c, 1, &x, NULL, rep) == 0, "%s / %s", rep, rt_errmsg(ctx));
    rt_tensor *y = rt_l2_normalize(ctx, x, 1, 0.05f);
    CHECK(y);
    for (int k = 0; k < 4; k++) CHECK_CLOSE(y->data[4 + k], x->data[4 + k] / 0.05f, 1e-6);
    double n0 = 0;
    for (int k = 0; k < 4; k++) n0 += y->data[k] * (double)y->data[k];
    CHECK_CLOSE(n0, 1.0, 1e-6);
    rt_test_tensor_free(x);
    rt_ctx_free(ctx);
}

TEST(shapes_and_values) {
    rt_ctx *ctx = rt_ctx_new();
    float xv[6] = {1, 5, 3, 4, 2, 6}; /* (2,3) */
    rt_tensor *x = rt_wrap(ctx, xv, 2, (int64_t[]){2, 3});
    rt_tensor *s0 = rt_sum(ctx, x, 0, 0), *s1k = rt_sum(ctx, x, -1, 1), *m1 = rt_mean(ctx, x, 1, 0);
    rt_tensor *mx0 = rt_max(ctx, x, 0, 1), *mx1 = rt_max(ctx, x, -1, 0);
    rt_tensor *sa = rt_sum_all(ctx, x), *ma = rt_mean_all(ctx, x);
    CHECK(s0 && s1k && m1 && mx0 && mx1 && sa && ma);
    CHECK(s0->ndim == 1 && s0->shape[0] == 3 && s0->data[0] == 5 && s0->data[1] == 7 && s0->data[2] == 9);
    CHECK(s1k->ndim == 2 && s1k->shape[0] == 2 && s1k->shape[1] == 1 && s1k->data[0] == 9 && s1k->data[1] == 12);
    CHECK(m1->ndim == 1 && m1->data[0] == 3 && m1->data[1] == 4);
    CHECK(mx0->ndim == 2 && mx0->shape[0] == 1 && mx0->shape[1] == 3);
    CHECK(mx0->data[0] == 4 && mx0->data[1] == 5 && mx0->data[2] == 6);
    CHECK(mx1->ndim == 1 && mx1->data[0] == 5 && mx1->data[1] == 6);
    CHECK(sa->ndim == 0 && rt_numel(sa) == 1 && sa->data[0] == 21);
    CHECK(ma->ndim == 0 && ma->data[0] == 3.5f);
    /* 0-dim input: dim 0 and -1 are its one dim */
    rt_tensor *sc = rt_sum(ctx, sa, -1, 1);
    CHECK(sc && sc->ndim == 0 && sc->data[0] == 21);
    rt_ctx_free(ctx);
}

TEST(max_ties_first_index_gets_gradient) {
    rt_ctx *ctx = rt_ctx_new();
    float xv[6] = {2, 7, 7, 3, 3, 1}, gx[6] = {0};
    rt_tensor x;
    rt_tensor_init(&x, xv, 2, (int64_t[]){2, 3});
    CHECK(rt_leaf(ctx, &x, gx) == 0);
    rt_tensor *m = rt_max(ctx, &x, 1, 0);
    CHECK(m && m->data[0] == 7 && m->data[1] == 3);
    CHECK(rt_backward_seed(ctx, m, (float[]){10, 20}) == 0);
    CHECK(gx[0] == 0 && gx[1] == 10 && gx[2] == 0 && gx[3] == 20 && gx[4] == 0 && gx[5] == 0);
    rt_ctx_free(ctx);
}

TEST(softmax_closed_forms) {
    rt_ctx *ctx = rt_ctx_new();
    int64_t B = 4, K = 7;
    float *xv = malloc(B * K * sizeof(float));
    rt_test_fill_normal(xv, B * K, 3);
    rt_tensor *x = rt_wrap(ctx, xv, 2, (int64_t[]){B, K});
    rt_tensor *p = rt_softmax(ctx, x, -1, 1), *lp = rt_log_softmax(ctx, x, 1, 1);
    rt_tensor *pT = rt_softmax(ctx, x, 1, 4), *pT2 = rt_softmax(ctx, rt_mul_scalar(ctx, x, 0.25f), 1, 1);
    rt_tensor *lpT = rt_log_softmax(ctx, x, 1, 4);
    rt_tensor *shifted = rt_softmax(ctx, rt_add_scalar(ctx, x, 1000), 1, 1);
    CHECK(p && lp && pT && pT2 && lpT && shifted);
    for (int64_t b = 0; b < B; b++) {
        double s = 0, sT = 0;
        for (int64_t k = 0; k < K; k++) {
            int64_t i = b * K + k;
            s += p->data[i];
            sT += pT->data[i];
            CHECK(p->data[i] > 0);
            CHECK_CLOSE(lp->data[i], log(p->data[i]), 1e-5);
            CHECK_CLOSE(pT->data[i], pT2->data[i], 1e-6); /* softmax(x, T) = softmax(x / T) */
            CHECK_CLOSE(lpT->data[i], log(pT->data[i]), 1e-5);
            CHECK_CLOSE(shifted->data[i], p->data[i], 1e-4); /* shift invariant, no overflow */
        }
        CHECK_CLOSE(s, 1.0, 1e-6);
        CHECK_CLOSE(sT, 1.0, 1e-6);
    }
    /* closed form on one row: softmax(0, ln 2, ln 3) = (1, 2, 3) / 6 */
    float r[3] = {0, logf(2), logf(3)};
    rt_tensor *q = rt_softmax(ctx, rt_wrap(ctx, r, 1, (int64_t[]){3}), 0, 1);
    CHECK(q);
    for (int k = 0; k < 3; k++) CHECK_CLOSE(q->data[k], (k + 1) / 6.0, 1e-6);
    /* huge logits: no overflow, log_softmax exact */
    float h[2] = {1e30f, -1e30f};
    rt_tensor *hp = rt_log_softmax(ctx, rt_wrap(ctx, h, 1, (int64_t[]){2}), 0, 1);
    rt_tensor *hq = rt_softmax(ctx, rt_wrap(ctx, h, 1, (int64_t[]){2}), 0, 1);
    CHECK(hp && hq && hp->data[0] == 0 && hp->data[1] == -2e30f && hq->data[0] == 1 && hq->data[1] == 0);
    free(xv);
    rt_ctx_free(ctx);
}

TEST(errors) {
    rt_ctx *ctx = rt_ctx_new();
    float xv[6] = {0};
    rt_tensor *x = rt_wrap(ctx, xv, 2, (int64_t[]){2, 3});
    CHECK(rt_sum(ctx, x, 2, 0) == NULL && rt_status(ctx) == RT_ESHAPE);
    CHECKF(strstr(rt_errmsg(ctx), "sum") && strstr(rt_errmsg(ctx), "(2,3)") && strstr(rt_errmsg(ctx), "dim 2"), "%s",
           rt_errmsg(ctx));
    rt_clear_error(ctx);
    CHECK(rt_softmax(ctx, x, -3, 1) == NULL && strstr(rt_errmsg(ctx), "softmax"));
    rt_clear_error(ctx);
    CHECK(rt_log_softmax(ctx, x, 1, 0) == NULL && rt_status(ctx) == RT_EINVAL);
    CHECKF(strstr(rt_errmsg(ctx), "log_softmax") && strstr(rt_errmsg(ctx), "temperature"), "%s", rt_errmsg(ctx));
    rt_clear_error(ctx);
    CHECK(rt_max(ctx, rt_wrap(ctx, xv, 2, (int64_t[]){2, 0}), 1, 0) == NULL && strstr(rt_errmsg(ctx), "max"));
    rt_clear_error(ctx);
    CHECK(rt_l2_normalize(ctx, x, 1, -1) == NULL && rt_status(ctx) == RT_EINVAL);
    rt_clear_error(ctx);
    CHECK(rt_mean(ctx, NULL, 0, 0) == NULL && strstr(rt_errmsg(ctx), "mean"));
    rt_ctx_free(ctx);
}

/* ---- fast kernels against the references, over the row and column-block paths ---- */

TEST(kernels_fast_vs_ref) {
    const int64_t dims[][3] = {{512, 100, 1}, {3, 1000, 1}, {8, 16, 1000}, {2, 7, 65}, {1, 5, 3}, {40000, 1, 1}};
    for (size_t c = 0; c < sizeof dims / sizeof dims[0]; c++) {
        int64_t O = dims[c][0], D = dims[c][1], I = dims[c][2], n = O * D * I, m = O * I;
        float *x = malloc(n * 4), *gy = malloc(n * 4), *y = malloc(n * 4), *yr = malloc(n * 4);
        float *g = malloc(n * 4), *gr = malloc(n * 4), *r = malloc(m * 4), *rr = malloc(m * 4);
        float *nrm = malloc(m * 4), *nrmr = malloc(m * 4);
        int64_t *idx = malloc(m * 8), *idxr = malloc(m * 8);
        rt_test_fill_normal(x, n, 10 + c);
        rt_test_fill_normal(gy, n, 20 + c);
        rt_reduce_sum_forward(O, D, I, 1.0 / D, r, x);
        rt_reduce_sum_forward_ref(O, D, I, 1.0 / D, rr, x);
        CHECKF(rt_test_maxrel(r, rr, m) < 1e-6, "sum case %zu: %g", c, rt_test_maxrel(r, rr, m));
        rt_reduce_sumsq_forward(O, D, I, 1.0 / D, r, x);
        rt_reduce_sumsq_forward_ref(O, D, I, 1.0 / D, rr, x);
        CHECKF(rt_test_maxrel(r, rr, m) < 1e-6, "sumsq case %zu: %g", c, rt_test_maxrel(r, rr, m));
        for (int64_t i = 0; i < n; i++) g[i] = gr[i] = 0.5f;
        rt_reduce_sumsq_backward(O, D, I, 0.25f, g, r, x, 0);
        rt_reduce_sumsq_backward_ref(O, D, I, 0.25f, gr, r, x);
        CHECKF(rt_test_maxrel(g, gr, n) < 1e-6, "sumsq back case %zu: %g", c, rt_test_maxrel(g, gr, n));
        /* overwrite: the old contents (NaN here) are not read; the same as adding to zeros */
        for (int64_t i = 0; i < n; i++) g[i] = NAN, gr[i] = 0;
        rt_reduce_sumsq_backward(O, D, I, 0.25f, g, r, x, 1);
        rt_reduce_sumsq_backward_ref(O, D, I, 0.25f, gr, r, x);
        CHECKF(rt_test_maxrel(g, gr, n) < 1e-6, "sumsq back (overwrite) case %zu: %g", c, rt_test_maxrel(g, gr, n));
        rt_reduce_max_forward(O, D, I, r, idx, x);
        rt_reduce_max_forward_ref(O, D, I, rr, idxr, x);
        CHECK(!memcmp(r, rr, m * 4) && !memcmp(idx, idxr, m * 8));
        for (int64_t i = 0; i < n; i++) g[i] = gr[i] = 0.5f;
        rt_reduce_sum_backward(O, D, I, 0.25f, g, r);
        rt_reduce_sum_backward_ref(O, D, I, 0.25f, gr, r);
        rt_reduce_max_backward(O, D, I, g, gy, idx);
        rt_reduce_max_backward_ref(O, D, I, gr, gy, idx);
        CHECK(!memcmp(g, gr, n * 4));
        for (int lg = 0; lg < 2; lg++) {
            rt_softmax_forward(O, D, I, 0.5f, lg, y, x);
            rt_softmax_forward_ref(O, D, I, 0.5f, lg, yr, x);
            CHECKF(rt_test_maxrel(y, yr, n) < 1e-5, "softmax lg %d case %zu: %g", lg, c, rt_test_maxrel(y, yr, n));
            for (int64_t i = 0; i < n; i++) g[i] = gr[i] = 0.5f;
            rt_softmax_backward(O, D, I, 0.5f, lg, g, gy, y);
            rt_softmax_backward_ref(O, D, I, 0.5f, lg, gr, gy, y);
            CHECKF(rt_test_maxrel(g, gr, n) < 1e-5, "softmax back lg %d case %zu: %g", lg, c, rt_test_maxrel(g, gr, n));
        }
        for (int64_t i = 0; i < D * I; i++) x[i] *= 1e-6f; /* outer slab 0: norms below eps */
        rt_l2norm_forward(O, D, I, 1e-3f, y, nrm, x);
        rt_l2norm_forward_ref(O, D, I, 1e-3f, yr, nrmr, x);
        CHECKF(rt_test_maxrel(y, yr, n) < 1e-6 && rt_test_maxrel(nrm, nrmr, m) < 1e-6, "l2 case %zu", c);
        for (int64_t i = 0; i < n; i++) g[i] = gr[i] = -0.5f;
        rt_l2norm_backward(O, D, I, 1e-3f, g, gy, y, nrm);
        rt_l2norm_backward_ref(O, D, I, 1e-3f, gr, gy, y, nrm);
        CHECKF(rt_test_maxrel(g, gr, n) < 1e-5, "l2 back case %zu: %g", c, rt_test_maxrel(g, gr, n));
        free(x), free(gy), free(y), free(yr), free(g), free(gr), free(r), free(rr), free(nrm), free(nrmr);
        free(idx), free(idxr);
    }
}

/* mean_sq is the fusion of pow(x, 2) and mean: the same bits forward and backward (AT's maps and
 * their gradients did not move when it replaced the pair), at 1 and 2 threads. */
TEST(mean_sq_is_pow_then_mean_bitwise) {
    const int64_t shape[4] = {8, 16, 32, 32};
    int prev = rt_threads();
    for (int th = 1; th <= 2; th++) {
        rt_ctx *ctx = rt_ctx_new();
        rt_set_threads(th);
        rt_tensor *x = rt_test_tensor(4, shape, 77, 1), *x2 = rt_test_tensor(4, shape, 77, 1);
        rt_tensor *a = rt_mean_sq(ctx, x, 1, 0), *b = rt_mean(ctx, rt_pow_scalar(ctx, x2, 2.0f), 1, 0);
        CHECK(a && b && rt_same_shape(a, b) && !memcmp(a->data, b->data, rt_numel(a) * sizeof(float)));
        rt_tensor *w = rt_test_tensor(3, a->shape, 78, 0);
        CHECK(rt_backward(ctx, rt_sum_all(ctx, rt_mul(ctx, a, w))) == 0);
        CHECK(rt_backward(ctx, rt_sum_all(ctx, rt_mul(ctx, b, w))) == 0);
        CHECK(!memcmp(x->grad, x2->grad, rt_numel(x) * sizeof(float)));
        rt_test_tensor_free(x), rt_test_tensor_free(x2), rt_test_tensor_free(w);
        rt_ctx_free(ctx);
    }
    rt_set_threads(prev);
}

/* mean_sq on an intermediate with a second consumer, recorded before and after it: where its
 * backward comes first it writes the gradient (no zeroing), where second it adds; either way the
 * same bits as pow + mean. */
TEST(mean_sq_first_gradient_of_a_pass) {
    const int64_t shape[4] = {4, 8, 16, 16};
    for (int order = 0; order < 2; order++) {
        rt_ctx *ctx = rt_ctx_new();
        rt_tensor *x[2], *w = NULL, *u = rt_test_tensor(4, shape, 81, 0);
        for (int v = 0; v < 2; v++) {
            x[v] = rt_test_tensor(4, shape, 80, 1);
            rt_tensor *h = rt_mul_scalar(ctx, x[v], 3.0f), *other = NULL, *m = NULL;
            if (order) other = rt_sum_all(ctx, rt_mul(ctx, h, u));
            m = v ? rt_mean(ctx, rt_pow_scalar(ctx, h, 2.0f), 1, 0) : rt_mean_sq(ctx, h, 1, 0);
            if (!w) w = rt_test_tensor(3, m->shape, 82, 0);
            rt_tensor *at = rt_sum_all(ctx, rt_mul(ctx, m, w));
            if (!order) other = rt_sum_all(ctx, rt_mul(ctx, h, u));
            CHECK(rt_backward(ctx, rt_add(ctx, at, other)) == 0);
            rt_step_reset(ctx);
        }
        CHECKF(!memcmp(x[0]->grad, x[1]->grad, rt_numel(x[0]) * sizeof(float)), "order %d", order);
        rt_test_tensor_free(x[0]), rt_test_tensor_free(x[1]), rt_test_tensor_free(u), rt_test_tensor_free(w);
        rt_ctx_free(ctx);
    }
}

TEST(sum_all_and_threads) {
    int64_t n = 3000017;
    float *x = malloc(n * 4);
    rt_test_fill_normal(x, n, 9);
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += x[i];
    int prev = rt_threads();
    rt_set_threads(1);
    double s1 = rt_sum_all_f64(n, x);
    int64_t m = 64 * 1000;
    float *sm1 = malloc(m * 4), *sm2 = malloc(m * 4);
    rt_softmax_forward(64, 1000, 1, 1, 0, sm1, x);
    rt_set_threads(2);
    double s2 = rt_sum_all_f64(n, x);
    rt_softmax_forward(64, 1000, 1, 1, 0, sm2, x);
    rt_set_threads(prev);
    CHECK_CLOSE(s1, s, 1e-9 * n);
    CHECK(s1 == s2 && !memcmp(sm1, sm2, m * 4));
    free(x), free(sm1), free(sm2);
}

TEST(expf_nonpos_accuracy) {
    double worst = 0, wx = 0;
    for (int64_t k = 0; k <= 2000000; k++) { /* [-87.3, 0] in even steps, plus the float grid near 0 */
        float x = (float)(-87.3 * k / 2000000.0);
        float xs[2] = {x, -(float)k * 1e-7f};
        for (int j = 0; j < 2; j++) {
            double e = exp((double)xs[j]), rel = fabs(rt_expf_nonpos(xs[j]) - e) / e;
            if (rel > worst) worst = rel, wx = xs[j];
        }
    }
    CHECKF(worst < 2.5e-7, "max relative error %g at %g", worst, wx);
    CHECK(rt_expf_nonpos(0) == 1 && rt_expf_nonpos(-INFINITY) == 0 && rt_expf_nonpos(-100) == 0);
    CHECK(rt_expf_nonpos(-87.4f) == 0 && rt_expf_nonpos(-87.3f) > 0 && isnan(rt_expf_nonpos(NAN)));
}

TEST(scalar_loss_backward) {
    /* L = mean(x * x) is a 0-dim tensor rt_backward accepts: dL/dx = 2 x / n */
    rt_ctx *ctx = rt_ctx_new();
    rt_tensor *x = rt_test_tensor(2, (int64_t[]){3, 5}, 4, 1);
    rt_tensor *L = rt_mean_all(ctx, rt_mul(ctx, x, x));
    CHECK(L && L->ndim == 0 && rt_backward(ctx, L) == 0);
    double want = 0;
    for (int i = 0; i < 15; i++) {
        want += x->data[i] * (double)x->data[i] / 15;
        CHECK_CLOSE(x->grad[i], 2 * x->data[i] / 15.0, 1e-6);
    }
    CHECK_CLOSE(L->data[0], want, 1e-6);
    rt_test_tensor_free(x);
    rt_ctx_free(ctx);
}
