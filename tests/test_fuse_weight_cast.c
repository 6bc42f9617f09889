/* Tests of the "weight_cast" fusion rule and of FusedMatMul's [N, K] weight
 * kernels (fu_rt_gemm_nt_bf16 / fu_rt_gemm_nt_f32).
 *
 * bfloat16 cases: the weights live in a safetensors file written by the
 * test (weights below 2^16 elements would be folded to float32 before
 * fusion, so these are [72, 1000]). Each model goes through the fast
 * pipeline with a fusion log; the fused graph must have FusedMatMuls reading
 * the bfloat16 weight with transB=1 and no Cast or Transpose left, and the
 * generated C must call the bf16 kernel. Then bare and fast run on the same
 * random inputs and agree within 1e-5 x the output's scale (both compute in
 * float32 from the same bfloat16 values). Near misses keep the Cast and log
 * a reason naming the cause.
 *
 * float32 cases: MatMul(x, Transpose(W)) with M = 1, 7, 65 rows, N = 75 and
 * K = 1000, which FusedMatMul runs on fu_rt_gemm_nt_f32. */
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

#define N_OUT 72
#define K_IN 1000

/* ---- model builders --------------------------------------------------------- */

/* Pseudo-random weight value in [-1, 1). */
static float weight_value(unsigned *seed) {
    *seed = *seed * 1103515245u + 12345u;
    return (float)((*seed >> 8) % 2000) / 1000.0f - 1.0f;
}

/* A 16-bit float weight `name` [rows, cols] (FU_BF16 or FU_F16) in the
 * model's safetensors file. */
static int weights_16(tb_graph *b, const char *name, fu_dtype t, int64_t rows, int64_t cols, unsigned seed) {
    size_t count = (size_t)(rows * cols);
    uint16_t *data = malloc(count * 2);
    assert_non_null(data);
    for (size_t i = 0; i < count; i++) {
        float v = weight_value(&seed);
        data[i] = t == FU_BF16 ? fu_f32_to_bf16(v) : fu_f32_to_f16(v);
    }
    int w = tb_weight(b, name, t, TB_DIMS(rows, cols), data);
    free(data);
    return w;
}

/* A float32 [n] bias constant (values rounded to 4 decimals). */
static int bias(tb_graph *b, const char *name, int n, unsigned seed) {
    float *v = malloc(sizeof(float) * (size_t)n);
    for (int i = 0; i < n; i++) v[i] = (float)(round(weight_value(&seed) * 1e4) / 1e4);
    int c = tb_const_f32(b, name, TB_DIMS(n), v);
    free(v);
    return c;
}

/* A builder whose nodes are named after their output ("y_node"). */
static tb_graph *new_model(void) {
    tb_graph *b = tb_new("t");
    b->node_suffix = "_node";
    return b;
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
    const char *rule;       /* rule whose log is checked */
    int rule_fused;         /* fused events of `rule` expected */
    int matmuls;            /* live FusedMatMul nodes expected after the fast pipeline */
    int casts;              /* live Cast nodes expected */
    int bf16_weights;       /* FusedMatMuls expected to read a bfloat16 B (all with transB=1) */
    int transposes;         /* live Transpose nodes expected */
    const char *kernel;     /* substring the generated C must contain (NULL: no check) */
    const char *reason;     /* near miss: substring of the logged reason */
} expectation;

static void dump_log(const fu_fusion_log *log) {
    for (int i = 0; i < log->n; i++)
        print_message("  log: %s %s %s: %s\n", log->events[i].fused ? "fused" : "miss", log->events[i].rule,
                      log->events[i].node, log->events[i].reason);
}

/* Saves the model, runs the fast pipeline on it, checks the graph and the
 * log against `want`, then compares bare and fast outputs. Frees the
 * builder and removes the files. */
