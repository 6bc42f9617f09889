/* Tests of the "attention" fusion rule and the fused Attention op.
 *
 * Each case builds composed attention (graph_builder.h; one knob per exporter
 * variant or near miss), runs the fast pipeline with a fusion log and checks
 * what fused and how (is_causal, kv_num_heads, qkv_layout, attn_mask kept or
 * not). Fused cases are compiled with the JIT in the bare and the fast
 * profile, run on the same random inputs, and must agree within 1e-5 x the
 * output's scale. Near misses must fuse nothing and log a reason naming the
 * cause. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "testutil.h"
#include "../ir/ir.h"
#include "../ir/json_ir.h"
#include "../compiler/driver.h"
#include "../passes/passes.h"
#include "../passes/fusion.h"
#include "../compiler/emit.h"
#include "../api/fusec.h"
#include "graphutil.h"
#include "graph_builder.h"

/* ---- the attention model ------------------------------------------------------ */

typedef struct {
    int b, hq, hkv, lq, lk, d, dv;
    int sym;              /* Lq = Lk = symbol "seq" bounded by lq */
    int bshd;             /* 1: Q, K, V given as [B, L, H, D] + Transpose; 2: only K and V */
    const char *repeat;   /* NULL (K/V used as given), "expand", "tile5", "tile4", "expand1" */
    const char *scale;    /* "div" (default), "mul", "preq", "both", "kt", "none", "tensor" */
    const char *mask;     /* NULL, "const_causal", "const_shift", "const_random", "trilu", "range",
                             "range_gt", "range_anti", "range_plus1", "range_plus2", "triu_mul_gt", "triu_mul_gt1",
                             "sdpa_tril", "sdpa_tril_k1", "fill_range", "fill_input", "pad_input", "col1" */
    double blocked;       /* value used for hidden keys (default -inf) */
    int mask_left;        /* Add(mask, scores) */
    int softmax_axis;     /* 0: -1 */
    int expose;           /* the softmax output is also a graph output */
    int v_single_head;    /* V is [B, 1, Lk, Dv], broadcast by the MatMul */
} attn_spec;

/* Repeats kv tensor x (BHSD, hkv heads) to hq heads as `tag`_rep. */
static int repeat_kv(tb_graph *b, const attn_spec *s, int x, const char *tag) {
    char rep[32], u[32], e[32];
    snprintf(rep, sizeof rep, "%s_rep", tag);
    snprintf(u, sizeof u, "%s_u", tag);
    snprintf(e, sizeof e, "%s_e", tag);
    int n = s->hq / s->hkv;
    if (!s->repeat) return x;
    if (!strcmp(s->repeat, "tile4")) return tb_op(b, "Tile", rep, x, tb_const_ints(b, "tile4_reps", TB_INTS(1, n, 1, 1)));
    int xu = tb_op(b, "Unsqueeze", u, x, tb_const_ints(b, "axes_2", TB_INTS(2)));
    int xe = !strcmp(s->repeat, "tile5")
                 ? tb_op(b, "Tile", e, xu, tb_const_ints(b, "tile5_reps", TB_INTS(1, 1, n, 1, 1)))
                 : tb_op(b, "Expand", e, xu, tb_const_ints(b, "expand5_shape", TB_INTS(1, 1, n, 1, 1)));
    int merge = tag[0] == 'k' ? tb_const_ints(b, "k_merge", TB_INTS(s->b, s->hq, -1, s->d))
                              : tb_const_ints(b, "v_merge", TB_INTS(s->b, s->hq, -1, s->dv));
    return tb_op(b, "Reshape", rep, xe, merge);
}

/* The constant [Lq, Lk] masks: causal (end-aligned), shifted (the diagonal
 * hidden too), random additive, and Trilu's all -inf input; hidden keys
 * get `blocked`. Malloc'd. */
static float *mask_values(const attn_spec *s, double blocked) {
    float *m = malloc(sizeof(float) * (size_t)(s->lq * s->lk));
    int off = s->lk - s->lq;
    unsigned seed = 99;
    for (int i = 0; i < s->lq; i++)
        for (int j = 0; j < s->lk; j++) {
            int hide = !strcmp(s->mask, "const_causal") ? j > i + off : !strcmp(s->mask, "const_shift") ? j >= i + off : 0;
            seed = seed * 1664525u + 1013904223u;
            double x = !strcmp(s->mask, "const_random") ? -(double)((seed >> 9) % 2000) / 1000.0 : 0.0;
            m[i * s->lk + j] = !strcmp(s->mask, "trilu") ? -INFINITY : (float)(hide ? blocked : x);
        }
    return m;
}

