/* Reading ONNX models (ModelProto) into a fusec graph: ir/onnx_read.c.
 * The protobuf is decoded by C that protoc-c generates at build time from
 * the onnx.proto schema (Makefile); nothing here parses protobuf by hand. */
#ifndef FUSEC_ONNX_READ_H
#define FUSEC_ONNX_READ_H

#include <stddef.h>
#include <stdint.h>
#include "json_ir.h"
#include "weights.h"

/* Same contract as fu_ir_load_opts: a graph whose node output shapes are
 * left to fu_infer, or NULL with err naming the file, node and reason.
 * Reads opsets 13..23 of the default domain (older ones when every op
 * means the same since, ir/onnx_opset.h); initializers become owned
 * constants; Constant nodes become constants; attributes that later opsets
 * turned into inputs (Reduce* axes, Split split, Squeeze/Unsqueeze axes)
 * become constant inputs (docs/ir.md). Initializers (and Constant values)
 * stored as external data, or of 4 KiB and more, are weights: g->weights
 * maps the external files (inside the model's folder unless
 * o->allow_external_weights) and holds the large inline ones; g->weights_path
 * is the model file. Symbolic dims (dim_param) take their
 * bound from o->sym_max ("seq=256,batch=4"). */
fu_graph *fu_onnx_load(const char *path, const fu_ir_opts *o, fu_err *err);
/* Same, from the bytes of a model file; path names it in messages. */
fu_graph *fu_onnx_parse(const uint8_t *buf, size_t len, const char *path, const fu_ir_opts *o, fu_err *err);
/* The weights of the ONNX model at path, alone: the same table fu_onnx_load
 * builds (external data mapped, initializers of 4 KiB and more held), for
 * binding compiled code to its weights (api/fusec.c). */
fu_weights *fu_onnx_weights_open(const char *path, int allow_external, fu_err *err);
/* 1 when path names an ONNX model (ends in ".onnx"). */
int fu_is_onnx_path(const char *path);

#endif
