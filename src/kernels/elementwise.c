/* Elementwise kernels: unary maps and broadcasting binary ops. Work is cut into fixed runs of at
 * most RT_EW_RUN elements; each parallel task owns a disjoint set of outputs and sums in a fixed
 * order, so the bits do not depend on the thread count. */
#include "kernels/elementwise.h"

#include <math.h>
#include <stdlib.h>

#define RT_EW_RUN 2048          /* elements per run: a stack buffer that stays in L1 */
#define RT_EW_PAR_MIN (1 << 15) /* below this many elements threads cost more than they save */

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* ---- unary ---- */

static const float k_inv_sqrt2 = 0.70710678118654752f, k_inv_sqrt2pi = 0.39894228040143268f;

// x (m), y (m)
static void unary_run(rt_unop op, float s, int64_t m, float *restrict y, const float *restrict x) {
    switch (op) {
    case RT_UN_ADD_SCALAR:
#pragma omp simd
        for (int64_t i = 0; i < m; i++) y[i] = x[i] + s;
        break;
    case RT_UN_MUL_SCALAR:
#pragma omp simd
        for (int64_t i = 0; i < m; i++) y[i] = x[i] * s;
        break;
    case RT_UN_POW:
        if (s == 2.0f) {
#pragma omp simd
            for (int64_t i = 0; i < m; i++) y[i] = x[i] * x[i];
        } else {
            for (int64_t i = 0; i < m; i++) y[i] = powf(x[i], s);
        }
        break;
    case RT_UN_SQRT:
#pragma omp simd
        for (int64_t i = 0; i < m; i++) y[i] = sqrtf(x[i]);
        break;
    case RT_UN_EXP:
        for (int64_t i = 0; i < m; i++) y[i] = expf(x[i]);
        break;
    case RT_UN_LOG:
        for (int64_t i = 0; i < m; i++) y[i] = logf(x[i]);
        break;
    case RT_UN_ABS:
#pragma omp simd
        for (int64_t i = 0; i < m; i++) y[i] = fabsf(x[i]);
        break;
    case RT_UN_NEG:
#pragma omp simd
        for (int64_t i = 0; i < m; i++) y[i] = -x[i];
        break;
    case RT_UN_RELU:
#pragma omp simd
        for (int64_t i = 0; i < m; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
        break;
    case RT_UN_LEAKY_RELU:
#pragma omp simd
        for (int64_t i = 0; i < m; i++) y[i] = x[i] > 0.0f ? x[i] : s * x[i];
        break;
    case RT_UN_SIGMOID:
        for (int64_t i = 0; i < m; i++) y[i] = 1.0f / (1.0f + expf(-x[i]));
        break;
    case RT_UN_TANH:
        for (int64_t i = 0; i < m; i++) y[i] = tanhf(x[i]);
        break;
    case RT_UN_GELU:
        for (int64_t i = 0; i < m; i++) y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * k_inv_sqrt2));
        break;
    }
}

