/* Template of the direct convolution micro-kernels (contract in conv_direct.h). Not a
 * normal header: conv_avx2.c and conv_avx512.c each define the vector API below and include it
 * once, so the same loops compile to each ISA.
 *   vf, VW                 vector type and its width in floats
 *   VZERO, VLOAD, VSTORE, VSET1, VFMA(a,b,c) = a*b+c, VMAX(a,b) (b where a is NaN), VHSUM (horizontal
 *                          sum, fixed order)
 *   OCB_F x NV_F           forward register tile: output channels x vectors of positions
 *   OCB_W x KB_W           weight-gradient register tile: output channels x (channel, tap) pairs
 *   WG3_NB, WG3_R(nb)      three-tap weight gradient: at most WG3_NB vectors of output channels,
 *                          WG3_R(nb) rows (x 3 taps) per register tile of nb vectors
 *   SFX(name)              appends the ISA suffix */

#define QT (NV_F * VW) /* positions per forward tile */

/* One forward tile: nv (<= NV_F, a constant after inlining) vectors of positions from src for the
 * OCB_F output channels of the weight block wb; the sums go to tmp (OCB_F, QT). */
static inline __attribute__((always_inline)) void SFX(fwd_tile)(const float *src, const int64_t *koff, const float *wb,
                                                                int64_t K, float *tmp, const int nv) {
    vf acc[OCB_F][NV_F];
#pragma GCC unroll 8
    for (int o = 0; o < OCB_F; o++)
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) acc[o][v] = VZERO();
    for (int64_t k = 0; k < K; k++) {
        const float *x = src + koff[k], *wk = wb + k * RT_CONVD_OCB;
        /* the next tile's three cache lines of this tap: the loads hop between C planes, which the
         * hardware prefetchers follow poorly (this alone took the 16-channel forward from 80 to
         * 130 GFLOP/s on a Zen 5 core) */
        __builtin_prefetch(x + QT);
        __builtin_prefetch(x + QT + 16);
        __builtin_prefetch(x + QT + 32);
        vf xv[NV_F];
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) xv[v] = VLOAD(x + v * VW);
#pragma GCC unroll 8
        for (int o = 0; o < OCB_F; o++) {
            vf b = VSET1(wk[o]);
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++) acc[o][v] = VFMA(b, xv[v], acc[o][v]);
        }
    }
#pragma GCC unroll 8
    for (int o = 0; o < OCB_F; o++)
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) VSTORE(tmp + o * QT + v * VW, acc[o][v]);
}

/* dst[0..n) = t + b, or dst += t; with the epilogue (res: the residual's row or NULL; relu),
 * dst = act(t + b + res) */
static inline void SFX(put_row)(float *dst, const float *t, int64_t n, float b, int accumulate, const float *res,
                                int relu) {
    vf bv = VSET1(b);
    int64_t j = 0;
    if (accumulate) {
        for (; j + VW <= n; j += VW) VSTORE(dst + j, VLOAD(dst + j) + VLOAD(t + j));
    } else if (res || relu) {
        vf zero = VZERO();
        for (; j + VW <= n; j += VW) {
            vf v = VLOAD(t + j) + bv;
            if (res) v = v + VLOAD(res + j);
            VSTORE(dst + j, relu ? VMAX(v, zero) : v);
        }
        for (; j < n; j++) {
            float v = t[j] + b;
            if (res) v += res[j];
            dst[j] = relu ? (v > 0.0f ? v : 0.0f) : v;
        }
        return;
    } else {
        for (; j + VW <= n; j += VW) VSTORE(dst + j, VLOAD(t + j) + bv);
    }
    for (; j < n; j++) dst[j] = accumulate ? dst[j] + t[j] : t[j] + b;
}

