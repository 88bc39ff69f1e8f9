# The body of the batch Gaussian-HMM kernel (emfast.fit_many_hmm), shared by _hmm_batch.pyx
# (baseline instruction set) and _hmm_batch_avx2.pyx (-mavx2 -mfma). The design notes are
# the docstring of _hmm_batch.pyx.

include "_openmp.pxi"
include "_hmm_scaled.pxi"

from libc.stdint cimport int8_t
from libc.math cimport sqrt

cdef enum Cov:               # emfast.kernels.COVARIANCE_TYPES
    FULL = 0
    TIED = 1
    DIAG = 2
    SPHERICAL = 3

cdef enum Status:            # emfast.hmm_batch: status codes
    OK = 0
    FALLBACK = 1             # not finished here: to be fitted by GaussianHMM itself

cdef enum Letter:            # emfast.hmm_batch.LETTER_BITS: the parameters EM updates
    UPDATE_S = 1
    UPDATE_T = 2
    UPDATE_M = 4
    UPDATE_C = 8

cdef double LOG_2PI = 1.8378770664093453   # math.log(2 pi), as kernels.log_normalizer
cdef double COV_DENOM_FLOOR = 1e-5     # GaussianEmission.m_step: max(c_d, 1e-5), diag

include "_cholesky.pxi"
include "_kmeans_batch.pxi"


ctypedef struct Spec:        # what every problem of a call shares
    int K, D, cov, letters, max_iter
    int n_kmeans             # the start's k-means restarts (GaussianEmission's KMEANS)
    Py_ssize_t S             # compact covariance size by type
    double tol
    double min_covar         # GaussianHMM's, added to the start's covariances
    const double* sp_prior   # (K,)
    const double* tp_prior   # (K, K)
    const double* m0         # (K, D) means_prior
    const double* mw         # (K, D) means_weight (full, tied: column 0 is the state's)
    const double* cp         # covars_prior: (K, D) diag/spherical, (K, D, D), (D, D) tied
    const double* cw         # covars_weight: (K, D) diag/spherical, (K,) full, (1,) tied


ctypedef struct BWork:       # per-thread scratch, allocated once per thread
    Work* fb                 # the single-sequence forward-backward's
    double* le               # (Nmax, K) log-emissions, then alphas and posteriors
    double* AT               # (K, K)
    double* R                # (K, K) sum_t alpha_{t-1} w_t^T (xi = A * R)
    double* start            # (K,)
    double* nk               # (K,)
    double* s1               # (K, D) about the current means
    double* s2               # (S2,) by type: (K, D) diag/spherical, (K, D, D), (D, D)
    double* mu               # (K, D) new means
    double* pc               # (S,) precision factors (compact, like the covariances)
    double* logc             # (K,) log-normalisers
    double* L                # (D, D) Cholesky scratch
    double* d                # (D,)
    double* y                # (D,)
    KMeans km                # the start's k-means scratch
    double* xc               # (Nmax, D) the problem's rows, sorted, less their mean
    double* mean             # (D,) their column mean
    double* centre           # (K, D) a k-means restart's centres


cdef Py_ssize_t cov_size(int cov, int K, int D) noexcept nogil:
    if cov == FULL:
        return K * D * D
    if cov == TIED:
        return D * D
    return K * D if cov == DIAG else K


cdef Py_ssize_t s2_size(int cov, int K, int D) noexcept nogil:
    """The second moments: per feature for spherical too (its M-step averages them)."""
    return K * D * D if cov == FULL else (D * D if cov == TIED else K * D)


cdef BWork* _bwork_alloc(const Spec* s, Py_ssize_t n_max, Py_ssize_t t_max,
                        int n_trials) noexcept nogil:
    cdef int K = s.K, D = s.D
    cdef BWork* W = <BWork*> malloc(sizeof(BWork))
    if W == NULL:
        return NULL
    W.fb = _work_alloc(K, t_max, False, True, False, 0, 0, False)
    cdef Py_ssize_t n = (n_max * K + 2 * K * K + 3 * K + 2 * K * D
                         + s2_size(s.cov, K, D) + s.S + D * D + 2 * D
                         + n_max * D + D + K * D + _kmeans_doubles(K, D, n_trials, n_max))
    W.le = <double*> malloc(n * sizeof(double))
    cdef int64_t* q = <int64_t*> malloc(_kmeans_ints(K, n_trials, n_max) * sizeof(int64_t))
    if W.fb == NULL or W.le == NULL or q == NULL:
        _work_free(W.fb)
        free(W.le)
        free(q)
        free(W)
        return NULL
    W.AT = W.le + n_max * K
    W.R = W.AT + K * K
    W.start = W.R + K * K
    W.nk = W.start + K
    W.s1 = W.nk + K
    W.s2 = W.s1 + K * D
    W.mu = W.s2 + s2_size(s.cov, K, D)
    W.pc = W.mu + K * D
    W.logc = W.pc + s.S
    W.L = W.logc + K
    W.d = W.L + D * D
    W.y = W.d + D
    W.xc = W.y + D
    W.mean = W.xc + n_max * D
    W.centre = W.mean + D
    _kmeans_init(&W.km, K, D, n_trials, n_max, W.centre + K * D, q)
    return W


