/* safetensors files: an 8-byte little-endian header length N, N bytes of JSON describing each
 * tensor (dtype, shape, byte range in the data section) plus optional "__metadata__" strings, then
 * the data section. Reading validates everything the format promises before anyone trusts it;
 * writing goes through path.tmp + fsync + rename so a crash never leaves a half-written file. */
#include "retort/io.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_MAX_HEADER ((uint64_t)100 << 20) /* 100 MB, as the reference implementation */
#define ST_MAX_INT 9007199254740992.0       /* 2^53: JSON numbers arrive as doubles */

/* ---- dtypes and little-endian scalars (byte by byte: the host's byte order is not assumed) ---- */

static const struct {
    const char *name;
    size_t size;
} dtypes[] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2}, {"U16", 2}, {"F16", 2},
    {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4},     {"I64", 8},     {"U64", 8}, {"F64", 8},
};

static size_t dtype_size(const char *name) {
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (!strcmp(dtypes[i].name, name)) return dtypes[i].size;
    return 0;
}

static uint64_t get_le(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static void put_le(unsigned char *p, uint64_t v, int n) {
    for (int i = 0; i < n; i++, v >>= 8) p[i] = (unsigned char)v;
}

static float f16_to_f32(uint16_t h) {
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    float v;
    if (exp == 0)
        v = ldexpf((float)man, -24); /* zero and subnormals */
    else if (exp == 31)
        v = man ? NAN : INFINITY;
    else
        v = ldexpf((float)(man | 0x400), (int)exp - 25);
    return h >> 15 ? -v : v;
}

static float bits_to_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static char *shape_str(int ndim, const int64_t *shape, char *buf) {
    int n = sprintf(buf, "(");
    for (int i = 0; i < ndim && n < 80; i++) n += sprintf(buf + n, "%s%lld", i ? "," : "", (long long)shape[i]);
    sprintf(buf + n, ")");
    return buf;
}

/* ---- reading ---- */

void rt_st_free(rt_safetensors *st) {
    if (!st) return;
    for (int i = 0; i < st->nmeta; i++) {
        free(st->meta_keys[i]);
        free(st->meta_values[i]);
    }
    free(st->meta_keys);
    free(st->meta_values);
    free(st->entries);
    free(st->data);
    free(st->path);
    free(st);
}

static int cmp_entry_name(const void *a, const void *b) {
    return strcmp(((const rt_st_entry *)a)->name, ((const rt_st_entry *)b)->name);
}

typedef struct {
    size_t begin, end;
    int idx;
} range;

static int cmp_range(const void *a, const void *b) {
    const range *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->idx - y->idx;
}

/* A JSON number that is a non-negative integer below 2^53. */
static int json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= ST_MAX_INT) || d != floor(d)) return 0;
    *out = (uint64_t)d;
    return 1;
}

