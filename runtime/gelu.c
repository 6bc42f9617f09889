/* Gelu kernel (fu_rt_gelu_f32, declared in fusec_kernels.h, contract in
 * docs/fusions.md, composed reference fu_ref_gelu_f32 in fused_ref.c).
 *
 * Both forms are computed in double from the float input and rounded once,
 * with branch-free code (polynomials, selects, bit tricks) so that gcc
 * vectorises the loop (FU_RT_SIMD_ENTRY; libm's erf/erfc/tanh do not):
 *
 *   none:  y = x * Phi(x),  Phi(x) = erfc(-x/sqrt2) / 2 = 1 - Phi(-x)
 *   tanh:  y = x * Phi_t(x), Phi_t(x) = (1 + tanh(u)) / 2 = 1 / (1 + exp(-2u)),
 *          u = sqrt(2/pi) * (x + 0.044715 x^3)
 *
 * Writing Phi through erfc of |x| (and Phi_t through exp) instead of 1 + erf
 * (1 + tanh) avoids the cancellation of the textbook formula for negative x,
 * so the result keeps its relative accuracy in the left tail: within 1 ulp
 * of the float64 formula (evaluated without cancellation) for every finite
 * float (tests/test_gelu.c measures it). Results are exact zeros (of x's
 * sign) where the true value underflows float; +inf gives +inf, and -inf
 * gives NaN, as the formula does (-inf * 0). NaN propagates.
 *
 * No globals; elementwise, so any split across threads gives the same bits. */
#include <math.h>
#include <stdint.h>

#include "fusec_kernels.h"
#include "parallel.h"
#include "simd.h"

/* Below this many elements the kernel runs on the calling thread
 * (compute bound like SwiGLU, whose measured break-even is 2048). */
#define GELU_MIN_PARALLEL_ELEMS 4096

/* exp(y) in double for y in [-708, 708], relative error about 1e-13:
 * y = n ln2 + r with |r| <= ln2/2 (n rounded with the 1.5*2^52 trick), a
 * degree-10 Taylor polynomial for e^r, 2^n built in the exponent bits. */
FU_RT_SIMD_INLINE double exp_d(double y) {
    const double round_magic = 6755399441055744.0; /* 1.5 * 2^52 */
    double shifted = y * 1.4426950408889634 + round_magic;
    double n = shifted - round_magic;
    double r = y - n * 6.93147180369123816490e-01; /* ln2 high part (exact product) */
    r = r - n * 1.90821492927058770002e-10;        /* ln2 low part */
    double p = 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    /* 2^n: n sits in the low mantissa bits of shifted (unsigned arithmetic,
     * so a NaN's bits wrap harmlessly: p is NaN then). */
    union { double d; uint64_t u; } bits = {shifted};
    union { uint64_t u; double d; } scale;
    scale.u = (bits.u - 0x4338000000000000u + 1023u) << 52;
    return p * scale.d;
}

/* erfc(z) / 2 for z >= 0 (NaN for NaN), relative error below 2e-10 up to
 * z = 10.5, beyond which Phi(-|x|) = erfc(|x|/sqrt2)/2 is below 1e-50 (and
 * x Phi(x) underflows float from z = 10.2 on): erfc(z) = t exp(-z^2 + g(t)),
 * t = 2 / (2 + z), with g a degree-12 polynomial in u = a t + b (u in [-1, 1]
 * over [0, 10.5]; farther out it extrapolates gently while -z^2 dominates),
 * a Chebyshev least-squares fit of log(erfc(z) / t) + z^2 against Python's
 * math.erfc, converted to monomials (scripts/fit_gelu_erfc.py prints it).
 * The exponent is clamped at -708, so erfc is at most t * 1e-307 out there:
 * x Phi(x) rounds to 0 in float. */
FU_RT_SIMD_INLINE double half_erfc(double z) {
    static const double g[13] = {
        -0.56315678571037253, 0.57460997563089411, 0.016716069154952475,
        -0.030147699803838485, -0.0012308647201475719, 0.0038775265629892616,
        -0.0002664001479568863, -0.00058845195745666108, 0.00015140636478226815,
        7.6113741806714316e-05, -4.0812935352670895e-05, -5.6744133767378136e-06,
        5.5984054299668446e-06,
    };
    double t = 2.0 / (2.0 + z);
    double u = 2.380952380952381 * t - 1.380952380952381;
    double p = g[12];
    for (int k = 11; k >= 0; k--) p = p * u + g[k];
    double arg = p - z * z;
    return 0.5 * t * exp_d(arg < -708.0 ? -708.0 : arg);
}

/* The kernels select only between values computed on every path (a value
 * unused on one path lets gcc move its computation into a branch, and a
 * loop with branches does not vectorise for AVX2 or SSE2; see also
 * gelu_range). */
FU_RT_SIMD_INLINE float gelu_erf(float xf) {
    double x = xf;
    double q = half_erfc(fabs(x) * 0.70710678118654752440); /* Phi(-|x|) */
    double p = 1.0 - q;                                      /* Phi(|x|) */
    return (float)(x * (x < 0 ? q : p));
}

FU_RT_SIMD_INLINE float gelu_tanh(float xf) {
    double x = xf;
    double a = -1.5957691216057308 * (x + 0.044715 * x * x * x); /* -2u */
    double clamped = a > 708.0 ? 708.0 : a;
    clamped = clamped < -708.0 ? -708.0 : clamped;
    double phi = 1.0 / (1.0 + exp_d(clamped));
    /* Beyond a = 708, Phi_t < 1e-307: an exact 0 (so -inf gives NaN, as
     * the formula does), by a multiplication rather than a select. */
    double keep = a > 708.0 ? 0.0 : 1.0;
    return (float)(x * (phi * keep));
}

typedef struct {
    const float *x;
    float *y;
    int approximate;
} gelu_job;

/* no-tree-pre: partial redundancy elimination would specialise the code
 * after each clamp for the clamped constant, turning the selects back into
 * branches, and then only the AVX-512 copy (masked) vectorises. */
FU_RT_SIMD_ENTRY __attribute__((optimize("no-tree-pre"))) static void gelu_range(void *arg, int64_t begin, int64_t end) {
    const gelu_job *j = arg;
    const float *x = j->x;
    float *y = j->y;
    if (j->approximate == FU_RT_GELU_TANH)
        for (int64_t i = begin; i < end; i++) y[i] = gelu_tanh(x[i]);
    else
        for (int64_t i = begin; i < end; i++) y[i] = gelu_erf(x[i]);
}

void fu_rt_gelu_f32(const float *x, float *y, int64_t n, int approximate) {
    if (n <= 0) return;
    gelu_job job = {x, y, approximate};
    fu_rt_parallel_for(n, fu_rt_grain(n, 1, GELU_MIN_PARALLEL_ELEMS), gelu_range, &job);
}
