/* Elementwise ops. Each op gives its ONNX meaning in three parts:
 *   infer  dtype rule, numpy broadcast of the operand shapes, and (for small
 *          int/bool results) the output's values as dims when the operands'
 *          values are known, so shape arithmetic like Mul(seq, 16) or
 *          Where(Equal(shape, -1), 1, shape) stays visible to Reshape/Expand;
 *   expr   the scalar C expression for one output element;
 *   fold   the same computation on known dims (optional).
 * The emitter (compiler/emit.c) builds the loops, broadcast indexing and
 * fusion around expr.
 *
 * Operand expressions arrive in compute types (float for f32/f16/bf16,
 * int64_t, int32_t, int 0/1 for bool) and are side-effect free, so an
 * expression may use an operand twice; every use is parenthesised because
 * an operand may itself be an expression. Integer arithmetic wraps (two's
 * complement, like ONNX Runtime) by going through the unsigned type, since
 * signed overflow is undefined in C. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ops.h"

#define VARIADIC_MAX 8   /* most inputs accepted by Max / Min */
#define KNOWN_MAX 64     /* largest int tensor whose values inference tracks */

#define EXPR_ARGS const fu_graph *g, const fu_node *n, const char *const *a, char *buf, size_t sz, fu_err *err

static fu_dtype in_dtype(const fu_graph *g, const fu_node *n, int i) { return g->values[n->in[i]].dtype; }
static fu_dtype out_dtype(const fu_graph *g, const fu_node *n) { return g->values[n->out[0]].dtype; }
static int is_int(fu_dtype t) { return t == FU_I64 || t == FU_I32; }
static const char *int_type(fu_dtype t) { return t == FU_I32 ? "int32_t" : "int64_t"; }
static const char *uint_type(fu_dtype t) { return t == FU_I32 ? "uint32_t" : "uint64_t"; }

/* printf into the expression buffer; fails naming the node if it does not fit. */
__attribute__((format(printf, 6, 7))) static int put(const fu_graph *g, const fu_node *n, char *buf,
                                                     size_t sz, fu_err *err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(buf, sz, fmt, ap);
    va_end(ap);
    if (len < 0 || (size_t)len >= sz)
        return fu_node_fail(err, g, n, "C expression too long (%d bytes, buffer %zu)", len, sz);
    return 0;
}

/* ---- known-value folding -------------------------------------------------- */

typedef struct {
    int count;          /* operands */
    fu_dtype in, out;   /* dtype of operand 0 and of the output */
} fold_ctx;

/* Computes one output element from operand elements; returns 0 when the
 * result cannot be expressed as a dim (then nothing is propagated). */
typedef int (*fold_fn)(const fold_ctx *c, const fu_dim *x, fu_dim *out);

/* Values of v as dims: inference's known values, or int/bool constant data. */
static int known_values(const fu_value *v, fu_dim *vals) {
    if (v->n_known > 0 && v->n_known <= KNOWN_MAX) {
        memcpy(vals, v->known, sizeof(fu_dim) * (size_t)v->n_known);
        return v->n_known;
    }
    int64_t numel;
    if (v->kind != FU_VAL_CONST || !v->data || !(is_int(v->dtype) || v->dtype == FU_BOOL)) return -1;
    if (fu_value_numel_const(v, &numel) || numel > KNOWN_MAX) return -1;
    for (int64_t i = 0; i < numel; i++) vals[i] = fu_dim_const(fu_const_get_i(v, i));
    return (int)numel;
}

/* Sets output 0's known values by applying fold elementwise (with
 * broadcasting) when every operand's values are known. */
static void propagate_known(fu_graph *g, const fu_node *n, int count, fold_fn fold) {
    fu_value *out = &g->values[n->out[0]];
    int64_t numel;
    if (!(is_int(out->dtype) || out->dtype == FU_BOOL)) return;
    if (fu_value_numel_const(out, &numel) || numel <= 0 || numel > KNOWN_MAX) return;

    fu_dim vals[VARIADIC_MAX][KNOWN_MAX];
    int64_t strides[VARIADIC_MAX][FU_MAX_RANK];     /* per output axis; 0 on broadcast axes */
    for (int i = 0; i < count; i++) {
        const fu_value *v = &g->values[n->in[i]];
        int64_t vn;
        if (fu_value_numel_const(v, &vn) || known_values(v, vals[i]) != vn) return;
        int64_t stride = 1;
        for (int d = out->rank - 1; d >= 0; d--) {
            int vd = v->rank - out->rank + d;
            int64_t len = vd >= 0 ? v->shape[vd].coef : 1;
            strides[i][d] = len == 1 ? 0 : stride;
            stride *= len;
        }
    }
    fold_ctx ctx = {count, in_dtype(g, n, 0), out->dtype};
    fu_dim *res = malloc(sizeof(fu_dim) * (size_t)numel);
    if (!res) return;   /* known values are an optimisation; skipping is safe */
    for (int64_t e = 0; e < numel; e++) {
        fu_dim args[VARIADIC_MAX];
        for (int i = 0; i < count; i++) {
            int64_t rest = e, off = 0;
            for (int d = out->rank - 1; d >= 0; d--) {
                int64_t len = out->shape[d].coef;
                off += (rest % len) * strides[i][d];
                rest /= len;
            }
            args[i] = vals[i][off];
        }
        if (!fold(&ctx, args, &res[e])) {
            free(res);
            return;
        }
        if (out->dtype == FU_I32 && fu_dim_is_const(res[e])) res[e].coef = (int32_t)res[e].coef;
    }
    out->known = res;
    out->n_known = (int)numel;
}

