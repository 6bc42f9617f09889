/* fusec info MODEL.json: op counts, parameters, shapes, arena size. */
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "../ir/shape.h"
#include "../ir/weights.h"
#include "../api/fusec.h"

const char help_info[] =
    "usage: fusec info MODEL.json|MODEL.onnx|LIB.so [options]\n"
    "\n"
    "Runs the whole pipeline and prints op counts, parameter count and bytes,\n"
    "symbols, input and output shapes, arena bytes and the weights file. For a\n"
    "library built by `fusec compile`: its symbols, inputs, outputs, arena and\n"
    "weights file.\n"
    "\n"
    "options:\n"
    MODEL_OPTIONS_HELP
    "  -h, --help                  this text\n";

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
        fu_shape_str(g, v->rank, v->shape, ", ", shape, sizeof shape);
        fputs("  ", stdout);
        put_name(stdout, v->name);  /* names from the model are printed escaped */
        printf(" %s %s\n", fu_dtype_name(v->dtype), shape);
    }
}

/* fusec info LIB.so: what a compiled library takes and gives (its
 * metadata, read through the C API; its weights are bound as for a run). */
static int library_info(const char *path) {
    char err[FU_ERR_LEN];
    fusec_options opts = {0};
    fusec_model *m = fusec_load(path, &opts, err, sizeof err);
    if (!m) return fail(EXIT_USER, "%s", err);
    fputs("library: ", stdout);
    put_safe(stdout, path);
    printf("\nsymbols:%s\n", fusec_num_symbols(m) ? "" : " none");
    for (int s = 0; s < fusec_num_symbols(m); s++) {
        fputs("  ", stdout);
        put_name(stdout, fusec_symbol_name(m, s));
        printf(" <= %lld\n", (long long)fusec_symbol_max(m, s));
    }
    for (int io = 0; io < 2; io++) {
        int n = io ? fusec_num_outputs(m) : fusec_num_inputs(m);
        printf("%s:\n", io ? "outputs" : "inputs");
        for (int i = 0; i < n; i++) {
            char shape[512];
            fusec_dtype t;
            if (io) {
                fusec_output_shape(m, i, NULL, NULL, shape, sizeof shape);
                fputs("  ", stdout);
                put_name(stdout, fusec_output_name(m, i));
                t = fusec_output_dtype(m, i);
            } else {
                fusec_input_shape(m, i, NULL, NULL, shape, sizeof shape);
                fputs("  ", stdout);
                put_name(stdout, fusec_input_name(m, i));
                t = fusec_input_dtype(m, i);
            }
            printf(" %s %s\n", fu_dtype_name((fu_dtype)t), shape);
        }
    }
    printf("arena: %lld bytes\nweights file: ", (long long)fusec_arena_bytes(m));
    put_safe(stdout, fusec_weights_path(m) ? fusec_weights_path(m) : "none");
    fputc('\n', stdout);
    fusec_free(m);
    return EXIT_OK;
}

int cmd_info(int argc, char **argv) {
    const char *model = NULL;
    model_opts mo;
    model_opts_init(&mo);
    for (int i = 0; i < argc; i++) {
        int r;
        if (is_help(argv[i])) {
            fputs(help_info, stdout);
            return EXIT_OK;
        } else if ((r = model_option("info", argc, argv, &i, &mo, 0))) {
            if (r < 0) return EXIT_USAGE;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return usage("info", "unknown option '%s'", argv[i]);
        } else if (!model) {
            model = argv[i];
        } else {
            return usage("info", "unexpected argument '%s'", argv[i]);
        }
    }
    if (!model) return usage("info", "no model given");
    size_t len = strlen(model);
    if (len > 3 && strcmp(model + len - 3, ".so") == 0) return library_info(model);
    fu_compile_opts copts = model_compile_opts(&mo, FU_TARGET_GRAPH);
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

    fputs("model: ", stdout);
    put_name(stdout, g->name ? g->name : "?");
    fputs(" (", stdout);
    put_safe(stdout, model);
    printf(")\nprofile: %s\n", mo.profile == FU_PROFILE_FAST ? "fast" : "bare");
    printf("nodes: %d\n", n_nodes);
    for (int k = 0; k < n_ops; k++) {
        char op[64];
        fu_escape(counts[k].op, op, sizeof op);
        printf("  %-16s %d\n", op, counts[k].count);
    }
    printf("parameters: %lld (%lld bytes)\n", (long long)params, (long long)param_bytes);
    printf("symbols:%s\n", g->n_syms ? "" : " none");
    for (int s = 0; s < g->n_syms; s++) {
        fputs("  ", stdout);
        put_name(stdout, g->sym_names[s]);
        printf(" <= %lld\n", (long long)g->sym_max[s]);
    }
    print_tensors(g, "inputs", g->n_inputs, g->inputs);
    print_tensors(g, "outputs", g->n_outputs, g->outputs);
    printf("arena: %lld bytes\n", (long long)g->arena_bytes);
    fputs("weights file: ", stdout);
    put_safe(stdout, g->weights_path ? g->weights_path : "none");
    fputc('\n', stdout);
    for (int i = 0; i < fu_weights_n_files(g->weights); i++) {   /* mapped, not copied */
        const char *f = fu_weights_file_path(g->weights, i);
        if (strcmp(f, g->weights_path ? g->weights_path : "") == 0) continue;
        fputs("  mapped: ", stdout);
        put_safe(stdout, f);
        fputc('\n', stdout);
    }
    free(counts);
    fu_graph_free(g);
    return EXIT_OK;
}

