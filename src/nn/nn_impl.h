/* Shared by the layer and model files of src/nn: module allocation and the init walk. */
#ifndef RT_NN_IMPL_H
#define RT_NN_IMPL_H
#include "retort/nn.h"

typedef rt_tensor *(*rt_forward_fn)(rt_module *m, rt_ctx *ctx, rt_tensor *x, rt_taps *taps);

/* A zeroed module of bytes (a struct that starts with rt_module), training on, named name. NULL with
 * the context's error set when name is too long or memory runs out. */
void *rt_nn_module_alloc(rt_ctx *ctx, size_t bytes, const char *type, const char *name, rt_forward_fn forward);
/* Gives m its n children (taking ownership). A NULL child means its constructor failed: everything
 * is freed, m included, and the result is NULL; otherwise returns m. */
rt_module *rt_nn_adopt(rt_ctx *ctx, rt_module *m, int n, rt_module **kids);
/* "prefix.leaf" into out (128 bytes); "leaf" when prefix is empty. 0 ok, else the context's error. */
int rt_nn_join(rt_ctx *ctx, char *out, const char *prefix, const char *leaf);

/* The init walk behind rt_module_init. With kaiming_fan_out, Conv2d weights are drawn from
 * N(0, 2 / fan_out) instead (kaiming_normal_(mode='fan_out', nonlinearity='relu'), as the CIFAR
 * ResNets of RepDistiller initialise them). */
void rt_nn_init_tree(rt_module *m, rt_rng *rng, int kaiming_fan_out);

/* relu(bn(x) + residual) through the BatchNorm2d module bn (residual NULL: relu(bn(x))) as one fused
 * op (rt_batchnorm_relu, inplace as there), in bn's scope, moving its running statistics and batch
 * count as its forward does. For models whose BN output feeds only a ReLU (no tap wants it). */
rt_tensor *rt_nn_batchnorm_relu(rt_module *bn, rt_ctx *ctx, rt_tensor *x, rt_tensor *residual, int inplace);

/* conv -> bn (-> + residual) (-> ReLU) through the Conv2d module conv and the BatchNorm2d module bn.
 * With bn in eval mode and grad mode off (an inference or a teacher's forward) the pair runs as one
 * folded op (rt_conv2d_bn_eval, in conv's scope): no BN pass over the activation. Otherwise, or
 * with RETORT_FOLD_BN=0, conv's forward then rt_nn_batchnorm_relu in place (relu) or bn's forward
 * and rt_add. */
rt_tensor *rt_nn_conv_bn(rt_module *conv, rt_module *bn, rt_ctx *ctx, rt_tensor *x, rt_tensor *residual, int relu);

/* Model builders (src/nn/resnet.c, mlp.c): declare into ps, return the root and fill the taps. */
rt_module *rt_nn_resnet_cifar(rt_ctx *ctx, rt_paramset *ps, int depth, const int64_t filters[4],
                              const rt_model_opts *o, rt_model *m);
rt_module *rt_nn_mlp(rt_ctx *ctx, rt_paramset *ps, const rt_model_opts *o, rt_model *m);

/* The other CIFAR families of RepDistiller (src/nn/wrn.c, vgg.c, mobilenetv2.c, shufflenet.c). Each
 * builder takes its family's configuration (so tests can build reduced variants), declares into ps,
 * returns the root and fills the taps; a family maps RepDistiller's model_dict names to
 * configurations and initialises a built model as RepDistiller's constructors do. */
typedef struct rt_nn_family {
    const char *const *archs; /* the names it builds, NULL-terminated */
    rt_module *(*build)(rt_ctx *ctx, rt_paramset *ps, const char *arch, const rt_model_opts *o, rt_model *m);
    void (*init)(rt_model *m, rt_rng *rng); /* after rt_params_finalize */
} rt_nn_family;
extern const rt_nn_family rt_nn_wrn_family, rt_nn_vgg_family, rt_nn_mobilenetv2_family, rt_nn_shufflenet_family;

/* WideResNet: depth 6n+4, channels {stem, stage1, stage2, stage3} (RepDistiller: 16, 16w, 32w, 64w). */
rt_module *rt_nn_wrn(rt_ctx *ctx, rt_paramset *ps, int depth, const int64_t channels[4], const rt_model_opts *o,
                     rt_model *m);
/* VGG with BN: cfg[b] lists block b's conv widths, zero-padded (vgg8: {{64},{128},{256},{512},{512}}). */
rt_module *rt_nn_vgg(rt_ctx *ctx, rt_paramset *ps, const int64_t cfg[5][4], const rt_model_opts *o, rt_model *m);
/* MobileNetV2: expansion T, width multiplier, last_channel (mobile_half: 6, 0.5, 1280). */
rt_module *rt_nn_mobilenetv2(rt_ctx *ctx, rt_paramset *ps, int T, double width, int64_t last_channel,
                             const rt_model_opts *o, rt_model *m);
/* ShuffleNetV1: out_planes per stage, blocks per stage, groups (ShuffleV1: {240,480,960}, {4,8,4}, 3). */
rt_module *rt_nn_shufflenet_v1(rt_ctx *ctx, rt_paramset *ps, const int64_t out_planes[3], const int blocks[3],
                               int groups, const rt_model_opts *o, rt_model *m);
/* ShuffleNetV2: out_channels of the stages and the last 1x1 conv, blocks per stage (ShuffleV2:
 * {116,232,464,1024}, {3,7,3}). */
rt_module *rt_nn_shufflenet_v2(rt_ctx *ctx, rt_paramset *ps, const int64_t out_channels[4], const int blocks[3],
                               const rt_model_opts *o, rt_model *m);

#endif
