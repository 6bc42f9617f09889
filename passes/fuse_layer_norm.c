/* Fusion rule "layer_norm": layer normalisation over the last axis.
 *
 *   d = x - mean(x, axis=-1, keepdims=1)
 *   y = d / sqrt(mean(d^2, axis=-1, keepdims=1) + eps) [* scale] [+ bias]
 *
 * becomes LayerNormalization(x [, scale] [, bias]) with axis = -1. Accepted
 * variants:
 *   square   Pow(d, 2) or Mul(d, d)
 *   divide   Div(d, Sqrt(v)), Mul(d, Reciprocal(Sqrt(v))), Mul(d, Div(1, Sqrt(v)))
 *   v        Add(ReduceMean(d^2), eps) in either order, axes as attribute or input
 *   scale    Mul(normed, scale) in either order, optional
 *   bias     Add(scaled, bias) in either order, optional
 * scale and bias must be float32 [n] vectors (n = last dim of x); a Mul or
 * Add with anything else stays outside and the part before it fuses.
 * Casts: as in fuse_rms_norm.c, identity casts (float32 -> float32) between
 * the core, the scale Mul and the bias Add are absorbed; real casts at the
 * edges stay and only the float32 core fuses. */
#include <stdio.h>
#include <string.h>
#include "fusion.h"

#define MAX_PATTERN 16

typedef struct {
    /* d = centre(x, mean); core = d / sqrt(add(var_mean(square(d)), eps)) */
    int mean, centre, square, var_mean, add, sqrt_node, inverse, core;  /* nodes, -1 if absent */
    int x, d, eps_value;
    double eps;
    /* the tail: identity casts, the scale Mul and the bias Add */
    int casts[MAX_PATTERN], n_casts;
    int scale_mul, scale, bias_add, bias;
} ln_match;

static void init_match(ln_match *m) {
    memset(m, 0, sizeof *m);
    m->scale_mul = m->scale = m->bias_add = m->bias = -1;
}

static int is_op(const fu_graph *g, int node, const char *op) {
    return node >= 0 && strcmp(g->nodes[node].op, op) == 0 && g->nodes[node].n_in >= 1;
}

/* Follows Cast nodes that convert float32 to float32 (no rounding), adding
 * them to m->casts; returns the value they start from. */
static int skip_identity_casts(const fu_graph *g, int v, ln_match *m) {
    for (;;) {
        int p = fu_m_producer(g, v, "Cast");
        if (p < 0 || m->n_casts == MAX_PATTERN) return v;
        int src = g->nodes[p].in[0];
        if (src < 0 || g->values[v].dtype != FU_F32 || g->values[src].dtype != FU_F32) return v;
        m->casts[m->n_casts++] = p;
        v = src;
    }
}

/* Structure of the core at node `core`: returns 1 when it is
 * Sub(x, ReduceMean(..)) / sqrt(ReduceMean(..) + something), filling m. */
static int match_core(const fu_graph *g, int core, ln_match *m) {
    if (core < 0) return 0;
    const fu_node *n = &g->nodes[core];
    if (n->n_in != 2 || n->in[0] < 0 || n->in[1] < 0) return 0;
    m->core = core;
    if (!fu_m_div_by_sqrt(g, core, &m->d, &m->inverse, &m->sqrt_node)) return 0;
    /* The numerator is centred: Sub(x, ReduceMean(...)). */
    m->centre = fu_m_producer(g, m->d, "Sub");
    if (m->centre < 0 || g->nodes[m->centre].n_in != 2) return 0;
    m->mean = fu_m_producer(g, g->nodes[m->centre].in[1], "ReduceMean");
    m->x = g->nodes[m->centre].in[0];
    if (m->mean < 0 || m->x < 0) return 0;
    m->add = fu_m_producer(g, g->nodes[m->sqrt_node].in[0], "Add");
    if (m->add < 0 || g->nodes[m->add].n_in != 2) return 0;
    m->var_mean = m->eps_value = -1;
    for (int i = 0; i < 2; i++) {
        int mean = fu_m_producer(g, g->nodes[m->add].in[i], "ReduceMean");
        double eps;
        /* Prefer the operand whose partner is a constant (the epsilon). */
        if (mean >= 0 && (m->var_mean < 0 || fu_m_const_scalar(g, g->nodes[m->add].in[1 - i], &eps))) {
            m->var_mean = mean;
            m->eps_value = g->nodes[m->add].in[1 - i];
        }
    }
    return m->var_mean >= 0 && m->eps_value >= 0;
}

