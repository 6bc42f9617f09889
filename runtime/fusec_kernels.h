/* fusec runtime kernels: the functions generated code calls.
 *
 * This header is embedded verbatim, after runtime/numerics.h, at the top
 * of every generated translation unit (see compiler/emit.c and the
 * Makefile), so it must stay plain C that both tcc and gcc accept: no
 * system includes beyond stdint/stddef, no vector extensions. The kernels themselves
 * are built by gcc -O3 for any x86-64 (hot loops multi-versioned, runtime/simd.h)
 * into libfusec_rt.so; the JIT registers them with tcc_add_symbol and AOT
 * libraries link against that shared library.
 *
 * Every size, stride and count is int64_t and in elements unless the name
 * says bytes. Kernels that can fail on data (an out-of-range index) return
 * non-zero; the generated code then returns its node number. */
#ifndef FUSEC_KERNELS_H
#define FUSEC_KERNELS_H

#include <stdint.h>
#include <stddef.h>
/* In generated code numerics.h's text is pasted just above this header
 * (see numerics.h), so the include is skipped there. */
#ifndef FU_NUMERICS_H
#include "numerics.h"
#endif

/* ---- scalar math (libm), declared here so generated code needs no <math.h> */
float expf(float);
float logf(float);
float sqrtf(float);
float powf(float, float);
float erff(float);
float tanhf(float);
float cosf(float);
float sinf(float);
float fabsf(float);
float floorf(float);
float fmodf(float, float);
void *memcpy(void *, const void *, size_t);
void *memset(void *, int, size_t);

#define FU_RT_INF (1.0f / 0.0f)
#define FU_RT_NAN (0.0f / 0.0f)

/* ---- work sharing (runtime/parallel.c) -----------------------------------
 * Runs fn(ctx, begin, end) over chunks of [0, n) of at most `grain` indices,
 * on the calling thread and the runtime's idle workers; returns when every
 * index is done. n <= grain runs fn(ctx, 0, n) on the caller alone, so the
 * grain also keeps small work serial. Each index is computed by exactly one
 * call, so results do not depend on how many threads ran. */
void fu_rt_parallel_for(int64_t n, int64_t grain, void (*fn)(void *ctx, int64_t begin, int64_t end),
                        void *ctx);
/* The grain for n indices of `work` units each (elements or bytes): less
 * than min_work in all is one chunk, which the caller runs alone (waking a
 * core costs a few microseconds); more is about 8 equal chunks, so two
 * cores finish together. */
static inline int64_t fu_rt_grain(int64_t n, int64_t work, int64_t min_work) {
    if (n < 2 || n * work < min_work) return n > 0 ? n : 1;
    return (n + 7) / 8;
}

/* Elementwise loops of generated code with at least this many elements are
 * shared across cores (compiler/emit.c); smaller ones stay on the caller.
 * tcc's scalar code spends about 2 ns per element where gcc's vectorised
 * loops spend 0.1, so JIT code splits much smaller loops. */
#define FU_RT_LOOP_MIN_PARALLEL_ELEMS_GCC 24576
#define FU_RT_LOOP_MIN_PARALLEL_ELEMS_TCC 4096
#ifdef __TINYC__
#define FU_RT_LOOP_MIN_PARALLEL_ELEMS FU_RT_LOOP_MIN_PARALLEL_ELEMS_TCC
#else
#define FU_RT_LOOP_MIN_PARALLEL_ELEMS FU_RT_LOOP_MIN_PARALLEL_ELEMS_GCC
#endif

/* ---- per-node profile (runtime/profile.c) -------------------------------
 * fusec_model_run_profiled brackets the code of each node (or loop group)
 * with these when its caller passes a profile; slot numbers follow the
 * metadata's "profile" list. */
typedef struct fu_rt_profile fu_rt_profile;
void fu_rt_profile_begin(fu_rt_profile *p);
void fu_rt_profile_end(fu_rt_profile *p, int slot);

