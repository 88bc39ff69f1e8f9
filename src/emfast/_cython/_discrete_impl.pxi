# The body of the Cython + OpenMP discrete-data kernels, shared by the two extension modules
# built from it (see setup.py and emfast._config): _discrete.pyx (baseline instruction set) and
# _discrete_avx2.pyx (-mavx2 -mfma, imported when the CPU has both). The design notes are the
# docstring of _discrete.pyx.

include "_openmp.pxi"

from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.math cimport INFINITY
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

import numpy as np

from emfast._layout import n_groups

cdef extern from "_fastexp.h":
    double emfast_exp_nonpos(double x) noexcept nogil

cdef extern from *:
    """
    /* log(s) for s >= 1 (the row sums of the log-sum-exp), inline and branch-free: a
     * tenth of the Poisson E-step went to libm's log. s = 2^e m, m in [1, 2), halved above
     * sqrt 2 (e + 1); log m = 2 atanh((m - 1) / (m + 1)) by _fastexp.h's series. The
     * scalar twin of _gaussian_simd.h's gv_log_ge1 (relative error < 3e-16). */
    static inline double emfast_discrete_log_ge1(double s)
    {
        uint64_t bits, mb, eb;
        double m, e;
        memcpy(&bits, &s, sizeof bits);
        mb = (bits & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL;
        memcpy(&m, &mb, sizeof m);
        /* the exponent as a double through the bits of 2^52 + e (no int64 -> double
         * conversion, which AVX2 lacks: the loop over a block's rows then vectorises) */
        eb = ((bits >> 52) - 1023) + 0x4330000000000000ULL;
        memcpy(&e, &eb, sizeof e);
        e -= 4503599627370496.0;
        int big = m > 1.4142135623730951;
        m = big ? m * 0.5 : m;
        e = big ? e + 1.0 : e;
        double sv = (m - 1.0) / (m + 1.0), z = sv * sv;
        return e * EMFAST_EXP_LN2_HI + (EMFAST_LOG_ATANH_SERIES(sv, z) + e * EMFAST_EXP_LN2_LO);
    }
    """
    double emfast_discrete_log_ge1(double s) noexcept nogil

cdef extern from "_discrete_rows.h":
    double emfast_lgamma(double x) noexcept nogil
    void emfast_cat_row_sums(const int* code, int J, const double* lpT, const double* logw,
                             int K, double* out) noexcept nogil
    void emfast_cat_scatter(const int* code, int J, const double* r, int K,
                            double* counts) noexcept nogil
    int EMFAST_CAT_LANES
    void emfast_cat_exp_v(int NV, const int* codes, int J, Py_ssize_t nb, const double* T,
                          const double* logw, double* e, double* mx, double* s) noexcept nogil
    void emfast_cat_add_v(int NV, const int* codes, int J, Py_ssize_t nb, const double* e,
                          const double* scale, double* nk, double* counts) noexcept nogil
    void emfast_poi_row_sums_f32(const float* x, int D, const double* logT,
                                 const double* log_const, double row_const, int K,
                                 double* out) noexcept nogil
    void emfast_poi_row_sums_f64(const double* x, int D, const double* logT,
                                 const double* log_const, double row_const, int K,
                                 double* out) noexcept nogil
    void emfast_poi_scatter_f32(const float* x, int D, const double* r, int K,
                                double* s1T) noexcept nogil
    void emfast_poi_scatter_f64(const double* x, int D, const double* r, int K,
                                double* s1T) noexcept nogil

cdef enum:
    BLOCK = 256           # rows per block: the unit of the fixed summation order


