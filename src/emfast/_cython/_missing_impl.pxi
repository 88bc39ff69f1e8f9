# The body of the Cython + OpenMP missing-value E-step, shared by the two extension modules
# built from it (see setup.py and emfast._config): _missing.pyx (baseline instruction set)
# and _missing_avx2.pyx (-mavx2 -mfma, imported when the CPU has both). The design notes are
# the docstring of _missing.pyx.

include "_openmp.pxi"

from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.math cimport INFINITY, exp, isnan, log, sqrt
from libc.stdlib cimport free, malloc
from libc.string cimport memset
from scipy.linalg.cython_blas cimport dsyrk

cdef extern from *:
    """
    /* out = lam z for a symmetric (D, D) lam, adding only the columns where z is not zero
       (a row's missing places). restrict: the column loop vectorises. */
    static void emfast_prec_times(const double* __restrict z, const double* __restrict lam,
                                  int D, double* __restrict out)
    {
        for (int i = 0; i < D; i++) out[i] = 0.0;
        for (int j = 0; j < D; j++) {
            const double c = z[j];
            if (c != 0.0) {
                const double* __restrict col = lam + (size_t) j * D;
                for (int i = 0; i < D; i++) out[i] += c * col[i];
            }
        }
    }
    """
    void emfast_prec_times(const double* z, const double* lam, int D, double* out) noexcept nogil

import numpy as np

from emfast._layout import missing_block_rows, n_groups

cdef double LOG_2PI = 1.8378770664093453


ctypedef struct Model:
    int D, K
    const double* logw      # (K,) log mixing weights
    const double* mu        # (K, D) means
    const double* prec      # (K, D, D) precision matrices
    const double* logdet    # (K,) log det of each precision matrix


ctypedef struct Pattern:    # the missing pattern of the current run of rows, per thread
    int valid               # 0 until the first row is seen
    int m                   # number of missing coordinates
    unsigned char* miss     # (D,) 1 where missing
    int* mis                # (m,) the missing coordinates, ascending
    double* chol            # (K, m, m) lower Cholesky factor L of Lambda_k,MM
    double* rdiag           # (K, m) 1 / diag(L): the solves multiply, never divide
    double* linv            # (m, m) L^-1 of one component, when a run ends
    double* logc            # (K,) log w_k - (o log 2 pi - log det Lambda_k + log det L L')/2
    double* runw            # (K,) sum of w r of the run's rows so far


ctypedef struct Work:
    Pattern p
    double* z               # (K, B, D) centred rows; then filled, then scaled by sqrt(w r)
    double* t               # (D,) Lambda_k times one row of Z_k
    double* lp              # (B, K) log(pi_k p_k(x_O)), then responsibilities
    double* y               # (D,) solve scratch


cdef Work* _work_alloc(int D, int K, int B) noexcept nogil:
    cdef Work* W = <Work*> malloc(sizeof(Work))
    if W == NULL:
        return NULL
    W.p.miss = <unsigned char*> malloc(D)
    W.p.mis = <int*> malloc(D * sizeof(int))
    W.p.chol = <double*> malloc(K * D * D * sizeof(double))
    W.p.rdiag = <double*> malloc(K * D * sizeof(double))
    W.p.linv = <double*> malloc(D * D * sizeof(double))
    W.p.logc = <double*> malloc(K * sizeof(double))
    W.p.runw = <double*> malloc(K * sizeof(double))
    W.z = <double*> malloc(K * B * D * sizeof(double))
    W.t = <double*> malloc(D * sizeof(double))
    W.lp = <double*> malloc(B * K * sizeof(double))
    W.y = <double*> malloc(D * sizeof(double))
    W.p.valid = 0
    if (W.p.miss == NULL or W.p.mis == NULL or W.p.chol == NULL or W.p.rdiag == NULL
            or W.p.linv == NULL
            or W.p.logc == NULL or W.p.runw == NULL or W.z == NULL or W.t == NULL
            or W.lp == NULL or W.y == NULL):
        _work_free(W)
        return NULL
    return W


cdef void _work_free(Work* W) noexcept nogil:
    if W != NULL:
        free(W.p.miss); free(W.p.mis); free(W.p.chol); free(W.p.rdiag);
        free(W.p.linv); free(W.p.logc)
        free(W.p.runw); free(W.z); free(W.t); free(W.lp); free(W.y)
        free(W)


cdef int _cholesky(double* a, int m, double* rd) noexcept nogil:
    """In place: the lower triangle of a (m, m) becomes L with L L' = a; rd = 1 / diag(L).
    Returns 0, or -1 when a is not numerically positive definite."""
    cdef int i, j
    cdef double s
    for j in range(m):
        s = a[j * m + j] - _dot(a + j * m, a + j * m, j)
        if not s > 0.0:
            return -1
        s = sqrt(s)
        a[j * m + j] = s
        rd[j] = 1.0 / s
        for i in range(j + 1, m):
            a[i * m + j] = (a[i * m + j] - _dot(a + i * m, a + j * m, j)) * rd[j]
    return 0


