# The body of the Cython + OpenMP missing-value E-step, shared by the three extension modules
# built from it (see setup.py and emfast._config): _missing.pyx (baseline instruction set),
# _missing_avx2.pyx (-mavx2 -mfma, imported when the CPU has both) and _missing_avx512.pyx
# (AVX-512 F/DQ/VL, imported when the CPU has them). The design notes are the docstring of
# _missing.pyx.

include "_openmp.pxi"

from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.math cimport INFINITY, exp, isnan, log, sqrt
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy
from scipy.linalg.cython_blas cimport dgemm, dsyrk

cdef extern from "_missing_lanes.h":
    ctypedef struct emfast_ml_batch:
        pass
    double emfast_ml_dinv(const double* q, int m, int i) noexcept nogil
    double emfast_ml_logdet(const double* q, int m) noexcept nogil
    double emfast_ml_linv(const double* q, int m, int i, int j) noexcept nogil
    Py_ssize_t emfast_ml_cap(int D, int K, int rows) noexcept nogil
    int emfast_ml_scratch(int D) noexcept nogil
    void emfast_ml_reset(emfast_ml_batch* b, int D, double* store,
                         Py_ssize_t cap) noexcept nogil
    int emfast_ml_fits(const emfast_ml_batch* b, int m, int n) noexcept nogil
    double* emfast_ml_add(emfast_ml_batch* b, const double* lam, const int* mis, int m,
                          double* scratch, int* fail) noexcept nogil
    int emfast_ml_flush(emfast_ml_batch* b, int fail) noexcept nogil