static int64_t wrap_add(int64_t a, int64_t b) { return (int64_t)((uint64_t)a + (uint64_t)b); }
static int same_monomial(fu_dim a, fu_dim b) { return memcmp(a.pow, b.pow, sizeof a.pow) == 0; }
static fu_dim with_coef(fu_dim d, int64_t coef) {
    if (coef == 0) return fu_dim_const(0);
    d.coef = coef;
    return d;
}
static int both_const(const fu_dim *x) { return fu_dim_is_const(x[0]) && fu_dim_is_const(x[1]); }
/* A dim with a non-negative coefficient is >= 0 for any symbol values. */
static int nonneg(fu_dim d) { return d.coef >= 0; }

/* ---- shared infer rules ----------------------------------------------------- */

/* Broadcasts the shapes of inputs [0, count). */
static int broadcast_inputs(const fu_graph *g, const fu_node *n, int count, int *rank, fu_dim *shape,
                            fu_err *err) {
    *rank = 0;
    for (int i = 0; i < count; i++) {
        const fu_value *v = &g->values[n->in[i]];
        if (fu_broadcast(g, n, *rank, shape, v->rank, v->shape, rank, shape, err)) return -1;
    }
    return 0;
}

/* The common rule: operands [0, count) share one dtype allowed by mask,
 * their shapes broadcast, and the output has dtype `out` (FU_UNDEF: the
 * operands' dtype). */
static int infer_uniform(fu_graph *g, fu_node *n, int count, unsigned mask, fu_dtype out, fold_fn fold,
                         fu_err *err) {
    for (int i = 0; i < count; i++)
        if (fu_require_input(g, n, i, i == 0 ? mask : FU_MASK(in_dtype(g, n, 0)), err)) return -1;
    int rank;
    fu_dim shape[FU_MAX_RANK];
    if (broadcast_inputs(g, n, count, &rank, shape, err)) return -1;
    fu_set_output(g, n, 0, out == FU_UNDEF ? in_dtype(g, n, 0) : out, rank, shape);
    if (fold) propagate_known(g, n, count, fold);
    return 0;
}

/* Defines fu_op_Name from infer_Name and expr_Name; one output. */
#define OP(Name, lo_in, hi_in, operands, ...)                                                     \
    const fu_op fu_op_##Name = {.name = #Name, .min_in = lo_in, .max_in = hi_in, .min_out = 1,    \
                                .max_out = 1, .infer = infer_##Name,                              \
                                .elementwise_operands = operands, .expr = expr_##Name, __VA_ARGS__}

/* The documentation fields (ops/ops.h) shared by several ops. */
#define SAME_NUMERIC "float32, float16, bfloat16, int64, int32 (both inputs the same)"
#define NUMERIC "float32, float16, bfloat16, int64, int32"
#define FLOATS "float32, float16, bfloat16"

/* ---- arithmetic --------------------------------------------------------- */

/* Add: C = A + B, numpy broadcast, numeric types. */
static int fold_add(const fold_ctx *c, const fu_dim *x, fu_dim *out) {
    (void)c;
    if (same_monomial(x[0], x[1])) *out = with_coef(x[0], wrap_add(x[0].coef, x[1].coef));
    else if (fu_dim_eq(x[1], fu_dim_const(0))) *out = x[0];
    else if (fu_dim_eq(x[0], fu_dim_const(0))) *out = x[1];
    else return 0;
    return 1;
}
static int infer_Add(fu_graph *g, fu_node *n, fu_err *err) {
    return infer_uniform(g, n, 2, FU_NUMERIC, FU_UNDEF, fold_add, err);
}
static int expr_Add(EXPR_ARGS) {
    fu_dtype t = in_dtype(g, n, 0);
    if (is_int(t)) return put(g, n, buf, sz, err, "((%s)((%s)(%s) + (%s)(%s)))", int_type(t), uint_type(t), a[0], uint_type(t), a[1]);
    return put(g, n, buf, sz, err, "((%s) + (%s))", a[0], a[1]);
}
OP(Add, 2, 2, 2, .dtypes = SAME_NUMERIC,
   .doc = "C = A + B with numpy broadcasting; integers wrap (two's complement). ONNX Add-14.");

