/* Loss aggregation (paper 000): the Gram kernel against its reference, the min-norm solver against
 * the two-vector closed form and a brute-force simplex grid (incl. degenerate hulls), gradient
 * normalisation, the equal/fixed/adaptive aggregates (values, closed-form and finite-difference
 * gradients, z -> ln(w L) on fixed losses), per-path gradients on a tiny model, and cosines. */
#include "retort/retort.h"
#include "retort/aggregate.h"
#include "kernels/gram.h"
#include "test.h"
#include "test_util.h"

/* plain double Gram of K rows of G (K x n) */
static void gram_plain(int K, size_t n, const float *G, double *gram) {
    for (int i = 0; i < K; i++)
        for (int j = 0; j < K; j++) {
            double s = 0;
            for (size_t t = 0; t < n; t++) s += (double)G[i * n + t] * G[j * n + t];
            gram[i * K + j] = s;
        }
}

/* ||sum_k c_k g_k||^2 computed from the vectors themselves */
static double norm2_of(int K, size_t n, const float *G, const double *c) {
    double s = 0;
    for (size_t t = 0; t < n; t++) {
        double v = 0;
        for (int k = 0; k < K; k++) v += c[k] * G[k * n + t];
        s += v * v;
    }
    return s;
}

/* ---- Gram kernel ---- */

TEST(gram_fast_matches_reference_and_thread_count) {
    const int64_t sizes[] = {1, 100, 3 * 8192 + 123, 700001};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        int64_t n = sizes[si], K = 3;
        float *G = malloc(K * n * sizeof(float));
        rt_test_fill_normal(G, K * n, 40 + si);
        for (int64_t t = 0; t < n; t++) G[2 * n + t] = 0.5f * G[t] + 3.0f; /* correlated, non-zero mean */
        const float *rows[3] = {G, G + n, G + 2 * n};
        double ref[9], fast[9], fast1[9], work[RT_GRAM_NBLK * 6];
        rt_gram_f32_ref(K, n, rows, ref);
        int threads = rt_threads();
        rt_set_threads(2);
        rt_gram_f32(K, n, rows, fast, work);
        rt_set_threads(1);
        rt_gram_f32(K, n, rows, fast1, work);
        rt_set_threads(threads);
        double m = 0, e = 0;
        for (int i = 0; i < 9; i++) {
            m = fmax(m, fabs(ref[i]));
            e = fmax(e, fabs(fast[i] - ref[i]));
        }
        CHECKF(e / m < 1e-12, "n %lld: normalised max error %g", (long long)n, e / m);
        CHECKF(memcmp(fast, fast1, sizeof fast) == 0, "n %lld: 1 and 2 threads differ", (long long)n);
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++) CHECK(fast[i * 3 + j] == fast[j * 3 + i]);
        free(G);
    }
}

/* ---- min-norm: two vectors, closed form ---- */

TEST(minnorm_two_vectors_closed_form) {
    rt_ctx *ctx = rt_ctx_new();
    const size_t n = 7;
    for (int trial = 0; trial < 12; trial++) {
        float G[2 * 7];
        rt_test_fill_normal(G, 2 * n, 100 + trial);
        if (trial % 3 == 1) /* share a large common part: the optimum tends to an end of the segment */
            for (size_t t = 0; t < n; t++) G[n + t] = 1.7f * G[t] + 0.3f * G[n + t];
        if (trial == 9)
            for (size_t t = 0; t < n; t++) G[n + t] = 2.0f * G[t]; /* v1 closer, on the line: gamma 0.999 */
        if (trial == 10)
            for (size_t t = 0; t < n; t++) G[t] = 3.0f * G[n + t]; /* v2 closer: gamma 0.001 */
        const float *rows[2] = {G, G + n};
        double gram[4], c[2], nrm;
        gram_plain(2, n, G, gram);
        double v11 = gram[0], v12 = gram[1], v22 = gram[3];
        double den = v11 + v22 - 2 * v12;
        double gamma = den > 0 ? (v22 - v12) / den : 0.999;
        gamma = fmin(fmax(gamma, 0.001), 0.999);
        CHECK(rt_minnorm(ctx, 2, rows, n, NULL, c, &nrm) == 0);
        CHECK_CLOSE(c[0], gamma, 1e-9);
        CHECK_CLOSE(c[1], 1 - gamma, 1e-9);
        CHECK_CLOSE(nrm, norm2_of(2, n, G, c), 1e-9);
        if (trial == 9) CHECK(c[0] == 0.999);
        if (trial == 10) CHECK(c[0] == 0.001);
        /* the Gram variant gives the same bits */
        double c2[2], nrm2;
        CHECK(rt_minnorm_gram(ctx, 2, gram, NULL, c2, &nrm2) == 0);
        CHECK_CLOSE(c2[0], c[0], 1e-12);
    }
    rt_ctx_free(ctx);
}

