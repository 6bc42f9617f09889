/* Reductions (ReduceMean, ReduceSum, ReduceMax) and Softmax / LogSoftmax.
 * float32 only; the work is done by runtime kernels. */
#include <stdio.h>
#include <string.h>
#include "ops.h"
#include "emit.h"


/* ---- ReduceX ----------------------------------------------------------- */

/* Which axes a reduce node folds. `noop` is set when the axes list is empty
 * and noop_with_empty_axes=1: the op is then an identity. */
typedef struct {
    uint8_t mask[FU_MAX_RANK];
    int noop;
} reduce_axes;

static int reduce_plan(const fu_graph *g, const fu_node *n, reduce_axes *r, fu_err *err) {
    if (fu_require_input(g, n, 0, FU_MASK(FU_F32), err)) return -1;
    const fu_value *x = &g->values[n->in[0]];
    int64_t axes[FU_MAX_RANK];
    int count = 0;
    memset(r, 0, sizeof *r);
    if (n->n_in > 1 && n->in[1] >= 0) {
        /* opset 18: axes is input 1 and must be a constant. */
        if (fu_input_ints(g, n, 1, axes, FU_MAX_RANK, &count, err)) return -1;
    } else {
        /* Older exporters give axes as an attribute. */
        const fu_attr *a = fu_node_attr(n, "axes");
        if (a) {
            if (a->kind != FU_ATTR_INTS && a->kind != FU_ATTR_INT)
                return fu_node_fail(err, g, n, "attribute axes must be a list of ints");
            if (a->kind == FU_ATTR_INT) {
                axes[0] = a->i;
                count = 1;
            } else {
                if (a->n > FU_MAX_RANK) return fu_node_fail(err, g, n, "too many axes (%d)", a->n);
                count = a->n;
                memcpy(axes, a->ints, sizeof(int64_t) * (size_t)count);
            }
        }
    }
    if (count == 0) {
        if (fu_attr_int(n, "noop_with_empty_axes", 0)) r->noop = 1;
        else
            for (int i = 0; i < x->rank; i++) r->mask[i] = 1;
        return 0;
    }
    for (int i = 0; i < count; i++) {
        int axis;
        if (fu_norm_axis(g, n, axes[i], x->rank, &axis, err)) return -1;
        if (r->mask[axis]) return fu_node_fail(err, g, n, "axis %lld is listed twice", (long long)axes[i]);
        r->mask[axis] = 1;
    }
    return 0;
}

static int reduce_infer(fu_graph *g, fu_node *n, fu_err *err) {
    reduce_axes r;
    if (reduce_plan(g, n, &r, err)) return -1;
    const fu_value *x = &g->values[n->in[0]];
    int keepdims = fu_attr_int(n, "keepdims", 1) != 0;
    fu_dim out[FU_MAX_RANK];
    int rank = 0;
    for (int i = 0; i < x->rank; i++) {
        if (!r.mask[i]) out[rank++] = x->shape[i];
        else if (keepdims) out[rank++] = fu_dim_const(1);
    }
    fu_set_output(g, n, 0, FU_F32, rank, out);
    return 0;
}

static int reduce_emit_kind(fu_emit *e, const fu_graph *g, const fu_node *n, const char *kind,
                            fu_err *err) {
    reduce_axes r;
    if (reduce_plan(g, n, &r, err)) return -1;
    const fu_value *x = &g->values[n->in[0]];
    int any = 0;
    for (int i = 0; i < x->rank; i++) any |= r.mask[i];
    if (r.noop || !any) {
        /* Nothing reduced (noop, or a scalar): the output is a copy. */
        fu_emitf(e, "memcpy(%s, %s, (size_t)%s * 4);", fu_emit_vptr(e, n->out[0]), fu_emit_vptr(e, n->in[0]),
                 fu_emit_numel(e, n->in[0]));
        return 0;
    }
    if (fu_emit_dim_array(e, "sh", x->rank, x->shape)) return fu_node_fail(err, g, n, "out of memory");
    char mask[3 * FU_MAX_RANK + 1] = "";
    for (int i = 0; i < x->rank; i++)
        snprintf(mask + strlen(mask), sizeof mask - strlen(mask), "%s%d", i ? ", " : "", r.mask[i]);
    fu_emitf(e, "const uint8_t mask[] = {%s};", mask);
    char X[320];
    snprintf(X, sizeof X, "%s", fu_emit_ptr(e, n->in[0]));
    fu_emitf(e, "fu_rt_reduce_f32(%s, %s, %s, %d, sh, mask);", kind, X, fu_emit_ptr(e, n->out[0]), x->rank);
    return 0;
}

static int reduce_mean_emit(fu_emit *e, const fu_graph *g, const fu_node *n, fu_err *err) {
    return reduce_emit_kind(e, g, n, "FU_RT_REDUCE_MEAN", err);
}
static int reduce_sum_emit(fu_emit *e, const fu_graph *g, const fu_node *n, fu_err *err) {
    return reduce_emit_kind(e, g, n, "FU_RT_REDUCE_SUM", err);
}
static int reduce_max_emit(fu_emit *e, const fu_graph *g, const fu_node *n, fu_err *err) {
    return reduce_emit_kind(e, g, n, "FU_RT_REDUCE_MAX", err);
}

