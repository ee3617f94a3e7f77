/* Winograd convolution (src/kernels/winograd.c): F(2x2) and F(4x4), forward, data and weight gradients,
 * against the double reference kernels over odd sizes, paddings 0..2, channel counts off the
 * vector widths, every ISA path and 1..3 threads; results independent of the thread count; the
 * algorithm choice of conv.c (RETORT_CONV) and the op's finite-difference check through it.
 *
 * Tolerance. Winograd rounds in the transformed domain, where values are sums of up to (m+2)^2
 * inputs times the transforms' coefficients (up to 5 in B^T, 16/15 in G, 8 in A^T for F(4x4); 1,
 * 1/2, 1 for F(2x2)), so its fp32 error grows with those factors and with sqrt(C) of the GEMM
 * sums; it is measured relative to the output's largest magnitude. Over these shapes (N(0,1)
 * data, C up to 64, every ISA) the worst errors measured are 4.1e-7 for F(2x2) and 2.9e-6 for
 * F(4x4) (printed by the first test); the bounds below leave a factor 2-2.5 over those (a wrong
 * tap or a dropped channel gives errors of order 1e-2 and more: see comparison_catches_a_wrong_result). */
#include "kernels/conv.h"
#include "kernels/winograd.h"
#include "retort/retort.h"
#include "test.h"
#include "test_util.h"
#include "test_conv_epi.h"

static double tolerance(int m) { return m == 4 ? 6e-6 : 1e-6; }

typedef struct {
    int64_t N, C, H, W, OC, ph, pw;
    int bias;
    const char *what;
} wcfg;

static const wcfg wcfgs[] = {
    {1, 3, 7, 7, 4, 1, 1, 1, "7x7 pad 1, 3 -> 4 channels"},
    {2, 5, 8, 8, 9, 1, 1, 0, "8x8, 9 output channels"},
    {3, 16, 9, 11, 17, 0, 0, 1, "9x11 pad 0, 16 -> 17"},
    {2, 7, 6, 13, 3, 2, 2, 1, "pad 2"},
    {3, 12, 10, 5, 20, 1, 0, 1, "pad (1,0)"},
    {2, 6, 5, 9, 5, 0, 2, 0, "pad (0,2)"},
    {2, 8, 1, 1, 5, 1, 1, 1, "1x1 image pad 1"},
    {1, 4, 3, 3, 4, 0, 0, 1, "3x3 image pad 0: one output"},
    {3, 24, 2, 2, 20, 1, 1, 0, "2x2 images"},
    {2, 32, 8, 8, 32, 1, 1, 1, "32 channels 8x8"},
    {2, 64, 8, 8, 64, 1, 1, 1, "64 channels 8x8"},
    {1, 64, 7, 7, 64, 1, 1, 0, "64 channels 7x7"},
    {2, 16, 32, 32, 16, 1, 1, 1, "16 channels 32x32"},
    {2, 33, 14, 14, 31, 1, 1, 1, "14x14, 33 -> 31"},
    {1, 3, 28, 28, 16, 1, 1, 1, "28x28 stem"},
    {5, 2, 5, 6, 3, 1, 1, 1, "5 samples"},
};
enum { NW = sizeof wcfgs / sizeof wcfgs[0] };

static rt_conv2d_shape shape_of(const wcfg *c) {
    rt_conv2d_shape s = {c->N, c->C, c->H, c->W, c->OC, 3, 3, 0, 0, 1, 1, c->ph, c->pw, 1, 1, 1, 0};
    rt_conv2d_shape_finish(&s);
    return s;
}

/* Forward and data gradient of one shape by rt_wino_* with tile size m against the reference;
 * returns the larger error (relative to each result's max magnitude). out/gin, when given, get
 * the Winograd results (for bitwise comparisons). */
