/* GEMM micro-kernels for one instruction set (contract and layouts in
 * runtime/gemm_kernels.h). The Makefile compiles this file once per
 * variant; the feature macros of that compile choose the code below:
 *
 *   __AVX512BF16__  avx512bf16  as avx512, and vdpbf16ps for A rounded to bfloat16
 *   __AVX512F__     avx512      float32: 16-wide FMAs; bfloat16 panels widened to float32
 *   __AVX2__        avx2        8-wide FMAs, half a panel (16 columns) at a time
 *   (none)          portable    plain C over the same layouts
 *
 * Each tile keeps its MR x 32 accumulators in registers for the whole K:
 * B is broadcast-free (two 16-wide loads per k), A is broadcast one
 * element at a time, and there are no horizontal reductions. mr is a
 * compile-time constant inside each tile body (a switch instantiates every
 * row count), so the accumulators never touch memory. */
#include <stdint.h>
#include "gemm_kernels.h"
#include "numerics.h"

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#define PANEL FU_GEMM_PANEL


/* Instantiates BODY(mr) for every mr in 1..MAX with mr a constant. */
#define CASES_1_TO_14(BODY, mr)                                                               \
    switch (mr) {                                                                             \
    case 1: BODY(1); break;  case 2: BODY(2); break;   case 3: BODY(3); break;                \
    case 4: BODY(4); break;  case 5: BODY(5); break;   case 6: BODY(6); break;                \
    case 7: BODY(7); break;  case 8: BODY(8); break;   case 9: BODY(9); break;                \
    case 10: BODY(10); break; case 11: BODY(11); break; case 12: BODY(12); break;             \
    case 13: BODY(13); break; default: BODY(14); break;                                       \
    }

#if defined(__AVX512F__)

enum { MR_F32 = 14, MR_BF16_WIDENED = 12 };
#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* Each inner step reads 128 bytes of the panel (32 floats, or 32 bf16
 * pairs); the same 128 bytes of the next panel are pulled into L2 then, so
 * a panel's first tile finds it there instead of waiting on memory. */
#define PREFETCH_NEXT(step)                                                                   \
    do {                                                                                      \
        if (prefetch) {                                                                       \
            _mm_prefetch(prefetch + (step) * 128, _MM_HINT_T1);                               \
            _mm_prefetch(prefetch + (step) * 128 + 64, _MM_HINT_T1);                          \
        }                                                                                     \
    } while (0)

/* Writes alpha * acc (+ beta * C) for one row: nc of the 32 columns. */
ALWAYS_INLINE void store_row(float *c, __m512 acc0, __m512 acc1, int nc, float alpha, float beta) {
    __mmask16 m0 = nc >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << nc) - 1);
    __mmask16 m1 = nc >= 32 ? (__mmask16)0xffff : nc > 16 ? (__mmask16)((1u << (nc - 16)) - 1) : 0;
    __m512 va = _mm512_set1_ps(alpha);
    __m512 r0 = _mm512_mul_ps(va, acc0), r1 = _mm512_mul_ps(va, acc1);
    if (beta != 0.0f) {
        __m512 vb = _mm512_set1_ps(beta);
        r0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, c), r0);
        r1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, c + 16), r1);
    }
    _mm512_mask_storeu_ps(c, m0, r0);
    _mm512_mask_storeu_ps(c + 16, m1, r1);
}

/* float32 panel: per k, two loads of B and mr broadcasts of A feed 2*mr FMAs. */
#define TILE_F32(MR)                                                                          \
    do {                                                                                      \
        __m512 acc0[MR], acc1[MR];                                                            \
        for (int i = 0; i < MR; i++) acc0[i] = acc1[i] = _mm512_setzero_ps();                 \
        const float *ak = a, *bk = b;                                                         \
        for (int64_t k = 0; k < K; k++, ak += MR, bk += PANEL) {                              \
            __m512 b0 = _mm512_load_ps(bk), b1 = _mm512_load_ps(bk + 16);                     \
            PREFETCH_NEXT(k);                                                                 \
            for (int i = 0; i < MR; i++) {                                                    \
                __m512 ai = _mm512_set1_ps(ak[i]);                                            \
                acc0[i] = _mm512_fmadd_ps(ai, b0, acc0[i]);                                   \
                acc1[i] = _mm512_fmadd_ps(ai, b1, acc1[i]);                                   \
            }                                                                                 \
        }                                                                                     \
        for (int i = 0; i < MR; i++) store_row(c + i * ldc, acc0[i], acc1[i], nc, alpha, beta); \
    } while (0)

