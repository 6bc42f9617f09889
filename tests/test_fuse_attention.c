/* Tests of the "attention" fusion rule and the fused Attention op.
 *
 * Each case builds composed attention as JSON IR (one knob per exporter
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

/* ---- JSON builders ---------------------------------------------------------- */

/* Node with comma-separated inputs ("a,,b": an omitted middle input). */
static void node(fu_sb *b, const char *op, const char *ins, const char *out, const char *attrs) {
    fu_sb_printf(b, "%s    {\"name\": \"%s_node\", \"op\": \"%s\", \"inputs\": [", b->len ? ",\n" : "", out, op);
    const char *p = ins;
    for (int first = 1;; first = 0) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        fu_sb_printf(b, "%s\"%.*s\"", first ? "" : ", ", (int)len, p);
        if (!comma) break;
        p = comma + 1;
    }
    fu_sb_printf(b, "], \"outputs\": [\"%s\"]", out);
    if (attrs) fu_sb_printf(b, ", \"attrs\": %s", attrs);
    fu_sb_printf(b, "}");
}

static void init(fu_sb *b, const char *name, const char *dtype, const char *shape, const char *data) {
    fu_sb_printf(b, "%s    {\"name\": \"%s\", \"dtype\": \"%s\", \"shape\": %s, \"data\": %s}", b->len ? ",\n" : "",
                 name, dtype, shape, data);
}

static void init_scalar(fu_sb *b, const char *name, double v) {
    char data[64];
    if (isinf(v)) snprintf(data, sizeof data, "[\"%sinf\"]", v < 0 ? "-" : "");
    else snprintf(data, sizeof data, "[%.17g]", v);
    init(b, name, "float32", "[]", data);
}

static void input(fu_sb *b, const char *name, const char *dtype, const char *shape) {
    fu_sb_printf(b, "%s    {\"name\": \"%s\", \"dtype\": \"%s\", \"shape\": %s}", b->len ? ",\n" : "", name, dtype,
                 shape);
}

/* ---- the attention model ------------------------------------------------------ */

typedef struct {
    int b, hq, hkv, lq, lk, d, dv;
    int sym;              /* Lq = Lk = symbol "seq" bounded by lq */
    int bshd;             /* 1: Q, K, V given as [B, L, H, D] + Transpose; 2: only K and V */
    const char *repeat;   /* NULL (K/V used as given), "expand", "tile5", "tile4", "expand1" */
    const char *scale;    /* "div" (default), "mul", "preq", "both", "kt", "none", "tensor" */
    const char *mask;     /* NULL, "const_causal", "const_shift", "const_random", "trilu", "range",
                             "range_gt", "range_anti", "fill_range", "fill_input", "pad_input", "col1" */
    double blocked;       /* value used for hidden keys (default -inf) */
    int mask_left;        /* Add(mask, scores) */
    int softmax_axis;     /* 0: -1 */
    int expose;           /* the softmax output is also a graph output */
    int v_single_head;    /* V is [B, 1, Lk, Dv], broadcast by the MatMul */
} attn_spec;

static const char *len_dim(const attn_spec *s, int len, char *buf, size_t n) {
    if (s->sym) snprintf(buf, n, "\"seq\"");
    else snprintf(buf, n, "%d", len);
    return buf;
}

/* Repeats kv tensor `x` (BHSD, hkv heads) to hq heads; returns the name. */
static const char *repeat_kv(fu_sb *nodes, const attn_spec *s, const char *x, const char *tag, char *out, size_t n) {
    char a[160], b[64];
    if (!s->repeat) return x;
    snprintf(out, n, "%s_rep", tag);
    if (!strcmp(s->repeat, "tile4")) {
        snprintf(a, sizeof a, "%s,tile4_reps", x);
        node(nodes, "Tile", a, out, NULL);
        return out;
    }
    snprintf(b, sizeof b, "%s_u", tag);
    snprintf(a, sizeof a, "%s,axes_2", x);
    node(nodes, "Unsqueeze", a, b, NULL);
    char c[64];
    snprintf(c, sizeof c, "%s_e", tag);
    snprintf(a, sizeof a, "%s,%s", b, !strcmp(s->repeat, "tile5") ? "tile5_reps" : "expand5_shape");
    node(nodes, !strcmp(s->repeat, "tile5") ? "Tile" : "Expand", a, c, NULL);
    snprintf(a, sizeof a, "%s,%s", c, tag[0] == 'k' ? "k_merge" : "v_merge");
    node(nodes, "Reshape", a, out, NULL);
    return out;
}