static void check(tb_graph *b, const expectation *want) {
    char *path = tb_save(b);
    tb_free(b);
    fu_err err = {0};
    fu_graph *g = fu_ir_load(path, &err);
    if (!g) fail_msg("load: %s", err.msg);
    fu_fusion_log log = {0};
    fu_pass_opts opts = {.profile = FU_PROFILE_FAST, .verbose = 0, .fusion_log = &log, .evaluate = fu_evaluate_graph};
    if (fu_run_pipeline(g, &opts, NULL, &err)) fail_msg("pipeline: %s", err.msg);
    if (getenv("FUSEC_TEST_LOG")) dump_log(&log);

    int bf16 = 0, all_trans_b = 1;
    for (int i = 0; i < g->n_nodes; i++) {
        const fu_node *n = &g->nodes[i];
        if (n->dead || strcmp(n->op, "FusedMatMul")) continue;
        if (g->values[n->in[1]].dtype == FU_BF16) {
            bf16++;
            all_trans_b &= fu_attr_int(n, "transB", 0) == 1;
        }
    }
    if (tu_count_op(g, "FusedMatMul") != want->matmuls || tu_count_op(g, "Cast") != want->casts ||
        tu_count_op(g, "Transpose") != want->transposes || bf16 != want->bf16_weights || !all_trans_b ||
        fu_fusion_log_count(&log, want->rule, 1) != want->rule_fused) {
        dump_log(&log);
        fail_msg("expected %d FusedMatMul (%d on bf16), %d Cast, %d Transpose, %d %s fused; got %d (%d), %d, %d, %d",
                 want->matmuls, want->bf16_weights, want->casts, want->transposes, want->rule_fused, want->rule,
                 tu_count_op(g, "FusedMatMul"), bf16, tu_count_op(g, "Cast"), tu_count_op(g, "Transpose"),
                 fu_fusion_log_count(&log, want->rule, 1));
    }
    if (!want->reason && fu_fusion_log_count(&log, want->rule, 0) != 0) {
        dump_log(&log);
        fail_msg("unexpected %s near miss", want->rule);
    }
    if (want->reason) {
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
    if (want->kernel) {
        fu_sb code = {0};
        if (fu_emit_graph(g, &code, &err)) fail_msg("emit: %s", err.msg);
        if (!strstr(code.s, want->kernel)) fail_msg("generated code does not call %s", want->kernel);
        fu_sb_free(&code);
    }
    fu_fusion_log_free(&log);

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
    fu_graph_free(g);
    tb_remove(path);
}

/* ---- bfloat16 weights ---------------------------------------------------------- */

typedef enum {
    CAST_TRANSPOSE,   /* MatMul(x, Transpose(Cast(W [N, K])))  (the router's form) */
    TRANSPOSE_CAST,   /* MatMul(x, Cast(Transpose(W [N, K]))) */
    CAST_KN,          /* MatMul(x, Cast(W [K, N])): weight stored pre-transposed */
} weight_form;

typedef struct {
    weight_form form;
    int x_batch;             /* x is [x_batch, seq, K]; 0: [seq, K] */
    int with_bias;           /* Add(MatMul, b[N]) */
    int shared;              /* a second MatMul on input x2 reads the same Cast */
    const char *other_use;   /* op of an extra consumer of the Cast's output (its result is output "z") */
    int export_cast;         /* the Cast's output is a graph output */
    fu_dtype dtype;          /* weight dtype, default bfloat16 */
    int seq;                 /* value (max) of the seq symbol, default 9 */
} wc_spec;

static tb_graph *build_wc(const wc_spec *s) {
    int kn = s->form == CAST_KN;
    int64_t rows = kn ? K_IN : N_OUT, cols = kn ? N_OUT : K_IN;
    tb_graph *b = new_model();
    int64_t seq = tb_symbol(b, "seq", s->seq ? s->seq : 9);
    int x = s->x_batch ? tb_input(b, "x", FU_F32, TB_DIMS(s->x_batch, seq, 1000))
                       : tb_input(b, "x", FU_F32, TB_DIMS(seq, 1000));
    int x2 = s->shared ? tb_input(b, "x2", FU_F32, TB_DIMS(3, 1000)) : -1;
    int w = weights_16(b, "w", s->dtype ? s->dtype : FU_BF16, rows, cols, 11);
    int w_f, rhs;
    if (s->form == CAST_TRANSPOSE) {
        w_f = tb_attr_int(b, tb_op(b, "Cast", "w_f", w), "to", 1);
        rhs = tb_attr_ints(b, tb_op(b, "Transpose", "w_t", w_f), "perm", TB_INTS(1, 0));
    } else if (s->form == TRANSPOSE_CAST) {
        int w_t16 = tb_attr_ints(b, tb_op(b, "Transpose", "w_t16", w), "perm", TB_INTS(1, 0));
        w_f = rhs = tb_attr_int(b, tb_op(b, "Cast", "w_f", w_t16), "to", 1);
    } else {
        w_f = rhs = tb_attr_int(b, tb_op(b, "Cast", "w_f", w), "to", 1);
    }
    int y = tb_op(b, "MatMul", s->with_bias ? "mm" : "y", x, rhs);
    if (s->with_bias) y = tb_op(b, "Add", "y", y, bias(b, "b", N_OUT, 3));
    tb_output(b, y);
    if (s->shared) tb_output(b, tb_op(b, "MatMul", "y2", x2, rhs));
    if (s->other_use) tb_output(b, tb_op(b, s->other_use, "z", w_f));
    if (s->export_cast) tb_output(b, w_f);
    return b;
}

/* The router's form, with a bias, 3-D activations (rows = 2 x seq). */
static void test_cast_transpose_bias(void **state) {
    (void)state;
    wc_spec s = {.form = CAST_TRANSPOSE, .x_batch = 2, .with_bias = 1};
    expectation e = {.rule = "weight_cast", .rule_fused = 1, .matmuls = 1, .bf16_weights = 1,
                     .kernel = "fu_rt_gemm_nt_bf16("};
    check(build_wc(&s), &e);
}

/* The router's form without a bias, one row. */
static void test_cast_transpose_one_row(void **state) {
    (void)state;
    wc_spec s = {.form = CAST_TRANSPOSE, .seq = 1};
    expectation e = {.rule = "weight_cast", .rule_fused = 1, .matmuls = 1, .bf16_weights = 1,
                     .kernel = "fu_rt_gemm_nt_bf16("};
    check(build_wc(&s), &e);
}

/* The Transpose before the Cast: MatMul alone (the rule's MatMul anchor)
 * and with a bias (matmul_bias makes FusedMatMul(transB=0) first). */
static void test_transpose_cast(void **state) {
    (void)state;
    for (int with_bias = 0; with_bias < 2; with_bias++) {
        wc_spec s = {.form = TRANSPOSE_CAST, .with_bias = with_bias};
        expectation e = {.rule = "weight_cast", .rule_fused = 1, .matmuls = 1, .bf16_weights = 1,
                         .kernel = "fu_rt_gemm_nt_bf16("};
        check(build_wc(&s), &e);
    }
}

/* Two projections of the same weight: both read it, the Cast goes. */
static void test_shared_cast(void **state) {
    (void)state;
    wc_spec s = {.form = CAST_TRANSPOSE, .shared = 1};
    expectation e = {.rule = "weight_cast", .rule_fused = 1, .matmuls = 2, .bf16_weights = 2,
                     .kernel = "fu_rt_gemm_nt_bf16("};
    check(build_wc(&s), &e);
}

/* The cast weight also feeds another op: the Cast stays, FusedMatMul reads
 * its float32 output (on the f32 [N, K] kernel). */
static void test_miss_other_use(void **state) {
    (void)state;
    wc_spec s = {.form = CAST_TRANSPOSE, .other_use = "Neg"};
    expectation e = {.rule = "weight_cast", .matmuls = 1, .casts = 1, .kernel = "fu_rt_gemm_nt_f32(",
                     .reason = "also used by Neg node"};
    check(build_wc(&s), &e);
}

static void test_miss_cast_exported(void **state) {
    (void)state;
    wc_spec s = {.form = CAST_TRANSPOSE, .export_cast = 1};
    expectation e = {.rule = "weight_cast", .matmuls = 1, .casts = 1, .reason = "is a graph output"};
    check(build_wc(&s), &e);
}

/* A weight stored [K, N]: no kernel reads it in place. With a bias so that
 * matmul_bias makes a FusedMatMul (transB=0) to anchor on. */
static void test_miss_kn_layout(void **state) {
    (void)state;
    wc_spec s = {.form = CAST_KN, .with_bias = 1};
    expectation e = {.rule = "weight_cast", .matmuls = 1, .casts = 1, .reason = "used as [K, N]"};
    check(build_wc(&s), &e);
}

static void test_miss_float16(void **state) {
    (void)state;
    wc_spec s = {.form = CAST_TRANSPOSE, .dtype = FU_F16};
    expectation e = {.rule = "weight_cast", .matmuls = 1, .casts = 1, .reason = "is float16"};
    check(build_wc(&s), &e);
}

/* ---- float32 [N, K] weights: fu_rt_gemm_nt_f32 ------------------------------------ */

/* y = x W^T (+ b), W a [75, 1000] graph input through Transpose: M rows. */
static void test_f32_trans_b(void **state) {
    (void)state;
    const int rows[] = {1, 7, 65};
    for (int r = 0; r < 3; r++) {
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            tb_graph *b = new_model();
            int64_t seq = tb_symbol(b, "seq", rows[r]);
            int x = tb_input(b, "x", FU_F32, TB_DIMS(seq, 1000));
            int w = tb_input(b, "w", FU_F32, TB_DIMS(75, 1000));
            int w_t = tb_attr_ints(b, tb_op(b, "Transpose", "w_t", w), "perm", TB_INTS(1, 0));
            int y = tb_op(b, "MatMul", with_bias ? "mm" : "y", x, w_t);
            if (with_bias) y = tb_op(b, "Add", "y", bias(b, "b", 75, 5), y);
            tb_output(b, y);
            expectation e = {.rule = "matmul_bias", .rule_fused = 1, .matmuls = 1, .kernel = "fu_rt_gemm_nt_f32("};
            check(b, &e);
        }
    }
}

