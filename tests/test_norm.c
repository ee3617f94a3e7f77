/* Batch norm and dropout: fast kernels against the references and across thread counts, the
 * running-statistics update in closed form, eval mode, PyTorch's values, finite-difference checks
 * of every mode (train/eval, 2-D/4-D, with/without affine), and dropout's mask and determinism. */
#include "kernels/batchnorm.h"
#include "retort/retort.h"
#include "test.h"
#include "test_util.h"

#include "fixtures/loss_fixture.h"

/* p[0..n) = scale * N(0,1) + shift, the draws of rt_test_fill_normal(p, n, seed). */
static void fill_affine(float *p, int64_t n, uint64_t seed, float scale, float shift) {
    rt_test_fill_normal(p, n, seed);
    for (int64_t i = 0; i < n; i++) p[i] = p[i] * scale + shift;
}

/* ---- kernels: fast vs reference ---- */

typedef struct {
    float *x, *dy, *mean, *var, *invstd, *gamma, *beta, *y, *dx, *dg, *db;
} bn_bufs;

static bn_bufs bn_alloc(int64_t N, int64_t C, int64_t S, uint64_t seed) {
    int64_t n = N * C * S;
    bn_bufs b = {malloc(n * 4), malloc(n * 4), malloc(C * 4), malloc(C * 4), malloc(C * 4), malloc(C * 4),
                 malloc(C * 4), malloc(n * 4), malloc(n * 4), malloc(C * 4), malloc(C * 4)};
    fill_affine(b.x, n, seed, 3.0f, 2.0f); /* an offset mean tests the one-pass variance */
    rt_test_fill_normal(b.dy, n, seed + 1);
    fill_affine(b.gamma, C, seed + 2, 0.5f, 1.0f);
    rt_test_fill_normal(b.beta, C, seed + 3);
    rt_test_fill_normal(b.dx, n, seed + 4); /* non-zero: backward must accumulate */
    rt_test_fill_normal(b.dg, C, seed + 5);
    rt_test_fill_normal(b.db, C, seed + 6);
    return b;
}
static void bn_free(bn_bufs *b) {
    float **p = (float **)b;
    for (size_t i = 0; i < sizeof *b / sizeof(float *); i++) free(p[i]);
}

TEST(bn_kernels_fast_vs_ref) {
    const int64_t shapes[][3] = {{2, 3, 5}, {8, 16, 49}, {33, 7, 1}, {16, 32, 100}, {3, 4, 7}};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        int64_t N = shapes[k][0], C = shapes[k][1], S = shapes[k][2], n = N * C * S;
        bn_bufs f = bn_alloc(N, C, S, 10 + k), r = bn_alloc(N, C, S, 10 + k);
        rt_bn_stats(f.x, N, C, S, f.mean, f.var);
        rt_bn_stats_ref(r.x, N, C, S, r.mean, r.var);
        CHECKF(rt_test_maxrel(f.mean, r.mean, C) < 1e-6, "mean shape %zu: %g", k, rt_test_maxrel(f.mean, r.mean, C));
        CHECKF(rt_test_maxrel(f.var, r.var, C) < 1e-6, "var shape %zu: %g", k, rt_test_maxrel(f.var, r.var, C));
        for (int64_t c = 0; c < C; c++) f.invstd[c] = r.invstd[c] = 1.0f / sqrtf(r.var[c] + 1e-5f);
        for (int affine = 0; affine < 2; affine++) {
            rt_bn_apply(f.x, r.mean, f.invstd, affine ? f.gamma : NULL, affine ? f.beta : NULL, N, C, S, f.y);
            rt_bn_apply_ref(r.x, r.mean, r.invstd, affine ? r.gamma : NULL, affine ? r.beta : NULL, N, C, S, r.y);
            double e = rt_test_maxrel(f.y, r.y, n);
            CHECKF(e < 1e-6, "apply shape %zu affine %d: %g", k, affine, e);
        }
        for (int train = 0; train < 2; train++)
            for (int affine = 0; affine < 2; affine++) {
                rt_bn_backward(f.dy, f.x, r.mean, f.invstd, affine ? f.gamma : NULL, train, N, C, S, f.dx, f.dg, f.db);
                rt_bn_backward_ref(r.dy, r.x, r.mean, r.invstd, affine ? r.gamma : NULL, train, N, C, S, r.dx, r.dg,
                                   r.db);
                double ex = rt_test_maxrel(f.dx, r.dx, n), eg = rt_test_maxrel(f.dg, r.dg, C),
                       eb = rt_test_maxrel(f.db, r.db, C);
                CHECKF(ex < 1e-5 && eg < 1e-5 && eb < 1e-5, "backward shape %zu train %d affine %d: %g %g %g", k, train,
                       affine, ex, eg, eb);
            }
        /* NULL gradient outputs are skipped */
        rt_bn_backward(f.dy, f.x, r.mean, f.invstd, f.gamma, 1, N, C, S, NULL, NULL, f.db);
        rt_bn_backward_ref(r.dy, r.x, r.mean, r.invstd, r.gamma, 1, N, C, S, NULL, NULL, r.db);
        CHECK(rt_test_maxrel(f.db, r.db, C) < 1e-5);
        bn_free(&f);
        bn_free(&r);
    }
}

