/* Packed weights: the copies of a model's matmul weights in the GEMM
 * micro-kernels' layout (runtime/gemm.h), kept in the build cache.
 *
 * The weights file (model.safetensors) stays the source of truth. The
 * packed copies of one model live in one file, cache_dir/packed-<key>.bin,
 * whose key hashes everything the packing read: the weights file's
 * identity (path, size, mtime, header hash) and the list of (weight,
 * layout). The file is written once, atomically (temp file + rename), and
 * mapped read-only. Before it is used its header, sizes and the xxh3
 * checksum of every packed weight are checked; a truncated, corrupt or
 * foreign file, or one that someone else owns or may write (it is mapped
 * shared, so it could change after the check), is rebuilt, never trusted.
 * When the cache directory cannot be written, or is not private
 * (fu_cache_dir_check in compiler/backend.h), the weights are packed into
 * memory instead. Temp files of packings killed on the way
 * (.packed-<pid>-XXXXXX) are removed by the next packing. */
#ifndef FUSEC_PACKED_WEIGHTS_H
#define FUSEC_PACKED_WEIGHTS_H

#include <stdint.h>
#include "../ir/ir.h"
#include "../ir/weights.h"

typedef struct {
    const char *name;   /* weight in the weights file: 2-D, float32 or bfloat16 */
    int bf16;           /* layout FU_RT_PACK_BF16, else FU_RT_PACK_F32 */
    int transposed;     /* the weight is stored [K, N] (else [N, K]) */
} fu_packed_request;

typedef struct {
    int built;          /* packed now (else mapped from the cache) */
    int in_memory;      /* the cache could not be written: packed into memory */
    double ms;          /* time to map and check, or to pack and write */
    int64_t bytes;      /* size of the packed copies */
    char path[4096];    /* the cache file ("" when in memory) */
} fu_packed_info;

typedef struct fu_packed_weights fu_packed_weights;

/* Maps the packed copies of req[0..n) of weights file w from cache_dir,
 * building the cache file first when it is missing or invalid; ptrs[i]
 * receives copy i (64-byte aligned). info may be NULL. */
fu_packed_weights *fu_packed_weights_open(fu_weights *w, const char *cache_dir, const fu_packed_request *req, int n,
                                          const void **ptrs, fu_packed_info *info, fu_err *err);
void fu_packed_weights_close(fu_packed_weights *p);

#endif
