/* Fast convolution kernels. Paths, chosen by shape and by the CPU found at run time:
 *  - depthwise (groups == C == OC): direct loops per (sample, channel) plane;
 *  - 1x1, stride 1, no padding: the input already is the im2col matrix, so a plain GEMM per sample;
 *  - other single-group convolutions on AVX2 / AVX-512: direct SIMD kernels over zero-padded
 *    planes (conv_direct.h: an implicit GEMM without the im2col copy; strides through phase
 *    planes). The data gradient is the same kernel run on the padded output gradient with flipped,
 *    transposed filters (stride 1), or once per phase of the input (other strides);
 *  - everything else (groups, or no AVX2): im2col of a chunk of samples into one
 *    (C*KH*KW, B*OH*OW) matrix and GEMMs over it (rt_sgemm, multi-threaded by OpenBLAS), col2im
 *    for the data gradient;
 *  - 3x3 stride-1 single-group convolutions, forward and data gradient, may instead go to
 *    Winograd F(2x2,3x3) / F(4x4,3x3) (winograd.h) where it measured faster (rule: wino_tile).
 * RETORT_CONV=direct|im2col|winograd|winograd2|winograd4 forces an algorithm wherever it applies
 * (for tests and benchmarks; "winograd" = F(4x4,3x3)); unset or "auto" follows the rules. Like
 * RETORT_ISA it is read on each call: query the workspace and call under the same setting.
 * OpenMP threads the copies (im2col, col2im, gathers, padding) and the direct kernels; BLAS is
 * never called from inside a parallel region, so the two never nest. Every parallel loop writes
 * disjoint memory and every reduction runs in a fixed order (the direct weight gradient sums
 * per-thread partials in thread order): results are reproducible for a given thread count. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/conv.h"
#include "kernels/conv_direct.h"
#include "kernels/cpu.h"
#include "kernels/gemm.h"
#include "kernels/winograd.h"

/* The im2col buffer of one chunk is capped near this many floats (the chunk holds at least one
 * sample): large enough for long GEMMs, small enough to stay in the last-level cache. */
#define COL_BUDGET_FLOATS ((int64_t)2 << 20)

static int is_depthwise(const rt_conv2d_shape *s) { return s->groups == s->C && s->OC == s->C; }
static int is_pointwise(const rt_conv2d_shape *s) {
    return s->KH == 1 && s->KW == 1 && s->sh == 1 && s->sw == 1 && s->ph == 0 && s->pw == 0;
}

/* ---- algorithm choice ---- */

typedef enum { CONV_AUTO, CONV_DIRECT, CONV_IM2COL, CONV_WINO2, CONV_WINO4 } conv_alg;

static conv_alg forced_alg(void) {
    const char *e = getenv("RETORT_CONV");
    if (!e) return CONV_AUTO;
    if (!strcmp(e, "direct")) return CONV_DIRECT;
    if (!strcmp(e, "im2col")) return CONV_IM2COL;
    if (!strcmp(e, "winograd2")) return CONV_WINO2;
    if (!strcmp(e, "winograd") || !strcmp(e, "winograd4")) return CONV_WINO4;
    return CONV_AUTO;
}

/* The Winograd tile size (2 or 4) for the forward and the data gradient, or 0 for another
 * algorithm. The rule, from bench/bench_winograd (one Zen 5 core, batch 64/128, CPU ms):
 * F(4x4) beat the direct kernels by 1.2-2.4x on every 3x3 stride-1 layer of the CIFAR and
 * Fashion-MNIST ResNets with 16 to 64 channels (16@32x32, 32@16x16, 64@8x8, 16@28x28, 32@14x14,
 * 64@7x7, forward and data gradient) and beat F(2x2) on each of them; with fewer than 16 channels
 * on either side (the stems 3->16 and 1->16, 8->8) the direct kernels won or tied. Without AVX2 the
 * im2col path is kept (the plain C Winograd is a reference, not a fast path). */
static int wino_tile(const rt_conv2d_shape *s) {
    if (!rt_wino_eligible(s) || is_depthwise(s)) return 0;
    switch (forced_alg()) {
    case CONV_WINO2: return 2;
    case CONV_WINO4: return 4;
    case CONV_AUTO: break;
    default: return 0;
    }
    return rt_cpu_isa() >= RT_ISA_AVX2 && s->C >= 16 && s->OC >= 16 ? 4 : 0;
}

/* The Winograd tile size for the weight gradient, or 0. RETORT_CONV_WGRAD=direct|winograd2|
 * winograd4 overrides RETORT_CONV for this pass alone (to measure it on its own). The rule, from
 * bench/bench_winograd (one core, batch 64/128, alternating medians, noisy shared machine): F(4x4)
 * beat the direct kernel by 1.25-1.5x with 32 and 64 channels on outputs cut into whole 4x4 tiles
 * (32@16x16, 64@8x8, 1 and 2 threads), tied or lost where edge tiles are partly wasted (32@14x14,
 * 64@7x7: 0.9-1.0x), and lost with 16 channels (16@32x32, 16@28x28: 0.8-0.9x; the transforms,
 * linear in the channels, outweigh the GEMMs there). Its error on the weight gradient
 * (tests/test_winograd.c) is ~1e-6 of the largest entry. */
static int wino_wgrad_tile(const rt_conv2d_shape *s) {
    if (!rt_wino_eligible(s) || is_depthwise(s)) return 0;
    const char *e = getenv("RETORT_CONV_WGRAD");
    if (e && !strcmp(e, "direct")) return 0;
    if (e && !strcmp(e, "winograd2")) return 2;
    if (e && (!strcmp(e, "winograd") || !strcmp(e, "winograd4"))) return 4;
    switch (forced_alg()) {
    case CONV_WINO2: return 2;
    case CONV_WINO4: return 4;
    case CONV_AUTO: break;
    default: return 0;
    }
    /* Off by default: the per-shape gains below did not show in the whole step (bench_step kd/train,
     * 1 and 2 threads, within noise; 2 threads possibly slower). Candidate rule, kept for re-measuring:
     * AVX2, C >= 32, OC >= 32, OH % 4 == 0, OW % 4 == 0 -> 4. */
    return 0;
}

/* The direct kernels: one group, not a plain 1x1 GEMM, on a CPU with AVX2 or better (any stride,
 * through phase planes). */
static int use_direct(const rt_conv2d_shape *s) {
    return s->groups == 1 && !is_depthwise(s) && !is_pointwise(s) && rt_cpu_isa() >= RT_ISA_AVX2 &&
           forced_alg() != CONV_IM2COL;
}
/* The data gradient as one direct convolution: stride 1 and non-negative padding (K-1)*d - p. */
static int use_direct_data(const rt_conv2d_shape *s) {
    return use_direct(s) && s->sh == 1 && s->sw == 1 && (s->KH - 1) * s->dh >= s->ph && (s->KW - 1) * s->dw >= s->pw;
}
/* The strided data gradient as one direct convolution per phase of the input. */
static int use_phase_data(const rt_conv2d_shape *s) { return use_direct(s) && (s->sh > 1 || s->sw > 1); }

/* Samples per im2col chunk. */
static int64_t chunk_samples(const rt_conv2d_shape *s) {
    if (s->chunk > 0) return s->chunk < s->N ? s->chunk : (s->N > 0 ? s->N : 1);
    int64_t per = s->C * s->KH * s->KW * s->OH * s->OW;
    int64_t b = COL_BUDGET_FLOATS / (per > 0 ? per : 1);
    if (b < 1) b = 1;
    return b < s->N ? b : s->N;
}

