/* The multi-path distillation run behind `retort distill` (adaptive distillation, 000): paths from
 * teacher taps to student taps, each with a loss and an optional adapter, aggregated by one of the
 * strategies single | equal | fixed | adaptive | multiobjective. */
#include "retort/distill.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "retort/aggregate.h"
#include "retort/io.h"
#include "retort/kd.h"
#include "retort/optim.h"
#include "train/progress.h"
#include "train/train_fields.h"
#include "train/train_impl.h"

#define F(key, type, member, def, help) {key, type, offsetof(rt_distill_cfg, train.member), def, help},
#define D(key, type, member, def, help) {key, type, offsetof(rt_distill_cfg, member), def, help},
const rt_cfg_field rt_distill_schema[] = {
    RT_TRAIN_FIELDS(F)
    D("teacher", RT_CFG_STR, teacher, "models/fmnist-teacher/checkpoint.safetensors", "teacher checkpoint")
    D("distill.strategy", RT_CFG_STR, strategy, "adaptive", "single | equal | fixed | adaptive | multiobjective")
    D("distill.paths", RT_CFG_STRLIST, paths, "[st, at]", "st l2 dkd at nst sp fitnet hcl mse rkd pkt cc")
    D("distill.weights", RT_CFG_FLOATLIST, weights, "[]", "per listed path: fixed weights / adaptive multipliers (default 1)")
    D("distill.alpha", RT_CFG_FLOAT, alpha, "1", "total = CE + alpha * aggregate(paths)")
    D("distill.layerwise", RT_CFG_BOOL, layerwise, "false", "one path per feature tap")
    D("distill.log_every", RT_CFG_INT, log_every, "50", "steps between paths.jsonl records")
    D("distill.cos_every", RT_CFG_INT, cos_every, "0", "steps between gradient-cosine records (0 = never; K backward passes)")
    D("distill.scratch_baseline", RT_CFG_BOOL, scratch_baseline, "false", "also train the student from scratch (same data, schedule, seed) for comparison")
    D("distill.z_weight_decay", RT_CFG_BOOL, z_weight_decay, "false", "weight decay on the adaptive z")
    D("distill.mgda_normalise", RT_CFG_STR, mgda_normalise, "none", "none | l2 | loss | loss_l2")
    D("search.values", RT_CFG_FLOATLIST, search_values, "[0.1, 1, 10, 100, 1000]", "retort search: candidate path weights")
    D("search.mode", RT_CFG_STR, search_mode, "grid", "retort search: grid | random")
    D("search.trials", RT_CFG_INT, search_trials, "8", "retort search: random trials")
    D("kd.T", RT_CFG_FLOAT, T, "4", "soft-target and DKD temperature")
    D("dkd.alpha", RT_CFG_FLOAT, dkd_alpha, "1", "DKD target-class weight")
    D("dkd.beta", RT_CFG_FLOAT, dkd_beta, "8", "DKD non-target weight")
    D("at.taps", RT_CFG_STRLIST, at_taps, "[layer1, layer2, layer3]", "attention-transfer taps")
    D("nst.taps", RT_CFG_STRLIST, nst_taps, "[layer3]", "NST taps")
    D("sp.taps", RT_CFG_STRLIST, sp_taps, "[layer3]", "similarity-preserving taps")
    D("fitnet.taps", RT_CFG_STRLIST, fitnet_taps, "[layer2]", "FitNet hint taps (adapter 1x1 conv + BN)")
    D("hcl.taps", RT_CFG_STRLIST, hcl_taps, "[layer1, layer2, layer3]", "HCL taps (adapter 1x1 conv + BN)")
    D("mse.taps", RT_CFG_STRLIST, mse_taps, "[layer3]", "feature-MSE taps (adapter 1x1 conv + BN)")
    D("rkd.taps", RT_CFG_STRLIST, rkd_taps, "[pool]", "RKD taps")
    D("pkt.taps", RT_CFG_STRLIST, pkt_taps, "[pool]", "PKT taps")
    D("cc.taps", RT_CFG_STRLIST, cc_taps, "[pool]", "CC taps")
};
#undef F
#undef D
const int rt_distill_schema_len = (int)(sizeof rt_distill_schema / sizeof rt_distill_schema[0]);

/* ---- paths ---- */

typedef enum { L_ST, L_L2, L_DKD, L_AT, L_NST, L_SP, L_FITNET, L_HCL, L_MSE, L_RKD, L_PKT, L_CC } loss_kind;
static const char *loss_names[] = {"st", "l2", "dkd", "at", "nst", "sp", "fitnet", "hcl", "mse", "rkd", "pkt", "cc"};
#define NLOSS ((int)(sizeof loss_names / sizeof loss_names[0]))
static int needs_adapter(loss_kind k) { return k == L_FITNET || k == L_HCL || k == L_MSE; }
static int is_logit(loss_kind k) { return k == L_ST || k == L_L2 || k == L_DKD; }

#define MAX_PATHS 32
#define MAX_TAPS 8
typedef struct {
    char name[64];
    loss_kind kind;
    int ntaps;
    char taps[MAX_TAPS][64];
    rt_module *adapter[MAX_TAPS]; /* conv1x1 + BN, student channels -> teacher channels */
    float w;
} path;

