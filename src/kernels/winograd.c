/* Winograd convolution F(2x2,3x3) / F(4x4,3x3): the driver (geometry, workspace, filter
 * transform, zero padding, blocks over threads) and the plain C block kernels of the generic ISA.
 * The algorithm and the kernels' contract are in winograd.h; conv.c decides when to use it. */
#include "kernels/winograd.h"

#include <omp.h>
#include <string.h>

#include "kernels/cpu.h"

/* A block's V and M are sized to stay near this many bytes (the core's L2), so each thread's
 * transformed tiles are reused from cache by the GEMMs and the output transform. */
#define BLOCK_BUDGET_BYTES ((int64_t)384 << 10)
/* Floats added to each xi-plane stride of V and M: the 16 or 36 planes a tile's transform touches
 * would otherwise sit a multiple of 4 KiB apart, in the same L1 sets. */
#define PLANE_SKEW 16
/* Floats past the padded samples: F(4x4) loads 8 columns of a 6-wide patch row, and the padding
 * kernels store whole vectors. */
#define PAD_SLACK 16
/* The weight gradient's blocks: larger (past L2; one xi-plane of V and Z still fits), so the
 * GEMMs' sums across vector lanes, once per block, are spread over more tiles: measured on
 * bench_winograd, 1.5 MiB blocks left 64@8x8 no faster than the direct kernel, 6 MiB made it 1.4x,
 * 16 MiB lost again. */
#define WGRAD_BUDGET_BYTES ((int64_t)6 << 20)

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
static int64_t round_up(int64_t a, int64_t m) { return (a + m - 1) / m * m; }
static size_t round64(size_t b) { return (b + 63) & ~(size_t)63; }

int rt_wino_eligible(const rt_conv2d_shape *s) {
    return s->KH == 3 && s->KW == 3 && s->sh == 1 && s->sw == 1 && s->dh == 1 && s->dw == 1 && s->groups == 1 &&
           s->ph >= 0 && s->ph <= 2 && s->pw >= 0 && s->pw <= 2 && s->N > 0 && s->OH > 0 && s->OW > 0;
}

/* ---- the block kernels of the generic ISA ---- */

/* F(4x4,3x3) from the points 0, 1, -1, 1/2, -2 (and infinity): measured in fp32 over 16..64
 * channels, its error is 2.5x smaller than that of the usual 0, +-1, +-2 (as Barabasz et al.,
 * "Error analysis and improving the accuracy of Winograd convolution", 2020, found), for a few more
 * additions in the input transform. Rows of B^T and G are scaled by powers of 2 (exactly) to make
 * B^T integral. */
static const float BT4[6][6] = {{2, -3, -4, 3, 2, 0}, {0, -2, 1, 5, 2, 0},  {0, 2, -5, 1, 2, 0},
                                {0, -2, -1, 2, 1, 0}, {0, 1, -2, -1, 2, 0}, {0, 2, -3, -4, 3, 2}};
static const float AT4[4][6] = {
    {1, 1, 1, 1, 1, 0}, {0, 1, -1, 0.5f, -2, 0}, {0, 1, 1, 0.25f, 4, 0}, {0, 1, -1, 0.125f, -8, 1}};
