/* Data movement: Transpose, Concat, Slice, Split, Tile, Gather, Trilu.
 * Most lower to fu_rt_copy over a strided n-d region; Gather and Trilu have
 * their own kernels. Inference also propagates known values of small int64
 * tensors (Concat, Gather, Slice of shape vectors) so that exporter shape
 * arithmetic (Shape -> Gather -> Unsqueeze -> Concat -> Reshape) resolves. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ops.h"
#include "emit.h"

/* Largest int64 tensor whose element values are tracked as dims. */
#define KNOWN_MAX 64
/* Most outputs a Split may have. */
#define SPLIT_MAX 64

/* ---- helpers ------------------------------------------------------------- */

static fu_dim shape_product(int rank, const fu_dim *shape) {
    fu_dim p = fu_dim_const(1);
    for (int i = 0; i < rank; i++) p = fu_dim_mul(p, shape[i]);
    return p;
}

/* Row-major element strides of a shape. */
static void contiguous_strides(int rank, const fu_dim *shape, fu_dim *strides) {
    fu_dim s = fu_dim_const(1);
    for (int i = rank - 1; i >= 0; i--) {
        strides[i] = s;
        s = fu_dim_mul(s, shape[i]);
    }
}

/* a + b as one monomial: only like terms add (S0 + S0 = 2*S0, 3 + 5 = 8). */
static int dim_add(fu_dim a, fu_dim b, fu_dim *out) {
    if (a.coef == 0) {
        *out = b;
        return 0;
    }
    if (b.coef == 0) {
        *out = a;
        return 0;
    }
    if (memcmp(a.pow, b.pow, sizeof a.pow) != 0) return -1;
    *out = a;
    out->coef = a.coef + b.coef;
    if (out->coef == 0) *out = fu_dim_const(0);
    return 0;
}

/* The element values of v as dims, when known: from propagated `known`
 * values or from small integer constant data. Returns the count, or -1. */
static int value_known(const fu_value *v, fu_dim *vals, int max) {
    if (v->n_known > 0) {
        if (v->n_known > max) return -1;
        memcpy(vals, v->known, sizeof(fu_dim) * (size_t)v->n_known);
        return v->n_known;
    }
    int64_t count;
    if (v->kind != FU_VAL_CONST || !v->data || (v->dtype != FU_I64 && v->dtype != FU_I32) ||
        fu_value_numel_const(v, &count) != 0 || count > max)
        return -1;
    for (int64_t i = 0; i < count; i++) vals[i] = fu_dim_const(fu_const_get_i(v, i));
    return (int)count;
}

/* Records known values on output o (skipped when empty or too long). */
static void set_known(fu_graph *g, const fu_node *n, int o, int count, const fu_dim *vals) {
    if (o >= n->n_out || n->out[o] < 0 || count <= 0 || count > KNOWN_MAX) return;
    fu_value *v = &g->values[n->out[o]];
    if (v->dtype != FU_I64) return;
    fu_dim *copy = malloc(sizeof(fu_dim) * (size_t)count);
    if (!copy) return;   /* known values only help inference; none is still correct */
    memcpy(copy, vals, sizeof(fu_dim) * (size_t)count);
    free(v->known);
    v->known = copy;
    v->n_known = count;
}


/* Emits one fu_rt_copy of an n-d region in its own block. dst and src are
 * C pointer expressions; a rank-0 region is one element. */
static int emit_copy(fu_emit *e, const char *dst, const char *src, size_t elem_size, int rank,
                     const fu_dim *shape, const fu_dim *dst_strides, const fu_dim *src_strides) {
    fu_dim one = fu_dim_const(1);
    if (rank == 0) {
        shape = dst_strides = src_strides = &one;
        rank = 1;
    }
    fu_emitf(e, "{");
    e->indent++;
    int rc = fu_emit_dim_array(e, "sh", rank, shape) | fu_emit_dim_array(e, "ds", rank, dst_strides) |
             fu_emit_dim_array(e, "ss", rank, src_strides);
    fu_emitf(e, "fu_rt_copy(%s, %s, %zu, %d, sh, ds, ss);", dst, src, elem_size, rank);
    e->indent--;
    fu_emitf(e, "}");
    return rc;
}

/* 1 + the node's index: what generated code returns when the node fails. */
static int node_number(const fu_graph *g, const fu_node *n) { return (int)(n - g->nodes) + 1; }

static void copy_ptr(fu_emit *e, int v, char *buf, size_t size) { snprintf(buf, size, "%s", fu_emit_ptr(e, v)); }

/* ---- Transpose ----------------------------------------------------------- */

static int transpose_perm(const fu_graph *g, const fu_node *n, int rank, int *perm, fu_err *err) {
    const fu_attr *a = fu_node_attr(n, "perm");
    if (!a) {
        for (int i = 0; i < rank; i++) perm[i] = rank - 1 - i;
        return 0;
    }
    if (a->kind != FU_ATTR_INTS || a->n != rank)
        return fu_node_fail(err, g, n, "perm must list %d axes", rank);
    uint8_t seen[FU_MAX_RANK] = {0};
    for (int i = 0; i < rank; i++) {
        int64_t p = a->ints[i];
        if (p < 0 || p >= rank || seen[p])
            return fu_node_fail(err, g, n, "perm is not a permutation of 0..%d", rank - 1);
        seen[p] = 1;
        perm[i] = (int)p;
    }
    return 0;
}

