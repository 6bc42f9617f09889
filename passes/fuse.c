/* The fuse pass and the helpers fusion rules share (passes/fusion.h).
 *
 * The pass sweeps the nodes from last to first, offering each live node to
 * every rule as an anchor. After any rewrite the graph is re-sorted and
 * re-inferred and the sweep starts again, until a sweep changes nothing. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fusion.h"
#include "passes.h"
#include "../ops/ops.h"
#include "../ops/infer.h"

/* One line per rule file. Order matters where patterns nest: attention
 * before the norms would not see its inputs' norms, so norms go first.
 * weight_cast rewrites the FusedMatMuls that matmul_bias makes;
 * attention_layouts rewrites what rotary_embedding and attention made. */
#define RULES(X) X(rms_norm) X(layer_norm) X(rotary_embedding) X(attention) X(swiglu) X(matmul_bias) \
    X(weight_cast) X(attention_layouts)

#define DECLARE(name) extern const fu_fusion_rule fu_rule_##name;
RULES(DECLARE)
#undef DECLARE
#define ENTRY(name) &fu_rule_##name,
static const fu_fusion_rule *const rules[] = {RULES(ENTRY)};
#undef ENTRY

/* ---- log ------------------------------------------------------------------- */

static void log_event(fu_fuse_ctx *c, int anchor, int fused, const char *fmt, va_list ap) {
    fu_fusion_log *log = c->log;
    if (!log) return;
    if (log->n == log->cap) {
        int cap = log->cap ? log->cap * 2 : 32;
        fu_fusion_event *ev = realloc(log->events, sizeof *ev * (size_t)cap);
        if (!ev) return;
        log->events = ev;
        log->cap = cap;
    }
    fu_fusion_event *ev = &log->events[log->n];
    /* A near miss at the same anchor and rule is logged once. */
    char reason[256];
    vsnprintf(reason, sizeof reason, fmt, ap);
    char node[128];
    fu_sanitize(c->g->nodes[anchor].name, node, sizeof node);
    for (int i = 0; i < log->n; i++)
        if (!log->events[i].fused && !fused && strcmp(log->events[i].rule, c->rule) == 0 &&
            strcmp(log->events[i].node, node) == 0 && strcmp(log->events[i].reason, reason) == 0)
            return;
    ev->fused = fused;
    snprintf(ev->rule, sizeof ev->rule, "%s", c->rule);
    snprintf(ev->node, sizeof ev->node, "%s", node);
    snprintf(ev->reason, sizeof ev->reason, "%s", reason);
    log->n++;
}

void fu_fuse_accept(fu_fuse_ctx *c, int anchor, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    log_event(c, anchor, 1, fmt, ap);
    va_end(ap);
}

void fu_fuse_reject(fu_fuse_ctx *c, int anchor, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    log_event(c, anchor, 0, fmt, ap);
    va_end(ap);
}

void fu_fusion_log_free(fu_fusion_log *log) {
    if (!log) return;
    free(log->events);
    memset(log, 0, sizeof *log);
}

int fu_fusion_log_count(const fu_fusion_log *log, const char *rule, int fused) {
    int n = 0;
    for (int i = 0; log && i < log->n; i++)
        if (log->events[i].fused == fused && (!rule || strcmp(log->events[i].rule, rule) == 0)) n++;
    return n;
}

/* ---- pattern helpers ----------------------------------------------------------- */

int fu_m_producer(const fu_graph *g, int v, const char *op) {
    if (v < 0 || v >= g->n_values) return -1;
    int p = g->values[v].producer;
    if (p < 0 || g->nodes[p].dead) return -1;
    if (op && strcmp(g->nodes[p].op, op) != 0) return -1;
    return p;
}

