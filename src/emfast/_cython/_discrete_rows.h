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

typedef double emfast_d4 __attribute__((vector_size(32), aligned(8)));
typedef double emfast_d2 __attribute__((vector_size(16), aligned(8)));

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

/* The Poisson rows, across the classes as the categorical ones: logT is log(lambda)
 * transposed, (D, K), so that a count multiplies K contiguous log-rates. A zero count adds
 * 0, also where a rate is 0 (0 * -inf would be NaN): its term is masked, not branched on
 * (whether a count is 0 is unpredictable). Even and odd features in two sums per chunk. */
typedef long long emfast_i4 __attribute__((vector_size(32), aligned(8)));
typedef long long emfast_i2 __attribute__((vector_size(16), aligned(8)));

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
