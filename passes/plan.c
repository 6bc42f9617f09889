/* The plan pass: decides where every value lives when the model runs.
 *
 * 1. Loop groups: chains of elementwise nodes become one loop. A node joins
 *    its consumer's group when its only use is that consumer, it is not a
 *    graph output and its shape equals the group's output shape, so one
 *    index addresses every member. Non-root members are never stored.
 * 2. Storage: inputs and weights stay where the caller / the mapping put
 *    them, inline constants are embedded in the generated code, views
 *    (Reshape & co.) alias their input, everything else gets an arena slot.
 *    A weight that matmuls read packed (attribute packed_weight, set by the
 *    pack pass) gets a packed slot per layout, after the raw weights in
 *    w[]; it keeps a raw slot only if something else reads it.
 * 3. Memory plan: arena slots are reused by liveness (first fit over a free
 *    list, sizes at the symbols' declared maxima), so the arena is the peak
 *    of simultaneously live buffers rather than their sum. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "passes.h"
#include "../ir/model_limits.h"
#include "../ir/shape.h"
#include "../ops/ops.h"

#define ARENA_ALIGN 64

static int is_elementwise(const fu_node *n) { return n->def && n->def->expr != NULL; }

/* Operands node n reads into a loop (an elementwise node). */
static int loop_operands(const fu_node *n) {
    return n->def->elementwise_operands < n->n_in ? n->def->elementwise_operands : n->n_in;
}

/* Walks consumers backwards from each group root, pulling in producers. A
 * group stops growing where its operands could pass FU_LOOP_MAX_OPERANDS
 * (counted as the members' operand reads less the reads inside it: an
 * upper bound on the distinct values read from outside). */
static int assign_loop_groups(fu_graph *g, const int *uses) {
    int groups = 0;
    for (int i = 0; i < g->n_nodes; i++) g->nodes[i].loop_group = -1;
    int *root_of_group = malloc(sizeof(int) * (size_t)(g->n_nodes + 1));
    int *operands = malloc(sizeof(int) * (size_t)(g->n_nodes + 1));
    if (!root_of_group || !operands) {
        free(root_of_group), free(operands);
        return -1;
    }
    for (int i = g->n_nodes - 1; i >= 0; i--) {
        fu_node *n = &g->nodes[i];
        if (!is_elementwise(n)) continue;
        if (n->loop_group < 0) {
            root_of_group[groups] = i;
            operands[groups] = loop_operands(n);
            n->loop_group = groups++;
        }
        const fu_value *root_out = &g->values[g->nodes[root_of_group[n->loop_group]].out[0]];
        for (int k = 0; k < n->def->elementwise_operands && k < n->n_in; k++) {
            int v = n->in[k];
            if (v < 0) continue;
            const fu_value *val = &g->values[v];
            if (val->producer < 0 || val->is_output || uses[v] != 1) continue;
            fu_node *p = &g->nodes[val->producer];
            if (!is_elementwise(p) || p->loop_group >= 0 || p->n_out != 1) continue;
            if (!fu_value_same_shape(val, root_out)) continue;
            if (operands[n->loop_group] - 1 + loop_operands(p) > FU_LOOP_MAX_OPERANDS) continue;
            operands[n->loop_group] += loop_operands(p) - 1;
            p->loop_group = n->loop_group;
        }
    }
    g->n_loop_groups = groups;
    free(root_of_group);
    free(operands);
    return 0;
}

/* The value whose bytes v uses (follows view aliases). */
static int storage_root(const fu_graph *g, int v) {
    while (g->values[v].storage == FU_STORE_ALIAS) v = g->values[v].alias_of;
    return v;
}

/* Node n reads input k as a packed weight: the layout (1 f32, 2 bf16), else 0. */
static int packed_read(const fu_node *n, int k) {
    if (k != 1 || !n->def || n->op_id != FU_OP_FusedMatMul) return 0;
    const char *layout = fu_attr_string(n, "packed_weight", NULL);
    if (!layout) return 0;
    return strcmp(layout, "bf16") == 0 ? 2 : 1;
}

/* One packed slot per (weight, layout, orientation) that some matmul reads. */
static int assign_packed_slots(fu_graph *g, int *raw_use, fu_err *err) {
    free(g->packed);
    g->packed = NULL;
    g->n_packed = 0;
    int cap = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const fu_node *n = &g->nodes[i];
        if (n->dead) continue;
        for (int k = 0; k < n->n_in; k++) {
            int v = n->in[k];
            if (v < 0) continue;
            int layout = packed_read(n, k);
            if (!layout) {
                raw_use[v] = 1;
                continue;
            }
            struct fu_packed_slot want = {v, layout == 2, !fu_attr_int(n, "transB", 0)};
            int found = 0;
            for (int s = 0; s < g->n_packed && !found; s++)
                found = g->packed[s].value == v && g->packed[s].bf16 == want.bf16 &&
                        g->packed[s].transposed == want.transposed;
            if (found) continue;
            if (g->n_packed == cap) {
                cap = cap ? 2 * cap : 64;
                struct fu_packed_slot *p = realloc(g->packed, sizeof *p * (size_t)cap);
                if (!p) return fu_fail(err, "%s: out of memory in the memory plan", g->path ? g->path : "model");
                g->packed = p;
            }
            g->packed[g->n_packed++] = want;
        }
    }
    for (int i = 0; i < g->n_outputs; i++) raw_use[g->outputs[i]] = 1;
    return 0;
}

