/* Batch-norm kernels, the fast path: OpenMP over channels, one pass over a channel for its sums
 * (double accumulators in four fixed lanes, so the order never depends on the thread count). */
#include "kernels/batchnorm.h"

/* Below this many elements a kernel runs on one thread: the fork costs more than it saves. */
#define BN_OMP_MIN 32768

// x (N,C,S); mean, var (C), overwritten
void rt_bn_stats(const float *x, int64_t N, int64_t C, int64_t S, float *mean, float *var) {
    const int64_t M = N * S;
#pragma omp parallel for schedule(static) if (N * C * S > BN_OMP_MIN) /* over channels */
    for (int64_t c = 0; c < C; c++) {
        /* shifted sums: accumulating (x - k) with k a value of the channel keeps the one-pass
         * variance E[d^2] - E[d]^2 accurate even when |mean| >> std */
        const double k = x[c * S];
        double s1[4] = {0, 0, 0, 0}, s2[4] = {0, 0, 0, 0};
        for (int64_t n = 0; n < N; n++) {
            const float *p = x + (n * C + c) * S;
            int64_t s = 0;
            for (; s + 4 <= S; s += 4)
                for (int l = 0; l < 4; l++) {
                    double d = p[s + l] - k;
                    s1[l] += d;
                    s2[l] += d * d;
                }
            for (; s < S; s++) {
                double d = p[s] - k;
                s1[0] += d;
                s2[0] += d * d;
            }
        }
        double t1 = (s1[0] + s1[1]) + (s1[2] + s1[3]), t2 = (s2[0] + s2[1]) + (s2[2] + s2[3]);
        double m = t1 / (double)M, v = t2 / (double)M - m * m;
        mean[c] = (float)(k + m);
        var[c] = (float)(v > 0 ? v : 0);
    }
}

// x, y (N,C,S); mean, invstd, gamma, beta (C); y overwritten
void rt_bn_apply(const float *x, const float *mean, const float *invstd, const float *gamma, const float *beta,
                 int64_t N, int64_t C, int64_t S, float *y) {
#pragma omp parallel for schedule(static) if (N * C * S > BN_OMP_MIN) /* over channels */
    for (int64_t c = 0; c < C; c++) {
        const float m = mean[c], a = invstd[c] * (gamma ? gamma[c] : 1.0f), b = beta ? beta[c] : 0.0f;
        for (int64_t n = 0; n < N; n++) {
            const float *p = x + (n * C + c) * S;
            float *q = y + (n * C + c) * S;
            for (int64_t s = 0; s < S; s++) q[s] = (p[s] - m) * a + b;
        }
    }
}

// dy, x, dx (N,C,S); mean, invstd, gamma, dgamma, dbeta (C); accumulates
void rt_bn_backward(const float *dy, const float *x, const float *mean, const float *invstd, const float *gamma,
                    int batch_stats, int64_t N, int64_t C, int64_t S, float *dx, float *dgamma, float *dbeta) {
    const int64_t M = N * S;
    const int need_sums = dgamma || dbeta || (dx && batch_stats);
#pragma omp parallel for schedule(static) if (N * C * S > BN_OMP_MIN) /* over channels */
    for (int64_t c = 0; c < C; c++) {
        const float m = mean[c], is = invstd[c], g = gamma ? gamma[c] : 1.0f;
        double sum_dy = 0, sum_dyxhat = 0;
        if (need_sums) {
            double a1[4] = {0, 0, 0, 0}, a2[4] = {0, 0, 0, 0};
            for (int64_t n = 0; n < N; n++) {
                const float *p = x + (n * C + c) * S, *d = dy + (n * C + c) * S;
                int64_t s = 0;
                for (; s + 4 <= S; s += 4)
                    for (int l = 0; l < 4; l++) {
                        a1[l] += d[s + l];
                        a2[l] += (double)d[s + l] * (p[s + l] - m);
                    }
                for (; s < S; s++) {
                    a1[0] += d[s];
                    a2[0] += (double)d[s] * (p[s] - m);
                }
            }
            sum_dy = (a1[0] + a1[1]) + (a1[2] + a1[3]);
            sum_dyxhat = ((a2[0] + a2[1]) + (a2[2] + a2[3])) * is;
        }
        if (dgamma) dgamma[c] += (float)sum_dyxhat;
        if (dbeta) dbeta[c] += (float)sum_dy;
        if (!dx) continue;
        /* training: dx = g*is * (dy - mean(dy) - xhat * mean(dy*xhat)), xhat = (x - m) * is;
         * eval: dx = g*is * dy */
        const double gi = (double)g * is;
        const float ka = (float)gi;
        const float kb = batch_stats ? (float)(-gi * sum_dy / (double)M) : 0.0f;
        const float kc = batch_stats ? (float)(-gi * is * sum_dyxhat / (double)M) : 0.0f;
        for (int64_t n = 0; n < N; n++) {
            const float *p = x + (n * C + c) * S, *d = dy + (n * C + c) * S;
            float *q = dx + (n * C + c) * S;
            for (int64_t s = 0; s < S; s++) q[s] += ka * d[s] + kc * (p[s] - m) + kb;
        }
    }
}
