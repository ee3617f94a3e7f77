/* YAML configs with a typed schema: nested mappings flatten to dotted keys ("optim.lr"), command-line
 * overrides "key=value" apply on top (as yacs/mdistiller do). Unknown keys, bad values and bad
 * types are errors naming the file, line and key. */
#ifndef RETORT_CONFIG_H
#define RETORT_CONFIG_H
#include <stddef.h>

#include "retort/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    RT_CFG_INT,       /* int64_t */
    RT_CFG_FLOAT,     /* double */
    RT_CFG_BOOL,      /* int: true/false/yes/no/on/off/1/0 */
    RT_CFG_STR,       /* char[RT_CFG_STR_MAX] */
    RT_CFG_FLOATLIST, /* rt_cfg_list */
    RT_CFG_STRLIST,   /* rt_cfg_strlist */
} rt_cfg_type;

#define RT_CFG_STR_MAX 256
#define RT_CFG_LIST_MAX 32
typedef struct rt_cfg_list {
    int n;
    double v[RT_CFG_LIST_MAX];
} rt_cfg_list;

#define RT_CFG_STRLIST_MAX 16
typedef struct rt_cfg_strlist {
    int n;
    char v[RT_CFG_STRLIST_MAX][64];
} rt_cfg_strlist;

typedef struct rt_cfg_field {
    const char *key;  /* dotted: "optim.lr" */
    rt_cfg_type type;
    size_t offset;    /* into the destination struct */
    const char *def;  /* default value as text (YAML scalar or "[a, b]"), NULL = zero */
    const char *help;
} rt_cfg_field;

/* Fills dst with the defaults, then the YAML file (path may be NULL), then the overrides. */
int rt_config_load(rt_ctx *ctx, const rt_cfg_field *schema, int nfields, void *dst, const char *path,
                   int noverrides, char *const *overrides);
/* Sets one key from text (used for defaults and overrides); where names the source in errors. */
int rt_config_set(rt_ctx *ctx, const rt_cfg_field *schema, int nfields, void *dst, const char *key,
                  const char *value, const char *where);
/* Writes the whole config as YAML (nested by the dotted keys) to f, for the run directory. */
int rt_config_write(const rt_cfg_field *schema, int nfields, const void *src, void *file);

#ifdef __cplusplus
}
#endif
#endif
