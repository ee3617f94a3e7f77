/* Template of the Winograd block kernels (contract in winograd.h). Not a normal header:
 * winograd_avx2.c and winograd_avx512.c each define the vector API below and include it once.
 *   vf, VW                 vector type and its width in floats (a multiple of 4)
 *   VZERO, VLOAD, VSTORE, VSET1, VADD, VSUB, VMUL, VFMA(a,b,c) = a*b+c
 *   QUADS(p, k, off)       the vector whose 128-bit lane L holds the 4 floats at p[k + 4L] + off
 *   TRANS4(r)              4x4 transpose inside each 128-bit lane of r[0..3]
 *   LANE(v, L)             128-bit lane L of v (an __m128)
 *   PARTIAL_STORE(d, x, n, acc)  d[0..n) = (or +=) the first n (< 4) floats of the __m128 x
 *   MASKLOAD(p, lo, hi)    lanes [lo, hi) of the VW floats at p (clamped to [0, VW)), zero elsewhere; the
 *                          other lanes are not read (no fault)
 *   OCB_G x NV_G           GEMM register tile: output channels (dividing 8) x vectors of tiles
 *   SFX(name)              appends the ISA suffix
 * Tiles sit in the vector lanes: lane t of a group of VW tiles is tile g + t. A tile's patch rows
 * are 4-float pieces (F(4x4) reads two per row); QUADS + TRANS4 turn VW such pieces into 4 vectors
 * with one tile per lane, and the same transpose takes output rows back to 4-float pieces: lane L
 * of vector k then holds tile 4L + k. */
#include <string.h>
#include <xmmintrin.h>

#define QT (NV_G * VW) /* tiles per GEMM register tile */

static inline int64_t SFX(round_q)(int64_t n) { return (n + QT - 1) / QT * QT; }

int64_t SFX(rt_wino_tile_quantum)(void) { return QT; }

/* d[j] lane t = p[t][off + j], j < 4 */
static inline __attribute__((always_inline)) void SFX(rows4)(const float *const *p, int64_t off, vf *d) {
    d[0] = QUADS(p, 0, off), d[1] = QUADS(p, 1, off), d[2] = QUADS(p, 2, off), d[3] = QUADS(p, 3, off);
    TRANS4(d);
}

/* y = B^T x for F(4x4): rows (2,-3,-4,3,2,0) (0,-2,1,5,2,0) (0,2,-5,1,2,0) (0,-2,-1,2,1,0)
 * (0,1,-2,-1,2,0) (0,2,-3,-4,3,2) (points 0, 1, -1, 1/2, -2; see winograd.c) */
static inline void SFX(bt6)(const vf *x, vf *y) {
    vf d = VSUB(x[3], x[1]), e = VSUB(x[4], x[2]);
    y[0] = VFMA(VSET1(2.0f), VADD(x[0], x[4]), VFMA(VSET1(3.0f), d, VMUL(VSET1(-4.0f), x[2])));
    y[1] = VFMA(VSET1(5.0f), x[3], VFMA(VSET1(-2.0f), x[1], VFMA(VSET1(2.0f), x[4], x[2])));
    y[2] = VFMA(VSET1(-5.0f), x[2], VFMA(VSET1(2.0f), x[1], VFMA(VSET1(2.0f), x[4], x[3])));
    y[3] = VFMA(VSET1(2.0f), d, e);
    y[4] = VSUB(VADD(e, e), d);
    y[5] = VFMA(VSET1(2.0f), VADD(x[1], x[5]), VFMA(VSET1(3.0f), e, VMUL(VSET1(-4.0f), x[3])));
}
/* y = B^T x for F(2x2): rows (1,0,-1,0) (0,1,1,0) (0,-1,1,0) (0,1,0,-1) */
static inline void SFX(bt4)(const vf *x, vf *y) {
    y[0] = VSUB(x[0], x[2]), y[1] = VADD(x[1], x[2]), y[2] = VSUB(x[2], x[1]), y[3] = VSUB(x[1], x[3]);
}
/* z = A^T x for F(4x4): rows (1,1,1,1,1,0) (0,1,-1,1/2,-2,0) (0,1,1,1/4,4,0) (0,1,-1,1/8,-8,1) */
static inline void SFX(at6)(const vf *x, vf *z) {
    vf a = VADD(x[1], x[2]), b = VSUB(x[1], x[2]);
    z[0] = VADD(VADD(x[0], a), VADD(x[3], x[4]));
    z[1] = VFMA(VSET1(0.5f), x[3], VFMA(VSET1(-2.0f), x[4], b));
    z[2] = VFMA(VSET1(0.25f), x[3], VFMA(VSET1(4.0f), x[4], a));
    z[3] = VFMA(VSET1(0.125f), x[3], VFMA(VSET1(-8.0f), x[4], VADD(b, x[5])));
}
/* z = A^T x for F(2x2): rows (1,1,1,0) (0,1,-1,-1) */
static inline void SFX(at4)(const vf *x, vf *z) {
    z[0] = VADD(VADD(x[0], x[1]), x[2]), z[1] = VSUB(VSUB(x[1], x[2]), x[3]);
}

