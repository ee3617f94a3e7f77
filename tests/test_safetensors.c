/* safetensors: writer/reader round trip, a file laid out by PyTorch (tools/make_st_fixture.py),
 * one test per malformed-file rule, atomic writes, and parameter checkpoints. */
#include "retort/io.h"
#include "retort/nn.h"
#include "test.h"

#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *tmp_path(const char *tag) {
    static char path[8][128];
    static int k;
    char *p = path[k++ % 8];
    snprintf(p, sizeof path[0], "%s/rt_st_%d_%s.safetensors", rt_test_tmp(), (int)getpid(), tag);
    return p;
}

static int exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

static long file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) ? -1 : (long)sb.st_size;
}

static void put_u64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++, v >>= 8) p[i] = (unsigned char)v;
}

/* A file of: header length (len, or strlen(hdr) when len < 0), hdr, ndata bytes 0, 1, 2, ... */
static void write_raw(const char *path, const char *hdr, long long len, size_t ndata) {
    FILE *f = fopen(path, "wb");
    unsigned char l8[8];
    put_u64(l8, len < 0 ? strlen(hdr) : (uint64_t)len);
    fwrite(l8, 1, 8, f);
    fputs(hdr, f);
    for (size_t i = 0; i < ndata; i++) fputc((int)(i & 0xff), f);
    fclose(f);
}

/* Reads path expecting failure; returns the status and the message (static copy). */
static const char *read_fail(const char *path, int *code) {
    static char m[1024];
    rt_ctx *ctx = rt_ctx_new();
    rt_safetensors *st = (rt_safetensors *)1;
    *code = rt_st_read(ctx, path, &st);
    snprintf(m, sizeof m, "%s%s", rt_errmsg(ctx), st ? " [out not NULL]" : "");
    rt_st_free(st);
    rt_ctx_free(ctx);
    return m;
}

/* A malformed file from a header: the read fails with `want`, naming the path and `phrase`. */
#define CHECK_BAD(hdr, len, ndata, want, phrase)                                                                       \
    do {                                                                                                               \
        const char *p_ = tmp_path("bad");                                                                              \
        write_raw(p_, hdr, len, ndata);                                                                                \
        int c_;                                                                                                        \
        const char *m_ = read_fail(p_, &c_);                                                                           \
        unlink(p_);                                                                                                    \
        CHECKF(c_ == (want) && strstr(m_, p_) && strstr(m_, phrase) && !strstr(m_, "[out not NULL]"),                  \
               "want %d '%s', got %d: %s", (int)(want), phrase, c_, m_);                                               \
    } while (0)

/* The well-formed layout the malformed cases are variations of: a F32 (2,2) and an I64 (1). */
#define GOOD_A "\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}"
#define GOOD_B "\"b\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[16,24]}"

TEST(raw_good_file_reads) {
    /* guards the malformed tests: the same layout, unchanged, must read */
    const char *p = tmp_path("good");
    write_raw(p, "{" GOOD_A "," GOOD_B ",\"__metadata__\":{\"k\":\"v\"}}   ", -1, 24);
    rt_ctx *ctx = rt_ctx_new();
    rt_safetensors *st;
    CHECKF(rt_st_read(ctx, p, &st) == 0, "%s", rt_errmsg(ctx));
    CHECK(st->count == 2 && st->data_len == 24 && !strcmp(rt_st_meta(st, "k"), "v"));
    CHECK(rt_st_find(st, "b")->begin == 16 && !strcmp(rt_st_find(st, "b")->dtype, "I64"));
    rt_st_free(st);
    rt_ctx_free(ctx);
    unlink(p);
}

/* ---- round trip ---- */

