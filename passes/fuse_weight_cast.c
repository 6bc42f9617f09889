/* Fusion rule "weight_cast": a bfloat16 weight read by FusedMatMul directly.
 *
 * Exporters of bfloat16 checkpoints keep the weights bfloat16 and put a
 * Cast to float32 in front of each use. Run as is, that Cast copies the whole
 * weight at every forward (and the copy is not the mapping). FusedMatMul
 * reads a bfloat16 [N, K] weight with transB=1 itself (fu_rt_gemm_nt_bf16),
 * so:
 *   FusedMatMul(A, Cast(W), transB=1)             -> FusedMatMul(A, W, transB=1)
 *   FusedMatMul(A, Cast(Transpose(W)), transB=0)  -> FusedMatMul(A, W, transB=1)
 *   MatMul(A, Cast(Transpose(W)))                 -> FusedMatMul(A, W, transB=1)
 * with W a 2-D bfloat16 value [N, K] (usually an external initializer) and
 * the Transpose perm [1, 0]. The order MatMul(A, Transpose(Cast(W))) is
 * already FusedMatMul(A, Cast(W), transB=1) from rule matmul_bias, which
 * runs first, and so lands in the first form.
 *
 * Every consumer of the Cast's output must be such a product (all are
 * rewritten at once; the Cast, left without users, goes in dce) and it must
 * not be a graph output: otherwise the Cast stays and the rule logs why. A
 * bfloat16 weight used as [K, N] (no transpose anywhere) and a float16
 * weight are near misses too: no kernel reads those. Anchor: any MatMul / FusedMatMul whose B is such a Cast. */
#include <stdio.h>
#include <string.h>
#include "fusion.h"

/* The weight behind a Cast to float32, and how the product must read the
 * Cast's output for the rule to apply. */
typedef struct {
    int cast_out;      /* its float32 output */
    int weight;        /* the 2-D bfloat16 (or float16) value to read */
    int transposed;    /* the Cast reads Transpose(weight): consumers must use transB=0 */
} weight_cast;

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

/* Does value v come from Cast(to float32) of a 2-D 16-bit float weight? */
static int match_weight_cast(const fu_graph *g, int v, weight_cast *wc) {
    int cast = fu_m_producer(g, v, "Cast");
    if (cast < 0 || g->values[v].dtype != FU_F32 || g->values[v].rank != 2) return 0;
    int src = g->nodes[cast].in[0];
    if (src < 0) return 0;
    wc->cast_out = v;
    wc->weight = transposed_weight(g, src);
    wc->transposed = wc->weight >= 0;
    if (wc->weight < 0) wc->weight = src;
    fu_dtype t = g->values[wc->weight].dtype;
    return (t == FU_BF16 || t == FU_F16) && g->values[wc->weight].rank == 2;
}

/* NULL when node i reads the Cast's output in a form the rule rewrites,
 * else the reason it does not (written into buf). */
static const char *consumer_problem(const fu_graph *g, int i, const weight_cast *wc, char *buf, size_t n) {
    const fu_node *node = &g->nodes[i];
    char name[96];
    fu_sanitize(node->name, name, sizeof name);
    int fused = strcmp(node->op, "FusedMatMul") == 0;
    if (!fused && strcmp(node->op, "MatMul") != 0) {
        snprintf(buf, n, "the cast weight is also used by %s node '%s'", node->op, name);
        return buf;
    }
    for (int k = 0; k < node->n_in; k++)
        if (k != 1 && node->in[k] == wc->cast_out) {
            snprintf(buf, n, "the cast weight is also input %d (not B) of %s node '%s'", k, node->op, name);
            return buf;
        }
    int trans_b = fused && fu_attr_int(node, "transB", 0) != 0;
    if (fused && fu_attr_int(node, "transA", 0)) {
        snprintf(buf, n, "FusedMatMul node '%s' has transA=1", name);
        return buf;
    }
    if (trans_b == wc->transposed) {
        /* Reading the weight as [K, N]: gemm_nt needs it as [N, K]. */
        snprintf(buf, n, "the 16-bit weight is used as [K, N] by %s node '%s'; only [N, K] is read directly",
                 node->op, name);
        return buf;
    }
    return NULL;
}

/* Does live node i read the Cast's output, and matter? A node whose outputs
 * nobody uses (the Transpose matmul_bias looked through) is left for dce. */
