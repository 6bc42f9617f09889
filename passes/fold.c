/* Constant folding: nodes whose inputs are all constants are evaluated at
 * compile time and their results become initializers.
 *
 * 1. Known values: a node whose every output has fully known, static
 *    element values from inference (Shape of a static shape, Gather of
 *    such a Shape, ...) is replaced by those values directly.
 * 2. Compiled folding: the remaining foldable nodes (all inputs constant or
 *    folded, every output static and small) are copied into a separate
 *    graph that takes the constants as initializers and outputs the values
 *    the rest of the model reads. That graph goes through the normal
 *    infer -> plan -> emit -> JIT path and runs once (fu_pass_opts.evaluate,
 *    which the compile driver provides); its outputs are copied into owned
 *    data on the original values. One compile per pass, so the op
 *    semantics are exactly those of the generated code.
 *
 * Weights from the mapped file are read in place (borrowed pointers). A
 * value computed from them is folded only when it is small, and a view of
 * a weight is never folded: the mapping must not be copied into the model.
 * In the fast profile a Transpose or Cast of a weight that only feeds
 * matmuls is not folded either, whatever its size: the fusion rules read
 * the weight through it and the pack pass packs the weight itself. */
#include <stdlib.h>
#include <string.h>
#include "passes.h"
#include "../ops/ops.h"
#include "../ir/weights.h"

/* Largest folded output, in elements. */
#define FOLD_MAX_NUMEL ((int64_t)1 << 20)
/* Same, for values computed from the weights file (a few gathered rows
 * fold; a transposed projection matrix stays a view of the mapping). */
#define FOLD_MAX_NUMEL_FROM_WEIGHTS ((int64_t)1 << 16)

static const char *graph_path(const fu_graph *g) { return g->path ? g->path : "model"; }

/* ---- 1. values known from inference ------------------------------------ */

static int all_known_const(const fu_value *v) {
    int64_t numel;
    if (v->n_known <= 0 || !v->known) return 0;
    if (v->dtype != FU_I64 && v->dtype != FU_I32) return 0;
    if (fu_value_numel_const(v, &numel) != 0 || numel != v->n_known) return 0;
    for (int i = 0; i < v->n_known; i++)
        if (!fu_dim_is_const(v->known[i])) return 0;
    return 1;
}

static int make_known_constant(fu_value *v) {
    size_t es = fu_dtype_size(v->dtype);
    unsigned char *bytes = malloc((size_t)v->n_known * es + 1);
    if (!bytes) return -1;
    for (int i = 0; i < v->n_known; i++) {
        int64_t x = v->known[i].coef;
        if (v->dtype == FU_I64) {
            memcpy(bytes + (size_t)i * es, &x, es);
        } else {
            int32_t y = (int32_t)x;
            memcpy(bytes + (size_t)i * es, &y, es);
        }
    }
    if (v->owns_data) free(v->data);
    v->data = bytes;
    v->nbytes = (size_t)v->n_known * es;
    v->owns_data = 1;
    v->external = 0;
    v->kind = FU_VAL_CONST;
    v->producer = -1;
    return 0;
}

static int fold_known_values(fu_graph *g, int *folded, fu_err *err) {
    for (int i = 0; i < g->n_nodes; i++) {
        fu_node *n = &g->nodes[i];
        if (n->dead || n->n_out == 0) continue;
        int all = 1;
        for (int k = 0; k < n->n_out && all; k++) all = n->out[k] >= 0 && all_known_const(&g->values[n->out[k]]);
        if (!all) continue;
        for (int k = 0; k < n->n_out; k++)
            if (make_known_constant(&g->values[n->out[k]]))
                return fu_fail(err, "%s: out of memory folding constants", graph_path(g));
        n->dead = 1;
        (*folded)++;
    }
    return 0;
}

/* ---- 2. compiled folding -------------------------------------------------- */

typedef struct {
    int fast;               /* fast profile: leave weight layouts to the fusion rules */
    char *foldable_node;    /* per node */
    char *foldable_value;   /* per value: constant, or output of a foldable node */
    char *from_weights;     /* per value: computed from the weights file */
    char *boundary;         /* per value: folded value read by the rest of the graph */
    int n_foldable, n_boundary;
} fold_set;

