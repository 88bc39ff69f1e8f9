"""Keep BLAS on one thread while the kernels run their own threads."""

import contextlib
import threading

_lock = threading.Lock()
_controller = None
_depth = 0


def _get_controller():
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()  # scans the loaded libraries once
    return _controller


@contextlib.contextmanager
def single_threaded_blas():
    """BLAS limited to one thread for the duration (re-entrant, thread-safe).

    The kernels call BLAS from inside their own OpenMP/Numba threads, where a threaded
    BLAS would oversubscribe the cores.
    """
    global _depth
    with _lock:
        _depth += 1
        if _depth == 1:
            single_threaded_blas._limiter = _get_controller().limit(limits=1, user_api="blas")
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                single_threaded_blas._limiter.restore_original_limits()
