/* Op identity: the list of ops fusec knows, as names and ids. What each op
 * means (shape rule, C emitter) lives one layer up, in ops/ (ops/ops.h
 * builds its registry from this same list); the IR only needs to know an
 * op's id to tag its nodes. */
#ifndef FUSEC_OP_IDS_H
#define FUSEC_OP_IDS_H

/* The list of ops fusec knows. Each fu_op_X is defined in ops/<file>.c. */
#define FU_OPS(X)                                                                              \
    /* elementwise: ops/elementwise.c */                                                    \
    X(Add) X(Sub) X(Mul) X(Div) X(Pow) X(Sqrt) X(Reciprocal) X(Neg) X(Exp) X(Log) X(Erf)    \
    X(Tanh) X(Sigmoid) X(Relu) X(Cos) X(Sin) X(Abs) X(Max) X(Min) X(Cast) X(Where)          \
    X(Equal) X(Less) X(Greater) X(LessOrEqual) X(GreaterOrEqual) X(Not) X(And) X(Or)        \
    X(Expand)                                                                               \
    /* linear algebra: ops/matmul.c */                                                      \
    X(MatMul) X(Gemm)                                                                       \
    /* reductions: ops/reduce.c */                                                          \
    X(ReduceMean) X(ReduceSum) X(ReduceMax) X(Softmax) X(LogSoftmax)                        \
    /* views: ops/views.c */                                                                \
    X(Reshape) X(Flatten) X(Unsqueeze) X(Squeeze) X(Identity)                               \
    /* data movement: ops/movement.c */                                                     \
    X(Transpose) X(Concat) X(Slice) X(Split) X(Tile) X(Gather) X(Trilu)                     \
    /* generators and shapes: ops/generators.c */                                           \
    X(Range) X(ConstantOfShape) X(Constant) X(Shape)                                       \
    /* fused ops (fast profile): ops/norm.c, rotary.c, attention.c, swiglu.c,               \
     * fused_matmul.c */                                                                    \
    X(RMSNormalization) X(LayerNormalization) X(RotaryEmbedding) X(Attention) X(SwiGLU)     \
    X(FusedMatMul)                                                                          \
    /* Gelu (ONNX-20, any profile; fused by the fast profile): ops/gelu.c */                 \
    X(Gelu)

/* Op ids: FU_OP_Add, FU_OP_MatMul, ... in FU_OPS order. Passes compare ids,
 * not strings. */
typedef enum {
#define FU_OP_ID(name) FU_OP_##name,
    FU_OPS(FU_OP_ID)
#undef FU_OP_ID
    FU_OP_COUNT
} fu_op_id;

/* The id of the op called `name`, -1 when fusec has no such op. */
int fu_op_id_find(const char *name);
/* The name of op `id` ("Add"), NULL when out of range. */
const char *fu_op_name(int id);

#endif
