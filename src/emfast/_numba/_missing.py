"""Numba backend of the missing-value E-step (contract: ``missing_estep`` in
:mod:`emfast.kernels`; judge: ``tests/reference_missing.py``).

The same algorithm as the Cython kernel (see the docstring of ``emfast._cython._missing``):
per run of rows with one missing pattern, Lambda_MM = L D L', its inverse C (the conditional
covariance) and log det; per block, Z Lambda_k by one matrix product; per row, d_M = -C b
fills the centred row; the second moments of a block come from the filled rows scaled by
sqrt(w r), and C is added once per run. Runs of at least MISSING_RUN_MIN rows of one pattern take
the subspace path instead: the complete-data E-step in the observed coordinates
(:mod:`emfast._numba._gaussian`'s block functions), its sums mapped to all coordinates once
per run. Blocks of :func:`emfast._layout.missing_block_rows` rows go into contiguous groups
whose number depends on the shapes only (a group cuts its rows into long runs and blocks of
at most that many rows between them); groups add into their own slots, summed in group
order: bit-identical results for any thread count.
"""

import math

import numpy as np
from numba import njit, prange
from numba.core import types

from emfast._layout import MISSING_RUN_MIN, missing_block_rows, n_groups
from emfast._numba._gaussian import (BLOCK, FULL, _exp_normalise_block, _log_pos,
                                     _log_prob_block, _stats_block)
from emfast._numba._launch import run
from emfast._numba._settings import (IN1, IN2, JIT, OUT1, OUT2, X_TYPES, array_arg, as_output,
                                     outlined, parallel_driver)

__all__ = ["missing_estep"]

LOG_2PI = math.log(2.0 * math.pi)
_PAD = 8

_IN3, _OUT3 = array_arg(types.float64, 3, True), array_arg(types.float64, 3, False)
# The driver's last argument is the address of its outlined group function (see
# _settings.outlined and parallel_driver), whose signatures follow the driver's.
_I = types.int64
_SIGS = [types.float64(x, IN1, IN1, IN2, _IN3, IN1, _I, _I, _I, OUT1, OUT2, _OUT3, OUT2, OUT1,
                       OUT2, IN2, _I)
         for x in X_TYPES]
