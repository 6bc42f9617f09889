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

#define N_OUT 72
#define K_IN 1000

/* ---- files ------------------------------------------------------------------ */

/* Pseudo-random weight value in [-1, 1). */
static float weight_value(unsigned *seed) {
    *seed = *seed * 1103515245u + 12345u;
    return (float)((*seed >> 8) % 2000) / 1000.0f - 1.0f;
}

/* Writes a safetensors file with one 16-bit float tensor `name` of `shape`
 * ("BF16" or "F16"). Returns the malloc'd path. */
static char *write_weights(const char *name, const char *st_dtype, int64_t rows, int64_t cols, unsigned seed) {
    size_t count = (size_t)(rows * cols);
    uint16_t *data = malloc(count * 2);
    assert_non_null(data);
    int bf16 = !strcmp(st_dtype, "BF16");
    for (size_t i = 0; i < count; i++) {
        float v = weight_value(&seed);
        data[i] = bf16 ? fu_f32_to_bf16(v) : fu_f32_to_f16(v);
    }
    char header[256];
    int len = snprintf(header, sizeof header, "{\"%s\": {\"dtype\": \"%s\", \"shape\": [%lld, %lld], "
                       "\"data_offsets\": [0, %zu]}}", name, st_dtype, (long long)rows, (long long)cols, count * 2);
    char *path = tu_write_temp(".safetensors", "");
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint64_t n = (uint64_t)len;
    assert_int_equal(fwrite(&n, 8, 1, f), 1);
    assert_int_equal(fwrite(header, 1, (size_t)len, f), (size_t)len);
    assert_int_equal(fwrite(data, 2, count, f), count);
    fclose(f);
    free(data);
    return path;
}

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

/* A float32 [n] bias initializer with inline data. */
static void bias(fu_sb *b, const char *name, int n, unsigned seed) {
    fu_sb_printf(b, "%s    {\"name\": \"%s\", \"dtype\": \"float32\", \"shape\": [%d], \"data\": [", b->len ? ",\n" : "",
                 name, n);
    for (int i = 0; i < n; i++) fu_sb_printf(b, "%s%.4f", i ? ", " : "", (double)weight_value(&seed));
    fu_sb_printf(b, "]}");
}

