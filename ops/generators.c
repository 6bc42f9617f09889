/* Generators and shape ops: Shape, Constant, ConstantOfShape, Range.
 * Their int64 results are usually shape arithmetic, so inference records
 * the element values (`known`) for later Reshape / Expand / Range nodes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ops.h"
#include "emit.h"

/* Largest int64 tensor whose element values are tracked as dims. */
#define KNOWN_MAX 64

/* Records known values on output 0 (skipped when empty, too long or not int64). */
static void set_known(fu_graph *g, const fu_node *n, int count, const fu_dim *vals) {
    if (n->out[0] < 0 || count <= 0 || count > KNOWN_MAX) return;
    fu_value *v = &g->values[n->out[0]];
    if (v->dtype != FU_I64) return;
    fu_dim *copy = malloc(sizeof(fu_dim) * (size_t)count);
    if (!copy) return;   /* known values only help inference; none is still correct */
    memcpy(copy, vals, sizeof(fu_dim) * (size_t)count);
    free(v->known);
    v->known = copy;
    v->n_known = count;
}

/* C literal for element i of raw data of dtype t, in the C element type. */
static void raw_literal(fu_dtype t, const void *data, int64_t i, char *buf, size_t n) {
    const char *p = (const char *)data + (size_t)i * fu_dtype_size(t);
    switch (t) {
    case FU_F32: {
        float f;
        memcpy(&f, p, 4);
        fu_float_literal(f, buf, n);
        break;
    }
    case FU_F16:
    case FU_BF16: {
        uint16_t h;
        memcpy(&h, p, 2);
        snprintf(buf, n, "0x%04x", h);
        break;
    }
    case FU_I64: {
        int64_t x;
        memcpy(&x, p, 8);
        fu_int_literal(x, buf, n);
        break;
    }
    case FU_I32: {
        int32_t x;
        memcpy(&x, p, 4);
        snprintf(buf, n, "%lld", (long long)x);
        break;
    }
    default: snprintf(buf, n, "%d", *(const uint8_t *)p ? 1 : 0); break;
    }
}

/* Element i of raw data as int64 (integer and bool dtypes). */
static int64_t raw_int(fu_dtype t, const void *data, int64_t i) {
    const char *p = (const char *)data + (size_t)i * fu_dtype_size(t);
    if (t == FU_I64) {
        int64_t x;
        memcpy(&x, p, 8);
        return x;
    }
    if (t == FU_I32) {
        int32_t x;
        memcpy(&x, p, 4);
        return x;
    }
    return *(const uint8_t *)p;
}

/* ---- Shape --------------------------------------------------------------- */

/* The [start, end) range of dims Shape reports (opset 15 clamping). */
static void shape_range(const fu_node *n, int rank, int *start, int *end) {
    int64_t s = fu_attr_int(n, "start", 0), e = fu_attr_int(n, "end", rank);
    if (s < 0) s += rank;
    if (e < 0) e += rank;
    s = s < 0 ? 0 : s > rank ? rank : s;
    e = e < 0 ? 0 : e > rank ? rank : e;
    *start = (int)s;
    *end = (int)(e > s ? e : s);
}

static int shape_infer(fu_graph *g, fu_node *n, fu_err *err) {
    if (fu_require_input(g, n, 0, FU_ANY, err)) return -1;
    const fu_value *x = &g->values[n->in[0]];
    int start, end;
    shape_range(n, x->rank, &start, &end);
    fu_dim len = fu_dim_const(end - start);
    fu_dim dims[FU_MAX_RANK];
    memcpy(dims, x->shape + start, sizeof(fu_dim) * (size_t)(end - start));
    fu_set_output(g, n, 0, FU_I64, 1, &len);
    set_known(g, n, end - start, dims);
    return 0;
}

static int shape_emit(fu_emit *e, const fu_graph *g, const fu_node *n, fu_err *err) {
    const fu_value *x = &g->values[n->in[0]];
    int start, end;
    shape_range(n, x->rank, &start, &end);
    char out[320];
    snprintf(out, sizeof out, "%s", fu_emit_ptr(e, n->out[0]));
    for (int i = start; i < end; i++) fu_emitf(e, "%s[%d] = %s;", out, i - start, fu_emit_dim(e, x->shape[i]));
    (void)err;
    return 0;
}

