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

/* ---- JSON builders ---------------------------------------------------------- */

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

static void input(fu_sb *b, const char *name, const char *shape) {
    fu_sb_printf(b, "%s    {\"name\": \"%s\", \"dtype\": \"float32\", \"shape\": %s}", b->len ? ",\n" : "", name, shape);
}

/* A float32 initializer of pseudo-random values. */
static void weight(fu_sb *b, const char *name, const char *shape, int count, unsigned seed) {
    fu_sb_printf(b, "%s    {\"name\": \"%s\", \"dtype\": \"float32\", \"shape\": %s, \"data\": [", b->len ? ",\n" : "",
                 name, shape);
    for (int i = 0; i < count; i++) {
        seed = seed * 1103515245u + 12345u;
        fu_sb_printf(b, "%s%.4f", i ? ", " : "", ((seed >> 8) % 2000) / 1000.0 - 1.0);
    }
    fu_sb_printf(b, "]}");
}

static char *model(fu_sb *ins, fu_sb *inits, fu_sb *nodes, const char *outputs, const char *symbols) {
    fu_sb m = {0};
    fu_sb_printf(&m, "{\"ir_version\": 1, \"name\": \"t\",\n");
    if (symbols) fu_sb_printf(&m, " \"symbols\": %s,\n", symbols);
    fu_sb_printf(&m, " \"inputs\": [\n%s],\n \"outputs\": [%s],\n \"initializers\": [\n%s],\n \"nodes\": [\n%s]}\n",
                 ins->s, outputs, inits->s ? inits->s : "", nodes->s);
    assert_false(m.oom || ins->oom || inits->oom || nodes->oom);
    fu_sb_free(ins);
    fu_sb_free(inits);
    fu_sb_free(nodes);
    return m.s;
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

static void check(char *json, const expectation *want) {
    char *path = tu_write_temp(".json", json);
    fu_err err = {{0}};
    fu_graph *g = fu_ir_load(path, &err);
    if (!g) fail_msg("load: %s\n%s", err.msg, json);
    fu_fusion_log log = {0};
    fu_pass_opts opts = {.profile = FU_PROFILE_FAST, .verbose = 0, .fusion_log = &log, .evaluate = fu_evaluate_graph};
    if (fu_run_pipeline(g, &opts, NULL, &err)) fail_msg("pipeline: %s\n%s", err.msg, json);
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
    unlink(path);
    free(path);
    free(json);
}

/* ---- SwiGLU -------------------------------------------------------------------- */

/* The three factors g, Sigmoid(g), u grouped as (a*b)*c, in the order given
 * by `form`: "gs_u" = (g*s)*u, "u_sg" = u*(s*g), "su_g" = (s*u)*g,
 * "gu_s" = s*(g*u). gate and up come from projections of x [seq, 64]. */
static char *build_swiglu(const char *form, const char *sig_of, const char *up_shape, int expose_inner) {
    fu_sb ins = {0}, inits = {0}, nodes = {0};
    input(&ins, "x", "[\"seq\", 64]");
    input(&ins, "other", "[\"seq\", 96]");
    if (up_shape) input(&ins, "u_in", up_shape);
    weight(&inits, "wg", "[64, 96]", 64 * 96, 1);
    weight(&inits, "wu", "[64, 96]", 64 * 96, 2);
    node(&nodes, "MatMul", "x,wg", "g", NULL);
    node(&nodes, "MatMul", "x,wu", "u0", NULL);
    const char *u = up_shape ? "u_in" : "u0";
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%s", sig_of ? sig_of : "g");
    node(&nodes, "Sigmoid", tmp, "s", NULL);
    if (!strcmp(form, "gs_u")) {
        node(&nodes, "Mul", "g,s", "inner", NULL);
        snprintf(tmp, sizeof tmp, "inner,%s", u);
        node(&nodes, "Mul", tmp, "y", NULL);
    } else if (!strcmp(form, "u_sg")) {
        node(&nodes, "Mul", "s,g", "inner", NULL);
        snprintf(tmp, sizeof tmp, "%s,inner", u);
        node(&nodes, "Mul", tmp, "y", NULL);
    } else if (!strcmp(form, "su_g")) {
        snprintf(tmp, sizeof tmp, "s,%s", u);
        node(&nodes, "Mul", tmp, "inner", NULL);
        node(&nodes, "Mul", "inner,g", "y", NULL);
    } else {
        snprintf(tmp, sizeof tmp, "g,%s", u);
        node(&nodes, "Mul", tmp, "inner", NULL);
        node(&nodes, "Mul", "s,inner", "y", NULL);
    }
    return model(&ins, &inits, &nodes, expose_inner ? "{\"name\": \"y\"}, {\"name\": \"inner\"}" : "{\"name\": \"y\"}",
                 "{\"seq\": 7}");
}

static void test_swiglu_forms(void **state) {
    (void)state;
    const char *forms[] = {"gs_u", "u_sg", "su_g", "gu_s"};
    for (int i = 0; i < 4; i++) {
        expectation e = {.rule = "swiglu", .op = "SwiGLU", .fused = 1, .gone = "Sigmoid"};
        check(build_swiglu(forms[i], NULL, NULL, 0), &e);
    }
}

static void test_swiglu_miss_sigmoid_of_other(void **state) {
    (void)state;
    expectation e = {.rule = "swiglu", .op = "SwiGLU", .fused = 0, .reason = "sigmoid of a different tensor"};
    check(build_swiglu("gs_u", "other", NULL, 0), &e);
}

static void test_swiglu_miss_inner_exported(void **state) {
    (void)state;
    expectation e = {.rule = "swiglu", .op = "SwiGLU", .fused = 0, .reason = "'inner' is a graph output"};
    check(build_swiglu("gs_u", NULL, NULL, 1), &e);
}

static void test_swiglu_miss_broadcast_up(void **state) {
    (void)state;
    expectation e = {.rule = "swiglu", .op = "SwiGLU", .fused = 0, .reason = "shapes differ"};
    check(build_swiglu("gs_u", NULL, "[96]", 0), &e);
}

/* ---- MatMul + bias ------------------------------------------------------------ */

typedef struct {
    const char *x_shape;   /* default "[\"seq\", 48]" */
    int k, n;              /* x's last dim, output dim */
    int transposed;        /* W given as [n, k] through Transpose(perm [1, 0]) */
    const char *bias;      /* NULL none, "const" [n], "row" [1, n], "input" graph input [n], "col" [seq, 1] */
    int bias_left;         /* Add(bias, MatMul) */
    int expose_mm;         /* the MatMul output is also a graph output */
    int mm_b_batched;      /* B is a [2, k, n] input (batched MatMul) */
} mm_spec;

static char *build_mm(const mm_spec *s) {
    fu_sb ins = {0}, inits = {0}, nodes = {0};
    char shape[64], tmp[64];
    input(&ins, "x", s->x_shape ? s->x_shape : "[\"seq\", 48]");
    const char *w = "w";
    if (s->mm_b_batched) {
        snprintf(shape, sizeof shape, "[2, %d, %d]", s->k, s->n);
        input(&ins, "w", shape);
    } else if (s->transposed) {
        /* A graph input, as large weights from the file stay unfolded. */
        snprintf(shape, sizeof shape, "[%d, %d]", s->n, s->k);
        input(&ins, "w_out_in", shape);
        node(&nodes, "Transpose", "w_out_in", "w_t", "{\"perm\": [1, 0]}");
        w = "w_t";
    } else {
        snprintf(shape, sizeof shape, "[%d, %d]", s->k, s->n);
        weight(&inits, "w", shape, s->n * s->k, 5);
    }
    snprintf(tmp, sizeof tmp, "x,%s", w);
    node(&nodes, "MatMul", tmp, s->bias ? "mm" : "y", NULL);
    if (s->bias) {
        if (!strcmp(s->bias, "const")) {
            snprintf(shape, sizeof shape, "[%d]", s->n);
            weight(&inits, "b", shape, s->n, 9);
        } else if (!strcmp(s->bias, "row")) {
            snprintf(shape, sizeof shape, "[1, %d]", s->n);
            weight(&inits, "b", shape, s->n, 9);
        } else if (!strcmp(s->bias, "input")) {
            snprintf(shape, sizeof shape, "[%d]", s->n);
            input(&ins, "b", shape);
        } else {
            input(&ins, "b", "[\"seq\", 1]");
        }
        node(&nodes, "Add", s->bias_left ? "b,mm" : "mm,b", "y", NULL);
    }
    return model(&ins, &inits, &nodes, s->expose_mm ? "{\"name\": \"y\"}, {\"name\": \"mm\"}" : "{\"name\": \"y\"}",
                 "{\"seq\": 9}");
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
    mm_spec s = {.x_shape = "[2, \"seq\", 48]", .k = 48, .n = 40, .bias = "row", .bias_left = 1};
    expectation e = {.rule = "matmul_bias", .op = "FusedMatMul", .fused = 1, .bias = 1, .gone = "Add"};
    check(build_mm(&s), &e);
}

/* A [n, k] weight through Transpose(perm [1, 0]) + a bias that is a graph
 * input: transB, and no Transpose left to run. */
static void test_mm_transposed_weight_input_bias(void **state) {
    (void)state;
    mm_spec s = {.x_shape = "[\"seq\", 96]", .k = 96, .n = 72, .transposed = 1, .bias = "input"};
    expectation e = {.rule = "matmul_bias", .op = "FusedMatMul", .fused = 1, .trans_b = 1, .bias = 1,
                     .gone = "Transpose"};
    check(build_mm(&s), &e);
}

/* MatMul(x, Transpose(W)) without a bias. */
static void test_mm_transposed_weight_no_bias(void **state) {
    (void)state;
    mm_spec s = {.x_shape = "[1, \"seq\", 96]", .k = 96, .n = 72, .transposed = 1};
    expectation e = {.rule = "matmul_bias", .op = "FusedMatMul", .fused = 1, .trans_b = 1, .bias = 0,
                     .gone = "Transpose"};
    check(build_mm(&s), &e);
}

/* Batched B (batching like MatMul) with a bias. */
static void test_mm_batched_bias(void **state) {
    (void)state;
    mm_spec s = {.x_shape = "[2, \"seq\", 16]", .k = 16, .n = 24, .mm_b_batched = 1, .bias = "const"};
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
    const char *gemm =
        "{\"ir_version\": 1, \"inputs\": [{\"name\": \"a\", \"dtype\": \"float32\", \"shape\": [5, 3]},"
        " {\"name\": \"b\", \"dtype\": \"float32\", \"shape\": [4, 5]}, {\"name\": \"c\", \"dtype\": \"float32\","
        " \"shape\": [4]}], \"outputs\": [{\"name\": \"y\"}],"
        " \"nodes\": [{\"op\": \"%s\", \"inputs\": [\"a\", \"b\", \"c\"], \"outputs\": [\"y\"],"
        " \"attrs\": {\"transA\": 1, \"transB\": 1, \"alpha\": 0.5}}]}";
    float out[2][12];
    for (int which = 0; which < 2; which++) {
        char json[1024];
        snprintf(json, sizeof json, gemm, which ? "FusedMatMul" : "Gemm");
        char *path = tu_write_temp(".json", json);
        char err[FU_ERR_LEN] = "";
        fusec_model *m = fusec_load(path, NULL, err, sizeof err);
        if (!m) fail_msg("%s", err);
        float a[15], b[20], c[4];
        for (int i = 0; i < 15; i++) a[i] = (float)(i % 7) - 3.0f;
        for (int i = 0; i < 20; i++) b[i] = (float)(i % 5) * 0.5f - 1.0f;
        for (int i = 0; i < 4; i++) c[i] = (float)i + 0.25f;
        int64_t sa[2] = {5, 3}, sb[2] = {4, 5}, sc[1] = {4};
        assert_int_equal(fusec_set_input(m, "a", FUSEC_FLOAT32, 2, sa, a), 0);
        assert_int_equal(fusec_set_input(m, "b", FUSEC_FLOAT32, 2, sb, b), 0);
        assert_int_equal(fusec_set_input(m, "c", FUSEC_FLOAT32, 1, sc, c), 0);
        assert_int_equal(fusec_run(m), 0);
        long n;
        float *y = tu_output_f32(m, "y", &n);
        assert_int_equal(n, 12);
        memcpy(out[which], y, sizeof out[which]);
        free(y);
        fusec_free(m);
        unlink(path);
        free(path);
    }
    assert_true(tu_max_abs_diff(out[0], out[1], 12) <= 1e-5 * tu_max_abs(out[0], 12));

    struct {
        const char *op, *shapes, *attrs, *error;
    } bad[] = {
        {"FusedMatMul", "[2, 3, 4], [4, 5], [5]", "\"transA\": 1", "transA needs a 2-D A"},
        {"FusedMatMul", "[3, 4], [4, 5], [3, 1]", "\"alpha\": 1.0", "bias must broadcast along the last axis"},
        {"SwiGLU", "[3, 4], [4], [4]", "\"alpha\": 1.0", "same shape"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char json[1024], s[3][32];
        sscanf(bad[i].shapes, "%31[^]]], %31[^]]], %31[^]]]", s[0], s[1], s[2]);
        int swiglu = !strcmp(bad[i].op, "SwiGLU");
        snprintf(json, sizeof json,
                 "{\"ir_version\": 1, \"inputs\": [{\"name\": \"a\", \"dtype\": \"float32\", \"shape\": %s]},"
                 " {\"name\": \"b\", \"dtype\": \"float32\", \"shape\": %s]}, {\"name\": \"c\", \"dtype\": \"float32\","
                 " \"shape\": %s]}], \"outputs\": [{\"name\": \"y\"}], \"nodes\": [{\"op\": \"%s\", \"inputs\": "
                 "[\"a\", \"b\"%s], \"outputs\": [\"y\"]%s%s%s}]}",
                 s[0], s[1], s[2], bad[i].op, swiglu ? "" : ", \"c\"", swiglu ? "" : ", \"attrs\": {",
                 swiglu ? "" : bad[i].attrs, swiglu ? "" : "}");
        char *path = tu_write_temp(".json", json);
        char err[FU_ERR_LEN] = "";
        fusec_model *m = fusec_load(path, NULL, err, sizeof err);
        if (m || !strstr(err, bad[i].error)) fail_msg("case %zu: expected '%s', got '%s'", i, bad[i].error, err);
        unlink(path);
        free(path);
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
