/* Files: safetensors (read with full validation, write atomically). */
#ifndef RETORT_IO_H
#define RETORT_IO_H
#include "retort/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rt_st_entry {
    char name[256];
    char dtype[8]; /* "F32", "F64", "I64", "I32", "F16", "BF16", "U8", ... as in the file */
    int ndim;
    int64_t shape[RT_MAX_DIMS];
    size_t begin, end; /* byte offsets into the data section */
} rt_st_entry;

typedef struct rt_safetensors {
    int count;
    rt_st_entry *entries; /* sorted by name */
    int nmeta;
    char **meta_keys, **meta_values; /* "__metadata__" string pairs */
    unsigned char *data;             /* the data section */
    size_t data_len;
    char *path; /* as given to rt_st_read, for messages */
} rt_safetensors;

/* Reads and validates path: header length, JSON, dtypes, shapes vs byte ranges, offsets inside the
 * file and not overlapping, no gaps. Errors name the path and what is wrong. */
int rt_st_read(rt_ctx *ctx, const char *path, rt_safetensors **out);
void rt_st_free(rt_safetensors *st);
const rt_st_entry *rt_st_find(const rt_safetensors *st, const char *name);
const char *rt_st_meta(const rt_safetensors *st, const char *key);
/* Copies tensor name into dst as float (from F32, F64, I64, I32, F16, BF16), checking its shape equals
 * (ndim, shape) unless shape is NULL. */
int rt_st_get_f32(rt_ctx *ctx, const rt_safetensors *st, const char *name, float *dst, int ndim,
                  const int64_t *shape);

typedef struct rt_st_writer rt_st_writer;
rt_st_writer *rt_st_writer_new(void);
/* Adds a tensor (data copied). as_i64 stores the values rounded to int64 (num_batches_tracked). */
int rt_st_add(rt_ctx *ctx, rt_st_writer *w, const char *name, int ndim, const int64_t *shape, const float *data,
              int as_i64);
int rt_st_set_meta(rt_ctx *ctx, rt_st_writer *w, const char *key, const char *value);
/* Writes to path atomically: path.tmp, fsync, rename. */
int rt_st_write(rt_ctx *ctx, rt_st_writer *w, const char *path);
void rt_st_writer_free(rt_st_writer *w);

/* ---- checkpoints of a parameter set (declared in retort/nn.h) ---- */

typedef struct rt_paramset rt_paramset;
/* Writes every parameter and buffer of ps (its own data, not a bound look-ahead) under its
 * state_dict name, is_int ones as I64, plus nmeta metadata string pairs. Atomic like rt_st_write. */
int rt_params_save(rt_ctx *ctx, const rt_paramset *ps, const char *path, int nmeta, const char *const *keys,
                   const char *const *values);
/* Loads path into ps after checking that it holds exactly the set's names, each with the right
 * shape and a numeric dtype; on any mismatch nothing is copied and the error lists the missing
 * names, the unexpected names and the shape mismatches (RT_ESHAPE when shapes are the only
 * problem, else RT_EFORMAT). meta_out (may be NULL) receives the file (rt_st_free it) for its
 * metadata; it is set to NULL on failure. */
int rt_params_load(rt_ctx *ctx, rt_paramset *ps, const char *path, rt_safetensors **meta_out);

#ifdef __cplusplus
}
#endif
#endif
