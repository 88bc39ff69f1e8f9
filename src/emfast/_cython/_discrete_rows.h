/* The per-row loops of the categorical kernels (_discrete_impl.pxi), across the classes with
 * GCC/Clang vector extensions: a row's log-probabilities are J gathers of K contiguous
 * log-probabilities, its statistics J scatters of K responsibilities. The classes go four,
 * then two, then one at a time; each of those chunks sums the even and the odd items in two
 * accumulators, added at the end, so that consecutive adds do not wait for each other (one
 * accumulator per class made every row a chain of J dependent adds per class). The order of
 * the adds is fixed by J and K alone: results do not depend on the thread count. */
#ifndef EMFAST_DISCRETE_ROWS_H
#define EMFAST_DISCRETE_ROWS_H

#include <math.h>
#include <stddef.h>

#include "_fastexp.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"    /* vectors of inline functions, never an ABI */
#endif

typedef double emfast_d4 __attribute__((vector_size(32), aligned(8)));
typedef double emfast_d2 __attribute__((vector_size(16), aligned(8)));
typedef long long emfast_i4 __attribute__((vector_size(32), aligned(8)));
typedef long long emfast_i2 __attribute__((vector_size(16), aligned(8)));

/* EMFAST_CAT_CHUNK(V, k0): out[k0 : k0 + width of V] = logw + the sum over the row's
 * non-missing codes (>= 0) of lpT[code * K + k0 : ...], even and odd items apart. */
#define EMFAST_CAT_CHUNK(V, k0)                                                         \
    do {                                                                                \
        V even = *(const V*) (logw + (k0)), odd = {0};                          \
        int j = 0;                                                                      \
        for (; j + 1 < J; j += 2) {                                                     \
            if (code[j] >= 0) even += *(const V*) (lpT + (ptrdiff_t) code[j] * K + (k0)); \
            if (code[j + 1] >= 0)                                                       \
                odd += *(const V*) (lpT + (ptrdiff_t) code[j + 1] * K + (k0));          \
        }                                                                               \
        if (j < J && code[j] >= 0) even += *(const V*) (lpT + (ptrdiff_t) code[j] * K + (k0)); \
        *(V*) (out + (k0)) = even + odd;                                                \
    } while (0)

/* out (K,) = logw + sum_j lpT[code[j], :] over the codes >= 0. */
static inline void emfast_cat_row_sums(const int* code, int J, const double* lpT,
                                       const double* logw, int K, double* out)
{
    int k = 0;
    for (; k + 4 <= K; k += 4)
        EMFAST_CAT_CHUNK(emfast_d4, k);
    if (k + 2 <= K) {
        EMFAST_CAT_CHUNK(emfast_d2, k);
        k += 2;
    }
    if (k < K) {
        double even = logw[k], odd = 0.0;
        int j = 0;
        for (; j + 1 < J; j += 2) {
            if (code[j] >= 0) even += lpT[(ptrdiff_t) code[j] * K + k];
            if (code[j + 1] >= 0) odd += lpT[(ptrdiff_t) code[j + 1] * K + k];
        }
        if (j < J && code[j] >= 0) even += lpT[(ptrdiff_t) code[j] * K + k];
        out[k] = even + odd;
    }
}

/* counts[code[j], :] += r (K,) for the codes >= 0, one item after the other (a code that
 * two items share is added twice, as the reference adds it). */
static inline void emfast_cat_scatter(const int* code, int J, const double* r, int K,
                                      double* counts)
{
    for (int j = 0; j < J; j++) {
        if (code[j] < 0)
            continue;
        double* dst = counts + (ptrdiff_t) code[j] * K;
        int k = 0;
        for (; k + 4 <= K; k += 4)
            *(emfast_d4*) (dst + k) += *(const emfast_d4*) (r + k);
        if (k + 2 <= K) {
            *(emfast_d2*) (dst + k) += *(const emfast_d2*) (r + k);
            k += 2;
        }
        if (k < K)
            dst[k] += r[k];
    }
}

/* Up to 2 EMFAST_CAT_LANES classes, a row's classes are whole vectors: NV = 1 or 2
 * vectors of EMFAST_CAT_LANES doubles (8 in the AVX-512 build, else 4), the table (C, KP =
 * NV lanes), the log-weights and the sums padded with -inf (whose exp is 0) and 0. The
 * log-sum-exp then works on those vectors from the gathers to the scatters: the row's max
 * and the sum of its exps without a loop over the classes (at K = 6 a third of the E-step
 * went to those loops), the exps in one flat loop over the block. Adds are in a fixed order
 * (even and odd items apart, rows in order), so results never depend on the threads. */