// gy, x, y (m), gx (m): gx += f'(x) gy
static void unary_back_run(rt_unop op, float s, int64_t m, float *restrict gx, const float *restrict gy,
                           const float *restrict x, const float *restrict y) {
    switch (op) {
    case RT_UN_ADD_SCALAR:
#pragma omp simd
        for (int64_t i = 0; i < m; i++) gx[i] += gy[i];
        break;
    case RT_UN_MUL_SCALAR:
#pragma omp simd
        for (int64_t i = 0; i < m; i++) gx[i] += s * gy[i];
        break;
    case RT_UN_POW:
        if (s == 0.0f) break; /* x^0 is constant (PyTorch gives 0 even at x = 0) */
        if (s == 2.0f) {
#pragma omp simd
            for (int64_t i = 0; i < m; i++) gx[i] += 2.0f * x[i] * gy[i];
        } else {
            for (int64_t i = 0; i < m; i++) gx[i] += s * powf(x[i], s - 1.0f) * gy[i];
        }
        break;
    case RT_UN_SQRT:
#pragma omp simd
        for (int64_t i = 0; i < m; i++) gx[i] += 0.5f * gy[i] / y[i];
        break;
    case RT_UN_EXP:
#pragma omp simd
        for (int64_t i = 0; i < m; i++) gx[i] += gy[i] * y[i];
        break;
    case RT_UN_LOG:
#pragma omp simd
        for (int64_t i = 0; i < m; i++) gx[i] += gy[i] / x[i];
        break;
    case RT_UN_ABS:
#pragma omp simd
        for (int64_t i = 0; i < m; i++) {
            float g = gy[i]; /* loaded unconditionally: a select, not a branch */
            gx[i] += x[i] > 0.0f ? g : x[i] < 0.0f ? -g : 0.0f;
        }
        break;
    case RT_UN_NEG:
#pragma omp simd
        for (int64_t i = 0; i < m; i++) gx[i] -= gy[i];
        break;
    case RT_UN_RELU:
#pragma omp simd
        for (int64_t i = 0; i < m; i++) {
            float g = gy[i];
            gx[i] += y[i] > 0.0f ? g : 0.0f;
        }
        break;
    case RT_UN_LEAKY_RELU:
#pragma omp simd
        for (int64_t i = 0; i < m; i++) { /* pos ? g : s * g, as arithmetic: GCC will not if-convert it */
            float pos = x[i] > 0.0f ? 1.0f : 0.0f;
            gx[i] += gy[i] * pos + s * gy[i] * (1.0f - pos);
        }
        break;
    case RT_UN_SIGMOID:
#pragma omp simd
        for (int64_t i = 0; i < m; i++) gx[i] += gy[i] * y[i] * (1.0f - y[i]);
        break;
    case RT_UN_TANH:
#pragma omp simd
        for (int64_t i = 0; i < m; i++) gx[i] += gy[i] * (1.0f - y[i] * y[i]);
        break;
    case RT_UN_GELU:
        for (int64_t i = 0; i < m; i++) {
            float cdf = 0.5f * (1.0f + erff(x[i] * k_inv_sqrt2));
            float pdf = k_inv_sqrt2pi * expf(-0.5f * x[i] * x[i]);
            gx[i] += gy[i] * (cdf + x[i] * pdf);
        }
        break;
    }
}

void rt_unary_forward(rt_unop op, float s, int64_t n, float *y, const float *x) {
    int64_t nrun = (n + RT_EW_RUN - 1) / RT_EW_RUN;
#pragma omp parallel for schedule(static) if (n > RT_EW_PAR_MIN) /* over runs of the flat array */
    for (int64_t r = 0; r < nrun; r++) {
        int64_t i0 = r * RT_EW_RUN;
        unary_run(op, s, min64(RT_EW_RUN, n - i0), y + i0, x + i0);
    }
}

void rt_unary_backward(rt_unop op, float s, int64_t n, float *gx, const float *gy, const float *x, const float *y) {
    int64_t nrun = (n + RT_EW_RUN - 1) / RT_EW_RUN;
#pragma omp parallel for schedule(static) if (n > RT_EW_PAR_MIN) /* over runs of the flat array */
    for (int64_t r = 0; r < nrun; r++) {
        int64_t i0 = r * RT_EW_RUN;
        unary_back_run(op, s, min64(RT_EW_RUN, n - i0), gx + i0, gy + i0, x + i0, y + i0);
    }
}

static double unary_ref1(rt_unop op, double s, double x) {
    switch (op) {
    case RT_UN_ADD_SCALAR:
        return x + s;
    case RT_UN_MUL_SCALAR:
        return x * s;
    case RT_UN_POW:
        return pow(x, s);
    case RT_UN_SQRT:
        return sqrt(x);
    case RT_UN_EXP:
        return exp(x);
    case RT_UN_LOG:
        return log(x);
    case RT_UN_ABS:
        return fabs(x);
    case RT_UN_NEG:
        return -x;
    case RT_UN_RELU:
        return x > 0 ? x : 0;
    case RT_UN_LEAKY_RELU:
        return x > 0 ? x : s * x;
    case RT_UN_SIGMOID:
        return 1 / (1 + exp(-x));
    case RT_UN_TANH:
        return tanh(x);
    case RT_UN_GELU:
        return 0.5 * x * (1 + erf(x / sqrt(2.0)));
    }
    return 0;
}

