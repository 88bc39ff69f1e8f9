"""Keep BLAS on one thread while the kernels run their own threads."""

import contextlib
import threading

_lock = threading.Lock()
_blas = None        # threadpoolctl's controllers of the BLAS libraries loaded
_saved = []         # (controller, its thread count) to restore when the outermost block ends
_depth = 0


def _blas_libraries():
    global _blas
    if _blas is None:
        from threadpoolctl import ThreadpoolController

        # scans the loaded libraries once; the controllers' own get/set calls are then a
        # few microseconds in all, where ThreadpoolController.limit built and scanned anew
        # at each call (7 us, twice per fit: a sixth of a millisecond fit's Python time)
        _blas = [lib for lib in ThreadpoolController().lib_controllers
                 if lib.user_api == "blas"]
    return _blas


@contextlib.contextmanager
def single_threaded_blas():
    """BLAS limited to one thread for the duration (re-entrant, thread-safe).

    The kernels call BLAS from inside their own OpenMP/Numba threads, where a threaded
    BLAS would oversubscribe the cores. OpenBLAS's count is process-wide, and threadpoolctl
    lets only one Python thread at a time set it (the first that did, while it lives): from
    another thread this leaves OpenBLAS as it is.
    """
    global _depth
    with _lock:
        _depth += 1
        if _depth == 1:
            for lib in _blas_libraries():
                n = lib.get_num_threads()
                if n is not None and n != 1:      # None: the library gives no count
                    lib.set_num_threads(1)
                    _saved.append((lib, n))
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                while _saved:
                    lib, n = _saved.pop()
                    lib.set_num_threads(n)
