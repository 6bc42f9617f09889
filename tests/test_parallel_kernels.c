/* The runtime kernels that share work across cores (runtime/parallel.c):
 * the skinny GEMM (runtime/gemm.c) against a double-precision reference
 * (row and column counts around the tile sizes, K not a multiple of the
 * vector width, alpha and beta, float32 and bfloat16 weights, bit-identical
 * repeats), and copies and conversions big enough to be split. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include "testutil.h"
#include "../runtime/fusec_kernels.h"

static float frand(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return (float)((*s >> 8) & 0xffff) / 65536.0f - 0.5f;
}

/* Checks C = alpha*A*B^T + beta*C0 for one shape, both weight types. */
static void check_shape(int64_t M, int64_t N, int64_t K, float alpha, float beta) {
    unsigned seed = (unsigned)(M * 131 + N * 7 + K);
    float *A = malloc(sizeof(float) * (size_t)(M * K)), *B = malloc(sizeof(float) * (size_t)(N * K));
    uint16_t *Bh = malloc(sizeof(uint16_t) * (size_t)(N * K));
    float *C0 = malloc(sizeof(float) * (size_t)(M * N)), *C = malloc(sizeof(float) * (size_t)(M * N));
    float *C2 = malloc(sizeof(float) * (size_t)(M * N));
    for (int64_t i = 0; i < M * K; i++) A[i] = frand(&seed);
    for (int64_t i = 0; i < N * K; i++) {
        Bh[i] = fu_rt_f32_to_bf16(frand(&seed));
        B[i] = fu_rt_bf16_to_f32(Bh[i]);  /* same values in both types */
    }
    for (int64_t i = 0; i < M * N; i++) C0[i] = frand(&seed);
    for (int bf16 = 0; bf16 < 2; bf16++) {
        memcpy(C, C0, sizeof(float) * (size_t)(M * N));
        if (bf16) fu_rt_gemm_nt_bf16(A, Bh, C, M, N, K, alpha, beta);
        else fu_rt_gemm_nt_f32(A, B, C, M, N, K, alpha, beta);
        double worst = 0, scale = 1e-30;
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) {
                double dot = 0;
                for (int64_t k = 0; k < K; k++) dot += (double)A[m * K + k] * B[n * K + k];
                double want = alpha * dot + (beta != 0 ? beta * (double)C0[m * N + n] : 0);
                double d = fabs(want - C[m * N + n]);
                worst = d > worst ? d : worst;
                scale = fabs(want) > scale ? fabs(want) : scale;
            }
        if (!(worst <= 1e-5 * scale + 1e-6))
            fail_msg("M=%lld N=%lld K=%lld %s: error %g (scale %g)", (long long)M, (long long)N, (long long)K,
                     bf16 ? "bf16" : "f32", worst, scale);
        /* Repeats are bit-identical, whatever the threads did. */
        memcpy(C2, C0, sizeof(float) * (size_t)(M * N));
        if (bf16) fu_rt_gemm_nt_bf16(A, Bh, C2, M, N, K, alpha, beta);
        else fu_rt_gemm_nt_f32(A, B, C2, M, N, K, alpha, beta);
        assert_memory_equal(C, C2, sizeof(float) * (size_t)(M * N));
    }
    free(A), free(B), free(Bh), free(C0), free(C), free(C2);
}

static void test_tile_edges(void **state) {
    (void)state;
    for (int64_t M = 1; M <= 13; M++)
        for (int64_t N = 1; N <= 9; N += 2) check_shape(M, N, 37, 1.0f, 0.0f);
}

static void test_k_not_multiple_of_16(void **state) {
    (void)state;
    static const int64_t ks[] = {1, 15, 16, 17, 31, 100, 1000};
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) check_shape(7, 11, ks[i], 1.0f, 0.0f);
}

static void test_alpha_beta(void **state) {
    (void)state;
    check_shape(5, 6, 40, 0.5f, 1.0f);
    check_shape(6, 5, 33, -2.0f, 0.25f);
}