static void fold_set_free(fold_set *s) {
    free(s->foldable_node), free(s->foldable_value), free(s->from_weights), free(s->boundary);
}

static int output_fits(const fu_value *v, int64_t max_numel) {
    int64_t numel;
    if (v->rank < 0 || v->dtype == FU_UNDEF) return 0;
    return fu_value_numel_const(v, &numel) == 0 && numel <= max_numel;
}

/* n is a Transpose or Cast of a weight (directly or through another one)
 * and everything that reads it is a matmul's B or another such node. */
static int weight_layout_for_matmul(const fu_graph *g, const fu_node *n, int depth) {
    if (depth > 3 || n->n_in < 1 || n->in[0] < 0 || n->n_out != 1 || n->out[0] < 0) return 0;
    if (n->op_id != FU_OP_Transpose && n->op_id != FU_OP_Cast) return 0;
    const fu_value *in = &g->values[n->in[0]];
    if (!in->external && (in->producer < 0 || depth > 0)) return 0;
    int out = n->out[0], readers = 0;
    if (g->values[out].is_output) return 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const fu_node *c = &g->nodes[i];
        if (c->dead) continue;
        for (int k = 0; k < c->n_in; k++) {
            if (c->in[k] != out) continue;
            readers++;
            int matmul_b = k == 1 && (c->op_id == FU_OP_MatMul || c->op_id == FU_OP_FusedMatMul);
            if (!matmul_b && !weight_layout_for_matmul(g, c, depth + 1)) return 0;
        }
    }
    return readers > 0;
}

static int node_is_foldable(const fu_graph *g, const fu_node *n, const fold_set *s) {
    if (n->dead || !n->def || n->n_out == 0) return 0;
    int reads_weights = 0;
    for (int k = 0; k < n->n_in; k++) {
        int v = n->in[k];
        if (v < 0) continue;
        if (!s->foldable_value[v]) return 0;
        reads_weights |= s->from_weights[v];
    }
    /* A view of the mapping is free; folding it would copy the weight. */
    if (n->def->is_view && n->n_in > 0 && n->in[0] >= 0 && g->values[n->in[0]].external) return 0;
    if (s->fast && weight_layout_for_matmul(g, n, 0)) return 0;
    int64_t limit = reads_weights ? FOLD_MAX_NUMEL_FROM_WEIGHTS : FOLD_MAX_NUMEL;
    for (int k = 0; k < n->n_out; k++)
        if (n->out[k] < 0 || !output_fits(&g->values[n->out[k]], limit)) return 0;
    return 1;
}

static int find_foldable(const fu_graph *g, fold_set *s) {
    size_t nv = (size_t)g->n_values + 1;
    s->foldable_node = calloc((size_t)g->n_nodes + 1, 1);
    s->foldable_value = calloc(nv, 1);
    s->from_weights = calloc(nv, 1);
    s->boundary = calloc(nv, 1);
    s->n_foldable = s->n_boundary = 0;
    if (!s->foldable_node || !s->foldable_value || !s->from_weights || !s->boundary) return -1;

    for (int v = 0; v < g->n_values; v++) {
        const fu_value *val = &g->values[v];
        if (val->kind != FU_VAL_CONST || !val->data) continue;
        s->foldable_value[v] = 1;
        s->from_weights[v] = val->external != 0;
    }
    /* Nodes are in topological order, so one forward sweep sees producers first. */
    for (int i = 0; i < g->n_nodes; i++) {
        const fu_node *n = &g->nodes[i];
        if (!node_is_foldable(g, n, s)) continue;
        s->foldable_node[i] = 1;
        s->n_foldable++;
        int reads_weights = 0;
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] >= 0) reads_weights |= s->from_weights[n->in[k]];
        for (int k = 0; k < n->n_out; k++) {
            s->foldable_value[n->out[k]] = 1;
            s->from_weights[n->out[k]] = (char)reads_weights;
        }
    }
    /* Folded values the rest of the model still needs. */
    for (int i = 0; i < g->n_nodes; i++) {
        const fu_node *n = &g->nodes[i];
        if (n->dead || s->foldable_node[i]) continue;
        for (int k = 0; k < n->n_in; k++) {
            int v = n->in[k];
            if (v >= 0 && g->values[v].kind == FU_VAL_NODE && s->foldable_value[v]) s->boundary[v] = 1;
        }
    }
    for (int i = 0; i < g->n_outputs; i++) {
        int v = g->outputs[i];
        if (g->values[v].kind == FU_VAL_NODE && s->foldable_value[v]) s->boundary[v] = 1;
    }
    for (int v = 0; v < g->n_values; v++) s->n_boundary += s->boundary[v];
    return 0;
}

