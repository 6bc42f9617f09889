/* fusec export MODEL.json|MODEL.onnx -o OUT.onnx: the graph after a pass as
 * an ONNX model (ir/onnx_write.c; docs/onnx_export.md). */
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "../ir/onnx_write.h"
#include "../passes/passes.h"

const char help_export[] =
    "usage: fusec export MODEL.json|MODEL.onnx -o OUT.onnx [options]\n"
    "\n"
    "Loads the model, runs the pass pipeline up to a pass and writes the graph as\n"
    "an ONNX model (default domain, opset 23). Fused nodes become ONNX operators\n"
    "(RMSNormalization, LayerNormalization, RotaryEmbedding, Attention, Gelu);\n"
    "SwiGLU and FusedMatMul become ONNX functions (domain \"fusec\") whose bodies\n"
    "are the composed subgraphs. Weights stay in the safetensors file: the\n"
    "initializers reference their byte ranges as external data. When OUT.onnx is\n"
    "in another folder than the weights, OUT.safetensors is made beside it as a\n"
    "hard link to the weights file (a copy, said on stderr, if linking fails).\n"
    "\n"
    "options:\n"
    "  -o, --output OUT.onnx   the model to write (required; atomically)\n"
    "  --after PASS            stop after this pass (default: fuse with the fast\n"
    "                          profile, i.e. the fused graph; dce with bare);\n"
    "                          `load` means no pass at all\n"
    "  --profile bare|fast     pass pipeline (default fast)\n"
    "  --max NAME=N            upper bound of a symbolic dim NAME of an ONNX model\n"
    "  --allow-external-weights  the model's weights file may be outside its folder\n"
    "  -v, --verbose           one line per pass on stderr\n"
    "  -h, --help              this text\n";

int cmd_export(int argc, char **argv) {
    const char *model = NULL, *after = NULL, *out = NULL, *value;
    static char sym_max[1024];
    fu_profile profile = FU_PROFILE_FAST;
    int verbose = 0, allow_external = 0;
    for (int i = 0; i < argc; i++) {
        int r;
        if (is_help(argv[i])) {
            fputs(help_export, stdout);
            return EXIT_OK;
        } else if ((r = option_value(argc, argv, &i, "--after", NULL, &value))) {
            if (r < 0) return usage("export", "%s needs a value", argv[i]);
            after = value;
        } else if ((r = option_value(argc, argv, &i, "--profile", NULL, &value))) {
            if (r < 0) return usage("export", "%s needs a value", argv[i]);
            if (fu_profile_parse(value, &profile)) return usage("export", "unknown profile '%s' (bare or fast)", value);
        } else if ((r = option_value(argc, argv, &i, "--output", "-o", &value))) {
            if (r < 0) return usage("export", "%s needs a value", argv[i]);
            out = value;
        } else if ((r = option_value(argc, argv, &i, "--max", NULL, &value))) {
            if (r < 0) return usage("export", "%s needs a value", argv[i]);
            size_t used = strlen(sym_max);
            if (!strchr(value, '=') || used + strlen(value) + 2 > sizeof sym_max)
                return usage("export", "--max wants NAME=N, got '%s'", value);
            snprintf(sym_max + used, sizeof sym_max - used, "%s%s", used ? "," : "", value);
        } else if (strcmp(argv[i], "--allow-external-weights") == 0) {
            allow_external = 1;
        } else if (strcmp(argv[i], "-v") == 0 || strcmp(argv[i], "--verbose") == 0) {
            verbose = 1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return usage("export", "unknown option '%s'", argv[i]);
        } else if (!model) {
            model = argv[i];
        } else {
            return usage("export", "unexpected argument '%s'", argv[i]);
        }
    }
    if (!model) return usage("export", "no model given");
    size_t n = out ? strlen(out) : 0;
    if (n < 6 || strcmp(out + n - 5, ".onnx") != 0) return usage("export", "-o wants OUT.onnx");
    if (!after) after = profile == FU_PROFILE_FAST ? "fuse" : "dce";
    fu_err err = {0};
    if (fu_pass_check_stop(profile, after, &err) != 0) return usage("export", "%s", err.msg);
    fu_compile_opts copts = {.target = FU_TARGET_GRAPH, .profile = profile, .verbose = verbose, .stop_after = after,
                             .allow_external_weights = allow_external, .sym_max = sym_max[0] ? sym_max : NULL};
    fu_compile_result r;
    if (compile_model(model, &copts, &r) != 0) return EXIT_USER;
    fu_onnx_write_info info;
    int rc = fu_onnx_write(r.graph, out, &info, &err);
    fu_compile_result_free(&r);
    if (rc) return fail(EXIT_USER, "%s", err.msg);
    if (info.data_copied)
        fprintf(stderr, "fusec: copied the weights to %s beside %s (a hard link was not possible)\n",
                info.data_location, out);
    else if (verbose && info.data_created)
        fprintf(stderr, "fusec: %s is a hard link to the weights file\n", info.data_location);
    return EXIT_OK;
}
