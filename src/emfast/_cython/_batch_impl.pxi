# The body of the Cython + OpenMP batch-EM kernel (emfast.fit_many), shared by the two
# extension modules built from it (see setup.py and emfast._config): _batch.pyx (baseline
# instruction set) and _batch_avx2.pyx (-mavx2 -mfma, imported when the CPU has both). The
# design notes are the docstring of _batch.pyx.

include "_openmp.pxi"

from cython.parallel cimport parallel, prange
from libc.stdint cimport int64_t, int8_t
from libc.stdlib cimport malloc, free
from libc.math cimport log, sqrt, fabs, INFINITY, NAN

cdef extern from "_fastexp.h":
    # exp(x) for x <= 0, relative error < 2e-15 (tests/test_kernels.py)
    double emfast_exp_nonpos(double x) noexcept nogil

cdef enum:
    LOG_GROUP = 16           # E-step: rows whose log-sum-exp share one log (_block_resp)

cdef enum Cov:
    FULL = 0
    TIED = 1
    DIAG = 2
    SPHERICAL = 3

cdef enum Init:              # emfast.batch.INIT_CODES
    KMEANS = 0
    PLUSPLUS = 1
    RANDOM = 2
    FROM_DATA = 3

cdef enum Status:            # emfast.batch: status_ codes
    OK = 0
    FALLBACK = 1             # degenerate (see above): to be fitted by GaussianMixture

cdef double NK_EPS = 10 * 2.220446049250313e-16     # emfast.mixture._gaussian.NK_EPS
cdef double EMPTY_FRACTION = 1e-8                    # ... .EMPTY_FRACTION
cdef double HALF_LOG_2PI = 0.9189385332046727       # 0.5 * log(2 pi)


cdef enum Given:             # emfast.batch.GIVEN_BITS: the *_init parameters given
    GIVEN_WEIGHTS = 1
    GIVEN_MEANS = 2
    GIVEN_PRECISIONS = 4
    GIVEN_ALL = 7


include "_kmeans_batch.pxi"


ctypedef struct Spec:        # what every problem of the call shares
    int K, D, cov, init, max_iter, n_init, T, given
    Py_ssize_t S             # doubles of one covariance (and precision factor) array
    double reg, tol


ctypedef struct Params:
    double* w                # (K,)
    double* mu               # (K, D)
    double* cov              # (S,) by type: full (K, D, D), tied (D, D), diag (K, D), sph (K,)
    double* pc               # (S,) upper-triangular precision factors, the same layout


ctypedef struct Work:        # per-thread scratch, allocated once per call and thread
    Params cur               # the running restart's parameters
    KMeans km                # k-means scratch, and the running problem's sample weights
    double wsum              # their sum (N when unweighted)
    double kmeans_tol        # the running problem's Lloyd tolerance on the squared shift
    double* logc             # (K,) log w + log det U - D/2 log 2 pi
    double* nk               # (K,) statistics about `centre`
    double* s1               # (K, D)
    double* s2               # (S,) second moments, upper triangle mirrored for full/tied
    double* centre           # (K, D)
    double* mean             # (D,) the problem's (weighted) column mean
    double* xc               # (N_max, D) the problem's rows less their mean (k-means)
    double* hist             # (max_iter,) lower bounds of the running restart
    double* xT               # (D, N_max) the problem's rows, feature-major (E-step)
    double* lp               # (K, BLOCK) a block's log-probabilities, then responsibilities
    double* q                # (BLOCK,) squared Mahalanobis distances, then 1 / row sums
    double* mx               # (BLOCK,) each row's largest log-probability
    double* y                # (BLOCK,) one coordinate of (x - mu) U
    double* diff             # (D,) a row less a centre
    double* dk               # (D, BLOCK) a block's rows less a mean, feature-major
    double* rdk              # (D, BLOCK) the same times the responsibilities
    double* chol             # (D, D) one Cholesky factor


cdef Py_ssize_t cov_size(int cov, int K, int D) noexcept nogil:
    if cov == FULL:
        return <Py_ssize_t> K * D * D
    if cov == TIED:
        return <Py_ssize_t> D * D
    if cov == DIAG:
        return <Py_ssize_t> K * D
    return K


