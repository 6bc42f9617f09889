/* fusec runtime kernels (declared in fusec_kernels.h), built by gcc -O3
 * -march=native into libfusec_rt.so.
 *
 * Every kernel is a pure function of its arguments: no global mutable state,
 * so generated code may call them from several threads at once. Hot inner
 * loops are written as plain counted loops over contiguous data (with
 * independent partial accumulators) so gcc vectorises them without
 * -ffast-math. */
#include <math.h>
#include <string.h>
#include <limits.h>
#include <cblas.h>

#include "fault.h"
#include "fusec_kernels.h"
#include "parallel.h"
#include "simd.h"

/* Largest rank a kernel walks. The IR caps ranks at FU_MAX_RANK (8). */
#define RT_MAX_RANK 16

/* Work below which a kernel stays on the calling thread (fu_rt_grain):
 * waking a second core costs more than it saves. Measured with
 * bench/bench_parallel.c, and for copies (the router's Transposes, 120 KB
 * at 15 tokens, 260-520 KB at 65) with `fusec run --profile-ops`, since a
 * split copy leaves its output spread over both cores' caches for the next
 * node. Each split computes every output element in one call with the same
 * arithmetic, so results are bit-identical for any thread count. */
#define CONVERT_MIN_PARALLEL_ELEMS 49152
#define COPY_MIN_PARALLEL_BYTES 196608
#define GATHER_MIN_PARALLEL_BYTES 131072
#define REDUCE_MIN_PARALLEL_ELEMS 32768
#define SOFTMAX_MIN_PARALLEL_ELEMS 2048

/* 8-lane vectors for the hand-vectorised reductions. The vectors never
 * cross a non-inlined call, so the -Wpsabi note about their ABI is moot. */
#pragma GCC diagnostic ignored "-Wpsabi"
typedef float vf8 __attribute__((vector_size(32)));
typedef int32_t vi8 __attribute__((vector_size(32)));
typedef uint32_t vu8 __attribute__((vector_size(32)));

/* ==== half precision ===================================================== */

/* The conversions themselves are in numerics.h; these are the out-of-line
 * symbols generated code calls. */
float fu_rt_f16_to_f32(uint16_t h) { return fu_num_f16_to_f32(h); }

uint16_t fu_rt_f32_to_f16(float f) { return fu_num_f32_to_f16(f); }

/* ==== matmul ============================================================== */

static void scale_matrix(float *C, int64_t M, int64_t N, float beta) {
    int64_t n = M * N;
    if (beta == 0.0f) {
        memset(C, 0, (size_t)n * sizeof(float));
    } else if (beta != 1.0f) {
        for (int64_t i = 0; i < n; i++) C[i] *= beta;
    }
}

/* C = alpha op(A) op(B) + beta C without BLAS, for sizes beyond int. */
static void matmul_naive(const float *A, const float *B, float *C, int64_t M, int64_t N,
                         int64_t K, int trans_a, int trans_b, float alpha, float beta) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            float acc = 0.0f;
            for (int64_t k = 0; k < K; k++)
                acc += (trans_a ? A[k * M + i] : A[i * K + k]) *
                       (trans_b ? B[j * K + k] : B[k * N + j]);
            float prev = beta == 0.0f ? 0.0f : beta * C[i * N + j];
            C[i * N + j] = alpha * acc + prev;
        }
}

typedef struct {
    void *dst;
    const void *src;
    int kind;
} convert_job;

static void convert_range(void *arg, int64_t begin, int64_t end);

void fu_rt_convert(void *dst, const void *src, int64_t n, int kind) {
    convert_job job = {dst, src, kind};
    /* whole weights in bare graphs: memory bound, so both cores help */
    fu_rt_parallel_for(n, fu_rt_grain(n, 1, CONVERT_MIN_PARALLEL_ELEMS), convert_range, &job);
}

