/* Pooling and resizing: values and gradients against PyTorch, finite-difference checks of every
 * op and variant, max-pool ties and NaN, and error messages. */
#include "kernels/pool.h"
#include "retort/retort.h"
#include "test.h"
#include "test_util.h"

#include "fixtures/pool_torch.h"

/* One op of the family, as the fixtures and gradchecks describe it. */
typedef struct {
    int kind; /* 0 max, 1 avg, 2 adaptive avg, 3 nearest, 4 bilinear */
    int k[2], s[2], p[2];
    int64_t out[2];
    int align;
} pool_op;

static rt_tensor *apply(rt_ctx *ctx, rt_tensor *x, const pool_op *o) {
    switch (o->kind) {
    case 0:
        return rt_maxpool2d(ctx, x, o->k[0], o->k[1], o->s[0], o->s[1], o->p[0], o->p[1]);
    case 1:
        return rt_avgpool2d(ctx, x, o->k[0], o->k[1], o->s[0], o->s[1], o->p[0], o->p[1]);
    case 2:
        return rt_adaptive_avgpool2d(ctx, x, o->out[0], o->out[1]);
    case 3:
        return rt_resize(ctx, x, o->out[0], o->out[1], RT_RESIZE_NEAREST, 0);
    default:
        return rt_resize(ctx, x, o->out[0], o->out[1], RT_RESIZE_BILINEAR, o->align);
    }
}

/* ---- against PyTorch (tests/fixtures/gen_torch.py) ---- */

static float fx_val(int64_t i, int64_t seed) { return (float)(((i * 7919 + seed * 104729) % 2001) / 1000.0 - 1.0); }

TEST(matches_pytorch) {
    for (int k = 0; k < FX_POOL_COUNT; k++) {
        const fx_pool *f = &fx_pool_cases[k];
        rt_ctx *ctx = rt_ctx_new();
        rt_tensor *x = rt_test_tensor(4, f->x_shape, 1, 1);
        int64_t nx = rt_numel(x);
        for (int64_t i = 0; i < nx; i++) x->data[i] = fx_val(i, 1);
        pool_op o = {f->kind, {f->k[0], f->k[1]}, {f->s[0], f->s[1]}, {f->p[0], f->p[1]}, {f->out[0], f->out[1]},
                     f->align};
        rt_tensor *y = apply(ctx, x, &o);
        CHECKF(y, "%s: %s", f->what, rt_errmsg(ctx));
        CHECKF(y->shape[0] == f->y_shape[0] && y->shape[1] == f->y_shape[1] && y->shape[2] == f->y_shape[2] &&
                   y->shape[3] == f->y_shape[3],
               "%s: output shape", f->what);
        int64_t ny = rt_numel(y);
        double e = rt_test_maxrel(y->data, f->y, ny);
        CHECKF(e < 1e-6, "%s: forward differs by %.3g", f->what, e);
        float *seed = malloc((size_t)ny * sizeof(float));
        for (int64_t i = 0; i < ny; i++) seed[i] = fx_val(i, 4);
        CHECK(rt_backward_seed(ctx, y, seed) == 0);
        free(seed);
        e = rt_test_maxrel(x->grad, f->gx, nx);
        CHECKF(e < 1e-6, "%s: input gradient differs by %.3g", f->what, e);
        rt_test_tensor_free(x);
        rt_ctx_free(ctx);
    }
}

/* ---- finite differences ---- */

static rt_tensor *f_pool(rt_ctx *ctx, rt_tensor **in, void *u) { return apply(ctx, in[0], u); }
/* through a non-contiguous input */
static rt_tensor *f_pool_transposed(rt_ctx *ctx, rt_tensor **in, void *u) {
    return apply(ctx, rt_transpose(ctx, in[0], 2, 3), u);
}