/* ---- zero padding ---- */

// src (H0,W0) of one channel -> rows [r0, r1) of its padded plane dst (row length Wp, source at row
// pt, column pl); stores may run up to VW - 1 floats past each row's end (the next row, or slack)
static void SFX(pad_rows)(const float *src, int64_t H0, int64_t W0, int64_t pt, int64_t pl, float *dst, int64_t Wp,
                          int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
        float *row = dst + r * Wp;
        int64_t y = r - pt;
        if (y < 0 || y >= H0)
            for (int64_t x = 0; x < Wp; x += VW) VSTORE(row + x, VZERO());
        else /* row[x] = source column x - pl where that is inside the row */
            for (int64_t x = 0; x < Wp; x += VW) VSTORE(row + x, MASKLOAD(src + y * W0 + x - pl, pl - x, pl + W0 - x));
    }
}

/* ---- filters ---- */

static const double SFX(G4)[6][3] = {{1.0 / 2, 0, 0},
                                     {1.0 / 6, 1.0 / 6, 1.0 / 6},
                                     {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                     {-16.0 / 15, -8.0 / 15, -4.0 / 15},
                                     {1.0 / 30, -1.0 / 15, 2.0 / 15},
                                     {0, 0, 1.0 / 2}};
static const double SFX(G2)[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};

// w (Cout,Cin,3,3), or (Cin,Cout,3,3) read flipped; U: output channels [8 ob, 8 ob + 8) (8 lanes of doubles)
void SFX(rt_wino_filters)(int m, int flip, int64_t Cin, int64_t Cout, int64_t us, const float *w, float *U,
                          int64_t ob) {
    typedef double vd __attribute__((vector_size(64)));
    typedef float vs8 __attribute__((vector_size(32)));
    const int A = m + 2;
    const double(*G)[3] = m == 4 ? SFX(G4) : SFX(G2);
    for (int64_t c = 0; c < Cin; c++) {
        vd f[9], h[6][3];
        for (int k = 0; k < 9; k++)
            for (int l = 0; l < 8; l++) {
                int64_t o = ob * 8 + l;
                f[k][l] = o >= Cout ? 0.0 : flip ? w[(c * Cout + o) * 9 + 8 - k] : w[(o * Cin + c) * 9 + k];
            }
        for (int i = 0; i < A; i++) /* h = G f */
            for (int kw = 0; kw < 3; kw++) h[i][kw] = G[i][0] * f[kw] + G[i][1] * f[3 + kw] + G[i][2] * f[6 + kw];
        float *u = U + ob * Cin * 8 + c * 8;
        for (int i = 0; i < A; i++) /* U = h G^T */
            for (int j = 0; j < A; j++) {
                vs8 x = __builtin_convertvector(h[i][0] * G[j][0] + h[i][1] * G[j][1] + h[i][2] * G[j][2], vs8);
                __builtin_memcpy(u + (i * A + j) * us, &x, sizeof x);
            }
    }
}

/* ---- input patches ---- */

// p: VW patch pointers (row stride Wp), v: V at this channel and group (xi-plane stride vs); F(4x4)
static inline void SFX(in4)(const float *const *p, int64_t Wp, float *v, int64_t vs) {
    vf u[6][6]; /* u[i][s]: patch row i after the column transform */
    for (int i = 0; i < 6; i++) {
        vf d[8];
        SFX(rows4)(p, i * Wp, d);
        SFX(rows4)(p, i * Wp + 4, d + 4); /* columns 4, 5 (6, 7 unused) */
        SFX(bt6)(d, u[i]);
    }
    for (int s = 0; s < 6; s++) {
        vf x[6] = {u[0][s], u[1][s], u[2][s], u[3][s], u[4][s], u[5][s]}, y[6];
        SFX(bt6)(x, y);
        for (int r = 0; r < 6; r++) VSTORE(v + (r * 6 + s) * vs, y[r]);
    }
}

// as in4, F(2x2)
static inline void SFX(in2)(const float *const *p, int64_t Wp, float *v, int64_t vs) {
    vf u[4][4];
    for (int i = 0; i < 4; i++) {
        vf d[4];
        SFX(rows4)(p, i * Wp, d);
        SFX(bt4)(d, u[i]);
    }
    for (int s = 0; s < 4; s++) {
        vf x[4] = {u[0][s], u[1][s], u[2][s], u[3][s]}, y[4];
        SFX(bt4)(x, y);
        for (int r = 0; r < 4; r++) VSTORE(v + (r * 4 + s) * vs, y[r]);
    }
}

/* Pads channel c of the block's samples into dst. */
static inline void SFX(pad_channel)(const rt_wino_blk *b, const float *src, int64_t c, float *dst) {
    for (int64_t n = b->n0; n <= b->n1; n++) SFX(pad_rows)
    (src + (n * b->Cin + c) * b->H0 * b->W0, b->H0, b->W0, b->pt, b->pl, dst + (n - b->n0) * b->plane, b->Wp,
     n == b->n0 ? b->r0 : 0, n == b->n1 ? b->r1 : b->Hp);
}

// src (N,Cin,H0,W0), pad: two channels of the block's samples, V (alpha^2, Cin, TB); see winograd.h
void SFX(rt_wino_in)(const rt_wino_blk *b, const float *src, float *pad, float *V) {
    const int64_t TB = b->TB, ntq = SFX(round_q)(b->nt), half = b->pad_half;
    /* One channel is padded (into L1) while the previous one is transformed: reading the copy right
     * after writing it, with overlapping stores, stalls on store-to-load forwarding. */
    const int64_t HW = b->H0 * b->W0;
    SFX(pad_channel)(b, src, 0, pad);
    for (int64_t c = 0; c < b->Cin; c++) {
        const float *cur = pad + (c & 1) * half;
        if (c + 1 < b->Cin) SFX(pad_channel)(b, src, c + 1, pad + ((c + 1) & 1) * half);
        /* a channel's planes lie a sample apart, too short a stream for the hardware prefetchers:
         * fetch those of channel c + 2 while channel c is transformed */
        if (c + 2 < b->Cin)
            for (int64_t n = b->n0; n <= b->n1; n++)
                for (int64_t i = 0; i < HW; i += 16)
                    _mm_prefetch((const char *)(src + (n * b->Cin + c + 2) * HW + i), _MM_HINT_T0);
        for (int64_t g = 0; g < ntq; g += VW) {
            const float *p[VW];
            for (int t = 0; t < VW; t++) p[t] = cur + b->tin[g + t];
            if (b->m == 4)
                SFX(in4)(p, b->Wp, V + c * TB + g, b->vs);
            else
                SFX(in2)(p, b->Wp, V + c * TB + g, b->vs);
        }
    }
}

/* ---- the GEMMs ---- */

/* One register tile: OCB_G output channels (weights ub[c * 8 + o]) x QT tiles of v (row stride TB). */
static inline __attribute__((always_inline)) void SFX(gemm_tile)(const float *ub, const float *v, int64_t Cin,
                                                                 int64_t TB, float *m) {
    vf acc[OCB_G][NV_G];
#pragma GCC unroll 8
    for (int o = 0; o < OCB_G; o++)
#pragma GCC unroll 4
        for (int k = 0; k < NV_G; k++) acc[o][k] = VZERO();
    for (int64_t c = 0; c < Cin; c++) {
        vf x[NV_G];
#pragma GCC unroll 4
        for (int k = 0; k < NV_G; k++) x[k] = VLOAD(v + c * TB + k * VW);
#pragma GCC unroll 8
        for (int o = 0; o < OCB_G; o++) {
            vf w = VSET1(ub[c * 8 + o]);
#pragma GCC unroll 4
            for (int k = 0; k < NV_G; k++) acc[o][k] = VFMA(w, x[k], acc[o][k]);
        }
    }
#pragma GCC unroll 8
    for (int o = 0; o < OCB_G; o++)
#pragma GCC unroll 4
        for (int k = 0; k < NV_G; k++) VSTORE(m + o * TB + k * VW, acc[o][k]);
}

// U (alpha^2, OCp/8, Cin, 8), V (alpha^2, Cin, TB), M (alpha^2, o1 - o0, TB); overwrites M
void SFX(rt_wino_gemm)(const rt_wino_blk *b, const float *U, const float *V, float *M, int64_t o0, int64_t o1) {
    const int64_t A2 = (b->m + 2) * (b->m + 2), Cin = b->Cin, TB = b->TB, ntq = SFX(round_q)(b->nt);
    for (int64_t xi = 0; xi < A2; xi++) {
        const float *Ux = U + xi * b->us, *Vx = V + xi * b->vs;
        float *Mx = M + xi * b->ms;
        for (int64_t o = o0; o < o1; o += OCB_G)
            for (int64_t t0 = 0; t0 < ntq; t0 += QT)
                SFX(gemm_tile)(Ux + (o / 8) * Cin * 8 + o % 8, Vx + t0, Cin, TB, Mx + (o - o0) * TB + t0);
    }
}

/* Writes row r of a group of tiles from q[k] (lane L = tile 4L + k, after TRANS4): w floats of
 * each at dst[t] + off. Unless the whole group lies inside the output (full), only the tiles
 * t < n whose row r is inside (r < rows[t]), and of them the columns inside (cols[t]). (Storing
 * 4 side-by-side tiles' rows as one vector measured slower on Zen 5.) */
/* Stores row r of VW tiles' outputs (lane L of q[k]: tile 4L + k): dst[t] + off = the row (or +=
 * when accumulate); with an epilogue (ep: 1 the residual at res + (that address - out), 2 ReLU, 3
 * both) act(row + res) instead. */
static inline __attribute__((always_inline)) void SFX(put_rows)(const vf *q, float *const *dst, int64_t off, int r,
                                                                int w, const int32_t *rows, const int32_t *cols,
                                                                int64_t n, int full, int accumulate, const int ep,
                                                                const float *res, const float *out) {
#pragma GCC unroll 4
    for (int L = 0; L < VW / 4; L++)
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            int t = 4 * L + k, nc = w;
            if (!full) {
                if (t >= n || r >= rows[t]) continue;
                nc = cols[t];
            }
            __m128 x = LANE(q[k], L);
            float *d = dst[t] + off;
            if (ep) {
                const float *rs = res + (d - out);
                if (nc == 4) {
                    if (ep & 1) x = _mm_add_ps(x, _mm_loadu_ps(rs));
                    if (ep & 2) x = _mm_max_ps(x, _mm_setzero_ps());
                    _mm_storeu_ps(d, x);
                } else {
                    float v[4];
                    _mm_storeu_ps(v, x);
                    for (int j = 0; j < nc; j++) {
                        float a = v[j] + ((ep & 1) ? rs[j] : 0.0f);
                        d[j] = (ep & 2) ? (a > 0.0f ? a : 0.0f) : a;
                    }
                }
                continue;
            }
            if (nc == 4) {
                if (accumulate) x = _mm_add_ps(_mm_loadu_ps(d), x);
                _mm_storeu_ps(d, x);
            } else if (nc == 2) {
                if (accumulate) x = _mm_add_ps(_mm_loadl_pi(_mm_setzero_ps(), (const __m64 *)d), x);
                _mm_storel_pi((__m64 *)d, x);
            } else
                PARTIAL_STORE(d, x, nc, accumulate);
        }
}

