/* Function multi-versioning for the runtime's auto-vectorised kernels
 * (internal to libfusec_rt).
 *
 * libfusec_rt.so is built for any x86-64 (baseline SSE2), so that fusec
 * runs everywhere; the GEMM has hand-written variants chosen at run time
 * (runtime/gemm.c). The other kernels are plain C loops that gcc
 * vectorises: FU_RT_SIMD_ENTRY has gcc compile such a function three times
 * (AVX-512, AVX2+FMA, baseline) and the dynamic loader bind the copy the
 * CPU runs. Put it on the functions that run the loops (the ranges handed
 * to fu_rt_parallel_for); the helpers they call are FU_RT_SIMD_INLINE, so
 * each copy gets them compiled for its own instruction set. */
#ifndef FUSEC_SIMD_H
#define FUSEC_SIMD_H

#define FU_RT_SIMD_ENTRY __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define FU_RT_SIMD_INLINE static inline __attribute__((always_inline))

#endif
