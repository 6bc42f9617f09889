/* Composed references for the fused kernels (see fused_ref.h): each
 * function spells out the unfused subgraph op by op, materialising every
 * intermediate tensor and summing sequentially in float. They are slow on
 * purpose, written for obviousness; tests hold runtime/fused.c to them and
 * bench/bench_kernels.c times both. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fusec_kernels.h"
#include "fused_ref.h"

static float *alloc_floats(int64_t count) {
    return malloc((size_t)(count > 0 ? count : 1) * sizeof(float));
}

/* ==== RMSNormalization: Pow, ReduceMean, Add, Sqrt, Div, Mul ============== */

int fu_ref_rms_norm_f32(const float *x, const float *scale, float *y, int64_t rows, int64_t n,
                        float eps) {
    float *squares = alloc_floats(rows * n), *denominator = alloc_floats(rows);
    if (!squares || !denominator) {
        free(squares);
        free(denominator);
        return -1;
    }
    for (int64_t e = 0; e < rows * n; e++) squares[e] = x[e] * x[e];
    for (int64_t r = 0; r < rows; r++) {
        float sum = 0.0f;
        for (int64_t i = 0; i < n; i++) sum += squares[r * n + i];
        denominator[r] = sum / (float)n;
    }
    for (int64_t r = 0; r < rows; r++) denominator[r] = denominator[r] + eps;
    for (int64_t r = 0; r < rows; r++) denominator[r] = sqrtf(denominator[r]);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < n; i++) y[r * n + i] = x[r * n + i] / denominator[r];
    if (scale)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t i = 0; i < n; i++) y[r * n + i] = y[r * n + i] * scale[i];
    free(squares);
    free(denominator);
    return 0;
}

/* ==== LayerNormalization: ReduceMean, Sub, Mul, ReduceMean, Add, Sqrt, Div,
 * Mul, Add ================================================================ */

int fu_ref_layer_norm_f32(const float *x, const float *scale, const float *bias, float *y,
                          int64_t rows, int64_t n, float eps) {
    float *mean = alloc_floats(rows), *deviation = alloc_floats(rows * n);
    float *squared = alloc_floats(rows * n), *std_dev = alloc_floats(rows);
    int status = -1;
    if (!mean || !deviation || !squared || !std_dev) goto done;
    for (int64_t r = 0; r < rows; r++) {
        float sum = 0.0f;
        for (int64_t i = 0; i < n; i++) sum += x[r * n + i];
        mean[r] = sum / (float)n;
    }
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < n; i++) deviation[r * n + i] = x[r * n + i] - mean[r];
    for (int64_t e = 0; e < rows * n; e++) squared[e] = deviation[e] * deviation[e];
    for (int64_t r = 0; r < rows; r++) {
        float sum = 0.0f;
        for (int64_t i = 0; i < n; i++) sum += squared[r * n + i];
        std_dev[r] = sum / (float)n;
    }
    for (int64_t r = 0; r < rows; r++) std_dev[r] = sqrtf(std_dev[r] + eps);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < n; i++) y[r * n + i] = deviation[r * n + i] / std_dev[r];
    if (scale)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t i = 0; i < n; i++) y[r * n + i] = y[r * n + i] * scale[i];
    if (bias)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t i = 0; i < n; i++) y[r * n + i] = y[r * n + i] + bias[i];
    status = 0;
done:
    free(mean);
    free(deviation);
    free(squared);
    free(std_dev);
    return status;
}

/* ==== RotaryEmbedding =====================================================
 * As exported models compute it: positions -> cos/sin tables [B, S, rot/2]
 * (Gather from a cache, or MatMul of positions with inv_freq then Cos, Sin,
 * Mul by the amplitude), the tables expanded to rot channels, the
 * "rotated" tensor (rotate_half: cat(-x2, x1); interleaved: (-x1, x0) per
 * pair), then x*cos + rotated*sin, then Concat with the pass-through. */