static void convert_range(void *arg, int64_t begin, int64_t end) {
    const convert_job *j = arg;
    int64_t n = end - begin;
    int kind = j->kind;
    void *dst = (char *)j->dst + begin * (kind == FU_RT_CONVERT_BF16_TO_F32 || kind == FU_RT_CONVERT_F16_TO_F32 ? 4 : 2);
    const void *src = (const char *)j->src + begin * (kind == FU_RT_CONVERT_BF16_TO_F32 || kind == FU_RT_CONVERT_F16_TO_F32 ? 2 : 4);
    switch (kind) {
    case FU_RT_CONVERT_BF16_TO_F32:
        for (int64_t i = 0; i < n; i++) ((float *)dst)[i] = fu_rt_bf16_to_f32(((const uint16_t *)src)[i]);
        break;
    case FU_RT_CONVERT_F16_TO_F32:
        for (int64_t i = 0; i < n; i++) ((float *)dst)[i] = fu_rt_f16_to_f32(((const uint16_t *)src)[i]);
        break;
    case FU_RT_CONVERT_F32_TO_BF16:
        for (int64_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = fu_rt_f32_to_bf16(((const float *)src)[i]);
        break;
    default:
        for (int64_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = fu_rt_f32_to_f16(((const float *)src)[i]);
        break;
    }
}

/* Up to this many rows, fu_rt_gemm_nt_f32 beats repacking sgemm. */
#define SKINNY_MAX_ROWS 256

void fu_rt_matmul_f32(const float *A, const float *B, float *C, int64_t batch, int64_t M,
                      int64_t N, int64_t K, int64_t stride_a, int64_t stride_b,
                      int64_t stride_c, int trans_a, int trans_b, float alpha, float beta) {
    if (batch <= 0 || M <= 0 || N <= 0) return;
    if (K <= 0) {
        /* op(A) op(B) is all zeros; BLAS rejects a zero leading dimension */
        for (int64_t b = 0; b < batch; b++) scale_matrix(C + b * stride_c, M, N, beta);
        return;
    }
    /* A shared B with row-stacked A and C is one big [batch*M, K] x [K, N]. */
    if (batch > 1 && stride_b == 0 && !trans_a && stride_a == M * K && stride_c == M * N &&
        batch * M <= INT_MAX) {
        M *= batch;
        batch = 1;
    }
    /* Few rows against a weight in [N, K] layout: read it in place rather
     * than have sgemm repack it on every call (runtime/gemm.c). */
    if (batch == 1 && trans_b && !trans_a && M <= SKINNY_MAX_ROWS) {
        fu_rt_gemm_nt_f32(A, B, C, M, N, K, alpha, beta);
        return;
    }
    if (M > INT_MAX || N > INT_MAX || K > INT_MAX) {
        /* BLAS takes int sizes; such shapes only arise from very thin
         * matrices, so a plain loop is acceptable. */
        for (int64_t b = 0; b < batch; b++)
            matmul_naive(A + b * stride_a, B + b * stride_b, C + b * stride_c, M, N, K, trans_a,
                         trans_b, alpha, beta);
        return;
    }
    int lda = (int)(trans_a ? M : K);
    int ldb = (int)(trans_b ? K : N);
    int ldc = (int)N;
    for (int64_t b = 0; b < batch; b++) {
        cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                    trans_b ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K, alpha,
                    A + b * stride_a, lda, B + b * stride_b, ldb, beta, C + b * stride_c, ldc);
    }
}

/* ==== reductions ========================================================== */

/* Horizontal helpers over 8-float vectors (GCC vector extensions: gcc
 * will not reorder a scalar float reduction without -ffast-math, so the
 * partial sums are spelled out as vectors). */
FU_RT_SIMD_INLINE vf8 load8(const float *p) {
    vf8 v;
    memcpy(&v, p, sizeof v);
    return v;
}
FU_RT_SIMD_INLINE void store8(float *p, vf8 v) { memcpy(p, &v, sizeof v); }
FU_RT_SIMD_INLINE vf8 splat8(float f) { return (vf8){f, f, f, f, f, f, f, f}; }
FU_RT_SIMD_INLINE vf8 select8(vi8 mask, vf8 a, vf8 b) {   /* mask ? a : b per lane */
    return (vf8)(((vi8)a & mask) | ((vi8)b & ~mask));
}
FU_RT_SIMD_INLINE float hsum8(vf8 v) {
    return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

/* Sum of n contiguous floats: 16 partial sums over blocks of at most 4096,
 * blocks combined pairwise, so the rounding error grows ~log n. */
FU_RT_SIMD_ENTRY static float sum_contiguous(const float *x, int64_t n) {
    if (n > 4096) {
        int64_t half = (n / 2 + 15) & ~(int64_t)15;
        return sum_contiguous(x, half) + sum_contiguous(x + half, n - half);
    }
    vf8 acc0 = splat8(0.0f), acc1 = splat8(0.0f);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 += load8(x + i);
        acc1 += load8(x + i + 8);
    }
    float s = hsum8(acc0 + acc1);
    for (; i < n; i++) s += x[i];
    return s;
}

/* Max of n contiguous floats (-inf when n == 0); NaN if any element is NaN,
 * like numpy. */
FU_RT_SIMD_INLINE float max_contiguous(const float *x, int64_t n) {
    vf8 m0 = splat8(-FU_RT_INF), m1 = m0;
    vi8 nan0 = {0}, nan1 = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        vf8 v0 = load8(x + i), v1 = load8(x + i + 8);
        nan0 |= v0 != v0;
        nan1 |= v1 != v1;
        m0 = select8(v0 > m0, v0, m0);
        m1 = select8(v1 > m1, v1, m1);
    }
    m0 = select8(m1 > m0, m1, m0);
    nan0 |= nan1;
    float m = -FU_RT_INF;
    int has_nan = 0;
    for (int l = 0; l < 8; l++) {
        m = m0[l] > m ? m0[l] : m;
        has_nan |= nan0[l] != 0;
    }
    for (; i < n; i++) {
        has_nan |= x[i] != x[i];
        m = x[i] > m ? x[i] : m;
    }
    return has_nan ? FU_RT_NAN : m;
}

