/* Element types: names, sizes and the half-precision conversions. */
#include <math.h>
#include <string.h>
#include "ir.h"

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

static uint32_t float_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_float(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float fu_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0) {  /* zero or subnormal: mant * 2^-24 is exact in float */
        float v = ldexpf((float)mant, -24);
        return sign ? -v : v;
    }
    if (exp == 31) return bits_float(sign | 0x7f800000u | (mant << 13));
    return bits_float(sign | ((exp + 112) << 23) | (mant << 13));
}

/* Round-to-nearest-even conversion (after F. Giesen's float_to_half_rtne). */
uint16_t fu_f32_to_f16(float f) {
    uint32_t x = float_bits(f);
    uint32_t sign = x & 0x80000000u;
    x ^= sign;
    uint16_t o;
    if (x >= (127u + 16) << 23) {            /* >= 65536, inf or nan */
        o = x > 0x7f800000u ? 0x7e00 : 0x7c00;
    } else if (x < 113u << 23) {             /* below 2^-14: subnormal half or zero */
        /* Adding 0.5 lets the FPU's own round-to-nearest-even place the bits. */
        const uint32_t magic = ((127u - 15) + (23 - 10) + 1) << 23;
        float sum = bits_float(x) + bits_float(magic);
        o = (uint16_t)(float_bits(sum) - magic);
    } else {
        uint32_t mant_odd = (x >> 13) & 1;
        x -= 112u << 23;                     /* rebias exponent 127 -> 15 */
        x += 0xfff + mant_odd;
        o = (uint16_t)(x >> 13);             /* carry into exponent gives inf on overflow */
    }
    return (uint16_t)(o | (sign >> 16));
}

float fu_bf16_to_f32(uint16_t h) { return bits_float((uint32_t)h << 16); }

uint16_t fu_f32_to_bf16(float f) {
    uint32_t x = float_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40);  /* quiet nan */
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}
