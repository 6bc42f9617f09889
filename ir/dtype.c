/* Element types: names, sizes and the half-precision conversions. */
#include <string.h>
#include "ir.h"
#include "runtime/numerics.h"

static const char *const dtype_names[] = {
    [FU_UNDEF] = "undefined", [FU_F32] = "float32", [FU_F16] = "float16", [FU_BF16] = "bfloat16",
    [FU_I64] = "int64",       [FU_I32] = "int32",   [FU_BOOL] = "bool",
};

const char *fu_dtype_name(fu_dtype t) {
    if ((int)t < 0 || (size_t)t >= sizeof dtype_names / sizeof dtype_names[0]) return "undefined";
    return dtype_names[t];
}

fu_dtype fu_dtype_from_name(const char *s) {
    if (!s) return FU_UNDEF;
    for (int t = FU_F32; t <= FU_BOOL; t++)
        if (strcmp(s, dtype_names[t]) == 0) return (fu_dtype)t;
    return FU_UNDEF;
}

size_t fu_dtype_size(fu_dtype t) {
    switch (t) {
    case FU_F32: return 4;
    case FU_F16: return 2;
    case FU_BF16: return 2;
    case FU_I64: return 8;
    case FU_I32: return 4;
    case FU_BOOL: return 1;
    default: return 0;
    }
}

int fu_dtype_is_float(fu_dtype t) { return t == FU_F32 || t == FU_F16 || t == FU_BF16; }

/* One definition of each conversion, shared with the runtime and generated
 * code: runtime/numerics.h. */
float fu_f16_to_f32(uint16_t h) { return fu_num_f16_to_f32(h); }
uint16_t fu_f32_to_f16(float f) { return fu_num_f32_to_f16(f); }
float fu_bf16_to_f32(uint16_t h) { return fu_num_bf16_to_f32(h); }
uint16_t fu_f32_to_bf16(float f) { return fu_num_f32_to_bf16(f); }
