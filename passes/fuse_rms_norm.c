/* Fusion rule "rms_norm": RMS normalisation over the last axis.
 *
 *   y = x / sqrt(mean(x^2, axis=-1, keepdims=1) + eps) [* scale]
 *
 * becomes RMSNormalization(x [, scale]) with axis = -1. Accepted variants:
 *   square   Pow(x, 2) or Mul(x, x)
 *   divide   Div(x, Sqrt(v)), Mul(x, Reciprocal(Sqrt(v))), Mul(x, Div(1, Sqrt(v)))
 *   v        Add(ReduceMean(x^2), eps) in either order, axes as attribute or input
 *   scale    Mul(normed, scale) in either order; scale must be a float32 [n]
 *            vector (n = last dim of x), otherwise the Mul stays and the core
 *            fuses without a scale.
 * Casts: identity casts (float32 -> float32) inside the pattern, between the
 * core and the scale Mul, are absorbed. Real casts at the edges (an f16 x cast
 * to float before, the result cast back after, as HF exports half models) are
 * kept as they are and only the float32 core fuses; x^2 and the normalised x
 * may be reached through different casts of the same tensor.
 * Works for any rank, so Qwen3's per-head q/k norms over [1, seq, heads,
 * head_dim] fuse too (rows = numel / head_dim).
 *
 * The same core with x = Sub(a, ReduceMean(a)) is a LayerNorm: it is left to
 * the "layer_norm" rule. */
#include <stdio.h>
#include <string.h>
#include "fusion.h"

#define MAX_PATTERN 16

typedef struct {
    /* the core: core = x / sqrt(add(mean(square), eps)) */
    int core, inverse, sqrt_node, add, mean, square;  /* node indices, -1 if absent */
    int x, eps_value;
    double eps;
    /* the tail: identity casts and the scale Mul, when the anchor is that Mul */
    int casts[MAX_PATTERN], n_casts;
    int scale_mul, scale;
} rms_match;

/* Follows Cast nodes that convert float32 to float32 (no rounding), adding
 * them to m->casts; returns the value they start from. */
static int skip_identity_casts(const fu_graph *g, int v, rms_match *m) {
    for (;;) {
        int p = fu_m_producer(g, v, "Cast");
        if (p < 0 || m->n_casts == MAX_PATTERN) return v;
        int src = g->nodes[p].in[0];
        if (src < 0 || g->values[v].dtype != FU_F32 || g->values[src].dtype != FU_F32) return v;
        m->casts[m->n_casts++] = p;
        v = src;
    }
}

/* x = Sub(a, ReduceMean(...)): the LayerNorm rule's business. */
static int is_centred(const fu_graph *g, int x) {
    int sub = fu_m_producer(g, x, "Sub");
    return sub >= 0 && g->nodes[sub].n_in == 2 && fu_m_producer(g, g->nodes[sub].in[1], "ReduceMean") >= 0;
}

/* Structure of the core at node `core`: returns 1 when it is
 * x / sqrt(ReduceMean(...) + something), filling m. */
static int match_core(const fu_graph *g, int core, rms_match *m) {
    const fu_node *n = &g->nodes[core];
    if (n->n_in != 2 || n->in[0] < 0 || n->in[1] < 0) return 0;
    m->core = core;
    if (!fu_m_div_by_sqrt(g, core, &m->x, &m->inverse, &m->sqrt_node)) return 0;
    /* Div(1, Sqrt(...)) alone normalises a constant: not a norm. */
    if (g->values[m->x].kind == FU_VAL_CONST) return 0;
    m->add = fu_m_producer(g, g->nodes[m->sqrt_node].in[0], "Add");
    if (m->add < 0 || g->nodes[m->add].n_in != 2) return 0;
    m->mean = m->eps_value = -1;
    for (int i = 0; i < 2; i++) {
        int mean = fu_m_producer(g, g->nodes[m->add].in[i], "ReduceMean");
        double eps;
        /* Prefer the operand whose partner is a constant (the epsilon). */
        if (mean >= 0 && (m->mean < 0 || fu_m_const_scalar(g, g->nodes[m->add].in[1 - i], &eps))) {
            m->mean = mean;
            m->eps_value = g->nodes[m->add].in[1 - i];
        }
    }
    if (m->mean < 0 || m->eps_value < 0) return 0;
    return !is_centred(g, m->x);
}

