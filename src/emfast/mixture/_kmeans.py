"""k-means++ seeding and Lloyd's k-means on the compiled k-means kernels, for initialising
mixtures and HMM emissions without scikit-learn.

The row passes run in the ``kmeans`` kernels of the chosen backend (see the "k-means"
section of :mod:`emfast.kernels`): no (N, K) array is formed, memory beyond X is O(N) for
the labels and the k-means++ distances. Inputs are validated by the callers (the
estimators), once per fit.
"""

import numpy as np

from emfast._config import get_backend

BLOCK = 256


def _kernel_weights(sample_weight):
    """The kernels' weight argument: (0,) stands for all weights 1."""
    return np.empty(0) if sample_weight is None else sample_weight


def _draw_rows(values, block_cum, closest, w, rows):
    """Rows where the cumulative potential sum_n w_n closest_n first reaches each value.

    The block is found on the per-block cumulative sums, the row by a cumulative sum over
    that block only (the same rows as a search over the full cumulative sum, up to
    rounding at block edges).
    """
    n_blocks = len(block_cum)
    out = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        blk = min(int(np.searchsorted(block_cum, v)), n_blocks - 1)
        lo, hi = blk * BLOCK, min(rows, (blk + 1) * BLOCK)
        base = block_cum[blk - 1] if blk > 0 else 0.0
        wb = 1.0 if w is None else w[lo:hi]
        local = base + np.cumsum(wb * closest[lo:hi])
        out[i] = lo + min(int(np.searchsorted(local, v)), hi - lo - 1)
    return out


def kmeans_plusplus(X, n_clusters, rng, sample_weight=None, *, backend="auto", n_threads=1):
    """Greedy k-means++ (Arthur & Vassilvitskii, with 2 + log k local trials), weighted.

    The first centre is a row drawn with probability proportional to its weight; each
    next one is the best (lowest resulting potential) of 2 + int(log k) rows drawn with
    probability proportional to w_n times the squared distance to the nearest centre so
    far. The random numbers are drawn as scikit-learn draws them, so the same random state
    picks the same rows (up to rounding of the potentials).

    Returns (centres (K, D) float64, indices (K,) of the rows chosen).
    """
    mod = get_backend(backend, "kmeans")
    N, D = X.shape
    sw = _kernel_weights(sample_weight)
    w = sample_weight
    n_trials = 2 + int(np.log(n_clusters))
    p = np.full(N, 1.0 / N) if w is None else w / w.sum()
    indices = np.empty(n_clusters, dtype=np.int64)
    centres = np.empty((n_clusters, D))
    indices[0] = rng.choice(N, p=p)
    centres[0] = X[indices[0]]
    closest = np.full(N, np.inf)
    block_pot = np.empty(-(-N // BLOCK))
    pots = np.empty(n_trials)
    mod.plusplus_update(X, sw, centres[0], closest, block_pot, n_threads)
    for c in range(1, n_clusters):
        block_cum = np.cumsum(block_pot)
        pot = block_cum[-1]
        if pot <= 0:  # fewer distinct points than clusters: any row will do
            cand = rng.choice(N, size=n_trials)
        else:
            cand = _draw_rows(rng.uniform(size=n_trials) * pot, block_cum, closest, w, N)
        cand_x = np.ascontiguousarray(X[cand], dtype=np.float64)
        mod.plusplus_potentials(X, sw, closest, cand_x, pots, n_threads)
        best = int(np.argmin(pots))
        indices[c] = cand[best]
        centres[c] = cand_x[best]
        mod.plusplus_update(X, sw, centres[c], closest, block_pot, n_threads)
    return centres, indices


def _mean_variance(X, w):
    """Mean over features of the weighted variance of X, read in chunks."""
    mean = np.average(X, axis=0, weights=w)
    total = 0.0
    for start in range(0, X.shape[0], 65536):
        diff = np.asarray(X[start:start + 65536], dtype=np.float64) - mean
        ws = 1.0 if w is None else w[start:start + 65536]
        total += float(np.sum(ws * np.einsum("ij,ij->i", diff, diff)))
    return total / ((X.shape[0] if w is None else w.sum()) * X.shape[1])


def _relocate_empty(X, centres, new, labels, counts):
    """Move each empty cluster's new centre onto one of the rows farthest from the centre
    they were assigned to (rare: NumPy, in chunks)."""
    empty = np.flatnonzero(counts == 0)
    dist = np.empty(X.shape[0])
    for start in range(0, X.shape[0], 65536):
        x = np.asarray(X[start:start + 65536], dtype=np.float64)
        diff = x - centres[labels[start:start + 65536]]
        dist[start:start + 65536] = np.einsum("ij,ij->i", diff, diff)
    far = np.argsort(dist, kind="stable")[::-1][: len(empty)]
    new[empty] = X[far]


def lloyd(X, centres, sample_weight=None, *, max_iter=300, tol=1e-4, backend="auto",
          n_threads=1):
    """Lloyd's algorithm from ``centres``; scikit-learn's stopping rule.

    Each iteration is one compiled pass (assign, and sum the new clusters). Stops when no
    label changes, or when the squared centre shift falls below ``tol * mean feature
    variance``. Returns (centres, labels, inertia) with every label the nearest of the
    returned centres (ties: lowest index).
    """
    mod = get_backend(backend, "kmeans")
    N, D = X.shape
    K = len(centres)
    sw = _kernel_weights(sample_weight)
    tol = tol * _mean_variance(X, sample_weight)
    labels = np.full(N, -1, dtype=np.int64)
    counts, sums = np.empty(K), np.empty((K, D))
    centres = np.array(centres, dtype=np.float64)
    consistent = False
    for _ in range(max_iter):
        changed, inertia = mod.lloyd_step(X, sw, centres, labels, counts, sums, n_threads)
        if changed == 0:      # same clusters as last time: the centres are their means
            consistent = True
            break
        new = centres.copy()
        full = counts > 0
        new[full] = sums[full] / counts[full, None]
        if not full.all():
            _relocate_empty(X, centres, new, labels, counts)
        shift = float(np.sum((new - centres) ** 2))
        centres = new
        if shift <= tol:
            break
    if not consistent:
        _, inertia = mod.lloyd_step(X, sw, centres, labels, counts, sums, n_threads)
    return centres, labels, inertia


def kmeans(X, n_clusters, rng, sample_weight=None, *, n_init=1, max_iter=300, tol=1e-4,
           backend="auto", n_threads=1):
    """k-means: ``n_init`` k-means++ starts (drawn from ``rng`` one after another), each run
    by :func:`lloyd`; the result of lowest inertia is kept (the first on ties).

    Returns (centres (K, D), labels (N,) int64), every label the nearest centre.
    """
    best = None
    for _ in range(n_init):
        start, _ = kmeans_plusplus(X, n_clusters, rng, sample_weight, backend=backend,
                                   n_threads=n_threads)
        run = lloyd(X, start, sample_weight, max_iter=max_iter, tol=tol, backend=backend,
                    n_threads=n_threads)
        if best is None or run[2] < best[2]:
            best = run
    return best[0], best[1]