/* ---- output tiles ---- */

// M (alpha^2, o1 - o0, TB), out: channel planes of the tiles' samples; ep, res: see put_rows
static inline __attribute__((always_inline)) void SFX(out_tiles)(const rt_wino_blk *b, const float *M, float *out,
                                                                 const float *bias, int64_t o0, int64_t o1,
                                                                 int accumulate, const int ep, const float *res) {
    const int64_t TB = b->TB, ms = b->ms, oe = o1 < b->Cout ? o1 : b->Cout;
    const int m = b->m;
    for (int64_t g = 0; g < b->nt; g += VW) {
        int64_t n = b->nt - g < VW ? b->nt - g : VW;
        int full = n == VW;
        for (int64_t t = 0; t < n; t++) full &= b->rows[g + t] == m && b->cols[g + t] == m;
        float *dst[VW];
        for (int64_t t = 0; t < VW; t++) dst[t] = out + b->tout[g + (t < n ? t : n - 1)];
        for (int64_t o = o0; o < oe; o++) {
            const float *mp = M + (o - o0) * TB + g;
            if (o + 1 < oe) /* the next channel's rows, 16 or 36 planes apart: too many streams to detect */
                for (int xi = 0; xi < (m + 2) * (m + 2); xi++)
                    _mm_prefetch((const char *)(mp + TB + xi * ms), _MM_HINT_T0);
            vf bv = VSET1(bias && !accumulate ? bias[o] : 0.0f), z[4][4];
            if (m == 4) {
                vf p[6][4];
                for (int i = 0; i < 6; i++) {
                    vf x[6];
                    for (int j = 0; j < 6; j++) x[j] = VLOAD(mp + (i * 6 + j) * ms);
                    SFX(at6)(x, p[i]);
                }
                for (int s = 0; s < 4; s++) {
                    vf x[6] = {p[0][s], p[1][s], p[2][s], p[3][s], p[4][s], p[5][s]}, y[4];
                    SFX(at6)(x, y);
                    for (int r = 0; r < 4; r++) z[r][s] = VADD(y[r], bv);
                }
            } else {
                vf p[4][2];
                for (int i = 0; i < 4; i++) {
                    vf x[4];
                    for (int j = 0; j < 4; j++) x[j] = VLOAD(mp + (i * 4 + j) * ms);
                    SFX(at4)(x, p[i]);
                }
                for (int s = 0; s < 2; s++) {
                    vf x[4] = {p[0][s], p[1][s], p[2][s], p[3][s]}, y[2];
                    SFX(at4)(x, y);
                    for (int r = 0; r < 2; r++) z[r][s] = VADD(y[r], bv);
                }
                for (int r = 0; r < 2; r++) z[r][2] = z[r][3] = VZERO();
            }
            for (int r = 0; r < m; r++) {
                TRANS4(z[r]);
                int64_t off = o * b->oplane + r * b->OW;
                if (full)
                    SFX(put_rows)(z[r], dst, off, r, m, b->rows + g, b->cols + g, n, 1, accumulate, ep, res, out);
                else
                    SFX(put_rows)(z[r], dst, off, r, m, b->rows + g, b->cols + g, n, 0, accumulate, ep, res, out);
            }
        }
    }
}

