"""Keep BLAS on one thread while the kernels run their own threads."""

import contextlib
import threading

_lock = threading.Lock()
_blas = None        # (threadpoolctl's controller, its setter) of each BLAS library loaded
_saved = []         # (setter, thread count) to restore when the outermost block ends
_depth = 0


def _blas_libraries():
    global _blas
    if _blas is None:
        from threadpoolctl import ThreadpoolController

        # scans the loaded libraries once; the controllers' own get/set calls are then a
        # few microseconds in all, where ThreadpoolController.limit built and scanned anew
        # at each call (7 us, twice per fit: a sixth of a millisecond fit's Python time)
        _blas = [(lib, _setter(lib)) for lib in ThreadpoolController().lib_controllers
                 if lib.user_api == "blas"]
    return _blas


def _setter(lib):
    """The library's own thread-count setter. threadpoolctl's ``set_num_threads`` lets one
    Python thread at a time set OpenBLAS's process-wide count (the first that did, while it
    lives) and silently ignores the others: a fit from any other thread (a thread pool, a
    threaded Dask worker) kept OpenBLAS's threads beside the kernels' own. The blocks here
    are counted under one lock, the first sets and the last restores, so they need no such
    rule; the public method stands in where threadpoolctl has no private one."""
    return getattr(lib, "_real_set_num_threads", None) or lib.set_num_threads


@contextlib.contextmanager
def single_threaded_blas():
    """BLAS limited to one thread for the duration (re-entrant, thread-safe).

    The kernels call BLAS from inside their own OpenMP/Numba threads, where a threaded
    BLAS would oversubscribe the cores. The counts are set from whichever thread enters
    (see :func:`_setter`).
    """
    global _depth
    with _lock:
        if _depth == 0:
            _limit()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _restore()


def _limit():
    """Every BLAS library on one thread, the counts it had kept in _saved (all restored
    if a library refuses)."""
    try:
        for lib, set_threads in _blas_libraries():
            n = lib.get_num_threads()
            if n is not None and n != 1:      # None: the library gives no count
                set_threads(1)
                _saved.append((set_threads, n))
    except BaseException:
        _restore()
        raise


def _restore():
    while _saved:
        set_threads, n = _saved.pop()
        set_threads(n)
