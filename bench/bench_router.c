/* Speed and memory of the router (examples/router) through fusec's C API:
 * qwen3-0.6b with float32 and with bfloat16 weights, prompts of 15 and 65
 * tokens (real eval cases), each lane bare/fast x jit/aot.
 *
 * Per lane it measures
 *   jit compile  fusec_load with backend jit (passes, emission, tcc, weights)
 *   aot cold     fusec_load with backend aot into an empty cache directory
 *   aot cached   a second fusec_load from that same cache directory
 *   load         time until the model can run: jit = the jit fusec_load (JIT
 *                compiles on every load), aot = the cached fusec_load
 *   1st fwd      the untimed warm-up run at 15 tokens (touches the mapped weights)
 *   fwd@15/65    median of the timed forward runs after one warm-up
 *   min@15/65    the fastest of those runs (shows how much other load skewed the median)
 *   peak RSS     VmHWM of a process that loads and runs only that lane
 * Every lane runs in a fresh child process (this program re-executed with
 * --lane) so one lane's mappings and heap do not count against another.
 * VmHWM is read by the child itself: wait4's ru_maxrss would also count the
 * gcc that an AOT cold build spawns.
 *
 * It is a report, not a test: the checks print PASS or FAIL and the exit
 * status is 0 (2 only for a usage error or a missing cases file).
 *
 *   make bench   (or build/bench_router [--runs N] [--bare-runs N])
 *   build/bench_router --lane PROFILE/BACKEND --model MODEL.json [--runs N]   (one lane) */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "runtime/fusec.h"

#define PYTHON "/usr/bin/python3"
#define N_LOGITS 10
#define N_AGENTS 7
#define SHORT_CASE "math_direct"        /* 15 tokens */
#define LONG_CASE "long_system_prompt"  /* 65 tokens */
#define N_LANES 4
#define N_LENGTHS 2

/* Timed runs after the warm-up: bare forwards of the 0.6B model take seconds,
 * so bare lanes get fewer to keep `make bench` within a few minutes. */
enum { DEFAULT_FAST_RUNS = 7, DEFAULT_BARE_RUNS = 3 };

/* Limits the checks hold the figures to (issue 4, "Speed and memory"). */
#define MAX_RSS_OVER_WEIGHTS 1.2
#define MAX_JIT_OVER_AOT 1.5

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

static const char *const lane_names[N_LANES] = {"bare/jit", "bare/aot", "fast/jit", "fast/aot"};

typedef struct {
    char id[64];
    int token_count;
    int64_t *input_ids;
} bench_case;

