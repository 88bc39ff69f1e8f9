"""Numba kernel of ``emfast.fit_many_hmm``: Baum-Welch of many small Gaussian HMMs in one
call, one problem per thread at a time.

The contract is the Cython kernel's (``emfast._cython._hmm_batch.fit_many_hmm``: arguments,
layouts, status codes) and so is the arithmetic, step for step (see that module's
docstring): the scaled forward-backward of each sequence is this backend's own
single-sequence pass (``_fb_seq`` of emfast._numba._hmm, with its lost-precision flag), the
precision factors, log-determinants, row statistics and the start's k-means++ and Lloyd
the GMM batch kernel's (``_precision_factors``, ``_log_dets``, ``_add_row``,
``_kmeans_plusplus``, ``_lloyd``). The problems are split into
a fixed number of contiguous groups (a function of the number of problems only); each group
allocates its scratch once and fits its problems in order, so results do not depend on the
thread count.
"""

import numpy as np
from numba import njit, prange, types

from emfast._numba._batch import (BLOCK, LLOYD_TOL, _add_row, _kmeans_plusplus, _lloyd,
                                  _log_dets, _mirror, _nearest, _precision_factors)
from emfast._numba._hmm import CHUNK, _fb_seq, _rfloor
from emfast._numba._launch import run
from emfast._numba._settings import (IN1, IN2, JIT, JIT_EXACT_DIVISION, OUT2, array_arg,
                                     outlined, parallel_driver)

__all__ = ["fit_many_hmm"]

FULL, TIED, DIAG, SPHERICAL = 0, 1, 2, 3          # emfast.kernels.COVARIANCE_TYPES
OK, FALLBACK = 0, 1                               # emfast.hmm_batch status codes
UPDATE_S, UPDATE_T, UPDATE_M, UPDATE_C = 1, 2, 4, 8   # emfast.hmm_batch.LETTER_BITS
COV_DENOM_FLOOR = 1e-5        # GaussianEmission.m_step: max(c_d, 1e-5), diag
MAX_GROUPS = 256              # groups of problems (scratch is allocated once per group)

_I64 = types.int64
_F64 = types.float64
_SIG = types.void(
    IN2, array_arg(types.int64, 1, True), array_arg(types.int64, 2, True), _I64, _I64, _I64,
    _F64, IN1, IN2, IN2, IN2, IN1, IN1, OUT2, array_arg(types.float64, 3, False),
    array_arg(types.float64, 3, False), OUT2, array_arg(types.int64, 1, True),
    array_arg(types.int64, 1, True), array_arg(types.int64, 2, True), IN2, _I64, _F64, OUT2,
    array_arg(types.int64, 1, False),
    array_arg(types.int8, 1, False), array_arg(types.int8, 1, False), _I64, _I64)
# _fit_group: the driver's arguments but n_groups and fn, then the group's first and last
# problem
_GROUP_SIG = types.void(*_SIG.args[:-2], _I64, _I64)


@njit(**JIT)
def _precisions(cov, K, D, covs, pc, logc, L):
    """pc and logc from the covariances (flat, compact); FALLBACK where one is not positive
    definite (GaussianHMM regularises it, with a warning)."""
    if _precision_factors(cov, K, D, covs, pc, L) != OK:
        return FALLBACK
    _log_dets(cov, K, D, pc, logc)
    return OK


@njit(**JIT)
def _log_emissions(cov, X, mu, pc, logc, le, d):
    """le[n, k] = log N(x_n | state k) for the problem's rows X."""
    K, D = mu.shape
    for n in range(X.shape[0]):
        for k in range(K):
            q = 0.0
            if cov == FULL or cov == TIED:
                o = k * D * D if cov == FULL else 0
                for i in range(D):
                    d[i] = X[n, i] - mu[k, i]
                for j in range(D):             # y = d U, U upper-triangular
                    a = 0.0
                    for i in range(j + 1):
                        a += d[i] * pc[o + i * D + j]
                    q += a * a
            elif cov == DIAG:
                for i in range(D):
                    a = (X[n, i] - mu[k, i]) * pc[k * D + i]
                    q += a * a
            else:
                for i in range(D):
                    a = (X[n, i] - mu[k, i]) * pc[k]
                    q += a * a
            le[n, k] = logc[k] - 0.5 * q