static tb_graph *build_attention(const attn_spec *s) {
    tb_graph *b = tb_new("attention");
    b->node_suffix = "_node";
    int64_t lq = s->lq, lk = s->lk;
    if (s->sym) lq = lk = tb_symbol(b, "seq", s->lq);
    double d = s->d;

    /* Q, K, V (optionally BSHD + Transpose). */
    int vh = s->v_single_head ? 1 : s->hkv;
    int q = s->bshd == 1 ? tb_input(b, "q", FU_F32, TB_DIMS(s->b, lq, s->hq, s->d))
                         : tb_input(b, "q", FU_F32, TB_DIMS(s->b, s->hq, lq, s->d));
    int k = s->bshd ? tb_input(b, "k", FU_F32, TB_DIMS(s->b, lk, s->hkv, s->d))
                    : tb_input(b, "k", FU_F32, TB_DIMS(s->b, s->hkv, lk, s->d));
    int v = s->bshd ? tb_input(b, "v", FU_F32, TB_DIMS(s->b, lk, vh, s->dv))
                    : tb_input(b, "v", FU_F32, TB_DIMS(s->b, vh, lk, s->dv));
    const int q_in = q;
    if (s->bshd == 1) q = tb_attr_ints(b, tb_op(b, "Transpose", "q_bhsd", q), "perm", TB_INTS(0, 2, 1, 3));
    if (s->bshd) {
        k = tb_attr_ints(b, tb_op(b, "Transpose", "k_bhsd", k), "perm", TB_INTS(0, 2, 1, 3));
        v = tb_attr_ints(b, tb_op(b, "Transpose", "v_bhsd", v), "perm", TB_INTS(0, 2, 1, 3));
    }

    /* GQA repeats. */
    if (s->repeat && !strcmp(s->repeat, "expand1")) {
        int shape = tb_const_ints(b, "expand1_shape", TB_INTS(1, s->hq, 1, 1));
        k = tb_op(b, "Expand", "k_rep", k, shape);
        v = tb_op(b, "Expand", "v_rep", v, shape);
    } else {
        k = repeat_kv(b, s, k, "k");
        if (!s->v_single_head) v = repeat_kv(b, s, v, "v");
    }

    /* Scores with the scale in one of its places. */
    const char *scale = s->scale ? s->scale : "div";
    int kt = tb_attr_ints(b, tb_op(b, "Transpose", "kt", k), "perm", TB_INTS(0, 1, 3, 2));
    if (!strcmp(scale, "preq")) q = tb_op(b, "Mul", "qs", q, tb_scalar_f32(b, "inv_sqrt_d", (float)(1.0 / sqrt(d))));
    if (!strcmp(scale, "both")) {
        int quarter = tb_scalar_f32(b, "quarter", (float)pow(d, -0.25));
        q = tb_op(b, "Mul", "qs", q, quarter);
        kt = tb_op(b, "Mul", "kts", quarter, kt);
    } else if (!strcmp(scale, "kt")) {
        kt = tb_op(b, "Div", "kts", kt, tb_scalar_f32(b, "sqrt_d", (float)sqrt(d)));
    }
    int scores = tb_op(b, "MatMul", "qk", q, kt);
    if (!strcmp(scale, "div")) {
        scores = tb_op(b, "Div", "scores", scores, tb_scalar_f32(b, "sqrt_d", (float)sqrt(d)));
    } else if (!strcmp(scale, "mul")) {
        scores = tb_op(b, "Mul", "scores", tb_scalar_f32(b, "inv_sqrt_d", (float)(1.0 / sqrt(d))), scores);
    } else if (!strcmp(scale, "tensor")) {
        float per_head[64];
        for (int h = 0; h < s->hq; h++) per_head[h] = (float)(1.0 / sqrt(d));
        scores = tb_op(b, "Mul", "scores", scores, tb_const_f32(b, "head_scale", TB_DIMS(1, s->hq, 1, 1), per_head));
    }

    /* Mask. */
    double blocked = s->blocked ? s->blocked : -INFINITY;
    const char *mask_kind = s->mask;
    int mask = -1, masked = scores;
    if (mask_kind && !strncmp(mask_kind, "const_", 6)) {
        float *m = mask_values(s, blocked);
        mask = tb_const_f32(b, "mask", TB_DIMS(1, 1, s->lq, s->lk), m);
        free(m);
    } else if (mask_kind && !strcmp(mask_kind, "trilu")) {
        int full;
        if (s->sym) {
            /* [seq, seq] from Q's shape, filled with the blocked value. */
            int q_shape = tb_op(b, "Shape", "q_shape", q_in);
            int seq_1d = tb_op(b, "Gather", "seq_1d", q_shape, tb_const_ints(b, "idx_2", TB_INTS(s->bshd == 1 ? 1 : 2)));
            tb_attr_int(b, seq_1d, "axis", 0);
            int mask_shape = tb_attr_int(b, tb_op(b, "Concat", "mask_shape", seq_1d, seq_1d), "axis", 0);
            float fill = isinf(blocked) ? -INFINITY : -1e9f;
            full = tb_op(b, "ConstantOfShape", "full", mask_shape);
            tb_attr_tensor(b, full, "value", FU_F32, TB_DIMS(1), &fill);
        } else {
            float *m = mask_values(s, blocked);
            full = tb_const_f32(b, "full", TB_DIMS(s->lq, s->lk), m);
            free(m);
        }
        mask = tb_op(b, "Trilu", "mask", full, tb_scalar_i64(b, "trilu_k", 1 + s->lk - s->lq));
        tb_attr_int(b, mask, "upper", 1);
    } else if (mask_kind && (!strncmp(mask_kind, "range", 5) || !strcmp(mask_kind, "fill_range"))) {
        /* Row and column indices from Range over the sequence length. */
        int q_shape = tb_op(b, "Shape", "q_shape", q_in);
        int seq_len = tb_op(b, "Gather", "seq_len", q_shape, tb_scalar_i64(b, "idx_2s", s->bshd == 1 ? 1 : 2));
        tb_attr_int(b, seq_len, "axis", 0);
        int positions = tb_op(b, "Range", "positions", tb_scalar_i64(b, "zero_i", 0), seq_len, tb_scalar_i64(b, "one_i", 1));
        /* range_plus1/2: transformers < 4.36 `_make_causal_mask`, keep j < (i + 1) (causal) or
         * j < i + 2 (one key too many: not causal). */
        int plus = !strcmp(mask_kind, "range_plus1") ? 1 : !strcmp(mask_kind, "range_plus2") ? 2 : 0;
        int row_index = plus ? tb_op(b, "Add", "positions_plus", positions, tb_scalar_i64(b, "shift_i", plus)) : positions;
        int rows = tb_op(b, "Unsqueeze", "rows", row_index, tb_const_ints(b, "axes_1", TB_INTS(1)));
        int cols = tb_op(b, "Unsqueeze", "cols", positions, tb_const_ints(b, "axes_0", TB_INTS(0)));
        int cond;
        if (plus) {
            /* Where(j < i + plus, 0, full(min)), full a ConstantOfShape [seq, seq]. */
            int seq_1d = tb_op(b, "Unsqueeze", "seq_1d", seq_len, tb_const_ints(b, "axes_0b", TB_INTS(0)));
            int mask_shape = tb_attr_int(b, tb_op(b, "Concat", "mask_shape", seq_1d, seq_1d), "axis", 0);
            float fill = isinf(blocked) ? -3.4028234663852886e38f : (float)blocked;
            int full = tb_op(b, "ConstantOfShape", "full", mask_shape);
            tb_attr_tensor(b, full, "value", FU_F32, TB_DIMS(1), &fill);
            cond = tb_op(b, "Less", "cond", cols, rows);
            mask = tb_op(b, "Where", "mask", cond, tb_scalar_f32(b, "zero_f", 0.0f), full);
        } else if (!strcmp(mask_kind, "range")) cond = tb_op(b, "Less", "cond", rows, cols);
        else if (!strcmp(mask_kind, "range_gt")) cond = tb_op(b, "Greater", "cond", cols, rows);
        else if (!strcmp(mask_kind, "range_anti")) cond = tb_op(b, "Less", "cond", cols, rows);
        else cond = tb_op(b, "GreaterOrEqual", "cond", rows, cols);   /* keep j <= i */
        int blocked_c = tb_scalar_f32(b, "blocked", (float)blocked);
        if (plus)
            ;
        else if (!strcmp(mask_kind, "fill_range"))
            masked = tb_op(b, "Where", "masked", cond, scores, blocked_c);
        else
            mask = tb_op(b, "Where", "mask", cond, blocked_c, tb_scalar_f32(b, "zero_f", 0.0f));
    } else if (mask_kind && (!strcmp(mask_kind, "triu_mul_gt") || !strcmp(mask_kind, "triu_mul_gt1"))) {
        /* transformers 4.40+: triu(full(min), 1) * (arange(Lk) > cache_position.reshape(-1, 1));
         * triu_mul_gt1 compares with cache_position + 1 (keys up to i + 1 visible: not causal). */
        int q_shape = tb_op(b, "Shape", "q_shape", q_in);
        int seq_len = tb_op(b, "Gather", "seq_len", q_shape, tb_scalar_i64(b, "idx_2s", s->bshd == 1 ? 1 : 2));
        tb_attr_int(b, seq_len, "axis", 0);
        int seq_1d = tb_op(b, "Unsqueeze", "seq_1d", seq_len, tb_const_ints(b, "axes_0b", TB_INTS(0)));
        int mask_shape = tb_attr_int(b, tb_op(b, "Concat", "mask_shape", seq_1d, seq_1d), "axis", 0);
        float fill = -3.4028234663852886e38f;
        int full = tb_op(b, "ConstantOfShape", "full", mask_shape);
        tb_attr_tensor(b, full, "value", FU_F32, TB_DIMS(1), &fill);
        int tri = tb_attr_int(b, tb_op(b, "Trilu", "tri", full, tb_scalar_i64(b, "trilu_k", 1)), "upper", 1);
        int positions = tb_op(b, "Range", "positions", tb_scalar_i64(b, "zero_i", 0), seq_len, tb_scalar_i64(b, "one_i", 1));
        int cache_pos = !strcmp(mask_kind, "triu_mul_gt1")
                            ? tb_op(b, "Add", "cache_pos", positions, tb_scalar_i64(b, "shift_i", 1)) : positions;
        int rows = tb_op(b, "Reshape", "rows", cache_pos, tb_const_ints(b, "rows_shape", TB_INTS(-1, 1)));
        int later = tb_op(b, "Greater", "later", positions, rows);
        mask = tb_op(b, "Mul", "mask", tri, tb_attr_int(b, tb_op(b, "Cast", "later_f", later), "to", FU_F32));
    } else if (mask_kind && (!strcmp(mask_kind, "sdpa_tril") || !strcmp(mask_kind, "sdpa_tril_k1"))) {
        /* torch.onnx's scaled_dot_product_attention(is_causal=True): Where(Equal(Trilu(Expand(1.0,
         * [L, S]), upper=0), 0), -inf, 0); sdpa_tril_k1: Trilu k = 1 (one key ahead: not causal). */
        int q_shape = tb_op(b, "Shape", "q_shape", q_in);
        int k_shape = tb_op(b, "Shape", "k_shape", k);
        int lq_1d = tb_op(b, "Slice", "lq_1d", q_shape, tb_const_ints(b, "m2", TB_INTS(s->bshd == 1 ? 1 : -2)),
                          tb_const_ints(b, "m1", TB_INTS(s->bshd == 1 ? 2 : -1)));
        int lk_1d = tb_op(b, "Slice", "lk_1d", k_shape, tb_const_ints(b, "m2k", TB_INTS(-2)), tb_const_ints(b, "m1k", TB_INTS(-1)));
        int size = tb_attr_int(b, tb_op(b, "Concat", "size", lq_1d, lk_1d), "axis", 0);
        float one = 1.0f, zero = 0.0f, ninf = -INFINITY;
        int ones = tb_op(b, "Expand", "ones", tb_const_f32(b, "one_f", TB_DIMS(1), &one), size);
        int tril = !strcmp(mask_kind, "sdpa_tril_k1") ? tb_op(b, "Trilu", "tril", ones, tb_scalar_i64(b, "tril_k", 1))
                                                      : tb_op(b, "Trilu", "tril", ones);
        tb_attr_int(b, tril, "upper", 0);
        int zero_c = tb_const_f32(b, "zero_1", TB_DIMS(1), &zero);
        int eq = tb_op(b, "Equal", "is_zero", tril, zero_c);
        mask = tb_op(b, "Where", "mask", eq, tb_const_f32(b, "ninf_1", TB_DIMS(1), &ninf), zero_c);
    } else if (mask_kind && !strcmp(mask_kind, "fill_input")) {
        int keep = tb_input(b, "keep", FU_BOOL, TB_DIMS(lq, lk));
        masked = tb_op(b, "Where", "masked", keep, scores, tb_scalar_f32(b, "blocked", (float)blocked));
    } else if (mask_kind && !strcmp(mask_kind, "pad_input")) {
        mask = tb_input(b, "mask", FU_F32, TB_DIMS(s->b, 1, 1, lk));
    } else if (mask_kind && !strcmp(mask_kind, "col1")) {
        mask = tb_input(b, "mask", FU_F32, TB_DIMS(lq, 1));
    }
    if (mask >= 0) masked = s->mask_left ? tb_op(b, "Add", "masked", mask, scores) : tb_op(b, "Add", "masked", scores, mask);

    int probs = tb_attr_int(b, tb_op(b, "Softmax", "probs", masked), "axis", s->softmax_axis ? s->softmax_axis : -1);
    tb_output(b, tb_op(b, "MatMul", "y", probs, v));
    if (s->expose) tb_output(b, probs);
    return b;
}

