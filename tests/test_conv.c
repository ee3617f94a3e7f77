/* conv2d: fast kernels against the reference kernels (forward, backward-data, backward-weight) over
 * strides, paddings, dilations, groups, kernel shapes and chunkings; the reference against values
 * from PyTorch; finite-difference checks of the op; error messages. */
#include "kernels/conv.h"
#include "retort/retort.h"
#include "test.h"
#include "test_util.h"
#include "test_conv_epi.h"

#include "fixtures/conv_torch.h"

/* ---- fast kernels vs reference ---- */

typedef struct {
    int64_t N, C, H, W, OC, KH, KW, sh, sw, ph, pw, dh, dw, groups;
    int bias;
    int64_t chunk;
    const char *what;
} cfg;

static const cfg cfgs[] = {
    {1, 3, 7, 7, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0, "3x3 s1 p1, batch 1"},
    {3, 4, 9, 8, 6, 3, 3, 2, 2, 1, 1, 1, 1, 1, 0, 0, "3x3 s2 p1, odd sizes, no bias"},
    {3, 4, 11, 9, 6, 3, 3, 1, 1, 2, 2, 2, 2, 1, 1, 0, "3x3 dilation 2 pad 2"},
    {3, 4, 8, 7, 6, 3, 3, 1, 1, 0, 0, 1, 1, 1, 1, 0, "3x3 pad 0"},
    {2, 4, 8, 8, 6, 3, 3, 1, 2, 0, 1, 1, 1, 2, 1, 0, "groups 2, stride (1,2), pad (0,1)"},
    {3, 6, 7, 9, 6, 3, 3, 1, 1, 1, 1, 1, 1, 6, 1, 0, "depthwise 3x3"},
    {2, 5, 9, 7, 5, 5, 3, 2, 1, 2, 1, 1, 2, 5, 0, 0, "depthwise 5x3, stride (2,1), dilation (1,2)"},
    {3, 4, 10, 10, 4, 3, 3, 2, 2, 1, 1, 1, 1, 4, 1, 0, "depthwise 3x3 s2"},
    {2, 4, 6, 6, 8, 3, 3, 1, 1, 1, 1, 1, 1, 4, 1, 0, "groups == C, channel multiplier 2"},
    {3, 8, 5, 7, 4, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, "1x1 s1"},
    {3, 8, 5, 7, 4, 1, 1, 1, 1, 0, 0, 1, 1, 2, 0, 0, "1x1 s1 groups 2"},
    {3, 4, 9, 9, 6, 1, 1, 2, 2, 0, 0, 1, 1, 1, 1, 0, "1x1 s2"},
    {1, 4, 5, 5, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, "1x1 pad 1"},
    {3, 3, 10, 9, 5, 5, 3, 1, 2, 2, 0, 1, 1, 1, 1, 0, "5x3 stride (1,2) pad (2,0)"},
    {2, 3, 5, 5, 4, 5, 5, 1, 1, 2, 2, 1, 1, 1, 1, 0, "5x5 kernel as large as the input"},
    {2, 2, 7, 7, 3, 3, 3, 3, 3, 0, 0, 1, 1, 1, 1, 0, "stride 3"},
    {5, 4, 6, 6, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2, "chunks of 2 samples (last one partial)"},
    {3, 4, 7, 7, 8, 3, 3, 1, 1, 1, 1, 1, 1, 2, 1, 1, "groups 2, chunks of 1"},
    {3, 16, 8, 8, 32, 3, 3, 2, 2, 1, 1, 1, 1, 1, 0, 0, "ResNet downsample 16->32"},
    {3, 32, 8, 8, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0, "32 channels 3x3"},
    {2, 3, 5, 6, 4, 3, 3, 1, 1, 3, 3, 1, 1, 1, 1, 0, "pad 3, beyond the kernel's reach"},
    {2, 4, 9, 12, 5, 3, 5, 1, 1, 2, 1, 1, 2, 1, 1, 0, "3x5 pad (2,1) dilation (1,2)"},
    {2, 3, 13, 37, 9, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0, "wide rows, 9 output channels"},
    {2, 5, 11, 10, 7, 3, 3, 2, 2, 2, 2, 2, 2, 1, 1, 0, "stride 2 dilation 2 pad 2"},
    {2, 3, 12, 11, 4, 4, 4, 2, 3, 1, 2, 1, 1, 1, 1, 0, "4x4 stride (2,3)"},
    {19, 2, 5, 5, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0, "19 samples"},
    {41, 2, 5, 5, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0, "41 samples: weight-gradient groups of 32 and a partial one"},
    {2, 8, 1, 1, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0, "1x1 image, 3x3 pad 1"},
    {3, 24, 2, 2, 20, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0, "2x2 images, 24 -> 20 channels"},
    {2, 4, 3, 3, 4, 3, 3, 2, 2, 1, 1, 1, 1, 1, 0, 0, "3x3 image, stride 2"},
    {2, 16, 7, 10, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0, "16 channels 3x3 on 7x10: partial Winograd tiles"},
};