/* ---- min-norm: three vectors, brute-force grid on the simplex ---- */

typedef struct {
    const char *name;
    double cmin, cgrid[3]; /* grid minimum and its argmin */
} grid_result;

static void grid_min3(const double *g, grid_result *r) {
    r->cmin = INFINITY;
    for (int a = 0; a <= 1000; a++)
        for (int b = 0; b <= 1000 - a; b++) {
            double c[3] = {a * 1e-3, b * 1e-3, (1000 - a - b) * 1e-3}, s = 0;
            for (int i = 0; i < 3; i++)
                for (int j = 0; j < 3; j++) s += c[i] * g[i * 3 + j] * c[j];
            if (s < r->cmin) {
                r->cmin = s;
                memcpy(r->cgrid, c, sizeof c);
            }
        }
}

/* Solves for the 3 rows of G (3 x n) and checks against the grid: the solver's value is no worse than
 * the grid's best (up to round-off) and is the value of its weights; weights on the simplex. When
 * unique, the weights match the grid argmin to the grid's resolution. */
static int check3_with(rt_ctx *ctx, const char *name, size_t n, const float *G, int unique, double *c_out,
                       const rt_minnorm_opts *opts) {
    const float *rows[3] = {G, G + n, G + 2 * n};
    double gram[9], c[3], nrm;
    gram_plain(3, n, G, gram);
    grid_result gr;
    grid_min3(gram, &gr);
    int rc = rt_minnorm(ctx, 3, rows, n, opts, c, &nrm);
    if (rc) {
        printf("  %s: rc %d %s\n", name, rc, rt_errmsg(ctx));
        return 0;
    }
    double scale = fmax(fmax(gram[0], gram[4]), fmax(gram[8], 1e-30));
    double sum = c[0] + c[1] + c[2];
    int ok = fabs(sum - 1) < 1e-12 && c[0] >= 0 && c[1] >= 0 && c[2] >= 0;
    ok = ok && fabs(nrm - norm2_of(3, n, G, c)) <= 1e-9 * scale;
    ok = ok && nrm <= gr.cmin + 1e-9 * scale;
    if (unique)
        for (int k = 0; k < 3; k++) ok = ok && fabs(c[k] - gr.cgrid[k]) <= 2e-3;
    if (!ok)
        printf("  %s%s: c = (%.6f %.6f %.6f) |.|^2 = %.9g; grid (%.3f %.3f %.3f) %.9g\n", name,
               opts ? " (away steps)" : "", c[0], c[1], c[2], nrm, gr.cgrid[0], gr.cgrid[1], gr.cgrid[2], gr.cmin);
    if (c_out) memcpy(c_out, c, sizeof c);
    return ok;
}

/* both solvers: plain Frank-Wolfe (c_out from it) and away steps */
static int check3(rt_ctx *ctx, const char *name, size_t n, const float *G, int unique, double *c_out) {
    rt_minnorm_opts away = {.away_steps = 1};
    return check3_with(ctx, name, n, G, unique, c_out, NULL) && check3_with(ctx, name, n, G, unique, NULL, &away);
}

