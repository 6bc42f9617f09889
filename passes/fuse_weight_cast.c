/* Fusion rule "weight_cast": a bfloat16 weight read by FusedMatMul directly.
 *
 * Exporters of bfloat16 checkpoints keep the weights bfloat16 and put a
 * Cast to float32 in front of each use. Run as is, that Cast copies the whole
 * weight at every forward. FusedMatMul reads a bfloat16 [N, K] weight with
 * transB=1 itself (fu_rt_gemm_nt_bf16), so:
 *   FusedMatMul(A, Cast(W), transB=1)             -> FusedMatMul(A, W, transB=1)
 *   FusedMatMul(A, Cast(Transpose(W)), transB=0)  -> FusedMatMul(A, W, transB=1)
 *   MatMul(A, Cast(Transpose(W)))                 -> FusedMatMul(A, W, transB=1)
 * with W a 2-D bfloat16 value [N, K] and the Transpose perm [1, 0].
 * MatMul(A, Transpose(Cast(W))) is already the first form: rule matmul_bias
 * runs first. Every reader of the Cast must be such a product (all are
 * rewritten at once; the Cast then dies) and it must not be a graph output;
 * a weight used as [K, N] and a float16 weight are near misses (no kernel
 * reads those). Anchor: a MatMul / FusedMatMul whose B is such a Cast. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fusion.h"

enum { CAST = 1, W, W_T };

#define CAST_OF_WEIGHT \
    CAP(CAST, OPF(Cast, FU_PAT_SHARED, EITHER("weight", WHERE(fu_m_swaps_2d, OPF(Transpose, FU_PAT_SHARED, VAL(W_T))), VAL(W))))
static const fu_pat *const patterns[] = {
    EITHER("product", OP(FusedMatMul, ANY, CAST_OF_WEIGHT), OP(MatMul, ANY, CAST_OF_WEIGHT)),
    NULL,
};

static int weight(const fu_match *m) { return m->v[W_T] >= 0 ? m->v[W_T] : m->v[W]; }

/* Does node i read the Cast and matter? A node nobody reads (the Transpose
 * matmul_bias looked through) is dying anyway. */
static int reads_cast(const fu_fuse_ctx *c, int i, int cast) {
    const fu_node *node = &c->g->nodes[i];
    int reads = 0, used = 0;
    for (int k = 0; !node->dead && k < node->n_in; k++) reads |= node->in[k] == cast;
    for (int k = 0; k < node->n_out; k++) used |= node->out[k] >= 0 && c->uses[node->out[k]] > 0;
    return reads && used;
}

/* 1 when reader i can be rewritten, 0 with the reason, -1 when it is a
 * Transpose that rule matmul_bias has yet to fold into its MatMuls. */
static int reader_ok(const fu_fuse_ctx *c, int i, const fu_match *m, char *why, size_t n) {
    const fu_graph *g = c->g;
    const fu_node *node = &g->nodes[i];
    int cast = m->v[CAST], transposed = m->v[W_T] >= 0, fused = node->op_id == FU_OP_FusedMatMul;
    char name[96];
    fu_sanitize(node->name, name, sizeof name);
    if (node->op_id == FU_OP_Transpose && fu_m_swaps_2d(g, m, node->out[0], NULL, 0)) {
        int r;
        const int *readers = fu_fuse_readers(c, node->out[0], &r);
        int pending = r <= 64;
        for (int k = 0; k < r && k < 64; k++)
            pending &= g->nodes[readers[k]].op_id == FU_OP_MatMul && g->nodes[readers[k]].in[1] == node->out[0];
        if (pending && !g->values[node->out[0]].is_output) return -1;
    }
    if (!fused && node->op_id != FU_OP_MatMul)
        return snprintf(why, n, "the cast weight is also used by %s node '%s'", node->op, name), 0;
    for (int k = 0; k < node->n_in; k++)
        if (k != 1 && node->in[k] == cast)
            return snprintf(why, n, "the cast weight is also input %d (not B) of %s node '%s'", k, node->op, name), 0;
    if (fused && fu_attr_int(node, "transA", 0)) return snprintf(why, n, "FusedMatMul node '%s' has transA=1", name), 0;
    if ((fused && fu_attr_int(node, "transB", 0) != 0) == transposed)
        return snprintf(why, n, "the 16-bit weight is used as [K, N] by %s node '%s'; only [N, K] is read directly",
                        node->op, name), 0;
    return 1;
}

static int check(fu_fuse_ctx *c, fu_match *m, char *why, size_t n) {
    const fu_graph *g = c->g;
    int w = weight(m), cast = m->v[CAST];
    fu_dtype t = g->values[w].dtype;
    if (g->values[cast].dtype != FU_F32 || g->values[cast].rank != 2 || g->values[w].rank != 2 ||
        (t != FU_BF16 && t != FU_F16))
        return 0;
    if (t != FU_BF16)
        return snprintf(why, n, "weight '%s' is %s; only bfloat16 weights are read directly", fu_m_name(g, w),
                        fu_dtype_name(t)), 0;
    if (g->values[cast].is_output)
        return snprintf(why, n, "the cast of weight '%s' is a graph output", fu_m_name(g, w)), 0;
    int n_readers;
    const int *readers = fu_fuse_readers(c, cast, &n_readers);
    for (int r = 0; r < n_readers; r++) {
        int i = readers[r];
        int ok = reads_cast(c, i, cast) ? reader_ok(c, i, m, why, n) : 1;
        if (ok < 0) why[0] = 0;  /* not yet: the MatMuls come back as FusedMatMuls */
        if (ok <= 0) return 0;
    }
    return 1;
}

static int rewrite(fu_fuse_ctx *c, fu_match *m, fu_err *err) {
    fu_graph *g = c->g;
    int w = weight(m), cast = m->v[CAST], products = 0, ok = 1, n_readers;
    /* The readers there now (a rewrite appends a node reading W, and
     * changes the lists). */
    const int *now = fu_fuse_readers(c, cast, &n_readers);
    int *readers = malloc(sizeof *readers * (size_t)(n_readers + 1));
    if (!(ok = readers != NULL)) n_readers = 0;
    if (n_readers) memcpy(readers, now, sizeof *readers * (size_t)n_readers);
    for (int r = 0, i, idx; ok && r < n_readers; r++) {
        if (!reads_cast(c, i = readers[r], cast)) continue;
        products++;
        int inputs[2] = {g->nodes[i].in[0], w};
        if (g->nodes[i].op_id == FU_OP_FusedMatMul) {
            fu_fuse_set_input(c, idx = i, 1, w);
            ok = !fu_fuse_touch(c, i);
        } else {
            ok = (idx = fu_fuse_replace_node(c, i, FU_OP_FusedMatMul, inputs, 2, err)) >= 0;
        }
        ok = ok && fu_node_set_attr_int(&g->nodes[idx], "transB", 1);
    }
    free(readers);
    if (!ok) return fu_fail(err, "out of memory while fusing");
    fu_fuse_accept(c, m->anchor, "FusedMatMul(transB=1) reads bfloat16 '%s' directly, no Cast%s (%d product%s)",
                   fu_m_name(g, w), m->v[W_T] >= 0 ? " or Transpose" : "", products, products == 1 ? "" : "s");
    return 0;
}

const fu_fusion_rule fu_rule_weight_cast = {"weight_cast", patterns, check, rewrite};
