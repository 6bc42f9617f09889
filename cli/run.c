/* fusec run MODEL.json|LIB.so --input ...: runs a model through the C API
 * and prints its outputs (and, with --profile-ops, the time per op). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include "cli.h"
#include "../api/fusec.h"
#include "../ir/npy.h"

/* The CLI passes dtypes between the IR and the public API by value. */
_Static_assert((int)FUSEC_FLOAT32 == (int)FU_F32 && (int)FUSEC_FLOAT16 == (int)FU_F16 &&
                   (int)FUSEC_BFLOAT16 == (int)FU_BF16 && (int)FUSEC_INT64 == (int)FU_I64 &&
                   (int)FUSEC_INT32 == (int)FU_I32 && (int)FUSEC_BOOL == (int)FU_BOOL,
               "fusec_dtype and fu_dtype must agree");

const char help_run[] =
    "usage: fusec run MODEL.json|LIB.so --input NAME=VALUE ... [options]\n"
    "\n"
    "Compiles the model (libtcc in memory by default) or loads a library built by\n"
    "`fusec compile`, binds the inputs, runs it and prints every output as\n"
    "`name dtype [shape] first values...`.\n"
    "\n"
    "options:\n"
    "  -i, --input NAME=FILE.npy   bind input NAME to an .npy file\n"
    "  -i, --input NAME=[...]      bind input NAME to a JSON array, e.g. x=[[1,2],[3,4]]\n"
    "                              (converted to the input's dtype)\n"
    "  --backend jit|aot           libtcc in memory (default) or gcc into a cached library\n"
    "                              An input whose values decide shapes (a Reshape target,\n"
    "                              Slice bounds...) is compiled in with the value given.\n"
    "  --weights FILE              the weights of a compiled library (default: the file of the\n"
    "                              recorded name beside it, else where it was compiled); any\n"
    "                              copy with the same content binds\n"
    "  --cache-dir DIR             where aot libraries and packed weights are cached\n"
    "                              (default $FUSEC_CACHE_DIR, $XDG_CACHE_HOME/fusec or\n"
    "                              ~/.cache/fusec; must be private: yours, not\n"
    "                              group/other-writable, not a symlink)\n"
    "  --output-dir DIR            also write each output to DIR/<name>.npy (DIR is created)\n"
    "  --print-all                 print every value of each output (default: the first 16)\n"
    "  --repeat N                  run N times; print the first run's time and the median of the rest\n"
    "  --profile-ops               time every node and print, after the outputs, the time per op kind\n"
    "                              and the slowest nodes with their share of the forward; with\n"
    "                              --repeat N the times are sums over runs 2..N (the first run pays\n"
    "                              the page faults of the mapped weights)\n"
    "  --profile-top K             nodes listed by --profile-ops (default 20; 0 lists every node)\n"
    "  --emit-c FILE.c             also write the generated C\n"
    MODEL_OPTIONS_HELP
    "  -h, --help                  this text\n";


#define MAX_INPUT_ARGS 64

/* Output names come from the model: keep [A-Za-z0-9_.-], no leading dot. */
static void safe_file_name(const char *name, char *buf, size_t n) {
    size_t k = 0;
    for (; name[k] && k < n - 1; k++) {
        char c = name[k];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                 c == '.' || c == '-';
        buf[k] = ok ? c : '_';
    }
    buf[k] = 0;
    if (k == 0) snprintf(buf, n, "output");
    if (buf[0] == '.') buf[0] = '_';
}

static double element_as_double(fusec_dtype t, const void *data, int64_t i) {
    switch (t) {
    case FUSEC_FLOAT32: return ((const float *)data)[i];
    case FUSEC_FLOAT16: return fu_f16_to_f32(((const uint16_t *)data)[i]);
    case FUSEC_BFLOAT16: return fu_bf16_to_f32(((const uint16_t *)data)[i]);
    case FUSEC_INT64: return (double)((const int64_t *)data)[i];
    case FUSEC_INT32: return ((const int32_t *)data)[i];
    case FUSEC_BOOL: return ((const uint8_t *)data)[i];
    }
    return 0;
}

/* Values printed per output unless --print-all. */
#define PRINTED_VALUES 16

