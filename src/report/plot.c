/* `retort plot`: SVG charts of training runs, read from the JSON lines that training and
 * distillation write (metrics.jsonl per epoch, paths.jsonl every few steps). A chart is drawn by
 * hand as SVG text: nice 1-2-5 axis ranges, grid, ticks, one polyline per series and a legend. */
#include "retort/plot.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "report/svg.h"

#define DEFAULT_W 800
#define DEFAULT_H 480
#define MAX_NAME 48      /* legend text beyond this is cut with "..." */
#define MARKERS_UPTO 60  /* series with at most this many points also get a dot per point */
#define MAX_WARN 10      /* skipped-line warnings per file; the rest are counted */
#define HUGE_VALUE 1e100 /* larger magnitudes are treated as absent: they would wreck any axis */

/* Okabe & Ito's palette, safe under the common colour-vision deficiencies; yellow last (weak on white). */
static const char *const palette[8] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7",
                                       "#E69F00", "#56B4E9", "#000000", "#F0E442"};
/* after 8 series the colours repeat with these dash patterns */
static const char *const dashes[4] = {NULL, "8 4", "2 3", "8 3 2 3"};

/* ---- nice axes ---- */

void rt_plot_nice_axis(double lo, double hi, int max_ticks, double min_step, int log, rt_plot_axis *out) {
    if (max_ticks < 2) max_ticks = 2;
    if (log) {
        if (!(lo > 0) || !(hi >= lo) || !isfinite(lo) || !isfinite(hi)) {
            *out = (rt_plot_axis){1, 10, 1, 1};
            return;
        }
        double a = floor(log10(lo)), b = ceil(log10(hi));
        while (a > -330 && pow(10, a) > lo) a--; /* log10 may round across a power of ten */
        while (b < 330 && pow(10, b) < hi) b++;
        if (a == b) a--, b++; /* the data are one power of ten: show the decades on both sides */
        double step = 1;
        for (int i = 0; (b - a) / step > max_ticks - 1; i++) step *= i % 3 == 1 ? 2.5 : 2; /* 1 2 5 10 20 50 */
        *out = (rt_plot_axis){fmax(pow(10, a), DBL_MIN), pow(10, b), step, 1};
        if (out->hi > DBL_MAX) out->hi = DBL_MAX;
        return;
    }
    if (!isfinite(lo) || !isfinite(hi) || hi < lo) lo = 0, hi = 1;
    if (hi == lo) {
        double pad = lo != 0 ? fabs(lo) * 0.05 : 1;
        if (min_step > 0 && pad < min_step) pad = min_step;
        lo -= pad, hi += pad;
    }
    lo = fmax(lo, -DBL_MAX / 8), hi = fmin(hi, DBL_MAX / 8);
    double raw = (hi - lo) / (max_ticks - 1);
    if (min_step > 0 && raw < min_step) raw = min_step;
    double p = pow(10, floor(log10(raw))), step = p;
    static const double mult[] = {1, 2, 5, 10, 20, 50, 100};
    double k0 = 0, k1 = 1;
    for (size_t i = 0; i < sizeof mult / sizeof mult[0]; i++) {
        step = mult[i] * p;
        if (step < raw * (1 - 1e-12)) continue;
        k0 = floor(lo / step + 1e-9), k1 = ceil(hi / step - 1e-9);
        if (k1 - k0 + 1 <= max_ticks) break;
    }
    /* k * step can land a rounding error inside the data: the data end wins then */
    *out = (rt_plot_axis){fmin(k0 * step, lo), fmax(k1 * step, hi), step, 0};
}

/* ---- one chart ---- */

typedef struct {
    double lo, hi, p0, p1; /* data range, and the pixels it maps to */
    int log;
} mapping;

static double map_px(const mapping *m, double v) {
    double t = m->log ? (log10(v) - log10(m->lo)) / (log10(m->hi) - log10(m->lo)) : (v - m->lo) / (m->hi - m->lo);
    return m->p0 + t * (m->p1 - m->p0);
}

static int plottable(double x, double y, int ylog) {
    return isfinite(x) && isfinite(y) && fabs(x) < HUGE_VALUE && fabs(y) < HUGE_VALUE && (!ylog || y > 0);
}

static int64_t count_plottable(const rt_plot_series *se, int ylog) {
    int64_t n = 0;
    for (int64_t j = 0; j < se->n; j++) n += plottable(se->x[j], se->y[j], ylog);
    return n;
}

/* Tick label of v on a linear axis with this step: as many decimals as the step needs, no "-0". */
static void fmt_linear(char *buf, size_t n, double v, double step) {
    if (fabs(v) < step * 1e-6) v = 0;
    int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    if (dec > 8 || fabs(v) >= 1e7)
        snprintf(buf, n, "%.4g", v);
    else
        snprintf(buf, n, "%.*f", dec, v);
}

