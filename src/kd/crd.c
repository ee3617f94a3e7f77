/* Contrastive representation distillation, as RepDistiller's CRDLoss: linear embeddings of both
 * sides, memory banks of past embeddings indexed by data set sample, and NCE against K negatives per
 * sample. The embeddings are ordinary recorded ops; the NCE is one op ("crd_nce") whose forward also
 * computes the gradient with respect to both embeddings, because the memory rows it reads are
 * overwritten by the momentum update before the backward runs. */
#include <math.h>
#include <stdlib.h>

#include "kd/kd_util.h"
#include "kernels/nce.h"
#include "ops/op_util.h"
#include "nn/nn_impl.h"

#define CRD_EPS 1e-7 /* RepDistiller's ContrastLoss eps */

rt_kd_crd *rt_kd_crd_new(rt_ctx *ctx, rt_paramset *ps, const char *prefix, int64_t s_dim, int64_t t_dim, int64_t n_data,
                         const rt_kd_crd_opts *opts) {
    if (rt_status(ctx)) return NULL;
    if (!ps || !prefix) {
        rt_fail(ctx, RT_EINVAL, "crd: parameter set or prefix is NULL");
        return NULL;
    }
    rt_kd_crd_opts o = {128, 16384, 0.07f, 0.5f};
    if (opts) {
        if (opts->feat_dim) o.feat_dim = opts->feat_dim;
        if (opts->nce_k) o.nce_k = opts->nce_k;
        if (opts->nce_t != 0) o.nce_t = opts->nce_t;
        if (opts->nce_m != 0) o.nce_m = opts->nce_m;
    }
    if (s_dim <= 0 || t_dim <= 0 || n_data <= 0 || o.feat_dim <= 0 || o.nce_k <= 0 || !(o.nce_t > 0) ||
        !(o.nce_m > 0 && o.nce_m < 1)) {
        rt_fail(ctx, RT_EINVAL,
                "crd %s: student dim %lld, teacher dim %lld, n_data %lld, feat_dim %lld, nce_k %lld must be "
                "positive, nce_t %g > 0 and nce_m %g in (0, 1)",
                prefix, (long long)s_dim, (long long)t_dim, (long long)n_data, (long long)o.feat_dim,
                (long long)o.nce_k, (double)o.nce_t, (double)o.nce_m);
        return NULL;
    }
    rt_kd_crd *c = calloc(1, sizeof *c);
    if (!c) {
        rt_fail(ctx, RT_ENOMEM, "crd %s: out of memory", prefix);
        return NULL;
    }
    c->s_dim = s_dim;
    c->t_dim = t_dim;
    c->n_data = n_data;
    c->o = o;
    c->update_memory = 1;
    char es[128], et[128], con[128], np[128], m1[128], m2[128];
    if (rt_nn_join(ctx, es, prefix, "embed_s.linear") || rt_nn_join(ctx, et, prefix, "embed_t.linear") ||
        rt_nn_join(ctx, con, prefix, "contrast") || rt_nn_join(ctx, np, con, "params") ||
        rt_nn_join(ctx, m1, con, "memory_v1") || rt_nn_join(ctx, m2, con, "memory_v2"))
        goto fail;
    c->embed_s = rt_nn_linear(ctx, ps, es, s_dim, o.feat_dim, 1);
    c->embed_t = rt_nn_linear(ctx, ps, et, t_dim, o.feat_dim, 1);
    c->params = rt_params_add(ctx, ps, np, RT_BUFFER, 1, (int64_t[]){5});
    c->memory_s = rt_params_add(ctx, ps, m1, RT_BUFFER, 2, (int64_t[]){n_data, o.feat_dim});
    c->memory_t = rt_params_add(ctx, ps, m2, RT_BUFFER, 2, (int64_t[]){n_data, o.feat_dim});
    if (!rt_status(ctx)) return c;
fail:
    rt_kd_crd_free(c);
    return NULL;
}

