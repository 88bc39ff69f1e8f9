"""k-means++ seeding and Lloyd's k-means, for initialising mixtures without scikit-learn.

Rows are processed in chunks so that no (N, K) distance array is held whole; the extra
memory is O(N) integers for the labels plus O(chunk x K) scratch.
"""

import numpy as np

_CHUNK_ROWS = 16384


def _chunks(n):
    for start in range(0, n, _CHUNK_ROWS):
        yield start, min(n, start + _CHUNK_ROWS)


def _sq_dist_to(X, start, stop, centres, centre_sq):
    """Squared distances of rows [start, stop) to each centre, shape (rows, n_centres)."""
    x = np.asarray(X[start:stop], dtype=np.float64)
    d = np.einsum("ij,ij->i", x, x)[:, None] - 2.0 * (x @ centres.T) + centre_sq[None, :]
    np.maximum(d, 0.0, out=d)
    return d


def kmeans_plusplus(X, n_clusters, rng, sample_weight=None):
    """Greedy k-means++ (Arthur & Vassilvitskii, with 2 + log k local trials).

    Returns (centres (K, D) float64, indices (K,) of the rows chosen).
    """
    N, D = X.shape
    w = np.ones(N) if sample_weight is None else sample_weight
    n_trials = 2 + int(np.log(n_clusters))
    indices = np.empty(n_clusters, dtype=np.int64)
    indices[0] = rng.choice(N, p=w / w.sum())
    centres = np.empty((n_clusters, D))
    centres[0] = X[indices[0]]
    closest = _min_sq_dist(X, centres[:1])
    for c in range(1, n_clusters):
        cum = np.cumsum(w * closest)
        pot = cum[-1]
        if pot <= 0:  # fewer distinct points than clusters: any remaining row will do
            cand = rng.choice(N, size=n_trials)
        else:
            cand = np.searchsorted(cum, rng.uniform(size=n_trials) * pot)
            np.clip(cand, None, N - 1, out=cand)
        cand_x = np.asarray(X[cand], dtype=np.float64)
        cand_sq = np.einsum("ij,ij->i", cand_x, cand_x)
        pots = np.zeros(n_trials)
        for start, stop in _chunks(N):
            d = _sq_dist_to(X, start, stop, cand_x, cand_sq)
            np.minimum(d, closest[start:stop, None], out=d)
            pots += w[start:stop] @ d
        best = int(np.argmin(pots))
        indices[c] = cand[best]
        centres[c] = cand_x[best]
        np.minimum(closest, _min_sq_dist(X, cand_x[best:best + 1]), out=closest)
    return centres, indices


def _min_sq_dist(X, centres):
    out = np.empty(X.shape[0])
    sq = np.einsum("ij,ij->i", centres, centres)
    for start, stop in _chunks(X.shape[0]):
        out[start:stop] = _sq_dist_to(X, start, stop, centres, sq).min(axis=1)
    return out


def _assign(X, centres, labels):
    """Nearest centre of every row, written into ``labels``; returns how many changed."""
    sq = np.einsum("ij,ij->i", centres, centres)
    changed = 0
    for start, stop in _chunks(X.shape[0]):
        # ||x||^2 is the same for every centre, so it does not change the argmin.
        x = np.asarray(X[start:stop], dtype=np.float64)
        new = np.argmin(sq[None, :] - 2.0 * (x @ centres.T), axis=1).astype(labels.dtype)
        changed += int(np.count_nonzero(new != labels[start:stop]))
        labels[start:stop] = new
    return changed


def _update(X, labels, w, n_clusters):
    """Weighted centre of every cluster, and the cluster weights."""
    D = X.shape[1]
    sums = np.zeros((n_clusters, D))
    for start, stop in _chunks(X.shape[0]):
        lab = labels[start:stop]
        xw = np.asarray(X[start:stop], dtype=np.float64) * w[start:stop, None]
        for j in range(D):
            sums[:, j] += np.bincount(lab, weights=xw[:, j], minlength=n_clusters)
    counts = np.bincount(labels, weights=w, minlength=n_clusters)
    return sums, counts


def _mean_variance(X, w):
    """Mean over features of the weighted variance of X, read in chunks."""
    mean = np.average(X, axis=0, weights=w)
    total = 0.0
    for start, stop in _chunks(X.shape[0]):
        diff = np.asarray(X[start:stop], dtype=np.float64) - mean
        total += float(w[start:stop] @ np.einsum("ij,ij->i", diff, diff))
    return total / (w.sum() * X.shape[1])


def _relocate_empty(X, centres, labels, counts):
    """Move each empty cluster's centre to a row far from its current centre."""
    empty = np.flatnonzero(counts == 0)
    if len(empty) == 0:
        return
    dist = np.empty(X.shape[0])
    for start, stop in _chunks(X.shape[0]):
        x = np.asarray(X[start:stop], dtype=np.float64)
        diff = x - centres[labels[start:stop]]
        dist[start:stop] = np.einsum("ij,ij->i", diff, diff)
    far = np.argsort(dist)[::-1][: len(empty)]
    centres[empty] = X[far]


def kmeans(X, n_clusters, rng, sample_weight=None, max_iter=300, tol=1e-4):
    """Lloyd's algorithm from a k-means++ start; scikit-learn's stopping rule.

    Stops when no label changes, or when the squared centre shift falls below
    ``tol * mean feature variance``. Returns (centres, labels) with labels consistent
    with the returned centres.
    """
    N, D = X.shape
    w = np.ones(N) if sample_weight is None else sample_weight
    centres, _ = kmeans_plusplus(X, n_clusters, rng, w)
    tol = tol * _mean_variance(X, w)
    labels = np.full(N, -1, dtype=np.int32)
    for _ in range(max_iter):
        if _assign(X, centres, labels) == 0:
            break
        sums, counts = _update(X, labels, w, n_clusters)
        new = centres.copy()
        full = counts > 0
        new[full] = sums[full] / counts[full, None]
        _relocate_empty(X, new, labels, counts)
        shift = float(np.sum((new - centres) ** 2))
        centres = new
        if shift <= tol:
            _assign(X, centres, labels)
            break
    return centres, labels