FU_RT_SIMD_INLINE float max_propagating_nan(float acc, float v) {
    if (acc != acc || v != v) return FU_RT_NAN;
    return v > acc ? v : acc;
}

/* Column sums of a [rows, cols] block with row stride `stride`, cols <=
 * REDUCE_CHUNK: rows are summed pairwise (halves recursively, 16-row leaves
 * added in order), so reducing a long leading axis stays accurate. */
enum { REDUCE_CHUNK = 256 };
FU_RT_SIMD_ENTRY static void column_sums_pairwise(const float *x, int64_t rows, int64_t stride, int64_t cols,
                                 float *out) {
    if (rows <= 16) {
        for (int64_t j = 0; j < cols; j++) out[j] = 0.0f;
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < cols; j++) out[j] += x[i * stride + j];
        return;
    }
    float second[REDUCE_CHUNK];
    int64_t half = rows / 2;
    column_sums_pairwise(x, half, stride, cols, out);
    column_sums_pairwise(x + half * stride, rows - half, stride, cols, second);
    for (int64_t j = 0; j < cols; j++) out[j] += second[j];
}

/* The two layouts of fu_rt_reduce_f32 that split across cores: the last
 * axis reduced ([rows, run], one contiguous run per output), and the
 * middle one ([outer, rows, cols] sums, by chunks of REDUCE_CHUNK columns). */
typedef struct {
    int kind;
    const float *x;
    float *y;
    int64_t rows, cols, chunks;   /* chunks of columns per outer index; cols = run for row reductions */
} reduce_job;

FU_RT_SIMD_ENTRY static void reduce_rows(void *arg, int64_t begin, int64_t end) {
    const reduce_job *j = arg;
    for (int64_t p = begin; p < end; p++) {
        const float *xr = j->x + p * j->cols;
        if (j->kind == FU_RT_REDUCE_MAX) {
            j->y[p] = max_propagating_nan(j->y[p], max_contiguous(xr, j->cols));
        } else {
            j->y[p] += sum_contiguous(xr, j->cols);
            if (j->kind == FU_RT_REDUCE_MEAN) j->y[p] /= (float)j->cols;
        }
    }
}

FU_RT_SIMD_ENTRY static void reduce_column_chunks(void *arg, int64_t begin, int64_t end) {
    const reduce_job *j = arg;
    for (int64_t item = begin; item < end; item++) {
        int64_t o = item / j->chunks, j0 = item % j->chunks * REDUCE_CHUNK;
        int64_t c = j->cols - j0 < REDUCE_CHUNK ? j->cols - j0 : REDUCE_CHUNK;
        float *yc = j->y + o * j->cols + j0;
        column_sums_pairwise(j->x + o * j->rows * j->cols + j0, j->rows, j->cols, c, yc);
        if (j->kind == FU_RT_REDUCE_MEAN)
            for (int64_t k = 0; k < c; k++) yc[k] /= (float)j->rows;
    }
}

/* Walks x once in memory order and accumulates each element (or each
 * contiguous run of a reduced innermost axis) into its output slot. Dims
 * of size 1 are dropped and neighbouring dims with the same mask merged,
 * so e.g. "reduce the last axis" becomes [rows, n] with one contiguous run
 * per row and "reduce the first axis" becomes [n, cols] with vector adds. */
