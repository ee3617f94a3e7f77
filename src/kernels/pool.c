/* Pooling and resizing kernels (see pool.h): direct loops per plane, threaded over planes. */
#include "kernels/pool.h"

#include <math.h>

/* Below this many input elements a kernel runs on one thread: a parallel region costs more than the
 * loop (a global average pool of a (64,64,8,8) batch is 262144 additions) */
#define POOL_PAR_MIN 65536

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
/* elements a kernel over P planes of in-size a and out-size b touches per side, at most */
static int64_t work(int64_t P, int64_t a, int64_t b) { return P * max64(a, b); }

int rt_pool2d_shape_finish(rt_pool2d_shape *s) {
    if (s->P < 0 || s->H <= 0 || s->W <= 0 || s->KH <= 0 || s->KW <= 0 || s->sh <= 0 || s->sw <= 0 || s->ph < 0 ||
        s->pw < 0 || s->ph > s->KH / 2 || s->pw > s->KW / 2)
        return -1;
    int64_t eh = s->H + 2 * s->ph - s->KH, ew = s->W + 2 * s->pw - s->KW;
    if (eh < 0 || ew < 0) return -1;
    s->OH = eh / s->sh + 1;
    s->OW = ew / s->sw + 1;
    return 0;
}

/* The input range [*i0, *i1) under output position o's window along one axis (stride, padding,
 * kernel size k, input size n), clipped to the input: the padding contributes no taps. */
static inline void window(int64_t o, int64_t stride, int64_t pad, int64_t k, int64_t n, int64_t *i0, int64_t *i1) {
    int64_t start = o * stride - pad;
    *i0 = max64(start, 0);
    *i1 = min64(start + k, n);
}

/* ---- max pooling ---- */

// in (P,H,W), out (P,OH,OW), argmax (P,OH,OW) or NULL; overwrites out and argmax
void rt_maxpool2d_forward(const rt_pool2d_shape *s, float *out, int32_t *argmax, const float *in) {
    int64_t HW = s->H * s->W, OHW = s->OH * s->OW;
#pragma omp parallel for schedule(static) if (s->P * s->H * s->W > POOL_PAR_MIN) /* over planes */
    for (int64_t p = 0; p < s->P; p++) {
        const float *ip = in + p * HW;
        for (int64_t oh = 0; oh < s->OH; oh++) {
            int64_t h0, h1;
            window(oh, s->sh, s->ph, s->KH, s->H, &h0, &h1);
            for (int64_t ow = 0; ow < s->OW; ow++) {
                int64_t w0, w1;
                window(ow, s->sw, s->pw, s->KW, s->W, &w0, &w1);
                float m = -INFINITY;
                int64_t mi = h0 * s->W + w0;
                for (int64_t ih = h0; ih < h1; ih++)
                    for (int64_t iw = w0; iw < w1; iw++) {
                        float v = ip[ih * s->W + iw];
                        if (v > m || isnan(v)) { /* strict: the first maximum wins */
                            m = v;
                            mi = ih * s->W + iw;
                        }
                    }
                out[p * OHW + oh * s->OW + ow] = m;
                if (argmax) argmax[p * OHW + oh * s->OW + ow] = (int32_t)mi;
            }
        }
    }
}

// gout (P,OH,OW), argmax (P,OH,OW), gin (P,H,W); accumulates into gin
void rt_maxpool2d_backward(const rt_pool2d_shape *s, float *gin, const float *gout, const int32_t *argmax) {
    int64_t HW = s->H * s->W, OHW = s->OH * s->OW;
/* over planes: overlapping windows stay in one thread */
#pragma omp parallel for schedule(static) if (s->P * s->H * s->W > POOL_PAR_MIN)
    for (int64_t p = 0; p < s->P; p++)
        for (int64_t i = 0; i < OHW; i++) gin[p * HW + argmax[p * OHW + i]] += gout[p * OHW + i];
}

/* ---- average pooling (count_include_pad) ---- */

