/* A forward that keeps only the logits and the taps asked for: a distillation teacher's activations
 * are dead once its taps are taken, so they should not stay in the step arena under the student's
 * forward and backward. The forward runs under an arena mark, the kept tensors are copied into a
 * caller-owned buffer that survives step resets, and the arena goes back to the mark. */
#include <stdlib.h>
#include <string.h>

#include "nn/nn_impl.h"

#define KEEP_ALIGN 16 /* floats: each kept tensor starts on a 64-byte boundary */

void rt_keep_buf_free(rt_keep_buf *buf) {
    if (!buf) return;
    free(buf->data);
    buf->data = NULL;
    buf->cap = 0;
}

static int any_training(const rt_module *m) {
    if (m->training) return 1;
    for (int i = 0; i < m->nchildren; i++)
        if (any_training(m->children[i])) return 1;
    return 0;
}

static int fail_unknown_tap(rt_ctx *ctx, const rt_model *m, const char *name) {
    char list[512] = "";
    size_t len = 0;
    for (int j = 0; j < m->ntaps && len < sizeof list; j++)
        len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", j ? ", " : "", m->tap_names[j]);
    return rt_fail(ctx, RT_EINVAL, "model_forward_keep: %s has no tap '%s' (it has: %s)", m->arch, name, list);
}

/* Lays out the kept tensors (src[0..n), from a slice of b samples of a batch of B) in buf and sets
 * its headers; per[j] gets tensor j's floats per sample. */
static int layout(rt_ctx *ctx, rt_keep_buf *buf, int n, rt_tensor *const *src, const char *const *names, int64_t b,
                  int64_t B, int64_t *per, size_t *off) {
    size_t total = 0;
    for (int j = 0; j < n; j++) {
        const rt_tensor *t = src[j];
        if (t->ndim < 1 || t->shape[0] != b) {
            char s[96];
            return rt_fail(ctx, RT_ESHAPE,
                           "model_forward_keep: tap '%s' %s does not have the batch (%lld) as its first dimension, "
                           "so it cannot be kept in chunks",
                           names[j], rt_shape_str(t, s), (long long)b);
        }
        per[j] = rt_numel(t) / b;
        off[j] = total;
        total += ((size_t)(per[j] * B) + KEEP_ALIGN - 1) / KEEP_ALIGN * KEEP_ALIGN;
    }
    if (total > buf->cap) {
        free(buf->data);
        buf->cap = 0;
        buf->data = aligned_alloc(64, (total ? total : KEEP_ALIGN) * sizeof(float));
        if (!buf->data)
            return rt_fail(ctx, RT_ENOMEM, "model_forward_keep: out of memory for %zu floats of kept tensors", total);
        buf->cap = total;
    }
    for (int j = 0; j < n; j++) {
        int64_t shape[RT_MAX_DIMS];
        memcpy(shape, src[j]->shape, sizeof shape);
        shape[0] = B;
        rt_tensor_init(&buf->t[j], buf->data + off[j], src[j]->ndim, shape);
        buf->t[j].name = names[j];
    }
    return RT_OK;
}

