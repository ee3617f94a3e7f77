/* Reductions and normalisers along one dim of an (outer, D, inner) view. inner == 1 (the last dim)
 * takes a row path with contiguous loops; otherwise columns are processed in blocks of RT_RD_BLOCK
 * adjacent inner positions so every pass over D reads contiguous runs. Tasks are (outer, block)
 * pairs: each owns its outputs, so results do not depend on the thread count. */
#include "kernels/reduce.h"

#include <math.h>

#define RT_RD_BLOCK 64            /* inner positions per task when reducing a middle dim */
#define RT_RD_PAR_MIN (1 << 15)   /* elements below which threads cost more than they save */
#define RT_RD_RUN 4096            /* elements per task when spreading one value along D */
#define RT_RD_SUM_BLOCK (1 << 16) /* rt_sum_all_f64's minimum block */
#define RT_RD_SUM_NBLK 1024       /* and its maximum number of blocks */

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* the tasks of an (outer, D, inner) kernel: outer rows, times column blocks when inner > 1 */
static inline int64_t nblocks(int64_t inner) { return inner == 1 ? 1 : (inner + RT_RD_BLOCK - 1) / RT_RD_BLOCK; }

/* ---- sum ---- */

/* sum over D of x, or of x * x (sq: the fused square-then-sum; the same bits as squaring first,
 * since each square is rounded to float before it is added in double) */
static inline __attribute__((always_inline)) void sum_forward(int64_t outer, int64_t D, int64_t inner, double scale,
                                                              float *y, const float *x, const int sq) {
    int64_t nb = nblocks(inner), ntask = outer * nb;
#pragma omp parallel for schedule(static) if (outer * D * inner > RT_RD_PAR_MIN) /* over (outer, block) */
    for (int64_t t = 0; t < ntask; t++) {
        int64_t o = t / nb;
        if (inner == 1) {
            const float *r = x + o * D;
            double s = 0;
            if (sq) {
#pragma omp simd reduction(+ : s)
                for (int64_t d = 0; d < D; d++) s += r[d] * r[d];
            } else {
#pragma omp simd reduction(+ : s)
                for (int64_t d = 0; d < D; d++) s += r[d];
            }
            y[o] = (float)(s * scale);
            continue;
        }
        int64_t i0 = (t % nb) * RT_RD_BLOCK, w = min64(RT_RD_BLOCK, inner - i0);
        double acc[RT_RD_BLOCK] = {0};
        for (int64_t d = 0; d < D; d++) {
            const float *r = x + (o * D + d) * inner + i0;
            if (sq) {
#pragma omp simd
                for (int64_t i = 0; i < w; i++) acc[i] += r[i] * r[i];
            } else {
#pragma omp simd
                for (int64_t i = 0; i < w; i++) acc[i] += r[i];
            }
        }
        for (int64_t i = 0; i < w; i++) y[o * inner + i0 + i] = (float)(acc[i] * scale);
    }
}

void rt_reduce_sum_forward(int64_t outer, int64_t D, int64_t inner, double scale, float *y, const float *x) {
    sum_forward(outer, D, inner, scale, y, x, 0);
}

void rt_reduce_sum_forward_ref(int64_t outer, int64_t D, int64_t inner, double scale, float *y, const float *x) {
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            double s = 0;
            for (int64_t d = 0; d < D; d++) s += x[(o * D + d) * inner + i];
            y[o * inner + i] = (float)(s * scale);
        }
}

void rt_reduce_sum_backward(int64_t outer, int64_t D, int64_t inner, float scale, float *gx, const float *gy) {
    if (inner == 1) { /* gx rows of D get one value each: cut them into runs */
        int64_t nrun = (D + RT_RD_RUN - 1) / RT_RD_RUN, ntask = outer * nrun;
#pragma omp parallel for schedule(static) if (outer * D > RT_RD_PAR_MIN) /* over (outer, run) */
        for (int64_t t = 0; t < ntask; t++) {
            int64_t o = t / nrun, d0 = (t % nrun) * RT_RD_RUN, m = min64(RT_RD_RUN, D - d0);
            float v = scale * gy[o], *dst = gx + o * D + d0;
#pragma omp simd
            for (int64_t d = 0; d < m; d++) dst[d] += v;
        }
        return;
    }
    int64_t rows = outer * D;
#pragma omp parallel for schedule(static) if (rows * inner > RT_RD_PAR_MIN) /* over (outer, D) rows of gx */
    for (int64_t r = 0; r < rows; r++) {
        const float *g = gy + (r / D) * inner;
        float *dst = gx + r * inner;
#pragma omp simd
        for (int64_t i = 0; i < inner; i++) dst[i] += scale * g[i];
    }
}

