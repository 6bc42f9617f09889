/* JSON IR reader (format: docs/ir.md); the writers are ir/json_write.c.
 *
 * The reader checks everything a later stage would otherwise trip over:
 * field types, dtype names, shapes (symbols bounded, sizes sane), duplicate
 * and dangling names, inline data sizes, and that external initializers
 * match the weights file. Node output shapes are left to fu_infer. */
#include <errno.h>
#include <json-c/json.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "json_check.h"
#include <unistd.h>
#include "files.h"
#include "json_ir.h"
#include "npy.h"
#include "onnx_read.h"
#include "weights.h"
#include "model_limits.h"

typedef struct {
    fu_graph *g;
    const char *path;   /* model file, for messages */
    fu_err *err;
    int allow_external; /* fu_ir_opts.allow_external_weights */
} reader;

static int check_keys(reader *r, json_object *obj, const char *const *allowed, const char *what) {
    json_object_object_foreach(obj, key, val) {
        (void)val;
        int ok = strcmp(key, "doc_string") == 0;
        for (int i = 0; allowed[i] && !ok; i++) ok = strcmp(key, allowed[i]) == 0;
        if (!ok) return fu_fail(r->err, "%s: %s: unknown field '%s'", r->path, what, fu_safe(key).s);
    }
    return 0;
}

/* Member `key` of obj with JSON type `type`; NULL (and an error if
 * required) when absent or of another type. */
static json_object *member(reader *r, json_object *obj, const char *key, json_type type,
                           int required, const char *what, int *failed) {
    json_object *v;
    if (!json_object_object_get_ex(obj, key, &v) || v == NULL) {
        if (required) {
            fu_fail(r->err, "%s: %s: missing field \"%s\"", r->path, what, key);
            *failed = 1;
        }
        return NULL;
    }
    if (!json_object_is_type(v, type)) {
        fu_fail(r->err, "%s: %s: field \"%s\" must be a JSON %s, not %s", r->path, what, key,
                json_type_to_name(type), json_type_to_name(json_object_get_type(v)));
        *failed = 1;
        return NULL;
    }
    return v;
}

static int is_identifier(const char *s) {
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_')) return 0;
    for (s++; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_' ||
              (*s >= '0' && *s <= '9')))
            return 0;
    return 1;
}

/* ---- shapes ------------------------------------------------------------ */

/* A dim written as text: a product of integers and bounded symbols, each
 * optionally raised to a power: "seq", "2*seq", "seq^2", "4*batch*seq". */
static int parse_dim_text(reader *r, const char *text, fu_dim *out, const char *what) {
    fu_dim d = fu_dim_const(1);
    const char *p = text;
    if (!*p) return fu_fail(r->err, "%s: %s: empty dim", r->path, what);
    for (;;) {
        fu_dim factor;
        if (*p >= '0' && *p <= '9') {
            errno = 0;
            char *end;
            long long c = strtoll(p, &end, 10);
            if (errno || c > FU_MAX_NUMEL)
                return fu_fail(r->err, "%s: %s: dim '%s' is too large", r->path, what, fu_safe(text).s);
            factor = fu_dim_const(c);
            p = end;
        } else {
            char name[64];
            size_t n = 0;
            while ((*p == '_' || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                    (n > 0 && *p >= '0' && *p <= '9')) && n + 1 < sizeof name)
                name[n++] = *p++;
            name[n] = 0;
            if (n == 0)
                return fu_fail(r->err, "%s: %s: cannot read dim '%s' (want an integer, a symbol or "
                               "a product like 2*seq)", r->path, what, fu_safe(text).s);
            int sym = -1;
            for (int i = 0; i < r->g->n_syms; i++)
                if (strcmp(r->g->sym_names[i], name) == 0) sym = i;
            if (sym < 0)
                return fu_fail(r->err, "%s: %s: symbol '%s' has no bound in \"symbols\"", r->path,
                               what, fu_safe(name).s);
            factor = fu_dim_sym(sym);
            if (*p == '^') {
                p++;
                char *end;
                long pw = strtol(p, &end, 10);
                if (end == p || pw < 1 || pw > 16)
                    return fu_fail(r->err, "%s: %s: bad power in dim '%s'", r->path, what,
                                   fu_safe(text).s);
                factor.pow[sym] = (uint8_t)pw;
                p = end;
            }
        }
        d = fu_dim_mul(d, factor);
        if (*p == 0) break;
        if (*p != '*')
            return fu_fail(r->err, "%s: %s: cannot read dim '%s'", r->path, what, fu_safe(text).s);
        p++;
    }
    if (fu_dim_eval(d, r->g->sym_max) > FU_MAX_NUMEL)
        return fu_fail(r->err, "%s: %s: dim '%s' exceeds %lld at the symbols' bounds", r->path,
                       what, fu_safe(text).s, (long long)FU_MAX_NUMEL);
    *out = d;
    return 0;
}

