/* A multilayer perceptron for tabular data: in_features -> hidden -> hidden -> classes with ReLUs,
 * parameters fc1.*, fc2.*, fc3.*. Image inputs (B,C,H,W) are flattened. Taps: "hidden1" (after the
 * first ReLU), "pool" (after the second: the penultimate embedding, the role the ResNets' pooled
 * features play), "logits". */
#include "nn/nn_impl.h"

typedef struct {
    rt_module m;
    rt_module *fc1, *fc2, *fc3;
    int64_t in_features;
} mlp;

static rt_tensor *mlp_forward(rt_module *m, rt_ctx *ctx, rt_tensor *x, rt_taps *taps) {
    mlp *p = (mlp *)m;
    if (x->ndim > 2) x = rt_flatten(ctx, x, 1);
    if (x && (x->ndim != 2 || x->shape[1] != p->in_features)) {
        char s[96];
        rt_fail(ctx, RT_ESHAPE, "mlp: input %s must have %lld features per sample", rt_shape_str(x, s),
                (long long)p->in_features);
        return NULL;
    }
    x = rt_relu(ctx, rt_module_forward(p->fc1, ctx, x, NULL));
    rt_taps_put(taps, "hidden1", x);
    x = rt_relu(ctx, rt_module_forward(p->fc2, ctx, x, NULL));
    rt_taps_put(taps, "pool", x);
    x = rt_module_forward(p->fc3, ctx, x, NULL);
    rt_taps_put(taps, "logits", x);
    return x;
}

rt_module *rt_nn_mlp(rt_ctx *ctx, rt_paramset *ps, const rt_model_opts *o, rt_model *model) {
    mlp *p = rt_nn_module_alloc(ctx, sizeof *p, "MLP", "", mlp_forward);
    if (!p) return NULL;
    p->in_features = o->in_features;
    rt_module *kids[3];
    kids[0] = p->fc1 = rt_nn_linear(ctx, ps, "fc1", o->in_features, o->hidden, 1);
    kids[1] = p->fc2 = rt_nn_linear(ctx, ps, "fc2", o->hidden, o->hidden, 1);
    kids[2] = p->fc3 = rt_nn_linear(ctx, ps, "fc3", o->hidden, o->num_classes, 1);
    static const char *const taps[] = {"hidden1", "pool", "logits"};
    model->ntaps = 3;
    for (int i = 0; i < 3; i++) model->tap_names[i] = taps[i];
    return rt_nn_adopt(ctx, &p->m, 3, kids);
}
