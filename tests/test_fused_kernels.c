/* Fused runtime kernels (runtime/fused.c) against their composed references
 * (runtime/fused_ref.c) on random inputs, plus hand-computed cases that pin
 * the references themselves (causal alignment, sinks, rotation direction).
 * Tolerance: max |fast - ref| <= 1e-5 * max |ref|, tight enough that a
 * wrong scale, a wrong pair or an off-by-one position fails it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/testutil.h"
#include "runtime/fusec_kernels.h"
#include "runtime/fused_ref.h"

#define REL_TOL 1e-5

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static float uniform(float lo, float hi) { /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    uint64_t bits = (rng_state * 0x2545f4914f6cdd1dull) >> 40; /* 24 bits */
    return lo + (hi - lo) * (float)bits / 16777216.0f;
}

static float *random_floats(int64_t count, float lo, float hi) {
    float *data = malloc((size_t)(count > 0 ? count : 1) * sizeof(float));
    assert_non_null(data);
    for (int64_t i = 0; i < count; i++) data[i] = uniform(lo, hi);
    return data;
}

static float *filled_floats(int64_t count, float value) {
    float *data = malloc((size_t)(count > 0 ? count : 1) * sizeof(float));
    assert_non_null(data);
    for (int64_t i = 0; i < count; i++) data[i] = value;
    return data;
}

/* Fails unless fast matches ref within REL_TOL of ref's largest value; an
 * all-zero reference must be matched exactly. */
static void assert_close(const char *what, const float *fast, const float *ref, int64_t count) {
    double diff = tu_max_abs_diff(fast, ref, count);
    double scale = tu_max_abs(ref, count);
    if (!(diff <= REL_TOL * scale) && !(diff == 0.0)) {
        print_error("%s: max abs diff %g, max |ref| %g\n", what, diff, scale);
        fail();
    }
}

/* ==== normalisation ====================================================== */

static void test_rms_norm(void **state) {
    (void)state;
    const int64_t lengths[] = {1, 7, 65, 128, 1024};
    for (size_t c = 0; c < sizeof lengths / sizeof *lengths; c++) {
        int64_t rows = 9, n = lengths[c];
        float *x = random_floats(rows * n, -3, 3), *scale = random_floats(n, 0.5f, 1.5f);
        float *fast = filled_floats(rows * n, NAN), *ref = filled_floats(rows * n, NAN);
        for (int with_scale = 0; with_scale < 2; with_scale++) {
            const float *s = with_scale ? scale : NULL;
            fu_rt_rms_norm_f32(x, s, fast, rows, n, 1e-6f);
            assert_int_equal(fu_ref_rms_norm_f32(x, s, ref, rows, n, 1e-6f), 0);
            assert_close("rms_norm", fast, ref, rows * n);
        }
        /* in place */
        memcpy(fast, x, (size_t)(rows * n) * sizeof(float));
        fu_rt_rms_norm_f32(fast, scale, fast, rows, n, 1e-6f);
        assert_close("rms_norm in place", fast, ref, rows * n);
        free(x), free(scale), free(fast), free(ref);
    }
    /* by hand: x = (3, 4), mean square 12.5 */
    float x[2] = {3, 4}, y[2];
    fu_rt_rms_norm_f32(x, NULL, y, 1, 2, 0.0f);
    assert_float_equal(y[0], 3 / sqrt(12.5), 1e-6);
    assert_float_equal(y[1], 4 / sqrt(12.5), 1e-6);
}

