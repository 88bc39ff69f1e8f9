# The body of the Cython + OpenMP k-means kernels, shared by the two extension modules built
# from it (see setup.py and emfast._config): _kmeans.pyx (baseline instruction set) and
# _kmeans_avx2.pyx (-mavx2 -mfma, imported when the CPU has both). The design notes are the
# docstring of _kmeans.pyx.

include "_openmp.pxi"

from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.stdint cimport int64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset
from libc.math cimport INFINITY
from scipy.linalg.cython_blas cimport dgemm, dsyrk
from libc.math cimport sqrt
from cpython.pycapsule cimport PyCapsule_GetPointer

cdef extern from "numpy/random/bitgen.h":
    # NumPy's bit generator interface (a documented, stable C struct; no NumPy C-API): the
    # uniform doubles that RandomState.uniform draws
    ctypedef struct bitgen_t:
        void* state
        double (*next_double)(void* st) noexcept nogil

cdef extern from "_kmeans_dist.h":
    # d[k * ld + b] = sum_i (xT[i * ld + b] - c[k * D + i])^2 for b < m rounded up to 4
    void emfast_sqdist_T(const double* xT, Py_ssize_t ld, int D, const double* c, int K,
                         Py_ssize_t m, double* d) noexcept nogil
    # best[b] = min_k d[k * ld + b], arg[b] its lowest k, for b < m rounded up to 4
    void emfast_argmin_cols(const double* d, Py_ssize_t ld, int K, Py_ssize_t m,
                            double* best, int64_t* arg) noexcept nogil
    # the same from the rows directly (d: (K, ld) scratch)
    void emfast_nearest_T(const double* xT, Py_ssize_t ld, int D, const double* c, int K,
                          Py_ssize_t m, double* best, int64_t* arg, double* d) noexcept nogil
    # d[k * ld + b] = (xsq[b] - 2 xb[b].c[k]) + csq[k], clamped at 0, for b < m rounded up
    # to 4: the dgemm distances without dgemm
    void emfast_sqdist_rows(const double* xb, int D, const double* xsq, const double* c,
                            const double* csq, int K, Py_ssize_t m, Py_ssize_t ld,
                            double* d, const int* rows) noexcept nogil
    # out[b] = ||xb[b]||^2 for the m rows of a row-major block
    void emfast_row_sqnorms(const double* xb, int D, Py_ssize_t m, double* out) noexcept nogil
    # sum_b w[b] min(d[b], closest[b]) for b < m in a fixed order; out (or NULL) = the mins
    double emfast_min_wsum(const double* d, const double* closest, const double* w,
                           Py_ssize_t m, double* out) noexcept nogil
    # s[i] += w[r] x[r * D + i] for the n rows r = rows[0..n) of a row-major block, in a
    # fixed order; count[0] += w[r] in order
    void emfast_add_rows(const double* x, int D, const int* rows, int n, const double* w,
                         double* s, double* count) noexcept nogil
    # s[i] += w[r] (x[r * D + i] - c[i])^2 for those rows, in emfast_add_rows' order
    void emfast_add_sq_rows(const double* x, int D, const int* rows, int n, const double* w,
                            const double* c, double* s) noexcept nogil

import numpy as np

cdef enum:
    BLOCK = 256           # rows per block: the unit of the fixed summation order
    SUB_BLOCK = 64        # rows per step of a wide-row Lloyd pass (divides BLOCK)
    MAX_GROUPS = 64       # fixed-order partial sums; more than any thread count we use

cdef enum Cov:
    FULL = 0
    TIED = 1
    DIAG = 2
    SPHERICAL = 3

# Group buffers are G x (sums size) doubles; cap their total size.
cdef Py_ssize_t MAX_GROUP_BYTES = 64 * 1024 * 1024

# From this D on, the distances of a block to the centres come from one dgemm
# (||x||^2 - 2 x.c + ||c||^2); below it the direct sum of (x_i - c_i)^2, vectorised over the
# block's rows, is faster than the call (measured on a 2-core Zen 5, OpenBLAS 0.3, K 1..32).
cdef int GEMM_MIN_D = 16
# Up to this many centres those distances come from a direct multiply-add kernel over the
# rows (emfast_sqdist_rows) instead of dgemm, whose kernels run a (256 x D) by (D x K)
# product with few columns far below peak.
cdef int DIRECT_MAX_K = 8


ctypedef struct Centres:
    int K, D
    bint gemm                   # distances ||x||^2 - 2 x.c + ||c||^2 (D >= GEMM_MIN_D)
    bint direct                 # ... with x.c by emfast_sqdist_rows, not dgemm (K small)
    const double* c             # (K, D) row-major
    const double* csq           # (K,) ||c_k||^2 (gemm only)


ctypedef struct Work:           # per-thread scratch, allocated once per thread
    double* buf                 # (BLOCK, D) float64 copy of a float32 block
    const double* xb            # (BLOCK, D) the block in float64, row-major: buf, or the
                                #     rows of a float64 X themselves
    double* xT                  # (D, BLOCK) the block, feature-major
    double* dist                # (K, BLOCK) squared distances, centre-major
    double* best                # (BLOCK,) distance to the nearest centre
    double* w                   # (BLOCK,) the block's sample weights
    int64_t* arg                # (BLOCK,) index of the nearest centre
    double* xr                  # (D,) one row centred on its centre (statistics)
    double* z                   # (BLOCK, D) one cluster's rows, sqrt(w) (x - c) (dsyrk);
                                #     a bounded Lloyd pass's rows in doubt, compact
    double* zsq                 # (BLOCK,) their norms
    int* perm                   # (BLOCK,) the block's rows ordered by cluster (dsyrk)
    int* start                  # (K + 1,) where each cluster's rows begin in perm
    const double* xsq           # (N,) ||x_n||^2 of all rows (dgemm distances), or NULL:
                                #     computed per block
    Py_ssize_t n0               # the loaded block's first row


cdef Work* _work_alloc(const Centres* C) noexcept nogil:
    """Scratch for blocks of rows against the centres C (one per thread, per call)."""
    cdef Py_ssize_t D = C.D, K = C.K, bd = BLOCK * D
    cdef Work* W = <Work*> malloc(sizeof(Work))
    # not calloc: zeroing all of it cost a quarter of a Lloyd pass at 1,797 x 64
    cdef double* mem = <double*> malloc((3 * bd + BLOCK * K + 3 * BLOCK + D) * sizeof(double))
    W.buf = mem
    W.xb = mem
    W.xT = W.buf + bd
    W.dist = W.xT + bd
    W.best = W.dist + BLOCK * K
    W.w = W.best + BLOCK
    W.xr = W.w + BLOCK
    W.z = W.xr + D
    W.zsq = W.z + bd
    if not C.gemm:
        # the distance tile reads xT (and z, compact rows) up to a multiple of 4 rows; keep
        # those entries defined (they are never used)
        memset(W.xT, 0, bd * sizeof(double))
        memset(W.z, 0, bd * sizeof(double))
    W.arg = <int64_t*> malloc(BLOCK * sizeof(int64_t))
    W.perm = <int*> malloc((BLOCK + K + 1) * sizeof(int))
    W.start = W.perm + BLOCK
    W.xsq = NULL
    return W


cdef void _work_free(Work* W) noexcept nogil:
    free(W.buf)
    free(W.arg)
    free(W.perm)
    free(W)


cdef void _load_block(const Centres* C, const floating* X, const double* sw, Py_ssize_t n0,
                      Py_ssize_t m, bint rows, Work* W) noexcept nogil:
    """The rows [n0, n0 + m) as float64: feature-major in W.xT for the direct distances,
    row-major in W.xb for the dgemm ones or when ``rows``; W.w their weights (1 when sw is
    NULL)."""
    cdef Py_ssize_t b, i, D = C.D
    cdef const floating* x = X + n0 * D
    W.n0 = n0
    if floating is double:
        W.xb = x
    elif C.gemm or rows:
        for i in range(m * D):
            W.buf[i] = x[i]
        W.xb = W.buf
    if not C.gemm and D < 16:
        for b in range(m):
            for i in range(D):
                W.xT[i * BLOCK + b] = x[b * D + i]
    elif not C.gemm:
        # wide rows: write xT in order (row-order writes, D lines 2 KiB apart per row,
        # defeat write-combining; measured up to 3x slower at D = 24..64)
        for i in range(D):
            for b in range(m):
                W.xT[i * BLOCK + b] = x[b * D + i]
    for b in range(m):
        W.w[b] = 1.0 if sw == NULL else sw[n0 + b]