@njit(**JIT)
def _emission_stats(cov, X, post, mu, nk, s1, s2, d):
    """nk, s1, s2 (flat by type; spherical per feature (K, D), what the HMM's spherical
    M-step averages): the rows weighted by their posteriors, about mu; the mixture batch
    kernel's row statistics."""
    nk[:] = 0.0
    s1[:] = 0.0
    s2[:] = 0.0
    kind = DIAG if cov == SPHERICAL else cov
    for n in range(X.shape[0]):
        for k in range(mu.shape[0]):
            _add_row(kind, X, n, k, post[n, k], mu, nk, s1, s2, d)
    _mirror(cov, s2, mu.shape[1])


@njit(**JIT)
def _e_step(cov, letters, X, seq, sp, A, mu, pc, logc, w):
    """Scaled forward-backward of the problem's sequences (bounds seq, relative to X's
    first row) in order, then the emission statistics; returns the log-likelihood (not
    finite: FALLBACK, see the Cython kernel)."""
    le, post, At, R, start, nk, s1, s2, d, cs, pred, mch, bch, v, beta = w
    K = sp.shape[0]
    for i in range(K):
        for j in range(K):
            At[j, i] = A[i, j]
    rf = _rfloor(A)
    _log_emissions(cov, X, mu, pc, logc, le, d)
    start[:] = 0.0
    R[:] = 0.0
    ll = 0.0
    for q in range(seq.shape[0] - 1):
        lq = _fb_seq(le, seq[q], seq[q + 1] - seq[q], sp, A, rf, At, post, seq[q], True, cs,
                     pred, mch, bch, v, beta, start, R)
        if not (lq > -np.inf and lq < np.inf):
            return lq
        ll += lq
    if letters & (UPDATE_M | UPDATE_C):
        _emission_stats(cov, X, post, mu, nk, s1, s2, d)
    return ll


@njit(**JIT_EXACT_DIVISION)
def _m_step_transitions(letters, sp_prior, tp_prior, start, R, sp, A):
    """startprob and transmat from the counts with their Dirichlet priors (zeros stay
    zeros; a transmat row with no mass stays 0); FALLBACK when startprob has no mass."""
    K = sp.shape[0]
    if letters & UPDATE_S:
        tot = 0.0
        for i in range(K):
            v = sp_prior[i] - 1.0 + start[i]
            sp[i] = 0.0 if sp[i] == 0.0 else (v if v > 0.0 else 0.0)
            tot += sp[i]
        if not tot > 0.0:
            return FALLBACK
        for i in range(K):
            sp[i] = sp[i] / tot
    if letters & UPDATE_T:
        for i in range(K):
            tot = 0.0
            for j in range(K):
                v = tp_prior[i, j] - 1.0 + A[i, j] * R[i, j]
                A[i, j] = 0.0 if A[i, j] == 0.0 else (v if v > 0.0 else 0.0)
                tot += A[i, j]
            if tot == 0.0:
                tot = 1.0
            for j in range(K):
                A[i, j] = A[i, j] / tot
    return OK


@njit(**JIT)
def _scale_symmetric(c, o, D, den):
    """c[o:o + D*D] / den, then exactly symmetric: 0.5 (c + c^T)."""
    for i in range(D * D):
        c[o + i] = c[o + i] / den
    for i in range(D):
        for j in range(i):
            a = 0.5 * (c[o + i * D + j] + c[o + j * D + i])
            c[o + i * D + j] = a
            c[o + j * D + i] = a


