/* SwiGLU (fusec op, fast profile): out = gate * sigmoid(gate) * up, the
 * gated activation of Llama/Qwen MLPs, computed by fu_rt_swiglu_f32
 * (runtime/fused.c). Inputs gate and up have the same shape; float32. */
#include <stdio.h>
#include "ops.h"
#include "../ir/shape.h"
#include "emit.h"

static int swiglu_infer(fu_graph *g, fu_node *n, fu_err *err) {
    if (fu_require_input(g, n, 0, FU_MASK(FU_F32), err) || fu_require_input(g, n, 1, FU_MASK(FU_F32), err))
        return -1;
    const fu_value *gate = &g->values[n->in[0]], *up = &g->values[n->in[1]];
    if (gate->rank < 1 || !fu_value_same_shape(gate, up)) return fu_node_fail(err, g, n, "gate and up must have the same shape (rank >= 1)");
    fu_set_output(g, n, 0, FU_F32, gate->rank, gate->shape);
    return 0;
}

static int swiglu_emit(fu_emit *e, const fu_graph *g, const fu_node *n, fu_err *err) {
    const fu_value *gate = &g->values[n->in[0]];
    fu_dim width = gate->shape[gate->rank - 1], rows = fu_dim_const(1);
    for (int i = 0; i < gate->rank - 1; i++) rows = fu_dim_mul(rows, gate->shape[i]);
    char G[320], U[320], Y[320], R[64], N[64];
    snprintf(G, sizeof G, "%s", fu_emit_ptr(e, n->in[0]));
    snprintf(U, sizeof U, "%s", fu_emit_ptr(e, n->in[1]));
    snprintf(Y, sizeof Y, "%s", fu_emit_ptr(e, n->out[0]));
    snprintf(R, sizeof R, "%s", fu_emit_dim(e, rows));
    snprintf(N, sizeof N, "%s", fu_emit_dim(e, width));
    fu_emitf(e, "fu_rt_swiglu_f32(%s, %s, %s, %s, %s, %s, %s, %s);", G, U, Y, R, N, N, N, N);
    (void)err;
    return 0;
}

const fu_op fu_op_SwiGLU = {
    .name = "SwiGLU", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1,
    .infer = swiglu_infer, .emit = swiglu_emit,
    .doc = "Y = gate * sigmoid(gate) * up (SiLU(gate) * up, the Llama/Qwen MLP activation); gate and up have the "
           "same shape. fusec op, no ONNX equivalent.",
    .dtypes = "float32 (gate, up)",
};