cdef void _block_sqdist(const Centres* C, Work* W, Py_ssize_t m) noexcept nogil:
    """W.dist[k, b] = ||x_b - c_k||^2 for the m rows of the loaded block."""
    cdef int D = C.D, K = C.K, k, mm = <int> m, ld = BLOCK
    cdef Py_ssize_t b
    cdef double t0, zero = 0.0, minus2 = -2.0
    cdef double* d
    cdef const double* xsq
    if C.gemm:
        if W.xsq != NULL:
            xsq = W.xsq + W.n0
        else:
            emfast_row_sqnorms(W.xb, D, m, W.best)   # borrowed until the nearest-centre search
            xsq = W.best
        if C.direct:
            emfast_sqdist_rows(W.xb, D, xsq, C.c, C.csq, K, m, BLOCK, W.dist, NULL)
            return
        # column-major: dist (m x K, ld BLOCK) = -2 xb^T c, xb being (D x m), c (D x K)
        dgemm(b"T", b"N", &mm, &K, &D, &minus2, <double*> W.xb, &D, <double*> C.c, &D, &zero,
              W.dist, &ld)
        for k in range(K):
            d = W.dist + k * BLOCK
            for b in range(m):
                t0 = d[b] + xsq[b] + C.csq[k]
                d[b] = t0 if t0 > 0.0 else 0.0   # cancellation can leave -1e-16
        return
    emfast_sqdist_T(W.xT, BLOCK, D, C.c, K, m, W.dist)


cdef void _block_nearest(const Centres* C, Work* W, Py_ssize_t m) noexcept nogil:
    """W.best[b], W.arg[b]: distance to and index of the nearest centre (ties: lowest k)."""
    if C.gemm:
        _block_sqdist(C, W, m)
        emfast_argmin_cols(W.dist, BLOCK, C.K, m, W.best, W.arg)
    else:
        emfast_nearest_T(W.xT, BLOCK, C.D, C.c, C.K, m, W.best, W.arg, W.dist)


cdef Py_ssize_t _n_groups(Py_ssize_t n_blocks, Py_ssize_t size) noexcept nogil:
    """Groups of contiguous blocks: a function of the shapes only, never of n_threads."""
    cdef Py_ssize_t by_memory = MAX_GROUP_BYTES // (8 * (size if size > 0 else 1))
    cdef Py_ssize_t g = min(n_blocks, <Py_ssize_t> MAX_GROUPS)
    g = min(g, by_memory)
    return g if g > 1 else 1


cdef class _CentreSet:
    """The Centres struct and the arrays it points into."""
    cdef Centres s
    cdef object c, csq

    def __init__(self, centres):
        self.c = np.ascontiguousarray(centres, dtype=np.float64)
        cdef const double[:, ::1] cv = self.c
        cdef Py_ssize_t K = cv.shape[0], D = cv.shape[1]
        self.csq = np.empty(K)
        cdef double[::1] qv = self.csq
        _centres_init(&self.s, &cv[0, 0] if K > 0 and D > 0 else NULL,
                      &qv[0] if K > 0 else NULL, <int> K, <int> D)


cdef void _centres_init(Centres* C, const double* c, double* csq, int K, int D) noexcept nogil:
    """C for the K centres c (K, D), with their norms into csq (K,) where the distances
    need them."""
    C.K = K
    C.D = D
    C.gemm = D >= GEMM_MIN_D
    C.direct = C.gemm and K <= DIRECT_MAX_K
    C.c = c
    C.csq = csq
    if C.gemm and K > 0:    # a loop, not einsum: per-call overhead of a Lloyd step
        _centre_norms(c, K, D, csq)


cdef void _centre_norms(const double* c, int K, int D, double* csq) noexcept nogil:
    """csq[k] = ||c_k||^2 for the K rows of c (K, D), each summed in feature order."""
    cdef int k, i
    for k in range(K):
        csq[k] = 0.0
        for i in range(D):
            csq[k] += c[k * D + i] * c[k * D + i]


cdef void _sum_groups(const double[:, ::1] parts, Py_ssize_t start, Py_ssize_t n,
                      double* out, bint add=False) noexcept nogil:
    """out[j] = sum over groups g, in order, of parts[g, start + j], j < n (numpy's
    parts.sum(axis=0) without its per-call cost); with add, out[j] += that sum."""
    cdef Py_ssize_t g, j
    cdef double t
    for j in range(n):
        t = parts[0, start + j]
        for g in range(1, parts.shape[0]):
            t += parts[g, start + j]
        out[j] = out[j] + t if add else t


# ---------------------------------------------------------------------------------------
# k-means++ seeding


cdef const double* _norms_arg(const double[::1] xsq, Py_ssize_t N) except? NULL:
    """The kernels' row norms argument: (N,) the norms of row_norms, (0,) none given; any
    other length is refused (the passes would read past it)."""
    if xsq.shape[0] not in (0, N):
        raise ValueError(f"xsq must have shape ({N},) (row_norms of X) or (0,), got "
                         f"({xsq.shape[0]},)")
    return &xsq[0] if xsq.shape[0] > 0 else NULL


def centre_rows(
    const floating[:, ::1] X,           # IN  (N, D) float32 or float64
    const double[::1] offset,           # IN  (D,)
    int n_threads,                      # IN  OpenMP threads
):
    """(Xc, xsq): Xc = X - offset as a new (N, D) float64 array, the rows k-means runs on,
    and xsq = row_norms(Xc) (the same bits), taken from each block while it is in cache
    instead of in a pass of their own. Row blocks in parallel: NumPy's broadcast
    subtraction runs on one core, bound by its stores into the new array (a tenth of a
    default fit on 1,797 x 64)."""
    cdef Py_ssize_t N = X.shape[0], D = X.shape[1], n_blocks = (N + BLOCK - 1) // BLOCK
    cdef Py_ssize_t blk, n, i
    cdef bint norms = D >= GEMM_MIN_D and N > 0      # row_norms' rule
    if offset.shape[0] != D:
        raise ValueError(f"offset must have shape ({D},), got ({offset.shape[0]},)")
    out = np.empty((N, D))
    xsq = np.empty(N if norms else 0)
    cdef double[:, ::1] ov = out
    cdef double[::1] qv = xsq
    with nogil:
        for blk in prange(n_blocks, schedule="static", num_threads=n_threads):
            for n in range(blk * BLOCK, min(N, blk * BLOCK + BLOCK)):
                for i in range(D):
                    ov[n, i] = X[n, i] - offset[i]
            if norms:
                emfast_row_sqnorms(&ov[blk * BLOCK, 0], <int> D,
                                   min(<Py_ssize_t> BLOCK, N - blk * BLOCK), &qv[blk * BLOCK])
    return out, xsq


def row_norms(const floating[:, ::1] X, int n_threads):
    """(N,) ||x_n||^2 as the k-means++ distance passes use them (the same bits as their
    own), or (0,) where those passes use none (narrow rows): computed once per k-means++
    run instead of once per pass, like lloyd_run's."""
    cdef Py_ssize_t N = X.shape[0]
    cdef _CentreSet cs = _CentreSet(np.zeros((1, X.shape[1])))
    if not cs.s.gemm or N == 0:
        return np.empty(0)
    xsq = np.empty(N)
    cdef double[::1] xv = xsq
    with nogil:
        _row_sqnorms(&cs.s, &X[0, 0], N, &xv[0], n_threads)
    return xsq


cdef void _update_pass(const Centres* C, const floating* X, const double* sw,
                       const double* xsq, double* closest, double* block_pot, Py_ssize_t N,
                       int n_threads) noexcept nogil:
    """closest = min(closest, d(x, the one centre of C)); block_pot the per-block sums of w
    closest. xsq: the rows' squared norms (row_norms) or NULL."""
    cdef Py_ssize_t n_blocks = (N + BLOCK - 1) // BLOCK, blk, n0, m
    cdef Work* W = NULL
    with parallel(num_threads=n_threads):
        W = _work_alloc(C)
        W.xsq = xsq
        for blk in prange(n_blocks, schedule="static"):
            n0 = blk * BLOCK
            m = min(<Py_ssize_t> BLOCK, N - n0)
            _load_block(C, X, sw, n0, m, False, W)
            _block_sqdist(C, W, m)
            block_pot[blk] = emfast_min_wsum(W.dist, closest + n0, W.w, m, closest + n0)
        _work_free(W)


