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
#define RULES(X) X(rms_norm) X(layer_norm) X(rotary_embedding) X(attention) X(swiglu) X(gelu) X(matmul_bias) \
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

/* ---- readers ------------------------------------------------------------------ */

/* Per value, the nodes that read it: lists that rewrites only append to
 * (fu_fuse_set_input, fu_fuse_replace_node), so an entry may be stale (the
 * node died or reads something else now) or repeated; fu_fuse_readers
 * drops those as it reads a list. A rule asking for a value's readers costs
 * that value's readers, not a walk of the graph. */
typedef struct {
    int *nodes;
    int n, cap;
} reader_list;

struct fu_readers {
    reader_list *lists;   /* per value */
    int n_lists;
    unsigned *seen;       /* per node: stamp of the last list that kept it */
    int n_seen;
    unsigned stamp;
    int oom;              /* an append failed: the pass fails */
};

static int readers_room(struct fu_readers *r, int n_values, int n_nodes) {
    if (n_values > r->n_lists) {
        int cap = n_values * 2;
        reader_list *l = realloc(r->lists, sizeof *l * (size_t)cap);
        if (!l) return r->oom = 1, -1;
        memset(l + r->n_lists, 0, sizeof *l * (size_t)(cap - r->n_lists));
        r->lists = l;
        r->n_lists = cap;
    }
    if (n_nodes > r->n_seen) {
        int cap = n_nodes * 2;
        unsigned *s = realloc(r->seen, sizeof *s * (size_t)cap);
        if (!s) return r->oom = 1, -1;
        memset(s + r->n_seen, 0, sizeof *s * (size_t)(cap - r->n_seen));
        r->seen = s;
        r->n_seen = cap;
    }
    return 0;
}

static void readers_add(struct fu_readers *r, const fu_graph *g, int v, int node) {
    if (v < 0 || readers_room(r, g->n_values, g->n_nodes)) return;
    reader_list *l = &r->lists[v];
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 2;
        int *nodes = realloc(l->nodes, sizeof *nodes * (size_t)cap);
        if (!nodes) {
            r->oom = 1;
            return;
        }
        l->nodes = nodes;
        l->cap = cap;
    }
    l->nodes[l->n++] = node;
}

static void readers_free(struct fu_readers *r) {
    if (!r) return;
    for (int v = 0; v < r->n_lists; v++) free(r->lists[v].nodes);
    free(r->lists);
    free(r->seen);
    free(r);
}

static struct fu_readers *readers_build(const fu_graph *g) {
    struct fu_readers *r = calloc(1, sizeof *r);
    if (!r || readers_room(r, g->n_values, g->n_nodes)) {
        readers_free(r);
        return NULL;
    }
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; !g->nodes[i].dead && k < g->nodes[i].n_in; k++) readers_add(r, g, g->nodes[i].in[k], i);
    if (r->oom) {
        readers_free(r);
        return NULL;
    }
    return r;
}

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

const int *fu_fuse_readers(const fu_fuse_ctx *c, int v, int *n) {
    struct fu_readers *r = c->readers;
    const fu_graph *g = c->g;
    *n = 0;
    if (v < 0 || v >= r->n_lists || readers_room(r, g->n_values, g->n_nodes)) return NULL;
    if (++r->stamp == 0) {   /* wrapped: forget every mark */
        memset(r->seen, 0, sizeof *r->seen * (size_t)r->n_seen);
        r->stamp = 1;
    }
    reader_list *l = &r->lists[v];
    int kept = 0, sorted = 1;
    for (int e = 0; e < l->n; e++) {
        int i = l->nodes[e], reads = 0;
        const fu_node *node = &g->nodes[i];
        if (node->dead || r->seen[i] == r->stamp) continue;
        for (int k = 0; k < node->n_in && !reads; k++) reads = node->in[k] == v;
        if (!reads) continue;
        r->seen[i] = r->stamp;
        if (kept && l->nodes[kept - 1] > i) sorted = 0;
        l->nodes[kept++] = i;
    }
    l->n = kept;
    if (!sorted) qsort(l->nodes, (size_t)kept, sizeof *l->nodes, cmp_int);
    *n = kept;
    return l->nodes;
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
    readers_add(c->readers, c->g, v, n);
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
    for (int k = 0; k < n_inputs; k++) {
        if (inputs[k] >= 0) c->uses[inputs[k]]++;
        readers_add(c->readers, g, inputs[k], idx);
    }
    /* The anchor hands its output over and dies with what only it read. */
    g->nodes[node].out[0] = -1;
    g->values[out].producer = idx;
    kill_node(c, node);
    return idx;
}