static int transpose_infer(fu_graph *g, fu_node *n, fu_err *err) {
    if (fu_require_input(g, n, 0, FU_ANY, err)) return -1;
    const fu_value *x = &g->values[n->in[0]];
    int perm[FU_MAX_RANK];
    if (transpose_perm(g, n, x->rank, perm, err)) return -1;
    fu_dim out[FU_MAX_RANK];
    for (int i = 0; i < x->rank; i++) out[i] = x->shape[perm[i]];
    fu_set_output(g, n, 0, x->dtype, x->rank, out);
    return 0;
}

static int transpose_emit(fu_emit *e, const fu_graph *g, const fu_node *n, fu_err *err) {
    const fu_value *x = &g->values[n->in[0]], *y = &g->values[n->out[0]];
    int perm[FU_MAX_RANK];
    if (transpose_perm(g, n, x->rank, perm, err)) return -1;
    fu_dim in_strides[FU_MAX_RANK], dst_strides[FU_MAX_RANK], src_strides[FU_MAX_RANK];
    contiguous_strides(x->rank, x->shape, in_strides);
    contiguous_strides(y->rank, y->shape, dst_strides);
    for (int i = 0; i < x->rank; i++) src_strides[i] = in_strides[perm[i]];
    char dst[320], src[320];
    copy_ptr(e, n->out[0], dst, sizeof dst);
    copy_ptr(e, n->in[0], src, sizeof src);
    if (emit_copy(e, dst, src, fu_dtype_size(x->dtype), y->rank, y->shape, dst_strides, src_strides))
        return fu_node_fail(err, g, n, "out of memory");
    return 0;
}

const fu_op fu_op_Transpose = {
    .name = "Transpose", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
    .infer = transpose_infer, .emit = transpose_emit,
    .doc = "Y = X with its axes permuted: Y.shape[i] = X.shape[perm[i]]. ONNX Transpose-13.",
    .dtypes = "any",
    .attrs = "perm (the axes reversed): a permutation of 0..rank-1",
};

/* ---- Concat -------------------------------------------------------------- */

static int concat_infer(fu_graph *g, fu_node *n, fu_err *err) {
    for (int i = 0; i < n->n_in; i++)
        if (fu_require_input(g, n, i, FU_ANY, err)) return -1;
    const fu_value *first = &g->values[n->in[0]];
    if (!fu_node_attr(n, "axis")) return fu_node_fail(err, g, n, "attribute axis is required");
    if (first->rank < 1) return fu_node_fail(err, g, n, "inputs must have rank >= 1");
    int axis;
    if (fu_norm_axis(g, n, fu_attr_int(n, "axis", 0), first->rank, &axis, err)) return -1;
    fu_dim out[FU_MAX_RANK];
    memcpy(out, first->shape, sizeof(fu_dim) * (size_t)first->rank);
    for (int i = 1; i < n->n_in; i++) {
        const fu_value *v = &g->values[n->in[i]];
        if (v->dtype != first->dtype)
            return fu_node_fail(err, g, n, "input %d has dtype %s, input 0 has %s", i, fu_dtype_name(v->dtype),
                                fu_dtype_name(first->dtype));
        if (v->rank != first->rank)
            return fu_node_fail(err, g, n, "input %d has rank %d, input 0 has rank %d", i, v->rank, first->rank);
        for (int d = 0; d < v->rank; d++) {
            if (d == axis) continue;
            if (!fu_dim_eq(v->shape[d], first->shape[d])) {
                char a[64], b[64];
                fu_dim_str(g, v->shape[d], a, sizeof a);
                fu_dim_str(g, first->shape[d], b, sizeof b);
                return fu_node_fail(err, g, n, "input %d has size %s on axis %d, input 0 has %s", i, a, d, b);
            }
        }
        fu_dim sum;
        if (dim_add(out[axis], v->shape[axis], &sum)) {
            char a[64], b[64];
            fu_dim_str(g, out[axis], a, sizeof a);
            fu_dim_str(g, v->shape[axis], b, sizeof b);
            return fu_node_fail(err, g, n, "concatenated size %s + %s is not a single monomial dim", a, b);
        }
        out[axis] = sum;
    }
    fu_set_output(g, n, 0, first->dtype, first->rank, out);

    /* Shape vectors: concatenate known values. */
    if (first->rank == 1 && first->dtype == FU_I64) {
        fu_dim vals[KNOWN_MAX];
        int total = 0;
        for (int i = 0; i < n->n_in; i++) {
            int c = value_known(&g->values[n->in[i]], vals + total, KNOWN_MAX - total);
            if (c < 0) return 0;
            total += c;
        }
        set_known(g, n, 0, total, vals);
    }
    return 0;
}

/* Each input is a [outer, len_i * inner] block written at column offset
 * off_i * inner of the [outer, total * inner] output. */
