/* Loss kernels: numerically stable log-softmax cross-entropy (hard and soft labels), KL divergence
 * and the pointwise regression losses. OpenMP over the batch; each row in a fixed order. */
#include <math.h>

#include "kernels/loss.h"

/* Below this many elements a kernel runs on one thread. */
#define LOSS_OMP_MIN 32768

/* log(sum_k exp(z_k)) of one row, shifted by its max: no overflow for any finite logits */
static double row_lse(const float *z, int64_t K) {
    float m = z[0];
    for (int64_t k = 1; k < K; k++) m = z[k] > m ? z[k] : m;
    double s = 0;
    for (int64_t k = 0; k < K; k++) s += exp((double)z[k] - m);
    return m + log(s);
}

// logits (B,K), labels (B); per, lse (B) overwritten
void rt_ce_forward(const float *logits, const int32_t *labels, float smoothing, int64_t B, int64_t K, double *per,
                   float *lse) {
#pragma omp parallel for schedule(static) if (B * K > LOSS_OMP_MIN) /* over samples */
    for (int64_t i = 0; i < B; i++) {
        const float *z = logits + i * K;
        double l = row_lse(z, K), loss = (1.0 - smoothing) * (l - z[labels[i]]);
        if (smoothing != 0) { /* -mean_k logp_k = lse - mean_k z_k */
            double sz = 0;
            for (int64_t k = 0; k < K; k++) sz += z[k];
            loss += smoothing * (l - sz / (double)K);
        }
        per[i] = loss;
        lse[i] = (float)l;
    }
}

// logits, dlogits (B,K); labels, lse, g (B); accumulates
void rt_ce_backward(const float *logits, const int32_t *labels, const float *lse, float smoothing, const float *g,
                    int64_t B, int64_t K, float *dlogits) {
#pragma omp parallel for schedule(static) if (B * K > LOSS_OMP_MIN) /* over samples */
    for (int64_t i = 0; i < B; i++) {
        const float *z = logits + i * K;
        float *dz = dlogits + i * K;
        /* d/dz_k = softmax_k - eps/K - (1-eps) [k == label] */
        const float gi = g[i], u = smoothing / (float)K;
        for (int64_t k = 0; k < K; k++) dz[k] += gi * (expf(z[k] - lse[i]) - u);
        dz[labels[i]] -= gi * (1.0f - smoothing);
    }
}

// logits, target (B,K); per, lse (B) overwritten
void rt_soft_ce_forward(const float *logits, const float *target, int64_t B, int64_t K, double *per, float *lse) {
#pragma omp parallel for schedule(static) if (B * K > LOSS_OMP_MIN) /* over samples */
    for (int64_t i = 0; i < B; i++) {
        const float *z = logits + i * K, *t = target + i * K;
        double l = row_lse(z, K), loss = 0;
        for (int64_t k = 0; k < K; k++) loss += (double)t[k] * (l - z[k]);
        per[i] = loss;
        lse[i] = (float)l;
    }
}

// logits, target, dlogits, dtarget (B,K); lse, g (B); accumulates
void rt_soft_ce_backward(const float *logits, const float *target, const float *lse, const float *g, int64_t B,
                         int64_t K, float *dlogits, float *dtarget) {
#pragma omp parallel for schedule(static) if (B * K > LOSS_OMP_MIN) /* over samples */
    for (int64_t i = 0; i < B; i++) {
        const float *z = logits + i * K, *t = target + i * K;
        const float gi = g[i];
        if (dlogits) { /* d/dz_k = softmax_k * sum_j t_j - t_k (targets need not sum to 1) */
            double st = 0;
            for (int64_t k = 0; k < K; k++) st += t[k];
            float *dz = dlogits + i * K;
            for (int64_t k = 0; k < K; k++) dz[k] += gi * (expf(z[k] - lse[i]) * (float)st - t[k]);
        }
        if (dtarget) { /* d/dt_k = -logp_k */
            float *dt = dtarget + i * K;
            for (int64_t k = 0; k < K; k++) dt[k] += gi * (lse[i] - z[k]);
        }
    }
}

