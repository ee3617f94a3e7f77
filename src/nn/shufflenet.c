/* The CIFAR ShuffleNets of RepDistiller (HobbitLong/RepDistiller, models/ShuffleNetv1.py and
 * ShuffleNetv2.py; model_dict's ShuffleV1 = groups 3, out_planes 240/480/960, blocks 4/8/4, and
 * ShuffleV2 = net_size 1: 116/232/464 then 1024, blocks 3/7/3), with the same state_dict names
 * (layer1.0.conv1.weight, ..., linear.weight). Both start with a 1x1 conv-BN-ReLU to 24 channels and
 * keep the resolution until the three stages, each of which halves it, and end in global average
 * pooling and a Linear named "linear". Taps follow forward(is_feat=True, preact=...): "stem",
 * "layerK" (the stage outputs), "layerK.pre" (the last block's preact), "pool", "logits". */
#include <stdio.h>
#include <string.h>

#include "nn/nn_impl.h"

/* x (N,C,H,W) -> view(N,g,C/g,H,W).permute(0,2,1,3,4).reshape(N,C,H,W): output channel j*g + k is
 * input channel k*(C/g) + j. */
static rt_tensor *channel_shuffle(rt_ctx *ctx, rt_tensor *x, int64_t g) {
    if (!x || g == 1) return x;
    int64_t n = x->shape[0], c = x->shape[1], h = x->shape[2], w = x->shape[3];
    x = rt_reshape(ctx, x, 4, (int64_t[]){n, g, c / g, h * w});
    x = rt_transpose(ctx, x, 1, 2);
    return rt_reshape(ctx, x, 4, (int64_t[]){n, c, h, w}); /* copies the strided view */
}

/* relu(bn(conv(x))) over two child modules, BN and ReLU fused (in place over the conv's output when
 * nothing is recorded) */
static rt_tensor *conv_bn_relu(rt_ctx *ctx, rt_module *conv, rt_module *bn, rt_tensor *x) {
    return rt_nn_conv_bn(conv, bn, ctx, x, NULL, 1);
}

static int check_input(rt_ctx *ctx, const char *what, const rt_tensor *x, int64_t channels) {
    if (x->ndim == 4 && x->shape[1] == channels) return 1;
    char s[96];
    rt_fail(ctx, RT_ESHAPE, "%s: input %s must be (B,%lld,H,W)", what, rt_shape_str(x, s), (long long)channels);
    return 0;
}

static const char *const stage_name[3] = {"layer1", "layer2", "layer3"};
static const char *const stage_pre[3] = {"layer1.pre", "layer2.pre", "layer3.pre"};
static const char *const taps_v1v2[] = {"stem",       "layer1.pre", "layer1", "layer2.pre", "layer2",
                                        "layer3.pre", "layer3",     "pool",   "logits"};

static void set_taps(rt_model *model) {
    model->ntaps = (int)(sizeof taps_v1v2 / sizeof taps_v1v2[0]);
    for (int i = 0; i < model->ntaps; i++) model->tap_names[i] = taps_v1v2[i];
}

/* Declares the modules named in leaf (conv k x k with stride / groups, or BN) under prefix into out. */
typedef struct {
    const char *leaf;
    int64_t in, out; /* out 0 = BatchNorm over in channels */
    int k, stride, groups;
} layer_spec;

static int declare(rt_ctx *ctx, rt_paramset *ps, const char *prefix, int n, const layer_spec *spec, rt_module **out) {
    for (int i = 0; i < n; i++) {
        char name[128];
        out[i] = NULL;
        if (rt_nn_join(ctx, name, prefix, spec[i].leaf)) continue;
        out[i] = spec[i].out ? rt_nn_conv2d(ctx, ps, name, spec[i].in, spec[i].out, spec[i].k, spec[i].stride,
                                            spec[i].k / 2, spec[i].groups, 0)
                             : rt_nn_batchnorm2d(ctx, ps, name, spec[i].in);
    }
    return rt_status(ctx);
}

/* ======================= ShuffleNetV1 ======================= */