static int concat_emit(fu_emit *e, const fu_graph *g, const fu_node *n, fu_err *err) {
    const fu_value *y = &g->values[n->out[0]];
    int axis;
    if (fu_norm_axis(g, n, fu_attr_int(n, "axis", 0), y->rank, &axis, err)) return -1;
    fu_dim outer = shape_product(axis, y->shape);
    fu_dim inner = shape_product(y->rank - axis - 1, y->shape + axis + 1);
    fu_dim row = fu_dim_mul(y->shape[axis], inner);
    fu_dim offset = fu_dim_const(0);
    char out_ptr[320];
    copy_ptr(e, n->out[0], out_ptr, sizeof out_ptr);
    for (int i = 0; i < n->n_in; i++) {
        const fu_value *x = &g->values[n->in[i]];
        fu_dim cols = fu_dim_mul(x->shape[axis], inner);
        fu_dim shape[2] = {outer, cols}, dst_strides[2] = {row, fu_dim_const(1)};
        fu_dim src_strides[2] = {cols, fu_dim_const(1)};
        char dst[400], src[320];
        snprintf(dst, sizeof dst, "(%s + %s)", out_ptr, fu_emit_dim(e, fu_dim_mul(offset, inner)));
        copy_ptr(e, n->in[i], src, sizeof src);
        if (!(fu_dim_is_const(cols) && cols.coef == 0) &&
            emit_copy(e, dst, src, fu_dtype_size(y->dtype), 2, shape, dst_strides, src_strides))
            return fu_node_fail(err, g, n, "out of memory");
        if (dim_add(offset, x->shape[axis], &offset)) return fu_node_fail(err, g, n, "axis sizes do not add up");
    }
    return 0;
}

const fu_op fu_op_Concat = {
    .name = "Concat", .min_in = 1, .max_in = 1 << 16, .min_out = 1, .max_out = 1,
    .infer = concat_infer, .emit = concat_emit,
    .doc = "Joins the inputs along `axis`; the other dims must be equal. ONNX Concat-13.",
    .dtypes = "any (all inputs the same)",
    .attrs = "axis (required): negative counts from the end",
};

/* ---- Slice --------------------------------------------------------------- */

/* Where each axis of a Slice starts and how it steps. The start index on
 * axis a is (start_from_end[a] ? D : 0) + start_c[a]. For symbolic dims the
 * result is only known to be right when D >= need_min[a] and, with a
 * symbolic end, end_sym[a] <= D: the generated code checks both. */
typedef struct {
    int rank;
    fu_dim out[FU_MAX_RANK];
    int64_t step[FU_MAX_RANK];
    int start_from_end[FU_MAX_RANK];
    int64_t start_c[FU_MAX_RANK];
    int64_t need_min[FU_MAX_RANK];
    int has_end_sym[FU_MAX_RANK];
    fu_dim end_sym[FU_MAX_RANK];
    int all_const;   /* every sliced axis had constant dim and parameters */
} slice_plan;

/* Plain ONNX arithmetic when the dim and both ends are constants. */
static void slice_const_axis(int64_t dim, int64_t start, int64_t end, int64_t step, int64_t *out_start,
                             int64_t *out_len) {
    if (step == INT64_MIN) step = -INT64_MAX;
    if (start < 0) start += dim;
    if (end < 0) end += dim;
    int64_t len = 0;
    if (step > 0) {
        start = start < 0 ? 0 : start > dim ? dim : start;
        end = end < 0 ? 0 : end > dim ? dim : end;
        if (end > start) len = (end - start - 1) / step + 1;
    } else if (dim > 0) {
        start = start < 0 ? 0 : start > dim - 1 ? dim - 1 : start;
        end = end < -1 ? -1 : end > dim - 1 ? dim - 1 : end;
        if (start > end) len = (start - end - 1) / -step + 1;
    } else {
        start = 0;
    }
    *out_start = start;
    *out_len = len;
}

/* How one end of a step-1 slice sits on a symbolic axis. */
enum { END_FRONT, END_BACK, END_WHOLE, END_SYM };

static int slice_end_kind(fu_dim x, fu_dim dim, int64_t dim_max, int64_t *c) {
    *c = x.coef;
    if (!fu_dim_is_const(x)) return fu_dim_eq(x, dim) ? END_WHOLE : END_SYM;
    if (x.coef >= dim_max) return END_WHOLE;     /* past the end for any dim value */
    if (x.coef >= 0) return END_FRONT;
    if (x.coef <= -dim_max) {                   /* before the start for any dim value */
        *c = 0;
        return END_FRONT;
    }
    return END_BACK;
}

/* Step-1 slices involving a symbolic dim or symbolic ends. Only forms with
 * a provable monomial length are accepted. */
