"""Numba backend of the discrete-data kernels: categorical (and Bernoulli, its two-category
case) and Poisson mixtures (contract: the "discrete" section of :mod:`emfast.kernels`;
judge: ``tests/reference_discrete.py``).

Exports five plain Python functions, called positionally with validated, C-contiguous arrays:

    categorical_estep_stats(codes, sample_weight, log_prob_T, log_weights, nk, counts,
                            n_threads) -> loglik
    categorical_log_prob(codes, log_prob_T, log_weights, out, n_threads)
    poisson_estep_stats(X, sample_weight, log_lam, log_const, row_const, nk, s1, n_threads)
        -> loglik
    poisson_log_prob(X, log_lam, log_const, row_const, out, n_threads)
    poisson_row_const(X, out, n_threads)

One parallel driver per family serves both its E-step and its log-probabilities (each driver
costs seconds to compile): ``out`` of shape (0, K) asks for the E-step. A block's
log-probabilities are built row by row into a (BLOCK, K) scratch, one sum per class in a
register: of ``log_prob_T[code, k]`` over the row's codes (categorical: a gather from
K-contiguous rows), or the short dot product of the row's counts with ``log_lam[k]``
(Poisson; a zero count adds 0 also where log(lambda) = -inf). Then the log-sum-exp with the
row max, and the weighted responsibilities scattered into the group's slot: into the
``counts`` rows of the row's codes, or ``s1``.

Rows go in fixed blocks of ``BLOCK``, blocks in contiguous groups whose number depends on the
shapes only (:func:`emfast._layout.n_groups`, the Cython backend's rule too); ``prange`` runs
over the groups, each adds its blocks in order into its own slot, and the slots are summed in
group order: bit-identical results for any thread count. No (N, K) array in the E-step.
"""

import math

import numpy as np
from numba import njit, prange
from numba.core import types

from emfast._layout import n_groups
from emfast._numba._gaussian import BLOCK, _exp_nonpos, _log_pos
from emfast._numba._launch import run
from emfast._numba._settings import (IN1, IN2, JIT, OUT1, OUT2, X_TYPES, array_arg,
                                     as_output, outlined, parallel_driver)

__all__ = ["categorical_estep_stats", "categorical_log_prob", "poisson_estep_stats",
           "poisson_log_prob", "poisson_row_const"]

_INT = types.int64
_CODES = array_arg(types.int32, 2, True)
_NO_WEIGHTS = np.empty(0)

# Declared signatures (see _settings.parallel_driver). The categorical drivers' first
# argument is codes (int32): one version; the Poisson ones have one per dtype of X. The
# drivers' last argument is the address of their outlined group function, passed by run.
_CAT_SIG = types.float64(_CODES, IN1, IN2, IN1, OUT1, OUT2, OUT2, _INT, _INT)
_CAT_GROUP_SIG = types.float64(_CODES, IN1, IN2, IN1, OUT1, OUT2, OUT2, _INT, _INT)
_POI_SIGS = [types.float64(x, IN1, IN2, IN1, IN1, OUT1, OUT2, OUT2, _INT, _INT)
             for x in X_TYPES]
_POI_GROUP_SIGS = [types.float64(x, IN1, IN2, IN1, IN1, OUT1, OUT2, OUT2, _INT, _INT)
                   for x in X_TYPES]
_ROW_CONST_SIGS = [types.void(x, OUT1) for x in X_TYPES]


# --------------------------------------------------------------------------------------------
# Shared by both families
# --------------------------------------------------------------------------------------------
@njit(**JIT)
def _responsibilities(lp, nb, sw, r0, scale, row_ll):
    """Log-sum-exp of each row with its max subtracted, and the weighted responsibilities.

    IN: lp[:nb] (B, K) log-probabilities of the block's rows; sw (N,) or (0,) (weights 1);
    r0 the block's first row. OUT: lp[:nb] = exp(lp - row max); scale[:nb] = w / sum_k of
    those (lp * scale = w r), 0 for an impossible row (all -inf) or a row of weight 0.
    Returns sum_n w_n logsumexp_k lp[n]: -inf when an impossible row has weight > 0; a
    row of weight 0 adds nothing. row_ll (B,) scratch: the row maxima, then the terms.
    """
    K = lp.shape[1]
    has_w = sw.shape[0] > 0
    for b in range(nb):
        m = lp[b, 0]
        for k in range(1, K):
            v = lp[b, k]
            m = v if v > m else m
        row_ll[b] = m
        shift = m if m > -np.inf else 0.0   # impossible: exp(-inf - 0) = 0, sum 0
        for k in range(K):
            lp[b, k] -= shift
    flat = lp.reshape(lp.size)
    for i in range(nb * K):   # one flat loop over the block: vectorised
        flat[i] = _exp_nonpos(flat[i])
    for b in range(nb):
        s = 0.0
        for k in range(K):   # a loop that stores nothing: one summation order
            s += lp[b, k]
        w = sw[r0 + b] if has_w else 1.0
        if w == 0.0:
            scale[b] = 0.0
            row_ll[b] = 0.0
        elif s > 0.0:
            scale[b] = w / s
            row_ll[b] = w * (row_ll[b] + _log_pos(s))
        else:
            scale[b] = 0.0
            row_ll[b] = -np.inf
    ll = 0.0
    for b in range(nb):
        ll += row_ll[b]
    return ll