/* Bottleneck: relu(bn1(conv1 g)) -> shuffle(g) -> relu(bn2(dw conv2)) -> bn3(conv3 groups), then
 * + x (stride 1) or concat with avgpool3x3/2(x) (stride 2), ReLU. */
typedef struct {
    rt_module m;
    rt_module *conv1, *bn1, *conv2, *bn2, *conv3, *bn3;
    int stride;
    int64_t g; /* conv1's groups, also the shuffle's */
} v1_block;

/* Puts its preact (the sum or concat before the final ReLU) in taps under "pre" (the network asks
 * the last block of each stage). */
static rt_tensor *v1_block_forward(rt_module *m, rt_ctx *ctx, rt_tensor *x, rt_taps *taps) {
    v1_block *b = (v1_block *)m;
    rt_tensor *out = conv_bn_relu(ctx, b->conv1, b->bn1, x);
    out = channel_shuffle(ctx, out, b->g);
    out = conv_bn_relu(ctx, b->conv2, b->bn2, out);
    out = rt_module_forward(b->conv3, ctx, out, NULL);
    if (b->stride != 2 && !taps) return rt_nn_batchnorm_relu(b->bn3, ctx, out, x, 1); /* relu(bn3 + x), fused */
    out = rt_module_forward(b->bn3, ctx, out, NULL);
    rt_tensor *pre;
    if (b->stride == 2) {
        rt_tensor *cat[2] = {out, rt_avgpool2d(ctx, x, 3, 3, 2, 2, 1, 1)};
        pre = rt_concat(ctx, 2, cat, 1);
    } else {
        pre = rt_add(ctx, out, x);
    }
    rt_taps_put(taps, "pre", pre);
    return rt_relu(ctx, pre);
}

static rt_module *v1_block_new(rt_ctx *ctx, rt_paramset *ps, const char *prefix, int64_t in, int64_t out, int stride,
                               int groups) {
    int64_t mid = out / 4;
    /* RepDistiller: g = 1 if in_planes == 24 else groups (the first block sees the 24-channel stem) */
    int g = in == 24 ? 1 : groups;
    if (mid < 1 || in % g || mid % g || mid % groups || out % groups) {
        rt_fail(ctx, RT_EINVAL,
                "shufflenet_v1: block %s (%lld -> %lld channels, bottleneck %lld) does not divide "
                "into groups %d",
                prefix, (long long)in, (long long)out, (long long)mid, groups);
        return NULL;
    }
    v1_block *b = rt_nn_module_alloc(ctx, sizeof *b, "ShuffleV1Bottleneck", prefix, v1_block_forward);
    if (!b) return NULL;
    b->stride = stride;
    b->g = g;
    const layer_spec spec[6] = {
        {"conv1", in, mid, 1, 1, g}, {"bn1", mid, 0, 0, 0, 0},          {"conv2", mid, mid, 3, stride, (int)mid},
        {"bn2", mid, 0, 0, 0, 0},    {"conv3", mid, out, 1, 1, groups}, {"bn3", out, 0, 0, 0, 0}};
    rt_module *kids[6];
    declare(ctx, ps, prefix, 6, spec, kids);
    b->conv1 = kids[0], b->bn1 = kids[1], b->conv2 = kids[2], b->bn2 = kids[3], b->conv3 = kids[4], b->bn3 = kids[5];
    return rt_nn_adopt(ctx, &b->m, 6, kids);
}

typedef struct {
    rt_module m;
    rt_module *conv1, *bn1, *layer[3], *last_conv, *last_bn, *linear; /* last_*: V2's conv2 / bn2 */
    int64_t in_channels;
    const char *what;
} shufflenet;

