/* Internals of the ONNX reader shared by ir/onnx_read.c (symbols, nodes,
 * the graph) and ir/onnx_tensor.c (tensors, initializers, the weights
 * table). Not an API: ir/onnx_read.h is. */
#ifndef FUSEC_ONNX_READ_IMPL_H
#define FUSEC_ONNX_READ_IMPL_H

#include <stdint.h>
#include "onnx.pb-c.h"
#include "onnx_read.h"

typedef struct {
    fu_graph *g;          /* NULL: only the weights table is wanted */
    const char *path;
    const fu_ir_opts *o;
    fu_err *err;
    int64_t opset;
    fu_weights *w;        /* the initializers that are weights */
    const char *meta_syms;      /* metadata "fusec.symbols" of a model fusec exported */
} reader;

/* What a TensorProto holds: dtype, shape and either its bytes (malloc'd)
 * or, for external data, a byte range of a file mapped in r->w. */
typedef struct {
    fu_dtype dt;
    int rank;
    int64_t shape[FU_MAX_RANK];
    size_t nbytes;
    void *data;           /* inline bytes, or NULL */
    int file;             /* external: index in r->w, else -1 */
    uint64_t offset;
} fu_onnx_tensor;

/* proto2 strings the file leaves out are NULL: read them as "". */
static inline const char *onnx_str(const char *s) { return s ? s : ""; }

/* fusec's dtype for an ONNX TensorProto data type; FU_UNDEF if unsupported. */
fu_dtype fu_onnx_dtype(int32_t t);
/* Decodes tensor t (`what` names it in messages); inline bytes are malloc'd
 * into tb->data, external data is mapped into r->w. 0 or -1. */
int fu_onnx_read_tensor(reader *r, const Onnx__TensorProto *t, const char *what, fu_onnx_tensor *tb);
/* Tensor t as the constant `name`: a weight in r->w when external or of
 * INLINE_WEIGHT_BYTES and more, else owned bytes embedded in the code.
 * Without a graph (r->g NULL) only weights are kept. 0 or -1. */
int fu_onnx_add_tensor(reader *r, const char *name, const Onnx__TensorProto *t, const char *what);
/* Seals r->w (content id, identity, size limit) and hands it to the graph,
 * or leaves it in r->w for the caller when there is no graph. 0 or -1. */
int fu_onnx_finish_weights(reader *r, const char *identity, const uint8_t *buf, size_t len);

#endif