cdef extern from *:
    """
    /* s[mis_i, mis_j] += w C[i, j] on the lower triangle of the (D, D) s: a run's conditional
       covariance (its lower triangle packed, _missing_lanes.h) into its second moments
       (inlined with m constant, as below) */
    static inline __attribute__((always_inline)) void emfast_add_cond_m(
        double* __restrict s, int D, const int* __restrict mis, const int m, double w,
        const double* __restrict C)
    {
        EMFAST_UNROLL for (int i = 0; i < m; i++) {
            double* __restrict row = s + mis[i] * D;
            EMFAST_UNROLL for (int j = 0; j <= i; j++)
                row[mis[j]] += w * C[EMFAST_ML_TRI(i, j) * EMFAST_ML_STRIDE(m)];
        }
    }

    /* A row's d_M = -C b with b = t[mis] (t: the row of Z Lambda), written into z[mis];
       returns d_M . b (inlined with m constant, as below) */
    static inline __attribute__((always_inline)) double emfast_fill_cond_m(
        const double* __restrict C, const int* __restrict mis, const int m,
        const double* __restrict t, double* __restrict z)
    {
        double q = 0.0;
        EMFAST_UNROLL for (int a = 0; a < m; a++) {
            double s = 0.0;
            EMFAST_UNROLL for (int c = 0; c < m; c++)     /* C symmetric, its lower half */
                s -= C[(a >= c ? EMFAST_ML_TRI(a, c) : EMFAST_ML_TRI(c, a)) * EMFAST_ML_STRIDE(m)]
                     * t[mis[c]];
            z[mis[a]] = s;
            q += s * t[mis[a]];
        }
        return q;
    }

    /* The bodies above for m = 0 .. 12 with m constant (the patterns of a few missing
       coordinates, most of them when D is a few tens), otherwise with m a variable. */
    #define EMFAST_BY_M(call, general)                                                      \
        switch (m) {                                                                        \
        case 0: call(0); break;   case 1: call(1); break;   case 2: call(2); break;         \
        case 3: call(3); break;   case 4: call(4); break;   case 5: call(5); break;         \
        case 6: call(6); break;   case 7: call(7); break;   case 8: call(8); break;         \
        case 9: call(9); break;   case 10: call(10); break; case 11: call(11); break;       \
        case 12: call(12); break; default: general;                                         \
        }

    #if defined(__GNUC__) && !defined(__clang__)
    __attribute__((optimize("no-tree-vectorize")))
    #endif
    static void emfast_add_cond(double* s, int D, const int* mis, int m, double w,
                                const double* C)
    {
        #define EMFAST_ADD(M) emfast_add_cond_m(s, D, mis, M, w, C)
        EMFAST_BY_M(EMFAST_ADD, EMFAST_ADD(m))
        #undef EMFAST_ADD
    }

    #if defined(__GNUC__) && !defined(__clang__)
    __attribute__((optimize("no-tree-vectorize")))
    #endif
    static double emfast_fill_cond(const double* C, const int* mis, int m, const double* t,
                                   double* z)
    {
        double q;
        #define EMFAST_FILL(M) q = emfast_fill_cond_m(C, mis, M, t, z)
        EMFAST_BY_M(EMFAST_FILL, EMFAST_FILL(m))
        #undef EMFAST_FILL
        return q;
    }

    /* The per-row loops with restrict pointers, so that they vectorise. */

    /* s1 += r z, then z *= sqrt(r): a row's first moments, and its share of Z'Z */
    static void emfast_weigh_row(double* __restrict z, int D, double r,
                                 double* __restrict s1)
    {
        const double sr = sqrt(r);
        for (int i = 0; i < D; i++) {
            s1[i] += r * z[i];
            z[i] *= sr;
        }
    }

    /* a . b in four independent sums (a fixed order: the same bits on every thread), the
       lanes of one vector (GCC does not vectorise four named scalar sums) */
    typedef double emfast_m4d __attribute__((vector_size(32), aligned(8), may_alias));
    static inline double emfast_dot(const double* __restrict a, const double* __restrict b,
                                    int n)
    {
        emfast_m4d s = {0.0, 0.0, 0.0, 0.0};
        int i = 0;
        for (; i + 4 <= n; i += 4) s += *(const emfast_m4d*) (a + i) * *(const emfast_m4d*) (b + i);
        for (; i < n; i++) s[0] += a[i] * b[i];
        return (s[0] + s[1]) + (s[2] + s[3]);
    }

    /* t[mis[a]] = lam[mis[a], :] . z for a < m, each sum as emfast_dot's, four rows of lam
       at a time: each load of z serves four sums */
    static void emfast_dots(const double* __restrict lam, int D, const int* __restrict mis,
                            int m, const double* __restrict z, double* __restrict t)
    {
        int a = 0;
        for (; a + 4 <= m; a += 4) {
            const double* __restrict r[4];
            emfast_m4d s[4];
            for (int c = 0; c < 4; c++) {
                r[c] = lam + mis[a + c] * D;
                s[c] = (emfast_m4d) {0.0, 0.0, 0.0, 0.0};
            }
            int i = 0;
            for (; i + 4 <= D; i += 4) {
                const emfast_m4d zi = *(const emfast_m4d*) (z + i);
                for (int c = 0; c < 4; c++) s[c] += *(const emfast_m4d*) (r[c] + i) * zi;
            }
            for (; i < D; i++)
                for (int c = 0; c < 4; c++) s[c][0] += r[c][i] * z[i];
            for (int c = 0; c < 4; c++)
                t[mis[a + c]] = (s[c][0] + s[c][1]) + (s[c][2] + s[c][3]);
        }
        for (; a < m; a++) t[mis[a]] = emfast_dot(lam + mis[a] * D, z, D);
    }

    /* The coordinates where x is NaN, ascending, into mis (D); returns their number. Four
       coordinates at a time where the build has AVX: their NaN mask picks their list from
       a table, written whole (to mis[m .. m + 4), m <= i: within the D) */
    #if defined(__AVX__)
    #include <immintrin.h>
    static const int emfast_nan_idx[16][4] __attribute__((aligned(16))) = {
        {0}, {0}, {1}, {0, 1}, {2}, {0, 2}, {1, 2}, {0, 1, 2}, {3}, {0, 3}, {1, 3},
        {0, 1, 3}, {2, 3}, {0, 2, 3}, {1, 2, 3}, {0, 1, 2, 3}};
    static inline int emfast_nan_put(int* mis, int m, int mask, int i)
    {
        _mm_storeu_si128((__m128i*) (mis + m),
                         _mm_add_epi32(_mm_load_si128((const __m128i*) emfast_nan_idx[mask]),
                                       _mm_set1_epi32(i)));
        return m + __builtin_popcount(mask);
    }
    #define EMFAST_NAN_MASK4_double(p) _mm256_movemask_pd(_mm256_cmp_pd( \
        _mm256_loadu_pd(p), _mm256_loadu_pd(p), _CMP_UNORD_Q))
    #define EMFAST_NAN_MASK4_float(p) _mm_movemask_ps(_mm_cmp_ps( \
        _mm_loadu_ps(p), _mm_loadu_ps(p), _CMP_UNORD_Q))
    #define EMFAST_NAN_LIST4(T) for (; i + 4 <= D; i += 4) \
        m = emfast_nan_put(mis, m, EMFAST_NAN_MASK4_##T(x + i), i);
    #else
    #define EMFAST_NAN_LIST4(T)
    #endif
    #define EMFAST_DEFINE_NAN_LIST(T)                                                       \
    static int emfast_nan_list_##T(const T* __restrict x, int D, int* __restrict mis)      \
    {                                                                                      \
        int m = 0, i = 0;                                                                  \
        EMFAST_NAN_LIST4(T)                                                                \
        for (; i < D; i++) {   /* without a branch: random patterns defeat its prediction */ \
            mis[m] = i;                                                                    \
            m += x[i] != x[i];                                                             \
        }                                                                                  \
        return m;                                                                          \
    }
    EMFAST_DEFINE_NAN_LIST(float)
    EMFAST_DEFINE_NAN_LIST(double)

    /* 1 when x and y are NaN at the same coordinates: all D compared, four at a time,
       without a branch (random patterns defeat its prediction) */
    typedef float emfast_m4f __attribute__((vector_size(16), aligned(4), may_alias));
    #define EMFAST_DEFINE_SAME_NANS(T, VT)                                                  \
    static int emfast_same_nans_##T(const T* __restrict x, const T* __restrict y, int D)   \
    {                                                                                      \
        __typeof__((VT) {0} != (VT) {0}) diff = (VT) {0} != (VT) {0};   /* all false */     \
        int i = 0, rest = 0;                                                               \
        for (; i + 4 <= D; i += 4) {                                                       \
            const VT a = *(const VT*) (x + i), b = *(const VT*) (y + i);                   \
            diff |= (a != a) ^ (b != b);                                                   \
        }                                                                                  \
        for (; i < D; i++) rest |= (x[i] != x[i]) ^ (y[i] != y[i]);                        \
        return ((diff[0] | diff[1] | diff[2] | diff[3]) == 0) & (rest == 0);               \
    }
    EMFAST_DEFINE_SAME_NANS(float, emfast_m4f)
    EMFAST_DEFINE_SAME_NANS(double, emfast_m4d)

    /* s2 += sb on the lower triangle of the (D, D) s2; returns tr(lam sb) with lam
       symmetric and sb's lower triangle standing for the whole of sb (symmetric) */
    static double emfast_add_trace(const double* __restrict lam,
                                   const double* __restrict sb, int D, double* __restrict s2)
    {
        double tr = 0.0;
        for (int i = 0; i < D; i++) {
            double off = 0.0;
            for (int j = 0; j < i; j++) {
                s2[i * D + j] += sb[i * D + j];
                off += lam[i * D + j] * sb[i * D + j];
            }
            s2[i * D + i] += sb[i * D + i];
            tr += lam[i * D + i] * sb[i * D + i] + 2.0 * off;
        }
        return tr;
    }

    /* z = x - mu, with 0 where x is NaN (missing) */
    #define EMFAST_DEFINE_CENTRE(T)                                                         \
    static void emfast_centre_##T(const T* __restrict x, const double* __restrict mu,      \
                                  int D, double* __restrict z)                             \
    {                                                                                      \
        for (int i = 0; i < D; i++) {                                                      \
            const double v = (double) x[i];                                                \
            z[i] = v != v ? 0.0 : v - mu[i];                                               \
        }                                                                                  \
    }
    EMFAST_DEFINE_CENTRE(float)
    EMFAST_DEFINE_CENTRE(double)
    """
    void emfast_add_cond(double* s, int D, const int* mis, int m, double w,
                         const double* C) noexcept nogil
    double emfast_fill_cond(const double* C, const int* mis, int m, const double* t,
                            double* z) noexcept nogil
    void emfast_weigh_row(double* z, int D, double r, double* s1) noexcept nogil
    double emfast_dot(const double* a, const double* b, int n) noexcept nogil
    void emfast_dots(const double* lam, int D, const int* mis, int m, const double* z,
                     double* t) noexcept nogil
    int emfast_nan_list_float(const float* x, int D, int* mis) noexcept nogil
    int emfast_nan_list_double(const double* x, int D, int* mis) noexcept nogil
    int emfast_same_nans_float(const float* x, const float* y, int D) noexcept nogil
    int emfast_same_nans_double(const double* x, const double* y, int D) noexcept nogil
    double emfast_add_trace(const double* lam, const double* sb, int D,
                            double* s2) noexcept nogil
    void emfast_centre_float(const float* x, const double* mu, int D, double* z) noexcept nogil
    void emfast_centre_double(const double* x, const double* mu, int D,
                              double* z) noexcept nogil

