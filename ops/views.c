/* Views: Reshape, Flatten, Unsqueeze, Squeeze, Identity. Each output is
 * input 0's bytes under a new shape, so there is no code to emit: the
 * memory plan aliases the output to the input. Inference also carries
 * known shape values through (Shape -> Unsqueeze -> Concat -> Reshape). */
#include <stdlib.h>
#include <string.h>
#include "ops.h"

/* Largest int64 tensor whose element values are tracked as dims. */
#define KNOWN_MAX 64

/* Output 0 keeps input 0's element values, when those are known (from
 * propagated `known` dims or from small integer constant data). */
static void pass_known_through(fu_graph *g, const fu_node *n) {
    const fu_value *x = &g->values[n->in[0]];
    fu_value *y = &g->values[n->out[0]];
    int64_t count = 0;
    int from_data = 0;
    if (x->n_known > 0) {
        count = x->n_known;
    } else if (x->kind == FU_VAL_CONST && x->data && (x->dtype == FU_I64 || x->dtype == FU_I32) &&
               fu_value_numel_const(x, &count) == 0) {
        from_data = 1;
    }
    if (count <= 0 || count > KNOWN_MAX) return;
    fu_dim *vals = malloc(sizeof(fu_dim) * (size_t)count);
    if (!vals) return;   /* known values are an optimisation; missing ones only limit inference */
    for (int64_t i = 0; i < count; i++) vals[i] = from_data ? fu_dim_const(fu_const_get_i(x, i)) : x->known[i];
    free(y->known);
    y->known = vals;
    y->n_known = (int)count;
}

static fu_dim shape_product(int rank, const fu_dim *shape) {
    fu_dim p = fu_dim_const(1);
    for (int i = 0; i < rank; i++) p = fu_dim_mul(p, shape[i]);
    return p;
}

/* Axes from input 1 (opset 13+) or the `axes` attribute (older exporters).
 * Sets *given to 0 when neither is present. */
static int read_axes(const fu_graph *g, const fu_node *n, int64_t *axes, int *count, int *given, fu_err *err) {
    *count = 0;
    *given = 0;
    if (n->n_in > 1 && n->in[1] >= 0) {
        *given = 1;
        return fu_input_ints(g, n, 1, axes, FU_MAX_RANK, count, err);
    }
    const fu_attr *a = fu_node_attr(n, "axes");
    if (!a) return 0;
    *given = 1;
    if (a->kind == FU_ATTR_INT) {
        axes[0] = a->i;
        *count = 1;
        return 0;
    }
    if (a->kind != FU_ATTR_INTS) return fu_node_fail(err, g, n, "attribute axes must be a list of ints");
    if (a->n > FU_MAX_RANK) return fu_node_fail(err, g, n, "too many axes (%d)", a->n);
    memcpy(axes, a->ints, sizeof(int64_t) * (size_t)a->n);
    *count = a->n;
    return 0;
}

/* ---- Reshape ----------------------------------------------------------- */

