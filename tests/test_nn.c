/* Parameters, layers and models: the parameter set's layout, binding and look-ahead; finite-
 * difference checks of every layer and of a whole tiny ResNet; state_dict names against PyTorch's
 * (tests/fixtures/resnet_keys.txt, from tools/resnet_keys.py); taps; train/eval; initialisation;
 * errors naming the layer. Run from the repository root (fixtures are read from tests/fixtures). */
#include "retort/retort.h"
#include "test.h"
#include "test_util.h"

static float *randn(int64_t n, uint64_t seed, float scale) {
    float *d = malloc((size_t)n * sizeof(float));
    rt_test_fill_normal(d, n, seed);
    for (int64_t i = 0; i < n; i++) d[i] *= scale;
    return d;
}

/* Random values in every parameter (and BN buffers kept valid: var > 0), so checks do not run
 * at the special values 1 and 0 of a fresh init. */
static void randomize(rt_paramset *ps, uint64_t seed) {
    rt_rng r;
    rt_rng_seed(&r, seed);
    for (int i = 0; i < ps->count; i++) {
        rt_param *p = ps->items[i];
        for (size_t k = 0; k < p->numel; k++) {
            float v = 0.5f * rt_rng_normal(&r);
            if (p->kind == RT_PARAM)
                p->t.data[k] = v;
            else if (strstr(p->name, "running_var"))
                p->t.data[k] = 0.5f + v * v;
            else if (strstr(p->name, "running_mean"))
                p->t.data[k] = v;
        }
    }
}

/* ---- the parameter set ---- */

TEST(paramset_layout_and_names) {
    rt_ctx *ctx = rt_ctx_new();
    rt_paramset ps;
    rt_params_init(&ps);
    rt_tensor *w = rt_params_add(ctx, &ps, "fc.weight", RT_PARAM, 2, (int64_t[]){2, 3});
    rt_tensor *b = rt_params_add(ctx, &ps, "fc.bias", RT_PARAM, 1, (int64_t[]){2});
    rt_tensor *rm = rt_params_add(ctx, &ps, "bn.running_mean", RT_BUFFER, 1, (int64_t[]){3});
    rt_tensor *nbt = rt_params_add(ctx, &ps, "bn.num_batches_tracked", RT_BUFFER, 0, NULL);
    rt_tensor *g = rt_params_add(ctx, &ps, "bn.weight", RT_PARAM, 1, (int64_t[]){3});
    CHECK(w && b && rm && nbt && g && rt_status(ctx) == 0);
    CHECK(ps.count == 5 && ps.n == 11 && ps.nbuf == 4);
    /* duplicates are an error naming the parameter; the set is unchanged */
    CHECK(rt_params_add(ctx, &ps, "fc.bias", RT_PARAM, 1, (int64_t[]){2}) == NULL);
    CHECKF(rt_status(ctx) == RT_EINVAL && strstr(rt_errmsg(ctx), "duplicate") && strstr(rt_errmsg(ctx), "fc.bias"),
           "%s", rt_errmsg(ctx));
    CHECK(ps.count == 5 && ps.n == 11);
    rt_clear_error(ctx);
    CHECK(rt_params_finalize(ctx, &ps) == 0);
    rt_param *pw = rt_params_find(&ps, "fc.weight"), *pb = rt_params_find(&ps, "fc.bias");
    rt_param *pm = rt_params_find(&ps, "bn.running_mean"), *pn = rt_params_find(&ps, "bn.num_batches_tracked");
    rt_param *pg = rt_params_find(&ps, "bn.weight");
    CHECK(pw && pb && pm && pn && pg && rt_params_find(&ps, "fc") == NULL);
    CHECK(&pw->t == w && &pg->t == g); /* the views modules hold are the set's */
    CHECK(pw->offset == 0 && pb->offset == 6 && pg->offset == 8 && pm->offset == 0 && pn->offset == 3);
    CHECK(w->data == ps.data && b->data == ps.data + 6 && g->data == ps.data + 8);
    CHECK(w->grad == ps.grad && b->grad == ps.grad + 6 && g->grad == ps.grad + 8);
    CHECK(rm->data == ps.buffers && nbt->data == ps.buffers + 3 && rm->grad == NULL && nbt->grad == NULL);
    CHECK(w->requires_grad && b->requires_grad && g->requires_grad && !rm->requires_grad);
    CHECK(!pw->no_decay && pb->no_decay && pg->no_decay && pn->is_int && !pm->is_int && !pw->is_int);
    CHECK(nbt->ndim == 0 && rt_numel(nbt) == 1 && strcmp(w->name, "fc.weight") == 0);
    for (size_t i = 0; i < ps.n; i++) CHECK(ps.data[i] == 0 && ps.grad[i] == 0);
    /* no additions after finalize */
    CHECK(rt_params_add(ctx, &ps, "late", RT_PARAM, 1, (int64_t[]){1}) == NULL && rt_status(ctx) == RT_ESTATE);
    rt_clear_error(ctx);
    for (size_t i = 0; i < ps.n; i++) ps.grad[i] = 1;
    rt_params_zero_grad(&ps);
    for (size_t i = 0; i < ps.n; i++) CHECK(ps.grad[i] == 0);
    /* bind re-points data and grad; NULL, NULL restores the set's own */
    float other[11], other_g[11];
    rt_params_bind(&ps, other, other_g);
    CHECK(w->data == other && b->data == other + 6 && g->grad == other_g + 8 && ps.bound_data == other);
    CHECK(rm->data == ps.buffers); /* buffers are not re-pointed */
    rt_params_bind(&ps, NULL, NULL);
    CHECK(w->data == ps.data && g->grad == ps.grad + 8 && ps.bound_grad == ps.grad);
    /* lookahead: dst = theta - xi * g */
    for (size_t i = 0; i < ps.n; i++) ps.data[i] = (float)i, other_g[i] = 0.5f * (float)i - 1;
    rt_params_lookahead(&ps, other, 0.1f, other_g);
    for (size_t i = 0; i < ps.n; i++) CHECK(other[i] == (float)i - 0.1f * other_g[i]);
    rt_params_free(&ps);
    CHECK(ps.count == 0 && ps.data == NULL);
    rt_ctx_free(ctx);
}

