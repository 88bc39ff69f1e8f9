"""How every parallel driver of the Numba backend is launched: on the number of threads the
caller asked for (within numba's pool), one launch at a time where numba's threading layer
needs that, and compiled for the dtype of its first argument on first use.

The Gaussian, HMM and k-means kernel modules call their drivers through :func:`run`.
"""

import threading
import warnings

import numba

from emfast._numba._settings import compile_for

__all__ = ["run"]

_MAX_THREADS = numba.config.NUMBA_NUM_THREADS
_launch_lock = threading.Lock()
_layer_threadsafe = None
_warned_pool = set()


def _threadsafe_layer():
    """Whether parallel kernels may be launched from several Python threads at once.

    Numba's "workqueue" layer (its fallback when neither OpenMP nor TBB is available) cannot;
    the layer is only known after the first parallel launch, which is serialised.
    """
    global _layer_threadsafe
    if _layer_threadsafe is None:
        try:
            _layer_threadsafe = numba.threading_layer() != "workqueue"
        except ValueError:  # nothing launched yet
            return False
    return _layer_threadsafe


def _pool_threads(n_threads):
    """min(n_threads, NUMBA_NUM_THREADS), with a warning (once per count asked for) when the
    pool is smaller: numba fixes its pool size when it starts and cannot grow it later."""
    if n_threads <= _MAX_THREADS:
        return n_threads
    if n_threads not in _warned_pool:
        _warned_pool.add(n_threads)
        warnings.warn(
            f"the Numba backend runs on {_MAX_THREADS} threads, not the {n_threads} asked for: "
            f"numba's thread pool has NUMBA_NUM_THREADS={_MAX_THREADS} threads, fixed when "
            f"numba starts. Set the environment variable NUMBA_NUM_THREADS={n_threads} (or "
            f"more) before numba is first imported to run on {n_threads}.",
            RuntimeWarning, stacklevel=4)
    return _MAX_THREADS


def run(kernel, n_threads, *args):
    """Call a parallel kernel on min(n_threads, NUMBA_NUM_THREADS) threads (a RuntimeWarning
    says when that is fewer than asked), compiling it for the dtype of its first argument on
    first use; a kernel that calls outlined functions (_settings.parallel_driver) gets their
    addresses as its last arguments.

    numba.set_num_threads is per calling thread, so concurrent fits (parallel n_init, user
    threads) each keep their own count; the caller's previous count is restored.
    """
    args += compile_for(kernel, args[0])  # the addresses of the functions the driver calls
    n = _pool_threads(n_threads)
    prev = numba.get_num_threads()
    if n != prev:
        numba.set_num_threads(n)
    try:
        if _threadsafe_layer():
            return kernel(*args)
        with _launch_lock:
            return kernel(*args)
    finally:
        if n != prev:
            numba.set_num_threads(prev)
