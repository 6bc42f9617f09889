/* runtime/numerics.h: the one definition of the float16 / bfloat16
 * conversions and of the exp polynomial. Special values (signed zeros,
 * subnormals, overflow, inf, NaN payload and quiet bit, rounding ties),
 * float16 against the compiler's own _Float16 conversions (an independent
 * implementation), bfloat16 against a rounding written in double, and the
 * same bits from every place that uses them: ir/ (fu_f32_to_f16 ...), the
 * runtime's exported symbols (fu_rt_f32_to_f16 ...) and generated code
 * under tcc (JIT) and gcc (AOT), which get numerics.h as embedded text. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "../runtime/numerics.h"
#include "../runtime/fusec_kernels.h"
#include "../ir/ir.h"
#include "../compiler/backend.h"

static float from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t to_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static uint16_t f16_reference(float f) {  /* gcc's own conversion: round to nearest even */
    _Float16 h = (_Float16)f;
    uint16_t u;
    memcpy(&u, &h, 2);
    return u;
}

/* bfloat16 rounding of a finite float by comparing the two candidates in
 * double (exact there). */
static uint16_t bf16_reference(uint32_t x) {
    uint32_t lo = x & 0xffff0000u;
    double v = from_bits(x), below = from_bits(lo);
    uint32_t hi = lo + 0x10000u;                       /* next magnitude (may be inf) */
    double above = (hi & 0x7f800000u) == 0x7f800000u ? ldexp(x >> 31 ? -1.0 : 1.0, 128)
                                                      : (double)from_bits(hi);
    double d_below = fabs(v - below), d_above = fabs(above - v);
    if (d_below < d_above || (d_below == d_above && !((lo >> 16) & 1u))) return (uint16_t)(lo >> 16);
    return (uint16_t)(hi >> 16);
}

/* Every conversion, by every path outside generated code, for one input. */
static uint16_t to_f16(float f) {
    uint16_t h = fu_num_f32_to_f16(f);
    assert_int_equal(fu_f32_to_f16(f), h);
    assert_int_equal(fu_rt_f32_to_f16(f), h);
    return h;
}

static uint16_t to_bf16(float f) {
    uint16_t h = fu_num_f32_to_bf16(f);
    assert_int_equal(fu_f32_to_bf16(f), h);
    assert_int_equal(fu_rt_f32_to_bf16(f), h);
    return h;
}

static uint32_t f16_bits_to_f32_bits(uint16_t h) {
    uint32_t u = to_bits(fu_num_f16_to_f32(h));
    assert_int_equal(to_bits(fu_f16_to_f32(h)), u);
    assert_int_equal(to_bits(fu_rt_f16_to_f32(h)), u);
    return u;
}

static const struct { uint32_t in; uint16_t out; } f16_cases[] = {
    {0x00000000u, 0x0000}, {0x80000000u, 0x8000},        /* +0, -0 */
    {0x3f800000u, 0x3c00}, {0xc0000000u, 0xc000},        /* 1, -2 */
    {0x477fe000u, 0x7bff}, {0x477fefffu, 0x7bff},        /* 65504, just below 65520 */
    {0x477ff000u, 0x7c00}, {0xc77ff000u, 0xfc00},        /* +-65520: ties to inf */
    {0x7f7fffffu, 0x7c00},                               /* FLT_MAX overflows to inf */
    {0x7f800000u, 0x7c00}, {0xff800000u, 0xfc00},        /* +-inf */
    {0x38800000u, 0x0400},                               /* 2^-14: smallest normal */
    {0x387fc000u, 0x03ff}, {0x387fe000u, 0x0400},        /* largest subnormal; tie rounds up into the normals */
    {0x33800000u, 0x0001}, {0xb3800000u, 0x8001},        /* +-2^-24: smallest subnormal */
    {0x33000000u, 0x0000}, {0xb3000000u, 0x8000},        /* 2^-25: tie to even (0), sign kept */
    {0x33000001u, 0x0001},                               /* just above the tie */
    {0x33c00000u, 0x0002}, {0x34200000u, 0x0002},        /* 1.5, 2.5 * 2^-24: ties to even */
    {0x00000001u, 0x0000}, {0x807fffffu, 0x8000},        /* float subnormals vanish, sign kept */
    {0x3f801000u, 0x3c00}, {0x3f803000u, 0x3c02},        /* 1 + 2^-11, 1 + 3*2^-11: ties to even */
    {0x3f801001u, 0x3c01},
    {0x7fc00000u, 0x7e00}, {0xffc00000u, 0xfe00},        /* quiet NaN, sign kept */
    {0x7fc02000u, 0x7e01}, {0x7fffe000u, 0x7fff},        /* payload's top 10 bits kept */
    {0x7f800001u, 0x7e00}, {0x7fa00000u, 0x7f00},        /* signalling NaN: made quiet, never inf */
    {0xff800001u, 0xfe00},
};

