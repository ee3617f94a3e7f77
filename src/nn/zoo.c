/* The model zoo: architecture names to builders, default options, seeded initialisation, and the
 * model-level forward / train / free. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn_impl.h"

typedef struct {
    const char *name;
    int depth;            /* ResNet depth; 0 = MLP */
    const int64_t *filters;
} arch_entry;

static const int64_t filters_1x[4] = {16, 16, 32, 64};
static const int64_t filters_4x[4] = {32, 64, 128, 256};

static const arch_entry archs[] = {
    {"resnet8", 8, filters_1x},    {"resnet14", 14, filters_1x}, {"resnet20", 20, filters_1x},
    {"resnet32", 32, filters_1x},  {"resnet44", 44, filters_1x}, {"resnet56", 56, filters_1x},
    {"resnet110", 110, filters_1x}, {"resnet8x4", 8, filters_4x}, {"resnet32x4", 32, filters_4x},
    {"mlp", 0, NULL},
};
#define NARCHS ((int)(sizeof archs / sizeof archs[0]))

/* The other families (src/nn/wrn.c, vgg.c, mobilenetv2.c, shufflenet.c) build the names they list. */
static const rt_nn_family *const families[] = {&rt_nn_wrn_family, &rt_nn_vgg_family, &rt_nn_mobilenetv2_family,
                                               &rt_nn_shufflenet_family};
#define NFAMILIES ((int)(sizeof families / sizeof families[0]))

const char *const *rt_model_archs(void) {
    static const char *const names[] = {"resnet8",  "resnet14", "resnet20",  "resnet32",    "resnet44",  "resnet56",
                                        "resnet110", "resnet8x4", "resnet32x4", "mlp",      "wrn_16_1",  "wrn_16_2",
                                        "wrn_40_1", "wrn_40_2", "vgg8",      "vgg11",       "vgg13",     "MobileNetV2",
                                        "ShuffleV1", "ShuffleV2", NULL};
    return names;
}

rt_model *rt_model_new(rt_ctx *ctx, const char *arch, const rt_model_opts *opts, uint64_t seed) {
    if (rt_status(ctx)) return NULL;
    const arch_entry *a = NULL;
    const rt_nn_family *fam = NULL;
    for (int i = 0; i < NARCHS && arch; i++)
        if (strcmp(archs[i].name, arch) == 0) a = &archs[i];
    for (int f = 0; f < NFAMILIES && arch && !a; f++)
        for (const char *const *n = families[f]->archs; *n; n++)
            if (strcmp(*n, arch) == 0) fam = families[f];
    if (!a && !fam) {
        char known[512] = "";
        const char *const *names = rt_model_archs();
        for (int i = 0; names[i]; i++)
            snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "", names[i]);
        rt_fail(ctx, RT_EINVAL, "model: unknown arch '%s' (known: %s)", arch ? arch : "(null)", known);
        return NULL;
    }
    rt_model_opts o = opts ? *opts : (rt_model_opts){0};
    if (!o.in_channels) o.in_channels = 3;
    if (!o.in_size) o.in_size = 32;
    if (!o.num_classes) o.num_classes = 10;
    if (!o.hidden) o.hidden = 256;
    if (!o.in_features) o.in_features = o.in_channels * o.in_size * o.in_size;
    if (o.in_channels < 0 || o.in_size < 0 || o.num_classes < 0 || o.hidden < 0 || o.in_features < 0) {
        rt_fail(ctx, RT_EINVAL, "model %s: negative option (in_channels %d, in_size %d, num_classes %d, hidden %d, "
                "in_features %d)", arch, o.in_channels, o.in_size, o.num_classes, o.hidden, o.in_features);
        return NULL;
    }
    rt_model *m = calloc(1, sizeof *m);
    if (!m) {
        rt_fail(ctx, RT_ENOMEM, "model %s: out of memory", arch);
        return NULL;
    }
    snprintf(m->arch, sizeof m->arch, "%s", arch);
    m->opts = o;
    rt_params_init(&m->params);
    m->root = fam        ? fam->build(ctx, &m->params, arch, &o, m)
              : a->depth ? rt_nn_resnet_cifar(ctx, &m->params, a->depth, a->filters, &o, m)
                         : rt_nn_mlp(ctx, &m->params, &o, m);
    if (!m->root || rt_params_finalize(ctx, &m->params)) {
        rt_model_free(m);
        return NULL;
    }
    rt_rng rng;
    rt_rng_seed(&rng, seed);
    if (fam) fam->init(m, &rng);
    else rt_nn_init_tree(m->root, &rng, a->depth != 0);
    return m;
}

rt_tensor *rt_model_forward(rt_ctx *ctx, rt_model *m, rt_tensor *x, rt_taps *taps) {
    if (rt_status(ctx)) return NULL;
    if (!m) {
        rt_fail(ctx, RT_EINVAL, "model: NULL");
        return NULL;
    }
    return rt_module_forward(m->root, ctx, x, taps);
}

void rt_model_train(rt_model *m, int training) {
    if (m) rt_module_train(m->root, training);
}

void rt_model_free(rt_model *m) {
    if (!m) return;
    rt_module_free(m->root);
    rt_params_free(&m->params);
    free(m);
}
