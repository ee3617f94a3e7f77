/* CIFAR-10 / CIFAR-100 binary batches: fixed-size records of label byte(s) + 3x32x32 pixel bytes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/data_util.h"

#define CIFAR_PIX 3072 /* 3 x 32 x 32, channel planes R, G, B, rows top to bottom */

/* Size of path in bytes, or a failure naming it. */
static int file_size(rt_ctx *ctx, const char *path, int64_t *size) {
    struct stat st;
    if (stat(path, &st) != 0) return rt_fail(ctx, RT_EIO, "cifar: cannot open %s: %s", path, strerror(errno));
    *size = (int64_t)st.st_size;
    return RT_OK;
}

/* Appends the records of path to ds (which has room) from sample *at on. */
static int read_batch(rt_ctx *ctx, const char *path, int64_t nrec, int nlabel, rt_dataset *ds, int64_t *at) {
    FILE *f = fopen(path, "rb");
    if (!f) return rt_fail(ctx, RT_EIO, "cifar: cannot open %s: %s", path, strerror(errno));
    unsigned char rec[2 + CIFAR_PIX];
    size_t rlen = (size_t)nlabel + CIFAR_PIX;
    int rc = RT_OK;
    for (int64_t r = 0; r < nrec && !rc; r++) {
        if (fread(rec, 1, rlen, f) != rlen) {
            rc = rt_fail(ctx, RT_EIO, "cifar: %s: read error at record %lld", path, (long long)r);
            break;
        }
        int label = rec[nlabel - 1]; /* CIFAR-100: coarse, fine -> the fine label */
        if (label >= ds->num_classes) {
            rc = rt_fail(ctx, RT_EFORMAT, "cifar: %s: label %d at record %lld is >= num_classes %d", path, label,
                         (long long)r, ds->num_classes);
            break;
        }
        float *x = ds->x + *at * CIFAR_PIX;
        for (int k = 0; k < CIFAR_PIX; k++) x[k] = rec[nlabel + k] / 255.0f;
        ds->y[*at] = label;
        (*at)++;
    }
    fclose(f);
    return rc;
}

int rt_data_load_cifar(rt_ctx *ctx, const char *dir, int num_classes, int train, rt_dataset **out) {
    *out = NULL;
    if (!dir) return rt_fail(ctx, RT_EINVAL, "cifar: no directory given");
    if (num_classes != 10 && num_classes != 100)
        return rt_fail(ctx, RT_EINVAL, "cifar: num_classes %d is neither 10 nor 100", num_classes);
    const char *names10[] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin",
                             "data_batch_5.bin"};
    const char *const *names;
    const char *one;
    int nfiles;
    if (num_classes == 10) {
        one = "test_batch.bin";
        names = train ? names10 : &one;
        nfiles = train ? 5 : 1;
    } else {
        one = train ? "train.bin" : "test.bin";
        names = &one;
        nfiles = 1;
    }
    int nlabel = num_classes == 10 ? 1 : 2;
    int64_t rlen = nlabel + CIFAR_PIX, nrec[5], total = 0;
    char path[5][4096];
    for (int i = 0; i < nfiles; i++) {
        snprintf(path[i], sizeof path[i], "%s/%s", dir, names[i]);
        int64_t size = 0;
        int rc = file_size(ctx, path[i], &size);
        if (rc) return rc;
        if (size == 0 || size % rlen)
            return rt_fail(ctx, RT_EFORMAT,
                           "cifar: %s: size %lld is not a positive multiple of the %lld-byte CIFAR-%d record "
                           "(truncated or wrong variant?)",
                           path[i], (long long)size, (long long)rlen, num_classes);
        nrec[i] = size / rlen;
        total += nrec[i];
    }
    rt_dataset *ds = rt_dataset_new(ctx, total, 3, 32, 32, num_classes, "");
    if (!ds) return rt_status(ctx);
    snprintf(ds->name, sizeof ds->name, "cifar%d-%s", num_classes, train ? "train" : "test");
    int64_t at = 0;
    for (int i = 0; i < nfiles; i++) {
        int rc = read_batch(ctx, path[i], nrec[i], nlabel, ds, &at);
        if (rc) {
            rt_dataset_free(ds);
            return rc;
        }
    }
    *out = ds;
    return RT_OK;
}
