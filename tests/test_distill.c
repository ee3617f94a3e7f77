/* `retort distill` end to end on small data: every strategy runs and logs, the adaptive z moves
 * towards ln(w L), min-norm weights lie on the simplex, misconfiguration lists the taps; single
 * steps of the FSP, VID and CRD paths on a fixed batch (their aux parameters get the finite-difference
 * gradient, their losses fall), adapter shapes and errors, and bit-identical resume. */
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kd/distill_impl.h"
#include "retort/retort.h"
#include "test.h"
#include "test_util.h"

static char teacher_dir[128];

/* A quickly trained MLP teacher on the synthetic data (made once). */
static int make_teacher(rt_ctx *ctx) {
    if (teacher_dir[0]) return 0;
    snprintf(teacher_dir, sizeof teacher_dir, "%s/rt_distill_teacher_%d", rt_test_tmp(), (int)getpid());
    char out[200];
    snprintf(out, sizeof out, "out_dir=%s", teacher_dir);
    char *ov[] = {
        "data.name=synth", "model.arch=mlp", "model.hidden=64", "epochs=3", "batch_size=100", "optim.lr=0.1", out};
    rt_train_cfg cfg;
    int rc = rt_config_load(ctx, rt_train_schema, rt_train_schema_len, &cfg, NULL, 7, ov);
    return rc ? rc : rt_train_run(ctx, &cfg, 0);
}

static int distill(rt_ctx *ctx, const char *name, int n, char **extra, rt_distill_summary *s, char *dir) {
    char t[300], out[200];
    snprintf(t, sizeof t, "teacher=%s/checkpoint.safetensors", teacher_dir);
    snprintf(dir, 128, "%s/rt_distill_%s_%d", rt_test_tmp(), name, (int)getpid());
    snprintf(out, sizeof out, "out_dir=%s", dir);
    char *ov[24] = {"data.name=synth",
                    "model.arch=mlp",
                    "model.hidden=16",
                    "epochs=2",
                    "batch_size=100",
                    "optim.lr=0.05",
                    "distill.log_every=10",
                    t,
                    out};
    int k = 9;
    for (int i = 0; i < n; i++) ov[k++] = extra[i];
    rt_distill_cfg *cfg = calloc(1, sizeof *cfg);
    int rc = rt_config_load(ctx, rt_distill_schema, rt_distill_schema_len, cfg, NULL, k, ov);
    if (!rc) rc = rt_distill_run(ctx, cfg, 0, s);
    free(cfg);
    return rc;
}