static void print_output(const char *name, fusec_dtype t, int rank, const int64_t *shape, const void *data,
                         int print_all) {
    int64_t numel = 1;
    put_name(stdout, name);  /* from the model: escaped */
    printf(" %s [", fu_dtype_name((fu_dtype)t));
    for (int k = 0; k < rank; k++) {
        printf("%s%lld", k ? ", " : "", (long long)shape[k]);
        numel *= shape[k];
    }
    printf("]");
    int64_t shown = print_all ? numel : PRINTED_VALUES;
    for (int64_t i = 0; i < numel && i < shown; i++) {
        double v = element_as_double(t, data, i);
        if (t == FUSEC_INT64 || t == FUSEC_INT32 || t == FUSEC_BOOL)
            printf(" %lld", (long long)v);
        else
            printf(" %.6g", v);
    }
    if (numel > shown) printf(" ... (%lld more; --print-all)", (long long)(numel - shown));
    printf("\n");
}

/* An int32 array for an int64 input is widened, an int64 one for an int32
 * input narrowed when every value fits (as inline JSON is converted). */
static int convert_ints(fu_array *a, fu_dtype want, fu_err *err) {
    int wide = a->dtype == FU_I32 && want == FU_I64, narrow = a->dtype == FU_I64 && want == FU_I32;
    if (!wide && !narrow) return 0;
    size_t n = a->nbytes / fu_dtype_size(a->dtype);
    void *out = malloc(n * fu_dtype_size(want) + 1);
    if (!out) return fu_fail(err, "out of memory");
    for (size_t i = 0; i < n; i++) {
        if (wide) {
            ((int64_t *)out)[i] = ((const int32_t *)a->data)[i];
            continue;
        }
        int64_t x = ((const int64_t *)a->data)[i];
        if (x < INT32_MIN || x > INT32_MAX) {
            free(out);
            return fu_fail(err, "value %lld at %zu does not fit the int32 input", (long long)x, i);
        }
        ((int32_t *)out)[i] = (int32_t)x;
    }
    free(a->data);
    a->data = out;
    a->dtype = want;
    a->nbytes = n * fu_dtype_size(want);
    return 0;
}

/* Binds one --input NAME=VALUE: VALUE is a JSON array or scalar if it
 * looks like one, else an .npy path. The data lands in *array. */
static int bind_input(fusec_model *m, const char *arg, fu_array *array) {
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg) return fail(EXIT_USAGE, "--input wants NAME=FILE.npy or NAME=[values], got '%s'", arg);
    char *name = strndup(arg, (size_t)(eq - arg));
    const char *value = eq + 1;
    int index = -1;
    for (int i = 0; name && i < fusec_num_inputs(m); i++)
        if (strcmp(fusec_input_name(m, i), name) == 0) index = i;
    if (index < 0) {   /* an input whose values decided shapes is in the code */
        int status = fusec_input_compiled_in(m, name) ? EXIT_OK : fail(EXIT_USER, "the model has no input named '%s'", name ? name : arg);
        free(name);
        return status;
    }
    fu_err err = {0};
    fu_dtype want = (fu_dtype)fusec_input_dtype(m, index);
    int rc = read_value_arg(value, want, array, &err);
    if (rc == 0) rc = convert_ints(array, want, &err);
    if (rc != 0) {
        fail(EXIT_USER, "input '%s': %s", name, err.msg);
        free(name);
        return EXIT_USER;
    }
    if (fusec_set_input(m, name, (fusec_dtype)array->dtype, array->rank, array->shape, array->data) != 0) {
        fail(EXIT_USER, "%s", fusec_last_error(m));
        free(name);
        return EXIT_USER;
    }
    free(name);
    return EXIT_OK;
}

static int write_outputs(fusec_model *m, const char *dir) {
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) return fail(EXIT_USER, "cannot create %s: %s", dir, strerror(errno));
    int n = fusec_num_outputs(m);
    char (*used)[256] = calloc((size_t)n + 1, sizeof *used);
    if (!used) return fail(EXIT_USER, "out of memory");
    int status = EXIT_OK;
    for (int i = 0; i < n && status == EXIT_OK; i++) {
        const char *name = fusec_output_name(m, i);
        fusec_dtype t;
        fu_array a = {0};
        const void *data;
        if (fusec_get_output(m, name, &t, &a.rank, a.shape, &data) != 0) {
            status = fail(EXIT_USER, "%s", fusec_last_error(m));
            break;
        }
        /* Two names may sanitise alike: keep the files apart. */
        safe_file_name(name, used[i], 200);
        for (int j = 0; j < i; j++)
            if (strcmp(used[i], used[j]) == 0) {
                size_t len = strlen(used[i]);
                snprintf(used[i] + len, sizeof used[i] - len, "_%d", i);
                break;
            }
        size_t path_len = strlen(dir) + strlen(used[i]) + 8;
        char *path = malloc(path_len);
        if (!path) {
            status = fail(EXIT_USER, "out of memory");
            break;
        }
        snprintf(path, path_len, "%s/%s.npy", dir, used[i]);
        a.dtype = (fu_dtype)t;
        int64_t numel = 1;
        for (int k = 0; k < a.rank; k++) numel *= a.shape[k];
        a.nbytes = (size_t)numel * fu_dtype_size(a.dtype);
        a.data = (void *)data;   /* borrowed: not freed here */
        fu_err err = {0};
        if (fu_npy_write(path, &a, &err) != 0) status = fail(EXIT_USER, "%s", err.msg);
        free(path);
    }
    free(used);
    return status;
}

