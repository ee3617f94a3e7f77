/* The CIFAR MobileNetV2 of RepDistiller (HobbitLong/RepDistiller, models/mobilenetv2.py; its
 * model_dict's "MobileNetV2" is mobile_half: expansion T = 6, width 0.5): a stride-2 conv-BN-ReLU
 * stem, seven stages of inverted residuals (pw-BN-ReLU, dw3x3-BN-ReLU, pw-BN, + x where the shape
 * allows) with the CIFAR stride schedule 1,1,2,2,1,2,1 (so 32x32 ends at 2x2), a 1x1 conv-BN-ReLU to
 * 1280 channels, global average pooling and a linear classifier, with the same state_dict names
 * (conv1.0.weight, blocks.2.1.conv.3.weight, conv2.1.running_var, classifier.0.bias). Taps follow
 * forward(is_feat=True): "stem" (after conv1), "layer1".."layer4" after blocks 1, 2, 4 and 6, "pool",
 * "logits". The stages end in a linear bottleneck (no ReLU), so their outputs are pre-activations
 * already: RepDistiller returns the same features for preact, and "layerK.pre" is "layerK" here. */
#include <stdio.h>
#include <string.h>

#include "nn/nn_impl.h"

/* ---- InvertedResidual: conv = Sequential(pw, BN, ReLU, dw, BN, ReLU, pw-linear, BN) ---- */

typedef struct {
    rt_module m;
    rt_module *conv;
    int residual; /* stride 1 and inp == oup */
} inverted_residual;

static rt_tensor *ir_forward(rt_module *m, rt_ctx *ctx, rt_tensor *x, rt_taps *taps) {
    inverted_residual *b = (inverted_residual *)m;
    rt_tensor *out = rt_module_forward(b->conv, ctx, x, NULL);
    return b->residual ? rt_add(ctx, x, out) : out;
}

static rt_module *ir_new(rt_ctx *ctx, rt_paramset *ps, const char *prefix, int64_t inp, int64_t oup, int stride,
                         int expand) {
    inverted_residual *b = rt_nn_module_alloc(ctx, sizeof *b, "InvertedResidual", prefix, ir_forward);
    if (!b) return NULL;
    b->residual = stride == 1 && inp == oup;
    char seq[128], n[8][128];
    rt_nn_join(ctx, seq, prefix, "conv");
    for (int i = 0; i < 8; i++) rt_nn_join(ctx, n[i], seq, (char[2]){(char)('0' + i), 0});
    int64_t hidden = inp * expand;
    rt_module *mods[8]; /* one statement each: the declaration order is the state_dict order */
    mods[0] = rt_nn_conv2d(ctx, ps, n[0], inp, hidden, 1, 1, 0, 1, 0);
    mods[1] = rt_nn_batchnorm2d(ctx, ps, n[1], hidden);
    mods[2] = rt_nn_relu();
    mods[3] = rt_nn_conv2d(ctx, ps, n[3], hidden, hidden, 3, stride, 1, (int)hidden, 0);
    mods[4] = rt_nn_batchnorm2d(ctx, ps, n[4], hidden);
    mods[5] = rt_nn_relu();
    mods[6] = rt_nn_conv2d(ctx, ps, n[6], hidden, oup, 1, 1, 0, 1, 0);
    mods[7] = rt_nn_batchnorm2d(ctx, ps, n[7], oup);
    rt_module *kids[1];
    kids[0] = b->conv = rt_nn_sequential(ctx, seq, 8, mods);
    return rt_nn_adopt(ctx, &b->m, 1, kids);
}

/* conv-BN-ReLU as a Sequential named prefix (prefix.0 conv without bias, prefix.1 BN) */
static rt_module *conv_bn_relu(rt_ctx *ctx, rt_paramset *ps, const char *prefix, int64_t in, int64_t out, int k,
                               int stride) {
    char c[128], bn[128];
    rt_nn_join(ctx, c, prefix, "0");
    rt_nn_join(ctx, bn, prefix, "1");
    rt_module *mods[3];
    mods[0] = rt_nn_conv2d(ctx, ps, c, in, out, k, stride, k / 2, 1, 0);
    mods[1] = rt_nn_batchnorm2d(ctx, ps, bn, out);
    mods[2] = rt_nn_relu();
    return rt_nn_sequential(ctx, prefix, 3, mods);
}

/* ---- the network ---- */

typedef struct {
    rt_module m;
    rt_module *conv1, *blocks[7], *conv2, *classifier;
    int64_t in_channels;
} mobilenetv2;

/* the stages after which RepDistiller takes a feature, and its names */
static const int feat_after[4] = {1, 2, 4, 6};
static const char *const feat_name[4] = {"layer1", "layer2", "layer3", "layer4"};
static const char *const feat_pre[4] = {"layer1.pre", "layer2.pre", "layer3.pre", "layer4.pre"};