/* ---- running ------------------------------------------------------------------ */

/* Deterministic inputs, the same for both profiles: floats in [-2, 2];
 * bool masks random but keeping the diagonal so no row is empty. */
static void fill_attention(const fu_value *v, int k, const int64_t *shape, int64_t numel, void *data) {
    unsigned seed = 4321u + 101u * (unsigned)k;
    for (int64_t i = 0; i < numel; i++) {
        seed = seed * 1664525u + 1013904223u;
        if (v->dtype == FU_BOOL) {
            int64_t cols = shape[v->rank - 1], r = (i / cols) % shape[v->rank - 2], col = i % cols;
            ((uint8_t *)data)[i] = col == r || ((seed >> 12) & 1);
        } else {
            ((float *)data)[i] = (float)((seed >> 9) % 4001) / 1000.0f - 2.0f;
        }
    }
}

/* Compiles the model in a profile, binds deterministic random inputs (the
 * same for both profiles; symbols at their bounds) and runs it. */
static fusec_model *run_profile(const char *path, const fu_graph *g, const char *profile) {
    return tu_run_profile(path, g, profile, NULL, fill_attention);
}

typedef struct {
    int fused;             /* 1: one Attention node expected */
    int is_causal;
    int kv_heads;          /* expected kv_num_heads */
    int has_mask;          /* attn_mask input kept */
    const char *layout;    /* expected qkv_layout (NULL: BHSD, attribute absent) */
    const char *reason;    /* near miss: substring of the logged reason */
} expectation;

