/* The GEMM micro-kernels (runtime/gemm.c, runtime/gemm_kernels.c), every
 * variant this CPU runs, against a float64 reference:
 *   float32 weights, bfloat16 weights (float32 arithmetic: products as if
 *   the weights were converted first), and precision bf16 (activations
 *   rounded to bfloat16 too), packed from [N, K] and from [K, N] sources;
 *   M from 1 to 70, N and K not multiples of the tile or vector sizes,
 *   alpha and beta. Repeats are bit-identical. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include "testutil.h"
#include "../runtime/gemm.h"

static float frand(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return (float)((*s >> 8) & 0xffff) / 65536.0f - 0.5f;
}

static float round_bf16(float x) { return fu_rt_bf16_to_f32(fu_rt_f32_to_bf16(x)); }

typedef enum { WEIGHTS_F32, WEIGHTS_BF16, PRECISION_BF16 } mode;
static const char *const mode_names[] = {"f32 weights", "bf16 weights", "precision bf16"};

/* One shape in one mode: packs B (from [N, K] or [K, N]), runs, compares. */
static void check(mode md, int64_t M, int64_t N, int64_t K, float alpha, float beta, int transposed) {
    unsigned seed = (unsigned)(M * 7919 + N * 131 + K * 7 + md);
    size_t mk = (size_t)(M * K), nk = (size_t)(N * K), mn = (size_t)(M * N);
    float *A = malloc(sizeof(float) * mk), *B = malloc(sizeof(float) * nk), *Bsrc = malloc(sizeof(float) * nk);
    uint16_t *Bh = malloc(sizeof(uint16_t) * nk);
    float *C0 = malloc(sizeof(float) * mn), *C = malloc(sizeof(float) * mn), *C2 = malloc(sizeof(float) * mn);
    for (size_t i = 0; i < mk; i++) A[i] = frand(&seed);
    for (size_t i = 0; i < nk; i++) B[i] = frand(&seed);
    for (size_t i = 0; i < mn; i++) C0[i] = frand(&seed);
    /* the values the kernel must multiply: bfloat16 weights are exact bf16 */
    if (md == WEIGHTS_BF16)
        for (size_t i = 0; i < nk; i++) B[i] = round_bf16(B[i]);
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < K; k++) {
            float v = B[n * K + k];
            int64_t at = transposed ? k * N + n : n * K + k;
            Bsrc[at] = v;
            Bh[at] = fu_rt_f32_to_bf16(v);
        }
    int layout = md == WEIGHTS_F32 ? FU_RT_PACK_F32 : FU_RT_PACK_BF16;
    int64_t bytes = fu_rt_packed_bytes(layout, N, K);
    assert_true(bytes > 0 && bytes % 64 == 0);
    size_t nbytes = bytes > 0 ? (size_t)bytes : 64;
    void *P = aligned_alloc(64, nbytes);
    memset(P, 0xff, nbytes);   /* every byte must be written: padding too */
    if (md == WEIGHTS_BF16)
        assert_int_equal(fu_rt_pack_weight(P, Bh, 1, transposed, layout, N, K), 0);
    else
        assert_int_equal(fu_rt_pack_weight(P, Bsrc, 0, transposed, layout, N, K), 0);

    for (int rep = 0; rep < 2; rep++) {
        float *out = rep ? C2 : C;
        memcpy(out, C0, sizeof(float) * mn);
        if (md == WEIGHTS_F32) fu_rt_gemm_packed_f32(A, P, out, M, N, K, alpha, beta);
        else fu_rt_gemm_packed_bf16(A, P, out, M, N, K, alpha, beta, md == PRECISION_BF16);
    }
    /* float64 reference; error bound of a float32 sum of K products */
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double dot = 0, mag = 0;
            for (int64_t k = 0; k < K; k++) {
                double a = A[m * K + k], b = B[n * K + k];
                if (md == PRECISION_BF16) a = round_bf16((float)a), b = round_bf16((float)b);
                dot += a * b;
                mag += fabs(a * b);
            }
            double want = alpha * dot + (beta != 0 ? beta * (double)C0[m * N + n] : 0);
            double allowed = (K + 4) * 0x1p-23 * (fabs(alpha) * mag + fabs(beta * C0[m * N + n])) + 1e-30;
            double d = fabs(want - C[m * N + n]);
            if (!(d <= allowed))
                fail_msg("%s %s M=%lld N=%lld K=%lld alpha=%g beta=%g%s: C[%lld][%lld] = %.9g, want %.9g (allowed %.3g)",
                         fu_rt_gemm_variant(), mode_names[md], (long long)M, (long long)N, (long long)K, alpha, beta,
                         transposed ? " (from [K, N])" : "", (long long)m, (long long)n, C[m * N + n], want, allowed);
        }
    assert_memory_equal(C, C2, sizeof(float) * mn);
    free(A), free(B), free(Bsrc), free(Bh), free(C0), free(C), free(C2), free(P);
}