static int parse_entry(rt_ctx *ctx, const char *path, const cJSON *e, size_t data_len, rt_st_entry *out) {
    const char *name = e->string;
    if (strlen(name) >= sizeof out->name)
        return rt_fail(ctx, RT_EFORMAT, "safetensors %s: tensor name '%.40s...' is longer than %zu bytes", path, name,
                       sizeof out->name - 1);
    strcpy(out->name, name);
    if (!cJSON_IsObject(e)) return rt_fail(ctx, RT_EFORMAT, "safetensors %s: entry '%s' is not an object", path, name);

    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt))
        return rt_fail(ctx, RT_EFORMAT, "safetensors %s: entry '%s' lacks a string 'dtype'", path, name);
    if (!cJSON_IsArray(sh))
        return rt_fail(ctx, RT_EFORMAT, "safetensors %s: entry '%s' lacks a 'shape' array", path, name);
    if (!cJSON_IsArray(off))
        return rt_fail(ctx, RT_EFORMAT, "safetensors %s: entry '%s' lacks a 'data_offsets' array", path, name);

    size_t esize = dtype_size(dt->valuestring);
    if (!esize)
        return rt_fail(ctx, RT_EFORMAT, "safetensors %s: entry '%s' has unknown dtype '%.16s'", path, name,
                       dt->valuestring);
    strcpy(out->dtype, dt->valuestring); /* known names fit in 8 bytes */

    int ndim = cJSON_GetArraySize(sh);
    if (ndim > RT_MAX_DIMS)
        return rt_fail(ctx, RT_EFORMAT, "safetensors %s: entry '%s' has %d dimensions, at most %d are supported", path,
                       name, ndim, RT_MAX_DIMS);
    out->ndim = ndim;
    uint64_t numel = 1, bytes;
    int k = 0, overflow = 0;
    for (const cJSON *v = sh->child; v; v = v->next, k++) {
        uint64_t d;
        if (!json_uint(v, &d)) {
            char *txt = cJSON_PrintUnformatted(v);
            int rc =
                rt_fail(ctx, RT_EFORMAT, "safetensors %s: entry '%s' has shape value %.32s, not a non-negative integer",
                        path, name, txt ? txt : "?");
            free(txt);
            return rc;
        }
        out->shape[k] = (int64_t)d;
        overflow |= __builtin_mul_overflow(numel, d, &numel);
    }
    overflow |= __builtin_mul_overflow(numel, (uint64_t)esize, &bytes);

    uint64_t b, en;
    if (cJSON_GetArraySize(off) != 2 || !json_uint(off->child, &b) || !json_uint(off->child->next, &en))
        return rt_fail(ctx, RT_EFORMAT,
                       "safetensors %s: entry '%s' has data_offsets that are not two non-negative integers", path,
                       name);
    if (en < b)
        return rt_fail(ctx, RT_EFORMAT,
                       "safetensors %s: entry '%s' has data_offsets [%llu, %llu] with end before begin", path, name,
                       (unsigned long long)b, (unsigned long long)en);
    if (en > data_len)
        return rt_fail(ctx, RT_EFORMAT,
                       "safetensors %s: entry '%s' has data_offsets end %llu beyond the data section (%zu bytes)", path,
                       name, (unsigned long long)en, data_len);
    out->begin = (size_t)b;
    out->end = (size_t)en;
    if (overflow || bytes != en - b) {
        char s[96];
        return rt_fail(ctx, RT_EFORMAT,
                       "safetensors %s: entry '%s' has shape %s of %s (%llu bytes) but data_offsets cover %llu bytes",
                       path, name, shape_str(ndim, out->shape, s), out->dtype,
                       overflow ? 0ull : (unsigned long long)bytes, (unsigned long long)(en - b));
    }
    return RT_OK;
}

static int parse_metadata(rt_ctx *ctx, const char *path, const cJSON *m, rt_safetensors *st) {
    if (!cJSON_IsObject(m)) return rt_fail(ctx, RT_EFORMAT, "safetensors %s: __metadata__ is not an object", path);
    int n = cJSON_GetArraySize(m);
    st->meta_keys = calloc((size_t)n + 1, sizeof(char *));
    st->meta_values = calloc((size_t)n + 1, sizeof(char *));
    if (!st->meta_keys || !st->meta_values) return rt_fail(ctx, RT_ENOMEM, "safetensors %s: out of memory", path);
    for (const cJSON *v = m->child; v; v = v->next) {
        if (!cJSON_IsString(v))
            return rt_fail(ctx, RT_EFORMAT, "safetensors %s: metadata value of '%s' is not a string", path, v->string);
        for (int i = 0; i < st->nmeta; i++)
            if (!strcmp(st->meta_keys[i], v->string))
                return rt_fail(ctx, RT_EFORMAT, "safetensors %s: duplicate metadata key '%s'", path, v->string);
        st->meta_keys[st->nmeta] = strdup(v->string);
        st->meta_values[st->nmeta] = strdup(v->valuestring);
        st->nmeta++; /* counted before the check so rt_st_free releases a half-made pair */
        if (!st->meta_keys[st->nmeta - 1] || !st->meta_values[st->nmeta - 1])
            return rt_fail(ctx, RT_ENOMEM, "safetensors %s: out of memory", path);
    }
    return RT_OK;
}