TEST(minnorm_three_vectors_vs_grid) {
    rt_ctx *ctx = rt_ctx_new();
    enum { n = 5 };
    float G[3 * n];
    double c[3];
    for (int trial = 0; trial < 6; trial++) { /* generic: optimum at a vertex, on an edge or inside */
        rt_test_fill_normal(G, 3 * n, 200 + trial);
        if (trial >= 3)
            for (int t = 0; t < n; t++) G[t] += 2.0f, G[n + t] += 2.0f, G[2 * n + t] += 2.0f; /* obtuse hulls */
        char name[32];
        snprintf(name, sizeof name, "random %d", trial);
        CHECKF(check3(ctx, name, n, G, 1, NULL), "%s", name);
    }
    /* the origin inside the hull (2-D vectors around it): norm 0 */
    float around[3 * 2] = {1, 0, -0.5f, 0.8f, -0.4f, -0.9f};
    CHECK(check3(ctx, "origin inside", 2, around, 1, c));
    double nrm;
    CHECK(rt_minnorm(ctx, 3, (const float *[]){around, around + 2, around + 4}, 2, NULL, c, &nrm) == 0);
    CHECKF(nrm < 1e-10, "origin inside the hull: |.|^2 = %g", nrm);
    /* identical vectors: any weights give the same point */
    rt_test_fill_normal(G, n, 300);
    memcpy(G + n, G, n * sizeof(float));
    memcpy(G + 2 * n, G, n * sizeof(float));
    CHECK(check3(ctx, "identical", n, G, 0, NULL));
    /* one vector zero: all weight there, norm 0 */
    rt_test_fill_normal(G, 3 * n, 301);
    memset(G + n, 0, n * sizeof(float));
    CHECK(check3(ctx, "one zero", n, G, 1, c));
    CHECKF(c[1] == 1.0 && c[0] == 0 && c[2] == 0, "c = %g %g %g", c[0], c[1], c[2]);
    /* orthogonal vectors: c_k proportional to 1 / ||g_k||^2 */
    memset(G, 0, sizeof G);
    G[0] = 1.0f, G[n + 1] = 2.0f, G[2 * n + 2] = 0.5f;
    CHECK(check3(ctx, "orthogonal", n, G, 1, c));
    double inv[3] = {1.0, 0.25, 4.0}, tot = 5.25;
    for (int k = 0; k < 3; k++) CHECK_CLOSE(c[k], inv[k] / tot, 1e-4);
    /* one vector inside the hull of the others (g2 = 0.3 g0 + 0.7 g1): the min is the pair's */
    rt_test_fill_normal(G, 2 * n, 302);
    for (int t = 0; t < n; t++) G[t] += 1.0f, G[n + t] += 1.0f;
    for (int t = 0; t < n; t++) G[2 * n + t] = 0.3f * G[t] + 0.7f * G[n + t];
    CHECK(check3(ctx, "inside the hull", n, G, 0, NULL));
    /* two identical and one different */
    rt_test_fill_normal(G, 3 * n, 303);
    memcpy(G + n, G, n * sizeof(float));
    CHECK(check3(ctx, "two identical", n, G, 0, NULL));
    rt_ctx_free(ctx);
}

/* Exact min-norm value by enumerating supports: for each subset S, the KKT system of
 * min c^T G_S c s.t. sum c = 1 (Gaussian elimination); feasible (c >= 0) solutions compete. */
static double exact_min_by_supports(int K, const double *g, double *cbest) {
    double best = INFINITY;
    for (int mask = 1; mask < (1 << K); mask++) {
        int idx[8], m = 0;
        for (int k = 0; k < K; k++)
            if (mask >> k & 1) idx[m++] = k;
        double A[9][10] = {{0}}; /* [2 G_S 1; 1^T 0] [c; mu] = [0; 1] */
        for (int i = 0; i < m; i++) {
            for (int j = 0; j < m; j++) A[i][j] = 2 * g[idx[i] * K + idx[j]];
            A[i][m] = 1, A[m][i] = 1;
        }
        A[m][m + 1] = 1;
        int ok = 1;
        for (int col = 0; col <= m && ok; col++) {
            int piv = col;
            for (int r = col + 1; r <= m; r++)
                if (fabs(A[r][col]) > fabs(A[piv][col])) piv = r;
            if (fabs(A[piv][col]) < 1e-12) ok = 0;
            for (int j = 0; j <= m + 1 && ok; j++) {
                double t = A[col][j];
                A[col][j] = A[piv][j], A[piv][j] = t;
            }
            for (int r = 0; r <= m && ok; r++)
                if (r != col) {
                    double f = A[r][col] / A[col][col];
                    for (int j = 0; j <= m + 1; j++) A[r][j] -= f * A[col][j];
                }
        }
        if (!ok) continue;
        double c[8] = {0};
        for (int i = 0; i < m; i++) {
            c[idx[i]] = A[i][m + 1] / A[i][i];
            if (c[idx[i]] < -1e-12) ok = 0;
        }
        if (!ok) continue;
        double v = 0;
        for (int i = 0; i < K; i++)
            for (int j = 0; j < K; j++) v += c[i] * g[i * K + j] * c[j];
        if (v < best) {
            best = v;
            memcpy(cbest, c, (size_t)K * sizeof *c);
        }
    }
    return best;
}

