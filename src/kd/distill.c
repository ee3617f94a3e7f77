/* The multi-path distillation run behind `retort distill` (adaptive distillation, 000): paths from
 * teacher taps to student taps, each with a loss and an optional adapter, aggregated by one of the
 * strategies single | equal | fixed | adaptive | multiobjective; per-epoch state for exact resume. */
#include "retort/distill.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd/distill_impl.h"
#include "retort/aggregate.h"
#include "retort/io.h"
#include "retort/kd.h"
#include "retort/optim.h"
#include "train/progress.h"
#include "train/train_fields.h"
#include "train/train_impl.h"

#define ADAPTER_HELP(loss) loss ": adapter on the student's taps: conv1x1 | conv3x3 (conv + BN to the teacher's channels), linear (flat taps), none"
#define F(key, type, member, def, help) {key, type, offsetof(rt_distill_cfg, train.member), def, help},
#define D(key, type, member, def, help) {key, type, offsetof(rt_distill_cfg, member), def, help},
const rt_cfg_field rt_distill_schema[] = {
    RT_TRAIN_FIELDS(F)
    D("teacher", RT_CFG_STR, teacher, "models/fmnist-teacher/checkpoint.safetensors", "teacher checkpoint")
    D("distill.strategy", RT_CFG_STR, strategy, "adaptive", "single | equal | fixed | adaptive | multiobjective")
    D("distill.paths", RT_CFG_STRLIST, paths, "[st, at]", "st l2 dkd at nst sp fitnet hcl mse rkd pkt cc fsp vid crd")
    D("distill.weights", RT_CFG_FLOATLIST, weights, "[]", "per listed path: fixed weights / adaptive multipliers (default 1)")
    D("distill.alpha", RT_CFG_FLOAT, alpha, "1", "total = CE + alpha * aggregate(paths)")
    D("distill.layerwise", RT_CFG_BOOL, layerwise, "false", "one path per feature tap (FSP: per pair)")
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
    D("at.adapter", RT_CFG_STR, at_adapter, "none", ADAPTER_HELP("at"))
    D("nst.taps", RT_CFG_STRLIST, nst_taps, "[layer3]", "NST taps")
    D("nst.adapter", RT_CFG_STR, nst_adapter, "none", ADAPTER_HELP("nst"))
    D("sp.taps", RT_CFG_STRLIST, sp_taps, "[layer3]", "similarity-preserving taps")
    D("sp.adapter", RT_CFG_STR, sp_adapter, "none", ADAPTER_HELP("sp"))
    D("fitnet.taps", RT_CFG_STRLIST, fitnet_taps, "[layer2]", "FitNet hint taps (the adapted student's shape must equal the teacher's)")
    D("fitnet.adapter", RT_CFG_STR, fitnet_adapter, "conv1x1", ADAPTER_HELP("fitnet"))
    D("hcl.taps", RT_CFG_STRLIST, hcl_taps, "[layer1, layer2, layer3]", "HCL taps (the adapted student's shape must equal the teacher's)")
    D("hcl.adapter", RT_CFG_STR, hcl_adapter, "conv1x1", ADAPTER_HELP("hcl"))
    D("mse.taps", RT_CFG_STRLIST, mse_taps, "[layer3]", "feature-MSE taps (channels must meet; the larger map is pooled)")
    D("mse.adapter", RT_CFG_STR, mse_adapter, "conv1x1", ADAPTER_HELP("mse"))
    D("rkd.taps", RT_CFG_STRLIST, rkd_taps, "[pool]", "RKD taps")
    D("rkd.adapter", RT_CFG_STR, rkd_adapter, "none", ADAPTER_HELP("rkd"))
    D("pkt.taps", RT_CFG_STRLIST, pkt_taps, "[pool]", "PKT taps")
    D("pkt.adapter", RT_CFG_STR, pkt_adapter, "none", ADAPTER_HELP("pkt"))
    D("cc.taps", RT_CFG_STRLIST, cc_taps, "[pool]", "CC taps")
    D("cc.adapter", RT_CFG_STR, cc_adapter, "none", ADAPTER_HELP("cc"))
    D("fsp.taps", RT_CFG_STRLIST, fsp_taps, "[stem, layer1, layer2, layer3]", "FSP taps: consecutive entries form the (lo, hi) pairs of the flow matrices; channels must meet per tap")
    D("fsp.adapter", RT_CFG_STR, fsp_adapter, "none", ADAPTER_HELP("fsp"))
    D("vid.taps", RT_CFG_STRLIST, vid_taps, "[layer1, layer2, layer3]", "VID taps (a 3-conv regressor and per-channel variances each, trained as aux parameters)")
    D("vid.init_var", RT_CFG_FLOAT, vid_init_var, "5", "VID initial variance")
    D("vid.adapter", RT_CFG_STR, vid_adapter, "none", ADAPTER_HELP("vid"))
    D("crd.taps", RT_CFG_STRLIST, crd_taps, "[pool]", "CRD taps (embedding heads and two memory banks of the training set's size each)")
    D("crd.feat_dim", RT_CFG_INT, crd_feat_dim, "128", "CRD embedding size")
    D("crd.nce_k", RT_CFG_INT, crd_nce_k, "16384", "CRD negatives per sample, drawn from the memory banks")
    D("crd.nce_t", RT_CFG_FLOAT, crd_nce_t, "0.07", "CRD temperature")
    D("crd.momentum", RT_CFG_FLOAT, crd_momentum, "0.5", "CRD memory-bank momentum")
    D("crd.adapter", RT_CFG_STR, crd_adapter, "none", ADAPTER_HELP("crd"))
};
#undef F
#undef D
#undef ADAPTER_HELP
const int rt_distill_schema_len = (int)(sizeof rt_distill_schema / sizeof rt_distill_schema[0]);

/* ---- paths ---- */

static const char *const loss_names[RT_DL_COUNT] = {"st",  "l2",  "dkd", "at", "nst", "sp",  "fitnet", "hcl",
                                                    "mse", "rkd", "pkt", "cc", "fsp", "vid", "crd"};
