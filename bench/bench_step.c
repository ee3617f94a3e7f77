/* Benchmarks of whole steps on synthetic data (batch 64, 3x32x32, 100 classes), each also reported
 * as "direct-convolution GFLOP/s" against OpenBLAS's large-sgemm rate on the same machine:
 *
 *   kd       the distillation step of issue 7: teacher resnet56 forward (eval mode, grad off),
 *            student resnet20 forward and backward (training mode), loss = CE + soft target (T 4,
 *            weight 1) + 1000 * sum of attention transfer on the taps layer1, layer2, layer3 (as
 *            RepDistiller), SGD step (lr 0.05, momentum 0.9, weight decay 5e-4) on the student
 *   train    the student alone: resnet20 forward, CE, backward, the same SGD step
 *   teacher  the teacher's inference alone: resnet56 forward, eval mode, grad off
 *
 * then each distinct conv shape of resnet20 (forward, backward-data, backward-weight). The steps
 * report img/s (from the median step time), ms/step, the arena high-water mark and the peak RSS of
 * the step (VmHWM, reset through /proc/self/clear_refs before each step's timed loop where Linux
 * allows it, so one process running several steps still reports each one's own peak; it includes
 * what is resident then: the program, the libraries, the models).
 *
 * FLOP convention ("direct-conv FLOPs"): every convolution of the step counts
 * 2*N*OC*OH*OW*(C/groups)*KH*KW per pass, the work of a direct convolution; batch norm, ReLU, the
 * classifier, pooling, the losses and the optimiser count nothing. A forward is one pass; a
 * student's backward is two (data and weight gradients), except the student's first conv, whose
 * input needs no gradient (one pass, weight only). The teacher runs forward only. So per step:
 * teacher = F(resnet56), train = 3 F(resnet20) - F(conv1), kd = their sum. GFLOP/s = those FLOPs /
 * the median step time, and the share is that over OpenBLAS's cblas_sgemm rate on square
 * matrices (default 2048, best of 3 after one warm-up), the machine's practical ceiling.
 *
 * bench/torch_step.py is the PyTorch twin (same steps, same FLOP count); bench/run compares them.
 * Built and run by `make bench`.
 *
 * In the kd step the teacher runs through rt_model_forward_keep: only its logits and AT taps outlive
 * its forward (copied out of the arena), so its activations do not stay in the arena under the
 * student's forward and backward; --teacher-chunk N also feeds it N samples at a time (its own arena
 * peak shrinks with N), --no-keep runs the ordinary forward instead (for comparison).
 *
 *   bench_step [--mode all|kd|train|teacher[,...]] [--threads N] [--iters N] [--warmup N] [--batch N]
 *              [--step-only | --kernels-only | --gemm-only | --cache-probe] [--no-gemm] [--gemm-size N] [--json]
 *              [--no-keep] [--teacher-chunk N] [--profile [N]] [--profile-rows N]
 * --iters sets every timed count (default: train and teacher 10, kd 5, conv shapes 20); --warmup
 * every warm-up (default 3, kd 2). --profile runs N more steps per mode (default 3) after the timed
 * ones with the profiler on (rt_profile_enable) and prints its tables: per op kind (forward,
 * backward, other), per layer at depth 2 ("teacher.layer1"), and the --profile-rows (default 15)
 * costliest layers; with --json, each step's object gets its "profile" (rt_profile_json).
 * --cache-probe only checks the host: the GB/s of a triad over the shared L3's size and over 8 times
 * that (bench/run prints it before and after its runs; a low L3 figure means other tenants hold the
 * cache, and multi-thread steps slow down).
 * Environment: RETORT_BENCH_THREADS, RETORT_BENCH_ITERS (defaults for --threads and --iters). --json
 * prints one line; with a single step mode its keys are also at the top level (as torch_step.py
 * prints them). */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "kernels/cpu.h"
#include "retort/kd.h"
#include "retort/optim.h"

/* The distinct conv shapes of resnet20 on 3x32x32: the same table, in the same order, as
 * CONV_SHAPES in bench/torch_step.py. count = how many convs of the model have that shape. */
typedef struct {
    const char *name;
    int64_t c, oc, h, k, stride, pad, count;
} conv_shape;
static const conv_shape k_convs[] = {
    {"conv1", 3, 16, 32, 3, 1, 1, 1},      {"l1.conv", 16, 16, 32, 3, 1, 1, 6}, {"l2.0.conv1", 16, 32, 32, 3, 2, 1, 1},
    {"l2.0.down", 16, 32, 32, 1, 2, 0, 1}, {"l2.conv", 32, 32, 16, 3, 1, 1, 5}, {"l3.0.conv1", 32, 64, 16, 3, 2, 1, 1},
    {"l3.0.down", 32, 64, 16, 1, 2, 0, 1}, {"l3.conv", 64, 64, 8, 3, 1, 1, 5},
};
enum { NCONV = sizeof k_convs / sizeof k_convs[0] };

/* The step benchmarks, in the order `--mode all` runs and prints them. */
typedef enum { MODE_KD = 0, MODE_TRAIN = 1, MODE_TEACHER = 2, NMODES = 3 } step_mode;
static const char *const k_mode_names[NMODES] = {"kd", "train", "teacher"};
static const char *const k_mode_titles[NMODES] = {"kd step", "train step", "teacher inference"};
#define STUDENT_ARCH "resnet20"
#define TEACHER_ARCH "resnet56"
#define STUDENT_DEPTH 20
#define TEACHER_DEPTH 56
#define KD_T 4.0f
#define KD_W_ST 1.0f
#define KD_W_AT RT_KD_W_AT      /* 1000, RepDistiller's beta */
#define DEFAULT_TEACHER_CHUNK 0 /* --teacher-chunk: the whole batch at once */
static const char *const k_at_taps[3] = {"layer1", "layer2", "layer3"};

