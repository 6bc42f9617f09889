/* Speed and memory of the router (examples/router) through fusec's C API,
 * side by side with ONNX Runtime, against the machine's roofline.
 * qwen3-0.6b with float32 and with bfloat16 weights, prompts of 15 and 65
 * tokens (real eval cases). Three parts:
 *
 * 1. The roofline: build/roofline (bench/roofline.c) measures the FMA and
 *    BF16-dot peaks and the read bandwidth on 1 and 2 threads.
 *
 * 2. Side by side with ONNX Runtime 1.30 (onnxruntime-node under build/ort,
 *    bench/ort_lane.js, the model as ONNX: scripts/ir_to_onnx.py), on 1 and
 *    on 2 threads. Lanes: ORT float32; fusec fast/aot with float32 weights,
 *    with bfloat16 weights, and with float32 weights and
 *    fusec_options.precision = "bf16". Each lane is one long-lived process
 *    per thread count (this program re-executed with --serve, or node) that
 *    loads the model once and answers "run CASE N" over a pipe with its
 *    times and logits. The parent runs interleaved rounds: in each round
 *    every lane (in rotating order) runs each length N times, so drift on
 *    the machine hits all lanes alike. The 1-thread group and the 2-thread
 *    group run one after the other, never all at once (ORT copies the
 *    2.4 GB of weights into its memory). Per lane and length: median and
 *    minimum, speed against ORT (ORT median / fusec median, > 1: fusec
 *    faster), load time (ORT session creation; fusec cached AOT load), share
 *    of the roofline, agent/role decisions; then PASS/FAIL against the
 *    targets. A lane whose model does not load (e.g. a precision the
 *    runtime does not have yet) is reported "n/a" with the error.
 *
 * 3. The lane table: every lane bare/fast x jit/aot, both weight dtypes, each
 *    in a fresh child process (--lane), with
 *   jit compile  fusec_load with backend jit (passes, emission, tcc, weights)
 *   aot cold     fusec_load with backend aot into an empty cache directory
 *   aot cached   a second fusec_load from that same cache directory
 *   load         time until the model can run: jit = the jit fusec_load (JIT
 *                compiles on every load), aot = the cached fusec_load
 *   1st fwd      the untimed warm-up run at 15 tokens (touches the mapped weights)
 *   fwd@15/65    median of the timed forward runs after one warm-up
 *   min@15/65    the fastest of those runs (shows how much other load skewed the median)
 *   peak RSS     VmHWM of a process that loads and runs only that lane
 *    VmHWM is read by the child itself: wait4's ru_maxrss would also count
 *    the gcc that an AOT cold build spawns.
 *
 * It is a report, not a test: the checks print PASS, FAIL or n/a and the
 * exit status is 0 (2 only for a usage error or a missing cases file).
 *
 *   make bench   (or build/bench_router [options], see --help)
 *   build/bench_router --lane PROFILE/BACKEND --model MODEL.json [--runs N]   (one table lane)
 *   build/bench_router --serve PROFILE/BACKEND --model MODEL.json [--precision P] [--cache-dir DIR]
 *                                                  (one side-by-side lane, requests on stdin) */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "api/fusec.h"

#define PYTHON "/usr/bin/python3"
#define N_LOGITS 10
#define N_AGENTS 7
#define SHORT_CASE "math_direct"        /* 15 tokens */
#define LONG_CASE "long_system_prompt"  /* 65 tokens */
#define N_LANES 4
#define N_LENGTHS 2
#define MAX_THREADS 2                   /* the roofline measures 1 and 2 threads */

/* Timed runs after the warm-up in the lane table: bare forwards of the 0.6B
 * model take about a second, so bare lanes get fewer to keep `make bench`
 * within about five minutes. Side by side: rounds x runs per lane and length. */
enum { DEFAULT_FAST_RUNS = 5, DEFAULT_BARE_RUNS = 3, DEFAULT_ROUNDS = 5, DEFAULT_ROUND_RUNS = 3 };

/* Limits the lane table's checks hold the figures to (issue 4, "Speed and memory"). */
#define MAX_RSS_OVER_MAPPED 1.2
#define MAX_JIT_OVER_AOT 1.25
#define MAX_AOT_CACHED_CODE_MS 100.0   /* a cached AOT load, before the weights' mapping */
#define MAX_JIT_COMPILE_MS 500.0       /* a JIT load's compile, the packed weights already cached */

extern char **environ;

typedef struct {
    const char *label;    /* weights dtype, as printed */
    const char *dir;      /* under build/router-models/ */
    const char *dtype;    /* gen_router.py --dtype */
} model_variant;

static const model_variant variants[] = {
    {"float32", "qwen3-0.6b", "float32"},
    {"bfloat16", "qwen3-0.6b-bf16", "bfloat16"},
};
#define N_VARIANTS (int)(sizeof variants / sizeof variants[0])
enum { VARIANT_F32, VARIANT_BF16 };

static const char *const lane_names[N_LANES] = {"bare/jit", "bare/aot", "fast/jit", "fast/aot"};

typedef struct {
    char id[64];
    int token_count;
    int64_t *input_ids;
} bench_case;

/* What one lane-table child reports. Times in milliseconds, -1 when not measured. */
typedef struct {
    int ok;
    double cold_ms;      /* first load, into an empty cache: compile (tcc or gcc) and pack the weights */
    double load_ms;      /* second load, from that cache: the time until the model can run */
    double code_ms;      /* of which the code: JIT compile, or finding and loading the AOT library */
    double first_forward_ms;
    double forward_ms[N_LENGTHS];       /* median */
    double fastest_forward_ms[N_LENGTHS]; /* minimum: less sensitive to other work on the machine */
    int runs;
    int cache_rebuilt;   /* aot: the cached load built again (the runtime library changed) */
    long peak_rss_kb;
    double packed_bytes; /* packed-* weight files the model made in its cache directory */
    int agent[N_LENGTHS], role[N_LENGTHS];
} lane_result;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts v in place and returns its median. */
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof(double), compare_doubles);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* The repository root: two levels above this executable (build/bench_router). */
static void find_root(char *root, size_t size) {
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    snprintf(root, size, ".");
    if (n <= 0) return;
    exe[n] = 0;
    for (int up = 0; up < 2; up++) {
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
    }
    char probe[PATH_MAX + 64];
    snprintf(probe, sizeof probe, "%s/fixtures/router/cases.json", exe);
    if (access(probe, R_OK) == 0) snprintf(root, size, "%s", exe);
}

/* Reads case `id` (its input_ids) from the eval cases file. */
static int load_case(const char *cases_path, const char *id, bench_case *out) {
    json_object *root = json_object_from_file(cases_path), *list, *ids;
    if (!root) {
        fprintf(stderr, "bench_router: %s: %s\n", cases_path, json_util_get_last_err());
        return -1;
    }
    int rc = -1;
    if (json_object_object_get_ex(root, "cases", &list) && json_object_is_type(list, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(list); i++) {
            json_object *c = json_object_array_get_idx(list, i), *cid;
            if (!json_object_object_get_ex(c, "id", &cid) || strcmp(json_object_get_string(cid), id) != 0 ||
                !json_object_object_get_ex(c, "input_ids", &ids) || !json_object_is_type(ids, json_type_array))
                continue;
            snprintf(out->id, sizeof out->id, "%s", id);
            out->token_count = (int)json_object_array_length(ids);
            out->input_ids = calloc((size_t)out->token_count, sizeof(int64_t));
            if (!out->input_ids) break;
            for (int t = 0; t < out->token_count; t++)
                out->input_ids[t] = json_object_get_int64(json_object_array_get_idx(ids, (size_t)t));
            rc = 0;
            break;
        }
    }
    if (rc) fprintf(stderr, "bench_router: %s: no case '%s' with input_ids\n", cases_path, id);
    json_object_put(root);
    return rc;
}

static long peak_rss_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1) break;
    fclose(f);
    return kb;
}