static int write_sample(rt_ctx *ctx, const char *path, int reversed) {
    static float w4[2 * 3 * 4 * 5];
    for (int i = 0; i < 120; i++) w4[i] = (float)i * 0.37f - 20.0f;
    w4[7] = -0.0f;
    w4[8] = INFINITY;
    w4[9] = NAN;
    w4[10] = 1e-42f; /* subnormal */
    float s = 3.25f, nbt = 12345, idx[3] = {-2, 0, 1099511627776.0f /* 2^40 */}, none = 0;
    int64_t sh4[4] = {2, 3, 4, 5}, sh1[1] = {3}, sh0[2] = {0, 7};
    const struct {
        const char *name;
        int ndim;
        const int64_t *shape;
        const float *data;
        int as_i64;
    } add[5] = {{"layer1.0.conv1.weight", 4, sh4, w4, 0},
                {"temperature", 0, NULL, &s, 0},
                {"bn1.num_batches_tracked", 0, NULL, &nbt, 1},
                {"index", 1, sh1, idx, 1},
                {"empty", 2, sh0, &none, 0}};
    rt_st_writer *w = rt_st_writer_new();
    int rc = 0;
    for (int k = 0; k < 5 && !rc; k++) {
        int i = reversed ? 4 - k : k;
        rc = rt_st_add(ctx, w, add[i].name, add[i].ndim, add[i].shape, add[i].data, add[i].as_i64);
    }
    if (!rc) rc = rt_st_set_meta(ctx, w, reversed ? "epoch" : "arch", reversed ? "7" : "x");
    if (!rc) rc = rt_st_set_meta(ctx, w, reversed ? "arch" : "epoch", reversed ? "resnet8" : "7");
    if (!rc && !reversed) rc = rt_st_set_meta(ctx, w, "arch", "resnet8"); /* replaces "x" */
    if (!rc) rc = rt_st_set_meta(ctx, w, "quote\"back\\slash", "line\nbreak \xc3\xa9");
    if (!rc) rc = rt_st_write(ctx, w, path);
    rt_st_writer_free(w);
    return rc;
}

TEST(round_trip_f32_i64_scalars_metadata) {
    rt_ctx *ctx = rt_ctx_new();
    const char *p = tmp_path("rt");
    char tmp[160];
    snprintf(tmp, sizeof tmp, "%s.tmp", p);
    CHECKF(write_sample(ctx, p, 0) == 0, "%s", rt_errmsg(ctx));
    CHECK(exists(p) && !exists(tmp));
    rt_safetensors *st;
    CHECKF(rt_st_read(ctx, p, &st) == 0, "%s", rt_errmsg(ctx));
    CHECK(st->count == 5 && st->nmeta == 3);
    CHECK(!strcmp(rt_st_meta(st, "arch"), "resnet8") && !strcmp(rt_st_meta(st, "epoch"), "7"));
    CHECK(!strcmp(rt_st_meta(st, "quote\"back\\slash"), "line\nbreak \xc3\xa9") && !rt_st_meta(st, "nope"));

    const rt_st_entry *e = rt_st_find(st, "layer1.0.conv1.weight");
    CHECK(e && !strcmp(e->dtype, "F32") && e->ndim == 4 && e->shape[0] == 2 && e->shape[3] == 5);
    float w4[120], ref[120];
    int64_t sh4[4] = {2, 3, 4, 5};
    CHECKF(rt_st_get_f32(ctx, st, e->name, w4, 4, sh4) == 0, "%s", rt_errmsg(ctx));
    for (int i = 0; i < 120; i++) ref[i] = (float)i * 0.37f - 20.0f;
    ref[7] = -0.0f, ref[8] = INFINITY, ref[9] = NAN, ref[10] = 1e-42f;
    CHECK(!memcmp(w4, ref, sizeof ref)); /* bit for bit: -0, inf, nan, subnormal */

    e = rt_st_find(st, "temperature");
    float v = 0;
    CHECK(e && e->ndim == 0 && e->end - e->begin == 4);
    CHECK(rt_st_get_f32(ctx, st, "temperature", &v, 0, NULL) == 0 && v == 3.25f);
    e = rt_st_find(st, "bn1.num_batches_tracked");
    CHECK(e && !strcmp(e->dtype, "I64") && e->ndim == 0 && e->end - e->begin == 8);
    CHECK(rt_st_get_f32(ctx, st, e->name, &v, 0, NULL) == 0 && v == 12345);
    e = rt_st_find(st, "index");
    float idx[3];
    CHECK(e && !strcmp(e->dtype, "I64") && e->shape[0] == 3);
    CHECK(rt_st_get_f32(ctx, st, "index", idx, 1, e->shape) == 0);
    CHECK(idx[0] == -2 && idx[1] == 0 && idx[2] == 1099511627776.0f);
    int64_t raw;
    memcpy(&raw, st->data + e->begin + 16, 8);
    CHECK(raw == (int64_t)1 << 40); /* really stored as int64 (little-endian host) */
    e = rt_st_find(st, "empty");
    CHECK(e && e->ndim == 2 && e->shape[0] == 0 && e->shape[1] == 7 && e->begin == e->end);

    /* layout: header padded to 8 bytes, data packed in name order */
    FILE *f = fopen(p, "rb");
    unsigned char l8[8];
    CHECK(fread(l8, 1, 8, f) == 8);
    fclose(f);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | l8[i];
    CHECK((8 + n) % 8 == 0 && (long)(8 + n + st->data_len) == file_size(p));
    for (int i = 1; i < st->count; i++)
        CHECK(strcmp(st->entries[i - 1].name, st->entries[i].name) < 0 &&
              st->entries[i].begin == st->entries[i - 1].end);
    rt_st_free(st);
    rt_ctx_free(ctx);
    unlink(p);
}

