/* SVG text output for the charts: a buffer that grows, XML escaping, and an atomic save (path.tmp,
 * then rename) so an interrupted run never leaves a half-written chart behind. */
#include "report/svg.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int reserve(rt_svg *s, size_t more) {
    if (s->oom) return -1;
    if (s->len + more + 1 <= s->cap) return 0;
    size_t cap = s->cap ? s->cap : 4096;
    while (cap < s->len + more + 1) cap *= 2;
    char *b = realloc(s->buf, cap);
    if (!b) {
        s->oom = 1;
        return -1;
    }
    s->buf = b;
    s->cap = cap;
    return 0;
}

void rt_svg_printf(rt_svg *s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || reserve(s, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(s->buf + s->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    s->len += (size_t)n;
}

void rt_svg_escape(rt_svg *s, const char *text) {
    for (const unsigned char *p = (const unsigned char *)text; p && *p; p++) {
        const char *e = NULL;
        switch (*p) {
        case '&':
            e = "&amp;";
            break;
        case '<':
            e = "&lt;";
            break;
        case '>':
            e = "&gt;";
            break;
        case '"':
            e = "&quot;";
            break;
        case '\'':
            e = "&apos;";
            break;
        default:
            if (*p < 0x20) continue; /* not allowed in XML 1.0 (tab/newline are, but mean nothing here) */
        }
        if (e) {
            rt_svg_printf(s, "%s", e);
        } else if (!reserve(s, 1)) {
            s->buf[s->len++] = (char)*p;
            s->buf[s->len] = 0;
        }
    }
}

void rt_svg_text(rt_svg *s, double x, double y, const char *anchor, double size, const char *attrs, const char *text) {
    rt_svg_printf(s, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\" font-size=\"%g\"%s%s>", x, y, anchor, size,
                  attrs ? " " : "", attrs ? attrs : "");
    rt_svg_escape(s, text);
    rt_svg_printf(s, "</text>\n");
}

int rt_svg_save(rt_ctx *ctx, const rt_svg *s, const char *path) {
    if (s->oom) return rt_fail(ctx, RT_ENOMEM, "plot: no memory to build %s", path);
    size_t n = strlen(path) + 5;
    char *tmp = malloc(n);
    if (!tmp) return rt_fail(ctx, RT_ENOMEM, "plot: no memory to write %s", path);
    snprintf(tmp, n, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    int rc = 0;
    if (!f) {
        rc = rt_fail(ctx, RT_EIO, "plot: cannot write %s: %s", tmp, strerror(errno));
    } else {
        int bad = s->len && fwrite(s->buf, 1, s->len, f) != s->len;
        int err = errno;
        if (fclose(f) || bad) {
            rc = rt_fail(ctx, RT_EIO, "plot: cannot write %s: %s", tmp, strerror(bad ? err : errno));
            remove(tmp);
        } else if (rename(tmp, path)) {
            rc = rt_fail(ctx, RT_EIO, "plot: cannot move %s into place: %s", tmp, strerror(errno));
            remove(tmp);
        }
    }
    free(tmp);
    return rc;
}

void rt_svg_free(rt_svg *s) {
    free(s->buf);
    *s = (rt_svg){0};
}
