/* Synthetic classification data: the algorithm of scikit-learn's make_classification (Guyon's
 * Madelon design) on Retort's RNG, and the ALM-KD protocol of clean splits + training label noise. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_util.h"

rt_synth_opts rt_synth_defaults(void) {
    rt_synth_opts o = {
        .n_features = 14,
        .n_informative = 10,
        .n_redundant = 2,
        .n_repeated = 0,
        .n_classes = 20,
        .n_clusters_per_class = 2,
        .class_sep = 1.0,
        .hypercube = 1,
        .shift = 0.0,
        .scale = 1.0,
        .flip_y = 0.0,
        .shuffle = 1,
        .shuffle_features = 1,
        .n_train = 8100,
        .n_val = 900,
        .n_test = 1000,
        .train_flip = 0.1,
    };
    return o;
}

static int check_opts(rt_ctx *ctx, const rt_synth_opts *o, int64_t n) {
    if (n < 1) return rt_fail(ctx, RT_EINVAL, "synth: n_samples %lld < 1", (long long)n);
    if (o->n_features < 1 || o->n_informative < 1 || o->n_redundant < 0 || o->n_repeated < 0 ||
        o->n_informative + o->n_redundant + o->n_repeated > o->n_features)
        return rt_fail(ctx, RT_EINVAL,
                       "synth: need n_informative >= 1 and n_informative %lld + n_redundant %lld + n_repeated %lld <= "
                       "n_features %lld",
                       (long long)o->n_informative, (long long)o->n_redundant, (long long)o->n_repeated,
                       (long long)o->n_features);
    if (o->n_classes < 1 || o->n_clusters_per_class < 1)
        return rt_fail(ctx, RT_EINVAL, "synth: n_classes %d and n_clusters_per_class %d must be >= 1", o->n_classes,
                       o->n_clusters_per_class);
    uint64_t nclu = (uint64_t)o->n_classes * (uint64_t)o->n_clusters_per_class;
    if (o->n_informative < 63 && nclu > (1ull << o->n_informative))
        return rt_fail(
            ctx, RT_EINVAL,
            "synth: n_classes %d * n_clusters_per_class %d = %llu clusters need distinct hypercube vertices, "
            "but 2^n_informative = %llu",
            o->n_classes, o->n_clusters_per_class, (unsigned long long)nclu, 1ull << o->n_informative);
    if (!(o->class_sep > 0) || !isfinite(o->class_sep) || !(o->flip_y >= 0 && o->flip_y <= 1) || !isfinite(o->shift) ||
        !isfinite(o->scale))
        return rt_fail(ctx, RT_EINVAL, "synth: need class_sep > 0 (%g), flip_y in [0,1] (%g), finite shift and scale",
                       o->class_sep, o->flip_y);
    return RT_OK;
}

/* n_clusters distinct vertices of {0,1}^d as rows of bits (n_clusters x d). */
static int hypercube_vertices(rt_rng *r, int64_t n_clusters, int64_t d, unsigned char *bits) {
    if (d < 31 && (1ll << d) <= 2 * n_clusters) { /* dense: a random subset of all 2^d codes */
        int64_t m = 1ll << d, *codes = malloc((size_t)m * sizeof(int64_t));
        if (!codes) return RT_ENOMEM;
        for (int64_t i = 0; i < m; i++) codes[i] = i;
        for (int64_t i = 0; i < n_clusters; i++) {
            int64_t j = i + (int64_t)rt_rng_below(r, (uint64_t)(m - i)), t = codes[i];
            codes[i] = codes[j];
            codes[j] = t;
            for (int64_t b = 0; b < d; b++) bits[i * d + b] = (unsigned char)(codes[i] >> (d - 1 - b) & 1);
        }
        free(codes);
        return RT_OK;
    }
    for (int64_t i = 0; i < n_clusters; i++) { /* sparse: rejection of repeats (fewer than 1/2 of draws) */
        int dup;
        do {
            for (int64_t b = 0; b < d; b++) bits[i * d + b] = (unsigned char)(rt_rng_u64(r) >> 63);
            dup = 0;
            for (int64_t k = 0; k < i && !dup; k++) dup = !memcmp(bits + k * d, bits + i * d, (size_t)d);
        } while (dup);
    }
    return RT_OK;
}