TEST(writer_is_reproducible) {
    rt_ctx *ctx = rt_ctx_new();
    const char *a = tmp_path("ord1"), *b = tmp_path("ord2");
    CHECK(write_sample(ctx, a, 0) == 0 && write_sample(ctx, b, 1) == 0);
    long n = file_size(a);
    CHECK(n > 0 && n == file_size(b));
    char *x = malloc((size_t)n), *y = malloc((size_t)n);
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    CHECK(fread(x, 1, (size_t)n, fa) == (size_t)n && fread(y, 1, (size_t)n, fb) == (size_t)n);
    fclose(fa);
    fclose(fb);
    int same = !memcmp(x, y, (size_t)n);
    free(x);
    free(y);
    CHECK(same);
    unlink(a);
    unlink(b);
    rt_ctx_free(ctx);
}

TEST(writer_rejects_bad_adds) {
    rt_ctx *ctx = rt_ctx_new();
    rt_st_writer *w = rt_st_writer_new();
    float x[2] = {1, 2}, big = 1e30f;
    int64_t s[1] = {2}, neg[1] = {-1};
    CHECK(rt_st_add(ctx, w, "x", 1, s, x, 0) == 0);
    CHECK(rt_st_add(ctx, w, "x", 1, s, x, 0) == RT_EINVAL && strstr(rt_errmsg(ctx), "duplicate tensor name 'x'"));
    rt_clear_error(ctx);
    CHECK(rt_st_add(ctx, w, "y", 1, neg, x, 0) == RT_EINVAL && strstr(rt_errmsg(ctx), "negative"));
    rt_clear_error(ctx);
    CHECK(rt_st_add(ctx, w, "z", 0, NULL, &big, 1) == RT_EINVAL && strstr(rt_errmsg(ctx), "int64"));
    rt_clear_error(ctx);
    CHECK(rt_st_add(ctx, w, "__metadata__", 1, s, x, 0) == RT_EINVAL);
    rt_st_writer_free(w);
    rt_ctx_free(ctx);
}

/* ---- a file laid out by PyTorch + the safetensors format (tools/make_st_fixture.py) ---- */

static const char *fixture(void) {
    static char path[512];
    const char *slash = strrchr(__FILE__, '/');
    snprintf(path, sizeof path, "%.*sfixtures/tiny.safetensors", slash ? (int)(slash - __FILE__ + 1) : 0, __FILE__);
    return path;
}

