/* Fusion rule "attention_layouts": the head transposes around Attention
 * become layouts, so no copy runs.
 *
 * Exporters move heads next to batch before attention and back after it:
 *   Q = RotaryEmbedding(Transpose(X, [0,2,1,3]))   X [B, S, H, D]
 *   Y = Transpose(Attention(Q, K, V), [0,2,1,3])   then Reshape to [B, S, H*D]
 * fusec's kernels address their tensors through strides, so
 *   - RotaryEmbedding(Transpose(X)) feeding only Attention reads X with
 *     layout "BSHD" (its output is BSHD too) and Attention reads that input
 *     as "BSHD" (qkv_layout);
 *   - a Transpose(X) feeding Attention directly is read as "BSHD";
 *   - an Attention whose only reader is Transpose([0,2,1,3]) writes its
 *     output as "BSHD" (out_layout) and takes over the Transpose's value.
 * Each rewired value must have one live reader (readers that feed no
 * graph output, such as the repeat_kv nodes the attention rule leaves for
 * dce, do not count) and none may be a graph output. Anchor: the Attention
 * node (4-D inputs). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fusion.h"
#include "passes.h"

/* The node that swaps axes 1 and 2 of 4-D value v (Transpose [0,2,1,3]), or -1. */
static int head_transpose(const fu_graph *g, int v) {
    int t = fu_m_producer(g, v, "Transpose");
    if (t < 0 || g->values[v].rank != 4) return -1;
    const fu_attr *perm = fu_node_attr(&g->nodes[t], "perm");
    if (!perm || perm->kind != FU_ATTR_INTS || perm->n != 4) return -1;
    static const int64_t swap[4] = {0, 2, 1, 3};
    for (int i = 0; i < 4; i++)
        if (perm->ints[i] != swap[i]) return -1;
    return t;
}

/* The one live node reading value v (not exported), or -1 when there are
 * none or several. */
static int only_live_reader(const fu_graph *g, const char *live, int v) {
    if (g->values[v].is_output) return -1;
    int reader = -1;
    for (int i = 0; i < g->n_nodes; i++) {
        const fu_node *n = &g->nodes[i];
        if (n->dead || !live[i]) continue;
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] == v) {
                if (reader >= 0 && reader != i) return -1;
                reader = i;
            }
    }
    return reader;
}

/* Input i of Attention node `att` (read as BHSD): reads it as BSHD when the
 * value is a head transpose, directly or under a RotaryEmbedding. */
static int read_as_bshd(fu_fuse_ctx *c, const char *live, int att, int i) {
    fu_graph *g = c->g;
    int v = g->nodes[att].in[i];
    if (v < 0 || only_live_reader(g, live, v) != att) return 0;
    int t = head_transpose(g, v);
    if (t >= 0) {
        g->nodes[att].in[i] = g->nodes[t].in[0];
        g->nodes[t].dead = 1;
        return 1;
    }
    int rope = fu_m_producer(g, v, "RotaryEmbedding");
    if (rope < 0) return 0;
    fu_node *r = &g->nodes[rope];
    if (strcmp(fu_attr_string(r, "layout", "BHSD"), "BHSD") != 0 || r->in[0] < 0 || g->values[r->in[0]].rank != 4 ||
        only_live_reader(g, live, r->in[0]) != rope || (t = head_transpose(g, r->in[0])) < 0)
        return 0;
    if (!fu_node_set_attr_string(r, "layout", "BSHD")) return -1;
    r->in[0] = g->nodes[t].in[0];
    g->nodes[t].dead = 1;
    return 1;
}

static int apply(fu_fuse_ctx *c, int anchor, fu_err *err) {
    fu_graph *g = c->g;
    fu_node *att = &g->nodes[anchor];
    if (strcmp(att->op, "Attention") != 0 || att->n_in < 3 || att->in[0] < 0 || g->values[att->in[0]].rank != 4)
        return 0;
    /* current layouts: one for all, or "Q,K,V" */
    char layout[3][5];
    const char *s = fu_attr_string(att, "qkv_layout", "BHSD");
    if (strchr(s, ',')) {
        if (sscanf(s, "%4[A-Z],%4[A-Z],%4[A-Z]", layout[0], layout[1], layout[2]) != 3) return 0;
    } else {
        for (int i = 0; i < 3; i++) snprintf(layout[i], sizeof layout[i], "%.4s", s);
    }
    /* Liveness costs a walk of the graph: only when some rewrite could apply. */
    int candidate = 0;
    for (int i = 0; i < 3 && !candidate; i++) {
        int v = att->in[i];
        if (strcmp(layout[i], "BHSD") != 0 || v < 0) continue;
        int rope = fu_m_producer(g, v, "RotaryEmbedding");
        candidate = head_transpose(g, v) >= 0 || (rope >= 0 && g->nodes[rope].in[0] >= 0 &&
                                                   head_transpose(g, g->nodes[rope].in[0]) >= 0);
    }
    if (!candidate && (fu_attr_string(att, "out_layout", NULL) || c->uses[att->out[0]] != 1)) return 0;
    char *live = malloc((size_t)g->n_nodes + 1);
    if (!live || fu_live_nodes(g, live)) {
        free(live);
        return fu_fail(err, "out of memory while fusing");
    }
    int changed = 0;
    char what[160] = "";
    for (int i = 0; i < 3; i++) {
        if (strcmp(layout[i], "BHSD") != 0) continue;
        int r = read_as_bshd(c, live, anchor, i);
        if (r < 0) {
            free(live);
            return fu_fail(err, "out of memory while fusing");
        }
        if (r) {
            snprintf(layout[i], sizeof layout[i], "BSHD");
            size_t len = strlen(what);
            snprintf(what + len, sizeof what - len, "%s%s read as BSHD", changed ? ", " : "", i == 0 ? "Q" : i == 1 ? "K" : "V");
            changed = 1;
        }
    }
    int out = att->out[0];
    int reader = fu_attr_string(att, "out_layout", NULL) ? -1 : only_live_reader(g, live, out);
    free(live);
    if (reader >= 0) {
        int t = head_transpose(g, g->nodes[reader].out[0]);
        if (t == reader && g->nodes[t].in[0] == out) {
            if (!fu_node_set_attr_string(att, "out_layout", "BSHD")) return fu_fail(err, "out of memory while fusing");
            int y = g->nodes[t].out[0];
            g->nodes[t].out[0] = -1;
            g->nodes[t].dead = 1;
            att->out[0] = y;
            g->values[y].producer = anchor;
            g->values[out].producer = -1;
            size_t len = strlen(what);
            snprintf(what + len, sizeof what - len, "%soutput written as BSHD", changed ? ", " : "");
            changed = 1;
        }
    }
    if (!changed) return 0;
    char joined[16];
    snprintf(joined, sizeof joined, "%s,%s,%s", layout[0], layout[1], layout[2]);
    if (!fu_node_set_attr_string(att, "qkv_layout", joined)) return fu_fail(err, "out of memory while fusing");
    fu_fuse_accept(c, anchor, "head transposes removed: %s", what);
    return 1;
}

const fu_fusion_rule fu_rule_attention_layouts = {"attention_layouts", apply};
