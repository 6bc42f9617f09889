/* Which older opsets of the default domain the ONNX reader accepts, op by
 * op: ir/onnx_opset.c. */
#ifndef FUSEC_ONNX_OPSET_H
#define FUSEC_ONNX_OPSET_H

#include <stdint.h>

/* The oldest default-domain opset from which ONNX op `op` means what fusec
 * implements (its opset-13+ meaning, with the attribute-to-input forms the
 * reader converts), so a model of that opset or newer reads the same; 13
 * for an op the table does not know. */
int64_t fu_onnx_op_since(const char *op);

#endif