#if defined(__AVX512F__)
#define EMFAST_CAT_LANES 8
#else
#define EMFAST_CAT_LANES 4
#endif
typedef double emfast_cv __attribute__((vector_size(8 * EMFAST_CAT_LANES), aligned(8)));
typedef long long emfast_ci __attribute__((vector_size(8 * EMFAST_CAT_LANES), aligned(8)));

EMFAST_DEFINE_VEXP_NONPOS(emfast_cv_exp_nonpos, emfast_cv, emfast_ci)

static inline __attribute__((always_inline)) emfast_cv emfast_cv_ld(const double* p)
{
    return *(const emfast_cv*) p;
}

/* The lanes' sum and max, halving: lane l with lane l + W/2 first (a fixed order). With
 * the shuffle builtin the halves are vector operations (the same ones, the same result);
 * lane by lane, the max of 8 lanes was a chain of 7 extracts and compares per row. */
#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define EMFAST_CAT_SHUFFLE 1
#endif
#endif

#ifdef EMFAST_CAT_SHUFFLE
typedef double emfast_c4 __attribute__((vector_size(32)));
typedef double emfast_c2 __attribute__((vector_size(16)));
typedef long long emfast_c4i __attribute__((vector_size(32)));
typedef long long emfast_c2i __attribute__((vector_size(16)));
#define EMFAST_CAT_MAX(VD, VI, a, b) \
    ((VD) (((VI) (a) & (VI) ((a) > (b))) | ((VI) (b) & ~(VI) ((a) > (b)))))

static inline __attribute__((always_inline)) emfast_c4 emfast_cv_half4(emfast_cv v, int sum)
{
#if EMFAST_CAT_LANES == 8
    emfast_c4 lo = __builtin_shufflevector(v, v, 0, 1, 2, 3);
    emfast_c4 hi = __builtin_shufflevector(v, v, 4, 5, 6, 7);
    return sum ? lo + hi : EMFAST_CAT_MAX(emfast_c4, emfast_c4i, lo, hi);
#else
    (void) sum;
    return v;
#endif
}

static inline __attribute__((always_inline)) double emfast_cv_hsum(emfast_cv v)
{
    emfast_c4 h = emfast_cv_half4(v, 1);
    emfast_c2 q = __builtin_shufflevector(h, h, 0, 1) + __builtin_shufflevector(h, h, 2, 3);
    return q[0] + q[1];
}

static inline __attribute__((always_inline)) double emfast_cv_hmax(emfast_cv v)
{
    emfast_c4 h = emfast_cv_half4(v, 0);
    emfast_c2 a = __builtin_shufflevector(h, h, 0, 1), b = __builtin_shufflevector(h, h, 2, 3);
    emfast_c2 q = EMFAST_CAT_MAX(emfast_c2, emfast_c2i, a, b);
    return q[0] > q[1] ? q[0] : q[1];
}
#else
static inline __attribute__((always_inline)) double emfast_cv_hsum(emfast_cv v)
{
    for (int w = EMFAST_CAT_LANES / 2; w > 0; w /= 2)
        for (int l = 0; l < w; l++)
            v[l] += v[l + w];
    return v[0];
}

static inline __attribute__((always_inline)) double emfast_cv_hmax(emfast_cv v)
{
    for (int w = EMFAST_CAT_LANES / 2; w > 0; w /= 2)
        for (int l = 0; l < w; l++)
            v[l] = v[l] > v[l + w] ? v[l] : v[l + w];
    return v[0];
}
#endif

/* Rows [0, nb) of a block (codes (nb, J)): e (nb, KP) = exp(lp - m) of each row's
 * log-probabilities lp = logw + sum_j T[code_j] and their max m (0 for a row whose every
 * class is impossible: its exps are 0), mx[b] = m, s[b] = sum of the row's exps. */