static size_t round64(size_t b) { return (b + 63) & ~(size_t)63; }
static int64_t round_up(int64_t a, int64_t m) { return (a + m - 1) / m * m; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* Bytes of the im2col path: col (C*KH*KW, B*OH*OW) and a staging matrix (OC, B*OH*OW). */
static size_t gemm_workspace(const rt_conv2d_shape *s) {
    int64_t cols = chunk_samples(s) * s->OH * s->OW;
    return round64((size_t)(s->C * s->KH * s->KW * cols) * sizeof(float)) +
           round64((size_t)(s->OC * cols) * sizeof(float));
}

/* ---- direct path: geometry and workspace ----
 * A source (C, H0, W0) is zero-padded by pt rows on top and pl columns on the left (and enough
 * below and to the right) into planes of row length Wq, so that every tap of every output pixel
 * is a constant offset into the plane, which is what conv_direct.h needs:
 *  - stride 1: the rows share their padding columns. A row is stored as W0 values followed by
 *    Wq - W0 >= max(left, right padding) zeros; a read left of column 0 lands in the previous
 *    row's zeros. One extra zero row on top serves the first row. (Fewer dropped columns than
 *    padding each row on both sides: 1 in 9 instead of 2 in 10 for 8x8 images.)
 *  - stride (sh, sw): the padded source is split into sh*sw phase planes per channel; phase (a, b)
 *    holds padded rows a, a+sh, ... and columns b, b+sw, ... */
typedef struct {
    int64_t C, OC, KH, KW, sh, sw, dh, dw; /* the convolution as the kernels see it */
    int64_t H0, W0, pt, pl;                /* source plane and its top/left padding */
    int64_t Hq, Wq;                        /* rows (with the extra top row when shared) and row length */
    int64_t OH, OW;
    int shared; /* stride 1 with shared padding columns */
    int flip;   /* the data gradient: filters flipped and transposed */
    void (*gather2)(float *, int64_t, const float *, int64_t, int64_t, int64_t); /* stride-2 deinterleave */
} direct_geom;

/* Fills the plane sizes of g from the source, padding and output sizes. */
static direct_geom geom_finish(direct_geom g) {
    int64_t pr = (g.OW - 1) * g.sw + (g.KW - 1) * g.dw - g.pl - (g.W0 - 1); /* right padding read */
    int64_t pb = (g.OH - 1) * g.sh + (g.KH - 1) * g.dh - g.pt - (g.H0 - 1);
    if (pr < 0) pr = 0;
    if (pb < 0) pb = 0;
    int64_t wq = g.W0 + (g.pl > pr ? g.pl : pr);
    g.gather2 = rt_cpu_isa() >= RT_ISA_AVX512 ? rt_convd_gather2_avx512 : rt_convd_gather2_avx2;
    g.shared = g.sh == 1 && g.sw == 1 && g.OW <= wq;
    if (g.shared) {
        g.Wq = wq;
        g.Hq = 1 + g.pt + g.H0 + pb;
    } else {
        g.Wq = (g.pl + g.W0 + pr + g.sw - 1) / g.sw;
        g.Hq = (g.pt + g.H0 + pb + g.sh - 1) / g.sh;
    }
    return g;
}

static direct_geom geom_forward(const rt_conv2d_shape *s) {
    return geom_finish((direct_geom){s->C, s->OC, s->KH, s->KW, s->sh, s->sw, s->dh, s->dw, s->H, s->W, s->ph, s->pw, 0,
                                     0, s->OH, s->OW, 0, 0, NULL});
}
/* gin = stride-1 convolution of gout padded by (K-1)*d - p with the flipped, transposed filters */
static direct_geom geom_data(const rt_conv2d_shape *s) {
    int64_t qh = (s->KH - 1) * s->dh - s->ph, qw = (s->KW - 1) * s->dw - s->pw;
    return geom_finish((direct_geom){s->OC, s->C, s->KH, s->KW, 1, 1, s->dh, s->dw, s->OH, s->OW, qh, qw, 0, 0, s->H,
                                     s->W, 0, 1, NULL});
}

static int64_t geom_plane(const direct_geom *g) { return g->Hq * g->Wq; }
static int64_t geom_K(const direct_geom *g) { return g->C * g->KH * g->KW; }
/* floats of one padded sample */
static int64_t geom_sample(const direct_geom *g) { return g->C * g->sh * g->sw * geom_plane(g); }
/* floats the tiles may read past the last sample */
static int64_t geom_slack(const direct_geom *g) { return (g->KW - 1) * g->dw + RT_CONVD_TILE_SLACK; }
/* Floats a weight-gradient group may fill: half the core's L2 (the other half for the partial
 * gradient and the stream of the next group), 64 Ki floats where the size is unknown. Larger
 * groups spend fewer horizontal sums per sample: on a 1 MiB L2 (Zen 5) 512 KiB groups took the
 * 64-channel 8x8 weight gradient from 2.20 to 1.97 ms and the 16- and 32-channel ones 4-6% lower,
 * against 256 KiB groups. */
static int64_t group_budget(void) {
    long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE); /* a few cpuid queries: cheap next to a convolution */
    return l2 >= (256 << 10) && l2 <= (64 << 20) ? (int64_t)l2 / 2 / (int64_t)sizeof(float) : (int64_t)64 << 10;
}

/* Samples per weight-gradient group, per: floats a sample takes there (its padded input and its
 * output gradient in the kernel's layout): the group stays in L2. */
static int64_t group_samples(int64_t per, int64_t N) {
    int64_t b = group_budget() / (per > 0 ? per : 1);
    b = b < 1 ? 1 : b > 32 ? 32 : b;
    return N < b ? (N > 0 ? N : 1) : b;
}

/* Workspace of the direct kernels: koff, then packed weights and all padded samples (forward),
 * or per thread a group of padded samples, their gradients by virtual position and a partial gw. */
typedef struct {
    size_t wpk, pad, gv, part, total;       /* byte offsets (koff at 0), total size */
    size_t pad_bytes, gv_bytes, part_bytes; /* per thread (weight gradient) */
} direct_ws;

static direct_ws direct_layout(const direct_geom *g, int64_t N, int wgrad) {
    int64_t Kp = round_up(geom_K(g), RT_CONVD_KB), OCp = round_up(g->OC, RT_CONVD_OCB);
    direct_ws w = {0};
    w.wpk = round64((size_t)Kp * sizeof(int64_t));
    if (!wgrad) {
        w.pad = w.wpk + round64((size_t)(OCp * Kp) * sizeof(float));
        w.total = w.pad + round64((size_t)(N * geom_sample(g) + geom_slack(g)) * sizeof(float));
    } else {
        int64_t nt = omp_get_max_threads(), Qs = round_up(g->OH * g->Wq, 16);
        int64_t G = group_samples(geom_sample(g) + OCp * Qs, N);
        w.pad_bytes = round64((size_t)(G * geom_sample(g) + geom_slack(g)) * sizeof(float));
        w.gv_bytes = round64((size_t)(G * OCp * Qs) * sizeof(float));
        w.part_bytes = round64((size_t)(OCp * Kp) * sizeof(float));
        w.pad = w.wpk;
        w.gv = w.pad + (size_t)nt * w.pad_bytes;
        w.part = w.gv + (size_t)nt * w.gv_bytes;
        w.total = w.part + (size_t)nt * w.part_bytes;
    }
    return w;
}

/* The three-tap weight gradient (conv_direct.h, rt_convd_wg3): per thread a group of padded
 * samples, their output gradients transposed (OH*OW, OCv), and a partial (rows8*3, OCv); then
 * koff (Kp) and rowoff (rows8), shared. */
typedef struct {
    size_t pad, gt, part, koff, rowoff, total;
    size_t pad_bytes, gt_bytes, part_bytes; /* per thread */
    int64_t G, OCv, rows8;
} wg3_ws;

/* Does the three-tap weight gradient (vectorised over output channels) apply? Filters three taps
 * wide on the direct path, where it measured faster: AVX-512 with 32 or more output channels (one
 * Zen 5 core, batch 64, bench_step --kernels-only: 64@8x8 163 -> 210 GFLOP/s, 32->64 stride 2 118
 * -> 157, 32@16x16 182 -> 192). With one vector of channels (16) each FMA needs its own broadcast
 * load and it lost (16@32x32 163 -> 149), as it did everywhere on AVX2 (95-108 -> 55-58).
 * RETORT_CONV_WGRAD=lanes forces it wherever the filter is three taps wide, =direct keeps the
 * kernel vectorised over positions. */