cdef inline double _dot(const double* a, const double* b, int n) noexcept nogil:
    cdef double s = 0.0
    cdef int i
    for i in range(n):
        s += a[i] * b[i]
    return s


cdef void _solve_lower(const double* L, const double* rd, int m, double* y) noexcept nogil:
    """y <- L^-1 y (L lower triangular, row-major; rd = 1 / diag(L))."""
    cdef int i
    for i in range(m):
        y[i] = (y[i] - _dot(L + i * m, y, i)) * rd[i]


cdef void _solve_upper_t(const double* L, const double* rd, int m, double* y) noexcept nogil:
    """y <- L'^-1 y (L lower triangular, row-major; L' read by columns)."""
    cdef int i, j
    cdef double s
    for i in range(m - 1, -1, -1):
        s = y[i]
        for j in range(i + 1, m):
            s -= L[j * m + i] * y[j]
        y[i] = s * rd[i]


cdef int _new_pattern(const Model* M, Pattern* P) noexcept nogil:
    """Factor Lambda_k,MM of the pattern in P.miss for every k. Returns -1 on failure."""
    cdef int D = M.D, K = M.K, m = 0, i, j, k
    cdef double* L
    cdef const double* lam
    cdef double logdet_mm
    for i in range(D):
        if P.miss[i]:
            P.mis[m] = i
            m += 1
    P.m = m
    for k in range(K):
        L = P.chol + k * m * m
        lam = M.prec + k * D * D
        for i in range(m):
            for j in range(m):
                L[i * m + j] = lam[P.mis[i] * D + P.mis[j]]
        if _cholesky(L, m, P.rdiag + k * m) != 0:
            return -1
        logdet_mm = 0.0
        for i in range(m):
            logdet_mm += 2.0 * log(L[i * m + i])
        P.logc[k] = M.logw[k] - 0.5 * ((D - m) * LOG_2PI - M.logdet[k] + logdet_mm)
        P.runw[k] = 0.0
    P.valid = 1
    return 0


cdef void _end_run(const Model* M, Pattern* P, double* s2) noexcept nogil:
    """Add each component's conditional covariance Lambda_MM^-1 = L'^-1 L^-1, weighted by the
    run's sum of w r, to the missing block of its second moments s2 (K, D, D; lower
    triangle)."""
    cdef int D = M.D, m = P.m, i, j, k, l
    cdef const double* L
    cdef const double* rd
    cdef double* T = P.linv
    cdef double* s
    cdef double acc
    if not P.valid or m == 0:
        return
    for k in range(M.K):
        if P.runw[k] == 0.0:
            continue
        L = P.chol + k * m * m
        rd = P.rdiag + k * m
        for j in range(m):      # T = L^-1, lower triangular, column by column
            T[j * m + j] = rd[j]
            for i in range(j + 1, m):
                acc = 0.0
                for l in range(j, i):
                    acc += L[i * m + l] * T[l * m + j]
                T[i * m + j] = -acc * rd[i]
        s = s2 + k * D * D
        for i in range(m):
            for j in range(i + 1):
                acc = 0.0
                for l in range(i, m):
                    acc += T[l * m + i] * T[l * m + j]
                s[P.mis[i] * D + P.mis[j]] += P.runw[k] * acc
        P.runw[k] = 0.0


cdef int _same_pattern(const floating* x, const unsigned char* miss, int D) noexcept nogil:
    cdef int i
    for i in range(D):
        if (isnan(x[i]) != 0) != (miss[i] != 0):
            return 0
    return 1