static void fmt_log(char *buf, size_t n, double mant, int e) {
    if (e >= -4 && e <= 4)
        snprintf(buf, n, "%g", mant * pow(10, e));
    else if (mant == 1)
        snprintf(buf, n, "1e%d", e);
    else
        snprintf(buf, n, "%ge%d", mant, e);
}

/* Display name: cut at MAX_NAME bytes on a UTF-8 boundary. */
static void display_name(char *dst, const char *name) {
    size_t n = strlen(name ? name : "");
    if (n <= MAX_NAME) {
        memcpy(dst, name ? name : "", n + 1);
        return;
    }
    size_t cut = MAX_NAME - 3;
    while (cut > 0 && ((unsigned char)name[cut] & 0xC0) == 0x80) cut--;
    memcpy(dst, name, cut);
    memcpy(dst + cut, "...", 4);
}

static size_t utf8_chars(const char *s) {
    size_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static void grid_and_tick(rt_svg *s, int vertical, double px, double a0, double a1, int major, const char *label) {
    /* vertical: a line at x = px from y = a0 to a1 (an x tick); else at y = px from x = a0 to a1 */
    const char *col = major ? "#dddddd" : "#efefef";
    if (vertical) {
        rt_svg_printf(s, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"%s\"/>\n", px, a0, px, a1,
                      col);
        if (major)
            rt_svg_printf(s, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#444\"/>\n", px, a1, px,
                          a1 + 5);
        if (label) rt_svg_text(s, px, a1 + 19, "middle", 12, "class=\"tick\"", label);
    } else {
        rt_svg_printf(s, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"%s\"/>\n", a0, px, a1, px,
                      col);
        if (major)
            rt_svg_printf(s, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#444\"/>\n", a0 - 5, px,
                          a0, px);
        if (label) rt_svg_text(s, a0 - 8, px + 4, "end", 12, "class=\"tick\"", label);
    }
}

/* Grid lines, tick marks and labels of one axis. */
static void draw_axis(rt_svg *s, const rt_plot_axis *ax, const mapping *m, int vertical, double a0, double a1) {
    char buf[48];
    if (!ax->log) {
        double k0 = ceil(ax->lo / ax->step - 1e-9), k1 = floor(ax->hi / ax->step + 1e-9);
        for (double k = k0; k <= k1; k++) {
            double v = k * ax->step, px = map_px(m, fmin(fmax(v, ax->lo), ax->hi));
            fmt_linear(buf, sizeof buf, v, ax->step);
            grid_and_tick(s, vertical, px, a0, a1, 1, buf);
        }
        return;
    }
    int e0 = (int)lround(log10(ax->lo)), e1 = (int)lround(log10(ax->hi)), st = (int)ax->step;
    int decades = e1 - e0;
    for (int e = e0; e <= e1; e++) {
        int major = (e - e0) % st == 0;
        if (major) fmt_log(buf, sizeof buf, 1, e);
        grid_and_tick(s, vertical, map_px(m, pow(10, e)), a0, a1, major, major ? buf : NULL);
        if (e == e1 || st > 1 || decades > 6) continue;
        for (int d = 2; d <= 9; d++) { /* minor lines; 2 and 5 labelled when there are few decades */
            int lab = decades <= 2 && (d == 2 || d == 5);
            if (lab) fmt_log(buf, sizeof buf, d, e);
            grid_and_tick(s, vertical, map_px(m, d * pow(10, e)), a0, a1, 0, lab ? buf : NULL);
        }
    }
}

int rt_plot_chart_svg(rt_ctx *ctx, const rt_plot_chart *c, const char *path) {
    if (!c || !path || c->nseries < 0 || (c->nseries && !c->series))
        return rt_fail(ctx, RT_EINVAL, "plot: bad chart for %s", path ? path : "(null)");
    double W = c->width > 0 ? c->width : DEFAULT_W, H = c->height > 0 ? c->height : DEFAULT_H;

    /* y scale: automatic = log when every value is positive and they span more than 2 decades */
    double ymin = INFINITY, ymax = -INFINITY, xmin = INFINITY, xmax = -INFINITY;
    int ylog = c->yscale == RT_PLOT_LOG, allpos = 1, any = 0;
    for (int i = 0; i < c->nseries; i++)
        for (int64_t j = 0; j < c->series[i].n; j++) {
            double x = c->series[i].x[j], y = c->series[i].y[j];
            if (!plottable(x, y, 0)) continue;
            any = 1;
            if (y <= 0) allpos = 0;
            ymin = fmin(ymin, y), ymax = fmax(ymax, y);
        }
    if (c->yscale == RT_PLOT_AUTO) ylog = any && allpos && ymax > 100 * ymin;
    ymin = INFINITY, ymax = -INFINITY;
    for (int i = 0; i < c->nseries; i++)
        for (int64_t j = 0; j < c->series[i].n; j++) {
            double x = c->series[i].x[j], y = c->series[i].y[j];
            if (!plottable(x, y, ylog)) continue;
            ymin = fmin(ymin, y), ymax = fmax(ymax, y);
            xmin = fmin(xmin, x), xmax = fmax(xmax, x);
        }
    int plotted = xmin <= xmax;
    if (!plotted) xmin = 0, xmax = 1; /* no point at all: an empty frame */
    if (!(ymin <= ymax)) ymin = ylog ? 1 : 0, ymax = ylog ? 10 : 1;

    /* layout: the legend sits right of the plot area, its width from the longest name */
    char name[MAX_NAME + 4];
    size_t maxchars = 4;
    for (int i = 0; i < c->nseries; i++) {
        display_name(name, c->series[i].name);
        size_t k = utf8_chars(name);
        if (k > maxchars) maxchars = k;
    }
    double legend_w = c->nseries ? 44 + 7.0 * (double)maxchars : 0;
    double left = 78, right = W - 20 - legend_w - (c->nseries ? 12 : 0), top = 46, row = 20;
    if (right - left < 0.65 * W) right = left + 0.65 * W, W = right + 32 + legend_w; /* wide legend: wider chart */
    if (H < top + 64 + 16 + row * c->nseries) H = top + 64 + 16 + row * c->nseries;
    double bottom = H - 58;

    rt_plot_axis xa, ya;
    rt_plot_nice_axis(xmin, xmax, (int)fmax(2, (right - left) / 75), c->xinteger ? 1 : 0, 0, &xa);
    rt_plot_nice_axis(ymin, ymax, (int)fmax(2, (bottom - top) / 45), 0, ylog, &ya);
    /* a 2% margin inside the frame keeps lines off its edges; ticks stay on the nice values */
    double fy = ylog ? pow(ya.hi / ya.lo, 0.02) : 1, px = (xa.hi - xa.lo) * 0.02, py = (ya.hi - ya.lo) * 0.02;
    mapping mx = {xa.lo - px, xa.hi + px, left, right, 0};
    mapping my = {ylog ? ya.lo / fy : ya.lo - py, ylog ? ya.hi * fy : ya.hi + py, bottom, top, ylog};

    rt_svg s = {0};
    rt_svg_printf(&s,
                  "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
                  "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n<title>",
                  W, H, W, H);
    rt_svg_escape(&s, c->title ? c->title : "");
    rt_svg_printf(&s, "</title>\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    if (c->title)
        rt_svg_text(&s, (left + right) / 2, 28, "middle", 16, "font-weight=\"bold\" class=\"title\"", c->title);

    rt_svg_printf(&s,
                  "<g class=\"axes\" data-x0=\"%.17g\" data-x1=\"%.17g\" data-y0=\"%.17g\" data-y1=\"%.17g\" "
                  "data-ylog=\"%d\">\n",
                  xa.lo, xa.hi, ya.lo, ya.hi, ylog);
    draw_axis(&s, &xa, &mx, 1, top, bottom);
    draw_axis(&s, &ya, &my, 0, left, right);
    rt_svg_printf(&s,
                  "<rect class=\"plot-area\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"none\" "
                  "stroke=\"#444\"/>\n",
                  left, top, right - left, bottom - top);
    if (c->xlabel) rt_svg_text(&s, (left + right) / 2, H - 14, "middle", 13, "class=\"xlabel\"", c->xlabel);
    if (c->ylabel) {
        char attrs[96];
        double yx = 20, yy = (top + bottom) / 2;
        snprintf(attrs, sizeof attrs, "class=\"ylabel\" transform=\"rotate(-90 %.1f %.1f)\"", yx, yy);
        rt_svg_text(&s, yx, yy, "middle", 13, attrs, c->ylabel);
    }
    rt_svg_printf(&s, "</g>\n");

    /* series: each one polyline (possibly empty), dots when there are few points */
    for (int i = 0; i < c->nseries; i++) {
        const rt_plot_series *se = &c->series[i];
        const char *col = palette[i % 8], *dash = dashes[(i / 8) % 4];
        rt_svg_printf(&s, "<g class=\"series\">\n<polyline class=\"series\" data-name=\"");
        rt_svg_escape(&s, se->name ? se->name : "");
        rt_svg_printf(&s, "\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\" stroke-linejoin=\"round\"", col);
        if (dash) rt_svg_printf(&s, " stroke-dasharray=\"%s\"", dash);
        rt_svg_printf(&s, " points=\"");
        int64_t k = 0;
        for (int64_t j = 0; j < se->n; j++) {
            if (!plottable(se->x[j], se->y[j], ylog)) continue;
            double px = map_px(&mx, se->x[j]), py = map_px(&my, se->y[j]);
            rt_svg_printf(&s, "%s%.2f,%.2f", k++ ? " " : "", px, py);
        }
        rt_svg_printf(&s, "\"/>\n");
        if (count_plottable(se, ylog) <= MARKERS_UPTO)
            for (int64_t j = 0; j < se->n; j++) {
                if (!plottable(se->x[j], se->y[j], ylog)) continue;
                rt_svg_printf(&s, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"3\" fill=\"%s\"/>\n", map_px(&mx, se->x[j]),
                              map_px(&my, se->y[j]), col);
            }
        rt_svg_printf(&s, "</g>\n");
    }

    /* legend */
    if (c->nseries) {
        double lx = right + 12, ly = top;
        rt_svg_printf(&s,
                      "<g class=\"legend\">\n<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                      "fill=\"white\" stroke=\"#bbbbbb\"/>\n",
                      lx, ly, legend_w, 10 + row * c->nseries);
        for (int i = 0; i < c->nseries; i++) {
            const char *col = palette[i % 8], *dash = dashes[(i / 8) % 4];
            double y = ly + 5 + row * i + row / 2;
            rt_svg_printf(
                &s, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"%s%s%s/>\n",
                lx + 8, y, lx + 34, y, col, dash ? " stroke-dasharray=\"" : "", dash ? dash : "", dash ? "\"" : "");
            if (count_plottable(&c->series[i], ylog) <= MARKERS_UPTO)
                rt_svg_printf(&s, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", lx + 21, y, col);
            display_name(name, c->series[i].name);
            rt_svg_text(&s, lx + 40, y + 4, "start", 12, "class=\"legend-name\"", name);
        }
        rt_svg_printf(&s, "</g>\n");
    }
    if (!plotted) rt_svg_text(&s, (left + right) / 2, (top + bottom) / 2, "middle", 14, "fill=\"#888\"", "no data");
    rt_svg_printf(&s, "</svg>\n");
    int rc = rt_svg_save(ctx, &s, path);
    rt_svg_free(&s);
    return rc;
}

/* ---- JSON lines ---- */

static void warnf(const rt_plot_opts *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warnf(const rt_plot_opts *o, const char *fmt, ...) {
    if (o->quiet) return;
    FILE *f = o->warn ? o->warn : stderr;
    va_list ap;
    va_start(ap, fmt);
    fprintf(f, "retort plot: warning: ");
    vfprintf(f, fmt, ap);
    fprintf(f, "\n");
    va_end(ap);
}

/* A record handler: 0 = used, 1 = skipped (*why says why), < 0 = error (set in ctx). */
typedef int (*record_fn)(rt_ctx *ctx, void *user, const cJSON *obj, const char **why);

/* Reads path line by line; each line must be one JSON object. Lines that are not are skipped with a
 * warning naming file and line. *nrec = records used, or -1 when optional and the file is absent.
 * A file with lines but no usable record is RT_EFORMAT. */
static int read_jsonl(rt_ctx *ctx, const char *path, const rt_plot_opts *o, int optional, record_fn fn, void *user,
                      int64_t *nrec) {
    *nrec = 0;
    FILE *f = fopen(path, "r");
    if (!f) {
        if (optional && errno == ENOENT) {
            *nrec = -1;
            return 0;
        }
        return rt_fail(ctx, RT_EIO, "plot: cannot open %s: %s", path, strerror(errno));
    }
    char *line = NULL, first_why[160] = "";
    size_t cap = 0;
    ssize_t len;
    int64_t lineno = 0, nlines = 0, nbad = 0, first_bad = 0;
    int rc = 0;
    while (!rc && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        const char *p = line;
        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') p++;
        if (!*p) continue;
        nlines++;
        const char *end = NULL, *why = NULL;
        cJSON *j = memchr(line, 0, (size_t)len) ? NULL : cJSON_ParseWithOpts(line, &end, 0);
        if (j) {
            while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n') end++;
            if (*end)
                why = "text after the JSON value";
            else if (!cJSON_IsObject(j))
                why = "not a JSON object";
            else {
                int r = fn(ctx, user, j, &why);
                if (r < 0)
                    rc = r;
                else if (r == 0)
                    ++*nrec;
            }
        } else {
            why = "not valid JSON";
        }
        cJSON_Delete(j);
        if (rc || !why) continue;
        if (!nbad++) {
            first_bad = lineno;
            snprintf(first_why, sizeof first_why, "%s", why);
        }
        if (nbad <= MAX_WARN) warnf(o, "%s:%lld: skipped: %s", path, (long long)lineno, why);
    }
    if (!rc && ferror(f)) rc = rt_fail(ctx, RT_EIO, "plot: error reading %s: %s", path, strerror(errno));
    free(line);
    fclose(f);
    if (rc) return rc;
    if (nbad > MAX_WARN) warnf(o, "%s: %lld more lines skipped", path, (long long)(nbad - MAX_WARN));
    if (nlines > 0 && *nrec == 0)
        return rt_fail(ctx, RT_EFORMAT, "plot: %s: none of its %lld lines is readable (line %lld: %s)", path,
                       (long long)nlines, (long long)first_bad, first_why);
    return 0;
}

/* A number, or NaN when absent: missing, null, not a number, non-finite, or (sentinel) -1. */
static double num(const cJSON *obj, const char *key, int minus_one_absent) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) return NAN;
    if (minus_one_absent && v->valuedouble == -1) return NAN;
    return v->valuedouble;
}

/* ---- metrics.jsonl: a table of per-epoch fields ---- */

enum { F_TRAIN_LOSS, F_VAL_LOSS, F_TEST_LOSS, F_TRAIN_ACC, F_VAL_ACC, F_TEST_ACC, F_AGREE_ERR, F_TEST_ERR, NFIELDS };
static const char *const field_key[NFIELDS] = {"train_loss", "val_loss", "test_loss", "train_acc",
                                               "val_acc",    "test_acc", "agree_err", "test_err"};

typedef struct {
    int64_t n, cap;
    double *epoch, *v[NFIELDS]; /* NaN = absent */
} metrics;

static void metrics_free(metrics *m) {
    free(m->epoch);
    for (int f = 0; f < NFIELDS; f++) free(m->v[f]);
    *m = (metrics){0};
}

static int metrics_record(rt_ctx *ctx, void *user, const cJSON *obj, const char **why) {
    metrics *m = user;
    double e = num(obj, "epoch", 1);
    if (isnan(e)) {
        *why = "no \"epoch\" number";
        return 1;
    }
    if (m->n == m->cap) {
        int64_t cap = m->cap ? 2 * m->cap : 64;
        double *p = realloc(m->epoch, (size_t)cap * sizeof *p);
        if (!p) return rt_fail(ctx, RT_ENOMEM, "plot: no memory for metrics");
        m->epoch = p;
        for (int f = 0; f < NFIELDS; f++) {
            p = realloc(m->v[f], (size_t)cap * sizeof *p);
            if (!p) return rt_fail(ctx, RT_ENOMEM, "plot: no memory for metrics");
            m->v[f] = p;
        }
        m->cap = cap;
    }
    m->epoch[m->n] = e;
    for (int f = 0; f < NFIELDS; f++) m->v[f][m->n] = num(obj, field_key[f], 1);
    /* a distillation run may give the test error only */
    if (isnan(m->v[F_TEST_ACC][m->n]) && !isnan(m->v[F_TEST_ERR][m->n]))
        m->v[F_TEST_ACC][m->n] = 1 - m->v[F_TEST_ERR][m->n];
    for (int f = F_TRAIN_ACC; f < NFIELDS; f++) m->v[f][m->n] *= 100; /* fractions, shown in percent */
    m->n++;
    return 0;
}

static int metrics_has(const metrics *m, int f) {
    for (int64_t i = 0; i < m->n; i++)
        if (!isnan(m->v[f][i])) return 1;
    return 0;
}

/* ---- paths.jsonl: named series against the step ---- */

typedef struct {
    char name[96];
    int64_t n, cap;
    double *x, *y;
} column;

typedef struct {
    int n, cap;
    column *c;
} columns;

typedef struct {
    columns loss, weight, cos;
} pathlog;

static void columns_free(columns *cs) {
    for (int i = 0; i < cs->n; i++) free(cs->c[i].x), free(cs->c[i].y);
    free(cs->c);
    *cs = (columns){0};
}

static int columns_push(rt_ctx *ctx, columns *cs, const char *name, double x, double y) {
    column *c = NULL;
    for (int i = 0; i < cs->n && !c; i++)
        if (!strcmp(cs->c[i].name, name)) c = &cs->c[i];
    if (!c) {
        if (cs->n == cs->cap) {
            int cap = cs->cap ? 2 * cs->cap : 8;
            column *p = realloc(cs->c, (size_t)cap * sizeof *p);
            if (!p) return rt_fail(ctx, RT_ENOMEM, "plot: no memory for series");
            cs->c = p, cs->cap = cap;
        }
        c = &cs->c[cs->n++];
        *c = (column){0};
        snprintf(c->name, sizeof c->name, "%s", name);
    }
    if (c->n == c->cap) {
        int64_t cap = c->cap ? 2 * c->cap : 256;
        double *px = realloc(c->x, (size_t)cap * sizeof *px);
        if (px) c->x = px;
        double *py = px ? realloc(c->y, (size_t)cap * sizeof *py) : NULL;
        if (!py) return rt_fail(ctx, RT_ENOMEM, "plot: no memory for series '%s'", name);
        c->y = py, c->cap = cap;
    }
    c->x[c->n] = x, c->y[c->n] = y, c->n++;
    return 0;
}

/* The name of path k: names[k] when given, else "path k". */
static void path_name(char *dst, size_t n, const cJSON *names, int k) {
    const cJSON *s = cJSON_GetArrayItem(names, k);
    if (cJSON_IsString(s) && s->valuestring[0])
        snprintf(dst, n, "%s", s->valuestring);
    else
        snprintf(dst, n, "path %d", k);
}

static int paths_record(rt_ctx *ctx, void *user, const cJSON *obj, const char **why) {
    pathlog *pl = user;
    double step = num(obj, "step", 0);
    if (isnan(step)) {
        *why = "no \"step\" number";
        return 1;
    }
    const cJSON *names = cJSON_GetObjectItemCaseSensitive(obj, "names"), *it;
    if (!cJSON_IsArray(names)) names = NULL;
    int used = 0, rc;
    const char *obj_key[2] = {"loss", "weight"};
    columns *dst[2] = {&pl->loss, &pl->weight};
    for (int t = 0; t < 2; t++) {
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(obj, obj_key[t]);
        if (!cJSON_IsObject(o)) continue;
        cJSON_ArrayForEach(it, o) {
            if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble) || !it->string) continue;
            if ((rc = columns_push(ctx, dst[t], it->string, step, it->valuedouble))) return rc;
            used = 1;
        }
    }
    const cJSON *cos = cJSON_GetObjectItemCaseSensitive(obj, "cos");
    if (cJSON_IsArray(cos)) {
        int K = cJSON_GetArraySize(cos);
        for (int a = 0; a < K; a++) {
            const cJSON *row = cJSON_GetArrayItem(cos, a);
            if (!cJSON_IsArray(row)) continue;
            for (int b = a + 1; b < cJSON_GetArraySize(row); b++) {
                const cJSON *v = cJSON_GetArrayItem(row, b);
                if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) continue;
                char na[40], nb[40], pair[96];
                path_name(na, sizeof na, names, a);
                path_name(nb, sizeof nb, names, b);
                snprintf(pair, sizeof pair, "%s / %s", na, nb);
                if ((rc = columns_push(ctx, &pl->cos, pair, step, v->valuedouble))) return rc;
                used = 1;
            }
        }
    }
    if (!used) {
        *why = "no loss, weight or cos values";
        return 1;
    }
    return 0;
}