@njit(**JIT)
def _m_step_emissions(cov, letters, m0, mw, cp, cw, nk, s1, s2, mu, covs, new_mu, d, y):
    """GaussianEmission.m_step (see the Cython kernel): updates mu and covs (flat)."""
    K, D = mu.shape
    for k in range(K):
        for i in range(D):
            new_mu[k, i] = mu[k, i]
            if letters & UPDATE_M:
                den = mw[k, i] + nk[k]
                if den > 0.0:
                    new_mu[k, i] = mu[k, i] + (mw[k, i] * (m0[k, i] - mu[k, i])
                                               + s1[k, i]) / den
    if letters & UPDATE_C:
        tot_n = 0.0
        if cov == TIED:
            for i in range(D * D):
                covs[i] = cp[i] + s2[i]
        for k in range(K):
            tot_n += nk[k]
            for i in range(D):
                d[i] = new_mu[k, i] - mu[k, i]      # shift of the centre
                y[i] = new_mu[k, i] - m0[k, i]      # new mean - prior mean
            if cov == DIAG or cov == SPHERICAL:
                acc = 0.0
                for i in range(D):
                    c_n = (mw[k, i] * y[i] * y[i]
                           + (s2[k * D + i] - (2.0 * d[i] * s1[k, i] - nk[k] * d[i] * d[i])))
                    c_d = cw[k * D + i] - 1.0
                    c_d = (c_d if c_d > 0.0 else 0.0) + nk[k]
                    c_d = c_d if c_d > COV_DENOM_FLOOR else COV_DENOM_FLOOR
                    if cov == DIAG:
                        covs[k * D + i] = (cp[k * D + i] + c_n) / c_d
                    else:
                        acc += (cp[k * D + i] + c_n) / c_d
                if cov == SPHERICAL:
                    covs[k] = acc / D
            else:
                o = k * D * D if cov == FULL else 0
                for i in range(D):
                    for j in range(D):
                        acc = (mw[k, 0] * y[i] * y[j]
                               - ((d[i] * s1[k, j] + s1[k, i] * d[j]) - nk[k] * (d[i] * d[j])))
                        if cov == FULL:
                            covs[o + i * D + j] = cp[o + i * D + j] + (s2[o + i * D + j] + acc)
                        else:
                            covs[i * D + j] += acc
                if cov == FULL:
                    den = cw[k] - D
                    dn = (den if den > 0.0 else 0.0) + nk[k]
                    if not dn > 0.0:
                        return FALLBACK
                    _scale_symmetric(covs, o, D, dn)
        if cov == TIED:
            den = cw[0] - D
            dn = (den if den > 0.0 else 0.0) + tot_n
            if not dn > 0.0:
                return FALLBACK
            _scale_symmetric(covs, 0, D, dn)
    mu[:, :] = new_mu
    return OK