static double run_cfg(const cfg *c, char *why) {
    rt_conv2d_shape s = {c->N,  c->C,  c->H,  c->W,  c->OC, c->KH, c->KW,     0,       0,
                         c->sh, c->sw, c->ph, c->pw, c->dh, c->dw, c->groups, c->chunk};
    if (rt_conv2d_shape_finish(&s)) {
        sprintf(why, "shape rejected");
        return 1e9;
    }
    int64_t nin = s.N * s.C * s.H * s.W, nw = s.OC * (s.C / s.groups) * s.KH * s.KW, nout = s.N * s.OC * s.OH * s.OW;
    float *in = malloc(nin * 4), *w = malloc(nw * 4), *b = malloc(s.OC * 4), *gout = malloc(nout * 4);
    float *o1 = malloc(nout * 4), *o2 = malloc(nout * 4), *gi1 = malloc(nin * 4), *gi2 = malloc(nin * 4);
    float *gw1 = malloc(nw * 4), *gw2 = malloc(nw * 4), *gb1 = malloc(s.OC * 4), *gb2 = malloc(s.OC * 4);
    rt_test_fill_normal(in, nin, 1), rt_test_fill_normal(w, nw, 2), rt_test_fill_normal(b, s.OC, 3),
        rt_test_fill_normal(gout, nout, 4);
    /* the backward kernels accumulate: start both from the same non-zero gradients */
    rt_test_fill_normal(gi1, nin, 5), rt_test_fill_normal(gw1, nw, 6), rt_test_fill_normal(gb1, s.OC, 7);
    memcpy(gi2, gi1, nin * 4), memcpy(gw2, gw1, nw * 4), memcpy(gb2, gb1, s.OC * 4);
    /* workspace full of NaNs: a kernel that lets unwritten workspace reach a result (even times 0) fails */
    size_t wsb = rt_conv2d_workspace(&s);
    void *ws = aligned_alloc(64, wsb);
    memset(ws, 0xff, wsb);
    const float *bias = c->bias ? b : NULL;
    rt_conv2d_forward_ref(&s, o1, in, w, bias);
    rt_conv2d_forward(&s, o2, in, w, bias, ws);
    rt_conv2d_backward_data_ref(&s, gi1, gout, w);
    rt_conv2d_backward_data(&s, gi2, gout, w, ws);
    rt_conv2d_backward_weight_ref(&s, gw1, c->bias ? gb1 : NULL, gout, in);
    rt_conv2d_backward_weight(&s, gw2, c->bias ? gb2 : NULL, gout, in, ws);
    double e[6] = {rt_test_maxrel(o1, o2, nout),
                   rt_test_maxrel(gi1, gi2, nin),
                   rt_test_maxrel(gw1, gw2, nw),
                   rt_test_maxrel(gb1, gb2, s.OC),
                   rt_test_conv_epi_err(&s, in, w, bias, o1, ws),
                   rt_test_conv_data_overwrite_err(&s, gout, w, ws)};
    sprintf(why, "%s: forward %.2g, backward-data %.2g, backward-weight %.2g, bias %.2g, epilogue %.2g, data overwrite %.2g",
            c->what, e[0], e[1], e[2], e[3], e[4], e[5]);
    free(in), free(w), free(b), free(gout), free(o1), free(o2), free(gi1), free(gi2);
    free(gw1), free(gw2), free(gb1), free(gb2), free(ws);
    return fmax(fmax(fmax(e[0], e[1]), fmax(e[2], e[3])), fmax(e[4], e[5]));
}

