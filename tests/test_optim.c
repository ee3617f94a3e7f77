/* Optimisers and schedules: SGD (plain, momentum, Nesterov, weight decay), Adam and AdamW against
 * closed forms computed here in double; convergence; parameter groups; bitwise resume from saved
 * state; thread-count independence; schedules at chosen epochs; configuration errors. */
#include "retort/optim.h"
#include "test.h"

#define TOL 1e-6 /* float arithmetic over three steps of O(1) values */

static rt_optim *mk(rt_ctx *ctx, rt_optim_kind kind, float lr, float wd, float mu, int nesterov) {
    rt_optim_cfg c = rt_optim_defaults(kind);
    c.lr = lr;
    c.weight_decay = wd;
    c.momentum = mu;
    c.nesterov = nesterov;
    return rt_optim_new(ctx, &c, 3);
}

static const double P0[3] = {1.5, -0.75, 0.25}, G[3] = {0.5, -2.0, 0.125};

/* Three steps with a constant gradient G from P0. */
static void run3(rt_ctx *ctx, rt_optim *o, float lr, float *p) {
    float g[3];
    for (int i = 0; i < 3; i++) p[i] = (float)P0[i], g[i] = (float)G[i];
    for (int s = 0; s < 3; s++) rt_optim_step(ctx, o, p, g, lr);
}

TEST(sgd_plain_and_momentum_closed_form) {
    rt_ctx *ctx = rt_ctx_new();
    const double lr = 0.1, mu = 0.9;
    float p[3];
    /* plain: p3 = p0 - 3 lr g; no state */
    rt_optim *o = mk(ctx, RT_OPTIM_SGD, (float)lr, 0, 0, 0);
    CHECK(o);
    float *st;
    size_t len;
    rt_optim_state(o, &st, &len);
    CHECK(st == NULL && len == 0);
    run3(ctx, o, (float)lr, p);
    for (int i = 0; i < 3; i++) CHECK_CLOSE(p[i], P0[i] - 3 * lr * G[i], TOL);
    CHECK(rt_optim_step_count(o) == 3);
    rt_optim_free(o);
    /* momentum: buf1 = g, buf2 = (1 + mu) g, buf3 = (1 + mu + mu^2) g; p3 = p0 - lr (3 + 2mu + mu^2) g */
    o = mk(ctx, RT_OPTIM_SGD, (float)lr, 0, (float)mu, 0);
    run3(ctx, o, (float)lr, p);
    rt_optim_state(o, &st, &len);
    CHECK(len == 3);
    for (int i = 0; i < 3; i++) {
        CHECK_CLOSE(p[i], P0[i] - lr * (3 + 2 * mu + mu * mu) * G[i], TOL);
        CHECK_CLOSE(st[i], (1 + mu + mu * mu) * G[i], TOL);
    }
    rt_optim_free(o);
    /* Nesterov: d_k = g + mu buf_k = (1 + mu + ... + mu^k) g; p3 = p0 - lr (3 + 3mu + 2mu^2 + mu^3) g */
    o = mk(ctx, RT_OPTIM_SGD, (float)lr, 0, (float)mu, 1);
    run3(ctx, o, (float)lr, p);
    for (int i = 0; i < 3; i++) CHECK_CLOSE(p[i], P0[i] - lr * (3 + 3 * mu + 2 * mu * mu + mu * mu * mu) * G[i], TOL);
    rt_optim_free(o);
    rt_ctx_free(ctx);
}