static void dump_log(const fu_fusion_log *log) {
    for (int i = 0; i < log->n; i++)
        print_message("  log: %s %s %s: %s\n", log->events[i].fused ? "fused" : "miss", log->events[i].rule,
                      log->events[i].node, log->events[i].reason);
}

/* Saves the model (freeing the builder), fuses and checks it. */
static void check_model(tb_graph *b, int hq, int repeated_kv, const expectation *want) {
    char *path = tb_save(b);
    tb_free(b);
    fu_err err = {0};
    fu_graph *g = fu_ir_load(path, &err);
    if (!g) fail_msg("load: %s", err.msg);
    fu_fusion_log log = {0};
    fu_pass_opts opts = {.profile = FU_PROFILE_FAST, .verbose = 0, .fusion_log = &log, .evaluate = fu_evaluate_graph};
    if (fu_run_pipeline(g, &opts, NULL, &err)) fail_msg("pipeline: %s", err.msg);

    int fused = tu_count_op(g, "Attention");
    if (getenv("FUSEC_TEST_LOG")) dump_log(&log);
    if (fused != want->fused || fu_fusion_log_count(&log, "attention", 1) != want->fused) {
        dump_log(&log);
        fail_msg("expected %d Attention, got %d in the graph and %d in the log", want->fused, fused,
                 fu_fusion_log_count(&log, "attention", 1));
    }
    if (want->fused) {
        const fu_node *a = tu_find_op(g, "Attention");
        assert_int_equal(fu_attr_int(a, "is_causal", -1), want->is_causal);
        assert_int_equal(fu_attr_int(a, "kv_num_heads", -1), want->kv_heads);
        assert_int_equal(fu_attr_int(a, "q_num_heads", -1), hq);
        assert_int_equal(a->n_in > 3 && a->in[3] >= 0, want->has_mask);
        const char *layout = fu_attr_string(a, "qkv_layout", "BHSD");
        assert_string_equal(layout, want->layout ? want->layout : "BHSD");
        /* What the pattern computed is gone: no Softmax, no MatMul. */
        assert_int_equal(tu_count_op(g, "Softmax"), 0);
        assert_int_equal(tu_count_op(g, "MatMul"), 0);
        if (repeated_kv && want->kv_heads != hq) {
            /* K/V are read un-repeated / untransposed: the repeats died. */
            assert_int_equal(tu_count_op(g, "Expand") + tu_count_op(g, "Tile"), 0);
        }
        if (want->layout && !strchr(want->layout, ',')) assert_int_equal(tu_count_op(g, "Transpose"), 0);
    } else {
        int found = 0;
        for (int i = 0; i < log.n; i++)
            if (!log.events[i].fused && !strcmp(log.events[i].rule, "attention") &&
                strstr(log.events[i].reason, want->reason))
                found = 1;
        if (!found) {
            dump_log(&log);
            fail_msg("no attention near miss mentions '%s'", want->reason);
        }
    }
    fu_fusion_log_free(&log);

    if (want->fused) {
        fusec_model *bare = run_profile(path, g, "bare"), *fast = run_profile(path, g, "fast");
        long n_ref, n_got;
        float *ref = tu_output_f32(bare, "y", &n_ref), *got = tu_output_f32(fast, "y", &n_got);
        assert_int_equal(n_ref, n_got);
        double scale = tu_max_abs(ref, n_ref), diff = tu_max_abs_diff(ref, got, n_ref);
        assert_true(scale > 0.1);
        if (!(diff <= 1e-5 * scale)) fail_msg("max diff %g > %g", diff, 1e-5 * scale);
        free(ref);
        free(got);
        fusec_free(bare);
        fusec_free(fast);
    }
    fu_graph_free(g);
    tb_remove(path);
}

static void check(const attn_spec *s, const expectation *want) {
    check_model(build_attention(s), s->hq, s->repeat != NULL, want);
}

/* ---- fused variants ------------------------------------------------------------- */

