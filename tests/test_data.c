/* Data: IDX (plain and gzipped, every malformed case), the real Fashion-MNIST when installed, CIFAR,
 * CSV, the synthetic generator and its ALM-KD splits, splits and normalisation, augmentation and the
 * loader (coverage, order by seed and epoch, prefetching identical to synchronous batches). */
#include <dirent.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "retort/retort.h"
#include "retort/data.h"
#include "test.h"

/* ---- files in a private temporary directory (removed at exit) ---- */

static char tmpdir_[512];

static void rm_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (!stat(p, &st) && S_ISDIR(st.st_mode))
            rm_tree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}
__attribute__((destructor)) static void cleanup(void) {
    if (tmpdir_[0]) rm_tree(tmpdir_);
}

/* tmp path "<dir>/<name>" (the directory is made on first use); sub-directories with mkpath. */
static const char *tmp(const char *name, char *buf) {
    if (!tmpdir_[0]) {
        snprintf(tmpdir_, sizeof tmpdir_, "%s/rt_test_data_XXXXXX", rt_test_tmp());
        if (!mkdtemp(tmpdir_)) {
            perror("mkdtemp");
            exit(1);
        }
    }
    snprintf(buf, 512, "%s/%s", tmpdir_, name);
    return buf;
}
static const char *mkpath(const char *name, char *buf) {
    tmp(name, buf);
    mkdir(buf, 0700);
    return buf;
}

/* Writes bytes to path, gzipped when gz. */
static void write_file(const char *path, const void *data, size_t n, int gz) {
    if (gz) {
        gzFile f = gzopen(path, "wb");
        gzwrite(f, data, (unsigned)n);
        gzclose(f);
    } else {
        FILE *f = fopen(path, "wb");
        fwrite(data, 1, n, f);
        fclose(f);
    }
}
static void write_text(const char *path, const char *text) { write_file(path, text, strlen(text), 0); }

static void be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* IDX images: n images of r x c with pixel (i,k) = (7*i + k) % 256; cut = bytes to drop at the end. */
static size_t idx_images(unsigned char *buf, uint32_t magic, uint32_t n, uint32_t r, uint32_t c, size_t cut) {
    be32(buf, magic);
    be32(buf + 4, n);
    be32(buf + 8, r);
    be32(buf + 12, c);
    for (size_t i = 0; i < (size_t)n * r * c; i++)
        buf[16 + i] = (unsigned char)((7 * (i / (r * c)) + i % (r * c)) % 256);
    return 16 + (size_t)n * r * c - cut;
}
/* IDX labels: label i = i % 10, or bad at index bad_at. */
static size_t idx_labels(unsigned char *buf, uint32_t magic, uint32_t n, int bad_at, int bad) {
    be32(buf, magic);
    be32(buf + 4, n);
    for (uint32_t i = 0; i < n; i++) buf[8 + i] = (unsigned char)(i % 10);
    if (bad_at >= 0) buf[8 + bad_at] = (unsigned char)bad;
    return 8 + n;
}