/* Logits and the gradient of a CE loss of a tiny resnet8, into out (B*K) and the bound grads. */
static int step(rt_ctx *ctx, rt_model *m, rt_tensor *x, const int32_t *y, float *logits_out) {
    rt_tensor *logits = rt_model_forward(ctx, m, x, NULL);
    rt_tensor *loss = rt_cross_entropy(ctx, logits, y, 0, RT_MEAN);
    if (!loss || rt_backward(ctx, loss)) return -1;
    memcpy(logits_out, logits->data, (size_t)rt_numel(logits) * sizeof(float));
    rt_step_reset(ctx);
    return 0;
}

TEST(params_bind_lookahead_matches_overwritten_model) {
    rt_ctx *ctx = rt_ctx_new();
    rt_model_opts o = {.in_channels = 3, .in_size = 8, .num_classes = 3};
    rt_model *a = rt_model_new(ctx, "resnet8", &o, 7), *b = rt_model_new(ctx, "resnet8", &o, 7);
    CHECKF(a && b, "%s", rt_errmsg(ctx));
    size_t n = a->params.n;
    rt_tensor *x = rt_test_tensor(4, (int64_t[]){2, 3, 8, 8}, 3, 0);
    int32_t y[2] = {0, 2};
    float *theta = malloc(n * sizeof(float)), *g = randn((int64_t)n, 11, 1.0f);
    float *shadow = malloc(n * sizeof(float)), *shadow_g = calloc(n, sizeof(float));
    memcpy(theta, a->params.data, n * sizeof(float));
    float l0[6], l1[6], l2[6], l3[6];
    CHECKF(step(ctx, a, x, y, l0) == 0, "%s", rt_errmsg(ctx));
    rt_params_zero_grad(&a->params);
    /* theta' = theta - xi g, evaluated through bound views */
    rt_params_lookahead(&a->params, shadow, 0.5f, g);
    rt_params_bind(&a->params, shadow, shadow_g);
    CHECKF(step(ctx, a, x, y, l1) == 0, "%s", rt_errmsg(ctx));
    rt_params_bind(&a->params, NULL, NULL);
    CHECK(memcmp(theta, a->params.data, n * sizeof(float)) == 0); /* theta untouched */
    for (size_t i = 0; i < n; i++) CHECK(a->params.grad[i] == 0); /* gradients went to the bound buffer */
    double gs = 0;
    for (size_t i = 0; i < n; i++) gs += fabs(shadow_g[i]);
    CHECK(gs > 0);
    /* the same as a model whose own parameters are theta' */
    memcpy(b->params.data, shadow, n * sizeof(float));
    CHECK(step(ctx, b, x, y, l2) == 0);
    CHECK(memcmp(l1, l2, sizeof l1) == 0);
    CHECK(memcmp(shadow_g, b->params.grad, n * sizeof(float)) == 0);
    CHECK(memcmp(l0, l1, sizeof l0) != 0); /* and the look-ahead did change something */
    /* after unbinding, the forward is theta's again */
    CHECK(step(ctx, a, x, y, l3) == 0);
    CHECK(memcmp(l0, l3, sizeof l0) == 0);
    free(theta), free(g), free(shadow), free(shadow_g);
    rt_test_tensor_free(x);
    rt_model_free(a);
    rt_model_free(b);
    rt_ctx_free(ctx);
}

