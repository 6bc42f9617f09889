/* Shape and dim helpers shared by every layer above the IR: comparisons,
 * element counts and text for messages. */
#ifndef FUSEC_SHAPE_H
#define FUSEC_SHAPE_H

#include "ir.h"

/* d is the static dim c. */
int fu_dim_is(fu_dim d, int64_t c);
/* d is the static dim 1 (a broadcast dim). */
int fu_dim_is_one(fu_dim d);
/* Same rank and equal dims. */
int fu_shape_eq(int rank_a, const fu_dim *a, int rank_b, const fu_dim *b);
/* Values a and b have the same rank and dims. */
int fu_value_same_shape(const fu_value *a, const fu_value *b);
/* Element count of v as a dim (the product of its dims). */
fu_dim fu_value_numel_dim(const fu_value *v);
/* Writes a shape as "[2, seq, 64]", its dims separated by sep (", " or ","). */
void fu_shape_str(const fu_graph *g, int rank, const fu_dim *shape, const char *sep, char *buf, size_t n);

#endif
