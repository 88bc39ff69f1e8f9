# The precision factor of one covariance matrix, shared by the batch kernels of Gaussian
# mixtures (_batch_impl.pxi) and of Gaussian HMMs (_hmm_batch_impl.pxi). The includer
# cimports sqrt and defines the status codes OK (0) and FALLBACK (1).

# A pivot below this fraction of its diagonal entry hands the problem back: the estimator's
# LAPACK Cholesky may then fail where this one passes (or the reverse) by rounding alone, and
# regularise, so near-singular covariances are left to the estimator's own handling (scaled
# by the entry: no absolute floor).
cdef double MIN_PIVOT = 1e-10


cdef int _cholesky_prec(const double* A, int D, double* L, double* U) noexcept nogil:
    """U: the upper-triangular precision factor of the covariance A (U = inv(L)^T, A = L L^T);
    FALLBACK when A is not positive definite, or nearly not (MIN_PIVOT)."""
    cdef int i, j, k
    cdef double acc
    for j in range(D):
        acc = A[j * D + j]
        for k in range(j):
            acc -= L[j * D + k] * L[j * D + k]
        if not acc > MIN_PIVOT * A[j * D + j]:
            return FALLBACK
        L[j * D + j] = sqrt(acc)
        for i in range(j + 1, D):
            acc = A[i * D + j]
            for k in range(j):
                acc -= L[i * D + k] * L[j * D + k]
            L[i * D + j] = acc / L[j * D + j]
    # inv(L) column by column, written transposed into U's upper triangle
    for j in range(D):
        for i in range(D):
            U[i * D + j] = 0.0
    for j in range(D):
        U[j * D + j] = 1.0 / L[j * D + j]
        for i in range(j + 1, D):
            acc = 0.0
            for k in range(j, i):
                acc += L[i * D + k] * U[j * D + k]
            U[j * D + i] = -acc / L[i * D + i]
    return OK
