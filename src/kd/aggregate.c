/* Aggregation of K distillation-path losses (paper 000): equal, fixed and adaptive (exp(-z)) loss
 * aggregates built from ops, the min-norm solver for the multiobjective weights (Sener & Koltun's
 * MinNormSolver, Frank-Wolfe variant) and the per-path gradient and cosine helpers around it. */
#include <math.h>
#include <string.h>

#include "kernels/gram.h"
#include "ops/op_util.h"
#include "retort/aggregate.h"

#define RT_MINNORM_MAX_ITER 250
#define RT_MINNORM_STOP 1e-5
#define RT_MINNORM_GAMMA_MIN 0.001 /* the reference code's clamp of the best pair's gamma */
#define RT_MINNORM_GAMMA_MAX 0.999
#define RT_COMBINE_PAR_MIN (1 << 16)

/* ---- loss aggregates ---- */

/* The K one-element losses as one (K) tensor (a differentiable concat), or NULL with the message set. */
static rt_tensor *stack_losses(rt_ctx *ctx, const char *op, int K, rt_tensor *const *losses) {
    if (rt_status(ctx)) return NULL;
    if (K < 1 || !losses) {
        rt_fail(ctx, RT_EINVAL, "%s: needs at least one loss (K = %d)", op, K);
        return NULL;
    }
    rt_tensor **cols = rt_arena_alloc(ctx, (size_t)K * sizeof *cols);
    if (!cols) return NULL;
    const int64_t one = 1;
    for (int k = 0; k < K; k++) {
        if (!losses[k]) {
            if (!rt_status(ctx)) rt_fail(ctx, RT_EINVAL, "%s: loss %d is NULL", op, k);
            return NULL;
        }
        if (rt_numel(losses[k]) != 1) {
            char b[96];
            rt_fail(ctx, RT_ESHAPE, "%s: loss %d must have one element, got shape %s", op, k,
                    rt_shape_str(losses[k], b));
            return NULL;
        }
        if (!(cols[k] = rt_reshape(ctx, losses[k], 1, &one))) return NULL;
    }
    return rt_concat(ctx, K, cols, 0);
}

/* A (K) constant tensor holding w (no gradient). */
static rt_tensor *const_vec(rt_ctx *ctx, int K, const float *w) {
    rt_tensor *t = rt_new1(ctx, K);
    if (t) memcpy(t->data, w, (size_t)K * sizeof(float));
    return t;
}

rt_tensor *rt_aggregate_equal(rt_ctx *ctx, int K, rt_tensor *const *losses) {
    return rt_sum_all(ctx, stack_losses(ctx, "aggregate_equal", K, losses));
}

rt_tensor *rt_aggregate_fixed(rt_ctx *ctx, int K, rt_tensor *const *losses, const float *w) {
    rt_tensor *L = stack_losses(ctx, "aggregate_fixed", K, losses);
    if (!L) return NULL;
    if (!w) {
        rt_fail(ctx, RT_EINVAL, "aggregate_fixed: weights are NULL");
        return NULL;
    }
    return rt_sum_all(ctx, rt_mul(ctx, L, const_vec(ctx, K, w)));
}

rt_tensor *rt_adaptive_aggregate(rt_ctx *ctx, int K, rt_tensor *const *losses, const float *w, rt_tensor *z) {
    rt_tensor *L = stack_losses(ctx, "adaptive_aggregate", K, losses);
    if (!L) return NULL;
    if (!z) {
        rt_fail(ctx, RT_EINVAL, "adaptive_aggregate: z is NULL");
        return NULL;
    }
    if (rt_numel(z) != K) {
        char b[96];
        rt_fail(ctx, RT_ESHAPE, "adaptive_aggregate: z must have K = %d elements, got shape %s", K, rt_shape_str(z, b));
        return NULL;
    }
    const int64_t k64 = K;
    rt_tensor *zv = z->ndim == 1 ? z : rt_reshape(ctx, z, 1, &k64);
    if (w) L = rt_mul(ctx, L, const_vec(ctx, K, w));
    rt_tensor *v = rt_exp(ctx, rt_neg(ctx, zv)); /* v = exp(-z) */
    return rt_add(ctx, rt_sum_all(ctx, rt_mul(ctx, v, L)), rt_sum_all(ctx, zv));
}

/* ---- Gram matrix ---- */

