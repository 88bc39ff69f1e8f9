# The body of the Cython + OpenMP Gaussian kernels, shared by two extension modules built
# from it (see setup.py and emfast._config): _gaussian.pyx (baseline instruction set, always
# built) and _gaussian_avx2.pyx (compiled with -mavx2 -mfma on x86-64, imported at run time
# when the CPU has both). One source, so the two can never drift apart. The design notes
# are the docstring of _gaussian.pyx.


from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.math cimport log, sqrt, INFINITY
from libc.stdlib cimport malloc, free
from scipy.linalg.cython_blas cimport dgemm, dsyrk

import numpy as np

cdef extern from "_fastexp.h":
    # exp(x) for x <= 0 as branch-free arithmetic, so loops calling it vectorise (see there)
    double emfast_exp_nonpos(double x) noexcept nogil

cdef enum:
    BLOCK = 256           # rows per block: a block's buffers stay in L1/L2
    MAX_GROUPS = 64       # fixed-order partial sums; more than any thread count we use
    Y_COLS = 256          # columns of the transformed block (components per dgemm * D)

cdef enum Cov:
    FULL = 0
    TIED = 1
    DIAG = 2
    SPHERICAL = 3

cdef enum Mode:           # how statistics are accumulated, see the module docstring
    DENSE = 0
    SPARSE = 1
    BLAS = 2
    COLS = 3              # feature-major dot products, same buffer layout as SPARSE

# exp(-40) ~ 4e-18: a component this far below the row's best one cannot change any
# float64 sum at the reference tolerance, so its responsibility is set to exactly 0
# (saves the exp() and lets the sparse/BLAS statistics skip the pair).
cdef double LOG_CUTOFF = -40.0

# Group buffers are G x (stats size) doubles; cap their total size.
cdef Py_ssize_t MAX_GROUP_BYTES = 64 * 1024 * 1024

# Thresholds measured on a 2-core Zen 5 with OpenBLAS 0.3 (Haswell kernels), K = 10..100:
# from this D on, full/tied use dgemm + dsyrk (below it the call overhead dominates) ...
cdef int BLAS_MIN_D = 10
# ... and up to this D (with at least DENSE_MIN_K components; vector loops over a
# handful of components cost more than they save) statistics are accumulated densely.
cdef int DENSE_MAX_D = 4
cdef int DENSE_MIN_K = 8


ctypedef struct Model:
    int cov                     # FULL, TIED, DIAG or SPHERICAL
    int mode                    # DENSE, SPARSE or BLAS (statistics)
    bint gemm                   # log-densities through (x - c) @ U (tied, full large D)
    int D, K, P                 # features, components, D*(D+1)/2
    int kc                      # components per dgemm (tied: K, one transform for all)
    const double* log_const     # (K,)
    const double* means         # (K, D)  statistics are centred on these
    const double* meansT        # (D, K)  the same, for the dense statistics
    const double* lp_means      # (K, D)  what rows are compared with in the log-density:
                                #         means, or (means - center) @ U_k for gemm
    const double* scale         # (K, D)  diag/spherical: 1/sigma per feature
    const double* prec          # full (K, D, D): U_k row-major (small-D loops)
    const double* ucat          # (D, ld_ucat): full [U_0 | U_1 | ...], tied U
    int ld_ucat                 # K*D for full, D for tied
    const double* center        # (D,)   gemm: rows are centred on this first


ctypedef struct Work:           # per-thread scratch, allocated once per thread
    double* xb                  # (BLOCK, D) the block in float64, row-major
    double* xT                  # (D, BLOCK) the block, feature-major
    double* xc                  # (BLOCK, D) centred block / gathered rows for dsyrk
    double* y                   # (BLOCK, ycols) transformed rows
    double* lp                  # (BLOCK, K) log-densities, then w * responsibilities
    double* maha                # (BLOCK,) distances to one component
    double* t                   # (BLOCK,) one coordinate of (x - mu_k) @ U_k
    double* rowT                # (D, K) one row centred on every mean (dense statistics)
    double* rxT                 # (D, K) the same times the responsibilities
    double* e                   # (K,) exp() scratch
    double* xr                  # (D,) one row centred on one mean (sparse statistics)
    int* act                    # (BLOCK, K) per row: components with r != 0 (see _lse_resp)
    int* n_act                  # (BLOCK,) their number


# ---------------------------------------------------------------------------------------
# Scratch space


cdef Py_ssize_t _y_cols(const Model* M) noexcept nogil:
    if not M.gemm:
        return 0
    return M.D if M.cov == TIED else M.kc * M.D