include "_gaussian_simd.pxi"

cdef extern from "_missing_subspace.h":
    int emfast_m_subspace(const double* lam, int D, const int* obs, int o, const int* mis,
                          int m, double* linv, double* C, double* R, double* U,
                          double* logdet, double* tmp) noexcept nogil
    void emfast_m_scatter(int D, const int* obs, int o, const int* mis, int m,
                          const double* R, const double* C, double nk, const double* t1,
                          double* t2, double* V, double* s1, double* s2) noexcept nogil

import numpy as np

from emfast._layout import MISSING_RUN_MIN, missing_block_rows, n_groups

cdef double LOG_2PI = 1.8378770664093453
# Rows per segment of the per-row path, whose patterns' factors are computed together (in
# SIMD lanes): enough for most lanes of a batch to be filled when a few tens of coordinates
# spread the patterns over many m, few enough for their records to stay in cache
cdef int SEG_ROWS = 256


ctypedef struct Model:
    int D, K
    const double* logw      # (K,) log mixing weights
    const double* mu        # (K, D) means
    const double* prec      # (K, D, D) precision matrices
    const double* logdet    # (K,) log det of each precision matrix


ctypedef struct Pattern:    # the missing pattern of the current run of rows, per thread
    int valid               # 0 until the first row is seen
    int m, o                # numbers of missing and observed coordinates
    Py_ssize_t row          # a row of the pattern (its NaNs are the pattern)
    const int* mis          # (m,) the missing coordinates, ascending (in Work.smis)
    const double** q        # (K,) each component's factor of Lambda_k,MM and conditional
                            # covariance (records of _missing_lanes.h; in Work.store)
    double* logc            # (K,) log w_k - (o log 2 pi - log det Lambda_k + log det L L')/2
    double* runw            # (K,) sum of w r of the run's rows so far


ctypedef struct Subspace:   # a long run's model in its observed subspace, per thread
    int m, o
    int* mis                # (m,) the missing coordinates, ascending
    int* obs                # (o,) the observed ones, ascending
    double* mu              # (K, o) the means at O
    double* logc            # (K,) log w_k - (o log 2 pi - log det P_k) / 2
    double* U               # (K, o, o) upper factors, U U' = P_k = Sigma_k,OO^-1
    double* R               # (K, m, o) the regressions d_M = R d_O
    double* C               # (K, m, m) Lambda_k,MM^-1, the conditional covariances
    double* linv            # (K, m, m) L^-1 with L L' = Lambda_k,MM (noise draws)
    double* tmp             # (D, D) scratch
    double* st              # the run's sums at O: nk (K), t1 (K, o), t2 (K, o, o)
    double* xT              # (D, LD) a block of the run transposed, all D coordinates
    double* mem             # the complete-data block scratch behind g
    emfast_gmodel gm        # the model in the subspace: o features, factors U
    emfast_gwork g


ctypedef struct Work:
    Pattern p
    Subspace* s             # the long runs' path (_run)
    double* z               # (K, B, D) centred rows; then filled, then scaled by sqrt(w r)
    double* t               # (K, B, D) Z_k Lambda_k
    double* lp              # (B, K) log(pi_k p_k(x_O)), then responsibilities
    double* sb              # (D, D) a block's Z'Z (_block_k1)
    # The patterns of a segment of rows (_factor_rows), factored together in SIMD lanes, in
    # slots taken in row order (_pattern_of)
    emfast_ml_batch batch
    int* smis               # (SEG_ROWS, D) each slot's missing coordinates
    int* sm                 # (SEG_ROWS,) its number of them
    const double** sq       # (SEG_ROWS, K) its records (of each component) in store
    double* store           # (cap,) the records
    Py_ssize_t cap
    double* scratch         # emfast_ml_scratch(D) doubles for emfast_ml_add
    Py_ssize_t seg0         # the segment's first row
    int slot                # the next slot to take