// see winograd.h; each epilogue gets its own copy of the loops
void SFX(rt_wino_out)(const rt_wino_blk *b, const float *M, float *out, const float *bias, int64_t o0, int64_t o1,
                      int accumulate, const rt_conv_epi *epi) {
    int ep = epi && !accumulate ? (epi->res ? 1 : 0) | (epi->relu ? 2 : 0) : 0;
    const float *res = ep & 1 ? epi->res : NULL;
    switch (ep) {
    case 0:
        SFX(out_tiles)(b, M, out, bias, o0, o1, accumulate, 0, NULL);
        break;
    case 1:
        SFX(out_tiles)(b, M, out, bias, o0, o1, 0, 1, res);
        break;
    case 2:
        SFX(out_tiles)(b, M, out, bias, o0, o1, 0, 2, NULL);
        break;
    default:
        SFX(out_tiles)(b, M, out, bias, o0, o1, 0, 3, res);
    }
}

/* ---- the weight gradient ---- */

/* y = A x, A the transpose of A^T (F(4x4)): the output-gradient tile's rows and columns go from 4
 * to 6 points */
static inline __attribute__((always_inline)) void SFX(a6)(const vf *x, vf *y) {
    vf e = VADD(x[0], x[2]), o = VADD(x[1], x[3]);
    y[0] = x[0], y[1] = VADD(e, o), y[2] = VSUB(e, o);
    y[3] = VFMA(VSET1(0.5f), x[1], VFMA(VSET1(0.25f), x[2], VFMA(VSET1(0.125f), x[3], x[0])));
    y[4] = VFMA(VSET1(-2.0f), x[1], VFMA(VSET1(4.0f), x[2], VFMA(VSET1(-8.0f), x[3], x[0])));
    y[5] = x[3];
}
/* y = A x for F(2x2): 2 -> 4 points */
static inline __attribute__((always_inline)) void SFX(a4)(const vf *x, vf *y) {
    y[0] = x[0], y[1] = VADD(x[0], x[1]), y[2] = VSUB(x[0], x[1]), y[3] = VSUB(VZERO(), x[1]);
}