/* Generates into ds (n x F, already allocated). shuffle_rows overrides o->shuffle when set. */
static int generate(rt_ctx *ctx, const rt_synth_opts *o, uint64_t seed, int shuffle_rows, rt_dataset *ds) {
    int64_t n = ds->n, F = o->n_features, ni = o->n_informative, nr = o->n_redundant, nrep = o->n_repeated;
    int64_t K = o->n_classes, nclu = K * o->n_clusters_per_class, nuse = ni + nr;
    double sep = o->class_sep;
    double *X = malloc((size_t)(n * F) * sizeof(double)), *cen = malloc((size_t)(nclu * ni) * sizeof(double)),
           *A = malloc((size_t)(ni * (ni > nr ? ni : nr)) * sizeof(double)), *row = malloc((size_t)F * sizeof(double));
    unsigned char *bits = malloc((size_t)(nclu * ni));
    int64_t *perm = malloc((size_t)(n > F ? n : F) * sizeof(int64_t));
    int32_t *y = malloc((size_t)n * sizeof(int32_t));
    int rc = RT_OK;
    if (!X || !cen || !A || !row || !bits || !perm || !y) {
        rc = rt_fail(ctx, RT_ENOMEM, "synth: out of memory for %lld x %lld", (long long)n, (long long)F);
        goto done;
    }
    rt_rng r;
    rt_rng_seed(&r, rt_data_mix(seed, 0x5e7a));

    /* cluster centroids on distinct hypercube vertices, coordinates +-class_sep */
    if (hypercube_vertices(&r, nclu, ni, bits)) {
        rc = rt_fail(ctx, RT_ENOMEM, "synth: out of memory for the hypercube's vertices");
        goto done;
    }
    for (int64_t i = 0; i < nclu * ni; i++) cen[i] = bits[i] * 2 * sep - sep;
    if (!o->hypercube) { /* a random polytope: scale per cluster, then per dimension */
        for (int64_t k = 0; k < nclu; k++) {
            double u = rt_rng_uniform(&r);
            for (int64_t j = 0; j < ni; j++) cen[k * ni + j] *= u;
        }
        for (int64_t j = 0; j < ni; j++) {
            double u = rt_rng_uniform(&r);
            for (int64_t k = 0; k < nclu; k++) cen[k * ni + j] *= u;
        }
    }

    /* informative features: N(0, I), then per cluster x <- x A_k + centroid_k */
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < ni; j++) X[i * F + j] = rt_rng_normal(&r);
    int64_t start = 0, base = n / nclu, extra = n % nclu; /* sklearn spreads the remainder over the first clusters */
    for (int64_t k = 0; k < nclu; k++) {
        int64_t cnt = base + (k < extra);
        for (int64_t i = 0; i < ni * ni; i++) A[i] = 2 * rt_rng_uniform(&r) - 1;
        for (int64_t i = start; i < start + cnt; i++) {
            for (int64_t j = 0; j < ni; j++) {
                double s = 0;
                for (int64_t m = 0; m < ni; m++) s += X[i * F + m] * A[m * ni + j];
                row[j] = s + cen[k * ni + j];
            }
            memcpy(X + i * F, row, (size_t)ni * sizeof(double));
            y[i] = (int32_t)(k % K);
        }
        start += cnt;
    }
    /* redundant: x_inf B, B uniform [-1,1] (ni x nr) */
    if (nr > 0) {
        for (int64_t i = 0; i < ni * nr; i++) A[i] = 2 * rt_rng_uniform(&r) - 1;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < nr; j++) {
                double s = 0;
                for (int64_t m = 0; m < ni; m++) s += X[i * F + m] * A[m * nr + j];
                X[i * F + ni + j] = s;
            }
    }
    /* repeated: copies of random useful columns (index rounded as sklearn does) */
    for (int64_t q = 0; q < nrep; q++) {
        int64_t src = (int64_t)((double)(nuse - 1) * rt_rng_uniform(&r) + 0.5);
        for (int64_t i = 0; i < n; i++) X[i * F + nuse + q] = X[i * F + src];
    }
    /* the rest: noise */
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = nuse + nrep; j < F; j++) X[i * F + j] = rt_rng_normal(&r);
    /* sklearn's flip_y: each sample with probability flip_y gets a uniformly random class */
    if (o->flip_y > 0)
        for (int64_t i = 0; i < n; i++)
            if (rt_rng_uniform(&r) < o->flip_y) y[i] = (int32_t)rt_rng_below(&r, (uint64_t)K);
    for (int64_t i = 0; i < n * F; i++) X[i] = (X[i] + o->shift) * o->scale;

    /* shuffle samples, then feature columns */
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    if (shuffle_rows) rt_data_shuffle(&r, perm, n);
    for (int64_t i = 0; i < n; i++) {
        ds->y[i] = y[perm[i]];
        for (int64_t j = 0; j < F; j++) ds->x[i * F + j] = (float)X[perm[i] * F + j];
    }
    if (o->shuffle_features) {
        for (int64_t j = 0; j < F; j++) perm[j] = j;
        rt_data_shuffle(&r, perm, F);
        for (int64_t i = 0; i < n; i++) {
            for (int64_t j = 0; j < F; j++) row[j] = ds->x[i * F + perm[j]];
            for (int64_t j = 0; j < F; j++) ds->x[i * F + j] = (float)row[j];
        }
    }
