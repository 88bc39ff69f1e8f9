/* emfast: exp() for the log-sum-exp of the kernels, written so that a C compiler
 * vectorises a loop that calls it (libm's exp is an opaque scalar call per element).
 *
 * exp(x) = 2**n * exp(r), n = round(x / ln 2), r = x - n ln 2 (|r| <= ln(2)/2) with ln 2 split
 * in two (Cody-Waite) so that n * ln2_hi is exact; exp(r) by its Taylor series to r**13
 * (truncation < 5e-18 relative). Relative error < 2e-15 on [-708, 0] (tested in
 * tests/test_kernels.py against np.exp). The same math as the Numba backend's _exp_nonpos.
 *
 * Branch-free: round(x / ln 2) by the 1.5 * 2**52 shifter (the sum's low mantissa bits are n,
 * no float->int conversion, which has no vector form on AVX2), 2**n built in the exponent
 * field. Bits are moved with memcpy, which compilers turn into a register move.
 *
 * IN: x <= 0, -inf or NaN. OUT: exp(x); 0 for x < -708 (exp(x) < 3.4e-308: would need a
 * subnormal 2**n); NaN stays NaN. Not for x > 0.
 */
#ifndef EMFAST_FASTEXP_H
#define EMFAST_FASTEXP_H

#include <stdint.h>
#include <string.h>

/* The constants and the polynomial, shared with the lane-vector version (_hmm_lanes.h):
 * the macro works on a double or on a GCC/Clang vector of doubles alike. */
#define EMFAST_EXP_SHIFTER 6755399441055744.0                 /* 1.5 * 2**52 */
#define EMFAST_EXP_LOG2E 1.4426950408889634
#define EMFAST_EXP_LN2_HI 6.93147180369123816490e-01
#define EMFAST_EXP_LN2_LO 1.90821492927058770002e-10
/* exp(r) by Horner from 1/13! down to 1 */
#define EMFAST_EXP_TAYLOR(r)                                                                \
    (1.0 + (r) * (1.0 + (r) * (0.5 + (r) * (1.0 / 6.0 + (r) * (1.0 / 24.0 +                 \
     (r) * (1.0 / 120.0 + (r) * (1.0 / 720.0 + (r) * (1.0 / 5040.0 +                        \
     (r) * (1.0 / 40320.0 + (r) * (1.0 / 362880.0 + (r) * (1.0 / 3628800.0 +                \
     (r) * (1.0 / 39916800.0 + (r) * (1.0 / 479001600.0 +                                   \
     (r) * (1.0 / 6227020800.0))))))))))))))

/* exp(r) on |r| <= ln(2)/2 for the vector exp: a degree-11 polynomial interpolating exp at the
 * Chebyshev nodes of that interval (computed in extended precision; error < 7e-18 relative
 * with these double coefficients, against 5e-18 for the degree-13 Taylor series), evaluated
 * by Estrin's scheme: pairs c_2j + c_2j+1 r joined by r^2, r^4, r^8 (R2, R4, R8 given).
 * 14 operations in a chain 5 deep, against Horner's 13 in a chain 13 deep: the log-sum-exp's
 * exps then overlap instead of each waiting on its own chain (on AVX2, whose 16 registers
 * leave the out-of-order window few of them in flight: ~6% of the diagonal E-step at D = 10,
 * K = 16). Not bit-identical to the scalar Horner version (a few 1e-17 apart). */
#define EMFAST_EXP_C2 0.5000000000000018
#define EMFAST_EXP_C3 0.16666666666666688
#define EMFAST_EXP_C4 0.041666666666489625
#define EMFAST_EXP_C5 0.008333333333319932
#define EMFAST_EXP_C6 0.0013888888951948406
#define EMFAST_EXP_C7 0.0001984126988347486
#define EMFAST_EXP_C8 2.4801485834157547e-05
#define EMFAST_EXP_C9 2.75572502547485e-06
#define EMFAST_EXP_C10 2.7632523147958566e-07
#define EMFAST_EXP_C11 2.5106295919090256e-08
#define EMFAST_EXP_POLY11_ESTRIN(r, R2, R4, R8)                                              \
    ((((1.0 + (r)) + (R2) * (EMFAST_EXP_C2 + (r) * EMFAST_EXP_C3))                          \
      + (R4) * ((EMFAST_EXP_C4 + (r) * EMFAST_EXP_C5)                                       \
                + (R2) * (EMFAST_EXP_C6 + (r) * EMFAST_EXP_C7)))                            \
     + (R8) * ((EMFAST_EXP_C8 + (r) * EMFAST_EXP_C9)                                        \
               + (R2) * (EMFAST_EXP_C10 + (r) * EMFAST_EXP_C11)))

