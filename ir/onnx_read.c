/* ONNX reader: ModelProto (decoded by protoc-c's generated onnx.pb-c.c)
 * -> fu_graph, with the same checks and contract as the JSON IR reader
 * (ir/json_ir.c). See ir/onnx_read.h and docs/ir.md ("ONNX models").
 * This file builds the graph (symbols, value types, nodes, attributes,
 * inputs and outputs); tensors, initializers and the weights table are
 * ir/onnx_tensor.c's. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "onnx.pb-c.h"
#include "files.h"
#include "model_limits.h"
#include "onnx_read.h"
#include "onnx_read_impl.h"
#include "onnx_fusec.h"
#include "onnx_opset.h"
#include "op_ids.h"

#define OPSET_MIN 13
#define OPSET_MAX 23

int fu_is_onnx_path(const char *path) {
    size_t n = path ? strlen(path) : 0;
    return n >= 5 && strcmp(path + n - 5, ".onnx") == 0;
}


/* ---- symbols ---------------------------------------------------------- */

/* The bound of symbol `name` from o->sym_max ("a=1,b=2"); 0 if absent. */
static int64_t sym_bound_in(const char *p, const char *name);
static int64_t sym_bound(const reader *r, const char *name) {
    int64_t b = sym_bound_in(r->o ? r->o->sym_max : NULL, name);
    return b > 0 ? b : sym_bound_in(r->meta_syms, name);
}
static int64_t sym_bound_in(const char *p, const char *name) {
    size_t n = strlen(name);
    while (p && *p) {
        const char *eq = strchr(p, '='), *comma = strchr(p, ',');
        if (!eq || (comma && comma < eq)) return 0;
        if ((size_t)(eq - p) == n && strncmp(p, name, n) == 0) {
            char *end;
            long long v = strtoll(eq + 1, &end, 10);
            return (end != eq + 1 && (*end == 0 || *end == ',')) ? (int64_t)v : 0;
        }
        p = comma ? comma + 1 : NULL;
    }
    return 0;
}

static int symbol(reader *r, const char *name, const char *what, int d, fu_dim *out) {
    for (int i = 0; i < r->g->n_syms; i++)
        if (strcmp(r->g->sym_names[i], name) == 0) {
            *out = fu_dim_sym(i);
            return 0;
        }
    int64_t b = sym_bound(r, name);
    if (b <= 0)
        return fu_fail(r->err, "%s: %s: dim %d is symbolic ('%s') and has no upper bound: give one "
                       "(fusec run --max %s=N; fusec_options.sym_max)", r->path, what, d, fu_safe(name).s, fu_safe(name).s);
    if (b > FU_MAX_NUMEL)
        return fu_fail(r->err, "%s: symbol '%s': bound %lld is out of range", r->path, fu_safe(name).s, (long long)b);
    if (r->g->n_syms == FU_MAX_SYMS) return fu_fail(r->err, "%s: more than %d symbolic dims", r->path, FU_MAX_SYMS);
    int i = r->g->n_syms;
    if (!(r->g->sym_names[i] = strdup(name))) return fu_fail(r->err, "%s: out of memory", r->path);
    r->g->sym_max[i] = b;
    r->g->n_syms++;
    *out = fu_dim_sym(i);
    return 0;
}

/* dtype and shape of a graph input or output. required: a missing or
 * unsupported type is an error (else decl stays unset). */
