/* 2-D convolution kernels over NCHW fp32 data: the contract every implementation meets.
 * in (N,C,H,W), w (OC,C/groups,KH,KW), bias (OC) or NULL, out (N,OC,OH,OW), as torch's F.conv2d.
 * The _ref kernels are plain loops accumulating in double: the oracle for the fast ones. */
#ifndef RT_KERNELS_CONV_H
#define RT_KERNELS_CONV_H
#include <stddef.h>
#include <stdint.h>

typedef struct rt_conv2d_shape {
    int64_t N, C, H, W; /* input */
    int64_t OC, KH, KW; /* weight (OC, C/groups, KH, KW) */
    int64_t OH, OW;     /* output, filled by rt_conv2d_shape_finish */
    int64_t sh, sw;     /* stride */
    int64_t ph, pw;     /* zero padding on each side */
    int64_t dh, dw;     /* dilation */
    int64_t groups;
    int64_t chunk; /* samples per im2col chunk; 0 = chosen by size (tests force small ones) */
} rt_conv2d_shape;

/* Computes OH, OW. Returns 0, or -1 if the parameters are invalid (non-positive sizes, strides or
 * dilations, negative padding, channels not divisible by groups, or an empty output). */
int rt_conv2d_shape_finish(rt_conv2d_shape *s);

/* Reference kernels. forward overwrites out; the backward kernels accumulate (+=) into gin, gw and
 * gb, any of which may be NULL (skipped). */
void rt_conv2d_forward_ref(const rt_conv2d_shape *s, float *out, const float *in, const float *w, const float *bias);
void rt_conv2d_backward_data_ref(const rt_conv2d_shape *s, float *gin, const float *gout, const float *w);
void rt_conv2d_backward_weight_ref(const rt_conv2d_shape *s, float *gw, float *gb, const float *gout, const float *in);

/* Fast kernels, same contract as the references: Winograd F(4x4,3x3) for 3x3 stride-1 convolutions
 * with >= 16 channels in and out (forward and data gradient, winograd.h), direct SIMD kernels for
 * other single-group convolutions on AVX2 / AVX-512, direct loops for depthwise ones, 1x1 as a plain
 * GEMM, im2col + GEMM for the rest (see conv.c; RETORT_CONV forces an algorithm). ws is a workspace of at least rt_conv2d_workspace(s) bytes,
 * 64-byte aligned; one query covers all three kernels (the size depends on the CPU and the OpenMP
 * thread count, so query and call with the same settings). Results are bitwise reproducible for a
 * given thread count and CPU. */
size_t rt_conv2d_workspace(const rt_conv2d_shape *s);
void rt_conv2d_forward(const rt_conv2d_shape *s, float *out, const float *in, const float *w, const float *bias,
                       void *ws);

/* An epilogue a forward applies as it writes: out = act(conv + bias + res), res (N,OC,OH,OW) like
 * out or NULL, act ReLU when relu (NaN gives 0) or the identity. The Winograd and direct kernels do
 * it on the tile they have in registers (an eval-mode conv + BN + residual + ReLU writes its
 * activation once); the other paths in a pass over the output. res may not alias out. */
typedef struct rt_conv_epi {
    const float *res;
    int relu;
} rt_conv_epi;
void rt_conv2d_forward_epi(const rt_conv2d_shape *s, float *out, const float *in, const float *w, const float *bias,
                           const rt_conv_epi *epi, void *ws);
void rt_conv2d_backward_data(const rt_conv2d_shape *s, float *gin, const float *gout, const float *w, void *ws);
/* The same with overwrite 1: gin = the data gradient, every element written (gin may hold anything
 * before: the first gradient of a pass needs no zeroing and no read). */
void rt_conv2d_backward_data_ex(const rt_conv2d_shape *s, float *gin, const float *gout, const float *w, void *ws,
                                int overwrite);
void rt_conv2d_backward_weight(const rt_conv2d_shape *s, float *gw, float *gb, const float *gout, const float *in,
                               void *ws);

#endif
