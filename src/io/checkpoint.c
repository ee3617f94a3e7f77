/* Checkpoints of a parameter set: one safetensors file holding every parameter and buffer under
 * its PyTorch state_dict name. Loading checks the whole file against the set first, so a bad
 * checkpoint is reported in full and never half-applied. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "retort/io.h"
#include "retort/nn.h"

/* The set's own arrays (not a bound look-ahead): what a checkpoint holds. */
static float *param_home(const rt_paramset *ps, const rt_param *p) {
    return (p->kind == RT_BUFFER ? ps->buffers : ps->data) + p->offset;
}

int rt_params_save(rt_ctx *ctx, const rt_paramset *ps, const char *path, int nmeta, const char *const *keys,
                   const char *const *values) {
    if (!ps || !path || nmeta < 0 || (nmeta && (!keys || !values)))
        return rt_fail(ctx, RT_EINVAL, "checkpoint: NULL parameter set, path or metadata");
    if (!ps->finalized) return rt_fail(ctx, RT_ESTATE, "checkpoint %s: the parameter set is not finalized", path);
    rt_st_writer *w = rt_st_writer_new();
    if (!w) return rt_fail(ctx, RT_ENOMEM, "checkpoint %s: out of memory", path);
    int rc = RT_OK;
    for (int i = 0; i < ps->count && !rc; i++) {
        const rt_param *p = ps->items[i];
        rc = rt_st_add(ctx, w, p->name, p->t.ndim, p->t.shape, param_home(ps, p), p->is_int);
    }
    for (int i = 0; i < nmeta && !rc; i++) rc = rt_st_set_meta(ctx, w, keys[i], values[i]);
    if (!rc) rc = rt_st_write(ctx, w, path);
    rt_st_writer_free(w);
    return rc;
}

/* The load error message: categories joined by "; ", long name lists cut short. */
typedef struct {
    char s[900];
    size_t len;
} msg;

__attribute__((format(printf, 2, 3))) static void msg_add(msg *m, const char *fmt, ...) {
    if (m->len >= sizeof m->s - 1) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(m->s + m->len, sizeof m->s - m->len, fmt, ap);
    va_end(ap);
    m->len = n < 0 ? m->len : m->len + (size_t)n;
    if (m->len >= sizeof m->s - 1) {
        m->len = sizeof m->s - 1;
        memcpy(m->s + m->len - 3, "...", 4);
    }
}

static int set_has(const rt_paramset *ps, const char *name) {
    for (int i = 0; i < ps->count; i++)
        if (!strcmp(ps->items[i]->name, name)) return 1;
    return 0;
}

#define LIST_MAX 8 /* names shown per category */

static int loadable(const char *dtype) {
    static const char *ok[] = {"F32", "F64", "I64", "I32", "F16", "BF16"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (!strcmp(dtype, ok[i])) return 1;
    return 0;
}

static char *dims_str(int ndim, const int64_t *shape, char *buf) {
    int n = sprintf(buf, "(");
    for (int i = 0; i < ndim && n < 80; i++) n += sprintf(buf + n, "%s%lld", i ? "," : "", (long long)shape[i]);
    sprintf(buf + n, ")");
    return buf;
}

int rt_params_load(rt_ctx *ctx, rt_paramset *ps, const char *path, rt_safetensors **meta_out) {
    if (meta_out) *meta_out = NULL;
    if (!ps || !path) return rt_fail(ctx, RT_EINVAL, "checkpoint: NULL parameter set or path");
    if (!ps->finalized) return rt_fail(ctx, RT_ESTATE, "checkpoint %s: the parameter set is not finalized", path);
    rt_safetensors *st;
    int rc = rt_st_read(ctx, path, &st);
    if (rc) return rc;

    /* every check first: nothing is copied unless the whole file fits */
    msg missing = {.len = 0}, bad = {.len = 0}, extra = {.len = 0};
    int nmissing = 0, nbad = 0, nextra = 0, nfound = 0;
    for (int i = 0; i < ps->count; i++) {
        const rt_param *p = ps->items[i];
        const rt_st_entry *e = rt_st_find(st, p->name);
        if (!e) {
            if (nmissing++ < LIST_MAX) msg_add(&missing, "%s%s", nmissing > 1 ? ", " : "", p->name);
            continue;
        }
        nfound++;
        int same = e->ndim == p->t.ndim;
        for (int d = 0; same && d < e->ndim; d++) same = e->shape[d] == p->t.shape[d];
        if (!same) {
            char a[96], b[96];
            if (nbad++ < LIST_MAX)
                msg_add(&bad, "%s%s has shape %s, model expects %s", nbad > 1 ? "; " : "", p->name,
                        dims_str(e->ndim, e->shape, a), dims_str(p->t.ndim, p->t.shape, b));
        } else if (!loadable(e->dtype)) {
            if (nbad++ < LIST_MAX)
                msg_add(&bad, "%s%s has dtype %s, which cannot be loaded", nbad > 1 ? "; " : "", p->name, e->dtype);
        }
    }
    if (nfound < st->count) /* names of the file the set does not have */
        for (int i = 0; i < st->count; i++)
            if (!set_has(ps, st->entries[i].name) && nextra++ < LIST_MAX)
                msg_add(&extra, "%s%s", nextra > 1 ? ", " : "", st->entries[i].name);

    if (nmissing || nextra || nbad) {
        msg all = {.len = 0};
        if (nmissing) {
            msg_add(&all, "missing %d of %d tensors: %s", nmissing, ps->count, missing.s);
            if (nmissing > LIST_MAX) msg_add(&all, " and %d more", nmissing - LIST_MAX);
        }
        if (nextra) {
            msg_add(&all, "%sunexpected %d tensor%s: %s", nmissing ? "; " : "", nextra, nextra > 1 ? "s" : "", extra.s);
            if (nextra > LIST_MAX) msg_add(&all, " and %d more", nextra - LIST_MAX);
        }
        if (nbad) {
            msg_add(&all, "%s%s", nmissing || nextra ? "; " : "", bad.s);
            if (nbad > LIST_MAX) msg_add(&all, "; and %d more mismatches", nbad - LIST_MAX);
        }
        rc = rt_fail(ctx, nmissing || nextra ? RT_EFORMAT : RT_ESHAPE, "checkpoint %s: %s", path, all.s);
        rt_st_free(st);
        return rc;
    }

    for (int i = 0; i < ps->count && !rc; i++) {
        const rt_param *p = ps->items[i];
        rc = rt_st_get_f32(ctx, st, p->name, param_home(ps, p), p->t.ndim, p->t.shape);
    }
    RT_ASSERT(!rc); /* every way this can fail was checked above */
    if (meta_out)
        *meta_out = st;
    else
        rt_st_free(st);
    return RT_OK;
}