/* Fills st's entries and metadata from the header text, checking each entry and then that the
 * byte ranges tile the data section exactly (no overlaps, no gaps, as the format requires). */
static int parse_header(rt_ctx *ctx, const char *path, const char *hdr, size_t n, rt_safetensors *st) {
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(hdr, n, &end, 0);
    if (!root)
        return rt_fail(ctx, RT_EFORMAT, "safetensors %s: header is not valid JSON (error at byte %zu of %zu)", path,
                       end ? (size_t)(end - hdr) : (size_t)0, n);
    int rc = RT_OK;
    range *ranges = NULL;
    for (const char *p = end; p < hdr + n; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            rc = rt_fail(ctx, RT_EFORMAT, "safetensors %s: header has trailing data after the JSON at byte %zu", path,
                         (size_t)(p - hdr));
            goto done;
        }
    if (!cJSON_IsObject(root)) {
        rc = rt_fail(ctx, RT_EFORMAT, "safetensors %s: header is not a JSON object", path);
        goto done;
    }

    int total = cJSON_GetArraySize(root), nmeta = 0;
    st->entries = calloc((size_t)total + 1, sizeof *st->entries);
    if (!st->entries) {
        rc = rt_fail(ctx, RT_ENOMEM, "safetensors %s: out of memory for %d entries", path, total);
        goto done;
    }
    for (const cJSON *e = root->child; e; e = e->next) {
        if (!strcmp(e->string, "__metadata__")) {
            if (nmeta++) {
                rc = rt_fail(ctx, RT_EFORMAT, "safetensors %s: duplicate __metadata__", path);
                goto done;
            }
            if ((rc = parse_metadata(ctx, path, e, st))) goto done;
            continue;
        }
        if ((rc = parse_entry(ctx, path, e, st->data_len, &st->entries[st->count]))) goto done;
        st->count++;
    }

    qsort(st->entries, (size_t)st->count, sizeof *st->entries, cmp_entry_name);
    for (int i = 1; i < st->count; i++)
        if (!strcmp(st->entries[i - 1].name, st->entries[i].name)) {
            rc = rt_fail(ctx, RT_EFORMAT, "safetensors %s: duplicate tensor name '%s'", path, st->entries[i].name);
            goto done;
        }

    ranges = malloc(((size_t)st->count + 1) * sizeof *ranges);
    if (!ranges) {
        rc = rt_fail(ctx, RT_ENOMEM, "safetensors %s: out of memory", path);
        goto done;
    }
    for (int i = 0; i < st->count; i++) ranges[i] = (range){st->entries[i].begin, st->entries[i].end, i};
    qsort(ranges, (size_t)st->count, sizeof *ranges, cmp_range);
    size_t covered = 0; /* the data section is covered up to here */
    int last = -1;
    for (int i = 0; i < st->count; i++) {
        const range *r = &ranges[i];
        if (r->begin < covered) {
            const rt_st_entry *a = &st->entries[last], *b = &st->entries[r->idx];
            rc = rt_fail(ctx, RT_EFORMAT, "safetensors %s: tensors '%s' [%zu, %zu) and '%s' [%zu, %zu) overlap", path,
                         a->name, a->begin, a->end, b->name, b->begin, b->end);
            goto done;
        }
        if (r->begin > covered) {
            rc = rt_fail(ctx, RT_EFORMAT,
                         "safetensors %s: gap in the data section: bytes [%zu, %zu) belong to no tensor", path, covered,
                         r->begin);
            goto done;
        }
        if (r->end > covered || last < 0) last = r->idx;
        covered = r->end;
    }
    if (covered != st->data_len)
        rc = rt_fail(ctx, RT_EFORMAT, "safetensors %s: gap in the data section: bytes [%zu, %zu) belong to no tensor",
                     path, covered, st->data_len);
done:
    free(ranges);
    cJSON_Delete(root);
    return rc;
}