/* shape array -> dims; static_only for initializers and tensor attrs. */
static int parse_shape(reader *r, json_object *arr, int *rank, fu_dim *shape, int static_only,
                       const char *what) {
    size_t n = json_object_array_length(arr);
    if (n > FU_MAX_RANK)
        return fu_fail(r->err, "%s: %s: rank %zu exceeds %d", r->path, what, n, FU_MAX_RANK);
    int64_t numel = 1;
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(arr, i);
        if (json_object_is_type(e, json_type_int)) {
            int64_t c = json_object_get_int64(e);
            if (c < 0)
                return fu_fail(r->err, "%s: %s: negative dim %lld", r->path, what, (long long)c);
            if (c > FU_MAX_NUMEL)
                return fu_fail(r->err, "%s: %s: dim %lld exceeds the limit %lld", r->path, what,
                               (long long)c, (long long)FU_MAX_NUMEL);
            shape[i] = fu_dim_const(c);
        } else if (json_object_is_type(e, json_type_string) && !static_only) {
            if (parse_dim_text(r, json_object_get_string(e), &shape[i], what)) return -1;
        } else {
            return fu_fail(r->err, "%s: %s: dim %zu must be %s", r->path, what, i,
                           static_only ? "a non-negative integer" : "an integer or a symbol name");
        }
        int64_t d = fu_dim_eval(shape[i], r->g->sym_max);
        if (__builtin_mul_overflow(numel, d, &numel) || numel > FU_MAX_NUMEL)
            return fu_fail(r->err, "%s: %s: more than %lld elements", r->path, what,
                           (long long)FU_MAX_NUMEL);
    }
    *rank = (int)n;
    return 0;
}

static fu_dtype parse_dtype(reader *r, json_object *o, const char *what) {
    const char *s = json_object_get_string(o);
    fu_dtype t = fu_dtype_from_name(s);
    if (t == FU_UNDEF)
        fu_fail(r->err, "%s: %s: unknown dtype '%s' (float32, float16, bfloat16, int64, int32, bool)",
                r->path, what, fu_safe(s).s);
    return t;
}

/* ---- sections ---------------------------------------------------------- */

static int parse_symbols(reader *r, json_object *syms) {
    json_object_object_foreach(syms, key, val) {
        if (r->g->n_syms == FU_MAX_SYMS)
            return fu_fail(r->err, "%s: more than %d symbols", r->path, FU_MAX_SYMS);
        if (!is_identifier(key))
            return fu_fail(r->err, "%s: symbol '%s' is not an identifier", r->path, fu_safe(key).s);
        if (!json_object_is_type(val, json_type_int))
            return fu_fail(r->err, "%s: symbol '%s': bound must be an integer", r->path, fu_safe(key).s);
        int64_t b = json_object_get_int64(val);
        if (b < 1 || b > FU_MAX_NUMEL)
            return fu_fail(r->err, "%s: symbol '%s': bound %lld is out of range [1, %lld]", r->path,
                           fu_safe(key).s, (long long)b, (long long)FU_MAX_NUMEL);
        int i = r->g->n_syms;
        if (!(r->g->sym_names[i] = strdup(key))) return fu_fail(r->err, "%s: out of memory", r->path);
        r->g->sym_max[i] = b;
        r->g->n_syms++;
    }
    return 0;
}