/* The attributes and axes every ReduceX reads (reduce_plan, reduce_infer). */
#define REDUCE_ATTRS                                                                                        \
    "axes: input 1 (the ONNX-18 form), a constant int64/int32 tensor; when input 1 is absent, the "          \
    "attribute axes (older opsets; a list of ints or one int). None or empty: every axis\n"                 \
    "keepdims (1): keep each reduced axis as size 1\n"                                                       \
    "noop_with_empty_axes (0): with no axes, copy the input instead of reducing every axis"

const fu_op fu_op_ReduceMean = {
    .name = "ReduceMean", .min_in = 1, .max_in = 2, .min_out = 1, .max_out = 1,
    .infer = reduce_infer, .emit = reduce_mean_emit,    .doc = "The mean over the given axes. ONNX ReduceMean-18.",
    .dtypes = "data: float32; axes: int64, int32",
    .attrs = REDUCE_ATTRS,
};
const fu_op fu_op_ReduceSum = {
    .name = "ReduceSum", .min_in = 1, .max_in = 2, .min_out = 1, .max_out = 1,
    .infer = reduce_infer, .emit = reduce_sum_emit,    .doc = "The sum over the given axes. ONNX ReduceSum-13.",
    .dtypes = "data: float32; axes: int64, int32",
    .attrs = REDUCE_ATTRS,
};
const fu_op fu_op_ReduceMax = {
    .name = "ReduceMax", .min_in = 1, .max_in = 2, .min_out = 1, .max_out = 1,
    .infer = reduce_infer, .emit = reduce_max_emit,    .doc = "The maximum over the given axes. ONNX ReduceMax-18.",
    .dtypes = "data: float32; axes: int64, int32",
    .attrs = REDUCE_ATTRS,
};

/* ---- Softmax / LogSoftmax ------------------------------------------------ */

static int softmax_infer(fu_graph *g, fu_node *n, fu_err *err) {
    if (fu_require_input(g, n, 0, FU_MASK(FU_F32), err)) return -1;
    const fu_value *x = &g->values[n->in[0]];
    int axis;
    if (fu_norm_axis(g, n, fu_attr_int(n, "axis", -1), x->rank, &axis, err)) return -1;
    fu_set_output(g, n, 0, FU_F32, x->rank, x->shape);
    return 0;
}

/* Views x as [outer, n, inner] around the softmax axis (opset 13: one axis). */
static int softmax_emit_common(fu_emit *e, const fu_graph *g, const fu_node *n, int log_softmax,
                               fu_err *err) {
    const fu_value *x = &g->values[n->in[0]];
    int axis;
    if (fu_norm_axis(g, n, fu_attr_int(n, "axis", -1), x->rank, &axis, err)) return -1;
    fu_dim outer = fu_dim_const(1), inner = fu_dim_const(1);
    for (int i = 0; i < axis; i++) outer = fu_dim_mul(outer, x->shape[i]);
    for (int i = axis + 1; i < x->rank; i++) inner = fu_dim_mul(inner, x->shape[i]);
    char X[320], Y[320], O[64], N[64];
    snprintf(X, sizeof X, "%s", fu_emit_ptr(e, n->in[0]));
    snprintf(Y, sizeof Y, "%s", fu_emit_ptr(e, n->out[0]));
    snprintf(O, sizeof O, "%s", fu_emit_dim(e, outer));
    snprintf(N, sizeof N, "%s", fu_emit_dim(e, x->shape[axis]));
    fu_emitf(e, "fu_rt_softmax_f32(%s, %s, %s, %s, %s, %d);", X, Y, O, N, fu_emit_dim(e, inner), log_softmax);
    return 0;
}

static int softmax_emit(fu_emit *e, const fu_graph *g, const fu_node *n, fu_err *err) {
    return softmax_emit_common(e, g, n, 0, err);
}
static int log_softmax_emit(fu_emit *e, const fu_graph *g, const fu_node *n, fu_err *err) {
    return softmax_emit_common(e, g, n, 1, err);
}

const fu_op fu_op_Softmax = {
    .name = "Softmax", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
    .infer = softmax_infer, .emit = softmax_emit,
    .doc = "Y = exp(x - max) / sum(exp(x - max)) along one axis. ONNX Softmax-13 (one axis, no flattening to 2-D).",
    .dtypes = "float32",
    .attrs = "axis (-1): the axis normalised over",
};
const fu_op fu_op_LogSoftmax = {
    .name = "LogSoftmax", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
    .infer = softmax_infer, .emit = log_softmax_emit,
    .doc = "Y = log(Softmax(X)) along one axis, computed as x - max - log(sum(exp(x - max))). ONNX LogSoftmax-13 (one axis, no flattening to 2-D).",
    .dtypes = "float32",
    .attrs = "axis (-1): the axis normalised over",
};