int fu_ref_rope_f32(const float *x, float *y, int64_t batch, int64_t heads, int64_t seq,
                    int64_t head_dim, int64_t rot_dim, int64_t x_stride_b, int64_t x_stride_h,
                    int64_t x_stride_s, int64_t y_stride_b, int64_t y_stride_h,
                    int64_t y_stride_s, int layout, const int64_t *position_ids,
                    int64_t position_stride_b, int64_t pos_offset, const float *cos_cache,
                    const float *sin_cache, int64_t max_pos, const float *inv_freq,
                    float amplitude) {
    int64_t half = rot_dim / 2;
    int64_t rows = batch * heads * seq;
    int64_t *positions = malloc((size_t)(batch * seq > 0 ? batch * seq : 1) * sizeof(int64_t));
    float *cos_table = alloc_floats(batch * seq * half), *sin_table = alloc_floats(batch * seq * half);
    float *cos_full = alloc_floats(batch * seq * rot_dim), *sin_full = alloc_floats(batch * seq * rot_dim);
    float *rotated = alloc_floats(rows * rot_dim), *x_cos = alloc_floats(rows * rot_dim);
    float *rotated_sin = alloc_floats(rows * rot_dim);
    int status = -1;
    if (!positions || !cos_table || !sin_table || !cos_full || !sin_full || !rotated || !x_cos ||
        !rotated_sin)
        goto done;

    /* positions [B, S] */
    for (int64_t b = 0; b < batch; b++)
        for (int64_t s = 0; s < seq; s++)
            positions[b * seq + s] =
                position_ids ? position_ids[b * position_stride_b + s] : pos_offset + s;

    /* cos/sin tables [B, S, half] */
    for (int64_t bs = 0; bs < batch * seq; bs++) {
        int64_t pos = positions[bs];
        if (cos_cache) {
            if (pos < 0 || pos >= max_pos) {
                status = 1;
                goto done;
            }
            memcpy(cos_table + bs * half, cos_cache + pos * half, (size_t)half * sizeof(float));
            memcpy(sin_table + bs * half, sin_cache + pos * half, (size_t)half * sizeof(float));
        } else {
            for (int64_t i = 0; i < half; i++) cos_table[bs * half + i] = (float)pos * inv_freq[i];
            for (int64_t i = 0; i < half; i++) sin_table[bs * half + i] = cos_table[bs * half + i];
            for (int64_t i = 0; i < half; i++) cos_table[bs * half + i] = cosf(cos_table[bs * half + i]);
            for (int64_t i = 0; i < half; i++) sin_table[bs * half + i] = sinf(sin_table[bs * half + i]);
            for (int64_t i = 0; i < half; i++) cos_table[bs * half + i] *= amplitude;
            for (int64_t i = 0; i < half; i++) sin_table[bs * half + i] *= amplitude;
        }
    }

    /* tables expanded to rot channels: cat(c, c) or repeat_interleave(c, 2) */
    for (int64_t bs = 0; bs < batch * seq; bs++)
        for (int64_t c = 0; c < rot_dim; c++) {
            int64_t freq = layout == FU_RT_ROPE_INTERLEAVED ? c / 2 : c % half;
            cos_full[bs * rot_dim + c] = cos_table[bs * half + freq];
            sin_full[bs * rot_dim + c] = sin_table[bs * half + freq];
        }

    /* rotated [B, H, S, rot], then x*cos, rotated*sin, their sum, concat */
    for (int64_t b = 0; b < batch; b++)
        for (int64_t h = 0; h < heads; h++)
            for (int64_t s = 0; s < seq; s++) {
                const float *xr = x + b * x_stride_b + h * x_stride_h + s * x_stride_s;
                float *rr = rotated + ((b * heads + h) * seq + s) * rot_dim;
                for (int64_t c = 0; c < rot_dim; c++) {
                    if (layout == FU_RT_ROPE_INTERLEAVED)
                        rr[c] = c % 2 == 0 ? -xr[c + 1] : xr[c - 1];
                    else
                        rr[c] = c < half ? -xr[c + half] : xr[c - half];
                }
            }
    for (int64_t b = 0; b < batch; b++)
        for (int64_t h = 0; h < heads; h++)
            for (int64_t s = 0; s < seq; s++) {
                const float *xr = x + b * x_stride_b + h * x_stride_h + s * x_stride_s;
                int64_t row = (b * heads + h) * seq + s;
                for (int64_t c = 0; c < rot_dim; c++)
                    x_cos[row * rot_dim + c] = xr[c] * cos_full[(b * seq + s) * rot_dim + c];
            }
    for (int64_t b = 0; b < batch; b++)
        for (int64_t h = 0; h < heads; h++)
            for (int64_t s = 0; s < seq; s++) {
                int64_t row = (b * heads + h) * seq + s;
                for (int64_t c = 0; c < rot_dim; c++)
                    rotated_sin[row * rot_dim + c] =
                        rotated[row * rot_dim + c] * sin_full[(b * seq + s) * rot_dim + c];
            }
    for (int64_t b = 0; b < batch; b++)
        for (int64_t h = 0; h < heads; h++)
            for (int64_t s = 0; s < seq; s++) {
                const float *xr = x + b * x_stride_b + h * x_stride_h + s * x_stride_s;
                float *yr = y + b * y_stride_b + h * y_stride_h + s * y_stride_s;
                int64_t row = (b * heads + h) * seq + s;
                for (int64_t c = 0; c < rot_dim; c++)
                    yr[c] = x_cos[row * rot_dim + c] + rotated_sin[row * rot_dim + c];
                for (int64_t c = rot_dim; c < head_dim; c++) yr[c] = xr[c];
            }
    status = 0;
done:
    free(positions);
    free(cos_table);
    free(sin_table);
    free(cos_full);
    free(sin_full);
    free(rotated);
    free(x_cos);
    free(rotated_sin);
    return status;
}

