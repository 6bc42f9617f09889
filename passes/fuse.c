/* The fuse pass: a worklist over the graph's nodes, last first. Each node
 * is offered to the rules anchored at its op. After a rewrite only what it
 * touched is re-inferred (and the readers of values whose shape changed),
 * nodes left without readers die, and the touched nodes and their readers
 * go back on the worklist. The pass ends when the worklist is empty. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fusion.h"
#include "passes.h"

/* One line per rule file. Where two rules can claim the same nodes the
 * first listed wins: the norms before rotary_embedding and attention. */
#define RULES(X) X(rms_norm) X(layer_norm) X(attention) X(swiglu) X(matmul_bias) \
    X(weight_cast) X(attention_layouts)

#define DECLARE(name) extern const fu_fusion_rule fu_rule_##name;
RULES(DECLARE)
#undef DECLARE
#define ENTRY(name) &fu_rule_##name,
static const fu_fusion_rule *const rules[] = {RULES(ENTRY)};
#undef ENTRY
enum { N_RULES = sizeof rules / sizeof rules[0] };

/* ---- log ------------------------------------------------------------------- */

void fu_fusion_log_add(fu_fusion_log *log, const char *rule, const fu_graph *g, int node, int fused, const char *fmt,
                       ...) {
    if (!log) return;
    char reason[256], name[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    fu_sanitize(g->nodes[node].name, name, sizeof name);
    for (int i = 0; i < log->n && !fused; i++)
        if (!log->events[i].fused && strcmp(log->events[i].rule, rule) == 0 && strcmp(log->events[i].node, name) == 0 &&
            strcmp(log->events[i].reason, reason) == 0)
            return;
    if (log->n == log->cap) {
        int cap = log->cap ? log->cap * 2 : 32;
        fu_fusion_event *ev = realloc(log->events, sizeof *ev * (size_t)cap);
        if (!ev) return;
        log->events = ev;
        log->cap = cap;
    }
    fu_fusion_event *ev = &log->events[log->n++];
    ev->fused = fused;
    snprintf(ev->rule, sizeof ev->rule, "%s", rule);
    snprintf(ev->node, sizeof ev->node, "%s", name);
    snprintf(ev->reason, sizeof ev->reason, "%s", reason);
}

void fu_fuse_accept(fu_fuse_ctx *c, int anchor, const char *fmt, ...) {
    char reason[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    fu_fusion_log_add(c->log, c->rule, c->g, anchor, 1, "%s", reason);
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

/* ---- rewrite helpers ---------------------------------------------------------- */

int fu_fuse_touch(fu_fuse_ctx *c, int n) {
    if (c->n_touched == c->cap_touched) {
        int cap = c->cap_touched ? c->cap_touched * 2 : 16;
        int *t = realloc(c->touched, sizeof *t * (size_t)cap);
        if (!t) return -1;
        c->touched = t;
        c->cap_touched = cap;
    }
    c->touched[c->n_touched++] = n;
    return 0;
}

/* Room in uses[] for the values a rewrite adds. */
static int grow_uses(fu_fuse_ctx *c) {
    if (c->g->n_values <= c->cap_uses) return 0;
    int cap = c->g->n_values * 2;
    int *u = realloc(c->uses, sizeof *u * (size_t)cap);
    if (!u) return -1;
    memset(u + c->cap_uses, 0, sizeof *u * (size_t)(cap - c->cap_uses));
    c->uses = u;
    c->cap_uses = cap;
    return 0;
}

static void kill_node(fu_fuse_ctx *c, int n);

/* One reader of v fewer: a producer nothing reads any more dies. */
static void release(fu_fuse_ctx *c, int v) {
    fu_graph *g = c->g;
    if (--c->uses[v] > 0 || g->values[v].is_output) return;
    int p = fu_m_producer(g, v, -1);
    if (p < 0) return;
    for (int o = 0; o < g->nodes[p].n_out; o++) {
        int pv = g->nodes[p].out[o];
        if (pv >= 0 && (c->uses[pv] > 0 || g->values[pv].is_output)) return;
    }
    kill_node(c, p);
}

static void kill_node(fu_fuse_ctx *c, int n) {
    fu_node *node = &c->g->nodes[n];
    if (node->dead) return;
    node->dead = 1;
    for (int k = 0; k < node->n_in; k++)
        if (node->in[k] >= 0) release(c, node->in[k]);
}

void fu_fuse_set_input(fu_fuse_ctx *c, int n, int k, int v) {
    if (grow_uses(c)) return;  /* cannot fail for values present when the pass began */
    int old = c->g->nodes[n].in[k];
    c->g->nodes[n].in[k] = v;
    if (v >= 0) c->uses[v]++;
    if (old >= 0) release(c, old);
}

int fu_fuse_replace(fu_fuse_ctx *c, const fu_match *m, int op, const int *inputs, int n_inputs, fu_err *err) {
    return fu_fuse_replace_node(c, m->anchor, op, inputs, n_inputs, err);
}

int fu_fuse_replace_node(fu_fuse_ctx *c, int node, int op, const int *inputs, int n_inputs, fu_err *err) {
    fu_graph *g = c->g;
    int out = g->nodes[node].out[0];
    size_t len = strlen(g->nodes[node].name) + 8;
    char *name = malloc(len);
    if (!name) return fu_fail(err, "out of memory while fusing");
    snprintf(name, len, "%s_fused", g->nodes[node].name);
    const fu_op *def = fu_op_at(op);
    int idx = fu_graph_add_node(g, name, def->name, n_inputs, inputs, 1, &out);
    free(name);
    if (idx < 0 || fu_fuse_touch(c, idx) || grow_uses(c)) return fu_fail(err, "out of memory while fusing");
    for (int k = 0; k < n_inputs; k++)
        if (inputs[k] >= 0) c->uses[inputs[k]]++;
    /* The anchor hands its output over and dies with what only it read. */
    g->nodes[node].out[0] = -1;
    g->values[out].producer = idx;
    kill_node(c, node);
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

typedef struct {
    int *items;
    int n, cap;
    char *queued;   /* per node */
    int cap_queued;
} worklist;

static int push(worklist *w, int node) {
    if (node >= w->cap_queued) {
        int cap = (node + 1) * 2;
        char *q = realloc(w->queued, (size_t)cap);
        if (!q) return -1;
        memset(q + w->cap_queued, 0, (size_t)(cap - w->cap_queued));
        w->queued = q;
        w->cap_queued = cap;
    }
    if (w->queued[node]) return 0;
    if (w->n == w->cap) {
        int cap = w->cap ? w->cap * 2 : 64;
        int *it = realloc(w->items, sizeof *it * (size_t)cap);
        if (!it) return -1;
        w->items = it;
        w->cap = cap;
    }
    w->queued[node] = 1;
    w->items[w->n++] = node;
    return 0;
}

static int push_readers(fu_graph *g, worklist *w, int v) {
    for (int i = 0; i < g->n_nodes; i++) {
        const fu_node *n = &g->nodes[i];
        for (int k = 0; !n->dead && k < n->n_in; k++)
            if (n->in[k] == v) {
                if (push(w, i)) return -1;
                break;
            }
    }
    return 0;
}

/* Re-infers node n; readers of any output whose type or shape changed are
 * re-inferred too. Every one of them goes back on the worklist. */
static int infer_node(fu_fuse_ctx *c, worklist *w, int n, fu_err *err) {
    fu_graph *g = c->g;
    fu_node *node = &g->nodes[n];
    if (node->dead) return 0;
    node->def = fu_op_at(node->op_id);
    if (!node->def) return fu_node_fail(err, g, node, "fusion made a node of an unknown op");
    fu_value before[4];
    int n_out = node->n_out < 4 ? node->n_out : 4;
    for (int o = 0; o < n_out; o++) {
        fu_value *v = &g->values[node->out[o]];
        before[o] = *v;
        v->rank = -1;
        v->dtype = FU_UNDEF;
        free(v->known);
        v->known = NULL;
        v->n_known = 0;
    }
    if (node->def->infer(g, node, err)) return -1;
    if (push(w, n)) return fu_fail(err, "out of memory while fusing");
    for (int o = 0; o < n_out; o++) {
        const fu_value *v = &g->values[node->out[o]];
        int same = v->dtype == before[o].dtype && v->rank == before[o].rank;
        for (int d = 0; same && d < v->rank; d++) same = fu_dim_eq(v->shape[d], before[o].shape[d]);
        if (push_readers(g, w, node->out[o])) return fu_fail(err, "out of memory while fusing");
        if (same) continue;
        for (int i = 0; i < g->n_nodes; i++)
            for (int k = 0; !g->nodes[i].dead && k < g->nodes[i].n_in; k++)
                if (g->nodes[i].in[k] == node->out[o]) {
                    if (infer_node(c, w, i, err)) return -1;
                    break;
                }
    }
    return 0;
}

/* The ops a pattern can be anchored at (its root NODE ops). */
static void anchor_ops(const fu_pat *p, char *ops) {
    if (p->kind == FU_PAT_NODE) ops[p->op] = 1;
    else if (p->kind != FU_PAT_ANY && p->kind != FU_PAT_SCALAR)
        for (int i = 0; i < p->n_in; i++) anchor_ops(p->in[i], ops);
}

/* Offers node i to every rule anchored at its op; 1 when one rewrote. */
static int try_rules(fu_fuse_ctx *c, const char (*anchors)[FU_OP_COUNT], int i, fu_match *m, fu_err *err) {
    for (int r = 0; r < N_RULES; r++) {
        const fu_graph *g = c->g;
        if (g->nodes[i].dead || g->nodes[i].op_id < 0 || !anchors[r][g->nodes[i].op_id]) continue;
        c->rule = rules[r]->name;
        char near[256] = "";
        for (int k = 0; rules[r]->patterns[k]; k++) {
            char why[256] = "";
            m->variant = k;
            if (fu_pat_match(c, rules[r]->patterns[k], i, m)) {
                if (!rules[r]->check || rules[r]->check(c, m, why, sizeof why)) {
                    if (rules[r]->rewrite(c, m, err)) return -1;
                    return 1;
                }
                if (m->quiet) why[0] = 0;
            } else {
                snprintf(why, sizeof why, "%s", m->why);
            }
            if (!near[0]) snprintf(near, sizeof near, "%s", why);
        }
        if (near[0]) fu_fusion_log_add(c->log, c->rule, g, i, 0, "%s", near);
    }
    return 0;
}

/* A Cast to the dtype its input already has changes nothing: its readers
 * read the input, so patterns never meet it. */
static void bypass_noop_casts(fu_fuse_ctx *c) {
    fu_graph *g = c->g;
    for (int i = 0; i < g->n_nodes; i++) {
        fu_node *n = &g->nodes[i];
        if (n->dead || n->op_id != FU_OP_Cast || n->n_in < 1 || n->in[0] < 0) continue;
        int src = n->in[0], out = n->out[0];
        if (g->values[src].dtype != g->values[out].dtype || g->values[out].is_output) continue;
        for (int k = 0; k < g->n_nodes; k++)
            for (int j = 0; !g->nodes[k].dead && j < g->nodes[k].n_in; j++)
                if (g->nodes[k].in[j] == out) fu_fuse_set_input(c, k, j, src);
    }
}

int fu_pass_fuse(fu_graph *g, const fu_pass_opts *o, fu_err *err) {
    static char anchors[N_RULES][FU_OP_COUNT];
    for (int r = 0; r < N_RULES; r++)
        for (int k = 0; rules[r]->patterns[k]; k++) anchor_ops(rules[r]->patterns[k], anchors[r]);
    fu_fuse_ctx c = {.g = g, .uses = fu_graph_use_counts(g), .cap_uses = g->n_values,
                     .log = o ? o->fusion_log : NULL};
    worklist w = {0};
    fu_match m = {0};
    int rc = c.uses ? 0 : fu_fail(err, "out of memory while fusing");
    if (rc == 0) bypass_noop_casts(&c);
    for (int i = 0; rc == 0 && i < g->n_nodes; i++)
        if (push(&w, i)) rc = fu_fail(err, "out of memory while fusing");
    while (rc == 0 && w.n > 0) {
        int i = w.items[--w.n];
        w.queued[i] = 0;
        c.n_touched = 0;
        int got = try_rules(&c, (const char (*)[FU_OP_COUNT])anchors, i, &m, err);
        if (got < 0) rc = -1;
        for (int t = 0; rc == 0 && t < c.n_touched; t++) rc = infer_node(&c, &w, c.touched[t], err);
        if (rc) {
            fu_err inner = *err;
            rc = fu_fail(err, "fusion produced an invalid graph: %s", inner.msg);
        }
    }
    fu_match_free(&m);
    free(w.items);
    free(w.queued);
    free(c.touched);
    free(c.uses);
    if (rc) return -1;
    fu_graph_compact(g);
    return fu_graph_toposort(g, err);
}
