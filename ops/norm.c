/* Fused normalisations of the fast profile: RMSNormalization and
 * LayerNormalization (ONNX-23 names and attributes). Both normalise over the
 * last axis only (axis = -1), float32 only; the work is done by
 * fu_rt_rms_norm_f32 / fu_rt_layer_norm_f32 on x viewed as [rows, n].
 *
 * fusec extension: RMSNormalization's scale is optional (the fuse pass
 * leaves out a scale that is not a [n] vector). LayerNormalization's Mean
 * and InvStdDev outputs are not supported. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "ops.h"
#include "emit.h"

/* Optional input i: its value index, or -1 when absent or "". */
static int optional_input(const fu_node *n, int i) { return i < n->n_in ? n->in[i] : -1; }

/* Checks a per-channel parameter (scale or bias): float32 [n]. */
static int check_channel_param(const fu_graph *g, const fu_node *n, int i, const char *what, fu_dim last,
                               fu_err *err) {
    if (optional_input(n, i) < 0) return 0;
    if (fu_require_input(g, n, i, FU_MASK(FU_F32), err)) return -1;
    const fu_value *p = &g->values[n->in[i]];
    char want[64];
    fu_dim_str(g, last, want, sizeof want);
    if (p->rank != 1 || !fu_dim_eq(p->shape[0], last)) {
        char got[128] = "[";
        for (int k = 0; k < p->rank; k++) {
            char d[64];
            fu_dim_str(g, p->shape[k], d, sizeof d);
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s", k ? ", " : "", d);
        }
        snprintf(got + strlen(got), sizeof got - strlen(got), "]");
        return fu_node_fail(err, g, n, "%s must have shape [%s] (the last dim of X), got %s", what, want, got);
    }
    return 0;
}

/* Shared checks: X float32 rank >= 1, axis is the last axis, params fit. */
static int norm_check(const fu_graph *g, const fu_node *n, int n_params, fu_err *err) {
    if (fu_require_input(g, n, 0, FU_MASK(FU_F32), err)) return -1;
    const fu_value *x = &g->values[n->in[0]];
    if (x->rank < 1) return fu_node_fail(err, g, n, "X must have rank >= 1 (got a scalar)");
    int64_t axis = fu_attr_int(n, "axis", -1);
    if (axis != -1 && axis != x->rank - 1)
        return fu_node_fail(err, g, n, "only axis = -1 (the last axis) is supported, got axis = %lld for rank %d",
                            (long long)axis, x->rank);
    /* The kernels add epsilon in float32: it must stay a finite float. */
    double eps = fu_attr_float(n, "epsilon", 1e-5);
    if (!(eps >= 0) || !isfinite((float)eps))
        return fu_node_fail(err, g, n, "attribute 'epsilon' must be finite and >= 0 as a float32, got %g", eps);
    static const char *const names[] = {"scale", "bias"};
    for (int i = 0; i < n_params; i++)
        if (check_channel_param(g, n, 1 + i, names[i], x->shape[x->rank - 1], err)) return -1;
    return 0;
}

static int rms_norm_infer(fu_graph *g, fu_node *n, fu_err *err) {
    if (norm_check(g, n, 1, err)) return -1;
    const fu_value *x = &g->values[n->in[0]];
    fu_set_output(g, n, 0, FU_F32, x->rank, x->shape);
    return 0;
}

static int layer_norm_infer(fu_graph *g, fu_node *n, fu_err *err) {
    if (norm_check(g, n, 2, err)) return -1;
    const fu_value *x = &g->values[n->in[0]];
    fu_set_output(g, n, 0, FU_F32, x->rank, x->shape);
    return 0;
}

/* Pointer expression for an optional parameter input, "NULL" if absent. */
static void param_ptr(fu_emit *e, const fu_node *n, int i, char *buf, size_t size) {
    int v = optional_input(n, i);
    snprintf(buf, size, "%s", v < 0 ? "NULL" : fu_emit_ptr(e, v));
}

/* rows = product of all dims but the last; n = the last dim. */
static void rows_and_n(fu_emit *e, const fu_value *x, char *rows, char *n, size_t size) {
    fu_dim r = fu_dim_const(1);
    for (int k = 0; k < x->rank - 1; k++) r = fu_dim_mul(r, x->shape[k]);
    snprintf(rows, size, "%s", fu_emit_dim(e, r));
    snprintf(n, size, "%s", fu_emit_dim(e, x->shape[x->rank - 1]));
}

static int rms_norm_emit(fu_emit *e, const fu_graph *g, const fu_node *n, fu_err *err) {
    if (norm_check(g, n, 1, err)) return -1;
    char X[320], S[320], Y[320], R[64], N[64], eps[64];
    snprintf(X, sizeof X, "%s", fu_emit_ptr(e, n->in[0]));
    param_ptr(e, n, 1, S, sizeof S);
    snprintf(Y, sizeof Y, "%s", fu_emit_ptr(e, n->out[0]));
    rows_and_n(e, &g->values[n->in[0]], R, N, sizeof R);
    fu_float_literal(fu_attr_float(n, "epsilon", 1e-5), eps, sizeof eps);
    fu_emitf(e, "fu_rt_rms_norm_f32(%s, %s, %s, %s, %s, %s);", X, S, Y, R, N, eps);
    return 0;
}

static int layer_norm_emit(fu_emit *e, const fu_graph *g, const fu_node *n, fu_err *err) {
    if (norm_check(g, n, 2, err)) return -1;
    char X[320], S[320], B[320], Y[320], R[64], N[64], eps[64];
    snprintf(X, sizeof X, "%s", fu_emit_ptr(e, n->in[0]));
    param_ptr(e, n, 1, S, sizeof S);
    param_ptr(e, n, 2, B, sizeof B);
    snprintf(Y, sizeof Y, "%s", fu_emit_ptr(e, n->out[0]));
    rows_and_n(e, &g->values[n->in[0]], R, N, sizeof R);
    fu_float_literal(fu_attr_float(n, "epsilon", 1e-5), eps, sizeof eps);
    fu_emitf(e, "fu_rt_layer_norm_f32(%s, %s, %s, %s, %s, %s, %s);", X, S, B, Y, R, N, eps);
    return 0;
}

const fu_op fu_op_RMSNormalization = {
    .name = "RMSNormalization", .min_in = 1, .max_in = 2, .min_out = 1, .max_out = 1,
    .infer = rms_norm_infer, .emit = rms_norm_emit,
};
const fu_op fu_op_LayerNormalization = {
    .name = "LayerNormalization", .min_in = 1, .max_in = 3, .min_out = 1, .max_out = 1,
    .infer = layer_norm_infer, .emit = layer_norm_emit,
};
