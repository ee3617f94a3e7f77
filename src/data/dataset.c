/* Data sets in memory: creation, subsets and seeded splits, mean/std statistics and normalisation. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_util.h"

rt_dataset *rt_dataset_new(rt_ctx *ctx, int64_t n, int64_t c, int64_t h, int64_t w, int num_classes, const char *name) {
    if (n < 0 || c < 1 || h < 1 || w < 1 || num_classes < 1) {
        rt_fail(ctx, RT_EINVAL, "dataset: bad size n=%lld (c,h,w)=(%lld,%lld,%lld) num_classes=%d", (long long)n,
                (long long)c, (long long)h, (long long)w, num_classes);
        return NULL;
    }
    if (c > INT64_MAX / 4 / h / w || (n && c * h * w > INT64_MAX / 4 / n)) {
        rt_fail(ctx, RT_EINVAL, "dataset: %lld samples of (%lld,%lld,%lld) overflow", (long long)n, (long long)c,
                (long long)h, (long long)w);
        return NULL;
    }
    int64_t per = c * h * w;
    rt_dataset *ds = calloc(1, sizeof *ds);
    /* n = 0 is allowed (an empty split); keep the buffers non-NULL all the same */
    float *x = ds ? calloc((size_t)(n ? n : 1) * (size_t)per, sizeof(float)) : NULL;
    int32_t *y = ds ? calloc((size_t)(n ? n : 1), sizeof(int32_t)) : NULL;
    if (!ds || !x || !y) {
        free(ds);
        free(x);
        free(y);
        rt_fail(ctx, RT_ENOMEM, "dataset: cannot allocate %lld samples of %lld floats", (long long)n, (long long)per);
        return NULL;
    }
    ds->n = n;
    ds->c = c;
    ds->h = h;
    ds->w = w;
    ds->num_classes = num_classes;
    ds->x = x;
    ds->y = y;
    snprintf(ds->name, sizeof ds->name, "%s", name ? name : "");
    return ds;
}

void rt_dataset_free(rt_dataset *ds) {
    if (!ds) return;
    free(ds->x);
    free(ds->y);
    free(ds->y_clean);
    free(ds);
}

int rt_dataset_subset(rt_ctx *ctx, const rt_dataset *ds, int64_t count, const int64_t *idx, const char *name,
                      rt_dataset **out) {
    *out = NULL;
    if (count < 0 || (count > 0 && !idx))
        return rt_fail(ctx, RT_EINVAL, "dataset_subset: bad count %lld", (long long)count);
    for (int64_t i = 0; i < count; i++)
        if (idx[i] < 0 || idx[i] >= ds->n)
            return rt_fail(ctx, RT_EINVAL, "dataset_subset: index %lld (position %lld) out of range for '%s' (n=%lld)",
                           (long long)idx[i], (long long)i, ds->name, (long long)ds->n);
    rt_dataset *s = rt_dataset_new(ctx, count, ds->c, ds->h, ds->w, ds->num_classes, name ? name : ds->name);
    if (!s) return rt_status(ctx);
    if (ds->y_clean && !(s->y_clean = malloc((size_t)(count ? count : 1) * sizeof(int32_t)))) {
        rt_dataset_free(s);
        return rt_fail(ctx, RT_ENOMEM, "dataset_subset: out of memory");
    }
    int64_t per = rt_dataset_sample_numel(ds);
    for (int64_t i = 0; i < count; i++) {
        memcpy(s->x + i * per, ds->x + idx[i] * per, (size_t)per * sizeof(float));
        s->y[i] = ds->y[idx[i]];
        if (ds->y_clean) s->y_clean[i] = ds->y_clean[idx[i]];
    }
    *out = s;
    return RT_OK;
}