/* Every ISA the CPU has (RETORT_ISA caps the choice; on a CPU without one the cap is a no-op). */
TEST(fast_matches_reference) {
    const char *isas[] = {"avx512", "avx2", "generic"};
    const char *prev = getenv("RETORT_ISA");
    char why[256], saved[32] = "";
    if (prev) snprintf(saved, sizeof saved, "%s", prev);
    double e = 0;
    size_t i = 0, k = 0;
    for (k = 0; k < 3 && e < 1e-5; k++) {
        setenv("RETORT_ISA", isas[k], 1);
        for (i = 0; i < sizeof cfgs / sizeof cfgs[0] && e < 1e-5; i++) e = run_cfg(&cfgs[i], why);
    }
    if (saved[0])
        setenv("RETORT_ISA", saved, 1);
    else
        unsetenv("RETORT_ISA");
    CHECKF(e < 1e-5, "%s (%s)", why, isas[k - 1]);
}

/* Other thread counts (the weight gradient splits samples between threads). */
TEST(fast_matches_reference_other_thread_counts) {
    int prev = rt_threads();
    char why[256];
    double e = 0;
    for (int nt = 1; nt <= 3 && e < 1e-5; nt += 2) {
        rt_set_threads(nt);
        for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0] && e < 1e-5; i++) e = run_cfg(&cfgs[i], why);
    }
    rt_set_threads(prev);
    CHECKF(e < 1e-5, "%s", why);
}

/* Both weight-gradient kernels of the direct path (RETORT_CONV_WGRAD=direct: vectorised over
 * positions; =lanes: over output channels, for three-tap filters) on every ISA the CPU has,
 * whatever the default rule picks, with channel counts that fill one to seven vectors of output
 * channels (several blocks of them) and (channel, kh) rows that do not fill a register tile. */
static const cfg wg_cfgs[] = {
    {3, 5, 9, 9, 48, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0, "48 output channels (3 vectors), 15 rows"},
    {2, 3, 8, 7, 100, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 0, "100 output channels (7 vectors: 4 + 3)"},
    {3, 7, 10, 9, 64, 3, 3, 2, 2, 1, 1, 1, 1, 1, 0, 0, "64 output channels, stride 2, 21 rows"},
    {2, 6, 11, 10, 33, 3, 3, 1, 1, 2, 2, 2, 2, 1, 1, 0, "33 output channels, dilation 2"},
    {2, 4, 9, 12, 40, 5, 3, 1, 1, 2, 1, 1, 1, 1, 1, 0, "5x3 filter, 40 output channels"},
};