cdef Work* _work_alloc(int D, int K, int B) noexcept nogil:
    cdef Work* W = <Work*> malloc(sizeof(Work))
    if W == NULL:
        return NULL
    W.p.logc = <double*> malloc(K * sizeof(double))
    W.p.runw = <double*> malloc(K * sizeof(double))
    W.z = <double*> malloc(K * B * D * sizeof(double))
    W.t = <double*> malloc(K * B * D * sizeof(double))
    W.lp = <double*> malloc(B * K * sizeof(double))
    W.sb = <double*> malloc(D * D * sizeof(double))
    W.smis = <int*> malloc(SEG_ROWS * D * sizeof(int))
    W.sm = <int*> malloc(SEG_ROWS * sizeof(int))
    W.sq = <const double**> malloc(SEG_ROWS * K * sizeof(double*))
    W.cap = emfast_ml_cap(D, K, SEG_ROWS)   # (a segment ends early when its records won't fit)
    W.store = <double*> malloc(W.cap * sizeof(double))
    W.scratch = <double*> malloc(emfast_ml_scratch(D) * sizeof(double))
    W.p.valid = 0
    W.s = _subspace_alloc(D, K)
    if (W.p.logc == NULL or W.p.runw == NULL
            or W.z == NULL or W.t == NULL or W.lp == NULL or W.sb == NULL
            or W.smis == NULL or W.sm == NULL or W.sq == NULL or W.store == NULL
            or W.scratch == NULL or W.s == NULL):
        _work_free(W)
        return NULL
    return W


cdef void _work_free(Work* W) noexcept nogil:
    if W != NULL:
        free(W.p.logc); free(W.p.runw)
        free(W.z); free(W.t); free(W.lp); free(W.sb)
        free(W.smis); free(W.sm); free(W.sq); free(W.store); free(W.scratch)
        _subspace_free(W.s)
        free(W)


cdef Subspace* _subspace_alloc(int D, int K) noexcept nogil:
    cdef Subspace* S = <Subspace*> calloc(1, sizeof(Subspace))
    if S == NULL:
        return NULL
    S.gm.cov, S.gm.D, S.gm.K = 0, D, K     # the largest subspace sizes the block scratch
    S.mis = <int*> malloc(D * sizeof(int))
    S.obs = <int*> malloc(D * sizeof(int))
    S.mu = <double*> malloc(K * D * sizeof(double))
    S.logc = <double*> malloc(K * sizeof(double))
    S.U = <double*> malloc(K * D * D * sizeof(double))
    S.R = <double*> malloc(K * D * D * sizeof(double))
    S.C = <double*> malloc(K * D * D * sizeof(double))
    S.linv = <double*> malloc(K * D * D * sizeof(double))
    S.tmp = <double*> malloc(D * D * sizeof(double))
    S.st = <double*> malloc((K + K * D + K * D * D) * sizeof(double))
    S.xT = <double*> malloc(D * LD * sizeof(double))
    S.mem = <double*> malloc(emfast_g_work_size(&S.gm) * sizeof(double))
    if (S.mis == NULL or S.obs == NULL or S.mu == NULL or S.logc == NULL or S.U == NULL
            or S.R == NULL or S.C == NULL or S.linv == NULL or S.tmp == NULL or S.st == NULL
            or S.xT == NULL or S.mem == NULL):
        _subspace_free(S)
        return NULL
    return S


cdef void _subspace_free(Subspace* S) noexcept nogil:
    if S != NULL:
        free(S.mis); free(S.obs); free(S.mu); free(S.logc); free(S.U); free(S.R); free(S.C)
        free(S.linv); free(S.tmp); free(S.st); free(S.xT); free(S.mem)
        free(S)


cdef inline int _missing_list(const floating* x, int D, int* mis) noexcept nogil:
    """The coordinates where x is NaN, ascending, into mis (D); returns their number."""
    if floating is float:
        return emfast_nan_list_float(x, D, mis)
    else:
        return emfast_nan_list_double(x, D, mis)


cdef Py_ssize_t _factor_rows(const Model* M, Work* W, const floating* X,
                             const unsigned char* chg, Py_ssize_t n, Py_ssize_t end,
                             double* s2) noexcept nogil:
    """A segment of the rows n .. end: the factors of its patterns (the first row's, and each
    changed row's, see _mark), each component's, into W's slots in row order. Returns the
    segment's end (at most SEG_ROWS rows, fewer when the records fill W.store), or -1 when a
    factor fails. The run the rows before n were in ends into s2 first (its records are
    overwritten) unless row n continues it, whose pattern is factored again."""
    cdef int D = M.D, K = M.K, m, k, ns = 0, fail = 0
    cdef Py_ssize_t e = n
    cdef int* mis
    if chg[n]:
        _end_run(M, &W.p, s2)
    emfast_ml_reset(&W.batch, D, W.store, W.cap)
    W.seg0, W.slot = n, 0
    while e < end and e - n < SEG_ROWS:
        if e == n or chg[e]:
            mis = W.smis + ns * D
            m = _missing_list(X + e * D, D, mis)
            if not emfast_ml_fits(&W.batch, m, K):
                break
            W.sm[ns] = m
            for k in range(K):
                W.sq[ns * K + k] = emfast_ml_add(&W.batch, M.prec + k * D * D, mis, m,
                                                 W.scratch, &fail)
            ns += 1
        e += 1
    if emfast_ml_flush(&W.batch, fail) != 0:
        return -1
    return e


cdef void _end_run(const Model* M, Pattern* P, double* s2) noexcept nogil:
    """Add each component's conditional covariance, weighted by the run's sum of w r, to the
    missing block of its second moments s2 (K, D, D; lower triangle); P is then empty."""
    cdef int D = M.D, m = P.m, k
    if not P.valid:
        return
    for k in range(M.K):
        emfast_add_cond(s2 + k * D * D, D, P.mis, m, P.runw[k], P.q[k])
    P.valid = 0


