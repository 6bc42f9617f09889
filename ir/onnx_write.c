/* ONNX writer: fu_graph -> ModelProto, encoded by protoc-c's generated
 * onnx.pb-c.c. See ir/onnx_write.h and docs/onnx_export.md.
 *
 * Every message, string and array built here is allocated from one list
 * (writer.allocs) and freed in one go once the model is packed; constant
 * data is not copied (raw_data points into the graph's values). */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "onnx.pb-c.h"
#include "onnx_write.h"
#include "op_ids.h"
#include "weights.h"

#define OPSET 23
#define IR_VERSION 10
#define FUSEC_DOMAIN "fusec"

typedef struct {
    const fu_graph *g;
    const char *out;
    fu_err *err;
    const char *location;       /* external data file, relative to the .onnx folder */
    void **allocs;
    size_t n_allocs, cap_allocs;
    int oom;
    /* the graph's nodes, initializers and functions under construction */
    Onnx__NodeProto **nodes;
    size_t n_nodes, cap_nodes;
    Onnx__TensorProto **inits;
    size_t n_inits, cap_inits;
    Onnx__FunctionProto **funcs;
    size_t n_funcs, cap_funcs;
    char *const_needed;         /* per value: written as an initializer */
    /* cos/sin caches made from a RotaryEmbedding's inv_freq, shared by the
     * nodes with the same inv_freq, pos_offset, amplitude and length */
    struct rope_cache {
        int inv_freq;
        int64_t pos_offset, max_pos;
        double amplitude;
        const char *cos, *sin;
    } caches[16];
    int n_caches;
    int fresh;                  /* counter for names the writer makes */
} writer;

/* ---- allocation ------------------------------------------------------- */

static void *w_alloc(writer *w, size_t n) {
    void *p = calloc(1, n ? n : 1);
    if (!p) {
        w->oom = 1;
        return NULL;
    }
    if (w->n_allocs == w->cap_allocs) {
        size_t cap = w->cap_allocs ? 2 * w->cap_allocs : 256;
        void **a = realloc(w->allocs, sizeof(void *) * cap);
        if (!a) {
            free(p);
            w->oom = 1;
            return NULL;
        }
        w->allocs = a;
        w->cap_allocs = cap;
    }
    w->allocs[w->n_allocs++] = p;
    return p;
}

static char *w_str(writer *w, const char *s) {
    size_t n = strlen(s ? s : "");
    char *p = w_alloc(w, n + 1);
    if (p && n) memcpy(p, s, n);
    return p;
}

