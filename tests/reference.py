"""Plain NumPy reference implementations of the kernel contracts.

These are deliberately naive (N x K arrays, no blocking) so that they are easy
to read and check by eye. Every compiled backend is tested against them.
"""

import numpy as np
from scipy.special import logsumexp

COV_TYPES = ("full", "tied", "diag", "spherical")


def mahalanobis_sq(X, means, prec_chol, covariance_type):
    """Squared Mahalanobis distance of each row to each mean, shape (N, K)."""
    X = np.asarray(X, dtype=np.float64)
    N, D = X.shape
    K = means.shape[0]
    out = np.empty((N, K))
    for k in range(K):
        diff = X - means[k]
        if covariance_type == "full":
            y = diff @ prec_chol[k]
        elif covariance_type == "tied":
            y = diff @ prec_chol
        elif covariance_type == "diag":
            y = diff * prec_chol[k]
        else:
            y = diff * prec_chol[k]
        out[:, k] = np.sum(y * y, axis=1)
    return out


def weighted_log_prob(X, log_const, means, prec_chol, covariance_type):
    """log_const[k] - 0.5 * mahalanobis^2, shape (N, K)."""
    return log_const[None, :] - 0.5 * mahalanobis_sq(X, means, prec_chol, covariance_type)


def weighted_stats(X, resp, means, covariance_type):
    """Reference of ``gaussian_weighted_stats``: statistics for given responsibilities."""
    X = np.asarray(X, dtype=np.float64)
    K, D = means.shape
    nk = resp.sum(axis=0)
    s1 = np.empty((K, D))
    s2 = np.zeros({"full": (K, D, D), "tied": (D, D), "diag": (K, D), "spherical": (K,)}[
        covariance_type])
    for k in range(K):
        diff = X - means[k]
        s1[k] = resp[:, k] @ diff
        if covariance_type == "full":
            s2[k] = (resp[:, k, None] * diff).T @ diff
        elif covariance_type == "tied":
            s2 += (resp[:, k, None] * diff).T @ diff
        elif covariance_type == "diag":
            s2[k] = resp[:, k] @ (diff * diff)
        else:
            s2[k] = resp[:, k] @ np.sum(diff * diff, axis=1)
    return nk, s1, s2


def estep_stats(X, sample_weight, log_const, means, prec_chol, covariance_type):
    """Reference of the fused E-step + statistics pass.

    Returns (loglik, nk, s1, s2) with the shapes and meanings of
    ``emfast.kernels.gaussian_estep_stats``.
    """
    X = np.asarray(X, dtype=np.float64)
    w = np.ones(len(X)) if sample_weight is None or len(sample_weight) == 0 else sample_weight
    lp = weighted_log_prob(X, log_const, means, prec_chol, covariance_type)
    norm = logsumexp(lp, axis=1)
    resp = np.exp(lp - norm[:, None]) * w[:, None]
    return (float(w @ norm),) + weighted_stats(X, resp, means, covariance_type)


def log_prob_resp(X, log_const, means, prec_chol, covariance_type):
    """Reference for ``gaussian_log_prob``: (weighted log-probs, responsibilities, logsumexp)."""
    lp = weighted_log_prob(X, log_const, means, prec_chol, covariance_type)
    norm = logsumexp(lp, axis=1)
    return lp, np.exp(lp - norm[:, None]), norm
