/* FusedMatMul (onnxruntime contrib op name; fast profile):
 *   Y = alpha * op(A) op(B) [+ bias]
 * with MatMul's numpy batching. transA transposes a 2-D A, transB swaps the
 * last two axes of B (so a [N, K] weight is used as is, without a run-time
 * transpose). fusec adds an optional third input, a bias broadcast along
 * the last axis: shape [N] (or [1, ..., 1, N], or a single element).
 * transBatchA/transBatchB must be 0. A, the bias and Y are float32.
 *
 * Kernels: a 2-D B read as [N, K] (transB=1, transA=0: a linear layer's
 * weight) goes to fu_rt_gemm_nt_f32, or fu_rt_gemm_nt_bf16 when B is
 * bfloat16 (the weight read straight from the mapping, no float32 copy; the
 * "weight_cast" rule removes the Cast in front of it). A's leading dims are
 * folded into the rows, since B is shared by all of them. Every other
 * shape goes to fu_rt_matmul_f32 (sgemm) and needs a float32 B.
 *
 * Packed weights (attributes set by the pack pass, passes/pack.c):
 * packed_weight = "f32" | "bf16" says B is a 2-D weight from the weights
 * file ([N, K] with transB=1, [K, N] with transB=0) that the runtime packs
 * at load into the micro-kernels' panels (float32, or bfloat16 pairs); the
 * product reads the packed copy (fu_rt_gemm_packed_*). activations = "bf16"
 * (only with packed_weight "bf16") rounds A to bfloat16 as well. */
#include <stdio.h>
#include <string.h>
#include "ops.h"
#include "../ir/shape.h"
#include "emit.h"


/* One product's shape, shared by infer and emit. 1-D operands are promoted
 * (A [K] -> [1,K], B [K] -> [K,1]) and the promoted dim dropped from Y.
 * Batch dims of A and B are left-padded with 1s to the broadcast rank. */
typedef struct {
    fu_dim m, n, k;
    int trans_a, trans_b;
    int batch_rank;
    fu_dim batch[FU_MAX_RANK];
    fu_dim a_batch[FU_MAX_RANK], b_batch[FU_MAX_RANK];
    int out_rank;
    fu_dim out[FU_MAX_RANK];
    int has_bias;
    int bias_is_row;   /* bias has N elements (else a single element) */
    int packed;        /* B read packed: 0 no, else FU_RT_PACK_F32 / FU_RT_PACK_BF16 (1 / 2) */
    int round_activations;
} fmm_shape;

/* The packed_weight / activations attributes, checked against B. */
static int check_packing(const fu_graph *g, const fu_node *n, fmm_shape *p, fu_err *err) {
    const char *layout = fu_attr_string(n, "packed_weight", NULL);
    const char *act = fu_attr_string(n, "activations", "f32");
    if (!layout) {
        if (strcmp(act, "f32") != 0)
            return fu_node_fail(err, g, n, "activations = \"bf16\" needs packed_weight = \"bf16\"");
        return 0;
    }
    if (strcmp(layout, "f32") == 0) p->packed = 1;
    else if (strcmp(layout, "bf16") == 0) p->packed = 2;
    else return fu_node_fail(err, g, n, "packed_weight must be \"f32\" or \"bf16\"");
    if (strcmp(act, "bf16") == 0) p->round_activations = 1;
    else if (strcmp(act, "f32") != 0) return fu_node_fail(err, g, n, "activations must be \"f32\" or \"bf16\"");
    if (p->round_activations && p->packed != 2)
        return fu_node_fail(err, g, n, "activations = \"bf16\" needs packed_weight = \"bf16\"");
    const fu_value *b = &g->values[n->in[1]];
    if (b->kind != FU_VAL_CONST || !b->external || b->rank != 2)
        return fu_node_fail(err, g, n, "packed_weight needs B to be a 2-D weight from the weights file");
    if (p->trans_a) return fu_node_fail(err, g, n, "packed_weight needs transA = 0");
    return 0;
}

static int check_bias(const fu_graph *g, const fu_node *n, fmm_shape *p, fu_err *err) {
    if (fu_require_input(g, n, 2, FU_MASK(FU_F32), err)) return -1;
    const fu_value *c = &g->values[n->in[2]];
    if (c->rank < 1 || c->rank > p->out_rank)
        return fu_node_fail(err, g, n, "bias must have rank 1 to %d (got %d)", p->out_rank, c->rank);
    for (int i = 0; i < c->rank - 1; i++)
        if (!fu_dim_is_one(c->shape[i]))
            return fu_node_fail(err, g, n, "bias must broadcast along the last axis only ([N] or [1, ..., N])");
    fu_dim last = c->shape[c->rank - 1];
    if (!fu_dim_is_one(last) && !fu_dim_eq(last, p->n)) {
        char a[64], b[64];
        fu_dim_str(g, last, a, sizeof a);
        fu_dim_str(g, p->n, b, sizeof b);
        return fu_node_fail(err, g, n, "bias last dim %s must be N = %s (or 1)", a, b);
    }
    p->has_bias = 1;
    p->bias_is_row = !fu_dim_is_one(last);
    return 0;
}