/* A training-mode look-ahead updates BN running statistics: bound to a copy, the real ones stay. */
TEST(params_bind_buffers_keeps_running_stats) {
    rt_ctx *ctx = rt_ctx_new();
    rt_model_opts o = {.in_channels = 3, .in_size = 8, .num_classes = 3};
    rt_model *a = rt_model_new(ctx, "resnet8", &o, 7);
    CHECKF(a, "%s", rt_errmsg(ctx));
    size_t nb = a->params.nbuf;
    CHECK(nb > 0);
    rt_tensor *x = rt_test_tensor(4, (int64_t[]){2, 3, 8, 8}, 3, 0);
    int32_t y[2] = {0, 2};
    float *before = malloc(nb * sizeof(float)), *shadow = malloc(nb * sizeof(float));
    memcpy(before, a->params.buffers, nb * sizeof(float));
    memcpy(shadow, a->params.buffers, nb * sizeof(float));
    float l[6];
    rt_params_bind_buffers(&a->params, shadow);
    CHECKF(step(ctx, a, x, y, l) == 0, "%s", rt_errmsg(ctx));
    CHECK(memcmp(before, a->params.buffers, nb * sizeof(float)) == 0); /* the real statistics untouched */
    CHECK(memcmp(before, shadow, nb * sizeof(float)) != 0);            /* the copy took the update */
    /* parameter binding leaves the buffer binding alone, and NULL goes back to the set's own */
    rt_params_bind(&a->params, NULL, NULL);
    CHECK(a->params.bound_buffers == shadow);
    rt_params_bind_buffers(&a->params, NULL);
    CHECKF(step(ctx, a, x, y, l) == 0, "%s", rt_errmsg(ctx));
    CHECK(memcmp(before, a->params.buffers, nb * sizeof(float)) != 0); /* now the real ones move */
    free(before), free(shadow);
    rt_test_tensor_free(x);
    rt_model_free(a);
    rt_ctx_free(ctx);
}

/* ---- gradient checks of the layers ---- */

typedef struct {
    rt_module *m;
} fwd_user;

static rt_tensor *f_module(rt_ctx *ctx, rt_tensor **in, void *u) {
    return rt_module_forward(((fwd_user *)u)->m, ctx, in[0], NULL);
}

/* Checks module m (parameters in ps, randomised) w.r.t. its input of the given shape and every
 * parameter. */
static int check_module(rt_ctx *ctx, rt_module *m, rt_paramset *ps, int ndim, const int64_t *xshape, int max_points,
                        char *rep) {
    rt_tensor *in[64];
    int n = 0;
    in[n++] = rt_test_tensor(ndim, xshape, 99, 1);
    for (int i = 0; i < ps->count && n < 64; i++)
        if (ps->items[i]->kind == RT_PARAM) in[n++] = &ps->items[i]->t;
    fwd_user u = {m};
    rt_gradcheck_opts o = {.max_points = max_points};
    int rc = rt_gradcheck(ctx, f_module, &u, n, in, &o, rep);
    rt_test_tensor_free(in[0]);
    return rc;
}

TEST(gradcheck_linear_layer) {
    for (int bias = 0; bias < 2; bias++) {
        rt_ctx *ctx = rt_ctx_new();
        rt_paramset ps;
        rt_params_init(&ps);
        rt_module *m = rt_nn_linear(ctx, &ps, "fc", 5, 4, bias);
        CHECK(m && rt_params_finalize(ctx, &ps) == 0);
        CHECK(ps.count == 1 + bias && rt_params_find(&ps, "fc.weight")->t.shape[0] == 4);
        randomize(&ps, 1);
        char rep[512];
        CHECKF(check_module(ctx, m, &ps, 2, (int64_t[]){3, 5}, 0, rep) == 0, "bias %d: %s / %s", bias, rep,
               rt_errmsg(ctx));
        rt_module_free(m);
        rt_params_free(&ps);
        rt_ctx_free(ctx);
    }
}

TEST(gradcheck_conv2d_layer) {
    struct {
        int64_t in, out;
        int k, stride, pad, groups, bias;
    } v[] = {{3, 4, 3, 1, 1, 1, 1}, {4, 2, 3, 2, 0, 1, 0}, {4, 6, 3, 1, 1, 2, 1}, {3, 5, 1, 2, 0, 1, 0}};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        rt_ctx *ctx = rt_ctx_new();
        rt_paramset ps;
        rt_params_init(&ps);
        rt_module *m =
            rt_nn_conv2d(ctx, &ps, "conv", v[i].in, v[i].out, v[i].k, v[i].stride, v[i].pad, v[i].groups, v[i].bias);
        CHECKF(m && rt_params_finalize(ctx, &ps) == 0, "%s", rt_errmsg(ctx));
        rt_tensor *w = &rt_params_find(&ps, "conv.weight")->t;
        CHECK(w->shape[0] == v[i].out && w->shape[1] == v[i].in / v[i].groups && w->shape[2] == v[i].k);
        CHECK((rt_params_find(&ps, "conv.bias") != NULL) == v[i].bias);
        randomize(&ps, 2 + i);
        char rep[512];
        CHECKF(check_module(ctx, m, &ps, 4, (int64_t[]){2, v[i].in, 5, 5}, 0, rep) == 0, "variant %zu: %s / %s", i, rep,
               rt_errmsg(ctx));
        rt_module_free(m);
        rt_params_free(&ps);
        rt_ctx_free(ctx);
    }
}

