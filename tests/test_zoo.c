/* The CIFAR zoo beyond the ResNets (WRN, VGG, MobileNetV2, ShuffleNetV1/V2) against PyTorch twins of
 * RepDistiller's definitions (tools/zoo_keys.py): state_dict names, order and shapes
 * (tests/fixtures/zoo_keys.txt); logits of every full-size arch in eval and training mode on 3x32x32
 * and 1x28x28 inputs, tap names, shapes and magnitudes (tests/fixtures/zoo_logits.safetensors, the
 * weights derived from the parameter names by a generator both sides implement); tap semantics;
 * training-mode gradients of reduced variants of each family against PyTorch's float64 ones
 * (tests/fixtures/zoo_grads.safetensors); finite differences through each new block type;
 * initialisation; errors. Run from the repository root. */
#include "nn/nn_impl.h"
#include "retort/retort.h"
#include "test.h"
#include "test_util.h"

#define KEYS_FIXTURE "tests/fixtures/zoo_keys.txt"
#define LOGITS_FIXTURE "tests/fixtures/zoo_logits.safetensors"

static const char *const new_archs[] = {"wrn_16_1", "wrn_16_2", "wrn_40_1",    "wrn_40_2",  "vgg8",
                                        "vgg11",    "vgg13",    "MobileNetV2", "ShuffleV1", "ShuffleV2"};
#define NNEW ((int)(sizeof new_archs / sizeof new_archs[0]))

/* ---- the weight generator of tools/zoo_keys.py (fill_value): every value a float32 exactly ---- */

static uint64_t fnv1a64(const char *s) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001B3ull;
    return h;
}

/* top 23 bits of splitmix64(h + i), in [0, 1) */
static double uniform_at(uint64_t h, uint64_t i) {
    uint64_t z = h + i + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 41) / (double)(1 << 23);
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static void fill_param(rt_param *p) {
    uint64_t h = fnv1a64(p->name);
    double scale = 0;
    if (p->t.ndim >= 2) {
        size_t fan_in = p->numel / (size_t)p->t.shape[0];
        int k = 0;
        while (((size_t)1 << (2 * k)) < fan_in) k++;
        scale = ldexp(1.0, 1 - k);
    }
    for (size_t i = 0; i < p->numel; i++) {
        double u = uniform_at(h, i), v;
        if (ends_with(p->name, "num_batches_tracked"))
            v = 0;
        else if (ends_with(p->name, "running_var") || (ends_with(p->name, ".weight") && p->t.ndim == 1))
            v = 0.5 + u;
        else if (ends_with(p->name, ".bias"))
            v = 0.25 + 0.5 * u;
        else if (ends_with(p->name, "running_mean"))
            v = (2 * u - 1) * 0.25;
        else
            v = (2 * u - 1) * scale;
        p->t.data[i] = (float)v;
    }
}

static void fill_model(rt_model *m) {
    for (int i = 0; i < m->params.count; i++) fill_param(m->params.items[i]);
}

/* ---- state_dicts ---- */

TEST(zoo_archs_are_registered) {
    rt_ctx *ctx = rt_ctx_new();
    for (int a = 0; a < NNEW; a++) {
        int found = 0;
        for (const char *const *n = rt_model_archs(); *n; n++) found += !strcmp(*n, new_archs[a]);
        CHECKF(found == 1, "%s listed %d times by rt_model_archs()", new_archs[a], found);
        rt_model *m = rt_model_new(ctx, new_archs[a], NULL, 1);
        CHECKF(m && !strcmp(m->arch, new_archs[a]) && m->ntaps > 0, "%s: %s", new_archs[a], rt_errmsg(ctx));
        rt_model_free(m);
    }
    CHECK(rt_model_new(ctx, "wrn_16_3", NULL, 1) == NULL);
    CHECKF(rt_status(ctx) == RT_EINVAL && strstr(rt_errmsg(ctx), "wrn_16_3") && strstr(rt_errmsg(ctx), "ShuffleV2"),
           "%s", rt_errmsg(ctx));
    rt_ctx_free(ctx);
}

