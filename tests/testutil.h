/* Helpers shared by the cmocka tests. Include after <cmocka.h>. */
#ifndef FUSEC_TESTUTIL_H
#define FUSEC_TESTUTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Source tree root (tests run from the repository root). */
#define FIXTURE(path) ("fixtures/" path)

/* Max |a-b| over n floats. */
static inline double tu_max_abs_diff(const float *a, const float *b, long n) {
    double m = 0;
    for (long i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > m || d != d) m = d != d ? INFINITY : d;
    }
    return m;
}

/* Max |x| over n floats (output scale for relative tolerances). */
static inline double tu_max_abs(const float *a, long n) {
    double m = 0;
    for (long i = 0; i < n; i++) m = fabs(a[i]) > m ? fabs(a[i]) : m;
    return m;
}

/* Writes text to a fresh temp file; returns its malloc'd path. */
static inline char *tu_write_temp(const char *suffix, const char *text) {
    char *path = malloc(256);
    static int counter;
    snprintf(path, 256, "/tmp/fusec_test_%d_%d%s", (int)getpid(), counter++, suffix);
    FILE *f = fopen(path, "w");
    if (!f) return path;
    fputs(text, f);
    fclose(f);
    return path;
}

#endif
