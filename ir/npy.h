/* .npy files (format version 1.0/2.0, little-endian, C order). */
#ifndef FUSEC_NPY_H
#define FUSEC_NPY_H

#include "ir.h"

typedef struct {
    fu_dtype dtype;
    int rank;
    int64_t shape[FU_MAX_RANK];
    void *data;          /* malloc'd */
    size_t nbytes;
} fu_array;

int fu_npy_read(const char *path, fu_array *out, fu_err *err);
/* Writes atomically (temp file + rename). */
int fu_npy_write(const char *path, const fu_array *a, fu_err *err);
/* Parses a nested JSON array ("[[1,2],[3,4]]") into an array of dtype t. */
int fu_array_from_json(const char *text, fu_dtype t, fu_array *out, fu_err *err);
/* Same, from an already parsed json-c value (the IR reader's inline data).
 * Messages give only the reason; the caller adds file and value names. */
struct json_object;
int fu_array_from_json_value(struct json_object *v, fu_dtype t, fu_array *out, fu_err *err);
void fu_array_free(fu_array *a);

#endif