static rt_tensor *shufflenet_forward(rt_module *m, rt_ctx *ctx, rt_tensor *x, rt_taps *taps) {
    shufflenet *s = (shufflenet *)m;
    if (!check_input(ctx, s->what, x, s->in_channels)) return NULL;
    x = conv_bn_relu(ctx, s->conv1, s->bn1, x);
    rt_taps_put(taps, "stem", x);
    /* the blocks are run one by one so only the last of a stage builds its preact tap (for V2 that
     * is an extra concat), and only when taps are wanted */
    for (int k = 0; k < 3 && x; k++) {
        rt_module *stage = s->layer[k];
        rt_taps last = {0};
        for (int i = 0; i < stage->nchildren && x; i++)
            x = rt_module_forward(stage->children[i], ctx, x,
                                  i == stage->nchildren - 1 && rt_taps_wants(taps, stage_pre[k]) ? &last : NULL);
        rt_taps_put(taps, stage_pre[k], rt_taps_get(&last, "pre"));
        rt_taps_put(taps, stage_name[k], x);
    }
    if (s->last_conv) x = conv_bn_relu(ctx, s->last_conv, s->last_bn, x);
    /* RepDistiller pools with avg_pool2d(4), the whole map for 32x32 inputs (4x4 after the three
     * stages). Adaptive pooling to 1x1 is the same there and also serves 28x28 (Fashion-MNIST). */
    x = rt_flatten(ctx, rt_adaptive_avgpool2d(ctx, x, 1, 1), 1);
    rt_taps_put(taps, "pool", x);
    x = rt_module_forward(s->linear, ctx, x, NULL);
    rt_taps_put(taps, "logits", x);
    return x;
}

/* The stem both versions share: conv1 (in -> 24, 1x1, no bias), bn1. */
static shufflenet *shufflenet_new(rt_ctx *ctx, rt_paramset *ps, const char *what, const rt_model_opts *o,
                                  rt_module **kids) {
    shufflenet *s = rt_nn_module_alloc(ctx, sizeof *s, "ShuffleNet", "", shufflenet_forward);
    if (!s) return NULL;
    s->in_channels = o->in_channels;
    s->what = what;
    kids[0] = s->conv1 = rt_nn_conv2d(ctx, ps, "conv1", o->in_channels, 24, 1, 1, 0, 1, 0);
    kids[1] = s->bn1 = rt_nn_batchnorm2d(ctx, ps, "bn1", 24);
    return s;
}

rt_module *rt_nn_shufflenet_v1(rt_ctx *ctx, rt_paramset *ps, const int64_t out_planes[3], const int blocks[3],
                               int groups, const rt_model_opts *o, rt_model *model) {
    for (int k = 0; k < 3; k++)
        if (blocks[k] < 1 || blocks[k] > 64 || groups < 1) {
            rt_fail(ctx, RT_EINVAL, "shufflenet_v1: stage %d has %d blocks (1..64), groups %d", k + 1, blocks[k],
                    groups);
            return NULL;
        }
    rt_module *kids[6] = {NULL};
    shufflenet *s = shufflenet_new(ctx, ps, "shufflenet_v1", o, kids);
    if (!s) return NULL;
    int64_t in = 24;
    for (int k = 0; k < 3; k++) {
        rt_module *mods[64] = {NULL};
        for (int i = 0; i < blocks[k]; i++) {
            char name[128];
            snprintf(name, sizeof name, "%s.%d", stage_name[k], i);
            /* the stride-2 first block concatenates its input: it produces out_planes - in channels */
            mods[i] = v1_block_new(ctx, ps, name, in, out_planes[k] - (i == 0 ? in : 0), i == 0 ? 2 : 1, groups);
            in = out_planes[k];
        }
        kids[2 + k] = s->layer[k] = rt_nn_sequential(ctx, stage_name[k], blocks[k], mods);
    }
    kids[5] = s->linear = rt_nn_linear(ctx, ps, "linear", in, o->num_classes, 1);
    set_taps(model);
    return rt_nn_adopt(ctx, &s->m, 6, kids);
}

/* ======================= ShuffleNetV2 ======================= */

/* BasicBlock: split channels in halves x1, x2; x2 -> relu(bn1(conv1)) -> bn2(dw conv2) -> bn3(conv3)
 * = preact; out = shuffle(concat(x1, relu(preact))). Its "pre" tap is concat(x1, preact), unshuffled,
 * as RepDistiller returns it. */
typedef struct {
    rt_module m;
    rt_module *conv1, *bn1, *conv2, *bn2, *conv3, *bn3;
} v2_basic;

