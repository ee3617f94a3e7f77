/* Run-time CPU feature detection: SIMD kernels are chosen by what the running CPU has, never by
 * what the build machine had. RETORT_ISA=generic|avx2|avx512 caps the choice (for tests). */
#ifndef RT_CPU_H
#define RT_CPU_H

typedef enum { RT_ISA_GENERIC = 0, RT_ISA_AVX2 = 1, RT_ISA_AVX512 = 2 } rt_isa;

rt_isa rt_cpu_isa(void);          /* best usable ISA, capped by RETORT_ISA */
const char *rt_isa_name(rt_isa i);
const char *rt_cpu_model(void);   /* "AMD EPYC ..." from /proc/cpuinfo, or "unknown" */
int rt_cpu_has_avx512bf16(void);

#endif
