"""Numba kernel of ``emfast.fit_many``: the whole EM of many small Gaussian mixtures in one
call, one problem per thread at a time.

The contract is the Cython kernel's (``emfast._cython._batch.fit_many``: arguments, layouts,
status codes) and so is the arithmetic, step for step (see that module's docstring);
``tests/reference_batch.py`` and ``emfast.GaussianMixture`` are the judges. The problems are
split into a fixed number of contiguous groups (a function of the number of problems only);
each group allocates its scratch once and fits its problems in order. Problems are
independent, so results do not depend on the thread count.
"""

import math

import numpy as np
from numba import njit, prange, types

from emfast._numba._gaussian import (BLOCK, DIAG, FULL, TIED, _exp_normalise_block,
                                     _mirror_lower)
from emfast._numba._launch import run
from emfast._numba._settings import (IN1, IN2, JIT, OUT1, OUT2, array_arg, outlined,
                                     parallel_driver)
from emfast.mixture._gaussian import EMPTY_FRACTION, NK_EPS

__all__ = ["fit_many"]

# BLOCK (256 rows) is also the k-means kernels' block, their summation order
LLOYD_MAX_ITER = 300         # emfast.mixture._kmeans.kmeans defaults (scikit-learn's)
LLOYD_TOL = 1e-4
LOG_GROUP = 16               # E-step: rows whose log-sum-exp share one log (_block_resp)
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
KMEANS, PLUSPLUS, RANDOM, FROM_DATA = 0, 1, 2, 3
OK, FALLBACK = 0, 1
GIVEN_WEIGHTS, GIVEN_MEANS, GIVEN_PRECISIONS, GIVEN_ALL = 1, 2, 4, 7   # emfast.batch.GIVEN_BITS
MAX_GROUPS = 256             # groups of problems (scratch is allocated once per group)

_I64 = types.int64
_F64 = types.float64
_IN_I1 = array_arg(types.int64, 1, True)
_SIG = types.void(
    IN2, _IN_I1, IN1, IN1, _I64, _I64, _F64, _F64, _I64, _I64, _I64, _I64, _IN_I1,
    array_arg(types.int64, 3, True), array_arg(types.float64, 3, True), IN1, _IN_I1,
    _I64, IN2, array_arg(types.float64, 3, True), IN2, IN2,
    OUT2, array_arg(types.float64, 3, False), OUT2, OUT2, OUT1, OUT2,
    array_arg(types.int64, 1, False), array_arg(types.int8, 1, False),
    array_arg(types.int8, 1, False), _I64, _I64)
# _fit_group: the driver's arguments but n_groups and fn, then the group's first and last
# problem
_GROUP_SIG = types.void(*_SIG.args[:-2], _I64, _I64)


# Rows are passed as (array, index), never as views X[n]: a view in a loop over the rows
# costs two reference-count updates (atomic) per row, ten times the arithmetic at D = 2.
# Sample weights: sw (N,), or (0,) for all 1 (x * 1.0 is exact: the unweighted fit is bit
# for bit what it was before weights).
@njit(**JIT)
def _wt(sw, n):
    return 1.0 if sw.shape[0] == 0 else sw[n]


@njit(**JIT)
def _sqdist(X, n, C, k):
    """||X[n] - C[k]||^2, in feature order."""
    s = 0.0
    for i in range(X.shape[1]):
        t = X[n, i] - C[k, i]
        s += t * t
    return s


@njit(**JIT)
def _nearest(X, n, C):
    """(index of the row of C nearest X[n], ties: the lowest; its squared distance)."""
    arg, m = 0, _sqdist(X, n, C, 0)
    for k in range(1, C.shape[0]):
        d = _sqdist(X, n, C, k)
        if d < m:
            m, arg = d, k
    return arg, m


