/* Fused normalisations of the fast profile: RMSNormalization and
 * LayerNormalization (ONNX-23 names and attributes), float32 only; the work
 * is done by fu_rt_rms_norm_f32 / fu_rt_layer_norm_f32 on x viewed as
 * [rows, n]. RMSNormalization normalises over the last axis only (axis =
 * -1). LayerNormalization normalises over axes [axis, rank) (ONNX-17: any
 * axis, negative counted from the end): n is their product, scale and bias
 * have their shape X.shape[axis:], and the optional outputs Mean and
 * InvStdDev (shape X.shape[:axis] followed by ones, stash_type 1: float32)
 * are computed by a loop emitted beside the kernel call.
 *
 * fusec extension: RMSNormalization's scale is optional (the fuse pass
 * leaves out a scale that is not a [n] vector). */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "ops.h"
#include "emit.h"

/* Optional input i: its value index, or -1 when absent or "". */
static int optional_input(const fu_node *n, int i) { return i < n->n_in ? n->in[i] : -1; }

/* Checks a per-channel parameter (scale or bias): float32 with the shape of
 * the normalised axes, norm[0 .. n_norm). */
static int check_channel_param(const fu_graph *g, const fu_node *n, int i, const char *what, const fu_dim *norm,
                               int n_norm, fu_err *err) {
    if (optional_input(n, i) < 0) return 0;
    if (fu_require_input(g, n, i, FU_MASK(FU_F32), err)) return -1;
    const fu_value *p = &g->values[n->in[i]];
    int same = p->rank == n_norm;
    for (int k = 0; same && k < n_norm; k++) same = fu_dim_eq(p->shape[k], norm[k]);
    if (!same) {
        char want[128] = "[", got[128] = "[";
        for (int k = 0; k < n_norm; k++) {
            char d[64];
            fu_dim_str(g, norm[k], d, sizeof d);
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%s", k ? ", " : "", d);
        }
        for (int k = 0; k < p->rank; k++) {
            char d[64];
            fu_dim_str(g, p->shape[k], d, sizeof d);
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s", k ? ", " : "", d);
        }
        snprintf(want + strlen(want), sizeof want - strlen(want), "]");
        snprintf(got + strlen(got), sizeof got - strlen(got), "]");
        return fu_node_fail(err, g, n, "%s must have shape %s (the normalised dims of X), got %s", what, want, got);
    }
    return 0;
}

/* Shared checks: X float32 rank >= 1, the axis (the last one unless
 * any_axis), params fit. The first normalised axis goes to *from. */
static int norm_check(const fu_graph *g, const fu_node *n, int n_params, int any_axis, int *from, fu_err *err) {
    if (fu_require_input(g, n, 0, FU_MASK(FU_F32), err)) return -1;
    const fu_value *x = &g->values[n->in[0]];
    if (x->rank < 1) return fu_node_fail(err, g, n, "X must have rank >= 1 (got a scalar)");
    int64_t axis = fu_attr_int(n, "axis", -1);
    if (any_axis) {
        int a;
        if (fu_norm_axis(g, n, axis, x->rank, &a, err)) return -1;
        *from = a;
    } else if (axis != -1 && axis != x->rank - 1) {
        return fu_node_fail(err, g, n, "only axis = -1 (the last axis) is supported, got axis = %lld for rank %d",
                            (long long)axis, x->rank);
    } else {
        *from = x->rank - 1;
    }
    /* The kernels add epsilon in float32: it must stay a finite float. */
    double eps = fu_attr_float(n, "epsilon", 1e-5);
    if (!(eps >= 0) || !isfinite((float)eps))
        return fu_node_fail(err, g, n, "attribute 'epsilon' must be finite and >= 0 as a float32, got %g", eps);
    int64_t stash = fu_attr_int(n, "stash_type", 1);
    if (stash != 1)
        return fu_node_fail(err, g, n, "only stash_type = 1 (float32) is supported, got %lld", (long long)stash);
    static const char *const names[] = {"scale", "bias"};
    for (int i = 0; i < n_params; i++)
        if (check_channel_param(g, n, 1 + i, names[i], x->shape + *from, x->rank - *from, err)) return -1;
    return 0;
}

static int rms_norm_infer(fu_graph *g, fu_node *n, fu_err *err) {
    int from;
    if (norm_check(g, n, 1, 0, &from, err)) return -1;
    const fu_value *x = &g->values[n->in[0]];
    fu_set_output(g, n, 0, FU_F32, x->rank, x->shape);
    return 0;
}

/* Output k of n when present (Mean: 1, InvStdDev: 2), else -1. */
static int optional_output(const fu_node *n, int k) { return k < n->n_out ? n->out[k] : -1; }

static int layer_norm_infer(fu_graph *g, fu_node *n, fu_err *err) {
    int from;
    if (norm_check(g, n, 2, 1, &from, err)) return -1;
    const fu_value *x = &g->values[n->in[0]];
    fu_dim shape[FU_MAX_RANK];
    int rank = x->rank;
    memcpy(shape, x->shape, sizeof(fu_dim) * (size_t)rank);
    fu_set_output(g, n, 0, FU_F32, rank, shape);
    for (int d = from; d < rank; d++) shape[d] = fu_dim_const(1);
    for (int k = 1; k < 3; k++)
        if (optional_output(n, k) >= 0) fu_set_output(g, n, k, FU_F32, rank, shape);
    return 0;
}

