/* Training and evaluation runs: a typed config (YAML + overrides), data set-up, the epoch loop with
 * progress and JSONL metrics, atomic checkpoints every epoch, and exact resume. The `retort` CLI is
 * a thin layer over these calls. */
#ifndef RETORT_TRAIN_H
#define RETORT_TRAIN_H
#include "retort/config.h"
#include "retort/data.h"
#include "retort/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rt_data_cfg {
    char name[RT_CFG_STR_MAX]; /* fashion-mnist | idx | cifar10 | cifar100 | csv | synth */
    char dir[RT_CFG_STR_MAX];  /* data directory (idx, cifar) or file (csv) */
    int64_t val;               /* training samples held out for validation (seeded) */
    int64_t subset;            /* use only this many training samples (0 = all), seeded */
    int64_t test_subset;       /* use only this many test samples (0 = all) */
    int64_t crop_pad;          /* random-crop padding (0 = none) */
    int hflip;                 /* random horizontal flip */
    int normalize;             /* per-channel mean/std from the training set */
} rt_data_cfg;

typedef struct rt_train_cfg {
    rt_data_cfg data;
    char arch[RT_CFG_STR_MAX];
    int64_t hidden;
    char optim[RT_CFG_STR_MAX];
    double lr, momentum, weight_decay, beta1, beta2;
    int nesterov;
    char sched[RT_CFG_STR_MAX];
    rt_cfg_list milestones;
    double gamma, eta_min, power, warmup;
    int64_t epochs, batch_size, seed, threads, eval_batch, stop_after;
    char out_dir[RT_CFG_STR_MAX];
} rt_train_cfg;

extern const rt_cfg_field rt_train_schema[];
extern const int rt_train_schema_len;

/* The data a run uses: train (possibly a subset), optional validation split, test; normalisation
 * statistics of the training set (c values each; zeros/ones when off). Owned by the caller. */
typedef struct rt_run_data {
    rt_dataset *train, *val, *test;
    float mean[16], std[16];
} rt_run_data;
int rt_run_data_load(rt_ctx *ctx, const rt_data_cfg *cfg, uint64_t seed, rt_run_data *d);
void rt_run_data_free(rt_run_data *d);

/* Accuracy (and mean CE loss) of m on ds in eval mode, forward only, batches of `batch`.
 * mean/std normalise the inputs on the fly (NULL = none). pred (ds->n ints) receives the argmax
 * predictions when non-NULL. */
int rt_evaluate(rt_ctx *ctx, rt_model *m, const rt_dataset *ds, const float *mean, const float *std,
                int64_t batch, double *acc, double *loss, int32_t *pred);

/* Trains per cfg into cfg->out_dir (config.yaml, metrics.jsonl, train.log is the caller's,
 * checkpoint.safetensors = the model with PyTorch state_dict names, train_state.safetensors =
 * optimiser state for resume). resume = continue from out_dir's last checkpoint. */
int rt_train_run(rt_ctx *ctx, const rt_train_cfg *cfg, int resume);

/* A model from a checkpoint written by rt_train_run (architecture and input from its metadata).
 * mean/std (16 floats each) receive the normalisation it was trained with. */
int rt_model_load(rt_ctx *ctx, const char *path, rt_model **out, float *mean, float *std, int *channels);

#ifdef __cplusplus
}
#endif
#endif
