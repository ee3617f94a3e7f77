/* The distiller inside rt_distill_run: its paths (taps, adapter, loss), the aux parameters they own
 * (adapters, adaptive z, VID regressors, CRD embeddings and memory banks) and one training step.
 * Internal: rt_distill_run is the public entry point; tests drive single steps through this. */
#ifndef RT_DISTILL_IMPL_H
#define RT_DISTILL_IMPL_H
#include "retort/aggregate.h"
#include "retort/distill.h"
#include "retort/kd.h"

#define RT_DISTILL_MAX_PATHS 32
#define RT_DISTILL_MAX_TAPS 8

typedef enum {
    RT_DL_ST,
    RT_DL_L2,
    RT_DL_DKD,
    RT_DL_AT,
    RT_DL_NST,
    RT_DL_SP,
    RT_DL_FITNET,
    RT_DL_HCL,
    RT_DL_MSE,
    RT_DL_RKD,
    RT_DL_PKT,
    RT_DL_CC,
    RT_DL_FSP,
    RT_DL_VID,
    RT_DL_CRD,
    RT_DL_COUNT
} rt_distill_loss;

typedef enum { RT_ADAPT_NONE, RT_ADAPT_CONV1X1, RT_ADAPT_CONV3X3, RT_ADAPT_LINEAR } rt_adapter_kind;

typedef struct rt_distill_path {
    char name[64];
    rt_distill_loss kind;
    int ntaps; /* FSP: consecutive taps form the pairs */
    char taps[RT_DISTILL_MAX_TAPS][64];
    rt_adapter_kind adapter_kind;
    rt_module *adapter[RT_DISTILL_MAX_TAPS]; /* per tap, NULL = none */
    rt_kd_vid *vid[RT_DISTILL_MAX_TAPS];     /* VID: per tap */
    rt_kd_crd *crd[RT_DISTILL_MAX_TAPS];     /* CRD: per tap */
    float w;
} rt_distill_path;

typedef struct rt_distiller {
    const rt_distill_cfg *cfg;
    rt_model *teacher, *student; /* not owned */
    rt_paramset aux;             /* everything the paths learn, trained by the aux optimiser */
    rt_tensor *z;                /* (K) when adaptive */
    int K;
    rt_distill_path p[RT_DISTILL_MAX_PATHS];
    int strategy; /* 0 single, 1 equal, 2 fixed, 3 adaptive, 4 multiobjective */
    rt_minnorm_normalise norm;
    float *G;                             /* K x n per-path gradients (multiobjective, cosines) */
    double weights[RT_DISTILL_MAX_PATHS]; /* the effective weight of each path at the last step */
    const char *tkeep[RT_MAX_TAPS];       /* the teacher taps the paths read (into p[].taps) */
    int ntkeep;
    rt_keep_buf tbuf; /* the teacher's kept taps and logits: its activations leave the arena at once */
} rt_distiller;

/* Builds the paths of cfg between teacher and student: a forward of probe (a small batch of inputs)
 * through both models gives the taps' shapes; adapters, VID and CRD state are declared into d->aux
 * (CRD's memory banks with n_data rows: the training set's size) and initialised from the seed.
 * Leaves both models in eval mode. On failure d still holds what was made: rt_distiller_release it. */
int rt_distiller_init(rt_ctx *ctx, rt_distiller *d, const rt_distill_cfg *cfg, rt_model *teacher, rt_model *student,
                      rt_tensor *probe, int64_t n_data);
void rt_distiller_release(rt_distiller *d); /* the paths and aux, not the models */

typedef struct rt_distill_step_out {
    float ce, total;
    float L[RT_DISTILL_MAX_PATHS]; /* path losses (NaN where one failed) */
    int have_cos;
    double cos[RT_DISTILL_MAX_PATHS * RT_DISTILL_MAX_PATHS];
    rt_tensor *logits; /* the student's, in the step's arena */
} rt_distill_step_out;

/* One step's forward and backward on the batch x (B,C,H,W), labels y, data set indices idx (CRD's
 * memory rows; may be NULL without a CRD path): teacher forward without grad, student forward,
 * CE + alpha * aggregate(paths), gradients into the student's and the aux parameter sets (zeroed
 * first). want_cos also records the cosines between the paths' gradients. The caller steps the
 * optimisers and resets the arena. epoch and step only name the step in a divergence error. */
int rt_distiller_step(rt_ctx *ctx, rt_distiller *d, rt_tensor *x, const int32_t *y, const int64_t *idx, int want_cos,
                      int64_t epoch, int64_t step, rt_distill_step_out *out);

#endif