static void test_f32_to_f16_special_values(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof f16_cases / sizeof f16_cases[0]; i++) {
        uint16_t got = to_f16(from_bits(f16_cases[i].in));
        if (got != f16_cases[i].out)
            fail_msg("f32 %08x -> f16 %04x, want %04x", f16_cases[i].in, got, f16_cases[i].out);
    }
}

/* Every float16, exactly; NaN keeps sign and payload (quiet bit and all). */
static void test_f16_to_f32_all(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 0x10000; h++) {
        uint32_t got = f16_bits_to_f32_bits((uint16_t)h);
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) {
            assert_int_equal(got, (h & 0x8000) << 16 | 0x7f800000u | (h & 0x3ff) << 13);
            assert_int_equal(to_f16(from_bits(got)), h | 0x200);  /* back: the same NaN, made quiet */
            continue;
        }
        _Float16 ref;
        uint16_t hb = (uint16_t)h;
        memcpy(&ref, &hb, 2);
        if (got != to_bits((float)ref)) fail_msg("f16 %04x -> f32 %08x, want %08x", h, got, to_bits((float)ref));
        assert_int_equal(to_f16(from_bits(got)), h);  /* round-trips, -0 and inf included */
    }
}

/* The midpoints between neighbouring float16s (exact in float) round to the
 * even one; a float either side of a midpoint rounds to its nearer one. */
static void test_f32_to_f16_ties(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 0x7bff; h++)
        for (int sign = 0; sign < 2; sign++) {
            double a = fu_num_f16_to_f32((uint16_t)h), b = fu_num_f16_to_f32((uint16_t)(h + 1));
            float mid = (float)((a + b) / 2);
            uint16_t s = sign ? 0x8000 : 0;
            float m = sign ? -mid : mid;
            uint16_t even = (uint16_t)((h & 1) ? h + 1 : h);
            assert_int_equal(to_f16(m), even | s);
            assert_int_equal(to_f16(nextafterf(m, 0.0f)), h | s);
            assert_int_equal(to_f16(nextafterf(m, sign ? -INFINITY : INFINITY)), (h + 1) | s);
        }
}

/* A sample of all 2^32 floats (every 251st bit pattern, about 17 million)
 * against gcc's _Float16 conversion. */
static void test_f32_to_f16_against_gcc(void **state) {
    (void)state;
    for (uint64_t x = 0; x < ((uint64_t)1 << 32); x += 251) {
        float f = from_bits((uint32_t)x);
        if (f != f) continue;
        uint16_t got = fu_num_f32_to_f16(f), want = f16_reference(f);
        if (got != want) fail_msg("f32 %08x -> f16 %04x, gcc %04x", (uint32_t)x, got, want);
    }
}