/* Sub: C = A - B, numpy broadcast, numeric types. */
static int fold_sub(const fold_ctx *c, const fu_dim *x, fu_dim *out) {
    (void)c;
    if (same_monomial(x[0], x[1])) *out = with_coef(x[0], (int64_t)((uint64_t)x[0].coef - (uint64_t)x[1].coef));
    else if (fu_dim_eq(x[1], fu_dim_const(0))) *out = x[0];
    else return 0;
    return 1;
}
static int infer_Sub(fu_graph *g, fu_node *n, fu_err *err) {
    return infer_uniform(g, n, 2, FU_NUMERIC, FU_UNDEF, fold_sub, err);
}
static int expr_Sub(EXPR_ARGS) {
    fu_dtype t = in_dtype(g, n, 0);
    if (is_int(t)) return put(g, n, buf, sz, err, "((%s)((%s)(%s) - (%s)(%s)))", int_type(t), uint_type(t), a[0], uint_type(t), a[1]);
    return put(g, n, buf, sz, err, "((%s) - (%s))", a[0], a[1]);
}
OP(Sub, 2, 2, 2, .dtypes = SAME_NUMERIC,
   .doc = "C = A - B with numpy broadcasting; integers wrap. ONNX Sub-14.");

/* Mul: C = A * B, numpy broadcast, numeric types. */
static int fold_mul(const fold_ctx *c, const fu_dim *x, fu_dim *out) {
    (void)c;
    if (x[0].coef == 0 || x[1].coef == 0) *out = fu_dim_const(0);
    else if (both_const(x)) *out = fu_dim_const((int64_t)((uint64_t)x[0].coef * (uint64_t)x[1].coef));
    else *out = fu_dim_mul(x[0], x[1]);
    return 1;
}
static int infer_Mul(fu_graph *g, fu_node *n, fu_err *err) {
    return infer_uniform(g, n, 2, FU_NUMERIC, FU_UNDEF, fold_mul, err);
}
static int expr_Mul(EXPR_ARGS) {
    fu_dtype t = in_dtype(g, n, 0);
    if (is_int(t)) return put(g, n, buf, sz, err, "((%s)((%s)(%s) * (%s)(%s)))", int_type(t), uint_type(t), a[0], uint_type(t), a[1]);
    return put(g, n, buf, sz, err, "((%s) * (%s))", a[0], a[1]);
}
OP(Mul, 2, 2, 2, .dtypes = SAME_NUMERIC,
   .doc = "C = A * B with numpy broadcasting; integers wrap. ONNX Mul-14.");

/* Div: C = A / B, numpy broadcast, numeric types. Integer division
 * truncates toward zero (C, ONNX Runtime); x / 0 gives 0 (numpy's result)
 * and INT_MIN / -1 wraps, instead of trapping. */
static int fold_div(const fold_ctx *c, const fu_dim *x, fu_dim *out) {
    (void)c;
    if (both_const(x)) {
        if (x[1].coef == 0) return 0;
        *out = fu_dim_const(x[1].coef == -1 ? (int64_t)(0 - (uint64_t)x[0].coef) : x[0].coef / x[1].coef);
        return 1;
    }
    return fu_dim_div(x[0], x[1], out) == 0;   /* exact division: truncation changes nothing */
}
static int infer_Div(fu_graph *g, fu_node *n, fu_err *err) {
    return infer_uniform(g, n, 2, FU_NUMERIC, FU_UNDEF, fold_div, err);
}
static int expr_Div(EXPR_ARGS) {
    fu_dtype t = in_dtype(g, n, 0);
    if (is_int(t))
        return put(g, n, buf, sz, err, "((%s) == 0 ? (%s)0 : (%s) == -1 ? (%s)(0 - (%s)(%s)) : (%s)((%s) / (%s)))",
                   a[1], int_type(t), a[1], int_type(t), uint_type(t), a[0], int_type(t), a[0], a[1]);
    return put(g, n, buf, sz, err, "((%s) / (%s))", a[0], a[1]);
}
OP(Div, 2, 2, 2, .dtypes = SAME_NUMERIC,
   .doc = "C = A / B with numpy broadcasting; integer division truncates toward zero, x / 0 gives 0 and "
          "INT_MIN / -1 wraps (no trap). ONNX Div-14.");

/* Pow: C = A ^ B, numpy broadcast. The base is float or integer, the
 * exponent any numeric type, as in ONNX; the output has the base's dtype.
 * Float base: powf (x * x for a constant exponent 2). Integer base and exponent: exact, by squaring
 * (fu_num_ipow, wrapping; a negative exponent truncates 1 / base^-e toward
 * zero). Integer base, float exponent: powf, converted back as Cast does
 * (truncation toward zero, INT_MIN when out of range or NaN). */
