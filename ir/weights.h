/* Weights: named tensors in read-only mapped files (ir/weights.c).
 * A safetensors file's header is validated in full (JSON, dtypes, shapes,
 * offsets inside the file, sizes matching shapes, no overlap beyond the
 * data area) before any tensor is handed out. An ONNX model's initializers
 * (external data in mapped files, large inline ones copied) form the same
 * kind of table (ir/onnx_tensor.c, fu_onnx_weights_open). */
#ifndef FUSEC_WEIGHTS_H
#define FUSEC_WEIGHTS_H

#include "ir.h"

typedef struct fu_weights fu_weights;

/* Opens a regular file (ir/files.h: a FIFO never blocks) and maps it: a
 * safetensors file, or the initializers of an ONNX model (path ends in
 * ".onnx"; its external data must stay inside its folder). */
fu_weights *fu_weights_open(const char *path, fu_err *err);
/* Maps the regular file open on fd (closed here, whatever happens); path
 * names it in messages and in the identity. */
fu_weights *fu_weights_open_fd(int fd, const char *path, fu_err *err);
/* A safetensors image in memory that outlives the table (the weights a
 * library embeds); name names it in messages. */
fu_weights *fu_weights_open_memory(const void *bytes, size_t size, const char *name, fu_err *err);
/* The mapping is reference counted: retain adds a user (a cloned graph),
 * close drops one and unmaps when the last user is gone. */
fu_weights *fu_weights_retain(fu_weights *w);
void fu_weights_close(fu_weights *w);
/* Finds tensor `name`; returns 0 and fills the outputs, -1 if absent. */
int fu_weights_find(const fu_weights *w, const char *name, fu_dtype *dtype, int *rank,
                    int64_t *shape, const void **data, size_t *nbytes);
/* Building a table (the ONNX reader): an empty table named by path; maps
 * the regular file open on fd (closed here; the same path is mapped once)
 * and returns its index (mapped_bytes: its mapping and size); adds a tensor at a byte range of a mapped file
 * (checked to lie inside it) or one whose data the table takes over
 * (malloc'd; freed here on failure too); seal sorts the names (refusing
 * duplicates) and sets the identity from the files and extra_identity. */
fu_weights *fu_weights_new(const char *path, fu_err *err);
int fu_weights_map_file(fu_weights *w, int fd, const char *path, fu_err *err);
const void *fu_weights_mapped_bytes(const fu_weights *w, int file, size_t *size);
int fu_weights_add(fu_weights *w, const char *name, fu_dtype dtype, int rank, const int64_t *shape, int file,
                   uint64_t offset, uint64_t nbytes, const void **data, fu_err *err);
int fu_weights_add_owned(fu_weights *w, const char *name, fu_dtype dtype, int rank, const int64_t *shape,
                         void *data, size_t nbytes, fu_err *err);
int fu_weights_seal(fu_weights *w, const char *extra_identity, fu_err *err);
/* Drops the pages of [p, p + nbytes) from the process when they belong
 * to one of w's mapped files (copies the table holds are left alone). */
void fu_weights_drop_pages(const fu_weights *w, const void *p, size_t nbytes);
/* Identity for build caches: path, size, mtime and a hash of the header. */
const char *fu_weights_identity(const fu_weights *w);
/* Bytes behind the table: its mapped files and its owned copies. */
size_t fu_weights_file_size(const fu_weights *w);
/* Identity of the content, wherever the files lie (a compiled model binds
 * to any copy of its weights): a safetensors file's size and header hash;
 * for an ONNX model, what its reader sets (fu_weights_set_content_id). */
const char *fu_weights_content_id(const fu_weights *w);
void fu_weights_set_content_id(fu_weights *w, const char *id);
/* Constant folding baked values computed from tensor `name` into code
 * (passes/fold.c): a compiled model checks those tensors' bytes at load.
 * fu_weights_folded gives the i-th such tensor (0 on success, -1 past the
 * last). */
void fu_weights_mark_folded(fu_weights *w, const char *name);
int fu_weights_folded(const fu_weights *w, int i, const char **name, const void **data, size_t *nbytes);
const char *fu_weights_path(const fu_weights *w);
/* The files the table maps (a safetensors file, an ONNX model's external
 * data files). */
int fu_weights_n_files(const fu_weights *w);
const char *fu_weights_file_path(const fu_weights *w, int i);
/* 1 once reading the mapping hit a SIGBUS (the file was truncated while
 * mapped; ir/mapguard.h): its data is gone, the model must be loaded again.
 * Reads of the mapping must happen between fu_mapguard_enter and _leave. */
int fu_weights_faulted(const fu_weights *w);

#endif
