/* Shape and dim helpers (ir/shape.h). */
#include <stdio.h>
#include "shape.h"

int fu_dim_is(fu_dim d, int64_t c) { return fu_dim_is_const(d) && d.coef == c; }

int fu_dim_is_one(fu_dim d) { return fu_dim_is(d, 1); }

int fu_shape_eq(int rank_a, const fu_dim *a, int rank_b, const fu_dim *b) {
    if (rank_a != rank_b) return 0;
    for (int k = 0; k < rank_a; k++)
        if (!fu_dim_eq(a[k], b[k])) return 0;
    return 1;
}

int fu_value_same_shape(const fu_value *a, const fu_value *b) {
    return fu_shape_eq(a->rank, a->shape, b->rank, b->shape);
}

fu_dim fu_value_numel_dim(const fu_value *v) {
    fu_dim d = fu_dim_const(1);
    for (int k = 0; k < v->rank; k++) d = fu_dim_mul(d, v->shape[k]);
    return d;
}

void fu_shape_str(const fu_graph *g, int rank, const fu_dim *shape, const char *sep, char *buf, size_t n) {
    if (n == 0) return;
    size_t len = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < rank && len < n; i++) {
        char d[64];
        fu_dim_str(g, shape[i], d, sizeof d);
        len += (size_t)snprintf(buf + len, n - len, "%s%s", i ? sep : "", d);
    }
    if (len < n) snprintf(buf + len, n - len, "]");
}
