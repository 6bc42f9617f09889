/* GEMM against a weight: C = alpha * A * B^T + beta * C, with A [M, K]
 * activations (a few to a few hundred rows), B [N, K] a linear layer's
 * weight and C [M, N], all row-major.
 *
 * The weight is packed once (at model load, fu_rt_pack_weight) into panels
 * of FU_GEMM_PANEL output columns, K-major inside a panel, so the
 * micro-kernels (runtime/gemm_kernels.c) stream it with aligned vector
 * loads and accumulate an MR x 32 tile of C in registers: an outer
 * product per k, with no horizontal reductions. A is packed per call into
 * tiles of MR rows, k-major, so a tile's broadcasts read one stream.
 *
 * Work is shared across cores by panels (fu_rt_parallel_for): each core
 * streams its own columns of the weight. Tiles are fixed by M and the
 * kernel alone and each C element is one kernel's sum over k in order, so
 * results are bit-identical for any thread count.
 *
 * The kernel variant is chosen at run time from the CPU (avx512bf16,
 * avx512, avx2, portable), or forced with FUSEC_GEMM=<variant>. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gemm.h"
#include "gemm_kernels.h"
#include "parallel.h"

#define PANEL FU_GEMM_PANEL

/* ---- variants ------------------------------------------------------------ */

typedef struct {
    const fu_gemm_kernels *kernels;
    int (*supported)(void);
} variant;