int rt_st_read(rt_ctx *ctx, const char *path, rt_safetensors **out) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return rt_fail(ctx, RT_EIO, "safetensors %s: cannot open: %s", path, strerror(errno));
    int rc = RT_OK;
    char *hdr = NULL;
    rt_safetensors *st = calloc(1, sizeof *st);
    struct stat sb;
    unsigned char len8[8];
    if (!st || !(st->path = strdup(path))) {
        rc = rt_fail(ctx, RT_ENOMEM, "safetensors %s: out of memory", path);
        goto done;
    }
    if (fstat(fileno(f), &sb) || !S_ISREG(sb.st_mode)) {
        rc = rt_fail(ctx, RT_EIO, "safetensors %s: not a regular file", path);
        goto done;
    }
    uint64_t size = (uint64_t)sb.st_size;
    if (size < 8) {
        rc = rt_fail(ctx, RT_EFORMAT, "safetensors %s: file is %llu bytes, shorter than the 8-byte header length", path,
                     (unsigned long long)size);
        goto done;
    }
    if (fread(len8, 1, 8, f) != 8) goto read_error;
    uint64_t n = get_le(len8, 8);
    if (n > ST_MAX_HEADER) {
        rc = rt_fail(ctx, RT_EFORMAT, "safetensors %s: header length %llu exceeds the 100 MB limit", path,
                     (unsigned long long)n);
        goto done;
    }
    if (n > size - 8) {
        rc = rt_fail(ctx, RT_EFORMAT, "safetensors %s: header length %llu is larger than the file (%llu bytes)", path,
                     (unsigned long long)n, (unsigned long long)size);
        goto done;
    }
    st->data_len = (size_t)(size - 8 - n);
    hdr = malloc((size_t)n + 1);
    st->data = malloc(st->data_len ? st->data_len : 1);
    if (!hdr || !st->data) {
        rc =
            rt_fail(ctx, RT_ENOMEM, "safetensors %s: out of memory reading %llu bytes", path, (unsigned long long)size);
        goto done;
    }
    if (fread(hdr, 1, (size_t)n, f) != n || fread(st->data, 1, st->data_len, f) != st->data_len) goto read_error;
    hdr[n] = 0;
    rc = parse_header(ctx, path, hdr, (size_t)n, st);
    goto done;
read_error:
    rc = rt_fail(ctx, RT_EIO, "safetensors %s: read failed: %s", path,
                 ferror(f) ? strerror(errno) : "file shrank while being read");
done:
    fclose(f);
    free(hdr);
    if (rc)
        rt_st_free(st);
    else
        *out = st;
    return rc;
}

const rt_st_entry *rt_st_find(const rt_safetensors *st, const char *name) {
    if (!st || !name || strlen(name) >= sizeof st->entries[0].name) return NULL;
    rt_st_entry key;
    strcpy(key.name, name);
    return bsearch(&key, st->entries, (size_t)st->count, sizeof *st->entries, cmp_entry_name);
}

const char *rt_st_meta(const rt_safetensors *st, const char *key) {
    for (int i = 0; st && i < st->nmeta; i++)
        if (!strcmp(st->meta_keys[i], key)) return st->meta_values[i];
    return NULL;
}