static int infer_Pow(fu_graph *g, fu_node *n, fu_err *err) {
    if (fu_require_input(g, n, 0, FU_NUMERIC, err) || fu_require_input(g, n, 1, FU_NUMERIC, err)) return -1;
    int rank;
    fu_dim shape[FU_MAX_RANK];
    if (broadcast_inputs(g, n, 2, &rank, shape, err)) return -1;
    fu_set_output(g, n, 0, in_dtype(g, n, 0), rank, shape);
    return 0;
}
/* The exponent is the constant scalar 2 (RMSNorm's x^2). */
static int exponent_is_two(const fu_graph *g, const fu_node *n) {
    const fu_value *e = &g->values[n->in[1]];
    int64_t numel;
    return e->kind == FU_VAL_CONST && e->data && fu_value_numel_const(e, &numel) == 0 && numel == 1 &&
           fu_const_get_f(e, 0) == 2.0;
}
static int expr_Pow(EXPR_ARGS) {
    fu_dtype t = in_dtype(g, n, 0), e = in_dtype(g, n, 1);
    if (!is_int(t) && exponent_is_two(g, n)) return put(g, n, buf, sz, err, "fu_num_square(%s)", a[0]);
    if (!is_int(t)) return put(g, n, buf, sz, err, "powf((%s), (float)(%s))", a[0], a[1]);
    if (is_int(e))
        return put(g, n, buf, sz, err, "((%s)(%s)fu_num_ipow((int64_t)(%s), (int64_t)(%s)))", int_type(t),
                   uint_type(t), a[0], a[1]);
    const char *lim = t == FU_I32 ? "2147483648.0f" : "9223372036854775808.0f";
    const char *min = t == FU_I32 ? "(-2147483647 - 1)" : "(-9223372036854775807LL - 1)";
    return put(g, n, buf, sz, err, "(powf((float)(%s), (float)(%s)) >= -%s && powf((float)(%s), (float)(%s)) < %s ? "
               "(%s)powf((float)(%s), (float)(%s)) : (%s)%s)", a[0], a[1], lim, a[0], a[1], lim, int_type(t), a[0],
               a[1], int_type(t), min);
}
OP(Pow, 2, 2, 2, .dtypes = "base: " NUMERIC "; exponent: any of those (the dtypes may differ)",
   .doc = "C = A ^ B with numpy broadcasting; C has the base's dtype. Float base: powf; integer base and "
          "exponent: exact (wrapping); integer base, float exponent: powf converted back as Cast does. ONNX Pow-15.");

/* Neg: Y = -X, numeric types (integers wrap). */
static int fold_neg(const fold_ctx *c, const fu_dim *x, fu_dim *out) {
    (void)c;
    *out = with_coef(x[0], (int64_t)(0 - (uint64_t)x[0].coef));
    return 1;
}
static int infer_Neg(fu_graph *g, fu_node *n, fu_err *err) {
    return infer_uniform(g, n, 1, FU_NUMERIC, FU_UNDEF, fold_neg, err);
}
static int expr_Neg(EXPR_ARGS) {
    fu_dtype t = in_dtype(g, n, 0);
    if (is_int(t)) return put(g, n, buf, sz, err, "((%s)(0 - (%s)(%s)))", int_type(t), uint_type(t), a[0]);
    return put(g, n, buf, sz, err, "(-(%s))", a[0]);
}
OP(Neg, 1, 1, 1, .dtypes = NUMERIC, .doc = "Y = -X; integers wrap. ONNX Neg-13.");

/* Abs: Y = |X|, numeric types (|INT_MIN| wraps to INT_MIN). */
static int fold_abs(const fold_ctx *c, const fu_dim *x, fu_dim *out) {
    (void)c;
    if (fu_dim_is_const(x[0])) *out = fu_dim_const(x[0].coef < 0 ? (int64_t)(0 - (uint64_t)x[0].coef) : x[0].coef);
    else if (nonneg(x[0])) *out = x[0];
    else return 0;
    return 1;
}
static int infer_Abs(fu_graph *g, fu_node *n, fu_err *err) {
    return infer_uniform(g, n, 1, FU_NUMERIC, FU_UNDEF, fold_abs, err);
}
static int expr_Abs(EXPR_ARGS) {
    fu_dtype t = in_dtype(g, n, 0);
    if (is_int(t))
        return put(g, n, buf, sz, err, "((%s) < 0 ? (%s)(0 - (%s)(%s)) : (%s))", a[0], int_type(t), uint_type(t), a[0], a[0]);
    return put(g, n, buf, sz, err, "fabsf(%s)", a[0]);
}
OP(Abs, 1, 1, 1, .dtypes = NUMERIC, .doc = "Y = |X|; |INT_MIN| wraps to INT_MIN. ONNX Abs-13.");