@njit(**JIT)
def _zero(a):
    """OUT: a (any shape) = 0, through its flat view."""
    flat = a.reshape(a.size)
    for i in range(flat.shape[0]):
        flat[i] = 0.0


@njit(**JIT)
def _store(acc, slot):
    """OUT: slot = acc (same shape), through their flat views. A group adds its rows into
    its own scratch and stores the sums in its slot once at the end: the slots of
    neighbouring groups share cache lines, and adding rows into them from two threads made
    two threads slower than one."""
    src, dst = acc.reshape(acc.size), slot.reshape(slot.size)
    for i in range(src.shape[0]):
        dst[i] = src[i]


@njit(**JIT)
def _sum_slots(ll_g, nk_g, st_g, nk, st):
    """Serial sum of the group slots in group order (the order behind thread-independence).
    IN: ll_g (G,), nk_g (G, K), st_g (G, S) flat statistics. OUT (overwritten): nk (K,),
    st (S,). Returns the sum of ll_g."""
    G, K = nk_g.shape
    _zero(nk)
    _zero(st)
    ll = 0.0
    for g in range(G):
        # added inside a loop that also stores: one serial chain, as in _gaussian._sum_groups
        ll += ll_g[g]
        for k in range(K):
            nk[k] += nk_g[g, k]
        for i in range(st.shape[0]):
            st[i] += st_g[g, i]
    return ll


# --------------------------------------------------------------------------------------------
# Categorical (and Bernoulli)
# --------------------------------------------------------------------------------------------
@njit(**JIT)
def _cat_log_prob_rows(codes, lpT, logw, r0, nb, lp, l0):
    """OUT: lp[l0 + b] = logw + sum of lpT[codes[r0 + b, j]] over the non-missing codes
    (>= 0), for b < nb. Per class, the even and the odd items in two register sums added
    at the end (one sum made each row a chain of J dependent adds per class; a row kept in
    memory would make each code wait for the previous code's store): the Cython kernel's
    order of adds (_discrete_rows.h)."""
    J = codes.shape[1]
    K = logw.shape[0]
    for b in range(nb):
        code = codes[r0 + b]
        for k in range(K):
            even = logw[k]
            odd = 0.0
            for j in range(0, J - 1, 2):
                if code[j] >= 0:
                    even += lpT[code[j], k]
                if code[j + 1] >= 0:
                    odd += lpT[code[j + 1], k]
            if J % 2 == 1 and code[J - 1] >= 0:
                even += lpT[code[J - 1], k]
            lp[l0 + b, k] = even + odd


@outlined(_CAT_GROUP_SIG)
def _cat_group(codes, sw, lpT, logw, nk, counts, out, blk_lo, blk_hi):
    """Blocks [blk_lo, blk_hi) in order. With out (N, K): OUT its rows of those blocks (the
    log-probabilities), returns 0. With out (0, K): OUT (overwritten, this group's slot) nk
    (K,), counts (C, K); returns the blocks' sum_n w_n logsumexp."""
    N, J = codes.shape
    K = logw.shape[0]
    if out.shape[0] > 0:
        for blk in range(blk_lo, blk_hi):
            r0 = blk * BLOCK
            _cat_log_prob_rows(codes, lpT, logw, r0, min(BLOCK, N - r0), out, r0)
        return 0.0
    lp = np.empty((BLOCK, K))
    scale = np.empty(BLOCK)
    row_ll = np.empty(BLOCK)
    nk_acc, counts_acc = np.zeros(K), np.zeros(counts.shape)   # see _store
    ll = 0.0
    for blk in range(blk_lo, blk_hi):
        r0 = blk * BLOCK
        nb = min(BLOCK, N - r0)
        _cat_log_prob_rows(codes, lpT, logw, r0, nb, lp, 0)
        ll += _responsibilities(lp, nb, sw, r0, scale, row_ll)
        for b in range(nb):
            sc = scale[b]
            if sc == 0.0:   # impossible or weight 0: no statistics
                continue
            r = lp[b]
            for k in range(K):
                r[k] *= sc
                nk_acc[k] += r[k]
            for j in range(J):
                c = codes[r0 + b, j]
                if c >= 0:
                    dst = counts_acc[c]
                    for k in range(K):
                        dst[k] += r[k]
    _store(nk_acc, nk)
    _store(counts_acc, counts)
    return ll


