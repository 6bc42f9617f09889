/* The Gelu op and its kernel fu_rt_gelu_f32 (runtime/gelu.c), both
 * approximations:
 *  - against the composed reference fu_ref_gelu_f32 (the ONNX function body
 *    op by op, runtime/fused_ref.c) on random inputs of many sizes, within
 *    1e-5 x max |ref| like the other fused kernels;
 *  - against the float64 formula on a sweep of float bit patterns over the
 *    whole float range: within 1 ulp (of the float-rounded exact value);
 *  - special values (zeros, infinities, NaN, subnormals, far tails), in place;
 *  - the op: shape and dtype rule, attribute errors, a direct Gelu node of a
 *    symbolic shape run through the JIT in both profiles. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <float.h>
#include <cmocka.h>

#include "tests/testutil.h"
#include "ir/ir.h"
#include "api/fusec.h"
#include "runtime/fusec_kernels.h"
#include "runtime/fused_ref.h"

#define REL_TOL 1e-5

static const int modes[2] = {FU_RT_GELU_ERF, FU_RT_GELU_TANH};
static const char *const mode_names[2] = {"none", "tanh"};

static uint64_t rng_state = 0x2545f4914f6cdd1dull;

static float uniform(float lo, float hi) { /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    uint64_t bits = (rng_state * 0x2545f4914f6cdd1dull) >> 40; /* 24 bits */
    return lo + (hi - lo) * (float)bits / 16777216.0f;
}

static float *alloc_floats(int64_t count) {
    float *p = malloc((size_t)(count > 0 ? count : 1) * sizeof(float));
    assert_non_null(p);
    return p;
}

/* The float64 formula, written so that it keeps its relative accuracy in
 * the left tail: 0.5 x (1 + erf(x/sqrt2)) = 0.5 x erfc(-x/sqrt2), and
 * 0.5 x (1 + tanh(u)) = x / (1 + exp(-2u)). */
static double gelu64(double x, int mode) {
    if (mode == FU_RT_GELU_TANH) {
        double u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
        return x / (1.0 + exp(-2.0 * u));
    }
    return 0.5 * x * erfc(-x * 0.70710678118654752440);
}

/* The spacing of floats at |r| rounded to float (the subnormal spacing for 0). */
static double float_ulp(double r) {
    float f = (float)fabs(r);
    if (f == 0.0f) return 0x1p-149;
    if (isinf(f)) return ldexp(1.0, 104);
    return (double)nextafterf(f, INFINITY) - (double)f;
}

/* ==== against the composed reference ===================================== */

static void test_gelu_matches_reference(void **state) {
    (void)state;
    const int64_t sizes[] = {0, 1, 3, 7, 8, 15, 16, 17, 31, 33, 255, 1000, 4097, 65537, 100003};
    for (int m = 0; m < 2; m++)
        for (size_t c = 0; c < sizeof sizes / sizeof *sizes; c++) {
            int64_t n = sizes[c];
            float *x = alloc_floats(n), *fast = alloc_floats(n), *ref = alloc_floats(n);
            for (int64_t i = 0; i < n; i++) x[i] = uniform(-6.0f, 6.0f);
            fu_rt_gelu_f32(x, fast, n, modes[m]);
            assert_int_equal(fu_ref_gelu_f32(x, ref, n, modes[m]), 0);
            double diff = tu_max_abs_diff(fast, ref, n), scale = tu_max_abs(ref, n);
            if (!(diff <= REL_TOL * scale) && !(diff == 0.0))
                fail_msg("gelu %s, n = %lld: max abs diff %g, max |ref| %g", mode_names[m], (long long)n, diff, scale);
            free(x);
            free(fast);
            free(ref);
        }
}

/* Wider inputs (|x| up to 10) and in place: y may be x. */
static void test_gelu_wide_in_place(void **state) {
    (void)state;
    const int64_t n = 12345;
    for (int m = 0; m < 2; m++) {
        float *x = alloc_floats(n), *ref = alloc_floats(n);
        for (int64_t i = 0; i < n; i++) x[i] = uniform(-10.0f, 10.0f);
        assert_int_equal(fu_ref_gelu_f32(x, ref, n, modes[m]), 0);
        fu_rt_gelu_f32(x, x, n, modes[m]);
        double diff = tu_max_abs_diff(x, ref, n), scale = tu_max_abs(ref, n);
        if (!(diff <= REL_TOL * scale)) fail_msg("gelu %s in place: diff %g, scale %g", mode_names[m], diff, scale);
        free(x);
        free(ref);
    }
}

/* ==== against the float64 formula ======================================== */

/* Every 4099th bit pattern (about a million floats, both signs, subnormals
 * to FLT_MAX) plus every float in [-16, 16] with the low 10 bits zero: the
 * kernel is within 1 ulp of the exact value everywhere, and within 1e-6
 * relative wherever the exact value is a normal float. */
