/* Two compiled models linked into one program (-lone -ltwo): each answers
 * for itself through its named entry points (tests/cli/test_cli.sh and
 * tests/cli/test_install.sh build it). Model one: y = Relu(x + b) @ W on
 * x [2, 3]; model two: y = Relu(x) on x [20]. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "one.h"
#include "two.h"
/* arena_bytes from a model's signature */
static long long arena_of(const unsigned char *meta, unsigned long len) {
    char *text = strndup((const char *)meta, len);
    const char *p = strstr(text, "\"arena_bytes\":");
    long long n = p ? atoll(p + strlen("\"arena_bytes\":")) : -1;
    free(text);
    return n;
}
int main(void) {
    unsigned long len1, len2;
    const unsigned char *m1 = fusec_one_meta(&len1), *m2 = fusec_two_meta(&len2);
    if (m1 == m2 || (len1 == len2 && !memcmp(m1, m2, len1))) {
        printf("each model's own signature: no\n");
        return 1;
    }
    float x1[6] = {1, 2, 3, -4, 0.5f, 1}, x2[20];
    for (int i = 0; i < 20; i++) x2[i] = (float)(i - 10);
    const void *in1[1] = {x1}, *in2[1] = {x2};
    void *out1[1], *out2[1];
    void *a1 = aligned_alloc(64, (size_t)(arena_of(m1, len1) + 64) / 64 * 64);
    void *a2 = aligned_alloc(64, (size_t)(arena_of(m2, len2) + 64) / 64 * 64);
    if (fusec_one_run(NULL, in1, NULL, a1, out1) || fusec_two_run(NULL, in2, NULL, a2, out2)) return 1;
    const float *y1 = out1[0], *y2 = out2[0];
    printf("one %g %g %g %g\ntwo %g %g %g\n", y1[0], y1[1], y1[2], y1[3], y2[9], y2[10], y2[19]);
    return 0;
}
