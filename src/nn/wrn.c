/* The Wide ResNets of RepDistiller (HobbitLong/RepDistiller, models/wrn.py; dropRate 0): a 3x3 stem
 * conv, three stages of pre-activation BasicBlocks (BN-ReLU-conv twice, a 1x1 convShortcut where
 * the channel count changes), a final BN-ReLU, global average pooling and a linear classifier, with
 * the same state_dict names (block1.layer.0.bn1.weight, ...). Taps follow forward(is_feat=True,
 * preact=...): "stem" is the stem conv's output (no BN, the blocks are pre-activation), "layerK" the
 * stage outputs, "layerK.pre" their preact versions (the next BN applied, before its ReLU), "pool",
 * "logits". */
#include <stdio.h>
#include <string.h>

#include "nn/nn_impl.h"

/* ---- BasicBlock: relu(bn1(x)) -> conv1 -> relu(bn2) -> conv2, + x or convShortcut(relu(bn1(x))) ---- */

typedef struct {
    rt_module m;
    rt_module *bn1, *conv1, *bn2, *conv2, *shortcut; /* shortcut NULL: identity (equalInOut) */
} wrn_block;

/* Given taps, puts bn1's output (before its ReLU) in taps under "bn1": for the first block of a stage
 * that is the previous stage's preact feature, which RepDistiller recomputes with this same BN.
 * Without, bn1 and its ReLU run fused (not in place: x is also the identity shortcut). */
static rt_tensor *wrn_block_forward(rt_module *m, rt_ctx *ctx, rt_tensor *x, rt_taps *taps) {
    wrn_block *b = (wrn_block *)m;
    rt_tensor *act;
    if (taps) {
        rt_tensor *pre = rt_module_forward(b->bn1, ctx, x, NULL);
        rt_taps_put(taps, "bn1", pre);
        act = rt_relu(ctx, pre);
    } else {
        act = rt_nn_batchnorm_relu(b->bn1, ctx, x, NULL, 0);
    }
    rt_tensor *out = rt_module_forward(b->conv1, ctx, act, NULL);
    out = rt_nn_batchnorm_relu(b->bn2, ctx, out, NULL, 1);
    out = rt_module_forward(b->conv2, ctx, out, NULL);
    /* without equalInOut the shortcut sees the activated input, as in RepDistiller */
    rt_tensor *shortcut = b->shortcut ? rt_module_forward(b->shortcut, ctx, act, NULL) : x;
    return rt_add(ctx, shortcut, out);
}

static rt_module *wrn_block_new(rt_ctx *ctx, rt_paramset *ps, const char *prefix, int64_t in, int64_t out, int stride) {
    if (in == out && stride != 1) {
        rt_fail(ctx, RT_EINVAL, "wrn: block %s keeps %lld channels with stride %d (no shortcut can match it)", prefix,
                (long long)in, stride);
        return NULL;
    }
    wrn_block *b = rt_nn_module_alloc(ctx, sizeof *b, "WRNBlock", prefix, wrn_block_forward);
    if (!b) return NULL;
    char n[5][128];
    const char *leaf[5] = {"bn1", "conv1", "bn2", "conv2", "convShortcut"};
    for (int i = 0; i < 5; i++) rt_nn_join(ctx, n[i], prefix, leaf[i]);
    /* attribute order = state_dict order; one statement each (initialisers have no fixed order) */
    rt_module *kids[5] = {NULL};
    kids[0] = b->bn1 = rt_nn_batchnorm2d(ctx, ps, n[0], in);
    kids[1] = b->conv1 = rt_nn_conv2d(ctx, ps, n[1], in, out, 3, stride, 1, 1, 0);
    kids[2] = b->bn2 = rt_nn_batchnorm2d(ctx, ps, n[2], out);
    kids[3] = b->conv2 = rt_nn_conv2d(ctx, ps, n[3], out, out, 3, 1, 1, 1, 0);
    int nkids = 4;
    if (in != out) kids[nkids++] = b->shortcut = rt_nn_conv2d(ctx, ps, n[4], in, out, 1, stride, 0, 1, 0);
    return rt_nn_adopt(ctx, &b->m, nkids, kids);
}

/* ---- the network ---- */

typedef struct {
    rt_module m;
    rt_module *conv1, *stage[3], *bn1, *fc; /* stage[s]: the Sequential "block<s+1>.layer" */
    int64_t in_channels;
} wrn;

static const char *const stage_out[3] = {"layer1", "layer2", "layer3"};
static const char *const stage_pre[3] = {"layer1.pre", "layer2.pre", "layer3.pre"};