int fu_m_skip_casts(const fu_graph *g, int v) {
    for (;;) {
        int p = fu_m_producer(g, v, "Cast");
        if (p < 0 || !fu_dtype_is_float(g->values[v].dtype)) return v;
        int src = g->nodes[p].in[0];
        if (src < 0 || !fu_dtype_is_float(g->values[src].dtype)) return v;
        v = src;
    }
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

int fu_m_either(const fu_graph *g, const fu_node *n, int (*pred)(const fu_graph *, int, void *), void *arg,
                int *which) {
    for (int i = 0; i < 2 && i < n->n_in; i++)
        if (n->in[i] >= 0 && pred(g, n->in[i], arg)) {
            *which = i;
            return 1;
        }
    return 0;
}

int fu_m_div_by_sqrt(const fu_graph *g, int node, int *x, int *inverse, int *sqrt_node) {
    const fu_node *n = &g->nodes[node];
    *inverse = *sqrt_node = -1;
    if (n->n_in != 2 || n->in[0] < 0 || n->in[1] < 0) return 0;
    if (strcmp(n->op, "Div") == 0) {
        *sqrt_node = fu_m_producer(g, n->in[1], "Sqrt");
        *x = n->in[0];
    } else if (strcmp(n->op, "Mul") == 0) {
        for (int i = 0; i < 2 && *sqrt_node < 0; i++) {
            int recip = fu_m_producer(g, n->in[i], "Reciprocal");
            int div = fu_m_producer(g, n->in[i], "Div");
            double one;
            if (recip >= 0) {
                *inverse = recip;
                *sqrt_node = fu_m_producer(g, g->nodes[recip].in[0], "Sqrt");
            } else if (div >= 0 && g->nodes[div].n_in == 2 && fu_m_const_scalar(g, g->nodes[div].in[0], &one) &&
                       one == 1.0) {
                *inverse = div;
                *sqrt_node = fu_m_producer(g, g->nodes[div].in[1], "Sqrt");
            }
            *x = n->in[1 - i];
        }
    }
    return *sqrt_node >= 0;
}

int fu_m_square_of(const fu_graph *g, int node, int *base, char *reason, size_t n) {
    if (node < 0 || g->nodes[node].n_in != 2) return -1;
    const fu_node *sq = &g->nodes[node];
    if (strcmp(sq->op, "Pow") == 0) {
        double exponent;
        if (!fu_m_const_scalar(g, sq->in[1], &exponent)) {
            snprintf(reason, n, "Pow exponent is not a constant scalar");
            return 0;
        }
        if (exponent != 2.0) {
            snprintf(reason, n, "Pow exponent is %g, not 2", exponent);
            return 0;
        }
        *base = sq->in[0];
        return 1;
    }
    if (strcmp(sq->op, "Mul") == 0 && fu_m_skip_casts(g, sq->in[0]) == fu_m_skip_casts(g, sq->in[1])) {
        *base = sq->in[0];
        return 1;
    }
    return -1;
}

int fu_m_reduce_axes(const fu_graph *g, const fu_node *n, int64_t *axes, int max, int *count) {
    int rank = n->in[0] >= 0 ? g->values[n->in[0]].rank : -1;
    if (rank < 0) return -1;
    *count = 0;
    const fu_attr *a = fu_node_attr(n, "axes");
    if (a && a->kind == FU_ATTR_INTS) {
        for (int i = 0; i < a->n && *count < max; i++) axes[(*count)++] = a->ints[i];
    } else if (n->n_in > 1 && n->in[1] >= 0) {
        const fu_value *v = &g->values[n->in[1]];
        int64_t numel;
        if (v->kind != FU_VAL_CONST || !v->data || fu_value_numel_const(v, &numel)) return -1;
        for (int64_t i = 0; i < numel && *count < max; i++) axes[(*count)++] = fu_const_get_i(v, i);
    } else {
        return -1;  /* reduce over all axes */
    }
    for (int i = 0; i < *count; i++)
        if (axes[i] < 0) axes[i] += rank;
    return 0;
}

int fu_m_interior_private(const fu_fuse_ctx *c, const int *nodes, int n_nodes, const int *interior,
                          int n_interior, char *reason, size_t n) {
    const fu_graph *g = c->g;
    for (int i = 0; i < n_interior; i++) {
        int v = interior[i];
        if (g->values[v].is_output) {
            char name[96];
            fu_sanitize(g->values[v].name, name, sizeof name);
            snprintf(reason, n, "intermediate '%s' is a graph output", name);
            return 0;
        }
        int inside = 0;
        for (int k = 0; k < n_nodes; k++) {
            const fu_node *node = &g->nodes[nodes[k]];
            for (int j = 0; j < node->n_in; j++) inside += node->in[j] == v;
        }
        if (c->uses[v] > inside) {
            char name[96];
            fu_sanitize(g->values[v].name, name, sizeof name);
            snprintf(reason, n, "intermediate '%s' is also used outside the pattern", name);
            return 0;
        }
    }
    return 1;
}

/* ---- rewrite helpers ------------------------------------------------------------ */

int fu_fuse_replace(fu_fuse_ctx *c, const char *op, const int *inputs, int n_inputs, int out_value,
                    const int *nodes, int n_nodes, fu_err *err) {
    fu_graph *g = c->g;
    int old_producer = g->values[out_value].producer;
    char *name = NULL;
    if (old_producer >= 0) {
        size_t len = strlen(g->nodes[old_producer].name) + 8;
        name = malloc(len);
        if (name) snprintf(name, len, "%s_fused", g->nodes[old_producer].name);
    }
    for (int i = 0; i < n_nodes; i++) g->nodes[nodes[i]].dead = 1;
    /* The anchor no longer produces the value; the fused node does. */
    if (old_producer >= 0) {
        fu_node *a = &g->nodes[old_producer];
        for (int o = 0; o < a->n_out; o++)
            if (a->out[o] == out_value) a->out[o] = -1;
        a->dead = 1;
    }
    int idx = fu_graph_add_node(g, name ? name : op, op, n_inputs, inputs, 1, &out_value);
    free(name);
    if (idx < 0) return fu_fail(err, "out of memory while fusing");
    g->values[out_value].producer = idx;
    return idx;
}

int fu_fuse_add_const(fu_graph *g, const char *base, fu_dtype t, int rank, const int64_t *shape,
                      const void *data, fu_err *err) {
    char *name = fu_graph_unique_name(g, base);
    int v = name ? fu_graph_add_value(g, name, FU_VAL_CONST) : -1;
    free(name);
    if (v < 0) return fu_fail(err, "out of memory while fusing");
    fu_value *val = &g->values[v];
    val->dtype = t;
    val->rank = rank;
    size_t numel = 1;
    for (int k = 0; k < rank; k++) {
        val->shape[k] = fu_dim_const(shape[k]);
        numel *= (size_t)shape[k];
    }
    val->producer = -1;
    if (fu_value_set_data(val, data, numel * fu_dtype_size(t))) return fu_fail(err, "out of memory while fusing");
    return v;
}

/* ---- the pass ------------------------------------------------------------------- */

static int sweep(fu_graph *g, fu_fusion_log *log, int *changed, fu_err *err) {
    *changed = 0;
    int *uses = fu_graph_use_counts(g);
    if (!uses) return fu_fail(err, "out of memory while fusing");
    fu_fuse_ctx c = {g, uses, log, NULL};
    int rc = 0;
    for (int i = g->n_nodes - 1; i >= 0 && rc == 0 && !*changed; i--) {
        if (g->nodes[i].dead) continue;
        for (size_t r = 0; r < sizeof rules / sizeof rules[0]; r++) {
            c.rule = rules[r]->name;
            int got = rules[r]->apply(&c, i, err);
            if (got < 0) rc = -1;
            if (got != 0) {
                *changed = got > 0;
                break;
            }
        }
    }
    free(uses);
    return rc;
}

int fu_pass_fuse(fu_graph *g, const fu_pass_opts *o, fu_err *err) {
    fu_fusion_log *log = o ? o->fusion_log : NULL;
    for (int round = 0; round < 100000; round++) {
        int changed;
        if (sweep(g, log, &changed, err)) return -1;
        if (!changed) return 0;
        /* Drop the replaced nodes and re-infer so the next match sees shapes. */
        fu_graph_compact(g);
        if (fu_graph_toposort(g, err) || fu_infer(g, err)) {
            fu_err inner = *err;
            return fu_fail(err, "fusion produced an invalid graph: %s", inner.msg);
        }
    }
    return fu_fail(err, "%s: fusion did not converge", g->path ? g->path : "model");
}