#define LOSS_LIST "st, l2, dkd, at, nst, sp, fitnet, hcl, mse, rkd, pkt, cc, fsp, vid, crd"
static const char *const adapter_names[] = {"none", "conv1x1", "conv3x3", "linear"};
static int is_logit(rt_distill_loss k) { return k == RT_DL_ST || k == RT_DL_L2 || k == RT_DL_DKD; }

#define MAX_PATHS RT_DISTILL_MAX_PATHS
#define MAX_TAPS RT_DISTILL_MAX_TAPS

static const rt_cfg_strlist *taps_of(const rt_distill_cfg *c, rt_distill_loss k) {
    switch (k) {
    case RT_DL_AT: return &c->at_taps;
    case RT_DL_NST: return &c->nst_taps;
    case RT_DL_SP: return &c->sp_taps;
    case RT_DL_FITNET: return &c->fitnet_taps;
    case RT_DL_HCL: return &c->hcl_taps;
    case RT_DL_MSE: return &c->mse_taps;
    case RT_DL_RKD: return &c->rkd_taps;
    case RT_DL_PKT: return &c->pkt_taps;
    case RT_DL_CC: return &c->cc_taps;
    case RT_DL_FSP: return &c->fsp_taps;
    case RT_DL_VID: return &c->vid_taps;
    case RT_DL_CRD: return &c->crd_taps;
    default: return NULL;
    }
}

static const char *adapter_of(const rt_distill_cfg *c, rt_distill_loss k) {
    switch (k) {
    case RT_DL_AT: return c->at_adapter;
    case RT_DL_NST: return c->nst_adapter;
    case RT_DL_SP: return c->sp_adapter;
    case RT_DL_FITNET: return c->fitnet_adapter;
    case RT_DL_HCL: return c->hcl_adapter;
    case RT_DL_MSE: return c->mse_adapter;
    case RT_DL_RKD: return c->rkd_adapter;
    case RT_DL_PKT: return c->pkt_adapter;
    case RT_DL_CC: return c->cc_adapter;
    case RT_DL_FSP: return c->fsp_adapter;
    case RT_DL_VID: return c->vid_adapter;
    case RT_DL_CRD: return c->crd_adapter;
    default: return "none";
    }
}

static int tap_index(const rt_model *m, const char *name) {
    for (int i = 0; i < m->ntaps; i++)
        if (!strcmp(m->tap_names[i], name)) return i;
    return -1;
}

