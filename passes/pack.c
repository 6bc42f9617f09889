/* The pack pass (fast profile): chooses, per matmul against a weight, the
 * layout the GEMM micro-kernels read the weight in.
 *
 * fusec knows every weight when it compiles, so a product against one
 * never needs to read the weight in its stored layout. A FusedMatMul
 * whose B is a 2-D weight from the weights file ([N, K] with transB=1, or
 * [K, N] with transB=0) and whose A is not transposed gets the attribute
 *   packed_weight = "f32"    panels of 32 output columns, float32
 *                 | "bf16"   the same with bfloat16 pairs
 * bf16 when the weight is bfloat16 (read with float32 arithmetic) or when
 * the precision is bf16; with precision bf16 also
 *   activations = "bf16"     A is rounded to bfloat16 (AVX512-BF16 dot products).
 * A plain MatMul against such a weight becomes FusedMatMul first.
 *
 * The plan gives each (weight, layout) a packed slot; the runtime packs the
 * weight at load into a content-addressed file in the build cache and maps
 * it (api/packed_weights.c). The attributes are data, so the JSON IR
 * after this pass reloads and compiles as is. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "passes.h"
#include "../ops/ops.h"

/* Can the weight be packed at load: a 2-D initializer from the weights file. */
static int packable_weight(const fu_value *w) {
    return w->kind == FU_VAL_CONST && w->external && w->rank == 2 && (w->dtype == FU_F32 || w->dtype == FU_BF16);
}

/* A product the micro-kernels run: A float32, not transposed, B a packable weight. */
static int packable_product(const fu_graph *g, const fu_node *n) {
    if (n->n_in < 2 || n->in[0] < 0 || n->in[1] < 0) return 0;
    if (g->values[n->in[0]].dtype != FU_F32 || g->values[n->in[0]].rank < 1) return 0;
    if (!packable_weight(&g->values[n->in[1]])) return 0;
    if (n->op_id == FU_OP_MatMul) return 1;
    return n->op_id == FU_OP_FusedMatMul && !fu_attr_int(n, "transA", 0) && !fu_attr_int(n, "transBatchA", 0) &&
           !fu_attr_int(n, "transBatchB", 0);
}

int fu_pass_pack(fu_graph *g, const fu_pass_opts *o, fu_err *err) {
    int bf16_activations = o && o->precision == FU_PRECISION_BF16;
    int packed_f32 = 0, packed_bf16 = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        fu_node *n = &g->nodes[i];
        if (n->dead || !packable_product(g, n)) continue;
        if (n->op_id == FU_OP_MatMul) {
            char *op = strdup("FusedMatMul");
            if (!op) return fu_fail(err, "%s: out of memory", g->path ? g->path : "model");
            free(n->op);
            n->op = op;
            n->op_id = FU_OP_FusedMatMul;
            n->def = NULL;   /* resolved again by inference */
        }
        int bf16 = bf16_activations || g->values[n->in[1]].dtype == FU_BF16;
        if (!fu_node_set_attr_string(n, "packed_weight", bf16 ? "bf16" : "f32") ||
            (bf16_activations && !fu_node_set_attr_string(n, "activations", "bf16")))
            return fu_fail(err, "%s: out of memory", g->path ? g->path : "model");
        if (bf16) packed_bf16++;
        else packed_f32++;
    }
    if (o && o->verbose)
        fprintf(stderr, "pack: %d matmuls read packed weights (%d float32, %d bfloat16%s)\n", packed_f32 + packed_bf16,
                packed_f32, packed_bf16, bf16_activations ? ", activations rounded to bfloat16" : "");
    return 0;
}
