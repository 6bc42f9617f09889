/* Size limits on a model (ir/model_limits.h). */
#include <errno.h>
#include <stdlib.h>
#include "model_limits.h"

static const struct {
    const char *env;
    int64_t dflt;
} limits[] = {
    [FU_LIMIT_NODES] = {"FUSEC_MAX_NODES", 10000000},
    [FU_LIMIT_ARENA_BYTES] = {"FUSEC_MAX_ARENA_BYTES", (int64_t)64 << 30},
    [FU_LIMIT_WEIGHTS_BYTES] = {"FUSEC_MAX_WEIGHTS_BYTES", (int64_t)1 << 40},
};

int64_t fu_limit_get(fu_limit which, fu_err *err) {
    const char *s = getenv(limits[which].env);
    if (!s || !*s) return limits[which].dflt;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    int shift = 0;
    switch (*end) {
    case 'K': shift = 10, end++; break;
    case 'M': shift = 20, end++; break;
    case 'G': shift = 30, end++; break;
    case 'T': shift = 40, end++; break;
    default: break;
    }
    if (errno || end == s || *end || v <= 0 || (shift && v > (INT64_MAX >> shift))) {
        fu_fail(err, "%s must be a positive integer, optionally with K, M, G or T", limits[which].env);
        return -1;
    }
    return (int64_t)v << shift;
}

int fu_limit_check(fu_limit which, int64_t value, const char *path, const char *what, fu_err *err) {
    int64_t max = fu_limit_get(which, err);
    if (max < 0) return -1;
    if (value <= max) return 0;
    return fu_fail(err, "%s: %s is %lld, over the limit of %lld (set %s to raise it)", path ? path : "model", what,
                   (long long)value, (long long)max, limits[which].env);
}