/* A float32 [n] vector, n the last dim of x. */
static int is_channel_vector(const fu_graph *g, int v, int x) {
    if (v < 0) return 0;
    const fu_value *s = &g->values[v], *xv = &g->values[x];
    return s->dtype == FU_F32 && s->rank == 1 && xv->rank >= 1 && fu_dim_eq(s->shape[0], xv->shape[xv->rank - 1]);
}

/* From value v back to a core, possibly through a scale Mul. */
static int match_scaled(const fu_graph *g, int v, ln_match *m) {
    int p = fu_m_producer(g, skip_identity_casts(g, v, m), NULL);
    if (p < 0) return 0;
    if (match_core(g, p, m)) return 1;
    if (!is_op(g, p, "Mul") || g->nodes[p].n_in != 2) return 0;
    int saved = m->n_casts;
    for (int j = 0; j < 2; j++) {
        m->n_casts = saved;
        int core = fu_m_producer(g, skip_identity_casts(g, g->nodes[p].in[j], m), NULL);
        if (match_core(g, core, m) && is_channel_vector(g, g->nodes[p].in[1 - j], m->x)) {
            m->scale_mul = p;
            m->scale = g->nodes[p].in[1 - j];
            return 1;
        }
    }
    return 0;
}

/* Checks that a ReduceMean folds exactly the last axis with keepdims=1. */
static int reduces_last_axis(const fu_graph *g, int mean, const char *what, char *reason, size_t size) {
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
        snprintf(reason, size, "the %s's ReduceMean axes are not a constant list", what);
        return 0;
    }
    if (count != 1 || axes[0] != rank - 1) {
        char list[96] = "";
        for (int i = 0; i < count; i++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%lld", i ? "," : "", (long long)axes[i]);
        snprintf(reason, size, "the %s's ReduceMean reduces over axes [%s], not only the last axis (%d)", what,
                 has_axes ? list : "all", rank - 1);
        return 0;
    }
    if (fu_attr_int(n, "keepdims", 1) == 0) {
        snprintf(reason, size, "the %s's ReduceMean has keepdims=0", what);
        return 0;
    }
    return 1;
}

/* Everything but the pattern's structure; returns 0 with a reason on a near
 * miss. Fills the node list on success. */
static int check(const fu_fuse_ctx *c, ln_match *m, int anchor, int *nodes, int *n_nodes, char *reason,
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
    if (fu_m_skip_casts(g, g->nodes[m->mean].in[0]) != fu_m_skip_casts(g, m->x)) {
        snprintf(reason, size, "the mean subtracted is not the mean of '%s'", name);
        return 0;
    }
    if (!reduces_last_axis(g, m->mean, "mean", reason, size)) return 0;
    /* The variance must be the mean of d squared. */
    m->square = fu_m_producer(g, g->nodes[m->var_mean].in[0], NULL);
    int base = -1;
    int square = fu_m_square_of(g, m->square, &base, reason, size);
    if (square == 0) return 0;
    if (square < 0) {
        snprintf(reason, size, "the variance's ReduceMean is not over a square (Pow(d, 2) or Mul(d, d))");
        return 0;
    }
    if (fu_m_skip_casts(g, base) != fu_m_skip_casts(g, m->d)) {
        char other[96], d[96];
        fu_sanitize(g->values[base].name, other, sizeof other);
        fu_sanitize(g->values[m->d].name, d, sizeof d);
        snprintf(reason, size, "squares '%s', a different tensor than the centred one ('%s')", other, d);
        return 0;
    }
    if (!reduces_last_axis(g, m->var_mean, "variance", reason, size)) return 0;
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
    int pattern[] = {m->mean, m->centre, m->square, m->var_mean, m->add, m->sqrt_node, m->inverse, m->core,
                     m->scale_mul, m->bias_add};
    for (size_t i = 0; i < sizeof pattern / sizeof pattern[0]; i++)
        if (pattern[i] >= 0) nodes[(*n_nodes)++] = pattern[i];
    for (int i = 0; i < m->n_casts; i++) nodes[(*n_nodes)++] = m->casts[i];
    /* Every node's output but the anchor's stays inside. */
    for (int i = 0; i < *n_nodes; i++)
        if (nodes[i] != anchor) interior[n_interior++] = g->nodes[nodes[i]].out[0];
    return fu_m_interior_private(c, nodes, *n_nodes, interior, n_interior, reason, size);
}

