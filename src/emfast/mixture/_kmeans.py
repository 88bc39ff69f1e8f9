"""k-means++ seeding and Lloyd's k-means on the compiled k-means kernels, for initialising
mixtures and HMM emissions without scikit-learn.

The row passes run in the ``kmeans`` kernels of the chosen backend (see the "k-means"
section of :mod:`emfast.kernels`): no (N, K) array is formed, memory beyond X is O(N) for
the labels and the k-means++ distances. Inputs are validated by the callers (the
estimators), once per fit.
"""

import threading
from concurrent.futures import Future

import numpy as np

from emfast._config import get_backend
from emfast.kernels import _threads_for

BLOCK = 256
_NO_DRAWS = np.empty(0)   # plusplus_step's values when the candidate rows are given


def _kernel_weights(sample_weight):
    """The kernels' weight argument: (0,) stands for all weights 1."""
    return np.empty(0) if sample_weight is None else sample_weight


def choice_cdf(p):
    """The cumulative distribution ``RandomState.choice(len(p), p=p)`` searches: a uniform
    u from the same stream then picks ``choice_cdf(p).searchsorted(u, side="right")``, the
    row ``choice`` would pick, without its checks of p (a quarter of a k-means++ run on
    2,000 rows)."""
    cdf = p.cumsum()
    cdf /= cdf[-1]
    return cdf


def draw_row(rng, p):
    """``rng.choice(len(p), p=p)``: the same row, the same one uniform drawn from rng."""
    return int(choice_cdf(p).searchsorted(rng.random_sample(), side="right"))


