/* libFuzzer target: the safetensors reader (fu_weights_open).
 *
 * Input: a weights file's bytes, written into a scratch file and opened by
 * path. When it opens, every tensor name of the dictionary is looked up and
 * each tensor found is checked (its byte count matches its shape and dtype;
 * its bytes are read, so one outside the mapping faults). */
#include "fuzz_common.h"
#include "ir/weights.h"

static fz_file file;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fz_file_open(&file, "fuzz.safetensors");
    return 0;
}

static const char *const names[] = {"w", "b", "e", "a", "x", "t", "", "__metadata__", "w.weight", "model.embed"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_file_set(&file, data, size);
    fu_err err = {0};
    fu_weights *w = fu_weights_open(file.path, &err);
    if (!w) return 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        fu_dtype dt;
        int rank;
        int64_t shape[FU_MAX_RANK];
        const void *p;
        size_t nbytes;
        if (fu_weights_find(w, names[i], &dt, &rank, shape, &p, &nbytes)) continue;
        if (rank < 0 || rank > FU_MAX_RANK) abort();
        uint64_t numel = 1;
        for (int d = 0; d < rank; d++) {
            if (shape[d] < 0) abort();
            numel *= (uint64_t)shape[d];
        }
        if (numel * fu_dtype_size(dt) != nbytes || nbytes > fu_weights_file_size(w)) abort();
        fz_touch(p, nbytes);
    }
    (void)fu_weights_identity(w);
    fu_weights_close(w);
    return 0;
}