static void test_gelu_accuracy(void **state) {
    (void)state;
    int64_t cap = ((int64_t)1 << 32) / 4099 + ((int64_t)1 << 24) + 16, n = 0;
    float *x = alloc_floats(cap), *y = alloc_floats(cap);
    for (int64_t b = 0; b < ((int64_t)1 << 32); b += 4099) {
        uint32_t bits = (uint32_t)b;
        float f;
        memcpy(&f, &bits, sizeof f);
        if (isfinite(f)) x[n++] = f;
    }
    for (uint32_t bits = 0; bits < 0x41800000u; bits += 1024) { /* |x| < 16 */
        float f;
        memcpy(&f, &bits, sizeof f);
        x[n++] = f;
        x[n++] = -f;
    }
    assert_true(n <= cap);
    for (int m = 0; m < 2; m++) {
        fu_rt_gelu_f32(x, y, n, modes[m]);
        double worst_ulp = 0, worst_rel = 0, at_ulp = 0, at_rel = 0;
        for (int64_t i = 0; i < n; i++) {
            double exact = gelu64(x[i], modes[m]), err = fabs((double)y[i] - exact);
            double ulps = err / float_ulp(exact);
            if (!(ulps <= worst_ulp)) worst_ulp = ulps, at_ulp = x[i];
            if (fabs(exact) >= FLT_MIN && !(err / fabs(exact) <= worst_rel)) worst_rel = err / fabs(exact), at_rel = x[i];
        }
        print_message("gelu %s: %lld floats, max error %.3f ulp (x = %.9g), max relative %.3g (x = %.9g)\n",
                      mode_names[m], (long long)n, worst_ulp, at_ulp, worst_rel, at_rel);
        if (!(worst_ulp <= 1.0)) fail_msg("gelu %s: %.3f ulp at x = %.9g", mode_names[m], worst_ulp, at_ulp);
        if (!(worst_rel <= 1e-6)) fail_msg("gelu %s: relative error %g at x = %.9g", mode_names[m], worst_rel, at_rel);
    }
    free(x);
    free(y);
}

/* ==== special values ===================================================== */

static void test_gelu_special_values(void **state) {
    (void)state;
    /* Exact expectations for both forms: zeros keep their sign, +inf stays,
     * -inf gives NaN as the formula does (-inf * 0), NaN propagates, far
     * negative tails are -0, large positive x is x itself (FLT_MAX too: the
     * composed graph overflows there, computing x * 2 before the 0.5). */
    const float x[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1e30f, -1e30f, FLT_MAX, -FLT_MAX, -20.0f, -100.0f};
    const int n = (int)(sizeof x / sizeof *x);
    for (int m = 0; m < 2; m++) {
        float y[sizeof x / sizeof *x];
        fu_rt_gelu_f32(x, y, n, modes[m]);
        assert_true(y[0] == 0.0f && !signbit(y[0]));
        assert_true(y[1] == 0.0f && signbit(y[1]));
        assert_true(isinf(y[2]) && y[2] > 0);
        assert_true(isnan(y[3]));
        assert_true(isnan(y[4]));
        assert_true(y[5] == 1e30f);
        assert_true(y[6] == 0.0f && signbit(y[6]));
        assert_true(y[7] == FLT_MAX);
        assert_true(y[8] == 0.0f && signbit(y[8]));
        assert_true(y[9] == 0.0f && signbit(y[9]));
        assert_true(y[10] == 0.0f && signbit(y[10]));
    }
    /* Values the composed graph also gets right: the same within 1e-5 of
     * max(1, |ref|), tails and subnormals included. */
    const float t[] = {-10.0f, 10.0f, -5.5f, 5.5f, -3.0f, 3.0f, -1e-3f, 1e-3f, 1e-30f, -1e-30f,
                       1e-40f, -1e-40f, 0x1p-149f, -14.0f, 1e20f, -1e20f, 1e12f, -1e12f};
    const int nt = (int)(sizeof t / sizeof *t);
    for (int m = 0; m < 2; m++) {
        float fast[sizeof t / sizeof *t], ref[sizeof t / sizeof *t];
        fu_rt_gelu_f32(t, fast, nt, modes[m]);
        assert_int_equal(fu_ref_gelu_f32(t, ref, nt, modes[m]), 0);
        for (int i = 0; i < nt; i++) {
            double tol = 1e-5 * (fabs(ref[i]) > 1.0 ? fabs(ref[i]) : 1.0);
            if (!(fabs((double)fast[i] - ref[i]) <= tol) || signbit(fast[i]) != signbit(ref[i]))
                fail_msg("gelu %s(%g) = %g, composed %g", mode_names[m], t[i], fast[i], ref[i]);
        }
        /* ... and the fused kernel keeps the relative accuracy of the tail,
         * where the composed one cancels to 0. */
        assert_true(fabs(fast[0] - gelu64(-10.0, modes[m])) <= float_ulp(gelu64(-10.0, modes[m])));
        assert_true(fast[0] < 0.0f);
    }
}

