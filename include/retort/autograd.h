/* Reverse-mode autograd on a tape of coarse ops.
 *
 * Ops run eagerly; when gradients are enabled and an input requires one, the op records a node
 * (its opdef, sources, output and the state its backward needs) on the context's tape, in the step
 * arena. rt_backward walks the tape from a scalar in reverse and each node's backward rule
 * accumulates (+=) into its sources' gradients. Several backward passes over one recorded forward
 * are allowed: intermediate gradients are zeroed lazily per pass, leaf gradients accumulate. */
#ifndef RETORT_AUTOGRAD_H
#define RETORT_AUTOGRAD_H
#include "retort/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef void (*rt_backward_fn)(rt_ctx *ctx, rt_node *n);

/* One per op, defined next to the op's forward (e.g. src/ops/conv.c). */
typedef struct rt_opdef {
    const char *name;
    rt_backward_fn backward;
} rt_opdef;

struct rt_node {
    const rt_opdef *op;
    rt_tensor *out;
    rt_tensor **src;   /* nsrc sources, some may not require grad */
    int nsrc;
    void *saved;       /* op-specific state (arena), saved_bytes long, zeroed */
    rt_node *prev;     /* previous node on the tape */
    uint32_t index;    /* position on the tape */
    const char *scope; /* layer scope of its forward when profiling, else NULL (lives as long as the context) */
};

/* Records a node for out if grad mode is on and any source requires grad; sets out->node and
 * out->requires_grad. Returns the node (so the op can fill n->saved), or NULL when nothing is
 * recorded (or on allocation failure, with the context's error set: check rt_status). */
rt_node *rt_record(rt_ctx *ctx, const rt_opdef *op, rt_tensor *out, int nsrc, rt_tensor *const *src,
                   size_t saved_bytes);

/* For the profiler: an op that returns without calling rt_record (an in-place path with nothing to
 * record) calls this where its forward ends, so its time is its own. A no-op when not profiling. */
void rt_op_end(rt_ctx *ctx, const rt_opdef *op);

/* Inside a backward rule: the gradient buffer of t for this pass (contiguous, t's shape), zeroed
 * on first use in the pass; NULL if t does not require grad (skip that source). */
float *rt_grad_of(rt_ctx *ctx, rt_tensor *t);
/* The same, but where this is t's first gradient in the pass (*fresh = 1) the buffer is not zeroed:
 * the caller must then write every element (instead of adding). Leaves are never fresh. */
float *rt_grad_of_fresh(rt_ctx *ctx, rt_tensor *t, int *fresh);

/* Backward from a scalar (seed 1) or from out with a given seed gradient (numel floats). Each call
 * is one pass. Returns status. */
int rt_backward(rt_ctx *ctx, rt_tensor *scalar);
int rt_backward_seed(rt_ctx *ctx, rt_tensor *out, const float *seed);

/* A tensor sharing t's data with no gradient history. */
rt_tensor *rt_detach(rt_ctx *ctx, rt_tensor *t);

/* Finite-difference gradient check (Caffe style). f builds an output from the n inputs (leaves
 * with persistent data and grad buffers). The output is projected on fixed random weights r, so
 * L = sum r * f(x) is computed in double; the analytic gradient of L (one backward pass) is
 * compared with central differences at up to max_points elements per input (all if <= 0).
 * Points near a kink (FD at eps and eps/2 disagree) are skipped. The context's RNG is reseeded
 * before every evaluation so f may use dropout. Returns 0 if every point passes
 * |a - n| <= tol * max(|a|, |n|, 0.1 * max|grad of that input|, 1e-3); the report (if non-NULL,
 * 512 bytes) names the worst point. */
typedef rt_tensor *(*rt_gradcheck_fn)(rt_ctx *ctx, rt_tensor **inputs, void *user);
typedef struct rt_gradcheck_opts {
    double eps;     /* default 1e-3 */
    double tol;     /* default 1e-2 */
    int max_points; /* default 0: every element */
    uint64_t seed;  /* projection and RNG seed, default 1 */
} rt_gradcheck_opts;
int rt_gradcheck(rt_ctx *ctx, rt_gradcheck_fn f, void *user, int n, rt_tensor **inputs,
                 const rt_gradcheck_opts *opts, char *report);

/* Number of nodes on the tape (for tests and diagnostics). */
uint32_t rt_tape_size(const rt_ctx *ctx);

#ifdef __cplusplus
}
#endif
#endif