TEST(gradcheck_every_op_and_variant) {
    struct {
        int64_t shape[4];
        pool_op o;
        const char *what;
    } v[] = {
        {{2, 3, 7, 6}, {0, .k = {3, 3}, .s = {2, 2}, .p = {1, 1}}, "maxpool k3 s2 p1"},
        {{2, 3, 6, 6}, {0, .k = {2, 2}, .s = {0, 0}, .p = {0, 0}}, "maxpool k2 (stride = window)"},
        {{2, 2, 5, 7}, {0, .k = {3, 2}, .s = {1, 2}, .p = {1, 0}}, "maxpool k(3,2) s(1,2) p(1,0)"},
        {{2, 2, 5, 5}, {0, .k = {3, 3}, .s = {1, 1}, .p = {0, 0}}, "maxpool overlapping k3 s1"},
        {{2, 3, 7, 6}, {1, .k = {3, 3}, .s = {2, 2}, .p = {1, 1}}, "avgpool k3 s2 p1"},
        {{2, 2, 6, 7}, {1, .k = {2, 3}, .s = {2, 1}, .p = {0, 1}}, "avgpool k(2,3) s(2,1) p(0,1)"},
        {{2, 2, 5, 5}, {1, .k = {3, 3}, .s = {1, 1}, .p = {1, 1}}, "avgpool overlapping k3 s1 p1"},
        {{2, 3, 7, 6}, {2, .out = {3, 4}}, "adaptive 7x6 -> 3x4"},
        {{2, 3, 5, 6}, {2, .out = {1, 1}}, "adaptive -> 1x1"},
        {{2, 2, 4, 3}, {2, .out = {5, 7}}, "adaptive upsampling 4x3 -> 5x7"},
        {{2, 2, 5, 6}, {3, .out = {7, 4}}, "nearest 5x6 -> 7x4"},
        {{2, 2, 5, 6}, {3, .out = {10, 12}}, "nearest 2x"},
        {{2, 2, 5, 6}, {4, .out = {7, 9}, .align = 0}, "bilinear up"},
        {{2, 2, 7, 6}, {4, .out = {3, 4}, .align = 0}, "bilinear down"},
        {{2, 2, 5, 6}, {4, .out = {7, 9}, .align = 1}, "bilinear align_corners up"},
        {{2, 2, 7, 6}, {4, .out = {3, 4}, .align = 1}, "bilinear align_corners down"},
        {{2, 2, 5, 6}, {4, .out = {1, 1}, .align = 1}, "bilinear align_corners -> 1x1"},
    };
    char rep[512];
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        rt_ctx *ctx = rt_ctx_new();
        rt_tensor *x = rt_test_tensor(4, v[i].shape, 20 + i, 1);
        int rc = rt_gradcheck(ctx, f_pool, &v[i].o, 1, &x, NULL, rep);
        CHECKF(rc == 0, "%s: %s / %s", v[i].what, rep, rt_errmsg(ctx));
        rc = rt_gradcheck(ctx, f_pool_transposed, &v[i].o, 1, &x, NULL, rep);
        CHECKF(rc == 0, "%s, transposed input: %s / %s", v[i].what, rep, rt_errmsg(ctx));
        rt_test_tensor_free(x);
        rt_ctx_free(ctx);
    }
}

/* ---- max-pool ties and NaN ---- */

TEST(maxpool_ties_first_wins_and_nan_propagates) {
    rt_ctx *ctx = rt_ctx_new();
    rt_tensor *x = rt_test_tensor(4, (int64_t[]){1, 1, 3, 3}, 1, 1);
    for (int i = 0; i < 9; i++) x->data[i] = 2.0f;
    rt_tensor *y = rt_maxpool2d(ctx, x, 2, 2, 1, 1, 0, 0); /* 2x2 outputs, every window a tie */
    CHECK(y && y->shape[2] == 2 && y->shape[3] == 2);
    CHECK(rt_backward_seed(ctx, y, (float[]){1, 10, 100, 1000}) == 0);
    /* each window's first (top-left) element takes its gradient */
    const float want[9] = {1, 10, 0, 100, 1000, 0, 0, 0, 0};
    for (int i = 0; i < 9; i++) CHECKF(x->grad[i] == want[i], "grad[%d] = %g, want %g", i, x->grad[i], want[i]);
    x->data[4] = NAN;
    x->data[0] = 5.0f;
    rt_tensor *z = rt_maxpool2d(ctx, x, 2, 2, 1, 1, 0, 0);
    CHECK(z && isnan(z->data[0]) && isnan(z->data[3]));
    /* padding is -inf: a window over negative values and padding gives the largest value */
    for (int i = 0; i < 9; i++) x->data[i] = -1.0f - i;
    rt_tensor *u = rt_maxpool2d(ctx, x, 3, 3, 3, 3, 1, 1);
    CHECK(u && u->shape[2] == 1 && u->data[0] == -1.0f);
    rt_test_tensor_free(x);
    rt_ctx_free(ctx);
}

/* Forward without grad mode (no winners kept) gives the same values. */
TEST(no_grad_forward_matches) {
    rt_ctx *ctx = rt_ctx_new();
    rt_tensor *x = rt_test_tensor(4, (int64_t[]){2, 3, 7, 6}, 3, 1);
    rt_tensor *y1 = rt_maxpool2d(ctx, x, 3, 3, 2, 2, 1, 1);
    int prev = rt_set_grad_enabled(ctx, 0);
    rt_tensor *y2 = rt_maxpool2d(ctx, x, 3, 3, 2, 2, 1, 1);
    rt_set_grad_enabled(ctx, prev);
    CHECK(y1 && y2 && y1->requires_grad && !y2->requires_grad);
    CHECK(memcmp(y1->data, y2->data, (size_t)rt_numel(y1) * sizeof(float)) == 0);
    rt_test_tensor_free(x);
    rt_ctx_free(ctx);
}

/* ---- errors ---- */

