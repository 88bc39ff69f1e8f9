"""Numba backend of the k-means kernels (contract: the "k-means" section of
:mod:`emfast.kernels`; judge: ``tests/reference_kmeans.py``).

Exports nine plain Python functions, called positionally with validated, C-contiguous arrays:

    centre_rows(X, offset, n_threads) -> (X - offset (float64), row_norms of it)
    row_norms(X, n_threads) -> xsq
    plusplus_update(X, sample_weight, xsq, centre, closest, block_pot, n_threads)
    plusplus_potentials(X, sample_weight, xsq, closest, candidates, pots, n_threads)
    plusplus_step(X, sample_weight, xsq, closest, block_pot, values, cand, pots, n_threads)
        -> best
    plusplus_run(X, sample_weight, xsq, closest, block_pot, rng, n_trials, indices, n_threads)
        -> rounds done
    lloyd_step(X, sample_weight, centres, labels, counts, sums, n_threads) -> (changed, inertia)
    lloyd_run(X, sample_weight, centres, labels, counts, sums, max_iter, abs_tol, n_threads,
              incremental, xsq)
        -> (passes, stop code, inertia)
    label_stats(X, sample_weight, centres, cov_code, labels, assign, nk, s1, s2, n_threads)

Two parallel drivers serve the four passes, since each driver costs seconds to compile and
a fit that starts from k-means calls all four: :func:`_plusplus_kernel` (the k-means++ update
is the potentials pass of the one chosen candidate that also keeps its distances), and
:func:`_assign_kernel` (a Lloyd step is the label statistics of the nearest centres, the counts and
plain sums only). plusplus_step (a k-means++ round), plusplus_run (its rounds) and lloyd_run
(a Lloyd run) are Python loops over those passes here, with the results of the Cython
backend's compiled loops.

As in the Gaussian kernels: rows in fixed blocks of ``BLOCK``, each copied transposed into a
float64 scratch (D, B) so that the distance loops run over the block's rows (long, contiguous,
vectorised); squared distances are the direct sum of (x_i - c_i)^2 (so no row norms: row_norms
gives (0,), and the k-means++ kernels take xsq only to keep the backends' one contract); the
blocks go into contiguous groups whose number depends on the shapes only, ``prange`` runs over
the groups, each group adds its blocks in order into its own slot, and the slots are summed in
group order: bit-identical results for any thread count. No (N, K) array.
"""

import numpy as np
from numba import njit, prange
from numba.core import types

# The blocks, block load, groups and group-order sum of the Gaussian kernels: one summation
# order for every statistic of the backend.
from emfast._numba._gaussian import (_SUMS, BLOCK, DIAG, FULL, TIED, _load_block, _n_groups,
                                     _sum_groups)
from emfast._numba._launch import run
from emfast._numba._settings import (IN1, IN2, JIT, OUT1, OUT2, X_TYPES, array_arg,
                                     as_output, outlined, parallel_driver)

__all__ = ["centre_rows", "row_norms", "plusplus_update", "plusplus_potentials",
           "plusplus_step", "plusplus_run", "lloyd_step", "lloyd_run", "label_stats"]

# Each dtype of X costs a compile of seconds: a caller holding a float64 copy of a float32 X
# may pass that instead (the kernels widen every value to float64: the same results).
COMPILES_PER_DTYPE = True

_UNUSED = np.empty(0)  # the (0,) output of what a pass does not compute; never written


# Declared signatures of the parallel drivers (see _settings.parallel_driver), one per dtype
# of X, each compiled (or loaded from the on-disk cache) the first time a fit calls it with
# that dtype. sample_weight is IN1 (shape (0,) for all weights 1). The last arguments of a
# driver are the addresses of the outlined functions it calls, passed by run.
_LABELS = array_arg(types.int64, 1, False)
_INT = types.int64
_PLUSPLUS_SIGS = [types.void(x, IN1, IN2, IN1, OUT1, OUT1, OUT1, _INT) for x in X_TYPES]
_PLUSPLUS_GROUP_SIGS = [types.void(x, IN1, IN2, IN1, OUT1, OUT1, _INT, _INT, OUT1)
                        for x in X_TYPES]
