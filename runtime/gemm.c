/* Skinny GEMM against a weight in [out, in] layout: C = alpha * A * B^T + beta * C.
 *
 * The router's matmuls multiply 15-65 activation rows by weights of
 * 1-9 M parameters. General-purpose sgemm repacks B on every call (the
 * weight is used once per forward), so at these shapes it spends as long
 * copying as multiplying. Here B is read in place, as dot products: each
 * tile of MR rows of A and NR rows of B keeps MR x NR vector accumulators
 * over K, so every B row that enters the cache is used by every A row
 * before it leaves. A (at most a few hundred KB) stays in L2.
 *
 * Work is split over rows of B (fu_rt_parallel_for), so each core streams
 * its own part of the weight. The summation order is fixed by the tile shape, never by
 * the thread count, so results are bit-identical from run to run. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "fusec_kernels.h"
#include "parallel.h"

#ifdef __AVX512F__
#include <immintrin.h>
#endif

/* Tile: MR rows of A x NR rows of B = 24 vector accumulators, leaving
 * registers for the NR B vectors and one A vector (32 zmm in all). */
enum { MR = 6, NR = 4 };

#ifdef __AVX512F__

/* 16 bfloat16 -> 16 float32 (exact: bf16 is the top half of a float). */
static inline __m512 load_bf16x16(const uint16_t *p) {
    __m256i h = _mm256_loadu_si256((const __m256i *)p);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
static inline __m512 load_bf16x16_masked(const uint16_t *p, __mmask16 m) {
    __m256i h = _mm256_maskz_loadu_epi16(m, p);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* The sums of four vectors as {sum a, sum b, sum c, sum d}: one shuffle
 * tree for all four instead of four separate horizontal reductions. */
static inline __m128 reduce4(__m512 a, __m512 b, __m512 c, __m512 d) {
    /* per 128-bit lane: [a0+a2, b0+b2, a1+a3, b1+b3] and the same for c, d */
    __m512 ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
    __m512 cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
    /* per 128-bit lane: [a, b, c, d] partial sums */
    __m512 abcd = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(ab), _mm512_castps_pd(cd))),
                                _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(ab), _mm512_castps_pd(cd))));
    __m256 half = _mm256_add_ps(_mm512_castps512_ps256(abcd), _mm512_extractf32x8_ps(abcd, 1));
    return _mm_add_ps(_mm256_castps256_ps128(half), _mm256_extractf128_ps(half, 1));
}

/* One mr x nr tile (mr <= MR, nr <= NR; constants after inlining). A is
 * packed as [K/16 blocks][MR rows][16] with zero padding (pack_a), so its
 * loads are sequential; B rows are read in place, the last partial block of
 * each row with a masked load. */
#define DEFINE_TILE(NAME, BTYPE, LOADB, LOADB_MASKED)                                                 \
    static inline __attribute__((always_inline)) void NAME(                                          \
        int mr, int nr, const float *Ap, const BTYPE *B, float *C, int64_t K, int64_t N, float alpha, \
        float beta, const BTYPE *prefetch) {                                                           \
        __m512 acc[MR][NR];                                                                            \
        for (int i = 0; i < mr; i++)                                                                   \
            for (int j = 0; j < nr; j++) acc[i][j] = _mm512_setzero_ps();                              \
        int64_t k = 0;                                                                                 \
        for (; k + 16 <= K; k += 16, Ap += MR * 16) {                                                  \
            __m512 b[NR];                                                                              \
            /* Keep every vector in a register: folded into each FMA as a     \
             * memory operand it would be loaded again per use, and loads,    \
             * not FMAs, would bound the loop. */                             \
            for (int j = 0; j < nr; j++) {                                                             \
                b[j] = LOADB(B + j * K + k);                                                           \
                __asm__("" : "+v"(b[j]));                                                              \
                if (prefetch) _mm_prefetch((const char *)(prefetch + j * K + k), _MM_HINT_T0);         \
            }                                                                                          \
            for (int i = 0; i < mr; i++) {                                                             \
                __m512 a = _mm512_loadu_ps(Ap + i * 16);                                               \
                __asm__("" : "+v"(a));                                                                 \
                for (int j = 0; j < nr; j++) acc[i][j] = _mm512_fmadd_ps(a, b[j], acc[i][j]);          \
            }                                                                                          \
        }                                                                                              \
        if (k < K) {                                                                                   \
            __mmask16 m = (__mmask16)((1u << (K - k)) - 1);                                            \
            __m512 b[NR];                                                                              \
            for (int j = 0; j < nr; j++) b[j] = LOADB_MASKED(B + j * K + k, m);                        \
            for (int i = 0; i < mr; i++) {                                                             \
                __m512 a = _mm512_loadu_ps(Ap + i * 16);                                               \
                for (int j = 0; j < nr; j++) acc[i][j] = _mm512_fmadd_ps(a, b[j], acc[i][j]);          \
            }                                                                                          \
        }                                                                                              \
        for (int i = 0; i < mr; i++) {                                                                 \
            if (nr == 4) { /* a full row of the tile: one combined reduction */                        \
                __m128 dot = _mm_mul_ps(_mm_set1_ps(alpha),                                            \
                                        reduce4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]));          \
                if (beta != 0.0f) dot = _mm_fmadd_ps(_mm_set1_ps(beta), _mm_loadu_ps(C + i * N), dot);  \
                _mm_storeu_ps(C + i * N, dot);                                                         \
                continue;                                                                              \
            }                                                                                          \
            for (int j = 0; j < nr; j++) {                                                             \
                float dot = alpha * _mm512_reduce_add_ps(acc[i][j]);                                   \
                float *c = C + i * N + j;                                                              \
                *c = beta == 0.0f ? dot : dot + beta * *c;                                             \
            }                                                                                          \
        }                                                                                              \
    }