TEST(pytorch_fixture) {
    rt_ctx *ctx = rt_ctx_new();
    rt_safetensors *st;
    CHECKF(rt_st_read(ctx, fixture(), &st) == 0, "%s", rt_errmsg(ctx));
    CHECK(file_size(fixture()) < 4096);
    CHECK(st->count == 9 && !strcmp(rt_st_meta(st, "format"), "pt") && !strcmp(rt_st_meta(st, "arch"), "resnet8"));

    float w[24];
    int64_t sw[4] = {2, 3, 2, 2};
    CHECKF(rt_st_get_f32(ctx, st, "conv.weight", w, 4, sw) == 0, "%s", rt_errmsg(ctx));
    for (int i = 0; i < 24; i++) CHECKF(w[i] == (float)(i - 12) / 8, "conv.weight[%d] = %g", i, w[i]);
    float v;
    CHECK(rt_st_get_f32(ctx, st, "temperature", &v, 0, NULL) == 0 && v == 4.0f);
    CHECK(rt_st_find(st, "temperature")->ndim == 0);
    const rt_st_entry *e = rt_st_find(st, "empty");
    CHECK(e && e->ndim == 2 && e->shape[1] == 0 && e->begin == e->end);

    float sc[5];
    CHECK(!strcmp(rt_st_find(st, "scale")->dtype, "F64") &&
          rt_st_get_f32(ctx, st, "scale", sc, 1, (int64_t[]){5}) == 0);
    for (int i = 0; i < 5; i++) CHECKF(sc[i] == (float)((double)i * 0.1 + 1e-9), "scale[%d] = %.9g", i, sc[i]);
    CHECK(rt_st_get_f32(ctx, st, "bn.num_batches_tracked", &v, 0, NULL) == 0 && v == 12345);
    float ix[3], c[2], h[4], b[3];
    CHECK(rt_st_get_f32(ctx, st, "index", ix, 1, (int64_t[]){3}) == 0);
    CHECK(ix[0] == -2 && ix[1] == 0 && ix[2] == 1099511627776.0f);
    CHECK(!strcmp(rt_st_find(st, "count")->dtype, "I32"));
    CHECK(rt_st_get_f32(ctx, st, "count", c, 2, (int64_t[]){1, 2}) == 0 && c[0] == 7 && c[1] == -7);
    CHECK(!strcmp(rt_st_find(st, "half")->dtype, "F16") && rt_st_get_f32(ctx, st, "half", h, 1, NULL) == 0);
    CHECK(h[0] == 0.5f && h[1] == -1.5f && h[2] == 65504.0f && h[3] == ldexpf(1, -24));
    CHECK(!strcmp(rt_st_find(st, "brain")->dtype, "BF16") && rt_st_get_f32(ctx, st, "brain", b, 1, NULL) == 0);
    CHECK(b[0] == 1.0f && b[1] == -2.5f && b[2] == ldexpf(1, 100));
    rt_st_free(st);
    rt_ctx_free(ctx);
}

TEST(get_f32_errors) {
    rt_ctx *ctx = rt_ctx_new();
    const char *p = tmp_path("get");
    write_raw(p, "{" GOOD_A ",\"u\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[16,19]}}", -1, 19);
    rt_safetensors *st;
    CHECKF(rt_st_read(ctx, p, &st) == 0, "%s", rt_errmsg(ctx));
    float x[4];
    CHECK(rt_st_get_f32(ctx, st, "a", x, 2, (int64_t[]){4, 1}) == RT_ESHAPE);
    CHECKF(strstr(rt_errmsg(ctx), "'a' has shape (2,2), expected (4,1)") && strstr(rt_errmsg(ctx), p), "%s",
           rt_errmsg(ctx));
    rt_clear_error(ctx);
    CHECK(rt_st_get_f32(ctx, st, "a", x, 1, (int64_t[]){4}) == RT_ESHAPE);
    rt_clear_error(ctx);
    CHECK(rt_st_get_f32(ctx, st, "nope", x, 0, NULL) == RT_EINVAL && strstr(rt_errmsg(ctx), "no tensor named 'nope'"));
    rt_clear_error(ctx);
    CHECK(rt_st_get_f32(ctx, st, "u", x, 0, NULL) == RT_EFORMAT && strstr(rt_errmsg(ctx), "dtype U8"));
    rt_st_free(st);
    rt_ctx_free(ctx);
    unlink(p);
}

/* ---- malformed files: one rule each ---- */

TEST(bad_missing_file) {
    int c;
    const char *p = tmp_path("does_not_exist");
    const char *m = read_fail(p, &c);
    CHECKF(c == RT_EIO && strstr(m, p) && strstr(m, "No such file"), "%d %s", c, m);
}

TEST(bad_truncated_below_8_bytes) {
    rt_ctx *ctx = rt_ctx_new();
    const char *p = tmp_path("trunc");
    CHECK(write_sample(ctx, p, 0) == 0);
    CHECK(truncate(p, 5) == 0);
    int c;
    const char *m = read_fail(p, &c);
    CHECKF(c == RT_EFORMAT && strstr(m, p) && strstr(m, "shorter than the 8-byte header length"), "%d %s", c, m);
    rt_ctx_free(ctx);
    unlink(p);
}

TEST(bad_truncated_data) {
    /* a good file missing its last bytes: the last tensor's range runs past the data section */
    rt_ctx *ctx = rt_ctx_new();
    const char *p = tmp_path("trunc2");
    CHECK(write_sample(ctx, p, 0) == 0);
    CHECK(truncate(p, file_size(p) - 4) == 0);
    int c;
    const char *m = read_fail(p, &c);
    CHECKF(c == RT_EFORMAT && strstr(m, p) && strstr(m, "beyond the data section"), "%d %s", c, m);
    rt_ctx_free(ctx);
    unlink(p);
}