_ASSIGN_SIGS = [
    types.Tuple((types.int64, types.float64))(
        x, IN1, IN2, _INT, _LABELS, types.boolean, OUT1, OUT2, OUT1, _INT, _INT)
    for x in X_TYPES
]
_ASSIGN_GROUP_SIGS = [
    types.Tuple((types.int64, types.float64))(
        x, IN1, IN2, _INT, _LABELS, types.boolean, _INT, _INT, OUT1, OUT2, OUT1)
    for x in X_TYPES
]
@njit(**JIT)
def _load(X, sw, r0, nb, Xt, wb):
    """OUT: Xt[:, :nb] = X[r0:r0+nb].T as float64; wb[:nb] their weights (1 if sw is (0,))."""
    _load_block(X, r0, nb, Xt)
    if sw.shape[0] == 0:
        for b in range(nb):
            wb[b] = 1.0
    else:
        for b in range(nb):
            wb[b] = sw[r0 + b]


@njit(**JIT)
def _sqdist(Xt, nb, C, dist):
    """OUT: dist[k, b] = ||x_b - C[k]||^2 for the nb rows in Xt (D, B)."""
    K, D = C.shape
    for k in range(K):
        for b in range(nb):
            dist[k, b] = 0.0
        for i in range(D):
            c = C[k, i]
            for b in range(nb):
                t = Xt[i, b] - c
                dist[k, b] += t * t


@njit(**JIT)
def _nearest(dist, nb, best, arg):
    """OUT: best[b], arg[b]: the smallest dist[:, b] and its index (ties: lowest)."""
    K = dist.shape[0]
    for b in range(nb):
        best[b] = dist[0, b]
        arg[b] = 0
    for k in range(1, K):
        for b in range(nb):
            if dist[k, b] < best[b]:
                best[b] = dist[k, b]
                arg[b] = k


# --------------------------------------------------------------------------------------------
# k-means++
# --------------------------------------------------------------------------------------------
@outlined(*_PLUSPLUS_GROUP_SIGS)
def _plusplus_group(X, sw, cand, closest, new_closest, block_pot, blk_lo, blk_hi, part):
    """The k-means++ pass of :func:`_plusplus_kernel` over blocks [blk_lo, blk_hi), in order.
    OUT: the update's new_closest and block_pot entries of those blocks, or (added to) the
    potentials' part (T,) of this group."""
    N, D = X.shape
    T = cand.shape[0]
    update = block_pot.shape[0] > 0
    Xt = np.empty((D, BLOCK))
    wb = np.empty(BLOCK)
    dist = np.empty((T, BLOCK))
    for blk in range(blk_lo, blk_hi):
        r0 = blk * BLOCK
        nb = min(BLOCK, N - r0)
        _load(X, sw, r0, nb, Xt, wb)
        _sqdist(Xt, nb, cand, dist)
        if update:
            for b in range(nb):
                if dist[0, b] < closest[r0 + b]:
                    new_closest[r0 + b] = dist[0, b]
            s = 0.0
            for b in range(nb):
                s += wb[b] * new_closest[r0 + b]
            block_pot[blk] = s
            continue
        for t in range(T):
            s = 0.0
            for b in range(nb):
                s += wb[b] * min(dist[t, b], closest[r0 + b])
            part[t] += s