/* ---- float math (float types only) ---------------------------------------- */

#define FLOAT_UNARY(Name, fmt, ...)                                                         \
    static int infer_##Name(fu_graph *g, fu_node *n, fu_err *err) {                         \
        return infer_uniform(g, n, 1, FU_FLOATS, FU_UNDEF, NULL, err);                      \
    }                                                                                       \
    static int expr_##Name(EXPR_ARGS) { return put(g, n, buf, sz, err, fmt, a[0]); }        \
    OP(Name, 1, 1, 1, .dtypes = FLOATS, __VA_ARGS__)

FLOAT_UNARY(Sqrt, "sqrtf(%s)", .doc = "Y = sqrt(X) (sqrtf). ONNX Sqrt-13.");
FLOAT_UNARY(Reciprocal, "(1.0f / (%s))", .doc = "Y = 1 / X. ONNX Reciprocal-13.");
FLOAT_UNARY(Exp, "expf(%s)", .doc = "Y = e^X (expf). ONNX Exp-13.");
FLOAT_UNARY(Log, "logf(%s)", .doc = "Y = ln X (logf). ONNX Log-13.");
FLOAT_UNARY(Erf, "erff(%s)", .doc = "Y = erf(X) (erff). ONNX Erf-13.");
FLOAT_UNARY(Tanh, "tanhf(%s)", .doc = "Y = tanh(X) (tanhf). ONNX Tanh-13.");
FLOAT_UNARY(Sigmoid, "(1.0f / (1.0f + expf(-(%s))))", .doc = "Y = 1 / (1 + e^-X). ONNX Sigmoid-13.");
FLOAT_UNARY(Cos, "cosf(%s)", .doc = "Y = cos(X) (cosf). ONNX Cos-7.");
FLOAT_UNARY(Sin, "sinf(%s)", .doc = "Y = sin(X) (sinf). ONNX Sin-7.");

/* Relu: Y = max(X, 0), numeric types; NaN passes through (as numpy's
 * maximum and PyTorch's relu do). */
static int fold_relu(const fold_ctx *c, const fu_dim *x, fu_dim *out) {
    (void)c;
    if (fu_dim_is_const(x[0])) *out = fu_dim_const(x[0].coef < 0 ? 0 : x[0].coef);
    else if (nonneg(x[0])) *out = x[0];
    else return 0;
    return 1;
}
static int infer_Relu(fu_graph *g, fu_node *n, fu_err *err) {
    return infer_uniform(g, n, 1, FU_NUMERIC, FU_UNDEF, fold_relu, err);
}
static int expr_Relu(EXPR_ARGS) { return put(g, n, buf, sz, err, "((%s) < 0 ? 0 : (%s))", a[0], a[0]); }
OP(Relu, 1, 1, 1, .dtypes = NUMERIC, .doc = "Y = max(X, 0); NaN passes through. ONNX Relu-14.");

/* ---- Max / Min -------------------------------------------------------------- */

/* Max / Min: elementwise extreme of 1..N inputs, all broadcast together,
 * numeric types. Float NaN propagates (numpy maximum / minimum). The
 * emitter gives n->n_in operands (elementwise_operands is the upper bound). */
static int fold_extreme(const fold_ctx *c, const fu_dim *x, fu_dim *out, int want_max) {
    int all_const = 1, all_equal = 1;
    for (int i = 0; i < c->count; i++) {
        all_const &= fu_dim_is_const(x[i]);
        all_equal &= fu_dim_eq(x[i], x[0]);
    }
    if (all_equal) {
        *out = x[0];
        return 1;
    }
    if (!all_const) return 0;
    int64_t m = x[0].coef;
    for (int i = 1; i < c->count; i++)
        if (want_max ? x[i].coef > m : x[i].coef < m) m = x[i].coef;
    *out = fu_dim_const(m);
    return 1;
}
static int fold_max(const fold_ctx *c, const fu_dim *x, fu_dim *out) { return fold_extreme(c, x, out, 1); }
static int fold_min(const fold_ctx *c, const fu_dim *x, fu_dim *out) { return fold_extreme(c, x, out, 0); }

/* Folds left: m = a0; m = (m > ak ? m : ak). Each level repeats the
 * previous expression, so more than a few inputs can exceed the buffer
 * (reported as an error). */