@parallel_driver(_CAT_SIG, calls=[(_cat_group, [_CAT_GROUP_SIG])])
def _cat_kernel(codes, sw, lpT, logw, nk, counts, out, G, fn):
    """The categorical E-step (out (0, K); OUT nk, counts; returns the log-likelihood) or
    log-probabilities (out (N, K); returns 0) over G groups of blocks. fn: the address of
    _cat_group."""
    N = codes.shape[0]
    C, K = lpT.shape
    n_blocks = (N + BLOCK - 1) // BLOCK
    stats = out.shape[0] == 0
    S = C * K if stats else 0
    ll_g = np.zeros(G)
    nk_g = np.zeros((G, K if stats else 0))
    counts_g = np.zeros((G, S))
    for g in prange(G):
        ll_g[g] = _cat_group(fn, codes, sw, lpT, logw, as_output(nk_g[g]),
                             as_output(counts_g[g].reshape((C, S // C if C else 0))), out,
                             g * n_blocks // G, (g + 1) * n_blocks // G)
    if not stats:
        return 0.0
    return _sum_slots(ll_g, nk_g, counts_g, nk, counts.reshape(S))


# --------------------------------------------------------------------------------------------
# Poisson
# --------------------------------------------------------------------------------------------
@njit(**JIT)
def _poi_log_prob_rows(X, log_lam, log_const, row_const, r0, nb, lp, l0):
    """OUT: lp[l0 + b, k] = log_const[k] + row_const[r0 + b] + sum_d x_d log_lam[k, d], a
    term with x_d = 0 adding 0 also where log(lambda) = -inf, for b < nb: one short dot
    product per class, summed in a register."""
    K, D = log_lam.shape
    for b in range(nb):
        xr = X[r0 + b]
        for k in range(K):
            acc = log_const[k] + row_const[r0 + b]
            for d in range(D):
                # a select, not a branch (whether a count is 0 is unpredictable): x * -inf
                # is NaN where x = 0, replaced by the 0 that term adds
                x = np.float64(xr[d])
                t = x * log_lam[k, d]
                acc += t if x != 0.0 else 0.0
            lp[l0 + b, k] = acc


@outlined(*_POI_GROUP_SIGS)
def _poi_group(X, sw, log_lam, log_const, row_const, nk, s1, out, blk_lo, blk_hi):
    """As :func:`_cat_group` for the Poisson family: OUT (E-step, overwritten) nk (K,) and
    s1 (K, D) = sum w r x."""
    N, D = X.shape
    K = log_const.shape[0]
    if out.shape[0] > 0:
        for blk in range(blk_lo, blk_hi):
            r0 = blk * BLOCK
            _poi_log_prob_rows(X, log_lam, log_const, row_const, r0, min(BLOCK, N - r0), out,
                               r0)
        return 0.0
    lp = np.empty((BLOCK, K))
    scale = np.empty(BLOCK)
    row_ll = np.empty(BLOCK)
    nk_acc, s1_acc = np.zeros(K), np.zeros((K, D))   # see _store
    ll = 0.0
    for blk in range(blk_lo, blk_hi):
        r0 = blk * BLOCK
        nb = min(BLOCK, N - r0)
        _poi_log_prob_rows(X, log_lam, log_const, row_const, r0, nb, lp, 0)
        ll += _responsibilities(lp, nb, sw, r0, scale, row_ll)
        for b in range(nb):
            sc = scale[b]
            if sc == 0.0:
                continue
            r = lp[b]
            for k in range(K):
                r[k] *= sc
                nk_acc[k] += r[k]
            xr = X[r0 + b]
            for k in range(K):    # r is finite: a zero count adds exact zeros
                rk = r[k]
                dst = s1_acc[k]
                for d in range(D):
                    dst[d] += rk * xr[d]
    _store(nk_acc, nk)
    _store(s1_acc, s1)
    return ll


@parallel_driver(*_POI_SIGS, calls=[(_poi_group, _POI_GROUP_SIGS)])
def _poi_kernel(X, sw, log_lam, log_const, row_const, nk, s1, out, G, fn):
    """As :func:`_cat_kernel` for the Poisson family (OUT nk, s1 (K, D))."""
    N, D = X.shape
    K = log_const.shape[0]
    n_blocks = (N + BLOCK - 1) // BLOCK
    stats = out.shape[0] == 0
    S = D * K if stats else 0
    ll_g = np.zeros(G)
    nk_g = np.zeros((G, K if stats else 0))
    s1_g = np.zeros((G, S))
    for g in prange(G):
        ll_g[g] = _poi_group(fn, X, sw, log_lam, log_const, row_const, as_output(nk_g[g]),
                             as_output(s1_g[g].reshape((S // D, D))), out,
                             g * n_blocks // G, (g + 1) * n_blocks // G)
    if not stats:
        return 0.0
    return _sum_slots(ll_g, nk_g, s1_g, nk, s1.reshape(S))


@parallel_driver(*_ROW_CONST_SIGS)
def _row_const_kernel(X, out):
    """OUT: out[n] = -sum_d lgamma(x_nd + 1) (each row on its own: any split is exact)."""
    N, D = X.shape
    for n in prange(N):
        s = 0.0
        for d in range(D):
            s += math.lgamma(np.float64(X[n, d]) + 1.0)
        out[n] = -s


# --------------------------------------------------------------------------------------------
# Python entry points (called positionally by emfast.kernels and the estimators)
# --------------------------------------------------------------------------------------------
def _groups(N, slot_doubles):
    """The number of groups over N rows: the shapes' rule shared with the Cython backend."""
    return n_groups((N + BLOCK - 1) // BLOCK, slot_doubles)


def categorical_estep_stats(codes, sample_weight, log_prob_T, log_weights, nk, counts,
                            n_threads):
    """IN: codes (N, J) int32 in [-1, C) (-1: missing); sample_weight (N,) or (0,);
    log_prob_T (C, K); log_weights (K,). OUT (overwritten): nk (K,), counts (C, K).
    Returns sum_n w_n logsumexp_k (log_weights_k + sum_j log_prob_T[code_nj, k])."""
    C, K = log_prob_T.shape
    G = _groups(codes.shape[0], 1 + K + C * K)
    return run(_cat_kernel, n_threads, codes, sample_weight, log_prob_T, log_weights, nk,
               counts, np.empty((0, K)), G)


def categorical_log_prob(codes, log_prob_T, log_weights, out, n_threads):
    """IN: as categorical_estep_stats. OUT: out (N, K) the per-class log-probabilities."""
    K = log_weights.shape[0]
    run(_cat_kernel, n_threads, codes, _NO_WEIGHTS, log_prob_T, log_weights, np.empty(0),
        np.empty((0, K)), out, _groups(codes.shape[0], 1))


def poisson_estep_stats(X, sample_weight, log_lam, log_const, row_const, nk, s1, n_threads):
    """IN: X (N, D) f32/f64 counts; sample_weight (N,) or (0,); log_lam (K, D); log_const
    (K,); row_const (N,) (poisson_row_const). OUT (overwritten): nk (K,), s1 (K, D).
    Returns the weighted log-likelihood."""
    K, D = log_lam.shape
    return run(_poi_kernel, n_threads, X, sample_weight, log_lam, log_const, row_const, nk, s1,
               np.empty((0, K)), _groups(X.shape[0], 1 + K + D * K))


def poisson_log_prob(X, log_lam, log_const, row_const, out, n_threads):
    """IN: as poisson_estep_stats. OUT: out (N, K) the per-class log-probabilities."""
    run(_poi_kernel, n_threads, X, _NO_WEIGHTS, log_lam, log_const, row_const, np.empty(0),
        np.empty((0, log_lam.shape[1])), out, _groups(X.shape[0], 1))


def poisson_row_const(X, out, n_threads):
    """IN: X (N, D) f32/f64 counts. OUT: out (N,) = -sum_d lgamma(x_nd + 1)."""
    run(_row_const_kernel, n_threads, X, out)