static int parse_inputs(reader *r, json_object *arr) {
    static const char *const keys[] = {"name", "dtype", "shape", NULL};
    size_t n = json_object_array_length(arr);
    r->g->inputs = malloc(sizeof(int) * (n + 1));
    if (!r->g->inputs) return fu_fail(r->err, "%s: out of memory", r->path);
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(arr, i);
        char what[512];
        snprintf(what, sizeof what, "inputs[%zu]", i);
        if (!json_object_is_type(e, json_type_object))
            return fu_fail(r->err, "%s: %s must be an object", r->path, what);
        int failed = 0;
        json_object *jn = member(r, e, "name", json_type_string, 1, what, &failed);
        if (failed) return -1;
        snprintf(what, sizeof what, "input '%s'", fu_safe(json_object_get_string(jn)).s);
        json_object *jd = member(r, e, "dtype", json_type_string, 1, what, &failed);
        json_object *js = failed ? NULL : member(r, e, "shape", json_type_array, 1, what, &failed);
        if (failed || check_keys(r, e, keys, what)) return -1;
        int v = fu_graph_add_value(r->g, json_object_get_string(jn), FU_VAL_INPUT);
        if (v < 0) return fu_fail(r->err, "%s: %s: duplicate name", r->path, what);
        fu_value *val = &r->g->values[v];
        if ((val->dtype = parse_dtype(r, jd, what)) == FU_UNDEF) return -1;
        if (parse_shape(r, js, &val->rank, val->shape, 0, what)) return -1;
        val->storage = FU_STORE_INPUT;
        val->index = (int)i;
        r->g->inputs[r->g->n_inputs++] = v;
    }
    return 0;
}

/* Moves an fu_array's bytes into a constant value (ownership transfers). */
static void take_array(fu_value *v, fu_array *a) {
    v->data = a->data;
    v->nbytes = a->nbytes;
    v->owns_data = 1;
    v->external = 0;
    a->data = NULL;
}

static int parse_initializer(reader *r, json_object *e, size_t idx) {
    static const char *const keys[] = {"name", "dtype", "shape", "data", NULL};
    char what[512];
    snprintf(what, sizeof what, "initializers[%zu]", idx);
    if (!json_object_is_type(e, json_type_object))
        return fu_fail(r->err, "%s: %s must be an object", r->path, what);
    int failed = 0;
    json_object *jn = member(r, e, "name", json_type_string, 1, what, &failed);
    if (failed) return -1;
    const char *name = json_object_get_string(jn);
    snprintf(what, sizeof what, "initializer '%s'", fu_safe(name).s);
    json_object *jd = member(r, e, "dtype", json_type_string, 1, what, &failed);
    json_object *js = failed ? NULL : member(r, e, "shape", json_type_array, 1, what, &failed);
    if (failed || check_keys(r, e, keys, what)) return -1;
    int vi = fu_graph_add_value(r->g, name, FU_VAL_CONST);
    if (vi < 0) return fu_fail(r->err, "%s: %s: duplicate name", r->path, what);
    fu_value *v = &r->g->values[vi];
    if ((v->dtype = parse_dtype(r, jd, what)) == FU_UNDEF) return -1;
    if (parse_shape(r, js, &v->rank, v->shape, 1, what)) return -1;
    int64_t numel = 1;
    fu_value_numel_const(v, &numel);
    size_t want = (size_t)numel * fu_dtype_size(v->dtype);

    json_object *data;
    if (json_object_object_get_ex(e, "data", &data)) {
        fu_array a;
        fu_err inner;
        if (fu_array_from_json_value(data, v->dtype, &a, &inner))
            return fu_fail(r->err, "%s: %s: data: %s", r->path, what, inner.msg);
        if (a.nbytes != want) {
            long long got = (long long)(a.nbytes / fu_dtype_size(v->dtype));
            fu_array_free(&a);
            return fu_fail(r->err, "%s: %s: data has %lld elements but the shape needs %lld",
                           r->path, what, got, (long long)numel);
        }
        take_array(v, &a);
        return 0;
    }

    if (!r->g->weights)
        return fu_fail(r->err, "%s: %s has no \"data\" and the model names no \"weights\" file",
                       r->path, what);
    fu_dtype wt;
    int wrank;
    int64_t wshape[FU_MAX_RANK];
    const void *wdata;
    size_t wbytes;
    if (fu_weights_find(r->g->weights, name, &wt, &wrank, wshape, &wdata, &wbytes))
        return fu_fail(r->err, "%s: %s not found in weights file %s", r->path, what,
                       r->g->weights_path);
    if (wt != v->dtype)
        return fu_fail(r->err, "%s: %s declared %s but the weights file has %s", r->path, what,
                       fu_dtype_name(v->dtype), fu_dtype_name(wt));
    int same = wrank == v->rank;
    for (int i = 0; same && i < wrank; i++) same = wshape[i] == v->shape[i].coef;
    if (!same) {
        char decl[160] = "", file[160] = "";
        size_t a = 0, b = 0;
        for (int i = 0; i < v->rank; i++)
            a += (size_t)snprintf(decl + a, sizeof decl - a, "%s%lld", i ? "," : "",
                                  (long long)v->shape[i].coef);
        for (int i = 0; i < wrank; i++)
            b += (size_t)snprintf(file + b, sizeof file - b, "%s%lld", i ? "," : "",
                                  (long long)wshape[i]);
        return fu_fail(r->err, "%s: %s declared shape [%s] but the weights file has [%s]", r->path,
                       what, decl, file);
    }
    v->data = (void *)wdata;
    v->nbytes = wbytes;
    v->owns_data = 0;
    v->external = 1;
    v->storage = FU_STORE_WEIGHT;
    return 0;
}