cdef Work* _work_alloc(const Model* M) noexcept nogil:
    cdef Py_ssize_t bd = BLOCK * M.D, dk = M.D * M.K
    cdef Work* W = <Work*> malloc(sizeof(Work))
    cdef double* mem = <double*> malloc(
        (3 * bd + BLOCK * _y_cols(M) + BLOCK * M.K + 2 * BLOCK + 2 * dk + M.K + M.D)
        * sizeof(double))
    W.xb = mem
    W.xT = W.xb + bd
    W.xc = W.xT + bd
    W.y = W.xc + bd
    W.lp = W.y + BLOCK * _y_cols(M)
    W.maha = W.lp + BLOCK * M.K
    W.t = W.maha + BLOCK
    W.rowT = W.t + BLOCK
    W.rxT = W.rowT + dk
    W.e = W.rxT + dk
    W.xr = W.e + M.K
    W.act = <int*> malloc((BLOCK * M.K + BLOCK) * sizeof(int))
    W.n_act = W.act + BLOCK * M.K
    return W


cdef void _work_free(Work* W) noexcept nogil:
    free(W.xb)
    free(W.act)
    free(W)


# ---------------------------------------------------------------------------------------
# Small helpers


cdef void _load_rows(const floating* X, Py_ssize_t n, double* out) noexcept nogil:
    """out[:n] = X[:n] as float64."""
    cdef Py_ssize_t i
    for i in range(n):
        out[i] = X[i]


cdef void _centre_rows(const double* xb, const double* mu, Py_ssize_t m, int D,
                       double* out) noexcept nogil:
    """out[b, :] = xb[b, :] - mu for the m rows of a block."""
    cdef Py_ssize_t b
    cdef int i
    for b in range(m):
        for i in range(D):
            out[b * D + i] = xb[b * D + i] - mu[i]


cdef void _transpose(const double* x, Py_ssize_t m, int D, double* xT) noexcept nogil:
    """xT[i, b] = x[b, i]; xT has row stride BLOCK."""
    cdef Py_ssize_t b
    cdef int i
    for b in range(m):
        for i in range(D):
            xT[i * BLOCK + b] = x[b * D + i]


cdef double _lse_resp(double* lp, int K, double w, bint to_resp, int* act, int* n_act,
                      double* e) noexcept nogil:
    """Return logsumexp(lp[:K]); if to_resp, overwrite lp with w * responsibilities.

    The row max is subtracted first, so the best component contributes exp(0) = 1 and the
    sum never underflows. Components more than -LOG_CUTOFF below it get exactly 0; the
    others are listed in act[:n_act] (increasing k), which the sparse statistics reuse.
    e: (K,) scratch.
    """
    cdef int k, n = 0
    cdef double m0 = -INFINITY, m1 = -INFINITY, mx, s = 0.0, d, scale
    cdef double cutoff = LOG_CUTOFF   # a local: a global could alias e[] and block SIMD
    # Two running maxima break the compare dependency chain; max is exact in any order.
    for k in range(0, K - 1, 2):
        m0 = lp[k] if lp[k] > m0 else m0
        m1 = lp[k + 1] if lp[k + 1] > m1 else m1
    if K % 2:
        m0 = lp[K - 1] if lp[K - 1] > m0 else m0
    mx = m0 if m0 > m1 else m1
    if mx == -INFINITY:        # every component impossible: -inf / NaN, like the reference
        mx = 0.0
    # Separate loops so that each vectorises: the exps (no branch, no libm call) ...
    for k in range(K):
        d = lp[k] - mx
        e[k] = 0.0 if d < cutoff else emfast_exp_nonpos(d)
    # ... the sum, in k order (skipped components add exactly 0.0) ...
    for k in range(K):
        s += e[k]
    # ... the list of components with r != 0 (exp(d) > 0 for d >= cutoff; NaN stays
    # listed, so it propagates), built branch-free ...
    for k in range(K):
        act[n] = k
        n += e[k] != 0.0
    n_act[0] = n
    # ... and the responsibilities.
    if to_resp:
        scale = w / s
        for k in range(K):
            lp[k] = e[k] * scale if e[k] != 0.0 else 0.0
    return mx + log(s)


# ---------------------------------------------------------------------------------------
# Step 2: log-densities of a block


# The two loops below take features two at a time: one pass over maha[] / t[] per pair
# instead of per feature halves the loads and stores of the accumulator.


cdef void _maha_scaled_T(const double* xT, const double* mu, const double* s, Py_ssize_t m,
                         int D, double* maha) noexcept nogil:
    """maha[b] = sum_i ((x[b, i] - mu[i]) * s[i])**2, x feature-major."""
    cdef Py_ssize_t b
    cdef int i = 0
    cdef double t0, t1
    cdef const double* x0
    cdef const double* x1
    for b in range(m):
        maha[b] = 0.0
    while i + 1 < D:
        x0 = xT + i * BLOCK
        x1 = x0 + BLOCK
        for b in range(m):
            t0 = (x0[b] - mu[i]) * s[i]
            t1 = (x1[b] - mu[i + 1]) * s[i + 1]
            maha[b] += t0 * t0 + t1 * t1
        i += 2
    if i < D:
        x0 = xT + i * BLOCK
        for b in range(m):
            t0 = (x0[b] - mu[i]) * s[i]
            maha[b] += t0 * t0