static double run_wino(const wcfg *c, int m, char *why, float *out_keep, float *gin_keep) {
    rt_conv2d_shape s = shape_of(c);
    int64_t nin = s.N * s.C * s.H * s.W, nw = s.OC * s.C * 9, nout = s.N * s.OC * s.OH * s.OW;
    float *in = malloc(nin * 4), *w = malloc(nw * 4), *b = malloc(s.OC * 4), *gout = malloc(nout * 4);
    float *o1 = malloc(nout * 4), *o2 = malloc(nout * 4), *g1 = malloc(nin * 4), *g2 = malloc(nin * 4);
    rt_test_fill_normal(in, nin, 1), rt_test_fill_normal(w, nw, 2), rt_test_fill_normal(b, s.OC, 3);
    rt_test_fill_normal(gout, nout, 4), rt_test_fill_normal(g1, nin, 5);
    memcpy(g2, g1, nin * 4); /* the data gradient accumulates */
    const float *bias = c->bias ? b : NULL;
    /* workspace full of NaNs: unwritten workspace reaching a result (even times 0) fails */
    size_t wf = rt_wino_forward_workspace(&s, m), wd = rt_wino_backward_data_workspace(&s, m);
    size_t wsb = wf > wd ? wf : wd;
    void *ws = aligned_alloc(64, (wsb + 63) / 64 * 64);
    memset(ws, 0xff, wsb);
    rt_conv2d_forward_ref(&s, o1, in, w, bias);
    rt_wino_forward(&s, m, o2, in, w, bias, NULL, ws);
    rt_conv2d_backward_data_ref(&s, g1, gout, w);
    rt_wino_backward_data(&s, m, g2, gout, w, ws, 0);
    /* the data gradient's error relative to the accumulated part alone: subtract the start */
    float *start = malloc(nin * 4);
    rt_test_fill_normal(start, nin, 5);
    for (int64_t i = 0; i < nin; i++) g1[i] -= start[i], g2[i] -= start[i];
    double e[2] = {rt_test_maxrel(o1, o2, nout), rt_test_maxrel(g1, g2, nin)};
    sprintf(why, "%s, F(%dx%d): forward %.2g, backward-data %.2g", c->what, m, m, e[0], e[1]);
    if (out_keep) memcpy(out_keep, o2, nout * 4);
    if (gin_keep) memcpy(gin_keep, g2, nin * 4);
    free(in), free(w), free(b), free(gout), free(o1), free(o2), free(g1), free(g2), free(start), free(ws);
    return fmax(e[0], e[1]);
}

static void set_env(const char *k, const char *v, char *saved, size_t n) {
    const char *p = getenv(k);
    snprintf(saved, n, "%s", p ? p : "");
    setenv(k, v, 1);
}
static void restore_env(const char *k, const char *saved) {
    if (saved[0])
        setenv(k, saved, 1);
    else
        unsetenv(k);
}

/* Every ISA path (RETORT_ISA caps the choice; on a CPU without one the cap is a no-op), both tile sizes. */
TEST(matches_reference_every_isa) {
    const char *isas[] = {"avx512", "avx2", "generic"};
    char why[256], saved[32], worst[256] = "";
    double worst_e[2] = {0, 0};
    int ok = 1;
    for (int k = 0; k < 3 && ok; k++) {
        set_env("RETORT_ISA", isas[k], saved, sizeof saved);
        for (int m = 2; m <= 4 && ok; m += 2)
            for (int i = 0; i < NW && ok; i++) {
                double e = run_wino(&wcfgs[i], m, why, NULL, NULL);
                if (e > worst_e[m / 4]) worst_e[m / 4] = e;
                if (!(e < tolerance(m))) ok = 0, snprintf(worst, sizeof worst, "%.200s (%s)", why, isas[k]);
            }
        restore_env("RETORT_ISA", saved);
    }
    CHECKF(ok, "%s", worst);
    printf("  worst error: F(2x2) %.2g, F(4x4) %.2g of the max magnitude\n", worst_e[0], worst_e[1]);
}

/* 1, 2 and 3 threads give the same bits (each tile is computed whole by one thread). */
TEST(same_bits_for_any_thread_count) {
    int prev = rt_threads();
    char why[256];
    int same = 1;
    for (int m = 2; m <= 4; m += 2)
        for (int i = 0; i < NW; i++) {
            rt_conv2d_shape s = shape_of(&wcfgs[i]);
            int64_t nout = s.N * s.OC * s.OH * s.OW, nin = s.N * s.C * s.H * s.W;
            float *o[3], *g[3];
            for (int nt = 1; nt <= 3; nt++) {
                rt_set_threads(nt);
                o[nt - 1] = malloc(nout * 4), g[nt - 1] = malloc(nin * 4);
                double e = run_wino(&wcfgs[i], m, why, o[nt - 1], g[nt - 1]);
                CHECKF(e < tolerance(m), "%d threads: %s", nt, why);
            }
            for (int k = 1; k < 3; k++)
                if (memcmp(o[0], o[k], nout * 4) || memcmp(g[0], g[k], nin * 4)) {
                    same = 0;
                    CHECKF(0, "%s: %d threads differ from 1", wcfgs[i].what, k + 1);
                }
            for (int k = 0; k < 3; k++) free(o[k]), free(g[k]);
        }
    rt_set_threads(prev);
    CHECK(same);
}

