/* A growing text buffer for SVG documents: printf-style appends, XML escaping, and an atomic save.
 * Internal to src/report. */
#ifndef RT_REPORT_SVG_H
#define RT_REPORT_SVG_H
#include <stddef.h>

#include "retort/core.h"

typedef struct rt_svg {
    char *buf;
    size_t len, cap;
    int oom; /* an append failed for lack of memory: rt_svg_save reports it */
} rt_svg;

void rt_svg_printf(rt_svg *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends text with &, <, >, " and ' escaped, and control characters dropped. */
void rt_svg_escape(rt_svg *s, const char *text);
/* <text x y text-anchor font-size [attrs]>escaped text</text> */
void rt_svg_text(rt_svg *s, double x, double y, const char *anchor, double size, const char *attrs, const char *text);
/* Writes the buffer to path via path.tmp + rename. RT_EIO / RT_ENOMEM naming the path. */
int rt_svg_save(rt_ctx *ctx, const rt_svg *s, const char *path);
void rt_svg_free(rt_svg *s);

#endif
