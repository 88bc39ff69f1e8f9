"""Plain NumPy references of the k-means kernels (``emfast.kernels`` "k-means" section).

Deliberately naive: (N, K) distance arrays, no blocking. Every backend is tested against
these.
"""

import numpy as np

import reference

BLOCK = 256


def sq_dist(X, centres):
    """||x_n - c_k||^2, shape (N, K), by the direct sum."""
    X = np.asarray(X, dtype=np.float64)
    diff = X[:, None, :] - np.asarray(centres, dtype=np.float64)[None, :, :]
    return np.einsum("nkd,nkd->nk", diff, diff)


def _weights(sample_weight, N):
    return np.ones(N) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)


def plusplus_update(X, centre, closest, sample_weight=None):
    """(new closest, per-256-row-block sums of w * closest)."""
    w = _weights(sample_weight, len(X))
    new = np.minimum(closest, sq_dist(X, np.asarray(centre)[None, :])[:, 0])
    starts = np.arange(0, len(X), BLOCK)
    return new, np.add.reduceat(w * new, starts) if len(X) else np.zeros(0)


def plusplus_potentials(X, closest, candidates, sample_weight=None):
    w = _weights(sample_weight, len(X))
    return w @ np.minimum(closest[:, None], sq_dist(X, candidates))


def plusplus_step(X, closest, values, cand, sample_weight=None):
    """One greedy k-means++ round: the candidate rows (where the cumulative potential
    sum_n w_n closest_n first reaches each value; ``values`` None: the rows ``cand``),
    their potentials, and the best (lowest, first on ties) folded into closest. Returns
    (cand, pots, best, new closest, new per-block potentials)."""
    w = _weights(sample_weight, len(X))
    if values is not None:
        cum = np.cumsum(w * closest)
        cand = np.minimum(np.searchsorted(cum, values), len(X) - 1)
    pots = plusplus_potentials(X, closest, X[cand], sample_weight)
    best = int(np.argmin(pots))
    new, block_pot = plusplus_update(X, X[cand[best]], closest, sample_weight)
    return cand, pots, best, new, block_pot


def lloyd_step(X, centres, labels, sample_weight=None):
    """(new labels, counts, sums, number changed, inertia); ties go to the lowest index."""
    X = np.asarray(X, dtype=np.float64)
    w = _weights(sample_weight, len(X))
    K = len(centres)
    d = sq_dist(X, centres)
    new = d.argmin(axis=1)
    counts = np.bincount(new, weights=w, minlength=K)
    sums = np.zeros((K, X.shape[1]))
    np.add.at(sums, new, w[:, None] * X)
    inertia = float(w @ d[np.arange(len(X)), new]) if len(X) else 0.0
    return new, counts, sums, int(np.count_nonzero(new != labels)), inertia


# Why lloyd_run stopped
SAME_LABELS, EMPTY, SMALL_SHIFT, MAX_ITER = range(4)


def lloyd_run(X, centres, labels, max_iter, abs_tol, sample_weight=None):
    """Lloyd iterations from ``centres``: a step, then each centre to its cluster's mean,
    until a step changes no label, leaves a cluster empty (the centres stay), moves the
    centres by at most ``abs_tol`` (squared distances summed) or ``max_iter`` steps ran.
    Returns (centres, labels, counts, sums, steps run, stop code, inertia of the last
    step)."""
    centres = np.array(centres, dtype=np.float64)
    for it in range(1, max_iter + 1):
        labels, counts, sums, changed, inertia = lloyd_step(X, centres, labels, sample_weight)
        if changed == 0:
            return centres, labels, counts, sums, it, SAME_LABELS, inertia
        if not np.all(counts > 0):
            return centres, labels, counts, sums, it, EMPTY, inertia
        new = sums / counts[:, None]
        shift = float(np.sum((new - centres) ** 2))
        centres = new
        if shift <= abs_tol:
            return centres, labels, counts, sums, it, SMALL_SHIFT, inertia
    return centres, labels, counts, sums, max_iter, MAX_ITER, inertia


def label_stats(X, centres, covariance_type, labels, sample_weight=None):
    """(nk, s1, s2) of the hard assignment ``labels`` (outside [0, K): no cluster) about
    ``centres``, in the layouts of the Gaussian E-step statistics."""
    X = np.asarray(X, dtype=np.float64)
    w = _weights(sample_weight, len(X))
    centres = np.asarray(centres, dtype=np.float64)
    resp = np.zeros((len(X), len(centres)))
    inside = (labels >= 0) & (labels < len(centres))
    resp[np.flatnonzero(inside), labels[inside]] = w[inside]
    # the statistics of responsibilities that are 0 or the row's weight
    return reference.weighted_stats(X, resp, centres, covariance_type)
