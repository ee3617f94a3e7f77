/* Shared test fixtures: seeded N(0,1) data and heap-owned leaf tensors. Include after test.h.
 * Every helper draws from a fresh rt_rng seeded with `seed`, one rt_rng_normal per element in
 * order, so a given seed always yields the same values (fixture comparisons rely on this). */
#ifndef RT_TEST_UTIL_H
#define RT_TEST_UTIL_H
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "retort/core.h"
#include "retort/tensor.h"

/* x[0..n) = N(0,1) draws from rt_rng seeded with seed. */
static inline void rt_test_fill_normal(float *x, int64_t n, uint64_t seed) {
    rt_rng r;
    rt_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) x[i] = rt_rng_normal(&r);
}

/* A heap tensor with uninitialised data and, when grad, a zeroed gradient (requires_grad = 1).
 * Empty shapes still get a (one-element) buffer, so data is never NULL. */
static inline rt_tensor *rt_test_tensor_alloc_(int ndim, const int64_t *shape, int grad) {
    rt_tensor *t = calloc(1, sizeof *t);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    size_t cap = (size_t)(n > 0 ? n : 1);
    rt_tensor_init(t, malloc(cap * sizeof(float)), ndim, shape);
    if (grad) {
        t->grad = calloc(cap, sizeof(float));
        t->requires_grad = 1;
    }
    return t;
}

/* A heap leaf over N(0,1) data (rt_test_fill_normal with seed); free with rt_test_tensor_free. */
static inline rt_tensor *rt_test_tensor(int ndim, const int64_t *shape, uint64_t seed, int grad) {
    rt_tensor *t = rt_test_tensor_alloc_(ndim, shape, grad);
    rt_test_fill_normal(t->data, rt_numel(t), seed);
    return t;
}

/* A heap leaf over a copy of src (numel floats), so a test may mutate it. */
static inline rt_tensor *rt_test_tensor_from(const float *src, int ndim, const int64_t *shape, int grad) {
    rt_tensor *t = rt_test_tensor_alloc_(ndim, shape, grad);
    memcpy(t->data, src, (size_t)rt_numel(t) * sizeof(float));
    return t;
}

/* Frees a tensor from rt_test_tensor / rt_test_tensor_from (data, grad, header); NULL is a no-op. */
static inline void rt_test_tensor_free(rt_tensor *t) {
    if (!t) return;
    free(t->data);
    free(t->grad);
    free(t);
}

/* max_i |a_i - ref_i| / max_i |ref_i|, against a double reference (fixtures); infinite when a or
 * ref holds a NaN or an infinity. */
static inline double rt_test_maxrel_ref(const float *a, const double *ref, int64_t n) {
    double m = 1e-30, e = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(a[i]) || !isfinite(ref[i])) return INFINITY;
        m = fmax(m, fabs(ref[i]));
        e = fmax(e, fabs((double)a[i] - ref[i]));
    }
    return e / m;
}
#endif