static int use_wg3(const rt_conv2d_shape *s) {
    if (!use_direct(s) || s->KW != 3) return 0;
    const char *e = getenv("RETORT_CONV_WGRAD");
    if (e && !strcmp(e, "lanes")) return 1;
    if (e && !strcmp(e, "direct")) return 0;
    return rt_cpu_isa() >= RT_ISA_AVX512 && s->OC >= 32;
}

static wg3_ws wg3_layout(const direct_geom *g, int64_t N) {
    wg3_ws w = {0};
    w.OCv = round_up(g->OC, RT_CONVD_WG3_OCV);
    w.rows8 = RT_CONVD_WG3_ROWS(g->C * g->KH);
    int64_t OHW = g->OH * g->OW;
    w.G = group_samples(geom_sample(g) + OHW * w.OCv, N);
    int64_t nt = omp_get_max_threads();
    w.pad_bytes = round64((size_t)(w.G * geom_sample(g) + geom_slack(g)) * sizeof(float));
    w.gt_bytes = round64((size_t)(w.G * OHW * w.OCv) * sizeof(float));
    w.part_bytes = round64((size_t)(w.rows8 * 3 * w.OCv) * sizeof(float));
    w.pad = 0;
    w.gt = w.pad + (size_t)nt * w.pad_bytes;
    w.part = w.gt + (size_t)nt * w.gt_bytes;
    w.koff = w.part + (size_t)nt * w.part_bytes;
    w.rowoff = w.koff + round64((size_t)round_up(geom_K(g), RT_CONVD_KB) * sizeof(int64_t));
    w.total = w.rowoff + round64((size_t)w.rows8 * sizeof(int64_t));
    return w;
}

/* The strided data gradient. Input phase (r, t) (rows y = i*sh + r, columns x = j*sw + t) gets
 * gin[c][i*sh+r][j*sw+t] = sum over oc and the taps with (r + ph - kh*dh) % sh == 0 (and the same
 * for columns) of w[oc][c][kh][kw] * gout[oc][i + e][j + f], e = (r + ph - kh*dh) / sh: a stride-1
 * convolution of gout with constant offsets. gout is padded once (PT rows, PL columns, planes of
 * Hg x Wg) for all phases; each phase writes its own (C, Hr, Wr) planes, then they are added into
 * gin interleaved. */
typedef struct {
    int64_t PT, PL, Hg, Wg; /* the padded output gradient */
} phase_geom;

/* Offset of tap k on one axis for phase r, or 0 with *ok = 0 when the tap does not reach it. */
static int64_t phase_off(int64_t r, int64_t p, int64_t k, int64_t d, int64_t st, int *ok) {
    int64_t v = r + p - k * d;
    *ok = v % st == 0;
    return *ok ? v / st : 0;
}

static phase_geom phase_geometry(const rt_conv2d_shape *s) {
    int64_t emin = 0, emax = 0, fmin = 0, fmax = 0;
    int ok, first = 1;
    for (int64_t r = 0; r < s->sh; r++)
        for (int64_t k = 0; k < s->KH; k++) {
            int64_t e = phase_off(r, s->ph, k, s->dh, s->sh, &ok);
            if (!ok) continue;
            emin = first || e < emin ? e : emin;
            emax = first || e > emax ? e : emax;
            first = 0;
        }
    first = 1;
    for (int64_t t = 0; t < s->sw; t++)
        for (int64_t k = 0; k < s->KW; k++) {
            int64_t f = phase_off(t, s->pw, k, s->dw, s->sw, &ok);
            if (!ok) continue;
            fmin = first || f < fmin ? f : fmin;
            fmax = first || f > fmax ? f : fmax;
            first = 0;
        }
    phase_geom p;
    p.PT = emin < 0 ? -emin : 0;
    p.PL = fmin < 0 ? -fmin : 0;
    int64_t hr = (s->H + s->sh - 1) / s->sh, wr = (s->W + s->sw - 1) / s->sw; /* largest phase */
    p.Hg = p.PT + (s->OH > hr + emax ? s->OH : hr + emax);
    p.Wg = p.PL + (s->OW > wr + fmax ? s->OW : wr + fmax);
    return p;
}

/* koff | packed weights (one phase at a time) | padded gout | phase outputs (N*C*H*W in all) */
typedef struct {
    size_t wpk, pad, out, total;
} phase_ws;

static phase_ws phase_layout(const rt_conv2d_shape *s, const phase_geom *p) {
    int64_t Kp = round_up(s->OC * s->KH * s->KW, RT_CONVD_KB), Cp = round_up(s->C, RT_CONVD_OCB);
    phase_ws w;
    w.wpk = round64((size_t)Kp * sizeof(int64_t));
    w.pad = w.wpk + round64((size_t)(Cp * Kp) * sizeof(float));
    w.out = w.pad + round64((size_t)(s->N * s->OC * p->Hg * p->Wg + p->Wg + RT_CONVD_TILE_SLACK) * sizeof(float));
    w.total = w.out + round64((size_t)(s->N * s->C * s->H * s->W) * sizeof(float));
    return w;
}

/* Bytes of the direct or im2col path (all three passes). */
static size_t classic_workspace(const rt_conv2d_shape *s) {
    size_t g = is_pointwise(s) ? 0 : gemm_workspace(s);
    if (!use_direct(s)) return g;
    direct_geom f = geom_forward(s);
    size_t a = direct_layout(&f, s->N, 0).total;
    size_t b = use_wg3(s) ? wg3_layout(&f, s->N).total : direct_layout(&f, s->N, 1).total;
    size_t c = g;
    if (use_direct_data(s)) {
        direct_geom d = geom_data(s);
        c = direct_layout(&d, s->N, 0).total;
    } else if (use_phase_data(s)) {
        phase_geom p = phase_geometry(s);
        c = phase_layout(s, &p).total;
    }
    b = a > b ? a : b;
    return b > c ? b : c;
}

/* The direct / im2col workspace, or the Winograd ones where chosen (the weight gradient stays on
 * the direct or im2col path). */
size_t rt_conv2d_workspace(const rt_conv2d_shape *s) {
    if (is_depthwise(s) || s->N == 0) return 0;
    size_t w = classic_workspace(s);
    int m = wino_tile(s);
    size_t a = m ? rt_wino_forward_workspace(s, m) : 0, b = m ? rt_wino_backward_data_workspace(s, m) : 0;
    a = a > b ? a : b;
    int mw = wino_wgrad_tile(s);
    b = mw ? rt_wino_backward_weight_workspace(s, mw) : 0;
    a = a > b ? a : b;
    return w > a ? w : a;
}

/* ---- im2col / col2im for one sample ---- */

/* Valid output range [lo, hi) along one axis for kernel offset k: 0 <= o*st - p + k*d < n. */
static void valid_range(int64_t n, int64_t on, int64_t st, int64_t p, int64_t off, int64_t *lo, int64_t *hi) {
    int64_t base = off - p; /* input index at o = 0 */
    int64_t l = base >= 0 ? 0 : (-base + st - 1) / st;
    int64_t h = base >= n ? 0 : (n - 1 - base) / st + 1;
    if (l > on) l = on;
    if (h > on) h = on;
    if (h < l) h = l;
    *lo = l;
    *hi = h;
}