typedef struct {
    int threads, warmup, batch, classes, json, do_kernels, do_gemm, gemm_size, kiters, gemm_child, do_probe;
    int keep, teacher_chunk, profile, profile_rows;
    int iters[NMODES], warmups[NMODES];
    int modes[NMODES]; /* which step modes run */
} bench_opts;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Peak RSS: VmHWM from /proc/self/status (resettable), else getrusage's (whole process). */
static double peak_rss_mb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (f) {
        char line[256];
        long kb = -1;
        while (fgets(line, sizeof line, f))
            if (!strncmp(line, "VmHWM:", 6)) {
                kb = atol(line + 6);
                break;
            }
        fclose(f);
        if (kb >= 0) return (double)kb / 1024.0;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0; /* Linux: KiB */
}

/* Resets VmHWM to the current RSS (Linux >= 4.0); silently nothing where not allowed. */
static void peak_rss_reset(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return;
    fputs("5", f);
    fclose(f);
}


static void fill_normal(rt_rng *r, float *p, int64_t n, float scale) {
    for (int64_t i = 0; i < n; i++) p[i] = scale * rt_rng_normal(r);
}

static int check(rt_ctx *ctx, const char *what) {
    if (!rt_status(ctx)) return 0;
    fprintf(stderr, "bench_step: %s failed: %s\n", what, rt_errmsg(ctx));
    return 1;
}

/* ---- direct-conv FLOPs of the CIFAR ResNets ---- */

/* Forward FLOPs of every conv of RepDistiller's CIFAR ResNet of the given depth (filters 16/16/32/64,
 * BasicBlocks, 1x1 stride-2 downsample where the shape changes) on N x in_c x size x size; *first
 * gets the stem conv's share. Cross-checked against the model's conv weights by conv_flops_check. */
static double resnet_conv_flops(int depth, int64_t N, int64_t in_c, int64_t size, double *first, int64_t *weights) {
    static const int64_t filters[4] = {16, 16, 32, 64};
    int n = (depth - 2) / 6;
    double f = 2.0 * (double)(N * filters[0] * size * size * in_c * 9);
    int64_t w = filters[0] * in_c * 9, inplanes = filters[0], h = size;
    if (first) *first = f;
    for (int s = 0; s < 3; s++) {
        int64_t planes = filters[s + 1];
        for (int b = 0; b < n; b++) {
            int64_t st = (b == 0 && s > 0) ? 2 : 1, oh = (h + 2 - 3) / st + 1;
            f += 2.0 * (double)(N * planes * oh * oh * inplanes * 9); /* conv1 */
            f += 2.0 * (double)(N * planes * oh * oh * planes * 9);   /* conv2 */
            w += planes * inplanes * 9 + planes * planes * 9;
            if (st != 1 || inplanes != planes) {
                f += 2.0 * (double)(N * planes * oh * oh * inplanes); /* downsample 1x1 */
                w += planes * inplanes;
            }
            inplanes = planes;
            h = oh;
        }
    }
    if (weights) *weights = w;
    return f;
}

/* The conv weight count the formula assumed must be the model's (every 4-D parameter is a conv). */
static int conv_flops_check(const rt_model *m, int64_t expect_weights) {
    int64_t w = 0;
    for (int i = 0; i < m->params.count; i++) {
        const rt_param *p = m->params.items[i];
        if (p->kind == RT_PARAM && p->t.ndim == 4) w += (int64_t)p->numel;
    }
    if (w == expect_weights) return 0;
    fprintf(stderr, "bench_step: %s has %lld conv weights, the FLOP count assumed %lld\n", m->arch, (long long)w,
            (long long)expect_weights);
    return 1;
}

/* ---- the steps ---- */

typedef struct {
    int ran;
    double ms_mean, ms_median, img_per_s, loss, ce, st, at; /* loss terms: kd only (at unweighted) */
    double gflop;                                           /* direct-conv work per step */
    double rss_mb;
    size_t highwater;
    char *profile_text, *profile_json; /* --profile: the tables and the JSON (malloc'd) */
} step_result;

static rt_model *new_model(rt_ctx *ctx, const char *arch, int classes, uint64_t seed) {
    rt_model *m =
        rt_model_new(ctx, arch, &(rt_model_opts){.in_channels = 3, .in_size = 32, .num_classes = classes}, seed);
    if (!m && !rt_status(ctx))
        fprintf(stderr, "bench_step: rt_model_new(%s) returned NULL\n", arch);
    else if (check(ctx, "rt_model_new")) {
        rt_model_free(m);
        m = NULL;
    }
    return m;
}

/* A freshly initialised teacher in eval mode normalises with running statistics mean 0, var 1: through
 * 27 residual blocks its activations grow without bound and its logits are far from a trained
 * teacher's (soft-target loss ~70, and a student that follows them to CE ~50). So, untimed, the
 * teacher's BN running statistics are set to the batch statistics of the benchmark's batch: one
 * train-mode forward (grad off) moves each running value r0 to r1 = (1 - m) r0 + m s, whence
 * s = r0 + (r1 - r0) / m, with m rt_nn_batchnorm2d's momentum 0.1 (PyTorch's default). torch_step.py
 * does the same with momentum=None (a cumulative average: after one batch, its statistics). */
#define BN_MOMENTUM 0.1f
static int calibrate_bn(rt_model *m, float *xbuf, const int64_t *shape) {
    rt_paramset *ps = &m->params;
    rt_ctx *ctx = rt_ctx_new(); /* its own arena: the step's high-water mark stays the step's */
    float *before = malloc(ps->nbuf * sizeof(float));
    if (!ctx || !before) {
        free(before);
        rt_ctx_free(ctx);
        return 1;
    }
    memcpy(before, ps->buffers, ps->nbuf * sizeof(float));
    rt_model_train(m, 1);
    int prev = rt_set_grad_enabled(ctx, 0);
    rt_model_forward(ctx, m, rt_wrap(ctx, xbuf, 4, shape), NULL);
    rt_set_grad_enabled(ctx, prev);
    rt_model_train(m, 0);
    int rc = check(ctx, "teacher BN calibration");
    for (int i = 0; i < ps->count && !rc; i++) {
        const rt_param *p = ps->items[i];
        size_t len = strlen(p->name);
        int is_stat = p->kind == RT_BUFFER && !p->is_int &&
                      ((len > 13 && !strcmp(p->name + len - 13, ".running_mean")) ||
                       (len > 12 && !strcmp(p->name + len - 12, ".running_var")));
        for (size_t j = 0; is_stat && j < p->numel; j++) {
            float r0 = before[p->offset + j], r1 = p->t.data[j];
            p->t.data[j] = r0 + (r1 - r0) / BN_MOMENTUM;
        }
    }
    free(before);
    rt_ctx_free(ctx);
    return rc;
}