// in (P,H,W), out (P,OH,OW); overwrites out
void rt_avgpool2d_forward(const rt_pool2d_shape *s, float *out, const float *in) {
    int64_t HW = s->H * s->W, OHW = s->OH * s->OW;
    float div = (float)(s->KH * s->KW); /* without ceil_mode no window leaves the padded input */
#pragma omp parallel for schedule(static) if (s->P * s->H * s->W > POOL_PAR_MIN) /* over planes */
    for (int64_t p = 0; p < s->P; p++) {
        const float *ip = in + p * HW;
        for (int64_t oh = 0; oh < s->OH; oh++) {
            int64_t h0, h1;
            window(oh, s->sh, s->ph, s->KH, s->H, &h0, &h1);
            for (int64_t ow = 0; ow < s->OW; ow++) {
                int64_t w0, w1;
                window(ow, s->sw, s->pw, s->KW, s->W, &w0, &w1);
                float sum = 0;
                for (int64_t ih = h0; ih < h1; ih++)
                    for (int64_t iw = w0; iw < w1; iw++) sum += ip[ih * s->W + iw];
                out[p * OHW + oh * s->OW + ow] = sum / div;
            }
        }
    }
}

// gout (P,OH,OW), gin (P,H,W); accumulates into gin
void rt_avgpool2d_backward(const rt_pool2d_shape *s, float *gin, const float *gout) {
    int64_t HW = s->H * s->W, OHW = s->OH * s->OW;
    float div = (float)(s->KH * s->KW);
#pragma omp parallel for schedule(static) if (s->P * s->H * s->W > POOL_PAR_MIN) /* over planes */
    for (int64_t p = 0; p < s->P; p++) {
        float *gp = gin + p * HW;
        for (int64_t oh = 0; oh < s->OH; oh++) {
            int64_t h0, h1;
            window(oh, s->sh, s->ph, s->KH, s->H, &h0, &h1);
            for (int64_t ow = 0; ow < s->OW; ow++) {
                int64_t w0, w1;
                window(ow, s->sw, s->pw, s->KW, s->W, &w0, &w1);
                float g = gout[p * OHW + oh * s->OW + ow] / div;
                for (int64_t ih = h0; ih < h1; ih++)
                    for (int64_t iw = w0; iw < w1; iw++) gp[ih * s->W + iw] += g;
            }
        }
    }
}

/* ---- adaptive average pooling ---- */

static int64_t ad_start(int64_t o, int64_t in, int64_t on) { return o * in / on; }
static int64_t ad_end(int64_t o, int64_t in, int64_t on) { return ((o + 1) * in + on - 1) / on; }

// in (P,H,W), out (P,OH,OW); overwrites out
void rt_adaptive_avgpool2d_forward(int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW, float *out,
                                   const float *in) {
    if (OH == 1 && OW == 1) { /* global average pooling: one contiguous sum per plane, in vector lanes */
        const int64_t HW = H * W;
#pragma omp parallel for schedule(static) if (P * HW > POOL_PAR_MIN) /* over planes */
        for (int64_t p = 0; p < P; p++) {
            const float *ip = in + p * HW;
            float sum = 0;
#pragma omp simd reduction(+ : sum)
            for (int64_t i = 0; i < HW; i++) sum += ip[i];
            out[p] = sum / (float)HW;
        }
        return;
    }
#pragma omp parallel for schedule(static) if (work(P, H * W, OH * OW) > POOL_PAR_MIN) /* over planes */
    for (int64_t p = 0; p < P; p++) {
        const float *ip = in + p * H * W;
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t h0 = ad_start(oh, H, OH), h1 = ad_end(oh, H, OH);
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t w0 = ad_start(ow, W, OW), w1 = ad_end(ow, W, OW);
                float sum = 0;
                for (int64_t ih = h0; ih < h1; ih++)
                    for (int64_t iw = w0; iw < w1; iw++) sum += ip[ih * W + iw];
                out[(p * OH + oh) * OW + ow] = sum / (float)((h1 - h0) * (w1 - w0));
            }
        }
    }
}

// gout (P,OH,OW), gin (P,H,W); accumulates into gin
void rt_adaptive_avgpool2d_backward(int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW, float *gin,
                                    const float *gout) {
#pragma omp parallel for schedule(static) if (work(P, H * W, OH * OW) > POOL_PAR_MIN) /* over planes */
    for (int64_t p = 0; p < P; p++) {
        float *gp = gin + p * H * W;
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t h0 = ad_start(oh, H, OH), h1 = ad_end(oh, H, OH);
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t w0 = ad_start(ow, W, OW), w1 = ad_end(ow, W, OW);
                float g = gout[(p * OH + oh) * OW + ow] / (float)((h1 - h0) * (w1 - w0));
                for (int64_t ih = h0; ih < h1; ih++)
                    for (int64_t iw = w0; iw < w1; iw++) gp[ih * W + iw] += g;
            }
        }
    }
}

/* ---- nearest ---- */