int rt_st_get_f32(rt_ctx *ctx, const rt_safetensors *st, const char *name, float *dst, int ndim, const int64_t *shape) {
    const rt_st_entry *e = rt_st_find(st, name);
    if (!e) return rt_fail(ctx, RT_EINVAL, "safetensors %s: no tensor named '%s'", st->path, name);
    if (shape) {
        int same = e->ndim == ndim;
        for (int i = 0; same && i < ndim; i++) same = e->shape[i] == shape[i];
        if (!same) {
            char a[96], b[96];
            return rt_fail(ctx, RT_ESHAPE, "safetensors %s: tensor '%s' has shape %s, expected %s", st->path, name,
                           shape_str(e->ndim, e->shape, a), shape_str(ndim, shape, b));
        }
    }
    const unsigned char *p = st->data + e->begin;
    size_t esize = dtype_size(e->dtype), n = (e->end - e->begin) / esize;
    if (!strcmp(e->dtype, "F32"))
        for (size_t i = 0; i < n; i++) dst[i] = bits_to_f32((uint32_t)get_le(p + 4 * i, 4));
    else if (!strcmp(e->dtype, "F64"))
        for (size_t i = 0; i < n; i++) {
            uint64_t u = get_le(p + 8 * i, 8);
            double d;
            memcpy(&d, &u, sizeof d);
            dst[i] = (float)d;
        }
    else if (!strcmp(e->dtype, "I64"))
        for (size_t i = 0; i < n; i++) dst[i] = (float)(int64_t)get_le(p + 8 * i, 8);
    else if (!strcmp(e->dtype, "I32"))
        for (size_t i = 0; i < n; i++) dst[i] = (float)(int32_t)(uint32_t)get_le(p + 4 * i, 4);
    else if (!strcmp(e->dtype, "F16"))
        for (size_t i = 0; i < n; i++) dst[i] = f16_to_f32((uint16_t)get_le(p + 2 * i, 2));
    else if (!strcmp(e->dtype, "BF16"))
        for (size_t i = 0; i < n; i++) dst[i] = bits_to_f32((uint32_t)get_le(p + 2 * i, 2) << 16);
    else
        return rt_fail(ctx, RT_EFORMAT, "safetensors %s: tensor '%s' has dtype %s, which cannot be read as float",
                       st->path, name, e->dtype);
    return RT_OK;
}

/* ---- writing ---- */

typedef struct {
    char name[256];
    const char *dtype; /* "F32" or "I64" */
    int ndim;
    int64_t shape[RT_MAX_DIMS];
    unsigned char *bytes; /* little-endian, as they go into the file */
    size_t nbytes;
} w_entry;

struct rt_st_writer {
    w_entry *e;
    int n, cap;
    char **keys, **values;
    int nmeta, mcap;
};

rt_st_writer *rt_st_writer_new(void) { return calloc(1, sizeof(rt_st_writer)); }

void rt_st_writer_free(rt_st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) free(w->e[i].bytes);
    for (int i = 0; i < w->nmeta; i++) {
        free(w->keys[i]);
        free(w->values[i]);
    }
    free(w->e);
    free(w->keys);
    free(w->values);
    free(w);
}

int rt_st_add(rt_ctx *ctx, rt_st_writer *w, const char *name, int ndim, const int64_t *shape, const float *data,
              int as_i64) {
    if (!w || !name) return rt_fail(ctx, RT_EINVAL, "safetensors writer: NULL writer or name");
    if (!strcmp(name, "__metadata__") || strlen(name) >= sizeof w->e[0].name)
        return rt_fail(ctx, RT_EINVAL, "safetensors writer: invalid tensor name '%.64s'", name);
    for (int i = 0; i < w->n; i++)
        if (!strcmp(w->e[i].name, name))
            return rt_fail(ctx, RT_EINVAL, "safetensors writer: duplicate tensor name '%s'", name);
    if (ndim < 0 || ndim > RT_MAX_DIMS)
        return rt_fail(ctx, RT_EINVAL, "safetensors writer: tensor '%s' has %d dimensions", name, ndim);
    uint64_t numel = 1, nbytes;
    int overflow = 0;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return rt_fail(ctx, RT_EINVAL, "safetensors writer: tensor '%s' has a negative dimension", name);
        overflow |= __builtin_mul_overflow(numel, (uint64_t)shape[i], &numel);
    }
    size_t esize = as_i64 ? 8 : 4;
    overflow |= __builtin_mul_overflow(numel, (uint64_t)esize, &nbytes);
    if (overflow || nbytes > SIZE_MAX / 2)
        return rt_fail(ctx, RT_EINVAL, "safetensors writer: tensor '%s' is too large", name);
    if (numel && !data) return rt_fail(ctx, RT_EINVAL, "safetensors writer: tensor '%s' has no data", name);

    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 16;
        w_entry *e = realloc(w->e, (size_t)cap * sizeof *e);
        if (!e) return rt_fail(ctx, RT_ENOMEM, "safetensors writer: out of memory");
        w->e = e;
        w->cap = cap;
    }
    w_entry *e = &w->e[w->n];
    memset(e, 0, sizeof *e);
    e->bytes = malloc(nbytes ? (size_t)nbytes : 1);
    if (!e->bytes) return rt_fail(ctx, RT_ENOMEM, "safetensors writer: out of memory for tensor '%s'", name);
    for (uint64_t i = 0; i < numel; i++) {
        if (as_i64) {
            double v = nearbyint((double)data[i]);
            if (!(v >= -9223372036854775808.0 && v < 9223372036854775808.0)) {
                free(e->bytes);
                return rt_fail(ctx, RT_EINVAL, "safetensors writer: tensor '%s' value %g does not fit in int64", name,
                               (double)data[i]);
            }
            put_le(e->bytes + 8 * i, (uint64_t)(int64_t)v, 8);
        } else {
            uint32_t u;
            memcpy(&u, &data[i], sizeof u);
            put_le(e->bytes + 4 * i, u, 4);
        }
    }
    strcpy(e->name, name);
    e->dtype = as_i64 ? "I64" : "F32";
    e->ndim = ndim;
    for (int i = 0; i < ndim; i++) e->shape[i] = shape[i];
    e->nbytes = (size_t)nbytes;
    w->n++;
    return RT_OK;
}

