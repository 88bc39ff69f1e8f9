"""Data and starting parameters shared by the asv suites: fixed seeds, sized for ~2 cores."""

import numpy as np

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
BACKENDS = ["cython", "numba"]


def make_data(n_samples, n_features, n_components, seed=0):
    """A mixture of ``n_components`` Gaussians with random full covariances (float64)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=4.0, size=(n_components, n_features))
    A = rng.normal(size=(n_components, n_features, n_features)) / np.sqrt(n_features)
    chols = np.linalg.cholesky(A @ np.swapaxes(A, 1, 2) + 0.1 * np.eye(n_features))
    z = rng.integers(n_components, size=n_samples)
    X = rng.standard_normal((n_samples, n_features))
    for k in range(n_components):
        rows = z == k
        X[rows] = X[rows] @ chols[k].T + means[k]
    return X


def make_start(X, n_components, covariance_type, seed=1):
    """weights_init, means_init, precisions_init: random rows as means, the data covariance."""
    rng = np.random.default_rng(seed)
    n_samples, n_features = X.shape
    means = X[np.sort(rng.choice(n_samples, size=n_components, replace=False))].copy()
    cov = np.atleast_2d(np.cov(X, rowvar=False)) + 1e-6 * np.eye(n_features)
    prec = np.linalg.inv(cov)
    prec = 0.5 * (prec + prec.T)
    precisions = {
        "full": lambda: np.repeat(prec[None], n_components, axis=0),
        "tied": lambda: prec,
        "diag": lambda: np.repeat((1.0 / np.diag(cov))[None], n_components, axis=0),
        "spherical": lambda: np.full(n_components, 1.0 / np.mean(np.diag(cov))),
    }[covariance_type]()
    return {
        "weights_init": np.full(n_components, 1.0 / n_components),
        "means_init": means,
        "precisions_init": np.ascontiguousarray(precisions),
    }


def require_backend(backend):
    """Skip (asv: NotImplementedError in setup) when ``backend`` is not usable here."""
    from emfast._config import available_backends

    if backend not in available_backends():
        raise NotImplementedError(f"emfast backend {backend!r} is not available")