/* Checks that a ReduceMean folds exactly the last axis with keepdims=1. */
static int reduces_last_axis(const fu_graph *g, int mean, char *reason, size_t size) {
    const fu_node *n = &g->nodes[mean];
    int rank = g->values[n->in[0]].rank;
    int64_t axes[FU_MAX_RANK];
    int count = 0;
    int has_axes = fu_node_attr(n, "axes") || (n->n_in > 1 && n->in[1] >= 0);
    if (!has_axes) {
        /* No axes: all of them, which is the last one only for rank 1. */
        axes[0] = 0;
        count = rank == 1 ? 1 : 0;
    } else if (fu_m_reduce_axes(g, n, axes, FU_MAX_RANK, &count) != 0) {
        snprintf(reason, size, "ReduceMean axes are not a constant list");
        return 0;
    }
    if (count != 1 || axes[0] != rank - 1) {
        char list[96] = "";
        for (int i = 0; i < count; i++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%lld", i ? "," : "", (long long)axes[i]);
        snprintf(reason, size, "ReduceMean reduces over axes [%s], not only the last axis (%d)",
                 has_axes ? list : "all", rank - 1);
        return 0;
    }
    if (fu_attr_int(n, "keepdims", 1) == 0) {
        snprintf(reason, size, "ReduceMean has keepdims=0");
        return 0;
    }
    return 1;
}

/* Everything but the pattern's structure; returns 0 with a reason on a near
 * miss. Fills the node and interior-value lists on success. */
static int check(const fu_fuse_ctx *c, rms_match *m, int anchor, int *nodes, int *n_nodes, char *reason,
                 size_t size) {
    const fu_graph *g = c->g;
    const fu_value *x = &g->values[m->x];
    char name[96];
    fu_sanitize(x->name, name, sizeof name);
    if (x->dtype != FU_F32 || x->rank < 1) {
        snprintf(reason, size, "input '%s' is %s of rank %d; the fused norm takes float32 of rank >= 1", name,
                 fu_dtype_name(x->dtype), x->rank);
        return 0;
    }
    /* The mean must be of x squared. */
    int squared = g->nodes[m->mean].in[0];
    m->square = fu_m_producer(g, squared, NULL);
    int base = -1;
    int square = fu_m_square_of(g, m->square, &base, reason, size);
    if (square == 0) return 0;
    if (square < 0) {
        snprintf(reason, size, "ReduceMean is not over a square (Pow(x, 2) or Mul(x, x))");
        return 0;
    }
    if (fu_m_skip_casts(g, base) != fu_m_skip_casts(g, m->x)) {
        char other[96];
        fu_sanitize(g->values[base].name, other, sizeof other);
        snprintf(reason, size, "squares '%s', a different tensor than the one normalised ('%s')", other, name);
        return 0;
    }
    if (!reduces_last_axis(g, m->mean, reason, size)) return 0;
    if (!fu_m_const_scalar(g, m->eps_value, &m->eps)) {
        snprintf(reason, size, "epsilon is not a constant scalar");
        return 0;
    }
    if (!(m->eps >= 0)) {
        snprintf(reason, size, "epsilon %g is negative", m->eps);
        return 0;
    }
    /* The result must be x's shape (an epsilon of higher rank would broadcast). */
    const fu_value *y = &g->values[g->nodes[anchor].out[0]];
    int same = y->rank == x->rank && y->dtype == FU_F32;
    for (int k = 0; same && k < x->rank; k++) same = fu_dim_eq(y->shape[k], x->shape[k]);
    if (!same) {
        snprintf(reason, size, "the result is not float32 of the input's shape");
        return 0;
    }

    *n_nodes = 0;
    int interior[MAX_PATTERN * 2], n_interior = 0;
    int core_nodes[] = {m->square, m->mean, m->add, m->sqrt_node, m->inverse, m->core};
    for (size_t i = 0; i < sizeof core_nodes / sizeof core_nodes[0]; i++)
        if (core_nodes[i] >= 0) nodes[(*n_nodes)++] = core_nodes[i];
    for (int i = 0; i < m->n_casts; i++) nodes[(*n_nodes)++] = m->casts[i];
    if (m->scale_mul >= 0) nodes[(*n_nodes)++] = m->scale_mul;
    /* Every node's output but the anchor's stays inside. */
    for (int i = 0; i < *n_nodes; i++)
        if (nodes[i] != anchor) interior[n_interior++] = g->nodes[nodes[i]].out[0];
    return fu_m_interior_private(c, nodes, *n_nodes, interior, n_interior, reason, size);
}

/* A float32 [n] vector, n the last dim of x. */
static int is_scale_vector(const fu_graph *g, int v, int x) {
    const fu_value *s = &g->values[v], *xv = &g->values[x];
    return s->dtype == FU_F32 && s->rank == 1 && xv->rank >= 1 && fu_dim_eq(s->shape[0], xv->shape[xv->rank - 1]);
}

static int rewrite(fu_fuse_ctx *c, rms_match *m, int anchor, const int *nodes, int n_nodes, fu_err *err) {
    fu_graph *g = c->g;
    int inputs[2] = {m->x, m->scale};
    int out = g->nodes[anchor].out[0];
    int idx = fu_fuse_replace(c, "RMSNormalization", inputs, m->scale >= 0 ? 2 : 1, out, nodes, n_nodes, err);
    if (idx < 0) return -1;
    if (!fu_node_set_attr_int(&g->nodes[idx], "axis", -1) ||
        !fu_node_set_attr_float(&g->nodes[idx], "epsilon", m->eps))
        return fu_fail(err, "out of memory while fusing");
    const fu_value *x = &g->values[m->x];
    char n[64];
    fu_dim_str(g, x->shape[x->rank - 1], n, sizeof n);
    fu_fuse_accept(c, anchor, "RMSNormalization (n=%s, eps=%g, %s scale) replacing %d nodes", n, m->eps,
                   m->scale >= 0 ? "with" : "no", n_nodes);
    return 1;
}

static int apply(fu_fuse_ctx *c, int anchor, fu_err *err) {
    const fu_graph *g = c->g;
    const fu_node *a = &g->nodes[anchor];
    if (a->n_out != 1 || a->n_in != 2 || a->in[0] < 0 || a->in[1] < 0) return 0;
    int nodes[MAX_PATTERN * 2], n_nodes;
    char reason[256];

    /* Anchor = the scale Mul over a core. A failure here stays silent: the
     * core, tried as its own anchor later in the sweep, either fuses alone
     * or logs why not. */
    if (strcmp(a->op, "Mul") == 0) {
        for (int i = 0; i < 2; i++) {
            rms_match m = {.scale_mul = anchor, .scale = a->in[1 - i]};
            int normed = skip_identity_casts(g, a->in[i], &m);
            int core = fu_m_producer(g, normed, NULL);
            if (core < 0 || !match_core(g, core, &m) || !is_scale_vector(g, m.scale, m.x)) continue;
            if (check(c, &m, anchor, nodes, &n_nodes, reason, sizeof reason))
                return rewrite(c, &m, anchor, nodes, n_nodes, err);
        }
    }

    /* Anchor = the core itself, no scale. */
    rms_match m = {.scale_mul = -1, .scale = -1};
    if (!match_core(g, anchor, &m)) return 0;
    if (!check(c, &m, anchor, nodes, &n_nodes, reason, sizeof reason)) {
        fu_fuse_reject(c, anchor, "%s", reason);
        return 0;
    }
    return rewrite(c, &m, anchor, nodes, n_nodes, err);
}

const fu_fusion_rule fu_rule_rms_norm = {"rms_norm", apply};