TEST(weight_gradient_both_kernels_match_reference) {
    const char *isas[] = {"avx512", "avx2", "generic"}, *kinds[] = {"direct", "lanes"};
    char prev_isa[32] = "", prev_wg[32] = "", why[256] = "";
    if (getenv("RETORT_ISA")) snprintf(prev_isa, sizeof prev_isa, "%s", getenv("RETORT_ISA"));
    if (getenv("RETORT_CONV_WGRAD")) snprintf(prev_wg, sizeof prev_wg, "%s", getenv("RETORT_CONV_WGRAD"));
    size_t ncf = sizeof cfgs / sizeof cfgs[0], nwg = sizeof wg_cfgs / sizeof wg_cfgs[0];
    double e = 0;
    char at[32] = "";
    for (int k = 0; k < 2 && e < 1e-5; k++)
        for (int i = 0; i < 3 && e < 1e-5; i++) {
            setenv("RETORT_CONV_WGRAD", kinds[k], 1);
            setenv("RETORT_ISA", isas[i], 1);
            snprintf(at, sizeof at, "%s, %s", kinds[k], isas[i]);
            for (size_t c = 0; c < ncf + nwg && e < 1e-5; c++) e = run_cfg(c < ncf ? &cfgs[c] : &wg_cfgs[c - ncf], why);
        }
    if (prev_isa[0])
        setenv("RETORT_ISA", prev_isa, 1);
    else
        unsetenv("RETORT_ISA");
    if (prev_wg[0])
        setenv("RETORT_CONV_WGRAD", prev_wg, 1);
    else
        unsetenv("RETORT_CONV_WGRAD");
    CHECKF(e < 1e-5, "%s (%s)", why, at);
}

/* Same inputs and thread count: the same bits. */
TEST(reproducible) {
    rt_conv2d_shape s = {7, 8, 9, 10, 12, 3, 3, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0};
    CHECK(rt_conv2d_shape_finish(&s) == 0);
    int64_t nin = 7 * 8 * 90, nw = 12 * 8 * 9, nout = 7 * 12 * 90;
    float *in = malloc(nin * 4), *w = malloc(nw * 4), *g = malloc(nout * 4), *r[2][3];
    rt_test_fill_normal(in, nin, 1), rt_test_fill_normal(w, nw, 2), rt_test_fill_normal(g, nout, 3);
    void *ws = aligned_alloc(64, rt_conv2d_workspace(&s));
    for (int k = 0; k < 2; k++) {
        r[k][0] = malloc(nout * 4), r[k][1] = calloc(nin, 4), r[k][2] = calloc(nw, 4);
        rt_conv2d_forward(&s, r[k][0], in, w, NULL, ws);
        rt_conv2d_backward_data(&s, r[k][1], g, w, ws);
        rt_conv2d_backward_weight(&s, r[k][2], NULL, g, in, ws);
    }
    int same =
        !memcmp(r[0][0], r[1][0], nout * 4) && !memcmp(r[0][1], r[1][1], nin * 4) && !memcmp(r[0][2], r[1][2], nw * 4);
    for (int k = 0; k < 2; k++) free(r[k][0]), free(r[k][1]), free(r[k][2]);
    free(in), free(w), free(g), free(ws);
    CHECK(same);
}

/* The comparison must be able to fail: a kernel given a different weight is caught. */
TEST(comparison_catches_a_wrong_result) {
    rt_conv2d_shape s = {2, 3, 6, 6, 4, 3, 3, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0};
    CHECK(rt_conv2d_shape_finish(&s) == 0 && s.OH == 6 && s.OW == 6);
    float in[216], w[108], o1[288], o2[288];
    rt_test_fill_normal(in, 216, 1), rt_test_fill_normal(w, 108, 2);
    rt_conv2d_forward_ref(&s, o1, in, w, NULL);
    w[50] += 1e-3f;
    void *ws = aligned_alloc(64, rt_conv2d_workspace(&s));
    rt_conv2d_forward(&s, o2, in, w, NULL, ws);
    free(ws);
    CHECK(rt_test_maxrel(o1, o2, 288) > 1e-5);
}

