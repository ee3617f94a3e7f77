/* CRD: two steps against PyTorch (loss, Z, gradients, memory banks), finite differences through the
 * embeddings and the NCE op, drawn negatives, frozen banks, errors, and the NCE kernels against
 * their references. */
#include "fixtures/kd_fixture.h"
#include "kernels/nce.h"
#include "retort/kd.h"
#include "retort/retort.h"
#include "test.h"
#include "test_util.h"

static rt_tensor *param(rt_paramset *ps, const char *name) {
    rt_param *p = rt_params_find(ps, name);
    return p ? &p->t : NULL;
}

TEST(fixture_crd_two_steps) {
    rt_ctx *ctx = rt_ctx_new();
    rt_paramset ps;
    rt_params_init(&ps);
    rt_kd_crd_opts o = {.feat_dim = 4, .nce_k = 5};
    rt_kd_crd *crd = rt_kd_crd_new(ctx, &ps, "crd", 7, 9, 12, &o);
    CHECKF(crd && rt_params_finalize(ctx, &ps) == 0, "%s", rt_errmsg(ctx));
    rt_rng rng;
    rt_rng_seed(&rng, 1);
    rt_kd_crd_init(crd, &rng);
    CHECK(crd->params->data[2] < 0 && crd->params->data[3] < 0 && crd->params->data[0] == 5.0f);
    /* RepDistiller's state_dict names */
    rt_tensor *ws = param(&ps, "crd.embed_s.linear.weight"), *bs = param(&ps, "crd.embed_s.linear.bias");
    rt_tensor *wt = param(&ps, "crd.embed_t.linear.weight"), *bt = param(&ps, "crd.embed_t.linear.bias");
    CHECK(ws && bs && wt && bt && param(&ps, "crd.contrast.params") && ps.count == 7);
    CHECK(param(&ps, "crd.contrast.memory_v1") == crd->memory_s &&
          param(&ps, "crd.contrast.memory_v2") == crd->memory_t);
    CHECK(rt_params_find(&ps, "crd.contrast.memory_v1")->kind == RT_BUFFER);
    memcpy(ws->data, kdfx_crd_ws, sizeof kdfx_crd_ws);
    memcpy(bs->data, kdfx_crd_bs, sizeof kdfx_crd_bs);
    memcpy(wt->data, kdfx_crd_wt, sizeof kdfx_crd_wt);
    memcpy(bt->data, kdfx_crd_bt, sizeof kdfx_crd_bt);
    memcpy(crd->memory_s->data, kdfx_crd_mem_s, sizeof kdfx_crd_mem_s);
    memcpy(crd->memory_t->data, kdfx_crd_mem_t, sizeof kdfx_crd_mem_t);
    rt_tensor *fs = rt_test_tensor_from(kdfx_crd_fs, 2, (int64_t[]){3, 7}, 1),
              *ft = rt_test_tensor_from(kdfx_crd_ft, 2, (int64_t[]){3, 9}, 0);

    rt_tensor *l1 = rt_kd_crd_loss(ctx, crd, fs, ft, kdfx_crd_idx1, kdfx_crd_cidx1);
    CHECKF(l1 && l1->ndim == 0, "%s", rt_errmsg(ctx));
    CHECKF(fabs(l1->data[0] - kdfx_crd_loss1[0]) <= 1e-5 * kdfx_crd_loss1[0], "loss %.9g vs %.9g", (double)l1->data[0],
           kdfx_crd_loss1[0]);
    for (int i = 0; i < 2; i++)
        CHECKF(fabs(crd->params->data[2 + i] - kdfx_crd_z[i]) <= 1e-5 * kdfx_crd_z[i], "Z %d: %.9g vs %.9g", i,
               (double)crd->params->data[2 + i], kdfx_crd_z[i]);
    CHECK(rt_backward(ctx, l1) == 0);
    double e;
    CHECKF((e = rt_test_maxrel_ref(fs->grad, kdfx_crd_grad_fs, 21)) <= 1e-5, "grad f_s %.3g", e);
    CHECKF((e = rt_test_maxrel_ref(ws->grad, kdfx_crd_grad_ws, 28)) <= 1e-5, "grad W_s %.3g", e);
    CHECKF((e = rt_test_maxrel_ref(wt->grad, kdfx_crd_grad_wt, 36)) <= 1e-5, "grad W_t %.3g", e);
    CHECKF((e = rt_test_maxrel_ref(crd->memory_s->data, kdfx_crd_mem_s_after1, 48)) <= 1e-5, "memory_v1 %.3g", e);
    CHECKF((e = rt_test_maxrel_ref(crd->memory_t->data, kdfx_crd_mem_t_after1, 48)) <= 1e-5, "memory_v2 %.3g", e);
    /* step 2: Z kept, the moved memory rows used */
    rt_step_reset(ctx);
    float z0 = crd->params->data[2];
    rt_tensor *l2 = rt_kd_crd_loss(ctx, crd, fs, ft, kdfx_crd_idx2, kdfx_crd_cidx2);
    CHECKF(l2 && fabs(l2->data[0] - kdfx_crd_loss2[0]) <= 1e-5 * kdfx_crd_loss2[0], "loss2 %.9g vs %.9g / %s",
           l2 ? (double)l2->data[0] : 0.0, kdfx_crd_loss2[0], rt_errmsg(ctx));
    CHECK(crd->params->data[2] == z0);
    rt_test_tensor_free(fs);
    rt_test_tensor_free(ft);
    rt_kd_crd_free(crd);
    rt_params_free(&ps);
    rt_ctx_free(ctx);
}