/* Plain MHA, scale as Div by sqrt(d), constant causal mask, Lq = Lk odd. */
static void test_mha_div_const_causal(void **state) {
    (void)state;
    attn_spec s = {.b = 2, .hq = 4, .hkv = 4, .lq = 7, .lk = 7, .d = 64, .dv = 64, .mask = "const_causal"};
    expectation e = {.fused = 1, .is_causal = 1, .kv_heads = 4};
    check(&s, &e);
}

/* GQA 2:1 via Unsqueeze/Expand/Reshape, Mul scale, Lq 5 < Lk 17 with the
 * causal mask aligned to the end (constant), mask on the left of the Add. */
static void test_gqa_expand_offset_causal(void **state) {
    (void)state;
    attn_spec s = {.b = 1, .hq = 8, .hkv = 4, .lq = 5, .lk = 17, .d = 64, .dv = 64, .repeat = "expand",
                   .scale = "mul", .mask = "const_causal", .mask_left = 1, .blocked = -1e9};
    expectation e = {.fused = 1, .is_causal = 1, .kv_heads = 4};
    check(&s, &e);
}

/* GQA 4:1 via Unsqueeze/Tile/Reshape, head dim 128, scale on Q before the
 * MatMul, Trilu causal mask with k = Lk - Lq + 1. */
static void test_gqa_tile_preq_trilu(void **state) {
    (void)state;
    attn_spec s = {.b = 1, .hq = 8, .hkv = 2, .lq = 5, .lk = 17, .d = 128, .dv = 128, .repeat = "tile5",
                   .scale = "preq", .mask = "trilu"};
    expectation e = {.fused = 1, .is_causal = 1, .kv_heads = 2};
    check(&s, &e);
}

/* Symbolic sequence: Range/Less/Where causal mask (the Qwen3 spelling), GQA
 * 2:1, Q/K/V from [B, L, H, D] transposes read in place (BSHD). */
static void test_sym_range_mask_bshd(void **state) {
    (void)state;
    attn_spec s = {.b = 1, .hq = 4, .hkv = 2, .lq = 33, .lk = 33, .d = 64, .dv = 64, .sym = 1, .bshd = 1,
                   .repeat = "expand", .mask = "range"};
    expectation e = {.fused = 1, .is_causal = 1, .kv_heads = 2, .layout = "BSHD"};
    check(&s, &e);
}

/* Greater(cols, rows) spelling; only K and V arrive as BSHD. */
static void test_sym_range_gt_mixed_layout(void **state) {
    (void)state;
    attn_spec s = {.b = 2, .hq = 4, .hkv = 1, .lq = 9, .lk = 9, .d = 64, .dv = 64, .sym = 1, .bshd = 2,
                   .repeat = "expand", .mask = "range_gt", .blocked = -3.4028234663852886e38};
    expectation e = {.fused = 1, .is_causal = 1, .kv_heads = 1, .layout = "BHSD,BSHD,BSHD"};
    check(&s, &e);
}

/* Symbolic Trilu(ConstantOfShape(-inf), k=1), scale d^-1/4 on both Q and Kᵀ. */
static void test_sym_trilu_both_scaled(void **state) {
    (void)state;
    attn_spec s = {.b = 1, .hq = 2, .hkv = 2, .lq = 17, .lk = 17, .d = 128, .dv = 64, .sym = 1, .scale = "both",
                   .mask = "trilu"};
    expectation e = {.fused = 1, .is_causal = 1, .kv_heads = 2};
    check(&s, &e);
}

/* Masked fill Where(i >= j, scores, -inf) with Range indices -> is_causal;
 * scale as Div on Kᵀ. */
static void test_sym_masked_fill_causal(void **state) {
    (void)state;
    attn_spec s = {.b = 1, .hq = 4, .hkv = 4, .lq = 11, .lk = 11, .d = 64, .dv = 64, .sym = 1, .scale = "kt",
                   .mask = "fill_range"};
    expectation e = {.fused = 1, .is_causal = 1, .kv_heads = 4};
    check(&s, &e);
}

/* transformers < 4.36 (Optimum exports): Where(j < (i + 1), 0,
 * ConstantOfShape([S, S], min)); the row index is Range + 1. */
static void test_sym_range_plus1_full(void **state) {
    (void)state;
    attn_spec s = {.b = 1, .hq = 4, .hkv = 2, .lq = 13, .lk = 13, .d = 64, .dv = 64, .sym = 1, .bshd = 1,
                   .repeat = "expand", .mask = "range_plus1"};
    expectation e = {.fused = 1, .is_causal = 1, .kv_heads = 2, .layout = "BSHD"};
    check(&s, &e);
}

/* The same with i + 2: each query sees one key ahead, not causal: kept. */
static void test_sym_range_plus2_kept(void **state) {
    (void)state;
    attn_spec s = {.b = 1, .hq = 2, .hkv = 2, .lq = 9, .lk = 9, .d = 64, .dv = 64, .sym = 1, .mask = "range_plus2",
                   .blocked = -1e9};
    expectation e = {.fused = 1, .is_causal = 0, .kv_heads = 2, .has_mask = 1};
    check(&s, &e);
}

/* transformers 4.40-4.47: triu(full(min), 1) * Cast(arange > cache_position[:, None]). */
static void test_sym_triu_times_greater(void **state) {
    (void)state;
    attn_spec s = {.b = 1, .hq = 4, .hkv = 2, .lq = 12, .lk = 12, .d = 64, .dv = 64, .sym = 1, .repeat = "expand",
                   .scale = "mul", .mask = "triu_mul_gt"};
    expectation e = {.fused = 1, .is_causal = 1, .kv_heads = 2};
    check(&s, &e);
}

/* The product with a condition that is not causal (j > i + 1) is no causal mask: kept. */
static void test_sym_triu_times_shifted_kept(void **state) {
    (void)state;
    attn_spec s = {.b = 1, .hq = 2, .hkv = 2, .lq = 8, .lk = 8, .d = 64, .dv = 64, .sym = 1, .mask = "triu_mul_gt1"};
    expectation e = {.fused = 1, .is_causal = 0, .kv_heads = 2, .has_mask = 1};
    check(&s, &e);
}

