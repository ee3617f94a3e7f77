/* Optimisers over the flat parameter buffer: configuration checks, parameter groups, and the step,
 * which runs one update kernel (src/kernels/optim.c) per group. State is one buffer plus a step
 * count, exactly what a checkpoint needs to resume bit for bit. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/optim.h"
#include "retort/optim.h"

struct rt_optim {
    rt_optim_cfg cfg;
    size_t n;
    float *state; /* SGD+momentum: buf (n); Adam/AdamW: m (n) then v (n); else NULL */
    size_t state_len;
    int64_t steps;
    rt_optim_group *groups;
    int ngroups, capgroups;
};

static const char *const kind_names[] = {"sgd", "adam", "adamw"};
#define NKINDS (int)(sizeof kind_names / sizeof kind_names[0])

rt_optim_cfg rt_optim_defaults(rt_optim_kind kind) {
    rt_optim_cfg c = {kind, 0.1f, 0.0f, 0.0f, 0, 0.9f, 0.999f, 1e-8f};
    if (kind == RT_OPTIM_ADAM || kind == RT_OPTIM_ADAMW) c.lr = 1e-3f;
    if (kind == RT_OPTIM_ADAMW) c.weight_decay = 1e-2f;
    return c;
}

const char *rt_optim_kind_name(rt_optim_kind kind) {
    return (int)kind >= 0 && (int)kind < NKINDS ? kind_names[kind] : "unknown";
}

int rt_optim_kind_parse(rt_ctx *ctx, const char *name, rt_optim_kind *kind) {
    for (int i = 0; name && i < NKINDS; i++)
        if (!strcmp(name, kind_names[i])) {
            *kind = (rt_optim_kind)i;
            return RT_OK;
        }
    return rt_fail(ctx, RT_EINVAL, "optim: kind '%s' is not one of sgd, adam, adamw", name ? name : "(null)");
}

/* x >= lo (and finite); "!(x >= lo)" also catches NaN. */
static int check_min(rt_ctx *ctx, const char *field, float x, float lo) {
    if (!(x >= lo) || isinf(x)) return rt_fail(ctx, RT_EINVAL, "optim: %s must be >= %g, got %g", field, lo, x);
    return RT_OK;
}
static int check_unit(rt_ctx *ctx, const char *field, float x) {
    if (!(x >= 0.0f && x < 1.0f)) return rt_fail(ctx, RT_EINVAL, "optim: %s must be in [0, 1), got %g", field, x);
    return RT_OK;
}

static int check_cfg(rt_ctx *ctx, const rt_optim_cfg *c) {
    int rc;
    if ((int)c->kind < 0 || (int)c->kind >= NKINDS)
        return rt_fail(ctx, RT_EINVAL, "optim: kind %d is not one of sgd, adam, adamw", (int)c->kind);
    if ((rc = check_min(ctx, "lr", c->lr, 0.0f))) return rc;
    if ((rc = check_min(ctx, "weight_decay", c->weight_decay, 0.0f))) return rc;
    if (c->kind == RT_OPTIM_SGD) {
        if ((rc = check_unit(ctx, "momentum", c->momentum))) return rc;
        if (c->nesterov && c->momentum == 0.0f)
            return rt_fail(ctx, RT_EINVAL, "optim: nesterov needs momentum > 0, got momentum 0");
    } else {
        if ((rc = check_unit(ctx, "beta1", c->beta1))) return rc;
        if ((rc = check_unit(ctx, "beta2", c->beta2))) return rc;
        if ((rc = check_min(ctx, "eps", c->eps, 0.0f))) return rc;
    }
    return RT_OK;
}

