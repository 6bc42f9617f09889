/* Work sharing for the runtime kernels (runtime/parallel.c). Internal to
 * libfusec_rt: generated code never calls it directly. */
#ifndef FUSEC_PARALLEL_H
#define FUSEC_PARALLEL_H

#include <stdint.h>

typedef void (*fu_rt_range_fn)(void *ctx, int64_t begin, int64_t end);

/* Runs fn over [0, n) in chunks of `grain` indices, on the calling thread
 * and the runtime's idle workers; returns when every index is done. */
void fu_rt_parallel_for(int64_t n, int64_t grain, fu_rt_range_fn fn, void *ctx);

#endif