// p: VW tile pointers into the padded output gradient (row stride Wp), z: Z at this channel and group
static inline __attribute__((always_inline)) void SFX(gout4)(const float *const *p, int64_t Wp, float *z, int64_t zs) {
    vf h[4][6];
    for (int r = 0; r < 4; r++) {
        vf d[4];
        SFX(rows4)(p, r * Wp, d);
        SFX(a6)(d, h[r]);
    }
    for (int j = 0; j < 6; j++) {
        vf x[4] = {h[0][j], h[1][j], h[2][j], h[3][j]}, y[6];
        SFX(a6)(x, y);
        for (int i = 0; i < 6; i++) VSTORE(z + (i * 6 + j) * zs, y[i]);
    }
}
static inline __attribute__((always_inline)) void SFX(gout2)(const float *const *p, int64_t Wp, float *z, int64_t zs) {
    vf h[2][4];
    for (int r = 0; r < 2; r++) {
        vf d[4];
        SFX(rows4)(p, r * Wp, d); /* columns 2, 3 unused */
        SFX(a4)(d, h[r]);
    }
    for (int j = 0; j < 4; j++) {
        vf x[2] = {h[0][j], h[1][j]}, y[4];
        SFX(a4)(x, y);
        for (int i = 0; i < 4; i++) VSTORE(z + (i * 4 + j) * zs, y[i]);
    }
}