/* ---- the weight gradient ---- */

/* Shapes for the weight gradient besides wcfgs: a larger batch, where the sum runs over many tiles. */
static const wcfg wgcfgs[] = {
    {16, 16, 32, 32, 16, 1, 1, 0, "16 samples, 16 channels 32x32"},
    {32, 64, 8, 8, 64, 1, 1, 0, "32 samples, 64 channels 8x8"},
    {8, 20, 15, 13, 36, 2, 0, 0, "8 samples 15x13 pad (2,0), 20 -> 36"},
};
enum { NWG = sizeof wgcfgs / sizeof wgcfgs[0] };

static const wcfg *wg_cfg(int i) { return i < NW ? &wcfgs[i] : &wgcfgs[i - NW]; }

/* The weight gradient by rt_wino_backward_weight with tile size m against the reference, both
 * accumulating onto the same start; error relative to the accumulated part's max magnitude. gw,
 * when given, gets the Winograd result. */
static double run_wgrad(const wcfg *c, int m, char *why, float *gw_keep) {
    rt_conv2d_shape s = shape_of(c);
    int64_t nin = s.N * s.C * s.H * s.W, nw = s.OC * s.C * 9, nout = s.N * s.OC * s.OH * s.OW;
    float *in = malloc(nin * 4), *gout = malloc(nout * 4), *g1 = malloc(nw * 4), *g2 = malloc(nw * 4);
    float *start = malloc(nw * 4);
    rt_test_fill_normal(in, nin, 1), rt_test_fill_normal(gout, nout, 4), rt_test_fill_normal(start, nw, 5);
    memcpy(g1, start, nw * 4), memcpy(g2, start, nw * 4);
    size_t wsb = rt_wino_backward_weight_workspace(&s, m);
    void *ws = aligned_alloc(64, (wsb + 63) / 64 * 64);
    memset(ws, 0xff, wsb); /* NaNs: unwritten workspace reaching the result fails */
    rt_conv2d_backward_weight_ref(&s, g1, NULL, gout, in);
    rt_wino_backward_weight(&s, m, g2, gout, in, ws);
    for (int64_t i = 0; i < nw; i++) g1[i] -= start[i], g2[i] -= start[i];
    double e = rt_test_maxrel(g1, g2, nw);
    sprintf(why, "%s, F(%dx%d): backward-weight %.2g", c->what, m, m, e);
    if (gw_keep) memcpy(gw_keep, g2, nw * 4);
    free(in), free(gout), free(g1), free(g2), free(start), free(ws);
    return e;
}

TEST(weight_gradient_matches_reference_every_isa) {
    const char *isas[] = {"avx512", "avx2", "generic"};
    char why[256], saved[32], worst[256] = "";
    double worst_e[2] = {0, 0};
    int ok = 1;
    for (int k = 0; k < 3 && ok; k++) {
        set_env("RETORT_ISA", isas[k], saved, sizeof saved);
        for (int m = 2; m <= 4 && ok; m += 2)
            for (int i = 0; i < NW + NWG && ok; i++) {
                double e = run_wgrad(wg_cfg(i), m, why, NULL);
                if (e > worst_e[m / 4]) worst_e[m / 4] = e;
                if (!(e < tolerance(m))) ok = 0, snprintf(worst, sizeof worst, "%.200s (%s)", why, isas[k]);
            }
        restore_env("RETORT_ISA", saved);
    }
    CHECKF(ok, "%s", worst);
    printf("  weight gradient, worst error: F(2x2) %.2g, F(4x4) %.2g of the max magnitude\n", worst_e[0], worst_e[1]);
}