static int value_type(reader *r, const Onnx__ValueInfoProto *vi, const char *what, fu_dtype *dt, int *rank,
                      fu_dim *shape, int required) {
    *rank = -1;
    *dt = FU_UNDEF;
    const Onnx__TypeProto *tp = vi->type;
    if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type) {
        if (!required) return 0;
        return fu_fail(r->err, "%s: %s: only tensor types are supported", r->path, what);
    }
    const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
    *dt = fu_onnx_dtype(tt->elem_type);
    if (*dt == FU_UNDEF && required)
        return fu_fail(r->err, "%s: %s: element type %d is not supported (float32, float16, bfloat16, "
                       "int64, int32, bool)", r->path, what, (int)tt->elem_type);
    if (!tt->shape) {
        if (required) return fu_fail(r->err, "%s: %s: the shape is not given", r->path, what);
        return 0;
    }
    if (tt->shape->n_dim > FU_MAX_RANK)
        return fu_fail(r->err, "%s: %s: rank %zu exceeds %d", r->path, what, tt->shape->n_dim, FU_MAX_RANK);
    for (size_t d = 0; d < tt->shape->n_dim; d++) {
        const Onnx__TensorShapeProto__Dimension *dm = tt->shape->dim[d];
        if (dm->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE) {
            if (dm->dim_value < 0 || dm->dim_value > FU_MAX_NUMEL)
                return fu_fail(r->err, "%s: %s: dim %zu (%lld) is out of range", r->path, what, d,
                               (long long)dm->dim_value);
            shape[d] = fu_dim_const(dm->dim_value);
        } else if (dm->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM && onnx_str(dm->dim_param)[0]) {
            if (!required) {
                int known = 0;
                for (int i = 0; i < r->g->n_syms; i++)
                    if (strcmp(r->g->sym_names[i], onnx_str(dm->dim_param)) == 0) known = 1;
                if (!known) return 0;   /* an output's own symbol: left to inference */
            }
            if (symbol(r, onnx_str(dm->dim_param), what, (int)d, &shape[d])) return -1;
        } else {
            if (!required) return 0;
            return fu_fail(r->err, "%s: %s: dim %zu has neither a value nor a name", r->path, what, d);
        }
    }
    *rank = (int)tt->shape->n_dim;
    return 0;
}

/* ---- nodes ------------------------------------------------------------ */

static int is_default_domain(const char *d) { return !d || !*d || strcmp(d, "ai.onnx") == 0; }

/* Every op of the graph fusec lacks, with counts, in one message. */
static int check_ops(reader *r, const Onnx__GraphProto *gp) {
    char msg[FU_ERR_LEN] = "";
    size_t len = 0;
    int n_bad = 0;
    for (size_t k = 0; k < gp->n_node; k++) {
        const Onnx__NodeProto *n = gp->node[k];
        int ok = (is_default_domain(n->domain) && fu_op_id_find(onnx_str(n->op_type)) >= 0) ||
                 fu_onnx_fusec_op(n->domain, onnx_str(n->op_type));
        if (ok) continue;
        int seen = 0, count = 0;
        for (size_t j = 0; j < gp->n_node; j++) {
            const Onnx__NodeProto *m = gp->node[j];
            int same = strcmp(onnx_str(m->op_type), onnx_str(n->op_type)) == 0 && strcmp(m->domain ? m->domain : "", n->domain ? n->domain : "") == 0;
            if (same && j < k) seen = 1;
            if (same) count++;
        }
        if (seen) continue;
        char dom[160] = "";
        if (!is_default_domain(n->domain)) snprintf(dom, sizeof dom, "%s:", fu_safe(n->domain).s);
        if (len < sizeof msg)
            len += (size_t)snprintf(msg + len, sizeof msg - len, "%s%s%s x%d", n_bad ? ", " : "", dom,
                                    fu_safe(onnx_str(n->op_type)).s, count);
        n_bad++;
    }
    if (n_bad) return fu_fail(r->err, "%s: unsupported ops: %s", r->path, msg);
    return 0;
}