cdef void _bwork_free(BWork* W) noexcept nogil:
    if W != NULL:
        _work_free(W.fb)
        free(W.le)
        free(W.km.labels)
        free(W)


# ---------------------------------------------------------------------------------------
# Emissions


cdef int _precisions(const Spec* s, BWork* W, const double* cov) noexcept nogil:
    """W.pc and W.logc from the covariances; FALLBACK where one is not positive definite
    (GaussianHMM regularises it, with a warning)."""
    cdef int K = s.K, D = s.D, k, i
    cdef double ld
    if s.cov == FULL or s.cov == TIED:
        for k in range(K if s.cov == FULL else 1):
            if _cholesky_prec(cov + k * D * D, D, W.L, W.pc + k * D * D) != OK:
                return FALLBACK
    else:
        for i in range(s.S):
            if not cov[i] > 0.0:
                return FALLBACK
            W.pc[i] = 1.0 / sqrt(cov[i])
    for k in range(K):           # emfast.kernels.log_normalizer
        ld = 0.0
        if s.cov == FULL or s.cov == TIED:
            for i in range(D):
                ld += log(W.pc[(k if s.cov == FULL else 0) * D * D + i * D + i])
        elif s.cov == DIAG:
            for i in range(D):
                ld += log(W.pc[k * D + i])
        else:
            ld = D * log(W.pc[k])
        W.logc[k] = ld - 0.5 * D * LOG_2PI
    return OK


cdef void _log_emissions(const Spec* s, BWork* W, const double* X, Py_ssize_t N,
                         const double* mu) noexcept nogil:
    """W.le[n, k] = log N(x_n | state k) for the problem's N rows."""
    cdef int K = s.K, D = s.D, k, i, j
    cdef Py_ssize_t n
    cdef const double* x
    cdef const double* U
    cdef double q, a
    for n in range(N):
        x = X + n * D
        for k in range(K):
            q = 0.0
            if s.cov == FULL or s.cov == TIED:
                U = W.pc + (k * D * D if s.cov == FULL else 0)
                for i in range(D):
                    W.d[i] = x[i] - mu[k * D + i]
                for j in range(D):             # y = d U, U upper-triangular
                    a = 0.0
                    for i in range(j + 1):
                        a += W.d[i] * U[i * D + j]
                    q += a * a
            elif s.cov == DIAG:
                for i in range(D):
                    a = (x[i] - mu[k * D + i]) * W.pc[k * D + i]
                    q += a * a
            else:
                for i in range(D):
                    a = (x[i] - mu[k * D + i]) * W.pc[k]
                    q += a * a
            W.le[n * K + k] = W.logc[k] - 0.5 * q


cdef void _emission_stats(const Spec* s, BWork* W, const double* X, Py_ssize_t N,
                          const double* mu) noexcept nogil:
    """nk, s1, s2: the rows weighted by their posteriors (W.le), about the means mu."""
    cdef int K = s.K, D = s.D, k, i, j
    cdef Py_ssize_t n
    cdef double g, a
    cdef double* s2
    memset(W.nk, 0, K * sizeof(double))
    memset(W.s1, 0, K * D * sizeof(double))
    memset(W.s2, 0, s2_size(s.cov, K, D) * sizeof(double))
    for n in range(N):
        for k in range(K):
            g = W.le[n * K + k]
            W.nk[k] += g
            for i in range(D):
                W.d[i] = X[n * D + i] - mu[k * D + i]
                W.s1[k * D + i] += g * W.d[i]
            if s.cov == FULL or s.cov == TIED:
                s2 = W.s2 + (k * D * D if s.cov == FULL else 0)
                for i in range(D):
                    a = g * W.d[i]
                    for j in range(i, D):
                        s2[i * D + j] += a * W.d[j]
            else:
                for i in range(D):
                    W.s2[k * D + i] += g * W.d[i] * W.d[i]
    if s.cov == FULL or s.cov == TIED:         # the lower triangles
        for k in range(K if s.cov == FULL else 1):
            s2 = W.s2 + k * D * D
            for i in range(D):
                for j in range(i):
                    s2[i * D + j] = s2[j * D + i]