/* Error listing both models' taps and their shapes (from one probe forward). */
static int taps_error(rt_ctx *ctx, rt_distiller *d, const rt_taps *tt, const rt_taps *ts, const char *what) {
    char msg[1800];
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

/* The shape of the student's tap fs after adapter a, given the teacher's ft (into nd, sh); NULL, or
 * why the adapter cannot take these taps. */
static const char *adapted_shape(rt_adapter_kind a, const rt_tensor *fs, const rt_tensor *ft, int *nd, int64_t *sh) {
    *nd = fs->ndim;
    memcpy(sh, fs->shape, (size_t)fs->ndim * sizeof *sh);
    if (a == RT_ADAPT_CONV1X1 || a == RT_ADAPT_CONV3X3) {
        if (fs->ndim != 4 || ft->ndim != 4)
            return "a conv adapter needs (B,C,H,W) maps on both sides (a flat tap takes the linear adapter)";
        sh[1] = ft->shape[1]; /* stride 1, 'same' padding: the student's spatial size stays */
    } else if (a == RT_ADAPT_LINEAR) {
        if (fs->ndim != 2 || ft->ndim != 2)
            return "a linear adapter needs flat (B,D) taps on both sides, such as pool (maps take conv1x1 or conv3x3)";
        sh[1] = ft->shape[1];
    }
    return NULL;
}

/* Whether loss k can take the (adapted) student shape (nd, sh) and the teacher's tap ft; NULL, or why not. */
static const char *loss_mismatch(rt_distill_loss k, int nd, const int64_t *sh, const rt_tensor *ft) {
    int maps = nd == 4 && ft->ndim == 4, same = nd == ft->ndim;
    for (int i = 0; same && i < nd; i++) same = sh[i] == ft->shape[i];
    switch (k) {
    case RT_DL_AT:
    case RT_DL_NST:
    case RT_DL_VID:
        return maps ? NULL : "needs (B,C,H,W) feature maps on both sides";
    case RT_DL_FSP:
        if (!maps) return "needs (B,C,H,W) feature maps on both sides";
        return sh[1] == ft->shape[1] ? NULL : "needs equal channel counts per tap (set fsp.adapter: conv1x1)";
    case RT_DL_FITNET:
        return same ? NULL : "needs the same shape on both sides (an adapter maps channels, not spatial sizes)";
    case RT_DL_HCL:
        return maps && same ? NULL
                            : "needs (B,C,H,W) maps of the same shape on both sides (an adapter maps channels, not "
                              "spatial sizes)";
    case RT_DL_MSE:
        if (maps) return sh[1] == ft->shape[1] ? NULL : "needs equal channel counts (set mse.adapter: conv1x1)";
        return same ? NULL : "needs (B,C,H,W) maps or the same shape on both sides";
    default:
        return NULL; /* relations flatten each sample */
    }
}

/* conv1x1 / conv3x3 (+ BN) from cs to ct channels, or linear from cs to ct features, under prefix. */
static rt_module *make_adapter(rt_ctx *ctx, rt_paramset *ps, const char *prefix, rt_adapter_kind a, int64_t cs,
                               int64_t ct) {
    char p0[160], p1[160];
    snprintf(p0, sizeof p0, "%s.0", prefix);
    snprintf(p1, sizeof p1, "%s.1", prefix);
    rt_module *mods[2]; /* separate statements: declaration order is the state_dict order */
    if (a == RT_ADAPT_LINEAR) {
        mods[0] = rt_nn_linear(ctx, ps, p0, cs, ct, 1);
        return rt_nn_sequential(ctx, prefix, 1, mods);
    }
    int k = a == RT_ADAPT_CONV3X3 ? 3 : 1;
    mods[0] = rt_nn_conv2d(ctx, ps, p0, cs, ct, k, 1, k / 2, 1, 0);
    mods[1] = rt_nn_batchnorm2d(ctx, ps, p1, ct);
    return rt_nn_sequential(ctx, prefix, 2, mods);
}

/* Adds tap to path p: checks the taps exist and meet through the adapter, declares the tap's
 * adapter, VID regressor or CRD heads and memory into d->aux. */
static int add_tap(rt_ctx *ctx, rt_distiller *d, rt_distill_path *p, const char *tap, const rt_taps *tt,
                   const rt_taps *ts, int64_t n_data) {
    const rt_distill_cfg *c = d->cfg;
    const char *ln = loss_names[p->kind];
    if (p->ntaps == MAX_TAPS) return rt_fail(ctx, RT_EINVAL, "distill: %s: more than %d taps", p->name, MAX_TAPS);
    int it = tap_index(d->teacher, tap), is = tap_index(d->student, tap);
    rt_tensor *ft = rt_taps_get(tt, tap), *fs = rt_taps_get(ts, tap);
    char what[600];
    if (it < 0 || is < 0 || !ft || !fs) {
        snprintf(what, sizeof what, "%s.taps names '%s', which the %s does not have", ln, tap,
                 it < 0 || !ft ? "teacher" : "student");
        return taps_error(ctx, d, tt, ts, what);
    }
    int nd;
    int64_t sh[RT_MAX_DIMS];
    const char *why = adapted_shape(p->adapter_kind, fs, ft, &nd, sh);
    const int adapted = !why && p->adapter_kind != RT_ADAPT_NONE;
    if (!why) why = loss_mismatch(p->kind, nd, sh, ft);
    if (why) {
        char bs[96], bt[96], ba[120] = "";
        if (adapted) {
            rt_tensor view = *fs;
            memcpy(view.shape, sh, (size_t)nd * sizeof *sh);
            char b[96];
            snprintf(ba, sizeof ba, " -> %s after the adapter", rt_shape_str(&view, b));
        }
        snprintf(what, sizeof what, "%s on tap '%s' (%s.adapter %s): student %s%s and teacher %s: %s", ln, tap, ln,
                 adapter_names[p->adapter_kind], rt_shape_str(fs, bs), ba, rt_shape_str(ft, bt), why);
        return taps_error(ctx, d, tt, ts, what);
    }
    const int t = p->ntaps;
    snprintf(p->taps[t], sizeof p->taps[t], "%s", tap);
    char prefix[128];
    snprintf(prefix, sizeof prefix, "%s.%s", p->name, tap);
    for (char *q = prefix; *q; q++)
        if (*q == ':') *q = '_';
    if (p->adapter_kind != RT_ADAPT_NONE) {
        char ap[140];
        snprintf(ap, sizeof ap, "adapter.%s", prefix);
        p->adapter[t] = make_adapter(ctx, &d->aux, ap, p->adapter_kind, fs->shape[1], ft->shape[1]);
    }
    if (p->kind == RT_DL_VID) /* RepDistiller: the regressor's middle and output widths are the teacher's channels */
        p->vid[t] = rt_kd_vid_new(ctx, &d->aux, prefix, sh[1], ft->shape[1], ft->shape[1], (float)c->vid_init_var);
    if (p->kind == RT_DL_CRD) {
        int64_t sdim = 1;
        for (int i = 1; i < nd; i++) sdim *= sh[i];
        rt_kd_crd_opts o = {c->crd_feat_dim, c->crd_nce_k, (float)c->crd_nce_t, (float)c->crd_momentum};
        p->crd[t] = rt_kd_crd_new(ctx, &d->aux, prefix, sdim, rt_numel(ft) / ft->shape[0], n_data, &o);
    }
    if (rt_status(ctx)) return rt_status(ctx);
    p->ntaps++;
    return RT_OK;
}

void rt_distiller_release(rt_distiller *d) {
    for (int k = 0; k < d->K; k++)
        for (int t = 0; t < MAX_TAPS; t++) {
            rt_module_free(d->p[k].adapter[t]);
            rt_kd_vid_free(d->p[k].vid[t]);
            rt_kd_crd_free(d->p[k].crd[t]);
            d->p[k].adapter[t] = NULL, d->p[k].vid[t] = NULL, d->p[k].crd[t] = NULL;
        }
    rt_params_free(&d->aux);
    rt_keep_buf_free(&d->tbuf);
    free(d->G);
    d->G = NULL;
    d->K = 0;
}

int rt_distiller_init(rt_ctx *ctx, rt_distiller *d, const rt_distill_cfg *c, rt_model *teacher, rt_model *student,
                      rt_tensor *probe, int64_t n_data) {
    memset(d, 0, sizeof *d);
    d->cfg = c;
    d->teacher = teacher;
    d->student = student;
    rt_params_init(&d->aux);
    static const char *strategies[] = {"single", "equal", "fixed", "adaptive", "multiobjective"};
    d->strategy = -1;
    for (int i = 0; i < 5; i++)
        if (!strcmp(c->strategy, strategies[i])) d->strategy = i;
    if (d->strategy < 0)
        return rt_fail(ctx, RT_EINVAL,
                       "distill.strategy '%s' is unknown (single, equal, fixed, adaptive, multiobjective)",
                       c->strategy);
    const char *nn[] = {"none", "l2", "loss", "loss_l2"};
    d->norm = (rt_minnorm_normalise)-1;
    for (int i = 0; i < 4; i++)
        if (!strcmp(c->mgda_normalise, nn[i])) d->norm = (rt_minnorm_normalise)i;
    if ((int)d->norm < 0)
        return rt_fail(ctx, RT_EINVAL, "distill.mgda_normalise '%s' is unknown (none, l2, loss, loss_l2)",
                       c->mgda_normalise);
    if (c->paths.n == 0) return rt_fail(ctx, RT_EINVAL, "distill.paths is empty");
    if (d->strategy == 0 && c->paths.n != 1)
        return rt_fail(ctx, RT_EINVAL, "distill.strategy single takes one path, got %d", c->paths.n);
    if (c->weights.n && c->weights.n != c->paths.n)
        return rt_fail(ctx, RT_EINVAL, "distill.weights has %d values for %d paths", c->weights.n, c->paths.n);
    /* probe: one small batch through both models to learn the taps' shapes */
    rt_mark mk = rt_arena_mark(ctx);
    int prev = rt_set_grad_enabled(ctx, 0);
    rt_taps tt = {0}, ts = {0};
    rt_model_train(d->teacher, 0);
    rt_model_train(d->student, 0);
    rt_model_forward(ctx, d->teacher, probe, &tt);
    rt_model_forward(ctx, d->student, probe, &ts);
    rt_set_grad_enabled(ctx, prev);
    int rc = rt_status(ctx);
    for (int i = 0; i < c->paths.n && !rc; i++) {
        int k = -1;
        for (int j = 0; j < RT_DL_COUNT; j++)
            if (!strcmp(c->paths.v[i], loss_names[j])) k = j;
        if (k < 0) {
            rc = rt_fail(ctx, RT_EINVAL, "distill.paths: unknown loss '%s' (" LOSS_LIST ")", c->paths.v[i]);
            break;
        }
        const rt_distill_loss kind = (rt_distill_loss)k;
        float w = c->weights.n ? (float)c->weights.v[i] : 1.0f;
        const rt_cfg_strlist *tl = taps_of(c, kind);
        int ntaps = is_logit(kind) ? 1 : tl->n;
        rt_adapter_kind ak = RT_ADAPT_NONE;
        if (!is_logit(kind)) {
            int a = -1;
            for (int j = 0; j < 4; j++)
                if (!strcmp(adapter_of(c, kind), adapter_names[j])) a = j;
            if (a < 0) {
                rc = rt_fail(ctx, RT_EINVAL, "distill: %s.adapter '%s' is unknown (conv1x1, conv3x3, linear, none)",
                             loss_names[k], adapter_of(c, kind));
                break;
            }
            ak = (rt_adapter_kind)a;
            if (ntaps == 0) {
                rc = rt_fail(ctx, RT_EINVAL, "distill: %s.taps is empty", loss_names[k]);
                break;
            }
            if (ntaps > MAX_TAPS) {
                rc = rt_fail(ctx, RT_EINVAL, "distill: %s.taps lists %d taps (at most %d)", loss_names[k], ntaps,
                             MAX_TAPS);
                break;
            }
            if (kind == RT_DL_FSP && ntaps < 2) {
                char what[200];
                snprintf(what, sizeof what,
                         "fsp.taps [%s] has one tap: FSP needs at least two, consecutive entries form "
                         "the (lo, hi) pairs",
                         tl->v[0]);
                rc = taps_error(ctx, d, &tt, &ts, what);
                break;
            }
            if (kind == RT_DL_CRD && (c->crd_feat_dim <= 0 || c->crd_nce_k <= 0 || !(c->crd_nce_t > 0) ||
                                      !(c->crd_momentum > 0 && c->crd_momentum < 1))) {
                rc = rt_fail(ctx, RT_EINVAL,
                             "distill: crd.feat_dim %lld and crd.nce_k %lld must be > 0, crd.nce_t %g > 0 and "
                             "crd.momentum %g in (0, 1)",
                             (long long)c->crd_feat_dim, (long long)c->crd_nce_k, c->crd_nce_t, c->crd_momentum);
                break;
            }
        }
        /* layerwise: one path per tap, or per pair of consecutive taps for FSP */
        const int span = kind == RT_DL_FSP ? 2 : 1;
        int groups = !is_logit(kind) && c->layerwise ? ntaps - span + 1 : 1;
        for (int g = 0; g < groups && !rc; g++) {
            if (d->K == MAX_PATHS) {
                rc = rt_fail(ctx, RT_EINVAL, "distill: more than %d paths", MAX_PATHS);
                break;
            }
            rt_distill_path *p = &d->p[d->K++];
            p->kind = kind;
            p->w = w;
            p->adapter_kind = ak;
            if (is_logit(kind)) {
                snprintf(p->name, sizeof p->name, "%s", loss_names[k]);
                continue;
            }
            int t0 = groups > 1 ? g : 0, t1 = groups > 1 ? g + span : ntaps;
            if (groups > 1 && span == 2)
                snprintf(p->name, sizeof p->name, "%s:%.25s-%.25s", loss_names[k], tl->v[g], tl->v[g + 1]);
            else if (groups > 1)
                snprintf(p->name, sizeof p->name, "%s:%.50s", loss_names[k], tl->v[g]);
            else
                snprintf(p->name, sizeof p->name, "%s", loss_names[k]);
            for (int t = t0; t < t1 && !rc; t++) rc = add_tap(ctx, d, p, tl->v[t], &tt, &ts, n_data);
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
        for (int t = 0; t < d->p[i].ntaps; t++) {
            if (d->p[i].adapter[t]) rt_module_init(d->p[i].adapter[t], &rng);
            if (d->p[i].vid[t]) rt_kd_vid_init(d->p[i].vid[t], &rng);
            if (d->p[i].crd[t]) rt_kd_crd_init(d->p[i].crd[t], &rng);
        }
    /* z starts at 0 (v = 1), as the paper; rt_params_finalize zero-filled it */
    for (int i = 0; i < d->K; i++)
        for (int t = 0; t < d->p[i].ntaps; t++) {
            const char *name = d->p[i].taps[t];
            int seen = tap_index(d->teacher, name) < 0;
            for (int j = 0; j < d->ntkeep && !seen; j++) seen = !strcmp(d->tkeep[j], name);
            if (!seen && d->ntkeep < RT_MAX_TAPS) d->tkeep[d->ntkeep++] = name;
        }
    if (d->strategy == 4 || c->cos_every > 0) {
        d->G = malloc((size_t)d->K * d->student->params.n * sizeof(float));
        if (!d->G) return rt_fail(ctx, RT_ENOMEM, "distill: no memory for %d per-path gradients", d->K);
    }
    return RT_OK;
}

/* The loss of path p from the two models' taps and logits; idx: the batch's data set indices (CRD). */
static rt_tensor *path_loss(rt_ctx *ctx, rt_distiller *d, rt_distill_path *p, rt_taps *tt, rt_taps *ts, rt_tensor *lt,
                            rt_tensor *ls, const int32_t *y, const int64_t *idx) {
    const rt_distill_cfg *c = d->cfg;
    switch (p->kind) {
    case RT_DL_ST:
        return rt_kd_soft_target(ctx, ls, lt, (float)c->T, RT_MEAN);
    case RT_DL_L2:
        return rt_kd_l2_logit(ctx, ls, lt, RT_MEAN);
    case RT_DL_DKD:
        return rt_kd_dkd(ctx, ls, lt, y, (float)c->dkd_alpha, (float)c->dkd_beta, (float)c->T, RT_MEAN);
    default:
        break;
    }
    if (p->kind == RT_DL_CRD && !idx) {
        rt_fail(ctx, RT_EINVAL, "distill: path %s needs the batch's data set indices (its memory rows)", p->name);
        return NULL;
    }
    rt_tensor *fs[MAX_TAPS], *ft[MAX_TAPS];
    for (int t = 0; t < p->ntaps; t++) {
        ft[t] = rt_taps_get(tt, p->taps[t]);
        fs[t] = rt_taps_get(ts, p->taps[t]);
        if (p->adapter[t]) fs[t] = rt_module_forward(p->adapter[t], ctx, fs[t], NULL);
    }
    rt_tensor *sum = NULL;
    if (p->kind == RT_DL_FSP) { /* pairs of consecutive taps */
        for (int t = 0; t + 1 < p->ntaps; t++) {
            rt_tensor *l = rt_kd_fsp(ctx, fs[t], fs[t + 1], ft[t], ft[t + 1], RT_MEAN);
            sum = sum ? rt_add(ctx, sum, l) : l;
        }
        return sum;
    }
    for (int t = 0; t < p->ntaps; t++) {
        rt_tensor *l = NULL;
        switch (p->kind) {
        case RT_DL_AT:
            l = rt_kd_at(ctx, fs[t], ft[t], RT_MEAN);
            break;
        case RT_DL_NST:
            l = rt_kd_nst(ctx, fs[t], ft[t], RT_MEAN);
            break;
        case RT_DL_SP:
            l = rt_kd_sp(ctx, fs[t], ft[t]);
            break;
        case RT_DL_FITNET:
            l = rt_kd_fitnet(ctx, fs[t], ft[t], RT_MEAN);
            break;
        case RT_DL_HCL:
            l = rt_kd_hcl(ctx, fs[t], ft[t], RT_MEAN);
            break;
        case RT_DL_MSE:
            l = rt_kd_feature_mse(ctx, fs[t], ft[t], RT_MEAN);
            break;
        case RT_DL_RKD:
            l = rt_kd_rkd(ctx, fs[t], ft[t], 25.0f, 50.0f);
            break;
        case RT_DL_PKT:
            l = rt_kd_pkt(ctx, fs[t], ft[t]);
            break;
        case RT_DL_CC:
            l = rt_kd_cc(ctx, fs[t], ft[t], 0.4f, 2);
            break;
        case RT_DL_VID:
            l = rt_kd_vid_loss(ctx, p->vid[t], fs[t], ft[t], RT_MEAN);
            break;
        case RT_DL_CRD:
            l = rt_kd_crd_loss(ctx, p->crd[t], fs[t], ft[t], idx, NULL);
            break;
        default:
            break;
        }
        sum = sum ? rt_add(ctx, sum, l) : l;
    }
    return sum;
}

/* The aggregated distillation term for one step; sets d->weights. */
static rt_tensor *aggregate(rt_ctx *ctx, rt_distiller *d, rt_tensor **L, float *Lval) {
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

int rt_distiller_step(rt_ctx *ctx, rt_distiller *d, rt_tensor *xt, const int32_t *y, const int64_t *idx, int want_cos,
                      int64_t epoch, int64_t step, rt_distill_step_out *o) {
    const rt_distill_cfg *cfg = d->cfg;
    rt_taps tt = {0}, ts = {.want = d->tkeep, .nwant = d->ntkeep}; /* the paths read the same names of both */
    rt_scope_push(ctx, "teacher");
    rt_tensor *lt = rt_model_forward_keep(ctx, d->teacher, xt, d->tkeep, d->ntkeep, &tt, &d->tbuf);
    rt_scope_pop(ctx);
    rt_scope_push(ctx, "student");
    rt_tensor *ls = rt_model_forward(ctx, d->student, xt, &ts);
    rt_scope_pop(ctx);
    rt_tensor *ce = rt_cross_entropy(ctx, ls, y, 0.0f, RT_MEAN);
    rt_tensor *L[MAX_PATHS];
    for (int k = 0; k < d->K; k++) {
        L[k] = path_loss(ctx, d, &d->p[k], &tt, &ts, lt, ls, y, idx);
        o->L[k] = L[k] ? L[k]->data[0] : NAN;
    }
    int rc = rt_status(ctx);
    if (rc) return rc;
    o->have_cos = 0;
    if (want_cos && d->K > 1) {
        if ((rc = rt_path_grads(ctx, &d->student->params, d->K, L, d->G))) return rc;
        if ((rc = rt_grad_cosines(ctx, d->K, d->student->params.n, d->G, o->cos))) return rc;
        if (d->aux.n) rt_params_zero_grad(&d->aux);
        o->have_cos = 1;
    }
    rt_tensor *agg = aggregate(ctx, d, L, o->L);
    rt_tensor *total = rt_add(ctx, ce, rt_mul_scalar(ctx, agg, (float)cfg->alpha));
    if (!total) return rt_status(ctx);
    o->ce = ce->data[0];
    o->total = total->data[0];
    o->logits = ls;
    if (!isfinite(o->total))
        return rt_fail(ctx, RT_ESTATE,
                       "distill diverged at epoch %lld step %lld (loss %g): lower optim.lr or the path weights",
                       (long long)epoch + 1, (long long)step + 1, o->total);
    rt_params_zero_grad(&d->student->params);
    if (d->aux.n) rt_params_zero_grad(&d->aux);
    return rt_backward(ctx, total);
}

/* JSON has no NaN or infinity: write null. */
static void json_num(FILE *f, double v) {
    if (isfinite(v))
        fprintf(f, "%.6g", v);
    else
        fputs("null", f);
}

static void write_paths_record(rt_jsonl *j, rt_distiller *d, int64_t step, double epoch, float ce, const float *Lval,
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

/* ---- per-epoch state for resume ---- */

static void path_names(const rt_distiller *d, char *buf, size_t n) {
    size_t len = 0;
    buf[0] = 0;
    for (int k = 0; k < d->K && len + 70 < n; k++)
        len += (size_t)snprintf(buf + len, n - len, "%s%s", k ? "," : "", d->p[k].name);
}

/* distill_state.safetensors: every aux parameter and buffer under its name (adapters, z, VID, CRD
 * embeddings, memory banks and normalisers), the aux optimiser's state, the epoch and the paths.
 * Written before the student's files, so an interrupted save shows as an epoch mismatch. */
static int save_distill_state(rt_ctx *ctx, const rt_distiller *d, rt_optim *aopt, const char *dir, int64_t epoch) {
    rt_st_writer *w = rt_st_writer_new();
    if (!w) return rt_fail(ctx, RT_ENOMEM, "distill: out of memory for the run state");
    int rc = RT_OK;
    for (int i = 0; i < d->aux.count && !rc; i++) {
        const rt_param *p = d->aux.items[i];
        rc = rt_st_add(ctx, w, p->name, p->t.ndim, p->t.shape, p->t.data, 0);
    }
    char e[32], steps[32], names[MAX_PATHS * 70], path[RT_CFG_STR_MAX + 40];
    if (!rc && aopt) {
        float *st;
        size_t len;
        rt_optim_state(aopt, &st, &len);
        if (len) rc = rt_st_add(ctx, w, "aux_optim.state", 1, (int64_t[]){(int64_t)len}, st, 0);
        snprintf(steps, sizeof steps, "%lld", (long long)rt_optim_step_count(aopt));
        if (!rc) rc = rt_st_set_meta(ctx, w, "aux_optim_steps", steps);
    }
    snprintf(e, sizeof e, "%lld", (long long)epoch);
    path_names(d, names, sizeof names);
    if (!rc) rc = rt_st_set_meta(ctx, w, "epoch", e);
    if (!rc) rc = rt_st_set_meta(ctx, w, "paths", names);
    snprintf(path, sizeof path, "%s/distill_state.safetensors", dir);
    if (!rc) rc = rt_st_write(ctx, w, path);
    rt_st_writer_free(w);
    return rc;
}

static int restore_distill_state(rt_ctx *ctx, rt_distiller *d, rt_optim *aopt, const char *dir, int64_t done) {
    char path[RT_CFG_STR_MAX + 40], names[MAX_PATHS * 70];
    snprintf(path, sizeof path, "%s/distill_state.safetensors", dir);
    rt_safetensors *st = NULL;
    int rc = rt_st_read(ctx, path, &st);
    if (rc) return rc;
    const char *e = rt_st_meta(st, "epoch"), *pn = rt_st_meta(st, "paths");
    path_names(d, names, sizeof names);
    if (!e || atoll(e) != done)
        rc = rt_fail(ctx, RT_EFORMAT, "resume: %s is from epoch %s, the checkpoint from epoch %lld (interrupted save?)",
                     path, e ? e : "?", (long long)done);
    else if (!pn || strcmp(pn, names))
        rc = rt_fail(ctx, RT_EINVAL, "resume: %s was made with paths [%s], the config now gives [%s]", path,
                     pn ? pn : "?", names);
    for (int i = 0; i < d->aux.count && !rc; i++) {
        rt_param *p = d->aux.items[i];
        if (!rt_st_find(st, p->name))
            rc = rt_fail(ctx, RT_EFORMAT, "resume: %s has no '%s' (did the paths' taps or adapters change?)", path,
                         p->name);
        else
            rc = rt_st_get_f32(ctx, st, p->name, p->t.data, p->t.ndim, p->t.shape);
    }
    if (!rc && aopt) {
        float *buf;
        size_t len;
        rt_optim_state(aopt, &buf, &len);
        if (len) rc = rt_st_get_f32(ctx, st, "aux_optim.state", buf, 1, (int64_t[]){(int64_t)len});
        const char *steps = rt_st_meta(st, "aux_optim_steps");
        if (!rc && steps) rc = rt_optim_set_step_count(ctx, aopt, atoll(steps));
    }
    rt_st_free(st);
    return rc;
}

/* Keeps the lines of a JSONL file whose number under "key" is below limit: the records a resumed
 * run writes again are dropped (an interrupted epoch may have logged some of them). */
static int jsonl_keep_below(rt_ctx *ctx, const char *path, const char *key, double limit) {
    FILE *in = fopen(path, "r");
    if (!in) return RT_OK;
    char tmp[RT_CFG_STR_MAX + 64], pat[64];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    FILE *out = fopen(tmp, "w");
    if (!out) {
        fclose(in);
        return rt_fail(ctx, RT_EIO, "cannot write %s: %s", tmp, strerror(errno));
    }
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, in) > 0) {
        const char *v = strstr(line, pat);
        if (v && atof(v + strlen(pat)) < limit) fputs(line, out);
    }
    free(line);
    fclose(in);
    if (fclose(out) || rename(tmp, path)) return rt_fail(ctx, RT_EIO, "cannot rewrite %s: %s", path, strerror(errno));
    return RT_OK;
}

/* ---- the run ---- */

static void set_aux_train(rt_distiller *d, int on) {
    for (int k = 0; k < d->K; k++)
        for (int t = 0; t < d->p[k].ntaps; t++)
            if (d->p[k].adapter[t]) rt_module_train(d->p[k].adapter[t], on);
}

/* Test accuracy and loss of the student, and its top-1 agreement error with the teacher's tpred. */
static int eval_student(rt_ctx *ctx, rt_distiller *d, const rt_run_data *data, int64_t batch, const int32_t *tpred,
                        int32_t *spred, double *acc, double *loss, double *agree_err) {
    int rc = rt_evaluate(ctx, d->student, data->test, data->mean, data->std, batch, acc, loss, spred);
    if (rc) return rc;
    int64_t dis = 0;
    for (int64_t i = 0; i < data->test->n; i++) dis += spred[i] != tpred[i];
    *agree_err = (double)dis / (double)data->test->n;
    return RT_OK;
}

int rt_distill_run(rt_ctx *ctx, const rt_distill_cfg *cfg, int resume, rt_distill_summary *summary) {
    const rt_train_cfg *tc = &cfg->train;
    if (tc->epochs <= 0 || tc->batch_size <= 0 || tc->eval_batch <= 0)
        return rt_fail(ctx, RT_EINVAL, "distill: epochs, batch_size and eval_batch must be > 0");
    if (tc->threads > 0) rt_set_threads((int)tc->threads);
    rt_rng_seed(rt_ctx_rng(ctx), (uint64_t)tc->seed);
    rt_distiller d;
    memset(&d, 0, sizeof d);
    float tmean[16], tstd[16];
    int tch = 0;
    rt_model *teacher = NULL, *student = NULL;
    int rc = rt_model_load(ctx, cfg->teacher, &teacher, tmean, tstd, &tch);
    if (rc) return rc;
    rt_run_data data;
    rt_data_cfg dc = tc->data;
    dc.normalize = 0; /* inputs are normalised with the teacher's statistics, for both models */
    if ((rc = rt_run_data_load(ctx, &dc, (uint64_t)tc->seed, &data))) {
        rt_model_free(teacher);
        return rc;
    }
    if (data.train->c != tch) {
        rc = rt_fail(ctx, RT_ESHAPE, "distill: the data has %lld channels, the teacher %d", (long long)data.train->c,
                     tch);
        rt_model_free(teacher);
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
    student = rt_model_new(ctx, tc->arch, &mo, (uint64_t)tc->seed);
    if (!student) rc = rt_status(ctx);
    if (!rc) rc = rt_train_make_dir(ctx, tc->out_dir);
    if (!rc) {
        rt_mark mk = rt_arena_mark(ctx);
        const rt_dataset *ds = data.train;
        rt_tensor *probe = rt_wrap(ctx, ds->x, 4, (int64_t[]){ds->n < 2 ? ds->n : 2, ds->c, ds->h, ds->w});
        rc = probe ? rt_distiller_init(ctx, &d, cfg, teacher, student, probe, ds->n) : rt_status(ctx);
        rt_arena_release(ctx, mk);
    }
    if (!rc) rc = rt_train_setup_optim(ctx, tc, &student->params, &opt);
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
    int64_t start = 0;
    if (!rc && resume) {
        int64_t done = -1;
        double best = 0;
        rc = rt_train_restore_state(ctx, tc, student, opt, &done, &best);
        if (!rc) rc = restore_distill_state(ctx, &d, aopt, tc->out_dir, done);
        start = done + 1;
        if (!rc) fprintf(stderr, "resuming %s after epoch %lld\n", tc->out_dir, (long long)done + 1);
    }
    rt_augment aug = {tc->data.crop_pad, tc->data.hflip, data.mean, data.std};
    if (!rc) {
        ld = rt_loader_new(ctx, data.train, tc->batch_size, 1, 0, (uint64_t)tc->seed, &aug);
        if (!ld) rc = rt_status(ctx);
    }
    const int64_t nb = ld ? rt_loader_num_batches(ld) : 0;
    if (!rc) {
        rc = rt_train_write_config(ctx, tc->out_dir, rt_distill_schema, rt_distill_schema_len, cfg);
        snprintf(path, sizeof path, "%s/metrics.jsonl", tc->out_dir);
        if (!rc) rc = resume ? jsonl_keep_below(ctx, path, "epoch", (double)start + 0.5) : (remove(path), RT_OK);
        if (!rc && rt_jsonl_open(&log, path)) rc = rt_fail(ctx, RT_EIO, "cannot write %s", path);
        snprintf(path, sizeof path, "%s/paths.jsonl", tc->out_dir);
        if (!rc) rc = resume ? jsonl_keep_below(ctx, path, "step", (double)(start * nb) - 0.5) : (remove(path), RT_OK);
        if (!rc && rt_jsonl_open(&plog, path)) rc = rt_fail(ctx, RT_EIO, "cannot write %s", path);
    }
    /* the teacher's test predictions, once: agreement is measured against them */
    double teacher_acc = 0;
    if (!rc) {
        tpred = malloc((size_t)data.test->n * sizeof *tpred);
        spred = malloc((size_t)data.test->n * sizeof *spred);
        if (!tpred || !spred) rc = rt_fail(ctx, RT_ENOMEM, "distill: out of memory for the test predictions");
    }
    if (!rc) rc = rt_evaluate(ctx, teacher, data.test, data.mean, data.std, tc->eval_batch, &teacher_acc, NULL, tpred);
    if (!rc) {
        fprintf(stderr, "distill %s -> %s on %s, strategy %s, %d paths:", teacher->arch, tc->arch, tc->data.name,
                cfg->strategy, d.K);
        for (int k = 0; k < d.K; k++) fprintf(stderr, " %s", d.p[k].name);
        fprintf(stderr, "; teacher test accuracy %.2f%%\n", 100 * teacher_acc);
    }
    rt_model_train(teacher, 0);
    int64_t gstep = start * nb, ran = 0;
    const int64_t stop =
        tc->stop_after > 0 && start + tc->stop_after < tc->epochs ? start + tc->stop_after : tc->epochs;
    double step_time = 0, student_acc = 0, agree_err = 0, val_acc = -1;
    int64_t nsteps_timed = 0;
    for (int64_t epoch = start; epoch < stop && !rc; epoch++) {
        float lr = rt_sched_lr(&sched, (double)epoch);
        rt_loader_set_epoch(ld, epoch);
        rt_model_train(student, 1);
        set_aux_train(&d, 1);
        rt_progress pg;
        char label[64];
        snprintf(label, sizeof label, "epoch %lld/%lld", (long long)epoch + 1, (long long)tc->epochs);
        rt_progress_begin(&pg, stderr, label, nb);
        double t0 = rt_now(), loss_sum = 0, ce_sum = 0, path_sum[MAX_PATHS] = {0};
        int64_t seen = 0, correct = 0, step = 0;
        float *x;
        int32_t *y;
        int64_t b;
        int r;
        while ((r = rt_loader_next(ld, &x, &y, &b)) == 1) {
            double ts0 = rt_now();
            rt_tensor *xt = rt_wrap(ctx, x, 4, (int64_t[]){b, data.train->c, data.train->h, data.train->w});
            const int want_cos = cfg->cos_every > 0 && gstep % cfg->cos_every == 0;
            rt_distill_step_out so;
            if ((rc = rt_distiller_step(ctx, &d, xt, y, rt_loader_indices(ld), want_cos, epoch, step, &so))) break;
            if ((rc = rt_optim_step(ctx, opt, student->params.data, student->params.grad, lr))) break;
            if (aopt && (rc = rt_optim_step(ctx, aopt, d.aux.data, d.aux.grad, lr))) break;
            int64_t kc = so.logits->shape[1];
            for (int64_t i = 0; i < b; i++) correct += rt_argmax_row(so.logits->data + i * kc, kc) == y[i];
            loss_sum += so.total * b;
            ce_sum += so.ce * b;
            for (int k = 0; k < d.K; k++) path_sum[k] += so.L[k] * b;
            seen += b;
            if (cfg->log_every > 0 && (gstep % cfg->log_every == 0 || so.have_cos))
                write_paths_record(&plog, &d, gstep, epoch + (double)step / nb, so.ce, so.L,
                                   so.have_cos ? so.cos : NULL);
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
        if ((rc = eval_student(ctx, &d, &data, tc->eval_batch, tpred, spred, &student_acc, &test_loss, &agree_err)))
            break;
        if (data.val &&
            (rc = rt_evaluate(ctx, student, data.val, data.mean, data.std, tc->eval_batch, &val_acc, NULL, NULL)))
            break;
        double secs = rt_now() - t0, ms = nsteps_timed ? 1000 * step_time / nsteps_timed : 0;
        char summ[256];
        snprintf(summ, sizeof summ,
                 "loss %.4f ce %.4f train acc %.2f%% test acc %.2f%% agreement err %.2f%% %.1f ms/step %.1f s",
                 loss_sum / seen, ce_sum / seen, 100.0 * correct / seen, 100 * student_acc, 100 * agree_err, ms, secs);
        rt_progress_end(&pg, summ);
        if ((rc = save_distill_state(ctx, &d, aopt, tc->out_dir, epoch))) break;
        if ((rc = rt_train_save_checkpoint(ctx, tc, student, opt, &data, epoch, student_acc))) break;
        ran++;
        FILE *f = log.f;
        fprintf(
            f,
            "{\"epoch\": %lld, \"train_loss\": %.6g, \"train_ce\": %.6g, \"train_acc\": %.6g, \"test_acc\": %.6g, "
            "\"test_err\": %.6g, \"test_loss\": %.6g, \"val_acc\": %.6g, \"agree_err\": %.6g, \"teacher_acc\": %.6g, "
            "\"lr\": %.6g, "
            "\"ms_per_step\": %.4g, \"seconds\": %.4g, \"train_seconds\": %.4g, \"strategy\": \"%s\", \"path_loss\": {",
            (long long)epoch + 1, loss_sum / seen, ce_sum / seen, (double)correct / seen, student_acc, 1 - student_acc,
            test_loss, val_acc, agree_err, teacher_acc, (double)lr, ms, secs, train_time, cfg->strategy);
        for (int k = 0; k < d.K; k++) fprintf(f, "%s\"%s\": %.6g", k ? ", " : "", d.p[k].name, path_sum[k] / seen);
        fprintf(f, "}, \"weight\": {");
        for (int k = 0; k < d.K; k++) fprintf(f, "%s\"%s\": %.6g", k ? ", " : "", d.p[k].name, d.weights[k]);
        fprintf(f, "}}\n");
        fflush(f);
    }
    if (!rc && !ran) { /* resumed a finished run: report the checkpoint as it is */
        double tl = 0;
        rc = eval_student(ctx, &d, &data, tc->eval_batch, tpred, spred, &student_acc, &tl, &agree_err);
        if (!rc && data.val)
            rc = rt_evaluate(ctx, student, data.val, data.mean, data.std, tc->eval_batch, &val_acc, NULL, NULL);
    }
    double scratch_acc = -1;
    if (!rc && cfg->scratch_baseline && stop == tc->epochs) {
        /* the same student, data, optimiser, schedule and seed, trained with CE alone */
        rt_train_cfg sc = *tc;
        char dir[RT_CFG_STR_MAX + 16];
        snprintf(dir, sizeof dir, "%s/scratch", tc->out_dir);
        if (strlen(dir) >= sizeof sc.out_dir)
            rc = rt_fail(ctx, RT_EINVAL, "distill: out_dir too long");
        else
            memcpy(sc.out_dir, dir, strlen(dir) + 1);
        sc.stop_after = 0;
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
    rt_distiller_release(&d);
    free(tpred);
    free(spred);
    rt_model_free(student);
    rt_model_free(teacher);
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
