/* A small graph builder for tests: models are built in C, as fu_graph
 * values, and written out with fusec's own JSON writer (fu_ir_write), so a
 * test still loads its model through the reader (fu_ir_load, fusec_load).
 * Include after <cmocka.h>, testutil.h and ir/json_ir.h; a misuse (an
 * unknown value, a duplicate name) fails the test.
 *
 *     tb_graph *b = tb_new("norm");
 *     int64_t seq = tb_symbol(b, "seq", 7);
 *     int x = tb_input(b, "x", FU_F32, TB_DIMS(1, seq, 64));
 *     int w = tb_const_f32(b, "w", TB_DIMS(64), data);
 *     int sq = tb_op(b, "Mul", "sq", x, x);             (op, output name, inputs)
 *     int ms = tb_op(b, "ReduceMean", "ms", sq);
 *     tb_attr_ints(b, ms, "axes", TB_INTS(-1));         (on the node making ms)
 *     tb_output(b, tb_op(b, "Mul", "y", ms, w));
 *     char *path = tb_save(b);                          (temp model; tb_remove)
 *     tb_free(b);
 *
 * Values are fu_graph value indices. A dim in a shape is a size, or a symbol
 * from tb_symbol (a negative token); TB_NONE is an omitted optional input
 * (ONNX ""); tb_op_names reads inputs by name ("q,k,v,,,,sinks") for test
 * tables. Nodes are named node_<index>, as the reader names unnamed ones,
 * unless b->node_suffix is set (the node making "y" is "y" + suffix) or
 * tb_name renames one. Nodes are added in call order: nest at most one
 * node-making call in another's arguments (C leaves their order open).
 *
 * Constants are written inline; asking twice for the same constant returns
 * it. tb_weight tensors go to a safetensors file tb_save writes next to the
 * model; tb_external declares a tensor of a weights file the test lays out
 * itself (tb_weights_file). As with fu_ir_write, an initializer no node
 * reads is not written; tests that only run passes can take the in-memory
 * graph instead (tb_take), or read the file back (tb_load). */
#ifndef FUSEC_GRAPH_BUILDER_H
#define FUSEC_GRAPH_BUILDER_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    fu_graph *g;
    const char *node_suffix;   /* NULL: nodes are node_<index> */
} tb_graph;

#define TB_NONE (-1)
#define TB_SYM_BASE ((int64_t)-1000000)
/* rank, dims: TB_DIMS(1, seq, 64); TB_SCALAR for []. */
#define TB_DIMS(...) (int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]){__VA_ARGS__}
#define TB_SCALAR 0, (const int64_t *)NULL
/* count, values of an int list (attributes, tb_const_ints). */
#define TB_INTS(...) TB_DIMS(__VA_ARGS__)
#define TB_FLOATS(...) (int)(sizeof((const double[]){__VA_ARGS__}) / sizeof(double)), (const double[]){__VA_ARGS__}
/* One-output node: tb_op(b, "Add", "y", a, c). */
#define tb_op(b, op, out, ...) \
    tb_node(b, op, out, (int)(sizeof((const int[]){__VA_ARGS__}) / sizeof(int)), (const int[]){__VA_ARGS__})

static inline tb_graph *tb_new(const char *name) {
    tb_graph *b = calloc(1, sizeof *b);
    if (!b || !(b->g = fu_graph_new(name))) fail_msg("tb_new: out of memory");
    return b;
}

static inline void tb_free(tb_graph *b) {
    if (!b) return;
    fu_graph_free(b->g);
    free(b);
}

/* Declares a symbol with its upper bound; returns its dim token. */
static inline int64_t tb_symbol(tb_graph *b, const char *name, int64_t bound) {
    fu_graph *g = b->g;
    for (int i = 0; i < g->n_syms; i++)
        if (!strcmp(g->sym_names[i], name)) return TB_SYM_BASE - i;
    if (g->n_syms == FU_MAX_SYMS) fail_msg("tb_symbol: too many symbols");
    g->sym_names[g->n_syms] = strdup(name);
    g->sym_max[g->n_syms] = bound;
    return TB_SYM_BASE - g->n_syms++;
}