static int slice_symbolic_axis(const fu_graph *g, const fu_node *n, slice_plan *p, int a, fu_dim dim,
                               fu_dim start, fu_dim end, fu_err *err) {
    int64_t dim_max = fu_dim_eval(dim, g->sym_max);
    if (dim_max <= 0) dim_max = INT32_MAX;
    int64_t c0, c1;
    int k0 = slice_end_kind(start, dim, dim_max, &c0), k1 = slice_end_kind(end, dim, dim_max, &c1);
    int dim_const = fu_dim_is_const(dim);
    /* On a constant dim, "from the end" is a plain index. */
    if (dim_const && k0 == END_BACK) {
        k0 = END_FRONT;
        c0 += dim.coef;
    }
    if (dim_const && k1 == END_BACK) {
        k1 = END_FRONT;
        c1 += dim.coef;
    }
    if (dim_const && k1 == END_WHOLE) {
        k1 = END_FRONT;
        c1 = dim.coef;
    }
    p->start_from_end[a] = 0;
    p->start_c[a] = c0;
    if (k0 == END_FRONT && k1 == END_WHOLE && c0 == 0) {
        p->out[a] = dim;
        return 0;
    }
    if (k0 == END_FRONT && k1 == END_FRONT) {
        p->out[a] = fu_dim_const(c1 > c0 ? c1 - c0 : 0);
        if (!dim_const && c1 > c0) p->need_min[a] = c1;
        return 0;
    }
    if (k0 == END_FRONT && k1 == END_SYM && c0 == 0 && end.coef > 0) {
        p->out[a] = end;
        p->has_end_sym[a] = 1;
        p->end_sym[a] = end;
        return 0;
    }
    if (k0 == END_BACK && (k1 == END_WHOLE || k1 == END_BACK)) {
        int64_t stop = k1 == END_WHOLE ? 0 : c1;
        p->start_from_end[a] = 1;
        p->out[a] = fu_dim_const(stop > c0 ? stop - c0 : 0);
        p->need_min[a] = -c0;
        return 0;
    }
    if (k0 == END_WHOLE) {   /* starts at the end: empty */
        p->start_from_end[a] = 1;
        p->start_c[a] = 0;
        p->out[a] = fu_dim_const(0);
        return 0;
    }
    char ds[64], ss[64], es[64];
    fu_dim_str(g, dim, ds, sizeof ds);
    fu_dim_str(g, start, ss, sizeof ss);
    fu_dim_str(g, end, es, sizeof es);
    return fu_node_fail(err, g, n, "cannot slice symbolic dim %s on axis %d with start %s, end %s: the length "
                        "is not a single known dim", ds, a, ss, es);
}

/* Reads starts/ends/axes/steps (inputs, or attributes for opset < 10). */
static int slice_plan_make(const fu_graph *g, const fu_node *n, slice_plan *p, fu_err *err) {
    if (fu_require_input(g, n, 0, FU_ANY, err)) return -1;
    const fu_value *x = &g->values[n->in[0]];
    fu_dim starts[FU_MAX_RANK], ends[FU_MAX_RANK];
    int64_t axes[FU_MAX_RANK], steps[FU_MAX_RANK];
    int n_starts = 0, n_ends = 0, n_axes = -1, n_steps = -1;
    if (n->n_in >= 3) {
        if (fu_input_dims(g, n, 1, starts, FU_MAX_RANK, &n_starts, err) ||
            fu_input_dims(g, n, 2, ends, FU_MAX_RANK, &n_ends, err))
            return -1;
        if (n->n_in > 3 && n->in[3] >= 0 && fu_input_ints(g, n, 3, axes, FU_MAX_RANK, &n_axes, err)) return -1;
        if (n->n_in > 4 && n->in[4] >= 0 && fu_input_ints(g, n, 4, steps, FU_MAX_RANK, &n_steps, err)) return -1;
    } else {
        const fu_attr *as = fu_node_attr(n, "starts"), *ae = fu_node_attr(n, "ends"), *aa = fu_node_attr(n, "axes");
        if (!as || !ae || as->kind != FU_ATTR_INTS || ae->kind != FU_ATTR_INTS || as->n > FU_MAX_RANK ||
            ae->n > FU_MAX_RANK)
            return fu_node_fail(err, g, n, "needs starts and ends (inputs 1 and 2)");
        n_starts = as->n;
        n_ends = ae->n;
        for (int i = 0; i < as->n; i++) starts[i] = fu_dim_const(as->ints[i]);
        for (int i = 0; i < ae->n; i++) ends[i] = fu_dim_const(ae->ints[i]);
        if (aa) {
            if (aa->kind != FU_ATTR_INTS || aa->n > FU_MAX_RANK)
                return fu_node_fail(err, g, n, "attribute axes must be a list of ints");
            n_axes = aa->n;
            memcpy(axes, aa->ints, sizeof(int64_t) * (size_t)aa->n);
        }
    }
    if (n_starts != n_ends) return fu_node_fail(err, g, n, "starts has %d values, ends has %d", n_starts, n_ends);
    if (n_axes < 0) {
        if (n_starts > x->rank) return fu_node_fail(err, g, n, "more starts than input dims");
        n_axes = n_starts;
        for (int i = 0; i < n_axes; i++) axes[i] = i;
    }
    if (n_steps < 0) {
        n_steps = n_starts;
        for (int i = 0; i < n_steps; i++) steps[i] = 1;
    }
    if (n_axes != n_starts || n_steps != n_starts)
        return fu_node_fail(err, g, n, "starts, ends, axes and steps must have the same length");

    memset(p, 0, sizeof *p);
    p->rank = x->rank;
    p->all_const = 1;
    memcpy(p->out, x->shape, sizeof(fu_dim) * (size_t)x->rank);
    for (int i = 0; i < x->rank; i++) p->step[i] = 1;
    uint8_t seen[FU_MAX_RANK] = {0};
    for (int i = 0; i < n_axes; i++) {
        int a;
        if (fu_norm_axis(g, n, axes[i], x->rank, &a, err)) return -1;
        if (seen[a]) return fu_node_fail(err, g, n, "axis %d is sliced twice", a);
        seen[a] = 1;
        if (steps[i] == 0) return fu_node_fail(err, g, n, "step on axis %d is 0", a);
        p->step[a] = steps[i];
        fu_dim dim = x->shape[a];
        if (fu_dim_is_const(dim) && fu_dim_is_const(starts[i]) && fu_dim_is_const(ends[i])) {
            int64_t start, len;
            slice_const_axis(dim.coef, starts[i].coef, ends[i].coef, steps[i], &start, &len);
            p->start_c[a] = start;
            p->out[a] = fu_dim_const(len);
            continue;
        }
        p->all_const = 0;
        if (steps[i] != 1) {
            char ds[64];
            fu_dim_str(g, dim, ds, sizeof ds);
            return fu_node_fail(err, g, n, "cannot slice symbolic dim %s on axis %d with step %lld (only 1)", ds,
                                a, (long long)steps[i]);
        }
        if (slice_symbolic_axis(g, n, p, a, dim, starts[i], ends[i], err)) return -1;
    }
    return 0;
}

