"""single_threaded_blas: BLAS on one thread inside, the caller's thread counts restored
after, nested and concurrent uses included."""

import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from emfast._threads import single_threaded_blas


def _blas_threads():
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


@pytest.fixture
def threaded_blas():
    """BLAS as the process has it, used from this thread."""
    np.ones((2, 2)) @ np.ones((2, 2))         # BLAS loaded
    if not any(n > 1 for n in _blas_threads()):
        pytest.skip("no multi-threaded BLAS library that threadpoolctl controls")


def test_one_thread_inside_restored_after(threaded_blas):
    before = _blas_threads()
    with single_threaded_blas():
        assert set(_blas_threads()) == {1}
        with single_threaded_blas():                # nested: still one, not restored early
            assert set(_blas_threads()) == {1}
        assert set(_blas_threads()) == {1}
    assert _blas_threads() == before


def test_restored_after_an_exception(threaded_blas):
    before = _blas_threads()
    with pytest.raises(RuntimeError):
        with single_threaded_blas():
            raise RuntimeError("inside")
    assert _blas_threads() == before


class _FakeBlas:
    """A BLAS controller's get/set: a thread count shared by all threads."""

    def __init__(self, n):
        self.n = n

    def get_num_threads(self):
        return self.n

    def set_num_threads(self, n):
        self.n = n


def test_concurrent_blocks_restore_once_all_have_ended(monkeypatch):
    """Two threads' blocks overlap; the first to end leaves BLAS on one thread for the
    other, the last restores. (A fake library, so that the count each thread sees is
    exactly the one the blocks set.)"""
    import emfast._threads as T

    lib = _FakeBlas(4)
    monkeypatch.setattr(T, "_blas", [(lib, T._setter(lib))])
    first_in, first_out = threading.Event(), threading.Event()
    seen = {}

    def first():
        with single_threaded_blas():
            first_in.set()
            first_out.wait(10)

    def second():
        first_in.wait(10)
        with single_threaded_blas():
            seen["both inside"] = lib.n
            first_out.set()
            t.join(10)                      # the first block has ended
            seen["after first"] = lib.n

    t = threading.Thread(target=first)
    u = threading.Thread(target=second)
    t.start()
    u.start()
    u.join(20)
    assert seen == {"both inside": 1, "after first": 1}
    assert lib.n == 4


def test_a_library_without_a_thread_count_is_left_alone(monkeypatch):
    """A library whose get_num_threads gives None (threadpoolctl: the symbol is missing) is
    neither set nor restored."""
    import emfast._threads as T

    class NoCount(_FakeBlas):
        def get_num_threads(self):
            return None

        def set_num_threads(self, n):
            raise AssertionError("set_num_threads called")

    counted, uncounted = _FakeBlas(3), NoCount(None)
    monkeypatch.setattr(T, "_blas", [(b, T._setter(b)) for b in (uncounted, counted)])
    with single_threaded_blas():
        assert counted.n == 1
    assert counted.n == 3


def test_from_a_thread_other_than_the_one_that_set_a_limit(threaded_blas):
    """threadpoolctl lets the first thread that set OpenBLAS's count keep that right; a fit
    from another thread (a pool's) must still hold BLAS at one thread."""
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    before = _blas_threads()
    with threadpool_limits(limits=2, user_api="blas"):   # this thread takes control
        with single_threaded_blas():                     # ... and keeps it
            pass

        def inside():
            with single_threaded_blas():
                return set(_blas_threads())

        with ThreadPoolExecutor(1) as pool:
            assert pool.submit(inside).result() == {1}
    assert _blas_threads() == before


def test_a_library_that_refuses_leaves_nothing_set(monkeypatch):
    """A set that raises: the libraries already set are restored, and the next block starts
    afresh (no block is left counted as open)."""
    import emfast._threads as T

    class Refuses(_FakeBlas):
        def set_num_threads(self, n):
            raise OSError("refused")

    first, bad = _FakeBlas(3), Refuses(2)
    monkeypatch.setattr(T, "_blas", [(b, T._setter(b)) for b in (first, bad)])
    with pytest.raises(OSError):
        with single_threaded_blas():
            pass
    assert first.n == 3
    monkeypatch.setattr(T, "_blas", [(first, T._setter(first))])
    with single_threaded_blas():
        assert first.n == 1
    assert first.n == 3
