/* Size limits on a model, so a hostile or broken one fails with a clear
 * error instead of exhausting the machine. Each has a generous default and
 * is set with an environment variable (the same mechanism as
 * FUSEC_NUM_THREADS), read when a model is compiled, for the CLI and the C
 * API alike:
 *
 *   FUSEC_MAX_NODES          nodes in a model file          (default 10000000)
 *   FUSEC_MAX_ARENA_BYTES    the planned activation arena   (default 64 GiB)
 *   FUSEC_MAX_WEIGHTS_BYTES  the safetensors weights file   (default 1 TiB)
 *
 * A value is a positive integer of bytes (or nodes), optionally with a
 * suffix K, M, G or T (powers of 1024). */
#ifndef FUSEC_MODEL_LIMITS_H
#define FUSEC_MODEL_LIMITS_H

#include <stdint.h>
#include "ir.h"

typedef enum { FU_LIMIT_NODES, FU_LIMIT_ARENA_BYTES, FU_LIMIT_WEIGHTS_BYTES } fu_limit;

/* The limit in force: the environment's value, else the default; -1 (err
 * naming the variable) when the variable is set but not a valid size. */
int64_t fu_limit_get(fu_limit which, fu_err *err);

/* 0 when value is within the limit; else -1 with err "<path>: <what> is
 * <value>, over the limit of <limit> (set FUSEC_MAX_...)". */
int fu_limit_check(fu_limit which, int64_t value, const char *path, const char *what, fu_err *err);

#endif