static const double G4[6][3] = {{1.0 / 2, 0, 0},
                                {1.0 / 6, 1.0 / 6, 1.0 / 6},
                                {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                {-16.0 / 15, -8.0 / 15, -4.0 / 15},
                                {1.0 / 30, -1.0 / 15, 2.0 / 15},
                                {0, 0, 1.0 / 2}};
static const float BT2[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};
static const float AT2[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};
static const double G2[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};

// src (H0,W0) of one channel -> rows [r0, r1) of its padded plane dst (source at row pt, column pl)
static void pad_rows(const float *src, int64_t H0, int64_t W0, int64_t pt, int64_t pl, float *dst, int64_t Wp,
                     int64_t r0, int64_t r1) {
    int64_t ncopy = min64(W0, Wp - pl), tail = Wp - pl - ncopy;
    for (int64_t r = r0; r < r1; r++) {
        float *row = dst + r * Wp;
        int64_t y = r - pt;
        if (y < 0 || y >= H0) {
            memset(row, 0, (size_t)Wp * sizeof(float));
            continue;
        }
        memset(row, 0, (size_t)pl * sizeof(float));
        memcpy(row + pl, src + y * W0, (size_t)ncopy * sizeof(float));
        memset(row + pl + ncopy, 0, (size_t)tail * sizeof(float));
    }
}

// src (N,Cin,H0,W0), pad: the block's samples of one channel, V (alpha^2, Cin, TB); overwrites pad and V
static void in_generic(const rt_wino_blk *b, const float *src, float *pad, float *V) {
    const int A = b->m + 2;
    const float *bt = b->m == 4 ? &BT4[0][0] : &BT2[0][0];
    for (int64_t c = 0; c < b->Cin; c++) {
        for (int64_t n = b->n0; n <= b->n1; n++)
            pad_rows(src + (n * b->Cin + c) * b->H0 * b->W0, b->H0, b->W0, b->pt, b->pl, pad + (n - b->n0) * b->plane,
                     b->Wp, n == b->n0 ? b->r0 : 0, n == b->n1 ? b->r1 : b->Hp);
        for (int64_t t = 0; t < b->nt; t++) {
            const float *p = pad + b->tin[t];
            float u[6][6];
            for (int i = 0; i < A; i++) /* u = d B */
                for (int s = 0; s < A; s++) {
                    float a = 0;
                    for (int j = 0; j < A; j++) a += p[i * b->Wp + j] * bt[s * A + j];
                    u[i][s] = a;
                }
            for (int r = 0; r < A; r++) /* V = B^T u */
                for (int s = 0; s < A; s++) {
                    float a = 0;
                    for (int i = 0; i < A; i++) a += bt[r * A + i] * u[i][s];
                    V[(r * A + s) * b->vs + c * b->TB + t] = a;
                }
        }
    }
}

// U (alpha^2, OCp/8, Cin, 8), V (alpha^2, Cin, TB), M (alpha^2, o1 - o0, TB); overwrites M
static void gemm_generic(const rt_wino_blk *b, const float *U, const float *V, float *M, int64_t o0, int64_t o1) {
    const int64_t A2 = (b->m + 2) * (b->m + 2), Cin = b->Cin, TB = b->TB;
    for (int64_t xi = 0; xi < A2; xi++)
        for (int64_t o = o0; o < o1; o++) {
            float *mr = M + xi * b->ms + (o - o0) * TB;
            const float *u = U + xi * b->us + (o / 8) * Cin * 8 + o % 8;
            for (int64_t t = 0; t < b->nt; t++) mr[t] = 0;
            for (int64_t c = 0; c < Cin; c++) {
                const float *vr = V + xi * b->vs + c * TB, w = u[c * 8];
                for (int64_t t = 0; t < b->nt; t++) mr[t] += w * vr[t];
            }
        }
}

// M (alpha^2, o1 - o0, TB), out: the tiles' outputs; out = act(bias + conv + res), or += conv when accumulate
static void out_generic(const rt_wino_blk *b, const float *M, float *out, const float *bias, int64_t o0, int64_t o1,
                        int accumulate, const rt_conv_epi *epi) {
    const float *res = epi && !accumulate ? epi->res : NULL;
    const int relu = epi && !accumulate && epi->relu;
    const int m = b->m, A = m + 2;
    const float *at = m == 4 ? &AT4[0][0] : &AT2[0][0];
    for (int64_t o = o0; o < o1 && o < b->Cout; o++)
        for (int64_t t = 0; t < b->nt; t++) {
            const float *mp = M + (o - o0) * b->TB + t;
            float p[6][4];
            for (int i = 0; i < A; i++) /* p = M A */
                for (int s = 0; s < m; s++) {
                    float a = 0;
                    for (int j = 0; j < A; j++) a += mp[(i * A + j) * b->ms] * at[s * A + j];
                    p[i][s] = a;
                }
            float *dst = out + b->tout[t] + o * b->oplane;
            float b0 = bias && !accumulate ? bias[o] : 0.0f;
            for (int r = 0; r < b->rows[t]; r++) /* A^T p */
                for (int s = 0; s < b->cols[t]; s++) {
                    float a = 0;
                    for (int i = 0; i < A; i++) a += at[r * A + i] * p[i][s];
                    int64_t k = r * b->OW + s;
                    float v = accumulate ? dst[k] + a : a + b0;
                    if (res) v += res[dst + k - out];
                    dst[k] = relu ? (v > 0.0f ? v : 0.0f) : v;
                }
        }
}

// U: output channels [8 ob, 8 ob + 8) transformed in double; see rt_wino_filters_avx2
static void filters_generic(int m, int flip, int64_t Cin, int64_t Cout, int64_t us, const float *w, float *U,
                            int64_t ob) {
    const int A = m + 2;
    const double(*G)[3] = m == 4 ? G4 : G2;
    for (int64_t o = ob * 8; o < ob * 8 + 8; o++)
        for (int64_t c = 0; c < Cin; c++) {
            double f[9] = {0}, h[6][3];
            if (o < Cout)
                for (int k = 0; k < 9; k++) f[k] = flip ? w[(c * Cout + o) * 9 + 8 - k] : w[(o * Cin + c) * 9 + k];
            for (int i = 0; i < A; i++) /* h = G f */
                for (int kw = 0; kw < 3; kw++) h[i][kw] = G[i][0] * f[kw] + G[i][1] * f[3 + kw] + G[i][2] * f[6 + kw];
            for (int i = 0; i < A; i++) /* U = h G^T */
                for (int j = 0; j < A; j++)
                    U[(i * A + j) * us + ob * Cin * 8 + c * 8 + o % 8] =
                        (float)(h[i][0] * G[j][0] + h[i][1] * G[j][1] + h[i][2] * G[j][2]);
        }
}

// the weight gradient's output-gradient transform (see rt_wino_gout_avx2); tiles t < nt only
static void gout_generic(const rt_wino_blk *b, const float *gout, float *pad, float *Z) {
    const int m = b->m, A = m + 2;
    const float *at = m == 4 ? &AT4[0][0] : &AT2[0][0];
    for (int64_t o = 0; o < b->Cin; o++) {
        for (int64_t n = b->n0; n <= b->n1; n++)
            pad_rows(gout + (n * b->Cin + o) * b->H0 * b->W0, b->H0, b->W0, 0, 0, pad + (n - b->n0) * b->plane, b->Wp,
                     n == b->n0 ? b->r0 : 0, n == b->n1 ? b->r1 : b->Hp);
        for (int64_t t = 0; t < b->nt; t++) {
            const float *p = pad + b->tin[t];
            float h[4][6];
            for (int r = 0; r < m; r++) /* h = dY A^T */
                for (int j = 0; j < A; j++) {
                    float a = 0;
                    for (int q = 0; q < m; q++) a += p[r * b->Wp + q] * at[q * A + j];
                    h[r][j] = a;
                }
            for (int i = 0; i < A; i++) /* Z = A h */
                for (int j = 0; j < A; j++) {
                    float a = 0;
                    for (int r = 0; r < m; r++) a += at[r * A + i] * h[r][j];
                    Z[(i * A + j) * b->vs + o * b->TB + t] = a;
                }
        }
    }
}

// P (A^2, Cin, OCq) += V Z^T over the tiles t < nt
static void wgemm_generic(const rt_wino_blk *b, int64_t Cin, int64_t OCq, const float *V, int64_t vs, const float *Z,
                          int64_t zs, float *P) {
    const int64_t A2 = (b->m + 2) * (b->m + 2), TB = b->TB;
    for (int64_t xi = 0; xi < A2; xi++)
        for (int64_t c = 0; c < Cin; c++)
            for (int64_t o = 0; o < OCq; o++) {
                const float *v = V + xi * vs + c * TB, *z = Z + xi * zs + o * TB;
                double a = 0; /* the plain C path is the reference: no long float sums */
                for (int64_t t = 0; t < b->nt; t++) a += (double)v[t] * z[t];
                P[(xi * Cin + c) * OCq + o] += (float)a;
            }
}

/* ---- the driver ---- */

typedef void (*in_fn)(const rt_wino_blk *, const float *, float *, float *);
typedef void (*gemm_fn)(const rt_wino_blk *, const float *, const float *, float *, int64_t, int64_t);
typedef void (*out_fn)(const rt_wino_blk *, const float *, float *, const float *, int64_t, int64_t, int,
                       const rt_conv_epi *);
typedef void (*filters_fn)(int, int, int64_t, int64_t, int64_t, const float *, float *, int64_t);
typedef void (*wgemm_fn)(const rt_wino_blk *, int64_t, int64_t, const float *, int64_t, const float *, int64_t,
                         float *);
typedef struct {
    int64_t quantum; /* TB must be a multiple of it */
    filters_fn filters;
    in_fn in;
    gemm_fn gemm;
    out_fn out;
    in_fn gout;
    wgemm_fn wgemm;
} wkern;

static wkern pick_kernels(void) {
    rt_isa isa = rt_cpu_isa();
    if (isa >= RT_ISA_AVX512)
        return (wkern){rt_wino_tile_quantum_avx512(), rt_wino_filters_avx512, rt_wino_in_avx512,
                       rt_wino_gemm_avx512,           rt_wino_out_avx512,     rt_wino_gout_avx512,
                       rt_wino_wgemm_avx512};
    if (isa >= RT_ISA_AVX2)
        return (wkern){rt_wino_tile_quantum_avx2(), rt_wino_filters_avx2, rt_wino_in_avx2,
                       rt_wino_gemm_avx2,           rt_wino_out_avx2,     rt_wino_gout_avx2,
                       rt_wino_wgemm_avx2};
    return (wkern){16, filters_generic, in_generic, gemm_generic, out_generic, gout_generic, wgemm_generic};
}

/* The convolution as the kernels see it: src (N, Cin, H0, W0) padded by pt rows and pl columns
 * into planes (Hp, Wp) that hold every patch; out (N, Cout, OH, OW) in tiles_y x tiles_x tiles. */
typedef struct {
    int m, A;
    int64_t N, Cin, Cout, OCp;
    int64_t H0, W0, pt, pl, OH, OW;
    int64_t ty, tx, T; /* tiles per column, per row, in all */
    int64_t Hp, Wp;
    int flip;            /* the data gradient: filters flipped and transposed */
    int64_t budget;      /* bytes of a block's V and M (or Z), 0 for BLOCK_BUDGET_BYTES */
    int64_t TB, nb, OCc; /* tiles per block, blocks, output channels per GEMM pass */
    int64_t ipb;         /* samples a block's tiles can span */
    int64_t pad_half;    /* floats of one channel of them, padded, with slack */
    int64_t us, vs, ms;  /* xi-plane strides of U, V and M */
    size_t thr, tbytes;  /* workspace: U at 0, then per thread: V, M, a channel of padded samples, tile tables */
    size_t v_off, src_off, tab_off, total;
} wgeom;

static wgeom geom_finish(wgeom g) {
    wkern k = pick_kernels();
    g.A = g.m + 2;
    g.OCp = round_up(g.Cout, 8);
    g.ty = (g.OH + g.m - 1) / g.m, g.tx = (g.OW + g.m - 1) / g.m, g.T = g.N * g.ty * g.tx;
    g.Hp = g.ty * g.m + 2, g.Wp = g.tx * g.m + 2;
    /* Blocks: as many tiles as fit the budget (V for all channels, M for OCc of them), then as
     * many blocks as a multiple of the thread count, evened out. Every tile's result is the same
     * whatever the blocking, so this may depend on the thread count. */
    int64_t nth = omp_get_max_threads(), per_img = g.ty * g.tx;
    g.OCc = min64(g.OCp, 64);
    int64_t per_tile = g.A * g.A * (g.Cin + g.OCc) * (int64_t)sizeof(float);
    int64_t tbmax = max64(k.quantum, (g.budget ? g.budget : BLOCK_BUDGET_BYTES) / per_tile / k.quantum * k.quantum);
    g.nb = (g.T + tbmax - 1) / tbmax;
    g.nb = round_up(g.nb, nth);
    g.TB = round_up((g.T + g.nb - 1) / g.nb, k.quantum);
    g.nb = (g.T + g.TB - 1) / g.TB;
    g.ipb = min64(g.N, (g.TB - 2 + per_img) / per_img + 1);
    g.us = g.OCp * g.Cin + PLANE_SKEW, g.vs = g.Cin * g.TB + PLANE_SKEW, g.ms = g.OCc * g.TB + PLANE_SKEW;
    int64_t A2 = g.A * g.A;
    g.thr = round64((size_t)(A2 * g.us) * sizeof(float));
    g.v_off = 0;
    g.src_off = round64((size_t)(A2 * (g.vs + g.ms)) * sizeof(float));
    g.pad_half = round_up(g.ipb * g.Hp * g.Wp + PAD_SLACK, 16);
    g.tab_off = g.src_off + round64((size_t)(2 * g.pad_half) * sizeof(float));
    g.tbytes = g.tab_off + round64((size_t)g.TB * 2 * sizeof(int64_t)) + round64((size_t)g.TB * 2 * sizeof(int32_t));
    g.total = g.thr + (size_t)nth * g.tbytes;
    return g;
}

static wgeom geom_forward(const rt_conv2d_shape *s, int m) {
    wgeom g = {0};
    g.m = m, g.N = s->N, g.Cin = s->C, g.Cout = s->OC, g.H0 = s->H, g.W0 = s->W, g.pt = s->ph, g.pl = s->pw;
    g.OH = s->OH, g.OW = s->OW;
    return geom_finish(g);
}
/* gin = convolution of gout padded by 2 - p with the flipped, transposed filters */
static wgeom geom_data(const rt_conv2d_shape *s, int m) {
    wgeom g = {0};
    g.m = m, g.N = s->N, g.Cin = s->OC, g.Cout = s->C, g.H0 = s->OH, g.W0 = s->OW, g.pt = 2 - s->ph, g.pl = 2 - s->pw;
    g.OH = s->H, g.OW = s->W, g.flip = 1;
    return geom_finish(g);
}

size_t rt_wino_forward_workspace(const rt_conv2d_shape *s, int m) { return geom_forward(s, m).total; }
size_t rt_wino_backward_data_workspace(const rt_conv2d_shape *s, int m) { return geom_data(s, m).total; }

// U (A^2, OCp/8, Cin, 8) from w (see rt_wino_filters_avx2); overwrites U
static void transform_filters(const wgeom *g, const wkern *k, const float *w, float *U) {
#pragma omp parallel for schedule(static) /* over blocks of 8 output channels (with the padding ones) */
    for (int64_t ob = 0; ob < g->OCp / 8; ob++) k->filters(g->m, g->flip, g->Cin, g->Cout, g->us, w, U, ob);
}

// src (N,Cin,H0,W0), w (see transform_filters), out (N,Cout,OH,OW): out = bias + conv, or += conv
static void wino_run(const wgeom *g, float *out, const float *src, const float *w, const float *bias,
                     const rt_conv_epi *epi, void *ws, int accumulate) {
    wkern k = pick_kernels();
    float *U = ws;
    transform_filters(g, &k, w, U);
    const int64_t per_img = g->ty * g->tx, plane = g->Hp * g->Wp, A2 = g->A * g->A;
#pragma omp parallel /* over blocks of tiles, split in order */
    {
        int th = omp_get_thread_num(), nth = omp_get_num_threads();
        char *tw = (char *)ws + g->thr + (size_t)th * g->tbytes;
        float *V = (float *)(tw + g->v_off), *M = V + A2 * g->vs, *pad = (float *)(tw + g->src_off);
        int64_t *tin = (int64_t *)(tw + g->tab_off), *tout = tin + g->TB;
        int32_t *rows = (int32_t *)((char *)tin + round64((size_t)g->TB * 2 * sizeof(int64_t))), *cols = rows + g->TB;
        /* F(4x4) loads 8 columns of its 6-column patch rows: the unused ones may run past the
         * padded samples into the slack (any finite values) */
        for (int h = 0; h < 2; h++) memset(pad + h * g->pad_half + g->ipb * plane, 0, PAD_SLACK * sizeof(float));
        for (int64_t bi = g->nb * th / nth; bi < g->nb * (th + 1) / nth; bi++) {
            int64_t t0 = bi * g->TB, nt = min64(g->TB, g->T - t0), n0 = t0 / per_img;
            for (int64_t t = 0; t < g->TB; t++) { /* tiles past the end repeat the last one */
                int64_t u = t0 + min64(t, nt - 1), n = u / per_img, ty = u % per_img / g->tx, tx = u % g->tx;
                tin[t] = (n - n0) * plane + ty * g->m * g->Wp + tx * g->m;
                tout[t] = n * g->Cout * g->OH * g->OW + ty * g->m * g->OW + tx * g->m;
                rows[t] = (int32_t)min64(g->m, g->OH - ty * g->m);
                cols[t] = (int32_t)min64(g->m, g->OW - tx * g->m);
            }
            int64_t n1 = (t0 + nt - 1) / per_img, ya = t0 % per_img / g->tx, yb = (t0 + nt - 1) % per_img / g->tx;
            rt_wino_blk b = {g->m,
                             g->Cin,
                             g->Cout,
                             g->OCp,
                             g->TB,
                             nt,
                             g->H0,
                             g->W0,
                             g->pt,
                             g->pl,
                             g->Hp,
                             g->Wp,
                             plane,
                             n0,
                             n1,
                             ya * g->m,
                             yb * g->m + g->A,
                             g->pad_half,
                             g->OW,
                             g->OH * g->OW,
                             g->us,
                             g->vs,
                             g->ms,
                             tin,
                             tout,
                             rows,
                             cols};
            k.in(&b, src, pad, V);
            for (int64_t o0 = 0; o0 < g->OCp; o0 += g->OCc) {
                int64_t o1 = min64(o0 + g->OCc, g->OCp);
                k.gemm(&b, U, V, M, o0, o1);
                k.out(&b, M, out, bias, o0, o1, accumulate, epi);
            }
        }
    }
}

void rt_wino_forward(const rt_conv2d_shape *s, int m, float *out, const float *in, const float *w, const float *bias,
                     const rt_conv_epi *epi, void *ws) {
    wgeom g = geom_forward(s, m);
    wino_run(&g, out, in, w, bias, epi, ws, 0);
}

void rt_wino_backward_data(const rt_conv2d_shape *s, int m, float *gin, const float *gout, const float *w, void *ws,
                           int overwrite) {
    wgeom g = geom_data(s, m);
    wino_run(&g, gin, gout, w, NULL, NULL, ws, !overwrite);
}

/* ---- the weight gradient ---- */

/* The forward's tiling (its blocks sized by a larger budget, to spread the lane sums of the GEMMs
 * over more tiles), plus the output gradient padded to whole tiles (ty m, tx m) and Z. Per thread:
 * V, Z, P, the input's pad buffer (two halves), one channel of the output gradient padded, the
 * tile tables. */
typedef struct {
    wgeom g;
    int64_t OCq, zs, gHp, gWp, gplane, gpad_half;
    size_t z_off, p_off, pad_off, gpad_off, tab_off, tbytes, total;
} wwgeom;

static wwgeom geom_weight(const rt_conv2d_shape *s, int m) {
    wwgeom w;
    wgeom g = {0};
    g.m = m, g.N = s->N, g.Cin = s->C, g.Cout = s->OC, g.H0 = s->H, g.W0 = s->W, g.pt = s->ph, g.pl = s->pw;
    g.OH = s->OH, g.OW = s->OW, g.budget = WGRAD_BUDGET_BYTES;
    w.g = geom_finish(g);
    const wgeom *q = &w.g;
    int64_t A2 = q->A * q->A, nth = omp_get_max_threads();
    w.OCq = round_up(s->OC, 4);
    w.zs = w.OCq * q->TB + PLANE_SKEW;
    w.gHp = q->ty * m, w.gWp = q->tx * m, w.gplane = w.gHp * w.gWp;
    w.gpad_half = round_up(q->ipb * w.gplane + PAD_SLACK, 16);
    w.z_off = round64((size_t)(A2 * q->vs) * sizeof(float));
    w.p_off = w.z_off + round64((size_t)(A2 * w.zs) * sizeof(float));
    w.pad_off = w.p_off + round64((size_t)(A2 * q->Cin * w.OCq) * sizeof(float));
    w.gpad_off = w.pad_off + round64((size_t)(2 * q->pad_half) * sizeof(float));
    w.tab_off = w.gpad_off + round64((size_t)w.gpad_half * sizeof(float));
    w.tbytes = w.tab_off + round64((size_t)q->TB * 2 * sizeof(int64_t));
    w.total = (size_t)nth * w.tbytes;
    return w;
}

size_t rt_wino_backward_weight_workspace(const rt_conv2d_shape *s, int m) { return geom_weight(s, m).total; }

void rt_wino_backward_weight(const rt_conv2d_shape *s, int m, float *gw, const float *gout, const float *in, void *ws) {
    wwgeom w = geom_weight(s, m);
    const wgeom *g = &w.g;
    wkern k = pick_kernels();
    const int64_t per_img = g->ty * g->tx, plane = g->Hp * g->Wp, A2 = g->A * g->A, OCq = w.OCq;
    int nused = 1;
#pragma omp parallel /* over blocks of tiles, split in order; each thread into its own P */
    {
        int th = omp_get_thread_num(), nth = omp_get_num_threads();
#pragma omp single
        nused = nth;
        char *tw = (char *)ws + (size_t)th * w.tbytes;
        float *V = (float *)tw, *Z = (float *)(tw + w.z_off), *P = (float *)(tw + w.p_off);
        float *pad = (float *)(tw + w.pad_off), *gpad = (float *)(tw + w.gpad_off);
        int64_t *tin = (int64_t *)(tw + w.tab_off), *gtin = tin + g->TB;
        memset(P, 0, (size_t)(A2 * g->Cin * OCq) * sizeof(float));
        memset(Z, 0, (size_t)(A2 * w.zs) * sizeof(float)); /* the rows past the channels stay zero */
        for (int h = 0; h < 2; h++) memset(pad + h * g->pad_half + g->ipb * plane, 0, PAD_SLACK * sizeof(float));
        memset(gpad + g->ipb * w.gplane, 0, PAD_SLACK * sizeof(float));
        for (int64_t bi = g->nb * th / nth; bi < g->nb * (th + 1) / nth; bi++) {
            int64_t t0 = bi * g->TB, nt = min64(g->TB, g->T - t0), n0 = t0 / per_img;
            for (int64_t t = 0; t < g->TB; t++) { /* tiles past the end repeat the last one */
                int64_t u = t0 + min64(t, nt - 1), n = u / per_img, ty = u % per_img / g->tx, tx = u % g->tx;
                tin[t] = (n - n0) * plane + ty * g->m * g->Wp + tx * g->m;
                gtin[t] = (n - n0) * w.gplane + ty * g->m * w.gWp + tx * g->m;
            }
            int64_t n1 = (t0 + nt - 1) / per_img, ya = t0 % per_img / g->tx, yb = (t0 + nt - 1) % per_img / g->tx;
            rt_wino_blk b = {0};
            b.m = g->m, b.Cin = g->Cin, b.Cout = g->Cout, b.OCp = g->OCp, b.TB = g->TB, b.nt = nt;
            b.H0 = g->H0, b.W0 = g->W0, b.pt = g->pt, b.pl = g->pl, b.Hp = g->Hp, b.Wp = g->Wp, b.plane = plane;
            b.n0 = n0, b.n1 = n1, b.r0 = ya * g->m, b.r1 = yb * g->m + g->A, b.pad_half = g->pad_half;
            b.vs = g->vs, b.tin = tin;
            k.in(&b, in, pad, V);
            /* the output gradient as a source: unpadded planes, cut into whole tiles */
            rt_wino_blk d = b;
            d.Cin = g->Cout, d.H0 = g->OH, d.W0 = g->OW, d.pt = 0, d.pl = 0, d.Hp = w.gHp, d.Wp = w.gWp;
            d.plane = w.gplane, d.r0 = ya * g->m, d.r1 = yb * g->m + g->m, d.pad_half = w.gpad_half, d.vs = w.zs;
            d.tin = gtin;
            k.gout(&d, gout, gpad, Z);
            k.wgemm(&b, g->Cin, OCq, V, g->vs, Z, w.zs, P);
        }
    }
    const int A = g->A;
    const double(*G)[3] = m == 4 ? G4 : G2;
    const int64_t C = g->Cin;
#pragma omp parallel for schedule(static) /* over output channels; partials added in thread order */
    for (int64_t o = 0; o < g->Cout; o++)
        for (int64_t c = 0; c < C; c++) {
            double q[36], h[6][3];
            for (int64_t xi = 0; xi < A2; xi++) {
                double a = 0;
                for (int t = 0; t < nused; t++)
                    a += ((const float *)((const char *)ws + (size_t)t * w.tbytes + w.p_off))[(xi * C + c) * OCq + o];
                q[xi] = a;
            }
            for (int i = 0; i < A; i++) /* h = q G */
                for (int kw = 0; kw < 3; kw++) {
                    double a = 0;
                    for (int j = 0; j < A; j++) a += q[i * A + j] * G[j][kw];
                    h[i][kw] = a;
                }
            for (int kh = 0; kh < 3; kh++) /* G^T h */
                for (int kw = 0; kw < 3; kw++) {
                    double a = 0;
                    for (int i = 0; i < A; i++) a += G[i][kh] * h[i][kw];
                    gw[(o * C + c) * 9 + kh * 3 + kw] += (float)a;
                }
        }
}
