/* fusec: the command-line driver.
 *
 *   fusec compile MODEL.json -o libNAME.so     build a shared library (gcc)
 *   fusec run MODEL.json|LIB.so --input ...     run a model, print outputs
 *   fusec dump MODEL.json [--after PASS]        the graph after some pass
 *   fusec info MODEL.json                       summary of the planned graph
 *
 * Exit status: 0 success, 1 user error (bad model, input, failed build),
 * 2 usage error. Every message goes to stderr as "fusec: ...". */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "driver.h"
#include "../ir/json_ir.h"
#include "../ir/npy.h"
#include "../passes/passes.h"
#include "../passes/fusion.h"
#include "../runtime/fusec.h"

enum { EXIT_OK = 0, EXIT_USER = 1, EXIT_USAGE = 2 };

/* The CLI passes dtypes between the IR and the public API by value. */
_Static_assert((int)FUSEC_FLOAT32 == (int)FU_F32 && (int)FUSEC_FLOAT16 == (int)FU_F16 &&
                   (int)FUSEC_BFLOAT16 == (int)FU_BF16 && (int)FUSEC_INT64 == (int)FU_I64 &&
                   (int)FUSEC_INT32 == (int)FU_I32 && (int)FUSEC_BOOL == (int)FU_BOOL,
               "fusec_dtype and fu_dtype must agree");

/* ---- help texts ------------------------------------------------------------ */

static const char help_main[] =
    "usage: fusec <command> [options]\n"
    "\n"
    "fusec compiles neural-network models given as JSON IR into C and runs them.\n"
    "\n"
    "commands:\n"
    "  compile MODEL.json -o libNAME.so   build a shared library with gcc\n"
    "  run MODEL.json|LIB.so --input ...   run a model on inputs and print its outputs\n"
    "  dump MODEL.json                     write the graph (JSON IR or dot) after a pass\n"
    "  info MODEL.json                     op counts, parameters, shapes, arena size\n"
    "  help [COMMAND]                      this text, or a command's options\n"
    "\n"
    "Run `fusec COMMAND --help` for the options of a command.\n"
    "Exit status: 0 success, 1 bad model / input / failed build, 2 usage error.\n";

static const char help_compile[] =
    "usage: fusec compile MODEL.json -o libNAME.so [options]\n"
    "\n"
    "Runs the pass pipeline, emits C and builds it with gcc -O3 -march=native into a\n"
    "shared library linked against libfusec_rt.so. Load it with fusec_load() or\n"
    "`fusec run libNAME.so`.\n"
    "\n"
    "options:\n"
    "  -o, --output FILE.so    the library to write (required; replaced atomically)\n"
    "  --header FILE.h         also write a C header declaring the entry point\n"
    "                          (default: NAME.h next to libNAME.so)\n"
    "  --profile bare|fast     pass pipeline (default fast)\n"
    "  --precision f32|bf16    matmul precision (default f32); bf16 rounds activations\n"
    "                          to bfloat16 against bfloat16-packed weights (fast profile)\n"
    "  -v, --verbose           one line per pass on stderr\n"
    "  -h, --help              this text\n";

static const char help_run[] =
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
    "  --profile bare|fast         pass pipeline (default fast)\n"
    "  --precision f32|bf16        matmul precision (default f32); bf16 rounds activations\n"
    "                              to bfloat16 against bfloat16-packed weights (fast profile)\n"
    "  --cache-dir DIR             where aot libraries and packed weights are cached\n"
    "                              (default build/cache)\n"
    "  --output-dir DIR            also write each output to DIR/<name>.npy\n"
    "  --repeat N                  run N times; print the first run's time and the median of the rest\n"
    "  --profile-ops               time every node and print, after the outputs, the time per op kind\n"
    "                              and the slowest nodes with their share of the forward; with\n"
    "                              --repeat N the times are sums over runs 2..N (the first run pays\n"
    "                              the page faults of the mapped weights)\n"
    "  --profile-top K             nodes listed by --profile-ops (default 20; 0 lists every node)\n"
    "  -v, --verbose               compile steps on stderr\n"
    "  -h, --help                  this text\n";

