/* Finite-difference gradient check: central differences of a random projection of the output,
 * accumulated in double, with kink detection by comparing step sizes eps and eps/2. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ctx_impl.h"
#include "retort/autograd.h"

/* L = sum r_i * out_i in double; the forward runs without recording and is released after. */
static int eval_loss(rt_ctx *ctx, rt_gradcheck_fn f, void *user, rt_tensor **in, const double *r, int64_t nr,
                     uint64_t seed, double *L) {
    rt_mark m = rt_arena_mark(ctx);
    int prev = rt_set_grad_enabled(ctx, 0);
    rt_rng_seed(&ctx->rng, seed);
    rt_tensor *out = f(ctx, in, user);
    rt_set_grad_enabled(ctx, prev);
    if (!out) {
        rt_arena_release(ctx, m);
        return rt_status(ctx) ? rt_status(ctx) : RT_EINVAL;
    }
    if (rt_numel(out) != nr) {
        rt_arena_release(ctx, m);
        return rt_fail(ctx, RT_ESHAPE, "gradcheck: output size changed between calls");
    }
    float *o = malloc((size_t)nr * sizeof(float));
    rt_copy_to(out, o);
    double s = 0;
    for (int64_t i = 0; i < nr; i++) s += r[i] * (double)o[i];
    free(o);
    *L = s;
    rt_arena_release(ctx, m);
    return RT_OK;
}

int rt_gradcheck(rt_ctx *ctx, rt_gradcheck_fn f, void *user, int n, rt_tensor **in, const rt_gradcheck_opts *opts,
                 char *report) {
    rt_gradcheck_opts o = {1e-3, 1e-2, 0, 1};
    if (opts) {
        if (opts->eps > 0) o.eps = opts->eps;
        if (opts->tol > 0) o.tol = opts->tol;
        o.max_points = opts->max_points;
        if (opts->seed) o.seed = opts->seed;
    }
    if (report) report[0] = 0;
    rt_mark m0 = rt_arena_mark(ctx);
    /* analytic: one recorded forward and one backward seeded with the projection r */
    for (int k = 0; k < n; k++) {
        if (!in[k]->requires_grad || !in[k]->grad) continue;
        memset(in[k]->grad, 0, (size_t)rt_numel(in[k]) * sizeof(float));
    }
    rt_rng_seed(&ctx->rng, o.seed);
    rt_tensor *out = f(ctx, in, user);
    if (!out) return rt_status(ctx) ? rt_status(ctx) : RT_EINVAL;
    int64_t nr = rt_numel(out);
    double *r = malloc((size_t)nr * sizeof(double));
    float *rf = malloc((size_t)nr * sizeof(float));
    rt_rng pr;
    rt_rng_seed(&pr, o.seed * 7919 + 13);
    for (int64_t i = 0; i < nr; i++) {
        rf[i] = (float)(rt_rng_uniform(&pr) * 2 - 1);
        r[i] = rf[i];
    }
    int rc = rt_backward_seed(ctx, out, rf);
    rt_arena_release(ctx, m0);
    double worst = 0;
    char worst_msg[400] = "";
    for (int k = 0; k < n && rc == RT_OK; k++) {
        rt_tensor *x = in[k];
        if (!x->requires_grad || !x->grad) continue;
        int64_t numel = rt_numel(x);
        float *ga = malloc((size_t)numel * sizeof(float));
        memcpy(ga, x->grad, (size_t)numel * sizeof(float));
        double gmax = 0;
        for (int64_t i = 0; i < numel; i++) gmax = fmax(gmax, fabs(ga[i]));
        int64_t npts = o.max_points > 0 && o.max_points < numel ? o.max_points : numel;
        rt_rng sel;
        rt_rng_seed(&sel, o.seed + 101 * (uint64_t)k);
        for (int64_t p = 0; p < npts && rc == RT_OK; p++) {
            int64_t i = npts == numel ? p : (int64_t)rt_rng_below(&sel, (uint64_t)numel);
            RT_ASSERT(rt_is_contiguous(x));
            float x0 = x->data[i];
            double Lp, Lm, Lp2, Lm2;
            x->data[i] = (float)(x0 + o.eps);
            rc = eval_loss(ctx, f, user, in, r, nr, o.seed, &Lp);
            x->data[i] = (float)(x0 - o.eps);
            if (!rc) rc = eval_loss(ctx, f, user, in, r, nr, o.seed, &Lm);
            x->data[i] = (float)(x0 + o.eps / 2);
            if (!rc) rc = eval_loss(ctx, f, user, in, r, nr, o.seed, &Lp2);
            x->data[i] = (float)(x0 - o.eps / 2);
            if (!rc) rc = eval_loss(ctx, f, user, in, r, nr, o.seed, &Lm2);
            x->data[i] = x0;
            if (rc) break;
            /* the actual perturbation in float may differ from eps */
            double h = (double)(float)(x0 + o.eps) - (double)(float)(x0 - o.eps);
            double h2 = (double)(float)(x0 + o.eps / 2) - (double)(float)(x0 - o.eps / 2);
            double num = (Lp - Lm) / h, num2 = (Lp2 - Lm2) / h2;
            double a = ga[i];
            double scale = fmax(fmax(fabs(a), fabs(num)), fmax(0.1 * gmax, 1e-3));
            if (fabs(num - num2) > o.tol * scale) continue; /* a kink within eps: skip the point */
            double err = fabs(a - num) / scale;
            if (err > worst) {
                worst = err;
                snprintf(worst_msg, sizeof worst_msg, "input %d elem %lld: analytic %.6g, numeric %.6g (rel %.3g)", k,
                         (long long)i, a, num, err);
            }
        }
        free(ga);
    }
    free(r);
    free(rf);
    if (rc) return rc;
    if (report) snprintf(report, 512, "%s", worst_msg[0] ? worst_msg : "all points agree");
    return worst > o.tol ? RT_EINVAL : RT_OK;
}