/* derivative from x alone (the fast kernels use the saved output where that is cheaper) */
static double unary_dref1(rt_unop op, double s, double x) {
    switch (op) {
    case RT_UN_ADD_SCALAR:
        return 1;
    case RT_UN_MUL_SCALAR:
        return s;
    case RT_UN_POW:
        return s == 0 ? 0 : s * pow(x, s - 1);
    case RT_UN_SQRT:
        return 0.5 / sqrt(x);
    case RT_UN_EXP:
        return exp(x);
    case RT_UN_LOG:
        return 1 / x;
    case RT_UN_ABS:
        return x > 0 ? 1 : x < 0 ? -1 : 0;
    case RT_UN_NEG:
        return -1;
    case RT_UN_RELU:
        return x > 0 ? 1 : 0;
    case RT_UN_LEAKY_RELU:
        return x > 0 ? 1 : s;
    case RT_UN_SIGMOID: {
        double e = 1 / (1 + exp(-x));
        return e * (1 - e);
    }
    case RT_UN_TANH:
        return 1 - tanh(x) * tanh(x);
    case RT_UN_GELU:
        return 0.5 * (1 + erf(x / sqrt(2.0))) + x * exp(-0.5 * x * x) / sqrt(2 * M_PI);
    }
    return 0;
}

void rt_unary_forward_ref(rt_unop op, float s, int64_t n, float *y, const float *x) {
    for (int64_t i = 0; i < n; i++) y[i] = (float)unary_ref1(op, s, x[i]);
}

void rt_unary_backward_ref(rt_unop op, float s, int64_t n, float *gx, const float *gy, const float *x, const float *y) {
    for (int64_t i = 0; i < n; i++) gx[i] = (float)(gx[i] + unary_dref1(op, s, x[i]) * gy[i]);
}

/* ---- fused residual end: relu(a + b) ---- */

void rt_add_relu_forward(int64_t n, float *y, const float *a, const float *b) {
    int64_t nrun = (n + RT_EW_RUN - 1) / RT_EW_RUN;
#pragma omp parallel for schedule(static) if (n > RT_EW_PAR_MIN) /* over runs of the flat array */
    for (int64_t r = 0; r < nrun; r++) {
        const int64_t i0 = r * RT_EW_RUN, m = min64(RT_EW_RUN, n - i0);
        float *yr = y + i0;
        const float *ar = a + i0, *br = b + i0;
#pragma omp simd
        for (int64_t i = 0; i < m; i++) {
            float v = ar[i] + br[i];
            yr[i] = v > 0.0f ? v : 0.0f;
        }
    }
}

void rt_add_relu_backward(int64_t n, float *ga, float *gb, const float *gy, const float *y) {
    if (ga == gb && ga) { /* a + a: both shares into one buffer, in the unfused order (ga + g) + g */
        rt_add_relu_backward(n, ga, NULL, gy, y);
        rt_add_relu_backward(n, NULL, gb, gy, y);
        return;
    }
    int64_t nrun = (n + RT_EW_RUN - 1) / RT_EW_RUN;
#pragma omp parallel for schedule(static) if (n > RT_EW_PAR_MIN) /* over runs of the flat array */
    for (int64_t r = 0; r < nrun; r++) {
        const int64_t i0 = r * RT_EW_RUN, m = min64(RT_EW_RUN, n - i0);
        const float *g = gy + i0, *o = y + i0;
        float *restrict pa = ga ? ga + i0 : NULL, *restrict pb = gb ? gb + i0 : NULL;
        if (pa && pb) {
#pragma omp simd
            for (int64_t i = 0; i < m; i++) {
                float v = o[i] > 0.0f ? g[i] : 0.0f;
                pa[i] += v;
                pb[i] += v;
            }
        } else if (pa || pb) {
            float *p = pa ? pa : pb;
#pragma omp simd
            for (int64_t i = 0; i < m; i++) {
                float v = g[i]; /* loaded unconditionally: a select, not a branch */
                p[i] += o[i] > 0.0f ? v : 0.0f;
            }
        }
    }
}

void rt_add_relu_forward_ref(int64_t n, float *y, const float *a, const float *b) {
    for (int64_t i = 0; i < n; i++) {
        double v = (double)a[i] + b[i];
        y[i] = (float)(v > 0 ? v : 0);
    }
}

void rt_add_relu_backward_ref(int64_t n, float *ga, float *gb, const float *gy, const float *y) {
    for (int64_t i = 0; i < n; i++) {
        double g = y[i] > 0 ? gy[i] : 0;
        if (ga) ga[i] = (float)(ga[i] + g);
        if (gb) gb[i] = (float)(gb[i] + g);
    }
}