static char *model(const char *weights, fu_sb *ins, fu_sb *inits, fu_sb *nodes, const char *outputs,
                   const char *symbols) {
    fu_sb m = {0};
    fu_sb_printf(&m, "{\"ir_version\": 1, \"name\": \"t\",\n");
    if (weights) fu_sb_printf(&m, " \"weights\": \"%s\",\n", weights);
    fu_sb_printf(&m, " \"symbols\": %s,\n", symbols);
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

/* Runs the fast pipeline on the model, checks the graph and the log against
 * `want`, then compares bare and fast outputs. Frees json and removes the
 * files. */
static void check(char *json, char *weights, const expectation *want) {
    char *path = tu_write_temp(".json", json);
    fu_err err = {{0}};
    fu_graph *g = fu_ir_load(path, &err);
    if (!g) fail_msg("load: %s\n%s", err.msg, json);
    fu_fusion_log log = {0};
    fu_pass_opts opts = {.profile = FU_PROFILE_FAST, .verbose = 0, .fusion_log = &log, .evaluate = fu_evaluate_graph};
    if (fu_run_pipeline(g, &opts, NULL, &err)) fail_msg("pipeline: %s\n%s", err.msg, json);
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
    unlink(path);
    free(path);
    if (weights) {
        unlink(weights);
        free(weights);
    }
    free(json);
}

/* ---- bfloat16 weights ---------------------------------------------------------- */

typedef enum {
    CAST_TRANSPOSE,   /* MatMul(x, Transpose(Cast(W [N, K])))  (the router's form) */
    TRANSPOSE_CAST,   /* MatMul(x, Cast(Transpose(W [N, K]))) */
    CAST_KN,          /* MatMul(x, Cast(W [K, N])): weight stored pre-transposed */
} weight_form;

typedef struct {
    weight_form form;
    const char *x_shape;     /* default ["seq", K] */
    int with_bias;           /* Add(MatMul, b[N]) */
    int shared;              /* a second MatMul on input x2 reads the same Cast */
    const char *other_use;   /* op of an extra consumer of the Cast's output (its result is output "z") */
    int export_cast;         /* the Cast's output is a graph output */
    const char *dtype;       /* weight dtype, default bfloat16 */
    int seq;                 /* value (max) of the seq symbol, default 9 */
} wc_spec;

static char *build_wc(const wc_spec *s, char **weights) {
    const char *dtype = s->dtype ? s->dtype : "bfloat16";
    int kn = s->form == CAST_KN;
    int64_t rows = kn ? K_IN : N_OUT, cols = kn ? N_OUT : K_IN;
    *weights = write_weights("w", strcmp(dtype, "float16") ? "BF16" : "F16", rows, cols, 11);
    fu_sb ins = {0}, inits = {0}, nodes = {0};
    char shape[64], outs[128], symbols[32];
    input(&ins, "x", s->x_shape ? s->x_shape : "[\"seq\", 1000]");
    if (s->shared) input(&ins, "x2", "[3, 1000]");
    fu_sb_printf(&inits, "    {\"name\": \"w\", \"dtype\": \"%s\", \"shape\": [%lld, %lld]}", dtype, (long long)rows,
                 (long long)cols);
    const char *b = "w_f";
    if (s->form == CAST_TRANSPOSE) {
        node(&nodes, "Cast", "w", "w_f", "{\"to\": 1}");
        node(&nodes, "Transpose", "w_f", "w_t", "{\"perm\": [1, 0]}");
        b = "w_t";
    } else if (s->form == TRANSPOSE_CAST) {
        node(&nodes, "Transpose", "w", "w_t16", "{\"perm\": [1, 0]}");
        node(&nodes, "Cast", "w_t16", "w_f", "{\"to\": 1}");
    } else {
        node(&nodes, "Cast", "w", "w_f", "{\"to\": 1}");
    }
    snprintf(shape, sizeof shape, "x,%s", b);
    node(&nodes, "MatMul", shape, s->with_bias ? "mm" : "y", NULL);
    if (s->with_bias) {
        bias(&inits, "b", N_OUT, 3);
        node(&nodes, "Add", "mm,b", "y", NULL);
    }
    snprintf(outs, sizeof outs, "{\"name\": \"y\"}");
    if (s->shared) {
        snprintf(shape, sizeof shape, "x2,%s", b);
        node(&nodes, "MatMul", shape, "y2", NULL);
        strcat(outs, ", {\"name\": \"y2\"}");
    }
    if (s->other_use) {
        node(&nodes, s->other_use, "w_f", "z", NULL);
        strcat(outs, ", {\"name\": \"z\"}");
    }
    if (s->export_cast) strcat(outs, ", {\"name\": \"w_f\"}");
    snprintf(symbols, sizeof symbols, "{\"seq\": %d}", s->seq ? s->seq : 9);
    return model(*weights, &ins, &inits, &nodes, outs, symbols);
}

/* The router's form, with a bias, 3-D activations (rows = 2 x seq). */
static void test_cast_transpose_bias(void **state) {
    (void)state;
    wc_spec s = {.form = CAST_TRANSPOSE, .x_shape = "[2, \"seq\", 1000]", .with_bias = 1};
    char *weights;
    char *json = build_wc(&s, &weights);
    expectation e = {.rule = "weight_cast", .rule_fused = 1, .matmuls = 1, .bf16_weights = 1,
                     .kernel = "fu_rt_gemm_nt_bf16("};
    check(json, weights, &e);
}

/* The router's form without a bias, one row. */
static void test_cast_transpose_one_row(void **state) {
    (void)state;
    wc_spec s = {.form = CAST_TRANSPOSE, .seq = 1};
    char *weights;
    char *json = build_wc(&s, &weights);
    expectation e = {.rule = "weight_cast", .rule_fused = 1, .matmuls = 1, .bf16_weights = 1,
                     .kernel = "fu_rt_gemm_nt_bf16("};
    check(json, weights, &e);
}

/* The Transpose before the Cast: MatMul alone (the rule's MatMul anchor)
 * and with a bias (matmul_bias makes FusedMatMul(transB=0) first). */
static void test_transpose_cast(void **state) {
    (void)state;
    for (int with_bias = 0; with_bias < 2; with_bias++) {
        wc_spec s = {.form = TRANSPOSE_CAST, .with_bias = with_bias};
        char *weights;
        char *json = build_wc(&s, &weights);
        expectation e = {.rule = "weight_cast", .rule_fused = 1, .matmuls = 1, .bf16_weights = 1,
                         .kernel = "fu_rt_gemm_nt_bf16("};
        check(json, weights, &e);
    }
}

/* Two projections of the same weight: both read it, the Cast goes. */
static void test_shared_cast(void **state) {
    (void)state;
    wc_spec s = {.form = CAST_TRANSPOSE, .shared = 1};
    char *weights;
    char *json = build_wc(&s, &weights);
    expectation e = {.rule = "weight_cast", .rule_fused = 1, .matmuls = 2, .bf16_weights = 2,
                     .kernel = "fu_rt_gemm_nt_bf16("};
    check(json, weights, &e);
}

/* The cast weight also feeds another op: the Cast stays, FusedMatMul reads
 * its float32 output (on the f32 [N, K] kernel). */
static void test_miss_other_use(void **state) {
    (void)state;
    wc_spec s = {.form = CAST_TRANSPOSE, .other_use = "Neg"};
    char *weights;
    char *json = build_wc(&s, &weights);
    expectation e = {.rule = "weight_cast", .matmuls = 1, .casts = 1, .kernel = "fu_rt_gemm_nt_f32(",
                     .reason = "also used by Neg node"};
    check(json, weights, &e);
}

static void test_miss_cast_exported(void **state) {
    (void)state;
    wc_spec s = {.form = CAST_TRANSPOSE, .export_cast = 1};
    char *weights;
    char *json = build_wc(&s, &weights);
    expectation e = {.rule = "weight_cast", .matmuls = 1, .casts = 1, .reason = "is a graph output"};
    check(json, weights, &e);
}

/* A weight stored [K, N]: no kernel reads it in place. With a bias so that
 * matmul_bias makes a FusedMatMul (transB=0) to anchor on. */
static void test_miss_kn_layout(void **state) {
    (void)state;
    wc_spec s = {.form = CAST_KN, .with_bias = 1};
    char *weights;
    char *json = build_wc(&s, &weights);
    expectation e = {.rule = "weight_cast", .matmuls = 1, .casts = 1, .reason = "used as [K, N]"};
    check(json, weights, &e);
}

static void test_miss_float16(void **state) {
    (void)state;
    wc_spec s = {.form = CAST_TRANSPOSE, .dtype = "float16"};
    char *weights;
    char *json = build_wc(&s, &weights);
    expectation e = {.rule = "weight_cast", .matmuls = 1, .casts = 1, .reason = "is float16"};
    check(json, weights, &e);
}

/* ---- float32 [N, K] weights: fu_rt_gemm_nt_f32 ------------------------------------ */

/* y = x W^T (+ b), W a [75, 1000] graph input through Transpose: M rows. */
static void test_f32_trans_b(void **state) {
    (void)state;
    const int rows[] = {1, 7, 65};
    for (int r = 0; r < 3; r++) {
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            fu_sb ins = {0}, inits = {0}, nodes = {0};
            char symbols[64];
            input(&ins, "x", "[\"seq\", 1000]");
            input(&ins, "w", "[75, 1000]");
            node(&nodes, "Transpose", "w", "w_t", "{\"perm\": [1, 0]}");
            node(&nodes, "MatMul", "x,w_t", with_bias ? "mm" : "y", NULL);
            if (with_bias) {
                bias(&inits, "b", 75, 5);
                node(&nodes, "Add", "b,mm", "y", NULL);
            }
            snprintf(symbols, sizeof symbols, "{\"seq\": %d}", rows[r]);
            char *json = model(NULL, &ins, &inits, &nodes, "{\"name\": \"y\"}", symbols);
            expectation e = {.rule = "matmul_bias", .rule_fused = 1, .matmuls = 1, .kernel = "fu_rt_gemm_nt_f32("};
            check(json, NULL, &e);
        }
    }
}