int rt_dataset_split(rt_ctx *ctx, const rt_dataset *ds, int64_t n_val, uint64_t seed, rt_dataset **train,
                     rt_dataset **val) {
    *train = *val = NULL;
    if (n_val < 0 || n_val > ds->n)
        return rt_fail(ctx, RT_EINVAL, "dataset_split: n_val %lld not in [0, %lld] for '%s'", (long long)n_val,
                       (long long)ds->n, ds->name);
    int64_t n = ds->n, *perm = malloc((size_t)(n ? n : 1) * sizeof(int64_t)),
            *tidx = malloc((size_t)(n ? n : 1) * sizeof(int64_t));
    unsigned char *is_val = calloc((size_t)(n ? n : 1), 1);
    if (!perm || !tidx || !is_val) {
        free(perm);
        free(tidx);
        free(is_val);
        return rt_fail(ctx, RT_ENOMEM, "dataset_split: out of memory");
    }
    rt_rng r;
    rt_rng_seed(&r, rt_data_mix(seed, 0x5b1170));
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    /* partial Fisher-Yates: the first n_val entries are a uniform sample without replacement */
    for (int64_t i = 0; i < n_val; i++) {
        int64_t j = i + (int64_t)rt_rng_below(&r, (uint64_t)(n - i)), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
        is_val[perm[i]] = 1;
    }
    int64_t nt = 0, nv = 0;
    for (int64_t i = 0; i < n; i++) {
        if (is_val[i])
            perm[nv++] = i; /* perm is no longer needed: reuse it for the val indices */
        else
            tidx[nt++] = i;
    }
    char tn[64], vn[64];
    snprintf(tn, sizeof tn, "%.50s-train", ds->name);
    snprintf(vn, sizeof vn, "%.50s-val", ds->name);
    int rc = rt_dataset_subset(ctx, ds, nt, tidx, tn, train);
    if (!rc) rc = rt_dataset_subset(ctx, ds, nv, perm, vn, val);
    if (rc) {
        rt_dataset_free(*train);
        *train = NULL;
    }
    free(perm);
    free(tidx);
    free(is_val);
    return rc;
}

/* Normalisation groups: channels (each a run of h*w values per sample) or single positions. */
static int64_t norm_groups(const rt_dataset *ds, rt_norm_mode mode) {
    return mode == RT_NORM_FEATURE ? rt_dataset_sample_numel(ds) : ds->c;
}

int rt_dataset_stats(rt_ctx *ctx, const rt_dataset *ds, rt_norm_mode mode, float *mean, float *std) {
    if (mode != RT_NORM_CHANNEL && mode != RT_NORM_FEATURE)
        return rt_fail(ctx, RT_EINVAL, "dataset_stats: bad mode %d", (int)mode);
    if (ds->n < 1) return rt_fail(ctx, RT_EINVAL, "dataset_stats: '%s' is empty", ds->name);
    int64_t groups = norm_groups(ds, mode), per = rt_dataset_sample_numel(ds), hw = ds->h * ds->w;
    /* a group's run: in channel mode hw contiguous values per sample, in feature mode 1 */
    int64_t run = mode == RT_NORM_FEATURE ? 1 : hw;
    double count = (double)ds->n * (double)run;
    /* parallel over groups; each group's sums run in a fixed order, so any thread count gives the same bits */
#pragma omp parallel for schedule(static)
    for (int64_t g = 0; g < groups; g++) {
        double s = 0, v = 0;
        for (int64_t i = 0; i < ds->n; i++) {
            const float *p = ds->x + i * per + g * run;
            for (int64_t k = 0; k < run; k++) s += p[k];
        }
        double m = s / count;
        for (int64_t i = 0; i < ds->n; i++) {
            const float *p = ds->x + i * per + g * run;
            for (int64_t k = 0; k < run; k++) v += (p[k] - m) * (p[k] - m);
        }
        double sd = sqrt(v / count);
        mean[g] = (float)m;
        std[g] = sd > 0 ? (float)sd : 1.0f;
    }
    return RT_OK;
}

int rt_dataset_normalize(rt_ctx *ctx, rt_dataset *ds, rt_norm_mode mode, const float *mean, const float *std) {
    if (mode != RT_NORM_CHANNEL && mode != RT_NORM_FEATURE)
        return rt_fail(ctx, RT_EINVAL, "dataset_normalize: bad mode %d", (int)mode);
    int64_t groups = norm_groups(ds, mode), per = rt_dataset_sample_numel(ds);
    int64_t run = mode == RT_NORM_FEATURE ? 1 : ds->h * ds->w;
    for (int64_t g = 0; g < groups; g++)
        if (!(std[g] > 0) || !isfinite(std[g]) || !isfinite(mean[g]))
            return rt_fail(ctx, RT_EINVAL, "dataset_normalize: '%s' %s %lld has mean %g std %g (std must be > 0)",
                           ds->name, mode == RT_NORM_FEATURE ? "feature" : "channel", (long long)g, mean[g], std[g]);
            /* parallel over samples */
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < ds->n; i++)
        for (int64_t g = 0; g < groups; g++) {
            float *p = ds->x + i * per + g * run, m = mean[g], sd = std[g];
            for (int64_t k = 0; k < run; k++) p[k] = (p[k] - m) / sd;
        }
    return RT_OK;
}
