"""Plain NumPy reference of the missing-value E-step (``emfast.kernels.missing_estep``).

Row by row, straight from the textbook (Little & Rubin, ch. 11; Ghahramani & Jordan 1994):
the marginal density of the observed coordinates under each component from the covariance
Sigma_OO, the conditional mean of the missing ones by regression on the observed ones, the
conditional covariance Sigma_MM - Sigma_MO Sigma_OO^-1 Sigma_OM added to the second moments.
The kernels work from the precision matrix instead (they factor Lambda_MM, not Sigma_OO), so
this is an independent derivation as well as a slow one.
"""

import numpy as np
from scipy.special import logsumexp

LOG_2PI = np.log(2 * np.pi)


def _row_terms(x, log_weights, means, covariances):
    """Per component: log(pi_k p_k(x_O)), the filled row, the conditional covariance (D, D;
    zero outside the missing block) and the Cholesky factor of that block."""
    miss = np.isnan(x)
    obs = ~miss
    out = []
    for lw, mu, cov in zip(log_weights, means, covariances):
        d_o = x[obs] - mu[obs]
        s_oo = cov[np.ix_(obs, obs)]
        s_mo = cov[np.ix_(miss, obs)]
        sol = np.linalg.solve(s_oo, d_o) if obs.any() else np.zeros(0)
        _, logdet = np.linalg.slogdet(s_oo) if obs.any() else (1.0, 0.0)
        logp = lw - 0.5 * (d_o @ sol + logdet + obs.sum() * LOG_2PI)
        filled = x.copy()
        filled[miss] = mu[miss] + s_mo @ sol
        cond = np.zeros_like(cov)
        block = cov[np.ix_(miss, miss)] - (s_mo @ np.linalg.solve(s_oo, s_mo.T)
                                            if obs.any() else 0.0)
        cond[np.ix_(miss, miss)] = block
        out.append((logp, filled, cond))
    return out


def missing_estep(X, sample_weight, log_weights, means, covariances, noise=None):
    """Reference of the kernel: (loglik, nk, s1, s2, filled, logp, resp).

    s1, s2 are centred on ``means``: s1[k] = sum w r (xhat_k - mu_k), s2[k] = sum w r
    ((xhat_k - mu_k)(xhat_k - mu_k)^T + C_k). ``filled`` holds the mixture's conditional
    means sum_k r_k xhat_k in the missing places (with ``noise`` and K = 1: a draw
    xhat + L^-T z_M with L L^T = Lambda_MM, i.e. from the conditional distribution).
    """
    X = np.asarray(X, dtype=np.float64)
    N, D = X.shape
    K = means.shape[0]
    w = np.ones(N) if sample_weight is None or len(sample_weight) == 0 else sample_weight
    nk = np.zeros(K)
    s1 = np.zeros((K, D))
    s2 = np.zeros((K, D, D))
    logp = np.empty(N)
    resp = np.empty((N, K))
    filled = X.copy()
    for n in range(N):
        terms = _row_terms(X[n], log_weights, means, covariances)
        lp = np.array([t[0] for t in terms])
        logp[n] = logsumexp(lp)
        r = resp[n] = np.exp(lp - logp[n])
        filled[n] = sum(rk * t[1] for rk, t in zip(r, terms))
        for k, (_, xk, ck) in enumerate(terms):
            d = xk - means[k]
            nk[k] += w[n] * r[k]
            s1[k] += w[n] * r[k] * d
            s2[k] += w[n] * r[k] * (np.outer(d, d) + ck)
        if noise is not None:
            miss = np.isnan(X[n])
            if miss.any():
                lam_mm = np.linalg.inv(covariances[0])[np.ix_(miss, miss)]
                L = np.linalg.cholesky(lam_mm)
                filled[n, miss] += np.linalg.solve(L.T, noise[n, miss])
    return float(w @ logp), nk, s1, s2, filled, logp, resp
