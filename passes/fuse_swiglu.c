/* Fusion rule "swiglu": the gated MLP activation
 *   Mul(Mul(g, Sigmoid(g)), u)  ->  SwiGLU(g, u)
 * SiLU spelled g * Sigmoid(g); the three factors may come in any grouping
 * and operand order (Mul(Mul(Sigmoid(g), u), g) is the same product). The
 * Sigmoid may have other readers: it then stays. */
#include <stdio.h>
#include "fusion.h"

enum { GATE = 1, UP };

#define SIGMOID_OF_GATE OPF(Sigmoid, FU_PAT_SHARED | FU_PAT_NEAR, VAL(GATE))
static const fu_pat *const patterns[] = {
    EITHER("product", OPC(Mul, OPC(Mul, VAL(GATE), SIGMOID_OF_GATE), VAL(UP)),
           OPC(Mul, OPC(Mul, SIGMOID_OF_GATE, VAL(UP)), VAL(GATE)),
           OPC(Mul, OPC(Mul, VAL(GATE), VAL(UP)), SIGMOID_OF_GATE)),
    NULL,
};

static int check(fu_fuse_ctx *c, fu_match *m, char *why, size_t n) {
    const fu_value *g = &c->g->values[m->v[GATE]], *u = &c->g->values[m->v[UP]];
    if (g->dtype != FU_F32 || u->dtype != FU_F32)
        return snprintf(why, n, "gate and up must be float32 (got %s and %s)", fu_dtype_name(g->dtype),
                        fu_dtype_name(u->dtype)), 0;
    if (!fu_value_same_shape(g, u) || !fu_value_same_shape(g, &c->g->values[c->g->nodes[m->anchor].out[0]]))
        return snprintf(why, n, "gate and up shapes differ (broadcast product)"), 0;
    return 1;
}

static int rewrite(fu_fuse_ctx *c, fu_match *m, fu_err *err) {
    int inputs[2] = {m->v[GATE], m->v[UP]};
    if (fu_fuse_replace(c, m, FU_OP_SwiGLU, inputs, 2, err) < 0) return -1;
    fu_fuse_accept(c, m->anchor, "SwiGLU(gate '%s', up '%s')", fu_m_name(c->g, inputs[0]), fu_m_name(c->g, inputs[1]));
    return 0;
}

const fu_fusion_rule fu_rule_swiglu = {"swiglu", patterns, check, rewrite};