TEST(bad_header_length_beyond_file) { CHECK_BAD("{" GOOD_A "}", 4000, 16, RT_EFORMAT, "larger than the file"); }

TEST(bad_header_length_over_100mb) {
    CHECK_BAD("{" GOOD_A "}", 200ll << 20, 16, RT_EFORMAT, "exceeds the 100 MB limit");
}

TEST(bad_json) { CHECK_BAD("{\"a\":{\"dtype\":\"F32\",", -1, 16, RT_EFORMAT, "not valid JSON"); }

TEST(bad_json_trailing_data) { CHECK_BAD("{" GOOD_A "}  x", -1, 16, RT_EFORMAT, "trailing data"); }

TEST(bad_json_not_object) { CHECK_BAD("[1, 2]", -1, 0, RT_EFORMAT, "not a JSON object"); }

TEST(bad_entry_not_object) { CHECK_BAD("{" GOOD_A ",\"b\":[1]}", -1, 16, RT_EFORMAT, "entry 'b' is not an object"); }

TEST(bad_entry_lacks_dtype) {
    CHECK_BAD("{\"a\":{\"shape\":[2,2],\"data_offsets\":[0,16]}}", -1, 16, RT_EFORMAT, "'a' lacks a string 'dtype'");
}

TEST(bad_entry_lacks_shape) {
    CHECK_BAD("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,16]}}", -1, 16, RT_EFORMAT, "'a' lacks a 'shape'");
}

TEST(bad_entry_lacks_offsets) {
    CHECK_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2]}}", -1, 16, RT_EFORMAT, "'a' lacks a 'data_offsets'");
}

TEST(bad_unknown_dtype) {
    CHECK_BAD("{\"a\":{\"dtype\":\"F33\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", -1, 16, RT_EFORMAT,
              "unknown dtype 'F33'");
}

TEST(bad_negative_shape) {
    CHECK_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2,-2],\"data_offsets\":[0,16]}}", -1, 16, RT_EFORMAT,
              "shape value -2, not a non-negative integer");
}

TEST(bad_fractional_shape) {
    CHECK_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5,2],\"data_offsets\":[0,16]}}", -1, 16, RT_EFORMAT,
              "not a non-negative integer");
    CHECK_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[\"2\",2],\"data_offsets\":[0,16]}}", -1, 16, RT_EFORMAT,
              "not a non-negative integer");
}

TEST(bad_too_many_dims) {
    CHECK_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", -1, 4, RT_EFORMAT,
              "7 dimensions");
}

TEST(bad_offsets_malformed) {
    CHECK_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0]}}", -1, 16, RT_EFORMAT,
              "not two non-negative integers");
}

TEST(bad_end_before_begin) {
    CHECK_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[16,0]}}", -1, 16, RT_EFORMAT,
              "end before begin");
}

TEST(bad_end_beyond_data) {
    CHECK_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[8,24]}}", -1, 16, RT_EFORMAT,
              "end 24 beyond the data section (16 bytes)");
}

TEST(bad_size_mismatch) {
    CHECK_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,16]}}", -1, 16, RT_EFORMAT,
              "shape (2,3) of F32 (24 bytes) but data_offsets cover 16 bytes");
    CHECK_BAD("{\"a\":{\"dtype\":\"F64\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", -1, 16, RT_EFORMAT,
              "(32 bytes) but data_offsets cover 16");
}

TEST(bad_overlap) {
    CHECK_BAD("{" GOOD_A ",\"b\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[8,16]}}", -1, 16, RT_EFORMAT,
              "'a' [0, 16) and 'b' [8, 16) overlap");
}

TEST(bad_gap_between) {
    CHECK_BAD("{" GOOD_A ",\"b\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[24,32]}}", -1, 32, RT_EFORMAT,
              "gap in the data section: bytes [16, 24)");
}

TEST(bad_gap_at_start_and_end) {
    CHECK_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[8,24]}}", -1, 24, RT_EFORMAT,
              "gap in the data section: bytes [0, 8)");
    CHECK_BAD("{" GOOD_A "}", -1, 20, RT_EFORMAT, "gap in the data section: bytes [16, 20)");
}

TEST(bad_duplicate_name) {
    CHECK_BAD("{" GOOD_A ",\"a\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[16,24]}}", -1, 24, RT_EFORMAT,
              "duplicate tensor name 'a'");
}

