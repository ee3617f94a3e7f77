/* Optimiser update kernels (see optim.h). Element-wise, so any thread count gives the same bits;
 * small ranges stay on one thread, where the fork would cost more than the loop. */
#include "kernels/optim.h"

#include <math.h>

#define RT_OPTIM_PAR_MIN 32768

// p, g, buf (n). The four loops keep the flags out of the element loop so that it vectorises (omp
// simd: p, g and buf never overlap); no FMA contraction in this file's generic build, so the bits
// are those of the scalar formula.
void rt_sgd_update(float *p, const float *g, float *buf, int64_t n, float lr, float wd, float mu, int nesterov,
                   int first) {
    if (mu == 0.0f || !buf) {
#pragma omp parallel for simd schedule(static) if (n >= RT_OPTIM_PAR_MIN) /* over elements */
        for (int64_t i = 0; i < n; i++) p[i] -= lr * (g[i] + wd * p[i]);
        return;
    }
    if (first && nesterov) {
#pragma omp parallel for simd schedule(static) if (n >= RT_OPTIM_PAR_MIN) /* over elements */
        for (int64_t i = 0; i < n; i++) {
            float d = g[i] + wd * p[i];
            buf[i] = d;
            p[i] -= lr * (d + mu * d);
        }
    } else if (first) {
#pragma omp parallel for simd schedule(static) if (n >= RT_OPTIM_PAR_MIN) /* over elements */
        for (int64_t i = 0; i < n; i++) {
            float d = g[i] + wd * p[i];
            buf[i] = d;
            p[i] -= lr * d;
        }
    } else if (nesterov) {
#pragma omp parallel for simd schedule(static) if (n >= RT_OPTIM_PAR_MIN) /* over elements */
        for (int64_t i = 0; i < n; i++) {
            float d = g[i] + wd * p[i], b = mu * buf[i] + d;
            buf[i] = b;
            p[i] -= lr * (d + mu * b);
        }
    } else {
#pragma omp parallel for simd schedule(static) if (n >= RT_OPTIM_PAR_MIN) /* over elements */
        for (int64_t i = 0; i < n; i++) {
            float b = mu * buf[i] + (g[i] + wd * p[i]);
            buf[i] = b;
            p[i] -= lr * b;
        }
    }
}

// p, g, m, v (n)
void rt_adam_update(float *p, const float *g, float *m, float *v, int64_t n, float lr, float l2, float decoupled,
                    float b1, float b2, float eps, float step_size, float bc2_sqrt) {
    const float keep = 1.0f - lr * decoupled, a1 = 1.0f - b1, a2 = 1.0f - b2;
#pragma omp parallel for simd schedule(static) if (n >= RT_OPTIM_PAR_MIN) /* over elements */
    for (int64_t i = 0; i < n; i++) {
        float x = p[i];
        if (decoupled != 0.0f) x *= keep;
        float gi = g[i] + l2 * x;
        float mi = b1 * m[i] + a1 * gi;
        float vi = b2 * v[i] + a2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = x - step_size * (mi / (sqrtf(vi) / bc2_sqrt + eps));
    }
}
