/* Fused runtime kernels for the fast profile: RMS/Layer normalisation,
 * rotary embedding, attention and SwiGLU (declared in fusec_kernels.h,
 * contracts in docs/fusions.md, composed references in fused_ref.c).
 *
 * Built by gcc -O3 without -ffast-math, once per instruction set for the
 * functions marked FU_RT_SIMD_ENTRY (runtime/simd.h), so float reductions
 * only vectorise when written with explicit independent lanes: the helpers
 * below keep LANES partial sums and add them up at the end. expf does not
 * vectorise either; exp_approx is a branch-free polynomial that does.
 * No globals: every kernel is safe to call from several threads. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fusec_kernels.h"
#include "parallel.h"
#include "simd.h"

/* Partial accumulators per reduction: two AVX-512 vectors (or four AVX2
 * ones), enough independent chains to hide the add latency. */
#define LANES 32

/* ==== vectorisable building blocks ====================================== */

FU_RT_SIMD_INLINE float sum_of_squares(const float *restrict x, int64_t n) {
    float lanes[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++) lanes[l] += x[i + l] * x[i + l];
    float total = 0.0f;
    for (int l = 0; l < LANES; l++) total += lanes[l];
    for (; i < n; i++) total += x[i] * x[i];
    return total;
}

FU_RT_SIMD_INLINE float sum_of(const float *restrict x, int64_t n) {
    float lanes[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++) lanes[l] += x[i + l];
    float total = 0.0f;
    for (int l = 0; l < LANES; l++) total += lanes[l];
    for (; i < n; i++) total += x[i];
    return total;
}

FU_RT_SIMD_INLINE float sum_of_squared_deviations(const float *restrict x, int64_t n, float mean) {
    float lanes[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++) {
            float d = x[i + l] - mean;
            lanes[l] += d * d;
        }
    float total = 0.0f;
    for (int l = 0; l < LANES; l++) total += lanes[l];
    for (; i < n; i++) total += (x[i] - mean) * (x[i] - mean);
    return total;
}

/* Dot products of one query row with four key rows at once: four
 * independent 16-lane chains, and each query vector loaded once. */
FU_RT_SIMD_INLINE void dot4(const float *restrict q, const float *restrict k0, const float *restrict k1,
                 const float *restrict k2, const float *restrict k3, int64_t n, float out[4]) {
    float a0[16] = {0}, a1[16] = {0}, a2[16] = {0}, a3[16] = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++) {
            float qv = q[i + l];
            a0[l] += qv * k0[i + l];
            a1[l] += qv * k1[i + l];
            a2[l] += qv * k2[i + l];
            a3[l] += qv * k3[i + l];
        }
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (int l = 0; l < 16; l++) {
        s0 += a0[l];
        s1 += a1[l];
        s2 += a2[l];
        s3 += a3[l];
    }
    for (; i < n; i++) {
        s0 += q[i] * k0[i];
        s1 += q[i] * k1[i];
        s2 += q[i] * k2[i];
        s3 += q[i] * k3[i];
    }
    out[0] = s0;
    out[1] = s1;
    out[2] = s2;
    out[3] = s3;
}

FU_RT_SIMD_INLINE float dot1(const float *restrict a, const float *restrict b, int64_t n) {
    float lanes[16] = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++) lanes[l] += a[i + l] * b[i + l];
    float total = 0.0f;
    for (int l = 0; l < 16; l++) total += lanes[l];
    for (; i < n; i++) total += a[i] * b[i];
    return total;
}

/* exp(x) within ~2 ulp for x in [-87.3, 88], written with plain arithmetic
 * and selects so loops calling it vectorise: numerics.h's reduction and
 * degree-7 polynomial. Below -87.3 (including -inf) it returns 0, above 88
 * it saturates at exp(88): softmax and sigmoid never need more. */
FU_RT_SIMD_INLINE float exp_approx(float x) {
    float clamped = x > 88.0f ? 88.0f : x;
    clamped = clamped < -87.3f ? -87.3f : clamped;
    float shifted = clamped * FU_NUM_LOG2E + FU_NUM_ROUND_MAGIC;
    float n = shifted - FU_NUM_ROUND_MAGIC;
    float r = FU_NUM_EXP_REDUCE(clamped, n);
    float p = FU_NUM_EXP_POLY(r);
    union { float f; int32_t i; } bits = {shifted};
    union { int32_t i; float f; } scale;
    scale.i = (bits.i - 0x4B400000 + 127) * (1 << 23); /* 2^n from the integer in the low bits */
    float result = p * scale.f;
    return x < -87.3f ? 0.0f : result;
}