/* Runs fn once per variant this CPU supports. */
static void each_variant(void (*fn)(void)) {
    int ran = 0;
    for (int i = 0; fu_rt_gemm_variant_at(i); i++) {
        const char *v = fu_rt_gemm_variant_at(i);
        if (!fu_rt_gemm_variant_supported(v)) {
            printf("    (variant %s: not supported by this CPU)\n", v);
            continue;
        }
        assert_int_equal(fu_rt_gemm_use_variant(v), 0);
        assert_string_equal(fu_rt_gemm_variant(), v);
        fn();
        ran++;
    }
    assert_true(ran >= 1);   /* portable always runs */
}

static void rows_1_to_70(void) {
    static const int64_t ms[] = {1, 2, 3, 5, 7, 8, 11, 13, 14, 15, 16, 17, 27, 29, 31, 42, 64, 65, 70};
    for (mode md = WEIGHTS_F32; md <= PRECISION_BF16; md++)
        for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) check(md, ms[i], 45, 37, 1.0f, 0.0f, 0);
}

static void odd_columns_and_depths(void) {
    static const int64_t ns[] = {1, 15, 31, 32, 33, 64, 97};
    static const int64_t ks[] = {1, 2, 3, 16, 31, 33, 100, 257};
    for (mode md = WEIGHTS_F32; md <= PRECISION_BF16; md++) {
        for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) check(md, 6, ns[i], 29, 1.0f, 0.0f, 0);
        for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) check(md, 9, 40, ks[i], 1.0f, 0.0f, 0);
    }
}

static void alpha_beta_and_transposed_sources(void) {
    for (mode md = WEIGHTS_F32; md <= PRECISION_BF16; md++) {
        check(md, 5, 70, 40, 0.5f, 1.0f, 0);
        check(md, 13, 33, 65, -2.0f, 0.25f, 0);
        check(md, 15, 50, 31, 1.0f, 0.0f, 1);
        check(md, 65, 96, 130, 1.0f, 1.0f, 1);
    }
}

/* Big enough to share across cores: 65 rows x 1000 x 1024. */
static void router_sized(void) {
    for (mode md = WEIGHTS_F32; md <= PRECISION_BF16; md++) check(md, 65, 1000, 1024, 1.0f, 0.0f, 0);
    check(WEIGHTS_F32, 15, 3072 + 7, 257, 1.0f, 1.0f, 0);
}

static void test_rows_1_to_70(void **state) { (void)state; each_variant(rows_1_to_70); }
static void test_odd_columns_and_depths(void **state) { (void)state; each_variant(odd_columns_and_depths); }
static void test_alpha_beta_and_transposed(void **state) { (void)state; each_variant(alpha_beta_and_transposed_sources); }
static void test_router_sized(void **state) { (void)state; each_variant(router_sized); }

/* A value that rounds differently to bfloat16 shows which products the
 * kernel used: precision bf16 must round A (and a float32 weight), the
 * bf16-weights mode must not round A. */