typedef struct {
    rt_kd_crd *crd;
    const int64_t *idx;
} crd_args;

static rt_tensor *f_crd(rt_ctx *ctx, rt_tensor **in, void *user) {
    crd_args *a = user;
    return rt_kd_crd_loss(ctx, a->crd, in[0], in[1], a->idx, NULL); /* negatives from the reseeded ctx RNG */
}

TEST(gradcheck_crd) {
    rt_ctx *ctx = rt_ctx_new();
    rt_paramset ps;
    rt_params_init(&ps);
    rt_kd_crd_opts o = {.feat_dim = 4, .nce_k = 3, .nce_t = 0.5f};
    rt_kd_crd *crd = rt_kd_crd_new(ctx, &ps, "", 6, 5, 10, &o);
    CHECKF(crd && rt_params_finalize(ctx, &ps) == 0, "%s", rt_errmsg(ctx));
    rt_rng rng;
    rt_rng_seed(&rng, 2);
    rt_kd_crd_init(crd, &rng);
    crd->update_memory = 0; /* every evaluation must see the same banks */
    static const int64_t idx[3] = {4, 9, 0};
    crd_args a = {crd, idx};
    /* the student's and the teacher's features and the four embedding parameters */
    rt_tensor *in[6] = {rt_test_tensor(2, (int64_t[]){3, 6}, 5, 1), rt_test_tensor(4, (int64_t[]){3, 5, 1, 1}, 6, 1)};
    for (int i = 0; i < 4; i++) in[2 + i] = &ps.items[i]->t;
    char rep[512];
    CHECKF(rt_gradcheck(ctx, f_crd, &a, 6, in, NULL, rep) == 0, "%s / %s", rep, rt_errmsg(ctx));
    /* the default temperature (sharper scores) */
    crd->o.nce_t = 0.07f;
    crd->params->data[2] = crd->params->data[3] = -1;
    CHECKF(rt_gradcheck(ctx, f_crd, &a, 2, in, NULL, rep) == 0, "T 0.07: %s / %s", rep, rt_errmsg(ctx));
    rt_test_tensor_free(in[0]);
    rt_test_tensor_free(in[1]);
    rt_kd_crd_free(crd);
    rt_params_free(&ps);
    rt_ctx_free(ctx);
}

