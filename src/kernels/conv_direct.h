/* Direct convolution over zero-padded planes: the SIMD micro-kernels behind src/kernels/conv.c,
 * one implementation per ISA (conv_avx2.c, conv_avx512.c, both generated from the template
 * conv_simd.h).
 *
 * With stride 1 the input of every output pixel is a constant offset away: on a padded plane of
 * row length Wp, output (oh, ow) reads tap (kh, kw) of channel c at c*plane + (oh + kh*dh)*Wp +
 * ow + kw*dw (plus a constant). Numbering outputs by "virtual position" q = oh*Wp + ow (the
 * columns ow >= OW are computed and dropped) makes the convolution a GEMM whose im2col matrix is
 * never built: col[k][q] = in[koff[k] + q]. Other strides work the same way on phase planes (the
 * padded input split by row and column remainder modulo the stride, see conv.c). The same kernel
 * serves the data gradient (convolutions of the padded output gradient). */
#ifndef RT_KERNELS_CONV_DIRECT_H
#define RT_KERNELS_CONV_DIRECT_H
#include <stdint.h>

#include "kernels/conv.h"

/* Packed weights come in blocks of RT_CONVD_OCB output channels: wpk[(o / 8) * Kp * 8 + k * 8 + o % 8],
 * zero for the padding rows. An ISA's register tiles must divide these blocks: its forward tile's
 * channels divide RT_CONVD_OCB, its weight-gradient tile divides (RT_CONVD_OCB, RT_CONVD_KB). */
#define RT_CONVD_OCB 8
#define RT_CONVD_KB 6

typedef struct rt_convd {
    int64_t OC, OCp;     /* output channels, rounded up to RT_CONVD_OCB */
    int64_t K, Kp;       /* reduction length (channels x taps), rounded up to RT_CONVD_KB */
    const int64_t *koff; /* Kp offsets into a padded sample (padding entries point at 0) */
    int64_t Wp;          /* padded row length */
    int64_t OH, OW;      /* outputs: the first OW columns of OH virtual rows */
    int64_t Q;           /* OH * Wp virtual positions */
    int64_t Qs;          /* row stride of the weight-gradient's output-gradient rows: Q rounded up to 16 */
} rt_convd;

/* Reads run past the end of a padded sample by at most (KW-1)*dw + RT_CONVD_TILE_SLACK floats (the
 * caller keeps them readable and finite). */
#define RT_CONVD_TILE_SLACK 256

/* Output channels [oc0, oc1) (oc0 a multiple of RT_CONVD_OCB) of one padded sample in:
 * out (OC,OH,OW) = bias + conv, or out += conv when accumulate (bias and epi ignored); epi (NULL:
 * none) as in conv.h, its res the sample's (OC,OH,OW). */
void rt_convd_forward_avx2(const rt_convd *d, const float *in, const float *wpk, const float *bias, float *out,
                           int64_t oc0, int64_t oc1, int accumulate, const rt_conv_epi *epi);
void rt_convd_forward_avx512(const rt_convd *d, const float *in, const float *wpk, const float *bias, float *out,
                             int64_t oc0, int64_t oc1, int accumulate, const rt_conv_epi *epi);
/* gw (OCp,Kp) += sum over nsamp samples of gv (OCp,Qs) @ col^T; sample i's gradient is at
 * gv + i*gv_stride and its padded input at in + i*in_stride. gv is the output gradient laid out by
 * virtual position, zero in the dropped columns, in the tail [Q,Qs) and in the padding rows. */
void rt_convd_wgrad_avx2(const rt_convd *d, const float *gv, const float *in, int64_t nsamp, int64_t gv_stride,
                         int64_t in_stride, float *gw);
void rt_convd_wgrad_avx512(const rt_convd *d, const float *gv, const float *in, int64_t nsamp, int64_t gv_stride,
                           int64_t in_stride, float *gw);

/* The weight gradient vectorised over output channels, for filters three taps wide (any stride and
 * dilation). A "row" is a (channel, kh) pair; tap (row, kw) of output (oh, ow) reads the padded
 * sample at rowoff[row] + oh*Wp + ow + kwoff[kw] (both layouts of conv.c split an offset so). Each
 * output position contributes gt[p] (a vector over output channels) times one broadcast input
 * value per tap: no horizontal sums, and only the OH*OW real positions are visited (the kernel
 * above also multiplies the dropped columns, 1 in 5 for 8x8 images). The output gradient comes
 * transposed, gt (OH*OW, OCv) per sample, OCv = OC rounded up to RT_CONVD_WG3_OCV, zero past OC.
 * Sums are added to part (RT_CONVD_WG3_ROWS(rows)*3, OCv), row k = row*3 + kw (the order of gw's
 * (C, KH, KW) axes). rowoff has RT_CONVD_WG3_ROWS(rows) entries; the padding ones may be any
 * offset a real row has (their sums land in part's padding rows). */
#define RT_CONVD_WG3_OCV 16
#define RT_CONVD_WG3_ROWS(rows) (((rows) + 7) / 8 * 8)
typedef struct rt_convd_wg3 {
    int64_t rows, OCv, OH, OW, Wp;
    const int64_t *rowoff;
    int64_t kwoff[3];
} rt_convd_wg3;
void rt_convd_wgrad3_avx2(const rt_convd_wg3 *d, const float *gt, const float *in, int64_t nsamp, int64_t gt_stride,
                          int64_t in_stride, float *part);
void rt_convd_wgrad3_avx512(const rt_convd_wg3 *d, const float *gt, const float *in, int64_t nsamp, int64_t gt_stride,
                            int64_t in_stride, float *part);

/* dst[i*ds + j] = src[i*ss + 2*j] for i < rows, j < n: the even columns of a block of rows (splitting
 * a padded plane into column phases for stride 2). */
void rt_convd_gather2_avx2(float *dst, int64_t ds, const float *src, int64_t ss, int64_t rows, int64_t n);
void rt_convd_gather2_avx512(float *dst, int64_t ds, const float *src, int64_t ss, int64_t rows, int64_t n);

#endif