cdef void _maha_upper_T(const double* xT, const double* mu, const double* U, Py_ssize_t m,
                        int D, double* xcT, double* t, double* maha) noexcept nogil:
    """maha[b] = ||(x[b] - mu) @ U||**2, x feature-major, U (D, D) upper, row-major."""
    cdef Py_ssize_t b
    cdef int i, j
    cdef double u0, u1
    cdef const double* xi
    cdef double* c0
    cdef double* c1
    for i in range(D):
        xi = xT + i * BLOCK
        c0 = xcT + i * BLOCK
        for b in range(m):
            c0[b] = xi[b] - mu[i]
    for b in range(m):
        maha[b] = 0.0
    for j in range(D):
        for b in range(m):
            t[b] = 0.0
        i = 0
        while i + 1 <= j:             # column j of U is zero below the diagonal
            c0 = xcT + i * BLOCK
            c1 = c0 + BLOCK
            u0 = U[i * D + j]
            u1 = U[(i + 1) * D + j]
            for b in range(m):
                t[b] += c0[b] * u0 + c1[b] * u1
            i += 2
        if i == j:
            c0 = xcT + i * BLOCK
            u0 = U[i * D + j]
            for b in range(m):
                t[b] += c0[b] * u0
        for b in range(m):
            maha[b] += t[b] * t[b]


cdef void _transform_rows(const Model* M, const double* xc, Py_ssize_t m, int k0, int kn,
                          double* y) noexcept nogil:
    """y = xc @ [U_k0 | ... | U_k0+kn-1] (tied: xc @ U), row-major (m, ncol)."""
    cdef int D = M.D, mm = <int> m, ld = M.ld_ucat, i, j
    cdef int ncol = D if M.cov == TIED else kn * D
    cdef double one = 1.0, zero = 0.0, s
    cdef Py_ssize_t b
    if M.cov == TIED and D < BLAS_MIN_D:     # a BLAS call costs more than this
        for b in range(m):
            for j in range(D):
                s = 0.0
                for i in range(j + 1):
                    s += xc[b * D + i] * M.ucat[i * D + j]
                y[b * D + j] = s
        return
    # Row-major (m, D) is column-major (D, m): y^T = Uc^T xc^T, and the row-major
    # (D, ncol) slice of ucat with leading dimension ld is the column-major Uc^T.
    dgemm(b"N", b"N", &ncol, &mm, &D, &one, <double*> M.ucat + k0 * D, &ld,
          <double*> xc, &D, &zero, y, &ncol)


cdef void _maha_transformed(const Model* M, const double* y, Py_ssize_t m, int k0, int kn,
                            double* lp) noexcept nogil:
    """lp[b, k] for k in [k0, k0 + kn) from transformed rows y (see _transform_rows)."""
    cdef int D = M.D, K = M.K, k, j
    cdef int ncol = D if M.cov == TIED else kn * D
    cdef Py_ssize_t b
    cdef double s, t
    cdef const double* yk
    cdef const double* mk
    for b in range(m):
        for k in range(k0, k0 + kn):
            yk = y + b * ncol + (0 if M.cov == TIED else (k - k0) * D)
            mk = M.lp_means + k * D
            s = 0.0
            for j in range(D):
                t = yk[j] - mk[j]
                s += t * t
            lp[b * K + k] = M.log_const[k] - 0.5 * s


cdef void _block_log_prob(const Model* M, Work* W, Py_ssize_t m, double* lp) noexcept nogil:
    """lp[b, k] = log_const[k] - 0.5 * maha(row b, component k) for the m rows in W.xb."""
    cdef int D = M.D, K = M.K, k, k0
    cdef Py_ssize_t b

    if M.gemm:
        _centre_rows(W.xb, M.center, m, D, W.xc)
        k0 = 0
        while k0 < K:                 # components in chunks of kc: one dgemm each
            _transform_rows(M, W.xc, m, k0, min(M.kc, K - k0), W.y)
            _maha_transformed(M, W.y, m, k0, min(M.kc, K - k0), lp)
            k0 += M.kc
        return

    _transpose(W.xb, m, D, W.xT)
    for k in range(K):
        if M.cov == FULL:
            _maha_upper_T(W.xT, M.means + k * D, M.prec + k * D * D, m, D, W.xc, W.t,
                          W.maha)
        else:
            _maha_scaled_T(W.xT, M.means + k * D, M.scale + k * D, m, D, W.maha)
        for b in range(m):
            lp[b * K + k] = M.log_const[k] - 0.5 * W.maha[b]


# ---------------------------------------------------------------------------------------
# Step 4: statistics of a block, given w * responsibilities in resp (m, K).
#
# Group buffer after the loglik slot: nk (K), then s1 and s2 by mode
#   dense:  s1 (D, K); s2 full/tied packed upper triangle (P, K), diag/spherical (D, K)
#   sparse, cols: s1 (K, D); s2 full packed (K, P), tied packed (P,), diag/spherical (K, D)
#   blas:   s1 (K, D); s2 full (K, D, D), tied (D, D), lower triangle filled
# Spherical accumulates per feature like diag and sums over D at the end; tied in the
# dense layout keeps one triangle per component and sums over k at the end.