/* Shared libraries in an AOT cache directory: one per distinct build. */
static int count_libraries(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        n += len > 3 && strcmp(e->d_name + len - 3, ".so") == 0;
    }
    closedir(d);
    return n;
}

/* Bytes of the packed weight files ("packed-*") in a cache directory: a
 * copy of the weights repacked at load, which the model maps beside the
 * weights file. 0 when there is none. */
static double packed_file_bytes(const char *dir) {
    DIR *d = opendir(dir);
    double bytes = 0;
    if (!d) return 0;
    for (struct dirent *e; (e = readdir(d));) {
        char path[PATH_MAX + 300];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (strncmp(e->d_name, "packed-", 7) == 0 && stat(path, &st) == 0 && S_ISREG(st.st_mode))
            bytes += (double)st.st_size;
    }
    closedir(d);
    return bytes;
}

/* The system load average, to show whether other work shared the CPUs. */
static void print_load_average(const char *when) {
    FILE *f = fopen("/proc/loadavg", "r");
    double one, five;
    if (f && fscanf(f, "%lf %lf", &one, &five) == 2)
        printf("load average %s: %.2f (1 min), %.2f (5 min)\n", when, one, five);
    if (f) fclose(f);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void remove_tree(const char *dir) { nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS); }

/* A fresh temporary cache directory under build/; "" on failure. */
static int make_cache_dir(const char *root, char *dir, size_t size) {
    snprintf(dir, size, "%s/build/bench-cache-XXXXXX", root);
    if (!mkdtemp(dir)) {
        fprintf(stderr, "bench_router: mkdtemp %s: %s\n", dir, strerror(errno));
        dir[0] = 0;
        return -1;
    }
    return 0;
}

/* First index wins ties, as in router eval. */
static int argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

static void decide(const float *logits, int *agent, int *role) {
    *agent = argmax(logits, N_AGENTS);
    *role = argmax(logits + N_AGENTS, N_LOGITS - N_AGENTS);
}

/* One forward: bind the case, run, read and check the logits (copied to
 * `logits`). Returns its time in ms, or -1 with the reason in err. */
static double forward(fusec_model *m, const bench_case *c, float *logits, char *err, size_t errlen) {
    int64_t shape[8] = {1, c->token_count};
    fusec_dtype dtype;
    int rank;
    const void *data;
    double start = now_ms();
    if (fusec_set_input(m, "input_ids", FUSEC_INT64, 2, shape, c->input_ids) || fusec_run(m) ||
        fusec_get_output(m, "logits", &dtype, &rank, shape, &data)) {
        snprintf(err, errlen, "%s: %s", c->id, fusec_last_error(m));
        return -1;
    }
    double elapsed = now_ms() - start;
    if (dtype != FUSEC_FLOAT32 || rank < 1 || shape[rank - 1] != N_LOGITS) {
        snprintf(err, errlen, "%s: logits are not float32 [.., %d]", c->id, N_LOGITS);
        return -1;
    }
    memcpy(logits, data, N_LOGITS * sizeof(float));
    for (int i = 0; i < N_LOGITS; i++)
        if (!isfinite(logits[i])) {
            snprintf(err, errlen, "%s: non-finite logit %d", c->id, i);
            return -1;
        }
    return elapsed;
}

static fusec_model *timed_load(const char *model_path, const fusec_options *fo, double *ms, char *err, size_t errlen) {
    double start = now_ms();
    fusec_model *m = fusec_load(model_path, fo, err, errlen);
    *ms = now_ms() - start;
    return m;
}

/* ---- one lane of the table, in the child ------------------------------------- */

/* Loads the model on one lane, times the forwards and prints one result line
 * for the parent: "lane-result" and the fields of lane_result. */
static int lane_main(const char *root, const char *lane, const char *model_path, int runs) {
    char profile[8], backend[8];
    if (sscanf(lane, "%7[a-z]/%7[a-z]", profile, backend) != 2) {
        fprintf(stderr, "bench_router: --lane wants PROFILE/BACKEND, e.g. fast/jit\n");
        return 2;
    }
    char cases_path[PATH_MAX + 64], err[1024];
    snprintf(cases_path, sizeof cases_path, "%s/fixtures/router/cases.json", root);
    bench_case cases[N_LENGTHS] = {{{0}, 0, NULL}, {{0}, 0, NULL}};
    lane_result r = {.runs = runs};
    fusec_model *m = NULL;
    double *times = calloc((size_t)runs, sizeof(double));
    float logits[N_LOGITS];
    char cache_dir[PATH_MAX + 64] = "";
    int status = 1;
    if (!times || load_case(cases_path, SHORT_CASE, &cases[0]) || load_case(cases_path, LONG_CASE, &cases[1]))
        goto done;

    /* a fresh cache directory on every lane, JIT too, so a packed weight
     * file found there afterwards is this model's */
    if (make_cache_dir(root, cache_dir, sizeof cache_dir)) goto done;
    fusec_options fo = {.profile = profile, .backend = backend, .cache_dir = cache_dir};
    if (!(m = timed_load(model_path, &fo, &r.cold_ms, err, sizeof err))) goto failed;
    fusec_free(m);
    if (!(m = timed_load(model_path, &fo, &r.load_ms, err, sizeof err))) goto failed;
    fusec_load_info info;
    fusec_get_load_info(m, &info);
    r.code_ms = info.code_ms;
    r.cache_rebuilt = strcmp(backend, "aot") == 0 && count_libraries(cache_dir) != 1;

    for (int len = 0; len < N_LENGTHS; len++) {
        double warm_up = forward(m, &cases[len], logits, err, sizeof err);
        if (warm_up < 0) goto failed;
        if (len == 0) r.first_forward_ms = warm_up;
        for (int i = 0; i < runs; i++)
            if ((times[i] = forward(m, &cases[len], logits, err, sizeof err)) < 0) goto failed;
        decide(logits, &r.agent[len], &r.role[len]);
        r.forward_ms[len] = median(times, runs);
        r.fastest_forward_ms[len] = times[0];
    }
    r.peak_rss_kb = peak_rss_kb();
    r.packed_bytes = packed_file_bytes(cache_dir);
    printf("lane-result %.3f %.3f %.3f %.3f %.3f %.3f %.3f %.3f %.3f %d %d %ld %.0f %d %d %d %d\n",
           r.cold_ms, r.load_ms, r.code_ms, r.load_ms, r.first_forward_ms, r.forward_ms[0],
           r.forward_ms[1], r.fastest_forward_ms[0], r.fastest_forward_ms[1], r.runs, r.cache_rebuilt,
           r.peak_rss_kb, r.packed_bytes, r.agent[0], r.role[0], r.agent[1], r.role[1]);
    status = 0;
    goto done;
failed:
    fprintf(stderr, "bench_router: %s\n", err);
done:
    fusec_free(m);
    if (cache_dir[0]) remove_tree(cache_dir);
    for (int len = 0; len < N_LENGTHS; len++) free(cases[len].input_ids);
    free(times);
    return status;
}

/* ---- one side-by-side lane, in the child: requests over stdin ------------------ */

/* The protocol bench/ort_lane.js speaks too. On start "ready LOAD_MS" (the
 * cached AOT load: a first load fills the cache) or "error TEXT";
 * then one answer line per request line:
 *   run CASE_ID N  ->  result N T1 .. TN logits L0 .. L9   (times in ms)
 *   quit           ->  bye PEAK_RSS_KB */
static void reply_error(const char *text) {
    printf("error ");
    for (const char *p = text; *p; p++) putchar(*p == '\n' ? ' ' : *p);
    printf("\n");
}

