/* rt_model_forward_keep: the same logits and taps as the ordinary forward (bitwise whole, to 1e-5
 * in chunks), the arena back at its mark afterwards, a step's arena peak the larger of the teacher's
 * and the student's instead of their sum, chunks that bound the teacher's own peak, and errors. */
#include "retort/retort.h"
#include "test.h"
#include "test_util.h"

#define B 6
#define HW 16
static const int64_t xshape[4] = {B, 3, HW, HW};
static const char *const keep[] = {"layer1", "layer2.pre", "pool"};

static rt_ctx *new_ctx(void) {
    unsetenv("RETORT_PROFILE");
    return rt_ctx_new();
}

static rt_model *model(rt_ctx *ctx, const char *arch, uint64_t seed) {
    rt_model *m = rt_model_new(ctx, arch, &(rt_model_opts){.in_channels = 3, .in_size = HW, .num_classes = 10}, seed);
    if (!m) return NULL;
    /* BN running statistics away from (0, 1), so eval mode does real work */
    for (int i = 0; i < m->params.count; i++) {
        rt_param *p = m->params.items[i];
        for (size_t k = 0; p->kind == RT_BUFFER && !p->is_int && k < p->numel; k++)
            p->t.data[k] = strstr(p->name, "running_var") ? 0.5f + 0.1f * (float)(k % 7) : 0.05f * (float)(k % 5);
    }
    rt_model_train(m, 0);
    return m;
}

static int same_bits(const rt_tensor *a, const rt_tensor *b) {
    if (!a || !b || !rt_same_shape(a, b) || !rt_is_contiguous(a) || !rt_is_contiguous(b)) return 0;
    return !memcmp(a->data, b->data, (size_t)rt_numel(a) * sizeof(float));
}

TEST(keep_matches_the_ordinary_forward) {
    rt_ctx *ctx = new_ctx();
    rt_model *m = model(ctx, "resnet8", 5);
    CHECK(m);
    float *x = malloc(B * 3 * HW * HW * sizeof(float));
    rt_test_fill_normal(x, B * 3 * HW * HW, 9);
    rt_tensor *xt = rt_wrap(ctx, x, 4, xshape);
    rt_set_grad_enabled(ctx, 0);
    rt_taps ref = {0};
    rt_tensor *lref = rt_model_forward(ctx, m, xt, &ref);
    rt_set_grad_enabled(ctx, 1);
    CHECK(lref);

    /* the whole batch: bitwise the same; the arena is back where it was; grad mode restored */
    rt_keep_buf buf = {0};
    rt_taps out = {0};
    size_t used = rt_arena_used(ctx);
    rt_tensor *l = rt_model_forward_keep(ctx, m, xt, keep, 3, &out, &buf);
    CHECK(l && rt_status(ctx) == RT_OK);
    CHECK(rt_arena_used(ctx) == used && rt_grad_enabled(ctx));
    CHECK(same_bits(l, lref) && !l->requires_grad && !l->node);
    CHECK(out.n == 3);
    for (int i = 0; i < 3; i++) CHECK(!strcmp(out.name[i], keep[i]) && same_bits(out.t[i], rt_taps_get(&ref, keep[i])));

    /* chunks of 4 (6 = 4 + 2) and of 1, into the same buffer */
    for (int64_t chunk = 4; chunk >= 1; chunk -= 3) {
        buf.chunk = chunk;
        rt_taps oc = {0};
        l = rt_model_forward_keep(ctx, m, xt, keep, 3, &oc, &buf);
        CHECK(l && rt_same_shape(l, lref) && rt_arena_used(ctx) == used);
        CHECK(rt_test_maxrel(l->data, lref->data, (long)rt_numel(l)) <= 1e-5);
        for (int i = 0; i < 3; i++) {
            const rt_tensor *a = rt_taps_get(&oc, keep[i]), *b = rt_taps_get(&ref, keep[i]);
            CHECK(a && rt_same_shape(a, b));
            CHECKF(rt_test_maxrel(a->data, b->data, (long)rt_numel(a)) <= 1e-5, "tap %s, chunk %lld", keep[i],
                   (long long)chunk);
        }
    }

    /* the kept tensors survive the step reset and the arena's reuse */
    float saved[B * 10];
    CHECK(rt_numel(l) == B * 10);
    memcpy(saved, l->data, sizeof saved);
    rt_step_reset(ctx);
    xt = rt_wrap(ctx, x, 4, xshape);
    for (int i = 0; i < 2; i++) CHECK(rt_model_forward(ctx, m, xt, NULL));
    CHECK(!memcmp(saved, l->data, sizeof saved));

    /* nothing but the logits when nothing is asked */
    buf.chunk = 0;
    rt_tensor *l0 = rt_model_forward_keep(ctx, m, xt, NULL, 0, NULL, &buf);
    CHECK(l0 && l0->shape[0] == B && l0->shape[1] == 10);
    rt_keep_buf_free(&buf);
    CHECK(!buf.data && !buf.cap);
    free(x);
    rt_model_free(m);
    rt_ctx_free(ctx);
}