/* The teacher's forward, grad off, in the layer scope "teacher" (so the profile and errors tell it
 * from the student's layers of the same names). kept: through rt_model_forward_keep into keep. */
static rt_tensor *teacher_forward(rt_ctx *ctx, rt_model *teacher, rt_tensor *x, rt_taps *tt, rt_keep_buf *keep) {
    rt_tensor *lt;
    rt_scope_push(ctx, "teacher");
    if (keep)
        lt = rt_model_forward_keep(ctx, teacher, x, k_at_taps, 3, tt, keep);
    else {
        int prev = rt_set_grad_enabled(ctx, 0);
        lt = rt_model_forward(ctx, teacher, x, tt);
        rt_set_grad_enabled(ctx, prev);
    }
    rt_scope_pop(ctx);
    return lt;
}

/* One step of the mode; returns its loss tensor (NULL for the teacher's inference, and on error).
 * keep: the kd step's teacher goes through rt_model_forward_keep into it (NULL: ordinary forward). */
static rt_tensor *one_step(rt_ctx *ctx, step_mode mode, rt_model *teacher, rt_model *student, rt_tensor *x,
                           const int32_t *labels, rt_keep_buf *keep, step_result *res) {
    if (mode == MODE_TEACHER) {
        teacher_forward(ctx, teacher, x, NULL, NULL);
        return NULL;
    }
    /* both models build only the taps AT reads, as rt_distiller_step asks of them */
    rt_taps tt = {.want = k_at_taps, .nwant = 3}, ts = {.want = k_at_taps, .nwant = 3};
    rt_tensor *lt = NULL;
    if (mode == MODE_KD) lt = teacher_forward(ctx, teacher, x, &tt, keep);
    rt_scope_push(ctx, "student");
    rt_tensor *ls = rt_model_forward(ctx, student, x, mode == MODE_KD ? &ts : NULL);
    rt_scope_pop(ctx);
    rt_tensor *loss = rt_cross_entropy(ctx, ls, labels, 0.0f, RT_MEAN);
    if (mode == MODE_KD) {
        rt_tensor *ce = loss, *st = rt_kd_soft_target(ctx, ls, lt, KD_T, RT_MEAN), *at = NULL;
        for (int i = 0; i < 3; i++) {
            rt_tensor *fs = rt_taps_get(&ts, k_at_taps[i]), *ft = rt_taps_get(&tt, k_at_taps[i]);
            if (!fs || !ft) {
                rt_fail(ctx, RT_EINVAL, "kd step: tap '%s' missing from the %s", k_at_taps[i],
                        fs ? "teacher" : "student");
                return NULL;
            }
            rt_tensor *l = rt_kd_at(ctx, fs, ft, RT_MEAN);
            at = at ? rt_add(ctx, at, l) : l;
        }
        loss = rt_add(ctx, rt_add(ctx, ce, rt_mul_scalar(ctx, st, KD_W_ST)), rt_mul_scalar(ctx, at, KD_W_AT));
        if (!loss) return NULL;
        res->ce = ce->data[0];
        res->st = st->data[0];
        res->at = at->data[0];
    }
    if (rt_backward(ctx, loss)) return NULL;
    return loss;
}

/* The timings, the arena's high-water mark and the peak RSS of the timed steps. */
static void timed_result(rt_ctx *ctx, step_result *res, double *times, double total, int iters, int64_t B) {
    res->ms_mean = 1e3 * total / iters;
    res->ms_median = 1e3 * median(times, iters);
    res->img_per_s = (double)B / (res->ms_median / 1e3); /* median: robust to a busy machine */
    res->highwater = rt_arena_highwater(ctx);
    res->rss_mb = peak_rss_mb();
}

/* The profile of the steps just run, as text tables and as JSON, into res (malloc'd strings). */
static int profile_capture(rt_ctx *ctx, const bench_opts *o, step_result *res) {
    size_t len;
    FILE *f = open_memstream(&res->profile_text, &len);
    if (!f) return 1;
    int rc = rt_profile_print(ctx, f, o->profile_rows, 2);
    if (!rc) fprintf(f, "  costliest layers:\n");
    if (!rc) rc = rt_profile_print_layers(ctx, f, o->profile_rows, 0);
    fclose(f);
    if (rc || !(f = open_memstream(&res->profile_json, &len))) return 1;
    rc = rt_profile_json(ctx, f);
    fclose(f);
    len = res->profile_json ? strlen(res->profile_json) : 0;
    while (len && res->profile_json[len - 1] == '\n') res->profile_json[--len] = 0; /* one JSON line */
    return rc != 0;
}