/* mkdir -p: the output directory exists before the model runs. */
static int make_dirs(const char *dir) {
    char *path = strdup(dir);
    if (!path) return -1;
    int rc = 0;
    for (char *p = path + 1; rc == 0; p++) {
        if (*p != '/' && *p) continue;
        char keep = *p;
        *p = 0;
        struct stat st;
        if (mkdir(path, 0777) != 0 && !(errno == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode))) {
            if (errno == EEXIST) errno = ENOTDIR;
            rc = -1;
        }
        *p = keep;
        if (!keep) break;
    }
    free(path);
    return rc;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- fusec run --profile-ops ---------------------------------------------------- */

typedef struct {
    char op[64];
    int count;
    double ms;
} op_time;

static int by_time(const void *a, const void *b) {
    const fusec_profile_node *x = a, *y = b;
    if (x->total_ms != y->total_ms) return x->total_ms < y->total_ms ? 1 : -1;
    return x->node - y->node;
}

static int op_by_time(const void *a, const void *b) {
    const op_time *x = a, *y = b;
    if (x->ms != y->ms) return x->ms < y->ms ? 1 : -1;
    return strcmp(x->op, y->op);
}

/* The per-op report, like ONNX Runtime's profiler summary: time per op kind
 * (count, total, per run, share of the forward), then the slowest nodes.
 * Names come from the model file, so they are printed sanitised. */
static int print_profile(const fusec_model *m, int first_run_left_out, int top) {
    int64_t runs = 0;
    double forward_ms = 0;
    fusec_profile_runs(m, &runs, &forward_ms);
    int n = fusec_profile_count(m);
    fusec_profile_node *nodes = calloc((size_t)n + 1, sizeof *nodes);
    op_time *kinds = calloc((size_t)n + 1, sizeof *kinds);
    if (!nodes || !kinds) {
        free(nodes), free(kinds);
        return fail(EXIT_USER, "out of memory");
    }
    int n_kinds = 0;
    double nodes_ms = 0;
    for (int i = 0; i < n; i++) {
        fusec_profile_get(m, i, &nodes[i]);
        char op[64];
        fu_sanitize(nodes[i].op, op, sizeof op);
        int k = 0;
        while (k < n_kinds && strcmp(kinds[k].op, op) != 0) k++;
        if (k == n_kinds) snprintf(kinds[n_kinds++].op, sizeof kinds[0].op, "%s", op);
        kinds[k].count++;
        kinds[k].ms += nodes[i].total_ms;
        nodes_ms += nodes[i].total_ms;
    }
    qsort(kinds, (size_t)n_kinds, sizeof *kinds, op_by_time);
    qsort(nodes, (size_t)n, sizeof *nodes, by_time);
    double per_run = runs > 0 ? 1.0 / (double)runs : 0;
    double share = forward_ms > 0 ? 100.0 / forward_ms : 0;

    printf("\nper-op profile: %lld run%s%s; times are sums over %s\n", (long long)runs, runs == 1 ? "" : "s",
           first_run_left_out ? " (runs 2.., the first run pays the page faults and is left out)" : "",
           runs == 1 ? "that run" : "those runs");
    printf("forward %.3f ms (%.3f ms per run); %d timed nodes account for %.1f%% of it\n", forward_ms,
           forward_ms * per_run, n, nodes_ms * share);
    printf("\n%-28s %6s %12s %12s %7s\n", "op kind", "count", "total ms", "ms per run", "share");
    for (int k = 0; k < n_kinds; k++)
        printf("%-28s %6d %12.3f %12.4f %6.1f%%\n", kinds[k].op, kinds[k].count, kinds[k].ms, kinds[k].ms * per_run,
               kinds[k].ms * share);
    int shown = top > 0 && top < n ? top : n;
    printf("\n%s %d nodes by time:\n", shown < n ? "top" : "all", shown);
    printf("%6s  %-20s %12s %12s %7s  %s\n", "node", "op", "total ms", "ms per run", "share", "name");
    for (int i = 0; i < shown; i++) {
        char op[64], name[160];
        fu_sanitize(nodes[i].op, op, sizeof op);
        fu_sanitize(nodes[i].name, name, sizeof name);
        printf("%6d  %-20s %12.3f %12.4f %6.1f%%  %s\n", nodes[i].node, op, nodes[i].total_ms,
               nodes[i].total_ms * per_run, nodes[i].total_ms * share, name);
    }
    free(nodes);
    free(kinds);
    return EXIT_OK;
}