/* The reference itself against hand-computed values: x = 1,2,3,4 in one channel. */
TEST(bn_reference_by_hand) {
    float x[4] = {1, 2, 3, 4}, mean, var, invstd, y[4];
    rt_bn_stats_ref(x, 4, 1, 1, &mean, &var);
    CHECK_CLOSE(mean, 2.5, 1e-7);
    CHECK_CLOSE(var, 1.25, 1e-7);
    invstd = 1.0f / sqrtf(var);
    float g = 2, b = 1;
    rt_bn_apply_ref(x, &mean, &invstd, &g, &b, 4, 1, 1, y);
    CHECK_CLOSE(y[0], 1 + 2 * (-1.5 / sqrt(1.25)), 1e-6);
    /* with dy = xhat the input gradient vanishes in training mode (the loss is scale invariant) */
    float dy[4], dx[4] = {0}, dg = 0, db = 0;
    for (int i = 0; i < 4; i++) dy[i] = (x[i] - mean) * invstd;
    rt_bn_backward_ref(dy, x, &mean, &invstd, NULL, 1, 4, 1, 1, dx, &dg, &db);
    for (int i = 0; i < 4; i++) CHECK_CLOSE(dx[i], 0, 1e-6);
    CHECK_CLOSE(dg, 4, 1e-6);
    CHECK_CLOSE(db, 0, 1e-6);
}

TEST(bn_kernels_same_bits_any_thread_count) {
    int64_t N = 16, C = 24, S = 144, n = N * C * S;
    int prev = rt_threads();
    float *out[2];
    for (int t = 0; t < 2; t++) {
        rt_set_threads(t + 1);
        bn_bufs b = bn_alloc(N, C, S, 99);
        rt_bn_stats(b.x, N, C, S, b.mean, b.var);
        for (int64_t c = 0; c < C; c++) b.invstd[c] = 1.0f / sqrtf(b.var[c] + 1e-5f);
        rt_bn_apply(b.x, b.mean, b.invstd, b.gamma, b.beta, N, C, S, b.y);
        rt_bn_backward(b.dy, b.x, b.mean, b.invstd, b.gamma, 1, N, C, S, b.dx, b.dg, b.db);
        out[t] = malloc((2 * n + 4 * C) * sizeof(float));
        memcpy(out[t], b.y, n * 4);
        memcpy(out[t] + n, b.dx, n * 4);
        memcpy(out[t] + 2 * n, b.mean, C * 4);
        memcpy(out[t] + 2 * n + C, b.var, C * 4);
        memcpy(out[t] + 2 * n + 2 * C, b.dg, C * 4);
        memcpy(out[t] + 2 * n + 3 * C, b.db, C * 4);
        bn_free(&b);
    }
    rt_set_threads(prev);
    int same = memcmp(out[0], out[1], (2 * n + 4 * C) * sizeof(float)) == 0;
    free(out[0]);
    free(out[1]);
    CHECK(same);
}