int rt_st_set_meta(rt_ctx *ctx, rt_st_writer *w, const char *key, const char *value) {
    if (!w || !key || !value) return rt_fail(ctx, RT_EINVAL, "safetensors writer: NULL writer, key or value");
    char *v = strdup(value);
    if (!v) return rt_fail(ctx, RT_ENOMEM, "safetensors writer: out of memory");
    for (int i = 0; i < w->nmeta; i++)
        if (!strcmp(w->keys[i], key)) { /* a later value replaces an earlier one */
            free(w->values[i]);
            w->values[i] = v;
            return RT_OK;
        }
    if (w->nmeta == w->mcap) {
        int cap = w->mcap ? 2 * w->mcap : 8;
        char **k = realloc(w->keys, (size_t)cap * sizeof *k);
        if (k) w->keys = k;
        char **vs = k ? realloc(w->values, (size_t)cap * sizeof *vs) : NULL;
        if (vs) w->values = vs;
        if (!k || !vs) {
            free(v);
            return rt_fail(ctx, RT_ENOMEM, "safetensors writer: out of memory");
        }
        w->mcap = cap;
    }
    if (!(w->keys[w->nmeta] = strdup(key))) {
        free(v);
        return rt_fail(ctx, RT_ENOMEM, "safetensors writer: out of memory");
    }
    w->values[w->nmeta++] = v;
    return RT_OK;
}

/* A growing text buffer; an allocation failure is remembered and reported once at the end. */
typedef struct {
    char *s;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->len + n + 1 > cap) cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_u64(sbuf *b, uint64_t v) {
    char t[24];
    sb_put(b, t, (size_t)snprintf(t, sizeof t, "%llu", (unsigned long long)v));
}

/* A JSON string literal; bytes >= 0x80 pass through (names are UTF-8). */
static void sb_json(sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char t[8];
        if (*p == '"' || *p == '\\') {
            t[0] = '\\';
            t[1] = (char)*p;
            sb_put(b, t, 2);
        } else if (*p < 0x20) {
            sb_put(b, t, (size_t)snprintf(t, sizeof t, "\\u%04x", *p));
        } else {
            sb_put(b, (const char *)p, 1);
        }
    }
    sb_put(b, "\"", 1);
}

static int cmp_w_entry(const void *a, const void *b) {
    return strcmp(((const w_entry *)a)->name, ((const w_entry *)b)->name);
}

static int cmp_str_idx(const void *a, const void *b) {
    return strcmp(**(char *const *const *)a, **(char *const *const *)b);
}

