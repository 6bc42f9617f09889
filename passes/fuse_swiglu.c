/* Fusion rule "swiglu": the gated MLP activation
 *   Mul(Mul(g, Sigmoid(g)), u)  ->  SwiGLU(g, u)
 * SiLU spelled g * Sigmoid(g); the three factors may come in any grouping
 * and operand order (Mul(Mul(Sigmoid(g), u), g) is the same product).
 * Anchor: the outer Mul. The inner Mul dies with the anchor; the Sigmoid is
 * left for dce (it may have other users). */
#include <stdio.h>
#include <string.h>
#include "fusion.h"

static int same_shape(const fu_value *a, const fu_value *b) {
    if (a->rank != b->rank) return 0;
    for (int i = 0; i < a->rank; i++)
        if (!fu_dim_eq(a->shape[i], b->shape[i])) return 0;
    return 1;
}

static int apply(fu_fuse_ctx *c, int anchor, fu_err *err) {
    fu_graph *g = c->g;
    const fu_node *outer = &g->nodes[anchor];
    if (strcmp(outer->op, "Mul") != 0 || outer->n_in != 2 || outer->in[0] < 0 || outer->in[1] < 0) return 0;
    int out = outer->out[0];
    char near_miss[256] = "";
    for (int side = 0; side < 2; side++) {
        int inner = fu_m_producer(g, outer->in[side], "Mul");
        if (inner < 0 || g->nodes[inner].n_in != 2) continue;
        int inner_out = outer->in[side];
        int f[3] = {g->nodes[inner].in[0], g->nodes[inner].in[1], outer->in[1 - side]};
        for (int s = 0; s < 3; s++) {
            int sig = fu_m_producer(g, f[s], "Sigmoid");
            if (sig < 0) continue;
            int x = g->nodes[sig].in[0], a = f[(s + 1) % 3], b = f[(s + 2) % 3];
            /* x * Sigmoid(x) where x is the inner product: a plain SiLU. */
            if (x == inner_out) continue;
            int gate = x == a ? a : x == b ? b : -1;
            if (gate < 0) {
                char sx[56], sa[56], sb[56];
                fu_sanitize(g->values[x].name, sx, sizeof sx);
                fu_sanitize(g->values[a].name, sa, sizeof sa);
                fu_sanitize(g->values[b].name, sb, sizeof sb);
                snprintf(near_miss, sizeof near_miss,
                         "sigmoid of a different tensor ('%s') than the multiplied gate ('%s' or '%s')", sx, sa, sb);
                continue;
            }
            int up = gate == a ? b : a;
            const fu_value *gv = &g->values[gate], *uv = &g->values[up];
            if (gv->dtype != FU_F32 || uv->dtype != FU_F32) {
                snprintf(near_miss, sizeof near_miss, "gate and up must be float32 (got %s and %s)",
                         fu_dtype_name(gv->dtype), fu_dtype_name(uv->dtype));
                continue;
            }
            if (!same_shape(gv, uv) || !same_shape(gv, &g->values[out])) {
                snprintf(near_miss, sizeof near_miss, "gate and up shapes differ (broadcast product)");
                continue;
            }
            int nodes[2] = {inner, anchor};
            if (!fu_m_interior_private(c, nodes, 2, &inner_out, 1, near_miss, sizeof near_miss)) continue;
            int inputs[2] = {gate, up};
            char gname[96], uname[96];
            fu_sanitize(gv->name, gname, sizeof gname);
            fu_sanitize(uv->name, uname, sizeof uname);
            if (fu_fuse_replace(c, "SwiGLU", inputs, 2, out, &inner, 1, err) < 0) return -1;
            fu_fuse_accept(c, anchor, "SwiGLU(gate '%s', up '%s')", gname, uname);
            return 1;
        }
    }
    if (near_miss[0]) fu_fuse_reject(c, anchor, "%s", near_miss);
    return 0;
}

const fu_fusion_rule fu_rule_swiglu = {"swiglu", apply};
