/* The two back ends: libtcc in memory (JIT) and gcc into a shared library
 * (AOT). Both run the same generated translation unit.
 *
 * The generated code exports (identifiers are fixed, never from the model):
 *   int fusec_model_run(const int64_t *sym, const void *const *in,
 *                       const void *const *w, void *arena, void **out);
 *     returns 0, or 1 + the index of the node that failed (bad index data).
 *   int fusec_model_run_profiled(..., fu_rt_profile *prof);
 *     the same with a profile: when prof is not NULL, the time of each node
 *     (or loop group) is added to prof's slot, in the order of "profile".
 *     fusec_model_run is this with prof = NULL. Libraries from an older
 *     fusec lack it (then profiling is not available).
 *   const unsigned char fusec_model_meta[];  unsigned long fusec_model_meta_len;
 *     the planned graph's signature as JSON bytes, written by compiler/emit.c:
 *
 *   {"fusec_meta": 1, "name": "...", "profile": "fast"|"bare", "precision": "f32"|"bf16",
 *    "symbols": [{"name": "seq", "max": 65}, ...],          (slot order of sym[])
 *    "inputs":  [{"name": "...", "dtype": "float32", "shape": [DIM, ...]}, ...],
 *    "outputs": [ same form ],                               (slot order of out[])
 *    "weights": [{"name": "...", "dtype": "...", "shape": [int, ...]}, ...],
 *                                                            (slot order of w[])
 *    "packed":  [{"weight": "...", "layout": "f32"|"bf16", "transposed": bool}, ...],
 *               (w[n_weights + i]: the weight packed for the GEMM kernels, see
 *                api/packed_weights.h; "transposed": stored [K, N])
 *    "weights_file": "/abs/path.safetensors" or null, "weights_identity": "...",
 *    "arena_bytes": N,
 *    "profile": [{"node": N, "name": "...", "op": "FusedMatMul" | "Loop:Add" ...,
 *                 "ops": N}, ...]}                           (slot order of the profile)
 *
 *   DIM is [coef, pow_0, ..., pow_{nsyms-1}]: the monomial coef * prod sym^pow.
 *   in[] follows "inputs" order. Weights are looked up by name in the file. */
#ifndef FUSEC_BACKEND_H
#define FUSEC_BACKEND_H

#include <stdint.h>
#include "../ir/ir.h"

typedef int (*fu_entry_fn)(const int64_t *sym, const void *const *in, const void *const *w,
                           void *arena, void **out);

typedef struct fu_rt_profile fu_rt_profile;
typedef int (*fu_entry_profiled_fn)(const int64_t *sym, const void *const *in, const void *const *w,
                                    void *arena, void **out, fu_rt_profile *prof);

typedef struct fu_compiled {
    fu_entry_fn run;
    fu_entry_profiled_fn run_profiled;   /* NULL for libraries built before profiling */
    const unsigned char *meta;
    unsigned long meta_len;
    /* AOT with --embed-weights: the safetensors image of the weights the
     * library carries; NULL otherwise. */
    const unsigned char *(*weights_image)(unsigned long *len);
    void *tcc_state;      /* JIT: TCCState*, owns the code */
    void *dl_handle;      /* AOT: dlopen handle */
} fu_compiled;

/* JIT: compiles C source in memory with libtcc. */
int fu_jit_compile(const char *c_source, fu_compiled *out, fu_err *err);

/* AOT: builds `so_path` (and `header_path` if not NULL) from C source with
 * gcc -O3 -march=native -fPIC -shared, atomically. */
int fu_aot_build(const char *c_source, const char *so_path, const char *header_path,
                 fu_err *err);
/* Same, with the safetensors file weights_image embedded in the library
 * (fusec compile --embed-weights); its name must be plain ([A-Za-z0-9._-]). */
int fu_aot_build_embedded(const char *c_source, const char *so_path, const char *header_path,
                          const char *weights_image, fu_err *err);
/* AOT cache: the library path in cache_dir for a model described by
 * key_parts (strings that together decide the generated code: the model
 * file's hash, the weights' identity, the options); the key also covers
 * fusec's build, gcc, its flags and the runtime library, so a cached
 * library is found without running the passes. Creates cache_dir (mode
 * 0755) or refuses it (fu_cache_dir_check). *exists says whether the
 * library and its sidecar are there (fu_aot_cache_load decides whether
 * they are trusted). *so_path_out is malloc'd. */
/* The build cache when none is given: $FUSEC_CACHE_DIR, else
 * $XDG_CACHE_HOME/fusec, else $HOME/.cache/fusec (never a folder of the
 * working directory). Writes it into buf; returns buf. */
char *fu_default_cache_dir(char *buf, size_t n);
int fu_aot_cache_path(const char *cache_dir, const char *const *key_parts, int n_parts, char **so_path_out,
                      int *exists, fu_err *err);
/* fu_aot_build for a cache entry: also writes so_path.sha256 (a
 * `sha256sum` line), installing both together under the directory's lock. */
int fu_aot_cache_build(const char *c_source, const char *so_path, fu_err *err);
/* Loads the cached library so_path only once it is trusted: it and its
 * sidecar are regular files (no symlinks) owned by us or root and not
 * group/other-writable, and its sha256 matches the sidecar. Returns 0
 * loaded; 1 not trusted or missing (why says why: rebuild it; nothing was
 * dlopen'ed); -1 an error (err). */
int fu_aot_cache_load(const char *so_path, fu_compiled *out, char *why, size_t why_len, fu_err *err);
/* Loads a library built by fu_aot_build (a path the caller trusts). */
int fu_aot_load(const char *so_path, fu_compiled *out, fu_err *err);

/* The build cache's trust rules (docs/security.md), shared with the packed
 * weights (api/packed_weights.c). fu_cache_dir_check creates dir when
 * missing (parents like mkdir -p, dir itself 0755) and fails, naming dir,
 * the reason and the fix, unless it is a real directory (lstat: not a
 * symlink) owned by us or root and not group/other-writable.
 * fu_cache_untrusted: NULL when st (a file's or directory's stat) passes
 * the owner and mode rule, else why not (in buf). fu_cache_remove_stale:
 * removes temp entries (.fusec-build-<pid>-*, .packed-<pid>-*) in dir
 * whose builder is dead, under the directory's lock. */
struct stat;
int fu_cache_dir_check(const char *dir, fu_err *err);
const char *fu_cache_untrusted(const struct stat *st, char *buf, size_t n);
void fu_cache_remove_stale(const char *dir);

void fu_compiled_free(fu_compiled *c);

/* mkdir -p: creates dir and its parents; fails unless dir ends up a directory. */
int fu_make_dirs(const char *dir, fu_err *err);

/* Directory holding libfusec_rt.so and fusec_kernels.h, for gcc. */
const char *fu_runtime_dir(void);

#endif