static int count_lines(const char *dir, const char *file, const char *needle) {
    char p[256], line[8192];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    FILE *f = fopen(p, "r");
    if (!f) return -1;
    int n = 0;
    while (fgets(line, sizeof line, f)) n += !needle || strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

TEST(every_strategy_runs_and_logs) {
    rt_ctx *ctx = rt_ctx_new();
    CHECKF(make_teacher(ctx) == 0, "%s", rt_errmsg(ctx));
    const char *strategies[] = {"equal", "fixed", "adaptive", "multiobjective"};
    for (int i = 0; i < 4; i++) {
        char st[64], dir[128];
        snprintf(st, sizeof st, "distill.strategy=%s", strategies[i]);
        char *ex[] = {st,
                      "distill.paths=[st, l2, pkt, sp]",
                      "sp.taps=[pool]",
                      "pkt.taps=[hidden1]",
                      "distill.weights=[1, 0.5, 1, 1]",
                      "distill.cos_every=5"};
        rt_distill_summary s;
        CHECKF(distill(ctx, strategies[i], 6, ex, &s, dir) == 0, "%s: %s", strategies[i], rt_errmsg(ctx));
        CHECKF(s.student_acc > 0.1 && s.teacher_acc > 0.2, "%s: student %.3f teacher %.3f", strategies[i],
               s.student_acc, s.teacher_acc);
        CHECK(s.agree_err > 0 && s.agree_err < 1);
        CHECK(count_lines(dir, "metrics.jsonl", "\"agree_err\"") == 2);
        CHECK(count_lines(dir, "paths.jsonl", "\"cos\"") > 0);
    }
    rt_ctx_free(ctx);
}

/* With the adaptive strategy z follows dL/dz = alpha (1 - exp(-z) w L): where w L < 1, z falls. */
TEST(adaptive_z_tracks_path_losses) {
    rt_ctx *ctx = rt_ctx_new();
    CHECKF(make_teacher(ctx) == 0, "%s", rt_errmsg(ctx));
    char dir[128];
    char *ex[] = {"distill.strategy=adaptive", "distill.paths=[st, l2]", "distill.weights=[1, 0.001]",
                  "distill.scratch_baseline=true"};
    rt_distill_summary s;
    CHECKF(distill(ctx, "adaptive_z", 4, ex, &s, dir) == 0, "%s", rt_errmsg(ctx));
    /* the from-scratch baseline ran with the same protocol and was evaluated */
    CHECKF(s.scratch_acc > 0.05 && s.scratch_acc <= 1, "scratch accuracy %g", s.scratch_acc);
    CHECK(count_lines(dir, "scratch/metrics.jsonl", "\"test_acc\"") == 2);
    /* the last paths.jsonl record: the tiny-weighted l2 path must have gained weight (v > 1) */
    char p[256], line[8192], last[8192] = "";
    snprintf(p, sizeof p, "%s/paths.jsonl", dir);
    FILE *f = fopen(p, "r");
    CHECK(f);
    while (fgets(line, sizeof line, f)) strcpy(last, line);
    fclose(f);
    char *w = strstr(last, "\"weight\": {");
    CHECK(w);
    char *l2 = strstr(w, "\"l2\": ");
    CHECK(l2);
    double v = atof(l2 + 6);
    CHECKF(v > 0.001 * 1.5, "effective weight of l2 %g did not grow from 0.001", v);
    rt_ctx_free(ctx);
}

TEST(misconfiguration_lists_taps) {
    rt_ctx *ctx = rt_ctx_new();
    CHECKF(make_teacher(ctx) == 0, "%s", rt_errmsg(ctx));
    char dir[128];
    rt_distill_summary s;
    char *ex[] = {"distill.paths=[sp]", "sp.taps=[layer9]"};
    CHECK(distill(ctx, "badtap", 2, ex, &s, dir) == RT_EINVAL);
    CHECKF(strstr(rt_errmsg(ctx), "layer9") && strstr(rt_errmsg(ctx), "hidden1(") && strstr(rt_errmsg(ctx), "pool("),
           "%s", rt_errmsg(ctx));
    rt_clear_error(ctx);
    char *ex2[] = {"distill.paths=[st, foo]"};
    CHECK(distill(ctx, "badloss", 1, ex2, &s, dir) == RT_EINVAL && strstr(rt_errmsg(ctx), "foo"));
    rt_clear_error(ctx);
    char *ex3[] = {"distill.strategy=single", "distill.paths=[st, l2]"};
    CHECK(distill(ctx, "badsingle", 2, ex3, &s, dir) == RT_EINVAL && strstr(rt_errmsg(ctx), "single"));
    rt_clear_error(ctx);
    char *ex4[] = {"teacher=/nonexistent.safetensors"};
    CHECK(distill(ctx, "badteacher", 1, ex4, &s, dir) != 0 && strstr(rt_errmsg(ctx), "/nonexistent.safetensors"));
    rt_ctx_free(ctx);
}

TEST(search_picks_the_best_validation_weights) {
    rt_ctx *ctx = rt_ctx_new();
    CHECKF(make_teacher(ctx) == 0, "%s", rt_errmsg(ctx));
    char t[300], out[200];
    snprintf(t, sizeof t, "teacher=%s/checkpoint.safetensors", teacher_dir);
    snprintf(out, sizeof out, "out_dir=%s/rt_search_%d", rt_test_tmp(), (int)getpid());
    char *ov[] = {"data.name=synth",
                  "data.val=400",
                  "model.arch=mlp",
                  "model.hidden=16",
                  "epochs=1",
                  "batch_size=100",
                  "distill.paths=[st, l2]",
                  "search.values=[0, 1]",
                  t,
                  out};
    rt_distill_cfg *cfg = calloc(1, sizeof *cfg);
    CHECK(rt_config_load(ctx, rt_distill_schema, rt_distill_schema_len, cfg, NULL, 10, ov) == 0);
    float best[8];
    int K = 0;
    CHECKF(rt_distill_search(ctx, cfg, best, &K) == 0, "%s", rt_errmsg(ctx));
    CHECK(K == 2 && (best[0] == 0 || best[0] == 1) && (best[1] == 0 || best[1] == 1));
    /* four trials were logged and the chosen one has the highest validation accuracy */
    char p[256], line[1024];
    snprintf(p, sizeof p, "%s/rt_search_%d/search.jsonl", rt_test_tmp(), (int)getpid());
    FILE *f = fopen(p, "r");
    CHECK(f);
    int n = 0;
    double top = -1;
    char topw[64] = "";
    while (fgets(line, sizeof line, f)) {
        n++;
        double v = atof(strstr(line, "\"val_acc\": ") + 11);
        if (v > top) {
            top = v;
            char *w = strstr(line, "\"weights\": \"") + 12;
            snprintf(topw, sizeof topw, "%.*s", (int)(strchr(w, '"') - w), w);
        }
    }
    fclose(f);
    CHECK(n == 4);
    char want[64];
    snprintf(want, sizeof want, "%g, %g", best[0], best[1]);
    CHECKF(!strcmp(want, topw), "best %s, log's top %s", want, topw);
    /* no validation split: an error */
    cfg->train.data.val = 0;
    CHECK(rt_distill_search(ctx, cfg, best, &K) == RT_EINVAL && strstr(rt_errmsg(ctx), "data.val"));
    free(cfg);
    rt_ctx_free(ctx);
}

/* ---- single steps on a fixed batch: random 8x8 one-channel images, untrained CIFAR ResNets ---- */

#define FB 8      /* batch */
#define FNDATA 32 /* CRD's memory rows */

typedef struct {
    rt_ctx *ctx;
    rt_distill_cfg cfg;
    rt_model *teacher, *student;
    rt_distiller d;
    rt_tensor *x;
    int32_t y[FB];
    int64_t idx[FB];
} fixture;

static void fx_free(fixture *f) {
    if (!f) return;
    rt_distiller_release(&f->d);
    rt_model_free(f->teacher);
    rt_model_free(f->student);
    rt_test_tensor_free(f->x);
    free(f);
}

/* Builds the paths of the overrides between a tarch teacher and an sarch student; the status is
 * the context's (f is returned either way, for the caller to free). */
static fixture *fx_new(rt_ctx *ctx, const char *tarch, const char *sarch, int n, char **ov) {
    fixture *f = calloc(1, sizeof *f);
    f->ctx = ctx;
    if (rt_config_load(ctx, rt_distill_schema, rt_distill_schema_len, &f->cfg, NULL, n, ov)) return f;
    rt_model_opts o = {1, 8, 10, 16, 64};
    f->teacher = rt_model_new(ctx, tarch, &o, 11);
    f->student = rt_model_new(ctx, sarch, &o, 12);
    f->x = rt_test_tensor(4, (int64_t[]){FB, 1, 8, 8}, 5, 0);
    for (int i = 0; i < FB; i++) f->y[i] = i % 10, f->idx[i] = 3 * i + 1;
    if (!f->teacher || !f->student) return f;
    if (rt_distiller_init(ctx, &f->d, &f->cfg, f->teacher, f->student, f->x, FNDATA)) return f;
    rt_model_train(f->student, 1);
    return f;
}

/* One forward + backward of the fixed batch (the arena is reset: read o's numbers, not its tensors). */
static int fx_step(fixture *f, rt_distill_step_out *o) {
    int rc = rt_distiller_step(f->ctx, &f->d, f->x, f->y, f->idx, 0, 0, 0, o);
    rt_step_reset(f->ctx);
    return rc;
}

static void sgd(rt_paramset *ps, float lr) {
    for (size_t i = 0; i < ps->n; i++) ps->data[i] -= lr * ps->grad[i];
}

/* The step's total against central differences at the entry of largest gradient of parameter p
 * (CRD's negatives redrawn identically each time, its memory frozen). */
static int fd_agrees(fixture *f, rt_param *p, double *got, double *want) {
    rt_distill_step_out o;
    rt_rng_seed(rt_ctx_rng(f->ctx), 77);
    if (fx_step(f, &o)) return 0;
    int64_t best = 0;
    for (int64_t i = 1; i < (int64_t)p->numel; i++)
        if (fabsf(p->t.grad[i]) > fabsf(p->t.grad[best])) best = i;
    *got = p->t.grad[best];
    const float h = 1e-2f, keep = p->t.data[best];
    float tot[2];
    for (int s = 0; s < 2; s++) {
        p->t.data[best] = keep + (s ? -h : h);
        rt_rng_seed(rt_ctx_rng(f->ctx), 77);
        if (fx_step(f, &o)) return 0;
        tot[s] = o.total;
    }
    p->t.data[best] = keep;
    *want = ((double)tot[0] - tot[1]) / (2.0 * h);
    return fabs(*got - *want) <= 0.02 * fabs(*want) + 1.5e-3 && fabs(*want) > 1e-2;
}

TEST(fsp_vid_crd_paths_train_and_reach_their_aux_parameters) {
    rt_ctx *ctx = rt_ctx_new();
    rt_set_threads(1);
    const char *paths[] = {"fsp", "vid", "crd"};
    /* each path's own aux parameters (FSP has none: it compares the models' flow matrices directly) */
    const char *aux[3][6] = {
        {NULL},
        {"vid.layer1.regressor.0.weight", "vid.layer2.regressor.2.weight", "vid.layer3.regressor.4.weight",
         "vid.layer1.log_scale", "vid.layer3.log_scale", NULL},
        {"crd.pool.embed_s.linear.weight", "crd.pool.embed_s.linear.bias", "crd.pool.embed_t.linear.weight", NULL}};
    for (int i = 0; i < 3; i++) {
        char pk[64];
        snprintf(pk, sizeof pk, "distill.paths=[%s]", paths[i]);
        /* alpha large enough that the path, not CE, leads the steps (FSP and CRD: RepDistiller's weights;
         * VID's unit weight moves its regressors and variances too slowly for a few steps) */
        char *alpha[] = {"distill.alpha=50", "distill.alpha=100", "distill.alpha=0.8"};
        char *ov[] = {"distill.strategy=single", pk, "crd.nce_k=16", "crd.feat_dim=8", alpha[i]};
        fixture *f = fx_new(ctx, "resnet14", "resnet8", 5, ov);
        CHECKF(!rt_status(ctx), "%s: %s", paths[i], rt_errmsg(ctx));
        CHECK(f->d.K == 1 && !strcmp(f->d.p[0].name, paths[i]));
        if (i == 0) CHECK(f->d.aux.n == 0 && f->d.p[0].ntaps == 4); /* stem, layer1, layer2, layer3: 3 pairs */
        if (i == 2) {                                               /* the memory banks: one row per training sample */
            rt_param *m = rt_params_find(&f->d.aux, "crd.pool.contrast.memory_v1");
            CHECK(m && m->kind == RT_BUFFER && m->t.shape[0] == FNDATA && m->t.shape[1] == 8);
        }
        rt_distill_step_out o;
        CHECKF(fx_step(f, &o) == 0, "%s: %s", paths[i], rt_errmsg(ctx));
        CHECKF(isfinite(o.L[0]) && o.L[0] > 0, "%s: loss %g", paths[i], o.L[0]);
        /* every parameter of the path gets a gradient, and it is the finite-difference one */
        for (int a = 0; aux[i][a]; a++) {
            rt_param *p = rt_params_find(&f->d.aux, aux[i][a]);
            CHECKF(p && p->kind == RT_PARAM, "%s missing", aux[i][a]);
            double got, want;
            if (i == 2) f->d.p[0].crd[0]->update_memory = 0;
            CHECKF(fd_agrees(f, p, &got, &want), "%s: %s gradient %g, finite differences %g", paths[i], aux[i][a], got,
                   want);
        }
        rt_param *sw = rt_params_find(&f->student->params, "layer3.0.bn2.weight");
        double got, want;
        CHECKF(fd_agrees(f, sw, &got, &want), "%s: student gradient %g, finite differences %g", paths[i], got, want);
        if (i == 2) f->d.p[0].crd[0]->update_memory = 1;
        /* the path's loss falls over plain gradient steps of student and aux parameters on the fixed batch */
        float first = 0, last = 0;
        for (int s = 0; s < 40; s++) {
            CHECKF(fx_step(f, &o) == 0, "%s: %s", paths[i], rt_errmsg(ctx));
            if (s == 0) first = o.L[0];
            last = o.L[0];
            sgd(&f->student->params, 0.05f);
            if (f->d.aux.n) sgd(&f->d.aux, 0.05f);
        }
        CHECKF(last < 0.9f * first, "%s: path loss %g -> %g over 40 steps", paths[i], first, last);
        fx_free(f);
    }
    rt_ctx_free(ctx);
}

/* The student's tap through path k's adapter t, against the teacher's tap: same shape. */
static int adapted_matches(fixture *f, int k, int t, int64_t *numel) {
    rt_ctx *ctx = f->ctx;
    rt_taps tt = {0}, ts = {0};
    int prev = rt_set_grad_enabled(ctx, 0);
    rt_model_forward(ctx, f->teacher, f->x, &tt);
    rt_model_forward(ctx, f->student, f->x, &ts);
    const char *tap = f->d.p[k].taps[t];
    rt_tensor *a = rt_module_forward(f->d.p[k].adapter[t], ctx, rt_taps_get(&ts, tap), NULL);
    rt_tensor *b = rt_taps_get(&tt, tap);
    int ok = a && b && rt_same_shape(a, b) && !rt_same_shape(rt_taps_get(&ts, tap), b);
    *numel = a ? rt_numel(a) : -1;
    rt_set_grad_enabled(ctx, prev);
    rt_step_reset(ctx);
    return ok;
}

static int has_shape(const rt_paramset *ps, const char *name, int nd, const int64_t *shape) {
    rt_param *p = rt_params_find(ps, name);
    if (!p || p->t.ndim != nd) return 0;
    for (int i = 0; i < nd; i++)
        if (p->t.shape[i] != shape[i]) return 0;
    return 1;
}

/* resnet8x4 teacher (32/64/128/256 channels) -> resnet8 student (16/16/32/64): adapters map the
 * student's channels to the teacher's, and say when they cannot. */
TEST(adapters_make_shapes_meet_or_say_why) {
    rt_ctx *ctx = rt_ctx_new();
    rt_set_threads(1);
    {
        char *ov[] = {"distill.strategy=equal",
                      "distill.paths=[fitnet, fsp, sp, at]",
                      "fitnet.taps=[layer2]",
                      "fitnet.adapter=conv3x3",
                      "fsp.taps=[stem, layer1, layer2]",
                      "fsp.adapter=conv1x1",
                      "sp.taps=[pool]",
                      "sp.adapter=linear",
                      "at.taps=[layer3]"};
        fixture *f = fx_new(ctx, "resnet8x4", "resnet8", 9, ov);
        CHECKF(!rt_status(ctx), "%s", rt_errmsg(ctx));
        const rt_paramset *a = &f->d.aux;
        CHECK(has_shape(a, "adapter.fitnet.layer2.0.weight", 4, (int64_t[]){128, 32, 3, 3}));
        CHECK(has_shape(a, "adapter.fitnet.layer2.1.weight", 1, (int64_t[]){128}));
        CHECK(has_shape(a, "adapter.fsp.stem.0.weight", 4, (int64_t[]){32, 16, 1, 1}));
        CHECK(has_shape(a, "adapter.fsp.layer2.0.weight", 4, (int64_t[]){128, 32, 1, 1}));
        CHECK(has_shape(a, "adapter.fsp.layer2.1.running_var", 1, (int64_t[]){128}));
        CHECK(has_shape(a, "adapter.sp.pool.0.weight", 2, (int64_t[]){256, 64}));
        CHECK(has_shape(a, "adapter.sp.pool.0.bias", 1, (int64_t[]){256}));
        CHECK(f->d.p[3].adapter[0] == NULL); /* at: none, its default */
        int64_t n;
        CHECK(adapted_matches(f, 0, 0, &n) && n == FB * 128 * 4 * 4);
        for (int t = 0; t < 3; t++) CHECK(adapted_matches(f, 1, t, &n));
        CHECK(adapted_matches(f, 2, 0, &n) && n == FB * 256);
        rt_distill_step_out o;
        CHECKF(fx_step(f, &o) == 0, "%s", rt_errmsg(ctx));
        for (int k = 0; k < 4; k++) CHECK(isfinite(o.L[k]) && o.L[k] > 0);
        /* every adapter weight got a gradient */
        const char *w[] = {"adapter.fitnet.layer2.0.weight", "adapter.fsp.layer1.0.weight", "adapter.sp.pool.0.weight"};
        for (int i = 0; i < 3; i++) {
            rt_param *p = rt_params_find(a, w[i]);
            double g2 = 0;
            for (size_t j = 0; j < p->numel; j++) g2 += (double)p->t.grad[j] * p->t.grad[j];
            CHECKF(g2 > 0, "%s has no gradient", w[i]);
        }
        fx_free(f);
    }
    /* misconfiguration: the error names the loss, tap and shapes and lists both models' taps */
    struct {
        int n;
        char *ov[4];
        const char *want[3];
    } bad[] = {
        {2,
         {"distill.paths=[fsp]", "fsp.taps=[layer1, layer2]"},
         {"fsp.adapter", "equal channel counts", "(8,16,8,8)"}},
        {3,
         {"distill.paths=[sp]", "sp.taps=[layer2]", "sp.adapter=linear"},
         {"linear adapter", "student (8,32,4,4)", "teacher (8,128,4,4)"}},
        {3,
         {"distill.paths=[pkt]", "pkt.taps=[pool]", "pkt.adapter=conv3x3"},
         {"conv adapter", "pool(8,256)", "pool(8,64)"}},
        {3,
         {"distill.paths=[fitnet]", "fitnet.taps=[layer3]", "fitnet.adapter=none"},
         {"same shape", "layer3", "stem("}},
        {3,
         {"distill.paths=[hcl]", "hcl.taps=[pool]", "hcl.adapter=linear"},
         {"hcl on tap 'pool'", "(8,256) after the adapter", "layer1("}},
        {2, {"distill.paths=[fsp]", "fsp.taps=[layer2]"}, {"at least two", "pairs", "stem("}},
        {3,
         {"distill.paths=[fsp]", "fsp.taps=[layer1, layer7]", "fsp.adapter=conv1x1"},
         {"layer7", "layer3(", "pool("}},
        {2, {"distill.paths=[vid]", "vid.taps=[pool]"}, {"vid on tap 'pool'", "(B,C,H,W)", "layer2("}},
        {2, {"distill.paths=[at]", "at.adapter=conv5x5"}, {"at.adapter 'conv5x5'", "conv3x3", "linear"}},
        {2, {"distill.paths=[crd]", "crd.nce_k=-3"}, {"crd.nce_k", "-3", "crd.momentum"}},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *ov[5] = {"distill.strategy=single"};
        for (int j = 0; j < bad[i].n; j++) ov[1 + j] = bad[i].ov[j];
        fixture *f = fx_new(ctx, "resnet8x4", "resnet8", 1 + bad[i].n, ov);
        CHECKF(rt_status(ctx) == RT_EINVAL, "case %zu: status %d (%s)", i, rt_status(ctx), rt_errmsg(ctx));
        for (int j = 0; j < 3; j++)
            CHECKF(strstr(rt_errmsg(ctx), bad[i].want[j]), "case %zu: no '%s' in: %s", i, bad[i].want[j],
                   rt_errmsg(ctx));
        fx_free(f);
        rt_clear_error(ctx);
    }
    rt_ctx_free(ctx);
}

/* ---- whole runs on tiny images: resume ---- */

static char img_dir[128];

static void put_be32(FILE *f, uint32_t v) {
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8),
                          (unsigned char)v};
    fwrite(b, 1, 4, f);
}

