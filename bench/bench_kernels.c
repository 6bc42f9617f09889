/* Times each fused kernel (runtime/fused.c) against its composed reference
 * (runtime/fused_ref.c) at the router's shapes: hidden 1024, 16 query / 8
 * kv heads of dim 128, intermediate 3072, prompts of 15 and 65 tokens.
 * Prints the median of RUNS timed calls after WARMUP untimed ones, and the
 * speed-up. Attention is also timed against an unfused version that uses
 * sgemm for its two products, the way the unfused graph's MatMul nodes run.
 *
 *   make bench    (or build/bench_kernels [runs]) */
#include <cblas.h>
#include <malloc.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/fusec_kernels.h"
#include "runtime/fused_ref.h"

enum { WARMUP = 20, DEFAULT_RUNS = 200 };

enum { HIDDEN = 1024, Q_HEADS = 16, KV_HEADS = 8, HEAD_DIM = 128, INTERMEDIATE = 3072 };

static int runs = DEFAULT_RUNS;

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median wall time of one call of fn(ctx), in microseconds. */
static double median_us(void (*fn)(void *), void *ctx) {
    for (int i = 0; i < WARMUP; i++) fn(ctx);
    double *times = malloc((size_t)runs * sizeof(double));
    if (!times) return NAN;
    for (int i = 0; i < runs; i++) {
        double start = now_seconds();
        fn(ctx);
        times[i] = now_seconds() - start;
    }
    qsort(times, (size_t)runs, sizeof(double), compare_doubles);
    double median = 1e6 * times[runs / 2];
    free(times);
    return median;
}

static void report(const char *name, int tokens, void (*fast)(void *), void (*ref)(void *),
                   void *ctx) {
    double fast_us = median_us(fast, ctx), ref_us = median_us(ref, ctx);
    printf("%-28s %4d %12.2f %12.2f %8.1fx\n", name, tokens, fast_us, ref_us, ref_us / fast_us);
}

static float *random_floats(int64_t count) {
    float *data = malloc((size_t)count * sizeof(float));
    if (!data) {
        fprintf(stderr, "bench_kernels: out of memory\n");
        exit(1);
    }
    for (int64_t i = 0; i < count; i++) data[i] = 2.0f * (float)rand() / (float)RAND_MAX - 1.0f;
    return data;
}

/* ==== contexts: one tensor set per benchmark ============================== */

typedef struct {
    int64_t rows, n;
    float *x, *scale, *bias, *y;
} norm_ctx;

static void rms_fast(void *p) {
    norm_ctx *c = p;
    fu_rt_rms_norm_f32(c->x, c->scale, c->y, c->rows, c->n, 1e-6f);
}
static void rms_ref(void *p) {
    norm_ctx *c = p;
    fu_ref_rms_norm_f32(c->x, c->scale, c->y, c->rows, c->n, 1e-6f);
}
static void layer_fast(void *p) {
    norm_ctx *c = p;
    fu_rt_layer_norm_f32(c->x, c->scale, c->bias, c->y, c->rows, c->n, 1e-5f);
}
static void layer_ref(void *p) {
    norm_ctx *c = p;
    fu_ref_layer_norm_f32(c->x, c->scale, c->bias, c->y, c->rows, c->n, 1e-5f);
}

/* q straight out of its projection, [1, S, 16, 128], rotated into the
 * [1, 16, S, 128] layout attention reads. */
typedef struct {
    int64_t seq;
    float *x, *y, *inv_freq;
} rope_ctx;

#define ROPE_ARGS(fn, c)                                                                        \
    fn((c)->x, (c)->y, 1, Q_HEADS, (c)->seq, HEAD_DIM, HEAD_DIM, (c)->seq * Q_HEADS * HEAD_DIM,  \
       HEAD_DIM, Q_HEADS * HEAD_DIM, Q_HEADS * (c)->seq * HEAD_DIM, (c)->seq * HEAD_DIM,         \
       HEAD_DIM, FU_RT_ROPE_ROTATE_HALF, NULL, 0, 0, NULL, NULL, 0, (c)->inv_freq, 1.0f)
static void rope_fast(void *p) { ROPE_ARGS(fu_rt_rope_f32, (rope_ctx *)p); }
static void rope_ref(void *p) { ROPE_ARGS(fu_ref_rope_f32, (rope_ctx *)p); }

/* causal self-attention over a prompt, BHSD */
typedef struct {
    int64_t seq;
    float *q, *k, *v, *out, *scores;
} attention_ctx;

#define ATTENTION_ARGS(fn, c)                                                                  \
    fn((c)->q, (c)->k, (c)->v, (c)->out, 1, Q_HEADS, KV_HEADS, (c)->seq, (c)->seq, HEAD_DIM,    \
       HEAD_DIM, Q_HEADS * (c)->seq * HEAD_DIM, (c)->seq * HEAD_DIM, HEAD_DIM,                  \
       KV_HEADS * (c)->seq * HEAD_DIM, (c)->seq * HEAD_DIM, HEAD_DIM,                           \
       KV_HEADS * (c)->seq * HEAD_DIM, (c)->seq * HEAD_DIM, HEAD_DIM,                           \
       Q_HEADS * (c)->seq * HEAD_DIM, (c)->seq * HEAD_DIM, HEAD_DIM,                            \
       1.0f / sqrtf((float)HEAD_DIM), 1, NULL, 0, 0, 0, NULL, NULL)
static void attention_fast(void *p) { ATTENTION_ARGS(fu_rt_attention_f32, (attention_ctx *)p); }
static void attention_ref(void *p) { ATTENTION_ARGS(fu_ref_attention_f32, (attention_ctx *)p); }

