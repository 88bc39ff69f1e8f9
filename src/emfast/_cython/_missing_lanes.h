/* emfast: the per-pattern factor of the missing-value E-step's per-row path
 * (_missing_impl.pxi), several patterns at once, one per SIMD lane.
 *
 * Why: with data missing at random nearly every row has its own pattern, and a pattern's
 * factor of a dozen coordinates is a chain of dependent divisions and short sums that leaves
 * most of the machine idle. Patterns (of any component, any row) with the same number m of
 * missing coordinates are independent, so EMFAST_ML_LANES of them go through one chain, one
 * per lane (GCC/Clang vector extensions: the compiler emits the build's SIMD width).
 *
 * The algebra, per lane, from the (m, m) block a = Lambda_MM of a (D, D) symmetric positive
 * definite precision lam at the missing coordinates mis (ascending): a = L D L' with L unit
 * lower triangular (no square roots on the pivot chain), T = L^-1, dinv = 1 / diag(D),
 * C = a^-1 = T' diag(dinv) T, logdet = log det a. Each pattern's results go to its own
 * record of emfast_ml_size(m) doubles (emfast_ml_* accessors below): C's lower triangle
 * packed by rows, T's strict lower triangle packed by rows, dinv, logdet.
 *
 * Every pattern with m <= EMFAST_ML_MAX_M goes through the lane code compiled for its m (the
 * loops unrolled, the factor in registers), whichever lane and batch it lands in: lanes do
 * not interact, and the code for one m is one compiled sequence (FMA contractions included)
 * for every lane, so a pattern's results never depend on its batch companions (or on the
 * thread count, or the order of the rows). Larger m (rare: a few tens of coordinates
 * missing in one row) go one at a time through the same code with one lane and m a
 * variable.
 */
#ifndef EMFAST_MISSING_LANES_H
#define EMFAST_MISSING_LANES_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#if defined(__SSE2__)
#include <immintrin.h>
#endif

/* One lane vector is one SIMD register of the build (see _hmm_lanes.h) */
#if defined(__AVX512F__)
#define EMFAST_ML_LANES 8
#elif defined(__AVX__)
#define EMFAST_ML_LANES 4
#else
#define EMFAST_ML_LANES 2
#endif
#define EMFAST_ML_MAX_M 16      /* the largest m batched in lanes, compiled with m constant */

/* may_alias: the records are written as vectors and read as doubles */
typedef double emfast_mlv __attribute__((vector_size(8 * EMFAST_ML_LANES), aligned(8),
                                         may_alias));
typedef int64_t emfast_mli __attribute__((vector_size(8 * EMFAST_ML_LANES), aligned(8)));
typedef double emfast_ml1 __attribute__((vector_size(8), aligned(8), may_alias));
typedef int64_t emfast_ml1i __attribute__((vector_size(8), aligned(8)));

/* Loops of at most EMFAST_ML_MAX_M iterations (m constant) unrolled completely; GCC alone
 * stops at the triangular nests, whose inner bounds follow the outer index. */
#if defined(__clang__)
#define EMFAST_UNROLL _Pragma("unroll")
#else
#define EMFAST_UNROLL _Pragma("GCC unroll 16")
#endif

/* The layout of one pattern's record: element e at q[e * EMFAST_ML_STRIDE(m)]. A batch's
 * records are interleaved, lane l's starting l doubles after lane 0's, so that the lane
 * code writes whole vectors; the larger m, factored one at a time, are contiguous. */
#define EMFAST_ML_TRI(i, j) ((i) * ((i) + 1) / 2 + (j))     /* (i, j), j <= i, packed */
#define EMFAST_ML_STRIDE(m) ((m) <= EMFAST_ML_MAX_M ? EMFAST_ML_LANES : 1)
static inline int emfast_ml_size(int m) { return m * m + m + 1; }
static inline double emfast_ml_dinv(const double* q, int m, int i)
{
    return q[(m * m + i) * EMFAST_ML_STRIDE(m)];
}
static inline double emfast_ml_logdet(const double* q, int m)
{
    return q[(m * m + m) * EMFAST_ML_STRIDE(m)];
}
/* T[i, j], i >= j (1 on the diagonal) */
static inline double emfast_ml_linv(const double* q, int m, int i, int j)
{
    return i == j ? 1.0 : q[(m * (m + 1) / 2 + EMFAST_ML_TRI(i - 1, j)) * EMFAST_ML_STRIDE(m)];
}