static int serve_main(const char *root, const char *lane, const char *model_path, const char *precision,
                      const char *cache_dir_arg) {
    char profile[8], backend[8];
    if (sscanf(lane, "%7[a-z]/%7[a-z]", profile, backend) != 2) {
        fprintf(stderr, "bench_router: --serve wants PROFILE/BACKEND, e.g. fast/aot\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    char cases_path[PATH_MAX + 64], cache_dir[PATH_MAX + 64] = "", err[1024];
    snprintf(cases_path, sizeof cases_path, "%s/fixtures/router/cases.json", root);
    bench_case cases[N_LENGTHS] = {{{0}, 0, NULL}, {{0}, 0, NULL}};
    if (load_case(cases_path, SHORT_CASE, &cases[0]) || load_case(cases_path, LONG_CASE, &cases[1])) {
        reply_error("cannot read the cases file");
        return 1;
    }
    int own_cache = !cache_dir_arg;
    if (own_cache && make_cache_dir(root, cache_dir, sizeof cache_dir)) {
        reply_error("cannot make a cache directory");
        return 1;
    }
    if (!own_cache) snprintf(cache_dir, sizeof cache_dir, "%s", cache_dir_arg);

    fusec_options fo = {.profile = profile, .backend = backend, .cache_dir = cache_dir, .precision = precision};
    double first_ms = 0, load_ms = 0;
    int status = 1;
    char *line = NULL;
    size_t line_size = 0;
    double *times = NULL;
    fusec_model *m = timed_load(model_path, &fo, &first_ms, err, sizeof err);
    if (m) {   /* time the load the user sees once the cache is warm */
        fusec_free(m);
        m = timed_load(model_path, &fo, &load_ms, err, sizeof err);
    }
    if (!m) {
        reply_error(err);
        goto done;
    }
    printf("ready %.3f\n", load_ms);
    while (getline(&line, &line_size, stdin) > 0) {
        char id[64];
        int n;
        if (strncmp(line, "quit", 4) == 0) {
            printf("bye %ld\n", peak_rss_kb());
            status = 0;
            break;
        }
        const bench_case *c = NULL;
        if (sscanf(line, "run %63s %d", id, &n) == 2 && n >= 1 && n <= 1000)
            for (int len = 0; len < N_LENGTHS; len++)
                if (strcmp(cases[len].id, id) == 0) c = &cases[len];
        if (!c) {
            reply_error("bad request");
            break;
        }
        float logits[N_LOGITS];
        free(times);
        if (!(times = calloc((size_t)n, sizeof(double)))) {
            reply_error("out of memory");
            break;
        }
        int i = 0;
        while (i < n && (times[i] = forward(m, c, logits, err, sizeof err)) >= 0) i++;
        if (i < n) {
            reply_error(err);
            break;
        }
        printf("result %d", n);
        for (i = 0; i < n; i++) printf(" %.3f", times[i]);
        printf(" logits");
        for (i = 0; i < N_LOGITS; i++) printf(" %.9g", logits[i]);
        printf("\n");
    }
done:
    fusec_free(m);
    free(line);
    free(times);
    if (own_cache) remove_tree(cache_dir);
    for (int len = 0; len < N_LENGTHS; len++) free(cases[len].input_ids);
    return status;
}

/* ---- the parent: models ------------------------------------------------------- */

static int wait_child(pid_t pid, int *status) {
    while (waitpid(pid, status, 0) < 0)
        if (errno != EINTR) {
            fprintf(stderr, "bench_router: waitpid: %s\n", strerror(errno));
            return -1;
        }
    return 0;
}

/* Runs argv (argv[0] a path) to completion; 0 when it exits with status 0. */
static int run_program(char *const argv[]) {
    fflush(stdout);
    pid_t pid;
    int status, rc = posix_spawn(&pid, argv[0], NULL, NULL, argv, environ);
    if (rc) {
        fprintf(stderr, "bench_router: cannot run %s: %s\n", argv[0], strerror(rc));
        return -1;
    }
    if (wait_child(pid, &status)) return -1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* Makes sure the variant's model exists: gen_router.py generates a missing
 * one (about 20 s; it writes model.onnx too). The float32 model also needs
 * model.onnx for ONNX Runtime: models generated before gen_router.py wrote
 * one get it from scripts/ir_to_onnx.py (the weights are not touched). */
static int prepare_model(const char *root, const model_variant *v, const char *dir) {
    char model[PATH_MAX + 96], weights[PATH_MAX + 96], onnx[PATH_MAX + 96], script[PATH_MAX + 64];
    snprintf(model, sizeof model, "%s/model.json", dir);
    snprintf(weights, sizeof weights, "%s/model.safetensors", dir);
    snprintf(onnx, sizeof onnx, "%s/model.onnx", dir);
    if (access(model, R_OK) != 0 || access(weights, R_OK) != 0) {
        snprintf(script, sizeof script, "%s/examples/router/gen_router.py", root);
        char *argv[] = {PYTHON, script, "--config", "qwen3-0.6b", "--dtype", (char *)v->dtype,
                        "--out", (char *)dir, NULL};
        printf("generating the qwen3-0.6b %s router under %s\n", v->label, dir);
        if (run_program(argv)) {
            fprintf(stderr, "bench_router: gen_router.py failed for %s\n", v->label);
            return -1;
        }
    }
    if (v == &variants[VARIANT_F32] && access(onnx, R_OK) != 0) {
        snprintf(script, sizeof script, "%s/scripts/ir_to_onnx.py", root);
        char *argv[] = {PYTHON, script, model, "-o", onnx, NULL};
        printf("writing %s for ONNX Runtime\n", onnx);
        if (run_program(argv)) fprintf(stderr, "bench_router: ir_to_onnx.py failed: no ONNX Runtime lane\n");
    }
    return 0;
}

/* What the roofline needs to know of the model, read from its model.json:
 * the matmul weights are the 2-D initializers stored in the weights file,
 * less any a Gather reads rows of (the embedding table); norm scales are
 * 1-D. The attention's width per layer is the row count of its q_proj. */
typedef struct {
    int ok;
    double matmul_params;   /* elements of all matmul weights */
    int layers;             /* q_proj weights */
    double attention_width; /* heads x head_dim, summed over layers */
    int head_dim;           /* size of a q_norm weight, for the printout */
} model_shape;

static int name_ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static model_shape read_model_shape(const char *model_path) {
    model_shape ms = {0};
    json_object *root = json_object_from_file(model_path), *inits, *nodes;
    if (!root || !json_object_object_get_ex(root, "initializers", &inits) ||
        !json_object_object_get_ex(root, "nodes", &nodes)) {
        fprintf(stderr, "bench_router: %s: cannot read initializers and nodes\n", model_path);
        json_object_put(root);
        return ms;
    }
    for (size_t i = 0; i < json_object_array_length(inits); i++) {
        json_object *init = json_object_array_get_idx(inits, i), *name, *shape, *data;
        if (!json_object_object_get_ex(init, "name", &name) || !json_object_object_get_ex(init, "shape", &shape))
            continue;
        const char *n = json_object_get_string(name);
        if (name_ends_with(n, "q_norm.weight") && ms.head_dim == 0)
            ms.head_dim = json_object_get_int(json_object_array_get_idx(shape, 0));
        if (json_object_object_get_ex(init, "data", &data) || json_object_array_length(shape) != 2) continue;
        int gathered = 0;
        for (size_t k = 0; k < json_object_array_length(nodes) && !gathered; k++) {
            json_object *node = json_object_array_get_idx(nodes, k), *op, *inputs;
            gathered = json_object_object_get_ex(node, "op", &op) && !strcmp(json_object_get_string(op), "Gather") &&
                       json_object_object_get_ex(node, "inputs", &inputs) &&
                       !strcmp(json_object_get_string(json_object_array_get_idx(inputs, 0)), n);
        }
        if (gathered) continue;
        double rows = json_object_get_double(json_object_array_get_idx(shape, 0));
        ms.matmul_params += rows * json_object_get_double(json_object_array_get_idx(shape, 1));
        if (name_ends_with(n, "q_proj.weight")) {
            ms.layers++;
            ms.attention_width += rows;
        }
    }
    ms.ok = ms.matmul_params > 0 && ms.layers > 0 && ms.head_dim > 0;
    if (!ms.ok) fprintf(stderr, "bench_router: %s: no matmul weights, q_proj or q_norm found\n", model_path);
    json_object_put(root);
    return ms;
}

/* ---- the parent: the roofline --------------------------------------------------- */

typedef struct {
    int ok;
    double fma[MAX_THREADS], dot[MAX_THREADS], read[MAX_THREADS];  /* GFLOP/s, GB/s; [threads - 1] */
} roofline;

/* Runs build/roofline, echoes its report and keeps its figures. */
static roofline measure_roofline(const char *root) {
    roofline rf = {0};
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/build/roofline", root);
    char *argv[] = {path, NULL};
    int out[2];
    if (access(path, X_OK) != 0 || pipe2(out, O_CLOEXEC) != 0) {
        printf("roofline: %s is missing (make bench builds it): no roofline shares\n", path);
        return rf;
    }
    fflush(stdout);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    pid_t pid;
    int rc = posix_spawn(&pid, path, &actions, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    close(out[1]);
    if (rc) {
        fprintf(stderr, "bench_router: cannot run %s: %s\n", path, strerror(rc));
        close(out[0]);
        return rf;
    }
    FILE *f = fdopen(out[0], "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        if (sscanf(line, "roofline-result %lf %lf %lf %lf %lf %lf", &rf.fma[0], &rf.fma[1], &rf.dot[0], &rf.dot[1],
                   &rf.read[0], &rf.read[1]) == 6)
            rf.ok = 1;
        else
            fputs(line, stdout);
    }
    if (f) fclose(f); else close(out[0]);
    int status;
    if (wait_child(pid, &status) || !WIFEXITED(status) || WEXITSTATUS(status) != 0) rf.ok = 0;
    if (!rf.ok) printf("roofline: %s failed: no roofline shares\n", path);
    return rf;
}

/* ---- the parent: side by side with ONNX Runtime --------------------------------- */

/* Which compute peak bounds a lane: float32 FMAs (float32 lanes, and
 * bfloat16 weights, which the kernel widens to float32 and multiplies with
 * FMAs); the bf16 precision the BF16-dot peak. */
typedef enum { PEAK_FMA, PEAK_BF16_DOT } peak_kind;

typedef struct {
    const char *name;
    int ort;                /* ONNX Runtime (else fusec fast/aot) */
    int variant;            /* model */
    const char *precision;  /* fusec_options.precision, NULL for the default */
    int weight_bytes;       /* per matmul weight element, for the roofline */
    peak_kind peak;
    double min_speedup[N_LENGTHS]; /* targets: ORT median / lane median at 15, 65 tokens */
} sbs_lane;

enum { SBS_ORT, SBS_F32, SBS_BF16_WEIGHTS, SBS_PRECISION_BF16, N_SBS };
static const sbs_lane sbs_lanes[N_SBS] = {
    {"ORT float32", 1, VARIANT_F32, NULL, 4, PEAK_FMA, {0, 0}},
    {"fusec float32", 0, VARIANT_F32, NULL, 4, PEAK_FMA, {1.5, 1.25}},
    {"fusec bf16 weights", 0, VARIANT_BF16, NULL, 2, PEAK_FMA, {2.0, 1.3}},
    {"fusec precision bf16", 0, VARIANT_F32, "bf16", 2, PEAK_BF16_DOT, {3.0, 2.5}},
};

/* One lane's process and what it answered. */
typedef struct {
    pid_t pid;
    FILE *to, *from;
    int ok;                     /* loaded, and every answer so far well-formed */
    char error[600];            /* why not */
    double load_ms;             /* ORT session creation; fusec cached AOT load */
    double *times[N_LENGTHS];
    int n_times[N_LENGTHS];
    float logits[N_LENGTHS][N_LOGITS];
    double median_ms[N_LENGTHS], fastest_ms[N_LENGTHS];
    long peak_rss_kb;
} server;

__attribute__((format(printf, 2, 3))) static void server_fail(server *s, const char *fmt, ...) {
    if (!s->ok && s->error[0]) return;   /* keep the first reason */
    s->ok = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->error, sizeof s->error, fmt, ap);
    va_end(ap);
}

/* Reads one answer line; "error TEXT" or the end of the stream marks the lane failed. */
static char *server_read(server *s, char **line, size_t *size) {
    if (getline(line, size, s->from) <= 0) {
        server_fail(s, "the lane's process ended");
        return NULL;
    }
    (*line)[strcspn(*line, "\n")] = 0;
    if (strncmp(*line, "error ", 6) == 0) {
        server_fail(s, "%s", *line + 6);
        return NULL;
    }
    return *line;
}

/* Environment of a lane's process: this one's, with the thread count set for
 * fusec's runtime and OpenBLAS (ORT takes it as a session option). */
static char **lane_environment(int threads, char *fusec_threads, char *blas_threads) {
    size_t n = 0;
    while (environ[n]) n++;
    char **env = calloc(n + 3, sizeof(char *));
    if (!env) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "FUSEC_NUM_THREADS=", 18) && strncmp(environ[i], "OPENBLAS_NUM_THREADS=", 21))
            env[k++] = environ[i];
    sprintf(fusec_threads, "FUSEC_NUM_THREADS=%d", threads);
    sprintf(blas_threads, "OPENBLAS_NUM_THREADS=%d", threads);
    env[k++] = fusec_threads;
    env[k++] = blas_threads;
    return env;
}

