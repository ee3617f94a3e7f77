/* Retort core: the context (errors, arenas, RNG, grad mode), status codes and the RNG.
 * Every library call takes an rt_ctx; no state is global, so two trainings can share a process. */
#ifndef RETORT_CORE_H
#define RETORT_CORE_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes: 0 ok, negative error. The context keeps a message naming op, layer and shapes. */
enum {
    RT_OK = 0,
    RT_EINVAL = -1,  /* bad argument or configuration */
    RT_ESHAPE = -2,  /* shapes that cannot meet */
    RT_ENOMEM = -3,  /* allocation failed */
    RT_EIO = -4,     /* file could not be opened, read or written */
    RT_EFORMAT = -5, /* file contents malformed */
    RT_ESTATE = -6,  /* call not valid in the current state */
};

typedef struct rt_ctx rt_ctx;

rt_ctx *rt_ctx_new(void);
void rt_ctx_free(rt_ctx *ctx);

/* Errors. rt_fail records the first error (later ones are ignored until rt_clear_error) and
 * prefixes the current layer scope: "conv2d: ... (layer 'layer1.0.conv1')". Returns code. */
int rt_fail(rt_ctx *ctx, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int rt_status(const rt_ctx *ctx);
const char *rt_errmsg(const rt_ctx *ctx);
void rt_clear_error(rt_ctx *ctx);
/* Layer scope for messages; a module's forward pushes its name. Nested names join with '.'. */
void rt_scope_push(rt_ctx *ctx, const char *name);
void rt_scope_pop(rt_ctx *ctx);
const char *rt_scope(const rt_ctx *ctx);

/* Invariant failures (bugs, never bad input) go through this hook; the default prints and aborts. */
typedef void (*rt_assert_hook)(const char *file, int line, const char *expr);
void rt_set_assert_hook(rt_assert_hook hook);
void rt_assert_fail_(const char *file, int line, const char *expr);
#define RT_ASSERT(e) ((e) ? (void)0 : rt_assert_fail_(__FILE__, __LINE__, #e))

/* Per-step arena: activations, saved state, the tape. 64-byte aligned. Memory stays valid until
 * rt_step_reset, which also clears the tape. Returns NULL (and sets RT_ENOMEM) on failure. */
void *rt_arena_alloc(rt_ctx *ctx, size_t bytes);
void *rt_arena_zalloc(rt_ctx *ctx, size_t bytes);
void rt_step_reset(rt_ctx *ctx);
size_t rt_arena_used(const rt_ctx *ctx);
size_t rt_arena_highwater(const rt_ctx *ctx);
/* Arena marks: free everything allocated after a mark (used by look-ahead passes). The tape is
 * truncated to what existed at the mark too. */
typedef struct {
    size_t used, before, block;
    void *tape;
    uint32_t ntape;
} rt_mark;
rt_mark rt_arena_mark(rt_ctx *ctx);
void rt_arena_release(rt_ctx *ctx, rt_mark m);

/* Scratch: short-lived workspace for one kernel call, reused by the next. The pointer stays
 * valid until the next rt_scratch call. */
void *rt_scratch(rt_ctx *ctx, size_t bytes);

/* Gradient recording. Returns the previous setting. Off = forward only (teachers, eval). */
int rt_grad_enabled(const rt_ctx *ctx);
int rt_set_grad_enabled(rt_ctx *ctx, int on);

/* RNG: xoshiro256** seeded through splitmix64. Deterministic and portable. */
typedef struct rt_rng {
    uint64_t s[4];
} rt_rng;
void rt_rng_seed(rt_rng *r, uint64_t seed);
uint64_t rt_rng_u64(rt_rng *r);
double rt_rng_uniform(rt_rng *r);           /* [0, 1) */
float rt_rng_normal(rt_rng *r);             /* N(0, 1), Box-Muller */
uint64_t rt_rng_below(rt_rng *r, uint64_t n); /* uniform in [0, n) */
rt_rng *rt_ctx_rng(rt_ctx *ctx);            /* the context's generator (dropout, init) */

/* Threads: OpenMP thread count used by kernels and BLAS. Same seed + same count = same bits. */
void rt_set_threads(int n);
int rt_threads(void);

/* Profiler: time per op and per layer, forward and backward. Off by default (then each hook costs
 * one branch); rt_profile_enable switches it on in one context. RETORT_PROFILE=1 in the environment
 * switches it on in every new context, whose tables then go to stderr when it is freed (and, as one
 * JSON line, to the end of the file RETORT_PROFILE_JSON names, if set). Only the calling thread
 * times: the OpenMP threads of a kernel are inside the op they serve, and hooks called inside a
 * parallel region are ignored. Each interval between two events goes to one entry (op, layer,
 * phase), so the entries sum to the wall time since the profiler was started or reset:
 *   fwd    an op's forward, from the previous event to where it records (rt_record, rt_op_end), in
 *          the layer scope it ran in ("" outside modules: losses); a leaf module's work that
 *          recorded no op, under the module's type; a composite module's own work between its
 *          children, "<type> (self)" ("BasicBlock (self)");
 *   bwd    a node's backward rule, in the layer scope its forward was recorded in;
 *   other  a named region (rt_profile_begin/end: the optimiser step), and "(outside ops)": the
 *          time outside every module and op (the caller's code between steps, a loader's wait).
 * rt_step_reset counts steps: the tables show milliseconds per step. */
typedef enum { RT_PROF_FWD = 0, RT_PROF_BWD = 1, RT_PROF_OTHER = 2 } rt_prof_phase;
int rt_profile_enable(rt_ctx *ctx, int on); /* RT_OK, or RT_ENOMEM (the context's error set) */
int rt_profile_enabled(const rt_ctx *ctx);
void rt_profile_reset(rt_ctx *ctx); /* zeroes the tables and the step count, restarts the clock */
/* A named region of work that is not an op (ops recorded inside it still count as themselves). */
void rt_profile_begin(rt_ctx *ctx, const char *name);
void rt_profile_end(rt_ctx *ctx);
int64_t rt_profile_steps(const rt_ctx *ctx);
/* Total ms over all steps of the entries matching op (NULL: any), layer (NULL: any; "": outside
 * modules only; else that scope and those below it: "teacher" matches "teacher.layer1.0.conv1") and
 * phase (-1: any); *calls (if non-NULL) gets their count. */
double rt_profile_ms(const rt_ctx *ctx, const char *op, const char *layer, int phase, int64_t *calls);
/* Text tables: a summary line, per op kind (fwd, bwd, other ms per step, % of the step, calls per
 * step), then per layer (rt_profile_print_layers). max_rows bounds each table (0: all, the rest is
 * summed in one row). layer_depth 0 keeps full scope names; k > 0 cuts them after k components and
 * sums ("teacher.layer1" at 2). Return RT_OK, or RT_ENOMEM. */
int rt_profile_print(const rt_ctx *ctx, FILE *f, int max_rows, int layer_depth);
int rt_profile_print_layers(const rt_ctx *ctx, FILE *f, int max_rows, int layer_depth);
/* One JSON object: steps, ms per step per phase, and arrays "ops", "layers" (full names) and
 * "entries" (op, layer, phase), all in ms per step. */
int rt_profile_json(const rt_ctx *ctx, FILE *f);

#ifdef __cplusplus
}
#endif
#endif