cdef inline int _same_pattern(const floating* x, const floating* y, int D) noexcept nogil:
    """1 when x and y are NaN at the same coordinates."""
    if floating is float:
        return emfast_same_nans_float(x, y, D)
    else:
        return emfast_same_nans_double(x, y, D)


cdef void _mark(const floating* X, int D, Py_ssize_t n0, Py_ssize_t n1,
                unsigned char* chg) noexcept nogil:
    """chg[n] = 1 where row n's missing pattern is not row n-1's, for the rows n0 .. n1 (1 at
    n0): each row compared once, for both the run detection and the per-row path's
    patterns."""
    cdef Py_ssize_t n
    if n0 < n1:
        chg[n0] = 1
    for n in range(n0 + 1, n1):
        chg[n] = not _same_pattern(X + n * D, X + (n - 1) * D, D)


cdef void _centre_rows(const Model* M, Work* W, const floating* X, Py_ssize_t n0,
                       int B) noexcept nogil:
    """Z_k = the rows n0 .. n0+B centred on mu_k, zeros where missing, into W.z (K, B, D)."""
    cdef int D = M.D, b, k
    for k in range(M.K):
        for b in range(B):
            if floating is float:
                emfast_centre_float(X + (n0 + b) * D, M.mu + k * D, D, W.z + (k * B + b) * D)
            else:
                emfast_centre_double(X + (n0 + b) * D, M.mu + k * D, D, W.z + (k * B + b) * D)


cdef void _pattern_of(const Model* M, Work* W, Py_ssize_t n, unsigned char changed,
                      double* s2) noexcept nogil:
    """P for the row n of the segment _factor_rows factored: kept unless changed (its pattern
    is not the one P holds, see _mark), else the run so far ended into s2 and a new one
    begun; the pattern's records from the next slot at every change and at the segment's
    first row."""
    cdef Pattern* P = &W.p
    cdef int m, k
    if changed:
        _end_run(M, P, s2)
        P.row = n
        for k in range(M.K):
            P.runw[k] = 0.0
    elif n != W.seg0:
        return
    m = W.sm[W.slot]
    P.m, P.o, P.mis, P.q = m, M.D - m, W.smis + W.slot * M.D, W.sq + W.slot * M.K
    W.slot += 1
    for k in range(M.K):
        P.logc[k] = M.logw[k] - 0.5 * (P.o * LOG_2PI - M.logdet[k]
                                       + emfast_ml_logdet(P.q[k], m))
    P.valid = 1


cdef int _block(const Model* M, Work* W, const floating* X, const unsigned char* chg,
                const double* sw, const double* noise, Py_ssize_t n0, int B, double* st,
                double* filled, double* logp, double* resp) noexcept nogil:
    """Rows n0 .. n0+B into the group buffer st = (loglik, nk (K), s1 (K, D), s2 (K, D, D));
    chg (see _mark) says which rows change the pattern. Returns -1 when a pattern's factor
    fails."""
    cdef int D = M.D, K = M.K, b, k
    cdef Pattern* P = &W.p
    cdef const floating* x
    cdef double* zb
    cdef double* lp
    cdef double* nk = st + 1
    cdef double* s1 = st + 1 + K
    cdef double* s2 = st + 1 + K + K * D
    cdef double q, mx, tot, w, r, v, one = 1.0, zero = 0.0
    cdef double* tb
    cdef Py_ssize_t seg = n0        # the end of the rows whose patterns are factored
    cdef char* tr = b"N"
    cdef char* up = b"U"
    if K == 1 and logp == NULL and resp == NULL:
        return _block_k1(M, W, X, chg, sw, noise, n0, B, st, filled)
    _centre_rows(M, W, X, n0, B)
    # T_k = Z_k Lambda_k: row b holds Lambda_OO d_O at O and b = Lambda_MO d_O at M (d is
    # zero where missing); Lambda_k is symmetric, so row-major and column-major agree.
    for k in range(K):
        dgemm(tr, tr, &D, &B, &D, &one, M.prec + k * D * D, &D, W.z + k * B * D, &D, &zero,
              W.t + k * B * D, &D)
    for b in range(B):
        x = X + (n0 + b) * D
        if n0 + b == seg:
            seg = _factor_rows(M, W, X, chg, n0 + b, n0 + B, s2)
            if seg < 0:
                return -1
        _pattern_of(M, W, n0 + b, chg[n0 + b], s2)
        lp = W.lp + b * K
        for k in range(K):
            zb = W.z + (k * B + b) * D
            tb = W.t + (k * B + b) * D
            q = emfast_dot(zb, tb, D)
            # z[M] = d_M = -C b with b = t[M] = Lambda_MO d_O; d_M . b turns
            # d_O' Lambda_OO d_O into d_O' Sigma_OO^-1 d_O
            q += emfast_fill_cond(P.q[k], P.mis, P.m, tb, zb)
            lp[k] = P.logc[k] - 0.5 * q
        if K == 1:              # one component: its responsibility is 1
            v = lp[0]
            lp[0] = 1.0
        else:
            mx = -INFINITY
            for k in range(K):
                if lp[k] > mx:
                    mx = lp[k]
            tot = 0.0
            for k in range(K):
                lp[k] = exp(lp[k] - mx)
                tot += lp[k]
            v = mx + log(tot)
            for k in range(K):
                lp[k] = lp[k] / tot
        w = 1.0 if sw == NULL else sw[n0 + b]
        st[0] += w * v
        if logp != NULL:
            logp[n0 + b] = v
        if resp != NULL:
            for k in range(K):
                resp[(n0 + b) * K + k] = lp[k]
        if filled != NULL:
            _fill_row(M, P, W, x, noise, n0 + b, b, B, filled + (n0 + b) * D)
        for k in range(K):
            r = w * lp[k]
            nk[k] += r
            P.runw[k] += r
            emfast_weigh_row(W.z + (k * B + b) * D, D, r, s1 + k * D)
    for k in range(K):
        dsyrk(up, tr, &D, &B, &one, W.z + k * B * D, &D, &one, s2 + k * D * D, &D)
    return 0


