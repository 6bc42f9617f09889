/* The packed GEMM (runtime/gemm.c) at the router's shapes against this
 * machine's roofline, measured in the same run (build/roofline):
 *   M=65, K=1024, N=3072 (q/k/v/gate/up at 65 tokens): compute-bound, GFLOP/s
 *     as a share of the FMA peak (BF16-dot peak for precision bf16);
 *   M=15, same K and N: the weight streamed from memory, GB/s as a share of
 *     the read bandwidth;
 * for float32 weights, bfloat16 weights (float32 arithmetic) and precision
 * bf16, on 1 and 2 threads (a child process per thread count: the runtime's
 * pool reads FUSEC_NUM_THREADS at start). 48 distinct weights are cycled
 * (0.6 GB for float32), so every call streams its weight from memory as a
 * forward pass does. Prints PASS/FAIL for the float32 targets (75% of the
 * FMA peak at M=65, 75% of the bandwidth at M=15); exit status 0 either way.
 *
 *   build/bench_gemm                 (make bench runs it)
 *   build/bench_gemm --child         (one thread count; prints gemm-result lines) */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "runtime/gemm.h"

enum { N = 3072, K = 1024, WEIGHTS = 48, REPS = 7 };
typedef enum { F32, BF16_WEIGHTS, PRECISION_BF16, N_MODES } mode;
static const char *const mode_names[N_MODES] = {"float32", "bf16 weights", "precision bf16"};
static const int rows[2] = {15, 65};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median seconds per call over REPS passes through all the weights. */
static double time_mode(mode md, int M, void *const *packed, const float *A, float *C) {
    double t[REPS];
    for (int r = 0; r < REPS + 1; r++) {
        double t0 = now_s();
        for (int w = 0; w < WEIGHTS; w++) {
            if (md == F32) fu_rt_gemm_packed_f32(A, packed[w], C, M, N, K, 1.0f, 0.0f);
            else fu_rt_gemm_packed_bf16(A, packed[w], C, M, N, K, 1.0f, 0.0f, md == PRECISION_BF16);
        }
        if (r > 0) t[r - 1] = (now_s() - t0) / WEIGHTS;   /* the first pass warms up */
    }
    qsort(t, REPS, sizeof t[0], compare);
    return t[REPS / 2];
}

static int child(void) {
    float *src = malloc(sizeof(float) * N * K), *A = malloc(sizeof(float) * 65 * K), *C = malloc(sizeof(float) * 65 * N);
    if (!src || !A || !C) return 1;
    unsigned s = 1;
    for (int i = 0; i < 65 * K; i++) A[i] = (float)(i % 97) / 97.0f - 0.5f;
    for (mode md = F32; md < N_MODES; md++) {
        int layout = md == F32 ? FU_RT_PACK_F32 : FU_RT_PACK_BF16;
        int64_t bytes = fu_rt_packed_bytes(layout, N, K);
        void *packed[WEIGHTS];
        for (int w = 0; w < WEIGHTS; w++) {
            packed[w] = aligned_alloc(4096, (size_t)bytes);
            if (!packed[w]) return 1;
            /* Fresh random values for every weight: pages with equal bytes
             * may be merged by the host (KSM), and the "streamed" weights
             * would then come from cache. */
            for (int i = 0; i < N * K; i++) src[i] = (float)((s = s * 1664525u + 1013904223u) >> 9) / 8388608.0f - 0.5f;
            fu_rt_pack_weight(packed[w], src, 0, 0, layout, N, K);
        }
        for (int i = 0; i < 2; i++) {
            double s_per_call = time_mode(md, rows[i], packed, A, C);
            printf("gemm-result %d %d %.6e %lld\n", md, rows[i], s_per_call, (long long)bytes);
        }
        for (int w = 0; w < WEIGHTS; w++) free(packed[w]);
    }
    printf("gemm-variant %s\n", fu_rt_gemm_variant());
    free(src), free(A), free(C);
    return 0;
}

/* The directory of this executable (build/), for build/roofline. */
static void exe_dir(char *dir, size_t size) {
    ssize_t n = readlink("/proc/self/exe", dir, size - 1);
    if (n <= 0) n = 0;
    dir[n] = 0;
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    else snprintf(dir, size, ".");
}