_GROUP_SIGS = [types.boolean(x, IN1, IN1, IN2, _IN3, IN1, _I, _I, _I, _I, OUT1, OUT2, _OUT3,
                             OUT2, OUT1, OUT2, IN2)
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


# --------------------------------------------------------------------------------------------
# The subspace path (see the Cython kernel's docstring and _missing_subspace.h, which these
# functions port): a long run of one pattern is the complete-data E-step in its observed
# coordinates (emfast._numba._gaussian's block functions), its sums mapped to all D
# coordinates once per run. Matrices are flat, row-major, with their own sizes as strides.


@njit(**JIT)
def _subspace(lam, obs, o, mis, m, linv, C, R, U, tmp):
    """One component's model of the pattern from its precision lam (D, D): linv = L^-1 with
    L L' = Lambda_MM (m, m); C = Lambda_MM^-1 (m, m); R = -C Lambda_MO (m, o); U (o, o) upper
    triangular with U U' = Lambda_OO + Lambda_OM R = Sigma_OO^-1. Returns log det of that, or
    NaN when a factor fails. tmp: D * D scratch."""
    L = tmp
    for j in range(m):  # Cholesky: Lambda_MM = L L'
        for i in range(j, m):
            s = lam[mis[i], mis[j]]
            for l in range(j):
                s -= L[i * m + l] * L[j * m + l]
            if i == j:
                if not s > 0.0:
                    return np.nan
                s = math.sqrt(s)
            else:
                s /= L[j * m + j]
            L[i * m + j] = s
    for j in range(m):  # linv = L^-1, column by column
        for i in range(j):
            linv[i * m + j] = 0.0
        linv[j * m + j] = 1.0 / L[j * m + j]
        for i in range(j + 1, m):
            s = 0.0
            for l in range(j, i):
                s += L[i * m + l] * linv[l * m + j]
            linv[i * m + j] = -s / L[i * m + i]
    for a in range(m):  # C = linv' linv
        for b in range(a + 1):
            s = 0.0
            for l in range(a, m):
                s += linv[l * m + a] * linv[l * m + b]
            C[a * m + b] = s
            C[b * m + a] = s
    for a in range(m):  # R = -C Lambda_MO
        for p in range(o):
            s = 0.0
            for c in range(m):
                s -= C[a * m + c] * lam[mis[c], obs[p]]
            R[a * o + p] = s
    P = tmp  # lower triangle of Lambda_OO + Lambda_OM R
    for p in range(o):
        for q in range(p + 1):
            s = lam[obs[p], obs[q]]
            for a in range(m):
                s += lam[obs[p], mis[a]] * R[a * o + q]
            P[p * o + q] = s
    # P = U U' with U upper: Cholesky from the last coordinate backwards
    acc, prod = 0.0, 1.0
    for j in range(o - 1, -1, -1):
        for i in range(j + 1, o):
            U[i * o + j] = 0.0
        for i in range(j, -1, -1):
            s = P[j * o + i]
            for l in range(j + 1, o):
                s -= U[i * o + l] * U[j * o + l]
            if i == j:
                if not s > 0.0:
                    return np.nan
                prod *= s  # one log per component and run, not one per pivot
                if prod > 1e150 or prod < 1e-150:
                    acc += math.log(prod)
                    prod = 1.0
                s = math.sqrt(s)
            else:
                s /= U[j * o + j]
            U[i * o + j] = s
    return acc + math.log(prod)


@njit(**JIT)
def _scatter(obs, o, mis, m, R, C, nk, t1, t2, V, s1, s2):
    """s1 (D,) += A t1, s2 (D, D; lower triangle) += A t2 A' + nk C with A = [I_O; R]: one
    component's run sums at O (t1 (o,), t2 (o, o) lower, its upper overwritten) mapped to
    all coordinates. V: m * o scratch."""
    for p in range(o):
        s1[obs[p]] += t1[p]
        for q in range(p + 1):
            s2[obs[p], obs[q]] += t2[p * o + q]
            t2[q * o + p] = t2[p * o + q]
    for a in range(m):
        s = 0.0
        for p in range(o):
            s += R[a * o + p] * t1[p]
        s1[mis[a]] += s
        for p in range(o):  # V = R t2: the (M, O) block
            v = 0.0
            for q in range(o):
                v += R[a * o + q] * t2[q * o + p]
            V[a * o + p] = v
            i, j = mis[a], obs[p]
            if i >= j:
                s2[i, j] += v
            else:
                s2[j, i] += v
        for b in range(a + 1):  # V R' + nk C: the (M, M) block
            v = nk * C[a * m + b]
            for p in range(o):
                v += V[a * o + p] * R[b * o + p]
            s2[mis[a], mis[b]] += v


@njit(**JIT)
def _subspace_scratch(D, K):
    """The subspace path's scratch, once per group: obs, mis, the means at O, logc, U, R, C,
    linv, tmp, the run sums (nk, t1, t2), the block Xt and its buffers."""
    return (np.empty(D, dtype=np.int64), np.empty(D, dtype=np.int64), np.empty(K * D),
            np.empty(K), np.empty(K * D * D), np.empty(K * D * D), np.empty(K * D * D),
            np.empty(K * D * D), np.empty(D * D), np.empty(K + K * D + K * D * D),
            np.empty(D * BLOCK), np.empty((K, BLOCK)), np.empty(D * BLOCK), np.empty(D * BLOCK),
            np.empty((4, BLOCK)), np.empty(BLOCK), np.empty(BLOCK), np.empty(BLOCK))


@njit(**JIT)
def _run(X, sw, logw, mu, prec, n0, n1, st, s1, s2, filled, logp, resp, noise, sc):
    """Rows [n0, n1), all of one pattern with something observed, by the subspace path into
    this group's st, s1, s2 (as _group). Returns False when a factor fails."""
    D = X.shape[1]
    K = mu.shape[0]
    obs, mis, mus, logc, U, R, C, linv, tmp, t, xb, lp, db, rb, y, val, ssum, scale = sc
    m = 0
    o = 0
    for i in range(D):
        if math.isnan(X[n0, i]):
            mis[m] = i
            m += 1
        else:
            obs[o] = i
            o += 1
    for k in range(K):
        ld = _subspace(prec[k], obs, o, mis, m, linv[k * m * m:], C[k * m * m:],
                       R[k * m * o:], U[k * o * o:], tmp)
        if math.isnan(ld):
            return False
        logc[k] = logw[k] - 0.5 * (o * LOG_2PI - ld)
        for p in range(o):
            mus[k * o + p] = mu[k, obs[p]]
    mu_o = mus[:K * o].reshape((K, o))
    pc = U[:K * o * o].reshape((K * o, o))
    t[:K + K * o + K * o * o] = 0.0
    nk = t[:K]
    t1 = t[K:K + K * o].reshape((K, o))
    t2 = t[K + K * o:K + K * o + K * o * o]
    Xt = xb[:o * BLOCK].reshape((o, BLOCK))
    diff = db[:o * BLOCK].reshape((o, BLOCK))
    rd = rb[:o * BLOCK].reshape((o, BLOCK))
    has_w = sw.shape[0] > 0
    for r0 in range(n0, n1, BLOCK):
        nb = min(BLOCK, n1 - r0)
        for b in range(nb):
            for p in range(o):
                Xt[p, b] = X[r0 + b, obs[p]]
        _log_prob_block(Xt, nb, logc, mu_o, pc, FULL, lp, diff, y)
        _exp_normalise_block(lp, nb, val, ssum)
        for b in range(nb):  # val: log p(x_O); scale: w / sum (see _estep_group)
            val[b] += _log_pos(ssum[b])
            scale[b] = (sw[r0 + b] if has_w else 1.0) / ssum[b]
        for b in range(nb):
            n = r0 + b
            if logp.shape[0] > 0:
                logp[n] = val[b]
            if resp.shape[0] > 0:
                for k in range(K):
                    resp[n, k] = lp[k, b] / ssum[b]
            if filled.shape[0] > 0:
                _fill_run_row(X, mu, mus, R, linv, obs, o, mis, m, lp, ssum, Xt, b, n,
                              filled, noise)
            val[b] *= sw[n] if has_w else 1.0
        ll = 0.0
        for b in range(nb):  # a pure reduction (see _estep_group)
            ll += val[b]
        st[0] += ll
        for k in range(K):  # exp(lp - max) -> w * resp, in place
            for b in range(nb):
                lp[k, b] *= scale[b]
        _stats_block(Xt, nb, mu_o, FULL, lp, nk, t1, t2.reshape((K * o, o)), diff, rd)
    for k in range(K):
        st[1 + k] += nk[k]
        _scatter(obs, o, mis, m, R[k * m * o:], C[k * m * m:], nk[k], t1[k],
                 t2[k * o * o:], tmp, s1[k], s2[k])
    return True


@njit(**JIT)
def _fill_run_row(X, mu, mus, R, linv, obs, o, mis, m, lp, ssum, Xt, b, n, filled, noise):
    """filled[n]: row n with its missing coordinates from sum_k r_k (mu_k,M + R_k d_k,O), or
    (noise, K = 1) a draw mu_M + R d_O + L^-T z_M; lp[:, b] / ssum[b] its responsibilities."""
    D = X.shape[1]
    for i in range(D):
        filled[n, i] = X[n, i]
    for a in range(m):
        filled[n, mis[a]] = 0.0
    for k in range(mu.shape[0]):
        r = lp[k, b] / ssum[b]
        for a in range(m):
            v = mu[k, mis[a]]
            for p in range(o):
                v += R[(k * m + a) * o + p] * (Xt[p, b] - mus[k * o + p])
            filled[n, mis[a]] += r * v
    if noise.shape[0] > 0:
        for a in range(m):
            v = 0.0
            for c in range(a, m):
                v += linv[c * m + a] * noise[n, mis[c]]
            filled[n, mis[a]] += v


@njit(**JIT)
def _same_pattern(X, a, b):
    """Whether rows a and b of X miss the same coordinates (b = -1: whether row a misses
    every coordinate)."""
    for i in range(X.shape[1]):
        if math.isnan(X[a, i]) != (b < 0 or math.isnan(X[b, i])):
            return False
    return True


@njit(**JIT)
def _segments(X, lo, hi, B, run_min):
    """Rows [lo, hi) cut in order into segments (first row, rows, 1 for a run of at least
    run_min rows of one pattern with something observed: the subspace path; 0 for at most
    B rows between such runs: the per-row path)."""
    seg = np.empty((hi - lo, 3), dtype=np.int64)
    ns = 0
    start = lo
    n = lo
    while n < hi:
        e = n + 1
        while e < hi and _same_pattern(X, e, n):
            e += 1
        if e - n >= run_min and not _same_pattern(X, n, -1):
            for c in range(start, n, B):
                seg[ns, 0], seg[ns, 1], seg[ns, 2] = c, min(B, n - c), 0
                ns += 1
            seg[ns, 0], seg[ns, 1], seg[ns, 2] = n, e - n, 1
            ns += 1
            start = e
        n = e
    for c in range(start, hi, B):
        seg[ns, 0], seg[ns, 1], seg[ns, 2] = c, min(B, hi - c), 0
        ns += 1
    return seg[:ns]


@outlined(*_GROUP_SIGS)
def _group(X, sw, logw, mu, prec, logdet, B, run_min, blk_lo, blk_hi, st, s1, s2, filled,
           logp, resp, noise):
    """Blocks [blk_lo, blk_hi) in order; st = (loglik, nk...) of this group, s1 (K, D), s2
    (K, D, D, lower triangles) its slots: runs of at least run_min rows of one pattern by the
    subspace path (_run), the rows between them by the per-row path below, in blocks of at
    most B rows. Returns False when a pattern's factor fails."""
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
    sc = _subspace_scratch(D, K)
    segs = _segments(X, blk_lo * B, min(blk_hi * B, N), B, run_min)
    for c in range(segs.shape[0]):
        n0, nb = segs[c, 0], segs[c, 1]
        if segs[c, 2]:  # a long run of one pattern
            if not _run(X, sw, logw, mu, prec, n0, n0 + nb, st, s1, s2, filled, logp, resp,
                        noise, sc):
                return False
            continue
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


@parallel_driver(*_SIGS, calls=[(_group, _GROUP_SIGS)])
def _estep_kernel(X, sw, logw, mu, prec, logdet, B, run_min, G, nk, s1, s2, filled, logp, resp,
                  noise, group_fn):
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
        ok_g[g] = _group(group_fn, X, sw, logw, mu, prec, logdet, B, run_min,
                         g * n_blocks // G, (g + 1) * n_blocks // G, as_output(st_g[g]),
                         as_output(s1_g[g, :K * D].reshape((K, D))),
                         as_output(s2_g[g, :K * D * D].reshape((K, D, D))), filled, logp, resp,
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
             log_det, B, MISSING_RUN_MIN, G, nk, s1, s2, filled, logp, resp, noise)
    if math.isnan(ll):
        raise np.linalg.LinAlgError(
            "a block of a precision matrix is not numerically positive definite")
    return ll

