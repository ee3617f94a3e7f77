/* Modules: the scoped forward (so op errors name the layer), train/eval and freeing of the tree. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/profile.h"
#include "nn/nn_impl.h"

void *rt_nn_module_alloc(rt_ctx *ctx, size_t bytes, const char *type, const char *name, rt_forward_fn forward) {
    RT_ASSERT(bytes >= sizeof(rt_module));
    if (rt_status(ctx)) return NULL;
    if (strlen(name) >= sizeof((rt_module *)0)->name) {
        rt_fail(ctx, RT_EINVAL, "%s: module name '%s' is too long", type, name);
        return NULL;
    }
    rt_module *m = calloc(1, bytes);
    if (!m) {
        rt_fail(ctx, RT_ENOMEM, "%s: out of memory", type);
        return NULL;
    }
    m->type = type;
    strcpy(m->name, name);
    m->forward = forward;
    m->training = 1;
    return m;
}

rt_module *rt_nn_adopt(rt_ctx *ctx, rt_module *m, int n, rt_module **kids) {
    int ok = m != NULL;
    for (int i = 0; i < n; i++) ok &= kids[i] != NULL;
    if (ok && n > 0) {
        m->children = malloc((size_t)n * sizeof *m->children);
        if (!m->children) ok = 0, rt_fail(ctx, RT_ENOMEM, "%s: out of memory", m->type);
    }
    if (!ok) {
        for (int i = 0; i < n; i++) rt_module_free(kids[i]);
        rt_module_free(m);
        return NULL;
    }
    memcpy(m->children, kids, (size_t)n * sizeof *kids);
    m->nchildren = n;
    return m;
}

int rt_nn_join(rt_ctx *ctx, char *out, const char *prefix, const char *leaf) {
    int n = snprintf(out, 128, "%s%s%s", prefix, prefix[0] ? "." : "", leaf);
    if (n < 0 || n >= 128) return rt_fail(ctx, RT_EINVAL, "nn: name '%s.%s' is too long", prefix, leaf);
    return RT_OK;
}

/* The part of name below the innermost enclosing scope: with scope "teacher.layer1.0" and name
 * "layer1.0.conv1" it is "conv1", so nested pushes build "teacher.layer1.0.conv1". */
static const char *local_name(const char *scope, const char *name) {
    for (const char *s = scope; s && *s;) {
        size_t len = strlen(s);
        if (strncmp(name, s, len) == 0 && name[len] == '.') return name + len + 1;
        s = strchr(s, '.');
        if (s) s++;
    }
    return name;
}

rt_tensor *rt_module_forward(rt_module *m, rt_ctx *ctx, rt_tensor *x, rt_taps *taps) {
    if (rt_status(ctx)) return NULL;
    if (!m || !x) {
        rt_fail(ctx, RT_EINVAL, "module %s: %s is NULL", m ? m->name : "?", m ? "input" : "module");
        return NULL;
    }
    const char *local = local_name(rt_scope(ctx), m->name);
    /* profiling: what ran before this module (a loader's wait, the caller's code) is not its first op's */
    if (rt_prof_on(ctx)) rt_prof_module_begin(ctx, m->type);
    if (local[0]) rt_scope_push(ctx, local);
    rt_tensor *y = m->forward(m, ctx, x, taps);
    if (rt_prof_on(ctx)) rt_prof_module_end(ctx, m->type, m->nchildren == 0);
    if (local[0]) rt_scope_pop(ctx);
    if (!y && !rt_status(ctx)) rt_fail(ctx, RT_EINVAL, "module %s (%s): forward returned NULL", m->name, m->type);
    return rt_status(ctx) ? NULL : y;
}

void rt_module_train(rt_module *m, int training) {
    if (!m) return;
    m->training = training;
    for (int i = 0; i < m->nchildren; i++) rt_module_train(m->children[i], training);
}

void rt_module_free(rt_module *m) {
    if (!m) return;
    for (int i = 0; i < m->nchildren; i++) rt_module_free(m->children[i]);
    if (m->free) m->free(m);
    free(m->children);
    free(m);
}
