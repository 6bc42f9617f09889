/* fusec import MODEL.onnx -o OUT.json: the JSON IR of an ONNX model, its
 * initializers and constants written beside it as OUT.safetensors (never
 * inlined as JSON numbers). */
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "../ir/json_ir.h"
#include "../ir/mapguard.h"
#include "../ir/safetensors_write.h"
#include "../ir/weights.h"

const char help_import[] =
    "usage: fusec import MODEL.onnx -o OUT.json [options]\n"
    "\n"
    "Writes the model as JSON IR (docs/ir.md) to OUT.json and its constant data\n"
    "to OUT.safetensors next to it, which OUT.json names as its weights.\n"
    "\n"
    "options:\n"
    "  -o, --output OUT.json   the JSON IR to write (required)\n"
    "  --max NAME=N                upper bound of a symbolic dim NAME (dim_param)\n"
    "  --allow-external-weights    the model's external data may be outside its folder\n"
    "                              (absolute, .., or a symlink out; refused by default)\n"
    "  -h, --help                  this text\n";

int cmd_import(int argc, char **argv) {
    const char *model = NULL, *out = NULL, *value;
    model_opts mo;
    model_opts_init(&mo);
    for (int i = 0; i < argc; i++) {
        int r;
        if (is_help(argv[i])) {
            fputs(help_import, stdout);
            return EXIT_OK;
        } else if ((r = option_value(argc, argv, &i, "--output", "-o", &value))) {
            if (r < 0) return usage("import", "%s needs a value", argv[i]);
            out = value;
        } else if (strncmp(argv[i], "--max", 5) == 0 && (argv[i][5] == 0 || argv[i][5] == '=')) {
            /* the model options that apply to reading (no passes run here) */
            if (model_option("import", argc, argv, &i, &mo, 0) < 0) return EXIT_USAGE;
        } else if (strcmp(argv[i], "--allow-external-weights") == 0) {
            mo.allow_external = 1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return usage("import", "unknown option '%s'", argv[i]);
        } else if (!model) {
            model = argv[i];
        } else {
            return usage("import", "unexpected argument '%s'", argv[i]);
        }
    }
    if (!model) return usage("import", "no model given");
    size_t n = out ? strlen(out) : 0;
    if (n < 6 || strcmp(out + n - 5, ".json") != 0) return usage("import", "-o wants OUT.json");
    fu_err err;
    fu_ir_opts io = {.allow_external_weights = mo.allow_external, .sym_max = mo.sym_max[0] ? mo.sym_max : NULL};
    fu_graph *g = fu_ir_load_opts(model, &io, &err);
    if (!g) return fail(EXIT_USER, "%s", err.msg);
    char *st = malloc(n + 8);
    if (!st) {
        fu_graph_free(g);
        return fail(EXIT_USER, "out of memory");
    }
    snprintf(st, n + 8, "%.*s.safetensors", (int)(n - 5), out);
    fu_mapguard_enter();   /* the initializers may be mapped external data */
    int rc = fu_safetensors_write(g, st, &err);
    fu_mapguard_leave();
    if (!rc && fu_weights_faulted(g->weights)) {
        remove(st);
        rc = fu_fail(&err, "%s: its weights file shrank while it was being copied", model);
    }
    if (!rc) {
        /* the JSON names its weights relative to its own folder */
        const char *base = strrchr(st, '/');
        free(g->weights_path);
        g->weights_path = strdup(base ? base + 1 : st);
        for (int i = 0; i < g->n_values; i++)
            if (g->values[i].kind == FU_VAL_CONST && g->values[i].data) g->values[i].external = 1;
        atomic_file a;
        if (!g->weights_path || atomic_open(&a, out)) {
            rc = fu_fail(&err, "%s: cannot create", out);
        } else if (fu_ir_write(g, a.f, &err)) {
            atomic_abort(&a);
            rc = -1;
        } else if (atomic_commit(&a)) {
            rc = fu_fail(&err, "%s: write error", out);
        }
        if (rc) remove(st);
    }
    free(st);
    fu_graph_free(g);
    if (rc) return fail(EXIT_USER, "%s", err.msg);
    return EXIT_OK;
}
