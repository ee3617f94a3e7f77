/* The `retort` command: train, eval and info over the library. The only place errors become exit
 * codes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "retort/retort.h"
#include "retort/train.h"
#include "retort/distill.h"
#include "retort/plot.h"

static const char *usage =
    "usage: retort COMMAND [ARGS]\n"
    "\n"
    "Knowledge distillation in C. Commands:\n"
    "  train CONFIG [key=value ...] [--resume]   train a model (a teacher, or a student from scratch)\n"
    "  distill CONFIG [key=value ...] [--resume] train a student from a teacher along distillation paths\n"
    "  search CONFIG [key=value ...]             choose path weights on a validation split (grid/random)\n"
    "  eval CHECKPOINT [key=value ...]           accuracy of a checkpoint on a data set's test split\n"
    "  info CHECKPOINT                           metadata, tensors and parameter count of a checkpoint\n"
    "  plot RUN_DIR... | --out DIR RUN_DIR...    SVG charts of runs, or of several runs compared\n"
    "  help COMMAND                              help on one command\n"
    "\n"
    "Default data: Fashion-MNIST from Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist).\n";

static void print_schema(const rt_cfg_field *s, int n) {
    for (int i = 0; i < n; i++)
        printf("  %-22s %-28s %s\n", s[i].key, s[i].def && s[i].def[0] ? s[i].def : "\"\"", s[i].help);
}

static int help(const char *cmd) {
    if (cmd && !strcmp(cmd, "train")) {
        printf("usage: retort train CONFIG [key=value ...] [--resume]\n\n"
               "Trains per the YAML CONFIG ('-' or 'none' = defaults only); key=value pairs override it.\n"
               "Writes to out_dir: config.yaml, metrics.jsonl (one line per epoch), checkpoint.safetensors\n"
               "(PyTorch state_dict names) and train_state.safetensors (for --resume, which continues\n"
               "from the last completed epoch and ends bit-identical to an uninterrupted run).\n\n"
               "Keys (default, meaning):\n");
        print_schema(rt_train_schema, rt_train_schema_len);
        printf("\nArchitectures:");
        for (const char *const *a = rt_model_archs(); *a; a++) printf(" %s", *a);
        printf("\n");
        return 0;
    }
    if (cmd && !strcmp(cmd, "distill")) {
        printf("usage: retort distill CONFIG [key=value ...] [--resume]\n\n"
               "Trains the student (model.*) with CE + alpha * aggregate(path losses) from the teacher checkpoint.\n"
               "Paths: st (soft targets, KL*T^2), l2 (l2 on logits), dkd; on taps: at (attention transfer), nst,\n"
               "fitnet, hcl, mse, fsp (flow matrices of consecutive fsp.taps pairs), vid (variational information,\n"
               "a learned regressor and variances per tap), sp, rkd, pkt, cc, crd (contrastive: embedding heads,\n"
               "crd.nce_k negatives per sample from memory banks of the training set). A feature path reads the\n"
               "taps in <loss>.taps (stem, layer1..3, layer1.pre.., pool, logits) through <loss>.adapter:\n"
               "conv1x1 or conv3x3 (conv + BN to the teacher's channels; the default of fitnet, hcl, mse), linear\n"
               "(flat taps such as pool), none (the default of the others). Adapters, the adaptive z and the\n"
               "VID/CRD heads are trained by their own optimiser (same kind and schedule).\n"
               "Strategies: single, equal (v = 1), fixed (distill.weights), adaptive (v = exp(-z), z learned with\n"
               "the student, + sum z), multiobjective (min-norm point of the paths' gradients, every step).\n"
               "Writes metrics.jsonl (per epoch: test error, top-1 agreement error with the teacher, path losses\n"
               "and weights, ms/step), paths.jsonl (every distill.log_every steps), the student's checkpoint and,\n"
               "every epoch, train_state.safetensors + distill_state.safetensors (aux parameters, CRD memory,\n"
               "optimiser states) for --resume, which continues after the last completed epoch and ends\n"
               "bit-identical to an uninterrupted run (same threads). stop_after=N stops after N epochs.\n\n"
               "Keys (default, meaning):\n");
        print_schema(rt_distill_schema, rt_distill_schema_len);
        return 0;
    }
    if (cmd && !strcmp(cmd, "search")) {
        printf("usage: retort search CONFIG [key=value ...]\n\n"
               "The 'search' strategy: trains the distillation of CONFIG (strategy fixed) once per candidate\n"
               "set of path weights, on data.val held-out samples (required), and picks the weights with the\n"
               "best validation accuracy. search.mode grid tries every combination of search.values;\n"
               "random draws search.trials log-uniform sets. Writes out_dir/search.jsonl and\n"
               "out_dir/best.txt (a distill.weights=[...] override for retort distill).\n");
        return 0;
    }
    if (cmd && !strcmp(cmd, "eval")) {
        printf("usage: retort eval CHECKPOINT [data.name=... data.dir=... eval_batch=N threads=N]\n\n"
               "Evaluates the checkpoint on the test split of the data set (default Fashion-MNIST) and\n"
               "prints top-1 accuracy and mean cross-entropy.\n");
        return 0;
    }
    if (cmd && !strcmp(cmd, "info")) {
        printf("usage: retort info CHECKPOINT\n\nPrints the checkpoint's metadata, each tensor's name, dtype and\n"
               "shape, and the parameter count. Validates the file.\n");
        return 0;
    }
    if (cmd && !strcmp(cmd, "plot")) {
        printf("usage: retort plot RUN_DIR...\n       retort plot --out DIR RUN_DIR...\n\n"
               "Draws SVG charts from a run directory's metrics.jsonl and paths.jsonl into RUN_DIR/plots/:\n"
               "accuracy.svg and loss.svg per epoch, and for distillation runs weights.svg (path weights),\n"
               "path_losses.svg and cosine.svg (gradient cosine between paths) per step. With --out, compares\n"
               "the runs instead: DIR/accuracy.svg (test accuracy per epoch, one line per run), and loss.svg\n"
               "and agreement.svg when the runs have them. Unreadable lines are skipped with a warning.\n");
        return 0;
    }
    fputs(usage, cmd ? stderr : stdout);
    return cmd ? 2 : 0;
}

static int fail(rt_ctx *ctx) {
    fprintf(stderr, "retort: error: %s\n", rt_errmsg(ctx));
    rt_ctx_free(ctx);
    return 1;
}

static int cmd_train(int argc, char **argv) {
    if (argc < 1) return help("train"), 2;
    rt_ctx *ctx = rt_ctx_new();
    rt_train_cfg cfg;
    int resume = 0, nov = 0;
    char **ov = calloc((size_t)argc, sizeof *ov);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--resume")) resume = 1;
        else ov[nov++] = argv[i];
    }
    const char *path = !strcmp(argv[0], "-") || !strcmp(argv[0], "none") ? NULL : argv[0];
    int rc = rt_config_load(ctx, rt_train_schema, rt_train_schema_len, &cfg, path, nov, ov);
    free(ov);
    if (!rc) rc = rt_train_run(ctx, &cfg, resume);
    if (rc) return fail(ctx);
    printf("done: %s/checkpoint.safetensors, metrics in %s/metrics.jsonl\n", cfg.out_dir, cfg.out_dir);
    rt_ctx_free(ctx);
    return 0;
}

static int cmd_distill(int argc, char **argv) {
    if (argc < 1) return help("distill"), 2;
    rt_ctx *ctx = rt_ctx_new();
    rt_distill_cfg *cfg = calloc(1, sizeof *cfg);
    int resume = 0, nov = 0;
    char **ov = calloc((size_t)argc, sizeof *ov);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--resume")) resume = 1;
        else ov[nov++] = argv[i];
    }
    const char *path = !strcmp(argv[0], "-") || !strcmp(argv[0], "none") ? NULL : argv[0];
    int rc = rt_config_load(ctx, rt_distill_schema, rt_distill_schema_len, cfg, path, nov, ov);
    free(ov);
    rt_distill_summary s = {0};
    if (!rc) rc = rt_distill_run(ctx, cfg, resume, &s);
    if (rc) {
        free(cfg);
        return fail(ctx);
    }
    printf("teacher %.2f%% | student %s %.2f%% (top-1 error %.2f%%), agreement error %.2f%% | %.1f ms/step\n",
           100 * s.teacher_acc, cfg->train.arch, 100 * s.student_acc, 100 * (1 - s.student_acc), 100 * s.agree_err,
           s.ms_per_step);
    if (s.scratch_acc >= 0)
        printf("the same student trained alone: %.2f%%; distillation gained %+.2f points\n", 100 * s.scratch_acc,
               100 * (s.student_acc - s.scratch_acc));
    printf("run directory: %s\n", cfg->train.out_dir);
    free(cfg);
    rt_ctx_free(ctx);
    return 0;
}

static int cmd_search(int argc, char **argv) {
    if (argc < 1) return help("search"), 2;
    rt_ctx *ctx = rt_ctx_new();
    rt_distill_cfg *cfg = calloc(1, sizeof *cfg);
    const char *path = !strcmp(argv[0], "-") || !strcmp(argv[0], "none") ? NULL : argv[0];
    int rc = rt_config_load(ctx, rt_distill_schema, rt_distill_schema_len, cfg, path, argc - 1, argv + 1);
    if (!rc) rc = rt_distill_search(ctx, cfg, NULL, NULL);
    free(cfg);
    if (rc) return fail(ctx);
    rt_ctx_free(ctx);
    return 0;
}

static int cmd_eval(int argc, char **argv) {
    if (argc < 1) return help("eval"), 2;
    rt_ctx *ctx = rt_ctx_new();
    rt_train_cfg cfg;
    int rc = rt_config_load(ctx, rt_train_schema, rt_train_schema_len, &cfg, NULL, argc - 1, argv + 1);
    if (rc) return fail(ctx);
    if (cfg.threads > 0) rt_set_threads((int)cfg.threads);
    rt_model *m = NULL;
    float mean[16], std[16];
    int ch = 0;
    if ((rc = rt_model_load(ctx, argv[0], &m, mean, std, &ch))) return fail(ctx);
    rt_run_data d;
    cfg.data.normalize = 0; /* the checkpoint's own statistics apply */
    if ((rc = rt_run_data_load(ctx, &cfg.data, (uint64_t)cfg.seed, &d))) {
        rt_model_free(m);
        return fail(ctx);
    }
    double acc = 0, loss = 0;
    if (d.test->c != ch) rc = rt_fail(ctx, RT_ESHAPE, "eval: the data has %lld channels, the model %d", (long long)d.test->c, ch);
    if (!rc) rc = rt_evaluate(ctx, m, d.test, mean, std, cfg.eval_batch, &acc, &loss, NULL);
    if (!rc) printf("%s on %s test (%lld samples): top-1 accuracy %.2f%%, loss %.4f\n", m->arch, cfg.data.name,
                    (long long)d.test->n, 100 * acc, loss);
    rt_run_data_free(&d);
    rt_model_free(m);
    if (rc) return fail(ctx);
    rt_ctx_free(ctx);
    return 0;
}

