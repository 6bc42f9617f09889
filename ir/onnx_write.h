/* Writing a fusec graph as an ONNX model (ModelProto): ir/onnx_write.c.
 * The protobuf is encoded by the C that protoc-c generates from onnx.proto
 * (Makefile); nothing here writes protobuf by hand. docs/onnx_export.md. */
#ifndef FUSEC_ONNX_WRITE_H
#define FUSEC_ONNX_WRITE_H

#include "ir.h"

typedef struct {
    /* Out: where the external data of the weights lives, relative to the
     * .onnx file's folder ("" when the model has no external weights). */
    char data_location[256];
    /* Out: 1 when OUT.safetensors was made beside the .onnx file (a hard
     * link to the weights file, or a copy when linking failed). */
    int data_created;
    /* Out: 1 when that file is a copy (the folders are on different file
     * systems, or linking is not allowed). */
    int data_copied;
} fu_onnx_write_info;

/* Writes g (inferred: every node output has a dtype and a shape) as an ONNX
 * model, default domain at opset 23, to out_path (atomically: a temp file
 * renamed into place; on error nothing is left behind).
 *
 * - Standard ops keep their op type, names and attributes.
 * - Fused ops: RMSNormalization, LayerNormalization, Gelu, RotaryEmbedding
 *   and Attention become the ONNX operators (with Reshape / Transpose
 *   around them where fusec's layouts differ); SwiGLU and FusedMatMul,
 *   which ONNX lacks, become calls of ONNX functions (domain "fusec") whose
 *   bodies are the composed subgraphs.
 * - Constants with their own data are initializers (raw_data); weights
 *   mapped from a safetensors file are initializers with external data
 *   pointing at their byte range in that file (nothing copied). When the
 *   .onnx goes to another folder than the safetensors file, a hard link
 *   OUT.safetensors is made beside it (a copy if linking fails).
 * - Symbol bounds are kept in metadata_props "fusec.symbols" ("seq=256").
 * Returns 0, or -1 with err naming the file, node and reason. */
int fu_onnx_write(const fu_graph *g, const char *out_path, fu_onnx_write_info *info, fu_err *err);

#endif
