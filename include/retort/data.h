/* Data: in-memory data sets (IDX = MNIST/Fashion-MNIST, CIFAR-10/100, CSV, a make_classification
 * style generator), seeded splits, normalisation, and the loader that shuffles, augments and batches
 * on a background thread while the trainer computes. Readers return a status and on error leave
 * *out NULL with the context's message naming the path and what is wrong. */
#ifndef RETORT_DATA_H
#define RETORT_DATA_H
#include "retort/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Where Debian's dataset-fashion-mnist package puts the data (the default for IDX reading). */
#define RT_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

/* A data set in memory: n samples of shape (c,h,w), stored contiguously as (n,c,h,w); tabular
 * data has c = h = 1 and w = the number of features. Owns its buffers (rt_dataset_free). */
typedef struct rt_dataset {
    int64_t n, c, h, w;
    int num_classes;
    float *x;         /* n*c*h*w values */
    int32_t *y;       /* n labels in [0, num_classes) */
    int32_t *y_clean; /* labels before injected label noise (synthetic training split); else NULL */
    char name[64];
} rt_dataset;

/* A data set with zeroed x and y (y_clean NULL). NULL on error (message set). */
rt_dataset *rt_dataset_new(rt_ctx *ctx, int64_t n, int64_t c, int64_t h, int64_t w, int num_classes, const char *name);
void rt_dataset_free(rt_dataset *ds);
static inline int64_t rt_dataset_sample_numel(const rt_dataset *ds) { return ds->c * ds->h * ds->w; }

/* ---- readers ---- */

/* IDX files (the MNIST format): images magic 0x00000803 (ubyte, n x rows x cols), labels magic
 * 0x00000801 (ubyte, n). Each file may be gzipped or not (read through zlib either way). Pixels are
 * scaled to [0,1]; the result is (n,1,rows,cols). Labels must be < num_classes. */
int rt_data_load_idx(rt_ctx *ctx, const char *images_path, const char *labels_path, int num_classes, rt_dataset **out);
/* dir/<split>-images-idx3-ubyte[.gz] and dir/<split>-labels-idx1-ubyte[.gz] (the plain file is
 * preferred when both exist), split "train" or "t10k", 10 classes. dir NULL = RT_FASHION_MNIST_DIR. */
int rt_data_load_idx_dir(rt_ctx *ctx, const char *dir, const char *split, rt_dataset **out);

/* CIFAR binary batches, (n,3,32,32) in [0,1]. CIFAR-10 (num_classes 10): records of 1 label byte +
 * 3072 pixel bytes, train = dir/data_batch_1.bin .. data_batch_5.bin, test = dir/test_batch.bin.
 * CIFAR-100 (num_classes 100): records of a coarse and a fine label byte + 3072 pixel bytes,
 * dir/train.bin or dir/test.bin; the fine label is used. */
int rt_data_load_cifar(rt_ctx *ctx, const char *dir, int num_classes, int train, rt_dataset **out);

/* CSV of numeric columns, one of them the integer class label. No quoting; blank lines are skipped;
 * "\r\n" line ends are accepted. Errors name the line (1-based, counting every physical line) and
 * the column (1-based, with its header name if there is one). */
typedef struct rt_csv_opts {
    const char *label_name; /* label column by header name (needs a header); NULL = by label_index */
    int label_index;        /* 0-based; negative counts from the end: -1 = last column (default) */
    int header;             /* 1 = first line is a header, 0 = none, -1 = auto (default): the first line
                               is a header if any of its fields is not a number */
    char delim;             /* field separator, default ',' */
    int num_classes;        /* 0 = (largest label) + 1 (default) */
} rt_csv_opts;
rt_csv_opts rt_csv_defaults(void);
/* opts NULL = rt_csv_defaults(). The result is (n,1,1,F), F = columns - 1. */
int rt_data_load_csv(rt_ctx *ctx, const char *path, const rt_csv_opts *opts, rt_dataset **out);

/* ---- synthetic data (the algorithm of scikit-learn's make_classification) ----
 * Clusters of points drawn from N(0, I) in n_informative dimensions, each multiplied by its own
 * random matrix A (entries uniform in [-1,1]: a random covariance) and moved to a distinct vertex of
 * the hypercube with sides 2*class_sep; cluster k belongs to class k % n_classes and the samples are
 * spread evenly over clusters. Then n_redundant features = random linear combinations (uniform
 * [-1,1] weights) of the informative ones, n_repeated copies of random informative/redundant columns,
 * the rest N(0,1) noise; flip_y: that fraction of samples (each with probability flip_y) gets a
 * uniformly random class (possibly its own, as in sklearn); x = (x + shift) * scale; samples and
 * feature columns shuffled. Same algorithm as sklearn, not the same numbers (our RNG is rt_rng). */
typedef struct rt_synth_opts {
    int64_t n_features, n_informative, n_redundant, n_repeated;
    int n_classes, n_clusters_per_class;
    double class_sep;
    int hypercube; /* 0 = vertices scaled by random factors (sklearn's hypercube=False) */
    double shift, scale;
    double flip_y;        /* sklearn's label noise over the whole generated set */
    int shuffle;          /* shuffle the samples */
    int shuffle_features; /* permute the feature columns (with 0: informative, redundant, repeated, noise) */
    /* rt_data_synth_splits only */
    int64_t n_train, n_val, n_test;
    double train_flip; /* fraction of the TRAINING split whose label is changed to another class */
} rt_synth_opts;

/* The ALM-KD study's setting: 14 features, 20 classes, splits 8100/900/1000, 10% of the training
 * labels flipped, nothing else noisy. The paper does not give the remaining make_classification
 * arguments; Retort uses n_informative 10, n_redundant 2, n_repeated 0 (so 2 noise features),
 * 2 clusters per class, class_sep 1, hypercube, shift 0, scale 1, flip_y 0, both shuffles on. */
