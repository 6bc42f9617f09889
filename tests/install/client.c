/* A program built against an installed fusec with nothing but
 * `pkg-config --cflags --libs fusec` (tests/cli/test_install.sh): loads
 * MODEL with BACKEND, runs it on X.bin (float32 [1, SEQ, 8]) and writes
 * output y (float32 [1, SEQ, 4], checked) to Y.bin. Prints the version of
 * the header it was compiled with. Exit status 0, or 1 on any failure. */
#include <fusec/fusec.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: client MODEL jit|aot X.bin SEQ Y.bin\n");
        return 1;
    }
    const char *model = argv[1], *backend = argv[2], *x_path = argv[3], *y_path = argv[5];
    int64_t seq = atoll(argv[4]);
    if (seq < 1 || seq > 64) {
        fprintf(stderr, "client: bad SEQ %s\n", argv[4]);
        return 1;
    }
    float x[64 * 8];
    FILE *f = fopen(x_path, "rb");
    size_t n = f ? fread(x, sizeof x[0], (size_t)(seq * 8), f) : 0;
    if (f) fclose(f);
    if (n != (size_t)(seq * 8)) {
        fprintf(stderr, "client: cannot read %lld floats from %s\n", (long long)(seq * 8), x_path);
        return 1;
    }

    fusec_options opts = {.backend = backend};
    char err[1024];
    fusec_model *m = fusec_load(model, &opts, err, sizeof err);
    if (!m) {
        fprintf(stderr, "client: fusec_load: %s\n", err);
        return 1;
    }
    int64_t shape[3] = {1, seq, 8};
    fusec_dtype dtype;
    int rank;
    int64_t out_shape[8];
    const void *data;
    int rc = 1;
    if (fusec_set_input(m, "x", FUSEC_FLOAT32, 3, shape, x) != 0 || fusec_run(m) != 0 ||
        fusec_get_output(m, "y", &dtype, &rank, out_shape, &data) != 0) {
        fprintf(stderr, "client: %s\n", fusec_last_error(m));
    } else if (dtype != FUSEC_FLOAT32 || rank != 3 || out_shape[0] != 1 || out_shape[1] != seq || out_shape[2] != 4) {
        fprintf(stderr, "client: output y has dtype %d rank %d, want float32 [1, %lld, 4]\n", (int)dtype, rank,
                (long long)seq);
    } else {
        f = fopen(y_path, "wb");
        if (f && fwrite(data, sizeof(float), (size_t)(seq * 4), f) == (size_t)(seq * 4) && fclose(f) == 0) {
            printf("client: fusec %s, %s backend, y [1, %lld, 4] written\n", FUSEC_VERSION, backend, (long long)seq);
            rc = 0;
        } else {
            fprintf(stderr, "client: cannot write %s\n", y_path);
            if (f) fclose(f);
        }
    }
    fusec_free(m);
    return rc;
}
