/* fu_infer: structural checks, topological sort, then each op's shape and
 * dtype rule in order. Safe to re-run after passes rewrite the graph. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ops.h"
#include "../ir/shape.h"
#include "infer.h"

static const char *gpath(const fu_graph *g) { return g->path ? g->path : "model"; }

/* "float32 [2,seq]" */
static void shape_text(const fu_graph *g, fu_dtype t, int rank, const fu_dim *shape, char *buf,
                       size_t n) {
    size_t len = (size_t)snprintf(buf, n, "%s ", fu_dtype_name(t));
    if (len < n) fu_shape_str(g, rank, shape, ",", buf + len, n - len);
}

static int arity_fail(fu_err *err, const fu_graph *g, const fu_node *n, const char *what, int lo,
                      int hi, int got) {
    if (lo == hi) return fu_node_fail(err, g, n, "expects %d %s, got %d", lo, what, got);
    if (hi < 0) return fu_node_fail(err, g, n, "expects at least %d %s, got %d", lo, what, got);
    return fu_node_fail(err, g, n, "expects %d to %d %s, got %d", lo, hi, what, got);
}

/* Ops, arity, index ranges, and that each value has at most one producer,
 * which must not be a graph input or initializer. */
static int check_structure(fu_graph *g, fu_err *err) {
    int *producer = malloc(sizeof(int) * ((size_t)g->n_values + 1));
    if (!producer) return fu_fail(err, "%s: out of memory", gpath(g));
    for (int i = 0; i < g->n_values; i++) producer[i] = -1;
    int rc = -1;
    for (int k = 0; k < g->n_nodes; k++) {
        fu_node *n = &g->nodes[k];
        if (n->dead) continue;
        /* inference runs after every rewrite: keep a node's op while its name is unchanged */
        const fu_op *def = n->def && strcmp(n->def->name, n->op) == 0 ? n->def : fu_op_find(n->op);
        if (!def) {
            char safe_op[64];
            fu_sanitize(n->op, safe_op, sizeof safe_op);
            fu_node_fail(err, g, n, "unknown op '%s'", safe_op);
            goto done;
        }
        n->def = def;
        if (n->n_in < def->min_in || (def->max_in >= 0 && n->n_in > def->max_in)) {
            arity_fail(err, g, n, "inputs", def->min_in, def->max_in, n->n_in);
            goto done;
        }
        if (n->n_out < def->min_out || (def->max_out >= 0 && n->n_out > def->max_out)) {
            arity_fail(err, g, n, "outputs", def->min_out, def->max_out, n->n_out);
            goto done;
        }
        for (int i = 0; i < n->n_in; i++) {
            if (n->in[i] >= g->n_values || n->in[i] < -1) {
                fu_node_fail(err, g, n, "input %d refers to no value", i);
                goto done;
            }
            if (n->in[i] < 0 && i < def->min_in) {
                fu_node_fail(err, g, n, "input %d is required", i);
                goto done;
            }
        }
        for (int o = 0; o < n->n_out; o++) {
            int v = n->out[o];
            if (v < 0 || v >= g->n_values) {
                fu_node_fail(err, g, n, "output %d refers to no value", o);
                goto done;
            }
            char safe_v[128];
            fu_sanitize(g->values[v].name, safe_v, sizeof safe_v);
            if (g->values[v].kind != FU_VAL_NODE || producer[v] >= 0) {
                fu_node_fail(err, g, n, "duplicate name '%s' (value already %s)", safe_v,
                             g->values[v].kind == FU_VAL_INPUT   ? "a graph input"
                             : g->values[v].kind == FU_VAL_CONST ? "an initializer"
                                                                 : "produced by another node");
                goto done;
            }
            producer[v] = k;
        }
    }
    /* Inputs and outputs: every value a node reads must exist. */
    for (int k = 0; k < g->n_nodes; k++) {
        fu_node *n = &g->nodes[k];
        if (n->dead) continue;
        for (int i = 0; i < n->n_in; i++) {
            int v = n->in[i];
            if (v >= 0 && g->values[v].kind == FU_VAL_NODE && producer[v] < 0) {
                char safe_v[128];
                fu_sanitize(g->values[v].name, safe_v, sizeof safe_v);
                fu_node_fail(err, g, n, "dangling input '%s' (no live node produces it)", safe_v);
                goto done;
            }
        }
    }
    for (int i = 0; i < g->n_values; i++) g->values[i].is_output = 0;
    for (int i = 0; i < g->n_outputs; i++) {
        int v = g->outputs[i];
        if (v < 0 || v >= g->n_values) {
            fu_fail(err, "%s: graph output %d refers to no value", gpath(g), i);
            goto done;
        }
        if (g->values[v].kind == FU_VAL_NODE && producer[v] < 0) {
            char safe_v[128];
            fu_sanitize(g->values[v].name, safe_v, sizeof safe_v);
            fu_fail(err, "%s: output '%s' is not produced by any node", gpath(g), safe_v);
            goto done;
        }
        g->values[v].is_output = 1;
    }
    for (int i = 0; i < g->n_inputs; i++) {
        int v = g->inputs[i];
        if (v < 0 || v >= g->n_values || g->values[v].rank < 0) {
            fu_fail(err, "%s: graph input %d has no shape", gpath(g), i);
            goto done;
        }
    }
    rc = 0;
done:
    free(producer);
    return rc;
}

/* Clears what a previous run inferred, so rewritten nodes start fresh. */
static void reset_node_outputs(fu_graph *g) {
    for (int k = 0; k < g->n_nodes; k++) {
        fu_node *n = &g->nodes[k];
        if (n->dead) continue;
        for (int o = 0; o < n->n_out; o++) {
            fu_value *v = &g->values[n->out[o]];
            v->rank = -1;
            v->dtype = FU_UNDEF;
            free(v->known);
            v->known = NULL;
            v->n_known = 0;
        }
    }
}