/* What one lane's child reports. Times in milliseconds, -1 when not measured. */
typedef struct {
    int ok;
    double jit_compile_ms, aot_cold_ms, aot_cached_ms, load_ms, first_forward_ms;
    double forward_ms[N_LENGTHS];       /* median */
    double fastest_forward_ms[N_LENGTHS]; /* minimum: less sensitive to other work on the machine */
    int runs;
    int cache_rebuilt;   /* aot: the cached load built again (the runtime library changed) */
    long peak_rss_kb;
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

/* First index wins ties, as in router eval. */
static int argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

/* One forward: bind the case, run, check the logits. Returns its time in ms or -1. */
static double forward(fusec_model *m, const bench_case *c, int *agent, int *role) {
    int64_t shape[8] = {1, c->token_count};
    fusec_dtype dtype;
    int rank;
    const void *data;
    double start = now_ms();
    if (fusec_set_input(m, "input_ids", FUSEC_INT64, 2, shape, c->input_ids) || fusec_run(m) ||
        fusec_get_output(m, "logits", &dtype, &rank, shape, &data)) {
        fprintf(stderr, "bench_router: %s: %s\n", c->id, fusec_last_error(m));
        return -1;
    }
    double elapsed = now_ms() - start;
    const float *logits = data;
    if (dtype != FUSEC_FLOAT32 || rank < 1 || shape[rank - 1] != N_LOGITS) {
        fprintf(stderr, "bench_router: %s: logits are not float32 [.., %d]\n", c->id, N_LOGITS);
        return -1;
    }
    for (int i = 0; i < N_LOGITS; i++)
        if (!isfinite(logits[i])) {
            fprintf(stderr, "bench_router: %s: non-finite logit %d\n", c->id, i);
            return -1;
        }
    *agent = argmax(logits, N_AGENTS);
    *role = argmax(logits + N_AGENTS, N_LOGITS - N_AGENTS);
    return elapsed;
}

/* ---- one lane, in the child ------------------------------------------------ */

static fusec_model *timed_load(const char *model_path, const fusec_options *fo, double *ms) {
    char err[1024];
    double start = now_ms();
    fusec_model *m = fusec_load(model_path, fo, err, sizeof err);
    *ms = now_ms() - start;
    if (!m) fprintf(stderr, "bench_router: %s\n", err);
    return m;
}

/* Loads the model on one lane, times the forwards and prints one result line
 * for the parent: "lane-result" and the fields of lane_result. */
static int lane_main(const char *root, const char *lane, const char *model_path, int runs) {
    char profile[8], backend[8];
    if (sscanf(lane, "%7[a-z]/%7[a-z]", profile, backend) != 2) {
        fprintf(stderr, "bench_router: --lane wants PROFILE/BACKEND, e.g. fast/jit\n");
        return 2;
    }
    char cases_path[PATH_MAX + 64];
    snprintf(cases_path, sizeof cases_path, "%s/fixtures/router/cases.json", root);
    bench_case cases[N_LENGTHS] = {{{0}, 0, NULL}, {{0}, 0, NULL}};
    lane_result r = {.jit_compile_ms = -1, .aot_cold_ms = -1, .aot_cached_ms = -1, .runs = runs};
    fusec_model *m = NULL;
    double *times = calloc((size_t)runs, sizeof(double));
    char cache_dir[PATH_MAX + 64] = "";
    int status = 1;
    if (!times || load_case(cases_path, SHORT_CASE, &cases[0]) || load_case(cases_path, LONG_CASE, &cases[1]))
        goto done;

    fusec_options fo = {.profile = profile, .backend = backend};
    if (strcmp(backend, "aot") == 0) {
        snprintf(cache_dir, sizeof cache_dir, "%s/build/bench-cache-XXXXXX", root);
        if (!mkdtemp(cache_dir)) {
            fprintf(stderr, "bench_router: mkdtemp %s: %s\n", cache_dir, strerror(errno));
            cache_dir[0] = 0;
            goto done;
        }
        fo.cache_dir = cache_dir;
        if (!(m = timed_load(model_path, &fo, &r.aot_cold_ms))) goto done;
        fusec_free(m);
        if (!(m = timed_load(model_path, &fo, &r.aot_cached_ms))) goto done;
        r.load_ms = r.aot_cached_ms;
        r.cache_rebuilt = count_libraries(cache_dir) != 1;
    } else {
        if (!(m = timed_load(model_path, &fo, &r.jit_compile_ms))) goto done;
        r.load_ms = r.jit_compile_ms;
    }

    for (int len = 0; len < N_LENGTHS; len++) {
        double warm_up = forward(m, &cases[len], &r.agent[len], &r.role[len]);
        if (warm_up < 0) goto done;
        if (len == 0) r.first_forward_ms = warm_up;
        for (int i = 0; i < runs; i++)
            if ((times[i] = forward(m, &cases[len], &r.agent[len], &r.role[len])) < 0) goto done;
        qsort(times, (size_t)runs, sizeof(double), compare_doubles);
        r.fastest_forward_ms[len] = times[0];
        r.forward_ms[len] = runs % 2 ? times[runs / 2] : 0.5 * (times[runs / 2 - 1] + times[runs / 2]);
    }
    r.peak_rss_kb = peak_rss_kb();
    printf("lane-result %.3f %.3f %.3f %.3f %.3f %.3f %.3f %.3f %.3f %d %d %ld %d %d %d %d\n",
           r.jit_compile_ms, r.aot_cold_ms, r.aot_cached_ms, r.load_ms, r.first_forward_ms, r.forward_ms[0],
           r.forward_ms[1], r.fastest_forward_ms[0], r.fastest_forward_ms[1], r.runs, r.cache_rebuilt,
           r.peak_rss_kb, r.agent[0], r.role[0], r.agent[1], r.role[1]);
    status = 0;
done:
    fusec_free(m);
    if (cache_dir[0]) nftw(cache_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    for (int len = 0; len < N_LENGTHS; len++) free(cases[len].input_ids);
    free(times);
    return status;
}

/* ---- the parent: models, children, table, checks ------------------------------ */

static int wait_child(pid_t pid, int *status) {
    while (waitpid(pid, status, 0) < 0)
        if (errno != EINTR) {
            fprintf(stderr, "bench_router: waitpid: %s\n", strerror(errno));
            return -1;
        }
    return 0;
}

/* Runs gen_router.py for a variant whose model is missing (about 20 s). */
static int generate_model(const char *root, const model_variant *v, const char *out_dir) {
    char script[PATH_MAX + 64];
    snprintf(script, sizeof script, "%s/examples/router/gen_router.py", root);
    char *argv[] = {PYTHON, script, "--config", "qwen3-0.6b", "--dtype", (char *)v->dtype,
                    "--out", (char *)out_dir, NULL};
    printf("generating the qwen3-0.6b %s router under %s\n", v->label, out_dir);
    fflush(stdout);
    pid_t pid;
    int status, rc = posix_spawn(&pid, PYTHON, NULL, NULL, argv, environ);
    if (rc) {
        fprintf(stderr, "bench_router: cannot run %s: %s\n", PYTHON, strerror(rc));
        return -1;
    }
    if (wait_child(pid, &status)) return -1;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "bench_router: gen_router.py failed for %s\n", v->label);
        return -1;
    }
    return 0;
}