/* ==== work sharing ========================================================
 * The kernels below split their rows (or positions, or column blocks)
 * across cores with fu_rt_parallel_for; each output element is computed by
 * one call with the same arithmetic whatever the split, so results are
 * bit-identical for any thread count. Below these amounts of work (floats
 * read per job) waking a second core costs more than it saves, and the
 * kernel runs on the calling thread. bench/bench_parallel.c finds where two
 * threads beat one on data in cache (SwiGLU: 2048). In a forward pass a
 * split also leaves half its output in the other core's cache, which a
 * serial next node pays for: `fusec run --profile-ops` on the router showed
 * the memory-bound norms and RoPE losing at 15 tokens and winning from 65,
 * hence their higher thresholds (docs/performance.md). */
#define NORM_MIN_PARALLEL_FLOATS 32768
#define ROPE_MIN_PARALLEL_FLOATS 65536
#define SWIGLU_MIN_PARALLEL_FLOATS 2048
/* SwiGLU rows are shared out in blocks of this many columns, so that a few
 * long rows (decode: one) still split. */
#define SWIGLU_BLOCK 1024

/* ==== normalisation ======================================================= */

typedef struct {
    const float *x, *scale, *bias;
    float *y;
    int64_t n;
    float eps;
} norm_job;

FU_RT_SIMD_ENTRY static void rms_norm_rows(void *arg, int64_t begin, int64_t end) {
    const norm_job *j = arg;
    int64_t n = j->n;
    const float *scale = j->scale;
    for (int64_t r = begin; r < end; r++) {
        const float *xr = j->x + r * n;
        float *yr = j->y + r * n;
        float inv_rms = 1.0f / sqrtf(sum_of_squares(xr, n) / (float)n + j->eps);
        if (scale) {
            for (int64_t i = 0; i < n; i++) yr[i] = xr[i] * inv_rms * scale[i];
        } else {
            for (int64_t i = 0; i < n; i++) yr[i] = xr[i] * inv_rms;
        }
    }
}

void fu_rt_rms_norm_f32(const float *x, const float *scale, float *y, int64_t rows, int64_t n,
                        float eps) {
    norm_job job = {x, scale, NULL, y, n, eps};
    fu_rt_parallel_for(rows, fu_rt_grain(rows, n, NORM_MIN_PARALLEL_FLOATS), rms_norm_rows, &job);
}

FU_RT_SIMD_ENTRY static void layer_norm_rows(void *arg, int64_t begin, int64_t end) {
    const norm_job *j = arg;
    int64_t n = j->n;
    const float *scale = j->scale, *bias = j->bias;
    for (int64_t r = begin; r < end; r++) {
        const float *xr = j->x + r * n;
        float *yr = j->y + r * n;
        /* two passes: the mean first, then squared deviations from it, which
         * avoids the cancellation of E[x^2] - E[x]^2 */
        float mean = sum_of(xr, n) / (float)n;
        float variance = sum_of_squared_deviations(xr, n, mean) / (float)n;
        float inv_std = 1.0f / sqrtf(variance + j->eps);
        if (scale && bias) {
            for (int64_t i = 0; i < n; i++) yr[i] = (xr[i] - mean) * inv_std * scale[i] + bias[i];
        } else if (scale) {
            for (int64_t i = 0; i < n; i++) yr[i] = (xr[i] - mean) * inv_std * scale[i];
        } else if (bias) {
            for (int64_t i = 0; i < n; i++) yr[i] = (xr[i] - mean) * inv_std + bias[i];
        } else {
            for (int64_t i = 0; i < n; i++) yr[i] = (xr[i] - mean) * inv_std;
        }
    }
}

void fu_rt_layer_norm_f32(const float *x, const float *scale, const float *bias, float *y,
                          int64_t rows, int64_t n, float eps) {
    norm_job job = {x, scale, bias, y, n, eps};
    fu_rt_parallel_for(rows, fu_rt_grain(rows, n, NORM_MIN_PARALLEL_FLOATS), layer_norm_rows, &job);
}

/* ==== rotary embedding ==================================================== */