static rt_tensor *wrn_forward(rt_module *m, rt_ctx *ctx, rt_tensor *x, rt_taps *taps) {
    wrn *w = (wrn *)m;
    if (x->ndim != 4 || x->shape[1] != w->in_channels) {
        char s[96];
        rt_fail(ctx, RT_ESHAPE, "wrn: input %s must be (B,%lld,H,W)", rt_shape_str(x, s), (long long)w->in_channels);
        return NULL;
    }
    x = rt_module_forward(w->conv1, ctx, x, NULL);
    rt_taps_put(taps, "stem", x);
    /* the blocks are run one by one so the first block of stages 2 and 3 can hand back its bn1 output */
    for (int s = 0; s < 3 && x; s++) {
        rt_module *stage = w->stage[s];
        for (int i = 0; i < stage->nchildren && x; i++) {
            rt_taps first = {0};
            int want = i == 0 && s > 0 && rt_taps_wants(taps, stage_pre[s - 1]);
            x = rt_module_forward(stage->children[i], ctx, x, want ? &first : NULL);
            if (i == 0 && s > 0) rt_taps_put(taps, stage_pre[s - 1], rt_taps_get(&first, "bn1"));
        }
        rt_taps_put(taps, stage_out[s], x);
    }
    if (rt_taps_wants(taps, stage_pre[2])) {
        rt_tensor *pre = rt_module_forward(w->bn1, ctx, x, NULL);
        rt_taps_put(taps, stage_pre[2], pre);
        x = rt_relu(ctx, pre);
    } else { /* x, the last block's sum, is nobody else's (unless it is a tap): in place when nothing is recorded */
        x = rt_nn_batchnorm_relu(w->bn1, ctx, x, NULL, taps == NULL);
    }
    /* RepDistiller pools with avg_pool2d(8), defined only for 32x32 inputs (8x8 after the stages).
     * Adaptive pooling to 1x1 is the same there and also serves 28x28 (Fashion-MNIST). */
    x = rt_flatten(ctx, rt_adaptive_avgpool2d(ctx, x, 1, 1), 1);
    rt_taps_put(taps, "pool", x);
    x = rt_module_forward(w->fc, ctx, x, NULL);
    rt_taps_put(taps, "logits", x);
    return x;
}

rt_module *rt_nn_wrn(rt_ctx *ctx, rt_paramset *ps, int depth, const int64_t channels[4], const rt_model_opts *o,
                     rt_model *model) {
    if (depth < 10 || (depth - 4) % 6 != 0 || (depth - 4) / 6 > 64) {
        rt_fail(ctx, RT_EINVAL, "wrn: depth %d is not 6n+4 with 1 <= n <= 64", depth);
        return NULL;
    }
    for (int i = 0; i < 4; i++)
        if (channels[i] <= 0) {
            rt_fail(ctx, RT_EINVAL, "wrn: channel count %lld must be positive", (long long)channels[i]);
            return NULL;
        }
    int n = (depth - 4) / 6;
    wrn *w = rt_nn_module_alloc(ctx, sizeof *w, "WideResNet", "", wrn_forward);
    if (!w) return NULL;
    w->in_channels = o->in_channels;
    rt_module *kids[6] = {NULL};
    kids[0] = w->conv1 = rt_nn_conv2d(ctx, ps, "conv1", o->in_channels, channels[0], 3, 1, 1, 1, 0);
    for (int s = 0; s < 3; s++) {
        char seq[32];
        snprintf(seq, sizeof seq, "block%d.layer", s + 1);
        rt_module *blocks[64] = {NULL};
        for (int i = 0; i < n; i++) {
            char name[128];
            snprintf(name, sizeof name, "%s.%d", seq, i);
            blocks[i] = wrn_block_new(ctx, ps, name, i == 0 ? channels[s] : channels[s + 1], channels[s + 1],
                                      i == 0 && s > 0 ? 2 : 1);
        }
        kids[1 + s] = w->stage[s] = rt_nn_sequential(ctx, seq, n, blocks);
    }
    kids[4] = w->bn1 = rt_nn_batchnorm2d(ctx, ps, "bn1", channels[3]);
    kids[5] = w->fc = rt_nn_linear(ctx, ps, "fc", channels[3], o->num_classes, 1);
    static const char *const taps[] = {"stem",       "layer1.pre", "layer1", "layer2.pre", "layer2",
                                       "layer3.pre", "layer3",     "pool",   "logits"};
    model->ntaps = (int)(sizeof taps / sizeof taps[0]);
    for (int i = 0; i < model->ntaps; i++) model->tap_names[i] = taps[i];
    return rt_nn_adopt(ctx, &w->m, 6, kids);
}

/* ---- the registered archs ---- */

static const char *const wrn_archs[] = {"wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2", NULL};

static rt_module *wrn_build(rt_ctx *ctx, rt_paramset *ps, const char *arch, const rt_model_opts *o, rt_model *m) {
    int depth, widen;
    if (sscanf(arch, "wrn_%d_%d", &depth, &widen) != 2 || widen < 1) {
        rt_fail(ctx, RT_EINVAL, "wrn: unknown arch '%s'", arch);
        return NULL;
    }
    const int64_t channels[4] = {16, 16 * widen, 32 * widen, 64 * widen};
    return rt_nn_wrn(ctx, ps, depth, channels, o, m);
}

/* As WideResNet.__init__: convs N(0, 2 / (k*k*out)) (kaiming fan_out), BN 1/0, the Linear's weight
 * PyTorch's default and its bias zero. */
static void wrn_init(rt_model *m, rt_rng *rng) {
    rt_nn_init_tree(m->root, rng, 1);
    rt_param *b = rt_params_find(&m->params, "fc.bias");
    if (b) memset(b->t.data, 0, b->numel * sizeof(float));
}

const rt_nn_family rt_nn_wrn_family = {wrn_archs, wrn_build, wrn_init};