static int rewrite(fu_fuse_ctx *c, ln_match *m, int anchor, const int *nodes, int n_nodes, fu_err *err) {
    fu_graph *g = c->g;
    /* X, Scale, B; an omitted Scale before a present B is -1 (""). */
    int inputs[3] = {m->x, m->scale, m->bias};
    int n_inputs = m->bias >= 0 ? 3 : m->scale >= 0 ? 2 : 1;
    int out = g->nodes[anchor].out[0];
    int idx = fu_fuse_replace(c, "LayerNormalization", inputs, n_inputs, out, nodes, n_nodes, err);
    if (idx < 0) return -1;
    if (!fu_node_set_attr_int(&g->nodes[idx], "axis", -1) ||
        !fu_node_set_attr_float(&g->nodes[idx], "epsilon", m->eps))
        return fu_fail(err, "out of memory while fusing");
    const fu_value *x = &g->values[m->x];
    char n[64];
    fu_dim_str(g, x->shape[x->rank - 1], n, sizeof n);
    fu_fuse_accept(c, anchor, "LayerNormalization (n=%s, eps=%g, %s scale, %s bias) replacing %d nodes", n,
                   m->eps, m->scale >= 0 ? "with" : "no", m->bias >= 0 ? "with" : "no", n_nodes);
    return 1;
}

static int apply(fu_fuse_ctx *c, int anchor, fu_err *err) {
    const fu_graph *g = c->g;
    const fu_node *a = &g->nodes[anchor];
    if (a->n_out != 1 || a->n_in != 2 || a->in[0] < 0 || a->in[1] < 0) return 0;
    int nodes[MAX_PATTERN * 2], n_nodes;
    char reason[256];
    ln_match m;

    /* Anchor = the bias Add or the scale Mul. Failures here stay silent: the
     * smaller pattern ending at the core is tried as its own anchor later in
     * the sweep, and fuses or logs why not. */
    if (strcmp(a->op, "Add") == 0) {
        for (int i = 0; i < 2; i++) {
            init_match(&m);
            m.bias_add = anchor;
            m.bias = a->in[1 - i];
            if (match_scaled(g, a->in[i], &m) && is_channel_vector(g, m.bias, m.x) &&
                check(c, &m, anchor, nodes, &n_nodes, reason, sizeof reason))
                return rewrite(c, &m, anchor, nodes, n_nodes, err);
        }
    } else if (strcmp(a->op, "Mul") == 0) {
        for (int i = 0; i < 2; i++) {
            init_match(&m);
            m.scale_mul = anchor;
            m.scale = a->in[1 - i];
            int core = fu_m_producer(g, skip_identity_casts(g, a->in[i], &m), NULL);
            if (match_core(g, core, &m) && is_channel_vector(g, m.scale, m.x) &&
                check(c, &m, anchor, nodes, &n_nodes, reason, sizeof reason))
                return rewrite(c, &m, anchor, nodes, n_nodes, err);
        }
    }

    /* Anchor = the core itself. */
    init_match(&m);
    if (!match_core(g, anchor, &m)) return 0;
    if (!check(c, &m, anchor, nodes, &n_nodes, reason, sizeof reason)) {
        fu_fuse_reject(c, anchor, "%s", reason);
        return 0;
    }
    return rewrite(c, &m, anchor, nodes, n_nodes, err);
}

const fu_fusion_rule fu_rule_layer_norm = {"layer_norm", apply};
