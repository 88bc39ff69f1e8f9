"""NumPy reference of the batch-EM kernel (emfast.fit_many): one problem's whole EM --
initialisation from the given random numbers, iterations, convergence rule, restarts -- in
plain NumPy, written from scikit-learn's formulas, not from the kernels. It is the judge of
both backends' ``fit_many`` (tests/test_batch.py), which must agree with it to rounding.

``fit_problem`` takes the kernel's arguments for one problem and returns the kernel's
outputs for it, or None where the kernel must hand the problem back (FALLBACK). Sample
weights ``w`` (N,) weigh every step: k-means++ draws by w times the squared distance,
Lloyd's means and tolerance, the responsibilities and the mean log-likelihood."""

import numpy as np

NK_EPS = 10 * np.finfo(np.float64).eps
COV = ("full", "tied", "diag", "spherical")
INIT = ("kmeans", "k-means++", "random", "random_from_data")


def _sqdist(X, c):
    return ((X - c) ** 2).sum(axis=1)


def _plusplus(X, w, first, u, K, T):
    """Greedy weighted k-means++ from the given first row and uniforms ((K - 1) * T,): the
    rows chosen, or None when the potential is 0."""
    rows = [first]
    closest = _sqdist(X, X[first])
    for c in range(1, K):
        pot = (w * closest).sum()
        if not pot > 0:
            return None
        cum = np.cumsum(w * closest)
        cand = np.minimum(np.searchsorted(cum, u[(c - 1) * T:c * T] * pot, side="left"),
                          len(X) - 1)
        pots = [(w * np.minimum(closest, _sqdist(X, X[j]))).sum() for j in cand]
        best = cand[int(np.argmin(pots))]
        rows.append(best)
        closest = np.minimum(closest, _sqdist(X, X[best]))
    return np.array(rows)


def _lloyd(X, w, centres, abs_tol, max_iter=300):
    labels = np.full(len(X), -1)
    for _ in range(max_iter):
        new_labels = np.argmin([_sqdist(X, c) for c in centres], axis=0)
        if np.array_equal(new_labels, labels):
            return centres
        labels = new_labels
        counts = np.bincount(labels, weights=w, minlength=len(centres))
        if np.any(counts == 0):
            return None
        new = np.array([np.average(X[labels == k], axis=0, weights=w[labels == k])
                        for k in range(len(centres))])
        shift = ((new - centres) ** 2).sum()
        centres = new
        if shift <= abs_tol:
            break
    return centres


def _initial_resp(X, w, init, K, T, idx, u, resp):
    """The start: (N, K) responsibilities (unweighted), or ("rows", row indices) for
    components of one row each, or None (FALLBACK)."""
    N = len(X)
    if init == "random":
        return resp
    if init == "random_from_data":       # components of one row each (see _em_run)
        return ("rows", idx)
    if init == "k-means++":
        rows = _plusplus(X, w, idx[0], u, K, T)
        return None if rows is None else ("rows", rows)
    mean = np.average(X, axis=0, weights=w)
    Xc = X - mean
    rows = _plusplus(Xc, w, idx[0], u, K, T)
    if rows is None:
        return None
    variance = (w * (Xc ** 2).sum(axis=1)).sum() / (w.sum() * X.shape[1])
    centres = _lloyd(Xc, w, Xc[rows], 1e-4 * variance)
    if centres is None:
        return None
    labels = np.argmin([_sqdist(X, c + mean) for c in centres], axis=0)
    R = np.zeros((N, K))
    R[np.arange(N), labels] = 1.0
    return R


def _moments(X, R, cov, reg):
    """scikit-learn's M-step from responsibilities (times the sample weights): (nk, means,
    covariances)."""
    nk = R.sum(axis=0) + NK_EPS
    means = R.T @ X / nk[:, None]
    K, D = means.shape
    if cov == "tied":
        c = (X.T * R.sum(axis=1)) @ X - (nk * means.T) @ means     # R's rows sum to w
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


def _em_run(X, sw, start, cov, reg, tol, max_iter):
    N, D = X.shape
    total = sw.sum()
    if isinstance(start, tuple):         # one row per component: nk its weight, cov reg
        means = X[start[1]]
        K = len(means)
        w = (sw[start[1]] + NK_EPS) / total
        covs = {"full": np.tile(reg * np.eye(D), (K, 1, 1)), "tied": reg * np.eye(D),
                "diag": np.full((K, D), reg), "spherical": np.full(K, reg)}[cov]
    else:
        nk, means, covs = _moments(X, start * sw[:, None], cov, reg)
        w = nk / total
    pc = _prec_chol(covs, cov)
    if pc is None:
        return None
    lb, prev, hist, converged, n_iter = -np.inf, -np.inf, [], False, 0
    for n_iter in range(1, max_iter + 1):
        lp = _log_prob(X, w, means, pc, cov)
        mx = lp.max(axis=1, keepdims=True)
        ll = mx[:, 0] + np.log(np.exp(lp - mx).sum(axis=1))
        R = np.exp(lp - ll[:, None])
        nk, means, covs = _moments(X, R * sw[:, None], cov, reg)
        if np.any(nk - NK_EPS <= 1e-8 * total):
            return None
        w = nk / nk.sum()
        pc = _prec_chol(covs, cov)
        if pc is None:
            return None
        lb = (sw * ll).sum() / total
        hist.append(lb)
        if abs(lb - prev) < tol:
            converged = True
            break
        prev = lb
    return dict(weights=w, means=means, covariances=covs, prec_chol=pc, lower_bound=lb,
                lower_bounds=hist, n_iter=n_iter, converged=converged)


def fit_problem(X, K, cov, reg, tol, max_iter, n_init, init, idx, u, resp, sw=None):
    """The best of n_init runs (highest lower bound, the first on ties), or None.
    idx (n_init, K), u (n_init, (K - 1) T), resp (n_init, N, K) or None: as the kernel's;
    sw (N,) the sample weights (None: all 1)."""
    T = 2 + int(np.log(K))
    sw = np.ones(len(X)) if sw is None else sw
    best = None
    for r in range(n_init):
        start = _initial_resp(X, sw, init, K, T, idx[r], u[r],
                              None if resp is None else resp[r])
        if start is None:
            return None
        run = _em_run(X, sw, start, cov, reg, tol, max_iter)
        if run is None:
            return None
        if best is None or run["lower_bound"] > best["lower_bound"]:
            best = run
    return best
