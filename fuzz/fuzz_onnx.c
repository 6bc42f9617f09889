/* libFuzzer target: the ONNX reader (fu_onnx_parse, ir/onnx_read.c) plus
 * the verifier, as `fusec run MODEL.onnx` uses them.
 *
 * Input: an .onnx file's bytes, parsed from memory with symbolic dims
 * bounded (seq=8). A model that reads must be a graph the verifier either
 * accepts or refuses with a message; a refused model must say why. */
#include "fuzz_common.h"
#include "ir/onnx_read.h"
#include "ops/infer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fu_ir_opts opts = {.sym_max = "seq=8,batch=4"};
    fu_err err = {0};
    fu_graph *g = fu_onnx_parse(data, size, "fuzz.onnx", &opts, &err);
    if (!g) {
        if (!err.msg[0]) abort();   /* a refusal names its reason */
        return 0;
    }
    if (fu_infer(g, &err) && !err.msg[0]) abort();
    fu_graph_free(g);
    return 0;
}