/* An IDX data set of n 8x8 images per split: class c is a bright row c % 8 (classes >= 8 also a
 * bright column) over seeded noise. */
static int write_idx_split(const char *split, uint32_t n, uint64_t seed) {
    char p[256];
    rt_rng r;
    rt_rng_seed(&r, seed);
    snprintf(p, sizeof p, "%s/%s-images-idx3-ubyte", img_dir, split);
    FILE *fi = fopen(p, "wb");
    snprintf(p, sizeof p, "%s/%s-labels-idx1-ubyte", img_dir, split);
    FILE *fl = fopen(p, "wb");
    if (!fi || !fl) return -1;
    put_be32(fi, 0x803), put_be32(fi, n), put_be32(fi, 8), put_be32(fi, 8);
    put_be32(fl, 0x801), put_be32(fl, n);
    for (uint32_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)rt_rng_below(&r, 10), px[64];
        for (int k = 0; k < 64; k++) {
            int v = (int)(60 * rt_rng_uniform(&r));
            if (k / 8 == c % 8 || (c >= 8 && k % 8 == c - 8)) v += 160;
            px[k] = (unsigned char)v;
        }
        fwrite(px, 1, 64, fi);
        fwrite(&c, 1, 1, fl);
    }
    return fclose(fi) | fclose(fl);
}

