/* Tests for the pass manager and the graph-cleaning passes: dce, cse, fold.
 * Each graph is built in memory (graph_builder.h) and inferred; after a
 * pass the graph must still verify, and where numbers matter it is compiled
 * with the JIT and run. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "testutil.h"
#include "../ir/ir.h"
#include "../ir/json_ir.h"
#include "../ops/infer.h"
#include "../compiler/driver.h"
#include "../passes/passes.h"
#include "../compiler/emit.h"
#include "../compiler/backend.h"
#include "graph_builder.h"

/* ---- helpers ----------------------------------------------------------- */

/* The builder's graph, inferred (the builder is freed). */
static fu_graph *load_inferred(tb_graph *b) {
    fu_err err = {0};
    fu_graph *g = tb_take(b);
    if (fu_infer(g, &err)) {
        fu_graph_free(g);
        fail_msg("infer failed: %s", err.msg);
    }
    return g;
}

static int count_nodes(const fu_graph *g, const char *op) {
    int n = 0;
    for (int i = 0; i < g->n_nodes; i++)
        if (!g->nodes[i].dead && (!op || strcmp(g->nodes[i].op, op) == 0)) n++;
    return n;
}

static int count_consts(const fu_graph *g) {
    int n = 0;
    for (int v = 0; v < g->n_values; v++) n += g->values[v].kind == FU_VAL_CONST;
    return n;
}

static void run_pass(fu_graph *g, int (*pass)(fu_graph *, const fu_pass_opts *, fu_err *)) {
    fu_pass_opts opts = {.profile = FU_PROFILE_BARE, .verbose = 0, .fusion_log = NULL, .evaluate = fu_evaluate_graph};
    fu_err err = {0};
    if (pass(g, &opts, &err)) fail_msg("pass failed: %s", err.msg);
    if (fu_infer(g, &err)) fail_msg("graph no longer verifies: %s", err.msg);
}

/* Plans, emits, JIT-compiles and runs g with one input; copies output 0
 * (numel floats) into result. */
static void compile_and_run(fu_graph *g, const float *input, float *result, long numel) {
    fu_pass_opts opts = {.profile = FU_PROFILE_BARE, .verbose = 0, .fusion_log = NULL, .evaluate = fu_evaluate_graph};
    fu_err err = {0};
    if (fu_pass_plan(g, &opts, &err)) fail_msg("plan: %s", err.msg);
    fu_sb source = {0};
    if (fu_emit_graph(g, &source, &err)) fail_msg("emit: %s", err.msg);
    fu_compiled code = {0};
    int rc = fu_jit_compile(source.s, &code, &err);
    fu_sb_free(&source);
    if (rc) fail_msg("jit: %s", err.msg);
    void *arena = aligned_alloc(64, (size_t)((g->arena_bytes + 64) / 64 * 64));
    const void *in[1] = {input};
    void *out[1] = {NULL};
    int64_t sym[FU_MAX_SYMS] = {0};
    assert_int_equal(code.run(sym, in, NULL, arena, out), 0);
    assert_non_null(out[0]);
    memcpy(result, out[0], sizeof(float) * (size_t)numel);
    free(arena);
    fu_compiled_free(&code);
}

/* ---- dce ------------------------------------------------------------- */

static tb_graph *dce_model(void) {
    tb_graph *b = tb_new("dce");
    int x = tb_input(b, "x", FU_F32, TB_DIMS(4));
    int two = tb_const_f32(b, "two", TB_DIMS(4), (const float[]){2, 2, 2, 2});
    tb_const_f32(b, "unused_init", TB_DIMS(4), (const float[]){9, 9, 9, 9});
    int r = tb_name(b, tb_op(b, "Relu", "r", x), "dead_relu");
    int nr = tb_name(b, tb_op(b, "Neg", "nr", r), "dead_neg");
    tb_name(b, tb_op(b, "Add", "z", nr, two), "dead_add");
    tb_output_decl(b, tb_name(b, tb_op(b, "Mul", "y", x, two), "mul"), FU_F32, TB_DIMS(4));
    return b;
}

static void test_dce_removes_unused_chain_and_initializer(void **state) {
    (void)state;
    fu_graph *g = load_inferred(dce_model());
    assert_int_equal(count_nodes(g, NULL), 4);
    assert_true(fu_graph_find_value(g, "unused_init") >= 0);
    run_pass(g, fu_pass_dce);
    assert_int_equal(count_nodes(g, NULL), 1);
    assert_int_equal(count_nodes(g, "Mul"), 1);
    assert_int_equal(fu_graph_find_value(g, "unused_init"), -1);
    assert_int_equal(fu_graph_find_value(g, "r"), -1);
    assert_int_equal(fu_graph_find_value(g, "z"), -1);
    assert_true(fu_graph_find_value(g, "two") >= 0);  /* still read by mul */
    assert_int_equal(g->n_inputs, 1);

    float x[4] = {1, -2, 3, 0.5f}, y[4];
    compile_and_run(g, x, y, 4);
    for (int i = 0; i < 4; i++) assert_float_equal(y[i], 2 * x[i], 0);
    fu_graph_free(g);
}

