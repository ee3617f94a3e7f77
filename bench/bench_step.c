/* Benchmark: one ResNet-20 training step (batch 64, 3x32x32, 100 classes, cross-entropy, SGD with
 * momentum 0.9 and weight decay 5e-4) on synthetic data, then each distinct conv shape of resnet20
 * (forward, backward-data, backward-weight). bench/torch_step.py is its PyTorch twin; bench/run
 * compares the two. Built and run by `make bench`.
 *
 *   bench_step [--threads N] [--iters N] [--warmup N] [--batch N] [--step-only | --kernels-only]
 *              [--json]
 * Environment: RETORT_BENCH_THREADS, RETORT_BENCH_ITERS (defaults for the flags). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "kernels/cpu.h"
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

typedef struct {
    int threads, iters, kiters, warmup, batch, classes, json, do_step, do_kernels;
} bench_opts;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0; /* Linux: KiB */
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void fill_normal(rt_rng *r, float *p, int64_t n, float scale) {
    for (int64_t i = 0; i < n; i++) p[i] = scale * rt_rng_normal(r);
}

static int check(rt_ctx *ctx, const char *what) {
    if (!rt_status(ctx)) return 0;
    fprintf(stderr, "bench_step: %s failed: %s\n", what, rt_errmsg(ctx));
    return 1;
}

/* ---- the training step ---- */

typedef struct {
    double ms_mean, ms_median, img_per_s, loss;
    size_t highwater;
} step_result;

static int bench_train_step(const bench_opts *o, step_result *res) {
    rt_ctx *ctx = rt_ctx_new();
    if (!ctx) return 1;
    rt_model *m =
        rt_model_new(ctx, "resnet20", &(rt_model_opts){.in_channels = 3, .in_size = 32, .num_classes = o->classes}, 1);
    if (!m || check(ctx, "rt_model_new(resnet20)")) {
        if (!m && !rt_status(ctx)) fprintf(stderr, "bench_step: rt_model_new(resnet20) returned NULL\n");
        rt_ctx_free(ctx);
        return 1;
    }
    rt_model_train(m, 1);
    int64_t B = o->batch, shape[4] = {B, 3, 32, 32};
    float *xbuf = malloc((size_t)(B * 3 * 32 * 32) * sizeof(float));
    int32_t *labels = malloc((size_t)B * sizeof(int32_t));
    double *times = malloc((size_t)o->iters * sizeof(double));
    /* torch.optim.SGD(lr 0.05, momentum 0.9, weight_decay 5e-4) over every parameter, as
     * torch_step.py's SGD(model.parameters()) */
    rt_optim_cfg oc = rt_optim_defaults(RT_OPTIM_SGD);
    oc.lr = 0.05f;
    oc.momentum = 0.9f;
    oc.weight_decay = 5e-4f;
    rt_optim *opt = rt_optim_new(ctx, &oc, m->params.n);
    int rc = 1;
    if (!xbuf || !labels || !times || !opt || check(ctx, "rt_optim_new")) goto done;
    rt_rng rng;
    rt_rng_seed(&rng, 7);
    fill_normal(&rng, xbuf, B * 3 * 32 * 32, 1.0f);
    for (int64_t i = 0; i < B; i++) labels[i] = (int32_t)rt_rng_below(&rng, (uint64_t)o->classes);

    double total = 0;
    for (int it = 0; it < o->warmup + o->iters; it++) {
        double t0 = now_s();
        rt_params_zero_grad(&m->params);
        rt_tensor *x = rt_wrap(ctx, xbuf, 4, shape);
        rt_tensor *logits = rt_model_forward(ctx, m, x, NULL);
        rt_tensor *loss = rt_cross_entropy(ctx, logits, labels, 0.0f, RT_MEAN);
        rt_backward(ctx, loss);
        if (check(ctx, "training step")) goto done;
        res->loss = loss->data[0];
        rt_optim_step(ctx, opt, m->params.data, m->params.grad, oc.lr);
        if (check(ctx, "optimiser step")) goto done;
        rt_step_reset(ctx);
        double t = now_s() - t0;
        if (it >= o->warmup) times[it - o->warmup] = t, total += t;
    }
    res->ms_mean = 1e3 * total / o->iters;
    res->ms_median = 1e3 * median(times, o->iters);
    res->img_per_s = (double)B / (res->ms_median / 1e3); /* median: robust to a busy machine */
    res->highwater = rt_arena_highwater(ctx);
    rc = 0;
done:
    rt_optim_free(opt);
    free(times);
    free(labels);
    free(xbuf);
    rt_model_free(m);
    rt_ctx_free(ctx);
    return rc;
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
    fprintf(stderr, "usage: bench_step [--threads N] [--iters N] [--warmup N] [--batch N] "
                    "[--step-only | --kernels-only] [--json]\n");
}