/* Starts a lane's process with pipes to its stdin and stdout and waits until
 * it is ready (its model loaded). */
static void server_start(server *s, char *const argv[], char *const env[]) {
    memset(s, 0, sizeof *s);
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0) {
        server_fail(s, "pipe: %s", strerror(errno));
        return;
    }
    if (pipe2(out, O_CLOEXEC) != 0) {
        close(in[0]), close(in[1]);
        server_fail(s, "pipe: %s", strerror(errno));
        return;
    }
    fflush(stdout);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in[0], STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    int rc = posix_spawnp(&s->pid, argv[0], &actions, NULL, argv, env);
    posix_spawn_file_actions_destroy(&actions);
    close(in[0]);
    close(out[1]);
    if (rc) {
        close(in[1]), close(out[0]);
        s->pid = 0;
        server_fail(s, "cannot run %s: %s", argv[0], strerror(rc));
        return;
    }
    s->to = fdopen(in[1], "w");
    s->from = fdopen(out[0], "r");
    if (!s->to || !s->from) {
        server_fail(s, "fdopen: %s", strerror(errno));
        return;
    }
    char *line = NULL;
    size_t size = 0;
    s->ok = 1;
    if (server_read(s, &line, &size) && sscanf(line, "ready %lf", &s->load_ms) != 1)
        server_fail(s, "unexpected first line: %s", line);
    free(line);
}

/* Asks for n runs of a case; keeps the times when `timed`, the logits always. */
static void server_run(server *s, const bench_case *c, int len, int n, int timed) {
    if (!s->ok) return;
    if (fprintf(s->to, "run %s %d\n", c->id, n) < 0 || fflush(s->to) != 0) {
        server_fail(s, "the lane's process ended");
        return;
    }
    char *line = NULL, *p, *end;
    size_t size = 0;
    if (!server_read(s, &line, &size)) goto done;
    if (strncmp(line, "result ", 7) != 0 || strtol(line + 7, &p, 10) != n) {
        server_fail(s, "unexpected answer: %s", line);
        goto done;
    }
    if (timed) {
        double *grown = realloc(s->times[len], (size_t)(s->n_times[len] + n) * sizeof(double));
        if (!grown) {
            server_fail(s, "out of memory");
            goto done;
        }
        s->times[len] = grown;
    }
    for (int i = 0; i < n; i++, p = end) {
        double ms = strtod(p, &end);
        if (end == p) {
            server_fail(s, "unexpected answer: %s", line);
            goto done;
        }
        if (timed) s->times[len][s->n_times[len]++] = ms;
    }
    if (!(p = strstr(p, "logits"))) {
        server_fail(s, "no logits in the answer: %s", line);
        goto done;
    }
    p += 6;
    for (int i = 0; i < N_LOGITS; i++, p = end) {
        s->logits[len][i] = strtof(p, &end);
        if (end == p) {
            server_fail(s, "unexpected logits: %s", line);
            goto done;
        }
    }
done:
    free(line);
}