# --------------------------------------------------------------------------------------------
# Shared by both families
# --------------------------------------------------------------------------------------------
cdef double _responsibilities(double* lp, Py_ssize_t nb, int K, const double* sw,
                              Py_ssize_t r0, double* scale, double* row_ll,
                              double* log_s) noexcept nogil:
    """Log-sum-exp of each row with its max subtracted, and the weighted responsibilities.

    IN: lp (nb, K) log-probabilities of the block's rows; sw (N,) or NULL (weights 1); r0
    the block's first row. OUT: lp = exp(lp - row max); scale[:nb] = w / sum_k of those
    (lp * scale = w r), 0 for an impossible row (all -inf) or a row of weight 0. Returns
    sum_n w_n logsumexp_k lp[n]: -inf when an impossible row has weight > 0; a row of
    weight 0 adds nothing. row_ll (BLOCK,) scratch: the row maxima, then the terms;
    log_s (BLOCK,) scratch: the log of each row's sum.
    """
    cdef Py_ssize_t b, i
    cdef int k
    cdef double m, shift, s
    cdef double* row
    for b in range(nb):
        row = lp + b * K
        m = row[0]
        for k in range(1, K):
            m = row[k] if row[k] > m else m
        row_ll[b] = m
        shift = m if m > -INFINITY else 0.0     # impossible: exp(-inf - 0) = 0, sum 0
        for k in range(K):
            row[k] -= shift
    for i in range(nb * K):                     # one flat loop over the block: vectorised
        lp[i] = emfast_exp_nonpos(lp[i])
    for b in range(nb):
        row = lp + b * K
        s = 0.0
        for k in range(K):
            s += row[k]
        scale[b] = s
    return _scales(nb, sw, r0, scale, row_ll, log_s)


cdef double _scales(Py_ssize_t nb, const double* sw, Py_ssize_t r0, double* scale,
                    double* row_ll, double* log_s) noexcept nogil:
    """From each row's sum of exps (scale) and max (row_ll): scale = w / sum, row_ll = w
    (max + log sum), and their total (see _responsibilities)."""
    cdef Py_ssize_t b
    cdef double s, w, ll = 0.0
    for b in range(nb):                         # flat (a row's log was a long chain)
        log_s[b] = emfast_discrete_log_ge1(scale[b] if scale[b] > 1.0 else 1.0)
    for b in range(nb):
        s = scale[b]
        w = 1.0 if sw == NULL else sw[r0 + b]
        if w == 0.0:
            scale[b] = 0.0
            row_ll[b] = 0.0
        elif s > 0.0:
            scale[b] = w / s
            row_ll[b] = w * (row_ll[b] + log_s[b])
        else:
            scale[b] = 0.0
            row_ll[b] = -INFINITY
    for b in range(nb):
        ll += row_ll[b]
    return ll


ctypedef struct Scratch:        # per-thread, allocated once per thread and call
    double* lp                  # (BLOCK, K) log-probabilities, then w r
    double* scale               # (BLOCK,) w / sum_k exp(lp - max)
    double* row_ll              # (BLOCK,) per-row log-likelihood terms
    double* log_s               # (BLOCK,) the log of each row's sum
    double* acc                 # (width,) the sums of the group the thread runs, copied to
                                #     the group's slot at its end: adjacent slots share cache
                                #     lines, and adding rows into them from two threads made
                                #     two threads slower than one


cdef Scratch _scratch_alloc(int K, Py_ssize_t width) noexcept nogil:
    """A thread's scratch; S.lp is NULL when out of memory (the caller raises)."""
    cdef Scratch S
    S.lp = <double*> malloc((<Py_ssize_t> BLOCK * K + 3 * BLOCK + width) * sizeof(double))
    S.scale = S.lp + BLOCK * K
    S.row_ll = S.scale + BLOCK
    S.log_s = S.row_ll + BLOCK
    S.acc = S.log_s + BLOCK
    return S