cdef inline double* _line(double* p) noexcept nogil:
    """p rounded up to the next 64-byte boundary: the row buffers the block loops read as
    vectors start on a cache line (where they fell 8 bytes off one, vectors split lines:
    6% of a B1 fit)."""
    return p + (64 - <size_t> p % 64) % 64 // 8


cdef Work* _work_alloc(const Spec* s, Py_ssize_t n_max) noexcept nogil:
    cdef int K = s.K, D = s.D, T = s.T
    cdef Py_ssize_t S = s.S
    cdef Py_ssize_t size = ((K + K * D + 2 * S) + K + K + K * D + S + K * D
                            + D + 2 * n_max * D + max(s.max_iter, 1)
                            + (K + 3 + 2 * D) * BLOCK + D + D * D
                            + 4 * 8)          # what _line skips: at most 7 doubles, 4 times
    cdef Work* W = <Work*> malloc(sizeof(Work))
    if W == NULL:
        return NULL
    cdef double* p = <double*> malloc((size + _kmeans_doubles(K, D, T, n_max))
                                      * sizeof(double))
    cdef int64_t* q = <int64_t*> malloc(_kmeans_ints(K, T, n_max) * sizeof(int64_t))
    if p == NULL or q == NULL:
        free(p)
        free(q)
        free(W)
        return NULL
    W.cur.w = p
    W.cur.mu = p + K
    W.cur.cov = W.cur.mu + K * D
    W.cur.pc = W.cur.cov + S
    W.logc = W.cur.pc + S
    W.nk = W.logc + K
    W.s1 = W.nk + K
    W.s2 = W.s1 + K * D
    W.centre = W.s2 + S
    W.mean = W.centre + K * D
    W.xc = _line(W.mean + D)
    W.hist = W.xc + n_max * D
    W.xT = _line(W.hist + max(s.max_iter, 1))
    W.lp = _line(W.xT + n_max * D)
    W.q = W.lp + K * BLOCK
    W.mx = W.q + BLOCK
    W.y = W.mx + BLOCK
    W.diff = W.y + BLOCK
    W.dk = _line(W.diff + D)
    W.rdk = W.dk + D * BLOCK
    W.chol = W.rdk + D * BLOCK
    _kmeans_init(&W.km, K, D, T, n_max, W.chol + D * D, q)
    return W


cdef void _work_free(Work* W) noexcept nogil:
    if W != NULL:
        free(W.cur.w)
        free(W.km.labels)
        free(W)


# ---------------------------------------------------------------------------------------
# statistics: nk, s1 = sum r (x - centre_k), s2 = sum r (x - centre_k)(x - centre_k)^T
# shaped by the covariance type; full and tied accumulate the upper triangle (_stats_end
# mirrors it).

cdef inline void _add_row(const Spec* s, Work* W, const double* x, int k, double r) noexcept nogil:
    cdef int D = s.D, i, j
    cdef double* d = W.diff
    cdef double* s2
    cdef double a, q
    W.nk[k] += r
    for i in range(D):
        d[i] = x[i] - W.centre[k * D + i]
        W.s1[k * D + i] += r * d[i]
    if s.cov == FULL or s.cov == TIED:
        s2 = W.s2 + (k * D * D if s.cov == FULL else 0)
        for i in range(D):
            a = r * d[i]
            for j in range(i, D):
                s2[i * D + j] += a * d[j]
    elif s.cov == DIAG:
        for i in range(D):
            W.s2[k * D + i] += r * d[i] * d[i]
    else:
        q = 0.0
        for i in range(D):
            q += d[i] * d[i]
        W.s2[k] += r * q


cdef void _stats_begin(const Spec* s, Work* W) noexcept nogil:
    _zero(W.nk, s.K)
    _zero(W.s1, s.K * s.D)
    _zero(W.s2, s.S)


cdef void _stats_end(const Spec* s, Work* W) noexcept nogil:
    """Mirror the upper triangles of full / tied second moments."""
    cdef int D = s.D, k, i, j, n_mat
    cdef double* m
    if s.cov != FULL and s.cov != TIED:
        return
    n_mat = s.K if s.cov == FULL else 1
    for k in range(n_mat):
        m = W.s2 + k * D * D
        for i in range(D):
            for j in range(i):
                m[i * D + j] = m[j * D + i]


