/* The runtime kernels that share work across cores (runtime/parallel.c):
 * the skinny GEMM (runtime/gemm.c) against a double-precision reference
 * (row and column counts around the tile sizes, K not a multiple of the
 * vector width, alpha and beta, float32 and bfloat16 weights, bit-identical
 * repeats), copies and conversions big enough to be split, and every other
 * kernel that splits (norms, RoPE, SwiGLU, softmax, reductions, gather) at
 * sizes above its threshold, against references. The same kernel outputs
 * are computed by this program re-run with FUSEC_NUM_THREADS=1, 2 and 3
 * (the pool reads it once, at start) and must agree byte for byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <spawn.h>
#include <sys/wait.h>
#include <time.h>
#include "testutil.h"
#include "../runtime/fusec_kernels.h"
#include "../runtime/fused_ref.h"

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

/* ==== kernels that split, at sizes above their thresholds =============== */

/* One kernel call: its output and a reference to hold it to (float, or
 * exact when tol is 0). */
typedef struct {
    const char *name;
    float *out, *ref;
    int64_t count;
    double tol;   /* relative to max |ref| */
} split_case;

enum { N_SPLIT_CASES = 20 };
static split_case cases[N_SPLIT_CASES];
static int n_cases;

static float *floats(int64_t count, unsigned seed, float scale) {
    float *p = malloc(sizeof(float) * (size_t)(count > 0 ? count : 1));
    for (int64_t i = 0; i < count; i++) p[i] = frand(&seed) * scale;
    return p;
}

static split_case *new_case(const char *name, int64_t count, double tol) {
    split_case *c = &cases[n_cases++];
    c->name = name;
    c->count = count;
    c->tol = tol;
    c->out = calloc((size_t)count, sizeof(float));
    c->ref = calloc((size_t)count, sizeof(float));
    return c;
}

static void norm_cases(void) {
    int64_t rows = 300, n = 1024;
    float *x = floats(rows * n, 1, 6), *scale = floats(n, 2, 1), *bias = floats(n, 3, 1);
    split_case *c = new_case("rms_norm [300,1024]", rows * n, 1e-5);
    fu_rt_rms_norm_f32(x, scale, c->out, rows, n, 1e-6f);
    fu_ref_rms_norm_f32(x, scale, c->ref, rows, n, 1e-6f);
    c = new_case("layer_norm [300,1024]", rows * n, 1e-5);
    fu_rt_layer_norm_f32(x, scale, bias, c->out, rows, n, 1e-5f);
    fu_ref_layer_norm_f32(x, scale, bias, c->ref, rows, n, 1e-5f);
    c = new_case("rms_norm heads [1040,128]", 1040 * 128, 1e-5);
    fu_rt_rms_norm_f32(x, scale, c->out, 1040, 128, 1e-6f);
    fu_ref_rms_norm_f32(x, scale, c->ref, 1040, 128, 1e-6f);
    free(x), free(scale), free(bias);
}

static void rope_cases(void) {
    /* q out of its projection [1, S, 16, 128] into [1, 16, S, 128], computed angles */
    int64_t s = 65, h = 16, d = 128;
    float *x = floats(s * h * d, 4, 2), *inv_freq = malloc(sizeof(float) * 64);
    for (int i = 0; i < 64; i++) inv_freq[i] = powf(1e6f, -(float)(2 * i) / 128.0f);
    split_case *c = new_case("rope q [65,16,128]", s * h * d, 1e-5);
#define ROPE_Q(fn, y) fn(x, y, 1, h, s, d, d, s * h * d, d, h * d, h * s * d, s * d, d, FU_RT_ROPE_ROTATE_HALF, \
                         NULL, 0, 0, NULL, NULL, 0, inv_freq, 1.0f)
    assert_int_equal(ROPE_Q(fu_rt_rope_f32, c->out), 0);
    assert_int_equal(ROPE_Q(fu_ref_rope_f32, c->ref), 0);
    /* interleaved, batch 2 with its own positions, cached tables, half the channels rotated */
    int64_t max_pos = 200, batch = 2;
    float *cos_cache = floats(max_pos * 32, 5, 1), *sin_cache = floats(max_pos * 32, 6, 1);
    int64_t *pos = malloc(sizeof(int64_t) * (size_t)(batch * s));
    for (int64_t i = 0; i < batch * s; i++) pos[i] = (i * 37) % max_pos;
    float *xb = floats(batch * s * h * d, 7, 2);
    c = new_case("rope interleaved cached [2,16,65,128]", batch * s * h * d, 1e-5);
