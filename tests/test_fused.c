/* The fused ops of residual networks: relu(batchnorm(x) + r) and relu(a + b). Their fast kernels
 * against the references on every ISA and thread count, the ops against the unfused composition
 * (values, gradients, running statistics), finite-difference checks, the in-place inference path,
 * errors, and a whole ResNet whose fused forward (no taps) matches its unfused one (taps). */
#include "kernels/batchnorm.h"
#include "kernels/elementwise.h"
#include "retort/retort.h"
#include "test.h"
#include "test_util.h"

/* Runs body once per ISA cap (a no-op cap on a CPU without that ISA), restoring RETORT_ISA. */
static const char *const k_isas[3] = {"avx512", "avx2", "generic"};
static char g_saved_isa[32];
static void isa_set(const char *isa) {
    if (!g_saved_isa[0]) {
        const char *prev = getenv("RETORT_ISA");
        snprintf(g_saved_isa, sizeof g_saved_isa, "%s", prev ? prev : "-");
    }
    setenv("RETORT_ISA", isa, 1);
}
static void isa_restore(void) {
    if (!strcmp(g_saved_isa, "-"))
        unsetenv("RETORT_ISA");
    else if (g_saved_isa[0])
        setenv("RETORT_ISA", g_saved_isa, 1);
    g_saved_isa[0] = 0;
}

static float *fbuf(int64_t n, uint64_t seed, float scale, float shift) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    rt_test_fill_normal(p, n, seed);
    for (int64_t i = 0; i < n; i++) p[i] = p[i] * scale + shift;
    return p;
}
static float *fcopy(const float *src, int64_t n) {
    float *p = malloc((size_t)n * sizeof(float));
    memcpy(p, src, (size_t)n * sizeof(float));
    return p;
}

/* ---- batch-norm act kernels: fast vs reference ---- */

/* (N,C,S): odd sizes, S = 1 (2-D input), S past a vector and past the float run of the sums */
static const int64_t k_shapes[][3] = {{2, 3, 5}, {8, 16, 49}, {33, 7, 1}, {16, 32, 64}, {3, 4, 7}, {2, 3, 1500}};
enum { NSHAPES = sizeof k_shapes / sizeof k_shapes[0] };

/* mask (rows of S bits, batchnorm.h) is exactly y > 0 */
static int mask_matches(const uint8_t *mask, const float *y, int64_t rows, int64_t S) {
    const int64_t MB = RT_BN_MASK_ROW_BYTES(S);
    for (int64_t q = 0; q < rows; q++)
        for (int64_t s = 0; s < S; s++)
            if ((mask[q * MB + s / 8] >> (s % 8) & 1) != (y[q * S + s] > 0)) return 0;
    return 1;
}

/* One shape, relu and residual choice, on the current ISA: the worst relative error over every
 * output of the train, apply and backward kernels (in place and aliasing included); what names it. */