typedef struct {
    const rt_distill_cfg *cfg;
    rt_model *teacher, *student;
    rt_paramset aux;         /* adapters and the adaptive z */
    rt_tensor *z;            /* (K) when adaptive */
    int K;
    path p[MAX_PATHS];
    int strategy;            /* 0 single, 1 equal, 2 fixed, 3 adaptive, 4 multiobjective */
    rt_minnorm_normalise norm;
    float *G;                /* K x n per-path gradients (multiobjective, cosines) */
    double weights[MAX_PATHS]; /* the effective weight of each path at the last step */
} distiller;

static const rt_cfg_strlist *taps_of(const rt_distill_cfg *c, loss_kind k) {
    switch (k) {
    case L_AT: return &c->at_taps;
    case L_NST: return &c->nst_taps;
    case L_SP: return &c->sp_taps;
    case L_FITNET: return &c->fitnet_taps;
    case L_HCL: return &c->hcl_taps;
    case L_MSE: return &c->mse_taps;
    case L_RKD: return &c->rkd_taps;
    case L_PKT: return &c->pkt_taps;
    case L_CC: return &c->cc_taps;
    default: return NULL;
    }
}

static int tap_index(const rt_model *m, const char *name) {
    for (int i = 0; i < m->ntaps; i++)
        if (!strcmp(m->tap_names[i], name)) return i;
    return -1;
}

/* Error listing both models' taps and their shapes (from one probe forward). */
static int taps_error(rt_ctx *ctx, distiller *d, const rt_taps *tt, const rt_taps *ts, const char *what) {
    char msg[1600];
    size_t len = (size_t)snprintf(msg, sizeof msg, "%s. Teacher %s taps:", what, d->teacher->arch);
    for (int i = 0; i < tt->n && len < sizeof msg - 100; i++) {
        char b[96];
        len += (size_t)snprintf(msg + len, sizeof msg - len, " %s%s", tt->name[i], rt_shape_str(tt->t[i], b));
    }
    len += (size_t)snprintf(msg + len, sizeof msg - len, "; student %s taps:", d->student->arch);
    for (int i = 0; i < ts->n && len < sizeof msg - 100; i++) {
        char b[96];
        len += (size_t)snprintf(msg + len, sizeof msg - len, " %s%s", ts->name[i], rt_shape_str(ts->t[i], b));
    }
    return rt_fail(ctx, RT_EINVAL, "distill: %s", msg);
}

/* Builds the paths from the config; a probe forward of both models gives the tap shapes that
 * adapters and checks need. */
