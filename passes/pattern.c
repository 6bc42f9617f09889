/* The pattern matcher (passes/fusion.h) and the helpers rules share.
 *
 * Matching is a depth-first walk of the pattern against the graph, from the
 * anchor towards the inputs, with backtracking over commuted operands and
 * EITHER alternatives: a failed branch restores the captures and the node
 * list it found them in. */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fusion.h"

/* ---- helpers ---------------------------------------------------------------- */

int fu_m_producer(const fu_graph *g, int v, int op) {
    if (v < 0 || v >= g->n_values) return -1;
    int p = g->values[v].producer;
    if (p < 0 || g->nodes[p].dead) return -1;
    return op < 0 || g->nodes[p].op_id == op ? p : -1;
}

int fu_m_skip_casts(const fu_graph *g, int v) {
    for (int p; v >= 0 && fu_dtype_is_float(g->values[v].dtype) && (p = fu_m_producer(g, v, FU_OP_Cast)) >= 0;) {
        int src = g->nodes[p].in[0];
        if (src < 0 || !fu_dtype_is_float(g->values[src].dtype)) break;
        v = src;
    }
    return v;
}

int fu_m_const_scalar(const fu_graph *g, int v, double *out) {
    v = fu_m_skip_casts(g, v);
    if (v < 0) return 0;
    const fu_value *val = &g->values[v];
    int64_t numel;
    if (val->kind != FU_VAL_CONST || !val->data || fu_value_numel_const(val, &numel) || numel != 1) return 0;
    *out = fu_const_get_f(val, 0);
    return 1;
}

int fu_m_ints(const fu_graph *g, int v, int64_t *out, int max, int *count) {
    if (v < 0) return 0;
    const fu_value *val = &g->values[v];
    if (val->kind == FU_VAL_CONST && val->data && (val->dtype == FU_I64 || val->dtype == FU_I32)) {
        int64_t numel;
        if (fu_value_numel_const(val, &numel) || numel > max) return 0;
        for (int64_t i = 0; i < numel; i++) out[i] = fu_const_get_i(val, i);
        *count = (int)numel;
        return 1;
    }
    if (val->n_known <= 0 || val->n_known > max) return 0;
    for (int i = 0; i < val->n_known; i++) {
        if (!fu_dim_is_const(val->known[i])) return 0;
        out[i] = val->known[i].coef;
    }
    *count = val->n_known;
    return 1;
}

int fu_m_reduce_axes(const fu_graph *g, int node, int64_t *axes, int max, int *count, int *all) {
    const fu_node *n = &g->nodes[node];
    int rank = n->in[0] >= 0 ? g->values[n->in[0]].rank : -1;
    const fu_attr *a = fu_node_attr(n, "axes");
    *count = 0;
    *all = 0;
    if (rank < 0) return -1;
    if (a && a->kind == FU_ATTR_INTS) {
        for (int i = 0; i < a->n && *count < max; i++) axes[(*count)++] = a->ints[i];
    } else if (n->n_in > 1 && n->in[1] >= 0) {
        if (!fu_m_ints(g, n->in[1], axes, max, count) || g->values[n->in[1]].kind != FU_VAL_CONST) return -1;
    } else {
        *all = 1;
    }
    for (int i = 0; i < *count; i++)
        if (axes[i] < 0) axes[i] += rank;
    return 0;
}

int fu_m_transpose(const fu_graph *g, int v, const int64_t *want, int rank) {
    int t = fu_m_producer(g, v, FU_OP_Transpose);
    const fu_attr *perm = t >= 0 ? fu_node_attr(&g->nodes[t], "perm") : NULL;
    if (!perm || perm->kind != FU_ATTR_INTS || perm->n != rank) return -1;
    for (int i = 0; i < rank; i++)
        if (perm->ints[i] != want[i]) return -1;
    return t;
}

const char *fu_m_name(const fu_graph *g, int v) {
    static char ring[4][96];
    static int pos;
    char *buf = ring[pos++ & 3];
    fu_sanitize(v >= 0 ? g->values[v].name : "", buf, sizeof ring[0]);
    return buf;
}

/* ---- the matcher -------------------------------------------------------------- */