static int bench_step(const bench_opts *o, step_mode mode, step_result *res) {
    rt_ctx *ctx = rt_ctx_new();
    if (!ctx) return 1;
    int64_t B = o->batch, shape[4] = {B, 3, 32, 32};
    int iters = o->iters[mode], warmup = o->warmups[mode];
    rt_model *teacher = NULL, *student = NULL;
    rt_optim *opt = NULL;
    rt_keep_buf keep = {.chunk = o->teacher_chunk};
    const int use_keep = mode == MODE_KD && o->keep;
    float *xbuf = malloc((size_t)(B * 3 * 32 * 32) * sizeof(float));
    int32_t *labels = malloc((size_t)B * sizeof(int32_t));
    double *times = malloc((size_t)iters * sizeof(double));
    int rc = 1;
    if (!xbuf || !labels || !times) goto done;
    double t_flop = 0, s_flop = 0, s_first = 0;
    int64_t t_w = 0, s_w = 0;
    if (mode != MODE_TRAIN) {
        if (!(teacher = new_model(ctx, TEACHER_ARCH, o->classes, 2))) goto done;
        rt_model_train(teacher, 0);
        t_flop = resnet_conv_flops(TEACHER_DEPTH, B, 3, 32, NULL, &t_w);
        if (conv_flops_check(teacher, t_w)) goto done;
    }
    if (mode != MODE_TEACHER) {
        if (!(student = new_model(ctx, STUDENT_ARCH, o->classes, 1))) goto done;
        rt_model_train(student, 1);
        s_flop = resnet_conv_flops(STUDENT_DEPTH, B, 3, 32, &s_first, &s_w);
        if (conv_flops_check(student, s_w)) goto done;
        /* torch.optim.SGD(lr 0.05, momentum 0.9, weight_decay 5e-4) over every parameter of the
         * student, as torch_step.py's SGD(student.parameters()) */
        rt_optim_cfg oc = rt_optim_defaults(RT_OPTIM_SGD);
        oc.lr = 0.05f;
        oc.momentum = 0.9f;
        oc.weight_decay = 5e-4f;
        opt = rt_optim_new(ctx, &oc, student->params.n);
        if (!opt || check(ctx, "rt_optim_new")) goto done;
    }
    res->gflop = 1e-9 * (t_flop + (student ? 3.0 * s_flop - s_first : 0.0));
    rt_rng rng;
    rt_rng_seed(&rng, 7);
    fill_normal(&rng, xbuf, B * 3 * 32 * 32, 1.0f);
    for (int64_t i = 0; i < B; i++) labels[i] = (int32_t)rt_rng_below(&rng, (uint64_t)o->classes);

    if (teacher && calibrate_bn(teacher, xbuf, shape)) goto done;
    peak_rss_reset(); /* the step's own peak from here (models and data already resident) */

    double total = 0;
    for (int it = 0; it < warmup + iters + o->profile; it++) {
        if (it == warmup + iters) { /* the timed steps are done: profiled ones follow */
            timed_result(ctx, res, times, total, iters, B);
            if (rt_profile_enable(ctx, 1)) goto done;
            rt_profile_reset(ctx);
        }
        double t0 = now_s();
        if (student) rt_params_zero_grad(&student->params);
        rt_tensor *x = rt_wrap(ctx, xbuf, 4, shape);
        rt_tensor *loss = one_step(ctx, mode, teacher, student, x, labels, use_keep ? &keep : NULL, res);
        if (check(ctx, k_mode_titles[mode])) goto done;
        if (student) {
            res->loss = loss->data[0];
            rt_optim_step(ctx, opt, student->params.data, student->params.grad, rt_optim_config(opt)->lr);
            if (check(ctx, "optimiser step")) goto done;
        }
        rt_step_reset(ctx);
        double t = now_s() - t0;
        if (it >= warmup && it < warmup + iters) times[it - warmup] = t, total += t;
    }
    if (!o->profile)
        timed_result(ctx, res, times, total, iters, B);
    else {
        rt_profile_enable(ctx, 0);
        if (profile_capture(ctx, o, res)) goto done;
    }
    res->ran = 1;
    rc = 0;
done:
    rt_keep_buf_free(&keep);
    rt_optim_free(opt);
    free(times);
    free(labels);
    free(xbuf);
    rt_model_free(student);
    rt_model_free(teacher);
    rt_ctx_free(ctx);
    return rc;
}

/* ---- the ceiling: OpenBLAS sgemm on large square matrices ---- */

typedef struct {
    double gflops, ms; /* best of the timed calls, with the core OpenBLAS chose */
    int n, threads;
    char core[32];
    /* When OpenBLAS runs a kernel without AVX-512 on a CPU with it (OPENBLAS_CORETYPE=Haswell in the
     * environment, or an OpenBLAS older than the CPU), the same sgemm is measured again in a child
     * process (OPENBLAS_CORETYPE is read when the library loads): with OPENBLAS_CORETYPE unset
     * (OpenBLAS's own choice; 0.3.21 picks Cooperlake on Zen 5) and, if that is no better, SkylakeX.
     * The ceiling is the fastest. */
    double alt_gflops;
    char alt_core[32];
} gemm_result;

static double gemm_ceiling(const gemm_result *g) { return g->alt_gflops > g->gflops ? g->alt_gflops : g->gflops; }

static int openblas_core_has_avx512(const char *core) {
    static const char *const names[] = {"skylakex", "cooperlake", "sapphirerapids", "zen4", "zen5"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcasecmp(core, names[i])) return 1;
    return 0;
}

/* Runs this program with --gemm-only --json under OPENBLAS_CORETYPE=core (NULL: unset); its sgemm
 * GFLOP/s (0 on failure) and the core it ran (core_out, 32 bytes). */
static double gemm_in_child(const bench_opts *o, const char *core, char *core_out) {
    char exe[4096], cmd[4400], saved[64] = "";
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    core_out[0] = 0;
    if (len <= 0 || memchr(exe, '\'', (size_t)len)) return 0;
    exe[len] = 0;
    snprintf(cmd, sizeof cmd, "'%s' --gemm-only --json --threads %d --gemm-size %d", exe, o->threads, o->gemm_size);
    const char *env = getenv("OPENBLAS_CORETYPE");
    if (env) snprintf(saved, sizeof saved, "%s", env);
    if (core)
        setenv("OPENBLAS_CORETYPE", core, 1);
    else
        unsetenv("OPENBLAS_CORETYPE");
    fflush(stdout);
    FILE *f = popen(cmd, "r");
    if (env)
        setenv("OPENBLAS_CORETYPE", saved, 1);
    else
        unsetenv("OPENBLAS_CORETYPE");
    if (!f) return 0;
    char line[2048];
    double g = 0;
    while (fgets(line, sizeof line, f)) {
        const char *k = strstr(line, "\"sgemm_gflops\": "), *c = strstr(line, "\"sgemm_core\": \"");
        if (k) g = atof(k + 16);
        if (c) {
            c += 15;
            size_t n = strcspn(c, "\"");
            snprintf(core_out, 32, "%.*s", (int)(n < 31 ? n : 31), c);
        }
    }
    return pclose(f) == 0 ? g : 0;
}