void rt_kd_crd_init(rt_kd_crd *c, rt_rng *rng) {
    if (!c || !c->memory_s || !c->memory_s->data) return;
    rt_module_init(c->embed_s, rng);
    rt_module_init(c->embed_t, rng);
    const double stdv = 1.0 / sqrt((double)c->o.feat_dim / 3.0);
    rt_tensor *banks[2] = {c->memory_s, c->memory_t};
    for (int i = 0; i < 2; i++)
        for (int64_t j = 0, n = rt_numel(banks[i]); j < n; j++)
            banks[i]->data[j] = (float)((2 * rt_rng_uniform(rng) - 1) * stdv);
    float *p = c->params->data;
    p[0] = (float)c->o.nce_k;
    p[1] = c->o.nce_t;
    p[2] = p[3] = -1.0f; /* Z unset */
    p[4] = c->o.nce_m;
}

void rt_kd_crd_free(rt_kd_crd *c) {
    if (!c) return;
    rt_module_free(c->embed_s);
    rt_module_free(c->embed_t);
    free(c);
}

/* ---- the NCE op over the two embeddings ---- */

typedef struct {
    float *gv[2]; /* (B,D) each: d loss / d embedding, computed in the forward (NULL = not needed) */
} nce_saved;

static void nce_backward(rt_ctx *ctx, rt_node *n) {
    nce_saved *s = n->saved;
    const float gy = n->out->grad[0];
    for (int i = 0; i < 2; i++) {
        float *gx = rt_grad_of(ctx, n->src[i]);
        if (!gx || !s->gv[i]) continue;
        for (int64_t j = 0, m = rt_numel(n->src[i]); j < m; j++) gx[j] += gy * s->gv[i][j];
    }
}
static const rt_opdef op_crd_nce = {"crd_nce", nce_backward};

/* One side's NCE: v (B,D) scored against bank (N,D) rows idx (B,K1), normalised by *Z (set from these
 * scores when unset). Returns the side's loss; fills gv (B,D) when non-NULL. */
static double nce_side(rt_ctx *ctx, const rt_kd_crd *c, const float *v, const float *bank, const int64_t *idx,
                       int64_t B, float *Z, float *gv) {
    const int64_t K1 = c->o.nce_k + 1, D = c->o.feat_dim;
    /* scratch: per-sample losses (B doubles), then scores and their gradients (B*K1 floats each) */
    double *loss = rt_scratch(ctx, (size_t)B * sizeof(double) + 2 * (size_t)(B * K1) * sizeof(float));
    if (!loss) return NAN;
    float *e = (float *)(loss + B), *ds = e + B * K1;
    rt_nce_scores(B, K1, D, bank, v, idx, c->o.nce_t, e);
    if (*Z < 0) { /* set once, from the first batch, as the reference does: a constant afterwards */
        double sum = 0;
        for (int64_t i = 0; i < B * K1; i++) sum += e[i];
        *Z = (float)(sum / (double)(B * K1) * (double)c->n_data);
    }
    const double mpn = (double)c->o.nce_k / (double)c->n_data;
    rt_nce_loss(B, K1, e, *Z, mpn, CRD_EPS, c->o.nce_t, loss, gv ? ds : NULL);
    if (gv) rt_nce_gather(B, K1, D, ds, bank, idx, (float)(1.0 / (double)B), gv);
    double total = 0;
    for (int64_t b = 0; b < B; b++) total += loss[b];
    return total / (double)B;
}

static rt_tensor *crd_nce(rt_ctx *ctx, rt_kd_crd *c, rt_tensor *vs, rt_tensor *vt, const int64_t *idx,
                          const int64_t *cidx) {
    if (!(vs = rt_need_contiguous(ctx, vs)) || !(vt = rt_need_contiguous(ctx, vt))) return NULL;
    const int64_t B = vs->shape[0], D = c->o.feat_dim;
    rt_tensor *y = rt_empty(ctx, 0, NULL);
    if (!y) return NULL;
    /* the gradient of a side is only worked out when a backward can reach its embedding */
    const int rec = rt_grad_enabled(ctx);
    float *gv[2] = {NULL, NULL};
    if ((rec && vs->requires_grad && !(gv[0] = rt_arena_alloc(ctx, (size_t)(B * D) * sizeof(float)))) ||
        (rec && vt->requires_grad && !(gv[1] = rt_arena_alloc(ctx, (size_t)(B * D) * sizeof(float)))))
        return NULL;
    float *p = c->params->data;
    /* the student's embedding against the teacher bank (Z_s = params[2]) and vice versa */
    double ls = nce_side(ctx, c, vs->data, c->memory_t->data, cidx, B, &p[2], gv[0]);
    double lt = nce_side(ctx, c, vt->data, c->memory_s->data, cidx, B, &p[3], gv[1]);
    if (rt_status(ctx)) return NULL;
    y->data[0] = (float)(ls + lt);
    if (c->update_memory) {
        float *work = rt_scratch(ctx, (size_t)(B * D) * sizeof(float));
        if (!work) return NULL;
        rt_nce_memory_update(B, D, c->memory_s->data, vs->data, idx, c->o.nce_m, work);
        rt_nce_memory_update(B, D, c->memory_t->data, vt->data, idx, c->o.nce_m, work);
    }
    rt_node *nd = rt_record(ctx, &op_crd_nce, y, 2, (rt_tensor *[]){vs, vt}, sizeof(nce_saved));
    if (nd) *(nce_saved *)nd->saved = (nce_saved){{gv[0], gv[1]}};
    return rt_status(ctx) ? NULL : y;
}

