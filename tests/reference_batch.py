"""NumPy reference of the batch-EM kernel (emfast.fit_many): one problem's whole EM --
initialisation from the given random numbers, iterations, convergence rule, restarts -- in
plain NumPy, written from scikit-learn's formulas, not from the kernels. It is the judge of
both backends' ``fit_many`` (tests/test_batch.py), which must agree with it to rounding.

``fit_problem`` takes the kernel's arguments for one problem and returns the kernel's
outputs for it, or None where the kernel must hand the problem back (FALLBACK)."""

import numpy as np

NK_EPS = 10 * np.finfo(np.float64).eps
COV = ("full", "tied", "diag", "spherical")
INIT = ("kmeans", "k-means++", "random", "random_from_data")


def _sqdist(X, c):
    return ((X - c) ** 2).sum(axis=1)


def _plusplus(X, first, u, K, T):
    """Greedy k-means++ from the given first row and uniforms ((K - 1) * T,); None when the
    potential is 0."""
    centres = [X[first]]
    closest = _sqdist(X, X[first])
    for c in range(1, K):
        pot = closest.sum()
        if not pot > 0:
            return None
        cum = np.cumsum(closest)
        cand = np.minimum(np.searchsorted(cum, u[(c - 1) * T:c * T] * pot, side="left"),
                          len(X) - 1)
        pots = [np.minimum(closest, _sqdist(X, X[j])).sum() for j in cand]
        best = cand[int(np.argmin(pots))]
        centres.append(X[best])
        closest = np.minimum(closest, _sqdist(X, X[best]))
    return np.array(centres)


def _lloyd(X, centres, abs_tol, max_iter=300):
    labels = np.full(len(X), -1)
    for _ in range(max_iter):
        new_labels = np.argmin([_sqdist(X, c) for c in centres], axis=0)
        if np.array_equal(new_labels, labels):
            return centres
        labels = new_labels
        counts = np.bincount(labels, minlength=len(centres))
        if np.any(counts == 0):
            return None
        new = np.array([X[labels == k].mean(axis=0) for k in range(len(centres))])
        shift = ((new - centres) ** 2).sum()
        centres = new
        if shift <= abs_tol:
            break
    return centres


def _initial_resp(X, init, K, T, idx, u, resp):
    """The start: (N, K) responsibilities, or ("rows", centres) for components of one row
    each, or None (FALLBACK)."""
    N = len(X)
    if init == "random":
        return resp
    if init == "random_from_data":       # components of one row each (see _em_run)
        return ("rows", X[idx])
    if init == "k-means++":
        centres = _plusplus(X, idx[0], u, K, T)
        return None if centres is None else ("rows", centres)
    mean = X.mean(axis=0)
    Xc = X - mean
    centres = _plusplus(Xc, idx[0], u, K, T)
    if centres is None:
        return None
    centres = _lloyd(Xc, centres, 1e-4 * (Xc ** 2).mean())
    if centres is None:
        return None
    labels = np.argmin([_sqdist(X, c + mean) for c in centres], axis=0)
    R = np.zeros((N, K))
    R[np.arange(N), labels] = 1.0
    return R


def _moments(X, R, cov, reg):
    """scikit-learn's M-step from responsibilities: (nk, means, covariances)."""
    nk = R.sum(axis=0) + NK_EPS
    means = R.T @ X / nk[:, None]
    K, D = means.shape
    if cov == "tied":
        c = X.T @ X - (nk * means.T) @ means
        c = c / nk.sum()
        return nk, means, c + reg * np.eye(D)
    covs = np.empty((K, D, D))
    for k in range(K):
        d = X - means[k]
        covs[k] = (R[:, k] * d.T) @ d / nk[k] + reg * np.eye(D)
    if cov == "full":
        return nk, means, covs
    if cov == "diag":
        return nk, means, np.diagonal(covs, axis1=1, axis2=2).copy()
    return nk, means, np.diagonal(covs, axis1=1, axis2=2).mean(axis=1)


def _prec_chol(covs, cov):
    if cov in ("diag", "spherical"):
        return None if np.any(covs <= 0) else 1.0 / np.sqrt(covs)
    stack = covs if cov == "full" else covs[None]
    try:
        L = np.linalg.cholesky(stack)
    except np.linalg.LinAlgError:
        return None
    U = np.linalg.inv(L).transpose(0, 2, 1)
    return U if cov == "full" else U[0]


def _log_prob(X, w, means, pc, cov):
    K, D = means.shape
    out = np.empty((len(X), K))
    for k in range(K):
        if cov in ("full", "tied"):
            U = pc[k] if cov == "full" else pc
            y = (X - means[k]) @ U
            logdet = np.log(np.diag(U)).sum()
        else:
            p = pc[k]
            y = (X - means[k]) * p
            logdet = np.log(p).sum() if cov == "diag" else D * np.log(p)
        out[:, k] = np.log(w[k]) + logdet - 0.5 * D * np.log(2 * np.pi) - 0.5 * (y * y).sum(1)
    return out


def _em_run(X, start, cov, reg, tol, max_iter):
    N, D = X.shape
    if isinstance(start, tuple):         # one row per component: nk = 1, covariance reg
        means = start[1].copy()
        K = len(means)
        w = np.full(K, (1 + NK_EPS) / N)
        covs = {"full": np.tile(reg * np.eye(D), (K, 1, 1)), "tied": reg * np.eye(D),
                "diag": np.full((K, D), reg), "spherical": np.full(K, reg)}[cov]
    else:
        nk, means, covs = _moments(X, start, cov, reg)
        w = nk / N
    pc = _prec_chol(covs, cov)
    if pc is None:
        return None
    lb, prev, hist, converged, n_iter = -np.inf, -np.inf, [], False, 0
    for n_iter in range(1, max_iter + 1):
        lp = _log_prob(X, w, means, pc, cov)
        mx = lp.max(axis=1, keepdims=True)
        ll = mx[:, 0] + np.log(np.exp(lp - mx).sum(axis=1))
        R = np.exp(lp - ll[:, None])
        nk, means, covs = _moments(X, R, cov, reg)
        if np.any(nk - NK_EPS <= 1e-8 * N):
            return None
        w = nk / nk.sum()
        pc = _prec_chol(covs, cov)
        if pc is None:
            return None
        lb = ll.sum() / N
        hist.append(lb)
        if abs(lb - prev) < tol:
            converged = True
            break
        prev = lb
    return dict(weights=w, means=means, covariances=covs, prec_chol=pc, lower_bound=lb,
                lower_bounds=hist, n_iter=n_iter, converged=converged)


def fit_problem(X, K, cov, reg, tol, max_iter, n_init, init, idx, u, resp):
    """The best of n_init runs (highest lower bound, the first on ties), or None.
    idx (n_init, K), u (n_init, (K - 1) T), resp (n_init, N, K) or None: as the kernel's."""
    T = 2 + int(np.log(K))
    best = None
    for r in range(n_init):
        start = _initial_resp(X, init, K, T, idx[r], u[r], None if resp is None else resp[r])
        if start is None:
            return None
        run = _em_run(X, start, cov, reg, tol, max_iter)
        if run is None:
            return None
        if best is None or run["lower_bound"] > best["lower_bound"]:
            best = run
    return best