// in (H,W) of channel c, col rows (c*KH*KW + kh*KW + kw) of a (C*KH*KW, ld) matrix, OH*OW columns each
static void im2col_channel(const rt_conv2d_shape *s, const float *in, float *col, int64_t ld) {
    for (int64_t kh = 0; kh < s->KH; kh++) {
        int64_t oh0, oh1;
        valid_range(s->H, s->OH, s->sh, s->ph, kh * s->dh, &oh0, &oh1);
        for (int64_t kw = 0; kw < s->KW; kw++) {
            int64_t ow0, ow1;
            valid_range(s->W, s->OW, s->sw, s->pw, kw * s->dw, &ow0, &ow1);
            float *row = col + (kh * s->KW + kw) * ld;
            memset(row, 0, (size_t)(oh0 * s->OW) * sizeof(float));
            for (int64_t oh = oh0; oh < oh1; oh++) {
                float *r = row + oh * s->OW;
                const float *ip = in + (oh * s->sh - s->ph + kh * s->dh) * s->W;
                int64_t off = kw * s->dw - s->pw; /* ow maps to input column ow * sw + off */
                for (int64_t ow = 0; ow < ow0; ow++) r[ow] = 0;
                if (s->sw == 1)
                    memcpy(r + ow0, ip + ow0 + off, (size_t)(ow1 - ow0) * sizeof(float));
                else
                    for (int64_t ow = ow0; ow < ow1; ow++) r[ow] = ip[ow * s->sw + off];
                for (int64_t ow = ow1; ow < s->OW; ow++) r[ow] = 0;
            }
            memset(row + oh1 * s->OW, 0, (size_t)((s->OH - oh1) * s->OW) * sizeof(float));
        }
    }
}

// col rows of channel c as in im2col_channel, gin (H,W) of channel c; accumulates into gin
static void col2im_channel(const rt_conv2d_shape *s, const float *col, int64_t ld, float *gin) {
    for (int64_t kh = 0; kh < s->KH; kh++) {
        int64_t oh0, oh1;
        valid_range(s->H, s->OH, s->sh, s->ph, kh * s->dh, &oh0, &oh1);
        for (int64_t kw = 0; kw < s->KW; kw++) {
            int64_t ow0, ow1;
            valid_range(s->W, s->OW, s->sw, s->pw, kw * s->dw, &ow0, &ow1);
            const float *row = col + (kh * s->KW + kw) * ld;
            for (int64_t oh = oh0; oh < oh1; oh++) {
                const float *r = row + oh * s->OW;
                float *gp = gin + (oh * s->sh - s->ph + kh * s->dh) * s->W;
                int64_t off = kw * s->dw - s->pw;
                if (s->sw == 1)
                    for (int64_t ow = ow0; ow < ow1; ow++) gp[ow + off] += r[ow];
                else
                    for (int64_t ow = ow0; ow < ow1; ow++) gp[ow * s->sw + off] += r[ow];
            }
        }
    }
}

/* im2col of samples [n0, n0+B) into col (C*KH*KW, B*OH*OW): sample b owns columns [b*OHW, (b+1)*OHW). */
static void im2col_chunk(const rt_conv2d_shape *s, const float *in, int64_t n0, int64_t B, float *col) {
    int64_t OHW = s->OH * s->OW, ld = B * OHW, KK = s->KH * s->KW, HW = s->H * s->W;
#pragma omp parallel for collapse(2) schedule(static) /* over (sample, channel): disjoint rows/columns */
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < s->C; c++)
            im2col_channel(s, in + ((n0 + b) * s->C + c) * HW, col + c * KK * ld + b * OHW, ld);
}

static void col2im_chunk(const rt_conv2d_shape *s, const float *col, int64_t n0, int64_t B, float *gin) {
    int64_t OHW = s->OH * s->OW, ld = B * OHW, KK = s->KH * s->KW, HW = s->H * s->W;
#pragma omp parallel for collapse(2) schedule(static) /* over (sample, channel): each writes its own plane */
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < s->C; c++)
            col2im_channel(s, col + c * KK * ld + b * OHW, ld, gin + ((n0 + b) * s->C + c) * HW);
}

/* gout of samples [n0, n0+B) (B,OC,OHW) -> stage (OC, B*OHW) */
static void gather_chunk(const rt_conv2d_shape *s, const float *gout, int64_t n0, int64_t B, float *stage) {
    int64_t OHW = s->OH * s->OW, ld = B * OHW;
#pragma omp parallel for collapse(2) schedule(static) /* over (sample, out channel) */
    for (int64_t b = 0; b < B; b++)
        for (int64_t oc = 0; oc < s->OC; oc++)
            memcpy(stage + oc * ld + b * OHW, gout + ((n0 + b) * s->OC + oc) * OHW, (size_t)OHW * sizeof(float));
}

// gout (N,OC,OH,OW), gb (OC); accumulates the bias gradient in double, in a fixed order
static void bias_grad(const rt_conv2d_shape *s, float *gb, const float *gout) {
    int64_t OHW = s->OH * s->OW;
#pragma omp parallel for schedule(static) /* over out channels */
    for (int64_t oc = 0; oc < s->OC; oc++) {
        double acc = 0;
        for (int64_t n = 0; n < s->N; n++) {
            const float *g = gout + (n * s->OC + oc) * OHW;
            float part = 0;
            for (int64_t i = 0; i < OHW; i++) part += g[i];
            acc += part;
        }
        gb[oc] += (float)acc;
    }
}

/* ---- depthwise: one (KH,KW) filter per channel ---- */

// in (N,C,H,W), w (C,1,KH,KW), bias (C) or NULL, out (N,C,OH,OW); overwrites out
static void dw_forward(const rt_conv2d_shape *s, float *out, const float *in, const float *w, const float *bias) {
    int64_t OHW = s->OH * s->OW, HW = s->H * s->W, KK = s->KH * s->KW;
#pragma omp parallel for schedule(static) /* over (sample, channel) planes */
    for (int64_t p = 0; p < s->N * s->C; p++) {
        int64_t c = p % s->C;
        float *o = out + p * OHW;
        const float *ip = in + p * HW, *wp = w + c * KK;
        float b0 = bias ? bias[c] : 0.0f;
        for (int64_t i = 0; i < OHW; i++) o[i] = b0;
        for (int64_t kh = 0; kh < s->KH; kh++) {
            int64_t oh0, oh1;
            valid_range(s->H, s->OH, s->sh, s->ph, kh * s->dh, &oh0, &oh1);
            for (int64_t kw = 0; kw < s->KW; kw++) {
                int64_t ow0, ow1;
                valid_range(s->W, s->OW, s->sw, s->pw, kw * s->dw, &ow0, &ow1);
                float wv = wp[kh * s->KW + kw];
                int64_t off = kw * s->dw - s->pw;
                for (int64_t oh = oh0; oh < oh1; oh++) {
                    float *r = o + oh * s->OW;
                    const float *q = ip + (oh * s->sh - s->ph + kh * s->dh) * s->W;
                    if (s->sw == 1)
                        for (int64_t ow = ow0; ow < ow1; ow++) r[ow] += wv * q[ow + off];
                    else
                        for (int64_t ow = ow0; ow < ow1; ow++) r[ow] += wv * q[ow * s->sw + off];
                }
            }
        }
    }
}

// gout (N,C,OH,OW), w (C,1,KH,KW), gin (N,C,H,W); accumulates into gin
static void dw_backward_data(const rt_conv2d_shape *s, float *gin, const float *gout, const float *w) {
    int64_t OHW = s->OH * s->OW, HW = s->H * s->W, KK = s->KH * s->KW;
#pragma omp parallel for schedule(static) /* over (sample, channel) planes */
    for (int64_t p = 0; p < s->N * s->C; p++) {
        int64_t c = p % s->C;
        const float *g = gout + p * OHW, *wp = w + c * KK;
        float *gi = gin + p * HW;
        for (int64_t kh = 0; kh < s->KH; kh++) {
            int64_t oh0, oh1;
            valid_range(s->H, s->OH, s->sh, s->ph, kh * s->dh, &oh0, &oh1);
            for (int64_t kw = 0; kw < s->KW; kw++) {
                int64_t ow0, ow1;
                valid_range(s->W, s->OW, s->sw, s->pw, kw * s->dw, &ow0, &ow1);
                float wv = wp[kh * s->KW + kw];
                int64_t off = kw * s->dw - s->pw;
                for (int64_t oh = oh0; oh < oh1; oh++) {
                    const float *r = g + oh * s->OW;
                    float *q = gi + (oh * s->sh - s->ph + kh * s->dh) * s->W;
                    if (s->sw == 1)
                        for (int64_t ow = ow0; ow < ow1; ow++) q[ow + off] += wv * r[ow];
                    else
                        for (int64_t ow = ow0; ow < ow1; ow++) q[ow * s->sw + off] += wv * r[ow];
                }
            }
        }
    }
}

