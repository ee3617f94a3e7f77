/* A tiny test harness: TEST(name) { ... CHECK(...) ... } and a main() that runs them all.
 * Each test prints "ok NAME" or "FAIL NAME: ..."; the last line is "cases: N passed, M failed",
 * which tests/run.sh sums into the suite's closing line. */
#ifndef RT_TEST_H
#define RT_TEST_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*rt_test_fn)(void);
static struct { const char *name; rt_test_fn fn; } rt_tests_[256];
static int rt_ntests_, rt_test_failed_;
static const char *rt_test_name_;

/* Where tests write files: $TMPDIR (tests/run.sh points it at a fresh directory and removes it
 * after a green run), else /tmp. */
static inline const char *rt_test_tmp(void) {
    const char *d = getenv("TMPDIR");
    return d && d[0] ? d : "/tmp";
}

#define TEST(tname)                                                                   \
    static void test_##tname(void);                                                   \
    __attribute__((constructor)) static void reg_##tname(void) {                      \
        rt_tests_[rt_ntests_].name = #tname;                                          \
        rt_tests_[rt_ntests_++].fn = test_##tname;                                    \
    }                                                                                \
    static void test_##tname(void)

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            printf("FAIL %s: %s:%d: %s\n", rt_test_name_, __FILE__, __LINE__, #cond); \
            rt_test_failed_ = 1;                                                     \
            return;                                                                  \
        }                                                                            \
    } while (0)

#define CHECKF(cond, ...)                                                            \
    do {                                                                             \
        if (!(cond)) {                                                               \
            printf("FAIL %s: %s:%d: ", rt_test_name_, __FILE__, __LINE__);           \
            printf(__VA_ARGS__);                                                     \
            printf("\n");                                                            \
            rt_test_failed_ = 1;                                                     \
            return;                                                                  \
        }                                                                            \
    } while (0)

/* |a-b| <= tol * max(1, |a|, |b|) */
#define CHECK_CLOSE(a, b, tol)                                                       \
    do {                                                                             \
        double a_ = (a), b_ = (b), m_ = fmax(1.0, fmax(fabs(a_), fabs(b_)));         \
        CHECKF(fabs(a_ - b_) <= (tol) * m_, "%s = %.9g, %s = %.9g (tol %g)", #a, a_, #b, b_, (double)(tol)); \
    } while (0)

/* Max relative error of two float arrays, normalised by the larger array's max magnitude; infinite
 * when either holds a NaN or an infinity (so a test can never pass on non-finite output). */
static inline double rt_test_maxrel(const float *a, const float *b, long n) {
    double m = 1e-30, e = 0;
    for (long i = 0; i < n; i++) {
        if (!isfinite(a[i]) || !isfinite(b[i])) return INFINITY;
        m = fmax(m, fmax(fabs(a[i]), fabs(b[i])));
        e = fmax(e, fabs((double)a[i] - b[i]));
    }
    return e / m;
}

int main(int argc, char **argv) {
    int pass = 0, fail = 0;
    for (int i = 0; i < rt_ntests_; i++) {
        if (argc > 1 && !strstr(rt_tests_[i].name, argv[1])) continue;
        rt_test_name_ = rt_tests_[i].name;
        rt_test_failed_ = 0;
        rt_tests_[i].fn();
        if (rt_test_failed_) fail++;
        else { pass++; printf("ok %s\n", rt_tests_[i].name); }
        fflush(stdout);
    }
    printf("cases: %d passed, %d failed\n", pass, fail);
    return fail ? 1 : 0;
}
#endif
