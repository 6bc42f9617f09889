/* Tokenizer speed (tokenizer/tokenizer.h), one thread:
 *   - English text: the repository's own English (README.md, the docs and
 *     the examples' READMEs), repeated to 4 MB, in MB/s;
 *   - single words of 64 KB .. 1 MB (one letter repeated, and a run of
 *     pseudo-random letters), with the time per byte at each size, so a
 *     quadratic merge loop would show as a growing per-byte cost;
 *   - a run of spaces of 1 MB (the split regex's whitespace alternatives).
 * usage: bench_tokenizer [tokenizer.json] (default build/tokenizer/tokenizer.json)
 * Exit status 1 if English text encodes slower than 5 MB/s or a long word's
 * per-byte cost grows more than 4x from 64 KB to 1 MB. */
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tokenizer/tokenizer.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static char *append_file(char *buf, size_t *len, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return buf;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = realloc(buf, *len + (size_t)n + 2);
    if (!b) {
        fclose(f);
        return buf;
    }
    size_t got = fread(b + *len, 1, (size_t)n, f);
    *len += got;
    b[(*len)++] = '\n';
    b[*len] = 0;
    fclose(f);
    return b;
}

/* Best of runs: seconds to encode text. */
static double time_encode(const fu_tokenizer *t, const char *text, size_t len, int runs, size_t *n_ids) {
    double best = 1e30;
    for (int r = 0; r < runs; r++) {
        int32_t *ids;
        char err[256];
        double t0 = now();
        if (fu_tokenizer_encode(t, text, len, &ids, n_ids, err, sizeof err)) {
            fprintf(stderr, "bench_tokenizer: %s\n", err);
            exit(2);
        }
        double dt = now() - t0;
        free(ids);
        if (dt < best) best = dt;
    }
    return best;
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "build/tokenizer/tokenizer.json";
    char err[1024];
    double t0 = now();
    fu_tokenizer *t = fu_tokenizer_load(path, err, sizeof err);
    if (!t) {
        fprintf(stderr, "bench_tokenizer: %s\n", err);
        return 2;
    }
    printf("tokenizer: %s loaded in %.2fs\n", path, now() - t0);
    int status = 0;

    /* English */
    char *eng = NULL;
    size_t eng_len = 0;
    eng = append_file(eng, &eng_len, "README.md");
    glob_t g;
    if (glob("docs/*.md", 0, NULL, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc; i++) eng = append_file(eng, &eng_len, g.gl_pathv[i]);
        globfree(&g);
    }
    if (glob("examples/*/README.md", 0, NULL, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc; i++) eng = append_file(eng, &eng_len, g.gl_pathv[i]);
        globfree(&g);
    }
    if (!eng_len) {
        fprintf(stderr, "bench_tokenizer: no English text found (run from the repository root)\n");
        return 2;
    }
    size_t target = 4u << 20, big_len = 0;
    char *big = malloc(target + eng_len + 1);
    while (big_len < target) {
        memcpy(big + big_len, eng, eng_len);
        big_len += eng_len;
    }
    big[big_len] = 0;
    size_t n_ids;
    double s = time_encode(t, big, big_len, 3, &n_ids);
    double mbs = (double)big_len / s / 1e6;
    printf("English text: %.1f MB in %.3fs: %.1f MB/s, %.2f bytes/token (%zu KB of README.md and docs repeated)%s\n",
           (double)big_len / 1e6, s, mbs, (double)big_len / (double)n_ids, eng_len / 1024,
           mbs < 5.0 ? "  BELOW 5 MB/s" : "");
    if (mbs < 5.0) status = 1;
    s = time_encode(t, eng, eng_len, 5, &n_ids);
    printf("English text, one copy (no repeats for the word cache): %zu KB in %.4fs: %.1f MB/s\n", eng_len / 1024, s,
           (double)eng_len / s / 1e6);

    /* single long words */
    size_t sizes[] = {64u << 10, 256u << 10, 1u << 20};
    const char *kinds[] = {"one letter repeated", "random letters", "spaces"};
    for (int k = 0; k < 3; k++) {
        double per_byte[3];
        printf("%s:", kinds[k]);
        for (int i = 0; i < 3; i++) {
            size_t n = sizes[i];
            char *w = malloc(n + 1);
            uint32_t x = 12345;
            for (size_t j = 0; j < n; j++) {
                x = x * 1103515245u + 12345u;
                w[j] = k == 0 ? 'a' : k == 1 ? (char)('a' + (x >> 16) % 26) : ' ';
            }
            w[n] = 0;
            double sec = time_encode(t, w, n, 3, &n_ids);
            per_byte[i] = sec / (double)n;
            printf("  %zu KB %.3fs (%.1f MB/s, %zu tokens)", n >> 10, sec, (double)n / sec / 1e6, n_ids);
            free(w);
        }
        double growth = per_byte[2] / per_byte[0];
        printf("  per-byte cost 1 MB / 64 KB: %.2fx%s\n", growth, growth > 4.0 ? "  NOT LINEAR" : "");
        if (growth > 4.0) status = 1;
    }
    free(big);
    free(eng);
    fu_tokenizer_free(t);
    return status;
}