int rt_gram(rt_ctx *ctx, int K, const float *const *vecs, size_t n, double *gram) {
    if (rt_status(ctx)) return rt_status(ctx);
    if (K < 1 || !vecs || !gram) return rt_fail(ctx, RT_EINVAL, "gram: needs K >= 1 vectors (K = %d)", K);
    for (int k = 0; k < K; k++)
        if (!vecs[k] && n) return rt_fail(ctx, RT_EINVAL, "gram: vector %d is NULL", k);
    double *work = rt_scratch(ctx, rt_gram_work_doubles(K) * sizeof(double));
    if (!work) return rt_status(ctx);
    rt_gram_f32(K, (int64_t)n, vecs, gram, work);
    return RT_OK;
}

void rt_gram_cosines(int K, const double *gram, double *cos_out) {
    for (int i = 0; i < K; i++)
        for (int j = 0; j < K; j++) {
            double d = sqrt(gram[i * K + i]) * sqrt(gram[j * K + j]);
            cos_out[i * K + j] = d > 0 ? gram[i * K + j] / d : 0.0;
        }
}

int rt_grad_cosines(rt_ctx *ctx, int K, size_t n, const float *G, double *cos_out) {
    if (rt_status(ctx)) return rt_status(ctx);
    if (K < 1 || !G || !cos_out) return rt_fail(ctx, RT_EINVAL, "grad_cosines: needs K >= 1 rows (K = %d)", K);
    rt_mark m = rt_arena_mark(ctx);
    const float **rows = rt_arena_alloc(ctx, (size_t)K * sizeof *rows);
    double *gram = rt_arena_alloc(ctx, (size_t)K * K * sizeof *gram);
    if (rows && gram) {
        for (int k = 0; k < K; k++) rows[k] = G + (size_t)k * n;
        if (rt_gram(ctx, K, rows, n, gram) == RT_OK) rt_gram_cosines(K, gram, cos_out);
    }
    rt_arena_release(ctx, m);
    return rt_status(ctx);
}

/* ---- min-norm solver ---- */

/* min over gamma in [0,1] of ||gamma x1 + (1 - gamma) x2||^2 from x1.x1, x1.x2, x2.x2: the minimiser
 * gamma and the minimum. The edges are exact (gamma 1 when x1 is the closer end of the segment and
 * the distance only grows toward x2, 0 symmetrically); the denominator is written as a sum of two
 * positive terms so it cannot vanish or change sign by rounding. */
static double line_min(double v11, double v12, double v22, double *cost) {
    if (v12 >= v11) {
        *cost = v11;
        return 1.0;
    }
    if (v12 >= v22) {
        *cost = v22;
        return 0.0;
    }
    double gamma = (v22 - v12) / ((v11 - v12) + (v22 - v12));
    *cost = v22 + gamma * (v12 - v22);
    return gamma;
}

static double quad_form(int K, const double *M, const double *c) {
    double s = 0;
    for (int i = 0; i < K; i++) {
        double r = 0;
        for (int j = 0; j < K; j++) r += M[i * K + j] * c[j];
        s += c[i] * r;
    }
    return s;
}

int rt_minnorm_scales(rt_ctx *ctx, int K, const double *gram, const rt_minnorm_opts *opts, double *scales_out) {
    if (rt_status(ctx)) return rt_status(ctx);
    if (K < 1 || !gram || !scales_out) return rt_fail(ctx, RT_EINVAL, "minnorm: needs K >= 1 gradients (K = %d)", K);
    rt_minnorm_normalise mode = opts ? opts->normalise : RT_MINNORM_NONE;
    if (mode < RT_MINNORM_NONE || mode > RT_MINNORM_LOSS_L2)
        return rt_fail(ctx, RT_EINVAL, "minnorm: unknown normalisation %d", (int)mode);
    int need_loss = mode == RT_MINNORM_LOSS || mode == RT_MINNORM_LOSS_L2;
    if (need_loss && !opts->losses)
        return rt_fail(ctx, RT_EINVAL, "minnorm: normalisation by loss needs the K loss values (opts.losses)");
    for (int k = 0; k < K; k++) {
        double g2 = gram[k * K + k];
        if (!isfinite(g2) || g2 < 0)
            return rt_fail(ctx, RT_EINVAL, "minnorm: squared norm of gradient %d is %g (NaN, Inf or negative)", k, g2);
        double s = 1.0;
        if (need_loss) {
            s = opts->losses[k];
            if (!(s > 0) || !isfinite(s))
                return rt_fail(ctx, RT_EINVAL, "minnorm: normalisation by loss needs loss %d > 0, got %g", k, s);
        }
        if ((mode == RT_MINNORM_L2 || mode == RT_MINNORM_LOSS_L2) && g2 > 0) s *= sqrt(g2);
        scales_out[k] = s;
    }
    return RT_OK;
}

