/* fusec numerics: the one definition of each scalar conversion and of the
 * exp polynomial, shared by the runtime, the compiler side (ir/ and up) and
 * generated code.
 *
 * Who includes it:
 *  - runtime/fusec_kernels.h includes it, so every runtime source (and
 *    every test or bench that includes that header) sees it;
 *  - ir/dtype.c includes it for fu_f16_to_f32 and friends (ir/ points down
 *    at runtime/, which the layering allows);
 *  - generated code gets it as text: the Makefile embeds numerics.h and
 *    then fusec_kernels.h, concatenated, as build/kernels_header.c, which
 *    compiler/emit.c pastes at the top of every generated translation unit
 *    (JIT under tcc, AOT under gcc). The guard below then skips the
 *    `#include "numerics.h"` line inside the pasted fusec_kernels.h, so
 *    generated code never needs an include path.
 *
 * So this file obeys fusec_kernels.h's rules: plain C that tcc and gcc both
 * accept, no system include beyond <stdint.h>, no vector extensions, no
 * extern declarations (the JIT symbol list is made from fusec_kernels.h
 * alone). Everything is static inline or a macro.
 *
 * Half types are stored as uint16_t and computed in float. Generated code
 * calls the bfloat16 conversions inline (fu_rt_bf16_to_f32 and
 * fu_rt_f32_to_bf16 in fusec_kernels.h are these functions) and the float16
 * ones out of line (fu_rt_f16_to_f32 / fu_rt_f32_to_f16, exported by
 * libfusec_rt.so, wrap these functions); both kinds compute the same bits. */
#ifndef FU_NUMERICS_H
#define FU_NUMERICS_H

#include <stdint.h>

/* ---- float16 (IEEE binary16) ------------------------------------------- */

/* Exact: every float16 is a float. A NaN keeps its sign and payload. */
static inline float fu_num_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exponent = (h >> 10) & 0x1fu;
    uint32_t mantissa = h & 0x3ffu;
    union { uint32_t u; float f; } v;
    if (exponent == 0) {
        /* zero or subnormal: mantissa * 2^-24, exact in float */
        v.f = (float)mantissa * (1.0f / 16777216.0f);
        v.u |= sign;
        return v.f;
    }
    if (exponent == 31)
        v.u = sign | 0x7f800000u | (mantissa << 13);            /* inf, nan (payload kept) */
    else
        v.u = sign | ((exponent + 112u) << 23) | (mantissa << 13); /* rebias 15 -> 127 */
    return v.f;
}

/* Round to nearest, ties to even, in integer arithmetic (no dependence on
 * the FPU's rounding mode); overflow gives inf. A NaN stays a NaN with its
 * sign and the top 10 bits of its payload, made quiet (bit 9 set). */
static inline uint16_t fu_num_f32_to_f16(float f) {
    union { uint32_t u; float f; } v;
    v.f = f;
    uint32_t sign = (v.u >> 16) & 0x8000u;
    uint32_t abs = v.u & 0x7fffffffu;
    if (abs > 0x7f800000u)                                  /* NaN: stays a quiet NaN */
        return (uint16_t)(sign | 0x7e00u | ((abs >> 13) & 0x3ffu));
    if (abs >= 0x477ff000u)                                 /* >= 65520 rounds to inf */
        return (uint16_t)(sign | 0x7c00u);
    if (abs >= 0x38800000u) {                               /* normal half (>= 2^-14) */
        abs += 0xfffu + ((abs >> 13) & 1u);                 /* round to nearest even */
        return (uint16_t)(sign | ((abs - 0x38000000u) >> 13));
    }
    /* subnormal half: count units of 2^-24, rounding to nearest even */
    uint32_t exponent = abs >> 23;
    if (exponent < 102) return (uint16_t)sign;              /* below 2^-25: rounds to 0 */
    uint32_t mantissa = (abs & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - exponent;                        /* 14 .. 24 */
    uint32_t result = mantissa >> shift;
    uint32_t rest = mantissa & ((1u << shift) - 1u);
    uint32_t halfway = 1u << (shift - 1);
    if (rest > halfway || (rest == halfway && (result & 1u))) result++;
    return (uint16_t)(sign | result);                       /* may carry into the smallest normal */
}

/* ---- bfloat16 (the top half of a float) -------------------------------- */

static inline float fu_num_bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v;
    v.u = (uint32_t)h << 16;
    return v.f;
}