/* ---- half types: stored as uint16_t, computed in float ------------------
 * The conversions are defined once, in runtime/numerics.h. bfloat16's are
 * used inline (these names are numerics.h's functions); float16's are
 * called out of line (runtime/kernels.c wraps numerics.h's functions), as
 * tcc does not inline and they are long. */
#define fu_rt_bf16_to_f32 fu_num_bf16_to_f32
#define fu_rt_f32_to_bf16 fu_num_f32_to_bf16
float fu_rt_f16_to_f32(uint16_t h);
uint16_t fu_rt_f32_to_f16(float f);

/* Converts n elements between float32 and a half type (f16 / bf16), both
 * ways, with the rounding of fu_rt_f32_to_*: the Casts of whole weights
 * that a bare-profile graph runs every forward, done by gcc-built code. */
enum { FU_RT_CONVERT_BF16_TO_F32, FU_RT_CONVERT_F16_TO_F32, FU_RT_CONVERT_F32_TO_BF16,
       FU_RT_CONVERT_F32_TO_F16 };
void fu_rt_convert(void *dst, const void *src, int64_t n, int kind);

/* ---- dense linear algebra ------------------------------------------------ */
/* C[b] = alpha * op(A[b]) * op(B[b]) + beta * C[b] for b < batch, row-major,
 * op = transpose when trans_* is set. A[b] starts at A + b*stride_a (stride
 * 0 broadcasts), likewise B and C. Calls OpenBLAS sgemm; batches of a
 * shared B are folded into one call when A and C are contiguous. */
void fu_rt_matmul_f32(const float *A, const float *B, float *C, int64_t batch, int64_t M,
                      int64_t N, int64_t K, int64_t stride_a, int64_t stride_b,
                      int64_t stride_c, int trans_a, int trans_b, float alpha, float beta);

/* C = alpha * A * B^T + beta * C for row-major A [M, K], B [N, K] and
 * C [M, N] (beta 0: C is not read): B in the [out, in] layout of a linear
 * layer's weight. Built for few rows (M up to a few hundred) against a
 * large B; work is split across cores by columns of C, with results
 * bit-identical for any thread count (runtime/gemm.c).
 *
 * The packed forms read B as the compiler packed it at load
 * (fu_rt_pack_weight in runtime/gemm.h): panels of 32 output columns,
 * float32 (FU_RT_PACK_F32) or bfloat16 pairs (FU_RT_PACK_BF16). The bf16
 * form computes float32-exact products (the result of converting the
 * weights to float32 first) unless round_activations is set: then A is
 * rounded to bfloat16 too (--precision bf16) and the AVX512-BF16 dot
 * product runs at full rate. The _nt forms take B as it is ([N, K],
 * float32 or bfloat16 bits) and pack it on every call. */
enum { FU_RT_PACK_F32 = 1, FU_RT_PACK_BF16 = 2 };
void fu_rt_gemm_packed_f32(const float *A, const float *Bp, float *C, int64_t M, int64_t N, int64_t K,
                           float alpha, float beta);
void fu_rt_gemm_packed_bf16(const float *A, const uint16_t *Bp, float *C, int64_t M, int64_t N, int64_t K,
                            float alpha, float beta, int round_activations);
void fu_rt_gemm_nt_f32(const float *A, const float *B, float *C, int64_t M, int64_t N, int64_t K,
                       float alpha, float beta);
void fu_rt_gemm_nt_bf16(const float *A, const uint16_t *B, float *C, int64_t M, int64_t N,
                        int64_t K, float alpha, float beta);

/* ---- reductions and normalisation -------------------------------------- */
enum { FU_RT_REDUCE_SUM = 0, FU_RT_REDUCE_MEAN = 1, FU_RT_REDUCE_MAX = 2 };
/* Reduces x of `shape` (rank dims) over the axes whose mask entry is 1,
 * writing the kept elements of y in row-major order. */