/* A float attribute value: a number, or "inf"/"-inf"/"nan". */
static int attr_float_elem(json_object *e, double *out) {
    if (json_object_is_type(e, json_type_double) || json_object_is_type(e, json_type_int)) {
        *out = json_object_get_double(e);
        return 0;
    }
    if (json_object_is_type(e, json_type_string)) {
        const char *s = json_object_get_string(e);
        if (strcmp(s, "inf") == 0) *out = INFINITY;
        else if (strcmp(s, "-inf") == 0) *out = -INFINITY;
        else if (strcmp(s, "nan") == 0) *out = NAN;
        else return -1;
        return 0;
    }
    return -1;
}

static int parse_attr(reader *r, const fu_node *n, const char *key, json_object *val, fu_attr *a) {
    const fu_graph *g = r->g;
    fu_err *err = r->err;
    memset(a, 0, sizeof *a);
    if (!(a->name = strdup(key))) return fu_node_fail(err, g, n, "out of memory");
    switch (json_object_get_type(val)) {
    case json_type_int:
    case json_type_boolean:
        a->kind = FU_ATTR_INT;
        a->i = json_object_get_int64(val);
        return 0;
    case json_type_double:
        a->kind = FU_ATTR_FLOAT;
        a->f = json_object_get_double(val);
        return 0;
    case json_type_string:
        a->kind = FU_ATTR_STRING;
        if (!(a->s = strdup(json_object_get_string(val)))) return fu_node_fail(err, g, n, "out of memory");
        return 0;
    case json_type_array: {
        size_t len = json_object_array_length(val);
        int any_float = 0;
        for (size_t i = 0; i < len; i++) {
            json_object *e = json_object_array_get_idx(val, i);
            if (json_object_is_type(e, json_type_int) || json_object_is_type(e, json_type_boolean))
                continue;
            double x;
            if (attr_float_elem(e, &x))
                return fu_node_fail(err, g, n, "attribute '%s': list element %zu is not a number",
                                    fu_safe(key).s, i);
            any_float = 1;
        }
        a->n = (int)len;
        if (any_float) {
            a->kind = FU_ATTR_FLOATS;
            if (!(a->floats = malloc(sizeof(double) * (len + 1))))
                return fu_node_fail(err, g, n, "out of memory");
            for (size_t i = 0; i < len; i++)
                attr_float_elem(json_object_array_get_idx(val, i), &a->floats[i]);
        } else {
            a->kind = FU_ATTR_INTS;
            if (!(a->ints = malloc(sizeof(int64_t) * (len + 1))))
                return fu_node_fail(err, g, n, "out of memory");
            for (size_t i = 0; i < len; i++)
                a->ints[i] = json_object_get_int64(json_object_array_get_idx(val, i));
        }
        return 0;
    }
    case json_type_object: {
        json_object *jf, *jd, *js, *jdata;
        if (json_object_object_length(val) == 1 && json_object_object_get_ex(val, "float", &jf)) {
            a->kind = FU_ATTR_FLOAT;  /* {"float": "inf"}: a non-finite float */
            if (attr_float_elem(jf, &a->f))
                return fu_node_fail(err, g, n, "attribute '%s': \"float\" must be a number, "
                                    "\"inf\", \"-inf\" or \"nan\"", fu_safe(key).s);
            return 0;
        }
        char what[512];
        snprintf(what, sizeof what, "node '%s' (%s): attribute '%s'", fu_safe(n->name).s,
                 fu_safe(n->op).s, fu_safe(key).s);
        static const char *const keys[] = {"dtype", "shape", "data", NULL};
        int failed = 0;
        jd = member(r, val, "dtype", json_type_string, 1, what, &failed);
        js = failed ? NULL : member(r, val, "shape", json_type_array, 1, what, &failed);
        if (failed || check_keys(r, val, keys, what)) return -1;
        if (!json_object_object_get_ex(val, "data", &jdata))
            return fu_fail(err, "%s: %s: missing field \"data\"", r->path, what);
        a->kind = FU_ATTR_TENSOR;
        if ((a->t_dtype = parse_dtype(r, jd, what)) == FU_UNDEF) return -1;
        fu_dim dims[FU_MAX_RANK];
        if (parse_shape(r, js, &a->t_rank, dims, 1, what)) return -1;
        int64_t numel = 1;
        for (int i = 0; i < a->t_rank; i++) {
            a->t_shape[i] = dims[i].coef;
            numel *= dims[i].coef;
        }
        fu_array arr;
        fu_err inner;
        if (fu_array_from_json_value(jdata, a->t_dtype, &arr, &inner))
            return fu_fail(err, "%s: %s: data: %s", r->path, what, inner.msg);
        if (arr.nbytes != (size_t)numel * fu_dtype_size(a->t_dtype)) {
            fu_array_free(&arr);
            return fu_fail(err, "%s: %s: data has the wrong number of elements (shape needs %lld)",
                           r->path, what, (long long)numel);
        }
        a->t_data = arr.data;
        return 0;
    }
    default:
        return fu_node_fail(err, g, n, "attribute '%s' has unsupported JSON type %s", fu_safe(key).s,
                            json_type_to_name(json_object_get_type(val)));
    }
}

