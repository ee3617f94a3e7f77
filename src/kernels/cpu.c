/* CPU feature detection through GCC's __builtin_cpu_supports (cpuid + OS XSAVE support). */
#include "kernels/cpu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static rt_isa detect(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512dq"))
        return RT_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return RT_ISA_AVX2;
#endif
    return RT_ISA_GENERIC;
}

rt_isa rt_cpu_isa(void) {
    /* computed on each call: cheap, and keeps the library free of mutable globals */
    rt_isa isa = detect();
    const char *cap = getenv("RETORT_ISA");
    if (cap) {
        rt_isa c = !strcmp(cap, "generic") ? RT_ISA_GENERIC : !strcmp(cap, "avx2") ? RT_ISA_AVX2 : RT_ISA_AVX512;
        if (c < isa) isa = c;
    }
    return isa;
}

const char *rt_isa_name(rt_isa i) { return i == RT_ISA_AVX512 ? "avx512" : i == RT_ISA_AVX2 ? "avx2" : "generic"; }

int rt_cpu_has_avx512bf16(void) {
#if (defined(__x86_64__) || defined(__i386__)) && __GNUC__ >= 12
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16");
#else
    return 0;
#endif
}

const char *rt_cpu_model(void) {
    static __thread char model[128]; /* per-thread buffer, filled on demand */
    FILE *f = fopen("/proc/cpuinfo", "r");
    snprintf(model, sizeof model, "unknown");
    if (!f) return model;
    char line[256];
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10)) {
            char *p = strchr(line, ':');
            if (p) {
                p += 2;
                p[strcspn(p, "\n")] = 0;
                snprintf(model, sizeof model, "%s", p);
            }
            break;
        }
    fclose(f);
    return model;
}