/* ---- cse ------------------------------------------------------------- */

/* add_a and add_b read equal constants: merging the constants makes the
 * nodes identical. The Softmax pair differs only in its axis. */
static tb_graph *cse_model(void) {
    tb_graph *b = tb_new("cse");
    int x = tb_input(b, "x", FU_F32, TB_DIMS(2, 2));
    int c1 = tb_const_f32(b, "c1", TB_DIMS(2), (const float[]){1, 2});
    int c2 = tb_const_f32(b, "c2", TB_DIMS(2), (const float[]){1, 2});
    int a = tb_name(b, tb_op(b, "Add", "a", x, c1), "add_a");
    int ab = tb_name(b, tb_op(b, "Add", "b", x, c2), "add_b");
    int s0 = tb_name(b, tb_attr_int(b, tb_op(b, "Softmax", "s0", a), "axis", 0), "sm0");
    int s1 = tb_name(b, tb_attr_int(b, tb_op(b, "Softmax", "s1", ab), "axis", 1), "sm1");
    tb_output_decl(b, tb_name(b, tb_op(b, "Add", "y", s0, s1), "sum"), FU_F32, TB_DIMS(2, 2));
    return b;
}

static void softmax_reference(const float *x, float *y) {
    float a[4];
    for (int r = 0; r < 2; r++)
        for (int c = 0; c < 2; c++) a[r * 2 + c] = x[r * 2 + c] + (float)(c + 1);
    for (int r = 0; r < 2; r++)
        for (int c = 0; c < 2; c++) {
            double row = exp(a[r * 2 + c]) / (exp(a[r * 2]) + exp(a[r * 2 + 1]));
            double col = exp(a[r * 2 + c]) / (exp(a[c]) + exp(a[2 + c]));
            y[r * 2 + c] = (float)(row + col);
        }
}

static void test_cse_merges_identical_nodes_and_constants(void **state) {
    (void)state;
    fu_graph *g = load_inferred(cse_model());
    assert_int_equal(count_nodes(g, "Add"), 3);
    assert_int_equal(count_consts(g), 2);
    run_pass(g, fu_pass_cse);
    assert_int_equal(count_consts(g), 1);
    assert_int_equal(count_nodes(g, "Add"), 2);      /* add_a and add_b became one */
    assert_int_equal(count_nodes(g, "Softmax"), 2);  /* different axes stay apart */
    int sm0 = -1, sm1 = -1;
    for (int i = 0; i < g->n_nodes; i++) {
        if (strcmp(g->nodes[i].name, "sm0") == 0) sm0 = i;
        if (strcmp(g->nodes[i].name, "sm1") == 0) sm1 = i;
    }
    assert_true(sm0 >= 0 && sm1 >= 0);
    assert_int_equal(g->nodes[sm0].in[0], g->nodes[sm1].in[0]);  /* both read the survivor */

    float x[4] = {0.5f, -1, 2, 0.25f}, y[4], want[4];
    softmax_reference(x, want);
    compile_and_run(g, x, y, 4);
    assert_true(tu_max_abs_diff(y, want, 4) < 1e-5);
    fu_graph_free(g);
}

static tb_graph *cse_out_model(void) {
    tb_graph *b = tb_new("cse_out");
    int x = tb_input(b, "x", FU_F32, TB_DIMS(3));
    int e = tb_name(b, tb_op(b, "Exp", "e", x), "e1");
    int z = tb_name(b, tb_op(b, "Exp", "z", x), "e2");
    tb_output_decl(b, tb_name(b, tb_op(b, "Neg", "y", e), "n1"), FU_F32, TB_DIMS(3));
    tb_output_decl(b, z, FU_F32, TB_DIMS(3));
    return b;
}

/* A duplicate whose output is a graph output must keep producing it. */
static void test_cse_keeps_duplicate_graph_output(void **state) {
    (void)state;
    fu_graph *g = load_inferred(cse_out_model());
    run_pass(g, fu_pass_cse);
    assert_int_equal(count_nodes(g, "Exp"), 2);
    int z = fu_graph_find_value(g, "z");
    assert_true(z >= 0);
    assert_true(g->values[z].producer >= 0);
    fu_graph_free(g);
}