static inline __attribute__((always_inline)) void emfast_cat_exp_nv(
    const int NV, const int* codes, int J, ptrdiff_t nb, const double* T, const double* logw,
    double* e, double* mx, double* s)
{
    const int W = EMFAST_CAT_LANES, KP = NV * EMFAST_CAT_LANES;
    for (ptrdiff_t b = 0; b < nb; b++) {
        const int* code = codes + b * J;
        emfast_cv even[2], odd[2];
        for (int q = 0; q < NV; q++) {
            even[q] = emfast_cv_ld(logw + W * q);
            odd[q] = (emfast_cv) {0.0};
        }
        int j = 0;
        for (; j + 1 < J; j += 2) {
            if (code[j] >= 0)
                for (int q = 0; q < NV; q++)
                    even[q] += emfast_cv_ld(T + (ptrdiff_t) code[j] * KP + W * q);
            if (code[j + 1] >= 0)
                for (int q = 0; q < NV; q++)
                    odd[q] += emfast_cv_ld(T + (ptrdiff_t) code[j + 1] * KP + W * q);
        }
        if (j < J && code[j] >= 0)
            for (int q = 0; q < NV; q++)
                even[q] += emfast_cv_ld(T + (ptrdiff_t) code[j] * KP + W * q);
        double m = -INFINITY;
        for (int q = 0; q < NV; q++) {
            emfast_cv v = even[q] + odd[q];
            double mq = emfast_cv_hmax(v);
            m = mq > m ? mq : m;
            *(emfast_cv*) (e + b * KP + W * q) = v;
        }
        double shift = m > -INFINITY ? m : 0.0;
        for (int q = 0; q < NV; q++)
            *(emfast_cv*) (e + b * KP + W * q) -= shift;
        mx[b] = m;
    }
    /* the exps apart, a flat loop of independent vectors: inside the row loop each row's
     * chain of dependent multiply-adds waited on its gathers (the E-step took 20% longer
     * at K = 6) */
    for (ptrdiff_t i = 0; i < nb * KP; i += W)
        *(emfast_cv*) (e + i) = emfast_cv_exp_nonpos(emfast_cv_ld(e + i));
    for (ptrdiff_t b = 0; b < nb; b++) {
        emfast_cv tot = emfast_cv_ld(e + b * KP);
        if (NV == 2) tot += emfast_cv_ld(e + b * KP + W);
        s[b] = emfast_cv_hsum(tot);
    }
}

/* nk (KP) += r and counts[code_j] (KP each) += r for each row's responsibilities r =
 * e * scale[b] (rows of scale 0 skipped), rows in order. */
static inline __attribute__((always_inline)) void emfast_cat_add_nv(
    const int NV, const int* codes, int J, ptrdiff_t nb, const double* e, const double* scale,
    double* nk, double* counts)
{
    const int W = EMFAST_CAT_LANES, KP = NV * EMFAST_CAT_LANES;
    emfast_cv acc[2];
    for (int q = 0; q < NV; q++) acc[q] = emfast_cv_ld(nk + W * q);
    for (ptrdiff_t b = 0; b < nb; b++) {
        double sc = scale[b];
        if (sc == 0.0)
            continue;
        emfast_cv r[2];
        for (int q = 0; q < NV; q++) {
            r[q] = emfast_cv_ld(e + b * KP + W * q) * sc;
            acc[q] += r[q];
        }
        const int* code = codes + b * J;
        for (int j = 0; j < J; j++) {
            if (code[j] < 0)
                continue;
            double* dst = counts + (ptrdiff_t) code[j] * KP;
            for (int q = 0; q < NV; q++)
                *(emfast_cv*) (dst + W * q) += r[q];
        }
    }
    for (int q = 0; q < NV; q++) *(emfast_cv*) (nk + W * q) = acc[q];
}

static inline void emfast_cat_exp_v(int NV, const int* codes, int J, ptrdiff_t nb,
                                    const double* T, const double* logw, double* e,
                                    double* mx, double* s)
{
    if (NV == 1)
        emfast_cat_exp_nv(1, codes, J, nb, T, logw, e, mx, s);
    else
        emfast_cat_exp_nv(2, codes, J, nb, T, logw, e, mx, s);
}

static inline void emfast_cat_add_v(int NV, const int* codes, int J, ptrdiff_t nb,
                                    const double* e, const double* scale, double* nk,
                                    double* counts)
{
    if (NV == 1)
        emfast_cat_add_nv(1, codes, J, nb, e, scale, nk, counts);
    else
        emfast_cat_add_nv(2, codes, J, nb, e, scale, nk, counts);
}

/* The Poisson rows, across the classes as the categorical ones: logT is log(lambda)
 * transposed, (D, K), so that a count multiplies K contiguous log-rates. A zero count adds
 * 0, also where a rate is 0 (0 * -inf would be NaN): its term is masked, not branched on
 * (whether a count is 0 is unpredictable). Even and odd features in two sums per chunk. */