static int cmd_info(int argc, char **argv) {
    if (argc < 1) return help("info"), 2;
    rt_ctx *ctx = rt_ctx_new();
    rt_safetensors *st = NULL;
    if (rt_st_read(ctx, argv[0], &st)) return fail(ctx);
    printf("%s: %d tensors, %zu bytes of data\n", argv[0], st->count, st->data_len);
    for (int i = 0; i < st->nmeta; i++)
        if (strcmp(st->meta_keys[i], "config")) printf("  meta %-12s %s\n", st->meta_keys[i], st->meta_values[i]);
    int64_t params = 0;
    for (int i = 0; i < st->count; i++) {
        const rt_st_entry *e = &st->entries[i];
        int64_t n = 1;
        char shape[128] = "(";
        for (int d = 0; d < e->ndim; d++) {
            n *= e->shape[d];
            snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%lld", d ? "," : "", (long long)e->shape[d]);
        }
        strcat(shape, ")");
        if (!strstr(e->name, "running_") && !strstr(e->name, "num_batches_tracked")) params += n;
        printf("  %-40s %-4s %s\n", e->name, e->dtype, shape);
    }
    printf("parameters: %lld\n", (long long)params);
    rt_st_free(st);
    rt_ctx_free(ctx);
    return 0;
}