static int build_paths(rt_ctx *ctx, distiller *d, const rt_dataset *ds) {
    const rt_distill_cfg *c = d->cfg;
    static const char *strategies[] = {"single", "equal", "fixed", "adaptive", "multiobjective"};
    d->strategy = -1;
    for (int i = 0; i < 5; i++)
        if (!strcmp(c->strategy, strategies[i])) d->strategy = i;
    if (d->strategy < 0)
        return rt_fail(ctx, RT_EINVAL, "distill.strategy '%s' is unknown (single, equal, fixed, adaptive, multiobjective)",
                       c->strategy);
    const char *nn[] = {"none", "l2", "loss", "loss_l2"};
    d->norm = (rt_minnorm_normalise)-1;
    for (int i = 0; i < 4; i++)
        if (!strcmp(c->mgda_normalise, nn[i])) d->norm = (rt_minnorm_normalise)i;
    if ((int)d->norm < 0) return rt_fail(ctx, RT_EINVAL, "distill.mgda_normalise '%s' is unknown (none, l2, loss, loss_l2)", c->mgda_normalise);
    if (c->paths.n == 0) return rt_fail(ctx, RT_EINVAL, "distill.paths is empty");
    if (d->strategy == 0 && c->paths.n != 1)
        return rt_fail(ctx, RT_EINVAL, "distill.strategy single takes one path, got %d", c->paths.n);
    if (c->weights.n && c->weights.n != c->paths.n)
        return rt_fail(ctx, RT_EINVAL, "distill.weights has %d values for %d paths", c->weights.n, c->paths.n);
    /* probe: one small batch through both models to learn the taps' shapes */
    rt_mark mk = rt_arena_mark(ctx);
    int prev = rt_set_grad_enabled(ctx, 0);
    int64_t b = ds->n < 2 ? ds->n : 2;
    rt_tensor *x = rt_wrap(ctx, ds->x, 4, (int64_t[]){b, ds->c, ds->h, ds->w});
    rt_taps tt = {0}, ts = {0};
    rt_model_train(d->teacher, 0);
    rt_model_train(d->student, 0);
    rt_model_forward(ctx, d->teacher, x, &tt);
    rt_model_forward(ctx, d->student, x, &ts);
    rt_set_grad_enabled(ctx, prev);
    int rc = rt_status(ctx);
    d->K = 0;
    rt_params_init(&d->aux);
    for (int i = 0; i < c->paths.n && !rc; i++) {
        int k = -1;
        for (int j = 0; j < NLOSS; j++)
            if (!strcmp(c->paths.v[i], loss_names[j])) k = j;
        if (k < 0) {
            rc = rt_fail(ctx, RT_EINVAL, "distill.paths: unknown loss '%s' (st, l2, dkd, at, nst, sp, fitnet, hcl, mse, rkd, pkt, cc)",
                         c->paths.v[i]);
            break;
        }
        float w = c->weights.n ? (float)c->weights.v[i] : 1.0f;
        const rt_cfg_strlist *tl = taps_of(c, (loss_kind)k);
        int ntaps = is_logit((loss_kind)k) ? 1 : tl->n;
        if (!is_logit((loss_kind)k) && ntaps == 0) {
            rc = rt_fail(ctx, RT_EINVAL, "distill: %s.taps is empty", loss_names[k]);
            break;
        }
        int groups = !is_logit((loss_kind)k) && c->layerwise ? ntaps : 1;
        for (int g = 0; g < groups && !rc; g++) {
            if (d->K == MAX_PATHS) {
                rc = rt_fail(ctx, RT_EINVAL, "distill: more than %d paths", MAX_PATHS);
                break;
            }
            path *p = &d->p[d->K++];
            memset(p, 0, sizeof *p);
            p->kind = (loss_kind)k;
            p->w = w;
            if (is_logit(p->kind)) {
                snprintf(p->name, sizeof p->name, "%s", loss_names[k]);
                continue;
            }
            int t0 = groups > 1 ? g : 0, t1 = groups > 1 ? g + 1 : ntaps;
            if (groups > 1) snprintf(p->name, sizeof p->name, "%s:%s", loss_names[k], tl->v[g]);
            else snprintf(p->name, sizeof p->name, "%s", loss_names[k]);
            for (int t = t0; t < t1 && !rc; t++) {
                const char *tap = tl->v[t];
                int it = tap_index(d->teacher, tap), is = tap_index(d->student, tap);
                if (it < 0 || is < 0) {
                    char what[200];
                    snprintf(what, sizeof what, "%s.taps names '%s', which the %s does not have", loss_names[k], tap,
                             it < 0 ? "teacher" : "student");
                    rc = taps_error(ctx, d, &tt, &ts, what);
                    break;
                }
                rt_tensor *ft = rt_taps_get(&tt, tap), *fs = rt_taps_get(&ts, tap);
                snprintf(p->taps[p->ntaps], sizeof p->taps[0], "%s", tap);
                if (needs_adapter(p->kind)) {
                    if (fs->ndim != 4 || ft->ndim != 4) {
                        char what[200];
                        snprintf(what, sizeof what, "%s on tap '%s' needs 4-D feature maps", loss_names[k], tap);
                        rc = taps_error(ctx, d, &tt, &ts, what);
                        break;
                    }
                    char prefix[128];
                    snprintf(prefix, sizeof prefix, "adapter.%s.%s", p->name, tap);
                    for (char *q = prefix; *q; q++)
                        if (*q == ':') *q = '_';
                    char pc[160], pb[160];
                    snprintf(pc, sizeof pc, "%s.0", prefix);
                    snprintf(pb, sizeof pb, "%s.1", prefix);
                    rt_module *mods[2]; /* separate statements: declaration order is the state_dict order */
                    mods[0] = rt_nn_conv2d(ctx, &d->aux, pc, fs->shape[1], ft->shape[1], 1, 1, 0, 1, 0);
                    mods[1] = rt_nn_batchnorm2d(ctx, &d->aux, pb, ft->shape[1]);
                    p->adapter[p->ntaps] = rt_nn_sequential(ctx, prefix, 2, mods);
                    if (!p->adapter[p->ntaps]) rc = rt_status(ctx);
                } else if (p->kind == L_AT || p->kind == L_NST) {
                    if (fs->ndim != 4 || ft->ndim != 4) {
                        char what[200];
                        snprintf(what, sizeof what, "%s on tap '%s' needs 4-D feature maps", loss_names[k], tap);
                        rc = taps_error(ctx, d, &tt, &ts, what);
                        break;
                    }
                }
                p->ntaps++;
            }
        }
    }
    rt_arena_release(ctx, mk);
    if (rc) return rc;
    if (d->strategy == 3) {
        d->z = rt_params_add(ctx, &d->aux, "distill.z", RT_PARAM, 1, (int64_t[]){d->K});
        if (!d->z) return rt_status(ctx);
    }
    if ((rc = rt_params_finalize(ctx, &d->aux))) return rc;
    rt_rng rng;
    rt_rng_seed(&rng, (uint64_t)c->train.seed * 131 + 5);
    for (int i = 0; i < d->K; i++)
        for (int t = 0; t < d->p[i].ntaps; t++)
            if (d->p[i].adapter[t]) rt_module_init(d->p[i].adapter[t], &rng);
    /* z starts at 0 (v = 1), as the paper; rt_params_finalize zero-filled it */
    return RT_OK;
}

