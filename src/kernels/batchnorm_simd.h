/* Template of the batch-norm kernels (contracts in batchnorm.h). Not a normal header: batchnorm.c
 * (scalar), batchnorm_avx2.c and batchnorm_avx512.c each define the vector API below and include it
 * once, so the same loops compile to each ISA.
 *   vf, VW                 vector type and its width in floats
 *   VZERO, VLOAD, VSTORE, VSET1, VADD, VSUB, VFMA(a,b,c) = a*b+c, VHSUM (horizontal sum, fixed order)
 *   VRELU(v)               v > 0 ? v : 0 (0 for NaN, as rt_relu)
 *   VPOSBITS(v)            an unsigned whose bit l is lane l's v > 0 (the ReLU's mask, VW bits)
 *   VKEEPBITS(d, bits)     lane l of d where bit l of bits is set, else 0
 *   SFX(name)              appends the ISA suffix
 *
 * Every kernel is parallel over channels and walks a channel's N rows of S values in order. Sums
 * are taken in two float vectors over runs of at most BN_RUN values of a row, then added in double:
 * each lane adds at most 32 values, so the float part costs no accuracy that matters, and the order
 * is fixed by the loop structure alone (not by the thread count). */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define BN_OMP_MIN 32768 /* below this many elements a kernel runs on one thread: the fork costs more */
#define BN_RUN (64 * VW) /* float partial sums go to double every BN_RUN values of a row: 32 per lane */

#define BN_INLINE static inline __attribute__((always_inline))

/* The ReLU mask of a row (batchnorm.h): element i is bit i % 8 of byte i / 8. nb = VW bits at i (a
 * multiple of nb), or one bit (a row's scalar tail, and the scalar instance, which starts each byte
 * afresh). */
BN_INLINE void put_bits(uint8_t *row, int64_t i, unsigned bits, const int nb) {
    if (nb == 16) {
        uint16_t w = (uint16_t)bits; /* little-endian: element i's bit first */
        memcpy(row + (i >> 3), &w, 2);
    } else if (nb == 8) {
        row[i >> 3] = (uint8_t)bits;
    } else {
        if ((i & 7) == 0) row[i >> 3] = 0;
        row[i >> 3] |= (uint8_t)(bits << (i & 7));
    }
}
BN_INLINE unsigned get_bits(const uint8_t *row, int64_t i, const int nb) {
    if (nb == 16) {
        uint16_t w;
        memcpy(&w, row + (i >> 3), 2);
        return w;
    }
    if (nb == 8) return row[i >> 3];
    return (row[i >> 3] >> (i & 7)) & 1u;
}

// p (n): s1 += sum(p - k), s2 += sum((p - k)^2)
BN_INLINE void SFX(row_sums)(const float *p, int64_t n, float k, double *s1, double *s2) {
    const vf kv = VSET1(k);
    for (int64_t i0 = 0; i0 < n; i0 += BN_RUN) {
        const int64_t m = n - i0 < BN_RUN ? n - i0 : BN_RUN;
        const float *q = p + i0;
        vf a0 = VZERO(), a1 = VZERO(), b0 = VZERO(), b1 = VZERO();
        int64_t i = 0;
        for (; i + 2 * VW <= m; i += 2 * VW) {
            vf d0 = VSUB(VLOAD(q + i), kv), d1 = VSUB(VLOAD(q + i + VW), kv);
            a0 = VADD(a0, d0);
            a1 = VADD(a1, d1);
            b0 = VFMA(d0, d0, b0);
            b1 = VFMA(d1, d1, b1);
        }
        if (i + VW <= m) {
            vf d0 = VSUB(VLOAD(q + i), kv);
            a0 = VADD(a0, d0);
            b0 = VFMA(d0, d0, b0);
            i += VW;
        }
        double t1 = VHSUM(VADD(a0, a1)), t2 = VHSUM(VADD(b0, b1));
        for (; i < m; i++) {
            double d = (double)q[i] - k;
            t1 += d;
            t2 += d * d;
        }
        *s1 += t1;
        *s2 += t2;
    }
}