/* Re-executes this program with --lane and reads its result line. */
static void run_lane_child(const char *model_path, const char *lane, int runs, lane_result *r) {
    memset(r, 0, sizeof *r);
    char runs_text[16];
    snprintf(runs_text, sizeof runs_text, "%d", runs);
    char *argv[] = {"/proc/self/exe", "--lane", (char *)lane, "--model", (char *)model_path,
                    "--runs", runs_text, NULL};
    int out[2];
    if (pipe(out) != 0) {
        fprintf(stderr, "bench_router: pipe: %s\n", strerror(errno));
        return;
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, out[0]);
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
        if (sscanf(line, "lane-result %lf %lf %lf %lf %lf %lf %lf %lf %lf %d %d %ld %d %d %d %d",
                   &r->jit_compile_ms, &r->aot_cold_ms, &r->aot_cached_ms, &r->load_ms, &r->first_forward_ms,
                   &r->forward_ms[0], &r->forward_ms[1], &r->fastest_forward_ms[0], &r->fastest_forward_ms[1],
                   &r->runs, &r->cache_rebuilt, &r->peak_rss_kb, &r->agent[0], &r->role[0],
                   &r->agent[1], &r->role[1]) == 16)
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

static void print_variant(const model_variant *v, double weights_bytes, const lane_result *lanes,
                          const bench_case *cases, int *n_fail) {
    double weights_gib = weights_bytes / (1024.0 * 1024 * 1024);
    printf("\nqwen3-0.6b, %s weights (%.2f GiB file); times in ms\n", v->label, weights_gib);
    printf("%-9s %9s %9s %9s %9s %9s %9s %9s %9s %9s %5s %9s %7s %s\n", "lane", "jit-comp", "aot-cold",
           "aot-cache", "load", "1st-fwd", "fwd@15", "fwd@65", "min@15", "min@65", "runs", "peakRSS", "RSS/w",
           "a/r@15,65");
    for (int l = 0; l < N_LANES; l++) {
        const lane_result *r = &lanes[l];
        printf("%-9s", lane_names[l]);
        if (!r->ok) {
            printf(" failed\n");
            continue;
        }
        print_ms(r->jit_compile_ms);
        print_ms(r->aot_cold_ms);
        print_ms(r->aot_cached_ms);
        if (r->cache_rebuilt) printf("*");
        print_ms(r->load_ms);
        print_ms(r->first_forward_ms);
        print_ms(r->forward_ms[0]);
        print_ms(r->forward_ms[1]);
        print_ms(r->fastest_forward_ms[0]);
        print_ms(r->fastest_forward_ms[1]);
        double rss_bytes = 1024.0 * (double)r->peak_rss_kb;
        printf(" %5d %6.2fGiB %7.2f %d/%d,%d/%d\n", r->runs, rss_bytes / (1024.0 * 1024 * 1024),
               rss_bytes / weights_bytes, r->agent[0], r->role[0], r->agent[1], r->role[1]);
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
        double over = r->ok ? 1024.0 * (double)r->peak_rss_kb / weights_bytes : NAN;
        int pass = r->ok && over <= MAX_RSS_OVER_WEIGHTS;
        printf("  %s  %s peak RSS <= %.1fx weights file: %.2fx\n", verdict(pass), lane_names[l],
               MAX_RSS_OVER_WEIGHTS, over);
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
            printf("  %s  jit forward within %.1fx of aot, %s, %d tokens: %.3fx\n", verdict(pass),
                   MAX_JIT_OVER_AOT, profile ? "fast" : "bare", cases[len].token_count, ratio);
            *n_fail += !pass;
        }
    }
}