int cmd_run(int argc, char **argv) {
    const char *model = NULL, *output_dir = NULL, *emit_c = NULL, *value;
    const char *inputs[MAX_INPUT_ARGS];
    int n_inputs = 0, repeat = 1, profile_ops = 0, profile_top = 20, print_all = 0;
    fusec_options opts = {.backend = "jit", .cache_dir = NULL};
    model_opts mo;
    model_opts_init(&mo);
    for (int i = 0; i < argc; i++) {
        int r;
        if (is_help(argv[i])) {
            fputs(help_run, stdout);
            return EXIT_OK;
        } else if ((r = option_value(argc, argv, &i, "--input", "-i", &value))) {
            if (r < 0) return usage("run", "%s needs a value", argv[i]);
            if (n_inputs == MAX_INPUT_ARGS) return usage("run", "more than %d inputs", MAX_INPUT_ARGS);
            inputs[n_inputs++] = value;
        } else if ((r = option_value(argc, argv, &i, "--backend", NULL, &value))) {
            if (r < 0) return usage("run", "%s needs a value", argv[i]);
            if (strcmp(value, "jit") != 0 && strcmp(value, "aot") != 0)
                return usage("run", "unknown backend '%s' (jit or aot)", value);
            opts.backend = value;
        } else if ((r = option_value(argc, argv, &i, "--weights", NULL, &value))) {
            if (r < 0) return usage("run", "%s needs a value", argv[i]);
            opts.weights = value;
        } else if ((r = option_value(argc, argv, &i, "--cache-dir", NULL, &value))) {
            if (r < 0) return usage("run", "%s needs a value", argv[i]);
            opts.cache_dir = value;
        } else if ((r = option_value(argc, argv, &i, "--output-dir", NULL, &value))) {
            if (r < 0) return usage("run", "%s needs a value", argv[i]);
            output_dir = value;
        } else if ((r = option_value(argc, argv, &i, "--repeat", NULL, &value))) {
            if (r < 0) return usage("run", "%s needs a value", argv[i]);
            char *end;
            long n = strtol(value, &end, 10);
            if (*end || n < 1 || n > 1000000000) return usage("run", "--repeat wants a positive count, got '%s'", value);
            repeat = (int)n;
        } else if ((r = option_value(argc, argv, &i, "--emit-c", NULL, &value))) {
            if (r < 0) return usage("run", "%s needs a value", argv[i]);
            emit_c = value;
        } else if (strcmp(argv[i], "--print-all") == 0) {
            print_all = 1;
        } else if (strcmp(argv[i], "--profile-ops") == 0) {
            profile_ops = 1;
        } else if ((r = option_value(argc, argv, &i, "--profile-top", NULL, &value))) {
            if (r < 0) return usage("run", "%s needs a value", argv[i]);
            char *end;
            long k = strtol(value, &end, 10);
            if (*end || !*value || k < 0 || k > 1000000000) return usage("run", "--profile-top wants a count >= 0, got '%s'", value);
            profile_top = (int)k;
        } else if ((r = model_option("run", argc, argv, &i, &mo, 0))) {
            if (r < 0) return EXIT_USAGE;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return usage("run", "unknown option '%s'", argv[i]);
        } else if (!model) {
            model = argv[i];
        } else {
            return usage("run", "unexpected argument '%s'", argv[i]);
        }
    }
    if (!model) return usage("run", "no model given");
    opts.profile = mo.profile == FU_PROFILE_FAST ? "fast" : "bare";
    opts.precision = mo.precision == FU_PRECISION_BF16 ? "bf16" : "f32";
    opts.verbose = mo.verbose;
    opts.allow_external_weights = mo.allow_external;
    opts.sym_max = mo.sym_max[0] ? mo.sym_max : NULL;
    for (int k = 0; k < n_inputs; k++) {
        const char *eq = strchr(inputs[k], '=');
        if (!eq || eq == inputs[k])
            return usage("run", "--input wants NAME=FILE.npy or NAME=[values], got '%s'", inputs[k]);
    }

    if (emit_c) {
        size_t len = strlen(model);
        if (len >= 3 && strcmp(model + len - 3, ".so") == 0)
            return fail(EXIT_USER, "--emit-c needs a JSON model, not a library");
        fu_compile_opts copts = model_compile_opts(&mo, FU_TARGET_C);
        fu_compile_result r;
        if (compile_model(model, &copts, &r) != 0) return EXIT_USER;
        int bad = write_text_atomic(emit_c, r.c_source.s);
        fu_compile_result_free(&r);
        if (bad) return fail(EXIT_USER, "cannot write %s: %s", emit_c, strerror(errno));
    }

    /* The integer inputs' values, known before compiling: those that
     * decide shapes are compiled in (and then bound no more). */
    known_inputs known;
    if (known_inputs_read(inputs, n_inputs, 1, &known) != 0) return EXIT_USER;
    fusec_tensor *known_tensors = calloc((size_t)known.n + 1, sizeof *known_tensors);
    if (!known_tensors) {
        known_inputs_free(&known);
        return fail(EXIT_USER, "out of memory");
    }
    for (int k = 0; k < known.n; k++) {
        const fu_known_input *ki = &known.known[k];
        known_tensors[k] = (fusec_tensor){ki->name, (fusec_dtype)ki->dtype, ki->rank, ki->shape, ki->data};
    }
    opts.known_inputs = known_tensors;
    opts.n_known_inputs = known.n;
    char err[FU_ERR_LEN];
    fusec_model *m = fusec_load(model, &opts, err, sizeof err);
    if (!m) {
        free(known_tensors);
        known_inputs_free(&known);
        return fail(EXIT_USER, "%s", err);
    }
    fu_array arrays[MAX_INPUT_ARGS];
    memset(arrays, 0, sizeof arrays);
    int status = EXIT_OK;
    /* before the run (not after it), once the model has loaded */
    if (output_dir && make_dirs(output_dir) != 0)
        status = fail(EXIT_USER, "cannot create the output directory %s: %s", output_dir, strerror(errno));
    for (int k = 0; k < n_inputs && status == EXIT_OK; k++) status = bind_input(m, inputs[k], &arrays[k]);
    if (status == EXIT_OK) {
        /* The first run pays the page faults of the mapped weights, so it
         * is reported apart from the median of the others. */
        double *ms = malloc(sizeof(double) * (size_t)repeat);
        if (!ms) status = fail(EXIT_USER, "out of memory");
        for (int r = 0; r < repeat && status == EXIT_OK; r++) {
            /* profile from the second run on when there is one */
            if (profile_ops && r == (repeat > 1) && fusec_profile_enable(m, 1) != 0)
                status = fail(EXIT_USER, "%s", fusec_last_error(m));
            if (status != EXIT_OK) break;
            double t0 = now_seconds();
            if (fusec_run(m) != 0) status = fail(EXIT_USER, "%s", fusec_last_error(m));
            ms[r] = (now_seconds() - t0) * 1e3;
        }
        if (status == EXIT_OK && repeat > 1) {
            qsort(ms + 1, (size_t)(repeat - 1), sizeof(double), compare_doubles);
            fprintf(stderr, "fusec: first run %.3f ms; median of the next %d runs %.3f ms\n", ms[0], repeat - 1,
                    ms[1 + (repeat - 1) / 2]);
        }
        free(ms);
    }
    for (int i = 0; status == EXIT_OK && i < fusec_num_outputs(m); i++) {
        fusec_dtype t;
        int rank;
        int64_t shape[FU_MAX_RANK];
        const void *data;
        const char *name = fusec_output_name(m, i);
        if (fusec_get_output(m, name, &t, &rank, shape, &data) != 0)
            status = fail(EXIT_USER, "%s", fusec_last_error(m));
        else
            print_output(name, t, rank, shape, data, print_all);
    }
    if (status == EXIT_OK && output_dir) status = write_outputs(m, output_dir);
    if (status == EXIT_OK && profile_ops) status = print_profile(m, repeat > 1, profile_top);
    for (int k = 0; k < n_inputs; k++) fu_array_free(&arrays[k]);
    fusec_free(m);
    free(known_tensors);
    known_inputs_free(&known);
    return status;
}

