/* IDX files (MNIST, Fashion-MNIST): ubyte images n x rows x cols and ubyte labels, gzipped or not. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "data/data_util.h"

#define IDX_IMAGES_MAGIC 0x00000803u /* type 0x08 (ubyte), 3 dims */
#define IDX_LABELS_MAGIC 0x00000801u /* type 0x08 (ubyte), 1 dim */

/* Reads up to n bytes; returns the count read (short = end of data) or -1 on a stream error. */
static int64_t gz_read(gzFile f, unsigned char *buf, int64_t n) {
    int64_t got = 0;
    while (got < n) {
        int64_t want = n - got > (1 << 30) ? (1 << 30) : n - got;
        int r = gzread(f, buf + got, (unsigned)want);
        if (r < 0) return got > 0 ? got : -1;
        if (r == 0) break;
        got += r;
    }
    return got;
}

/* Why a short read happened: a stream error (bad gzip data) or plain end of file. */
static const char *gz_why(gzFile f) {
    int err = 0;
    const char *m = gzerror(f, &err);
    return err != Z_OK && m && *m ? m : "end of file";
}

static int open_gz(rt_ctx *ctx, const char *path, gzFile *f) {
    errno = 0;
    *f = gzopen(path, "rb");
    if (!*f) return rt_fail(ctx, RT_EIO, "idx: cannot open %s: %s", path, errno ? strerror(errno) : "gzopen failed");
    return RT_OK;
}

/* Reads the magic number and ndim big-endian dims; checks the magic. */
static int read_header(rt_ctx *ctx, gzFile f, const char *path, uint32_t magic, int ndim, int64_t *dims) {
    unsigned char h[16];
    int64_t need = 4 + 4 * (int64_t)ndim, got = gz_read(f, h, need);
    if (got < need)
        return rt_fail(ctx, RT_EFORMAT, "idx: %s: truncated header: %lld of %lld bytes (%s)", path,
                       (long long)(got < 0 ? 0 : got), (long long)need, gz_why(f));
    uint32_t m = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
    if (m != magic)
        return rt_fail(ctx, RT_EFORMAT, "idx: %s: wrong magic number: expected 0x%08x (%s), found 0x%08x", path, magic,
                       ndim == 3 ? "ubyte images, 3 dims" : "ubyte labels, 1 dim", m);
    for (int i = 0; i < ndim; i++) {
        const unsigned char *p = h + 4 + 4 * i;
        dims[i] = (int64_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]);
    }
    return RT_OK;
}

/* Reads exactly n payload bytes, growing the buffer as data arrives (so a corrupt header that claims
 * a huge size is reported as truncated instead of allocating it). *out is malloc'd. */
static int read_payload(rt_ctx *ctx, gzFile f, const char *path, int64_t n, const char *what, unsigned char **out) {
    *out = NULL;
    unsigned char *buf = NULL;
    int64_t got = 0, cap = 0;
    while (got < n) {
        int64_t ncap = cap ? 2 * cap : ((int64_t)1 << 24);
        if (ncap > n) ncap = n;
        unsigned char *nb = realloc(buf, (size_t)ncap);
        if (!nb) {
            free(buf);
            return rt_fail(ctx, RT_ENOMEM, "idx: %s: cannot allocate %lld bytes", path, (long long)ncap);
        }
        buf = nb;
        cap = ncap;
        int64_t want = cap - got, r = gz_read(f, buf + got, want);
        if (r > 0) got += r;
        if (r < want) break; /* short read: end of data or a stream error */
    }
    if (got < n) {
        free(buf);
        return rt_fail(ctx, RT_EFORMAT, "idx: %s: truncated: expected %lld bytes of %s, got %lld (%s)", path,
                       (long long)n, what, (long long)got, gz_why(f));
    }
    *out = buf;
    return RT_OK;
}

