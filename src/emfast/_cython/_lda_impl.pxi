# The body of the Cython + OpenMP LDA kernels, shared by the extension modules built from it
# (see setup.py and emfast._config): _lda.pyx (baseline instruction set), _lda_avx2.pyx
# (-mavx2 -mfma) and _lda_avx512.pyx. The design notes are the docstring of _lda.pyx; the
# arithmetic is in _lda.h.

include "_openmp.pxi"

from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.stdint cimport int32_t, int64_t
from libc.stdlib cimport free, malloc

import numpy as np

from emfast._layout import LDA_DOC_BLOCK, LDA_TOPIC_MAJOR, LDA_WORD_BLOCK, n_groups

# the blocks' sizes, shared with the Numba backend, as C values for the nogil code
cdef Py_ssize_t DOC_BLOCK = LDA_DOC_BLOCK
cdef Py_ssize_t WORD_BLOCK = LDA_WORD_BLOCK
cdef int64_t TOPIC_MAJOR = LDA_TOPIC_MAJOR

cdef extern from "_lda.h":
    void emfast_lda_digamma(const double* x, int64_t n, double* out) noexcept nogil
    void emfast_lda_exp_dirichlet(const double* g, int K, int Kp, double* e) noexcept nogil
    void emfast_lda_wsum_f64(const double* x, const double* base, const int32_t* idx,
                             const double* c, int64_t n, int Kp, double eps, int rev,
                             double* acc) noexcept nogil
    void emfast_lda_wsum_f32(const double* x, const double* base, const int32_t* idx,
                             const float* c, int64_t n, int Kp, double eps, int rev,
                             double* acc) noexcept nogil
    void emfast_lda_doc_f64(const int32_t* ids, const double* c, int64_t n, const double* BT,
                            int K, int Kp, double alpha, int64_t max_iter, double tol,
                            double eps, double* g, double* e, double* work,
                            int64_t tm_cap) noexcept nogil
    void emfast_lda_doc_f32(const int32_t* ids, const float* c, int64_t n, const double* BT,
                            int K, int Kp, double alpha, int64_t max_iter, double tol,
                            double eps, double* g, double* e, double* work,
                            int64_t tm_cap) noexcept nogil
    int64_t emfast_lda_work_size(int Kp, int64_t tm_cap) noexcept nogil
    double emfast_lda_bound_f64(const int32_t* ids, const double* c, int64_t n,
                                const double* BT, int Kp, const double* e) noexcept nogil
    double emfast_lda_bound_f32(const int32_t* ids, const float* c, int64_t n,
                                const double* BT, int Kp, const double* e) noexcept nogil
    void emfast_lda_dirichlet_row(const double* a, int64_t C, int do_exp,
                                  double* out) noexcept nogil


cdef inline double* _align64(void* raw) noexcept nogil:
    """raw (malloc'd with 8 doubles to spare, or NULL) rounded up to a 64-byte boundary: the
    scratch's K_pad vectors then lie in whole cache lines, as the binding's rows do."""
    if raw == NULL:
        return NULL
    return <double*> ((<size_t> raw + 63) & ~(<size_t> 63))


# --------------------------------------------------------------------------------------------
# Document pass
# --------------------------------------------------------------------------------------------
cdef double _doc_group(const floating* data, const int32_t* indices, const int64_t* indptr,
                       const double* BT, floating* doc_topic, Py_ssize_t N, int K, int Kp,
                       double alpha, int64_t max_iter, double tol, double eps,
                       double* doc_exp, bint cal_bound, Py_ssize_t blk_lo, Py_ssize_t blk_hi,
                       double* g) noexcept nogil:
    """Documents of blocks [blk_lo, blk_hi) in order. IN/OUT: their doc_topic rows (gamma).
    OUT: their doc_exp rows (the final e, K_pad lanes). g: scratch, 64-byte aligned: K_pad
    doubles (gamma), then the fixed point's work (emfast_lda_work_size). Returns the blocks'
    word bound (0 unless cal_bound)."""
    cdef Py_ssize_t d, d_hi = min(blk_hi * DOC_BLOCK, N)
    cdef int64_t lo, n
    cdef int k
    cdef double bound = 0.0
    cdef double* e
    for d in range(blk_lo * DOC_BLOCK, d_hi):
        e = doc_exp + d * Kp
        for k in range(K):
            g[k] = doc_topic[d * K + k]
        for k in range(K, Kp):
            # a positive filler that each step leaves as it is (a step sets these lanes to
            # alpha, their e being 0), so that they add nothing to the mean change
            g[k] = alpha
        emfast_lda_exp_dirichlet(g, K, Kp, e)
        lo = indptr[d]
        n = indptr[d + 1] - lo
        if floating is double:
            emfast_lda_doc_f64(indices + lo, data + lo, n, BT, K, Kp, alpha, max_iter, tol,
                               eps, g, e, g + Kp, TOPIC_MAJOR)
            if cal_bound:
                bound += emfast_lda_bound_f64(indices + lo, data + lo, n, BT, Kp, e)
        else:
            emfast_lda_doc_f32(indices + lo, data + lo, n, BT, K, Kp, alpha, max_iter, tol,
                               eps, g, e, g + Kp, TOPIC_MAJOR)
            if cal_bound:
                bound += emfast_lda_bound_f32(indices + lo, data + lo, n, BT, Kp, e)
        for k in range(K):
            doc_topic[d * K + k] = <floating> g[k]
    return bound