/* NAME(lam, loff, D, mis, m, R, f, v): the factors of NL patterns, lane l's from the
 * precision at lam + loff[l] at the coordinates mis[0..m)[l], as records (see above) in R
 * (emfast_ml_size(m) vectors, lane l holding pattern l's); f (m (m + 1) / 2) and v (m):
 * scratch vectors. Returns 0, or -1 when a lane's block is not numerically positive
 * definite. Always inlined, so that a constant m unrolls every loop. */
#define EMFAST_ML_DEFINE_FACTOR(NAME, VT, VI, NL, GATHER, ANY)                             \
static inline __attribute__((always_inline)) int NAME(                                     \
    const double* __restrict lam, VI loff, int D, const VI* __restrict mis, const int m,   \
    VT* __restrict R, VT* __restrict f, VT* __restrict v)                                  \
{                                                                                          \
    const int c0 = m * (m + 1) / 2;     /* T's place in a record */                        \
    const VT zero = {0.0}, one = zero + 1.0;                                               \
    VT acc = zero, prod = one;                                                             \
    VI ok = zero == zero;                                                                  \
    /* the lower triangle of Lambda_MM: all that L D L' reads */                           \
    EMFAST_UNROLL for (int i = 0; i < m; i++) {                                            \
        const VI row = loff + mis[i] * D;                                                  \
        EMFAST_UNROLL for (int j = 0; j <= i; j++)                                         \
            f[EMFAST_ML_TRI(i, j)] = GATHER(lam, row + mis[j]);                            \
    }                                                                                      \
    EMFAST_UNROLL for (int j = 0; j < m; j++) {                                            \
        VT d = f[EMFAST_ML_TRI(j, j)];                                                     \
        EMFAST_UNROLL for (int l = 0; l < j; l++) {                                        \
            v[l] = f[EMFAST_ML_TRI(j, l)] * f[EMFAST_ML_TRI(l, l)];                        \
            d -= f[EMFAST_ML_TRI(j, l)] * v[l];                                            \
        }                                                                                  \
        ok &= d > 0.0;                                                                     \
        f[EMFAST_ML_TRI(j, j)] = d;                                                        \
        R[m * m + j] = 1.0 / d;                                                            \
        EMFAST_UNROLL for (int i = j + 1; i < m; i++) {                                    \
            VT s = f[EMFAST_ML_TRI(i, j)];                                                 \
            EMFAST_UNROLL for (int l = 0; l < j; l++) s -= f[EMFAST_ML_TRI(i, l)] * v[l];  \
            f[EMFAST_ML_TRI(i, j)] = s * R[m * m + j];                                     \
        }                                                                                  \
        /* one log per pattern, not one per pivot, unless the product nears the ends of  \
           the double range */                                                             \
        prod *= d;                                                                         \
        VI big = (prod > 1e150) | (prod < 1e-150);                                         \
        if (__builtin_expect(ANY(big), 0))                                                 \
            for (int l = 0; l < NL; l++)                                                   \
                if (big[l]) { acc[l] += log(prod[l]); prod[l] = 1.0; }                     \
    }                                                                                      \
    for (int l = 0; l < NL; l++) R[m * m + m][l] = acc[l] + log(prod[l]);                  \
    /* T = L^-1, its strict lower triangle (1 on the diagonal) */                          \
    EMFAST_UNROLL for (int j = 0; j < m; j++)                                              \
        EMFAST_UNROLL for (int i = j + 1; i < m; i++) {                                    \
            VT s = f[EMFAST_ML_TRI(i, j)];                                                 \
            EMFAST_UNROLL for (int l = j + 1; l < i; l++)                                  \
                s += f[EMFAST_ML_TRI(i, l)] * R[c0 + EMFAST_ML_TRI(l - 1, j)];             \
            R[c0 + EMFAST_ML_TRI(i - 1, j)] = -s;                                          \
        }                                                                                  \
    /* C[i, j] = sum_l dinv_l T[l, i] T[l, j] (l >= i >= j): each element one sum */       \
    EMFAST_UNROLL for (int i = 0; i < m; i++)                                              \
        EMFAST_UNROLL for (int j = 0; j <= i; j++) {                                       \
            VT s = R[m * m + i] * (i == j ? one : R[c0 + EMFAST_ML_TRI(i - 1, j)]);         \
            EMFAST_UNROLL for (int l = i + 1; l < m; l++)                                  \
                s += (R[m * m + l] * R[c0 + EMFAST_ML_TRI(l - 1, i)])                      \
                     * R[c0 + EMFAST_ML_TRI(l - 1, j)];                                    \
            R[EMFAST_ML_TRI(i, j)] = s;                                                    \
        }                                                                                  \
    for (int l = 0; l < NL; l++)                                                           \
        if (!ok[l]) return -1;                                                             \
    return 0;                                                                              \
}

