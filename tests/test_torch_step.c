/* One whole training step against PyTorch: RepDistiller's resnet8 on a batch of 4 16x16 images,
 * training-mode forward, cross-entropy, backward. The fixtures (tools/make_step_fixture.py) hold
 * PyTorch's parameters and buffers, input, labels, logits, loss, every parameter gradient and the BN
 * running statistics after the step; Retort must match each to 1e-4 of the tensor's max magnitude.
 * Run from the repository root. */
#include "retort/retort.h"
#include "test.h"

#define STEP_FIXTURE "tests/fixtures/resnet8_step.safetensors"
#define GRAD_FIXTURE "tests/fixtures/resnet8_step_grads.safetensors"

/* Gradients are stored as int16 with a float scale per tensor (see the generator). */
static int get_grad(rt_ctx *ctx, const rt_safetensors *st, const char *name, float *dst, const rt_tensor *like) {
    char gname[300], sname[300];
    snprintf(gname, sizeof gname, "grad.%s", name);
    snprintf(sname, sizeof sname, "gscale.%s", name);
    const rt_st_entry *e = rt_st_find(st, gname);
    float scale;
    if (!e || strcmp(e->dtype, "I16") != 0 || rt_st_get_f32(ctx, st, sname, &scale, 0, NULL))
        return rt_fail(ctx, RT_EFORMAT, "%s: '%s' is missing or not I16, or its scale is missing", GRAD_FIXTURE, gname);
    int64_t n = 1;
    for (int d = 0; d < e->ndim; d++) n *= e->shape[d];
    if (e->ndim != like->ndim || n != rt_numel(like))
        return rt_fail(ctx, RT_ESHAPE, "%s: '%s' has the wrong shape", GRAD_FIXTURE, gname);
    const unsigned char *p = st->data + e->begin;
    for (int64_t i = 0; i < n; i++) {
        int16_t q = (int16_t)(uint16_t)(p[2 * i] | p[2 * i + 1] << 8); /* little-endian */
        dst[i] = (float)q * scale;
    }
    return RT_OK;
}

static double report(const char *what, const float *got, const float *want, int64_t n) {
    double e = rt_test_maxrel(got, want, (long)n);
    printf("  %-42s max diff %.3g (relative to max |value|)\n", what, e);
    return e;
}

TEST(resnet8_step_matches_pytorch) {
    rt_ctx *ctx = rt_ctx_new();
    rt_safetensors *st = NULL, *gst = NULL;
    CHECKF(rt_st_read(ctx, STEP_FIXTURE, &st) == 0 && rt_st_read(ctx, GRAD_FIXTURE, &gst) == 0, "%s", rt_errmsg(ctx));
    rt_model_opts o = {.in_channels = 3, .in_size = 16, .num_classes = 10};
    rt_model *m = rt_model_new(ctx, "resnet8", &o, 1);
    CHECKF(m, "%s", rt_errmsg(ctx));
    /* PyTorch's parameters and buffers into the model: every entry of both, by name and shape */
    int nparam_entries = 0;
    for (int i = 0; i < st->count; i++) nparam_entries += strncmp(st->entries[i].name, "param.", 6) == 0;
    CHECKF(nparam_entries == m->params.count, "fixture has %d param.* entries, the model %d", nparam_entries,
           m->params.count);
    for (int i = 0; i < m->params.count; i++) {
        rt_param *p = m->params.items[i];
        char name[300];
        snprintf(name, sizeof name, "param.%s", p->name);
        CHECKF(rt_st_get_f32(ctx, st, name, p->t.data, p->t.ndim, p->t.shape) == 0, "%s", rt_errmsg(ctx));
    }
    float *x = malloc(4 * 3 * 16 * 16 * sizeof(float)), y64[4], logits_ref[40], loss_ref;
    int32_t y[4];
    CHECKF(rt_st_get_f32(ctx, st, "x", x, 4, (int64_t[]){4, 3, 16, 16}) == 0 &&
               rt_st_get_f32(ctx, st, "y", y64, 1, (int64_t[]){4}) == 0 &&
               rt_st_get_f32(ctx, st, "logits", logits_ref, 2, (int64_t[]){4, 10}) == 0 &&
               rt_st_get_f32(ctx, st, "loss", &loss_ref, 0, NULL) == 0,
           "%s", rt_errmsg(ctx));
    for (int i = 0; i < 4; i++) y[i] = (int32_t)y64[i];

    /* the step */
    rt_model_train(m, 1);
    rt_params_zero_grad(&m->params);
    rt_tensor *xt = rt_wrap(ctx, x, 4, (int64_t[]){4, 3, 16, 16});
    rt_tensor *logits = rt_model_forward(ctx, m, xt, NULL);
    rt_tensor *loss = rt_cross_entropy(ctx, logits, y, 0, RT_MEAN);
    CHECKF(loss && rt_backward(ctx, loss) == 0, "%s", rt_errmsg(ctx));

    double worst = 0, e;
    printf("  %-42s %.9g vs PyTorch %.9g\n", "loss", loss->data[0], loss_ref);
    CHECK_CLOSE(loss->data[0], loss_ref, 1e-4);
    worst = fmax(worst, e = report("logits", logits->data, logits_ref, 40));
    CHECKF(e <= 1e-4, "logits differ by %g", e);
    for (int i = 0; i < m->params.count; i++) {
        rt_param *p = m->params.items[i];
        float *want = malloc(p->numel * sizeof(float));
        char name[300];
        if (p->kind == RT_PARAM) {
            CHECKF(get_grad(ctx, gst, p->name, want, &p->t) == 0, "%s", rt_errmsg(ctx));
            snprintf(name, sizeof name, "grad.%s", p->name);
            e = report(name, p->t.grad, want, (int64_t)p->numel);
        } else {
            snprintf(name, sizeof name, "after.%s", p->name);
            CHECKF(rt_st_get_f32(ctx, st, name, want, p->t.ndim, p->t.shape) == 0, "%s", rt_errmsg(ctx));
            e = report(name, p->t.data, want, (int64_t)p->numel);
        }
        free(want);
        worst = fmax(worst, e);
        CHECKF(e <= 1e-4, "%s differs by %g of its max magnitude", name, e);
    }
    printf("  worst: %.3g\n", worst);
    free(x);
    rt_model_free(m);
    rt_st_free(st);
    rt_st_free(gst);
    rt_ctx_free(ctx);
}