/* cos/sin for up to this many frequencies live on the stack. */
#define ROPE_STACK_HALF 512

FU_RT_SIMD_INLINE void rope_rotate_row(const float *x, float *y, const float *cos_row,
                            const float *sin_row, int64_t half, int64_t head_dim, int layout) {
    int64_t rot_dim = 2 * half;
    if (layout == FU_RT_ROPE_INTERLEAVED) {
        for (int64_t i = 0; i < half; i++) {
            float a = x[2 * i], b = x[2 * i + 1];
            y[2 * i] = a * cos_row[i] - b * sin_row[i];
            y[2 * i + 1] = b * cos_row[i] + a * sin_row[i];
        }
    } else {
        for (int64_t i = 0; i < half; i++) {
            float a = x[i], b = x[i + half];
            y[i] = a * cos_row[i] - b * sin_row[i];
            y[i + half] = b * cos_row[i] + a * sin_row[i];
        }
    }
    if (y != x && rot_dim < head_dim)
        memcpy(y + rot_dim, x + rot_dim, (size_t)(head_dim - rot_dim) * sizeof(float));
}

/* fu_rt_rope_f32's arguments, shared by the ranges of positions. */
typedef struct {
    const float *x;
    float *y;
    int64_t batch, heads, head_dim, half;
    int64_t x_stride_b, x_stride_h, x_stride_s, y_stride_b, y_stride_h, y_stride_s;
    int layout;
    const int64_t *position_ids;
    int64_t position_stride_b, pos_offset;
    const float *cos_cache, *sin_cache;
    int64_t max_pos;
    const float *inv_freq;
    float amplitude;
} rope_args;

typedef struct {
    rope_args args;
    _Atomic int status;   /* 1: a cached position out of range; -1: out of memory */
} rope_job;

/* Sequence positions [s0, s1): the cos/sin row for a position is computed
 * once and applied to every head, and to every batch that shares it. */
FU_RT_SIMD_ENTRY static void rope_positions(void *arg, int64_t s0, int64_t s1) {
    rope_job *job = arg;
    /* a local copy: the compiler then knows cosf and memcpy leave it alone */
    const rope_args args = job->args, *j = &args;
    int64_t half = j->half;
    float stack_table[2 * ROPE_STACK_HALF];
    float *table = stack_table;
    if (!j->cos_cache && half > ROPE_STACK_HALF) {
        table = malloc((size_t)(2 * half) * sizeof(float));
        if (!table) {
            job->status = -1;
            return;
        }
    }
    float *computed_cos = table, *computed_sin = table + half;
    int out_of_range = 0;
    for (int64_t s = s0; s < s1 && !out_of_range; s++) {
        int64_t table_pos = 0;
        int table_valid = 0;
        for (int64_t b = 0; b < j->batch; b++) {
            int64_t pos = j->position_ids ? j->position_ids[b * j->position_stride_b + s] : j->pos_offset + s;
            const float *cos_row, *sin_row;
            if (j->cos_cache) {
                if (pos < 0 || pos >= j->max_pos) {
                    out_of_range = 1;
                    job->status = 1;
                    break;
                }
                cos_row = j->cos_cache + pos * half;
                sin_row = j->sin_cache + pos * half;
            } else {
                if (!table_valid || pos != table_pos) {
                    for (int64_t i = 0; i < half; i++) {
                        float angle = (float)pos * j->inv_freq[i];
                        computed_cos[i] = cosf(angle) * j->amplitude;
                        computed_sin[i] = sinf(angle) * j->amplitude;
                    }
                    table_pos = pos;
                    table_valid = 1;
                }
                cos_row = computed_cos;
                sin_row = computed_sin;
            }
            for (int64_t h = 0; h < j->heads; h++)
                rope_rotate_row(j->x + b * j->x_stride_b + h * j->x_stride_h + s * j->x_stride_s,
                                j->y + b * j->y_stride_b + h * j->y_stride_h + s * j->y_stride_s, cos_row,
                                sin_row, half, j->head_dim, j->layout);
        }
    }
    if (table != stack_table) free(table);
}