TEST(gradcheck_batchnorm_layer_train_and_eval) {
    for (int training = 1; training >= 0; training--) {
        rt_ctx *ctx = rt_ctx_new();
        rt_paramset ps;
        rt_params_init(&ps);
        rt_module *m = rt_nn_batchnorm2d(ctx, &ps, "bn", 3);
        CHECK(m && rt_params_finalize(ctx, &ps) == 0);
        CHECK(ps.count == 5 && ps.n == 6 && ps.nbuf == 7);
        randomize(&ps, 5);
        rt_module_train(m, training);
        char rep[512];
        CHECKF(check_module(ctx, m, &ps, 4, (int64_t[]){2, 3, 3, 3}, 0, rep) == 0, "training %d: %s / %s", training,
               rep, rt_errmsg(ctx));
        rt_module_free(m);
        rt_params_free(&ps);
        rt_ctx_free(ctx);
    }
}

TEST(gradcheck_relu_and_sequential) {
    rt_ctx *ctx = rt_ctx_new();
    rt_paramset ps;
    rt_params_init(&ps);
    rt_module *relu = rt_nn_relu();
    rt_module *kids[4]; /* one statement each: the declaration order is the state_dict order */
    kids[0] = rt_nn_conv2d(ctx, &ps, "features.0", 2, 3, 3, 1, 1, 1, 0);
    kids[1] = rt_nn_batchnorm2d(ctx, &ps, "features.1", 3);
    kids[2] = rt_nn_relu();
    kids[3] = rt_nn_conv2d(ctx, &ps, "features.3", 3, 2, 3, 2, 1, 1, 1);
    rt_module *seq = rt_nn_sequential(ctx, "features", 4, kids);
    CHECKF(relu && seq && rt_params_finalize(ctx, &ps) == 0, "%s", rt_errmsg(ctx));
    CHECK(seq->nchildren == 4 && strcmp(seq->children[2]->name, "features.2") == 0);
    CHECK(strcmp(ps.items[1]->name, "features.1.weight") == 0 && ps.count == 8);
    randomize(&ps, 6);
    char rep[512];
    rt_paramset none;
    rt_params_init(&none);
    CHECKF(check_module(ctx, relu, &none, 2, (int64_t[]){3, 4}, 0, rep) == 0, "relu: %s / %s", rep, rt_errmsg(ctx));
    CHECKF(check_module(ctx, seq, &ps, 4, (int64_t[]){2, 2, 4, 4}, 0, rep) == 0, "seq: %s / %s", rep, rt_errmsg(ctx));
    rt_module_free(relu);
    rt_module_free(seq);
    rt_params_free(&ps);
    rt_ctx_free(ctx);
}

typedef struct {
    rt_model *m;
} model_user;
static rt_tensor *f_model(rt_ctx *ctx, rt_tensor **in, void *u) {
    return rt_model_forward(ctx, ((model_user *)u)->m, in[0], NULL);
}

/* The whole network, w.r.t. the input and all 29 parameter tensors. Finite differences in float32
 * through ReLUs and batch norm on a batch of 2 are only trustworthy where the function is smooth at
 * the step size: with ~9000 ReLU units a step of 1e-3 crosses several kinks at once (which the
 * step-halving kink test cannot see) and train-mode BN over 8 values per channel is strongly
 * curved, so at the default settings 1-30% disagreements are the norm, not bugs. The check therefore
 * runs where FD is exact: eval mode (BN affine, running statistics first brought to the batch's by
 * training-mode passes) with BN biases near 4 and gains in [0.5, 1), which keeps every ReLU input
 * positive, so the network is affine around the point and a large step (0.1) keeps float32 rounding
 * far below the tolerance (measured worst errors 0.1-0.5% over 30 seeds, tolerance 1%). This checks
 * the wiring: residual and downsample paths, pooling, classifier, every parameter's gradient. ReLU
 * masks and train-mode BN are checked per layer above and, in the whole network, against PyTorch
 * to 1e-4 (tests/test_torch_step.c). */
TEST(gradcheck_resnet8_whole) {
    int threads = rt_threads();
    rt_set_threads(1); /* ~1000 tiny forwards: thread start-up would dominate */
    rt_ctx *ctx = rt_ctx_new();
    rt_model_opts o = {.in_channels = 3, .in_size = 8, .num_classes = 2};
    rt_model *m = rt_model_new(ctx, "resnet8", &o, 3);
    CHECKF(m, "%s", rt_errmsg(ctx));
    rt_rng r;
    rt_rng_seed(&r, 17);
    for (int i = 0; i < m->params.count; i++) {
        rt_param *p = m->params.items[i];
        if (p->kind != RT_PARAM || p->t.ndim != 1 || strncmp(p->name, "fc.", 3) == 0) continue;
        int bias = strstr(p->name, ".bias") != NULL;
        for (size_t k = 0; k < p->numel; k++)
            p->t.data[k] = bias ? 4.0f + 0.2f * rt_rng_normal(&r) : 0.5f + 0.5f * (float)rt_rng_uniform(&r);
    }
    rt_tensor *in[64];
    int n = 0;
    in[n++] = rt_test_tensor(4, (int64_t[]){2, 3, 8, 8}, 5, 1);
    int prev = rt_set_grad_enabled(ctx, 0);
    for (int it = 0; it < 60; it++) { /* running stats -> the batch's (0.9^60 of the init left) */
        CHECKF(rt_model_forward(ctx, m, in[0], NULL), "%s", rt_errmsg(ctx));
        rt_step_reset(ctx);
    }
    rt_set_grad_enabled(ctx, prev);
    rt_model_train(m, 0);
    for (int i = 0; i < m->params.count; i++)
        if (m->params.items[i]->kind == RT_PARAM) in[n++] = &m->params.items[i]->t;
    CHECK(n == 30); /* x and the 29 parameter tensors of resnet8 */
    /* the regime holds: no ReLU input near its kink */
    rt_taps taps = {0};
    CHECKF(rt_model_forward(ctx, m, in[0], &taps), "%s", rt_errmsg(ctx));
    for (int t = 0; t < 7; t++) {
        rt_tensor *f = rt_taps_get(&taps, m->tap_names[t]);
        for (int64_t e = 0; e < rt_numel(f); e++) CHECKF(f->data[e] > 0.5f, "%s has %g", m->tap_names[t], f->data[e]);
    }
    rt_step_reset(ctx);
    model_user u = {m};
    rt_gradcheck_opts go = {.eps = 0.1, .max_points = 6};
    char rep[512];
    CHECKF(rt_gradcheck(ctx, f_model, &u, n, in, &go, rep) == 0, "%s / %s", rep, rt_errmsg(ctx));
    rt_test_tensor_free(in[0]);
    rt_model_free(m);
    rt_ctx_free(ctx);
    rt_set_threads(threads);
}

