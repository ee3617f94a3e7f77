/* Layers and models: parameters in one contiguous buffer with PyTorch state_dict names, modules
 * with hierarchical names and train/eval mode, feature taps, and the CIFAR model zoo.
 *
 * Parameters (weights) live in one buffer, their gradients in another, BN running statistics in a
 * third ("buffers"), each parameter a named view. rt_params_bind re-points every view at another
 * pair of buffers of the same layout: that is how a look-ahead theta' = theta - xi*g or a perturbed
 * theta +- R*v is evaluated without touching theta. */
#ifndef RETORT_NN_H
#define RETORT_NN_H
#include "retort/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- parameters ---- */

typedef enum { RT_PARAM = 0, RT_BUFFER = 1 } rt_param_kind;

typedef struct rt_param {
    char name[128];     /* state_dict name: "layer1.0.conv1.weight", "bn1.running_mean" */
    rt_param_kind kind;
    rt_tensor t;        /* the view; t.grad points into the gradient buffer (parameters only) */
    size_t offset;      /* in floats, into the parameter or buffer array */
    size_t numel;
    int no_decay;       /* biases and BN affine parameters: optimisers may skip weight decay */
    int is_int;         /* stored as int64 in checkpoints (num_batches_tracked) */
} rt_param;

typedef struct rt_paramset {
    rt_param **items; /* stable addresses: modules keep &items[i]->t */
    int count, cap;
    float *data, *grad; /* n floats each, owned */
    size_t n;
    float *buffers;     /* nbuf floats, owned */
    size_t nbuf;
    float *bound_data, *bound_grad, *bound_buffers; /* what the views point into now */
    int finalized;
} rt_paramset;

void rt_params_init(rt_paramset *ps);
/* Declare a parameter or buffer; its data exists after rt_params_finalize. Names must be unique. */
rt_tensor *rt_params_add(rt_ctx *ctx, rt_paramset *ps, const char *name, rt_param_kind kind, int ndim,
                         const int64_t *shape);
int rt_params_finalize(rt_ctx *ctx, rt_paramset *ps); /* allocates, zero-fills, points the views */
void rt_params_free(rt_paramset *ps);
rt_param *rt_params_find(const rt_paramset *ps, const char *name);
void rt_params_zero_grad(rt_paramset *ps);
/* Re-point every parameter view at data/grad (n floats each); NULL, NULL = the set's own buffers. */
void rt_params_bind(rt_paramset *ps, float *data, float *grad);
/* Re-point every buffer view (BN running statistics, ...) at buffers (nbuf floats); NULL = the set's
 * own. A look-ahead forward in training mode updates running statistics: bind a copy first so the
 * real ones stay as they were (DistPro, ALM-KD and MMKD look-aheads). */
void rt_params_bind_buffers(rt_paramset *ps, float *buffers);
/* dst = theta - xi * g over all n parameters (theta = the set's own data). */
void rt_params_lookahead(const rt_paramset *ps, float *dst, float xi, const float *g);

/* ---- feature taps: named intermediate outputs a loss can consume ---- */

#define RT_MAX_TAPS 64
typedef struct rt_taps {
    int n;
    const char *name[RT_MAX_TAPS];
    rt_tensor *t[RT_MAX_TAPS];
    /* Optional, set by the caller: the names of the taps it will read (nwant of them; want NULL:
     * all). A model may then skip work that only an unwanted tap needs, such as a stage's
     * pre-activation, which costs the fused BN + add + ReLU at the stage's end. */
    const char *const *want;
    int nwant;
} rt_taps;
void rt_taps_put(rt_taps *taps, const char *name, rt_tensor *t); /* no-op when taps or t is NULL */
rt_tensor *rt_taps_get(const rt_taps *taps, const char *name);
int rt_taps_wants(const rt_taps *taps, const char *name); /* taps given, and name wanted (or want NULL) */

/* ---- modules ---- */