TEST(zoo_state_dicts_match_pytorch) {
    FILE *f = fopen(KEYS_FIXTURE, "r");
    CHECKF(f, "cannot open %s (run from the repository root)", KEYS_FIXTURE);
    rt_ctx *ctx = rt_ctx_new();
    char line[512];
    for (int a = 0; a < NNEW; a++) {
        rt_model *m = rt_model_new(ctx, new_archs[a], NULL, 1);
        CHECKF(m, "%s", rt_errmsg(ctx));
        int k = 0, lines = 0;
        rewind(f);
        while (fgets(line, sizeof line, f)) {
            char arch[64], name[256], shape[128];
            if (line[0] == '#' || sscanf(line, "%63s %255s %127s", arch, name, shape) != 3) continue;
            if (strcmp(arch, new_archs[a]) != 0) continue;
            lines++;
            CHECKF(k < m->params.count, "%s: PyTorch has more entries than Retort (%s)", arch, name);
            rt_param *p = m->params.items[k++];
            char s[96];
            CHECKF(strcmp(p->name, name) == 0, "%s entry %d: Retort '%s', PyTorch '%s'", arch, k - 1, p->name, name);
            CHECKF(strcmp(rt_shape_str(&p->t, s), shape) == 0, "%s %s: Retort %s, PyTorch %s", arch, name, s, shape);
            CHECK(p->kind == (strstr(name, "running_") || strstr(name, "num_batches") ? RT_BUFFER : RT_PARAM));
        }
        CHECKF(lines > 0 && k == m->params.count, "%s: %d PyTorch entries, %d in Retort", new_archs[a], lines,
               m->params.count);
        rt_model_free(m);
    }
    fclose(f);
    rt_ctx_free(ctx);
}

/* ---- logits and taps against PyTorch ---- */

static double rel_diff(double a, double b) { return fabs(a - b) / fmax(fmax(fabs(a), fabs(b)), 1e-30); }

/* The metadata "taps.<arch>.<size>" ("name (shape);...") against the model's tap list and the taps
 * of the forward; the stats tensor against each tap's mean |t| and rms. Returns 0 or fails. */
static int check_taps(rt_ctx *ctx, const rt_safetensors *st, const rt_model *m, const rt_taps *taps, const char *key,
                      char *why) {
    char mkey[128], skey[128], list[2048];
    snprintf(mkey, sizeof mkey, "taps.%s", key);
    snprintf(skey, sizeof skey, "tapstat.%s", key);
    const char *meta = rt_st_meta(st, mkey);
    if (!meta || strlen(meta) >= sizeof list) return sprintf(why, "no metadata %s", mkey), 1;
    snprintf(list, sizeof list, "%s", meta);
    float stats[2 * RT_MAX_TAPS];
    int n = 0;
    for (char *save = NULL, *e = strtok_r(list, ";", &save); e; e = strtok_r(NULL, ";", &save), n++) {
        char name[64], shape[96], got[96];
        if (sscanf(e, "%63s %95s", name, shape) != 2 || n >= m->ntaps) return sprintf(why, "%s: entry '%s'", key, e), 1;
        if (strcmp(m->tap_names[n], name) != 0)
            return sprintf(why, "%s: tap %d is '%s', PyTorch's '%s'", key, n, m->tap_names[n], name), 1;
        rt_tensor *t = rt_taps_get(taps, name);
        if (!t) return sprintf(why, "%s: tap '%s' missing from the forward", key, name), 1;
        if (strcmp(rt_shape_str(t, got), shape) != 0)
            return sprintf(why, "%s: tap %s is %s, PyTorch's %s", key, name, got, shape), 1;
    }
    if (n != m->ntaps || taps->n != m->ntaps)
        return sprintf(why, "%s: %d PyTorch taps, model lists %d, forward filled %d", key, n, m->ntaps, taps->n), 1;
    if (rt_st_get_f32(ctx, st, skey, stats, 2, (int64_t[]){n, 2})) return sprintf(why, "%s", rt_errmsg(ctx)), 1;
    for (int i = 0; i < n; i++) {
        rt_tensor *t = rt_taps_get(taps, m->tap_names[i]);
        int64_t len = rt_numel(t);
        float *d = malloc((size_t)len * sizeof(float));
        rt_copy_to(t, d);
        double sa = 0, s2 = 0;
        for (int64_t k = 0; k < len; k++) sa += fabs(d[k]), s2 += (double)d[k] * d[k];
        free(d);
        double mabs = sa / len, rms = sqrt(s2 / len);
        if (rel_diff(mabs, stats[2 * i]) > 1e-4 || rel_diff(rms, stats[2 * i + 1]) > 1e-4)
            return sprintf(why, "%s: tap %s mean|t| %.7g rms %.7g, PyTorch %.7g %.7g", key, m->tap_names[i], mabs, rms,
                           stats[2 * i], stats[2 * i + 1]),
                   1;
    }
    return 0;
}