done:
    free(X);
    free(cen);
    free(A);
    free(row);
    free(bits);
    free(perm);
    free(y);
    return rc;
}

int rt_data_make_classification(rt_ctx *ctx, const rt_synth_opts *o, int64_t n_samples, uint64_t seed,
                                rt_dataset **out) {
    *out = NULL;
    int rc = check_opts(ctx, o, n_samples);
    if (rc) return rc;
    rt_dataset *ds = rt_dataset_new(ctx, n_samples, 1, 1, o->n_features, o->n_classes, "synth");
    if (!ds) return rt_status(ctx);
    if ((rc = generate(ctx, o, seed, o->shuffle, ds))) {
        rt_dataset_free(ds);
        return rc;
    }
    *out = ds;
    return RT_OK;
}

int rt_data_synth_splits(rt_ctx *ctx, const rt_synth_opts *o, uint64_t seed, rt_dataset **train, rt_dataset **val,
                         rt_dataset **test) {
    *train = NULL;
    if (val) *val = NULL;
    if (test) *test = NULL;
    if (o->n_train < 1 || o->n_val < 0 || o->n_test < 0)
        return rt_fail(ctx, RT_EINVAL, "synth: splits %lld/%lld/%lld: need n_train >= 1, n_val, n_test >= 0",
                       (long long)o->n_train, (long long)o->n_val, (long long)o->n_test);
    if (!(o->train_flip >= 0 && o->train_flip <= 1) || (o->train_flip > 0 && o->n_classes < 2))
        return rt_fail(ctx, RT_EINVAL, "synth: train_flip %g must be in [0,1] (and needs >= 2 classes)", o->train_flip);
    int64_t n = o->n_train + o->n_val + o->n_test;
    int rc = check_opts(ctx, o, n);
    if (rc) return rc;
    rt_dataset *all = rt_dataset_new(ctx, n, 1, 1, o->n_features, o->n_classes, "synth");
    int64_t *idx = malloc((size_t)n * sizeof(int64_t));
    rt_dataset *tr = NULL, *va = NULL, *te = NULL;
    if (!all || !idx) {
        rc = all ? rt_fail(ctx, RT_ENOMEM, "synth: out of memory") : rt_status(ctx);
        goto done;
    }
    if ((rc = generate(ctx, o, seed, 1, all))) goto done;
    for (int64_t i = 0; i < n; i++) idx[i] = i;
    if ((rc = rt_dataset_subset(ctx, all, o->n_train, idx, "synth-train", &tr))) goto done;
    if (val && (rc = rt_dataset_subset(ctx, all, o->n_val, idx + o->n_train, "synth-val", &va))) goto done;
    if (test && (rc = rt_dataset_subset(ctx, all, o->n_test, idx + o->n_train + o->n_val, "synth-test", &te)))
        goto done;

    /* label noise in the training split only: exactly round(train_flip * n_train) distinct samples, each
     * moved to one of the other classes, from an RNG stream of its own */
    if (!(tr->y_clean = malloc((size_t)tr->n * sizeof(int32_t)))) {
        rc = rt_fail(ctx, RT_ENOMEM, "synth: out of memory");
        goto done;
    }
    memcpy(tr->y_clean, tr->y, (size_t)tr->n * sizeof(int32_t));
    int64_t nflip = llround(o->train_flip * (double)tr->n);
    rt_rng r;
    rt_rng_seed(&r, rt_data_mix(seed, 0xf11b));
    for (int64_t i = 0; i < tr->n; i++) idx[i] = i;
    for (int64_t i = 0; i < nflip; i++) {
        int64_t j = i + (int64_t)rt_rng_below(&r, (uint64_t)(tr->n - i)), t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
        int32_t *yy = &tr->y[idx[i]];
        *yy = (int32_t)((*yy + 1 + (int64_t)rt_rng_below(&r, (uint64_t)o->n_classes - 1)) % o->n_classes);
    }
done:
    free(idx);
    rt_dataset_free(all);
    if (rc) {
        rt_dataset_free(tr);
        rt_dataset_free(va);
        rt_dataset_free(te);
        return rc;
    }
    *train = tr;
    if (val) *val = va;
    if (test) *test = te;
    return RT_OK;
}
