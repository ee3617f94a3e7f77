/* The CIFAR VGGs of RepDistiller (HobbitLong/RepDistiller, models/vgg.py, the batch-norm variants its
 * model_dict registers as vgg8/vgg11/vgg13): five blocks of conv3x3(bias)-BN-ReLU without the last
 * ReLU, 2x2 max-pools after blocks 0-2 (and 3 for 64x64 inputs), global average pooling and a linear
 * classifier, with the same state_dict names (block0.0.weight, block0.1.running_mean, ...,
 * classifier.weight). Taps follow forward(is_feat=True, preact=...): "stem" = relu(block0(x)),
 * "layerK" = relu(blockK(.)) and "layerK.pre" = blockK(.) before that ReLU (K = 1..4), "pool",
 * "logits". */
#include <stdio.h>
#include <string.h>

#include "nn/nn_impl.h"

typedef struct {
    rt_module m;
    rt_module *block[5], *classifier;
    int64_t in_channels;
} vgg;

static const char *const block_out[5] = {"stem", "layer1", "layer2", "layer3", "layer4"};
static const char *const block_pre[5] = {NULL, "layer1.pre", "layer2.pre", "layer3.pre", "layer4.pre"};

static rt_tensor *vgg_forward(rt_module *m, rt_ctx *ctx, rt_tensor *x, rt_taps *taps) {
    vgg *v = (vgg *)m;
    if (x->ndim != 4 || x->shape[1] != v->in_channels) {
        char s[96];
        rt_fail(ctx, RT_ESHAPE, "vgg: input %s must be (B,%lld,H,W)", rt_shape_str(x, s), (long long)v->in_channels);
        return NULL;
    }
    int64_t h = x->shape[2];
    for (int b = 0; b < 5 && x; b++) {
        rt_tensor *pre = rt_module_forward(v->block[b], ctx, x, NULL);
        if (b > 0) rt_taps_put(taps, block_pre[b], pre);
        x = rt_relu(ctx, pre);
        rt_taps_put(taps, block_out[b], x);
        /* pool0..pool2 always; pool3 only for 64x64 inputs, as RepDistiller's forward decides */
        if (b < 3 || (b == 3 && h == 64)) x = rt_maxpool2d(ctx, x, 2, 2, 2, 2, 0, 0);
    }
    x = rt_flatten(ctx, rt_adaptive_avgpool2d(ctx, x, 1, 1), 1); /* pool4: adaptive in RepDistiller too */
    rt_taps_put(taps, "pool", x);
    x = rt_module_forward(v->classifier, ctx, x, NULL);
    rt_taps_put(taps, "logits", x);
    return x;
}

/* blockN: Sequential(conv, BN, ReLU, conv, BN, ...) without the last ReLU: children N.0, N.1, ... */
static rt_module *make_block(rt_ctx *ctx, rt_paramset *ps, int b, const int64_t *widths, int64_t in) {
    char prefix[16];
    snprintf(prefix, sizeof prefix, "block%d", b);
    rt_module *mods[12] = {NULL};
    int n = 0;
    for (int i = 0; i < 4 && widths[i] > 0; i++) {
        char name[128];
        if (i > 0) mods[n++] = rt_nn_relu();
        snprintf(name, sizeof name, "%s.%d", prefix, n);
        mods[n++] = rt_nn_conv2d(ctx, ps, name, in, widths[i], 3, 1, 1, 1, 1);
        snprintf(name, sizeof name, "%s.%d", prefix, n);
        mods[n++] = rt_nn_batchnorm2d(ctx, ps, name, widths[i]);
        in = widths[i];
    }
    if (n == 0 && !rt_status(ctx)) rt_fail(ctx, RT_EINVAL, "vgg: %s has no convolutions", prefix);
    return rt_nn_sequential(ctx, prefix, n, mods);
}

static int64_t last_width(const int64_t *widths) {
    int64_t w = 0;
    for (int i = 0; i < 4 && widths[i] > 0; i++) w = widths[i];
    return w;
}

rt_module *rt_nn_vgg(rt_ctx *ctx, rt_paramset *ps, const int64_t cfg[5][4], const rt_model_opts *o, rt_model *model) {
    for (int b = 0; b < 5; b++)
        if (last_width(cfg[b]) <= 0) {
            rt_fail(ctx, RT_EINVAL, "vgg: block%d has no convolutions", b);
            return NULL;
        }
    vgg *v = rt_nn_module_alloc(ctx, sizeof *v, "VGG", "", vgg_forward);
    if (!v) return NULL;
    v->in_channels = o->in_channels;
    rt_module *kids[6] = {NULL};
    int64_t in = o->in_channels;
    for (int b = 0; b < 5; b++) {
        kids[b] = v->block[b] = make_block(ctx, ps, b, cfg[b], in);
        in = last_width(cfg[b]);
    }
    /* RepDistiller's Linear(512, num_classes): 512 is the last block's width in every config */
    kids[5] = v->classifier = rt_nn_linear(ctx, ps, "classifier", in, o->num_classes, 1);
    static const char *const taps[] = {"stem",   "layer1.pre", "layer1", "layer2.pre", "layer2", "layer3.pre",
                                       "layer3", "layer4.pre", "layer4", "pool",       "logits"};
    model->ntaps = (int)(sizeof taps / sizeof taps[0]);
    for (int i = 0; i < model->ntaps; i++) model->tap_names[i] = taps[i];
    return rt_nn_adopt(ctx, &v->m, 6, kids);
}

/* ---- the registered archs (RepDistiller's cfg 'S', 'A', 'B') ---- */

static const char *const vgg_archs[] = {"vgg8", "vgg11", "vgg13", NULL};
static const int64_t cfg_s[5][4] = {{64}, {128}, {256}, {512}, {512}};
static const int64_t cfg_a[5][4] = {{64}, {128}, {256, 256}, {512, 512}, {512, 512}};
static const int64_t cfg_b[5][4] = {{64, 64}, {128, 128}, {256, 256}, {512, 512}, {512, 512}};

static rt_module *vgg_build(rt_ctx *ctx, rt_paramset *ps, const char *arch, const rt_model_opts *o, rt_model *m) {
    const int64_t(*cfg)[4] = !strcmp(arch, "vgg8")    ? cfg_s
                             : !strcmp(arch, "vgg11") ? cfg_a
                             : !strcmp(arch, "vgg13") ? cfg_b
                                                      : NULL;
    if (!cfg) {
        rt_fail(ctx, RT_EINVAL, "vgg: unknown arch '%s'", arch);
        return NULL;
    }
    return rt_nn_vgg(ctx, ps, cfg, o, m);
}

/* As VGG._initialize_weights: convs N(0, 2 / (k*k*out)) with zero bias, BN 1/0, the classifier's
 * weight N(0, 0.01) and its bias zero. */
static void vgg_init(rt_model *m, rt_rng *rng) {
    rt_nn_init_tree(m->root, rng, 1);
    for (int i = 0; i < m->params.count; i++) {
        rt_param *p = m->params.items[i];
        size_t len = strlen(p->name);
        if (len >= 5 && !strcmp(p->name + len - 5, ".bias")) memset(p->t.data, 0, p->numel * sizeof(float));
    }
    rt_param *w = rt_params_find(&m->params, "classifier.weight");
    for (size_t k = 0; w && k < w->numel; k++) w->t.data[k] = 0.01f * rt_rng_normal(rng);
}

const rt_nn_family rt_nn_vgg_family = {vgg_archs, vgg_build, vgg_init};