const fu_op fu_op_Shape = {
    .name = "Shape", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
    .infer = shape_infer, .emit = shape_emit,
    .doc = "The int64 1-D tensor of X's dims start..end-1 (clamped to the rank). ONNX Shape-15.",
    .dtypes = "any",
    .attrs = "start (0): first dim reported; negative counts from the end\n"
             "end (the rank): one past the last dim reported; negative counts from the end",
};

/* ---- Constant ------------------------------------------------------------ */

/* A Constant node's value, whichever attribute holds it. Floats and ints
 * given as attribute lists are read through `list`. */
typedef struct {
    const fu_attr *a;
    int from_tensor;    /* `value`: raw data in a->t_data */
    fu_dtype dtype;
    int rank;
    fu_dim shape[FU_MAX_RANK];
    int64_t count;
} constant_value;

static int constant_read(const fu_graph *g, const fu_node *n, constant_value *c, fu_err *err) {
    static const char *const names[] = {"value", "value_float", "value_floats", "value_int", "value_ints"};
    memset(c, 0, sizeof *c);
    int which = -1;
    for (int i = 0; i < 5; i++) {
        const fu_attr *a = fu_node_attr(n, names[i]);
        if (!a) continue;
        if (c->a) return fu_node_fail(err, g, n, "more than one value attribute");
        c->a = a;
        which = i;
    }
    if (!c->a) return fu_node_fail(err, g, n, "needs one of value, value_float(s), value_int(s)");
    const fu_attr *a = c->a;
    switch (which) {
    case 0:
        if (a->kind != FU_ATTR_TENSOR || a->t_dtype == FU_UNDEF || a->t_rank < 0 || a->t_rank > FU_MAX_RANK)
            return fu_node_fail(err, g, n, "attribute value must be a tensor");
        c->from_tensor = 1;
        c->dtype = a->t_dtype;
        c->rank = a->t_rank;
        c->count = 1;
        for (int i = 0; i < a->t_rank; i++) {
            c->shape[i] = fu_dim_const(a->t_shape[i]);
            c->count *= a->t_shape[i];
        }
        if (c->count > 0 && !a->t_data) return fu_node_fail(err, g, n, "attribute value has no data");
        return 0;
    case 1:
        if (a->kind != FU_ATTR_FLOAT) return fu_node_fail(err, g, n, "value_float must be a float");
        c->dtype = FU_F32;
        c->count = 1;
        return 0;
    case 3:
        if (a->kind != FU_ATTR_INT) return fu_node_fail(err, g, n, "value_int must be an int");
        c->dtype = FU_I64;
        c->count = 1;
        return 0;
    case 2:
    case 4:
        if (a->kind != (which == 2 ? FU_ATTR_FLOATS : FU_ATTR_INTS))
            return fu_node_fail(err, g, n, "%s must be a list", names[which]);
        c->dtype = which == 2 ? FU_F32 : FU_I64;
        c->rank = 1;
        c->count = a->n;
        c->shape[0] = fu_dim_const(a->n);
        return 0;
    }
    return -1;
}

/* Element i as a C literal for a static array. float32 is written as its
 * bit pattern (uint32_t): exact, and inf / nan stay constant expressions,
 * which tcc requires in static initialisers. */
static void constant_literal(const constant_value *c, int64_t i, char *buf, size_t n) {
    const fu_attr *a = c->a;
    if (c->dtype == FU_F32) {
        float f;
        if (c->from_tensor) memcpy(&f, (const char *)a->t_data + 4 * i, 4);
        else f = (float)(a->kind == FU_ATTR_FLOAT ? a->f : a->floats[i]);
        uint32_t bits;
        memcpy(&bits, &f, 4);
        snprintf(buf, n, "0x%08xu", bits);
    } else if (c->from_tensor) {
        raw_literal(c->dtype, a->t_data, i, buf, n);
    } else {
        fu_int_literal(a->kind == FU_ATTR_INT ? a->i : a->ints[i], buf, n);
    }
}

