/* Fusion rule "matmul_bias":
 *   Add(MatMul(A, B), bias)          ->  FusedMatMul(A, B, bias)
 *   MatMul(A, Transpose(W, [1, 0]))  ->  FusedMatMul(A, W, transB=1)
 * (both at once when they meet). The bias is broadcast along the last axis:
 * [N], or [1, ..., 1, N]. Reading W through transB means a [out, in] weight
 * (PyTorch's Linear layout, which exporters wrap in a Transpose) is never
 * transposed at run time. The Transpose is left for dce: it may have other
 * users. Anchors: the Add, or the MatMul when no bias follows. */
#include <stdio.h>
#include <string.h>
#include "fusion.h"

static int dim_is_one(fu_dim d) { return fu_dim_is_const(d) && d.coef == 1; }

/* W when v = Transpose(W) swaps the two axes of a 2-D W, else -1. */
static int transposed_weight(const fu_graph *g, int v) {
    int t = fu_m_producer(g, v, "Transpose");
    if (t < 0) return -1;
    int w = g->nodes[t].in[0];
    if (w < 0 || g->values[w].rank != 2) return -1;
    const fu_attr *perm = fu_node_attr(&g->nodes[t], "perm");
    if (perm && (perm->kind != FU_ATTR_INTS || perm->n != 2 || perm->ints[0] != 1 || perm->ints[1] != 0))
        return -1;
    return w;
}

/* Is the Add operand shaped like a bias of the MatMul output (some axis
 * broadcast)? A full-shape operand is an ordinary elementwise Add (e.g. a
 * residual) and not worth a near-miss line. */
static int bias_like(const fu_value *bias, const fu_value *mm) {
    if (bias->rank > mm->rank) return 0;
    for (int i = 0; i < bias->rank; i++)
        if (!fu_dim_eq(bias->shape[i], mm->shape[mm->rank - bias->rank + i])) return 1;
    return bias->rank < mm->rank;
}

/* The bias must broadcast along the last axis only: [.., N] with 1s before. */
static int bias_ok(const fu_value *bias, const fu_value *mm) {
    if (bias->rank < 1 || bias->rank > mm->rank || mm->rank < 1) return 0;
    for (int i = 0; i < bias->rank - 1; i++)
        if (!dim_is_one(bias->shape[i])) return 0;
    return fu_dim_eq(bias->shape[bias->rank - 1], mm->shape[mm->rank - 1]);
}

static void shape_text(const fu_graph *g, const fu_value *v, char *buf, size_t n) {
    size_t len = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < v->rank && len < n; i++) {
        char d[32];
        fu_dim_str(g, v->shape[i], d, sizeof d);
        len += (size_t)snprintf(buf + len, n - len, "%s%s", i ? ", " : "", d);
    }
    if (len < n) snprintf(buf + len, n - len, "]");
}

static int rewrite(fu_fuse_ctx *c, int anchor, int matmul, int bias, int out, fu_err *err) {
    fu_graph *g = c->g;
    int a = g->nodes[matmul].in[0], b = g->nodes[matmul].in[1];
    int w = transposed_weight(g, b);
    int inputs[3] = {a, w >= 0 ? w : b, bias};
    int dead[1] = {matmul};
    /* For the MatMul-only form the anchor is the MatMul itself. */
    int idx = fu_fuse_replace(c, "FusedMatMul", inputs, bias >= 0 ? 3 : 2, out, dead, matmul == anchor ? 0 : 1, err);
    if (idx < 0) return -1;
    if (w >= 0 && !fu_node_set_attr_int(&g->nodes[idx], "transB", 1)) return fu_fail(err, "out of memory while fusing");
    char bname[96];
    fu_sanitize(bias >= 0 ? g->values[bias].name : "", bname, sizeof bname);
    fu_fuse_accept(c, anchor, "FusedMatMul(%s%s%s%s)", w >= 0 ? "transB=1" : "", w >= 0 && bias >= 0 ? ", " : "",
                   bias >= 0 ? "bias " : "", bname);
    return 1;
}

static int apply(fu_fuse_ctx *c, int anchor, fu_err *err) {
    fu_graph *g = c->g;
    const fu_node *n = &g->nodes[anchor];
    if (strcmp(n->op, "MatMul") == 0 && n->n_in == 2 && n->in[1] >= 0) {
        if (transposed_weight(g, n->in[1]) < 0) return 0;
        return rewrite(c, anchor, anchor, -1, n->out[0], err);
    }
    if (strcmp(n->op, "Add") != 0 || n->n_in != 2 || n->in[0] < 0 || n->in[1] < 0) return 0;
    char reason[256] = "";
    for (int side = 0; side < 2; side++) {
        int mm = fu_m_producer(g, n->in[side], "MatMul");
        if (mm < 0) continue;
        int mm_out = n->in[side], bias = n->in[1 - side];
        const fu_value *bv = &g->values[bias], *mv = &g->values[mm_out];
        if (!bias_like(bv, mv)) continue;
        if (bv->dtype != FU_F32) {
            snprintf(reason, sizeof reason, "bias is %s, not float32", fu_dtype_name(bv->dtype));
            continue;
        }
        if (!bias_ok(bv, mv)) {
            char s[128];
            shape_text(g, bv, s, sizeof s);
            snprintf(reason, sizeof reason, "bias shape %s is not broadcast along the last axis ([N])", s);
            continue;
        }
        int nodes[2] = {mm, anchor};
        if (!fu_m_interior_private(c, nodes, 2, &mm_out, 1, reason, sizeof reason)) continue;
        return rewrite(c, anchor, mm, bias, n->out[0], err);
    }
    if (reason[0]) fu_fuse_reject(c, anchor, "%s", reason);
    return 0;
}

const fu_fusion_rule fu_rule_matmul_bias = {"matmul_bias", apply};
