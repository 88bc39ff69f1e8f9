# k-means++ and Lloyd on one problem's rows, shared by the batch kernels of Gaussian
# mixtures (_batch_impl.pxi: the "kmeans" and "k-means++" starts) and of Gaussian HMMs
# (_hmm_batch_impl.pxi: the emission means of the start): one thread, no allocation, the
# arithmetic of emfast.mixture._kmeans (kmeans_plusplus, lloyd) step for step. The includer
# cimports int64_t and INFINITY and defines the status codes OK (0) and FALLBACK (1).

cdef enum:
    BLOCK = 256              # the k-means kernels' rows per block (their summation order)
    LLOYD_MAX_ITER = 300     # emfast.mixture._kmeans.kmeans defaults (scikit-learn's)

cdef double LLOYD_TOL = 1e-4


ctypedef struct KMeans:      # a thread's k-means scratch (N_max rows, K centres, T trials)
    int K, D, T
    const double* sw         # the running problem's sample weights (NULL: all 1)
    double* closest          # (N_max,) k-means++ distance to the nearest centre
    double* block_pot        # (blocks of N_max,) its per-block sums
    double* pots             # (T,)
    double* counts           # (K,) Lloyd
    double* sums             # (K, D)
    int64_t* cand            # (T,)
    int64_t* rows            # (K,) the rows k-means++ chose
    int64_t* labels          # (N_max,)


cdef Py_ssize_t _kmeans_doubles(int K, int D, int T, Py_ssize_t n_max) noexcept nogil:
    """The doubles of a KMeans' scratch (_kmeans_init lays them out)."""
    return n_max + (n_max + BLOCK - 1) // BLOCK + T + K + K * D


cdef Py_ssize_t _kmeans_ints(int K, int T, Py_ssize_t n_max) noexcept nogil:
    return n_max + T + K


cdef void _kmeans_init(KMeans* km, int K, int D, int T, Py_ssize_t n_max, double* p,
                       int64_t* q) noexcept nogil:
    """Lay a KMeans' scratch out on p (_kmeans_doubles) and q (_kmeans_ints); no weights."""
    km.K = K
    km.D = D
    km.T = T
    km.sw = NULL
    km.closest = p
    km.block_pot = km.closest + n_max
    km.pots = km.block_pot + (n_max + BLOCK - 1) // BLOCK
    km.counts = km.pots + T
    km.sums = km.counts + K
    km.labels = q
    km.cand = km.labels + n_max
    km.rows = km.cand + T


# ---------------------------------------------------------------------------------------
# small helpers

cdef inline double _sqdist(const double* x, const double* c, int D) noexcept nogil:
    """sum_i (x_i - c_i)^2 in feature order (the k-means kernels' bits for D < 16)."""
    cdef double s = 0.0, t
    cdef int i
    for i in range(D):
        t = x[i] - c[i]
        s += t * t
    return s


cdef int _nearest(const double* x, const double* c, int K, int D, double* best) noexcept nogil:
    """Index of the nearest of the K centres c (ties: the lowest), its distance in best."""
    cdef int k, arg = 0
    cdef double d, m = _sqdist(x, c, D)
    for k in range(1, K):
        d = _sqdist(x, c + k * D, D)
        if d < m:
            m = d
            arg = k
    best[0] = m
    return arg


cdef inline double _wt(const double* sw, Py_ssize_t n) noexcept nogil:
    """Row n's sample weight (sw NULL: unweighted, 1; x * 1.0 is exact, so the unweighted
    fit is bit for bit what it was before weights)."""
    return 1.0 if sw == NULL else sw[n]


cdef void _column_mean(const double* X, const double* sw, double wsum, Py_ssize_t N, int D,
                       double* mean) noexcept nogil:
    """The weighted column mean sum_n w_n x_n / wsum (sw NULL: unweighted, wsum = N)."""
    cdef Py_ssize_t n
    cdef int i
    cdef double w
    for i in range(D):
        mean[i] = 0.0
    for n in range(N):
        w = _wt(sw, n)
        for i in range(D):
            mean[i] += w * X[n * D + i]
    for i in range(D):
        mean[i] /= wsum