static int constant_infer(fu_graph *g, fu_node *n, fu_err *err) {
    constant_value c;
    if (constant_read(g, n, &c, err)) return -1;
    fu_set_output(g, n, 0, c.dtype, c.rank, c.shape);
    if (c.dtype == FU_I64 && c.count > 0 && c.count <= KNOWN_MAX) {
        fu_dim vals[KNOWN_MAX];
        for (int64_t i = 0; i < c.count; i++)
            vals[i] = fu_dim_const(c.from_tensor ? raw_int(FU_I64, c.a->t_data, i)
                                   : c.a->kind == FU_ATTR_INT ? c.a->i : c.a->ints[i]);
        set_known(g, n, (int)c.count, vals);
    }
    return 0;
}

/* The data goes into a static array in the generated code, copied out. */
static int constant_emit(fu_emit *e, const fu_graph *g, const fu_node *n, fu_err *err) {
    constant_value c;
    if (constant_read(g, n, &c, err)) return -1;
    if (c.count == 0) return 0;
    fu_sb b = {0};
    const char *type = c.dtype == FU_F32 ? "uint32_t" : fu_c_type(c.dtype);
    fu_sb_printf(&b, "static const %s data[%lld] = {", type, (long long)c.count);
    for (int64_t i = 0; i < c.count; i++) {
        char lit[64];
        constant_literal(&c, i, lit, sizeof lit);
        fu_sb_printf(&b, "%s%s", i ? ", " : "", lit);
    }
    fu_sb_printf(&b, "};");
    int ok = !b.oom;
    if (ok) fu_emitf(e, "%s", b.s);
    fu_sb_free(&b);
    if (!ok) return fu_node_fail(err, g, n, "out of memory");
    fu_emitf(e, "memcpy(%s, data, sizeof data);", fu_emit_vptr(e, n->out[0]));
    return 0;
}

const fu_op fu_op_Constant = {
    .name = "Constant", .min_in = 0, .max_in = 0, .min_out = 1, .max_out = 1,
    .infer = constant_infer, .emit = constant_emit,
    .doc = "A constant tensor from exactly one value attribute. ONNX Constant-13 without value_string(s) and "
           "sparse_value.",
    .dtypes = "no inputs; output: the tensor's dtype (any of fusec's), float32 for value_float(s), int64 for "
              "value_int(s)",
    .attrs = "value: a tensor\n"
             "value_float / value_floats: a float32 scalar / 1-D tensor\n"
             "value_int / value_ints: an int64 scalar / 1-D tensor",
};

/* ---- ConstantOfShape ----------------------------------------------------- */

/* The fill value: attribute `value` (a one-element tensor), default float 0. */
static int fill_value(const fu_graph *g, const fu_node *n, fu_dtype *dtype, char *lit, size_t litsz,
                      int64_t *as_int, fu_err *err) {
    const fu_attr *a = fu_node_attr(n, "value");
    *as_int = 0;
    if (!a) {
        *dtype = FU_F32;
        snprintf(lit, litsz, "0.0f");
        return 0;
    }
    if (a->kind != FU_ATTR_TENSOR || a->t_dtype == FU_UNDEF || !a->t_data)
        return fu_node_fail(err, g, n, "attribute value must be a one-element tensor");
    int64_t count = 1;
    for (int i = 0; i < a->t_rank; i++) count *= a->t_shape[i];
    if (count != 1) return fu_node_fail(err, g, n, "attribute value must hold one element (has %lld)", (long long)count);
    *dtype = a->t_dtype;
    raw_literal(a->t_dtype, a->t_data, 0, lit, litsz);
    if (!fu_dtype_is_float(a->t_dtype)) *as_int = raw_int(a->t_dtype, a->t_data, 0);
    return 0;
}