static inline fu_dim tb_dim_(const tb_graph *b, int64_t d) {
    if (d >= 0) return fu_dim_const(d);
    int64_t sym = TB_SYM_BASE - d;
    if (sym < 0 || sym >= b->g->n_syms) fail_msg("tb: dim %lld is neither a size nor a symbol", (long long)d);
    return fu_dim_sym((int)sym);
}

static inline int tb_value_(tb_graph *b, const char *name, fu_val_kind kind, fu_dtype t, int rank,
                            const int64_t *dims) {
    int v = fu_graph_add_value(b->g, name, kind);
    if (v < 0) fail_msg("tb: duplicate value name '%s'", name);
    fu_value *val = &b->g->values[v];
    val->dtype = t;
    val->rank = rank;
    for (int i = 0; i < rank; i++) val->shape[i] = tb_dim_(b, dims[i]);
    return v;
}

static inline void tb_check_(const tb_graph *b, int v, const char *what) {
    if (v < 0 || v >= b->g->n_values) fail_msg("tb: %s: no value %d", what, v);
}

/* ---- inputs and constants ---------------------------------------------------- */

static inline int tb_input(tb_graph *b, const char *name, fu_dtype t, int rank, const int64_t *dims) {
    fu_graph *g = b->g;
    int v = tb_value_(b, name, FU_VAL_INPUT, t, rank, dims);
    int *in = realloc(g->inputs, sizeof(int) * (size_t)(g->n_inputs + 1));
    if (!in) fail_msg("tb_input: out of memory");
    g->inputs = in;
    g->values[v].storage = FU_STORE_INPUT;
    g->values[v].index = g->n_inputs;
    g->inputs[g->n_inputs++] = v;
    return v;
}

static inline int64_t tb_numel_(int rank, const int64_t *dims) {
    int64_t n = 1;
    for (int i = 0; i < rank; i++) {
        if (dims[i] < 0) fail_msg("tb: a constant's shape must be static");
        n *= dims[i];
    }
    return n;
}

/* Inline constant from raw bytes of dtype t (numel * dtype size). Asking
 * again for a constant of the same name, dtype, shape and data returns the
 * first one (helpers may need the same axes twice); other data fails. */
static inline int tb_const(tb_graph *b, const char *name, fu_dtype t, int rank, const int64_t *dims,
                           const void *bytes) {
    size_t nbytes = (size_t)tb_numel_(rank, dims) * fu_dtype_size(t);
    int v = fu_graph_find_value(b->g, name);
    if (v >= 0) {
        const fu_value *c = &b->g->values[v];
        int same = c->kind == FU_VAL_CONST && c->dtype == t && c->rank == rank && c->nbytes == nbytes &&
                   !memcmp(c->data, bytes, nbytes);
        for (int i = 0; same && i < rank; i++) same = c->shape[i].coef == dims[i];
        if (!same) fail_msg("tb_const: '%s' already exists with other contents", name);
        return v;
    }
    v = tb_value_(b, name, FU_VAL_CONST, t, rank, dims);
    if (fu_value_set_data(&b->g->values[v], bytes, nbytes)) fail_msg("tb_const: out of memory");
    return v;
}

static inline int tb_const_f32(tb_graph *b, const char *name, int rank, const int64_t *dims, const float *data) {
    return tb_const(b, name, FU_F32, rank, dims, data);
}

static inline int tb_const_i64(tb_graph *b, const char *name, int rank, const int64_t *dims, const int64_t *data) {
    return tb_const(b, name, FU_I64, rank, dims, data);
}

/* Inline constant of any dtype from float values (as the reader converts
 * JSON numbers: float16 / bfloat16 rounded to nearest even). */
