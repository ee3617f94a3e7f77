/* Whole training loops on the engine: a small CNN fits a small synthetic image set (100% training
 * accuracy), and the same seed and thread count give bitwise-identical parameters. */
#include "retort/retort.h"
#include "test.h"

/* A tiny data set: 4 classes of 8x8 single-channel images, each class a bright bar in a different
 * place, plus noise. */
#define NS 64
#define HW 8
static void make_data(float *x, int32_t *y, uint64_t seed) {
    rt_rng r;
    rt_rng_seed(&r, seed);
    for (int i = 0; i < NS; i++) {
        int c = i % 4;
        y[i] = c;
        for (int p = 0; p < HW * HW; p++) {
            int row = p / HW, col = p % HW;
            float bar = (c == 0 && row == 2) || (c == 1 && row == 5) || (c == 2 && col == 2) || (c == 3 && col == 5);
            x[i * HW * HW + p] = bar + 0.3f * rt_rng_normal(&r);
        }
    }
}

typedef struct {
    rt_paramset ps;
    rt_tensor *w1, *g1, *b1, *w2, *fw, *fb;
    float *rm, *rv;
} cnn;

static void cnn_init(rt_ctx *ctx, cnn *m, uint64_t seed) {
    rt_params_init(&m->ps);
    m->w1 = rt_params_add(ctx, &m->ps, "conv1.weight", RT_PARAM, 4, (int64_t[]){8, 1, 3, 3});
    m->g1 = rt_params_add(ctx, &m->ps, "bn1.weight", RT_PARAM, 1, (int64_t[]){8});
    m->b1 = rt_params_add(ctx, &m->ps, "bn1.bias", RT_PARAM, 1, (int64_t[]){8});
    rt_tensor *rm = rt_params_add(ctx, &m->ps, "bn1.running_mean", RT_BUFFER, 1, (int64_t[]){8});
    rt_tensor *rv = rt_params_add(ctx, &m->ps, "bn1.running_var", RT_BUFFER, 1, (int64_t[]){8});
    m->w2 = rt_params_add(ctx, &m->ps, "conv2.weight", RT_PARAM, 4, (int64_t[]){8, 8, 3, 3});
    m->fw = rt_params_add(ctx, &m->ps, "fc.weight", RT_PARAM, 2, (int64_t[]){4, 8});
    m->fb = rt_params_add(ctx, &m->ps, "fc.bias", RT_PARAM, 1, (int64_t[]){4});
    RT_ASSERT(rt_params_finalize(ctx, &m->ps) == 0);
    m->rm = rm->data;
    m->rv = rv->data;
    rt_rng r;
    rt_rng_seed(&r, seed);
    for (size_t i = 0; i < m->ps.n; i++) m->ps.data[i] = 0.3f * rt_rng_normal(&r);
    for (int i = 0; i < 8; i++) m->g1->data[i] = 1, m->b1->data[i] = 0, m->rv[i] = 1;
}

static rt_tensor *cnn_forward(rt_ctx *ctx, cnn *m, rt_tensor *x) {
    rt_tensor *h = rt_conv2d(ctx, x, m->w1, NULL, &(rt_conv2d_args){.pad_h = 1, .pad_w = 1});
    h = rt_relu(ctx, rt_batchnorm(ctx, h, m->g1, m->b1, m->rm, m->rv, 1, 0.1f, 1e-5f));
    h = rt_maxpool2d(ctx, h, 2, 2, 2, 2, 0, 0);
    h = rt_relu(ctx, rt_conv2d(ctx, h, m->w2, NULL, &(rt_conv2d_args){.pad_h = 1, .pad_w = 1}));
    h = rt_flatten(ctx, rt_adaptive_avgpool2d(ctx, h, 1, 1), 1);
    return rt_linear(ctx, h, m->fw, m->fb);
}

/* Trains for steps full-batch steps with Adam; returns the final training accuracy. */
static double train(rt_ctx *ctx, cnn *m, const float *xd, const int32_t *y, int steps) {
    rt_optim_cfg oc = rt_optim_defaults(RT_OPTIM_ADAM);
    oc.lr = 0.01f;
    rt_optim *opt = rt_optim_new(ctx, &oc, m->ps.n);
    double acc = 0;
    for (int s = 0; s < steps; s++) {
        rt_tensor *x = rt_wrap(ctx, (float *)xd, 4, (int64_t[]){NS, 1, HW, HW});
        rt_tensor *logits = cnn_forward(ctx, m, x);
        rt_tensor *loss = rt_cross_entropy(ctx, logits, y, 0, RT_MEAN);
        if (!loss) break;
        int correct = 0;
        for (int i = 0; i < NS; i++) {
            int best = 0;
            for (int k = 1; k < 4; k++)
                if (logits->data[i * 4 + k] > logits->data[i * 4 + best]) best = k;
            correct += best == y[i];
        }
        acc = (double)correct / NS;
        rt_params_zero_grad(&m->ps);
        rt_backward(ctx, loss);
        rt_optim_step(ctx, opt, m->ps.data, m->ps.grad, oc.lr);
        rt_step_reset(ctx);
    }
    rt_optim_free(opt);
    return acc;
}

TEST(small_cnn_fits_training_set) {
    rt_ctx *ctx = rt_ctx_new();
    float *x = malloc(sizeof(float) * NS * HW * HW);
    int32_t y[NS];
    make_data(x, y, 3);
    cnn m;
    cnn_init(ctx, &m, 5);
    double acc0 = train(ctx, &m, x, y, 1);
    double acc = train(ctx, &m, x, y, 150);
    CHECKF(rt_status(ctx) == 0, "%s", rt_errmsg(ctx));
    CHECKF(acc == 1.0, "training accuracy %.3f after 150 steps (started at %.3f)", acc, acc0);
    rt_params_free(&m.ps);
    free(x);
    rt_ctx_free(ctx);
}

TEST(same_seed_same_threads_same_bits) {
    float *x = malloc(sizeof(float) * NS * HW * HW);
    int32_t y[NS];
    make_data(x, y, 4);
    float *first = NULL;
    for (int run = 0; run < 2; run++) {
        rt_ctx *ctx = rt_ctx_new();
        cnn m;
        cnn_init(ctx, &m, 9);
        train(ctx, &m, x, y, 5);
        CHECK(rt_status(ctx) == 0);
        if (!run) {
            first = malloc(m.ps.n * sizeof(float));
            memcpy(first, m.ps.data, m.ps.n * sizeof(float));
        } else {
            CHECK(memcmp(first, m.ps.data, m.ps.n * sizeof(float)) == 0);
        }
        rt_params_free(&m.ps);
        rt_ctx_free(ctx);
    }
    free(first);
    free(x);
}
