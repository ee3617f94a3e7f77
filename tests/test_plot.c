/* `retort plot`: nice axes, the SVG of one chart (well-formed, one polyline per series, legend,
 * every point inside the plot area, log axes), run directories (metrics.jsonl, paths.jsonl, bad
 * lines skipped with a warning, missing files as errors) and the comparison of several runs. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include "retort/plot.h"
#include "test.h"

/* ---- helpers ---- */

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(2);
    }
    fputs(text, f);
    fclose(f);
}

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    size_t got = fread(s, 1, (size_t)n, f);
    s[got] = 0;
    fclose(f);
    return s;
}

static int exists(const char *path) {
    struct stat st;
    return !stat(path, &st);
}

/* Temporary directories, removed when the test program ends (kept with RT_PLOT_KEEP=1, to look at). */
static char made[64][32];
static int nmade;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) { return remove(path); }

__attribute__((destructor)) static void remove_tmp_dirs(void) {
    if (getenv("RT_PLOT_KEEP")) return;
    for (int i = 0; i < nmade; i++) nftw(made[i], rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh directory under rt_test_tmp(); sub (may be NULL) is created inside it and returned instead. */
static char *tmp_dir(const char *sub) {
    char *d = malloc(512);
    snprintf(d, 512, "%s/rt_plot_XXXXXX", rt_test_tmp());
    if (!mkdtemp(d)) {
        perror("mkdtemp");
        exit(2);
    }
    if (nmade < 64) snprintf(made[nmade++], sizeof made[0], "%s", d);
    if (sub) {
        size_t base = strlen(d) + 1;
        strcat(d, "/");
        strcat(d, sub);
        char *p = d + base;
        for (; *p; p++)
            if (*p == '/') *p = 0, mkdir(d, 0777), *p = '/';
        mkdir(d, 0777);
    }
    return d;
}

static char *path_in(const char *dir, const char *name) {
    char *p = malloc(strlen(dir) + strlen(name) + 2);
    sprintf(p, "%s/%s", dir, name);
    return p;
}

static int count(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

static double attr(const char *s, const char *name) {
    char key[64];
    snprintf(key, sizeof key, " %s=\"", name);
    const char *p = strstr(s, key);
    return p ? strtod(p + strlen(key), NULL) : NAN;
}

typedef struct {
    double x0, y0, x1, y1;     /* plot area in pixels */
    double dx0, dx1, dy0, dy1; /* axis ranges in data units */
    int ylog;
} frame;

/* Checks the structure every chart must have; fills the frame from <rect class="plot-area"> and
 * <g class="axes" data-...>. Returns an error text or NULL. */
static const char *svg_check(const char *s, int nseries, frame *fr) {
    static char why[256];
    if (!s) return "file missing";
    if (strncmp(s, "<svg", 4)) return "does not start with <svg";
    if (count(s, "<svg") != 1 || count(s, "</svg>") != 1) return "unbalanced <svg>";
    int np = count(s, "<polyline");
    if (np != nseries) {
        snprintf(why, sizeof why, "%d polylines, expected %d", np, nseries);
        return why;
    }
    /* no nan or inf in any attribute but the series names, nor in a tick label */
    for (const char *p = s; (p = strstr(p, "=\"")); p++) {
        const char *name = p;
        while (name > s && name[-1] != ' ') name--;
        const char *end = strchr(p + 2, '"');
        if (!end) return "unterminated attribute";
        if (!strncmp(name, "data-name=", 10)) continue;
        for (const char *q = p + 2; q + 3 <= end; q++)
            if (!strncasecmp(q, "nan", 3) || !strncasecmp(q, "inf", 3)) return "nan or inf in an attribute";
    }
    for (const char *p = s; (p = strstr(p, "class=\"tick\">")); p++) {
        const char *q = p + 13, *end = strchr(q, '<');
        for (; end && q + 3 <= end; q++)
            if (!strncasecmp(q, "nan", 3) || !strncasecmp(q, "inf", 3)) return "nan or inf in a tick label";
    }
    const char *r = strstr(s, "class=\"plot-area\"");
    const char *g = strstr(s, "class=\"axes\"");
    if (!r || !g) return "no plot area or axes element";
    fr->x0 = attr(r, "x"), fr->y0 = attr(r, "y");
    fr->x1 = fr->x0 + attr(r, "width"), fr->y1 = fr->y0 + attr(r, "height");
    fr->dx0 = attr(g, "data-x0"), fr->dx1 = attr(g, "data-x1");
    fr->dy0 = attr(g, "data-y0"), fr->dy1 = attr(g, "data-y1");
    fr->ylog = (int)attr(g, "data-ylog");
    /* every point of every polyline inside the plot area */
    for (const char *p = s; (p = strstr(p, "<polyline")); p++) {
        const char *q = strstr(p, "points=\"");
        if (!q) return "polyline without points";
        q += 8;
        while (*q != '"') {
            char *e;
            double x = strtod(q, &e);
            if (*e != ',') return "bad points syntax";
            double y = strtod(e + 1, &e);
            if (x < fr->x0 - 0.01 || x > fr->x1 + 0.01 || y < fr->y0 - 0.01 || y > fr->y1 + 0.01) {
                snprintf(why, sizeof why, "point %g,%g outside the plot area [%g,%g]x[%g,%g]", x, y, fr->x0, fr->x1,
                         fr->y0, fr->y1);
                return why;
            }
            q = e;
            while (*q == ' ') q++;
        }
    }
    return NULL;
}

/* The legend lists name (escaped as given) and a polyline carries it. */
static int has_series(const char *s, const char *name) {
    char a[256], b[256];
    snprintf(a, sizeof a, "data-name=\"%s\"", name);
    snprintf(b, sizeof b, "class=\"legend-name\">%s</text>", name);
    return strstr(s, a) && strstr(s, b);
}

/* The points of the polyline named name, in pixels; returns the count. */
static int series_points(const char *s, const char *name, double *px, double *py, int max) {
    char a[256];
    snprintf(a, sizeof a, "data-name=\"%s\"", name);
    const char *p = strstr(s, a);
    if (!p) return -1;
    p = strstr(p, "points=\"") + 8;
    int n = 0;
    while (*p != '"' && n < max) {
        char *e;
        px[n] = strtod(p, &e);
        py[n] = strtod(e + 1, &e);
        n++;
        p = e;
        while (*p == ' ') p++;
    }
    return n;
}

static FILE *warn_file(void) { return tmpfile(); }
static char *warn_text(FILE *f) {
    fflush(f);
    long n = ftell(f);
    char *s = calloc((size_t)n + 1, 1);
    rewind(f);
    size_t got = fread(s, 1, (size_t)n, f);
    s[got] = 0;
    return s;
}

/* ---- nice axes ---- */

static int mantissa_ok(double step) {
    double m = step / pow(10, floor(log10(step) + 1e-9));
    return fabs(m - 1) < 1e-9 || fabs(m - 2) < 1e-9 || fabs(m - 5) < 1e-9;
}

TEST(nice_axis_cases) {
    rt_plot_axis a;
    rt_plot_nice_axis(0, 1, 6, 0, 0, &a);
    CHECK_CLOSE(a.lo, 0, 1e-12);
    CHECK_CLOSE(a.hi, 1, 1e-12);
    CHECK_CLOSE(a.step, 0.2, 1e-12);
    rt_plot_nice_axis(0.3, 0.87, 8, 0, 0, &a);
    CHECK_CLOSE(a.step, 0.1, 1e-12);
    CHECK_CLOSE(a.lo, 0.3, 1e-12);
    CHECK_CLOSE(a.hi, 0.9, 1e-12);
    CHECK(a.lo <= 0.3 && a.hi >= 0.87);
    rt_plot_nice_axis(1, 10, 10, 1, 0, &a); /* epochs 1..10 */
    CHECK_CLOSE(a.step, 1, 1e-12);
    CHECK(a.lo == 1 && a.hi == 10);
    rt_plot_nice_axis(1, 1, 8, 1, 0, &a); /* one epoch: a whole step either side */
    CHECK(a.lo == 0 && a.hi == 2 && a.step == 1);
    rt_plot_nice_axis(5, 5, 8, 0, 0, &a);
    CHECK(a.lo < 5 && a.hi > 5 && mantissa_ok(a.step));
    rt_plot_nice_axis(0, 0, 8, 0, 0, &a);
    CHECK(a.lo < 0 && a.hi > 0);
    rt_plot_nice_axis(-0.37, -0.02, 8, 0, 0, &a);
    CHECK(a.lo <= -0.37 && a.hi >= -0.02 && a.hi <= 0 && mantissa_ok(a.step));
    rt_plot_nice_axis(NAN, 3, 8, 0, 0, &a);
    CHECK(a.lo == 0 && a.hi == 1);
    rt_plot_nice_axis(0.002, 480, 8, 0, 1, &a);
    CHECK(a.log && a.lo == 0.001 && a.hi == 1000 && a.step == 1);
    rt_plot_nice_axis(1, 1, 8, 0, 1, &a);
    CHECK(a.lo == 0.1 && a.hi == 10);
    rt_plot_nice_axis(1e-12, 1e6, 6, 0, 1, &a); /* 18 decades in at most 6 ticks: every 5 decades */
    CHECK(a.lo <= 1e-12 && a.hi >= 1e6 && a.step == 5);
    rt_plot_nice_axis(0, 5, 8, 0, 1, &a); /* log of a non-positive range */
    CHECK(a.lo == 1 && a.hi == 10);
}

/* For many ranges: contains the data, at most max_ticks ticks at a 1-2-5 step, and the next smaller
 * 1-2-5 step would have needed more ticks (the step is the tightest allowed). */
TEST(nice_axis_properties) {
    uint64_t r = 12345;
    for (int it = 0; it < 5000; it++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        double u1 = (double)(r >> 11) / 9007199254740992.0;
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        double u2 = (double)(r >> 11) / 9007199254740992.0;
        double scale = pow(10, (int)(u1 * 12) - 6), lo = (u1 - 0.5) * scale * 10, hi = lo + u2 * scale;
        int mt = 3 + it % 8;
        rt_plot_axis a;
        rt_plot_nice_axis(lo, hi, mt, 0, 0, &a);
        CHECKF(a.lo <= lo && a.hi >= hi, "[%g, %g] -> [%g, %g]", lo, hi, a.lo, a.hi);
        CHECKF(mantissa_ok(a.step), "step %g", a.step);
        double ticks = floor(a.hi / a.step + 1e-9) - ceil(a.lo / a.step - 1e-9) + 1;
        CHECKF(ticks <= mt && ticks >= 2, "[%g, %g] max %d: %g ticks of %g", lo, hi, mt, ticks, a.step);
        if (hi > lo) {
            double m = a.step / pow(10, floor(log10(a.step) + 1e-9));
            double smaller = a.step * (fabs(m - 1) < 1e-9 ? 0.5 : fabs(m - 2) < 1e-9 ? 0.5 : 0.4);
            double t2 = ceil(hi / smaller - 1e-9) - floor(lo / smaller + 1e-9) + 1;
            CHECKF(t2 > mt, "[%g, %g] max %d: step %g chosen, %g would fit (%g ticks)", lo, hi, mt, a.step, smaller,
                   t2);
        }
    }
}

/* ---- single charts ---- */

TEST(chart_empty_and_single_point_series) {
    rt_ctx *ctx = rt_ctx_new();
    char *dir = tmp_dir(NULL), *path = path_in(dir, "c.svg");
    double x1[] = {3}, y1[] = {0.5}, xn[] = {1, 2}, yn[] = {NAN, INFINITY};
    rt_plot_series se[] = {{"empty", 0, NULL, NULL}, {"one", 1, x1, y1}, {"absent", 2, xn, yn}};
    rt_plot_chart c = {"edge cases", "x", "y", RT_PLOT_AUTO, 0, 3, se, 0, 0};
    CHECKF(rt_plot_chart_svg(ctx, &c, path) == 0, "%s", rt_errmsg(ctx));
    char *s = read_text(path);
    frame fr;
    const char *why = svg_check(s, 3, &fr);
    CHECKF(!why, "%s", why);
    CHECK(has_series(s, "empty") && has_series(s, "one") && has_series(s, "absent"));
    CHECK(fr.dy0 < 0.5 && fr.dy1 > 0.5 && fr.dx0 < 3 && fr.dx1 > 3);
    double px[4], py[4];
    CHECK(series_points(s, "one", px, py, 4) == 1);
    CHECK(series_points(s, "empty", px, py, 4) == 0);
    CHECK(count(s, "<circle") >= 1); /* a lone point is drawn as a dot */
    free(s);
    /* no series at all, and no points at all */
    c.nseries = 0;
    CHECKF(rt_plot_chart_svg(ctx, &c, path) == 0, "%s", rt_errmsg(ctx));
    s = read_text(path);
    why = svg_check(s, 0, &fr);
    CHECKF(!why, "%s", why);
    CHECK(strstr(s, "no data"));
    free(s);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(!exists(tmp));
    free(path), free(dir);
    rt_ctx_free(ctx);
}

TEST(chart_log_axis_and_nonpositive_values) {
    rt_ctx *ctx = rt_ctx_new();
    char *dir = tmp_dir(NULL), *path = path_in(dir, "c.svg");
    double x[] = {0, 1, 2, 3}, a[] = {1, 1, 1, 1}, b[] = {10, 10, 10, 10}, cc[] = {1000, 1000, 0, -5};
    rt_plot_series se[] = {{"a", 4, x, a}, {"b", 4, x, b}, {"c", 4, x, cc}};
    rt_plot_chart c = {"log", "step", "v", RT_PLOT_LOG, 1, 3, se, 0, 0};
    CHECKF(rt_plot_chart_svg(ctx, &c, path) == 0, "%s", rt_errmsg(ctx));
    char *s = read_text(path);
    frame fr;
    const char *why = svg_check(s, 3, &fr);
    CHECKF(!why, "%s", why);
    CHECK(fr.ylog == 1 && fr.dy0 <= 1 && fr.dy1 >= 1000);
    double ax[4], ay[4], bx[4], by[4], cx[4], cy[4];
    CHECK(series_points(s, "a", ax, ay, 4) == 4 && series_points(s, "b", bx, by, 4) == 4);
    CHECK(series_points(s, "c", cx, cy, 4) == 2); /* 0 and -5 cannot sit on a log axis */
    /* equal ratios, equal distances: 1 -> 10 is a third of 1 -> 1000 */
    CHECK_CLOSE((ay[0] - by[0]) * 3, ay[0] - cy[0], 1e-3);
    CHECK(strstr(s, ">1000</text>") && strstr(s, ">1</text>"));
    free(s);
    /* automatic: 2 decades or less stays linear, more goes log, a value <= 0 forces linear */
    double d2[] = {1, 50, 100, 2};
    rt_plot_series s2[] = {{"a", 4, x, d2}};
    rt_plot_chart c2 = {"auto", "step", "v", RT_PLOT_AUTO, 1, 1, s2, 0, 0};
    CHECK(rt_plot_chart_svg(ctx, &c2, path) == 0);
    s = read_text(path);
    CHECK(!svg_check(s, 1, &fr) && fr.ylog == 0 && fr.dy0 <= 1 && fr.dy1 >= 100);
    free(s);
    d2[2] = 101;
    CHECK(rt_plot_chart_svg(ctx, &c2, path) == 0);
    s = read_text(path);
    CHECK(!svg_check(s, 1, &fr) && fr.ylog == 1 && fr.dy0 <= 1 && fr.dy1 >= 101);
    free(s);
    d2[3] = 0;
    CHECK(rt_plot_chart_svg(ctx, &c2, path) == 0);
    s = read_text(path);
    CHECK(!svg_check(s, 1, &fr) && fr.ylog == 0 && fr.dy0 <= 0);
    free(s);
    free(path), free(dir);
    rt_ctx_free(ctx);
}

TEST(chart_escaping_many_series_and_huge_values) {
    rt_ctx *ctx = rt_ctx_new();
    char *dir = tmp_dir(NULL), *path = path_in(dir, "c.svg");
    double x[] = {0, 1}, y[12][2];
    char names[12][32];
    rt_plot_series se[12];
    for (int i = 0; i < 12; i++) {
        y[i][0] = i, y[i][1] = i * 1e30; /* wide but finite */
        snprintf(names[i], sizeof names[i], "s%d", i);
        se[i] = (rt_plot_series){names[i], 2, x, y[i]};
    }
    se[0].name = "a<b & \"c\"";
    y[1][1] = 1e300; /* beyond any sane axis: left out */
    rt_plot_chart c = {"t<&>", "x", "y", RT_PLOT_LINEAR, 0, 12, se, 0, 0};
    CHECKF(rt_plot_chart_svg(ctx, &c, path) == 0, "%s", rt_errmsg(ctx));
    char *s = read_text(path);
    frame fr;
    const char *why = svg_check(s, 12, &fr);
    CHECKF(!why, "%s", why);
    CHECK(has_series(s, "a&lt;b &amp; &quot;c&quot;"));
    CHECK(!strstr(s, "a<b") && strstr(s, "t&lt;&amp;&gt;"));
    CHECK(count(s, "stroke-dasharray") >= 4); /* series 9.. repeat the colours with dashes */
    CHECK(fr.dy1 >= 11e30);
    free(s), free(path), free(dir);
    rt_ctx_free(ctx);
}

TEST(chart_write_error_names_the_file) {
    rt_ctx *ctx = rt_ctx_new();
    rt_plot_chart c = {"t", "x", "y", RT_PLOT_LINEAR, 0, 0, NULL, 0, 0};
    CHECK(rt_plot_chart_svg(ctx, &c, "/nonexistent_dir_rt/c.svg") == RT_EIO);
    CHECKF(strstr(rt_errmsg(ctx), "/nonexistent_dir_rt/c.svg"), "%s", rt_errmsg(ctx));
    rt_ctx_free(ctx);
}

/* ---- run directories ---- */

static const char *train_metrics = "{\"epoch\": 1, \"train_loss\": 1.2, \"train_acc\": 0.55, \"val_acc\": -1, "
                                   "\"test_acc\": 0.61, \"test_loss\": 1.01, "
                                   "\"lr\": 0.05, \"seconds\": 12.1}\n"
                                   "{\"epoch\": 2, \"train_loss\": 0.8, \"train_acc\": 0.71, \"val_acc\": null, "
                                   "\"test_acc\": 0.74, \"test_loss\": 0.7}\n"
                                   "\n"
                                   "{\"epoch\": 3, \"train_loss\": 0.41, \"train_acc\": 0.85, \"val_acc\": -1, "
                                   "\"test_acc\": 0.87, \"test_loss\": 0.39, "
                                   "\"new_key\": [1, 2]}\n"
                                   "{\"epoch\": 4, \"train_loss\": 0.05, \"train_acc\": 0.993, \"val_acc\": -1, "
                                   "\"test_acc\": 0.88, \"test_loss\": 0.52}\n";

TEST(run_training_metrics) {
    rt_ctx *ctx = rt_ctx_new();
    char *dir = tmp_dir("runs/teacher"), *m = path_in(dir, "metrics.jsonl");
    write_text(m, train_metrics);
    FILE *w = warn_file();
    rt_plot_opts o = {w, 0, 0, 0};
    CHECKF(rt_plot_run_opts(ctx, dir, &o) == 0, "%s", rt_errmsg(ctx));
    char *wt = warn_text(w);
    CHECKF(!*wt, "unexpected warnings: %s", wt); /* blank lines, null and -1 are not problems */
    free(wt);
    fclose(w);
    char *acc = path_in(dir, "plots/accuracy.svg"), *loss = path_in(dir, "plots/loss.svg");
    char *s = read_text(acc);
    frame fr;
    const char *why = svg_check(s, 2, &fr); /* train and test; val is absent throughout */
    CHECKF(!why, "accuracy.svg: %s", why);
    CHECK(has_series(s, "train accuracy") && has_series(s, "test accuracy") && !strstr(s, "val accuracy"));
    CHECK(strstr(s, "teacher: accuracy")); /* the title names the run */
    CHECK(fr.dx0 <= 1 && fr.dx1 >= 4 && fr.dy0 <= 55 && fr.dy1 >= 99.3 && fr.ylog == 0);
    double px[8], py[8];
    CHECK(series_points(s, "train accuracy", px, py, 8) == 4);
    CHECK(px[0] < px[1] && px[1] < px[2] && py[0] > py[3]); /* epochs left to right, higher accuracy higher up */
    free(s);
    s = read_text(loss);
    why = svg_check(s, 2, &fr);
    CHECKF(!why, "loss.svg: %s", why);
    CHECK(has_series(s, "train loss") && has_series(s, "test loss"));
    CHECK(fr.dy0 <= 0.05 && fr.dy1 >= 1.2);
    free(s);
    char *wp = path_in(dir, "plots/weights.svg");
    CHECK(!exists(wp)); /* no paths.jsonl: no path charts */
    /* plotting again overwrites */
    CHECKF(rt_plot_run(ctx, dir) == 0, "%s", rt_errmsg(ctx));
    free(acc), free(loss), free(wp), free(m), free(dir);
    rt_ctx_free(ctx);
}

static const char *kd_metrics = "{\"epoch\": 1, \"train_loss\": 2.0, \"train_acc\": 0.5, \"test_err\": 0.4, "
                                "\"test_loss\": 1.5, \"agree_err\": 0.3}\n"
                                "{\"epoch\": 2, \"train_loss\": 1.0, \"train_acc\": 0.7, \"test_err\": 0.2, "
                                "\"test_loss\": 0.9, \"agree_err\": 0.12}\n";

static const char *kd_paths =
    "{\"step\": 0, \"epoch\": 0.0, \"names\": [\"st\", \"at\", \"nst\"], \"loss\": {\"ce\": 2.3, \"st\": 0.8, \"at\": "
    "0.002, "
    "\"nst\": 0.5}, \"weight\": {\"st\": 1, \"at\": 10, \"nst\": 1000}, "
    "\"cos\": [[1, 0.2, -0.5], [0.2, 1, 0.1], [-0.5, 0.1, 1]]}\n"
    "{\"step\": 50, \"epoch\": 0.5, \"names\": [\"st\", \"at\", \"nst\"], \"loss\": {\"ce\": 1.9, \"st\": 0.6, \"at\": "
    "0.0015, \"nst\": 0.4}, \"weight\": {\"st\": 1, \"at\": 10, \"nst\": 1000}}\n"
    "{\"step\": 100, \"epoch\": 1.0, \"names\": [\"st\", \"at\", \"nst\"], \"loss\": {\"ce\": 1.5, \"st\": 0.5, "
    "\"at\": "
    "0.001, \"nst\": 0.3}, \"weight\": {\"st\": 1, \"at\": 10, \"nst\": 1000}, "
    "\"cos\": [[1, -1, 0.3], [-1, 1, 0], [0.3, 0, 1]]}\n";

TEST(run_distillation_paths) {
    rt_ctx *ctx = rt_ctx_new();
    char *dir = tmp_dir("kd"), *m = path_in(dir, "metrics.jsonl"), *p = path_in(dir, "paths.jsonl");
    write_text(m, kd_metrics);
    write_text(p, kd_paths);
    rt_plot_opts o = {NULL, 1, 0, 0};
    CHECKF(rt_plot_run_opts(ctx, dir, &o) == 0, "%s", rt_errmsg(ctx));
    frame fr;
    char *f = path_in(dir, "plots/accuracy.svg"), *s = read_text(f);
    const char *why = svg_check(s, 3, &fr); /* train, test (from test_err), agreement error */
    CHECKF(!why, "accuracy.svg: %s", why);
    CHECK(has_series(s, "test accuracy") && has_series(s, "agreement error (vs teacher)"));
    CHECK(fr.dy0 <= 12 && fr.dy1 >= 80); /* percent: agreement 12%, test accuracy 80% */
    free(s), free(f);

    f = path_in(dir, "plots/weights.svg"), s = read_text(f);
    why = svg_check(s, 3, &fr);
    CHECKF(!why, "weights.svg: %s", why);
    CHECK(has_series(s, "st") && has_series(s, "at") && has_series(s, "nst"));
    CHECK(fr.ylog == 1 && fr.dy0 <= 1 && fr.dy1 >= 1000 && fr.dx0 <= 0 && fr.dx1 >= 100);
    double sx[4], sy[4], ax[4], ay[4], nx[4], ny[4];
    CHECK(series_points(s, "st", sx, sy, 4) == 3 && series_points(s, "at", ax, ay, 4) == 3 &&
          series_points(s, "nst", nx, ny, 4) == 3);
    CHECK_CLOSE((sy[0] - ay[0]) * 3, sy[0] - ny[0], 1e-3); /* log10: 1, 2 and 3 decades apart */
    free(s), free(f);

    f = path_in(dir, "plots/path_losses.svg"), s = read_text(f);
    why = svg_check(s, 4, &fr);
    CHECKF(!why, "path_losses.svg: %s", why);
    CHECK(has_series(s, "ce") && has_series(s, "st") && has_series(s, "at") && has_series(s, "nst"));
    CHECK(fr.ylog == 1 && fr.dy0 <= 0.001 && fr.dy1 >= 2.3);
    free(s), free(f);

    f = path_in(dir, "plots/cosine.svg"), s = read_text(f);
    why = svg_check(s, 3, &fr);
    CHECKF(!why, "cosine.svg: %s", why);
    CHECK(has_series(s, "st / at") && has_series(s, "st / nst") && has_series(s, "at / nst"));
    CHECK(fr.ylog == 0 && fr.dy0 <= -1 && fr.dy1 >= 0.3); /* -1 is a cosine here, not "absent" */
    CHECK(series_points(s, "st / at", sx, sy, 4) == 2);   /* only the records with cos */
    free(s), free(f);
    free(m), free(p), free(dir);
    rt_ctx_free(ctx);
}

TEST(run_weights_linear_without_cos) {
    rt_ctx *ctx = rt_ctx_new();
    char *dir = tmp_dir("kd2"), *m = path_in(dir, "metrics.jsonl"), *p = path_in(dir, "paths.jsonl");
    write_text(m, kd_metrics);
    write_text(p, "{\"step\": 0, \"loss\": {\"ce\": 1, \"st\": 0.5}, \"weight\": {\"st\": 1}}\n"
                  "{\"step\": 10, \"loss\": {\"ce\": 0.9, \"st\": -0.1}, \"weight\": {\"st\": 50}}\n");
    FILE *w = warn_file();
    rt_plot_opts o = {w, 0, 0, 0};
    CHECKF(rt_plot_run_opts(ctx, dir, &o) == 0, "%s", rt_errmsg(ctx));
    frame fr;
    char *f = path_in(dir, "plots/weights.svg"), *s = read_text(f);
    CHECK(!svg_check(s, 1, &fr) && fr.ylog == 0 && fr.dy0 <= 1 && fr.dy1 >= 50);
    free(s), free(f);
    f = path_in(dir, "plots/path_losses.svg"), s = read_text(f); /* a negative loss: linear, with a warning */
    CHECK(!svg_check(s, 2, &fr) && fr.ylog == 0 && fr.dy0 <= -0.1);
    free(s), free(f);
    char *wt = warn_text(w);
    CHECKF(strstr(wt, "path_losses.svg") && strstr(wt, "linear"), "%s", wt);
    free(wt);
    fclose(w);
    f = path_in(dir, "plots/cosine.svg");
    CHECK(!exists(f));
    free(f), free(m), free(p), free(dir);
    rt_ctx_free(ctx);
}

TEST(run_malformed_lines_are_skipped_with_warnings) {
    rt_ctx *ctx = rt_ctx_new();
    char *dir = tmp_dir("bad"), *m = path_in(dir, "metrics.jsonl"), *p = path_in(dir, "paths.jsonl");
    write_text(m, "{\"epoch\": 1, \"train_acc\": 0.5, \"test_acc\": 0.6}\n"
                  "{\"epoch\": 2, \"train_acc\": 0.7, \n"               /* 2: cut short */
                  "[1, 2, 3]\n"                                         /* 3: not an object */
                  "{\"epoch\": 3, \"train_acc\": 0.8} {\"epoch\": 4}\n" /* 4: two objects */
                  "{\"train_acc\": 0.9}\n"                              /* 5: no epoch */
                  "{\"epoch\": 5, \"train_acc\": 0.9, \"test_acc\": 0.91}\n"
                  "{\"epoch\": 6, \"train_acc\": 0.95, \"test_acc\": nan}\n"); /* 7: not JSON */
    write_text(p, "garbage\n{\"step\": 5, \"loss\": {\"ce\": 1.0}}\n{\"step\": \"x\"}\n");
    FILE *w = warn_file();
    rt_plot_opts o = {w, 0, 0, 0};
    CHECKF(rt_plot_run_opts(ctx, dir, &o) == 0, "%s", rt_errmsg(ctx));
    char *wt = warn_text(w);
    const char *want[] = {"metrics.jsonl:2: skipped", "metrics.jsonl:3: skipped: not a JSON object",
                          "metrics.jsonl:4: skipped", "metrics.jsonl:5: skipped: no \"epoch\"",
                          "metrics.jsonl:7: skipped", "paths.jsonl:1: skipped",
                          "paths.jsonl:3: skipped",   "has no loss values; loss.svg not written"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CHECKF(strstr(wt, want[i]), "no '%s' in:\n%s", want[i], wt);
    CHECK(!strstr(wt, "metrics.jsonl:1:") && !strstr(wt, "metrics.jsonl:6:") && !strstr(wt, "paths.jsonl:2:"));
    free(wt);
    fclose(w);
    frame fr;
    char *f = path_in(dir, "plots/accuracy.svg"), *s = read_text(f);
    CHECK(!svg_check(s, 2, &fr));
    double px[8], py[8];
    CHECK(series_points(s, "train accuracy", px, py, 8) == 2); /* epochs 1 and 5 */
    free(s), free(f);
    f = path_in(dir, "plots/loss.svg");
    CHECK(!exists(f));
    free(f);
    f = path_in(dir, "plots/path_losses.svg"), s = read_text(f); /* one point, still a chart */
    CHECK(!svg_check(s, 1, &fr));
    free(s), free(f);
    free(m), free(p), free(dir);
    rt_ctx_free(ctx);
}

TEST(run_many_bad_lines_are_counted_not_listed) {
    rt_ctx *ctx = rt_ctx_new();
    char *dir = tmp_dir("many"), *m = path_in(dir, "metrics.jsonl");
    char text[4096] = "{\"epoch\": 1, \"test_acc\": 0.5}\n";
    for (int i = 0; i < 30; i++) strcat(text, "oops\n");
    write_text(m, text);
    FILE *w = warn_file();
    rt_plot_opts o = {w, 0, 0, 0};
    CHECKF(rt_plot_run_opts(ctx, dir, &o) == 0, "%s", rt_errmsg(ctx));
    char *wt = warn_text(w);
    CHECKF(count(wt, ": skipped: not valid JSON") == 10 && strstr(wt, "20 more lines skipped"), "%s", wt);
    free(wt);
    fclose(w);
    free(m), free(dir);
    rt_ctx_free(ctx);
}

TEST(run_missing_and_unreadable_files) {
    rt_ctx *ctx = rt_ctx_new();
    rt_plot_opts quiet = {NULL, 1, 0, 0};
    CHECK(rt_plot_run_opts(ctx, "/tmp/rt_plot_no_such_run", &quiet) == RT_EIO);
    CHECKF(strstr(rt_errmsg(ctx), "/tmp/rt_plot_no_such_run"), "%s", rt_errmsg(ctx));
    rt_clear_error(ctx);
    char *dir = tmp_dir("empty"), *m = path_in(dir, "metrics.jsonl");
    CHECK(rt_plot_run_opts(ctx, dir, &quiet) == RT_EIO); /* no metrics.jsonl */
    CHECKF(strstr(rt_errmsg(ctx), m), "%s", rt_errmsg(ctx));
    rt_clear_error(ctx);
    write_text(m, "");
    CHECK(rt_plot_run_opts(ctx, dir, &quiet) == RT_EFORMAT); /* no record yet */
    CHECKF(strstr(rt_errmsg(ctx), m) && strstr(rt_errmsg(ctx), "no records"), "%s", rt_errmsg(ctx));
    rt_clear_error(ctx);
    write_text(m, "not json\n{\"no_epoch\": 1}\n");
    CHECK(rt_plot_run_opts(ctx, dir, &quiet) == RT_EFORMAT); /* nothing readable */
    CHECKF(strstr(rt_errmsg(ctx), m) && strstr(rt_errmsg(ctx), "line 1"), "%s", rt_errmsg(ctx));
    rt_clear_error(ctx);
    /* a paths.jsonl with lines but none readable is an error too; an empty one is ignored */
    write_text(m, kd_metrics);
    char *p = path_in(dir, "paths.jsonl");
    write_text(p, "");
    CHECKF(rt_plot_run_opts(ctx, dir, &quiet) == 0, "%s", rt_errmsg(ctx));
    write_text(p, "{{{\n");
    CHECK(rt_plot_run_opts(ctx, dir, &quiet) == RT_EFORMAT);
    CHECKF(strstr(rt_errmsg(ctx), p), "%s", rt_errmsg(ctx));
    rt_clear_error(ctx);
    /* a file where the run directory should be */
    CHECK(rt_plot_run_opts(ctx, m, &quiet) == RT_EIO);
    CHECKF(strstr(rt_errmsg(ctx), "not a run directory"), "%s", rt_errmsg(ctx));
    free(m), free(p), free(dir);
    rt_ctx_free(ctx);
}

TEST(run_single_epoch) {
    rt_ctx *ctx = rt_ctx_new();
    char *dir = tmp_dir("one"), *m = path_in(dir, "metrics.jsonl");
    write_text(m, "{\"epoch\": 1, \"train_loss\": 0.7, \"train_acc\": 0.8, \"test_acc\": 0.8, \"test_loss\": 0.7}\n");
    CHECKF(rt_plot_run(ctx, dir) == 0, "%s", rt_errmsg(ctx));
    frame fr;
    char *f = path_in(dir, "plots/accuracy.svg"), *s = read_text(f);
    const char *why = svg_check(s, 2, &fr);
    CHECKF(!why, "%s", why);
    CHECK(fr.dx0 < 1 && fr.dx1 > 1 && fr.dy0 < 80 && fr.dy1 > 80);
    free(s), free(f), free(m), free(dir);
    rt_ctx_free(ctx);
}

/* ---- comparison ---- */

TEST(compare_runs) {
    rt_ctx *ctx = rt_ctx_new();
    char *root = tmp_dir(NULL), *a = path_in(root, "a/seed1"), *b = path_in(root, "b/seed1"),
         *c = path_in(root, "kd_at"), *out = path_in(root, "cmp/all");
    char *dirs[] = {a, b, c};
    for (int i = 0; i < 3; i++) {
        char *parent = strdup(dirs[i]);
        *strrchr(parent, '/') = 0;
        mkdir(parent, 0777);
        mkdir(dirs[i], 0777);
        free(parent);
        char *m = path_in(dirs[i], "metrics.jsonl");
        write_text(m, i == 2 ? kd_metrics : train_metrics);
        free(m);
    }
    const char *const runs[] = {a, b, c};
    CHECKF(rt_plot_compare(ctx, 3, runs, out) == 0, "%s", rt_errmsg(ctx));
    frame fr;
    char *f = path_in(out, "accuracy.svg"), *s = read_text(f);
    const char *why = svg_check(s, 3, &fr);
    CHECKF(!why, "%s", why);
    /* the two seed1 runs are told apart by their parents, the third named by its directory */
    CHECK(has_series(s, "a/seed1") && has_series(s, "b/seed1") && has_series(s, "kd_at"));
    CHECK(fr.dy0 <= 60 && fr.dy1 >= 88);
    free(s), free(f);
    f = path_in(out, "loss.svg"), s = read_text(f);
    CHECK(!svg_check(s, 3, &fr) && fr.dy0 <= 0.39 && fr.dy1 >= 1.5);
    free(s), free(f);
    f = path_in(out, "agreement.svg"), s = read_text(f);
    CHECK(!svg_check(s, 3, &fr)); /* the two training runs have no points, but stay in the legend */
    double px[4], py[4];
    CHECK(series_points(s, "kd_at", px, py, 4) == 2 && series_points(s, "a/seed1", px, py, 4) == 0);
    free(s), free(f);
    /* without any agreement values there is no agreement chart */
    char *out2 = path_in(root, "cmp2");
    const char *const runs2[] = {a, b};
    CHECKF(rt_plot_compare(ctx, 2, runs2, out2) == 0, "%s", rt_errmsg(ctx));
    f = path_in(out2, "agreement.svg");
    CHECK(!exists(f));
    free(f);
    /* a missing run is an error naming it */
    const char *const runs3[] = {a, "/tmp/rt_plot_no_such_run"};
    CHECK(rt_plot_compare(ctx, 2, runs3, out2) == RT_EIO);
    CHECKF(strstr(rt_errmsg(ctx), "/tmp/rt_plot_no_such_run/metrics.jsonl"), "%s", rt_errmsg(ctx));
    rt_clear_error(ctx);
    CHECK(rt_plot_compare(ctx, 0, runs3, out2) == RT_EINVAL);
    free(a), free(b), free(c), free(out), free(out2), free(root);
    rt_ctx_free(ctx);
}