@njit(**JIT)
def _inertia(X, c):
    """sum_n min_k d(x_n, c_k), the Cython kernel's _inertia (the same order)."""
    N = X.shape[0]
    total = 0.0
    for blk in range((N + BLOCK - 1) // BLOCK):
        part = 0.0
        for n in range(blk * BLOCK, min(N, (blk + 1) * BLOCK)):
            part += _nearest(X, n, c)[1]
        total += part
    return total


@njit(**JIT)
def _start_emissions(cov, T, min_covar, X, order, first, u, mu, covs, km):
    """The start's means and covariances (the Cython kernel's _start_emissions, step for
    step: GaussianEmission.init); km: the k-means scratch. Returns OK or FALLBACK."""
    xc, mean, centre, C, closest, block_pot, cand, pots, rows, labels, counts, sums, sw = km
    N, D = X.shape
    K = mu.shape[0]
    xc = xc[:N]
    for n in range(N):
        for i in range(D):
            xc[n, i] = X[order[n], i]
    mean[:] = 0.0
    for n in range(N):
        for i in range(D):
            mean[i] += xc[n, i]
    for i in range(D):
        mean[i] /= N
    sq = 0.0
    for n in range(N):
        for i in range(D):
            xc[n, i] -= mean[i]
            sq += xc[n, i] * xc[n, i]
    best = np.inf
    per_restart = (K - 1) * T
    for r in range(first.shape[0]):
        if _kmeans_plusplus(xc, sw, first[r], u[r * per_restart:(r + 1) * per_restart], T,
                            closest, block_pot, cand, pots, centre, rows) != OK:
            return FALLBACK
        if _lloyd(xc, sw, centre, LLOYD_TOL * (sq / (N * D)), labels, counts, sums) != OK:
            return FALLBACK
        inertia = _inertia(xc, centre)
        if inertia < best:
            best = inertia
            mu[:, :] = centre
    for k in range(K):
        for i in range(D):
            mu[k, i] += mean[i]
    C[:, :] = 0.0
    for n in range(N):
        for i in range(D):
            for j in range(i, D):
                C[i, j] += xc[n, i] * xc[n, j]
    a = 1.0 / (N - 1)                  # np.cov multiplies by it
    for i in range(D):
        for j in range(i, D):
            C[i, j] *= a
            C[j, i] = C[i, j]
        C[i, i] += min_covar
    if cov == FULL or cov == TIED:
        for k in range(K if cov == FULL else 1):
            for i in range(D):
                for j in range(D):
                    covs[k * D * D + i * D + j] = C[i, j]
    elif cov == DIAG:
        for k in range(K):
            for i in range(D):
                covs[k * D + i] = C[i, i]
    else:                              # the mean of the whole matrix, as hmmlearn
        a = 0.0
        for i in range(D):
            for j in range(D):
                a += C[i, j]
        for k in range(K):
            covs[k] = a / (D * D)
    return OK


@njit(**JIT)
def _fit_problem(cov, letters, max_iter, tol, priors, X, seq, sp, A, mu, covs, history, res,
                 w, m):
    """Baum-Welch from the given start (sp, A, mu, covs: updated in place) with hmmlearn's
    monitor rule; res = (n_iter, converged). Returns OK or FALLBACK."""
    sp_prior, tp_prior, m0, mw, cp, cw = priors
    pc, logc, L, new_mu, y = m
    K, D = mu.shape
    d = w[8]
    res[0] = 0
    res[1] = 0
    if _precisions(cov, K, D, covs, pc, logc, L) != OK:
        return FALLBACK
    for it in range(max_iter):
        ll = _e_step(cov, letters, X, seq, sp, A, mu, pc, logc, w)
        if not (ll > -np.inf and ll < np.inf):
            return FALLBACK
        if _m_step_transitions(letters, sp_prior, tp_prior, w[4], w[3], sp, A) != OK:
            return FALLBACK
        if letters & (UPDATE_M | UPDATE_C):
            if _m_step_emissions(cov, letters, m0, mw, cp, cw, w[5], w[6], w[7], mu, covs,
                                 new_mu, d, y) != OK:
                return FALLBACK
            if _precisions(cov, K, D, covs, pc, logc, L) != OK:
                return FALLBACK
        history[it] = ll
        res[0] = it + 1
        if it + 1 == max_iter or (it > 0 and history[it] - history[it - 1] < tol):
            res[1] = 1
            break
    return OK


@outlined(_GROUP_SIG)
def _fit_group(X, seq_offsets, runs, cov, letters, max_iter, tol, sp_prior, tp_prior, m0, mw,
               cp, cw, startprob, transmat, means, covars, order, draw_of, first, u, T,
               min_covar, history, n_iter, converged, status, lo, hi):
    """Problems lo..hi-1, in order, with scratch allocated once for the group."""
    K, D = means.shape[1], means.shape[2]
    S2 = K * D * D if cov == FULL else (D * D if cov == TIED else K * D)
    n_max = 0
    t_max = 0
    for p in range(lo, hi):
        q = runs[p, 0]
        n_max = max(n_max, seq_offsets[q + runs[p, 1]] - seq_offsets[q])
        for r in range(q, q + runs[p, 1]):
            t_max = max(t_max, seq_offsets[r + 1] - seq_offsets[r])
    # le, post, At, R, start, nk, s1, s2, d, then _fb_seq's cs, pred, mch, bch, v, beta
    w = (np.empty((n_max, K)), np.empty((n_max, K)), np.empty((K, K)), np.empty((K, K)),
         np.empty(K), np.empty(K), np.empty((K, D)), np.empty(S2), np.empty(D),
         np.empty(t_max), np.empty(K), np.empty(CHUNK), np.empty(CHUNK * K), np.empty(K),
         np.empty(K))
    # pc, logc, Cholesky scratch, new means, y
    m = (np.empty(covars.shape[1]), np.empty(K), np.zeros((D, D)), np.empty((K, D)),
         np.empty(D))
    # the start's xc, mean, centre, C, then k-means' closest, block_pot, cand, pots, rows,
    # labels, counts, sums, sample weights (none)
    km = (np.empty((n_max, D)), np.empty(D), np.empty((K, D)), np.empty((D, D)),
          np.empty(n_max), np.empty((n_max + BLOCK - 1) // BLOCK), np.empty(T, np.int64),
          np.empty(T), np.empty(K, np.int64), np.empty(n_max, np.int64), np.empty(K),
          np.empty((K, D)), np.empty(0))
    priors = (sp_prior, tp_prior, m0, mw, cp, cw)
    res = np.zeros(2, dtype=np.int64)
    for p in range(lo, hi):
        if status[p] != OK:
            continue
        q = runs[p, 0]
        r0, r1 = seq_offsets[q], seq_offsets[q + runs[p, 1]]
        if draw_of[p] >= 0 and _start_emissions(
                cov, T, min_covar, X[r0:r1], order[r0:r1], first[draw_of[p]],
                u[draw_of[p]], means[p], covars[p], km) != OK:
            status[p] = FALLBACK
            continue
        st = _fit_problem(cov, letters, max_iter, tol, priors, X[r0:r1],
                          seq_offsets[q:q + runs[p, 1] + 1] - r0, startprob[p], transmat[p],
                          means[p], covars[p], history[p], res, w, m)
        status[p] = st
        n_iter[p] = res[0]
        converged[p] = res[1]


@parallel_driver(_SIG, calls=[(_fit_group, [_GROUP_SIG])])
def _driver(X, seq_offsets, runs, cov, letters, max_iter, tol, sp_prior, tp_prior, m0, mw,
            cp, cw, startprob, transmat, means, covars, order, draw_of, first, u, T, min_covar,
            history, n_iter, converged, status, n_groups, fn):
    """The problems in n_groups contiguous groups, one group per thread at a time. fn: the
    address of _fit_group."""
    P = runs.shape[0]
    for g in prange(n_groups):
        _fit_group(fn, X, seq_offsets, runs, cov, letters, max_iter, tol, sp_prior, tp_prior,
                   m0, mw, cp, cw, startprob, transmat, means, covars, order, draw_of, first,
                   u, T, min_covar, history, n_iter, converged, status, g * P // n_groups,
                   (g + 1) * P // n_groups)


def fit_many_hmm(X, seq_offsets, runs, cov_code, letters, max_iter, tol, sp_prior, tp_prior,
                 means_prior, means_weight, covars_prior, covars_weight, startprob, transmat,
                 means, covars, order, draw_of, first, u, n_trials, min_covar, history, n_iter,
                 converged, status, n_threads):
    """The Cython kernel's contract (emfast._cython._hmm_batch.fit_many_hmm)."""
    P = runs.shape[0]
    if P == 0:
        return
    run(_driver, n_threads, X, seq_offsets, runs, cov_code, letters, max_iter, tol, sp_prior,
        tp_prior, means_prior, means_weight, covars_prior, covars_weight, startprob, transmat,
        means, covars, order, draw_of, first, u, n_trials, min_covar, history, n_iter,
        converged, status, min(P, MAX_GROUPS))