TEST(minnorm_many_vectors_vs_exact) {
    /* K = 6 and 5 in 8 dims (a non-singular Gram: one optimum), several draws. Away-step Frank-Wolfe
     * reaches the exact optimum (to the stop criterion's precision by default, to round-off without
     * it); plain Frank-Wolfe stays inside its O(1/t) bound 2 C_f / (t + 2), C_f = 2 diam^2 for the
     * squared norm, after 250 iterations and (closer) after 100000. */
    rt_ctx *ctx = rt_ctx_new();
    enum { n = 8 };
    for (int trial = 0; trial < 8; trial++) {
        int K = trial % 2 ? 5 : 6;
        float G[6 * n];
        rt_test_fill_normal(G, K * n, 400 + trial);
        for (int i = 0; i < K * n; i++) G[i] += (i % n < trial % 4) ? 1.5f : 0.0f;
        const float *rows[6];
        for (int k = 0; k < K; k++) rows[k] = G + k * n;
        double gram[36], cx[6], c[6], nrm, nrm_fw, nrm_long;
        gram_plain(K, n, G, gram);
        double best = exact_min_by_supports(K, gram, cx), scale = 0, diam2 = 0;
        for (int i = 0; i < K; i++) {
            scale = fmax(scale, gram[i * K + i]);
            for (int j = 0; j < K; j++) diam2 = fmax(diam2, gram[i * K + i] + gram[j * K + j] - 2 * gram[i * K + j]);
        }
        rt_minnorm_opts away = {.away_steps = 1}, away_tight = {.away_steps = 1, .stop = 1e-300};
        rt_minnorm_opts fw = {.stop = 1e-300}, fw_long = {.max_iter = 100000, .stop = 1e-300};
        CHECK(rt_minnorm(ctx, K, rows, n, &away_tight, c, &nrm) == 0);
        CHECKF(nrm >= best - 1e-12 * scale && nrm <= best + 1e-12 * scale, "trial %d: away-step %.15g vs exact %.15g",
               trial, nrm, best);
        for (int k = 0; k < K; k++)
            CHECKF(fabs(c[k] - cx[k]) < 1e-6, "trial %d: c[%d] %.9f vs %.9f", trial, k, c[k], cx[k]);
        CHECK_CLOSE(nrm, norm2_of(K, n, G, c), 1e-9);
        CHECK(rt_minnorm(ctx, K, rows, n, &away, c, &nrm) == 0);
        for (int k = 0; k < K; k++)
            CHECKF(fabs(c[k] - cx[k]) < 1e-4, "trial %d: c[%d] %.9f vs %.9f", trial, k, c[k], cx[k]);
        CHECK(rt_minnorm(ctx, K, rows, n, &fw, c, &nrm_fw) == 0);
        CHECKF(nrm_fw >= best - 1e-12 * scale && nrm_fw - best <= 4 * diam2 / (250 + 2),
               "trial %d: Frank-Wolfe %.12g vs exact %.12g", trial, nrm_fw, best);
        CHECK(rt_minnorm(ctx, K, rows, n, &fw_long, c, &nrm_long) == 0);
        CHECKF(nrm_long <= nrm_fw && nrm_long - best <= 4 * diam2 / (100000 + 2),
               "trial %d: long Frank-Wolfe %.12g vs exact %.12g", trial, nrm_long, best);
    }
    rt_ctx_free(ctx);
}

TEST(minnorm_single_and_errors) {
    rt_ctx *ctx = rt_ctx_new();
    float g[4] = {1, 2, 3, 4};
    double c[3], nrm;
    CHECK(rt_minnorm(ctx, 1, (const float *[]){g}, 4, NULL, c, &nrm) == 0);
    CHECK(c[0] == 1.0 && nrm == 30.0);
    CHECK(rt_minnorm(ctx, 0, (const float *[]){g}, 4, NULL, c, &nrm) == RT_EINVAL);
    CHECK(strstr(rt_errmsg(ctx), "minnorm"));
    rt_clear_error(ctx);
    float bad[4] = {1, NAN, 0, 0};
    CHECK(rt_minnorm(ctx, 2, (const float *[]){g, bad}, 4, NULL, c, &nrm) == RT_EINVAL);
    CHECKF(strstr(rt_errmsg(ctx), "not finite"), "%s", rt_errmsg(ctx));
    rt_clear_error(ctx);
    rt_minnorm_opts o = {.normalise = RT_MINNORM_LOSS};
    CHECK(rt_minnorm(ctx, 2, (const float *[]){g, g}, 4, &o, c, &nrm) == RT_EINVAL);
    CHECKF(strstr(rt_errmsg(ctx), "loss"), "%s", rt_errmsg(ctx));
    rt_clear_error(ctx);
    o.losses = (const float[]){1.0f, 0.0f};
    CHECK(rt_minnorm(ctx, 2, (const float *[]){g, g}, 4, &o, c, &nrm) == RT_EINVAL);
    rt_clear_error(ctx);
    /* max_iter bounds the Frank-Wolfe loop: 1 iteration is worse than the converged answer here */
    float G[3 * 5];
    rt_test_fill_normal(G, 15, 206);
    const float *rows[3] = {G, G + 5, G + 10};
    rt_minnorm_opts one = {.max_iter = 1};
    double c1[3], n1, cc[3], nc;
    CHECK(rt_minnorm(ctx, 3, rows, 5, &one, c1, &n1) == 0);
    CHECK(rt_minnorm(ctx, 3, rows, 5, NULL, cc, &nc) == 0);
    CHECK(nc <= n1);
    rt_ctx_free(ctx);
}