static void test_layer_norm(void **state) {
    (void)state;
    const int64_t lengths[] = {1, 7, 65, 1024};
    for (size_t c = 0; c < sizeof lengths / sizeof *lengths; c++) {
        int64_t rows = 6, n = lengths[c];
        /* a common offset, so the mean matters */
        float *x = random_floats(rows * n, 2, 4);
        float *scale = random_floats(n, 0.5f, 1.5f), *bias = random_floats(n, -1, 1);
        float *fast = filled_floats(rows * n, NAN), *ref = filled_floats(rows * n, NAN);
        for (int variant = 0; variant < 4; variant++) {
            const float *s = variant & 1 ? scale : NULL, *b = variant & 2 ? bias : NULL;
            fu_rt_layer_norm_f32(x, s, b, fast, rows, n, 1e-5f);
            assert_int_equal(fu_ref_layer_norm_f32(x, s, b, ref, rows, n, 1e-5f), 0);
            assert_close("layer_norm", fast, ref, rows * n);
        }
        free(x), free(scale), free(bias), free(fast), free(ref);
    }
    /* a large offset against a double-precision truth: two passes keep the
     * error near float rounding of the mean (~3e-5 here), where one-pass
     * E[x^2] - E[x]^2 would be off by ~1e-3 */
    {
        int64_t n = 1024;
        float *big = random_floats(n, 99, 101), *out = filled_floats(n, NAN);
        double mean = 0, variance = 0;
        for (int64_t i = 0; i < n; i++) mean += big[i];
        mean /= (double)n;
        for (int64_t i = 0; i < n; i++) variance += (big[i] - mean) * (big[i] - mean);
        variance /= (double)n;
        fu_rt_layer_norm_f32(big, NULL, NULL, out, 1, n, 1e-5f);
        for (int64_t i = 0; i < n; i++)
            assert_float_equal(out[i], (big[i] - mean) / sqrt(variance + 1e-5), 1e-4);
        free(big), free(out);
    }
    float x[3] = {1, 2, 3}, y[3];
    fu_rt_layer_norm_f32(x, NULL, NULL, y, 1, 3, 0.0f);
    assert_float_equal(y[0], -sqrt(1.5), 1e-6);
    assert_float_equal(y[1], 0.0, 1e-6);
    assert_float_equal(y[2], sqrt(1.5), 1e-6);
}

/* ==== rotary embedding =================================================== */

/* Strides of a [B, H, S, D] tensor stored as BHSD or as BSHD. */
typedef struct { int64_t b, h, s; } strides3;
static strides3 layout_strides(int bshd, int64_t heads, int64_t seq, int64_t dim) {
    strides3 st;
    if (bshd) {
        st.b = seq * heads * dim, st.h = dim, st.s = heads * dim;
    } else {
        st.b = heads * seq * dim, st.h = seq * dim, st.s = dim;
    }
    return st;
}

typedef struct {
    int64_t batch, heads, seq, head_dim, rot_dim;
    int layout, x_bshd, y_bshd;
    int position_mode; /* 0: offset, 1: ids [B, S], 2: ids [1, S] broadcast */
    int use_cache;
    int64_t pos_offset;
    float amplitude;
} rope_case;

static void check_rope(const rope_case *c) {
    int64_t count = c->batch * c->heads * c->seq * c->head_dim, half = c->rot_dim / 2;
    int64_t max_pos = 64;
    float *x = random_floats(count, -2, 2);
    float *fast = filled_floats(count, NAN), *ref = filled_floats(count, NAN);
    int64_t *ids = malloc((size_t)(c->batch * c->seq) * sizeof(int64_t));
    assert_non_null(ids);
    for (int64_t i = 0; i < c->batch * c->seq; i++) ids[i] = (int64_t)uniform(0, (float)max_pos);
    float *inv_freq = malloc((size_t)half * sizeof(float));
    assert_non_null(inv_freq);
    for (int64_t i = 0; i < half; i++) inv_freq[i] = powf(10000.0f, -(float)(2 * i) / (float)c->rot_dim);
    float *cos_cache = NULL, *sin_cache = NULL;
    if (c->use_cache) {
        cos_cache = malloc((size_t)(max_pos * half) * sizeof(float));
        sin_cache = malloc((size_t)(max_pos * half) * sizeof(float));
        assert_non_null(cos_cache);
        assert_non_null(sin_cache);
        for (int64_t p = 0; p < max_pos; p++)
            for (int64_t i = 0; i < half; i++) {
                cos_cache[p * half + i] = cosf((float)p * inv_freq[i]);
                sin_cache[p * half + i] = sinf((float)p * inv_freq[i]);
            }
    }
    strides3 xs = layout_strides(c->x_bshd, c->heads, c->seq, c->head_dim);
    strides3 ys = layout_strides(c->y_bshd, c->heads, c->seq, c->head_dim);
    const int64_t *position_ids = c->position_mode ? ids : NULL;
    int64_t position_stride = c->position_mode == 1 ? c->seq : 0;
    int fast_status = fu_rt_rope_f32(x, fast, c->batch, c->heads, c->seq, c->head_dim, c->rot_dim,
                                     xs.b, xs.h, xs.s, ys.b, ys.h, ys.s, c->layout, position_ids,
                                     position_stride, c->pos_offset, cos_cache, sin_cache, max_pos,
                                     inv_freq, c->amplitude);
    int ref_status = fu_ref_rope_f32(x, ref, c->batch, c->heads, c->seq, c->head_dim, c->rot_dim,
                                     xs.b, xs.h, xs.s, ys.b, ys.h, ys.s, c->layout, position_ids,
                                     position_stride, c->pos_offset, cos_cache, sin_cache, max_pos,
                                     inv_freq, c->amplitude);
    assert_int_equal(fast_status, 0);
    assert_int_equal(ref_status, 0);
    assert_close("rope", fast, ref, count);
    /* in place, same layout for x and y */
    if (c->x_bshd == c->y_bshd) {
        memcpy(fast, x, (size_t)count * sizeof(float));
        assert_int_equal(fu_rt_rope_f32(fast, fast, c->batch, c->heads, c->seq, c->head_dim,
                                        c->rot_dim, xs.b, xs.h, xs.s, xs.b, xs.h, xs.s, c->layout,
                                        position_ids, position_stride, c->pos_offset, cos_cache,
                                        sin_cache, max_pos, inv_freq, c->amplitude),
                         0);
        assert_close("rope in place", fast, ref, count);
    }
    free(x), free(fast), free(ref), free(ids), free(inv_freq), free(cos_cache), free(sin_cache);
}