/* torch.onnx's SDPA export with is_causal: Where(Equal(Trilu(Expand(1.0), upper=0), 0), -inf, 0),
 * scale d^-1/4 on Q and Kᵀ. */
static void test_sym_sdpa_tril_equal(void **state) {
    (void)state;
    attn_spec s = {.b = 1, .hq = 4, .hkv = 2, .lq = 10, .lk = 10, .d = 64, .dv = 64, .sym = 1, .repeat = "expand",
                   .scale = "both", .mask = "sdpa_tril"};
    expectation e = {.fused = 1, .is_causal = 1, .kv_heads = 2};
    check(&s, &e);
}

/* Trilu k = 1 lets each query see the next key: not causal, kept. */
static void test_sym_sdpa_tril_k1_kept(void **state) {
    (void)state;
    attn_spec s = {.b = 1, .hq = 2, .hkv = 2, .lq = 7, .lk = 7, .d = 64, .dv = 64, .sym = 1, .mask = "sdpa_tril_k1"};
    expectation e = {.fused = 1, .is_causal = 0, .kv_heads = 2, .has_mask = 1};
    check(&s, &e);
}

/* No mask, no scale (scale 1), MQA via Expand of the single kv head. */
static void test_mqa_expand_no_mask(void **state) {
    (void)state;
    attn_spec s = {.b = 1, .hq = 4, .hkv = 1, .lq = 3, .lk = 13, .d = 64, .dv = 64, .repeat = "expand1",
                   .scale = "none"};
    expectation e = {.fused = 1, .is_causal = 0, .kv_heads = 1};
    check(&s, &e);
}

/* Tile of the head axis maps query head h to kv head h mod Hkv: not the
 * kernel's grouping, so the repeated K/V are read as they are. */
static void test_tile_head_axis_reads_repeated(void **state) {
    (void)state;
    attn_spec s = {.b = 1, .hq = 4, .hkv = 2, .lq = 7, .lk = 7, .d = 64, .dv = 64, .repeat = "tile4",
                   .mask = "const_causal"};
    expectation e = {.fused = 1, .is_causal = 1, .kv_heads = 4};
    check(&s, &e);
}

/* With one kv head, Tile of the head axis is the kernel's grouping too. */
static void test_mqa_tile_head_axis(void **state) {
    (void)state;
    attn_spec s = {.b = 2, .hq = 4, .hkv = 1, .lq = 7, .lk = 7, .d = 64, .dv = 64, .repeat = "tile4",
                   .mask = "const_causal"};
    expectation e = {.fused = 1, .is_causal = 1, .kv_heads = 1};
    check(&s, &e);
}

/* Lq 9 > Lk 5: the first queries see no key, so even an end-aligned causal
 * mask (finite blocked value) stays a mask and matches the composed graph. */
static void test_short_keys_mask_kept(void **state) {
    (void)state;
    attn_spec s = {.b = 1, .hq = 2, .hkv = 2, .lq = 9, .lk = 5, .d = 64, .dv = 64, .mask = "const_causal",
                   .blocked = -1e9};
    expectation e = {.fused = 1, .is_causal = 0, .kv_heads = 2, .has_mask = 1};
    check(&s, &e);
}

/* Non-causal masks stay as attn_mask: j >= i + (Lk - Lq) (diagonal hidden
 * too), a random additive constant, a padding mask input [B, 1, 1, Lk], and
 * an anti-causal Range mask. */
static void test_shifted_mask_kept(void **state) {
    (void)state;
    attn_spec s = {.b = 1, .hq = 4, .hkv = 2, .lq = 5, .lk = 17, .d = 64, .dv = 64, .repeat = "expand",
                   .mask = "const_shift"};
    expectation e = {.fused = 1, .is_causal = 0, .kv_heads = 2, .has_mask = 1};
    check(&s, &e);
}

static void test_random_mask_kept(void **state) {
    (void)state;
    attn_spec s = {.b = 2, .hq = 2, .hkv = 2, .lq = 7, .lk = 7, .d = 64, .dv = 64, .mask = "const_random"};
    expectation e = {.fused = 1, .is_causal = 0, .kv_heads = 2, .has_mask = 1};
    check(&s, &e);
}

static void test_padding_mask_input(void **state) {
    (void)state;
    attn_spec s = {.b = 2, .hq = 4, .hkv = 2, .lq = 5, .lk = 9, .d = 64, .dv = 64, .repeat = "expand",
                   .mask = "pad_input", .mask_left = 1};
    expectation e = {.fused = 1, .is_causal = 0, .kv_heads = 2, .has_mask = 1};
    check(&s, &e);
}

static void test_anti_causal_range_kept(void **state) {
    (void)state;
    attn_spec s = {.b = 1, .hq = 2, .hkv = 2, .lq = 9, .lk = 9, .d = 64, .dv = 64, .sym = 1, .mask = "range_anti"};
    expectation e = {.fused = 1, .is_causal = 0, .kv_heads = 2, .has_mask = 1};
    check(&s, &e);
}

/* Single-head attention on 3-D [B, L, D] tensors with a constant causal
 * mask [Lq, Lk] (Lq 3 < Lk 6): the Attention op's 3-D form, one head. */