static int cmd_plot(int argc, char **argv) {
    const char *out = NULL;
    if (argc >= 2 && !strcmp(argv[0], "--out")) out = argv[1], argc -= 2, argv += 2;
    if (argc < 1) return help("plot"), 2;
    rt_ctx *ctx = rt_ctx_new();
    int rc = 0;
    if (out) rc = rt_plot_compare(ctx, argc, (const char *const *)argv, out);
    for (int i = 0; i < argc && !out && !rc; i++) rc = rt_plot_run(ctx, argv[i]);
    if (rc) return fail(ctx);
    if (out) printf("plots in %s/\n", out);
    else
        for (int i = 0; i < argc; i++) printf("plots in %s/plots/\n", argv[i]);
    rt_ctx_free(ctx);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) return help(NULL);
    const char *cmd = argv[1];
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return help(cmd);
    if (!strcmp(cmd, "help")) return help(argc > 2 ? argv[2] : NULL);
    if (!strcmp(cmd, "train")) return cmd_train(argc - 2, argv + 2);
    if (!strcmp(cmd, "eval")) return cmd_eval(argc - 2, argv + 2);
    if (!strcmp(cmd, "distill")) return cmd_distill(argc - 2, argv + 2);
    if (!strcmp(cmd, "plot")) return cmd_plot(argc - 2, argv + 2);
    if (!strcmp(cmd, "search")) return cmd_search(argc - 2, argv + 2);
    if (!strcmp(cmd, "info")) return cmd_info(argc - 2, argv + 2);
    fprintf(stderr, "retort: unknown command '%s'\n\n", cmd);
    return help("?");
}