static void tile_f32(int mr, int nc, int64_t K, const float *a, const float *b, float *c, int64_t ldc,
                     float alpha, float beta, const char *prefetch) {
    CASES_1_TO_14(TILE_F32, mr)
}

/* bfloat16 panel widened to float32: each 16-column load of pairs gives
 * the columns at k (low halves shifted up) and at k+1 (high halves); A is
 * float32 (exact or pre-rounded), padded to an even K. */
#define TILE_BF16_WIDENED(MR)                                                                 \
    do {                                                                                      \
        __m512 acc0[MR], acc1[MR];                                                            \
        for (int i = 0; i < MR; i++) acc0[i] = acc1[i] = _mm512_setzero_ps();                 \
        const float *ak = a;                                                                  \
        const uint16_t *bk = b;                                                               \
        const __m512i high = _mm512_set1_epi32((int)0xffff0000u);                             \
        for (int64_t kp = 0; kp < (K + 1) / 2; kp++, ak += 2 * MR, bk += 2 * PANEL) {         \
            __m512i w0 = _mm512_load_si512((const void *)bk);                                 \
            __m512i w1 = _mm512_load_si512((const void *)(bk + PANEL));                       \
            __m512 b0e = _mm512_castsi512_ps(_mm512_slli_epi32(w0, 16));                      \
            __m512 b1e = _mm512_castsi512_ps(_mm512_slli_epi32(w1, 16));                      \
            __m512 b0o = _mm512_castsi512_ps(_mm512_and_si512(w0, high));                     \
            __m512 b1o = _mm512_castsi512_ps(_mm512_and_si512(w1, high));                     \
            PREFETCH_NEXT(kp);                                                                \
            for (int i = 0; i < MR; i++) {                                                    \
                __m512 ae = _mm512_set1_ps(ak[i]);                                            \
                acc0[i] = _mm512_fmadd_ps(ae, b0e, acc0[i]);                                  \
                acc1[i] = _mm512_fmadd_ps(ae, b1e, acc1[i]);                                  \
                __m512 ao = _mm512_set1_ps(ak[MR + i]);                                       \
                acc0[i] = _mm512_fmadd_ps(ao, b0o, acc0[i]);                                  \
                acc1[i] = _mm512_fmadd_ps(ao, b1o, acc1[i]);                                  \
            }                                                                                 \
        }                                                                                     \
        for (int i = 0; i < MR; i++) store_row(c + i * ldc, acc0[i], acc1[i], nc, alpha, beta); \
    } while (0)

static void tile_bf16_widened(int mr, int nc, int64_t K, const void *a_, const uint16_t *b, float *c,
                              int64_t ldc, float alpha, float beta, const char *prefetch) {
    const float *a = a_;
    CASES_1_TO_14(TILE_BF16_WIDENED, mr)
}

#if defined(__AVX512BF16__)
enum { MR_BF16_DOT = 14 };

/* bfloat16 panel with vdpbf16ps, for A rounded to bfloat16: each
 * instruction multiplies 16 columns by one pair of k and adds both
 * products into float32 lanes: twice the multiply-adds of an FMA per
 * instruction. (The exact form does not use it: splitting A into three
 * bfloat16 parts, whose products are exact, costs 3 dot products per 2
 * FMAs, and the dot product issues no faster than an FMA on the CPUs
 * measured, AMD Zen 4.) */
#define TILE_BF16_DOT(MR)                                                                     \
    do {                                                                                      \
        __m512 acc0[MR], acc1[MR];                                                            \
        for (int i = 0; i < MR; i++) acc0[i] = acc1[i] = _mm512_setzero_ps();                 \
        const uint32_t *ak = a;                                                               \
        const uint16_t *bk = b;                                                               \
        for (int64_t kp = 0; kp < (K + 1) / 2; kp++, ak += MR, bk += 2 * PANEL) {             \
            __m512bh b0 = (__m512bh)_mm512_load_si512((const void *)bk);                      \
            __m512bh b1 = (__m512bh)_mm512_load_si512((const void *)(bk + PANEL));            \
            PREFETCH_NEXT(kp);                                                                \
            for (int i = 0; i < MR; i++) {                                                    \
                __m512bh ai = (__m512bh)_mm512_set1_epi32((int)ak[i]);                        \
                acc0[i] = _mm512_dpbf16_ps(acc0[i], ai, b0);                                  \
                acc1[i] = _mm512_dpbf16_ps(acc1[i], ai, b1);                                  \
            }                                                                                 \
        }                                                                                     \
        for (int i = 0; i < MR; i++) store_row(c + i * ldc, acc0[i], acc1[i], nc, alpha, beta); \
    } while (0)