TEST(bad_metadata_not_string) {
    CHECK_BAD("{" GOOD_A ",\"__metadata__\":{\"epoch\":7}}", -1, 16, RT_EFORMAT,
              "metadata value of 'epoch' is not a string");
    CHECK_BAD("{" GOOD_A ",\"__metadata__\":[\"x\"]}", -1, 16, RT_EFORMAT, "__metadata__ is not an object");
}

/* ---- atomic writes ---- */

TEST(write_to_missing_directory) {
    rt_ctx *ctx = rt_ctx_new();
    char p[128];
    snprintf(p, sizeof p, "%s/rt_st_nodir_%d/x.safetensors", rt_test_tmp(), (int)getpid());
    rt_st_writer *w = rt_st_writer_new();
    float x = 1;
    CHECK(rt_st_add(ctx, w, "x", 0, NULL, &x, 0) == 0);
    CHECK(rt_st_write(ctx, w, p) == RT_EIO);
    CHECKF(strstr(rt_errmsg(ctx), p) && strstr(rt_errmsg(ctx), "No such file"), "%s", rt_errmsg(ctx));
    rt_st_writer_free(w);
    rt_ctx_free(ctx);
}

TEST(failed_write_keeps_old_file) {
    /* the file size limit makes write() fail half-way: the old file must survive, no .tmp remain */
    rt_ctx *ctx = rt_ctx_new();
    const char *p = tmp_path("atomic");
    char tmp[160];
    snprintf(tmp, sizeof tmp, "%s.tmp", p);
    CHECKF(write_sample(ctx, p, 0) == 0, "%s", rt_errmsg(ctx));
    long old = file_size(p);

    enum { N = 64 * 1024 };
    float *big = calloc(N, sizeof(float));
    rt_st_writer *w = rt_st_writer_new();
    CHECK(rt_st_add(ctx, w, "big", 1, (int64_t[]){N}, big, 0) == 0);
    struct rlimit saved, lim;
    CHECK(getrlimit(RLIMIT_FSIZE, &saved) == 0);
    lim = saved;
    lim.rlim_cur = 4096;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    int rc = rt_st_write(ctx, w, p);
    setrlimit(RLIMIT_FSIZE, &saved);
    signal(SIGXFSZ, prev);
    rt_st_writer_free(w);
    free(big);

    CHECKF(rc == RT_EIO && strstr(rt_errmsg(ctx), p) && strstr(rt_errmsg(ctx), "cannot write"), "%d %s", rc,
           rt_errmsg(ctx));
    CHECK(!exists(tmp) && file_size(p) == old);
    rt_clear_error(ctx);
    rt_safetensors *st;
    CHECKF(rt_st_read(ctx, p, &st) == 0 && st->count == 5, "%s", rt_errmsg(ctx));
    rt_st_free(st);
    rt_ctx_free(ctx);
    unlink(p);
}

/* ---- parameter checkpoints ---- */

typedef struct {
    const char *name;
    rt_param_kind kind;
    int ndim;
    int64_t shape[4];
    int is_int;
} pspec;

static const pspec base_specs[] = {
    {"conv1.weight", RT_PARAM, 4, {4, 3, 3, 3}, 0},
    {"bn1.weight", RT_PARAM, 1, {4}, 0},
    {"bn1.bias", RT_PARAM, 1, {4}, 0},
    {"bn1.running_mean", RT_BUFFER, 1, {4}, 0},
    {"bn1.running_var", RT_BUFFER, 1, {4}, 0},
    {"bn1.num_batches_tracked", RT_BUFFER, 0, {0}, 1},
    {"fc.weight", RT_PARAM, 2, {10, 4}, 0},
};
#define NBASE (int)(sizeof base_specs / sizeof base_specs[0])