static int set_attr(reader *r, fu_node *node, const Onnx__AttributeProto *a) {
    fu_attr *fa = NULL;
    const char *name = a->name ? a->name : "";
    switch (a->type) {
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT: fa = fu_node_set_attr_int(node, name, a->i); break;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT: fa = fu_node_set_attr_float(node, name, a->f); break;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS:
        fa = fu_node_set_attr_ints(node, name, (int)a->n_ints, a->ints);
        break;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING: {
        char *s = malloc(a->s.len + 1);
        if (!s) break;
        if (a->s.len) memcpy(s, a->s.data, a->s.len);
        s[a->s.len] = 0;
        if (strlen(s) != a->s.len) {
            free(s);
            return fu_node_fail(r->err, r->g, node, "string attribute '%s' contains a NUL byte", fu_safe(name).s);
        }
        fa = fu_node_set_attr_string(node, name, s);
        free(s);
        break;
    }
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS:
        if ((fa = fu_node_set_attr_ints(node, name, 0, NULL))) {
            fa->kind = FU_ATTR_FLOATS;
            fa->floats = malloc(sizeof(double) * (a->n_floats + 1));
            if (!fa->floats) {
                fa = NULL;
                break;
            }
            for (size_t i = 0; i < a->n_floats; i++) fa->floats[i] = a->floats[i];
            fa->n = (int)a->n_floats;
        }
        break;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR: {
        if (!a->t) return fu_node_fail(r->err, r->g, node, "tensor attribute '%s' has no tensor", fu_safe(name).s);
        char what[512];
        snprintf(what, sizeof what, "node '%s' (%s): attribute '%s'", fu_safe(node->name).s, fu_safe(node->op).s, fu_safe(name).s);
        if (a->t->has_data_location && a->t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
            return fu_fail(r->err, "%s: %s: a tensor attribute must hold its data (not external data)", r->path,
                           what);
        fu_onnx_tensor tb;
        if (fu_onnx_read_tensor(r, a->t, what, &tb)) return -1;
        if (!(fa = fu_node_set_attr_int(node, name, 0))) {
            free(tb.data);
            break;
        }
        fa->kind = FU_ATTR_TENSOR;
        fa->t_dtype = tb.dt;
        fa->t_rank = tb.rank;
        memcpy(fa->t_shape, tb.shape, sizeof(int64_t) * (size_t)tb.rank);
        fa->t_data = tb.data;
        break;
    }
    default:
        return fu_node_fail(r->err, r->g, node, "attribute '%s' has type %d, which fusec does not read "
                            "(int, float, string, ints, floats, tensor)", fu_safe(name).s, (int)a->type);
    }
    if (!fa) return fu_fail(r->err, "%s: out of memory", r->path);
    return 0;
}

/* An attribute that became input `slot` in a later opset (Reduce* axes at
 * 18, Split split and Squeeze/Unsqueeze axes at 13) becomes a constant int64
 * input, fusec's (opset-18) form. */
static int attr_to_input(reader *r, int ni, const char *attr, int slot) {
    fu_node *n = &r->g->nodes[ni];
    const fu_attr *a = fu_node_attr(n, attr);
    if (!a) return 0;
    if (n->n_in > slot && n->in[slot] >= 0)
        return fu_node_fail(r->err, r->g, n, "'%s' is given both as an attribute and as input %d", attr, slot);
    if (a->kind != FU_ATTR_INTS && a->kind != FU_ATTR_INT)
        return fu_node_fail(r->err, r->g, n, "attribute '%s' must be ints", attr);
    int64_t one = a->i, len = a->kind == FU_ATTR_INTS ? a->n : 1;
    char base[512];
    snprintf(base, sizeof base, "%s_%s", onnx_str(n->name), attr);
    int c = fu_graph_add_const(r->g, base, FU_I64, 1, &len, a->kind == FU_ATTR_INTS ? (const void *)a->ints : &one,
                               r->err);
    if (c < 0) return -1;
    n = &r->g->nodes[ni];
    int *in = realloc(n->in, sizeof(int) * (size_t)(slot + 1 > n->n_in ? slot + 1 : n->n_in));
    if (!in) return fu_fail(r->err, "%s: out of memory", r->path);
    n->in = in;
    for (int i = n->n_in; i < slot; i++) in[i] = -1;
    if (slot >= n->n_in) n->n_in = slot + 1;
    in[slot] = c;
    /* drop the attribute */
    for (int i = 0; i < n->n_attrs; i++)
        if (strcmp(n->attrs[i].name, attr) == 0) {
            fu_attr_free(&n->attrs[i]);
            memmove(&n->attrs[i], &n->attrs[i + 1], sizeof(fu_attr) * (size_t)(n->n_attrs - i - 1));
            n->n_attrs--;
            break;
        }
    return 0;
}

/* A Constant node becomes a constant value named after its output. */
static int constant_node(reader *r, const Onnx__NodeProto *n) {
    char what[512];
    snprintf(what, sizeof what, "node '%s' (Constant)", fu_safe(onnx_str(n->name)).s);
    if (n->n_output != 1 || n->n_attribute != 1 || !n->output[0][0])
        return fu_fail(r->err, "%s: %s: wants one output and one attribute", r->path, what);
    const Onnx__AttributeProto *a = n->attribute[0];
    const char *an = a->name ? a->name : "";
    const char *out = n->output[0];
    if (strcmp(an, "value") == 0 && a->t) return fu_onnx_add_tensor(r, out, a->t, what);
    fu_dtype dt;
    int64_t len = 1;
    int rank = 0;
    const void *src;
    float f;
    if (strcmp(an, "value_float") == 0) {
        f = a->f;
        dt = FU_F32, src = &f;
    } else if (strcmp(an, "value_int") == 0) {
        dt = FU_I64, src = &a->i;
    } else if (strcmp(an, "value_floats") == 0) {
        dt = FU_F32, src = a->floats, rank = 1, len = (int64_t)a->n_floats;
    } else if (strcmp(an, "value_ints") == 0) {
        dt = FU_I64, src = a->ints, rank = 1, len = (int64_t)a->n_ints;
    } else {
        return fu_fail(r->err, "%s: %s: attribute '%s' is not supported (value, value_float, value_int, "
                       "value_floats, value_ints)", r->path, what, fu_safe(an).s);
    }
    int vi = fu_graph_add_value(r->g, out, FU_VAL_CONST);
    if (vi < 0) return fu_fail(r->err, "%s: %s: duplicate name '%s'", r->path, what, fu_safe(out).s);
    fu_value *v = &r->g->values[vi];
    v->dtype = dt;
    v->rank = rank;
    if (rank) v->shape[0] = fu_dim_const(len);
    v->producer = -1;
    if (fu_value_set_data(v, src, (size_t)len * fu_dtype_size(dt))) return fu_fail(r->err, "%s: out of memory", r->path);
    return 0;
}

static int read_nodes(reader *r, const Onnx__GraphProto *gp) {
    /* outputs first, so nodes may refer to later ones (toposort later) */
    int **outs = calloc(gp->n_node + 1, sizeof(int *));
    int rc = -1;
    if (!outs) return fu_fail(r->err, "%s: out of memory", r->path);
    for (size_t k = 0; k < gp->n_node; k++) {
        const Onnx__NodeProto *n = gp->node[k];
        if (strcmp(onnx_str(n->op_type), "Constant") == 0) {
            if (constant_node(r, n)) goto done;
            continue;
        }
        if (n->n_output == 0) {
            fu_fail(r->err, "%s: node '%s' (%s) has no outputs", r->path, fu_safe(onnx_str(n->name)).s, fu_safe(onnx_str(n->op_type)).s);
            goto done;
        }
        if (!(outs[k] = malloc(sizeof(int) * n->n_output))) {
            fu_fail(r->err, "%s: out of memory", r->path);
            goto done;
        }
        for (size_t o = 0; o < n->n_output; o++) {
            const char *on = n->output[o];
            char *fresh = NULL;
            if (!*on) on = fresh = fu_graph_unique_name(r->g, "unused_output");
            int v = on ? fu_graph_add_value(r->g, on, FU_VAL_NODE) : -1;
            free(fresh);
            if (v < 0) {
                fu_fail(r->err, "%s: node '%s' (%s): duplicate name '%s' (already an input, initializer or "
                        "another node's output)", r->path, fu_safe(onnx_str(n->name)).s, fu_safe(onnx_str(n->op_type)).s, fu_safe(on).s);
                goto done;
            }
            outs[k][o] = v;
        }
    }
    for (size_t k = 0; k < gp->n_node; k++) {
        const Onnx__NodeProto *n = gp->node[k];
        if (!outs[k]) continue;   /* Constant */
        char gen[32];
        snprintf(gen, sizeof gen, "node_%zu", k);
        const char *fusec_op = fu_onnx_fusec_op(n->domain, onnx_str(n->op_type));
        int ni = fu_graph_add_node(r->g, onnx_str(n->name) && *onnx_str(n->name) ? onnx_str(n->name) : gen,
                                   fusec_op ? fusec_op : onnx_str(n->op_type), 0, NULL, (int)n->n_output, outs[k]);
        int *in = malloc(sizeof(int) * (n->n_input + 1));
        if (ni < 0 || !in) {
            free(in);
            fu_fail(r->err, "%s: out of memory", r->path);
            goto done;
        }
        fu_node *node = &r->g->nodes[ni];
        for (size_t i = 0; i < n->n_input; i++) {
            const char *iname = n->input[i];
            in[i] = *iname ? fu_graph_find_value(r->g, iname) : -1;
            if (*iname && in[i] < 0) {
                free(in);
                fu_node_fail(r->err, r->g, node, "dangling input '%s' (no input, initializer or node output has "
                             "that name)", fu_safe(iname).s);
                goto done;
            }
        }
        free(node->in);
        node->in = in;
        node->n_in = (int)n->n_input;
        for (size_t a = 0; a < n->n_attribute; a++)
            if (set_attr(r, &r->g->nodes[ni], n->attribute[a])) goto done;
        if (fusec_op && fu_onnx_fusec_attrs(&r->g->nodes[ni], onnx_str(n->op_type))) {
            fu_fail(r->err, "%s: out of memory", r->path);
            goto done;
        }
        const char *op = onnx_str(n->op_type);
        int rc2 = 0;
        if (!strcmp(op, "ReduceSum") || !strcmp(op, "ReduceMean") || !strcmp(op, "ReduceMax") ||
            !strcmp(op, "Squeeze") || !strcmp(op, "Unsqueeze"))
            rc2 = attr_to_input(r, ni, "axes", 1);
        else if (!strcmp(op, "Split"))
            rc2 = attr_to_input(r, ni, "split", 1);
        if (rc2) goto done;
    }
    rc = 0;
done:
    for (size_t k = 0; k < gp->n_node; k++) free(outs[k]);
    free(outs);
    return rc;
}

/* ---- model ------------------------------------------------------------ */

static int read_graph(reader *r, const Onnx__ModelProto *m) {
    const Onnx__GraphProto *gp = m->graph;
    if (!gp) return fu_fail(r->err, "%s: the model has no graph", r->path);
    int64_t opset = -1;
    for (size_t i = 0; i < m->n_opset_import; i++)
        if (is_default_domain(m->opset_import[i]->domain)) opset = m->opset_import[i]->version;
    if (opset < 1 || opset > OPSET_MAX)
        return fu_fail(r->err, "%s: opset %lld of the default domain is not supported (fusec reads %d to %d)",
                       r->path, (long long)opset, OPSET_MIN, OPSET_MAX);
    r->opset = opset;
    for (size_t i = 0; i < m->n_metadata_props; i++)
        if (strcmp(onnx_str(m->metadata_props[i]->key), "fusec.symbols") == 0) r->meta_syms = m->metadata_props[i]->value;
    if (gp->n_sparse_initializer) return fu_fail(r->err, "%s: sparse initializers are not supported", r->path);
    if (check_ops(r, gp)) return -1;
    /* older opsets: only ops whose meaning has not changed since (ir/onnx_opset.c) */
    for (size_t k = 0; k < gp->n_node && opset < OPSET_MIN; k++) {
        const char *op = onnx_str(gp->node[k]->op_type);
        if (fu_onnx_op_since(op) > opset)
            return fu_fail(r->err, "%s: node '%s' (%s): opset %lld is not supported for %s (fusec reads opsets %d "
                           "to %d, and older ones for ops that mean the same since: %s since opset %lld)",
                           r->path, fu_safe(onnx_str(gp->node[k]->name)).s, fu_safe(op).s, (long long)opset,
                           fu_safe(op).s, OPSET_MIN, OPSET_MAX, fu_safe(op).s, (long long)fu_onnx_op_since(op));
    }
    if (fu_limit_check(FU_LIMIT_NODES, (int64_t)gp->n_node, r->path, "the node count", r->err)) return -1;

    /* inputs that are not initializers (older exporters list both) */
    r->g->inputs = malloc(sizeof(int) * (gp->n_input + 1));
    r->g->outputs = malloc(sizeof(int) * (gp->n_output + 1));
    if (!r->g->inputs || !r->g->outputs) return fu_fail(r->err, "%s: out of memory", r->path);
    for (size_t i = 0; i < gp->n_input; i++) {
        const Onnx__ValueInfoProto *vi = gp->input[i];
        int is_init = 0;
        for (size_t j = 0; j < gp->n_initializer && !is_init; j++)
            is_init = strcmp(onnx_str(gp->initializer[j]->name), onnx_str(vi->name)) == 0;
        if (is_init) continue;
        char what[200];
        snprintf(what, sizeof what, "input '%s'", fu_safe(onnx_str(vi->name)).s);
        if (!*onnx_str(vi->name)) return fu_fail(r->err, "%s: an input has no name", r->path);
        int v = fu_graph_add_value(r->g, onnx_str(vi->name), FU_VAL_INPUT);
        if (v < 0) return fu_fail(r->err, "%s: %s: duplicate name", r->path, what);
        fu_value *val = &r->g->values[v];
        fu_dtype dt;
        int rank;
        fu_dim shape[FU_MAX_RANK];
        if (value_type(r, vi, what, &dt, &rank, shape, 1)) return -1;
        val = &r->g->values[v];
        val->dtype = dt;
        val->rank = rank;
        memcpy(val->shape, shape, sizeof(fu_dim) * (size_t)rank);
        val->storage = FU_STORE_INPUT;
        val->index = r->g->n_inputs;
        r->g->inputs[r->g->n_inputs++] = v;
    }
    for (size_t j = 0; j < gp->n_initializer; j++) {
        const Onnx__TensorProto *t = gp->initializer[j];
        char what[200];
        snprintf(what, sizeof what, "initializer '%s'", fu_safe(onnx_str(t->name)).s);
        if (!onnx_str(t->name) || !*onnx_str(t->name)) return fu_fail(r->err, "%s: initializer %zu has no name", r->path, j);
        if (fu_onnx_add_tensor(r, onnx_str(t->name), t, what)) return -1;
    }
    if (read_nodes(r, gp)) return -1;
    for (size_t i = 0; i < gp->n_output; i++) {
        const Onnx__ValueInfoProto *vi = gp->output[i];
        char what[200];
        snprintf(what, sizeof what, "output '%s'", fu_safe(onnx_str(vi->name)).s);
        int v = fu_graph_find_value(r->g, onnx_str(vi->name));
        if (v < 0) return fu_fail(r->err, "%s: %s is not produced by any node, input or initializer", r->path, what);
        fu_value *val = &r->g->values[v];
        if (val->is_output) return fu_fail(r->err, "%s: %s listed twice", r->path, what);
        fu_dtype dt;
        int rank;
        fu_dim shape[FU_MAX_RANK];
        if (value_type(r, vi, what, &dt, &rank, shape, 0)) return -1;
        val = &r->g->values[v];
        val->decl_dtype = dt;
        val->decl_rank = rank;
        if (rank > 0) memcpy(val->decl_shape, shape, sizeof(fu_dim) * (size_t)rank);
        val->is_output = 1;
        r->g->outputs[r->g->n_outputs++] = v;
    }
    return fu_graph_toposort(r->g, r->err);
}

static fu_graph *parse(const uint8_t *buf, size_t len, const char *path, const char *identity, const fu_ir_opts *o,
                       fu_err *err) {
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, len, buf);
    if (!m) {
        fu_fail(err, "%s: not a valid ONNX model (the protobuf does not decode as a ModelProto)", path);
        return NULL;
    }
    const char *name = m->graph && onnx_str(m->graph->name) && *onnx_str(m->graph->name) ? onnx_str(m->graph->name) : "model";
    fu_graph *g = fu_graph_new(name);
    if (!g || !(g->path = strdup(path))) {
        fu_graph_free(g);
        onnx__model_proto__free_unpacked(m, NULL);
        fu_fail(err, "%s: out of memory", path);
        return NULL;
    }
    g->weights_allow_external = o && o->allow_external_weights;
    reader rd = {g, path, o, err, 0, NULL, NULL};
    int rc = read_graph(&rd, m) || fu_onnx_finish_weights(&rd, identity, buf, len);
    onnx__model_proto__free_unpacked(m, NULL);
    fu_weights_close(rd.w);
    if (rc) {
        fu_graph_free(g);
        return NULL;
    }
    return g;
}