/* ---- files and names ---- */

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* mkdir -p */
static int make_dirs(rt_ctx *ctx, const char *dir) {
    size_t n = strlen(dir);
    char *p = malloc(n + 1);
    if (!p) return rt_fail(ctx, RT_ENOMEM, "plot: no memory");
    memcpy(p, dir, n + 1);
    int rc = 0;
    for (size_t i = 1; i <= n && !rc; i++) {
        if (p[i] != '/' && p[i] != 0) continue;
        char keep = p[i];
        p[i] = 0;
        struct stat st;
        if (mkdir(p, 0777) && errno != EEXIST)
            rc = rt_fail(ctx, RT_EIO, "plot: cannot create %s: %s", p, strerror(errno));
        else if (stat(p, &st) || !S_ISDIR(st.st_mode))
            rc = rt_fail(ctx, RT_EIO, "plot: %s is not a directory", p);
        p[i] = keep;
    }
    free(p);
    return rc;
}

/* The run's short name: the last path component ("runs/kd/" -> "kd"). */
static void run_label(char *dst, size_t n, const char *dir) {
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/') len--;
    size_t b = len;
    while (b > 0 && dir[b - 1] != '/') b--;
    if (len - b == 0 || (len - b == 1 && dir[b] == '.') || (len - b == 2 && !strncmp(dir + b, "..", 2))) {
        char *real = realpath(dir, NULL);
        if (real && strcmp(real, "/")) {
            run_label(dst, n, real);
            free(real);
            return;
        }
        free(real);
        b = 0;
    }
    snprintf(dst, n, "%.*s", (int)(len - b), dir + b);
}

