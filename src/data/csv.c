/* CSV for tabular data: numeric feature columns and an integer label column, optional header. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_util.h"

rt_csv_opts rt_csv_defaults(void) {
    rt_csv_opts o = {.label_name = NULL, .label_index = -1, .header = -1, .delim = ',', .num_classes = 0};
    return o;
}

/* Trims spaces (and, for header names, surrounding double quotes) in place. */
static char *trim(char *s, int unquote) {
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = 0;
    if (unquote && n >= 2 && s[0] == '"' && s[n - 1] == '"') {
        s[n - 1] = 0;
        s++;
    }
    return s;
}

/* A finite number filling the whole (trimmed) field. */
static int parse_num(const char *s, double *v) {
    if (!*s) return 0;
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    return end != s && *end == 0 && isfinite(*v);
}

/* Splits line at delim into fields (in place, trimmed); returns the count, -1 on allocation failure. */
static int64_t split(char *line, char delim, char ***fields, int64_t *cap) {
    int64_t n = 0;
    for (char *p = line;;) {
        char *e = strchr(p, delim);
        if (e) *e = 0;
        if (n == *cap) {
            int64_t nc = *cap ? 2 * *cap : 16;
            char **nf = realloc(*fields, (size_t)nc * sizeof(char *));
            if (!nf) return -1;
            *fields = nf;
            *cap = nc;
        }
        (*fields)[n++] = p;
        if (!e) break;
        p = e + 1;
    }
    return n;
}

typedef struct {
    char *text;             /* the whole file, cut into lines and fields in place */
    char **fields, **names; /* current line's fields; the header's names (or NULL) */
    int64_t fcap, ncols;
    float *x;
    int32_t *y;
    int64_t rows, rcap;
} csv_state;

static void csv_free(csv_state *s) {
    free(s->text);
    free(s->fields);
    free(s->names);
    free(s->x);
    free(s->y);
}

/* "column 3 ('petal_len')" or "column 3" into buf. */
static const char *colname(const csv_state *s, int64_t k, char *buf, size_t cap) {
    if (s->names)
        snprintf(buf, cap, "column %lld ('%.60s')", (long long)k + 1, s->names[k]);
    else
        snprintf(buf, cap, "column %lld", (long long)k + 1);
    return buf;
}

static int read_text(rt_ctx *ctx, const char *path, char **out) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return rt_fail(ctx, RT_EIO, "csv: cannot open %s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) break;
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) break;
    }
    int err = ferror(f);
    fclose(f);
    if (!buf) return rt_fail(ctx, RT_ENOMEM, "csv: %s: out of memory", path);
    if (err) {
        free(buf);
        return rt_fail(ctx, RT_EIO, "csv: %s: read error", path);
    }
    buf[n] = 0;
    if (strlen(buf) != n) {
        free(buf);
        return rt_fail(ctx, RT_EFORMAT, "csv: %s: contains a NUL byte (not a text file?)", path);
    }
    *out = buf;
    return RT_OK;
}

