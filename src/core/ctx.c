/* The context: error state and layer scope, the per-step arena, scratch, grad mode, threads. */
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/profile.h"

rt_ctx *rt_ctx_new(void) {
    rt_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return NULL;
    ctx->grad_enabled = 1;
    rt_rng_seed(&ctx->rng, 0x5eed);
    if (rt_prof_env(ctx)) {
        rt_ctx_free(ctx);
        return NULL;
    }
    return ctx;
}

void rt_ctx_free(rt_ctx *ctx) {
    if (!ctx) return;
    for (int i = 0; i < ctx->arena.nblocks; i++) free(ctx->arena.block[i]);
    free(ctx->scratch);
    rt_prof_ctx_free(ctx);
    free(ctx);
}

/* ---- errors ---- */

int rt_fail(rt_ctx *ctx, int code, const char *fmt, ...) {
    if (!ctx || ctx->status) return code; /* keep the first error: it names the cause */
    ctx->status = code;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(ctx->msg, sizeof ctx->msg, fmt, ap);
    va_end(ap);
    if (ctx->scope_depth > 0 && n > 0 && (size_t)n < sizeof ctx->msg)
        snprintf(ctx->msg + n, sizeof ctx->msg - n, " (layer '%s')", ctx->scope);
    return code;
}

int rt_status(const rt_ctx *ctx) { return ctx->status; }
const char *rt_errmsg(const rt_ctx *ctx) { return ctx->status ? ctx->msg : "no error"; }
void rt_clear_error(rt_ctx *ctx) {
    ctx->status = 0;
    ctx->msg[0] = 0;
}

void rt_scope_push(rt_ctx *ctx, const char *name) {
    size_t len = strlen(ctx->scope);
    if (ctx->scope_depth < 32) ctx->scope_len[ctx->scope_depth] = (int)len;
    ctx->scope_depth++;
    if (ctx->scope_depth > 32) return;
    snprintf(ctx->scope + len, sizeof ctx->scope - len, "%s%s", len ? "." : "", name);
}

void rt_scope_pop(rt_ctx *ctx) {
    if (ctx->scope_depth <= 0) return;
    ctx->scope_depth--;
    if (ctx->scope_depth < 32) ctx->scope[ctx->scope_len[ctx->scope_depth]] = 0;
}

const char *rt_scope(const rt_ctx *ctx) { return ctx->scope; }

static void default_assert_hook(const char *file, int line, const char *expr) {
    fprintf(stderr, "retort: internal invariant failed at %s:%d: %s\n", file, line, expr);
    abort();
}
static rt_assert_hook assert_hook = default_assert_hook; /* set once by the program, not state */
void rt_set_assert_hook(rt_assert_hook hook) { assert_hook = hook ? hook : default_assert_hook; }
void rt_assert_fail_(const char *file, int line, const char *expr) { assert_hook(file, line, expr); }

/* ---- the per-step arena: a few large blocks, bump allocation, coalesced on reset ---- */

#define RT_ALIGN 64
#define RT_ARENA_MIN_BLOCK ((size_t)16 << 20)

static size_t align_up(size_t n) { return (n + RT_ALIGN - 1) & ~(size_t)(RT_ALIGN - 1); }

void *rt_arena_alloc(rt_ctx *ctx, size_t bytes) {
    rt_arena *a = &ctx->arena;
    bytes = align_up(bytes ? bytes : 1);
    while (a->cur < a->nblocks && a->used + bytes > a->cap[a->cur]) { /* move on to the next block */
        a->before += a->used;
        a->cur++;
        a->used = 0;
    }
    if (a->cur == a->nblocks) {
        if (a->nblocks == RT_ARENA_MAX_BLOCKS) {
            rt_fail(ctx, RT_ENOMEM, "arena: too many blocks (%zu bytes requested)", bytes);
            return NULL;
        }
        size_t cap = a->nblocks ? 2 * a->cap[a->nblocks - 1] : RT_ARENA_MIN_BLOCK;
        if (cap < bytes) cap = bytes;
        char *p = aligned_alloc(RT_ALIGN, cap);
        if (!p) {
            rt_fail(ctx, RT_ENOMEM, "arena: out of memory allocating %zu bytes", cap);
            return NULL;
        }
        a->block[a->nblocks] = p;
        a->cap[a->nblocks++] = cap;
    }
    void *p = a->block[a->cur] + a->used;
    a->used += bytes;
    if (a->before + a->used > a->highwater) a->highwater = a->before + a->used;
    return p;
}

void *rt_arena_zalloc(rt_ctx *ctx, size_t bytes) {
    void *p = rt_arena_alloc(ctx, bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

void rt_step_reset(rt_ctx *ctx) {
    if (rt_prof_on(ctx)) rt_prof_step(ctx);
    rt_arena *a = &ctx->arena;
    if (a->nblocks > 1) { /* coalesce into one block of the high-water size: no mallocs next step */
        size_t total = 0;
        for (int i = 0; i < a->nblocks; i++) total += a->cap[i];
        for (int i = 0; i < a->nblocks; i++) free(a->block[i]);
        a->nblocks = 0;
        char *p = aligned_alloc(RT_ALIGN, align_up(total));
        if (p) {
            a->block[0] = p;
            a->cap[0] = align_up(total);
            a->nblocks = 1;
        }
    }
    a->cur = 0;
    a->used = 0;
    a->before = 0;
    ctx->tape = NULL;
    ctx->ntape = 0;
}

size_t rt_arena_used(const rt_ctx *ctx) { return ctx->arena.before + ctx->arena.used; }
size_t rt_arena_highwater(const rt_ctx *ctx) { return ctx->arena.highwater; }

rt_mark rt_arena_mark(rt_ctx *ctx) {
    rt_mark m = {ctx->arena.used, ctx->arena.before, (size_t)ctx->arena.cur, ctx->tape, ctx->ntape};
    return m;
}

void rt_arena_release(rt_ctx *ctx, rt_mark m) {
    rt_arena *a = &ctx->arena;
    a->before = m.before;
    a->cur = (int)m.block;
    a->used = m.used;
    ctx->tape = m.tape;
    ctx->ntape = m.ntape;
}

void *rt_scratch(rt_ctx *ctx, size_t bytes) {
    if (bytes > ctx->scratch_cap) {
        free(ctx->scratch);
        ctx->scratch_cap = align_up(bytes + bytes / 4);
        ctx->scratch = aligned_alloc(RT_ALIGN, ctx->scratch_cap);
        if (!ctx->scratch) {
            ctx->scratch_cap = 0;
            rt_fail(ctx, RT_ENOMEM, "scratch: out of memory allocating %zu bytes", bytes);
            return NULL;
        }
    }
    return ctx->scratch;
}

int rt_grad_enabled(const rt_ctx *ctx) { return ctx->grad_enabled; }
int rt_set_grad_enabled(rt_ctx *ctx, int on) {
    int prev = ctx->grad_enabled;
    ctx->grad_enabled = on;
    return prev;
}

rt_rng *rt_ctx_rng(rt_ctx *ctx) { return &ctx->rng; }

void rt_set_threads(int n) {
    if (n > 0) omp_set_num_threads(n);
}
int rt_threads(void) { return omp_get_max_threads(); }