static int check_size(const fu_graph *g, const fu_value *v, fu_err *err) {
    int64_t numel = fu_value_numel_max(g, v);
    if (numel <= FU_MAX_NUMEL) return 0;
    char safe_v[128];
    fu_sanitize(v->name, safe_v, sizeof safe_v);
    if (v->producer >= 0)
        return fu_node_fail(err, g, &g->nodes[v->producer],
                            "output '%s' would have more than %lld elements", safe_v,
                            (long long)FU_MAX_NUMEL);
    return fu_fail(err, "%s: value '%s' has more than %lld elements", gpath(g), safe_v,
                   (long long)FU_MAX_NUMEL);
}

/* Attribute names whose meaning is the same in every op that has them
 * (ONNX's, and fusec's own). An integer attribute given as a float (`"axis": 1.5`, `{"float":
 * "nan"}`) would be ignored by fu_attr_int, which falls back to the
 * default: an error instead. A float attribute takes integers too. */
static const char *const int_attrs[] = {
    "axis", "keepdims", "noop_with_empty_axes", "transA", "transB", "transBatchA", "transBatchB",
    "to", "start", "end", "upper", "allowzero", "num_outputs", "is_causal", "interleaved",
    "rotary_embedding_dim", "num_heads", "q_num_heads", "kv_num_heads", "pos_offset", NULL};
static const char *const float_attrs[] = {"epsilon", "alpha", "beta", "scale", "softcap", "amplitude", NULL};
/* String attributes (fu_attr_string falls back to the default on any other kind). */
static const char *const string_attrs[] = {"layout", "qkv_layout", "out_layout", "causal_align", "activations",
                                           "packed_weight", "approximate", NULL};

static int listed(const char *const *names, const char *name) {
    for (int i = 0; names[i]; i++)
        if (strcmp(names[i], name) == 0) return 1;
    return 0;
}

static int check_attr_kinds(const fu_graph *g, const fu_node *n, fu_err *err) {
    static const char *const kinds[] = {"an integer", "a float", "a list of integers", "a list of floats",
                                        "a string", "a tensor"};
    for (int i = 0; i < n->n_attrs; i++) {
        const fu_attr *a = &n->attrs[i];
        char safe_name[64];
        fu_sanitize(a->name, safe_name, sizeof safe_name);
        if (listed(int_attrs, a->name) && a->kind != FU_ATTR_INT) {
            if (a->kind == FU_ATTR_FLOAT)
                return fu_node_fail(err, g, n, "attribute '%s' must be an integer, got the float %g",
                                    safe_name, a->f);
            return fu_node_fail(err, g, n, "attribute '%s' must be an integer, got %s", safe_name,
                                kinds[a->kind]);
        }
        if (listed(float_attrs, a->name) && a->kind != FU_ATTR_FLOAT && a->kind != FU_ATTR_INT)
            return fu_node_fail(err, g, n, "attribute '%s' must be a number, got %s", safe_name,
                                kinds[a->kind]);
        if (listed(string_attrs, a->name) && a->kind != FU_ATTR_STRING)
            return fu_node_fail(err, g, n, "attribute '%s' must be a string, got %s", safe_name, kinds[a->kind]);
    }
    return 0;
}

static int check_declared_outputs(const fu_graph *g, fu_err *err) {
    for (int i = 0; i < g->n_outputs; i++) {
        const fu_value *v = &g->values[g->outputs[i]];
        if (v->decl_rank < 0 && v->decl_dtype == FU_UNDEF) continue;
        int same = v->decl_dtype == FU_UNDEF || v->decl_dtype == v->dtype;
        if (v->decl_rank >= 0) same = same && fu_shape_eq(v->decl_rank, v->decl_shape, v->rank, v->shape);
        if (same) continue;
        char decl[300], got[300], safe_v[128];
        fu_sanitize(v->name, safe_v, sizeof safe_v);
        if (v->decl_rank >= 0)
            shape_text(g, v->decl_dtype != FU_UNDEF ? v->decl_dtype : v->dtype, v->decl_rank,
                       v->decl_shape, decl, sizeof decl);
        else
            snprintf(decl, sizeof decl, "%s", fu_dtype_name(v->decl_dtype));
        shape_text(g, v->dtype, v->rank, v->shape, got, sizeof got);
        return fu_fail(err, "%s: output '%s' declared %s but inferred %s", gpath(g), safe_v, decl,
                       got);
    }
    return 0;
}

int fu_infer(fu_graph *g, fu_err *err) {
    if (check_structure(g, err)) return -1;
    if (fu_graph_toposort(g, err)) return -1;
    reset_node_outputs(g);
    for (int i = 0; i < g->n_values; i++) {
        const fu_value *v = &g->values[i];
        if (v->kind != FU_VAL_NODE && v->rank >= 0 && check_size(g, v, err)) return -1;
    }
    for (int k = 0; k < g->n_nodes; k++) {
        fu_node *n = &g->nodes[k];
        if (n->dead) continue;
        if (!n->def->infer) return fu_node_fail(err, g, n, "op has no shape rule");
        if (check_attr_kinds(g, n, err)) return -1;
        if (n->def->infer(g, n, err)) return -1;
        for (int o = 0; o < n->n_out; o++) {
            const fu_value *v = &g->values[n->out[o]];
            if (v->rank < 0 || v->dtype == FU_UNDEF)
                return fu_node_fail(err, g, n, "output %d was not inferred", o);
            if (check_size(g, v, err)) return -1;
        }
    }
    return check_declared_outputs(g, err);
}
