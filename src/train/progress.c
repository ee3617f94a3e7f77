/* Progress bar and JSONL metrics. */
#include "train/progress.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double rt_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void rt_progress_begin(rt_progress *p, FILE *out, const char *label, int64_t total) {
    p->out = out;
    p->tty = out && isatty(fileno(out)) && !getenv("RETORT_NO_TTY");
    p->total = total;
    p->t0 = rt_now();
    p->last_draw = 0;
    snprintf(p->label, sizeof p->label, "%s", label);
}

static void fmt_time(char *b, size_t n, double s) {
    if (s < 0 || s > 1e7) s = 0;
    int h = (int)(s / 3600), m = (int)(s / 60) % 60, sec = (int)s % 60;
    if (h) snprintf(b, n, "%d:%02d:%02d", h, m, sec);
    else snprintf(b, n, "%d:%02d", m, sec);
}

void rt_progress_update(rt_progress *p, int64_t step, double loss, double acc, int64_t samples) {
    if (!p->out) return;
    double now = rt_now(), el = now - p->t0;
    int last = step >= p->total;
    /* a terminal is redrawn 10 times a second; a log file gets a line every 30 s */
    if (!last && now - p->last_draw < (p->tty ? 0.1 : 30.0)) return;
    p->last_draw = now;
    double rate = el > 0 ? samples / el : 0, eta = step > 0 ? el * (p->total - step) / step : 0;
    char eta_s[32], acc_s[32] = "";
    fmt_time(eta_s, sizeof eta_s, eta);
    if (acc >= 0) snprintf(acc_s, sizeof acc_s, " acc %5.2f%%", 100 * acc);
    if (p->tty) {
        char bar[21];
        int fill = p->total > 0 ? (int)(20 * step / p->total) : 20;
        for (int i = 0; i < 20; i++) bar[i] = i < fill ? '#' : '.';
        bar[20] = 0;
        fprintf(p->out, "\r%s [%s] %lld/%lld loss %.4f%s %.0f img/s ETA %s\033[K", p->label, bar, (long long)step,
                (long long)p->total, loss, acc_s, rate, eta_s);
    } else {
        fprintf(p->out, "%s step %lld/%lld loss %.4f%s %.0f img/s ETA %s\n", p->label, (long long)step,
                (long long)p->total, loss, acc_s, rate, eta_s);
    }
    fflush(p->out);
}

void rt_progress_end(rt_progress *p, const char *summary) {
    if (!p->out) return;
    if (p->tty) fprintf(p->out, "\r\033[K");
    fprintf(p->out, "%s %s\n", p->label, summary);
    fflush(p->out);
}

int rt_jsonl_open(rt_jsonl *j, const char *path) {
    j->f = fopen(path, "a");
    return j->f ? 0 : -1;
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20) fprintf(f, "\\u%04x", *s);
        else fputc(*s, f);
    }
    fputc('"', f);
}

int rt_jsonl_write(rt_jsonl *j, ...) {
    if (!j->f) return -1;
    va_list ap;
    va_start(ap, j);
    fputc('{', j->f);
    int first = 1;
    for (const char *key; (key = va_arg(ap, const char *));) {
        int type = va_arg(ap, int);
        if (!first) fputs(", ", j->f);
        first = 0;
        json_str(j->f, key);
        fputs(": ", j->f);
        if (type == 'i') fprintf(j->f, "%lld", (long long)va_arg(ap, int64_t));
        else if (type == 'f') {
            double v = va_arg(ap, double);
            if (v != v || v > 1e300 || v < -1e300) fputs("null", j->f); /* JSON has no NaN/inf */
            else fprintf(j->f, "%.6g", v);
        } else json_str(j->f, va_arg(ap, const char *));
    }
    va_end(ap);
    fputs("}\n", j->f);
    return fflush(j->f) ? -1 : 0;
}

void rt_jsonl_close(rt_jsonl *j) {
    if (j->f) fclose(j->f);
    j->f = NULL;
}