TEST(sgd_weight_decay_closed_form) {
    rt_ctx *ctx = rt_ctx_new();
    const double lr = 0.1, wd = 0.05, mu = 0.8;
    float p[3];
    /* plain: p_{k+1} = c p_k - lr g with c = 1 - lr wd, so p3 = c^3 p0 - lr g (1 + c + c^2) */
    rt_optim *o = mk(ctx, RT_OPTIM_SGD, (float)lr, (float)wd, 0, 0);
    run3(ctx, o, (float)lr, p);
    const double c = 1 - lr * wd;
    for (int i = 0; i < 3; i++) CHECK_CLOSE(p[i], c * c * c * P0[i] - lr * G[i] * (1 + c + c * c), TOL);
    rt_optim_free(o);
    /* momentum and Nesterov with decay, step by step from torch.optim.SGD's definition */
    for (int nest = 0; nest < 2; nest++) {
        o = mk(ctx, RT_OPTIM_SGD, (float)lr, (float)wd, (float)mu, nest);
        run3(ctx, o, (float)lr, p);
        for (int i = 0; i < 3; i++) {
            double x = P0[i], d1 = G[i] + wd * x, b1 = d1;
            x -= lr * (nest ? d1 + mu * b1 : b1);
            double d2 = G[i] + wd * x, b2 = mu * b1 + d2;
            x -= lr * (nest ? d2 + mu * b2 : b2);
            double d3 = G[i] + wd * x, b3 = mu * b2 + d3;
            x -= lr * (nest ? d3 + mu * b3 : b3);
            CHECKF(fabs(p[i] - x) <= TOL, "nesterov %d: p[%d] = %.9g, expected %.9g", nest, i, p[i], x);
        }
        rt_optim_free(o);
    }
    rt_ctx_free(ctx);
}

TEST(adam_constant_gradient_closed_form) {
    /* With a constant g, bias correction makes m_hat = g and v_hat = g^2 at every step, so each step
     * moves by lr g / (|g| + eps): eps outside the square root (it is large here so that matters). */
    rt_ctx *ctx = rt_ctx_new();
    const double lr = 0.01, eps = 0.05;
    rt_optim_cfg cfg = rt_optim_defaults(RT_OPTIM_ADAM);
    cfg.lr = (float)lr;
    cfg.eps = (float)eps;
    rt_optim *o = rt_optim_new(ctx, &cfg, 3);
    CHECKF(o, "%s", rt_errmsg(ctx));
    float p[3];
    run3(ctx, o, (float)lr, p);
    float *st;
    size_t len;
    rt_optim_state(o, &st, &len);
    CHECK(len == 6);
    const double b1 = 0.9, b2 = 0.999;
    for (int i = 0; i < 3; i++) {
        CHECK_CLOSE(p[i], P0[i] - 3 * lr * G[i] / (fabs(G[i]) + eps), TOL);
        CHECK_CLOSE(st[i], (1 - b1 * b1 * b1) * G[i], TOL);            /* m3 */
        CHECK_CLOSE(st[3 + i], (1 - b2 * b2 * b2) * G[i] * G[i], TOL); /* v3 */
    }
    rt_optim_free(o);
    /* AdamW: p_k = c p_{k-1} - u with c = 1 - lr wd, u = lr g / (|g| + eps) */
    const double wd = 0.5;
    cfg = rt_optim_defaults(RT_OPTIM_ADAMW);
    cfg.eps = (float)eps;
    cfg.weight_decay = (float)wd;
    o = rt_optim_new(ctx, &cfg, 3);
    run3(ctx, o, (float)lr, p);
    const double c = 1 - lr * wd;
    for (int i = 0; i < 3; i++) {
        double u = lr * G[i] / (fabs(G[i]) + eps);
        CHECK_CLOSE(p[i], c * c * c * P0[i] - u * (1 + c + c * c), TOL);
    }
    rt_optim_free(o);
    rt_ctx_free(ctx);
}