static double act_case(int64_t N, int64_t C, int64_t S, int relu, int res, uint64_t seed, char *what) {
    const int64_t n = N * C * S;
    const float eps = 1e-5f;
    float *x = fbuf(n, seed, 3.0f, 2.0f), *r = res ? fbuf(n, seed + 1, 1.0f, 0.0f) : NULL;
    float *g = fbuf(C, seed + 2, 0.5f, 1.0f), *b = fbuf(C, seed + 3, 1.0f, 0.0f), *dy = fbuf(n, seed + 4, 1, 0);
    float *mf = malloc(C * 4), *vf = malloc(C * 4), *isf = malloc(C * 4), *yf = malloc(n * 4);
    float *mr = malloc(C * 4), *vr = malloc(C * 4), *isr = malloc(C * 4), *yr = malloc(n * 4);
    const size_t mb = (size_t)(N * C * RT_BN_MASK_ROW_BYTES(S));
    uint8_t *kf = calloc(mb, 1), *kr = calloc(mb, 1), *ki = calloc(mb, 1);
    double e, worst = 0;
#define WORST(err, name)                                                                                               \
    do {                                                                                                               \
        e = (err);                                                                                                     \
        if (!(e <= worst))                                                                                             \
            worst = e, sprintf(what, "(%lld,%lld,%lld) relu %d res %d: %s %.3g", (long long)N, (long long)C,           \
                               (long long)S, relu, res, name, e);                                                      \
    } while (0)
    /* training forward */
    rt_bn_act_train(x, r, g, b, eps, relu, N, C, S, mf, vf, isf, yf, kf);
    rt_bn_stats_ref(x, N, C, S, mr, vr);
    for (int64_t c = 0; c < C; c++) isr[c] = (float)(1.0 / sqrt((double)vr[c] + eps));
    rt_bn_act_apply_ref(x, r, mr, isr, g, b, relu, N, C, S, yr, kr);
    WORST(rt_test_maxrel(mf, mr, C), "train mean");
    WORST(rt_test_maxrel(vf, vr, C), "train var");
    WORST(rt_test_maxrel(isf, isr, C), "train invstd");
    WORST(rt_test_maxrel(yf, yr, n), "train y");
    if (relu) WORST(mask_matches(kf, yf, N * C, S) ? 0 : INFINITY, "train mask");
    /* in place: the same bits as out of place */
    float *xi = fcopy(x, n);
    rt_bn_act_train(xi, r, g, b, eps, relu, N, C, S, mf, vf, isf, xi, ki);
    WORST(memcmp(xi, yf, n * 4) || (relu && memcmp(ki, kf, mb)) ? INFINITY : 0, "train in place");
    /* apply with given statistics, out of place and in place */
    rt_bn_act_apply(x, r, mr, isr, g, b, relu, N, C, S, yf, kf);
    rt_bn_act_apply_ref(x, r, mr, isr, g, b, relu, N, C, S, yr, kr);
    WORST(rt_test_maxrel(yf, yr, n), "apply y");
    if (relu) WORST(mask_matches(kf, yf, N * C, S) ? 0 : INFINITY, "apply mask");
    if (relu) WORST(mask_matches(kr, yr, N * C, S) ? 0 : INFINITY, "reference mask");
    memcpy(xi, x, n * 4);
    rt_bn_act_apply(xi, r, mr, isr, g, b, relu, N, C, S, xi, NULL);
    WORST(memcmp(xi, yf, n * 4) ? INFINITY : 0, "apply in place");
    /* backward through the reference's mask, accumulating into non-zero buffers; then without dx,
     * and with dr aliasing dx (r = x) */
    for (int bs = 0; bs < 2; bs++) {
        float *dxf = fbuf(n, seed + 5, 1, 0), *dgf = fbuf(C, seed + 6, 1, 0), *dbf = fbuf(C, seed + 7, 1, 0);
        float *drf = fbuf(n, seed + 8, 1, 0);
        float *dxr = fcopy(dxf, n), *dgr = fcopy(dgf, C), *dbr = fcopy(dbf, C), *drr = fcopy(drf, n);
        rt_bn_act_backward(dy, x, kr, mr, isr, g, bs, relu, N, C, S, dxf, dgf, dbf, res ? drf : NULL);
        rt_bn_act_backward_ref(dy, x, kr, mr, isr, g, bs, relu, N, C, S, dxr, dgr, dbr, res ? drr : NULL);
        WORST(rt_test_maxrel(dxf, dxr, n), bs ? "backward dx (batch stats)" : "backward dx");
        WORST(rt_test_maxrel(dgf, dgr, C), "backward dgamma");
        WORST(rt_test_maxrel(dbf, dbr, C), "backward dbeta");
        WORST(rt_test_maxrel(drf, drr, n), "backward dr");
        rt_bn_act_backward(dy, x, kr, mr, isr, NULL, bs, relu, N, C, S, NULL, NULL, dbf, drf);
        rt_bn_act_backward_ref(dy, x, kr, mr, isr, NULL, bs, relu, N, C, S, NULL, NULL, dbr, drr);
        WORST(rt_test_maxrel(drf, drr, n), "backward dr without dx");
        WORST(rt_test_maxrel(dbf, dbr, C), "backward dbeta without dx");
        rt_bn_act_backward(dy, x, kr, mr, isr, g, bs, relu, N, C, S, dxf, NULL, NULL, dxf);
        rt_bn_act_backward_ref(dy, x, kr, mr, isr, g, bs, relu, N, C, S, dxr, NULL, NULL, dxr);
        WORST(rt_test_maxrel(dxf, dxr, n), "backward dx aliasing dr");
        /* overwrite (a pass's first gradient): NaN buffers must come out as the reference's added to
         * zeros, for dx, dr, both, and dr aliasing dx */
        for (int set = 1; set <= 4; set++) {
            float *ax = set & 1 || set == 4 ? dxf : NULL, *ar = set == 4 ? dxf : set & 2 ? drf : NULL;
            float *bx = ax ? dxr : NULL, *br = set == 4 ? dxr : ar ? drr : NULL;
            if (ax) memset(ax, 0xff, n * 4), memset(bx, 0, n * 4);
            if (ar && ar != ax) memset(ar, 0xff, n * 4), memset(br, 0, n * 4);
            rt_bn_act_backward_ex(dy, x, kr, mr, isr, g, bs, relu, N, C, S, ax, NULL, NULL, ar, set == 4 ? 2 : set);
            rt_bn_act_backward_ref(dy, x, kr, mr, isr, g, bs, relu, N, C, S, bx, NULL, NULL, br);
            if (ax) WORST(rt_test_maxrel(ax, bx, n), "backward overwrite dx");
            if (ar) WORST(rt_test_maxrel(ar, br, n), "backward overwrite dr");
        }
        free(dxf), free(dgf), free(dbf), free(drf), free(dxr), free(dgr), free(dbr), free(drr);
    }
#undef WORST
    free(x), free(r), free(g), free(b), free(dy), free(mf), free(vf), free(isf), free(yf), free(mr), free(vr);
    free(isr), free(yr), free(xi), free(kf), free(kr), free(ki);
    return worst;
}

TEST(bn_act_kernels_fast_vs_ref_every_isa) {
    char what[256] = "";
    double e = 0;
    int k;
    for (k = 0; k < 3 && e < 2e-6; k++) {
        isa_set(k_isas[k]);
        for (int s = 0; s < NSHAPES && e < 2e-6; s++)
            for (int relu = 0; relu < 2 && e < 2e-6; relu++)
                for (int res = 0; res < 2 && e < 2e-6; res++)
                    e = act_case(k_shapes[s][0], k_shapes[s][1], k_shapes[s][2], relu, res, 100 + 10 * s, what);
    }
    isa_restore();
    /* float pipelines against double references: a few float roundings of the largest value */
    CHECKF(e < 2e-6, "%s: %s", k_isas[k - 1], what);
}