TEST(gradcheck_mlp) {
    rt_ctx *ctx = rt_ctx_new();
    rt_model_opts o = {.in_features = 6, .hidden = 5, .num_classes = 3};
    rt_model *m = rt_model_new(ctx, "mlp", &o, 4);
    CHECKF(m, "%s", rt_errmsg(ctx));
    CHECK(m->params.count == 6 && strcmp(m->params.items[4]->name, "fc3.weight") == 0);
    CHECK(m->params.n == 6 * 5 + 5 + 5 * 5 + 5 + 5 * 3 + 3 && m->params.nbuf == 0);
    rt_tensor *in[7] = {rt_test_tensor(2, (int64_t[]){4, 6}, 8, 1)};
    for (int i = 0; i < 6; i++) in[1 + i] = &m->params.items[i]->t;
    model_user u = {m};
    char rep[512];
    CHECKF(rt_gradcheck(ctx, f_model, &u, 7, in, NULL, rep) == 0, "%s / %s", rep, rt_errmsg(ctx));
    /* images are flattened: (2,1,2,3) has 6 features */
    rt_tensor *img = rt_wrap(ctx, in[0]->data, 4, (int64_t[]){2, 1, 2, 3});
    rt_taps taps = {0};
    rt_tensor *y = rt_model_forward(ctx, m, img, &taps);
    CHECKF(y && y->shape[0] == 2 && y->shape[1] == 3, "%s", rt_errmsg(ctx));
    CHECK(taps.n == m->ntaps && rt_taps_get(&taps, "pool")->shape[1] == 5 && rt_taps_get(&taps, "logits") == y);
    CHECK(rt_model_forward(ctx, m, rt_wrap(ctx, in[0]->data, 2, (int64_t[]){3, 8}), NULL) == NULL);
    CHECKF(rt_status(ctx) == RT_ESHAPE && strstr(rt_errmsg(ctx), "(3,8)"), "%s", rt_errmsg(ctx));
    rt_test_tensor_free(in[0]);
    rt_model_free(m);
    rt_ctx_free(ctx);
}

/* ---- the zoo against PyTorch's state_dicts ---- */

TEST(resnet_state_dict_matches_pytorch) {
    FILE *f = fopen("tests/fixtures/resnet_keys.txt", "r");
    CHECKF(f, "cannot open tests/fixtures/resnet_keys.txt (run from the repository root)");
    const char *archs[] = {"resnet8", "resnet20", "resnet8x4", "resnet32x4"};
    rt_ctx *ctx = rt_ctx_new();
    char line[512];
    for (size_t a = 0; a < 4; a++) {
        rt_model *m = rt_model_new(ctx, archs[a], NULL, 1);
        CHECKF(m, "%s", rt_errmsg(ctx));
        int k = 0, lines = 0;
        rewind(f);
        while (fgets(line, sizeof line, f)) {
            char arch[64], name[256], shape[128];
            if (line[0] == '#' || sscanf(line, "%63s %255s %127s", arch, name, shape) != 3) continue;
            if (strcmp(arch, archs[a]) != 0) continue;
            lines++;
            CHECKF(k < m->params.count, "%s: PyTorch has more entries than Retort (%s)", archs[a], name);
            rt_param *p = m->params.items[k++];
            char s[96];
            CHECKF(strcmp(p->name, name) == 0, "%s entry %d: Retort '%s', PyTorch '%s'", archs[a], k - 1, p->name,
                   name);
            CHECKF(strcmp(rt_shape_str(&p->t, s), shape) == 0, "%s %s: Retort %s, PyTorch %s", archs[a], name, s,
                   shape);
            CHECK(p->kind == (strstr(name, "running_") || strstr(name, "num_batches") ? RT_BUFFER : RT_PARAM));
        }
        CHECKF(lines > 0 && k == m->params.count, "%s: %d PyTorch entries, %d in Retort", archs[a], lines,
               m->params.count);
        rt_model_free(m);
    }
    fclose(f);
    rt_ctx_free(ctx);
}

