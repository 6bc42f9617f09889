/* "Every model the verifier accepts compiles": edge-case models (scalar
 * constants with long literals, floats at and beyond the float32 range,
 * non-finite values, attributes of the wrong kind) are read and verified;
 * each one the verifier accepts must compile under tcc in both pass
 * profiles, and the marked ones under gcc too; the integer ones also run
 * and give the right values. Each case also states whether the verifier
 * accepts it, so the property cannot pass by rejecting everything. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include "testutil.h"
#include "../api/fusec.h"
#include "../ir/json_ir.h"
#include "../ops/emit.h"
#include "../ops/infer.h"

/* A one-input model: x of dtype X and shape [4], output y. */
#define MODEL(X, INITS, NODES)                                                                   \
    "{\"ir_version\": 1, \"inputs\": [{\"name\": \"x\", \"dtype\": \"" X "\", \"shape\": [4]}],\n" \
    " \"outputs\": [{\"name\": \"y\"}], \"initializers\": [" INITS "],\n"                         \
    " \"nodes\": [" NODES "]}\n"
#define SCALAR(NAME, T, V) "{\"name\": \"" NAME "\", \"dtype\": \"" T "\", \"shape\": [], \"data\": [" V "]}"
#define BINARY(OP, A, B, OUT) "{\"op\": \"" OP "\", \"inputs\": [\"" A "\", \"" B "\"], \"outputs\": [\"" OUT "\"]}"
#define ADD_SCALAR(T, V) MODEL(T, SCALAR("c", T, V), BINARY("Add", "x", "c", "y"))

typedef struct {
    const char *name;
    const char *json;
    const char *rejected;   /* NULL: the verifier accepts; else part of its message */
    int aot;                /* also build with gcc */
    int check;              /* run with x = {1,2,3,4} and compare y to want (integer dtypes) */
    int64_t want[4];
} edge_case;