static int slice_infer(fu_graph *g, fu_node *n, fu_err *err) {
    slice_plan p;
    if (slice_plan_make(g, n, &p, err)) return -1;
    const fu_value *x = &g->values[n->in[0]];
    fu_set_output(g, n, 0, x->dtype, p.rank, p.out);

    /* Shape vectors: slice known values. */
    fu_dim vals[KNOWN_MAX], res[KNOWN_MAX];
    if (x->rank == 1 && p.all_const && fu_dim_is_const(p.out[0]) && fu_dim_is_const(x->shape[0]) &&
        value_known(x, vals, KNOWN_MAX) == x->shape[0].coef) {
        int64_t len = p.out[0].coef;
        for (int64_t i = 0; i < len; i++) res[i] = vals[p.start_c[0] + i * p.step[0]];
        set_known(g, n, 0, (int)len, res);
    }
    return 0;
}

static int slice_emit(fu_emit *e, const fu_graph *g, const fu_node *n, fu_err *err) {
    slice_plan p;
    if (slice_plan_make(g, n, &p, err)) return -1;
    const fu_value *x = &g->values[n->in[0]];
    for (int a = 0; a < p.rank; a++)
        if (fu_dim_is_const(p.out[a]) && p.out[a].coef == 0) return 0;   /* empty result */
    fu_dim in_strides[FU_MAX_RANK], dst_strides[FU_MAX_RANK], src_strides[FU_MAX_RANK];
    contiguous_strides(x->rank, x->shape, in_strides);
    contiguous_strides(p.rank, p.out, dst_strides);
    fu_sb offset = {0};
    fu_sb_printf(&offset, "0");
    for (int a = 0; a < p.rank; a++) {
        char dim[64], stride[64];
        snprintf(dim, sizeof dim, "%s", fu_emit_dim(e, x->shape[a]));
        snprintf(stride, sizeof stride, "%s", fu_emit_dim(e, in_strides[a]));
        /* Runtime checks for the symbolic forms (see slice_plan). */
        if (p.need_min[a] > 1)
            fu_emitf(e, "if (%s < %lld) return %d;", dim, (long long)p.need_min[a], node_number(g, n));
        int end_fits = fu_dim_is_const(x->shape[a]) && fu_dim_eval(p.end_sym[a], g->sym_max) <= x->shape[a].coef;
        if (p.has_end_sym[a] && !end_fits)
            fu_emitf(e, "if (%s > %s) return %d;", fu_emit_dim(e, p.end_sym[a]), dim, node_number(g, n));
        src_strides[a] = fu_dim_mul(in_strides[a], fu_dim_const(p.step[a]));
        if (p.start_from_end[a])
            fu_sb_printf(&offset, " + (%s + %lld) * %s", dim, (long long)p.start_c[a], stride);
        else if (p.start_c[a] != 0)
            fu_sb_printf(&offset, " + %lld * %s", (long long)p.start_c[a], stride);
    }
    int rc = -1;
    if (!offset.oom) {
        char dst[320], src[320];
        copy_ptr(e, n->out[0], dst, sizeof dst);
        copy_ptr(e, n->in[0], src, sizeof src);
        fu_emitf(e, "const int64_t src_offset = %s;", offset.s);
        char src_at[400];
        snprintf(src_at, sizeof src_at, "(%s + src_offset)", src);
        rc = emit_copy(e, dst, src_at, fu_dtype_size(x->dtype), p.rank, p.out, dst_strides, src_strides);
    }
    fu_sb_free(&offset);
    return rc ? fu_node_fail(err, g, n, "out of memory") : 0;
}

const fu_op fu_op_Slice = {
    .name = "Slice", .min_in = 1, .max_in = 5, .min_out = 1, .max_out = 1,
    .infer = slice_infer, .emit = slice_emit,
    .doc = "Y = X[starts:ends:steps] on the given axes, with ONNX's clamping. A symbolic dim takes step 1 "
           "and only forms whose length is a single dim. ONNX Slice-13.",
    .dtypes = "data: any; starts, ends, axes, steps: int64, int32",
    .attrs = "starts, ends, axes, steps: inputs 1 to 4 (the ONNX-10 form; axes and steps optional). starts and ends "
             "constant or known from shape arithmetic; axes and steps constant\n"
             "starts, ends, axes: attributes of Slice-1, read only when the node has fewer than 3 inputs",
};

/* ---- Split --------------------------------------------------------------- */