cdef int _block_k1(const Model* M, Work* W, const floating* X, const unsigned char* chg,
                   const double* sw, const double* noise, Py_ssize_t n0, int B, double* st,
                   double* filled) noexcept nogil:
    """_block for one component when no per-row log-density is wanted (logp, resp not
    asked for): the responsibilities are all 1 and only the block's sum of
    w (logc - maha / 2) counts. With d the filled residual (d_O, d_M = -C b, b = Lambda_MO d_O),
    a row's Mahalanobis distance d_O' Sigma_OO^-1 d_O is d' Lambda d, so the block's weighted
    sum is tr(Lambda S) with S = sum w d d' -- the product dsyrk forms anyway. Per row that
    leaves b (m dot products with rows of Lambda, in place of the row of Z Lambda) and d_M."""
    cdef int D = M.D, b
    cdef Pattern* P = &W.p
    cdef const floating* x
    cdef double* zb
    cdef double* tb = W.t           # b at the missing coordinates of the row's own D slots
    cdef double* s2 = st + 2 + D
    cdef double w, lc = 0.0, one = 1.0, zero = 0.0
    cdef Py_ssize_t seg = n0        # the end of the rows whose patterns are factored
    cdef char* tr = b"N"
    cdef char* up = b"U"
    _centre_rows(M, W, X, n0, B)
    for b in range(B):
        x = X + (n0 + b) * D
        if n0 + b == seg:
            seg = _factor_rows(M, W, X, chg, n0 + b, n0 + B, s2)
            if seg < 0:
                return -1
        _pattern_of(M, W, n0 + b, chg[n0 + b], s2)
        zb = W.z + b * D
        # d is zero at M: the whole rows of Lambda, contiguous
        emfast_dots(M.prec, D, P.mis, P.m, zb, tb)
        emfast_fill_cond(P.q[0], P.mis, P.m, tb, zb)
        w = 1.0 if sw == NULL else sw[n0 + b]
        lc += w * P.logc[0]
        W.lp[b] = 1.0               # the responsibility, for _fill_row
        if filled != NULL:
            _fill_row(M, P, W, x, noise, n0 + b, b, B, filled + (n0 + b) * D)
        st[1] += w
        P.runw[0] += w
        emfast_weigh_row(zb, D, w, st + 2)
    dsyrk(up, tr, &D, &B, &one, W.z, &D, &zero, W.sb, &D)
    st[0] += lc - 0.5 * emfast_add_trace(M.prec, W.sb, D, s2)
    return 0


cdef void _fill_row(const Model* M, Pattern* P, Work* W, const floating* x,
                    const double* noise, Py_ssize_t n, int b, int B,
                    double* out) noexcept nogil:
    """out = x with its missing coordinates replaced by sum_k r_k (mu_k + d_k) -- or, with
    noise (K = 1), by a draw mu + d + L'^-1 z_M from the conditional distribution."""
    cdef int D = M.D, m = P.m, a, c, k, i
    cdef double s
    for i in range(D):
        out[i] = x[i]
    for a in range(m):
        i = P.mis[a]
        s = 0.0
        for k in range(M.K):
            s += W.lp[b * M.K + k] * (M.mu[k * D + i] + W.z[(k * B + b) * D + i])
        out[i] = s
    if noise != NULL:
        for a in range(m):      # (L^-1)' D^-1/2 z_M, whose covariance is Lambda_MM^-1
            s = 0.0
            for c in range(a, m):
                s += (emfast_ml_linv(P.q[0], m, c, a) * sqrt(emfast_ml_dinv(P.q[0], m, c))
                      * noise[n * D + P.mis[c]])
            out[P.mis[a]] += s


# ---------------------------------------------------------------------------------------
# The subspace path: a long run of one pattern as complete-data blocks in its observed
# coordinates (_gaussian_simd.h), mapped back to all D coordinates once per run
# (_missing_subspace.h). Per row it costs what a complete-data row of o features costs; per
# run, K factorisations of o x o and m x m blocks.

# Runs of at least this many rows take the subspace path (the rule both backends share)
cdef Py_ssize_t RUN_MIN = MISSING_RUN_MIN


cdef int _subspace_setup(const Model* M, Subspace* S, const floating* x) noexcept nogil:
    """S's model and zeroed sums for the missing pattern of the row x (at least one
    coordinate observed). Returns -1 when a factor fails."""
    cdef int D = M.D, K = M.K, m = 0, o = 0, i, k
    cdef double logdet
    for i in range(D):
        if isnan(x[i]):
            S.mis[m] = i
            m += 1
        else:
            S.obs[o] = i
            o += 1
    S.m, S.o = m, o
    for k in range(K):
        if emfast_m_subspace(M.prec + k * D * D, D, S.obs, o, S.mis, m, S.linv + k * m * m,
                             S.C + k * m * m, S.R + k * m * o, S.U + k * o * o, &logdet,
                             S.tmp) != 0:
            return -1
        S.logc[k] = M.logw[k] - 0.5 * (o * LOG_2PI - logdet)
        for i in range(o):
            S.mu[k * o + i] = M.mu[k * D + S.obs[i]]
    S.gm.D = o
    S.gm.log_const, S.gm.means, S.gm.U = S.logc, S.mu, S.U
    emfast_g_work_init(&S.g, S.mem, &S.gm)
    for i in range(K + K * o + K * o * o):
        S.st[i] = 0.0
    return 0