/* The last depth components of dir into dst; 0 when that is no longer than what dst holds. */
static int path_suffix(char *dst, size_t n, const char *dir, int depth) {
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/') len--;
    size_t b = len;
    for (int k = 0; k < depth && b > 0; k++) {
        if (k) b--; /* step over the '/' */
        while (b > 0 && dir[b - 1] != '/') b--;
    }
    if (strlen(dst) == len - b && !strncmp(dst, dir + b, len - b)) return 0;
    snprintf(dst, n, "%.*s", (int)(len - b), dir + b);
    return 1;
}

static int write_chart(rt_ctx *ctx, const rt_plot_opts *o, const char *dir, const char *file, rt_plot_chart *c) {
    char *path = join(dir, file);
    if (!path) return rt_fail(ctx, RT_ENOMEM, "plot: no memory");
    c->width = o->width, c->height = o->height;
    int rc = rt_plot_chart_svg(ctx, c, path);
    free(path);
    return rc;
}

/* ---- one run ---- */

static int metric_chart(rt_ctx *ctx, const rt_plot_opts *o, const metrics *m, const char *src, const char *dir,
                        const char *file, const char *what, const char *title, const char *ylabel, const int *fields,
                        const char *const *labels, int nf) {
    rt_plot_series se[NFIELDS];
    int ns = 0;
    for (int i = 0; i < nf; i++)
        if (metrics_has(m, fields[i])) se[ns++] = (rt_plot_series){labels[i], m->n, m->epoch, m->v[fields[i]]};
    if (!ns) {
        warnf(o, "%s has no %s values; %s not written", src, what, file);
        return 0;
    }
    rt_plot_chart c = {title, "epoch", ylabel, RT_PLOT_LINEAR, 1, ns, se, 0, 0};
    return write_chart(ctx, o, dir, file, &c);
}