static int parse_count(const char *text, int *out) {
    char *end;
    long v = strtol(text, &end, 10);
    if (*text == 0 || *end != 0 || v < 1 || v > 1000) {
        fprintf(stderr, "bench_router: bad run count '%s' (1-1000)\n", text);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int main(int argc, char **argv) {
    const char *lane = NULL, *model_path = NULL;
    int fast_runs = DEFAULT_FAST_RUNS, bare_runs = DEFAULT_BARE_RUNS, lane_runs = DEFAULT_FAST_RUNS;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
            printf("usage: bench_router [--runs N] [--bare-runs N]\n"
                   "       bench_router --lane PROFILE/BACKEND --model MODEL.json [--runs N]\n"
                   "Times the qwen3-0.6b router (float32 and bfloat16 weights) on the four lanes,\n"
                   "each in its own child process; --runs is the timed runs per length for fast\n"
                   "lanes (default %d), --bare-runs for bare lanes (default %d).\n",
                   DEFAULT_FAST_RUNS, DEFAULT_BARE_RUNS);
            return 0;
        }
        if (strcmp(arg, "--lane") && strcmp(arg, "--model") && strcmp(arg, "--runs") && strcmp(arg, "--bare-runs")) {
            fprintf(stderr, "bench_router: unknown option %s (see --help)\n", arg);
            return 2;
        }
        if (!value) {
            fprintf(stderr, "bench_router: %s needs a value (see --help)\n", arg);
            return 2;
        }
        if (!strcmp(arg, "--lane"))
            lane = value;
        else if (!strcmp(arg, "--model"))
            model_path = value;
        else if (!strcmp(arg, "--runs")) {
            if (parse_count(value, &fast_runs)) return 2;
            lane_runs = fast_runs;
        } else if (parse_count(value, &bare_runs)) {   /* --bare-runs */
            return 2;
        }
        i++;
    }
    char root[PATH_MAX];
    find_root(root, sizeof root);
    if (lane) {
        if (!model_path) {
            fprintf(stderr, "bench_router: --lane needs --model\n");
            return 2;
        }
        return lane_main(root, lane, model_path, lane_runs);
    }

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
    printf("each lane in its own process; forward = median of %d timed runs (fast) / %d (bare) after 1 warm-up\n",
           fast_runs, bare_runs);

    print_load_average("at start");
    int n_fail = 0;
    double start = now_ms();
    for (int v = 0; v < N_VARIANTS; v++) {
        char dir[PATH_MAX + 64], model[PATH_MAX + 96], weights[PATH_MAX + 96];
        snprintf(dir, sizeof dir, "%s/build/router-models/%s", root, variants[v].dir);
        snprintf(model, sizeof model, "%s/model.json", dir);
        snprintf(weights, sizeof weights, "%s/model.safetensors", dir);
        struct stat st;
        if ((access(model, R_OK) != 0 || stat(weights, &st) != 0) && generate_model(root, &variants[v], dir)) {
            n_fail++;
            continue;
        }
        if (stat(weights, &st) != 0) {
            fprintf(stderr, "bench_router: %s: %s\n", weights, strerror(errno));
            n_fail++;
            continue;
        }
        lane_result lanes[N_LANES];
        for (int l = 0; l < N_LANES; l++) {
            printf("  running %s %s ...\n", variants[v].label, lane_names[l]);
            fflush(stdout);
            run_lane_child(model, lane_names[l], l < FAST_JIT ? bare_runs : fast_runs, &lanes[l]);
        }
        print_variant(&variants[v], (double)st.st_size, lanes, cases, &n_fail);
        fflush(stdout);
    }
    printf("\n%d check(s) failed; benchmark wall-clock %.0f s\n", n_fail, (now_ms() - start) / 1e3);
    print_load_average("at end");
    for (int len = 0; len < N_LENGTHS; len++) free(cases[len].input_ids);
    return 0;
}
