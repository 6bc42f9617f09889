/* libFuzzer target: the JSON IR reader and the verifier.
 *
 * Input: a model file's text. It is parsed as if it were
 * <scratch>/model.json (so "weights": "w.safetensors" maps the harness's
 * small weights file, see fuzz_common.h) and, when it loads, verified
 * (fu_infer: ops, arity, names, cycles, dtypes and shapes). Any error is a
 * fine answer; a crash, a sanitizer report or a leak is a finding.
 * FUZZ_VERBOSE=1 prints each input's outcome (to check seeds). */
#include "fuzz_common.h"
#include "ir/json_ir.h"
#include "ops/infer.h"

static char model_path[320];
static int verbose;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fz_write_weights();
    snprintf(model_path, sizeof model_path, "%s/model.json", fz_scratch());
    const char *v = getenv("FUZZ_VERBOSE");
    verbose = v && *v == '1';
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = fz_cstr(data, size);
    fu_err err = {0};
    fu_graph *g = fu_ir_parse(text, model_path, &err);
    int rc = g ? fu_infer(g, &err) : -1;
    if (verbose) fprintf(stderr, "fuzz_ir: %s%s\n", rc ? "refused: " : "verified", rc ? err.msg : "");
    fu_graph_free(g);
    free(text);
    return 0;
}