static void test_router_shapes(void **state) {
    (void)state;
    check_shape(15, 1024 + 3, 1024, 1.0f, 0.0f);  /* threaded: enough work */
    check_shape(65, 515, 3072, 1.0f, 1.0f);
}

/* A 1100 x 1024 float32 transpose (4.5 MB: split across cores) and a
 * 3-D permutation, checked element by element. */
static void test_large_copy(void **state) {
    (void)state;
    int64_t R = 1100, C = 1024;
    float *src = malloc(sizeof(float) * (size_t)(R * C)), *dst = malloc(sizeof(float) * (size_t)(R * C));
    for (int64_t i = 0; i < R * C; i++) src[i] = (float)i;
    int64_t shape[2] = {C, R}, ds[2] = {R, 1}, ss[2] = {1, C};  /* dst[c][r] = src[r][c] */
    fu_rt_copy(dst, src, 4, 2, shape, ds, ss);
    for (int64_t r = 0; r < R; r++)
        for (int64_t c = 0; c < C; c++)
            if (dst[c * R + r] != src[r * C + c]) fail_msg("transpose wrong at %lld,%lld", (long long)r, (long long)c);
    /* [A, B, Cc] -> [B, A, Cc] with A=8, B=300, Cc=520 (5 MB) */
    int64_t A = 8, B = 300, Cc = 520;
    float *src3 = malloc(sizeof(float) * (size_t)(A * B * Cc)), *dst3 = malloc(sizeof(float) * (size_t)(A * B * Cc));
    for (int64_t i = 0; i < A * B * Cc; i++) src3[i] = (float)i;
    int64_t shape3[3] = {B, A, Cc}, ds3[3] = {A * Cc, Cc, 1}, ss3[3] = {Cc, B * Cc, 1};
    fu_rt_copy(dst3, src3, 4, 3, shape3, ds3, ss3);
    for (int64_t a = 0; a < A; a++)
        for (int64_t b = 0; b < B; b++)
            assert_memory_equal(dst3 + (b * A + a) * Cc, src3 + (a * B + b) * Cc, sizeof(float) * (size_t)Cc);
    free(src), free(dst), free(src3), free(dst3);
}

/* Conversions of 3 M elements (split across cores) match the scalar rule. */
static void test_large_convert(void **state) {
    (void)state;
    int64_t n = 3 * 1000 * 1000 + 7;
    uint16_t *h = malloc(sizeof(uint16_t) * (size_t)n), *back = malloc(sizeof(uint16_t) * (size_t)n);
    float *f = malloc(sizeof(float) * (size_t)n);
    unsigned seed = 7;
    for (int64_t i = 0; i < n; i++) h[i] = fu_rt_f32_to_bf16(frand(&seed) * 100.0f);
    fu_rt_convert(f, h, n, FU_RT_CONVERT_BF16_TO_F32);
    for (int64_t i = 0; i < n; i++)
        if (f[i] != fu_rt_bf16_to_f32(h[i])) fail_msg("bf16 -> f32 wrong at %lld", (long long)i);
    fu_rt_convert(back, f, n, FU_RT_CONVERT_F32_TO_BF16);
    assert_memory_equal(back, h, sizeof(uint16_t) * (size_t)n);
    fu_rt_convert(back, f, n, FU_RT_CONVERT_F32_TO_F16);
    for (int64_t i = 0; i < n; i += 997)
        if (back[i] != fu_rt_f32_to_f16(f[i])) fail_msg("f32 -> f16 wrong at %lld", (long long)i);
    free(h), free(back), free(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tile_edges),
        cmocka_unit_test(test_k_not_multiple_of_16),
        cmocka_unit_test(test_alpha_beta),
        cmocka_unit_test(test_router_shapes),
        cmocka_unit_test(test_large_copy),
        cmocka_unit_test(test_large_convert),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