static inline int tb_const_cast(tb_graph *b, const char *name, fu_dtype t, int rank, const int64_t *dims,
                                const float *vals) {
    int64_t n = tb_numel_(rank, dims);
    unsigned char *bytes = malloc((size_t)(n ? n : 1) * 8);
    if (!bytes) fail_msg("tb_const_cast: out of memory");
    for (int64_t i = 0; i < n; i++) {
        float x = vals[i];
        switch (t) {
        case FU_F32: memcpy(bytes + 4 * i, &x, 4); break;
        case FU_F16: { uint16_t h = fu_f32_to_f16(x); memcpy(bytes + 2 * i, &h, 2); break; }
        case FU_BF16: { uint16_t h = fu_f32_to_bf16(x); memcpy(bytes + 2 * i, &h, 2); break; }
        case FU_I64: { int64_t k = (int64_t)x; memcpy(bytes + 8 * i, &k, 8); break; }
        case FU_I32: { int32_t k = (int32_t)x; memcpy(bytes + 4 * i, &k, 4); break; }
        default: bytes[i] = x != 0; break;
        }
    }
    int v = tb_const(b, name, t, rank, dims, bytes);
    free(bytes);
    return v;
}

static inline int tb_scalar_f32(tb_graph *b, const char *name, float x) {
    return tb_const_f32(b, name, TB_SCALAR, &x);
}

static inline int tb_scalar_i64(tb_graph *b, const char *name, int64_t x) {
    return tb_const_i64(b, name, TB_SCALAR, &x);
}

/* 1-D int64 constant: tb_const_ints(b, "axes", TB_INTS(-1)). */
static inline int tb_const_ints(tb_graph *b, const char *name, int n, const int64_t *vals) {
    return tb_const_i64(b, name, TB_DIMS(n), vals);
}

/* A weight stored in the safetensors file tb_save writes next to the model
 * (raw bytes of dtype t). */
static inline int tb_weight(tb_graph *b, const char *name, fu_dtype t, int rank, const int64_t *dims,
                            const void *bytes) {
    int v = tb_const(b, name, t, rank, dims, bytes);
    b->g->values[v].external = 1;
    return v;
}

/* A tensor of the weights file set by tb_weights_file (no data here). */
static inline int tb_external(tb_graph *b, const char *name, fu_dtype t, int rank, const int64_t *dims) {
    int v = tb_value_(b, name, FU_VAL_CONST, t, rank, dims);
    b->g->values[v].external = 1;
    return v;
}

/* The model's "weights" path as written (relative to the model's directory,
 * or absolute). */
static inline void tb_weights_file(tb_graph *b, const char *path) {
    free(b->g->weights_path);
    if (!(b->g->weights_path = strdup(path))) fail_msg("tb_weights_file: out of memory");
}

/* ---- nodes ------------------------------------------------------------------- */

/* Node `op` reading in[0..n_in) (TB_NONE: omitted) with outputs named
 * outs[0..n_out); output value indices in out_vals (may be NULL). Returns
 * the first output. */
static inline int tb_node_n(tb_graph *b, const char *op, int n_in, const int *in, int n_out,
                            const char *const *outs, int *out_vals) {
    int vals[16];
    if (n_out < 1 || n_out > 16) fail_msg("tb_node_n: %d outputs", n_out);
    for (int i = 0; i < n_in; i++)
        if (in[i] != TB_NONE) tb_check_(b, in[i], op);
    for (int o = 0; o < n_out; o++) vals[o] = tb_value_(b, outs[o], FU_VAL_NODE, FU_UNDEF, -1, NULL);
    char name[256];
    if (b->node_suffix) snprintf(name, sizeof name, "%s%s", outs[0], b->node_suffix);
    if (fu_graph_add_node(b->g, b->node_suffix ? name : NULL, op, n_in, in, n_out, vals) < 0)
        fail_msg("tb_node: out of memory");
    if (out_vals) memcpy(out_vals, vals, sizeof(int) * (size_t)n_out);
    return vals[0];
}

static inline int tb_node(tb_graph *b, const char *op, const char *out, int n_in, const int *in) {
    return tb_node_n(b, op, n_in, in, 1, &out, NULL);
}

/* The value named `name` (built from strings in a helper). */
static inline int tb_val(const tb_graph *b, const char *name) {
    int v = fu_graph_find_value(b->g, name);
    if (v < 0) fail_msg("tb_val: no value '%s'", name);
    return v;
}

/* Node reading values by name, comma-separated ("q,k,v,,,,sinks": an empty
 * name is an omitted input), for test tables. */
