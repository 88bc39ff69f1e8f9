"""Gaussian mixtures on data with missing values (NaN), all four covariance types
(Ghahramani & Jordan 1994): each row counts through the marginal density of its observed
coordinates, and the M-step takes the conditional means of the missing ones and their
conditional covariances.

The kernel (``missing_estep``, both backends) works on full precision matrices; diagonal,
spherical and tied models pass theirs expanded, and the full second moments it returns are
reduced to the shape of the model's statistics here, so that the one M-step of
:mod:`emfast.mixture._gaussian` serves data with and without missing values.
"""

import numpy as np

from emfast import kernels
from emfast._config import get_backend
from emfast._stats import GaussianStats
from emfast._patterns import fill_with_column_means, observed_rows, pattern_order

_NONE2 = np.empty((0, 0))
_NONE1 = np.empty(0)


def full_precisions(params):
    """(precisions (K, D, D), log det of each (K,)) of a GaussianParams of any type."""
    ct, pc = params.covariance_type, np.asarray(params.prec_chol, dtype=np.float64)
    K, D = params.means.shape
    if ct in ("full", "tied"):
        U = pc if ct == "full" else np.broadcast_to(pc, (K, D, D))
        prec = U @ np.swapaxes(U, 1, 2)
        logdet = 2.0 * np.log(np.diagonal(U, axis1=1, axis2=2)).sum(axis=1)
    else:
        d = pc ** 2 if ct == "diag" else np.repeat((pc ** 2)[:, None], D, axis=1)
        prec = d[:, :, None] * np.eye(D)
        logdet = np.log(d).sum(axis=1)
    return np.ascontiguousarray(prec), np.ascontiguousarray(logdet)


def stats_of_type(covariance_type, s2_full):
    """Full second moments (K, D, D) reduced to ``covariance_type``'s shape."""
    if covariance_type == "full":
        return s2_full
    if covariance_type == "tied":
        return s2_full.sum(axis=0)
    diag = np.diagonal(s2_full, axis1=1, axis2=2)
    return np.ascontiguousarray(diag if covariance_type == "diag" else diag.sum(axis=1))


def _log_weights(params):
    with np.errstate(divide="ignore"):
        return np.log(params.weights)


class MissingEStep:
    """The missing-value E-step bound to one EM run over X (rows grouped by pattern), like
    :class:`emfast.mixture._gaussian.EStep` for complete data."""

    __slots__ = ("_kernel", "_X", "_sw", "_threads", "_nk", "_s1", "_s2", "_weight_sum")

    def __init__(self, X, sample_weight, n_components, backend, n_threads, weight_sum):
        N, D = X.shape
        self._kernel = get_backend(backend, "missing").missing_estep
        self._X = X
        self._sw = _NONE1 if sample_weight is None else sample_weight
        self._threads = kernels._threads_for(N, n_threads)
        self._nk = np.empty(n_components)
        self._s1 = np.empty((n_components, D))
        self._s2 = np.empty((n_components, D, D))
        self._weight_sum = weight_sum

    def __call__(self, params):
        means = np.ascontiguousarray(params.means, dtype=np.float64)
        prec, logdet = full_precisions(params)
        loglik = self._kernel(self._X, self._sw, _log_weights(params), means, prec, logdet,
                              self._nk, self._s1, self._s2, _NONE2, _NONE1, _NONE2, _NONE2,
                              self._threads)
        ct = params.covariance_type
        return GaussianStats(ct, means, self._nk, self._s1, stats_of_type(ct, self._s2),
                             loglik, self._weight_sum)


def infer(X, params, backend, n_threads, *, logp=False, resp=False, filled=False):
    """Per-row outputs of the missing-value kernel for X under a GaussianParams (see
    :func:`infer_arrays`)."""
    prec, logdet = full_precisions(params)
    return infer_arrays(X, _log_weights(params),
                        np.ascontiguousarray(params.means, dtype=np.float64), prec, logdet,
                        backend, n_threads, logp=logp, resp=resp, filled=filled)


def infer_arrays(X, log_weights, means, precisions, log_det, backend, n_threads, *,
                 logp=False, resp=False, filled=False, noise=None):
    """Per-row outputs of the missing-value kernel for X (any order; the rows are grouped by
    pattern for the kernel and returned in X's order): a dict with "logp" (N,), "resp"
    (N, K) and "filled" (N, D), those asked for (``noise`` (N, D), K = 1: filled with
    draws from the conditional distributions instead of the conditional means)."""
    N, D = X.shape
    K = means.shape[0]
    order, _ = pattern_order(np.isnan(X))
    Xs = np.ascontiguousarray(X[order])
    out = {"logp": np.empty(N) if logp else _NONE1,
           "resp": np.empty((N, K)) if resp else _NONE2,
           "filled": np.empty((N, D)) if filled else _NONE2}
    z = _NONE2 if noise is None else np.ascontiguousarray(noise[order])
    get_backend(backend, "missing").missing_estep(
        Xs, _NONE1, log_weights, means, precisions, log_det, np.empty(K), np.empty((K, D)),
        np.empty((K, D, D)), out["filled"], out["logp"], out["resp"], z,
        kernels._threads_for(N, n_threads))
    result = {}
    for name, wanted in (("logp", logp), ("resp", resp), ("filled", filled)):
        if wanted:
            a = np.empty_like(out[name])
            a[order] = out[name]
            result[name] = a
    return result


class MissingData:
    """What a fit on X with NaN works on, prepared once: the rows with at least one observed
    value, grouped by missing pattern (``X``, ``sample_weight``), and the same rows with each
    missing value replaced by its column's mean (``filled``), from which the starting point
    is chosen (k-means and the other ``init_params`` need complete rows) and empty
    components are re-seeded."""

    def __init__(self, X, sample_weight):
        self.order = order = observed_rows(np.isnan(X))   # X's rows, as they are kept here
        self.X = np.ascontiguousarray(X[order])
        self.sample_weight = None if sample_weight is None else sample_weight[order]
        self.filled = fill_with_column_means(X, order)