TEST(zoo_logits_and_taps_match_pytorch) {
    rt_ctx *ctx = rt_ctx_new();
    rt_safetensors *st = NULL;
    CHECKF(rt_st_read(ctx, LOGITS_FIXTURE, &st) == 0, "%s", rt_errmsg(ctx));
    struct {
        const char *tag;
        int c, size;
        float *x;
    } in[2] = {{"32", 3, 32, NULL}, {"28", 1, 28, NULL}};
    for (int s = 0; s < 2; s++) {
        int64_t shape[4] = {2, in[s].c, in[s].size, in[s].size};
        in[s].x = malloc((size_t)(2 * in[s].c * in[s].size * in[s].size) * sizeof(float));
        char name[8];
        snprintf(name, sizeof name, "x%s", in[s].tag);
        CHECKF(rt_st_get_f32(ctx, st, name, in[s].x, 4, shape) == 0, "%s", rt_errmsg(ctx));
    }
    rt_set_grad_enabled(ctx, 0);
    double worst = 0;
    for (int a = 0; a < NNEW; a++) {
        for (int s = 0; s < 2; s++) {
            rt_model_opts o = {.in_channels = in[s].c, .in_size = in[s].size, .num_classes = 10};
            rt_model *m = rt_model_new(ctx, new_archs[a], &o, 1);
            CHECKF(m, "%s", rt_errmsg(ctx));
            fill_model(m);
            for (int training = 0; training < 2; training++) {
                /* the header lives in the step arena: made anew after every rt_step_reset */
                rt_tensor *x = rt_wrap(ctx, in[s].x, 4, (int64_t[]){2, in[s].c, in[s].size, in[s].size});
                char key[96], name[128], why[512];
                snprintf(key, sizeof key, "%s.%s", new_archs[a], in[s].tag);
                snprintf(name, sizeof name, "logits.%s.%s", key, training ? "train" : "eval");
                float want[20];
                CHECKF(rt_st_get_f32(ctx, st, name, want, 2, (int64_t[]){2, 10}) == 0, "%s", rt_errmsg(ctx));
                rt_model_train(m, training);
                rt_taps taps = {0};
                rt_tensor *y = rt_model_forward(ctx, m, x, &taps);
                CHECKF(y && y->ndim == 2 && y->shape[0] == 2 && y->shape[1] == 10, "%s: %s", name, rt_errmsg(ctx));
                double e = rt_test_maxrel(y->data, want, 20);
                worst = fmax(worst, e);
                CHECKF(e <= 1e-4, "%s differs from PyTorch by %.3g of its max magnitude", name, e);
                CHECK(rt_taps_get(&taps, "logits") == y);
                if (!training) CHECKF(check_taps(ctx, st, m, &taps, key, why) == 0, "%s", why);
                rt_step_reset(ctx);
            }
            rt_model_free(m);
        }
    }
    printf("  worst logits difference: %.3g of the max magnitude\n", worst);
    free(in[0].x);
    free(in[1].x);
    rt_st_free(st);
    rt_ctx_free(ctx);
}

/* ---- tap semantics ---- */

static rt_tensor *tap(const rt_taps *t, const char *name) { return rt_taps_get(t, name); }

/* y == the training-mode BatchNorm2d named bn (its weight and bias in ps) applied to x? */
static int bn_matches(const rt_paramset *ps, const char *bn, const rt_tensor *x, const rt_tensor *y) {
    char wn[160], bname[160];
    snprintf(wn, sizeof wn, "%s.weight", bn);
    snprintf(bname, sizeof bname, "%s.bias", bn);
    const rt_param *w = rt_params_find(ps, wn), *b = rt_params_find(ps, bname);
    if (!w || !b || !x || !y || !rt_same_shape(x, y)) return 0;
    int64_t N = x->shape[0], C = x->shape[1], S = x->shape[2] * x->shape[3];
    for (int64_t c = 0; c < C; c++) {
        double s1 = 0, s2 = 0;
        for (int64_t n = 0; n < N; n++)
            for (int64_t i = 0; i < S; i++) s1 += x->data[(n * C + c) * S + i];
        double mean = s1 / (N * S);
        for (int64_t n = 0; n < N; n++)
            for (int64_t i = 0; i < S; i++) s2 += pow(x->data[(n * C + c) * S + i] - mean, 2);
        double inv = 1 / sqrt(s2 / (N * S) + 1e-5);
        for (int64_t n = 0; n < N; n++)
            for (int64_t i = 0; i < S; i++) {
                int64_t k = (n * C + c) * S + i;
                double want = (x->data[k] - mean) * inv * w->t.data[c] + b->t.data[c];
                if (fabs(y->data[k] - want) > 1e-4 * fmax(1, fabs(want))) return 0;
            }
    }
    return 1;
}