/* With relu 0 and no residual the act kernels are the plain batch norm: the references agree. */
TEST(bn_act_ref_reduces_to_bn_ref) {
    const int64_t N = 5, C = 3, S = 7, n = N * C * S;
    float *x = fbuf(n, 1, 2, 1), *g = fbuf(C, 2, 1, 1), *b = fbuf(C, 3, 1, 0), *dy = fbuf(n, 4, 1, 0);
    float mean[3], var[3], is[3], y1[105], y2[105], dx1[105] = {0}, dx2[105] = {0}, dg1[3] = {0}, dg2[3] = {0};
    rt_bn_stats_ref(x, N, C, S, mean, var);
    for (int c = 0; c < C; c++) is[c] = 1.0f / sqrtf(var[c] + 1e-5f);
    rt_bn_apply_ref(x, mean, is, g, b, N, C, S, y1);
    rt_bn_act_apply_ref(x, NULL, mean, is, g, b, 0, N, C, S, y2, NULL);
    CHECK(memcmp(y1, y2, sizeof y1) == 0);
    rt_bn_backward_ref(dy, x, mean, is, g, 1, N, C, S, dx1, dg1, NULL);
    rt_bn_act_backward_ref(dy, x, NULL, mean, is, g, 1, 0, N, C, S, dx2, dg2, NULL, NULL);
    CHECK(memcmp(dx1, dx2, sizeof dx1) == 0 && memcmp(dg1, dg2, sizeof dg1) == 0);
    /* relu: the mask marks y > 0, and the masked backward is the plain one with dy zeroed elsewhere */
    float dym[105], dx3[105] = {0}, dx4[105] = {0}, y3[105];
    uint8_t mask[15 * RT_BN_MASK_ROW_BYTES(7)];
    rt_bn_act_apply_ref(x, NULL, mean, is, g, b, 1, N, C, S, y3, mask);
    int zeros = 0;
    for (int64_t i = 0; i < n; i++) {
        dym[i] = y2[i] > 0 ? dy[i] : 0;
        zeros += !(y2[i] > 0);
        CHECK(y3[i] == (y2[i] > 0 ? y2[i] : 0) &&
              (mask[i / S * RT_BN_MASK_ROW_BYTES(S)] >> (i % S) & 1) == (y2[i] > 0)); /* S = 7: one byte */
    }
    CHECK(zeros > 0 && zeros < n);
    rt_bn_act_backward_ref(dym, x, NULL, mean, is, g, 1, 0, N, C, S, dx3, NULL, NULL, NULL);
    rt_bn_act_backward_ref(dy, x, mask, mean, is, g, 1, 1, N, C, S, dx4, NULL, NULL, NULL);
    CHECK(memcmp(dx3, dx4, sizeof dx3) == 0);
    free(x), free(g), free(b), free(dy);
}

TEST(bn_act_kernels_same_bits_any_thread_count) {
    const int64_t N = 16, C = 24, S = 144, n = N * C * S;
    int prev = rt_threads();
    float *x = fbuf(n, 7, 2, 1), *r = fbuf(n, 8, 1, 0), *g = fbuf(C, 9, 1, 1), *b = fbuf(C, 10, 1, 0);
    float *dy = fbuf(n, 11, 1, 0), *out[3];
    const int64_t len = 3 * n + 5 * C + N * C * RT_BN_MASK_ROW_BYTES(S) / 4 + 1; /* floats, the mask's included */
    for (int t = 0; t < 3; t++) {
        rt_set_threads(t + 1);
        float *o = out[t] = calloc((size_t)len, sizeof(float));
        float *y = o, *dx = o + n, *dr = o + 2 * n, *mean = o + 3 * n, *var = mean + C, *is = var + C, *dg = is + C,
              *db = dg + C;
        uint8_t *mask = (uint8_t *)(db + C);
        rt_bn_act_train(x, r, g, b, 1e-5f, 1, N, C, S, mean, var, is, y, mask);
        rt_bn_act_backward(dy, x, mask, mean, is, g, 1, 1, N, C, S, dx, dg, db, dr);
    }
    rt_set_threads(prev);
    CHECK(memcmp(out[0], out[1], len * 4) == 0 && memcmp(out[0], out[2], len * 4) == 0);
    free(out[0]), free(out[1]), free(out[2]), free(x), free(r), free(g), free(b), free(dy);
}

/* ---- the op against the unfused composition ---- */

typedef struct {
    int training, res; /* res: 0 none, 1 another tensor, 2 x itself */
    float rm[4], rv[4];
} bnr_user;

static rt_tensor *f_bnr(rt_ctx *ctx, rt_tensor **in, void *u) {
    bnr_user *p = u;
    rt_tensor *r = p->res == 1 ? in[3] : p->res == 2 ? in[0] : NULL;
    return rt_batchnorm_relu(ctx, in[0], r, in[1], in[2], p->rm, p->rv, p->training, 0.1f, 1e-5f, 0);
}
static rt_tensor *f_bnr_unfused(rt_ctx *ctx, rt_tensor **in, void *u) {
    bnr_user *p = u;
    rt_tensor *r = p->res == 1 ? in[3] : p->res == 2 ? in[0] : NULL;
    rt_tensor *y = rt_batchnorm(ctx, in[0], in[1], in[2], p->rm, p->rv, p->training, 0.1f, 1e-5f);
    return rt_relu(ctx, r ? rt_add(ctx, y, r) : y);
}

TEST(batchnorm_relu_matches_unfused) {
    rt_ctx *ctx = rt_ctx_new();
    const int64_t s4[4] = {4, 3, 5, 6}, s2[2] = {9, 3};
    for (int sh = 0; sh < 2; sh++)
        for (int training = 0; training < 2; training++)
            for (int res = 0; res < 3; res++) {
                const int nd = sh ? 2 : 4;
                const int64_t *shape = sh ? s2 : s4;
                rt_tensor *in[2][4];
                bnr_user u[2];
                rt_tensor *y[2];
                for (int k = 0; k < 2; k++) { /* k = 0 fused, 1 unfused, on identical copies */
                    in[k][0] = rt_test_tensor(nd, shape, 300, 1);
                    in[k][1] = rt_test_tensor(1, (int64_t[]){3}, 301, 1);
                    in[k][2] = rt_test_tensor(1, (int64_t[]){3}, 302, 1);
                    in[k][3] = rt_test_tensor(nd, shape, 303, 1);
                    u[k] = (bnr_user){training, res, {0.2f, -0.1f, 0.5f}, {0.9f, 1.3f, 0.6f}};
                    y[k] = (k ? f_bnr_unfused : f_bnr)(ctx, in[k], &u[k]);
                    CHECKF(y[k], "%s", rt_errmsg(ctx));
                }
                const int64_t n = rt_numel(y[0]);
                float *seed = fbuf(n, 304, 1, 0);
                CHECK(rt_backward_seed(ctx, y[0], seed) == 0 && rt_backward_seed(ctx, y[1], seed) == 0);
                CHECKF(rt_test_maxrel(y[0]->data, y[1]->data, n) < 1e-6, "sh %d training %d res %d: y %g", sh, training,
                       res, rt_test_maxrel(y[0]->data, y[1]->data, n));
                /* the running statistics move exactly as the unfused batch norm moves them */
                CHECK(memcmp(u[0].rm, u[1].rm, sizeof u[0].rm) == 0 && memcmp(u[0].rv, u[1].rv, sizeof u[0].rv) == 0);
                const char *names[4] = {"x", "gamma", "beta", "residual"};
                for (int i = 0; i < (res == 1 ? 4 : 3); i++) {
                    double e = rt_test_maxrel(in[0][i]->grad, in[1][i]->grad, rt_numel(in[0][i]));
                    CHECKF(e < 1e-5, "sh %d training %d res %d: grad %s %g", sh, training, res, names[i], e);
                }
                free(seed);
                for (int k = 0; k < 2; k++)
                    for (int i = 0; i < 4; i++) rt_test_tensor_free(in[k][i]);
                rt_step_reset(ctx);
            }
    rt_ctx_free(ctx);
}