TEST(every_arch_builds_and_unknown_is_an_error) {
    rt_ctx *ctx = rt_ctx_new();
    /* the ResNets and the MLP (other families are tested in their own files) */
    const char *mine[] = {"resnet8",  "resnet14",  "resnet20",  "resnet32",   "resnet44",
                          "resnet56", "resnet110", "resnet8x4", "resnet32x4", "mlp"};
    for (size_t i = 0; i < sizeof mine / sizeof mine[0]; i++) {
        int listed = 0;
        for (const char *const *a = rt_model_archs(); *a; a++) listed += strcmp(*a, mine[i]) == 0;
        CHECKF(listed == 1, "%s listed %d times by rt_model_archs", mine[i], listed);
        rt_model *m = rt_model_new(ctx, mine[i], &(rt_model_opts){.in_features = 12}, 1);
        CHECKF(m && strcmp(m->arch, mine[i]) == 0 && m->ntaps > 0, "%s: %s", mine[i], rt_errmsg(ctx));
        rt_model_free(m);
    }
    CHECK(rt_model_new(ctx, "resnet9", NULL, 1) == NULL);
    CHECKF(rt_status(ctx) == RT_EINVAL && strstr(rt_errmsg(ctx), "resnet9") && strstr(rt_errmsg(ctx), "resnet32x4") &&
               strstr(rt_errmsg(ctx), "mlp"),
           "%s", rt_errmsg(ctx));
    rt_ctx_free(ctx);
}

/* ---- taps, train/eval, init ---- */

TEST(resnet_taps_shapes_and_semantics) {
    struct {
        const char *arch;
        int c, size;
        int64_t f[4];
    } v[] = {{"resnet8", 3, 32, {16, 16, 32, 64}},
             {"resnet8x4", 3, 16, {32, 64, 128, 256}},
             {"resnet14", 1, 28, {16, 16, 32, 64}}};
    for (size_t i = 0; i < 3; i++) {
        rt_ctx *ctx = rt_ctx_new();
        rt_model_opts o = {.in_channels = v[i].c, .in_size = v[i].size, .num_classes = 7};
        rt_model *m = rt_model_new(ctx, v[i].arch, &o, 2);
        CHECKF(m, "%s", rt_errmsg(ctx));
        int64_t s = v[i].size, s2 = (s + 1) / 2, s3 = (s2 + 1) / 2;
        rt_tensor *x = rt_test_tensor(4, (int64_t[]){2, v[i].c, s, s}, 1, 0);
        rt_taps taps = {0};
        rt_tensor *logits = rt_model_forward(ctx, m, x, &taps);
        CHECKF(logits, "%s", rt_errmsg(ctx));
        struct {
            const char *name;
            int64_t shape[4];
            int ndim;
        } want[] = {{"stem", {2, v[i].f[0], s, s}, 4},
                    {"layer1.pre", {2, v[i].f[1], s, s}, 4},
                    {"layer1", {2, v[i].f[1], s, s}, 4},
                    {"layer2.pre", {2, v[i].f[2], s2, s2}, 4},
                    {"layer2", {2, v[i].f[2], s2, s2}, 4},
                    {"layer3.pre", {2, v[i].f[3], s3, s3}, 4},
                    {"layer3", {2, v[i].f[3], s3, s3}, 4},
                    {"pool", {2, v[i].f[3]}, 2},
                    {"logits", {2, 7}, 2}};
        CHECK(m->ntaps == 9 && taps.n == 9);
        for (int k = 0; k < 9; k++) {
            rt_tensor *t = rt_taps_get(&taps, want[k].name);
            CHECKF(t && strcmp(m->tap_names[k], want[k].name) == 0, "%s: tap %s", v[i].arch, want[k].name);
            rt_tensor w;
            rt_tensor_init(&w, NULL, want[k].ndim, want[k].shape);
            char a[96], b[96];
            CHECKF(rt_same_shape(t, &w), "%s tap %s: %s, want %s", v[i].arch, want[k].name, rt_shape_str(t, a),
                   rt_shape_str(&w, b));
        }
        CHECK(rt_taps_get(&taps, "logits") == logits);
        /* layerK = relu(layerK.pre), and pre has negative values (it is taken before the ReLU) */
        for (int st = 1; st <= 3; st++) {
            char pn[32], ln[32];
            snprintf(pn, sizeof pn, "layer%d.pre", st);
            snprintf(ln, sizeof ln, "layer%d", st);
            rt_tensor *pre = rt_taps_get(&taps, pn), *out = rt_taps_get(&taps, ln);
            int64_t neg = 0;
            for (int64_t e = 0; e < rt_numel(pre); e++) {
                CHECK(out->data[e] == (pre->data[e] > 0 ? pre->data[e] : 0));
                neg += pre->data[e] < 0;
            }
            CHECK(neg > 0);
        }
        /* pool = spatial mean of layer3 */
        rt_tensor *l3 = rt_taps_get(&taps, "layer3"), *pool = rt_taps_get(&taps, "pool");
        for (int64_t c = 0; c < 2 * v[i].f[3]; c++) {
            double sum = 0;
            for (int64_t e = 0; e < s3 * s3; e++) sum += l3->data[c * s3 * s3 + e];
            CHECK_CLOSE(pool->data[c], sum / (s3 * s3), 1e-5);
        }
        rt_test_tensor_free(x);
        rt_model_free(m);
        rt_ctx_free(ctx);
    }
}