cdef double _sum_slots(double[:, ::1] slots, double* nk, int K, double* stats,
                       Py_ssize_t S) noexcept nogil:
    """Sum of the group slots (G, 1 + K + S) = [loglik, nk (K), stats (S)] in group order
    (the order behind thread-independence). OUT (overwritten): nk (K,), stats (S,).
    Returns the log-likelihood."""
    cdef Py_ssize_t g, i
    cdef int k
    cdef double ll = 0.0
    for k in range(K):
        nk[k] = 0.0
    for i in range(S):
        stats[i] = 0.0
    for g in range(slots.shape[0]):
        ll += slots[g, 0]
        for k in range(K):
            nk[k] += slots[g, 1 + k]
        for i in range(S):
            stats[i] += slots[g, 1 + K + i]
    return ll


cdef inline Py_ssize_t _n_blocks(Py_ssize_t N) noexcept nogil:
    return (N + BLOCK - 1) // BLOCK


# --------------------------------------------------------------------------------------------
# Categorical (and Bernoulli)
# --------------------------------------------------------------------------------------------
cdef void _cat_rows(const int* codes, int J, const double* lpT, const double* logw, int K,
                    Py_ssize_t r0, Py_ssize_t nb, double* lp) noexcept nogil:
    """OUT: lp (nb, K) row b = logw + sum of lpT[codes[r0 + b, j]] over the non-missing
    codes (>= 0), across the classes in vectors (_discrete_rows.h)."""
    cdef Py_ssize_t b
    for b in range(nb):
        emfast_cat_row_sums(codes + (r0 + b) * J, J, lpT, logw, K, lp + b * K)


cdef double _cat_group(const int* codes, Py_ssize_t N, int J, const double* sw,
                       const double* lpT, const double* logw, int K, Py_ssize_t blk_lo,
                       Py_ssize_t blk_hi, Scratch* S, double* nk,
                       double* counts) noexcept nogil:
    """The E-step over blocks [blk_lo, blk_hi) in order. OUT (added to, this group's slot):
    nk (K,), counts (C, K). Returns the blocks' sum_n w_n logsumexp."""
    cdef Py_ssize_t blk, r0, nb, b
    cdef int k
    cdef double sc, ll = 0.0
    cdef double* r
    for blk in range(blk_lo, blk_hi):
        r0 = blk * BLOCK
        nb = min(<Py_ssize_t> BLOCK, N - r0)
        _cat_rows(codes, J, lpT, logw, K, r0, nb, S.lp)
        ll += _responsibilities(S.lp, nb, K, sw, r0, S.scale, S.row_ll, S.log_s)
        for b in range(nb):
            sc = S.scale[b]
            if sc == 0.0:               # impossible or weight 0: no statistics
                continue
            r = S.lp + b * K
            for k in range(K):
                r[k] *= sc
                nk[k] += r[k]
            emfast_cat_scatter(codes + (r0 + b) * J, J, r, K, counts)
    return ll


# Up to this many classes a row's classes are two vectors or one (_discrete_rows.h)
cdef int VECTOR_MAX_K = 2 * EMFAST_CAT_LANES


cdef double _cat_group_v(const int* codes, Py_ssize_t N, int J, const double* sw,
                         const double* T, const double* logw, int NV, Py_ssize_t blk_lo,
                         Py_ssize_t blk_hi, Scratch* S, double* nk,
                         double* counts) noexcept nogil:
    """_cat_group with the classes in NV vectors: T (C, KP) and logw (KP,) padded with
    -inf; nk (KP,) and counts (C, KP) padded likewise (their padding gets 0)."""
    cdef Py_ssize_t blk, r0, nb
    cdef double ll = 0.0
    for blk in range(blk_lo, blk_hi):
        r0 = blk * BLOCK
        nb = min(<Py_ssize_t> BLOCK, N - r0)
        emfast_cat_exp_v(NV, codes + r0 * J, J, nb, T, logw, S.lp, S.row_ll, S.scale)
        ll += _scales(nb, sw, r0, S.scale, S.row_ll, S.log_s)
        emfast_cat_add_v(NV, codes + r0 * J, J, nb, S.lp, S.scale, nk, counts)
    return ll


