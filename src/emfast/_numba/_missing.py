"""Numba backend of the missing-value E-step (contract: ``missing_estep`` in
:mod:`emfast.kernels`; judge: ``tests/reference_missing.py``).

The same algorithm as the Cython kernel (see the docstring of ``emfast._cython._missing``):
per run of rows with one missing pattern, Lambda_MM = L D L', its inverse C (the conditional
covariance) and log det; per block, Z Lambda_k by one matrix product; per row, d_M = -C b
fills the centred row; the second moments of a block come from the filled rows scaled by
sqrt(w r), and C is added once per run. Blocks of :func:`emfast._layout.missing_block_rows`
rows go into contiguous groups whose number depends on the shapes only; groups add into
their own slots, summed in group order: bit-identical results for any thread count.
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
_PAD = 8

_IN3, _OUT3 = array_arg(types.float64, 3, True), array_arg(types.float64, 3, False)
_SIGS = [types.float64(x, IN1, IN1, IN2, _IN3, IN1, types.int64, types.int64, OUT1, OUT2,
                       _OUT3, OUT2, OUT1, OUT2, IN2)
         for x in X_TYPES]


@njit(**JIT)
def _ldl_inverse(a, m, T, dinv, C, v):
    """From the SPD block a[:m, :m] (destroyed): a = L D L' (L unit lower), T = L^-1,
    dinv = 1 / diag(D), C = a^-1 = T' diag(dinv) T. Returns log det a, or NaN when a is not
    numerically positive definite."""
    acc, prod = 0.0, 1.0
    for j in range(m):
        d = a[j, j]
        for l in range(j):
            v[l] = a[j, l] * a[l, l]
            d -= a[j, l] * v[l]
        if not d > 0.0:
            return np.nan
        a[j, j] = d
        dinv[j] = 1.0 / d
        for i in range(j + 1, m):
            s = a[i, j]
            for l in range(j):
                s -= a[i, l] * v[l]
            a[i, j] = s * dinv[j]
        prod *= d  # one log per pattern, not one per pivot
        if prod > 1e150 or prod < 1e-150:
            acc += math.log(prod)
            prod = 1.0
    for j in range(m):
        for i in range(j):
            T[i, j] = 0.0
        T[j, j] = 1.0
        for i in range(j + 1, m):
            s = 0.0
            for l in range(j, i):
                s += a[i, l] * T[l, j]
            T[i, j] = -s
    for i in range(m):
        for j in range(i + 1):
            C[i, j] = 0.0
    for l in range(m):
        for i in range(l + 1):
            c = dinv[l] * T[l, i]
            for j in range(i + 1):
                C[i, j] += c * T[l, j]
    for i in range(m):
        for j in range(i):
            C[j, i] = C[i, j]
    return acc + math.log(prod)


@njit(**JIT)
def _new_pattern(logw, prec, logdet, miss, mis, linv, dinv, cond, logc, runw, a, v):
    """The per-pattern quantities of every component for the pattern ``miss``: L^-1 and
    1 / diag(D) of Lambda_k,MM = L D L', its inverse (the conditional covariance), the
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
                a[i, j] = prec[k, mis[i], mis[j]]
        logdet_mm = _ldl_inverse(a, m, linv[k], dinv[k], cond[k], v)
        if math.isnan(logdet_mm):
            return -1
        logc[k] = logw[k] - 0.5 * ((D - m) * LOG_2PI - logdet[k] + logdet_mm)
        runw[k] = 0.0
    return m


@njit(**JIT)
def _end_run(m, mis, cond, runw, s2):
    """s2[k][M, M] (lower triangle) += runw[k] * Lambda_k,MM^-1."""
    for k in range(cond.shape[0]):
        for i in range(m):
            for j in range(i + 1):
                s2[k, mis[i], mis[j]] += runw[k] * cond[k, i, j]
        runw[k] = 0.0