static int write_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n) {
        ssize_t k = write(fd, p, n > (1u << 30) ? (1u << 30) : n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            if (k == 0) errno = EIO;
            return -1;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Makes the rename itself durable; best effort (some file systems refuse to fsync a directory). */
static void sync_parent_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir) return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(dir);
}

int rt_st_write(rt_ctx *ctx, rt_st_writer *w, const char *path) {
    if (!w || !path) return rt_fail(ctx, RT_EINVAL, "safetensors writer: NULL writer or path");
    /* name order: the same tensors always give the same bytes, whatever order they were added in */
    if (w->n > 1) qsort(w->e, (size_t)w->n, sizeof *w->e, cmp_w_entry); /* e is NULL without tensors */
    char ***mk = malloc(((size_t)w->nmeta + 1) * sizeof *mk); /* metadata in key order, by pointer */
    sbuf h = {0};
    char *tmp = malloc(strlen(path) + 5);
    if (!mk || !tmp) {
        free(mk);
        free(tmp);
        return rt_fail(ctx, RT_ENOMEM, "safetensors %s: out of memory", path);
    }
    for (int i = 0; i < w->nmeta; i++) mk[i] = &w->keys[i];
    qsort(mk, (size_t)w->nmeta, sizeof *mk, cmp_str_idx);

    sb_str(&h, "{");
    if (w->nmeta) {
        sb_str(&h, "\"__metadata__\":{");
        for (int i = 0; i < w->nmeta; i++) {
            size_t j = (size_t)(mk[i] - w->keys);
            if (i) sb_str(&h, ",");
            sb_json(&h, w->keys[j]);
            sb_str(&h, ":");
            sb_json(&h, w->values[j]);
        }
        sb_str(&h, "}");
    }
    uint64_t off = 0;
    for (int i = 0; i < w->n; i++) {
        const w_entry *e = &w->e[i];
        if (i || w->nmeta) sb_str(&h, ",");
        sb_json(&h, e->name);
        sb_str(&h, ":{\"dtype\":\"");
        sb_str(&h, e->dtype);
        sb_str(&h, "\",\"shape\":[");
        for (int d = 0; d < e->ndim; d++) {
            if (d) sb_str(&h, ",");
            sb_u64(&h, (uint64_t)e->shape[d]);
        }
        sb_str(&h, "],\"data_offsets\":[");
        sb_u64(&h, off);
        sb_str(&h, ",");
        sb_u64(&h, off += e->nbytes);
        sb_str(&h, "]}");
    }
    sb_str(&h, "}");
    while (h.len % 8) sb_str(&h, " "); /* 8 + header is a multiple of 8: the data section starts aligned */
    free(mk);
    if (h.oom) {
        free(h.s);
        free(tmp);
        return rt_fail(ctx, RT_ENOMEM, "safetensors %s: out of memory building the header", path);
    }

    sprintf(tmp, "%s.tmp", path);
    int rc = RT_OK;
    const char *what = "create";
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) goto io_error;
    unsigned char len8[8];
    put_le(len8, h.len, 8);
    what = "write";
    if (write_all(fd, len8, 8) || write_all(fd, h.s, h.len)) goto io_error;
    for (int i = 0; i < w->n; i++)
        if (write_all(fd, w->e[i].bytes, w->e[i].nbytes)) goto io_error;
    what = "sync";
    if (fsync(fd)) goto io_error;
    what = "close";
    int cfd = fd;
    fd = -1;
    if (close(cfd)) goto io_error;
    what = "rename";
    if (rename(tmp, path)) goto io_error;
    sync_parent_dir(path);
    goto done;
io_error:
    rc = rt_fail(ctx, RT_EIO, "safetensors %s: cannot %s %s: %s", path, what,
                 !strcmp(what, "rename") ? "into place" : tmp, strerror(errno));
    if (fd >= 0) close(fd);
    if (strcmp(what, "create")) unlink(tmp); /* never leave a partial file behind */
done:
    free(h.s);
    free(tmp);
    return rc;
}
