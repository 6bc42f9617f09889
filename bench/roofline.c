/* The roofline of this machine, for `make bench` (bench/bench_router.c runs it):
 *   - FMA peak: a register-only loop of 16 independent accumulator chains
 *     (AVX-512 zmm; AVX2 ymm with 12 chains when the CPU has no AVX-512),
 *   - the AVX512-BF16 dot-product peak (vdpbf16ps, counted as 64 flops per
 *     zmm instruction: 32 bf16 pairs, a multiply and an add each), when the
 *     CPU has it,
 *   - streaming read bandwidth over a 1 GiB buffer,
 * each on 1 and on 2 threads. A figure is the best of repeated short runs
 * (about 0.05 s each) over about 0.3 s: a peak, so other work on the machine
 * shows up as lower repeats, not as a lower figure.
 *
 * Built with -march=native: it measures only the machine it was built on.
 * Prints readable lines, then one "roofline-result" line for bench_router:
 *   roofline-result FMA1 FMA2 BF16DOT1 BF16DOT2 READ1 READ2
 * in GFLOP/s and GB/s (BF16DOT 0 when the CPU has no AVX512-BF16).
 *
 *   build/roofline */
#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if !defined(__AVX2__) || !defined(__FMA__)
#error "roofline.c needs at least AVX2 and FMA (built with -march=native)"
#endif

enum { MAX_THREADS = 2 };
#define READ_BYTES ((size_t)1 << 30)
#define REPEAT_SECONDS 0.05    /* one timed run */
#define FIGURE_SECONDS 0.3     /* all the runs of one figure */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Sinks the kernels write to, so their results are used. */
static volatile float sink[MAX_THREADS];

/* ---- compute kernels: `iterations` rounds over independent accumulators ---- */

#ifdef __AVX512F__
#define FMA_NAME "AVX-512 FMA"
enum { FMA_CHAINS = 16 };
#define FMA_FLOPS_PER_ROUND (FMA_CHAINS * 16 * 2)
static float fma_rounds(long iterations) {
    __m512 acc[FMA_CHAINS];
    const __m512 a = _mm512_set1_ps(0.9999f), b = _mm512_set1_ps(1e-3f);
#pragma GCC unroll 16
    for (int k = 0; k < FMA_CHAINS; k++) acc[k] = _mm512_set1_ps((float)k);
    for (long i = 0; i < iterations; i++) {
        /* unrolled, so every acc[k] lives in its own zmm register */
#pragma GCC unroll 16
        for (int k = 0; k < FMA_CHAINS; k++) acc[k] = _mm512_fmadd_ps(acc[k], a, b);
    }
    __m512 s = acc[0];
#pragma GCC unroll 16
    for (int k = 1; k < FMA_CHAINS; k++) s = _mm512_add_ps(s, acc[k]);
    return _mm512_reduce_add_ps(s);
}
#else
#define FMA_NAME "AVX2 FMA"
enum { FMA_CHAINS = 12 };   /* 12 accumulators + 2 operands of the 16 ymm registers */
#define FMA_FLOPS_PER_ROUND (FMA_CHAINS * 8 * 2)
static float fma_rounds(long iterations) {
    __m256 acc[FMA_CHAINS];
    const __m256 a = _mm256_set1_ps(0.9999f), b = _mm256_set1_ps(1e-3f);
#pragma GCC unroll 12
    for (int k = 0; k < FMA_CHAINS; k++) acc[k] = _mm256_set1_ps((float)k);
    for (long i = 0; i < iterations; i++) {
#pragma GCC unroll 12
        for (int k = 0; k < FMA_CHAINS; k++) acc[k] = _mm256_fmadd_ps(acc[k], a, b);
    }
    float out[8], total = 0;
    __m256 s = acc[0];
#pragma GCC unroll 12
    for (int k = 1; k < FMA_CHAINS; k++) s = _mm256_add_ps(s, acc[k]);
    _mm256_storeu_ps(out, s);
    for (int j = 0; j < 8; j++) total += out[j];
    return total;
}
#endif