/* Copies attributes through the graph's own setters, so the fold graph
 * frees them like any other. */
static int copy_attrs(fu_node *dst, const fu_node *src) {
    for (int i = 0; i < src->n_attrs; i++) {
        const fu_attr *a = &src->attrs[i];
        fu_attr *c;
        if (a->kind == FU_ATTR_INTS) {
            c = fu_node_set_attr_ints(dst, a->name, a->n, a->ints);
            if (!c) return -1;
            continue;
        }
        c = fu_node_set_attr_int(dst, a->name, a->i);
        if (!c) return -1;
        c->kind = a->kind;
        c->f = a->f;
        c->n = a->n;
        if (a->kind == FU_ATTR_FLOATS) {
            c->floats = malloc(sizeof(double) * (size_t)(a->n > 0 ? a->n : 1));
            if (!c->floats) return -1;
            if (a->n > 0) memcpy(c->floats, a->floats, sizeof(double) * (size_t)a->n);
        } else if (a->kind == FU_ATTR_STRING) {
            if (a->s && !(c->s = strdup(a->s))) return -1;
        } else if (a->kind == FU_ATTR_TENSOR) {
            c->t_dtype = a->t_dtype;
            c->t_rank = a->t_rank;
            memcpy(c->t_shape, a->t_shape, sizeof c->t_shape);
            size_t bytes = fu_dtype_size(a->t_dtype);
            for (int k = 0; k < a->t_rank; k++) bytes *= (size_t)a->t_shape[k];
            if (a->t_data) {
                c->t_data = malloc(bytes ? bytes : 1);
                if (!c->t_data) return -1;
                memcpy(c->t_data, a->t_data, bytes);
            }
        }
    }
    return 0;
}

/* Adds a copy of value v of g (name, dtype, shape) to the fold graph. */
static int add_value_copy(fu_graph *fg, const fu_value *v, fu_val_kind kind) {
    int idx = fu_graph_add_value(fg, v->name, kind);
    if (idx < 0) return -1;
    fu_value *c = &fg->values[idx];
    c->dtype = v->dtype;
    c->rank = v->rank;
    memcpy(c->shape, v->shape, sizeof c->shape);
    if (kind == FU_VAL_CONST) {  /* borrowed: the original graph keeps ownership */
        c->data = v->data;
        c->nbytes = v->nbytes;
        c->owns_data = 0;
        c->external = v->external;
    }
    return idx;
}

/* Builds the graph of the foldable nodes. fold_index maps g's values to
 * the fold graph's. */
