/* GEMM services outside generated code (runtime/gemm.c): packing weights
 * into the micro-kernels' layout, and choosing the kernel variant.
 * Generated code only calls the fu_rt_gemm_* kernels of fusec_kernels.h. */
#ifndef FUSEC_GEMM_H
#define FUSEC_GEMM_H

#include <stdint.h>
#include "fusec_kernels.h"

/* Bytes of weight B [N, K] packed in `layout` (FU_RT_PACK_F32 or
 * FU_RT_PACK_BF16); -1 for a bad layout or size. Always a multiple of 64. */
int64_t fu_rt_packed_bytes(int layout, int64_t N, int64_t K);

/* Packs B [N, K] (row-major, or stored [K, N] when src_transposed;
 * float32, or bfloat16 bits when src_is_bf16; any alignment) into dst
 * (fu_rt_packed_bytes bytes, 64-byte aligned), sharing the work across
 * cores. FU_RT_PACK_BF16 from float32 rounds to nearest even (the
 * --precision bf16 weights); FU_RT_PACK_F32 from bfloat16 widens exactly.
 * Returns 0, or -1 for a bad layout or size. */
int fu_rt_pack_weight(void *dst, const void *src, int src_is_bf16, int src_transposed, int layout, int64_t N,
                      int64_t K);

/* The micro-kernel variant in use: "avx512bf16", "avx512", "avx2" or
 * "portable". Chosen on first use from the CPU's features, unless the
 * environment variable FUSEC_GEMM names a supported variant. */
const char *fu_rt_gemm_variant(void);
/* Whether this CPU can run variant `name`. */
int fu_rt_gemm_variant_supported(const char *name);
/* Switches to variant `name` (tests). Returns 0, or -1 when the name is
 * unknown or the CPU cannot run it (the variant in use stays). Not safe
 * while another thread runs a GEMM. */
int fu_rt_gemm_use_variant(const char *name);
/* Every variant, best first: NULL past the end. */
const char *fu_rt_gemm_variant_at(int i);

#endif
