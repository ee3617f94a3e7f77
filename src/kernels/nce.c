/* NCE kernels for CRD; see nce.h. The fast kernels work in float with SIMD dot products, the
 * reference kernels in double with plain loops. */
#include "kernels/nce.h"

#include <math.h>
#include <string.h>

#define RT_NCE_PAR_MIN (1 << 15) /* multiply-adds below which threads cost more than they save */

void rt_nce_scores(int64_t B, int64_t K1, int64_t D, const float *mem, const float *v, const int64_t *idx, float T,
                   float *e) {
    const float inv = 1.0f / T;
#pragma omp parallel for schedule(static) if (B * K1 * D > RT_NCE_PAR_MIN) /* over samples */
    for (int64_t b = 0; b < B; b++) {
        const float *vb = v + b * D;
        for (int64_t k = 0; k < K1; k++) {
            const float *r = mem + idx[b * K1 + k] * D;
            float s = 0;
#pragma omp simd reduction(+ : s)
            for (int64_t d = 0; d < D; d++) s += r[d] * vb[d];
            e[b * K1 + k] = expf(s * inv);
        }
    }
}

void rt_nce_scores_ref(int64_t B, int64_t K1, int64_t D, const float *mem, const float *v, const int64_t *idx, float T,
                       float *e) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t k = 0; k < K1; k++) {
            double s = 0;
            for (int64_t d = 0; d < D; d++) s += (double)mem[idx[b * K1 + k] * D + d] * v[b * D + d];
            e[b * K1 + k] = (float)exp(s / T);
        }
}

void rt_nce_loss(int64_t B, int64_t K1, const float *e, double Z, double mpn, double eps, double T, double *loss,
                 float *ds) {
    const double c = mpn + eps, logm = log(mpn);
#pragma omp parallel for schedule(static) if (B * K1 > RT_NCE_PAR_MIN) /* over samples */
    for (int64_t b = 0; b < B; b++) {
        const float *eb = e + b * K1;
        double p = eb[0] / Z, l = -(log(p) - log(p + c));
        if (ds) ds[b * K1] = (float)(-c / ((p + c) * T));
        for (int64_t k = 1; k < K1; k++) {
            p = eb[k] / Z;
            l -= logm - log(p + c);
            if (ds) ds[b * K1 + k] = (float)(p / ((p + c) * T));
        }
        loss[b] = l;
    }
}

void rt_nce_gather(int64_t B, int64_t K1, int64_t D, const float *ds, const float *mem, const int64_t *idx, float scale,
                   float *gv) {
#pragma omp parallel for schedule(static) if (B * K1 * D > RT_NCE_PAR_MIN) /* over samples */
    for (int64_t b = 0; b < B; b++) {
        float *g = gv + b * D;
        memset(g, 0, (size_t)D * sizeof(float));
        for (int64_t k = 0; k < K1; k++) {
            const float *r = mem + idx[b * K1 + k] * D;
            const float w = ds[b * K1 + k] * scale;
#pragma omp simd
            for (int64_t d = 0; d < D; d++) g[d] += w * r[d];
        }
    }
}

void rt_nce_gather_ref(int64_t B, int64_t K1, int64_t D, const float *ds, const float *mem, const int64_t *idx,
                       float scale, float *gv) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t d = 0; d < D; d++) {
            double s = 0;
            for (int64_t k = 0; k < K1; k++) s += (double)ds[b * K1 + k] * mem[idx[b * K1 + k] * D + d];
            gv[b * D + d] = (float)(s * scale);
        }
}

void rt_nce_memory_update(int64_t B, int64_t D, float *mem, const float *v, const int64_t *y, float m, float *work) {
    for (int64_t b = 0; b < B; b++) {
        const float *r = mem + y[b] * D;
        float *w = work + b * D;
        double n = 0;
        for (int64_t d = 0; d < D; d++) {
            w[d] = r[d] * m + v[b * D + d] * (1.0f - m);
            n += (double)w[d] * w[d];
        }
        float nf = (float)sqrt(n);
        if (nf > 0)
            for (int64_t d = 0; d < D; d++) w[d] /= nf;
    }
    for (int64_t b = 0; b < B; b++) memcpy(mem + y[b] * D, work + b * D, (size_t)D * sizeof(float));
}