void fu_rt_reduce_f32(int kind, const float *x, float *y, int rank, const int64_t *shape,
                      const uint8_t *reduce_mask) {
    int64_t dims[RT_MAX_RANK];
    int reduced[RT_MAX_RANK];
    int r = 0;
    int64_t total = 1, kept = 1;
    if (rank > RT_MAX_RANK) return;
    for (int i = 0; i < rank; i++) {
        total *= shape[i];
        if (!reduce_mask[i]) kept *= shape[i];
        if (shape[i] == 1) continue;
        int red = reduce_mask[i] != 0;
        if (r > 0 && reduced[r - 1] == red) {
            dims[r - 1] *= shape[i];
        } else {
            dims[r] = shape[i];
            reduced[r] = red;
            r++;
        }
    }
    if (kept == 0) return;
    float init = kind == FU_RT_REDUCE_MAX ? -FU_RT_INF : 0.0f;
    for (int64_t i = 0; i < kept; i++) y[i] = init;
    if (total == 0) {
        if (kind == FU_RT_REDUCE_MEAN)
            for (int64_t i = 0; i < kept; i++) y[i] = FU_RT_NAN;   /* 0 / 0 */
        return;
    }
    if (r == 0) {   /* a single element */
        y[0] = x[0];
        return;
    }

    /* [outer kept, reduced, inner kept] sums: pairwise over the reduced rows. */
    if (kind != FU_RT_REDUCE_MAX && !reduced[r - 1] && r >= 2 && reduced[r - 2] &&
        (r == 2 || (r == 3 && !reduced[0]))) {
        reduce_job job = {kind, x, y, dims[r - 2], dims[r - 1], (dims[r - 1] + REDUCE_CHUNK - 1) / REDUCE_CHUNK};
        int64_t items = (r == 3 ? dims[0] : 1) * job.chunks;
        int64_t per_item = job.rows * (job.cols < REDUCE_CHUNK ? job.cols : REDUCE_CHUNK);
        fu_rt_parallel_for(items, fu_rt_grain(items, per_item, REDUCE_MIN_PARALLEL_ELEMS), reduce_column_chunks, &job);
        return;
    }
    /* [rows, run] with the run reduced: one independent output per row. */
    if (r == 2 && !reduced[0] && reduced[1]) {
        reduce_job job = {kind, x, y, dims[0], dims[1], 1};
        fu_rt_parallel_for(dims[0], fu_rt_grain(dims[0], dims[1], REDUCE_MIN_PARALLEL_ELEMS), reduce_rows, &job);
        return;
    }

    /* Output strides of the kept dims (0 for reduced dims). */
    int64_t y_stride[RT_MAX_RANK];
    int64_t s = 1;
    for (int d = r - 1; d >= 0; d--) {
        y_stride[d] = reduced[d] ? 0 : s;
        if (!reduced[d]) s *= dims[d];
    }

    int64_t run = dims[r - 1];
    int inner_reduced = reduced[r - 1];
    int64_t n_runs = total / run;
    int64_t idx[RT_MAX_RANK] = {0};
    int64_t y_off = 0;
    for (int64_t p = 0; p < n_runs; p++) {
        const float *xr = x + p * run;
        if (inner_reduced) {
            if (kind == FU_RT_REDUCE_MAX)
                y[y_off] = max_propagating_nan(y[y_off], max_contiguous(xr, run));
            else
                y[y_off] += sum_contiguous(xr, run);
        } else {
            float *yr = y + y_off;
            if (kind == FU_RT_REDUCE_MAX) {
                for (int64_t j = 0; j < run; j++) {
                    float v = xr[j], a = yr[j];
                    yr[j] = (v > a || v != v) ? v : a;   /* a NaN in yr stays: NaN > v is false */
                }
            } else {
                for (int64_t j = 0; j < run; j++) yr[j] += xr[j];
            }
        }
        /* advance the counter over dims 0 .. r-2 */
        for (int d = r - 2; d >= 0; d--) {
            idx[d]++;
            y_off += y_stride[d];
            if (idx[d] < dims[d]) break;
            y_off -= y_stride[d] * dims[d];
            idx[d] = 0;
        }
    }
    if (kind == FU_RT_REDUCE_MEAN) {
        float count = (float)(total / kept);
        for (int64_t i = 0; i < kept; i++) y[i] /= count;
    }
}

/* ==== softmax ============================================================= */

/* exp(x) for x <= 0 (NaN propagates), written without calls or branches so
 * that loops over it vectorise: numerics.h's reduction and degree-7
 * polynomial (about 1 ulp); results below 2^-126 flush to 0. */