void rt_reduce_sum_backward_ref(int64_t outer, int64_t D, int64_t inner, float scale, float *gx, const float *gy) {
    for (int64_t o = 0; o < outer; o++)
        for (int64_t d = 0; d < D; d++)
            for (int64_t i = 0; i < inner; i++) gx[(o * D + d) * inner + i] += scale * gy[o * inner + i];
}

/* ---- sum of squares (attention maps: the mean over channels of f^2, without f^2 in memory) ---- */

void rt_reduce_sumsq_forward(int64_t outer, int64_t D, int64_t inner, double scale, float *y, const float *x) {
    sum_forward(outer, D, inner, scale, y, x, 1);
}

void rt_reduce_sumsq_forward_ref(int64_t outer, int64_t D, int64_t inner, double scale, float *y, const float *x) {
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            double s = 0;
            for (int64_t d = 0; d < D; d++) {
                double v = x[(o * D + d) * inner + i];
                s += v * v;
            }
            y[o * inner + i] = (float)(s * scale);
        }
}

void rt_reduce_sumsq_backward(int64_t outer, int64_t D, int64_t inner, float scale, float *gx, const float *gy,
                              const float *x, int overwrite) {
    int64_t rows = outer * D;
#pragma omp parallel for schedule(static) if (rows * inner > RT_RD_PAR_MIN) /* over (outer, D) rows of gx */
    for (int64_t r = 0; r < rows; r++) {
        const float *g = gy + (r / D) * inner, *xr = x + r * inner;
        float *dst = gx + r * inner;
        if (overwrite) {
#pragma omp simd
            for (int64_t i = 0; i < inner; i++) dst[i] = 2.0f * xr[i] * (scale * g[i]);
        } else {
#pragma omp simd
            for (int64_t i = 0; i < inner; i++) dst[i] += 2.0f * xr[i] * (scale * g[i]);
        }
    }
}

void rt_reduce_sumsq_backward_ref(int64_t outer, int64_t D, int64_t inner, float scale, float *gx, const float *gy,
                                  const float *x) {
    for (int64_t o = 0; o < outer; o++)
        for (int64_t d = 0; d < D; d++)
            for (int64_t i = 0; i < inner; i++) {
                int64_t k = (o * D + d) * inner + i;
                gx[k] += (float)(2.0 * x[k] * scale * gy[o * inner + i]);
            }
}

double rt_sum_all_f64(int64_t n, const float *x) {
    int64_t bs = RT_RD_SUM_BLOCK;
    if ((n + bs - 1) / bs > RT_RD_SUM_NBLK) bs = (n + RT_RD_SUM_NBLK - 1) / RT_RD_SUM_NBLK;
    int64_t nb = (n + bs - 1) / bs;
    double part[RT_RD_SUM_NBLK];
#pragma omp parallel for schedule(static) if (n > RT_RD_PAR_MIN) /* over fixed blocks, summed in order below */
    for (int64_t b = 0; b < nb; b++) {
        const float *r = x + b * bs;
        int64_t m = min64(bs, n - b * bs);
        double s = 0;
#pragma omp simd reduction(+ : s)
        for (int64_t i = 0; i < m; i++) s += r[i];
        part[b] = s;
    }
    double s = 0;
    for (int64_t b = 0; b < nb; b++) s += part[b];
    return s;
}

/* ---- max ---- */