/* Arena high-water of: a teacher forward (ordinary or kept, chunk) then, if student, the student's
 * forward and backward. */
static size_t step_highwater(rt_model *t, rt_model *s, const float *x, int kept, int64_t chunk) {
    rt_ctx *ctx = new_ctx();
    rt_tensor *xt = rt_wrap(ctx, (float *)x, 4, xshape);
    rt_keep_buf buf = {.chunk = chunk};
    rt_taps tt = {0};
    if (t && kept)
        rt_model_forward_keep(ctx, t, xt, keep, 3, &tt, &buf);
    else if (t) {
        rt_set_grad_enabled(ctx, 0);
        rt_model_forward(ctx, t, xt, &tt);
        rt_set_grad_enabled(ctx, 1);
    }
    if (s) {
        rt_tensor *y = rt_model_forward(ctx, s, xt, NULL);
        rt_backward(ctx, rt_mean_all(ctx, y));
    }
    size_t hw = rt_status(ctx) ? 0 : rt_arena_highwater(ctx);
    rt_keep_buf_free(&buf);
    rt_ctx_free(ctx);
    return hw;
}

TEST(keep_lowers_the_arena_peak) {
    rt_ctx *ctx = new_ctx();
    /* a WRN teacher: a CIFAR ResNet's eval forward already releases its stages' intermediates
     * (resnet_stage_slices_same_bits in test_fused.c), so its ordinary forward leaves little more
     * than its taps */
    rt_model *t = model(ctx, "wrn_16_2", 1), *s = model(ctx, "resnet8", 2);
    CHECK(t && s);
    rt_model_train(s, 1);
    float *x = malloc(B * 3 * HW * HW * sizeof(float));
    rt_test_fill_normal(x, B * 3 * HW * HW, 4);
    size_t teacher = step_highwater(t, NULL, x, 0, 0), student = step_highwater(NULL, s, x, 0, 0);
    size_t plain = step_highwater(t, s, x, 0, 0), kept = step_highwater(t, s, x, 1, 0);
    size_t chunked = step_highwater(t, NULL, x, 1, 2);
    CHECK(teacher && student && plain && kept && chunked);
    /* ordinary: the teacher's activations stay under the student's; kept: the larger of the two */
    CHECKF(plain >= teacher + student - (1 << 16), "plain %zu, teacher %zu, student %zu", plain, teacher, student);
    size_t larger = teacher > student ? teacher : student;
    CHECKF(kept <= larger + (1 << 16) && kept < plain * 3 / 4, "kept %zu, plain %zu, larger %zu", kept, plain, larger);
    /* chunks of 2 of 6: about a third of the whole batch's forward */
    CHECKF(chunked < teacher / 2, "chunked %zu, whole %zu", chunked, teacher);
    free(x);
    rt_model_free(t);
    rt_model_free(s);
    rt_ctx_free(ctx);
}