cdef void _label_stats(const Spec* s, Work* W, const double* X, Py_ssize_t N) noexcept nogil:
    """Statistics of every row (with its weight) assigned to its nearest centre (W.centre),
    about it."""
    cdef Py_ssize_t n
    cdef double d
    _stats_begin(s, W)
    for n in range(N):
        _add_row(s, W, X + n * s.D, _nearest(X + n * s.D, W.centre, s.K, s.D, &d),
                 _wt(W.km.sw, n))
    _stats_end(s, W)


cdef void _resp_stats(const Spec* s, Work* W, const double* X, Py_ssize_t N,
                      const double* resp) noexcept nogil:
    """Statistics of the responsibilities resp (N, K), times the sample weights, about the
    (weighted) column mean W.mean."""
    cdef Py_ssize_t n
    cdef int k
    cdef double w
    for k in range(s.K):
        _copy(W.centre + k * s.D, W.mean, s.D)
    _stats_begin(s, W)
    for n in range(N):
        w = _wt(W.km.sw, n)
        for k in range(s.K):
            _add_row(s, W, X + n * s.D, k, resp[n * s.K + k] * w)
    _stats_end(s, W)


cdef void _unit_stats(const Spec* s, Work* W, const int64_t* rows) noexcept nogil:
    """Components of one row each (W.centre, from the rows ``rows``), centred on it: nk =
    the row's weight, s1 = s2 = 0 (emfast.mixture._gaussian.stats_from_rows)."""
    cdef int k
    _stats_begin(s, W)
    for k in range(s.K):
        W.nk[k] = _wt(W.km.sw, rows[k])


# ---------------------------------------------------------------------------------------
# M-step (emfast.mixture._gaussian.mstep_moments, precision_cholesky)

cdef void _mstep(const Spec* s, Work* W, bint initial) noexcept nogil:
    """W.cur's weights, means, covariances from the statistics. ``initial``: scikit-learn's
    unnormalised starting weights (nk + eps) / (the sum of the sample weights)."""
    cdef int K = s.K, D = s.D, k, i, j
    cdef double tot = 0.0, nke, a, corr
    cdef double* d = W.diff
    cdef double* cov = W.cur.cov
    cdef double* m
    cdef const double* s1
    if s.cov == TIED:
        _zero(cov, D * D)
    for k in range(K):
        nke = W.nk[k] + NK_EPS
        tot += nke
        s1 = W.s1 + k * D
        for i in range(D):
            d[i] = s1[i] / nke
            W.cur.mu[k * D + i] = W.centre[k * D + i] + d[i]
        if s.cov == FULL or s.cov == TIED:
            # scatter about the new mean: s2 - (d s1^T + s1 d^T - nk d d^T)
            m = cov + (k * D * D if s.cov == FULL else 0)
            for i in range(D):
                for j in range(D):
                    corr = (d[i] * s1[j] + s1[i] * d[j]) - W.nk[k] * (d[i] * d[j])
                    if s.cov == FULL:
                        m[i * D + j] = (W.s2[k * D * D + i * D + j] - corr) / nke
                    else:
                        m[i * D + j] += corr       # summed corrections, subtracted below
        elif s.cov == DIAG:
            for i in range(D):
                corr = 2.0 * d[i] * s1[i] - W.nk[k] * d[i] * d[i]
                cov[k * D + i] = (W.s2[k * D + i] - corr) / nke + s.reg
        else:
            a = 0.0
            for i in range(D):
                a += 2.0 * d[i] * s1[i] - W.nk[k] * d[i] * d[i]
            cov[k] = (W.s2[k] - a) / (nke * D) + s.reg
        W.cur.w[k] = nke
    if s.cov == TIED:
        for i in range(D * D):
            cov[i] = (W.s2[i] - cov[i]) / tot
        for i in range(D):
            for j in range(i):
                a = (cov[i * D + j] + cov[j * D + i]) * 0.5
                cov[i * D + j] = a
                cov[j * D + i] = a
    if s.cov == FULL or s.cov == TIED:
        for k in range(K if s.cov == FULL else 1):
            for i in range(D):
                cov[k * D * D + i * D + i] += s.reg
    for k in range(K):
        W.cur.w[k] = (W.nk[k] + NK_EPS) / W.wsum if initial else W.cur.w[k] / tot


