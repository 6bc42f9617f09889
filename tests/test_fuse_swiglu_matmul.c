/* Tests of the "swiglu" and "matmul_bias" fusion rules and of the fused
 * SwiGLU / FusedMatMul ops.
 *
 * Each case is a small JSON IR model (one per exporter variant or near
 * miss). The fast pipeline runs with a fusion log; fused cases are compiled
 * with the JIT in the bare and the fast profile, run on the same random
 * inputs, and must agree within 1e-5 x the output's scale. Near misses must
 * fuse nothing and log a reason naming the cause. */
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

/* ---- model builders --------------------------------------------------------- */

/* A float32 constant of pseudo-random values in [-1, 1). */
static int weight(tb_graph *b, const char *name, int rank, const int64_t *dims, unsigned seed) {
    int64_t count = 1;
    for (int i = 0; i < rank; i++) count *= dims[i];
    float *v = malloc(sizeof(float) * (size_t)count);
    for (int64_t i = 0; i < count; i++) {
        seed = seed * 1103515245u + 12345u;
        v[i] = (float)(((seed >> 8) % 2000) / 1000.0 - 1.0);
    }
    int w = tb_const_f32(b, name, rank, dims, v);
    free(v);
    return w;
}

/* A builder whose nodes are named after their output ("y_node"). */
static tb_graph *new_model(void) {
    tb_graph *b = tb_new("t");
    b->node_suffix = "_node";
    return b;
}

static char *save(tb_graph *b) {
    char *path = tb_save(b);
    tb_free(b);
    return path;
}

/* ---- running ------------------------------------------------------------------ */

/* Deterministic inputs in [-3, 3], the same for both profiles. */
static void fill_uniform(const fu_value *v, int k, const int64_t *shape, int64_t numel, void *data) {
    (void)v, (void)shape;
    unsigned seed = 777u + 31u * (unsigned)k;
    for (int64_t i = 0; i < numel; i++) {
        seed = seed * 1664525u + 1013904223u;
        ((float *)data)[i] = (float)((seed >> 9) % 6001) / 1000.0f - 3.0f;
    }
}

static fusec_model *run_profile(const char *path, const fu_graph *g, const char *profile) {
    return tu_run_profile(path, g, profile, NULL, fill_uniform);
}

typedef struct {
    const char *rule, *op;
    int fused;             /* fused nodes of `op` expected */
    int trans_b;           /* FusedMatMul: transB expected */
    int bias;              /* FusedMatMul: bias input expected */
    const char *gone;      /* op that must be left in the graph no more (e.g. "Transpose") */
    const char *reason;    /* near miss: substring of the logged reason */
} expectation;

static void dump_log(const fu_fusion_log *log) {
    for (int i = 0; i < log->n; i++)
        print_message("  log: %s %s %s: %s\n", log->events[i].fused ? "fused" : "miss", log->events[i].rule,
                      log->events[i].node, log->events[i].reason);
}

