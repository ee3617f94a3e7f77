/* The training run behind `retort train`: config schema, data set-up, the epoch loop, evaluation,
 * checkpoints (atomic, every epoch) and exact resume. */
#include "retort/train.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "retort/io.h"
#include "retort/optim.h"
#include "train/progress.h"
#include "train/train_impl.h"

#include "train/train_fields.h"

#define F(key, type, member, def, help) {key, type, offsetof(rt_train_cfg, member), def, help},
const rt_cfg_field rt_train_schema[] = {RT_TRAIN_FIELDS(F)};
#undef F
const int rt_train_schema_len = (int)(sizeof rt_train_schema / sizeof rt_train_schema[0]);

/* ---- data ---- */

static int take_subset(rt_ctx *ctx, rt_dataset **ds, int64_t n, uint64_t seed) {
    if (n <= 0 || n >= (*ds)->n) return RT_OK;
    rt_dataset *rest = NULL, *sub = NULL;
    int rc = rt_dataset_split(ctx, *ds, n, seed, &rest, &sub);
    if (rc) return rc;
    rt_dataset_free(rest);
    rt_dataset_free(*ds);
    *ds = sub;
    return RT_OK;
}

int rt_run_data_load(rt_ctx *ctx, const rt_data_cfg *cfg, uint64_t seed, rt_run_data *d) {
    memset(d, 0, sizeof *d);
    const char *dir = cfg->dir[0] ? cfg->dir : NULL;
    int rc;
    if (!strcmp(cfg->name, "fashion-mnist") || !strcmp(cfg->name, "idx")) {
        if (!strcmp(cfg->name, "idx") && !dir) return rt_fail(ctx, RT_EINVAL, "data.name idx needs data.dir");
        rc = rt_data_load_idx_dir(ctx, dir, "train", &d->train);
        if (!rc) rc = rt_data_load_idx_dir(ctx, dir, "t10k", &d->test);
    } else if (!strcmp(cfg->name, "cifar10") || !strcmp(cfg->name, "cifar100")) {
        if (!dir) return rt_fail(ctx, RT_EINVAL, "data.name %s needs data.dir (the folder of the .bin files)", cfg->name);
        int k = !strcmp(cfg->name, "cifar10") ? 10 : 100;
        rc = rt_data_load_cifar(ctx, dir, k, 1, &d->train);
        if (!rc) rc = rt_data_load_cifar(ctx, dir, k, 0, &d->test);
    } else if (!strcmp(cfg->name, "csv")) {
        if (!dir) return rt_fail(ctx, RT_EINVAL, "data.name csv needs data.dir (the CSV file)");
        rt_dataset *all = NULL;
        rc = rt_data_load_csv(ctx, dir, NULL, &all);
        /* a fixed fifth of the file is the test set, independent of the run's seed */
        if (!rc) rc = rt_dataset_split(ctx, all, all->n / 5, 0x7e57, &d->train, &d->test);
        rt_dataset_free(all);
    } else if (!strcmp(cfg->name, "synth")) {
        rt_synth_opts o = rt_synth_defaults();
        rc = rt_data_synth_splits(ctx, &o, seed, &d->train, &d->val, &d->test);
    } else {
        return rt_fail(ctx, RT_EINVAL, "data.name '%s' is unknown (fashion-mnist, idx, cifar10, cifar100, csv, synth)",
                       cfg->name);
    }
    if (!rc) rc = take_subset(ctx, &d->train, cfg->subset, seed * 31 + 7);
    if (!rc) rc = take_subset(ctx, &d->test, cfg->test_subset, 0x7e57);
    if (!rc && cfg->val > 0) {
        if (cfg->val >= d->train->n) {
            rc = rt_fail(ctx, RT_EINVAL, "data.val = %lld but the training set has %lld samples", (long long)cfg->val,
                         (long long)d->train->n);
        } else {
            rt_dataset *tr = NULL;
            rt_dataset_free(d->val);
            d->val = NULL;
            rc = rt_dataset_split(ctx, d->train, cfg->val, seed * 17 + 3, &tr, &d->val);
            if (!rc) {
                rt_dataset_free(d->train);
                d->train = tr;
            }
        }
    }
    if (!rc && d->train->c > 16) rc = rt_fail(ctx, RT_EINVAL, "data: %lld channels (at most 16)", (long long)d->train->c);
    for (int i = 0; i < 16; i++) d->mean[i] = 0, d->std[i] = 1;
    if (!rc && cfg->normalize) rc = rt_dataset_stats(ctx, d->train, RT_NORM_CHANNEL, d->mean, d->std);
    if (rc) rt_run_data_free(d);
    return rc;
}