static const struct { uint32_t in; uint16_t out; } bf16_cases[] = {
    {0x00000000u, 0x0000}, {0x80000000u, 0x8000},        /* +0, -0 */
    {0x00000001u, 0x0000}, {0x80008000u, 0x8000},        /* tiny float subnormals, tie to even 0 */
    {0x00018000u, 0x0002}, {0x00008001u, 0x0001},        /* subnormal tie to even, just above a tie */
    {0x3f800000u, 0x3f80}, {0x3f808000u, 0x3f80},        /* 1; 1 + 2^-8 ties to even */
    {0x3f818000u, 0x3f82}, {0x3f807fffu, 0x3f80},
    {0x7f7f7fffu, 0x7f7f}, {0x7f7f8000u, 0x7f80},        /* near FLT_MAX; the tie overflows to inf */
    {0x7f7fffffu, 0x7f80}, {0xff7fffffu, 0xff80},
    {0x7f800000u, 0x7f80}, {0xff800000u, 0xff80},        /* +-inf */
    {0x7fc00000u, 0x7fc0}, {0xffc00000u, 0xffc0},        /* quiet NaN, sign kept */
    {0x7fc1ffffu, 0x7fc1},                               /* payload's top bits kept, not rounded */
    {0x7f800001u, 0x7fc0}, {0x7f810000u, 0x7fc1},        /* signalling NaN: made quiet, never inf */
    {0xff80ffffu, 0xffc0},
};

static void test_bf16_special_values(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof bf16_cases / sizeof bf16_cases[0]; i++) {
        uint16_t got = to_bf16(from_bits(bf16_cases[i].in));
        if (got != bf16_cases[i].out)
            fail_msg("f32 %08x -> bf16 %04x, want %04x", bf16_cases[i].in, got, bf16_cases[i].out);
    }
    for (uint32_t h = 0; h < 0x10000; h++) {  /* bf16 -> f32 is exact and round-trips (NaN included) */
        float f = fu_num_bf16_to_f32((uint16_t)h);
        assert_int_equal(to_bits(f), h << 16);
        assert_int_equal(to_bits(fu_bf16_to_f32((uint16_t)h)), h << 16);
        if ((h & 0x7fff) <= 0x7f80 || (h & 0x40)) assert_int_equal(to_bf16(f), h);
    }
    for (uint64_t x = 0; x < ((uint64_t)1 << 32); x += 251) {  /* a sample against the double rounding */
        uint32_t u = (uint32_t)x;
        if ((u & 0x7fffffffu) >= 0x7f800000u) continue;
        uint16_t got = fu_num_f32_to_bf16(from_bits(u)), want = bf16_reference(u);
        if (got != want) fail_msg("f32 %08x -> bf16 %04x, want %04x", u, got, want);
    }
}

/* Generated code gets numerics.h as the text embedded ahead of
 * fusec_kernels.h; tcc and gcc must compute the same bits from it. */
extern const char fu_kernels_header[];

static const char probe_source[] =
    "int fusec_model_run(const int64_t *s, const void *const *i, const void *const *w, void *a,\n"
    "                    void **o) {\n"
    "    (void)s; (void)w; (void)a;\n"
    "    const float *x = i[0];\n"
    "    const uint16_t *h = i[1];\n"
    "    int64_t n = *(const int64_t *)i[2];\n"
    "    uint16_t *to16 = o[0], *tob16 = o[1];\n"
    "    float *from16 = o[2], *fromb16 = o[3];\n"
    "    for (int64_t k = 0; k < n; k++) {\n"
    "        to16[k] = fu_num_f32_to_f16(x[k]);\n"
    "        tob16[k] = fu_rt_f32_to_bf16(x[k]);\n"
    "        from16[k] = fu_num_f16_to_f32(h[k]);\n"
    "        fromb16[k] = fu_rt_bf16_to_f32(h[k]);\n"
    "    }\n"
    "    return 0;\n"
    "}\n"
    "const unsigned char fusec_model_meta[] = \"{}\";\n"
    "const unsigned long fusec_model_meta_len = 2;\n";