#define LOAD_F32(p) _mm512_loadu_ps(p)
#define LOAD_F32_MASKED(p, m) _mm512_maskz_loadu_ps(m, p)
DEFINE_TILE(tile_f32, float, LOAD_F32, LOAD_F32_MASKED)
DEFINE_TILE(tile_bf16, uint16_t, load_bf16x16, load_bf16x16_masked)

#else /* portable fallback: 16-lane partial sums that gcc vectorises */

static inline float bf16_value(uint16_t h) { return fu_rt_bf16_to_f32(h); }
static inline float f32_value(float f) { return f; }

#define DEFINE_TILE(NAME, BTYPE, VALUE)                                                                \
    static inline void NAME(int mr, int nr, const float *Ap, const BTYPE *B, float *C, int64_t K,       \
                            int64_t N, float alpha, float beta, const BTYPE *prefetch) {               \
        (void)prefetch;                                                                                \
        for (int i = 0; i < mr; i++)                                                                   \
            for (int j = 0; j < nr; j++) {                                                             \
                float lanes[16] = {0};                                                                 \
                const float *a = Ap + i * 16;                                                          \
                for (int64_t k = 0; k < K; k += 16, a += MR * 16)                                      \
                    for (int l = 0; l < 16 && k + l < K; l++) lanes[l] += a[l] * VALUE(B[j * K + k + l]); \
                float dot = 0;                                                                         \
                for (int l = 0; l < 16; l++) dot += lanes[l];                                          \
                float *c = C + i * N + j;                                                              \
                *c = beta == 0.0f ? alpha * dot : alpha * dot + beta * *c;                             \
            }                                                                                          \
    }
DEFINE_TILE(tile_f32, float, f32_value)
DEFINE_TILE(tile_bf16, uint16_t, bf16_value)

#endif

/* Calls TILE with constant (mr, nr) so the accumulators stay in registers. */
#define DISPATCH(TILE, mr, nr, ...)                                         \
    switch ((mr) * 8 + (nr)) {                                              \
    case 1 * 8 + 1: TILE(1, 1, __VA_ARGS__); break;                         \
    case 1 * 8 + 2: TILE(1, 2, __VA_ARGS__); break;                         \
    case 1 * 8 + 3: TILE(1, 3, __VA_ARGS__); break;                         \
    case 1 * 8 + 4: TILE(1, 4, __VA_ARGS__); break;                         \
    case 2 * 8 + 1: TILE(2, 1, __VA_ARGS__); break;                         \
    case 2 * 8 + 2: TILE(2, 2, __VA_ARGS__); break;                         \
    case 2 * 8 + 3: TILE(2, 3, __VA_ARGS__); break;                         \
    case 2 * 8 + 4: TILE(2, 4, __VA_ARGS__); break;                         \
    case 3 * 8 + 1: TILE(3, 1, __VA_ARGS__); break;                         \
    case 3 * 8 + 2: TILE(3, 2, __VA_ARGS__); break;                         \
    case 3 * 8 + 3: TILE(3, 3, __VA_ARGS__); break;                         \
    case 3 * 8 + 4: TILE(3, 4, __VA_ARGS__); break;                         \
    case 4 * 8 + 1: TILE(4, 1, __VA_ARGS__); break;                         \
    case 4 * 8 + 2: TILE(4, 2, __VA_ARGS__); break;                         \
    case 4 * 8 + 3: TILE(4, 3, __VA_ARGS__); break;                         \
    case 4 * 8 + 4: TILE(4, 4, __VA_ARGS__); break;                         \
    case 5 * 8 + 1: TILE(5, 1, __VA_ARGS__); break;                         \
    case 5 * 8 + 2: TILE(5, 2, __VA_ARGS__); break;                         \
    case 5 * 8 + 3: TILE(5, 3, __VA_ARGS__); break;                         \
    case 5 * 8 + 4: TILE(5, 4, __VA_ARGS__); break;                         \
    case 6 * 8 + 1: TILE(6, 1, __VA_ARGS__); break;                         \
    case 6 * 8 + 2: TILE(6, 2, __VA_ARGS__); break;                         \
    case 6 * 8 + 3: TILE(6, 3, __VA_ARGS__); break;                         \
    default: TILE(6, 4, __VA_ARGS__); break;                                \
    }