/* Asks the lane's process to quit (reading its peak RSS) and reaps it. */
static void server_stop(server *s) {
    char *line = NULL;
    size_t size = 0;
    if (s->ok && fprintf(s->to, "quit\n") >= 0 && fflush(s->to) == 0 && server_read(s, &line, &size))
        sscanf(line, "bye %ld", &s->peak_rss_kb);
    free(line);
    if (s->to) fclose(s->to);   /* end of input: a lane that failed exits on it too */
    if (s->from) fclose(s->from);
    s->to = s->from = NULL;
    int status;
    if (s->pid > 0) wait_child(s->pid, &status);
    s->pid = 0;
}

static void server_free(server *s) {
    for (int len = 0; len < N_LENGTHS; len++) free(s->times[len]);
}

typedef struct {
    const char *root;
    const char *model_dirs[N_VARIANTS];
    char cache_dirs[N_SBS][PATH_MAX + 64];   /* one per fusec lane, shared by both thread groups */
    const bench_case *cases;
    model_shape shape;
    roofline rf;
    int rounds, runs;
} sbs_context;

/* The lane's roofline time for one forward: the larger of its FLOPs over the
 * compute peak and its weight bytes over the read bandwidth, in ms. */
static double roofline_ms(const sbs_context *cx, const sbs_lane *lane, int threads, int tokens, int *memory_bound) {
    const roofline *rf = &cx->rf;
    double t = tokens;
    double flops = 2 * cx->shape.matmul_params * t + 4 * cx->shape.attention_width * t * t;
    double peak = rf->fma[threads - 1];
    if (lane->peak == PEAK_BF16_DOT) peak = rf->dot[threads - 1];
    double compute_s = flops / (peak * 1e9), memory_s = cx->shape.matmul_params * lane->weight_bytes /
                                                           (rf->read[threads - 1] * 1e9);
    if (memory_bound) *memory_bound = memory_s > compute_s;
    return 1e3 * (compute_s > memory_s ? compute_s : memory_s);
}

/* Runs one thread group: starts every lane's process (one after the other,
 * so the load times do not overlap), warms each up, then the interleaved
 * rounds; stops them all. */
static void run_group(sbs_context *cx, int threads, server lanes[N_SBS]) {
    char fusec_threads[64], blas_threads[64], threads_text[16];
    snprintf(threads_text, sizeof threads_text, "%d", threads);
    char **env = lane_environment(threads, fusec_threads, blas_threads);
    if (!env) {
        fprintf(stderr, "bench_router: out of memory\n");
        for (int l = 0; l < N_SBS; l++) memset(&lanes[l], 0, sizeof lanes[l]);
        return;
    }
    for (int l = 0; l < N_SBS; l++) {
        const sbs_lane *lane = &sbs_lanes[l];
        char model[PATH_MAX + 96];
        printf("  %d thread%s: loading %s ...\n", threads, threads > 1 ? "s" : "", lane->name);
        if (lane->ort) {
            char script[PATH_MAX + 64], ort_dir[PATH_MAX + 64], ort_module[PATH_MAX + 128], cases[PATH_MAX + 64];
            snprintf(script, sizeof script, "%s/bench/ort_lane.js", cx->root);
            snprintf(ort_dir, sizeof ort_dir, "%s/build/ort", cx->root);
            snprintf(ort_module, sizeof ort_module, "%s/node_modules/onnxruntime-node", ort_dir);
            snprintf(cases, sizeof cases, "%s/fixtures/router/cases.json", cx->root);
            snprintf(model, sizeof model, "%s/model.onnx", cx->model_dirs[lane->variant]);
            char *argv[] = {"node", script, ort_dir, model, cases, threads_text, NULL};
            if (access(ort_module, R_OK) != 0) {
                memset(&lanes[l], 0, sizeof lanes[l]);
                server_fail(&lanes[l], "onnxruntime-node is not installed under %s (make bench installs it)",
                            ort_dir);
                continue;
            }
            server_start(&lanes[l], argv, env);
        } else {
            snprintf(model, sizeof model, "%s/model.json", cx->model_dirs[lane->variant]);
            char *argv[] = {"/proc/self/exe", "--serve", "fast/aot", "--model", model, "--cache-dir",
                            cx->cache_dirs[l], "--precision", (char *)(lane->precision ? lane->precision : "f32"),
                            NULL};
            if (!lane->precision) argv[7] = NULL;   /* the default: leave the option unset */
            server_start(&lanes[l], argv, env);
        }
    }
    for (int l = 0; l < N_SBS; l++)   /* warm-up, untimed */
        for (int len = 0; len < N_LENGTHS; len++) server_run(&lanes[l], &cx->cases[len], len, 1, 0);
    printf("  %d thread%s: timing, %d round%s ...\n", threads, threads > 1 ? "s" : "", cx->rounds,
           cx->rounds > 1 ? "s" : "");
    fflush(stdout);
    for (int r = 0; r < cx->rounds; r++)
        for (int k = 0; k < N_SBS; k++) {
            server *s = &lanes[(r + k) % N_SBS];   /* rotating order */
            for (int len = 0; len < N_LENGTHS; len++) server_run(s, &cx->cases[len], len, cx->runs, 1);
        }
    for (int l = 0; l < N_SBS; l++) {
        server_stop(&lanes[l]);
        for (int len = 0; len < N_LENGTHS && lanes[l].ok; len++) {
            lanes[l].median_ms[len] = median(lanes[l].times[len], lanes[l].n_times[len]);
            lanes[l].fastest_ms[len] = lanes[l].times[len][0];
        }
    }
    free(env);
    /* A precision the runtime ignores would time the float32 lane twice: bf16
     * activations always move the logits, so identical bits mean no effect. */
    server *p = &lanes[SBS_PRECISION_BF16], *f = &lanes[SBS_F32];
    if (p->ok && f->ok && !memcmp(p->logits, f->logits, sizeof p->logits))
        server_fail(p, "fusec_options.precision = \"bf16\" had no effect: the logits equal the float32 "
                       "lane's bit for bit");
}