// gout (N,C,OH,OW), in (N,C,H,W), gw (C,1,KH,KW); accumulates into gw
static void dw_backward_weight(const rt_conv2d_shape *s, float *gw, const float *gout, const float *in) {
    int64_t OHW = s->OH * s->OW, HW = s->H * s->W, KK = s->KH * s->KW, OW = s->OW;
#pragma omp parallel for schedule(static) /* over channels; each sums its samples in order */
    for (int64_t c = 0; c < s->C; c++) {
        for (int64_t kh = 0; kh < s->KH; kh++) {
            int64_t oh0, oh1;
            valid_range(s->H, s->OH, s->sh, s->ph, kh * s->dh, &oh0, &oh1);
            for (int64_t kw = 0; kw < s->KW; kw++) {
                int64_t ow0, ow1;
                valid_range(s->W, s->OW, s->sw, s->pw, kw * s->dw, &ow0, &ow1);
                int64_t off = kw * s->dw - s->pw;
                /* lane-wise partial sums over a row keep the inner loop vectorisable */
                float lane[16] = {0};
                double acc = 0;
                for (int64_t n = 0; n < s->N; n++) {
                    const float *g = gout + (n * s->C + c) * OHW, *ip = in + (n * s->C + c) * HW;
                    for (int64_t oh = oh0; oh < oh1; oh++) {
                        const float *r = g + oh * OW;
                        const float *q = ip + (oh * s->sh - s->ph + kh * s->dh) * s->W;
                        int64_t ow = ow0;
                        if (s->sw == 1)
                            for (; ow + 16 <= ow1; ow += 16)
                                for (int l = 0; l < 16; l++) lane[l] += r[ow + l] * q[ow + l + off];
                        for (; ow < ow1; ow++) lane[0] += r[ow] * q[ow * s->sw + off];
                    }
                    for (int l = 0; l < 16; l++) {
                        acc += lane[l];
                        lane[l] = 0;
                    }
                }
                gw[c * KK + kh * s->KW + kw] += (float)acc;
            }
        }
    }
}

/* ---- direct path (one group, SIMD) ---- */

typedef void (*convd_forward_fn)(const rt_convd *, const float *, const float *, const float *, float *, int64_t,
                                 int64_t, int, const rt_conv_epi *);
typedef void (*convd_wgrad_fn)(const rt_convd *, const float *, const float *, int64_t, int64_t, int64_t, float *);

static convd_forward_fn pick_forward(void) {
    return rt_cpu_isa() >= RT_ISA_AVX512 ? rt_convd_forward_avx512 : rt_convd_forward_avx2;
}
static convd_wgrad_fn pick_wgrad(void) {
    return rt_cpu_isa() >= RT_ISA_AVX512 ? rt_convd_wgrad_avx512 : rt_convd_wgrad_avx2;
}

/* Fills koff (Kp entries) and returns the kernels' view of g. */
static rt_convd make_convd(const direct_geom *g, int64_t *koff) {
    int64_t T = g->KH * g->KW, K = geom_K(g), Kp = round_up(K, RT_CONVD_KB), plane = geom_plane(g);
    for (int64_t c = 0; c < g->C; c++)
        for (int64_t kh = 0; kh < g->KH; kh++)
            for (int64_t kw = 0; kw < g->KW; kw++) {
                int64_t y = kh * g->dh, x = kw * g->dw, *o = &koff[c * T + kh * g->KW + kw];
                if (g->shared) /* real row oh + y - pt is stored at row oh + y + 1, column ow + x - pl */
                    *o = c * plane + (1 + y) * g->Wq + x - g->pl;
                else /* phase (y % sh, x % sw), at row oh + y / sh, column ow + x / sw */
                    *o = ((c * g->sh + y % g->sh) * g->sw + x % g->sw) * plane + (y / g->sh) * g->Wq + x / g->sw;
            }
    for (int64_t k = K; k < Kp; k++) koff[k] = 0;
    return (rt_convd){g->OC,         round_up(g->OC, RT_CONVD_OCB), K, Kp, koff, g->Wq, g->OH, g->OW,
                      g->OH * g->Wq, round_up(g->OH * g->Wq, 16)};
}

// w (OC,C,KH,KW) of the convolution (for the data gradient: of the forward one, read flipped and
// transposed), wpk (OCp/8, Kp, 8) blocks of g's output channels; overwrites wpk
static void pack_weights(const direct_geom *g, const float *w, float *wpk, int64_t Kp) {
    int64_t T = g->KH * g->KW, K = geom_K(g), OCp = round_up(g->OC, RT_CONVD_OCB);
    for (int64_t o = 0; o < OCp; o++)
        for (int64_t k = 0; k < Kp; k++) {
            float v = 0;
            if (o < g->OC && k < K) {
                if (!g->flip)
                    v = w[o * K + k];
                else { /* w'[o][k = (oc, kh, kw)] = w[oc][o][KH-1-kh][KW-1-kw] */
                    int64_t oc = k / T, kh = k % T / g->KW, kw = k % g->KW;
                    v = w[(oc * g->OC + o) * T + (g->KH - 1 - kh) * g->KW + (g->KW - 1 - kw)];
                }
            }
            wpk[(o / RT_CONVD_OCB) * Kp * RT_CONVD_OCB + k * RT_CONVD_OCB + o % RT_CONVD_OCB] = v;
        }
}

/* Does some tap k < KH read phase a, i.e. k*d % s == a? */
static int phase_used(int64_t KH, int64_t d, int64_t s, int64_t a) {
    for (int64_t k = 0; k < KH && k < s; k++) /* k*d % s repeats with period dividing s */
        if (k * d % s == a) return 1;
    return 0;
}

// src (H0,W0) of one channel, dst its padded plane (shared) or phase planes; overwrites dst
static void pad_channel(const direct_geom *g, const float *src, float *dst) {
    int64_t H0 = g->H0, W0 = g->W0, Wq = g->Wq;
    if (g->shared) {
        int64_t top = 1 + g->pt;
        memset(dst, 0, (size_t)(top * Wq) * sizeof(float));
        for (int64_t h = 0; h < H0; h++) {
            float *r = dst + (top + h) * Wq;
            memcpy(r, src + h * W0, (size_t)W0 * sizeof(float));
            for (int64_t x = W0; x < Wq; x++) r[x] = 0;
        }
        memset(dst + (top + H0) * Wq, 0, (size_t)((g->Hq - top - H0) * Wq) * sizeof(float));
        return;
    }
    for (int64_t a = 0; a < g->sh; a++)
        for (int64_t b = 0; b < g->sw; b++) {
            float *ph = dst + (a * g->sw + b) * geom_plane(g);
            memset(ph, 0, (size_t)geom_plane(g) * sizeof(float)); /* then the source part, if a tap reads it */
            if (!phase_used(g->KH, g->dh, g->sh, a) || !phase_used(g->KW, g->dw, g->sw, b)) continue;
            /* rows i with 0 <= a + i*sh - pt < H0, columns j with 0 <= b + j*sw - pl < W0 */
            int64_t i0 = g->pt > a ? (g->pt - a + g->sh - 1) / g->sh : 0;
            int64_t i1 = min64(H0 + g->pt > a ? (H0 + g->pt - a + g->sh - 1) / g->sh : 0, g->Hq);
            int64_t j0 = g->pl > b ? (g->pl - b + g->sw - 1) / g->sw : 0;
            int64_t j1 = min64(W0 + g->pl > b ? (W0 + g->pl - b + g->sw - 1) / g->sw : 0, Wq);
            if (i1 <= i0 || j1 <= j0) continue;
            const float *s0 = src + (a + i0 * g->sh - g->pt) * W0 + j0 * g->sw + b - g->pl;
            if (g->sw == 2) /* the common stride: a vector deinterleave */
                g->gather2(ph + i0 * Wq + j0, Wq, s0, g->sh * W0, i1 - i0, j1 - j0);
            else
                for (int64_t i = i0; i < i1; i++)
                    for (int64_t j = j0; j < j1; j++) ph[i * Wq + j] = s0[(i - i0) * g->sh * W0 + (j - j0) * g->sw];
        }
}