TEST(batchnorm_relu_gradcheck) {
    rt_ctx *ctx = rt_ctx_new();
    const int64_t s4[4] = {3, 2, 2, 3}, s2[2] = {5, 2};
    char rep[512];
    for (int sh = 0; sh < 2; sh++)
        for (int training = 0; training < 2; training++)
            for (int res = 0; res < 3; res++) {
                const int nd = sh ? 2 : 4;
                const int64_t *shape = sh ? s2 : s4;
                bnr_user u = {training, res, {0.3f, -0.2f}, {0.7f, 1.6f}};
                rt_tensor *in[4] = {rt_test_tensor(nd, shape, 20 + sh, 1), rt_test_tensor(1, (int64_t[]){2}, 30, 1),
                                    rt_test_tensor(1, (int64_t[]){2}, 31, 1), rt_test_tensor(nd, shape, 32, 1)};
                for (int i = 0; i < 2; i++) in[1]->data[i] += 1.5f; /* gamma away from 0 */
                int rc = rt_gradcheck(ctx, f_bnr, &u, res == 1 ? 4 : 3, in, NULL, rep);
                CHECKF(rc == 0, "shape %d training %d res %d: %s / %s", sh, training, res, rep, rt_errmsg(ctx));
                for (int i = 0; i < 4; i++) rt_test_tensor_free(in[i]);
            }
    rt_ctx_free(ctx);
}

/* Grad mode off and inplace: the result overwrites x (no output tensor), with the values of the
 * allocating call; recorded calls, leaves and inplace 0 leave x alone. */
TEST(batchnorm_relu_inplace_only_when_nothing_records) {
    rt_ctx *ctx = rt_ctx_new();
    const int64_t shape[4] = {4, 8, 6, 6}, n = 4 * 8 * 36;
    float *x0 = fbuf(n, 400, 2, 0.5f), *r0 = fbuf(n, 401, 1, 0);
    rt_tensor *g = rt_test_tensor(1, (int64_t[]){8}, 402, 0), *b = rt_test_tensor(1, (int64_t[]){8}, 403, 0);
    for (int training = 0; training < 2; training++) {
        float rm[8] = {0}, rv[8] = {1, 1, 1, 1, 1, 1, 1, 1}, rm2[8] = {0}, rv2[8] = {1, 1, 1, 1, 1, 1, 1, 1};
        rt_set_grad_enabled(ctx, 0);
        rt_tensor *xa = rt_wrap(ctx, fcopy(x0, n), 4, shape), *ra = rt_wrap(ctx, r0, 4, shape);
        rt_tensor *ya = rt_batchnorm_relu(ctx, xa, ra, g, b, rm, rv, training, 0.1f, 1e-5f, 0);
        CHECK(ya && ya != xa && memcmp(xa->data, x0, n * 4) == 0);
        size_t used = rt_arena_used(ctx);
        rt_tensor *yi = rt_batchnorm_relu(ctx, xa, ra, g, b, rm2, rv2, training, 0.1f, 1e-5f, 1);
        CHECK(yi == xa && memcmp(yi->data, ya->data, n * 4) == 0);
        CHECKF(rt_arena_used(ctx) - used < 1024, "in place took %zu arena bytes", rt_arena_used(ctx) - used);
        CHECK(memcmp(rm, rm2, sizeof rm) == 0 && memcmp(rv, rv2, sizeof rv) == 0);
        free(xa->data);
        /* grad mode on with an input that wants a gradient: recorded, so never in place */
        rt_set_grad_enabled(ctx, 1);
        rt_tensor *xl = rt_test_tensor_from(x0, 4, shape, 1);
        rt_tensor *yl = rt_batchnorm_relu(ctx, xl, NULL, g, b, rm, rv, training, 0.1f, 1e-5f, 1);
        CHECK(yl && yl != xl && memcmp(xl->data, x0, n * 4) == 0 && rt_tape_size(ctx) == 1);
        /* a leaf with requires_grad under grad mode off is no temporary either */
        rt_set_grad_enabled(ctx, 0);
        yl = rt_batchnorm_relu(ctx, xl, NULL, g, b, rm, rv, training, 0.1f, 1e-5f, 1);
        CHECK(yl && yl != xl && memcmp(xl->data, x0, n * 4) == 0);
        rt_test_tensor_free(xl);
        rt_set_grad_enabled(ctx, 1);
        rt_step_reset(ctx);
    }
    free(x0), free(r0);
    rt_test_tensor_free(g), rt_test_tensor_free(b);
    rt_ctx_free(ctx);
}