static void test_rope_matches_reference(void **state) {
    (void)state;
    const rope_case cases[] = {
        /* B  H   S   D  rot  layout                 x_bshd y_bshd pos cache off amp */
        {1, 16, 15, 128, 128, FU_RT_ROPE_ROTATE_HALF, 0, 0, 0, 0, 0, 1.0f},
        {2, 3, 7, 64, 64, FU_RT_ROPE_ROTATE_HALF, 0, 0, 0, 0, 5, 1.0f},
        {2, 3, 7, 64, 64, FU_RT_ROPE_INTERLEAVED, 0, 0, 0, 0, 5, 1.0f},
        {2, 4, 65, 128, 64, FU_RT_ROPE_ROTATE_HALF, 1, 0, 0, 0, 3, 1.2f},
        {2, 4, 65, 64, 32, FU_RT_ROPE_INTERLEAVED, 0, 1, 1, 0, 0, 0.9f},
        {3, 2, 7, 128, 128, FU_RT_ROPE_ROTATE_HALF, 1, 1, 1, 1, 0, 1.0f},
        {2, 2, 9, 64, 48, FU_RT_ROPE_INTERLEAVED, 1, 1, 2, 1, 0, 1.0f},
        {2, 8, 1, 128, 128, FU_RT_ROPE_ROTATE_HALF, 1, 1, 0, 1, 40, 1.0f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) check_rope(&cases[i]);
}

static void test_rope_by_hand(void **state) {
    (void)state;
    /* one pair, inv_freq pi/2: position 1 turns (a, b) by 90 degrees into
     * (-b, a); position 0 leaves it; channel 2 (beyond rot_dim) is copied */
    const float inv_freq[1] = {(float)M_PI / 2};
    const float x[2][3] = {{1, 2, 7}, {3, 4, 8}}; /* s = 0, 1; D = 3, rot 2 */
    for (int layout = 0; layout < 2; layout++) {
        float fast[2][3], ref[2][3];
        assert_int_equal(fu_rt_rope_f32(&x[0][0], &fast[0][0], 1, 1, 2, 3, 2, 6, 6, 3, 6, 6, 3,
                                        layout, NULL, 0, 0, NULL, NULL, 0, inv_freq, 2.0f),
                         0);
        assert_int_equal(fu_ref_rope_f32(&x[0][0], &ref[0][0], 1, 1, 2, 3, 2, 6, 6, 3, 6, 6, 3,
                                         layout, NULL, 0, 0, NULL, NULL, 0, inv_freq, 2.0f),
                         0);
        const float expected[2][3] = {{2, 4, 7}, {-8, 6, 8}}; /* amplitude 2 */
        for (int s = 0; s < 2; s++)
            for (int d = 0; d < 3; d++) {
                assert_float_equal(fast[s][d], expected[s][d], 1e-5);
                assert_float_equal(ref[s][d], expected[s][d], 1e-5);
            }
    }
    /* pos_offset 1 makes s = 0 position 1 */
    float y[3];
    assert_int_equal(fu_rt_rope_f32(&x[0][0], y, 1, 1, 1, 3, 2, 3, 3, 3, 3, 3, 3,
                                    FU_RT_ROPE_ROTATE_HALF, NULL, 0, 1, NULL, NULL, 0, inv_freq,
                                    1.0f),
                     0);
    assert_float_equal(y[0], -2, 1e-6);
    assert_float_equal(y[1], 1, 1e-6);
    /* rotate-half pairs channel i with i + rot/2, not with i + 1 */
    const float inv2[2] = {(float)M_PI / 2, 0.0f};
    const float x4[4] = {1, 2, 3, 4};
    float y4[4];
    assert_int_equal(fu_rt_rope_f32(x4, y4, 1, 1, 1, 4, 4, 4, 4, 4, 4, 4, 4,
                                    FU_RT_ROPE_ROTATE_HALF, NULL, 0, 1, NULL, NULL, 0, inv2, 1.0f),
                     0);
    const float expected4[4] = {-3, 2, 1, 4}; /* pair (0, 2) turns, pair (1, 3) stays */
    for (int d = 0; d < 4; d++) assert_float_equal(y4[d], expected4[d], 1e-6);
}

static void test_rope_position_out_of_range(void **state) {
    (void)state;
    const float cos_cache[4] = {1, 1, 1, 1}, sin_cache[4] = {0, 0, 0, 0}; /* max_pos 4, half 1 */
    const float x[2] = {1, 2};
    float y[2];
    const int64_t bad[1] = {4}, negative[1] = {-1}, good[1] = {3};
    assert_int_not_equal(fu_rt_rope_f32(x, y, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 0, bad, 1, 0,
                                        cos_cache, sin_cache, 4, NULL, 1.0f),
                         0);
    assert_int_not_equal(fu_rt_rope_f32(x, y, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 0, negative, 1, 0,
                                        cos_cache, sin_cache, 4, NULL, 1.0f),
                         0);
    assert_int_not_equal(fu_ref_rope_f32(x, y, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 0, bad, 1, 0,
                                         cos_cache, sin_cache, 4, NULL, 1.0f),
                         0);
    assert_int_equal(fu_rt_rope_f32(x, y, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 0, good, 1, 0,
                                    cos_cache, sin_cache, 4, NULL, 1.0f),
                     0);
    assert_float_equal(y[0], 1, 0);
    assert_float_equal(y[1], 2, 0);
}

/* ==== attention ========================================================== */

enum { MASK_NONE, MASK_PER_HEAD, MASK_BROADCAST_HEADS, MASK_BROADCAST_ALL };

typedef int (*attention_fn)(const float *, const float *, const float *, float *, int64_t,
                            int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                            int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                            int64_t, int64_t, int64_t, int64_t, float, int, const float *,
                            int64_t, int64_t, int64_t, const float *, const int64_t *);

typedef struct {
    int64_t batch, q_heads, kv_heads, q_len, kv_len, head_dim, v_head_dim;
    int causal, mask_kind, sinks, bshd;
    int masked_rows; /* set whole mask rows to -inf */
    int positions;   /* given query positions, random in [-2, kv_len] (some past either end) */
} attention_case;

static void check_attention(const attention_case *c) {
    int64_t q_count = c->batch * c->q_heads * c->q_len * c->head_dim;
    int64_t k_count = c->batch * c->kv_heads * c->kv_len * c->head_dim;
    int64_t v_count = c->batch * c->kv_heads * c->kv_len * c->v_head_dim;
    int64_t out_count = c->batch * c->q_heads * c->q_len * c->v_head_dim;
    float *q = random_floats(q_count, -1, 1), *k = random_floats(k_count, -1, 1);
    float *v = random_floats(v_count, -1, 1);
    float *fast = filled_floats(out_count, NAN), *ref = filled_floats(out_count, NAN);
    float *sinks = random_floats(c->q_heads, -1, 2);
    int64_t mask_count = c->batch * c->q_heads * c->q_len * c->kv_len;
    float *mask = random_floats(mask_count, -4, 0);
    int64_t msb = c->q_heads * c->q_len * c->kv_len, msh = c->q_len * c->kv_len, msq = c->kv_len;
    if (c->mask_kind == MASK_BROADCAST_HEADS) msh = 0, msb = c->q_len * c->kv_len;
    if (c->mask_kind == MASK_BROADCAST_ALL) msb = 0, msh = 0;
    if (c->masked_rows)
        for (int64_t r = 0; r < mask_count / c->kv_len; r += 3)
            for (int64_t j = 0; j < c->kv_len; j++) mask[r * c->kv_len + j] = -INFINITY;
    strides3 qs = layout_strides(c->bshd, c->q_heads, c->q_len, c->head_dim);
    strides3 ks = layout_strides(c->bshd, c->kv_heads, c->kv_len, c->head_dim);
    strides3 vs = layout_strides(c->bshd, c->kv_heads, c->kv_len, c->v_head_dim);
    strides3 os = layout_strides(c->bshd, c->q_heads, c->q_len, c->v_head_dim);
    const float *m = c->mask_kind == MASK_NONE ? NULL : mask;
    const float *sk = c->sinks ? sinks : NULL;
    int64_t *positions = malloc((size_t)c->q_len * sizeof(int64_t));
    assert_non_null(positions);
    for (int64_t i = 0; i < c->q_len; i++) positions[i] = (int64_t)floorf(uniform(-2.0f, (float)c->kv_len + 1.0f));
    const int64_t *pos = c->positions ? positions : NULL;
    float scale = 1.0f / sqrtf((float)c->head_dim);
    assert_int_equal(fu_rt_attention_f32(q, k, v, fast, c->batch, c->q_heads, c->kv_heads,
                                         c->q_len, c->kv_len, c->head_dim, c->v_head_dim, qs.b,
                                         qs.h, qs.s, ks.b, ks.h, ks.s, vs.b, vs.h, vs.s, os.b,
                                         os.h, os.s, scale, c->causal, m, msb, msh, msq, sk, pos),
                     0);
    assert_int_equal(fu_ref_attention_f32(q, k, v, ref, c->batch, c->q_heads, c->kv_heads,
                                          c->q_len, c->kv_len, c->head_dim, c->v_head_dim, qs.b,
                                          qs.h, qs.s, ks.b, ks.h, ks.s, vs.b, vs.h, vs.s, os.b,
                                          os.h, os.s, scale, c->causal, m, msb, msh, msq, sk, pos),
                     0);
    assert_close("attention", fast, ref, out_count);
    free(q), free(k), free(v), free(fast), free(ref), free(sinks), free(mask), free(positions);
}

static void test_attention_matches_reference(void **state) {
    (void)state;
    const attention_case cases[] = {
        /* B Hq Hkv Lq Lk  D   Dv  causal mask                sinks bshd masked_rows positions */
        {1, 16, 8, 15, 15, 128, 128, 1, MASK_NONE, 0, 0, 0, 0},           /* router prefill */
        {1, 16, 8, 65, 65, 128, 128, 1, MASK_NONE, 0, 1, 0, 0},
        {1, 16, 8, 65, 65, 128, 128, 0, MASK_BROADCAST_HEADS, 0, 0, 0, 0},
        {2, 4, 2, 7, 7, 64, 64, 0, MASK_PER_HEAD, 0, 1, 0, 0},            /* GQA 2:1 */
        {2, 8, 2, 5, 17, 64, 64, 1, MASK_NONE, 0, 0, 0, 0},               /* GQA 4:1, Lq < Lk */
        {2, 8, 2, 5, 17, 64, 64, 1, MASK_BROADCAST_HEADS, 1, 1, 0, 0},
        {2, 4, 4, 1, 1, 128, 128, 1, MASK_NONE, 0, 0, 0, 0},
        {1, 4, 1, 1, 65, 128, 128, 1, MASK_NONE, 1, 1, 0, 0},             /* decode step */
        {2, 6, 3, 7, 7, 64, 32, 0, MASK_BROADCAST_ALL, 1, 0, 0, 0},       /* Dv != D */
        {2, 4, 2, 7, 9, 64, 64, 0, MASK_PER_HEAD, 0, 0, 1, 0},            /* fully masked rows */
        {2, 4, 2, 7, 9, 64, 64, 1, MASK_BROADCAST_HEADS, 1, 1, 1, 0},
        {1, 4, 2, 9, 4, 64, 64, 1, MASK_NONE, 0, 0, 0, 0},                /* Lq > Lk: early rows see nothing */
        {1, 4, 2, 9, 4, 64, 64, 1, MASK_NONE, 1, 1, 0, 0},
        {1, 4, 2, 9, 11, 24, 40, 1, MASK_PER_HEAD, 1, 1, 0, 0},           /* dims off the 16/32 grid */
        {1, 4, 2, 2, 11, 24, 40, 0, MASK_PER_HEAD, 1, 0, 1, 0},
        {1, 2, 1, 130, 130, 64, 64, 1, MASK_BROADCAST_ALL, 0, 0, 0, 0},   /* several row chunks */
        {1, 2, 1, 70, 200, 64, 64, 1, MASK_NONE, 1, 1, 0, 0},
        /* given query positions (unsorted, some before key 0 or past the last key) */
        {1, 16, 8, 1, 65, 128, 128, 1, MASK_NONE, 0, 0, 0, 1},         /* one router row */
        {2, 8, 2, 3, 17, 64, 64, 1, MASK_NONE, 0, 1, 0, 1},            /* GQA 4:1, direct path */
        {2, 4, 2, 9, 33, 64, 64, 1, MASK_BROADCAST_HEADS, 1, 0, 0, 1}, /* blocked path */
        {1, 6, 3, 70, 100, 24, 40, 1, MASK_PER_HEAD, 1, 1, 1, 1},      /* several row chunks */
        {1, 4, 2, 9, 4, 64, 64, 1, MASK_NONE, 0, 0, 0, 1},             /* Lq > Lk */
        {1, 4, 4, 5, 7, 64, 64, 0, MASK_NONE, 0, 0, 0, 1},             /* ignored without is_causal */
        /* causal aligned to the start (ONNX Attention): query i sees keys j <= i */
        {2, 8, 2, 5, 17, 64, 64, 2, MASK_NONE, 0, 0, 0, 0},            /* Lq < Lk */
        {1, 4, 2, 9, 4, 64, 64, 2, MASK_BROADCAST_HEADS, 1, 1, 0, 0},  /* Lq > Lk: late rows see all */
        {1, 2, 1, 70, 200, 64, 64, 2, MASK_NONE, 1, 1, 0, 0},          /* several row chunks */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) check_attention(&cases[i]);
}

/* Rows selected from a causal attention and run at their real positions
 * give exactly those rows of the full output: each query row only reads its
 * own q row, K and V. Checked for the kernel and the reference, in both
 * layouts, with GQA, Lq < Lk (end-aligned queries start at Lk - Lq) and
 * selections that repeat or reorder rows. */
typedef struct {
    int64_t batch, q_heads, kv_heads, q_len, kv_len, head_dim;
    int bshd;
    int n_rows;
    int64_t rows[6];
} selection_case;

static void check_selected_rows(const selection_case *c, int use_reference) {
    int64_t d = c->head_dim, n = c->n_rows;
    float *q = random_floats(c->batch * c->q_heads * c->q_len * d, -1, 1);
    float *k = random_floats(c->batch * c->kv_heads * c->kv_len * d, -1, 1);
    float *v = random_floats(c->batch * c->kv_heads * c->kv_len * d, -1, 1);
    float *full = filled_floats(c->batch * c->q_heads * c->q_len * d, NAN);
    float *q_sel = filled_floats(c->batch * c->q_heads * n * d, NAN);
    float *out_sel = filled_floats(c->batch * c->q_heads * n * d, NAN);
    float *want = filled_floats(c->batch * c->q_heads * n * d, NAN);
    int64_t positions[6];
    strides3 qs = layout_strides(c->bshd, c->q_heads, c->q_len, d);
    strides3 ks = layout_strides(c->bshd, c->kv_heads, c->kv_len, d);
    strides3 ss = layout_strides(c->bshd, c->q_heads, n, d);
    for (int64_t b = 0; b < c->batch; b++)
        for (int64_t h = 0; h < c->q_heads; h++)
            for (int64_t r = 0; r < n; r++)
                memcpy(q_sel + b * ss.b + h * ss.h + r * ss.s, q + b * qs.b + h * qs.h + c->rows[r] * qs.s,
                       (size_t)d * sizeof(float));
    for (int64_t r = 0; r < n; r++) positions[r] = c->rows[r] + c->kv_len - c->q_len;
    attention_fn fn = use_reference ? fu_ref_attention_f32 : fu_rt_attention_f32;
    float scale = 1.0f / sqrtf((float)d);
    assert_int_equal(fn(q, k, v, full, c->batch, c->q_heads, c->kv_heads, c->q_len, c->kv_len, d, d, qs.b, qs.h,
                        qs.s, ks.b, ks.h, ks.s, ks.b, ks.h, ks.s, qs.b, qs.h, qs.s, scale, 1, NULL, 0, 0, 0, NULL,
                        NULL),
                     0);
    assert_int_equal(fn(q_sel, k, v, out_sel, c->batch, c->q_heads, c->kv_heads, n, c->kv_len, d, d, ss.b, ss.h,
                        ss.s, ks.b, ks.h, ks.s, ks.b, ks.h, ks.s, ss.b, ss.h, ss.s, scale, 1, NULL, 0, 0, 0, NULL,
                        positions),
                     0);
    for (int64_t b = 0; b < c->batch; b++)
        for (int64_t h = 0; h < c->q_heads; h++)
            for (int64_t r = 0; r < n; r++)
                memcpy(want + b * ss.b + h * ss.h + r * ss.s, full + b * qs.b + h * qs.h + c->rows[r] * qs.s,
                       (size_t)d * sizeof(float));
    assert_close(use_reference ? "selected rows (reference)" : "selected rows", out_sel, want,
                 c->batch * c->q_heads * n * d);
    free(q), free(k), free(v), free(full), free(q_sel), free(out_sel), free(want);
}

static void test_attention_selected_rows(void **state) {
    (void)state;
    const selection_case cases[] = {
        /* B Hq Hkv Lq  Lk  D   bshd rows */
        {1, 16, 8, 15, 15, 128, 0, 1, {13}},                  /* the router: row T - 2 */
        {1, 16, 8, 65, 65, 128, 1, 1, {0}},
        {2, 8, 2, 17, 17, 64, 0, 3, {16, 0, 8}},              /* GQA 4:1, reordered */
        {2, 4, 2, 7, 19, 32, 1, 2, {6, 2}},                   /* Lq < Lk: offset 12 */
        {1, 4, 1, 70, 70, 64, 0, 6, {69, 3, 3, 40, 0, 68}},   /* blocked path, repeats */
        {1, 4, 2, 9, 40, 24, 1, 5, {8, 1, 4, 0, 7}},          /* blocked path, offset 31 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        for (int use_reference = 0; use_reference < 2; use_reference++)
            check_selected_rows(&cases[i], use_reference);
}

/* Lq 2, Lk 3, head dim 1, q = 0 so every visible key scores equally. */
static void run_tiny(attention_fn fn, int causal, const float *mask, const float *sinks,
                     const int64_t *positions, float out[2]) {
    const float q[2] = {0, 0}, k[3] = {1, 2, 3}, v[3] = {1, 2, 6};
    assert_int_equal(fn(q, k, v, out, 1, 1, 1, 2, 3, 1, 1, 2, 2, 1, 3, 3, 1, 3, 3, 1, 2, 2, 1,
                        1.0f, causal, mask, 0, 0, 3, sinks, positions),
                     0);
}

static void test_attention_by_hand(void **state) {
    (void)state;
    {   /* 3 query heads cannot share 2 kv heads */
        float q[3] = {0}, kv[2] = {0}, out[3];
        assert_int_not_equal(fu_rt_attention_f32(q, kv, kv, out, 1, 3, 2, 1, 1, 1, 1, 3, 1, 1, 2,
                                                 1, 1, 2, 1, 1, 3, 1, 1, 1.0f, 0, NULL, 0, 0, 0,
                                                 NULL, NULL),
                             0);
    }
    attention_fn fns[2] = {fu_rt_attention_f32, fu_ref_attention_f32};
    for (int f = 0; f < 2; f++) {
        float out[2];
        /* causal, aligned to the end: query 0 sees keys 0, 1; query 1 all */
        run_tiny(fns[f], 1, NULL, NULL, NULL, out);
        assert_float_equal(out[0], 1.5, 1e-6);
        assert_float_equal(out[1], 3.0, 1e-6);
        /* causal, aligned to the start: query 0 sees key 0; query 1 keys 0, 1 */
        run_tiny(fns[f], FU_RT_CAUSAL_START, NULL, NULL, NULL, out);
        assert_float_equal(out[0], 1.0, 1e-6);
        assert_float_equal(out[1], 1.5, 1e-6);
        run_tiny(fns[f], 0, NULL, NULL, NULL, out);
        assert_float_equal(out[0], 3.0, 1e-6);
        assert_float_equal(out[1], 3.0, 1e-6);
        /* sink 0 adds exp(0) = 1 to each denominator */
        const float sink[1] = {0};
        run_tiny(fns[f], 1, NULL, sink, NULL, out);
        assert_float_equal(out[0], 3.0 / 3, 1e-6);
        assert_float_equal(out[1], 9.0 / 4, 1e-6);
        /* mask: row 0 hides key 0 (-inf) and halves key 2's weight; row 1
         * fully masked gives zeros, also with a -inf sink */
        const float mask[6] = {-INFINITY, 0, logf(0.5f), -INFINITY, -INFINITY, -INFINITY};
        const float no_sink[1] = {-INFINITY};
        run_tiny(fns[f], 0, mask, no_sink, NULL, out);
        assert_float_equal(out[0], (2 + 0.5 * 6) / 1.5, 1e-5);
        assert_float_equal(out[1], 0.0, 0);
        /* given positions: query 0 at 0 sees key 0, query 1 at -1 sees nothing */
        const int64_t positions[2] = {0, -1};
        run_tiny(fns[f], 1, NULL, NULL, positions, out);
        assert_float_equal(out[0], 1.0, 1e-6);
        assert_float_equal(out[1], 0.0, 0);
        /* positions past the last key see every key; ignored without is_causal */
        const int64_t far[2] = {1, 7};
        run_tiny(fns[f], 1, NULL, NULL, far, out);
        assert_float_equal(out[0], 1.5, 1e-6);
        assert_float_equal(out[1], 3.0, 1e-6);
        run_tiny(fns[f], 0, NULL, NULL, positions, out);
        assert_float_equal(out[0], 3.0, 1e-6);
        assert_float_equal(out[1], 3.0, 1e-6);
    }
}

/* ==== SwiGLU ============================================================= */

static void test_swiglu(void **state) {
    (void)state;
    const int64_t lengths[] = {1, 7, 65, 3072};
    for (size_t c = 0; c < sizeof lengths / sizeof *lengths; c++) {
        int64_t rows = 5, n = lengths[c];
        /* gate and up as the two halves of one [rows, 2n] tensor */
        float *fused_input = random_floats(rows * 2 * n, -12, 12);
        float *fast = filled_floats(rows * n, NAN), *ref = filled_floats(rows * n, NAN);
        fu_rt_swiglu_f32(fused_input, fused_input + n, fast, rows, n, 2 * n, 2 * n, n);
        assert_int_equal(fu_ref_swiglu_f32(fused_input, fused_input + n, ref, rows, n, 2 * n,
                                           2 * n, n),
                         0);
        assert_close("swiglu", fast, ref, rows * n);
        free(fused_input), free(fast), free(ref);
    }
    /* exp's range ends: huge |gate| and a spread of magnitudes, compared
     * elementwise relative to each reference value */
    enum { N = 4096 };
    float gate[N], up[N], fast[N], ref[N];
    for (int i = 0; i < N; i++) {
        gate[i] = (i % 2 ? -1 : 1) * powf(10.0f, uniform(-4, 2.3f)); /* |g| up to 200 */
        up[i] = 1.0f;
    }
    fu_rt_swiglu_f32(gate, up, fast, 1, N, N, N, N);
    assert_int_equal(fu_ref_swiglu_f32(gate, up, ref, 1, N, N, N, N), 0);
    for (int i = 0; i < N; i++) {
        double tol = 2e-6 * fabs(ref[i]) + 1e-30;
        if (!(fabs(fast[i] - ref[i]) <= tol) && !(fabs(ref[i]) < 1e-30 && fabs(fast[i]) < 1e-30)) {
            print_error("swiglu(%g) = %g, reference %g\n", gate[i], fast[i], ref[i]);
            fail();
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rms_norm),
        cmocka_unit_test(test_layer_norm),
        cmocka_unit_test(test_rope_matches_reference),
        cmocka_unit_test(test_rope_by_hand),
        cmocka_unit_test(test_rope_position_out_of_range),
        cmocka_unit_test(test_attention_matches_reference),
        cmocka_unit_test(test_attention_by_hand),
        cmocka_unit_test(test_attention_selected_rows),
        cmocka_unit_test(test_swiglu),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