static int constant_of_shape_infer(fu_graph *g, fu_node *n, fu_err *err) {
    if (fu_require_input(g, n, 0, FU_INTS, err)) return -1;
    fu_dim shape[FU_MAX_RANK];
    int rank;
    if (fu_input_dims(g, n, 0, shape, FU_MAX_RANK, &rank, err)) return -1;
    for (int i = 0; i < rank; i++)
        if (shape[i].coef < 0)
            return fu_node_fail(err, g, n, "shape value %lld is negative", (long long)shape[i].coef);
    fu_dtype dtype;
    char lit[64];
    int64_t v;
    if (fill_value(g, n, &dtype, lit, sizeof lit, &v, err)) return -1;
    fu_set_output(g, n, 0, dtype, rank, shape);
    int64_t count;
    if (dtype == FU_I64 && fu_value_numel_const(&g->values[n->out[0]], &count) == 0 && count <= KNOWN_MAX) {
        fu_dim vals[KNOWN_MAX];
        for (int64_t i = 0; i < count; i++) vals[i] = fu_dim_const(v);
        set_known(g, n, (int)count, vals);
    }
    return 0;
}

static int constant_of_shape_emit(fu_emit *e, const fu_graph *g, const fu_node *n, fu_err *err) {
    fu_dtype dtype;
    char lit[64], out[320];
    int64_t v;
    if (fill_value(g, n, &dtype, lit, sizeof lit, &v, err)) return -1;
    snprintf(out, sizeof out, "%s", fu_emit_ptr(e, n->out[0]));
    fu_emitf(e, "for (int64_t i = 0; i < %s; i++) %s[i] = %s;", fu_emit_numel(e, n->out[0]), out, lit);
    return 0;
}

const fu_op fu_op_ConstantOfShape = {
    .name = "ConstantOfShape", .min_in = 1, .max_in = 1, .min_out = 1, .max_out = 1,
    .infer = constant_of_shape_infer, .emit = constant_of_shape_emit,
    .doc = "A tensor of the shape the input gives, every element `value`. ONNX ConstantOfShape-9.",
    .dtypes = "shape: int64, int32 (1-D, constant or known from shape arithmetic); output: value's dtype",
    .attrs = "value (float32 0): a one-element tensor, whose dtype the output takes",
};

/* ---- Range --------------------------------------------------------------- */

/* What inference knows about a scalar input of Range. */
typedef struct {
    int is_const;      /* number holds its value */
    double number;
    int is_dim;        /* dim holds its value (a known symbolic shape value) */
    fu_dim dim;
} range_arg;

/* A float scalar that is Cast(x) of an integer scalar x whose value is
 * known (constant data or inference's known values) and exact as a float:
 * its value in *out (ONNX's window functions compute Range's limit so). */
static int cast_of_known_int(const fu_graph *g, const fu_value *v, double *out) {
    if (!fu_dtype_is_float(v->dtype) || v->producer < 0) return 0;
    const fu_node *c = &g->nodes[v->producer];
    if (c->op_id != FU_OP_Cast || c->n_in < 1 || c->in[0] < 0) return 0;
    const fu_value *x = &g->values[c->in[0]];
    int64_t count, val;
    if (fu_value_numel_const(x, &count) != 0 || count != 1) return 0;
    if ((x->dtype == FU_I64 || x->dtype == FU_I32) && x->kind == FU_VAL_CONST && x->data)
        val = fu_const_get_i(x, 0);
    else if (x->n_known == 1 && fu_dim_is_const(x->known[0]))
        val = x->known[0].coef;
    else
        return 0;
    if (val > (1 << 24) || val < -(1 << 24)) return 0;   /* exact in float32 (and float16 is not read here) */
    if (v->dtype != FU_F32) return 0;
    *out = (double)val;
    return 1;
}

static int range_arg_read(const fu_graph *g, const fu_node *n, int i, range_arg *r, fu_err *err) {
    const fu_value *v = &g->values[n->in[i]];
    memset(r, 0, sizeof *r);
    int64_t count;
    if (fu_value_numel_const(v, &count) != 0 || count != 1)
        return fu_node_fail(err, g, n, "input %d must be a scalar", i);
    if (v->kind == FU_VAL_CONST && v->data) {
        r->is_const = 1;
        r->number = fu_dtype_is_float(v->dtype) ? fu_const_get_f(v, 0) : (double)fu_const_get_i(v, 0);
    } else if (cast_of_known_int(g, v, &r->number)) {
        r->is_const = 1;
    } else if (v->n_known == 1) {
        if (fu_dim_is_const(v->known[0])) {
            r->is_const = 1;
            r->number = (double)v->known[0].coef;
        } else {
            r->is_dim = 1;
            r->dim = v->known[0];
        }
    }
    return 0;
}