TEST(minnorm_normalisation_modes) {
    rt_ctx *ctx = rt_ctx_new();
    enum { n = 6 };
    float G[3 * n], N[3 * n];
    rt_test_fill_normal(G, 3 * n, 500);
    for (int t = 0; t < n; t++) G[t] *= 10.0f, G[n + t] *= 0.1f, G[2 * n + t] += 1.0f;
    const float *rows[3] = {G, G + n, G + 2 * n}, *nrows[3] = {N, N + n, N + 2 * n};
    double gram[9];
    gram_plain(3, n, G, gram);
    const float losses[3] = {2.0f, 0.5f, 3.0f};
    for (int mode = RT_MINNORM_NONE; mode <= RT_MINNORM_LOSS_L2; mode++) {
        rt_minnorm_opts o = {.normalise = (rt_minnorm_normalise)mode, .losses = losses};
        double s[3], want[3];
        CHECK(rt_minnorm_scales(ctx, 3, gram, &o, s) == 0);
        for (int k = 0; k < 3; k++) {
            double l2 = sqrt(gram[k * 4]);
            want[k] = mode == RT_MINNORM_NONE   ? 1
                      : mode == RT_MINNORM_L2   ? l2
                      : mode == RT_MINNORM_LOSS ? losses[k]
                                                : losses[k] * l2;
            CHECK_CLOSE(s[k], want[k], 1e-12);
        }
        /* solving with normalisation == solving the pre-divided vectors without */
        for (int k = 0; k < 3; k++)
            for (int t = 0; t < n; t++) N[k * n + t] = (float)(G[k * n + t] / want[k]);
        double c[3], nrm, cn[3], nrmn;
        CHECK(rt_minnorm(ctx, 3, rows, n, &o, c, &nrm) == 0);
        CHECK(rt_minnorm(ctx, 3, nrows, n, NULL, cn, &nrmn) == 0);
        for (int k = 0; k < 3; k++) CHECKF(fabs(c[k] - cn[k]) < 1e-5, "mode %d k %d: %g vs %g", mode, k, c[k], cn[k]);
        CHECK_CLOSE(nrm, nrmn, 1e-5);
    }
    /* l2 on a zero gradient: scale 1, stays zero, no NaN */
    memset(G + n, 0, n * sizeof(float));
    gram_plain(3, n, G, gram);
    rt_minnorm_opts o = {.normalise = RT_MINNORM_L2};
    double s[3], c[3], nrm;
    CHECK(rt_minnorm_scales(ctx, 3, gram, &o, s) == 0 && s[1] == 1.0);
    CHECK(rt_minnorm(ctx, 3, rows, n, &o, c, &nrm) == 0);
    CHECK(c[1] == 1.0 && nrm == 0.0);
    rt_ctx_free(ctx);
}

/* ---- aggregates ---- */

enum { NL = 3 };
typedef struct {
    const float *w;
    int kind; /* 0 equal, 1 fixed, 2 adaptive */
} agg_user;

/* inputs: x0, x1, x2 (path activations) and, for adaptive, z; L_k = mean(x_k^2) * (k + 1) */
static rt_tensor *f_agg(rt_ctx *ctx, rt_tensor **in, void *u) {
    agg_user *a = u;
    rt_tensor *L[NL];
    for (int k = 0; k < NL; k++) L[k] = rt_mul_scalar(ctx, rt_mean_all(ctx, rt_mul(ctx, in[k], in[k])), k + 1.0f);
    if (a->kind == 0) return rt_aggregate_equal(ctx, NL, L);
    if (a->kind == 1) return rt_aggregate_fixed(ctx, NL, L, a->w);
    return rt_adaptive_aggregate(ctx, NL, L, a->w, in[NL]);
}

TEST(aggregates_gradcheck) {
    rt_ctx *ctx = rt_ctx_new();
    rt_tensor *in[NL + 1] = {rt_test_tensor(2, (int64_t[]){2, 3}, 600, 1), rt_test_tensor(1, (int64_t[]){4}, 601, 1),
                             rt_test_tensor(2, (int64_t[]){1, 2}, 602, 1), rt_test_tensor(1, (int64_t[]){NL}, 603, 1)};
    const float w[NL] = {1.0f, 2.5f, 0.3f};
    agg_user cases[] = {{NULL, 0}, {w, 1}, {NULL, 2}, {w, 2}};
    char rep[512];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int nin = cases[i].kind == 2 ? NL + 1 : NL;
        CHECKF(rt_gradcheck(ctx, f_agg, &cases[i], nin, in, NULL, rep) == 0, "case %zu: %s / %s", i, rep,
               rt_errmsg(ctx));
        rt_step_reset(ctx);
    }
    for (int k = 0; k <= NL; k++) rt_test_tensor_free(in[k]);
    rt_ctx_free(ctx);
}