TEST(adam_varying_gradient_and_l2) {
    /* Gradients that change every step, and Adam's L2 decay (g += wd p), from torch.optim.Adam's
     * definition written out in double. */
    rt_ctx *ctx = rt_ctx_new();
    const double lr = 0.02, b1 = 0.8, b2 = 0.95, eps = 1e-3, wd = 0.1;
    const double gs[3][3] = {{0.5, -2.0, 0.125}, {-0.25, 1.0, 0.5}, {1.5, 0.75, -0.5}};
    for (int l2 = 0; l2 < 2; l2++) {
        rt_optim_cfg cfg = rt_optim_defaults(RT_OPTIM_ADAM);
        cfg.lr = (float)lr, cfg.beta1 = (float)b1, cfg.beta2 = (float)b2, cfg.eps = (float)eps;
        cfg.weight_decay = l2 ? (float)wd : 0.0f;
        rt_optim *o = rt_optim_new(ctx, &cfg, 3);
        CHECK(o);
        float p[3], g[3];
        for (int i = 0; i < 3; i++) p[i] = (float)P0[i];
        for (int s = 0; s < 3; s++) {
            for (int i = 0; i < 3; i++) g[i] = (float)gs[s][i];
            CHECK(rt_optim_step(ctx, o, p, g, (float)lr) == 0);
        }
        for (int i = 0; i < 3; i++) {
            double x = P0[i], m = 0, v = 0;
            for (int t = 1; t <= 3; t++) {
                double gi = gs[t - 1][i] + (l2 ? wd * x : 0);
                m = b1 * m + (1 - b1) * gi;
                v = b2 * v + (1 - b2) * gi * gi;
                double bc1 = 1 - pow(b1, t), bc2 = 1 - pow(b2, t);
                x -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps);
            }
            CHECKF(fabs(p[i] - x) <= TOL, "l2 %d: p[%d] = %.9g, expected %.9g", l2, i, p[i], x);
        }
        rt_optim_free(o);
    }
    rt_ctx_free(ctx);
}

TEST(sgd_converges_on_quadratic) {
    /* f(p) = sum a_i (p_i - c_i)^2 / 2 with a_i in [0.5, 2]: gradient a (p - c). */
    rt_ctx *ctx = rt_ctx_new();
    const int64_t n = 40000; /* above the kernels' parallel threshold */
    float *p = calloc(n, sizeof *p), *g = calloc(n, sizeof *g), *a = calloc(n, sizeof *a), *c = calloc(n, sizeof *c);
    for (int64_t i = 0; i < n; i++) {
        p[i] = 3.0f * (float)cos((double)i);
        a[i] = (float)(0.5 + 1.5 * (double)(i % 7) / 6);
        c[i] = (float)sin((double)i);
    }
    rt_optim_cfg cfg = rt_optim_defaults(RT_OPTIM_SGD);
    cfg.momentum = 0.9f, cfg.nesterov = 1;
    rt_optim *o = rt_optim_new(ctx, &cfg, (size_t)n);
    CHECK(o);
    for (int s = 0; s < 200; s++) {
        for (int64_t i = 0; i < n; i++) g[i] = a[i] * (p[i] - c[i]);
        CHECK(rt_optim_step(ctx, o, p, g, 0.1f) == 0);
    }
    double err = 0;
    for (int64_t i = 0; i < n; i++) err = fmax(err, fabs(p[i] - c[i]));
    CHECKF(err < 1e-4, "max |p - c| = %g after 200 steps", err);
    rt_optim_free(o);
    free(p), free(g), free(a), free(c);
    rt_ctx_free(ctx);
}