// dy, x (n), mask: one row's bits (read when relu): with dz = relu ? dy * bit : dy,
// s1 += sum(dz), s2 += sum(dz * (x - m))
BN_INLINE void SFX(row_bsums)(const float *dy, const float *x, const uint8_t *mask, int64_t n, float m, const int relu,
                              double *s1, double *s2) {
    const vf mv = VSET1(m);
    for (int64_t i0 = 0; i0 < n; i0 += BN_RUN) { /* BN_RUN is a multiple of 8: runs start on a mask byte */
        const int64_t len = n - i0 < BN_RUN ? n - i0 : BN_RUN;
        const float *d = dy + i0, *p = x + i0;
        const uint8_t *mb = relu ? mask + (i0 >> 3) : NULL;
        vf a0 = VZERO(), a1 = VZERO(), b0 = VZERO(), b1 = VZERO();
        int64_t i = 0;
        for (; i + 2 * VW <= len; i += 2 * VW) {
            vf g0 = VLOAD(d + i), g1 = VLOAD(d + i + VW);
            if (relu) {
                g0 = VKEEPBITS(g0, get_bits(mb, i, VW));
                g1 = VKEEPBITS(g1, get_bits(mb, i + VW, VW));
            }
            a0 = VADD(a0, g0);
            a1 = VADD(a1, g1);
            b0 = VFMA(g0, VSUB(VLOAD(p + i), mv), b0);
            b1 = VFMA(g1, VSUB(VLOAD(p + i + VW), mv), b1);
        }
        if (i + VW <= len) {
            vf g0 = VLOAD(d + i);
            if (relu) g0 = VKEEPBITS(g0, get_bits(mb, i, VW));
            a0 = VADD(a0, g0);
            b0 = VFMA(g0, VSUB(VLOAD(p + i), mv), b0);
            i += VW;
        }
        double t1 = VHSUM(VADD(a0, a1)), t2 = VHSUM(VADD(b0, b1));
        for (; i < len; i++) {
            double g = relu && !get_bits(mb, i, 1) ? 0.0 : d[i];
            t1 += g;
            t2 += g * (p[i] - m);
        }
        *s1 += t1;
        *s2 += t2;
    }
}

// x, r, y (n), mask: one row's bits (written when relu && has_mask): y = act((x - m) * a + b [+ r]);
// y may be x
BN_INLINE void SFX(row_apply)(const float *x, const float *r, float *y, uint8_t *mask, int64_t n, float m, float a,
                              float b, const int relu, const int res, const int has_mask) {
    const vf mv = VSET1(m), av = VSET1(a), bv = VSET1(b);
    int64_t i = 0;
    for (; i + VW <= n; i += VW) {
        vf v = VFMA(VSUB(VLOAD(x + i), mv), av, bv);
        if (res) v = VADD(v, VLOAD(r + i));
        if (relu) v = VRELU(v);
        if (relu && has_mask) put_bits(mask, i, VPOSBITS(v), VW);
        VSTORE(y + i, v);
    }
    for (; i < n; i++) {
        float v = (x[i] - m) * a + b;
        if (res) v += r[i];
        if (relu) v = v > 0.0f ? v : 0.0f;
        if (relu && has_mask) put_bits(mask, i, v > 0.0f, 1);
        y[i] = v;
    }
}

// dy, x, dx, dr (n), mask as in row_bsums: dr += dz (has_dr); dx += ka dz + kc (x - m) + kb (has_dx);
// set_dr, set_dx: = instead of +=. dx and dr may be one buffer: each element's dr update is stored
// before its dx is loaded.
BN_INLINE void SFX(row_bapply)(const float *dy, const float *x, const uint8_t *mask, float *dx, float *dr, int64_t n,
                               float m, float ka, float kb, float kc, const int relu, const int has_dx,
                               const int has_dr, int set_dx, int set_dr) {
    const vf mv = VSET1(m), kav = VSET1(ka), kbv = VSET1(kb), kcv = VSET1(kc);
    int64_t i = 0;
    for (; i + VW <= n; i += VW) {
        vf g = VLOAD(dy + i);
        if (relu) g = VKEEPBITS(g, get_bits(mask, i, VW));
        if (has_dr) VSTORE(dr + i, set_dr ? g : VADD(VLOAD(dr + i), g));
        if (has_dx) {
            vf t = VFMA(kcv, VSUB(VLOAD(x + i), mv), kbv), v = VFMA(kav, g, t);
            VSTORE(dx + i, set_dx ? v : VADD(VLOAD(dx + i), v));
        }
    }
    for (; i < n; i++) {
        float g = relu && !get_bits(mask, i, 1) ? 0.0f : dy[i];
        if (has_dr) dr[i] = set_dr ? g : dr[i] + g;
        if (has_dx) {
            float v = ka * g + (kc * (x[i] - m) + kb);
            dx[i] = set_dx ? v : dx[i] + v;
        }
    }
}

