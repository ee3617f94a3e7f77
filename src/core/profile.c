/* The profiler: time per op and per layer, forward and backward, from events on the calling thread.
 * Every event (an op's end, a node's backward, a module's entry or exit, a region, a step reset)
 * closes the interval since the previous one and adds it to one entry (op, layer, phase), so the
 * entries partition the wall time. Strings are interned once and never freed before the context:
 * tape nodes keep the interned scope of their forward, and entries are keyed by pointer. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/profile.h"

#define OUTSIDE "(outside ops)"
#define MAX_REGIONS 16
#define MAX_MODULES 64

typedef struct {
    const char *op, *layer; /* interned */
    int phase;
    double s;
    int64_t calls;
} prof_entry;

struct rt_profile {
    char **str; /* interned strings, owned */
    size_t nstr, strcap;
    int32_t *sslot; /* open addressing over str, -1 empty; nsslot a power of two */
    size_t nsslot;
    prof_entry *ent;
    size_t nent, entcap;
    int32_t *eslot; /* open addressing over ent */
    size_t neslot;
    const char *outside;
    const char *region[MAX_REGIONS];
    int nregion;
    const char *module[MAX_MODULES]; /* types of the modules being run, innermost last */
    int nmodule;
    const char *last_op; /* the op that last ended since the innermost module began */
    double last;         /* time of the previous event */
    int64_t steps;
    int dropped;     /* events lost to a failed allocation: the tables are incomplete */
    int from_env;    /* switched on by RETORT_PROFILE: reported when the context is freed */
    char *json_path; /* RETORT_PROFILE_JSON when it was switched on (owned) */
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static uint64_t hash_key(const char *op, const char *layer, int phase) {
    uint64_t h = (uint64_t)(uintptr_t)op * 0x9e3779b97f4a7c15ull;
    h ^= (uint64_t)(uintptr_t)layer * 0xc2b2ae3d27d4eb4full + (uint64_t)phase;
    return h ^ (h >> 29);
}

/* A table of slots (-1 empty) twice the size of n items, rebuilt with the items' hashes. */
static int32_t *slots_new(size_t n) {
    int32_t *s = malloc(n * sizeof *s);
    if (s) memset(s, 0xff, n * sizeof *s);
    return s;
}

static const char *intern(rt_profile *p, const char *s) {
    uint64_t h = hash_str(s);
    size_t mask = p->nsslot - 1, i = h & mask;
    for (; p->sslot[i] >= 0; i = (i + 1) & mask)
        if (!strcmp(p->str[p->sslot[i]], s)) return p->str[p->sslot[i]];
    if (p->nstr == p->strcap) {
        size_t cap = 2 * p->strcap;
        char **str = realloc(p->str, cap * sizeof *str);
        if (!str) return NULL;
        p->str = str;
        p->strcap = cap;
    }
    char *copy = strdup(s);
    if (!copy) return NULL;
    if (2 * (p->nstr + 1) > p->nsslot) { /* grow the slots and rehash */
        int32_t *slot = slots_new(2 * p->nsslot);
        if (!slot) {
            free(copy);
            return NULL;
        }
        free(p->sslot);
        p->sslot = slot;
        p->nsslot *= 2;
        mask = p->nsslot - 1;
        for (size_t k = 0; k < p->nstr; k++) {
            size_t j = hash_str(p->str[k]) & mask;
            while (p->sslot[j] >= 0) j = (j + 1) & mask;
            p->sslot[j] = (int32_t)k;
        }
        for (i = h & mask; p->sslot[i] >= 0;) i = (i + 1) & mask;
    }
    p->sslot[i] = (int32_t)p->nstr;
    p->str[p->nstr++] = copy;
    return copy;
}

/* Adds dt to the entry (op, layer, phase); ncalls: 1 where an op (or a module's run) ends, 0 where
 * the time continues one already counted or is a gap. */
static void add(rt_profile *p, const char *op, const char *layer, int phase, double dt, int ncalls) {
    if (!op || !layer) {
        p->dropped = 1;
        return;
    }
    size_t mask = p->neslot - 1, i = hash_key(op, layer, phase) & mask;
    for (; p->eslot[i] >= 0; i = (i + 1) & mask) {
        prof_entry *e = &p->ent[p->eslot[i]];
        if (e->op == op && e->layer == layer && e->phase == phase) {
            e->s += dt;
            e->calls += ncalls;
            return;
        }
    }
    if (p->nent == p->entcap) {
        size_t cap = 2 * p->entcap;
        prof_entry *ent = realloc(p->ent, cap * sizeof *ent);
        if (!ent) {
            p->dropped = 1;
            return;
        }
        p->ent = ent;
        p->entcap = cap;
    }
    if (2 * (p->nent + 1) > p->neslot) {
        int32_t *slot = slots_new(2 * p->neslot);
        if (!slot) {
            p->dropped = 1;
            return;
        }
        free(p->eslot);
        p->eslot = slot;
        p->neslot *= 2;
        mask = p->neslot - 1;
        for (size_t k = 0; k < p->nent; k++) {
            const prof_entry *e = &p->ent[k];
            size_t j = hash_key(e->op, e->layer, e->phase) & mask;
            while (p->eslot[j] >= 0) j = (j + 1) & mask;
            p->eslot[j] = (int32_t)k;
        }
        for (i = hash_key(op, layer, phase) & mask; p->eslot[i] >= 0;) i = (i + 1) & mask;
    }
    p->eslot[i] = (int32_t)p->nent;
    p->ent[p->nent++] = (prof_entry){op, layer, phase, dt, ncalls};
}

static void prof_free(rt_profile *p);

static rt_profile *prof_new(void) {
    rt_profile *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->strcap = 64;
    p->nsslot = 128;
    p->entcap = 256;
    p->neslot = 512;
    p->str = malloc(p->strcap * sizeof *p->str);
    p->sslot = slots_new(p->nsslot);
    p->ent = malloc(p->entcap * sizeof *p->ent);
    p->eslot = slots_new(p->neslot);
    if (!p->str || !p->sslot || !p->ent || !p->eslot || !(p->outside = intern(p, OUTSIDE))) {
        prof_free(p);
        return NULL;
    }
    return p;
}

static void prof_free(rt_profile *p) {
    if (!p) return;
    for (size_t i = 0; i < p->nstr; i++) free(p->str[i]);
    free(p->json_path);
    free(p->str);
    free(p->sslot);
    free(p->ent);
    free(p->eslot);
    free(p);
}

int rt_prof_env(rt_ctx *ctx) {
    const char *v = getenv("RETORT_PROFILE");
    if (!v || !v[0] || !strcmp(v, "0")) return RT_OK;
    int rc = rt_profile_enable(ctx, 1);
    if (rc) return rc;
    ctx->prof->from_env = 1;
    const char *path = getenv("RETORT_PROFILE_JSON");
    if (path && path[0] && !(ctx->prof->json_path = strdup(path)))
        return rt_fail(ctx, RT_ENOMEM, "profile: out of memory");
    return RT_OK;
}

void rt_prof_ctx_free(rt_ctx *ctx) {
    rt_profile *p = ctx->prof_store;
    if (!p) return;
    if (p->from_env && p->nent > 0) {
        if (ctx->prof) rt_prof_mark(ctx);
        rt_profile_print(ctx, stderr, 20, 2);
        fprintf(stderr, "  costliest layers:\n");
        rt_profile_print_layers(ctx, stderr, 20, 0);
        FILE *f = p->json_path ? fopen(p->json_path, "a") : NULL;
        if (f) {
            rt_profile_json(ctx, f);
            fclose(f);
        }
    }
    prof_free(p);
    ctx->prof = ctx->prof_store = NULL;
}

/* The interval since the previous event, which this event closes. */
static double lap(rt_profile *p) {
    double t = now_s(), dt = t - p->last;
    p->last = t;
    return dt;
}

/* ---- hooks ---- */

const char *rt_prof_op(rt_ctx *ctx, const char *op) {
    rt_profile *p = ctx->prof;
    if (omp_in_parallel()) return NULL;
    double dt = lap(p);
    const char *layer = intern(p, ctx->scope);
    p->last_op = intern(p, op);
    add(p, p->last_op, layer, RT_PROF_FWD, dt, 1);
    return layer;
}

static const char *self_of(rt_profile *p, const char *type) {
    char name[160];
    snprintf(name, sizeof name, "%s (self)", type);
    return intern(p, name);
}

/* The gap closed by a boundary: the enclosing module's own work, else outside ops. */
static void gap(rt_profile *p, rt_ctx *ctx) {
    double dt = lap(p);
    const char *layer = intern(p, ctx->scope);
    if (p->nmodule > 0 && p->nmodule <= MAX_MODULES)
        add(p, self_of(p, p->module[p->nmodule - 1]), layer, RT_PROF_FWD, dt, 0);
    else
        add(p, p->outside, layer, RT_PROF_OTHER, dt, 0);
}

void rt_prof_mark(rt_ctx *ctx) {
    if (!omp_in_parallel()) gap(ctx->prof, ctx);
}

void rt_prof_module_begin(rt_ctx *ctx, const char *type) {
    rt_profile *p = ctx->prof;
    if (omp_in_parallel()) return;
    gap(p, ctx);
    if (p->nmodule < MAX_MODULES) p->module[p->nmodule] = type;
    p->nmodule++;
    p->last_op = NULL;
}

void rt_prof_module_end(rt_ctx *ctx, const char *type, int leaf) {
    rt_profile *p = ctx->prof;
    if (omp_in_parallel()) return;
    double dt = lap(p);
    const char *op = leaf ? (p->last_op ? p->last_op : intern(p, type)) : self_of(p, type);
    add(p, op, intern(p, ctx->scope), RT_PROF_FWD, dt, !leaf || !p->last_op);
    if (p->nmodule > 0) p->nmodule--;
    p->last_op = NULL;
}

void rt_prof_backward(rt_ctx *ctx, const rt_node *n) {
    rt_profile *p = ctx->prof;
    if (omp_in_parallel()) return;
    double dt = lap(p);
    /* a node recorded while the profiler was off has no scope */
    add(p, intern(p, n->op->name), n->scope ? n->scope : intern(p, "(unknown)"), RT_PROF_BWD, dt, 1);
}

void rt_prof_step(rt_ctx *ctx) {
    if (omp_in_parallel()) return;
    rt_prof_mark(ctx);
    ctx->prof->steps++;
}

/* ---- the API ---- */

int rt_profile_enable(rt_ctx *ctx, int on) {
    if (!on) {
        if (ctx->prof) rt_prof_mark(ctx); /* the interval up to now belongs to the tables */
        ctx->prof = NULL;
        return RT_OK;
    }
    if (ctx->prof) return RT_OK;
    if (!ctx->prof_store && !(ctx->prof_store = prof_new())) return rt_fail(ctx, RT_ENOMEM, "profile: out of memory");
    ctx->prof = ctx->prof_store;
    ctx->prof->last = now_s(); /* time while off is not counted */
    ctx->prof->nmodule = 0;    /* switched on outside any module forward */
    ctx->prof->last_op = NULL;
    return RT_OK;
}

int rt_profile_enabled(const rt_ctx *ctx) { return ctx->prof != NULL; }

void rt_profile_reset(rt_ctx *ctx) {
    rt_profile *p = ctx->prof_store;
    if (!p) return;
    p->nent = 0;
    memset(p->eslot, 0xff, p->neslot * sizeof *p->eslot);
    p->steps = 0;
    p->dropped = 0;
    p->last = now_s();
}

void rt_profile_begin(rt_ctx *ctx, const char *name) {
    rt_profile *p = ctx->prof;
    if (!p || omp_in_parallel()) return;
    rt_prof_mark(ctx);
    if (p->nregion < MAX_REGIONS) p->region[p->nregion] = intern(p, name);
    p->nregion++;
}

void rt_profile_end(rt_ctx *ctx) {
    rt_profile *p = ctx->prof;
    if (!p || omp_in_parallel() || p->nregion == 0) return;
    p->nregion--;
    if (p->nregion >= MAX_REGIONS) return; /* too deep: counted as outside ops by the next event */
    double dt = lap(p);
    add(p, p->region[p->nregion], intern(p, ctx->scope), RT_PROF_OTHER, dt, 1);
}

int64_t rt_profile_steps(const rt_ctx *ctx) { return ctx->prof_store ? ctx->prof_store->steps : 0; }

/* layer is the scope want or below it. */
static int layer_matches(const char *layer, const char *want) {
    if (!want) return 1;
    if (!want[0]) return !layer[0];
    size_t n = strlen(want);
    return !strncmp(layer, want, n) && (layer[n] == 0 || layer[n] == '.');
}

double rt_profile_ms(const rt_ctx *ctx, const char *op, const char *layer, int phase, int64_t *calls) {
    const rt_profile *p = ctx->prof_store;
    double s = 0;
    int64_t c = 0;
    for (size_t i = 0; p && i < p->nent; i++) {
        const prof_entry *e = &p->ent[i];
        if ((op && strcmp(e->op, op)) || !layer_matches(e->layer, layer) || (phase >= 0 && e->phase != phase)) continue;
        s += e->s;
        c += e->calls;
    }
    if (calls) *calls = c;
    return 1e3 * s;
}

/* ---- tables ---- */

typedef struct {
    char name[256];
    double s[3];
    int64_t calls;
} prof_row;

static double row_total(const prof_row *r) { return r->s[0] + r->s[1] + r->s[2]; }

static int cmp_rows(const void *a, const void *b) {
    double x = row_total(a), y = row_total(b);
    if (x != y) return x < y ? 1 : -1;
    return strcmp(((const prof_row *)a)->name, ((const prof_row *)b)->name); /* stable output */
}

/* The entries summed by op (by_layer 0) or by layer cut after depth components (by_layer 1), sorted
 * by total time; *n rows, *total seconds. NULL when memory runs out. */
static prof_row *rows(const rt_profile *p, int by_layer, int depth, size_t *n, double *total) {
    prof_row *r = calloc(p->nent ? p->nent : 1, sizeof *r);
    if (!r) return NULL;
    size_t k = 0;
    *total = 0;
    for (size_t i = 0; i < p->nent; i++) {
        const prof_entry *e = &p->ent[i];
        char name[256];
        if (!by_layer)
            snprintf(name, sizeof name, "%s", e->op);
        else {
            const char *l = e->layer[0] ? e->layer : "(no layer)", *cut = l;
            for (int d = 0; depth > 0 && d < depth && cut; d++) cut = strchr(cut + (d > 0), '.');
            int len = depth > 0 && cut ? (int)(cut - l) : (int)strlen(l);
            snprintf(name, sizeof name, "%.*s", len, l);
        }
        size_t j = 0;
        while (j < k && strcmp(r[j].name, name)) j++; /* a few hundred rows at most, printed once */
        if (j == k) snprintf(r[k++].name, sizeof r->name, "%s", name);
        r[j].s[e->phase] += e->s;
        r[j].calls += e->calls;
        *total += e->s;
    }
    qsort(r, k, sizeof *r, cmp_rows);
    *n = k;
    return r;
}

static void print_table(FILE *f, const prof_row *r, size_t n, int max_rows, double steps, double total, int calls) {
    size_t shown = max_rows > 0 && (size_t)max_rows < n ? (size_t)max_rows : n;
    for (size_t i = 0; i <= shown && i < n; i++) {
        prof_row rest = {.name = ""};
        const prof_row *x = &r[i];
        if (i == shown) { /* everything below the cut, summed */
            snprintf(rest.name, sizeof rest.name, "(%zu more)", n - shown);
            for (size_t j = shown; j < n; j++) {
                for (int ph = 0; ph < 3; ph++) rest.s[ph] += r[j].s[ph];
                rest.calls += r[j].calls;
            }
            x = &rest;
        }
        fprintf(f, "  %-34s %9.2f %9.2f %9.2f %9.2f %6.1f%%", x->name, 1e3 * x->s[0] / steps, 1e3 * x->s[1] / steps,
                1e3 * x->s[2] / steps, 1e3 * row_total(x) / steps, total > 0 ? 100.0 * row_total(x) / total : 0.0);
        if (calls) fprintf(f, " %7.1f", (double)x->calls / steps);
        fprintf(f, "\n");
    }
}

static double steps_of(const rt_profile *p) { return p->steps > 0 ? (double)p->steps : 1.0; }

int rt_profile_print_layers(const rt_ctx *ctx, FILE *f, int max_rows, int layer_depth) {
    const rt_profile *p = ctx->prof_store;
    if (!p) return RT_OK;
    size_t n;
    double total;
    prof_row *r = rows(p, 1, layer_depth, &n, &total);
    if (!r) return RT_ENOMEM;
    char head[64] = "per layer";
    if (layer_depth > 0) snprintf(head, sizeof head, "per layer (depth %d)", layer_depth);
    fprintf(f, "  %-34s %9s %9s %9s %9s %7s\n", head, "fwd ms", "bwd ms", "other ms", "total ms", "% step");
    print_table(f, r, n, max_rows, steps_of(p), total, 0);
    free(r);
    return RT_OK;
}

int rt_profile_print(const rt_ctx *ctx, FILE *f, int max_rows, int layer_depth) {
    const rt_profile *p = ctx->prof_store;
    if (!p) {
        fprintf(f, "profile: off (set RETORT_PROFILE=1 or call rt_profile_enable)\n");
        return RT_OK;
    }
    size_t n;
    double total, ph[3] = {0, 0, 0}, steps = steps_of(p);
    prof_row *r = rows(p, 0, 0, &n, &total);
    if (!r) return RT_ENOMEM;
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < 3; k++) ph[k] += r[i].s[k];
    fprintf(f,
            "profile: %lld steps, %.2f ms/step: forward %.2f (%.1f%%), backward %.2f (%.1f%%), other %.2f (%.1f%%)%s\n",
            (long long)p->steps, 1e3 * total / steps, 1e3 * ph[0] / steps, total > 0 ? 100 * ph[0] / total : 0.0,
            1e3 * ph[1] / steps, total > 0 ? 100 * ph[1] / total : 0.0, 1e3 * ph[2] / steps,
            total > 0 ? 100 * ph[2] / total : 0.0, p->dropped ? " (incomplete: out of memory)" : "");
    fprintf(f, "  %-34s %9s %9s %9s %9s %7s %7s\n", "per op", "fwd ms", "bwd ms", "other ms", "total ms", "% step",
            "calls");
    print_table(f, r, n, max_rows, steps, total, 1);
    free(r);
    return rt_profile_print_layers(ctx, f, max_rows, layer_depth);
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void json_rows(FILE *f, const char *key, const char *field, const prof_row *r, size_t n, double steps) {
    fprintf(f, ", \"%s\": [", key);
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "%s{\"%s\": ", i ? ", " : "", field);
        json_str(f, r[i].name);
        fprintf(f, ", \"fwd_ms\": %.4f, \"bwd_ms\": %.4f, \"other_ms\": %.4f, \"calls\": %.2f}",
                1e3 * r[i].s[0] / steps, 1e3 * r[i].s[1] / steps, 1e3 * r[i].s[2] / steps, (double)r[i].calls / steps);
    }
    fprintf(f, "]");
}