fu_graph *fu_onnx_parse(const uint8_t *buf, size_t len, const char *path, const fu_ir_opts *o, fu_err *err) {
    char identity[64];
    snprintf(identity, sizeof identity, "model bytes:%zu", len);
    return parse(buf, len, path ? path : "model.onnx", identity, o, err);
}

/* The model file's bytes (malloc'd) and its identity "path:size:mtime". */
static uint8_t *read_model_file(const char *path, size_t *len, char *identity, size_t idlen, fu_err *err) {
    struct stat st;
    int fd = fu_open_regular(path, "model", &st, err);
    if (fd < 0) return NULL;
    if (st.st_size > ((off_t)1 << 31)) {
        close(fd);
        fu_fail(err, "%s: the ONNX file is larger than 2 GiB (keep large tensors as external data)", path);
        return NULL;
    }
    char *real = realpath(path, NULL);
    snprintf(identity, idlen, "%s:%lld:%lld.%09ld", real ? real : path, (long long)st.st_size,
             (long long)st.st_mtim.tv_sec, (long)st.st_mtim.tv_nsec);
    free(real);
    size_t n = (size_t)st.st_size, got = 0;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        close(fd);
        fu_fail(err, "%s: out of memory reading the model", path);
        return NULL;
    }
    while (got < n) {
        ssize_t k = read(fd, buf + got, n - got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        got += (size_t)k;
    }
    close(fd);
    if (got != n) {
        free(buf);
        fu_fail(err, "%s: read error", path);
        return NULL;
    }
    *len = n;
    return buf;
}

