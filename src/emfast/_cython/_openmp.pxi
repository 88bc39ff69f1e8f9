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


def openmp_enabled():
    """Whether this extension was compiled with OpenMP (False: the kernels run serially)."""
    return bool(EMFAST_OPENMP)


def openmp_max_threads():
    """OpenMP's default thread count in this process (1 without OpenMP)."""
    return emfast_omp_max_threads()