cdef void _zero(double* a, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        a[i] = 0.0


cdef void _copy(double* dst, const double* src, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        dst[i] = src[i]


# ---------------------------------------------------------------------------------------
# k-means (emfast.mixture._kmeans: kmeans_plusplus, lloyd)

cdef void _fold_centre(const double* X, const double* sw, Py_ssize_t N, int D, const double* c,
                       double* closest, double* block_pot) noexcept nogil:
    """closest = min(closest, d(x, c)); block_pot: per 256-row block, its sum of w closest
    in row order."""
    cdef Py_ssize_t n, blk
    cdef double d
    for blk in range((N + BLOCK - 1) // BLOCK):
        block_pot[blk] = 0.0
        for n in range(blk * BLOCK, min(N, (blk + 1) * BLOCK)):
            d = _sqdist(X + n * D, c, D)
            if d < closest[n]:
                closest[n] = d
            block_pot[blk] += _wt(sw, n) * closest[n]


cdef double _potential(const double* X, const double* sw, Py_ssize_t N, int D, const double* c,
                       const double* closest) noexcept nogil:
    """sum_n w_n min(closest_n, d(x_n, c)): per block in row order, the blocks in order."""
    cdef Py_ssize_t n, blk
    cdef double d, part, total = 0.0
    for blk in range((N + BLOCK - 1) // BLOCK):
        part = 0.0
        for n in range(blk * BLOCK, min(N, (blk + 1) * BLOCK)):
            d = _sqdist(X + n * D, c, D)
            part += _wt(sw, n) * (d if d < closest[n] else closest[n])
        total += part
    return total


cdef Py_ssize_t _draw_row(double value, const double* closest, const double* sw,
                          const double* block_pot, Py_ssize_t N) noexcept nogil:
    """The row where the cumulative potential sum_n w_n closest_n first reaches value (the
    k-means kernels' _draw_rows: the block from the running sum of the block sums, then the
    row within it)."""
    cdef Py_ssize_t n_blocks = (N + BLOCK - 1) // BLOCK, blk = 0, lo, j, found = 0, m
    cdef double base = 0.0, run = block_pot[0]
    while blk < n_blocks - 1 and run < value:
        base = run
        blk += 1
        run += block_pot[blk]
    lo = blk * BLOCK
    m = min(<Py_ssize_t> BLOCK, N - lo)
    run = 0.0
    for j in range(m):
        run += _wt(sw, lo + j) * closest[lo + j]
        found += base + run < value
    return lo + min(found, m - 1)


cdef int _kmeans_plusplus(KMeans* W, const double* X, Py_ssize_t N, int64_t first,
                          const double* u, double* centres) noexcept nogil:
    """Greedy weighted k-means++ (weights W.sw) from the first row and the uniforms u
    ((K - 1) x T): each round's candidates are drawn at u * potential, the one leaving the
    lowest potential kept (the first on ties); the rows chosen into W.rows. FALLBACK when
    the potential is 0 (fewer distinct rows of positive weight than K: there
    GaussianMixture draws other random numbers)."""
    cdef int K = W.K, D = W.D, T = W.T, c, t, best
    cdef Py_ssize_t n, blk
    cdef double pot
    for n in range(N):
        W.closest[n] = INFINITY
    W.rows[0] = first
    _copy(centres, X + first * D, D)
    _fold_centre(X, W.sw, N, D, centres, W.closest, W.block_pot)
    for c in range(1, K):
        pot = 0.0
        for blk in range((N + BLOCK - 1) // BLOCK):
            pot += W.block_pot[blk]
        if not pot > 0.0:
            return FALLBACK
        for t in range(T):
            W.cand[t] = _draw_row(u[(c - 1) * T + t] * pot, W.closest, W.sw, W.block_pot, N)
            W.pots[t] = _potential(X, W.sw, N, D, X + W.cand[t] * D, W.closest)
        best = 0
        for t in range(1, T):
            if W.pots[t] < W.pots[best]:
                best = t
        W.rows[c] = W.cand[best]
        _copy(centres + c * D, X + W.cand[best] * D, D)
        _fold_centre(X, W.sw, N, D, centres + c * D, W.closest, W.block_pot)
    return OK


cdef int _lloyd(KMeans* W, const double* X, Py_ssize_t N, double abs_tol,
                double* c) noexcept nogil:
    """Weighted Lloyd (weights W.sw) from the centres c (moved in place): stop when no label
    changes or the summed squared move is <= abs_tol, or after 300 passes. FALLBACK when a
    pass leaves a cluster of weight 0 (GaussianMixture relocates it)."""
    cdef int K = W.K, D = W.D, k, i, it
    cdef Py_ssize_t n, changed
    cdef double d, shift, new, w
    for n in range(N):
        W.labels[n] = -1
    for it in range(LLOYD_MAX_ITER):
        _zero(W.counts, K)
        _zero(W.sums, K * D)
        changed = 0
        for n in range(N):
            k = _nearest(X + n * D, c, K, D, &d)
            changed += W.labels[n] != k
            W.labels[n] = k
            w = _wt(W.sw, n)
            W.counts[k] += w
            for i in range(D):
                W.sums[k * D + i] += w * X[n * D + i]
        if changed == 0:
            return OK
        for k in range(K):
            if not W.counts[k] > 0.0:
                return FALLBACK
        shift = 0.0
        for k in range(K):
            for i in range(D):
                new = W.sums[k * D + i] / W.counts[k]
                d = new - c[k * D + i]
                shift += d * d
                c[k * D + i] = new
        if shift <= abs_tol:
            return OK
    return OK

