/* libFuzzer target: the .npy reader (fu_npy_read), as `fusec run --input
 * x=FILE.npy` uses it.
 *
 * Input: a file's bytes, written into a scratch file and read by path. When
 * it reads, the array must be consistent: rank in range, dims >= 0, nbytes
 * = elements x dtype size, and every byte of the data readable. */
#include "fuzz_common.h"
#include "ir/npy.h"

static fz_file file;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fz_file_open(&file, "fuzz.npy");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_file_set(&file, data, size);
    fu_err err = {0};
    fu_array a;
    if (fu_npy_read(file.path, &a, &err)) return 0;
    if (a.rank < 0 || a.rank > FU_MAX_RANK) abort();
    uint64_t numel = 1;
    for (int d = 0; d < a.rank; d++) {
        if (a.shape[d] < 0) abort();
        numel *= (uint64_t)a.shape[d];
    }
    if (numel * fu_dtype_size(a.dtype) != a.nbytes) abort();
    fz_touch(a.data, a.nbytes);
    fu_array_free(&a);
    return 0;
}