static void test_single_head_3d(void **state) {
    (void)state;
    tb_graph *b = tb_new("model");
    int q = tb_input(b, "q", FU_F32, TB_DIMS(2, 3, 64));
    int k = tb_input(b, "k", FU_F32, TB_DIMS(2, 6, 64));
    int v = tb_input(b, "v", FU_F32, TB_DIMS(2, 6, 64));
    const float mask[18] = {0, 0, 0, 0, -INFINITY, -INFINITY, 0, 0, 0, 0, 0, -INFINITY, 0, 0, 0, 0, 0, 0};
    int kt = tb_attr_ints(b, tb_op(b, "Transpose", "kt", k), "perm", TB_INTS(0, 2, 1));
    int s0 = tb_op(b, "MatMul", "s0", q, kt);
    int s1 = tb_op(b, "Mul", "s1", s0, tb_scalar_f32(b, "c", 0.125f));
    int s2 = tb_op(b, "Add", "s2", s1, tb_const_f32(b, "mask", TB_DIMS(3, 6), mask));
    int p = tb_attr_int(b, tb_op(b, "Softmax", "p", s2), "axis", -1);
    tb_output(b, tb_op(b, "MatMul", "y", p, v));
    expectation e = {.fused = 1, .is_causal = 1, .kv_heads = 1};
    check_model(b, 1, 0, &e);
}

/* ---- near misses ---------------------------------------------------------------- */

static void test_miss_softmax_axis(void **state) {
    (void)state;
    attn_spec s = {.b = 1, .hq = 2, .hkv = 2, .lq = 7, .lk = 7, .d = 64, .dv = 64, .softmax_axis = 2};
    expectation e = {.fused = 0, .reason = "softmax over axis 2"};
    check(&s, &e);
}

static void test_miss_scale_not_scalar(void **state) {
    (void)state;
    attn_spec s = {.b = 1, .hq = 2, .hkv = 2, .lq = 7, .lk = 7, .d = 64, .dv = 64, .scale = "tensor"};
    expectation e = {.fused = 0, .reason = "not a constant scalar"};
    check(&s, &e);
}

static void test_miss_probs_exported(void **state) {
    (void)state;
    attn_spec s = {.b = 1, .hq = 2, .hkv = 2, .lq = 7, .lk = 7, .d = 64, .dv = 64, .expose = 1,
                   .mask = "const_causal"};
    expectation e = {.fused = 0, .reason = "is a graph output"};
    check(&s, &e);
}

static void test_miss_mask_not_per_key(void **state) {
    (void)state;
    attn_spec s = {.b = 1, .hq = 2, .hkv = 2, .lq = 7, .lk = 7, .d = 64, .dv = 64, .mask = "col1"};
    expectation e = {.fused = 0, .reason = "last axis must be the key length"};
    check(&s, &e);
}

static void test_miss_masked_fill_not_causal(void **state) {
    (void)state;
    attn_spec s = {.b = 1, .hq = 2, .hkv = 2, .lq = 7, .lk = 7, .d = 64, .dv = 64, .mask = "fill_input"};
    expectation e = {.fused = 0, .reason = "masked fill"};
    check(&s, &e);
}

/* K repeated 2:1 but V a single head broadcast by the MatMul. */
static void test_miss_v_heads(void **state) {
    (void)state;
    attn_spec s = {.b = 1, .hq = 4, .hkv = 2, .lq = 7, .lk = 7, .d = 64, .dv = 64, .repeat = "expand",
                   .v_single_head = 1};
    expectation e = {.fused = 0, .reason = "V has 1 heads"};
    check(&s, &e);
}

/* ---- the op on its own ------------------------------------------------------- */

/* A hand-written 3-D Attention node (q_num_heads / kv_num_heads, sinks)
 * compiles and loads, and bad attributes fail with a named reason. */