FU_RT_SIMD_INLINE float exp_nonpositive(float x) {
    x = x < -87.3f ? -103.0f : x;                 /* -103: 2^n underflows to exactly 0 below */
    float t = x * FU_NUM_LOG2E + FU_NUM_ROUND_MAGIC;
    float n = t - FU_NUM_ROUND_MAGIC;             /* round(x / ln 2) */
    float r = FU_NUM_EXP_REDUCE(x, n);
    float p = FU_NUM_EXP_POLY(r);
    union { float f; int32_t i; } tb, scale;
    tb.f = t;
    /* low mantissa bits of t hold n (two's complement); 2^n as float bits */
    int32_t ni = (int32_t)((uint32_t)tb.i << 10) >> 10;
    scale.i = (int32_t)((uint32_t)(ni + 127 < 0 ? 0 : ni + 127) << 23);
    return p * scale.f;
}

/* exp_nonpositive on 8 lanes, same arithmetic. */
FU_RT_SIMD_INLINE vf8 exp_nonpositive8(vf8 x) {
    x = select8(x < -87.3f, splat8(-103.0f), x);
    vf8 t = x * FU_NUM_LOG2E + FU_NUM_ROUND_MAGIC;
    vf8 n = t - FU_NUM_ROUND_MAGIC;
    vf8 r = FU_NUM_EXP_REDUCE(x, n);
    vf8 p = FU_NUM_EXP_POLY(r);
    vi8 ni = (vi8)((vu8)t << 10) >> 10;   /* low 22 bits of t hold n, sign-extended */
    vi8 biased = ni + 127;
    biased &= biased > 0;             /* negative exponent: 2^n is 0 */
    return p * (vf8)(biased << 23);
}

/* Sum over a row of exp(x - m); writes the exponentials to y unless y is NULL. */
FU_RT_SIMD_INLINE float exp_shifted_sum(const float *x, float *y, int64_t n, float m) {
    vf8 acc0 = splat8(0.0f), acc1 = splat8(0.0f);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        vf8 e0 = exp_nonpositive8(load8(x + i) - m);
        vf8 e1 = exp_nonpositive8(load8(x + i + 8) - m);
        if (y) {
            store8(y + i, e0);
            store8(y + i + 8, e1);
        }
        acc0 += e0;
        acc1 += e1;
    }
    float s = hsum8(acc0 + acc1);
    for (; i < n; i++) {
        float e = exp_nonpositive(x[i] - m);
        if (y) y[i] = e;
        s += e;
    }
    return s;
}

FU_RT_SIMD_INLINE void softmax_row(const float *x, float *y, int64_t n, int log_softmax) {
    float m = max_contiguous(x, n);
    if (m != m) m = 0.0f;   /* a NaN in the row: every output becomes NaN below anyway */
    if (log_softmax) {
        float shift = m + logf(exp_shifted_sum(x, NULL, n, m));
        for (int64_t i = 0; i < n; i++) y[i] = x[i] - shift;
    } else {
        float inv = 1.0f / exp_shifted_sum(x, y, n, m);
        for (int64_t i = 0; i < n; i++) y[i] *= inv;
    }
}

/* Softmax over the n rows (stride `inner`) of a block of c <= SOFTMAX_CHUNK
 * columns, so the per-column max and sum live on the stack and every inner
 * loop runs along contiguous columns. */
enum { SOFTMAX_CHUNK = 256 };
FU_RT_SIMD_INLINE void softmax_column_chunk(const float *xc, float *yc, int64_t n, int64_t inner, int64_t c,
                                 int log_softmax) {
    float col_max[SOFTMAX_CHUNK], col_sum[SOFTMAX_CHUNK];
    for (int64_t j = 0; j < c; j++) { col_max[j] = -FU_RT_INF; col_sum[j] = 0.0f; }
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < c; j++) {
            float v = xc[i * inner + j];
            col_max[j] = v > col_max[j] ? v : col_max[j];
        }
    for (int64_t j = 0; j < c; j++)
        if (col_max[j] != col_max[j] || col_max[j] == -FU_RT_INF) col_max[j] = 0.0f;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < c; j++) {
            float e = exp_nonpositive(xc[i * inner + j] - col_max[j]);
            if (!log_softmax) yc[i * inner + j] = e;
            col_sum[j] += e;
        }
    if (log_softmax) {
        for (int64_t j = 0; j < c; j++) col_sum[j] = col_max[j] + logf(col_sum[j]);
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < c; j++) yc[i * inner + j] = xc[i * inner + j] - col_sum[j];
    } else {
        for (int64_t j = 0; j < c; j++) col_sum[j] = 1.0f / col_sum[j];
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < c; j++) yc[i * inner + j] *= col_sum[j];
    }
}

