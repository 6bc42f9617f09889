/* The GEMM micro-kernels, one set per instruction set (internal to
 * libfusec_rt; the driver is runtime/gemm.c).
 *
 * runtime/gemm_kernels.c is compiled once per variant with that variant's
 * -m flags (see the Makefile); the compiler's feature macros (__AVX512F__,
 * __AVX512BF16__, __AVX2__) pick the code, and each object defines one
 * fu_gemm_kernels table named fu_gemm_kernels_<variant>. The driver picks a
 * table at run time from the CPU's features.
 *
 * A micro-kernel computes one tile of C: mr rows (mr <= the table's mr_f32 or mr_bf16) by one
 * panel of FU_GEMM_PANEL columns (nc of them stored, nc <= FU_GEMM_PANEL),
 *   C[i][j] = alpha * sum_k A[i][k] * B[j][k] + beta * C[i][j]   (beta 0: C is not read)
 * over the whole K, summing k in increasing order into the same register
 * lanes whatever the tile's position: so a C element's value never depends
 * on how tiles were shared between threads.
 *
 * Layouts (zero padded; the driver packs them):
 *   B float32 panel:   [K][PANEL] floats                (column j of k at k*PANEL + j)
 *   B bfloat16 panel:  [K2/2][PANEL][2] bf16, K2 = K rounded up to even
 *                      (column j, k at (k/2)*2*PANEL + 2*j + k%2: the pairs
 *                      the AVX512-BF16 dot product multiplies)
 *   A float32 tile:    [K][mr] floats                    (row i of k at k*mr + i;
 *                      K rounded up to even, zero padded, for bfloat16 panels)
 *   A bf16-pair tile:  [K2/2][mr] uint32, each a pair of bf16 (k even in
 *                      the low half): A rounded to bfloat16. */
#ifndef FUSEC_GEMM_KERNELS_H
#define FUSEC_GEMM_KERNELS_H

#include <stdint.h>

#define FU_GEMM_PANEL 32

/* How a tile of A is stored for a kernel. */
typedef enum {
    FU_GEMM_A_F32,          /* float32 [K][mr] */
    FU_GEMM_A_F32_ROUNDED,  /* float32 [K][mr], values rounded to bfloat16 */
    FU_GEMM_A_BF16X1,       /* bf16 pairs: A rounded to bfloat16 */
} fu_gemm_a_format;

/* prefetch (or NULL): the next panel, to pull towards the cache while
 * this tile runs (a hint; kernels may ignore it). */
typedef void (*fu_gemm_tile_f32_fn)(int mr, int nc, int64_t K, const float *a, const float *b_panel,
                                    float *c, int64_t ldc, float alpha, float beta, const char *prefetch);
/* a is in the table's a_exact or a_rounded format. */
typedef void (*fu_gemm_tile_bf16_fn)(int mr, int nc, int64_t K, const void *a, const uint16_t *b_panel,
                                     float *c, int64_t ldc, float alpha, float beta, const char *prefetch);

typedef struct {
    const char *name;          /* "avx512bf16", "avx512", "avx2", "portable" */
    int mr_f32, mr_bf16, mr_bf16_rounded;   /* most rows per tile of each kernel below */
    fu_gemm_tile_f32_fn f32;   /* float32 B panel, float32 A */
    /* bfloat16 B panel: f32-exact products from A in format a_exact
     * (bfloat16 weights, float32 arithmetic) ... */
    fu_gemm_a_format a_exact;
    fu_gemm_tile_bf16_fn bf16_exact;
    /* ... or from A rounded to bfloat16, in format a_rounded (precision bf16). */
    fu_gemm_a_format a_rounded;
    fu_gemm_tile_bf16_fn bf16_rounded;
} fu_gemm_kernels;

extern const fu_gemm_kernels fu_gemm_kernels_avx512bf16, fu_gemm_kernels_avx512, fu_gemm_kernels_avx2,
    fu_gemm_kernels_portable;

#endif