static void print_group(const sbs_context *cx, int threads, const server lanes[N_SBS]) {
    const server *ort = &lanes[SBS_ORT];
    printf("\nside by side, %d thread%s (FUSEC_NUM_THREADS=%d; ORT intraOpNumThreads=%d): %d rounds x %d runs "
           "per lane and length, interleaved; times in ms\n", threads, threads > 1 ? "s" : "", threads, threads,
           cx->rounds, cx->runs);
    printf("%-21s %8s", "lane", "load");
    for (int len = 0; len < N_LENGTHS; len++) {   /* right-aligned over the numbers */
        char med[16], min[16], vs[16], roof[16];
        int t = cx->cases[len].token_count;
        snprintf(med, sizeof med, "med@%d", t);
        snprintf(min, sizeof min, "min@%d", t);
        snprintf(vs, sizeof vs, "vsORT@%d", t);
        snprintf(roof, sizeof roof, "roof@%d", t);
        printf("  %8s %8s %10s %8s", med, min, vs, roof);
    }
    printf(" %8s %10s %9s\n", "peakRSS", "a/r@15,65", "max|dlog|");
    for (int l = 0; l < N_SBS; l++) {
        const server *s = &lanes[l];
        printf("%-21s", sbs_lanes[l].name);
        if (!s->ok) {
            printf(" n/a: %s\n", s->error);
            continue;
        }
        printf(" %8.1f", s->load_ms);
        for (int len = 0; len < N_LENGTHS; len++) {
            printf("  %8.1f %8.1f", s->median_ms[len], s->fastest_ms[len]);
            if (l != SBS_ORT && ort->ok) printf(" %9.2fx", ort->median_ms[len] / s->median_ms[len]);
            else printf(" %10s", "-");
            if (cx->rf.ok && cx->shape.ok)
                printf(" %7.0f%%", 100 * roofline_ms(cx, &sbs_lanes[l], threads, cx->cases[len].token_count, NULL) /
                                       s->median_ms[len]);
            else printf(" %8s", "-");
        }
        int agent[N_LENGTHS], role[N_LENGTHS];
        for (int len = 0; len < N_LENGTHS; len++) decide(s->logits[len], &agent[len], &role[len]);
        char decisions[32];
        snprintf(decisions, sizeof decisions, "%d/%d,%d/%d", agent[0], role[0], agent[1], role[1]);
        printf(" %6.2fGiB %10s", (double)s->peak_rss_kb / (1024.0 * 1024), decisions);
        if (l != SBS_ORT && ort->ok) {
            double worst = 0;
            for (int len = 0; len < N_LENGTHS; len++)
                for (int i = 0; i < N_LOGITS; i++) worst = fmax(worst, fabs(s->logits[len][i] - ort->logits[len][i]));
            printf(" %9.1e\n", worst);
        } else {
            printf(" %9s\n", "-");
        }
    }
    if (cx->rf.ok && cx->shape.ok) {
        printf("roofline time per forward (ms, @%d / @%d tokens), max(FLOPs / compute peak, weight bytes / %.1f GB/s):\n",
               cx->cases[0].token_count, cx->cases[1].token_count, cx->rf.read[threads - 1]);
        static const char *const kinds[] = {"float32 (FMA peak)", "bf16 weights (FMA peak)",
                                            "precision bf16 (BF16-dot peak)"};
        for (int l = SBS_F32; l < N_SBS; l++) {
            printf("  %-38s", kinds[l - SBS_F32]);
            for (int len = 0; len < N_LENGTHS; len++) {
                int memory_bound;
                double ms = roofline_ms(cx, &sbs_lanes[l], threads, cx->cases[len].token_count, &memory_bound);
                printf(" %8.1f (%s)", ms, memory_bound ? "memory" : "compute");
            }
            printf("\n");
        }
    }
}

/* Targets against ORT float32 and decisions equal to ORT's; n/a when a
 * lane (or ORT) did not run. Counts FAILs and n/as. */
static void check_group(const sbs_context *cx, int threads, const server lanes[N_SBS], int *n_fail, int *n_na) {
    const server *ort = &lanes[SBS_ORT];
    for (int l = SBS_F32; l < N_SBS; l++) {
        const server *s = &lanes[l];
        const char *why = !s->ok ? s->error : !ort->ok ? "no ONNX Runtime lane" : NULL;
        for (int len = 0; len < N_LENGTHS; len++) {
            printf("  ");
            if (why) {
                printf("n/a   %s, %d thread%s, %d tokens: >= %.2fx ORT speed: %s\n", sbs_lanes[l].name, threads,
                       threads > 1 ? "s" : "", cx->cases[len].token_count, sbs_lanes[l].min_speedup[len], why);
                (*n_na)++;
                continue;
            }
            double speedup = ort->median_ms[len] / s->median_ms[len];
            int pass = speedup >= sbs_lanes[l].min_speedup[len];
            printf("%s  %s, %d thread%s, %d tokens: %.2fx ORT speed (target >= %.2fx; %.1f vs %.1f ms)\n",
                   pass ? "PASS" : "FAIL", sbs_lanes[l].name, threads, threads > 1 ? "s" : "",
                   cx->cases[len].token_count, speedup, sbs_lanes[l].min_speedup[len], s->median_ms[len],
                   ort->median_ms[len]);
            *n_fail += !pass;
        }
        printf("  ");
        if (why) {
            printf("n/a   %s, %d thread%s: agent/role equal to ORT's at both lengths: %s\n", sbs_lanes[l].name,
                   threads, threads > 1 ? "s" : "", why);
            (*n_na)++;
            continue;
        }
        int pass = 1;
        char text[64] = "";
        for (int len = 0; len < N_LENGTHS; len++) {
            int a, r, oa, orole;
            decide(s->logits[len], &a, &r);
            decide(ort->logits[len], &oa, &orole);
            pass &= a == oa && r == orole;
            snprintf(text + strlen(text), sizeof text - strlen(text), "%s%d/%d vs %d/%d", len ? ", " : "", a, r, oa,
                     orole);
        }
        printf("%s  %s, %d thread%s: agent/role equal to ORT's at both lengths (%s)\n", pass ? "PASS" : "FAIL",
               sbs_lanes[l].name, threads, threads > 1 ? "s" : "", text);
        *n_fail += !pass;
    }
}

/* The roofline is measured before and after the lanes; each figure is the
 * higher of the two, since other work on the shared machine can only lower
 * a measured peak. */
static void side_by_side(sbs_context *cx, const int *thread_counts, int n_groups, int *n_fail, int *n_na) {
    printf("\nthe roofline, before the side-by-side lanes:\n");
    roofline before = measure_roofline(cx->root);
    printf("\nside by side with ONNX Runtime 1.30 (CPU, graph optimisation 'all', sequential, inter-op 1 thread)\n");
    if (cx->shape.ok)
        printf("model (from model.json): %d layers, %d heads x %d, %.1fM matmul weights (embedding table and norm "
               "scales excluded)\n", cx->shape.layers,
               (int)(cx->shape.attention_width / cx->shape.layers / cx->shape.head_dim), cx->shape.head_dim,
               cx->shape.matmul_params / 1e6);
    for (int l = 0; l < N_SBS; l++) {
        cx->cache_dirs[l][0] = 0;
        if (!sbs_lanes[l].ort) make_cache_dir(cx->root, cx->cache_dirs[l], sizeof cx->cache_dirs[l]);
    }
    server groups[MAX_THREADS][N_SBS];
    for (int g = 0; g < n_groups; g++) run_group(cx, thread_counts[g], groups[g]);
    printf("\nthe roofline, after the side-by-side lanes:\n");
    roofline after = measure_roofline(cx->root);
    cx->rf.ok = before.ok || after.ok;
    for (int t = 0; t < MAX_THREADS; t++) {
        cx->rf.fma[t] = fmax(before.fma[t], after.fma[t]);
        cx->rf.dot[t] = fmax(before.dot[t], after.dot[t]);
        cx->rf.read[t] = fmax(before.read[t], after.read[t]);
    }
    if (cx->rf.ok)
        printf("roofline used below, the higher of the two: FMA %.1f / %.1f GFLOP/s, BF16-dot %.1f / %.1f GFLOP/s, "
               "read %.1f / %.1f GB/s (1 / 2 threads)\n", cx->rf.fma[0], cx->rf.fma[1], cx->rf.dot[0],
               cx->rf.dot[1], cx->rf.read[0], cx->rf.read[1]);
    for (int g = 0; g < n_groups; g++) print_group(cx, thread_counts[g], groups[g]);
    printf("checks against ONNX Runtime float32 (speed = ORT median / fusec median; > 1: fusec faster):\n");
    for (int g = 0; g < n_groups; g++) {
        check_group(cx, thread_counts[g], groups[g], n_fail, n_na);
        for (int l = 0; l < N_SBS; l++) server_free(&groups[g][l]);
    }
    for (int l = 0; l < N_SBS; l++)
        if (cx->cache_dirs[l][0]) remove_tree(cx->cache_dirs[l]);
}

/* ---- the parent: the lane table ---------------------------------------------------- */

