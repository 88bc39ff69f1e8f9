# The body of the Cython + OpenMP Gaussian kernels, shared by the extension modules built
# from it (see setup.py and emfast._config): _gaussian.pyx (baseline instruction set, always
# built), _gaussian_avx2.pyx (-mavx2 -mfma) and _gaussian_avx512.pyx (AVX-512 F/DQ/VL), the
# x86-64 ones imported at run time when the CPU has their instructions. One source, so the
# builds can never drift apart. The design notes are the docstring of _gaussian.pyx; the
# arithmetic of a block is _gaussian_simd.h.


from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.stdint cimport int64_t
from libc.stdlib cimport malloc, free

import numpy as np

from emfast import _layout

include "_openmp.pxi"

include "_gaussian_simd.pxi"

cdef enum:
    BLOCK = 256           # rows per block (EMFAST_GBLOCK): a block's buffers stay in L1/L2
    MAX_GROUPS = 64       # fixed-order partial sums; more than any thread count we use

cdef enum Cov:
    FULL = 0
    TIED = 1
    DIAG = 2
    SPHERICAL = 3

# Group buffers are G x (stats size) doubles; cap their total size.
cdef Py_ssize_t MAX_GROUP_BYTES = 64 * 1024 * 1024

# estep_blocks keeps X's blocks transposed for a fit's E-steps (one copy per fit, shared by
# its restarts) up to this many bytes: the small problems, where the transposition is a
# third of a pass (D = 64, K = 3) and the copy fits a core's cache; beyond, it would add
# the size of X to a fit's memory, and X and the copy compete for the cache (at 50,000 x
# 30, 13 MB, and 100,000 x 10, 9 MB, fits on 2 threads measured 3-10% slower with it).
cdef Py_ssize_t MAX_BLOCKS_BYTES = 8 * 1024 * 1024


ctypedef struct Work:           # per-thread scratch, allocated once per thread
    emfast_gwork g              # the block's buffers (_gaussian_simd.h)
    double* mem


cdef Work* _work_alloc(const emfast_gmodel* M) noexcept nogil:
    """Scratch for one thread; NULL if out of memory."""
    cdef Work* W = <Work*> malloc(sizeof(Work))
    if W == NULL:
        return NULL
    W.mem = <double*> malloc(emfast_g_work_size(M) * sizeof(double))
    if W.mem == NULL:
        free(W)
        return NULL
    emfast_g_work_init(&W.g, W.mem, M)
    return W


cdef void _work_free(Work* W) noexcept nogil:
    if W != NULL:
        free(W.mem)
        free(W)


cdef void _load_block(const floating* X, Py_ssize_t n0, Py_ssize_t m, int D, int mp,
                      double* xT) noexcept nogil:
    """xT[i, b] = X[n0 + b, i] as float64 for b < m; 0 on the padding rows up to mp."""
    cdef Py_ssize_t b
    cdef int i
    if floating is double:
        emfast_g_load_T_double(X + n0 * D, D, <int> m, xT)
    else:
        emfast_g_load_T_float(X + n0 * D, D, <int> m, xT)
    for i in range(D):
        for b in range(m, mp):
            xT[i * LD + b] = 0.0


cdef void _load_weights(const double* sw, Py_ssize_t n0, Py_ssize_t m, int mp,
                        double* w) noexcept nogil:
    """w[b] = sw[n0 + b] (1 if sw is NULL) for b < m; 0 on the padding rows."""
    cdef Py_ssize_t b
    for b in range(m):
        w[b] = sw[n0 + b] if sw != NULL else 1.0
    for b in range(m, mp):
        w[b] = 0.0


cdef void _load_resp(const double* resp, Py_ssize_t n0, Py_ssize_t m, int K, int mp,
                     double* lp) noexcept nogil:
    """lp[k, b] = resp[n0 + b, k] for b < m; 0 on the padding rows."""
    cdef Py_ssize_t b
    cdef int k
    cdef const double* r = resp + n0 * K
    for b in range(m):
        for k in range(K):
            lp[k * LD + b] = r[b * K + k]
    for k in range(K):
        for b in range(m, mp):
            lp[k * LD + b] = 0.0