TEST(batchnorm_relu_errors) {
    rt_ctx *ctx = rt_ctx_new();
    float rm[3] = {0}, rv[3] = {1, 1, 1};
    rt_tensor *x = rt_test_tensor(4, (int64_t[]){2, 3, 2, 2}, 50, 0),
              *r = rt_test_tensor(4, (int64_t[]){2, 3, 2, 1}, 51, 0);
    rt_tensor *g4 = rt_test_tensor(1, (int64_t[]){4}, 52, 0), *x3 = rt_test_tensor(3, (int64_t[]){2, 3, 4}, 53, 0);
    CHECK(!rt_batchnorm_relu(ctx, x, r, NULL, NULL, rm, rv, 1, 0.1f, 1e-5f, 0) && rt_status(ctx) == RT_ESHAPE);
    CHECKF(strstr(rt_errmsg(ctx), "batchnorm_relu") && strstr(rt_errmsg(ctx), "residual") &&
               strstr(rt_errmsg(ctx), "(2,3,2,2)") && strstr(rt_errmsg(ctx), "(2,3,2,1)"),
           "%s", rt_errmsg(ctx));
    rt_clear_error(ctx);
    CHECK(!rt_batchnorm_relu(ctx, x, NULL, g4, NULL, rm, rv, 1, 0.1f, 1e-5f, 0) && strstr(rt_errmsg(ctx), "gamma"));
    rt_clear_error(ctx);
    CHECK(!rt_batchnorm_relu(ctx, x3, NULL, NULL, NULL, rm, rv, 1, 0.1f, 1e-5f, 0) && rt_status(ctx) == RT_ESHAPE);
    rt_clear_error(ctx);
    CHECK(!rt_batchnorm_relu(ctx, x, NULL, NULL, NULL, NULL, NULL, 0, 0.1f, 1e-5f, 0) && rt_status(ctx) == RT_EINVAL);
    rt_clear_error(ctx);
    CHECK(!rt_batchnorm_relu(ctx, x, NULL, NULL, NULL, rm, rv, 1, 0.1f, -1.0f, 0) && strstr(rt_errmsg(ctx), "eps"));
    rt_clear_error(ctx);
    CHECK(!rt_batchnorm_relu(ctx, NULL, NULL, NULL, NULL, rm, rv, 1, 0.1f, 1e-5f, 0) && rt_status(ctx) == RT_EINVAL);
    rt_test_tensor_free(x), rt_test_tensor_free(r), rt_test_tensor_free(g4), rt_test_tensor_free(x3);
    rt_ctx_free(ctx);
}

/* ---- relu(a + b) ---- */

TEST(add_relu_kernels_fast_vs_ref) {
    const int64_t sizes[3] = {7, 5000, 70001}; /* a tail, several runs, the threaded path */
    for (int k = 0; k < 3; k++) {
        const int64_t n = sizes[k];
        float *a = fbuf(n, 60 + k, 1, 0), *b = fbuf(n, 70 + k, 1, 0), *gy = fbuf(n, 80 + k, 1, 0);
        float *yf = malloc(n * 4), *yr = malloc(n * 4);
        rt_add_relu_forward(n, yf, a, b);
        rt_add_relu_forward_ref(n, yr, a, b);
        CHECKF(memcmp(yf, yr, n * 4) == 0, "forward n %lld", (long long)n); /* one float add: exact */
        float *gaf = fbuf(n, 90, 1, 0), *gbf = fbuf(n, 91, 1, 0), *gar = fcopy(gaf, n), *gbr = fcopy(gbf, n);
        rt_add_relu_backward(n, gaf, gbf, gy, yr);
        rt_add_relu_backward_ref(n, gar, gbr, gy, yr);
        CHECK(memcmp(gaf, gar, n * 4) == 0 && memcmp(gbf, gbr, n * 4) == 0);
        rt_add_relu_backward(n, NULL, gbf, gy, yr); /* one operand without a gradient */
        rt_add_relu_backward_ref(n, NULL, gbr, gy, yr);
        CHECK(memcmp(gbf, gbr, n * 4) == 0);
        rt_add_relu_backward(n, gaf, gaf, gy, yr); /* a + a: one buffer gets both */
        rt_add_relu_backward_ref(n, gar, gar, gy, yr);
        CHECK(memcmp(gaf, gar, n * 4) == 0);
        free(a), free(b), free(gy), free(yf), free(yr), free(gaf), free(gbf), free(gar), free(gbr);
    }
}

static rt_tensor *f_add_relu(rt_ctx *ctx, rt_tensor **in, void *u) {
    return rt_add_relu(ctx, in[0], *(int *)u ? in[0] : in[1], 0);
}

TEST(add_relu_matches_unfused_and_gradcheck) {
    rt_ctx *ctx = rt_ctx_new();
    const int64_t shape[3] = {3, 4, 5};
    char rep[512];
    for (int self = 0; self < 2; self++) {
        rt_tensor *in[2][2];
        rt_tensor *y[2];
        for (int k = 0; k < 2; k++) {
            in[k][0] = rt_test_tensor(3, shape, 500, 1);
            in[k][1] = rt_test_tensor(3, shape, 501, 1);
            rt_tensor *b = self ? in[k][0] : in[k][1];
            y[k] = k ? rt_relu(ctx, rt_add(ctx, in[k][0], b)) : rt_add_relu(ctx, in[k][0], b, 0);
            CHECKF(y[k], "%s", rt_errmsg(ctx));
        }
        float *seed = fbuf(60, 502, 1, 0);
        CHECK(rt_backward_seed(ctx, y[0], seed) == 0 && rt_backward_seed(ctx, y[1], seed) == 0);
        CHECK(memcmp(y[0]->data, y[1]->data, 60 * 4) == 0);
        CHECK(memcmp(in[0][0]->grad, in[1][0]->grad, 60 * 4) == 0 &&
              memcmp(in[0][1]->grad, in[1][1]->grad, 60 * 4) == 0);
        CHECKF(rt_gradcheck(ctx, f_add_relu, &self, self ? 1 : 2, in[0], NULL, rep) == 0, "self %d: %s / %s", self, rep,
               rt_errmsg(ctx));
        free(seed);
        for (int k = 0; k < 2; k++) rt_test_tensor_free(in[k][0]), rt_test_tensor_free(in[k][1]);
        rt_step_reset(ctx);
    }
    /* in place under grad mode off; shape errors name both shapes */
    rt_set_grad_enabled(ctx, 0);
    rt_tensor *a = rt_test_tensor(3, shape, 503, 0), *b = rt_test_tensor(3, shape, 504, 0);
    rt_tensor *y = rt_add_relu(ctx, a, b, 0), *yi = rt_add_relu(ctx, a, b, 1);
    CHECK(y && yi == a && memcmp(y->data, a->data, 60 * 4) == 0);
    rt_tensor *c = rt_test_tensor(2, (int64_t[]){4, 5}, 505, 0);
    CHECK(!rt_add_relu(ctx, a, c, 0) && rt_status(ctx) == RT_ESHAPE);
    CHECKF(strstr(rt_errmsg(ctx), "add_relu") && strstr(rt_errmsg(ctx), "(3,4,5)") && strstr(rt_errmsg(ctx), "(4,5)"),
           "%s", rt_errmsg(ctx));
    rt_test_tensor_free(a), rt_test_tensor_free(b), rt_test_tensor_free(c);
    rt_ctx_free(ctx);
}