/* ---- the op ---- */

typedef struct {
    int training, transpose;
    float *rm, *rv;
} bn_user;

/* the transposed variant feeds a non-contiguous (N,C) view */
static rt_tensor *bn_call(rt_ctx *ctx, rt_tensor *x, rt_tensor *g, rt_tensor *b, bn_user *u) {
    if (u->transpose) x = rt_transpose(ctx, x, 0, 1);
    return rt_batchnorm(ctx, x, g, b, u->rm, u->rv, u->training, 0.1f, 1e-5f);
}
static rt_tensor *f_bn(rt_ctx *ctx, rt_tensor **in, void *u) { return bn_call(ctx, in[0], in[1], in[2], u); }
static rt_tensor *f_bn_noaffine(rt_ctx *ctx, rt_tensor **in, void *u) { return bn_call(ctx, in[0], NULL, NULL, u); }
static rt_tensor *f_bn_gamma_only(rt_ctx *ctx, rt_tensor **in, void *u) { return bn_call(ctx, in[0], in[1], NULL, u); }

TEST(bn_gradcheck_all_modes) {
    rt_ctx *ctx = rt_ctx_new();
    const int64_t s4[4] = {3, 2, 2, 3}, s2[2] = {5, 2}, s2t[2] = {2, 5};
    const int64_t *shapes[3] = {s4, s2, s2t};
    const int ndims[3] = {4, 2, 2};
    char rep[512];
    for (int sh = 0; sh < 3; sh++)
        for (int training = 0; training < 2; training++)
            for (int affine = 0; affine < 3; affine++) { /* 0: none, 1: gamma and beta, 2: gamma only */
                float rm[2] = {0.3f, -0.2f}, rv[2] = {0.7f, 1.6f};
                bn_user u = {training, sh == 2, rm, rv};
                rt_tensor *in[3] = {rt_test_tensor(ndims[sh], shapes[sh], 20 + sh, 1),
                                    rt_test_tensor(1, (int64_t[]){2}, 30, 1), rt_test_tensor(1, (int64_t[]){2}, 31, 1)};
                for (int i = 0; i < 2; i++) in[1]->data[i] += 1.5f; /* gamma away from 0 */
                rt_gradcheck_fn f = affine == 0 ? f_bn_noaffine : affine == 1 ? f_bn : f_bn_gamma_only;
                int rc = rt_gradcheck(ctx, f, &u, affine == 0 ? 1 : affine == 1 ? 3 : 2, in, NULL, rep);
                CHECKF(rc == 0, "shape %d training %d affine %d: %s / %s", sh, training, affine, rep, rt_errmsg(ctx));
                for (int i = 0; i < 3; i++) rt_test_tensor_free(in[i]);
            }
    rt_ctx_free(ctx);
}

TEST(bn_running_stats_closed_form) {
    rt_ctx *ctx = rt_ctx_new();
    const int64_t N = 3, C = 2, H = 2, W = 2;
    rt_tensor *x = rt_test_tensor(4, (int64_t[]){N, C, H, W}, 40, 0);
    float rm[2] = {0.5f, -1.0f}, rv[2] = {2.0f, 0.25f};
    double erm[2] = {0.5, -1.0}, erv[2] = {2.0, 0.25};
    for (int step = 0; step < 3; step++) {
        for (int64_t i = 0; i < N * C * H * W; i++) x->data[i] = x->data[i] * 1.5f + 0.25f; /* new batch */
        float momentum = step == 2 ? 1.0f : 0.1f;
        rt_tensor *y = rt_batchnorm(ctx, x, NULL, NULL, rm, rv, 1, momentum, 1e-5f);
        CHECK(y);
        for (int c = 0; c < C; c++) {
            double s = 0, sq = 0, M = N * H * W;
            for (int n = 0; n < N; n++)
                for (int k = 0; k < H * W; k++) s += x->data[(n * C + c) * H * W + k];
            double mean = s / M;
            for (int n = 0; n < N; n++)
                for (int k = 0; k < H * W; k++) {
                    double d = x->data[(n * C + c) * H * W + k] - mean;
                    sq += d * d;
                }
            erm[c] = (1 - momentum) * erm[c] + momentum * mean;
            erv[c] = (1 - momentum) * erv[c] + momentum * sq / (M - 1); /* unbiased */
            CHECK_CLOSE(rm[c], erm[c], 1e-6);
            CHECK_CLOSE(rv[c], erv[c], 1e-6);
            /* the output is normalised with the biased variance */
            double ys = 0, yq = 0;
            for (int n = 0; n < N; n++)
                for (int k = 0; k < H * W; k++) {
                    double v = y->data[(n * C + c) * H * W + k];
                    ys += v;
                    yq += v * v;
                }
            CHECK_CLOSE(ys / M, 0, 1e-6);
            CHECK_CLOSE(yq / M, (sq / M) / (sq / M + 1e-5), 1e-5);
        }
        rt_step_reset(ctx);
    }
    rt_test_tensor_free(x);
    rt_ctx_free(ctx);
}