/* Pointer expression for an optional parameter input, "NULL" if absent. */
static void param_ptr(fu_emit *e, const fu_node *n, int i, char *buf, size_t size) {
    int v = optional_input(n, i);
    snprintf(buf, size, "%s", v < 0 ? "NULL" : fu_emit_ptr(e, v));
}

/* rows = product of the dims before `from`; n = product of the rest. */
static void rows_and_n(fu_emit *e, const fu_value *x, int from, char *rows, char *n, size_t size) {
    fu_dim r = fu_dim_const(1), c = fu_dim_const(1);
    for (int k = 0; k < from; k++) r = fu_dim_mul(r, x->shape[k]);
    for (int k = from; k < x->rank; k++) c = fu_dim_mul(c, x->shape[k]);
    snprintf(rows, size, "%s", fu_emit_dim(e, r));
    snprintf(n, size, "%s", fu_emit_dim(e, c));
}

static int rms_norm_emit(fu_emit *e, const fu_graph *g, const fu_node *n, fu_err *err) {
    int from;
    if (norm_check(g, n, 1, 0, &from, err)) return -1;
    char X[320], S[320], Y[320], R[64], N[64], eps[64];
    snprintf(X, sizeof X, "%s", fu_emit_ptr(e, n->in[0]));
    param_ptr(e, n, 1, S, sizeof S);
    snprintf(Y, sizeof Y, "%s", fu_emit_ptr(e, n->out[0]));
    rows_and_n(e, &g->values[n->in[0]], from, R, N, sizeof R);
    fu_float_literal(fu_attr_float(n, "epsilon", 1e-5), eps, sizeof eps);
    fu_emitf(e, "fu_rt_rms_norm_f32(%s, %s, %s, %s, %s, %s);", X, S, Y, R, N, eps);
    return 0;
}

static int layer_norm_emit(fu_emit *e, const fu_graph *g, const fu_node *n, fu_err *err) {
    int from;
    if (norm_check(g, n, 2, 1, &from, err)) return -1;
    char X[320], S[320], B[320], Y[320], R[64], N[64], eps[64];
    snprintf(X, sizeof X, "%s", fu_emit_ptr(e, n->in[0]));
    param_ptr(e, n, 1, S, sizeof S);
    param_ptr(e, n, 2, B, sizeof B);
    snprintf(Y, sizeof Y, "%s", fu_emit_ptr(e, n->out[0]));
    rows_and_n(e, &g->values[n->in[0]], from, R, N, sizeof R);
    fu_float_literal(fu_attr_float(n, "epsilon", 1e-5), eps, sizeof eps);
    fu_emitf(e, "fu_rt_layer_norm_f32(%s, %s, %s, %s, %s, %s, %s);", X, S, B, Y, R, N, eps);
    int mean = optional_output(n, 1), inv = optional_output(n, 2);
    if (mean < 0 && inv < 0) return 0;
    /* Mean and InvStdDev: the kernel's two passes again, per row */
    char M[320] = "", I[320] = "";
    if (mean >= 0) snprintf(M, sizeof M, "%s", fu_emit_ptr(e, mean));
    if (inv >= 0) snprintf(I, sizeof I, "%s", fu_emit_ptr(e, inv));
    fu_emitf(e, "for (int64_t r = 0; r < %s; r++) {", R);
    fu_emitf(e, "    const float *xr = %s + r * %s;", X, N);
    fu_emitf(e, "    float s = 0.0f, q = 0.0f;");
    fu_emitf(e, "    for (int64_t i = 0; i < %s; i++) s += xr[i];", N);
    fu_emitf(e, "    const float mean = s / (float)%s;", N);
    fu_emitf(e, "    for (int64_t i = 0; i < %s; i++) q += (xr[i] - mean) * (xr[i] - mean);", N);
    if (mean >= 0) fu_emitf(e, "    %s[r] = mean;", M);
    if (inv >= 0) fu_emitf(e, "    %s[r] = 1.0f / sqrtf(q / (float)%s + %s);", I, N, eps);
    fu_emitf(e, "}");
    return 0;
}

const fu_op fu_op_RMSNormalization = {
    .name = "RMSNormalization", .min_in = 1, .max_in = 2, .min_out = 1, .max_out = 1,
    .infer = rms_norm_infer, .emit = rms_norm_emit,
    .doc = "Y = X / sqrt(mean(X^2 over the last axis) + epsilon) * scale. ONNX RMSNormalization-23, last axis "
           "only; scale is optional in fusec.",
    .dtypes = "float32 (X, scale)",
    .attrs = "axis (-1): must be -1 or rank-1\n"
             "epsilon (1e-5): added to the mean square; finite and >= 0 as a float32\n"
             "stash_type (1): must be 1 (float32)",
};
const fu_op fu_op_LayerNormalization = {
    .name = "LayerNormalization", .min_in = 1, .max_in = 3, .min_out = 1, .max_out = 3,
    .infer = layer_norm_infer, .emit = layer_norm_emit,
    .doc = "Y = (X - mean) / sqrt(var + epsilon) * scale + bias over axes [axis, rank); optional outputs Mean and "
           "InvStdDev. ONNX LayerNormalization-17.",
    .dtypes = "float32 (X, scale, bias)",
    .attrs = "axis (-1): first normalised axis; negative counts from the end\n"
             "epsilon (1e-5): added to the variance; finite and >= 0 as a float32\n"
             "stash_type (1): must be 1 (float32)",
};
