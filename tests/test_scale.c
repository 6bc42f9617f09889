/* No quadratic blow-ups: a model ten times larger compiles in at most 25
 * times the time. Each model is written as JSON at N and 10 N nodes and
 * taken through load -> verify -> a pass pipeline -> emit -> JIT compile
 * (fu_compile), timed in the test itself (CPU time of the process); the compiled code is run once to
 * check its answer. N is 20k (200k nodes for the large model); under the
 * sanitizers, which slow everything tenfold, N is 2k. FUSEC_TEST_SCALE_N
 * overrides N.
 *
 * The limits on a model's size (ir/model_limits.h) are tested here too. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <time.h>
#include <cmocka.h>
#include "testutil.h"
#include "../ir/ir.h"
#include "../compiler/driver.h"

#if defined(__SANITIZE_ADDRESS__)
#define DEFAULT_N 2000
#else
#define DEFAULT_N 20000
#endif
#define MAX_RATIO 25.0

static int scale_n(void) {
    const char *s = getenv("FUSEC_TEST_SCALE_N");
    int n = s ? atoi(s) : 0;
    return n > 0 ? n : DEFAULT_N;
}

/* Process CPU time, not wall time: other jobs on a busy machine (CI runs
 * beside other work) must not read as a blow-up. */
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

typedef enum {
    NEG_ADD,   /* y = Add(Neg(x), x) alternating, a chain (the case) */
    GELU,      /* a chain of erf Gelus, 5 nodes each: the fuse pass rewrites every one */
    FAN,       /* x * c_i for distinct scalar constants c_i, summed in a chain */
} model_kind;

/* Writes a model of about n nodes; returns its temp path. */
static char *write_model(model_kind kind, int n) {
    char *path = tu_write_temp(".json", "");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "{\"ir_version\": 1, \"name\": \"scale\", "
               "\"inputs\": [{\"name\": \"x\", \"dtype\": \"float32\", \"shape\": [2, 3]}],\n\"initializers\": [");
    if (kind == GELU)
        fprintf(f, "{\"name\": \"sqrt2\", \"dtype\": \"float32\", \"shape\": [], \"data\": [1.4142135381698608]},"
                   "{\"name\": \"one\", \"dtype\": \"float32\", \"shape\": [], \"data\": [1.0]},"
                   "{\"name\": \"half\", \"dtype\": \"float32\", \"shape\": [], \"data\": [0.5]}");
    if (kind == FAN)
        for (int i = 0; i < n / 2; i++)
            fprintf(f, "%s{\"name\": \"c%d\", \"dtype\": \"float32\", \"shape\": [], \"data\": [%d]}\n", i ? "," : "", i,
                    i % 2 ? 1 : -1);
    fprintf(f, "],\n\"nodes\": [\n");
    char prev[32] = "x";
    if (kind == NEG_ADD) {
        for (int i = 0; i < n / 2; i++) {
            fprintf(f, "%s{\"name\": \"neg%d\", \"op\": \"Neg\", \"inputs\": [\"%s\"], \"outputs\": [\"a%d\"]},\n",
                    i ? "," : "", i, prev, i);
            fprintf(f, "{\"name\": \"add%d\", \"op\": \"Add\", \"inputs\": [\"a%d\", \"%s\"], \"outputs\": [\"b%d\"]}\n", i, i,
                    prev, i);
            snprintf(prev, sizeof prev, "b%d", i);
        }
    } else if (kind == GELU) {
        for (int i = 0; i < n / 5; i++) {
            fprintf(f,
                    "%s{\"op\": \"Div\", \"inputs\": [\"%s\", \"sqrt2\"], \"outputs\": [\"d%d\"]},\n"
                    "{\"op\": \"Erf\", \"inputs\": [\"d%d\"], \"outputs\": [\"e%d\"]},\n"
                    "{\"op\": \"Add\", \"inputs\": [\"e%d\", \"one\"], \"outputs\": [\"a%d\"]},\n"
                    "{\"op\": \"Mul\", \"inputs\": [\"%s\", \"a%d\"], \"outputs\": [\"m%d\"]},\n"
                    "{\"op\": \"Mul\", \"inputs\": [\"m%d\", \"half\"], \"outputs\": [\"y%d\"]}\n",
                    i ? "," : "", prev, i, i, i, i, i, prev, i, i, i, i);
            snprintf(prev, sizeof prev, "y%d", i);
        }
    } else {
        for (int i = 0; i < n / 2; i++)
            fprintf(f, "%s{\"op\": \"Mul\", \"inputs\": [\"x\", \"c%d\"], \"outputs\": [\"r%d\"]}\n", i ? "," : "", i, i);
        snprintf(prev, sizeof prev, "r0");
        for (int i = 1; i < n / 2; i++) {
            fprintf(f, ",{\"op\": \"Add\", \"inputs\": [\"%s\", \"r%d\"], \"outputs\": [\"s%d\"]}\n", prev, i, i);
            snprintf(prev, sizeof prev, "s%d", i);
        }
    }
    fprintf(f, "],\n\"outputs\": [{\"name\": \"%s\", \"dtype\": \"float32\", \"shape\": [2, 3]}]}\n", prev);
    fclose(f);
    return path;
}