/* Nodes are read in two passes: first every node's outputs become values
 * (so inputs may name values produced later in the file; fu_infer sorts),
 * then inputs are resolved and nodes added. */
static int parse_nodes(reader *r, json_object *arr) {
    static const char *const keys[] = {"name", "op", "inputs", "outputs", "attrs", NULL};
    size_t n = json_object_array_length(arr);
    int **outs = calloc(n + 1, sizeof(int *));
    int rc = -1;
    if (!outs) return fu_fail(r->err, "%s: out of memory", r->path);

    for (size_t k = 0; k < n; k++) {
        json_object *e = json_object_array_get_idx(arr, k);
        char what[512], gen[32];
        snprintf(what, sizeof what, "nodes[%zu]", k);
        if (!json_object_is_type(e, json_type_object)) {
            fu_fail(r->err, "%s: %s must be an object", r->path, what);
            goto done;
        }
        int failed = 0;
        json_object *jname = member(r, e, "name", json_type_string, 0, what, &failed);
        json_object *jop = failed ? NULL : member(r, e, "op", json_type_string, 1, what, &failed);
        if (failed) goto done;
        snprintf(gen, sizeof gen, "node_%zu", k);
        /* a stand-in so messages can name the node before it exists */
        fu_node tmp;
        memset(&tmp, 0, sizeof tmp);
        tmp.name = (char *)(jname ? json_object_get_string(jname) : gen);
        tmp.op = (char *)json_object_get_string(jop);
        snprintf(what, sizeof what, "node '%s' (%s)", fu_safe(tmp.name).s, fu_safe(tmp.op).s);
        json_object *jin = member(r, e, "inputs", json_type_array, 1, what, &failed);
        json_object *jout = failed ? NULL : member(r, e, "outputs", json_type_array, 1, what, &failed);
        if (failed || check_keys(r, e, keys, what)) goto done;
        if (!failed) member(r, e, "attrs", json_type_object, 0, what, &failed);
        if (failed) goto done;
        (void)jin;
        size_t n_out = json_object_array_length(jout);
        if (n_out == 0) {
            fu_node_fail(r->err, r->g, &tmp, "has no outputs");
            goto done;
        }
        outs[k] = malloc(sizeof(int) * n_out);
        if (!outs[k]) {
            fu_fail(r->err, "%s: out of memory", r->path);
            goto done;
        }
        for (size_t o = 0; o < n_out; o++) {
            json_object *jo = json_object_array_get_idx(jout, o);
            if (!json_object_is_type(jo, json_type_string) || !*json_object_get_string(jo)) {
                fu_node_fail(r->err, r->g, &tmp, "output %zu must be a non-empty name", o);
                goto done;
            }
            const char *oname = json_object_get_string(jo);
            int v = fu_graph_add_value(r->g, oname, FU_VAL_NODE);
            if (v < 0) {
                fu_node_fail(r->err, r->g, &tmp, "duplicate name '%s' (already an input, "
                             "initializer or another node's output)", fu_safe(oname).s);
                goto done;
            }
            outs[k][o] = v;
        }
    }

    for (size_t k = 0; k < n; k++) {
        json_object *e = json_object_array_get_idx(arr, k), *jname, *jop, *jin, *jout, *jattrs;
        json_object_object_get_ex(e, "op", &jop);
        json_object_object_get_ex(e, "inputs", &jin);
        json_object_object_get_ex(e, "outputs", &jout);
        int has_name = json_object_object_get_ex(e, "name", &jname);
        size_t n_in = json_object_array_length(jin), n_out = json_object_array_length(jout);
        int *in = malloc(sizeof(int) * (n_in + 1));
        if (!in) {
            fu_fail(r->err, "%s: out of memory", r->path);
            goto done;
        }
        char gen[32];
        snprintf(gen, sizeof gen, "node_%zu", k);
        int ni = fu_graph_add_node(r->g, has_name ? json_object_get_string(jname) : gen,
                                   json_object_get_string(jop), 0, NULL, (int)n_out, outs[k]);
        if (ni < 0) {
            free(in);
            fu_fail(r->err, "%s: out of memory", r->path);
            goto done;
        }
        fu_node *node = &r->g->nodes[ni];
        for (size_t i = 0; i < n_in; i++) {
            json_object *ji = json_object_array_get_idx(jin, i);
            if (!json_object_is_type(ji, json_type_string)) {
                free(in);
                fu_node_fail(r->err, r->g, node, "input %zu must be a name string", i);
                goto done;
            }
            const char *iname = json_object_get_string(ji);
            if (!*iname) {
                in[i] = -1;  /* omitted optional input */
                continue;
            }
            in[i] = fu_graph_find_value(r->g, iname);
            if (in[i] < 0) {
                free(in);
                fu_node_fail(r->err, r->g, node, "dangling input '%s' (no input, initializer or "
                             "node output has that name)", fu_safe(iname).s);
                goto done;
            }
        }
        free(node->in);
        node->in = in;
        node->n_in = (int)n_in;
        if (json_object_object_get_ex(e, "attrs", &jattrs)) {
            int na = json_object_object_length(jattrs);
            node->attrs = calloc((size_t)na + 1, sizeof(fu_attr));
            if (!node->attrs) {
                fu_fail(r->err, "%s: out of memory", r->path);
                goto done;
            }
            json_object_object_foreach(jattrs, key, val) {
                node->n_attrs++;  /* counted first so a half-built attr is freed too */
                if (parse_attr(r, node, key, val, &node->attrs[node->n_attrs - 1])) goto done;
            }
        }
    }
    rc = 0;
done:
    for (size_t k = 0; k < n; k++) free(outs[k]);
    free(outs);
    return rc;
}