rt_optim *rt_optim_new(rt_ctx *ctx, const rt_optim_cfg *cfg, size_t n) {
    if (!cfg) {
        rt_fail(ctx, RT_EINVAL, "optim: cfg is NULL");
        return NULL;
    }
    if (check_cfg(ctx, cfg)) return NULL;
    size_t per = cfg->kind == RT_OPTIM_SGD ? (cfg->momentum > 0.0f ? 1 : 0) : 2;
    if (n > SIZE_MAX / sizeof(float) / 2) {
        rt_fail(ctx, RT_EINVAL, "optim: buffer of %zu floats is too large", n);
        return NULL;
    }
    rt_optim *o = calloc(1, sizeof *o);
    if (!o) {
        rt_fail(ctx, RT_ENOMEM, "optim: out of memory");
        return NULL;
    }
    o->cfg = *cfg;
    o->n = n;
    o->state_len = per * n;
    if (o->state_len) {
        o->state = calloc(o->state_len, sizeof(float));
        if (!o->state) {
            free(o);
            rt_fail(ctx, RT_ENOMEM, "optim: out of memory for %zu floats of state", per * n);
            return NULL;
        }
    }
    return o;
}

void rt_optim_free(rt_optim *opt) {
    if (!opt) return;
    free(opt->state);
    free(opt->groups);
    free(opt);
}

const rt_optim_cfg *rt_optim_config(const rt_optim *opt) { return &opt->cfg; }

void rt_optim_clear_groups(rt_optim *opt) { opt->ngroups = 0; }

const rt_optim_group *rt_optim_groups(const rt_optim *opt, int *count) {
    if (count) *count = opt->ngroups;
    return opt->groups;
}

int rt_optim_add_group(rt_ctx *ctx, rt_optim *opt, size_t offset, size_t len, float lr_mult, float weight_decay) {
    int rc;
    if (!opt) return rt_fail(ctx, RT_EINVAL, "optim: add_group on a NULL optimiser");
    if (offset > opt->n || len > opt->n - offset)
        return rt_fail(ctx, RT_EINVAL, "optim: group [%zu, %zu) lies outside the buffer of %zu floats", offset,
                       offset + len, opt->n);
    if ((rc = check_min(ctx, "group lr_mult", lr_mult, 0.0f))) return rc;
    if ((rc = check_min(ctx, "group weight_decay", weight_decay, 0.0f))) return rc;
    for (int i = 0; i < opt->ngroups; i++) {
        const rt_optim_group *g = &opt->groups[i];
        if (len && g->len && offset < g->offset + g->len && g->offset < offset + len)
            return rt_fail(ctx, RT_EINVAL, "optim: group [%zu, %zu) overlaps group %d [%zu, %zu)", offset, offset + len,
                           i, g->offset, g->offset + g->len);
    }
    if (opt->ngroups == opt->capgroups) {
        int cap = opt->capgroups ? 2 * opt->capgroups : 8;
        rt_optim_group *g = realloc(opt->groups, (size_t)cap * sizeof *g);
        if (!g) return rt_fail(ctx, RT_ENOMEM, "optim: out of memory for %d groups", cap);
        opt->groups = g;
        opt->capgroups = cap;
    }
    opt->groups[opt->ngroups++] = (rt_optim_group){offset, len, lr_mult, weight_decay};
    return RT_OK;
}