static int expr_extreme(EXPR_ARGS, const char *cmp) {
    int is_float = fu_dtype_is_float(in_dtype(g, n, 0));
    if (put(g, n, buf, sz, err, n->n_in == 1 ? "(%s)" : "%s", a[0])) return -1;
    char *prev = malloc(sz);
    if (!prev) return fu_node_fail(err, g, n, "out of memory");
    int rc = 0;
    for (int k = 1; k < n->n_in && rc == 0; k++) {
        memcpy(prev, buf, strlen(buf) + 1);
        if (is_float)
            rc = put(g, n, buf, sz, err, "((%s) != (%s) || (%s) %s (%s) ? (%s) : (%s))", prev, prev, prev, cmp, a[k],
                     prev, a[k]);
        else
            rc = put(g, n, buf, sz, err, "((%s) %s (%s) ? (%s) : (%s))", prev, cmp, a[k], prev, a[k]);
    }
    free(prev);
    return rc;
}
static int infer_Max(fu_graph *g, fu_node *n, fu_err *err) {
    return infer_uniform(g, n, n->n_in, FU_NUMERIC, FU_UNDEF, fold_max, err);
}
static int expr_Max(EXPR_ARGS) { return expr_extreme(g, n, a, buf, sz, err, ">"); }
OP(Max, 1, VARIADIC_MAX, VARIADIC_MAX, .dtypes = NUMERIC " (all inputs the same)",
   .doc = "Elementwise maximum of 1 to 8 inputs broadcast together (ONNX allows any number); a float NaN "
          "propagates. ONNX Max-13.");

static int infer_Min(fu_graph *g, fu_node *n, fu_err *err) {
    return infer_uniform(g, n, n->n_in, FU_NUMERIC, FU_UNDEF, fold_min, err);
}
static int expr_Min(EXPR_ARGS) { return expr_extreme(g, n, a, buf, sz, err, "<"); }
OP(Min, 1, VARIADIC_MAX, VARIADIC_MAX, .dtypes = NUMERIC " (all inputs the same)",
   .doc = "Elementwise minimum of 1 to 8 inputs broadcast together (ONNX allows any number); a float NaN "
          "propagates. ONNX Min-13.");

/* ---- comparisons (output bool) ------------------------------------------------ */

/* Equal: A == B, any type including bool. A symbol is never negative, so
 * seq == -1 is known false (torch exports compare shapes with -1). */
static int fold_equal(const fold_ctx *c, const fu_dim *x, fu_dim *out) {
    (void)c;
    if (fu_dim_eq(x[0], x[1])) *out = fu_dim_const(1);
    else if (both_const(x)) *out = fu_dim_const(0);
    else if ((nonneg(x[0]) && fu_dim_is_const(x[1]) && x[1].coef < 0) ||
             (nonneg(x[1]) && fu_dim_is_const(x[0]) && x[0].coef < 0))
        *out = fu_dim_const(0);
    else return 0;
    return 1;
}
static int infer_Equal(fu_graph *g, fu_node *n, fu_err *err) {
    return infer_uniform(g, n, 2, FU_ANY, FU_BOOL, fold_equal, err);
}
static int expr_Equal(EXPR_ARGS) { return put(g, n, buf, sz, err, "((%s) == (%s))", a[0], a[1]); }
OP(Equal, 2, 2, 2, .dtypes = "any: " NUMERIC ", bool (both inputs the same)",
   .doc = "C = (A == B), bool, with numpy broadcasting. ONNX Equal-13.");

/* Less, Greater, LessOrEqual, GreaterOrEqual: numeric comparisons. */
#define COMPARISON(Name, op, ...)                                                                \
    static int fold_##Name(const fold_ctx *c, const fu_dim *x, fu_dim *out) {                    \
        (void)c;                                                                                 \
        if (!both_const(x)) return 0;                                                            \
        *out = fu_dim_const(x[0].coef op x[1].coef);                                             \
        return 1;                                                                                \
    }                                                                                            \
    static int infer_##Name(fu_graph *g, fu_node *n, fu_err *err) {                              \
        return infer_uniform(g, n, 2, FU_NUMERIC, FU_BOOL, fold_##Name, err);                    \
    }                                                                                            \
    static int expr_##Name(EXPR_ARGS) { return put(g, n, buf, sz, err, "((%s) " #op " (%s))", a[0], a[1]); } \
    OP(Name, 2, 2, 2, .dtypes = SAME_NUMERIC, __VA_ARGS__)

COMPARISON(Less, <, .doc = "C = (A < B), bool, with numpy broadcasting. ONNX Less-13.");
COMPARISON(Greater, >, .doc = "C = (A > B), bool, with numpy broadcasting. ONNX Greater-13.");
COMPARISON(LessOrEqual, <=, .doc = "C = (A <= B), bool, with numpy broadcasting. ONNX LessOrEqual-16.");
COMPARISON(GreaterOrEqual, >=, .doc = "C = (A >= B), bool, with numpy broadcasting. ONNX GreaterOrEqual-16.");

/* ---- logic (bool only) -------------------------------------------------------- */