#ifdef __AVX512BF16__
enum { DOT_CHAINS = 16 };
#define DOT_FLOPS_PER_ROUND (DOT_CHAINS * 64)
static float bf16_dot_rounds(long iterations) {
    __m512 acc[DOT_CHAINS];
    const __m512 v = _mm512_set1_ps(1e-3f);
    const __m512bh x = _mm512_cvtne2ps_pbh(v, v);
#pragma GCC unroll 16
    for (int k = 0; k < DOT_CHAINS; k++) acc[k] = _mm512_set1_ps((float)k);
    for (long i = 0; i < iterations; i++) {
#pragma GCC unroll 16
        for (int k = 0; k < DOT_CHAINS; k++) acc[k] = _mm512_dpbf16_ps(acc[k], x, x);
    }
    __m512 s = acc[0];
#pragma GCC unroll 16
    for (int k = 1; k < DOT_CHAINS; k++) s = _mm512_add_ps(s, acc[k]);
    return _mm512_reduce_add_ps(s);
}
#endif

/* ---- streaming read: sums a slice of the buffer ---------------------------- */

/* Eight independent sums of whole cache lines: enough loads in flight that
 * the memory system, not the add latency, sets the pace. */
static float read_slice(const float *p, size_t n) {
#ifdef __AVX512F__
    enum { LANES = 16 };
    __m512 s[8];
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) s[k] = _mm512_setzero_ps();
    for (size_t i = 0; i + 8 * LANES <= n; i += 8 * LANES) {
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) s[k] = _mm512_add_ps(s[k], _mm512_load_ps(p + i + k * LANES));
    }
#pragma GCC unroll 8
    for (int k = 1; k < 8; k++) s[0] = _mm512_add_ps(s[0], s[k]);
    return _mm512_reduce_add_ps(s[0]);
#else
    enum { LANES = 8 };
    __m256 s[8];
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) s[k] = _mm256_setzero_ps();
    for (size_t i = 0; i + 8 * LANES <= n; i += 8 * LANES) {
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) s[k] = _mm256_add_ps(s[k], _mm256_load_ps(p + i + k * LANES));
    }
#pragma GCC unroll 8
    for (int k = 1; k < 8; k++) s[0] = _mm256_add_ps(s[0], s[k]);
    float out[8], total = 0;
    _mm256_storeu_ps(out, s[0]);
    for (int j = 0; j < 8; j++) total += out[j];
    return total;
#endif
}

/* ---- running a kernel on N threads at once --------------------------------- */

typedef enum { KERNEL_FMA, KERNEL_BF16_DOT, KERNEL_READ } kernel_kind;

typedef struct {
    kernel_kind kind;
    long iterations;          /* compute kernels */
    const float *data;        /* read: this thread's slice */
    size_t count;
    int index;
    pthread_barrier_t *start;
    double t0, t1;
} job;

static void *run_job(void *arg) {
    job *j = arg;
    pthread_barrier_wait(j->start);
    j->t0 = now_s();
    float r = 0;
    switch (j->kind) {
    case KERNEL_FMA: r = fma_rounds(j->iterations); break;
#ifdef __AVX512BF16__
    case KERNEL_BF16_DOT: r = bf16_dot_rounds(j->iterations); break;
#else
    case KERNEL_BF16_DOT: break;
#endif
    case KERNEL_READ: r = read_slice(j->data, j->count); break;
    }
    j->t1 = now_s();
    sink[j->index] = r;
    return NULL;
}

/* Runs the kernel once on `threads` threads, each with the same iteration
 * count or its share of the buffer; returns the wall time from the first
 * start to the last finish. */
static double run_once(kernel_kind kind, int threads, long iterations, const float *buffer, size_t count) {
    pthread_t tid[MAX_THREADS];
    job jobs[MAX_THREADS];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)threads);
    size_t share = count / (size_t)threads / 128 * 128;   /* whole 8-line blocks */
    for (int t = 0; t < threads; t++) {
        jobs[t] = (job){kind, iterations, buffer + (size_t)t * share, share, t, &start, 0, 0};
        if (pthread_create(&tid[t], NULL, run_job, &jobs[t]) != 0) {
            fprintf(stderr, "roofline: pthread_create failed\n");
            exit(1);
        }
    }
    double first = 0, last = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(tid[t], NULL);
        if (t == 0 || jobs[t].t0 < first) first = jobs[t].t0;
        if (t == 0 || jobs[t].t1 > last) last = jobs[t].t1;
    }
    pthread_barrier_destroy(&start);
    return last - first;
}