TEST(crd_drawn_negatives_and_memory) {
    rt_ctx *ctx = rt_ctx_new();
    rt_paramset ps;
    rt_params_init(&ps);
    rt_kd_crd_opts o = {.feat_dim = 8, .nce_k = 64};
    rt_kd_crd *crd = rt_kd_crd_new(ctx, &ps, "crd", 6, 5, 100, &o);
    CHECKF(crd && rt_params_finalize(ctx, &ps) == 0, "%s", rt_errmsg(ctx));
    rt_rng rng;
    rt_rng_seed(&rng, 3);
    rt_kd_crd_init(crd, &rng);
    const size_t bank = 100 * 8 * sizeof(float);
    float *m0 = malloc(bank), *m1 = malloc(bank);
    memcpy(m0, crd->memory_s->data, bank);
    rt_tensor *fs = rt_test_tensor(2, (int64_t[]){4, 6}, 7, 0), *ft = rt_test_tensor(2, (int64_t[]){4, 5}, 8, 0);
    static const int64_t idx[4] = {10, 20, 30, 99};
    /* frozen banks: same seed, same loss; the banks do not move */
    crd->update_memory = 0;
    rt_rng_seed(rt_ctx_rng(ctx), 42);
    rt_tensor *a = rt_kd_crd_loss(ctx, crd, fs, ft, idx, NULL);
    rt_rng_seed(rt_ctx_rng(ctx), 42);
    rt_tensor *b = rt_kd_crd_loss(ctx, crd, fs, ft, idx, NULL);
    CHECKF(a && b && a->data[0] == b->data[0] && isfinite(a->data[0]) && a->data[0] > 0, "%s", rt_errmsg(ctx));
    CHECK(memcmp(m0, crd->memory_s->data, bank) == 0);
    /* another draw of negatives gives another loss */
    rt_tensor *c = rt_kd_crd_loss(ctx, crd, fs, ft, idx, NULL);
    CHECK(c && c->data[0] != a->data[0]);
    /* updating: exactly the batch's rows move, to unit vectors */
    crd->update_memory = 1;
    CHECK(rt_kd_crd_loss(ctx, crd, fs, ft, idx, NULL));
    memcpy(m1, crd->memory_s->data, bank);
    for (int64_t r = 0; r < 100; r++) {
        int in_batch = r == 10 || r == 20 || r == 30 || r == 99;
        int same = memcmp(m0 + r * 8, m1 + r * 8, 8 * sizeof(float)) == 0;
        CHECKF(same != in_batch, "row %lld", (long long)r);
        if (in_batch) {
            double n = 0;
            for (int d = 0; d < 8; d++) n += (double)m1[r * 8 + d] * m1[r * 8 + d];
            CHECK_CLOSE(n, 1.0, 1e-5);
        }
    }
    /* without grad mode nothing is recorded and no gradient work is needed */
    int prev = rt_set_grad_enabled(ctx, 0);
    uint32_t tape = rt_tape_size(ctx);
    CHECK(rt_kd_crd_loss(ctx, crd, fs, ft, idx, NULL) && rt_tape_size(ctx) == tape);
    rt_set_grad_enabled(ctx, prev);
    /* errors */
    static const int64_t bad[4] = {10, 20, 100, 0};
    CHECK(!rt_kd_crd_loss(ctx, crd, fs, ft, bad, NULL) && rt_status(ctx) == RT_EINVAL &&
          strstr(rt_errmsg(ctx), "crd:") && strstr(rt_errmsg(ctx), "100"));
    rt_clear_error(ctx);
    CHECK(!rt_kd_crd_loss(ctx, crd, ft, fs, idx, NULL) && rt_status(ctx) == RT_ESHAPE &&
          strstr(rt_errmsg(ctx), "crd:") && strstr(rt_errmsg(ctx), "(4,5)") && strstr(rt_errmsg(ctx), "(4,6)"));
    rt_clear_error(ctx);
    rt_tensor *f3 = rt_test_tensor(2, (int64_t[]){3, 5}, 9, 0);
    CHECK(!rt_kd_crd_loss(ctx, crd, fs, f3, idx, NULL) && rt_status(ctx) == RT_ESHAPE &&
          strstr(rt_errmsg(ctx), "batch"));
    rt_clear_error(ctx);
    CHECK(!rt_kd_crd_new(ctx, &ps, "x", 0, 5, 10, NULL) && rt_status(ctx) == RT_EINVAL);
    rt_clear_error(ctx);
    rt_test_tensor_free(f3);
    rt_test_tensor_free(fs);
    rt_test_tensor_free(ft);
    free(m0);
    free(m1);
    rt_kd_crd_free(crd);
    rt_params_free(&ps);
    rt_ctx_free(ctx);
}