static char *build_attention(const attn_spec *s) {
    fu_sb nodes = {0}, inits = {0}, ins = {0}, outs = {0};
    char lq[32], lk[32], shape[160], data[64];
    len_dim(s, s->lq, lq, sizeof lq);
    len_dim(s, s->lk, lk, sizeof lk);
    int rep = s->hq / s->hkv;
    double d = s->d;
    init(&inits, "axes_2", "int64", "[1]", "[2]");
    init(&inits, "axes_0", "int64", "[1]", "[0]");
    init(&inits, "axes_1", "int64", "[1]", "[1]");

    /* Q, K, V (optionally BSHD + Transpose). */
    const char *q = "q", *k = "k", *v = "v";
    int vh = s->v_single_head ? 1 : s->hkv;
    if (s->bshd == 1) snprintf(shape, sizeof shape, "[%d, %s, %d, %d]", s->b, lq, s->hq, s->d);
    else snprintf(shape, sizeof shape, "[%d, %d, %s, %d]", s->b, s->hq, lq, s->d);
    input(&ins, "q", "float32", shape);
    if (s->bshd) snprintf(shape, sizeof shape, "[%d, %s, %d, %d]", s->b, lk, s->hkv, s->d);
    else snprintf(shape, sizeof shape, "[%d, %d, %s, %d]", s->b, s->hkv, lk, s->d);
    input(&ins, "k", "float32", shape);
    if (s->bshd) snprintf(shape, sizeof shape, "[%d, %s, %d, %d]", s->b, lk, vh, s->dv);
    else snprintf(shape, sizeof shape, "[%d, %d, %s, %d]", s->b, vh, lk, s->dv);
    input(&ins, "v", "float32", shape);
    if (s->bshd == 1) {
        node(&nodes, "Transpose", "q", "q_bhsd", "{\"perm\": [0, 2, 1, 3]}");
        q = "q_bhsd";
    }
    if (s->bshd) {
        node(&nodes, "Transpose", "k", "k_bhsd", "{\"perm\": [0, 2, 1, 3]}");
        node(&nodes, "Transpose", "v", "v_bhsd", "{\"perm\": [0, 2, 1, 3]}");
        k = "k_bhsd";
        v = "v_bhsd";
    }

    /* GQA repeats. */
    snprintf(data, sizeof data, "[1, 1, %d, 1, 1]", rep);
    init(&inits, "expand5_shape", "int64", "[5]", data);
    init(&inits, "tile5_reps", "int64", "[5]", data);
    snprintf(data, sizeof data, "[1, %d, 1, 1]", rep);
    init(&inits, "tile4_reps", "int64", "[4]", data);
    snprintf(data, sizeof data, "[%d, %d, -1, %d]", s->b, s->hq, s->d);
    init(&inits, "k_merge", "int64", "[4]", data);
    snprintf(data, sizeof data, "[%d, %d, -1, %d]", s->b, s->hq, s->dv);
    init(&inits, "v_merge", "int64", "[4]", data);
    char kbuf[32], vbuf[32], tmp[128];
    if (s->repeat && !strcmp(s->repeat, "expand1")) {
        snprintf(data, sizeof data, "[1, %d, 1, 1]", s->hq);
        init(&inits, "expand1_shape", "int64", "[4]", data);
        snprintf(tmp, sizeof tmp, "%s,expand1_shape", k);
        node(&nodes, "Expand", tmp, "k_rep", NULL);
        snprintf(tmp, sizeof tmp, "%s,expand1_shape", v);
        node(&nodes, "Expand", tmp, "v_rep", NULL);
        k = "k_rep";
        v = "v_rep";
    } else {
        k = repeat_kv(&nodes, s, k, "k", kbuf, sizeof kbuf);
        if (!s->v_single_head) v = repeat_kv(&nodes, s, v, "v", vbuf, sizeof vbuf);
    }

    /* Scores with the scale in one of its places. */
    const char *scale = s->scale ? s->scale : "div";
    node(&nodes, "Transpose", k, "kt", "{\"perm\": [0, 1, 3, 2]}");
    const char *kt = "kt";
    init_scalar(&inits, "sqrt_d", sqrt(d));
    init_scalar(&inits, "inv_sqrt_d", 1.0 / sqrt(d));
    init_scalar(&inits, "quarter", pow(d, -0.25));
    const char *qs = q;
    if (!strcmp(scale, "preq") || !strcmp(scale, "both")) {
        snprintf(tmp, sizeof tmp, "%s,%s", q, !strcmp(scale, "preq") ? "inv_sqrt_d" : "quarter");
        node(&nodes, "Mul", tmp, "qs", NULL);
        qs = "qs";
    }
    if (!strcmp(scale, "both")) {
        node(&nodes, "Mul", "quarter,kt", "kts", NULL);
        kt = "kts";
    } else if (!strcmp(scale, "kt")) {
        node(&nodes, "Div", "kt,sqrt_d", "kts", NULL);
        kt = "kts";
    }
    snprintf(tmp, sizeof tmp, "%s,%s", qs, kt);
    node(&nodes, "MatMul", tmp, "qk", NULL);
    const char *scores = "qk";
    if (!strcmp(scale, "div")) {
        node(&nodes, "Div", "qk,sqrt_d", "scores", NULL);
        scores = "scores";
    } else if (!strcmp(scale, "mul")) {
        node(&nodes, "Mul", "inv_sqrt_d,qk", "scores", NULL);
        scores = "scores";
    } else if (!strcmp(scale, "tensor")) {
        fu_sb vals = {0};
        fu_sb_printf(&vals, "[");
        for (int h = 0; h < s->hq; h++) fu_sb_printf(&vals, "%s%.9g", h ? ", " : "", 1.0 / sqrt(d));
        fu_sb_printf(&vals, "]");
        snprintf(shape, sizeof shape, "[1, %d, 1, 1]", s->hq);
        init(&inits, "head_scale", "float32", shape, vals.s);
        fu_sb_free(&vals);
        node(&nodes, "Mul", "qk,head_scale", "scores", NULL);
        scores = "scores";
    }

    /* Mask. */
    double blocked = s->blocked ? s->blocked : -INFINITY;
    const char *mask = s->mask;
    const char *masked = scores;
    int off = s->lk - s->lq;
    if (mask && !strncmp(mask, "const_", 6)) {
        fu_sb vals = {0};
        fu_sb_printf(&vals, "[");
        unsigned seed = 99;
        for (int i = 0; i < s->lq; i++)
            for (int j = 0; j < s->lk; j++) {
                int hide = !strcmp(mask, "const_causal") ? j > i + off : !strcmp(mask, "const_shift") ? j >= i + off : 0;
                seed = seed * 1664525u + 1013904223u;
                double x = !strcmp(mask, "const_random") ? -(double)((seed >> 9) % 2000) / 1000.0 : 0.0;
                if (hide && isinf(blocked)) fu_sb_printf(&vals, "%s\"-inf\"", i + j ? ", " : "");
                else fu_sb_printf(&vals, "%s%.9g", i + j ? ", " : "", hide ? blocked : x);
            }
        fu_sb_printf(&vals, "]");
        snprintf(shape, sizeof shape, "[1, 1, %d, %d]", s->lq, s->lk);
        init(&inits, "mask", "float32", shape, vals.s);
        fu_sb_free(&vals);
    } else if (mask && !strcmp(mask, "trilu")) {
        init_scalar(&inits, "blocked", blocked);
        snprintf(data, sizeof data, "[%d]", 1 + off);
        init(&inits, "trilu_k", "int64", "[]", data);
        if (s->sym) {
            /* [seq, seq] from Q's shape, filled with the blocked value. */
            node(&nodes, "Shape", "q", "q_shape", NULL);
            init(&inits, "idx_2", "int64", "[1]", s->bshd == 1 ? "[1]" : "[2]");
            node(&nodes, "Gather", "q_shape,idx_2", "seq_1d", "{\"axis\": 0}");
            node(&nodes, "Concat", "seq_1d,seq_1d", "mask_shape", "{\"axis\": 0}");
            fu_sb attr = {0};
            fu_sb_printf(&attr, "{\"value\": {\"dtype\": \"float32\", \"shape\": [1], \"data\": [%s]}}",
                         isinf(blocked) ? "\"-inf\"" : "-1e9");
            node(&nodes, "ConstantOfShape", "mask_shape", "full", attr.s);
            fu_sb_free(&attr);
        } else {
            fu_sb vals = {0};
            fu_sb_printf(&vals, "[");
            for (int i = 0; i < s->lq * s->lk; i++) fu_sb_printf(&vals, "%s\"-inf\"", i ? ", " : "");
            fu_sb_printf(&vals, "]");
            snprintf(shape, sizeof shape, "[%d, %d]", s->lq, s->lk);
            init(&inits, "full", "float32", shape, vals.s);
            fu_sb_free(&vals);
        }
        node(&nodes, "Trilu", "full,trilu_k", "mask", "{\"upper\": 1}");
    } else if (mask && (!strncmp(mask, "range", 5) || !strcmp(mask, "fill_range"))) {
        /* Row and column indices from Range over the sequence length. */
        node(&nodes, "Shape", "q", "q_shape", NULL);
        init(&inits, "idx_2s", "int64", "[]", s->bshd == 1 ? "[1]" : "[2]");
        init(&inits, "zero_i", "int64", "[]", "[0]");
        init(&inits, "one_i", "int64", "[]", "[1]");
        node(&nodes, "Gather", "q_shape,idx_2s", "seq_len", "{\"axis\": 0}");
        node(&nodes, "Range", "zero_i,seq_len,one_i", "positions", NULL);
        node(&nodes, "Unsqueeze", "positions,axes_1", "rows", NULL);
        node(&nodes, "Unsqueeze", "positions,axes_0", "cols", NULL);
        if (!strcmp(mask, "range")) node(&nodes, "Less", "rows,cols", "cond", NULL);
        else if (!strcmp(mask, "range_gt")) node(&nodes, "Greater", "cols,rows", "cond", NULL);
        else if (!strcmp(mask, "range_anti")) node(&nodes, "Less", "cols,rows", "cond", NULL);
        else node(&nodes, "GreaterOrEqual", "rows,cols", "cond", NULL);   /* keep j <= i */
        init_scalar(&inits, "blocked", blocked);
        init_scalar(&inits, "zero_f", 0.0);
        if (!strcmp(mask, "fill_range")) {
            snprintf(tmp, sizeof tmp, "cond,%s,blocked", scores);
            node(&nodes, "Where", tmp, "masked", NULL);
            masked = "masked";
            mask = NULL;
        } else {
            node(&nodes, "Where", "cond,blocked,zero_f", "mask", NULL);
        }
    } else if (mask && !strcmp(mask, "fill_input")) {
        snprintf(shape, sizeof shape, "[%s, %s]", lq, lk);
        input(&ins, "keep", "bool", shape);
        init_scalar(&inits, "blocked", blocked);
        snprintf(tmp, sizeof tmp, "keep,%s,blocked", scores);
        node(&nodes, "Where", tmp, "masked", NULL);
        masked = "masked";
        mask = NULL;
    } else if (mask && !strcmp(mask, "pad_input")) {
        snprintf(shape, sizeof shape, "[%d, 1, 1, %s]", s->b, lk);
        input(&ins, "mask", "float32", shape);
    } else if (mask && !strcmp(mask, "col1")) {
        snprintf(shape, sizeof shape, "[%s, 1]", lq);
        input(&ins, "mask", "float32", shape);
    }
    if (mask) {
        snprintf(tmp, sizeof tmp, s->mask_left ? "mask,%s" : "%s,mask", scores);
        node(&nodes, "Add", tmp, "masked", NULL);
        masked = "masked";
    }

    snprintf(tmp, sizeof tmp, "{\"axis\": %d}", s->softmax_axis ? s->softmax_axis : -1);
    node(&nodes, "Softmax", masked, "probs", tmp);
    snprintf(tmp, sizeof tmp, "probs,%s", v);
    node(&nodes, "MatMul", tmp, "y", NULL);
    fu_sb_printf(&outs, "{\"name\": \"y\"}");
    if (s->expose) fu_sb_printf(&outs, ", {\"name\": \"probs\"}");

    fu_sb model = {0};
    fu_sb_printf(&model, "{\"ir_version\": 1, \"name\": \"attention\",\n");
    if (s->sym) fu_sb_printf(&model, " \"symbols\": {\"seq\": %d},\n", s->lq);
    fu_sb_printf(&model, " \"inputs\": [\n%s],\n \"outputs\": [%s],\n \"initializers\": [\n%s],\n \"nodes\": [\n%s]}\n",
                 ins.s, outs.s, inits.s, nodes.s);
    assert_false(model.oom || nodes.oom || inits.oom || ins.oom || outs.oom);
    fu_sb_free(&nodes);
    fu_sb_free(&inits);
    fu_sb_free(&ins);
    fu_sb_free(&outs);
    return model.s;
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

static void check_json(char *json, int hq, int repeated_kv, const expectation *want) {
    char *path = tu_write_temp(".json", json);
    fu_err err = {{0}};
    fu_graph *g = fu_ir_load(path, &err);
    if (!g) fail_msg("load: %s\n%s", err.msg, json);
    fu_fusion_log log = {0};
    fu_pass_opts opts = {.profile = FU_PROFILE_FAST, .verbose = 0, .fusion_log = &log, .evaluate = fu_evaluate_graph};
    if (fu_run_pipeline(g, &opts, NULL, &err)) fail_msg("pipeline: %s\n%s", err.msg, json);

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
    unlink(path);
    free(path);
    free(json);
}

static void check(const attn_spec *s, const expectation *want) {
    check_json(build_attention(s), s->hq, s->repeat != NULL, want);
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
    const char *json =
        "{\"ir_version\": 1, \"inputs\": [{\"name\": \"q\", \"dtype\": \"float32\", \"shape\": [2, 3, 64]},"
        " {\"name\": \"k\", \"dtype\": \"float32\", \"shape\": [2, 6, 64]},"
        " {\"name\": \"v\", \"dtype\": \"float32\", \"shape\": [2, 6, 64]}],"
        " \"outputs\": [{\"name\": \"y\"}], \"initializers\": ["
        " {\"name\": \"c\", \"dtype\": \"float32\", \"shape\": [], \"data\": [0.125]},"
        " {\"name\": \"mask\", \"dtype\": \"float32\", \"shape\": [3, 6], \"data\": ["
        "  0, 0, 0, 0, \"-inf\", \"-inf\",  0, 0, 0, 0, 0, \"-inf\",  0, 0, 0, 0, 0, 0]}],"
        " \"nodes\": [{\"op\": \"Transpose\", \"inputs\": [\"k\"], \"outputs\": [\"kt\"], \"attrs\": {\"perm\": [0, 2, 1]}},"
        " {\"op\": \"MatMul\", \"inputs\": [\"q\", \"kt\"], \"outputs\": [\"s0\"]},"
        " {\"op\": \"Mul\", \"inputs\": [\"s0\", \"c\"], \"outputs\": [\"s1\"]},"
        " {\"op\": \"Add\", \"inputs\": [\"s1\", \"mask\"], \"outputs\": [\"s2\"]},"
        " {\"op\": \"Softmax\", \"inputs\": [\"s2\"], \"outputs\": [\"p\"], \"attrs\": {\"axis\": -1}},"
        " {\"op\": \"MatMul\", \"inputs\": [\"p\", \"v\"], \"outputs\": [\"y\"]}]}";
    expectation e = {.fused = 1, .is_causal = 1, .kv_heads = 1};
    check_json(strdup(json), 1, 0, &e);
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
    const char *base =
        "{\"ir_version\": 1, \"inputs\": [{\"name\": \"q\", \"dtype\": \"float32\", \"shape\": [1, 5, 128]},"
        " {\"name\": \"k\", \"dtype\": \"float32\", \"shape\": [1, 7, 64]},"
        " {\"name\": \"v\", \"dtype\": \"float32\", \"shape\": [1, 7, 64]}%s],"
        " \"outputs\": [{\"name\": \"y\"}], \"initializers\": [{\"name\": \"sinks\", \"dtype\": \"float32\","
        " \"shape\": [4], \"data\": [0.5, -1, 2, 0]}],"
        " \"nodes\": [{\"op\": \"Attention\", \"inputs\": [%s], \"outputs\": [\"y\"], \"attrs\": {%s}}]}";
    struct {
        const char *extra_in, *inputs, *attrs, *error;
    } cases[] = {
        {"", "\"q\", \"k\", \"v\", \"\", \"\", \"\", \"sinks\"", "\"q_num_heads\": 4, \"kv_num_heads\": 2", NULL},
        {"", "\"q\", \"k\", \"v\"", "\"q_num_heads\": 4", "kv_num_heads"},
        {"", "\"q\", \"k\", \"v\"", "\"q_num_heads\": 4, \"kv_num_heads\": 2, \"softcap\": 1.0", "softcap"},
        {"", "\"q\", \"k\", \"v\", \"\", \"k\"", "\"q_num_heads\": 4, \"kv_num_heads\": 2", "past_key"},
        {", {\"name\": \"m\", \"dtype\": \"bool\", \"shape\": [5, 7]}", "\"q\", \"k\", \"v\", \"m\"",
         "\"q_num_heads\": 4, \"kv_num_heads\": 2", "boolean attn_mask"},
        {"", "\"q\", \"k\", \"v\"", "\"q_num_heads\": 4, \"kv_num_heads\": 3", "not a multiple"},
        /* q_positions (input 7): int64 [Lq], only with is_causal */
        {", {\"name\": \"p\", \"dtype\": \"int64\", \"shape\": [5]}",
         "\"q\", \"k\", \"v\", \"\", \"\", \"\", \"\", \"p\"",
         "\"q_num_heads\": 4, \"kv_num_heads\": 2, \"is_causal\": 1", NULL},
        {", {\"name\": \"p\", \"dtype\": \"int64\", \"shape\": [5]}",
         "\"q\", \"k\", \"v\", \"\", \"\", \"\", \"\", \"p\"", "\"q_num_heads\": 4, \"kv_num_heads\": 2",
         "q_positions needs is_causal"},
        {", {\"name\": \"p\", \"dtype\": \"int64\", \"shape\": [7]}",
         "\"q\", \"k\", \"v\", \"\", \"\", \"\", \"\", \"p\"",
         "\"q_num_heads\": 4, \"kv_num_heads\": 2, \"is_causal\": 1", "q_positions must be int64 [q_len]"},
        {", {\"name\": \"p\", \"dtype\": \"int32\", \"shape\": [5]}",
         "\"q\", \"k\", \"v\", \"\", \"\", \"\", \"\", \"p\"",
         "\"q_num_heads\": 4, \"kv_num_heads\": 2, \"is_causal\": 1", "int32"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char json[2048];
        snprintf(json, sizeof json, base, cases[i].extra_in, cases[i].inputs, cases[i].attrs);
        char *path = tu_write_temp(".json", json);
        char err[FU_ERR_LEN] = "";
        fusec_options opts = {.profile = "fast", .backend = "jit", .cache_dir = NULL};
        fusec_model *m = fusec_load(path, &opts, err, sizeof err);
        if (cases[i].error) {
            if (m || !strstr(err, cases[i].error)) fail_msg("case %zu: expected '%s', got '%s'", i, cases[i].error, err);
        } else {
            if (!m) fail_msg("case %zu: %s", i, err);
            fusec_free(m);
        }
        unlink(path);
        free(path);
    }
}

/* ---- rule attention_layouts ---------------------------------------------------- */

/* Q, K, V given as [B, S, H, D], each moved to [B, H, S, D] by a Transpose,
 * an Attention node (as the attention rule makes it) and the output moved
 * back; `q_exported` also lists the Q transpose as a graph output. */
static char *layouts_model(int q_exported) {
    static char json[4096];
    snprintf(json, sizeof json,
             "{\"ir_version\": 1, \"name\": \"layouts\","
             " \"inputs\": [{\"name\": \"q\", \"dtype\": \"float32\", \"shape\": [1, 5, 4, 8]},"
             "  {\"name\": \"k\", \"dtype\": \"float32\", \"shape\": [1, 5, 2, 8]},"
             "  {\"name\": \"v\", \"dtype\": \"float32\", \"shape\": [1, 5, 2, 8]}],"
             " \"outputs\": [{\"name\": \"y\"}%s],"
             " \"nodes\": ["
             "  {\"name\": \"tq\", \"op\": \"Transpose\", \"inputs\": [\"q\"], \"outputs\": [\"qt\"], \"attrs\": {\"perm\": [0, 2, 1, 3]}},"
             "  {\"name\": \"tk\", \"op\": \"Transpose\", \"inputs\": [\"k\"], \"outputs\": [\"kt\"], \"attrs\": {\"perm\": [0, 2, 1, 3]}},"
             "  {\"name\": \"tv\", \"op\": \"Transpose\", \"inputs\": [\"v\"], \"outputs\": [\"vt\"], \"attrs\": {\"perm\": [0, 2, 1, 3]}},"
             "  {\"name\": \"att\", \"op\": \"Attention\", \"inputs\": [\"qt\", \"kt\", \"vt\"], \"outputs\": [\"a\"],"
             "   \"attrs\": {\"is_causal\": 1}},"
             "  {\"name\": \"ty\", \"op\": \"Transpose\", \"inputs\": [\"a\"], \"outputs\": [\"y\"], \"attrs\": {\"perm\": [0, 2, 1, 3]}}]}",
             q_exported ? ", {\"name\": \"qt\"}" : "");
    return json;
}

/* Fast pipeline on the model: the attention's layouts and the Transposes
 * left; then bare and fast agree on every output. */
static void check_layouts(int q_exported, const char *want_qkv, int want_transposes) {
    char *path = tu_write_temp(".json", layouts_model(q_exported));
    fu_err err = {{0}};
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