// src (C,H0,W0), one sample; dst its C padded planes (geom_sample(g) floats); overwrites dst
static void pad_sample(const direct_geom *g, const float *src, float *dst) {
    int64_t chs = geom_sample(g) / g->C, HW0 = g->H0 * g->W0;
    for (int64_t c = 0; c < g->C; c++) pad_channel(g, src + c * HW0, dst + c * chs);
}

/* out (N,OC,OH,OW) = act(bias + conv + res) (or += conv) of src (N,C,H0,W0); epi may be NULL. */
static void direct_forward(const rt_conv2d_shape *s, const direct_geom *g, float *out, const float *src, const float *w,
                           const float *bias, const rt_conv_epi *epi, void *ws, int accumulate) {
    direct_ws L = direct_layout(g, s->N, 0);
    float *wpk = (float *)((char *)ws + L.wpk), *pad = (float *)((char *)ws + L.pad);
    rt_convd d = make_convd(g, ws);
    pack_weights(g, w, wpk, d.Kp);
    int64_t N = s->N, C = g->C, HW0 = g->H0 * g->W0, chs = geom_sample(g) / C;
#pragma omp parallel for schedule(static) /* over (sample, channel) */
    for (int64_t p = 0; p < N * C; p++) pad_channel(g, src + p * HW0, pad + p * chs);
    memset(pad + N * geom_sample(g), 0, (size_t)geom_slack(g) * sizeof(float));
    convd_forward_fn fn = pick_forward();
    int64_t nob = (g->OC + RT_CONVD_OCB - 1) / RT_CONVD_OCB, osz = g->OC * g->OH * g->OW;
#pragma omp parallel for collapse(2) schedule(static) /* over (sample, block of 8 output channels) */
    for (int64_t n = 0; n < N; n++)
        for (int64_t b = 0; b < nob; b++) {
            rt_conv_epi e = {epi && epi->res ? epi->res + n * osz : NULL, epi && epi->relu};
            fn(&d, pad + n * geom_sample(g), wpk, bias, out + n * osz, b * RT_CONVD_OCB,
               min64((b + 1) * RT_CONVD_OCB, g->OC), accumulate, epi ? &e : NULL);
        }
}

/* gw (OC,C,KH,KW) += weight gradient. Each thread takes an even, ordered share of the samples,
 * in groups (padded, and their gradients laid out by virtual position), into a partial; the
 * partials are then added in thread order. */
static void direct_wgrad(const rt_conv2d_shape *s, float *gw, const float *gout, const float *in, void *ws) {
    direct_geom g = geom_forward(s);
    direct_ws L = direct_layout(&g, s->N, 1);
    rt_convd d = make_convd(&g, ws);
    int64_t OCp = d.OCp, Kp = d.Kp, Qs = d.Qs, samp = geom_sample(&g);
    int64_t G = group_samples(samp + OCp * Qs, s->N), gvs = OCp * Qs;
    convd_wgrad_fn fn = pick_wgrad();
    int nused = 1;
#pragma omp parallel /* over samples, split evenly between threads in order */
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
#pragma omp single
        nused = nt;
        float *pad = (float *)((char *)ws + L.pad + t * L.pad_bytes);
        float *gv = (float *)((char *)ws + L.gv + t * L.gv_bytes);
        float *part = (float *)((char *)ws + L.part + t * L.part_bytes);
        memset(part, 0, L.part_bytes);
        memset(gv, 0, L.gv_bytes); /* dropped columns, tails and padding rows stay zero */
        int64_t n1 = s->N * (t + 1) / nt;
        for (int64_t n0 = s->N * t / nt; n0 < n1; n0 += G) {
            int64_t B = min64(G, n1 - n0);
            for (int64_t b = 0; b < B; b++) {
                int64_t n = n0 + b;
                pad_sample(&g, in + n * s->C * s->H * s->W, pad + b * samp);
                for (int64_t oc = 0; oc < s->OC; oc++)
                    for (int64_t oh = 0; oh < s->OH; oh++)
                        memcpy(gv + b * gvs + oc * Qs + oh * g.Wq, gout + ((n * s->OC + oc) * s->OH + oh) * s->OW,
                               (size_t)s->OW * sizeof(float));
            }
            /* reads past the group's last sample must meet finite values (they meet zero gradients) */
            memset(pad + B * samp, 0, (size_t)geom_slack(&g) * sizeof(float));
            fn(&d, gv, pad, B, gvs, samp, part);
        }
    }
    int64_t K = d.K;
#pragma omp parallel for schedule(static) /* over output channels; partials added in thread order */
    for (int64_t oc = 0; oc < s->OC; oc++)
        for (int t = 0; t < nused; t++) {
            const float *p = (const float *)((char *)ws + L.part + t * L.part_bytes) + oc * Kp;
            for (int64_t k = 0; k < K; k++) gw[oc * K + k] += p[k];
        }
}

/* gw (OC,C,KH,KW) += weight gradient of a filter three taps wide (rt_convd_wg3). Threads share
 * the samples as in direct_wgrad; the partials, transposed, are added in thread order. */
static void direct_wgrad3(const rt_conv2d_shape *s, float *gw, const float *gout, const float *in, void *ws) {
    direct_geom g = geom_forward(s);
    wg3_ws L = wg3_layout(&g, s->N);
    int64_t *koff = (int64_t *)((char *)ws + L.koff), *rowoff = (int64_t *)((char *)ws + L.rowoff);
    make_convd(&g, koff);
    int64_t rows = s->C * s->KH, OCv = L.OCv, OHW = s->OH * s->OW, samp = geom_sample(&g);
    for (int64_t r = 0; r < L.rows8; r++) rowoff[r] = koff[(r < rows ? r : 0) * 3] - koff[0];
    rt_convd_wg3 d = {rows, OCv, s->OH, s->OW, g.Wq, rowoff, {koff[0], koff[1], koff[2]}};
    void (*fn)(const rt_convd_wg3 *, const float *, const float *, int64_t, int64_t, int64_t, float *) =
        rt_cpu_isa() >= RT_ISA_AVX512 ? rt_convd_wgrad3_avx512 : rt_convd_wgrad3_avx2;
    int nused = 1;
#pragma omp parallel /* over samples, split evenly between threads in order */
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
#pragma omp single
        nused = nt;
        float *pad = (float *)((char *)ws + L.pad + t * L.pad_bytes);
        float *gt = (float *)((char *)ws + L.gt + t * L.gt_bytes);
        float *part = (float *)((char *)ws + L.part + t * L.part_bytes);
        memset(part, 0, L.part_bytes);
        if (OCv > s->OC) memset(gt, 0, L.gt_bytes); /* the channels past OC stay zero */
        int64_t n1 = s->N * (t + 1) / nt;
        for (int64_t n0 = s->N * t / nt; n0 < n1; n0 += L.G) {
            int64_t B = min64(L.G, n1 - n0);
            for (int64_t b = 0; b < B; b++) {
                int64_t n = n0 + b;
                pad_sample(&g, in + n * s->C * s->H * s->W, pad + b * samp);
                const float *src = gout + n * s->OC * OHW;
                float *dst = gt + b * OHW * OCv;
                for (int64_t p0 = 0; p0 < OHW; p0 += 16) /* transpose in blocks of 16 positions */
                    for (int64_t oc = 0; oc < s->OC; oc++)
                        for (int64_t p = p0; p < min64(p0 + 16, OHW); p++) dst[p * OCv + oc] = src[oc * OHW + p];
            }
            fn(&d, gt, pad, B, OHW * OCv, samp, part);
        }
    }
    int64_t K = rows * 3;