include "_cholesky.pxi"


cdef int _precisions(const Spec* s, Work* W) noexcept nogil:
    """W.cur.pc from W.cur.cov, and W.logc; FALLBACK where a covariance is not positive
    definite (GaussianMixture regularises it)."""
    cdef int K = s.K, D = s.D, k, i, n_mat
    cdef Params* p = &W.cur
    if s.cov == FULL or s.cov == TIED:
        n_mat = K if s.cov == FULL else 1
        for k in range(n_mat):
            if _cholesky_prec(p.cov + k * D * D, D, W.chol, p.pc + k * D * D) != OK:
                return FALLBACK
    else:
        for i in range(s.S):
            if not p.cov[i] > 0.0:
                return FALLBACK
            p.pc[i] = 1.0 / sqrt(p.cov[i])
    _log_norms(s, W)
    return OK


cdef void _log_norms(const Spec* s, Work* W) noexcept nogil:
    """W.logc from W.cur.w and W.cur.pc."""
    cdef int K = s.K, D = s.D, k, i
    cdef double ld
    cdef Params* p = &W.cur
    for k in range(K):
        ld = 0.0
        if s.cov == FULL or s.cov == TIED:
            for i in range(D):
                ld += log(p.pc[(k * D * D if s.cov == FULL else 0) + i * D + i])
        elif s.cov == DIAG:
            for i in range(D):
                ld += log(p.pc[k * D + i])
        else:
            ld = D * log(p.pc[k])
        W.logc[k] = (ld - D * HALF_LOG_2PI) + log(p.w[k])


# ---------------------------------------------------------------------------------------
# E-step

cdef void _block_logp(const Spec* s, Work* W, Py_ssize_t N, Py_ssize_t n0,
                      Py_ssize_t m) noexcept nogil:
    """W.lp[k, b] = log w_k + log N(x_b | k) for the rows n0..n0+m, from X feature-major
    (W.xT): the loops over the block's rows are innermost, so that they vectorise."""
    cdef int D = s.D, k, i, j
    cdef Py_ssize_t b
    cdef const double* x
    cdef const double* mu
    cdef const double* U
    cdef double* q = W.q
    cdef double* y = W.y
    cdef double* lp
    cdef double u, c, mi
    for k in range(s.K):
        mu = W.cur.mu + k * D
        for b in range(m):
            q[b] = 0.0
        if s.cov == FULL or s.cov == TIED:
            # coordinate j of (x - mu) U: sum over i <= j of (x_i - mu_i) U_ij
            U = W.cur.pc + (k * D * D if s.cov == FULL else 0)
            for j in range(D):
                for b in range(m):
                    y[b] = 0.0
                for i in range(j + 1):
                    x = W.xT + i * N + n0
                    u = U[i * D + j]
                    mi = mu[i]
                    for b in range(m):
                        y[b] += (x[b] - mi) * u
                for b in range(m):
                    q[b] += y[b] * y[b]
        else:
            for i in range(D):
                x = W.xT + i * N + n0
                u = W.cur.pc[k * D + i] if s.cov == DIAG else W.cur.pc[k]
                mi = mu[i]
                for b in range(m):
                    q[b] += ((x[b] - mi) * u) * ((x[b] - mi) * u)
        lp = W.lp + k * BLOCK
        c = W.logc[k]
        for b in range(m):
            lp[b] = c - 0.5 * q[b]