void rt_run_data_free(rt_run_data *d) {
    rt_dataset_free(d->train);
    rt_dataset_free(d->val);
    rt_dataset_free(d->test);
    d->train = d->val = d->test = NULL;
}

/* ---- evaluation ---- */

int64_t rt_argmax_row(const float *v, int64_t k) {
    int64_t best = 0;
    for (int64_t j = 1; j < k; j++)
        if (v[j] > v[best]) best = j;
    return best;
}

int rt_evaluate(rt_ctx *ctx, rt_model *m, const rt_dataset *ds, const float *mean, const float *std, int64_t batch,
                double *acc, double *loss, int32_t *pred) {
    int was_training = m->root ? m->root->training : 0;
    rt_model_train(m, 0);
    int prev = rt_set_grad_enabled(ctx, 0);
    int64_t per = rt_dataset_sample_numel(ds), hw = ds->h * ds->w, correct = 0;
    double total = 0;
    int rc = RT_OK;
    for (int64_t s = 0; s < ds->n && !rc; s += batch) {
        int64_t b = ds->n - s < batch ? ds->n - s : batch;
        rt_mark mk = rt_arena_mark(ctx);
        rt_tensor *x = rt_new4(ctx, b, ds->c, ds->h, ds->w);
        if (!x) {
            rc = rt_status(ctx);
            break;
        }
        const float *src = ds->x + s * per;
        for (int64_t i = 0; i < b * per; i++) {
            int64_t ch = (i / hw) % ds->c;
            x->data[i] = mean ? (src[i] - mean[ch]) / std[ch] : src[i];
        }
        rt_tensor *logits = rt_model_forward(ctx, m, x, NULL);
        rt_tensor *l = rt_cross_entropy(ctx, logits, ds->y + s, 0.0f, RT_SUM);
        if (!l) {
            rc = rt_status(ctx);
            break;
        }
        total += l->data[0];
        int64_t k = logits->shape[1];
        for (int64_t i = 0; i < b; i++) {
            int64_t p = rt_argmax_row(logits->data + i * k, k);
            correct += p == ds->y[s + i];
            if (pred) pred[s + i] = (int32_t)p;
        }
        rt_arena_release(ctx, mk);
    }
    rt_set_grad_enabled(ctx, prev);
    rt_model_train(m, was_training);
    if (acc) *acc = ds->n ? (double)correct / ds->n : 0;
    if (loss) *loss = ds->n ? total / ds->n : 0;
    return rc;
}

/* ---- checkpoints ---- */

static void list_str(char *buf, size_t n, const float *v, int64_t k) {
    size_t len = 0;
    buf[0] = 0;
    for (int64_t i = 0; i < k && len < n - 20; i++) len += (size_t)snprintf(buf + len, n - len, "%s%.9g", i ? "," : "", v[i]);
}

static void parse_list(const char *s, float *v, int max) {
    for (int i = 0; i < max && s && *s; i++) {
        char *end;
        v[i] = strtof(s, &end);
        s = *end == ',' ? end + 1 : end;
    }
}