int rt_profile_json(const rt_ctx *ctx, FILE *f) {
    const rt_profile *p = ctx->prof_store;
    static const char *const phase[3] = {"fwd", "bwd", "other"};
    if (!p) {
        fprintf(f, "{\"enabled\": false}\n");
        return RT_OK;
    }
    size_t nop, nlayer;
    double total, ph[3] = {0, 0, 0}, steps = steps_of(p);
    prof_row *ops = rows(p, 0, 0, &nop, &total), *layers = rows(p, 1, 0, &nlayer, &total);
    if (!ops || !layers) {
        free(ops);
        free(layers);
        return RT_ENOMEM;
    }
    for (size_t i = 0; i < nop; i++)
        for (int k = 0; k < 3; k++) ph[k] += ops[i].s[k];
    fprintf(f,
            "{\"enabled\": %s, \"steps\": %lld, \"complete\": %s, \"ms_per_step\": %.4f, \"fwd_ms\": %.4f, "
            "\"bwd_ms\": %.4f, \"other_ms\": %.4f",
            ctx->prof ? "true" : "false", (long long)p->steps, p->dropped ? "false" : "true", 1e3 * total / steps,
            1e3 * ph[0] / steps, 1e3 * ph[1] / steps, 1e3 * ph[2] / steps);
    json_rows(f, "ops", "op", ops, nop, steps);
    json_rows(f, "layers", "layer", layers, nlayer, steps);
    fprintf(f, ", \"entries\": [");
    for (size_t i = 0; i < p->nent; i++) {
        const prof_entry *e = &p->ent[i];
        fprintf(f, "%s{\"op\": ", i ? ", " : "");
        json_str(f, e->op);
        fprintf(f, ", \"layer\": ");
        json_str(f, e->layer);
        fprintf(f, ", \"phase\": \"%s\", \"ms\": %.4f, \"calls\": %.2f}", phase[e->phase], 1e3 * e->s / steps,
                (double)e->calls / steps);
    }
    fprintf(f, "]}\n");
    free(ops);
    free(layers);
    return RT_OK;
}
