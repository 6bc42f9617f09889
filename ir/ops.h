/* The op registry. Each op lives in one file under ir/ops/ that holds its
 * whole meaning for fusec: arity, shape/dtype rule, and C emitter.
 * Elementwise ops only give a scalar C expression; the emitter wraps it in
 * (possibly fused) loops with broadcasting. Other ops emit calls into the
 * runtime kernels (runtime/fusec_kernels.h).
 *
 * Semantics follow ONNX (opset 18+ attribute and input conventions). */
#ifndef FUSEC_OPS_H
#define FUSEC_OPS_H

#include "ir.h"

/* The list of ops fusec knows. Each fu_op_X is defined in ir/ops/<file>.c. */
#define FU_OPS(X)                                                                              \
    /* elementwise: ir/ops/elementwise.c */                                                 \
    X(Add) X(Sub) X(Mul) X(Div) X(Pow) X(Sqrt) X(Reciprocal) X(Neg) X(Exp) X(Log) X(Erf)    \
    X(Tanh) X(Sigmoid) X(Relu) X(Cos) X(Sin) X(Abs) X(Max) X(Min) X(Cast) X(Where)          \
    X(Equal) X(Less) X(Greater) X(LessOrEqual) X(GreaterOrEqual) X(Not) X(And) X(Or)        \
    X(Expand)                                                                               \
    /* linear algebra: ir/ops/matmul.c */                                                   \
    X(MatMul) X(Gemm)                                                                       \
    /* reductions: ir/ops/reduce.c */                                                       \
    X(ReduceMean) X(ReduceSum) X(ReduceMax) X(Softmax) X(LogSoftmax)                        \
    /* views: ir/ops/views.c */                                                             \
    X(Reshape) X(Flatten) X(Unsqueeze) X(Squeeze) X(Identity)                               \
    /* data movement: ir/ops/movement.c */                                                  \
    X(Transpose) X(Concat) X(Slice) X(Split) X(Tile) X(Gather) X(Trilu)                     \
    /* generators and shapes: ir/ops/generators.c */                                        \
    X(Range) X(ConstantOfShape) X(Constant) X(Shape)                                       \
    /* fused ops (fast profile): ir/ops/norm.c, rotary.c, attention.c, swiglu.c,            \
     * fused_matmul.c */                                                                    \
    X(RMSNormalization) X(LayerNormalization) X(RotaryEmbedding) X(Attention) X(SwiGLU)     \
    X(FusedMatMul)                                                                          \
    /* Gelu (ONNX-20, any profile; fused by the fast profile): ir/ops/gelu.c */             \
    X(Gelu)

/* Op ids: FU_OP_Add, FU_OP_MatMul, ... in FU_OPS order. Passes compare ids,
 * not strings. */
typedef enum {
#define FU_OP_ID(name) FU_OP_##name,
    FU_OPS(FU_OP_ID)
#undef FU_OP_ID
    FU_OP_COUNT
} fu_op_id;

struct fu_emit;

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
} fu_op;

const fu_op *fu_op_find(const char *name);
/* The id of the op called `name`, -1 when fusec has no such op. */
int fu_op_id_find(const char *name);
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
int fu_require_input(const fu_graph *g, const fu_node *n, int i, unsigned dtype_mask, fu_err *err);

/* A batched product C[b] = alpha * op(A[b]) op(B[b]) + beta * C[b] as
 * MatMul, Gemm-like and FusedMatMul nodes spell it (numpy batching).
 * Shared by ir/ops/matmul.c and ir/ops/fused_matmul.c. */
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