/* What the model computes for x = 1..6 (element 5: x = 6). */
static float expected_last(model_kind kind, int n) {
    switch (kind) {
    case NEG_ADD: return 0;                      /* -x + x, then 0 all the way */
    case GELU: return 6.0f;                      /* gelu(6) = 6 in float32, and again */
    default: return (n / 2) % 2 ? -6.0f : 0.0f;  /* x * (-1 + 1 - 1 ...) */
    }
}

/* Seconds to compile the model at path (JIT); runs it and checks the last
 * output element. */
static double compile_seconds(const char *path, model_kind kind, int n, fu_profile profile) {
    fu_compile_opts o = {.target = FU_TARGET_JIT, .profile = profile, .precision = FU_PRECISION_F32};
    fu_compile_result r;
    fu_err err = {0};
    double t0 = now_s();
    if (fu_compile(path, &o, &r, &err)) fail_msg("compile %s: %s", path, err.msg);
    double t = now_s() - t0;
    const float x[6] = {1, 2, 3, 4, 5, 6};
    const void *in[1] = {x};
    void *out[1] = {NULL};
    int64_t sym[FU_MAX_SYMS] = {0};
    void *arena = aligned_alloc(64, 1 << 16);
    assert_int_equal(r.code.run(sym, in, NULL, arena, out), 0);
    assert_non_null(out[0]);
    assert_float_equal(((const float *)out[0])[5], expected_last(kind, n), 1e-4);
    free(arena);
    fu_compile_result_free(&r);
    return t;
}

static void check_ratio(model_kind kind, const char *what, fu_profile profile) {
    int n = scale_n();
    char *small = write_model(kind, n), *big = write_model(kind, 10 * n);
    /* the small model's best of three: its time is short, so noisier */
    double t_small = compile_seconds(small, kind, n, profile);
    for (int i = 0; i < 2; i++) {
        double t = compile_seconds(small, kind, n, profile);
        if (t < t_small) t_small = t;
    }
    double t_big = compile_seconds(big, kind, 10 * n, profile);
    printf("scale %s: %d nodes %.3f s, %d nodes %.3f s (x%.1f)\n", what, n, t_small, 10 * n, t_big, t_big / t_small);
    unlink(small), unlink(big);
    free(small), free(big);
    if (t_big > MAX_RATIO * t_small)
        fail_msg("%s: %d nodes took %.3f s, %.1f times the %.3f s of %d nodes (at most %.0f)", what, 10 * n, t_big,
                 t_big / t_small, t_small, n, MAX_RATIO);
}

static void test_neg_add_chain_bare(void **state) {
    (void)state;
    check_ratio(NEG_ADD, "Neg+Add chain, bare", FU_PROFILE_BARE);
}

static void test_gelu_chain_fast(void **state) {
    (void)state;
    check_ratio(GELU, "Gelu chain, fast (every Gelu fused)", FU_PROFILE_FAST);
}

static void test_fan_of_constants_fast(void **state) {
    (void)state;
    check_ratio(FAN, "x * c_i summed, fast", FU_PROFILE_FAST);
}

/* ---- limits ---------------------------------------------------------------- */

static void expect_compile_error(const char *path, fu_profile profile, const char *needle) {
    fu_compile_opts o = {.target = FU_TARGET_GRAPH, .profile = profile, .precision = FU_PRECISION_F32};
    fu_compile_result r;
    fu_err err = {0};
    if (fu_compile(path, &o, &r, &err) == 0) {
        fu_compile_result_free(&r);
        fail_msg("compiled despite the limit (wanted '%s')", needle);
    }
    if (!strstr(err.msg, needle)) fail_msg("error '%s' does not say '%s'", err.msg, needle);
}