TEST(errors_name_op_and_shapes) {
    rt_ctx *ctx = rt_ctx_new();
    rt_tensor *x = rt_test_tensor(4, (int64_t[]){2, 3, 8, 8}, 1, 0),
              *x3 = rt_test_tensor(3, (int64_t[]){3, 8, 8}, 1, 0);
    CHECK(rt_maxpool2d(ctx, x, 3, 3, 2, 2, 2, 2) == NULL && rt_status(ctx) == RT_ESHAPE);
    CHECKF(strstr(rt_errmsg(ctx), "maxpool2d") && strstr(rt_errmsg(ctx), "(2,3,8,8)") &&
               strstr(rt_errmsg(ctx), "padding (2,2)"),
           "%s", rt_errmsg(ctx));
    rt_clear_error(ctx);
    CHECK(rt_avgpool2d(ctx, x, 9, 9, 1, 1, 0, 0) == NULL);
    CHECKF(strstr(rt_errmsg(ctx), "avgpool2d") && strstr(rt_errmsg(ctx), "(2,3,8,8)"), "%s", rt_errmsg(ctx));
    rt_clear_error(ctx);
    CHECK(rt_avgpool2d(ctx, x3, 2, 2, 2, 2, 0, 0) == NULL);
    CHECKF(strstr(rt_errmsg(ctx), "avgpool2d") && strstr(rt_errmsg(ctx), "(3,8,8)"), "%s", rt_errmsg(ctx));
    rt_clear_error(ctx);
    CHECK(rt_adaptive_avgpool2d(ctx, x, 0, 2) == NULL);
    CHECKF(strstr(rt_errmsg(ctx), "adaptive_avgpool2d") && strstr(rt_errmsg(ctx), "(2,3,8,8)"), "%s", rt_errmsg(ctx));
    rt_clear_error(ctx);
    CHECK(rt_resize(ctx, x3, 4, 4, RT_RESIZE_BILINEAR, 0) == NULL);
    CHECKF(strstr(rt_errmsg(ctx), "resize") && strstr(rt_errmsg(ctx), "(3,8,8)"), "%s", rt_errmsg(ctx));
    rt_clear_error(ctx);
    CHECK(rt_resize(ctx, x, 4, 4, (rt_resize_mode)7, 0) == NULL && rt_status(ctx) == RT_EINVAL);
    rt_clear_error(ctx);
    /* a NULL input (an earlier failure) gives NULL */
    CHECK(rt_maxpool2d(ctx, NULL, 2, 2, 2, 2, 0, 0) == NULL);
    rt_test_tensor_free(x), rt_test_tensor_free(x3);
    rt_ctx_free(ctx);
}

TEST(output_sizes) {
    rt_pool2d_shape s = {6, 7, 8, 3, 3, 2, 2, 1, 1, 0, 0};
    CHECK(rt_pool2d_shape_finish(&s) == 0 && s.OH == 4 && s.OW == 4);
    s = (rt_pool2d_shape){6, 32, 32, 2, 2, 2, 2, 0, 0, 0, 0};
    CHECK(rt_pool2d_shape_finish(&s) == 0 && s.OH == 16 && s.OW == 16);
    s = (rt_pool2d_shape){6, 7, 8, 3, 3, 2, 2, 2, 1, 0, 0};
    CHECK(rt_pool2d_shape_finish(&s) == -1); /* padding more than half the window */
}

/* Global average pooling (the adaptive kernel's 1x1 fast path: one vector-lane sum per plane)
 * against a double sum, through the threaded size too, with the same bits for 1 and 2 threads. */
TEST(global_avgpool_fast_path) {
    const int64_t cases[3][3] = {{3, 5, 7}, {64 * 64, 8, 8}, {10, 1, 1}}; /* planes, H, W */
    int prev = rt_threads();
    for (int k = 0; k < 3; k++) {
        const int64_t P = cases[k][0], H = cases[k][1], W = cases[k][2];
        float *in = malloc((size_t)(P * H * W) * sizeof(float)), *out[2];
        rt_test_fill_normal(in, P * H * W, 70 + k);
        for (int t = 0; t < 2; t++) {
            rt_set_threads(t + 1);
            out[t] = malloc((size_t)P * sizeof(float));
            rt_adaptive_avgpool2d_forward(P, H, W, 1, 1, out[t], in);
        }
        double e = 0;
        for (int64_t p = 0; p < P; p++) {
            double s = 0;
            for (int64_t i = 0; i < H * W; i++) s += in[p * H * W + i];
            e = fmax(e, fabs(out[0][p] - s / (double)(H * W)));
        }
        int same = memcmp(out[0], out[1], (size_t)P * sizeof(float)) == 0;
        free(in), free(out[0]), free(out[1]);
        CHECKF(e < 1e-6, "(%lld,%lld,%lld): %g", (long long)P, (long long)H, (long long)W, e);
        CHECK(same);
    }
    rt_set_threads(prev);
}