@njit(**JIT)
def _group(X, sw, logw, mu, prec, logdet, B, blk_lo, blk_hi, st, s1, s2, filled, logp, resp,
           noise):
    """Blocks [blk_lo, blk_hi) in order; st = (loglik, nk...) of this group, s1 (K, D), s2
    (K, D, D, lower triangles) its slots. Returns False when a pattern's factor fails."""
    N, D = X.shape
    K = mu.shape[0]
    z = np.empty((K, B, D))
    t = np.empty((K, B, D))
    lp = np.empty(K)
    miss = np.zeros(D, dtype=np.bool_)
    mis = np.empty(D, dtype=np.int64)
    linv = np.empty((K, D, D))
    dinv = np.empty((K, D))
    cond = np.empty((K, D, D))
    a = np.empty((D, D))
    v = np.empty(D)
    logc = np.empty(K)
    runw = np.zeros(K)
    m = -1  # no pattern yet
    for blk in range(blk_lo, blk_hi):
        n0 = blk * B
        nb = min(B, N - n0)
        for k in range(K):
            for b in range(nb):
                for i in range(D):
                    x = X[n0 + b, i]
                    z[k, b, i] = 0.0 if math.isnan(x) else x - mu[k, i]
            # row b of Z_k Lambda_k: Lambda_OO d_O at O and b = Lambda_MO d_O at M
            np.dot(z[k, :nb], prec[k], t[k, :nb])
        for b in range(nb):
            n = n0 + b
            same = m >= 0
            for i in range(D):
                if math.isnan(X[n, i]) != miss[i]:
                    same = False
            if not same:
                if m >= 0:
                    _end_run(m, mis, cond, runw, s2)
                for i in range(D):
                    miss[i] = math.isnan(X[n, i])
                m = _new_pattern(logw, prec, logdet, miss, mis, linv, dinv, cond, logc, runw,
                                 a, v)
                if m < 0:
                    return False
            for k in range(K):
                q = 0.0
                for i in range(D):
                    q += z[k, b, i] * t[k, b, i]
                for r in range(m):  # d_M = -C b, written into z's missing places
                    s = 0.0
                    for c in range(m):
                        s -= cond[k, r, c] * t[k, b, mis[c]]
                    z[k, b, mis[r]] = s
                    q += s * t[k, b, mis[r]]
                lp[k] = logc[k] - 0.5 * q
            if K == 1:  # one component: its responsibility is 1
                val = lp[0]
                lp[0] = 1.0
            else:
                mx = -np.inf
                for k in range(K):
                    mx = max(mx, lp[k])
                tot = 0.0
                for k in range(K):
                    lp[k] = math.exp(lp[k] - mx)
                    tot += lp[k]
                val = mx + math.log(tot)
                for k in range(K):
                    lp[k] /= tot
            w = 1.0 if sw.shape[0] == 0 else sw[n]
            st[0] += w * val
            if logp.shape[0] > 0:
                logp[n] = val
            if resp.shape[0] > 0:
                for k in range(K):
                    resp[n, k] = lp[k]
            for k in range(K):
                r = w * lp[k]
                st[1 + k] += r
                runw[k] += r
                for i in range(D):
                    s1[k, i] += r * z[k, b, i]
            if filled.shape[0] > 0:
                for i in range(D):
                    filled[n, i] = X[n, i]
                for r in range(m):
                    i = mis[r]
                    s = 0.0
                    for k in range(K):
                        s += lp[k] * (mu[k, i] + z[k, b, i])
                    filled[n, i] = s
                if noise.shape[0] > 0:  # (L^-1)' D^-1/2 z_M: covariance Lambda_MM^-1
                    for r in range(m):
                        s = 0.0
                        for c in range(r, m):
                            s += linv[0, c, r] * math.sqrt(dinv[0, c]) * noise[n, mis[c]]
                        filled[n, mis[r]] += s
            for k in range(K):
                r = math.sqrt(w * lp[k])
                for i in range(D):
                    z[k, b, i] *= r
        for k in range(K):
            zk = z[k, :nb]
            s2[k] += zk.T @ zk
    if m >= 0:
        _end_run(m, mis, cond, runw, s2)
    return True


@parallel_driver(*_SIGS)
def _estep_kernel(X, sw, logw, mu, prec, logdet, B, G, nk, s1, s2, filled, logp, resp, noise):
    N, D = X.shape
    K = mu.shape[0]
    n_blocks = (N + B - 1) // B
    # a cache line (8 doubles) after each group's slots: adjacent groups run at once on
    # different threads, and each writes its slots at every row
    st_g = np.zeros((G, 1 + K + _PAD))
    s1_g = np.zeros((G, K * D + _PAD))
    s2_g = np.zeros((G, K * D * D + _PAD))
    ok_g = np.ones(G, dtype=np.bool_)
    for g in prange(G):
        ok_g[g] = _group(X, sw, logw, mu, prec, logdet, B, g * n_blocks // G,
                         (g + 1) * n_blocks // G, st_g[g], s1_g[g, :K * D].reshape((K, D)),
                         s2_g[g, :K * D * D].reshape((K, D, D)), filled, logp, resp, noise)
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
                s1[k, i] += s1_g[g, k * D + i]
                for j in range(i + 1):
                    s2[k, i, j] += s2_g[g, (k * D + i) * D + j]
    for k in range(K):
        for i in range(D):
            for j in range(i):
                s2[k, j, i] = s2[k, i, j]
    return loglik


def missing_estep(X, sample_weight, log_weights, means, precisions, log_det, nk, s1, s2,
                  filled, logp, resp, noise, n_threads):
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
             log_det, B, G, nk, s1, s2, filled, logp, resp, noise)
    if math.isnan(ll):
        raise np.linalg.LinAlgError(
            "a block of a precision matrix is not numerically positive definite")
    return ll

