/* The core both norm rules share (passes/fuse_rms_norm.c,
 * passes/fuse_layer_norm.c):  x_pat / sqrt(mean(v^2, axis=-1) + eps), where
 * v is x_pat's value (bound to slot), spelled
 *   square   Pow(v, 2) or Mul(v, v)
 *   divide   Div(v, Sqrt(s)), Mul(v, Reciprocal(Sqrt(s))), Mul(v, Div(1, Sqrt(s)))
 *   s        Add(ReduceMean(square), eps) in either order.
 * Captures: VAR (the ReduceMean of the square), EPS. */
#ifndef FUSEC_NORM_PATTERNS_H
#define FUSEC_NORM_PATTERNS_H

#include "fusion.h"

/* Capture slots of the core; a rule numbers its own from NORM_SLOTS. */
enum { VAR = 1, EPS, NORM_SLOTS };

#define NORM_SQUARE(slot) \
    EITHER("square", OP(Pow, VAL_CASTS(slot), SCALAR(2, "Pow exponent")), OP(Mul, VAL_CASTS(slot), VAL_CASTS(slot)))
#define NORM_ROOT(slot) \
    OP(Sqrt, OPC(Add, CAP(VAR, OPF(ReduceMean, FU_PAT_NEAR, NORM_SQUARE(slot))), SCALAR_ANY(EPS, "epsilon")))
#define NORM_CORE(x_pat, slot)                                                                 \
    EITHER("normalised", OP(Div, x_pat, NORM_ROOT(slot)), OPC(Mul, x_pat, OP(Reciprocal, NORM_ROOT(slot))), \
           OPC(Mul, x_pat, OP(Div, SCALAR(1, "numerator"), NORM_ROOT(slot))))

/* ReduceMean node `mean` folds exactly the last axis, keeping it; else the
 * reason, naming the ReduceMean by `what`. */
int fu_norm_reduces_last_axis(const fu_graph *g, int mean, const char *what, char *why, size_t n);
/* Float32 x of rank >= 1, result float32 of x's shape, eps >= 0. */
int fu_norm_check_io(const fu_graph *g, int x, int result, double eps, char *why, size_t n);
/* A float32 [n] vector, n the last dim of x. */
int fu_norm_is_vector(const fu_graph *g, int v, int x);

#endif