#define EMFAST_POI_TERM(V, VI, xv, p)                                                   \
    ((V) ((VI) ((xv) * *(const V*) (p)) & ((VI) {0} - (long long) ((xv) != 0.0))))

#define EMFAST_POI_CHUNK(V, VI, k0)                                                     \
    do {                                                                                \
        V even = *(const V*) (log_const + (k0)) + row_const, odd = {0};                 \
        int d = 0;                                                                      \
        for (; d + 1 < D; d += 2) {                                                     \
            even += EMFAST_POI_TERM(V, VI, (double) x[d], logT + (ptrdiff_t) d * K + (k0)); \
            odd += EMFAST_POI_TERM(V, VI, (double) x[d + 1],                            \
                                   logT + (ptrdiff_t) (d + 1) * K + (k0));              \
        }                                                                               \
        if (d < D)                                                                      \
            even += EMFAST_POI_TERM(V, VI, (double) x[d], logT + (ptrdiff_t) d * K + (k0)); \
        *(V*) (out + (k0)) = even + odd;                                                \
    } while (0)

/* out (K,) = log_const + row_const + sum_d x_d log(lambda_d) (terms of x_d = 0 are 0), and
 * s1T (D, K) += x_d r (K,) for each feature: for float (f32) and double (f64) rows. */
#define EMFAST_DEFINE_POI_ROW(SUFFIX, T)                                                \
    static inline void emfast_poi_row_sums_##SUFFIX(const T* x, int D, const double* logT, \
                                                    const double* log_const,            \
                                                    double row_const, int K, double* out) \
    {                                                                                   \
        int k = 0;                                                                      \
        for (; k + 4 <= K; k += 4)                                                      \
            EMFAST_POI_CHUNK(emfast_d4, emfast_i4, k);                                  \
        if (k + 2 <= K) {                                                               \
            EMFAST_POI_CHUNK(emfast_d2, emfast_i2, k);                                  \
            k += 2;                                                                     \
        }                                                                               \
        if (k < K) {                                                                    \
            double even = log_const[k] + row_const, odd = 0.0;                          \
            int d = 0;                                                                  \
            for (; d + 1 < D; d += 2) {                                                 \
                double t0 = (double) x[d] * logT[(ptrdiff_t) d * K + k];                \
                double t1 = (double) x[d + 1] * logT[(ptrdiff_t) (d + 1) * K + k];      \
                even += x[d] != 0 ? t0 : 0.0;                                           \
                odd += x[d + 1] != 0 ? t1 : 0.0;                                        \
            }                                                                           \
            if (d < D) {                                                                \
                double t0 = (double) x[d] * logT[(ptrdiff_t) d * K + k];                \
                even += x[d] != 0 ? t0 : 0.0;                                           \
            }                                                                           \
            out[k] = even + odd;                                                        \
        }                                                                               \
    }                                                                                   \
    static inline void emfast_poi_scatter_##SUFFIX(const T* x, int D, const double* r,  \
                                                   int K, double* s1T)                  \
    {                                                                                   \
        for (int d = 0; d < D; d++) {                                                   \
            double xv = (double) x[d];                                                  \
            double* dst = s1T + (ptrdiff_t) d * K;                                      \
            int k = 0;                                                                  \
            for (; k + 4 <= K; k += 4)                                                  \
                *(emfast_d4*) (dst + k) += xv * *(const emfast_d4*) (r + k);            \
            if (k + 2 <= K) {                                                           \
                *(emfast_d2*) (dst + k) += xv * *(const emfast_d2*) (r + k);            \
                k += 2;                                                                 \
            }                                                                           \
            if (k < K)                                                                  \
                dst[k] += xv * r[k];                                                    \
        }                                                                               \
    }

EMFAST_DEFINE_POI_ROW(f32, float)
EMFAST_DEFINE_POI_ROW(f64, double)

/* log Gamma(x) without lgamma's write of the global signgam, a data race between threads:
 * lgamma_r (its sign out of an argument) wherever the C library has it. */
#if defined(_WIN32)
static inline double emfast_lgamma(double x) { return lgamma(x); }
#else
extern double lgamma_r(double, int*);
static inline double emfast_lgamma(double x) { int sign; return lgamma_r(x, &sign); }
#endif

#endif
