/* The skinny GEMM (runtime/gemm.c) against a double-precision reference:
 * row and column counts around the tile sizes, K not a multiple of the
 * vector width, alpha and beta, float32 and bfloat16 weights, and
 * bit-identical repeats. */
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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tile_edges),
        cmocka_unit_test(test_k_not_multiple_of_16),
        cmocka_unit_test(test_alpha_beta),
        cmocka_unit_test(test_router_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
