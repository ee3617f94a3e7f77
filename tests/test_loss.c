/* Losses: finite-difference checks of every loss and reduction, values and gradients against
 * PyTorch, output shapes, KL's zero-target convention, stability, and error messages. */
#include "retort/retort.h"
#include "test.h"
#include "test_util.h"

#include "fixtures/loss_fixture.h"

/* positive rows summing to 1 */
static void make_probs(rt_tensor *t) {
    int64_t B = t->shape[0], K = t->shape[1];
    for (int64_t i = 0; i < B; i++) {
        double s = 0;
        for (int64_t k = 0; k < K; k++) s += (t->data[i * K + k] = expf(t->data[i * K + k]));
        for (int64_t k = 0; k < K; k++) t->data[i * K + k] /= (float)s;
    }
}

static int rel_ok(double a, double b, double tol) { return fabs(a - b) <= tol * fmax(fabs(a), fabs(b)); }

static const char *red_name(rt_reduction r) { return r == RT_MEAN ? "mean" : r == RT_SUM ? "sum" : "none"; }

/* ---- finite-difference checks ---- */

typedef struct {
    const int32_t *labels;
    float smoothing, param;
    int kind; /* pointwise: 0 mse, 1 l1, 2 smooth_l1, 3 huber */
    rt_reduction red;
} loss_user;

static rt_tensor *f_ce(rt_ctx *ctx, rt_tensor **in, void *user) {
    loss_user *u = user;
    return rt_cross_entropy(ctx, in[0], u->labels, u->smoothing, u->red);
}
static rt_tensor *f_soft_ce(rt_ctx *ctx, rt_tensor **in, void *user) {
    return rt_soft_cross_entropy(ctx, in[0], in[1], ((loss_user *)user)->red);
}
static rt_tensor *f_kl(rt_ctx *ctx, rt_tensor **in, void *user) {
    return rt_kl_div(ctx, in[0], in[1], ((loss_user *)user)->red);
}
static rt_tensor *f_pointwise(rt_ctx *ctx, rt_tensor **in, void *user) {
    loss_user *u = user;
    switch (u->kind) {
    case 0:
        return rt_mse(ctx, in[0], in[1], u->red);
    case 1:
        return rt_l1(ctx, in[0], in[1], u->red);
    case 2:
        return rt_smooth_l1(ctx, in[0], in[1], u->param, u->red);
    default:
        return rt_huber(ctx, in[0], in[1], u->param, u->red);
    }
}

TEST(gradcheck_cross_entropy) {
    rt_ctx *ctx = rt_ctx_new();
    static const int32_t labels[4] = {1, 0, 4, 2};
    char rep[512];
    for (int s = 0; s < 3; s++)
        for (int r = 0; r < 3; r++) {
            loss_user u = {labels, s == 0 ? 0.0f : s == 1 ? 0.1f : 1.0f, 0, 0, (rt_reduction)r};
            rt_tensor *in[1] = {rt_test_tensor(2, (int64_t[]){4, 5}, 100 + r, 1)};
            CHECKF(rt_gradcheck(ctx, f_ce, &u, 1, in, NULL, rep) == 0, "smoothing %g %s: %s / %s", u.smoothing,
                   red_name(u.red), rep, rt_errmsg(ctx));
            rt_test_tensor_free(in[0]);
        }
    rt_ctx_free(ctx);
}

TEST(gradcheck_soft_cross_entropy) {
    rt_ctx *ctx = rt_ctx_new();
    char rep[512];
    for (int r = 0; r < 3; r++) {
        loss_user u = {NULL, 0, 0, 0, (rt_reduction)r};
        rt_tensor *in[2] = {rt_test_tensor(2, (int64_t[]){3, 4}, 110 + r, 1),
                            rt_test_tensor(2, (int64_t[]){3, 4}, 120 + r, 1)};
        make_probs(in[1]);
        CHECKF(rt_gradcheck(ctx, f_soft_ce, &u, 2, in, NULL, rep) == 0, "%s: %s / %s", red_name(u.red), rep,
               rt_errmsg(ctx));
        rt_test_tensor_free(in[0]);
        rt_test_tensor_free(in[1]);
    }
    rt_ctx_free(ctx);
}