void rt_reduce_max_forward(int64_t outer, int64_t D, int64_t inner, float *y, int64_t *idx, const float *x) {
    int64_t nb = nblocks(inner), ntask = outer * nb;
#pragma omp parallel for schedule(static) if (outer * D * inner > RT_RD_PAR_MIN) /* over (outer, block) */
    for (int64_t t = 0; t < ntask; t++) {
        int64_t o = t / nb;
        if (inner == 1) {
            const float *r = x + o * D;
            float best = r[0];
            int64_t bi = 0;
            for (int64_t d = 1; d < D && best == best; d++)
                if (r[d] > best || r[d] != r[d]) {
                    best = r[d];
                    bi = d;
                }
            y[o] = best;
            idx[o] = bi;
            continue;
        }
        int64_t i0 = (t % nb) * RT_RD_BLOCK, w = min64(RT_RD_BLOCK, inner - i0);
        float best[RT_RD_BLOCK];
        int64_t bi[RT_RD_BLOCK] = {0};
        const float *r0 = x + o * D * inner + i0;
        for (int64_t i = 0; i < w; i++) best[i] = r0[i];
        for (int64_t d = 1; d < D; d++) {
            const float *r = r0 + d * inner;
            for (int64_t i = 0; i < w; i++)
                if (r[i] > best[i] || (r[i] != r[i] && best[i] == best[i])) {
                    best[i] = r[i];
                    bi[i] = d;
                }
        }
        for (int64_t i = 0; i < w; i++) {
            y[o * inner + i0 + i] = best[i];
            idx[o * inner + i0 + i] = bi[i];
        }
    }
}

void rt_reduce_max_forward_ref(int64_t outer, int64_t D, int64_t inner, float *y, int64_t *idx, const float *x) {
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            int64_t bi = 0;
            for (int64_t d = 1; d < D; d++) {
                float v = x[(o * D + d) * inner + i], b = x[(o * D + bi) * inner + i];
                if (isnan(b)) break;
                if (v > b || isnan(v)) bi = d;
            }
            y[o * inner + i] = x[(o * D + bi) * inner + i];
            idx[o * inner + i] = bi;
        }
}

void rt_reduce_max_backward(int64_t outer, int64_t D, int64_t inner, float *gx, const float *gy, const int64_t *idx) {
    /* each (o, i) scatters to one distinct element: no two writes meet */
#pragma omp parallel for schedule(static) if (outer * inner > RT_RD_PAR_MIN) /* over outer */
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) gx[(o * D + idx[o * inner + i]) * inner + i] += gy[o * inner + i];
}

void rt_reduce_max_backward_ref(int64_t outer, int64_t D, int64_t inner, float *gx, const float *gy,
                                const int64_t *idx) {
    for (int64_t o = 0; o < outer; o++)
        for (int64_t d = 0; d < D; d++)
            for (int64_t i = 0; i < inner; i++)
                if (idx[o * inner + i] == d) gx[(o * D + d) * inner + i] += gy[o * inner + i];
}

/* ---- softmax and log-softmax ---- */

/* max of x (D); NaN is skipped here (softmax propagates it through exp). 16 independent lanes:
 * GCC keeps an omp simd max reduction in memory, five times slower. */
static float row_max(int64_t D, const float *x) {
    float m[16], mx = -INFINITY;
    for (int j = 0; j < 16; j++) m[j] = -INFINITY;
    int64_t d = 0;
    for (; d + 16 <= D; d += 16)
        for (int j = 0; j < 16; j++) m[j] = x[d + j] > m[j] ? x[d + j] : m[j];
    for (; d < D; d++) mx = x[d] > mx ? x[d] : mx;
    for (int j = 0; j < 16; j++) mx = m[j] > mx ? m[j] : mx;
    return mx;
}

static void softmax_row(int64_t D, float invT, int lg, float *restrict y, const float *restrict x) {
    float mx = row_max(D, x);
    double s = 0;
    if (lg) {
#pragma omp simd reduction(+ : s)
        for (int64_t d = 0; d < D; d++) s += rt_expf_nonpos((x[d] - mx) * invT);
        float ls = (float)log(s);
#pragma omp simd
        for (int64_t d = 0; d < D; d++) y[d] = (x[d] - mx) * invT - ls;
    } else {
#pragma omp simd reduction(+ : s)
        for (int64_t d = 0; d < D; d++) {
            float e = rt_expf_nonpos((x[d] - mx) * invT);
            y[d] = e;
            s += e;
        }
        float r = (float)(1.0 / s);
#pragma omp simd
        for (int64_t d = 0; d < D; d++) y[d] *= r;
    }
}