TEST(zoo_tap_semantics) {
    rt_ctx *ctx = rt_ctx_new();
    rt_set_grad_enabled(ctx, 0);
    const char *archs[] = {"wrn_16_1", "vgg8", "MobileNetV2", "ShuffleV1", "ShuffleV2"};
    for (int a = 0; a < 5; a++) {
        rt_model_opts o = {.in_channels = 3, .in_size = 16, .num_classes = 7};
        rt_model *m = rt_model_new(ctx, archs[a], &o, 3);
        CHECKF(m, "%s", rt_errmsg(ctx));
        fill_model(m);
        rt_tensor *x = rt_test_tensor(4, (int64_t[]){2, 3, 16, 16}, 4, 0);
        rt_taps taps = {0};
        rt_tensor *y = rt_model_forward(ctx, m, x, &taps);
        CHECKF(y && taps.n == m->ntaps, "%s: %s", archs[a], rt_errmsg(ctx));
        int nstage = a == 1 || a == 2 ? 4 : 3;
        for (int k = 1; k <= nstage; k++) {
            char pn[32], ln[32];
            snprintf(pn, sizeof pn, "layer%d.pre", k);
            snprintf(ln, sizeof ln, "layer%d", k);
            rt_tensor *pre = tap(&taps, pn), *out = tap(&taps, ln);
            CHECKF(pre && out && rt_same_shape(pre, out), "%s: %s / %s", archs[a], pn, ln);
            int64_t n = rt_numel(out), neg = 0, C = out->shape[1], HW = n / (2 * C);
            for (int64_t e = 0; e < n; e++) neg += pre->data[e] < 0;
            if (a == 2) { /* linear bottlenecks: the preact feature is the output itself */
                CHECK(pre == out);
                continue;
            }
            CHECKF(neg > 0, "%s: %s has no negative values", archs[a], pn);
            if (a == 1 || a == 3) /* VGG, ShuffleV1: out = relu(pre) */
                for (int64_t e = 0; e < n; e++) CHECK(out->data[e] == fmaxf(pre->data[e], 0));
            if (a == 4) /* ShuffleV2: out = shuffle(concat(x1, relu(bn3))), pre = concat(x1, bn3) unshuffled */
                for (int64_t b = 0; b < 2; b++)
                    for (int64_t c = 0; c < C; c++)
                        for (int64_t i = 0; i < HW; i++) {
                            float p = pre->data[(b * C + c) * HW + i];
                            int64_t dst = (c % (C / 2)) * 2 + c / (C / 2); /* group-2 shuffle */
                            CHECK(out->data[(b * C + dst) * HW + i] == (c < C / 2 ? p : fmaxf(p, 0)));
                        }
        }
        rt_tensor *pool = tap(&taps, "pool");
        if (a == 0) { /* WRN: layerK.pre = the next BN of layerK; pool = mean of relu(layer3.pre) */
            const char *bn[3] = {"block2.layer.0.bn1", "block3.layer.0.bn1", "bn1"};
            for (int k = 0; k < 3; k++) {
                char ln[32], pn[32];
                snprintf(ln, sizeof ln, "layer%d", k + 1);
                snprintf(pn, sizeof pn, "layer%d.pre", k + 1);
                CHECKF(bn_matches(&m->params, bn[k], tap(&taps, ln), tap(&taps, pn)), "wrn: %s is not %s(%s)", pn,
                       bn[k], ln);
            }
            rt_tensor *pre = tap(&taps, "layer3.pre");
            int64_t C = pre->shape[1], HW = pre->shape[2] * pre->shape[3];
            for (int64_t bc = 0; bc < 2 * C; bc++) {
                double sum = 0;
                for (int64_t i = 0; i < HW; i++) sum += fmax(pre->data[bc * HW + i], 0);
                CHECK_CLOSE(pool->data[bc], sum / HW, 1e-5);
            }
            CHECK(tap(&taps, "layer1.pre")->shape[1] == tap(&taps, "layer1")->shape[1]);
            CHECK(tap(&taps, "stem")->shape[1] == 16 && tap(&taps, "layer3")->shape[2] == 4);
        }
        CHECK(pool->ndim == 2 && pool->shape[0] == 2 && tap(&taps, "logits") == y && y->shape[1] == 7);
        rt_test_tensor_free(x);
        rt_model_free(m);
        rt_step_reset(ctx);
    }
    rt_ctx_free(ctx);
}

/* ---- reduced variants: gradients against PyTorch, finite differences per block ---- */

#define GRADS_FIXTURE "tests/fixtures/zoo_grads.safetensors"

/* The reduced configurations of tools/zoo_keys.py (REDUCED): 2 input channels, 3 classes. */
typedef rt_module *(*builder)(rt_ctx *ctx, rt_paramset *ps, const rt_model_opts *o, rt_model *m);