typedef struct {
    const float *x;
    float *y;
    int64_t n, inner, chunks;   /* chunks of columns per outer index (1 when inner == 1) */
    int log_softmax;
} softmax_job;

/* Items [begin, end) of (outer index, chunk of columns). */
FU_RT_SIMD_ENTRY static void softmax_items(void *arg, int64_t begin, int64_t end) {
    const softmax_job *j = arg;
    for (int64_t item = begin; item < end; item++) {
        int64_t o = item / j->chunks, j0 = item % j->chunks * SOFTMAX_CHUNK;
        const float *xo = j->x + o * j->n * j->inner;
        float *yo = j->y + o * j->n * j->inner;
        if (j->inner == 1) {
            softmax_row(xo, yo, j->n, j->log_softmax);
        } else {
            int64_t c = j->inner - j0 < SOFTMAX_CHUNK ? j->inner - j0 : SOFTMAX_CHUNK;
            softmax_column_chunk(xo + j0, yo + j0, j->n, j->inner, c, j->log_softmax);
        }
    }
}

void fu_rt_softmax_f32(const float *x, float *y, int64_t outer, int64_t n, int64_t inner,
                       int log_softmax) {
    if (n <= 0 || inner <= 0) return;
    softmax_job job = {x, y, n, inner, (inner + SOFTMAX_CHUNK - 1) / SOFTMAX_CHUNK, log_softmax};
    int64_t items = outer * job.chunks, per_item = n * (inner < SOFTMAX_CHUNK ? inner : SOFTMAX_CHUNK);
    fu_rt_parallel_for(items, fu_rt_grain(items, per_item, SOFTMAX_MIN_PARALLEL_ELEMS), softmax_items, &job);
}

/* ==== data movement ======================================================= */

/* One innermost run of a strided copy, typed so the loop vectorises (or
 * becomes a fill when the source stride is 0). */
#define STRIDED_RUN(T)                                                          \
    static void run_##T(void *dst, const void *src, int64_t n, int64_t ds,      \
                        int64_t ss) {                                           \
        T *d = dst;                                                             \
        const T *s = src;                                                       \
        if (ss == 0) {                                                          \
            T v = s[0];                                                         \
            for (int64_t i = 0; i < n; i++) d[i * ds] = v;                      \
        } else if (ds == 1) {                                                   \
            for (int64_t i = 0; i < n; i++) d[i] = s[i * ss];                   \
        } else {                                                                \
            for (int64_t i = 0; i < n; i++) d[i * ds] = s[i * ss];              \
        }                                                                       \
    }
STRIDED_RUN(uint8_t)
STRIDED_RUN(uint16_t)
STRIDED_RUN(uint32_t)
STRIDED_RUN(uint64_t)
#undef STRIDED_RUN

/* dst[i*dst_row + j] = src[j*src_col + i] for i < rows, j < cols (the
 * source is column-contiguous), in 32x32 tiles. */
#define TRANSPOSE_TILES(T)                                                                    \
    static void transpose_tiles_##T(T *d, const T *s, int64_t rows, int64_t cols,             \
                                    int64_t dst_row, int64_t src_col) {                       \
        for (int64_t i0 = 0; i0 < rows; i0 += 32)                                             \
            for (int64_t j0 = 0; j0 < cols; j0 += 32) {                                       \
                int64_t i1 = i0 + 32 < rows ? i0 + 32 : rows;                                 \
                int64_t j1 = j0 + 32 < cols ? j0 + 32 : cols;                                 \
                for (int64_t i = i0; i < i1; i++)                                             \
                    for (int64_t j = j0; j < j1; j++) d[i * dst_row + j] = s[j * src_col + i]; \
            }                                                                                 \
    }
TRANSPOSE_TILES(uint16_t)
TRANSPOSE_TILES(uint32_t)
#undef TRANSPOSE_TILES

static void transpose_tiles(void *dst, const void *src, int64_t elem_size, int64_t rows,
                            int64_t cols, int64_t dst_row, int64_t src_col) {
    if (elem_size == 4)
        transpose_tiles_uint32_t(dst, src, rows, cols, dst_row, src_col);
    else
        transpose_tiles_uint16_t(dst, src, rows, cols, dst_row, src_col);
}

static void copy_collapsed(void *dst, const void *src, int64_t elem_size, int r, const int64_t *dims,
                           const int64_t *ds, const int64_t *ss);

typedef struct {
    void *dst;
    const void *src;
    int64_t elem_size;
    int r;
    int64_t dims[RT_MAX_RANK], ds[RT_MAX_RANK], ss[RT_MAX_RANK];
} copy_job;