def kmeans_plusplus(X, n_clusters, rng, sample_weight=None, *, backend="auto", n_threads=1,
                    xsq=None):
    """Greedy k-means++ (Arthur & Vassilvitskii, with 2 + log k local trials), weighted.

    The first centre is a row drawn with probability proportional to its weight; each
    next one is the best (lowest resulting potential) of 2 + int(log k) rows drawn with
    probability proportional to w_n times the squared distance to the nearest centre so
    far. The random numbers are drawn as scikit-learn draws them, so the same random state
    picks the same rows (up to rounding of the potentials).

    ``xsq``: the backend's ``row_norms(X)``, for a caller that starts several runs on X
    (None: computed here, once per run).

    Returns (centres (K, D) float64, indices (K,) of the rows chosen).
    """
    mod = get_backend(backend, "kmeans")
    N = X.shape[0]
    n_threads = _threads_for(N, n_threads)
    sw = _kernel_weights(sample_weight)
    w = sample_weight
    n_trials = 2 + int(np.log(n_clusters))
    p = np.full(N, 1.0 / N) if w is None else w / w.sum()
    indices = np.empty(n_clusters, dtype=np.int64)
    indices[0] = draw_row(rng, p)
    closest = np.full(N, np.inf)
    block_pot = np.empty(-(-N // BLOCK))
    if xsq is None:
        xsq = mod.row_norms(X, n_threads)   # once per run, not once per distance pass
    mod.plusplus_update(X, sw, xsq, np.asarray(X[indices[0]], dtype=np.float64), closest,
                        block_pot, n_threads)
    # the rounds in one call (a round's Python and call overhead cost as much as its passes
    # on 2,000 rows), drawing from rng as the rounds one by one do
    done = mod.plusplus_run(X, sw, xsq, closest, block_pot, rng, n_trials, indices, n_threads)
    # fewer distinct points than clusters: no potential is left, and a new centre (one of
    # those points again) leaves none either, so every remaining round takes any rows
    pots = np.empty(n_trials)
    cand = np.empty(n_trials, dtype=np.int64)
    for c in range(done, n_clusters):
        cand[:] = rng.choice(N, size=n_trials)
        best = mod.plusplus_step(X, sw, xsq, closest, block_pot, _NO_DRAWS, cand, pots,
                                 n_threads)
        indices[c] = cand[best]
    centres = np.asarray(X[indices], dtype=np.float64)
    return centres, indices


def _column_mean(X, w):
    """Weighted column means of X in float64, as one matrix-vector product (np.average's
    axis-0 reduction of a narrow X costs about 20 times more: 148 against 8 us at 10,000 x 2,
    a tenth of a whole small fit)."""
    w = np.ones(X.shape[0]) if w is None else w
    return (w @ X) / w.sum()


def _mean_variance(X, w, mean=None):
    """Mean over features of the weighted variance of X (about ``mean``, the column means
    when None), read in chunks."""
    if mean is None:
        mean = _column_mean(X, w)
    total = 0.0
    for start in range(0, X.shape[0], 65536):
        diff = np.asarray(X[start:start + 65536], dtype=np.float64) - mean
        ws = 1.0 if w is None else w[start:start + 65536]
        total += float(np.sum(ws * np.einsum("ij,ij->i", diff, diff)))
    return total / ((X.shape[0] if w is None else w.sum()) * X.shape[1])


def _mean_square(Xc, w, xsq):
    """:func:`_mean_variance` of a float64 C-contiguous X already centred on its (weighted)
    column means, from its row norms ``xsq`` where the backend gives them (``centre_rows``;
    (0,): none), else one dot product over the array; never chunked differences (0.4 of
    the 5 ms of a default fit on scikit-learn's digits)."""
    if w is None:
        sq = xsq.sum() if len(xsq) else np.vdot(Xc, Xc)
    else:
        sq = w @ (xsq if len(xsq) else np.einsum("ij,ij->i", Xc, Xc))
    return float(sq) / ((Xc.shape[0] if w is None else w.sum()) * Xc.shape[1])


def _relocate_empty(X, sample_weight, centres, labels, counts, sums):
    """Give each empty cluster one of the rows farthest from the centre they were assigned
    to, taking the row out of its old cluster's sums (scikit-learn's rule, so that the two
    agree; rare: NumPy, in chunks). Updates counts and sums in place."""
    empty = np.flatnonzero(counts == 0)
    dist = np.empty(X.shape[0])
    for start in range(0, X.shape[0], 65536):
        x = np.asarray(X[start:start + 65536], dtype=np.float64)
        diff = x - centres[labels[start:start + 65536]]
        dist[start:start + 65536] = np.einsum("ij,ij->i", diff, diff)
    far = np.argpartition(dist, -len(empty))[:-len(empty) - 1:-1]
    for row, k in zip(far, empty):
        w = 1.0 if sample_weight is None else sample_weight[row]
        old = labels[row]
        x = np.asarray(X[row], dtype=np.float64) * w
        sums[old] -= x
        counts[old] -= w
        sums[k] = x
        counts[k] = w


def lloyd(X, centres, sample_weight=None, *, max_iter=300, tol=1e-4, final_labels=True,
          backend="auto", n_threads=1):
    """Lloyd's algorithm from ``centres``; scikit-learn's stopping rule.

    Each iteration is one compiled pass (assign, and sum the new clusters). Stops when no
    label changes, or when the squared centre shift falls below ``tol * mean feature
    variance``. Returns (centres, labels, inertia, n_iter). With ``final_labels`` every label
    is the nearest of the returned centres (ties: lowest index) and inertia is theirs;
    without, a stopping rule other than "no label changed" leaves the labels and inertia of
    the last pass, one step behind the centres (saves a pass for callers that assign again).
    """
    return _lloyd(X, centres, sample_weight, max_iter, tol * _mean_variance(X, sample_weight),
                  final_labels, get_backend(backend, "kmeans"), n_threads)


# Why a backend's ``lloyd_run`` stopped (its second result)
SAME_LABELS, EMPTY, SMALL_SHIFT, MAX_ITER = range(4)


def _lloyd(X, centres, sample_weight, max_iter, abs_tol, final_labels, mod, n_threads,
           incremental=False, xsq=None):
    """:func:`lloyd` with the tolerance on the squared shift given in absolute terms.

    The iterations run inside the backend's ``lloyd_run`` (one compiled call instead of a
    Python loop around ``lloyd_step``: the loop cost as much as the pass on small data); it
    hands back only when a pass leaves a cluster empty, which is resolved here.
    ``incremental``: the backend may move the clusters' sums by the rows that changed
    cluster instead of summing them again (centres to rounding: for a run whose inertia is
    compared with no other run's, where a tie between two runs that end at one partition
    must fall as the plain sums make it fall). ``xsq``: the backend's row_norms(X), or None.
    """
    N, D = X.shape
    n_threads = _threads_for(N, n_threads)
    K = len(centres)
    sw = _kernel_weights(sample_weight)
    labels = np.full(N, -1, dtype=np.int64)
    counts, sums = np.empty(K), np.empty((K, D))
    centres = np.array(centres, dtype=np.float64)
    stop, n_iter, inertia = MAX_ITER, 0, np.inf
    while n_iter < max_iter:
        n, stop, inertia = mod.lloyd_run(X, sw, centres, labels, counts, sums,
                                         max_iter - n_iter, abs_tol, n_threads, incremental,
                                         xsq)
        n_iter += n
        if stop != EMPTY:
            break
        _relocate_empty(X, sample_weight, centres, labels, counts, sums)
        new = centres.copy()
        full = counts > 0
        new[full] = sums[full] / counts[full, None]
        shift = _squared_shift(new, centres)
        centres = new
        if shift <= abs_tol:
            stop = SMALL_SHIFT
            break
    if final_labels and stop != SAME_LABELS:
        _, inertia = mod.lloyd_step(X, sw, centres, labels, counts, sums, n_threads)
    return centres, labels, inertia, n_iter


def _squared_shift(new, old):
    """sum over k, i of (new - old)^2, added in row-major order (the order of the kernels'
    ``lloyd_run``)."""
    d = (new - old).ravel()
    return float(np.cumsum(d * d)[-1]) if d.size else 0.0


# k-means on more rows than this runs on a random sample of this many rows first (see
# :func:`kmeans`).
SAMPLE_ROWS = 16384


def _lexicographic_order(X):
    """The row order of ``np.lexsort`` on the columns (first column first), found by one sort
    of the first column where its values are distinct (the usual case for real-valued data:
    one sort instead of D)."""
    first = X[:, 0]
    order = np.argsort(first, kind="stable")
    if np.any(first[order[1:]] == first[order[:-1]]):  # ties: the other columns decide
        order = np.lexsort(X.T[::-1])
    return order


def kmeans(X, n_clusters, rng, sample_weight=None, *, n_init=1, max_iter=300, tol=1e-4,
           full_iter=None, final_labels=True, sort_rows=False, backend="auto", n_threads=1):
    """k-means: ``n_init`` k-means++ starts (drawn from ``rng`` one after another), each run
    by :func:`lloyd`; the result of lowest inertia is kept (the first on ties).

    With more than ``SAMPLE_ROWS`` rows, the starts and their Lloyd runs use a sample of
    ``SAMPLE_ROWS`` rows drawn uniformly with replacement (rows keep their weights), and
    the best of them is then refined by Lloyd on all rows (at most ``full_iter``
    iterations; None: ``max_iter``). The sample's clusters are the full data's up to
    sampling noise, so the refinement stops after a few passes over all rows instead of
    the many from a k-means++ start; k-means++ itself costs O(sample) instead of O(N).

    The starts and Lloyd runs see the rows less their (weighted) mean, as in scikit-learn's
    KMeans; up to ``SAMPLE_ROWS`` rows and with ``n_init=1`` the same random state then
    gives the same clusters as ``sklearn.cluster.KMeans(n_init=1)`` (up to rounding).

    ``sort_rows``: cluster the rows in lexicographic order, so that the result does not
    depend on the order of the rows (an HMM's sequences); the same random state then draws
    other rows than scikit-learn's KMeans would.

    Returns (centres (K, D), labels (N,) int64, inertia); with ``final_labels`` every label
    is the nearest centre, otherwise see :func:`lloyd`.
    """
    if sort_rows:
        order = _lexicographic_order(np.asarray(X))
        sw = None if sample_weight is None else sample_weight[order]
        centres, labels_sorted, inertia = kmeans(
            X[order], n_clusters, rng, sw, n_init=n_init, max_iter=max_iter, tol=tol,
            full_iter=full_iter, final_labels=final_labels, backend=backend,
            n_threads=n_threads)
        labels = np.empty_like(labels_sorted)
        labels[order] = labels_sorted
        return centres, labels, inertia
    N = X.shape[0]
    Xs, ws = X, sample_weight
    sampled = N > SAMPLE_ROWS
    if sampled:
        rows = np.sort(rng.randint(0, N, size=SAMPLE_ROWS))
        Xs = X[rows]
        ws = None if sample_weight is None else sample_weight[rows]
        if ws is not None and not np.any(ws > 0):   # every sampled row has weight 0
            Xs, ws, sampled = X, sample_weight, False
    mod = get_backend(backend, "kmeans")
    # the sample's feature variance stands in for the full data's (a threshold, not a result)
    # k-means on the rows less their mean, as scikit-learn's KMeans: ||x||^2 - 2 x.c + ||c||^2
    # (the dgemm distances) then loses less to cancellation, and ties fall the same way
    offset = _column_mean(Xs, ws)
    # the rows' norms once for all starts
    Xs, xsq = mod.centre_rows(np.ascontiguousarray(Xs), offset,
                              _threads_for(len(Xs), n_threads))
    abs_tol = tol * _mean_square(Xs, ws, xsq)
    best = None
    for _ in range(n_init):
        start, _ = kmeans_plusplus(Xs, n_clusters, rng, ws, backend=backend,
                                   n_threads=n_threads, xsq=xsq)
        # sums moved by the rows that moved only where no other start's inertia is compared
        run = _lloyd(Xs, start, ws, max_iter, abs_tol, final_labels or sampled, mod,
                     n_threads, incremental=n_init == 1, xsq=xsq)
        if best is None or run[2] < best[2]:
            best = run
    best = (best[0] + offset,) + best[1:]
    if sampled:
        best = _lloyd(X, best[0], sample_weight,
                      max_iter if full_iter is None else full_iter, abs_tol, final_labels,
                      mod, n_threads, incremental=True)
    return best[0], best[1], best[2]


class KMeansMemo:
    """k-means runs shared by fits of one X (and one set of sample weights): the k-means
    of a number of clusters from a random state is computed once, and a later call from
    the same state gets its centres and leaves the random state where the run left it, so
    every fit stays exactly what it would be alone. Thread-safe: a second thread asking
    while the first computes waits for its result."""

    def __init__(self):
        self._lock = threading.Lock()
        self._runs = {}

    def __call__(self, n_clusters, rng, run):
        """``run()``'s centres (it draws from ``rng``) for this number of clusters and
        ``rng``'s current state, computed at most once."""
        _, key, pos, has_gauss, gauss = rng.get_state()
        index = (n_clusters, key.tobytes(), pos, has_gauss, gauss)
        with self._lock:
            done = self._runs.get(index)
            mine = done is None
            if mine:
                done = self._runs[index] = Future()
        if mine:
            try:
                done.set_result((run(), rng.get_state()))
            except BaseException as exc:
                done.set_exception(exc)
                raise
        centres, state = done.result()
        if not mine:
            rng.set_state(state)
        return centres