static char img_teacher[256];

/* The data set and a resnet8 teacher trained on it for one epoch (made once). */
static int make_images(rt_ctx *ctx) {
    if (img_dir[0]) return 0;
    snprintf(img_dir, sizeof img_dir, "%s/rt_distill_img_%d", rt_test_tmp(), (int)getpid());
    mkdir(img_dir, 0755);
    if (write_idx_split("train", 300, 1) || write_idx_split("t10k", 100, 2)) return -1;
    char dir[200], out[220], dd[200];
    snprintf(dir, sizeof dir, "%s/teacher", img_dir);
    snprintf(out, sizeof out, "out_dir=%s", dir);
    snprintf(dd, sizeof dd, "data.dir=%s", img_dir);
    snprintf(img_teacher, sizeof img_teacher, "teacher=%s/checkpoint.safetensors", dir);
    char *ov[] = {"data.name=idx", dd, "model.arch=resnet8", "epochs=1", "batch_size=50", "threads=2", out};
    rt_train_cfg cfg;
    int rc = rt_config_load(ctx, rt_train_schema, rt_train_schema_len, &cfg, NULL, 7, ov);
    return rc ? rc : rt_train_run(ctx, &cfg, 0);
}

static int distill_images(rt_ctx *ctx, const char *dir, int resume, int n, char **extra) {
    char out[200], dd[200];
    snprintf(out, sizeof out, "out_dir=%s", dir);
    snprintf(dd, sizeof dd, "data.dir=%s", img_dir);
    /* every kind of aux state: adaptive z, FSP through conv1x1 adapters, VID, CRD (memory banks,
     * normalisers) through a linear adapter, a conv3x3 FitNet adapter; augmentation and cosines on */
    char *ov[32] = {"data.name=idx",
                    dd,
                    img_teacher,
                    "model.arch=resnet8",
                    "epochs=2",
                    "batch_size=50",
                    "threads=2",
                    "data.crop_pad=1",
                    "data.hflip=true",
                    "distill.strategy=adaptive",
                    "distill.paths=[fsp, vid, crd, fitnet]",
                    "fsp.taps=[stem, layer1, layer2]",
                    "fsp.adapter=conv1x1",
                    "vid.taps=[layer3]",
                    "crd.nce_k=32",
                    "crd.feat_dim=16",
                    "crd.adapter=linear",
                    "fitnet.taps=[layer2]",
                    "fitnet.adapter=conv3x3",
                    "distill.log_every=2",
                    "distill.cos_every=3",
                    out};
    int k = 22;
    for (int i = 0; i < n; i++) ov[k++] = extra[i];
    rt_distill_cfg *cfg = calloc(1, sizeof *cfg);
    int rc = rt_config_load(ctx, rt_distill_schema, rt_distill_schema_len, cfg, NULL, k, ov);
    if (!rc) rc = rt_distill_run(ctx, cfg, resume, NULL);
    free(cfg);
    return rc;
}