TEST(nce_kernels_match_reference) {
    const int64_t B = 7, K1 = 301, D = 48, N = 500;
    float *mem = malloc(N * D * sizeof(float)), *v = malloc(B * D * sizeof(float));
    int64_t *idx = malloc(B * K1 * sizeof(int64_t));
    rt_rng r;
    rt_rng_seed(&r, 9);
    for (int64_t i = 0; i < N * D; i++) mem[i] = rt_rng_normal(&r) * 0.15f;
    for (int64_t i = 0; i < B * D; i++) v[i] = rt_rng_normal(&r) * 0.15f;
    for (int64_t i = 0; i < B * K1; i++) idx[i] = (int64_t)rt_rng_below(&r, N);
    float *e = malloc(B * K1 * sizeof(float)), *er = malloc(B * K1 * sizeof(float));
    rt_nce_scores(B, K1, D, mem, v, idx, 0.07f, e);
    rt_nce_scores_ref(B, K1, D, mem, v, idx, 0.07f, er);
    double err = rt_test_maxrel(e, er, B * K1);
    CHECKF(err < 1e-5, "scores %.3g", err);
    float *ds = malloc(B * K1 * sizeof(float)), *g = malloc(B * D * sizeof(float)), *gr = malloc(B * D * sizeof(float));
    double *loss = malloc(B * sizeof(double));
    rt_nce_loss(B, K1, er, 1000.0, (K1 - 1) / (double)N, 1e-7, 0.07, loss, ds);
    /* the loss kernel's gradient against central differences of its own loss in the score */
    for (int64_t k = 0; k < 3; k++) {
        const double h = 1e-4, s0 = 0.07 * log(er[k]);
        double lp, lm;
        float ep = (float)exp((s0 + h) / 0.07), em = (float)exp((s0 - h) / 0.07), keep = er[k];
        er[k] = ep;
        rt_nce_loss(1, K1, er, 1000.0, (K1 - 1) / (double)N, 1e-7, 0.07, &lp, NULL);
        er[k] = em;
        rt_nce_loss(1, K1, er, 1000.0, (K1 - 1) / (double)N, 1e-7, 0.07, &lm, NULL);
        er[k] = keep;
        double num = (lp - lm) / (2 * h);
        CHECKF(fabs(num - ds[k]) <= 2e-2 * fmax(fabs(num), 1e-3), "d loss / d score %lld: %g vs %g", (long long)k,
               (double)ds[k], num);
    }
    rt_nce_gather(B, K1, D, ds, mem, idx, 0.25f, g);
    rt_nce_gather_ref(B, K1, D, ds, mem, idx, 0.25f, gr);
    err = rt_test_maxrel(g, gr, B * D);
    CHECKF(err < 1e-5, "gather %.3g", err);
    /* thread count does not change the bits */
    float *g1 = malloc(B * D * sizeof(float));
    int nt = rt_threads();
    rt_set_threads(1);
    rt_nce_gather(B, K1, D, ds, mem, idx, 0.25f, g1);
    rt_set_threads(nt);
    CHECK(memcmp(g, g1, B * D * sizeof(float)) == 0);
    free(mem), free(v), free(idx), free(e), free(er), free(ds), free(g), free(gr), free(g1), free(loss);
}