static const char help_dump[] =
    "usage: fusec dump MODEL.json [options]\n"
    "\n"
    "Loads the model, runs the pipeline up to a pass and writes the graph.\n"
    "The JSON output is a model that fusec reads again.\n"
    "\n"
    "options:\n"
    "  --after PASS            stop after this pass (default: the whole pipeline);\n"
    "                          `load` means no pass at all\n"
    "  --format json|dot       JSON IR (default) or a Graphviz digraph\n"
    "  --profile bare|fast     pass pipeline (default fast)\n"
    "  --precision f32|bf16    matmul precision (default f32); bf16 rounds activations\n"
    "                          to bfloat16 against bfloat16-packed weights (fast profile)\n"
    "  --explain-fusions       instead of the graph, report what the fusion rules did:\n"
    "                          per rule the fused count, each fused anchor node and\n"
    "                          what it became, each near miss and why it did not fuse;\n"
    "                          likewise row pruning (prune_rows: the nodes that now compute\n"
    "                          only selected rows, where each row selection stops and why)\n"
    "                          (runs the whole fast pipeline)\n"
    "  -o, --output FILE       write to FILE (atomically) instead of stdout\n"
    "  -v, --verbose           one line per pass on stderr\n"
    "  -h, --help              this text\n";

static const char help_info[] =
    "usage: fusec info MODEL.json [options]\n"
    "\n"
    "Runs the whole pipeline and prints op counts, parameter count and bytes,\n"
    "symbols, input and output shapes, arena bytes and the weights file.\n"
    "\n"
    "options:\n"
    "  --profile bare|fast     pass pipeline (default fast)\n"
    "  --precision f32|bf16    matmul precision (default f32); bf16 rounds activations\n"
    "                          to bfloat16 against bfloat16-packed weights (fast profile)\n"
    "  -v, --verbose           one line per pass on stderr\n"
    "  -h, --help              this text\n";

/* ---- messages -------------------------------------------------------------- */

static int fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("fusec: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return status;
}