cdef int _block(const Model* M, Work* W, const floating* X, const double* sw,
                const double* noise, Py_ssize_t n0, int B, double* st, double* filled,
                double* logp) noexcept nogil:
    """Rows n0 .. n0+B into the group buffer st = (loglik, nk (K), s1 (K, D), s2 (K, D, D)).
    Returns -1 when a pattern's factor fails."""
    cdef int D = M.D, K = M.K, b, i, k, a
    cdef Pattern* P = &W.p
    cdef const floating* x
    cdef double* z
    cdef double* zb
    cdef double* tb
    cdef double* lp
    cdef double* nk = st + 1
    cdef double* s1 = st + 1 + K
    cdef double* s2 = st + 1 + K + K * D
    cdef double q, mx, tot, w, r, v, one = 1.0
    cdef const double* mu
    cdef char* tr = b"N"
    cdef char* up = b"U"
    # Z_k: rows centred on mu_k, zeros where missing; T = Z_k Lambda_k.
    for k in range(K):
        z = W.z + k * B * D
        mu = M.mu + k * D
        for b in range(B):
            x = X + (n0 + b) * D
            for i in range(D):
                z[b * D + i] = 0.0 if isnan(x[i]) else x[i] - mu[i]
    for b in range(B):
        x = X + (n0 + b) * D
        if not P.valid or not _same_pattern(x, P.miss, D):
            _end_run(M, P, s2)
            for i in range(D):
                P.miss[i] = isnan(x[i]) != 0
            if _new_pattern(M, P) != 0:
                return -1
        lp = W.lp + b * K
        for k in range(K):
            zb = W.z + (k * B + b) * D
            tb = W.t
            # b = Lambda_MO d_O and Lambda_OO d_O, as one row of Z_k Lambda_k (by columns of
            # the symmetric Lambda_k: only the observed ones, d is zero elsewhere)
            emfast_prec_times(zb, M.prec + k * D * D, D, tb)
            q = _dot(zb, tb, D)
            for a in range(P.m):
                W.y[a] = -tb[P.mis[a]]
            _solve_lower(P.chol + k * P.m * P.m, P.rdiag + k * P.m, P.m, W.y)
            _solve_upper_t(P.chol + k * P.m * P.m, P.rdiag + k * P.m, P.m, W.y)
            for a in range(P.m):
                q += W.y[a] * tb[P.mis[a]]
                zb[P.mis[a]] = W.y[a]
            lp[k] = P.logc[k] - 0.5 * q
        mx = -INFINITY
        for k in range(K):
            if lp[k] > mx:
                mx = lp[k]
        tot = 0.0
        for k in range(K):
            lp[k] = exp(lp[k] - mx)
            tot += lp[k]
        v = mx + log(tot)
        w = 1.0 if sw == NULL else sw[n0 + b]
        st[0] += w * v
        if logp != NULL:
            logp[n0 + b] = v
        for k in range(K):
            r = lp[k] / tot
            lp[k] = r
            nk[k] += w * r
            P.runw[k] += w * r
            zb = W.z + (k * B + b) * D
            for i in range(D):
                s1[k * D + i] += w * r * zb[i]
        if filled != NULL:
            _fill_row(M, P, W, x, noise, n0 + b, b, B, filled + (n0 + b) * D)
        for k in range(K):
            zb = W.z + (k * B + b) * D
            r = sqrt(w * lp[k])
            for i in range(D):
                zb[i] *= r
    for k in range(K):
        dsyrk(up, tr, &D, &B, &one, W.z + k * B * D, &D, &one, s2 + k * D * D, &D)
    return 0


cdef void _fill_row(const Model* M, Pattern* P, Work* W, const floating* x,
                    const double* noise, Py_ssize_t n, int b, int B,
                    double* out) noexcept nogil:
    """out = x with its missing coordinates replaced by sum_k r_k (mu_k + d_k) -- or, with
    noise (K = 1), by a draw mu + d + L'^-1 z_M from the conditional distribution."""
    cdef int D = M.D, m = P.m, a, k, i
    cdef double s
    for i in range(D):
        out[i] = x[i]
    for a in range(m):
        i = P.mis[a]
        s = 0.0
        for k in range(M.K):
            s += W.lp[b * M.K + k] * (M.mu[k * D + i] + W.z[(k * B + b) * D + i])
        out[i] = s
    if noise != NULL and m > 0:
        for a in range(m):
            W.y[a] = noise[n * D + P.mis[a]]
        _solve_upper_t(P.chol, P.rdiag, m, W.y)
        for a in range(m):
            out[P.mis[a]] += W.y[a]


cdef int _group(const Model* M, Work* W, const floating* X, const double* sw,
                const double* noise, Py_ssize_t N, int B, Py_ssize_t blk0, Py_ssize_t blk1,
                double* st, double* filled, double* logp) noexcept nogil:
    """Blocks blk0 .. blk1 in order into st; the last run of a pattern ends with the group."""
    cdef Py_ssize_t blk, n0
    W.p.valid = 0
    for blk in range(blk0, blk1):
        n0 = blk * B
        if _block(M, W, X, sw, noise, n0, <int> min(<Py_ssize_t> B, N - n0), st, filled,
                  logp) != 0:
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
    cdef double[:, ::1] st = np.zeros((G, size))
    cdef double[::1] tot = np.zeros(size)
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
    if N > 0:
        with nogil, parallel(num_threads=n_threads):
            W = _work_alloc(D, K, B)
            for g in prange(G, schedule="dynamic"):
                if W == NULL:
                    failed = 1
                elif _group(&M, W, &X[0, 0], sw, nz, N, B, g * n_blocks // G,
                            (g + 1) * n_blocks // G, &st[g, 0], fp, lq) != 0:
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
