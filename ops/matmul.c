/* Linear algebra: MatMul (numpy matmul semantics) and Gemm.
 * Both run on OpenBLAS sgemm through fu_rt_matmul_f32; float32 only. */
#include <stdio.h>
#include <string.h>
#include "ops.h"
#include "../ir/shape.h"
#include "emit.h"



/* ---- MatMul -------------------------------------------------------------- */

/* The shape of one MatMul, shared by infer and emit. 1-D operands are
 * promoted (A [K] -> [1,K], B [K] -> [K,1]) and the promoted dim is dropped
 * from the output. Batch dims of A and B are left-padded with 1s to the
 * broadcast batch rank. */
typedef struct {
    fu_dim m, n, k;
    int batch_rank;
    fu_dim batch[FU_MAX_RANK];
    fu_dim a_batch[FU_MAX_RANK], b_batch[FU_MAX_RANK];
    int a_vec, b_vec;
    int out_rank;
    fu_dim out[FU_MAX_RANK];
} matmul_shape;

static int matmul_plan(const fu_graph *g, const fu_node *n, matmul_shape *p, fu_err *err) {
    if (fu_require_input(g, n, 0, FU_ANY, err) || fu_require_input(g, n, 1, FU_ANY, err)) return -1;
    const fu_value *a = &g->values[n->in[0]], *b = &g->values[n->in[1]];
    if (a->dtype != FU_F32 || b->dtype != FU_F32)
        return fu_node_fail(err, g, n, "MatMul supports float32 only (got %s x %s)",
                            fu_dtype_name(a->dtype), fu_dtype_name(b->dtype));
    if (a->rank < 1 || b->rank < 1)
        return fu_node_fail(err, g, n, "MatMul operands must have rank >= 1 (got %d and %d)",
                            a->rank, b->rank);
    memset(p, 0, sizeof *p);
    p->a_vec = a->rank == 1;
    p->b_vec = b->rank == 1;
    p->m = p->a_vec ? fu_dim_const(1) : a->shape[a->rank - 2];
    p->k = a->shape[a->rank - 1];
    fu_dim kb = p->b_vec ? b->shape[0] : b->shape[b->rank - 2];
    p->n = p->b_vec ? fu_dim_const(1) : b->shape[b->rank - 1];
    if (!fu_dim_eq(p->k, kb)) {
        char ka[64], kbs[64];
        fu_dim_str(g, p->k, ka, sizeof ka);
        fu_dim_str(g, kb, kbs, sizeof kbs);
        return fu_node_fail(err, g, n, "MatMul inner dims differ: A has K=%s, B has K=%s", ka, kbs);
    }
    int ra = a->rank > 2 ? a->rank - 2 : 0, rb = b->rank > 2 ? b->rank - 2 : 0;
    if (fu_broadcast(g, n, ra, a->shape, rb, b->shape, &p->batch_rank, p->batch, err)) return -1;
    for (int i = 0; i < p->batch_rank; i++) {
        int ia = i - (p->batch_rank - ra), ib = i - (p->batch_rank - rb);
        p->a_batch[i] = ia >= 0 ? a->shape[ia] : fu_dim_const(1);
        p->b_batch[i] = ib >= 0 ? b->shape[ib] : fu_dim_const(1);
    }
    p->out_rank = 0;
    for (int i = 0; i < p->batch_rank; i++) p->out[p->out_rank++] = p->batch[i];
    if (!p->a_vec) p->out[p->out_rank++] = p->m;
    if (!p->b_vec) p->out[p->out_rank++] = p->n;
    if (p->out_rank > FU_MAX_RANK) return fu_node_fail(err, g, n, "MatMul output rank too large");
    return 0;
}

static int matmul_infer(fu_graph *g, fu_node *n, fu_err *err) {
    matmul_shape p;
    if (matmul_plan(g, n, &p, err)) return -1;
    fu_set_output(g, n, 0, FU_F32, p.out_rank, p.out);
    return 0;
}

/* How one operand walks the batch: 0 = shared by every batch (stride 0),
 * 1 = one matrix per batch (contiguous), 2 = partial broadcast (loop). */
static int batch_mode(const fu_batched_matmul *p, const fu_dim *op_batch) {
    int all_one = 1, all_full = 1;
    for (int i = 0; i < p->batch_rank; i++) {
        if (!fu_dim_is_one(op_batch[i])) all_one = 0;
        if (!fu_dim_eq(op_batch[i], p->batch[i])) all_full = 0;
    }
    if (all_one) return 0;
    if (all_full) return 1;
    return 2;
}

