/* ThreadSanitizer test (built with -fsanitize=thread by the Makefile, run
 * by tests/cli/test_tsan.sh):
 *   1. two different models, each loaded (JIT) and run in its own thread,
 *      at the same time, 20 runs each;
 *   2. two threads loading one model with the AOT back end into one empty
 *      cache at the same time (two concurrent gcc builds of one key), then
 *      running it.
 * Every run's outputs must equal a reference computed first on the main
 * thread; TSan reports any data race (and fails the process with its
 * exitcode). Usage: tsan_threads SCRATCH_DIR */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/fusec.h"

static const char *model_a =
    "{\"ir_version\": 1, \"name\": \"a\",\n"
    " \"inputs\": [{\"name\": \"x\", \"dtype\": \"float32\", \"shape\": [2, 3]}],\n"
    " \"outputs\": [{\"name\": \"y\", \"dtype\": \"float32\", \"shape\": [2, 2]}],\n"
    " \"initializers\": [{\"name\": \"b\", \"dtype\": \"float32\", \"shape\": [3], \"data\": [0.5, -1, 0.25]},\n"
    "   {\"name\": \"W\", \"dtype\": \"float32\", \"shape\": [3, 2], \"data\": [1, 2, 3, 4, 5, 6]}],\n"
    " \"nodes\": [{\"name\": \"add\", \"op\": \"Add\", \"inputs\": [\"x\", \"b\"], \"outputs\": [\"s\"]},\n"
    "   {\"name\": \"relu\", \"op\": \"Relu\", \"inputs\": [\"s\"], \"outputs\": [\"r\"]},\n"
    "   {\"name\": \"mm\", \"op\": \"MatMul\", \"inputs\": [\"r\", \"W\"], \"outputs\": [\"y\"]}]}\n";

static const char *model_b =
    "{\"ir_version\": 1, \"name\": \"b\",\n"
    " \"inputs\": [{\"name\": \"x\", \"dtype\": \"float32\", \"shape\": [2, 3]}],\n"
    " \"outputs\": [{\"name\": \"y\", \"dtype\": \"float32\", \"shape\": [2, 3]}],\n"
    " \"initializers\": [{\"name\": \"g\", \"dtype\": \"float32\", \"shape\": [3], \"data\": [1, 0.5, 2]}],\n"
    " \"nodes\": [{\"name\": \"sm\", \"op\": \"Softmax\", \"inputs\": [\"x\"], \"outputs\": [\"p\"], \"attrs\": {\"axis\": -1}},\n"
    "   {\"name\": \"n\", \"op\": \"RMSNormalization\", \"inputs\": [\"p\", \"g\"], \"outputs\": [\"y\"],\n"
    "    \"attrs\": {\"axis\": -1, \"epsilon\": 1e-6}}]}\n";

static char path_a[512], path_b[512], cache[512];
static const float x[6] = {1, 2, 3, -4, 0.5f, 1};
static const int64_t x_shape[2] = {2, 3};
static float ref_a[4], ref_b[6];

typedef struct {
    const char *path, *backend;
    const float *ref;
    int n_out, runs;
    int failed;
    char msg[512];
} job;

/* Loads, runs `runs` times, compares with ref (a NULL ref: fills it). */
static void *work(void *arg) {
    job *j = arg;
    fusec_options o = {.backend = j->backend, .cache_dir = cache};
    fusec_model *m = fusec_load(j->path, &o, j->msg, sizeof j->msg);
    if (!m) {
        j->failed = 1;
        return NULL;
    }
    for (int r = 0; r < j->runs && !j->failed; r++) {
        const void *out;
        fusec_dtype dt;
        int rank;
        int64_t shape[8];
        if (fusec_set_input(m, "x", FUSEC_FLOAT32, 2, x_shape, x) || fusec_run(m) ||
            fusec_get_output(m, "y", &dt, &rank, shape, &out)) {
            snprintf(j->msg, sizeof j->msg, "%s: %s", j->path, fusec_last_error(m));
            j->failed = 1;
        } else if (memcmp(out, j->ref, sizeof(float) * (size_t)j->n_out) != 0) {
            snprintf(j->msg, sizeof j->msg, "%s (%s): run %d differs from the reference", j->path, j->backend, r);
            j->failed = 1;
        }
    }
    fusec_free(m);
    return NULL;
}

static int reference(const char *path, float *ref, int n) {
    char msg[512];
    fusec_model *m = fusec_load(path, NULL, msg, sizeof msg);
    const void *out;
    fusec_dtype dt;
    int rank;
    int64_t shape[8];
    if (!m || fusec_set_input(m, "x", FUSEC_FLOAT32, 2, x_shape, x) || fusec_run(m) ||
        fusec_get_output(m, "y", &dt, &rank, shape, &out)) {
        fprintf(stderr, "reference %s: %s\n", path, m ? fusec_last_error(m) : msg);
        return -1;
    }
    memcpy(ref, out, sizeof(float) * (size_t)n);
    fusec_free(m);
    return 0;
}

static int run_pair(const char *what, job *a, job *b) {
    pthread_t ta, tb;
    if (pthread_create(&ta, NULL, work, a) || pthread_create(&tb, NULL, work, b)) {
        fprintf(stderr, "%s: pthread_create failed\n", what);
        return 1;
    }
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    int bad = 0;
    for (job *j = a; j; j = j == a ? b : NULL)
        if (j->failed) fprintf(stderr, "FAIL %s: %s\n", what, j->msg), bad = 1;
    if (!bad) printf("ok   %s\n", what);
    return bad;
}

static int write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        perror(path);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s SCRATCH_DIR\n", argv[0]);
        return 2;
    }
    snprintf(path_a, sizeof path_a, "%s/a.json", argv[1]);
    snprintf(path_b, sizeof path_b, "%s/b.json", argv[1]);
    snprintf(cache, sizeof cache, "%s/cache", argv[1]);
    if (write_file(path_a, model_a) || write_file(path_b, model_b)) return 1;
    if (reference(path_a, ref_a, 4) || reference(path_b, ref_b, 6)) return 1;

    int bad = 0;
    job a = {path_a, "jit", ref_a, 4, 20, 0, ""}, b = {path_b, "jit", ref_b, 6, 20, 0, ""};
    bad |= run_pair("two models (JIT) in two threads", &a, &b);
    job c = {path_a, "aot", ref_a, 4, 5, 0, ""}, d = {path_a, "aot", ref_a, 4, 5, 0, ""};
    bad |= run_pair("two concurrent AOT builds of one model into one empty cache", &c, &d);
    return bad;
}
