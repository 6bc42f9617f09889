/* Gelu (ONNX opset 20), in every profile: a model may use it directly, and
 * the fast profile fuses the composed spellings into it.
 *   approximate = "none" (default): Y = 0.5 X (1 + erf(X / sqrt 2))
 *   approximate = "tanh":           Y = 0.5 X (1 + tanh(sqrt(2/pi) (X + 0.044715 X^3)))
 * Y has X's shape and dtype. float32 only (ONNX also allows float16,
 * bfloat16 and double); computed by fu_rt_gelu_f32 (runtime/gelu.c) over
 * all elements, any rank. */
#include <stdio.h>
#include <string.h>
#include "ops.h"
#include "emit.h"

/* The approximate attribute: 0 for "none", 1 for "tanh" (FU_RT_GELU_ERF /
 * FU_RT_GELU_TANH of runtime/fusec_kernels.h); -1 with err set otherwise. */
static int gelu_approximate(const fu_graph *g, const fu_node *n, fu_err *err) {
    const fu_attr *attr = fu_node_attr(n, "approximate");
    if (!attr) return 0;
    if (attr->kind != FU_ATTR_STRING || !attr->s)
        return fu_node_fail(err, g, n, "attribute 'approximate' must be the string \"none\" or \"tanh\"");
    if (!strcmp(attr->s, "none")) return 0;
    if (!strcmp(attr->s, "tanh")) return 1;
    char s[64];
    fu_sanitize(attr->s, s, sizeof s);
    return fu_node_fail(err, g, n, "attribute 'approximate' must be \"none\" or \"tanh\", got \"%s\"", s);
}

static int gelu_infer(fu_graph *g, fu_node *n, fu_err *err) {
    if (fu_require_input(g, n, 0, FU_MASK(FU_F32), err) || gelu_approximate(g, n, err) < 0) return -1;
    const fu_value *x = &g->values[n->in[0]];
    fu_set_output(g, n, 0, FU_F32, x->rank, x->shape);
    return 0;
}

static int gelu_emit(fu_emit *e, const fu_graph *g, const fu_node *n, fu_err *err) {
    int approximate = gelu_approximate(g, n, err);
    if (approximate < 0) return -1;
    char X[320], Y[320], N[320];
    snprintf(X, sizeof X, "%s", fu_emit_ptr(e, n->in[0]));
    snprintf(Y, sizeof Y, "%s", fu_emit_ptr(e, n->out[0]));
    snprintf(N, sizeof N, "%s", fu_emit_numel(e, n->in[0]));
    fu_emitf(e, "fu_rt_gelu_f32(%s, %s, %s, %s);", X, Y, N,
             approximate ? "FU_RT_GELU_TANH" : "FU_RT_GELU_ERF");
    return 0;
}

const fu_op fu_op_Gelu = {
    .name = "Gelu", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
    .infer = gelu_infer, .emit = gelu_emit,
    .doc = "Y = 0.5 X (1 + erf(X / sqrt 2)), or with approximate \"tanh\" 0.5 X (1 + tanh(sqrt(2/pi) (X + "
           "0.044715 X^3))). ONNX Gelu-20 (which also allows float16, bfloat16, double).",
    .dtypes = "float32",
    .attrs = "approximate (\"none\"): \"none\" or \"tanh\"",
};
