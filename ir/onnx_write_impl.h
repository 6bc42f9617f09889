/* Internals of the ONNX writer shared by ir/onnx_write.c (the model, plain
 * nodes, tensors, files) and ir/onnx_write_fused.c (fusec's fused ops as
 * ONNX operators and functions). Not an API: ir/onnx_write.h is. */
#ifndef FUSEC_ONNX_WRITE_IMPL_H
#define FUSEC_ONNX_WRITE_IMPL_H

#include <stddef.h>
#include <stdint.h>
#include "onnx.pb-c.h"
#include "ir.h"

#define OPSET 23
#define FUSEC_DOMAIN "fusec"

typedef struct {
    const fu_graph *g;
    const char *out;
    fu_err *err;
    const char *location;       /* external data file, relative to the .onnx folder */
    int data_file;              /* the weights table's file that location names, -1: none */
    void **allocs;
    size_t n_allocs, cap_allocs;
    int oom;
    /* the graph's nodes, initializers and functions under construction */
    Onnx__NodeProto **nodes;
    size_t n_nodes, cap_nodes;
    Onnx__TensorProto **inits;
    size_t n_inits, cap_inits;
    Onnx__FunctionProto **funcs;
    size_t n_funcs, cap_funcs;
    char *const_needed;         /* per value: written as an initializer */
    /* cos/sin caches made from a RotaryEmbedding's inv_freq, shared by the
     * nodes with the same inv_freq, pos_offset, amplitude and length */
    struct rope_cache {
        int inv_freq;
        int64_t pos_offset, max_pos;
        double amplitude;
        const char *cos, *sin;
    } caches[16];
    int n_caches;
    int fresh;                  /* counter for names the writer makes */
} writer;

typedef struct {
    Onnx__NodeProto ***arr;
    size_t *n, *cap;
} node_list;

void *ow_alloc(writer *w, size_t n);
char *ow_str(writer *w, const char *s);
char *ow_fmt(writer *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ow_push(writer *w, void ***arr, size_t *n, size_t *cap, void *p);
Onnx__TensorProto *ow_tensor(writer *w, const char *name, fu_dtype dt, int rank, const int64_t *shape);
Onnx__TensorProto *ow_tensor_copy(writer *w, const char *name, fu_dtype dt, int rank, const int64_t *shape,
                                  const void *data, size_t nbytes);
Onnx__AttributeProto *ow_attr_new(writer *w, const char *name, Onnx__AttributeProto__AttributeType type);
Onnx__AttributeProto *ow_attr_int(writer *w, const char *name, int64_t i);
Onnx__AttributeProto *ow_attr_float(writer *w, const char *name, double f);
Onnx__AttributeProto *ow_attr_ints(writer *w, const char *name, int n, const int64_t *v);
Onnx__AttributeProto *ow_attr_string(writer *w, const char *name, const char *s);
Onnx__AttributeProto *ow_attr_copy(writer *w, const fu_attr *fa);
Onnx__NodeProto *ow_node_add(writer *w, node_list l, const char *name, const char *domain, const char *op,
                             int n_in, const char *const *in, int n_out, const char *const *out);
void ow_node_attr(writer *w, Onnx__NodeProto *n, Onnx__AttributeProto *a);
node_list ow_graph_nodes(writer *w);
const char *ow_use(writer *w, int vi);
const char *ow_fresh(writer *w, int k, const char *what);
const char *ow_const_i64(writer *w, int k, const char *what, int n, const int64_t *v, int scalar);
const char *ow_const_f32(writer *w, int k, const char *what, int rank, const int64_t *shape, const float *v);
const char *ow_helper(writer *w, int k, const char *op, int n_in, const char *const *in, Onnx__NodeProto **np);
const char *ow_reshape(writer *w, int k, const char *x, int n, const int64_t *shape);
const char *ow_transpose(writer *w, int k, const char *x, int n, const int64_t *perm);
Onnx__NodeProto *ow_copy_node(writer *w, int k, const char *domain, const char *op, const char *const *skip,
                              int n_in);
int ow_static_dim(writer *w, int k, fu_dim d, const char *what, int64_t *out);
Onnx__OperatorSetIdProto *ow_opset(writer *w, const char *domain, int64_t version);
int ow_export_norm(writer *w, int k);
int ow_export_rotary(writer *w, int k);
int ow_export_attention(writer *w, int k);
int ow_export_swiglu(writer *w, int k);
int ow_export_fused_matmul(writer *w, int k);

#endif