/* The status, the message and *out NULL after an expected failure; clears the error. */
#define CHECK_FAILS(ctx, call, code, ...)                                                                              \
    do {                                                                                                               \
        rt_dataset *o_ = (rt_dataset *)1;                                                                              \
        int rc_ = call(&o_);                                                                                           \
        const char *needles_[] = {__VA_ARGS__};                                                                        \
        CHECKF(rc_ == (code), "%s: rc %d, expected %d (%s)", #call, rc_, code, rt_errmsg(ctx));                        \
        CHECKF(o_ == NULL, "%s: output not NULL on error", #call);                                                     \
        for (size_t k_ = 0; k_ < sizeof needles_ / sizeof *needles_; k_++)                                             \
            CHECKF(strstr(rt_errmsg(ctx), needles_[k_]), "message '%s' lacks '%s'", rt_errmsg(ctx), needles_[k_]);     \
        rt_clear_error(ctx);                                                                                           \
    } while (0)

/* ---- IDX ---- */

TEST(idx_plain_and_gz) {
    rt_ctx *ctx = rt_ctx_new();
    unsigned char img[16 + 5 * 12], lab[8 + 5];
    char d[512], p[512], q[512];
    size_t ni = idx_images(img, 0x803, 5, 3, 4, 0), nl = idx_labels(lab, 0x801, 5, -1, 0);
    mkpath("idx", d);
    write_file(tmp("idx/train-images-idx3-ubyte.gz", p), img, ni, 1);
    write_file(tmp("idx/train-labels-idx1-ubyte.gz", q), lab, nl, 1);
    write_file(tmp("idx/t10k-images-idx3-ubyte", p), img, ni, 0);
    write_file(tmp("idx/t10k-labels-idx1-ubyte", q), lab, nl, 0);
    const char *splits[2] = {"train", "t10k"};
    for (int s = 0; s < 2; s++) {
        rt_dataset *ds = NULL;
        CHECKF(rt_data_load_idx_dir(ctx, d, splits[s], &ds) == 0, "%s: %s", splits[s], rt_errmsg(ctx));
        CHECK(ds->n == 5 && ds->c == 1 && ds->h == 3 && ds->w == 4 && ds->num_classes == 10);
        for (int64_t i = 0; i < 5 * 12; i++) CHECK(ds->x[i] == img[16 + i] / 255.0f);
        for (int64_t i = 0; i < 5; i++) CHECK(ds->y[i] == lab[8 + i]);
        CHECK(ds->y_clean == NULL);
        CHECKF(!strcmp(ds->name, s ? "idx-t10k" : "idx-train"), "name %s", ds->name);
        rt_dataset_free(ds);
    }
    /* the plain file wins over a gzipped one next to it */
    rt_dataset *ds = NULL;
    unsigned char img2[16 + 2 * 6];
    size_t n2 = idx_images(img2, 0x803, 2, 2, 3, 0);
    write_file(tmp("idx/train-images-idx3-ubyte", p), img2, n2, 0);
    CHECK(rt_data_load_idx_dir(ctx, d, "train", &ds) == RT_EFORMAT); /* 2 images vs 5 labels */
    CHECK(ds == NULL && strstr(rt_errmsg(ctx), "has 2 images") && strstr(rt_errmsg(ctx), "has 5 labels"));
    rt_clear_error(ctx);
    CHECK(rt_data_load_idx_dir(ctx, d, "valid", &ds) == RT_EINVAL && ds == NULL);
    rt_ctx_free(ctx);
}

/* wrappers so CHECK_FAILS can call the loaders with one argument */
static rt_ctx *ectx_;
static const char *eimg_, *elab_;
static int load_pair(rt_dataset **o) { return rt_data_load_idx(ectx_, eimg_, elab_, 10, o); }

TEST(idx_errors) {
    rt_ctx *ctx = ectx_ = rt_ctx_new();
    unsigned char img[16 + 4 * 9], lab[8 + 4], bad[16 + 4 * 9], badl[8 + 4];
    char gi[512], gl[512], pb[512], pl[512], pt[512], pz[512], pm[512], pc[512], pr[512];
    write_file(tmp("good-img", gi), img, idx_images(img, 0x803, 4, 3, 3, 0), 0);
    write_file(tmp("good-lab.gz", gl), lab, idx_labels(lab, 0x801, 4, -1, 0), 1);

    /* wrong magic in each file: expected vs found */
    write_file(tmp("magic-img", pb), bad, idx_images(bad, 0x801, 4, 3, 3, 0), 0);
    eimg_ = pb, elab_ = gl;
    CHECK_FAILS(ctx, load_pair, RT_EFORMAT, pb, "wrong magic", "expected 0x00000803", "found 0x00000801");
    write_file(tmp("magic-lab", pl), badl, idx_labels(badl, 0x803, 4, -1, 0), 0);
    eimg_ = gi, elab_ = pl;
    CHECK_FAILS(ctx, load_pair, RT_EFORMAT, pl, "expected 0x00000801", "found 0x00000803");

    /* truncated pixel data, plain and gzipped, and a truncated header */
    write_file(tmp("trunc-img", pt), bad, idx_images(bad, 0x803, 4, 3, 3, 5), 0);
    eimg_ = pt, elab_ = gl;
    CHECK_FAILS(ctx, load_pair, RT_EFORMAT, pt, "truncated", "expected 36 bytes", "got 31");
    write_file(tmp("trunc-img.gz", pz), bad, idx_images(bad, 0x803, 4, 3, 3, 1), 1);
    eimg_ = pz;
    CHECK_FAILS(ctx, load_pair, RT_EFORMAT, pz, "truncated", "got 35");
    write_file(pt, bad, 10, 0);
    eimg_ = pt;
    CHECK_FAILS(ctx, load_pair, RT_EFORMAT, pt, "truncated header");
    /* a gzip stream cut short: truncated, never a crash */
    {
        unsigned char full[16 + 4 * 9];
        size_t nf = idx_images(full, 0x803, 4, 3, 3, 0);
        write_file(pz, full, nf, 1);
        FILE *f = fopen(pz, "rb");
        unsigned char gzb[256];
        size_t ng = fread(gzb, 1, sizeof gzb, f);
        fclose(f);
        write_file(pz, gzb, ng - 12, 0); /* drop the trailer and some of the deflate data */
        rt_dataset *o = (rt_dataset *)1;
        CHECK(rt_data_load_idx(ctx, pz, gl, 10, &o) == RT_EFORMAT && o == NULL);
        CHECKF(strstr(rt_errmsg(ctx), "truncated"), "%s", rt_errmsg(ctx));
        rt_clear_error(ctx);
    }

    /* count mismatch names both files and counts */
    write_file(tmp("count-lab", pc), badl, idx_labels(badl, 0x801, 3, -1, 0), 0);
    eimg_ = gi, elab_ = pc;
    CHECK_FAILS(ctx, load_pair, RT_EFORMAT, gi, pc, "4 images", "3 labels");

    /* a label out of range: index and value */
    write_file(tmp("range-lab", pr), badl, idx_labels(badl, 0x801, 4, 2, 10), 0);
    eimg_ = gi, elab_ = pr;
    CHECK_FAILS(ctx, load_pair, RT_EFORMAT, pr, "label 10 at index 2", ">= num_classes 10");

    /* missing files */
    eimg_ = tmp("nope-img", pm), elab_ = gl;
    CHECK_FAILS(ctx, load_pair, RT_EIO, pm, "cannot open");
    char d[512];
    mkpath("empty", d);
    rt_dataset *o = (rt_dataset *)1;
    CHECK(rt_data_load_idx_dir(ctx, d, "train", &o) == RT_EIO && o == NULL);
    CHECKF(strstr(rt_errmsg(ctx), "train-images-idx3-ubyte[.gz]") && strstr(rt_errmsg(ctx), d) &&
               !strstr(rt_errmsg(ctx), "apt-get"),
           "%s", rt_errmsg(ctx));
    rt_clear_error(ctx);
    /* the install hint for the default directory (only checkable where it is absent) */
    struct stat st;
    if (stat(RT_FASHION_MNIST_DIR, &st) != 0) {
        CHECK(rt_data_load_idx_dir(ctx, NULL, "train", &o) == RT_EIO && o == NULL);
        CHECKF(strstr(rt_errmsg(ctx), "apt-get install dataset-fashion-mnist"), "%s", rt_errmsg(ctx));
        rt_clear_error(ctx);
    }
    rt_ctx_free(ctx);
}

TEST(fashion_mnist_real) {
    struct stat st;
    if (stat(RT_FASHION_MNIST_DIR, &st) != 0) {
        printf("note: %s absent, real Fashion-MNIST not checked (apt-get install dataset-fashion-mnist)\n",
               RT_FASHION_MNIST_DIR);
        return;
    }
    rt_ctx *ctx = rt_ctx_new();
    const char *splits[2] = {"train", "t10k"};
    const int64_t counts[2] = {60000, 10000};
    for (int s = 0; s < 2; s++) {
        rt_dataset *ds = NULL;
        CHECKF(rt_data_load_idx_dir(ctx, NULL, splits[s], &ds) == 0, "%s", rt_errmsg(ctx));
        CHECK(ds->n == counts[s] && ds->c == 1 && ds->h == 28 && ds->w == 28 && ds->num_classes == 10);
        int64_t hist[10] = {0};
        for (int64_t i = 0; i < ds->n; i++) hist[ds->y[i]]++;
        for (int k = 0; k < 10; k++)
            CHECKF(hist[k] == counts[s] / 10, "%s class %d: %lld", splits[s], k, (long long)hist[k]);
        float lo = 1, hi = 0;
        double sum = 0;
        for (int64_t i = 0; i < ds->n * 784; i++) {
            lo = fminf(lo, ds->x[i]);
            hi = fmaxf(hi, ds->x[i]);
            sum += ds->x[i];
        }
        CHECK(lo == 0.0f && hi == 1.0f);
        double mean = sum / (ds->n * 784.0); /* Fashion-MNIST's pixel mean is about 0.286 */
        CHECKF(mean > 0.27 && mean < 0.30, "mean %g", mean);
        CHECKF(!strcmp(ds->name, s ? "fashion-mnist-t10k" : "fashion-mnist-train"), "%s", ds->name);
        rt_dataset_free(ds);
    }
    rt_ctx_free(ctx);
}

/* ---- CIFAR ---- */

/* A CIFAR record file: records r of nlabel label bytes (labels[r]; CIFAR-100 coarse = 99 - fine) and
 * pixels (k + 3*r + tag) % 256. */
static void write_cifar(const char *path, int nrec, int nlabel, const int *labels, int tag, size_t cut) {
    size_t rl = (size_t)nlabel + 3072, n = rl * nrec;
    unsigned char *b = malloc(n);
    for (int r = 0; r < nrec; r++) {
        unsigned char *p = b + r * rl;
        if (nlabel == 2) p[0] = (unsigned char)(99 - labels[r]);
        p[nlabel - 1] = (unsigned char)labels[r];
        for (int k = 0; k < 3072; k++) p[nlabel + k] = (unsigned char)((k + 3 * r + tag) % 256);
    }
    write_file(path, b, n - cut, 0);
    free(b);
}

TEST(cifar_tiny) {
    rt_ctx *ctx = rt_ctx_new();
    char d[512], p[512];
    mkpath("cifar10", d);
    const int nrec[5] = {2, 1, 3, 1, 2}, labels[3] = {3, 9, 0};
    for (int f = 0; f < 5; f++) {
        char name[64];
        snprintf(name, sizeof name, "cifar10/data_batch_%d.bin", f + 1);
        write_cifar(tmp(name, p), nrec[f], 1, labels, 10 * f, 0);
    }
    write_cifar(tmp("cifar10/test_batch.bin", p), 3, 1, labels, 77, 0);
    rt_dataset *ds = NULL;
    CHECKF(rt_data_load_cifar(ctx, d, 10, 1, &ds) == 0, "%s", rt_errmsg(ctx));
    CHECK(ds->n == 9 && ds->c == 3 && ds->h == 32 && ds->w == 32 && ds->num_classes == 10);
    int64_t i = 0;
    for (int f = 0; f < 5; f++)
        for (int r = 0; r < nrec[f]; r++, i++) {
            CHECK(ds->y[i] == labels[r]);
            /* channel planes: (c, y, x) is byte c*1024 + y*32 + x of the record's pixels */
            for (int k = 0; k < 3072; k += 401) CHECK(ds->x[i * 3072 + k] == ((k + 3 * r + 10 * f) % 256) / 255.0f);
        }
    rt_dataset_free(ds);
    CHECKF(rt_data_load_cifar(ctx, d, 10, 0, &ds) == 0, "%s", rt_errmsg(ctx));
    CHECK(ds->n == 3 && ds->y[1] == 9 && ds->x[3072 + 5] == (5 + 3 + 77) / 255.0f && !strcmp(ds->name, "cifar10-test"));
    rt_dataset_free(ds);

    /* CIFAR-100: the fine label (second byte) */
    mkpath("cifar100", d);
    const int fine[4] = {42, 7, 99, 0};
    write_cifar(tmp("cifar100/train.bin", p), 4, 2, fine, 1, 0);
    CHECKF(rt_data_load_cifar(ctx, d, 100, 1, &ds) == 0, "%s", rt_errmsg(ctx));
    CHECK(ds->n == 4 && ds->num_classes == 100);
    for (int r = 0; r < 4; r++) CHECK(ds->y[r] == fine[r] && ds->x[r * 3072 + 2] == (2 + 3 * r + 1) / 255.0f);
    rt_dataset_free(ds);

    /* errors: a cut record, a label out of range, a missing file, wrong variant */
    write_cifar(tmp("cifar100/test.bin", p), 2, 2, fine, 0, 100);
    ds = (rt_dataset *)1;
    CHECK(rt_data_load_cifar(ctx, d, 100, 0, &ds) == RT_EFORMAT && ds == NULL);
    CHECKF(strstr(rt_errmsg(ctx), p) && strstr(rt_errmsg(ctx), "3074-byte"), "%s", rt_errmsg(ctx));
    rt_clear_error(ctx);
    const int badlab[2] = {5, 10};
    write_cifar(tmp("cifar10/test_batch.bin", p), 2, 1, badlab, 0, 0);
    CHECK(rt_data_load_cifar(ctx, tmp("cifar10", p), 10, 0, &ds) == RT_EFORMAT && ds == NULL);
    CHECKF(strstr(rt_errmsg(ctx), "label 10 at record 1"), "%s", rt_errmsg(ctx));
    rt_clear_error(ctx);
    unlink(tmp("cifar10/data_batch_4.bin", p));
    CHECK(rt_data_load_cifar(ctx, tmp("cifar10", d), 10, 1, &ds) == RT_EIO && ds == NULL);
    CHECKF(strstr(rt_errmsg(ctx), p), "%s", rt_errmsg(ctx));
    rt_clear_error(ctx);
    CHECK(rt_data_load_cifar(ctx, d, 20, 1, &ds) == RT_EINVAL);
    rt_ctx_free(ctx);
}

/* ---- CSV ---- */

TEST(csv_read) {
    rt_ctx *ctx = rt_ctx_new();
    char p[512];
    /* header, label by name in the middle, CRLF, spaces, a blank line */
    write_text(tmp("a.csv", p), "f1, label ,f2\r\n1.5,2,-3\r\n\r\n  4e-1 ,0, 7 \r\n");
    rt_csv_opts o = rt_csv_defaults();
    o.label_name = "label";
    rt_dataset *ds = NULL;
    CHECKF(rt_data_load_csv(ctx, p, &o, &ds) == 0, "%s", rt_errmsg(ctx));
    CHECK(ds->n == 2 && ds->c == 1 && ds->h == 1 && ds->w == 2 && ds->num_classes == 3);
    CHECK(ds->x[0] == 1.5f && ds->x[1] == -3.0f && ds->x[2] == 0.4f && ds->x[3] == 7.0f);
    CHECK(ds->y[0] == 2 && ds->y[1] == 0 && !strcmp(ds->name, "a.csv"));
    rt_dataset_free(ds);
    /* the same by index */
    o = rt_csv_defaults();
    o.label_index = 1;
    o.num_classes = 5;
    CHECKF(rt_data_load_csv(ctx, p, &o, &ds) == 0, "%s", rt_errmsg(ctx));
    CHECK(ds->num_classes == 5 && ds->y[0] == 2 && ds->x[1] == -3.0f);
    rt_dataset_free(ds);
    /* no header (auto-detected), default label = last column, another delimiter */
    write_text(tmp("b.csv", p), "0.5;1;3\n2;3;1\n-1;0;0");
    o = rt_csv_defaults();
    o.delim = ';';
    CHECKF(rt_data_load_csv(ctx, p, &o, &ds) == 0, "%s", rt_errmsg(ctx));
    CHECK(ds->n == 3 && ds->w == 2 && ds->num_classes == 4 && ds->y[0] == 3 && ds->y[2] == 0 && ds->x[4] == -1.0f);
    rt_dataset_free(ds);
    /* header forced on numeric first line: it is skipped */
    o.header = 1;
    CHECKF(rt_data_load_csv(ctx, p, &o, &ds) == 0, "%s", rt_errmsg(ctx));
    CHECK(ds->n == 2 && ds->y[0] == 1);
    rt_dataset_free(ds);

    /* errors name the line and the column */
    write_text(tmp("bad.csv", p), "x,y,cls\n1,2,0\n\n3,abc,1\n");
    ds = (rt_dataset *)1;
    CHECK(rt_data_load_csv(ctx, p, NULL, &ds) == RT_EFORMAT && ds == NULL);
    CHECKF(strstr(rt_errmsg(ctx), "bad.csv:4: column 2 ('y'): 'abc' is not a number"), "%s", rt_errmsg(ctx));
    rt_clear_error(ctx);
    write_text(p, "1,2,0\n3,,1\n");
    CHECK(rt_data_load_csv(ctx, p, NULL, &ds) == RT_EFORMAT && ds == NULL);
    CHECKF(strstr(rt_errmsg(ctx), "bad.csv:2: column 2: '' is not a number"), "%s", rt_errmsg(ctx));
    rt_clear_error(ctx);
    write_text(p, "1,2,0\n3,4,nan\n");
    CHECK(rt_data_load_csv(ctx, p, NULL, &ds) == RT_EFORMAT);
    CHECKF(strstr(rt_errmsg(ctx), ":2: column 3: 'nan' is not a number"), "%s", rt_errmsg(ctx));
    rt_clear_error(ctx);
    write_text(p, "1,2,0\n3,4,1.5\n");
    CHECK(rt_data_load_csv(ctx, p, NULL, &ds) == RT_EFORMAT);
    CHECKF(strstr(rt_errmsg(ctx), ":2: column 3: label '1.5'"), "%s", rt_errmsg(ctx));
    rt_clear_error(ctx);
    write_text(p, "1,2,0\n3,4\n");
    CHECK(rt_data_load_csv(ctx, p, NULL, &ds) == RT_EFORMAT);
    CHECKF(strstr(rt_errmsg(ctx), ":2: 2 fields, expected 3"), "%s", rt_errmsg(ctx));
    rt_clear_error(ctx);
    write_text(p, "1,2,0\n3,4,7\n");
    o = rt_csv_defaults();
    o.num_classes = 5;
    CHECK(rt_data_load_csv(ctx, p, &o, &ds) == RT_EFORMAT);
    CHECKF(strstr(rt_errmsg(ctx), ":2: column 3: label 7 is >= num_classes 5"), "%s", rt_errmsg(ctx));
    rt_clear_error(ctx);
    o = rt_csv_defaults();
    o.label_name = "cls";
    CHECK(rt_data_load_csv(ctx, p, &o, &ds) == RT_EINVAL);
    CHECKF(strstr(rt_errmsg(ctx), "no header"), "%s", rt_errmsg(ctx));
    rt_clear_error(ctx);
    write_text(p, "a,b\n");
    CHECK(rt_data_load_csv(ctx, p, NULL, &ds) == RT_EFORMAT && strstr(rt_errmsg(ctx), "no data rows"));
    rt_clear_error(ctx);
    CHECK(rt_data_load_csv(ctx, tmp("missing.csv", p), NULL, &ds) == RT_EIO && strstr(rt_errmsg(ctx), p));
    rt_ctx_free(ctx);
}

/* ---- synthetic ---- */

/* Between-class variance of the class means over the mean within-class variance, for feature j. */
static double fisher_ratio(const rt_dataset *ds, int64_t j) {
    int K = ds->num_classes;
    double *s = calloc(K, sizeof(double)), *s2 = calloc(K, sizeof(double)), *cnt = calloc(K, sizeof(double));
    double tot = 0;
    for (int64_t i = 0; i < ds->n; i++) {
        double v = ds->x[i * ds->w + j];
        s[ds->y[i]] += v;
        s2[ds->y[i]] += v * v;
        cnt[ds->y[i]]++;
        tot += v;
    }
    double m = tot / ds->n, between = 0, within = 0;
    for (int k = 0; k < K; k++) {
        double mk = s[k] / cnt[k];
        between += cnt[k] * (mk - m) * (mk - m);
        within += s2[k] - cnt[k] * mk * mk;
    }
    free(s);
    free(s2);
    free(cnt);
    return between / within;
}

TEST(synth_make_classification) {
    rt_ctx *ctx = rt_ctx_new();
    rt_synth_opts o = rt_synth_defaults();
    CHECK(o.n_features == 14 && o.n_classes == 20 && o.n_train == 8100 && o.n_val == 900 && o.n_test == 1000 &&
          o.train_flip == 0.1);
    rt_dataset *a = NULL, *b = NULL, *c = NULL;
    CHECKF(rt_data_make_classification(ctx, &o, 10000, 7, &a) == 0, "%s", rt_errmsg(ctx));
    CHECK(a->n == 10000 && a->c == 1 && a->h == 1 && a->w == 14 && a->num_classes == 20);
    int64_t hist[20] = {0};
    for (int64_t i = 0; i < a->n; i++) {
        CHECK(a->y[i] >= 0 && a->y[i] < 20);
        hist[a->y[i]]++;
    }
    for (int k = 0; k < 20; k++)
        CHECKF(hist[k] == 500, "class %d: %lld", k, (long long)hist[k]); /* 40 clusters of 250 */
    /* determinism by seed */
    CHECK(rt_data_make_classification(ctx, &o, 10000, 7, &b) == 0);
    CHECK(!memcmp(a->x, b->x, 10000 * 14 * sizeof(float)) && !memcmp(a->y, b->y, 10000 * sizeof(int32_t)));
    CHECK(rt_data_make_classification(ctx, &o, 10000, 8, &c) == 0);
    CHECK(memcmp(a->x, c->x, 10000 * 14 * sizeof(float)) != 0);
    rt_dataset_free(b);
    rt_dataset_free(c);
    rt_dataset_free(a);

    /* unshuffled features: informative and redundant columns separate the class means, noise does not */
    o.shuffle_features = 0;
    CHECK(rt_data_make_classification(ctx, &o, 10000, 3, &a) == 0);
    double min_useful = 1e30, max_noise = 0;
    for (int64_t j = 0; j < 14; j++) {
        double f = fisher_ratio(a, j);
        if (j < o.n_informative + o.n_redundant)
            min_useful = fmin(min_useful, f);
        else
            max_noise = fmax(max_noise, f);
    }
    CHECKF(min_useful > 10 * max_noise && max_noise < 0.01, "useful min %g, noise max %g", min_useful, max_noise);
    /* unshuffled samples come cluster by cluster: class k % 20 */
    rt_dataset_free(a);
    o.shuffle = 0;
    CHECK(rt_data_make_classification(ctx, &o, 4000, 3, &a) == 0);
    for (int64_t i = 0; i < 4000; i++) CHECK(a->y[i] == (i / 100) % 20);
    /* repeated columns copy a useful one exactly */
    rt_dataset_free(a);
    o.n_repeated = 2;
    CHECK(rt_data_make_classification(ctx, &o, 500, 4, &a) == 0);
    for (int64_t q = 12; q < 14; q++) {
        int found = 0;
        for (int64_t j = 0; j < 12 && !found; j++) {
            int same = 1;
            for (int64_t i = 0; i < 500 && same; i++) same = a->x[i * 14 + q] == a->x[i * 14 + j];
            found = same;
        }
        CHECKF(found, "repeated column %lld copies nothing", (long long)q);
    }
    rt_dataset_free(a);
    /* too many clusters for the hypercube */
    o = rt_synth_defaults();
    o.n_informative = 5;
    CHECK(rt_data_make_classification(ctx, &o, 100, 1, &a) == RT_EINVAL && a == NULL);
    CHECKF(strstr(rt_errmsg(ctx), "40 clusters") && strstr(rt_errmsg(ctx), "32"), "%s", rt_errmsg(ctx));
    rt_ctx_free(ctx);
}

TEST(synth_alm_kd_splits) {
    rt_ctx *ctx = rt_ctx_new();
    rt_synth_opts o = rt_synth_defaults();
    rt_dataset *tr, *va, *te, *tr0, *va0, *te0;
    CHECKF(rt_data_synth_splits(ctx, &o, 11, &tr, &va, &te) == 0, "%s", rt_errmsg(ctx));
    CHECK(tr->n == 8100 && va->n == 900 && te->n == 1000 && tr->w == 14 && va->w == 14 && te->num_classes == 20);
    CHECK(tr->y_clean && !va->y_clean && !te->y_clean);
    int64_t flipped = 0, hist[20] = {0};
    for (int64_t i = 0; i < tr->n; i++) {
        CHECK(tr->y[i] >= 0 && tr->y[i] < 20 && tr->y_clean[i] >= 0 && tr->y_clean[i] < 20);
        flipped += tr->y[i] != tr->y_clean[i];
        hist[tr->y_clean[i]]++;
    }
    CHECKF(flipped == 810, "flipped %lld of 8100", (long long)flipped);
    for (int k = 0; k < 20; k++) /* 405 expected; the split's sampling spread is ~9 */
        CHECKF(hist[k] > 360 && hist[k] < 450, "train class %d: %lld", k, (long long)hist[k]);
    /* without flipping: same features, same clean labels; val and test untouched by the flips */
    o.train_flip = 0;
    CHECK(rt_data_synth_splits(ctx, &o, 11, &tr0, &va0, &te0) == 0);
    CHECK(!memcmp(tr->x, tr0->x, 8100 * 14 * sizeof(float)) && !memcmp(tr->y_clean, tr0->y, 8100 * sizeof(int32_t)));
    CHECK(!memcmp(va->x, va0->x, 900 * 14 * sizeof(float)) && !memcmp(va->y, va0->y, 900 * sizeof(int32_t)));
    CHECK(!memcmp(te->x, te0->x, 1000 * 14 * sizeof(float)) && !memcmp(te->y, te0->y, 1000 * sizeof(int32_t)));
    for (int64_t i = 0; i < 8100; i++) CHECK(tr0->y[i] == tr0->y_clean[i]);
    rt_dataset_free(tr0);
    rt_dataset_free(va0);
    rt_dataset_free(te0);
    /* determinism, and a different seed gives different data and different flips */
    o = rt_synth_defaults();
    CHECK(rt_data_synth_splits(ctx, &o, 11, &tr0, NULL, NULL) == 0);
    CHECK(!memcmp(tr->x, tr0->x, 8100 * 14 * sizeof(float)) && !memcmp(tr->y, tr0->y, 8100 * sizeof(int32_t)));
    rt_dataset_free(tr0);
    CHECK(rt_data_synth_splits(ctx, &o, 12, &tr0, NULL, NULL) == 0);
    CHECK(memcmp(tr->x, tr0->x, 8100 * 14 * sizeof(float)) != 0);
    rt_dataset_free(tr0);
    rt_dataset_free(tr);
    rt_dataset_free(va);
    rt_dataset_free(te);
    o.train_flip = 1.5;
    CHECK(rt_data_synth_splits(ctx, &o, 1, &tr, &va, &te) == RT_EINVAL && tr == NULL && va == NULL && te == NULL);
    rt_ctx_free(ctx);
}

/* ---- splits and normalisation ---- */

/* n samples of (c,h,w); value = sample index * 1000 + position, label = index % K */
static rt_dataset *indexed(rt_ctx *ctx, int64_t n, int64_t c, int64_t h, int64_t w, int K) {
    rt_dataset *ds = rt_dataset_new(ctx, n, c, h, w, K, "ix");
    int64_t per = c * h * w;
    for (int64_t i = 0; i < n; i++) {
        ds->y[i] = (int32_t)(i % K);
        for (int64_t q = 0; q < per; q++) ds->x[i * per + q] = (float)(i * 1000 + q);
    }
    return ds;
}

TEST(dataset_split) {
    rt_ctx *ctx = rt_ctx_new();
    rt_dataset *ds = indexed(ctx, 50, 2, 1, 3, 4), *tr, *va, *tr2, *va2;
    CHECK(rt_dataset_split(ctx, ds, 12, 5, &tr, &va) == 0);
    CHECK(tr->n == 38 && va->n == 12 && !strcmp(tr->name, "ix-train") && !strcmp(va->name, "ix-val"));
    int seen[50] = {0};
    rt_dataset *parts[2] = {tr, va};
    for (int p = 0; p < 2; p++) {
        int64_t last = -1;
        for (int64_t i = 0; i < parts[p]->n; i++) {
            int64_t k = (int64_t)parts[p]->x[i * 6] / 1000;
            CHECK(k > last); /* original order kept */
            last = k;
            seen[k]++;
            CHECK(parts[p]->y[i] == k % 4 && parts[p]->x[i * 6 + 5] == (float)(k * 1000 + 5));
        }
    }
    for (int k = 0; k < 50; k++) CHECK(seen[k] == 1);
    CHECK(rt_dataset_split(ctx, ds, 12, 5, &tr2, &va2) == 0);
    CHECK(!memcmp(va->x, va2->x, 12 * 6 * sizeof(float)));
    rt_dataset_free(tr2);
    rt_dataset_free(va2);
    CHECK(rt_dataset_split(ctx, ds, 12, 6, &tr2, &va2) == 0);
    CHECK(memcmp(va->x, va2->x, 12 * 6 * sizeof(float)) != 0);
    rt_dataset_free(tr2);
    rt_dataset_free(va2);
    rt_dataset_free(tr);
    rt_dataset_free(va);
    CHECK(rt_dataset_split(ctx, ds, 51, 5, &tr, &va) == RT_EINVAL && tr == NULL && va == NULL);
    rt_dataset_free(ds);
    rt_ctx_free(ctx);
}

TEST(dataset_normalize) {
    rt_ctx *ctx = rt_ctx_new();
    rt_dataset *ds = rt_dataset_new(ctx, 40, 3, 2, 2, 2, "n");
    rt_rng r;
    rt_rng_seed(&r, 9);
    for (int64_t i = 0; i < 40 * 12; i++)
        ds->x[i] = (float)((i / 4) % 3 + 1) * rt_rng_normal(&r) + (float)((i / 4) % 3);
    for (int64_t i = 0; i < 40; i++) ds->x[i * 12 + 8] = 5.0f; /* channel 2, position 0: constant */
    float mean[12], std[12];
    CHECK(rt_dataset_stats(ctx, ds, RT_NORM_CHANNEL, mean, std) == 0);
    for (int ch = 0; ch < 3; ch++) { /* against a direct two-pass computation */
        double s = 0, v = 0;
        for (int64_t i = 0; i < 40; i++)
            for (int q = 0; q < 4; q++) s += ds->x[i * 12 + ch * 4 + q];
        double m = s / 160;
        for (int64_t i = 0; i < 40; i++)
            for (int q = 0; q < 4; q++) v += pow(ds->x[i * 12 + ch * 4 + q] - m, 2);
        CHECK_CLOSE(mean[ch], m, 1e-6);
        CHECK_CLOSE(std[ch], sqrt(v / 160), 1e-6);
    }
    CHECK(rt_dataset_normalize(ctx, ds, RT_NORM_CHANNEL, mean, std) == 0);
    float m2[12], s2[12];
    CHECK(rt_dataset_stats(ctx, ds, RT_NORM_CHANNEL, m2, s2) == 0);
    for (int ch = 0; ch < 3; ch++) {
        CHECK_CLOSE(m2[ch], 0, 1e-5);
        CHECK_CLOSE(s2[ch], 1, 1e-5);
    }
    /* per feature: a constant feature gets std 1 */
    CHECK(rt_dataset_stats(ctx, ds, RT_NORM_FEATURE, mean, std) == 0);
    CHECK(std[8] == 1.0f);
    CHECK(rt_dataset_normalize(ctx, ds, RT_NORM_FEATURE, mean, std) == 0);
    CHECK(rt_dataset_stats(ctx, ds, RT_NORM_FEATURE, m2, s2) == 0);
    for (int q = 0; q < 12; q++) {
        CHECK_CLOSE(m2[q], 0, 1e-5);
        CHECK_CLOSE(s2[q], q == 8 ? 1 : 1, 1e-5);
    }
    std[3] = 0;
    CHECK(rt_dataset_normalize(ctx, ds, RT_NORM_FEATURE, mean, std) == RT_EINVAL);
    CHECKF(strstr(rt_errmsg(ctx), "feature 3"), "%s", rt_errmsg(ctx));
    rt_dataset_free(ds);
    rt_ctx_free(ctx);
}

/* ---- augmentation and the loader ---- */

TEST(augment_semantics) {
    /* one channel 3x4, values 1..12; pad 1 */
    float in[12], out[12];
    for (int i = 0; i < 12; i++) in[i] = (float)(i + 1);
    /* window at (oy,ox) = (0,2): out(i,j) = in(i-1, j+1), zero above the image and right of it */
    rt_augment_sample(in, out, 1, 3, 4, 1, 0, 2, 0, NULL, NULL);
    const float e1[12] = {0, 0, 0, 0, 2, 3, 4, 0, 6, 7, 8, 0};
    CHECK(!memcmp(out, e1, sizeof e1));
    /* the same window mirrored left-right */
    rt_augment_sample(in, out, 1, 3, 4, 1, 0, 2, 1, NULL, NULL);
    const float e2[12] = {0, 0, 0, 0, 0, 4, 3, 2, 0, 8, 7, 6};
    CHECK(!memcmp(out, e2, sizeof e2));
    /* centre window = identity; flip only; then normalisation per channel (2 channels of 1x2) */
    rt_augment_sample(in, out, 1, 3, 4, 1, 1, 1, 0, NULL, NULL);
    CHECK(!memcmp(out, in, sizeof in));
    rt_augment_sample(in, out, 1, 3, 4, 0, 0, 0, 1, NULL, NULL);
    CHECK(out[0] == 4 && out[3] == 1 && out[4] == 8 && out[11] == 9);
    const float mean[2] = {1, 10}, std[2] = {2, 4};
    const float in2[4] = {3, 5, 14, 18};
    rt_augment_sample(in2, out, 2, 1, 2, 1, 1, 0, 0, mean, std); /* shift right by one: zero enters */
    CHECK(out[0] == (0 - 1) / 2.0f && out[1] == (3 - 1) / 2.0f && out[2] == (0 - 10) / 4.0f &&
          out[3] == (14 - 10) / 4.0f);
}

/* Collects an epoch: every index once, batches of the right sizes, x and y from those indices. */
static int check_epoch(rt_loader *l, const rt_dataset *ds, int64_t batch, int drop_last, int64_t *order) {
    int64_t per = rt_dataset_sample_numel(ds), pos = 0, nb = 0, bsz;
    float *x;
    int32_t *y;
    int rc;
    while ((rc = rt_loader_next(l, &x, &y, &bsz)) == 1) {
        const int64_t *idx = rt_loader_indices(l);
        int64_t expect = ds->n - pos < batch ? ds->n - pos : batch;
        if (bsz != expect || !idx) return 0;
        for (int64_t i = 0; i < bsz; i++) {
            if (y[i] != ds->y[idx[i]] || memcmp(x + i * per, ds->x + idx[i] * per, per * sizeof(float))) return 0;
            order[pos++] = idx[i];
        }
        nb++;
    }
    if (rc != 0 || nb != rt_loader_num_batches(l)) return 0;
    int64_t n_used = drop_last ? (ds->n / batch) * batch : ds->n;
    if (pos != n_used) return 0;
    char *seen = calloc(ds->n, 1);
    int ok = 1;
    for (int64_t i = 0; i < pos; i++) ok &= !seen[order[i]]++;
    free(seen);
    return ok;
}

TEST(loader_epochs) {
    rt_ctx *ctx = rt_ctx_new();
    rt_dataset *ds = indexed(ctx, 10, 1, 2, 2, 3);
    int64_t o0[10], o1[10], o2[10], o3[10];
    for (int pf = 0; pf < 2; pf++) {
        rt_loader *l = rt_loader_new(ctx, ds, 3, 1, 0, 42, NULL);
        rt_loader_set_prefetch(l, pf);
        CHECK(rt_loader_num_batches(l) == 4 && rt_loader_epoch(l) == 0);
        CHECK(check_epoch(l, ds, 3, 0, o0));
        CHECK(rt_loader_epoch(l) == 1);
        CHECK(check_epoch(l, ds, 3, 0, o1));
        CHECK(memcmp(o0, o1, sizeof o0) != 0); /* reshuffled per epoch */
        rt_loader_free(l);
        /* same seed: same orders; set_epoch(1) jumps straight to epoch 1's order */
        l = rt_loader_new(ctx, ds, 3, 1, 0, 42, NULL);
        rt_loader_set_prefetch(l, pf);
        rt_loader_set_epoch(l, 1);
        CHECK(check_epoch(l, ds, 3, 0, o2) && !memcmp(o1, o2, sizeof o1));
        rt_loader_set_epoch(l, 0);
        CHECK(check_epoch(l, ds, 3, 0, o2) && !memcmp(o0, o2, sizeof o0));
        rt_loader_free(l);
        /* another seed: another order */
        l = rt_loader_new(ctx, ds, 3, 1, 0, 43, NULL);
        rt_loader_set_prefetch(l, pf);
        CHECK(check_epoch(l, ds, 3, 0, o3) && memcmp(o0, o3, sizeof o0) != 0);
        rt_loader_free(l);
        /* drop_last: 3 full batches; no shuffle: identity */
        l = rt_loader_new(ctx, ds, 3, 0, 1, 42, NULL);
        rt_loader_set_prefetch(l, pf);
        CHECK(rt_loader_num_batches(l) == 3 && check_epoch(l, ds, 3, 1, o3));
        for (int i = 0; i < 9; i++) CHECK(o3[i] == i);
        rt_loader_free(l);
    }
    /* bad arguments */
    CHECK(rt_loader_new(ctx, ds, 0, 1, 0, 1, NULL) == NULL && rt_status(ctx) == RT_EINVAL);
    rt_clear_error(ctx);
    CHECK(rt_loader_new(ctx, ds, 11, 1, 1, 1, NULL) == NULL && strstr(rt_errmsg(ctx), "drop_last"));
    rt_clear_error(ctx);
    const float m = 0, s0 = 0;
    rt_augment a = {.pad = 1, .mean = &m, .std = &s0};
    CHECK(rt_loader_new(ctx, ds, 2, 1, 1, 1, &a) == NULL && strstr(rt_errmsg(ctx), "std must be > 0"));
    rt_dataset_free(ds);
    rt_ctx_free(ctx);
}

/* Runs a schedule of next/set_epoch on a loader, recording every batch into a flat log. */
static size_t run_schedule(rt_loader *l, int64_t per, float *log, size_t cap, int toggle) {
    size_t at = 0;
    float *x;
    int32_t *y;
    int64_t b;
    for (int step = 0; step < 60; step++) {
        if (step == 17) rt_loader_set_epoch(l, 5); /* mid-epoch jump (drops prefetched work) */
        if (step == 29) rt_loader_set_epoch(l, 2);
        if (toggle && step % 7 == 3) rt_loader_set_prefetch(l, (step / 7) % 2);
        int rc = rt_loader_next(l, &x, &y, &b);
        const int64_t *idx = rt_loader_indices(l);
        if (at + 3 + (rc == 1 ? b * (per + 2) : 0) > cap) return 0;
        log[at++] = (float)rc;
        log[at++] = (float)rt_loader_epoch(l);
        if (rc != 1) continue;
        log[at++] = (float)b;
        memcpy(log + at, x, b * per * sizeof(float));
        at += b * per;
        for (int64_t i = 0; i < b; i++) {
            log[at++] = (float)y[i];
            log[at++] = (float)idx[i];
        }
    }
    return at;
}

TEST(loader_prefetch_equals_sync) {
    rt_ctx *ctx = rt_ctx_new();
    rt_rng r;
    rt_rng_seed(&r, 5);
    rt_dataset *ds = rt_dataset_new(ctx, 103, 3, 5, 6, 7, "p");
    for (int64_t i = 0; i < 103 * 90; i++) ds->x[i] = rt_rng_normal(&r);
    for (int64_t i = 0; i < 103; i++) ds->y[i] = (int32_t)(i % 7);
    const float mean[3] = {0.1f, -0.2f, 0.3f}, std[3] = {1.5f, 0.5f, 2.0f};
    rt_augment aug = {.pad = 2, .hflip = 1, .mean = mean, .std = std};
    size_t cap = 60 * (3 + 16 * 92);
    float *log[3];
    size_t len[3];
    for (int v = 0; v < 3; v++) { /* 0: background thread, 1: calling thread, 2: switched back and forth */
        rt_loader *l = rt_loader_new(ctx, ds, 16, 1, 0, 77, &aug);
        CHECK(l);
        if (v == 1) rt_loader_set_prefetch(l, 0);
        log[v] = malloc(cap * sizeof(float));
        len[v] = run_schedule(l, 90, log[v], cap, v == 2);
        rt_loader_free(l);
    }
    CHECK(len[0] > 0 && len[0] == len[1] && len[0] == len[2]);
    CHECK(!memcmp(log[0], log[1], len[0] * sizeof(float)));
    CHECK(!memcmp(log[0], log[2], len[0] * sizeof(float)));
    for (int v = 0; v < 3; v++) free(log[v]);
    /* freeing mid-epoch, right after the thread was asked for the next batch, joins cleanly */
    for (int k = 0; k < 20; k++) {
        rt_loader *l = rt_loader_new(ctx, ds, 8, 1, 0, (uint64_t)k, &aug);
        float *x;
        int32_t *y;
        int64_t b;
        for (int s = 0; s < k % 4; s++) CHECK(rt_loader_next(l, &x, &y, &b) == 1);
        rt_loader_free(l);
    }
    rt_dataset_free(ds);
    rt_ctx_free(ctx);
}

TEST(loader_augmentation) {
    rt_ctx *ctx = rt_ctx_new();
    /* 2 channels of 4x5 with distinct values, so each crop/flip is recognisable */
    rt_dataset *ds = indexed(ctx, 6, 2, 4, 5, 2);
    int64_t per = 40, pad = 2;
    rt_augment aug = {.pad = pad, .hflip = 1};
    rt_loader *l = rt_loader_new(ctx, ds, 4, 1, 0, 9, &aug);
    int hits[5][5][2] = {{{0}}};
    float *x, cand[40];
    int32_t *y;
    int64_t b, total = 0;
    for (int epoch = 0; epoch < 60; epoch++) {
        int rc;
        while ((rc = rt_loader_next(l, &x, &y, &b)) == 1) {
            const int64_t *idx = rt_loader_indices(l);
            for (int64_t i = 0; i < b; i++) {
                int found = 0;
                for (int oy = 0; oy <= 2 * pad && !found; oy++)
                    for (int ox = 0; ox <= 2 * pad && !found; ox++)
                        for (int f = 0; f < 2 && !found; f++) {
                            rt_augment_sample(ds->x + idx[i] * per, cand, 2, 4, 5, pad, oy, ox, f, NULL, NULL);
                            if (!memcmp(cand, x + i * per, sizeof cand)) {
                                hits[oy][ox][f]++;
                                found = 1;
                            }
                        }
                CHECKF(found, "sample %lld is no crop/flip of its source", (long long)idx[i]);
                total++;
            }
        }
        CHECK(rc == 0);
    }
    /* every offset and both flips occur (360 samples over 50 cases: ~7 each) */
    for (int oy = 0; oy < 5; oy++)
        for (int ox = 0; ox < 5; ox++)
            for (int f = 0; f < 2; f++) CHECKF(hits[oy][ox][f] > 0, "offset (%d,%d) flip %d never drawn", oy, ox, f);
    CHECK(total == 360);
    rt_loader_free(l);
    rt_dataset_free(ds);
    rt_ctx_free(ctx);
}