cdef void _block_stats_dense(const Model* M, Work* W, Py_ssize_t m, const double* resp,
                             double* st) noexcept nogil:
    cdef int D = M.D, K = M.K, i, j, k, p
    cdef Py_ssize_t b
    cdef bint triangle = M.cov == FULL or M.cov == TIED
    cdef const double* r
    cdef const double* muT
    cdef double* nk = st
    cdef double* s1T = st + K
    cdef double* s2T = s1T + D * K
    cdef double* c
    cdef double* rc
    cdef double* s
    cdef double xi
    for b in range(m):
        r = resp + b * K
        for k in range(K):
            nk[k] += r[k]
        for i in range(D):
            xi = W.xb[b * D + i]
            muT = M.meansT + i * K
            c = W.rowT + i * K
            rc = W.rxT + i * K
            s = s1T + i * K
            for k in range(K):
                c[k] = xi - muT[k]
                rc[k] = r[k] * c[k]
                s[k] += rc[k]
        p = 0                     # packed upper triangle (diag: just the diagonal)
        for i in range(D):
            rc = W.rxT + i * K
            for j in range(i, D if triangle else i + 1):
                c = W.rowT + j * K
                s = s2T + p * K
                for k in range(K):
                    s[k] += rc[k] * c[k]
                p += 1


cdef void _block_stats_sparse(const Model* M, Work* W, Py_ssize_t m, const double* resp,
                              double* st) noexcept nogil:
    cdef int D = M.D, K = M.K, P = M.P, i, j, k, a_idx
    cdef Py_ssize_t b
    cdef bint triangle = M.cov == FULL or M.cov == TIED
    cdef double r, a
    cdef double* nk = st
    cdef double* s1 = st + K
    cdef double* s2 = s1 + K * D
    cdef double* s1k
    cdef double* s2k
    cdef double* xr = W.xr
    cdef const double* x
    cdef const double* mu
    for b in range(m):
        x = W.xb + b * D
        for a_idx in range(W.n_act[b]):
            k = W.act[b * K + a_idx]
            r = resp[b * K + k]
            mu = M.means + k * D
            s1k = s1 + k * D
            nk[k] += r
            for i in range(D):
                xr[i] = x[i] - mu[i]
                s1k[i] += r * xr[i]
            if triangle:
                # row i of the packed upper triangle starts at s2k + i, shifted by the
                # triangle rows before it: keep s2k pointing at (row start - i)
                s2k = s2 + (k * P if M.cov == FULL else 0)
                for i in range(D):
                    a = r * xr[i]
                    for j in range(i, D):
                        s2k[j] += a * xr[j]
                    s2k += D - i - 1
            else:
                s2k = s2 + k * D
                for i in range(D):
                    s2k[i] += r * xr[i] * xr[i]


# Feature-major ("columns") statistics, the path for given responsibilities: per component,
# the block's centred features are columns of BLOCK rows and every statistic is a sum down
# columns, accumulated in registers (nothing is stored per row and statistic, unlike
# DENSE). The sums are explicit vector code with a fixed order, see _colstats.h.
cdef extern from "_colstats.h":
    # r[b] = resp[b * K] for b < m; return sum_b r[b]
    double emfast_gather_sum(const double* resp, Py_ssize_t K, Py_ssize_t m,
                             double* r) noexcept nogil
    # s1 += sum r (x - mu), s2 += sum r (x - mu)^2; d != NULL: d = x - mu, rd = r d
    void emfast_moments_col(const double* x, double mu, const double* r, Py_ssize_t m,
                            double* d, double* rd, double* s1, double* s2) noexcept nogil
    # s0 += sum a c0, s1 += sum a c1
    void emfast_dot2_col(const double* a, const double* c0, const double* c1, Py_ssize_t m,
                         double* s0, double* s1) noexcept nogil


cdef void _block_stats_cols(const Model* M, Work* W, Py_ssize_t m, const double* resp,
                            double* st) noexcept nogil:
    """Statistics in the sparse layout, per component from feature-major columns.

    Scratch: W.xT (D, BLOCK) the block; W.t (BLOCK,) r[:, k]; full/tied also W.xc
    (D, BLOCK) the block centred on mu_k and W.maha (BLOCK,) r (x_i - mu_k,i), one
    feature at a time.
    """
    cdef int D = M.D, K = M.K, P = M.P, i, j, k
    cdef bint triangle = M.cov == FULL or M.cov == TIED
    cdef double* nk = st
    cdef double* s1 = st + K
    cdef double* s2 = s1 + K * D
    cdef double* row                 # start of packed row i of the upper triangle
    cdef double* r = W.t
    cdef double* rd = W.maha
    cdef double* dT = W.xc
    cdef const double* mu
    cdef double dummy
    _transpose(W.xb, m, D, W.xT)
    for k in range(K):
        nk[k] += emfast_gather_sum(resp + k, K, m, r)
        mu = M.means + k * D
        if not triangle:              # diag/spherical: per-feature diagonal (K, D)
            for i in range(D):
                emfast_moments_col(W.xT + i * BLOCK, mu[i], r, m, NULL, NULL,
                                   s1 + k * D + i, s2 + k * D + i)
            continue
        # Packed upper triangle, row i holds (i, i..D-1) and starts at i*D - i*(i-1)/2.
        # Features from last to first, so the columns d_j (j > i) exist when row i needs them.
        for i in range(D - 1, -1, -1):
            row = s2 + (k * P if M.cov == FULL else 0) + i * D - i * (i - 1) // 2
            emfast_moments_col(W.xT + i * BLOCK, mu[i], r, m, dT + i * BLOCK, rd,
                               s1 + k * D + i, row)
            j = i + 1
            while j + 1 < D:
                emfast_dot2_col(rd, dT + j * BLOCK, dT + (j + 1) * BLOCK, m,
                                row + (j - i), row + (j + 1 - i))
                j += 2
            if j < D:                 # an odd column left: pair it with itself, drop one
                emfast_dot2_col(rd, dT + j * BLOCK, dT + j * BLOCK, m, row + (j - i), &dummy)