static rt_tensor *v2_basic_forward(rt_module *m, rt_ctx *ctx, rt_tensor *x, rt_taps *taps) {
    v2_basic *b = (v2_basic *)m;
    int64_t c = x->shape[1] / 2; /* int(C * 0.5) */
    rt_tensor *x1 = rt_slice(ctx, x, 1, 0, c), *x2 = rt_slice(ctx, x, 1, c, x->shape[1]);
    rt_tensor *out = conv_bn_relu(ctx, b->conv1, b->bn1, x2);
    out = rt_module_forward(b->bn2, ctx, rt_module_forward(b->conv2, ctx, out, NULL), NULL);
    rt_tensor *pre = rt_module_forward(b->bn3, ctx, rt_module_forward(b->conv3, ctx, out, NULL), NULL);
    if (taps) rt_taps_put(taps, "pre", rt_concat(ctx, 2, (rt_tensor *[]){x1, pre}, 1));
    out = rt_concat(ctx, 2, (rt_tensor *[]){x1, rt_relu(ctx, pre)}, 1);
    return channel_shuffle(ctx, out, 2);
}

static rt_module *v2_basic_new(rt_ctx *ctx, rt_paramset *ps, const char *prefix, int64_t channels) {
    if (channels < 2 || channels % 2) {
        rt_fail(ctx, RT_EINVAL, "shufflenet_v2: block %s splits %lld channels (must be even)", prefix,
                (long long)channels);
        return NULL;
    }
    v2_basic *b = rt_nn_module_alloc(ctx, sizeof *b, "ShuffleV2Block", prefix, v2_basic_forward);
    if (!b) return NULL;
    int64_t c = channels / 2;
    const layer_spec spec[6] = {{"conv1", c, c, 1, 1, 1}, {"bn1", c, 0, 0, 0, 0},   {"conv2", c, c, 3, 1, (int)c},
                                {"bn2", c, 0, 0, 0, 0},   {"conv3", c, c, 1, 1, 1}, {"bn3", c, 0, 0, 0, 0}};
    rt_module *kids[6];
    declare(ctx, ps, prefix, 6, spec, kids);
    b->conv1 = kids[0], b->bn1 = kids[1], b->conv2 = kids[2], b->bn2 = kids[3], b->conv3 = kids[4], b->bn3 = kids[5];
    return rt_nn_adopt(ctx, &b->m, 6, kids);
}

/* DownBlock (stride 2): left = relu(bn2(conv2(bn1(dw conv1 x)))), right = relu(bn5(conv5(bn4(dw
 * conv4(relu(bn3(conv3 x))))))), out = shuffle(concat(left, right)). */
typedef struct {
    rt_module m;
    rt_module *l[10]; /* conv1, bn1, ..., conv5, bn5 */
} v2_down;

static rt_tensor *v2_down_forward(rt_module *m, rt_ctx *ctx, rt_tensor *x, rt_taps *taps) {
    rt_module **l = ((v2_down *)m)->l;
#define CB(i, t) rt_module_forward(l[2 * (i) + 1], ctx, rt_module_forward(l[2 * (i)], ctx, (t), NULL), NULL)
#define CBR(i, t) conv_bn_relu(ctx, l[2 * (i)], l[2 * (i) + 1], (t))
    rt_tensor *left = CBR(1, CB(0, x));
    rt_tensor *right = CBR(4, CB(3, CBR(2, x)));
#undef CBR
#undef CB
    return channel_shuffle(ctx, rt_concat(ctx, 2, (rt_tensor *[]){left, right}, 1), 2);
}