rt_synth_opts rt_synth_defaults(void);

/* n_samples samples of (n,1,1,n_features), seeded. Name "synth". */
int rt_data_make_classification(rt_ctx *ctx, const rt_synth_opts *o, int64_t n_samples, uint64_t seed,
                                rt_dataset **out);

/* The ALM-KD protocol: one clean set of n_train + n_val + n_test samples (o->flip_y applies to all of
 * it, default 0; samples are always shuffled), split in that order into train, val and test; then
 * exactly round(train_flip * n_train) training samples, chosen uniformly without replacement, get a
 * label drawn uniformly from the OTHER n_classes - 1 classes (so every flip is a real label error).
 * train->y_clean keeps the labels before flipping (so noisy samples are y != y_clean). The flips use
 * their own RNG stream: the features and clean labels do not depend on train_flip. val, test may be
 * NULL when not wanted. */
int rt_data_synth_splits(rt_ctx *ctx, const rt_synth_opts *o, uint64_t seed, rt_dataset **train, rt_dataset **val,
                         rt_dataset **test);

/* ---- splits and normalisation ---- */

/* New data set of the samples idx[0..count) in that order (y_clean copied when present). */
int rt_dataset_subset(rt_ctx *ctx, const rt_dataset *ds, int64_t count, const int64_t *idx, const char *name,
                      rt_dataset **out);
/* Seeded random split: n_val samples, chosen uniformly without replacement, go to *val, the rest to
 * *train; both keep the samples' original relative order. Names "<name>-train", "<name>-val". */
int rt_dataset_split(rt_ctx *ctx, const rt_dataset *ds, int64_t n_val, uint64_t seed, rt_dataset **train,
                     rt_dataset **val);

typedef enum {
    RT_NORM_CHANNEL = 0, /* one mean/std per channel (images): arrays of c values */
    RT_NORM_FEATURE = 1, /* one per position in a sample (tabular): arrays of c*h*w values */
} rt_norm_mode;
/* Mean and population standard deviation over the data set (computed in double, fixed order). A
 * group whose variance is 0 gets std 1 (as sklearn's StandardScaler), so normalising is safe. */
int rt_dataset_stats(rt_ctx *ctx, const rt_dataset *ds, rt_norm_mode mode, float *mean, float *std);
/* In place: x = (x - mean) / std per group. std must be > 0 and finite. */
int rt_dataset_normalize(rt_ctx *ctx, rt_dataset *ds, rt_norm_mode mode, const float *mean, const float *std);

/* ---- the loader ---- */

/* Augmentation, applied per sample in this order (as torchvision's RandomCrop(padding=pad),
 * RandomHorizontalFlip, Normalize): random crop, i.e. pad every side with pad zeros and take an
 * (h,w) window at an offset uniform in [0, 2*pad] on each axis; horizontal flip with probability
 * 1/2; then (x - mean[ch]) / std[ch]. Zero padding is in the data set's stored values. */
typedef struct rt_augment {
    int64_t pad;       /* 0 = no crop */
    int hflip;         /* 1 = random horizontal flip */
    const float *mean; /* c values, or NULL = no normalisation (copied by rt_loader_new) */
    const float *std;
} rt_augment;

/* One sample: out = normalise(flip(crop(in))) with the window at (oy, ox) of the padded image
 * (oy, ox in [0, 2*pad]; out(i,j) = in(i+oy-pad, j+ox-pad), or 0 outside) and flip = mirror columns.
 * mean/std NULL = none. in (c,h,w), out (c,h,w); in and out must not overlap. */
void rt_augment_sample(const float *in, float *out, int64_t c, int64_t h, int64_t w, int64_t pad, int64_t oy,
                       int64_t ox, int flip, const float *mean, const float *std);

/* Batches of a data set. Epoch e's order is a permutation drawn from (seed, e) (identity without
 * shuffle) and batch k's augmentation from (seed, e, k): the batches depend only on the seed, never
 * on timing or on whether prefetching is on. With prefetching (the default) a background thread
 * prepares the next batch into a second buffer while the caller uses the current one. The data set
 * is read, not copied: it must outlive the loader and not change while it is in use. ctx is used
 * for errors in rt_loader_new only. */
typedef struct rt_loader rt_loader;
rt_loader *rt_loader_new(rt_ctx *ctx, const rt_dataset *ds, int64_t batch, int shuffle, int drop_last, uint64_t seed,
                         const rt_augment *aug);
/* Next batch: x (b,c,h,w), y (b), owned by the loader and valid until the next call on it. Returns
 * 1 with a batch, 0 at the end of an epoch (the loader then moves to the next epoch: the following
 * call returns its first batch), or a negative status. */
int rt_loader_next(rt_loader *l, float **x, int32_t **y, int64_t *b);
/* The data set indices of the batch last returned (b values, valid as x and y are): per-sample state
 * such as ALM-KD's lambdas is looked up by these. */
const int64_t *rt_loader_indices(const rt_loader *l);
/* Start epoch e from its first batch (drops a partly consumed epoch and stale prefetched work). */
void rt_loader_set_epoch(rt_loader *l, int64_t epoch);
int64_t rt_loader_epoch(const rt_loader *l);
int64_t rt_loader_num_batches(const rt_loader *l);
/* 1 = prepare batches on a background thread (default), 0 = in the calling thread. Same batches. */
void rt_loader_set_prefetch(rt_loader *l, int on);
/* Stops and joins the background thread (also mid-epoch) and frees the buffers. */
void rt_loader_free(rt_loader *l);

#ifdef __cplusplus
}
#endif
#endif
