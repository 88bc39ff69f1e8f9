"""Numba backend of the missing-value E-step (contract: ``missing_estep`` in
:mod:`emfast.kernels`; judge: ``tests/reference_missing.py``).

The same algorithm as the Cython kernel (see the docstring of ``emfast._cython._missing``):
the precision matrix's block Lambda_MM of each row's missing pattern is factored once per run
of rows with that pattern; d_M = -Lambda_MM^-1 Lambda_MO d_O fills the centred row; the
second moments of a block come from the filled rows scaled by sqrt(w r) (one matrix product
per block and component), the conditional covariances are added once per run. Blocks of
:func:`emfast._layout.missing_block_rows` rows go into contiguous groups whose number depends
on the shapes only; groups add into their own slots, summed in group order: bit-identical
results for any thread count.
"""

import math

import numpy as np
from numba import njit, prange
from numba.core import types

from emfast._layout import missing_block_rows, n_groups
from emfast._numba._launch import run
from emfast._numba._settings import IN1, IN2, JIT, OUT1, OUT2, X_TYPES, array_arg, parallel_driver

__all__ = ["missing_estep"]

LOG_2PI = math.log(2.0 * math.pi)

_IN3, _OUT3 = array_arg(types.float64, 3, True), array_arg(types.float64, 3, False)
_SIGS = [types.float64(x, IN1, IN1, IN2, _IN3, IN1, types.int64, types.int64, OUT1, OUT2,
                       _OUT3, OUT2, OUT1, IN2)
         for x in X_TYPES]


@njit(**JIT)
def _cholesky(a, m):
    """In place on a[:m, :m]: its lower triangle becomes L with L L' = a. False when a is not
    numerically positive definite."""
    for j in range(m):
        s = a[j, j]
        for l in range(j):
            s -= a[j, l] * a[j, l]
        if not s > 0.0:
            return False
        s = math.sqrt(s)
        a[j, j] = s
        for i in range(j + 1, m):
            t = a[i, j]
            for l in range(j):
                t -= a[i, l] * a[j, l]
            a[i, j] = t / s
    return True


@njit(**JIT)
def _solve_lower(L, m, y):
    """y[:m] <- L^-1 y[:m] (L lower triangular)."""
    for i in range(m):
        s = y[i]
        for j in range(i):
            s -= L[i, j] * y[j]
        y[i] = s / L[i, i]


@njit(**JIT)
def _solve_upper_t(L, m, y):
    """y[:m] <- L'^-1 y[:m] (L lower triangular)."""
    for i in range(m - 1, -1, -1):
        s = y[i]
        for j in range(i + 1, m):
            s -= L[j, i] * y[j]
        y[i] = s / L[i, i]


@njit(**JIT)
def _new_pattern(logw, prec, logdet, miss, mis, chol, logc, runw):
    """Factor Lambda_k,MM of the pattern ``miss`` for every k into chol[k]; logc[k] its
    log-density constant. Returns m, or -1 when a factor fails."""
    K, D = prec.shape[0], prec.shape[1]
    m = 0
    for i in range(D):
        if miss[i]:
            mis[m] = i
            m += 1
    for k in range(K):
        for i in range(m):
            for j in range(m):
                chol[k, i, j] = prec[k, mis[i], mis[j]]
        if not _cholesky(chol[k], m):
            return -1
        logdet_mm = 0.0
        for i in range(m):
            logdet_mm += 2.0 * math.log(chol[k, i, i])
        logc[k] = logw[k] - 0.5 * ((D - m) * LOG_2PI - logdet[k] + logdet_mm)
        runw[k] = 0.0
    return m


@njit(**JIT)
def _end_run(m, mis, chol, runw, s2, y):
    """s2[k][M, M] (lower triangle) += runw[k] * Lambda_k,MM^-1, column by column."""
    for k in range(chol.shape[0]):
        if runw[k] == 0.0 or m == 0:
            continue
        for j in range(m):
            for i in range(m):
                y[i] = 1.0 if i == j else 0.0
            _solve_lower(chol[k], m, y)
            _solve_upper_t(chol[k], m, y)
            for i in range(j, m):
                s2[k, mis[i], mis[j]] += runw[k] * y[i]
        runw[k] = 0.0