static char *w_fmt(writer *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *w_fmt(writer *w, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return w_str(w, buf);
}

/* Appends p to a growable array of pointers. */
static void push(writer *w, void ***arr, size_t *n, size_t *cap, void *p) {
    if (!p) return;
    if (*n == *cap) {
        size_t c = *cap ? 2 * *cap : 64;
        void **a = realloc(*arr, sizeof(void *) * c);
        if (!a) {
            w->oom = 1;
            return;
        }
        *arr = a;
        *cap = c;
    }
    (*arr)[(*n)++] = p;
}

static void free_all(writer *w) {
    for (size_t i = 0; i < w->n_funcs; i++) free(w->funcs[i]->node);   /* grown by push, not w_alloc */
    for (size_t i = 0; i < w->n_allocs; i++) free(w->allocs[i]);
    free(w->allocs);
    free(w->nodes);
    free(w->inits);
    free(w->funcs);
    free(w->const_needed);
}

/* ---- types -------------------------------------------------------------- */

static int32_t onnx_type(fu_dtype t) {
    switch (t) {
    case FU_F32: return ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    case FU_F16: return ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16;
    case FU_BF16: return ONNX__TENSOR_PROTO__DATA_TYPE__BFLOAT16;
    case FU_I64: return ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
    case FU_I32: return ONNX__TENSOR_PROTO__DATA_TYPE__INT32;
    case FU_BOOL: return ONNX__TENSOR_PROTO__DATA_TYPE__BOOL;
    default: return ONNX__TENSOR_PROTO__DATA_TYPE__UNDEFINED;
    }
}

static Onnx__ValueInfoProto *value_info(writer *w, const fu_value *v, fu_dtype dt, int rank, const fu_dim *shape) {
    Onnx__ValueInfoProto *vi = w_alloc(w, sizeof *vi);
    Onnx__TypeProto *tp = w_alloc(w, sizeof *tp);
    Onnx__TypeProto__Tensor *tt = w_alloc(w, sizeof *tt);
    if (!vi || !tp || !tt) return NULL;
    onnx__value_info_proto__init(vi);
    onnx__type_proto__init(tp);
    onnx__type_proto__tensor__init(tt);
    vi->name = w_str(w, v->name);
    vi->type = tp;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    tt->has_elem_type = 1;
    tt->elem_type = onnx_type(dt);
    if (rank < 0) return vi;
    Onnx__TensorShapeProto *sp = w_alloc(w, sizeof *sp);
    Onnx__TensorShapeProto__Dimension **dims = w_alloc(w, sizeof(void *) * (size_t)(rank + 1));
    if (!sp || !dims) return NULL;
    onnx__tensor_shape_proto__init(sp);
    sp->n_dim = (size_t)rank;
    sp->dim = dims;
    for (int d = 0; d < rank; d++) {
        Onnx__TensorShapeProto__Dimension *dm = w_alloc(w, sizeof *dm);
        if (!dm) return NULL;
        onnx__tensor_shape_proto__dimension__init(dm);
        if (fu_dim_is_const(shape[d])) {
            dm->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            dm->dim_value = shape[d].coef;
        } else {
            char text[128];
            fu_dim_str(w->g, shape[d], text, sizeof text);
            dm->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            dm->dim_param = w_str(w, text);
        }
        dims[d] = dm;
    }
    tt->shape = sp;
    return vi;
}

/* ---- tensors ------------------------------------------------------------ */

static Onnx__TensorProto *tensor(writer *w, const char *name, fu_dtype dt, int rank, const int64_t *shape) {
    Onnx__TensorProto *t = w_alloc(w, sizeof *t);
    int64_t *dims = w_alloc(w, sizeof(int64_t) * (size_t)(rank + 1));
    if (!t || !dims) return NULL;
    onnx__tensor_proto__init(t);
    t->name = w_str(w, name);
    t->has_data_type = 1;
    t->data_type = onnx_type(dt);
    t->n_dims = (size_t)rank;
    if (rank) memcpy(dims, shape, sizeof(int64_t) * (size_t)rank);
    t->dims = dims;
    return t;
}

/* A tensor holding a copy of data (made here: a writer constant). */
static Onnx__TensorProto *tensor_copy(writer *w, const char *name, fu_dtype dt, int rank, const int64_t *shape,
                                      const void *data, size_t nbytes) {
    Onnx__TensorProto *t = tensor(w, name, dt, rank, shape);
    void *buf = w_alloc(w, nbytes);
    if (!t || !buf) return NULL;
    if (nbytes) memcpy(buf, data, nbytes);
    t->has_raw_data = 1;
    t->raw_data.data = buf;
    t->raw_data.len = nbytes;
    return t;
}

static Onnx__StringStringEntryProto *entry(writer *w, const char *key, const char *value) {
    Onnx__StringStringEntryProto *e = w_alloc(w, sizeof *e);
    if (!e) return NULL;
    onnx__string_string_entry_proto__init(e);
    e->key = w_str(w, key);
    e->value = w_str(w, value);
    return e;
}

/* The initializer of constant value vi: raw_data, or external data for a
 * weight mapped from the safetensors file. */
static int const_tensor(writer *w, int vi) {
    const fu_graph *g = w->g;
    const fu_value *v = &g->values[vi];
    int64_t shape[FU_MAX_RANK];
    for (int d = 0; d < v->rank; d++) {
        if (!fu_dim_is_const(v->shape[d]))
            return fu_fail(w->err, "%s: constant '%s' has a symbolic shape", w->out, fu_safe(v->name).s);
        shape[d] = v->shape[d].coef;
    }
    if (onnx_type(v->dtype) == ONNX__TENSOR_PROTO__DATA_TYPE__UNDEFINED)
        return fu_fail(w->err, "%s: constant '%s' has no dtype", w->out, fu_safe(v->name).s);
    Onnx__TensorProto *t = tensor(w, v->name, v->dtype, v->rank < 0 ? 0 : v->rank, shape);
    if (!t) return -1;
    uint64_t off;
    if (v->external && g->weights && v->data && fu_weights_range(g->weights, v->data, v->nbytes, &off) == 0) {
        char o[32], l[32];
        snprintf(o, sizeof o, "%llu", (unsigned long long)off);
        snprintf(l, sizeof l, "%llu", (unsigned long long)v->nbytes);
        Onnx__StringStringEntryProto **ed = w_alloc(w, sizeof(void *) * 3);
        if (!ed) return -1;
        ed[0] = entry(w, "location", w->location);
        ed[1] = entry(w, "offset", o);
        ed[2] = entry(w, "length", l);
        t->n_external_data = 3;
        t->external_data = ed;
        t->has_data_location = 1;
        t->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    } else {
        if (!v->data && v->nbytes)
            return fu_fail(w->err, "%s: constant '%s' has no data to write", w->out, fu_safe(v->name).s);
        t->has_raw_data = 1;
        t->raw_data.data = v->data;   /* not copied: the graph outlives the packing */
        t->raw_data.len = v->nbytes;
    }
    push(w, (void ***)&w->inits, &w->n_inits, &w->cap_inits, t);
    return 0;
}

/* ---- nodes -------------------------------------------------------------- */

static Onnx__AttributeProto *attr_new(writer *w, const char *name, Onnx__AttributeProto__AttributeType type) {
    Onnx__AttributeProto *a = w_alloc(w, sizeof *a);
    if (!a) return NULL;
    onnx__attribute_proto__init(a);
    a->name = w_str(w, name);
    a->has_type = 1;
    a->type = type;
    return a;
}

static Onnx__AttributeProto *attr_int(writer *w, const char *name, int64_t i) {
    Onnx__AttributeProto *a = attr_new(w, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    if (a) a->has_i = 1, a->i = i;
    return a;
}

static Onnx__AttributeProto *attr_float(writer *w, const char *name, double f) {
    Onnx__AttributeProto *a = attr_new(w, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    if (a) a->has_f = 1, a->f = (float)f;
    return a;
}

static Onnx__AttributeProto *attr_ints(writer *w, const char *name, int n, const int64_t *v) {
    Onnx__AttributeProto *a = attr_new(w, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    int64_t *p = w_alloc(w, sizeof(int64_t) * (size_t)(n + 1));
    if (!a || !p) return NULL;
    if (n) memcpy(p, v, sizeof(int64_t) * (size_t)n);
    a->n_ints = (size_t)n;
    a->ints = p;
    return a;
}

static Onnx__AttributeProto *attr_string(writer *w, const char *name, const char *s) {
    Onnx__AttributeProto *a = attr_new(w, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);
    if (!a) return NULL;
    a->has_s = 1;
    a->s.data = (uint8_t *)w_str(w, s);
    a->s.len = strlen(s);
    return a;
}

/* A fusec attribute as an ONNX one. */
static Onnx__AttributeProto *attr_copy(writer *w, const fu_attr *fa) {
    switch (fa->kind) {
    case FU_ATTR_INT: return attr_int(w, fa->name, fa->i);
    case FU_ATTR_FLOAT: return attr_float(w, fa->name, fa->f);
    case FU_ATTR_INTS: return attr_ints(w, fa->name, fa->n, fa->ints);
    case FU_ATTR_STRING: return attr_string(w, fa->name, fa->s ? fa->s : "");
    case FU_ATTR_FLOATS: {
        Onnx__AttributeProto *a = attr_new(w, fa->name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS);
        float *p = w_alloc(w, sizeof(float) * (size_t)(fa->n + 1));
        if (!a || !p) return NULL;
        for (int i = 0; i < fa->n; i++) p[i] = (float)fa->floats[i];
        a->n_floats = (size_t)fa->n;
        a->floats = p;
        return a;
    }
    case FU_ATTR_TENSOR: {
        Onnx__AttributeProto *a = attr_new(w, fa->name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR);
        int64_t numel = 1;
        for (int i = 0; i < fa->t_rank; i++) numel *= fa->t_shape[i];
        if (!a) return NULL;
        a->t = tensor_copy(w, "", fa->t_dtype, fa->t_rank, fa->t_shape, fa->t_data,
                           fa->t_data ? (size_t)numel * fu_dtype_size(fa->t_dtype) : 0);
        return a->t ? a : NULL;
    }
    }
    return NULL;
}

typedef struct {
    Onnx__NodeProto ***arr;
    size_t *n, *cap;
} node_list;

/* A node with the given input and output names (NULL entries: omitted ""). */
static Onnx__NodeProto *node_add(writer *w, node_list l, const char *name, const char *domain, const char *op,
                                 int n_in, const char *const *in, int n_out, const char *const *out) {
    Onnx__NodeProto *n = w_alloc(w, sizeof *n);
    char **ins = w_alloc(w, sizeof(char *) * (size_t)(n_in + 1));
    char **outs = w_alloc(w, sizeof(char *) * (size_t)(n_out + 1));
    if (!n || !ins || !outs) return NULL;
    onnx__node_proto__init(n);
    n->name = w_str(w, name);
    n->op_type = w_str(w, op);
    if (domain) n->domain = w_str(w, domain);
    for (int i = 0; i < n_in; i++) ins[i] = w_str(w, in[i] ? in[i] : "");
    for (int i = 0; i < n_out; i++) outs[i] = w_str(w, out[i]);
    n->n_input = (size_t)n_in;
    n->input = ins;
    n->n_output = (size_t)n_out;
    n->output = outs;
    push(w, (void ***)l.arr, l.n, l.cap, n);
    return n;
}

static void node_attr(writer *w, Onnx__NodeProto *n, Onnx__AttributeProto *a) {
    if (!n || !a) {
        w->oom = 1;
        return;
    }
    Onnx__AttributeProto **p = w_alloc(w, sizeof(void *) * (n->n_attribute + 1));
    if (!p) return;
    if (n->n_attribute) memcpy(p, n->attribute, sizeof(void *) * n->n_attribute);
    p[n->n_attribute++] = a;
    n->attribute = p;
}

static node_list graph_nodes(writer *w) { return (node_list){&w->nodes, &w->n_nodes, &w->cap_nodes}; }

/* The name of value vi as a node input; marks a constant as needed. */
static const char *use(writer *w, int vi) {
    if (vi < 0) return NULL;
    if (w->g->values[vi].kind == FU_VAL_CONST) w->const_needed[vi] = 1;
    return w->g->values[vi].name;
}

/* A fresh value name for a tensor the writer adds around fused node k. */
static const char *fresh(writer *w, int k, const char *what) {
    for (;;) {
        char *s = w_fmt(w, "%s/onnx_export/%s_%d", w->g->nodes[k].name ? w->g->nodes[k].name : "node", what, w->fresh++);
        if (!s) return "";
        if (fu_graph_find_value(w->g, s) < 0) return s;
    }
}

/* A writer-made initializer (int64 vector or float32 data); its name. */
static const char *const_i64(writer *w, int k, const char *what, int n, const int64_t *v, int scalar) {
    const char *name = fresh(w, k, what);
    int64_t len = n;
    push(w, (void ***)&w->inits, &w->n_inits, &w->cap_inits,
         tensor_copy(w, name, FU_I64, scalar ? 0 : 1, &len, v, sizeof(int64_t) * (size_t)n));
    return name;
}

static const char *const_f32(writer *w, int k, const char *what, int rank, const int64_t *shape, const float *v) {
    const char *name = fresh(w, k, what);
    int64_t numel = 1;
    for (int i = 0; i < rank; i++) numel *= shape[i];
    push(w, (void ***)&w->inits, &w->n_inits, &w->cap_inits,
         tensor_copy(w, name, FU_F32, rank, shape, v, sizeof(float) * (size_t)numel));
    return name;
}

/* out = op(in...) for a helper node of fused node k; returns out. */
static const char *helper(writer *w, int k, const char *op, int n_in, const char *const *in, Onnx__NodeProto **np) {
    const char *out = fresh(w, k, op);
    char *name = w_fmt(w, "%s/onnx_export/%s_%d", w->g->nodes[k].name ? w->g->nodes[k].name : "node", op, w->fresh++);
    Onnx__NodeProto *n = node_add(w, graph_nodes(w), name ? name : "", NULL, op, n_in, in, 1, &out);
    if (np) *np = n;
    return out;
}

static const char *reshape(writer *w, int k, const char *x, int n, const int64_t *shape) {
    const char *in[2] = {x, const_i64(w, k, "shape", n, shape, 0)};
    return helper(w, k, "Reshape", 2, in, NULL);
}

static const char *transpose(writer *w, int k, const char *x, int n, const int64_t *perm) {
    Onnx__NodeProto *np;
    const char *out = helper(w, k, "Transpose", 1, &x, &np);
    node_attr(w, np, attr_ints(w, "perm", n, perm));
    return out;
}

static const int64_t SWAP12[4] = {0, 2, 1, 3};

/* A node copied as is: same op, inputs, outputs and attributes, except the
 * attributes in skip (NULL-terminated; fusec's own). */
static Onnx__NodeProto *copy_node(writer *w, int k, const char *domain, const char *op, const char *const *skip,
                                  int n_in) {
    const fu_node *n = &w->g->nodes[k];
    const char *in[16], *out[16];
    if (n_in > 16 || n->n_out > 16) {
        fu_node_fail(w->err, w->g, n, "too many inputs or outputs to export");
        return NULL;
    }
    for (int i = 0; i < n_in; i++) in[i] = use(w, n->in[i]);
    for (int i = 0; i < n->n_out; i++) out[i] = w->g->values[n->out[i]].name;
    Onnx__NodeProto *np = node_add(w, graph_nodes(w), n->name, domain, op, n_in, in, n->n_out, out);
    for (int a = 0; a < n->n_attrs && np; a++) {
        int skipped = 0;
        for (int s = 0; skip && skip[s]; s++) skipped |= strcmp(skip[s], n->attrs[a].name) == 0;
        if (!skipped) node_attr(w, np, attr_copy(w, &n->attrs[a]));
    }
    if (!np) fu_fail(w->err, "%s: out of memory", w->out);
    return np;
}

static int static_dim(writer *w, int k, fu_dim d, const char *what, int64_t *out) {
    if (!fu_dim_is_const(d)) return fu_node_fail(w->err, w->g, &w->g->nodes[k], "%s must be static to export", what);
    *out = d.coef;
    return 0;
}

/* ---- fused ops ---------------------------------------------------------- */

/* RMSNormalization / LayerNormalization: ONNX requires scale; fusec's
 * optional scale becomes a vector of ones. */
static int export_norm(writer *w, int k) {
    const fu_node *n = &w->g->nodes[k];
    if (n->n_in >= 2 && n->in[1] >= 0) return copy_node(w, k, NULL, n->op, NULL, n->n_in) ? 0 : -1;
    const fu_value *x = &w->g->values[n->in[0]];
    int64_t c = 0;
    if (static_dim(w, k, x->shape[x->rank - 1], "the normalised dim", &c)) return -1;
    float *ones = malloc(sizeof(float) * (size_t)c);
    if (!ones) return fu_fail(w->err, "%s: out of memory", w->out);
    for (int64_t i = 0; i < c; i++) ones[i] = 1.0f;
    const char *in[3] = {use(w, n->in[0]), const_f32(w, k, "scale", 1, &c, ones), n->n_in > 2 ? use(w, n->in[2]) : NULL};
    free(ones);
    const char *out = w->g->values[n->out[0]].name;
    Onnx__NodeProto *np = node_add(w, graph_nodes(w), n->name, NULL, n->op, n->n_in > 2 ? 3 : 2, in, 1, &out);
    for (int a = 0; a < n->n_attrs && np; a++) node_attr(w, np, attr_copy(w, &n->attrs[a]));
    return 0;
}

/* X [B, S, H, D] (BSHD) or [B, H, S, D] (BHSD) as [B, S, H*D]. */
static const char *to_3d(writer *w, int k, const char *x, int bshd) {
    static const int64_t flat[3] = {0, 0, -1};
    if (!bshd) x = transpose(w, k, x, 4, SWAP12);
    return reshape(w, k, x, 3, flat);
}

/* y3 [B, S, H*D] back to 4-D in the given layout, written to name out. */
static void from_3d(writer *w, int k, const char *y3, int64_t h, int64_t d, int bshd, const char *out) {
    int64_t shape[4] = {0, 0, h, d};
    const char *in[2] = {y3, const_i64(w, k, "shape", 4, shape, 0)};
    if (bshd) {
        char *name = w_fmt(w, "%s/onnx_export/Reshape_out", w->g->nodes[k].name);
        node_add(w, graph_nodes(w), name ? name : "", NULL, "Reshape", 2, in, 1, &out);
        return;
    }
    const char *y4 = helper(w, k, "Reshape", 2, in, NULL);
    char *name = w_fmt(w, "%s/onnx_export/Transpose_out", w->g->nodes[k].name);
    Onnx__NodeProto *np = node_add(w, graph_nodes(w), name ? name : "", NULL, "Transpose", 1, &y4, 1, &out);
    node_attr(w, np, attr_ints(w, "perm", 4, SWAP12));
}

/* position_ids [B, S] = pos_offset + arange(S) for x3 [B, S, *]. */
static const char *positions(writer *w, int k, const char *x3, int64_t pos_offset) {
    Onnx__NodeProto *np;
    const char *bs = helper(w, k, "Shape", 1, &x3, &np);
    node_attr(w, np, attr_int(w, "end", 2));
    const char *s1 = helper(w, k, "Shape", 1, &x3, &np);
    node_attr(w, np, attr_int(w, "start", 1));
    node_attr(w, np, attr_int(w, "end", 2));
    int64_t zero = 0, one = 1;
    const char *sq_in[2] = {s1, const_i64(w, k, "axes", 1, &zero, 0)};
    const char *s = helper(w, k, "Squeeze", 2, sq_in, NULL);
    const char *start = const_i64(w, k, "start", 1, &pos_offset, 1);
    const char *add_in[2] = {s, start};
    const char *limit = helper(w, k, "Add", 2, add_in, NULL);
    const char *range_in[3] = {start, limit, const_i64(w, k, "delta", 1, &one, 1)};
    const char *r = helper(w, k, "Range", 3, range_in, NULL);
    const char *un_in[2] = {r, const_i64(w, k, "axes", 1, &zero, 0)};
    const char *r2 = helper(w, k, "Unsqueeze", 2, un_in, NULL);
    const char *ex_in[2] = {r2, bs};
    return helper(w, k, "Expand", 2, ex_in, NULL);
}

static int export_rotary(writer *w, int k) {
    const fu_graph *g = w->g;
    const fu_node *n = &g->nodes[k];
    const fu_value *x = &g->values[n->in[0]];
    int has_pos = n->n_in > 3 && n->in[3] >= 0, has_freq = n->n_in > 4 && n->in[4] >= 0;
    int64_t pos_offset = fu_attr_int(n, "pos_offset", 0);
    double amplitude = fu_attr_float(n, "amplitude", 1.0);
    int bshd = strcmp(fu_attr_string(n, "layout", "BHSD"), "BSHD") == 0;
    const fu_value *cos = has_freq ? NULL : &g->values[n->in[1]];
    int cache_2d = cos && cos->rank == 2;
    int pos_ok = !has_pos || g->values[n->in[3]].rank == 2;
    /* ONNX's own form: no fusec attribute or input in play */
    if (!has_freq && !bshd && pos_offset == 0 && amplitude == 1.0 && pos_ok && (has_pos || !cache_2d)) {
        static const char *const skip[] = {"layout", "pos_offset", "amplitude", NULL};
        return copy_node(w, k, NULL, "RotaryEmbedding", skip, n->n_in > 4 ? 4 : n->n_in) ? 0 : -1;
    }
    if (!has_pos && !has_freq && !cache_2d) pos_offset = 0;   /* per-row caches ignore it */
    int64_t h = 0, d = 0;
    const char *x3;
    if (x->rank == 4) {
        if (static_dim(w, k, x->shape[bshd ? 2 : 1], "the head count", &h) ||
            static_dim(w, k, x->shape[3], "the head size", &d))
            return -1;
        x3 = to_3d(w, k, use(w, n->in[0]), bshd);
    } else {
        h = fu_attr_int(n, "num_heads", 0);
        int64_t hidden = 0;
        if (h <= 0 || static_dim(w, k, x->shape[2], "the hidden size", &hidden)) 
            return h <= 0 ? fu_node_fail(w->err, g, n, "3-D X needs num_heads") : -1;
        d = hidden / h;
        x3 = use(w, n->in[0]);
    }
    const char *cos_name, *sin_name;
    if (has_freq) {
        const fu_value *f = &g->values[n->in[4]];
        if (f->kind != FU_VAL_CONST || !f->data || f->dtype != FU_F32)
            return fu_node_fail(w->err, g, n, "inv_freq must be a float32 constant to export (ONNX takes cos/sin caches)");
        if (has_pos)
            return fu_node_fail(w->err, g, n, "inv_freq with position_ids is not exported (the largest position is unknown)");
        fu_dim s = x->rank == 4 ? x->shape[bshd ? 1 : 2] : x->shape[1];
        int64_t max_pos = pos_offset + fu_dim_eval(s, g->sym_max);
        int64_t half = (int64_t)(f->nbytes / sizeof(float));
        for (int i = 0; i < w->n_caches; i++) {
            const struct rope_cache *rc = &w->caches[i];
            if (rc->inv_freq == n->in[4] && rc->pos_offset == pos_offset && rc->max_pos == max_pos &&
                rc->amplitude == amplitude) {
                cos_name = rc->cos, sin_name = rc->sin;
                goto have_caches;
            }
        }
        if (max_pos <= 0 || max_pos > ((int64_t)1 << 24) / (half ? half : 1))
            return fu_node_fail(w->err, g, n, "the cos/sin caches would have %lld rows", (long long)max_pos);
        float *c = malloc(sizeof(float) * (size_t)(max_pos * half)), *sn = malloc(sizeof(float) * (size_t)(max_pos * half));
        if (!c || !sn) {
            free(c), free(sn);
            return fu_fail(w->err, "%s: out of memory", w->out);
        }
        const float *inv = f->data;
        for (int64_t p = 0; p < max_pos; p++)
            for (int64_t i = 0; i < half; i++) {
                float angle = (float)p * inv[i];   /* as fu_rt_rope_f32 computes it */
                c[p * half + i] = cosf(angle) * (float)amplitude;
                sn[p * half + i] = sinf(angle) * (float)amplitude;
            }
        int64_t shape[2] = {max_pos, half};
        cos_name = const_f32(w, k, "cos_cache", 2, shape, c);
        sin_name = const_f32(w, k, "sin_cache", 2, shape, sn);
        free(c), free(sn);
        if (w->n_caches < (int)(sizeof w->caches / sizeof w->caches[0]))
            w->caches[w->n_caches++] = (struct rope_cache){n->in[4], pos_offset, max_pos, amplitude, cos_name, sin_name};
    have_caches:
        cache_2d = 1;
    } else {
        if (amplitude != 1.0) return fu_node_fail(w->err, g, n, "amplitude applies to inv_freq only");
        cos_name = use(w, n->in[1]);
        sin_name = use(w, n->in[2]);
    }
    const char *pos = NULL;
    if (has_pos) {
        pos = use(w, n->in[3]);
        if (g->values[n->in[3]].rank == 1) {
            Onnx__NodeProto *np;
            const char *bs = helper(w, k, "Shape", 1, &x3, &np);
            node_attr(w, np, attr_int(w, "end", 2));
            const char *ex_in[2] = {pos, bs};
            pos = helper(w, k, "Expand", 2, ex_in, NULL);
        }
    } else if (cache_2d) {
        pos = positions(w, k, x3, pos_offset);
    }
    const char *in[4] = {x3, cos_name, sin_name, pos};
    const char *y = x->rank == 4 ? fresh(w, k, "Y3") : g->values[n->out[0]].name;
    Onnx__NodeProto *np = node_add(w, graph_nodes(w), n->name, NULL, "RotaryEmbedding", pos ? 4 : 3, in, 1, &y);
    node_attr(w, np, attr_int(w, "num_heads", h));
    node_attr(w, np, attr_int(w, "interleaved", fu_attr_int(n, "interleaved", 0)));
    int64_t rot = fu_attr_int(n, "rotary_embedding_dim", 0);
    if (rot) node_attr(w, np, attr_int(w, "rotary_embedding_dim", rot));
    if (x->rank == 4) from_3d(w, k, y, h, d, bshd, g->values[n->out[0]].name);
    return 0;
}

static int parse_layout(const char *s, int len) {
    if (len == 4 && !strncmp(s, "BSHD", 4)) return 1;
    return 0;
}

static int export_attention(writer *w, int k) {
    const fu_graph *g = w->g;
    const fu_node *n = &g->nodes[k];
    if ((n->n_in > 6 && n->in[6] >= 0) || (n->n_in > 7 && n->in[7] >= 0))
        return fu_node_fail(w->err, g, n, "sinks and q_positions (fusec inputs 6, 7) have no ONNX Attention equivalent; "
                            "export before prune_rows");
    const fu_value *q = &g->values[n->in[0]], *kk = &g->values[n->in[1]];
    int qlen = q->rank == 4 ? 2 : 1;
    if (fu_attr_int(n, "is_causal", 0) && !fu_dim_eq(q->shape[qlen], kk->shape[qlen]) && q->rank == 3)
        return fu_node_fail(w->err, g, n, "causal attention with different query and key lengths is not exported");
    /* layouts */
    const char *ls = fu_attr_string(n, "qkv_layout", "BHSD");
    int lay[3];
    const char *c1 = strchr(ls, ',');
    if (c1) {
        const char *c2 = strchr(c1 + 1, ',');
        lay[0] = parse_layout(ls, (int)(c1 - ls));
        lay[1] = parse_layout(c1 + 1, c2 ? (int)(c2 - c1 - 1) : 0);
        lay[2] = c2 ? parse_layout(c2 + 1, (int)strlen(c2 + 1)) : 0;
    } else {
        lay[0] = lay[1] = lay[2] = parse_layout(ls, (int)strlen(ls));
    }
    int out_bshd = strcmp(fu_attr_string(n, "out_layout", "BHSD"), "BSHD") == 0;
    static const char *const skip[] = {"qkv_layout", "out_layout", NULL};
    if (q->rank != 4 || (!lay[0] && !lay[1] && !lay[2] && !out_bshd)) {
        if (q->rank == 4 && fu_attr_int(n, "is_causal", 0) && !fu_dim_eq(q->shape[2], kk->shape[2]))
            return fu_node_fail(w->err, g, n, "causal attention with different query and key lengths is not exported");
        return copy_node(w, k, NULL, "Attention", skip, n->n_in > 4 ? 4 : n->n_in) ? 0 : -1;
    }
    /* 4-D with a BSHD tensor: the 3-D form [B, S, H*D] with head counts */
    int64_t hq = 0, hkv = 0, dv = 0;
    const fu_value *v = &g->values[n->in[2]];
    if (static_dim(w, k, q->shape[lay[0] ? 2 : 1], "the query head count", &hq) ||
        static_dim(w, k, kk->shape[lay[1] ? 2 : 1], "the key head count", &hkv) ||
        static_dim(w, k, v->shape[3], "the value head size", &dv))
        return -1;
    if (fu_attr_int(n, "is_causal", 0) && !fu_dim_eq(q->shape[lay[0] ? 1 : 2], kk->shape[lay[1] ? 1 : 2]))
        return fu_node_fail(w->err, g, n, "causal attention with different query and key lengths is not exported");
    const char *in[4];
    for (int i = 0; i < 3; i++) in[i] = to_3d(w, k, use(w, n->in[i]), lay[i]);
    in[3] = n->n_in > 3 ? use(w, n->in[3]) : NULL;
    const char *y = fresh(w, k, "Y3");
    Onnx__NodeProto *np = node_add(w, graph_nodes(w), n->name, NULL, "Attention", in[3] ? 4 : 3, in, 1, &y);
    for (int a = 0; a < n->n_attrs && np; a++) {
        const char *an = n->attrs[a].name;
        if (strcmp(an, "qkv_layout") && strcmp(an, "out_layout") && strcmp(an, "q_num_heads") && strcmp(an, "kv_num_heads"))
            node_attr(w, np, attr_copy(w, &n->attrs[a]));
    }
    node_attr(w, np, attr_int(w, "q_num_heads", hq));
    node_attr(w, np, attr_int(w, "kv_num_heads", hkv));
    from_3d(w, k, y, hq, dv, out_bshd, g->values[n->out[0]].name);
    return 0;
}

/* ---- functions ------------------------------------------------------------ */

/* The function named name, made by build() the first time it is asked for. */
static int have_function(writer *w, const char *name) {
    for (size_t i = 0; i < w->n_funcs; i++)
        if (strcmp(w->funcs[i]->name, name) == 0) return 1;
    return 0;
}

static Onnx__OperatorSetIdProto *opset(writer *w, const char *domain, int64_t version) {
    Onnx__OperatorSetIdProto *o = w_alloc(w, sizeof *o);
    if (!o) return NULL;
    onnx__operator_set_id_proto__init(o);
    o->domain = w_str(w, domain);
    o->has_version = 1;
    o->version = version;
    return o;
}

static Onnx__FunctionProto *function_new(writer *w, const char *name, int n_in, const char *const *in, const char *doc) {
    Onnx__FunctionProto *f = w_alloc(w, sizeof *f);
    char **ins = w_alloc(w, sizeof(char *) * (size_t)(n_in + 1)), **outs = w_alloc(w, sizeof(char *));
    Onnx__OperatorSetIdProto **ops = w_alloc(w, sizeof(void *));
    if (!f || !ins || !outs || !ops) return NULL;
    onnx__function_proto__init(f);
    f->name = w_str(w, name);
    f->domain = w_str(w, FUSEC_DOMAIN);
    f->doc_string = w_str(w, doc);
    for (int i = 0; i < n_in; i++) ins[i] = w_str(w, in[i]);
    f->n_input = (size_t)n_in;
    f->input = ins;
    outs[0] = w_str(w, "Y");
    f->n_output = 1;
    f->output = outs;
    ops[0] = opset(w, "", OPSET);
    f->n_opset_import = 1;
    f->opset_import = ops;
    push(w, (void ***)&w->funcs, &w->n_funcs, &w->cap_funcs, f);
    return f;
}

static node_list body(Onnx__FunctionProto *f, size_t *cap) {
    return (node_list){&f->node, &f->n_node, cap};
}

/* SwiGLU(gate, up) = gate * Sigmoid(gate) * up. */
static int export_swiglu(writer *w, int k) {
    if (!have_function(w, "SwiGLU")) {
        static const char *const in[2] = {"gate", "up"};
        Onnx__FunctionProto *f = function_new(w, "SwiGLU", 2, in, "fusec SwiGLU: Y = gate * Sigmoid(gate) * up");
        if (!f) return fu_fail(w->err, "%s: out of memory", w->out);
        size_t cap = 0;
        const char *s_in[1] = {"gate"}, *s_out[1] = {"sig"};
        node_add(w, body(f, &cap), "sigmoid", NULL, "Sigmoid", 1, s_in, 1, s_out);
        const char *m_in[2] = {"gate", "sig"}, *m_out[1] = {"silu"};
        node_add(w, body(f, &cap), "silu", NULL, "Mul", 2, m_in, 1, m_out);
        const char *y_in[2] = {"silu", "up"}, *y_out[1] = {"Y"};
        node_add(w, body(f, &cap), "gated", NULL, "Mul", 2, y_in, 1, y_out);
    }
    return copy_node(w, k, FUSEC_DOMAIN, "SwiGLU", NULL, 2) ? 0 : -1;
}

/* FusedMatMul(A, B[, bias]) = alpha * op(A) op(B) [+ bias]: one function
 * per variant (transA, transB with B's rank, alpha, bias). */
static int export_fused_matmul(writer *w, int k) {
    const fu_graph *g = w->g;
    const fu_node *n = &g->nodes[k];
    int64_t ta = fu_attr_int(n, "transA", 0), tb = fu_attr_int(n, "transB", 0);
    double alpha = fu_attr_float(n, "alpha", 1.0);
    if (fu_attr_int(n, "transBatchA", 0) || fu_attr_int(n, "transBatchB", 0))
        return fu_node_fail(w->err, g, n, "transBatchA/transBatchB are not exported");
    if (strcmp(fu_attr_string(n, "activations", "f32"), "f32") != 0)
        return fu_node_fail(w->err, g, n, "activations = \"bf16\" (--precision bf16) has no ONNX equivalent");
    int bias = n->n_in > 2 && n->in[2] >= 0;
    int rb = g->values[n->in[1]].rank, ra = g->values[n->in[0]].rank;
    if ((tb && rb < 2) || (ta && ra != 2)) return fu_node_fail(w->err, g, n, "transA/transB on a 1-D operand");
    float af = (float)alpha;
    uint32_t bits;
    memcpy(&bits, &af, 4);
    char name[128];
    snprintf(name, sizeof name, "FusedMatMul%s", ta ? "_tA" : "");
    if (tb) snprintf(name + strlen(name), sizeof name - strlen(name), "_tB%d", rb);
    if (af != 1.0f) snprintf(name + strlen(name), sizeof name - strlen(name), "_alpha%08x", (unsigned)bits);
    if (bias) snprintf(name + strlen(name), sizeof name - strlen(name), "_bias");
    if (!have_function(w, name)) {
        static const char *const in[3] = {"A", "B", "bias"};
        char doc[256];
        snprintf(doc, sizeof doc, "fusec FusedMatMul: Y = %g * %s %s%s", (double)af, ta ? "A^T" : "A",
                 tb ? "B^T (last two axes)" : "B", bias ? " + bias" : "");
        Onnx__FunctionProto *f = function_new(w, name, bias ? 3 : 2, in, doc);
        if (!f) return fu_fail(w->err, "%s: out of memory", w->out);
        size_t cap = 0;
        const char *a = "A", *b = "B";
        if (ta) {
            const char *o = "At";
            Onnx__NodeProto *np = node_add(w, body(f, &cap), "transpose_a", NULL, "Transpose", 1, &a, 1, &o);
            int64_t perm[2] = {1, 0};
            node_attr(w, np, attr_ints(w, "perm", 2, perm));
            a = o;
        }
        if (tb) {
            const char *o = "Bt";
            Onnx__NodeProto *np = node_add(w, body(f, &cap), "transpose_b", NULL, "Transpose", 1, &b, 1, &o);
            int64_t perm[FU_MAX_RANK];
            for (int i = 0; i < rb; i++) perm[i] = i;
            perm[rb - 2] = rb - 1;
            perm[rb - 1] = rb - 2;
            node_attr(w, np, attr_ints(w, "perm", rb, perm));
            b = o;
        }
        int more = af != 1.0f || bias;
        const char *mm_in[2] = {a, b}, *mm_out = more ? "AB" : "Y";
        node_add(w, body(f, &cap), "matmul", NULL, "MatMul", 2, mm_in, 1, &mm_out);
        const char *cur = mm_out;
        if (af != 1.0f) {
            const char *c_out = "alpha";
            Onnx__NodeProto *cn = node_add(w, body(f, &cap), "alpha", NULL, "Constant", 0, NULL, 1, &c_out);
            node_attr(w, cn, attr_float(w, "value_float", af));
            const char *mul_in[2] = {cur, "alpha"}, *mul_out = bias ? "scaled" : "Y";
            node_add(w, body(f, &cap), "scale", NULL, "Mul", 2, mul_in, 1, &mul_out);
            cur = mul_out;
        }
        if (bias) {
            const char *add_in[2] = {cur, "bias"}, *add_out = "Y";
            node_add(w, body(f, &cap), "bias", NULL, "Add", 2, add_in, 1, &add_out);
        }
    }
    /* the variant is in the function's name; fusec's attributes stay behind */
    static const char *const all[] = {"transA", "transB", "alpha", "transBatchA", "transBatchB", "packed_weight",
                                      "activations", NULL};
    return copy_node(w, k, FUSEC_DOMAIN, name, all, bias ? 3 : 2) ? 0 : -1;
}

static int export_node(writer *w, int k) {
    const fu_node *n = &w->g->nodes[k];
    int fused = n->op_id == FU_OP_RMSNormalization || n->op_id == FU_OP_LayerNormalization ||
                n->op_id == FU_OP_RotaryEmbedding || n->op_id == FU_OP_Attention || n->op_id == FU_OP_SwiGLU ||
                n->op_id == FU_OP_FusedMatMul;
    for (int i = 0; fused && i < n->n_in; i++)
        if (n->in[i] >= 0 && w->g->values[n->in[i]].rank < 0)
            return fu_node_fail(w->err, w->g, n, "input %d has no inferred shape (export after the infer pass)", i);
    switch (n->op_id) {
    case FU_OP_RMSNormalization:
    case FU_OP_LayerNormalization: return export_norm(w, k);
    case FU_OP_RotaryEmbedding: return export_rotary(w, k);
    case FU_OP_Attention: return export_attention(w, k);
    case FU_OP_SwiGLU: return export_swiglu(w, k);
    case FU_OP_FusedMatMul: return export_fused_matmul(w, k);
    default:
        if (n->op_id < 0) return fu_node_fail(w->err, w->g, n, "op is unknown to fusec, cannot export");
        return copy_node(w, k, NULL, n->op, NULL, n->n_in) ? 0 : -1;
    }
}

/* ---- model ---------------------------------------------------------------- */

static int build(writer *w, Onnx__ModelProto *m, Onnx__GraphProto *gp) {
    const fu_graph *g = w->g;
    if (!(w->const_needed = calloc((size_t)g->n_values + 1, 1))) return fu_fail(w->err, "%s: out of memory", w->out);
    for (int k = 0; k < g->n_nodes; k++) {
        if (g->nodes[k].dead) continue;
        if (export_node(w, k)) return -1;
        if (w->oom) return fu_fail(w->err, "%s: out of memory", w->out);
    }
    Onnx__ValueInfoProto **ins = w_alloc(w, sizeof(void *) * (size_t)(g->n_inputs + 1));
    Onnx__ValueInfoProto **outs = w_alloc(w, sizeof(void *) * (size_t)(g->n_outputs + 1));
    if (!ins || !outs) return fu_fail(w->err, "%s: out of memory", w->out);
    for (int i = 0; i < g->n_inputs; i++) {
        const fu_value *v = &g->values[g->inputs[i]];
        ins[i] = value_info(w, v, v->dtype, v->rank, v->shape);
    }
    for (int i = 0; i < g->n_outputs; i++) {
        const fu_value *v = &g->values[g->outputs[i]];
        use(w, g->outputs[i]);
        if (v->rank >= 0 && v->dtype != FU_UNDEF) outs[i] = value_info(w, v, v->dtype, v->rank, v->shape);
        else outs[i] = value_info(w, v, v->decl_dtype, v->decl_rank, v->decl_shape);
    }
    /* initializers in value order, before the writer's own */
    size_t own = w->n_inits;
    for (int i = 0; i < g->n_values; i++)
        if (w->const_needed[i] && const_tensor(w, i)) return -1;
    if (w->oom) return fu_fail(w->err, "%s: out of memory", w->out);
    Onnx__TensorProto **inits = w_alloc(w, sizeof(void *) * (w->n_inits + 1));
    if (!inits) return fu_fail(w->err, "%s: out of memory", w->out);
    memcpy(inits, w->inits + own, sizeof(void *) * (w->n_inits - own));
    memcpy(inits + (w->n_inits - own), w->inits, sizeof(void *) * own);

    gp->name = w_str(w, g->name ? g->name : "model");
    gp->n_node = w->n_nodes;
    gp->node = w->nodes;
    gp->n_initializer = w->n_inits;
    gp->initializer = inits;
    gp->n_input = (size_t)g->n_inputs;
    gp->input = ins;
    gp->n_output = (size_t)g->n_outputs;
    gp->output = outs;

    m->has_ir_version = 1;
    m->ir_version = IR_VERSION;
    m->producer_name = w_str(w, "fusec");
    m->graph = gp;
    Onnx__OperatorSetIdProto **ops = w_alloc(w, sizeof(void *) * 2);
    if (!ops) return fu_fail(w->err, "%s: out of memory", w->out);
    ops[0] = opset(w, "", OPSET);
    ops[1] = opset(w, FUSEC_DOMAIN, 1);
    m->n_opset_import = w->n_funcs ? 2 : 1;
    m->opset_import = ops;
    m->n_functions = w->n_funcs;
    m->functions = w->funcs;
    if (g->n_syms) {
        char syms[1024] = "";
        for (int i = 0; i < g->n_syms; i++)
            snprintf(syms + strlen(syms), sizeof syms - strlen(syms), "%s%s=%lld", i ? "," : "", g->sym_names[i],
                     (long long)g->sym_max[i]);
        Onnx__StringStringEntryProto **md = w_alloc(w, sizeof(void *));
        if (!md) return fu_fail(w->err, "%s: out of memory", w->out);
        md[0] = entry(w, "fusec.symbols", syms);
        m->n_metadata_props = 1;
        m->metadata_props = md;
    }
    if (w->oom) return fu_fail(w->err, "%s: out of memory", w->out);
    return 0;
}

/* ---- files ------------------------------------------------------------- */

/* out_path's folder ("." when it has none), malloc'd. */
static char *folder_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

static const char *base_of(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

static int write_all(int fd, const uint8_t *p, size_t n) {
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Copies src to the new file dst (mode 0644). */
static int copy_file(const char *src, const char *dst) {
    int in = open(src, O_RDONLY | O_CLOEXEC), out = -1, rc = -1;
    if (in < 0) return -1;
    out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    uint8_t *buf = malloc(1 << 16);
    if (out >= 0 && buf) {
        ssize_t k;
        rc = 0;
        while ((k = read(in, buf, 1 << 16)) != 0) {
            if (k < 0 && errno == EINTR) continue;
            if (k < 0 || write_all(out, buf, (size_t)k)) {
                rc = -1;
                break;
            }
        }
    }
    if (out >= 0) {
        if (close(out)) rc = -1;
        if (rc) unlink(dst);
    }
    free(buf);
    close(in);
    return rc;
}

/* Decides where the external data lives; may stage OUT.safetensors (a hard
 * link or a copy) at *staged, renamed into place by the caller. */
static int place_data(writer *w, const char *wpath, fu_onnx_write_info *info, char **data_path, char **staged) {
    char *dir = folder_of(w->out), *wdir = folder_of(wpath);
    struct stat a, b;
    if (!dir || !wdir) {
        free(dir), free(wdir);
        return fu_fail(w->err, "%s: out of memory", w->out);
    }
    int same = stat(dir, &a) == 0 && stat(wdir, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
    free(dir), free(wdir);
    if (same) {
        snprintf(info->data_location, sizeof info->data_location, "%s", base_of(wpath));
        return 0;
    }
    size_t n = strlen(w->out);
    size_t stem = n > 5 && strcmp(w->out + n - 5, ".onnx") == 0 ? n - 5 : n;
    *data_path = malloc(stem + 16);
    *staged = malloc(stem + 40);
    if (!*data_path || !*staged) return fu_fail(w->err, "%s: out of memory", w->out);
    snprintf(*data_path, stem + 16, "%.*s.safetensors", (int)stem, w->out);
    snprintf(info->data_location, sizeof info->data_location, "%s", base_of(*data_path));
    if (strlen(base_of(*data_path)) >= sizeof info->data_location)
        return fu_fail(w->err, "%s: the name is too long", w->out);
    if (stat(*data_path, &a) == 0 && stat(wpath, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
        free(*staged);
        *staged = NULL;   /* already the same file */
        return 0;
    }
    snprintf(*staged, stem + 40, "%s.tmp%ld", *data_path, (long)getpid());
    unlink(*staged);
    info->data_created = 1;
    if (link(wpath, *staged) == 0) return 0;
    if (copy_file(wpath, *staged) == 0) {
        info->data_copied = 1;
        return 0;
    }
    int e = errno;
    return fu_fail(w->err, "%s: cannot link or copy the weights %s there: %s", *data_path, fu_safe(wpath).s, strerror(e));
}

int fu_onnx_write(const fu_graph *g, const char *out_path, fu_onnx_write_info *info, fu_err *err) {
    fu_onnx_write_info dummy;
    if (!info) info = &dummy;
    memset(info, 0, sizeof *info);
    writer w = {.g = g, .out = out_path, .err = err, .location = ""};
    char *data_path = NULL, *staged = NULL, *tmp = NULL;
    uint8_t *buf = NULL;
    int rc = -1, fd = -1;
    int has_external = 0;
    char *dir = folder_of(out_path);
    struct stat st;
    if (!dir || stat(dir, &st) || !S_ISDIR(st.st_mode)) {
        int e = !dir ? ENOMEM : stat(dir, &st) ? errno : ENOTDIR;
        free(dir);
        return fu_fail(err, "%s: cannot create: its folder: %s", out_path, strerror(e));
    }
    free(dir);
    for (int i = 0; i < g->n_values; i++)
        has_external |= g->values[i].kind == FU_VAL_CONST && g->values[i].external;
    if (has_external) {
        const char *wpath = g->weights ? fu_weights_path(g->weights) : NULL;
        if (!wpath) {
            fu_fail(err, "%s: the model's weights file is not open", out_path);
            goto done;
        }
        if (place_data(&w, wpath, info, &data_path, &staged)) goto done;
        w.location = info->data_location;
    }
    Onnx__ModelProto m;
    Onnx__GraphProto gp;
    onnx__model_proto__init(&m);
    onnx__graph_proto__init(&gp);
    if (build(&w, &m, &gp)) goto done;
    size_t len = onnx__model_proto__get_packed_size(&m);
    if (len > ((size_t)1 << 31)) {
        fu_fail(err, "%s: the model would be larger than 2 GiB", out_path);
        goto done;
    }
    if (!(buf = malloc(len ? len : 1)) || !(tmp = malloc(strlen(out_path) + 16))) {
        fu_fail(err, "%s: out of memory", out_path);
        goto done;
    }
    onnx__model_proto__pack(&m, buf);
    snprintf(tmp, strlen(out_path) + 16, "%s.tmpXXXXXX", out_path);
    if ((fd = mkstemp(tmp)) < 0) {
        fu_fail(err, "%s: cannot create: %s", out_path, strerror(errno));
        free(tmp);
        tmp = NULL;
        goto done;
    }
    if (fchmod(fd, 0644) || write_all(fd, buf, len) || close(fd)) {
        fd = -1;
        fu_fail(err, "%s: write error: %s", out_path, strerror(errno));
        goto done;
    }
    fd = -1;
    if (staged && rename(staged, data_path)) {
        fu_fail(err, "%s: cannot create: %s", data_path, strerror(errno));
        goto done;
    }
    if (staged) {
        free(staged);
        staged = NULL;
    }
    if (rename(tmp, out_path)) {
        fu_fail(err, "%s: cannot create: %s", out_path, strerror(errno));
        if (info->data_created) unlink(data_path);
        goto done;
    }
    free(tmp);
    tmp = NULL;
    rc = 0;
done:
    if (fd >= 0) close(fd);
    if (tmp) unlink(tmp);
    if (staged) unlink(staged);
    if (rc) info->data_created = info->data_copied = 0;
    free(tmp);
    free(staged);
    free(data_path);
    free(buf);
    free_all(&w);
    return rc;
}