// in: padded sample (C planes), wpk: packed weights, out (OC,OH,OW); see conv_direct.h
void SFX(rt_convd_forward)(const rt_convd *d, const float *in, const float *wpk, const float *bias, float *out,
                           int64_t oc0, int64_t oc1, int accumulate, const rt_conv_epi *epi) {
    const float *res = epi && !accumulate ? epi->res : NULL;
    const int relu = epi && !accumulate && epi->relu;
    const int64_t K = d->K, Kp = d->Kp, Q = d->Q, Wp = d->Wp, OW = d->OW, OHW = d->OH * d->OW;
    float tmp[OCB_F * QT] __attribute__((aligned(64)));
    for (int64_t o0 = oc0; o0 < oc1; o0 += OCB_F) {
        const float *wb = wpk + (o0 / RT_CONVD_OCB) * Kp * RT_CONVD_OCB + o0 % RT_CONVD_OCB;
        int64_t no = oc1 - o0 < OCB_F ? oc1 - o0 : OCB_F;
        for (int64_t q0 = 0; q0 < Q; q0 += QT) {
            /* the last tile computes only the vectors it needs */
            int64_t left = (Q - q0 + VW - 1) / VW;
            if (left >= NV_F) SFX(fwd_tile)(in + q0, d->koff, wb, K, tmp, NV_F);
#if NV_F > 2
            else if (left == 2)
                SFX(fwd_tile)(in + q0, d->koff, wb, K, tmp, 2);
#endif
            else
                SFX(fwd_tile)(in + q0, d->koff, wb, K, tmp, 1);
            /* copy the valid columns of each virtual row in the tile to out */
            int64_t qe = q0 + QT < Q ? q0 + QT : Q;
            for (int64_t q = q0; q < qe;) {
                int64_t oh = q / Wp, rs = oh * Wp, ow = q - rs;
                int64_t re = rs + Wp < qe ? rs + Wp : qe, ve = rs + OW < re ? rs + OW : re;
                for (int64_t o = 0; o < no && q < ve; o++) {
                    int64_t at = (o0 + o) * OHW + oh * OW + ow;
                    SFX(put_row)(out + at, tmp + o * QT + (q - q0), ve - q, bias ? bias[o0 + o] : 0.0f, accumulate,
                                 res ? res + at : NULL, relu);
                }
                q = re;
            }
        }
    }
}

// gv (nsamp x (OCp,Qs)) output gradients by virtual position, in: padded samples, gw (OCp,Kp); accumulates into gw
void SFX(rt_convd_wgrad)(const rt_convd *d, const float *gv, const float *in, int64_t nsamp, int64_t gv_stride,
                         int64_t in_stride, float *gw) {
    const int64_t Kp = d->Kp, Qs = d->Qs;
    for (int64_t o0 = 0; o0 < d->OC; o0 += OCB_W)
        for (int64_t k0 = 0; k0 < d->K; k0 += KB_W) {
            vf acc[OCB_W][KB_W];
#pragma GCC unroll 8
            for (int o = 0; o < OCB_W; o++)
#pragma GCC unroll 8
                for (int j = 0; j < KB_W; j++) acc[o][j] = VZERO();
            for (int64_t n = 0; n < nsamp; n++) {
                const float *xs[KB_W];
#pragma GCC unroll 8
                for (int j = 0; j < KB_W; j++) xs[j] = in + n * in_stride + d->koff[k0 + j];
                const float *gs = gv + n * gv_stride + o0 * Qs;
                for (int64_t q = 0; q < Qs; q += VW) {
                    vf g[OCB_W];
#pragma GCC unroll 8
                    for (int o = 0; o < OCB_W; o++) g[o] = VLOAD(gs + o * Qs + q);
#pragma GCC unroll 8
                    for (int j = 0; j < KB_W; j++) {
                        vf x = VLOAD(xs[j] + q);
#pragma GCC unroll 8
                        for (int o = 0; o < OCB_W; o++) acc[o][j] = VFMA(g[o], x, acc[o][j]);
                    }
                }
            }
#pragma GCC unroll 8
            for (int o = 0; o < OCB_W; o++)
#pragma GCC unroll 8
                for (int j = 0; j < KB_W; j++) gw[(o0 + o) * Kp + k0 + j] += VHSUM(acc[o][j]);
        }
}

/* One register tile of the three-tap weight gradient (conv_direct.h): nb vectors of output
 * channels (gt and part already at the block's first channel) x R rows x 3 taps, over nsamp
 * samples; rowoff the tile's R rows. nb and R are constants after inlining. */
