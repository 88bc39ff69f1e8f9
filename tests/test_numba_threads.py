"""The Numba backend runs on the threads it is asked for, or says that it cannot.

numba's pool (NUMBA_NUM_THREADS) is fixed when numba starts; conftest.py sizes it before
anything imports numba, so the 1-vs-2-vs-3-thread comparisons of the other test files run the
Numba kernels on that many threads even on a 2-core machine.
"""

import warnings

import numpy as np
import pytest
from conftest import NUMBA_POOL_FOR_TESTS

numba = pytest.importorskip("numba")
from emfast._numba import _launch  # noqa: E402 - after the skip


@numba.njit(parallel=True)
def _launch_probe(out):
    """out[i] = the number of threads this launch runs on, and the id of the thread that ran
    iteration i."""
    for i in numba.prange(out.shape[0]):
        out[i, 0] = numba.get_num_threads()
        out[i, 1] = numba.get_thread_id()


def test_pool_holds_the_threads_the_tests_ask_for():
    assert numba.config.NUMBA_NUM_THREADS >= NUMBA_POOL_FOR_TESTS >= 3


@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_kernels_launch_on_the_threads_asked_for(n_threads):
    """Every Numba kernel is launched by _launch.run (the Gaussian, HMM and k-means modules
    import it)."""
    out = np.full((64, 2), -1, dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "fewer threads than asked" here
        _launch.run(_launch_probe, n_threads, out)
    assert (out[:, 0] == n_threads).all()
    if numba.threading_layer() != "tbb":  # tbb may let one thread steal another's chunk
        # one contiguous chunk of the 64 iterations per thread
        assert len(np.unique(out[:, 1])) == n_threads


def test_more_threads_than_the_pool_warns_and_runs_on_the_pool(monkeypatch):
    pool = 2
    monkeypatch.setattr(_launch, "_MAX_THREADS", pool)
    monkeypatch.setattr(_launch, "_warned_pool", set())
    out = np.full((64, 2), -1, dtype=np.int64)
    with pytest.warns(RuntimeWarning, match="NUMBA_NUM_THREADS=2 threads") as rec:
        _launch.run(_launch_probe, pool + 1, out)
    assert "not the 3 asked for" in str(rec[0].message)
    assert (out[:, 0] == pool).all()
    # said once per thread count, not once per E-step
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _launch.run(_launch_probe, pool + 1, out)