static rt_module *b_shuffle_v2(rt_ctx *ctx, rt_paramset *ps, const rt_model_opts *o, rt_model *m) {
    return rt_nn_shufflenet_v2(ctx, ps, (const int64_t[]){8, 12, 16, 12}, (const int[]){1, 1, 2}, o, m);
}
static rt_module *b_shuffle_v1(rt_ctx *ctx, rt_paramset *ps, const rt_model_opts *o, rt_model *m) {
    return rt_nn_shufflenet_v1(ctx, ps, (const int64_t[]){36, 48, 60}, (const int[]){1, 2, 1}, 3, o, m);
}
static rt_module *b_wrn(rt_ctx *ctx, rt_paramset *ps, const rt_model_opts *o, rt_model *m) {
    return rt_nn_wrn(ctx, ps, 16, (const int64_t[]){3, 4, 6, 8}, o, m);
}
static rt_module *b_mbv2(rt_ctx *ctx, rt_paramset *ps, const rt_model_opts *o, rt_model *m) {
    return rt_nn_mobilenetv2(ctx, ps, 3, 0.0625, 16, o, m);
}
static rt_module *b_vgg(rt_ctx *ctx, rt_paramset *ps, const rt_model_opts *o, rt_model *m) {
    static const int64_t c[5][4] = {{3}, {4}, {4, 5}, {6}, {6}};
    return rt_nn_vgg(ctx, ps, c, o, m);
}

static const struct {
    const char *name;
    builder b;
    int size;
} reduced[] = {{"shufflenet_v2", b_shuffle_v2, 16},
               {"shufflenet_v1", b_shuffle_v1, 16},
               {"wrn", b_wrn, 16},
               {"mobilenetv2", b_mbv2, 32},
               {"vgg", b_vgg, 16}};
#define NREDUCED ((int)(sizeof reduced / sizeof reduced[0]))

/* A model built by a family builder directly, filled by the generator. */
static rt_model *build_reduced(rt_ctx *ctx, int v) {
    rt_model *m = calloc(1, sizeof *m);
    snprintf(m->arch, sizeof m->arch, "%s", reduced[v].name);
    m->opts = (rt_model_opts){.in_channels = 2, .in_size = reduced[v].size, .num_classes = 3};
    rt_params_init(&m->params);
    m->root = reduced[v].b(ctx, &m->params, &m->opts, m);
    if (!m->root || rt_params_finalize(ctx, &m->params)) {
        rt_model_free(m);
        return NULL;
    }
    fill_model(m);
    return m;
}

/* Max difference of got and want over the max magnitude of want, floored at 1e-3 of the model's
 * largest gradient: a parameter whose true gradient vanishes (a bias before a training-mode BN)
 * holds float32 rounding only. */
static double grad_err(const float *got, const float *want, int64_t n, double floor) {
    double m = floor, e = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) return INFINITY;
        m = fmax(m, fabs(want[i]));
        e = fmax(e, fabs((double)got[i] - want[i]));
    }
    return e / m;
}

TEST(zoo_gradients_match_pytorch) {
    rt_ctx *ctx = rt_ctx_new();
    rt_safetensors *st = NULL;
    CHECKF(rt_st_read(ctx, GRADS_FIXTURE, &st) == 0, "%s", rt_errmsg(ctx));
    float r[6];
    CHECKF(rt_st_get_f32(ctx, st, "r", r, 2, (int64_t[]){2, 3}) == 0, "%s", rt_errmsg(ctx));
    double worst = 0;
    for (int v = 0; v < NREDUCED; v++) {
        rt_model *m = build_reduced(ctx, v);
        CHECKF(m, "%s: %s", reduced[v].name, rt_errmsg(ctx));
        int64_t S = reduced[v].size, xshape[4] = {2, 2, S, S};
        rt_tensor *x = rt_test_tensor(4, xshape, 1, 1);
        char name[300];
        snprintf(name, sizeof name, "x.%s", reduced[v].name);
        CHECKF(rt_st_get_f32(ctx, st, name, x->data, 4, xshape) == 0, "%s", rt_errmsg(ctx));
        /* every parameter of the fixture is one of the model's, and the reverse */
        int nfix = 0;
        snprintf(name, sizeof name, "grad.%s.", reduced[v].name);
        for (int i = 0; i < st->count; i++) nfix += strncmp(st->entries[i].name, name, strlen(name)) == 0;
        int nparam = 0;
        for (int i = 0; i < m->params.count; i++) nparam += m->params.items[i]->kind == RT_PARAM;
        CHECKF(nfix == nparam + 1, "%s: fixture has %d gradients, the model %d parameters (+ x)", reduced[v].name, nfix,
               nparam);

        rt_model_train(m, 1);
        rt_params_zero_grad(&m->params);
        rt_tensor *y = rt_model_forward(ctx, m, x, NULL);
        CHECKF(y && rt_backward_seed(ctx, y, r) == 0, "%s: %s", reduced[v].name, rt_errmsg(ctx));
        float want_y[6];
        snprintf(name, sizeof name, "logits.%s", reduced[v].name);
        CHECKF(rt_st_get_f32(ctx, st, name, want_y, 2, (int64_t[]){2, 3}) == 0, "%s", rt_errmsg(ctx));
        double e = rt_test_maxrel(y->data, want_y, 6);
        CHECKF(e <= 1e-4, "%s: logits differ by %.3g", reduced[v].name, e);

        /* the gradients: x, then every parameter */
        int n = 0;
        const rt_tensor *t[200];
        const char *tn[200];
        t[n] = x, tn[n++] = "x";
        for (int i = 0; i < m->params.count && n < 200; i++)
            if (m->params.items[i]->kind == RT_PARAM) t[n] = &m->params.items[i]->t, tn[n++] = m->params.items[i]->name;
        float *want[200];
        double gmax = 0;
        for (int k = 0; k < n; k++) {
            int64_t len = rt_numel(t[k]);
            want[k] = malloc((size_t)len * sizeof(float));
            snprintf(name, sizeof name, "grad.%s.%s", reduced[v].name, tn[k]);
            CHECKF(rt_st_get_f32(ctx, st, name, want[k], t[k]->ndim, t[k]->shape) == 0, "%s", rt_errmsg(ctx));
            for (int64_t i = 0; i < len; i++) gmax = fmax(gmax, fabs(want[k][i]));
        }
        double vworst = 0;
        const char *wname = "";
        for (int k = 0; k < n; k++) {
            e = grad_err(t[k]->grad, want[k], rt_numel(t[k]), 1e-3 * gmax);
            if (e > vworst) vworst = e, wname = tn[k];
            free(want[k]);
        }
        printf("  %-14s worst gradient difference %.3g (%s)\n", reduced[v].name, vworst, wname);
        worst = fmax(worst, vworst);
        CHECKF(vworst <= 1e-3, "%s: gradient of %s differs from PyTorch's by %.3g of its max magnitude",
               reduced[v].name, wname, vworst);
        rt_test_tensor_free(x);
        rt_model_free(m);
        rt_step_reset(ctx);
    }
    rt_st_free(st);
    rt_ctx_free(ctx);
}