fu_graph *fu_onnx_load(const char *path, const fu_ir_opts *o, fu_err *err) {
    size_t len;
    char identity[4200];
    uint8_t *buf = read_model_file(path, &len, identity, sizeof identity, err);
    if (!buf) return NULL;
    fu_graph *g = parse(buf, len, path, identity, o, err);
    free(buf);
    return g;
}

fu_weights *fu_onnx_weights_open(const char *path, int allow_external, fu_err *err) {
    size_t len;
    char identity[4200];
    uint8_t *buf = read_model_file(path, &len, identity, sizeof identity, err);
    if (!buf) return NULL;
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, len, buf);
    if (!m || !m->graph) {
        free(buf);
        if (m) onnx__model_proto__free_unpacked(m, NULL);
        fu_fail(err, "%s: not a valid ONNX model (the protobuf does not decode as a ModelProto)", path);
        return NULL;
    }
    fu_ir_opts o = {.allow_external_weights = allow_external};
    reader rd = {NULL, path, &o, err, 0, fu_weights_new(path, err), NULL};
    const Onnx__GraphProto *gp = m->graph;
    int rc = rd.w ? 0 : -1;
    for (size_t j = 0; rc == 0 && j < gp->n_initializer; j++) {
        char what[200];
        snprintf(what, sizeof what, "initializer '%s'", fu_safe(onnx_str(gp->initializer[j]->name)).s);
        rc = fu_onnx_add_tensor(&rd, onnx_str(gp->initializer[j]->name), gp->initializer[j], what);
    }
    for (size_t k = 0; rc == 0 && k < gp->n_node; k++) {
        const Onnx__NodeProto *n = gp->node[k];
        if (strcmp(onnx_str(n->op_type), "Constant") || n->n_output != 1 || n->n_attribute != 1 ||
            strcmp(onnx_str(n->attribute[0]->name), "value") || !n->attribute[0]->t)
            continue;
        char what[200];
        snprintf(what, sizeof what, "node '%s' (Constant)", fu_safe(onnx_str(n->name)).s);
        rc = fu_onnx_add_tensor(&rd, n->output[0], n->attribute[0]->t, what);
    }
    onnx__model_proto__free_unpacked(m, NULL);
    if (rc == 0) rc = fu_onnx_finish_weights(&rd, identity, buf, len);
    free(buf);
    if (rc) {
        fu_weights_close(rd.w);
        return NULL;
    }
    return rd.w;
}