TEST(groups_lr_mult_decay_and_uncovered) {
    rt_ctx *ctx = rt_ctx_new();
    const double lr = 0.1, mu = 0.5;
    float p[10], g[10];
    for (int i = 0; i < 10; i++) p[i] = (float)(0.5 + 0.25 * i), g[i] = (float)(i % 3 - 1) + 0.5f;
    float p0[10];
    memcpy(p0, p, sizeof p);
    rt_optim_cfg cfg = rt_optim_defaults(RT_OPTIM_SGD);
    cfg.momentum = (float)mu;
    cfg.weight_decay = 0.3f; /* the implicit group's: must not apply once groups exist */
    rt_optim *o = rt_optim_new(ctx, &cfg, 10);
    CHECK(rt_optim_add_group(ctx, o, 0, 4, 1.0f, 0.1f) == 0);
    CHECK(rt_optim_add_group(ctx, o, 6, 4, 0.5f, 0.0f) == 0);
    int ng;
    const rt_optim_group *gr = rt_optim_groups(o, &ng);
    CHECK(ng == 2 && gr[1].offset == 6 && gr[1].len == 4 && gr[1].lr_mult == 0.5f);
    /* overlapping and out-of-range groups are errors */
    CHECK(rt_optim_add_group(ctx, o, 3, 2, 1.0f, 0.0f) == RT_EINVAL);
    CHECKF(strstr(rt_errmsg(ctx), "overlaps"), "%s", rt_errmsg(ctx));
    rt_clear_error(ctx);
    CHECK(rt_optim_add_group(ctx, o, 8, 3, 1.0f, 0.0f) == RT_EINVAL);
    CHECKF(strstr(rt_errmsg(ctx), "outside"), "%s", rt_errmsg(ctx));
    rt_clear_error(ctx);
    rt_optim_groups(o, &ng);
    CHECK(ng == 2);
    for (int s = 0; s < 2; s++) CHECK(rt_optim_step(ctx, o, p, g, (float)lr) == 0);
    float *st;
    size_t len;
    rt_optim_state(o, &st, &len);
    for (int i = 0; i < 10; i++) {
        if (i == 4 || i == 5) { /* uncovered: untouched, state stays zero */
            CHECK(p[i] == p0[i] && st[i] == 0.0f);
            continue;
        }
        double wd = i < 4 ? 0.1 : 0.0, glr = i < 4 ? lr : 0.5 * lr;
        double x = p0[i], b = g[i] + wd * x;
        x -= glr * b;
        b = mu * b + g[i] + wd * x;
        x -= glr * b;
        CHECKF(fabs(p[i] - x) <= TOL, "p[%d] = %.9g, expected %.9g", i, p[i], x);
    }
    rt_optim_free(o);
    rt_ctx_free(ctx);
}

/* A hand-built paramset: items out of offset order, one BN buffer (offsets into the buffer array). */
typedef struct {
    rt_paramset ps;
    rt_param items[6];
    rt_param *ptrs[6];
} fake_ps;

static void fake_init(fake_ps *f) {
    static const struct {
        const char *name;
        size_t off, numel;
        int no_decay, kind;
    } spec[6] = {
        {"fc.weight", 10, 4, 0, RT_PARAM}, {"conv.weight", 0, 6, 0, RT_PARAM}, {"bn.bias", 8, 2, 1, RT_PARAM},
        {"bn.weight", 6, 2, 1, RT_PARAM},  {"fc.bias", 14, 1, 1, RT_PARAM},    {"bn.running_mean", 0, 2, 0, RT_BUFFER},
    };
    memset(f, 0, sizeof *f);
    for (int i = 0; i < 6; i++) {
        snprintf(f->items[i].name, sizeof f->items[i].name, "%s", spec[i].name);
        f->items[i].offset = spec[i].off;
        f->items[i].numel = spec[i].numel;
        f->items[i].no_decay = spec[i].no_decay;
        f->items[i].kind = (rt_param_kind)spec[i].kind;
        f->ptrs[i] = &f->items[i];
    }
    f->ps.items = f->ptrs;
    f->ps.count = f->ps.cap = 6;
    f->ps.n = 15;
    f->ps.nbuf = 2;
}

TEST(groups_from_params) {
    rt_ctx *ctx = rt_ctx_new();
    fake_ps f;
    fake_init(&f);
    rt_optim_cfg cfg = rt_optim_defaults(RT_OPTIM_SGD);
    rt_optim *o = rt_optim_new(ctx, &cfg, 15);
    /* no_decay parameters without decay: conv | bn.weight+bn.bias | fc.weight | fc.bias */
    CHECKF(rt_optim_groups_from_params(ctx, o, &f.ps, 5e-4f, 0.0f) == 0, "%s", rt_errmsg(ctx));
    int ng;
    const rt_optim_group *g = rt_optim_groups(o, &ng);
    const size_t off[4] = {0, 6, 10, 14}, len[4] = {6, 4, 4, 1};
    const float wd[4] = {5e-4f, 0, 5e-4f, 0};
    CHECKF(ng == 4, "%d groups", ng);
    for (int i = 0; i < 4; i++) CHECK(g[i].offset == off[i] && g[i].len == len[i] && g[i].weight_decay == wd[i]);
    /* the default (no_decay_wd < 0 = wd) decays everything: one range */
    CHECK(rt_optim_groups_from_params(ctx, o, &f.ps, 5e-4f, -1.0f) == 0);
    g = rt_optim_groups(o, &ng);
    CHECK(ng == 1 && g[0].offset == 0 && g[0].len == 15 && g[0].weight_decay == 5e-4f && g[0].lr_mult == 1.0f);
    /* a size mismatch is an error */
    rt_optim *o2 = rt_optim_new(ctx, &cfg, 16);
    CHECK(rt_optim_groups_from_params(ctx, o2, &f.ps, 5e-4f, -1.0f) == RT_EINVAL);
    CHECKF(strstr(rt_errmsg(ctx), "15") && strstr(rt_errmsg(ctx), "16"), "%s", rt_errmsg(ctx));
    rt_optim_free(o2);
    rt_optim_free(o);
    rt_ctx_free(ctx);
}

