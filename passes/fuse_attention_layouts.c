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
    static const int64_t swap[4] = {0, 2, 1, 3};
    return fu_m_transpose(g, v, swap, 4);
}

/* The one live node reading value v (not exported), or -1 when there are
 * none or several. */
static int only_live_reader(fu_fuse_ctx *c, const char *live, int v) {
    int n, reader = -1;
    const int *readers = fu_fuse_readers(c, v, &n);
    for (int i = 0; i < n; i++)
        if (live[readers[i]]) {
            if (reader >= 0) return -1;
            reader = readers[i];
        }
    return c->g->values[v].is_output ? -1 : reader;
}

/* Input i of Attention node `att` (read as BHSD): reads it as BSHD when the
 * value is a head transpose, directly or under a RotaryEmbedding. */
static int read_as_bshd(fu_fuse_ctx *c, const char *live, int att, int i) {
    fu_graph *g = c->g;
    int v = g->nodes[att].in[i], t;
    if (v < 0 || only_live_reader(c, live, v) != att) return 0;
    if ((t = head_transpose(g, v)) >= 0) {
        fu_fuse_set_input(c, att, i, g->nodes[t].in[0]);
        return 1;
    }
    int rope = fu_m_producer(g, v, FU_OP_RotaryEmbedding), x = rope >= 0 ? g->nodes[rope].in[0] : -1;
    if (x < 0 || strcmp(fu_attr_string(&g->nodes[rope], "layout", "BHSD"), "BHSD") != 0 || g->values[x].rank != 4 ||
        only_live_reader(c, live, x) != rope || (t = head_transpose(g, x)) < 0)
        return 0;
    if (!fu_node_set_attr_string(&g->nodes[rope], "layout", "BSHD") || fu_fuse_touch(c, rope)) return -1;
    fu_fuse_set_input(c, rope, 0, g->nodes[t].in[0]);
    return 1;
}

static int layouts(const fu_node *att, char layout[3][5]) {
    const char *s = fu_attr_string(att, "qkv_layout", "BHSD");
    if (strchr(s, ',')) return sscanf(s, "%4[A-Z],%4[A-Z],%4[A-Z]", layout[0], layout[1], layout[2]) == 3;
    for (int i = 0; i < 3; i++) snprintf(layout[i], sizeof layout[i], "%.4s", s);
    return 1;
}

static const fu_pat *const patterns[] = {NODE(Attention), NULL};

/* Some input or the output could be read in place (liveness is a walk of
 * the graph: only then). */
static int check(fu_fuse_ctx *c, fu_match *m, char *why, size_t n) {
    (void)why, (void)n;
    const fu_graph *g = c->g;
    const fu_node *att = &g->nodes[m->anchor];
    char layout[3][5];
    if (att->n_in < 3 || att->in[0] < 0 || g->values[att->in[0]].rank != 4 || !layouts(att, layout)) return 0;
    for (int i = 0; i < 3; i++) {
        int v = att->in[i], rope = fu_m_producer(g, v, FU_OP_RotaryEmbedding);
        if (strcmp(layout[i], "BHSD") != 0 || v < 0) continue;
        if (head_transpose(g, v) >= 0 || (rope >= 0 && head_transpose(g, g->nodes[rope].in[0]) >= 0)) return 1;
    }
    return !fu_attr_string(att, "out_layout", NULL) && c->uses[att->out[0]] == 1;
}

static int rewrite(fu_fuse_ctx *c, fu_match *m, fu_err *err) {
    fu_graph *g = c->g;
    int anchor = m->anchor, changed = 0, n_touched = c->n_touched, r = 0;
    char layout[3][5], what[160] = "";
    layouts(&g->nodes[anchor], layout);
    char *live = malloc((size_t)g->n_nodes + 1);
    if (!live || fu_live_nodes(g, live) || fu_fuse_touch(c, anchor)) r = -1;
    for (int i = 0; r >= 0 && i < 3; i++) {
        if (strcmp(layout[i], "BHSD") != 0 || (r = read_as_bshd(c, live, anchor, i)) <= 0) continue;
        snprintf(layout[i], sizeof layout[i], "BSHD");
        size_t len = strlen(what);
        snprintf(what + len, sizeof what - len, "%s%s read as BSHD", changed++ ? ", " : "", i == 0 ? "Q" : i == 1 ? "K" : "V");
    }
    int out = g->nodes[anchor].out[0];
    int reader = r < 0 || fu_attr_string(&g->nodes[anchor], "out_layout", NULL) ? -1 : only_live_reader(c, live, out);
    free(live);
    if (r < 0) return fu_fail(err, "out of memory while fusing");
    if (reader >= 0 && head_transpose(g, g->nodes[reader].out[0]) == reader) {
        /* The Attention takes over the Transpose's value, written as BSHD. */
        int y = g->nodes[reader].out[0];
        if (!fu_node_set_attr_string(&g->nodes[anchor], "out_layout", "BSHD")) return fu_fail(err, "out of memory while fusing");
        g->nodes[anchor].out[0] = y;
        g->values[y].producer = anchor;
        g->values[out].producer = -1;
        g->nodes[reader].out[0] = -1;
        fu_fuse_set_input(c, reader, 0, -1);
        g->nodes[reader].dead = 1;
        size_t len = strlen(what);
        snprintf(what + len, sizeof what - len, "%soutput written as BSHD", changed++ ? ", " : "");
    }
    if (!changed) {  /* untouch the anchor, or it comes back on the worklist forever */
        c->n_touched = n_touched;
        return 0;
    }
    char joined[16];
    snprintf(joined, sizeof joined, "%s,%s,%s", layout[0], layout[1], layout[2]);
    if (!fu_node_set_attr_string(&g->nodes[anchor], "qkv_layout", joined)) return fu_fail(err, "out of memory while fusing");
    fu_fuse_accept(c, anchor, "head transposes removed: %s", what);
    return 0;
}

const fu_fusion_rule fu_rule_attention_layouts = {"attention_layouts", patterns, check, rewrite};