/* Frank-Wolfe on the simplex for min c^T M c from the best pair; c and Mc: K doubles each. With
 * away steps, a step may also move weight away from the worst vertex of the support (and drop it),
 * which turns FW's sublinear zigzag into linear convergence. */
static void minnorm_solve(int K, const double *M, int max_iter, double stop, int away, double *c, double *Mc) {
    memset(c, 0, (size_t)K * sizeof *c);
    if (K == 1) {
        c[0] = 1.0;
        return;
    }
    /* the best pair: the reference clamps its gamma into [0.001, 0.999], so both stay in play */
    double best = INFINITY, gbest = 0.5;
    int bi = 0, bj = 1;
    for (int i = 0; i < K; i++)
        for (int j = i + 1; j < K; j++) {
            double cost, g = line_min(M[i * K + i], M[i * K + j], M[j * K + j], &cost);
            if (cost < best) {
                best = cost;
                gbest = g;
                bi = i;
                bj = j;
            }
        }
    gbest = fmin(fmax(gbest, RT_MINNORM_GAMMA_MIN), RT_MINNORM_GAMMA_MAX);
    c[bi] = gbest;
    c[bj] = 1.0 - gbest;
    if (K < 3) return; /* the segment is the whole hull */
    for (int it = 0; it < max_iter; it++) {
        for (int i = 0; i < K; i++) {
            double r = 0;
            for (int j = 0; j < K; j++) r += M[i * K + j] * c[j];
            Mc[i] = r;
        }
        int t = 0, a = -1; /* the steepest-descent vertex (argmin Mc, first on ties); the support's worst */
        for (int i = 1; i < K; i++)
            if (Mc[i] < Mc[t]) t = i;
        for (int i = 0; i < K; i++)
            if (c[i] > 0 && (a < 0 || Mc[i] > Mc[a])) a = i;
        double v11 = 0;
        for (int i = 0; i < K; i++) v11 += c[i] * Mc[i];
        double gap = v11 - Mc[t]; /* Frank-Wolfe gap: f(c) - f* <= 2 gap */
        if (gap <= 0) break;      /* no vertex improves: c is optimal */
        double change = 0;
        if (!away || gap >= Mc[a] - v11) { /* toward vertex t: c <- gamma c + (1 - gamma) e_t */
            double cost, gamma = line_min(v11, Mc[t], M[t * K + t], &cost);
            for (int i = 0; i < K; i++) {
                double nc = gamma * c[i] + (i == t ? 1.0 - gamma : 0.0);
                change += fabs(nc - c[i]);
                c[i] = nc;
            }
        } else { /* away from vertex a: c <- c + s (c - e_a), s in [0, c_a / (1 - c_a)] */
            double smax = c[a] / (1.0 - c[a]), slope = v11 - Mc[a], curv = (v11 - Mc[a]) + (M[a * K + a] - Mc[a]);
            double s = curv > 0 ? fmin(-slope / curv, smax) : smax;
            for (int i = 0; i < K; i++) {
                double nc = i == a ? (s == smax ? 0.0 : c[i] * (1 + s) - s) : c[i] * (1 + s);
                change += fabs(nc - c[i]);
                c[i] = nc;
            }
            if (s == smax) continue; /* a drop step can be tiny without the solution being near */
        }
        if (change < stop) break;
    }
}

int rt_minnorm_gram(rt_ctx *ctx, int K, const double *gram, const rt_minnorm_opts *opts, double *weights_out,
                    double *norm2_out) {
    if (rt_status(ctx)) return rt_status(ctx);
    if (K < 1 || !gram || !weights_out)
        return rt_fail(ctx, RT_EINVAL, "minnorm: needs K >= 1 gradients and a weights buffer (K = %d)", K);
    for (int i = 0; i < K * K; i++)
        if (!isfinite(gram[i]))
            return rt_fail(ctx, RT_EINVAL, "minnorm: Gram entry (%d,%d) is %g: gradient %d or %d is not finite", i / K,
                           i % K, gram[i], i / K, i % K);
    int max_iter = opts && opts->max_iter > 0 ? opts->max_iter : RT_MINNORM_MAX_ITER;
    double stop = opts && opts->stop > 0 ? opts->stop : RT_MINNORM_STOP;
    rt_mark m = rt_arena_mark(ctx);
    double *s = rt_arena_alloc(ctx, (size_t)(K * K + 3 * K) * sizeof *s);
    if (!s) return rt_status(ctx);
    double *M = s + K, *c = M + K * K, *Mc = c + K;
    if (rt_minnorm_scales(ctx, K, gram, opts, s) == RT_OK) {
        for (int i = 0; i < K; i++)
            for (int j = 0; j < K; j++) M[i * K + j] = gram[i * K + j] / (s[i] * s[j]);
        minnorm_solve(K, M, max_iter, stop, opts && opts->away_steps, c, Mc);
        memcpy(weights_out, c, (size_t)K * sizeof *c);
        if (norm2_out) *norm2_out = quad_form(K, M, c);
    }
    rt_arena_release(ctx, m);
    return rt_status(ctx);
}