TEST(gradcheck_kl_div) {
    rt_ctx *ctx = rt_ctx_new();
    char rep[512];
    for (int r = 0; r < 3; r++) {
        loss_user u = {NULL, 0, 0, 0, (rt_reduction)r};
        rt_tensor *in[2] = {rt_test_tensor(2, (int64_t[]){3, 4}, 130 + r, 1),
                            rt_test_tensor(2, (int64_t[]){3, 4}, 140 + r, 1)};
        make_probs(in[1]);
        CHECKF(rt_gradcheck(ctx, f_kl, &u, 2, in, NULL, rep) == 0, "%s: %s / %s", red_name(u.red), rep, rt_errmsg(ctx));
        /* a zero target entry: the input's gradient is still exact there (-t = 0) */
        in[1]->data[5] = 0;
        in[1]->requires_grad = 0;
        CHECKF(rt_gradcheck(ctx, f_kl, &u, 2, in, NULL, rep) == 0, "zero target %s: %s / %s", red_name(u.red), rep,
               rt_errmsg(ctx));
        rt_test_tensor_free(in[0]);
        rt_test_tensor_free(in[1]);
    }
    rt_ctx_free(ctx);
}

TEST(gradcheck_pointwise_losses) {
    rt_ctx *ctx = rt_ctx_new();
    const struct {
        int kind;
        float param;
    } ks[5] = {{0, 0}, {1, 0}, {2, 0.5f}, {2, 0.0f}, {3, 2.0f}};
    const int64_t s2[2] = {3, 4}, s4[4] = {2, 3, 2, 2};
    char rep[512];
    for (int k = 0; k < 5; k++)
        for (int sh = 0; sh < 2; sh++)
            for (int r = 0; r < 3; r++) {
                loss_user u = {NULL, 0, ks[k].param, ks[k].kind, (rt_reduction)r};
                int nd = sh ? 4 : 2;
                const int64_t *shape = sh ? s4 : s2;
                rt_tensor *in[2] = {rt_test_tensor(nd, shape, 150 + k, 1), rt_test_tensor(nd, shape, 160 + r, 1)};
                for (int64_t i = 0; i < rt_numel(in[0]); i++) in[0]->data[i] *= 2; /* both sides of the thresholds */
                CHECKF(rt_gradcheck(ctx, f_pointwise, &u, 2, in, NULL, rep) == 0, "kind %d param %g %d-D %s: %s / %s",
                       ks[k].kind, ks[k].param, nd, red_name(u.red), rep, rt_errmsg(ctx));
                rt_test_tensor_free(in[0]);
                rt_test_tensor_free(in[1]);
            }
    rt_ctx_free(ctx);
}

/* ---- against PyTorch ---- */

#define CHECK_REL(a, b) CHECKF(rel_ok((a), (b), 1e-5), "%s = %.9g, %s = %.9g", #a, (double)(a), #b, (double)(b))

/* out is a 0-dim scalar (MEAN/SUM) or (B,) (NONE) equal to ref within 1e-5 relative */
static int matches(const rt_tensor *out, const float *ref, rt_reduction red, int64_t B, char *why) {
    if (!out) return sprintf(why, "NULL"), 0;
    if (red == RT_NONE ? out->ndim != 1 || out->shape[0] != B : out->ndim != 0)
        return sprintf(why, "ndim %d", out->ndim), 0;
    for (int64_t i = 0; i < rt_numel(out); i++)
        if (!rel_ok(out->data[i], ref[i], 1e-5))
            return sprintf(why, "[%lld] %.9g vs %.9g", (long long)i, out->data[i], ref[i]), 0;
    return 1;
}

TEST(cross_entropy_matches_pytorch) {
    rt_ctx *ctx = rt_ctx_new();
    rt_tensor *z = rt_test_tensor_from(fx_ce_logits, 2, (int64_t[]){4, 5}, 1);
    char why[200];
    CHECKF(matches(rt_cross_entropy(ctx, z, fx_ce_labels, 0, RT_MEAN), fx_ce_mean, RT_MEAN, 4, why), "mean %s", why);
    CHECKF(matches(rt_cross_entropy(ctx, z, fx_ce_labels, 0, RT_SUM), fx_ce_sum, RT_SUM, 4, why), "sum %s", why);
    CHECKF(matches(rt_cross_entropy(ctx, z, fx_ce_labels, 0, RT_NONE), fx_ce_none, RT_NONE, 4, why), "none %s", why);
    CHECKF(matches(rt_cross_entropy(ctx, z, fx_ce_labels, 0.1f, RT_NONE), fx_ce_ls_none, RT_NONE, 4, why), "ls none %s",
           why);
    rt_tensor *L = rt_cross_entropy(ctx, z, fx_ce_labels, 0.1f, RT_MEAN);
    CHECKF(matches(L, fx_ce_ls_mean, RT_MEAN, 4, why), "ls mean %s", why);
    CHECK(rt_backward(ctx, L) == 0);
    double e = rt_test_maxrel(z->grad, fx_ce_ls_mean_grad, 20);
    CHECKF(e < 1e-5, "grad maxrel %g", e);
    rt_tensor *t = rt_test_tensor_from(fx_soft_target, 2, (int64_t[]){4, 5}, 0);
    CHECKF(matches(rt_soft_cross_entropy(ctx, z, t, RT_MEAN), fx_soft_ce_mean, RT_MEAN, 4, why), "soft %s", why);
    CHECKF(matches(rt_soft_cross_entropy(ctx, z, t, RT_NONE), fx_soft_ce_none, RT_NONE, 4, why), "soft %s", why);
    rt_test_tensor_free(z);
    rt_test_tensor_free(t);
    rt_ctx_free(ctx);
}

