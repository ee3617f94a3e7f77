/* Learning-rate schedules as closed forms of t (epochs or steps, fractional allowed): PyTorch's
 * MultiStepLR, CosineAnnealingLR, PolynomialLR and LinearLR warm-up, evaluated in double as torch
 * does in Python. A schedule is plain data, so resuming a run needs only t. */
#include <math.h>
#include <string.h>

#include "retort/optim.h"

static const char *const kind_names[] = {"constant", "multistep", "cosine", "poly"};
#define NKINDS (int)(sizeof kind_names / sizeof kind_names[0])

rt_sched rt_sched_defaults(rt_sched_kind kind, double lr) {
    rt_sched s;
    memset(&s, 0, sizeof s);
    s.kind = kind;
    s.lr = lr;
    s.gamma = 0.1;
    s.T = 1.0;
    s.power = 1.0;
    s.warmup_start_factor = 1.0 / 3.0; /* LinearLR's default */
    return s;
}

const char *rt_sched_kind_name(rt_sched_kind kind) {
    return (int)kind >= 0 && (int)kind < NKINDS ? kind_names[kind] : "unknown";
}

int rt_sched_kind_parse(rt_ctx *ctx, const char *name, rt_sched_kind *kind) {
    for (int i = 0; name && i < NKINDS; i++)
        if (!strcmp(name, kind_names[i])) {
            *kind = (rt_sched_kind)i;
            return RT_OK;
        }
    return rt_fail(ctx, RT_EINVAL, "sched: kind '%s' is not one of constant, multistep, cosine, poly",
                   name ? name : "(null)");
}

/* lo <= x (strictly when strict), finite; NaN fails every comparison. */
static int check_min(rt_ctx *ctx, const char *field, double x, double lo, int strict) {
    if (!(strict ? x > lo : x >= lo) || isinf(x))
        return rt_fail(ctx, RT_EINVAL, "sched: %s must be %s %g, got %g", field, strict ? ">" : ">=", lo, x);
    return RT_OK;
}

int rt_sched_check(rt_ctx *ctx, const rt_sched *s) {
    int rc;
    if (!s) return rt_fail(ctx, RT_EINVAL, "sched: schedule is NULL");
    if ((int)s->kind < 0 || (int)s->kind >= NKINDS)
        return rt_fail(ctx, RT_EINVAL, "sched: kind %d is not one of constant, multistep, cosine, poly", (int)s->kind);
    if ((rc = check_min(ctx, "lr", s->lr, 0.0, 0))) return rc;
    if (s->kind == RT_SCHED_MULTISTEP) {
        if (s->nmilestones < 0 || s->nmilestones > RT_SCHED_MAX_MILESTONES)
            return rt_fail(ctx, RT_EINVAL, "sched: nmilestones must be in [0, %d], got %d", RT_SCHED_MAX_MILESTONES,
                           s->nmilestones);
        for (int i = 0; i < s->nmilestones; i++) {
            if ((rc = check_min(ctx, "milestones", s->milestones[i], 0.0, 0))) return rc;
            if (i > 0 && s->milestones[i] < s->milestones[i - 1])
                return rt_fail(ctx, RT_EINVAL, "sched: milestones must not decrease, got %g after %g", s->milestones[i],
                               s->milestones[i - 1]);
        }
        if ((rc = check_min(ctx, "gamma", s->gamma, 0.0, 1))) return rc;
    }
    if (s->kind == RT_SCHED_COSINE || s->kind == RT_SCHED_POLY)
        if ((rc = check_min(ctx, "T", s->T, 0.0, 1))) return rc;
    if (s->kind == RT_SCHED_COSINE && (rc = check_min(ctx, "eta_min", s->eta_min, 0.0, 0))) return rc;
    if (s->kind == RT_SCHED_POLY && (rc = check_min(ctx, "power", s->power, 0.0, 0))) return rc;
    if ((rc = check_min(ctx, "warmup", s->warmup, 0.0, 0))) return rc;
    if (!(s->warmup_start_factor >= 0.0 && s->warmup_start_factor <= 1.0))
        return rt_fail(ctx, RT_EINVAL, "sched: warmup_start_factor must be in [0, 1], got %g", s->warmup_start_factor);
    return RT_OK;
}

/* The schedule without warm-up at u >= 0. */
static double main_lr(const rt_sched *s, double u) {
    switch (s->kind) {
    case RT_SCHED_MULTISTEP: {
        int k = 0; /* bisect_right: milestones already reached */
        while (k < s->nmilestones && k < RT_SCHED_MAX_MILESTONES && s->milestones[k] <= u) k++;
        return s->lr * pow(s->gamma, k);
    }
    case RT_SCHED_COSINE:
        if (!(s->T > 0.0) || u >= s->T) return s->eta_min;
        return s->eta_min + (s->lr - s->eta_min) * (1.0 + cos(M_PI * u / s->T)) / 2.0;
    case RT_SCHED_POLY:
        if (!(s->T > 0.0) || u >= s->T) return s->power == 0.0 ? s->lr : 0.0;
        return s->lr * pow(1.0 - u / s->T, s->power);
    case RT_SCHED_CONSTANT:
    default:
        return s->lr;
    }
}

float rt_sched_lr(const rt_sched *s, double t) {
    if (!(t >= 0.0)) t = 0.0;
    if (!(s->warmup > 0.0) || t >= s->warmup)
        return (float)main_lr(s, s->warmup_shift && s->warmup > 0.0 ? t - s->warmup : t);
    const double sf = s->warmup_start_factor, f = sf + (1.0 - sf) * t / s->warmup;
    return (float)(f * (s->warmup_shift ? s->lr : main_lr(s, t)));
}