/* A gradient that depends on the parameters, so a resumed run diverges if anything is lost. */
static void grad_of(const float *p, float *g, int64_t n, int s) {
    for (int64_t i = 0; i < n; i++) g[i] = sinf(p[i] * 1.7f + 0.3f * (float)s) + 0.1f * p[i];
}

/* Runs steps [from, to) with lr from a cosine schedule over 6 steps. */
static int run_steps(rt_ctx *ctx, rt_optim *o, float *p, float *g, int64_t n, int from, int to) {
    rt_sched sc = rt_sched_defaults(RT_SCHED_COSINE, 0.05);
    sc.T = 6;
    for (int s = from; s < to; s++) {
        grad_of(p, g, n, s);
        if (rt_optim_step(ctx, o, p, g, rt_sched_lr(&sc, s))) return -1;
    }
    return 0;
}

TEST(state_restore_is_bitwise) {
    rt_ctx *ctx = rt_ctx_new();
    const int64_t n = 37;
    const rt_optim_kind kinds[3] = {RT_OPTIM_SGD, RT_OPTIM_ADAM, RT_OPTIM_ADAMW};
    for (int k = 0; k < 3; k++) {
        rt_optim_cfg cfg = rt_optim_defaults(kinds[k]);
        cfg.momentum = 0.9f, cfg.nesterov = 1, cfg.weight_decay = 5e-4f;
        float a[37], b[37], g[37];
        for (int64_t i = 0; i < n; i++) a[i] = b[i] = (float)cos(0.37 * (double)i);
        /* straight through: 6 steps */
        rt_optim *o = rt_optim_new(ctx, &cfg, n);
        CHECK(rt_optim_add_group(ctx, o, 0, 20, 1.0f, 5e-4f) == 0 && rt_optim_add_group(ctx, o, 20, 17, 0.5f, 0) == 0);
        CHECK(run_steps(ctx, o, a, g, n, 0, 6) == 0);
        float *sa;
        size_t la;
        rt_optim_state(o, &sa, &la);
        /* 3 steps, save, a fresh optimiser restored, 3 more */
        rt_optim *o1 = rt_optim_new(ctx, &cfg, n);
        CHECK(rt_optim_add_group(ctx, o1, 0, 20, 1.0f, 5e-4f) == 0 &&
              rt_optim_add_group(ctx, o1, 20, 17, 0.5f, 0) == 0);
        CHECK(run_steps(ctx, o1, b, g, n, 0, 3) == 0);
        float *s1, saved[2 * 37];
        size_t l1;
        rt_optim_state(o1, &s1, &l1);
        CHECK(l1 == la && l1 <= 2 * 37 && l1 > 0);
        memcpy(saved, s1, l1 * sizeof(float));
        int64_t steps = rt_optim_step_count(o1);
        CHECK(steps == 3);
        rt_optim_free(o1);
        rt_optim *o2 = rt_optim_new(ctx, &cfg, n);
        CHECK(rt_optim_add_group(ctx, o2, 0, 20, 1.0f, 5e-4f) == 0 &&
              rt_optim_add_group(ctx, o2, 20, 17, 0.5f, 0) == 0);
        float *s2;
        size_t l2;
        rt_optim_state(o2, &s2, &l2);
        memcpy(s2, saved, l2 * sizeof(float));
        CHECK(rt_optim_set_step_count(ctx, o2, steps) == 0);
        CHECK(run_steps(ctx, o2, b, g, n, 3, 6) == 0);
        rt_optim_state(o2, &s2, &l2);
        CHECKF(!memcmp(a, b, sizeof a) && !memcmp(sa, s2, la * sizeof(float)), "%s: resumed run differs",
               rt_optim_kind_name(kinds[k]));
        /* and the comparison can fail: resuming without the step count differs (first-step rules) */
        rt_optim *o3 = rt_optim_new(ctx, &cfg, n);
        float c[37];
        for (int64_t i = 0; i < n; i++) c[i] = (float)cos(0.37 * (double)i);
        CHECK(run_steps(ctx, o3, c, g, n, 0, 3) == 0);
        CHECK(rt_optim_set_step_count(ctx, o3, 0) == 0);
        CHECK(run_steps(ctx, o3, c, g, n, 3, 6) == 0);
        CHECK(memcmp(a, c, sizeof a) != 0);
        rt_optim_free(o3);
        rt_optim_free(o2);
        rt_optim_free(o);
    }
    rt_ctx_free(ctx);
}