/* Sizes of the outputs along the split axis. */
static int split_sizes(const fu_graph *g, const fu_node *n, int *axis_out, fu_dim *sizes, fu_err *err) {
    if (fu_require_input(g, n, 0, FU_ANY, err)) return -1;
    const fu_value *x = &g->values[n->in[0]];
    int axis;
    if (fu_norm_axis(g, n, fu_attr_int(n, "axis", 0), x->rank, &axis, err)) return -1;
    *axis_out = axis;
    if (n->n_out > SPLIT_MAX) return fu_node_fail(err, g, n, "at most %d outputs supported", SPLIT_MAX);
    fu_dim dim = x->shape[axis];
    int64_t given[SPLIT_MAX];
    int count = -1;
    const fu_attr *split_attr = fu_node_attr(n, "split");
    if (n->n_in > 1 && n->in[1] >= 0) {
        if (fu_input_ints(g, n, 1, given, SPLIT_MAX, &count, err)) return -1;
    } else if (split_attr) {
        if (split_attr->kind != FU_ATTR_INTS || split_attr->n > SPLIT_MAX)
            return fu_node_fail(err, g, n, "attribute split must be a list of at most %d ints", SPLIT_MAX);
        count = split_attr->n;
        memcpy(given, split_attr->ints, sizeof(int64_t) * (size_t)count);
    }
    char ds[64];
    fu_dim_str(g, dim, ds, sizeof ds);
    if (count >= 0) {
        if (count != n->n_out)
            return fu_node_fail(err, g, n, "split lists %d sizes for %d outputs", count, n->n_out);
        int64_t sum = 0;
        for (int i = 0; i < count; i++) {
            if (given[i] < 0) return fu_node_fail(err, g, n, "split size %lld is negative", (long long)given[i]);
            if (__builtin_add_overflow(sum, given[i], &sum))
                return fu_node_fail(err, g, n, "split sizes add up to more than an int64");
            sizes[i] = fu_dim_const(given[i]);
        }
        if (!fu_dim_is_const(dim) || dim.coef != sum)
            return fu_node_fail(err, g, n, "split sizes add up to %lld but axis %d has size %s", (long long)sum, axis,
                                ds);
        return 0;
    }
    int parts = (int)fu_attr_int(n, "num_outputs", n->n_out);
    if (parts != n->n_out)
        return fu_node_fail(err, g, n, "num_outputs is %d but the node has %d outputs", parts, n->n_out);
    fu_dim chunk;
    if (fu_dim_div(dim, fu_dim_const(parts), &chunk) == 0) {
        for (int i = 0; i < parts; i++) sizes[i] = chunk;
        return 0;
    }
    if (!fu_dim_is_const(dim))
        return fu_node_fail(err, g, n, "cannot split symbolic dim %s into %d equal parts", ds, parts);
    /* Uneven: every chunk is ceil(dim / parts) but the last, which is smaller. */
    int64_t c = (dim.coef + parts - 1) / parts, last = dim.coef - c * (parts - 1);
    if (last <= 0) return fu_node_fail(err, g, n, "cannot split size %s into %d parts", ds, parts);
    for (int i = 0; i < parts; i++) sizes[i] = fu_dim_const(i == parts - 1 ? last : c);
    return 0;
}

static int split_infer(fu_graph *g, fu_node *n, fu_err *err) {
    fu_dim sizes[SPLIT_MAX];
    int axis;
    if (split_sizes(g, n, &axis, sizes, err)) return -1;
    const fu_value *x = &g->values[n->in[0]];
    for (int o = 0; o < n->n_out; o++) {
        fu_dim out[FU_MAX_RANK];
        memcpy(out, x->shape, sizeof(fu_dim) * (size_t)x->rank);
        out[axis] = sizes[o];
        fu_set_output(g, n, o, x->dtype, x->rank, out);
    }
    return 0;
}

/* Output o is the [outer, size_o * inner] block at column offset_o * inner. */
static int split_emit(fu_emit *e, const fu_graph *g, const fu_node *n, fu_err *err) {
    fu_dim sizes[SPLIT_MAX];
    int axis;
    if (split_sizes(g, n, &axis, sizes, err)) return -1;
    const fu_value *x = &g->values[n->in[0]];
    fu_dim outer = shape_product(axis, x->shape);
    fu_dim inner = shape_product(x->rank - axis - 1, x->shape + axis + 1);
    fu_dim row = fu_dim_mul(x->shape[axis], inner);
    fu_dim offset = fu_dim_const(0);
    char in_ptr[320];
    copy_ptr(e, n->in[0], in_ptr, sizeof in_ptr);
    for (int o = 0; o < n->n_out; o++) {
        fu_dim cols = fu_dim_mul(sizes[o], inner);
        if (n->out[o] >= 0 && !(fu_dim_is_const(cols) && cols.coef == 0)) {
            fu_dim shape[2] = {outer, cols}, dst_strides[2] = {cols, fu_dim_const(1)};
            fu_dim src_strides[2] = {row, fu_dim_const(1)};
            char dst[320], src[400];
            copy_ptr(e, n->out[o], dst, sizeof dst);
            snprintf(src, sizeof src, "(%s + %s)", in_ptr, fu_emit_dim(e, fu_dim_mul(offset, inner)));
            if (emit_copy(e, dst, src, fu_dtype_size(x->dtype), 2, shape, dst_strides, src_strides))
                return fu_node_fail(err, g, n, "out of memory");
        }
        if (dim_add(offset, sizes[o], &offset)) return fu_node_fail(err, g, n, "split sizes do not add up");
    }
    return 0;
}

