/* Fusion rule "matmul_bias":
 *   Add(MatMul(A, B), bias)          ->  FusedMatMul(A, B, bias)
 *   MatMul(A, Transpose(W, [1, 0]))  ->  FusedMatMul(A, W, transB=1)
 * (both at once when they meet). The bias is broadcast along the last axis:
 * [N], or [1, ..., 1, N]. Reading W through transB means a [out, in] weight
 * (PyTorch's Linear layout, which exporters wrap in a Transpose) is never
 * transposed at run time. The Transpose may have other readers: then it
 * stays. */
#include <stdio.h>
#include "fusion.h"

enum { A = 1, B, W, MM, BIAS };

/* v = Transpose(W) swapping the two axes of a 2-D W. Also rule weight_cast's. */
int fu_m_swaps_2d(const fu_graph *g, const fu_match *m, int v, char *why, size_t n) {
    (void)m, (void)why, (void)n;
    int t = fu_m_producer(g, v, FU_OP_Transpose), w = t >= 0 ? g->nodes[t].in[0] : -1;
    static const int64_t swap[2] = {1, 0};
    return w >= 0 && g->values[w].rank == 2 &&
           (!fu_node_attr(&g->nodes[t], "perm") || fu_m_transpose(g, v, swap, 2) >= 0);
}

#define WEIGHT_T WHERE(fu_m_swaps_2d, OPF(Transpose, FU_PAT_SHARED, VAL(W)))
static const fu_pat *const patterns[] = {
    OPC(Add, CAP(MM, OP(MatMul, VAL(A), EITHER("weight", WEIGHT_T, VAL(B)))), VAL(BIAS)),
    OP(MatMul, VAL(A), WEIGHT_T),
    NULL,
};

static int check(fu_fuse_ctx *c, fu_match *m, char *why, size_t n) {
    if (m->variant == 1) return 1;
    const fu_value *bias = &c->g->values[m->v[BIAS]], *mm = &c->g->values[m->v[MM]];
    /* A full-shape operand is an ordinary Add (a residual): no near miss. */
    int broadcast = bias->rank < mm->rank;
    for (int i = 0; i < bias->rank && i < mm->rank; i++)
        broadcast |= !fu_dim_eq(bias->shape[i], mm->shape[mm->rank - bias->rank + i]);
    if (bias->rank > mm->rank || !broadcast) return 0;
    if (bias->dtype != FU_F32) return snprintf(why, n, "bias is %s, not float32", fu_dtype_name(bias->dtype)), 0;
    int ok = bias->rank >= 1 && fu_dim_eq(bias->shape[bias->rank - 1], mm->shape[mm->rank - 1]);
    for (int i = 0; ok && i < bias->rank - 1; i++) ok = fu_dim_is_const(bias->shape[i]) && bias->shape[i].coef == 1;
    if (ok) return 1;
    char shape[128];
    fu_shape_str(c->g, bias->rank, bias->shape, ", ", shape, sizeof shape);
    return snprintf(why, n, "bias shape %s is not broadcast along the last axis ([N])", shape), 0;
}

static int rewrite(fu_fuse_ctx *c, fu_match *m, fu_err *err) {
    int w = m->v[W], bias = m->v[BIAS];
    int inputs[3] = {m->v[A], w >= 0 ? w : m->v[B], bias};
    int idx = fu_fuse_replace(c, m, FU_OP_FusedMatMul, inputs, bias >= 0 ? 3 : 2, err);
    if (idx < 0) return -1;
    if (w >= 0 && !fu_node_set_attr_int(&c->g->nodes[idx], "transB", 1)) return fu_fail(err, "out of memory while fusing");
    fu_fuse_accept(c, m->anchor, "FusedMatMul(%s%s%s%s)", w >= 0 ? "transB=1" : "", w >= 0 && bias >= 0 ? ", " : "",
                   bias >= 0 ? "bias " : "", bias >= 0 ? fu_m_name(c->g, bias) : "");
    return 0;
}

const fu_fusion_rule fu_rule_matmul_bias = {"matmul_bias", patterns, check, rewrite};