// x, y (D, inner) viewed at column i0, w columns
static void softmax_cols(int64_t D, int64_t inner, int64_t w, float invT, int lg, float *y, const float *x) {
    float mx[RT_RD_BLOCK], sc[RT_RD_BLOCK];
    double s[RT_RD_BLOCK] = {0};
    for (int64_t i = 0; i < w; i++) mx[i] = -INFINITY;
    for (int64_t d = 0; d < D; d++) {
        const float *xr = x + d * inner;
#pragma omp simd
        for (int64_t i = 0; i < w; i++) mx[i] = xr[i] > mx[i] ? xr[i] : mx[i];
    }
    for (int64_t d = 0; d < D; d++) {
        const float *xr = x + d * inner;
        float *yr = y + d * inner;
        if (lg) {
#pragma omp simd
            for (int64_t i = 0; i < w; i++) s[i] += rt_expf_nonpos((xr[i] - mx[i]) * invT);
        } else {
#pragma omp simd
            for (int64_t i = 0; i < w; i++) {
                float e = rt_expf_nonpos((xr[i] - mx[i]) * invT);
                s[i] += e;
                yr[i] = e;
            }
        }
    }
    for (int64_t i = 0; i < w; i++) sc[i] = lg ? (float)log(s[i]) : (float)(1.0 / s[i]);
    for (int64_t d = 0; d < D; d++) {
        float *yr = y + d * inner;
        const float *xr = x + d * inner;
        if (lg) {
#pragma omp simd
            for (int64_t i = 0; i < w; i++) yr[i] = (xr[i] - mx[i]) * invT - sc[i];
        } else {
#pragma omp simd
            for (int64_t i = 0; i < w; i++) yr[i] *= sc[i];
        }
    }
}

void rt_softmax_forward(int64_t outer, int64_t D, int64_t inner, float invT, int lg, float *y, const float *x) {
    int64_t nb = nblocks(inner), ntask = outer * nb;
#pragma omp parallel for schedule(static) if (outer * D * inner > RT_RD_PAR_MIN) /* over (outer, block) */
    for (int64_t t = 0; t < ntask; t++) {
        int64_t o = t / nb;
        if (inner == 1) {
            softmax_row(D, invT, lg, y + o * D, x + o * D);
        } else {
            int64_t i0 = (t % nb) * RT_RD_BLOCK, off = o * D * inner + i0;
            softmax_cols(D, inner, min64(RT_RD_BLOCK, inner - i0), invT, lg, y + off, x + off);
        }
    }
}

void rt_softmax_forward_ref(int64_t outer, int64_t D, int64_t inner, float invT, int lg, float *y, const float *x) {
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            const float *xc = x + o * D * inner + i;
            float *yc = y + o * D * inner + i;
            double mx = -INFINITY, s = 0;
            for (int64_t d = 0; d < D; d++) mx = fmax(mx, xc[d * inner]);
            for (int64_t d = 0; d < D; d++) s += exp(((double)xc[d * inner] - mx) * invT);
            for (int64_t d = 0; d < D; d++) {
                double z = ((double)xc[d * inner] - mx) * invT;
                yc[d * inner] = (float)(lg ? z - log(s) : exp(z) / s);
            }
        }
}

/* softmax:     gx += invT * y * (gy - sum(gy * y))
 * log-softmax: gx += invT * (gy - exp(y) * sum(gy)) */
static void softmax_back_row(int64_t D, float invT, int lg, float *restrict gx, const float *restrict gy,
                             const float *restrict y) {
    double s = 0;
    if (lg) {
#pragma omp simd reduction(+ : s)
        for (int64_t d = 0; d < D; d++) s += gy[d];
        float sf = (float)s;
#pragma omp simd
        for (int64_t d = 0; d < D; d++) gx[d] += invT * (gy[d] - rt_expf_nonpos(y[d]) * sf);
    } else {
#pragma omp simd reduction(+ : s)
        for (int64_t d = 0; d < D; d++) s += (double)gy[d] * y[d];
        float sf = (float)s;
#pragma omp simd
        for (int64_t d = 0; d < D; d++) gx[d] += invT * y[d] * (gy[d] - sf);
    }
}

