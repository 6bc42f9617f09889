/* Fusion rule "rms_norm": RMS normalisation over the last axis,
 *
 *   y = x / sqrt(mean(x^2, axis=-1, keepdims=1) + eps) [* scale]
 *
 * becomes RMSNormalization(x [, scale]) with axis = -1, in any of the
 * spellings of passes/norm_patterns.h. The scale is Mul(normed, scale) in
 * either order with a float32 [n] vector (n = x's last dim); any other Mul
 * stays outside and the core fuses alone. Real casts at the edges (an f16 x
 * cast to float before, cast back after, as HF exports half models) stay;
 * x^2 and the normalised x may be reached through different casts of x.
 * Any rank fuses, so Qwen3's per-head q/k norms over [1, S, H, D] do too.
 * x = Sub(a, ReduceMean(a)) is a LayerNorm: left to rule "layer_norm".
 * This file also holds the checks both norm rules share. */
#include <stdio.h>
#include <string.h>
#include "norm_patterns.h"

enum { X = NORM_SLOTS, SCALE };

int fu_norm_reduces_last_axis(const fu_graph *g, int mean, const char *what, char *why, size_t n) {
    int rank = g->values[g->nodes[mean].in[0]].rank, count, all;
    int64_t axes[FU_MAX_RANK];
    if (fu_m_reduce_axes(g, mean, axes, FU_MAX_RANK, &count, &all))
        return snprintf(why, n, "%s axes are not a constant list", what), 0;
    if (all ? rank != 1 : count != 1 || axes[0] != rank - 1) {
        char list[96] = "";
        for (int i = 0; i < count; i++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%lld", i ? "," : "", (long long)axes[i]);
        return snprintf(why, n, "%s reduces over axes [%s], not only the last axis (%d)", what, all ? "all" : list,
                        rank - 1), 0;
    }
    if (fu_attr_int(&g->nodes[mean], "keepdims", 1) == 0) return snprintf(why, n, "%s has keepdims=0", what), 0;
    return 1;
}

int fu_norm_check_io(const fu_graph *g, int x, int result, double eps, char *why, size_t n) {
    const fu_value *xv = &g->values[x], *y = &g->values[result];
    if (xv->dtype != FU_F32 || xv->rank < 1)
        return snprintf(why, n, "input '%s' is %s of rank %d; the fused norm takes float32 of rank >= 1",
                        fu_m_name(g, x), fu_dtype_name(xv->dtype), xv->rank), 0;
    if (!(eps >= 0)) return snprintf(why, n, "epsilon %g is negative", eps), 0;
    /* An epsilon of higher rank would broadcast the result. */
    if (y->dtype != FU_F32 || !fu_value_same_shape(y, xv))
        return snprintf(why, n, "the result is not float32 of the input's shape"), 0;
    return 1;
}

int fu_norm_is_vector(const fu_graph *g, int v, int x) {
    const fu_value *s = &g->values[v], *xv = &g->values[x];
    return s->dtype == FU_F32 && s->rank == 1 && fu_dim_eq(s->shape[0], xv->shape[xv->rank - 1]);
}

static const fu_pat *const patterns[] = {
    QUIET(OPC(Mul, NORM_CORE(VAL(X), X), VAL(SCALE))),
    NORM_CORE(VAL(X), X),
    NULL,
};

static int check(fu_fuse_ctx *c, fu_match *m, char *why, size_t n) {
    const fu_graph *g = c->g;
    int x = m->v[X], sub = fu_m_producer(g, x, FU_OP_Sub);
    double eps;
    /* Div(1, Sqrt(..)) alone normalises a constant; a centred x is a LayerNorm. */
    if (g->values[x].kind == FU_VAL_CONST || (sub >= 0 && fu_m_producer(g, g->nodes[sub].in[1], FU_OP_ReduceMean) >= 0))
        return 0;
    if (m->variant == 0 && !fu_norm_is_vector(g, m->v[SCALE], x)) return 0;
    fu_m_const_scalar(g, m->v[EPS], &eps);
    return fu_norm_reduces_last_axis(g, m->node[VAR], "ReduceMean", why, n) &&
           fu_norm_check_io(g, x, g->nodes[m->anchor].out[0], eps, why, n);
}

static int rewrite(fu_fuse_ctx *c, fu_match *m, fu_err *err) {
    fu_graph *g = c->g;
    int scaled = m->variant == 0, inputs[2] = {m->v[X], m->v[SCALE]};
    double eps;
    fu_m_const_scalar(g, m->v[EPS], &eps);
    int idx = fu_fuse_replace(c, m, FU_OP_RMSNormalization, inputs, scaled ? 2 : 1, err);
    if (idx < 0) return -1;
    if (!fu_node_set_attr_int(&g->nodes[idx], "axis", -1) || !fu_node_set_attr_float(&g->nodes[idx], "epsilon", eps))
        return fu_fail(err, "out of memory while fusing");
    const fu_value *x = &g->values[m->v[X]];
    char dim[64];
    fu_dim_str(g, x->shape[x->rank - 1], dim, sizeof dim);
    fu_fuse_accept(c, m->anchor, "RMSNormalization (n=%s, eps=%g, %s scale) replacing %d nodes", dim, eps,
                   scaled ? "with" : "no", m->n_nodes);
    return 0;
}

const fu_fusion_rule fu_rule_rms_norm = {"rms_norm", patterns, check, rewrite};
