/* Distillation losses: values and student gradients against PyTorch (tests/fixtures/kd_fixture.h,
 * from tools/make_kd_fixture.py), finite-difference checks of every loss (student inputs, teacher
 * inputs for KD, AT and SP, VID's parameters), reductions, and shape errors. CRD: tests/test_kd_crd.c. */
#include "fixtures/kd_fixture.h"
#include "retort/kd.h"
#include "retort/retort.h"
#include "test.h"
#include "test_util.h"

#define NELEM(a) ((int64_t)(sizeof(a) / sizeof((a)[0])))

/* |a - b| <= tol * |b| (relative to the reference), with a floor for values that are ~0. */
static int rel_ok(double a, double b, double tol) { return fabs(a - b) <= tol * fmax(fabs(b), 1e-6); }

#define CHECK_REL(a, b, tol)                                                                                           \
    CHECKF(rel_ok((a), (b), (tol)), "%s = %.9g, %s = %.9g (rel %.3g)", #a, (double)(a), #b, (double)(b),               \
           fabs((a) - (b)) / fmax(fabs(b), 1e-6))
#define CHECK_ARR(a, b, n, tol)                                                                                        \
    do {                                                                                                               \
        double e_ = rt_test_maxrel_ref((a), (b), (n));                                                                 \
        CHECKF(e_ <= (tol), "%s vs %s: max rel error %.3g", #a, #b, e_);                                               \
    } while (0)

/* Checks a loss output against the fixture's mean (scalar) or per-sample values. */
static int close_to(const rt_tensor *y, const double *ref, int64_t n) {
    if (!y || rt_numel(y) != n) return 0;
    for (int64_t i = 0; i < n; i++)
        if (!rel_ok(y->data[i], ref[i], 1e-5)) {
            printf("  value %lld: %.9g vs reference %.9g\n", (long long)i, (double)y->data[i], ref[i]);
            return 0;
        }
    return 1;
}

/* ---- PyTorch fixture: logits ---- */

TEST(fixture_logit_losses) {
    rt_ctx *ctx = rt_ctx_new();
    rt_tensor *s = rt_test_tensor_from(kdfx_s_logits, 2, (int64_t[]){4, 10}, 1),
              *t = rt_test_tensor_from(kdfx_t_logits, 2, (int64_t[]){4, 10}, 1);
    rt_tensor *kd = rt_kd_soft_target(ctx, s, t, 4.0f, RT_MEAN);
    CHECKF(close_to(kd, kdfx_kd_mean, 1), "kd mean %s", rt_errmsg(ctx));
    CHECK(kd->ndim == 0);
    CHECK(rt_backward(ctx, kd) == 0);
    CHECK_ARR(s->grad, kdfx_kd_grad_s, 40, 1e-5);
    CHECK_ARR(t->grad, kdfx_kd_grad_t, 40, 1e-5); /* a teacher that requires grad gets its gradient */
    rt_tensor *kdn = rt_kd_soft_target(ctx, s, t, 4.0f, RT_NONE);
    CHECK(kdn && kdn->ndim == 1 && kdn->shape[0] == 4);
    CHECK(close_to(kdn, kdfx_kd_none, 4));
    CHECK(close_to(rt_kd_l2_logit(ctx, s, t, RT_MEAN), kdfx_l2_mean, 1));
    CHECK(close_to(rt_kd_l2_logit(ctx, s, t, RT_NONE), kdfx_l2_none, 4));

    memset(s->grad, 0, 40 * sizeof(float));
    rt_tensor *dkd = rt_kd_dkd(ctx, s, rt_detach(ctx, t), kdfx_labels, 1.0f, 8.0f, 4.0f, RT_MEAN);
    CHECKF(close_to(dkd, kdfx_dkd_mean, 1), "dkd %s", rt_errmsg(ctx));
    CHECK(rt_backward(ctx, dkd) == 0);
    CHECK_ARR(s->grad, kdfx_dkd_grad_s, 40, 1e-5);
    CHECK(close_to(rt_kd_dkd(ctx, s, t, kdfx_labels, 1.0f, 8.0f, 4.0f, RT_NONE), kdfx_dkd_none, 4));
    rt_test_tensor_free(s);
    rt_test_tensor_free(t);
    rt_ctx_free(ctx);
}

/* ---- PyTorch fixture: feature maps ---- */

TEST(fixture_feature_losses) {
    rt_ctx *ctx = rt_ctx_new();
    rt_tensor *fs = rt_test_tensor_from(kdfx_fs, 4, (int64_t[]){2, 4, 6, 6}, 1),
              *ft = rt_test_tensor_from(kdfx_ft, 4, (int64_t[]){2, 6, 3, 3}, 1);
    rt_tensor *same = rt_test_tensor_from(kdfx_ft_same, 4, (int64_t[]){2, 4, 6, 6}, 0);
    rt_tensor *small = rt_test_tensor_from(kdfx_ft_small, 4, (int64_t[]){2, 4, 3, 3}, 0);

    rt_tensor *at = rt_kd_at(ctx, fs, ft, RT_MEAN);
    CHECKF(close_to(at, kdfx_at_mean, 1), "at %s", rt_errmsg(ctx));
    CHECK(rt_backward(ctx, at) == 0);
    CHECK_ARR(fs->grad, kdfx_at_grad_s, 288, 1e-5);
    CHECK_ARR(ft->grad, kdfx_at_grad_t, 108, 1e-5);
    CHECK(close_to(rt_kd_at(ctx, fs, ft, RT_NONE), kdfx_at_none, 2));

    memset(fs->grad, 0, 288 * sizeof(float));
    rt_tensor *nst = rt_kd_nst(ctx, fs, rt_detach(ctx, ft), RT_MEAN);
    CHECKF(close_to(nst, kdfx_nst_mean, 1), "nst %s", rt_errmsg(ctx));
    CHECK(rt_backward(ctx, nst) == 0);
    CHECK_ARR(fs->grad, kdfx_nst_grad_s, 288, 1e-5);
    CHECK(close_to(rt_kd_nst(ctx, fs, ft, RT_NONE), kdfx_nst_none, 2));

    CHECK(close_to(rt_kd_fitnet(ctx, fs, same, RT_MEAN), kdfx_fitnet_mean, 1));
    CHECK(close_to(rt_kd_fitnet(ctx, fs, same, RT_NONE), kdfx_fitnet_none, 2));
    CHECK(close_to(rt_kd_feature_mse(ctx, fs, small, RT_MEAN), kdfx_fmse_mean, 1));
    CHECK(close_to(rt_kd_feature_mse(ctx, fs, small, RT_NONE), kdfx_fmse_none, 2));

    memset(fs->grad, 0, 288 * sizeof(float));
    rt_tensor *hcl = rt_kd_hcl(ctx, fs, same, RT_MEAN);
    CHECKF(close_to(hcl, kdfx_hcl_mean, 1), "hcl %s", rt_errmsg(ctx));
    CHECK(rt_backward(ctx, hcl) == 0);
    CHECK_ARR(fs->grad, kdfx_hcl_grad_s, 288, 1e-5);
    CHECK(close_to(rt_kd_hcl(ctx, fs, same, RT_NONE), kdfx_hcl_none, 2));

    rt_tensor *s_hi = rt_test_tensor_from(kdfx_s_hi, 4, (int64_t[]){2, 5, 3, 3}, 0);
    rt_tensor *t_lo = rt_test_tensor_from(kdfx_t_lo, 4, (int64_t[]){2, 4, 4, 4}, 0),
              *t_hi = rt_test_tensor_from(kdfx_t_hi, 4, (int64_t[]){2, 5, 4, 4}, 0);
    memset(fs->grad, 0, 288 * sizeof(float));
    rt_tensor *fsp = rt_kd_fsp(ctx, fs, s_hi, t_lo, t_hi, RT_MEAN);
    CHECKF(close_to(fsp, kdfx_fsp_mean, 1), "fsp %s", rt_errmsg(ctx));
    CHECK(rt_backward(ctx, fsp) == 0);
    CHECK_ARR(fs->grad, kdfx_fsp_grad_s, 288, 1e-5);
    CHECK(close_to(rt_kd_fsp(ctx, fs, s_hi, t_lo, t_hi, RT_NONE), kdfx_fsp_none, 2));
    rt_tensor *ls[] = {fs, ft, same, small, s_hi, t_lo, t_hi};
    for (size_t i = 0; i < sizeof ls / sizeof ls[0]; i++) rt_test_tensor_free(ls[i]);
    rt_ctx_free(ctx);
}

static void copy_param(rt_paramset *ps, const char *name, const float *src, int64_t n) {
    rt_param *p = rt_params_find(ps, name);
    RT_ASSERT(p && (int64_t)p->numel == n);
    memcpy(p->t.data, src, (size_t)n * sizeof(float));
}

TEST(fixture_vid) {
    rt_ctx *ctx = rt_ctx_new();
    rt_paramset ps;
    rt_params_init(&ps);
    rt_kd_vid *vid = rt_kd_vid_new(ctx, &ps, "vid0", 4, 6, 6, 5.0f);
    CHECKF(vid && rt_params_finalize(ctx, &ps) == 0, "%s", rt_errmsg(ctx));
    /* PyTorch's state_dict names */
    CHECK(rt_params_find(&ps, "vid0.regressor.0.weight") && rt_params_find(&ps, "vid0.regressor.2.weight") &&
          rt_params_find(&ps, "vid0.regressor.4.weight") && rt_params_find(&ps, "vid0.log_scale") && ps.count == 4);
    copy_param(&ps, "vid0.regressor.0.weight", kdfx_vid_w0, 24);
    copy_param(&ps, "vid0.regressor.2.weight", kdfx_vid_w2, 36);
    copy_param(&ps, "vid0.regressor.4.weight", kdfx_vid_w4, 36);
    copy_param(&ps, "vid0.log_scale", kdfx_vid_log_scale, 6);
    rt_tensor *fs = rt_test_tensor_from(kdfx_fs, 4, (int64_t[]){2, 4, 6, 6}, 1),
              *ft = rt_test_tensor_from(kdfx_ft, 4, (int64_t[]){2, 6, 3, 3}, 0);
    rt_tensor *l = rt_kd_vid_loss(ctx, vid, fs, ft, RT_MEAN);
    CHECKF(close_to(l, kdfx_vid_mean, 1), "vid %s", rt_errmsg(ctx));
    CHECK(rt_backward(ctx, l) == 0);
    CHECK_ARR(fs->grad, kdfx_vid_grad_s, 288, 1e-5);
    CHECK_ARR(rt_params_find(&ps, "vid0.regressor.0.weight")->t.grad, kdfx_vid_grad_w0, 24, 1e-5);
    CHECK_ARR(vid->log_scale->grad, kdfx_vid_grad_log_scale, 6, 1e-5);
    CHECK(close_to(rt_kd_vid_loss(ctx, vid, fs, ft, RT_NONE), kdfx_vid_none, 2));
    /* init: the variance starts at init_var */
    rt_rng rng;
    rt_rng_seed(&rng, 3);
    rt_kd_vid_init(vid, &rng);
    double var = log1p(exp((double)vid->log_scale->data[5])) + 1e-5;
    CHECK_CLOSE(var, 5.0, 1e-6);
    rt_test_tensor_free(fs);
    rt_test_tensor_free(ft);
    rt_kd_vid_free(vid);
    rt_params_free(&ps);
    rt_ctx_free(ctx);
}

/* ---- PyTorch fixture: relations ---- */

TEST(fixture_relation_losses) {
    rt_ctx *ctx = rt_ctx_new();
    rt_tensor *es = rt_test_tensor_from(kdfx_es, 2, (int64_t[]){5, 7}, 1),
              *et = rt_test_tensor_from(kdfx_et, 2, (int64_t[]){5, 9}, 1);
    rt_tensor *sp = rt_kd_sp(ctx, es, et);
    CHECKF(close_to(sp, kdfx_sp, 1), "sp %s", rt_errmsg(ctx));
    CHECK(rt_backward(ctx, sp) == 0);
    CHECK_ARR(es->grad, kdfx_sp_grad_s, 35, 1e-5);
    CHECK_ARR(et->grad, kdfx_sp_grad_t, 45, 1e-5);

    struct {
        const char *name;
        rt_tensor *y;
        const double *val, *grad;
    } cases[] = {
        {"rkd", rt_kd_rkd(ctx, es, rt_detach(ctx, et), 25.0f, 50.0f), kdfx_rkd, kdfx_rkd_grad_s},
        {"pkt", rt_kd_pkt(ctx, es, rt_detach(ctx, et)), kdfx_pkt, kdfx_pkt_grad_s},
        {"cc", rt_kd_cc(ctx, es, rt_detach(ctx, et), 0.4f, 2), kdfx_cc, kdfx_cc_grad_s},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECKF(close_to(cases[i].y, cases[i].val, 1), "%s: %s", cases[i].name, rt_errmsg(ctx));
        memset(es->grad, 0, 35 * sizeof(float));
        CHECK(rt_backward(ctx, cases[i].y) == 0);
        double e = rt_test_maxrel_ref(es->grad, cases[i].grad, 35);
        CHECKF(e <= 1e-5, "%s: student gradient max rel error %.3g", cases[i].name, e);
    }
    rt_test_tensor_free(es);
    rt_test_tensor_free(et);
    rt_ctx_free(ctx);
}

/* ---- finite differences ---- */

typedef struct {
    int which;
    rt_reduction red;
    rt_kd_vid *vid;
} gc_args;

enum { L_KD, L_L2, L_DKD, L_FITNET, L_FMSE, L_AT, L_NST, L_HCL, L_FSP, L_VID, L_SP, L_RKD, L_PKT, L_CC, L_COUNT };
static const char *const gc_names[L_COUNT] = {"kd",  "l2",  "dkd", "fitnet", "feature_mse", "at",  "nst",
                                              "hcl", "fsp", "vid", "sp",     "rkd",         "pkt", "cc"};
static const int32_t gc_labels[3] = {2, 0, 4};

static rt_tensor *gc_loss(rt_ctx *ctx, rt_tensor **in, void *user) {
    gc_args *a = user;
    switch (a->which) {
    case L_KD:
        return rt_kd_soft_target(ctx, in[0], in[1], 2.0f, a->red);
    case L_L2:
        return rt_kd_l2_logit(ctx, in[0], in[1], a->red);
    case L_DKD:
        return rt_kd_dkd(ctx, in[0], in[1], gc_labels, 1.0f, 8.0f, 2.0f, a->red);
    case L_FITNET:
        return rt_kd_fitnet(ctx, in[0], in[1], a->red);
    case L_FMSE:
        return rt_kd_feature_mse(ctx, in[0], in[1], a->red);
    case L_AT:
        return rt_kd_at(ctx, in[0], in[1], a->red);
    case L_NST:
        return rt_kd_nst(ctx, in[0], in[1], a->red);
    case L_HCL:
        return rt_kd_hcl(ctx, in[0], in[1], a->red);
    case L_FSP:
        return rt_kd_fsp(ctx, in[0], in[2], in[1], in[3], a->red);
    case L_VID:
        return rt_kd_vid_loss(ctx, a->vid, in[0], in[1], a->red);
    case L_SP:
        return rt_kd_sp(ctx, in[0], in[1]);
    case L_RKD:
        return rt_kd_rkd(ctx, in[0], in[1], 25.0f, 50.0f);
    case L_PKT:
        return rt_kd_pkt(ctx, in[0], in[1]);
    case L_CC:
        return rt_kd_cc(ctx, in[0], in[1], 0.4f, 2);
    }
    return NULL;
}

/* Gradient check of loss `which` with student s and teacher t (teacher_grad: t requires grad too),
 * for each reduction it has. */
static int gradcheck_loss(rt_ctx *ctx, int which, rt_tensor **in, int n, int per_sample, char *rep) {
    rt_reduction reds[2] = {RT_MEAN, RT_NONE};
    /* NST's value (~0.5) is large next to its per-element gradients (~1e-3), so central differences
     * at the default step are limited by the float32 resolution of the loss (the error falls from
     * 1.1% to 0.1% as the step grows from 1e-3 to 1e-2); the loss is smooth, so use the larger step */
    rt_gradcheck_opts o = {which == L_NST ? 1e-2 : 0, 0, 0, 0};
    for (int r = 0; r < (per_sample ? 2 : 1); r++) {
        gc_args a = {which, reds[r], NULL};
        if (rt_gradcheck(ctx, gc_loss, &a, n, in, &o, rep)) {
            char b[512];
            snprintf(b, sizeof b, "%s (%s): %s / %s", gc_names[which], r ? "none" : "mean", rep, rt_errmsg(ctx));
            memcpy(rep, b, 512);
            return 1;
        }
    }
    return 0;
}

TEST(gradcheck_logit_losses) {
    rt_ctx *ctx = rt_ctx_new();
    char rep[512];
    for (int w = L_KD; w <= L_DKD; w++) {
        /* the teacher requires grad for KD (online distillation); DKD and l2 check the student only */
        rt_tensor *in[2] = {rt_test_tensor(2, (int64_t[]){3, 5}, 10 + w, 1),
                            rt_test_tensor(2, (int64_t[]){3, 5}, 20 + w, w == L_KD)};
        for (int64_t i = 0; i < 15; i++) in[0]->data[i] *= 2.0f, in[1]->data[i] *= 2.0f;
        CHECKF(gradcheck_loss(ctx, w, in, 2, 1, rep) == 0, "%s", rep);
        rt_test_tensor_free(in[0]);
        rt_test_tensor_free(in[1]);
    }
    rt_ctx_free(ctx);
}

TEST(gradcheck_feature_losses) {
    rt_ctx *ctx = rt_ctx_new();
    char rep[512];
    static const int64_t s_shape[4] = {2, 3, 4, 4}, t_small[4] = {2, 5, 2, 2}, t_same[4] = {2, 3, 4, 4},
                         t_pool[4] = {2, 3, 2, 2}, t_big[4] = {2, 5, 5, 3};
    struct {
        int which;
        const int64_t *t_shape;
        int teacher_grad;
    } cases[] = {
        {L_FITNET, t_same, 0}, {L_FMSE, t_pool, 0}, {L_AT, t_small, 1}, {L_AT, t_big, 0},
        {L_NST, t_small, 0},   {L_NST, t_big, 1},   {L_HCL, t_same, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rt_tensor *in[2] = {rt_test_tensor(4, s_shape, 30 + i, 1),
                            rt_test_tensor(4, cases[i].t_shape, 40 + i, cases[i].teacher_grad)};
        CHECKF(gradcheck_loss(ctx, cases[i].which, in, 2, 1, rep) == 0, "case %zu: %s", i, rep);
        rt_test_tensor_free(in[0]);
        rt_test_tensor_free(in[1]);
    }
    /* FSP: student (lo, hi) at different sizes, teacher pair at another size */
    rt_tensor *f[4] = {
        rt_test_tensor(4, (int64_t[]){2, 3, 4, 4}, 50, 1), rt_test_tensor(4, (int64_t[]){2, 3, 2, 2}, 51, 0),
        rt_test_tensor(4, (int64_t[]){2, 2, 2, 2}, 52, 1), rt_test_tensor(4, (int64_t[]){2, 2, 2, 2}, 53, 0)};
    CHECKF(gradcheck_loss(ctx, L_FSP, f, 4, 1, rep) == 0, "%s", rep);
    for (int i = 0; i < 4; i++) rt_test_tensor_free(f[i]);
    rt_ctx_free(ctx);
}

TEST(gradcheck_vid_with_parameters) {
    rt_ctx *ctx = rt_ctx_new();
    rt_paramset ps;
    rt_params_init(&ps);
    rt_kd_vid *vid = rt_kd_vid_new(ctx, &ps, "", 3, 4, 5, 5.0f);
    CHECKF(vid && rt_params_finalize(ctx, &ps) == 0, "%s", rt_errmsg(ctx));
    CHECK(rt_params_find(&ps, "regressor.0.weight") && rt_params_find(&ps, "log_scale"));
    rt_rng rng;
    rt_rng_seed(&rng, 7);
    rt_kd_vid_init(vid, &rng);
    /* variances around 1 and a teacher of the regressor's scale keep the loss small next to its
     * gradients, so central differences resolve them in float32 */
    for (int i = 0; i < 5; i++) vid->log_scale->data[i] = 0.2f + 0.15f * i;
    rt_tensor *in[2 + 4] = {rt_test_tensor(4, (int64_t[]){2, 3, 4, 4}, 60, 1),
                            rt_test_tensor(4, (int64_t[]){2, 5, 2, 2}, 61, 0)};
    for (int i = 0; i < 40; i++) in[1]->data[i] *= 0.3f;
    for (int i = 0; i < ps.count; i++) in[2 + i] = &ps.items[i]->t;
    gc_args a = {L_VID, RT_MEAN, vid};
    char rep[512];
    CHECKF(rt_gradcheck(ctx, gc_loss, &a, 6, in, NULL, rep) == 0, "%s / %s", rep, rt_errmsg(ctx));
    a.red = RT_NONE;
    CHECKF(rt_gradcheck(ctx, gc_loss, &a, 6, in, NULL, rep) == 0, "none: %s / %s", rep, rt_errmsg(ctx));
    rt_test_tensor_free(in[0]);
    rt_test_tensor_free(in[1]);
    rt_kd_vid_free(vid);
    rt_params_free(&ps);
    rt_ctx_free(ctx);
}

TEST(gradcheck_relation_losses) {
    rt_ctx *ctx = rt_ctx_new();
    char rep[512];
    for (int w = L_SP; w <= L_CC; w++) {
        /* SP's teacher requires grad too; 4-D student features are flattened */
        rt_tensor *in[2] = {rt_test_tensor(4, (int64_t[]){4, 2, 3, 1}, 70 + w, 1),
                            rt_test_tensor(2, (int64_t[]){4, 5}, 80 + w, w == L_SP)};
        CHECKF(gradcheck_loss(ctx, w, in, 2, 0, rep) == 0, "%s", rep);
        rt_test_tensor_free(in[0]);
        rt_test_tensor_free(in[1]);
    }
    rt_ctx_free(ctx);
}

/* ---- reductions, shapes, errors ---- */

TEST(reductions_agree) {
    rt_ctx *ctx = rt_ctx_new();
    rt_tensor *s = rt_test_tensor(4, (int64_t[]){3, 4, 6, 6}, 90, 0),
              *t = rt_test_tensor(4, (int64_t[]){3, 2, 3, 3}, 91, 0);
    rt_tensor *sl = rt_test_tensor(2, (int64_t[]){3, 6}, 92, 0), *tl = rt_test_tensor(2, (int64_t[]){3, 6}, 93, 0);
    static const int32_t labels[3] = {1, 5, 0};
    for (int w = 0; w < 5; w++) {
        rt_tensor *y[3];
        rt_reduction reds[3] = {RT_MEAN, RT_SUM, RT_NONE};
        for (int r = 0; r < 3; r++) {
            switch (w) {
            case 0:
                y[r] = rt_kd_soft_target(ctx, sl, tl, 3.0f, reds[r]);
                break;
            case 1:
                y[r] = rt_kd_dkd(ctx, sl, tl, labels, 1.0f, 8.0f, 4.0f, reds[r]);
                break;
            case 2:
                y[r] = rt_kd_at(ctx, s, t, reds[r]);
                break;
            case 3:
                y[r] = rt_kd_nst(ctx, s, t, reds[r]);
                break;
            default:
                y[r] = rt_kd_l2_logit(ctx, sl, tl, reds[r]);
                break;
            }
        }
        CHECKF(y[0] && y[1] && y[2], "%d: %s", w, rt_errmsg(ctx));
        CHECK(y[0]->ndim == 0 && y[1]->ndim == 0 && y[2]->ndim == 1 && y[2]->shape[0] == 3);
        double sum = 0;
        for (int i = 0; i < 3; i++) sum += y[2]->data[i];
        CHECK_CLOSE(y[1]->data[0], sum, 1e-6);
        CHECK_CLOSE(y[0]->data[0], sum / 3, 1e-6);
        CHECK(y[2]->data[0] > 0);
    }
    /* identical student and teacher: every loss is 0 */
    CHECK_CLOSE(rt_kd_at(ctx, s, s, RT_MEAN)->data[0], 0, 1e-7);
    CHECK_CLOSE(rt_kd_nst(ctx, s, s, RT_MEAN)->data[0], 0, 1e-6);
    CHECK_CLOSE(rt_kd_sp(ctx, sl, sl)->data[0], 0, 1e-7);
    CHECK_CLOSE(rt_kd_rkd(ctx, sl, sl, 25, 50)->data[0], 0, 1e-6);
    CHECK_CLOSE(rt_kd_pkt(ctx, sl, sl)->data[0], 0, 1e-7);
    CHECK_CLOSE(rt_kd_cc(ctx, sl, sl, 0.4f, 2)->data[0], 0, 1e-7);
    CHECK_CLOSE(rt_kd_soft_target(ctx, sl, sl, 4, RT_MEAN)->data[0], 0, 1e-6);
    CHECK_CLOSE(rt_kd_dkd(ctx, sl, sl, labels, 1, 8, 4, RT_MEAN)->data[0], 0, 1e-5);
    /* RKD's terms separately sum to the whole */
    double d = rt_kd_rkd(ctx, sl, tl, 25, 0)->data[0], an = rt_kd_rkd(ctx, sl, tl, 0, 50)->data[0];
    CHECK_CLOSE(rt_kd_rkd(ctx, sl, tl, 25, 50)->data[0], d + an, 1e-6);
    CHECK(d > 0 && an > 0);
    CHECK(rt_status(ctx) == 0);
    rt_test_tensor_free(s);
    rt_test_tensor_free(t);
    rt_test_tensor_free(sl);
    rt_test_tensor_free(tl);
    rt_ctx_free(ctx);
}

/* The error is set, is a shape error (or code), and names the loss and every listed fragment. */
static int error_says(rt_ctx *ctx, rt_tensor *y, int code, const char *a, const char *b, const char *c) {
    const char *m = rt_errmsg(ctx);
    int ok = !y && rt_status(ctx) == code && strstr(m, a) && (!b || strstr(m, b)) && (!c || strstr(m, c));
    if (!ok) printf("  got status %d, message '%s'\n", rt_status(ctx), m);
    rt_clear_error(ctx);
    return ok;
}

TEST(shape_errors_name_loss_and_shapes) {
    rt_ctx *ctx = rt_ctx_new();
    rt_tensor *s = rt_test_tensor(4, (int64_t[]){8, 16, 8, 8}, 1, 0),
              *t = rt_test_tensor(4, (int64_t[]){8, 64, 4, 4}, 2, 0);
    rt_tensor *t4 = rt_test_tensor(4, (int64_t[]){4, 64, 8, 8}, 3, 0);
    /* AT and NST pool and accept different channel counts */
    CHECKF(rt_kd_at(ctx, s, t, RT_MEAN) && rt_kd_nst(ctx, s, t, RT_NONE), "%s", rt_errmsg(ctx));
    CHECK(error_says(ctx, rt_kd_nst(ctx, s, t4, RT_MEAN), RT_ESHAPE, "nst:", "(8,16,8,8)", "(4,64,8,8)"));
    CHECK(error_says(ctx, rt_kd_at(ctx, s, t4, RT_MEAN), RT_ESHAPE, "at:", "batch sizes differ", "(4,64,8,8)"));
    CHECK(error_says(ctx, rt_kd_fitnet(ctx, s, t, RT_MEAN), RT_ESHAPE, "fitnet:", "(8,16,8,8)", "adapter"));
    CHECK(error_says(ctx, rt_kd_feature_mse(ctx, s, t, RT_MEAN), RT_ESHAPE, "feature_mse:", "channel", "(8,64,4,4)"));
    CHECK(error_says(ctx, rt_kd_hcl(ctx, s, t, RT_MEAN), RT_ESHAPE, "hcl:", "(8,16,8,8)", "(8,64,4,4)"));
    CHECK(error_says(ctx, rt_kd_fsp(ctx, s, t, t, t, RT_MEAN), RT_ESHAPE, "fsp:", "low map", "channel"));
    rt_tensor *l = rt_test_tensor(2, (int64_t[]){8, 10}, 4, 0), *l2 = rt_test_tensor(2, (int64_t[]){8, 9}, 5, 0);
    CHECK(error_says(ctx, rt_kd_soft_target(ctx, l, l2, 4, RT_MEAN), RT_ESHAPE, "soft_target:", "(8,10)", "(8,9)"));
    CHECK(error_says(ctx, rt_kd_soft_target(ctx, l, l, 0, RT_MEAN), RT_EINVAL, "soft_target:", "temperature", NULL));
    CHECK(error_says(ctx, rt_kd_soft_target(ctx, l, l, 4, (rt_reduction)7), RT_EINVAL, "soft_target:", "reduction",
                     NULL));
    CHECK(error_says(ctx, rt_kd_l2_logit(ctx, s, l, RT_MEAN), RT_ESHAPE, "l2_logit:", "(8,16,8,8)", "(8,10)"));
    int32_t bad[8] = {0, 1, 2, 3, 4, 5, 6, 10};
    CHECK(error_says(ctx, rt_kd_dkd(ctx, l, l, bad, 1, 8, 4, RT_MEAN), RT_EINVAL, "dkd:", "label 10", "(8,10)"));
    rt_tensor *r5 = rt_test_tensor(2, (int64_t[]){5, 3}, 6, 0);
    CHECK(error_says(ctx, rt_kd_sp(ctx, l, r5), RT_ESHAPE, "sp:", "batch sizes differ", "(5,3)"));
    CHECK(error_says(ctx, rt_kd_rkd(ctx, l, r5, 25, 50), RT_ESHAPE, "rkd:", "(8,10)", "(5,3)"));
    CHECK(error_says(ctx, rt_kd_pkt(ctx, r5, l), RT_ESHAPE, "pkt:", "(5,3)", "(8,10)"));
    CHECK(error_says(ctx, rt_kd_cc(ctx, l, r5, 0.4f, 2), RT_ESHAPE, "cc:", "(8,10)", "(5,3)"));
    rt_tensor *one = rt_test_tensor(2, (int64_t[]){1, 3}, 7, 0);
    CHECK(error_says(ctx, rt_kd_rkd(ctx, one, one, 25, 50), RT_ESHAPE, "rkd:", "at least 2", NULL));
    /* VID built for other channel counts */
    rt_paramset ps;
    rt_params_init(&ps);
    rt_kd_vid *vid = rt_kd_vid_new(ctx, &ps, "vid", 16, 32, 32, 5.0f);
    CHECK(vid && rt_params_finalize(ctx, &ps) == 0);
    CHECK(error_says(ctx, rt_kd_vid_loss(ctx, vid, s, t, RT_MEAN), RT_ESHAPE, "vid:", "(8,64,4,4)", "32 teacher"));
    CHECK(rt_kd_vid_new(ctx, &ps, "late", 1, 1, 1, 5.0f) == NULL && rt_status(ctx) == RT_ESTATE);
    rt_clear_error(ctx);
    /* errors propagate: a NULL input keeps the first message */
    rt_tensor *bad_y = rt_kd_nst(ctx, s, t4, RT_MEAN);
    CHECK(rt_kd_at(ctx, bad_y, t, RT_MEAN) == NULL && strstr(rt_errmsg(ctx), "nst:"));
    rt_clear_error(ctx);
    rt_kd_vid_free(vid);
    rt_params_free(&ps);
    rt_tensor *ls[] = {s, t, t4, l, l2, r5, one};
    for (size_t i = 0; i < sizeof ls / sizeof ls[0]; i++) rt_test_tensor_free(ls[i]);
    rt_ctx_free(ctx);
}

/* A non-contiguous student (a transposed view) gives the same loss and gradient as its copy. */
TEST(non_contiguous_inputs) {
    rt_ctx *ctx = rt_ctx_new();
    rt_tensor *base = rt_test_tensor(2, (int64_t[]){6, 4}, 11, 1), *t = rt_test_tensor(2, (int64_t[]){4, 6}, 12, 0);
    rt_tensor *y1 = rt_kd_soft_target(ctx, rt_transpose(ctx, base, 0, 1), t, 2.0f, RT_MEAN);
    CHECK(y1 && rt_backward(ctx, y1) == 0);
    float g1[24];
    memcpy(g1, base->grad, sizeof g1);
    rt_tensor *cpy = rt_test_tensor(2, (int64_t[]){4, 6}, 0, 1);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 6; j++) cpy->data[i * 6 + j] = base->data[j * 4 + i];
    rt_tensor *y2 = rt_kd_soft_target(ctx, cpy, t, 2.0f, RT_MEAN);
    CHECK(y2 && rt_backward(ctx, y2) == 0);
    CHECK(y1->data[0] == y2->data[0]);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 6; j++) CHECK(g1[j * 4 + i] == cpy->grad[i * 6 + j]);
    rt_test_tensor_free(base);
    rt_test_tensor_free(t);
    rt_test_tensor_free(cpy);
    rt_ctx_free(ctx);
}