static int has_avx512bf16(void) {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512bf16");
}
static int has_avx512(void) {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
}
static int has_avx2(void) { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
static int always(void) { return 1; }

static const variant variants[] = {
    {&fu_gemm_kernels_avx512bf16, has_avx512bf16},
    {&fu_gemm_kernels_avx512, has_avx512},
    {&fu_gemm_kernels_avx2, has_avx2},
    {&fu_gemm_kernels_portable, always},
};
#define N_VARIANTS (int)(sizeof variants / sizeof variants[0])

static const fu_gemm_kernels *active;
static pthread_once_t choose_once = PTHREAD_ONCE_INIT;

static const variant *find_variant(const char *name) {
    for (int i = 0; name && i < N_VARIANTS; i++)
        if (strcmp(variants[i].kernels->name, name) == 0) return &variants[i];
    return NULL;
}

static void choose_variant(void) {
    __builtin_cpu_init();
    const char *forced = getenv("FUSEC_GEMM");
    const variant *v = find_variant(forced);
    if (forced && *forced && (!v || !v->supported()))
        fprintf(stderr, "fusec: FUSEC_GEMM=%.32s is not a variant this CPU runs; choosing by CPU\n", forced);
    if (v && v->supported()) {
        active = v->kernels;
        return;
    }
    for (int i = 0; i < N_VARIANTS; i++)
        if (variants[i].supported()) {
            active = variants[i].kernels;
            return;
        }
}

static const fu_gemm_kernels *kernels(void) {
    pthread_once(&choose_once, choose_variant);
    return active;
}

const char *fu_rt_gemm_variant(void) { return kernels()->name; }

const char *fu_rt_gemm_variant_at(int i) { return i >= 0 && i < N_VARIANTS ? variants[i].kernels->name : NULL; }

int fu_rt_gemm_variant_supported(const char *name) {
    __builtin_cpu_init();
    const variant *v = find_variant(name);
    return v && v->supported();
}

int fu_rt_gemm_use_variant(const char *name) {
    kernels();
    const variant *v = find_variant(name);
    if (!v || !v->supported()) return -1;
    active = v->kernels;
    return 0;
}

/* ---- per-thread scratch ---------------------------------------------------- */

/* Grows a thread's scratch buffer (kept between calls: a fresh allocation
 * of this size would be page-faulted in on every call). NULL when out of memory. */
static void *scratch(void **buf, size_t *cap, size_t bytes) {
    if (bytes > *cap) {
        size_t want = (bytes + 4095) / 4096 * 4096;
        void *p = aligned_alloc(64, want);
        if (!p) return NULL;
        free(*buf);
        *buf = p;
        *cap = want;
    }
    return *buf;
}

static _Thread_local void *a_buf, *b_buf;
static _Thread_local size_t a_cap, b_cap;

/* ---- packing B --------------------------------------------------------------- */

static int64_t even(int64_t k) { return (k + 1) / 2 * 2; }
static int64_t panels_of(int64_t N) { return (N + PANEL - 1) / PANEL; }

/* Elements of one packed panel. */
static int64_t panel_elems(int layout, int64_t K) { return layout == FU_RT_PACK_F32 ? K * PANEL : even(K) * PANEL; }

int64_t fu_rt_packed_bytes(int layout, int64_t N, int64_t K) {
    if ((layout != FU_RT_PACK_F32 && layout != FU_RT_PACK_BF16) || N <= 0 || K <= 0) return -1;
    int64_t elem = layout == FU_RT_PACK_F32 ? 4 : 2;
    return (panels_of(N) * panel_elems(layout, K) * elem + 63) / 64 * 64;
}

typedef struct {
    void *dst;
    const unsigned char *src;
    int src_is_bf16, src_transposed, layout;
    int64_t N, K;
} pack_b_job;

/* B[n][k] as float32 (0 in the padding), read bytewise: safetensors
 * offsets need not be aligned. */
static inline float b_value(const pack_b_job *j, int64_t n, int64_t k) {
    if (n >= j->N || k >= j->K) return 0.0f;
    int64_t i = j->src_transposed ? k * j->N + n : n * j->K + k;
    if (j->src_is_bf16) {
        uint16_t h;
        memcpy(&h, j->src + 2 * i, 2);
        return fu_rt_bf16_to_f32(h);
    }
    float f;
    memcpy(&f, j->src + 4 * i, 4);
    return f;
}

/* A whole float32 panel from a float32 source, without per-element checks
 * (the hot case of gemm_nt, which packs on every call). */
static void pack_f32_panel_fast(const pack_b_job *j, float *out, int64_t n0) {
    const float *src = (const float *)j->src;
    if (j->src_transposed) {   /* [K, N]: each k is 32 consecutive columns */
        for (int64_t k = 0; k < j->K; k++) memcpy(out + k * PANEL, src + k * j->N + n0, PANEL * sizeof(float));
        return;
    }
    for (int64_t k = 0; k < j->K; k++)   /* [N, K]: a column of 32 rows per k */
        for (int64_t c = 0; c < PANEL; c++) out[k * PANEL + c] = src[(n0 + c) * j->K + k];
}

static void pack_b_panels(void *arg, int64_t begin, int64_t end) {
    const pack_b_job *j = arg;
    int64_t elems = panel_elems(j->layout, j->K);
    int aligned = (uintptr_t)j->src % 4 == 0;
    for (int64_t p = begin; p < end; p++) {
        int64_t n0 = p * PANEL;
        if (j->layout == FU_RT_PACK_F32) {
            float *out = (float *)j->dst + p * elems;
            if (!j->src_is_bf16 && aligned && n0 + PANEL <= j->N) {
                pack_f32_panel_fast(j, out, n0);
                continue;
            }
            for (int64_t k = 0; k < j->K; k++)
                for (int64_t c = 0; c < PANEL; c++) out[k * PANEL + c] = b_value(j, n0 + c, k);
        } else {
            /* bfloat16 values pass through unchanged; float32 rounds */
            uint16_t *out = (uint16_t *)j->dst + p * elems;
            for (int64_t k = 0; k < even(j->K); k++)
                for (int64_t c = 0; c < PANEL; c++)
                    out[(k / 2) * 2 * PANEL + 2 * c + k % 2] = fu_rt_f32_to_bf16(b_value(j, n0 + c, k));
        }
    }
}

int fu_rt_pack_weight(void *dst, const void *src, int src_is_bf16, int src_transposed, int layout, int64_t N,
                      int64_t K) {
    int64_t bytes = fu_rt_packed_bytes(layout, N, K);
    if (bytes < 0) return -1;
    pack_b_job job = {dst, src, src_is_bf16, src_transposed, layout, N, K};
    int64_t panels = panels_of(N);
    /* the tail past the last panel (alignment padding) is zero too */
    int64_t used = panels * panel_elems(layout, K) * (layout == FU_RT_PACK_F32 ? 4 : 2);
    memset((char *)dst + used, 0, (size_t)(bytes - used));
    fu_rt_parallel_for(panels, 4, pack_b_panels, &job);
    return 0;
}

/* ---- packing A ----------------------------------------------------------------- */

/* Tiles of A: n_tiles tiles of `base` or base + 1 rows (the first `extra`
 * have one more), as even as the kernel's largest tile allows. */
typedef struct {
    int64_t n_tiles, base, extra;
} tiling;

static tiling tile_rows(int64_t M, int mr_max) {
    tiling t;
    t.n_tiles = (M + mr_max - 1) / mr_max;
    t.base = M / t.n_tiles;
    t.extra = M % t.n_tiles;
    return t;
}
static int64_t tile_first_row(const tiling *t, int64_t i) { return i * t->base + (i < t->extra ? i : t->extra); }
static int tile_mr(const tiling *t, int64_t i) { return (int)(t->base + (i < t->extra)); }


typedef struct {
    const float *A;
    void *out;
    int64_t K, K2;
    tiling t;
    fu_gemm_a_format format;
    int64_t row_bytes;   /* packed bytes per row of A */
} pack_a_job;

static void pack_a_tiles(void *arg, int64_t begin, int64_t end) {
    const pack_a_job *j = arg;
    for (int64_t ti = begin; ti < end; ti++) {
        int64_t r0 = tile_first_row(&j->t, ti);
        int mr = tile_mr(&j->t, ti);
        char *tile = (char *)j->out + r0 * j->row_bytes;
        if (j->format == FU_GEMM_A_F32 || j->format == FU_GEMM_A_F32_ROUNDED) {
            float *o = (float *)tile;
            int round = j->format == FU_GEMM_A_F32_ROUNDED;
            for (int i = 0; i < mr; i++) {
                const float *row = j->A + (r0 + i) * j->K;
                if (round)
                    for (int64_t k = 0; k < j->K; k++) o[k * mr + i] = fu_rt_bf16_to_f32(fu_rt_f32_to_bf16(row[k]));
                else
                    for (int64_t k = 0; k < j->K; k++) o[k * mr + i] = row[k];
                for (int64_t k = j->K; k < j->K2; k++) o[k * mr + i] = 0.0f;
            }
        } else {   /* bfloat16 pairs, rounded to nearest even */
            uint32_t *o = (uint32_t *)tile;
            for (int i = 0; i < mr; i++) {
                const float *row = j->A + (r0 + i) * j->K;
                for (int64_t kp = 0; kp < j->K2 / 2; kp++) {
                    uint32_t even_k = fu_rt_f32_to_bf16(row[2 * kp]);
                    uint32_t odd_k = 2 * kp + 1 < j->K ? fu_rt_f32_to_bf16(row[2 * kp + 1]) : 0;
                    o[kp * mr + i] = odd_k << 16 | even_k;
                }
            }
        }
    }
}

/* ---- the product ---------------------------------------------------------------- */

typedef struct {
    const void *a;          /* packed A */
    int64_t a_row_bytes;
    tiling t;
    fu_gemm_tile_f32_fn tile_f32;    /* exactly one of these two */
    fu_gemm_tile_bf16_fn tile_bf16;
    const void *b;          /* packed B */
    int64_t panels, panel_bytes;
    float *C;
    int64_t N, K, K2;   /* K2: K as packed (even for bfloat16 pairs) */
    float alpha, beta;
} product_job;

/* Panels [begin, end): each against every tile of A, so a panel is read
 * from memory once and from cache by the other tiles; K in blocks of
 * K_BLOCK (even: whole bfloat16 pairs), so the block of the panel the
 * tiles share stays in L2 even when K is long. */
enum { K_BLOCK = 1024 };
static void product_panels(void *arg, int64_t begin, int64_t end) {
    const product_job *j = arg;
    /* bytes of A (per row) and of a panel per unit of k */
    int64_t a_per_k = j->a_row_bytes / j->K2, b_per_k = j->panel_bytes / j->K2;
    for (int64_t p = begin; p < end; p++) {
        const char *panel = (const char *)j->b + p * j->panel_bytes;
        int nc = (int)(j->N - p * PANEL < PANEL ? j->N - p * PANEL : PANEL);
        for (int64_t k0 = 0; k0 < j->K; k0 += K_BLOCK) {
            int64_t kc = j->K - k0 < K_BLOCK ? j->K - k0 : K_BLOCK;
            /* later blocks add to what the earlier ones stored */
            float beta = k0 == 0 ? j->beta : 1.0f;
            const char *b = panel + k0 * b_per_k;
            /* every tile pulls part of the next panel towards the cache */
            const char *next = p + 1 < j->panels ? b + j->panel_bytes : NULL;
            for (int64_t ti = 0; ti < j->t.n_tiles; ti++) {
                int64_t r0 = tile_first_row(&j->t, ti);
                int mr = tile_mr(&j->t, ti);
                const char *a = (const char *)j->a + r0 * j->a_row_bytes + k0 * mr * a_per_k;
                float *c = j->C + r0 * j->N + p * PANEL;
                if (j->tile_f32)
                    j->tile_f32(mr, nc, kc, (const float *)a, (const float *)b, c, j->N, j->alpha, beta, next);
                else
                    j->tile_bf16(mr, nc, kc, a, (const uint16_t *)b, c, j->N, j->alpha, beta, next);
            }
        }
    }
}

/* Only worth waking a second core when there is enough work to share. */
static int worth_threads(int64_t M, int64_t N, int64_t K) { return M * N * K >= (int64_t)1 << 20; }

/* Packs A for the kernel, then runs the panels. Returns -1 when scratch
 * memory runs out (C is then untouched). */
static int product(const float *A, const void *Bp, int layout, float *C, int64_t M, int64_t N, int64_t K,
                   float alpha, float beta, int round_a) {
    if (M <= 0 || N <= 0) return 0;
    const fu_gemm_kernels *kern = kernels();
    product_job job = {0};
    pack_a_job pa = {0};
    pa.A = A;
    pa.K = K;
    if (layout == FU_RT_PACK_F32) {
        pa.format = round_a ? FU_GEMM_A_F32_ROUNDED : FU_GEMM_A_F32;
        pa.K2 = K;
        pa.t = tile_rows(M, kern->mr_f32);
        job.tile_f32 = kern->f32;
    } else {
        pa.format = round_a ? kern->a_rounded : kern->a_exact;
        pa.K2 = even(K);
        pa.t = tile_rows(M, round_a ? kern->mr_bf16_rounded : kern->mr_bf16);
        job.tile_bf16 = round_a ? kern->bf16_rounded : kern->bf16_exact;
    }
    switch (pa.format) {
    case FU_GEMM_A_F32:
    case FU_GEMM_A_F32_ROUNDED: pa.row_bytes = pa.K2 * 4; break;
    case FU_GEMM_A_BF16X1: pa.row_bytes = pa.K2 / 2 * 4; break;
    }
    if (!(pa.out = scratch(&a_buf, &a_cap, (size_t)(M * pa.row_bytes)))) return -1;
    int threads = worth_threads(M, N, K);
    if (threads) fu_rt_parallel_for(pa.t.n_tiles, 1, pack_a_tiles, &pa);
    else pack_a_tiles(&pa, 0, pa.t.n_tiles);

    job.a = pa.out;
    job.a_row_bytes = pa.row_bytes;
    job.t = pa.t;
    job.b = Bp;
    job.panel_bytes = panel_elems(layout, K) * (layout == FU_RT_PACK_F32 ? 4 : 2);
    job.C = C;
    job.N = N;
    job.K = K;
    job.K2 = pa.K2;
    job.alpha = alpha;
    job.beta = beta;
    job.panels = panels_of(N);
    /* One contiguous run of panels per thread: each core streams its part
     * of the weight front to back, prefetching as it goes. */
    int64_t per_thread = (job.panels + fu_rt_threads() - 1) / fu_rt_threads();
    if (threads) fu_rt_parallel_for(job.panels, per_thread, product_panels, &job);
    else product_panels(&job, 0, job.panels);
    return 0;
}

/* Without scratch memory for packed A: the same sums, one element at a
 * time, reading B from its panels (Bp) or in place (B, [N, K]). */
static void product_slow(const float *A, const void *Bp, const void *B, int layout, float *C, int64_t M, int64_t N,
                         int64_t K, float alpha, float beta, int round_a) {
    pack_b_job in_place = {NULL, B, layout == FU_RT_PACK_BF16, 0, layout, N, K};
    int64_t panel_bytes = panel_elems(layout, K) * (layout == FU_RT_PACK_F32 ? 4 : 2);
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            const char *panel = B ? NULL : (const char *)Bp + (n / PANEL) * panel_bytes;
            float dot = 0;
            for (int64_t k = 0; k < K; k++) {
                float a = A[m * K + k], b;
                if (round_a) a = fu_rt_bf16_to_f32(fu_rt_f32_to_bf16(a));
                if (B) b = b_value(&in_place, n, k);
                else if (layout == FU_RT_PACK_F32) b = ((const float *)panel)[k * PANEL + n % PANEL];
                else b = fu_rt_bf16_to_f32(((const uint16_t *)panel)[(k / 2) * 2 * PANEL + 2 * (n % PANEL) + k % 2]);
                dot += a * b;
            }
            C[m * N + n] = beta == 0.0f ? alpha * dot : alpha * dot + beta * C[m * N + n];
        }
}