cdef void _syrk_add(const double* z, int nz, int D, double* S) noexcept nogil:
    """S += z^T z for z row-major (nz, D); fills S's lower triangle (row-major)."""
    cdef double one = 1.0
    if nz > 0:
        dsyrk(b"U", b"N", &D, &nz, &one, <double*> z, &D, &one, S, &D)


cdef void _block_stats_blas(const Model* M, Work* W, Py_ssize_t m, const double* resp,
                            double* st) noexcept nogil:
    """Per component, gather sqrt(r) (x - mu_k) of the rows with r != 0, then dsyrk.

    The sqrt needs non-negative sample weights. Tied sums every component into one
    matrix, so its gathered rows are flushed only when the buffer is full.
    """
    cdef int D = M.D, K = M.K, i, k, nz = 0
    cdef Py_ssize_t b
    cdef double r, sr, d
    cdef double* nk = st
    cdef double* s1 = st + K
    cdef double* s2 = s1 + K * D
    cdef double* target = s2
    cdef const double* mu
    cdef const double* x
    cdef double* z = W.xc
    for k in range(K):
        if M.cov == FULL:
            target = s2 + k * D * D
        mu = M.means + k * D
        for b in range(m):
            r = resp[b * K + k]
            if r == 0.0:
                continue
            nk[k] += r
            sr = sqrt(r)
            x = W.xb + b * D
            for i in range(D):
                d = x[i] - mu[i]
                s1[k * D + i] += r * d
                z[nz * D + i] = sr * d
            nz += 1
            if nz == BLOCK:
                _syrk_add(z, nz, D, target)
                nz = 0
        if M.cov == FULL:
            _syrk_add(z, nz, D, target)
            nz = 0
    _syrk_add(z, nz, D, target)


# ---------------------------------------------------------------------------------------
# One block / one group / all groups.
#
# The statistics pass (estep_stats and weighted_stats) is one loop; only where a block's
# responsibilities come from differs: the E-step computes them from the log-densities
# (into W.lp), weighted_stats reads the caller's resp rows in place.


cdef void _block_stats(const Model* M, Work* W, Py_ssize_t m, const double* resp,
                       double* st) noexcept nogil:
    """Add the statistics of the m rows in W.xb with responsibilities resp (m, K) to st."""
    if M.mode == DENSE:
        _block_stats_dense(M, W, m, resp, st)
    elif M.mode == COLS:
        _block_stats_cols(M, W, m, resp, st)
    elif M.mode == SPARSE:
        _block_stats_sparse(M, W, m, resp, st)
    else:
        _block_stats_blas(M, W, m, resp, st)


cdef double _block_resp_estep(const Model* M, Work* W, const double* sw, Py_ssize_t n0,
                              Py_ssize_t m) noexcept nogil:
    """W.lp = w * responsibilities of the m rows in W.xb (rows n0...); return their
    weighted log-likelihood. Also lists each row's active components (W.act, W.n_act)."""
    cdef Py_ssize_t b
    cdef double w = 1.0, ll = 0.0
    _block_log_prob(M, W, m, W.lp)
    for b in range(m):
        if sw != NULL:
            w = sw[n0 + b]
        ll += w * _lse_resp(W.lp + b * M.K, M.K, w, True, W.act + b * M.K, W.n_act + b, W.e)
    return ll


cdef double _stats_block(const Model* M, Work* W, const floating* X, const double* sw,
                         const double* resp, Py_ssize_t n0, Py_ssize_t m,
                         double* st) noexcept nogil:
    """Add block [n0, n0 + m)'s statistics to st[1:]; return its weighted log-likelihood.

    resp == NULL: E-step (responsibilities from the model, sample weights sw or NULL);
    otherwise the given responsibilities resp (N, K) and a log-likelihood of 0. Given
    responsibilities come with a COLS or BLAS model (see _Params), never SPARSE, which
    needs the active-component lists that only the E-step's _lse_resp builds.
    """
    cdef double ll = 0.0
    cdef const double* r
    _load_rows(X + n0 * M.D, m * M.D, W.xb)
    if resp == NULL:
        ll = _block_resp_estep(M, W, sw, n0, m)
        r = W.lp
    else:
        r = resp + n0 * M.K
    _block_stats(M, W, m, r, st + 1)
    return ll