/* ---- the pass ------------------------------------------------------------------- */

typedef struct {
    int *items;
    int n, cap;
    char *queued;   /* per node */
    int cap_queued;
    int *scratch;   /* settle: a node's readers */
    int cap_scratch;
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

/* Re-infers node n, its outputs reset first; *changed = 1 when an output's
 * dtype or shape is not what it was. */
static int infer_one(fu_graph *g, int n, int *changed, fu_err *err) {
    fu_node *node = &g->nodes[n];
    if (!(node->def = fu_op_at(node->op_id))) return fu_node_fail(err, g, node, "fusion made a node of an unknown op");
    enum { KEEP = 4 };
    fu_value before[KEEP];
    for (int o = 0; o < node->n_out; o++) {
        fu_value *v = &g->values[node->out[o]];
        if (o < KEEP) before[o] = *v;
        v->rank = -1;
        v->dtype = FU_UNDEF;
        free(v->known);
        v->known = NULL;
        v->n_known = 0;
    }
    if (node->def->infer(g, node, err)) return -1;
    *changed = node->n_out > KEEP;
    for (int o = 0; o < node->n_out && o < KEEP; o++) {
        const fu_value *v = &g->values[node->out[o]];
        *changed |= v->dtype != before[o].dtype || !fu_shape_eq(v->rank, v->shape, before[o].rank, before[o].shape);
    }
    return 0;
}

static int reads(const fu_node *n, const fu_node *p) {
    for (int k = 0; k < n->n_in; k++)
        for (int o = 0; n->in[k] >= 0 && o < p->n_out; o++)
            if (n->in[k] == p->out[o]) return 1;
    return 0;
}

/* The live readers of node p's outputs, each once, in node order, into
 * *buf (grown; *cap its room); the count, or -1 when out of memory. */
static int node_readers(fu_fuse_ctx *c, const fu_node *p, int **buf, int *cap) {
    int n = 0;
    for (int o = 0; o < p->n_out; o++) {
        int count;
        const int *r = fu_fuse_readers(c, p->out[o], &count);
        if (n + count > *cap) {
            int want = 2 * (n + count) + 16;
            int *b = realloc(*buf, sizeof *b * (size_t)want);
            if (!b) return -1;
            *buf = b, *cap = want;
        }
        if (count) memcpy(*buf + n, r, sizeof *r * (size_t)count);
        n += count;
    }
    if (p->n_out > 1 && n > 1) {   /* several outputs: merge */
        qsort(*buf, (size_t)n, sizeof **buf, cmp_int);
        int u = 1;
        for (int i = 1; i < n; i++)
            if ((*buf)[i] != (*buf)[u - 1]) (*buf)[u++] = (*buf)[i];
        n = u;
    }
    return n;
}

/* Re-infers what a rewrite touched: each touched node after the touched
 * nodes it reads, then, breadth first, the readers of every output whose
 * dtype or shape changed. All go back on the worklist with their readers. */
static int settle(fu_fuse_ctx *c, worklist *w, fu_err *err) {
    fu_graph *g = c->g;
    int first_round = c->n_touched;
    for (int t = 0; t < c->n_touched; t++) {
        for (int k = t; t < first_round && k < first_round; k++) {
            int ready = 1;
            for (int j = t; j < first_round && ready; j++)
                ready = j == k || !reads(&g->nodes[c->touched[k]], &g->nodes[c->touched[j]]);
            if (!ready) continue;
            int swap = c->touched[t];
            c->touched[t] = c->touched[k], c->touched[k] = swap;
            break;
        }
        int n = c->touched[t], changed = 0;
        if (g->nodes[n].dead) continue;
        if (infer_one(g, n, &changed, err)) return -1;
        if (push(w, n)) return fu_fail(err, "out of memory while fusing");
        int n_readers = node_readers(c, &g->nodes[n], &w->scratch, &w->cap_scratch);
        if (n_readers < 0 || c->readers->oom) return fu_fail(err, "out of memory while fusing");
        for (int r = 0; r < n_readers; r++) {
            int i = w->scratch[r], pending = 0;
            for (int j = t + 1; j < c->n_touched; j++) pending |= c->touched[j] == i;
            if (push(w, i) || (changed && !pending && fu_fuse_touch(c, i))) return fu_fail(err, "out of memory while fusing");
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
            /* structure, then the rule's check, then that the match is private */
            if (fu_pat_match(g, rules[r]->patterns[k], i, m) && (!rules[r]->check || rules[r]->check(c, m, why, sizeof why))) {
                if (fu_match_private(c, m)) return rules[r]->rewrite(c, m, err) ? -1 : 1;
            }
            if (!why[0]) snprintf(why, sizeof why, "%s", m->why);
            if (rules[r]->patterns[k]->kind == FU_PAT_QUIET) why[0] = 0;
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
        int src = n->in[0], out = n->out[0], n_readers;
        if (g->values[src].dtype != g->values[out].dtype || g->values[out].is_output || src == out) continue;
        /* out's list: set_input only appends to src's */
        const int *readers = fu_fuse_readers(c, out, &n_readers);
        for (int r = 0; r < n_readers; r++) {
            int k = readers[r];
            for (int j = 0; !g->nodes[k].dead && j < g->nodes[k].n_in; j++)
                if (g->nodes[k].in[j] == out) fu_fuse_set_input(c, k, j, src);
        }
    }
}

int fu_pass_fuse(fu_graph *g, const fu_pass_opts *o, fu_err *err) {
    char anchors[N_RULES][FU_OP_COUNT] = {{0}};   /* per call: two threads may fuse at once */
    for (int r = 0; r < N_RULES; r++)
        for (int k = 0; rules[r]->patterns[k]; k++) anchor_ops(rules[r]->patterns[k], anchors[r]);
    fu_fuse_ctx c = {.g = g, .uses = fu_graph_use_counts(g), .cap_uses = g->n_values,
                     .log = o ? o->fusion_log : NULL, .readers = readers_build(g)};
    worklist w = {0};
    fu_match m = {0};
    int rc = c.uses && c.readers ? 0 : fu_fail(err, "out of memory while fusing");
    if (rc == 0) bypass_noop_casts(&c);
    if (rc == 0 && c.readers->oom) rc = fu_fail(err, "out of memory while fusing");
    for (int i = 0; rc == 0 && i < g->n_nodes; i++)
        if (push(&w, i)) rc = fu_fail(err, "out of memory while fusing");
    while (rc == 0 && w.n > 0) {
        int i = w.items[--w.n];
        w.queued[i] = 0;
        c.n_touched = 0;
        int got = try_rules(&c, (const char (*)[FU_OP_COUNT])anchors, i, &m, err);
        if (got < 0) rc = -1;
        if (rc == 0) rc = settle(&c, &w, err);
        if (rc) {
            fu_err inner = *err;
            rc = fu_fail(err, "fusion produced an invalid graph: %s", inner.msg);
        }
    }
    fu_match_free(&m);
    free(w.items);
    free(w.queued);
    free(w.scratch);
    readers_free(c.readers);
    free(c.touched);
    free(c.uses);
    if (rc) return -1;
    fu_graph_compact(g);
    return fu_graph_toposort(g, err);
}