/* 1 to 3 threads each match the reference, and a second run with the same count gives the same bits. */
TEST(weight_gradient_threads_reproducible) {
    int prev = rt_threads();
    char why[256];
    for (int m = 2; m <= 4; m += 2)
        for (int i = 0; i < NW + NWG; i++) {
            const wcfg *c = wg_cfg(i);
            int64_t nw = c->OC * c->C * 9;
            float *a = malloc(nw * 4), *b = malloc(nw * 4);
            for (int nt = 1; nt <= 3; nt++) {
                rt_set_threads(nt);
                double e = run_wgrad(c, m, why, a);
                CHECKF(e < tolerance(m), "%d threads: %s", nt, why);
                run_wgrad(c, m, why, b);
                CHECKF(!memcmp(a, b, nw * 4), "%s, F(%dx%d): %d threads, two runs differ", c->what, m, m, nt);
            }
            free(a), free(b);
        }
    rt_set_threads(prev);
}

/* The comparison must be able to fail: a changed weight, and a dropped channel, are caught. */
TEST(comparison_catches_a_wrong_result) {
    rt_conv2d_shape s = {2, 16, 8, 8, 16, 3, 3, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0};
    CHECK(rt_conv2d_shape_finish(&s) == 0);
    int64_t nin = 2 * 16 * 64, nw = 16 * 16 * 9, nout = 2 * 16 * 64;
    float *in = malloc(nin * 4), *w = malloc(nw * 4), *o1 = malloc(nout * 4), *o2 = malloc(nout * 4);
    rt_test_fill_normal(in, nin, 1), rt_test_fill_normal(w, nw, 2);
    rt_conv2d_forward_ref(&s, o1, in, w, NULL);
    void *ws = aligned_alloc(64, (rt_wino_forward_workspace(&s, 4) + 63) / 64 * 64);
    w[100] += 1e-3f;
    rt_wino_forward(&s, 4, o2, in, w, NULL, NULL, ws);
    double e1 = rt_test_maxrel(o1, o2, nout);
    w[100] -= 1e-3f;
    for (int64_t i = 0; i < 64; i++) in[5 * 64 + i] = 0; /* channel 5 of sample 0 */
    rt_wino_forward(&s, 4, o2, in, w, NULL, NULL, ws);
    double e2 = rt_test_maxrel(o1, o2, nout);
    CHECKF(e1 > 10 * tolerance(4) && e2 > 10 * tolerance(4), "changed weight %.2g, dropped channel %.2g", e1, e2);
    free(in), free(w), free(o1), free(o2), free(ws);
}

TEST(eligibility) {
    rt_conv2d_shape s = {2, 4, 8, 8, 4, 3, 3, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0};
    CHECK(rt_conv2d_shape_finish(&s) == 0 && rt_wino_eligible(&s));
    rt_conv2d_shape t = s;
    t.sh = 2, rt_conv2d_shape_finish(&t);
    CHECK(!rt_wino_eligible(&t));
    t = s, t.dh = 2, rt_conv2d_shape_finish(&t);
    CHECK(!rt_wino_eligible(&t));
    t = s, t.groups = 2, rt_conv2d_shape_finish(&t);
    CHECK(!rt_wino_eligible(&t));
    t = s, t.KW = 5, t.pw = 2, rt_conv2d_shape_finish(&t);
    CHECK(!rt_wino_eligible(&t));
    t = s, t.ph = 3, rt_conv2d_shape_finish(&t);
    CHECK(!rt_wino_eligible(&t)); /* the data gradient would need padding -1 */
}

/* ---- through conv.c's algorithm choice ---- */