TEST(adaptive_aggregate_closed_form) {
    rt_ctx *ctx = rt_ctx_new();
    float zd[NL] = {0.3f, -0.5f, 1.2f}, zg[NL] = {0};
    rt_tensor z;
    rt_tensor_init(&z, zd, 1, (int64_t[]){NL});
    CHECK(rt_leaf(ctx, &z, zg) == 0);
    const float Lv[NL] = {0.7f, 2.0f, 5.0f}, w[NL] = {1.0f, 0.5f, 3.0f};
    for (int use_w = 0; use_w < 2; use_w++) {
        memset(zg, 0, sizeof zg);
        rt_tensor *L[NL];
        for (int k = 0; k < NL; k++) {
            L[k] = rt_full(ctx, 0, NULL, Lv[k]);
            CHECK(rt_leaf(ctx, L[k], NULL) == 0); /* losses as leaves: their gradient is exp(-z) w */
        }
        rt_tensor *tot = rt_adaptive_aggregate(ctx, NL, L, use_w ? w : NULL, &z);
        CHECKF(tot && tot->ndim == 0, "%s", rt_errmsg(ctx));
        double want = 0;
        for (int k = 0; k < NL; k++) want += exp(-zd[k]) * (use_w ? w[k] : 1) * Lv[k] + zd[k];
        CHECK_CLOSE(tot->data[0], want, 1e-6);
        CHECK(rt_backward(ctx, tot) == 0);
        for (int k = 0; k < NL; k++) {
            double wk = use_w ? w[k] : 1;
            CHECK_CLOSE(zg[k], 1 - exp(-zd[k]) * wk * Lv[k], 1e-6);
            CHECK_CLOSE(L[k]->grad[0], exp(-zd[k]) * wk, 1e-6);
        }
        rt_step_reset(ctx);
    }
    rt_ctx_free(ctx);
}

TEST(adaptive_z_converges_to_log_loss) {
    /* fixed losses, gradient descent on z alone: z_k -> ln(w_k L_k), i.e. v_k = 1 / (w_k L_k) */
    rt_ctx *ctx = rt_ctx_new();
    const float Lv[4] = {0.01f, 0.7f, 3.0f, 40.0f}, w[4] = {2.0f, 1.0f, 0.1f, 1.0f};
    float zd[4] = {0}, zg[4];
    rt_tensor z;
    rt_tensor_init(&z, zd, 1, (int64_t[]){4});
    CHECK(rt_leaf(ctx, &z, zg) == 0);
    for (int it = 0; it < 400; it++) {
        memset(zg, 0, sizeof zg);
        rt_tensor *L[4];
        for (int k = 0; k < 4; k++) L[k] = rt_full(ctx, 1, (int64_t[]){1}, Lv[k]);
        rt_tensor *tot = rt_adaptive_aggregate(ctx, 4, L, w, &z);
        CHECKF(tot && rt_backward(ctx, tot) == 0, "%s", rt_errmsg(ctx));
        for (int k = 0; k < 4; k++) zd[k] -= 0.5f * zg[k];
        rt_step_reset(ctx);
    }
    for (int k = 0; k < 4; k++)
        CHECKF(fabs(zd[k] - log(w[k] * Lv[k])) < 1e-4, "z[%d] = %g, ln(wL) = %g", k, zd[k], log(w[k] * Lv[k]));
    rt_ctx_free(ctx);
}

TEST(aggregate_values_and_errors) {
    rt_ctx *ctx = rt_ctx_new();
    rt_tensor *L[2] = {rt_full(ctx, 0, NULL, 1.5f), rt_full(ctx, 1, (int64_t[]){1}, 4.0f)};
    rt_tensor *e = rt_aggregate_equal(ctx, 2, L), *f = rt_aggregate_fixed(ctx, 2, L, (const float[]){2.0f, 0.25f});
    CHECK(e && f);
    CHECK(e->data[0] == 5.5f && f->data[0] == 4.0f);
    rt_tensor *bad[2] = {L[0], rt_full(ctx, 1, (int64_t[]){2}, 1.0f)};
    CHECK(rt_aggregate_equal(ctx, 2, bad) == NULL && rt_status(ctx) == RT_ESHAPE);
    CHECKF(strstr(rt_errmsg(ctx), "aggregate_equal") && strstr(rt_errmsg(ctx), "(2)"), "%s", rt_errmsg(ctx));
    rt_clear_error(ctx);
    rt_tensor *z = rt_zeros(ctx, 1, (int64_t[]){3});
    CHECK(rt_adaptive_aggregate(ctx, 2, L, NULL, z) == NULL && rt_status(ctx) == RT_ESHAPE);
    CHECKF(strstr(rt_errmsg(ctx), "adaptive_aggregate") && strstr(rt_errmsg(ctx), "(3)"), "%s", rt_errmsg(ctx));
    rt_clear_error(ctx);
    CHECK(rt_aggregate_fixed(ctx, 0, L, NULL) == NULL && rt_status(ctx) == RT_EINVAL);
    rt_clear_error(ctx);
    CHECK(rt_aggregate_equal(ctx, 2, (rt_tensor *[]){L[0], NULL}) == NULL && rt_status(ctx) == RT_EINVAL);
    rt_ctx_free(ctx);
}