/* Re-executes this program with --lane and reads its result line. */
static void run_lane_child(const char *model_path, const char *lane, int runs, lane_result *r) {
    memset(r, 0, sizeof *r);
    char runs_text[16];
    snprintf(runs_text, sizeof runs_text, "%d", runs);
    char *argv[] = {"/proc/self/exe", "--lane", (char *)lane, "--model", (char *)model_path,
                    "--runs", runs_text, NULL};
    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0) {
        fprintf(stderr, "bench_router: pipe: %s\n", strerror(errno));
        return;
    }
    fflush(stdout);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    pid_t pid;
    int rc = posix_spawn(&pid, "/proc/self/exe", &actions, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    close(out[1]);
    if (rc) {
        fprintf(stderr, "bench_router: cannot re-run itself: %s\n", strerror(rc));
        close(out[0]);
        return;
    }
    FILE *f = fdopen(out[0], "r");
    char line[512];
    int found = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "lane-result %lf %lf %lf %lf %lf %lf %lf %lf %lf %d %d %ld %lf %d %d %d %d",
                   &r->cold_ms, &r->load_ms, &r->code_ms, &r->load_ms, &r->first_forward_ms,
                   &r->forward_ms[0], &r->forward_ms[1], &r->fastest_forward_ms[0], &r->fastest_forward_ms[1],
                   &r->runs, &r->cache_rebuilt, &r->peak_rss_kb, &r->packed_bytes, &r->agent[0], &r->role[0],
                   &r->agent[1], &r->role[1]) == 17)
            found = 1;
    if (f) fclose(f); else close(out[0]);
    int status;
    if (wait_child(pid, &status)) return;
    r->ok = found && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!r->ok) fprintf(stderr, "bench_router: lane %s failed (see above)\n", lane);
}

static void print_ms(double ms) {
    if (ms < 0)
        printf(" %9s", "-");
    else if (ms >= 1e4)
        printf(" %8.1fs", ms / 1e3);
    else
        printf(" %9.1f", ms);
}

static const char *verdict(int pass) { return pass ? "PASS" : "FAIL"; }

/* Lanes are indexed bare/jit, bare/aot, fast/jit, fast/aot. */
enum { BARE_JIT, BARE_AOT, FAST_JIT, FAST_AOT };

#define GIB (1024.0 * 1024 * 1024)

static void print_variant(const model_variant *v, double weights_bytes, const lane_result *lanes,
                          const bench_case *cases, int *n_fail) {
    printf("\nqwen3-0.6b, %s weights (%.2f GiB file); times in ms\n", v->label, weights_bytes / GIB);
    printf("%-9s %9s %9s %9s %9s %9s %9s %9s %9s %5s %9s %9s %7s %s\n", "lane", "cold", "load", "code",
           "1st-fwd", "fwd@15", "fwd@65", "min@15", "min@65", "runs", "peakRSS", "packed", "RSS/map", "a/r@15,65");
    for (int l = 0; l < N_LANES; l++) {
        const lane_result *r = &lanes[l];
        printf("%-9s", lane_names[l]);
        if (!r->ok) {
            printf(" failed\n");
            continue;
        }
        print_ms(r->cold_ms);
        print_ms(r->load_ms);
        if (r->cache_rebuilt) printf("*");
        print_ms(r->code_ms);
        print_ms(r->first_forward_ms);
        print_ms(r->forward_ms[0]);
        print_ms(r->forward_ms[1]);
        print_ms(r->fastest_forward_ms[0]);
        print_ms(r->fastest_forward_ms[1]);
        double rss_bytes = 1024.0 * (double)r->peak_rss_kb;
        printf(" %5d %6.2fGiB %6.2fGiB %7.2f %d/%d,%d/%d\n", r->runs, rss_bytes / GIB, r->packed_bytes / GIB,
               rss_bytes / (weights_bytes + r->packed_bytes), r->agent[0], r->role[0], r->agent[1], r->role[1]);
    }

    for (int l = 0; l < N_LANES; l++)
        if (lanes[l].ok && lanes[l].cache_rebuilt) {
            printf("* %s: the cached load built again: the runtime library changed during the run\n", lane_names[l]);
            break;
        }
    printf("ratios of median forward times (%s %d tokens, %s %d tokens):\n", cases[0].id,
           cases[0].token_count, cases[1].id, cases[1].token_count);
    static const struct { const char *name; int num, den; } ratios[] = {
        {"fast/bare jit", FAST_JIT, BARE_JIT}, {"fast/bare aot", FAST_AOT, BARE_AOT},
        {"jit/aot bare", BARE_JIT, BARE_AOT},  {"jit/aot fast", FAST_JIT, FAST_AOT},
    };
    for (size_t k = 0; k < sizeof ratios / sizeof ratios[0]; k++) {
        const lane_result *a = &lanes[ratios[k].num], *b = &lanes[ratios[k].den];
        printf("  %-14s", ratios[k].name);
        for (int len = 0; len < N_LENGTHS; len++) {
            if (a->ok && b->ok)
                printf("  @%d %6.3f", cases[len].token_count, a->forward_ms[len] / b->forward_ms[len]);
            else
                printf("  @%d %6s", cases[len].token_count, "-");
        }
        printf("\n");
    }

    printf("checks:\n");
    for (int l = 0; l < N_LANES; l++) {
        const lane_result *r = &lanes[l];
        double mapped = weights_bytes + (r->ok ? r->packed_bytes : 0);
        double over = r->ok ? 1024.0 * (double)r->peak_rss_kb / mapped : NAN;
        int pass = r->ok && over <= MAX_RSS_OVER_MAPPED;
        if (r->ok && r->packed_bytes > 0)
            printf("  %s  %s peak RSS <= %.1fx (weights file + packed weights file, %.2f GiB): %.2fx\n", verdict(pass),
                   lane_names[l], MAX_RSS_OVER_MAPPED, mapped / GIB, over);
        else
            printf("  %s  %s peak RSS <= %.1fx weights file: %.2fx\n", verdict(pass), lane_names[l],
                   MAX_RSS_OVER_MAPPED, over);
        *n_fail += !pass;
    }
    for (int backend = 0; backend < 2; backend++) {
        const lane_result *fast = &lanes[FAST_JIT + backend], *bare = &lanes[BARE_JIT + backend];
        for (int len = 0; len < N_LENGTHS; len++) {
            int pass = fast->ok && bare->ok && fast->forward_ms[len] < bare->forward_ms[len];
            printf("  %s  fast faster than bare, %s, %d tokens: %.1f vs %.1f ms\n", verdict(pass),
                   backend ? "aot" : "jit", cases[len].token_count, fast->forward_ms[len], bare->forward_ms[len]);
            *n_fail += !pass;
        }
    }
    for (int profile = 0; profile < 2; profile++) {
        const lane_result *jit = &lanes[2 * profile], *aot = &lanes[2 * profile + 1];
        for (int len = 0; len < N_LENGTHS; len++) {
            double ratio = jit->forward_ms[len] / aot->forward_ms[len];
            int pass = jit->ok && aot->ok && ratio <= MAX_JIT_OVER_AOT;
            printf("  %s  jit forward within %.2fx of aot, %s, %d tokens: %.3fx\n", verdict(pass),
                   MAX_JIT_OVER_AOT, profile ? "fast" : "bare", cases[len].token_count, ratio);
            *n_fail += !pass;
        }
    }
    for (int l = 0; l < N_LANES; l++) {
        const lane_result *r = &lanes[l];
        int aot = l == BARE_AOT || l == FAST_AOT;
        if (!aot && l != FAST_JIT) continue;   /* the bare JIT compiles the unfused graph: no target */
        double limit = aot ? MAX_AOT_CACHED_CODE_MS : MAX_JIT_COMPILE_MS;
        int pass = r->ok && r->code_ms <= limit;
        printf("  %s  %s %s %.0f ms (plus the weights' mapping): %.1f ms\n", verdict(pass), lane_names[l],
               aot ? "cached load's code within" : "compile with the packed weights cached within", limit,
               r->code_ms);
        *n_fail += !pass;
    }
}

/* ---- main ------------------------------------------------------------------------------ */