cdef double _block_resp(const Spec* s, Work* W, Py_ssize_t n0, Py_ssize_t m) noexcept nogil:
    """W.lp (rows n0..n0+m) to responsibilities times the sample weights (log-sum-exp, the
    row max subtracted); returns the block's weighted log-likelihood."""
    cdef int k
    cdef Py_ssize_t b
    cdef double* lp
    cdef double* mx = W.mx
    cdef double* tot = W.q
    cdef double loglik = 0.0, prod
    cdef Py_ssize_t g
    for b in range(m):
        mx[b] = W.lp[b]
        tot[b] = 0.0
    for k in range(1, s.K):
        lp = W.lp + k * BLOCK
        for b in range(m):
            mx[b] = lp[b] if lp[b] > mx[b] else mx[b]
    for k in range(s.K):
        lp = W.lp + k * BLOCK
        for b in range(m):
            lp[b] = emfast_exp_nonpos(lp[b] - mx[b])
            tot[b] += lp[b]
    if W.km.sw != NULL:      # each row's log-likelihood times its weight
        for b in range(m):
            loglik += W.km.sw[n0 + b] * (mx[b] + log(tot[b]))
            tot[b] = W.km.sw[n0 + b] / tot[b]
    else:
        for b in range(m):
            loglik += mx[b]
        # each row sum is in [1, K] (its largest term is 1): the log of a product of
        # LOG_GROUP of them cannot overflow for any K below 10**19, and costs one log
        # instead of 16
        for g in range((m + LOG_GROUP - 1) // LOG_GROUP):
            prod = 1.0
            for b in range(g * LOG_GROUP, min((g + 1) * LOG_GROUP, m)):
                prod *= tot[b]
            loglik += log(prod)
        for b in range(m):
            tot[b] = 1.0 / tot[b]
    for k in range(s.K):
        lp = W.lp + k * BLOCK
        for b in range(m):
            lp[b] *= tot[b]
    return loglik


cdef inline double _sum(const double* a, Py_ssize_t m) noexcept nogil:
    """sum of a[0..m) in four interleaved partial sums (a fixed order that vectorises)."""
    cdef double p0 = 0.0, p1 = 0.0, p2 = 0.0, p3 = 0.0
    cdef Py_ssize_t b = 0
    while b + 4 <= m:
        p0 += a[b]
        p1 += a[b + 1]
        p2 += a[b + 2]
        p3 += a[b + 3]
        b += 4
    while b < m:
        p0 += a[b]
        b += 1
    return (p0 + p1) + (p2 + p3)


cdef inline double _dot(const double* a, const double* c, Py_ssize_t m) noexcept nogil:
    """sum of a[b] c[b] over b < m, in _sum's order."""
    cdef double p0 = 0.0, p1 = 0.0, p2 = 0.0, p3 = 0.0
    cdef Py_ssize_t b = 0
    while b + 4 <= m:
        p0 += a[b] * c[b]
        p1 += a[b + 1] * c[b + 1]
        p2 += a[b + 2] * c[b + 2]
        p3 += a[b + 3] * c[b + 3]
        b += 4
    while b < m:
        p0 += a[b] * c[b]
        b += 1
    return (p0 + p1) + (p2 + p3)


cdef void _block_stats(const Spec* s, Work* W, Py_ssize_t N, Py_ssize_t n0,
                       Py_ssize_t m) noexcept nogil:
    """The block's rows, weighted by the responsibilities W.lp, into the statistics about
    the means (W.centre); vector loops over the rows, as _block_logp."""
    cdef int D = s.D, k, i, j
    cdef Py_ssize_t b
    cdef const double* x
    cdef const double* r
    cdef double* d
    cdef double* rd
    cdef double* s2
    cdef double c
    for k in range(s.K):
        r = W.lp + k * BLOCK
        for i in range(D):
            x = W.xT + i * N + n0
            d = W.dk + i * BLOCK
            rd = W.rdk + i * BLOCK
            c = W.centre[k * D + i]
            for b in range(m):
                d[b] = x[b] - c
                rd[b] = r[b] * d[b]
        W.nk[k] += _sum(r, m)
        for i in range(D):
            W.s1[k * D + i] += _sum(W.rdk + i * BLOCK, m)
        if s.cov == FULL or s.cov == TIED:
            s2 = W.s2 + (k * D * D if s.cov == FULL else 0)
            for i in range(D):
                for j in range(i, D):
                    s2[i * D + j] += _dot(W.rdk + i * BLOCK, W.dk + j * BLOCK, m)
        elif s.cov == DIAG:
            for i in range(D):
                W.s2[k * D + i] += _dot(W.rdk + i * BLOCK, W.dk + i * BLOCK, m)
        else:
            for i in range(D):
                W.s2[k] += _dot(W.rdk + i * BLOCK, W.dk + i * BLOCK, m)


cdef double _estep(const Spec* s, Work* W, Py_ssize_t N) noexcept nogil:
    """Statistics about the current means, block by block of rows; returns the (weighted)
    log-likelihood."""
    cdef Py_ssize_t blk, n0, m
    cdef double loglik = 0.0
    _copy(W.centre, W.cur.mu, s.K * s.D)
    _stats_begin(s, W)
    for blk in range((N + BLOCK - 1) // BLOCK):
        n0 = blk * BLOCK
        m = min(<Py_ssize_t> BLOCK, N - n0)
        _block_logp(s, W, N, n0, m)
        loglik += _block_resp(s, W, n0, m)
        _block_stats(s, W, N, n0, m)
    _stats_end(s, W)
    return loglik


# ---------------------------------------------------------------------------------------
# one restart, one problem

cdef int _initialise(const Spec* s, Work* W, const double* X, Py_ssize_t N,
                     const int64_t* idx, const double* u, const double* resp,
                     const Params* given) noexcept nogil:
    """W.cur from init_params and the given *_init parameters
    (emfast.GaussianMixture._initial_params): with all three given no initialisation runs;
    otherwise the given ones replace those of the initial M-step."""
    if s.given != GIVEN_ALL:
        if _initial_stats(s, W, X, N, idx, u, resp) != OK:
            return FALLBACK
        _mstep(s, W, True)
    if s.given & GIVEN_WEIGHTS:
        _copy(W.cur.w, given.w, s.K)
    if s.given & GIVEN_MEANS:
        _copy(W.cur.mu, given.mu, s.K * s.D)
    if s.given & GIVEN_PRECISIONS:
        _copy(W.cur.cov, given.cov, s.S)
        _copy(W.cur.pc, given.pc, s.S)
        _log_norms(s, W)
        return OK
    return _precisions(s, W)


cdef int _initial_stats(const Spec* s, Work* W, const double* X, Py_ssize_t N,
                        const int64_t* idx, const double* u, const double* resp) noexcept nogil:
    """The statistics of init_params' start (emfast.GaussianMixture._initial_stats), from
    the problem's centred rows of _prepare_problem."""
    cdef int D = s.D, i, k
    if s.init == KMEANS:
        if _kmeans_plusplus(&W.km, W.xc, N, idx[0], u, W.centre) != OK:
            return FALLBACK
        if _lloyd(&W.km, W.xc, N, W.kmeans_tol, W.centre) != OK:
            return FALLBACK
        for k in range(s.K):
            for i in range(D):
                W.centre[k * D + i] += W.mean[i]
        _label_stats(s, W, X, N)
    elif s.init == PLUSPLUS:
        if _kmeans_plusplus(&W.km, X, N, idx[0], u, W.centre) != OK:
            return FALLBACK
        _unit_stats(s, W, W.km.rows)
    elif s.init == RANDOM:
        _resp_stats(s, W, X, N, resp)
    else:
        for k in range(s.K):
            _copy(W.centre + k * D, X + idx[k] * D, D)
        _unit_stats(s, W, idx)
    return OK


cdef void _prepare_problem(const Spec* s, Work* W, const double* X, Py_ssize_t N,
                           const double* sw, double wsum) noexcept nogil:
    """What every restart of the problem shares: its weights (W.km.sw, W.wsum), its rows
    feature-major (W.xT, the E-step's layout) and, for the starts that use them, its
    weighted column mean (W.mean) and for k-means its rows less that mean (W.xc, the rows
    emfast.mixture._kmeans.kmeans clusters) and Lloyd's tolerance: 1e-4 times their mean
    weighted variance (_kmeans._mean_square)."""
    cdef Py_ssize_t n
    cdef int D = s.D, i
    cdef double sq = 0.0, w
    W.km.sw = sw
    W.wsum = wsum
    for n in range(N):
        for i in range(D):
            W.xT[i * N + n] = X[n * D + i]
    if s.given == GIVEN_ALL or (s.init != KMEANS and s.init != RANDOM):
        return
    _column_mean(X, sw, wsum, N, D, W.mean)
    if s.init != KMEANS:
        return
    for n in range(N):
        w = _wt(sw, n)
        for i in range(D):
            W.xc[n * D + i] = X[n * D + i] - W.mean[i]
            sq += w * (W.xc[n * D + i] * W.xc[n * D + i])
    W.kmeans_tol = LLOYD_TOL * sq / (wsum * D)


cdef int _em(const Spec* s, Work* W, const double* X, Py_ssize_t N, double* lower_bound,
             int* n_iter, bint* converged) noexcept nogil:
    """EM from W.cur (emfast._em.em_loop with ToleranceRule): E-step, M-step, then the
    lower bound of the E-step (weighted mean log-likelihood) checked against the previous
    one.
    FALLBACK where GaussianMixture would re-seed a component or regularise a covariance."""
    cdef int it, k
    cdef double prev = -INFINITY, lower = -INFINITY, loglik
    n_iter[0] = 0
    converged[0] = False
    for it in range(1, s.max_iter + 1):
        n_iter[0] = it
        loglik = _estep(s, W, N)
        _mstep(s, W, False)
        for k in range(s.K):
            if W.nk[k] <= EMPTY_FRACTION * W.wsum:
                return FALLBACK
        if _precisions(s, W) != OK:
            return FALLBACK
        lower = loglik / W.wsum
        W.hist[it - 1] = lower
        if fabs(lower - prev) < s.tol:
            converged[0] = True
            break
        prev = lower
    lower_bound[0] = lower
    return OK


cdef int _fit_problem(const Spec* s, Work* W, const double* X, Py_ssize_t N,
                      const double* sw, double wsum, const int64_t* idx, const double* u,
                      Py_ssize_t u_stride, const double* resp, const Params* given, double* w,
                      double* mu, double* cov, double* pc, double* lower_bound, double* hist,
                      int64_t* n_iter, int8_t* converged) noexcept nogil:
    """All restarts of one problem (sample weights sw, NULL: all 1; wsum their sum); the
    best (highest lower bound, the first on ties) into the outputs (emfast._em.best_run)."""
    cdef int r, it, n_it = 0
    cdef bint conv = False
    cdef double lb = -INFINITY
    _prepare_problem(s, W, X, N, sw, wsum)
    for r in range(s.n_init):
        if _initialise(s, W, X, N, idx + r * s.K, u + r * u_stride,
                       NULL if resp == NULL else resp + r * N * s.K, given) != OK:
            return FALLBACK
        if _em(s, W, X, N, &lb, &n_it, &conv) != OK:
            return FALLBACK
        if r == 0 or lb > lower_bound[0]:
            lower_bound[0] = lb
            n_iter[0] = n_it
            converged[0] = conv
            _copy(w, W.cur.w, s.K)
            _copy(mu, W.cur.mu, s.K * s.D)
            _copy(cov, W.cur.cov, s.S)
            _copy(pc, W.cur.pc, s.S)
            for it in range(s.max_iter):
                hist[it] = W.hist[it] if it < n_it else NAN
    return OK


cdef inline Params _params_of(const double* w, const double* mu, const double* cov,
                              const double* pc) noexcept nogil:
    cdef Params p
    p.w = <double*> w
    p.mu = <double*> mu
    p.cov = <double*> cov
    p.pc = <double*> pc
    return p


def fit_many(
    const double[:, ::1] X,             # IN  (total rows, D) the problems' rows, stacked
    const int64_t[::1] offsets,         # IN  (P + 1,) problem p: rows offsets[p]..offsets[p+1]
                                        #     (at least max(2, K) rows each)
    const double[::1] sample_weight,    # IN  (total rows,) the rows' weights, or (0,): all 1
    const double[::1] weight_sum,       # IN  (P,) each problem's sum of its weights (or N)
    int K, int cov_code,                # IN  components; 0 full, 1 tied, 2 diag, 3 spherical
    double reg_covar, double tol,       # IN  GaussianMixture's
    int max_iter, int n_init,           # IN  GaussianMixture's
    int init_code,                      # IN  0 kmeans, 1 k-means++, 2 random, 3 random_from_data
    int n_trials,                       # IN  k-means++ local trials, 2 + int(log K)
    const int64_t[::1] draw_of,         # IN  (P,) problem p's set of random numbers, s:
    const int64_t[:, :, ::1] idx,       # IN  (sets, n_init, K) kmeans, k-means++: the first
                                        #     row in [.., 0]; random_from_data: the K rows
    const double[:, :, ::1] u,          # IN  (sets, n_init, >= (K - 1) n_trials) k-means++
                                        #     uniforms, round by round
    const double[::1] resp,             # IN  random: responsibilities, set s at resp_off[s],
    const int64_t[::1] resp_off,        #     (n_init, N, K) rows normalised; else (0,)
    int given_bits,                     # IN  which *_init are given: 1 weights, 2 means,
                                        #     4 precisions (emfast.batch.GIVEN_BITS)
    const double[:, ::1] w_init,        # IN  (R, K) weights_init; R = 1 (every problem) or P
    const double[:, :, ::1] mu_init,    # IN  (R, K, D) means_init
    const double[:, ::1] cov_init,      # IN  (R, S) covariances of precisions_init
    const double[:, ::1] pc_init,       # IN  (R, S) its upper-triangular factors
    double[:, ::1] weights,             # OUT (P, K)
    double[:, :, ::1] means,            # OUT (P, K, D)
    double[:, ::1] covariances,         # OUT (P, S) each problem's covariances, by type
    double[:, ::1] prec_chol,           # OUT (P, S) their upper-triangular precision factors
    double[::1] lower_bound,            # OUT (P,)
    double[:, ::1] lower_bounds,        # OUT (P, max(max_iter, 1)) per iteration, NaN after
    int64_t[::1] n_iter,                # OUT (P,)
    int8_t[::1] converged,              # OUT (P,)
    int8_t[::1] status,                 # IN/OUT (P,) 0: fit it, else skip; OUT 0 fitted,
                                        #     1 FALLBACK (degenerate: fit it alone)
    int n_threads,                      # IN  OpenMP threads
):
    """Fit the P problems, one per thread at a time (schedule dynamic: sizes may differ)."""
    cdef Py_ssize_t P = offsets.shape[0] - 1, p, N, n_max = 0
    cdef Spec s
    s.K = K
    s.D = X.shape[1]
    s.cov = cov_code
    s.init = init_code
    s.max_iter = max_iter
    s.n_init = n_init
    s.T = n_trials
    s.given = given_bits
    s.S = cov_size(cov_code, K, s.D)
    s.reg = reg_covar
    s.tol = tol
    for p in range(P):
        n_max = max(n_max, offsets[p + 1] - offsets[p])
    cdef const double* rp = &resp[0] if resp.shape[0] > 0 else NULL
    cdef const double* swp = &sample_weight[0] if sample_weight.shape[0] > 0 else NULL
    cdef Py_ssize_t u_stride = u.shape[2]
    cdef Work* W = NULL
    cdef Params given
    cdef Py_ssize_t g
    if P == 0:
        return
    with nogil, parallel(num_threads=n_threads):
        W = _work_alloc(&s, n_max)
        for p in prange(P, schedule="dynamic"):
            if status[p] != OK:
                continue
            if W == NULL:           # out of memory: the problem goes back to GaussianMixture
                status[p] = FALLBACK
                continue
            N = offsets[p + 1] - offsets[p]
            g = p if w_init.shape[0] == P else 0
            # assigned whole (not field by field), so that prange makes it thread-private
            given = _params_of(&w_init[g, 0], &mu_init[g, 0, 0], &cov_init[g, 0],
                               &pc_init[g, 0])
            status[p] = _fit_problem(
                &s, W, &X[offsets[p], 0], N, NULL if swp == NULL else swp + offsets[p],
                weight_sum[p], &idx[draw_of[p], 0, 0], &u[draw_of[p], 0, 0],
                u_stride, NULL if rp == NULL else rp + resp_off[draw_of[p]], &given,
                &weights[p, 0], &means[p, 0, 0], &covariances[p, 0], &prec_chol[p, 0],
                &lower_bound[p], &lower_bounds[p, 0], &n_iter[p], &converged[p])
        _work_free(W)
