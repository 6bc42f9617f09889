/* Fusion rule "gelu": the GELU activation as exporters write it,
 *
 *   erf form   0.5 * x * (1 + erf(x / sqrt(2)))                (PyTorch's default)
 *   tanh form  0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))
 *
 * becomes Gelu(x) (approximate = "none" or "tanh"). The three factors 0.5,
 * x and (1 + ...) come in any grouping and order; x / sqrt(2) may be
 * x * (1/sqrt(2)); x^3 is Pow(x, 3), x * (x * x) or (x * x) * x. Constants
 * match to float32 precision. */
#include <math.h>
#include <stdio.h>
#include "fusion.h"

enum { X = 1 };

#define ERF_ARG EITHER("erf argument", OP(Div, VAL(X), SCALAR(M_SQRT2, "divisor")), \
                       OPC(Mul, VAL(X), SCALAR(M_SQRT1_2, "factor")))
#define CUBE EITHER("cube", OP(Pow, VAL(X), SCALAR(3, "exponent")), OPC(Mul, VAL(X), OP(Mul, VAL(X), VAL(X))))
#define TANH_ARG OPC(Mul, SCALAR(0.7978845608028654, "sqrt(2/pi)"), \
                     OPC(Add, VAL(X), OPC(Mul, CUBE, SCALAR(0.044715, "cubic coefficient"))))
/* 0.5 * x * (1 + inner), the factors grouped any way. */
#define HALF_X_TIMES(inner)                                                                               \
    EITHER("product", OPC(Mul, OPC(Mul, VAL(X), SCALAR(0.5, "factor")), OPC(Add, inner, SCALAR(1, "one"))), \
           OPC(Mul, VAL(X), OPC(Mul, SCALAR(0.5, "factor"), OPC(Add, inner, SCALAR(1, "one")))),          \
           OPC(Mul, OPC(Mul, VAL(X), OPC(Add, inner, SCALAR(1, "one"))), SCALAR(0.5, "factor")))

static const fu_pat *const patterns[] = {
    HALF_X_TIMES(OPF(Erf, FU_PAT_NEAR, ERF_ARG)),
    HALF_X_TIMES(OPF(Tanh, FU_PAT_NEAR, TANH_ARG)),
    NULL,
};

static int check(fu_fuse_ctx *c, fu_match *m, char *why, size_t n) {
    const fu_value *x = &c->g->values[m->v[X]], *y = &c->g->values[c->g->nodes[m->anchor].out[0]];
    if (x->dtype != FU_F32) return snprintf(why, n, "x is %s; the fused Gelu takes float32", fu_dtype_name(x->dtype)), 0;
    if (!fu_value_same_shape(x, y)) return snprintf(why, n, "the result is not x's shape (a broadcasting constant)"), 0;
    return 1;
}

static int rewrite(fu_fuse_ctx *c, fu_match *m, fu_err *err) {
    const char *approximate = m->variant == 0 ? "none" : "tanh";
    int idx = fu_fuse_replace(c, m, FU_OP_Gelu, &m->v[X], 1, err);
    if (idx < 0) return -1;
    if (m->variant == 1 && !fu_node_set_attr_string(&c->g->nodes[idx], "approximate", approximate))
        return fu_fail(err, "out of memory while fusing");
    fu_fuse_accept(c, m->anchor, "Gelu(approximate=%s) replacing %d nodes", approximate, m->n_nodes);
    return 0;
}

const fu_fusion_rule fu_rule_gelu = {"gelu", patterns, check, rewrite};