/* ==== Attention ===========================================================
 * repeat_kv (K, V copied to every query head), MatMul Q K^T, Mul scale, Add
 * causal mask, Add mask, Softmax (with the sink as an extra column that is
 * dropped afterwards), MatMul with V. The one departure from a literal
 * graph: a row with no finite score yields zeros instead of NaN, as the
 * fused contract says. */

int fu_ref_attention_f32(const float *q, const float *k, const float *v, float *out,
                         int64_t batch, int64_t q_heads, int64_t kv_heads, int64_t q_len,
                         int64_t kv_len, int64_t head_dim, int64_t v_head_dim,
                         int64_t q_stride_b, int64_t q_stride_h, int64_t q_stride_s,
                         int64_t k_stride_b, int64_t k_stride_h, int64_t k_stride_s,
                         int64_t v_stride_b, int64_t v_stride_h, int64_t v_stride_s,
                         int64_t out_stride_b, int64_t out_stride_h, int64_t out_stride_s,
                         float scale, int is_causal, const float *mask, int64_t mask_stride_b,
                         int64_t mask_stride_h, int64_t mask_stride_q, const float *sinks,
                         const int64_t *q_positions) {
    int64_t heads = batch * q_heads, group = q_heads / kv_heads;
    int64_t columns = kv_len + 1; /* scores plus the sink column */
    float *k_rep = alloc_floats(heads * kv_len * head_dim);
    float *v_rep = alloc_floats(heads * kv_len * v_head_dim);
    float *scores = alloc_floats(heads * q_len * columns);
    float *row_max = alloc_floats(heads * q_len), *row_sum = alloc_floats(heads * q_len);
    int status = -1;
    if (!k_rep || !v_rep || !scores || !row_max || !row_sum) goto done;

    /* repeat_kv: kv head h / group serves query head h */
    for (int64_t b = 0; b < batch; b++)
        for (int64_t h = 0; h < q_heads; h++)
            for (int64_t j = 0; j < kv_len; j++) {
                const float *k_row = k + b * k_stride_b + (h / group) * k_stride_h + j * k_stride_s;
                const float *v_row = v + b * v_stride_b + (h / group) * v_stride_h + j * v_stride_s;
                memcpy(k_rep + ((b * q_heads + h) * kv_len + j) * head_dim, k_row,
                       (size_t)head_dim * sizeof(float));
                memcpy(v_rep + ((b * q_heads + h) * kv_len + j) * v_head_dim, v_row,
                       (size_t)v_head_dim * sizeof(float));
            }

    /* scores[bh, i, j] = Q K^T; column kv_len holds the sink */
    for (int64_t b = 0; b < batch; b++)
        for (int64_t h = 0; h < q_heads; h++)
            for (int64_t i = 0; i < q_len; i++) {
                const float *q_row = q + b * q_stride_b + h * q_stride_h + i * q_stride_s;
                float *s_row = scores + ((b * q_heads + h) * q_len + i) * columns;
                for (int64_t j = 0; j < kv_len; j++) {
                    const float *k_row = k_rep + ((b * q_heads + h) * kv_len + j) * head_dim;
                    float sum = 0.0f;
                    for (int64_t d = 0; d < head_dim; d++) sum += q_row[d] * k_row[d];
                    s_row[j] = sum;
                }
            }
    for (int64_t r = 0; r < heads * q_len; r++)
        for (int64_t j = 0; j < kv_len; j++) scores[r * columns + j] *= scale;
    if (is_causal)
        for (int64_t bh = 0; bh < heads; bh++)
            for (int64_t i = 0; i < q_len; i++) {
                /* last key seen */
                int64_t last = q_positions ? q_positions[i] : is_causal == FU_RT_CAUSAL_START ? i : i + kv_len - q_len;
                for (int64_t j = 0; j < kv_len; j++)
                    if (j > last) scores[(bh * q_len + i) * columns + j] += -INFINITY;
            }
    if (mask)
        for (int64_t b = 0; b < batch; b++)
            for (int64_t h = 0; h < q_heads; h++)
                for (int64_t i = 0; i < q_len; i++)
                    for (int64_t j = 0; j < kv_len; j++)
                        scores[((b * q_heads + h) * q_len + i) * columns + j] +=
                            mask[b * mask_stride_b + h * mask_stride_h + i * mask_stride_q + j];
    for (int64_t b = 0; b < batch; b++)
        for (int64_t h = 0; h < q_heads; h++)
            for (int64_t i = 0; i < q_len; i++)
                scores[((b * q_heads + h) * q_len + i) * columns + kv_len] =
                    sinks ? sinks[h] : -INFINITY;

    /* softmax over each row of kv_len + 1 columns */
    for (int64_t r = 0; r < heads * q_len; r++) {
        float max = -INFINITY;
        for (int64_t j = 0; j < columns; j++)
            if (scores[r * columns + j] > max) max = scores[r * columns + j];
        row_max[r] = max;
    }
    for (int64_t r = 0; r < heads * q_len; r++)
        for (int64_t j = 0; j < columns; j++)
            scores[r * columns + j] =
                row_max[r] == -INFINITY ? 0.0f : expf(scores[r * columns + j] - row_max[r]);
    for (int64_t r = 0; r < heads * q_len; r++) {
        float sum = 0.0f;
        for (int64_t j = 0; j < columns; j++) sum += scores[r * columns + j];
        row_sum[r] = sum;
    }
    for (int64_t r = 0; r < heads * q_len; r++)
        for (int64_t j = 0; j < columns; j++)
            scores[r * columns + j] = row_sum[r] == 0.0f ? 0.0f : scores[r * columns + j] / row_sum[r];

    /* out = P V (sink column dropped) */
    for (int64_t b = 0; b < batch; b++)
        for (int64_t h = 0; h < q_heads; h++)
            for (int64_t i = 0; i < q_len; i++) {
                const float *p_row = scores + ((b * q_heads + h) * q_len + i) * columns;
                float *out_row = out + b * out_stride_b + h * out_stride_h + i * out_stride_s;
                for (int64_t d = 0; d < v_head_dim; d++) {
                    float sum = 0.0f;
                    for (int64_t j = 0; j < kv_len; j++)
                        sum += p_row[j] * v_rep[((b * q_heads + h) * kv_len + j) * v_head_dim + d];
                    out_row[d] = sum;
                }
            }
    status = 0;
done:
    free(k_rep);
    free(v_rep);
    free(scores);
    free(row_max);
    free(row_sum);
    return status;
}