TEST(same_bits_for_any_thread_count) {
    rt_ctx *ctx = rt_ctx_new();
    const int64_t n = 70000;
    const int saved_threads = rt_threads();
    float *p[2], *g = malloc(n * sizeof *g);
    for (int r = 0; r < 2; r++) {
        rt_set_threads(r ? 2 : 1);
        p[r] = malloc(n * sizeof(float));
        for (int64_t i = 0; i < n; i++) p[r][i] = (float)sin(0.01 * (double)i);
        rt_optim_cfg cfg = rt_optim_defaults(RT_OPTIM_ADAMW);
        rt_optim *o = rt_optim_new(ctx, &cfg, (size_t)n);
        CHECK(run_steps(ctx, o, p[r], g, n, 0, 4) == 0);
        rt_optim_free(o);
    }
    rt_set_threads(saved_threads);
    CHECK(!memcmp(p[0], p[1], n * sizeof(float)));
    free(p[0]), free(p[1]), free(g);
    rt_ctx_free(ctx);
}

/* ---- schedules ---- */

#define CHECK_LR(s, t, expect) CHECK_CLOSE(rt_sched_lr(&(s), (t)) / (s).lr, (expect) / (s).lr, 1e-6)

TEST(sched_multistep_and_constant) {
    rt_ctx *ctx = rt_ctx_new();
    rt_sched s = rt_sched_defaults(RT_SCHED_CONSTANT, 0.05);
    CHECK(rt_sched_check(ctx, &s) == 0);
    CHECK(rt_sched_lr(&s, 0) == 0.05f && rt_sched_lr(&s, 1e6) == 0.05f);
    /* RepDistiller: milestones 150, 180, 210, gamma 0.1; MultiStepLR counts milestones <= epoch */
    s = rt_sched_defaults(RT_SCHED_MULTISTEP, 0.05);
    s.nmilestones = 3, s.milestones[0] = 150, s.milestones[1] = 180, s.milestones[2] = 210;
    CHECKF(rt_sched_check(ctx, &s) == 0, "%s", rt_errmsg(ctx));
    const double t[] = {0, 149, 149.99, 150, 179.5, 180, 209, 210, 239};
    const int k[] = {0, 0, 0, 1, 1, 2, 2, 3, 3};
    for (int i = 0; i < 9; i++) CHECK_LR(s, t[i], 0.05 * pow(0.1, k[i]));
    /* repeated milestones apply gamma twice, as torch's Counter does */
    s.nmilestones = 2, s.milestones[0] = 2, s.milestones[1] = 2, s.gamma = 0.5;
    CHECK(rt_sched_check(ctx, &s) == 0);
    CHECK_LR(s, 1, 0.05);
    CHECK_LR(s, 2, 0.05 * 0.25);
    rt_ctx_free(ctx);
}