# ---------------------------------------------------------------------------------------
# One block / one group / all groups. The statistics pass (estep_stats and weighted_stats)
# is one loop; only where a block's responsibilities come from differs: the E-step computes
# them from the log-densities, weighted_stats transposes the caller's resp rows.
#
# Group buffer: loglik, nk (K), s1 (K, D), s2: full (K, D, D) and tied (D, D) lower
# triangles, diag and spherical (K, D).


cdef void _stats_block(const emfast_gmodel* M, Work* W, const floating* X, const double* sw,
                       const double* resp, const double* blocks, Py_ssize_t n0, Py_ssize_t m,
                       double* st) noexcept nogil:
    """Add block [n0, n0 + m)'s statistics to st[1:] and its weighted log-likelihood to st[0].

    resp == NULL: E-step (responsibilities from the model, sample weights sw or NULL);
    otherwise the given responsibilities resp (N, K). blocks: X's blocks as loaded
    (estep_blocks), or NULL: load this one into W's buffer.
    """
    cdef int D = M.D, K = M.K, mp = _padded(m)
    if blocks != NULL:     # read in place: nothing writes a block once loaded
        W.g.xT = <double*> blocks + ((n0 // BLOCK) * (D + 1) + 1) * LD
    else:
        _load_block(X, n0, m, D, mp, W.g.xT)
    if resp == NULL:
        _load_weights(sw, n0, m, mp, W.g.w)
        emfast_g_log_prob(M, &W.g, mp)
        st[0] += emfast_g_resp(K, mp, W.g.lp, W.g.w, NULL, 1)
    else:
        _load_resp(resp, n0, m, K, mp, W.g.lp)
    # the squared distances of the log-densities computed here serve the statistics
    emfast_g_stats(M, &W.g, mp, W.g.lp, W.g.maha if resp == NULL else NULL, st + 1,
                   st + 1 + K, st + 1 + K + K * D)


cdef void _stats_group(const emfast_gmodel* M, Work* W, const floating* X, const double* sw,
                       const double* resp, const double* blocks, Py_ssize_t N,
                       Py_ssize_t n_blocks, Py_ssize_t G, Py_ssize_t g,
                       double* st) noexcept nogil:
    """Group g's contiguous run of blocks, in order, into its buffer st."""
    cdef Py_ssize_t blk, n0
    for blk in range(g * n_blocks // G, (g + 1) * n_blocks // G):
        n0 = blk * BLOCK
        _stats_block(M, W, X, sw, resp, blocks, n0, min(<Py_ssize_t> BLOCK, N - n0), st)


cdef void _stats_groups(const emfast_gmodel* M, const floating* X, const double* sw,
                        const double* resp, const double* blocks, Py_ssize_t N, Py_ssize_t G,
                        double* st, Py_ssize_t stride, int n_threads,
                        int* failed) noexcept nogil:
    """All N rows into G group buffers st (G, stride): group g takes the g-th contiguous run
    of blocks, in order. Groups run in parallel, each thread allocating its scratch once."""
    cdef Py_ssize_t n_blocks = (N + BLOCK - 1) // BLOCK
    cdef Py_ssize_t g
    cdef Work* W = NULL
    cdef bint static = static_rows(N * M.D * sizeof(floating), n_threads)
    with parallel(num_threads=n_threads):
        W = _work_alloc(M)
        if W == NULL:
            failed[0] = 1
        if static:
            for g in prange(G, schedule="static"):
                if W != NULL:
                    _stats_group(M, W, X, sw, resp, blocks, N, n_blocks, G, g, st + g * stride)
        else:
            for g in prange(G, schedule="dynamic"):
                if W != NULL:
                    _stats_group(M, W, X, sw, resp, blocks, N, n_blocks, G, g, st + g * stride)
        _work_free(W)


cdef void _log_prob_block(const emfast_gmodel* M, Work* W, const floating* X, Py_ssize_t n0,
                          Py_ssize_t m, double* out, double* out_norm, bint resp) noexcept nogil:
    """Rows [n0, n0 + m): log-densities (or responsibilities) into out (N, K); with
    out_norm == NULL (log-densities only, never with resp) no exp / log is computed."""
    cdef int D = M.D, K = M.K, mp = _padded(m), k
    cdef Py_ssize_t b
    cdef double* o = out + n0 * K
    _load_block(X, n0, m, D, mp, W.g.xT)
    emfast_g_log_prob(M, &W.g, mp)
    if not resp:
        for b in range(m):
            for k in range(K):
                o[b * K + k] = W.g.lp[k * LD + b]
    if out_norm == NULL:
        return
    emfast_g_resp(K, mp, W.g.lp, NULL, W.g.norm, resp)
    for b in range(m):
        out_norm[n0 + b] = W.g.norm[b]
    if resp:
        for b in range(m):
            for k in range(K):
                o[b * K + k] = W.g.lp[k * LD + b]


# ---------------------------------------------------------------------------------------
# Python-level setup (with the GIL): parameter layouts the loops want


cdef const double* _ptr(object a):
    """Address of a C-contiguous float64 array kept alive by the caller (NULL if None)."""
    if a is None or a.size == 0:
        return NULL
    cdef const double[::1] v = a.reshape(-1)
    return &v[0]


cdef Py_ssize_t _stats_size(int cov, Py_ssize_t D, Py_ssize_t K) noexcept nogil:
    """Doubles of a group buffer: loglik, nk, s1 and s2 (full (K, D, D) and tied (D, D)
    lower triangles in square storage, diag and spherical (K, D))."""
    cdef Py_ssize_t s2 = K * D * D if cov == FULL else (D * D if cov == TIED else K * D)
    return 1 + K + K * D + s2


cdef class _Params:
    """The emfast_gmodel struct, the arrays its pointers point into, and the final
    unpacking of the statistics."""
    cdef emfast_gmodel m
    cdef list keep

    def __init__(self, log_const, means, prec_chol, int cov, int D, int K):
        # prec_chol (and log_const) None: a statistics-only model (weighted_stats), which
        # never computes log-densities and needs only the means.
        means = np.ascontiguousarray(means, dtype=np.float64)
        U = scale = center = tmeans = None
        if prec_chol is not None:
            prec_chol = np.asarray(prec_chol, dtype=np.float64)
            if cov == FULL or cov == TIED:
                # the contract's factors are upper triangular: zero whatever lies below
                # (the transform reads only the upper triangle, tmeans all of U)
                U = np.triu(prec_chol)
                if cov == TIED:
                    # one transform of the rows centred on the mean of the means, then
                    # distances to (mu_k - center) U (removes the data's common offset)
                    center = means.mean(axis=0)
                    tmeans = np.ascontiguousarray((means - center) @ U)
            else:                   # diag (K, D), spherical (K,)
                scale = np.ascontiguousarray(prec_chol)
        self.keep = [log_const, means, U, scale, center, tmeans]
        self.m.cov = cov
        self.m.D = D
        self.m.K = K
        self.m.log_const = _ptr(log_const)
        self.m.means = _ptr(means)
        self.m.U = _ptr(U)
        self.m.scale = _ptr(scale)
        self.m.center = _ptr(center)
        self.m.tmeans = _ptr(tmeans)

    cdef Py_ssize_t stats_size(self) noexcept nogil:
        return _stats_size(self.m.cov, self.m.D, self.m.K)

    cdef double finish(self, const double* groups, Py_ssize_t G, Py_ssize_t stride,
                       double* tot, double[::1] nk, double[:, ::1] s1,
                       double[::1] s2) noexcept nogil:
        """Sum the G group buffers (stride doubles apart) in group order into tot (size,),
        then unpack it into nk, s1, s2 (s2 flattened, in the contract's layout: both
        triangles, spherical summed over the features); return the log-likelihood."""
        cdef Py_ssize_t size = self.stats_size(), g, t, k, i, j
        cdef int D = self.m.D, K = self.m.K, cov = self.m.cov
        cdef double ll
        cdef const double* s2t
        for t in range(size):
            tot[t] = 0.0
        for g in range(G):
            for t in range(size):
                tot[t] += groups[g * stride + t]
        ll = tot[0]
        for k in range(K):
            nk[k] = tot[1 + k]
            for i in range(D):
                s1[k, i] = tot[1 + K + k * D + i]
        s2t = tot + 1 + K + K * D
        if cov == SPHERICAL:
            for k in range(K):
                s2[k] = 0.0
                for i in range(D):
                    s2[k] += s2t[k * D + i]
        elif cov == DIAG:
            for t in range(K * D):
                s2[t] = s2t[t]
        else:                     # lower triangles, mirrored
            for k in range(K if cov == FULL else 1):
                for i in range(D):
                    for j in range(i + 1):
                        s2[k * D * D + i * D + j] = s2t[k * D * D + i * D + j]
                        s2[k * D * D + j * D + i] = s2t[k * D * D + i * D + j]
        return ll


cdef Py_ssize_t _n_groups(Py_ssize_t n_blocks, Py_ssize_t size) noexcept nogil:
    """The number of groups of a statistics pass over n_blocks blocks with group buffers of
    size doubles: a function of the shapes only, never of n_threads."""
    return max(1, min(n_blocks, MAX_GROUPS, MAX_GROUP_BYTES // (8 * size)))


cdef double _stats_pass(_Params params, const floating[:, ::1] X, const double* sw,
                        const double* resp, const double* blocks, double[::1] nk,
                        double[:, ::1] s1, s2, int n_threads,
                        Py_ssize_t n_groups=0) except? -1.5:
    """The statistics pass over X (see _stats_block for sw / resp / blocks) into nk, s1, s2;
    return the weighted log-likelihood (0 for given responsibilities). n_groups > 0 forces
    that many groups (at most one per block) instead of _n_groups's."""
    cdef Py_ssize_t N = X.shape[0]
    cdef Py_ssize_t size = params.stats_size()
    cdef Py_ssize_t n_blocks = (N + BLOCK - 1) // BLOCK
    cdef Py_ssize_t G = (_n_groups(n_blocks, size) if n_groups <= 0
                         else max(1, min(n_groups, n_blocks)))
    cdef int failed = 0
    # Each group's buffer starts on its own cache line (stride and start rounded to 64
    # bytes): threads adding into neighbouring groups never share a line.
    cdef Py_ssize_t stride = (size + 7) // 8 * 8
    cdef double[::1] mem = np.zeros(G * stride + 8)
    cdef size_t addr = <size_t> &mem[0]    # numpy data is 8-byte aligned at least
    cdef double* st = &mem[0] + (64 - addr % 64) % 64 // 8
    cdef double[::1] s2v = s2.reshape(-1)
    cdef double[::1] tot = np.empty(size)
    cdef double ll
    with nogil:
        if N > 0 and params.m.K > 0:
            _stats_groups(&params.m, &X[0, 0], sw, resp, blocks, N, G, st, stride,
                          n_threads, &failed)
        ll = params.finish(st, G, stride, &tot[0], nk, s1, s2v)
    if failed:
        raise MemoryError("emfast: no memory for the Gaussian kernels' scratch")
    return ll


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
    blocks=None,                        # IN  estep_blocks(X), or None
    Py_ssize_t n_groups=0,              # IN  > 0: that many groups (estep_groups), not the rule's
):
    """Fused E-step over X: overwrite nk, s1, s2; return sum_n w_n logsumexp_k(log p)."""
    cdef int D = X.shape[1], K = means.shape[0]
    cdef _Params params = _Params(np.asarray(log_const), np.asarray(means), prec_chol,
                                  cov_code, D, K)
    cdef const double* sw = &sample_weight[0] if sample_weight.shape[0] > 0 else NULL
    cdef const double[::1] bv
    cdef const double* bp = NULL
    if blocks is not None:
        bv = blocks
        if bv.shape[0] != _blocks_size(X.shape[0], D):
            raise ValueError("blocks must be estep_blocks(X) of this X")
        bp = &bv[0]
    return _stats_pass(params, X, sw, NULL, bp, nk, s1, s2, n_threads, n_groups)


def estep_groups(Py_ssize_t N, int D, int K, int cov_code):
    """Row offsets (G + 1,) of the groups estep_stats splits N rows into: group g is rows
    [offsets[g], offsets[g + 1]). estep_stats with n_groups=1 on one group's rows gives
    that group's sums exactly (the sum of one group buffer starts from 0, and the unpacking
    rounds nothing: a spherical buffer holds its sums in column 0, the other columns 0), so
    adding the groups' results in group order from 0 reproduces estep_stats on all N rows
    bit for bit: a pass over X in pieces can keep the in-memory result. (_n_groups is
    emfast._layout.n_groups, restated for the nogil code.)"""
    return _layout.group_offsets(N, BLOCK, _stats_size(cov_code, D, K))


cdef Py_ssize_t _blocks_size(Py_ssize_t N, Py_ssize_t D) noexcept nogil:
    """Doubles of estep_blocks' copy of an (N, D) X: each block a row of ones (the row
    before the block that the statistics read when they centre on the fly, as in the
    per-thread scratch) and D rows of LD."""
    return (N + BLOCK - 1) // BLOCK * (D + 1) * LD


def estep_blocks(
    const floating[:, ::1] X,           # IN  (N, D) float32 or float64
    int n_threads,                      # IN  OpenMP threads
):
    """X's blocks as estep_stats loads them (feature-major float64, zero padding rows), for
    its ``blocks`` argument: the E-steps of a fit then read them instead of transposing
    every block again. None when the copy would exceed MAX_BLOCKS_BYTES, or X is empty."""
    cdef Py_ssize_t N = X.shape[0], n_blocks = (N + BLOCK - 1) // BLOCK, blk, n0, m, b
    cdef int D = X.shape[1]
    cdef Py_ssize_t size = _blocks_size(N, D)
    if size == 0 or size > MAX_BLOCKS_BYTES // 8:
        return None
    out = np.empty(size)
    cdef double[::1] ov = out
    with nogil:
        for blk in prange(n_blocks, schedule="static", num_threads=n_threads):
            n0 = blk * BLOCK
            m = min(<Py_ssize_t> BLOCK, N - n0)
            for b in range(LD):
                ov[blk * (D + 1) * LD + b] = 1.0
            _load_block(&X[0, 0], n0, m, D, _padded(m), &ov[(blk * (D + 1) + 1) * LD])
    return out


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
    cdef const double* rp = &resp[0, 0] if resp.shape[0] > 0 and K > 0 else NULL
    _stats_pass(params, X, NULL, rp, NULL, nk, s1, s2, n_threads)


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
    cdef Py_ssize_t n_blocks = (N + BLOCK - 1) // BLOCK
    cdef const floating* Xp = &X[0, 0] if N > 0 else NULL
    cdef double* outp = &out[0, 0] if N > 0 and K > 0 else NULL
    cdef double* normp = &out_norm[0] if N > 0 and want_norm else NULL
    cdef Py_ssize_t blk
    cdef Work* W = NULL
    cdef int failed = 0
    cdef int* failedp = &failed   # shared: a plain int assigned in the region is private

    if N > 0 and K > 0:
        with nogil, parallel(num_threads=n_threads):
            W = _work_alloc(&params.m)
            if W == NULL:
                failedp[0] = 1
            for blk in prange(n_blocks, schedule="static"):
                if W != NULL:
                    _log_prob_block(&params.m, W, Xp, blk * BLOCK,
                                    min(<Py_ssize_t> BLOCK, N - blk * BLOCK), outp, normp, resp)
            _work_free(W)
    if failed:
        raise MemoryError("emfast: no memory for the Gaussian kernels' scratch")


def _exp_nonpos(const double[::1] x, double[::1] out):
    """Test hook: out[i] = the kernels' vector exp(x[i]) for x[i] <= 0 (see _fastexp.h),
    the code the log-sum-exp runs. Not part of the kernel contract."""
    with nogil:
        emfast_g_exp_array(&x[0], x.shape[0], &out[0])


def _log_ge1(const double[::1] x, double[::1] out):
    """Test hook: out[i] = the kernels' vector log(x[i]) for x[i] >= 1, 0, inf or NaN (see
    _gaussian_simd.h). Not part of the kernel contract."""
    with nogil:
        emfast_g_log_array(&x[0], x.shape[0], &out[0])