static void rounding_is_where_it_should_be(void) {
    const int64_t M = 1, N = 1, K = 2;
    float A[2] = {1.0f + 0x1p-10f, 0.0f}, Bf[2] = {1.0f, 0.0f};
    uint16_t Bh[2] = {fu_rt_f32_to_bf16(1.0f), 0};
    void *P = aligned_alloc(64, 4096);   /* one panel: 32 x 2 bf16 */
    float C = 0;
    fu_rt_pack_weight(P, Bh, 1, 0, FU_RT_PACK_BF16, N, K);
    fu_rt_gemm_packed_bf16(A, P, &C, M, N, K, 1.0f, 0.0f, 0);
    assert_true(C == 1.0f + 0x1p-10f);   /* exact: A kept float32 */
    fu_rt_gemm_packed_bf16(A, P, &C, M, N, K, 1.0f, 0.0f, 1);
    assert_true(C == 1.0f);              /* A rounded to bfloat16 */
    Bf[0] = 1.0f + 0x1p-10f;
    A[0] = 1.0f;
    fu_rt_pack_weight(P, Bf, 0, 0, FU_RT_PACK_BF16, N, K);
    fu_rt_gemm_packed_bf16(A, P, &C, M, N, K, 1.0f, 0.0f, 1);
    assert_true(C == 1.0f);              /* a float32 weight packed as bfloat16 is rounded */
    free(P);
}
static void test_rounding(void **state) { (void)state; each_variant(rounding_is_where_it_should_be); }

/* The unpacked entry points (weights computed at run time) agree with
 * packing first. */
static void nt_matches_packed(void) {
    const int64_t M = 17, N = 75, K = 66;
    unsigned seed = 5;
    float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * N * K);
    float *C1 = calloc((size_t)(M * N), sizeof(float)), *C2 = calloc((size_t)(M * N), sizeof(float));
    for (int64_t i = 0; i < M * K; i++) A[i] = frand(&seed);
    for (int64_t i = 0; i < N * K; i++) B[i] = frand(&seed);
    void *P = aligned_alloc(64, 3 * 32 * 66 * 4);   /* fu_rt_packed_bytes(F32, 75, 66) */
    assert_int_equal(fu_rt_packed_bytes(FU_RT_PACK_F32, N, K), 3 * 32 * 66 * 4);
    fu_rt_pack_weight(P, B, 0, 0, FU_RT_PACK_F32, N, K);
    fu_rt_gemm_packed_f32(A, P, C1, M, N, K, 1.0f, 0.0f);
    fu_rt_gemm_nt_f32(A, B, C2, M, N, K, 1.0f, 0.0f);
    assert_memory_equal(C1, C2, sizeof(float) * M * N);
    free(A), free(B), free(C1), free(C2), free(P);
}
static void test_nt_matches_packed(void **state) { (void)state; each_variant(nt_matches_packed); }

static void test_variant_names(void **state) {
    (void)state;
    assert_int_equal(fu_rt_gemm_use_variant("no-such-variant"), -1);
    assert_true(fu_rt_gemm_variant_supported("portable"));
    assert_false(fu_rt_gemm_variant_supported("no-such-variant"));
    assert_int_equal(fu_rt_packed_bytes(FU_RT_PACK_F32, 0, 4), -1);
    assert_int_equal(fu_rt_packed_bytes(7, 4, 4), -1);
    /* one panel of 32 columns x 3 k: 384 bytes, padded to 64 */
    assert_int_equal(fu_rt_packed_bytes(FU_RT_PACK_F32, 1, 3), 384);
    assert_int_equal(fu_rt_packed_bytes(FU_RT_PACK_BF16, 1, 3), 256);   /* K rounded up to 4 */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_variant_names),
        cmocka_unit_test(test_rows_1_to_70),
        cmocka_unit_test(test_odd_columns_and_depths),
        cmocka_unit_test(test_alpha_beta_and_transposed),
        cmocka_unit_test(test_router_sized),
        cmocka_unit_test(test_rounding),
        cmocka_unit_test(test_nt_matches_packed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