#pragma omp parallel for schedule(static) /* over output channels; partials added in thread order */
    for (int64_t oc = 0; oc < s->OC; oc++)
        for (int t = 0; t < nused; t++) {
            const float *p = (const float *)((char *)ws + L.part + t * L.part_bytes) + oc;
            for (int64_t k = 0; k < K; k++) gw[oc * K + k] += p[k * OCv];
        }
}

/* Does some tap reach input phase (r, t)? */
static int phase_reached(const rt_conv2d_shape *s, int64_t r, int64_t t) {
    int ok, rows = 0, cols = 0;
    for (int64_t k = 0; k < s->KH && !rows; k++) phase_off(r, s->ph, k, s->dh, s->sh, &ok), rows = ok;
    for (int64_t k = 0; k < s->KW && !cols; k++) phase_off(t, s->pw, k, s->dw, s->sw, &ok), cols = ok;
    return rows && cols;
}

// gout (N,OC,OH,OW), w (OC,C,KH,KW), gin (N,C,H,W); accumulates into gin (see phase_geom)
static void phase_backward_data(const rt_conv2d_shape *s, float *gin, const float *gout, const float *w, void *ws) {
    phase_geom p = phase_geometry(s);
    phase_ws L = phase_layout(s, &p);
    int64_t *koff = ws;
    float *wpk = (float *)((char *)ws + L.wpk), *gpad = (float *)((char *)ws + L.pad);
    float *pout = (float *)((char *)ws + L.out);
    int64_t N = s->N, C = s->C, OC = s->OC, plane = p.Hg * p.Wg, OHW = s->OH * s->OW, T = s->KH * s->KW;
#pragma omp parallel for schedule(static) /* over (sample, output channel) planes */
    for (int64_t q = 0; q < N * OC; q++) {
        float *dst = gpad + q * plane;
        const float *src = gout + q * OHW;
        memset(dst, 0, (size_t)plane * sizeof(float));
        for (int64_t h = 0; h < s->OH; h++)
            memcpy(dst + (p.PT + h) * p.Wg + p.PL, src + h * s->OW, (size_t)s->OW * sizeof(float));
    }
    memset(gpad + N * OC * plane, 0, (size_t)(p.Wg + RT_CONVD_TILE_SLACK) * sizeof(float));
    convd_forward_fn fn = pick_forward();
    int64_t nob = (C + RT_CONVD_OCB - 1) / RT_CONVD_OCB, poff = 0;
    int ok;
    for (int64_t r = 0; r < s->sh; r++)
        for (int64_t t = 0; t < s->sw; t++) {
            int64_t Hr = (s->H - r + s->sh - 1) / s->sh, Wr = (s->W - t + s->sw - 1) / s->sw;
            if (Hr <= 0 || Wr <= 0) continue;
            float *po = pout + poff;
            poff += N * C * Hr * Wr;
            /* the taps reaching this phase: k = (oc, kh, kw) in order */
            int64_t K = 0;
            for (int64_t oc = 0; oc < OC; oc++)
                for (int64_t kh = 0; kh < s->KH; kh++) {
                    int64_t e = phase_off(r, s->ph, kh, s->dh, s->sh, &ok);
                    if (!ok) continue;
                    for (int64_t kw = 0; kw < s->KW; kw++) {
                        int64_t f = phase_off(t, s->pw, kw, s->dw, s->sw, &ok);
                        if (ok) koff[K++] = oc * plane + (e + p.PT) * p.Wg + f + p.PL;
                    }
                }
            if (K == 0) continue; /* no tap reaches this phase: its gradient is zero */
            int64_t Kp = round_up(K, RT_CONVD_KB), Cp = round_up(C, RT_CONVD_OCB);
            for (int64_t k = K; k < Kp; k++) koff[k] = 0;
            rt_convd d = {C, Cp, K, Kp, koff, p.Wg, Hr, Wr, Hr * p.Wg, round_up(Hr * p.Wg, 16)};
            memset(wpk, 0, (size_t)(Cp * Kp) * sizeof(float));
            for (int64_t c = 0; c < C; c++) {
                int64_t k = 0;
                float *wc = wpk + (c / RT_CONVD_OCB) * Kp * RT_CONVD_OCB + c % RT_CONVD_OCB;
                for (int64_t oc = 0; oc < OC; oc++)
                    for (int64_t kh = 0; kh < s->KH; kh++) {
                        phase_off(r, s->ph, kh, s->dh, s->sh, &ok);
                        if (!ok) continue;
                        for (int64_t kw = 0; kw < s->KW; kw++) {
                            phase_off(t, s->pw, kw, s->dw, s->sw, &ok);
                            if (ok) wc[(k++) * RT_CONVD_OCB] = w[(oc * C + c) * T + kh * s->KW + kw];
                        }
                    }
            }
#pragma omp parallel for collapse(2) schedule(static) /* over (sample, block of 8 input channels) */
            for (int64_t n = 0; n < N; n++)
                for (int64_t b = 0; b < nob; b++)
                    fn(&d, gpad + n * OC * plane, wpk, NULL, po + n * C * Hr * Wr, b * RT_CONVD_OCB,
                       min64((b + 1) * RT_CONVD_OCB, C), 0, NULL);
        }
#pragma omp parallel for schedule(static) /* over (sample, input channel) planes */
    for (int64_t q = 0; q < N * C; q++) {
        float *g = gin + q * s->H * s->W;
        int64_t off = 0;
        for (int64_t r = 0; r < s->sh; r++)
            for (int64_t t = 0; t < s->sw; t++) {
                int64_t Hr = (s->H - r + s->sh - 1) / s->sh, Wr = (s->W - t + s->sw - 1) / s->sw;
                if (Hr <= 0 || Wr <= 0) continue;
                const float *ph = pout + off + q * Hr * Wr;
                off += N * C * Hr * Wr;
                if (!phase_reached(s, r, t)) continue;
                for (int64_t i = 0; i < Hr; i++)
                    for (int64_t j = 0; j < Wr; j++) g[(i * s->sh + r) * s->W + j * s->sw + t] += ph[i * Wr + j];
            }
    }
}

/* ---- public kernels ---- */

/* out = act(out + b + res) per output channel, in a pass over the output (the paths whose kernels
 * have no epilogue) */
static void epilogue_pass(const rt_conv2d_shape *s, float *out, const float *bias, const rt_conv_epi *epi) {
    const int64_t OHW = s->OH * s->OW;
    const float *res = epi ? epi->res : NULL;
    const int relu = epi && epi->relu;
#pragma omp parallel for collapse(2) schedule(static) /* over (sample, out channel) */
    for (int64_t n = 0; n < s->N; n++)
        for (int64_t oc = 0; oc < s->OC; oc++) {
            float *o = out + (n * s->OC + oc) * OHW, b0 = bias ? bias[oc] : 0.0f;
            const float *r = res ? res + (n * s->OC + oc) * OHW : NULL;
            for (int64_t i = 0; i < OHW; i++) {
                float v = o[i] + b0;
                if (r) v += r[i];
                o[i] = relu ? (v > 0.0f ? v : 0.0f) : v;
            }
        }
}

// in (N,C,H,W), w (OC,C/g,KH,KW), bias (OC) or NULL, out (N,OC,OH,OW); overwrites out
void rt_conv2d_forward(const rt_conv2d_shape *s, float *out, const float *in, const float *w, const float *bias,
                       void *ws) {
    rt_conv2d_forward_epi(s, out, in, w, bias, NULL, ws);
}