static void check_generated(fu_compiled *code) {
    enum { N = sizeof f16_cases / sizeof f16_cases[0] + sizeof bf16_cases / sizeof bf16_cases[0] + 65536 };
    float *x = malloc(N * sizeof *x), *from16 = malloc(N * sizeof *from16), *fromb16 = malloc(N * sizeof *fromb16);
    uint16_t *h = malloc(N * sizeof *h), *to16 = malloc(N * sizeof *to16), *tob16 = malloc(N * sizeof *tob16);
    int64_t n = 0;
    for (size_t i = 0; i < sizeof f16_cases / sizeof f16_cases[0]; i++) x[n++] = from_bits(f16_cases[i].in);
    for (size_t i = 0; i < sizeof bf16_cases / sizeof bf16_cases[0]; i++) x[n++] = from_bits(bf16_cases[i].in);
    uint32_t seed = 12345;
    while (n < N) {  /* the rest: random bit patterns */
        seed = seed * 1664525u + 1013904223u;
        x[n++] = from_bits(seed);
    }
    for (int64_t k = 0; k < N; k++) h[k] = (uint16_t)k;
    const void *in[3] = {x, h, &n};
    void *out[4] = {to16, tob16, from16, fromb16};
    assert_int_equal(code->run(NULL, in, NULL, NULL, out), 0);
    for (int64_t k = 0; k < N; k++) {
        if (to16[k] != fu_num_f32_to_f16(x[k])) fail_msg("f16 of %08x: %04x", to_bits(x[k]), to16[k]);
        if (tob16[k] != fu_num_f32_to_bf16(x[k])) fail_msg("bf16 of %08x: %04x", to_bits(x[k]), tob16[k]);
        if (to_bits(from16[k]) != to_bits(fu_num_f16_to_f32(h[k]))) fail_msg("f16 %04x", h[k]);
        if (to_bits(fromb16[k]) != to_bits(fu_num_bf16_to_f32(h[k]))) fail_msg("bf16 %04x", h[k]);
    }
    free(x), free(from16), free(fromb16), free(h), free(to16), free(tob16);
}

static char *probe_text(void) {
    size_t n = strlen(fu_kernels_header) + sizeof probe_source + 1;
    char *src = malloc(n);
    snprintf(src, n, "%s\n%s", fu_kernels_header, probe_source);
    return src;
}

static void test_generated_code_jit(void **state) {
    (void)state;
    char *src = probe_text();
    fu_compiled code;
    fu_err err = {0};
    if (fu_jit_compile(src, &code, &err) != 0) fail_msg("%s", err.msg);
    check_generated(&code);
    fu_compiled_free(&code);
    free(src);
}

static void test_generated_code_aot(void **state) {
    (void)state;
    char dir[] = "/tmp/fusec_numerics_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char so[64];
    snprintf(so, sizeof so, "%s/probe.so", dir);
    char *src = probe_text();
    fu_compiled code;
    fu_err err = {0};
    if (fu_aot_build(src, so, NULL, &err) != 0) fail_msg("%s", err.msg);
    if (fu_aot_load(so, &code, &err) != 0) fail_msg("%s", err.msg);
    check_generated(&code);
    fu_compiled_free(&code);
    unlink(so);
    rmdir(dir);
    free(src);
}

/* e^r = FU_NUM_EXP_POLY(r) on |r| <= ln2/2, and the reduction, within 2 ulp
 * of libm. */
static void test_exp_polynomial(void **state) {
    (void)state;
    for (float x = -87.0f; x <= 88.0f; x += 0.001953125f) {
        float t = x * FU_NUM_LOG2E + FU_NUM_ROUND_MAGIC;
        float n = t - FU_NUM_ROUND_MAGIC;
        float r = FU_NUM_EXP_REDUCE(x, n);
        assert_true(fabsf(r) <= 0.3466f);
        double want = exp((double)x - (double)n * 0.69314718055994530942);
        float got = FU_NUM_EXP_POLY(r);
        double ulp = ldexp(1.0, ilogb(want) - 23);
        if (fabs(got - want) > 2 * ulp) fail_msg("x %g: e^r %.9g, want %.9g", x, got, want);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f32_to_f16_special_values),
        cmocka_unit_test(test_f16_to_f32_all),
        cmocka_unit_test(test_f32_to_f16_ties),
        cmocka_unit_test(test_f32_to_f16_against_gcc),
        cmocka_unit_test(test_bf16_special_values),
        cmocka_unit_test(test_generated_code_jit),
        cmocka_unit_test(test_generated_code_aot),
        cmocka_unit_test(test_exp_polynomial),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