/* ---- host check: how much of the shared L3 and of memory this process gets now ---- */

typedef struct {
    double l3_mib;            /* the L3 this core shares (sysfs; 32 if unknown) */
    double l3_gbps, mem_gbps; /* triad over an L3-sized working set, and over 8 times that */
} probe_result;

/* Size of the L3 cache shared by cpu0 in MiB, from sysfs ("32768K"); 32 if it cannot be read. */
static double l3_mib(void) {
    FILE *f = fopen("/sys/devices/system/cpu/cpu0/cache/index3/size", "r");
    double v = 0;
    char unit = 'K';
    if (f) {
        if (fscanf(f, "%lf%c", &v, &unit) < 1) v = 0;
        fclose(f);
    }
    v = unit == 'M' ? v : unit == 'G' ? v * 1024 : v / 1024;
    return v >= 1 && v <= 4096 ? v : 32;
}

/* GB/s of b = 1.5 a + b over two arrays of `bytes` each (3 x bytes moved a pass), best of reps,
 * with the configured threads; 0 if out of memory. */
static double triad_gbps(size_t bytes, int reps) {
    size_t n = bytes / sizeof(float);
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
    double best = 0;
    if (a && b) {
#pragma omp parallel for schedule(static) /* first touch by the threads that stream it */
        for (size_t i = 0; i < n; i++) a[i] = (float)(i & 1023), b[i] = 0;
        for (int r = 0; r < reps; r++) {
            double t0 = now_s();
#pragma omp parallel for simd schedule(static)
            for (size_t i = 0; i < n; i++) b[i] = 1.5f * a[i] + b[i];
            double g = 3.0 * (double)(n * sizeof(float)) / (now_s() - t0) / 1e9;
            best = g > best ? g : best;
        }
    }
    free(a);
    free(b);
    return best;
}

/* The step's activations live in the L3, which the host's other tenants share: when they take it,
 * the L3-sized triad drops (here from about 250 to 70-150 GB/s at 2 threads) and the 2-thread step
 * slows by up to a quarter, while a cache-resident sgemm does not move. */
static void cache_probe(probe_result *p) {
    p->l3_mib = l3_mib();
    size_t half = (size_t)(p->l3_mib * 1024 * 1024 / 2);
    p->l3_gbps = triad_gbps(half, 20);
    p->mem_gbps = triad_gbps(8 * half, 5);
}

static int bench_gemm(const bench_opts *o, gemm_result *res) {
    int64_t n = o->gemm_size;
    size_t nn = (size_t)(n * n);
    float *a = malloc(nn * sizeof(float)), *b = malloc(nn * sizeof(float)), *c = calloc(nn, sizeof(float));
    if (!a || !b || !c) {
        free(a), free(b), free(c);
        fprintf(stderr, "bench_step: sgemm %lld: out of memory\n", (long long)n);
        return 1;
    }
    rt_rng rng;
    rt_rng_seed(&rng, 3);
    fill_normal(&rng, a, (int64_t)nn, 1.0f);
    fill_normal(&rng, b, (int64_t)nn, 1.0f);
    double best = 1e30;
    for (int it = 0; it < 4; it++) { /* one warm-up, best of 3 */
        double t0 = now_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)n, (int)n, 1.0f, a, (int)n, b, (int)n, 0.0f,
                    c, (int)n);
        double t = now_s() - t0;
        if (it > 0 && t < best) best = t;
    }
    free(a), free(b), free(c);
    res->n = (int)n;
    res->ms = 1e3 * best;
    res->gflops = 2.0 * (double)n * (double)n * (double)n / best / 1e9;
    res->threads = rt_threads(); /* OpenBLAS's OpenMP build follows it (openblas_get_num_threads() can lag) */
    const char *core = openblas_get_corename();
    snprintf(res->core, sizeof res->core, "%s", core ? core : "unknown");
    if (o->gemm_child && rt_cpu_isa() == RT_ISA_AVX512 && !openblas_core_has_avx512(res->core)) {
        char core1[32] = "", core2[32] = "";
        const char *forced = getenv("OPENBLAS_CORETYPE");
        double g1 = forced ? gemm_in_child(o, NULL, core1) : 0, g2 = 0;
        if (!openblas_core_has_avx512(core1)) g2 = gemm_in_child(o, "SkylakeX", core2);
        int first = g1 >= g2;
        res->alt_gflops = first ? g1 : g2; /* 0: the children failed */
        snprintf(res->alt_core, sizeof res->alt_core, "%s", res->alt_gflops > 0 ? (first ? core1 : core2) : "?");
    }
    return 0;
}

/* ---- one conv shape: forward, backward-data, backward-weight ---- */

typedef struct {
    double ms[3]; /* forward, backward-data, backward-weight: best of the timed iterations */
    double flop;  /* per pass */
} conv_result;

/* Times the forward with grad mode off, and each backward with only x (data) or only w (weight)
 * wanting a gradient: forward recorded untimed, then rt_backward_seed timed. */