TEST(output_sizes) {
    rt_conv2d_shape s = {1, 3, 32, 31, 8, 3, 3, 0, 0, 2, 2, 1, 1, 1, 1, 1, 0};
    CHECK(rt_conv2d_shape_finish(&s) == 0 && s.OH == 16 && s.OW == 16);
    s = (rt_conv2d_shape){1, 3, 11, 9, 8, 3, 5, 0, 0, 1, 3, 2, 0, 2, 2, 1, 0};
    CHECK(rt_conv2d_shape_finish(&s) == 0 && s.OH == 11 && s.OW == 1); /* (11+4-4-1)/1+1, (9-8-1)/3+1 */
    s = (rt_conv2d_shape){1, 3, 4, 4, 8, 5, 5, 0, 0, 1, 1, 0, 0, 1, 1, 1, 0};
    CHECK(rt_conv2d_shape_finish(&s) == -1); /* kernel larger than the input */
    s = (rt_conv2d_shape){1, 3, 8, 8, 8, 3, 3, 0, 0, 1, 1, 1, 1, 1, 1, 2, 0};
    CHECK(rt_conv2d_shape_finish(&s) == -1); /* 3 channels in 2 groups */
}

/* ---- the op against PyTorch (tests/fixtures/gen_torch.py) ---- */

static float fx_val(int64_t i, int64_t seed) { return (float)(((i * 7919 + seed * 104729) % 2001) / 1000.0 - 1.0); }

static rt_tensor *fx_tensor(int ndim, const int64_t *shape, int64_t seed) {
    rt_tensor *t = rt_test_tensor(ndim, shape, 1, 1);
    for (int64_t i = 0; i < rt_numel(t); i++) t->data[i] = fx_val(i, seed);
    return t;
}

TEST(matches_pytorch) {
    for (int k = 0; k < FX_CONV_COUNT; k++) {
        const fx_conv *f = &fx_conv_cases[k];
        rt_ctx *ctx = rt_ctx_new();
        rt_tensor *x = fx_tensor(4, f->x_shape, 1), *w = fx_tensor(4, f->w_shape, 2);
        rt_tensor *b = f->bias ? fx_tensor(1, &f->w_shape[0], 3) : NULL;
        rt_conv2d_args a = {f->stride[0], f->stride[1], f->pad[0], f->pad[1], f->dil[0], f->dil[1], f->groups};
        rt_tensor *y = rt_conv2d(ctx, x, w, b, &a);
        CHECKF(y, "case %d: %s", k, rt_errmsg(ctx));
        int64_t ny = rt_numel(y);
        CHECKF(ny == f->ny && y->shape[2] == f->y_shape[2] && y->shape[3] == f->y_shape[3], "case %d: shape", k);
        CHECKF(rt_test_maxrel(y->data, f->y, ny) < 1e-5, "case %d (%s): forward %.3g", k, f->what,
               rt_test_maxrel(y->data, f->y, ny));
        float *seed = malloc((size_t)ny * sizeof(float));
        for (int64_t i = 0; i < ny; i++) seed[i] = fx_val(i, 4);
        CHECK(rt_backward_seed(ctx, y, seed) == 0);
        free(seed);
        CHECKF(rt_test_maxrel(x->grad, f->gx, rt_numel(x)) < 1e-5, "case %d (%s): grad x", k, f->what);
        CHECKF(rt_test_maxrel(w->grad, f->gw, rt_numel(w)) < 1e-5, "case %d (%s): grad w", k, f->what);
        if (b) CHECKF(rt_test_maxrel(b->grad, f->gb, rt_numel(b)) < 1e-5, "case %d (%s): grad b", k, f->what);
        rt_test_tensor_free(x), rt_test_tensor_free(w), rt_test_tensor_free(b);
        rt_ctx_free(ctx);
    }
}

/* ---- finite differences through the op ---- */

static rt_tensor *f_conv(rt_ctx *ctx, rt_tensor **in, void *u) {
    const rt_conv2d_args *a = u;
    return rt_conv2d(ctx, in[0], in[1], in[2], a);
}
/* Through a non-contiguous input: the op makes it contiguous and routes the gradient back. */
static rt_tensor *f_conv_transposed(rt_ctx *ctx, rt_tensor **in, void *u) {
    return rt_conv2d(ctx, rt_transpose(ctx, in[0], 2, 3), in[1], in[2], u);
}