static int parse_outputs(reader *r, json_object *arr) {
    static const char *const keys[] = {"name", "dtype", "shape", NULL};
    size_t n = json_object_array_length(arr);
    r->g->outputs = malloc(sizeof(int) * (n + 1));
    if (!r->g->outputs) return fu_fail(r->err, "%s: out of memory", r->path);
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(arr, i);
        char what[512];
        snprintf(what, sizeof what, "outputs[%zu]", i);
        if (!json_object_is_type(e, json_type_object))
            return fu_fail(r->err, "%s: %s must be an object", r->path, what);
        int failed = 0;
        json_object *jn = member(r, e, "name", json_type_string, 1, what, &failed);
        if (failed) return -1;
        const char *name = json_object_get_string(jn);
        snprintf(what, sizeof what, "output '%s'", fu_safe(name).s);
        json_object *jd = member(r, e, "dtype", json_type_string, 0, what, &failed);
        json_object *js = failed ? NULL : member(r, e, "shape", json_type_array, 0, what, &failed);
        if (failed || check_keys(r, e, keys, what)) return -1;
        int v = fu_graph_find_value(r->g, name);
        if (v < 0)
            return fu_fail(r->err, "%s: %s is not produced by any node, input or initializer",
                           r->path, what);
        if (r->g->values[v].is_output) return fu_fail(r->err, "%s: %s listed twice", r->path, what);
        fu_value *val = &r->g->values[v];
        if (jd && (val->decl_dtype = parse_dtype(r, jd, what)) == FU_UNDEF) return -1;
        if (js && parse_shape(r, js, &val->decl_rank, val->decl_shape, 0, what)) return -1;
        val->is_output = 1;
        r->g->outputs[r->g->n_outputs++] = v;
    }
    return 0;
}