/* The loss of path p from the two models' taps and logits. */
static rt_tensor *path_loss(rt_ctx *ctx, distiller *d, path *p, rt_taps *tt, rt_taps *ts, rt_tensor *lt,
                            rt_tensor *ls, const int32_t *y) {
    const rt_distill_cfg *c = d->cfg;
    switch (p->kind) {
    case L_ST: return rt_kd_soft_target(ctx, ls, lt, (float)c->T, RT_MEAN);
    case L_L2: return rt_kd_l2_logit(ctx, ls, lt, RT_MEAN);
    case L_DKD: return rt_kd_dkd(ctx, ls, lt, y, (float)c->dkd_alpha, (float)c->dkd_beta, (float)c->T, RT_MEAN);
    default: break;
    }
    rt_tensor *sum = NULL;
    for (int t = 0; t < p->ntaps; t++) {
        rt_tensor *ft = rt_taps_get(tt, p->taps[t]), *fs = rt_taps_get(ts, p->taps[t]), *l = NULL;
        if (p->adapter[t]) fs = rt_module_forward(p->adapter[t], ctx, fs, NULL);
        switch (p->kind) {
        case L_AT: l = rt_kd_at(ctx, fs, ft, RT_MEAN); break;
        case L_NST: l = rt_kd_nst(ctx, fs, ft, RT_MEAN); break;
        case L_SP: l = rt_kd_sp(ctx, fs, ft); break;
        case L_FITNET: l = rt_kd_fitnet(ctx, fs, ft, RT_MEAN); break;
        case L_HCL: l = rt_kd_hcl(ctx, fs, ft, RT_MEAN); break;
        case L_MSE: l = rt_kd_feature_mse(ctx, fs, ft, RT_MEAN); break;
        case L_RKD: l = rt_kd_rkd(ctx, fs, ft, 25.0f, 50.0f); break;
        case L_PKT: l = rt_kd_pkt(ctx, fs, ft); break;
        case L_CC: l = rt_kd_cc(ctx, fs, ft, 0.4f, 2); break;
        default: break;
        }
        sum = sum ? rt_add(ctx, sum, l) : l;
    }
    return sum;
}

/* The aggregated distillation term for one step; sets d->weights. */
static rt_tensor *aggregate(rt_ctx *ctx, distiller *d, rt_tensor **L, float *Lval) {
    float w[MAX_PATHS];
    for (int k = 0; k < d->K; k++) w[k] = d->strategy == 1 ? 1.0f : d->p[k].w;
    switch (d->strategy) {
    case 3: {
        for (int k = 0; k < d->K; k++) d->weights[k] = exp(-d->z->data[k]) * w[k];
        return rt_adaptive_aggregate(ctx, d->K, L, w, d->z);
    }
    case 4: {
        /* per-path gradients on the student's parameters, min-norm weights c, then the step uses
         * CE + alpha * sum c_k L_k (c constant): for the student this is exactly grad CE + alpha *
         * the min-norm combination, and the adapters get their gradients from the same backward */
        rt_paramset *ps = &d->student->params;
        int rc = rt_path_grads(ctx, ps, d->K, L, d->G);
        if (rc) return NULL;
        rt_params_zero_grad(&d->aux); /* rt_path_grads accumulated into the adapters: discard */
        const float *vecs[MAX_PATHS];
        for (int k = 0; k < d->K; k++) vecs[k] = d->G + (size_t)k * ps->n;
        rt_minnorm_opts o = {.normalise = d->norm, .losses = Lval};
        double c[MAX_PATHS], n2;
        if (rt_minnorm(ctx, d->K, vecs, ps->n, &o, c, &n2)) return NULL;
        for (int k = 0; k < d->K; k++) {
            d->weights[k] = c[k];
            w[k] = (float)c[k];
        }
        return rt_aggregate_fixed(ctx, d->K, L, w);
    }
    default:
        for (int k = 0; k < d->K; k++) d->weights[k] = w[k];
        return d->K == 1 && w[0] == 1.0f ? L[0] : rt_aggregate_fixed(ctx, d->K, L, w);
    }
}

/* JSON has no NaN or infinity: write null. */
static void json_num(FILE *f, double v) {
    if (isfinite(v)) fprintf(f, "%.6g", v);
    else fputs("null", f);
}

static void write_paths_record(rt_jsonl *j, distiller *d, int64_t step, double epoch, float ce, const float *Lval,
                               const double *cos) {
    if (!j->f) return;
    FILE *f = j->f;
    fprintf(f, "{\"step\": %lld, \"epoch\": %.4f, \"names\": [", (long long)step, epoch);
    for (int k = 0; k < d->K; k++) fprintf(f, "%s\"%s\"", k ? ", " : "", d->p[k].name);
    fprintf(f, "], \"loss\": {\"ce\": ");
    json_num(f, ce);
    for (int k = 0; k < d->K; k++) {
        fprintf(f, ", \"%s\": ", d->p[k].name);
        json_num(f, Lval[k]);
    }
    fprintf(f, "}, \"weight\": {");
    for (int k = 0; k < d->K; k++) {
        fprintf(f, "%s\"%s\": ", k ? ", " : "", d->p[k].name);
        json_num(f, d->weights[k]);
    }
    fprintf(f, "}");
    if (cos) {
        fprintf(f, ", \"cos\": [");
        for (int a = 0; a < d->K; a++) {
            fprintf(f, "%s[", a ? ", " : "");
            for (int b = 0; b < d->K; b++) fprintf(f, "%s%.4f", b ? ", " : "", cos[a * d->K + b]);
            fprintf(f, "]");
        }
        fprintf(f, "]");
    }
    fprintf(f, "}\n");
    fflush(f);
}