static void test_op_errors(void **state) {
    (void)state;
    struct {
        const char *extra;     /* an extra input of dtype t, shape [dims[0]] or [dims[0], dims[1]] */
        fu_dtype t;
        int64_t dims[2];
        const char *inputs;
        int kv_heads, is_causal, softcap;
        const char *error;
    } cases[] = {
        {NULL, 0, {0}, "q,k,v,,,,sinks", 2, 0, 0, NULL},
        {NULL, 0, {0}, "q,k,v", 0, 0, 0, "kv_num_heads"},
        {NULL, 0, {0}, "q,k,v", 2, 0, 1, "softcap"},
        {NULL, 0, {0}, "q,k,v,,k", 2, 0, 0, "past_key"},
        {"m", FU_BOOL, {5, 7}, "q,k,v,m", 2, 0, 0, "boolean attn_mask"},
        {NULL, 0, {0}, "q,k,v", 3, 0, 0, "not a multiple"},
        /* q_positions (input 7): int64 [Lq], only with is_causal */
        {"p", FU_I64, {5}, "q,k,v,,,,,p", 2, 1, 0, NULL},
        {"p", FU_I64, {5}, "q,k,v,,,,,p", 2, 0, 0, "q_positions needs is_causal"},
        {"p", FU_I64, {7}, "q,k,v,,,,,p", 2, 1, 0, "q_positions must be int64 [q_len]"},
        {"p", FU_I32, {5}, "q,k,v,,,,,p", 2, 1, 0, "int32"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tb_graph *b = tb_new("model");
        tb_input(b, "q", FU_F32, TB_DIMS(1, 5, 128));
        tb_input(b, "k", FU_F32, TB_DIMS(1, 7, 64));
        tb_input(b, "v", FU_F32, TB_DIMS(1, 7, 64));
        if (cases[i].extra) tb_input(b, cases[i].extra, cases[i].t, cases[i].dims[1] ? 2 : 1, cases[i].dims);
        tb_const_f32(b, "sinks", TB_DIMS(4), (const float[]){0.5f, -1, 2, 0});
        int y = tb_op_names(b, "Attention", "y", cases[i].inputs);
        tb_attr_int(b, y, "q_num_heads", 4);
        if (cases[i].kv_heads) tb_attr_int(b, y, "kv_num_heads", cases[i].kv_heads);
        if (cases[i].softcap) tb_attr_float(b, y, "softcap", 1.0);
        if (cases[i].is_causal) tb_attr_int(b, y, "is_causal", 1);
        tb_output(b, y);
        char *path = tb_save(b);
        tb_free(b);
        char err[FU_ERR_LEN] = "";
        fusec_options opts = {.profile = "fast", .backend = "jit", .cache_dir = NULL};
        fusec_model *m = fusec_load(path, &opts, err, sizeof err);
        if (cases[i].error) {
            if (m || !strstr(err, cases[i].error)) fail_msg("case %zu: expected '%s', got '%s'", i, cases[i].error, err);
        } else {
            if (!m) fail_msg("case %zu: %s", i, err);
            fusec_free(m);
        }
        tb_remove(path);
    }
}

/* ---- rule attention_layouts ---------------------------------------------------- */

/* Q, K, V given as [B, S, H, D], each moved to [B, H, S, D] by a Transpose,
 * an Attention node (as the attention rule makes it) and the output moved
 * back; `q_exported` also lists the Q transpose as a graph output. */
static char *layouts_model(int q_exported) {
    tb_graph *b = tb_new("layouts");
    int q = tb_input(b, "q", FU_F32, TB_DIMS(1, 5, 4, 8));
    int k = tb_input(b, "k", FU_F32, TB_DIMS(1, 5, 2, 8));
    int v = tb_input(b, "v", FU_F32, TB_DIMS(1, 5, 2, 8));
    int qt = tb_name(b, tb_attr_ints(b, tb_op(b, "Transpose", "qt", q), "perm", TB_INTS(0, 2, 1, 3)), "tq");
    int kt = tb_name(b, tb_attr_ints(b, tb_op(b, "Transpose", "kt", k), "perm", TB_INTS(0, 2, 1, 3)), "tk");
    int vt = tb_name(b, tb_attr_ints(b, tb_op(b, "Transpose", "vt", v), "perm", TB_INTS(0, 2, 1, 3)), "tv");
    int a = tb_name(b, tb_attr_int(b, tb_op(b, "Attention", "a", qt, kt, vt), "is_causal", 1), "att");
    tb_output(b, tb_name(b, tb_attr_ints(b, tb_op(b, "Transpose", "y", a), "perm", TB_INTS(0, 2, 1, 3)), "ty"));
    if (q_exported) tb_output(b, qt);
    char *path = tb_save(b);
    tb_free(b);
    return path;
}

/* Fast pipeline on the model: the attention's layouts and the Transposes
 * left; then bare and fast agree on every output. */
static void check_layouts(int q_exported, const char *want_qkv, int want_transposes) {
    char *path = layouts_model(q_exported);
    fu_err err = {0};
    fu_graph *g = fu_ir_load(path, &err);
    if (!g) fail_msg("%s", err.msg);
    fu_pass_opts o = {.profile = FU_PROFILE_FAST, .evaluate = fu_evaluate_graph};
    if (fu_run_pipeline(g, &o, NULL, &err)) fail_msg("%s", err.msg);
    const fu_node *att = tu_find_op(g, "Attention");
    assert_non_null(att);
    assert_string_equal(fu_attr_string(att, "qkv_layout", "BHSD"), want_qkv);
    assert_string_equal(fu_attr_string(att, "out_layout", "BHSD"), "BSHD");
    assert_int_equal(tu_count_op(g, "Transpose"), want_transposes);
    fusec_model *bare = run_profile(path, g, "bare"), *fast = run_profile(path, g, "fast");
    for (int i = 0; i < fusec_num_outputs(bare); i++) {
        long n1, n2;
        float *a = tu_output_f32(bare, fusec_output_name(bare, i), &n1);
        float *b = tu_output_f32(fast, fusec_output_name(fast, i), &n2);
        assert_int_equal(n1, n2);
        if (!(tu_max_abs_diff(a, b, n1) <= 1e-5 * (1 + tu_max_abs(a, n1))))
            fail_msg("output %s: fast differs from bare", fusec_output_name(bare, i));
        free(a), free(b);
    }
    fusec_free(bare);
    fusec_free(fast);
    fu_graph_free(g);
    unlink(path);
    free(path);
}

static void test_layouts_replace_head_transposes(void **state) {
    (void)state;
    check_layouts(0, "BSHD,BSHD,BSHD", 0);
}

/* The Q transpose is also a graph output: it stays, Q is read as it is. */
static void test_layouts_keep_an_exported_transpose(void **state) {
    (void)state;
    check_layouts(1, "BHSD,BSHD,BSHD", 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mha_div_const_causal),
        cmocka_unit_test(test_gqa_expand_offset_causal),
        cmocka_unit_test(test_gqa_tile_preq_trilu),
        cmocka_unit_test(test_sym_range_mask_bshd),
        cmocka_unit_test(test_sym_range_gt_mixed_layout),
        cmocka_unit_test(test_sym_trilu_both_scaled),
        cmocka_unit_test(test_sym_masked_fill_causal),
        cmocka_unit_test(test_sym_range_plus1_full),
        cmocka_unit_test(test_sym_range_plus2_kept),
        cmocka_unit_test(test_sym_triu_times_greater),
        cmocka_unit_test(test_sym_triu_times_shifted_kept),
        cmocka_unit_test(test_sym_sdpa_tril_equal),
        cmocka_unit_test(test_sym_sdpa_tril_k1_kept),
        cmocka_unit_test(test_mqa_expand_no_mask),
        cmocka_unit_test(test_tile_head_axis_reads_repeated),
        cmocka_unit_test(test_mqa_tile_head_axis),
        cmocka_unit_test(test_short_keys_mask_kept),
        cmocka_unit_test(test_shifted_mask_kept),
        cmocka_unit_test(test_random_mask_kept),
        cmocka_unit_test(test_padding_mask_input),
        cmocka_unit_test(test_anti_causal_range_kept),
        cmocka_unit_test(test_single_head_3d),
        cmocka_unit_test(test_miss_softmax_axis),
        cmocka_unit_test(test_miss_scale_not_scalar),
        cmocka_unit_test(test_miss_probs_exported),
        cmocka_unit_test(test_miss_mask_not_per_key),
        cmocka_unit_test(test_miss_masked_fill_not_causal),
        cmocka_unit_test(test_miss_v_heads),
        cmocka_unit_test(test_op_errors),
        cmocka_unit_test(test_layouts_replace_head_transposes),
        cmocka_unit_test(test_layouts_keep_an_exported_transpose),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
