/* Training runs end to end on small synthetic data: learning happens, checkpoints reload to the
 * same accuracy, resume is bit-identical, bad configs are errors. */
#include <unistd.h>

#include "retort/retort.h"
#include "retort/train.h"
#include "test.h"

static int load_cfg(rt_ctx *ctx, rt_train_cfg *cfg, const char *out, int n, char **extra) {
    char outkv[600];
    snprintf(outkv, sizeof outkv, "out_dir=%s", out);
    char *ov[16] = {"data.name=synth", "model.arch=mlp", "model.hidden=32", "epochs=3", "batch_size=100",
                    "optim.lr=0.1", "threads=2", outkv};
    int k = 8;
    for (int i = 0; i < n; i++) ov[k++] = extra[i];
    return rt_config_load(ctx, rt_train_schema, rt_train_schema_len, cfg, NULL, k, ov);
}

static long file_bytes(const char *path, unsigned char **buf) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *buf = malloc(n);
    if (fread(*buf, 1, n, f) != (size_t)n) n = -1;
    fclose(f);
    return n;
}

TEST(train_learns_and_checkpoint_reloads) {
    rt_ctx *ctx = rt_ctx_new();
    rt_train_cfg cfg;
    char dir[64];
    snprintf(dir, sizeof dir, "%s/rt_train_a_%d", rt_test_tmp(), (int)getpid());
    CHECKF(load_cfg(ctx, &cfg, dir, 0, NULL) == 0, "%s", rt_errmsg(ctx));
    CHECKF(rt_train_run(ctx, &cfg, 0) == 0, "%s", rt_errmsg(ctx));
    /* the metrics file has one line per epoch, and the model beats chance (1/20) by far */
    char path[128];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "r");
    CHECK(f);
    char line[1024];
    int lines = 0;
    double acc = 0;
    while (fgets(line, sizeof line, f)) {
        lines++;
        char *p = strstr(line, "\"test_acc\": ");
        CHECK(p);
        acc = atof(p + 12);
    }
    fclose(f);
    CHECK(lines == 3);
    CHECKF(acc > 0.3, "test accuracy %.3f", acc);
    /* reloading the checkpoint gives the same test accuracy */
    snprintf(path, sizeof path, "%s/checkpoint.safetensors", dir);
    rt_model *m = NULL;
    float mean[16], std[16];
    CHECKF(rt_model_load(ctx, path, &m, mean, std, NULL) == 0, "%s", rt_errmsg(ctx));
    rt_run_data d;
    CHECK(rt_run_data_load(ctx, &cfg.data, (uint64_t)cfg.seed, &d) == 0);
    double acc2 = 0;
    CHECK(rt_evaluate(ctx, m, d.test, mean, std, 500, &acc2, NULL, NULL) == 0);
    CHECK_CLOSE(acc2, acc, 1e-6);
    rt_run_data_free(&d);
    rt_model_free(m);
    rt_ctx_free(ctx);
}

TEST(resume_is_bit_identical) {
    rt_ctx *ctx = rt_ctx_new();
    rt_train_cfg cfg;
    char a[64], b[64], pa[128], pb[128];
    snprintf(a, sizeof a, "%s/rt_train_full_%d", rt_test_tmp(), (int)getpid());
    snprintf(b, sizeof b, "%s/rt_train_resumed_%d", rt_test_tmp(), (int)getpid());
    CHECK(load_cfg(ctx, &cfg, a, 0, NULL) == 0);
    CHECKF(rt_train_run(ctx, &cfg, 0) == 0, "%s", rt_errmsg(ctx));
    char *stop[] = {"stop_after=1"};
    CHECK(load_cfg(ctx, &cfg, b, 1, stop) == 0);
    CHECKF(rt_train_run(ctx, &cfg, 0) == 0, "%s", rt_errmsg(ctx)); /* "interrupted" after epoch 1 */
    CHECK(load_cfg(ctx, &cfg, b, 0, NULL) == 0);
    CHECKF(rt_train_run(ctx, &cfg, 1) == 0, "%s", rt_errmsg(ctx));
    snprintf(pa, sizeof pa, "%s/checkpoint.safetensors", a);
    snprintf(pb, sizeof pb, "%s/checkpoint.safetensors", b);
    unsigned char *ba, *bb;
    long na = file_bytes(pa, &ba), nb = file_bytes(pb, &bb);
    CHECK(na > 0 && na == nb);
    CHECK(memcmp(ba, bb, na) == 0);
    free(ba);
    free(bb);
    rt_ctx_free(ctx);
}

TEST(bad_config_values_are_errors) {
    rt_ctx *ctx = rt_ctx_new();
    rt_train_cfg cfg;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/rt_train_bad_%d", rt_test_tmp(), (int)getpid());
    char *bad_arch[] = {"model.arch=resnet9"};
    CHECK(load_cfg(ctx, &cfg, dir, 1, bad_arch) == 0);
    CHECK(rt_train_run(ctx, &cfg, 0) != 0);
    CHECKF(strstr(rt_errmsg(ctx), "resnet9") && strstr(rt_errmsg(ctx), "resnet8"), "%s", rt_errmsg(ctx));
    rt_clear_error(ctx);
    char *bad_data[] = {"data.name=mnist2"};
    CHECK(load_cfg(ctx, &cfg, dir, 1, bad_data) == 0);
    CHECK(rt_train_run(ctx, &cfg, 0) != 0 && strstr(rt_errmsg(ctx), "mnist2"));
    rt_clear_error(ctx);
    char *bad_dir[] = {"data.name=idx", "data.dir=/nonexistent"};
    CHECK(load_cfg(ctx, &cfg, dir, 2, bad_dir) == 0);
    CHECK(rt_train_run(ctx, &cfg, 0) != 0 && strstr(rt_errmsg(ctx), "/nonexistent"));
    rt_ctx_free(ctx);
}
