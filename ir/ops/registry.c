/* The list of ops fusec knows. Each fu_op_X is defined in ir/ops/<file>.c. */
#include <string.h>
#include "../ops.h"

#define OPS(X)                                                                              \
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
    X(FusedMatMul)

#define DECLARE(name) extern const fu_op fu_op_##name;
OPS(DECLARE)
#undef DECLARE

#define ENTRY(name) &fu_op_##name,
static const fu_op *const registry[] = {OPS(ENTRY)};
#undef ENTRY

const fu_op *fu_op_at(int i) {
    if (i < 0 || i >= (int)(sizeof registry / sizeof registry[0])) return NULL;
    return registry[i];
}

const fu_op *fu_op_find(const char *name) {
    for (size_t i = 0; i < sizeof registry / sizeof registry[0]; i++)
        if (strcmp(registry[i]->name, name) == 0) return registry[i];
    return NULL;
}
