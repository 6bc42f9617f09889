/* Shape and dtype helpers shared by the op files (declared in ops/ops.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ops.h"
#include "../ir/shape.h"

/* Numpy rule, aligned from the right: equal dims pass, a constant 1 takes
 * the other side's dim. A symbolic dim against a different dim is an error
 * even if it might be 1 at run time: the emitter needs static strides. */
int fu_broadcast(const fu_graph *g, const fu_node *n, int ra, const fu_dim *a, int rb,
                 const fu_dim *b, int *rout, fu_dim *out, fu_err *err) {
    int r = ra > rb ? ra : rb;
    if (r > FU_MAX_RANK) return fu_node_fail(err, g, n, "broadcast rank %d exceeds %d", r, FU_MAX_RANK);
    fu_dim res[FU_MAX_RANK];
    for (int i = 0; i < r; i++) {
        int ia = ra - r + i, ib = rb - r + i;
        fu_dim one = fu_dim_const(1);
        fu_dim da = ia >= 0 ? a[ia] : one;
        fu_dim db = ib >= 0 ? b[ib] : one;
        if (fu_dim_eq(da, db) || fu_dim_eq(db, one)) {
            res[i] = da;
        } else if (fu_dim_eq(da, one)) {
            res[i] = db;
        } else {
            char sa[256], sb[256];
            fu_shape_str(g, ra, a, ", ", sa, sizeof sa);
            fu_shape_str(g, rb, b, ", ", sb, sizeof sb);
            return fu_node_fail(err, g, n, "shapes %s and %s do not broadcast", sa, sb);
        }
    }
    memcpy(out, res, sizeof(fu_dim) * (size_t)r);
    *rout = r;
    return 0;
}

int fu_norm_axis(const fu_graph *g, const fu_node *n, int64_t axis, int rank, int *out, fu_err *err) {
    if (axis < -(int64_t)rank || axis >= (int64_t)rank)
        return fu_node_fail(err, g, n, "axis %lld is out of range for rank %d", (long long)axis, rank);
    *out = (int)(axis < 0 ? axis + rank : axis);
    return 0;
}

/* Input `input` of n as a value, or NULL (with err set) when it is absent. */
static const fu_value *input_value(const fu_graph *g, const fu_node *n, int input, fu_err *err) {
    if (input < 0 || input >= n->n_in || n->in[input] < 0) {
        fu_node_fail(err, g, n, "input %d is missing", input);
        return NULL;
    }
    return &g->values[n->in[input]];
}

/* Element count of a constant with data, or -1. Integer dtypes only: these
 * helpers read shapes, axes and indices. */
static int64_t const_int_count(const fu_value *v) {
    if (v->kind != FU_VAL_CONST || !v->data) return -1;
    if (v->dtype != FU_I64 && v->dtype != FU_I32) return -1;
    int64_t count;
    if (v->rank >= 0 && fu_value_numel_const(v, &count) == 0) return count;
    return (int64_t)(v->nbytes / fu_dtype_size(v->dtype));
}

/* Reads the input's values as dims: from constant data, else from the
 * shape values propagated by inference (`known`). */
int fu_input_dims(const fu_graph *g, const fu_node *n, int input, fu_dim *vals, int max,
                  int *count, fu_err *err) {
    const fu_value *v = input_value(g, n, input, err);
    if (!v) return -1;
    char name[128];
    fu_sanitize(v->name, name, sizeof name);
    int64_t c = const_int_count(v);
    int from_data = c >= 0;
    if (!from_data && v->n_known > 0) c = v->n_known;
    if (c < 0) {
        fu_node_fail(err, g, n, "input %d ('%s') must be a constant integer tensor or have known values", input,
                     name);
        if (err) err->needs_values = 1 + (int)(v - g->values);
        return -1;
    }
    if (c > max)
        return fu_node_fail(err, g, n, "input %d ('%s') has %lld values, at most %d supported", input, name,
                            (long long)c, max);
    for (int64_t i = 0; i < c; i++)
        vals[i] = from_data ? fu_dim_const(fu_const_get_i(v, i)) : v->known[i];
    *count = (int)c;
    return 0;
}

/* Like fu_input_dims, but every value must be a constant. */
int fu_input_ints(const fu_graph *g, const fu_node *n, int input, int64_t *vals, int max,
                  int *count, fu_err *err) {
    fu_dim dims[256];
    int c;
    if (max > 256) max = 256;
    if (fu_input_dims(g, n, input, dims, max, &c, err)) return -1;
    for (int i = 0; i < c; i++) {
        if (!fu_dim_is_const(dims[i])) {
            char name[128], d[64];
            fu_sanitize(g->values[n->in[input]].name, name, sizeof name);
            fu_dim_str(g, dims[i], d, sizeof d);
            return fu_node_fail(err, g, n, "input %d ('%s') value %d is symbolic (%s); a constant is required",
                                input, name, i, d);
        }
        vals[i] = dims[i].coef;
    }
    *count = c;
    return 0;
}

void fu_set_output(fu_graph *g, const fu_node *n, int o, fu_dtype t, int rank, const fu_dim *shape) {
    if (o < 0 || o >= n->n_out || n->out[o] < 0) return;
    fu_value *v = &g->values[n->out[o]];
    v->dtype = t;
    v->rank = rank;
    if (rank > 0) memcpy(v->shape, shape, sizeof(fu_dim) * (size_t)rank);
    /* Known values belong to a previous inference; the op sets fresh ones. */
    free(v->known);
    v->known = NULL;
    v->n_known = 0;
}

int fu_require_input(const fu_graph *g, const fu_node *n, int i, unsigned dtype_mask, fu_err *err) {
    const fu_value *v = input_value(g, n, i, err);
    if (!v) return -1;
    if (dtype_mask & FU_MASK(v->dtype)) return 0;
    char allowed[128] = "";
    size_t len = 0;
    for (int t = FU_F32; t <= FU_BOOL; t++)
        if (dtype_mask & FU_MASK(t))
            len += (size_t)snprintf(allowed + len, sizeof allowed - len, "%s%s", len ? "|" : "",
                                    fu_dtype_name((fu_dtype)t));
    return fu_node_fail(err, g, n, "input %d has dtype %s, expected %s", i, fu_dtype_name(v->dtype), allowed);
}