rt_tensor *rt_model_forward_keep(rt_ctx *ctx, rt_model *m, rt_tensor *x, const char *const *keep, int nkeep,
                                 rt_taps *out, rt_keep_buf *buf) {
    if (rt_status(ctx)) return NULL;
    if (!m || !x || !buf || nkeep < 0 || nkeep > RT_MAX_TAPS || (nkeep > 0 && (!keep || !out))) {
        rt_fail(ctx, RT_EINVAL, "model_forward_keep: %s",
                !m                                 ? "model is NULL"
                : !x                               ? "input is NULL"
                : !buf                             ? "buf is NULL"
                : nkeep < 0 || nkeep > RT_MAX_TAPS ? "nkeep out of range"
                                                   : "keep or out is NULL");
        return NULL;
    }
    const char *names[RT_MAX_TAPS + 1]; /* the model's own (static) names, then "logits" */
    for (int i = 0; i < nkeep; i++) {
        names[i] = NULL;
        for (int j = 0; j < m->ntaps && !names[i]; j++)
            if (keep[i] && !strcmp(m->tap_names[j], keep[i])) names[i] = m->tap_names[j];
        if (!names[i]) {
            fail_unknown_tap(ctx, m, keep[i] ? keep[i] : "(null)");
            return NULL;
        }
    }
    names[nkeep] = "logits";
    char s[96];
    if (x->ndim < 1 || x->shape[0] < 1) {
        rt_fail(ctx, RT_ESHAPE, "model_forward_keep: input %s has no batch", rt_shape_str(x, s));
        return NULL;
    }
    const int64_t B = x->shape[0], k = buf->chunk > 0 && buf->chunk < B ? buf->chunk : B;
    if (k < B && any_training(m->root)) {
        rt_fail(ctx, RT_EINVAL,
                "model_forward_keep: chunks of %lld samples need %s in eval mode (batch statistics would change)",
                (long long)k, m->arch);
        return NULL;
    }
    if (k < B && !rt_is_contiguous(x)) { /* slices are views over contiguous data; this copy stays below the mark */
        rt_tensor *c = rt_empty(ctx, x->ndim, x->shape);
        if (!c) return NULL;
        rt_copy_to(x, c->data);
        x = c;
    }
    const int n = nkeep + 1;
    int64_t per[RT_MAX_TAPS + 1];
    size_t off[RT_MAX_TAPS + 1];
    const int64_t xper = rt_numel(x) / B;
    int prev = rt_set_grad_enabled(ctx, 0);
    for (int64_t i0 = 0; i0 < B && !rt_status(ctx); i0 += k) {
        const int64_t b = B - i0 < k ? B - i0 : k;
        rt_mark mk = rt_arena_mark(ctx);
        rt_tensor *xs = x;
        if (k < B) {
            int64_t shape[RT_MAX_DIMS];
            memcpy(shape, x->shape, sizeof shape);
            shape[0] = b;
            xs = rt_wrap(ctx, x->data + i0 * xper, x->ndim, shape);
        }
        rt_taps taps = {.want = names, .nwant = nkeep};
        rt_tensor *src[RT_MAX_TAPS + 1];
        src[nkeep] = rt_model_forward(ctx, m, xs, &taps);
        for (int i = 0; i < nkeep && src[nkeep]; i++)
            if (!(src[i] = rt_taps_get(&taps, names[i])))
                rt_fail(ctx, RT_ESTATE, "model_forward_keep: %s's forward did not fill its tap '%s'", m->arch,
                        names[i]);
        if (!rt_status(ctx) && i0 == 0) layout(ctx, buf, n, src, names, b, B, per, off);
        for (int j = 0; j < n && !rt_status(ctx); j++) {
            const rt_tensor *t = src[j];
            int same = t->ndim == buf->t[j].ndim && t->shape[0] == b;
            for (int d = 1; same && d < t->ndim; d++) same = t->shape[d] == buf->t[j].shape[d];
            if (i0 > 0 && !same) {
                rt_fail(ctx, RT_ESHAPE, "model_forward_keep: tap '%s' %s changed shape between chunks", names[j],
                        rt_shape_str(t, s));
                break;
            }
            float *dst = buf->t[j].data + i0 * per[j];
            if (rt_is_contiguous(t))
                memcpy(dst, t->data, (size_t)(b * per[j]) * sizeof(float));
            else
                rt_copy_to(t, dst);
        }
        rt_arena_release(ctx, mk);
    }
    rt_set_grad_enabled(ctx, prev);
    if (rt_status(ctx)) return NULL;
    for (int i = 0; i < nkeep; i++) rt_taps_put(out, names[i], &buf->t[i]);
    return &buf->t[nkeep];
}
