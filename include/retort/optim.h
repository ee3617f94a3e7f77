/* Optimisers (SGD, Adam, AdamW) over a model's flat parameter buffer, and learning-rate schedules.
 * An optimiser step is one flat loop per parameter group; its state (momentum, or Adam's m and v)
 * is one contiguous buffer plus a step count, so a checkpoint saves and restores it exactly.
 * The update rules are PyTorch's (torch.optim.SGD / Adam / AdamW, single-tensor path). */
#ifndef RETORT_OPTIM_H
#define RETORT_OPTIM_H
#include "retort/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- optimisers ---- */

typedef enum { RT_OPTIM_SGD = 0, RT_OPTIM_ADAM = 1, RT_OPTIM_ADAMW = 2 } rt_optim_kind;

typedef struct rt_optim_cfg {
    rt_optim_kind kind;
    float lr;           /* base rate, >= 0 (a schedule scales it; rt_optim_step takes the current one) */
    float weight_decay; /* >= 0; the implicit whole-buffer group's decay (see rt_optim_add_group) */
    /* SGD (dampening is 0) */
    float momentum; /* in [0, 1) */
    int nesterov;   /* needs momentum > 0 */
    /* Adam / AdamW */
    float beta1, beta2; /* each in [0, 1) */
    float eps;          /* >= 0, added outside the square root */
} rt_optim_cfg;

/* Defaults for kind, PyTorch's where it has them: SGD lr 0.1 (torch 1.13 requires one), momentum 0;
 * Adam lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 0 (AdamW 1e-2). */
rt_optim_cfg rt_optim_defaults(rt_optim_kind kind);
/* "sgd", "adam", "adamw" -> kind; an unknown name is RT_EINVAL naming the accepted ones. */
int rt_optim_kind_parse(rt_ctx *ctx, const char *name, rt_optim_kind *kind);
const char *rt_optim_kind_name(rt_optim_kind kind);

typedef struct rt_optim rt_optim;

/* A parameter group: floats [offset, offset+len) of the buffer, updated with lr * lr_mult and their
 * own weight decay. */
typedef struct rt_optim_group {
    size_t offset, len;
    float lr_mult, weight_decay;
} rt_optim_group;

/* An optimiser for a buffer of n floats. Validates cfg (errors name the field). NULL on error. */
rt_optim *rt_optim_new(rt_ctx *ctx, const rt_optim_cfg *cfg, size_t n);
void rt_optim_free(rt_optim *opt);
const rt_optim_cfg *rt_optim_config(const rt_optim *opt);

/* Groups. With none added, the whole buffer is one group (lr_mult 1, cfg->weight_decay). Once any
 * is added, only groups are updated: floats no group covers stay untouched. Groups must not overlap
 * and must lie inside the buffer. */
int rt_optim_add_group(rt_ctx *ctx, rt_optim *opt, size_t offset, size_t len, float lr_mult, float weight_decay);
void rt_optim_clear_groups(rt_optim *opt);
const rt_optim_group *rt_optim_groups(const rt_optim *opt, int *count);
/* Replaces the groups with ps's parameters (kind RT_PARAM): those marked no_decay get no_decay_wd,
 * the others wd; no_decay_wd < 0 means wd (RepDistiller decays everything). Neighbouring parameters
 * with the same decay merge into one range. ps->n must equal the optimiser's n; overlapping
 * parameters are an error. */
int rt_optim_groups_from_params(rt_ctx *ctx, rt_optim *opt, const rt_paramset *ps, float wd, float no_decay_wd);

/* One update of params (n floats) from grads at rate lr (>= 0). Element-wise, OpenMP-parallel:
 * bitwise reproducible for any thread count. Returns status; nothing changes on error. */
int rt_optim_step(rt_ctx *ctx, rt_optim *opt, float *params, const float *grads, float lr);

/* State for checkpoints: the contiguous buffer (SGD with momentum: n floats of momentum; Adam and
 * AdamW: n floats of m then n of v; plain SGD: none, *ptr NULL and *len 0) and the step count.
 * Restoring both (and the parameters) continues a run bit for bit. */
void rt_optim_state(rt_optim *opt, float **ptr, size_t *len);
int64_t rt_optim_step_count(const rt_optim *opt);
int rt_optim_set_step_count(rt_ctx *ctx, rt_optim *opt, int64_t steps);

/* ---- learning-rate schedules ---- */

typedef enum {
    RT_SCHED_CONSTANT = 0,
    RT_SCHED_MULTISTEP = 1, /* lr * gamma^(number of milestones <= t)          (MultiStepLR) */
    RT_SCHED_COSINE = 2,    /* eta_min + (lr - eta_min) (1 + cos(pi t / T)) / 2 (CosineAnnealingLR) */
    RT_SCHED_POLY = 3,      /* lr (1 - min(t, T) / T)^power                    (PolynomialLR) */
} rt_sched_kind;

#define RT_SCHED_MAX_MILESTONES 32

/* A schedule is plain data: fill it (rt_sched_defaults, then fields), check it once with
 * rt_sched_check, then ask rt_sched_lr at any t. t counts epochs (or steps: the unit is the
 * caller's, the same for milestones, T and warmup); fractional t gives per-iteration schedules. */
typedef struct rt_sched {
    rt_sched_kind kind;
    double lr;                                  /* base rate, >= 0 */
    int nmilestones;                            /* multistep */
    double milestones[RT_SCHED_MAX_MILESTONES]; /* non-decreasing, >= 0 */
    double gamma;                               /* multistep, > 0 */
    double T;                                   /* cosine: T_max; poly: total_iters; > 0 */
    double eta_min;                             /* cosine floor, >= 0 */
    double power;                               /* poly, >= 0 */
    /* Linear warm-up over [0, warmup): factor warmup_start_factor + (1 - warmup_start_factor) t /
     * warmup (LinearLR). warmup 0 = none. By default the factor multiplies the schedule evaluated
     * at t (ChainedScheduler: milestones and T stay absolute); warmup_shift 1 instead runs the
     * warm-up first and the schedule from t - warmup (SequentialLR with milestone warmup). */
    double warmup;              /* >= 0 */
    double warmup_start_factor; /* in [0, 1] */
    int warmup_shift;
} rt_sched;

/* Constant at lr, no warm-up, gamma 0.1, T 1, eta_min 0, power 1, warmup_start_factor 1/3. */
rt_sched rt_sched_defaults(rt_sched_kind kind, double lr);
/* "constant", "multistep", "cosine", "poly" -> kind. */
int rt_sched_kind_parse(rt_ctx *ctx, const char *name, rt_sched_kind *kind);
const char *rt_sched_kind_name(rt_sched_kind kind);
/* Validates s; errors name the field ("sched: gamma must be > 0, got 0"). */
int rt_sched_check(rt_ctx *ctx, const rt_sched *s);
/* The rate at t >= 0 (t < 0 counts as 0). Past T, cosine stays at eta_min and poly at 0 (PyTorch's
 * closed-form cosine would rise again). */
float rt_sched_lr(const rt_sched *s, double t);

#ifdef __cplusplus
}
#endif
#endif