/* FusedMatMul reads a bfloat16 B only as a 2-D [N, K] weight. */
static void test_bf16_op_errors(void **state) {
    (void)state;
    const char *attrs[] = {"{\"transB\": 0}", "{\"transB\": 1, \"transA\": 1}"};
    const char *b_shape[] = {"[4, 6]", "[4, 6]"};
    for (int i = 0; i < 2; i++) {
        char json[1024];
        snprintf(json, sizeof json,
                 "{\"ir_version\": 1, \"inputs\": [{\"name\": \"a\", \"dtype\": \"float32\", \"shape\": [4, 4]},"
                 " {\"name\": \"b\", \"dtype\": \"bfloat16\", \"shape\": %s}], \"outputs\": [{\"name\": \"y\"}],"
                 " \"nodes\": [{\"op\": \"FusedMatMul\", \"inputs\": [\"a\", \"b\"], \"outputs\": [\"y\"],"
                 " \"attrs\": %s}]}",
                 b_shape[i], attrs[i]);
        char *path = tu_write_temp(".json", json);
        char err[FU_ERR_LEN] = "";
        fusec_model *m = fusec_load(path, NULL, err, sizeof err);
        if (m || !strstr(err, "bfloat16 B must be a 2-D [N, K] weight")) fail_msg("case %d: got '%s'", i, err);
        unlink(path);
        free(path);
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