# ---------------------------------------------------------------------------------------
# The start's emissions (GaussianEmission.init)

cdef double _inertia(const double* X, Py_ssize_t N, int K, int D,
                     const double* c) noexcept nogil:
    """sum_n min_k d(x_n, c_k): the inertia by which k-means keeps the best of its restarts
    (the k-means kernels' to rounding), per 256-row block in row order, the blocks in order."""
    cdef Py_ssize_t n, blk
    cdef double d, part, total = 0.0
    for blk in range((N + BLOCK - 1) // BLOCK):
        part = 0.0
        for n in range(blk * BLOCK, min(N, (blk + 1) * BLOCK)):
            _nearest(X + n * D, c, K, D, &d)
            part += d
        total += part
    return total


cdef int _start_emissions(const Spec* s, BWork* W, const double* X, const int64_t* order,
                          Py_ssize_t N, const int64_t* first, const double* u, double* mu,
                          double* cov) noexcept nogil:
    """The start's means and covariances, as GaussianEmission.init makes them: k-means
    (emfast.mixture._kmeans.kmeans with sort_rows) on the rows in lexicographic order
    (``order``), less their column mean: s.n_kmeans restarts of k-means++ (first rows
    ``first``, uniforms ``u``, (K - 1) T per restart) and Lloyd, the lowest inertia kept
    (the first on ties), its centres plus the mean the means; the rows' covariance (N - 1
    in the denominator, np.cov) plus min_covar on the diagonal, shaped by the type
    (emfast.mixture._gaussian.covariances_from_template). FALLBACK where the Python start
    does what the kernel does not (k-means++ short of distinct rows, an emptied Lloyd
    cluster): GaussianHMM then fits the problem."""
    cdef int K = s.K, D = s.D, T = W.km.T, r, k, i, j
    cdef Py_ssize_t n
    cdef double sq = 0.0, inertia, best = INFINITY, a
    cdef double* C = W.L                       # the (D, D) data covariance
    for n in range(N):
        _copy(W.xc + n * D, X + order[n] * D, D)
    _column_mean(W.xc, NULL, <double> N, N, D, W.mean)
    for n in range(N):
        for i in range(D):
            W.xc[n * D + i] -= W.mean[i]
            sq += W.xc[n * D + i] * W.xc[n * D + i]
    for r in range(s.n_kmeans):
        if _kmeans_plusplus(&W.km, W.xc, N, first[r], u + r * (K - 1) * T, W.centre) != OK:
            return FALLBACK
        if _lloyd(&W.km, W.xc, N, LLOYD_TOL * (sq / (N * D)), W.centre) != OK:
            return FALLBACK
        inertia = _inertia(W.xc, N, K, D, W.centre)
        if inertia < best:
            best = inertia
            _copy(mu, W.centre, K * D)
    for k in range(K):
        for i in range(D):
            mu[k * D + i] += W.mean[i]
    _zero(C, D * D)
    for n in range(N):
        for i in range(D):
            for j in range(i, D):
                C[i * D + j] += W.xc[n * D + i] * W.xc[n * D + j]
    a = 1.0 / (N - 1)                          # np.cov multiplies by it
    for i in range(D):
        for j in range(i, D):
            C[i * D + j] *= a
            C[j * D + i] = C[i * D + j]
        C[i * D + i] += s.min_covar
    if s.cov == FULL:
        for k in range(K):
            _copy(cov + k * D * D, C, D * D)
    elif s.cov == TIED:
        _copy(cov, C, D * D)
    elif s.cov == DIAG:
        for k in range(K):
            for i in range(D):
                cov[k * D + i] = C[i * D + i]
    else:                                      # the mean of the whole matrix, as hmmlearn
        a = 0.0
        for i in range(D * D):
            a += C[i]
        for k in range(K):
            cov[k] = a / (D * D)
    return OK


# ---------------------------------------------------------------------------------------
# E-step and M-step


cdef double _e_step(const Spec* s, BWork* W, const double* X, Py_ssize_t N,
                    const int64_t* seq, Py_ssize_t n_seq, const double* sp, const double* A,
                    const double* mu) noexcept nogil:
    """Scaled forward-backward of the problem's sequences in order (posteriors into W.le,
    start counts into W.start, R into W.R), then the emission statistics. Returns the
    log-likelihood; not finite (impossible, NaN, or +inf: a sequence that lost precision,
    which GaussianHMM recomputes in log space) means FALLBACK."""
    cdef int K = s.K, i, j
    cdef Py_ssize_t q, t0, T
    cdef double ll = 0.0, lq
    cdef Hmm H
    memset(&H, 0, sizeof(Hmm))
    H.K = K
    H.le = W.le
    H.sp = sp
    H.A = A
    for i in range(K):
        for j in range(K):
            W.AT[j * K + i] = A[i * K + j]
    H.AT = W.AT
    H.rfloor = _rfloor_of(A, K * K)
    H.cache_b = True
    _log_emissions(s, W, X, N, mu)
    memset(W.start, 0, K * sizeof(double))
    memset(W.R, 0, K * K * sizeof(double))
    for q in range(n_seq):
        t0 = seq[q] - seq[0]
        T = seq[q + 1] - seq[q]
        lq = _forward(&H, W.fb, t0, T, W.le + t0 * K, True)
        if not (lq > -INFINITY and lq < INFINITY):
            return lq
        _backward(&H, W.fb, t0, T, W.le + t0 * K, W.le + t0 * K, W.start, W.R)
        ll += lq
    if s.letters & (UPDATE_M | UPDATE_C):
        _emission_stats(s, W, X, N, mu)
    return ll


cdef int _m_step_transitions(const Spec* s, BWork* W, double* sp, double* A) noexcept nogil:
    """startprob and transmat from the counts with their Dirichlet priors (zeros stay
    zeros; a transmat row with no mass stays 0); FALLBACK when startprob has no mass."""
    cdef int K = s.K, i, j
    cdef double tot, v
    if s.letters & UPDATE_S:
        tot = 0.0
        for i in range(K):
            v = s.sp_prior[i] - 1.0 + W.start[i]
            sp[i] = 0.0 if sp[i] == 0.0 else (v if v > 0.0 else 0.0)
            tot += sp[i]
        if not tot > 0.0:
            return FALLBACK
        for i in range(K):
            sp[i] = sp[i] / tot
    if s.letters & UPDATE_T:
        for i in range(K):
            tot = 0.0
            for j in range(K):
                v = s.tp_prior[i * K + j] - 1.0 + A[i * K + j] * W.R[i * K + j]
                A[i * K + j] = 0.0 if A[i * K + j] == 0.0 else (v if v > 0.0 else 0.0)
                tot += A[i * K + j]
            if tot == 0.0:
                tot = 1.0
            for j in range(K):
                A[i * K + j] = A[i * K + j] / tot
    return OK


cdef int _m_step_emissions(const Spec* s, BWork* W, double* mu, double* cov) noexcept nogil:
    """GaussianEmission.m_step: MAP means and covariances under the priors, from the
    statistics about the current means mu; updates mu and cov. FALLBACK where GaussianHMM
    would keep a previous value with a warning (a full or tied denominator <= 0)."""
    cdef int K = s.K, D = s.D, k, i, j
    cdef double den, c_n, c_d, acc, md_i, dn, tot_n = 0.0
    cdef double* c
    cdef double* s2
    for k in range(K):
        for i in range(D):
            W.mu[k * D + i] = mu[k * D + i]
            if s.letters & UPDATE_M:
                den = s.mw[k * D + i] + W.nk[k]
                if den > 0.0:
                    W.mu[k * D + i] = mu[k * D + i] + (
                        s.mw[k * D + i] * (s.m0[k * D + i] - mu[k * D + i])
                        + W.s1[k * D + i]) / den
    if s.letters & UPDATE_C:
        if s.cov == TIED:
            for i in range(D * D):
                cov[i] = s.cp[i] + W.s2[i]
        for k in range(K):
            tot_n += W.nk[k]
            for i in range(D):
                W.d[i] = W.mu[k * D + i] - mu[k * D + i]      # shift of the centre
                W.y[i] = W.mu[k * D + i] - s.m0[k * D + i]    # new mean - prior mean
            if s.cov == DIAG or s.cov == SPHERICAL:
                acc = 0.0
                for i in range(D):
                    c_n = (s.mw[k * D + i] * W.y[i] * W.y[i]
                           + (W.s2[k * D + i] - (2.0 * W.d[i] * W.s1[k * D + i]
                                                 - W.nk[k] * W.d[i] * W.d[i])))
                    c_d = s.cw[k * D + i] - 1.0
                    c_d = (c_d if c_d > 0.0 else 0.0) + W.nk[k]
                    c_d = c_d if c_d > COV_DENOM_FLOOR else COV_DENOM_FLOOR
                    if s.cov == DIAG:
                        cov[k * D + i] = (s.cp[k * D + i] + c_n) / c_d
                    else:
                        acc += (s.cp[k * D + i] + c_n) / c_d
                if s.cov == SPHERICAL:
                    cov[k] = acc / D
            else:
                # scatter about the new mean, plus the means prior's term, for state k:
                # into cov (full: its own matrix; tied: summed over the states)
                c = cov + (k * D * D if s.cov == FULL else 0)
                s2 = W.s2 + (k * D * D if s.cov == FULL else 0)
                for i in range(D):
                    for j in range(D):
                        acc = (s.mw[k * D] * W.y[i] * W.y[j]
                               - ((W.d[i] * W.s1[k * D + j] + W.s1[k * D + i] * W.d[j])
                                  - W.nk[k] * (W.d[i] * W.d[j])))
                        if s.cov == FULL:
                            c[i * D + j] = s.cp[k * D * D + i * D + j] + (s2[i * D + j] + acc)
                        else:
                            c[i * D + j] += acc
                if s.cov == FULL:
                    den = s.cw[k] - D
                    dn = (den if den > 0.0 else 0.0) + W.nk[k]
                    if not dn > 0.0:
                        return FALLBACK
                    _scale_symmetric(c, D, dn)
        if s.cov == TIED:
            den = s.cw[0] - D
            dn = (den if den > 0.0 else 0.0) + tot_n
            if not dn > 0.0:
                return FALLBACK
            _scale_symmetric(cov, D, dn)
    for i in range(K * D):
        mu[i] = W.mu[i]
    return OK


cdef void _scale_symmetric(double* c, int D, double den) noexcept nogil:
    """c / den, then exactly symmetric: 0.5 (c + c^T)."""
    cdef int i, j
    cdef double a
    for i in range(D * D):
        c[i] = c[i] / den
    for i in range(D):
        for j in range(i):
            a = 0.5 * (c[i * D + j] + c[j * D + i])
            c[i * D + j] = a
            c[j * D + i] = a


cdef int _fit_problem(const Spec* s, BWork* W, const double* X, Py_ssize_t N,
                      const int64_t* seq, Py_ssize_t n_seq, double* sp, double* A,
                      double* mu, double* cov, double* history, int64_t* n_iter,
                      int8_t* converged) noexcept nogil:
    """Baum-Welch from the given start (sp, A, mu, cov: updated in place) with hmmlearn's
    monitor rule: stop after max_iter iterations or when the log-likelihood gained less
    than tol (converged either way, as the monitor says)."""
    cdef int it
    cdef double ll
    n_iter[0] = 0
    converged[0] = 0
    if _precisions(s, W, cov) != OK:
        return FALLBACK
    for it in range(s.max_iter):
        ll = _e_step(s, W, X, N, seq, n_seq, sp, A, mu)
        if not (ll > -INFINITY and ll < INFINITY):
            return FALLBACK
        if _m_step_transitions(s, W, sp, A) != OK:
            return FALLBACK
        if s.letters & (UPDATE_M | UPDATE_C):
            if _m_step_emissions(s, W, mu, cov) != OK or _precisions(s, W, cov) != OK:
                return FALLBACK
        history[it] = ll
        n_iter[0] = it + 1
        if it + 1 == s.max_iter or (it > 0 and history[it] - history[it - 1] < s.tol):
            converged[0] = 1
            break
    return OK


def fit_many_hmm(
    const double[:, ::1] X,             # IN  (total rows, D) every problem's frames, stacked
    const int64_t[::1] seq_offsets,     # IN  (S + 1,) sequence q: rows seq_offsets[q]..[q+1]
    const int64_t[:, ::1] runs,         # IN  (P, 2) run p: its first sequence and how many
                                        #     (consecutive; runs may share sequences)
    int cov_code,                       # IN  0 full, 1 tied, 2 diag, 3 spherical
    int letters,                        # IN  the parameters EM updates (LETTER_BITS)
    int max_iter, double tol,           # IN  GaussianHMM's n_iter and tol
    const double[::1] sp_prior,         # IN  (K,)
    const double[:, ::1] tp_prior,      # IN  (K, K)
    const double[:, ::1] means_prior,   # IN  (K, D)
    const double[:, ::1] means_weight,  # IN  (K, D)
    const double[::1] covars_prior,     # IN  flat, see Spec.cp
    const double[::1] covars_weight,    # IN  flat, see Spec.cw
    double[:, ::1] startprob,           # IN/OUT (P, K) the starts; the fits
    double[:, :, ::1] transmat,         # IN/OUT (P, K, K)
    double[:, :, ::1] means,            # IN/OUT (P, K, D)
    double[:, ::1] covars,              # IN/OUT (P, S) compact by type, flat
    const int64_t[::1] order,           # IN  (total rows,) each problem's rows in
                                        #     lexicographic order (0-based in the problem)
    const int64_t[::1] draw_of,         # IN  (P,) run p's set of start draws, s; -1: its
                                        #     means and covars are given (the start is made
                                        #     here from set s otherwise)
    const int64_t[:, ::1] first,        # IN  (sets, n_kmeans) k-means++ first rows
    const double[:, ::1] u,             # IN  (sets, >= n_kmeans (K - 1) n_trials) k-means++
                                        #     uniforms, restart by restart, round by round
    int n_trials,                       # IN  k-means++ local trials, 2 + int(log K)
    double min_covar,                   # IN  GaussianHMM's
    double[:, ::1] history,             # OUT (P, max(max_iter, 1)) log-likelihood per iteration
    int64_t[::1] n_iter,                # OUT (P,)
    int8_t[::1] converged,              # OUT (P,)
    int8_t[::1] status,                 # IN/OUT (P,) 0: fit it, else skip; OUT 0 fitted,
                                        #     1 FALLBACK (fit it with GaussianHMM)
    int n_threads,                      # IN  OpenMP threads
):
    """Fit the P problems, one per thread at a time (schedule dynamic: sizes may differ)."""
    cdef Py_ssize_t P = runs.shape[0], p, n_max = 0, t_max = 0, q
    cdef Spec s
    s.K = startprob.shape[1]
    s.D = X.shape[1]
    s.cov = cov_code
    s.letters = letters
    s.max_iter = max_iter
    s.S = cov_size(cov_code, s.K, s.D)
    s.tol = tol
    s.n_kmeans = first.shape[1]
    s.min_covar = min_covar
    s.sp_prior = &sp_prior[0]
    s.tp_prior = &tp_prior[0, 0]
    s.m0 = &means_prior[0, 0]
    s.mw = &means_weight[0, 0]
    s.cp = &covars_prior[0]
    s.cw = &covars_weight[0]
    if P == 0:
        return
    for p in range(P):
        n_max = max(n_max, seq_offsets[runs[p, 0] + runs[p, 1]] - seq_offsets[runs[p, 0]])
    for q in range(seq_offsets.shape[0] - 1):
        t_max = max(t_max, seq_offsets[q + 1] - seq_offsets[q])
    cdef BWork* W = NULL
    with nogil, parallel(num_threads=n_threads):
        W = _bwork_alloc(&s, n_max, t_max, n_trials)
        for p in prange(P, schedule="dynamic"):
            if status[p] != OK:
                continue
            if W == NULL:           # out of memory: the problem goes back to GaussianHMM
                status[p] = FALLBACK
                continue
            q = runs[p, 0]
            if draw_of[p] >= 0 and _start_emissions(
                    &s, W, &X[seq_offsets[q], 0], &order[seq_offsets[q]],
                    seq_offsets[q + runs[p, 1]] - seq_offsets[q], &first[draw_of[p], 0],
                    &u[draw_of[p], 0], &means[p, 0, 0], &covars[p, 0]) != OK:
                status[p] = FALLBACK
                continue
            status[p] = _fit_problem(
                &s, W, &X[seq_offsets[q], 0], seq_offsets[q + runs[p, 1]] - seq_offsets[q],
                &seq_offsets[q], runs[p, 1],
                &startprob[p, 0], &transmat[p, 0, 0], &means[p, 0, 0], &covars[p, 0],
                &history[p, 0], &n_iter[p], &converged[p])
        _bwork_free(W)