/* ---- whole models: the fused forwards (no taps) against the unfused ones (taps) ---- */

/* One training step's logits, parameter gradients and BN buffers of arch on a (4,3,16,16) batch,
 * without or with taps; then an eval forward under grad mode off (in place where fused). */
static void model_run(const char *arch, int with_taps, float *logits, float *grads, float *buffers,
                      float *eval_logits) {
    rt_ctx *ctx = rt_ctx_new();
    rt_model_opts o = {.in_channels = 3, .in_size = 16, .num_classes = 10};
    rt_model *m = rt_model_new(ctx, arch, &o, 3);
    const int64_t shape[4] = {4, 3, 16, 16};
    float *x = fbuf(4 * 3 * 16 * 16, 600, 1, 0);
    rt_taps taps = {0};
    rt_model_train(m, 1);
    rt_params_zero_grad(&m->params);
    rt_tensor *y = rt_model_forward(ctx, m, rt_wrap(ctx, x, 4, shape), with_taps ? &taps : NULL);
    if (y) {
        memcpy(logits, y->data, 40 * 4);
        float seed[40];
        rt_test_fill_normal(seed, 40, 601);
        rt_backward_seed(ctx, y, seed);
        memcpy(grads, m->params.grad, m->params.n * 4);
        memcpy(buffers, m->params.buffers, m->params.nbuf * 4);
    }
    rt_step_reset(ctx);
    rt_model_train(m, 0);
    rt_set_grad_enabled(ctx, 0);
    rt_taps t2 = {0};
    y = rt_model_forward(ctx, m, rt_wrap(ctx, x, 4, shape), with_taps ? &t2 : NULL);
    if (y) memcpy(eval_logits, y->data, 40 * 4);
    free(x);
    rt_model_free(m);
    rt_ctx_free(ctx);
}

TEST(models_fused_forward_matches_unfused) {
    const char *archs[] = {"resnet8", "wrn_16_2", "vgg8", "MobileNetV2", "ShuffleV1", "ShuffleV2"};
    for (size_t a = 0; a < sizeof archs / sizeof archs[0]; a++) {
        rt_ctx *ctx = rt_ctx_new();
        rt_model_opts o = {.in_channels = 3, .in_size = 16, .num_classes = 10};
        rt_model *m = rt_model_new(ctx, archs[a], &o, 3);
        CHECKF(m, "%s: %s", archs[a], rt_errmsg(ctx));
        const size_t np = m->params.n, nb = m->params.nbuf;
        rt_model_free(m);
        rt_ctx_free(ctx);
        float *lg[2], *gr[2], *bf[2], *ev[2];
        for (int k = 0; k < 2; k++) {
            lg[k] = calloc(40, 4), gr[k] = calloc(np, 4), bf[k] = calloc(nb, 4), ev[k] = calloc(40, 4);
            model_run(archs[a], k, lg[k], gr[k], bf[k], ev[k]);
        }
        double el = rt_test_maxrel(lg[0], lg[1], 40), eg = rt_test_maxrel(gr[0], gr[1], (long)np);
        double eb = rt_test_maxrel(bf[0], bf[1], (long)nb), ee = rt_test_maxrel(ev[0], ev[1], 40);
        int nonzero = 0;
        for (size_t i = 0; i < np; i++) nonzero |= gr[0][i] != 0;
        for (int k = 0; k < 2; k++) free(lg[k]), free(gr[k]), free(bf[k]), free(ev[k]);
        CHECKF(nonzero && el < 1e-6 && eg < 1e-5 && eb < 1e-6 && ee < 1e-6,
               "%s: logits %g, grads %g, buffers %g, eval logits %g", archs[a], el, eg, eb, ee);
    }
}

/* ---- eval-mode conv + BN (+ residual) (+ ReLU), folded: rt_conv2d_bn_eval ---- */

typedef struct {
    int64_t N, C, H, W, OC, K;
    int stride, pad, groups;
    double tol; /* Winograd F(4x4): its own bound against the direct sums (test_winograd.c) */
    const char *what;
} fold_shape;
static const fold_shape k_fold[] = {
    {4, 16, 10, 10, 16, 3, 1, 1, 1, 6e-6, "3x3 16 ch (Winograd), partial tiles"},
    {3, 16, 9, 9, 32, 3, 2, 1, 1, 2e-6, "3x3 stride 2 (direct)"},
    {2, 3, 12, 12, 16, 3, 1, 1, 1, 2e-6, "stem 3 -> 16 (direct)"},
    {3, 8, 6, 6, 12, 1, 1, 0, 1, 2e-6, "1x1 (GEMM)"},
    {3, 8, 7, 7, 12, 1, 2, 0, 1, 2e-6, "1x1 stride 2, a ResNet shortcut"},
    {2, 6, 7, 7, 6, 3, 1, 1, 6, 2e-6, "depthwise 3x3"},
    {2, 4, 8, 8, 8, 3, 1, 1, 2, 2e-6, "groups 2"},
};

/* The folded op against conv2d -> batchnorm (eval) -> add -> relu, grad mode off, on every ISA and
 * for each combination of conv bias, affine BN, residual and ReLU. Folding rounds differently (the
 * BN scale multiplies the weights, not the sums): the error, relative to the output's largest
 * magnitude, measured at most 5.1e-7 on the direct and GEMM paths and 2.2e-6 through Winograd
 * (AVX-512, Zen 5). */