/* A parameter set filled by hand (as rt_params_finalize would lay it out), values from seed. */
static void set_build(rt_paramset *ps, const pspec *sp, int n, uint32_t seed) {
    memset(ps, 0, sizeof *ps);
    ps->items = calloc((size_t)n, sizeof *ps->items);
    ps->count = ps->cap = n;
    for (int i = 0; i < n; i++) {
        rt_param *p = ps->items[i] = calloc(1, sizeof *p);
        snprintf(p->name, sizeof p->name, "%s", sp[i].name);
        p->kind = sp[i].kind;
        p->is_int = sp[i].is_int;
        p->numel = 1;
        for (int d = 0; d < sp[i].ndim; d++) p->numel *= (size_t)sp[i].shape[d];
        p->offset = p->kind == RT_PARAM ? ps->n : ps->nbuf;
        *(p->kind == RT_PARAM ? &ps->n : &ps->nbuf) += p->numel;
    }
    ps->data = malloc((ps->n + 1) * sizeof(float));
    ps->grad = calloc(ps->n + 1, sizeof(float));
    ps->buffers = malloc((ps->nbuf + 1) * sizeof(float));
    for (size_t i = 0; i < ps->n; i++) ps->data[i] = (float)((seed * 2654435761u + i * 40503u) % 1000) / 100 - 5;
    for (size_t i = 0; i < ps->nbuf; i++) ps->buffers[i] = (float)((seed * 7u + i) % 50) / 4;
    for (int i = 0; i < n; i++) {
        rt_param *p = ps->items[i];
        float *home = (p->kind == RT_PARAM ? ps->data : ps->buffers) + p->offset;
        if (p->is_int) *home = (float)(seed % 1000);
        rt_tensor_init(&p->t, home, sp[i].ndim, sp[i].shape);
        if (p->kind == RT_PARAM) p->t.grad = ps->grad + p->offset;
    }
    ps->bound_data = ps->data;
    ps->bound_grad = ps->grad;
    ps->finalized = 1;
}

static void set_free(rt_paramset *ps) {
    for (int i = 0; i < ps->count; i++) free(ps->items[i]);
    free(ps->items);
    free(ps->data);
    free(ps->grad);
    free(ps->buffers);
}

static int set_equal(const rt_paramset *a, const rt_paramset *b) {
    return a->n == b->n && a->nbuf == b->nbuf && !memcmp(a->data, b->data, a->n * sizeof(float)) &&
           !memcmp(a->buffers, b->buffers, a->nbuf * sizeof(float));
}

static const char *saved_checkpoint(rt_ctx *ctx) {
    const char *p = tmp_path("ckpt");
    rt_paramset ps;
    set_build(&ps, base_specs, NBASE, 1);
    const char *k[] = {"arch", "epoch"}, *v[] = {"tiny", "7"};
    int rc = rt_params_save(ctx, &ps, p, 2, k, v);
    set_free(&ps);
    return rc ? NULL : p;
}

TEST(params_round_trip) {
    rt_ctx *ctx = rt_ctx_new();
    const char *p = saved_checkpoint(ctx);
    CHECKF(p, "%s", rt_errmsg(ctx));
    rt_paramset a, b;
    set_build(&a, base_specs, NBASE, 1);
    set_build(&b, base_specs, NBASE, 2);
    CHECK(!set_equal(&a, &b));
    rt_safetensors *meta;
    CHECKF(rt_params_load(ctx, &b, p, &meta) == 0, "%s", rt_errmsg(ctx));
    CHECK(set_equal(&a, &b));
    CHECK(meta && !strcmp(rt_st_meta(meta, "arch"), "tiny") && !strcmp(rt_st_meta(meta, "epoch"), "7"));
    CHECK(meta->count == NBASE);
    CHECK(!strcmp(rt_st_find(meta, "bn1.num_batches_tracked")->dtype, "I64"));
    CHECK(!strcmp(rt_st_find(meta, "bn1.running_var")->dtype, "F32"));
    CHECK(rt_params_load(ctx, &b, p, NULL) == 0);
    rt_st_free(meta);

    /* the set's own data is saved, not a bound look-ahead */
    float *other = calloc(a.n, sizeof(float));
    a.bound_data = other;
    for (int i = 0; i < a.count; i++)
        if (a.items[i]->kind == RT_PARAM) a.items[i]->t.data = other + a.items[i]->offset;
    CHECK(rt_params_save(ctx, &a, p, 0, NULL, NULL) == 0);
    CHECK(rt_params_load(ctx, &b, p, NULL) == 0 && !memcmp(a.data, b.data, a.n * sizeof(float)));
    free(other);
    set_free(&a);
    set_free(&b);
    rt_ctx_free(ctx);
    unlink(p);
}

/* Loads the checkpoint into a set built from specs; the load must fail with want, leave the set
 * untouched, and return the message. */