int rt_train_save_checkpoint(rt_ctx *ctx, const rt_train_cfg *cfg, rt_model *m, rt_optim *opt, const rt_run_data *d,
                           int64_t epoch, double best_acc) {
    char path[600], e[32], ch[32], sz[32], nc[32], hid[32], feat[32], mean[400], std[400], steps[32], best[32], rng[80];
    snprintf(e, sizeof e, "%lld", (long long)epoch);
    snprintf(ch, sizeof ch, "%lld", (long long)d->train->c);
    snprintf(sz, sizeof sz, "%lld", (long long)d->train->h);
    snprintf(nc, sizeof nc, "%d", m->opts.num_classes);
    snprintf(hid, sizeof hid, "%d", m->opts.hidden);
    snprintf(feat, sizeof feat, "%lld", (long long)rt_dataset_sample_numel(d->train));
    list_str(mean, sizeof mean, d->mean, d->train->c);
    list_str(std, sizeof std, d->std, d->train->c);
    /* the optimiser's state first: a crash between the two files leaves an older model, which resume detects */
    rt_st_writer *w = rt_st_writer_new();
    float *st;
    size_t len;
    rt_optim_state(opt, &st, &len);
    int rc = RT_OK;
    if (len) rc = rt_st_add(ctx, w, "optim.state", 1, (int64_t[]){(int64_t)len}, st, 0);
    snprintf(steps, sizeof steps, "%lld", (long long)rt_optim_step_count(opt));
    snprintf(best, sizeof best, "%.9g", best_acc);
    rt_rng *r = rt_ctx_rng(ctx);
    snprintf(rng, sizeof rng, "%016llx%016llx%016llx%016llx", (unsigned long long)r->s[0], (unsigned long long)r->s[1],
             (unsigned long long)r->s[2], (unsigned long long)r->s[3]);
    if (!rc) rc = rt_st_set_meta(ctx, w, "epoch", e);
    if (!rc) rc = rt_st_set_meta(ctx, w, "optim_steps", steps);
    if (!rc) rc = rt_st_set_meta(ctx, w, "best_acc", best);
    if (!rc) rc = rt_st_set_meta(ctx, w, "rng", rng);
    snprintf(path, sizeof path, "%s/train_state.safetensors", cfg->out_dir);
    if (!rc) rc = rt_st_write(ctx, w, path);
    rt_st_writer_free(w);
    if (rc) return rc;
    const char *keys[] = {"format", "arch", "epoch", "in_channels", "in_size", "num_classes", "hidden", "in_features", "norm_mean", "norm_std", "data"};
    const char *vals[] = {"retort-checkpoint-1", cfg->arch, e, ch, sz, nc, hid, feat, mean, std, cfg->data.name};
    snprintf(path, sizeof path, "%s/checkpoint.safetensors", cfg->out_dir);
    return rt_params_save(ctx, &m->params, path, 11, keys, vals);
}

int rt_model_load(rt_ctx *ctx, const char *path, rt_model **out, float *mean, float *std, int *channels) {
    *out = NULL;
    rt_safetensors *st = NULL;
    int rc = rt_st_read(ctx, path, &st);
    if (rc) return rc;
    const char *arch = rt_st_meta(st, "arch");
    if (!arch) {
        rt_st_free(st);
        return rt_fail(ctx, RT_EFORMAT, "checkpoint %s: no 'arch' in its metadata (not written by retort train?)", path);
    }
    rt_model_opts o = {0};
    const char *v;
    o.in_channels = (v = rt_st_meta(st, "in_channels")) ? atoi(v) : 3;
    o.in_size = (v = rt_st_meta(st, "in_size")) ? atoi(v) : 32;
    o.num_classes = (v = rt_st_meta(st, "num_classes")) ? atoi(v) : 10;
    o.hidden = (v = rt_st_meta(st, "hidden")) ? atoi(v) : 256;
    o.in_features = (v = rt_st_meta(st, "in_features")) ? atoi(v) : o.in_channels * o.in_size * o.in_size;
    if (channels) *channels = o.in_channels;
    for (int i = 0; i < 16; i++) {
        if (mean) mean[i] = 0;
        if (std) std[i] = 1;
    }
    if (mean) parse_list(rt_st_meta(st, "norm_mean"), mean, 16);
    if (std) parse_list(rt_st_meta(st, "norm_std"), std, 16);
    rt_model *m = rt_model_new(ctx, arch, &o, 1);
    rt_st_free(st);
    if (!m) return rt_status(ctx);
    rc = rt_params_load(ctx, &m->params, path, NULL);
    if (rc) {
        rt_model_free(m);
        return rc;
    }
    *out = m;
    return RT_OK;
}