cdef void _subspace_fill(const Model* M, const Subspace* S, const floating* x,
                         const double* noise, Py_ssize_t n, int b, double* out) noexcept nogil:
    """_fill_row for row b of the subspace block: the missing coordinates from
    sum_k r_k (mu_k,M + R_k d_k,O), or (noise, K = 1) a draw mu_M + R d_O + L^-T z_M."""
    cdef int D = M.D, K = M.K, m = S.m, o = S.o, a, c, k, p, i
    cdef const double* xo = S.g.xT + b      # the row's observed values, LD apart
    cdef const double* Rk
    cdef double r, v
    for i in range(D):
        out[i] = x[i]
    for a in range(m):
        out[S.mis[a]] = 0.0
    for k in range(K):
        r = S.g.lp[k * LD + b]
        Rk = S.R + k * m * o
        for a in range(m):
            v = M.mu[k * D + S.mis[a]]
            for p in range(o):
                v += Rk[a * o + p] * (xo[p * LD] - S.mu[k * o + p])
            out[S.mis[a]] += r * v
    if noise != NULL:
        for a in range(m):
            v = 0.0
            for c in range(a, m):
                v += S.linv[c * m + a] * noise[n * D + S.mis[c]]
            out[S.mis[a]] += v


cdef void _subspace_block(const Model* M, Subspace* S, const floating* X, const double* sw,
                          const double* noise, Py_ssize_t n0, int cnt, double* st,
                          double* filled, double* logp, double* resp) noexcept nogil:
    """Rows n0 .. n0+cnt of a run (cnt <= EMFAST_GBLOCK): their weighted log-likelihood into
    st[0], their per-row outputs, their sums at O into S.st."""
    cdef int D = M.D, K = M.K, o = S.o, mp = _padded(cnt), i, k, b
    cdef double* xT = S.g.xT
    cdef double* lp = S.g.lp
    cdef double* w = S.g.w
    if floating is float:
        emfast_g_load_T_float(X + n0 * D, D, cnt, S.xT)
    else:
        emfast_g_load_T_double(X + n0 * D, D, cnt, S.xT)
    for i in range(o):                      # the observed coordinates, zero padding rows
        memcpy(xT + i * LD, S.xT + S.obs[i] * LD, cnt * sizeof(double))
        for b in range(cnt, mp):
            xT[i * LD + b] = 0.0
    for b in range(mp):
        w[b] = 0.0 if b >= cnt else 1.0 if sw == NULL else sw[n0 + b]
    emfast_g_log_prob(&S.gm, &S.g, mp)
    emfast_g_resp(K, mp, lp, NULL, S.g.norm, 1)    # lp: responsibilities, norm: log p(x_O)
    for b in range(cnt):
        st[0] += w[b] * S.g.norm[b]
        if logp != NULL:
            logp[n0 + b] = S.g.norm[b]
        if resp != NULL:
            for k in range(K):
                resp[(n0 + b) * K + k] = lp[k * LD + b]
        if filled != NULL:
            _subspace_fill(M, S, X + (n0 + b) * D, noise, n0 + b, b, filled + (n0 + b) * D)
    for k in range(K):                      # w r; 0 on the padding rows
        for b in range(mp):
            lp[k * LD + b] *= w[b]
    emfast_g_stats(&S.gm, &S.g, mp, lp, NULL, S.st, S.st + K, S.st + K + K * o)


cdef int _run(const Model* M, Subspace* S, const floating* X, const double* sw,
              const double* noise, Py_ssize_t n0, Py_ssize_t n1, double* st, double* filled,
              double* logp, double* resp) noexcept nogil:
    """Rows n0 .. n1, all of one missing pattern with at least one coordinate observed, into
    the group buffer st by the subspace path. Returns -1 when a factor fails."""
    cdef int D = M.D, K = M.K, m, o, k
    cdef Py_ssize_t n
    if _subspace_setup(M, S, X + n0 * D) != 0:
        return -1
    n = n0
    while n < n1:
        _subspace_block(M, S, X, sw, noise, n, <int> min(<Py_ssize_t> EMFAST_GBLOCK, n1 - n),
                        st, filled, logp, resp)
        n += EMFAST_GBLOCK
    m, o = S.m, S.o
    for k in range(K):
        st[1 + k] += S.st[k]
        emfast_m_scatter(D, S.obs, o, S.mis, m, S.R + k * m * o, S.C + k * m * m, S.st[k],
                         S.st + K + k * o, S.st + K + K * o + k * o * o, S.tmp,
                         st + 1 + K + k * D, st + 1 + K + K * D + k * D * D)
    return 0


cdef Py_ssize_t _run_end(const unsigned char* chg, Py_ssize_t n, Py_ssize_t end) noexcept nogil:
    """The first row after n (end if none before it) whose missing pattern is not row n's."""
    cdef Py_ssize_t e
    for e in range(n + 1, end):
        if chg[e]:
            return e
    return end


cdef int _any_observed(const floating* x, int D) noexcept nogil:
    cdef int i
    for i in range(D):
        if not isnan(x[i]):
            return 1
    return 0


cdef int _rows(const Model* M, Work* W, const floating* X, unsigned char* chg,
               const double* sw, const double* noise, Py_ssize_t n0, Py_ssize_t n1, int B,
               double* st, double* filled, double* logp, double* resp) noexcept nogil:
    """Rows n0 .. n1 by the per-row path, in blocks of at most B rows. Past n0, P holds the
    previous row's pattern, so chg says when it changes; n0 may follow a long run (or start
    the group), so its flag becomes whether it differs from the pattern P holds."""
    if n0 < n1:
        chg[n0] = not (W.p.valid and _same_pattern(X + n0 * M.D, X + W.p.row * M.D, M.D))
    while n0 < n1:
        if _block(M, W, X, chg, sw, noise, n0, <int> min(<Py_ssize_t> B, n1 - n0), st,
                  filled, logp, resp) != 0:
            return -1
        n0 += B
    return 0