int main(int argc, char **argv) {
    if (argc == 2 && !strcmp(argv[1], "--child")) return child();
    char dir[PATH_MAX], cmd[PATH_MAX + 64];
    exe_dir(dir, sizeof dir);
    double fma[2] = {0}, dot[2] = {0}, bw[2] = {0};
    snprintf(cmd, sizeof cmd, "%s/roofline", dir);
    FILE *p = popen(cmd, "r");
    char line[512];
    int have_roofline = 0;
    while (p && fgets(line, sizeof line, p))
        if (sscanf(line, "roofline-result %lf %lf %lf %lf %lf %lf", &fma[0], &fma[1], &dot[0], &dot[1], &bw[0], &bw[1]) == 6)
            have_roofline = 1;
    if (p) pclose(p);
    if (!have_roofline) printf("bench_gemm: %s gave no roofline; shares are not printed\n", cmd);
    else
        printf("roofline: FMA %.1f / %.1f GFLOP/s, BF16-dot %.1f / %.1f GFLOP/s, read %.1f / %.1f GB/s (1 / 2 threads)\n",
               fma[0], fma[1], dot[0], dot[1], bw[0], bw[1]);

    double secs[2][N_MODES][2];
    long long bytes[N_MODES] = {0};
    char variant[64] = "?";
    for (int t = 0; t < 2; t++) {
        snprintf(cmd, sizeof cmd, "FUSEC_NUM_THREADS=%d %s/bench_gemm --child", t + 1, dir);
        fflush(stdout);
        p = popen(cmd, "r");
        int got = 0;
        while (p && fgets(line, sizeof line, p)) {
            int md, m;
            double s;
            long long b;
            if (sscanf(line, "gemm-result %d %d %lf %lld", &md, &m, &s, &b) == 4 && md >= 0 && md < N_MODES) {
                secs[t][md][m == 65] = s;
                bytes[md] = b;
                got++;
            }
            sscanf(line, "gemm-variant %63s", variant);
        }
        if (p) pclose(p);
        if (got != 2 * N_MODES) {
            printf("bench_gemm: the %d-thread child failed\n", t + 1);
            return 0;
        }
    }
    printf("packed GEMM C[M, %d] = A[M, %d] B^T, %d distinct weights streamed, median of %d passes; variant %s\n", N,
           K, WEIGHTS, REPS, variant);
    printf("%-16s %7s %4s %9s %9s %9s %8s %8s %8s\n", "mode", "threads", "M", "us/call", "GFLOP/s", "GB/s", "%peak",
           "%read", "%roof");
    int failed = 0;
    for (mode md = F32; md < N_MODES; md++)
        for (int t = 0; t < 2; t++)
            for (int i = 0; i < 2; i++) {
                double s = secs[t][md][i], flops = 2.0 * rows[i] * N * K;
                double gflops = flops / s / 1e9, gbs = (double)bytes[md] / s / 1e9;
                double peak = md == PRECISION_BF16 ? dot[t] : fma[t];
                printf("%-16s %7d %4d %9.1f %9.1f %9.1f", mode_names[md], t + 1, rows[i], s * 1e6, gflops, gbs);
                /* roofline: the slower of computing at peak and streaming at the read bandwidth */
                double roof_s = fmax(flops / (peak * 1e9), (double)bytes[md] / (bw[t] * 1e9));
                if (have_roofline)
                    printf(" %7.0f%% %7.0f%% %7.0f%%", 100 * gflops / peak, 100 * gbs / bw[t], 100 * roof_s / s);
                printf("\n");
            }
    if (have_roofline) {
        printf("checks (float32 weights):\n");
        for (int t = 0; t < 2; t++) {
            double share = 2.0 * 65 * N * K / secs[t][F32][1] / 1e9 / fma[t];
            int ok = share >= 0.75;
            failed += !ok;
            printf("  %s  M=65 reaches %.0f%% of the %d-thread FMA peak (target >= 75%%)\n", ok ? "PASS" : "FAIL",
                   100 * share, t + 1);
            share = (double)bytes[F32] / secs[t][F32][0] / 1e9 / bw[t];
            ok = share >= 0.75;
            failed += !ok;
            /* at M=15 a float32 weight carries 7.5 FLOP per byte: where the FMA
             * peak is below 7.5 x the bandwidth, computing bounds the stream */
            double stream_cap = fmin(1.0, fma[t] / 7.5 / bw[t]);
            printf("  %s  M=15 streams the weights at %.0f%% of the %d-thread read bandwidth (target >= 75%%; "
                   "the FMA peak allows at most %.0f%%)\n",
                   ok ? "PASS" : "FAIL", 100 * share, t + 1, 100 * stream_cap);
        }
        printf("%d check(s) failed\n", failed);
    }
    return 0;
}