static inline int tb_op_names(tb_graph *b, const char *op, const char *out, const char *inputs) {
    int in[32], n = 0;
    for (const char *p = inputs;; n++) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char name[128];
        if (n == 32 || len >= sizeof name) fail_msg("tb_op_names: '%s'", inputs);
        memcpy(name, p, len);
        name[len] = 0;
        in[n] = len ? tb_val(b, name) : TB_NONE;
        if (!comma) break;
        p = comma + 1;
    }
    return tb_node(b, op, out, n + 1, in);
}

static inline fu_node *tb_producer_(tb_graph *b, int v) {
    tb_check_(b, v, "attribute");
    int k = b->g->values[v].producer;
    if (k < 0) fail_msg("tb: '%s' is not a node output", b->g->values[v].name);
    return &b->g->nodes[k];
}

/* Attribute setters act on the node producing v and return v. */
static inline int tb_attr_int(tb_graph *b, int v, const char *name, int64_t x) {
    fu_node_set_attr_int(tb_producer_(b, v), name, x);
    return v;
}

static inline int tb_attr_float(tb_graph *b, int v, const char *name, double x) {
    fu_node_set_attr_float(tb_producer_(b, v), name, x);
    return v;
}

static inline int tb_attr_str(tb_graph *b, int v, const char *name, const char *s) {
    fu_node_set_attr_string(tb_producer_(b, v), name, s);
    return v;
}

static inline int tb_attr_ints(tb_graph *b, int v, const char *name, int n, const int64_t *x) {
    fu_node_set_attr_ints(tb_producer_(b, v), name, n, x);
    return v;
}

static inline int tb_attr_floats(tb_graph *b, int v, const char *name, int n, const double *x) {
    fu_attr *a = fu_node_set_attr_ints(tb_producer_(b, v), name, 0, NULL);
    if (a) free(a->ints), a->ints = NULL;
    if (!a || !(a->floats = malloc(sizeof(double) * (size_t)(n ? n : 1)))) fail_msg("tb_attr_floats: out of memory");
    a->kind = FU_ATTR_FLOATS;
    a->n = n;
    if (n) memcpy(a->floats, x, sizeof(double) * (size_t)n);
    return v;
}

/* Tensor attribute (ConstantOfShape's value) from raw bytes of dtype t. */
static inline int tb_attr_tensor(tb_graph *b, int v, const char *name, fu_dtype t, int rank, const int64_t *dims,
                                 const void *bytes) {
    fu_attr *a = fu_node_set_attr_ints(tb_producer_(b, v), name, 0, NULL);
    if (a) free(a->ints), a->ints = NULL;
    size_t nb = (size_t)tb_numel_(rank, dims) * fu_dtype_size(t);
    if (!a || !(a->t_data = malloc(nb ? nb : 1))) fail_msg("tb_attr_tensor: out of memory");
    a->kind = FU_ATTR_TENSOR;
    a->t_dtype = t;
    a->t_rank = rank;
    for (int i = 0; i < rank; i++) a->t_shape[i] = dims[i];
    memcpy(a->t_data, bytes, nb);
    return v;
}

/* Names the node producing v. */
static inline int tb_name(tb_graph *b, int v, const char *node_name) {
    fu_node *n = tb_producer_(b, v);
    free(n->name);
    if (!(n->name = strdup(node_name))) fail_msg("tb_name: out of memory");
    return v;
}

/* ---- outputs and saving -------------------------------------------------------- */

static inline void tb_output(tb_graph *b, int v) {
    fu_graph *g = b->g;
    tb_check_(b, v, "output");
    int *out = realloc(g->outputs, sizeof(int) * (size_t)(g->n_outputs + 1));
    if (!out) fail_msg("tb_output: out of memory");
    g->outputs = out;
    g->outputs[g->n_outputs++] = v;
    g->values[v].is_output = 1;
}

/* An output with a declared dtype and shape (rank -1: dtype only), checked
 * by fu_infer. */
static inline void tb_output_decl(tb_graph *b, int v, fu_dtype t, int rank, const int64_t *dims) {
    tb_output(b, v);
    fu_value *val = &b->g->values[v];
    val->decl_dtype = t;
    val->decl_rank = rank;
    for (int i = 0; i < rank; i++) val->decl_shape[i] = tb_dim_(b, dims[i]);
}

/* The weights file tb_save writes for `model_path`: its .json swapped for
 * .safetensors. */