const fu_op fu_op_Split = {
    .name = "Split", .min_in = 1, .max_in = 2, .min_out = 1, .max_out = SPLIT_MAX,
    .infer = split_infer, .emit = split_emit,
    .doc = "Splits X along `axis` into the outputs: by the sizes `split` gives, else into equal parts (the last "
           "one smaller when uneven). ONNX Split-18.",
    .dtypes = "input: any; split: int64, int32",
    .attrs = "axis (0): negative counts from the end\n"
             "split: input 1 (ONNX-13 form), a constant tensor; when input 1 is absent, the attribute split (older "
             "opsets)\n"
             "num_outputs (the node's output count): must equal it; read only when no split sizes are given",
};

/* ---- Tile ---------------------------------------------------------------- */

static int tile_repeats(const fu_graph *g, const fu_node *n, int64_t *repeats, fu_err *err) {
    if (fu_require_input(g, n, 0, FU_ANY, err) || fu_require_input(g, n, 1, FU_INTS, err)) return -1;
    const fu_value *x = &g->values[n->in[0]];
    int count;
    if (fu_input_ints(g, n, 1, repeats, FU_MAX_RANK, &count, err)) return -1;
    if (count != x->rank) return fu_node_fail(err, g, n, "repeats has %d values for rank %d", count, x->rank);
    for (int i = 0; i < count; i++)
        if (repeats[i] < 0) return fu_node_fail(err, g, n, "repeat %lld is negative", (long long)repeats[i]);
    return 0;
}

static int tile_infer(fu_graph *g, fu_node *n, fu_err *err) {
    int64_t repeats[FU_MAX_RANK];
    if (tile_repeats(g, n, repeats, err)) return -1;
    const fu_value *x = &g->values[n->in[0]];
    fu_dim out[FU_MAX_RANK];
    for (int i = 0; i < x->rank; i++) out[i] = fu_dim_mul(x->shape[i], fu_dim_const(repeats[i]));
    fu_set_output(g, n, 0, x->dtype, x->rank, out);
    return 0;
}

/* Output dim i, viewed as [repeat_i, dim_i], reads the input with stride 0
 * over the repeat: a single broadcasting copy of rank <= 2 * rank. */
static int tile_emit(fu_emit *e, const fu_graph *g, const fu_node *n, fu_err *err) {
    int64_t repeats[FU_MAX_RANK];
    if (tile_repeats(g, n, repeats, err)) return -1;
    const fu_value *x = &g->values[n->in[0]], *y = &g->values[n->out[0]];
    for (int i = 0; i < x->rank; i++)
        if (repeats[i] == 0) return 0;   /* empty result */
    fu_dim in_strides[FU_MAX_RANK], out_strides[FU_MAX_RANK];
    contiguous_strides(x->rank, x->shape, in_strides);
    contiguous_strides(y->rank, y->shape, out_strides);
    fu_dim shape[2 * FU_MAX_RANK], dst_strides[2 * FU_MAX_RANK], src_strides[2 * FU_MAX_RANK];
    int rank = 0;
    for (int i = 0; i < x->rank; i++) {
        if (repeats[i] != 1) {
            shape[rank] = fu_dim_const(repeats[i]);
            dst_strides[rank] = fu_dim_mul(x->shape[i], out_strides[i]);
            src_strides[rank] = fu_dim_const(0);
            rank++;
        }
        shape[rank] = x->shape[i];
        dst_strides[rank] = out_strides[i];
        src_strides[rank] = in_strides[i];
        rank++;
    }
    char dst[320], src[320];
    copy_ptr(e, n->out[0], dst, sizeof dst);
    copy_ptr(e, n->in[0], src, sizeof src);
    if (emit_copy(e, dst, src, fu_dtype_size(x->dtype), rank, shape, dst_strides, src_strides))
        return fu_node_fail(err, g, n, "out of memory");
    return 0;
}

const fu_op fu_op_Tile = {
    .name = "Tile", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1,
    .infer = tile_infer, .emit = tile_emit,
    .doc = "Y = X repeated repeats[i] times along each axis i. ONNX Tile-13.",
    .dtypes = "input: any; repeats: int64, int32 (constant)",
};

/* ---- Gather -------------------------------------------------------------- */

static int gather_infer(fu_graph *g, fu_node *n, fu_err *err) {
    if (fu_require_input(g, n, 0, FU_ANY, err) || fu_require_input(g, n, 1, FU_INTS, err)) return -1;
    const fu_value *data = &g->values[n->in[0]], *idx = &g->values[n->in[1]];
    if (data->rank < 1) return fu_node_fail(err, g, n, "data must have rank >= 1");
    int axis;
    if (fu_norm_axis(g, n, fu_attr_int(n, "axis", 0), data->rank, &axis, err)) return -1;
    int rank = data->rank - 1 + idx->rank;
    if (rank > FU_MAX_RANK) return fu_node_fail(err, g, n, "output rank %d exceeds %d", rank, FU_MAX_RANK);
    /* out = data[:axis] + indices.shape + data[axis+1:]; scalar indices drop the axis */
    fu_dim out[FU_MAX_RANK];
    int r = 0;
    for (int i = 0; i < axis; i++) out[r++] = data->shape[i];
    for (int i = 0; i < idx->rank; i++) out[r++] = idx->shape[i];
    for (int i = axis + 1; i < data->rank; i++) out[r++] = data->shape[i];
    fu_set_output(g, n, 0, data->dtype, rank, out);

    /* Shape vectors: pick known values with constant indices. */
    fu_dim vals[KNOWN_MAX], picks[KNOWN_MAX], res[KNOWN_MAX];
    int n_vals, n_picks;
    if (data->rank == 1 && (n_vals = value_known(data, vals, KNOWN_MAX)) > 0 &&
        (n_picks = value_known(idx, picks, KNOWN_MAX)) > 0) {
        for (int j = 0; j < n_picks; j++) {
            if (!fu_dim_is_const(picks[j])) return 0;
            int64_t k = picks[j].coef;
            if (k < -n_vals || k >= n_vals)
                return fu_node_fail(err, g, n, "index %lld is out of range for size %d", (long long)k, n_vals);
            res[j] = vals[k < 0 ? k + n_vals : k];
        }
        set_known(g, n, 0, n_picks, res);
    }
    return 0;
}