/* ---- fold ------------------------------------------------------------ */

static tb_graph *fold_add_model(void) {
    tb_graph *b = tb_new("fold_add");
    int x = tb_input(b, "x", FU_F32, TB_DIMS(3));
    int a = tb_const_f32(b, "a", TB_DIMS(3), (const float[]){1, 2, 3});
    int c = tb_const_f32(b, "b", TB_DIMS(3), (const float[]){10, 20, 30.5f});
    int s = tb_name(b, tb_op(b, "Add", "s", a, c), "sum");
    int s2 = tb_name(b, tb_op(b, "Mul", "s2", s, s), "sq");
    tb_output_decl(b, tb_name(b, tb_op(b, "Mul", "y", x, s2), "mul"), FU_F32, TB_DIMS(3));
    return b;
}

static void test_fold_add_of_constants(void **state) {
    (void)state;
    fu_graph *g = load_inferred(fold_add_model());
    assert_int_equal(count_nodes(g, NULL), 3);
    run_pass(g, fu_pass_fold);
    assert_int_equal(count_nodes(g, NULL), 1);
    int s2 = fu_graph_find_value(g, "s2");
    assert_true(s2 >= 0);
    assert_int_equal(g->values[s2].kind, FU_VAL_CONST);
    assert_int_equal(fu_graph_find_value(g, "s"), -1);  /* interior value is gone */
    const float want[3] = {11 * 11, 22 * 22, 33.5f * 33.5f};
    for (int i = 0; i < 3; i++) assert_float_equal(fu_const_get_f(&g->values[s2], i), want[i], 0);

    float x[3] = {1, 0.5f, -2}, y[3];
    compile_and_run(g, x, y, 3);
    for (int i = 0; i < 3; i++) assert_float_equal(y[i], x[i] * want[i], 0);
    fu_graph_free(g);
}

/* Reshape target built from the input's static shape. */
static tb_graph *shape_chain_model(void) {
    tb_graph *b = tb_new("fold_shape");
    int x = tb_input(b, "x", FU_F32, TB_DIMS(2, 3, 4));
    int one = tb_scalar_i64(b, "one", 1);
    int axes0 = tb_const_ints(b, "axes0", TB_INTS(0));
    int minus1 = tb_const_ints(b, "minus1", TB_INTS(-1));
    int sh = tb_name(b, tb_op(b, "Shape", "sh", x), "shape");
    int d1 = tb_name(b, tb_attr_int(b, tb_op(b, "Gather", "d1", sh, one), "axis", 0), "gather");
    int u = tb_name(b, tb_op(b, "Unsqueeze", "u", d1, axes0), "unsq");
    int target = tb_name(b, tb_attr_int(b, tb_op(b, "Concat", "target", u, minus1), "axis", 0), "cat");
    tb_output_decl(b, tb_name(b, tb_op(b, "Reshape", "y", x, target), "reshape"), FU_F32, TB_DIMS(3, 8));
    return b;
}

static void test_fold_shape_chain(void **state) {
    (void)state;
    fu_graph *g = load_inferred(shape_chain_model());
    assert_int_equal(count_nodes(g, NULL), 5);
    run_pass(g, fu_pass_fold);
    assert_int_equal(count_nodes(g, NULL), 1);
    assert_int_equal(count_nodes(g, "Reshape"), 1);
    int t = fu_graph_find_value(g, "target");
    assert_true(t >= 0);
    assert_int_equal(g->values[t].kind, FU_VAL_CONST);
    assert_int_equal(g->values[t].dtype, FU_I64);
    assert_int_equal(g->values[t].nbytes, 2 * sizeof(int64_t));
    assert_int_equal(fu_const_get_i(&g->values[t], 0), 3);
    assert_int_equal(fu_const_get_i(&g->values[t], 1), -1);
    int y = fu_graph_find_value(g, "y");
    assert_int_equal(g->values[y].rank, 2);
    assert_int_equal(g->values[y].shape[0].coef, 3);
    assert_int_equal(g->values[y].shape[1].coef, 8);

    float x[24], out[24];
    for (int i = 0; i < 24; i++) x[i] = (float)i - 7.5f;
    compile_and_run(g, x, out, 24);
    assert_true(tu_max_abs_diff(x, out, 24) == 0);
    fu_graph_free(g);
}

/* Folding leaves nodes on graph inputs alone. */
static void test_fold_keeps_input_dependent_nodes(void **state) {
    (void)state;
    fu_graph *g = load_inferred(dce_model());
    run_pass(g, fu_pass_fold);
    assert_int_equal(count_nodes(g, NULL), 4);
    fu_graph_free(g);
}