int rt_distill_run(rt_ctx *ctx, const rt_distill_cfg *cfg, int resume, rt_distill_summary *summary) {
    const rt_train_cfg *tc = &cfg->train;
    if (tc->epochs <= 0 || tc->batch_size <= 0 || tc->eval_batch <= 0)
        return rt_fail(ctx, RT_EINVAL, "distill: epochs, batch_size and eval_batch must be > 0");
    if (resume) return rt_fail(ctx, RT_EINVAL, "distill: --resume is not supported yet; rerun from the start");
    if (tc->threads > 0) rt_set_threads((int)tc->threads);
    rt_rng_seed(rt_ctx_rng(ctx), (uint64_t)tc->seed);
    distiller d = {0};
    d.cfg = cfg;
    float tmean[16], tstd[16];
    int tch = 0;
    int rc = rt_model_load(ctx, cfg->teacher, &d.teacher, tmean, tstd, &tch);
    if (rc) return rc;
    rt_run_data data;
    rt_data_cfg dc = tc->data;
    dc.normalize = 0; /* inputs are normalised with the teacher's statistics, for both models */
    if ((rc = rt_run_data_load(ctx, &dc, (uint64_t)tc->seed, &data))) {
        rt_model_free(d.teacher);
        return rc;
    }
    if (data.train->c != tch) {
        rc = rt_fail(ctx, RT_ESHAPE, "distill: the data has %lld channels, the teacher %d", (long long)data.train->c, tch);
        rt_model_free(d.teacher);
        rt_run_data_free(&data);
        return rc;
    }
    for (int i = 0; i < 16; i++) data.mean[i] = tmean[i], data.std[i] = tstd[i];
    rt_model_opts mo = {(int)data.train->c, (int)data.train->h, data.train->num_classes, (int)tc->hidden,
                        (int)rt_dataset_sample_numel(data.train)};
    rt_optim *opt = NULL, *aopt = NULL;
    rt_loader *ld = NULL;
    rt_sched sched;
    rt_jsonl log = {0}, plog = {0};
    int32_t *tpred = NULL, *spred = NULL;
    char path[600];
    d.student = rt_model_new(ctx, tc->arch, &mo, (uint64_t)tc->seed);
    if (!d.student) rc = rt_status(ctx);
    if (!rc) rc = rt_train_make_dir(ctx, tc->out_dir);
    if (!rc) rc = build_paths(ctx, &d, data.train);
    if (!rc) rc = rt_train_setup_optim(ctx, tc, &d.student->params, &opt);
    if (!rc && d.aux.n) {
        rc = rt_train_setup_optim(ctx, tc, &d.aux, &aopt);
        if (!rc && d.z && !cfg->z_weight_decay) { /* z: no weight decay unless asked (the reference decays it) */
            rt_param *zp = rt_params_find(&d.aux, "distill.z");
            rt_optim_clear_groups(aopt);
            if (zp->offset > 0) rc = rt_optim_add_group(ctx, aopt, 0, zp->offset, 1.0f, (float)tc->weight_decay);
            if (!rc) rc = rt_optim_add_group(ctx, aopt, zp->offset, zp->numel, 1.0f, 0.0f);
            if (!rc && zp->offset + zp->numel < d.aux.n)
                rc = rt_optim_add_group(ctx, aopt, zp->offset + zp->numel, d.aux.n - zp->offset - zp->numel, 1.0f,
                                        (float)tc->weight_decay);
        }
    }
    if (!rc) rc = rt_train_setup_sched(ctx, tc, &sched);
    if (!rc && (d.strategy == 4 || cfg->cos_every > 0)) {
        d.G = malloc((size_t)d.K * d.student->params.n * sizeof(float));
        if (!d.G) rc = rt_fail(ctx, RT_ENOMEM, "distill: no memory for %d per-path gradients", d.K);
    }
    if (!rc) {
        rc = rt_train_write_config(ctx, tc->out_dir, rt_distill_schema, rt_distill_schema_len, cfg);
        snprintf(path, sizeof path, "%s/metrics.jsonl", tc->out_dir);
        remove(path);
        if (!rc && rt_jsonl_open(&log, path)) rc = rt_fail(ctx, RT_EIO, "cannot write %s", path);
        snprintf(path, sizeof path, "%s/paths.jsonl", tc->out_dir);
        remove(path);
        if (!rc && rt_jsonl_open(&plog, path)) rc = rt_fail(ctx, RT_EIO, "cannot write %s", path);
    }
    /* the teacher's test predictions, once: agreement is measured against them */
    double teacher_acc = 0;
    if (!rc) {
        tpred = malloc((size_t)data.test->n * sizeof *tpred);
        spred = malloc((size_t)data.test->n * sizeof *spred);
        rc = rt_evaluate(ctx, d.teacher, data.test, data.mean, data.std, tc->eval_batch, &teacher_acc, NULL, tpred);
    }
    rt_augment aug = {tc->data.crop_pad, tc->data.hflip, data.mean, data.std};
    if (!rc) {
        ld = rt_loader_new(ctx, data.train, tc->batch_size, 1, 0, (uint64_t)tc->seed, &aug);
        if (!ld) rc = rt_status(ctx);
    }
    if (!rc) {
        fprintf(stderr, "distill %s -> %s on %s, strategy %s, %d paths:", d.teacher->arch, tc->arch, tc->data.name,
                cfg->strategy, d.K);
        for (int k = 0; k < d.K; k++) fprintf(stderr, " %s", d.p[k].name);
        fprintf(stderr, "; teacher test accuracy %.2f%%\n", 100 * teacher_acc);
    }
    rt_model_train(d.teacher, 0);
    int64_t gstep = 0;
    double step_time = 0, student_acc = 0, agree_err = 0, val_acc = -1;
    int64_t nsteps_timed = 0;
    for (int64_t epoch = 0; epoch < tc->epochs && !rc; epoch++) {
        float lr = rt_sched_lr(&sched, (double)epoch);
        rt_loader_set_epoch(ld, epoch);
        rt_model_train(d.student, 1);
        for (int k = 0; k < d.K; k++)
            for (int t = 0; t < d.p[k].ntaps; t++)
                if (d.p[k].adapter[t]) rt_module_train(d.p[k].adapter[t], 1);
        rt_progress pg;
        char label[64];
        snprintf(label, sizeof label, "epoch %lld/%lld", (long long)epoch + 1, (long long)tc->epochs);
        rt_progress_begin(&pg, stderr, label, rt_loader_num_batches(ld));
        double t0 = rt_now(), loss_sum = 0, ce_sum = 0, path_sum[MAX_PATHS] = {0};
        int64_t seen = 0, correct = 0, step = 0, nb = rt_loader_num_batches(ld);
        float *x;
        int32_t *y;
        int64_t b;
        int r;
        while ((r = rt_loader_next(ld, &x, &y, &b)) == 1) {
            double ts0 = rt_now();
            rt_tensor *xt = rt_wrap(ctx, x, 4, (int64_t[]){b, data.train->c, data.train->h, data.train->w});
            rt_taps tt = {0}, ts = {0};
            int prev = rt_set_grad_enabled(ctx, 0);
            rt_tensor *lt = rt_model_forward(ctx, d.teacher, xt, &tt);
            rt_set_grad_enabled(ctx, prev);
            rt_tensor *ls = rt_model_forward(ctx, d.student, xt, &ts);
            rt_tensor *ce = rt_cross_entropy(ctx, ls, y, 0.0f, RT_MEAN);
            rt_tensor *L[MAX_PATHS];
            float Lval[MAX_PATHS];
            for (int k = 0; k < d.K; k++) {
                L[k] = path_loss(ctx, &d, &d.p[k], &tt, &ts, lt, ls, y);
                Lval[k] = L[k] ? L[k]->data[0] : NAN;
            }
            if ((rc = rt_status(ctx))) break;
            double cos[MAX_PATHS * MAX_PATHS];
            int have_cos = 0;
            if (cfg->cos_every > 0 && gstep % cfg->cos_every == 0 && d.K > 1) {
                if ((rc = rt_path_grads(ctx, &d.student->params, d.K, L, d.G))) break;
                if ((rc = rt_grad_cosines(ctx, d.K, d.student->params.n, d.G, cos))) break;
                if (d.aux.n) rt_params_zero_grad(&d.aux);
                if (d.z) memset(d.z->grad, 0, (size_t)d.K * sizeof(float));
                have_cos = 1;
            }
            rt_tensor *agg = aggregate(ctx, &d, L, Lval);
            rt_tensor *total = rt_add(ctx, ce, rt_mul_scalar(ctx, agg, (float)cfg->alpha));
            if (!total) {
                rc = rt_status(ctx);
                break;
            }
            if (!isfinite(total->data[0])) {
                rc = rt_fail(ctx, RT_ESTATE, "distill diverged at epoch %lld step %lld (loss %g): lower optim.lr or the path weights",
                             (long long)epoch + 1, (long long)step + 1, total->data[0]);
                break;
            }
            rt_params_zero_grad(&d.student->params);
            if (d.aux.n) rt_params_zero_grad(&d.aux);
            if ((rc = rt_backward(ctx, total))) break;
            if ((rc = rt_optim_step(ctx, opt, d.student->params.data, d.student->params.grad, lr))) break;
            if (aopt && (rc = rt_optim_step(ctx, aopt, d.aux.data, d.aux.grad, lr))) break;
            int64_t kc = ls->shape[1];
            for (int64_t i = 0; i < b; i++) correct += rt_argmax_row(ls->data + i * kc, kc) == y[i];
            loss_sum += total->data[0] * b;
            ce_sum += ce->data[0] * b;
            for (int k = 0; k < d.K; k++) path_sum[k] += Lval[k] * b;
            seen += b;
            if (cfg->log_every > 0 && (gstep % cfg->log_every == 0 || have_cos))
                write_paths_record(&plog, &d, gstep, epoch + (double)step / nb, ce->data[0], Lval, have_cos ? cos : NULL);
            step++;
            gstep++;
            rt_step_reset(ctx);
            double dt = rt_now() - ts0;
            if (step > 1) step_time += dt, nsteps_timed++; /* the first step of each epoch warms caches */
            rt_progress_update(&pg, step, loss_sum / seen, (double)correct / seen, seen);
        }
        if (r < 0 && !rc) rc = r;
        if (rc) break;
        double train_time = rt_now() - t0, test_loss = 0;
        if ((rc = rt_evaluate(ctx, d.student, data.test, data.mean, data.std, tc->eval_batch, &student_acc, &test_loss, spred)))
            break;
        if (data.val && (rc = rt_evaluate(ctx, d.student, data.val, data.mean, data.std, tc->eval_batch, &val_acc, NULL, NULL)))
            break;
        int64_t dis = 0;
        for (int64_t i = 0; i < data.test->n; i++) dis += spred[i] != tpred[i];
        agree_err = (double)dis / data.test->n;
        double secs = rt_now() - t0, ms = nsteps_timed ? 1000 * step_time / nsteps_timed : 0;
        char summ[256];
        snprintf(summ, sizeof summ, "loss %.4f ce %.4f train acc %.2f%% test acc %.2f%% agreement err %.2f%% %.1f ms/step %.1f s",
                 loss_sum / seen, ce_sum / seen, 100.0 * correct / seen, 100 * student_acc, 100 * agree_err, ms, secs);
        rt_progress_end(&pg, summ);
        if ((rc = rt_train_save_checkpoint(ctx, tc, d.student, opt, &data, epoch, student_acc))) break;
        FILE *f = log.f;
        fprintf(f, "{\"epoch\": %lld, \"train_loss\": %.6g, \"train_ce\": %.6g, \"train_acc\": %.6g, \"test_acc\": %.6g, "
                   "\"test_err\": %.6g, \"test_loss\": %.6g, \"val_acc\": %.6g, \"agree_err\": %.6g, \"teacher_acc\": %.6g, \"lr\": %.6g, "
                   "\"ms_per_step\": %.4g, \"seconds\": %.4g, \"train_seconds\": %.4g, \"strategy\": \"%s\", \"path_loss\": {",
                (long long)epoch + 1, loss_sum / seen, ce_sum / seen, (double)correct / seen, student_acc, 1 - student_acc,
                test_loss, val_acc, agree_err, teacher_acc, (double)lr, ms, secs, train_time, cfg->strategy);
        for (int k = 0; k < d.K; k++) fprintf(f, "%s\"%s\": %.6g", k ? ", " : "", d.p[k].name, path_sum[k] / seen);
        fprintf(f, "}, \"weight\": {");
        for (int k = 0; k < d.K; k++) fprintf(f, "%s\"%s\": %.6g", k ? ", " : "", d.p[k].name, d.weights[k]);
        fprintf(f, "}}\n");
        fflush(f);
    }
    double scratch_acc = -1;
    if (!rc && cfg->scratch_baseline) {
        /* the same student, data, optimiser, schedule and seed, trained with CE alone */
        rt_train_cfg sc = *tc;
        char dir[RT_CFG_STR_MAX + 16];
        snprintf(dir, sizeof dir, "%s/scratch", tc->out_dir);
        if (strlen(dir) >= sizeof sc.out_dir) rc = rt_fail(ctx, RT_EINVAL, "distill: out_dir too long");
        else memcpy(sc.out_dir, dir, strlen(dir) + 1);
        fprintf(stderr, "from-scratch baseline: %s alone, same protocol, in %s\n", tc->arch, sc.out_dir);
        if (!rc) rc = rt_train_run(ctx, &sc, 0);
        rt_model *m = NULL;
        float smean[16], sstd[16]; /* the baseline normalises with its own training statistics */
        char ck[RT_CFG_STR_MAX + 48];
        snprintf(ck, sizeof ck, "%s/checkpoint.safetensors", sc.out_dir);
        if (!rc) rc = rt_model_load(ctx, ck, &m, smean, sstd, NULL);
        if (!rc) rc = rt_evaluate(ctx, m, data.test, smean, sstd, tc->eval_batch, &scratch_acc, NULL, NULL);
        rt_model_free(m);
    }
    if (summary) {
        summary->scratch_acc = scratch_acc;
        summary->teacher_acc = teacher_acc;
        summary->student_acc = student_acc;
        summary->agree_err = agree_err;
        summary->ms_per_step = nsteps_timed ? 1000 * step_time / nsteps_timed : 0;
        summary->val_acc = val_acc;
    }
    rt_jsonl_close(&log);
    rt_jsonl_close(&plog);
    rt_loader_free(ld);
    rt_optim_free(opt);
    rt_optim_free(aopt);
    for (int k = 0; k < d.K; k++)
        for (int t = 0; t < d.p[k].ntaps; t++)
            if (d.p[k].adapter[t]) rt_module_free(d.p[k].adapter[t]);
    rt_params_free(&d.aux);
    free(d.G);
    free(tpred);
    free(spred);
    rt_model_free(d.student);
    rt_model_free(d.teacher);
    rt_run_data_free(&data);
    return rc;
}

