/* The profiler's hooks, called by the context, the tape and module forwards (src/core/profile.c).
 * Each call site tests rt_prof_on first, so a context that does not profile pays one branch. */
#ifndef RT_PROFILE_H
#define RT_PROFILE_H
#include "core/ctx_impl.h"

typedef struct rt_profile rt_profile;

static inline int rt_prof_on(const rt_ctx *ctx) { return ctx->prof != NULL; }

/* An op's forward finished (ops record after computing): the time since the previous event is its
 * own, in the current layer scope. Returns the scope's interned name, for the node's scope. */
const char *rt_prof_op(rt_ctx *ctx, const char *op);
/* A boundary that is not an op (the start of a backward pass, a step reset): the time since the
 * previous event goes to the enclosing module's "<type> (self)", or to "(outside ops)" outside
 * modules, in the current scope. */
void rt_prof_mark(rt_ctx *ctx);
/* Module entry (before its scope is pushed) and exit (before it is popped). At exit, the time since
 * the previous event goes to a leaf module's last op, or to its type when no op of it recorded (an
 * op that skipped rt_record and rt_op_end), and to "<type> (self)" for a module with children. */
void rt_prof_module_begin(rt_ctx *ctx, const char *type);
void rt_prof_module_end(rt_ctx *ctx, const char *type, int leaf);
/* A node's backward rule returned: the time since the previous event is its backward. */
void rt_prof_backward(rt_ctx *ctx, const rt_node *n);
/* rt_step_reset: closes the step. */
void rt_prof_step(rt_ctx *ctx);
/* rt_ctx_new: RETORT_PROFILE=1 (any value but "" and "0") switches the profiler on. Returns status. */
int rt_prof_env(rt_ctx *ctx);
/* rt_ctx_free: a profile switched on by the environment is reported on stderr (and appended as one
 * JSON line to the file RETORT_PROFILE_JSON names, if set), then the tables are freed. */
void rt_prof_ctx_free(rt_ctx *ctx);

#endif