/* ---- per-path gradients on a tiny model ---- */

typedef struct {
    rt_paramset ps;
    rt_tensor *w1, *b1, *wa, *wb, *unused;
    rt_tensor *x, *target;
} tiny;

static void tiny_init(rt_ctx *ctx, tiny *m) {
    rt_params_init(&m->ps);
    m->w1 = rt_params_add(ctx, &m->ps, "fc1.weight", RT_PARAM, 2, (int64_t[]){4, 3});
    m->b1 = rt_params_add(ctx, &m->ps, "fc1.bias", RT_PARAM, 1, (int64_t[]){4});
    m->wa = rt_params_add(ctx, &m->ps, "head_a.weight", RT_PARAM, 2, (int64_t[]){2, 4});
    m->wb = rt_params_add(ctx, &m->ps, "head_b.weight", RT_PARAM, 2, (int64_t[]){2, 4});
    m->unused = rt_params_add(ctx, &m->ps, "unused.weight", RT_PARAM, 1, (int64_t[]){3});
    rt_params_finalize(ctx, &m->ps);
    rt_test_fill_normal(m->ps.data, m->ps.n, 700);
    m->x = rt_test_tensor(2, (int64_t[]){5, 3}, 701, 0);
    m->target = rt_test_tensor(2, (int64_t[]){5, 2}, 702, 0);
}

static void tiny_free(tiny *m) {
    rt_test_tensor_free(m->x);
    rt_test_tensor_free(m->target);
    rt_params_free(&m->ps);
}

/* K = 4 path losses: head A's, head B's, one on head B's weights only, and a constant */
static void tiny_losses(rt_ctx *ctx, tiny *m, rt_tensor **L) {
    rt_tensor *h = rt_tanh(ctx, rt_linear(ctx, m->x, m->w1, m->b1));
    rt_tensor *ya = rt_linear(ctx, h, m->wa, NULL), *yb = rt_linear(ctx, h, m->wb, NULL);
    L[0] = rt_mean_all(ctx, rt_mul(ctx, ya, ya));
    L[1] = rt_mse(ctx, yb, m->target, RT_MEAN);
    L[2] = rt_sum_all(ctx, rt_mul(ctx, m->wb, m->wb));
    L[3] = rt_full(ctx, 0, NULL, 2.0f);
}

TEST(path_grads_match_single_backward) {
    rt_ctx *ctx = rt_ctx_new();
    tiny m;
    tiny_init(ctx, &m);
    CHECK(rt_status(ctx) == 0);
    size_t n = m.ps.n;
    enum { K = 4 };
    float *G = malloc(K * n * sizeof(float)), *want = malloc(n * sizeof(float));
    rt_tensor *L[K];
    tiny_losses(ctx, &m, L);
    rt_test_fill_normal(m.ps.grad, n, 703); /* stale gradients must not leak into the rows */
    CHECKF(rt_path_grads(ctx, &m.ps, K, L, G) == 0, "%s", rt_errmsg(ctx));
    for (size_t i = 0; i < n; i++) CHECK(m.ps.grad[i] == 0.0f); /* left zeroed */
    rt_param *pw1 = rt_params_find(&m.ps, "fc1.weight"), *pwa = rt_params_find(&m.ps, "head_a.weight"),
             *pwb = rt_params_find(&m.ps, "head_b.weight"), *pun = rt_params_find(&m.ps, "unused.weight");
    for (int k = 0; k < K; k++) {
        /* a fresh forward and one backward of loss k alone */
        rt_step_reset(ctx);
        rt_params_zero_grad(&m.ps);
        rt_tensor *L2[K];
        tiny_losses(ctx, &m, L2);
        if (k < 3) CHECK(rt_backward(ctx, L2[k]) == 0);
        memcpy(want, m.ps.grad, n * sizeof(float));
        double err = 0, mx = 0;
        for (size_t i = 0; i < n; i++) {
            err = fmax(err, fabs(G[k * n + i] - want[i]));
            mx = fmax(mx, fabs(want[i]));
        }
        CHECKF(err <= 1e-6 * fmax(mx, 1e-3), "path %d: max error %g", k, err);
        CHECKF(k == 3 || mx > 0, "path %d has no gradient", k);
    }
    /* paths that do not reach a parameter give exact zeros there */
    for (size_t i = 0; i < pwb->numel; i++) CHECK(G[0 * n + pwb->offset + i] == 0.0f);
    for (size_t i = 0; i < pwa->numel; i++) CHECK(G[1 * n + pwa->offset + i] == 0.0f);
    for (size_t i = 0; i < pwb->offset; i++) CHECK(G[2 * n + i] == 0.0f);
    for (size_t i = 0; i < n; i++) CHECK(G[3 * n + i] == 0.0f);
    for (int k = 0; k < K; k++)
        for (size_t i = 0; i < pun->numel; i++) CHECK(G[k * n + pun->offset + i] == 0.0f);
    CHECK(G[0 * n + pw1->offset] != 0.0f && G[1 * n + pw1->offset] != 0.0f);
    free(G);
    free(want);
    tiny_free(&m);
    rt_ctx_free(ctx);
}

