/* YAML configs: nesting, types, lists, overrides, and errors that name file, line and key. */
#include "retort/config.h"
#include "test.h"
#include <unistd.h>

typedef struct {
    int64_t epochs;
    double lr;
    int nesterov;
    char arch[RT_CFG_STR_MAX];
    rt_cfg_list milestones;
    rt_cfg_strlist paths;
} cfg_t;

static const rt_cfg_field schema[] = {
    {"epochs", RT_CFG_INT, offsetof(cfg_t, epochs), "10", "epochs"},
    {"model.arch", RT_CFG_STR, offsetof(cfg_t, arch), "resnet8", "architecture"},
    {"optim.lr", RT_CFG_FLOAT, offsetof(cfg_t, lr), "0.1", "learning rate"},
    {"optim.nesterov", RT_CFG_BOOL, offsetof(cfg_t, nesterov), "false", "Nesterov"},
    {"sched.milestones", RT_CFG_FLOATLIST, offsetof(cfg_t, milestones), "[30, 60]", "milestones"},
    {"distill.paths", RT_CFG_STRLIST, offsetof(cfg_t, paths), "[st]", "paths"},
};
#define NF (int)(sizeof schema / sizeof schema[0])

static const char *write_tmp(const char *text) {
    static char path[64];
    snprintf(path, sizeof path, "%s/rt_cfg_%d.yaml", rt_test_tmp(), (int)getpid());
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

TEST(defaults_file_and_overrides) {
    rt_ctx *ctx = rt_ctx_new();
    cfg_t c;
    CHECK(rt_config_load(ctx, schema, NF, &c, NULL, 0, NULL) == 0);
    CHECK(c.epochs == 10 && c.lr == 0.1 && !c.nesterov && !strcmp(c.arch, "resnet8") && c.milestones.n == 2 &&
          c.milestones.v[1] == 60);
    const char *p = write_tmp("epochs: 3\nmodel:\n  arch: wrn_16_2\noptim:\n  lr: 0.05\n  nesterov: yes\n"
                              "sched:\n  milestones: [5, 8, 9]\ndistill:\n  paths: [st, \"at\", nst]\n");
    char *ov[] = {"optim.lr=0.01", "sched.milestones=[1,2]"};
    CHECKF(rt_config_load(ctx, schema, NF, &c, p, 2, ov) == 0, "%s", rt_errmsg(ctx));
    CHECK(c.epochs == 3 && c.lr == 0.01 && c.nesterov && !strcmp(c.arch, "wrn_16_2"));
    CHECK(c.paths.n == 3 && !strcmp(c.paths.v[0], "st") && !strcmp(c.paths.v[1], "at") && !strcmp(c.paths.v[2], "nst"));
    CHECK(c.milestones.n == 2 && c.milestones.v[0] == 1 && c.milestones.v[1] == 2);
    rt_ctx_free(ctx);
}

TEST(errors_name_key_and_line) {
    rt_ctx *ctx = rt_ctx_new();
    cfg_t c;
    const char *p = write_tmp("epochs: 3\noptim:\n  lrr: 0.05\n");
    CHECK(rt_config_load(ctx, schema, NF, &c, p, 0, NULL) == RT_EINVAL);
    CHECKF(strstr(rt_errmsg(ctx), ":3:") && strstr(rt_errmsg(ctx), "unknown key 'optim.lrr'") &&
               strstr(rt_errmsg(ctx), "optim.lr"),
           "%s", rt_errmsg(ctx));
    rt_clear_error(ctx);
    p = write_tmp("epochs: ten\n");
    CHECK(rt_config_load(ctx, schema, NF, &c, p, 0, NULL) == RT_EINVAL);
    CHECKF(strstr(rt_errmsg(ctx), ":1:") && strstr(rt_errmsg(ctx), "'epochs' expects an integer, got 'ten'"), "%s",
           rt_errmsg(ctx));
    rt_clear_error(ctx);
    p = write_tmp("optim:\n  nesterov: maybe\n");
    CHECK(rt_config_load(ctx, schema, NF, &c, p, 0, NULL) == RT_EINVAL && strstr(rt_errmsg(ctx), "true or false"));
    rt_clear_error(ctx);
    p = write_tmp("epochs: [1, 2]\n");
    CHECK(rt_config_load(ctx, schema, NF, &c, p, 0, NULL) == RT_EINVAL && strstr(rt_errmsg(ctx), "single value"));
    rt_clear_error(ctx);
    p = write_tmp("model:\n  arch: {a: 1}\n");
    CHECK(rt_config_load(ctx, schema, NF, &c, p, 0, NULL) == RT_EINVAL && strstr(rt_errmsg(ctx), "got a mapping"));
    rt_clear_error(ctx);
    p = write_tmp("epochs: \"unterminated\n");
    CHECKF(rt_config_load(ctx, schema, NF, &c, p, 0, NULL) == RT_EFORMAT && strstr(rt_errmsg(ctx), "YAML error"), "%s", rt_errmsg(ctx));
    rt_clear_error(ctx);
    char *ov[] = {"epochs"};
    CHECK(rt_config_load(ctx, schema, NF, &c, NULL, 1, ov) == RT_EINVAL && strstr(rt_errmsg(ctx), "key=value"));
    rt_clear_error(ctx);
    CHECK(rt_config_load(ctx, schema, NF, &c, "/nonexistent/x.yaml", 0, NULL) == RT_EIO &&
          strstr(rt_errmsg(ctx), "/nonexistent/x.yaml"));
    rt_ctx_free(ctx);
}

TEST(write_reads_back) {
    rt_ctx *ctx = rt_ctx_new();
    cfg_t c, d;
    char *ov[] = {"optim.lr=0.025", "model.arch=resnet20", "sched.milestones=[3,4,5]", "distill.paths=[at,sp]"};
    CHECK(rt_config_load(ctx, schema, NF, &c, NULL, 4, ov) == 0);
    char path[64];
    snprintf(path, sizeof path, "%s/rt_cfgw_%d.yaml", rt_test_tmp(), (int)getpid());
    FILE *f = fopen(path, "w");
    CHECK(rt_config_write(schema, NF, &c, f) == 0);
    fclose(f);
    CHECKF(rt_config_load(ctx, schema, NF, &d, path, 0, NULL) == 0, "%s", rt_errmsg(ctx));
    CHECK(d.lr == c.lr && !strcmp(d.arch, "resnet20") && d.milestones.n == 3 && d.milestones.v[2] == 5);
    CHECK(d.paths.n == 2 && !strcmp(d.paths.v[1], "sp"));
    remove(path);
    rt_ctx_free(ctx);
}

/* Every config shipped under configs/ parses against its command's schema (run from the repo root). */
#include <dirent.h>
#include "retort/distill.h"
#include "retort/train.h"
static int check_dir(rt_ctx *ctx, const char *dir, int distill, int *count) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) && !rc) {
        size_t n = strlen(e->d_name);
        if (n < 6 || strcmp(e->d_name + n - 5, ".yaml")) continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (distill) {
            rt_distill_cfg *c = calloc(1, sizeof *c);
            rc = rt_config_load(ctx, rt_distill_schema, rt_distill_schema_len, c, path, 0, NULL);
            free(c);
        } else {
            rt_train_cfg c;
            rc = rt_config_load(ctx, rt_train_schema, rt_train_schema_len, &c, path, 0, NULL);
        }
        (*count)++;
    }
    closedir(d);
    return rc;
}
TEST(shipped_configs_parse) {
    rt_ctx *ctx = rt_ctx_new();
    int count = 0;
    CHECKF(check_dir(ctx, "configs", 0, &count) == 0, "%s", rt_errmsg(ctx));
    CHECKF(check_dir(ctx, "configs/distill", 1, &count) == 0, "%s", rt_errmsg(ctx));
    if (!count) printf("note: no configs/ here (run from the repository root)\n");
    rt_ctx_free(ctx);
}
