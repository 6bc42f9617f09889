/* Common-subexpression elimination.
 *
 * 1. Identical inline constants (same dtype, shape and bytes) become one:
 *    every reader of a duplicate reads the first instead.
 * 2. Nodes with the same op, the same inputs (by value index, after the
 *    rewiring so far) and equal attributes become one: consumers of a
 *    duplicate read the first node's outputs and the duplicate dies.
 *
 * Nodes are visited in topological order with their inputs already
 * rewired, so chains of duplicates collapse in one sweep; sweeps repeat
 * until nothing changes. Lookups go through a hash table, so a sweep is
 * linear in the graph size. A value that is a graph output is never
 * replaced: a duplicate producing one stays (its consumers keep it too). */
#include <stdlib.h>
#include <string.h>
#include "passes.h"
#include "../ir/shape.h"

/* ---- hashing --------------------------------------------------------- */

static uint64_t hash_bytes(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;  /* FNV-1a */
    return h;
}

static uint64_t hash_int(uint64_t h, int64_t v) { return hash_bytes(h, &v, sizeof v); }

static uint64_t hash_string(uint64_t h, const char *s) {
    return s ? hash_bytes(h, s, strlen(s) + 1) : hash_int(h, -1);
}

#define HASH_SEED 14695981039346656037ull

static uint64_t hash_attr(const fu_attr *a) {
    uint64_t h = hash_string(HASH_SEED, a->name);
    h = hash_int(h, a->kind);
    switch (a->kind) {
    case FU_ATTR_INT: h = hash_int(h, a->i); break;
    case FU_ATTR_FLOAT: h = hash_bytes(h, &a->f, sizeof a->f); break;
    case FU_ATTR_INTS: h = hash_bytes(hash_int(h, a->n), a->ints, sizeof(int64_t) * (size_t)a->n); break;
    case FU_ATTR_FLOATS: h = hash_bytes(hash_int(h, a->n), a->floats, sizeof(double) * (size_t)a->n); break;
    case FU_ATTR_STRING: h = hash_string(h, a->s); break;
    case FU_ATTR_TENSOR:
        h = hash_int(hash_int(h, a->t_dtype), a->t_rank);
        h = hash_bytes(h, a->t_shape, sizeof(int64_t) * (size_t)a->t_rank);
        break;  /* the bytes are compared on a hash match; shape is enough to spread */
    }
    return h;
}

static uint64_t hash_node(const fu_node *n) {
    uint64_t h = hash_string(HASH_SEED, n->op);
    h = hash_int(hash_int(h, n->n_in), n->n_out);
    h = hash_bytes(h, n->in, sizeof(int) * (size_t)n->n_in);
    uint64_t attrs = 0;  /* summed, so attribute order does not matter */
    for (int i = 0; i < n->n_attrs; i++) attrs += hash_attr(&n->attrs[i]);
    return hash_int(h, (int64_t)attrs);
}

static int64_t attr_tensor_bytes(const fu_attr *a) {
    int64_t numel = 1;
    for (int k = 0; k < a->t_rank; k++) numel *= a->t_shape[k];
    return numel * (int64_t)fu_dtype_size(a->t_dtype);
}

/* ---- equality -------------------------------------------------------- */

static int strings_equal(const char *a, const char *b) {
    if (!a || !b) return a == b;
    return strcmp(a, b) == 0;
}

/* Floats compare by bits: 0.0 and -0.0 differ, a NaN equals itself. */
static int attrs_equal(const fu_attr *a, const fu_attr *b) {
    if (a->kind != b->kind || !strings_equal(a->name, b->name)) return 0;
    switch (a->kind) {
    case FU_ATTR_INT: return a->i == b->i;
    case FU_ATTR_FLOAT: return memcmp(&a->f, &b->f, sizeof a->f) == 0;
    case FU_ATTR_INTS:
        return a->n == b->n && (a->n == 0 || memcmp(a->ints, b->ints, sizeof(int64_t) * (size_t)a->n) == 0);
    case FU_ATTR_FLOATS:
        return a->n == b->n &&
               (a->n == 0 || memcmp(a->floats, b->floats, sizeof(double) * (size_t)a->n) == 0);
    case FU_ATTR_STRING: return strings_equal(a->s, b->s);
    case FU_ATTR_TENSOR: {
        if (a->t_dtype != b->t_dtype || a->t_rank != b->t_rank) return 0;
        if (memcmp(a->t_shape, b->t_shape, sizeof(int64_t) * (size_t)a->t_rank) != 0) return 0;
        int64_t bytes = attr_tensor_bytes(a);
        if (bytes == 0) return 1;
        if (!a->t_data || !b->t_data) return a->t_data == b->t_data;
        return memcmp(a->t_data, b->t_data, (size_t)bytes) == 0;
    }
    }
    return 0;
}

static int nodes_equal(const fu_node *a, const fu_node *b) {
    if (!strings_equal(a->op, b->op) || a->n_in != b->n_in || a->n_out != b->n_out ||
        a->n_attrs != b->n_attrs)
        return 0;
    if (a->n_in && memcmp(a->in, b->in, sizeof(int) * (size_t)a->n_in) != 0) return 0;
    for (int i = 0; i < a->n_attrs; i++) {
        const fu_attr *match = fu_node_attr(b, a->attrs[i].name);
        if (!match || !attrs_equal(&a->attrs[i], match)) return 0;
    }
    return 1;
}