void fu_rt_gemm_packed_f32(const float *A, const float *Bp, float *C, int64_t M, int64_t N, int64_t K,
                           float alpha, float beta) {
    if (product(A, Bp, FU_RT_PACK_F32, C, M, N, K, alpha, beta, 0) != 0)
        product_slow(A, Bp, NULL, FU_RT_PACK_F32, C, M, N, K, alpha, beta, 0);
}

void fu_rt_gemm_packed_bf16(const float *A, const uint16_t *Bp, float *C, int64_t M, int64_t N, int64_t K,
                            float alpha, float beta, int round_activations) {
    if (product(A, Bp, FU_RT_PACK_BF16, C, M, N, K, alpha, beta, round_activations) != 0)
        product_slow(A, Bp, NULL, FU_RT_PACK_BF16, C, M, N, K, alpha, beta, round_activations);
}

/* ---- weights not packed ahead of time --------------------------------------------- */

/* B [N, K] packed now into the thread's scratch, then the packed product:
 * for weights the compiler could not pack (computed at run time, or inline
 * in the model). */
static void gemm_nt(const float *A, const void *B, int b_is_bf16, float *C, int64_t M, int64_t N, int64_t K,
                    float alpha, float beta) {
    if (M <= 0 || N <= 0) return;
    int layout = b_is_bf16 ? FU_RT_PACK_BF16 : FU_RT_PACK_F32;
    int64_t bytes = fu_rt_packed_bytes(layout, N, K);
    void *packed = bytes > 0 ? scratch(&b_buf, &b_cap, (size_t)bytes) : NULL;
    if (packed && fu_rt_pack_weight(packed, B, b_is_bf16, 0, layout, N, K) == 0 &&
        product(A, packed, layout, C, M, N, K, alpha, beta, 0) == 0)
        return;
    product_slow(A, NULL, B, layout, C, M, N, K, alpha, beta, 0);
}

void fu_rt_gemm_nt_f32(const float *A, const float *B, float *C, int64_t M, int64_t N, int64_t K, float alpha,
                       float beta) {
    gemm_nt(A, B, 0, C, M, N, K, alpha, beta);
}

void fu_rt_gemm_nt_bf16(const float *A, const uint16_t *B, float *C, int64_t M, int64_t N, int64_t K,
                        float alpha, float beta) {
    gemm_nt(A, B, 1, C, M, N, K, alpha, beta);
}