// channel c of x (N,C,S): its mean and biased variance, from sums shifted by one of its values (the
// one-pass variance E[d^2] - E[d]^2 stays accurate even when |mean| >> std)
BN_INLINE void SFX(chan_stats)(const float *x, int64_t N, int64_t C, int64_t S, int64_t c, float *mean, float *var) {
    const float k = x[c * S];
    double s1 = 0, s2 = 0;
    for (int64_t n = 0; n < N; n++) SFX(row_sums)(x + (n * C + c) * S, S, k, &s1, &s2);
    const double M = (double)(N * S), mm = s1 / M, v = s2 / M - mm * mm;
    *mean = (float)(k + mm);
    *var = (float)(v > 0 ? v : 0);
}

// channel c: rows of y (and of mask, when relu and mask) from rows of x (and r)
BN_INLINE void SFX(chan_apply)(const float *x, const float *r, float *y, uint8_t *mask, int64_t N, int64_t C, int64_t S,
                               int64_t c, float m, float a, float b, int relu) {
    const int64_t MB = RT_BN_MASK_ROW_BYTES(S);
    for (int64_t n = 0; n < N; n++) {
        const int64_t o = (n * C + c) * S;
        uint8_t *mr = relu && mask ? mask + (n * C + c) * MB : NULL;
        if (!relu) {
            if (r)
                SFX(row_apply)(x + o, r + o, y + o, NULL, S, m, a, b, 0, 1, 0);
            else
                SFX(row_apply)(x + o, NULL, y + o, NULL, S, m, a, b, 0, 0, 0);
        } else if (mr) {
            if (r)
                SFX(row_apply)(x + o, r + o, y + o, mr, S, m, a, b, 1, 1, 1);
            else
                SFX(row_apply)(x + o, NULL, y + o, mr, S, m, a, b, 1, 0, 1);
        } else {
            if (r)
                SFX(row_apply)(x + o, r + o, y + o, NULL, S, m, a, b, 1, 1, 0);
            else
                SFX(row_apply)(x + o, NULL, y + o, NULL, S, m, a, b, 1, 0, 0);
        }
    }
}

// x (N,C,S); mean, var (C), overwritten
void SFX(rt_bn_stats)(const float *x, int64_t N, int64_t C, int64_t S, float *mean, float *var) {
#pragma omp parallel for schedule(static) if (N * C * S > BN_OMP_MIN) /* over channels */
    for (int64_t c = 0; c < C; c++) SFX(chan_stats)(x, N, C, S, c, mean + c, var + c);
}

// x, r, y (N,C,S); gamma, beta, mean, var, invstd (C); mask (N*C rows of bits); y overwritten (may be x)
void SFX(rt_bn_act_train)(const float *x, const float *r, const float *gamma, const float *beta, float eps, int relu,
                          int64_t N, int64_t C, int64_t S, float *mean, float *var, float *invstd, float *y,
                          uint8_t *mask) {
#pragma omp parallel for schedule(static) if (N * C * S > BN_OMP_MIN) /* over channels */
    for (int64_t c = 0; c < C; c++) {
        SFX(chan_stats)(x, N, C, S, c, mean + c, var + c);
        invstd[c] = (float)(1.0 / sqrt((double)var[c] + eps));
        const float a = invstd[c] * (gamma ? gamma[c] : 1.0f), b = beta ? beta[c] : 0.0f;
        SFX(chan_apply)(x, r, y, mask, N, C, S, c, mean[c], a, b, relu);
    }
}