typedef struct {
    rt_module *m;
} module_user;
static rt_tensor *f_module(rt_ctx *ctx, rt_tensor **in, void *u) {
    return rt_module_forward(((module_user *)u)->m, ctx, in[0], NULL);
}

/* Finite differences through one block of a reduced model, w.r.t. its input and the parameters
 * under its name, in eval mode. Training mode is left to zoo_gradients_match_pytorch: there a BN's
 * batch statistics tie every activation of a channel to every input, so a parameter's loss crosses
 * some ReLU's kink within any usable step (PyTorch's own float64 differences of these models agree
 * with the exact gradient only below steps of 1e-6), and float32 differences cannot resolve it. */
static int gradcheck_block(rt_ctx *ctx, rt_model *m, rt_module *block, int64_t c, int64_t s, uint64_t seed, char *rep) {
    rt_tensor *in[64];
    int n = 0;
    in[n++] = rt_test_tensor(4, (int64_t[]){2, c, s, s}, seed, 1);
    size_t len = strlen(block->name);
    for (int i = 0; i < m->params.count && n < 64; i++) {
        rt_param *p = m->params.items[i];
        if (p->kind == RT_PARAM && !strncmp(p->name, block->name, len) && p->name[len] == '.') in[n++] = &p->t;
    }
    module_user u = {block};
    rt_gradcheck_opts go = {.max_points = 6, .seed = seed};
    rt_module_train(block, 0);
    int rc = n > 1 ? rt_gradcheck(ctx, f_module, &u, n, in, &go, rep)
                   : rt_fail(ctx, RT_EINVAL, "block %s has no parameters", block->name);
    rt_test_tensor_free(in[0]);
    return rc;
}

TEST(zoo_gradcheck_blocks) {
    /* (variant, child of the root (a stage), block in it (-1: the child itself), input channels);
     * 3x3 inputs: the fewer activations a parameter moves, the fewer ReLU kinks its differences
     * can straddle unseen */
    struct {
        int v, stage, block;
        int64_t c;
    } b[] = {
        {0, 2, 0, 24}, /* ShuffleV2 DownBlock */
        {0, 4, 1, 16}, /* ShuffleV2 BasicBlock (split, concat, shuffle) */
        {1, 2, 0, 24}, /* ShuffleV1 stride-2 Bottleneck, g = 1 (avg-pool shortcut, concat) */
        {1, 3, 1, 48}, /* ShuffleV1 stride-1 Bottleneck: grouped 1x1 convs, shuffle, sum */
        {2, 1, 0, 3},  /* WRN block with convShortcut */
        {2, 2, 1, 6},  /* WRN block, identity shortcut */
        {3, 3, 0, 1},  /* MobileNetV2 inverted residual, stride 2 */
        {3, 2, 1, 1},  /* MobileNetV2 inverted residual with the residual sum */
        {4, 2, -1, 4}, /* VGG block of two conv-BN pairs */
    };
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++) {
        rt_ctx *ctx = rt_ctx_new();
        rt_model *m = build_reduced(ctx, b[i].v);
        CHECKF(m, "%s", rt_errmsg(ctx));
        CHECK(b[i].stage < m->root->nchildren);
        rt_module *blk = m->root->children[b[i].stage];
        if (b[i].block >= 0) {
            CHECK(b[i].block < blk->nchildren);
            blk = blk->children[b[i].block];
        }
        char rep[600];
        CHECKF(gradcheck_block(ctx, m, blk, b[i].c, 3, 1 + i, rep) == 0, "%s %s: %s / %s", reduced[b[i].v].name,
               blk->name, rep, rt_errmsg(ctx));
        rt_model_free(m);
        rt_ctx_free(ctx);
    }
}