static int cmp_param_offset(const void *a, const void *b) {
    const rt_param *x = *(rt_param *const *)a, *y = *(rt_param *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

int rt_optim_groups_from_params(rt_ctx *ctx, rt_optim *opt, const rt_paramset *ps, float wd, float no_decay_wd) {
    int rc;
    if (!opt || !ps)
        return rt_fail(ctx, RT_EINVAL, "optim: groups_from_params given a NULL %s", opt ? "paramset" : "optimiser");
    if (ps->n != opt->n)
        return rt_fail(ctx, RT_EINVAL, "optim: paramset has %zu floats, optimiser was made for %zu", ps->n, opt->n);
    if ((rc = check_min(ctx, "weight_decay", wd, 0.0f))) return rc;
    if (no_decay_wd < 0.0f) no_decay_wd = wd;
    if ((rc = check_min(ctx, "no_decay weight_decay", no_decay_wd, 0.0f))) return rc;
    rt_param **order = malloc((size_t)(ps->count > 0 ? ps->count : 1) * sizeof *order);
    if (!order) return rt_fail(ctx, RT_ENOMEM, "optim: out of memory");
    int np = 0;
    for (int i = 0; i < ps->count; i++)
        if (ps->items[i]->kind == RT_PARAM && ps->items[i]->numel) order[np++] = ps->items[i];
    qsort(order, (size_t)np, sizeof *order, cmp_param_offset);
    rt_optim_clear_groups(opt);
    /* Runs of parameters that touch and get the same decay become one range (with no_decay_wd ==
     * wd, a whole packed model is one group). */
    for (int i = 0; i < np;) {
        size_t off = order[i]->offset, end = off + order[i]->numel;
        float d = order[i]->no_decay ? no_decay_wd : wd;
        int j = i + 1;
        while (j < np && order[j]->offset == end && (order[j]->no_decay ? no_decay_wd : wd) == d)
            end += order[j++]->numel;
        if ((rc = rt_optim_add_group(ctx, opt, off, end - off, 1.0f, d))) {
            rt_optim_clear_groups(opt);
            free(order);
            return rc;
        }
        i = j;
    }
    free(order);
    return RT_OK;
}

void rt_optim_state(rt_optim *opt, float **ptr, size_t *len) {
    *ptr = opt->state;
    *len = opt->state_len;
}

int64_t rt_optim_step_count(const rt_optim *opt) { return opt->steps; }

int rt_optim_set_step_count(rt_ctx *ctx, rt_optim *opt, int64_t steps) {
    if (steps < 0) return rt_fail(ctx, RT_EINVAL, "optim: step count must be >= 0, got %lld", (long long)steps);
    opt->steps = steps;
    return RT_OK;
}

static void update_range(rt_optim *o, float *p, const float *g, size_t off, size_t len, float lr, float wd,
                         float step_size, float bc2_sqrt) {
    const rt_optim_cfg *c = &o->cfg;
    int64_t n = (int64_t)len;
    if (c->kind == RT_OPTIM_SGD) {
        float *buf = o->state_len ? o->state + off : NULL;
        rt_sgd_update(p + off, g + off, buf, n, lr, wd, c->momentum, c->nesterov, o->steps == 0);
    } else {
        float *m = o->state + off, *v = o->state + o->n + off;
        int adamw = c->kind == RT_OPTIM_ADAMW;
        rt_adam_update(p + off, g + off, m, v, n, lr, adamw ? 0.0f : wd, adamw ? wd : 0.0f, c->beta1, c->beta2, c->eps,
                       step_size, bc2_sqrt);
    }
}

int rt_optim_step(rt_ctx *ctx, rt_optim *opt, float *params, const float *grads, float lr) {
    int rc;
    if (rt_status(ctx)) return rt_status(ctx);
    if (!opt || !params || !grads)
        return rt_fail(ctx, RT_EINVAL, "optim: step given a NULL %s",
                       !opt      ? "optimiser"
                       : !params ? "params"
                                 : "grads");
    if ((rc = check_min(ctx, "lr", lr, 0.0f))) return rc;
    const rt_optim_cfg *c = &opt->cfg;
    /* Adam's bias corrections for step t = steps + 1, in double as torch computes them in Python
     * (both are > 0: the betas are in [0, 1)). */
    const double t = (double)(opt->steps + 1);
    const double bc1 = c->kind == RT_OPTIM_SGD ? 1.0 : 1.0 - pow(c->beta1, t);
    const float bc2_sqrt = c->kind == RT_OPTIM_SGD ? 1.0f : (float)sqrt(1.0 - pow(c->beta2, t));
    rt_profile_begin(ctx, "optim step");
    if (opt->ngroups == 0)
        update_range(opt, params, grads, 0, opt->n, lr, c->weight_decay, (float)(lr / bc1), bc2_sqrt);
    for (int i = 0; i < opt->ngroups; i++) {
        const rt_optim_group *g = &opt->groups[i];
        const float glr = lr * g->lr_mult;
        update_range(opt, params, grads, g->offset, g->len, glr, g->weight_decay, (float)(glr / bc1), bc2_sqrt);
    }
    rt_profile_end(ctx);
    opt->steps++;
    return RT_OK;
}
