/* The loader: per-epoch seeded order, per-batch seeded augmentation, and a background thread that
 * prepares batch k+1 into a second buffer while the caller trains on batch k. A batch is a pure
 * function of (seed, epoch, batch index), so prefetching never changes what is produced. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_util.h"

// in (c,h,w), out (c,h,w): out(ch,i,j) = norm(in(ch, i+oy-pad, jj+ox-pad)) with jj = flip ? w-1-j : j, 0 outside
void rt_augment_sample(const float *in, float *out, int64_t c, int64_t h, int64_t w, int64_t pad, int64_t oy,
                       int64_t ox, int flip, const float *mean, const float *std) {
    for (int64_t ch = 0; ch < c; ch++) {
        float m = mean ? mean[ch] : 0.0f, inv = mean ? 1.0f / std[ch] : 1.0f;
        const float *ip = in + ch * h * w;
        float *op = out + ch * h * w;
        for (int64_t i = 0; i < h; i++) {
            int64_t si = i + oy - pad;
            for (int64_t j = 0; j < w; j++) {
                int64_t sj = (flip ? w - 1 - j : j) + ox - pad;
                float v = si >= 0 && si < h && sj >= 0 && sj < w ? ip[si * w + sj] : 0.0f;
                op[i * w + j] = mean ? (v - m) * inv : v;
            }
        }
    }
}

enum { SLOT_EMPTY, SLOT_QUEUED, SLOT_FILLING, SLOT_READY };

typedef struct {
    float *x;
    int32_t *y;
    int64_t *idx;
    int64_t epoch, bidx, b; /* the batch this slot holds or is to hold */
    int state;
} slot;

