/* Shape and dtype inference with verification: fu_infer runs every op's
 * shape rule (ops/ops.h) over the graph. */
#ifndef FUSEC_INFER_H
#define FUSEC_INFER_H

#include "../ir/ir.h"

/* Resolves every node's op, checks arity, dangling and duplicate names and
 * cycles, sorts nodes topologically, and infers every value's dtype and
 * shape (symbolic dims included). Fails with "file: node 'x' (Op): reason". */
int fu_infer(fu_graph *g, fu_err *err);

#endif