TEST(sched_cosine_and_poly) {
    rt_ctx *ctx = rt_ctx_new();
    rt_sched s = rt_sched_defaults(RT_SCHED_COSINE, 0.1);
    s.T = 10, s.eta_min = 0.001;
    CHECK(rt_sched_check(ctx, &s) == 0);
    const double t[] = {0, 1, 3, 5, 7.25, 9, 10};
    for (int i = 0; i < 7; i++) CHECK_LR(s, t[i], 0.001 + (0.1 - 0.001) * (1 + cos(M_PI * t[i] / 10)) / 2);
    CHECK_LR(s, 13, 0.001); /* stays at eta_min past T */
    s = rt_sched_defaults(RT_SCHED_POLY, 0.2);
    s.T = 5, s.power = 2;
    CHECK(rt_sched_check(ctx, &s) == 0);
    for (int e = 0; e < 5; e++) CHECK_LR(s, e, 0.2 * pow(1 - e / 5.0, 2));
    CHECK(rt_sched_lr(&s, 5) == 0.0f && rt_sched_lr(&s, 8) == 0.0f);
    CHECK_LR(s, 2.5, 0.2 * 0.25);
    rt_ctx_free(ctx);
}

TEST(sched_warmup) {
    rt_ctx *ctx = rt_ctx_new();
    const double lr = 0.4, sf = 0.1, W = 5;
    /* chained (default): factor (sf + (1 - sf) min(t, W) / W) times the schedule at t */
    rt_sched s = rt_sched_defaults(RT_SCHED_MULTISTEP, lr);
    s.nmilestones = 2, s.milestones[0] = 3, s.milestones[1] = 8;
    s.warmup = W, s.warmup_start_factor = sf;
    CHECK(rt_sched_check(ctx, &s) == 0);
    for (int e = 0; e < 12; e++) {
        double f = sf + (1 - sf) * fmin(e, W) / W;
        CHECK_LR(s, e, lr * f * pow(0.1, (e >= 3) + (e >= 8)));
    }
    CHECK_LR(s, 2.5, lr * (sf + (1 - sf) * 0.5));
    s = rt_sched_defaults(RT_SCHED_COSINE, lr);
    s.T = 20, s.warmup = W, s.warmup_start_factor = sf;
    CHECK(rt_sched_check(ctx, &s) == 0);
    for (int e = 0; e < 20; e++) {
        double f = sf + (1 - sf) * fmin(e, W) / W;
        CHECK_LR(s, e, lr * f * (1 + cos(M_PI * e / 20)) / 2);
    }
    /* shifted (SequentialLR): the warm-up reaches lr, then the schedule runs from t - W */
    s.warmup_shift = 1, s.eta_min = 0.01;
    for (int e = 0; e < 25; e++) {
        double expect = e < W ? lr * (sf + (1 - sf) * e / W) : 0.01 + (lr - 0.01) * (1 + cos(M_PI * (e - W) / 20)) / 2;
        CHECK_LR(s, e, expect);
    }
    rt_ctx_free(ctx);
}

/* ---- errors ---- */