/* ==== the op ============================================================= */

/* A one-node model: x [dims] dtype -> Gelu(attrs) -> y. */
static char *gelu_model(const char *dtype, const char *shape, const char *attrs, const char *symbols) {
    char json[1024];
    snprintf(json, sizeof json,
             "{\"ir_version\": 1, %s\"inputs\": [{\"name\": \"x\", \"dtype\": \"%s\", \"shape\": %s}],"
             " \"outputs\": [{\"name\": \"y\"}], \"nodes\": [{\"name\": \"act\", \"op\": \"Gelu\","
             " \"inputs\": [\"x\"], \"outputs\": [\"y\"]%s%s%s}]}",
             symbols ? symbols : "", dtype, shape, attrs ? ", \"attrs\": {" : "", attrs ? attrs : "",
             attrs ? "}" : "");
    return tu_write_temp(".json", json);
}

static void test_op_errors(void **state) {
    (void)state;
    struct {
        const char *dtype, *attrs, *error;
    } bad[] = {
        {"float32", "\"approximate\": \"fast\"", "'approximate' must be \"none\" or \"tanh\", got \"fast\""},
        {"float32", "\"approximate\": 1", "'approximate' must be a string, got an integer"},
        {"float16", NULL, "input 0 has dtype float16, expected float32"},
        {"int64", NULL, "input 0 has dtype int64, expected float32"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *path = gelu_model(bad[i].dtype, "[2, 3]", bad[i].attrs, NULL);
        char err[FU_ERR_LEN] = "";
        fusec_model *m = fusec_load(path, NULL, err, sizeof err);
        if (m || !strstr(err, bad[i].error) || !strstr(err, "act"))
            fail_msg("case %zu: expected an error naming node 'act' with '%s', got '%s'", i, bad[i].error, err);
        unlink(path);
        free(path);
    }
}

/* A direct Gelu node of a symbolic shape, both attributes and both
 * profiles, through the JIT: the same bits as the kernel called directly. */
static void test_op_direct(void **state) {
    (void)state;
    const char *attrs[3] = {NULL, "\"approximate\": \"none\"", "\"approximate\": \"tanh\""};
    const int kind[3] = {FU_RT_GELU_ERF, FU_RT_GELU_ERF, FU_RT_GELU_TANH};
    const char *profiles[2] = {"bare", "fast"};
    const int64_t seq = 37, width = 24, numel = 37 * 24;
    float *x = alloc_floats(numel), *want = alloc_floats(numel);
    for (int64_t i = 0; i < numel; i++) x[i] = uniform(-8.0f, 8.0f);
    for (int a = 0; a < 3; a++) {
        fu_rt_gelu_f32(x, want, numel, kind[a]);
        char *path = gelu_model("float32", "[\"seq\", 24]", attrs[a], "\"symbols\": {\"seq\": 64}, ");
        for (int p = 0; p < 2; p++) {
            fusec_options o = {.profile = profiles[p], .backend = "jit"};
            char err[FU_ERR_LEN] = "";
            fusec_model *m = fusec_load(path, &o, err, sizeof err);
            if (!m) fail_msg("load (%s): %s", profiles[p], err);
            int64_t shape[2] = {seq, width};
            assert_int_equal(fusec_set_input(m, "x", FUSEC_FLOAT32, 2, shape, x), 0);
            if (fusec_run(m)) fail_msg("run: %s", fusec_last_error(m));
            fusec_dtype t;
            int rank;
            int64_t out_shape[8];
            const void *data;
            assert_int_equal(fusec_get_output(m, "y", &t, &rank, out_shape, &data), 0);
            assert_int_equal(t, FUSEC_FLOAT32);
            assert_int_equal(rank, 2);
            assert_int_equal(out_shape[0], seq);
            assert_int_equal(out_shape[1], width);
            if (memcmp(data, want, sizeof(float) * (size_t)numel) != 0)
                fail_msg("Gelu(%s) [%s]: differs from fu_rt_gelu_f32", attrs[a] ? attrs[a] : "default", profiles[p]);
            fusec_free(m);
        }
        unlink(path);
        free(path);
    }
    free(x);
    free(want);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gelu_matches_reference),
        cmocka_unit_test(test_gelu_wide_in_place),
        cmocka_unit_test(test_gelu_accuracy),
        cmocka_unit_test(test_gelu_special_values),
        cmocka_unit_test(test_op_errors),
        cmocka_unit_test(test_op_direct),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