TEST(kl_div_matches_pytorch) {
    rt_ctx *ctx = rt_ctx_new();
    rt_tensor *x = rt_test_tensor_from(fx_kl_input, 2, (int64_t[]){3, 4}, 1),
              *t = rt_test_tensor_from(fx_kl_target, 2, (int64_t[]){3, 4}, 1);
    CHECK(t->data[6] == 0); /* the fixture has a zero target entry */
    char why[200];
    CHECKF(matches(rt_kl_div(ctx, x, t, RT_SUM), fx_kl_sum, RT_SUM, 3, why), "sum %s", why);
    CHECKF(matches(rt_kl_div(ctx, x, t, RT_NONE), fx_kl_none, RT_NONE, 3, why), "none %s", why);
    rt_tensor *L = rt_kl_div(ctx, x, t, RT_MEAN);
    CHECKF(matches(L, fx_kl_batchmean, RT_MEAN, 3, why), "batchmean %s", why);
    CHECK(rt_backward(ctx, L) == 0);
    CHECKF(rt_test_maxrel(x->grad, fx_kl_batchmean_grad_input, 12) < 1e-5, "grad %g",
           rt_test_maxrel(x->grad, fx_kl_batchmean_grad_input, 12));
    /* target gradient: (log t + 1 - x) / B, and -x / B at the zero entry (t log t -> 0) */
    for (int i = 0; i < 12; i++) {
        double e = ((t->data[i] > 0 ? log(t->data[i]) + 1 : 0) - x->data[i]) / 3;
        CHECKF(fabs(t->grad[i] - e) <= 1e-6 * fmax(1, fabs(e)), "dt[%d] = %g, expected %g", i, t->grad[i], e);
        CHECK(isfinite(t->grad[i]));
    }
    rt_test_tensor_free(x);
    rt_test_tensor_free(t);
    rt_ctx_free(ctx);
}

TEST(pointwise_losses_match_pytorch) {
    rt_ctx *ctx = rt_ctx_new();
    rt_tensor *a = rt_test_tensor_from(fx_pw_a, 2, (int64_t[]){3, 4}, 0),
              *b = rt_test_tensor_from(fx_pw_b, 2, (int64_t[]){3, 4}, 0);
    const float *refs[4][3] = {{fx_mse_mean, fx_mse_sum, fx_mse_none},
                               {fx_l1_mean, fx_l1_sum, fx_l1_none},
                               {fx_smooth_l1_mean, fx_smooth_l1_sum, fx_smooth_l1_none},
                               {fx_huber_mean, fx_huber_sum, fx_huber_none}};
    const float params[4] = {0, 0, 0.5f, 2.0f};
    char why[200];
    for (int k = 0; k < 4; k++)
        for (int r = 0; r < 3; r++) {
            loss_user u = {NULL, 0, params[k], k, (rt_reduction)r};
            rt_tensor *in[2] = {a, b};
            CHECKF(matches(f_pointwise(ctx, in, &u), refs[k][r], (rt_reduction)r, 3, why), "kind %d %s: %s", k,
                   red_name((rt_reduction)r), why);
        }
    /* the fixture exercises both branches of smooth-L1 and Huber */
    int small = 0, mid = 0, large = 0;
    for (int i = 0; i < 12; i++) {
        double d = fabs(fx_pw_a[i] - fx_pw_b[i]);
        small += d < 0.5, mid += d >= 0.5 && d < 2, large += d >= 2;
    }
    CHECKF(small && mid && large, "%d %d %d", small, mid, large);
    rt_test_tensor_free(a);
    rt_test_tensor_free(b);
    rt_ctx_free(ctx);
}

