/* Winograd against the direct kernels on the 3x3 stride-1 convolutions of the CIFAR ResNets
 * (batch 64: 16 channels at 32x32, 32 at 16x16, 64 at 8x8) and of the Fashion-MNIST ones (batch
 * 128: 28x28, 14x14, 7x7): forward, data-gradient and weight-gradient milliseconds of each algorithm at 1 and 2
 * threads, through rt_conv2d_* with RETORT_CONV forcing the algorithm (so workspace queries and
 * dispatch are the library's own), and the automatic choice ("auto"). The algorithms are timed
 * in alternation, round after round (in rotating order, as the one before leaves the caches its
 * own way), and each reports its median round: a shared machine's noise hits them alike.
 *
 *   bench_winograd [--iters N] [--threads a,b,...] [--quick] [--cpu] [--shape N,C,HW,OC]
 * --iters: rounds per shape (default 15); --threads: thread counts (default 1,2); --quick: 3 rounds;
 * --cpu: the process's CPU time instead of wall time (at 1 thread, immune to time slices lost to
 * other processes on a shared machine; at more threads it sums the threads); --shape: that one
 * shape (N samples, C -> OC channels, HW x HW, pad 1) instead of the table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "kernels/conv.h"
#include "retort/core.h"

typedef struct {
    const char *name;
    int64_t N, C, H, OC;
} wshape;
static const wshape k_shapes[] = {
    {"cifar 16@32x32", 64, 16, 32, 16},   {"cifar 32@16x16", 64, 32, 16, 32},    {"cifar 64@8x8", 64, 64, 8, 64},
    {"fmnist 16@28x28", 128, 16, 28, 16}, {"fmnist 32@14x14", 128, 32, 14, 32},  {"fmnist 64@7x7", 128, 64, 7, 64},
    {"cifar stem 3->16", 64, 3, 32, 16},  {"fmnist stem 1->16", 128, 1, 28, 16},
};
enum { NSHAPES = sizeof k_shapes / sizeof k_shapes[0] };

static const char *const k_algs[] = {"direct", "winograd2", "winograd4", "auto"};
enum { NALGS = 4 };

static int g_cpu_clock; /* --cpu */
static double now_s(void) {
    struct timespec ts;
    clock_gettime(g_cpu_clock ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Milliseconds of one pass (0 forward, 1 data gradient) under RETORT_CONV = alg. */
static double time_pass(const rt_conv2d_shape *s, const char *alg, int pass, float *out, const float *in,
                        const float *w, float *gin, const float *gout, float *gw, void *ws) {
    setenv("RETORT_CONV", alg, 1);
    double t = now_s();
    if (pass == 0)
        rt_conv2d_forward(s, out, in, w, NULL, ws);
    else if (pass == 1)
        rt_conv2d_backward_data(s, gin, gout, w, ws);
    else
        rt_conv2d_backward_weight(s, gw, NULL, gout, in, ws);
    return (now_s() - t) * 1e3;
}

int main(int argc, char **argv) {
    int iters = 15, threads[8] = {1, 2}, nthreads = 2, nshapes = NSHAPES;
    const wshape *shapes = k_shapes;
    wshape one = {"custom", 0, 0, 0, 0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--iters") && i + 1 < argc)
            iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick"))
            iters = 3;
        else if (!strcmp(argv[i], "--cpu"))
            g_cpu_clock = 1;
        else if (!strcmp(argv[i], "--shape") && i + 1 < argc) {
            long long n, c, h, oc;
            if (sscanf(argv[++i], "%lld,%lld,%lld,%lld", &n, &c, &h, &oc) != 4 || n < 1 || c < 1 || h < 1 || oc < 1) {
                fprintf(stderr, "bench_winograd: --shape wants N,C,HW,OC\n");
                return 2;
            }
            one.N = n, one.C = c, one.H = h, one.OC = oc, shapes = &one, nshapes = 1;
        } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            nthreads = 0;
            for (char *p = strtok(argv[++i], ","); p && nthreads < 8; p = strtok(NULL, ","))
                threads[nthreads++] = atoi(p);
        } else {
            fprintf(stderr,
                    "usage: bench_winograd [--iters N] [--threads a,b,...] [--quick] [--cpu] [--shape N,C,HW,OC]\n");
            return 2;
        }
    }
    if (iters < 1) iters = 1;
    const char *prev = getenv("RETORT_CONV");
    char saved[32] = "";
    if (prev) snprintf(saved, sizeof saved, "%s", prev);
    printf("3x3 stride-1 convolutions, %s ms per pass (median of %d alternating rounds); ratio = direct / best "
           "Winograd\n",
           g_cpu_clock ? "CPU" : "wall", iters);
    printf("%-18s %-8s %3s %9s %9s %9s %7s %9s\n", "shape", "pass", "thr", "direct", "wino2", "wino4", "ratio", "auto");
    rt_rng rng;
    rt_rng_seed(&rng, 1);
    for (int si = 0; si < nshapes; si++) {
        const wshape *h = &shapes[si];
        rt_conv2d_shape s = {h->N, h->C, h->H, h->H, h->OC, 3, 3, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0};
        rt_conv2d_shape_finish(&s);
        int64_t nin = s.N * s.C * s.H * s.W, nout = s.N * s.OC * s.OH * s.OW, nw = s.OC * s.C * 9;
        float *in = malloc(nin * 4), *gin = calloc(nin, 4), *out = malloc(nout * 4), *gout = malloc(nout * 4);
        float *w = malloc(nw * 4), *gw = calloc(nw, 4);
        for (int64_t i = 0; i < nin; i++) in[i] = rt_rng_normal(&rng);
        for (int64_t i = 0; i < nout; i++) gout[i] = rt_rng_normal(&rng);
        for (int64_t i = 0; i < nw; i++) w[i] = 0.1f * rt_rng_normal(&rng);
        for (int ti = 0; ti < nthreads; ti++) {
            rt_set_threads(threads[ti]);
            size_t wsb = 0;
            for (int a = 0; a < NALGS; a++) { /* one workspace serves every algorithm */
                setenv("RETORT_CONV", k_algs[a], 1);
                size_t b = rt_conv2d_workspace(&s);
                wsb = b > wsb ? b : wsb;
            }
            void *ws = aligned_alloc(64, (wsb + 63) / 64 * 64);
            for (int pass = 0; pass < 3; pass++) {
                double t[NALGS][64], med[NALGS];
                int n = iters < 64 ? iters : 64;
                for (int a = 0; a < NALGS; a++)
                    time_pass(&s, k_algs[a], pass, out, in, w, gin, gout, gw, ws); /* warm-up */
                for (int r = 0; r < n; r++) /* the order rotates: each algorithm follows each other one */
                    for (int i = 0; i < NALGS; i++) {
                        int a = (i + r) % NALGS;
                        t[a][r] = time_pass(&s, k_algs[a], pass, out, in, w, gin, gout, gw, ws);
                    }
                for (int a = 0; a < NALGS; a++) med[a] = median(t[a], n);
                double best = med[1] < med[2] ? med[1] : med[2];
                printf("%-18s %-8s %3d %9.3f %9.3f %9.3f %6.2fx %9.3f\n", h->name,
                       pass == 2 ? "weight"
                       : pass    ? "data"
                                 : "forward",
                       threads[ti], med[0], med[1], med[2], med[0] / best, med[3]);
                fflush(stdout);
            }
            free(ws);
        }
        free(in), free(gin), free(out), free(gout), free(w), free(gw);
    }
    if (saved[0])
        setenv("RETORT_CONV", saved, 1);
    else
        unsetenv("RETORT_CONV");
    return 0;
}
