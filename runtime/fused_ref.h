/* Composed references for the fused kernels of fusec_kernels.h: the same
 * math written op by op, each op a separate pass over a materialised
 * intermediate, as the unfused graph computes it (float throughout,
 * sequential sums). Tests compare the fused kernels against these and the
 * benchmark times both. Arguments mean exactly what they mean for the
 * fu_rt_* kernel of the same name (see docs/fusions.md); every reference
 * returns 0, or -1 when an intermediate cannot be allocated (fu_ref_rope_f32
 * also returns 1 for a cached position out of range). Generated code never
 * calls these. */
#ifndef FUSEC_FUSED_REF_H
#define FUSEC_FUSED_REF_H

#include <stdint.h>

int fu_ref_rms_norm_f32(const float *x, const float *scale, float *y, int64_t rows, int64_t n,
                        float eps);
int fu_ref_layer_norm_f32(const float *x, const float *scale, const float *bias, float *y,
                          int64_t rows, int64_t n, float eps);
int fu_ref_rope_f32(const float *x, float *y, int64_t batch, int64_t heads, int64_t seq,
                    int64_t head_dim, int64_t rot_dim, int64_t x_stride_b, int64_t x_stride_h,
                    int64_t x_stride_s, int64_t y_stride_b, int64_t y_stride_h,
                    int64_t y_stride_s, int layout, const int64_t *position_ids,
                    int64_t position_stride_b, int64_t pos_offset, const float *cos_cache,
                    const float *sin_cache, int64_t max_pos, const float *inv_freq,
                    float amplitude);
int fu_ref_attention_f32(const float *q, const float *k, const float *v, float *out,
                         int64_t batch, int64_t q_heads, int64_t kv_heads, int64_t q_len,
                         int64_t kv_len, int64_t head_dim, int64_t v_head_dim,
                         int64_t q_stride_b, int64_t q_stride_h, int64_t q_stride_s,
                         int64_t k_stride_b, int64_t k_stride_h, int64_t k_stride_s,
                         int64_t v_stride_b, int64_t v_stride_h, int64_t v_stride_s,
                         int64_t out_stride_b, int64_t out_stride_h, int64_t out_stride_s,
                         float scale, int is_causal, const float *mask, int64_t mask_stride_b,
                         int64_t mask_stride_h, int64_t mask_stride_q, const float *sinks,
                         const int64_t *q_positions);
int fu_ref_swiglu_f32(const float *gate, const float *up, float *out, int64_t rows, int64_t n,
                      int64_t gate_stride, int64_t up_stride, int64_t out_stride);
int fu_ref_gelu_f32(const float *x, float *y, int64_t n, int approximate);

#endif
