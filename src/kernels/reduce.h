/* Reduction and normaliser kernels along one dim. A tensor reduced along dim d is seen as
 * (outer, D, inner): outer = product of the dims before d, D = size of d, inner = product after.
 * Sums accumulate in double; each parallel task owns whole output elements, so the bits do not
 * depend on the thread count. The _ref kernels are plain strided loops in double: the oracle. */
#ifndef RT_KERNELS_REDUCE_H
#define RT_KERNELS_REDUCE_H
#include <math.h>
#include <stdint.h>
#include <string.h>

/* exp(x) for softmax's shifted logits and log-probabilities (x <= 0), in plain arithmetic that
 * compilers vectorise at the baseline ISA: x = n ln2 + r, exp(r) by Cephes' polynomial, 2^n
 * through the exponent bits. Within 1.5 ulp of exp on [-87.34, 88]; 0 outside (below, exp leaves
 * the normal floats); NaN stays NaN. Out-of-range inputs are masked with integer ops, not
 * branches: GCC turns float selects into control flow and then does not vectorise the loop. The
 * rounding trick below needs IEEE float arithmetic (no -ffast-math, which would fold it away). */
static inline float rt_expf_nonpos(float x) {
    uint32_t valid = -((uint32_t)(x >= -87.33654f) & (uint32_t)(x <= 88.0f)), xb, v87;
    const float m87 = -87.0f;
    memcpy(&xb, &x, sizeof xb);
    memcpy(&v87, &m87, sizeof v87);
    xb = (xb & valid) | (v87 & ~valid); /* out of range (or NaN): compute exp(-87), masked below */
    float xc;
    memcpy(&xc, &xb, sizeof xc);
    float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round(x / ln2) */
    float r = xc - n * 0.693359375f;                                   /* ln2 in two parts (Cody-Waite) */
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale, v;
    memcpy(&scale, &bits, sizeof scale);
    v = p * scale;
    uint32_t vb;
    memcpy(&vb, &v, sizeof vb);
    vb &= valid;
    memcpy(&v, &vb, sizeof v);
    return v + (x == x ? 0.0f : NAN);
}

/* x (outer,D,inner), y (outer,inner): y = scale * sum over D (scale 1/D: the mean); overwrites y. */
void rt_reduce_sum_forward(int64_t outer, int64_t D, int64_t inner, double scale, float *y, const float *x);
void rt_reduce_sum_forward_ref(int64_t outer, int64_t D, int64_t inner, double scale, float *y, const float *x);
/* gy (outer,inner), gx (outer,D,inner): gx += scale * gy, repeated along D. */
void rt_reduce_sum_backward(int64_t outer, int64_t D, int64_t inner, float scale, float *gx, const float *gy);
void rt_reduce_sum_backward_ref(int64_t outer, int64_t D, int64_t inner, float scale, float *gx, const float *gy);

/* y = scale * sum over D of x^2 (overwrites y); gx += 2 x scale gy (overwrite: gx =, the first
 * gradient of a pass; gx's old contents are not read). */
void rt_reduce_sumsq_forward(int64_t outer, int64_t D, int64_t inner, double scale, float *y, const float *x);
void rt_reduce_sumsq_forward_ref(int64_t outer, int64_t D, int64_t inner, double scale, float *y, const float *x);
void rt_reduce_sumsq_backward(int64_t outer, int64_t D, int64_t inner, float scale, float *gx, const float *gy,
                              const float *x, int overwrite);
void rt_reduce_sumsq_backward_ref(int64_t outer, int64_t D, int64_t inner, float scale, float *gx, const float *gy,
                                  const float *x);

/* x (outer,D,inner), y and idx (outer,inner): max along D and its first index (NaN wins); D >= 1.
 * Overwrites y and idx. */
void rt_reduce_max_forward(int64_t outer, int64_t D, int64_t inner, float *y, int64_t *idx, const float *x);
void rt_reduce_max_forward_ref(int64_t outer, int64_t D, int64_t inner, float *y, int64_t *idx, const float *x);
/* gy, idx (outer,inner), gx (outer,D,inner): gx[o, idx, i] += gy[o, i]. */
void rt_reduce_max_backward(int64_t outer, int64_t D, int64_t inner, float *gx, const float *gy, const int64_t *idx);
void rt_reduce_max_backward_ref(int64_t outer, int64_t D, int64_t inner, float *gx, const float *gy,
                                const int64_t *idx);

/* x (n): the sum in double, in fixed blocks that depend on n only. */
double rt_sum_all_f64(int64_t n, const float *x);

/* x, y (outer,D,inner): y = softmax(x * invT) along D, or log_softmax when lg; overwrites y. Stable:
 * the max along D is subtracted first. */
void rt_softmax_forward(int64_t outer, int64_t D, int64_t inner, float invT, int lg, float *y, const float *x);
void rt_softmax_forward_ref(int64_t outer, int64_t D, int64_t inner, float invT, int lg, float *y, const float *x);
/* gy, y (outer,D,inner) with y the forward's output, gx (outer,D,inner): gx += dL/dx. */
void rt_softmax_backward(int64_t outer, int64_t D, int64_t inner, float invT, int lg, float *gx, const float *gy,
                         const float *y);
void rt_softmax_backward_ref(int64_t outer, int64_t D, int64_t inner, float invT, int lg, float *gx, const float *gy,
                             const float *y);

/* x, y (outer,D,inner), norm (outer,inner): norm = ||x||_2 along D, y = x / max(norm, eps);
 * overwrites y and norm. */
void rt_l2norm_forward(int64_t outer, int64_t D, int64_t inner, float eps, float *y, float *norm, const float *x);
void rt_l2norm_forward_ref(int64_t outer, int64_t D, int64_t inner, float eps, float *y, float *norm, const float *x);
/* gy, y (outer,D,inner), norm (outer,inner) from the forward, gx (outer,D,inner): gx += dL/dx.
 * As F.normalize: where norm < eps the divisor is the constant eps. */
void rt_l2norm_backward(int64_t outer, int64_t D, int64_t inner, float eps, float *gx, const float *gy, const float *y,
                        const float *norm);
void rt_l2norm_backward_ref(int64_t outer, int64_t D, int64_t inner, float eps, float *gx, const float *gy,
                            const float *y, const float *norm);

#endif