void fu_emit_batched_matmul(fu_emit *e, const fu_batched_matmul *p, const char *A, const char *B, const char *C,
                            const char *alpha, const char *beta) {
    char M[64], N[64], K[64], MK[64], KN[64], MN[64], batch[64];
    snprintf(M, sizeof M, "%s", fu_emit_dim(e, p->m));
    snprintf(N, sizeof N, "%s", fu_emit_dim(e, p->n));
    snprintf(K, sizeof K, "%s", fu_emit_dim(e, p->k));
    snprintf(MK, sizeof MK, "%s", fu_emit_dim(e, fu_dim_mul(p->m, p->k)));
    snprintf(KN, sizeof KN, "%s", fu_emit_dim(e, fu_dim_mul(p->k, p->n)));
    snprintf(MN, sizeof MN, "%s", fu_emit_dim(e, fu_dim_mul(p->m, p->n)));
    fu_dim total = fu_dim_const(1);
    for (int i = 0; i < p->batch_rank; i++) total = fu_dim_mul(total, p->batch[i]);
    snprintf(batch, sizeof batch, "%s", fu_emit_dim(e, total));

    int mode_a = batch_mode(p, p->a_batch), mode_b = batch_mode(p, p->b_batch);
    if (mode_a != 2 && mode_b != 2) {
        fu_emitf(e, "fu_rt_matmul_f32(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %d, %d, %s, %s);", A, B, C, batch, M,
                 N, K, mode_a ? MK : "0", mode_b ? KN : "0", MN, p->trans_a, p->trans_b, alpha, beta);
        return;
    }
    /* Partial broadcast (e.g. [2,1,M,K] x [1,3,K,N]): one sgemm per batch,
     * locating each operand's matrix from the batch index digit by digit. */
    fu_emitf(e, "for (int64_t bi = 0; bi < %s; bi++) {", batch);
    e->indent++;
    fu_emitf(e, "int64_t rest = bi, off_a = 0, off_b = 0, digit;");
    fu_dim stride_a = fu_dim_mul(p->m, p->k), stride_b = fu_dim_mul(p->k, p->n);
    for (int i = p->batch_rank - 1; i >= 0; i--) {
        char sa[64], sb[64], d[64];
        snprintf(sa, sizeof sa, "%s", fu_dim_is_one(p->a_batch[i]) ? "0" : fu_emit_dim(e, stride_a));
        snprintf(sb, sizeof sb, "%s", fu_dim_is_one(p->b_batch[i]) ? "0" : fu_emit_dim(e, stride_b));
        snprintf(d, sizeof d, "%s", fu_emit_dim(e, p->batch[i]));
        fu_emitf(e, "digit = rest %% %s; rest /= %s; off_a += digit * %s; off_b += digit * %s;", d, d, sa, sb);
        stride_a = fu_dim_mul(stride_a, p->a_batch[i]);
        stride_b = fu_dim_mul(stride_b, p->b_batch[i]);
    }
    fu_emitf(e, "fu_rt_matmul_f32(%s + off_a, %s + off_b, %s + bi * %s, 1, %s, %s, %s, 0, 0, 0, %d, %d, %s, %s);", A,
             B, C, MN, M, N, K, p->trans_a, p->trans_b, alpha, beta);
    e->indent--;
    fu_emitf(e, "}");
}

static int matmul_emit(fu_emit *e, const fu_graph *g, const fu_node *n, fu_err *err) {
    matmul_shape p;
    if (matmul_plan(g, n, &p, err)) return -1;
    fu_batched_matmul bm = {.batch_rank = p.batch_rank, .m = p.m, .n = p.n, .k = p.k};
    memcpy(bm.batch, p.batch, sizeof bm.batch);
    memcpy(bm.a_batch, p.a_batch, sizeof bm.a_batch);
    memcpy(bm.b_batch, p.b_batch, sizeof bm.b_batch);
    char A[256], B[256], C[256];
    snprintf(A, sizeof A, "%s", fu_emit_ptr(e, n->in[0]));
    snprintf(B, sizeof B, "%s", fu_emit_ptr(e, n->in[1]));
    snprintf(C, sizeof C, "%s", fu_emit_ptr(e, n->out[0]));
    fu_emit_batched_matmul(e, &bm, A, B, C, "1.0f", "0.0f");
    return 0;
}

const fu_op fu_op_MatMul = {
    .name = "MatMul", .min_in = 2, .max_in = 2, .min_out = 1, .max_out = 1,
    .infer = matmul_infer, .emit = matmul_emit,
    .doc = "Y = A B with numpy matmul semantics: 1-D operands promoted (and the promoted dim dropped), batch dims "
           "broadcast; OpenBLAS sgemm. ONNX MatMul-13.",
    .dtypes = "float32 (both)",
};

/* ---- Gemm: Y = alpha * op(A) * op(B) + beta * C ------------------------- */