// see rt_wino_gout_avx2 in winograd.h
void SFX(rt_wino_gout)(const rt_wino_blk *b, const float *gout, float *pad, float *Z) {
    const int64_t TB = b->TB, ntq = SFX(round_q)(b->nt), A2 = (b->m + 2) * (b->m + 2);
    for (int64_t o = 0; o < b->Cin; o++) {
        SFX(pad_channel)(b, gout, o, pad);
        for (int64_t g = 0; g < ntq; g += VW) {
            const float *p[VW];
            for (int t = 0; t < VW; t++) p[t] = pad + b->tin[g + t];
            if (b->m == 4)
                SFX(gout4)(p, b->Wp, Z + o * TB + g, b->vs);
            else
                SFX(gout2)(p, b->Wp, Z + o * TB + g, b->vs);
        }
        if (ntq > b->nt) /* tiles past the block's end repeat a valid one: their gradient must be zero */
            for (int64_t xi = 0; xi < A2; xi++)
                memset(Z + xi * b->vs + o * TB + b->nt, 0, (size_t)(ntq - b->nt) * sizeof(float));
    }
}

/* P[c][o] += sum over tiles of V[c][t] Z[o][t] for WG_RC x WG_RO (or rc x 1 ... ) pairs: dot
 * products along the tiles, summed across lanes once per block. */
static inline __attribute__((always_inline)) void SFX(wg_tile)(const float *v, const float *z, int64_t TB, int64_t ntq,
                                                               float *p, int64_t ldp, const int rc, const int ro) {
    vf acc[WG_RC][WG_RO];
#pragma GCC unroll 8
    for (int r = 0; r < rc; r++)
#pragma GCC unroll 8
        for (int j = 0; j < ro; j++) acc[r][j] = VZERO();
    for (int64_t t = 0; t < ntq; t += VW) {
        vf x[WG_RC];
#pragma GCC unroll 8
        for (int r = 0; r < rc; r++) x[r] = VLOAD(v + r * TB + t);
#pragma GCC unroll 8
        for (int j = 0; j < ro; j++) {
            vf y = VLOAD(z + j * TB + t);
#pragma GCC unroll 8
            for (int r = 0; r < rc; r++) acc[r][j] = VFMA(x[r], y, acc[r][j]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < rc; r++)
#pragma GCC unroll 8
        for (int j = 0; j < ro; j++) p[r * ldp + j] += HSUM(acc[r][j]);
}

// see rt_wino_wgemm_avx2 in winograd.h
void SFX(rt_wino_wgemm)(const rt_wino_blk *b, int64_t Cin, int64_t OCq, const float *V, int64_t vs, const float *Z,
                        int64_t zs, float *P) {
    const int64_t A2 = (b->m + 2) * (b->m + 2), TB = b->TB, ntq = SFX(round_q)(b->nt);
    const int64_t cm = Cin / WG_RC * WG_RC;
    for (int64_t xi = 0; xi < A2; xi++) {
        const float *Vx = V + xi * vs, *Zx = Z + xi * zs;
        float *Px = P + xi * Cin * OCq;
        for (int64_t o = 0; o < OCq; o += WG_RO) {
            for (int64_t c = 0; c < cm; c += WG_RC)
                SFX(wg_tile)(Vx + c * TB, Zx + o * TB, TB, ntq, Px + c * OCq + o, OCq, WG_RC, WG_RO);
            for (int64_t c = cm; c < Cin; c++)
                SFX(wg_tile)(Vx + c * TB, Zx + o * TB, TB, ntq, Px + c * OCq + o, OCq, 1, WG_RO);
        }
    }
}

#undef QT