/* ---- initialisation as RepDistiller's constructors ---- */

static double std_of(const rt_param *p, double *maxabs) {
    double s = 0, s2 = 0;
    *maxabs = 0;
    for (size_t i = 0; i < p->numel; i++) {
        s += p->t.data[i];
        s2 += (double)p->t.data[i] * p->t.data[i];
        *maxabs = fmax(*maxabs, fabs(p->t.data[i]));
    }
    double mean = s / p->numel;
    return sqrt(s2 / p->numel - mean * mean);
}

static int all_equal(const rt_param *p, float v) {
    for (size_t i = 0; i < p->numel; i++)
        if (p->t.data[i] != v) return 0;
    return 1;
}

TEST(zoo_init_follows_repdistiller) {
    rt_ctx *ctx = rt_ctx_new();
    double mx, sd;
    /* VGG: convs N(0, 2/(9*out)) with zero bias, BN 1/0, classifier N(0, 0.01) with zero bias */
    rt_model *m = rt_model_new(ctx, "vgg8", NULL, 5);
    CHECKF(m, "%s", rt_errmsg(ctx));
    rt_param *p = rt_params_find(&m->params, "block3.0.weight");
    sd = std_of(p, &mx);
    CHECKF(fabs(sd / sqrt(2.0 / (9 * 512)) - 1) < 0.02, "vgg8 conv std %g", sd);
    CHECK(all_equal(rt_params_find(&m->params, "block3.0.bias"), 0));
    CHECK(all_equal(rt_params_find(&m->params, "block3.1.weight"), 1));
    CHECK(all_equal(rt_params_find(&m->params, "block3.1.bias"), 0));
    CHECK(all_equal(rt_params_find(&m->params, "block3.1.running_var"), 1));
    sd = std_of(rt_params_find(&m->params, "classifier.weight"), &mx);
    CHECKF(fabs(sd / 0.01 - 1) < 0.05, "vgg8 classifier std %g", sd);
    CHECK(all_equal(rt_params_find(&m->params, "classifier.bias"), 0));
    rt_model_free(m);
    /* WRN: kaiming fan_out convs, Linear weight PyTorch's default, zero bias */
    m = rt_model_new(ctx, "wrn_16_2", NULL, 5);
    CHECKF(m, "%s", rt_errmsg(ctx));
    sd = std_of(rt_params_find(&m->params, "block3.layer.1.conv2.weight"), &mx);
    CHECKF(fabs(sd / sqrt(2.0 / (9 * 128)) - 1) < 0.02, "wrn conv std %g", sd);
    sd = std_of(rt_params_find(&m->params, "fc.weight"), &mx);
    CHECKF(mx <= 1 / sqrt(128.0) && fabs(sd / (1 / sqrt(3 * 128.0)) - 1) < 0.1, "wrn fc std %g max %g", sd, mx);
    CHECK(all_equal(rt_params_find(&m->params, "fc.bias"), 0));
    rt_model_free(m);
    /* MobileNetV2: kaiming fan_out (depthwise: 9 * channels), classifier N(0, 0.01), zero bias */
    m = rt_model_new(ctx, "MobileNetV2", NULL, 5);
    CHECKF(m, "%s", rt_errmsg(ctx));
    p = rt_params_find(&m->params, "blocks.5.1.conv.3.weight");
    CHECK(p && p->t.shape[0] == 480 && p->t.shape[1] == 1);
    sd = std_of(p, &mx);
    CHECKF(fabs(sd / sqrt(2.0 / (9 * 480)) - 1) < 0.05, "mobilenetv2 dw conv std %g", sd);
    sd = std_of(rt_params_find(&m->params, "classifier.0.weight"), &mx);
    CHECKF(fabs(sd / 0.01 - 1) < 0.05, "mobilenetv2 classifier std %g", sd);
    CHECK(all_equal(rt_params_find(&m->params, "classifier.0.bias"), 0));
    rt_model_free(m);
    /* ShuffleNets: PyTorch's defaults, uniform(+-1/sqrt(fan_in)) for convs and the Linear */
    m = rt_model_new(ctx, "ShuffleV1", NULL, 5);
    CHECKF(m, "%s", rt_errmsg(ctx));
    p = rt_params_find(&m->params, "layer2.3.conv3.weight"); /* (480, 120/3, 1, 1) */
    CHECK(p && p->t.shape[1] == 40);
    sd = std_of(p, &mx);
    CHECKF(mx <= 1 / sqrt(40.0) && fabs(sd / (1 / sqrt(3 * 40.0)) - 1) < 0.05, "shufflev1 conv std %g max %g", sd, mx);
    rt_model *same = rt_model_new(ctx, "ShuffleV1", NULL, 5), *other = rt_model_new(ctx, "ShuffleV1", NULL, 6);
    CHECK(same && other && same->params.n == m->params.n);
    CHECK(memcmp(same->params.data, m->params.data, m->params.n * sizeof(float)) == 0);
    CHECK(memcmp(other->params.data, m->params.data, m->params.n * sizeof(float)) != 0);
    rt_model_free(same);
    rt_model_free(other);
    rt_model_free(m);
    rt_ctx_free(ctx);
}