// x, r, y (N,C,S); mean, invstd, gamma, beta (C); mask (N*C rows of bits); y overwritten (may be x)
void SFX(rt_bn_act_apply)(const float *x, const float *r, const float *mean, const float *invstd, const float *gamma,
                          const float *beta, int relu, int64_t N, int64_t C, int64_t S, float *y, uint8_t *mask) {
#pragma omp parallel for schedule(static) if (N * C * S > BN_OMP_MIN) /* over channels */
    for (int64_t c = 0; c < C; c++) {
        const float a = invstd[c] * (gamma ? gamma[c] : 1.0f), b = beta ? beta[c] : 0.0f;
        SFX(chan_apply)(x, r, y, mask, N, C, S, c, mean[c], a, b, relu);
    }
}

// dy, x, dx, dr (N,C,S); mask (N*C rows of bits); mean, invstd, gamma, dgamma, dbeta (C); accumulates
void SFX(rt_bn_act_backward)(const float *dy, const float *x, const uint8_t *mask, const float *mean,
                             const float *invstd, const float *gamma, int batch_stats, int relu, int64_t N, int64_t C,
                             int64_t S, float *dx, float *dgamma, float *dbeta, float *dr, int set) {
    const int64_t M = N * S, MB = RT_BN_MASK_ROW_BYTES(S);
    const int sx = set & 1, sr = (set >> 1) & 1;
    const int need_sums = dgamma || dbeta || (dx && batch_stats);
#pragma omp parallel for schedule(static) if (N * C * S > BN_OMP_MIN) /* over channels */
    for (int64_t c = 0; c < C; c++) {
        const float m = mean[c], is = invstd[c], g = gamma ? gamma[c] : 1.0f;
        double sum_dz = 0, sum_dzxhat = 0;
        if (need_sums) {
            double s2 = 0;
            for (int64_t n = 0; n < N; n++) {
                const int64_t o = (n * C + c) * S;
                if (relu)
                    SFX(row_bsums)(dy + o, x + o, mask + (n * C + c) * MB, S, m, 1, &sum_dz, &s2);
                else
                    SFX(row_bsums)(dy + o, x + o, NULL, S, m, 0, &sum_dz, &s2);
            }
            sum_dzxhat = s2 * is;
        }
        if (dgamma) dgamma[c] += (float)sum_dzxhat;
        if (dbeta) dbeta[c] += (float)sum_dz;
        if (!dx && !dr) continue;
        /* training: dx = g*is * (dz - mean(dz) - xhat * mean(dz*xhat)), xhat = (x - m) * is;
         * eval: dx = g*is * dz */
        const double gi = (double)g * is;
        const float ka = (float)gi;
        const float kb = batch_stats ? (float)(-gi * sum_dz / (double)M) : 0.0f;
        const float kc = batch_stats ? (float)(-gi * is * sum_dzxhat / (double)M) : 0.0f;
        for (int64_t n = 0; n < N; n++) {
            const int64_t o = (n * C + c) * S;
            const uint8_t *mr = relu ? mask + (n * C + c) * MB : NULL;
            float *xo = dx ? dx + o : NULL, *ro = dr ? dr + o : NULL;
            if (relu) {
                if (dx && dr)
                    SFX(row_bapply)(dy + o, x + o, mr, xo, ro, S, m, ka, kb, kc, 1, 1, 1, sx, sr);
                else if (dx)
                    SFX(row_bapply)(dy + o, x + o, mr, xo, NULL, S, m, ka, kb, kc, 1, 1, 0, sx, sr);
                else
                    SFX(row_bapply)(dy + o, x + o, mr, NULL, ro, S, m, ka, kb, kc, 1, 0, 1, sx, sr);
            } else {
                if (dx && dr)
                    SFX(row_bapply)(dy + o, x + o, NULL, xo, ro, S, m, ka, kb, kc, 0, 1, 1, sx, sr);
                else if (dx)
                    SFX(row_bapply)(dy + o, x + o, NULL, xo, NULL, S, m, ka, kb, kc, 0, 1, 0, sx, sr);
                else
                    SFX(row_bapply)(dy + o, x + o, NULL, NULL, ro, S, m, ka, kb, kc, 0, 0, 1, sx, sr);
            }
        }
    }
}
