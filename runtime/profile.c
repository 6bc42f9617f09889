/* Hooks of the per-node profile (declared in fusec_kernels.h). Generated
 * code calls them around each node only when its caller passed a profile,
 * so a model that is not being profiled never reads the clock. */
#include <time.h>
#include "profile.h"

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void fu_rt_profile_begin(fu_rt_profile *p) { p->begin_ns = now_ns(); }

void fu_rt_profile_end(fu_rt_profile *p, int slot) {
    if (slot >= 0 && slot < p->n_slots) p->slot_ns[slot] += now_ns() - p->begin_ns;
}
