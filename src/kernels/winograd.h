/* Winograd convolution F(m x m, 3 x 3), m = 2 or 4, for 3x3 stride-1 single-group convolutions:
 * the forward and the data gradient (a 3x3 stride-1 convolution of the output gradient with the
 * flipped, transposed filters, padding 2 - p). The output is cut into m x m tiles (tiles over the
 * edge compute zeros beyond it and store only their valid part); each reads an (m+2) x (m+2) patch
 * of the zero-padded source.
 *
 *   U[xi][o][c] = (G g G^T)[xi]     the filters, transformed once per call (in double)
 *   V[xi][c][t] = (B^T d B)[xi]     the input patch of tile t, channel c
 *   M[xi][o][t] = sum_c U[xi][o][c] V[xi][c][t]     one GEMM per transformed position xi
 *   out tile    = A^T M A
 * so each output costs (m+2)^2 / m^2 multiply-adds per (c, o) pair instead of 9: 4 for F(2x2),
 * 2.25 for F(4x4). F(2x2) uses Lavin & Gray's transforms; F(4x4) the points 0, 1, -1, 1/2, -2,
 * whose fp32 error is 2.5x smaller than that of the usual 0, +-1, +-2 (winograd.c).
 *
 * Tiles are numbered t = (n * tiles_y + ty) * tiles_x + tx over the whole batch and processed in
 * blocks of TB: per block, one thread zero-pads the block's samples one channel at a time (into
 * L1) and transforms their patches (V), then runs the GEMMs into M and transforms M into the
 * output, so V and M stay in its L2. Blocks are split between OpenMP threads in order; every output
 * is computed whole by one thread in a fixed order, so results do not depend on the thread count.
 *
 * Accuracy: the transforms amplify rounding. Measured against the double reference over the
 * shapes of tests/test_winograd.c (C up to 64, N(0,1) data), the largest error relative to the
 * output's largest magnitude is 4e-7 for F(2x2) and 3e-6 for F(4x4) (the direct kernels: ~1e-7).
 *
 * conv.c routes 3x3 stride-1 convolutions here by a measured rule (wino_tile); RETORT_CONV=
 * winograd (= winograd4) or winograd2 forces F(4x4) / F(2x2) on every eligible convolution,
 * RETORT_CONV=direct or im2col keeps them off (see conv.c).
 *
 * The kernels per ISA (winograd_avx2.c, winograd_avx512.c, template winograd_simd.h; plain C for
 * the generic ISA in winograd.c) work on one block; winograd.c drives them. */
#ifndef RT_KERNELS_WINOGRAD_H
#define RT_KERNELS_WINOGRAD_H
#include <stddef.h>
#include <stdint.h>

#include "kernels/conv.h"

/* Can Winograd run this convolution? 3x3 filters, stride 1, dilation 1, one group, padding in
 * [0, 2] on each axis (the data gradient pads by 2 - p). */
int rt_wino_eligible(const rt_conv2d_shape *s);

/* Workspace bytes of the forward / data gradient with tile size m (2 or 4); depends on the CPU
 * and the OpenMP thread count, like rt_conv2d_workspace. */
size_t rt_wino_forward_workspace(const rt_conv2d_shape *s, int m);
size_t rt_wino_backward_data_workspace(const rt_conv2d_shape *s, int m);

/* in (N,C,H,W), w (OC,C,3,3), bias (OC) or NULL, out (N,OC,OH,OW); overwrites out, through the
 * epilogue epi (conv.h; NULL: none). */
void rt_wino_forward(const rt_conv2d_shape *s, int m, float *out, const float *in, const float *w, const float *bias,
                     const rt_conv_epi *epi, void *ws);
/* gout (N,OC,OH,OW), w (OC,C,3,3), gin (N,C,H,W); accumulates into gin, or overwrites it. */
void rt_wino_backward_data(const rt_conv2d_shape *s, int m, float *gin, const float *gout, const float *w, void *ws,
                           int overwrite);

/* Weight gradient: dW = sum over tiles of G^T [(B^T d B) . (A dY A^T)] G, the transpose of the
 * forward (dY an m x m tile of the output gradient, zero past the output's edge). Per block of
 * tiles: V as in the forward, Z[xi][o][t] = (A dY A^T)[xi], and per xi P[xi][c][o] += sum_t
 * V[xi][c][t] Z[xi][o][t]. Each thread sums its own ordered share of the blocks into its own P; the
 * partials are added in thread order (in double) and transformed back with G^T (.) G, so results
 * are reproducible for a given thread count (not across counts). */
size_t rt_wino_backward_weight_workspace(const rt_conv2d_shape *s, int m);
/* gout (N,OC,OH,OW), in (N,C,H,W), gw (OC,C,3,3); accumulates into gw (not the bias gradient). */
void rt_wino_backward_weight(const rt_conv2d_shape *s, int m, float *gw, const float *gout, const float *in, void *ws);