/* ---- shapes, views, stability, edge cases ---- */

TEST(loss_output_shapes_and_views) {
    rt_ctx *ctx = rt_ctx_new();
    rt_tensor *a = rt_test_tensor(2, (int64_t[]){4, 3}, 170, 0), *b = rt_test_tensor(2, (int64_t[]){4, 3}, 171, 0);
    rt_tensor *y = rt_mse(ctx, a, b, RT_SUM);
    CHECK(y && y->ndim == 0 && rt_numel(y) == 1);
    y = rt_l1(ctx, a, b, RT_NONE);
    CHECK(y && y->ndim == 1 && y->shape[0] == 4);
    /* non-contiguous inputs: the loss of transposed views equals the loss of transposed copies */
    rt_tensor *at = rt_transpose(ctx, a, 0, 1), *bt = rt_transpose(ctx, b, 0, 1);
    rt_tensor *ac = rt_contiguous(ctx, at), *bc = rt_contiguous(ctx, bt);
    rt_tensor *y1 = rt_smooth_l1(ctx, at, bt, 0.5f, RT_NONE), *y2 = rt_smooth_l1(ctx, ac, bc, 0.5f, RT_NONE);
    CHECK(y1 && y2 && y1->shape[0] == 3 && memcmp(y1->data, y2->data, 3 * sizeof(float)) == 0);
    /* huber(delta) = delta * smooth_l1(beta = delta) */
    rt_tensor *h = rt_huber(ctx, a, b, 0.7f, RT_SUM), *s = rt_smooth_l1(ctx, a, b, 0.7f, RT_SUM);
    CHECK(h && s);
    CHECK_CLOSE(h->data[0], 0.7 * s->data[0], 1e-6);
    /* RT_MEAN of a pointwise loss = mean over all elements = mean of the per-sample means */
    rt_tensor *m = rt_mse(ctx, a, b, RT_MEAN), *pn = rt_mse(ctx, a, b, RT_NONE);
    CHECK(m && pn);
    CHECK_CLOSE(m->data[0], (pn->data[0] + pn->data[1] + pn->data[2] + pn->data[3]) / 4, 1e-6);
    /* a 0-dim input has no batch dim: fine for MEAN/SUM */
    rt_tensor *s0 = rt_empty(ctx, 0, NULL), *t0 = rt_empty(ctx, 0, NULL);
    s0->data[0] = 3, t0->data[0] = 1;
    y = rt_mse(ctx, s0, t0, RT_MEAN);
    CHECK(y && y->data[0] == 4);
    CHECK(!rt_mse(ctx, s0, t0, RT_NONE) && rt_status(ctx) == RT_ESHAPE);
    rt_clear_error(ctx);
    rt_test_tensor_free(a);
    rt_test_tensor_free(b);
    rt_ctx_free(ctx);
}

TEST(cross_entropy_stable_for_large_logits) {
    rt_ctx *ctx = rt_ctx_new();
    float zd[6] = {1000, -1000, 0, -5000, 5000, 4990};
    rt_tensor z;
    rt_tensor_init(&z, zd, 2, (int64_t[]){2, 3});
    float gz[6] = {0};
    rt_leaf(ctx, &z, gz);
    const int32_t labels[2] = {1, 2};
    rt_tensor *L = rt_cross_entropy(ctx, &z, labels, 0, RT_NONE);
    CHECK(L);
    CHECK_CLOSE(L->data[0], 2000, 1e-6);
    CHECK_CLOSE(L->data[1], 10 + log1p(exp(-10)), 1e-6);
    CHECK(rt_backward_seed(ctx, L, (float[]){1, 1}) == 0);
    for (int i = 0; i < 6; i++) CHECK(isfinite(gz[i]));
    CHECK_CLOSE(gz[1], -1, 1e-6);
    CHECK_CLOSE(gz[0], 1, 1e-6);
    rt_ctx_free(ctx);
}

/* ---- errors ---- */