@parallel_driver(*_PLUSPLUS_SIGS, calls=[(_plusplus_group, _PLUSPLUS_GROUP_SIGS)])
def _plusplus_kernel(X, sw, cand, closest, new_closest, pots, block_pot, fn):
    """One k-means++ pass over the rows: their squared distances d to the T candidates (T, D).
    Potentials (block_pot (0,)): pots[t] = sum_n w_n min(closest_n, d_nt). Update (T = 1,
    block_pot (n_blocks,)): new_closest = min(closest, d_n0) (the same array as closest: a
    caller's read-only closest stays read-only for the potentials), block_pot the per-block
    sums of w new_closest. fn: the address of _plusplus_group."""
    N = X.shape[0]
    T = cand.shape[0]
    update = block_pot.shape[0] > 0
    n_blocks = (N + BLOCK - 1) // BLOCK
    G = _n_groups(n_blocks, T)
    parts = np.zeros((G, T))
    for g in prange(G):
        _plusplus_group(fn, X, sw, cand, closest, new_closest, block_pot,
                        g * n_blocks // G, (g + 1) * n_blocks // G, as_output(parts[g]))
    if not update:
        for t in range(T):
            pots[t] = 0.0
        for g in range(G):
            for t in range(T):
                pots[t] += parts[g, t]


_NO_NORMS = np.empty(0)


def centre_rows(X, offset, n_threads):
    """(X - offset as a new (N, D) float64 array (NumPy's subtraction: the same values),
    its row_norms: none here)."""
    if offset.shape != (X.shape[1],):
        raise ValueError(f"offset must have shape ({X.shape[1]},), got {offset.shape}")
    return np.subtract(X, offset, dtype=np.float64), _NO_NORMS


def row_norms(X, n_threads):
    """The rows' squared norms the k-means++ kernels take: none here (direct distances)."""
    return _NO_NORMS


def plusplus_update(X, sample_weight, xsq, centre, closest, block_pot, n_threads):
    """IN: X (N, D) f32/f64; sample_weight (N,) or (0,); xsq (unused); centre (D,).
    IN/OUT: closest (N,) min'ed with ||x - centre||^2. OUT: block_pot (ceil(N/256),)
    per-block sum w closest."""
    if X.shape[0]:
        run(_plusplus_kernel, n_threads, X, sample_weight, centre.reshape(1, -1), closest,
            closest, _UNUSED, block_pot)


def plusplus_potentials(X, sample_weight, xsq, closest, candidates, pots, n_threads):
    """IN: X, sample_weight, xsq (unused), closest (N,), candidates (T, D). OUT: pots (T,)
    sum_n w_n min(closest_n, ||x_n - cand_t||^2)."""
    run(_plusplus_kernel, n_threads, X, sample_weight, candidates, closest, _UNUSED, pots,
        _UNUSED)


def _draw_rows(values, block_cum, closest, w, rows):
    """Rows where the cumulative potential sum_n w_n closest_n first reaches each value.

    The block is found on the per-block cumulative sums, the row by a cumulative sum over
    that block only (the same rows as a search over the full cumulative sum, up to
    rounding at block edges). All values at once: one (len(values), BLOCK) cumulative sum,
    rows past the end adding 0 (a loop of searches per value cost 10 us each, a fifth of a
    k-means++ step on 16,384 rows).
    """
    blk = np.minimum(np.searchsorted(block_cum, values), len(block_cum) - 1)
    lo = blk * BLOCK
    idx = lo[:, None] + np.arange(BLOCK)
    mass = closest.take(idx, mode="clip")
    if w is not None:
        mass *= w.take(idx, mode="clip")
    mass[idx >= rows] = 0.0
    base = np.where(blk > 0, block_cum[blk - 1], 0.0)
    local = base[:, None] + np.cumsum(mass, axis=1)
    # local is non-decreasing: counting the entries below v is searchsorted's left side
    found = np.count_nonzero(local < values[:, None], axis=1)
    return lo + np.minimum(found, np.minimum(rows - lo, BLOCK) - 1)


def plusplus_step(X, sample_weight, xsq, closest, block_pot, values, cand, pots, n_threads):
    """One greedy k-means++ round. IN: X, sample_weight, xsq (unused), values (T,) draws
    from [0, sum block_pot) or (0,) (then cand holds the candidate rows). IN/OUT: closest
    (N,), block_pot (n_blocks,) (the best candidate folded in), cand (T,) int64 (the rows
    where the cumulative potential first reaches each value). OUT: pots (T,). Returns the
    index in cand of the best candidate (lowest potential, the first on ties)."""
    if len(values):
        w = sample_weight if len(sample_weight) else None
        cand[:] = _draw_rows(values, np.cumsum(block_pot), closest, w, X.shape[0])
    cand_x = np.ascontiguousarray(X[cand], dtype=np.float64)
    plusplus_potentials(X, sample_weight, xsq, closest, cand_x, pots, n_threads)
    best = int(np.argmin(pots))
    plusplus_update(X, sample_weight, xsq, cand_x[best], closest, block_pot, n_threads)
    return best


def plusplus_run(X, sample_weight, xsq, closest, block_pot, rng, n_trials, indices, n_threads):
    """Rounds 1, 2, ... of greedy k-means++: round c is plusplus_step with the values
    rng.uniform(size=n_trials) * pot, pot = np.cumsum(block_pot)[-1], and sets indices[c] to
    the best candidate's row. IN/OUT: closest, block_pot, rng, indices (K,) int64
    (indices[0] IN). Stops before a round whose pot is <= 0 (fewer distinct rows than
    centres), with nothing drawn for it, and returns its number; returns K when every round
    ran."""
    cand, pots = np.empty(n_trials, dtype=np.int64), np.empty(n_trials)
    for c in range(1, len(indices)):
        pot = np.cumsum(block_pot)[-1]
        if pot <= 0:
            return c
        best = plusplus_step(X, sample_weight, xsq, closest, block_pot,
                             rng.uniform(size=n_trials) * pot, cand, pots, n_threads)
        indices[c] = cand[best]
    return len(indices)


# --------------------------------------------------------------------------------------------
# Hard assignments: Lloyd steps and the Gaussian statistics of labels
# --------------------------------------------------------------------------------------------
MEANS_ONLY = 4  # the statistics code of a Lloyd step, beside the covariance codes 0..3


@njit(**JIT)
def _add_row(Xt, b, w, c, code, k, xr, nk, s1, s2):
    """Add row b of Xt, weight w, centred on c, to cluster k's slot: nk (K,), s1 (K, D) and
    s2 flat (full (K, D, D) / tied (D, D): lower triangles; diag (K, D); spherical (K,))."""
    D = c.shape[0]
    nk[k] += w
    for i in range(D):
        xr[i] = Xt[i, b] - c[i]
        s1[k, i] += w * xr[i]
    if code == FULL or code == TIED:
        base = k * D * D if code == FULL else 0
        for i in range(D):
            a = w * xr[i]
            for j in range(i + 1):
                s2[base + i * D + j] += a * xr[j]
    elif code == DIAG:
        for i in range(D):
            s2[k * D + i] += w * xr[i] * xr[i]
    else:
        q = 0.0
        for i in range(D):
            q += xr[i] * xr[i]
        s2[k] += w * q


@outlined(*_ASSIGN_GROUP_SIGS)
def _assign_group(X, sw, C, code, labels, assign, blk_lo, blk_hi, nk, s1, s2):
    """The hard assignment of :func:`_assign_kernel` over blocks [blk_lo, blk_hi), in order.
    OUT: (with assign) the labels of those blocks; added to this group's slot: nk (K,),
    s1 (K, D), s2 (flat). Returns (labels changed, inertia) of those blocks."""
    N, D = X.shape
    K = C.shape[0]
    Xt = np.empty((D, BLOCK))
    wb = np.empty(BLOCK)
    dist = np.empty((K, BLOCK))
    best = np.empty(BLOCK)
    arg = np.empty(BLOCK, dtype=np.int64)
    xr = np.empty(D)
    changed = 0
    inertia = 0.0
    for blk in range(blk_lo, blk_hi):
        r0 = blk * BLOCK
        nb = min(BLOCK, N - r0)
        _load(X, sw, r0, nb, Xt, wb)
        if assign:
            _sqdist(Xt, nb, C, dist)
            _nearest(dist, nb, best, arg)
            s = 0.0
            for b in range(nb):
                s += wb[b] * best[b]
            inertia += s
            for b in range(nb):
                if labels[r0 + b] != arg[b]:
                    changed += 1
                    labels[r0 + b] = arg[b]
        for b in range(nb):
            k = labels[r0 + b]
            if not 0 <= k < K:
                continue
            if code == MEANS_ONLY:  # a Lloyd step: plain sums, the hot loop of k-means
                w = wb[b]
                nk[k] += w
                for i in range(D):  # X's row, not Xt's strided column: the same values
                    s1[k, i] += w * X[r0 + b, i]
            else:
                _add_row(Xt, b, wb[b], C[k], code, k, xr, nk, s1, s2)
    return changed, inertia


@parallel_driver(*_ASSIGN_SIGS, calls=[(_assign_group, _ASSIGN_GROUP_SIGS), _SUMS])
def _assign_kernel(X, sw, C, code, labels, assign, nk, s1, s2, fn, sum_fn):
    """Statistics of a hard assignment, optionally to the nearest centres first.

    IN: X, sw; C (K, D) the centres; code a covariance code (statistics about the centres)
    or MEANS_ONLY (counts and plain sums: a Lloyd step); assign. IN/OUT: labels (N,) (with
    assign: the nearest centre, ties to the lowest index; rows outside [0, K) count nowhere).
    OUT: nk (K,), s1 (K, D), s2 (flat, by code). Returns (labels changed, inertia), both 0
    without assign. fn, sum_fn: the addresses of _assign_group and _sum_groups.
    """
    N, D = X.shape
    K = C.shape[0]
    S = s2.shape[0]
    n_blocks = (N + BLOCK - 1) // BLOCK
    G = _n_groups(n_blocks, 1 + K + K * D + S)
    inertia_g = np.zeros(G)
    changed_g = np.zeros(G, dtype=np.int64)
    nk_g = np.zeros((G, K))
    s1_g = np.zeros((G, K, D))
    s2_g = np.zeros((G, S))
    for g in prange(G):
        changed_g[g], inertia_g[g] = _assign_group(
            fn, X, sw, C, code, labels, assign, g * n_blocks // G, (g + 1) * n_blocks // G,
            as_output(nk_g[g]), as_output(s1_g[g]), as_output(s2_g[g]))
    changed = 0
    for g in range(G):
        changed += changed_g[g]
    inertia = _sum_groups(sum_fn, as_output(inertia_g), as_output(nk_g), as_output(s1_g),
                          as_output(s2_g), nk, s1, s2, code == FULL or code == TIED)
    return changed, inertia


def lloyd_step(X, sample_weight, centres, labels, counts, sums, n_threads):
    """IN: X, sample_weight, centres (K, D). IN/OUT: labels (N,) int64 (previous -> nearest).
    OUT: counts (K,), sums (K, D). Returns (labels changed, inertia)."""
    if X.shape[0] == 0:
        counts[:] = 0.0
        sums[:] = 0.0
        return 0, 0.0
    return run(_assign_kernel, n_threads, X, sample_weight, centres, MEANS_ONLY, labels, True,
               counts, sums, _UNUSED)


# Why lloyd_run stopped: the codes of the Cython kernel's LloydStop
SAME_LABELS, EMPTY, SMALL_SHIFT, MAX_ITER = range(4)


def _move_centres(centres, counts, sums):
    """centres = sums / counts (in place); returns (True, sum over k, i in row-major order
    of the squared moves), or (False, 0) with centres untouched when a count is not > 0.
    NumPy on (K, D) arrays: a pass over the rows costs far more."""
    if not np.all(counts > 0):
        return False, 0.0
    new = sums / counts[:, None]
    d = (new - centres).ravel()
    centres[...] = new
    return True, float(np.cumsum(d * d)[-1])


def lloyd_run(X, sample_weight, centres, labels, counts, sums, max_iter, abs_tol, n_threads,
              incremental=False, xsq=None):
    """Lloyd iterations: lloyd_step, then the centres to their clusters' means, until the
    last pass changed no label (SAME_LABELS), left a cluster empty (EMPTY, centres not
    moved), moved the centres by at most abs_tol (SMALL_SHIFT, squared and summed) or
    max_iter (>= 1) passes ran (MAX_ITER). IN/OUT: centres (K, D), labels (N,). OUT: counts,
    sums of the last pass. Returns (passes run, stop code, inertia of the last pass).
    ``incremental`` allows the Cython backend's sums by the rows that moved; here every
    pass sums (the results that allows, to rounding). ``xsq``: row_norms(X), unused (the
    distances here are direct)."""
    inertia = 0.0
    for it in range(1, max_iter + 1):
        changed, inertia = lloyd_step(X, sample_weight, centres, labels, counts, sums,
                                      n_threads)
        if changed == 0:
            return it, SAME_LABELS, inertia
        moved, shift = _move_centres(centres, counts, sums)
        if not moved:
            return it, EMPTY, inertia
        if shift <= abs_tol:
            return it, SMALL_SHIFT, inertia
    return max_iter, MAX_ITER, inertia


def label_stats(X, sample_weight, centres, cov_code, labels, assign, nk, s1, s2, n_threads):
    """IN: X, sample_weight, centres (K, D), cov_code 0..3, assign. IN/OUT: labels (N,)
    int64 (outside [0, K): no cluster; with assign overwritten by the nearest centres).
    OUT: nk (K,), s1 (K, D), s2 by covariance type, all about the centres."""
    run(_assign_kernel, n_threads, X, sample_weight, centres, cov_code, labels,
        bool(assign), nk, s1, s2.reshape(-1))