def categorical_estep_stats(
    const int[:, ::1] codes,            # IN  (N, J) global codes in [0, C); -1: missing
    const double[::1] sample_weight,    # IN  (N,), or (0,): all weights 1
    const double[:, ::1] log_prob_T,    # IN  (C, K) log P(category | class), may hold -inf
    const double[::1] log_weights,      # IN  (K,) log class weights, may hold -inf
    double[::1] nk,                     # OUT (K,) sum_n w_n r_nk
    double[:, ::1] counts,              # OUT (C, K) sum_n w_n r_nk [code_nj == c] over j
    int n_threads,                      # IN  OpenMP threads
):
    """The fused categorical E-step. Returns sum_n w_n logsumexp_k (log_weights_k + sum_j
    log_prob_T[code_nj, k])."""
    cdef Py_ssize_t N = codes.shape[0], C = log_prob_T.shape[0], nblk = _n_blocks(N), g
    cdef int J = codes.shape[1], K = log_prob_T.shape[1]
    # up to VECTOR_MAX_K classes: the table, the log-weights and the sums padded to KP
    cdef int NV = (K + EMFAST_CAT_LANES - 1) // EMFAST_CAT_LANES if 0 < K <= VECTOR_MAX_K else 0
    cdef int KP = EMFAST_CAT_LANES * NV if NV else K
    cdef Py_ssize_t width = 1 + KP + C * KP
    cdef Py_ssize_t G = n_groups(nblk, width)
    cdef double[:, ::1] slots = np.zeros((G, width))
    cdef const double* sw = &sample_weight[0] if sample_weight.shape[0] > 0 else NULL
    cdef const double[:, ::1] T = log_prob_T
    cdef const double[::1] logw = log_weights
    cdef Scratch S
    cdef double ll
    cdef int failed = 0
    if NV:
        Tp = np.full((C, KP), -np.inf)
        Tp[:, :K] = log_prob_T
        wp = np.full(KP, -np.inf)
        wp[:K] = log_weights
        T, logw = Tp, wp
    with nogil:
        if N > 0:
            # no more threads than groups: each holds a scratch of the slot's size
            with parallel(num_threads=min(n_threads, G)):
                S = _scratch_alloc(KP, width)
                for g in prange(G, schedule="dynamic"):
                    if S.lp == NULL:
                        failed += 1
                        continue
                    memset(S.acc, 0, width * sizeof(double))
                    if NV:
                        S.acc[0] = _cat_group_v(
                            &codes[0, 0], N, J, sw, &T[0, 0], &logw[0], NV,
                            g * nblk // G, (g + 1) * nblk // G, &S, S.acc + 1,
                            S.acc + 1 + KP)
                    else:
                        S.acc[0] = _cat_group(
                            &codes[0, 0], N, J, sw, &T[0, 0], &logw[0], K,
                            g * nblk // G, (g + 1) * nblk // G, &S, S.acc + 1, S.acc + 1 + K)
                    memcpy(&slots[g, 0], S.acc, width * sizeof(double))
                free(S.lp)
    if failed:
        raise MemoryError("categorical_estep_stats: no memory for the threads' scratch")
    if not NV:
        with nogil:
            ll = _sum_slots(slots, &nk[0], K, &counts[0, 0], C * K)
        return ll
    nkp, countsp = np.empty(KP), np.empty((C, KP))
    cdef double[::1] nkv = nkp
    cdef double[:, ::1] cv = countsp
    with nogil:
        ll = _sum_slots(slots, &nkv[0], KP, &cv[0, 0] if C > 0 else NULL, C * KP)
    np.asarray(nk)[:] = nkp[:K]
    np.asarray(counts)[...] = countsp[:, :K]
    return ll


def categorical_log_prob(
    const int[:, ::1] codes,            # IN  (N, J) global codes in [0, C); -1: missing
    const double[:, ::1] log_prob_T,    # IN  (C, K)
    const double[::1] log_weights,      # IN  (K,)
    double[:, ::1] out,                 # OUT (N, K) log_weights_k + sum_j log_prob_T[code, k]
    int n_threads,                      # IN  OpenMP threads
):
    """Per-row, per-class log-probabilities (each row on its own: any split is exact)."""
    cdef Py_ssize_t N = codes.shape[0], nblk = _n_blocks(N), blk
    cdef int J = codes.shape[1], K = log_prob_T.shape[1]
    if N == 0:
        return
    with nogil:
        for blk in prange(nblk, schedule="static", num_threads=n_threads):
            _cat_rows(&codes[0, 0], J, &log_prob_T[0, 0], &log_weights[0], K, blk * BLOCK,
                      min(<Py_ssize_t> BLOCK, N - blk * BLOCK), &out[blk * BLOCK, 0])


# --------------------------------------------------------------------------------------------
# Poisson
# --------------------------------------------------------------------------------------------
cdef void _poi_rows(const floating* X, int D, const double* logT,
                    const double* log_const, const double* row_const, int K, Py_ssize_t r0,
                    Py_ssize_t nb, double* lp) noexcept nogil:
    """OUT: lp (nb, K) row b = log_const + row_const[r0 + b] + sum_d x_d log_lam[k, d], a
    term with x_d = 0 adding 0 also where log(lambda) = -inf; logT (D, K) is log_lam
    transposed: across the classes in vectors (_discrete_rows.h)."""
    cdef Py_ssize_t b
    for b in range(nb):
        if floating is float:
            emfast_poi_row_sums_f32(X + (r0 + b) * D, D, logT, log_const, row_const[r0 + b],
                                    K, lp + b * K)
        else:
            emfast_poi_row_sums_f64(X + (r0 + b) * D, D, logT, log_const, row_const[r0 + b],
                                    K, lp + b * K)


cdef double _poi_group(const floating* X, Py_ssize_t N, int D, const double* sw,
                       const double* logT, const double* log_const,
                       const double* row_const, int K, Py_ssize_t blk_lo, Py_ssize_t blk_hi,
                       Scratch* S, double* nk, double* s1T) noexcept nogil:
    """As _cat_group for the Poisson family: OUT (added to) nk (K,), s1T (D, K) = sum w x r
    (the transpose of the statistic s1, so that a row adds K contiguous values per count)."""
    cdef Py_ssize_t blk, r0, nb, b
    cdef int k
    cdef double sc, ll = 0.0
    cdef double* r
    for blk in range(blk_lo, blk_hi):
        r0 = blk * BLOCK
        nb = min(<Py_ssize_t> BLOCK, N - r0)
        _poi_rows(X, D, logT, log_const, row_const, K, r0, nb, S.lp)
        ll += _responsibilities(S.lp, nb, K, sw, r0, S.scale, S.row_ll, S.log_s)
        for b in range(nb):
            sc = S.scale[b]
            if sc == 0.0:
                continue
            r = S.lp + b * K
            for k in range(K):
                r[k] *= sc
                nk[k] += r[k]
            # r is finite: a zero count adds exact zeros
            if floating is float:
                emfast_poi_scatter_f32(X + (r0 + b) * D, D, r, K, s1T)
            else:
                emfast_poi_scatter_f64(X + (r0 + b) * D, D, r, K, s1T)
    return ll


def poisson_estep_stats(
    const floating[:, ::1] X,           # IN  (N, D) float32 or float64 non-negative counts
    const double[::1] sample_weight,    # IN  (N,), or (0,): all weights 1
    const double[:, ::1] log_lam,       # IN  (K, D) log rates, may hold -inf (rate 0)
    const double[::1] log_const,        # IN  (K,) log w_k - sum_d lambda_kd
    const double[::1] row_const,        # IN  (N,) -sum_d log(x_nd!) (poisson_row_const)
    double[::1] nk,                     # OUT (K,) sum_n w_n r_nk
    double[:, ::1] s1,                  # OUT (K, D) sum_n w_n r_nk x_n
    int n_threads,                      # IN  OpenMP threads
):
    """The fused Poisson E-step. Returns the weighted log-likelihood."""
    cdef Py_ssize_t N = X.shape[0], nblk = _n_blocks(N), g
    cdef int K = log_lam.shape[0], D = log_lam.shape[1], k, d
    cdef Py_ssize_t width = 1 + K + D * K
    cdef Py_ssize_t G = n_groups(nblk, width)
    cdef double[:, ::1] slots = np.zeros((G, width))
    cdef const double[:, ::1] logT = np.ascontiguousarray(np.asarray(log_lam).T)
    cdef double[:, ::1] s1T = np.empty((D, K))
    cdef const double* sw = &sample_weight[0] if sample_weight.shape[0] > 0 else NULL
    cdef Scratch S
    cdef double ll
    cdef int failed = 0
    with nogil:
        if N > 0:
            with parallel(num_threads=min(n_threads, G)):
                S = _scratch_alloc(K, width)
                for g in prange(G, schedule="dynamic"):
                    if S.lp == NULL:
                        failed += 1
                        continue
                    memset(S.acc, 0, width * sizeof(double))
                    S.acc[0] = _poi_group(
                        &X[0, 0], N, D, sw, &logT[0, 0], &log_const[0], &row_const[0], K,
                        g * nblk // G, (g + 1) * nblk // G, &S, S.acc + 1, S.acc + 1 + K)
                    memcpy(&slots[g, 0], S.acc, width * sizeof(double))
                free(S.lp)
    if failed:
        raise MemoryError("poisson_estep_stats: no memory for the threads' scratch")
    with nogil:
        ll = _sum_slots(slots, &nk[0], K, &s1T[0, 0], D * K)
        for k in range(K):
            for d in range(D):
                s1[k, d] = s1T[d, k]
    return ll


def poisson_log_prob(
    const floating[:, ::1] X,           # IN  (N, D) float32 or float64 counts
    const double[:, ::1] log_lam,       # IN  (K, D)
    const double[::1] log_const,        # IN  (K,)
    const double[::1] row_const,        # IN  (N,)
    double[:, ::1] out,                 # OUT (N, K) per-class log-probabilities
    int n_threads,                      # IN  OpenMP threads
):
    """Per-row, per-class Poisson log-probabilities (each row on its own)."""
    cdef Py_ssize_t N = X.shape[0], nblk = _n_blocks(N), blk
    cdef int K = log_lam.shape[0], D = log_lam.shape[1]
    cdef const double[:, ::1] logT = np.ascontiguousarray(np.asarray(log_lam).T)
    if N == 0:
        return
    with nogil:
        for blk in prange(nblk, schedule="static", num_threads=n_threads):
            _poi_rows(&X[0, 0], D, &logT[0, 0], &log_const[0], &row_const[0], K, blk * BLOCK,
                      min(<Py_ssize_t> BLOCK, N - blk * BLOCK), &out[blk * BLOCK, 0])


def poisson_row_const(
    const floating[:, ::1] X,           # IN  (N, D) float32 or float64 counts
    double[::1] out,                    # OUT (N,) -sum_d lgamma(x_nd + 1)
    int n_threads,                      # IN  OpenMP threads
):
    """The rows' constant of the Poisson log-probabilities (each row on its own)."""
    cdef Py_ssize_t N = X.shape[0], n
    cdef int D = X.shape[1], d
    cdef double s
    with nogil:
        for n in prange(N, schedule="static", num_threads=n_threads):
            s = 0.0
            for d in range(D):
                s = s + emfast_lgamma(<double> X[n, d] + 1.0)
            out[n] = -s