/* ---- hyperparameter search over the path weights ---- */

int rt_distill_search(rt_ctx *ctx, const rt_distill_cfg *cfg, float *best, int *k_out) {
    const rt_cfg_strlist *paths = &cfg->paths;
    int K = paths->n, nv = cfg->search_values.n, grid = !strcmp(cfg->search_mode, "grid");
    if (cfg->train.data.val <= 0)
        return rt_fail(ctx, RT_EINVAL, "search: data.val must be > 0 (the weights are chosen on a held-out split)");
    if (K <= 0 || K > 8) return rt_fail(ctx, RT_EINVAL, "search: 1 to 8 paths, got %d", K);
    if (nv <= 0) return rt_fail(ctx, RT_EINVAL, "search: search.values is empty");
    if (!grid && strcmp(cfg->search_mode, "random"))
        return rt_fail(ctx, RT_EINVAL, "search.mode '%s' is unknown (grid, random)", cfg->search_mode);
    int64_t trials = 1;
    if (grid)
        for (int k = 0; k < K; k++) trials *= nv;
    else
        trials = cfg->search_trials;
    if (trials <= 0 || trials > 10000) return rt_fail(ctx, RT_EINVAL, "search: %lld trials (1 to 10000)", (long long)trials);
    int rc = rt_train_make_dir(ctx, cfg->train.out_dir);
    if (rc) return rc;
    char path[700];
    snprintf(path, sizeof path, "%s/search.jsonl", cfg->train.out_dir);
    rt_jsonl slog = {0};
    if (rt_jsonl_open(&slog, path)) return rt_fail(ctx, RT_EIO, "cannot write %s: %s", path, strerror(errno));
    double lo = cfg->search_values.v[0], hi = lo;
    for (int i = 0; i < nv; i++) lo = fmin(lo, cfg->search_values.v[i]), hi = fmax(hi, cfg->search_values.v[i]);
    if (!grid && lo <= 0) {
        rt_jsonl_close(&slog);
        return rt_fail(ctx, RT_EINVAL, "search: random mode draws log-uniformly and needs positive search.values");
    }
    rt_rng rng;
    rt_rng_seed(&rng, (uint64_t)cfg->train.seed * 977 + 11);
    rt_distill_cfg *c = malloc(sizeof *c);
    double best_val = -1;
    float w[8], wbest[8] = {0};
    for (int64_t t = 0; t < trials && !rc; t++) {
        int64_t code = t;
        for (int k = 0; k < K; k++) {
            if (grid) {
                w[k] = (float)cfg->search_values.v[code % nv];
                code /= nv;
            } else {
                w[k] = (float)exp(log(lo) + (log(hi) - log(lo)) * rt_rng_uniform(&rng));
            }
        }
        *c = *cfg;
        snprintf(c->strategy, sizeof c->strategy, "fixed");
        c->weights.n = K;
        for (int k = 0; k < K; k++) c->weights.v[k] = w[k];
        char dir[RT_CFG_STR_MAX + 32];
        snprintf(dir, sizeof dir, "%s/trial-%lld", cfg->train.out_dir, (long long)t);
        if (strlen(dir) >= sizeof c->train.out_dir) {
            rc = rt_fail(ctx, RT_EINVAL, "search: out_dir too long for its trial directories");
            break;
        }
        memcpy(c->train.out_dir, dir, strlen(dir) + 1);
        fprintf(stderr, "search trial %lld/%lld: weights", (long long)t + 1, (long long)trials);
        for (int k = 0; k < K; k++) fprintf(stderr, " %s=%g", paths->v[k], w[k]);
        fprintf(stderr, "\n");
        rt_distill_summary s = {0};
        if ((rc = rt_distill_run(ctx, c, 0, &s))) break;
        char wtxt[256] = "";
        for (int k = 0; k < K; k++) snprintf(wtxt + strlen(wtxt), sizeof wtxt - strlen(wtxt), "%s%g", k ? ", " : "", w[k]);
        rt_jsonl_write(&slog, "trial", 'i', (int64_t)t, "weights", 's', wtxt, "val_acc", 'f', s.val_acc, "test_acc", 'f',
                       s.student_acc, "agree_err", 'f', s.agree_err, NULL);
        if (s.val_acc > best_val) {
            best_val = s.val_acc;
            memcpy(wbest, w, sizeof w);
        }
    }
    free(c);
    rt_jsonl_close(&slog);
    if (rc) return rc;
    snprintf(path, sizeof path, "%s/best.txt", cfg->train.out_dir);
    FILE *f = fopen(path, "w");
    if (!f) return rt_fail(ctx, RT_EIO, "cannot write %s: %s", path, strerror(errno));
    fprintf(f, "distill.weights=[");
    for (int k = 0; k < K; k++) fprintf(f, "%s%g", k ? "," : "", wbest[k]);
    fprintf(f, "]\n");
    fclose(f);
    fprintf(stderr, "search: best validation accuracy %.2f%% with distill.weights=[", 100 * best_val);
    for (int k = 0; k < K; k++) fprintf(stderr, "%s%g", k ? "," : "", wbest[k]);
    fprintf(stderr, "] (in %s)\n", path);
    if (best) memcpy(best, wbest, (size_t)K * sizeof(float));
    if (k_out) *k_out = K;
    return RT_OK;
}
