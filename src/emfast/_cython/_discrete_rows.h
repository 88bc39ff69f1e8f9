/* The per-row loops of the categorical kernels (_discrete_impl.pxi), across the classes with
 * GCC/Clang vector extensions: a row's log-probabilities are J gathers of K contiguous
 * log-probabilities, its statistics J scatters of K responsibilities. The classes go four,
 * then two, then one at a time; each of those chunks sums the even and the odd items in two
 * accumulators, added at the end, so that consecutive adds do not wait for each other (one
 * accumulator per class made every row a chain of J dependent adds per class). The order of
 * the adds is fixed by J and K alone: results do not depend on the thread count. */
#ifndef EMFAST_DISCRETE_ROWS_H
#define EMFAST_DISCRETE_ROWS_H

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

#endif