TEST(batchnorm_train_eval_switch) {
    rt_ctx *ctx = rt_ctx_new();
    rt_paramset ps;
    rt_params_init(&ps);
    rt_module *bn = rt_nn_batchnorm2d(ctx, &ps, "bn", 2);
    CHECK(bn && rt_params_finalize(ctx, &ps) == 0);
    rt_rng r;
    rt_rng_seed(&r, 1);
    rt_module_init(bn, &r);
    float *w = rt_params_find(&ps, "bn.weight")->t.data, *b = rt_params_find(&ps, "bn.bias")->t.data;
    float *rm = rt_params_find(&ps, "bn.running_mean")->t.data, *rv = rt_params_find(&ps, "bn.running_var")->t.data;
    float *nbt = rt_params_find(&ps, "bn.num_batches_tracked")->t.data;
    CHECK(w[0] == 1 && w[1] == 1 && b[0] == 0 && rm[1] == 0 && rv[0] == 1 && rv[1] == 1 && nbt[0] == 0);
    w[1] = 2, b[1] = 0.5f;
    rt_tensor *x = rt_test_tensor(4, (int64_t[]){3, 2, 2, 2}, 4, 0);
    for (int64_t i = 0; i < rt_numel(x); i++) x->data[i] = 3 + 2 * x->data[i]; /* mean ~3, var ~4 */
    /* training: batch statistics, running stats move by momentum 0.1, the batch is counted */
    CHECK(bn->training == 1);
    rt_tensor *yt = rt_module_forward(bn, ctx, x, NULL);
    CHECKF(yt, "%s", rt_errmsg(ctx));
    double mean = 0, var = 0;
    for (int n = 0; n < 3; n++)
        for (int e = 0; e < 4; e++) mean += x->data[n * 8 + 4 + e];
    mean /= 12;
    for (int n = 0; n < 3; n++)
        for (int e = 0; e < 4; e++) var += pow(x->data[n * 8 + 4 + e] - mean, 2);
    CHECK_CLOSE(rm[1], 0.1 * mean, 1e-5);
    CHECK_CLOSE(rv[1], 0.9 + 0.1 * var / 11, 1e-5);
    CHECK_CLOSE(yt->data[4], 2 * (x->data[4] - mean) / sqrt(var / 12 + 1e-5) + 0.5, 1e-4);
    CHECK(nbt[0] == 1);
    /* eval: running statistics, buffers unchanged */
    float rm1 = rm[1], rv1 = rv[1];
    rt_module_train(bn, 0);
    CHECK(bn->training == 0);
    rt_tensor *ye = rt_module_forward(bn, ctx, x, NULL);
    CHECKF(ye, "%s", rt_errmsg(ctx));
    CHECK(rm[1] == rm1 && rv[1] == rv1 && nbt[0] == 1);
    for (int n = 0; n < 3; n++)
        for (int e = 0; e < 4; e++) {
            int64_t i = n * 8 + 4 + e;
            CHECK_CLOSE(ye->data[i], 2 * (x->data[i] - rm1) / sqrt(rv1 + 1e-5) + 0.5, 1e-5);
        }
    rt_test_tensor_free(x);
    rt_module_free(bn);
    rt_params_free(&ps);
    /* rt_model_train reaches every module */
    rt_model *m = rt_model_new(ctx, "resnet8", NULL, 1);
    CHECK(m && m->root->training);
    rt_model_train(m, 0);
    rt_module *stack[256];
    int sp = 0, seen = 0;
    stack[sp++] = m->root;
    while (sp) {
        rt_module *q = stack[--sp];
        CHECK(q->training == 0);
        seen++;
        for (int i = 0; i < q->nchildren; i++) stack[sp++] = q->children[i];
    }
    CHECK(seen > 20);
    rt_model_free(m);
    rt_ctx_free(ctx);
}

