/* The per-node profile that fusec_model_run_profiled fills (runtime/profile.c
 * holds the hooks generated code calls; api/fusec.c owns the records and
 * turns them into fusec_profile_node). */
#ifndef FUSEC_PROFILE_H
#define FUSEC_PROFILE_H

#include <stdint.h>
#include "fusec_kernels.h"

struct fu_rt_profile {
    int n_slots;          /* timed blocks of the generated code (metadata "profile") */
    int64_t *slot_ns;     /* [n_slots] nanoseconds summed over the profiled runs */
    int64_t begin_ns;     /* clock at the last fu_rt_profile_begin */
};

#endif