void fu_rt_reduce_f32(int kind, const float *x, float *y, int rank, const int64_t *shape,
                      const uint8_t *reduce_mask);
/* Softmax (or log-softmax) over the middle axis of x viewed as
 * [outer, n, inner]; numerically stable (max subtracted). */
void fu_rt_softmax_f32(const float *x, float *y, int64_t outer, int64_t n, int64_t inner,
                       int log_softmax);

/* ---- data movement ------------------------------------------------------- */
/* Copies an n-d region: dst[idx . dst_strides] = src[idx . src_strides] for
 * every idx < shape. Strides in elements; a stride of 0 broadcasts. */
void fu_rt_copy(void *dst, const void *src, int64_t elem_size, int rank, const int64_t *shape,
                const int64_t *dst_strides, const int64_t *src_strides);
/* ONNX Gather on data viewed as [outer, axis_len, inner] (inner in bytes):
 * out[o, j, :] = data[o, idx[j], :]. Negative indices wrap; returns
 * non-zero if an index is out of range. idx is int64 or int32. */
int fu_rt_gather(void *out, const void *data, const void *idx, int idx_is_i32, int64_t n_idx,
                 int64_t outer, int64_t axis_len, int64_t inner_bytes);
/* ONNX Trilu on [batch, rows, cols]: keeps the lower (upper=0) or upper
 * triangle relative to diagonal k, zeroing the rest. */
void fu_rt_trilu(void *dst, const void *src, int64_t elem_size, int64_t batch, int64_t rows,
                 int64_t cols, int64_t k, int upper);

/* ---- fused kernels (runtime/fused.c; contracts in docs/fusions.md) ------
 * Called for the fused nodes of the fast profile. All float32, sizes and
 * strides int64_t in elements; the last axis of every tensor is contiguous.
 * Unless noted, an output may be the same buffer as an input of the same
 * layout (in place), but must not partially overlap it. */

/* RMSNormalization over the last axis of x [rows, n]:
 * y = x / sqrt(mean(x*x) + eps) * scale; scale [n] or NULL (all ones). */
void fu_rt_rms_norm_f32(const float *x, const float *scale, float *y, int64_t rows, int64_t n,
                        float eps);
/* LayerNormalization over the last axis of x [rows, n]:
 * y = (x - mean) / sqrt(var + eps) * scale + bias, var the biased (1/n)
 * variance computed in two passes; scale [n] or NULL, bias [n] or NULL. */
void fu_rt_layer_norm_f32(const float *x, const float *scale, const float *bias, float *y,
                          int64_t rows, int64_t n, float eps);

enum { FU_RT_ROPE_ROTATE_HALF = 0, FU_RT_ROPE_INTERLEAVED = 1 };
/* RotaryEmbedding of x, logical shape [batch, heads, seq, head_dim] at
 * x + b*x_stride_b + h*x_stride_h + s*x_stride_s (head_dim contiguous),
 * written to y with its own strides. The first rot_dim (even, <= head_dim)
 * channels are rotated in pairs, (i, i + rot_dim/2) for ROTATE_HALF and
 * (2i, 2i+1) for INTERLEAVED, by angle theta_i(pos):
 *   y_a = x_a*cos - x_b*sin,  y_b = x_b*cos + x_a*sin;
 * the remaining channels are copied. pos = position_ids[b*position_stride_b
 * + s] (stride 0 broadcasts one row over the batch) or, when position_ids
 * is NULL, pos = pos_offset + s. cos/sin come from cos_cache/sin_cache
 * [max_pos, rot_dim/2] row pos when cos_cache is non-NULL, otherwise
 * cos = amplitude*cosf(pos*inv_freq[i]), sin = amplitude*sinf(...) with
 * inv_freq [rot_dim/2] in radians per position. Returns non-zero when a
 * cached position is outside [0, max_pos) or memory runs out. */