void rt_conv2d_forward_epi(const rt_conv2d_shape *s, float *out, const float *in, const float *w, const float *bias,
                           const rt_conv_epi *epi, void *ws) {
    if (s->N == 0) return;
    if (epi && !epi->res && !epi->relu) epi = NULL;
    if (is_depthwise(s)) {
        dw_forward(s, out, in, w, bias);
        if (epi) epilogue_pass(s, out, NULL, epi);
        return;
    }
    int m = wino_tile(s);
    if (m) {
        rt_wino_forward(s, m, out, in, w, bias, epi, ws);
        return;
    }
    if (use_direct(s)) {
        direct_geom g = geom_forward(s);
        direct_forward(s, &g, out, in, w, bias, epi, ws, 0);
        return;
    }
    int64_t G = s->groups, Cg = s->C / G, OCg = s->OC / G, Kg = Cg * s->KH * s->KW, OHW = s->OH * s->OW;
    if (is_pointwise(s)) {
        /* out_n (OC, HW) = w (OC, C) @ in_n (C, HW), per group */
        for (int64_t n = 0; n < s->N; n++)
            for (int64_t g = 0; g < G; g++)
                rt_sgemm(0, 0, OCg, OHW, Kg, 1.0f, w + g * OCg * Kg, Kg, in + (n * s->C + g * Cg) * OHW, OHW, 0.0f,
                         out + (n * s->OC + g * OCg) * OHW, OHW);
    } else {
        int64_t Bmax = chunk_samples(s);
        float *col = ws;
        float *stage = (float *)((char *)ws + round64((size_t)(s->C * s->KH * s->KW * Bmax * OHW) * sizeof(float)));
        for (int64_t n0 = 0; n0 < s->N; n0 += Bmax) {
            int64_t B = s->N - n0 < Bmax ? s->N - n0 : Bmax, ld = B * OHW;
            im2col_chunk(s, in, n0, B, col);
            /* stage (OC, B*OHW) = w (OC, Kg) @ col (Kg, B*OHW), per group */
            for (int64_t g = 0; g < G; g++)
                rt_sgemm(0, 0, OCg, ld, Kg, 1.0f, w + g * OCg * Kg, Kg, col + g * Kg * ld, ld, 0.0f,
                         stage + g * OCg * ld, ld);
#pragma omp parallel for collapse(2) schedule(static) /* over (sample, out channel) */
            for (int64_t b = 0; b < B; b++)
                for (int64_t oc = 0; oc < s->OC; oc++)
                    memcpy(out + ((n0 + b) * s->OC + oc) * OHW, stage + oc * ld + b * OHW, (size_t)OHW * sizeof(float));
        }
    }
    if (bias || epi) epilogue_pass(s, out, bias, epi);
}

// gout (N,OC,OH,OW), w (OC,C/g,KH,KW), gin (N,C,H,W); accumulates into gin
void rt_conv2d_backward_data(const rt_conv2d_shape *s, float *gin, const float *gout, const float *w, void *ws) {
    rt_conv2d_backward_data_ex(s, gin, gout, w, ws, 0);
}

void rt_conv2d_backward_data_ex(const rt_conv2d_shape *s, float *gin, const float *gout, const float *w, void *ws,
                                int overwrite) {
    if (!gin || s->N == 0) return;
    int m = is_depthwise(s) ? 0 : wino_tile(s);
    if (m) {
        rt_wino_backward_data(s, m, gin, gout, w, ws, overwrite);
        return;
    }
    if (!is_depthwise(s) && use_direct_data(s)) {
        direct_geom g = geom_data(s);
        direct_forward(s, &g, gin, gout, w, NULL, NULL, ws, !overwrite);
        return;
    }
    /* the other paths add into gin: zero it first */
    if (overwrite) memset(gin, 0, (size_t)(s->N * s->C * s->H * s->W) * sizeof(float));
    if (is_depthwise(s)) {
        dw_backward_data(s, gin, gout, w);
        return;
    }
    if (use_phase_data(s)) {
        phase_backward_data(s, gin, gout, w, ws);
        return;
    }
    int64_t G = s->groups, Cg = s->C / G, OCg = s->OC / G, Kg = Cg * s->KH * s->KW, OHW = s->OH * s->OW;
    if (is_pointwise(s)) {
        /* gin_n (C, HW) += w^T (C, OC) @ gout_n (OC, HW), per group */
        for (int64_t n = 0; n < s->N; n++)
            for (int64_t g = 0; g < G; g++)
                rt_sgemm(1, 0, Kg, OHW, OCg, 1.0f, w + g * OCg * Kg, Kg, gout + (n * s->OC + g * OCg) * OHW, OHW, 1.0f,
                         gin + (n * s->C + g * Cg) * OHW, OHW);
        return;
    }
    int64_t Bmax = chunk_samples(s);
    float *col = ws;
    float *stage = (float *)((char *)ws + round64((size_t)(s->C * s->KH * s->KW * Bmax * OHW) * sizeof(float)));
    for (int64_t n0 = 0; n0 < s->N; n0 += Bmax) {
        int64_t B = s->N - n0 < Bmax ? s->N - n0 : Bmax, ld = B * OHW;
        gather_chunk(s, gout, n0, B, stage);
        /* col (Kg, B*OHW) = w^T (Kg, OCg) @ stage (OCg, B*OHW), per group */
        for (int64_t g = 0; g < G; g++)
            rt_sgemm(1, 0, Kg, ld, OCg, 1.0f, w + g * OCg * Kg, Kg, stage + g * OCg * ld, ld, 0.0f, col + g * Kg * ld,
                     ld);
        col2im_chunk(s, col, n0, B, gin);
    }
}

// gout (N,OC,OH,OW), in (N,C,H,W), gw (OC,C/g,KH,KW), gb (OC); accumulates into gw and gb
void rt_conv2d_backward_weight(const rt_conv2d_shape *s, float *gw, float *gb, const float *gout, const float *in,
                               void *ws) {
    if (s->N == 0) return;
    if (gb) bias_grad(s, gb, gout);
    if (!gw) return;
    if (is_depthwise(s)) {
        dw_backward_weight(s, gw, gout, in);
        return;
    }
    int m = wino_wgrad_tile(s);
    if (m) {
        rt_wino_backward_weight(s, m, gw, gout, in, ws);
        return;
    }
    if (use_wg3(s)) {
        direct_wgrad3(s, gw, gout, in, ws);
        return;
    }
    if (use_direct(s)) {
        direct_wgrad(s, gw, gout, in, ws);
        return;
    }
    int64_t G = s->groups, Cg = s->C / G, OCg = s->OC / G, Kg = Cg * s->KH * s->KW, OHW = s->OH * s->OW;
    if (is_pointwise(s)) {
        /* gw (OC, C) += gout_n (OC, HW) @ in_n^T (HW, C), per group, samples in order */
        for (int64_t n = 0; n < s->N; n++)
            for (int64_t g = 0; g < G; g++)
                rt_sgemm(0, 1, OCg, Kg, OHW, 1.0f, gout + (n * s->OC + g * OCg) * OHW, OHW,
                         in + (n * s->C + g * Cg) * OHW, OHW, 1.0f, gw + g * OCg * Kg, Kg);
        return;
    }
    int64_t Bmax = chunk_samples(s);
    float *col = ws;
    float *stage = (float *)((char *)ws + round64((size_t)(s->C * s->KH * s->KW * Bmax * OHW) * sizeof(float)));
    for (int64_t n0 = 0; n0 < s->N; n0 += Bmax) {
        int64_t B = s->N - n0 < Bmax ? s->N - n0 : Bmax, ld = B * OHW;
        im2col_chunk(s, in, n0, B, col);
        gather_chunk(s, gout, n0, B, stage);
        /* gw (OCg, Kg) += stage (OCg, B*OHW) @ col^T (B*OHW, Kg), per group */
        for (int64_t g = 0; g < G; g++)
            rt_sgemm(0, 1, OCg, Kg, ld, 1.0f, stage + g * OCg * ld, ld, col + g * Kg * ld, ld, 1.0f, gw + g * OCg * Kg,
                     Kg);
    }
}