@njit(**JIT)
def _group(X, sw, logw, mu, prec, logdet, B, blk_lo, blk_hi, st, s1, s2, filled, logp, noise):
    """Blocks [blk_lo, blk_hi) in order; st = (loglik, nk...) of this group, s1 (K, D), s2
    (K, D, D, lower triangles) its slots. Returns False when a pattern's factor fails."""
    N, D = X.shape
    K = mu.shape[0]
    z = np.empty((K, B, D))
    t = np.empty(D)
    lp = np.empty(K)
    y = np.empty(D)
    miss = np.zeros(D, dtype=np.bool_)
    mis = np.empty(D, dtype=np.int64)
    chol = np.empty((K, D, D))
    logc = np.empty(K)
    runw = np.zeros(K)
    m = -1  # no pattern yet
    for blk in range(blk_lo, blk_hi):
        n0 = blk * B
        nb = min(B, N - n0)
        for k in range(K):
            for b in range(nb):
                for i in range(D):
                    v = X[n0 + b, i]
                    z[k, b, i] = 0.0 if math.isnan(v) else v - mu[k, i]
        for b in range(nb):
            n = n0 + b
            same = m >= 0
            for i in range(D):
                if math.isnan(X[n, i]) != miss[i]:
                    same = False
            if not same:
                if m >= 0:
                    _end_run(m, mis, chol, runw, s2, y)
                for i in range(D):
                    miss[i] = math.isnan(X[n, i])
                m = _new_pattern(logw, prec, logdet, miss, mis, chol, logc, runw)
                if m < 0:
                    return False
            for k in range(K):
                zb = z[k, b]
                t[:] = 0.0
                for j in range(D):
                    c = zb[j]
                    if c != 0.0:
                        for i in range(D):
                            t[i] += c * prec[k, j, i]
                q = 0.0
                for i in range(D):
                    q += zb[i] * t[i]
                for a in range(m):
                    y[a] = -t[mis[a]]
                _solve_lower(chol[k], m, y)
                _solve_upper_t(chol[k], m, y)
                for a in range(m):
                    q += y[a] * t[mis[a]]
                    zb[mis[a]] = y[a]
                lp[k] = logc[k] - 0.5 * q
            mx = -np.inf
            for k in range(K):
                mx = max(mx, lp[k])
            tot = 0.0
            for k in range(K):
                lp[k] = math.exp(lp[k] - mx)
                tot += lp[k]
            v = mx + math.log(tot)
            w = 1.0 if sw.shape[0] == 0 else sw[n]
            st[0] += w * v
            if logp.shape[0] > 0:
                logp[n] = v
            for k in range(K):
                r = lp[k] / tot
                lp[k] = r
                st[1 + k] += w * r
                runw[k] += w * r
                for i in range(D):
                    s1[k, i] += w * r * z[k, b, i]
            if filled.shape[0] > 0:
                for i in range(D):
                    filled[n, i] = X[n, i]
                for a in range(m):
                    i = mis[a]
                    s = 0.0
                    for k in range(K):
                        s += lp[k] * (mu[k, i] + z[k, b, i])
                    filled[n, i] = s
                if noise.shape[0] > 0 and m > 0:
                    for a in range(m):
                        y[a] = noise[n, mis[a]]
                    _solve_upper_t(chol[0], m, y)
                    for a in range(m):
                        filled[n, mis[a]] += y[a]
            for k in range(K):
                r = math.sqrt(w * lp[k])
                for i in range(D):
                    z[k, b, i] *= r
        for k in range(K):
            zk = z[k, :nb]
            s2[k] += zk.T @ zk
    if m >= 0:
        _end_run(m, mis, chol, runw, s2, y)
    return True


@parallel_driver(*_SIGS)
def _estep_kernel(X, sw, logw, mu, prec, logdet, B, G, nk, s1, s2, filled, logp, noise):
    N, D = X.shape
    K = mu.shape[0]
    n_blocks = (N + B - 1) // B
    st_g = np.zeros((G, 1 + K))
    s1_g = np.zeros((G, K, D))
    s2_g = np.zeros((G, K, D, D))
    ok_g = np.ones(G, dtype=np.bool_)
    for g in prange(G):
        ok_g[g] = _group(X, sw, logw, mu, prec, logdet, B, g * n_blocks // G,
                         (g + 1) * n_blocks // G, st_g[g], s1_g[g], s2_g[g], filled, logp,
                         noise)
    for g in range(G):
        if not ok_g[g]:
            return np.nan
    loglik = 0.0
    nk[:] = 0.0
    s1[:] = 0.0
    s2[:] = 0.0
    for g in range(G):
        loglik += st_g[g, 0]
        for k in range(K):
            nk[k] += st_g[g, 1 + k]
            for i in range(D):
                s1[k, i] += s1_g[g, k, i]
                for j in range(i + 1):
                    s2[k, i, j] += s2_g[g, k, i, j]
    for k in range(K):
        for i in range(D):
            for j in range(i):
                s2[k, j, i] = s2[k, i, j]
    return loglik


def missing_estep(X, sample_weight, log_weights, means, precisions, log_det, nk, s1, s2,
                  filled, logp, noise, n_threads):
    """Positional twin of ``emfast._cython._missing.missing_estep`` (same arguments, same
    outputs); returns sum_n w_n log p(x_O,n)."""
    N, D = X.shape
    K = means.shape[0]
    B = missing_block_rows(D, K)
    G = n_groups((N + B - 1) // B, 1 + K + K * D + K * D * D)
    if N == 0:
        nk[:] = 0.0
        s1[:] = 0.0
        s2[:] = 0.0
        return 0.0
    ll = run(_estep_kernel, n_threads, X, sample_weight, log_weights, means, precisions,
             log_det, B, G, nk, s1, s2, filled, logp, noise)
    if math.isnan(ll):
        raise np.linalg.LinAlgError(
            "a block of a precision matrix is not numerically positive definite")
    return ll

