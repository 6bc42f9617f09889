/* Reading and writing the JSON IR (format: docs/ir.md), and Graphviz dot. */
#ifndef FUSEC_JSON_IR_H
#define FUSEC_JSON_IR_H

#include <stdio.h>
#include "ir.h"

/* Parses a model file and maps its weights file (if any). Checks syntax,
 * field types, dtype names, duplicate names, initializer sizes and that
 * every external initializer exists in the weights file with the declared
 * dtype and shape. Shapes of node outputs are left for fu_infer. */
fu_graph *fu_ir_load(const char *path, fu_err *err);
/* Same, from a string; `path` is used for messages and to resolve the
 * weights path relative to it. */
fu_graph *fu_ir_parse(const char *json_text, const char *path, fu_err *err);

/* How a model may name its files. The weights path resolves inside the
 * model file's folder (absolute paths, ".." and symlinks leading out are
 * refused: ir/files.h) unless allow_external_weights is set. NULL options
 * are all zero. */
typedef struct {
    int allow_external_weights;
    /* Bounds of an ONNX model's symbolic dims (dim_param), "seq=256,batch=4";
     * NULL: none (ir/onnx_read.h). The JSON IR declares its own "symbols". */
    const char *sym_max;
} fu_ir_opts;
fu_graph *fu_ir_load_opts(const char *path, const fu_ir_opts *o, fu_err *err);
fu_graph *fu_ir_parse_opts(const char *json_text, const char *path, const fu_ir_opts *o, fu_err *err);
/* Writes g as JSON IR that fu_ir_parse reads back. Inferred shapes are
 * written on node outputs as "value_info"; external initializers keep
 * referring to the weights file; inline/folded constants are written with
 * their data. */
int fu_ir_write(const fu_graph *g, FILE *f, fu_err *err);
/* Writes g as a Graphviz digraph. */
int fu_ir_write_dot(const fu_graph *g, FILE *f, fu_err *err);

#endif
