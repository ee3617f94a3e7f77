/* The CIFAR ResNets of RepDistiller (HobbitLong/RepDistiller, models/resnet.py): a 3x3 stem, three
 * stages of BasicBlocks (the 2nd and 3rd halve the resolution), global average pooling and a linear
 * classifier, with the same state_dict names. Taps follow its forward(is_feat=True, preact=...):
 * the stem, each stage's output and its last block's pre-activation, the pooled embedding, logits. */
#include <stdio.h>
#include <string.h>

#include "nn/nn_impl.h"

/* ---- BasicBlock: conv3x3-bn-relu-conv3x3-bn, + shortcut (identity or conv1x1-bn), relu ---- */

typedef struct {
    rt_module m;
    rt_module *conv1, *bn1, *conv2, *bn2, *downsample; /* downsample NULL: identity shortcut */
} basic_block;

/* Given taps, builds the pre-activation (the sum before the final ReLU) as its own tensor and puts it
 * in taps under "pre"; without, the BN-ReLU pairs and the block's end (bn2, + shortcut, ReLU) run as
 * fused ops, in place over the convolutions' outputs when nothing is recorded, and folded into the
 * convolutions in eval mode (rt_nn_conv_bn). */
static rt_tensor *block_forward(rt_module *m, rt_ctx *ctx, rt_tensor *x, rt_taps *taps) {
    basic_block *b = (basic_block *)m;
    rt_tensor *out = rt_nn_conv_bn(b->conv1, b->bn1, ctx, x, NULL, 1);
    rt_tensor *shortcut = b->downsample ? rt_module_forward(b->downsample, ctx, x, NULL) : x;
    if (!taps) return rt_nn_conv_bn(b->conv2, b->bn2, ctx, out, shortcut, 1);
    rt_tensor *pre = rt_nn_conv_bn(b->conv2, b->bn2, ctx, out, shortcut, 0);
    rt_taps_put(taps, "pre", pre);
    return rt_relu(ctx, pre);
}

static rt_module *basic_block_new(rt_ctx *ctx, rt_paramset *ps, const char *prefix, int64_t inplanes, int64_t planes,
                                  int stride) {
    basic_block *b = rt_nn_module_alloc(ctx, sizeof *b, "BasicBlock", prefix, block_forward);
    if (!b) return NULL;
    char n[5][128];
    const char *leaf[5] = {"conv1", "bn1", "conv2", "bn2", "downsample"};
    for (int i = 0; i < 5; i++) rt_nn_join(ctx, n[i], prefix, leaf[i]);
    /* declared in RepDistiller's attribute order, which is its state_dict order */
    rt_module *kids[5] = {NULL};
    kids[0] = b->conv1 = rt_nn_conv2d(ctx, ps, n[0], inplanes, planes, 3, stride, 1, 1, 0);
    kids[1] = b->bn1 = rt_nn_batchnorm2d(ctx, ps, n[1], planes);
    kids[2] = b->conv2 = rt_nn_conv2d(ctx, ps, n[2], planes, planes, 3, 1, 1, 1, 0);
    kids[3] = b->bn2 = rt_nn_batchnorm2d(ctx, ps, n[3], planes);
    int nkids = 4;
    if (stride != 1 || inplanes != planes) {
        char c[128], bn[128];
        rt_nn_join(ctx, c, n[4], "0");
        rt_nn_join(ctx, bn, n[4], "1");
        rt_module *seq[2]; /* two statements: initialisers are not evaluated in a fixed order */
        seq[0] = rt_nn_conv2d(ctx, ps, c, inplanes, planes, 1, stride, 0, 1, 0);
        seq[1] = rt_nn_batchnorm2d(ctx, ps, bn, planes);
        kids[nkids++] = b->downsample = rt_nn_sequential(ctx, n[4], 2, seq);
    }
    return rt_nn_adopt(ctx, &b->m, nkids, kids);
}

/* ---- the network ---- */

typedef struct {
    rt_module m;
    rt_module *conv1, *bn1, *layer[3], *fc;
    int64_t in_channels;
} resnet;

static const char *const stage_name[3] = {"layer1", "layer2", "layer3"};
static const char *const stage_pre[3] = {"layer1.pre", "layer2.pre", "layer3.pre"};