/* ---- broadcasting binary ops ---- */

int rt_bcast_plan(rt_bcast *p, int64_t *out_shape, int *out_nd, int na, const int64_t *ash, int nb,
                  const int64_t *bsh) {
    int nd = na > nb ? na : nb;
    int64_t sa[RT_MAX_DIMS], sb[RT_MAX_DIMS], stra = 1, strb = 1;
    for (int i = nd - 1; i >= 0; i--) {
        int64_t da = i - (nd - na) >= 0 ? ash[i - (nd - na)] : 1;
        int64_t db = i - (nd - nb) >= 0 ? bsh[i - (nd - nb)] : 1;
        if (da != db && da != 1 && db != 1) return -1;
        out_shape[i] = da == 1 ? db : da;
        sa[i] = da == 1 ? 0 : stra;
        sb[i] = db == 1 ? 0 : strb;
        stra *= da;
        strb *= db;
    }
    *out_nd = nd;
    p->nd = 0;
    for (int i = 0; i < nd; i++) {
        int64_t n = out_shape[i];
        if (n == 1) continue; /* both operands have size 1 here: the dim carries nothing */
        int k = p->nd - 1;
        if (k >= 0 && p->sa[k] == sa[i] * n && p->sb[k] == sb[i] * n) { /* merges with the previous dim */
            p->shape[k] *= n;
            p->sa[k] = sa[i];
            p->sb[k] = sb[i];
            continue;
        }
        p->shape[++k] = n;
        p->sa[k] = sa[i];
        p->sb[k] = sb[i];
        p->nd = k + 1;
    }
    if (p->nd == 0) { /* one element */
        p->nd = 1;
        p->shape[0] = 1;
        p->sa[0] = p->sb[0] = 1;
    }
    return 0;
}

/* d (m) = a op b over one run; a and b advance by 1 (sa/sb = 1) or stay put (0). d may be a. */
#define BIN_LOOP(EXPR)                                                                                                 \
    do {                                                                                                               \
        if (sa && sb) {                                                                                                \
            _Pragma("omp simd") for (int64_t k = 0; k < m; k++) {                                                      \
                float x = a[k], y = b[k];                                                                              \
                d[k] = EXPR;                                                                                           \
            }                                                                                                          \
        } else if (sa) {                                                                                               \
            const float y = b[0];                                                                                      \
            _Pragma("omp simd") for (int64_t k = 0; k < m; k++) {                                                      \
                float x = a[k];                                                                                        \
                d[k] = EXPR;                                                                                           \
            }                                                                                                          \
        } else if (sb) {                                                                                               \
            const float x = a[0];                                                                                      \
            _Pragma("omp simd") for (int64_t k = 0; k < m; k++) {                                                      \
                float y = b[k];                                                                                        \
                d[k] = EXPR;                                                                                           \
            }                                                                                                          \
        } else {                                                                                                       \
            const float x = a[0], y = b[0];                                                                            \
            for (int64_t k = 0; k < m; k++) d[k] = EXPR;                                                               \
        }                                                                                                              \
    } while (0)

static void bin_run(rt_binop op, int64_t m, float *d, const float *a, int sa, const float *b, int sb) {
    switch (op) {
    case RT_BIN_ADD:
        BIN_LOOP(x + y);
        break;
    case RT_BIN_SUB:
        BIN_LOOP(x - y);
        break;
    case RT_BIN_MUL:
        BIN_LOOP(x * y);
        break;
    case RT_BIN_DIV:
        BIN_LOOP(x / y);
        break;
    }
}

void rt_binary_forward(rt_binop op, const rt_bcast *p, float *out, const float *a, const float *b) {
    int nd = p->nd;
    int64_t L = p->shape[nd - 1], rows = 1;
    for (int d = 0; d < nd - 1; d++) rows *= p->shape[d];
    int sai = p->sa[nd - 1] != 0, sbi = p->sb[nd - 1] != 0;
    int64_t nrun = (L + RT_EW_RUN - 1) / RT_EW_RUN, ntask = rows * nrun;
#pragma omp parallel for schedule(static) if (rows * L > RT_EW_PAR_MIN) /* over (row, run): disjoint outputs */
    for (int64_t t = 0; t < ntask; t++) {
        int64_t row = t / nrun, k0 = (t % nrun) * RT_EW_RUN, oa = 0, ob = 0, rem = row;
        for (int d = nd - 2; d >= 0; d--) {
            int64_t i = rem % p->shape[d];
            rem /= p->shape[d];
            oa += i * p->sa[d];
            ob += i * p->sb[d];
        }
        bin_run(op, min64(RT_EW_RUN, L - k0), out + row * L + k0, a + oa + (sai ? k0 : 0), sai, b + ob + (sbi ? k0 : 0),
                sbi);
    }
}