static int usage(const char *command, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage(const char *command, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("fusec: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    if (command)
        fprintf(stderr, "Run `fusec %s --help` for its options.\n", command);
    else
        fprintf(stderr, "Run `fusec --help` for the commands.\n");
    return EXIT_USAGE;
}

/* ---- argument parsing ------------------------------------------------------ */

/* Matches option `name` (or its short form) at argv[*i], taking its value
 * from "--name=VALUE" or the next argument. Returns 1 on a match, 0 if
 * argv[*i] is another option, -1 if the value is missing. */
static int option_value(int argc, char **argv, int *i, const char *name, const char *short_name,
                        const char **value) {
    const char *arg = argv[*i];
    size_t n = strlen(name);
    if (strncmp(arg, name, n) == 0 && arg[n] == '=') {
        *value = arg + n + 1;
        return 1;
    }
    if (strcmp(arg, name) != 0 && !(short_name && strcmp(arg, short_name) == 0)) return 0;
    if (*i + 1 >= argc) return -1;
    *value = argv[++*i];
    return 1;
}

static int is_help(const char *arg) { return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0; }

/* ---- files ----------------------------------------------------------------- */

/* A file written to a temp name next to its target and renamed into place
 * on commit, so readers never see half a file. */
typedef struct {
    FILE *f;
    char *tmp;
    const char *path;
} atomic_file;

static int atomic_open(atomic_file *a, const char *path) {
    a->path = path;
    a->f = NULL;
    size_t n = strlen(path) + 16;
    if (!(a->tmp = malloc(n))) return -1;
    snprintf(a->tmp, n, "%s.tmpXXXXXX", path);
    int fd = mkstemp(a->tmp);
    if (fd < 0 || fchmod(fd, 0644) != 0 || !(a->f = fdopen(fd, "w"))) {
        if (fd >= 0) {
            close(fd);
            unlink(a->tmp);
        }
        free(a->tmp);
        a->tmp = NULL;
        return -1;
    }
    return 0;
}

static void atomic_abort(atomic_file *a) {
    if (a->f) fclose(a->f);
    if (a->tmp) unlink(a->tmp);
    free(a->tmp);
    a->f = NULL;
    a->tmp = NULL;
}

static int atomic_commit(atomic_file *a) {
    int ok = fflush(a->f) == 0 && !ferror(a->f);
    ok &= fclose(a->f) == 0;
    a->f = NULL;
    if (ok) ok = rename(a->tmp, a->path) == 0;
    if (!ok) unlink(a->tmp);
    free(a->tmp);
    a->tmp = NULL;
    return ok ? 0 : -1;
}

static int write_text_atomic(const char *path, const char *text) {
    atomic_file a;
    if (atomic_open(&a, path) != 0) return -1;
    if (fputs(text, a.f) < 0) {
        atomic_abort(&a);
        return -1;
    }
    return atomic_commit(&a);
}

/* ---- shared steps ---------------------------------------------------------- */

/* fu_compile, its error on stderr. */
static int compile_model(const char *path, const fu_compile_opts *o, fu_compile_result *r) {
    fu_err err = {{0}};
    if (fu_compile(path, o, r, &err) == 0) return 0;
    fail(EXIT_USER, "%s", err.msg);
    return -1;
}

static void shape_text(const fu_graph *g, const fu_value *v, char *buf, size_t n) {
    size_t len = (size_t)snprintf(buf, n, "[");
    for (int k = 0; k < v->rank && len < n; k++) {
        char d[64];
        fu_dim_str(g, v->shape[k], d, sizeof d);
        len += (size_t)snprintf(buf + len, n - len, "%s%s", k ? ", " : "", d);
    }
    if (len < n) snprintf(buf + len, n - len, "]");
}

/* ---- fusec compile ---------------------------------------------------------- */

/* lib<NAME>.so -> <NAME>.h in the same directory; other.so -> other.h */
static char *default_header_path(const char *so_path) {
    size_t n = strlen(so_path);
    char *h = malloc(n + 3);
    if (!h) return NULL;
    const char *base = strrchr(so_path, '/');
    base = base ? base + 1 : so_path;
    size_t dir_len = (size_t)(base - so_path);
    size_t base_len = strlen(base) - 3;   /* without ".so" */
    if (base_len > 3 && strncmp(base, "lib", 3) == 0) base += 3, base_len -= 3;
    snprintf(h, n + 3, "%.*s%.*s.h", (int)dir_len, so_path, (int)base_len, base);
    return h;
}

static int cmd_compile(int argc, char **argv) {
    const char *model = NULL, *so_path = NULL, *header = NULL, *emit_c = NULL, *value;
    fu_profile profile = FU_PROFILE_FAST;
    fu_precision precision = FU_PRECISION_F32;
    int verbose = 0;
    for (int i = 0; i < argc; i++) {
        int r;
        if (is_help(argv[i])) {
            fputs(help_compile, stdout);
            return EXIT_OK;
        } else if ((r = option_value(argc, argv, &i, "--output", "-o", &value))) {
            if (r < 0) return usage("compile", "%s needs a value", argv[i]);
            so_path = value;
        } else if ((r = option_value(argc, argv, &i, "--header", NULL, &value))) {
            if (r < 0) return usage("compile", "%s needs a value", argv[i]);
            header = value;
        } else if ((r = option_value(argc, argv, &i, "--profile", NULL, &value))) {
            if (r < 0) return usage("compile", "%s needs a value", argv[i]);
            if (fu_profile_parse(value, &profile)) return usage("compile", "unknown profile '%s' (bare or fast)", value);
        } else if ((r = option_value(argc, argv, &i, "--precision", NULL, &value))) {
            if (r < 0) return usage("compile", "%s needs a value", argv[i]);
            if (fu_precision_parse(value, &precision)) return usage("compile", "unknown precision '%s' (f32 or bf16)", value);
        } else if ((r = option_value(argc, argv, &i, "--emit-c", NULL, &value))) {
            /* hidden: writes the generated C, for tests and debugging */
            if (r < 0) return usage("compile", "%s needs a value", argv[i]);
            emit_c = value;
        } else if (strcmp(argv[i], "-v") == 0 || strcmp(argv[i], "--verbose") == 0) {
            verbose = 1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return usage("compile", "unknown option '%s'", argv[i]);
        } else if (!model) {
            model = argv[i];
        } else {
            return usage("compile", "unexpected argument '%s'", argv[i]);
        }
    }
    if (!model) return usage("compile", "no model given");
    if (!so_path) return usage("compile", "no output library given (-o libNAME.so)");
    size_t so_len = strlen(so_path);
    if (so_len < 4 || strcmp(so_path + so_len - 3, ".so") != 0 || so_path[so_len - 4] == '/')
        return usage("compile", "the output library must be named NAME.so, got '%s'", so_path);

    char *default_header = header ? NULL : default_header_path(so_path);
    if (!header) header = default_header;
    fu_compile_opts copts = {.target = FU_TARGET_C, .profile = profile, .precision = precision, .verbose = verbose};
    fu_compile_result r = {0};
    int status = EXIT_USER;
    if (compile_model(model, &copts, &r) != 0) goto done;
    if (emit_c && write_text_atomic(emit_c, r.c_source.s) != 0) {
        fail(EXIT_USER, "cannot write %s: %s", emit_c, strerror(errno));
        goto done;
    }
    fu_err err = {{0}};
    if (fu_aot_build(r.c_source.s, so_path, header, &err) != 0) {
        fail(EXIT_USER, "%s: %s", model, err.msg);
        goto done;
    }
    printf("%s: wrote %s and %s (arena %lld bytes)\n", model, so_path, header, (long long)r.graph->arena_bytes);
    status = EXIT_OK;
done:
    fu_compile_result_free(&r);
    free(default_header);
    return status;
}

/* ---- fusec run ------------------------------------------------------------- */

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

static void print_output(const char *name, fusec_dtype t, int rank, const int64_t *shape, const void *data) {
    int64_t numel = 1;
    printf("%s %s [", name, fu_dtype_name((fu_dtype)t));
    for (int k = 0; k < rank; k++) {
        printf("%s%lld", k ? ", " : "", (long long)shape[k]);
        numel *= shape[k];
    }
    printf("]");
    for (int64_t i = 0; i < numel && i < 8; i++) {
        double v = element_as_double(t, data, i);
        if (t == FUSEC_INT64 || t == FUSEC_INT32 || t == FUSEC_BOOL)
            printf(" %lld", (long long)v);
        else
            printf(" %.6g", v);
    }
    if (numel > 8) printf(" ...");
    printf("\n");
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
    if (index < 0) {
        int status = fail(EXIT_USER, "the model has no input named '%s'", name ? name : arg);
        free(name);
        return status;
    }
    fu_err err = {{0}};
    const char *p = value;
    while (*p == ' ') p++;
    /* A path like 3.npy is not a number: a scalar must parse in full. */
    char *number_end;
    strtod(p, &number_end);
    int is_number = number_end != p && strspn(number_end, " ") == strlen(number_end);
    int is_json = *p == '[' || is_number || strcmp(p, "true") == 0 || strcmp(p, "false") == 0;
    int rc = is_json ? fu_array_from_json(value, (fu_dtype)fusec_input_dtype(m, index), array, &err)
                     : fu_npy_read(value, array, &err);
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
        fu_err err = {{0}};
        if (fu_npy_write(path, &a, &err) != 0) status = fail(EXIT_USER, "%s", err.msg);
        free(path);
    }
    free(used);
    return status;
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

static int cmd_run(int argc, char **argv) {
    const char *model = NULL, *output_dir = NULL, *emit_c = NULL, *value;
    const char *inputs[MAX_INPUT_ARGS];
    int n_inputs = 0, repeat = 1, profile_ops = 0, profile_top = 20;
    fusec_options opts = {.profile = "fast", .backend = "jit", .cache_dir = NULL};
    fu_profile profile = FU_PROFILE_FAST;
    fu_precision precision = FU_PRECISION_F32;
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
        } else if ((r = option_value(argc, argv, &i, "--profile", NULL, &value))) {
            if (r < 0) return usage("run", "%s needs a value", argv[i]);
            if (fu_profile_parse(value, &profile)) return usage("run", "unknown profile '%s' (bare or fast)", value);
            opts.profile = value;
        } else if ((r = option_value(argc, argv, &i, "--precision", NULL, &value))) {
            if (r < 0) return usage("run", "%s needs a value", argv[i]);
            if (fu_precision_parse(value, &precision)) return usage("run", "unknown precision '%s' (f32 or bf16)", value);
            opts.precision = value;
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
            /* hidden: writes the generated C, for tests and debugging */
            if (r < 0) return usage("run", "%s needs a value", argv[i]);
            emit_c = value;
        } else if (strcmp(argv[i], "--profile-ops") == 0) {
            profile_ops = 1;
        } else if ((r = option_value(argc, argv, &i, "--profile-top", NULL, &value))) {
            if (r < 0) return usage("run", "%s needs a value", argv[i]);
            char *end;
            long k = strtol(value, &end, 10);
            if (*end || !*value || k < 0 || k > 1000000000) return usage("run", "--profile-top wants a count >= 0, got '%s'", value);
            profile_top = (int)k;
        } else if (strcmp(argv[i], "-v") == 0 || strcmp(argv[i], "--verbose") == 0) {
            opts.verbose = 1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return usage("run", "unknown option '%s'", argv[i]);
        } else if (!model) {
            model = argv[i];
        } else {
            return usage("run", "unexpected argument '%s'", argv[i]);
        }
    }
    if (!model) return usage("run", "no model given");
    for (int k = 0; k < n_inputs; k++) {
        const char *eq = strchr(inputs[k], '=');
        if (!eq || eq == inputs[k])
            return usage("run", "--input wants NAME=FILE.npy or NAME=[values], got '%s'", inputs[k]);
    }

    if (emit_c) {
        size_t len = strlen(model);
        if (len >= 3 && strcmp(model + len - 3, ".so") == 0)
            return fail(EXIT_USER, "--emit-c needs a JSON model, not a library");
        fu_compile_opts copts = {.target = FU_TARGET_C, .profile = profile, .precision = precision,
                                 .verbose = opts.verbose};
        fu_compile_result r;
        if (compile_model(model, &copts, &r) != 0) return EXIT_USER;
        int bad = write_text_atomic(emit_c, r.c_source.s);
        fu_compile_result_free(&r);
        if (bad) return fail(EXIT_USER, "cannot write %s: %s", emit_c, strerror(errno));
    }

    char err[FU_ERR_LEN];
    fusec_model *m = fusec_load(model, &opts, err, sizeof err);
    if (!m) return fail(EXIT_USER, "%s", err);
    fu_array arrays[MAX_INPUT_ARGS];
    memset(arrays, 0, sizeof arrays);
    int status = EXIT_OK;
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
            print_output(name, t, rank, shape, data);
    }
    if (status == EXIT_OK && output_dir) status = write_outputs(m, output_dir);
    if (status == EXIT_OK && profile_ops) status = print_profile(m, repeat > 1, profile_top);
    for (int k = 0; k < n_inputs; k++) fu_array_free(&arrays[k]);
    fusec_free(m);
    return status;
}