TEST(cross_entropy_label_errors) {
    rt_ctx *ctx = rt_ctx_new();
    rt_tensor *z = rt_test_tensor(2, (int64_t[]){4, 5}, 180, 0);
    const int32_t bad[4] = {1, 0, 7, 2}, neg[4] = {-1, 0, 1, 2}, ok[4] = {0, 1, 2, 3};
    CHECK(!rt_cross_entropy(ctx, z, bad, 0, RT_MEAN) && rt_status(ctx) == RT_EINVAL);
    const char *m = rt_errmsg(ctx);
    CHECKF(strstr(m, "cross_entropy") && strstr(m, "label 7") && strstr(m, "index 2") && strstr(m, "[0, 5)"), "%s", m);
    rt_clear_error(ctx);
    CHECK(!rt_cross_entropy(ctx, z, neg, 0, RT_MEAN) && strstr(rt_errmsg(ctx), "label -1 at index 0"));
    rt_clear_error(ctx);
    CHECK(!rt_cross_entropy(ctx, z, ok, 1.5f, RT_MEAN) && strstr(rt_errmsg(ctx), "label_smoothing"));
    rt_clear_error(ctx);
    CHECK(!rt_cross_entropy(ctx, z, NULL, 0, RT_MEAN) && rt_status(ctx) == RT_EINVAL);
    rt_clear_error(ctx);
    CHECK(!rt_cross_entropy(ctx, z, ok, 0, (rt_reduction)7) && strstr(rt_errmsg(ctx), "reduction"));
    rt_clear_error(ctx);
    rt_tensor *z3 = rt_test_tensor(3, (int64_t[]){4, 5, 2}, 181, 0);
    CHECK(!rt_cross_entropy(ctx, z3, ok, 0, RT_MEAN) && rt_status(ctx) == RT_ESHAPE);
    CHECKF(strstr(rt_errmsg(ctx), "(4,5,2)"), "%s", rt_errmsg(ctx));
    rt_test_tensor_free(z);
    rt_test_tensor_free(z3);
    rt_ctx_free(ctx);
}

static rt_tensor *mis_mse(rt_ctx *c, rt_tensor *a, rt_tensor *b) { return rt_mse(c, a, b, RT_MEAN); }
static rt_tensor *mis_l1(rt_ctx *c, rt_tensor *a, rt_tensor *b) { return rt_l1(c, a, b, RT_NONE); }
static rt_tensor *mis_sl1(rt_ctx *c, rt_tensor *a, rt_tensor *b) { return rt_smooth_l1(c, a, b, 1, RT_MEAN); }
static rt_tensor *mis_huber(rt_ctx *c, rt_tensor *a, rt_tensor *b) { return rt_huber(c, a, b, 1, RT_SUM); }
static rt_tensor *mis_kl(rt_ctx *c, rt_tensor *a, rt_tensor *b) { return rt_kl_div(c, a, b, RT_MEAN); }
static rt_tensor *mis_soft(rt_ctx *c, rt_tensor *a, rt_tensor *b) { return rt_soft_cross_entropy(c, a, b, RT_NONE); }

TEST(loss_shape_mismatch_errors) {
    rt_ctx *ctx = rt_ctx_new();
    rt_tensor *a = rt_test_tensor(2, (int64_t[]){3, 4}, 190, 0), *b = rt_test_tensor(2, (int64_t[]){4, 3}, 191, 0);
    const struct {
        const char *name;
        rt_tensor *(*f)(rt_ctx *, rt_tensor *, rt_tensor *);
    } cs[6] = {{"mse", mis_mse},     {"l1", mis_l1},     {"smooth_l1", mis_sl1},
               {"huber", mis_huber}, {"kl_div", mis_kl}, {"soft_cross_entropy", mis_soft}};
    for (int k = 0; k < 6; k++) {
        rt_tensor *y = cs[k].f(ctx, a, b);
        const char *m = rt_errmsg(ctx);
        CHECKF(!y && rt_status(ctx) == RT_ESHAPE && strstr(m, cs[k].name) && strstr(m, "(3,4)") && strstr(m, "(4,3)"),
               "%s: %s", cs[k].name, m);
        rt_clear_error(ctx);
    }
    CHECK(!rt_smooth_l1(ctx, a, a, -1.0f, RT_MEAN) && strstr(rt_errmsg(ctx), "beta"));
    rt_clear_error(ctx);
    CHECK(!rt_huber(ctx, a, a, 0.0f, RT_MEAN) && strstr(rt_errmsg(ctx), "delta"));
    rt_clear_error(ctx);
    CHECK(!rt_mse(ctx, a, NULL, RT_MEAN) && rt_status(ctx) == RT_EINVAL);
    rt_test_tensor_free(a);
    rt_test_tensor_free(b);
    rt_ctx_free(ctx);
}