int fu_rt_rope_f32(const float *x, float *y, int64_t batch, int64_t heads, int64_t seq,
                   int64_t head_dim, int64_t rot_dim, int64_t x_stride_b, int64_t x_stride_h,
                   int64_t x_stride_s, int64_t y_stride_b, int64_t y_stride_h,
                   int64_t y_stride_s, int layout, const int64_t *position_ids,
                   int64_t position_stride_b, int64_t pos_offset, const float *cos_cache,
                   const float *sin_cache, int64_t max_pos, const float *inv_freq,
                   float amplitude) {
    rope_job job = {{x, y, batch, heads, head_dim, rot_dim / 2, x_stride_b, x_stride_h, x_stride_s,
                     y_stride_b, y_stride_h, y_stride_s, layout, position_ids, position_stride_b,
                     pos_offset, cos_cache, sin_cache, max_pos, inv_freq, amplitude}, 0};
    fu_rt_parallel_for(seq, fu_rt_grain(seq, batch * heads * head_dim, ROPE_MIN_PARALLEL_FLOATS), rope_positions,
                       &job);
    return job.status;
}

/* ==== attention =========================================================== */

/* Scores of one query row against keys [0, visible): dot * scale + mask. */
FU_RT_SIMD_INLINE void attention_scores(const float *restrict q_row, const float *k, int64_t k_stride_s,
                             int64_t visible, int64_t head_dim, float scale,
                             const float *mask_row, float *restrict scores) {
    int64_t j = 0;
    for (; j + 4 <= visible; j += 4) {
        const float *k0 = k + j * k_stride_s;
        dot4(q_row, k0, k0 + k_stride_s, k0 + 2 * k_stride_s, k0 + 3 * k_stride_s, head_dim,
             scores + j);
    }
    for (; j < visible; j++) scores[j] = dot1(q_row, k + j * k_stride_s, head_dim);
    for (j = 0; j < visible; j++) scores[j] *= scale;
    if (mask_row)
        for (j = 0; j < visible; j++) scores[j] += mask_row[j];
}

/* Softmax weights in place over scores[0, visible) plus an optional sink;
 * returns 1 / denominator, or 0 when the row has nothing finite. */
FU_RT_SIMD_INLINE float attention_softmax(float *restrict scores, int64_t visible, const float *sink) {
    float max = sink ? *sink : -FU_RT_INF;
    for (int64_t j = 0; j < visible; j++) max = scores[j] > max ? scores[j] : max;
    if (max == -FU_RT_INF) return 0.0f;
    float lanes[16] = {0};
    int64_t j = 0;
    for (; j + 16 <= visible; j += 16)
        for (int l = 0; l < 16; l++) {
            float p = exp_approx(scores[j + l] - max);
            scores[j + l] = p;
            lanes[l] += p;
        }
    float denominator = 0.0f;
    for (int l = 0; l < 16; l++) denominator += lanes[l];
    for (; j < visible; j++) {
        scores[j] = exp_approx(scores[j] - max);
        denominator += scores[j];
    }
    if (sink) denominator += exp_approx(*sink - max);
    return 1.0f / denominator;
}

/* ---- blocked path ---------------------------------------------------------
 * Both products are C[8 x 32] = A[8 x depth] * B[depth x 32] with B
 * row-major: scores use A = Q rows and B = K transposed (so the 32 lanes run
 * over keys and no horizontal sums are needed), P V uses A = the softmax
 * weights and B = V. The 16 vector accumulators stay in registers. Loops run
 * over a chunk of query rows with the 32-column slice of K^T or V outermost,
 * so that slice stays in L1 while every row block of the chunk uses it. */
#define BLOCK_ROWS 8
#define BLOCK_COLS 32
#define CHUNK_ROWS 64 /* query rows whose scores are held at once */

/* 16 floats as one value: a zmm register on AVX-512, two ymm on AVX2. */
typedef float vf16 __attribute__((vector_size(64), aligned(4)));

FU_RT_SIMD_INLINE void block_product(const float *const a_rows[BLOCK_ROWS], const float *restrict b,
                          int64_t ldb, int64_t depth, float c[BLOCK_ROWS][BLOCK_COLS]) {
    vf16 acc0[BLOCK_ROWS], acc1[BLOCK_ROWS];
    for (int r = 0; r < BLOCK_ROWS; r++) acc0[r] = acc1[r] = (vf16){0};
    for (int64_t kk = 0; kk < depth; kk++) {
        vf16 b0, b1;
        memcpy(&b0, b + kk * ldb, sizeof b0);
        memcpy(&b1, b + kk * ldb + 16, sizeof b1);
        for (int r = 0; r < BLOCK_ROWS; r++) {
            float a = a_rows[r][kk];
            acc0[r] += a * b0;
            acc1[r] += a * b1;
        }
    }
    for (int r = 0; r < BLOCK_ROWS; r++) {
        memcpy(c[r], &acc0[r], sizeof acc0[r]);
        memcpy(c[r] + 16, &acc1[r], sizeof acc1[r]);
    }
}