static const edge_case cases[] = {
    /* the review's finding: a literal longer than the operand name's 16 bytes */
    {"int64 scalar 123", ADD_SCALAR("int64", "123"), NULL, 1, 1, {124, 125, 126, 127}},
    {"int64 scalar near max", ADD_SCALAR("int64", "9223372036854775803"), NULL, 0, 1,
     {INT64_MAX - 3, INT64_MAX - 2, INT64_MAX - 1, INT64_MAX}},
    {"int64 scalar min", ADD_SCALAR("int64", "-9223372036854775808"), NULL, 1, 1,
     {INT64_MIN + 1, INT64_MIN + 2, INT64_MIN + 3, INT64_MIN + 4}},
    {"int32 scalar 12345", ADD_SCALAR("int32", "12345"), NULL, 1, 1, {12346, 12347, 12348, 12349}},
    {"int32 scalar min", ADD_SCALAR("int32", "-2147483648"), NULL, 0, 1,
     {-2147483647, -2147483646, -2147483645, -2147483644}},
    {"int64 chain of long scalars",
     MODEL("int64", SCALAR("a", "int64", "-1000000000000") ", " SCALAR("b", "int64", "3000000000") ", "
                    SCALAR("c", "int64", "999999999999"),
           BINARY("Mul", "x", "a", "t") ", " BINARY("Add", "t", "b", "u") ", " BINARY("Sub", "u", "c", "y")),
     NULL, 0, 1, {-1000000000000 + 3000000000 - 999999999999, -2000000000000 + 3000000000 - 999999999999,
                  -3000000000000 + 3000000000 - 999999999999, -4000000000000 + 3000000000 - 999999999999}},
    {"float32 max", ADD_SCALAR("float32", "3.4028234663852886e38"), NULL, 0, 0, {0}},
    {"float32 beyond range rounds to inf", ADD_SCALAR("float32", "1e300"), NULL, 0, 0, {0}},
    {"float32 denormal", ADD_SCALAR("float32", "1e-45"), NULL, 0, 0, {0}},
    {"float32 tiny to zero", ADD_SCALAR("float32", "1e-300"), NULL, 0, 0, {0}},
    {"float32 negative zero", ADD_SCALAR("float32", "-0.0"), NULL, 0, 0, {0}},
    {"float32 inf", ADD_SCALAR("float32", "\"inf\""), NULL, 0, 0, {0}},
    {"float32 -inf", ADD_SCALAR("float32", "\"-inf\""), NULL, 1, 0, {0}},
    {"float32 nan", ADD_SCALAR("float32", "\"nan\""), NULL, 0, 0, {0}},
    {"float16 max", ADD_SCALAR("float16", "65504"), NULL, 0, 0, {0}},
    {"float16 inf", ADD_SCALAR("float16", "\"inf\""), NULL, 0, 0, {0}},
    {"bfloat16 -inf", ADD_SCALAR("bfloat16", "\"-inf\""), NULL, 0, 0, {0}},
    {"bool scalar", MODEL("bool", SCALAR("c", "bool", "true"), BINARY("And", "x", "c", "y")), NULL, 0, 0, {0}},
    {"Gemm alpha beyond float range",
     "{\"ir_version\": 1, \"inputs\": [{\"name\": \"x\", \"dtype\": \"float32\", \"shape\": [2, 2]}],\n"
     " \"outputs\": [{\"name\": \"y\"}], \"initializers\": [{\"name\": \"w\", \"dtype\": \"float32\","
     " \"shape\": [2, 2], \"data\": [1, 2, 3, 4]}, {\"name\": \"b\", \"dtype\": \"float32\", \"shape\": [2],"
     " \"data\": [1, 1]}],\n \"nodes\": [{\"op\": \"Gemm\", \"inputs\": [\"x\", \"w\", \"b\"], \"outputs\": [\"y\"],"
     " \"attrs\": {\"alpha\": 1e308, \"beta\": 1e-300}}]}\n",
     NULL, 1, 0, {0}},
    {"RMSNormalization epsilon 1e308",
     MODEL("float32", "", "{\"op\": \"RMSNormalization\", \"inputs\": [\"x\"], \"outputs\": [\"y\"],"
                          " \"attrs\": {\"epsilon\": 1e308}}"),
     "attribute 'epsilon' must be finite", 0, 0, {0}},
    {"RMSNormalization epsilon inf",
     MODEL("float32", "", "{\"op\": \"RMSNormalization\", \"inputs\": [\"x\"], \"outputs\": [\"y\"],"
                          " \"attrs\": {\"epsilon\": {\"float\": \"inf\"}}}"),
     "attribute 'epsilon' must be finite", 0, 0, {0}},
    {"RMSNormalization epsilon negative",
     MODEL("float32", "", "{\"op\": \"RMSNormalization\", \"inputs\": [\"x\"], \"outputs\": [\"y\"],"
                          " \"attrs\": {\"epsilon\": -1e-5}}"),
     "attribute 'epsilon' must be finite and >= 0", 0, 0, {0}},
    {"LayerNormalization epsilon at the float32 limit",
     MODEL("float32", "{\"name\": \"s\", \"dtype\": \"float32\", \"shape\": [4], \"data\": [1, 1, 1, 1]}, "
                      "{\"name\": \"b\", \"dtype\": \"float32\", \"shape\": [4], \"data\": [0, 0, 0, 0]}",
           "{\"op\": \"LayerNormalization\", \"inputs\": [\"x\", \"s\", \"b\"], \"outputs\": [\"y\"],"
           " \"attrs\": {\"epsilon\": 3.4e38}}"),
     NULL, 0, 0, {0}},
    {"LayerNormalization epsilon 0",
     MODEL("float32", "{\"name\": \"s\", \"dtype\": \"float32\", \"shape\": [4], \"data\": [1, 1, 1, 1]}, "
                      "{\"name\": \"b\", \"dtype\": \"float32\", \"shape\": [4], \"data\": [0, 0, 0, 0]}",
           "{\"op\": \"LayerNormalization\", \"inputs\": [\"x\", \"s\", \"b\"], \"outputs\": [\"y\"],"
           " \"attrs\": {\"epsilon\": 0}}"),
     NULL, 0, 0, {0}},
    {"Softmax float axis",
     MODEL("float32", "", "{\"op\": \"Softmax\", \"inputs\": [\"x\"], \"outputs\": [\"y\"], \"attrs\": {\"axis\": 0.0}}"),
     "attribute 'axis' must be an integer, got the float 0", 0, 0, {0}},
    {"Softmax nan axis",
     MODEL("float32", "", "{\"op\": \"Softmax\", \"inputs\": [\"x\"], \"outputs\": [\"y\"],"
                          " \"attrs\": {\"axis\": {\"float\": \"nan\"}}}"),
     "attribute 'axis' must be an integer", 0, 0, {0}},
    {"Softmax string axis",
     MODEL("float32", "", "{\"op\": \"Softmax\", \"inputs\": [\"x\"], \"outputs\": [\"y\"], \"attrs\": {\"axis\": \"-1\"}}"),
     "attribute 'axis' must be an integer, got a string", 0, 0, {0}},
    {"Attention causal_align as an integer",
     "{\"ir_version\": 1, \"inputs\": [{\"name\": \"q\", \"dtype\": \"float32\", \"shape\": [1, 1, 2, 4]},"
     " {\"name\": \"k\", \"dtype\": \"float32\", \"shape\": [1, 1, 3, 4]}],\n"
     " \"outputs\": [{\"name\": \"y\"}], \"initializers\": [],\n \"nodes\": [{\"op\": \"Attention\","
     " \"inputs\": [\"q\", \"k\", \"k\"], \"outputs\": [\"y\"], \"attrs\": {\"is_causal\": 1, \"causal_align\": 1}}]}\n",
     "attribute 'causal_align' must be a string, got an integer", 0, 0, {0}},
    {"Attention causal_align unknown",
     "{\"ir_version\": 1, \"inputs\": [{\"name\": \"q\", \"dtype\": \"float32\", \"shape\": [1, 1, 2, 4]},"
     " {\"name\": \"k\", \"dtype\": \"float32\", \"shape\": [1, 1, 3, 4]}],\n"
     " \"outputs\": [{\"name\": \"y\"}], \"initializers\": [],\n \"nodes\": [{\"op\": \"Attention\","
     " \"inputs\": [\"q\", \"k\", \"k\"], \"outputs\": [\"y\"], \"attrs\": {\"is_causal\": 1, \"causal_align\": \"middle\"}}]}\n",
     "causal_align 'middle' must be \"start\" or \"end\"", 0, 0, {0}},
    {"Gemm alpha as a string",
     "{\"ir_version\": 1, \"inputs\": [{\"name\": \"x\", \"dtype\": \"float32\", \"shape\": [2, 2]}],\n"
     " \"outputs\": [{\"name\": \"y\"}], \"initializers\": [{\"name\": \"w\", \"dtype\": \"float32\","
     " \"shape\": [2, 2], \"data\": [1, 2, 3, 4]}],\n \"nodes\": [{\"op\": \"Gemm\", \"inputs\": [\"x\", \"w\"],"
     " \"outputs\": [\"y\"], \"attrs\": {\"alpha\": \"2\"}}]}\n",
     "attribute 'alpha' must be a number, got a string", 0, 0, {0}},
    {"ConstantOfShape inf plus x",
     MODEL("float32", "{\"name\": \"s\", \"dtype\": \"int64\", \"shape\": [1], \"data\": [4]}",
           "{\"op\": \"ConstantOfShape\", \"inputs\": [\"s\"], \"outputs\": [\"k\"], \"attrs\": {\"value\":"
           " {\"dtype\": \"float32\", \"shape\": [1], \"data\": [\"-inf\"]}}}, " BINARY("Add", "x", "k", "y")),
     NULL, 1, 0, {0}},
    {"ConstantOfShape int64 min plus x",
     MODEL("int64", "{\"name\": \"s\", \"dtype\": \"int64\", \"shape\": [1], \"data\": [4]}",
           "{\"op\": \"ConstantOfShape\", \"inputs\": [\"s\"], \"outputs\": [\"k\"], \"attrs\": {\"value\":"
           " {\"dtype\": \"int64\", \"shape\": [1], \"data\": [-9223372036854775808]}}}, " BINARY("Add", "x", "k", "y")),
     NULL, 0, 1, {INT64_MIN + 1, INT64_MIN + 2, INT64_MIN + 3, INT64_MIN + 4}},
    {"Constant float32 beyond range",
     MODEL("float32", "",
           "{\"op\": \"Constant\", \"inputs\": [], \"outputs\": [\"k\"], \"attrs\": {\"value\":"
           " {\"dtype\": \"float32\", \"shape\": [4], \"data\": [1e300, -1e300, 1e-300, \"nan\"]}}}, "
           BINARY("Mul", "x", "k", "y")),
     NULL, 0, 0, {0}},
};