/* ---- errors ---- */

TEST(zoo_errors_name_the_model) {
    rt_ctx *ctx = rt_ctx_new();
    const char *what[] = {"wrn", "vgg", "mobilenetv2", "shufflenet_v1", "shufflenet_v2"};
    const char *archs[] = {"wrn_16_1", "vgg8", "MobileNetV2", "ShuffleV1", "ShuffleV2"};
    for (int a = 0; a < 5; a++) {
        rt_model *m = rt_model_new(ctx, archs[a], &(rt_model_opts){.in_channels = 1}, 1);
        CHECKF(m, "%s", rt_errmsg(ctx));
        rt_tensor *x = rt_zeros(ctx, 4, (int64_t[]){2, 3, 32, 32});
        CHECK(rt_model_forward(ctx, m, x, NULL) == NULL);
        CHECKF(rt_status(ctx) == RT_ESHAPE && strstr(rt_errmsg(ctx), what[a]) && strstr(rt_errmsg(ctx), "(2,3,32,32)"),
               "%s: %s", archs[a], rt_errmsg(ctx));
        rt_clear_error(ctx);
        rt_model_free(m);
        rt_step_reset(ctx);
    }
    /* an input too small for the pooling schedule is an error, not a crash */
    rt_model *m = rt_model_new(ctx, "vgg8", NULL, 1);
    CHECK(m && rt_model_forward(ctx, m, rt_zeros(ctx, 4, (int64_t[]){2, 3, 4, 4}), NULL) == NULL);
    CHECKF(rt_status(ctx) == RT_ESHAPE && strstr(rt_errmsg(ctx), "maxpool2d"), "%s", rt_errmsg(ctx));
    rt_clear_error(ctx);
    rt_model_free(m);
    /* configurations the builders refuse */
    rt_paramset ps;
    rt_model scratch;
    rt_model_opts o = {.in_channels = 3, .num_classes = 10};
    struct {
        int which;
        const char *msg;
    } bad[] = {{0, "6n+4"}, {1, "stride"}, {2, "even"}, {3, "groups"}, {4, "block1"}, {5, "T 0"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rt_params_init(&ps);
        rt_module *r = NULL;
        static const int64_t vgg_empty[5][4] = {{8}, {0}, {8}, {8}, {8}};
        switch (bad[i].which) {
        case 0:
            r = rt_nn_wrn(ctx, &ps, 15, (const int64_t[]){16, 16, 32, 64}, &o, &scratch);
            break;
        case 1:
            r = rt_nn_wrn(ctx, &ps, 10, (const int64_t[]){16, 16, 16, 32}, &o, &scratch);
            break;
        case 2:
            r = rt_nn_shufflenet_v2(ctx, &ps, (const int64_t[]){10, 18, 21, 8}, (const int[]){1, 1, 1}, &o, &scratch);
            break;
        case 3:
            r = rt_nn_shufflenet_v1(ctx, &ps, (const int64_t[]){40, 80, 160}, (const int[]){1, 1, 1}, 3, &o, &scratch);
            break;
        case 4:
            r = rt_nn_vgg(ctx, &ps, vgg_empty, &o, &scratch);
            break;
        case 5:
            r = rt_nn_mobilenetv2(ctx, &ps, 0, 0.5, 1280, &o, &scratch);
            break;
        }
        CHECKF(r == NULL && rt_status(ctx) == RT_EINVAL && strstr(rt_errmsg(ctx), bad[i].msg), "case %zu: %s", i,
               rt_errmsg(ctx));
        rt_clear_error(ctx);
        rt_params_free(&ps);
    }
    rt_ctx_free(ctx);
}