static int reshape_infer(fu_graph *g, fu_node *n, fu_err *err) {
    if (fu_require_input(g, n, 0, FU_ANY, err) || fu_require_input(g, n, 1, FU_INTS, err)) return -1;
    const fu_value *x = &g->values[n->in[0]];
    fu_dim target[FU_MAX_RANK];
    int count;
    if (fu_input_dims(g, n, 1, target, FU_MAX_RANK, &count, err)) return -1;
    int allowzero = fu_attr_int(n, "allowzero", 0) != 0;
    int infer_at = -1;
    fu_dim known_product = fu_dim_const(1);
    for (int i = 0; i < count; i++) {
        fu_dim t = target[i];
        if (fu_dim_is_const(t) && t.coef == 0 && !allowzero) {
            /* 0 copies the input's dim at the same position. */
            if (i >= x->rank)
                return fu_node_fail(err, g, n, "shape value 0 at position %d has no input dim to copy", i);
            target[i] = x->shape[i];
        } else if (fu_dim_is_const(t) && t.coef == -1) {
            if (infer_at >= 0) return fu_node_fail(err, g, n, "shape has more than one -1");
            infer_at = i;
            continue;
        } else if (t.coef < 0) {
            return fu_node_fail(err, g, n, "shape value %lld at position %d is invalid", (long long)t.coef, i);
        }
        known_product = fu_dim_mul(known_product, target[i]);
    }
    fu_dim total = shape_product(x->rank, x->shape);
    int bad = infer_at >= 0 ? known_product.coef == 0 || fu_dim_div(total, known_product, &target[infer_at])
                            : !fu_dim_eq(total, known_product);
    if (bad) {   /* the dims as text only for the message: inference runs after every rewrite */
        char s_total[64], s_known[64];
        fu_dim_str(g, total, s_total, sizeof s_total);
        fu_dim_str(g, known_product, s_known, sizeof s_known);
        if (infer_at >= 0)
            return fu_node_fail(err, g, n, "cannot infer -1: %s elements are not divisible by %s", s_total,
                                s_known);
        return fu_node_fail(err, g, n, "input has %s elements but the target shape has %s", s_total, s_known);
    }
    fu_set_output(g, n, 0, x->dtype, count, target);
    pass_known_through(g, n);
    return 0;
}

const fu_op fu_op_Reshape = {
    .name = "Reshape", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1,
    .infer = reshape_infer, .is_view = 1,
    .doc = "Y = X under the shape `shape` gives: 0 copies the input dim at that position (unless allowzero), one "
           "-1 is inferred. ONNX Reshape-14.",
    .dtypes = "data: any; shape: int64, int32 (constant, or known from shape arithmetic)",
    .attrs = "allowzero (0): 1 makes a 0 in shape a zero-size dim instead of a copy of the input dim",
};

/* ---- Flatten: [d0..d(axis-1)] x [d(axis)..] -------------------------------- */

static int flatten_infer(fu_graph *g, fu_node *n, fu_err *err) {
    if (fu_require_input(g, n, 0, FU_ANY, err)) return -1;
    const fu_value *x = &g->values[n->in[0]];
    int64_t axis = fu_attr_int(n, "axis", 1);
    /* Unlike most axes, Flatten's may equal the rank. */
    if (axis < -(int64_t)x->rank || axis > x->rank)
        return fu_node_fail(err, g, n, "axis %lld is out of range for rank %d", (long long)axis, x->rank);
    if (axis < 0) axis += x->rank;
    fu_dim out[2] = {shape_product((int)axis, x->shape),
                     shape_product(x->rank - (int)axis, x->shape + axis)};
    fu_set_output(g, n, 0, x->dtype, 2, out);
    pass_known_through(g, n);
    return 0;
}

const fu_op fu_op_Flatten = {
    .name = "Flatten", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
    .infer = flatten_infer, .is_view = 1,
    .doc = "Y = X as 2-D [d0 * ... * d(axis-1), d(axis) * ... ]. ONNX Flatten-13.",
    .dtypes = "any",
    .attrs = "axis (1): the first dim of the second output dim; may equal the rank, negative counts from the end",
};

/* ---- Unsqueeze --------------------------------------------------------- */

static int unsqueeze_infer(fu_graph *g, fu_node *n, fu_err *err) {
    if (fu_require_input(g, n, 0, FU_ANY, err)) return -1;
    const fu_value *x = &g->values[n->in[0]];
    int64_t axes[FU_MAX_RANK];
    int count, given;
    if (read_axes(g, n, axes, &count, &given, err)) return -1;
    if (!given || count == 0) return fu_node_fail(err, g, n, "axes are required");
    int out_rank = x->rank + count;
    if (out_rank > FU_MAX_RANK)
        return fu_node_fail(err, g, n, "output rank %d exceeds %d", out_rank, FU_MAX_RANK);
    uint8_t inserted[FU_MAX_RANK] = {0};
    for (int i = 0; i < count; i++) {
        int axis;
        if (fu_norm_axis(g, n, axes[i], out_rank, &axis, err)) return -1;
        if (inserted[axis]) return fu_node_fail(err, g, n, "axis %lld is listed twice", (long long)axes[i]);
        inserted[axis] = 1;
    }
    fu_dim out[FU_MAX_RANK];
    for (int i = 0, src = 0; i < out_rank; i++) out[i] = inserted[i] ? fu_dim_const(1) : x->shape[src++];
    fu_set_output(g, n, 0, x->dtype, out_rank, out);
    pass_known_through(g, n);
    return 0;
}

