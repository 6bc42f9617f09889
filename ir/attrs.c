/* Node attributes (read with defaults, set, freed) and the values of
 * constants (stored bytes read as float or integer), for every layer
 * above. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "ir.h"

/* ---- attributes ------------------------------------------------------ */

const fu_attr *fu_node_attr(const fu_node *n, const char *name) {
    for (int i = 0; i < n->n_attrs; i++)
        if (strcmp(n->attrs[i].name, name) == 0) return &n->attrs[i];
    return NULL;
}

int64_t fu_attr_int(const fu_node *n, const char *name, int64_t dflt) {
    const fu_attr *a = fu_node_attr(n, name);
    if (!a) return dflt;
    if (a->kind == FU_ATTR_INT) return a->i;
    if (a->kind == FU_ATTR_FLOAT && isfinite(a->f) && fabs(a->f) < 9.2e18) return (int64_t)a->f;
    return dflt;
}

double fu_attr_float(const fu_node *n, const char *name, double dflt) {
    const fu_attr *a = fu_node_attr(n, name);
    if (!a) return dflt;
    if (a->kind == FU_ATTR_FLOAT) return a->f;
    if (a->kind == FU_ATTR_INT) return (double)a->i;
    return dflt;
}

const char *fu_attr_string(const fu_node *n, const char *name, const char *dflt) {
    const fu_attr *a = fu_node_attr(n, name);
    return a && a->kind == FU_ATTR_STRING && a->s ? a->s : dflt;
}

void fu_attr_free(fu_attr *a) {
    if (!a) return;
    free(a->name);
    free(a->ints);
    free(a->floats);
    free(a->s);
    free(a->t_data);
    a->name = NULL;
    a->ints = NULL;
    a->floats = NULL;
    a->s = NULL;
    a->t_data = NULL;
}

/* Existing attribute of that name, emptied, or a fresh one appended. */
static fu_attr *attr_slot(fu_node *n, const char *name) {
    for (int i = 0; i < n->n_attrs; i++) {
        if (strcmp(n->attrs[i].name, name) == 0) {
            char *keep = n->attrs[i].name;
            n->attrs[i].name = NULL;
            fu_attr_free(&n->attrs[i]);
            memset(&n->attrs[i], 0, sizeof n->attrs[i]);
            n->attrs[i].name = keep;
            return &n->attrs[i];
        }
    }
    char *copy = strdup(name);
    fu_attr *na = realloc(n->attrs, sizeof(fu_attr) * ((size_t)n->n_attrs + 1));
    if (!copy || !na) {
        free(copy);
        if (na) n->attrs = na;
        return NULL;
    }
    n->attrs = na;
    fu_attr *a = &n->attrs[n->n_attrs++];
    memset(a, 0, sizeof *a);
    a->name = copy;
    return a;
}

fu_attr *fu_node_set_attr_int(fu_node *n, const char *name, int64_t v) {
    fu_attr *a = attr_slot(n, name);
    if (!a) return NULL;
    a->kind = FU_ATTR_INT;
    a->i = v;
    return a;
}

fu_attr *fu_node_set_attr_float(fu_node *n, const char *name, double v) {
    fu_attr *a = attr_slot(n, name);
    if (!a) return NULL;
    a->kind = FU_ATTR_FLOAT;
    a->f = v;
    return a;
}

fu_attr *fu_node_set_attr_string(fu_node *n, const char *name, const char *v) {
    char *copy = strdup(v);
    fu_attr *a = copy ? attr_slot(n, name) : NULL;
    if (!a) {
        free(copy);
        return NULL;
    }
    a->kind = FU_ATTR_STRING;
    a->s = copy;
    return a;
}

fu_attr *fu_node_set_attr_ints(fu_node *n, const char *name, int count, const int64_t *v) {
    fu_attr *a = attr_slot(n, name);
    if (!a) return NULL;
    a->kind = FU_ATTR_INTS;
    a->ints = malloc(sizeof(int64_t) * (size_t)(count > 0 ? count : 1));
    if (!a->ints) return NULL;
    a->n = count;
    if (count > 0) memcpy(a->ints, v, sizeof(int64_t) * (size_t)count);
    return a;
}

/* ---- constant data --------------------------------------------------- */

int fu_value_set_data(fu_value *v, const void *bytes, size_t nbytes) {
    void *copy = malloc(nbytes ? nbytes : 1);
    if (!copy) return -1;
    if (nbytes) memcpy(copy, bytes, nbytes);
    if (v->owns_data) free(v->data);
    v->data = copy;
    v->nbytes = nbytes;
    v->owns_data = 1;
    v->external = 0;
    return 0;
}

/* Bounds are checked so a bad index reads 0 instead of outside the buffer. */
double fu_const_get_f(const fu_value *v, int64_t i) {
    size_t es = fu_dtype_size(v->dtype);
    if (!v->data || es == 0 || i < 0 || (uint64_t)(i + 1) * es > v->nbytes) return 0;
    const unsigned char *p = (const unsigned char *)v->data + (size_t)i * es;
    switch (v->dtype) {
    case FU_F32: { float x; memcpy(&x, p, 4); return x; }
    case FU_F16: { uint16_t h; memcpy(&h, p, 2); return fu_f16_to_f32(h); }
    case FU_BF16: { uint16_t h; memcpy(&h, p, 2); return fu_bf16_to_f32(h); }
    case FU_I64: { int64_t x; memcpy(&x, p, 8); return (double)x; }
    case FU_I32: { int32_t x; memcpy(&x, p, 4); return x; }
    case FU_BOOL: return p[0] != 0;
    default: return 0;
    }
}

int64_t fu_const_get_i(const fu_value *v, int64_t i) {
    size_t es = fu_dtype_size(v->dtype);
    if (!v->data || es == 0 || i < 0 || (uint64_t)(i + 1) * es > v->nbytes) return 0;
    const unsigned char *p = (const unsigned char *)v->data + (size_t)i * es;
    switch (v->dtype) {
    case FU_I64: { int64_t x; memcpy(&x, p, 8); return x; }
    case FU_I32: { int32_t x; memcpy(&x, p, 4); return x; }
    case FU_BOOL: return p[0] != 0;
    default: {
        double d = fu_const_get_f(v, i);  /* float: truncate, saturating */
        if (d != d) return 0;
        if (d >= 9.2233720368547758e18) return INT64_MAX;
        if (d <= -9.2233720368547758e18) return INT64_MIN;
        return (int64_t)d;
    }
    }
}

int fu_graph_add_const(fu_graph *g, const char *base, fu_dtype t, int rank, const int64_t *shape,
                      const void *data, fu_err *err) {
    char *name = fu_graph_unique_name(g, base);
    int v = name ? fu_graph_add_value(g, name, FU_VAL_CONST) : -1;
    free(name);
    if (v < 0) return fu_fail(err, "out of memory adding a constant");
    fu_value *val = &g->values[v];
    val->dtype = t;
    val->rank = rank;
    size_t numel = 1;
    for (int k = 0; k < rank; k++) {
        val->shape[k] = fu_dim_const(shape[k]);
        numel *= (size_t)shape[k];
    }
    val->producer = -1;
    if (fu_value_set_data(val, data, numel * fu_dtype_size(t))) return fu_fail(err, "out of memory adding a constant");
    return v;
}