static inline __attribute__((always_inline)) void SFX(wg3_tile)(const rt_convd_wg3 *d, const float *gt, const float *in,
                                                                int64_t nsamp, int64_t gt_stride, int64_t in_stride,
                                                                const int64_t *rowoff, float *part, const int nb,
                                                                const int R) {
    const int64_t OCv = d->OCv, OH = d->OH, OW = d->OW, Wp = d->Wp;
    const int64_t o1 = d->kwoff[1] - d->kwoff[0], o2 = d->kwoff[2] - d->kwoff[0];
    vf acc[WG3_NB][3 * 8];
#pragma GCC unroll 4
    for (int b = 0; b < nb; b++)
#pragma GCC unroll 24
        for (int j = 0; j < 3 * R; j++) acc[b][j] = VZERO();
    for (int64_t n = 0; n < nsamp; n++) {
        const float *rp[8];
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) rp[r] = in + n * in_stride + rowoff[r] + d->kwoff[0];
        const float *g = gt + n * gt_stride;
        for (int64_t oh = 0; oh < OH; oh++) {
            const int64_t qb = oh * Wp;
            for (int64_t ow = 0; ow < OW; ow++, g += OCv) {
                vf gv[WG3_NB];
#pragma GCC unroll 4
                for (int b = 0; b < nb; b++) gv[b] = VLOAD(g + b * VW);
                const int64_t q = qb + ow;
#pragma GCC unroll 8
                for (int r = 0; r < R; r++) {
                    const vf x0 = VSET1(rp[r][q]), x1 = VSET1(rp[r][q + o1]), x2 = VSET1(rp[r][q + o2]);
#pragma GCC unroll 4
                    for (int b = 0; b < nb; b++) {
                        acc[b][3 * r] = VFMA(gv[b], x0, acc[b][3 * r]);
                        acc[b][3 * r + 1] = VFMA(gv[b], x1, acc[b][3 * r + 1]);
                        acc[b][3 * r + 2] = VFMA(gv[b], x2, acc[b][3 * r + 2]);
                    }
                }
            }
        }
    }
#pragma GCC unroll 24
    for (int j = 0; j < 3 * R; j++)
#pragma GCC unroll 4
        for (int b = 0; b < nb; b++) {
            float *p = part + j * OCv + b * VW;
            VSTORE(p, VLOAD(p) + acc[b][j]);
        }
}

// gt: transposed output gradients, in: padded samples, part (rows8*3, OCv); see conv_direct.h
void SFX(rt_convd_wgrad3)(const rt_convd_wg3 *d, const float *gt, const float *in, int64_t nsamp, int64_t gt_stride,
                          int64_t in_stride, float *part) {
    const int64_t OCv = d->OCv;
    for (int64_t c0 = 0; c0 < OCv; c0 += WG3_NB * VW) {
        const int nb = (int)((OCv - c0) / VW < WG3_NB ? (OCv - c0) / VW : WG3_NB);
        const int R = WG3_R(nb);
        for (int64_t r0 = 0; r0 < d->rows; r0 += R) {
            const float *g = gt + c0;
            float *p = part + r0 * 3 * OCv + c0;
            const int64_t *ro = d->rowoff + r0;
            /* r0 + R <= RT_CONVD_WG3_ROWS(rows): R divides 8 */
            switch (nb) {
            case 1: SFX(wg3_tile)(d, g, in, nsamp, gt_stride, in_stride, ro, p, 1, WG3_R(1)); break;
#if WG3_NB >= 2
            case 2: SFX(wg3_tile)(d, g, in, nsamp, gt_stride, in_stride, ro, p, 2, WG3_R(2)); break;
#endif
#if WG3_NB >= 3
            case 3: SFX(wg3_tile)(d, g, in, nsamp, gt_stride, in_stride, ro, p, 3, WG3_R(3)); break;
#endif
#if WG3_NB >= 4
            case 4: SFX(wg3_tile)(d, g, in, nsamp, gt_stride, in_stride, ro, p, 4, WG3_R(4)); break;
#endif
            default: break;
            }
        }
    }
}

#undef QT