TEST(bn_eval_uses_running_stats) {
    rt_ctx *ctx = rt_ctx_new();
    rt_tensor *x = rt_test_tensor(2, (int64_t[]){4, 3}, 41, 0), *g = rt_test_tensor(1, (int64_t[]){3}, 42, 0),
              *b = rt_test_tensor(1, (int64_t[]){3}, 43, 0);
    float rm[3] = {0.1f, -0.3f, 2.0f}, rv[3] = {0.5f, 1.0f, 4.0f}, rm0[3], rv0[3];
    memcpy(rm0, rm, sizeof rm);
    memcpy(rv0, rv, sizeof rv);
    rt_tensor *y = rt_batchnorm(ctx, x, g, b, rm, rv, 0, 0.1f, 1e-3f);
    CHECK(y);
    CHECK(memcmp(rm, rm0, sizeof rm) == 0 && memcmp(rv, rv0, sizeof rv) == 0); /* untouched */
    for (int n = 0; n < 4; n++)
        for (int c = 0; c < 3; c++) {
            double e = (x->data[n * 3 + c] - rm[c]) / sqrt(rv[c] + 1e-3) * g->data[c] + b->data[c];
            CHECK_CLOSE(y->data[n * 3 + c], e, 1e-6);
        }
    rt_test_tensor_free(x);
    rt_test_tensor_free(g);
    rt_test_tensor_free(b);
    rt_ctx_free(ctx);
}

TEST(bn_matches_pytorch) {
    rt_ctx *ctx = rt_ctx_new();
    struct {
        const float *x, *g, *b, *rm0, *rv0, *y, *rm1, *rv1, *ye;
        int ndim;
        int64_t shape[4];
    } cs[2] = {{fx_bn4_x,
                fx_bn4_gamma,
                fx_bn4_beta,
                fx_bn4_rm0,
                fx_bn4_rv0,
                fx_bn4_y,
                fx_bn4_rm1,
                fx_bn4_rv1,
                fx_bn4_y_eval,
                4,
                {4, 3, 2, 2}},
               {fx_bn2_x,
                fx_bn2_gamma,
                fx_bn2_beta,
                fx_bn2_rm0,
                fx_bn2_rv0,
                fx_bn2_y,
                fx_bn2_rm1,
                fx_bn2_rv1,
                fx_bn2_y_eval,
                2,
                {6, 3}}};
    for (int k = 0; k < 2; k++) {
        rt_tensor x, g, b;
        rt_tensor_init(&x, (float *)cs[k].x, cs[k].ndim, cs[k].shape);
        rt_tensor_init(&g, (float *)cs[k].g, 1, (int64_t[]){3});
        rt_tensor_init(&b, (float *)cs[k].b, 1, (int64_t[]){3});
        float rm[3], rv[3];
        memcpy(rm, cs[k].rm0, sizeof rm);
        memcpy(rv, cs[k].rv0, sizeof rv);
        rt_tensor *y = rt_batchnorm(ctx, &x, &g, &b, rm, rv, 1, 0.1f, 1e-5f);
        CHECK(y);
        long n = rt_numel(y);
        CHECKF(rt_test_maxrel(y->data, cs[k].y, n) < 1e-5, "y %d: %g", k, rt_test_maxrel(y->data, cs[k].y, n));
        for (int c = 0; c < 3; c++) {
            CHECKF(fabs(rm[c] - cs[k].rm1[c]) <= 1e-5 * fabs(cs[k].rm1[c]), "rm %d[%d]: %.9g vs %.9g", k, c, rm[c],
                   cs[k].rm1[c]);
            CHECKF(fabs(rv[c] - cs[k].rv1[c]) <= 1e-5 * fabs(cs[k].rv1[c]), "rv %d[%d]: %.9g vs %.9g", k, c, rv[c],
                   cs[k].rv1[c]);
        }
        rt_tensor *ye = rt_batchnorm(ctx, &x, &g, &b, rm, rv, 0, 0.1f, 1e-5f);
        CHECK(ye);
        CHECKF(rt_test_maxrel(ye->data, cs[k].ye, n) < 1e-5, "eval %d: %g", k, rt_test_maxrel(ye->data, cs[k].ye, n));
    }
    rt_ctx_free(ctx);
}