static fu_graph *build_fold_graph(const fu_graph *g, const fold_set *s, int *fold_index) {
    fu_graph *fg = fu_graph_new("constant_fold");
    if (!fg) return NULL;
    if (g->path && !(fg->path = strdup(g->path))) goto fail;
    for (int v = 0; v < g->n_values; v++) fold_index[v] = -1;
    fg->outputs = malloc(sizeof(int) * (size_t)(s->n_boundary + 1));
    if (!fg->outputs) goto fail;

    int ins[64], outs[64];
    for (int i = 0; i < g->n_nodes; i++) {
        if (!s->foldable_node[i]) continue;
        const fu_node *n = &g->nodes[i];
        int *in = n->n_in <= 64 ? ins : malloc(sizeof(int) * (size_t)n->n_in);
        int *out = n->n_out <= 64 ? outs : malloc(sizeof(int) * (size_t)n->n_out);
        int ok = in && out;
        for (int k = 0; k < n->n_in && ok; k++) {
            int v = n->in[k];
            if (v >= 0 && fold_index[v] < 0) {
                fold_index[v] = add_value_copy(fg, &g->values[v], FU_VAL_CONST);
                ok = fold_index[v] >= 0;
            }
            in[k] = v >= 0 ? fold_index[v] : -1;
        }
        for (int k = 0; k < n->n_out && ok; k++) {
            int v = n->out[k];
            fold_index[v] = add_value_copy(fg, &g->values[v], FU_VAL_NODE);
            ok = fold_index[v] >= 0;
            out[k] = fold_index[v];
        }
        int idx = ok ? fu_graph_add_node(fg, n->name, n->op, n->n_in, in, n->n_out, out) : -1;
        if (in != ins) free(in);
        if (out != outs) free(out);
        if (idx < 0 || copy_attrs(&fg->nodes[idx], n)) goto fail;
    }
    for (int v = 0; v < g->n_values; v++) {
        if (!s->boundary[v]) continue;
        fg->values[fold_index[v]].is_output = 1;
        fg->outputs[fg->n_outputs++] = fold_index[v];
    }
    return fg;
fail:
    fu_graph_free(fg);
    return NULL;
}

static int fold_by_compiling(fu_graph *g, const fu_pass_opts *o, int *folded, fu_err *err) {
    if (!o || !o->evaluate) return 0;   /* no compiler to evaluate with: known values only */
    fold_set s = {0};
    s.fast = o->profile == FU_PROFILE_FAST;
    if (find_foldable(g, &s)) {
        fold_set_free(&s);
        return fu_fail(err, "%s: out of memory folding constants", graph_path(g));
    }
    if (s.n_boundary == 0) {  /* nothing the model reads: dce removes the rest */
        fold_set_free(&s);
        return 0;
    }
    int *fold_index = malloc(sizeof(int) * ((size_t)g->n_values + 1));
    void **results = calloc((size_t)s.n_boundary + 1, sizeof *results);
    fu_graph *fg = fold_index && results ? build_fold_graph(g, &s, fold_index) : NULL;
    int rc = 0;
    if (!fg) {
        rc = fu_fail(err, "%s: out of memory folding constants", graph_path(g));
    } else if (o->evaluate(fg, o, results, err)) {
        fu_err inner = *err;
        rc = fu_fail(err, "constant folding: %s", inner.msg);
    } else {
        /* Outputs of the fold graph are the boundary values in value order. */
        int i = 0;
        for (int v = 0; v < g->n_values; v++) {
            if (!s.boundary[v]) continue;
            fu_value *val = &g->values[v];
            int64_t numel = 0;
            fu_value_numel_const(val, &numel);
            if (val->owns_data) free(val->data);
            val->data = results[i];
            results[i++] = NULL;
            val->nbytes = (size_t)numel * fu_dtype_size(val->dtype);
            val->owns_data = 1;
            val->external = 0;
            val->kind = FU_VAL_CONST;
            val->producer = -1;
        }
        for (int n = 0; n < g->n_nodes; n++) {
            if (!s.foldable_node[n]) continue;
            g->nodes[n].dead = 1;
            /* the code now holds values computed from these weights: a
             * compiled model checks their bytes when it binds its weights */
            for (int k = 0; k < g->nodes[n].n_in; k++) {
                int v = g->nodes[n].in[k];
                if (v >= 0 && g->values[v].kind == FU_VAL_CONST && g->values[v].external)
                    fu_weights_mark_folded(g->weights, g->values[v].name);
            }
        }
        *folded += s.n_foldable;
    }
    for (int i = 0; i < s.n_boundary; i++) free(results[i]);
    free(results), free(fold_index);
    fu_graph_free(fg);
    fold_set_free(&s);
    return rc;
}

int fu_pass_fold(fu_graph *g, const fu_pass_opts *o, fu_err *err) {
    int folded = 0;
    int rc = fold_known_values(g, &folded, err);
    if (rc == 0) rc = fold_by_compiling(g, o, &folded, err);
    if (folded) fu_graph_compact(g);
    return rc;
}