static void softmax_back_cols(int64_t D, int64_t inner, int64_t w, float invT, int lg, float *gx, const float *gy,
                              const float *y) {
    double s[RT_RD_BLOCK] = {0};
    float sf[RT_RD_BLOCK];
    for (int64_t d = 0; d < D; d++) {
        const float *g = gy + d * inner, *yr = y + d * inner;
        if (lg) {
#pragma omp simd
            for (int64_t i = 0; i < w; i++) s[i] += g[i];
        } else {
#pragma omp simd
            for (int64_t i = 0; i < w; i++) s[i] += (double)g[i] * yr[i];
        }
    }
    for (int64_t i = 0; i < w; i++) sf[i] = (float)s[i];
    for (int64_t d = 0; d < D; d++) {
        const float *g = gy + d * inner, *yr = y + d * inner;
        float *gxr = gx + d * inner;
        if (lg) {
#pragma omp simd
            for (int64_t i = 0; i < w; i++) gxr[i] += invT * (g[i] - rt_expf_nonpos(yr[i]) * sf[i]);
        } else {
#pragma omp simd
            for (int64_t i = 0; i < w; i++) gxr[i] += invT * yr[i] * (g[i] - sf[i]);
        }
    }
}

void rt_softmax_backward(int64_t outer, int64_t D, int64_t inner, float invT, int lg, float *gx, const float *gy,
                         const float *y) {
    int64_t nb = nblocks(inner), ntask = outer * nb;
#pragma omp parallel for schedule(static) if (outer * D * inner > RT_RD_PAR_MIN) /* over (outer, block) */
    for (int64_t t = 0; t < ntask; t++) {
        int64_t o = t / nb;
        if (inner == 1) {
            softmax_back_row(D, invT, lg, gx + o * D, gy + o * D, y + o * D);
        } else {
            int64_t i0 = (t % nb) * RT_RD_BLOCK, off = o * D * inner + i0;
            softmax_back_cols(D, inner, min64(RT_RD_BLOCK, inner - i0), invT, lg, gx + off, gy + off, y + off);
        }
    }
}

void rt_softmax_backward_ref(int64_t outer, int64_t D, int64_t inner, float invT, int lg, float *gx, const float *gy,
                             const float *y) {
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            int64_t base = o * D * inner + i;
            double s = 0;
            for (int64_t d = 0; d < D; d++) {
                int64_t k = base + d * inner;
                s += lg ? (double)gy[k] : (double)gy[k] * y[k];
            }
            for (int64_t d = 0; d < D; d++) {
                int64_t k = base + d * inner;
                double g = lg ? invT * (gy[k] - exp((double)y[k]) * s) : invT * (double)y[k] * (gy[k] - s);
                gx[k] = (float)(gx[k] + g);
            }
        }
}

/* ---- L2 normalisation ---- */

void rt_l2norm_forward(int64_t outer, int64_t D, int64_t inner, float eps, float *y, float *norm, const float *x) {
    int64_t nb = nblocks(inner), ntask = outer * nb;
#pragma omp parallel for schedule(static) if (outer * D * inner > RT_RD_PAR_MIN) /* over (outer, block) */
    for (int64_t t = 0; t < ntask; t++) {
        int64_t o = t / nb;
        if (inner == 1) {
            const float *r = x + o * D;
            float *yr = y + o * D;
            double s = 0;
#pragma omp simd reduction(+ : s)
            for (int64_t d = 0; d < D; d++) s += (double)r[d] * r[d];
            float n = (float)sqrt(s), dn = fmaxf(n, eps);
            norm[o] = n;
#pragma omp simd
            for (int64_t d = 0; d < D; d++) yr[d] = r[d] / dn;
            continue;
        }
        int64_t i0 = (t % nb) * RT_RD_BLOCK, w = min64(RT_RD_BLOCK, inner - i0), off = o * D * inner + i0;
        double s[RT_RD_BLOCK] = {0};
        float dn[RT_RD_BLOCK];
        for (int64_t d = 0; d < D; d++) {
            const float *r = x + off + d * inner;
#pragma omp simd
            for (int64_t i = 0; i < w; i++) s[i] += (double)r[i] * r[i];
        }
        for (int64_t i = 0; i < w; i++) {
            norm[o * inner + i0 + i] = (float)sqrt(s[i]);
            dn[i] = fmaxf((float)sqrt(s[i]), eps);
        }
        for (int64_t d = 0; d < D; d++) {
            const float *r = x + off + d * inner;
            float *yr = y + off + d * inner;
#pragma omp simd
            for (int64_t i = 0; i < w; i++) yr[i] = r[i] / dn[i];
        }
    }
}