/* The weights path, resolved inside the model file's folder (ir/files.h;
 * anywhere with allow_external) and made absolute, so a rewritten model
 * refers to the same file from anywhere. */
static int open_weights(reader *r, const char *rel) {
    char *resolved = NULL;
    int fd = fu_open_model_file(r->path, rel, r->allow_external, "weights file", &resolved, NULL, r->err);
    if (fd < 0) return -1;
    r->g->weights_path = resolved;
    r->g->weights_allow_external = r->allow_external;
    fu_err werr;
    if (fu_is_onnx_path(resolved)) {   /* the initializers of an ONNX model (dump --after of one) */
        close(fd);
        r->g->weights = fu_onnx_weights_open(resolved, r->allow_external, &werr);
    } else {
        r->g->weights = fu_weights_open_fd(fd, resolved, &werr);
    }
    if (!r->g->weights) return fu_fail(r->err, "%s: weights: %s", r->path, werr.msg);
    return 0;
}

fu_graph *fu_ir_parse(const char *text, const char *path, fu_err *err) {
    return fu_ir_parse_opts(text, path, NULL, err);
}

fu_graph *fu_ir_parse_opts(const char *text, const char *path, const fu_ir_opts *o, fu_err *err) {
    if (!path) path = "model";
    reader rd = {NULL, path, err, o ? o->allow_external_weights : 0};
    reader *r = &rd;
    json_tokener *tok = json_tokener_new();
    if (!tok) {
        fu_fail(err, "%s: out of memory", path);
        return NULL;
    }
    size_t len = strlen(text);
    if (len >= INT_MAX) {
        json_tokener_free(tok);
        fu_fail(err, "%s: model file too large", path);
        return NULL;
    }
    /* Standard JSON only (no comments, single quotes or trailing commas);
     * text after the object is reported below. The length includes the
     * NUL so the tokener knows the text ended. */
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS);
    json_object *root = json_tokener_parse_ex(tok, text, (int)len + 1);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    if (end > len) end = len;
    json_tokener_free(tok);
    if (jerr == json_tokener_success)
        while (end < len && strchr(" \t\r\n", text[end])) end++;
    if (jerr != json_tokener_success || end < len) {
        int line = 1, col = 1;
        for (size_t i = 0; i < end && i < len; i++) {
            if (text[i] == '\n') line++, col = 1;
            else col++;
        }
        const char *why = jerr == json_tokener_success  ? "text after the top-level object"
                          : jerr == json_tokener_continue ? "unexpected end of file"
                                                          : json_tokener_error_desc(jerr);
        fu_fail(err, "%s: invalid JSON at line %d, column %d (offset %zu): %s", path, line, col,
                end, why);
        json_object_put(root);
        return NULL;
    }
    fu_json_issue issue;
    if (fu_json_check(text, len, &issue)) {
        fu_fail(err, "%s: line %d, column %d%s%s: %s", path, issue.line, issue.column,
                issue.path[0] ? ", " : "", issue.path, issue.reason);
        json_object_put(root);
        return NULL;
    }
    if (!json_object_is_type(root, json_type_object)) {
        fu_fail(err, "%s: the model must be a JSON object", path);
        json_object_put(root);
        return NULL;
    }

    static const char *const top_keys[] = {"ir_version", "name", "weights", "symbols", "inputs",
                                           "outputs", "initializers", "nodes", "value_info", NULL};
    int failed = 0;
    json_object *jname = NULL, *jw = NULL, *jsyms = NULL, *jin = NULL, *jout = NULL, *jinit = NULL,
                *jnodes = NULL;
    json_object *jver = member(r, root, "ir_version", json_type_int, 1, "model", &failed);
    if (!failed && json_object_get_int64(jver) != 1) {
        fu_fail(err, "%s: unsupported ir_version %lld (this fusec reads version 1)", path,
                (long long)json_object_get_int64(jver));
        failed = 1;
    }
    if (!failed) jname = member(r, root, "name", json_type_string, 0, "model", &failed);
    if (!failed) jw = member(r, root, "weights", json_type_string, 0, "model", &failed);
    if (!failed) jsyms = member(r, root, "symbols", json_type_object, 0, "model", &failed);
    if (!failed) jin = member(r, root, "inputs", json_type_array, 1, "model", &failed);
    if (!failed) jout = member(r, root, "outputs", json_type_array, 1, "model", &failed);
    if (!failed) jinit = member(r, root, "initializers", json_type_array, 0, "model", &failed);
    if (!failed) jnodes = member(r, root, "nodes", json_type_array, 1, "model", &failed);
    if (!failed) member(r, root, "value_info", json_type_array, 0, "model", &failed);
    if (failed || check_keys(r, root, top_keys, "model")) {
        json_object_put(root);
        return NULL;
    }

    fu_graph *g = fu_graph_new(jname ? json_object_get_string(jname) : "model");
    if (!g || !(g->path = strdup(path))) {
        fu_graph_free(g);
        json_object_put(root);
        fu_fail(err, "%s: out of memory", path);
        return NULL;
    }
    r->g = g;
    int rc = 0;
    if (jsyms) rc = parse_symbols(r, jsyms);
    if (!rc && jw) rc = open_weights(r, json_object_get_string(jw));
    if (!rc && g->weights)
        rc = fu_limit_check(FU_LIMIT_WEIGHTS_BYTES, (int64_t)fu_weights_file_size(g->weights), path, "the weights file's size in bytes", err);
    if (!rc) rc = fu_limit_check(FU_LIMIT_NODES, (int64_t)json_object_array_length(jnodes), path, "the node count", err);
    if (!rc) rc = parse_inputs(r, jin);
    for (size_t i = 0; !rc && jinit && i < json_object_array_length(jinit); i++)
        rc = parse_initializer(r, json_object_array_get_idx(jinit, i), i);
    if (!rc) rc = parse_nodes(r, jnodes);
    if (!rc) rc = parse_outputs(r, jout);
    json_object_put(root);
    if (rc) {
        fu_graph_free(g);
        return NULL;
    }
    return g;
}

