/* Progress display and metrics logging for long runs: a redrawn bar on a terminal, plain lines
 * otherwise; metrics as JSON lines flushed after every record so a crash loses nothing. */
#ifndef RT_PROGRESS_H
#define RT_PROGRESS_H
#include <stdint.h>
#include <stdio.h>

typedef struct rt_progress {
    FILE *out;
    int tty;
    int64_t total;       /* steps in this phase */
    double t0, last_draw;
    char label[64];
} rt_progress;

double rt_now(void); /* monotonic seconds */
void rt_progress_begin(rt_progress *p, FILE *out, const char *label, int64_t total);
/* step done (1-based), with running loss, accuracy in [0,1] (< 0: not shown) and samples so far. */
void rt_progress_update(rt_progress *p, int64_t step, double loss, double acc, int64_t samples);
void rt_progress_end(rt_progress *p, const char *summary);

/* JSONL: open (append), write one record from alternating key/format pairs, close. */
typedef struct rt_jsonl {
    FILE *f;
} rt_jsonl;
int rt_jsonl_open(rt_jsonl *j, const char *path);
/* rt_jsonl_write(j, "epoch", 'i', (int64_t)3, "loss", 'f', 0.5, "phase", 's', "train", NULL) */
int rt_jsonl_write(rt_jsonl *j, ...);
void rt_jsonl_close(rt_jsonl *j);

#endif
