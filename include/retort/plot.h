/* Charts of training runs as SVG (issue 4): accuracy, loss, path weights, path losses and gradient
 * cosines of one run directory, or the same metric of several runs side by side. The SVG text is
 * written directly (no plotting library). Implementation: src/report/plot.c and src/report/svg.c. */
#ifndef RETORT_PLOT_H
#define RETORT_PLOT_H
#include <stdint.h>
#include <stdio.h>

#include "retort/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- run directories ----
 * Inputs are JSON lines, one object per line; unknown keys are ignored. A line that is not a JSON
 * object is skipped with a warning "FILE:LINE: skipped: ..."; a file with lines but none readable is
 * an error (RT_EFORMAT). In metrics.jsonl a value of -1 or null means "absent".
 *
 * rt_plot_run reads RUN_DIR/metrics.jsonl (required: one line per epoch with epoch, train_loss,
 * train_acc, val_acc, val_loss, test_acc, test_loss, and for distillation agree_err and test_err) and
 * RUN_DIR/paths.jsonl (optional: step, loss {name: value}, weight {name: value}, names [...], cos
 * [[...]]), and writes into RUN_DIR/plots/ (created): accuracy.svg (train / val / test accuracy and the
 * agreement error, in percent, vs epoch), loss.svg (train / val / test loss vs epoch), and from
 * paths.jsonl weights.svg (path weights vs step, log y when they span more than 2 decades),
 * path_losses.svg (per-path losses vs step, log y when all are positive) and cosine.svg (cosine
 * between the gradients of each pair of paths vs step, when recorded). A chart without any data is
 * not written (with a warning). Returns status; messages name the file. */
int rt_plot_run(rt_ctx *ctx, const char *run_dir);

/* Comparison of n runs: out_dir/accuracy.svg (test accuracy of each run vs epoch), and when any run
 * has them out_dir/loss.svg (test loss) and out_dir/agreement.svg (agreement error). The legend names
 * each run by its directory's last component, more of the path where those coincide ("a/seed1").
 * Every run's metrics.jsonl is required. out_dir is created (with its parents). Returns status. */
int rt_plot_compare(rt_ctx *ctx, int n, const char *const *run_dirs, const char *out_dir);

typedef struct rt_plot_opts {
    FILE *warn;        /* where warnings go (skipped lines, charts without data); NULL = stderr */
    int quiet;         /* 1: no warnings */
    int width, height; /* chart size in pixels; <= 0: 800 x 480 */
} rt_plot_opts;
/* The same with options; opts may be NULL (the defaults). */
int rt_plot_run_opts(rt_ctx *ctx, const char *run_dir, const rt_plot_opts *opts);
int rt_plot_compare_opts(rt_ctx *ctx, int n, const char *const *run_dirs, const char *out_dir,
                         const rt_plot_opts *opts);

/* ---- one chart ---- */

enum { RT_PLOT_LINEAR = 0, RT_PLOT_LOG = 1, RT_PLOT_AUTO = 2 };

typedef struct rt_plot_series {
    const char *name;    /* legend text */
    int64_t n;           /* points; a series may have none (an empty polyline, still in the legend) */
    const double *x, *y; /* non-finite values, and y <= 0 on a log axis, are left out */
} rt_plot_series;

typedef struct rt_plot_chart {
    const char *title, *xlabel, *ylabel;
    int yscale;   /* RT_PLOT_LINEAR, RT_PLOT_LOG, or RT_PLOT_AUTO: log when all y are > 0 and
                   * max / min > 100 (more than 2 decades) */
    int xinteger; /* x values are integers (epochs): tick steps of at least 1 */
    int nseries;
    const rt_plot_series *series;
    int width, height; /* pixels; <= 0: 800 x 480 (taller when the legend needs it) */
} rt_plot_chart;

/* Writes the chart as an SVG file (atomically: path.tmp, then rename): title, axes with ticks and
 * labels, grid lines, one <polyline> per series (markers too when it has few points), a legend,
 * colours from the Okabe-Ito colour-blind-safe palette (dashes once its 8 colours are used up).
 * The axis ranges are "nice" (steps of 1, 2 or 5 x 10^k) and contain every plotted point. The <g
 * class="axes"> element carries the ranges as data-x0, data-x1, data-y0, data-y1, data-ylog, and the
 * plot area is <rect class="plot-area">. Returns status (RT_EIO naming the path). */
int rt_plot_chart_svg(rt_ctx *ctx, const rt_plot_chart *chart, const char *path);

/* A nice axis over [lo, hi]: linear: step = 1, 2 or 5 x 10^k (at least min_step when > 0) giving at
 * most max_ticks ticks (max_ticks >= 2), the ends at multiples of step, widened where needed so that
 * lo' <= lo and hi' >= hi; lo == hi is widened around the value. log (lo > 0): the ends are powers
 * of ten, step is the number of decades between labelled ticks. Non-finite or reversed input gives
 * [0, 1] (linear) or [1, 10] (log). */
typedef struct rt_plot_axis {
    double lo, hi, step;
    int log;
} rt_plot_axis;
void rt_plot_nice_axis(double lo, double hi, int max_ticks, double min_step, int log, rt_plot_axis *out);

#ifdef __cplusplus
}
#endif
#endif