static int column_chart(rt_ctx *ctx, const rt_plot_opts *o, const columns *cs, const char *src, const char *dir,
                        const char *file, const char *title, const char *ylabel, int yscale) {
    if (!cs->n) return 0;
    rt_plot_series *se = malloc((size_t)cs->n * sizeof *se);
    if (!se) return rt_fail(ctx, RT_ENOMEM, "plot: no memory");
    int allpos = 1;
    for (int i = 0; i < cs->n; i++) {
        se[i] = (rt_plot_series){cs->c[i].name, cs->c[i].n, cs->c[i].x, cs->c[i].y};
        for (int64_t j = 0; j < cs->c[i].n; j++) allpos &= cs->c[i].y[j] > 0;
    }
    if (yscale == RT_PLOT_LOG && !allpos) {
        warnf(o, "%s: %s has values <= 0; linear y axis", src, file);
        yscale = RT_PLOT_LINEAR;
    }
    rt_plot_chart c = {title, "step", ylabel, yscale, 1, cs->n, se, 0, 0};
    int rc = write_chart(ctx, o, dir, file, &c);
    free(se);
    return rc;
}

int rt_plot_run_opts(rt_ctx *ctx, const char *run_dir, const rt_plot_opts *opts) {
    rt_plot_opts o = opts ? *opts : (rt_plot_opts){0};
    if (!run_dir || !*run_dir) return rt_fail(ctx, RT_EINVAL, "plot: no run directory given");
    struct stat st;
    if (stat(run_dir, &st))
        return rt_fail(ctx, RT_EIO, "plot: cannot open run directory %s: %s", run_dir, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return rt_fail(ctx, RT_EIO, "plot: %s is not a run directory", run_dir);
    metrics m = {0};
    pathlog pl = {0};
    int64_t nm = 0, np = 0;
    char *mpath = join(run_dir, "metrics.jsonl"), *ppath = join(run_dir, "paths.jsonl"), *out = join(run_dir, "plots");
    char label[256], title[320];
    run_label(label, sizeof label, run_dir);
    int rc = mpath && ppath && out ? 0 : rt_fail(ctx, RT_ENOMEM, "plot: no memory");
    if (!rc) rc = read_jsonl(ctx, mpath, &o, 0, metrics_record, &m, &nm);
    if (!rc && nm == 0) rc = rt_fail(ctx, RT_EFORMAT, "plot: %s has no records yet", mpath);
    if (!rc) rc = read_jsonl(ctx, ppath, &o, 1, paths_record, &pl, &np);
    if (!rc) rc = make_dirs(ctx, out);
    if (!rc) {
        static const int acc[] = {F_TRAIN_ACC, F_VAL_ACC, F_TEST_ACC, F_AGREE_ERR};
        static const char *const acc_l[] = {"train accuracy", "val accuracy", "test accuracy",
                                            "agreement error (vs teacher)"};
        snprintf(title, sizeof title, "%s: accuracy", label);
        rc = metric_chart(ctx, &o, &m, mpath, out, "accuracy.svg", "accuracy", title, "percent", acc, acc_l, 4);
    }
    if (!rc) {
        static const int loss[] = {F_TRAIN_LOSS, F_VAL_LOSS, F_TEST_LOSS};
        static const char *const loss_l[] = {"train loss", "val loss", "test loss"};
        snprintf(title, sizeof title, "%s: loss", label);
        rc = metric_chart(ctx, &o, &m, mpath, out, "loss.svg", "loss", title, "loss", loss, loss_l, 3);
    }
    if (!rc && np > 0) {
        snprintf(title, sizeof title, "%s: path weights", label);
        rc = column_chart(ctx, &o, &pl.weight, ppath, out, "weights.svg", title, "weight v", RT_PLOT_AUTO);
        if (!rc) {
            snprintf(title, sizeof title, "%s: path losses", label);
            rc = column_chart(ctx, &o, &pl.loss, ppath, out, "path_losses.svg", title, "loss", RT_PLOT_LOG);
        }
        if (!rc) {
            snprintf(title, sizeof title, "%s: gradient cosine between paths", label);
            rc = column_chart(ctx, &o, &pl.cos, ppath, out, "cosine.svg", title, "cosine similarity", RT_PLOT_LINEAR);
        }
    }
    metrics_free(&m);
    columns_free(&pl.loss), columns_free(&pl.weight), columns_free(&pl.cos);
    free(mpath), free(ppath), free(out);
    return rc;
}

int rt_plot_run(rt_ctx *ctx, const char *run_dir) { return rt_plot_run_opts(ctx, run_dir, NULL); }

/* ---- several runs ---- */

int rt_plot_compare_opts(rt_ctx *ctx, int n, const char *const *run_dirs, const char *out_dir,
                         const rt_plot_opts *opts) {
    rt_plot_opts o = opts ? *opts : (rt_plot_opts){0};
    if (n < 1 || !run_dirs) return rt_fail(ctx, RT_EINVAL, "plot: no run directories to compare");
    if (!out_dir || !*out_dir) return rt_fail(ctx, RT_EINVAL, "plot: no output directory for the comparison");
    metrics *m = calloc((size_t)n, sizeof *m);
    char(*label)[256] = calloc((size_t)n, sizeof *label);
    rt_plot_series *se = calloc((size_t)n, sizeof *se);
    int rc = m && label && se ? 0 : rt_fail(ctx, RT_ENOMEM, "plot: no memory for %d runs", n);
    for (int i = 0; i < n && !rc; i++) {
        char *path = join(run_dirs[i], "metrics.jsonl");
        int64_t nm = 0;
        rc = path ? read_jsonl(ctx, path, &o, 0, metrics_record, &m[i], &nm)
                  : rt_fail(ctx, RT_ENOMEM, "plot: no memory");
        if (!rc && nm == 0) rc = rt_fail(ctx, RT_EFORMAT, "plot: %s has no records yet", path);
        free(path);
        run_label(label[i], sizeof label[i], run_dirs[i]);
    }
    /* runs whose short names coincide get more of their paths, until they differ ("a/seed1", "b/seed1") */
    for (int depth = 2, changed = 1; changed && !rc; depth++) {
        changed = 0;
        int *dup = calloc((size_t)n, sizeof *dup);
        if (!dup) {
            rc = rt_fail(ctx, RT_ENOMEM, "plot: no memory");
            break;
        }
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n && !dup[i]; j++) dup[i] = i != j && !strcmp(label[i], label[j]);
        for (int i = 0; i < n; i++)
            if (dup[i] && path_suffix(label[i], sizeof label[i], run_dirs[i], depth)) changed = 1;
        free(dup);
    }
    if (!rc) rc = make_dirs(ctx, out_dir);
    static const struct {
        int field;
        const char *file, *title, *ylabel;
        int always;
    } charts[] = {{F_TEST_ACC, "accuracy.svg", "test accuracy", "test accuracy (percent)", 1},
                  {F_TEST_LOSS, "loss.svg", "test loss", "test loss", 0},
                  {F_AGREE_ERR, "agreement.svg", "agreement error with the teacher", "agreement error (percent)", 0}};
    for (size_t k = 0; k < sizeof charts / sizeof charts[0] && !rc; k++) {
        int any = 0;
        for (int i = 0; i < n; i++) {
            se[i] = (rt_plot_series){label[i], m[i].n, m[i].epoch, m[i].v[charts[k].field]};
            if (metrics_has(&m[i], charts[k].field))
                any = 1;
            else if (charts[k].always)
                warnf(&o, "%s: no %s values", run_dirs[i], field_key[charts[k].field]);
        }
        if (!any && !charts[k].always) continue;
        rt_plot_chart c = {charts[k].title, "epoch", charts[k].ylabel, RT_PLOT_LINEAR, 1, n, se, 0, 0};
        rc = write_chart(ctx, &o, out_dir, charts[k].file, &c);
    }
    for (int i = 0; m && i < n; i++) metrics_free(&m[i]);
    free(m), free(label), free(se);
    return rc;
}

int rt_plot_compare(rt_ctx *ctx, int n, const char *const *run_dirs, const char *out_dir) {
    return rt_plot_compare_opts(ctx, n, run_dirs, out_dir, NULL);
}