/* log(y) for y in [sqrt(1/2), sqrt(2)] as 2 atanh(s), s = (y - 1) / (y + 1) (|s| < 0.1716),
 * by its series to s^23 (truncation < 1e-17 relative); Z = s * s. On a double or a vector. */
#define EMFAST_LOG_ATANH_SERIES(S, Z)                                                       \
    ((S) * (2.0 + (Z) * (2.0 / 3.0 + (Z) * (2.0 / 5.0 + (Z) * (2.0 / 7.0 + (Z) * (2.0 / 9.0 \
     + (Z) * (2.0 / 11.0 + (Z) * (2.0 / 13.0 + (Z) * (2.0 / 15.0 + (Z) * (2.0 / 17.0       \
     + (Z) * (2.0 / 19.0 + (Z) * (2.0 / 21.0 + (Z) * (2.0 / 23.0)))))))))))))

static inline double emfast_exp_nonpos(double x)
{
    double xc = x < -708.0 ? -708.0 : x;                 /* -inf -> finite; zeroed below */
    double kd = xc * EMFAST_EXP_LOG2E + EMFAST_EXP_SHIFTER;   /* n in the low mantissa bits */
    double nf = kd - EMFAST_EXP_SHIFTER;                 /* n as a double, exactly */
    double r = (xc - nf * EMFAST_EXP_LN2_HI) - nf * EMFAST_EXP_LN2_LO;
    double p = EMFAST_EXP_TAYLOR(r);
    uint64_t bits;
    memcpy(&bits, &kd, sizeof bits);
    /* (bits << 52) keeps exactly n's bits (the shifter's own bits fall off the top); adding
     * 1023 << 52 makes it the biased exponent of 2**n, n >= -1022 thanks to the clamp. */
    bits = (bits << 52) + ((uint64_t) 1023 << 52);
    double scale;
    memcpy(&scale, &bits, sizeof scale);
    double e = p * scale;
    return x < -708.0 ? 0.0 : e;
}

#if defined(__GNUC__) || defined(__clang__)
/* emfast_exp_nonpos on a GCC/Clang vector: the same range reduction, branch-free, lane by
 * lane, exp(r) by EMFAST_EXP_POLY11_ESTRIN (not bit-identical to the scalar version).
 * EMFAST_DEFINE_VEXP_NONPOS(name, VD, VI) defines `VD name(VD x)` for a vector type VD of
 * doubles and VI, the int64 vector of the same size (the kernels each pick their width). */
#define EMFAST_DEFINE_VEXP_NONPOS(NAME, VD, VI)                                              \
    static inline __attribute__((always_inline)) VD NAME(VD x)                              \
    {                                                                                       \
        VD floor_ = {0.0};                                                                  \
        floor_ = floor_ - 708.0;                           /* -708 in every lane */         \
        VI tiny = (VI) (x < floor_);                                                        \
        VD xc = (VD) (((VI) x & ~tiny) | ((VI) floor_ & tiny));                             \
        VD kd = xc * EMFAST_EXP_LOG2E + EMFAST_EXP_SHIFTER;                                 \
        VD nf = kd - EMFAST_EXP_SHIFTER;                                                    \
        VD r = (xc - nf * EMFAST_EXP_LN2_HI) - nf * EMFAST_EXP_LN2_LO;                      \
        VD r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;                                          \
        VD p = EMFAST_EXP_POLY11_ESTRIN(r, r2, r4, r8);                                      \
        VI bits = ((VI) kd << 52) + ((int64_t) 1023 << 52);                                 \
        return (VD) ((VI) (p * (VD) bits) & ~tiny);                                         \
    }
#endif

#endif