/* Not: Y = !X. */
static int fold_not(const fold_ctx *c, const fu_dim *x, fu_dim *out) {
    (void)c;
    if (!fu_dim_is_const(x[0])) return 0;
    *out = fu_dim_const(!x[0].coef);
    return 1;
}
static int infer_Not(fu_graph *g, fu_node *n, fu_err *err) {
    return infer_uniform(g, n, 1, FU_MASK(FU_BOOL), FU_BOOL, fold_not, err);
}
static int expr_Not(EXPR_ARGS) { return put(g, n, buf, sz, err, "(!(%s))", a[0]); }
OP(Not, 1, 1, 1, .dtypes = "bool", .doc = "Y = !X. ONNX Not-1.");

/* And / Or: logical and / or of two broadcast bool tensors. */
static int fold_and(const fold_ctx *c, const fu_dim *x, fu_dim *out) {
    (void)c;
    if (!both_const(x)) return 0;
    *out = fu_dim_const(x[0].coef && x[1].coef);
    return 1;
}
static int infer_And(fu_graph *g, fu_node *n, fu_err *err) {
    return infer_uniform(g, n, 2, FU_MASK(FU_BOOL), FU_BOOL, fold_and, err);
}
static int expr_And(EXPR_ARGS) { return put(g, n, buf, sz, err, "((%s) && (%s))", a[0], a[1]); }
OP(And, 2, 2, 2, .dtypes = "bool", .doc = "C = A && B with numpy broadcasting. ONNX And-7.");

static int fold_or(const fold_ctx *c, const fu_dim *x, fu_dim *out) {
    (void)c;
    if (!both_const(x)) return 0;
    *out = fu_dim_const(x[0].coef || x[1].coef);
    return 1;
}
static int infer_Or(fu_graph *g, fu_node *n, fu_err *err) {
    return infer_uniform(g, n, 2, FU_MASK(FU_BOOL), FU_BOOL, fold_or, err);
}
static int expr_Or(EXPR_ARGS) { return put(g, n, buf, sz, err, "((%s) || (%s))", a[0], a[1]); }
OP(Or, 2, 2, 2, .dtypes = "bool", .doc = "C = A || B with numpy broadcasting. ONNX Or-7.");

/* ---- Where, Cast, Expand -------------------------------------------------------- */

/* Where: out = cond ? X : Y, with cond (bool), X and Y broadcast together;
 * X and Y share any dtype, which the output takes. */
static int fold_where(const fold_ctx *c, const fu_dim *x, fu_dim *out) {
    (void)c;
    if (!fu_dim_is_const(x[0])) return 0;
    *out = x[0].coef ? x[1] : x[2];
    return 1;
}
static int infer_Where(fu_graph *g, fu_node *n, fu_err *err) {
    if (fu_require_input(g, n, 0, FU_MASK(FU_BOOL), err) || fu_require_input(g, n, 1, FU_ANY, err) ||
        fu_require_input(g, n, 2, FU_MASK(in_dtype(g, n, 1)), err))
        return -1;
    int rank;
    fu_dim shape[FU_MAX_RANK];
    if (broadcast_inputs(g, n, 3, &rank, shape, err)) return -1;
    fu_set_output(g, n, 0, in_dtype(g, n, 1), rank, shape);
    propagate_known(g, n, 3, fold_where);
    return 0;
}
static int expr_Where(EXPR_ARGS) { return put(g, n, buf, sz, err, "((%s) ? (%s) : (%s))", a[0], a[1], a[2]); }
OP(Where, 3, 3, 3, .dtypes = "condition: bool; X, Y: any (the same), which the output takes",
   .doc = "out = condition ? X : Y, the three broadcast together. ONNX Where-16.");

/* Cast: converts to the dtype named by attribute `to` (ONNX TensorProto
 * number). Float to int truncates toward zero; NaN and out-of-range values
 * give INT_MIN, what x86 (and so ONNX Runtime and numpy) produce, without C's
 * undefined behaviour. To bool is x != 0 (NaN is true). Casting to f16/bf16
 * rounds in the expression too, so a fused consumer sees the rounded value. */