/* Everything one call needs, so the per-head helpers take one pointer. */
typedef struct {
    int64_t q_len, kv_len, head_dim, v_head_dim;
    int64_t q_stride_s, v_stride_s, out_stride_s, mask_stride_q;
    float scale;
    int is_causal;
    const int64_t *q_positions; /* [q_len] or NULL: causal limit per query row */
    int64_t keys_padded;   /* kv_len rounded up to BLOCK_COLS */
    int64_t v_dim_padded;  /* v_head_dim rounded up to BLOCK_COLS */
    float *k_transposed;   /* [head_dim, keys_padded], zero past kv_len */
    float *weights;        /* [CHUNK_ROWS, keys_padded] scores, then softmax weights */
    float *v_padded;       /* [kv_len, v_dim_padded] when v_head_dim is not a multiple of 32 */
    const float *zero_row; /* [max(head_dim, keys_padded)] zeros, stands in for missing rows */
} attention_plan;

/* Number of keys query row i sees: those up to its position, which is
 * given (q_positions), aligned to the end (is_causal 1) or to the start
 * (is_causal 2). */
FU_RT_SIMD_INLINE int64_t visible_keys(const attention_plan *plan, int64_t i) {
    if (!plan->is_causal) return plan->kv_len;
    int64_t last = plan->q_positions ? plan->q_positions[i]
                   : plan->is_causal == FU_RT_CAUSAL_START ? i : i + plan->kv_len - plan->q_len;
    return last < 0 ? 0 : (last < plan->kv_len - 1 ? last + 1 : plan->kv_len);
}

/* Most keys any of rows [i0, i0 + rows) sees. Given positions need not
 * grow with the row, so every row is asked. */
FU_RT_SIMD_INLINE int64_t most_visible_keys(const attention_plan *plan, int64_t i0, int64_t rows) {
    int64_t most = 0;
    for (int64_t r = 0; r < rows; r++) {
        int64_t visible = visible_keys(plan, i0 + r);
        most = visible > most ? visible : most;
    }
    return most;
}