static int fmm_plan(const fu_graph *g, const fu_node *n, fmm_shape *p, fu_err *err) {
    if (fu_require_input(g, n, 0, FU_MASK(FU_F32), err) ||
        fu_require_input(g, n, 1, FU_MASK(FU_F32) | FU_MASK(FU_BF16), err))
        return -1;
    const fu_value *a = &g->values[n->in[0]], *b = &g->values[n->in[1]];
    memset(p, 0, sizeof *p);
    p->trans_a = fu_attr_int(n, "transA", 0) != 0;
    p->trans_b = fu_attr_int(n, "transB", 0) != 0;
    if (fu_attr_int(n, "transBatchA", 0) || fu_attr_int(n, "transBatchB", 0))
        return fu_node_fail(err, g, n, "transBatchA/transBatchB are not supported");
    if (a->rank < 1 || b->rank < 1)
        return fu_node_fail(err, g, n, "operands must have rank >= 1 (got %d and %d)", a->rank, b->rank);
    if (p->trans_a && a->rank != 2) return fu_node_fail(err, g, n, "transA needs a 2-D A (got rank %d)", a->rank);
    if (p->trans_b && b->rank < 2) return fu_node_fail(err, g, n, "transB needs B of rank >= 2");
    if (check_packing(g, n, p, err)) return -1;
    if (b->dtype == FU_BF16 && !p->packed && (!p->trans_b || p->trans_a || b->rank != 2))
        return fu_node_fail(err, g, n, "a bfloat16 B must be a 2-D [N, K] weight with transB=1 and transA=0");
    int a_vec = a->rank == 1, b_vec = b->rank == 1;
    if (a_vec) {
        p->m = fu_dim_const(1);
        p->k = a->shape[0];
    } else {
        p->m = a->shape[a->rank - (p->trans_a ? 1 : 2)];
        p->k = a->shape[a->rank - (p->trans_a ? 2 : 1)];
    }
    fu_dim kb;
    if (b_vec) {
        kb = b->shape[0];
        p->n = fu_dim_const(1);
    } else {
        kb = b->shape[b->rank - (p->trans_b ? 1 : 2)];
        p->n = b->shape[b->rank - (p->trans_b ? 2 : 1)];
    }
    if (!fu_dim_eq(p->k, kb)) {
        char ka[64], kbs[64];
        fu_dim_str(g, p->k, ka, sizeof ka);
        fu_dim_str(g, kb, kbs, sizeof kbs);
        return fu_node_fail(err, g, n, "inner dims differ: A has K=%s, B has K=%s", ka, kbs);
    }
    int ra = a->rank > 2 ? a->rank - 2 : 0, rb = b->rank > 2 ? b->rank - 2 : 0;
    if (fu_broadcast(g, n, ra, a->shape, rb, b->shape, &p->batch_rank, p->batch, err)) return -1;
    for (int i = 0; i < p->batch_rank; i++) {
        int ia = i - (p->batch_rank - ra), ib = i - (p->batch_rank - rb);
        p->a_batch[i] = ia >= 0 ? a->shape[ia] : fu_dim_const(1);
        p->b_batch[i] = ib >= 0 ? b->shape[ib] : fu_dim_const(1);
    }
    for (int i = 0; i < p->batch_rank; i++) p->out[p->out_rank++] = p->batch[i];
    if (!a_vec) p->out[p->out_rank++] = p->m;
    if (!b_vec) p->out[p->out_rank++] = p->n;
    if (p->out_rank > FU_MAX_RANK) return fu_node_fail(err, g, n, "output rank too large");
    if (n->n_in > 2 && n->in[2] >= 0 && check_bias(g, n, p, err)) return -1;
    return 0;
}

static int fmm_infer(fu_graph *g, fu_node *n, fu_err *err) {
    fmm_shape p;
    if (fmm_plan(g, n, &p, err)) return -1;
    fu_set_output(g, n, 0, FU_F32, p.out_rank, p.out);
    return 0;
}