static int is_inline_const(const fu_value *v) {
    return v->kind == FU_VAL_CONST && v->owns_data && v->data && v->rank >= 0;
}

static uint64_t hash_const(const fu_value *v) {
    uint64_t h = hash_int(hash_int(HASH_SEED, v->dtype), v->rank);
    for (int k = 0; k < v->rank; k++) h = hash_int(h, v->shape[k].coef);
    return hash_bytes(h, v->data, v->nbytes);
}

static int consts_equal(const fu_value *a, const fu_value *b) {
    if (a->dtype != b->dtype || a->nbytes != b->nbytes || !fu_value_same_shape(a, b)) return 0;
    return memcmp(a->data, b->data, a->nbytes) == 0;
}

/* ---- open-addressing table of representative indices ----------------- */

typedef struct {
    int *slot;      /* node or value index, -1 when empty */
    uint64_t *hash;
    size_t mask;
} table;

static int table_init(table *t, int entries) {
    size_t cap = 16;
    while (cap < (size_t)entries * 2) cap *= 2;
    t->slot = malloc(sizeof(int) * cap);
    t->hash = malloc(sizeof(uint64_t) * cap);
    t->mask = cap - 1;
    if (!t->slot || !t->hash) return -1;
    for (size_t i = 0; i < cap; i++) t->slot[i] = -1;
    return 0;
}

static void table_free(table *t) { free(t->slot), free(t->hash); }

/* Returns the first stored index equal to `item`, or stores it and
 * returns -1. The table never fills: it holds at most half its capacity. */
typedef int (*equal_fn)(const fu_graph *g, int a, int b);

static int table_find_or_add(table *t, const fu_graph *g, uint64_t h, int item, equal_fn eq) {
    size_t i = (size_t)h & t->mask;
    while (t->slot[i] >= 0) {
        if (t->hash[i] == h && eq(g, t->slot[i], item)) return t->slot[i];
        i = (i + 1) & t->mask;
    }
    t->slot[i] = item;
    t->hash[i] = h;
    return -1;
}

static int node_index_equal(const fu_graph *g, int a, int b) {
    return nodes_equal(&g->nodes[a], &g->nodes[b]);
}

static int value_index_equal(const fu_graph *g, int a, int b) {
    return consts_equal(&g->values[a], &g->values[b]);
}

/* ---- the pass -------------------------------------------------------- */

/* Rewires n's inputs through `replace`; returns how many changed. */
static int rewire_inputs(fu_node *n, const int *replace) {
    int changed = 0;
    for (int k = 0; k < n->n_in; k++)
        if (n->in[k] >= 0 && replace[n->in[k]] != n->in[k]) n->in[k] = replace[n->in[k]], changed++;
    return changed;
}

/* One sweep; returns how many inputs were rewired plus how many nodes
 * died (0 once nothing is left to merge), -1 when out of memory. */
static int cse_sweep(fu_graph *g, int *replace) {
    int merged = 0;
    for (int v = 0; v < g->n_values; v++) replace[v] = v;

    table consts;
    if (table_init(&consts, g->n_values)) {
        table_free(&consts);
        return -1;
    }
    for (int v = 0; v < g->n_values; v++) {
        fu_value *val = &g->values[v];
        if (!is_inline_const(val) || val->is_output) continue;
        int first = table_find_or_add(&consts, g, hash_const(val), v, value_index_equal);
        if (first >= 0) replace[v] = first;
    }
    table_free(&consts);

    table nodes;
    if (table_init(&nodes, g->n_nodes)) {
        table_free(&nodes);
        return -1;
    }
    for (int i = 0; i < g->n_nodes; i++) {
        fu_node *n = &g->nodes[i];
        if (n->dead) continue;
        merged += rewire_inputs(n, replace);
        int first = table_find_or_add(&nodes, g, hash_node(n), i, node_index_equal);
        if (first < 0) continue;
        int keeps_graph_output = 0;
        for (int k = 0; k < n->n_out; k++) keeps_graph_output |= g->values[n->out[k]].is_output;
        if (keeps_graph_output) continue;
        for (int k = 0; k < n->n_out; k++) replace[n->out[k]] = g->nodes[first].out[k];
        n->dead = 1;
        merged++;
    }
    table_free(&nodes);

    /* Nodes out of topological order may still read a replaced value. */
    for (int i = 0; i < g->n_nodes; i++)
        if (!g->nodes[i].dead) merged += rewire_inputs(&g->nodes[i], replace);
    return merged;
}

int fu_pass_cse(fu_graph *g, const fu_pass_opts *o, fu_err *err) {
    (void)o;
    int *replace = malloc(sizeof(int) * ((size_t)g->n_values + 1));
    if (!replace) return fu_fail(err, "%s: out of memory in cse", g->path ? g->path : "model");
    int merged;
    do {
        merged = cse_sweep(g, replace);
        if (merged > 0) fu_graph_compact(g);
    } while (merged > 0);
    free(replace);
    if (merged < 0) return fu_fail(err, "%s: out of memory in cse", g->path ? g->path : "model");
    return 0;
}