TEST(keep_errors) {
    rt_ctx *ctx = new_ctx();
    rt_model *m = model(ctx, "resnet8", 5);
    CHECK(m);
    float *x = calloc(B * 3 * HW * HW, sizeof(float));
    rt_tensor *xt = rt_wrap(ctx, x, 4, xshape);
    rt_keep_buf buf = {0};
    rt_taps out = {0};
    size_t used = rt_arena_used(ctx);

    const char *bad[] = {"layer1", "layer9"};
    CHECK(!rt_model_forward_keep(ctx, m, xt, bad, 2, &out, &buf));
    CHECK(rt_status(ctx) == RT_EINVAL && strstr(rt_errmsg(ctx), "no tap 'layer9'") &&
          strstr(rt_errmsg(ctx), "layer2.pre"));
    CHECK(out.n == 0 && rt_arena_used(ctx) == used && rt_grad_enabled(ctx));
    rt_clear_error(ctx);

    /* chunks need eval mode; the whole batch in training mode is fine */
    rt_model_train(m, 1);
    buf.chunk = 2;
    CHECK(!rt_model_forward_keep(ctx, m, xt, keep, 3, &out, &buf));
    CHECK(rt_status(ctx) == RT_EINVAL && strstr(rt_errmsg(ctx), "eval mode"));
    rt_clear_error(ctx);
    buf.chunk = 0;
    CHECK(rt_model_forward_keep(ctx, m, xt, keep, 3, &out, &buf) && rt_grad_enabled(ctx));

    CHECK(!rt_model_forward_keep(ctx, m, xt, keep, 3, NULL, &buf) && rt_status(ctx) == RT_EINVAL);
    rt_clear_error(ctx);
    CHECK(!rt_model_forward_keep(ctx, m, NULL, keep, 3, &out, &buf) && rt_status(ctx) == RT_EINVAL);
    rt_clear_error(ctx);
    rt_keep_buf_free(&buf);
    free(x);
    rt_model_free(m);
    rt_ctx_free(ctx);
}

/* A forward given rt_taps.want builds only the wanted taps, and everything else comes out bitwise
 * the same: the logits, the wanted taps and, in training mode, every parameter gradient (models then
 * take the fused stage end instead of building the pre-activation). In eval mode without a graph
 * the fused ends run in place: a wanted stage output must survive them. */
TEST(taps_want_skips_unwanted_preacts) {
    static const char *const archs[] = {"resnet8", "wrn_16_1", "ShuffleV1", "ShuffleV2"};
    static const char *const want[] = {"layer2", "layer3"};
    for (size_t a = 0; a < sizeof archs / sizeof archs[0]; a++)
        for (int train = 0; train < 2; train++) {
            rt_ctx *ctx = new_ctx();
            rt_model *m = model(ctx, archs[a], 3);
            CHECKF(m, "%s: %s", archs[a], rt_errmsg(ctx));
            rt_model_train(m, train);
            rt_set_grad_enabled(ctx, train);
            float *x = malloc(B * 3 * HW * HW * sizeof(float));
            rt_test_fill_normal(x, B * 3 * HW * HW, 11);
            rt_tensor *xt = rt_wrap(ctx, x, 4, xshape);
            float *g[2] = {NULL, NULL};
            rt_tensor *l[2], *t[2][2];
            rt_taps tp[2] = {{0}, {.want = want, .nwant = 2}};
            for (int k = 0; k < 2; k++) {
                l[k] = rt_model_forward(ctx, m, xt, &tp[k]);
                CHECKF(l[k], "%s: %s", archs[a], rt_errmsg(ctx));
                for (int i = 0; i < 2; i++) t[k][i] = rt_taps_get(&tp[k], want[i]);
                if (!train) continue;
                rt_params_zero_grad(&m->params);
                rt_tensor *s = rt_add(ctx, rt_sum_all(ctx, l[k]), rt_mean_all(ctx, t[k][0]));
                CHECK(rt_backward(ctx, s) == 0);
                g[k] = malloc(m->params.n * sizeof(float));
                memcpy(g[k], m->params.grad, m->params.n * sizeof(float));
            }
            CHECKF(same_bits(l[0], l[1]), "%s train %d: logits", archs[a], train);
            for (int i = 0; i < 2; i++) CHECKF(same_bits(t[0][i], t[1][i]), "%s: tap %s", archs[a], want[i]);
            CHECKF(rt_taps_get(&tp[0], "layer2.pre") && !rt_taps_get(&tp[1], "layer2.pre"), "%s", archs[a]);
            if (train) CHECKF(!memcmp(g[0], g[1], m->params.n * sizeof(float)), "%s: gradients", archs[a]);
            free(g[0]), free(g[1]), free(x);
            rt_model_free(m);
            rt_ctx_free(ctx);
        }
}