static rt_tensor *resnet_forward(rt_module *m, rt_ctx *ctx, rt_tensor *x, rt_taps *taps) {
    resnet *r = (resnet *)m;
    if (x->ndim != 4 || x->shape[1] != r->in_channels) {
        char s[96];
        rt_fail(ctx, RT_ESHAPE, "resnet: input %s must be (B,%lld,H,W)", rt_shape_str(x, s), (long long)r->in_channels);
        return NULL;
    }
    x = rt_nn_conv_bn(r->conv1, r->bn1, ctx, x, NULL, 1);
    rt_taps_put(taps, "stem", x);
    /* the blocks run one by one so that only a stage's last block, whose pre-activation is the
     * stage's "pre" tap, is asked for it (and gives up the fused end) */
    for (int s = 0; s < 3 && x; s++) {
        rt_module *stage = r->layer[s];
        rt_taps last = {0};
        for (int i = 0; i < stage->nchildren && x; i++)
            x = rt_module_forward(stage->children[i], ctx, x,
                                  i == stage->nchildren - 1 && rt_taps_wants(taps, stage_pre[s]) ? &last : NULL);
        rt_taps_put(taps, stage_pre[s], rt_taps_get(&last, "pre"));
        rt_taps_put(taps, stage_name[s], x);
    }
    /* RepDistiller pools with AvgPool2d(8), defined only for 32x32 inputs (8x8 after the stages).
     * Adaptive pooling to 1x1 is the same there and also serves 28x28 (Fashion-MNIST) or 16x16. */
    x = rt_flatten(ctx, rt_adaptive_avgpool2d(ctx, x, 1, 1), 1);
    rt_taps_put(taps, "pool", x);
    x = rt_module_forward(r->fc, ctx, x, NULL);
    rt_taps_put(taps, "logits", x);
    return x;
}

static rt_module *make_stage(rt_ctx *ctx, rt_paramset *ps, int s, int64_t *inplanes, int64_t planes, int nblocks,
                             int stride) {
    rt_module *blocks[64] = {NULL};
    RT_ASSERT(nblocks <= 64);
    for (int i = 0; i < nblocks; i++) {
        char name[128];
        snprintf(name, sizeof name, "%s.%d", stage_name[s], i);
        blocks[i] = basic_block_new(ctx, ps, name, *inplanes, planes, i == 0 ? stride : 1);
        *inplanes = planes;
    }
    return rt_nn_sequential(ctx, stage_name[s], nblocks, blocks);
}

rt_module *rt_nn_resnet_cifar(rt_ctx *ctx, rt_paramset *ps, int depth, const int64_t filters[4], const rt_model_opts *o,
                              rt_model *model) {
    if ((depth - 2) % 6 != 0 || depth < 8) {
        rt_fail(ctx, RT_EINVAL, "resnet: depth %d is not 6n+2", depth);
        return NULL;
    }
    int n = (depth - 2) / 6;
    if (n > 64) {
        rt_fail(ctx, RT_EINVAL, "resnet: depth %d has more than 64 blocks per stage", depth);
        return NULL;
    }
    resnet *r = rt_nn_module_alloc(ctx, sizeof *r, "ResNet", "", resnet_forward);
    if (!r) return NULL;
    r->in_channels = o->in_channels;
    int64_t inplanes = filters[0];
    rt_module *kids[6];
    kids[0] = r->conv1 = rt_nn_conv2d(ctx, ps, "conv1", o->in_channels, filters[0], 3, 1, 1, 1, 0);
    kids[1] = r->bn1 = rt_nn_batchnorm2d(ctx, ps, "bn1", filters[0]);
    for (int s = 0; s < 3; s++)
        kids[2 + s] = r->layer[s] = make_stage(ctx, ps, s, &inplanes, filters[s + 1], n, s == 0 ? 1 : 2);
    kids[5] = r->fc = rt_nn_linear(ctx, ps, "fc", filters[3], o->num_classes, 1);
    static const char *const taps[] = {"stem",       "layer1.pre", "layer1", "layer2.pre", "layer2",
                                       "layer3.pre", "layer3",     "pool",   "logits"};
    model->ntaps = (int)(sizeof taps / sizeof taps[0]);
    for (int i = 0; i < model->ntaps; i++) model->tap_names[i] = taps[i];
    return rt_nn_adopt(ctx, &r->m, 6, kids);
}