struct rt_loader {
    const rt_dataset *ds;
    int64_t batch, nb, per;
    int shuffle;
    uint64_t seed;
    int64_t pad;
    int hflip;
    float *mean, *std; /* copies, or NULL */
    /* producer state, touched only by whoever fills batches (the worker while it runs) */
    int64_t *perm, perm_epoch;
    slot s[2];
    int held;           /* slot handed out by the last rt_loader_next, or -1 */
    int64_t epoch, cur; /* the consumer's position: the next batch to hand out */
    int prefetch, running, stop;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

/* The order of epoch e: identity, or a permutation drawn from (seed, e). */
static void make_perm(rt_loader *l, int64_t epoch) {
    int64_t n = l->ds->n;
    for (int64_t i = 0; i < n; i++) l->perm[i] = i;
    if (l->shuffle) {
        rt_rng r;
        rt_rng_seed(&r, rt_data_mix(rt_data_mix(l->seed, 0x0de7), (uint64_t)epoch));
        rt_data_shuffle(&r, l->perm, n);
    }
    l->perm_epoch = epoch;
}

/* Fills s with batch (s->epoch, s->bidx): depends on nothing else. */
static void fill(rt_loader *l, slot *s) {
    if (l->perm_epoch != s->epoch) make_perm(l, s->epoch);
    const rt_dataset *ds = l->ds;
    int64_t start = s->bidx * l->batch, b = ds->n - start < l->batch ? ds->n - start : l->batch, per = l->per;
    int aug = l->pad > 0 || l->hflip || l->mean;
    rt_rng r;
    rt_rng_seed(&r, rt_data_mix(rt_data_mix(rt_data_mix(l->seed, 0xa06), (uint64_t)s->epoch), (uint64_t)s->bidx));
    for (int64_t i = 0; i < b; i++) {
        int64_t k = l->perm[start + i];
        s->idx[i] = k;
        s->y[i] = ds->y[k];
        if (!aug) {
            memcpy(s->x + i * per, ds->x + k * per, (size_t)per * sizeof(float));
            continue;
        }
        /* draws per sample, in this order: crop offsets (y, x), then the flip */
        int64_t oy = l->pad, ox = l->pad;
        if (l->pad > 0) {
            oy = (int64_t)rt_rng_below(&r, (uint64_t)(2 * l->pad + 1));
            ox = (int64_t)rt_rng_below(&r, (uint64_t)(2 * l->pad + 1));
        }
        int flip = l->hflip ? (int)(rt_rng_u64(&r) >> 63) : 0;
        rt_augment_sample(ds->x + k * per, s->x + i * per, ds->c, ds->h, ds->w, l->pad, oy, ox, flip, l->mean, l->std);
    }
    s->b = b;
}

static void *worker(void *arg) {
    rt_loader *l = arg;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        slot *s = NULL;
        while (!l->stop && !s) {
            for (int i = 0; i < 2 && !s; i++)
                if (l->s[i].state == SLOT_QUEUED) s = &l->s[i];
            if (!s && !l->stop) pthread_cond_wait(&l->cv, &l->mu);
        }
        if (l->stop) break;
        s->state = SLOT_FILLING; /* from here the consumer leaves s (and its tag) alone */
        pthread_mutex_unlock(&l->mu);
        fill(l, s);
        pthread_mutex_lock(&l->mu);
        s->state = SLOT_READY;
        pthread_cond_broadcast(&l->cv);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

static void stop_worker(rt_loader *l) {
    if (!l->running) return;
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->th, NULL);
    l->running = l->stop = 0;
    for (int i = 0; i < 2; i++)
        if (i != l->held) l->s[i].state = SLOT_EMPTY;
}

rt_loader *rt_loader_new(rt_ctx *ctx, const rt_dataset *ds, int64_t batch, int shuffle, int drop_last, uint64_t seed,
                         const rt_augment *aug) {
    if (!ds || ds->n < 1 || batch < 1) {
        rt_fail(ctx, RT_EINVAL, "loader: need a non-empty data set and batch >= 1 (n=%lld, batch %lld)",
                (long long)(ds ? ds->n : 0), (long long)batch);
        return NULL;
    }
    int64_t nb = drop_last ? ds->n / batch : (ds->n + batch - 1) / batch;
    if (nb == 0) {
        rt_fail(ctx, RT_EINVAL, "loader: batch %lld > %lld samples of '%s' with drop_last leaves no batch",
                (long long)batch, (long long)ds->n, ds->name);
        return NULL;
    }
    if (aug && (aug->pad < 0 || !aug->mean != !aug->std)) {
        rt_fail(ctx, RT_EINVAL, "loader: augmentation needs pad >= 0 (%lld) and both mean and std or neither",
                (long long)aug->pad);
        return NULL;
    }
    if (aug && aug->std)
        for (int64_t ch = 0; ch < ds->c; ch++)
            if (!(aug->std[ch] > 0) || !isfinite(aug->std[ch]) || !isfinite(aug->mean[ch])) {
                rt_fail(ctx, RT_EINVAL, "loader: channel %lld has mean %g std %g (std must be > 0)", (long long)ch,
                        aug->mean[ch], aug->std[ch]);
                return NULL;
            }
    rt_loader *l = calloc(1, sizeof *l);
    if (!l) goto oom;
    l->ds = ds;
    l->batch = batch;
    l->nb = nb;
    l->per = rt_dataset_sample_numel(ds);
    l->shuffle = shuffle;
    l->seed = seed;
    l->held = -1;
    l->prefetch = 1;
    l->perm_epoch = -1;
    if (pthread_mutex_init(&l->mu, NULL)) {
        free(l);
        goto oom;
    }
    if (pthread_cond_init(&l->cv, NULL)) {
        pthread_mutex_destroy(&l->mu);
        free(l);
        goto oom;
    }
    int bad = !(l->perm = malloc((size_t)ds->n * sizeof(int64_t)));
    for (int i = 0; i < 2; i++) {
        bad |= !(l->s[i].x = malloc((size_t)(batch * l->per) * sizeof(float)));
        bad |= !(l->s[i].y = malloc((size_t)batch * sizeof(int32_t)));
        bad |= !(l->s[i].idx = malloc((size_t)batch * sizeof(int64_t)));
    }
    if (aug) {
        l->pad = aug->pad;
        l->hflip = aug->hflip;
        if (aug->mean) {
            bad |= !(l->mean = malloc((size_t)ds->c * sizeof(float)));
            bad |= !(l->std = malloc((size_t)ds->c * sizeof(float)));
            if (!bad) {
                memcpy(l->mean, aug->mean, (size_t)ds->c * sizeof(float));
                memcpy(l->std, aug->std, (size_t)ds->c * sizeof(float));
            }
        }
    }
    if (bad) {
        rt_loader_free(l);
        goto oom;
    }
    return l;
oom:
    rt_fail(ctx, RT_ENOMEM, "loader: cannot allocate buffers for batches of %lld", (long long)batch);
    return NULL;
}

static int hand_out(rt_loader *l, int i, float **x, int32_t **y, int64_t *b) {
    l->held = i;
    l->cur++;
    if (x) *x = l->s[i].x;
    if (y) *y = l->s[i].y;
    if (b) *b = l->s[i].b;
    return 1;
}

int rt_loader_next(rt_loader *l, float **x, int32_t **y, int64_t *b) {
    if (!l) return RT_EINVAL;
    if (l->prefetch && !l->running) /* if no thread can be had, batches are made in the calling thread */
        l->prefetch = l->running = pthread_create(&l->th, NULL, worker, l) == 0;
    if (!l->running) {
        l->held = -1;
        if (l->cur >= l->nb) {
            l->epoch++;
            l->cur = 0;
            return 0;
        }
        slot *s = &l->s[0];
        s->epoch = l->epoch;
        s->bidx = l->cur;
        fill(l, s);
        s->state = SLOT_READY;
        return hand_out(l, 0, x, y, b);
    }
    pthread_mutex_lock(&l->mu);
    if (l->held >= 0) l->s[l->held].state = SLOT_EMPTY;
    l->held = -1;
    if (l->cur >= l->nb) {
        l->epoch++;
        l->cur = 0;
        pthread_mutex_unlock(&l->mu);
        return 0;
    }
    int64_t e = l->epoch, k = l->cur;
    int i = -1;
    for (int j = 0; j < 2 && i < 0; j++)
        if (l->s[j].state != SLOT_EMPTY && l->s[j].epoch == e && l->s[j].bidx == k) i = j;
    if (i < 0) { /* not prefetched (first call, or after set_epoch): ask for it in a slot not being filled */
        i = l->s[0].state == SLOT_FILLING ? 1 : 0;
        if (l->s[1 - i].state == SLOT_QUEUED) l->s[1 - i].state = SLOT_EMPTY; /* stale: don't let it go first */
        l->s[i].epoch = e;
        l->s[i].bidx = k;
        l->s[i].state = SLOT_QUEUED;
        pthread_cond_broadcast(&l->cv);
    }
    while (l->s[i].state != SLOT_READY) pthread_cond_wait(&l->cv, &l->mu);
    /* prefetch the batch after this one into the other slot (the next epoch's first after the last) */
    slot *o = &l->s[1 - i];
    int64_t ne = k + 1 < l->nb ? e : e + 1, nk = k + 1 < l->nb ? k + 1 : 0;
    if (o->state != SLOT_FILLING && !(o->state != SLOT_EMPTY && o->epoch == ne && o->bidx == nk)) {
        o->epoch = ne;
        o->bidx = nk;
        o->state = SLOT_QUEUED;
        pthread_cond_broadcast(&l->cv);
    }
    int r = hand_out(l, i, x, y, b);
    pthread_mutex_unlock(&l->mu);
    return r;
}

const int64_t *rt_loader_indices(const rt_loader *l) { return l && l->held >= 0 ? l->s[l->held].idx : NULL; }

void rt_loader_set_epoch(rt_loader *l, int64_t epoch) {
    if (!l) return;
    if (l->running) pthread_mutex_lock(&l->mu);
    if (l->held >= 0) l->s[l->held].state = SLOT_EMPTY;
    l->held = -1;
    l->epoch = epoch;
    l->cur = 0;
    if (l->running) pthread_mutex_unlock(&l->mu);
}

int64_t rt_loader_epoch(const rt_loader *l) { return l->epoch; }
int64_t rt_loader_num_batches(const rt_loader *l) { return l->nb; }

void rt_loader_set_prefetch(rt_loader *l, int on) {
    if (!l) return;
    l->prefetch = on != 0;
    if (!on) stop_worker(l);
}

void rt_loader_free(rt_loader *l) {
    if (!l) return;
    stop_worker(l);
    pthread_cond_destroy(&l->cv);
    pthread_mutex_destroy(&l->mu);
    free(l->perm);
    for (int i = 0; i < 2; i++) {
        free(l->s[i].x);
        free(l->s[i].y);
        free(l->s[i].idx);
    }
    free(l->mean);
    free(l->std);
    free(l);
}