static int parse_count(const char *text, int *out) {
    char *end;
    long v = strtol(text, &end, 10);
    if (*text == 0 || *end != 0 || v < 1 || v > 1000) {
        fprintf(stderr, "bench_router: bad count '%s' (1-1000)\n", text);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* "1", "2", "1,2" or "2,1": the side-by-side thread groups, in that order. */
static int parse_threads(const char *text, int *counts, int *n) {
    *n = 0;
    for (const char *p = text; *p;) {
        if ((*p != '1' && *p != '2') || *n == MAX_THREADS || (p[1] && p[1] != ',')) {
            fprintf(stderr, "bench_router: --threads wants 1, 2 or 1,2 (the roofline measures 1 and 2)\n");
            return -1;
        }
        counts[(*n)++] = *p - '0';
        p += p[1] ? 2 : 1;
    }
    return *n ? 0 : -1;
}

static void usage(void) {
    printf("usage: bench_router [--runs N] [--bare-runs N] [--rounds N] [--round-runs N] [--threads 1,2]\n"
           "                    [--no-table] [--no-side-by-side]\n"
           "       bench_router --lane PROFILE/BACKEND --model MODEL.json [--runs N]\n"
           "       bench_router --serve PROFILE/BACKEND --model MODEL.json [--precision P] [--cache-dir DIR]\n"
           "Times the qwen3-0.6b router: the machine's roofline (build/roofline); fusec side by side\n"
           "with ONNX Runtime on 1 and 2 threads (--threads), in --rounds interleaved rounds (default %d)\n"
           "of --round-runs runs per lane and length (default %d); then the lane table, bare/fast x\n"
           "jit/aot for float32 and bfloat16 weights, each lane in its own process: --runs timed runs\n"
           "per length on fast lanes (default %d), --bare-runs on bare lanes (default %d).\n",
           DEFAULT_ROUNDS, DEFAULT_ROUND_RUNS, DEFAULT_FAST_RUNS, DEFAULT_BARE_RUNS);
}

int main(int argc, char **argv) {
    const char *lane = NULL, *serve = NULL, *model_path = NULL, *precision = NULL, *cache_dir = NULL;
    int fast_runs = DEFAULT_FAST_RUNS, bare_runs = DEFAULT_BARE_RUNS, rounds = DEFAULT_ROUNDS;
    int round_runs = DEFAULT_ROUND_RUNS, table = 1, sbs = 1, thread_counts[MAX_THREADS] = {1, 2}, n_groups = 2;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
            usage();
            return 0;
        }
        if (!strcmp(arg, "--no-table")) {
            table = 0;
            continue;
        }
        if (!strcmp(arg, "--no-side-by-side")) {
            sbs = 0;
            continue;
        }
        static const char *const with_value[] = {"--lane", "--serve", "--model", "--precision", "--cache-dir",
                                                 "--runs", "--bare-runs", "--rounds", "--round-runs", "--threads"};
        size_t k = 0;
        while (k < sizeof with_value / sizeof with_value[0] && strcmp(arg, with_value[k])) k++;
        if (k == sizeof with_value / sizeof with_value[0]) {
            fprintf(stderr, "bench_router: unknown option %s (see --help)\n", arg);
            return 2;
        }
        if (!value) {
            fprintf(stderr, "bench_router: %s needs a value (see --help)\n", arg);
            return 2;
        }
        i++;
        if (!strcmp(arg, "--lane")) lane = value;
        else if (!strcmp(arg, "--serve")) serve = value;
        else if (!strcmp(arg, "--model")) model_path = value;
        else if (!strcmp(arg, "--precision")) precision = value;
        else if (!strcmp(arg, "--cache-dir")) cache_dir = value;
        else if (!strcmp(arg, "--threads")) {
            if (parse_threads(value, thread_counts, &n_groups)) return 2;
        } else {
            int *count = !strcmp(arg, "--runs") ? &fast_runs : !strcmp(arg, "--bare-runs") ? &bare_runs
                         : !strcmp(arg, "--rounds") ? &rounds : &round_runs;
            if (parse_count(value, count)) return 2;
        }
    }
    char root[PATH_MAX];
    find_root(root, sizeof root);
    if (lane || serve) {
        if (!model_path) {
            fprintf(stderr, "bench_router: %s needs --model\n", lane ? "--lane" : "--serve");
            return 2;
        }
        return lane ? lane_main(root, lane, model_path, fast_runs)
                    : serve_main(root, serve, model_path, precision, cache_dir);
    }
    signal(SIGPIPE, SIG_IGN);   /* a lane process that died is reported, not fatal */

    char cases_path[PATH_MAX + 64];
    snprintf(cases_path, sizeof cases_path, "%s/fixtures/router/cases.json", root);
    bench_case cases[N_LENGTHS] = {{{0}, 0, NULL}, {{0}, 0, NULL}};
    if (load_case(cases_path, SHORT_CASE, &cases[0]) || load_case(cases_path, LONG_CASE, &cases[1])) {
        free(cases[0].input_ids);
        return 2;
    }
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    const char *coretype = getenv("OPENBLAS_CORETYPE"), *blas_threads = getenv("OPENBLAS_NUM_THREADS");
    printf("router benchmark: qwen3-0.6b, cases %s (%d tokens) and %s (%d tokens)\n", cases[0].id,
           cases[0].token_count, cases[1].id, cases[1].token_count);
    printf("%ld CPUs online, OPENBLAS_CORETYPE=%s, OPENBLAS_NUM_THREADS=%s\n", cpus, coretype ? coretype : "(unset)",
           blas_threads ? blas_threads : "(unset)");
    print_load_average("at start");
    int n_fail = 0, n_na = 0;
    double start = now_ms();

    char dirs[N_VARIANTS][PATH_MAX + 64];
    int ready[N_VARIANTS];
    for (int v = 0; v < N_VARIANTS; v++) {
        snprintf(dirs[v], sizeof dirs[v], "%s/build/router-models/%s", root, variants[v].dir);
        ready[v] = prepare_model(root, &variants[v], dirs[v]) == 0;
        n_fail += !ready[v];
    }

    if (sbs && ready[VARIANT_F32] && ready[VARIANT_BF16]) {
        sbs_context cx = {.root = root, .cases = cases, .rounds = rounds, .runs = round_runs};
        for (int v = 0; v < N_VARIANTS; v++) cx.model_dirs[v] = dirs[v];
        char model[PATH_MAX + 96];
        snprintf(model, sizeof model, "%s/model.json", dirs[VARIANT_F32]);
        cx.shape = read_model_shape(model);
        side_by_side(&cx, thread_counts, n_groups, &n_fail, &n_na);
        fflush(stdout);
    }

    if (table) {
        printf("\nlane table: each lane in its own process, both cores; forward = median of %d timed runs (fast) / "
               "%d (bare) after 1 warm-up\n", fast_runs, bare_runs);
        for (int v = 0; v < N_VARIANTS; v++) {
            char model[PATH_MAX + 96], weights[PATH_MAX + 96];
            snprintf(model, sizeof model, "%s/model.json", dirs[v]);
            snprintf(weights, sizeof weights, "%s/model.safetensors", dirs[v]);
            struct stat st;
            if (!ready[v]) continue;
            if (stat(weights, &st) != 0) {
                fprintf(stderr, "bench_router: %s: %s\n", weights, strerror(errno));
                n_fail++;
                continue;
            }
            lane_result lanes[N_LANES];
            for (int l = 0; l < N_LANES; l++) {
                printf("  running %s %s ...\n", variants[v].label, lane_names[l]);
                run_lane_child(model, lane_names[l], l < FAST_JIT ? bare_runs : fast_runs, &lanes[l]);
            }
            print_variant(&variants[v], (double)st.st_size, lanes, cases, &n_fail);
            fflush(stdout);
        }
    }
    printf("\n%d check(s) failed, %d n/a; benchmark wall-clock %.0f s\n", n_fail, n_na, (now_ms() - start) / 1e3);
    print_load_average("at end");
    for (int len = 0; len < N_LENGTHS; len++) free(cases[len].input_ids);
    return 0;
}