cdef void _stats_group(const Model* M, Work* W, const floating* X, const double* sw,
                       const double* resp, Py_ssize_t N, Py_ssize_t b0, Py_ssize_t b1,
                       double* st) noexcept nogil:
    """Blocks [b0, b1) in order into st (st[0]: loglik)."""
    cdef Py_ssize_t blk, n0
    for blk in range(b0, b1):
        n0 = blk * BLOCK
        st[0] += _stats_block(M, W, X, sw, resp, n0, min(<Py_ssize_t> BLOCK, N - n0), st)


cdef void _stats_groups(const Model* M, const floating* X, const double* sw,
                        const double* resp, Py_ssize_t N, Py_ssize_t G, double* st,
                        Py_ssize_t size, int n_threads) noexcept nogil:
    """All N rows into G group buffers st (G, size): group g takes the g-th contiguous run
    of blocks. Groups run in parallel, each thread allocating its scratch once."""
    cdef Py_ssize_t n_blocks = (N + BLOCK - 1) // BLOCK
    cdef Py_ssize_t g
    cdef Work* W = NULL
    if N == 0:
        return
    with parallel(num_threads=n_threads):
        W = _work_alloc(M)
        for g in prange(G, schedule="dynamic"):
            _stats_group(M, W, X, sw, resp, N, g * n_blocks // G, (g + 1) * n_blocks // G,
                         st + g * size)
        _work_free(W)


cdef void _log_prob_block(const Model* M, Work* W, const floating* X, Py_ssize_t n0,
                          Py_ssize_t m, double* out, double* out_norm, bint resp) noexcept nogil:
    """Rows [n0, n0 + m): log-densities (or responsibilities) into out; with out_norm ==
    NULL (log-densities only, never with resp) no exp / log is computed at all."""
    cdef Py_ssize_t b
    _load_rows(X + n0 * M.D, m * M.D, W.xb)
    _block_log_prob(M, W, m, out + n0 * M.K)
    if out_norm == NULL:
        return
    for b in range(m):
        out_norm[n0 + b] = _lse_resp(out + (n0 + b) * M.K, M.K, 1.0, resp, W.act, W.n_act, W.e)


# ---------------------------------------------------------------------------------------
# Python-level setup (with the GIL): parameter layouts the loops want


cdef const double* _ptr(object a):
    """Address of a C-contiguous float64 array kept alive by the caller (NULL if None)."""
    if a is None or a.size == 0:
        return NULL
    cdef const double[::1] v = a.reshape(-1)
    return &v[0]