TEST(bn_errors) {
    rt_ctx *ctx = rt_ctx_new();
    float rm[3] = {0}, rv[3] = {1, 1, 1};
    rt_tensor *x3 = rt_test_tensor(3, (int64_t[]){2, 3, 4}, 50, 0), *x = rt_test_tensor(2, (int64_t[]){2, 3}, 51, 0);
    rt_tensor *g4 = rt_test_tensor(1, (int64_t[]){4}, 52, 0), *x1 = rt_test_tensor(4, (int64_t[]){1, 3, 1, 1}, 53, 0);
    CHECK(!rt_batchnorm(ctx, x3, NULL, NULL, rm, rv, 1, 0.1f, 1e-5f) && rt_status(ctx) == RT_ESHAPE);
    CHECKF(strstr(rt_errmsg(ctx), "batchnorm") && strstr(rt_errmsg(ctx), "(2,3,4)"), "%s", rt_errmsg(ctx));
    rt_clear_error(ctx);
    CHECK(!rt_batchnorm(ctx, x, g4, NULL, rm, rv, 1, 0.1f, 1e-5f) && rt_status(ctx) == RT_ESHAPE);
    CHECKF(strstr(rt_errmsg(ctx), "gamma") && strstr(rt_errmsg(ctx), "(2,3)") && strstr(rt_errmsg(ctx), "(4)"), "%s",
           rt_errmsg(ctx));
    rt_clear_error(ctx);
    CHECK(!rt_batchnorm(ctx, x, NULL, g4, rm, rv, 1, 0.1f, 1e-5f) && strstr(rt_errmsg(ctx), "beta"));
    rt_clear_error(ctx);
    CHECK(!rt_batchnorm(ctx, x1, NULL, NULL, rm, rv, 1, 0.1f, 1e-5f) && rt_status(ctx) == RT_ESHAPE);
    CHECKF(strstr(rt_errmsg(ctx), "more than one value"), "%s", rt_errmsg(ctx));
    rt_clear_error(ctx);
    CHECK(rt_batchnorm(ctx, x1, NULL, NULL, rm, rv, 0, 0.1f, 1e-5f)); /* eval with one value is fine */
    CHECK(!rt_batchnorm(ctx, x, NULL, NULL, NULL, NULL, 0, 0.1f, 1e-5f) && rt_status(ctx) == RT_EINVAL);
    rt_clear_error(ctx);
    CHECK(rt_batchnorm(ctx, x, NULL, NULL, NULL, NULL, 1, 0.1f, 1e-5f)); /* no running stats in training */
    CHECK(!rt_batchnorm(ctx, NULL, NULL, NULL, rm, rv, 1, 0.1f, 1e-5f));
    rt_test_tensor_free(x3);
    rt_test_tensor_free(x);
    rt_test_tensor_free(g4);
    rt_test_tensor_free(x1);
    rt_ctx_free(ctx);
}

/* ---- dropout ---- */