def plusplus_update(
    const floating[:, ::1] X,           # IN  (N, D) float32 or float64
    const double[::1] sample_weight,    # IN  (N,), or (0,): all weights 1
    const double[::1] xsq,              # IN  (N,) row_norms(X), or (0,): computed per block
    const double[::1] centre,           # IN  (D,) the centre just chosen
    double[::1] closest,                # IN/OUT (N,) squared distance to the nearest centre
                                        #     so far (+inf before the first); min'ed with centre
    double[::1] block_pot,              # OUT (ceil(N / 256),) per 256-row block: sum w closest
    int n_threads,                      # IN  OpenMP threads
):
    """Fold one new centre into every row's closest distance; per-block potentials."""
    cdef Py_ssize_t N = X.shape[0]
    cdef _CentreSet cs = _CentreSet(np.asarray(centre).reshape(1, -1))
    cdef const double* sw = &sample_weight[0] if sample_weight.shape[0] > 0 else NULL
    cdef const double* xp = _norms_arg(xsq, N)
    if N > 0:
        with nogil:
            _update_pass(&cs.s, &X[0, 0], sw, xp, &closest[0], &block_pot[0], N, n_threads)


cdef void _potentials_group(const Centres* C, Work* W, const floating* X, const double* sw,
                            const double* closest, Py_ssize_t N, Py_ssize_t b0, Py_ssize_t b1,
                            double* pot, double* keep) noexcept nogil:
    """pot[t] += sum over blocks [b0, b1), in order, of sum_b w min(closest, d(x, cand t));
    the distances d(x_n, cand t) into keep[t * N + n] unless keep is NULL."""
    cdef Py_ssize_t blk, n0, m
    cdef int t
    for blk in range(b0, b1):
        n0 = blk * BLOCK
        m = min(<Py_ssize_t> BLOCK, N - n0)
        _load_block(C, X, sw, n0, m, False, W)
        _block_sqdist(C, W, m)
        for t in range(C.K):
            pot[t] += emfast_min_wsum(W.dist + t * BLOCK, closest + n0, W.w, m, NULL)
            if keep != NULL:
                memcpy(keep + t * N + n0, W.dist + t * BLOCK, m * sizeof(double))