/* Rows [begin, end) of the outermost collapsed dim. */
static void copy_range(void *arg, int64_t begin, int64_t end) {
    const copy_job *j = arg;
    int64_t dims[RT_MAX_RANK];
    memcpy(dims, j->dims, sizeof dims);
    dims[0] = end - begin;
    copy_collapsed((char *)j->dst + begin * j->ds[0] * j->elem_size,
                   (const char *)j->src + begin * j->ss[0] * j->elem_size, j->elem_size, j->r, dims, j->ds,
                   j->ss);
}

void fu_rt_copy(void *dst, const void *src, int64_t elem_size, int rank, const int64_t *shape,
                const int64_t *dst_strides, const int64_t *src_strides) {
    int64_t dims[RT_MAX_RANK], ds[RT_MAX_RANK], ss[RT_MAX_RANK];
    int r = 0;
    if (rank > RT_MAX_RANK) return;
    for (int i = 0; i < rank; i++) {
        if (shape[i] == 0) return;
        if (shape[i] == 1) continue;
        /* merge with the previous dim when it steps over exactly this one */
        if (r > 0 && ds[r - 1] == dst_strides[i] * shape[i] &&
            ss[r - 1] == src_strides[i] * shape[i]) {
            dims[r - 1] *= shape[i];
            ds[r - 1] = dst_strides[i];
            ss[r - 1] = src_strides[i];
            continue;
        }
        dims[r] = shape[i];
        ds[r] = dst_strides[i];
        ss[r] = src_strides[i];
        r++;
    }
    if (r == 0) {
        memcpy(dst, src, (size_t)elem_size);
        return;
    }
    /* Large copies (Transposes; a bare graph transposes whole weights every
     * forward) are shared across cores along the outermost dim. */
    int64_t row_bytes = elem_size;
    for (int d = 1; d < r; d++) row_bytes *= dims[d];
    int64_t grain = fu_rt_grain(dims[0], row_bytes, COPY_MIN_PARALLEL_BYTES);
    if (grain >= dims[0]) {
        copy_collapsed(dst, src, elem_size, r, dims, ds, ss);
        return;
    }
    copy_job job = {dst, src, elem_size, r, {0}, {0}, {0}};
    memcpy(job.dims, dims, sizeof(int64_t) * (size_t)r);
    memcpy(job.ds, ds, sizeof(int64_t) * (size_t)r);
    memcpy(job.ss, ss, sizeof(int64_t) * (size_t)r);
    fu_rt_parallel_for(dims[0], grain, copy_range, &job);
}

/* The copy itself, on dims already collapsed (no 1s, merged neighbours). */
static void copy_collapsed(void *dst, const void *src, int64_t elem_size, int r, const int64_t *dims,
                           const int64_t *ds, const int64_t *ss) {
    int64_t run = dims[r - 1];
    int contiguous_rows = ds[r - 1] == 1 && ss[r - 1] == 1;
    int64_t n_runs = 1;
    for (int d = 0; d < r - 1; d++) n_runs *= dims[d];

    /* Swapping the last two dims (K^T in attention): copy 32x32 tiles so
     * both sides stay in cache instead of striding over whole columns. */
    if (r >= 2 && !contiguous_rows && ds[r - 1] == 1 && ss[r - 2] == 1 && ss[r - 1] != 0 &&
        ds[r - 2] != 0 && (elem_size == 4 || elem_size == 2) && dims[r - 1] >= 32 &&
        dims[r - 2] >= 32) {
        int64_t n_outer = n_runs / dims[r - 2];
        int64_t idx[RT_MAX_RANK] = {0};
        int64_t d_off = 0, s_off = 0;
        for (int64_t p = 0; p < n_outer; p++) {
            transpose_tiles((char *)dst + d_off * elem_size, (const char *)src + s_off * elem_size,
                            elem_size, dims[r - 2], dims[r - 1], ds[r - 2], ss[r - 1]);
            for (int d = r - 3; d >= 0; d--) {
                idx[d]++;
                d_off += ds[d];
                s_off += ss[d];
                if (idx[d] < dims[d]) break;
                d_off -= ds[d] * dims[d];
                s_off -= ss[d] * dims[d];
                idx[d] = 0;
            }
        }
        return;
    }

    char *dp = dst;
    const char *sp = src;
    int64_t idx[RT_MAX_RANK] = {0};
    int64_t d_off = 0, s_off = 0;   /* in elements */
    for (int64_t p = 0; p < n_runs; p++) {
        char *dr = dp + d_off * elem_size;
        const char *sr = sp + s_off * elem_size;
        if (contiguous_rows) {
            memcpy(dr, sr, (size_t)(run * elem_size));
        } else {
            switch (elem_size) {
            case 1: run_uint8_t(dr, sr, run, ds[r - 1], ss[r - 1]); break;
            case 2: run_uint16_t(dr, sr, run, ds[r - 1], ss[r - 1]); break;
            case 4: run_uint32_t(dr, sr, run, ds[r - 1], ss[r - 1]); break;
            case 8: run_uint64_t(dr, sr, run, ds[r - 1], ss[r - 1]); break;
            default:
                for (int64_t i = 0; i < run; i++)
                    memcpy(dr + i * ds[r - 1] * elem_size, sr + i * ss[r - 1] * elem_size,
                           (size_t)elem_size);
            }
        }
        for (int d = r - 2; d >= 0; d--) {
            idx[d]++;
            d_off += ds[d];
            s_off += ss[d];
            if (idx[d] < dims[d]) break;
            d_off -= ds[d] * dims[d];
            s_off -= ss[d] * dims[d];
            idx[d] = 0;
        }
    }
}

