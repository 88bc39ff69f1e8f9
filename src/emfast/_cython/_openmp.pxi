# What every Cython kernel module says about its OpenMP build, written once and included by
# _gaussian_impl.pxi and _hmm_impl.pxi. setup.py defines EMFAST_OPENMP (1: built with
# OpenMP, 0: serial build).


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


# Row passes that read at most this many bytes per thread run their row groups on a static
# schedule: each thread then takes the same rows every pass and finds them in its own L2
# (1,797 x 64 float64 on 2 threads: a Lloyd run 25% and an E-step 13% faster than with
# dynamic). Larger passes stream from memory either way; they keep the dynamic schedule,
# which lets a thread that runs slower take fewer groups (200,000 x 50: static 10% slower).
cdef enum:
    STATIC_MAX_BYTES_PER_THREAD = 1048576


cdef inline bint static_rows(Py_ssize_t n_bytes, int n_threads) noexcept nogil:
    """Whether a pass over n_bytes of rows runs its groups on the static schedule."""
    return n_bytes <= <Py_ssize_t> STATIC_MAX_BYTES_PER_THREAD * n_threads


def openmp_enabled():
    """Whether this extension was compiled with OpenMP (False: the kernels run serially)."""
    return bool(EMFAST_OPENMP)


def openmp_max_threads():
    """OpenMP's default thread count in this process (1 without OpenMP)."""
    return emfast_omp_max_threads()