void rt_l2norm_forward_ref(int64_t outer, int64_t D, int64_t inner, float eps, float *y, float *norm, const float *x) {
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            int64_t base = o * D * inner + i;
            double s = 0;
            for (int64_t d = 0; d < D; d++) s += (double)x[base + d * inner] * x[base + d * inner];
            double n = sqrt(s), dn = fmax(n, eps);
            norm[o * inner + i] = (float)n;
            for (int64_t d = 0; d < D; d++) y[base + d * inner] = (float)(x[base + d * inner] / dn);
        }
}

/* norm >= eps: gx += (gy - y * sum(gy * y)) / norm; else the divisor is the constant eps: gx += gy / eps */
void rt_l2norm_backward(int64_t outer, int64_t D, int64_t inner, float eps, float *gx, const float *gy, const float *y,
                        const float *norm) {
    int64_t nb = nblocks(inner), ntask = outer * nb;
#pragma omp parallel for schedule(static) if (outer * D * inner > RT_RD_PAR_MIN) /* over (outer, block) */
    for (int64_t t = 0; t < ntask; t++) {
        int64_t o = t / nb;
        if (inner == 1) {
            const float *g = gy + o * D, *yr = y + o * D;
            float *gxr = gx + o * D, n = norm[o];
            double s = 0;
#pragma omp simd reduction(+ : s)
            for (int64_t d = 0; d < D; d++) s += (double)g[d] * yr[d];
            float dot = n >= eps ? (float)s : 0.0f, inv = 1.0f / (n >= eps ? n : eps);
#pragma omp simd
            for (int64_t d = 0; d < D; d++) gxr[d] += (g[d] - yr[d] * dot) * inv;
            continue;
        }
        int64_t i0 = (t % nb) * RT_RD_BLOCK, w = min64(RT_RD_BLOCK, inner - i0), off = o * D * inner + i0;
        double s[RT_RD_BLOCK] = {0};
        float dot[RT_RD_BLOCK], inv[RT_RD_BLOCK];
        for (int64_t d = 0; d < D; d++) {
            const float *g = gy + off + d * inner, *yr = y + off + d * inner;
            for (int64_t i = 0; i < w; i++) s[i] += (double)g[i] * yr[i];
        }
        for (int64_t i = 0; i < w; i++) {
            float n = norm[o * inner + i0 + i];
            int through = n >= eps; /* the norm is not clamped: its gradient flows */
            dot[i] = through ? (float)s[i] : 0.0f;
            inv[i] = 1.0f / (through ? n : eps);
        }
        for (int64_t d = 0; d < D; d++) {
            const float *g = gy + off + d * inner, *yr = y + off + d * inner;
            float *gxr = gx + off + d * inner;
            for (int64_t i = 0; i < w; i++) gxr[i] += (g[i] - yr[i] * dot[i]) * inv[i];
        }
    }
}

void rt_l2norm_backward_ref(int64_t outer, int64_t D, int64_t inner, float eps, float *gx, const float *gy,
                            const float *y, const float *norm) {
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            int64_t base = o * D * inner + i;
            double n = norm[o * inner + i], s = 0;
            int through = n >= eps;
            for (int64_t d = 0; d < D; d++) s += (double)gy[base + d * inner] * y[base + d * inner];
            for (int64_t d = 0; d < D; d++) {
                int64_t k = base + d * inner;
                double g = through ? (gy[k] - y[k] * s) / n : gy[k] / (double)eps;
                gx[k] = (float)(gx[k] + g);
            }
        }
}
