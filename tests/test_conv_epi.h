/* The forward epilogue (rt_conv2d_forward_epi) against the reference forward followed by the
 * residual and ReLU in plain loops, for the three epilogues (residual + ReLU, ReLU, residual).
 * ref: the reference forward's output (with bias) for the same inputs; ws as for the forward.
 * Returns the largest error relative to each result's largest magnitude (rt_test_maxrel). */
#ifndef RT_TEST_CONV_EPI_H
#define RT_TEST_CONV_EPI_H
#include "kernels/conv.h"
#include "test_util.h"

static inline double rt_test_conv_epi_err(const rt_conv2d_shape *s, const float *in, const float *w,
                                          const float *bias, const float *ref, void *ws) {
    int64_t n = s->N * s->OC * s->OH * s->OW;
    float *res = malloc(n * sizeof(float)), *want = malloc(n * sizeof(float)), *got = malloc(n * sizeof(float));
    rt_test_fill_normal(res, n, 99);
    double e = 0;
    for (int v = 0; v < 3; v++) {
        rt_conv_epi epi = {v == 1 ? NULL : res, v < 2};
        for (int64_t i = 0; i < n; i++) {
            float a = ref[i] + (epi.res ? res[i] : 0.0f);
            want[i] = epi.relu && a < 0 ? 0.0f : a;
        }
        memset(got, 0xff, n * sizeof(float)); /* NaN: every output must be written */
        rt_conv2d_forward_epi(s, got, in, w, bias, &epi, ws);
        e = fmax(e, rt_test_maxrel(want, got, n));
    }
    free(res), free(want), free(got);
    return e;
}
/* rt_conv2d_backward_data_ex in overwrite mode (gin starts as NaN: every element must be written)
 * against the reference data gradient added to zeros. */
static inline double rt_test_conv_data_overwrite_err(const rt_conv2d_shape *s, const float *gout, const float *w,
                                                     void *ws) {
    int64_t n = s->N * s->C * s->H * s->W;
    float *want = calloc((size_t)n, sizeof(float)), *got = malloc((size_t)n * sizeof(float));
    rt_conv2d_backward_data_ref(s, want, gout, w);
    memset(got, 0xff, (size_t)n * sizeof(float));
    rt_conv2d_backward_data_ex(s, got, gout, w, ws, 1);
    double e = rt_test_maxrel(want, got, n);
    free(want), free(got);
    return e;
}
#endif