typedef struct {
    int v[FU_PAT_CAPTURES], node[FU_PAT_CAPTURES];
    int n_nodes, near, quiet, had_why;
} saved;

static void save(const fu_match *m, saved *s) {
    memcpy(s->v, m->v, sizeof s->v);
    memcpy(s->node, m->node, sizeof s->node);
    s->n_nodes = m->n_nodes;
    s->near = m->near;
    s->quiet = m->quiet;
    s->had_why = m->why[0] != 0;
}

static void restore(fu_match *m, const saved *s) {
    memcpy(m->v, s->v, sizeof s->v);
    memcpy(m->node, s->node, sizeof s->node);
    m->n_nodes = s->n_nodes;
    m->near = s->near;
    m->quiet = s->quiet;
}

/* A branch failed but a later one matched: its failure was no near miss. */
static int matched_after_all(fu_match *m, const saved *s) {
    if (!s->had_why) m->why[0] = 0;
    return 1;
}

/* Records the first failure seen after a NEAR node. */
static int miss(fu_match *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int miss(fu_match *m, const char *fmt, ...) {
    if (m->near && !m->quiet && !m->why[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(m->why, sizeof m->why, fmt, ap);
        va_end(ap);
    }
    return 0;
}

static int add_node(fu_match *m, int node, int shared) {
    for (int i = 0; i < m->n_nodes; i++)
        if (m->nodes[i] == node) {
            m->shared[i] &= (char)shared;
            return 1;
        }
    if (m->n_nodes == m->cap_nodes) {
        int cap = m->cap_nodes ? m->cap_nodes * 2 : 16;
        int *nodes = realloc(m->nodes, sizeof *nodes * (size_t)cap);
        if (nodes) m->nodes = nodes;
        char *sh = realloc(m->shared, (size_t)cap);
        if (sh) m->shared = sh;
        if (!nodes || !sh) return 0;
        m->cap_nodes = cap;
    }
    m->shared[m->n_nodes] = (char)shared;
    m->nodes[m->n_nodes++] = node;
    return 1;
}

static int bind(const fu_graph *g, fu_match *m, const fu_pat *p, int v, int node) {
    int slot = p->capture;
    if (slot <= 0 || slot >= FU_PAT_CAPTURES) return 1;
    int had = m->v[slot];
    if (had < 0) {
        m->v[slot] = v;
        m->node[slot] = node;
        return 1;
    }
    if (had == v || ((p->flags & FU_PAT_UP_TO_CASTS) && fu_m_skip_casts(g, had) == fu_m_skip_casts(g, v))) return 1;
    return 0;
}

static int match(const fu_graph *g, const fu_pat *p, int v, fu_match *m, const char *user);

/* Operands of `node` against p->in, in the given order. */
static int match_operands(const fu_graph *g, const fu_pat *p, int node, const int *order, fu_match *m) {
    const fu_node *n = &g->nodes[node];
    for (int i = 0; i < p->n_in; i++)
        if (!match(g, p->in[i], n->in[order[i]], m, p->label)) return 0;
    return 1;
}

static int match_node(const fu_graph *g, const fu_pat *p, int v, fu_match *m) {
    int node = fu_m_producer(g, v, p->op);
    if (node < 0) return 0;
    const fu_node *n = &g->nodes[node];
    if (n->n_in < p->n_in) return 0;
    for (int i = 0; i < p->n_in; i++)
        if (n->in[i] < 0) return 0;
    if (p->flags & FU_PAT_NEAR) m->near = 1;
    if (!add_node(m, node, (p->flags & FU_PAT_SHARED) != 0)) return 0;
    int order[FU_PAT_MAX_IN];
    for (int i = 0; i < FU_PAT_MAX_IN; i++) order[i] = i;
    if (!(p->flags & FU_PAT_COMMUTE)) return match_operands(g, p, node, order, m);
    saved s;
    save(m, &s);
    if (match_operands(g, p, node, order, m)) return 1;
    restore(m, &s);
    order[0] = 1, order[1] = 0;
    return match_operands(g, p, node, order, m) && matched_after_all(m, &s);
}

/* `user` names the pattern node whose operand v is, for messages. */
static int match(const fu_graph *g, const fu_pat *p, int v, fu_match *m, const char *user) {
    if (v < 0) return 0;
    switch (p->kind) {
    case FU_PAT_NODE:
        return match_node(g, p, v, m);
    case FU_PAT_ANY:
        if (bind(g, m, p, v, -1)) return 1;
        char op[32];  /* "sigmoid of a different tensor" */
        snprintf(op, sizeof op, "%s", user ? user : "operand");
        for (char *ch = op; *ch; ch++) *ch = (char)tolower((unsigned char)*ch);
        return miss(m, "%s of a different tensor ('%s') than '%s'", op, fu_m_name(g, v), fu_m_name(g, m->v[p->capture]));
    case FU_PAT_SCALAR: {
        double x;
        if (!fu_m_const_scalar(g, v, &x)) return miss(m, "%s is not a constant scalar", p->label);
        /* float32 constants of irrational values (sqrt(2), sqrt(2/pi)) match to float32 precision */
        if (!isnan(p->scalar) && fabs(x - p->scalar) > 1e-6 * fabs(p->scalar))
            return miss(m, "%s is %g, not %g", p->label, x, p->scalar);
        return bind(g, m, p, v, -1);
    }
    case FU_PAT_EITHER:
    {
        saved s;
        save(m, &s);
        for (int i = 0; i < p->n_in; i++) {
            if (match(g, p->in[i], v, m, user)) return matched_after_all(m, &s);
            restore(m, &s);
        }
        return 0;
    }
    case FU_PAT_CAPTURE:
        if (!match(g, p->in[0], v, m, user)) return 0;
        return bind(g, m, p, v, g->values[v].producer) ||
               miss(m, "'%s' is not the same tensor as '%s'", fu_m_name(g, v), fu_m_name(g, m->v[p->capture]));
    case FU_PAT_WHERE: {
        if (!match(g, p->in[0], v, m, user)) return 0;
        char why[256] = "";
        if (p->where(g, m, v, why, sizeof why)) return 1;
        return why[0] ? miss(m, "%s", why) : 0;
    }
    case FU_PAT_QUIET: {
        int quiet = m->quiet;
        m->quiet = 1;
        int ok = match(g, p->in[0], v, m, user);
        m->quiet = quiet;
        return ok;
    }
    }
    return 0;
}

/* Every matched node but the anchor and SHARED ones: its outputs are read
 * only inside the match and are no graph outputs. */
int fu_match_private(const fu_fuse_ctx *c, fu_match *m) {
    const fu_graph *g = c->g;
    for (int i = 0; i < m->n_nodes; i++) {
        const fu_node *n = &g->nodes[m->nodes[i]];
        if (m->nodes[i] == m->anchor || m->shared[i]) continue;
        for (int o = 0; o < n->n_out; o++) {
            int v = n->out[o];
            if (v < 0) continue;
            if (g->values[v].is_output) return miss(m, "intermediate '%s' is a graph output", fu_m_name(g, v));
            int inside = 0;
            for (int k = 0; k < m->n_nodes; k++) {
                const fu_node *r = &g->nodes[m->nodes[k]];
                for (int j = 0; j < r->n_in; j++) inside += r->in[j] == v;
            }
            if (c->uses[v] > inside)
                return miss(m, "intermediate '%s' is also used outside the pattern", fu_m_name(g, v));
        }
    }
    return 1;
}

int fu_pat_match(const fu_graph *g, const fu_pat *p, int anchor, fu_match *m) {
    for (int i = 0; i < FU_PAT_CAPTURES; i++) m->v[i] = m->node[i] = -1;
    m->n_nodes = 0;
    m->near = m->quiet = 0;
    m->why[0] = 0;
    m->anchor = anchor;
    const fu_node *a = &g->nodes[anchor];
    if (a->dead || a->n_out < 1 || a->out[0] < 0) return 0;
    if (!match(g, p, a->out[0], m, NULL)) return 0;
    m->near = 1;  /* the whole structure is there: what follows is a near miss */
    return 1;
}

void fu_match_free(fu_match *m) {
    free(m->nodes);
    free(m->shared);
    m->nodes = NULL;
    m->shared = NULL;
    m->n_nodes = m->cap_nodes = 0;
}
