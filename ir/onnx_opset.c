/* Older opsets the ONNX reader accepts (ir/onnx_opset.h). fusec implements
 * each op as opsets 13 and later define it; a model that imports an older
 * default-domain opset reads the same when every op it uses has had that
 * meaning since that opset. For each op, the version below is the oldest
 * ONNX definition whose every valid node fusec reads with the same result:
 * later versions that only added types, negative axes or indices, or an
 * optional input or attribute with the old behaviour as default do not
 * count; a changed default, a removed legacy attribute (broadcast,
 * consumed_inputs), an attribute that became an input in a form the reader
 * does not convert (Slice-1, Reshape-1, Tile-1), or changed semantics
 * (Softmax and LogSoftmax before 13 flatten to 2-D) does. From the ONNX
 * operator changelog (onnx/defs, Debian's onnx 1.12). */
#include <string.h>
#include "onnx_opset.h"

static const struct {
    const char *op;
    int64_t since;
} since_table[] = {
    /* broadcast attribute removed, numpy broadcasting: 7 */
    {"Add", 7}, {"Sub", 7}, {"Mul", 7}, {"Div", 7}, {"Pow", 7}, {"Equal", 7}, {"Less", 7},
    {"Greater", 7}, {"And", 7}, {"Or", 7}, {"Gemm", 7},
    /* consumed_inputs removed: 6 */
    {"Sqrt", 6}, {"Reciprocal", 6}, {"Neg", 6}, {"Exp", 6}, {"Log", 6}, {"Tanh", 6},
    {"Sigmoid", 6}, {"Relu", 6}, {"Abs", 6},
    /* Max/Min-6 want equal shapes, a case of fusec's broadcasting; Max-1 had consumed_inputs */
    {"Max", 6}, {"Min", 6},
    /* Cast-1's 'to' is a string; 6 made it the TensorProto number */
    {"Cast", 6},
    /* new ops: their first version */
    {"Not", 1}, {"Cos", 7}, {"Sin", 7}, {"Erf", 9}, {"Where", 9}, {"Expand", 8},
    {"LessOrEqual", 12}, {"GreaterOrEqual", 12}, {"Range", 11}, {"ConstantOfShape", 9},
    {"Trilu", 14}, {"LayerNormalization", 17}, {"Gelu", 20},
    {"MatMul", 1}, {"Identity", 1}, {"Transpose", 1}, {"Shape", 1}, {"Constant", 1},
    /* axes as attributes (converted to the input form by the reader) */
    {"ReduceMean", 1}, {"ReduceSum", 1}, {"ReduceMax", 1}, {"Squeeze", 1}, {"Unsqueeze", 1},
    {"Flatten", 1}, {"Gather", 1},
    /* Split-1 took split as an input or attribute; 2: attribute, axis default 0 */
    {"Split", 2},
    /* Concat-1's axis was optional (default 1); 4 made it required */
    {"Concat", 4},
    /* shape, starts/ends/axes/steps, repeats became inputs */
    {"Reshape", 5}, {"Slice", 10}, {"Tile", 6},
    /* flattened to 2-D around axis (default 1) before 13 */
    {"Softmax", 13}, {"LogSoftmax", 13},
};

int64_t fu_onnx_op_since(const char *op) {
    for (size_t i = 0; i < sizeof since_table / sizeof since_table[0]; i++)
        if (strcmp(since_table[i].op, op) == 0) return since_table[i].since;
    return 13;
}