static int bench_conv(const bench_opts *o, const conv_shape *s, conv_result *res) {
    rt_ctx *ctx = rt_ctx_new();
    if (!ctx) return 1;
    int64_t N = o->batch, oh = (s->h + 2 * s->pad - s->k) / s->stride + 1;
    int64_t xs[4] = {N, s->c, s->h, s->h}, ws[4] = {s->oc, s->c, s->k, s->k};
    int64_t nx = N * s->c * s->h * s->h, nw = s->oc * s->c * s->k * s->k, ny = N * s->oc * oh * oh;
    float *xd = malloc((size_t)nx * sizeof(float)), *xg = calloc((size_t)nx, sizeof(float));
    float *wd = malloc((size_t)nw * sizeof(float)), *wg = calloc((size_t)nw, sizeof(float));
    float *seed = malloc((size_t)ny * sizeof(float));
    double *times = malloc((size_t)o->kiters * sizeof(double));
    int rc = 1;
    if (!xd || !xg || !wd || !wg || !seed || !times) goto done;
    rt_rng rng;
    rt_rng_seed(&rng, 11);
    fill_normal(&rng, xd, nx, 1.0f);
    fill_normal(&rng, wd, nw, 0.1f);
    fill_normal(&rng, seed, ny, 1.0f);
    rt_tensor x, w;
    rt_tensor_init(&x, xd, 4, xs);
    rt_tensor_init(&w, wd, 4, ws);
    rt_leaf(ctx, &x, xg);
    rt_leaf(ctx, &w, wg);
    rt_conv2d_args args = {
        .stride_h = (int)s->stride, .stride_w = (int)s->stride, .pad_h = (int)s->pad, .pad_w = (int)s->pad};
    for (int pass = 0; pass < 3; pass++) {
        x.requires_grad = pass == 1;
        w.requires_grad = pass == 2;
        rt_set_grad_enabled(ctx, pass != 0);
        for (int it = 0; it < o->warmup + o->kiters; it++) {
            double t0 = now_s();
            rt_tensor *y = rt_conv2d(ctx, &x, &w, NULL, &args);
            if (pass) {
                t0 = now_s();
                rt_backward_seed(ctx, y, seed);
            }
            double t = now_s() - t0;
            if (check(ctx, pass == 0 ? "conv2d forward" : "conv2d backward")) goto done;
            rt_step_reset(ctx);
            if (it >= o->warmup) times[it - o->warmup] = t;
        }
        /* best, not median: the kernel's own cost, least disturbed by other load on a shared machine */
        double best = times[0];
        for (int i = 1; i < o->kiters; i++) best = times[i] < best ? times[i] : best;
        res->ms[pass] = 1e3 * best;
    }
    res->flop = 2.0 * (double)(N * s->oc * oh * oh * s->c * s->k * s->k);
    rc = 0;
done:
    free(times);
    free(seed);
    free(wg);
    free(wd);
    free(xg);
    free(xd);
    rt_ctx_free(ctx);
    return rc;
}

/* ---- driver ---- */

static int env_int(const char *name, int dflt) {
    const char *v = getenv(name);
    return v && *v ? atoi(v) : dflt;
}

static void usage(void) {
    fprintf(stderr, "usage: bench_step [--mode all|kd|train|teacher[,...]] [--threads N] [--iters N] [--warmup N] "
                    "[--batch N] [--step-only | --kernels-only | --gemm-only | --cache-probe] [--no-gemm] [--gemm-size N] "
                    "[--json]\n"
                    "                  [--no-keep] [--teacher-chunk N] [--profile [N]] [--profile-rows N]\n");
}

/* "all" or a comma-separated list of mode names; 0 on success. */
static int parse_modes(const char *s, int *modes) {
    memset(modes, 0, NMODES * sizeof *modes);
    if (!strcmp(s, "all")) {
        for (int m = 0; m < NMODES; m++) modes[m] = 1;
        return 0;
    }
    char buf[128];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int found = 0;
        for (int m = 0; m < NMODES; m++)
            if (!strcmp(tok, k_mode_names[m]) || (m == MODE_TRAIN && !strcmp(tok, "step"))) modes[m] = found = 1;
        if (!found) return 1;
    }
    return 0;
}

/* One step's keys; with_profile: also its "profile" (kept out of the top-level copy of a single mode). */
static void json_step(const bench_opts *o, step_mode m, const step_result *r, int iters, int with_profile) {
    printf("\"mode\": \"%s\", \"model\": \"%s\", \"teacher\": \"%s\", \"iters\": %d, \"ms_per_step\": %.3f, "
           "\"ms_median\": %.3f, \"img_per_s\": %.2f, \"conv_gflop\": %.4f, \"conv_gflops\": %.2f, "
           "\"arena_highwater_mb\": %.1f, \"peak_rss_mb\": %.1f",
           k_mode_names[m], m == MODE_TEACHER ? TEACHER_ARCH : STUDENT_ARCH, m == MODE_TRAIN ? "" : TEACHER_ARCH, iters,
           r->ms_mean, r->ms_median, r->img_per_s, r->gflop, r->gflop / (r->ms_median / 1e3),
           (double)r->highwater / (1 << 20), r->rss_mb);
    if (m != MODE_TEACHER) printf(", \"loss\": %.4f", r->loss);
    if (m == MODE_KD) printf(", \"loss_ce\": %.4f, \"loss_st\": %.4f, \"loss_at\": %.6f", r->ce, r->st, r->at);
    if (m == MODE_KD)
        printf(", \"teacher_keep\": %s, \"teacher_chunk\": %d", o->keep ? "true" : "false", o->teacher_chunk);
    if (with_profile && r->profile_json) printf(", \"profile\": %s", r->profile_json);
}

static void free_profiles(step_result *st) {
    for (int m = 0; m < NMODES; m++) {
        free(st[m].profile_text);
        free(st[m].profile_json);
        st[m].profile_text = st[m].profile_json = NULL;
    }
}