static int gather_emit(fu_emit *e, const fu_graph *g, const fu_node *n, fu_err *err) {
    const fu_value *data = &g->values[n->in[0]], *idx = &g->values[n->in[1]];
    int axis;
    if (fu_norm_axis(g, n, fu_attr_int(n, "axis", 0), data->rank, &axis, err)) return -1;
    fu_dim outer = shape_product(axis, data->shape);
    fu_dim inner = shape_product(data->rank - axis - 1, data->shape + axis + 1);
    fu_dim inner_bytes = fu_dim_mul(inner, fu_dim_const((int64_t)fu_dtype_size(data->dtype)));
    char out[320], src[320], ix[320], n_idx[64], o[64], len[64];
    copy_ptr(e, n->out[0], out, sizeof out);
    copy_ptr(e, n->in[0], src, sizeof src);
    copy_ptr(e, n->in[1], ix, sizeof ix);
    snprintf(n_idx, sizeof n_idx, "%s", fu_emit_numel(e, n->in[1]));
    snprintf(o, sizeof o, "%s", fu_emit_dim(e, outer));
    snprintf(len, sizeof len, "%s", fu_emit_dim(e, data->shape[axis]));
    fu_emitf(e, "if (fu_rt_gather(%s, %s, %s, %d, %s, %s, %s, %s)) return %d;", out, src, ix,
             idx->dtype == FU_I32, n_idx, o, len, fu_emit_dim(e, inner_bytes), node_number(g, n));
    return 0;
}

const fu_op fu_op_Gather = {
    .name = "Gather", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1,
    .infer = gather_infer, .emit = gather_emit,
    .doc = "Picks slices of data along `axis` at `indices`: out = data[:axis] + indices.shape + data[axis+1:]; "
           "negative indices count from the end, an out-of-range index fails at run time. ONNX Gather-13.",
    .dtypes = "data: any; indices: int64, int32",
    .attrs = "axis (0): negative counts from the end",
};

/* ---- Trilu --------------------------------------------------------------- */

static int trilu_k(const fu_graph *g, const fu_node *n, int64_t *k, fu_err *err) {
    *k = 0;
    if (n->n_in < 2 || n->in[1] < 0) return 0;
    int count;
    if (fu_input_ints(g, n, 1, k, 1, &count, err)) return -1;
    if (count != 1) return fu_node_fail(err, g, n, "k must hold one value");
    return 0;
}

static int trilu_infer(fu_graph *g, fu_node *n, fu_err *err) {
    if (fu_require_input(g, n, 0, FU_ANY, err)) return -1;
    const fu_value *x = &g->values[n->in[0]];
    if (x->rank < 2) return fu_node_fail(err, g, n, "input must have rank >= 2");
    int64_t k;
    if (trilu_k(g, n, &k, err)) return -1;
    fu_set_output(g, n, 0, x->dtype, x->rank, x->shape);
    return 0;
}

static int trilu_emit(fu_emit *e, const fu_graph *g, const fu_node *n, fu_err *err) {
    const fu_value *x = &g->values[n->in[0]];
    int64_t k;
    if (trilu_k(g, n, &k, err)) return -1;
    char dst[320], src[320], batch[64], rows[64];
    copy_ptr(e, n->out[0], dst, sizeof dst);
    copy_ptr(e, n->in[0], src, sizeof src);
    snprintf(batch, sizeof batch, "%s", fu_emit_dim(e, shape_product(x->rank - 2, x->shape)));
    snprintf(rows, sizeof rows, "%s", fu_emit_dim(e, x->shape[x->rank - 2]));
    fu_emitf(e, "fu_rt_trilu(%s, %s, %zu, %s, %s, %s, %lldLL, %d);", dst, src, fu_dtype_size(x->dtype), batch,
             rows, fu_emit_dim(e, x->shape[x->rank - 1]), (long long)k, fu_attr_int(n, "upper", 1) != 0);
    return 0;
}

const fu_op fu_op_Trilu = {
    .name = "Trilu", .min_in = 1, .max_in = 2, .min_out = 1, .max_out = 1,
    .infer = trilu_infer, .emit = trilu_emit,
    .doc = "Keeps the upper (or lower) triangle of the last two dims, above (or below) diagonal k; zeroes the "
           "rest. ONNX Trilu-14.",
    .dtypes = "input: any; k: int64, int32 (constant, one value; default 0)",
    .attrs = "upper (1): 1 keeps the upper triangle, 0 the lower",
};