/* lam[idx[l]] in lane l: one gather instruction where the build has them */
static inline __attribute__((always_inline)) emfast_mlv emfast_ml_gather(const double* lam,
                                                                         emfast_mli idx)
{
#if EMFAST_ML_LANES == 8
    return (emfast_mlv) _mm512_i64gather_pd((__m512i) idx, lam, 8);
#elif EMFAST_ML_LANES == 4 && defined(__AVX2__)
    return (emfast_mlv) _mm256_i64gather_pd(lam, (__m256i) idx, 8);
#elif EMFAST_ML_LANES == 4
    return (emfast_mlv) {lam[idx[0]], lam[idx[1]], lam[idx[2]], lam[idx[3]]};
#else
    return (emfast_mlv) {lam[idx[0]], lam[idx[1]]};
#endif
}
static inline __attribute__((always_inline)) emfast_ml1 emfast_ml_gather1(const double* lam,
                                                                          emfast_ml1i idx)
{
    return (emfast_ml1) {lam[idx[0]]};
}

/* 1 when any lane of the comparison result x is true: one mask test where the build has
 * one (a loop over the lanes extracts each) */
static inline __attribute__((always_inline)) int emfast_ml_any(emfast_mli x)
{
#if EMFAST_ML_LANES == 8
    return _mm512_test_epi64_mask((__m512i) x, (__m512i) x) != 0;
#elif EMFAST_ML_LANES == 4 && defined(__AVX__)
    return _mm256_movemask_pd((__m256d) x) != 0;
#elif defined(__SSE2__)
    return _mm_movemask_pd((__m128d) x) != 0;
#else
    return (x[0] | x[1]) != 0;
#endif
}
static inline __attribute__((always_inline)) int emfast_ml_any1(emfast_ml1i x)
{
    return x[0] != 0;
}

EMFAST_ML_DEFINE_FACTOR(emfast_ml_factor_lanes, emfast_mlv, emfast_mli, EMFAST_ML_LANES,
                        emfast_ml_gather, emfast_ml_any)
EMFAST_ML_DEFINE_FACTOR(emfast_ml_factor_one, emfast_ml1, emfast_ml1i, 1, emfast_ml_gather1,
                        emfast_ml_any1)

/* The patterns waiting for a full batch, by m (0 .. EMFAST_ML_MAX_M), and the records'
 * store */
typedef struct {
    int D;
    int n[EMFAST_ML_MAX_M + 1];
    const double* lam[EMFAST_ML_MAX_M + 1][EMFAST_ML_LANES];
    const int* mis[EMFAST_ML_MAX_M + 1][EMFAST_ML_LANES];
    double* out[EMFAST_ML_MAX_M + 1];           /* the batch's records */
    double* store;
    ptrdiff_t used, cap;
} emfast_ml_batch;

/* The factor of the batch of patterns of m missing coordinates; lanes past the n waiting
 * repeat lane 0's inputs (their records unused). */
#if defined(__GNUC__) && !defined(__clang__)
/* the loops over lanes only move values: vectorising them only adds prologues */
__attribute__((optimize("no-tree-vectorize")))
#endif
static int emfast_ml_run(emfast_ml_batch* b, int m)
{
    const double* lam[EMFAST_ML_LANES];
    const int* mis[EMFAST_ML_LANES];
    emfast_mli loff, mv[EMFAST_ML_MAX_M + 1];
    emfast_mlv* R = (emfast_mlv*) b->out[m];
    int r = 0;
    for (int l = 0; l < EMFAST_ML_LANES; l++) {
        const int k = l < b->n[m] ? l : 0;
        lam[l] = b->lam[m][k];
        mis[l] = b->mis[m][k];
        loff[l] = lam[l] - lam[0];
    }
    b->n[m] = 0;
    for (int i = 0; i < m; i++)
        for (int l = 0; l < EMFAST_ML_LANES; l++) mv[i][l] = mis[l][i];
    /* the scratch of a constant m local, so that it can live in registers */
#define EMFAST_ML_CASE(M)                                                                  \
    case M: {                                                                              \
        emfast_mlv f[(M) * ((M) + 1) / 2 + 1], v[(M) + 1];                                 \
        r = emfast_ml_factor_lanes(lam[0], loff, b->D, mv, M, R, f, v);                    \
        break;                                                                             \
    }
    switch (m) {
    EMFAST_ML_CASE(0) EMFAST_ML_CASE(1) EMFAST_ML_CASE(2) EMFAST_ML_CASE(3)
    EMFAST_ML_CASE(4) EMFAST_ML_CASE(5) EMFAST_ML_CASE(6) EMFAST_ML_CASE(7)
    EMFAST_ML_CASE(8) EMFAST_ML_CASE(9) EMFAST_ML_CASE(10) EMFAST_ML_CASE(11)
    EMFAST_ML_CASE(12) EMFAST_ML_CASE(13) EMFAST_ML_CASE(14) EMFAST_ML_CASE(15)
    EMFAST_ML_CASE(16)
    }
#undef EMFAST_ML_CASE
    return r;
}

