/* Batch-norm reference kernels: the textbook formulas, two passes, double sums, one thread. The
 * oracle for the fast kernels in batchnorm.c. */

#include "kernels/batchnorm.h"

#include <string.h>

// x (N,C,S); mean, var (C), overwritten
void rt_bn_stats_ref(const float *x, int64_t N, int64_t C, int64_t S, float *mean, float *var) {
    const double M = (double)(N * S);
    for (int64_t c = 0; c < C; c++) {
        double sum = 0, sq = 0;
        for (int64_t n = 0; n < N; n++)
            for (int64_t s = 0; s < S; s++) sum += x[(n * C + c) * S + s];
        double m = sum / M;
        for (int64_t n = 0; n < N; n++)
            for (int64_t s = 0; s < S; s++) {
                double d = x[(n * C + c) * S + s] - m;
                sq += d * d;
            }
        mean[c] = (float)m;
        var[c] = (float)(sq / M);
    }
}

// x, y (N,C,S); mean, invstd, gamma, beta (C); y overwritten
void rt_bn_apply_ref(const float *x, const float *mean, const float *invstd, const float *gamma, const float *beta,
                     int64_t N, int64_t C, int64_t S, float *y) {
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t s = 0; s < S; s++) {
                int64_t i = (n * C + c) * S + s;
                double xhat = ((double)x[i] - mean[c]) * invstd[c];
                y[i] = (float)(xhat * (gamma ? gamma[c] : 1.0) + (beta ? beta[c] : 0.0));
            }
}

// dy, x, dx (N,C,S); mean, invstd, gamma, dgamma, dbeta (C); accumulates
void rt_bn_backward_ref(const float *dy, const float *x, const float *mean, const float *invstd, const float *gamma,
                        int batch_stats, int64_t N, int64_t C, int64_t S, float *dx, float *dgamma, float *dbeta) {
    const double M = (double)(N * S);
    for (int64_t c = 0; c < C; c++) {
        double g = gamma ? gamma[c] : 1.0, is = invstd[c], sum_dy = 0, sum_dyxhat = 0;
        for (int64_t n = 0; n < N; n++)
            for (int64_t s = 0; s < S; s++) {
                int64_t i = (n * C + c) * S + s;
                sum_dy += dy[i];
                sum_dyxhat += dy[i] * (((double)x[i] - mean[c]) * is);
            }
        if (dgamma) dgamma[c] += (float)sum_dyxhat;
        if (dbeta) dbeta[c] += (float)sum_dy;
        if (!dx) continue;
        for (int64_t n = 0; n < N; n++)
            for (int64_t s = 0; s < S; s++) {
                int64_t i = (n * C + c) * S + s;
                double xhat = ((double)x[i] - mean[c]) * is, d = dy[i];
                if (batch_stats) d = d - sum_dy / M - xhat * sum_dyxhat / M;
                dx[i] += (float)(g * is * d);
            }
    }
}

// x, r, y (N,C,S); mean, invstd, gamma, beta (C); y overwritten (may be x); mask written when relu and non-NULL
void rt_bn_act_apply_ref(const float *x, const float *r, const float *mean, const float *invstd, const float *gamma,
                         const float *beta, int relu, int64_t N, int64_t C, int64_t S, float *y, uint8_t *mask) {
    const int64_t MB = RT_BN_MASK_ROW_BYTES(S);
    if (relu && mask) memset(mask, 0, (size_t)(N * C * MB));
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t s = 0; s < S; s++) {
                int64_t i = (n * C + c) * S + s;
                double v = ((double)x[i] - mean[c]) * invstd[c] * (gamma ? gamma[c] : 1.0) + (beta ? beta[c] : 0.0);
                if (r) v += r[i];
                y[i] = (float)(relu && !(v > 0) ? 0.0 : v);
                if (relu && mask && y[i] > 0) mask[(n * C + c) * MB + s / 8] |= (uint8_t)(1u << (s % 8));
            }
}

// dy, x, dx, dr (N,C,S); mask (N*C rows of bits); mean, invstd, gamma, dgamma, dbeta (C); accumulates
void rt_bn_act_backward_ref(const float *dy, const float *x, const uint8_t *mask, const float *mean,
                            const float *invstd, const float *gamma, int batch_stats, int relu, int64_t N, int64_t C,
                            int64_t S, float *dx, float *dgamma, float *dbeta, float *dr) {
    const double M = (double)(N * S);
    const int64_t MB = RT_BN_MASK_ROW_BYTES(S);
    for (int64_t c = 0; c < C; c++) {
        double g = gamma ? gamma[c] : 1.0, is = invstd[c], sum_dz = 0, sum_dzxhat = 0;
        for (int64_t n = 0; n < N; n++)
            for (int64_t s = 0; s < S; s++) {
                int64_t i = (n * C + c) * S + s;
                int on = !relu || (mask[(n * C + c) * MB + s / 8] >> (s % 8) & 1);
                double dz = on ? dy[i] : 0.0;
                sum_dz += dz;
                sum_dzxhat += dz * (((double)x[i] - mean[c]) * is);
            }
        if (dgamma) dgamma[c] += (float)sum_dzxhat;
        if (dbeta) dbeta[c] += (float)sum_dz;
        for (int64_t n = 0; n < N; n++)
            for (int64_t s = 0; s < S; s++) {
                int64_t i = (n * C + c) * S + s;
                int on = !relu || (mask[(n * C + c) * MB + s / 8] >> (s % 8) & 1);
                double dz = on ? dy[i] : 0.0;
                if (dr) dr[i] = (float)(dr[i] + dz);
                if (!dx) continue;
                double xhat = ((double)x[i] - mean[c]) * is, d = dz;
                if (batch_stats) d = d - sum_dz / M - xhat * sum_dzxhat / M;
                dx[i] = (float)(dx[i] + g * is * d);
            }
    }
}
