"""Plain NumPy references of the discrete-data kernels (kernel kind "discrete": categorical,
Bernoulli as its two-category case, and Poisson mixtures).

Deliberately naive: (N, K) log-probability arrays, (N, J, K) gathers, no blocking. Both
backends are tested against these. The arguments are those of the backend functions, minus
the outputs and the thread count (sample_weight may also be None: every weight 1); each
function returns what the backend writes and returns.

Conventions shared with the kernels:
* a row that is impossible under every class (its log-probabilities all -inf) adds -inf to
  the log-likelihood and nothing to the statistics; a row of weight 0 adds nothing at all
  (not 0 * -inf = NaN);
* a missing categorical code (-1) adds nothing to the row's log-probabilities;
* a Poisson term with x = 0 adds 0, also where log(lambda) = -inf.
"""

import numpy as np
from scipy.special import gammaln


def _weights(sample_weight, N):
    if sample_weight is None or len(sample_weight) == 0:
        return np.ones(N)
    return np.asarray(sample_weight, dtype=np.float64)


def _estep(logp, sample_weight):
    """(loglik, resp (N, K)) of per-row, per-class log-probabilities logp (N, K): loglik =
    sum_n w_n logsumexp_k logp[n]; resp = w_n r_nk, 0 for impossible and zero-weight rows."""
    N, K = logp.shape
    w = _weights(sample_weight, N)
    top = logp.max(axis=1) if K else np.full(N, -np.inf)
    possible = np.isfinite(top)
    shift = np.where(possible, top, 0.0)
    with np.errstate(divide="ignore"):
        norm = shift + np.log(np.exp(logp - shift[:, None]).sum(axis=1))
    safe_norm = np.where(possible, norm, 0.0)                  # (-inf - -inf would be NaN)
    resp = np.where(possible[:, None], np.exp(logp - safe_norm[:, None]), 0.0) * w[:, None]
    counted = w != 0
    loglik = float(np.sum(w[counted] * norm[counted]))
    return loglik, resp


def categorical_log_prob(codes, log_prob_T, log_weights):
    """(N, K): log_weights_k + sum over the non-missing j of log_prob_T[codes[n, j], k]."""
    codes = np.asarray(codes)
    lp = np.asarray(log_prob_T, dtype=np.float64)
    present = codes >= 0
    gathered = lp[np.where(present, codes, 0)]                 # (N, J, K)
    gathered = np.where(present[:, :, None], gathered, 0.0)    # (-inf * 0 would be NaN)
    return np.asarray(log_weights, dtype=np.float64) + gathered.sum(axis=1)


def categorical_estep_stats(codes, sample_weight, log_prob_T, log_weights):
    """(loglik, nk (K,), counts (C, K)): counts[c, k] = sum_n w_n r_nk [codes[n, j] == c]
    summed over j."""
    codes = np.asarray(codes)
    loglik, resp = _estep(categorical_log_prob(codes, log_prob_T, log_weights), sample_weight)
    C, K = np.shape(log_prob_T)
    counts = np.zeros((C, K))
    for j in range(codes.shape[1]):
        present = codes[:, j] >= 0
        np.add.at(counts, codes[present, j], resp[present])
    return loglik, resp.sum(axis=0), counts


def poisson_row_const(X):
    """(N,): -sum_d log(x_nd!)."""
    return -gammaln(np.asarray(X, dtype=np.float64) + 1.0).sum(axis=1)


def poisson_log_prob(X, log_lam, log_const, row_const):
    """(N, K): log_const_k + row_const_n + sum_d x_nd log_lam_kd (0 where x_nd = 0)."""
    X = np.asarray(X, dtype=np.float64)
    ll = np.asarray(log_lam, dtype=np.float64)
    with np.errstate(invalid="ignore"):                        # 0 * -inf, replaced by 0
        terms = np.where(X[:, None, :] == 0, 0.0, X[:, None, :] * ll[None, :, :])  # (N, K, D)
    return np.asarray(log_const) + np.asarray(row_const)[:, None] + terms.sum(axis=2)


def poisson_estep_stats(X, sample_weight, log_lam, log_const, row_const):
    """(loglik, nk (K,), s1 (K, D) = sum_n w_n r_nk x_n)."""
    loglik, resp = _estep(poisson_log_prob(X, log_lam, log_const, row_const), sample_weight)
    return loglik, resp.sum(axis=0), resp.T @ np.asarray(X, dtype=np.float64)