const fu_op fu_op_Unsqueeze = {
    .name = "Unsqueeze", .min_in = 1, .max_in = 2, .min_out = 1, .max_out = 1,
    .infer = unsqueeze_infer, .is_view = 1,
    .doc = "Y = X with a size-1 dim inserted at each of `axes` (positions in the output). ONNX Unsqueeze-13.",
    .dtypes = "data: any; axes: int64, int32",
    .attrs = "axes (required): input 1 (the ONNX-13 form), a constant tensor; when input 1 is absent, the "
             "attribute axes (older opsets; a list of ints or one int)",
};

/* ---- Squeeze ----------------------------------------------------------- */

static int squeeze_infer(fu_graph *g, fu_node *n, fu_err *err) {
    if (fu_require_input(g, n, 0, FU_ANY, err)) return -1;
    const fu_value *x = &g->values[n->in[0]];
    int64_t axes[FU_MAX_RANK];
    int count, given;
    if (read_axes(g, n, axes, &count, &given, err)) return -1;
    uint8_t drop[FU_MAX_RANK] = {0};
    if (!given || count == 0) {
        /* No axes: drop every dim known to be 1. */
        for (int i = 0; i < x->rank; i++) drop[i] = fu_dim_is_const(x->shape[i]) && x->shape[i].coef == 1;
    }
    for (int i = 0; i < count; i++) {
        int axis;
        if (fu_norm_axis(g, n, axes[i], x->rank, &axis, err)) return -1;
        if (drop[axis]) return fu_node_fail(err, g, n, "axis %lld is listed twice", (long long)axes[i]);
        if (!fu_dim_is_const(x->shape[axis]) || x->shape[axis].coef != 1) {
            char d[64];
            fu_dim_str(g, x->shape[axis], d, sizeof d);
            return fu_node_fail(err, g, n, "cannot squeeze axis %d of size %s (must be 1)", axis, d);
        }
        drop[axis] = 1;
    }
    fu_dim out[FU_MAX_RANK];
    int rank = 0;
    for (int i = 0; i < x->rank; i++)
        if (!drop[i]) out[rank++] = x->shape[i];
    fu_set_output(g, n, 0, x->dtype, rank, out);
    pass_known_through(g, n);
    return 0;
}

const fu_op fu_op_Squeeze = {
    .name = "Squeeze", .min_in = 1, .max_in = 2, .min_out = 1, .max_out = 1,
    .infer = squeeze_infer, .is_view = 1,
    .doc = "Y = X without the size-1 dims at `axes` (each must be 1), or without every dim known to be 1 when "
           "no axes are given. ONNX Squeeze-13.",
    .dtypes = "data: any; axes: int64, int32",
    .attrs = "axes: input 1 (the ONNX-13 form), a constant tensor; when input 1 is absent, the attribute axes "
             "(older opsets; a list of ints or one int)",
};

/* ---- Identity ---------------------------------------------------------- */

static int identity_infer(fu_graph *g, fu_node *n, fu_err *err) {
    if (fu_require_input(g, n, 0, FU_ANY, err)) return -1;
    const fu_value *x = &g->values[n->in[0]];
    fu_set_output(g, n, 0, x->dtype, x->rank, x->shape);
    pass_known_through(g, n);
    return 0;
}

const fu_op fu_op_Identity = {
    .name = "Identity", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
    .infer = identity_infer, .is_view = 1,
    .doc = "Y = X. ONNX Identity-16 (tensors only).",
    .dtypes = "any",
};