/* An empty batch for precisions of D coordinates, its records in store (cap doubles) */
static void emfast_ml_reset(emfast_ml_batch* b, int D, double* store, ptrdiff_t cap)
{
    b->D = D;
    b->store = store;
    b->used = 0;
    b->cap = cap;
    for (int m = 0; m <= EMFAST_ML_MAX_M; m++) b->n[m] = 0;
}

/* Doubles of store that n patterns of m missing coordinates may take at most */
static inline ptrdiff_t emfast_ml_room(int m, int n)
{
    return (ptrdiff_t) n * emfast_ml_size(m) * EMFAST_ML_STRIDE(m);
}

/* 1 when the store has room for n more patterns of m missing coordinates */
static inline int emfast_ml_fits(const emfast_ml_batch* b, int m, int n)
{
    return b->used + emfast_ml_room(m, n) <= b->cap;
}

/* A store for the K patterns (components) of each of rows rows, of at most EMFAST_ML_MAX_M
 * missing coordinates, with room to spare for the partial batches; and always for the K of
 * one row whatever its m */
static inline ptrdiff_t emfast_ml_cap(int D, int K, int rows)
{
    const int mm = D < EMFAST_ML_MAX_M ? D : EMFAST_ML_MAX_M;
    return emfast_ml_room(D, K)
           + ((ptrdiff_t) rows * K + (EMFAST_ML_MAX_M + 1 + K) * EMFAST_ML_LANES)
             * emfast_ml_size(mm);
}

/* Doubles of scratch emfast_ml_add needs for patterns of up to D missing coordinates */
static inline int emfast_ml_scratch(int D) { return D * (D + 1) / 2 + 2 * D + 2; }

/* The factor of one pattern of m > EMFAST_ML_MAX_M missing into q (emfast_ml_size(m)
 * doubles), one lane; kept out of emfast_ml_add, whose every call would otherwise pay for
 * its frame */
__attribute__((noinline))
static int emfast_ml_factor_big(const double* lam, int D, const int* mis, int m, double* q,
                                double* scratch)
{
    emfast_ml1* f = (emfast_ml1*) scratch;
    emfast_ml1* v = f + m * (m + 1) / 2;
    emfast_ml1i* mv = (emfast_ml1i*) (v + m);
    for (int i = 0; i < m; i++) mv[i][0] = mis[i];
    return emfast_ml_factor_one(lam, (emfast_ml1i) {0}, D, mv, m, (emfast_ml1*) q, f, v);
}

/* The factor of lam (D, D) at mis (m): its record (read through the accessors above), whose
 * values are there by the time emfast_ml_flush returns; lam and mis must stay until then.
 * The store must have room for it (emfast_ml_fits). *fail = 1 when a block is not
 * numerically positive definite (this one or one of its batch). */
static double* emfast_ml_add(emfast_ml_batch* b, const double* lam, const int* mis, int m,
                             double* scratch, int* fail)
{
    if (m > EMFAST_ML_MAX_M) {      /* one lane: the record its own layout */
        double* q = b->store + b->used;
        b->used += emfast_ml_size(m);
        if (emfast_ml_factor_big(lam, b->D, mis, m, q, scratch) != 0) *fail = 1;
        return q;
    }
    const int l = b->n[m]++;
    if (l == 0) {                   /* a new batch: its records */
        b->out[m] = b->store + b->used;
        b->used += emfast_ml_room(m, 1);
    }
    b->lam[m][l] = lam;
    b->mis[m][l] = mis;
    if (l + 1 == EMFAST_ML_LANES && emfast_ml_run(b, m) != 0) *fail = 1;
    return b->out[m] + l;
}

/* The factors of every pattern still waiting; 0, or -1 when a block was not numerically
 * positive definite */
static int emfast_ml_flush(emfast_ml_batch* b, int fail)
{
    for (int m = 0; m <= EMFAST_ML_MAX_M; m++)
        if (b->n[m] > 0 && emfast_ml_run(b, m) != 0) fail = 1;
    return fail ? -1 : 0;
}

#endif /* EMFAST_MISSING_LANES_H */