#define ROPE_B(fn, y, p) fn(xb, y, batch, h, s, d, 64, h * s * d, s * d, d, h * s * d, s * d, d, \
                            FU_RT_ROPE_INTERLEAVED, p, s, 0, cos_cache, sin_cache, max_pos, NULL, 1.0f)
    assert_int_equal(ROPE_B(fu_rt_rope_f32, c->out, pos), 0);
    assert_int_equal(ROPE_B(fu_ref_rope_f32, c->ref, pos), 0);
    /* a position out of the cache late in the sequence is still reported */
    pos[batch * s - 3] = max_pos;
    float *scratch = malloc(sizeof(float) * (size_t)(batch * s * h * d));
    assert_int_not_equal(ROPE_B(fu_rt_rope_f32, scratch, pos), 0);
#undef ROPE_Q
#undef ROPE_B
    free(x), free(inv_freq), free(cos_cache), free(sin_cache), free(pos), free(xb), free(scratch);
}

static void swiglu_cases(void) {
    /* one row of 5000: split into column blocks, the last one ragged */
    float *gate = floats(5000, 8, 8), *up = floats(5000, 9, 2);
    split_case *c = new_case("swiglu [1,5000]", 5000, 1e-5);
    fu_rt_swiglu_f32(gate, up, c->out, 1, 5000, 5000, 5000, 5000);
    fu_ref_swiglu_f32(gate, up, c->ref, 1, 5000, 5000, 5000, 5000);
    /* gate and up as the two halves of one [65, 6144] tensor */
    float *both = floats(65 * 6144, 10, 8);
    c = new_case("swiglu halves [65,3072]", 65 * 3072, 1e-5);
    fu_rt_swiglu_f32(both, both + 3072, c->out, 65, 3072, 6144, 6144, 3072);
    fu_ref_swiglu_f32(both, both + 3072, c->ref, 65, 3072, 6144, 6144, 3072);
    free(gate), free(up), free(both);
}

/* softmax over the middle axis of [outer, n, inner], in double */
static void softmax_reference(const float *x, float *y, int64_t outer, int64_t n, int64_t inner) {
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < inner; j++) {
            const float *xo = x + o * n * inner + j;
            double m = -INFINITY, sum = 0;
            for (int64_t i = 0; i < n; i++) m = xo[i * inner] > m ? xo[i * inner] : m;
            for (int64_t i = 0; i < n; i++) sum += exp((double)xo[i * inner] - m);
            for (int64_t i = 0; i < n; i++) y[o * n * inner + i * inner + j] = (float)(exp((double)xo[i * inner] - m) / sum);
        }
}

static void softmax_cases(void) {
    float *x = floats(200 * 1000, 11, 20);
    split_case *c = new_case("softmax rows [200,1000]", 200 * 1000, 1e-5);
    fu_rt_softmax_f32(x, c->out, 200, 1000, 1, 0);
    softmax_reference(x, c->ref, 200, 1000, 1);
    c = new_case("softmax columns [3,50,700]", 3 * 50 * 700, 1e-5);
    fu_rt_softmax_f32(x, c->out, 3, 50, 700, 0);
    softmax_reference(x, c->ref, 3, 50, 700);
    free(x);
}

/* reduce [outer, n, inner] over its middle axis, in double */
static void reduce_reference(int kind, const float *x, float *y, int64_t outer, int64_t n, int64_t inner) {
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < inner; j++) {
            double acc = kind == FU_RT_REDUCE_MAX ? -INFINITY : 0;
            for (int64_t i = 0; i < n; i++) {
                double v = x[(o * n + i) * inner + j];
                acc = kind == FU_RT_REDUCE_MAX ? (v > acc ? v : acc) : acc + v;
            }
            y[o * inner + j] = (float)(kind == FU_RT_REDUCE_MEAN ? acc / (double)n : acc);
        }
}