TEST(path_grads_range_combine_and_reuse_of_tape) {
    rt_ctx *ctx = rt_ctx_new();
    tiny m;
    tiny_init(ctx, &m);
    size_t n = m.ps.n;
    enum { K = 3 };
    float *G = malloc(K * n * sizeof(float)), *comb = calloc(n, sizeof(float));
    rt_tensor *L[4];
    tiny_losses(ctx, &m, L);
    CHECK(rt_path_grads(ctx, &m.ps, K, L, G) == 0);
    /* a range: the two heads only */
    rt_param *pwa = rt_params_find(&m.ps, "head_a.weight");
    size_t off = pwa->offset, len = 16;
    float Gr[K * 16];
    CHECK(rt_path_grads_range(ctx, &m.ps, K, L, off, len, Gr) == 0);
    for (int k = 0; k < K; k++)
        for (size_t i = 0; i < len; i++) CHECK(Gr[k * len + i] == G[k * n + off + i]);
    CHECK(rt_path_grads_range(ctx, &m.ps, K, L, n - 2, 3, Gr) == RT_EINVAL);
    CHECK(strstr(rt_errmsg(ctx), "path_grads"));
    rt_clear_error(ctx);
    rt_tensor *consts[2] = {L[3], rt_detach(ctx, L[0])};
    CHECK(rt_path_grads(ctx, &m.ps, 2, consts, G) == RT_ESTATE);
    CHECKF(strstr(rt_errmsg(ctx), "grad mode"), "%s", rt_errmsg(ctx));
    rt_clear_error(ctx);
    /* the same tape again: backward of the weighted sum equals the combined rows */
    const double c[K] = {0.2, 0.5, 0.3};
    rt_path_grads_combine(K, n, G, c, 2.0f, comb);
    rt_params_zero_grad(&m.ps);
    rt_tensor *tot = rt_mul_scalar(ctx, rt_aggregate_fixed(ctx, K, L, (const float[]){0.2f, 0.5f, 0.3f}), 2.0f);
    CHECK(rt_backward(ctx, tot) == 0);
    double e = rt_test_maxrel(comb, m.ps.grad, (long)n);
    CHECKF(e < 1e-5, "combined rows vs backward: %g", e);
    free(G);
    free(comb);
    tiny_free(&m);
    rt_ctx_free(ctx);
}

/* ---- cosines ---- */

TEST(grad_cosines_known_vectors) {
    rt_ctx *ctx = rt_ctx_new();
    float G[4 * 3] = {1, 0, 0, 1, 1, 0, -2, 0, 0, 0, 0, 0};
    double cs[16];
    CHECK(rt_grad_cosines(ctx, 4, 3, G, cs) == 0);
    double want[16] = {1, M_SQRT1_2, -1, 0, M_SQRT1_2, 1, -M_SQRT1_2, 0, -1, -M_SQRT1_2, 1, 0, 0, 0, 0, 0};
    for (int i = 0; i < 16; i++) CHECK_CLOSE(cs[i], want[i], 1e-12);
    /* long vectors (the blocked parallel path): u = 1, v = alternating +-1, u + v */
    size_t n = 300000;
    float *L = malloc(3 * n * sizeof(float));
    for (size_t t = 0; t < n; t++) {
        L[t] = 1.0f;
        L[n + t] = t % 2 ? -1.0f : 1.0f;
        L[2 * n + t] = L[t] + L[n + t];
    }
    CHECK(rt_grad_cosines(ctx, 3, n, L, cs) == 0);
    CHECK_CLOSE(cs[1], 0.0, 1e-12);
    CHECK_CLOSE(cs[2], M_SQRT1_2, 1e-12);
    CHECK_CLOSE(cs[5], M_SQRT1_2, 1e-12);
    CHECK_CLOSE(cs[4], 1.0, 1e-12);
    free(L);
    rt_ctx_free(ctx);
}