/* ---- the per-block kernels (one set per ISA) ----
 * U is packed in blocks of 8 output channels: U[xi][o / 8][c][o % 8] (OCp = Cout rounded up to 8,
 * zero for the padding channels), xi-plane stride us. V[xi][c][t] with xi-plane stride vs; M holds
 * output channels [o0, o1) of the block: M[xi][o - o0][t], xi-plane stride ms. Tiles t >= nt of a
 * block are computed (their patch offsets repeat a valid tile's) but never stored. */
typedef struct rt_wino_blk {
    int m;                      /* output tile size, 2 or 4 */
    int64_t Cin, Cout, OCp;     /* source channels; output channels, and rounded up to 8 */
    int64_t TB, nt;             /* tiles per block (row length of V and M); tiles in this block */
    int64_t H0, W0, pt, pl;     /* source planes and their top / left zero padding */
    int64_t Hp, Wp, plane;      /* padded planes: rows, row length, floats */
    int64_t n0, n1, r0, r1;     /* the block's samples [n0, n1]: padded rows [r0, Hp) of n0 .. [0, r1) of n1 */
    int64_t pad_half;           /* floats of one channel's padded samples in the pad buffer (with slack) */
    int64_t OW, oplane;         /* output: row length, floats per channel */
    int64_t us, vs, ms;         /* floats between xi-planes of U, V and M */
    const int64_t *tin, *tout;  /* per tile: offset of its patch in the padded channel / of its output (channel 0) */
    const int32_t *rows, *cols; /* per tile: valid output rows and columns (m inside the output) */
} rt_wino_blk;

/* Tile widths the kernels need: TB must be a multiple of this. */
int64_t rt_wino_tile_quantum_avx2(void);
int64_t rt_wino_tile_quantum_avx512(void);

// w (Cout,Cin,3,3), or for the data gradient (Cin,Cout,3,3) read flipped and transposed; U: the output
// channels [8 ob, 8 ob + 8), transformed in double (xi-plane stride us); overwrites them
void rt_wino_filters_avx2(int m, int flip, int64_t Cin, int64_t Cout, int64_t us, const float *w, float *U, int64_t ob);
void rt_wino_filters_avx512(int m, int flip, int64_t Cin, int64_t Cout, int64_t us, const float *w, float *U,
                            int64_t ob);
// src (N,Cin,H0,W0), V (alpha^2, Cin, TB); overwrites V. Channel by channel, the block's samples are zero-padded
// into one half of pad (2 x pad_half floats; a half holds n1 - n0 + 1 planes and 16 floats of slack), whose tile
// patches are then transformed.
void rt_wino_in_avx2(const rt_wino_blk *b, const float *src, float *pad, float *V);
void rt_wino_in_avx512(const rt_wino_blk *b, const float *src, float *pad, float *V);
// U (alpha^2, OCp/8, Cin, 8), V (alpha^2, Cin, TB), M (alpha^2, o1 - o0, TB) for channels [o0, o1), o0 % 8 == 0;
// overwrites M
void rt_wino_gemm_avx2(const rt_wino_blk *b, const float *U, const float *V, float *M, int64_t o0, int64_t o1);
void rt_wino_gemm_avx512(const rt_wino_blk *b, const float *U, const float *V, float *M, int64_t o0, int64_t o1);
// M as above, out: channels [o0, o1) of the tiles' outputs (at out + tout[t]); out = act(bias + conv + res) (epi:
// conv.h, NULL: none; res laid out as out), or += conv when accumulate (bias and epi ignored)
void rt_wino_out_avx2(const rt_wino_blk *b, const float *M, float *out, const float *bias, int64_t o0, int64_t o1,
                      int accumulate, const rt_conv_epi *epi);
void rt_wino_out_avx512(const rt_wino_blk *b, const float *M, float *out, const float *bias, int64_t o0, int64_t o1,
                        int accumulate, const rt_conv_epi *epi);
// The weight gradient. b describes the output gradient as the source (Cin = its channels, H0 x W0 its planes, no
// padding, tin its tiles, vs the xi-plane stride of Z): Z (alpha^2, Cin, TB) = A dY A^T of each tile, zero for tiles
// t >= nt; pad holds one channel of the block's samples, padded. Overwrites pad and Z's rows [0, Cin).
void rt_wino_gout_avx2(const rt_wino_blk *b, const float *gout, float *pad, float *Z);
void rt_wino_gout_avx512(const rt_wino_blk *b, const float *gout, float *pad, float *Z);
// P (alpha^2, Cin, OCq) += V (alpha^2, Cin, TB; xi stride vs) x Z (alpha^2, OCq, TB; xi stride zs) over the tiles,
// the first round_up(nt, quantum) of them (OCq a multiple of 4; Z's rows past the channels zero)
void rt_wino_wgemm_avx2(const rt_wino_blk *b, int64_t Cin, int64_t OCq, const float *V, int64_t vs, const float *Z,
                        int64_t zs, float *P);
void rt_wino_wgemm_avx512(const rt_wino_blk *b, int64_t Cin, int64_t OCq, const float *V, int64_t vs, const float *Z,
                          int64_t zs, float *P);

#endif