static fu_dtype onnx_dtype(int64_t to) {
    switch (to) {
    case 1: return FU_F32;
    case 10: return FU_F16;
    case 16: return FU_BF16;
    case 7: return FU_I64;
    case 6: return FU_I32;
    case 9: return FU_BOOL;
    default: return FU_UNDEF;
    }
}
static int fold_cast(const fold_ctx *c, const fu_dim *x, fu_dim *out) {
    if (fu_dtype_is_float(c->in) || fu_dtype_is_float(c->out)) return 0;
    if (c->out == FU_BOOL) {
        if (!fu_dim_is_const(x[0])) return 0;
        *out = fu_dim_const(x[0].coef != 0);
    } else {
        *out = x[0];   /* int32 results are wrapped by propagate_known */
    }
    return 1;
}
static int infer_Cast(fu_graph *g, fu_node *n, fu_err *err) {
    const fu_attr *to = fu_node_attr(n, "to");
    if (!to || to->kind != FU_ATTR_INT) return fu_node_fail(err, g, n, "missing int attribute 'to'");
    fu_dtype t = onnx_dtype(to->i);
    if (t == FU_UNDEF)
        return fu_node_fail(err, g, n, "Cast to ONNX dtype %lld is not supported (float32, float16, bfloat16, int64, int32, bool are)",
                            (long long)to->i);
    if (fu_require_input(g, n, 0, FU_ANY, err)) return -1;
    const fu_value *x = &g->values[n->in[0]];
    fu_set_output(g, n, 0, t, x->rank, x->shape);
    propagate_known(g, n, 1, fold_cast);
    return 0;
}
static int expr_Cast(EXPR_ARGS) {
    fu_dtype from = in_dtype(g, n, 0), to = out_dtype(g, n);
    const char *x = a[0];
    if (from == to) return put(g, n, buf, sz, err, "(%s)", x);
    switch (to) {
    case FU_BOOL: return put(g, n, buf, sz, err, "((%s) != 0)", x);
    case FU_F32: return put(g, n, buf, sz, err, "((float)(%s))", x);
    case FU_F16: return put(g, n, buf, sz, err, "fu_rt_f16_to_f32(fu_rt_f32_to_f16((float)(%s)))", x);
    case FU_BF16: return put(g, n, buf, sz, err, "fu_rt_bf16_to_f32(fu_rt_f32_to_bf16((float)(%s)))", x);
    case FU_I64:
        if (fu_dtype_is_float(from))
            return put(g, n, buf, sz, err,
                       "((%s) >= -9223372036854775808.0f && (%s) < 9223372036854775808.0f ? (int64_t)(%s) : "
                       "(int64_t)(-9223372036854775807LL - 1))", x, x, x);
        return put(g, n, buf, sz, err, "((int64_t)(%s))", x);
    case FU_I32:
        if (fu_dtype_is_float(from))
            return put(g, n, buf, sz, err,
                       "((%s) >= -2147483648.0f && (%s) < 2147483648.0f ? (int32_t)(%s) : (int32_t)(-2147483647 - 1))",
                       x, x, x);
        return put(g, n, buf, sz, err, "((int32_t)(%s))", x);   /* int64 -> int32 wraps */
    default: return fu_node_fail(err, g, n, "Cast to %s has no C expression", fu_dtype_name(to));
    }
}
OP(Cast, 1, 1, 1, .dtypes = "any: " NUMERIC ", bool",
   .doc = "Converts to the dtype `to` names. Float to int truncates toward zero, NaN and out-of-range values give "
          "INT_MIN; to bool is x != 0 (NaN is true); int64 to int32 wraps; to float16/bfloat16 rounds. ONNX Cast-13 "
          "(Cast-19's saturate, for float8 only, is not read).",
   .attrs = "to (required): ONNX TensorProto dtype number, one of 1 float32, 10 float16, 16 bfloat16, 7 int64, "
            "6 int32, 9 bool");

/* Expand: broadcasts input 0 against the int64 shape in input 1 (numpy
 * rule in both directions, so a target dim of 1 keeps the input's dim).
 * Only input 0 is an elementwise operand; the shape must be constant or
 * known from shape arithmetic. */
static int fold_identity(const fold_ctx *c, const fu_dim *x, fu_dim *out) {
    (void)c;
    *out = x[0];
    return 1;
}
static int infer_Expand(fu_graph *g, fu_node *n, fu_err *err) {
    if (fu_require_input(g, n, 0, FU_ANY, err) || fu_require_input(g, n, 1, FU_MASK(FU_I64), err)) return -1;
    if (g->values[n->in[1]].rank != 1)
        return fu_node_fail(err, g, n, "shape input must be 1-D, got rank %d", g->values[n->in[1]].rank);
    fu_dim target[FU_MAX_RANK];
    int count;
    if (fu_input_dims(g, n, 1, target, FU_MAX_RANK, &count, err)) return -1;
    for (int i = 0; i < count; i++)
        if (fu_dim_is_const(target[i]) && target[i].coef < 0)
            return fu_node_fail(err, g, n, "shape value %d is negative (%lld)", i, (long long)target[i].coef);
    const fu_value *x = &g->values[n->in[0]];
    int rank;
    fu_dim shape[FU_MAX_RANK];
    if (fu_broadcast(g, n, x->rank, x->shape, count, target, &rank, shape, err)) return -1;
    fu_set_output(g, n, 0, x->dtype, rank, shape);
    propagate_known(g, n, 1, fold_identity);
    return 0;
}
static int expr_Expand(EXPR_ARGS) { return put(g, n, buf, sz, err, "(%s)", a[0]); }
OP(Expand, 2, 2, 1, .dtypes = "input: any; shape: int64 (1-D, constant or known from shape arithmetic)",
   .doc = "Broadcasts input to `shape` by the numpy rule in both directions (a target dim 1 keeps the input's dim). "
          "ONNX Expand-13.");
