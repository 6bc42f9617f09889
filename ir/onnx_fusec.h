/* What the ONNX reader (ir/onnx_read.c) needs to read back the models that
 * fusec export writes (ir/onnx_write.c): the calls of the "fusec" domain's
 * functions (SwiGLU, FusedMatMul_*).
 * ir/onnx_fusec.c; docs/onnx_export.md. */
#ifndef FUSEC_ONNX_FUSEC_H
#define FUSEC_ONNX_FUSEC_H

#include <stddef.h>
#include "ir.h"

/* The fusec op that node (domain, op_type) of an exported model calls
 * ("SwiGLU", "FusedMatMul"), or NULL when it is none. */
const char *fu_onnx_fusec_op(const char *domain, const char *op_type);
/* The attributes a FusedMatMul_* function name carries (transA, transB,
 * alpha), set on node n. 0, or -1 when out of memory. */
int fu_onnx_fusec_attrs(fu_node *n, const char *op_type);

#endif