int fu_rt_rope_f32(const float *x, float *y, int64_t batch, int64_t heads, int64_t seq,
                   int64_t head_dim, int64_t rot_dim, int64_t x_stride_b, int64_t x_stride_h,
                   int64_t x_stride_s, int64_t y_stride_b, int64_t y_stride_h,
                   int64_t y_stride_s, int layout, const int64_t *position_ids,
                   int64_t position_stride_b, int64_t pos_offset, const float *cos_cache,
                   const float *sin_cache, int64_t max_pos, const float *inv_freq,
                   float amplitude);

/* Scaled dot-product attention per (batch b, query head h):
 *   out = softmax(Q K^T * scale + mask) V
 * q [batch, q_heads, q_len, head_dim], k [batch, kv_heads, kv_len, head_dim],
 * v [batch, kv_heads, kv_len, v_head_dim], out [batch, q_heads, q_len,
 * v_head_dim], each at base + b*stride_b + h*stride_h + s*stride_s with the
 * last axis contiguous (so BHSD and BSHD both work). Query head h reads kv
 * head h / (q_heads / kv_heads). is_causal FU_RT_CAUSAL_END (1): query i
 * sees key j only when j <= i + kv_len - q_len (aligned to the end: the
 * queries are the last q_len tokens); FU_RT_CAUSAL_START (2): when j <= i
 * (aligned to the start, ONNX Attention without a past); either way, when
 * q_positions (int64 [q_len], ignored without is_causal) is non-NULL, when
 * j <= q_positions[i]: queries at given positions, e.g. rows selected from
 * a longer sequence.
 * mask (or NULL): additive float [q_len, kv_len] per (b, h) at mask +
 * b*mask_stride_b + h*mask_stride_h + i*mask_stride_q + j (stride 0
 * broadcasts). sinks (or
 * NULL): float [q_heads]; exp(sinks[h] - max) joins the softmax denominator,
 * max taken over the row's scores and the sink. A row with no finite score
 * (and no finite sink) is all zeros. out must not overlap q, k, v.
 * Returns non-zero when q_heads is not a multiple of kv_heads or scratch
 * memory runs out. */
enum { FU_RT_CAUSAL_END = 1, FU_RT_CAUSAL_START = 2 };
int fu_rt_attention_f32(const float *q, const float *k, const float *v, float *out,
                        int64_t batch, int64_t q_heads, int64_t kv_heads, int64_t q_len,
                        int64_t kv_len, int64_t head_dim, int64_t v_head_dim,
                        int64_t q_stride_b, int64_t q_stride_h, int64_t q_stride_s,
                        int64_t k_stride_b, int64_t k_stride_h, int64_t k_stride_s,
                        int64_t v_stride_b, int64_t v_stride_h, int64_t v_stride_s,
                        int64_t out_stride_b, int64_t out_stride_h, int64_t out_stride_s,
                        float scale, int is_causal, const float *mask, int64_t mask_stride_b,
                        int64_t mask_stride_h, int64_t mask_stride_q, const float *sinks,
                        const int64_t *q_positions);

/* SwiGLU on [rows, n] views: out = gate * sigmoid(gate) * up, row r of each
 * at base + r*stride (so gate and up may be two halves of one tensor). */
void fu_rt_swiglu_f32(const float *gate, const float *up, float *out, int64_t rows, int64_t n,
                      int64_t gate_stride, int64_t up_stride, int64_t out_stride);

/* Gelu (ONNX-20) over n contiguous elements (runtime/gelu.c):
 *   FU_RT_GELU_ERF:  y = 0.5 x (1 + erf(x / sqrt2))
 *   FU_RT_GELU_TANH: y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
 * within 1 ulp of the float64 formula, tails included; y may be x. */
enum { FU_RT_GELU_ERF = 0, FU_RT_GELU_TANH = 1 };
void fu_rt_gelu_f32(const float *x, float *y, int64_t n, int approximate);

#endif