typedef struct {
    void *out;
    const void *data, *idx;
    int idx_is_i32;
    int64_t n_idx, axis_len, inner_bytes;
} gather_job;

/* Output rows [begin, end) of (outer index, index), indices already checked. */
static void gather_rows(void *arg, int64_t begin, int64_t end) {
    const gather_job *j = arg;
    const int32_t *idx32 = j->idx;
    const int64_t *idx64 = j->idx;
    int64_t inner_bytes = j->inner_bytes;
    char *o = (char *)j->out + begin * inner_bytes;
    int64_t b = begin / j->n_idx, i = begin % j->n_idx;
    for (int64_t row = begin; row < end; row++, i++) {
        if (i == j->n_idx) i = 0, b++;
        int64_t k = j->idx_is_i32 ? idx32[i] : idx64[i];
        if (k < 0) k += j->axis_len;
        const char *src = (const char *)j->data + (b * j->axis_len + k) * inner_bytes;
        if (inner_bytes == 4)
            memcpy(o, src, 4);   /* common case: one float, inlined */
        else
            memcpy(o, src, (size_t)inner_bytes);
        o += inner_bytes;
    }
}

static _Thread_local fu_rt_fault last_fault;

void fu_rt_fault_clear(void) { last_fault = (fu_rt_fault){0}; }

fu_rt_fault fu_rt_fault_last(void) { return last_fault; }

int fu_rt_gather(void *out, const void *data, const void *idx, int idx_is_i32, int64_t n_idx,
                 int64_t outer, int64_t axis_len, int64_t inner_bytes) {
    const int32_t *idx32 = idx;
    const int64_t *idx64 = idx;
    /* validate every index before writing anything */
    for (int64_t j = 0; j < n_idx; j++) {
        int64_t k = idx_is_i32 ? idx32[j] : idx64[j];
        if (k < -axis_len || k >= axis_len) {
            last_fault = (fu_rt_fault){"index", k, axis_len};
            return 1;
        }
    }
    gather_job job = {out, data, idx, idx_is_i32, n_idx, axis_len, inner_bytes};
    int64_t rows = outer * n_idx;
    fu_rt_parallel_for(rows, fu_rt_grain(rows, inner_bytes, GATHER_MIN_PARALLEL_BYTES), gather_rows, &job);
    return 0;
}

void fu_rt_trilu(void *dst, const void *src, int64_t elem_size, int64_t batch, int64_t rows,
                 int64_t cols, int64_t k, int upper) {
    char *d = dst;
    const char *s = src;
    for (int64_t b = 0; b < batch; b++) {
        for (int64_t i = 0; i < rows; i++) {
            int64_t off = (b * rows + i) * cols * elem_size;
            /* kept columns: lower j <= i + k, upper j >= i + k */
            int64_t lo, hi;   /* kept range [lo, hi) */
            if (upper) {
                lo = i + k;
                hi = cols;
            } else {
                lo = 0;
                hi = i + k + 1;
            }
            lo = lo < 0 ? 0 : lo > cols ? cols : lo;
            hi = hi < 0 ? 0 : hi > cols ? cols : hi;
            if (hi < lo) hi = lo;
            memset(d + off, 0, (size_t)(lo * elem_size));
            if (d != s)
                memcpy(d + off + lo * elem_size, s + off + lo * elem_size,
                       (size_t)((hi - lo) * elem_size));
            memset(d + off + hi * elem_size, 0, (size_t)((cols - hi) * elem_size));
        }
    }
}