TEST(conv_bn_eval_matches_unfused) {
    rt_ctx *ctx = rt_ctx_new();
    rt_set_grad_enabled(ctx, 0);
    double worst = 0;
    char what[200] = "";
    for (int k = 0; k < 3; k++) {
        isa_set(k_isas[k]);
        for (size_t i = 0; i < sizeof k_fold / sizeof k_fold[0]; i++) {
            const fold_shape *f = &k_fold[i];
            rt_conv2d_args a = {f->stride, f->stride, f->pad, f->pad, 1, 1, f->groups};
            int64_t OH = (f->H + 2 * f->pad - f->K) / f->stride + 1;
            int64_t xs[4] = {f->N, f->C, f->H, f->W}, ws[4] = {f->OC, f->C / f->groups, f->K, f->K};
            int64_t os[4] = {f->N, f->OC, OH, OH}, cs[1] = {f->OC};
            rt_tensor *x = rt_test_tensor(4, xs, 700 + i, 0), *w = rt_test_tensor(4, ws, 710 + i, 0);
            rt_tensor *b = rt_test_tensor(1, cs, 720 + i, 0), *g = rt_test_tensor(1, cs, 730 + i, 0);
            rt_tensor *be = rt_test_tensor(1, cs, 740 + i, 0), *r = rt_test_tensor(4, os, 750 + i, 0);
            float *mean = fbuf(f->OC, 760 + i, 0.3f, 0.1f), *var = fbuf(f->OC, 770 + i, 0.2f, 0.0f);
            for (int64_t c = 0; c < f->OC; c++) var[c] = 0.3f + var[c] * var[c];
            for (int v = 0; v < 16; v++) {
                rt_tensor *cb = v & 1 ? b : NULL, *gg = v & 2 ? g : NULL, *bb = v & 2 ? be : NULL;
                rt_tensor *res = v & 4 ? r : NULL;
                int relu = (v >> 3) & 1;
                rt_tensor *want = rt_batchnorm(ctx, rt_conv2d(ctx, x, w, cb, &a), gg, bb, mean, var, 0, 0.1f, 1e-5f);
                if (res) want = rt_add(ctx, want, res);
                if (relu) want = rt_relu(ctx, want);
                rt_tensor *got = rt_conv2d_bn_eval(ctx, x, w, cb, &a, gg, bb, mean, var, 1e-5f, res, relu);
                CHECKF(want && got && rt_same_shape(want, got), "%s: %s", f->what, rt_errmsg(ctx));
                double e = rt_test_maxrel(want->data, got->data, (long)rt_numel(want)) / f->tol;
                if (e > worst) {
                    worst = e;
                    snprintf(what, sizeof what, "%s (%s), variant %d", f->what, k_isas[k], v);
                }
                rt_step_reset(ctx);
            }
            rt_test_tensor_free(x), rt_test_tensor_free(w), rt_test_tensor_free(b), rt_test_tensor_free(g);
            rt_test_tensor_free(be), rt_test_tensor_free(r), free(mean), free(var);
        }
    }
    isa_restore();
    CHECKF(worst < 1, "worst error %g of the tolerance: %s", worst, what);
    rt_ctx_free(ctx);
}