int rt_minnorm(rt_ctx *ctx, int K, const float *const *vecs, size_t n, const rt_minnorm_opts *opts, double *weights_out,
               double *norm2_out) {
    if (rt_status(ctx)) return rt_status(ctx);
    if (K < 1) return rt_fail(ctx, RT_EINVAL, "minnorm: needs K >= 1 gradients (K = %d)", K);
    rt_mark m = rt_arena_mark(ctx);
    double *gram = rt_arena_alloc(ctx, (size_t)K * K * sizeof *gram);
    if (gram && rt_gram(ctx, K, vecs, n, gram) == RT_OK) rt_minnorm_gram(ctx, K, gram, opts, weights_out, norm2_out);
    rt_arena_release(ctx, m);
    return rt_status(ctx);
}

/* ---- per-path gradients ---- */

int rt_path_grads_range(rt_ctx *ctx, rt_paramset *ps, int K, rt_tensor *const *losses, size_t off, size_t len,
                        float *G) {
    if (rt_status(ctx)) return rt_status(ctx);
    if (!ps || !ps->finalized || !ps->bound_grad)
        return rt_fail(ctx, RT_ESTATE, "path_grads: the parameter set is not finalized");
    if (K < 1 || !losses || (!G && len))
        return rt_fail(ctx, RT_EINVAL, "path_grads: needs K >= 1 losses and an output buffer (K = %d)", K);
    if (off > ps->n || len > ps->n - off)
        return rt_fail(ctx, RT_EINVAL, "path_grads: range [%zu, %zu) outside the %zu parameters", off, off + len,
                       ps->n);
    for (int k = 0; k < K; k++) {
        if (!losses[k]) return rt_fail(ctx, RT_EINVAL, "path_grads: loss %d is NULL", k);
        if (rt_numel(losses[k]) != 1) {
            char b[96];
            return rt_fail(ctx, RT_ESHAPE, "path_grads: loss %d must have one element, got shape %s", k,
                           rt_shape_str(losses[k], b));
        }
    }
    int any = 0;
    for (int k = 0; k < K; k++) any |= losses[k]->requires_grad;
    if (!any) return rt_fail(ctx, RT_ESTATE, "path_grads: no path loss requires grad (grad mode off? detached?)");
    float *g = ps->bound_grad; /* what the views' grad pointers point into now */
    for (int k = 0; k < K; k++) {
        float *row = G + (size_t)k * len;
        memset(g, 0, ps->n * sizeof *g);
        if (losses[k]->requires_grad) {
            int rc = rt_backward(ctx, losses[k]);
            if (rc) {
                memset(g, 0, ps->n * sizeof *g);
                return rc;
            }
            memcpy(row, g + off, len * sizeof *row);
        } else {
            memset(row, 0, len * sizeof *row); /* constant loss: nothing reaches any parameter */
        }
    }
    memset(g, 0, ps->n * sizeof *g);
    return RT_OK;
}

int rt_path_grads(rt_ctx *ctx, rt_paramset *ps, int K, rt_tensor *const *losses, float *G) {
    return rt_path_grads_range(ctx, ps, K, losses, 0, ps ? ps->n : 0, G);
}

void rt_path_grads_combine(int K, size_t n, const float *G, const double *c, float alpha, float *dst) {
    int64_t n64 = (int64_t)n;
#pragma omp parallel for schedule(static) if (n64 * K > RT_COMBINE_PAR_MIN) /* over elements; k summed in order */
    for (int64_t i = 0; i < n64; i++) {
        double s = 0;
        for (int k = 0; k < K; k++) s += c[k] * (double)G[(size_t)k * n + (size_t)i];
        dst[i] += (float)(alpha * s);
    }
}