static const char *load_fail(const pspec *sp, int n, int *code, int *untouched) {
    static char m[1024];
    rt_ctx *ctx = rt_ctx_new();
    const char *p = saved_checkpoint(ctx);
    rt_paramset ps, before;
    set_build(&ps, sp, n, 3);
    set_build(&before, sp, n, 3);
    rt_safetensors *meta = (rt_safetensors *)1;
    *code = rt_params_load(ctx, &ps, p, &meta);
    *untouched = set_equal(&ps, &before) && !meta;
    snprintf(m, sizeof m, "%s", rt_errmsg(ctx));
    set_free(&ps);
    set_free(&before);
    rt_ctx_free(ctx);
    if (p) unlink(p);
    return m;
}

TEST(params_load_missing) {
    pspec sp[NBASE + 1];
    memcpy(sp, base_specs, sizeof base_specs);
    sp[NBASE] = (pspec){"fc.bias", RT_PARAM, 1, {10}, 0};
    int c, same;
    const char *m = load_fail(sp, NBASE + 1, &c, &same);
    CHECKF(c == RT_EFORMAT && same && strstr(m, "checkpoint ") && strstr(m, "/rt_st_") &&
               strstr(m, "missing 1 of 8 tensors: fc.bias"),
           "%d %d %s", c, same, m);
    CHECKF(!strstr(m, "unexpected"), "%s", m);
}

TEST(params_load_unexpected) {
    pspec sp[NBASE];
    int n = 0;
    for (int i = 0; i < NBASE; i++)
        if (strcmp(base_specs[i].name, "bn1.bias") && strcmp(base_specs[i].name, "fc.weight")) sp[n++] = base_specs[i];
    int c, same;
    const char *m = load_fail(sp, n, &c, &same);
    CHECKF(c == RT_EFORMAT && same && strstr(m, "unexpected 2 tensors: bn1.bias, fc.weight"), "%d %d %s", c, same, m);
    CHECKF(!strstr(m, "missing"), "%s", m);
}

TEST(params_load_wrong_shape) {
    pspec sp[NBASE];
    memcpy(sp, base_specs, sizeof base_specs);
    sp[0].shape[0] = 8; /* conv1.weight (8,3,3,3); the file has (4,3,3,3) */
    int c, same;
    const char *m = load_fail(sp, NBASE, &c, &same);
    char want[256];
    snprintf(want, sizeof want, "checkpoint %s: conv1.weight has shape (4,3,3,3), model expects (8,3,3,3)",
             tmp_path("ckpt"));
    CHECKF(c == RT_ESHAPE && same && !strcmp(m, want), "%d %d\n  got:  %s\n  want: %s", c, same, m, want);
}

TEST(params_load_all_problems_at_once) {
    pspec sp[NBASE + 1];
    memcpy(sp, base_specs, sizeof base_specs);
    sp[1] = (pspec){"bn1.gamma", RT_PARAM, 1, {4}, 0}; /* renamed: bn1.weight unexpected, bn1.gamma missing */
    sp[6].shape[0] = 100;                              /* fc.weight (100,4) */
    sp[5].ndim = 1;                                    /* num_batches_tracked (0) instead of () */
    int c, same;
    const char *m = load_fail(sp, NBASE, &c, &same);
    CHECKF(c == RT_EFORMAT && same &&
               strstr(m, "missing 1 of 7 tensors: bn1.gamma; unexpected 1 tensor: bn1.weight; ") &&
               strstr(m, "bn1.num_batches_tracked has shape (), model expects (0)") &&
               strstr(m, "fc.weight has shape (10,4), model expects (100,4)"),
           "%d %d %s", c, same, m);
}

TEST(params_errors_io) {
    rt_ctx *ctx = rt_ctx_new();
    rt_paramset ps;
    set_build(&ps, base_specs, NBASE, 4);
    rt_safetensors *meta = (rt_safetensors *)1;
    const char *p = tmp_path("no_such_ckpt");
    CHECK(rt_params_load(ctx, &ps, p, &meta) == RT_EIO && !meta && strstr(rt_errmsg(ctx), p));
    rt_clear_error(ctx);
    CHECK(rt_params_save(ctx, &ps, "/tmp/rt_st_no_such_dir/x.safetensors", 0, NULL, NULL) == RT_EIO);
    CHECK(strstr(rt_errmsg(ctx), "/tmp/rt_st_no_such_dir/x.safetensors"));
    rt_clear_error(ctx);
    ps.finalized = 0;
    CHECK(rt_params_save(ctx, &ps, p, 0, NULL, NULL) == RT_ESTATE && !exists(p));
    set_free(&ps);
    rt_ctx_free(ctx);
}
