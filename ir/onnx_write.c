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
#include "onnx_write_impl.h"
#include "op_ids.h"
#include "weights.h"

#define IR_VERSION 10


/* ---- allocation ------------------------------------------------------- */

void *ow_alloc(writer *w, size_t n) {
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

char *ow_str(writer *w, const char *s) {
    size_t n = strlen(s ? s : "");
    char *p = ow_alloc(w, n + 1);
    if (p && n) memcpy(p, s, n);
    return p;
}

char *ow_fmt(writer *w, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return ow_str(w, buf);
}

/* Appends p to a growable array of pointers. */
void ow_push(writer *w, void ***arr, size_t *n, size_t *cap, void *p) {
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
    Onnx__ValueInfoProto *vi = ow_alloc(w, sizeof *vi);
    Onnx__TypeProto *tp = ow_alloc(w, sizeof *tp);
    Onnx__TypeProto__Tensor *tt = ow_alloc(w, sizeof *tt);
    if (!vi || !tp || !tt) return NULL;
    onnx__value_info_proto__init(vi);
    onnx__type_proto__init(tp);
    onnx__type_proto__tensor__init(tt);
    vi->name = ow_str(w, v->name);
    vi->type = tp;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    tt->has_elem_type = 1;
    tt->elem_type = onnx_type(dt);
    if (rank < 0) return vi;
    Onnx__TensorShapeProto *sp = ow_alloc(w, sizeof *sp);
    Onnx__TensorShapeProto__Dimension **dims = ow_alloc(w, sizeof(void *) * (size_t)(rank + 1));
    if (!sp || !dims) return NULL;
    onnx__tensor_shape_proto__init(sp);
    sp->n_dim = (size_t)rank;
    sp->dim = dims;
    for (int d = 0; d < rank; d++) {
        Onnx__TensorShapeProto__Dimension *dm = ow_alloc(w, sizeof *dm);
        if (!dm) return NULL;
        onnx__tensor_shape_proto__dimension__init(dm);
        if (fu_dim_is_const(shape[d])) {
            dm->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            dm->dim_value = shape[d].coef;
        } else {
            char text[128];
            fu_dim_str(w->g, shape[d], text, sizeof text);
            dm->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            dm->dim_param = ow_str(w, text);
        }
        dims[d] = dm;
    }
    tt->shape = sp;
    return vi;
}

/* ---- tensors ------------------------------------------------------------ */

Onnx__TensorProto *ow_tensor(writer *w, const char *name, fu_dtype dt, int rank, const int64_t *shape) {
    Onnx__TensorProto *t = ow_alloc(w, sizeof *t);
    int64_t *dims = ow_alloc(w, sizeof(int64_t) * (size_t)(rank + 1));
    if (!t || !dims) return NULL;
    onnx__tensor_proto__init(t);
    t->name = ow_str(w, name);
    t->has_data_type = 1;
    t->data_type = onnx_type(dt);
    t->n_dims = (size_t)rank;
    if (rank) memcpy(dims, shape, sizeof(int64_t) * (size_t)rank);
    t->dims = dims;
    return t;
}

/* A tensor holding a copy of data (made here: a writer constant). */
Onnx__TensorProto *ow_tensor_copy(writer *w, const char *name, fu_dtype dt, int rank, const int64_t *shape,
                                  const void *data, size_t nbytes) {
    Onnx__TensorProto *t = ow_tensor(w, name, dt, rank, shape);
    void *buf = ow_alloc(w, nbytes);
    if (!t || !buf) return NULL;
    if (nbytes) memcpy(buf, data, nbytes);
    t->has_raw_data = 1;
    t->raw_data.data = buf;
    t->raw_data.len = nbytes;
    return t;
}

static Onnx__StringStringEntryProto *entry(writer *w, const char *key, const char *value) {
    Onnx__StringStringEntryProto *e = ow_alloc(w, sizeof *e);
    if (!e) return NULL;
    onnx__string_string_entry_proto__init(e);
    e->key = ow_str(w, key);
    e->value = ow_str(w, value);
    return e;
}

/* Which mapped file of the weights table holds the n bytes at p, and at
 * what offset: the file's index, or -1 (a copy the table holds, or none). */
static int weights_range(const fu_weights *wt, const void *p, size_t n, uint64_t *offset) {
    const unsigned char *b = p;
    for (int i = 0; wt && b && i < fu_weights_n_files(wt); i++) {
        size_t size = 0;
        const unsigned char *base = fu_weights_mapped_bytes(wt, i, &size);
        if (base && b >= base && b <= base + size && n <= (size_t)(base + size - b)) {
            *offset = (uint64_t)(b - base);
            return i;
        }
    }
    return -1;
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
    Onnx__TensorProto *t = ow_tensor(w, v->name, v->dtype, v->rank < 0 ? 0 : v->rank, shape);
    if (!t) return -1;
    uint64_t off;
    if (v->external && w->data_file >= 0 && v->data && weights_range(g->weights, v->data, v->nbytes, &off) == w->data_file) {
        char o[32], l[32];
        snprintf(o, sizeof o, "%llu", (unsigned long long)off);
        snprintf(l, sizeof l, "%llu", (unsigned long long)v->nbytes);
        Onnx__StringStringEntryProto **ed = ow_alloc(w, sizeof(void *) * 3);
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
    ow_push(w, (void ***)&w->inits, &w->n_inits, &w->cap_inits, t);
    return 0;
}

/* ---- nodes -------------------------------------------------------------- */

Onnx__AttributeProto *ow_attr_new(writer *w, const char *name, Onnx__AttributeProto__AttributeType type) {
    Onnx__AttributeProto *a = ow_alloc(w, sizeof *a);
    if (!a) return NULL;
    onnx__attribute_proto__init(a);
    a->name = ow_str(w, name);
    a->has_type = 1;
    a->type = type;
    return a;
}

Onnx__AttributeProto *ow_attr_int(writer *w, const char *name, int64_t i) {
    Onnx__AttributeProto *a = ow_attr_new(w, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    if (a) a->has_i = 1, a->i = i;
    return a;
}

Onnx__AttributeProto *ow_attr_float(writer *w, const char *name, double f) {
    Onnx__AttributeProto *a = ow_attr_new(w, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    if (a) a->has_f = 1, a->f = (float)f;
    return a;
}

Onnx__AttributeProto *ow_attr_ints(writer *w, const char *name, int n, const int64_t *v) {
    Onnx__AttributeProto *a = ow_attr_new(w, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    int64_t *p = ow_alloc(w, sizeof(int64_t) * (size_t)(n + 1));
    if (!a || !p) return NULL;
    if (n) memcpy(p, v, sizeof(int64_t) * (size_t)n);
    a->n_ints = (size_t)n;
    a->ints = p;
    return a;
}

Onnx__AttributeProto *ow_attr_string(writer *w, const char *name, const char *s) {
    Onnx__AttributeProto *a = ow_attr_new(w, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);
    if (!a) return NULL;
    a->has_s = 1;
    a->s.data = (uint8_t *)ow_str(w, s);
    a->s.len = strlen(s);
    return a;
}

/* A fusec attribute as an ONNX one. */
Onnx__AttributeProto *ow_attr_copy(writer *w, const fu_attr *fa) {
    switch (fa->kind) {
    case FU_ATTR_INT: return ow_attr_int(w, fa->name, fa->i);
    case FU_ATTR_FLOAT: return ow_attr_float(w, fa->name, fa->f);
    case FU_ATTR_INTS: return ow_attr_ints(w, fa->name, fa->n, fa->ints);
    case FU_ATTR_STRING: return ow_attr_string(w, fa->name, fa->s ? fa->s : "");
    case FU_ATTR_FLOATS: {
        Onnx__AttributeProto *a = ow_attr_new(w, fa->name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS);
        float *p = ow_alloc(w, sizeof(float) * (size_t)(fa->n + 1));
        if (!a || !p) return NULL;
        for (int i = 0; i < fa->n; i++) p[i] = (float)fa->floats[i];
        a->n_floats = (size_t)fa->n;
        a->floats = p;
        return a;
    }
    case FU_ATTR_TENSOR: {
        Onnx__AttributeProto *a = ow_attr_new(w, fa->name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR);
        int64_t numel = 1;
        for (int i = 0; i < fa->t_rank; i++) numel *= fa->t_shape[i];
        if (!a) return NULL;
        a->t = ow_tensor_copy(w, "", fa->t_dtype, fa->t_rank, fa->t_shape, fa->t_data,
                           fa->t_data ? (size_t)numel * fu_dtype_size(fa->t_dtype) : 0);
        return a->t ? a : NULL;
    }
    }
    return NULL;
}


/* A node with the given input and output names (NULL entries: omitted ""). */
Onnx__NodeProto *ow_node_add(writer *w, node_list l, const char *name, const char *domain, const char *op,
                             int n_in, const char *const *in, int n_out, const char *const *out) {
    Onnx__NodeProto *n = ow_alloc(w, sizeof *n);
    char **ins = ow_alloc(w, sizeof(char *) * (size_t)(n_in + 1));
    char **outs = ow_alloc(w, sizeof(char *) * (size_t)(n_out + 1));
    if (!n || !ins || !outs) return NULL;
    onnx__node_proto__init(n);
    n->name = ow_str(w, name);
    n->op_type = ow_str(w, op);
    if (domain) n->domain = ow_str(w, domain);
    for (int i = 0; i < n_in; i++) ins[i] = ow_str(w, in[i] ? in[i] : "");
    for (int i = 0; i < n_out; i++) outs[i] = ow_str(w, out[i]);
    n->n_input = (size_t)n_in;
    n->input = ins;
    n->n_output = (size_t)n_out;
    n->output = outs;
    ow_push(w, (void ***)l.arr, l.n, l.cap, n);
    return n;
}

void ow_node_attr(writer *w, Onnx__NodeProto *n, Onnx__AttributeProto *a) {
    if (!n || !a) {
        w->oom = 1;
        return;
    }
    Onnx__AttributeProto **p = ow_alloc(w, sizeof(void *) * (n->n_attribute + 1));
    if (!p) return;
    if (n->n_attribute) memcpy(p, n->attribute, sizeof(void *) * n->n_attribute);
    p[n->n_attribute++] = a;
    n->attribute = p;
}

node_list ow_graph_nodes(writer *w) { return (node_list){&w->nodes, &w->n_nodes, &w->cap_nodes}; }

/* The name of value vi as a node input; marks a constant as needed. */
const char *ow_use(writer *w, int vi) {
    if (vi < 0) return NULL;
    if (w->g->values[vi].kind == FU_VAL_CONST) w->const_needed[vi] = 1;
    return w->g->values[vi].name;
}

/* A fresh value name for a tensor the writer adds around fused node k. */
const char *ow_fresh(writer *w, int k, const char *what) {
    for (;;) {
        char *s = ow_fmt(w, "%s/onnx_export/%s_%d", w->g->nodes[k].name ? w->g->nodes[k].name : "node", what, w->fresh++);
        if (!s) return "";
        if (fu_graph_find_value(w->g, s) < 0) return s;
    }
}

/* A writer-made initializer (int64 vector or float32 data); its name. */
const char *ow_const_i64(writer *w, int k, const char *what, int n, const int64_t *v, int scalar) {
    const char *name = ow_fresh(w, k, what);
    int64_t len = n;
    ow_push(w, (void ***)&w->inits, &w->n_inits, &w->cap_inits,
         ow_tensor_copy(w, name, FU_I64, scalar ? 0 : 1, &len, v, sizeof(int64_t) * (size_t)n));
    return name;
}

const char *ow_const_f32(writer *w, int k, const char *what, int rank, const int64_t *shape, const float *v) {
    const char *name = ow_fresh(w, k, what);
    int64_t numel = 1;
    for (int i = 0; i < rank; i++) numel *= shape[i];
    ow_push(w, (void ***)&w->inits, &w->n_inits, &w->cap_inits,
         ow_tensor_copy(w, name, FU_F32, rank, shape, v, sizeof(float) * (size_t)numel));
    return name;
}

/* out = op(in...) for a helper node of fused node k; returns out. */
const char *ow_helper(writer *w, int k, const char *op, int n_in, const char *const *in, Onnx__NodeProto **np) {
    const char *out = ow_fresh(w, k, op);
    char *name = ow_fmt(w, "%s/onnx_export/%s_%d", w->g->nodes[k].name ? w->g->nodes[k].name : "node", op, w->fresh++);
    Onnx__NodeProto *n = ow_node_add(w, ow_graph_nodes(w), name ? name : "", NULL, op, n_in, in, 1, &out);
    if (np) *np = n;
    return out;
}

const char *ow_reshape(writer *w, int k, const char *x, int n, const int64_t *shape) {
    const char *in[2] = {x, ow_const_i64(w, k, "shape", n, shape, 0)};
    return ow_helper(w, k, "Reshape", 2, in, NULL);
}

const char *ow_transpose(writer *w, int k, const char *x, int n, const int64_t *perm) {
    Onnx__NodeProto *np;
    const char *out = ow_helper(w, k, "Transpose", 1, &x, &np);
    ow_node_attr(w, np, ow_attr_ints(w, "perm", n, perm));
    return out;
}


/* A node copied as is: same op, inputs, outputs and attributes, except the
 * attributes in skip (NULL-terminated; fusec's own). */
Onnx__NodeProto *ow_copy_node(writer *w, int k, const char *domain, const char *op, const char *const *skip,
                              int n_in) {
    const fu_node *n = &w->g->nodes[k];
    const char *in[16], *out[16];
    if (n_in > 16 || n->n_out > 16) {
        fu_node_fail(w->err, w->g, n, "too many inputs or outputs to export");
        return NULL;
    }
    for (int i = 0; i < n_in; i++) in[i] = ow_use(w, n->in[i]);
    for (int i = 0; i < n->n_out; i++) out[i] = w->g->values[n->out[i]].name;
    Onnx__NodeProto *np = ow_node_add(w, ow_graph_nodes(w), n->name, domain, op, n_in, in, n->n_out, out);
    for (int a = 0; a < n->n_attrs && np; a++) {
        int skipped = 0;
        for (int s = 0; skip && skip[s]; s++) skipped |= strcmp(skip[s], n->attrs[a].name) == 0;
        if (!skipped) ow_node_attr(w, np, ow_attr_copy(w, &n->attrs[a]));
    }
    if (!np) fu_fail(w->err, "%s: out of memory", w->out);
    return np;
}

int ow_static_dim(writer *w, int k, fu_dim d, const char *what, int64_t *out) {
    if (!fu_dim_is_const(d)) return fu_node_fail(w->err, w->g, &w->g->nodes[k], "%s must be static to export", what);
    *out = d.coef;
    return 0;
}

Onnx__OperatorSetIdProto *ow_opset(writer *w, const char *domain, int64_t version) {
    Onnx__OperatorSetIdProto *o = ow_alloc(w, sizeof *o);
    if (!o) return NULL;
    onnx__operator_set_id_proto__init(o);
    o->domain = ow_str(w, domain);
    o->has_version = 1;
    o->version = version;
    return o;
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
    case FU_OP_LayerNormalization: return ow_export_norm(w, k);
    case FU_OP_RotaryEmbedding: return ow_export_rotary(w, k);
    case FU_OP_Attention: return ow_export_attention(w, k);
    case FU_OP_SwiGLU: return ow_export_swiglu(w, k);
    case FU_OP_FusedMatMul: return ow_export_fused_matmul(w, k);
    default:
        if (n->op_id < 0) return fu_node_fail(w->err, w->g, n, "op is unknown to fusec, cannot export");
        return ow_copy_node(w, k, NULL, n->op, NULL, n->n_in) ? 0 : -1;
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
    Onnx__ValueInfoProto **ins = ow_alloc(w, sizeof(void *) * (size_t)(g->n_inputs + 1));
    Onnx__ValueInfoProto **outs = ow_alloc(w, sizeof(void *) * (size_t)(g->n_outputs + 1));
    if (!ins || !outs) return fu_fail(w->err, "%s: out of memory", w->out);
    for (int i = 0; i < g->n_inputs; i++) {
        const fu_value *v = &g->values[g->inputs[i]];
        ins[i] = value_info(w, v, v->dtype, v->rank, v->shape);
    }
    for (int i = 0; i < g->n_outputs; i++) {
        const fu_value *v = &g->values[g->outputs[i]];
        ow_use(w, g->outputs[i]);
        if (v->rank >= 0 && v->dtype != FU_UNDEF) outs[i] = value_info(w, v, v->dtype, v->rank, v->shape);
        else outs[i] = value_info(w, v, v->decl_dtype, v->decl_rank, v->decl_shape);
    }
    /* initializers in value order, before the writer's own */
    size_t own = w->n_inits;
    for (int i = 0; i < g->n_values; i++)
        if (w->const_needed[i] && const_tensor(w, i)) return -1;
    if (w->oom) return fu_fail(w->err, "%s: out of memory", w->out);
    Onnx__TensorProto **inits = ow_alloc(w, sizeof(void *) * (w->n_inits + 1));
    if (!inits) return fu_fail(w->err, "%s: out of memory", w->out);
    memcpy(inits, w->inits + own, sizeof(void *) * (w->n_inits - own));
    memcpy(inits + (w->n_inits - own), w->inits, sizeof(void *) * own);

    gp->name = ow_str(w, g->name ? g->name : "model");
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
    m->producer_name = ow_str(w, "fusec");
    m->graph = gp;
    Onnx__OperatorSetIdProto **ops = ow_alloc(w, sizeof(void *) * 2);
    if (!ops) return fu_fail(w->err, "%s: out of memory", w->out);
    ops[0] = ow_opset(w, "", OPSET);
    ops[1] = ow_opset(w, FUSEC_DOMAIN, 1);
    m->n_opset_import = w->n_funcs ? 2 : 1;
    m->opset_import = ops;
    m->n_functions = w->n_funcs;
    m->functions = w->funcs;
    if (g->n_syms) {
        char syms[1024] = "";
        for (int i = 0; i < g->n_syms; i++)
            snprintf(syms + strlen(syms), sizeof syms - strlen(syms), "%s%s=%lld", i ? "," : "", g->sym_names[i],
                     (long long)g->sym_max[i]);
        Onnx__StringStringEntryProto **md = ow_alloc(w, sizeof(void *));
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
    writer w = {.g = g, .out = out_path, .err = err, .location = "", .data_file = -1};
    char *data_path = NULL, *staged = NULL, *tmp = NULL;
    uint8_t *buf = NULL;
    int rc = -1, fd = -1;
    const char *wpath = NULL;
    char *dir = folder_of(out_path);
    struct stat st;
    if (!dir || stat(dir, &st) || !S_ISDIR(st.st_mode)) {
        int e = !dir ? ENOMEM : stat(dir, &st) ? errno : ENOTDIR;
        free(dir);
        return fu_fail(err, "%s: cannot create: its folder: %s", out_path, strerror(e));
    }
    free(dir);
    for (int i = 0; i < g->n_values; i++)
        if (!wpath && g->values[i].kind == FU_VAL_CONST && g->values[i].external) {
            /* the first mapped file a weight lies in; weights in other
             * files (or copies the table holds) are written as raw_data */
            uint64_t off;
            const fu_value *v = &g->values[i];
            w.data_file = weights_range(g->weights, v->data, v->nbytes, &off);
            if (w.data_file >= 0) wpath = fu_weights_file_path(g->weights, w.data_file);
        }
    if (wpath) {
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