static rt_tensor *f_dropout(rt_ctx *ctx, rt_tensor **in, void *user) { return rt_dropout(ctx, in[0], 0.4f, 1); }

TEST(dropout_gradcheck) {
    rt_ctx *ctx = rt_ctx_new();
    rt_tensor *in[1] = {rt_test_tensor(2, (int64_t[]){4, 5}, 60, 1)};
    char rep[512];
    CHECKF(rt_gradcheck(ctx, f_dropout, NULL, 1, in, NULL, rep) == 0, "%s / %s", rep, rt_errmsg(ctx));
    rt_test_tensor_free(in[0]);
    rt_ctx_free(ctx);
}

TEST(dropout_deterministic_and_seeded) {
    rt_ctx *ctx = rt_ctx_new();
    rt_tensor *x = rt_test_tensor(1, (int64_t[]){1000}, 61, 0);
    float *y[3];
    for (int k = 0; k < 3; k++) {
        rt_rng_seed(rt_ctx_rng(ctx), k == 2 ? 8 : 7);
        rt_tensor *t = rt_dropout(ctx, x, 0.5f, 1);
        CHECK(t && t != x);
        y[k] = t->data;
    }
    CHECK(memcmp(y[0], y[1], 1000 * sizeof(float)) == 0);
    CHECK(memcmp(y[0], y[2], 1000 * sizeof(float)) != 0);
    rt_test_tensor_free(x);
    rt_ctx_free(ctx);
}

TEST(dropout_rate_and_mean) {
    rt_ctx *ctx = rt_ctx_new();
    const int64_t n = 200000;
    const float ps[2] = {0.3f, 0.8f};
    for (int k = 0; k < 2; k++) {
        float p = ps[k];
        rt_tensor *x = rt_full(ctx, 1, &n, 1.0f), *y = rt_dropout(ctx, x, p, 1);
        CHECK(y);
        int64_t zeros = 0;
        double sum = 0;
        for (int64_t i = 0; i < n; i++) {
            CHECKF(y->data[i] == 0 || y->data[i] == 1.0f / (1.0f - p), "y[%lld] = %g", (long long)i, y->data[i]);
            zeros += y->data[i] == 0;
            sum += y->data[i];
        }
        /* binomial: the std of the rate is sqrt(p(1-p)/n) < 0.0012; of the mean < 0.0045 */
        CHECKF(fabs((double)zeros / n - p) < 0.006, "p %g: rate %g", p, (double)zeros / n);
        CHECKF(fabs(sum / n - 1) < 0.025, "p %g: mean %g", p, sum / n);
    }
    rt_ctx_free(ctx);
}

TEST(dropout_identity_in_eval_and_p0) {
    rt_ctx *ctx = rt_ctx_new();
    rt_tensor *x = rt_test_tensor(2, (int64_t[]){3, 4}, 62, 1);
    rt_rng before = *rt_ctx_rng(ctx);
    CHECK(rt_dropout(ctx, x, 0.5f, 0) == x);
    CHECK(rt_dropout(ctx, x, 0.0f, 1) == x);
    CHECK(memcmp(&before, rt_ctx_rng(ctx), sizeof before) == 0); /* no draws */
    CHECK(rt_tape_size(ctx) == 0);
    rt_test_tensor_free(x);
    rt_ctx_free(ctx);
}

TEST(dropout_errors) {
    rt_ctx *ctx = rt_ctx_new();
    rt_tensor *x = rt_test_tensor(1, (int64_t[]){4}, 63, 0);
    const float bad[3] = {1.0f, -0.1f, NAN};
    for (int k = 0; k < 3; k++) {
        CHECK(!rt_dropout(ctx, x, bad[k], 1) && rt_status(ctx) == RT_EINVAL);
        CHECKF(strstr(rt_errmsg(ctx), "dropout") && strstr(rt_errmsg(ctx), "[0, 1)"), "%s", rt_errmsg(ctx));
        rt_clear_error(ctx);
    }
    CHECK(!rt_dropout(ctx, x, 1.0f, 0)); /* p is checked in eval mode too */
    rt_test_tensor_free(x);
    rt_ctx_free(ctx);
}
