/* The profiler: off by default and switched by RETORT_PROFILE; entries that partition the wall time;
 * ops per layer forward and backward (nodes keep their forward's scope); regions, the optimiser
 * step and time outside ops; hooks inside parallel regions ignored; the JSON and the text tables. */
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include "nn/nn_impl.h"
#include "retort/retort.h"
#include "test.h"
#include "test_util.h"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

static void sleep_ms(int ms) {
    struct timespec ts = {0, (long)ms * 1000000L};
    while (nanosleep(&ts, &ts)) {
    }
}

static rt_ctx *new_ctx(void) {
    unsetenv("RETORT_PROFILE"); /* the tests decide */
    return rt_ctx_new();
}

static rt_model *small_resnet(rt_ctx *ctx) {
    return rt_model_new(ctx, "resnet8", &(rt_model_opts){.in_channels = 3, .in_size = 16, .num_classes = 10}, 3);
}

/* One training step of resnet8 on 4 x 3x16x16: forward, CE, backward, SGD, step reset. */
static int train_step(rt_ctx *ctx, rt_model *m, rt_optim *opt, float *x) {
    static const int32_t labels[4] = {1, 7, 3, 0};
    rt_params_zero_grad(&m->params);
    rt_tensor *logits = rt_model_forward(ctx, m, rt_wrap(ctx, x, 4, (int64_t[]){4, 3, 16, 16}), NULL);
    rt_tensor *loss = rt_cross_entropy(ctx, logits, labels, 0.0f, RT_MEAN);
    if (!loss || rt_backward(ctx, loss)) return 1;
    if (rt_optim_step(ctx, opt, m->params.data, m->params.grad, 0.01f)) return 1;
    rt_step_reset(ctx);
    return rt_status(ctx);
}

TEST(profile_off_by_default_and_env) {
    rt_ctx *ctx = new_ctx();
    CHECK(ctx && !rt_profile_enabled(ctx));
    rt_model *m = small_resnet(ctx);
    CHECK(m);
    float x[4 * 3 * 16 * 16];
    rt_test_fill_normal(x, 4 * 3 * 16 * 16, 1);
    rt_tensor *y = rt_model_forward(ctx, m, rt_wrap(ctx, x, 4, (int64_t[]){4, 3, 16, 16}), NULL);
    CHECK(y && y->node && !y->node->scope); /* nothing interned when off */
    rt_step_reset(ctx);
    int64_t calls = -1;
    CHECK(rt_profile_steps(ctx) == 0 && rt_profile_ms(ctx, NULL, NULL, -1, &calls) == 0 && calls == 0);
    rt_model_free(m);
    rt_ctx_free(ctx);

    setenv("RETORT_PROFILE", "1", 1);
    ctx = rt_ctx_new();
    CHECK(ctx && rt_profile_enabled(ctx));
    rt_ctx_free(ctx);
    setenv("RETORT_PROFILE", "0", 1);
    ctx = rt_ctx_new();
    CHECK(ctx && !rt_profile_enabled(ctx));
    rt_ctx_free(ctx);
    unsetenv("RETORT_PROFILE");
}

TEST(profile_env_reports_at_free) {
    char path[512];
    snprintf(path, sizeof path, "%s/rt_test_profile_XXXXXX", rt_test_tmp());
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    setenv("RETORT_PROFILE", "1", 1);
    setenv("RETORT_PROFILE_JSON", path, 1);
    rt_ctx *ctx = rt_ctx_new();
    unsetenv("RETORT_PROFILE");
    unsetenv("RETORT_PROFILE_JSON");
    rt_model *m = ctx ? small_resnet(ctx) : NULL;
    CHECK(m);
    float x[4 * 3 * 16 * 16];
    rt_test_fill_normal(x, 4 * 3 * 16 * 16, 5);
    CHECK(rt_model_forward(ctx, m, rt_wrap(ctx, x, 4, (int64_t[]){4, 3, 16, 16}), NULL));
    rt_step_reset(ctx);
    fflush(stderr);
    int saved = dup(2), devnull = open("/dev/null", O_WRONLY); /* the tables go to stderr: not in the log */
    dup2(devnull, 2);
    rt_ctx_free(ctx);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(devnull);
    FILE *f = fopen(path, "r");
    char *text = calloc(1 << 20, 1);
    size_t len = f ? fread(text, 1, (1 << 20) - 1, f) : 0;
    if (f) fclose(f);
    unlink(path);
    cJSON *j = len ? cJSON_Parse(text) : NULL;
    free(text);
    CHECK(j && cJSON_GetObjectItem(j, "steps")->valuedouble == 1);
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(j, "ops")) > 0);
    cJSON_Delete(j);
    rt_model_free(m);
}

