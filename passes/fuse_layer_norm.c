/* Fusion rule "layer_norm": layer normalisation over the last axis,
 *
 *   d = x - mean(x, axis=-1, keepdims=1)
 *   y = d / sqrt(mean(d^2, axis=-1, keepdims=1) + eps) [* scale] [+ bias]
 *
 * becomes LayerNormalization(x [, scale] [, bias]) with axis = -1, the core
 * in any spelling of passes/norm_patterns.h. scale (Mul) and bias (Add), in
 * either operand order, must be float32 [n] vectors (n = x's last dim); a
 * Mul or Add with anything else stays outside and the part before it fuses. */
#include <stdio.h>
#include "norm_patterns.h"

enum { X = NORM_SLOTS, D, MEAN, Y, SCALE, BIAS };

#define CENTRED CAP(D, OP(Sub, VAL(X), CAP(MEAN, OP(ReduceMean, VAL(Y)))))
#define LN_CORE NORM_CORE(CENTRED, D)

enum { SCALED = 1, BIASED = 2 };
static const int parts[] = {SCALED | BIASED, SCALED, BIASED, 0};
static const fu_pat *const patterns[] = {
    QUIET(OPC(Add, OPC(Mul, LN_CORE, VAL(SCALE)), VAL(BIAS))),
    QUIET(OPC(Mul, LN_CORE, VAL(SCALE))),
    QUIET(OPC(Add, LN_CORE, VAL(BIAS))),
    LN_CORE,
    NULL,
};

static int check(fu_fuse_ctx *c, fu_match *m, char *why, size_t n) {
    const fu_graph *g = c->g;
    int x = m->v[X], p = parts[m->variant];
    double eps;
    if (((p & SCALED) && !fu_norm_is_vector(g, m->v[SCALE], x)) || ((p & BIASED) && !fu_norm_is_vector(g, m->v[BIAS], x)))
        return 0;
    if (fu_m_skip_casts(g, m->v[Y]) != fu_m_skip_casts(g, x))
        return snprintf(why, n, "the mean subtracted is not the mean of '%s'", fu_m_name(g, x)), 0;
    fu_m_const_scalar(g, m->v[EPS], &eps);
    return fu_norm_reduces_last_axis(g, m->node[MEAN], "the mean's ReduceMean", why, n) &&
           fu_norm_reduces_last_axis(g, m->node[VAR], "the variance's ReduceMean", why, n) &&
           fu_norm_check_io(g, x, g->nodes[m->anchor].out[0], eps, why, n);
}

static int rewrite(fu_fuse_ctx *c, fu_match *m, fu_err *err) {
    fu_graph *g = c->g;
    int p = parts[m->variant];
    /* X, Scale, B; an omitted Scale before a present B is -1 (""). */
    int inputs[3] = {m->v[X], p & SCALED ? m->v[SCALE] : -1, p & BIASED ? m->v[BIAS] : -1};
    int n_in = p & BIASED ? 3 : p & SCALED ? 2 : 1;
    double eps;
    fu_m_const_scalar(g, m->v[EPS], &eps);
    int idx = fu_fuse_replace(c, m, FU_OP_LayerNormalization, inputs, n_in, err);
    if (idx < 0) return -1;
    if (!fu_node_set_attr_int(&g->nodes[idx], "axis", -1) || !fu_node_set_attr_float(&g->nodes[idx], "epsilon", eps))
        return fu_fail(err, "out of memory while fusing");
    fu_fuse_accept(c, m->anchor, "LayerNormalization (eps=%g%s%s) replacing %d nodes", eps,
                   p & SCALED ? ", scale" : "", p & BIASED ? ", bias" : "", m->n_nodes);
    return 0;
}

const fu_fusion_rule fu_rule_layer_norm = {"layer_norm", patterns, check, rewrite};
