/* Pooling and resizing kernels over NCHW fp32 data, seen as P = N*C independent planes: in (P,H,W),
 * out (P,OH,OW). Semantics of PyTorch's max_pool2d, avg_pool2d (count_include_pad, no ceil_mode),
 * adaptive_avg_pool2d and F.interpolate (nearest, bilinear). These are the plain kernels (there is
 * no separate fast version): threaded over planes, each plane computed by one thread in a fixed
 * order, so results do not depend on the thread count. Forward kernels overwrite their outputs;
 * backward kernels accumulate (+=) into gin. */
#ifndef RT_KERNELS_POOL_H
#define RT_KERNELS_POOL_H
#include <stdint.h>

typedef struct rt_pool2d_shape {
    int64_t P, H, W; /* planes (N*C) and input size */
    int64_t KH, KW;  /* window */
    int64_t sh, sw;  /* stride */
    int64_t ph, pw;  /* implicit padding on each side (-inf for max, 0 for avg) */
    int64_t OH, OW;  /* output, filled by rt_pool2d_shape_finish */
} rt_pool2d_shape;

/* Computes OH, OW as PyTorch does without ceil_mode. Returns 0, or -1 if a size or stride is not
 * positive, the padding is negative or more than half the window, or the output would be empty. */
int rt_pool2d_shape_finish(rt_pool2d_shape *s);

/* Max pooling; ties: the first element in row-major window order wins, NaN propagates. argmax
 * (P,OH,OW) receives the winner's index in its input plane (ih*W + iw); it may be NULL. */
void rt_maxpool2d_forward(const rt_pool2d_shape *s, float *out, int32_t *argmax, const float *in);
void rt_maxpool2d_backward(const rt_pool2d_shape *s, float *gin, const float *gout, const int32_t *argmax);

/* Average pooling counting padded elements (the divisor is always KH*KW). */
void rt_avgpool2d_forward(const rt_pool2d_shape *s, float *out, const float *in);
void rt_avgpool2d_backward(const rt_pool2d_shape *s, float *gin, const float *gout);

/* Adaptive average pooling: output cell (i,j) averages rows [floor(i*H/OH), ceil((i+1)*H/OH)) and
 * the same for columns. */
void rt_adaptive_avgpool2d_forward(int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW, float *out,
                                   const float *in);
void rt_adaptive_avgpool2d_backward(int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW, float *gin,
                                    const float *gout);

/* Resizing as F.interpolate(size=(OH,OW)): nearest takes source floor(o * H/OH) (scale in float, as
 * PyTorch); bilinear with align_corners maps corners to corners, without it maps pixel centres. */
void rt_resize_nearest_forward(int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW, float *out, const float *in);
void rt_resize_nearest_backward(int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW, float *gin, const float *gout);
void rt_resize_bilinear_forward(int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW, int align_corners, float *out,
                                const float *in);
void rt_resize_bilinear_backward(int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW, int align_corners, float *gin,
                                 const float *gout);

#endif