cdef int _group(const Model* M, Work* W, const floating* X, unsigned char* chg,
                const double* sw, const double* noise, Py_ssize_t N, int B, Py_ssize_t blk0,
                Py_ssize_t blk1, double* st, double* filled, double* logp,
                double* resp) noexcept nogil:
    """Blocks blk0 .. blk1 in order into st: runs of one pattern of at least RUN_MIN rows
    (with something observed) by the subspace path, the rows between them by the per-row
    path; the last run of a pattern there ends with the group. chg: the group's rows'
    flags (scratch, see _mark)."""
    cdef Py_ssize_t n = blk0 * B, end = min(blk1 * B, N), start = n, e
    W.p.valid = 0
    _mark(X, M.D, n, end, chg)
    while n < end:
        e = _run_end(chg, n, end)
        if e - n >= RUN_MIN and _any_observed(X + n * M.D, M.D):
            if (_rows(M, W, X, chg, sw, noise, start, n, B, st, filled, logp, resp) != 0
                    or _run(M, W.s, X, sw, noise, n, e, st, filled, logp, resp) != 0):
                return -1
            start = e
        n = e
    if _rows(M, W, X, chg, sw, noise, start, end, B, st, filled, logp, resp) != 0:
        return -1
    _end_run(M, &W.p, st + 1 + M.K + M.K * M.D)
    return 0


def missing_estep(
    const floating[:, ::1] X,            # IN  (N, D) float32 or float64; NaN = missing
    const double[::1] sample_weight,     # IN  (N,), or (0,): all weights 1
    const double[::1] log_weights,       # IN  (K,) log mixing weights
    const double[:, ::1] means,          # IN  (K, D)
    const double[:, :, ::1] precisions,  # IN  (K, D, D) symmetric positive definite
    const double[::1] log_det,           # IN  (K,) log det of each precision matrix
    double[::1] nk,                      # OUT (K,) sum of w r
    double[:, ::1] s1,                   # OUT (K, D) sum of w r (xhat_k - mu_k)
    double[:, :, ::1] s2,                # OUT (K, D, D) sum of w r ((xhat-mu)(xhat-mu)' + C_k)
    double[:, ::1] filled,               # OUT (N, D), or (0, 0): X with missing values filled
    double[::1] logp,                    # OUT (N,), or (0,): log p(x_O) of each row
    double[:, ::1] resp,                 # OUT (N, K), or (0, 0): responsibilities
    const double[:, ::1] noise,          # IN  (N, D), or (0, 0): N(0, 1) draws (K = 1 only)
    int n_threads,                       # IN  OpenMP threads
):
    """One pass over X; returns sum_n w_n log p(x_O,n). See emfast.kernels.missing_estep."""
    cdef Py_ssize_t N = X.shape[0]
    cdef int D = X.shape[1], K = means.shape[0]
    cdef int B = missing_block_rows(D, K)
    cdef Py_ssize_t n_blocks = (N + B - 1) // B, g, k, i, j
    cdef Py_ssize_t size = 1 + K + K * D + K * D * D
    cdef Py_ssize_t G = n_groups(n_blocks, size)
    # a cache line (8 doubles) between the groups' slots: adjacent groups run at once on
    # different threads, and each writes its slot's head (loglik, nk, s1) at every row
    cdef double[:, ::1] st = np.zeros((G, size + 8))
    cdef double[::1] tot = np.zeros(size)
    cdef unsigned char[::1] chg = np.empty(N, np.uint8)   # each group's rows' flags (_mark)
    cdef int failed = 0
    cdef Work* W = NULL
    cdef Model M
    M.D, M.K = D, K
    M.logw, M.mu, M.prec, M.logdet = &log_weights[0], &means[0, 0], &precisions[0, 0, 0], \
        &log_det[0]
    cdef const double* sw = &sample_weight[0] if sample_weight.shape[0] > 0 else NULL
    cdef const double* nz = &noise[0, 0] if noise.shape[0] > 0 else NULL
    cdef double* fp = &filled[0, 0] if filled.shape[0] > 0 else NULL
    cdef double* lq = &logp[0] if logp.shape[0] > 0 else NULL
    cdef double* rq = &resp[0, 0] if resp.shape[0] > 0 else NULL
    if N > 0:
        with nogil, parallel(num_threads=n_threads):
            W = _work_alloc(D, K, B)
            for g in prange(G, schedule="dynamic"):
                if W == NULL:
                    failed = 1
                elif _group(&M, W, &X[0, 0], &chg[0], sw, nz, N, B, g * n_blocks // G,
                            (g + 1) * n_blocks // G, &st[g, 0], fp, lq, rq) != 0:
                    failed = 2
            _work_free(W)
    if failed == 1:
        raise MemoryError("emfast: no memory for the missing-value kernel's scratch")
    if failed == 2:
        raise np.linalg.LinAlgError(
            "a block of a precision matrix is not numerically positive definite")
    for g in range(G):
        for i in range(size):
            tot[i] += st[g, i]
    for k in range(K):
        nk[k] = tot[1 + k]
        for i in range(D):
            s1[k, i] = tot[1 + K + k * D + i]
            for j in range(i + 1):
                s2[k, i, j] = tot[1 + K + K * D + (k * D + i) * D + j]
                s2[k, j, i] = s2[k, i, j]
    return tot[0]