static int gemm_infer(fu_graph *g, fu_node *n, fu_err *err) {
    for (int i = 0; i < 2; i++)
        if (fu_require_input(g, n, i, FU_MASK(FU_F32), err)) return -1;
    const fu_value *a = &g->values[n->in[0]], *b = &g->values[n->in[1]];
    if (a->rank != 2 || b->rank != 2)
        return fu_node_fail(err, g, n, "Gemm needs rank-2 A and B (got %d and %d)", a->rank, b->rank);
    int trans_a = fu_attr_int(n, "transA", 0) != 0, trans_b = fu_attr_int(n, "transB", 0) != 0;
    fu_dim m = a->shape[trans_a ? 1 : 0], ka = a->shape[trans_a ? 0 : 1];
    fu_dim kb = b->shape[trans_b ? 1 : 0], nn = b->shape[trans_b ? 0 : 1];
    if (!fu_dim_eq(ka, kb)) {
        char s1[64], s2[64];
        fu_dim_str(g, ka, s1, sizeof s1);
        fu_dim_str(g, kb, s2, sizeof s2);
        return fu_node_fail(err, g, n, "Gemm inner dims differ: A has K=%s, B has K=%s", s1, s2);
    }
    if (n->n_in > 2 && n->in[2] >= 0) {
        if (fu_require_input(g, n, 2, FU_MASK(FU_F32), err)) return -1;
        const fu_value *c = &g->values[n->in[2]];
        if (c->rank > 2) return fu_node_fail(err, g, n, "Gemm C must have rank <= 2 (got %d)", c->rank);
        /* C broadcasts one way to [M, N]. */
        fu_dim target[2] = {m, nn};
        for (int i = 0; i < c->rank; i++) {
            fu_dim cd = c->shape[i], td = target[2 - c->rank + i];
            if (!fu_dim_is_one(cd) && !fu_dim_eq(cd, td))
                return fu_node_fail(err, g, n, "Gemm C (rank %d) does not broadcast to [M, N]", c->rank);
        }
    }
    fu_dim out[2] = {m, nn};
    fu_set_output(g, n, 0, FU_F32, 2, out);
    return 0;
}

static int gemm_emit(fu_emit *e, const fu_graph *g, const fu_node *n, fu_err *err) {
    const fu_value *a = &g->values[n->in[0]], *y = &g->values[n->out[0]];
    int trans_a = fu_attr_int(n, "transA", 0) != 0, trans_b = fu_attr_int(n, "transB", 0) != 0;
    double alpha = fu_attr_float(n, "alpha", 1.0), beta = fu_attr_float(n, "beta", 1.0);
    int has_c = n->n_in > 2 && n->in[2] >= 0 && beta != 0.0;
    fu_dim m = y->shape[0], nn = y->shape[1], k = a->shape[trans_a ? 0 : 1];
    char Y[256], alpha_s[64], beta_s[64];
    snprintf(Y, sizeof Y, "%s", fu_emit_ptr(e, n->out[0]));
    fu_float_literal((float)alpha, alpha_s, sizeof alpha_s);
    fu_float_literal(has_c ? (float)beta : 0.0, beta_s, sizeof beta_s);
    fu_emitf(e, "{");
    e->indent++;
    if (has_c) {
        /* Broadcast C into Y, then let sgemm accumulate onto it with beta. */
        const fu_value *c = &g->values[n->in[2]];
        fu_dim shape[2] = {m, nn}, dst_strides[2] = {nn, fu_dim_const(1)};
        fu_dim src_strides[2] = {fu_dim_const(0), fu_dim_const(0)};
        if (c->rank == 2) {
            if (!fu_dim_is_one(c->shape[0])) src_strides[0] = c->shape[1];
            if (!fu_dim_is_one(c->shape[1])) src_strides[1] = fu_dim_const(1);
        } else if (c->rank == 1 && !fu_dim_is_one(c->shape[0])) {
            src_strides[1] = fu_dim_const(1);
        }
        if (fu_emit_dim_array(e, "sh", 2, shape) || fu_emit_dim_array(e, "ds", 2, dst_strides) ||
            fu_emit_dim_array(e, "ss", 2, src_strides))
            return fu_node_fail(err, g, n, "out of memory");
        fu_emitf(e, "fu_rt_copy(%s, %s, 4, 2, sh, ds, ss);", Y, fu_emit_ptr(e, n->in[2]));
    }
    char A[256], B[256];
    snprintf(A, sizeof A, "%s", fu_emit_ptr(e, n->in[0]));
    snprintf(B, sizeof B, "%s", fu_emit_ptr(e, n->in[1]));
    char M[64], N[64], K[64];
    snprintf(M, sizeof M, "%s", fu_emit_dim(e, m));
    snprintf(N, sizeof N, "%s", fu_emit_dim(e, nn));
    snprintf(K, sizeof K, "%s", fu_emit_dim(e, k));
    fu_emitf(e, "fu_rt_matmul_f32(%s, %s, %s, 1, %s, %s, %s, 0, 0, 0, %d, %d, %s, %s);", A, B, Y, M, N,
             K, trans_a, trans_b, alpha_s, beta_s);
    e->indent--;
    fu_emitf(e, "}");
    return 0;
}

const fu_op fu_op_Gemm = {
    .name = "Gemm", .min_in = 2, .max_in = 3, .min_out = 1, .max_out = 1,
    .infer = gemm_infer, .emit = gemm_emit,
    .doc = "Y = alpha * op(A) op(B) + beta * C for 2-D A and B, C (optional, rank <= 2) broadcast one way to "
           "[M, N]; C is not read when beta is 0. ONNX Gemm-13.",
    .dtypes = "float32 (A, B, C)",
    .attrs = "transA (0): transpose A\n"
             "transB (0): transpose B\n"
             "alpha (1.0): scales A B\n"
             "beta (1.0): scales C",
};