/* One run of the local gradient term of `a op b` w.r.t. operand `which`, times g: returns where it
 * is (g itself for add/sub) and its sign. x is that operand (stride sx), o the other (stride so). */
static const float *bin_term(rt_binop op, int which, int64_t m, float *buf, const float *g, const float *o, int so,
                             const float *x, int sx, const float *out, float *sign) {
    *sign = 1.0f;
    switch (op) {
    case RT_BIN_ADD:
        return g;
    case RT_BIN_SUB:
        *sign = which ? -1.0f : 1.0f;
        return g;
    case RT_BIN_MUL:
        bin_run(RT_BIN_MUL, m, buf, g, 1, o, so);
        return buf; /* g * other */
    case RT_BIN_DIV:
        if (!which) {
            bin_run(RT_BIN_DIV, m, buf, g, 1, o, so); /* d(a/b)/da = 1/b */
        } else {
            bin_run(RT_BIN_MUL, m, buf, g, 1, out, 1); /* d(a/b)/db = -(a/b)/b */
            bin_run(RT_BIN_DIV, m, buf, buf, 1, x, sx);
            *sign = -1.0f;
        }
        return buf;
    }
    return g;
}

void rt_binary_backward(rt_binop op, int which, const rt_bcast *p, float *gx, const float *gy, const float *a,
                        const float *b, const float *out) {
    const int64_t *sx = which ? p->sb : p->sa, *so = which ? p->sa : p->sb;
    const float *xd = which ? b : a, *od = which ? a : b;
    int nd = p->nd;
    int64_t L = p->shape[nd - 1], ost[RT_MAX_DIMS];
    ost[nd - 1] = 1;
    for (int d = nd - 2; d >= 0; d--) ost[d] = ost[d + 1] * p->shape[d + 1];
    /* outer dims the operand has (kept: one task each) and those it was broadcast over (reduced,
     * summed inside the task in row-major order) */
    int kept[RT_MAX_DIMS], red[RT_MAX_DIMS], nk = 0, nr = 0;
    int64_t nkept = 1, nred = 1;
    for (int d = 0; d < nd - 1; d++) {
        if (sx[d]) {
            kept[nk++] = d;
            nkept *= p->shape[d];
        } else {
            red[nr++] = d;
            nred *= p->shape[d];
        }
    }
    int ik = sx[nd - 1] != 0, soi = so[nd - 1] != 0; /* inner dim kept by the operand; other's inner stride */
    int64_t nrun = ik ? (L + RT_EW_RUN - 1) / RT_EW_RUN : 1, ntask = nkept * nrun;
#pragma omp parallel for schedule(static) if (nkept * nred * L > RT_EW_PAR_MIN) /* over disjoint gx ranges */
    for (int64_t t = 0; t < ntask; t++) {
        int64_t j = t / nrun, k0 = ik ? (t % nrun) * RT_EW_RUN : 0, len = ik ? min64(RT_EW_RUN, L - k0) : L;
        int64_t bo = 0, bth = 0, bx = 0, rem = j;
        for (int q = nk - 1; q >= 0; q--) {
            int d = kept[q];
            int64_t i = rem % p->shape[d];
            rem /= p->shape[d];
            bo += i * ost[d];
            bth += i * so[d];
            bx += i * sx[d];
        }
        float buf[RT_EW_RUN];
        double acc = 0;
        int64_t ridx[RT_MAX_DIMS] = {0}, ro = 0, rth = 0;
        for (int64_t r = 0; r < nred; r++) {
            for (int64_t q0 = 0; q0 < len; q0 += RT_EW_RUN) {
                int64_t m = min64(RT_EW_RUN, len - q0), kk = k0 + q0;
                float sign;
                const float *tt = bin_term(op, which, m, buf, gy + bo + ro + kk, od + bth + rth + (soi ? kk : 0), soi,
                                           xd + bx + (ik ? kk : 0), ik, out + bo + ro + kk, &sign);
                if (ik) {
                    float *g = gx + bx + kk;
#pragma omp simd
                    for (int64_t k = 0; k < m; k++) g[k] += sign * tt[k];
                } else {
                    double s = 0;
#pragma omp simd reduction(+ : s)
                    for (int64_t k = 0; k < m; k++) s += tt[k];
                    acc += sign * s;
                }
            }
            for (int q = nr - 1; q >= 0; q--) { /* next reduced index, row-major */
                int d = red[q];
                ro += ost[d];
                rth += so[d];
                if (++ridx[q] < p->shape[d]) break;
                ro -= p->shape[d] * ost[d];
                rth -= p->shape[d] * so[d];
                ridx[q] = 0;
            }
        }
        if (!ik) gx[bx] += (float)acc;
    }
}

