/* Shape and dtype inference with verification. */
#ifndef FUSEC_VERIFY_H
#define FUSEC_VERIFY_H

#include "ir.h"

/* Resolves every node's op, checks arity, dangling and duplicate names and
 * cycles, sorts nodes topologically, and infers every value's dtype and
 * shape (symbolic dims included). Fails with "file: node 'x' (Op): reason". */
int fu_infer(fu_graph *g, fu_err *err);

#endif