/* Only worth waking a second core when there is enough work to share. */
static int worth_threads(int64_t M, int64_t N, int64_t K) { return M * N * K >= (int64_t)1 << 20; }

/* Packs A [M, K] as tiles of MR rows: [tile][K/16 blocks][MR][16], zero
 * padded, so a tile's A loads walk one contiguous stream. Returns NULL when
 * out of memory. */
static float *pack_a(const float *A, int64_t M, int64_t K) {
    int64_t tiles = (M + MR - 1) / MR, blocks = (K + 15) / 16;
    float *p = calloc((size_t)(tiles * blocks * MR * 16), sizeof(float));
    if (!p) return NULL;
    for (int64_t m = 0; m < M; m++) {
        float *tile = p + (m / MR) * blocks * MR * 16 + (m % MR) * 16;
        for (int64_t k = 0; k < K; k++) tile[(k / 16) * MR * 16 + k % 16] = A[m * K + k];
    }
    return p;
}

/* One call's operands, shared by the threads; a range is of B row blocks. */
typedef struct {
    const float *Ap;
    const void *B;
    float *C;
    int64_t M, N, K, tile_floats;
    float alpha, beta;
} gemm_job;

/* Blocks of B rows computed against one A row tile before moving to the
 * next tile: the A tile then stays in L1 while the group's B rows (at most
 * a few hundred KB) are re-read from L2, instead of both streaming through
 * L1 for every block. */
enum { BLOCK_GROUP = 8 };

#define DEFINE_RANGE(RANGE, BTYPE, TILE)                                                               \
    static void RANGE(void *arg, int64_t nb_begin, int64_t nb_end) {                                   \
        const gemm_job *j = arg;                                                                       \
        const BTYPE *B = j->B;                                                                         \
        for (int64_t g0 = nb_begin; g0 < nb_end; g0 += BLOCK_GROUP) {                                  \
            int64_t g1 = g0 + BLOCK_GROUP < nb_end ? g0 + BLOCK_GROUP : nb_end;                         \
            for (int64_t m0 = 0; m0 < j->M; m0 += MR) {                                                \
                int mr = (int)(j->M - m0 < MR ? j->M - m0 : MR);                                         \
                for (int64_t nb = g0; nb < g1; nb++) {                                                 \
                    int64_t n0 = nb * NR;                                                              \
                    int nr = (int)(j->N - n0 < NR ? j->N - n0 : NR);                                   \
                    /* The first row tile pulls the next block of B towards \
                     * the cache while this one is computed: a few streams  \
                     * of plain loads leave most of the memory bandwidth     \
                     * unused. */                                            \
                    const BTYPE *next = m0 == 0 && nb + 1 < nb_end ? B + (n0 + NR) * j->K : NULL;      \
                    DISPATCH(TILE, mr, nr, j->Ap + (m0 / MR) * j->tile_floats, B + n0 * j->K,     \
                             j->C + m0 * j->N + n0, j->K, j->N, j->alpha, j->beta, next)               \
                }                                                                                      \
            }                                                                                          \
        }                                                                                              \
    }
DEFINE_RANGE(range_f32, float, tile_f32)
DEFINE_RANGE(range_bf16, uint16_t, tile_bf16)

/* Blocks of B rows per claimed chunk: big enough to amortise the claim,
 * small enough to balance two threads. */
enum { BLOCKS_PER_CHUNK = 16 };

#define DEFINE_GEMM(NAME, BTYPE, RANGE)                                                                \
    void NAME(const float *A, const BTYPE *B, float *C, int64_t M, int64_t N, int64_t K, float alpha,  \
              float beta) {                                                                            \
        if (M <= 0 || N <= 0) return;                                                                  \
        float *Ap = pack_a(A, M, K);                                                                   \
        if (!Ap) { /* no memory for the packed copy: compute from A directly */                        \
            for (int64_t n = 0; n < N; n++)                                                            \
                for (int64_t m = 0; m < M; m++) {                                                      \
                    float dot = 0;                                                                     \
                    for (int64_t k = 0; k < K; k++) dot += A[m * K + k] * (float)B_VALUE(B[n * K + k]); \
                    C[m * N + n] = beta == 0.0f ? alpha * dot : alpha * dot + beta * C[m * N + n];      \
                }                                                                                      \
            return;                                                                                    \
        }                                                                                              \
        gemm_job job = {Ap, B, C, M, N, K, (K + 15) / 16 * MR * 16, alpha, beta};                      \
        int64_t n_blocks = (N + NR - 1) / NR;                                                          \
        if (worth_threads(M, N, K)) fu_rt_parallel_for(n_blocks, BLOCKS_PER_CHUNK, RANGE, &job);       \
        else RANGE(&job, 0, n_blocks);                                                                 \
        free(Ap);                                                                                      \
    }

#define B_VALUE(x) (x)
DEFINE_GEMM(fu_rt_gemm_nt_f32, float, range_f32)
#undef B_VALUE
#define B_VALUE(x) fu_rt_bf16_to_f32(x)
DEFINE_GEMM(fu_rt_gemm_nt_bf16, uint16_t, range_bf16)
#undef B_VALUE