int rt_train_restore_state(rt_ctx *ctx, const rt_train_cfg *cfg, rt_model *m, rt_optim *opt, int64_t *epoch,
                         double *best_acc) {
    char path[600];
    snprintf(path, sizeof path, "%s/checkpoint.safetensors", cfg->out_dir);
    rt_safetensors *meta = NULL;
    int rc = rt_params_load(ctx, &m->params, path, &meta);
    if (rc) return rc;
    const char *arch = rt_st_meta(meta, "arch"), *e = rt_st_meta(meta, "epoch");
    int64_t ck_epoch = e ? atoll(e) : -1;
    if (arch && strcmp(arch, cfg->arch))
        rc = rt_fail(ctx, RT_EINVAL, "resume: %s holds a %s, the config asks for %s", path, arch, cfg->arch);
    rt_st_free(meta);
    if (rc) return rc;
    rt_safetensors *st = NULL;
    snprintf(path, sizeof path, "%s/train_state.safetensors", cfg->out_dir);
    if ((rc = rt_st_read(ctx, path, &st))) return rc;
    e = rt_st_meta(st, "epoch");
    if (!e || atoll(e) != ck_epoch) {
        rt_st_free(st);
        return rt_fail(ctx, RT_EFORMAT, "resume: %s is from epoch %s, the checkpoint from epoch %lld (interrupted save?)",
                       path, e ? e : "?", (long long)ck_epoch);
    }
    float *buf;
    size_t len;
    rt_optim_state(opt, &buf, &len);
    if (len) rc = rt_st_get_f32(ctx, st, "optim.state", buf, 1, (int64_t[]){(int64_t)len});
    const char *steps = rt_st_meta(st, "optim_steps"), *best = rt_st_meta(st, "best_acc"), *rng = rt_st_meta(st, "rng");
    if (!rc && steps) rc = rt_optim_set_step_count(ctx, opt, atoll(steps));
    if (!rc && best) *best_acc = atof(best);
    if (!rc && rng && strlen(rng) == 64) {
        rt_rng *r = rt_ctx_rng(ctx);
        for (int i = 0; i < 4; i++) {
            char part[17];
            memcpy(part, rng + 16 * i, 16);
            part[16] = 0;
            r->s[i] = strtoull(part, NULL, 16);
        }
    }
    rt_st_free(st);
    *epoch = ck_epoch;
    return rc;
}

/* ---- the run ---- */

int rt_train_write_config(rt_ctx *ctx, const char *dir, const rt_cfg_field *schema, int n, const void *cfg) {
    char path[RT_CFG_STR_MAX + 16];
    snprintf(path, sizeof path, "%s/config.yaml", dir);
    FILE *f = fopen(path, "w");
    if (!f) return rt_fail(ctx, RT_EIO, "cannot write %s: %s", path, strerror(errno));
    int rc = rt_config_write(schema, n, cfg, f);
    if (fclose(f) || rc) return rt_fail(ctx, RT_EIO, "cannot write %s: %s", path, strerror(errno));
    return RT_OK;
}

int rt_train_make_dir(rt_ctx *ctx, const char *path) {
    char tmp[RT_CFG_STR_MAX];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(tmp, 0755);
            *p = '/';
        }
    if (mkdir(tmp, 0755) && errno != EEXIST)
        return rt_fail(ctx, RT_EIO, "cannot create run directory %s: %s", path, strerror(errno));
    return RT_OK;
}

int rt_train_setup_sched(rt_ctx *ctx, const rt_train_cfg *cfg, rt_sched *s) {
    rt_sched_kind kind;
    int rc = rt_sched_kind_parse(ctx, cfg->sched, &kind);
    if (rc) return rc;
    *s = rt_sched_defaults(kind, cfg->lr);
    s->nmilestones = cfg->milestones.n;
    for (int i = 0; i < cfg->milestones.n && i < RT_SCHED_MAX_MILESTONES; i++) s->milestones[i] = cfg->milestones.v[i];
    s->gamma = cfg->gamma;
    s->T = (double)cfg->epochs;
    s->eta_min = cfg->eta_min;
    s->power = cfg->power;
    s->warmup = cfg->warmup;
    return rt_sched_check(ctx, s);
}