# ----------------------------------------------------------------------------- k-means
@njit(**JIT)
def _fold_centre(X, sw, C, c, closest, block_pot):
    """closest = min(closest, d(x, C[c])); block_pot: per block, its sum of w closest in row
    order."""
    N = X.shape[0]
    for blk in range((N + BLOCK - 1) // BLOCK):
        s = 0.0
        for n in range(blk * BLOCK, min(N, (blk + 1) * BLOCK)):
            d = _sqdist(X, n, C, c)
            if d < closest[n]:
                closest[n] = d
            s += _wt(sw, n) * closest[n]
        block_pot[blk] = s


@njit(**JIT)
def _potential(X, sw, c, closest):
    """sum_n w_n min(closest_n, d(x_n, X[c])): per block in row order, the blocks in order."""
    N = X.shape[0]
    total = 0.0
    for blk in range((N + BLOCK - 1) // BLOCK):
        part = 0.0
        for n in range(blk * BLOCK, min(N, (blk + 1) * BLOCK)):
            d = _sqdist(X, n, X, c)
            part += _wt(sw, n) * (d if d < closest[n] else closest[n])
        total += part
    return total


@njit(**JIT)
def _draw_row(value, closest, sw, block_pot, N):
    """The row where the cumulative potential sum_n w_n closest_n first reaches value."""
    n_blocks = (N + BLOCK - 1) // BLOCK
    blk, base, run_ = 0, 0.0, block_pot[0]
    while blk < n_blocks - 1 and run_ < value:
        base = run_
        blk += 1
        run_ += block_pot[blk]
    lo = blk * BLOCK
    m = min(BLOCK, N - lo)
    run_, found = 0.0, 0
    for j in range(m):
        run_ += _wt(sw, lo + j) * closest[lo + j]
        if base + run_ < value:
            found += 1
    return lo + min(found, m - 1)


@njit(**JIT)
def _kmeans_plusplus(X, sw, first, u, T, closest, block_pot, cand, pots, centres, rows):
    """Greedy weighted k-means++; the rows chosen into rows (K,)."""
    N, K = X.shape[0], centres.shape[0]
    closest[:N] = np.inf
    rows[0] = first
    centres[0] = X[first]
    _fold_centre(X, sw, centres, 0, closest, block_pot)
    for c in range(1, K):
        pot = 0.0
        for blk in range((N + BLOCK - 1) // BLOCK):
            pot += block_pot[blk]
        if not pot > 0.0:
            return FALLBACK
        for t in range(T):
            cand[t] = _draw_row(u[(c - 1) * T + t] * pot, closest, sw, block_pot, N)
            pots[t] = _potential(X, sw, cand[t], closest)
        best = 0
        for t in range(1, T):
            if pots[t] < pots[best]:
                best = t
        rows[c] = cand[best]
        centres[c] = X[cand[best]]
        _fold_centre(X, sw, centres, c, closest, block_pot)
    return OK


@njit(**JIT)
def _lloyd(X, sw, c, abs_tol, labels, counts, sums):
    """Weighted Lloyd from the centres c (moved in place); FALLBACK when a pass leaves a
    cluster of weight 0."""
    N, K, D = X.shape[0], c.shape[0], c.shape[1]
    labels[:N] = -1
    for _ in range(LLOYD_MAX_ITER):
        counts[:] = 0.0
        sums[:] = 0.0
        changed = 0
        for n in range(N):
            k, _d = _nearest(X, n, c)
            if labels[n] != k:
                changed += 1
            labels[n] = k
            w = _wt(sw, n)
            counts[k] += w
            for i in range(D):
                sums[k, i] += w * X[n, i]
        if changed == 0:
            return OK
        for k in range(K):
            if not counts[k] > 0.0:
                return FALLBACK
        shift = 0.0
        for k in range(K):
            for i in range(D):
                new = sums[k, i] / counts[k]
                d = new - c[k, i]
                shift += d * d
                c[k, i] = new
        if shift <= abs_tol:
            return OK
    return OK


# ----------------------------------------------------------------------------- statistics
# nk (K,), s1 (K, D), s2 flat (S,) by type, about centre (K, D); full and tied accumulate
# the lower triangle, element (i, j) as the Cython kernel's (j, i) (_mirror_lower).
@njit(**JIT)
def _add_row(cov, X, n, k, r, centre, nk, s1, s2, d):
    """Row X[n] with weight r into component k's statistics."""
    D = X.shape[1]
    nk[k] += r
    for i in range(D):
        d[i] = X[n, i] - centre[k, i]
        s1[k, i] += r * d[i]
    if cov == FULL or cov == TIED:
        o = k * D * D if cov == FULL else 0
        for j in range(D):
            a = r * d[j]
            for i in range(j, D):
                s2[o + i * D + j] += a * d[i]
    elif cov == DIAG:
        for i in range(D):
            s2[k * D + i] += r * d[i] * d[i]
    else:
        q = 0.0
        for i in range(D):
            q += d[i] * d[i]
        s2[k] += r * q


@njit(**JIT)
def _mirror(cov, s2, D):
    if cov == FULL or cov == TIED:
        _mirror_lower(s2, D)


@njit(**JIT)
def _mstep(cov, reg, wsum, initial, nk, s1, s2, centre, w, mu, covs, d):
    """mstep_moments into w, mu, covs (flat); ``initial``: weights (nk + eps) / wsum (the sum
    of the sample weights)."""
    K, D = mu.shape
    tot = 0.0
    if cov == TIED:
        covs[:] = 0.0
    for k in range(K):
        nke = nk[k] + NK_EPS
        tot += nke
        for i in range(D):
            d[i] = s1[k, i] / nke
            mu[k, i] = centre[k, i] + d[i]
        if cov == FULL or cov == TIED:
            o = k * D * D if cov == FULL else 0
            for i in range(D):
                for j in range(D):
                    corr = (d[i] * s1[k, j] + s1[k, i] * d[j]) - nk[k] * (d[i] * d[j])
                    if cov == FULL:
                        covs[o + i * D + j] = (s2[o + i * D + j] - corr) / nke
                    else:
                        covs[i * D + j] += corr
        elif cov == DIAG:
            for i in range(D):
                corr = 2.0 * d[i] * s1[k, i] - nk[k] * d[i] * d[i]
                covs[k * D + i] = (s2[k * D + i] - corr) / nke + reg
        else:
            a = 0.0
            for i in range(D):
                a += 2.0 * d[i] * s1[k, i] - nk[k] * d[i] * d[i]
            covs[k] = (s2[k] - a) / (nke * D) + reg
        w[k] = nke
    if cov == TIED:
        for i in range(D * D):
            covs[i] = (s2[i] - covs[i]) / tot
        for i in range(D):
            for j in range(i):
                a = (covs[i * D + j] + covs[j * D + i]) * 0.5
                covs[i * D + j] = a
                covs[j * D + i] = a
    if cov == FULL or cov == TIED:
        for k in range(K if cov == FULL else 1):
            for i in range(D):
                covs[k * D * D + i * D + i] += reg
    for k in range(K):
        w[k] = (nk[k] + NK_EPS) / wsum if initial else w[k] / tot


# A pivot below this fraction of its diagonal entry hands the problem back: the estimator's
# LAPACK Cholesky may then fail where this one passes (or the reverse) by rounding alone, and
# regularise, so near-singular covariances are left to the estimator's own handling (scaled
# by the entry: no absolute floor). The Cython kernels' _cholesky.pxi has the same rule.
MIN_PIVOT = 1e-10


@njit(**JIT)
def _cholesky_prec(A, o, D, L, U):
    """U[o:o + D*D]: the upper-triangular precision factor of A[o:o + D*D]; FALLBACK when A
    is not positive definite, or nearly not (MIN_PIVOT)."""
    for j in range(D):
        acc = A[o + j * D + j]
        for k in range(j):
            acc -= L[j, k] * L[j, k]
        if not acc > MIN_PIVOT * A[o + j * D + j]:
            return FALLBACK
        L[j, j] = math.sqrt(acc)
        for i in range(j + 1, D):
            acc = A[o + i * D + j]
            for k in range(j):
                acc -= L[i, k] * L[j, k]
            L[i, j] = acc / L[j, j]
    for i in range(D * D):
        U[o + i] = 0.0
    for j in range(D):
        U[o + j * D + j] = 1.0 / L[j, j]
        for i in range(j + 1, D):
            acc = 0.0
            for k in range(j, i):
                acc += L[i, k] * U[o + j * D + k]
            U[o + j * D + i] = -acc / L[i, i]
    return OK


@njit(**JIT)
def _precision_factors(cov, K, D, covs, pc, L):
    """pc from the covariances (flat, compact); FALLBACK where one is not positive definite
    (the estimators regularise it, with a warning). The HMM batch kernel's too."""
    if cov == FULL or cov == TIED:
        for k in range(K if cov == FULL else 1):
            if _cholesky_prec(covs, k * D * D, D, L, pc) != OK:
                return FALLBACK
    else:
        for i in range(covs.shape[0]):
            if not covs[i] > 0.0:
                return FALLBACK
            pc[i] = 1.0 / math.sqrt(covs[i])
    return OK


@njit(**JIT)
def _precisions(cov, K, D, w, covs, pc, logc, L):
    if _precision_factors(cov, K, D, covs, pc, L) != OK:
        return FALLBACK
    _log_norms(cov, K, D, w, pc, logc)
    return OK


@njit(**JIT)
def _log_dets(cov, K, D, pc, logc):
    """logc[k] = log|det U_k| - D/2 log(2 pi) from the precision factors pc (flat, compact):
    emfast.kernels.log_normalizer without the weights (the HMM batch kernel's too)."""
    for k in range(K):
        ld = 0.0
        if cov == FULL or cov == TIED:
            o = k * D * D if cov == FULL else 0
            for i in range(D):
                ld += math.log(pc[o + i * D + i])
        elif cov == DIAG:
            for i in range(D):
                ld += math.log(pc[k * D + i])
        else:
            ld = D * math.log(pc[k])
        logc[k] = ld - D * HALF_LOG_2PI


@njit(**JIT)
def _log_norms(cov, K, D, w, pc, logc):
    """logc from the weights w and the precision factors pc."""
    _log_dets(cov, K, D, pc, logc)
    for k in range(K):
        logc[k] += math.log(w[k])


@njit(**JIT)
def _block_logp(cov, xT, n0, m, mu, pc, logc, lp, q, y):
    """lp[k, b] = log w_k + log N(x_b | k) for the rows n0..n0+m of X feature-major (xT):
    the loops over the block's rows are innermost, so that they vectorise."""
    K, D = mu.shape
    for k in range(K):
        for b in range(m):
            q[b] = 0.0
        if cov == FULL or cov == TIED:
            # coordinate j of (x - mu) U: sum over i <= j of (x_i - mu_i) U_ij
            o = k * D * D if cov == FULL else 0
            for j in range(D):
                for b in range(m):
                    y[b] = 0.0
                for i in range(j + 1):
                    u, mi = pc[o + i * D + j], mu[k, i]
                    for b in range(m):
                        y[b] += (xT[i, n0 + b] - mi) * u
                for b in range(m):
                    q[b] += y[b] * y[b]
        else:
            for i in range(D):
                u = pc[k * D + i] if cov == DIAG else pc[k]
                mi = mu[k, i]
                for b in range(m):
                    t = (xT[i, n0 + b] - mi) * u
                    q[b] += t * t
        c = logc[k]
        for b in range(m):
            lp[k, b] = c - 0.5 * q[b]


@njit(**JIT)
def _block_resp(sw, n0, m, lp, mx, tot):
    """lp (rows n0..n0+m) to responsibilities times the sample weights (log-sum-exp, the row
    max subtracted); returns the block's weighted log-likelihood."""
    K = lp.shape[0]
    _exp_normalise_block(lp, m, mx, tot)
    loglik = 0.0
    if sw.shape[0] > 0:           # each row's log-likelihood times its weight
        for b in range(m):
            loglik += sw[n0 + b] * (mx[b] + math.log(tot[b]))
            tot[b] = sw[n0 + b] / tot[b]
    else:
        for b in range(m):
            loglik += mx[b]
        # one log per LOG_GROUP rows, as the Cython kernel (each row sum is in [1, K])
        for b0 in range(0, m, LOG_GROUP):
            prod = 1.0
            for b in range(b0, min(b0 + LOG_GROUP, m)):
                prod *= tot[b]
            loglik += math.log(prod)
        for b in range(m):
            tot[b] = 1.0 / tot[b]
    for k in range(K):
        for b in range(m):
            lp[k, b] *= tot[b]
    return loglik


@njit(**JIT)
def _sum(a, m):
    """sum of a[:m] (a loop that stores nothing: its vectorised order is fixed)."""
    s = 0.0
    for b in range(m):
        s += a[b]
    return s


@njit(**JIT)
def _dot(a, c, m):
    s = 0.0
    for b in range(m):
        s += a[b] * c[b]
    return s


@njit(**JIT)
def _block_stats(cov, xT, n0, m, lp, centre, nk, s1, s2, dk, rdk):
    """The block's rows, weighted by the responsibilities lp, into the statistics about
    centre; vector loops over the rows, as _block_logp."""
    K, D = centre.shape
    for k in range(K):
        for i in range(D):
            c = centre[k, i]
            for b in range(m):
                dk[i, b] = xT[i, n0 + b] - c
                rdk[i, b] = lp[k, b] * dk[i, b]
        nk[k] += _sum(lp[k], m)
        for i in range(D):
            s1[k, i] += _sum(rdk[i], m)
        if cov == FULL or cov == TIED:
            o = k * D * D if cov == FULL else 0
            for j in range(D):
                for i in range(j, D):
                    s2[o + i * D + j] += _dot(rdk[j], dk[i], m)
        elif cov == DIAG:
            for i in range(D):
                s2[k * D + i] += _dot(rdk[i], dk[i], m)
        else:
            for i in range(D):
                s2[k] += _dot(rdk[i], dk[i], m)


@njit(**JIT)
def _estep(cov, xT, sw, N, mu, pc, logc, nk, s1, s2, centre, blk):
    """Statistics about the means mu (copied to centre), block by block of rows; returns
    the (weighted) log-likelihood. blk: the block scratch (lp (K, BLOCK), q, mx, y (BLOCK,), dk, rdk
    (D, BLOCK))."""
    lp, q, mx, y, dk, rdk = blk
    K, D = mu.shape
    centre[:] = mu
    nk[:] = 0.0
    s1[:] = 0.0
    s2[:] = 0.0
    loglik = 0.0
    for n0 in range(0, N, BLOCK):
        m = min(BLOCK, N - n0)
        _block_logp(cov, xT, n0, m, mu, pc, logc, lp, q, y)
        loglik += _block_resp(sw, n0, m, lp, mx, q)
        _block_stats(cov, xT, n0, m, lp, centre, nk, s1, s2, dk, rdk)
    _mirror(cov, s2, D)
    return loglik


# ----------------------------------------------------------------------------- one problem
@njit(**JIT)
def _fit_problem(X, sw, wsum, K, cov, reg, tol, max_iter, n_init, init, T, idx, u, resp,
                 given, w0, mu0, cov0, pc0, w_out, mu_out, cov_out, pc_out, hist_out, res,
                 scratch, blk, labels, cand):
    """All restarts of one problem (sample weights sw, or (0,); wsum their sum), the best
    into the outputs; res = [lower bound, n_iter, converged]. given, w0, mu0, cov0, pc0:
    the *_init parameters (the Cython kernel's _initialise). Returns OK or FALLBACK."""
    N, D = X.shape
    S = cov_out.shape[0]
    (closest, block_pot, pots, d, logc, nk, w, hist, s2, covs, pc, s1, centre, mu,
     counts, sums, xc, L, xT, mean) = scratch
    kmeans_tol = _prepare_problem(X, sw, wsum, init, given, xT, xc, mean)
    for r in range(n_init):
        # ------------------------------------------------------------ the start
        if given != GIVEN_ALL:
            if _initial_stats(X, sw, K, cov, N, D, r, init, T, idx, u, resp, kmeans_tol,
                              scratch, labels, cand) != OK:
                return FALLBACK
            _mstep(cov, reg, wsum, True, nk, s1, s2, centre, w, mu, covs, d)
        if given & GIVEN_WEIGHTS:
            w[:] = w0
        if given & GIVEN_MEANS:
            mu[:] = mu0
        if given & GIVEN_PRECISIONS:
            covs[:S] = cov0
            pc[:S] = pc0
            _log_norms(cov, K, D, w, pc, logc)
        elif _precisions(cov, K, D, w, covs, pc, logc, L) != OK:
            return FALLBACK
        # ------------------------------------------------------------ EM
        prev, lower, n_it, conv = -np.inf, -np.inf, 0, False
        for it in range(1, max_iter + 1):
            n_it = it
            loglik = _estep(cov, xT, sw, N, mu, pc, logc, nk, s1, s2, centre, blk)
            _mstep(cov, reg, wsum, False, nk, s1, s2, centre, w, mu, covs, d)
            for k in range(K):
                if nk[k] <= EMPTY_FRACTION * wsum:
                    return FALLBACK
            if _precisions(cov, K, D, w, covs, pc, logc, L) != OK:
                return FALLBACK
            lower = loglik / wsum
            hist[it - 1] = lower
            if abs(lower - prev) < tol:
                conv = True
                break
            prev = lower
        if r == 0 or lower > res[0]:
            res[0], res[1], res[2] = lower, n_it, 1.0 if conv else 0.0
            w_out[:] = w
            mu_out[:] = mu
            cov_out[:] = covs[:S]
            pc_out[:] = pc[:S]
            for it in range(max_iter):
                hist_out[it] = hist[it] if it < n_it else np.nan
    return OK


@njit(**JIT)
def _prepare_problem(X, sw, wsum, init, given, xT, xc, mean):
    """What every restart of the problem shares (the Cython kernel's _prepare_problem): its
    rows feature-major (xT), for "kmeans" and "random" starts its weighted column mean,
    for "kmeans" its rows less that mean (xc); returns Lloyd's tolerance (1e-4 times their
    mean weighted variance; 0 when unused)."""
    N, D = X.shape
    for n in range(N):                 # the E-step's layout
        for i in range(D):
            xT[i, n] = X[n, i]
    if given == GIVEN_ALL or (init != KMEANS and init != RANDOM):
        return 0.0
    mean[:] = 0.0
    for n in range(N):
        w = _wt(sw, n)
        for i in range(D):
            mean[i] += w * X[n, i]
    for i in range(D):
        mean[i] /= wsum
    if init != KMEANS:
        return 0.0
    sq = 0.0
    for n in range(N):
        w = _wt(sw, n)
        for i in range(D):
            xc[n, i] = X[n, i] - mean[i]
            sq += w * (xc[n, i] * xc[n, i])
    return LLOYD_TOL * sq / (wsum * D)


@njit(**JIT)
def _initial_stats(X, sw, K, cov, N, D, r, init, T, idx, u, resp, kmeans_tol, scratch,
                   labels, cand):
    """The statistics (nk, s1, s2 about centre, in scratch) of init_params' start for
    restart r, from _prepare_problem's mean and centred rows. Returns OK or FALLBACK."""
    (closest, block_pot, pots, d, logc, nk, w, hist, s2, covs, pc, s1, centre, mu,
     counts, sums, xc, L, xT, mean) = scratch
    rows = labels[N:N + K]            # the rows k-means++ chooses (after Lloyd's labels)
    nk[:] = 0.0
    s1[:] = 0.0
    s2[:] = 0.0
    if init == KMEANS:
        Xc = xc[:N]
        if _kmeans_plusplus(Xc, sw, idx[r, 0], u[r], T, closest, block_pot, cand, pots,
                            centre, rows) != OK:
            return FALLBACK
        if _lloyd(Xc, sw, centre, kmeans_tol, labels, counts, sums) != OK:
            return FALLBACK
        centre += mean
        for n in range(N):
            k, _d = _nearest(X, n, centre)
            _add_row(cov, X, n, k, _wt(sw, n), centre, nk, s1, s2, d)
        _mirror(cov, s2, D)
    elif init == RANDOM:
        for k in range(K):
            centre[k] = mean
        for n in range(N):
            wn = _wt(sw, n)
            for k in range(K):
                _add_row(cov, X, n, k, resp[(r * N + n) * K + k] * wn, centre, nk, s1, s2, d)
        _mirror(cov, s2, D)
    else:
        if init == PLUSPLUS:
            if _kmeans_plusplus(X, sw, idx[r, 0], u[r], T, closest, block_pot, cand, pots,
                                centre, rows) != OK:
                return FALLBACK
        else:
            rows[:] = idx[r]
            for k in range(K):
                centre[k] = X[idx[r, k]]
        for k in range(K):            # components of one row each: nk its weight
            nk[k] = _wt(sw, rows[k])
    return OK


@outlined(_GROUP_SIG)
def _fit_group(X, offsets, sample_weight, weight_sum, K, cov, reg, tol, max_iter, n_init,
               init, T, draw_of, idx, u, resp, resp_off, given, w_init, mu_init, cov_init,
               pc_init, weights, means, covariances, prec_chol, lower_bound, lower_bounds,
               n_iter, converged, status, lo, hi):
    """Problems lo..hi-1, in order, with scratch allocated once for the group."""
    P, D = offsets.shape[0] - 1, X.shape[1]
    S = covariances.shape[1]
    n_max = 0
    for p in range(P):
        n_max = max(n_max, offsets[p + 1] - offsets[p])
    scratch = (np.empty(n_max), np.empty((n_max + BLOCK - 1) // BLOCK), np.empty(T),
               np.empty(D), np.empty(K), np.empty(K), np.empty(K),
               np.empty(max(max_iter, 1)), np.empty(S), np.empty(S), np.empty(S),
               np.empty((K, D)), np.empty((K, D)), np.empty((K, D)), np.empty(K),
               np.empty((K, D)), np.empty((n_max, D)), np.zeros((D, D)),
               np.empty((D, n_max)), np.empty(D))
    blk = (np.empty((K, BLOCK)), np.empty(BLOCK), np.empty(BLOCK), np.empty(BLOCK),
           np.empty((D, BLOCK)), np.empty((D, BLOCK)))
    labels = np.empty(n_max + K, dtype=np.int64)    # Lloyd's labels, then k-means++'s rows
    cand = np.empty(T, dtype=np.int64)
    res = np.empty(3)
    weighted = sample_weight.shape[0] > 0
    for p in range(lo, hi):
        if status[p] != OK:
            continue
        s = draw_of[p]
        g = p if w_init.shape[0] == P else 0
        rows = X[offsets[p]:offsets[p + 1]]
        sw = sample_weight[offsets[p]:offsets[p + 1]] if weighted else sample_weight
        st = _fit_problem(rows, sw, weight_sum[p], K, cov, reg, tol, max_iter, n_init, init,
                          T, idx[s], u[s], resp[resp_off[s]:resp_off[s + 1]], given,
                          w_init[g], mu_init[g], cov_init[g], pc_init[g], weights[p],
                          means[p], covariances[p], prec_chol[p], lower_bounds[p], res,
                          scratch, blk, labels, cand)
        status[p] = st
        if st == OK:
            lower_bound[p] = res[0]
            n_iter[p] = int(res[1])
            converged[p] = int(res[2])


@parallel_driver(_SIG, calls=[(_fit_group, [_GROUP_SIG])])
def _driver(X, offsets, sample_weight, weight_sum, K, cov, reg, tol, max_iter, n_init, init,
            T, draw_of, idx, u, resp, resp_off, given, w_init, mu_init, cov_init, pc_init,
            weights, means, covariances, prec_chol, lower_bound, lower_bounds, n_iter,
            converged, status, n_groups, fn):
    """The problems in n_groups contiguous groups, one group per thread at a time. fn: the
    address of _fit_group (compiled once on its own instead of into each of the four
    modules numba makes of a prange driver: see _settings.outlined)."""
    P = offsets.shape[0] - 1
    for g in prange(n_groups):
        _fit_group(fn, X, offsets, sample_weight, weight_sum, K, cov, reg, tol, max_iter,
                   n_init, init, T, draw_of, idx, u, resp, resp_off, given, w_init, mu_init,
                   cov_init, pc_init, weights, means, covariances, prec_chol, lower_bound,
                   lower_bounds, n_iter, converged, status, g * P // n_groups,
                   (g + 1) * P // n_groups)


def fit_many(X, offsets, sample_weight, weight_sum, K, cov_code, reg_covar, tol, max_iter,
             n_init, init_code, n_trials, draw_of, idx, u, resp, resp_off, given_bits, w_init,
             mu_init, cov_init, pc_init, weights, means, covariances, prec_chol, lower_bound,
             lower_bounds, n_iter, converged, status, n_threads):
    """The Cython kernel's contract (emfast._cython._batch.fit_many)."""
    P = offsets.shape[0] - 1
    if P == 0:
        return
    run(_driver, n_threads, X, offsets, sample_weight, weight_sum, K, cov_code, reg_covar,
        tol, max_iter, n_init, init_code, n_trials, draw_of, idx, u, resp, resp_off,
        given_bits, w_init, mu_init, cov_init, pc_init, weights, means, covariances,
        prec_chol, lower_bound, lower_bounds, n_iter, converged, status, min(P, MAX_GROUPS))