int main(int argc, char **argv) {
    bench_opts o = {.threads = env_int("RETORT_BENCH_THREADS", 0),
                    .iters = env_int("RETORT_BENCH_ITERS", 10),
                    .kiters = 20,
                    .warmup = 3,
                    .batch = 64,
                    .classes = 100,
                    .do_step = 1,
                    .do_kernels = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        if (!strcmp(a, "--json"))
            o.json = 1;
        else if (!strcmp(a, "--step-only"))
            o.do_kernels = 0;
        else if (!strcmp(a, "--kernels-only"))
            o.do_step = 0;
        else if (!strcmp(a, "--threads") && has_val)
            o.threads = atoi(argv[++i]);
        else if (!strcmp(a, "--iters") && has_val)
            o.iters = o.kiters = atoi(argv[++i]);
        else if (!strcmp(a, "--warmup") && has_val)
            o.warmup = atoi(argv[++i]);
        else if (!strcmp(a, "--batch") && has_val)
            o.batch = atoi(argv[++i]);
        else {
            usage();
            return 2;
        }
    }
    if (o.iters < 1 || o.kiters < 1 || o.warmup < 0 || o.batch < 1) {
        usage();
        return 2;
    }
    if (o.threads > 0) rt_set_threads(o.threads);
    o.threads = rt_threads();
    const char *isa = rt_isa_name(rt_cpu_isa()), *cpu = rt_cpu_model();

    step_result st = {0};
    if (o.do_step && bench_train_step(&o, &st)) return 1;
    conv_result cr[NCONV];
    memset(cr, 0, sizeof cr);
    for (int i = 0; o.do_kernels && i < NCONV; i++)
        if (bench_conv(&o, &k_convs[i], &cr[i])) return 1;
    double rss = peak_rss_mb();

    if (o.json) { /* one line, the same keys as torch_step.py where they mean the same */
        printf("{\"side\": \"retort\", \"model\": \"resnet20\", \"batch\": %d, \"threads\": %d, \"isa\": \"%s\", "
               "\"cpu\": \"%s\", \"iters\": %d",
               o.batch, o.threads, isa, cpu, o.iters);
        if (o.do_step)
            printf(", \"ms_per_step\": %.3f, \"ms_median\": %.3f, \"img_per_s\": %.2f, \"loss\": %.4f, "
                   "\"arena_highwater_mb\": %.1f",
                   st.ms_mean, st.ms_median, st.img_per_s, st.loss, (double)st.highwater / (1 << 20));
        if (o.do_kernels) {
            printf(", \"convs\": [");
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
        printf(", \"peak_rss_mb\": %.1f}\n", rss);
        return 0;
    }

    printf("cpu: %s, simd: %s, threads: %d\n", cpu, isa, o.threads);
    if (o.do_step) {
        printf("train step resnet20 b%d (%d classes, CE, SGD momentum 0.9 wd 5e-4), %d iters after %d warm-up:\n",
               o.batch, o.classes, o.iters, o.warmup);
        printf("  %.1f ms/step (median %.1f), %.1f img/s, loss %.4f, arena high-water %.1f MiB\n", st.ms_mean,
               st.ms_median, st.img_per_s, st.loss, (double)st.highwater / (1 << 20));
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
        if (o.do_step) printf(" (%.0f%% of the step)", 100.0 * sum / st.ms_median);
        printf("\n");
    }
    printf("peak RSS %.1f MiB\n", rss);
    return 0;
}