TEST(conv_bn_eval_errors) {
    rt_ctx *ctx = rt_ctx_new();
    int64_t xs[4] = {2, 4, 6, 6}, ws[4] = {8, 4, 3, 3}, cs[1] = {8}, bad[1] = {7}, rs[4] = {2, 8, 5, 6};
    rt_tensor *x = rt_test_tensor(4, xs, 1, 0), *w = rt_test_tensor(4, ws, 2, 1), *g = rt_test_tensor(1, cs, 3, 0);
    rt_tensor *g7 = rt_test_tensor(1, bad, 4, 0), *r = rt_test_tensor(4, rs, 5, 0);
    float mean[8] = {0}, var[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    rt_conv2d_args a = {1, 1, 1, 1, 1, 1, 1};
    /* grad mode on and the weight requires a gradient: a graph would be owed */
    CHECK(!rt_conv2d_bn_eval(ctx, x, w, NULL, &a, g, NULL, mean, var, 1e-5f, NULL, 1));
    CHECKF(rt_status(ctx) == RT_ESTATE && strstr(rt_errmsg(ctx), "conv2d_bn_eval"), "%s", rt_errmsg(ctx));
    rt_clear_error(ctx);
    rt_set_grad_enabled(ctx, 0);
    CHECK(!rt_conv2d_bn_eval(ctx, x, w, NULL, &a, g7, NULL, mean, var, 1e-5f, NULL, 1));
    CHECKF(rt_status(ctx) == RT_ESHAPE && strstr(rt_errmsg(ctx), "gamma"), "%s", rt_errmsg(ctx));
    rt_clear_error(ctx);
    CHECK(!rt_conv2d_bn_eval(ctx, x, w, NULL, &a, g, NULL, mean, var, 1e-5f, r, 1));
    CHECKF(rt_status(ctx) == RT_ESHAPE && strstr(rt_errmsg(ctx), "residual (2,8,5,6)"), "%s", rt_errmsg(ctx));
    rt_clear_error(ctx);
    CHECK(rt_conv2d_bn_eval(ctx, x, w, NULL, &a, g, NULL, mean, var, 1e-5f, NULL, 1));
    rt_test_tensor_free(x), rt_test_tensor_free(w), rt_test_tensor_free(g), rt_test_tensor_free(g7);
    rt_test_tensor_free(r);
    rt_ctx_free(ctx);
}

/* Every zoo architecture in eval mode without a graph (a teacher's forward): folded (the default)
 * against RETORT_FOLD_BN=0, logits and every tap; and a recording forward does not fold at all (the
 * same bits either way). */
TEST(models_fold_matches_unfolded) {
    rt_ctx *ctx = rt_ctx_new();
    const int64_t shape[4] = {3, 3, 16, 16};
    float *x = fbuf(3 * 3 * 16 * 16, 800, 1, 0);
    double worst = 0;
    char what[160] = "";
    const char *const *archs = rt_model_archs();
    for (int i = 0; archs[i]; i++) {
        const char *arch = archs[i];
        rt_model_opts o = {.in_channels = 3, .in_size = 16, .num_classes = 10};
        rt_model *m = rt_model_new(ctx, arch, &o, 5);
        CHECKF(m, "%s: %s", arch, rt_errmsg(ctx));
        /* running statistics away from (0, 1), so the fold has something to fold */
        for (int p = 0; p < m->params.count; p++) {
            rt_param *q = m->params.items[p];
            for (size_t k = 0; q->kind == RT_BUFFER && !q->is_int && k < q->numel; k++)
                q->t.data[k] = strstr(q->name, "running_var") ? 0.5f + 0.1f * (float)(k % 7) : 0.05f * (float)(k % 5);
        }
        for (int train = 0; train < 2; train++) {
            rt_model_train(m, !train ? 0 : 1);
            rt_set_grad_enabled(ctx, train);
            float *out[2] = {NULL, NULL};
            int64_t nout = 0;
            for (int fold = 0; fold < 2; fold++) {
                if (fold)
                    unsetenv("RETORT_FOLD_BN");
                else
                    setenv("RETORT_FOLD_BN", "0", 1);
                rt_taps taps = {0};
                rt_tensor *y = rt_model_forward(ctx, m, rt_wrap(ctx, x, 4, shape), &taps);
                CHECKF(y, "%s: %s", arch, rt_errmsg(ctx));
                /* the logits, then every tap, end to end */
                int64_t n = rt_numel(y);
                for (int t = 0; t < taps.n; t++) n += rt_numel(taps.t[t]);
                out[fold] = malloc((size_t)n * sizeof(float));
                memcpy(out[fold], y->data, (size_t)rt_numel(y) * sizeof(float));
                int64_t at = rt_numel(y);
                for (int t = 0; t < taps.n; t++) {
                    memcpy(out[fold] + at, taps.t[t]->data, (size_t)rt_numel(taps.t[t]) * sizeof(float));
                    at += rt_numel(taps.t[t]);
                }
                nout = n;
                rt_step_reset(ctx);
            }
            if (train) {
                CHECKF(!memcmp(out[0], out[1], (size_t)nout * sizeof(float)), "%s: a recording forward changed", arch);
            } else {
                double e = rt_test_maxrel(out[0], out[1], (long)nout);
                if (e > worst) worst = e, snprintf(what, sizeof what, "%s", arch);
            }
            free(out[0]), free(out[1]);
        }
        rt_model_free(m);
    }
    unsetenv("RETORT_FOLD_BN");
    rt_set_grad_enabled(ctx, 1);
    CHECKF(worst < 1e-5, "worst %g in %s", worst, what);
    free(x);
    rt_ctx_free(ctx);
}

/* A CIFAR ResNet's eval forward without a graph runs each stage in slices of the batch
 * (RETORT_STAGE_SLICE=N forces slices of N everywhere; 0 is one slice): logits and every tap (the
 * stages' outputs and pre-activations included) are the same bits for any slicing, and the slices'
 * intermediates are released (the arena ends lower than with a recording forward). */
TEST(resnet_stage_slices_same_bits) {
    rt_ctx *ctx = rt_ctx_new();
    const int64_t shape[4] = {7, 3, 16, 16};
    float *x = fbuf(7 * 3 * 16 * 16, 810, 1, 0);
    const char *archs[] = {"resnet8", "resnet20", "resnet8x4"}, *slices[] = {"0", "3", "1", "5", NULL};
    for (int i = 0; i < 3; i++) {
        rt_model_opts o = {.in_channels = 3, .in_size = 16, .num_classes = 10};
        rt_model *m = rt_model_new(ctx, archs[i], &o, 7);
        CHECKF(m, "%s: %s", archs[i], rt_errmsg(ctx));
        rt_model_train(m, 0);
        rt_set_grad_enabled(ctx, 0);
        float *ref = NULL;
        int64_t nref = 0;
        for (int k = 0; k < 5; k++) {
            if (slices[k])
                setenv("RETORT_STAGE_SLICE", slices[k], 1);
            else
                unsetenv("RETORT_STAGE_SLICE");
            rt_taps taps = {0};
            rt_tensor *y = rt_model_forward(ctx, m, rt_wrap(ctx, x, 4, shape), &taps);
            CHECKF(y && taps.n >= 7, "%s: %s", archs[i], rt_errmsg(ctx));
            int64_t n = rt_numel(y);
            for (int t = 0; t < taps.n; t++) n += rt_numel(taps.t[t]);
            /* what stays in the arena is about the taps (the stages' outputs and pre-activations):
             * resnet20 keeping its blocks' activations would hold 7 times as much */
            size_t used = rt_arena_used(ctx), kept = (size_t)n * sizeof(float);
            CHECKF(i != 1 || used < 2 * kept, "%s: %zu bytes left in the arena for %zu of taps", archs[i], used, kept);
            float *out = malloc((size_t)n * sizeof(float));
            memcpy(out, y->data, (size_t)rt_numel(y) * sizeof(float));
            for (int t = 0, at = (int)rt_numel(y); t < taps.n; at += (int)rt_numel(taps.t[t]), t++)
                memcpy(out + at, taps.t[t]->data, (size_t)rt_numel(taps.t[t]) * sizeof(float));
            if (!ref)
                ref = out, nref = n;
            else {
                CHECKF(n == nref && !memcmp(ref, out, (size_t)n * sizeof(float)), "%s: slices of %s changed the bits",
                       archs[i], slices[k] ? slices[k] : "(default)");
                free(out);
            }
            rt_step_reset(ctx);
        }
        free(ref);
        rt_model_free(m);
    }
    unsetenv("RETORT_STAGE_SLICE");
    rt_set_grad_enabled(ctx, 1);
    free(x);
    rt_ctx_free(ctx);
}