int rt_train_setup_optim(rt_ctx *ctx, const rt_train_cfg *cfg, rt_paramset *ps, rt_optim **out) {
    rt_optim_kind kind;
    int rc = rt_optim_kind_parse(ctx, cfg->optim, &kind);
    if (rc) return rc;
    rt_optim_cfg oc = rt_optim_defaults(kind);
    oc.lr = (float)cfg->lr;
    oc.weight_decay = (float)cfg->weight_decay;
    if (kind == RT_OPTIM_SGD) {
        oc.momentum = (float)cfg->momentum;
        oc.nesterov = cfg->nesterov;
    } else {
        oc.beta1 = (float)cfg->beta1;
        oc.beta2 = (float)cfg->beta2;
    }
    *out = rt_optim_new(ctx, &oc, ps->n);
    if (!*out) return rt_status(ctx);
    return rt_optim_groups_from_params(ctx, *out, ps, (float)cfg->weight_decay, -1.0f);
}

int rt_train_run(rt_ctx *ctx, const rt_train_cfg *cfg, int resume) {
    if (cfg->epochs <= 0) return rt_fail(ctx, RT_EINVAL, "epochs must be > 0, got %lld", (long long)cfg->epochs);
    if (cfg->batch_size <= 0) return rt_fail(ctx, RT_EINVAL, "batch_size must be > 0, got %lld", (long long)cfg->batch_size);
    if (cfg->eval_batch <= 0) return rt_fail(ctx, RT_EINVAL, "eval_batch must be > 0");
    if (cfg->threads > 0) rt_set_threads((int)cfg->threads);
    rt_rng_seed(rt_ctx_rng(ctx), (uint64_t)cfg->seed);
    int rc = rt_train_make_dir(ctx, cfg->out_dir);
    if (rc) return rc;
    rt_run_data d;
    if ((rc = rt_run_data_load(ctx, &cfg->data, (uint64_t)cfg->seed, &d))) return rc;
    rt_model_opts mo = {(int)d.train->c, (int)d.train->h, d.train->num_classes, (int)cfg->hidden,
                        (int)rt_dataset_sample_numel(d.train)};
    rt_model *m = rt_model_new(ctx, cfg->arch, &mo, (uint64_t)cfg->seed);
    rt_optim *opt = NULL;
    rt_loader *ld = NULL;
    rt_sched sched;
    rt_jsonl log = {0};
    char path[600];
    if (!m) rc = rt_status(ctx);
    if (!rc) rc = rt_train_setup_optim(ctx, cfg, &m->params, &opt);
    if (!rc) rc = rt_train_setup_sched(ctx, cfg, &sched);
    int64_t start = 0;
    double best_acc = 0;
    if (!rc && resume) {
        int64_t done = 0;
        rc = rt_train_restore_state(ctx, cfg, m, opt, &done, &best_acc);
        start = done + 1;
        if (!rc) fprintf(stderr, "resuming %s after epoch %lld\n", cfg->out_dir, (long long)done);
    }
    if (!rc) {
        rc = rt_train_write_config(ctx, cfg->out_dir, rt_train_schema, rt_train_schema_len, cfg);
        snprintf(path, sizeof path, "%s/metrics.jsonl", cfg->out_dir);
        if (!rc && !resume) remove(path);
        if (!rc && rt_jsonl_open(&log, path)) rc = rt_fail(ctx, RT_EIO, "cannot write %s: %s", path, strerror(errno));
    }
    rt_augment aug = {cfg->data.crop_pad, cfg->data.hflip, cfg->data.normalize ? d.mean : NULL,
                      cfg->data.normalize ? d.std : NULL};
    if (!rc) {
        ld = rt_loader_new(ctx, d.train, cfg->batch_size, 1, 0, (uint64_t)cfg->seed, &aug);
        if (!ld) rc = rt_status(ctx);
    }
    if (!rc)
        fprintf(stderr, "train %s on %s: %lld train / %lld val / %lld test samples, %zu parameters, %lld epochs, %d threads\n",
                cfg->arch, cfg->data.name, (long long)d.train->n, (long long)(d.val ? d.val->n : 0),
                (long long)d.test->n, m->params.n, (long long)cfg->epochs, rt_threads());
    const float *emean = cfg->data.normalize ? d.mean : NULL, *estd = cfg->data.normalize ? d.std : NULL;
    int64_t stop = cfg->stop_after > 0 && start + cfg->stop_after < cfg->epochs ? start + cfg->stop_after : cfg->epochs;
    for (int64_t epoch = start; epoch < stop && !rc; epoch++) {
        float lr = rt_sched_lr(&sched, (double)epoch);
        rt_loader_set_epoch(ld, epoch);
        rt_model_train(m, 1);
        rt_progress pg;
        char label[64];
        snprintf(label, sizeof label, "epoch %lld/%lld", (long long)epoch + 1, (long long)cfg->epochs);
        rt_progress_begin(&pg, stderr, label, rt_loader_num_batches(ld));
        double t0 = rt_now(), loss_sum = 0;
        int64_t seen = 0, correct = 0, step = 0;
        float *x;
        int32_t *y;
        int64_t b;
        int r;
        while ((r = rt_loader_next(ld, &x, &y, &b)) == 1) {
            rt_tensor *xt = rt_wrap(ctx, x, 4, (int64_t[]){b, d.train->c, d.train->h, d.train->w});
            rt_tensor *logits = rt_model_forward(ctx, m, xt, NULL);
            rt_tensor *loss = rt_cross_entropy(ctx, logits, y, 0.0f, RT_MEAN);
            if (!loss) {
                rc = rt_status(ctx);
                break;
            }
            if (!isfinite(loss->data[0])) {
                rc = rt_fail(ctx, RT_ESTATE, "training diverged at epoch %lld step %lld (loss %g): lower optim.lr",
                             (long long)epoch + 1, (long long)step + 1, loss->data[0]);
                break;
            }
            rt_params_zero_grad(&m->params);
            if ((rc = rt_backward(ctx, loss))) break;
            if ((rc = rt_optim_step(ctx, opt, m->params.data, m->params.grad, lr))) break;
            int64_t k = logits->shape[1];
            for (int64_t i = 0; i < b; i++) correct += rt_argmax_row(logits->data + i * k, k) == y[i];
            loss_sum += loss->data[0] * b;
            seen += b;
            step++;
            rt_step_reset(ctx);
            rt_progress_update(&pg, step, loss_sum / seen, (double)correct / seen, seen);
        }
        if (r < 0 && !rc) rc = r;
        if (rc) break;
        double train_time = rt_now() - t0;
        double val_acc = -1, val_loss = 0, test_acc = 0, test_loss = 0;
        if (d.val && (rc = rt_evaluate(ctx, m, d.val, emean, estd, cfg->eval_batch, &val_acc, &val_loss, NULL))) break;
        if ((rc = rt_evaluate(ctx, m, d.test, emean, estd, cfg->eval_batch, &test_acc, &test_loss, NULL))) break;
        if (test_acc > best_acc) best_acc = test_acc;
        double secs = rt_now() - t0;
        char summary[256];
        char val_s[48] = "";
        if (val_acc >= 0) snprintf(val_s, sizeof val_s, " val acc %.2f%%", 100 * val_acc);
        snprintf(summary, sizeof summary, "loss %.4f train acc %.2f%%%s test acc %.2f%% lr %.4g %.1f s (%.0f img/s)",
                 seen ? loss_sum / seen : 0, seen ? 100.0 * correct / seen : 0, val_s, 100 * test_acc, lr, secs,
                 seen / train_time);
        rt_progress_end(&pg, summary);
        if ((rc = rt_train_save_checkpoint(ctx, cfg, m, opt, &d, epoch, best_acc))) break;
        rt_jsonl_write(&log, "epoch", 'i', (int64_t)(epoch + 1), "train_loss", 'f', seen ? loss_sum / seen : 0.0,
                       "train_acc", 'f', seen ? (double)correct / seen : 0.0, "val_acc", 'f', val_acc, "val_loss", 'f',
                       val_loss, "test_acc", 'f', test_acc, "test_loss", 'f', test_loss, "lr", 'f', (double)lr,
                       "seconds", 'f', secs, "train_seconds", 'f', train_time, NULL);
    }
    rt_jsonl_close(&log);
    rt_loader_free(ld);
    rt_optim_free(opt);
    rt_model_free(m);
    rt_run_data_free(&d);
    return rc;
}
