/* Memory-mapped safetensors weights. The header is validated in full
 * (JSON, dtypes, shapes, offsets inside the file, sizes matching shapes,
 * no overlap beyond the data area) before any tensor is handed out. */
#ifndef FUSEC_WEIGHTS_H
#define FUSEC_WEIGHTS_H

#include "ir.h"

typedef struct fu_weights fu_weights;

/* Opens a regular file (ir/files.h: a FIFO never blocks) and maps it. */
fu_weights *fu_weights_open(const char *path, fu_err *err);
/* Maps the regular file open on fd (closed here, whatever happens); path
 * names it in messages and in the identity. */
fu_weights *fu_weights_open_fd(int fd, const char *path, fu_err *err);
/* The mapping is reference counted: retain adds a user (a cloned graph),
 * close drops one and unmaps when the last user is gone. */
fu_weights *fu_weights_retain(fu_weights *w);
void fu_weights_close(fu_weights *w);
/* Finds tensor `name`; returns 0 and fills the outputs, -1 if absent. */
int fu_weights_find(const fu_weights *w, const char *name, fu_dtype *dtype, int *rank,
                    int64_t *shape, const void **data, size_t *nbytes);
/* Identity for build caches: path, size, mtime and a hash of the header. */
const char *fu_weights_identity(const fu_weights *w);
size_t fu_weights_file_size(const fu_weights *w);
const char *fu_weights_path(const fu_weights *w);
/* The byte offset in the file of the n bytes at p (a tensor's data handed
 * out by fu_weights_find); -1 when they are not inside the mapping. */
int fu_weights_range(const fu_weights *w, const void *p, size_t n, uint64_t *offset);
/* The n bytes at file offset `offset`, when they lie in the data area (after
 * the header); NULL otherwise. */
const void *fu_weights_at(const fu_weights *w, uint64_t offset, size_t n);
/* 1 once reading the mapping hit a SIGBUS (the file was truncated while
 * mapped; ir/mapguard.h): its data is gone, the model must be loaded again.
 * Reads of the mapping must happen between fu_mapguard_enter and _leave. */
int fu_weights_faulted(const fu_weights *w);

#endif