/* ---- fusec dump -------------------------------------------------------------- */

/* The --explain-fusions report: rules in the order they first appear in the
 * log, each with its counts, then every fused anchor and every near miss. */
static void print_fusion_report(FILE *f, const char *model, const fu_fusion_log *log) {
    fprintf(f, "fusion report for %s\n", model);
    if (log->n == 0) {
        fputs("no fusion rule matched anything (nothing fused, no near misses)\n", f);
        return;
    }
    fputs("\nrule                 fused  near misses\n", f);
    for (int i = 0; i < log->n; i++) {
        int seen = 0;
        for (int k = 0; k < i && !seen; k++) seen = strcmp(log->events[k].rule, log->events[i].rule) == 0;
        if (seen) continue;
        const char *rule = log->events[i].rule;
        fprintf(f, "%-20s %5d  %11d\n", rule, fu_fusion_log_count(log, rule, 1), fu_fusion_log_count(log, rule, 0));
    }
    for (int fused = 1; fused >= 0; fused--) {
        int count = fu_fusion_log_count(log, NULL, fused);
        fprintf(f, "\n%s (%d):\n", fused ? "fused" : "near misses", count);
        if (count == 0) fputs("  none\n", f);
        for (int i = 0; i < log->n; i++) {
            const fu_fusion_event *ev = &log->events[i];
            if (ev->fused != fused) continue;
            fprintf(f, "  %-20s node '%s'%s %s\n", ev->rule, ev->node, fused ? " ->" : ":", ev->reason);
        }
    }
}

