/* Elementwise kernels over fp32 arrays: unary maps and broadcasting binary ops, forward and
 * backward. The fast kernels walk a coalesced broadcast plan in contiguous runs (no per-element
 * index arithmetic), parallel over disjoint output ranges, so results do not depend on the thread
 * count. The _ref kernels are plain loops in double over the original shapes: the oracle. */
#ifndef RT_KERNELS_ELEMENTWISE_H
#define RT_KERNELS_ELEMENTWISE_H
#include <stdint.h>

#include "retort/tensor.h"

/* ---- unary: y = f(x; s), s the op's scalar (add/mul/pow scalar, leaky slope; unused otherwise) ---- */
typedef enum {
    RT_UN_ADD_SCALAR,
    RT_UN_MUL_SCALAR,
    RT_UN_POW,
    RT_UN_SQRT,
    RT_UN_EXP,
    RT_UN_LOG,
    RT_UN_ABS,
    RT_UN_NEG,
    RT_UN_RELU,
    RT_UN_LEAKY_RELU,
    RT_UN_SIGMOID,
    RT_UN_TANH,
    RT_UN_GELU,
} rt_unop;

/* x (n), y (n): y = f(x); overwrites y. */
void rt_unary_forward(rt_unop op, float s, int64_t n, float *y, const float *x);
void rt_unary_forward_ref(rt_unop op, float s, int64_t n, float *y, const float *x);
/* gy, x, y (n), gx (n): gx += f'(x) * gy, from the forward's input x and output y. */
void rt_unary_backward(rt_unop op, float s, int64_t n, float *gx, const float *gy, const float *x, const float *y);
void rt_unary_backward_ref(rt_unop op, float s, int64_t n, float *gx, const float *gy, const float *x, const float *y);

/* ---- fused residual end: y = relu(a + b), same shapes ---- */
/* a, b, y (n): y = relu(a + b) (0 for NaN, as rt_relu); overwrites y, which may be a or b. */
void rt_add_relu_forward(int64_t n, float *y, const float *a, const float *b);
void rt_add_relu_forward_ref(int64_t n, float *y, const float *a, const float *b);
/* gy, y (n), y the forward's output: g = y > 0 ? gy : 0; ga += g and gb += g, each skipped when NULL;
 * ga and gb may be one buffer (a + a), which then gets both. */
void rt_add_relu_backward(int64_t n, float *ga, float *gb, const float *gy, const float *y);
void rt_add_relu_backward_ref(int64_t n, float *ga, float *gb, const float *gy, const float *y);

/* ---- binary with NumPy broadcasting ---- */
typedef enum { RT_BIN_ADD, RT_BIN_SUB, RT_BIN_MUL, RT_BIN_DIV } rt_binop;

/* The broadcast of a and b, with size-1 dims dropped and adjacent dims merged where neither
 * operand's layout breaks: out is contiguous in shape[0..nd); sa/sb are a's and b's element strides
 * there (0 = broadcast along that dim). (N,C,H,W) + (C,1,1) becomes shape (N,C,HW), sb (0,1,0). */
typedef struct rt_bcast {
    int nd; /* >= 1 */
    int64_t shape[RT_MAX_DIMS];
    int64_t sa[RT_MAX_DIMS], sb[RT_MAX_DIMS];
} rt_bcast;

/* a (ash, na dims), b (bsh, nb dims): fills p and the broadcast output shape (out_shape, *out_nd =
 * max(na, nb)). Returns 0, or -1 if the shapes cannot broadcast. */
int rt_bcast_plan(rt_bcast *p, int64_t *out_shape, int *out_nd, int na, const int64_t *ash, int nb, const int64_t *bsh);

/* a, b laid out as in p, out (p's shape, contiguous): out = a op b; overwrites out. */
void rt_binary_forward(rt_binop op, const rt_bcast *p, float *out, const float *a, const float *b);
/* gy and out (p's shape), a, b as in p; gx in the shape of operand `which` (0 = a, 1 = b):
 * gx += d(a op b)/d(operand) * gy, summed over the dims where the operand was broadcast. */
void rt_binary_backward(rt_binop op, int which, const rt_bcast *p, float *gx, const float *gy, const float *a,
                        const float *b, const float *out);

/* The references take the original shapes (na dims ash, nb dims bsh) and index every element. */
void rt_binary_forward_ref(rt_binop op, int na, const int64_t *ash, int nb, const int64_t *bsh, float *out,
                           const float *a, const float *b);
void rt_binary_backward_ref(rt_binop op, int which, int na, const int64_t *ash, int nb, const int64_t *bsh, float *gx,
                            const float *gy, const float *a, const float *b, const float *out);

#endif