int main(int argc, char **argv) {
    bench_opts o = {.threads = env_int("RETORT_BENCH_THREADS", 0),
                    .kiters = 20,
                    .warmup = -1,
                    .batch = 64,
                    .classes = 100,
                    .do_kernels = 1,
                    .do_gemm = 1,
                    .gemm_size = 2048,
                    .gemm_child = 1,
                    .keep = 1,
                    .teacher_chunk = DEFAULT_TEACHER_CHUNK,
                    .profile_rows = 15,
                    .iters = {5, 10, 10},
                    .warmups = {2, 3, 3},
                    .modes = {1, 1, 1}};
    int iters = env_int("RETORT_BENCH_ITERS", 0), steps = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        if (!strcmp(a, "--json"))
            o.json = 1;
        else if (!strcmp(a, "--step-only"))
            o.do_kernels = 0;
        else if (!strcmp(a, "--kernels-only"))
            steps = 0;
        else if (!strcmp(a, "--no-gemm"))
            o.do_gemm = 0;
        else if (!strcmp(a, "--gemm-only"))
            steps = 0, o.do_kernels = 0, o.do_gemm = 1, o.gemm_child = 0;
        else if (!strcmp(a, "--cache-probe"))
            steps = 0, o.do_kernels = 0, o.do_gemm = 0, o.do_probe = 1;
        else if (!strcmp(a, "--no-keep"))
            o.keep = 0;
        else if (!strcmp(a, "--teacher-chunk") && has_val)
            o.teacher_chunk = atoi(argv[++i]);
        else if (!strcmp(a, "--profile"))
            o.profile = has_val && argv[i + 1][0] >= '0' && argv[i + 1][0] <= '9' ? atoi(argv[++i]) : 3;
        else if (!strcmp(a, "--profile-rows") && has_val)
            o.profile_rows = atoi(argv[++i]);
        else if (!strcmp(a, "--gemm-size") && has_val)
            o.gemm_size = atoi(argv[++i]);
        else if (!strcmp(a, "--mode") && has_val) {
            if (parse_modes(argv[++i], o.modes)) {
                usage();
                return 2;
            }
        } else if (!strcmp(a, "--threads") && has_val)
            o.threads = atoi(argv[++i]);
        else if (!strcmp(a, "--iters") && has_val) {
            iters = atoi(argv[++i]);
            if (iters < 1) {
                usage();
                return 2;
            }
        } else if (!strcmp(a, "--warmup") && has_val)
            o.warmup = atoi(argv[++i]);
        else if (!strcmp(a, "--batch") && has_val)
            o.batch = atoi(argv[++i]);
        else {
            usage();
            return 2;
        }
    }
    if (iters > 0) {
        o.kiters = iters;
        for (int m = 0; m < NMODES; m++) o.iters[m] = iters;
    }
    if (o.warmup >= 0)
        for (int m = 0; m < NMODES; m++) o.warmups[m] = o.warmup;
    else
        o.warmup = 3;
    if (!steps) memset(o.modes, 0, sizeof o.modes);
    if (iters < 0 || o.batch < 1 || o.gemm_size < 1 || o.teacher_chunk < 0 || o.profile < 0 || o.profile_rows < 0) {
        usage();
        return 2;
    }
    if (o.threads > 0) rt_set_threads(o.threads);
    o.threads = rt_threads();
    const char *isa = rt_isa_name(rt_cpu_isa()), *cpu = rt_cpu_model();

    if (!o.json) {
        printf("cpu: %s, simd: %s, threads: %d\n", cpu, isa, o.threads);
        fflush(stdout);
    }
    step_result st[NMODES];
    memset(st, 0, sizeof st);
    int nmodes = 0;
    for (int m = 0; m < NMODES; m++) {
        if (!o.modes[m]) continue;
        nmodes++;
        if (bench_step(&o, (step_mode)m, &st[m])) return 1;
        if (o.json) continue;
        const step_result *r = &st[m];
        if (m == MODE_KD) {
            char how[64] = "ordinary forward";
            if (o.keep && o.teacher_chunk > 0 && o.teacher_chunk < o.batch)
                snprintf(how, sizeof how, "kept forward in chunks of %d", o.teacher_chunk);
            else if (o.keep)
                snprintf(how, sizeof how, "kept forward");
            printf("kd step: teacher %s (eval, no grad, %s) + student %s b%d (%d classes), CE + ST (T %g) + %g * AT "
                   "(layer1..3), SGD momentum 0.9 wd 5e-4, %d iters after %d warm-up:\n",
                   TEACHER_ARCH, how, STUDENT_ARCH, o.batch, o.classes, (double)KD_T, (double)KD_W_AT, o.iters[m],
                   o.warmups[m]);
        } else if (m == MODE_TRAIN)
            printf("train step: %s b%d (%d classes, CE, SGD momentum 0.9 wd 5e-4), %d iters after %d warm-up:\n",
                   STUDENT_ARCH, o.batch, o.classes, o.iters[m], o.warmups[m]);
        else
            printf("teacher inference: %s b%d (eval, no grad), %d iters after %d warm-up:\n", TEACHER_ARCH, o.batch,
                   o.iters[m], o.warmups[m]);
        printf("  %.1f ms/step (median %.1f), %.1f img/s, direct-conv %.2f GFLOP/step = %.1f GFLOP/s\n", r->ms_mean,
               r->ms_median, r->img_per_s, r->gflop, r->gflop / (r->ms_median / 1e3));
        if (m == MODE_KD)
            printf("  loss %.4f (CE %.4f, ST %.4f, AT %.6f x %g)\n", r->loss, r->ce, r->st, r->at, (double)KD_W_AT);
        else if (m == MODE_TRAIN)
            printf("  loss %.4f\n", r->loss);
        printf("  arena high-water %.1f MiB, peak RSS %.1f MiB\n", (double)r->highwater / (1 << 20), r->rss_mb);
        if (r->profile_text) printf("%s", r->profile_text);
        fflush(stdout);
    }
    double rss_steps = peak_rss_mb();

    gemm_result g = {0};
    if (o.do_gemm) {
        if (bench_gemm(&o, &g)) return 1;
        if (!o.json) {
            printf("sgemm: OpenBLAS cblas_sgemm %dx%dx%d, %d threads, best of 3: %s core %.1f GFLOP/s", g.n, g.n, g.n,
                   g.threads, g.core, g.gflops);
            if (g.alt_core[0] && g.alt_gflops > 0)
                printf(", %s core (child process) %.1f GFLOP/s", g.alt_core, g.alt_gflops);
            else if (g.alt_core[0])
                printf(" (its run with an AVX-512 core failed)");
            printf("\n");
            if (g.alt_core[0] && getenv("OPENBLAS_CORETYPE"))
                printf("  note: OPENBLAS_CORETYPE=%s in the environment keeps OpenBLAS (Retort's BLAS calls "
                       "included) off its AVX-512 kernels\n",
                       getenv("OPENBLAS_CORETYPE"));
            double ceil = gemm_ceiling(&g);
            for (int m = 0; m < NMODES; m++)
                if (st[m].ran)
                    printf("  %-17s %6.1f GFLOP/s direct-conv = %4.1f%% of the sgemm ceiling %.1f\n", k_mode_titles[m],
                           st[m].gflop / (st[m].ms_median / 1e3), 100.0 * st[m].gflop / (st[m].ms_median / 1e3) / ceil,
                           ceil);
            fflush(stdout);
        }
    }

    probe_result pr = {0};
    if (o.do_probe) {
        cache_probe(&pr);
        if (!o.json)
            printf("cache probe, %d thread%s: triad over 2 x %.0f MiB (the shared L3's size) %.1f GB/s, over 2 x %.0f MiB "
                   "%.1f GB/s\n",
                   o.threads, o.threads == 1 ? "" : "s", pr.l3_mib / 2, pr.l3_gbps, 4 * pr.l3_mib, pr.mem_gbps);
    }

    conv_result cr[NCONV];
    memset(cr, 0, sizeof cr);
    for (int i = 0; o.do_kernels && i < NCONV; i++)
        if (bench_conv(&o, &k_convs[i], &cr[i])) return 1;

    if (o.json) { /* one line, the same keys as torch_step.py where they mean the same */
        printf("{\"side\": \"retort\", \"batch\": %d, \"threads\": %d, \"isa\": \"%s\", \"cpu\": \"%s\"", o.batch,
               o.threads, isa, cpu);
        if (nmodes == 1)
            for (int m = 0; m < NMODES; m++)
                if (st[m].ran) {
                    printf(", ");
                    json_step(&o, (step_mode)m, &st[m], o.iters[m], 0);
                }
        if (nmodes) {
            printf(", \"steps\": [");
            for (int m = 0, k = 0; m < NMODES; m++)
                if (st[m].ran) {
                    printf("%s{", k++ ? ", " : "");
                    json_step(&o, (step_mode)m, &st[m], o.iters[m], 1);
                    printf("}");
                }
            printf("]");
        }
        if (o.do_gemm) {
            /* sgemm_gflops: the ceiling (the faster core); sgemm_default_*: the core OpenBLAS chose */
            printf(", \"sgemm_n\": %d, \"sgemm_threads\": %d, \"sgemm_default_core\": \"%s\", "
                   "\"sgemm_default_gflops\": %.2f",
                   g.n, g.threads, g.core, g.gflops);
            if (g.alt_core[0])
                printf(", \"sgemm_alt_core\": \"%s\", \"sgemm_alt_gflops\": %.2f", g.alt_core, g.alt_gflops);
            const char *env = getenv("OPENBLAS_CORETYPE");
            if (env) printf(", \"openblas_coretype_env\": \"%s\"", env);
            printf(", \"sgemm_core\": \"%s\", \"sgemm_gflops\": %.2f", g.alt_gflops > g.gflops ? g.alt_core : g.core,
                   gemm_ceiling(&g));
        }
        if (o.do_probe)
            printf(", \"probe_l3_mib\": %.0f, \"probe_l3_gbps\": %.2f, \"probe_mem_gbps\": %.2f", pr.l3_mib, pr.l3_gbps,
                   pr.mem_gbps);
        if (o.do_kernels) {
            printf(", \"kiters\": %d, \"convs\": [", o.kiters);
            for (int i = 0; i < NCONV; i++) {
                const conv_shape *s = &k_convs[i];
                printf("%s{\"name\": \"%s\", \"C\": %lld, \"OC\": %lld, \"H\": %lld, \"k\": %lld, \"stride\": %lld, "
                       "\"count\": %lld, \"fwd_ms\": %.4f, \"bwd_data_ms\": %.4f, \"bwd_weight_ms\": %.4f, "
                       "\"fwd_gflops\": %.2f, \"bwd_data_gflops\": %.2f, \"bwd_weight_gflops\": %.2f}",
                       i ? ", " : "", s->name, (long long)s->c, (long long)s->oc, (long long)s->h, (long long)s->k,
                       (long long)s->stride, (long long)s->count, cr[i].ms[0], cr[i].ms[1], cr[i].ms[2],
                       cr[i].flop / cr[i].ms[0] / 1e6, cr[i].flop / cr[i].ms[1] / 1e6, cr[i].flop / cr[i].ms[2] / 1e6);
            }
            printf("]");
        }
        if (nmodes != 1) printf(", \"peak_rss_mb\": %.1f", nmodes ? rss_steps : peak_rss_mb());
        printf("}\n");
        free_profiles(st);
        return 0;
    }

    if (o.do_kernels) {
        printf("conv2d per shape, batch %d, best of %d (ms, GFLOP/s):\n", o.batch, o.kiters);
        printf("  %-11s %-22s %3s  %16s %16s %16s\n", "layer", "C->OC HxW k/s", "n", "forward", "bwd-data",
               "bwd-weight");
        double sum = 0;
        for (int i = 0; i < NCONV; i++) {
            const conv_shape *s = &k_convs[i];
            char desc[64];
            snprintf(desc, sizeof desc, "%lld->%lld %lldx%lld %lld/%lld", (long long)s->c, (long long)s->oc,
                     (long long)s->h, (long long)s->h, (long long)s->k, (long long)s->stride);
            printf("  %-11s %-22s %3lld ", s->name, desc, (long long)s->count);
            for (int p = 0; p < 3; p++) printf(" %8.3f %6.1f", cr[i].ms[p], cr[i].flop / cr[i].ms[p] / 1e6);
            printf("\n");
            /* the model's first conv needs no input gradient */
            sum += (double)s->count * (cr[i].ms[0] + (i ? cr[i].ms[1] : 0) + cr[i].ms[2]);
        }
        printf("  all 21 convs of one step: %.1f ms", sum);
        if (st[MODE_TRAIN].ran) printf(" (%.0f%% of the train step)", 100.0 * sum / st[MODE_TRAIN].ms_median);
        printf("\n");
    }
    free_profiles(st);
    return 0;
}
