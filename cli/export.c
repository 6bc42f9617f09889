/* fusec export MODEL.json|MODEL.onnx -o OUT.onnx: the graph after a pass as
 * an ONNX model (ir/onnx_write.c; docs/onnx.md, "Writing ONNX"). */
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
    "  -o, --output OUT.onnx       the model to write (required; atomically)\n"
    "  --after PASS                stop after this pass (default: fuse with the fast\n"
    "                              profile, i.e. the fused graph; dce with bare);\n"
    "                              `load` means no pass at all\n"
    "  --specialize NAME=VALUE     compile input NAME in with this value (FILE.npy or a JSON\n"
    "                              array), for an input whose values decide shapes\n"
    MODEL_OPTIONS_HELP
    "  -h, --help                  this text\n";

int cmd_export(int argc, char **argv) {
    const char *model = NULL, *after = NULL, *out = NULL, *value;
    model_opts mo;
    model_opts_init(&mo);
    for (int i = 0; i < argc; i++) {
        int r;
        if (is_help(argv[i])) {
            fputs(help_export, stdout);
            return EXIT_OK;
        } else if ((r = option_value(argc, argv, &i, "--after", NULL, &value))) {
            if (r < 0) return usage("export", "%s needs a value", argv[i]);
            after = value;
        } else if ((r = option_value(argc, argv, &i, "--output", "-o", &value))) {
            if (r < 0) return usage("export", "%s needs a value", argv[i]);
            out = value;
        } else if ((r = model_option("export", argc, argv, &i, &mo, 1))) {
            if (r < 0) return EXIT_USAGE;
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
    if (!after) after = mo.profile == FU_PROFILE_FAST ? "fuse" : "dce";
    fu_err err = {0};
    if (fu_pass_check_stop(mo.profile, after, &err) != 0) return usage("export", "%s", err.msg);
    known_inputs known;
    if (known_inputs_read(mo.specialize, mo.n_specialize, 0, &known) != 0) return EXIT_USER;
    fu_compile_opts copts = model_compile_opts(&mo, FU_TARGET_GRAPH);
    copts.stop_after = after;
    copts.known = known.known;
    copts.n_known = known.n;
    copts.specialize_always = 1;
    fu_compile_result r;
    int compiled = compile_model(model, &copts, &r);
    known_inputs_free(&known);
    if (compiled != 0) return EXIT_USER;
    fu_onnx_write_info info;
    int rc = fu_onnx_write(r.graph, out, &info, &err);
    fu_compile_result_free(&r);
    if (rc) return fail(EXIT_USER, "%s", err.msg);
    if (info.data_copied)
        fprintf(stderr, "fusec: copied the weights to %s beside %s (a hard link was not possible)\n",
                info.data_location, out);
    else if (mo.verbose && info.data_created)
        fprintf(stderr, "fusec: %s is a hard link to the weights file\n", info.data_location);
    return EXIT_OK;
}