static void reduce_cases(void) {
    static const char *const last_names[] = {"reduce sum [300,1000] last axis", "reduce mean [300,1000] last axis",
                                             "reduce max [300,1000] last axis"};
    static const char *const middle_names[] = {"reduce sum [4,100,600] middle axis",
                                               "reduce mean [4,100,600] middle axis"};
    float *x = floats(300 * 1000, 12, 4);
    const int64_t last_shape[2] = {300, 1000}, middle_shape[3] = {4, 100, 600};
    const uint8_t last_mask[2] = {0, 1}, middle_mask[3] = {0, 1, 0};
    for (int kind = 0; kind < 3; kind++) {
        split_case *c = new_case(last_names[kind], 300, 1e-5);
        fu_rt_reduce_f32(kind, x, c->out, 2, last_shape, last_mask);
        reduce_reference(kind, x, c->ref, 300, 1000, 1);
    }
    for (int kind = 0; kind < 2; kind++) {
        split_case *c = new_case(middle_names[kind], 4 * 600, 1e-5);
        fu_rt_reduce_f32(kind, x, c->out, 3, middle_shape, middle_mask);
        reduce_reference(kind, x, c->ref, 4, 100, 600);
    }
    free(x);
}

static void movement_cases(void) {
    /* gather 65 embedding rows (some by negative index) from [4096, 1024] */
    float *table = floats(4096 * 1024, 13, 1);
    int64_t ids[65];
    for (int i = 0; i < 65; i++) ids[i] = i % 5 == 0 ? -(i * 31 % 4096) - 1 : i * 61 % 4096;
    split_case *c = new_case("gather [65] of [4096,1024]", 65 * 1024, 0);
    assert_int_equal(fu_rt_gather(c->out, table, ids, 0, 65, 1, 4096, 1024 * 4), 0);
    for (int i = 0; i < 65; i++)
        memcpy(c->ref + i * 1024, table + (ids[i] < 0 ? ids[i] + 4096 : ids[i]) * 1024, 1024 * sizeof(float));
    /* attention output [1, 16, 65, 128] back to [1, 65, 16, 128] */
    c = new_case("transpose [16,65,128] -> [65,16,128]", 16 * 65 * 128, 0);
    const int64_t shape[4] = {1, 65, 16, 128}, ds[4] = {65 * 2048, 2048, 128, 1}, ss[4] = {65 * 2048, 128, 65 * 128, 1};
    fu_rt_copy(c->out, table, 4, 4, shape, ds, ss);
    for (int64_t s = 0; s < 65; s++)
        for (int64_t h = 0; h < 16; h++) memcpy(c->ref + (s * 16 + h) * 128, table + (h * 65 + s) * 128, 128 * sizeof(float));
    /* bf16 -> f32 of 100000 elements */
    uint16_t *half = malloc(sizeof(uint16_t) * 100000);
    for (int i = 0; i < 100000; i++) half[i] = fu_rt_f32_to_bf16(table[i]);
    c = new_case("convert bf16 [100000]", 100000, 0);
    fu_rt_convert(c->out, half, 100000, FU_RT_CONVERT_BF16_TO_F32);
    for (int i = 0; i < 100000; i++) c->ref[i] = fu_rt_bf16_to_f32(half[i]);
    free(table), free(half);
}

static void run_split_cases(void) {
    for (int i = 0; i < n_cases; i++) free(cases[i].out), free(cases[i].ref);
    n_cases = 0;
    norm_cases();
    rope_cases();
    swiglu_cases();
    softmax_cases();
    reduce_cases();
    movement_cases();
}

static void test_split_kernels_match_references(void **state) {
    (void)state;
    run_split_cases();
    for (int i = 0; i < n_cases; i++) {
        const split_case *c = &cases[i];
        double diff = tu_max_abs_diff(c->out, c->ref, c->count), scale = tu_max_abs(c->ref, c->count);
        if (!(diff <= c->tol * scale)) fail_msg("%s: max abs diff %g, max |ref| %g", c->name, diff, scale);
    }
}