static char temp_dir[64];

static int setup(void **state) {
    (void)state;
    snprintf(temp_dir, sizeof temp_dir, "/tmp/fusec_compiles_XXXXXX");
    return mkdtemp(temp_dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", temp_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int n_failed;

/* Reports a failed case and goes on, so one run lists every failing case. */
#define CASE_FAIL(...) (print_error(__VA_ARGS__), print_error("\n"), (void)n_failed++)

/* Runs the model on x = {1,2,3,4} (its integer dtype) and compares y. */
static void check_values(fusec_model *m, const edge_case *c, const char *how) {
    fusec_dtype t = fusec_input_dtype(m, 0);
    int64_t x64[4] = {1, 2, 3, 4};
    int32_t x32[4] = {1, 2, 3, 4};
    const int64_t shape[1] = {4};
    if (fusec_set_input(m, "x", t, 1, shape, t == FUSEC_INT32 ? (const void *)x32 : (const void *)x64) ||
        fusec_run(m)) {
        CASE_FAIL("%s (%s): run failed: %s", c->name, how, fusec_last_error(m));
        return;
    }
    fusec_dtype yt;
    int rank;
    int64_t yshape[8];
    const void *y;
    assert_int_equal(fusec_get_output(m, "y", &yt, &rank, yshape, &y), 0);
    for (int i = 0; i < 4; i++) {
        int64_t got = t == FUSEC_INT32 ? ((const int32_t *)y)[i] : ((const int64_t *)y)[i];
        if (got != c->want[i]) {
            CASE_FAIL("%s (%s): y[%d] = %lld, want %lld", c->name, how, i, (long long)got, (long long)c->want[i]);
            return;
        }
    }
}

static void test_verified_models_compile(void **state) {
    (void)state;
    char cache[128];
    snprintf(cache, sizeof cache, "%s/cache", temp_dir);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const edge_case *c = &cases[k];
        char path[160];
        snprintf(path, sizeof path, "%s/case%zu.json", temp_dir, k);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(c->json, f);
        fclose(f);

        fu_err err = {0};
        fu_graph *g = fu_ir_load(path, &err);
        int ok = g && fu_infer(g, &err) == 0;
        fu_graph_free(g);
        if (c->rejected) {
            if (ok) CASE_FAIL("%s: the verifier accepted it (want an error with \"%s\")", c->name, c->rejected);
            else if (!strstr(err.msg, c->rejected))
                CASE_FAIL("%s: error \"%s\" does not contain \"%s\"", c->name, err.msg, c->rejected);
            continue;
        }
        if (!ok) {
            CASE_FAIL("%s: the verifier rejected it: %s", c->name, err.msg);
            continue;
        }

        /* verified: it must compile */
        static const char *const profiles[] = {"fast", "bare"};
        for (int p = 0; p < 2; p++) {
            for (int aot = 0; aot <= c->aot; aot++) {
                if (aot && p) continue;  /* gcc on the default profile only: a sample */
                fusec_options o = {.profile = profiles[p], .backend = aot ? "aot" : "jit", .cache_dir = cache};
                char msg[2048];
                fusec_model *m = fusec_load(path, &o, msg, sizeof msg);
                char how[32];
                snprintf(how, sizeof how, "%s, %s", aot ? "gcc" : "tcc", profiles[p]);
                if (!m) {
                    CASE_FAIL("%s: verified but does not compile (%s): %s", c->name, how, msg);
                    continue;
                }
                if (c->check) check_values(m, c, how);
                fusec_free(m);
            }
        }
    }
    if (n_failed) fail_msg("%d failures", n_failed);
}

/* Literals: a double beyond the float range is inf in float32 and must be
 * written as one (it was "inf.0f"); 64-bit extremes have valid spellings. */
static void test_literals(void **state) {
    (void)state;
    static const struct { double v; const char *want; } floats[] = {
        {1e308, "FU_RT_INF"}, {-1e308, "(-FU_RT_INF)"}, {1e-300, "0.0f"}, {-0.0, "-0.0f"},
        {0.1, "0.100000001f"}, {3.4028234663852886e38, "3.40282347e+38f"}, {(double)NAN, "FU_RT_NAN"},
    };
    char buf[FU_LITERAL_MAX];
    for (size_t i = 0; i < sizeof floats / sizeof floats[0]; i++) {
        int len = fu_float_literal(floats[i].v, buf, sizeof buf);
        assert_string_equal(buf, floats[i].want);
        assert_int_equal(len, (int)strlen(floats[i].want));
    }
    fu_int_literal(INT64_MIN, buf, sizeof buf);
    assert_string_equal(buf, "(-9223372036854775807LL - 1)");
    fu_int_literal(INT64_MAX, buf, sizeof buf);
    assert_string_equal(buf, "9223372036854775807LL");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_literals),
        cmocka_unit_test(test_verified_models_compile),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