static long read_bytes(const char *dir, const char *file, unsigned char **buf) {
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    FILE *f = fopen(p, "rb");
    *buf = NULL;
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *buf = malloc((size_t)n + 1);
    if (fread(*buf, 1, (size_t)n, f) != (size_t)n) n = -1;
    fclose(f);
    return n;
}

static int same_bytes(const char *a, const char *b, const char *file) {
    unsigned char *x, *y;
    long nx = read_bytes(a, file, &x), ny = read_bytes(b, file, &y);
    int same = nx > 0 && nx == ny && !memcmp(x, y, (size_t)nx);
    free(x);
    free(y);
    return same;
}

TEST(distill_resume_is_bit_identical) {
    rt_ctx *ctx = rt_ctx_new();
    CHECKF(make_images(ctx) == 0, "%s", rt_errmsg(ctx));
    char a[160], b[160];
    snprintf(a, sizeof a, "%s/full", img_dir);
    snprintf(b, sizeof b, "%s/resumed", img_dir);
    CHECKF(distill_images(ctx, a, 0, 0, NULL) == 0, "%s", rt_errmsg(ctx));
    char *stop[] = {"stop_after=1"};
    CHECKF(distill_images(ctx, b, 0, 1, stop) == 0, "%s", rt_errmsg(ctx)); /* "interrupted" after epoch 1 */
    CHECK(count_lines(b, "metrics.jsonl", "\"epoch\"") == 1);
    CHECK(!same_bytes(a, b, "checkpoint.safetensors") && !same_bytes(a, b, "distill_state.safetensors"));
    /* a different set of paths cannot continue this run */
    char *other[] = {"distill.paths=[fsp, vid, crd]"};
    CHECK(distill_images(ctx, b, 1, 1, other) == RT_EINVAL);
    CHECKF(strstr(rt_errmsg(ctx), "fsp,vid,crd,fitnet") && strstr(rt_errmsg(ctx), "distill_state"), "%s",
           rt_errmsg(ctx));
    rt_clear_error(ctx);
    CHECKF(distill_images(ctx, b, 1, 0, NULL) == 0, "%s", rt_errmsg(ctx));
    /* the student, the aux state (adapters, z, VID, CRD memory) and the per-step log end identical */
    CHECK(same_bytes(a, b, "checkpoint.safetensors"));
    CHECK(same_bytes(a, b, "distill_state.safetensors"));
    CHECK(same_bytes(a, b, "train_state.safetensors"));
    CHECK(same_bytes(a, b, "paths.jsonl"));
    CHECK(count_lines(b, "metrics.jsonl", "\"epoch\"") == 2);
    rt_ctx_free(ctx);
}