/* Best rate of a compute kernel (GFLOP/s): the iteration count is sized so
 * that one run takes about REPEAT_SECONDS, then runs repeat for FIGURE_SECONDS. */
static double compute_peak(kernel_kind kind, int threads, double flops_per_round) {
    long iterations = 1 << 16;
    while (run_once(kind, 1, iterations, NULL, 0) < REPEAT_SECONDS / 8) iterations *= 2;
    double per_run = run_once(kind, 1, iterations, NULL, 0);
    iterations = (long)((double)iterations * REPEAT_SECONDS / per_run) + 1;
    double best = 0, start = now_s();
    do {
        double s = run_once(kind, threads, iterations, NULL, 0);
        double rate = flops_per_round * (double)iterations * threads / s / 1e9;
        if (rate > best) best = rate;
    } while (now_s() - start < FIGURE_SECONDS);
    return best;
}

/* Best read bandwidth (GB/s) of whole passes over the buffer. */
static double read_peak(const float *buffer, size_t count, int threads) {
    double best = 0, start = now_s();
    do {
        double s = run_once(KERNEL_READ, threads, 0, buffer, count);
        double rate = (double)(count / (size_t)threads / 128 * 128 * (size_t)threads) * sizeof(float) / s / 1e9;
        if (rate > best) best = rate;
    } while (now_s() - start < FIGURE_SECONDS);
    return best;
}

static void cpu_name(char *out, size_t size) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    snprintf(out, size, "unknown CPU");
    while (f && fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && colon) {
            snprintf(out, size, "%s", colon + 2);
            out[strcspn(out, "\n")] = 0;
            break;
        }
    }
    if (f) fclose(f);
}

int main(int argc, char **argv) {
    (void)argv;
    if (argc > 1) {
        fprintf(stderr, "usage: roofline (no options)\n");
        return 2;
    }
    double fma[MAX_THREADS] = {0}, dot[MAX_THREADS] = {0}, bw[MAX_THREADS] = {0};
    for (int t = 1; t <= MAX_THREADS; t++) {
        fma[t - 1] = compute_peak(KERNEL_FMA, t, FMA_FLOPS_PER_ROUND);
#ifdef __AVX512BF16__
        dot[t - 1] = compute_peak(KERNEL_BF16_DOT, t, DOT_FLOPS_PER_ROUND);
#endif
    }
    size_t count = READ_BYTES / sizeof(float);
    float *buffer = aligned_alloc(64, READ_BYTES);
    if (!buffer) {
        fprintf(stderr, "roofline: cannot allocate %zu bytes\n", READ_BYTES);
        return 1;
    }
    /* Every page different: pages with equal bytes may be merged by the
     * host (KSM), and the "streamed" buffer would then come from cache. */
    uint32_t seed = 1;
    for (size_t i = 0; i < count; i++) buffer[i] = (float)((seed = seed * 1664525u + 1013904223u) >> 8);
    for (int t = 1; t <= MAX_THREADS; t++) bw[t - 1] = read_peak(buffer, count, t);
    free(buffer);

    char cpu[256];
    cpu_name(cpu, sizeof cpu);
    printf("roofline of this machine (%s): best of %.2f s runs over %.1f s per figure\n", cpu, REPEAT_SECONDS,
           FIGURE_SECONDS);
    char fma_label[64];
    snprintf(fma_label, sizeof fma_label, "%s peak (%d chains)", FMA_NAME, (int)FMA_CHAINS);
    printf("  %-38s 1 thread %8.1f   2 threads %8.1f  GFLOP/s\n", fma_label, fma[0], fma[1]);
#ifdef __AVX512BF16__
    printf("  %-38s 1 thread %8.1f   2 threads %8.1f  GFLOP/s\n", "AVX512-BF16 vdpbf16ps peak (64/instr)", dot[0],
           dot[1]);
#else
    printf("  %-38s n/a (no AVX512-BF16)\n", "AVX512-BF16 vdpbf16ps peak");
#endif
    printf("  %-38s 1 thread %8.1f   2 threads %8.1f  GB/s\n", "read bandwidth (1 GiB buffer)", bw[0], bw[1]);
    printf("roofline-result %.3f %.3f %.3f %.3f %.3f %.3f\n", fma[0], fma[1], dot[0], dot[1], bw[0], bw[1]);
    return 0;
}