typedef struct rt_module rt_module;
struct rt_module {
    const char *type;  /* "Conv2d", "BatchNorm2d", "BasicBlock", ... */
    char name[128];    /* hierarchical prefix, "" for the root */
    rt_tensor *(*forward)(rt_module *m, rt_ctx *ctx, rt_tensor *x, rt_taps *taps);
    void (*free)(rt_module *m); /* frees what the module allocated, not its children */
    int training;
    rt_module **children;
    int nchildren;
};
rt_tensor *rt_module_forward(rt_module *m, rt_ctx *ctx, rt_tensor *x, rt_taps *taps); /* pushes the scope */
void rt_module_train(rt_module *m, int training); /* recursive */
void rt_module_free(rt_module *m);                /* recursive */
/* Initialises the parameters and buffers under m (after rt_params_finalize) as PyTorch's defaults:
 * Linear and Conv2d weight and bias uniform(+-1/sqrt(fan_in)), BatchNorm weight 1, bias 0, running
 * mean 0, var 1, num_batches_tracked 0. Recursive; modules of other types are left as they are. */
void rt_module_init(rt_module *m, rt_rng *rng);

/* Layers, declared into ps under prefix (e.g. "layer1.0.conv1"). */
rt_module *rt_nn_linear(rt_ctx *ctx, rt_paramset *ps, const char *prefix, int64_t in, int64_t out, int bias);
rt_module *rt_nn_conv2d(rt_ctx *ctx, rt_paramset *ps, const char *prefix, int64_t in, int64_t out, int k,
                        int stride, int pad, int groups, int bias);
rt_module *rt_nn_batchnorm2d(rt_ctx *ctx, rt_paramset *ps, const char *prefix, int64_t channels);
rt_module *rt_nn_relu(void);
rt_module *rt_nn_sequential(rt_ctx *ctx, const char *prefix, int n, rt_module **mods);

/* ---- models ---- */

typedef struct rt_model_opts {
    int in_channels;  /* default 3 */
    int in_size;      /* default 32 (Fashion-MNIST: 28) */
    int num_classes;  /* default 10 */
    int hidden;       /* MLP hidden width, default 256 */
    int in_features;  /* MLP input features */
} rt_model_opts;

typedef struct rt_model {
    char arch[64];
    rt_model_opts opts;
    rt_paramset params;
    rt_module *root;
    int ntaps;
    const char *tap_names[RT_MAX_TAPS]; /* the taps forward fills, in order */
} rt_model;

/* Architectures: see rt_model_archs(). Weights are initialised as PyTorch's defaults would be
 * (kaiming_normal for convs as RepDistiller does, BN gamma 1, beta 0) from seed. */
rt_model *rt_model_new(rt_ctx *ctx, const char *arch, const rt_model_opts *opts, uint64_t seed);
const char *const *rt_model_archs(void); /* NULL-terminated list */
rt_tensor *rt_model_forward(rt_ctx *ctx, rt_model *m, rt_tensor *x, rt_taps *taps); /* logits */
void rt_model_train(rt_model *m, int training);
void rt_model_free(rt_model *m);

/* ---- a forward that keeps only what the caller needs (a teacher's, in a distillation step) ---- */

/* Storage for rt_model_forward_keep's results that outlives rt_step_reset. Zero-initialise it, set
 * chunk if wanted, and reuse it across steps (it grows as needed); rt_keep_buf_free releases it. */
typedef struct rt_keep_buf {
    int64_t chunk;                /* samples per forward pass; 0: the whole batch at once */
    float *data;                  /* owned, 64-byte aligned */
    size_t cap;                   /* floats */
    rt_tensor t[RT_MAX_TAPS + 1]; /* the kept tensors: taps in keep's order, then the logits */
} rt_keep_buf;
void rt_keep_buf_free(rt_keep_buf *buf);

/* Runs m on x with grad mode off under an arena mark and keeps only the logits (returned) and the
 * taps named in keep[0..nkeep) (put in out under the model's names; out may be NULL when nkeep is
 * 0): they are copied into buf, then the arena goes back to the mark. So the model's other
 * activations are gone when it returns, and a step's arena peak is the larger of this forward's
 * and the rest of the step's instead of their sum. With buf->chunk = k in (0, batch), the batch
 * goes through in slices of k samples, which bounds the forward's own peak to about k/batch of the
 * whole batch's; only in eval mode (in training mode BN's batch statistics would change), and
 * every kept tap must have the batch as its first dimension. The results carry no gradient and
 * stay valid until the next call with buf or rt_keep_buf_free. NULL on error (a tap the model
 * does not have, a model in training mode with chunk set, memory). */
rt_tensor *rt_model_forward_keep(rt_ctx *ctx, rt_model *m, rt_tensor *x, const char *const *keep, int nkeep,
                                 rt_taps *out, rt_keep_buf *buf);

#ifdef __cplusplus
}
#endif
#endif