#define EXPECT_ERR(call, what)                                                                                         \
    do {                                                                                                               \
        rt_clear_error(ctx);                                                                                           \
        int bad_ = !(call);                                                                                            \
        CHECKF(bad_ &&rt_status(ctx) == RT_EINVAL && strstr(rt_errmsg(ctx), what), "%s: '%s'", #call, rt_errmsg(ctx)); \
    } while (0)

static int optim_ok(rt_ctx *ctx, rt_optim_cfg c) {
    rt_optim *o = rt_optim_new(ctx, &c, 4);
    rt_optim_free(o);
    return o != NULL;
}

TEST(bad_config_errors_name_the_field) {
    rt_ctx *ctx = rt_ctx_new();
    const rt_optim_cfg sgd = rt_optim_defaults(RT_OPTIM_SGD), adam = rt_optim_defaults(RT_OPTIM_ADAM);
    rt_optim_cfg c;
    CHECK(optim_ok(ctx, sgd) && optim_ok(ctx, adam));
    c = sgd, c.lr = -0.1f;
    EXPECT_ERR(optim_ok(ctx, c), "lr");
    c = sgd, c.lr = NAN;
    EXPECT_ERR(optim_ok(ctx, c), "lr");
    c = sgd, c.momentum = 1.0f;
    EXPECT_ERR(optim_ok(ctx, c), "momentum");
    c = sgd, c.momentum = -0.5f;
    EXPECT_ERR(optim_ok(ctx, c), "momentum");
    c = sgd, c.nesterov = 1;
    EXPECT_ERR(optim_ok(ctx, c), "nesterov");
    c = sgd, c.weight_decay = -1e-4f;
    EXPECT_ERR(optim_ok(ctx, c), "weight_decay");
    c = sgd, c.kind = (rt_optim_kind)7;
    EXPECT_ERR(optim_ok(ctx, c), "kind");
    c = adam, c.beta1 = 1.0f;
    EXPECT_ERR(optim_ok(ctx, c), "beta1");
    c = adam, c.beta2 = -0.1f;
    EXPECT_ERR(optim_ok(ctx, c), "beta2");
    c = adam, c.eps = -1e-8f;
    EXPECT_ERR(optim_ok(ctx, c), "eps");
    rt_optim_kind k;
    EXPECT_ERR(rt_optim_kind_parse(ctx, "adagrad", &k) == 0, "adagrad");
    rt_clear_error(ctx);
    CHECK(rt_optim_kind_parse(ctx, "adamw", &k) == 0 && k == RT_OPTIM_ADAMW);
    /* a negative rate at step time is refused and changes nothing */
    rt_optim *o = rt_optim_new(ctx, &sgd, 4);
    float p[4] = {1, 2, 3, 4}, g[4] = {1, 1, 1, 1};
    EXPECT_ERR(rt_optim_step(ctx, o, p, g, -0.01f) == 0, "lr");
    CHECK(p[0] == 1 && rt_optim_step_count(o) == 0);
    EXPECT_ERR(rt_optim_set_step_count(ctx, o, -1) == 0, "step count");
    EXPECT_ERR(rt_optim_add_group(ctx, o, 0, 2, -1.0f, 0) == 0, "lr_mult");
    rt_optim_free(o);
    /* schedules */
    rt_sched s = rt_sched_defaults(RT_SCHED_MULTISTEP, 0.1);
    s.gamma = 0;
    EXPECT_ERR(rt_sched_check(ctx, &s) == 0, "gamma");
    s = rt_sched_defaults(RT_SCHED_MULTISTEP, 0.1);
    s.nmilestones = 2, s.milestones[0] = 5, s.milestones[1] = 3;
    EXPECT_ERR(rt_sched_check(ctx, &s) == 0, "milestones");
    s = rt_sched_defaults(RT_SCHED_COSINE, 0.1);
    s.T = 0;
    EXPECT_ERR(rt_sched_check(ctx, &s) == 0, "T");
    s = rt_sched_defaults(RT_SCHED_CONSTANT, -0.1);
    EXPECT_ERR(rt_sched_check(ctx, &s) == 0, "lr");
    s = rt_sched_defaults(RT_SCHED_CONSTANT, 0.1);
    s.warmup = 5, s.warmup_start_factor = 1.5;
    EXPECT_ERR(rt_sched_check(ctx, &s) == 0, "warmup_start_factor");
    s = rt_sched_defaults((rt_sched_kind)9, 0.1);
    EXPECT_ERR(rt_sched_check(ctx, &s) == 0, "kind");
    rt_sched_kind sk;
    EXPECT_ERR(rt_sched_kind_parse(ctx, "step", &sk) == 0, "'step'");
    rt_clear_error(ctx);
    CHECK(rt_sched_kind_parse(ctx, "cosine", &sk) == 0 && sk == RT_SCHED_COSINE);
    rt_ctx_free(ctx);
}