rt_tensor *rt_kd_crd_loss(rt_ctx *ctx, rt_kd_crd *c, rt_tensor *f_s, rt_tensor *f_t, const int64_t *idx,
                          const int64_t *contrast_idx) {
    KD_INPUTS(ctx, "crd", c, f_s, f_t, idx);
    if (!c->memory_s || !c->memory_s->data) {
        rt_fail(ctx, RT_ESTATE, "crd: its parameter set is not finalized (rt_params_finalize, then rt_kd_crd_init)");
        return NULL;
    }
    if (f_s->ndim < 2 || f_t->ndim < 2 || f_s->shape[0] != f_t->shape[0] || f_s->shape[0] <= 0)
        return kd_fail2(ctx, "crd", "feature", f_s, f_t, "must be (B,...) with the same non-zero batch size");
    const int64_t B = f_s->shape[0], K1 = c->o.nce_k + 1;
    if (rt_numel(f_s) / B != c->s_dim || rt_numel(f_t) / B != c->t_dim) {
        char b[160];
        snprintf(b, sizeof b, "the loss was built for %lld student and %lld teacher features per sample",
                 (long long)c->s_dim, (long long)c->t_dim);
        return kd_fail2(ctx, "crd", "feature", f_s, f_t, b);
    }
    for (int64_t b = 0; b < B; b++)
        if (idx[b] < 0 || idx[b] >= c->n_data) {
            rt_fail(ctx, RT_EINVAL, "crd: sample index %lld at batch position %lld out of range [0, %lld)",
                    (long long)idx[b], (long long)b, (long long)c->n_data);
            return NULL;
        }
    int64_t *cidx = rt_arena_alloc(ctx, (size_t)(B * K1) * sizeof(int64_t));
    if (!cidx) return NULL;
    if (contrast_idx) {
        for (int64_t i = 0; i < B * K1; i++)
            if (contrast_idx[i] < 0 || contrast_idx[i] >= c->n_data) {
                rt_fail(ctx, RT_EINVAL, "crd: contrast index %lld at (%lld, %lld) out of range [0, %lld)",
                        (long long)contrast_idx[i], (long long)(i / K1), (long long)(i % K1), (long long)c->n_data);
                return NULL;
            }
        memcpy(cidx, contrast_idx, (size_t)(B * K1) * sizeof(int64_t));
    } else { /* the positive, then K uniform draws over the data set (class-agnostic) */
        rt_rng *rng = rt_ctx_rng(ctx);
        for (int64_t b = 0; b < B; b++) {
            cidx[b * K1] = idx[b];
            for (int64_t k = 1; k < K1; k++) cidx[b * K1 + k] = (int64_t)rt_rng_below(rng, (uint64_t)c->n_data);
        }
    }
    rt_tensor *vs = rt_l2_normalize(ctx, rt_module_forward(c->embed_s, ctx, kd_flat2(ctx, f_s), NULL), 1, 1e-12f);
    rt_tensor *vt = rt_l2_normalize(ctx, rt_module_forward(c->embed_t, ctx, kd_flat2(ctx, f_t), NULL), 1, 1e-12f);
    if (!vs || !vt) return NULL;
    return crd_nce(ctx, c, vs, vt, idx, cidx);
}