static int assign_storage(fu_graph *g, fu_err *err) {
    int weights = 0, embedded = 0;
    int *raw_use = calloc((size_t)g->n_values + 1, sizeof *raw_use);
    if (!raw_use || assign_packed_slots(g, raw_use, err)) {
        free(raw_use);
        return raw_use ? -1 : fu_fail(err, "%s: out of memory in the memory plan", g->path ? g->path : "model");
    }
    for (int v = 0; v < g->n_values; v++) {
        fu_value *val = &g->values[v];
        val->storage = FU_STORE_NONE;
        val->index = -1;
        val->offset = -1;
        val->alias_of = -1;
        if (val->kind == FU_VAL_CONST && !val->external) {
            val->storage = FU_STORE_EMBEDDED;
            val->index = embedded++;
        } else if (val->kind == FU_VAL_CONST && raw_use[v]) {
            val->storage = FU_STORE_WEIGHT;
            val->index = weights++;
        }
    }
    g->n_raw_weights = weights;
    free(raw_use);
    for (int i = 0; i < g->n_inputs; i++) {
        g->values[g->inputs[i]].storage = FU_STORE_INPUT;
        g->values[g->inputs[i]].index = i;
    }
    /* Group roots' positions tell whether a member is a root. */
    int *group_root = malloc(sizeof(int) * (size_t)(g->n_loop_groups + 1));
    for (int i = 0; i < g->n_nodes; i++)
        if (g->nodes[i].loop_group >= 0) group_root[g->nodes[i].loop_group] = i;
    for (int i = 0; i < g->n_nodes; i++) {
        fu_node *n = &g->nodes[i];
        for (int o = 0; o < n->n_out; o++) {
            fu_value *val = &g->values[n->out[o]];
            if (n->def && n->def->is_view && n->in[0] >= 0) {
                val->storage = FU_STORE_ALIAS;
                val->alias_of = storage_root(g, n->in[0]);
            } else if (n->loop_group >= 0 && group_root[n->loop_group] != i) {
                val->storage = FU_STORE_NONE;
            } else {
                val->storage = FU_STORE_ARENA;
            }
        }
    }
    free(group_root);
    return 0;
}

/* Free list of arena byte ranges, kept sorted by offset and coalesced. */
typedef struct {
    int64_t off, size;
} span;

typedef struct {
    span *free;
    int n, cap;
    int64_t top;
} arena_alloc;

static int64_t arena_take(arena_alloc *a, int64_t size) {
    int best = -1;
    for (int i = 0; i < a->n; i++)
        if (a->free[i].size >= size && (best < 0 || a->free[i].size < a->free[best].size)) best = i;
    if (best >= 0) {
        int64_t off = a->free[best].off;
        a->free[best].off += size;
        a->free[best].size -= size;
        if (a->free[best].size == 0) {
            memmove(&a->free[best], &a->free[best + 1], sizeof(span) * (size_t)(a->n - best - 1));
            a->n--;
        }
        return off;
    }
    /* Grow the arena, reusing a free span that ends at the top. */
    if (a->n > 0 && a->free[a->n - 1].off + a->free[a->n - 1].size == a->top) {
        int64_t off = a->free[a->n - 1].off;
        a->n--;
        a->top = off + size;
        return off;
    }
    int64_t off = a->top;
    a->top += size;
    return off;
}

static int arena_give(arena_alloc *a, int64_t off, int64_t size) {
    if (a->n == a->cap) {
        int cap = a->cap ? a->cap * 2 : 64;
        span *f = realloc(a->free, sizeof(span) * (size_t)cap);
        if (!f) return -1;
        a->free = f;
        a->cap = cap;
    }
    int i = 0;
    while (i < a->n && a->free[i].off < off) i++;
    memmove(&a->free[i + 1], &a->free[i], sizeof(span) * (size_t)(a->n - i));
    a->free[i] = (span){off, size};
    a->n++;
    /* Coalesce with the right and left neighbours. */
    if (i + 1 < a->n && a->free[i].off + a->free[i].size == a->free[i + 1].off) {
        a->free[i].size += a->free[i + 1].size;
        memmove(&a->free[i + 1], &a->free[i + 2], sizeof(span) * (size_t)(a->n - i - 2));
        a->n--;
    }
    if (i > 0 && a->free[i - 1].off + a->free[i - 1].size == a->free[i].off) {
        a->free[i - 1].size += a->free[i].size;
        memmove(&a->free[i], &a->free[i + 1], sizeof(span) * (size_t)(a->n - i - 1));
        a->n--;
    }
    return 0;
}