TEST(init_follows_pytorch_and_the_seed) {
    rt_ctx *ctx = rt_ctx_new();
    rt_model *a = rt_model_new(ctx, "resnet32x4", NULL, 42), *b = rt_model_new(ctx, "resnet32x4", NULL, 42);
    rt_model *c = rt_model_new(ctx, "resnet32x4", NULL, 43);
    CHECKF(a && b && c, "%s", rt_errmsg(ctx));
    CHECK(memcmp(a->params.data, b->params.data, a->params.n * sizeof(float)) == 0);
    CHECK(memcmp(a->params.data, c->params.data, a->params.n * sizeof(float)) != 0);
    /* kaiming_normal_(fan_out, relu): std sqrt(2 / (out * k * k)) */
    const char *convs[] = {"layer3.4.conv2.weight", "layer1.0.downsample.0.weight", "conv1.weight"};
    for (int i = 0; i < 3; i++) {
        rt_param *p = rt_params_find(&a->params, convs[i]);
        CHECK(p);
        double s1 = 0, s2 = 0, fan_out = (double)(p->t.shape[0] * p->t.shape[2] * p->t.shape[3]);
        for (size_t k = 0; k < p->numel; k++) s1 += p->t.data[k], s2 += (double)p->t.data[k] * p->t.data[k];
        double mean = s1 / p->numel, sd = sqrt(s2 / p->numel - mean * mean), want = sqrt(2 / fan_out);
        double tol = 4 / sqrt(2.0 * p->numel); /* 4 standard errors of the sample sd */
        CHECKF(fabs(sd / want - 1) < tol && fabs(mean) < 4 * want / sqrt((double)p->numel), "%s: sd %g want %g mean %g",
               convs[i], sd, want, mean);
    }
    /* Linear: uniform(+-1/sqrt(in)) for weight and bias */
    rt_param *fw = rt_params_find(&a->params, "fc.weight"), *fb = rt_params_find(&a->params, "fc.bias");
    double bound = 1 / sqrt(256.0), mx = 0;
    for (size_t k = 0; k < fw->numel; k++) mx = fmax(mx, fabs(fw->t.data[k]));
    CHECK(mx <= bound && mx > 0.95 * bound);
    for (size_t k = 0; k < fb->numel; k++) CHECK(fabs(fb->t.data[k]) <= bound && fb->t.data[k] != 0);
    /* BN: weight 1, bias 0, running mean 0, var 1, nothing tracked */
    for (int i = 0; i < a->params.count; i++) {
        rt_param *p = a->params.items[i];
        float want = -1;
        if (strstr(p->name, "bn") || strstr(p->name, "downsample.1")) {
            if (strstr(p->name, "weight") || strstr(p->name, "running_var"))
                want = 1;
            else
                want = 0;
        }
        if (want < 0) continue;
        for (size_t k = 0; k < p->numel; k++) CHECKF(p->t.data[k] == want, "%s[%zu] = %g", p->name, k, p->t.data[k]);
    }
    rt_model_free(a), rt_model_free(b), rt_model_free(c);
    rt_ctx_free(ctx);
}

/* ---- errors name the layer ---- */

TEST(errors_name_the_layer) {
    rt_ctx *ctx = rt_ctx_new();
    rt_paramset ps;
    rt_params_init(&ps);
    rt_module *kids[3];
    kids[0] = rt_nn_linear(ctx, &ps, "head.0", 4, 3, 1);
    kids[1] = rt_nn_relu();
    kids[2] = rt_nn_linear(ctx, &ps, "head.2", 5, 2, 1);
    rt_module *head = rt_nn_sequential(ctx, "head", 3, kids);
    CHECK(head && rt_params_finalize(ctx, &ps) == 0);
    rt_tensor *x = rt_test_tensor(2, (int64_t[]){2, 4}, 1, 0);
    CHECK(rt_module_forward(head, ctx, x, NULL) == NULL);
    CHECKF(rt_status(ctx) == RT_ESHAPE && strstr(rt_errmsg(ctx), "linear") && strstr(rt_errmsg(ctx), "(2,3)") &&
               strstr(rt_errmsg(ctx), "(layer 'head.2')"),
           "%s", rt_errmsg(ctx));
    CHECK(rt_scope(ctx)[0] == 0); /* scopes are popped on the error path too */
    rt_clear_error(ctx);
    /* inside an outer scope the names nest */
    rt_scope_push(ctx, "student");
    CHECK(rt_module_forward(head, ctx, x, NULL) == NULL);
    CHECKF(strstr(rt_errmsg(ctx), "(layer 'student.head.2')"), "%s", rt_errmsg(ctx));
    rt_scope_pop(ctx);
    rt_clear_error(ctx);
    /* a model given the wrong channel count */
    rt_model *m = rt_model_new(ctx, "resnet8", NULL, 1);
    rt_tensor *x1 = rt_test_tensor(4, (int64_t[]){1, 1, 8, 8}, 1, 0);
    CHECK(m && rt_model_forward(ctx, m, x1, NULL) == NULL);
    CHECKF(rt_status(ctx) == RT_ESHAPE && strstr(rt_errmsg(ctx), "(1,1,8,8)"), "%s", rt_errmsg(ctx));
    rt_clear_error(ctx);
    /* Sequential children must carry the Sequential's names */
    rt_paramset ps2;
    rt_params_init(&ps2);
    CHECK(rt_nn_sequential(ctx, "s", 1, (rt_module *[]){rt_nn_linear(ctx, &ps2, "t.0", 2, 2, 0)}) == NULL);
    CHECKF(strstr(rt_errmsg(ctx), "expected 's.0'"), "%s", rt_errmsg(ctx));
    rt_clear_error(ctx);
    CHECK(rt_nn_conv2d(ctx, &ps2, "c", 3, 4, 3, 1, 1, 2, 0) == NULL && rt_status(ctx) == RT_EINVAL);
    rt_params_free(&ps2);
    rt_test_tensor_free(x);
    rt_test_tensor_free(x1);
    rt_model_free(m);
    rt_module_free(head);
    rt_params_free(&ps);
    rt_ctx_free(ctx);
}