static void test_limits(void **state) {
    (void)state;
    char *path = write_model(NEG_ADD, 100);
    setenv("FUSEC_MAX_NODES", "99", 1);
    expect_compile_error(path, FU_PROFILE_BARE, "the node count is 100, over the limit of 99 (set FUSEC_MAX_NODES");
    setenv("FUSEC_MAX_NODES", "lots", 1);
    expect_compile_error(path, FU_PROFILE_BARE, "FUSEC_MAX_NODES must be a positive integer");
    setenv("FUSEC_MAX_NODES", "1K", 1);
    unsetenv("FUSEC_MAX_ARENA_BYTES");
    fu_compile_opts o = {.target = FU_TARGET_GRAPH, .profile = FU_PROFILE_BARE};
    fu_compile_result r;
    fu_err err = {0};
    if (fu_compile(path, &o, &r, &err)) fail_msg("within the limits: %s", err.msg);
    assert_true(r.graph->arena_bytes > 0);
    char limit[32];
    snprintf(limit, sizeof limit, "%lld", (long long)r.graph->arena_bytes - 1);
    fu_compile_result_free(&r);
    setenv("FUSEC_MAX_ARENA_BYTES", limit, 1);
    expect_compile_error(path, FU_PROFILE_BARE, "the planned arena in bytes is");
    expect_compile_error(path, FU_PROFILE_BARE, "(set FUSEC_MAX_ARENA_BYTES to raise it)");
    unsetenv("FUSEC_MAX_NODES");
    unsetenv("FUSEC_MAX_ARENA_BYTES");
    unlink(path);
    free(path);
}

/* A weights file over FUSEC_MAX_WEIGHTS_BYTES is refused at load. */
static void test_weights_limit(void **state) {
    (void)state;
    /* safetensors: 8-byte header length, the JSON header, then the data */
    const char header[] = "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}";
    char *wpath = tu_write_temp(".safetensors", "");
    FILE *f = fopen(wpath, "wb");
    assert_non_null(f);
    uint64_t hlen = sizeof header - 1;
    fwrite(&hlen, 8, 1, f);
    fwrite(header, 1, hlen, f);
    const float data[4] = {1, 2, 3, 4};
    fwrite(data, 4, 4, f);
    fclose(f);
    const char *base = strrchr(wpath, '/') + 1;
    char model[1024];
    snprintf(model, sizeof model,
             "{\"ir_version\": 1, \"weights\": \"%s\", "
             "\"inputs\": [{\"name\": \"x\", \"dtype\": \"float32\", \"shape\": [4]}],"
             "\"initializers\": [{\"name\": \"w\", \"dtype\": \"float32\", \"shape\": [4]}],"
             "\"nodes\": [{\"op\": \"Add\", \"inputs\": [\"x\", \"w\"], \"outputs\": [\"y\"]}],"
             "\"outputs\": [{\"name\": \"y\"}]}",
             base);
    char *mpath = tu_write_temp(".json", model);
    long size = 8 + (long)hlen + 16;
    char limit[32];
    snprintf(limit, sizeof limit, "%ld", size);
    setenv("FUSEC_MAX_WEIGHTS_BYTES", limit, 1);
    fu_compile_opts o = {.target = FU_TARGET_GRAPH, .profile = FU_PROFILE_BARE};
    fu_compile_result r;
    fu_err err = {0};
    if (fu_compile(mpath, &o, &r, &err)) fail_msg("at the limit: %s", err.msg);
    fu_compile_result_free(&r);
    snprintf(limit, sizeof limit, "%ld", size - 1);
    setenv("FUSEC_MAX_WEIGHTS_BYTES", limit, 1);
    expect_compile_error(mpath, FU_PROFILE_BARE, "over the limit of");
    expect_compile_error(mpath, FU_PROFILE_BARE, "(set FUSEC_MAX_WEIGHTS_BYTES to raise it)");
    unsetenv("FUSEC_MAX_WEIGHTS_BYTES");
    unlink(mpath), unlink(wpath);
    free(mpath), free(wpath);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_weights_limit),
        cmocka_unit_test(test_neg_add_chain_bare),
        cmocka_unit_test(test_gelu_chain_fast),
        cmocka_unit_test(test_fan_of_constants_fast),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