/* Unmerged geometry for the references: out shape and a's/b's strides (0 where broadcast). */
static int ref_geom(int na, const int64_t *ash, int nb, const int64_t *bsh, int64_t *osh, int64_t *sa, int64_t *sb) {
    int nd = na > nb ? na : nb;
    int64_t stra = 1, strb = 1;
    for (int i = nd - 1; i >= 0; i--) {
        int64_t da = i - (nd - na) >= 0 ? ash[i - (nd - na)] : 1;
        int64_t db = i - (nd - nb) >= 0 ? bsh[i - (nd - nb)] : 1;
        osh[i] = da == 1 ? db : da;
        sa[i] = da == 1 ? 0 : stra;
        sb[i] = db == 1 ? 0 : strb;
        stra *= da;
        strb *= db;
    }
    return nd;
}

static void ref_offsets(int nd, const int64_t *osh, const int64_t *sa, const int64_t *sb, int64_t i, int64_t *oa,
                        int64_t *ob) {
    *oa = *ob = 0;
    for (int d = nd - 1; d >= 0; d--) {
        int64_t k = i % osh[d];
        i /= osh[d];
        *oa += k * sa[d];
        *ob += k * sb[d];
    }
}

static int64_t prod(int n, const int64_t *s) {
    int64_t p = 1;
    for (int i = 0; i < n; i++) p *= s[i];
    return p;
}

void rt_binary_forward_ref(rt_binop op, int na, const int64_t *ash, int nb, const int64_t *bsh, float *out,
                           const float *a, const float *b) {
    int64_t osh[RT_MAX_DIMS], sa[RT_MAX_DIMS], sb[RT_MAX_DIMS];
    int nd = ref_geom(na, ash, nb, bsh, osh, sa, sb);
    for (int64_t i = 0, n = prod(nd, osh); i < n; i++) {
        int64_t oa, ob;
        ref_offsets(nd, osh, sa, sb, i, &oa, &ob);
        double x = a[oa], y = b[ob];
        out[i] = (float)(op == RT_BIN_ADD ? x + y : op == RT_BIN_SUB ? x - y : op == RT_BIN_MUL ? x * y : x / y);
    }
}

void rt_binary_backward_ref(rt_binop op, int which, int na, const int64_t *ash, int nb, const int64_t *bsh, float *gx,
                            const float *gy, const float *a, const float *b, const float *out) {
    int64_t osh[RT_MAX_DIMS], sa[RT_MAX_DIMS], sb[RT_MAX_DIMS];
    int nd = ref_geom(na, ash, nb, bsh, osh, sa, sb);
    int64_t nx = which ? prod(nb, bsh) : prod(na, ash);
    double *acc = calloc((size_t)nx ? (size_t)nx : 1, sizeof *acc); /* reference only: not a hot path */
    if (!acc) return;
    for (int64_t i = 0, n = prod(nd, osh); i < n; i++) {
        int64_t oa, ob;
        ref_offsets(nd, osh, sa, sb, i, &oa, &ob);
        double g = gy[i], x = a[oa], y = b[ob], t;
        switch (op) {
        case RT_BIN_ADD:
            t = g;
            break;
        case RT_BIN_SUB:
            t = which ? -g : g;
            break;
        case RT_BIN_MUL:
            t = which ? g * x : g * y;
            break;
        default:
            t = which ? -g * x / (y * y) : g / y;
            break;
        }
        acc[which ? ob : oa] += t;
    }
    for (int64_t j = 0; j < nx; j++) gx[j] = (float)(gx[j] + acc[j]);
    free(acc);
}