/* Runs the fast pipeline with a fusion log and writes the report to f. */
static int explain_fusions(const char *model, int verbose, FILE *f) {
    fu_fusion_log log = {0};
    fu_compile_opts copts = {.target = FU_TARGET_GRAPH, .profile = FU_PROFILE_FAST, .verbose = verbose,
                             .fusion_log = &log};
    fu_compile_result r;
    int rc = compile_model(model, &copts, &r);
    fu_compile_result_free(&r);
    if (rc != 0) {
        fu_fusion_log_free(&log);
        return EXIT_USER;
    }
    print_fusion_report(f, model, &log);
    fu_fusion_log_free(&log);
    return EXIT_OK;
}

static int cmd_dump(int argc, char **argv) {
    const char *model = NULL, *after = NULL, *format = "json", *out_path = NULL, *value;
    fu_profile profile = FU_PROFILE_FAST;
    fu_precision precision = FU_PRECISION_F32;
    int verbose = 0, explain = 0, profile_given = 0;
    for (int i = 0; i < argc; i++) {
        int r;
        if (is_help(argv[i])) {
            fputs(help_dump, stdout);
            return EXIT_OK;
        } else if ((r = option_value(argc, argv, &i, "--after", NULL, &value))) {
            if (r < 0) return usage("dump", "%s needs a value", argv[i]);
            after = value;
        } else if ((r = option_value(argc, argv, &i, "--format", NULL, &value))) {
            if (r < 0) return usage("dump", "%s needs a value", argv[i]);
            if (strcmp(value, "json") != 0 && strcmp(value, "dot") != 0)
                return usage("dump", "unknown format '%s' (json or dot)", value);
            format = value;
        } else if ((r = option_value(argc, argv, &i, "--profile", NULL, &value))) {
            if (r < 0) return usage("dump", "%s needs a value", argv[i]);
            if (fu_profile_parse(value, &profile)) return usage("dump", "unknown profile '%s' (bare or fast)", value);
            profile_given = 1;
        } else if ((r = option_value(argc, argv, &i, "--precision", NULL, &value))) {
            if (r < 0) return usage("dump", "%s needs a value", argv[i]);
            if (fu_precision_parse(value, &precision)) return usage("dump", "unknown precision '%s' (f32 or bf16)", value);
        } else if ((r = option_value(argc, argv, &i, "--output", "-o", &value))) {
            if (r < 0) return usage("dump", "%s needs a value", argv[i]);
            out_path = value;
        } else if (strcmp(argv[i], "-v") == 0 || strcmp(argv[i], "--verbose") == 0) {
            verbose = 1;
        } else if (strcmp(argv[i], "--explain-fusions") == 0) {
            explain = 1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return usage("dump", "unknown option '%s'", argv[i]);
        } else if (!model) {
            model = argv[i];
        } else {
            return usage("dump", "unexpected argument '%s'", argv[i]);
        }
    }
    if (!model) return usage("dump", "no model given");
    if (explain && (after || (profile_given && profile != FU_PROFILE_FAST)))
        return usage("dump", "--explain-fusions runs the whole fast pipeline (no --after, no --profile bare)");
    fu_err err = {{0}};
    if (after && fu_pass_check_stop(profile, after, &err) != 0) return usage("dump", "%s", err.msg);

    if (explain) {
        atomic_file a = {0};
        FILE *f = stdout;
        if (out_path) {
            if (atomic_open(&a, out_path) != 0) return fail(EXIT_USER, "cannot write %s: %s", out_path, strerror(errno));
            f = a.f;
        }
        int status = explain_fusions(model, verbose, f);
        if (out_path) {
            if (status != EXIT_OK) atomic_abort(&a);
            else if (atomic_commit(&a) != 0) return fail(EXIT_USER, "cannot write %s: %s", out_path, strerror(errno));
        } else if (status == EXIT_OK && fflush(stdout) != 0) {
            return fail(EXIT_USER, "cannot write the output: %s", strerror(errno));
        }
        return status;
    }

    fu_compile_opts copts = {.target = FU_TARGET_GRAPH, .profile = profile, .precision = precision,
                             .verbose = verbose, .stop_after = after};
    fu_compile_result r;
    if (compile_model(model, &copts, &r) != 0) return EXIT_USER;
    fu_graph *g = r.graph;
    atomic_file a = {0};
    FILE *f = stdout;
    if (out_path) {
        if (atomic_open(&a, out_path) != 0) {
            fu_graph_free(g);
            return fail(EXIT_USER, "cannot write %s: %s", out_path, strerror(errno));
        }
        f = a.f;
    }
    int rc = strcmp(format, "dot") == 0 ? fu_ir_write_dot(g, f, &err) : fu_ir_write(g, f, &err);
    fu_graph_free(g);
    if (rc != 0) {
        if (out_path) atomic_abort(&a);
        return fail(EXIT_USER, "%s", err.msg);
    }
    if (out_path && atomic_commit(&a) != 0) return fail(EXIT_USER, "cannot write %s: %s", out_path, strerror(errno));
    if (!out_path && fflush(stdout) != 0) return fail(EXIT_USER, "cannot write the output: %s", strerror(errno));
    return EXIT_OK;
}