static int64_t buffer_bytes(const fu_graph *g, const fu_value *v) {
    int64_t bytes = fu_value_numel_max(g, v) * (int64_t)fu_dtype_size(v->dtype);
    if (bytes < ARENA_ALIGN) bytes = ARENA_ALIGN;
    return (bytes + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
}

static int plan_arena(fu_graph *g, fu_err *err) {
    int n = g->n_nodes;
    /* Where each node's reads happen: a group member reads when its root runs. */
    int *read_pos = malloc(sizeof(int) * (size_t)(n + 1));
    int *last_use = malloc(sizeof(int) * (size_t)(g->n_values + 1));
    int *group_root = malloc(sizeof(int) * (size_t)(g->n_loop_groups + 1));
    if (!read_pos || !last_use || !group_root) {
        free(read_pos), free(last_use), free(group_root);
        return fu_fail(err, "%s: out of memory in the memory plan", g->path ? g->path : "model");
    }
    for (int i = 0; i < n; i++)
        if (g->nodes[i].loop_group >= 0) group_root[g->nodes[i].loop_group] = i;
    for (int i = 0; i < n; i++)
        read_pos[i] = g->nodes[i].loop_group >= 0 ? group_root[g->nodes[i].loop_group] : i;
    for (int v = 0; v < g->n_values; v++)
        last_use[v] = g->values[v].producer >= 0 ? read_pos[g->values[v].producer] : -1;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < g->nodes[i].n_in; k++) {
            int v = g->nodes[i].in[k];
            if (v < 0) continue;
            int r = storage_root(g, v);
            if (last_use[r] < read_pos[i]) last_use[r] = read_pos[i];
        }
    for (int i = 0; i < g->n_outputs; i++) last_use[storage_root(g, g->outputs[i])] = n;

    /* The arena buffers each position releases, in value order: release[
     * rstart[i] .. rstart[i + 1]) (a bucket per position, not a scan of
     * every value at every node). */
    int *rstart = calloc((size_t)n + 2, sizeof(int));
    int *release = malloc(sizeof(int) * (size_t)(g->n_values + 1));
    if (!rstart || !release) {
        free(rstart), free(release), free(read_pos), free(last_use), free(group_root);
        return fu_fail(err, "%s: out of memory in the memory plan", g->path ? g->path : "model");
    }
    for (int v = 0; v < g->n_values; v++)
        if (g->values[v].storage == FU_STORE_ARENA && last_use[v] >= 0 && last_use[v] < n) rstart[last_use[v] + 1]++;
    for (int i = 0; i < n; i++) rstart[i + 1] += rstart[i];
    for (int v = 0; v < g->n_values; v++)
        if (g->values[v].storage == FU_STORE_ARENA && last_use[v] >= 0 && last_use[v] < n)
            release[rstart[last_use[v]]++] = v;
    for (int i = n; i > 0; i--) rstart[i] = rstart[i - 1];   /* the fill moved each start to the next */
    rstart[0] = 0;

    arena_alloc a = {0};
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        fu_node *node = &g->nodes[i];
        for (int o = 0; o < node->n_out; o++) {
            fu_value *val = &g->values[node->out[o]];
            if (val->storage == FU_STORE_ARENA) val->offset = arena_take(&a, buffer_bytes(g, val));
        }
        /* Release every buffer whose last reader ran at this position. */
        for (int r = rstart[i]; r < rstart[i + 1] && rc == 0; r++) {
            fu_value *val = &g->values[release[r]];
            if (val->offset >= 0) rc = arena_give(&a, val->offset, buffer_bytes(g, val));
        }
    }
    g->arena_bytes = a.top;
    free(a.free), free(read_pos), free(last_use), free(group_root), free(rstart), free(release);
    if (rc) return fu_fail(err, "%s: out of memory in the memory plan", g->path ? g->path : "model");
    return 0;
}

int fu_pass_plan(fu_graph *g, const fu_pass_opts *o, fu_err *err) {
    int *uses = fu_graph_use_counts(g);
    if (!uses) return fu_fail(err, "%s: out of memory", g->path ? g->path : "model");
    int rc = assign_loop_groups(g, uses);
    free(uses);
    if (rc) return fu_fail(err, "%s: out of memory in the memory plan", g->path ? g->path : "model");
    if (assign_storage(g, err) || plan_arena(g, err)) return -1;
    if (fu_limit_check(FU_LIMIT_ARENA_BYTES, g->arena_bytes, g->path, "the planned arena in bytes", err)) return -1;
    if (o && o->verbose) {
        int64_t naive = 0;
        int buffers = 0;
        for (int v = 0; v < g->n_values; v++)
            if (g->values[v].storage == FU_STORE_ARENA) {
                naive += buffer_bytes(g, &g->values[v]);
                buffers++;
            }
        fprintf(stderr, "plan: %d loop groups, %d buffers, arena %lld bytes (%lld without reuse)\n",
                g->n_loop_groups, buffers, (long long)g->arena_bytes, (long long)naive);
    }
    return 0;
}