/* ---- pass manager ----------------------------------------------------- */

/* An unused node (dce's job), a foldable Add (fold's job). */
static tb_graph *pipeline_model(void) {
    tb_graph *b = tb_new("pipe");
    int x = tb_input(b, "x", FU_F32, TB_DIMS(2));
    int a = tb_const_f32(b, "a", TB_DIMS(2), (const float[]){1, 2});
    int c = tb_const_f32(b, "b", TB_DIMS(2), (const float[]){3, 4});
    tb_name(b, tb_op(b, "Neg", "n", x), "unused");
    int s = tb_name(b, tb_op(b, "Add", "s", a, c), "sum");
    tb_output_decl(b, tb_name(b, tb_op(b, "Mul", "y", x, s), "mul"), FU_F32, TB_DIMS(2));
    return b;
}

static void test_pipeline_tables(void **state) {
    (void)state;
    const fu_pass *passes[16];
    const char *want[] = {"infer", "fold", "cse", "dce", "plan"};
    assert_int_equal(fu_pipeline(FU_PROFILE_BARE, passes, 16), 5);
    for (int i = 0; i < 5; i++) assert_string_equal(passes[i]->name, want[i]);
    int n_fast = fu_pipeline(FU_PROFILE_FAST, passes, 16);
    assert_true(n_fast >= 5);
    assert_string_equal(passes[0]->name, "infer");
    assert_string_equal(passes[n_fast - 1]->name, "plan");
    assert_non_null(fu_pass_find("cse"));
    assert_ptr_equal(fu_pass_find("dce")->run, fu_pass_dce);
    assert_null(fu_pass_find("nope"));
}

static void test_pipeline_stops_after_pass(void **state) {
    (void)state;
    fu_pass_opts opts = {.profile = FU_PROFILE_BARE, .verbose = 0, .fusion_log = NULL, .evaluate = fu_evaluate_graph};
    fu_err err = {0};

    fu_graph *g = load_inferred(pipeline_model());
    assert_int_equal(fu_run_pipeline(g, &opts, "infer", &err), 0);
    assert_int_equal(count_nodes(g, NULL), 3);
    fu_graph_free(g);

    g = load_inferred(pipeline_model());
    assert_int_equal(fu_run_pipeline(g, &opts, "fold", &err), 0);
    assert_int_equal(count_nodes(g, NULL), 2);  /* Add folded, Neg not yet removed */
    assert_int_equal(count_nodes(g, "Neg"), 1);
    assert_int_equal(g->arena_bytes, 0);        /* no plan yet */
    fu_graph_free(g);

    g = load_inferred(pipeline_model());
    assert_int_equal(fu_run_pipeline(g, &opts, "dce", &err), 0);
    assert_int_equal(count_nodes(g, NULL), 1);
    assert_int_equal(g->arena_bytes, 0);
    fu_graph_free(g);

    g = load_inferred(pipeline_model());
    assert_int_equal(fu_run_pipeline(g, &opts, NULL, &err), 0);
    assert_int_equal(count_nodes(g, NULL), 1);
    int y = fu_graph_find_value(g, "y");
    assert_int_equal(g->values[y].storage, FU_STORE_ARENA);  /* the plan ran */
    fu_graph_free(g);
}

static void test_pipeline_unknown_pass(void **state) {
    (void)state;
    fu_pass_opts opts = {.profile = FU_PROFILE_FAST, .verbose = 0, .fusion_log = NULL, .evaluate = fu_evaluate_graph};
    fu_err err = {0};
    fu_graph *g = load_inferred(pipeline_model());
    assert_int_equal(fu_run_pipeline(g, &opts, "fusion", &err), -1);
    assert_non_null(strstr(err.msg, "unknown pass 'fusion'"));
    assert_non_null(strstr(err.msg, "infer, fold"));
    assert_int_equal(count_nodes(g, NULL), 3);  /* nothing ran */
    fu_graph_free(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dce_removes_unused_chain_and_initializer),
        cmocka_unit_test(test_cse_merges_identical_nodes_and_constants),
        cmocka_unit_test(test_cse_keeps_duplicate_graph_output),
        cmocka_unit_test(test_fold_add_of_constants),
        cmocka_unit_test(test_fold_shape_chain),
        cmocka_unit_test(test_fold_keeps_input_dependent_nodes),
        cmocka_unit_test(test_pipeline_tables),
        cmocka_unit_test(test_pipeline_stops_after_pass),
        cmocka_unit_test(test_pipeline_unknown_pass),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