int rt_data_load_csv(rt_ctx *ctx, const char *path, const rt_csv_opts *opts, rt_dataset **out) {
    *out = NULL;
    rt_csv_opts o = opts ? *opts : rt_csv_defaults();
    if (!o.delim) o.delim = ',';
    if (o.num_classes < 0) return rt_fail(ctx, RT_EINVAL, "csv: %s: num_classes %d < 0", path, o.num_classes);
    csv_state s = {0};
    int rc = read_text(ctx, path, &s.text);
    int64_t lineno = 0, label_col = -1, nf = 0;
    int32_t maxlab = -1;
    char cb[96];
    for (char *p = s.text; !rc && p && *p;) {
        char *line = p, *nl = strchr(p, '\n');
        if (nl) *nl = 0;
        p = nl ? nl + 1 : NULL;
        lineno++;
        size_t len = strlen(line);
        if (len && line[len - 1] == '\r') line[--len] = 0;
        if (!*trim(line, 0)) continue; /* blank line */
        int64_t n = split(line, o.delim, &s.fields, &s.fcap);
        if (n < 0) {
            rc = rt_fail(ctx, RT_ENOMEM, "csv: %s: out of memory", path);
            break;
        }
        for (int64_t k = 0; k < n; k++) s.fields[k] = trim(s.fields[k], s.ncols == 0);
        if (s.ncols == 0) { /* the first line fixes the columns and may be a header */
            s.ncols = n;
            if (n < 2) {
                rc = rt_fail(ctx, RT_EFORMAT, "csv: %s:%lld: %lld column(s); need features and a label", path,
                             (long long)lineno, (long long)n);
                break;
            }
            int is_header = o.header;
            double v;
            if (is_header < 0) {
                is_header = 0;
                for (int64_t k = 0; k < n; k++) is_header |= !parse_num(s.fields[k], &v);
            }
            if (is_header) {
                if (!(s.names = malloc((size_t)n * sizeof(char *)))) {
                    rc = rt_fail(ctx, RT_ENOMEM, "csv: %s: out of memory", path);
                    break;
                }
                memcpy(s.names, s.fields, (size_t)n * sizeof(char *));
            }
            if (o.label_name) {
                if (!s.names) {
                    rc = rt_fail(ctx, RT_EINVAL, "csv: %s: label column '%s' asked by name but the file has no header",
                                 path, o.label_name);
                    break;
                }
                for (int64_t k = 0; k < n && label_col < 0; k++)
                    if (!strcmp(s.names[k], o.label_name)) label_col = k;
                if (label_col < 0) {
                    rc =
                        rt_fail(ctx, RT_EINVAL, "csv: %s: no column named '%s' in the header (first: '%s', last: '%s')",
                                path, o.label_name, s.names[0], s.names[n - 1]);
                    break;
                }
            } else {
                label_col = o.label_index < 0 ? n + o.label_index : o.label_index;
                if (label_col < 0 || label_col >= n) {
                    rc = rt_fail(ctx, RT_EINVAL, "csv: %s: label column index %d out of range for %lld columns", path,
                                 o.label_index, (long long)n);
                    break;
                }
            }
            nf = n - 1;
            if (is_header) continue;
        }
        if (n != s.ncols) {
            rc = rt_fail(ctx, RT_EFORMAT, "csv: %s:%lld: %lld fields, expected %lld", path, (long long)lineno,
                         (long long)n, (long long)s.ncols);
            break;
        }
        if (s.rows == s.rcap) {
            int64_t nc = s.rcap ? 2 * s.rcap : 1024;
            float *nx = realloc(s.x, (size_t)(nc * nf) * sizeof(float));
            if (nx) s.x = nx;
            int32_t *ny = nx ? realloc(s.y, (size_t)nc * sizeof(int32_t)) : NULL;
            if (!ny) {
                rc = rt_fail(ctx, RT_ENOMEM, "csv: %s: out of memory at line %lld", path, (long long)lineno);
                break;
            }
            s.y = ny;
            s.rcap = nc;
        }
        float *xr = s.x + s.rows * nf;
        for (int64_t k = 0, j = 0; k < n && !rc; k++) {
            double v;
            if (!parse_num(s.fields[k], &v)) {
                rc = rt_fail(ctx, RT_EFORMAT, "csv: %s:%lld: %s: '%.40s' is not a number", path, (long long)lineno,
                             colname(&s, k, cb, sizeof cb), s.fields[k]);
            } else if (k == label_col) {
                if (v < 0 || v != floor(v) || v >= 16777216.0)
                    rc = rt_fail(ctx, RT_EFORMAT, "csv: %s:%lld: %s: label '%.40s' is not an integer in [0, 2^24)",
                                 path, (long long)lineno, colname(&s, k, cb, sizeof cb), s.fields[k]);
                else if (o.num_classes && v >= o.num_classes)
                    rc = rt_fail(ctx, RT_EFORMAT, "csv: %s:%lld: %s: label %.0f is >= num_classes %d", path,
                                 (long long)lineno, colname(&s, k, cb, sizeof cb), v, o.num_classes);
                else {
                    s.y[s.rows] = (int32_t)v;
                    if (s.y[s.rows] > maxlab) maxlab = s.y[s.rows];
                }
            } else {
                xr[j++] = (float)v;
            }
        }
        s.rows++;
    }
    if (!rc && s.rows == 0) rc = rt_fail(ctx, RT_EFORMAT, "csv: %s: no data rows", path);
    rt_dataset *ds = NULL;
    if (!rc && !(ds = rt_dataset_new(ctx, s.rows, 1, 1, nf, o.num_classes ? o.num_classes : maxlab + 1, "csv")))
        rc = rt_status(ctx);
    if (!rc) {
        memcpy(ds->x, s.x, (size_t)(s.rows * nf) * sizeof(float));
        memcpy(ds->y, s.y, (size_t)s.rows * sizeof(int32_t));
        const char *slash = strrchr(path, '/');
        snprintf(ds->name, sizeof ds->name, "%.63s", slash ? slash + 1 : path);
        *out = ds;
    }
    csv_free(&s);
    return rc;
}