/* Query rows [i0, i0 + rows) of one head, rows <= CHUNK_ROWS. */
FU_RT_SIMD_INLINE void attention_chunk(const attention_plan *plan, const float *q_head, const float *v_head,
                            float *out_head, const float *mask_head, const float *sink,
                            int64_t i0, int64_t rows) {
    float block[BLOCK_ROWS][BLOCK_COLS];
    const float *a_rows[BLOCK_ROWS];
    /* no row of the chunk needs more keys than this */
    int64_t chunk_visible = most_visible_keys(plan, i0, rows);

    /* scores, one 32-key slice of K^T at a time */
    for (int64_t j0 = 0; j0 < chunk_visible; j0 += BLOCK_COLS)
        for (int64_t r0 = 0; r0 < rows; r0 += BLOCK_ROWS) {
            int64_t block_rows = rows - r0 < BLOCK_ROWS ? rows - r0 : BLOCK_ROWS;
            if (most_visible_keys(plan, i0 + r0, block_rows) <= j0) continue; /* causal: unseen */
            for (int64_t r = 0; r < BLOCK_ROWS; r++)
                a_rows[r] = r < block_rows ? q_head + (i0 + r0 + r) * plan->q_stride_s
                                           : plan->zero_row;
            block_product(a_rows, plan->k_transposed + j0, plan->keys_padded, plan->head_dim,
                          block);
            for (int64_t r = 0; r < block_rows; r++)
                memcpy(plan->weights + (r0 + r) * plan->keys_padded + j0, block[r],
                       sizeof block[r]);
        }

    /* softmax per row; weights past a row's visible keys become 0, so each
     * row block's P V can run to the block's longest row */
    for (int64_t r = 0; r < rows; r++) {
        float *row = plan->weights + r * plan->keys_padded;
        int64_t visible = visible_keys(plan, i0 + r);
        for (int64_t j = 0; j < visible; j++) row[j] *= plan->scale;
        if (mask_head) {
            const float *mask_row = mask_head + (i0 + r) * plan->mask_stride_q;
            for (int64_t j = 0; j < visible; j++) row[j] += mask_row[j];
        }
        float inv_denominator = attention_softmax(row, visible, sink);
        if (inv_denominator == 0.0f) visible = 0; /* nothing finite: the row stays zero */
        for (int64_t j = 0; j < visible; j++) row[j] *= inv_denominator;
        for (int64_t j = visible; j < chunk_visible; j++) row[j] = 0.0f;
    }

    /* out rows = weights * V, one 32-channel slice of V at a time */
    const float *v_source = plan->v_padded ? plan->v_padded : v_head;
    int64_t v_stride = plan->v_padded ? plan->v_dim_padded : plan->v_stride_s;
    for (int64_t d0 = 0; d0 < plan->v_head_dim; d0 += BLOCK_COLS) {
        int64_t width = plan->v_head_dim - d0 < BLOCK_COLS ? plan->v_head_dim - d0 : BLOCK_COLS;
        for (int64_t r0 = 0; r0 < rows; r0 += BLOCK_ROWS) {
            int64_t block_rows = rows - r0 < BLOCK_ROWS ? rows - r0 : BLOCK_ROWS;
            for (int64_t r = 0; r < BLOCK_ROWS; r++)
                a_rows[r] = r < block_rows ? plan->weights + (r0 + r) * plan->keys_padded
                                           : plan->zero_row;
            int64_t depth = most_visible_keys(plan, i0 + r0, block_rows);
            block_product(a_rows, v_source + d0, v_stride, depth, block);
            for (int64_t r = 0; r < block_rows; r++)
                memcpy(out_head + (i0 + r0 + r) * plan->out_stride_s + d0, block[r],
                       (size_t)width * sizeof(float));
        }
    }
}

/* Attention for query rows that are few (decode): dot products per key. */
FU_RT_SIMD_INLINE void attention_rows_direct(const attention_plan *plan, const float *q_head,
                                  const float *k_head, int64_t k_stride_s, const float *v_head,
                                  float *out_head, const float *mask_head, const float *sink,
                                  float *scores) {
    for (int64_t i = 0; i < plan->q_len; i++) {
        int64_t visible = visible_keys(plan, i);
        float *out_row = out_head + i * plan->out_stride_s;
        attention_scores(q_head + i * plan->q_stride_s, k_head, k_stride_s, visible,
                         plan->head_dim, plan->scale,
                         mask_head ? mask_head + i * plan->mask_stride_q : NULL, scores);
        float inv_denominator = attention_softmax(scores, visible, sink);
        memset(out_row, 0, (size_t)plan->v_head_dim * sizeof(float));
        if (inv_denominator == 0.0f) continue;
        for (int64_t j = 0; j < visible; j++) {
            const float *v_row = v_head + j * plan->v_stride_s;
            float p = scores[j] * inv_denominator;
            for (int64_t d = 0; d < plan->v_head_dim; d++) out_row[d] += p * v_row[d];
        }
    }
}

/* Below this many query rows K is used directly rather than transposed. */
#define BLOCKED_MIN_ROWS 4

/* Everything one (batch, kv head) group needs; groups run in parallel,
 * each range with its own scratch. */
typedef struct {
    attention_plan plan;   /* shared shape facts; scratch pointers set per range */
    const float *q, *k, *v, *mask, *sinks;
    float *out;
    int64_t kv_heads, group;
    int64_t q_stride_b, q_stride_h, k_stride_b, k_stride_h, k_stride_s;
    int64_t v_stride_b, v_stride_h, out_stride_b, out_stride_h, mask_stride_b, mask_stride_h;
    int blocked, pad_v;
    int64_t zeros, scratch_floats;
    _Atomic int failed;
} attention_job;

