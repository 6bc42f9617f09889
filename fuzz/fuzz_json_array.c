/* libFuzzer target: the JSON-array input parser of `fusec run --input
 * 'x=[[1,2],[3,4]]'` (fu_array_from_json, ir/npy.c).
 *
 * Input: one byte choosing the input's dtype (its value mod 6: float32,
 * float16, bfloat16, int64, int32, bool; the seeds use '0'..'5'), then the
 * text. When it parses, the array must be consistent as for fuzz_npy. */
#include "fuzz_common.h"
#include "ir/npy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    static const fu_dtype types[6] = {FU_F32, FU_F16, FU_BF16, FU_I64, FU_I32, FU_BOOL};
    fu_dtype t = types[data[0] % 6];
    char *text = fz_cstr(data + 1, size - 1);
    fu_err err = {0};
    fu_array a;
    if (fu_array_from_json(text, t, &a, &err) == 0) {
        if (a.dtype != t || a.rank < 0 || a.rank > FU_MAX_RANK) abort();
        uint64_t numel = 1;
        for (int d = 0; d < a.rank; d++) {
            if (a.shape[d] < 0) abort();
            numel *= (uint64_t)a.shape[d];
        }
        if (numel * fu_dtype_size(a.dtype) != a.nbytes) abort();
        fz_touch(a.data, a.nbytes);
        fu_array_free(&a);
    }
    free(text);
    return 0;
}