/* PyTorch's nearest_idx: the scale is a float, the index floor(o * scale) clamped to the input. */
static int64_t nearest_src(int64_t o, int64_t in, int64_t on) {
    if (on == in) return o;
    if (on == 2 * in) return o >> 1;
    float scale = (float)in / (float)on;
    return min64((int64_t)floorf((float)o * scale), in - 1);
}

// in (P,H,W), out (P,OH,OW); overwrites out
void rt_resize_nearest_forward(int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW, float *out, const float *in) {
#pragma omp parallel for schedule(static) if (work(P, H * W, OH * OW) > POOL_PAR_MIN) /* over planes */
    for (int64_t p = 0; p < P; p++)
        for (int64_t oh = 0; oh < OH; oh++) {
            const float *ip = in + (p * H + nearest_src(oh, H, OH)) * W;
            float *op = out + (p * OH + oh) * OW;
            for (int64_t ow = 0; ow < OW; ow++) op[ow] = ip[nearest_src(ow, W, OW)];
        }
}

// gout (P,OH,OW), gin (P,H,W); accumulates into gin
void rt_resize_nearest_backward(int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW, float *gin,
                                const float *gout) {
#pragma omp parallel for schedule(static) if (work(P, H * W, OH * OW) > POOL_PAR_MIN) /* over planes */
    for (int64_t p = 0; p < P; p++)
        for (int64_t oh = 0; oh < OH; oh++) {
            float *gp = gin + (p * H + nearest_src(oh, H, OH)) * W;
            const float *g = gout + (p * OH + oh) * OW;
            for (int64_t ow = 0; ow < OW; ow++) gp[nearest_src(ow, W, OW)] += g[ow];
        }
}

/* ---- bilinear ---- */

/* Source taps and weights along one axis, as PyTorch's compute_indices_weights_linear: output o
 * reads i0 with weight l0 and i1 with weight l1. */
static void linear_taps(int64_t o, int64_t in, int64_t on, int align, int64_t *i0, int64_t *i1, float *l0, float *l1) {
    float src;
    if (align) {
        float scale = on > 1 ? (float)(in - 1) / (float)(on - 1) : 0.0f;
        src = scale * (float)o;
    } else {
        float scale = (float)in / (float)on;
        src = (float)((double)scale * ((double)o + 0.5) - 0.5);
        if (src < 0) src = 0;
    }
    int64_t a = (int64_t)src;
    if (a > in - 1) a = in - 1;
    float l = src - (float)a;
    if (l > 1) l = 1;
    *i0 = a;
    *i1 = a < in - 1 ? a + 1 : a;
    *l1 = l;
    *l0 = 1 - l;
}

// in (P,H,W), out (P,OH,OW); overwrites out
void rt_resize_bilinear_forward(int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW, int align_corners, float *out,
                                const float *in) {
#pragma omp parallel for schedule(static) if (work(P, H * W, OH * OW) > POOL_PAR_MIN) /* over planes */
    for (int64_t p = 0; p < P; p++)
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t h0, h1;
            float a0, a1;
            linear_taps(oh, H, OH, align_corners, &h0, &h1, &a0, &a1);
            const float *r0 = in + (p * H + h0) * W, *r1 = in + (p * H + h1) * W;
            float *op = out + (p * OH + oh) * OW;
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t w0, w1;
                float b0, b1;
                linear_taps(ow, W, OW, align_corners, &w0, &w1, &b0, &b1);
                op[ow] = a0 * (b0 * r0[w0] + b1 * r0[w1]) + a1 * (b0 * r1[w0] + b1 * r1[w1]);
            }
        }
}

// gout (P,OH,OW), gin (P,H,W); accumulates into gin
void rt_resize_bilinear_backward(int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW, int align_corners, float *gin,
                                 const float *gout) {
#pragma omp parallel for schedule(static) if (work(P, H * W, OH * OW) > POOL_PAR_MIN) /* over planes */
    for (int64_t p = 0; p < P; p++)
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t h0, h1;
            float a0, a1;
            linear_taps(oh, H, OH, align_corners, &h0, &h1, &a0, &a1);
            float *r0 = gin + (p * H + h0) * W, *r1 = gin + (p * H + h1) * W;
            const float *g = gout + (p * OH + oh) * OW;
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t w0, w1;
                float b0, b1;
                linear_taps(ow, W, OW, align_corners, &w0, &w1, &b0, &b1);
                r0[w0] += a0 * b0 * g[ow];
                r0[w1] += a0 * b1 * g[ow];
                r1[w0] += a1 * b0 * g[ow];
                r1[w1] += a1 * b1 * g[ow];
            }
        }
}