/* ==== SwiGLU: Sigmoid, Mul, Mul =========================================== */

int fu_ref_swiglu_f32(const float *gate, const float *up, float *out, int64_t rows, int64_t n,
                      int64_t gate_stride, int64_t up_stride, int64_t out_stride) {
    float *sigmoid = alloc_floats(rows * n), *silu = alloc_floats(rows * n);
    if (!sigmoid || !silu) {
        free(sigmoid);
        free(silu);
        return -1;
    }
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < n; i++)
            sigmoid[r * n + i] = 1.0f / (1.0f + expf(-gate[r * gate_stride + i]));
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < n; i++) silu[r * n + i] = gate[r * gate_stride + i] * sigmoid[r * n + i];
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < n; i++) out[r * out_stride + i] = silu[r * n + i] * up[r * up_stride + i];
    free(sigmoid);
    free(silu);
    return 0;
}

/* ==== Gelu: the ONNX-20 function body ======================================
 * none: Div(x, sqrt2), Erf, Add 1, Mul x, Mul 0.5;
 * tanh: Pow(x, 3), Mul 0.044715, Add x, Mul sqrt(2/pi), Tanh, Add 1, Mul x,
 * Mul 0.5. Constants rounded to float as a float32 graph holds them. */

int fu_ref_gelu_f32(const float *x, float *y, int64_t n, int approximate) {
    float *a = alloc_floats(n), *b = alloc_floats(n);
    if (!a || !b) {
        free(a);
        free(b);
        return -1;
    }
    if (approximate == FU_RT_GELU_TANH) {
        const float beta = 0.7978845608028654f, kappa = 0.044715f;
        for (int64_t i = 0; i < n; i++) a[i] = powf(x[i], 3.0f);
        for (int64_t i = 0; i < n; i++) b[i] = kappa * a[i];
        for (int64_t i = 0; i < n; i++) a[i] = x[i] + b[i];
        for (int64_t i = 0; i < n; i++) b[i] = beta * a[i];
        for (int64_t i = 0; i < n; i++) a[i] = tanhf(b[i]);
    } else {
        const float sqrt2 = 1.4142135623730951f;
        for (int64_t i = 0; i < n; i++) b[i] = x[i] / sqrt2;
        for (int64_t i = 0; i < n; i++) a[i] = erff(b[i]);
    }
    for (int64_t i = 0; i < n; i++) b[i] = a[i] + 1.0f;
    for (int64_t i = 0; i < n; i++) a[i] = x[i] * b[i];
    for (int64_t i = 0; i < n; i++) y[i] = 0.5f * a[i];
    free(a);
    free(b);
    return 0;
}