/* FusedMatMul reads a bfloat16 B only as a 2-D [N, K] weight. */
static void test_bf16_op_errors(void **state) {
    (void)state;
    for (int i = 0; i < 2; i++) {
        tb_graph *b = tb_new("model");
        int a_in = tb_input(b, "a", FU_F32, TB_DIMS(4, 4));
        int b_in = tb_input(b, "b", FU_BF16, TB_DIMS(4, 6));
        int y = tb_op(b, "FusedMatMul", "y", a_in, b_in);
        tb_attr_int(b, y, "transB", i);   /* case 1: transB 1 but transA 1 */
        if (i) tb_attr_int(b, y, "transA", 1);
        tb_output(b, y);
        char *path = tb_save(b);
        tb_free(b);
        char err[FU_ERR_LEN] = "";
        fusec_model *m = fusec_load(path, NULL, err, sizeof err);
        if (m || !strstr(err, "bfloat16 B must be a 2-D [N, K] weight")) fail_msg("case %d: got '%s'", i, err);
        tb_remove(path);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cast_transpose_bias),
        cmocka_unit_test(test_cast_transpose_one_row),
        cmocka_unit_test(test_transpose_cast),
        cmocka_unit_test(test_shared_cast),
        cmocka_unit_test(test_miss_other_use),
        cmocka_unit_test(test_miss_cast_exported),
        cmocka_unit_test(test_miss_kn_layout),
        cmocka_unit_test(test_miss_float16),
        cmocka_unit_test(test_f32_trans_b),
        cmocka_unit_test(test_bf16_op_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