int rt_data_load_idx(rt_ctx *ctx, const char *images_path, const char *labels_path, int num_classes, rt_dataset **out) {
    *out = NULL;
    if (num_classes < 1 || num_classes > 256)
        return rt_fail(ctx, RT_EINVAL, "idx: num_classes %d not in [1, 256] (labels are bytes)", num_classes);
    gzFile fi = NULL, fl = NULL;
    unsigned char *pix = NULL, *lab = NULL;
    rt_dataset *ds = NULL;
    int64_t d[3], nl;
    int rc = open_gz(ctx, images_path, &fi);
    if (!rc) rc = read_header(ctx, fi, images_path, IDX_IMAGES_MAGIC, 3, d);
    if (!rc && (d[1] < 1 || d[2] < 1))
        rc = rt_fail(ctx, RT_EFORMAT, "idx: %s: bad image size %lldx%lld", images_path, (long long)d[1],
                     (long long)d[2]);
    char what[96];
    if (!rc) {
        snprintf(what, sizeof what, "pixel data (%lld images of %lldx%lld)", (long long)d[0], (long long)d[1],
                 (long long)d[2]);
        rc = read_payload(ctx, fi, images_path, d[0] * d[1] * d[2], what, &pix);
    }
    if (!rc) rc = open_gz(ctx, labels_path, &fl);
    if (!rc) rc = read_header(ctx, fl, labels_path, IDX_LABELS_MAGIC, 1, &nl);
    if (!rc && nl != d[0])
        rc = rt_fail(ctx, RT_EFORMAT, "idx: %s has %lld images but %s has %lld labels", images_path, (long long)d[0],
                     labels_path, (long long)nl);
    if (!rc) {
        snprintf(what, sizeof what, "labels (%lld)", (long long)nl);
        rc = read_payload(ctx, fl, labels_path, nl, what, &lab);
    }
    for (int64_t i = 0; !rc && i < nl; i++)
        if (lab[i] >= num_classes)
            rc = rt_fail(ctx, RT_EFORMAT, "idx: %s: label %d at index %lld is >= num_classes %d", labels_path, lab[i],
                         (long long)i, num_classes);
    if (!rc && !(ds = rt_dataset_new(ctx, d[0], 1, d[1], d[2], num_classes, "idx"))) rc = rt_status(ctx);
    if (!rc) {
        int64_t total = d[0] * d[1] * d[2];
        for (int64_t i = 0; i < total; i++) ds->x[i] = pix[i] / 255.0f; /* as torchvision ToTensor: exact division */
        for (int64_t i = 0; i < nl; i++) ds->y[i] = lab[i];
        *out = ds;
    }
    if (fi) gzclose(fi);
    if (fl) gzclose(fl);
    free(pix);
    free(lab);
    return rc;
}

/* dir/base if it exists, else dir/base.gz; fails naming both (with the install hint for the default). */
static int find_file(rt_ctx *ctx, const char *dir, const char *base, int is_default, char *path, size_t cap) {
    snprintf(path, cap, "%s/%s", dir, base);
    if (access(path, F_OK) == 0) return RT_OK;
    snprintf(path, cap, "%s/%s.gz", dir, base);
    if (access(path, F_OK) == 0) return RT_OK;
    return rt_fail(ctx, RT_EIO, "idx: missing file %s/%s[.gz]%s", dir, base,
                   is_default ? ": install it with: apt-get install dataset-fashion-mnist" : "");
}

int rt_data_load_idx_dir(rt_ctx *ctx, const char *dir, const char *split, rt_dataset **out) {
    *out = NULL;
    if (!split || (strcmp(split, "train") && strcmp(split, "t10k")))
        return rt_fail(ctx, RT_EINVAL, "idx: split '%s' is neither 'train' nor 't10k'", split ? split : "(null)");
    char dirbuf[4096], ip[4096 + 64], lp[4096 + 64], base[64];
    snprintf(dirbuf, sizeof dirbuf, "%s", dir ? dir : RT_FASHION_MNIST_DIR);
    for (size_t n = strlen(dirbuf); n > 1 && dirbuf[n - 1] == '/'; n--) dirbuf[n - 1] = 0; /* "dir/" = "dir" */
    dir = dirbuf;
    int is_default = strcmp(dir, RT_FASHION_MNIST_DIR) == 0;
    snprintf(base, sizeof base, "%s-images-idx3-ubyte", split);
    int rc = find_file(ctx, dir, base, is_default, ip, sizeof ip);
    snprintf(base, sizeof base, "%s-labels-idx1-ubyte", split);
    if (!rc) rc = find_file(ctx, dir, base, is_default, lp, sizeof lp);
    if (!rc) rc = rt_data_load_idx(ctx, ip, lp, 10, out);
    if (!rc) {
        const char *slash = strrchr(dir, '/'), *dname = slash && slash[1] ? slash + 1 : dir;
        snprintf((*out)->name, sizeof(*out)->name, "%.40s-%s", dname, split);
    }
    return rc;
}
