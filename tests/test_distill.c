/* `retort distill` end to end on small data: every strategy runs and logs, the adaptive z moves
 * towards ln(w L), min-norm weights lie on the simplex, misconfiguration lists the taps. */
#include <unistd.h>

#include "retort/retort.h"
#include "test.h"

static char teacher_dir[128];

/* A quickly trained MLP teacher on the synthetic data (made once). */
static int make_teacher(rt_ctx *ctx) {
    if (teacher_dir[0]) return 0;
    snprintf(teacher_dir, sizeof teacher_dir, "/tmp/rt_distill_teacher_%d", (int)getpid());
    char out[200];
    snprintf(out, sizeof out, "out_dir=%s", teacher_dir);
    char *ov[] = {"data.name=synth", "model.arch=mlp", "model.hidden=64", "epochs=3", "batch_size=100", "optim.lr=0.1", out};
    rt_train_cfg cfg;
    int rc = rt_config_load(ctx, rt_train_schema, rt_train_schema_len, &cfg, NULL, 7, ov);
    return rc ? rc : rt_train_run(ctx, &cfg, 0);
}

static int distill(rt_ctx *ctx, const char *name, int n, char **extra, rt_distill_summary *s, char *dir) {
    char t[300], out[200];
    snprintf(t, sizeof t, "teacher=%s/checkpoint.safetensors", teacher_dir);
    snprintf(dir, 128, "/tmp/rt_distill_%s_%d", name, (int)getpid());
    snprintf(out, sizeof out, "out_dir=%s", dir);
    char *ov[24] = {"data.name=synth", "model.arch=mlp", "model.hidden=16", "epochs=2", "batch_size=100",
                    "optim.lr=0.05", "distill.log_every=10", t, out};
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
        char *ex[] = {st, "distill.paths=[st, l2, pkt, sp]", "sp.taps=[pool]", "pkt.taps=[hidden1]",
                      "distill.weights=[1, 0.5, 1, 1]", "distill.cos_every=5"};
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
    snprintf(out, sizeof out, "out_dir=/tmp/rt_search_%d", (int)getpid());
    char *ov[] = {"data.name=synth", "data.val=400", "model.arch=mlp", "model.hidden=16", "epochs=1", "batch_size=100",
                  "distill.paths=[st, l2]", "search.values=[0, 1]", t, out};
    rt_distill_cfg *cfg = calloc(1, sizeof *cfg);
    CHECK(rt_config_load(ctx, rt_distill_schema, rt_distill_schema_len, cfg, NULL, 10, ov) == 0);
    float best[8];
    int K = 0;
    CHECKF(rt_distill_search(ctx, cfg, best, &K) == 0, "%s", rt_errmsg(ctx));
    CHECK(K == 2 && (best[0] == 0 || best[0] == 1) && (best[1] == 0 || best[1] == 1));
    /* four trials were logged and the chosen one has the highest validation accuracy */
    char p[256], line[1024];
    snprintf(p, sizeof p, "/tmp/rt_search_%d/search.jsonl", (int)getpid());
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
