import os

# numba fixes its thread pool (NUMBA_NUM_THREADS, default: the CPUs) when it starts, and runs a
# kernel asked for more threads on the pool's size. The thread-count tests ask for up to
# NUMBA_POOL_FOR_TESTS threads and must get them on a 2-core machine too, so the pool is sized
# before anything imports numba (test_numba_threads.py checks that it was).
NUMBA_POOL_FOR_TESTS = 4
os.environ["NUMBA_NUM_THREADS"] = str(max(NUMBA_POOL_FOR_TESTS,
                                          int(os.environ.get("NUMBA_NUM_THREADS", "0") or 0)))

import numpy as np  # noqa: E402 - after the pool size
import pytest  # noqa: E402

from emfast._config import available_backends  # noqa: E402
from emfast.metrics import label_agreement  # noqa: F401 - the tests import it from here

BACKENDS = available_backends()


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


def random_params(rng, K, D, covariance_type, spread=3.0):
    """Means, upper-triangular precision Cholesky factors and log_const for tests."""
    from emfast.kernels import log_normalizer

    means = rng.normal(scale=spread, size=(K, D))
    if covariance_type == "full":
        pc = np.triu(rng.normal(scale=0.3, size=(K, D, D)))
        idx = np.arange(D)
        pc[:, idx, idx] = rng.uniform(0.5, 1.5, size=(K, D))
    elif covariance_type == "tied":
        pc = np.triu(rng.normal(scale=0.3, size=(D, D)))
        pc[np.arange(D), np.arange(D)] = rng.uniform(0.5, 1.5, size=D)
    elif covariance_type == "diag":
        pc = rng.uniform(0.5, 1.5, size=(K, D))
    else:
        pc = rng.uniform(0.5, 1.5, size=K)
    w = rng.dirichlet(np.ones(K))
    return means, pc, log_normalizer(pc, covariance_type, D, np.log(w))


def assert_close(got, want, rtol=1e-10, err_msg=""):
    """Non-finite values equal; finite ones within rtol of each value, with an absolute floor
    of rtol times the largest value (or 1: a log-likelihood of exactly 0)."""
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    assert got.shape == want.shape, (err_msg, got.shape, want.shape)
    finite = np.isfinite(want)
    np.testing.assert_array_equal(got[~finite], want[~finite], err_msg=err_msg)
    if finite.any():
        scale = max(np.abs(want[finite]).max(), 1.0)
        np.testing.assert_allclose(got[finite], want[finite], rtol=rtol, atol=rtol * scale,
                                   err_msg=err_msg)


# --------------------------------------------------------------------------------------
# Helpers for the estimator-level tests (test_gaussian_mixture.py, test_api.py, ...).

COV_TYPES = ("full", "tied", "diag", "spherical")


def make_blobs(n_samples=300, n_features=3, n_components=3, separation=6.0, seed=0,
               dtype=np.float64):
    """Well-separated Gaussian blobs: (X (N, D), y (N,) true labels, centres (K, D))."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=separation, size=(n_components, n_features))
    # Push centres apart along a diagonal so that no two blobs overlap.
    centres += separation * np.arange(n_components)[:, None]
    y = np.repeat(np.arange(n_components), -(-n_samples // n_components))[:n_samples]
    scales = rng.uniform(0.5, 1.5, size=(n_components, n_features))
    X = centres[y] + rng.normal(size=(n_samples, n_features)) * scales[y]
    return X.astype(dtype), y, centres


def start_params(X, n_components, covariance_type, seed=1):
    """weights_init, means_init, precisions_init: a poor, deterministic starting point,
    so that EM takes many iterations from it."""
    rng = np.random.default_rng(seed)
    N, D = X.shape
    K = n_components
    means = np.asarray(X[rng.choice(N, size=K, replace=False)], dtype=np.float64)
    weights = np.full(K, 1.0 / K)
    scale = 1.0 / np.var(np.asarray(X, dtype=np.float64), axis=0).mean()
    precisions = {
        "full": np.broadcast_to(np.eye(D) * scale, (K, D, D)).copy(),
        "tied": np.eye(D) * scale,
        "diag": np.full((K, D), scale),
        "spherical": np.full(K, scale),
    }[covariance_type]
    return dict(weights_init=weights, means_init=means, precisions_init=precisions)


FITTED_ATTRS = ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_")


def assert_same_fit(a, b, exact=True, rtol=1e-10):
    """Two fitted mixtures have the same parameters (bit-identical when ``exact``)."""
    for name in FITTED_ATTRS:
        x, y = getattr(a, name), getattr(b, name)
        if exact:
            assert np.array_equal(x, y), name
        else:
            np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol, err_msg=name)
    assert a.n_iter_ == b.n_iter_
    assert a.converged_ == b.converged_
    if exact:
        assert a.lower_bound_ == b.lower_bound_
        assert list(a.lower_bounds_) == list(b.lower_bounds_)
    else:
        np.testing.assert_allclose(a.lower_bounds_, b.lower_bounds_, rtol=rtol)