static int fmm_emit(fu_emit *e, const fu_graph *g, const fu_node *n, fu_err *err) {
    fmm_shape p;
    if (fmm_plan(g, n, &p, err)) return -1;
    char A[320], B[320], Y[320], N[64], K[64], rows[64], alpha[64];
    const char *beta = p.has_bias ? "1.0f" : "0.0f";
    snprintf(A, sizeof A, "%s", fu_emit_ptr(e, n->in[0]));
    snprintf(B, sizeof B, "%s", fu_emit_ptr(e, n->in[1]));
    snprintf(Y, sizeof Y, "%s", fu_emit_ptr(e, n->out[0]));
    snprintf(N, sizeof N, "%s", fu_emit_dim(e, p.n));
    snprintf(K, sizeof K, "%s", fu_emit_dim(e, p.k));
    fu_dim total = fu_dim_const(1);
    for (int i = 0; i < p.batch_rank; i++) total = fu_dim_mul(total, p.batch[i]);
    snprintf(rows, sizeof rows, "%s", fu_emit_dim(e, fu_dim_mul(total, p.m)));
    fu_float_literal((float)fu_attr_float(n, "alpha", 1.0), alpha, sizeof alpha);

    fu_emitf(e, "{");
    e->indent++;
    if (p.has_bias) {
        /* Every row of Y starts as the bias; the product then accumulates (beta 1). */
        fu_emitf(e, "const int64_t sh[] = {%s, %s}, ds[] = {%s, 1}, ss[] = {0, %d};", rows, N, N, p.bias_is_row);
        fu_emitf(e, "fu_rt_copy(%s, %s, 4, 2, sh, ds, ss);", Y, fu_emit_ptr(e, n->in[2]));
    }
    const fu_value *b = &g->values[n->in[1]];
    if (p.packed) {
        const char *packed = fu_emit_packed_ptr(e, n->in[1], p.packed == 2, !p.trans_b);
        if (!packed) return fu_node_fail(err, g, n, "the plan gave the packed weight no slot");
        if (p.packed == 1)
            fu_emitf(e, "fu_rt_gemm_packed_f32(%s, %s, %s, %s, %s, %s, %s, %s);", A, packed, Y, rows, N, K, alpha, beta);
        else
            fu_emitf(e, "fu_rt_gemm_packed_bf16(%s, %s, %s, %s, %s, %s, %s, %s, %d);", A, packed, Y, rows, N, K, alpha,
                     beta, p.round_activations);
    } else if (p.trans_b && !p.trans_a && b->rank == 2) {
        /* One weight for every row of A (all its leading dims x M). */
        fu_emitf(e, "fu_rt_gemm_nt_%s(%s, %s, %s, %s, %s, %s, %s, %s);", b->dtype == FU_BF16 ? "bf16" : "f32", A,
                 B, Y, rows, N, K, alpha, beta);
    } else {
        fu_batched_matmul bm = {.batch_rank = p.batch_rank, .m = p.m, .n = p.n, .k = p.k,
                                .trans_a = p.trans_a, .trans_b = p.trans_b};
        memcpy(bm.batch, p.batch, sizeof bm.batch);
        memcpy(bm.a_batch, p.a_batch, sizeof bm.a_batch);
        memcpy(bm.b_batch, p.b_batch, sizeof bm.b_batch);
        fu_emit_batched_matmul(e, &bm, A, B, Y, alpha, beta);
    }
    e->indent--;
    fu_emitf(e, "}");
    return 0;
}

const fu_op fu_op_FusedMatMul = {
    .name = "FusedMatMul", .min_in = 2, .max_in = 3, .min_out = 1, .max_out = 1,
    .infer = fmm_infer, .emit = fmm_emit,
    .doc = "Y = alpha * op(A) op(B) [+ bias] with MatMul's numpy batching; bias (fusec's optional input 2) is "
           "broadcast along the last axis ([N], [1, ..., N] or one element). onnxruntime's com.microsoft "
           "FusedMatMul, plus the bias.",
    .dtypes = "A, bias: float32; B: float32, or bfloat16 for a 2-D [N, K] weight with transB 1 and transA 0",
    .attrs = "alpha (1.0): scales the product\n"
             "transA (0): transpose A (2-D A only)\n"
             "transB (0): swap the last two axes of B\n"
             "transBatchA, transBatchB (0): must be 0\n"
             "packed_weight (absent): \"f32\" or \"bf16\" (set by the pack pass): B is a 2-D weight from the "
             "weights file, packed at load, read from the packed copy\n"
             "activations (\"f32\"): \"bf16\" (only with packed_weight \"bf16\") rounds A to bfloat16",
};