static void tile_bf16_dot(int mr, int nc, int64_t K, const void *a_, const uint16_t *b, float *c, int64_t ldc,
                          float alpha, float beta, const char *prefetch) {
    const uint32_t *a = a_;
    CASES_1_TO_14(TILE_BF16_DOT, mr)
}

const fu_gemm_kernels fu_gemm_kernels_avx512bf16 = {
    .name = "avx512bf16", .mr_f32 = MR_F32, .mr_bf16 = MR_BF16_WIDENED, .mr_bf16_rounded = MR_BF16_DOT,
    .f32 = tile_f32, .a_exact = FU_GEMM_A_F32, .bf16_exact = tile_bf16_widened,
    .a_rounded = FU_GEMM_A_BF16X1, .bf16_rounded = tile_bf16_dot,
};
#else
const fu_gemm_kernels fu_gemm_kernels_avx512 = {
    .name = "avx512", .mr_f32 = MR_F32, .mr_bf16 = MR_BF16_WIDENED, .mr_bf16_rounded = MR_BF16_WIDENED,
    .f32 = tile_f32,
    .a_exact = FU_GEMM_A_F32, .bf16_exact = tile_bf16_widened,
    .a_rounded = FU_GEMM_A_F32_ROUNDED, .bf16_rounded = tile_bf16_widened,
};
#endif

#elif defined(__AVX2__) && defined(__FMA__)

/* 16 ymm registers: a tile is computed as two halves of 16 columns, each
 * with mr x 2 accumulators. */
enum { MR_F32 = 6, MR_BF16 = 5 };

static inline __attribute__((always_inline)) void store_half(float *c, __m256 acc0, __m256 acc1, int nc,
                                                             float alpha, float beta) {
    float r[16];
    __m256 va = _mm256_set1_ps(alpha);
    _mm256_storeu_ps(r, _mm256_mul_ps(va, acc0));
    _mm256_storeu_ps(r + 8, _mm256_mul_ps(va, acc1));
    for (int j = 0; j < nc && j < 16; j++) c[j] = beta != 0.0f ? beta * c[j] + r[j] : r[j];
}

#define TILE_F32_AVX2(MR)                                                                     \
    do {                                                                                      \
        for (int h = 0; h < 2 && 16 * h < nc; h++) {                                          \
            __m256 acc0[MR], acc1[MR];                                                        \
            for (int i = 0; i < MR; i++) acc0[i] = acc1[i] = _mm256_setzero_ps();             \
            const float *ak = a, *bk = b + 16 * h;                                            \
            for (int64_t k = 0; k < K; k++, ak += MR, bk += PANEL) {                          \
                __m256 b0 = _mm256_load_ps(bk), b1 = _mm256_load_ps(bk + 8);                  \
                for (int i = 0; i < MR; i++) {                                                \
                    __m256 ai = _mm256_broadcast_ss(ak + i);                                  \
                    acc0[i] = _mm256_fmadd_ps(ai, b0, acc0[i]);                               \
                    acc1[i] = _mm256_fmadd_ps(ai, b1, acc1[i]);                               \
                }                                                                             \
            }                                                                                 \
            for (int i = 0; i < MR; i++)                                                      \
                store_half(c + i * ldc + 16 * h, acc0[i], acc1[i], nc - 16 * h, alpha, beta); \
        }                                                                                     \
    } while (0)

static void tile_f32(int mr, int nc, int64_t K, const float *a, const float *b, float *c, int64_t ldc,
                     float alpha, float beta, const char *prefetch) {
    (void)prefetch;
    CASES_1_TO_14(TILE_F32_AVX2, mr)
}

/* A half panel of bf16 pairs is two 32-byte loads of 8 columns x 2 k:
 * the low halves (k) shifted up, the high halves (k+1) masked. */