/* Through an intermediate two convolutions read: the first gradient of the pass is written in place
 * (rt_grad_of_fresh: no zeroing), the second added to it. */
static rt_tensor *f_conv_shared(rt_ctx *ctx, rt_tensor **in, void *u) {
    rt_tensor *t = rt_mul_scalar(ctx, in[0], 1.5f);
    return rt_add(ctx, rt_conv2d(ctx, t, in[1], in[2], u), rt_conv2d(ctx, t, in[1], NULL, u));
}

static int gradcheck_conv(rt_gradcheck_fn f, int64_t N, int64_t C, int64_t H, int64_t W, int64_t OC, int64_t KH,
                          int64_t KW, int bias, rt_conv2d_args a, char *rep) {
    rt_ctx *ctx = rt_ctx_new();
    int64_t g = a.groups ? a.groups : 1;
    rt_tensor *in[3] = {rt_test_tensor(4, (int64_t[]){N, C, H, W}, 11, 1),
                        rt_test_tensor(4, (int64_t[]){OC, C / g, KH, KW}, 12, 1),
                        bias ? rt_test_tensor(1, (int64_t[]){OC}, 13, 1) : NULL};
    int rc = rt_gradcheck(ctx, f, &a, bias ? 3 : 2, in, NULL, rep);
    if (rc) snprintf(rep + strlen(rep), 512 - strlen(rep), " / %s", rt_errmsg(ctx));
    for (int i = 0; i < 3; i++) rt_test_tensor_free(in[i]);
    rt_ctx_free(ctx);
    return rc;
}

