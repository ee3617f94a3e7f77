/* Aggregating K distillation-path losses (paper 000, Eq. 3-6): equal and fixed weights, adaptive
 * weights v = exp(-z) learnt with the network, and the multiobjective weights of the min-norm point
 * of the per-path gradients (Sener & Koltun's MinNormSolver), with the per-path gradient and
 * gradient-cosine helpers that strategy needs. Implementation: src/kd/aggregate.c. */
#ifndef RETORT_AGGREGATE_H
#define RETORT_AGGREGATE_H
#include "retort/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- loss aggregates (differentiable; built from ops, so backward reaches everything) ----
 * losses: K tensors of one element each (shape () or (1)...). On error NULL with the message set. */

/* sum_k L_k ('equal'). */
rt_tensor *rt_aggregate_equal(rt_ctx *ctx, int K, rt_tensor *const *losses);
/* sum_k w_k L_k ('fixed', also the multiobjective weights); w: K constants (no gradient). */
rt_tensor *rt_aggregate_fixed(rt_ctx *ctx, int K, rt_tensor *const *losses, const float *w);
/* Adaptive distillation (Eq. 5): sum_k exp(-z_k) w_k L_k + sum_k z_k, a scalar of shape ().
 * z: K floats, shape (K) (any shape of K elements is accepted), normally a non-parameter leaf
 * (rt_leaf, initialised to 0) that the caller updates with its own optimiser; w: fixed per-path
 * multipliers, NULL = all 1. Gradients: d/dz_k = 1 - exp(-z_k) w_k L_k (Eq. 6 without alpha: the
 * caller multiplies the result by alpha), d/dL_k = exp(-z_k) w_k. With fixed losses z_k -> ln(w_k L_k). */
rt_tensor *rt_adaptive_aggregate(rt_ctx *ctx, int K, rt_tensor *const *losses, const float *w, rt_tensor *z);

/* ---- min-norm point of the convex hull of K gradients (multiobjective, Eq. 4) ---- */

/* Normalisation of the gradients before solving (Sener & Koltun's gradient_normalizers): g_k is
 * divided by s_k with s_k = 1 (none), ||g_k|| (l2), L_k (loss) or L_k ||g_k|| (loss_l2). A zero
 * gradient keeps s_k = 1 under l2 (and s_k = L_k under loss_l2): it stays the zero vector. */
typedef enum {
    RT_MINNORM_NONE = 0,
    RT_MINNORM_L2 = 1,
    RT_MINNORM_LOSS = 2,
    RT_MINNORM_LOSS_L2 = 3,
} rt_minnorm_normalise;

typedef struct rt_minnorm_opts {
    rt_minnorm_normalise normalise; /* default none */
    const float *losses;            /* K loss values (> 0), needed by loss and loss_l2 */
    int max_iter;                   /* Frank-Wolfe iterations at most; <= 0: 250 */
    double stop;                    /* stop when the L1 change of the weights is below; <= 0: 1e-5 */
    int away_steps;                 /* 0 (default): plain Frank-Wolfe, as the reference code. 1: with away
                                     * steps, which converge linearly to the exact minimum. Plain FW is
                                     * sublinear when the optimum lies on a face of the simplex: with K = 6
                                     * its 250 iterations were seen to leave 1.4% of the norm and 0.04 of
                                     * a weight (tests/test_aggregate.c, minnorm_many_vectors_vs_exact) */
} rt_minnorm_opts;

/* Finds weights c on the simplex (c_k >= 0, sum c_k = 1) minimising ||sum_k c_k g_k / s_k||^2, the
 * normalised gradients' min-norm point: the best pair first (closed form, gamma clamped to
 * [0.001, 0.999], as the reference code; K = 2 ends there), then (K >= 3) Frank-Wolfe with exact line
 * search on [0, 1] until no vertex improves, the L1 change of c is below opts->stop, or opts->max_iter
 * iterations. Unlike the reference code, whose Frank-Wolfe steps reuse the clamped pair formula and
 * so keep moving by 0.1% after reaching the optimum, a step may reach a vertex and the loop stops at
 * the optimum. K = 1 gives c = 1. weights_out: K doubles; norm2_out (may be NULL): ||sum_k c_k g_k / s_k||^2.
 *
 * What the weights mean: as in Sener & Koltun's code, c multiplies the UNNORMALISED losses, i.e. the
 * training objective is sum_k c_k L_k and its gradient sum_k c_k g_k. Without normalisation (or with
 * equal s_k) that is the min-norm point itself; with normalisation it is a different point of the
 * cone, and the min-norm direction of the normalised gradients would be reached with the multipliers
 * c_k / s_k instead (rt_minnorm_scales gives s). Returns status (RT_EINVAL: K < 1, a non-finite
 * Gram entry, a negative diagonal, a missing or non-positive loss value). */
int rt_minnorm(rt_ctx *ctx, int K, const float *const *vecs, size_t n, const rt_minnorm_opts *opts, double *weights_out,
               double *norm2_out);
/* The same from a precomputed K x K Gram matrix (row-major, symmetric) of the unnormalised g_k. */
int rt_minnorm_gram(rt_ctx *ctx, int K, const double *gram, const rt_minnorm_opts *opts, double *weights_out,
                    double *norm2_out);
/* The normalisers s_k (K doubles) for opts->normalise, from the Gram diagonal and opts->losses. */
int rt_minnorm_scales(rt_ctx *ctx, int K, const double *gram, const rt_minnorm_opts *opts, double *scales_out);

/* Gram matrix G_ij = g_i . g_j (K x K, row-major) of K vectors of n floats, in double; blocked,
 * parallel and independent of the thread count (src/kernels/gram.c). */
int rt_gram(rt_ctx *ctx, int K, const float *const *vecs, size_t n, double *gram);

/* ---- per-path gradients (one recorded forward, K backward passes) ---- */

/* Row k of G (K x n, n = ps->n) = the gradient of losses[k] on the parameters of ps, each from its
 * own backward pass over the same tape. Parameters a path does not reach get exact zeros; a loss that
 * requires no gradient at all gives a zero row (RT_ESTATE if none of them does: grad mode was off). ps's (bound)
 * gradient buffer is zeroed before every pass and left zeroed on return. Leaves outside ps (e.g. the adaptive z)
 * accumulate the gradients of all K passes. Returns status. */
int rt_path_grads(rt_ctx *ctx, rt_paramset *ps, int K, rt_tensor *const *losses, float *G);
/* The same restricted to the flat parameter range [off, off + len) ("which parameters enter"):
 * G is K x len. Parameters are laid out in declaration order (rt_param.offset). */
int rt_path_grads_range(rt_ctx *ctx, rt_paramset *ps, int K, rt_tensor *const *losses, size_t off, size_t len,
                        float *G);
/* dst (n) += alpha * sum_k c_k G_k: the combined gradient of sum_k c_k L_k from the rows of G (K x n). */
void rt_path_grads_combine(int K, size_t n, const float *G, const double *c, float alpha, float *dst);

/* Cosine similarities cos_ij = g_i . g_j / (||g_i|| ||g_j||) of the K rows of G (K x n), K x K
 * row-major (paper 000, Fig. 4c); 0 where either vector is zero. Returns status. */
int rt_grad_cosines(rt_ctx *ctx, int K, size_t n, const float *G, double *cos_out);
/* The same from a Gram matrix. */
void rt_gram_cosines(int K, const double *gram, double *cos_out);

#ifdef __cplusplus
}
#endif
#endif