static rt_module *v2_down_new(rt_ctx *ctx, rt_paramset *ps, const char *prefix, int64_t in, int64_t out) {
    int64_t mid = out / 2;
    if (mid < 1 || out % 2) {
        rt_fail(ctx, RT_EINVAL, "shufflenet_v2: down block %s has %lld output channels (must be even)", prefix,
                (long long)out);
        return NULL;
    }
    v2_down *b = rt_nn_module_alloc(ctx, sizeof *b, "ShuffleV2DownBlock", prefix, v2_down_forward);
    if (!b) return NULL;
    const layer_spec spec[10] = {{"conv1", in, in, 3, 2, (int)in},    {"bn1", in, 0, 0, 0, 0},
                                 {"conv2", in, mid, 1, 1, 1},         {"bn2", mid, 0, 0, 0, 0},
                                 {"conv3", in, mid, 1, 1, 1},         {"bn3", mid, 0, 0, 0, 0},
                                 {"conv4", mid, mid, 3, 2, (int)mid}, {"bn4", mid, 0, 0, 0, 0},
                                 {"conv5", mid, mid, 1, 1, 1},        {"bn5", mid, 0, 0, 0, 0}};
    declare(ctx, ps, prefix, 10, spec, b->l);
    rt_module *kids[10];
    memcpy(kids, b->l, sizeof kids);
    return rt_nn_adopt(ctx, &b->m, 10, kids);
}

rt_module *rt_nn_shufflenet_v2(rt_ctx *ctx, rt_paramset *ps, const int64_t out_channels[4], const int blocks[3],
                               const rt_model_opts *o, rt_model *model) {
    for (int k = 0; k < 3; k++)
        if (blocks[k] < 0 || blocks[k] > 63) {
            rt_fail(ctx, RT_EINVAL, "shufflenet_v2: stage %d has %d blocks (0..63)", k + 1, blocks[k]);
            return NULL;
        }
    if (out_channels[3] < 1) {
        rt_fail(ctx, RT_EINVAL, "shufflenet_v2: last conv has %lld channels", (long long)out_channels[3]);
        return NULL;
    }
    rt_module *kids[8] = {NULL};
    shufflenet *s = shufflenet_new(ctx, ps, "shufflenet_v2", o, kids);
    if (!s) return NULL;
    int64_t in = 24;
    for (int k = 0; k < 3; k++) {
        rt_module *mods[64] = {NULL};
        char name[128];
        snprintf(name, sizeof name, "%s.0", stage_name[k]);
        mods[0] = v2_down_new(ctx, ps, name, in, out_channels[k]);
        for (int i = 1; i <= blocks[k]; i++) {
            snprintf(name, sizeof name, "%s.%d", stage_name[k], i);
            mods[i] = v2_basic_new(ctx, ps, name, out_channels[k]);
        }
        in = out_channels[k];
        kids[2 + k] = s->layer[k] = rt_nn_sequential(ctx, stage_name[k], blocks[k] + 1, mods);
    }
    kids[5] = s->last_conv = rt_nn_conv2d(ctx, ps, "conv2", in, out_channels[3], 1, 1, 0, 1, 0);
    kids[6] = s->last_bn = rt_nn_batchnorm2d(ctx, ps, "bn2", out_channels[3]);
    kids[7] = s->linear = rt_nn_linear(ctx, ps, "linear", out_channels[3], o->num_classes, 1);
    set_taps(model);
    return rt_nn_adopt(ctx, &s->m, 8, kids);
}

/* ---- the registered archs ---- */

static const char *const shufflenet_archs[] = {"ShuffleV1", "ShuffleV2", NULL};

static rt_module *shufflenet_build(rt_ctx *ctx, rt_paramset *ps, const char *arch, const rt_model_opts *o,
                                   rt_model *m) {
    if (!strcmp(arch, "ShuffleV1"))
        return rt_nn_shufflenet_v1(ctx, ps, (const int64_t[]){240, 480, 960}, (const int[]){4, 8, 4}, 3, o, m);
    if (!strcmp(arch, "ShuffleV2"))
        return rt_nn_shufflenet_v2(ctx, ps, (const int64_t[]){116, 232, 464, 1024}, (const int[]){3, 7, 3}, o, m);
    rt_fail(ctx, RT_EINVAL, "shufflenet: unknown arch '%s'", arch);
    return NULL;
}

/* RepDistiller leaves both at PyTorch's defaults: convs and the Linear uniform(+-1/sqrt(fan_in)),
 * BN 1/0. */
static void shufflenet_init(rt_model *m, rt_rng *rng) { rt_nn_init_tree(m->root, rng, 0); }

const rt_nn_family rt_nn_shufflenet_family = {shufflenet_archs, shufflenet_build, shufflenet_init};