/* The unfused graph with BLAS matmuls: per head sgemm Q K^T, scale, causal
 * mask, softmax with expf, sgemm P V. */
static void attention_unfused_sgemm(void *p) {
    attention_ctx *c = p;
    int n = (int)c->seq, group = Q_HEADS / KV_HEADS;
    for (int h = 0; h < Q_HEADS; h++) {
        const float *q = c->q + (int64_t)h * n * HEAD_DIM;
        const float *k = c->k + (int64_t)(h / group) * n * HEAD_DIM;
        const float *v = c->v + (int64_t)(h / group) * n * HEAD_DIM;
        float *s = c->scores;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, HEAD_DIM,
                    1.0f / sqrtf((float)HEAD_DIM), q, HEAD_DIM, k, HEAD_DIM, 0.0f, s, n);
        for (int i = 0; i < n; i++) {
            float *row = s + i * n, max = -INFINITY, sum = 0.0f;
            for (int j = i + 1; j < n; j++) row[j] = -INFINITY;
            for (int j = 0; j < n; j++) max = row[j] > max ? row[j] : max;
            for (int j = 0; j < n; j++) sum += row[j] = expf(row[j] - max);
            for (int j = 0; j < n; j++) row[j] /= sum;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, HEAD_DIM, n, 1.0f, s, n, v,
                    HEAD_DIM, 0.0f, c->out + (int64_t)h * n * HEAD_DIM, HEAD_DIM);
    }
}

typedef struct {
    int64_t rows;
    float *gate, *up, *out;
} swiglu_ctx;

static void swiglu_fast(void *p) {
    swiglu_ctx *c = p;
    fu_rt_swiglu_f32(c->gate, c->up, c->out, c->rows, INTERMEDIATE, INTERMEDIATE, INTERMEDIATE,
                     INTERMEDIATE);
}
static void swiglu_ref(void *p) {
    swiglu_ctx *c = p;
    fu_ref_swiglu_f32(c->gate, c->up, c->out, c->rows, INTERMEDIATE, INTERMEDIATE, INTERMEDIATE,
                      INTERMEDIATE);
}

int main(int argc, char **argv) {
    if (argc > 1) runs = atoi(argv[1]) > 0 ? atoi(argv[1]) : DEFAULT_RUNS;
    /* The references malloc their intermediates on every call. Keep freed
     * memory in the heap so they are timed on warm pages, like the unfused
     * graph's planned arena, not on fresh mmap page faults. */
    mallopt(M_MMAP_THRESHOLD, 1 << 30);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    openblas_set_num_threads(1); /* the fused kernels run on one thread too */
    srand(1);
    printf("fused kernels vs composed references: median of %d runs, microseconds\n", runs);
    printf("%-28s %4s %12s %12s %9s\n", "kernel", "tok", "fused", "reference", "speed-up");
    const int token_counts[2] = {15, 65};
    for (int t = 0; t < 2; t++) {
        int64_t seq = token_counts[t];

        norm_ctx hidden_norm = {seq, HIDDEN, random_floats(seq * HIDDEN), random_floats(HIDDEN),
                                random_floats(HIDDEN), random_floats(seq * HIDDEN)};
        report("rms_norm [S,1024]", (int)seq, rms_fast, rms_ref, &hidden_norm);
        report("layer_norm [S,1024]", (int)seq, layer_fast, layer_ref, &hidden_norm);
        /* per-head q norm (Qwen3-style): rows = S * 16 of 128 */
        norm_ctx head_norm = {seq * Q_HEADS, HEAD_DIM, random_floats(seq * Q_HEADS * HEAD_DIM),
                              random_floats(HEAD_DIM), NULL,
                              random_floats(seq * Q_HEADS * HEAD_DIM)};
        report("rms_norm [S*16,128]", (int)seq, rms_fast, rms_ref, &head_norm);

        rope_ctx rope = {seq, random_floats(seq * Q_HEADS * HEAD_DIM),
                         random_floats(seq * Q_HEADS * HEAD_DIM), random_floats(HEAD_DIM / 2)};
        for (int i = 0; i < HEAD_DIM / 2; i++)
            rope.inv_freq[i] = powf(1e6f, -(float)(2 * i) / (float)HEAD_DIM);
        report("rope q [S,16,128]", (int)seq, rope_fast, rope_ref, &rope);

        attention_ctx attention = {seq, random_floats(Q_HEADS * seq * HEAD_DIM),
                                   random_floats(KV_HEADS * seq * HEAD_DIM),
                                   random_floats(KV_HEADS * seq * HEAD_DIM),
                                   random_floats(Q_HEADS * seq * HEAD_DIM),
                                   random_floats(seq * seq)};
        report("attention causal 16/8x128", (int)seq, attention_fast, attention_ref, &attention);
        report("  vs unfused with sgemm", (int)seq, attention_fast, attention_unfused_sgemm,
               &attention);

        swiglu_ctx swiglu = {seq, random_floats(seq * INTERMEDIATE),
                             random_floats(seq * INTERMEDIATE), random_floats(seq * INTERMEDIATE)};
        report("swiglu [S,3072]", (int)seq, swiglu_fast, swiglu_ref, &swiglu);

        free(hidden_norm.x), free(hidden_norm.scale), free(hidden_norm.bias), free(hidden_norm.y);
        free(head_norm.x), free(head_norm.scale), free(head_norm.y);
        free(rope.x), free(rope.y), free(rope.inv_freq);
        free(attention.q), free(attention.k), free(attention.v), free(attention.out);
        free(attention.scores);
        free(swiglu.gate), free(swiglu.up), free(swiglu.out);
    }
    return 0;
}
