/* Batch-norm kernels, the fast path: the dispatchers, which pick the AVX-512, AVX2 or scalar
 * instance of batchnorm_simd.h by rt_cpu_isa(), and that scalar instance itself. */
#include "kernels/batchnorm.h"

#include "kernels/cpu.h"

typedef float vf;
#define VW 1
#define VZERO() 0.0f
#define VLOAD(p) (*(p))
#define VSTORE(p, v) (*(p) = (v))
#define VSET1(x) (x)
#define VADD(a, b) ((a) + (b))
#define VSUB(a, b) ((a) - (b))
#define VFMA(a, b, c) ((a) * (b) + (c))
#define VRELU(v) ((v) > 0.0f ? (v) : 0.0f)
#define VPOSBITS(v) ((v) > 0.0f ? 1u : 0u)
#define VKEEPBITS(d, bits) ((bits) ? (d) : 0.0f)
#define VHSUM(v) (v)
#define SFX(name) name##_generic

#include "kernels/batchnorm_simd.h"

void rt_bn_stats(const float *x, int64_t N, int64_t C, int64_t S, float *mean, float *var) {
    switch (rt_cpu_isa()) {
    case RT_ISA_AVX512:
        rt_bn_stats_avx512(x, N, C, S, mean, var);
        break;
    case RT_ISA_AVX2:
        rt_bn_stats_avx2(x, N, C, S, mean, var);
        break;
    default:
        rt_bn_stats_generic(x, N, C, S, mean, var);
    }
}

void rt_bn_act_train(const float *x, const float *r, const float *gamma, const float *beta, float eps, int relu,
                     int64_t N, int64_t C, int64_t S, float *mean, float *var, float *invstd, float *y, uint8_t *mask) {
    switch (rt_cpu_isa()) {
    case RT_ISA_AVX512:
        rt_bn_act_train_avx512(x, r, gamma, beta, eps, relu, N, C, S, mean, var, invstd, y, mask);
        break;
    case RT_ISA_AVX2:
        rt_bn_act_train_avx2(x, r, gamma, beta, eps, relu, N, C, S, mean, var, invstd, y, mask);
        break;
    default:
        rt_bn_act_train_generic(x, r, gamma, beta, eps, relu, N, C, S, mean, var, invstd, y, mask);
    }
}

void rt_bn_act_apply(const float *x, const float *r, const float *mean, const float *invstd, const float *gamma,
                     const float *beta, int relu, int64_t N, int64_t C, int64_t S, float *y, uint8_t *mask) {
    switch (rt_cpu_isa()) {
    case RT_ISA_AVX512:
        rt_bn_act_apply_avx512(x, r, mean, invstd, gamma, beta, relu, N, C, S, y, mask);
        break;
    case RT_ISA_AVX2:
        rt_bn_act_apply_avx2(x, r, mean, invstd, gamma, beta, relu, N, C, S, y, mask);
        break;
    default:
        rt_bn_act_apply_generic(x, r, mean, invstd, gamma, beta, relu, N, C, S, y, mask);
    }
}

void rt_bn_act_backward(const float *dy, const float *x, const uint8_t *mask, const float *mean, const float *invstd,
                        const float *gamma, int batch_stats, int relu, int64_t N, int64_t C, int64_t S, float *dx,
                        float *dgamma, float *dbeta, float *dr) {
    rt_bn_act_backward_ex(dy, x, mask, mean, invstd, gamma, batch_stats, relu, N, C, S, dx, dgamma, dbeta, dr, 0);
}

void rt_bn_act_backward_ex(const float *dy, const float *x, const uint8_t *mask, const float *mean, const float *invstd,
                           const float *gamma, int batch_stats, int relu, int64_t N, int64_t C, int64_t S, float *dx,
                           float *dgamma, float *dbeta, float *dr, int set) {
    if (dx && dx == dr) set &= 2;
    switch (rt_cpu_isa()) {
    case RT_ISA_AVX512:
        rt_bn_act_backward_avx512(dy, x, mask, mean, invstd, gamma, batch_stats, relu, N, C, S, dx, dgamma, dbeta, dr,
                                  set);
        break;
    case RT_ISA_AVX2:
        rt_bn_act_backward_avx2(dy, x, mask, mean, invstd, gamma, batch_stats, relu, N, C, S, dx, dgamma, dbeta, dr,
                                set);
        break;
    default:
        rt_bn_act_backward_generic(dy, x, mask, mean, invstd, gamma, batch_stats, relu, N, C, S, dx, dgamma, dbeta, dr,
                                   set);
    }
}

void rt_bn_apply(const float *x, const float *mean, const float *invstd, const float *gamma, const float *beta,
                 int64_t N, int64_t C, int64_t S, float *y) {
    rt_bn_act_apply(x, NULL, mean, invstd, gamma, beta, 0, N, C, S, y, NULL);
}

void rt_bn_backward(const float *dy, const float *x, const float *mean, const float *invstd, const float *gamma,
                    int batch_stats, int64_t N, int64_t C, int64_t S, float *dx, float *dgamma, float *dbeta) {
    rt_bn_act_backward(dy, x, NULL, mean, invstd, gamma, batch_stats, 0, N, C, S, dx, dgamma, dbeta, NULL);
}