fu_graph *fu_ir_load(const char *path, fu_err *err) { return fu_ir_load_opts(path, NULL, err); }

fu_graph *fu_ir_load_opts(const char *path, const fu_ir_opts *o, fu_err *err) {
    if (fu_is_onnx_path(path)) return fu_onnx_load(path, o, err);
    int fd = fu_open_regular(path, "model", NULL, err);
    FILE *f = fd < 0 ? NULL : fdopen(fd, "rb");
    if (!f) {
        if (fd >= 0) {
            fu_fail(err, "%s: cannot open model: %s", path, strerror(errno));
            close(fd);
        }
        return NULL;
    }
    char *text = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 65536 + 1 > cap) {
            cap = cap ? cap * 2 : 1 << 17;
            char *nt = realloc(text, cap);
            if (!nt) {
                free(text);
                fclose(f);
                fu_fail(err, "%s: out of memory reading the model", path);
                return NULL;
            }
            text = nt;
        }
        size_t got = fread(text + len, 1, 65536, f);
        len += got;
        if (got < 65536) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(text);
        fu_fail(err, "%s: read error", path);
        return NULL;
    }
    text[len] = 0;
    if (strlen(text) != len) {
        free(text);
        fu_fail(err, "%s: model file contains a NUL byte", path);
        return NULL;
    }
    fu_graph *g = fu_ir_parse_opts(text, path, o, err);
    free(text);
    return g;
}