static inline void tb_weights_path_(const char *model_path, char *out, size_t n) {
    size_t len = strlen(model_path);
    if (len > 5 && !strcmp(model_path + len - 5, ".json")) len -= 5;
    snprintf(out, n, "%.*s.safetensors", (int)len, model_path);
}

static inline void tb_write_weights_(tb_graph *b, const char *model_path) {
    fu_graph *g = b->g;
    static const char *const st[] = {[FU_F32] = "F32", [FU_F16] = "F16", [FU_BF16] = "BF16",
                                     [FU_I64] = "I64", [FU_I32] = "I32", [FU_BOOL] = "BOOL"};
    char *header = NULL;
    size_t len = 0, off = 0;
    int any = 0;
    FILE *h = open_memstream(&header, &len);
    if (!h) fail_msg("tb_save: out of memory");
    for (int i = 0; i < g->n_values; i++) {
        const fu_value *v = &g->values[i];
        if (v->kind != FU_VAL_CONST || !v->external || !v->data) continue;
        fprintf(h, "%s\"%s\": {\"dtype\": \"%s\", \"shape\": [", any ? ", " : "{", v->name, st[v->dtype]);
        any = 1;
        for (int d = 0; d < v->rank; d++) fprintf(h, "%s%lld", d ? ", " : "", (long long)v->shape[d].coef);
        fprintf(h, "], \"data_offsets\": [%zu, %zu]}", off, off + v->nbytes);
        off += v->nbytes;
    }
    if (any) fputc('}', h);
    fclose(h);
    if (!any) {
        free(header);
        return;
    }
    char wpath[512];
    tb_weights_path_(model_path, wpath, sizeof wpath);
    FILE *f = fopen(wpath, "wb");
    if (!f) fail_msg("tb_save: cannot write %s", wpath);
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)len >> (8 * i));
    fwrite(len8, 1, 8, f);
    fwrite(header, 1, len, f);
    free(header);
    for (int i = 0; i < g->n_values; i++) {
        const fu_value *v = &g->values[i];
        if (v->kind == FU_VAL_CONST && v->external && v->data) fwrite(v->data, 1, v->nbytes, f);
    }
    if (fclose(f)) fail_msg("tb_save: cannot write %s", wpath);
    const char *slash = strrchr(wpath, '/');
    tb_weights_file(b, slash ? slash + 1 : wpath);
}

/* Writes the model (and its tb_weight tensors) to `path` through fu_ir_write. */
static inline void tb_save_to(tb_graph *b, const char *path) {
    tb_write_weights_(b, path);
    FILE *f = fopen(path, "w");
    if (!f) fail_msg("tb_save: cannot write %s", path);
    fu_err err = {0};
    if (fu_ir_write(b->g, f, &err)) fail_msg("tb_save: %s", err.msg);
    if (fclose(f)) fail_msg("tb_save: cannot write %s", path);
}

/* Writes the model to a fresh temp file; returns its malloc'd path. */
static inline char *tb_save(tb_graph *b) {
    static int counter;
    char *path = malloc(256);
    if (!path) fail_msg("tb_save: out of memory");
    snprintf(path, 256, "/tmp/fusec_tb_%d_%d.json", (int)getpid(), counter++);
    tb_save_to(b, path);
    return path;
}

/* Deletes a model tb_save wrote (and its weights file), frees the path. */
static inline void tb_remove(char *path) {
    char wpath[512];
    tb_weights_path_(path, wpath, sizeof wpath);
    unlink(wpath);
    unlink(path);
    free(path);
}

/* Hands over the in-memory graph, as the reader would have made it, for
 * tests that only run passes on it (unread constants stay); frees the
 * builder. */
static inline fu_graph *tb_take(tb_graph *b) {
    fu_graph *g = b->g;
    free(b);
    return g;
}

/* Saves and reads the model back with fu_ir_load (files removed again). */
static inline fu_graph *tb_load(tb_graph *b) {
    char *path = tb_save(b);
    fu_err err = {0};
    fu_graph *g = fu_ir_load(path, &err);
    tb_remove(path);
    if (!g) fail_msg("tb_load: %s", err.msg);
    return g;
}

#endif
