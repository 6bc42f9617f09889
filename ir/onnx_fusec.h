/* What the ONNX reader (ir/onnx_read.c) needs to read back the models that
 * fusec export writes (ir/onnx_write.c): tensors kept as external data, and
 * the calls of the "fusec" domain's functions (SwiGLU, FusedMatMul_*).
 * ir/onnx_fusec.c; docs/onnx_export.md. */
#ifndef FUSEC_ONNX_FUSEC_H
#define FUSEC_ONNX_FUSEC_H

#include <stddef.h>
#include "onnx.pb-c.h"
#include "ir.h"

/* Reads the want bytes of tensor t, stored as external data (location,
 * offset, length) in a file inside the model's folder (model_path; outside
 * it only with allow_external), into buf. what names the tensor. */
int fu_onnx_read_external(const Onnx__TensorProto *t, const char *model_path, int allow_external, const char *what,
                          void *buf, size_t want, fu_err *err);

/* Adds initializer t (external data in a safetensors file inside the
 * model's folder) as constant `name` pointing into that file, mapped as the
 * graph's weights (g->weights; the first such file, as a JSON model's
 * weights): nothing is copied. Returns 1 when added, 0 when the data is not
 * in a safetensors file or another one than g->weights (the caller reads it
 * into memory instead), -1 with err set on an error. */
int fu_onnx_add_mapped(fu_graph *g, const char *name, const Onnx__TensorProto *t, const char *model_path,
                       int allow_external, const char *what, fu_err *err);

/* The fusec op that node (domain, op_type) of an exported model calls
 * ("SwiGLU", "FusedMatMul"), or NULL when it is none. */
const char *fu_onnx_fusec_op(const char *domain, const char *op_type);
/* The attributes a FusedMatMul_* function name carries (transA, transB,
 * alpha), set on node n. 0, or -1 when out of memory. */
int fu_onnx_fusec_attrs(fu_node *n, const char *op_type);

#endif
