/* Work sharing for the runtime kernels (runtime/parallel.c). fu_rt_parallel_for
 * itself is declared in fusec_kernels.h, since generated code calls it for
 * large elementwise loops. */
#ifndef FUSEC_PARALLEL_H
#define FUSEC_PARALLEL_H

#include <stdint.h>
#include "fusec_kernels.h"

typedef void (*fu_rt_range_fn)(void *ctx, int64_t begin, int64_t end);

/* Threads that fu_rt_parallel_for may use: the caller and the pool's workers. */
int fu_rt_threads(void);

#endif
