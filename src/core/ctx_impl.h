/* The context's private layout, shared by src/core and src/autograd. */
#ifndef RT_CTX_IMPL_H
#define RT_CTX_IMPL_H
#include "retort/core.h"
#include "retort/autograd.h"

#define RT_ARENA_MAX_BLOCKS 64

typedef struct rt_arena {
    char *block[RT_ARENA_MAX_BLOCKS];
    size_t cap[RT_ARENA_MAX_BLOCKS];
    int nblocks;   /* allocated blocks */
    int cur;       /* block being filled */
    size_t used;   /* bytes used in block cur */
    size_t before; /* bytes used in blocks before cur */
    size_t highwater;
} rt_arena;

struct rt_ctx {
    int status;
    char msg[1024];
    char scope[512];
    int scope_len[32];
    int scope_depth;
    rt_arena arena;
    void *scratch;
    size_t scratch_cap;
    int grad_enabled;
    rt_node *tape;    /* last recorded node */
    uint32_t ntape;
    uint32_t pass;    /* backward pass counter */
    rt_rng rng;
    struct rt_profile *prof;       /* the profiler while it is on, else NULL (src/core/profile.c) */
    struct rt_profile *prof_store; /* its tables, kept while off so they can be printed */
};

#endif