/* ==== the same outputs on 1, 2 and 3 threads ================================ */

static pthread_t caller;
static _Atomic int64_t done_elsewhere;

static void note_thread(void *ctx, int64_t begin, int64_t end) {
    (void)ctx;
    if (!pthread_equal(pthread_self(), caller)) done_elsewhere += end - begin;
    struct timespec pause = {0, 20000};   /* long enough for a worker to join */
    nanosleep(&pause, NULL);
}

/* --write-outputs FILE: whether another thread ran any chunk (one byte),
 * then every split case's output. */
static int write_outputs(const char *path) {
    caller = pthread_self();
    for (int attempt = 0; attempt < 20 && done_elsewhere == 0; attempt++) fu_rt_parallel_for(200, 1, note_thread, NULL);
    run_split_cases();
    FILE *f = fopen(path, "wb");
    if (!f) return 1;
    unsigned char worker_ran = done_elsewhere > 0;
    int ok = fwrite(&worker_ran, 1, 1, f) == 1;
    for (int i = 0; i < n_cases && ok; i++)
        ok = fwrite(cases[i].out, sizeof(float), (size_t)cases[i].count, f) == (size_t)cases[i].count;
    ok &= fclose(f) == 0;
    return ok ? 0 : 1;
}

extern char **environ;

/* Runs this program with --write-outputs at `threads` threads; returns the
 * file's bytes (malloc'd) and their count. */
static unsigned char *outputs_at(int threads, long *size) {
    char self[4096], path[256], env_threads[64];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    assert_true(len > 0);
    self[len] = 0;
    snprintf(path, sizeof path, "/tmp/fusec_test_threads_%d_%d.bin", (int)getpid(), threads);
    snprintf(env_threads, sizeof env_threads, "FUSEC_NUM_THREADS=%d", threads);
    int n_env = 0;
    while (environ[n_env]) n_env++;
    char **env = calloc((size_t)n_env + 2, sizeof *env);
    int k = 0;
    for (int i = 0; i < n_env; i++)
        if (strncmp(environ[i], "FUSEC_NUM_THREADS=", 18) != 0) env[k++] = environ[i];
    env[k] = env_threads;
    char *argv[] = {self, "--write-outputs", path, NULL};
    pid_t pid;
    assert_int_equal(posix_spawn(&pid, self, NULL, NULL, argv, env), 0);
    free(env);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail_msg("the %d-thread run failed", threads);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *size = ftell(f);
    rewind(f);
    unsigned char *bytes = malloc((size_t)*size);
    assert_int_equal(fread(bytes, 1, (size_t)*size, f), (size_t)*size);
    fclose(f);
    unlink(path);
    return bytes;
}

static void test_bit_identical_for_any_thread_count(void **state) {
    (void)state;
    long size1, size2, size3;
    unsigned char *one = outputs_at(1, &size1), *two = outputs_at(2, &size2), *three = outputs_at(3, &size3);
    /* the runs really differ in threads: a worker ran chunks only when there is one */
    assert_int_equal(one[0], 0);
    assert_int_equal(two[0], 1);
    assert_int_equal(three[0], 1);
    assert_true(size1 > 1000000);
    assert_int_equal(size1, size2);
    assert_int_equal(size1, size3);
    assert_memory_equal(one + 1, two + 1, (size_t)size1 - 1);
    assert_memory_equal(one + 1, three + 1, (size_t)size1 - 1);
    free(one), free(two), free(three);
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--write-outputs") == 0) return write_outputs(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tile_edges),
        cmocka_unit_test(test_k_not_multiple_of_16),
        cmocka_unit_test(test_alpha_beta),
        cmocka_unit_test(test_router_shapes),
        cmocka_unit_test(test_large_copy),
        cmocka_unit_test(test_large_convert),
        cmocka_unit_test(test_split_kernels_match_references),
        cmocka_unit_test(test_bit_identical_for_any_thread_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
