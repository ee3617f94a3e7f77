/* Multi-path distillation (the adaptive-distillation paper, 000): a teacher checkpoint, a student
 * architecture, and K paths (a teacher tap, a student tap, an optional adapter, a loss), trained with
 * total = CE + alpha * aggregate(L_1..L_K) under one of the aggregation strategies. */
#ifndef RETORT_DISTILL_H
#define RETORT_DISTILL_H
#include "retort/train.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rt_distill_cfg {
    rt_train_cfg train;            /* data, student (model.*), optim, sched, epochs, ... out_dir */
    char teacher[RT_CFG_STR_MAX];  /* teacher checkpoint (written by retort train) */
    char strategy[RT_CFG_STR_MAX]; /* single | equal | fixed | adaptive | multiobjective */
    rt_cfg_strlist paths;          /* st, l2, dkd, at, nst, sp, fitnet, hcl, mse, rkd, pkt, cc, fsp, vid, crd */
    rt_cfg_list weights;           /* per listed path: fixed weights (fixed), multipliers w (adaptive) */
    double alpha;
    int layerwise;                 /* feature losses: one path per tap instead of one summed path */
    int64_t log_every, cos_every;
    int scratch_baseline;          /* also train the student alone with the same protocol (out_dir/scratch) */
    int z_weight_decay;
    char mgda_normalise[RT_CFG_STR_MAX]; /* none | l2 | loss | loss_l2 */
    double T, dkd_alpha, dkd_beta;
    rt_cfg_list search_values;     /* retort search: candidate values of each path weight */
    char search_mode[RT_CFG_STR_MAX]; /* grid | random */
    int64_t search_trials;         /* random: number of trials */
    rt_cfg_strlist at_taps, nst_taps, sp_taps, fitnet_taps, hcl_taps, mse_taps, rkd_taps, pkt_taps, cc_taps;
    rt_cfg_strlist fsp_taps;       /* consecutive entries form the pairs (lo, hi) of the flow matrices */
    rt_cfg_strlist vid_taps, crd_taps;
    double vid_init_var;           /* VID's initial variance (softplus(log_scale) + 1e-5) */
    int64_t crd_feat_dim, crd_nce_k; /* CRD embedding size and negatives per sample */
    double crd_nce_t, crd_momentum;  /* CRD temperature and memory-bank momentum */
    /* <loss>.adapter: conv1x1 | conv3x3 | linear | none, the map from the student's tap towards the
     * teacher's (conv: 1x1 or 3x3 pad 1 conv + BN to the teacher's channels; linear: (B,D) taps) */
    char at_adapter[RT_CFG_STR_MAX], nst_adapter[RT_CFG_STR_MAX], sp_adapter[RT_CFG_STR_MAX];
    char fitnet_adapter[RT_CFG_STR_MAX], hcl_adapter[RT_CFG_STR_MAX], mse_adapter[RT_CFG_STR_MAX];
    char rkd_adapter[RT_CFG_STR_MAX], pkt_adapter[RT_CFG_STR_MAX], cc_adapter[RT_CFG_STR_MAX];
    char fsp_adapter[RT_CFG_STR_MAX], vid_adapter[RT_CFG_STR_MAX], crd_adapter[RT_CFG_STR_MAX];
} rt_distill_cfg;

extern const rt_cfg_field rt_distill_schema[];
extern const int rt_distill_schema_len;

/* Runs the distillation into cfg->train.out_dir: config.yaml, metrics.jsonl (per epoch: losses,
 * train/test accuracy, test error, top-1 agreement error with the teacher, path weights, ms per
 * step), paths.jsonl (every log_every steps: path losses, weights, gradient cosines), and the
 * student's checkpoint.safetensors, after every epoch with train_state.safetensors (the student's
 * optimiser, the RNG) and distill_state.safetensors (the aux parameters: adapters, adaptive z, VID
 * regressors, CRD embeddings and memory banks, and their optimiser). resume = continue after the
 * last completed epoch in out_dir; the run then ends bit-identical to an uninterrupted one (same
 * thread count). summary (may be NULL) receives the final numbers. */
typedef struct rt_distill_summary {
    double teacher_acc, student_acc, agree_err, ms_per_step;
    double val_acc; /* on the held-out split (data.val > 0), else -1 */
    double scratch_acc; /* the student trained alone (distill.scratch_baseline), else -1 */
} rt_distill_summary;
int rt_distill_run(rt_ctx *ctx, const rt_distill_cfg *cfg, int resume, rt_distill_summary *summary);

/* Hyperparameter search over the path weights (strategy fixed), judged on a held-out validation
 * split (data.val must be > 0): a grid over search_values for every path, or search_trials random
 * draws (log-uniform between the smallest and largest value). Each trial is a run in
 * out_dir/trial-N; out_dir/search.jsonl lists them; out_dir/best.txt holds the chosen weights as a
 * `distill.weights=[...]` override. best (K floats, may be NULL) receives them. */
int rt_distill_search(rt_ctx *ctx, const rt_distill_cfg *cfg, float *best, int *k_out);

#ifdef __cplusplus
}
#endif
#endif
