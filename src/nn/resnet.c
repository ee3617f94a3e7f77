/* The CIFAR ResNets of RepDistiller (HobbitLong/RepDistiller, models/resnet.py): a 3x3 stem, three
 * stages of BasicBlocks (the 2nd and 3rd halve the resolution), global average pooling and a linear
 * classifier, with the same state_dict names. Taps follow its forward(is_feat=True, preact=...):
 * the stem, each stage's output and its last block's pre-activation, the pooled embedding, logits. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    int64_t in_channels, planes[3], stride[3]; /* each stage's output channels and stride */
} resnet;

static const char *const stage_name[3] = {"layer1", "layer2", "layer3"};
static const char *const stage_pre[3] = {"layer1.pre", "layer2.pre", "layer3.pre"};

/* The blocks of a stage on x, one by one, so that only the last block, whose pre-activation is the
 * stage's "pre" tap (*pre, when asked), gives up the fused end. */
static rt_tensor *stage_blocks(rt_module *stage, rt_ctx *ctx, rt_tensor *x, rt_tensor **pre) {
    rt_taps last = {0};
    for (int i = 0; i < stage->nchildren && x; i++)
        x = rt_module_forward(stage->children[i], ctx, x, i == stage->nchildren - 1 && pre ? &last : NULL);
    if (pre) *pre = rt_taps_get(&last, "pre");
    return x;
}

static int any_training(const rt_module *m) {
    if (m->training) return 1;
    for (int i = 0; i < m->nchildren; i++)
        if (any_training(m->children[i])) return 1;
    return 0;
}

/* Samples per slice of a stage's eval forward (B: no slicing). A slice keeps one input activation
 * within the core's L2 (a batch of 64 at 16x32x32 is 4 MiB an activation, in the L3 the host's
 * other tenants share; a slice of 16 is 1 MiB), but each slice repeats every convolution's fixed
 * cost, mostly its Winograd filter transform (36 x C x OC floats): a stage is sliced only where a
 * slice's output is at least 8 times that (ResNet-56 on 32x32: layer1 yes; layer2 and layer3, with
 * 2x and 4x the channels on a quarter and a sixteenth of the pixels, no: slicing them measured
 * slower). RETORT_STAGE_SLICE=0 turns slicing off, N > 0 slices every stage by N (tests). */
static int64_t stage_slice(int64_t B, int64_t in_bytes, int64_t out_bytes, int64_t planes) {
    const char *e = getenv("RETORT_STAGE_SLICE");
    if (e && *e) return atoll(e) > 0 ? atoll(e) : B;
    long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    int64_t budget = l2 >= (256 << 10) && l2 <= (64 << 20) ? l2 : (1 << 20);
    int64_t k = budget / in_bytes > 0 ? budget / in_bytes : 1;
    return k * out_bytes >= 8 * 36 * planes * planes * (int64_t)sizeof(float) ? k : B;
}

/* Stage s's forward. In eval mode with grad off (a teacher's forward, inference) the batch runs
 * slice by slice (one slice if stage_slice says so) into whole-batch outputs, each slice's
 * intermediates released, so that a stage leaves only its output (and "pre") in the arena; a
 * sample's result depends neither on the others nor, through the conv kernels' sums, on the batch,
 * so the result is the same bits. */
static rt_tensor *stage_forward(const resnet *r, int s, rt_ctx *ctx, rt_tensor *x, rt_tensor **pre) {
    rt_module *stage = r->layer[s];
    const int64_t B = x->shape[0], per_in = B ? rt_numel(x) / B : 0, st = r->stride[s];
    /* the first block's 3x3 convolution (padding 1) and 1x1 shortcut set the output's shape */
    int64_t full[4] = {B, r->planes[s], (x->shape[2] - 1) / st + 1, (x->shape[3] - 1) / st + 1};
    const int64_t per_out = full[1] * full[2] * full[3];
    if (rt_grad_enabled(ctx) || any_training(stage) || !rt_is_contiguous(x) || B < 1)
        return stage_blocks(stage, ctx, x, pre);
    /* unsliced (k = B), the stage still runs as one slice: its intermediates are released */
    const int64_t k =
        stage_slice(B, per_in * (int64_t)sizeof(float), per_out * (int64_t)sizeof(float), r->planes[s]);
    rt_tensor *y = rt_empty(ctx, 4, full), *yp = pre ? rt_empty(ctx, 4, full) : NULL;
    if (!y || (pre && !yp)) return NULL;
    for (int64_t i0 = 0; i0 < B && !rt_status(ctx); i0 += k) {
        const int64_t b = B - i0 < k ? B - i0 : k;
        int64_t shape[4] = {b, x->shape[1], x->shape[2], x->shape[3]};
        rt_mark mk = rt_arena_mark(ctx);
        rt_tensor *p = NULL, *xs = rt_wrap(ctx, x->data + i0 * per_in, 4, shape);
        rt_tensor *ys = xs ? stage_blocks(stage, ctx, xs, pre ? &p : NULL) : NULL;
        if (ys && (rt_numel(ys) != b * per_out || (pre && (!p || rt_numel(p) != b * per_out)))) {
            char sh[96];
            rt_fail(ctx, RT_ESTATE, "resnet: stage %s gave %s for a slice of %lld samples", stage_name[s],
                    rt_shape_str(ys, sh), (long long)b);
        } else if (ys) {
            rt_copy_to(ys, y->data + i0 * per_out);
            if (pre) rt_copy_to(p, yp->data + i0 * per_out);
        }
        rt_arena_release(ctx, mk);
    }
    if (rt_status(ctx)) return NULL;
    if (pre) *pre = yp;
    return y;
}

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
        rt_tensor *pre = NULL;
        x = stage_forward(r, s, ctx, x, rt_taps_wants(taps, stage_pre[s]) ? &pre : NULL);
        rt_taps_put(taps, stage_pre[s], pre);
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
    for (int s = 0; s < 3; s++) {
        r->planes[s] = filters[s + 1], r->stride[s] = s == 0 ? 1 : 2;
        kids[2 + s] = r->layer[s] = make_stage(ctx, ps, s, &inplanes, r->planes[s], n, (int)r->stride[s]);
    }
    kids[5] = r->fc = rt_nn_linear(ctx, ps, "fc", filters[3], o->num_classes, 1);
    static const char *const taps[] = {"stem",       "layer1.pre", "layer1", "layer2.pre", "layer2",
                                       "layer3.pre", "layer3",     "pool",   "logits"};
    model->ntaps = (int)(sizeof taps / sizeof taps[0]);
    for (int i = 0; i < model->ntaps; i++) model->tap_names[i] = taps[i];
    return rt_nn_adopt(ctx, &r->m, 6, kids);
}