TEST(profile_training_steps) {
    rt_ctx *ctx = new_ctx();
    rt_model *m = small_resnet(ctx);
    rt_optim_cfg oc = rt_optim_defaults(RT_OPTIM_SGD);
    oc.momentum = 0.9f;
    rt_optim *opt = m ? rt_optim_new(ctx, &oc, m->params.n) : NULL;
    CHECK(m && opt);
    float x[4 * 3 * 16 * 16];
    rt_test_fill_normal(x, 4 * 3 * 16 * 16, 2);
    CHECK(train_step(ctx, m, opt, x) == 0); /* warm-up, not profiled */

    double t0 = now_ms();
    CHECK(rt_profile_enable(ctx, 1) == RT_OK && rt_profile_enabled(ctx));
    for (int s = 0; s < 2; s++) CHECK(train_step(ctx, m, opt, x) == 0);
    double wall = now_ms() - t0;
    CHECK(rt_profile_enable(ctx, 0) == RT_OK && !rt_profile_enabled(ctx));
    CHECK(rt_profile_steps(ctx) == 2);

    /* the entries partition the time from enable to the last step reset */
    int64_t calls;
    double total = rt_profile_ms(ctx, NULL, NULL, -1, NULL);
    CHECKF(total <= wall && total >= 0.9 * wall, "entries sum to %.3f ms, wall %.3f ms", total, wall);
    double fwd = rt_profile_ms(ctx, NULL, NULL, RT_PROF_FWD, NULL),
           bwd = rt_profile_ms(ctx, NULL, NULL, RT_PROF_BWD, NULL);
    double other = rt_profile_ms(ctx, NULL, NULL, RT_PROF_OTHER, NULL);
    CHECK_CLOSE(fwd + bwd + other, total, 1e-9);
    CHECK(fwd > 0 && bwd > 0);

    /* resnet8: the stem, 3 blocks of 2 convs, 2 downsample convs = 9 convs, forward and backward */
    CHECK(rt_profile_ms(ctx, "conv2d", NULL, RT_PROF_FWD, &calls) > 0 && calls == 2 * 9);
    CHECK(rt_profile_ms(ctx, "conv2d", NULL, RT_PROF_BWD, &calls) > 0 && calls == 2 * 9);
    CHECK(rt_profile_ms(ctx, "conv2d", "layer1.0.conv1", RT_PROF_BWD, &calls) > 0 && calls == 2);
    CHECK(rt_profile_ms(ctx, "conv2d", "layer2.0.downsample.0", RT_PROF_FWD, &calls) > 0 && calls == 2);
    CHECK(rt_profile_ms(ctx, "conv2d", "layer2", -1, &calls) > 0 && calls == 2 * 2 * 3); /* prefix */
    CHECK(rt_profile_ms(ctx, "conv2d", "layer2.0.conv", -1, &calls) == 0 && calls == 0); /* not a component */
    rt_profile_ms(ctx, "cross_entropy", "", RT_PROF_FWD, &calls);                        /* outside modules */
    CHECK(calls == 2);
    rt_profile_ms(ctx, "cross_entropy", "", RT_PROF_BWD, &calls);
    CHECK(calls == 2);
    CHECK(rt_profile_ms(ctx, "optim step", NULL, RT_PROF_OTHER, &calls) > 0 && calls == 2);

    /* off: nothing more is counted */
    CHECK(train_step(ctx, m, opt, x) == 0);
    CHECK(rt_profile_steps(ctx) == 2 && rt_profile_ms(ctx, NULL, NULL, -1, NULL) == total);

    /* the JSON parses, per step, and its entries sum to the total */
    FILE *f = tmpfile();
    CHECK(f && rt_profile_json(ctx, f) == RT_OK);
    long len = ftell(f);
    char *text = calloc((size_t)len + 1, 1);
    rewind(f);
    CHECK(fread(text, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    cJSON *j = cJSON_Parse(text);
    free(text);
    CHECK(j);
    CHECK(cJSON_GetObjectItem(j, "steps")->valuedouble == 2);
    double sum = 0, conv_fwd = -1;
    cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(j, "entries")) sum += cJSON_GetObjectItem(e, "ms")->valuedouble;
    cJSON_ArrayForEach(e,
                       cJSON_GetObjectItem(j, "ops")) if (!strcmp(cJSON_GetObjectItem(e, "op")->valuestring, "conv2d"))
        conv_fwd = cJSON_GetObjectItem(e, "fwd_ms")->valuedouble;
    CHECK_CLOSE(sum, total / 2, 1e-3);
    CHECK_CLOSE(conv_fwd, rt_profile_ms(ctx, "conv2d", NULL, RT_PROF_FWD, NULL) / 2, 1e-3);
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(j, "layers")) > 10);
    cJSON_Delete(j);

    /* the tables name the ops and layers */
    f = tmpfile();
    CHECK(f && rt_profile_print(ctx, f, 5, 0) == RT_OK && rt_profile_print_layers(ctx, f, 0, 1) == RT_OK);
    len = ftell(f);
    text = calloc((size_t)len + 1, 1);
    rewind(f);
    CHECK(fread(text, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    int ok = strstr(text, "profile: 2 steps") && strstr(text, "conv2d") && strstr(text, "more)") &&
             strstr(text, "per layer (depth 1)") && strstr(text, "\n  layer1 ");
    free(text);
    CHECK(ok);

    /* reset: empty tables, the clock restarts */
    rt_profile_reset(ctx);
    CHECK(rt_profile_steps(ctx) == 0 && rt_profile_ms(ctx, NULL, NULL, -1, &calls) == 0 && calls == 0);
    rt_optim_free(opt);
    rt_model_free(m);
    rt_ctx_free(ctx);
}

TEST(profile_outside_ops_and_regions) {
    rt_ctx *ctx = new_ctx();
    rt_model *m = small_resnet(ctx);
    CHECK(m);
    rt_model_train(m, 0);
    float x[4 * 3 * 16 * 16];
    rt_test_fill_normal(x, 4 * 3 * 16 * 16, 3);
    rt_tensor *xt = rt_wrap(ctx, x, 4, (int64_t[]){4, 3, 16, 16});
    rt_set_grad_enabled(ctx, 0);
    CHECK(rt_model_forward(ctx, m, xt, NULL)); /* warm-up: thread pools, first-touch pages */
    CHECK(rt_profile_enable(ctx, 1) == RT_OK);
    sleep_ms(30); /* a data loader's wait: not the first conv's */
    rt_scope_push(ctx, "teacher");
    rt_tensor *y = rt_model_forward(ctx, m, xt, NULL);
    rt_scope_pop(ctx);
    CHECK(y);
    rt_profile_begin(ctx, "sleepy");
    sleep_ms(20);
    rt_profile_end(ctx);
#pragma omp parallel num_threads(2)
    { /* ignored: only the calling thread times */
        rt_profile_begin(ctx, "parallel");
        rt_profile_end(ctx);
    }
    rt_step_reset(ctx);
    int64_t calls;
    double outside = rt_profile_ms(ctx, "(outside ops)", NULL, RT_PROF_OTHER, NULL);
    CHECKF(outside >= 30, "outside ops %.3f ms", outside);
    CHECK(rt_profile_ms(ctx, "conv2d_bn_eval", "teacher.conv1", RT_PROF_FWD, &calls) < 30 && calls == 1);
    CHECK(rt_profile_ms(ctx, "conv2d_bn_eval", "teacher", RT_PROF_FWD, &calls) > 0 && calls == 9);
    CHECK(rt_profile_ms(ctx, "sleepy", NULL, RT_PROF_OTHER, &calls) >= 20 && calls == 1);
    rt_profile_ms(ctx, "parallel", NULL, -1, &calls);
    CHECK(calls == 0);
    rt_model_free(m);
    rt_ctx_free(ctx);
}

/* A leaf module whose work is no recorded op: in training mode it says where its op ends
 * (rt_op_end, as an in-place op that records nothing does), in eval mode it does not. */
static const rt_opdef op_nap = {"nap", NULL};
static rt_tensor *nap_forward(rt_module *m, rt_ctx *ctx, rt_tensor *x, rt_taps *taps) {
    sleep_ms(5);
    if (m->training) rt_op_end(ctx, &op_nap);
    return x;
}

TEST(profile_ops_without_records) {
    rt_ctx *ctx = new_ctx();
    rt_module *kids[2] = {rt_nn_module_alloc(ctx, sizeof(rt_module), "Nap", "", nap_forward),
                          rt_nn_module_alloc(ctx, sizeof(rt_module), "Nap", "", nap_forward)};
    rt_module *seq = rt_nn_sequential(ctx, "seq", 2, kids);
    CHECK(seq);
    kids[1]->training = 0;
    float x[4] = {0};
    CHECK(rt_profile_enable(ctx, 1) == RT_OK);
    CHECK(rt_module_forward(seq, ctx, rt_wrap(ctx, x, 1, (int64_t[]){4}), NULL));
    rt_step_reset(ctx);
    int64_t calls;
    CHECK(rt_profile_ms(ctx, "nap", "seq.0", RT_PROF_FWD, &calls) >= 5 && calls == 1);
    CHECK(rt_profile_ms(ctx, "Nap", "seq.1", RT_PROF_FWD, &calls) >= 5 && calls == 1); /* the module's type */
    CHECK(rt_profile_ms(ctx, "Nap", "seq.0", -1, &calls) == 0 && calls == 0);
    CHECK(rt_profile_ms(ctx, "Sequential (self)", "seq", RT_PROF_FWD, &calls) < 5 && calls == 1);
    rt_module_free(seq);
    rt_ctx_free(ctx);
}

TEST(profile_off_prints_a_note) {
    rt_ctx *ctx = new_ctx();
    FILE *f = tmpfile();
    CHECK(f && rt_profile_print(ctx, f, 0, 0) == RT_OK && rt_profile_json(ctx, f) == RT_OK);
    long len = ftell(f);
    char text[256] = "";
    rewind(f);
    CHECK(len > 0 && len < (long)sizeof text && fread(text, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    CHECK(strstr(text, "profile: off") && strstr(text, "{\"enabled\": false}"));
    rt_ctx_free(ctx);
}