FU_RT_SIMD_ENTRY static void attention_groups(void *arg, int64_t begin, int64_t end) {
    attention_job *job = arg;
    attention_plan plan = job->plan;
    float *scratch = malloc((size_t)(job->scratch_floats > 0 ? job->scratch_floats : 1) * sizeof(float));
    if (!scratch) {
        job->failed = 1;
        return;
    }
    if (job->blocked) {
        plan.k_transposed = scratch;
        plan.weights = plan.k_transposed + plan.head_dim * plan.keys_padded;
        float *zero_row = plan.weights + CHUNK_ROWS * plan.keys_padded;
        memset(zero_row, 0, (size_t)job->zeros * sizeof(float));
        plan.zero_row = zero_row;
        if (job->pad_v) plan.v_padded = zero_row + job->zeros;
    }
    int64_t head_dim = plan.head_dim, kv_len = plan.kv_len, v_head_dim = plan.v_head_dim;
    for (int64_t g = begin; g < end; g++) {
        int64_t b = g / job->kv_heads, kv = g % job->kv_heads;
        const float *k_head = job->k + b * job->k_stride_b + kv * job->k_stride_h;
        const float *v_head = job->v + b * job->v_stride_b + kv * job->v_stride_h;
        if (job->blocked) {
            /* transposed (and padded) once for all query heads of the group */
            for (int64_t d = 0; d < head_dim; d++) {
                float *kt_row = plan.k_transposed + d * plan.keys_padded;
                for (int64_t j = 0; j < kv_len; j++) kt_row[j] = k_head[j * job->k_stride_s + d];
                for (int64_t j = kv_len; j < plan.keys_padded; j++) kt_row[j] = 0.0f;
            }
            if (job->pad_v)
                for (int64_t j = 0; j < kv_len; j++) {
                    float *row = plan.v_padded + j * plan.v_dim_padded;
                    memcpy(row, v_head + j * plan.v_stride_s, (size_t)v_head_dim * sizeof(float));
                    memset(row + v_head_dim, 0, (size_t)(plan.v_dim_padded - v_head_dim) * sizeof(float));
                }
        }
        for (int64_t h = kv * job->group; h < (kv + 1) * job->group; h++) {
            const float *q_head = job->q + b * job->q_stride_b + h * job->q_stride_h;
            float *out_head = job->out + b * job->out_stride_b + h * job->out_stride_h;
            const float *mask_head = job->mask ? job->mask + b * job->mask_stride_b + h * job->mask_stride_h : NULL;
            const float *sink = job->sinks ? job->sinks + h : NULL;
            if (!job->blocked) {
                attention_rows_direct(&plan, q_head, k_head, job->k_stride_s, v_head, out_head, mask_head, sink,
                                      scratch);
                continue;
            }
            for (int64_t i0 = 0; i0 < plan.q_len; i0 += CHUNK_ROWS) {
                int64_t rows = plan.q_len - i0 < CHUNK_ROWS ? plan.q_len - i0 : CHUNK_ROWS;
                attention_chunk(&plan, q_head, v_head, out_head, mask_head, sink, i0, rows);
            }
        }
    }
    free(scratch);
}

int fu_rt_attention_f32(const float *q, const float *k, const float *v, float *out,
                        int64_t batch, int64_t q_heads, int64_t kv_heads, int64_t q_len,
                        int64_t kv_len, int64_t head_dim, int64_t v_head_dim,
                        int64_t q_stride_b, int64_t q_stride_h, int64_t q_stride_s,
                        int64_t k_stride_b, int64_t k_stride_h, int64_t k_stride_s,
                        int64_t v_stride_b, int64_t v_stride_h, int64_t v_stride_s,
                        int64_t out_stride_b, int64_t out_stride_h, int64_t out_stride_s,
                        float scale, int is_causal, const float *mask, int64_t mask_stride_b,
                        int64_t mask_stride_h, int64_t mask_stride_q, const float *sinks,
                        const int64_t *q_positions) {
    if (kv_heads <= 0 || q_heads % kv_heads != 0) return -1;
    attention_job job = {
        .plan = {q_len, kv_len, head_dim, v_head_dim, q_stride_s, v_stride_s, out_stride_s, mask_stride_q,
                 scale, is_causal, q_positions, 0, 0, NULL, NULL, NULL, NULL},
        .q = q, .k = k, .v = v, .mask = mask, .sinks = sinks, .out = out,
        .kv_heads = kv_heads, .group = q_heads / kv_heads,
        .q_stride_b = q_stride_b, .q_stride_h = q_stride_h, .k_stride_b = k_stride_b,
        .k_stride_h = k_stride_h, .k_stride_s = k_stride_s, .v_stride_b = v_stride_b,
        .v_stride_h = v_stride_h, .out_stride_b = out_stride_b, .out_stride_h = out_stride_h,
        .mask_stride_b = mask_stride_b, .mask_stride_h = mask_stride_h,
    };
    job.plan.keys_padded = (kv_len + BLOCK_COLS - 1) / BLOCK_COLS * BLOCK_COLS;
    job.plan.v_dim_padded = (v_head_dim + BLOCK_COLS - 1) / BLOCK_COLS * BLOCK_COLS;
    job.blocked = q_len >= BLOCKED_MIN_ROWS;
    job.pad_v = job.blocked && job.plan.v_dim_padded != v_head_dim;
    job.zeros = head_dim > job.plan.keys_padded ? head_dim : job.plan.keys_padded;
    job.scratch_floats = kv_len; /* direct path: one row of scores */
    if (job.blocked)
        job.scratch_floats = head_dim * job.plan.keys_padded + CHUNK_ROWS * job.plan.keys_padded + job.zeros +
                             (job.pad_v ? kv_len * job.plan.v_dim_padded : 0);
    /* Each (batch, kv head) group is independent: share them out when the
     * work is worth waking another core for. */
    int64_t groups = batch * kv_heads;
    if (q_len * kv_len * head_dim * q_heads >= ((int64_t)1 << 18)) fu_rt_parallel_for(groups, 1, attention_groups, &job);
    else attention_groups(&job, 0, groups);
    return job.failed ? -1 : 0;
}

