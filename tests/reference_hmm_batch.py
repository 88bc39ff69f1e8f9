"""Plain NumPy reference of one problem of emfast.fit_many_hmm: Baum-Welch of a Gaussian HMM
from a given start, in log space (reference_hmm.forward_backward), with the M-step written
as hmmlearn states it -- MAP estimates under the priors, the scatter taken directly about
the new means -- and hmmlearn's monitor rule. Independent of emfast's kernels and of its
M-step code: the batch kernels are judged by it."""

import numpy as np
from scipy.stats import multivariate_normal

import reference_hmm

COV = ("full", "tied", "diag", "spherical")


def _full_covs(covars, ct, K, D):
    if ct == "full":
        return covars
    if ct == "tied":
        return np.repeat(covars[None], K, axis=0)
    if ct == "diag":
        return np.array([np.diag(c) for c in covars])
    return np.array([c * np.eye(D) for c in covars])


def _log_emissions(X, means, covars, ct):
    K, D = means.shape
    covs = _full_covs(covars, ct, K, D)
    for c in covs:
        np.linalg.cholesky(c)          # positive definite, or the kernel hands it back
    return np.column_stack([multivariate_normal(means[k], covs[k]).logpdf(X).reshape(-1)
                            for k in range(K)])


def _m_step(X, post, means, covars, ct, priors):
    """hmmlearn's GaussianHMM M-step (means and covariances) from the posteriors."""
    K, D = means.shape
    m0, mw, cp, cw = (np.broadcast_to(np.asarray(priors[k], dtype=float), s) for k, s in
                      (("means_prior", (K, D)), ("means_weight", (K, D)),
                       ("covars_prior", (K, D) if ct in ("diag", "spherical") else
                        ((K, D, D) if ct == "full" else (D, D))),
                       ("covars_weight", (K, D) if ct in ("diag", "spherical") else
                        ((K,) if ct == "full" else ()))))
    N = post.sum(axis=0)
    new = (mw * m0 + post.T @ X) / (mw + N[:, None])
    diff = [X - new[k] for k in range(K)]
    if ct in ("diag", "spherical"):
        num = cp + mw * (new - m0) ** 2 + np.array([post[:, k] @ diff[k] ** 2
                                                    for k in range(K)])
        cov = num / np.maximum(np.maximum(cw - 1, 0) + N[:, None], 1e-5)
        return new, cov.mean(axis=1) if ct == "spherical" else cov
    scat = np.array([(post[:, k, None] * diff[k]).T @ diff[k]
                     + mw[k, 0] * np.outer(new[k] - m0[k], new[k] - m0[k]) for k in range(K)])
    if ct == "full":
        return new, (cp + scat) / (np.maximum(cw - D, 0) + N)[:, None, None]
    return new, (cp + scat.sum(axis=0)) / (max(float(cw) - D, 0) + N.sum())


def fit_problem(X, lengths, startprob, transmat, means, covars, ct, priors, n_iter, tol):
    """(startprob, transmat, means, covars, history) after Baum-Welch from the start,
    every parameter updated (GaussianHMM's default params="stmc")."""
    sp, A, mu, cov = (np.array(a, dtype=float) for a in (startprob, transmat, means, covars))
    K = len(sp)
    history = []
    for _ in range(n_iter):
        le = _log_emissions(X, mu, cov, ct)
        ll, _, post, start, trans = reference_hmm.forward_backward(le, lengths, sp, A)
        s = np.where(sp == 0, 0, np.maximum(priors["startprob_prior"] - 1 + start, 0))
        sp = s / s.sum()
        t = np.where(A == 0, 0, np.maximum(np.broadcast_to(
            priors["transmat_prior"], (K, K)) - 1 + trans, 0))
        rows = t.sum(axis=1, keepdims=True)
        A = t / np.where(rows == 0, 1, rows)
        mu, cov = _m_step(X, post, mu, cov, ct, priors)
        history.append(ll)
        if len(history) == n_iter or (len(history) > 1 and history[-1] - history[-2] < tol):
            break
    return sp, A, mu, cov, np.array(history)