// logp, target (B,K); per (B) overwritten
void rt_kl_forward(const float *logp, const float *target, int64_t B, int64_t K, double *per) {
#pragma omp parallel for schedule(static) if (B * K > LOSS_OMP_MIN) /* over samples */
    for (int64_t i = 0; i < B; i++) {
        const float *x = logp + i * K, *t = target + i * K;
        double s = 0;
        for (int64_t k = 0; k < K; k++) {
            double tk = t[k];
            s += (tk > 0 ? tk * log(tk) : 0.0) - tk * x[k];
        }
        per[i] = s;
    }
}

// logp, target, dlogp, dtarget (B,K); g (B); accumulates
void rt_kl_backward(const float *logp, const float *target, const float *g, int64_t B, int64_t K, float *dlogp,
                    float *dtarget) {
#pragma omp parallel for schedule(static) if (B * K > LOSS_OMP_MIN) /* over samples */
    for (int64_t i = 0; i < B; i++) {
        const float *x = logp + i * K, *t = target + i * K;
        const float gi = g[i];
        if (dlogp) {
            float *dx = dlogp + i * K;
            for (int64_t k = 0; k < K; k++) dx[k] -= gi * t[k];
        }
        if (dtarget) {
            float *dt = dtarget + i * K;
            for (int64_t k = 0; k < K; k++) dt[k] += gi * ((t[k] > 0 ? logf(t[k]) + 1.0f : 0.0f) - x[k]);
        }
    }
}

/* element loss f(d) and its derivative f'(d) */
static inline double ploss_f(rt_ploss_kind kind, double p, double d) {
    double ad = fabs(d);
    switch (kind) {
    case RT_PLOSS_MSE:
        return d * d;
    case RT_PLOSS_L1:
        return ad;
    case RT_PLOSS_SMOOTH_L1:
        return ad < p ? 0.5 * d * d / p : ad - 0.5 * p;
    case RT_PLOSS_HUBER:
        return ad < p ? 0.5 * d * d : p * (ad - 0.5 * p);
    }
    return 0;
}
static inline float ploss_df(rt_ploss_kind kind, float p, float d) {
    float sg = (float)((d > 0) - (d < 0)), ad = fabsf(d);
    switch (kind) {
    case RT_PLOSS_MSE:
        return 2 * d;
    case RT_PLOSS_L1:
        return sg;
    case RT_PLOSS_SMOOTH_L1:
        return ad < p ? d / p : sg;
    case RT_PLOSS_HUBER:
        return ad < p ? d : p * sg;
    }
    return 0;
}

// a, b (B,D); per (B) overwritten
void rt_ploss_forward(rt_ploss_kind kind, float param, const float *a, const float *b, int64_t B, int64_t D,
                      double *per) {
#pragma omp parallel for schedule(static) if (B * D > LOSS_OMP_MIN) /* over samples */
    for (int64_t i = 0; i < B; i++) {
        double s = 0;
        for (int64_t j = i * D; j < (i + 1) * D; j++) s += ploss_f(kind, param, (double)(a[j] - b[j]));
        per[i] = s;
    }
}

// a, b, da, db (B,D); g (B); accumulates
void rt_ploss_backward(rt_ploss_kind kind, float param, const float *a, const float *b, const float *g, int64_t B,
                       int64_t D, float *da, float *db) {
#pragma omp parallel for schedule(static) if (B * D > LOSS_OMP_MIN) /* over samples */
    for (int64_t i = 0; i < B; i++)
        for (int64_t j = i * D; j < (i + 1) * D; j++) {
            float gd = g[i] * ploss_df(kind, param, a[j] - b[j]);
            if (da) da[j] += gd;
            if (db) db[j] -= gd;
        }
}