/* Output length: a constant, or a symbolic limit with start 0 and delta 1. */
static int range_length(const fu_graph *g, const fu_node *n, fu_dim *len, range_arg *args, fu_err *err) {
    for (int i = 0; i < 3; i++)
        if (fu_require_input(g, n, i, FU_MASK(FU_F32) | FU_INTS, err)) return -1;
    fu_dtype t = g->values[n->in[0]].dtype;
    if (g->values[n->in[1]].dtype != t || g->values[n->in[2]].dtype != t)
        return fu_node_fail(err, g, n, "start, limit and delta must have the same dtype");
    for (int i = 0; i < 3; i++)
        if (range_arg_read(g, n, i, &args[i], err)) return -1;
    range_arg *start = &args[0], *limit = &args[1], *delta = &args[2];
    if (delta->is_const && delta->number == 0) return fu_node_fail(err, g, n, "delta is 0");
    if (start->is_const && limit->is_const && delta->is_const) {
        double steps = ceil((limit->number - start->number) / delta->number);
        if (!(steps < (double)FU_MAX_NUMEL)) return fu_node_fail(err, g, n, "output is too long");
        *len = fu_dim_const(steps > 0 ? (int64_t)steps : 0);
        return 0;
    }
    if (start->is_const && start->number == 0 && delta->is_const && delta->number == 1 && limit->is_dim) {
        *len = limit->dim;
        return 0;
    }
    fu_node_fail(err, g, n, "output length must be constant, or a known dim with start 0 and delta 1");
    /* the first operand whose value is unknown: specialising on the inputs it
     * comes from may make it constant (compiler/specialize.c) */
    for (int i = 0; i < 3; i++)
        if (!args[i].is_const && !args[i].is_dim) {
            if (err) err->needs_values = 1 + n->in[i];
            break;
        }
    return -1;
}

static int range_infer(fu_graph *g, fu_node *n, fu_err *err) {
    fu_dim len;
    range_arg args[3];
    if (range_length(g, n, &len, args, err)) return -1;
    fu_dtype t = g->values[n->in[0]].dtype;
    fu_set_output(g, n, 0, t, 1, &len);
    /* Exact in double below 2^53, far beyond any shape value. */
    int exact = fabs(args[0].number) < 9007199254740992.0 && fabs(args[2].number) < 9007199254740992.0;
    if (t == FU_I64 && exact && fu_dim_is_const(len) && len.coef <= KNOWN_MAX) {
        fu_dim vals[KNOWN_MAX];
        for (int64_t i = 0; i < len.coef; i++)
            vals[i] = fu_dim_const((int64_t)args[0].number + i * (int64_t)args[2].number);
        set_known(g, n, (int)len.coef, vals);
    }
    return 0;
}

/* out[i] = start + i * delta, reading start and delta at run time. */
static int range_emit(fu_emit *e, const fu_graph *g, const fu_node *n, fu_err *err) {
    const fu_value *y = &g->values[n->out[0]];
    const char *type = fu_c_type(y->dtype);
    char start[320], delta[320], out[320];
    snprintf(start, sizeof start, "%s", fu_emit_ptr(e, n->in[0]));
    snprintf(delta, sizeof delta, "%s", fu_emit_ptr(e, n->in[2]));
    snprintf(out, sizeof out, "%s", fu_emit_ptr(e, n->out[0]));
    fu_emitf(e, "const %s start = %s[0], delta = %s[0];", type, start, delta);
    fu_emitf(e, "for (int64_t i = 0; i < %s; i++) %s[i] = (%s)(start + (%s)i * delta);", fu_emit_dim(e, y->shape[0]),
             out, type, type);
    (void)err;
    return 0;
}

const fu_op fu_op_Range = {
    .name = "Range", .min_in = 3, .max_in = 3, .min_out = 1, .max_out = 1,
    .infer = range_infer, .emit = range_emit,
    .doc = "out[i] = start + i * delta for ceil((limit - start) / delta) elements. The length must be constant, "
           "or a known dim with start 0 and delta 1. ONNX Range-11.",
    .dtypes = "start, limit, delta: scalars, all float32 or all int64 or all int32",
};
