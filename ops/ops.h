/* The op registry. Each op lives in one file under ops/ that holds its
 * whole meaning for fusec: arity, shape/dtype rule, and C emitter (written
 * with the small toolkit of ops/emit.h). Which ops exist, and their ids,
 * is the IR's business (ir/op_ids.h); the table is built from that list.
 * Elementwise ops only give a scalar C expression; the emitter wraps it in
 * (possibly fused) loops with broadcasting. Other ops emit calls into the
 * runtime kernels (runtime/fusec_kernels.h).
 *
 * Semantics follow ONNX (opset 18+ attribute and input conventions). */
#ifndef FUSEC_OPS_H
#define FUSEC_OPS_H

#include "../ir/ir.h"
#include "../ir/op_ids.h"   /* FU_OPS, fu_op_id, fu_op_id_find */

struct fu_emit;

/* Most values one elementwise loop group reads from outside itself: the
 * plan (passes/plan.c) keeps groups under it, the emitter
 * (compiler/emit_loop.c) sizes its tables by it. */
#define FU_LOOP_MAX_OPERANDS 64

typedef struct fu_op {
    const char *name;
    int min_in, max_in;
    int min_out, max_out;

    /* Checks attributes and input dtypes/shapes, sets output dtype, rank,
     * shape (and known values for small int64 results). Inputs are already
     * inferred. Errors name node and reason via fu_node_fail. */
    int (*infer)(fu_graph *g, fu_node *n, fu_err *err);

    /* Elementwise ops: number of leading inputs that are broadcast data
     * operands (Expand: 1, Where: 3, Add: 2, Relu: 1); 0 for other ops. */
    int elementwise_operands;
    /* Elementwise ops: writes a C expression computing one output element
     * from operand expressions `args` (each already converted to the
     * compute type of its input dtype: float for f32/f16/bf16, int64_t,
     * int32_t, or int (0/1) for bool). Result has the compute type of the
     * output dtype. */
    int (*expr)(const fu_graph *g, const fu_node *n, const char *const *args,
                char *buf, size_t bufsz, fu_err *err);

    /* Non-elementwise ops: emits C statements for the node. */
    int (*emit)(struct fu_emit *e, const fu_graph *g, const fu_node *n, fu_err *err);

    /* Pure aliasing op (Reshape, Squeeze, Unsqueeze, Flatten, Identity):
     * output 0 is input 0's bytes under another shape. */
    int is_view;

    /* The op's documentation, kept here beside its rule so it cannot drift
     * far from it: docs/ops.md is generated from these (`make docs`,
     * tools/gen_ops_doc.c) and `make test` checks it is current.
     *   doc     what the op computes, in one line (a fused op: its composed
     *           meaning), and which ONNX definition it follows;
     *   dtypes  the input dtypes infer accepts, per input where they differ;
     *   attrs   the attributes infer / emit read, one per line,
     *           "name (default): meaning"; NULL when none. */
    const char *doc;
    const char *dtypes;
    const char *attrs;
} fu_op;

const fu_op *fu_op_find(const char *name);
/* Iterates the registry: returns NULL past the end. */
const fu_op *fu_op_at(int i);

/* Shared shape helpers for op files. */
/* Multidirectional (numpy) broadcast of shapes a and b. */
int fu_broadcast(const fu_graph *g, const fu_node *n, int ra, const fu_dim *a, int rb,
                 const fu_dim *b, int *rout, fu_dim *out, fu_err *err);
/* Normalises a possibly negative axis against rank; fails on out of range. */
int fu_norm_axis(const fu_graph *g, const fu_node *n, int64_t axis, int rank, int *out, fu_err *err);
/* Reads an int64 list from a constant input (or known shape values). When
 * the input's values are known only as dims, fills dims and sets *as_dims. */
int fu_input_ints(const fu_graph *g, const fu_node *n, int input, int64_t *vals, int max,
                  int *count, fu_err *err);
int fu_input_dims(const fu_graph *g, const fu_node *n, int input, fu_dim *vals, int max,
                  int *count, fu_err *err);
/* Sets output `o` of node n. */
void fu_set_output(fu_graph *g, const fu_node *n, int o, fu_dtype t, int rank, const fu_dim *shape);
/* Requires input i to exist and to have dtype in the allowed mask
 * (bit 1<<dtype); fails naming the node otherwise. */
/* Attention node n aligns its causal mask to the end of the keys (fusec
 * attribute causal_align "end"); else to their start, as ONNX does
 * (ops/attention.c, which refuses any other value). */
int fu_attention_causal_end(const fu_node *n);
int fu_require_input(const fu_graph *g, const fu_node *n, int i, unsigned dtype_mask, fu_err *err);

/* A batched product C[b] = alpha * op(A[b]) op(B[b]) + beta * C[b] as
 * MatMul, Gemm-like and FusedMatMul nodes spell it (numpy batching).
 * Shared by ops/matmul.c and ops/fused_matmul.c. */
typedef struct {
    int batch_rank;
    fu_dim batch[FU_MAX_RANK];                  /* broadcast batch dims */
    fu_dim a_batch[FU_MAX_RANK], b_batch[FU_MAX_RANK];  /* each operand's, 1-padded */
    fu_dim m, n, k;
    int trans_a, trans_b;
} fu_batched_matmul;
/* Emits the calls for p: one fu_rt_matmul_f32 with strides when each
 * operand is either shared or per batch, else a loop over the batch. A, B
 * and C are C pointer expressions; alpha and beta C float literals. */
void fu_emit_batched_matmul(struct fu_emit *e, const fu_batched_matmul *p, const char *A, const char *B,
                            const char *C, const char *alpha, const char *beta);

#define FU_MASK(t) (1u << (t))
#define FU_FLOATS (FU_MASK(FU_F32) | FU_MASK(FU_F16) | FU_MASK(FU_BF16))
#define FU_INTS (FU_MASK(FU_I64) | FU_MASK(FU_I32))
#define FU_NUMERIC (FU_FLOATS | FU_INTS)
#define FU_ANY (FU_NUMERIC | FU_MASK(FU_BOOL))

#endif