cdef void _potentials_pass(const Centres* C, const floating* X, const double* sw,
                           const double* xsq, const double* closest, Py_ssize_t N,
                           double[:, ::1] pv, double* pots, int n_threads,
                           double* keep) noexcept nogil:
    """pots[t] for the C.K candidates, through the group buffers pv (G, K) (overwritten);
    xsq: the rows' squared norms (row_norms) or NULL; keep: (K, N) for the distances, or
    NULL."""
    cdef Py_ssize_t n_blocks = (N + BLOCK - 1) // BLOCK, G = pv.shape[0], g
    cdef Work* W = NULL
    memset(&pv[0, 0], 0, G * pv.shape[1] * sizeof(double))
    cdef bint static = static_rows(N * C.D * sizeof(floating), n_threads)
    with parallel(num_threads=n_threads):
        W = _work_alloc(C)
        W.xsq = xsq
        if static:
            for g in prange(G, schedule="static"):
                _potentials_group(C, W, X, sw, closest, N, g * n_blocks // G,
                                  (g + 1) * n_blocks // G, &pv[g, 0], keep)
        else:
            for g in prange(G, schedule="dynamic"):
                _potentials_group(C, W, X, sw, closest, N, g * n_blocks // G,
                                  (g + 1) * n_blocks // G, &pv[g, 0], keep)
        _work_free(W)
    _sum_groups(pv, 0, C.K, pots)


def plusplus_potentials(
    const floating[:, ::1] X,           # IN  (N, D) float32 or float64
    const double[::1] sample_weight,    # IN  (N,), or (0,): all weights 1
    const double[::1] xsq,              # IN  (N,) row_norms(X), or (0,): computed per block
    const double[::1] closest,          # IN  (N,) squared distance to the nearest centre
    const double[:, ::1] candidates,    # IN  (T, D) candidate centres
    double[::1] pots,                   # OUT (T,) sum_n w_n min(closest_n, ||x_n - cand_t||^2)
    int n_threads,                      # IN  OpenMP threads
):
    """The potential each candidate would leave, summed in a fixed order."""
    cdef Py_ssize_t N = X.shape[0], n_blocks = (N + BLOCK - 1) // BLOCK
    cdef int T = candidates.shape[0]
    cdef _CentreSet cs = _CentreSet(np.asarray(candidates))
    cdef const double* sw = &sample_weight[0] if sample_weight.shape[0] > 0 else NULL
    cdef double[:, ::1] pv = np.empty((_n_groups(n_blocks, T), max(T, 1)))
    cdef const double* xp = _norms_arg(xsq, N)
    if T == 0:
        return
    if N == 0:
        np.asarray(pots)[:] = 0.0
        return
    with nogil:
        _potentials_pass(&cs.s, &X[0, 0], sw, xp, &closest[0], N, pv, &pots[0], n_threads,
                         NULL)


cdef void _draw_rows(const double* values, int T, const double* block_pot,
                     Py_ssize_t n_blocks, const double* closest, const double* sw,
                     Py_ssize_t N, double* block_cum, int64_t* rows) noexcept nogil:
    """rows[t]: where the cumulative potential sum_n w_n closest_n first reaches values[t].
    The block from the running sum of block_pot (into block_cum), the row from a running
    sum over that block on top of the blocks before it (rows past N adding 0); a row is
    counted while that sum is below the value, at most the block's last row."""
    cdef Py_ssize_t blk, lo, j, found
    cdef double run, base, mass
    cdef int t
    run = 0.0
    for blk in range(n_blocks):
        run += block_pot[blk]
        block_cum[blk] = run
    for t in range(T):
        blk = 0              # the first block whose running sum reaches the value
        while blk < n_blocks - 1 and block_cum[blk] < values[t]:
            blk += 1
        lo = blk * BLOCK
        base = block_cum[blk - 1] if blk > 0 else 0.0
        run = 0.0
        found = 0
        for j in range(min(<Py_ssize_t> BLOCK, N - lo)):
            mass = closest[lo + j] if sw == NULL else closest[lo + j] * sw[lo + j]
            run += mass
            found += base + run < values[t]
        if BLOCK > N - lo and base + run < values[t]:   # rows past N, each adding 0
            found += BLOCK - (N - lo)
        rows[t] = lo + min(found, min(<Py_ssize_t> BLOCK, N - lo) - 1)


cdef void _fold_kept(const double* d, const double* sw, const double* ones, double* closest,
                     double* block_pot, Py_ssize_t N, int n_threads) noexcept nogil:
    """_update_pass for a centre whose distances d (N,) were kept by the potentials pass:
    the same sums of the same values."""
    cdef Py_ssize_t n_blocks = (N + BLOCK - 1) // BLOCK, blk, n0
    for blk in prange(n_blocks, schedule="static", num_threads=n_threads):
        n0 = blk * BLOCK
        block_pot[blk] = emfast_min_wsum(d + n0, closest + n0, ones if sw == NULL else sw + n0,
                                         min(<Py_ssize_t> BLOCK, N - n0), closest + n0)


cdef int _plusplus_round(const floating* X, Py_ssize_t N, int D, const double* sw,
                         const double* xp, double* closest, double* block_pot,
                         Py_ssize_t n_blocks, const double* values, int64_t* cand,
                         double* pots, int T, double* block_cum, double* cx, double* csq,
                         double[:, ::1] pv, double* kept, const double* ones,
                         int n_threads) noexcept nogil:
    """One greedy k-means++ round (plusplus_step) with the caller's buffers: block_cum
    (n_blocks,), cx (T, D), csq (T + 1,), pv (groups, T), kept (T, N) or NULL (then the best
    candidate's distances are computed again), ones (BLOCK,) where sw is NULL and kept is
    not. Returns the best candidate's index in cand."""
    cdef Centres cands, chosen
    cdef Py_ssize_t i
    cdef int t, best = 0
    if values != NULL:
        _draw_rows(values, T, block_pot, n_blocks, closest, sw, N, block_cum, cand)
    for t in range(T):
        for i in range(D):
            cx[t * D + i] = X[cand[t] * D + i]
    _centres_init(&cands, cx, csq, T, D)
    _potentials_pass(&cands, X, sw, xp, closest, N, pv, pots, n_threads, kept)
    for t in range(1, T):
        if pots[t] < pots[best]:
            best = t
    if kept != NULL:
        _fold_kept(kept + best * N, sw, ones, closest, block_pot, N, n_threads)
    else:
        _centres_init(&chosen, cx + best * D, csq + T, 1, D)
        _update_pass(&chosen, X, sw, xp, closest, block_pot, N, n_threads)
    return best


cdef class _RoundBuffers:
    """The buffers of k-means++ rounds with T candidates over N rows of D features. The
    candidates' distances are kept (so that the best one's are folded in without a second
    pass over X) where they take no more memory than X."""
    cdef double[::1] block_cum, cx, csq, ones
    cdef double[:, ::1] pv, kept
    cdef double* kept_p
    cdef const double* ones_p

    def __init__(self, Py_ssize_t N, int D, int T, bint unweighted):
        cdef Py_ssize_t n_blocks = (N + BLOCK - 1) // BLOCK
        self.block_cum = np.empty(max(n_blocks, 1))
        self.cx = np.empty(max(T * D, 1))
        self.csq = np.empty(T + 1)
        self.pv = np.empty((_n_groups(n_blocks, T), max(T, 1)))
        self.kept = np.empty((T if T <= D else 1, N if T <= D else 1))
        self.kept_p = &self.kept[0, 0] if T <= D else NULL
        self.ones = np.ones(BLOCK)
        self.ones_p = &self.ones[0] if unweighted else NULL


def plusplus_step(
    const floating[:, ::1] X,           # IN  (N, D) float32 or float64, N >= 1
    const double[::1] sample_weight,    # IN  (N,), or (0,): all weights 1
    const double[::1] xsq,              # IN  (N,) row_norms(X), or (0,): computed per block
    double[::1] closest,                # IN/OUT (N,) squared distance to the nearest centre
    double[::1] block_pot,              # IN/OUT (ceil(N / 256),) sum w closest per block
    const double[::1] values,           # IN  (T,) draws from [0, sum block_pot); or (0,)
    int64_t[::1] cand,                  # OUT (T,) the rows drawn; IN when values is (0,)
    double[::1] pots,                   # OUT (T,) the potential each candidate would leave
    int n_threads,                      # IN  OpenMP threads
):
    """One greedy k-means++ round in one call: the candidate rows drawn (the row where the
    cumulative potential first reaches each value, as _draw_rows), their potentials
    (plusplus_potentials), and the best (lowest potential, the first on ties) folded in
    (plusplus_update). Returns its index in cand."""
    cdef Py_ssize_t N = X.shape[0]
    cdef int D = X.shape[1], T = cand.shape[0], best
    cdef const double* sw = &sample_weight[0] if sample_weight.shape[0] > 0 else NULL
    cdef const double* xp = _norms_arg(xsq, N)
    cdef _RoundBuffers R = _RoundBuffers(N, D, T, sw == NULL)
    with nogil:
        best = _plusplus_round(&X[0, 0], N, D, sw, xp, &closest[0], &block_pot[0],
                               block_pot.shape[0], &values[0] if values.shape[0] > 0 else NULL,
                               &cand[0], &pots[0], T, &R.block_cum[0], &R.cx[0], &R.csq[0],
                               R.pv, R.kept_p, R.ones_p, n_threads)
    return best


def plusplus_run(
    const floating[:, ::1] X,           # IN  (N, D) float32 or float64, N >= 1
    const double[::1] sample_weight,    # IN  (N,), or (0,): all weights 1
    const double[::1] xsq,              # IN  (N,) row_norms(X), or (0,): computed per block
    double[::1] closest,                # IN/OUT (N,) squared distance to the nearest centre
    double[::1] block_pot,              # IN/OUT (ceil(N / 256),) sum w closest per block
    rng,                                # IN/OUT numpy RandomState: the rounds' draws
    int n_trials,                       # IN  candidates per round (T)
    int64_t[::1] indices,               # IN/OUT (K,) the centres' rows; indices[0] IN
    int n_threads,                      # IN  OpenMP threads
):
    """Rounds 1, 2, ... of greedy k-means++ in one call, each plusplus_step's with the values
    rng.uniform(size=T) * pot, pot the sum of block_pot (the last value of its running sum,
    as np.cumsum gives it), drawn from rng's bit generator as RandomState.uniform draws
    them; indices[c] = the best candidate's row. Stops before a round whose pot is <= 0 (no
    row left to draw by its potential: fewer distinct rows than centres), with nothing
    drawn for it, and returns that round's number c; returns K when every round ran."""
    cdef Py_ssize_t N = X.shape[0], n_blocks = block_pot.shape[0], blk
    cdef int D = X.shape[1], T = n_trials, K = indices.shape[0], c = 1, t, best
    cdef const double* sw = &sample_weight[0] if sample_weight.shape[0] > 0 else NULL
    cdef const double* xp = _norms_arg(xsq, N)
    cdef _RoundBuffers R = _RoundBuffers(N, D, T, sw == NULL)
    cdef double[::1] values = np.empty(max(T, 1))
    cdef int64_t[::1] cand = np.empty(max(T, 1), dtype=np.int64)
    cdef double[::1] pots = np.empty(max(T, 1))
    cdef double pot
    bit_generator = rng._bit_generator
    cdef bitgen_t* bg = <bitgen_t*> PyCapsule_GetPointer(bit_generator.capsule, "BitGenerator")
    with bit_generator.lock, nogil:
        while c < K:
            pot = 0.0
            for blk in range(n_blocks):
                pot += block_pot[blk]
            if pot <= 0.0:
                break
            for t in range(T):      # uniform(0, 1) is 0 + 1 * next_double: the double itself
                values[t] = bg.next_double(bg.state) * pot
            best = _plusplus_round(&X[0, 0], N, D, sw, xp, &closest[0], &block_pot[0],
                                   n_blocks, &values[0], &cand[0], &pots[0], T,
                                   &R.block_cum[0], &R.cx[0], &R.csq[0], R.pv, R.kept_p,
                                   R.ones_p, n_threads)
            indices[c] = cand[best]
            c += 1
    return c


# ---------------------------------------------------------------------------------------
# Lloyd


ctypedef struct Bounds:          # Hamerly's bounds of one Lloyd run (lloyd_run)
    double* upper               # (N,) >= the distance (not squared) to the row's centre
    double* lower               # (N,) <= its distance to every other centre
    const double* xnorm         # (N,) >= ||x_n||
    const double* xsq           # (N,) ||x_n||^2 as the distances compute it
    double* move                # (K,) >= how far each centre moved in the last update
    double* other               # (K,) >= the farthest move of any other centre
    double kappa                # bound on a computed squared distance's error, relative
                                #     to (||x|| + ||c||)^2
    double slack                # relative slack that keeps rounded bounds on their side
    double cmax                 # >= max_k ||c_k||
    bint fresh                  # no bounds yet: every row is computed (and the inertia)
    bint incremental            # counts and sums updated by the rows that moved, not
                                #     summed again


cdef inline void _set_bounds(const Centres* C, const double* dist, Bounds* Bd, Py_ssize_t n,
                             int64_t a) noexcept nogil:
    """Row n's bounds from its computed squared distances dist[k * BLOCK] and its nearest
    centre a: each computed distance is within e of the true one, so the true distances
    lie within the bounds. A NaN distance leaves no lower bound."""
    cdef int k
    cdef bint nan = False
    cdef double second = INFINITY, d, r = Bd.xnorm[n] + Bd.cmax
    cdef double e = Bd.kappa * r * r
    for k in range(C.K):            # selects, not branches: which k wins is data
        d = dist[k * BLOCK] if k != a else INFINITY
        nan |= d != d
        second = d if d < second else second
    Bd.upper[n] = sqrt(dist[a * BLOCK] + e) * (1.0 + Bd.slack)
    d = second - e
    Bd.lower[n] = sqrt(d) * (1.0 - Bd.slack) if d > 0.0 and not nan else 0.0


cdef int64_t _lloyd_rows_bounded(const Centres* C, Work* W, const floating* X,
                                 const double* sw, int64_t* labels, Py_ssize_t n0,
                                 Py_ssize_t m, double* counts, double* sums,
                                 Bounds* Bd) noexcept nogil:
    """The rows [n0, n0 + m) of a Lloyd pass with bounds: the label of each row is the one
    the plain pass (_lloyd_rows) gives it, and with Bd.incremental counts (K) and sums
    (K, D) get the changes (a row that moved leaves its old cluster's sums for its new
    one's). A row whose bounds (moved by the centres' last moves) put its centre nearer
    than any other by more than the distances' rounding keeps its label without a
    distance; the others are computed as the plain pass computes them (the same bits: in
    place for the direct distances of float64 rows, else copied compact) and get new
    bounds. Returns how many labels changed."""
    cdef int* mark = W.perm
    cdef Py_ssize_t b, j, n, nm = 0
    cdef int D = C.D, K = C.K, i
    cdef int64_t a, k, changed = 0
    cdef double up, lo, r, w
    cdef double* upper = Bd.upper
    cdef double* lower = Bd.lower
    cdef const double* xnorm = Bd.xnorm
    cdef const double* move = Bd.move
    cdef const double* other = Bd.other
    cdef double grow = 1.0 + Bd.slack, shrink = 1.0 - Bd.slack, kappa2 = 2.0 * Bd.kappa
    cdef double cmax = Bd.cmax
    cdef double* xT = W.xT
    cdef const double* xb = W.xb
    cdef const double* xsq = W.xsq
    for b in range(m):
        n = n0 + b
        a = labels[n]
        up = (upper[n] + move[a]) * grow
        lo = (lower[n] - other[a]) * shrink
        upper[n] = up
        lower[n] = lo
        r = xnorm[n] + cmax
        mark[nm] = <int> b              # kept (counted) where the bounds leave a doubt
        nm += not (lo > 0.0 and up * up + kappa2 * r * r < lo * lo)
    if nm == 0:
        return 0
    if floating is double and C.direct:     # the direct distances read the rows in place
        emfast_sqdist_rows(<const double*> X + n0 * D, D, Bd.xsq + n0, C.c, C.csq, K, nm,
                           BLOCK, W.dist, mark)
    else:
        # the rows in doubt, compact in W.z as the distances read a block: row-major with
        # their norms (dgemm form), else feature-major
        for j in range(nm):
            n = n0 + mark[j]
            if C.gemm:
                for i in range(D):
                    W.z[j * D + i] = X[n * D + i]
                W.zsq[j] = Bd.xsq[n]
            else:
                for i in range(D):
                    W.z[i * BLOCK + j] = X[n * D + i]
        if C.gemm:
            W.xb, W.xsq, W.n0 = W.z, W.zsq, 0
        else:
            W.xT = W.z
        _block_sqdist(C, W, nm)
        W.xT, W.xb, W.xsq = xT, xb, xsq
    emfast_argmin_cols(W.dist, BLOCK, K, nm, W.best, W.arg)
    for j in range(nm):
        n = n0 + mark[j]
        k = W.arg[j]
        _set_bounds(C, W.dist + j, Bd, n, k)
        a = labels[n]
        if k == a:
            continue
        changed += 1
        labels[n] = k
        if not Bd.incremental:
            continue
        w = 1.0 if sw == NULL else sw[n]
        counts[k] += w
        counts[a] -= w
        for i in range(D):
            r = w * X[n * D + i]
            sums[k * D + i] += r
            sums[a * D + i] -= r
    return changed


cdef int64_t _lloyd_rows(const Centres* C, Work* W, const floating* X, const double* sw,
                         int64_t* labels, Py_ssize_t n0, Py_ssize_t m, double* counts,
                         double* sums, double* inertia, Bounds* Bd) noexcept nogil:
    """The rows [n0, n0 + m) of a block, in order: nearest centres into labels, their
    weighted distances into inertia, weights into counts (K), rows into sums (K, D).
    Returns how many labels changed. Bd: the run's bounds, NULL for none, set here from
    every row's distances when fresh, else _lloyd_rows_bounded (no inertia; the counts and
    sums only of the rows that moved if Bd.incremental)."""
    cdef Py_ssize_t b
    cdef int D = C.D, K = C.K, k, i
    cdef int64_t changed = 0
    cdef double w
    cdef double* sk
    cdef const double* x
    if Bd != NULL and not Bd.fresh:
        changed = _lloyd_rows_bounded(C, W, X, sw, labels, n0, m, counts, sums, Bd)
        if Bd.incremental:
            return changed
        _load_block(C, X, sw, n0, m, False, W)
        for b in range(m):
            W.arg[b] = labels[n0 + b]
    else:
        _load_block(C, X, sw, n0, m, False, W)
        if Bd == NULL:
            _block_nearest(C, W, m)
        else:               # the distances kept: each row's second-nearest sets its bounds
            _block_sqdist(C, W, m)
            emfast_argmin_cols(W.dist, BLOCK, K, m, W.best, W.arg)
            for b in range(m):
                _set_bounds(C, W.dist + b, Bd, n0 + b, W.arg[b])
        # sum_b w best in emfast_min_wsum's vector order (min(best, best) = best): a
        # running sum waited an add's latency per row
        inertia[0] += emfast_min_wsum(W.best, W.best, W.w, m, NULL)
        for b in range(m):
            changed += labels[n0 + b] != W.arg[b]
            labels[n0 + b] = W.arg[b]
    for b in range(m):
        k = W.arg[b]
        w = W.w[b]
        if not C.gemm:      # narrow rows, feature-major
            counts[k] += w
            sk = sums + k * D
            x = W.xT + b
            for i in range(D):
                sk[i] += w * x[i * BLOCK]
    if C.gemm:              # wide rows: a cluster's rows at a time, sums in registers
        _order_by_cluster(W, W.arg, m, K)
        for k in range(K):
            emfast_add_rows(W.xb, D, W.perm + W.start[k], W.start[k + 1] - W.start[k],
                            W.w, sums + k * D, counts + k)
    return changed


cdef Py_ssize_t _lloyd_step_rows(const Centres* C) noexcept nogil:
    """Rows per step of a Lloyd pass: SUB_BLOCK where the cluster sums then read rows that
    the distances have just brought into L1 instead of a whole block (128 KiB at D = 64)
    from L2 or L3 a second time, and the distances' cost per call allows: the direct ones
    always; dgemm from D = 48 with up to 16 centres (16,384 rows, 1 thread: 1.3x faster at
    D = 64, K = 16; 6% slower at D = 16..30, K = 16..24 and 10% at D = 64, K = 32, its
    per-call cost then outweighing the reads)."""
    if C.direct or (C.gemm and C.D >= 48 and C.K <= 16):
        return SUB_BLOCK
    return BLOCK


cdef int64_t _lloyd_group(const Centres* C, Work* W, const floating* X, const double* sw,
                          int64_t* labels, Py_ssize_t N, Py_ssize_t b0, Py_ssize_t b1,
                          double* acc, Bounds* Bd) noexcept nogil:
    """Blocks [b0, b1) in order: nearest centres into labels, and into acc = [inertia,
    counts (K), sums (K, D)] their weighted sums. Returns how many labels changed.

    Rows go _lloyd_step_rows(C) at a time: the sums add the same rows in the same order
    (but for the pairing of rows inside emfast_add_rows), the inertia is summed per step
    in emfast_min_wsum's vector order, so its bits depend on the step size (never on the
    thread count)."""
    cdef Py_ssize_t step = _lloyd_step_rows(C), blk, n0, m, s0
    cdef int64_t changed = 0
    cdef double inertia
    for blk in range(b0, b1):
        n0 = blk * BLOCK
        m = min(<Py_ssize_t> BLOCK, N - n0)
        inertia = 0.0
        s0 = n0
        while s0 < n0 + m:
            changed += _lloyd_rows(C, W, X, sw, labels, s0, min(step, n0 + m - s0),
                                   acc + 1, acc + 1 + C.K, &inertia, Bd)
            s0 += step
        acc[0] += inertia
    return changed


cdef double _lloyd_pass(const Centres* C, const floating* X, const double* sw,
                        const double* xsq, int64_t* labels, Py_ssize_t N, double[:, ::1] pv,
                        int64_t[::1] cv, double* counts, double* sums, int n_threads,
                        int64_t* changed, Bounds* Bd) noexcept nogil:
    """One Lloyd pass over the N rows into the group buffers pv (G, 1 + K + K D) and cv (G,)
    (overwritten), summed in group order into counts (K,) and sums (K, D); changed: how
    many labels changed; xsq: the rows' squared norms (_row_sqnorms) or NULL. Returns the
    inertia. Bd: the run's bounds (_lloyd_rows), or NULL; a pass with bounds that are not
    fresh returns no inertia (0), and if incremental adds the changes to counts and sums."""
    cdef bint add = Bd != NULL and not Bd.fresh and Bd.incremental
    cdef Py_ssize_t n_blocks = (N + BLOCK - 1) // BLOCK, G = pv.shape[0], g
    cdef int D = C.D, K = C.K
    cdef double inertia = 0.0
    cdef Work* W = NULL
    memset(&pv[0, 0], 0, G * pv.shape[1] * sizeof(double))
    cdef bint static = static_rows(N * D * sizeof(floating), n_threads)
    with parallel(num_threads=n_threads):
        W = _work_alloc(C)
        W.xsq = xsq
        if static:
            for g in prange(G, schedule="static"):
                cv[g] = _lloyd_group(C, W, X, sw, labels, N, g * n_blocks // G,
                                     (g + 1) * n_blocks // G, &pv[g, 0], Bd)
        else:
            for g in prange(G, schedule="dynamic"):
                cv[g] = _lloyd_group(C, W, X, sw, labels, N, g * n_blocks // G,
                                     (g + 1) * n_blocks // G, &pv[g, 0], Bd)
        _work_free(W)
    _sum_groups(pv, 0, 1, &inertia)
    _sum_groups(pv, 1, K, counts, add)
    if D > 0:
        _sum_groups(pv, 1 + K, K * D, sums, add)
    changed[0] = 0
    for g in range(G):
        changed[0] += cv[g]
    return inertia


cdef void _row_sqnorms(const Centres* C, const floating* X, Py_ssize_t N, double* xsq,
                       int n_threads) noexcept nogil:
    """xsq[n] = ||x_n||^2 for the N rows, each as _block_sqdist computes it (the same bits)."""
    cdef Py_ssize_t n_blocks = (N + BLOCK - 1) // BLOCK, blk, n0, m
    cdef Work* W = NULL
    with parallel(num_threads=n_threads):
        W = _work_alloc(C)
        for blk in prange(n_blocks, schedule="static"):
            n0 = blk * BLOCK
            m = min(<Py_ssize_t> BLOCK, N - n0)
            _load_block(C, X, NULL, n0, m, True, W)
            emfast_row_sqnorms(W.xb, C.D, m, xsq + n0)
        _work_free(W)


cdef class _LloydBuffers:
    """The group buffers of Lloyd passes over N rows with K centres of D features."""
    cdef double[:, ::1] pv
    cdef int64_t[::1] cv

    def __init__(self, Py_ssize_t N, Py_ssize_t K, Py_ssize_t D):
        cdef Py_ssize_t size = 1 + K + K * D
        cdef Py_ssize_t G = _n_groups((N + BLOCK - 1) // BLOCK, size)
        self.pv = np.empty((G, size))
        self.cv = np.empty(G, dtype=np.int64)


def lloyd_step(
    const floating[:, ::1] X,           # IN  (N, D) float32 or float64
    const double[::1] sample_weight,    # IN  (N,), or (0,): all weights 1
    const double[:, ::1] centres,       # IN  (K, D)
    int64_t[::1] labels,                # IN/OUT (N,) previous labels; the nearest centre's
    double[::1] counts,                 # OUT (K,) weighted count of each new cluster
    double[:, ::1] sums,                # OUT (K, D) weighted sum of each new cluster's rows
    int n_threads,                      # IN  OpenMP threads
):
    """One Lloyd pass: assign every row to its nearest centre and sum the new clusters.

    Returns (number of labels that changed, inertia = sum_n w_n min_k ||x_n - c_k||^2)."""
    cdef Py_ssize_t N = X.shape[0]
    cdef int D = X.shape[1], K = centres.shape[0]
    cdef _CentreSet cs = _CentreSet(np.asarray(centres))
    cdef const double* sw = &sample_weight[0] if sample_weight.shape[0] > 0 else NULL
    cdef _LloydBuffers buf = _LloydBuffers(N, K, D)
    cdef int64_t changed = 0
    cdef double inertia = 0.0
    if N == 0:     # no rows: empty clusters
        np.asarray(counts)[:] = 0.0
        np.asarray(sums)[...] = 0.0
        return 0, 0.0
    with nogil:
        inertia = _lloyd_pass(&cs.s, &X[0, 0], sw, NULL, &labels[0], N, buf.pv, buf.cv,
                              &counts[0], &sums[0, 0] if D > 0 else NULL, n_threads,
                              &changed, NULL)
    return changed, inertia


cdef enum LloydStop:     # why lloyd_run returned (emfast.mixture._kmeans names them)
    SAME_LABELS = 0      # the last pass changed no label: the centres are its clusters' means
    EMPTY = 1            # the last pass left a cluster empty; the centres were not moved
    SMALL_SHIFT = 2      # the centres moved by at most abs_tol (squared, summed)
    MAX_ITER = 3         # max_iter passes, the centres moved after the last


cdef bint _move_centres(double* c, const double* counts, const double* sums, int K, int D,
                        double* shift) noexcept nogil:
    """c = sums / counts (each cluster's mean), shift = sum over k, i in order of the squared
    moves; False, with c untouched, when some cluster is empty (count not > 0)."""
    cdef int k, i
    cdef double d, s = 0.0, new
    for k in range(K):
        if not counts[k] > 0.0:
            return False
    for k in range(K):
        for i in range(D):
            new = sums[k * D + i] / counts[k]
            d = new - c[k * D + i]
            s += d * d
            c[k * D + i] = new
    shift[0] = s
    return True


# Lloyd passes of a run before the bounds: they cost a pass's worth of square roots to set
# (two Lloyd passes at D = 10, K = 10, which many runs take in all)
cdef int PLAIN_PASSES = 2
# A cluster whose count, moved by the rows that left and joined it, falls to this fraction
# of the total may have no weight left but rounding: its pass is summed again as lloyd_step
# sums it, whose empty clusters count exactly 0 (never a centre of sums / 1e-17)
cdef double EMPTY_SUSPECT = 1e-9


cdef bint _suspect_empty(const double* counts, int K) noexcept nogil:
    """Whether some count is at most EMPTY_SUSPECT of their sum."""
    cdef int k
    cdef double total = 0.0
    for k in range(K):
        total += counts[k]
    for k in range(K):
        if not counts[k] > EMPTY_SUSPECT * total:
            return True
    return False


cdef void _update_bounds(const double* c, const double* prev, const double* csq, int K,
                         int D, Bounds* Bd) noexcept nogil:
    """Bd.move, Bd.other and Bd.cmax for centres moved from prev to c (both (K, D)), whose
    squared norms are csq (K,) (_centre_norms), rounded up."""
    cdef int k, i, arg = -1
    cdef double d, s, up = 1.0 + Bd.slack, first = 0.0, second = 0.0, cmax = 0.0
    for k in range(K):
        s = 0.0
        for i in range(D):
            d = c[k * D + i] - prev[k * D + i]
            s += d * d
        Bd.move[k] = sqrt(s) * up
        if Bd.move[k] > first:
            second = first
            first = Bd.move[k]
            arg = k
        elif Bd.move[k] > second:
            second = Bd.move[k]
        cmax = max(cmax, csq[k])
    for k in range(K):
        Bd.other[k] = second if k == arg else first
    Bd.cmax = sqrt(cmax) * up


def lloyd_run(
    const floating[:, ::1] X,           # IN  (N, D) float32 or float64, N >= 1
    const double[::1] sample_weight,    # IN  (N,), or (0,): all weights 1
    double[:, ::1] centres,             # IN/OUT (K, D) the start; the centres at the stop
    int64_t[::1] labels,                # IN/OUT (N,) previous labels; those of the last pass
    double[::1] counts,                 # OUT (K,) the last pass's cluster weights
    double[:, ::1] sums,                # OUT (K, D) the last pass's cluster sums
    Py_ssize_t max_iter,                # IN  at most this many passes (>= 1)
    double abs_tol,                     # IN  stop once the squared move is <= this
    int n_threads,                      # IN  OpenMP threads
    bint incremental=False,             # IN  counts and sums moved by the rows that moved
    const double[::1] xsq=None,         # IN  (N,) row_norms(X) (centre_rows gives them), or
                                        #     None / (0,): computed here
):
    """Lloyd iterations in one call: lloyd_step, then the centres to their clusters' means,
    until a stopping rule holds (LloydStop). Returns (passes run, LloydStop code, inertia
    of the last pass).

    Every pass gives each row the label lloyd_step would give it with the same centres,
    from fewer distances (Hamerly 2010): after PLAIN_PASSES passes and the one that sets
    the bounds, a row is computed only where its bounds (an upper bound on the distance to
    its centre, a lower bound on the distance to every other, moved by the centres' moves)
    leave its nearest centre in doubt by more than the rounding of the computed squared distances (at most kappa (||x|| + ||c||)^2,
    Higham's bound for sums of D + 3 terms with room to spare). The counts and sums are
    summed as lloyd_step sums them (the results are a loop of lloyd_steps', bit for bit),
    or with ``incremental`` updated by the rows that moved, not summed again (no pass
    over the rows that stayed; the centres may then differ from lloyd_step's in the last
    bits, and two runs that end at one partition in their last bits: for a caller that
    does not compare runs' inertias). When the last pass skipped rows, it is run again
    plainly with its centres: the returned counts, sums and inertia are lloyd_step's with
    the centres of that pass."""
    cdef Py_ssize_t N = X.shape[0], it = 0, n
    cdef int D = X.shape[1], K = centres.shape[0]
    cdef _CentreSet cs = _CentreSet(np.asarray(centres))
    cdef Centres C = cs.s
    cdef const double* sw = &sample_weight[0] if sample_weight.shape[0] > 0 else NULL
    cdef _LloydBuffers buf = _LloydBuffers(N, K, D)
    cdef int64_t changed = 0, again = 0
    cdef double inertia = 0.0, shift = 0.0
    cdef int stop = MAX_ITER
    cdef bint have_inertia = False
    cdef bint norms_given = xsq is not None and _norms_arg(xsq, N) != NULL
    if not norms_given:
        xsq = np.empty(N)
    cdef double[:, ::1] bv = np.empty((3, N))                    # upper, lower, xnorm
    cdef double[::1] kv = np.empty(2 * K)                         # move, other
    cdef double[:, ::1] prev = np.empty((K, D))
    cdef _CentreSet prev_set
    cdef Bounds Bd
    C.c = &centres[0, 0]        # moved in place (the set's norms are kept up to date)
    Bd.upper, Bd.lower, Bd.xnorm, Bd.xsq = &bv[0, 0], &bv[1, 0], &bv[2, 0], <double*> &xsq[0]
    Bd.move, Bd.other = &kv[0], &kv[K]
    Bd.slack = (D + 16) * 2.0 ** -50
    Bd.kappa = (D + 4) * 2.0 ** -51
    Bd.fresh = True
    Bd.incremental = incremental
    # the centres' norms on every path: the dgemm distances' and the bounds' cmax
    _centre_norms(C.c, K, D, <double*> C.csq)
    _update_bounds(C.c, C.c, C.csq, K, D, &Bd)      # no move yet; cmax
    with nogil:
        if C.gemm and not norms_given:  # every pass's dgemm distances need them: once
            _row_sqnorms(&C, &X[0, 0], N, <double*> &xsq[0], n_threads)
        while it < max_iter:
            it += 1
            if it == PLAIN_PASSES + 1:  # the bounds' margins need the rows' norms
                if not C.gemm and not norms_given:
                    _row_sqnorms(&C, &X[0, 0], N, <double*> &xsq[0], n_threads)
                for n in range(N):
                    bv[2, n] = sqrt(xsq[n]) * (1.0 + Bd.slack)
            memcpy(&prev[0, 0], &centres[0, 0], K * D * sizeof(double))
            # the first passes plain: a short run (well-separated clusters, a start near its
            # end) costs no bounds
            inertia = _lloyd_pass(&C, &X[0, 0], sw, &xsq[0] if C.gemm else NULL, &labels[0],
                                  N, buf.pv, buf.cv, &counts[0], &sums[0, 0], n_threads,
                                  &changed, &Bd if it > PLAIN_PASSES else NULL)
            have_inertia = it <= PLAIN_PASSES or Bd.fresh
            if Bd.incremental and not have_inertia and _suspect_empty(&counts[0], K):
                inertia = _lloyd_pass(&C, &X[0, 0], sw, &xsq[0] if C.gemm else NULL,
                                      &labels[0], N, buf.pv, buf.cv, &counts[0],
                                      &sums[0, 0], n_threads, &again, NULL)  # 0 changed
                have_inertia = True
            Bd.fresh = it <= PLAIN_PASSES       # the next pass sets the bounds
            if changed == 0:
                stop = SAME_LABELS
                break
            if not _move_centres(&centres[0, 0], &counts[0], &sums[0, 0], K, D, &shift):
                stop = EMPTY
                break
            _centre_norms(C.c, K, D, <double*> C.csq)
            _update_bounds(C.c, &prev[0, 0], C.csq, K, D, &Bd)
            if shift <= abs_tol:
                stop = SMALL_SHIFT
                break
    if not have_inertia:        # the last pass again, plainly: its sums and inertia
        prev_set = _CentreSet(np.asarray(prev))
        with nogil:
            inertia = _lloyd_pass(&prev_set.s, &X[0, 0], sw, &xsq[0] if C.gemm else NULL,
                                  &labels[0], N, buf.pv, buf.cv, &counts[0], &sums[0, 0],
                                  n_threads, &changed, NULL)
    return it, stop, inertia


# ---------------------------------------------------------------------------------------
# Gaussian statistics of a hard assignment
#
# Group buffer: nk (K), s1 (K, D), then s2: full packed upper triangles (K, P), tied one
# packed triangle (P,), diag (K, D), spherical (K,). Full and tied with D >= GEMM_MIN_D
# ("blas"): per block, the rows are ordered by cluster and each cluster's sqrt(w) (x - c)
# added with one dsyrk, into full (K, D, D) / tied (D, D) with the lower triangle
# (row-major) filled.


cdef Py_ssize_t _s2_size(int cov, bint blas, Py_ssize_t K, Py_ssize_t D) noexcept nogil:
    if blas:
        return (K if cov == FULL else 1) * D * D
    if cov == FULL:
        return K * (D * (D + 1) // 2)
    if cov == TIED:
        return D * (D + 1) // 2
    if cov == DIAG:
        return K * D
    return K


cdef void _order_by_cluster(Work* W, const int64_t* lab, Py_ssize_t m, int K) noexcept nogil:
    """W.perm: the block's rows with a label in [0, K), cluster by cluster in increasing k,
    each cluster's rows in row order; cluster k's run starts at W.start[k] (W.start[K]: the
    total)."""
    cdef int k
    cdef Py_ssize_t b
    for k in range(K + 1):
        W.start[k] = 0
    for b in range(m):
        if 0 <= lab[b] < K:
            W.start[lab[b] + 1] += 1
    for k in range(K):
        W.start[k + 1] += W.start[k]
    for b in range(m):                       # counting sort, stable: row order kept
        if 0 <= lab[b] < K:
            W.perm[W.start[lab[b]]] = <int> b
            W.start[lab[b]] += 1
    for k in range(K - 1, 0, -1):            # back to the starts (start[K]: the total)
        W.start[k] = W.start[k - 1]
    W.start[0] = 0


cdef void _block_scatter_blas(const Centres* C, Work* W, const int64_t* lab, Py_ssize_t m,
                              bint tied, double* nk, double* s1, double* s2) noexcept nogil:
    """The block's rows into nk, s1 and (by dsyrk, lower triangle) s2, cluster by cluster
    in increasing k, each cluster's rows in row order."""
    cdef int D = C.D, K = C.K, k, i, n, r
    cdef Py_ssize_t b
    cdef double w, sq, d, one = 1.0
    cdef const double* x
    cdef const double* c
    cdef double* zr
    _order_by_cluster(W, lab, m, K)
    for k in range(K):
        n = W.start[k + 1] - W.start[k]
        if n == 0:
            continue
        c = C.c + k * D
        for r in range(n):
            b = W.perm[W.start[k] + r]
            w = W.w[b]
            sq = sqrt(w)
            x = W.xb + b * D
            zr = W.z + r * D
            nk[k] += w
            for i in range(D):
                d = x[i] - c[i]
                s1[k * D + i] += w * d
                zr[i] = sq * d
        dsyrk(b"U", b"N", &D, &n, &one, W.z, &D, &one, s2 + (0 if tied else k * D * D), &D)


cdef void _block_scatter_diag(const Centres* C, Work* W, const int64_t* lab, Py_ssize_t m,
                              bint spherical, double* nk, double* s1, double* s2) noexcept nogil:
    """The block's rows into nk, s1 and the diagonal s2 (K, D), or with ``spherical`` its
    sum over the features (K,), cluster by cluster with the sums in registers
    (emfast_add_rows). s1 about the centre is the block's sum w x less c times its weight:
    one multiply-add per value instead of a subtraction and a multiply-add, the rounding of
    at most BLOCK rows' sum (about an ulp of the data's values in the mean); s2 is summed
    centred."""
    cdef int D = C.D, K = C.K, k, i, n
    cdef double cnt, q
    cdef const int* rows
    cdef const double* c
    cdef double* xr = W.xr
    _order_by_cluster(W, lab, m, K)
    for k in range(K):
        n = W.start[k + 1] - W.start[k]
        if n == 0:
            continue
        rows = W.perm + W.start[k]
        c = C.c + k * D
        memset(xr, 0, D * sizeof(double))
        cnt = 0.0
        emfast_add_rows(W.xb, D, rows, n, W.w, xr, &cnt)
        nk[k] += cnt
        for i in range(D):
            s1[k * D + i] += xr[i] - c[i] * cnt
        if not spherical:
            emfast_add_sq_rows(W.xb, D, rows, n, W.w, c, s2 + k * D)
            continue
        memset(xr, 0, D * sizeof(double))
        emfast_add_sq_rows(W.xb, D, rows, n, W.w, c, xr)
        q = 0.0
        for i in range(D):
            q += xr[i]
        s2[k] += q


cdef void _label_stats_group(const Centres* C, Work* W, const floating* X, const double* sw,
                             int64_t* labels, bint assign, int cov, bint blas, Py_ssize_t N,
                             Py_ssize_t b0, Py_ssize_t b1, double* st) noexcept nogil:
    """Blocks [b0, b1) in order into st (see above); rows whose label is outside [0, K)
    belong to no cluster. assign: labels are first set to the nearest centre."""
    cdef Py_ssize_t blk, n0, m, b
    cdef int D = C.D, K = C.K, P = D * (D + 1) // 2, k, i, j
    cdef double w, a
    cdef double* nk = st
    cdef double* s1 = st + K
    cdef double* s2 = s1 + K * D
    cdef double* s1k
    cdef double* s2k
    cdef double* xr = W.xr
    cdef const double* x
    cdef const double* c
    for blk in range(b0, b1):
        n0 = blk * BLOCK
        m = min(<Py_ssize_t> BLOCK, N - n0)
        _load_block(C, X, sw, n0, m, True, W)
        if assign:
            _block_nearest(C, W, m)
            for b in range(m):
                labels[n0 + b] = W.arg[b]
        if blas:
            _block_scatter_blas(C, W, labels + n0, m, cov == TIED, nk, s1, s2)
            continue
        if cov == DIAG or cov == SPHERICAL:
            _block_scatter_diag(C, W, labels + n0, m, cov == SPHERICAL, nk, s1, s2)
            continue
        for b in range(m):
            if labels[n0 + b] < 0 or labels[n0 + b] >= K:
                continue
            k = <int> labels[n0 + b]
            w = W.w[b]
            x = W.xb + b * D
            c = C.c + k * D
            s1k = s1 + k * D
            nk[k] += w
            for i in range(D):
                xr[i] = x[i] - c[i]
                s1k[i] += w * xr[i]
            # row i of the packed upper triangle starts at s2k + i after the shift
            s2k = s2 + (k * P if cov == FULL else 0)
            for i in range(D):
                a = w * xr[i]
                for j in range(i, D):
                    s2k[j] += a * xr[j]
                s2k += D - i - 1


def label_stats(
    const floating[:, ::1] X,           # IN  (N, D) float32 or float64
    const double[::1] sample_weight,    # IN  (N,), or (0,): all weights 1
    const double[:, ::1] centres,       # IN  (K, D) statistics are centred on these
    int cov_code,                       # IN  0 full, 1 tied, 2 diag, 3 spherical
    int64_t[::1] labels,                # IN  (N,) cluster of each row (outside [0, K): none)
                                        # OUT with assign: the nearest centre of each row
    bint assign,                        # IN  first set labels to the nearest centres
    double[::1] nk,                     # OUT (K,)
    double[:, ::1] s1,                  # OUT (K, D) sum_n w (x_n - c_k) over cluster k
    s2,                                 # OUT full (K,D,D) | tied (D,D) | diag (K,D) | spherical (K,)
    int n_threads,                      # IN  OpenMP threads
):
    """Gaussian statistics (the layouts of estep_stats) of a hard assignment, about centres."""
    cdef Py_ssize_t N = X.shape[0], n_blocks = (N + BLOCK - 1) // BLOCK, g
    cdef int D = X.shape[1], K = centres.shape[0]
    cdef _CentreSet cs = _CentreSet(np.asarray(centres))
    cdef Centres C = cs.s
    cdef const double* sw = &sample_weight[0] if sample_weight.shape[0] > 0 else NULL
    cdef bint blas = (cov_code == FULL or cov_code == TIED) and C.gemm
    cdef Py_ssize_t size = K + K * D + _s2_size(cov_code, blas, K, D)
    cdef Py_ssize_t G = _n_groups(n_blocks, size)
    parts = np.zeros((G, size))
    cdef double[:, ::1] pv = parts
    cdef Work* W = NULL
    cdef bint static = static_rows(N * D * sizeof(floating), n_threads)
    if N > 0 and K > 0:
        with nogil, parallel(num_threads=n_threads):
            W = _work_alloc(&C)
            if static:
                for g in prange(G, schedule="static"):
                    _label_stats_group(&C, W, &X[0, 0], sw, &labels[0], assign, cov_code,
                                       blas, N, g * n_blocks // G, (g + 1) * n_blocks // G,
                                       &pv[g, 0])
            else:
                for g in prange(G, schedule="dynamic"):
                    _label_stats_group(&C, W, &X[0, 0], sw, &labels[0], assign, cov_code,
                                       blas, N, g * n_blocks // G, (g + 1) * n_blocks // G,
                                       &pv[g, 0])
            _work_free(W)
    tot = parts.sum(axis=0)
    np.asarray(nk)[:] = tot[:K]
    np.asarray(s1)[...] = tot[K:K + K * D].reshape(K, D)
    b = tot[K + K * D:]
    if cov_code == DIAG:
        s2[...] = b.reshape(K, D)
    elif cov_code == SPHERICAL:
        s2[...] = b
    elif blas:
        S = b.reshape(-1, D, D)                 # lower triangle (row-major) is filled
        S = np.tril(S) + np.swapaxes(np.tril(S, -1), -1, -2)
        s2[...] = S if cov_code == FULL else S[0]
    else:
        iu = np.triu_indices(D)
        S = np.empty((K if cov_code == FULL else 1, D, D))
        packed = b.reshape(S.shape[0], -1)
        S[:, iu[0], iu[1]] = packed
        S[:, iu[1], iu[0]] = packed
        s2[...] = S if cov_code == FULL else S[0]


def _set_empty_suspect(double fraction):
    """Tuning hook for tests: the EMPTY_SUSPECT fraction (>= 1: every pass with bounds of an
    incremental Lloyd run is summed again plainly). Returns the old value. Not part of the
    kernel contract."""
    global EMPTY_SUSPECT
    old = EMPTY_SUSPECT
    EMPTY_SUSPECT = fraction
    return old


def _set_direct_max_k(int direct_max_k):
    """Tuning hook for benchmarks and tests: the most centres whose dgemm-style distances
    come from the direct kernel instead of dgemm. Returns the old value. Not part of the
    kernel contract."""
    global DIRECT_MAX_K
    old = DIRECT_MAX_K
    DIRECT_MAX_K = direct_max_k
    return old


def _set_gemm_min_d(int gemm_min_d):
    """Tuning hook for benchmarks and tests: the D from which distances use dgemm. Returns
    the old value. Not part of the kernel contract."""
    global GEMM_MIN_D
    old = GEMM_MIN_D
    GEMM_MIN_D = gemm_min_d
    return old