/* ---- fusec info -------------------------------------------------------------- */

typedef struct {
    const char *op;
    int count;
} op_count;

static int by_count_then_name(const void *a, const void *b) {
    const op_count *x = a, *y = b;
    if (x->count != y->count) return y->count - x->count;
    return strcmp(x->op, y->op);
}

static void print_tensors(const fu_graph *g, const char *title, int n, const int *values) {
    printf("%s:\n", title);
    for (int i = 0; i < n; i++) {
        const fu_value *v = &g->values[values[i]];
        char shape[512];
        shape_text(g, v, shape, sizeof shape);
        printf("  %s %s %s\n", v->name, fu_dtype_name(v->dtype), shape);
    }
}

static int cmd_info(int argc, char **argv) {
    const char *model = NULL, *value;
    fu_profile profile = FU_PROFILE_FAST;
    fu_precision precision = FU_PRECISION_F32;
    int verbose = 0;
    for (int i = 0; i < argc; i++) {
        int r;
        if (is_help(argv[i])) {
            fputs(help_info, stdout);
            return EXIT_OK;
        } else if ((r = option_value(argc, argv, &i, "--profile", NULL, &value))) {
            if (r < 0) return usage("info", "%s needs a value", argv[i]);
            if (fu_profile_parse(value, &profile)) return usage("info", "unknown profile '%s' (bare or fast)", value);
        } else if ((r = option_value(argc, argv, &i, "--precision", NULL, &value))) {
            if (r < 0) return usage("info", "%s needs a value", argv[i]);
            if (fu_precision_parse(value, &precision)) return usage("info", "unknown precision '%s' (f32 or bf16)", value);
        } else if (strcmp(argv[i], "-v") == 0 || strcmp(argv[i], "--verbose") == 0) {
            verbose = 1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return usage("info", "unknown option '%s'", argv[i]);
        } else if (!model) {
            model = argv[i];
        } else {
            return usage("info", "unexpected argument '%s'", argv[i]);
        }
    }
    if (!model) return usage("info", "no model given");
    fu_compile_opts copts = {.target = FU_TARGET_GRAPH, .profile = profile, .precision = precision, .verbose = verbose};
    fu_compile_result r;
    if (compile_model(model, &copts, &r) != 0) return EXIT_USER;
    fu_graph *g = r.graph;

    op_count *counts = calloc((size_t)g->n_nodes + 1, sizeof *counts);
    if (!counts) {
        fu_graph_free(g);
        return fail(EXIT_USER, "out of memory");
    }
    int n_ops = 0, n_nodes = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i].dead) continue;
        n_nodes++;
        int k = 0;
        while (k < n_ops && strcmp(counts[k].op, g->nodes[i].op) != 0) k++;
        if (k == n_ops) counts[n_ops++].op = g->nodes[i].op;
        counts[k].count++;
    }
    qsort(counts, (size_t)n_ops, sizeof *counts, by_count_then_name);

    int64_t params = 0, param_bytes = 0;
    for (int v = 0; v < g->n_values; v++) {
        const fu_value *val = &g->values[v];
        int64_t numel;
        if (val->kind != FU_VAL_CONST || fu_value_numel_const(val, &numel) != 0) continue;
        params += numel;
        param_bytes += numel * (int64_t)fu_dtype_size(val->dtype);
    }

    printf("model: %s (%s)\n", g->name ? g->name : "?", model);
    printf("profile: %s\n", profile == FU_PROFILE_FAST ? "fast" : "bare");
    printf("nodes: %d\n", n_nodes);
    for (int k = 0; k < n_ops; k++) printf("  %-16s %d\n", counts[k].op, counts[k].count);
    printf("parameters: %lld (%lld bytes)\n", (long long)params, (long long)param_bytes);
    printf("symbols:%s\n", g->n_syms ? "" : " none");
    for (int s = 0; s < g->n_syms; s++) printf("  %s <= %lld\n", g->sym_names[s], (long long)g->sym_max[s]);
    print_tensors(g, "inputs", g->n_inputs, g->inputs);
    print_tensors(g, "outputs", g->n_outputs, g->outputs);
    printf("arena: %lld bytes\n", (long long)g->arena_bytes);
    printf("weights file: %s\n", g->weights_path ? g->weights_path : "none");
    free(counts);
    fu_graph_free(g);
    return EXIT_OK;
}

/* ---- main ------------------------------------------------------------------- */

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} command;

static const command commands[] = {
    {"compile", cmd_compile, help_compile},
    {"run", cmd_run, help_run},
    {"dump", cmd_dump, help_dump},
    {"info", cmd_info, help_info},
};
#define N_COMMANDS (int)(sizeof commands / sizeof commands[0])

int main(int argc, char **argv) {
    if (argc < 2) {
        fputs(help_main, stderr);
        return EXIT_USAGE;
    }
    const char *name = argv[1];
    if (is_help(name)) {
        fputs(help_main, stdout);
        return EXIT_OK;
    }
    if (strcmp(name, "help") == 0) {
        if (argc < 3) {
            fputs(help_main, stdout);
            return EXIT_OK;
        }
        for (int c = 0; c < N_COMMANDS; c++)
            if (strcmp(argv[2], commands[c].name) == 0) {
                fputs(commands[c].help, stdout);
                return EXIT_OK;
            }
        return usage(NULL, "unknown command '%s'", argv[2]);
    }
    for (int c = 0; c < N_COMMANDS; c++)
        if (strcmp(name, commands[c].name) == 0) return commands[c].run(argc - 2, argv + 2);
    return usage(NULL, "unknown command '%s'", name);
}
