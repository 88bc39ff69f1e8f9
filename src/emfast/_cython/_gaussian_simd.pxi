# The Cython declarations of _gaussian_simd.h (the arithmetic of one row block of the
# complete-data Gaussian kernels), included by _gaussian_impl.pxi and by _missing_impl.pxi
# (whose long runs of one missing pattern are complete-data blocks in the observed subspace).

from libc.stdint cimport int64_t

cdef extern from "_gaussian_simd.h":
    int EMFAST_GBLOCK                   # rows per block
    int EMFAST_GSTEP                    # rows per step: blocks are padded to a multiple
    int LD "EMFAST_GLD"                 # row stride of the block buffers
    ctypedef struct emfast_gmodel:
        int cov
        int D, K
        const double* log_const
        const double* means
        const double* U
        const double* scale
        const double* center
        const double* tmeans
    ctypedef struct emfast_gwork:
        double* xT
        double* lp
        double* w
        double* norm
        double* maha
    int64_t emfast_g_work_size(const emfast_gmodel* M) noexcept nogil
    void emfast_g_work_init(emfast_gwork* W, double* mem, const emfast_gmodel* M) noexcept nogil
    void emfast_g_log_prob(const emfast_gmodel* M, emfast_gwork* W, int mp) noexcept nogil
    double emfast_g_resp(int K, int mp, double* lp, const double* w, double* norm,
                         int to_resp) noexcept nogil
    void emfast_g_stats(const emfast_gmodel* M, emfast_gwork* W, int mp, const double* resp,
                        const double* maha, double* nk, double* s1, double* s2) noexcept nogil
    # xT[i * LD + b] = x[b * D + i] as float64 for i < D, b < m
    void emfast_g_load_T_double(const double* x, int D, int m, double* xT) noexcept nogil
    void emfast_g_load_T_float(const float* x, int D, int m, double* xT) noexcept nogil
    void emfast_g_exp_array(const double* x, int64_t n, double* out) noexcept nogil
    void emfast_g_log_array(const double* x, int64_t n, double* out) noexcept nogil


cdef inline int _padded(Py_ssize_t m) noexcept nogil:
    """m rows rounded up to a multiple of EMFAST_GSTEP (the blocks' zero padding)."""
    return <int> ((m + EMFAST_GSTEP - 1) // EMFAST_GSTEP * EMFAST_GSTEP)