cdef class _Params:
    """The Model struct, the arrays its pointers point into, and the final unpacking."""
    cdef Model m
    cdef list keep

    def __init__(self, log_const, means, prec_chol, int cov, int D, int K):
        # prec_chol (and log_const) None: a statistics-only model (weighted_stats), which
        # never computes log-densities and needs only the means and the statistics layout.
        means = np.ascontiguousarray(means, dtype=np.float64)
        lp_means = means
        scale = prec = ucat = center = None
        gemm = prec_chol is not None and (cov == TIED or (cov == FULL and D >= BLAS_MIN_D))
        if prec_chol is not None:
            prec_chol = np.ascontiguousarray(prec_chol, dtype=np.float64)
        kc = K if cov == TIED else max(1, min(K, Y_COLS // D))
        if gemm:
            center = means.mean(axis=0)
            if cov == TIED:
                ucat = prec_chol
                lp_means = (means - center) @ prec_chol
            else:
                ucat = prec_chol.transpose(1, 0, 2).reshape(D, K * D)
                lp_means = np.einsum("ki,kij->kj", means - center, prec_chol)
            ucat = np.ascontiguousarray(ucat)
            lp_means = np.ascontiguousarray(lp_means)
        elif prec_chol is None:
            pass
        elif cov == FULL:
            prec = prec_chol
        elif cov == DIAG:
            scale = prec_chol
        elif cov == SPHERICAL:
            scale = np.ascontiguousarray(np.repeat(prec_chol[:, None], D, axis=1))
        if prec_chol is None:
            # Given responsibilities: rarely exactly 0, so skipping pairs (SPARSE) buys
            # nothing (and SPARSE needs _lse_resp's lists); the column sums beat DENSE's
            # per-row updates (D=4, K=8: 2-4x).
            mode = BLAS if (cov == FULL or cov == TIED) and D >= BLAS_MIN_D else COLS
        elif D <= DENSE_MAX_D and K >= DENSE_MIN_K:
            mode = DENSE
        elif (cov == FULL or cov == TIED) and D >= BLAS_MIN_D:
            mode = BLAS
        else:
            mode = SPARSE
        meansT = np.ascontiguousarray(means.T)
        self.keep = [log_const, means, meansT, lp_means, scale, prec, ucat, center]
        self.m.cov = cov
        self.m.mode = mode
        self.m.gemm = gemm
        self.m.D = D
        self.m.K = K
        self.m.P = D * (D + 1) // 2
        self.m.kc = kc
        self.m.log_const = _ptr(log_const)
        self.m.means = _ptr(means)
        self.m.meansT = _ptr(meansT)
        self.m.lp_means = _ptr(lp_means)
        self.m.scale = _ptr(scale)
        self.m.prec = _ptr(prec)
        self.m.ucat = _ptr(ucat)
        self.m.ld_ucat = D if cov == TIED else K * D
        self.m.center = _ptr(center)

    cdef Py_ssize_t stats_size(self):
        cdef Py_ssize_t D = self.m.D, K = self.m.K, per_k
        cdef int cov = self.m.cov, mode = self.m.mode
        if cov == DIAG or cov == SPHERICAL:
            per_k = D
        elif mode == BLAS:
            per_k = D * D
        else:
            per_k = self.m.P
        s2 = per_k * (1 if cov == TIED and mode != DENSE else K)
        return 1 + K + K * D + s2

    def finish(self, tot, nk, s1, s2):
        """Group-summed buffer -> nk, s1, s2 in the contract's layouts; return loglik."""
        cdef int D = self.m.D, K = self.m.K, P = self.m.P, cov = self.m.cov, mode = self.m.mode
        nk[...] = tot[1:1 + K]
        a = tot[1 + K:1 + K + K * D]
        b = tot[1 + K + K * D:]
        # Bring everything to component-major: s1 (K, D), s2 (K or 1, per-component).
        if mode == DENSE:
            s1[...] = a.reshape(D, K).T
            b = b.reshape(-1, K).T
            if cov == TIED:
                b = b.sum(axis=0, keepdims=True)
        else:
            s1[...] = a.reshape(K, D)
            b = b.reshape(K if (cov != TIED) else 1, -1)
        if cov == DIAG:
            s2[...] = b
        elif cov == SPHERICAL:
            s2[...] = b.sum(axis=1)
        elif mode == BLAS:
            S = b.reshape(-1, D, D)               # lower triangle (row-major) is filled
            S = np.tril(S) + np.swapaxes(np.tril(S, -1), -1, -2)
            s2[...] = S if cov == FULL else S[0]
        else:
            iu = np.triu_indices(D)               # packed upper triangle, row by row
            S = np.empty((b.shape[0], D, D))
            S[:, iu[0], iu[1]] = b
            S[:, iu[1], iu[0]] = b
            s2[...] = S if cov == FULL else S[0]
        return float(tot[0])


cdef object _stats_pass(_Params params, const floating[:, ::1] X, const double* sw,
                        const double* resp, int n_threads):
    """The statistics pass over X (see _stats_block for sw / resp): return the group
    buffers summed in group order, for _Params.finish."""
    cdef Py_ssize_t N = X.shape[0]
    cdef Py_ssize_t size = params.stats_size()
    cdef Py_ssize_t n_blocks = (N + BLOCK - 1) // BLOCK
    # The number of groups is a function of the shapes only, never of n_threads.
    cdef Py_ssize_t G = max(1, min(n_blocks, MAX_GROUPS, MAX_GROUP_BYTES // (8 * size)))
    groups = np.zeros((G, size))
    cdef double[:, ::1] st = groups
    cdef const floating* Xp = &X[0, 0] if N > 0 else NULL
    with nogil:
        _stats_groups(&params.m, Xp, sw, resp, N, G, &st[0, 0], size, n_threads)
    return groups.sum(axis=0)


# ---------------------------------------------------------------------------------------
# Public kernels (called positionally by emfast.kernels; arrays already validated)


def estep_stats(
    const floating[:, ::1] X,           # IN  (N, D) float32 or float64
    const double[::1] sample_weight,    # IN  (N,), or (0,): all weights 1
    const double[::1] log_const,        # IN  (K,)
    const double[:, ::1] means,         # IN  (K, D)
    prec_chol,                          # IN  full (K,D,D) | tied (D,D) | diag (K,D) | spherical (K,)
    int cov_code,                       # IN  0 full, 1 tied, 2 diag, 3 spherical
    double[::1] nk,                     # OUT (K,)
    double[:, ::1] s1,                  # OUT (K, D)
    s2,                                 # OUT full (K,D,D) | tied (D,D) | diag (K,D) | spherical (K,)
    int n_threads,                      # IN  OpenMP threads
):
    """Fused E-step over X: overwrite nk, s1, s2; return sum_n w_n logsumexp_k(log p)."""
    cdef int D = X.shape[1], K = means.shape[0]
    cdef _Params params = _Params(np.asarray(log_const), np.asarray(means), prec_chol,
                                  cov_code, D, K)
    cdef const double* sw = &sample_weight[0] if sample_weight.shape[0] > 0 else NULL
    tot = _stats_pass(params, X, sw, NULL, n_threads)
    return params.finish(tot, np.asarray(nk), np.asarray(s1), s2)


def weighted_stats(
    const floating[:, ::1] X,           # IN  (N, D) float32 or float64
    const double[:, ::1] resp,          # IN  (N, K) non-negative weights (e.g. posteriors)
    const double[:, ::1] means,         # IN  (K, D) statistics are centred on these
    int cov_code,                       # IN  0 full, 1 tied, 2 diag, 3 spherical
    double[::1] nk,                     # OUT (K,)
    double[:, ::1] s1,                  # OUT (K, D)
    s2,                                 # OUT full (K,D,D) | tied (D,D) | diag (K,D) | spherical (K,)
    int n_threads,                      # IN  OpenMP threads
):
    """The statistics of estep_stats for given responsibilities: overwrite nk, s1, s2."""
    cdef int D = X.shape[1], K = means.shape[0]
    cdef _Params params = _Params(None, np.asarray(means), None, cov_code, D, K)
    cdef bint empty = X.shape[0] == 0 or K == 0
    # resp == NULL would mean "E-step" to _stats_pass: no pass at all when empty
    if empty:
        tot = np.zeros(params.stats_size())
    else:
        tot = _stats_pass(params, X, NULL, &resp[0, 0], n_threads)
    params.finish(tot, np.asarray(nk), np.asarray(s1), s2)


def log_prob(
    const floating[:, ::1] X,           # IN  (N, D) float32 or float64
    const double[::1] log_const,        # IN  (K,)
    const double[:, ::1] means,         # IN  (K, D)
    prec_chol,                          # IN  see estep_stats
    int cov_code,                       # IN  0 full, 1 tied, 2 diag, 3 spherical
    double[:, ::1] out,                 # OUT (N, K) weighted log-probs, or responsibilities
    double[::1] out_norm,               # OUT (N,) logsumexp_k of the weighted log-probs,
                                        #     or (0,): not wanted (only with resp False)
    bint resp,                          # IN  True: write responsibilities into out
    int n_threads,                      # IN  OpenMP threads
):
    """Per-row weighted log-densities (or responsibilities) and their log-sum-exp.

    out_norm of shape (0,) skips the log-sum-exp: only the log-densities are written.
    """
    cdef Py_ssize_t N = X.shape[0]
    cdef int D = X.shape[1], K = means.shape[0]
    cdef bint want_norm = out_norm.shape[0] > 0
    if not want_norm and resp and N > 0:
        raise ValueError("responsibilities need the log-sum-exp: out_norm must have shape (N,)")
    cdef _Params params = _Params(np.asarray(log_const), np.asarray(means), prec_chol,
                                  cov_code, D, K)
    cdef Model M = params.m
    cdef Py_ssize_t n_blocks = (N + BLOCK - 1) // BLOCK
    cdef const floating* Xp = &X[0, 0] if N > 0 else NULL
    cdef double* outp = &out[0, 0] if N > 0 else NULL
    cdef double* normp = &out_norm[0] if N > 0 and want_norm else NULL
    cdef Py_ssize_t blk
    cdef Work* W = NULL

    if N > 0:
        with nogil, parallel(num_threads=n_threads):
            W = _work_alloc(&M)
            for blk in prange(n_blocks, schedule="static"):
                _log_prob_block(&M, W, Xp, blk * BLOCK, min(<Py_ssize_t> BLOCK, N - blk * BLOCK),
                                outp, normp, resp)
            _work_free(W)


def _set_thresholds(int blas_min_d, int dense_max_d, int dense_min_k):
    """Tuning hook for benchmarks and tests: D from which full/tied use BLAS; D up to which
    and K from which the statistics are dense. Returns the old values. Not part of the
    kernel contract."""
    global BLAS_MIN_D, DENSE_MAX_D, DENSE_MIN_K
    old = (BLAS_MIN_D, DENSE_MAX_D, DENSE_MIN_K)
    BLAS_MIN_D = blas_min_d
    DENSE_MAX_D = dense_max_d
    DENSE_MIN_K = dense_min_k
    return old


def _exp_nonpos(const double[::1] x, double[::1] out):
    """Test hook: out[i] = the kernels' exp(x[i]) for x[i] <= 0 (see _fastexp.h), through
    a loop like the one in _lse_resp. Not part of the kernel contract."""
    cdef Py_ssize_t i
    with nogil:
        for i in range(x.shape[0]):
            out[i] = emfast_exp_nonpos(x[i])


cdef extern from *:
    """
    #if EMFAST_OPENMP
    #include <omp.h>
    static int emfast_omp_max_threads(void) { return omp_get_max_threads(); }
    #else
    static int emfast_omp_max_threads(void) { return 1; }
    #endif
    """
    int emfast_omp_max_threads() nogil
    int EMFAST_OPENMP


def openmp_enabled():
    """Whether this extension was compiled with OpenMP (False: the kernels run serially)."""
    return bool(EMFAST_OPENMP)


def openmp_max_threads():
    """OpenMP's default thread count in this process (1 without OpenMP)."""
    return emfast_omp_max_threads()