/* Round to nearest, ties to even; overflow gives inf. A NaN keeps its sign
 * and top payload bits and is made quiet (bit 6 set), so it never rounds
 * into inf. */
static inline uint16_t fu_num_f32_to_bf16(float f) {
    union { uint32_t u; float f; } v;
    v.f = f;
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40u); /* quiet NaN */
    return (uint16_t)((v.u + 0x7fffu + ((v.u >> 16) & 1u)) >> 16);   /* round to nearest even */
}

/* x^2 as one product: what gcc makes of powf(x, 2) (correctly rounded),
 * and what tcc, which calls powf for every element, should run too. */
static inline float fu_num_square(float x) { return x * x; }

/* ---- integer power --------------------------------------------------------
 * base^exp for ONNX Pow on int32/int64 bases with an integer exponent, by
 * squaring; wraps as two's complement (through uint64_t, as the other
 * integer ops do). A negative exponent gives 1 / base^-exp truncated toward
 * zero: 1 for base 1, +-1 for base -1, else 0 (and 0 for base 0). */
static inline int64_t fu_num_ipow(int64_t base, int64_t exp) {
    if (exp < 0) return base == 1 ? 1 : base == -1 ? ((exp & 1) ? -1 : 1) : 0;
    uint64_t r = 1, b = (uint64_t)base, e = (uint64_t)exp;
    while (e) {
        if (e & 1u) r *= b;
        b *= b;
        e >>= 1;
    }
    return (int64_t)r;
}

/* ---- exp(x) without calls or branches ------------------------------------
 * Cephes expf: x = n ln2 + r with n = round(x / ln2) and |r| <= ln2/2, then
 * e^r = 1 + r + r^2 P5(r), a degree-7 polynomial (about 1 ulp), and
 * e^x = 2^n e^r with 2^n built in a float's exponent bits. The pieces are
 * macros so that the same text serves scalar code and GCC vector types
 * (runtime/kernels.c's vf8; a scalar constant broadcasts), and loops over
 * them vectorise. The callers own the range handling (clamping, underflow
 * to 0) and the 2^n step, which differ with what they need.
 *
 *   t = x * FU_NUM_LOG2E + FU_NUM_ROUND_MAGIC;   round(x / ln2) in t's low bits
 *   n = t - FU_NUM_ROUND_MAGIC;                  ... and as a float
 *   r = FU_NUM_EXP_REDUCE(x, n);
 *   p = FU_NUM_EXP_POLY(r);                      e^r
 *
 * The arguments are evaluated more than once: pass variables. */
#define FU_NUM_LOG2E 1.44269504088896341f
#define FU_NUM_ROUND_MAGIC 12582912.0f /* 1.5 * 2^23: adding it rounds to an integer */
#define FU_NUM_LN2_HI 0.693359375f     /* ln 2 split in two: n * LN2_HI is exact */
#define FU_NUM_LN2_LO (-2.12194440e-4f)
/* x - n ln2 */
#define FU_NUM_EXP_REDUCE(x, n) (((x) - (n) * FU_NUM_LN2_HI) - (n) * FU_NUM_LN2_LO)
/* e^r for |r| <= ln2/2: 1 + r + r^2 P5(r) by Horner */
#define FU_NUM_EXP_POLY(r)                                                                     \
    (((((((1.9875691500e-4f * (r) + 1.3981999507e-3f) * (r) + 8.3334519073e-3f) * (r) +          \
         4.1665795894e-2f) * (r) + 1.6666665459e-1f) * (r) + 5.0000001201e-1f) * (r) * (r) +     \
      (r)) + 1.0f)

#endif