/* rt_conv2d_* with RETORT_CONV = alg against the reference: forward, data and weight gradients. */
static double run_conv(const wcfg *c, char *why) {
    rt_conv2d_shape s = shape_of(c);
    int64_t nin = s.N * s.C * s.H * s.W, nw = s.OC * s.C * 9, nout = s.N * s.OC * s.OH * s.OW;
    float *in = malloc(nin * 4), *w = malloc(nw * 4), *b = malloc(s.OC * 4), *gout = malloc(nout * 4);
    float *o1 = malloc(nout * 4), *o2 = malloc(nout * 4), *g1 = calloc(nin, 4), *g2 = calloc(nin, 4);
    float *gw1 = calloc(nw, 4), *gw2 = calloc(nw, 4);
    rt_test_fill_normal(in, nin, 1), rt_test_fill_normal(w, nw, 2), rt_test_fill_normal(b, s.OC, 3);
    rt_test_fill_normal(gout, nout, 4);
    size_t wsb = rt_conv2d_workspace(&s);
    void *ws = aligned_alloc(64, (wsb + 63) / 64 * 64);
    memset(ws, 0xff, wsb);
    rt_conv2d_forward_ref(&s, o1, in, w, b);
    rt_conv2d_forward(&s, o2, in, w, b, ws);
    rt_conv2d_backward_data_ref(&s, g1, gout, w);
    rt_conv2d_backward_data(&s, g2, gout, w, ws);
    rt_conv2d_backward_weight_ref(&s, gw1, NULL, gout, in);
    rt_conv2d_backward_weight(&s, gw2, NULL, gout, in, ws);
    double e[5] = {rt_test_maxrel(o1, o2, nout), rt_test_maxrel(g1, g2, nin), rt_test_maxrel(gw1, gw2, nw),
                   rt_test_conv_epi_err(&s, in, w, b, o1, ws), rt_test_conv_data_overwrite_err(&s, gout, w, ws)};
    sprintf(why, "%s: forward %.2g, backward-data %.2g, backward-weight %.2g, epilogue %.2g, data overwrite %.2g",
            c->what, e[0], e[1], e[2], e[3], e[4]);
    free(in), free(w), free(b), free(gout), free(o1), free(o2), free(g1), free(g2), free(gw1), free(gw2), free(ws);
    return fmax(fmax(fmax(e[0], e[1]), fmax(e[2], e[3])), e[4]);
}

TEST(conv_dispatch_every_algorithm) {
    const char *algs[] = {"winograd", "winograd2", "winograd4", "direct", "im2col", "auto"};
    const char *isas[] = {"avx512", "avx2", "generic"};
    char why[256], sa[32], si[32];
    for (int k = 0; k < 3; k++) {
        set_env("RETORT_ISA", isas[k], si, sizeof si);
        for (int a = 0; a < 6; a++) {
            set_env("RETORT_CONV", algs[a], sa, sizeof sa);
            for (int i = 0; i < NW; i++) {
                double e = run_conv(&wcfgs[i], why);
                CHECKF(e < tolerance(4), "RETORT_CONV=%s RETORT_ISA=%s %s", algs[a], isas[k], why);
            }
            restore_env("RETORT_CONV", sa);
        }
        restore_env("RETORT_ISA", si);
    }
}

static rt_tensor *f_conv(rt_ctx *ctx, rt_tensor **in, void *u) { return rt_conv2d(ctx, in[0], in[1], in[2], u); }

/* The op's finite-difference check with Winograd forced (both tile sizes). The convolution is
 * linear in each input, so central differences are exact at any step and the step only sets how
 * much the forward's rounding weighs: F(4x4)'s (~1e-6 of the output, ten times the direct
 * kernel's) over the default step 1e-3 is ~1e-3 of a gradient, too close to the 1e-2 tolerance;
 * a step of 0.05 keeps that default tolerance meaningful. */
TEST(gradcheck_through_winograd) {
    const char *algs[] = {"winograd2", "winograd4"};
    struct {
        int64_t N, C, H, W, OC;
        rt_conv2d_args a;
    } v[] = {{2, 3, 6, 6, 4, {1, 1, 1, 1, 1, 1, 1}}, {2, 3, 7, 5, 2, {1, 1, 0, 0, 1, 1, 1}}};
    char rep[512], sa[32];
    for (int k = 0; k < 2; k++) {
        set_env("RETORT_CONV", algs[k], sa, sizeof sa);
        for (int i = 0; i < 2; i++) {
            rt_ctx *ctx = rt_ctx_new();
            rt_tensor *in[3] = {rt_test_tensor(4, (int64_t[]){v[i].N, v[i].C, v[i].H, v[i].W}, 11, 1),
                                rt_test_tensor(4, (int64_t[]){v[i].OC, v[i].C, 3, 3}, 12, 1),
                                rt_test_tensor(1, (int64_t[]){v[i].OC}, 13, 1)};
            rt_gradcheck_opts o = {.eps = 0.05};
            int rc = rt_gradcheck(ctx, f_conv, &v[i].a, 3, in, &o, rep);
            CHECKF(rc == 0, "%s case %d: %s %s", algs[k], i, rep, rt_errmsg(ctx));
            for (int j = 0; j < 3; j++) rt_test_tensor_free(in[j]);
            rt_ctx_free(ctx);
        }
        restore_env("RETORT_CONV", sa);
    }
}