#define TILE_BF16_AVX2(MR)                                                                    \
    do {                                                                                      \
        const __m256i high = _mm256_set1_epi32((int)0xffff0000u);                             \
        for (int h = 0; h < 2 && 16 * h < nc; h++) {                                          \
            __m256 acc0[MR], acc1[MR];                                                        \
            for (int i = 0; i < MR; i++) acc0[i] = acc1[i] = _mm256_setzero_ps();             \
            const float *ak = a;                                                              \
            const uint16_t *bk = b + 32 * h;                                                  \
            for (int64_t kp = 0; kp < (K + 1) / 2; kp++, ak += 2 * MR, bk += 2 * PANEL) {     \
                __m256i w0 = _mm256_load_si256((const __m256i *)bk);                          \
                __m256i w1 = _mm256_load_si256((const __m256i *)(bk + 16));                   \
                __m256 b0e = _mm256_castsi256_ps(_mm256_slli_epi32(w0, 16));                  \
                __m256 b1e = _mm256_castsi256_ps(_mm256_slli_epi32(w1, 16));                  \
                __m256 b0o = _mm256_castsi256_ps(_mm256_and_si256(w0, high));                 \
                __m256 b1o = _mm256_castsi256_ps(_mm256_and_si256(w1, high));                 \
                for (int i = 0; i < MR; i++) {                                                \
                    __m256 ae = _mm256_broadcast_ss(ak + i);                                  \
                    acc0[i] = _mm256_fmadd_ps(ae, b0e, acc0[i]);                              \
                    acc1[i] = _mm256_fmadd_ps(ae, b1e, acc1[i]);                              \
                    __m256 ao = _mm256_broadcast_ss(ak + MR + i);                             \
                    acc0[i] = _mm256_fmadd_ps(ao, b0o, acc0[i]);                              \
                    acc1[i] = _mm256_fmadd_ps(ao, b1o, acc1[i]);                              \
                }                                                                             \
            }                                                                                 \
            for (int i = 0; i < MR; i++)                                                      \
                store_half(c + i * ldc + 16 * h, acc0[i], acc1[i], nc - 16 * h, alpha, beta); \
        }                                                                                     \
    } while (0)

static void tile_bf16(int mr, int nc, int64_t K, const void *a_, const uint16_t *b, float *c, int64_t ldc,
                      float alpha, float beta, const char *prefetch) {
    const float *a = a_;
    (void)prefetch;
    CASES_1_TO_14(TILE_BF16_AVX2, mr)
}

const fu_gemm_kernels fu_gemm_kernels_avx2 = {
    .name = "avx2", .mr_f32 = MR_F32, .mr_bf16 = MR_BF16, .mr_bf16_rounded = MR_BF16, .f32 = tile_f32,
    .a_exact = FU_GEMM_A_F32, .bf16_exact = tile_bf16,
    .a_rounded = FU_GEMM_A_F32_ROUNDED, .bf16_rounded = tile_bf16,
};

#else /* portable C */

enum { MR_PORTABLE = 8 };

static void store_tile(int mr, int nc, float acc[][PANEL], float *c, int64_t ldc, float alpha, float beta) {
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nc; j++) {
            float r = alpha * acc[i][j];
            c[i * ldc + j] = beta != 0.0f ? beta * c[i * ldc + j] + r : r;
        }
}

static void tile_f32(int mr, int nc, int64_t K, const float *a, const float *b, float *c, int64_t ldc,
                     float alpha, float beta, const char *prefetch) {
    (void)prefetch;
    float acc[MR_PORTABLE][PANEL] = {{0}};
    for (int64_t k = 0; k < K; k++, a += mr, b += PANEL)
        for (int i = 0; i < mr; i++)
            for (int j = 0; j < PANEL; j++) acc[i][j] += a[i] * b[j];
    store_tile(mr, nc, acc, c, ldc, alpha, beta);
}

static void tile_bf16(int mr, int nc, int64_t K, const void *a_, const uint16_t *b, float *c, int64_t ldc,
                      float alpha, float beta, const char *prefetch) {
    const float *a = a_;
    (void)prefetch;
    float acc[MR_PORTABLE][PANEL] = {{0}};
    for (int64_t kp = 0; kp < (K + 1) / 2; kp++, a += 2 * mr, b += 2 * PANEL)
        for (int i = 0; i < mr; i++)
            for (int j = 0; j < PANEL; j++) {
                acc[i][j] += a[i] * fu_num_bf16_to_f32(b[2 * j]);
                acc[i][j] += a[mr + i] * fu_num_bf16_to_f32(b[2 * j + 1]);
            }
    store_tile(mr, nc, acc, c, ldc, alpha, beta);
}

const fu_gemm_kernels fu_gemm_kernels_portable = {
    .name = "portable", .mr_f32 = MR_PORTABLE, .mr_bf16 = MR_PORTABLE, .mr_bf16_rounded = MR_PORTABLE,
    .f32 = tile_f32,
    .a_exact = FU_GEMM_A_F32, .bf16_exact = tile_bf16,
    .a_rounded = FU_GEMM_A_F32_ROUNDED, .bf16_rounded = tile_bf16,
};

#endif