static rt_tensor *mbv2_forward(rt_module *m, rt_ctx *ctx, rt_tensor *x, rt_taps *taps) {
    mobilenetv2 *v = (mobilenetv2 *)m;
    if (x->ndim != 4 || x->shape[1] != v->in_channels) {
        char s[96];
        rt_fail(ctx, RT_ESHAPE, "mobilenetv2: input %s must be (B,%lld,H,W)", rt_shape_str(x, s),
                (long long)v->in_channels);
        return NULL;
    }
    x = rt_module_forward(v->conv1, ctx, x, NULL);
    rt_taps_put(taps, "stem", x);
    for (int s = 0, f = 0; s < 7 && x; s++) {
        x = rt_module_forward(v->blocks[s], ctx, x, NULL);
        if (f < 4 && s == feat_after[f]) {
            rt_taps_put(taps, feat_pre[f], x);
            rt_taps_put(taps, feat_name[f++], x);
        }
    }
    x = rt_module_forward(v->conv2, ctx, x, NULL);
    /* RepDistiller pools with AvgPool2d(input_size // 16, ceil_mode=True) and asserts input_size % 32
     * == 0: the map is then exactly that size, so adaptive pooling to 1x1 is the same, and it also
     * serves 28x28 (Fashion-MNIST, a 2x2 map). */
    x = rt_flatten(ctx, rt_adaptive_avgpool2d(ctx, x, 1, 1), 1);
    rt_taps_put(taps, "pool", x);
    x = rt_module_forward(v->classifier, ctx, x, NULL);
    rt_taps_put(taps, "logits", x);
    return x;
}

rt_module *rt_nn_mobilenetv2(rt_ctx *ctx, rt_paramset *ps, int T, double width, int64_t last_channel,
                             const rt_model_opts *o, rt_model *model) {
    /* t, c, n, s: expansion, width, blocks, first stride (the CIFAR schedule) */
    const int setting[7][4] = {{1, 16, 1, 1}, {T, 24, 2, 1},  {T, 32, 3, 2}, {T, 64, 4, 2},
                               {T, 96, 3, 1}, {T, 160, 3, 2}, {T, 320, 1, 1}};
    if (T < 1 || !(width > 0) || (int64_t)(16 * width) < 1 || (int64_t)(32 * width) < 1 || last_channel < 1) {
        rt_fail(ctx, RT_EINVAL, "mobilenetv2: bad configuration T %d, width %g, last_channel %lld", T, width,
                (long long)last_channel);
        return NULL;
    }
    mobilenetv2 *v = rt_nn_module_alloc(ctx, sizeof *v, "MobileNetV2", "", mbv2_forward);
    if (!v) return NULL;
    v->in_channels = o->in_channels;
    rt_module *kids[10] = {NULL};
    int64_t in = (int64_t)(32 * width); /* int(32 * width_mult), as Python truncates */
    kids[0] = v->conv1 = conv_bn_relu(ctx, ps, "conv1", o->in_channels, in, 3, 2);
    for (int s = 0; s < 7; s++) {
        int64_t out = (int64_t)(setting[s][1] * width);
        char seq[32];
        snprintf(seq, sizeof seq, "blocks.%d", s);
        rt_module *blocks[4] = {NULL};
        for (int i = 0; i < setting[s][2]; i++) {
            char name[128];
            snprintf(name, sizeof name, "%s.%d", seq, i);
            blocks[i] = ir_new(ctx, ps, name, in, out, i == 0 ? setting[s][3] : 1, setting[s][0]);
            in = out;
        }
        kids[1 + s] = v->blocks[s] = rt_nn_sequential(ctx, seq, setting[s][2], blocks);
    }
    kids[8] = v->conv2 = conv_bn_relu(ctx, ps, "conv2", in, last_channel, 1, 1);
    rt_module *fc[1];
    fc[0] = rt_nn_linear(ctx, ps, "classifier.0", last_channel, o->num_classes, 1);
    kids[9] = v->classifier = rt_nn_sequential(ctx, "classifier", 1, fc);
    static const char *const taps[] = {"stem",   "layer1.pre", "layer1", "layer2.pre", "layer2", "layer3.pre",
                                       "layer3", "layer4.pre", "layer4", "pool",       "logits"};
    model->ntaps = (int)(sizeof taps / sizeof taps[0]);
    for (int i = 0; i < model->ntaps; i++) model->tap_names[i] = taps[i];
    return rt_nn_adopt(ctx, &v->m, 10, kids);
}

/* ---- the registered arch ---- */

static const char *const mbv2_archs[] = {"MobileNetV2", NULL};

static rt_module *mbv2_build(rt_ctx *ctx, rt_paramset *ps, const char *arch, const rt_model_opts *o, rt_model *m) {
    if (strcmp(arch, "MobileNetV2") != 0) {
        rt_fail(ctx, RT_EINVAL, "mobilenetv2: unknown arch '%s'", arch);
        return NULL;
    }
    /* mobile_half; last_channel is 1280 for every width <= 1, as in RepDistiller */
    return rt_nn_mobilenetv2(ctx, ps, 6, 0.5, 1280, o, m);
}

/* As MobileNetV2._initialize_weights: convs N(0, 2 / (k*k*out)), BN 1/0, the classifier's weight
 * N(0, 0.01) and its bias zero. */
static void mbv2_init(rt_model *m, rt_rng *rng) {
    rt_nn_init_tree(m->root, rng, 1);
    rt_param *w = rt_params_find(&m->params, "classifier.0.weight");
    rt_param *b = rt_params_find(&m->params, "classifier.0.bias");
    for (size_t k = 0; w && k < w->numel; k++) w->t.data[k] = 0.01f * rt_rng_normal(rng);
    if (b) memset(b->t.data, 0, b->numel * sizeof(float));
}

const rt_nn_family rt_nn_mobilenetv2_family = {mbv2_archs, mbv2_build, mbv2_init};
