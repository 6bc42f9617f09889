/* Dead-code elimination: keeps only the nodes a graph output depends on.
 *
 * Liveness flows backwards from the graph outputs through producers, with a
 * work list, so node order does not matter. A node stays when any of its
 * outputs is live. fu_graph_compact then drops the dead nodes together with
 * every value nothing references any more (unused initializers included). */
#include <stdlib.h>
#include <string.h>
#include "passes.h"

int fu_live_nodes(const fu_graph *g, char *node_live) {
    size_t nv = (size_t)g->n_values + 1;
    int *producer = malloc(sizeof(int) * nv);
    char *value_live = calloc(nv, 1);
    int *work = malloc(sizeof(int) * nv);
    if (!producer || !value_live || !work) {
        free(producer), free(value_live), free(work);
        return -1;
    }
    memset(node_live, 0, (size_t)g->n_nodes);

    /* Producers from the node list itself: the cached field may be stale
     * after an earlier pass rewired the graph. */
    for (int v = 0; v < g->n_values; v++) producer[v] = -1;
    for (int i = 0; i < g->n_nodes; i++) {
        const fu_node *n = &g->nodes[i];
        if (n->dead) continue;
        for (int k = 0; k < n->n_out; k++)
            if (n->out[k] >= 0 && n->out[k] < g->n_values) producer[n->out[k]] = i;
    }

    int top = 0;
    for (int i = 0; i < g->n_outputs; i++) {
        int v = g->outputs[i];
        if (v >= 0 && v < g->n_values && !value_live[v]) value_live[v] = 1, work[top++] = v;
    }
    while (top > 0) {
        int p = producer[work[--top]];
        if (p < 0 || node_live[p]) continue;
        node_live[p] = 1;
        const fu_node *n = &g->nodes[p];
        for (int k = 0; k < n->n_in; k++) {
            int v = n->in[k];
            if (v >= 0 && v < g->n_values && !value_live[v]) value_live[v] = 1, work[top++] = v;
        }
    }
    free(producer), free(value_live), free(work);
    return 0;
}

int fu_pass_dce(fu_graph *g, const fu_pass_opts *o, fu_err *err) {
    (void)o;
    char *node_live = malloc((size_t)g->n_nodes + 1);
    if (!node_live || fu_live_nodes(g, node_live)) {
        free(node_live);
        return fu_fail(err, "%s: out of memory in dce", g->path ? g->path : "model");
    }
    for (int i = 0; i < g->n_nodes; i++)
        if (!node_live[i]) g->nodes[i].dead = 1;
    free(node_live);
    fu_graph_compact(g);
    return 0;
}