/* ==== SwiGLU ============================================================== */

typedef struct {
    const float *gate, *up;
    float *out;
    int64_t n, gate_stride, up_stride, out_stride, blocks_per_row;
} swiglu_job;

FU_RT_SIMD_INLINE void swiglu_rows(const float *gate, const float *up, float *out, int64_t rows, int64_t n,
                        int64_t gate_stride, int64_t up_stride, int64_t out_stride) {
    for (int64_t r = 0; r < rows; r++) {
        const float *g = gate + r * gate_stride;
        const float *u = up + r * up_stride;
        float *o = out + r * out_stride;
        for (int64_t i = 0; i < n; i++) o[i] = g[i] / (1.0f + exp_approx(-g[i])) * u[i];
    }
}

/* Items [begin, end) of (row, block of SWIGLU_BLOCK columns): whole rows
 * in one call (the loop set-up costs as much as a short block), the partial
 * rows at the ends of the range block by block. */
FU_RT_SIMD_ENTRY static void swiglu_blocks(void *arg, int64_t begin, int64_t end) {
    const swiglu_job *j = arg;
    int64_t per_row = j->blocks_per_row;
    while (begin < end) {
        int64_t r = begin / per_row, b0 = begin % per_row;
        if (b0 == 0 && end - begin >= per_row) {
            int64_t rows = (end - begin) / per_row;
            swiglu_rows(j->gate + r * j->gate_stride, j->up + r * j->up_stride, j->out + r * j->out_stride, rows,
                        j->n, j->gate_stride, j->up_stride, j->out_stride);
            begin += rows * per_row;
        } else {
            int64_t b1 = b0 + (end - begin) < per_row ? b0 + (end - begin) : per_row;
            int64_t c0 = b0 * SWIGLU_BLOCK, c1 = b1 * SWIGLU_BLOCK < j->n ? b1 * SWIGLU_BLOCK : j->n;
            swiglu_rows(j->gate + r * j->gate_stride + c0, j->up + r * j->up_stride + c0,
                        j->out + r * j->out_stride + c0, 1, c1 - c0, 0, 0, 0);
            begin += b1 - b0;
        }
    }
}

void fu_rt_swiglu_f32(const float *gate, const float *up, float *out, int64_t rows, int64_t n,
                      int64_t gate_stride, int64_t up_stride, int64_t out_stride) {
    if (n <= 0) return;
    swiglu_job job = {gate, up, out, n, gate_stride, up_stride, out_stride, (n + SWIGLU_BLOCK - 1) / SWIGLU_BLOCK};
    int64_t items = rows * job.blocks_per_row, per_item = n < SWIGLU_BLOCK ? n : SWIGLU_BLOCK;
    fu_rt_parallel_for(items, fu_rt_grain(items, per_item, SWIGLU_MIN_PARALLEL_FLOATS), swiglu_blocks, &job);
}