def lda_doc_pass(
    const floating[::1] data,           # IN  (nnz,) CSR counts
    const int32_t[::1] indices,         # IN  (nnz,) CSR word ids in [0, V)
    const int64_t[::1] indptr,          # IN  (N + 1,) CSR row starts
    const double[:, ::1] topic_word_T,  # IN  (V, K_pad) exp_topic_word transposed, lanes
                                        #     from K on 0
    floating[:, ::1] doc_topic,         # IN/OUT (N, K) gamma: the start, then the result
    double alpha,                       # IN  doc_topic_prior > 0
    int64_t max_iter,                   # IN  max_doc_update_iter >= 0
    double tol,                         # IN  mean_change_tol
    double eps,                         # IN  the normalisers' guard
    double[:, ::1] doc_exp,             # OUT (N, K_pad) the final exp(E[log theta]), lanes
                                        #     from K on 0
    bint cal_bound,                     # IN  whether to compute the word bound
    int n_threads,                      # IN  OpenMP threads
):
    """The document pass of the LDA E-step. Returns the word bound (0.0 unless cal_bound)."""
    cdef Py_ssize_t N = doc_topic.shape[0], G, grp
    cdef int K = doc_topic.shape[1], Kp = topic_word_T.shape[1]
    cdef Py_ssize_t n_blocks = (N + DOC_BLOCK - 1) // DOC_BLOCK
    cdef void* raw = NULL
    cdef double* g = NULL
    cdef int failed = 0
    cdef double bound = 0.0
    if N == 0:
        return 0.0
    cdef int64_t scratch = Kp + emfast_lda_work_size(Kp, TOPIC_MAJOR)
    G = n_groups(n_blocks, 1)
    cdef double[::1] bound_g = np.zeros(G)
    with nogil, parallel(num_threads=min(n_threads, G)):
        raw = malloc((scratch + 8) * sizeof(double))
        g = _align64(raw)
        for grp in prange(G, schedule="dynamic"):
            if g == NULL:
                failed += 1
                continue
            bound_g[grp] = _doc_group(&data[0], &indices[0], &indptr[0], &topic_word_T[0, 0],
                                      &doc_topic[0, 0], N, K, Kp, alpha, max_iter, tol, eps,
                                      &doc_exp[0, 0], cal_bound, grp * n_blocks // G,
                                      (grp + 1) * n_blocks // G, g)
        free(raw)
    if failed:
        raise MemoryError("lda_doc_pass: no memory for the threads' scratch")
    for grp in range(G):                # the groups' sums in group order
        bound += bound_g[grp]
    return bound


# --------------------------------------------------------------------------------------------
# Word pass
# --------------------------------------------------------------------------------------------
cdef void _word_group(const floating* cdata, const int32_t* cindices, const int64_t* cindptr,
                      const double* BT, const double* doc_exp, int K, int Kp, double eps,
                      floating* sstats, Py_ssize_t V, Py_ssize_t w_lo, Py_ssize_t w_hi,
                      double* acc) noexcept nogil:
    """OUT: columns [w_lo, w_hi) of sstats (K, V): S[k, w] = B[k, w] * sum over the
    documents d of column w of e[d, k] c_dw / (e_d . B[:, w] + eps). acc: K_pad scratch."""
    cdef Py_ssize_t w
    cdef int64_t lo
    cdef int k
    cdef const double* row
    for w in range(w_lo, w_hi):
        row = BT + w * Kp
        lo = cindptr[w]
        if floating is double:
            emfast_lda_wsum_f64(row, doc_exp, cindices + lo, cdata + lo, cindptr[w + 1] - lo,
                                Kp, eps, 0, acc)
        else:
            emfast_lda_wsum_f32(row, doc_exp, cindices + lo, cdata + lo, cindptr[w + 1] - lo,
                                Kp, eps, 0, acc)
        for k in range(K):
            sstats[k * V + w] = <floating> (acc[k] * row[k])


def lda_word_pass(
    const floating[::1] cdata,          # IN  (nnz,) CSC counts
    const int32_t[::1] cindices,        # IN  (nnz,) CSC document ids in [0, N)
    const int64_t[::1] cindptr,         # IN  (V + 1,) CSC column starts
    const double[:, ::1] topic_word_T,  # IN  (V, K_pad) as lda_doc_pass's
    const double[:, ::1] doc_exp,       # IN  (N, K_pad) from lda_doc_pass
    double eps,                         # IN  the normalisers' guard
    floating[:, ::1] sstats,            # OUT (K, V) the sufficient statistics
    int n_threads,                      # IN  OpenMP threads
):
    """The word pass of the LDA E-step: each column of sstats from one thread, its
    documents in order (any split of the columns gives the same bits)."""
    cdef Py_ssize_t V = topic_word_T.shape[0], G, grp
    cdef int K = sstats.shape[0], Kp = topic_word_T.shape[1]
    cdef Py_ssize_t n_blocks = (V + WORD_BLOCK - 1) // WORD_BLOCK
    cdef void* raw = NULL
    cdef double* acc = NULL
    cdef int failed = 0
    G = n_groups(n_blocks, 1)
    with nogil, parallel(num_threads=min(n_threads, G)):
        raw = malloc((Kp + 8) * sizeof(double))
        acc = _align64(raw)
        for grp in prange(G, schedule="dynamic"):
            if acc == NULL:
                failed += 1
                continue
            _word_group(&cdata[0], &cindices[0], &cindptr[0], &topic_word_T[0, 0],
                        &doc_exp[0, 0], K, Kp, eps, &sstats[0, 0], V,
                        min(grp * n_blocks // G * WORD_BLOCK, V),
                        min((grp + 1) * n_blocks // G * WORD_BLOCK, V), acc)
        free(raw)
    if failed:
        raise MemoryError("lda_word_pass: no memory for the threads' scratch")


# --------------------------------------------------------------------------------------------
# Dirichlet expectation, digamma
# --------------------------------------------------------------------------------------------
def dirichlet_expectation(
    const floating[:, ::1] alpha,       # IN  (R, C) > 0
    floating[:, ::1] out,               # OUT (R, C) psi(alpha) - psi(row sums), or its exp
    bint exp,                           # IN  whether to take the exp
    int n_threads,                      # IN  OpenMP threads
):
    """Each row on its own: any split over threads gives the same bits."""
    cdef Py_ssize_t R = alpha.shape[0], C = alpha.shape[1], r, c
    cdef double* buf = NULL
    cdef int failed = 0
    with nogil, parallel(num_threads=n_threads):
        buf = <double*> malloc(2 * C * sizeof(double))
        for r in prange(R, schedule="static"):
            if buf == NULL:
                failed += 1
                continue
            if floating is double:
                emfast_lda_dirichlet_row(&alpha[r, 0], C, exp, &out[r, 0])
            else:
                for c in range(C):
                    buf[c] = alpha[r, c]
                emfast_lda_dirichlet_row(buf, C, exp, buf + C)
                for c in range(C):
                    out[r, c] = <float> buf[C + c]
        free(buf)
    if failed:
        raise MemoryError("dirichlet_expectation: no memory for the threads' scratch")


def digamma(
    const double[::1] x,                # IN  (M,) > 0
    double[::1] out,                    # OUT (M,) psi(x), by the kernels' digamma
    int n_threads,                      # IN  unused: one thread (for the accuracy tests)
):
    """psi(x) elementwise by the digamma of the E-step (_lda.h)."""
    with nogil:
        emfast_lda_digamma(&x[0], x.shape[0], &out[0])