TEST(gradcheck_conv2d_variants) {
    char rep[512];
    struct {
        int64_t N, C, H, W, OC, KH, KW;
        int bias;
        rt_conv2d_args a;
        const char *what;
    } v[] = {
        {2, 3, 6, 6, 4, 3, 3, 1, {1, 1, 1, 1, 1, 1, 1}, "3x3 s1 p1 bias"},
        {2, 3, 7, 7, 4, 3, 3, 0, {2, 2, 0, 0, 1, 1, 1}, "3x3 s2 p0"},
        {2, 3, 7, 6, 4, 3, 3, 1, {1, 1, 2, 2, 2, 2, 1}, "dilation 2 pad 2"},
        {2, 4, 6, 6, 4, 3, 3, 1, {1, 2, 1, 0, 1, 1, 2}, "groups 2, stride (1,2)"},
        {2, 4, 6, 5, 4, 3, 3, 1, {1, 1, 1, 1, 1, 1, 4}, "depthwise"},
        {2, 4, 7, 7, 4, 5, 3, 0, {2, 1, 2, 1, 1, 2, 4}, "depthwise 5x3 s(2,1) d(1,2)"},
        {2, 4, 5, 6, 3, 1, 1, 1, {0}, "1x1 defaults"},
        {2, 4, 7, 7, 6, 1, 1, 0, {2, 2, 0, 0, 1, 1, 2}, "1x1 s2 groups 2"},
        {2, 3, 7, 6, 2, 5, 3, 1, {2, 1, 2, 0, 1, 1, 1}, "5x3 s(2,1) p(2,0)"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        CHECKF(gradcheck_conv(f_conv_shared, v[i].N, v[i].C, v[i].H, v[i].W, v[i].OC, v[i].KH, v[i].KW, v[i].bias,
                              v[i].a, rep) == 0,
               "%s (shared input): %s", v[i].what, rep);
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        CHECKF(gradcheck_conv(f_conv, v[i].N, v[i].C, v[i].H, v[i].W, v[i].OC, v[i].KH, v[i].KW, v[i].bias, v[i].a,
                              rep) == 0,
               "%s: %s", v[i].what, rep);
    CHECKF(gradcheck_conv(f_conv_transposed, 2, 3, 5, 6, 4, 3, 3, 1, (rt_conv2d_args){1, 1, 1, 1, 1, 1, 1}, rep) == 0,
           "transposed input: %s", rep);
}

TEST(no_grad_records_nothing_and_matches) {
    rt_ctx *ctx = rt_ctx_new();
    rt_tensor *x = rt_test_tensor(4, (int64_t[]){2, 3, 6, 6}, 1, 0),
              *w = rt_test_tensor(4, (int64_t[]){4, 3, 3, 3}, 2, 1);
    rt_conv2d_args a = {1, 1, 1, 1, 1, 1, 1};
    rt_tensor *y1 = rt_conv2d(ctx, x, w, NULL, &a);
    int prev = rt_set_grad_enabled(ctx, 0);
    rt_tensor *y2 = rt_conv2d(ctx, x, w, NULL, &a);
    rt_set_grad_enabled(ctx, prev);
    CHECK(y1 && y2 && y1->requires_grad && !y2->requires_grad && rt_tape_size(ctx) == 1);
    CHECK(memcmp(y1->data, y2->data, rt_numel(y1) * sizeof(float)) == 0);
    rt_test_tensor_free(x), rt_test_tensor_free(w);
    rt_ctx_free(ctx);
}

/* ---- errors ---- */

TEST(errors_name_op_and_shapes) {
    rt_ctx *ctx = rt_ctx_new();
    rt_tensor *x = rt_test_tensor(4, (int64_t[]){2, 3, 8, 8}, 1, 0),
              *w = rt_test_tensor(4, (int64_t[]){4, 1, 3, 3}, 2, 0);
    CHECK(rt_conv2d(ctx, x, w, NULL, NULL) == NULL && rt_status(ctx) == RT_ESHAPE);
    CHECKF(strstr(rt_errmsg(ctx), "conv2d: input (2,3,8,8) has 3 channels, weight (4,1,3,3) expects 1 (groups 1)"),
           "%s", rt_errmsg(ctx));
    rt_clear_error(ctx);
    /* the same weight is right for a depthwise-like grouping of 3 */
    rt_tensor *w3 = rt_test_tensor(4, (int64_t[]){3, 1, 3, 3}, 2, 0);
    CHECK(rt_conv2d(ctx, x, w3, NULL, &(rt_conv2d_args){.groups = 3}) != NULL);
    rt_tensor *b = rt_test_tensor(1, (int64_t[]){5}, 3, 0);
    CHECK(rt_conv2d(ctx, x, w3, b, &(rt_conv2d_args){.groups = 3}) == NULL);
    CHECKF(strstr(rt_errmsg(ctx), "conv2d") && strstr(rt_errmsg(ctx), "(5)"), "%s", rt_errmsg(ctx));
    rt_clear_error(ctx);
    rt_tensor *w9 = rt_test_tensor(4, (int64_t[]){4, 3, 9, 9}, 2, 0);
    CHECK(rt_conv2d(ctx, x, w9, NULL, NULL) == NULL);
    CHECKF(strstr(rt_errmsg(ctx), "conv2d") && strstr(rt_errmsg(ctx), "(4,3,9,9)") &&
               strstr(rt_errmsg(ctx), "(2,3,8,8)"),
           "%s", rt_errmsg(ctx));
    rt_clear_error(ctx);
    rt_tensor *x3 = rt_test_tensor(3, (int64_t[]){3, 8, 8}, 1, 0);
    CHECK(rt_conv2d(ctx, x3, w3, NULL, NULL) == NULL && strstr(rt_errmsg(ctx), "(3,8,8)"));
    rt_clear_error(ctx);
    CHECK(rt_conv2d(ctx, x, w3, NULL, &(rt_conv2d_args){.groups = 3, .stride_h = -1}) == NULL &&
          rt_status(ctx) == RT_EINVAL);
    rt_test_tensor_free(x), rt_test_tensor_free(w), rt_test_tensor_free(w3), rt_test_tensor_free(b),
        rt_test_tensor_free(w9), rt_test_tensor_free(x3);
    rt_ctx_free(ctx);
}