static int reads_cast(const fu_fuse_ctx *c, int i, const weight_cast *wc) {
    const fu_node *node = &c->g->nodes[i];
    if (node->dead) return 0;
    int reads = 0, used = 0;
    for (int k = 0; k < node->n_in; k++) reads |= node->in[k] == wc->cast_out;
    for (int k = 0; k < node->n_out; k++) used |= node->out[k] >= 0 && c->uses[node->out[k]] > 0;
    return reads && used;
}

/* Is node i a Transpose that rule matmul_bias has yet to look through (every
 * user a MatMul reading it as B)? Then the MatMuls become FusedMatMuls on the
 * Cast later in the fixed point: not a near miss, just not yet. */
static int pending_transpose(const fu_fuse_ctx *c, int i) {
    const fu_graph *g = c->g;
    const fu_node *t = &g->nodes[i];
    if (strcmp(t->op, "Transpose") != 0 || t->n_out < 1 || t->out[0] < 0 || transposed_weight(g, t->out[0]) < 0)
        return 0;
    int v = t->out[0], as_b = 0;
    if (g->values[v].is_output) return 0;
    for (int k = 0; k < g->n_nodes; k++) {
        const fu_node *n = &g->nodes[k];
        if (n->dead) continue;
        for (int j = 0; j < n->n_in; j++)
            if (n->in[j] == v) {
                if (j != 1 || strcmp(n->op, "MatMul") != 0) return 0;
                as_b++;
            }
    }
    return as_b == c->uses[v];
}

/* Rewrites consumer i to read the weight directly with transB=1. */
static int rewrite_consumer(fu_fuse_ctx *c, int i, const weight_cast *wc, fu_err *err) {
    fu_graph *g = c->g;
    if (strcmp(g->nodes[i].op, "FusedMatMul") == 0) {
        g->nodes[i].in[1] = wc->weight;
        if (!fu_node_set_attr_int(&g->nodes[i], "transB", 1)) return fu_fail(err, "out of memory while fusing");
        return 0;
    }
    /* A MatMul (no bias followed it): becomes FusedMatMul(A, W, transB=1). */
    int inputs[2] = {g->nodes[i].in[0], wc->weight};
    int idx = fu_fuse_replace(c, "FusedMatMul", inputs, 2, g->nodes[i].out[0], NULL, 0, err);
    if (idx < 0) return -1;
    if (!fu_node_set_attr_int(&g->nodes[idx], "transB", 1)) return fu_fail(err, "out of memory while fusing");
    return 0;
}

static int apply(fu_fuse_ctx *c, int anchor, fu_err *err) {
    fu_graph *g = c->g;
    const fu_node *n = &g->nodes[anchor];
    if ((strcmp(n->op, "FusedMatMul") != 0 && strcmp(n->op, "MatMul") != 0) || n->n_in < 2 || n->in[1] < 0)
        return 0;
    weight_cast wc;
    if (!match_weight_cast(g, n->in[1], &wc)) return 0;

    char reason[256];
    char wname[96];
    fu_sanitize(g->values[wc.weight].name, wname, sizeof wname);
    if (g->values[wc.weight].dtype != FU_BF16) {
        fu_fuse_reject(c, anchor, "weight '%s' is %s; only bfloat16 weights are read directly", wname,
                       fu_dtype_name(g->values[wc.weight].dtype));
        return 0;
    }
    if (g->values[wc.cast_out].is_output) {
        fu_fuse_reject(c, anchor, "the cast of weight '%s' is a graph output", wname);
        return 0;
    }
    /* Every consumer must be rewritable, or the Cast stays anyway. */
    int consumers = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        if (!reads_cast(c, i, &wc)) continue;
        if (pending_transpose(c, i)) return 0;
        if (consumer_problem(g, i, &wc, reason, sizeof reason)) {
            fu_fuse_reject(c, anchor, "%s", reason);
            return 0;
        }
        consumers++;
    }
    /* Rewriting a MatMul appends a node: only the nodes present now are
     * consumers (the appended ones read the weight, not the Cast). */
    int n_nodes = g->n_nodes;
    for (int i = 0; i < n_nodes; i++)
        if (reads_cast(c, i, &wc) && rewrite_consumer(c, i, &wc, err)) return -1;
    /* The Cast (and a Transpose before it) now feed nothing: dce drops them. */
    fu_fuse_accept(c, anchor, "FusedMatMul(transB=1) reads bfloat16 '%s' directly, no Cast%s (%d product%s)",
                   wname, wc.transposed ? " or Transpose" : "", consumers, consumers == 1 ? "" : "s");
    return 1;
}

const fu_fusion_rule fu_rule_weight_cast = {"weight_cast", apply};
