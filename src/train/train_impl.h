/* Pieces of the training run shared with the distillation run (src/kd/distill.c). */
#ifndef RT_TRAIN_IMPL_H
#define RT_TRAIN_IMPL_H
#include "retort/optim.h"
#include "retort/train.h"

int rt_train_make_dir(rt_ctx *ctx, const char *path);
/* dir/config.yaml: the resolved config, so a run directory says how it was made. */
int rt_train_write_config(rt_ctx *ctx, const char *dir, const rt_cfg_field *schema, int n, const void *cfg);
int rt_train_setup_optim(rt_ctx *ctx, const rt_train_cfg *cfg, rt_paramset *ps, rt_optim **out);
int rt_train_setup_sched(rt_ctx *ctx, const rt_train_cfg *cfg, rt_sched *s);
/* checkpoint.safetensors (the model, state_dict names, metadata) + train_state.safetensors */
int rt_train_save_checkpoint(rt_ctx *ctx, const rt_train_cfg *cfg, rt_model *m, rt_optim *opt, const rt_run_data *d,
                             int64_t epoch, double best_acc);
int rt_train_restore_state(rt_ctx *ctx, const rt_train_cfg *cfg, rt_model *m, rt_optim *opt, int64_t *epoch,
                           double *best_acc);
int64_t rt_argmax_row(const float *v, int64_t k);
#endif