static void check(char *path, const expectation *want) {
    fu_err err = {0};
    fu_graph *g = fu_ir_load(path, &err);
    if (!g) fail_msg("load: %s", err.msg);
    fu_fusion_log log = {0};
    fu_pass_opts opts = {.profile = FU_PROFILE_FAST, .verbose = 0, .fusion_log = &log, .evaluate = fu_evaluate_graph};
    if (fu_run_pipeline(g, &opts, NULL, &err)) fail_msg("pipeline: %s", err.msg);
    if (getenv("FUSEC_TEST_LOG")) dump_log(&log);
    int fused = tu_count_op(g, want->op);
    if (fused != want->fused || fu_fusion_log_count(&log, want->rule, 1) != want->fused) {
        dump_log(&log);
        fail_msg("expected %d %s, got %d in the graph and %d in the log", want->fused, want->op, fused,
                 fu_fusion_log_count(&log, want->rule, 1));
    }
    if (want->fused && !strcmp(want->op, "FusedMatMul")) {
        const fu_node *n = tu_find_op(g, "FusedMatMul");
        assert_int_equal(fu_attr_int(n, "transB", 0), want->trans_b);
        assert_int_equal(n->n_in > 2 && n->in[2] >= 0, want->bias);
    }
    if (want->gone) assert_int_equal(tu_count_op(g, want->gone), 0);
    if (!want->fused) {
        int found = 0;
        for (int i = 0; i < log.n; i++)
            if (!log.events[i].fused && !strcmp(log.events[i].rule, want->rule) &&
                strstr(log.events[i].reason, want->reason))
                found = 1;
        if (!found) {
            dump_log(&log);
            fail_msg("no %s near miss mentions '%s'", want->rule, want->reason);
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

/* ---- SwiGLU -------------------------------------------------------------------- */

/* The three factors g, Sigmoid(g), u grouped as (a*b)*c, in the order given
 * by `form`: "gs_u" = (g*s)*u, "u_sg" = u*(s*g), "su_g" = (s*u)*g,
 * "gu_s" = s*(g*u). gate and up come from projections of x [seq, 64]. */
static char *build_swiglu(const char *form, const char *sig_of, int up_broadcast, int expose_inner) {
    tb_graph *b = new_model();
    int64_t seq = tb_symbol(b, "seq", 7);
    int x = tb_input(b, "x", FU_F32, TB_DIMS(seq, 64));
    int other = tb_input(b, "other", FU_F32, TB_DIMS(seq, 96));
    int u_in = up_broadcast ? tb_input(b, "u_in", FU_F32, TB_DIMS(96)) : -1;
    int g = tb_op(b, "MatMul", "g", x, weight(b, "wg", TB_DIMS(64, 96), 1));
    int u0 = tb_op(b, "MatMul", "u0", x, weight(b, "wu", TB_DIMS(64, 96), 2));
    int u = up_broadcast ? u_in : u0;
    int s = tb_op(b, "Sigmoid", "s", sig_of ? other : g);
    int inner;
    if (!strcmp(form, "gs_u")) {
        inner = tb_op(b, "Mul", "inner", g, s);
        tb_output(b, tb_op(b, "Mul", "y", inner, u));
    } else if (!strcmp(form, "u_sg")) {
        inner = tb_op(b, "Mul", "inner", s, g);
        tb_output(b, tb_op(b, "Mul", "y", u, inner));
    } else if (!strcmp(form, "su_g")) {
        inner = tb_op(b, "Mul", "inner", s, u);
        tb_output(b, tb_op(b, "Mul", "y", inner, g));
    } else {
        inner = tb_op(b, "Mul", "inner", g, u);
        tb_output(b, tb_op(b, "Mul", "y", s, inner));
    }
    if (expose_inner) tb_output(b, inner);
    return save(b);
}

static void test_swiglu_forms(void **state) {
    (void)state;
    const char *forms[] = {"gs_u", "u_sg", "su_g", "gu_s"};
    for (int i = 0; i < 4; i++) {
        expectation e = {.rule = "swiglu", .op = "SwiGLU", .fused = 1, .gone = "Sigmoid"};
        check(build_swiglu(forms[i], NULL, 0, 0), &e);
    }
}

static void test_swiglu_miss_sigmoid_of_other(void **state) {
    (void)state;
    expectation e = {.rule = "swiglu", .op = "SwiGLU", .fused = 0, .reason = "sigmoid of a different tensor"};
    check(build_swiglu("gs_u", "other", 0, 0), &e);
}

static void test_swiglu_miss_inner_exported(void **state) {
    (void)state;
    expectation e = {.rule = "swiglu", .op = "SwiGLU", .fused = 0, .reason = "'inner' is a graph output"};
    check(build_swiglu("gs_u", NULL, 0, 1), &e);
}

static void test_swiglu_miss_broadcast_up(void **state) {
    (void)state;
    expectation e = {.rule = "swiglu", .op = "SwiGLU", .fused = 0, .reason = "shapes differ"};
    check(build_swiglu("gs_u", NULL, 1, 0), &e);
}

/* ---- MatMul + bias ------------------------------------------------------------ */

typedef struct {
    int x_batch;           /* x is [x_batch, seq, k]; 0: [seq, k] */
    int k, n;              /* x's last dim, output dim */
    int transposed;        /* W given as [n, k] through Transpose(perm [1, 0]) */
    const char *bias;      /* NULL none, "const" [n], "row" [1, n], "input" graph input [n], "col" [seq, 1] */
    int bias_left;         /* Add(bias, MatMul) */
    int expose_mm;         /* the MatMul output is also a graph output */
    int mm_b_batched;      /* B is a [2, k, n] input (batched MatMul) */
} mm_spec;

static char *build_mm(const mm_spec *s) {
    tb_graph *b = new_model();
    int64_t seq = tb_symbol(b, "seq", 9);
    int x = s->x_batch ? tb_input(b, "x", FU_F32, TB_DIMS(s->x_batch, seq, s->k))
                           : tb_input(b, "x", FU_F32, TB_DIMS(seq, s->k));
    int w;
    if (s->mm_b_batched) {
        w = tb_input(b, "w", FU_F32, TB_DIMS(2, s->k, s->n));
    } else if (s->transposed) {
        /* A graph input, as large weights from the file stay unfolded. */
        int w_out_in = tb_input(b, "w_out_in", FU_F32, TB_DIMS(s->n, s->k));
        w = tb_attr_ints(b, tb_op(b, "Transpose", "w_t", w_out_in), "perm", TB_INTS(1, 0));
    } else {
        w = weight(b, "w", TB_DIMS(s->k, s->n), 5);
    }
    int mm = tb_op(b, "MatMul", s->bias ? "mm" : "y", x, w);
    int y = mm;
    if (s->bias) {
        int bias;
        if (!strcmp(s->bias, "const")) bias = weight(b, "b", TB_DIMS(s->n), 9);
        else if (!strcmp(s->bias, "row")) bias = weight(b, "b", TB_DIMS(1, s->n), 9);
        else if (!strcmp(s->bias, "input")) bias = tb_input(b, "b", FU_F32, TB_DIMS(s->n));
        else bias = tb_input(b, "b", FU_F32, TB_DIMS(seq, 1));
        y = s->bias_left ? tb_op(b, "Add", "y", bias, mm) : tb_op(b, "Add", "y", mm, bias);
    }
    tb_output(b, y);
    if (s->expose_mm) tb_output(b, mm);
    return save(b);
}

static void test_mm_const_bias(void **state) {
    (void)state;
    mm_spec s = {.k = 48, .n = 40, .bias = "const"};
    expectation e = {.rule = "matmul_bias", .op = "FusedMatMul", .fused = 1, .bias = 1, .gone = "Add"};
    check(build_mm(&s), &e);
}

/* Bias on the left, a [1, n] bias, 3-D activations. */
static void test_mm_row_bias_left_3d(void **state) {
    (void)state;
    mm_spec s = {.x_batch = 2, .k = 48, .n = 40, .bias = "row", .bias_left = 1};
    expectation e = {.rule = "matmul_bias", .op = "FusedMatMul", .fused = 1, .bias = 1, .gone = "Add"};
    check(build_mm(&s), &e);
}

/* A [n, k] weight through Transpose(perm [1, 0]) + a bias that is a graph
 * input: transB, and no Transpose left to run. */
static void test_mm_transposed_weight_input_bias(void **state) {
    (void)state;
    mm_spec s = {.k = 96, .n = 72, .transposed = 1, .bias = "input"};
    expectation e = {.rule = "matmul_bias", .op = "FusedMatMul", .fused = 1, .trans_b = 1, .bias = 1,
                     .gone = "Transpose"};
    check(build_mm(&s), &e);
}

/* MatMul(x, Transpose(W)) without a bias. */
static void test_mm_transposed_weight_no_bias(void **state) {
    (void)state;
    mm_spec s = {.x_batch = 1, .k = 96, .n = 72, .transposed = 1};
    expectation e = {.rule = "matmul_bias", .op = "FusedMatMul", .fused = 1, .trans_b = 1, .bias = 0,
                     .gone = "Transpose"};
    check(build_mm(&s), &e);
}

/* Batched B (batching like MatMul) with a bias. */
static void test_mm_batched_bias(void **state) {
    (void)state;
    mm_spec s = {.x_batch = 2, .k = 16, .n = 24, .mm_b_batched = 1, .bias = "const"};
    expectation e = {.rule = "matmul_bias", .op = "FusedMatMul", .fused = 1, .bias = 1, .gone = "Add"};
    check(build_mm(&s), &e);
}

static void test_mm_miss_column_bias(void **state) {
    (void)state;
    mm_spec s = {.k = 48, .n = 40, .bias = "col"};
    expectation e = {.rule = "matmul_bias", .op = "FusedMatMul", .fused = 0,
                     .reason = "not broadcast along the last axis"};
    check(build_mm(&s), &e);
}

static void test_mm_miss_output_used(void **state) {
    (void)state;
    mm_spec s = {.k = 48, .n = 40, .bias = "const", .expose_mm = 1};
    expectation e = {.rule = "matmul_bias", .op = "FusedMatMul", .fused = 0, .reason = "'mm' is a graph output"};
    check(build_mm(&s), &e);
}

/* ---- the ops on their own ------------------------------------------------------ */

/* Hand-written FusedMatMul / SwiGLU nodes: transA on a 2-D A with alpha and
 * a bias run against the same product spelled with Gemm; bad shapes fail
 * with a named reason. */
static void test_ops_direct(void **state) {
    (void)state;
    float out[2][12];
    for (int which = 0; which < 2; which++) {
        tb_graph *b = tb_new("model");
        int a_in = tb_input(b, "a", FU_F32, TB_DIMS(5, 3));
        int b_in = tb_input(b, "b", FU_F32, TB_DIMS(4, 5));
        int c_in = tb_input(b, "c", FU_F32, TB_DIMS(4));
        int y = tb_op(b, which ? "FusedMatMul" : "Gemm", "y", a_in, b_in, c_in);
        tb_attr_int(b, y, "transA", 1);
        tb_attr_int(b, y, "transB", 1);
        tb_attr_float(b, y, "alpha", 0.5);
        tb_output(b, y);
        char *path = save(b);
        char err[FU_ERR_LEN] = "";
        fusec_model *m = fusec_load(path, NULL, err, sizeof err);
        if (!m) fail_msg("%s", err);
        float a[15], bv[20], c[4];
        for (int i = 0; i < 15; i++) a[i] = (float)(i % 7) - 3.0f;
        for (int i = 0; i < 20; i++) bv[i] = (float)(i % 5) * 0.5f - 1.0f;
        for (int i = 0; i < 4; i++) c[i] = (float)i + 0.25f;
        int64_t sa[2] = {5, 3}, sb[2] = {4, 5}, sc[1] = {4};
        assert_int_equal(fusec_set_input(m, "a", FUSEC_FLOAT32, 2, sa, a), 0);
        assert_int_equal(fusec_set_input(m, "b", FUSEC_FLOAT32, 2, sb, bv), 0);
        assert_int_equal(fusec_set_input(m, "c", FUSEC_FLOAT32, 1, sc, c), 0);
        assert_int_equal(fusec_run(m), 0);
        long n;
        float *yv = tu_output_f32(m, "y", &n);
        assert_int_equal(n, 12);
        memcpy(out[which], yv, sizeof out[which]);
        free(yv);
        fusec_free(m);
        tb_remove(path);
    }
    assert_true(tu_max_abs_diff(out[0], out[1], 12) <= 1e-5 * tu_max_abs(out[0], 12));

    struct {
        const char *op;
        int rank[3];
        int64_t shape[3][3];
        int trans_a;       /* FusedMatMul: transA 1, else alpha 1.0 */
        const char *error;
    } bad[] = {
        {"FusedMatMul", {3, 2, 1}, {{2, 3, 4}, {4, 5}, {5}}, 1, "transA needs a 2-D A"},
        {"FusedMatMul", {2, 2, 2}, {{3, 4}, {4, 5}, {3, 1}}, 0, "bias must broadcast along the last axis"},
        {"SwiGLU", {2, 1, 1}, {{3, 4}, {4}, {4}}, 0, "same shape"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tb_graph *b = tb_new("model");
        int a_in = tb_input(b, "a", FU_F32, bad[i].rank[0], bad[i].shape[0]);
        int b_in = tb_input(b, "b", FU_F32, bad[i].rank[1], bad[i].shape[1]);
        int c_in = tb_input(b, "c", FU_F32, bad[i].rank[2], bad[i].shape[2]);
        int y;
        if (!strcmp(bad[i].op, "SwiGLU")) {
            y = tb_op(b, "SwiGLU", "y", a_in, b_in);
        } else {
            y = tb_op(b, bad[i].op, "y", a_in, b_in, c_in);
            if (bad[i].trans_a) tb_attr_int(b, y, "transA", 1);
            else tb_attr_float(b, y, "alpha", 1.0);
        }
        tb_output(b, y);
        char *path = save(b);
        char err[FU_ERR_LEN] = "";
        fusec_model *m = fusec_load(path, NULL, err, sizeof err);
        if (m || !strstr(err, bad[i].error)) fail_msg("case %zu: expected '%s', got '%s'", i, bad[i].error, err);
        tb_remove(path);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_swiglu_forms),
        cmocka_unit_test(test_swiglu_miss_sigmoid_of_other),
        cmocka_unit_test(test_swiglu_miss_inner_exported),
        cmocka_unit_test(test_swiglu_miss_broadcast_up),
        cmocka_unit_test(test_mm_const_bias),
        cmocka_unit_test(test_mm_row_bias_left_3d),
        cmocka_unit_test(test_mm_transposed_weight_input_bias),
        cmocka_unit_test(test_mm_transposed_weight_no_bias),
        cmocka_unit_test(test_mm_batched_bias),
        cmocka_unit_test(test_mm_miss_column_bias),
        cmocka_unit_test(test_mm_miss_output_used),
        cmocka_unit_test(test_ops_direct),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
