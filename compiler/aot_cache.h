/* What the AOT back end's two halves share: compiler/aot.c builds and loads
 * libraries, compiler/aot_cache.c keys the build cache and decides whether a
 * cached library may be loaded. Internal to compiler/ (backend.h is the
 * interface the rest of fusec uses). */
#ifndef FUSEC_AOT_CACHE_H
#define FUSEC_AOT_CACHE_H

#include <stddef.h>
#include "../ir/ir.h"

/* gcc's flags, NULL-terminated; part of the cache key too (aot.c). */
extern const char *const fu_aot_gcc_flags[];
/* "-march=..." for gcc: native, or FUSEC_AOT_MARCH; part of the cache key
 * too. 0, or -1 with err set for a value that is not a -march name (aot.c). */
int fu_aot_march_flag(char *out, size_t n, fu_err *err);
/* Directory part of a path ("." when there is none); malloc'd (aot.c). */
char *fu_aot_dir_of(const char *path);
/* Runs argv[0] (looked up in PATH) with stdout and stderr captured into
 * `output` (truncated to outlen-1 bytes). Returns the exit status, or -1
 * with err set if the program could not run (aot.c). */
int fu_aot_run_captured(char *const argv[], char *output, size_t outlen, fu_err *err);

/* flock of directory `dir` (`op`: LOCK_SH or LOCK_EX): the descriptor to
 * hand to fu_aot_unlock_dir, or -1 when it cannot be locked (aot_cache.c). */
int fu_aot_lock_dir(const char *dir, int op);
void fu_aot_unlock_dir(int fd);
/* Hex sha256 of everything readable from fd, from its start; 0 or -1. */
int fu_aot_sha256_fd(int fd, char hex[65]);
/* The sidecar's `sha256sum` line for a library of sha256 `hex` at so_path. */
void fu_aot_sidecar_text(const char *hex, const char *so_path, char *out, size_t n);

#endif
