"""The installed package has what the build promised (CI sets EMFAST_REQUIRE_CYTHON=1)."""

import os

import pytest

from emfast._config import available_backends, cpu_count, resolve_n_threads

REQUIRED = os.environ.get("EMFAST_REQUIRE_CYTHON", "") not in ("", "0")


def test_numba_backend_imports():
    assert "numba" in available_backends()


@pytest.mark.skipif(not REQUIRED, reason="only where the build must include the extension")
@pytest.mark.parametrize("kind", ["gaussian", "hmm", "kmeans", "missing", "batch", "hmm_batch",
                                  "discrete", "lda"])
def test_cython_backend_built_with_openmp(kind):
    from emfast._config import get_backend

    assert "cython" in available_backends(kind)
    mod = get_backend("cython", kind)
    want_openmp = os.environ.get("EMFAST_NO_OPENMP", "") in ("", "0")
    assert bool(mod.openmp_enabled()) == want_openmp


def test_auto_prefers_cython_when_built():
    from emfast._config import get_backend

    expected = "cython" if "cython" in available_backends() else "numba"
    assert get_backend("auto") is get_backend(expected)


def test_thread_count_resolution(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert cpu_count() == 1
    assert resolve_n_threads(None) == 1
    assert resolve_n_threads(3) == 3
    with pytest.raises(ValueError, match="n_threads"):
        resolve_n_threads(0)
    with pytest.raises(TypeError, match="n_threads"):
        resolve_n_threads(1.5)
