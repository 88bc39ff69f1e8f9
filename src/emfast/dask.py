"""EM on Dask: ``emfast.dask.fit(estimator, X)`` for data chunked by rows.

Each EM iteration runs the estimator's own compiled E-step on every chunk, where the chunk
lives (a Dask worker, or a thread of the local scheduler), sums the chunks' sufficient
statistics on the workers in a fixed tree (so the sum does not depend on which chunk
finishes first), and runs the M-step on the client; the new parameters go to the workers
with the next iteration's tasks. Everything else -- the convergence rule, ``n_init``
restarts, warm starts, warnings and fitted attributes -- is the estimator's own: the EM
driver runs a family whose E-step is the distributed one.

The chunks are persisted once per fit, each with its E-step bound to it on first use
(X's blocks in the kernel's layout, rows grouped by missing pattern), so an iteration moves
only parameters and statistics. A chunk lost with its worker is recomputed from X's graph
and the iteration goes on with the same result.

``dask.distributed`` is used when a client exists (``distributed.Client()``), else Dask's
local scheduler. Dask is an optional extra (``pip install emfast[dask]``); ``import emfast``
never imports it.
"""

import threading

import numpy as np

from emfast import _validation as V
from emfast._config import get_backend
from emfast._patterns import fill_with_column_means, observed_rows
from emfast.hmm._base import _HMMFamily
from emfast.hmm._hmm import GaussianHMM, _check_gaussian_X
from emfast.hmm._stats import HMMStats
from emfast.impute._em_imputer import EMImputer, _MissingNormalFamily, _Normal, _refuse_columns
from emfast.mixture import _gaussian as G
from emfast.mixture import _gaussian_missing as GM
from emfast.mixture._gaussian_mixture import GaussianMixture, _GaussianFamily
# the default start sample: as many rows as GaussianMixture's in-memory k-means uses, so
# with fewer rows than this the sample is all of X, in order, and the start is the in-memory one
from emfast.mixture._kmeans import SAMPLE_ROWS


def fit(estimator, X, lengths=None, *, sample_rows=SAMPLE_ROWS):
    """Fit ``estimator`` by EM on X, a Dask array or DataFrame chunked by rows; returns it.

    Parameters
    ----------
    estimator : emfast.GaussianMixture, emfast.EMImputer or emfast.hmm.GaussianHMM
        Fitted in place, with the attributes its own ``fit`` would set.
    X : dask.array.Array (2-D, one chunk across the columns) or dask.dataframe.DataFrame
    lengths : array of int, GaussianHMM only
        The sequence lengths, as for ``GaussianHMM.fit``. Sequences are the unit of work:
        every chunk boundary must fall between two sequences (rechunk X so that it does).
        None: X is one sequence, in one chunk.
    sample_rows : int
        Size of the random sample of rows the starting point is chosen from (k-means for
        GaussianMixture's "kmeans", the emission means and covariances of a GaussianHMM);
        all of X when it has no more rows. EMImputer starts from X's column means and
        variances, computed over all rows.

    The estimator's ``n_threads`` is the thread count of each chunk's E-step task (None:
    the worker's thread count; 1 under the local scheduler, which runs a task per core).
    Its ``random_state`` also draws the sample (from a stream of its own).

    GaussianMixture: ``sample_weight`` and ``semi_supervised`` are not supported; X may hold
    NaN (each chunk with NaN runs the missing-value E-step on a copy of its rows grouped by
    pattern), and empty components are re-seeded from the sample's rows.
    """
    if sample_rows is None or isinstance(sample_rows, bool) or not isinstance(
            sample_rows, (int, np.integer)) or sample_rows < 2:
        raise ValueError(f"sample_rows must be an integer >= 2, got {sample_rows!r}")
    if isinstance(estimator, GaussianMixture):
        fitter = _fit_mixture
    elif isinstance(estimator, EMImputer):
        fitter = _fit_imputer
    elif isinstance(estimator, GaussianHMM):
        fitter = _fit_hmm
    else:
        raise TypeError("emfast.dask.fit fits an emfast GaussianMixture, EMImputer or "
                        f"GaussianHMM, got {type(estimator).__name__}")
    if lengths is not None and fitter is not _fit_hmm:
        raise ValueError(f"lengths is for GaussianHMM, not {type(estimator).__name__}")
    X, names = _as_row_chunked(X)
    n_threads = estimator._check_parameters()
    X = X.persist()          # X's chunks computed once, for the sample and the E-step chunks
    if any(np.isnan(c) for c in X.chunks[0]):              # a DataFrame's partitions
        X = X.compute_chunk_sizes()
    if fitter is _fit_hmm:
        return fitter(estimator, X, n_threads, lengths, int(sample_rows))
    return fitter(estimator, X, n_threads, names, int(sample_rows))


# ---------------------------------------------------------------------------------- input
def _dask():
    try:
        import dask
        import dask.array
    except ImportError as exc:
        raise ImportError("emfast.dask needs Dask: pip install 'emfast[dask]'") from exc
    return dask


def _as_row_chunked(X):
    """(X as a 2-D Dask array with one chunk across the columns (its row chunks' sizes
    unknown, NaN, where X is a DataFrame), DataFrame column names or None)."""
    dask = _dask()
    if not dask.is_dask_collection(X):
        raise TypeError("emfast.dask.fit takes a dask.array.Array or dask.dataframe.DataFrame,"
                        f" got {type(X).__name__}; fit in-memory data with estimator.fit")
    names = None
    if hasattr(X, "to_dask_array"):                   # a DataFrame (or Series)
        if X.ndim != 2:
            raise ValueError("X must be a 2-D DataFrame, got a Series")
        names = V.feature_names(X)
        X = X.to_dask_array()
    if not isinstance(X, dask.array.Array):
        raise TypeError(f"X must be a Dask array or DataFrame, got {type(X).__name__}")
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features), got {X.ndim}-D")
    if len(X.chunks[1]) != 1:
        raise ValueError(f"X must be chunked by rows only, got {len(X.chunks[1])} chunks "
                         "across its columns: rechunk with X.rechunk({1: -1})")
    if X.dtype.kind not in "biuf":
        raise TypeError(f"X must hold numbers, got dtype {X.dtype}")
    return X, names


def _sample(X, n, random_state):
    """``n`` rows of X drawn without replacement, in X's order (all of X when it has no
    more rows), as a NumPy array. The draw has its own stream, seeded from
    ``random_state``'s: the starting point's draws from ``random_state`` stay those of an
    in-memory fit."""
    N = X.shape[0]
    if N <= n:
        return X.compute()
    rng = np.random.default_rng(V.check_random_state(random_state).randint(2**31))
    return X[np.sort(rng.choice(N, size=n, replace=False))].compute()


# ---------------------------------------------------------------------- chunks on workers
def _task_threads(n_threads):
    """Threads of one chunk's E-step: the estimator's ``n_threads`` when set, else the
    worker's thread count (1 under the local scheduler, which already runs one task per
    core)."""
    if n_threads is not None:
        return n_threads
    try:
        from distributed import get_worker

        return get_worker().state.nthreads
    except (ImportError, ValueError):
        return 1


class _Chunk:
    """One chunk's rows where the chunk lives, with the compiled E-step bound to them on
    first use and kept for the later iterations (one call at a time: the binding owns its
    output buffers). Pickled (when Dask moves the chunk) without the binding."""

    def __init__(self, n_threads):
        self.n_threads = n_threads
        self._estep = None
        self._lock = threading.Lock()

    def __getstate__(self):
        state = dict(self.__dict__, _estep=None)
        del state["_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def stats(self, params):
        with self._lock:
            if self._estep is None:
                self._estep = self._bind(_task_threads(self.n_threads))
            return self._estep(params)


class _MixtureChunk(_Chunk):
    """Rows of a GaussianMixture fit: the fused E-step, or, where the chunk holds NaN, the
    missing-value one on its rows grouped by pattern (rows missing everywhere left out)."""

    def __init__(self, X, covariance_type, n_components, backend, n_threads):
        super().__init__(n_threads)
        X = V.check_array(X, estimator="GaussianMixture", allow_nan=True,
                          max_magnitude=V.MAX_GAUSSIAN_MAGNITUDE)
        self.missing = V.has_nan(X)       # (empty blocks are never chunks)
        self.X = np.ascontiguousarray(X[observed_rows(np.isnan(X))]) if self.missing else X
        self.covariance_type = covariance_type
        self.n_components = n_components
        self.backend = backend

    def summary(self):
        return len(self.X)

    def _bind(self, n_threads):
        K, n = self.n_components, float(len(self.X))
        if self.missing:
            estep = GM.MissingEStep(self.X, None, K, self.backend, n_threads, n)
        else:
            estep = G.EStep(self.X, None, self.covariance_type, K, self.backend, n_threads, n)
        # a copy (stats * 1.0): the binding's buffers are overwritten by the next call
        return lambda params: estep(params) * 1.0


class _NormalChunk(_Chunk):
    """Rows of an EMImputer fit, grouped by missing pattern (rows missing everywhere left
    out), for the missing-value kernel with one component."""

    def __init__(self, X, backend, n_threads):
        super().__init__(n_threads)
        X = V.check_array(X, estimator="EMImputer", allow_nan=True,
                          max_magnitude=V.MAX_GAUSSIAN_MAGNITUDE)
        mask = np.isnan(X)
        self.n_observed = int(np.count_nonzero(~mask))
        self.X = np.ascontiguousarray(X[observed_rows(mask)])
        self.backend = backend

    def summary(self):
        return len(self.X), self.n_observed

    def _bind(self, n_threads):
        # the M-step's ridge and prior are the client's; this family only runs E-steps
        family = _MissingNormalFamily(get_backend(self.backend, "missing"), float(len(self.X)),
                                      0.0, None)
        return lambda params: family.e_step(self.X, None, params, n_threads)


class _SequenceChunk(_Chunk):
    """Whole sequences of a GaussianHMM fit: X's frames and their lengths."""

    def __init__(self, X, lengths, estimator, n_threads):
        super().__init__(n_threads)
        self.X = _check_gaussian_X(estimator, X, fitting=False)
        self.offsets = V.lengths_to_offsets(lengths, len(self.X))
        self.estimator = estimator

    def summary(self):
        return len(self.X)

    def _bind(self, n_threads):
        est = self.estimator
        has_nan = V.has_nan(self.X)
        family = _HMMFamily(est._emission_model(est.n_features), self.offsets, est.params,
                            *est._priors(est.n_components), est.backend, has_nan)

        def estep(params):
            s = family.e_step(self.X, None, params, n_threads)
            # without the parameters: they come back from the client's own copy (statistics
            # add only when taken at the very same parameters object)
            return HMMStats(None, s.start, s.trans, s.emission, s.loglik, s.n_sequences)

        return estep


def _chunk_stats(chunk, params):
    return chunk.stats(params)


def _chunk_summary(chunk):
    return chunk.summary()


def _sum_in_order(*parts):
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


# Statistics summed per reduction task: a few levels of tasks for thousands of chunks, one
# for up to this many (each level waits for its inputs to travel between workers).
SPLIT_EVERY = 8


def _tree_sum(parts, delayed):
    """The sum of ``parts`` (Delayed) in a fixed tree: runs of SPLIT_EVERY summed left to
    right, then runs of those sums, and so on; the same order whichever part is ready
    first."""
    while len(parts) > 1:
        parts = [delayed(_sum_in_order)(*parts[i:i + SPLIT_EVERY])
                 for i in range(0, len(parts), SPLIT_EVERY)]
    return parts[0]


class _DaskFamily:
    """The EM family of a Dask fit: the E-step on every persisted chunk, the statistics
    tree-summed, the M-step of the estimator's own family (``family``) on the client. The
    driver's X is the sample of rows on the client (the M-step re-seeds empty components
    from it); the E-step ignores it."""

    def __init__(self, family, chunks):
        self.family = family
        self.natural_coordinates = getattr(family, "natural_coordinates", False)
        self.chunks = chunks

    def e_step(self, X, sample_weight, params, n_threads):
        dask = _dask()
        # one copy of the parameters in the graph, a dependency of every E-step task:
        # recomputable like any task if a worker holding it is lost (a Client.scatter'ed
        # copy is not)
        p = dask.delayed(params)
        stats = dask.compute(_tree_sum(
            [dask.delayed(_chunk_stats)(c, p) for c in self.chunks], dask.delayed))[0]
        if isinstance(stats, HMMStats):
            stats.params = params
        return stats

    def m_step(self, X, sample_weight, stats, rng):
        return self.family.m_step(X, sample_weight, stats, rng)

    # SQUAREM works on the client, on the family's own parameter vector
    def pack(self, params):
        return self.family.pack(params)

    def unpack(self, vec, like):
        return self.family.unpack(vec, like)


def _persist_chunks(X, make_chunk, args):
    """X's non-empty row blocks as persisted ``make_chunk(block, *args[i])`` (Delayed;
    ``args``: one tuple per block), and each chunk's ``summary()``, computed now so that a
    chunk's bad input raises here rather than in the first E-step."""
    dask = _dask()
    blocks = X.to_delayed().ravel()
    chunks = dask.persist(*[dask.delayed(make_chunk)(block, *a)
                            for block, rows, a in zip(blocks, X.chunks[0], args) if rows])
    summaries = dask.compute(*[dask.delayed(_chunk_summary)(c) for c in chunks])
    return list(chunks), list(summaries)


# ---------------------------------------------------------------------------- estimators
def _fit_mixture(est, X, n_threads, names, sample_rows):
    if est.semi_supervised:
        raise ValueError("emfast.dask.fit does not fit semi-supervised mixtures")
    K = est.n_components
    sample = V.check_array(_sample(X, sample_rows, est.random_state),
                           min_samples=2, estimator="GaussianMixture", allow_nan=True,
                           max_magnitude=V.MAX_GAUSSIAN_MAGNITUDE)
    # the start and re-seeding need complete rows: NaN filled with the sample's column means
    mask = np.isnan(sample)
    start_X = fill_with_column_means(sample, observed_rows(mask)) if mask.any() else sample
    chunks, rows = _persist_chunks(X, _MixtureChunk, _same_args(
        X, est.covariance_type, K, est.backend, est.n_threads))
    if sum(rows) < K:
        raise ValueError(f"Expected n_samples >= n_components but got n_components = {K}, "
                         f"n_samples = {sum(rows)}")
    if len(start_X) < K:
        raise ValueError(f"the sample of {len(start_X)} rows is smaller than n_components = "
                         f"{K}: raise sample_rows")
    inits = est._check_inits(X.shape[1])
    family = _GaussianFamily(est.covariance_type, K, float(est.reg_covar), est.backend,
                             float(len(start_X)))
    est._run_em(_DaskFamily(family, chunks), start_X, None,
                lambda X_, sw_, rng, threads: est._initial_params(start_X, None, rng, inits,
                                                                  threads),
                n_threads, names, sequential=bool(est.verbose))
    return est


def _fit_imputer(est, X, n_threads, names, sample_rows):
    """(``sample_rows`` unused: the start is X's column means and variances.)"""
    dask = _dask()
    da = dask.array
    if X.shape[0] < 2:
        raise ValueError(f"Found array with {X.shape[0]} sample(s) while a minimum of 2 is "
                         "required by EMImputer.")
    chunks, summaries = _persist_chunks(X, _NormalChunk,
                                        _same_args(X, est.backend, est.n_threads))
    n_rows = sum(s[0] for s in summaries)
    n_observed = sum(s[1] for s in summaries)
    with np.errstate(invalid="ignore", divide="ignore"):
        Xf = X.astype(np.float64)
        mean, var, lo, hi, n_obs = dask.compute(
            da.nanmean(Xf, axis=0), da.nanvar(Xf, axis=0), da.nanmin(Xf, axis=0),
            da.nanmax(Xf, axis=0), (~da.isnan(Xf)).sum(axis=0))
    # the in-memory fit's checks, on the column summaries
    _refuse_columns(np.flatnonzero(n_obs == 0), "is missing in every row")
    _refuse_columns(np.flatnonzero(lo == hi),
                    "is constant among its observed values: its variance is 0 and the "
                    "normal model is degenerate; drop it")
    family = _MissingNormalFamily(get_backend(est.backend, "missing"), float(n_rows),
                                  float(est.ridge), np.diag(var))
    dfamily = _DaskFamily(family, chunks)
    est._run_em(dfamily, None, _Normal(mean, np.diag(var)), n_threads,
                lambda p: dfamily.e_step(None, None, p, n_threads), float(n_observed), names)
    return est


def _fit_hmm(est, X, n_threads, lengths, sample_rows):
    chunk_lengths = _split_lengths(lengths, X.chunks[0])
    sample = _check_gaussian_X(
        est, _sample(X, sample_rows, est.random_state), fitting=True)
    X_start = fill_with_column_means(sample) if np.isnan(sample.min()) else sample
    chunks, _ = _persist_chunks(X, _SequenceChunk,
                                [(L, est, est.n_threads) for L in chunk_lengths])
    # the client's family runs M-steps only: its sequence bounds are never read
    one = np.array([0, len(sample)], dtype=np.int64)
    est._run_em(X, X_start, n_threads, None, lambda emission, sp_prior, tp_prior: _DaskFamily(
        _HMMFamily(emission, one, est.params, sp_prior, tp_prior, est.backend), chunks))
    return est


def _same_args(X, *args):
    return [args] * len(X.chunks[0])


def _split_lengths(lengths, row_chunks):
    """The sequence lengths of each row chunk; ValueError when a sequence crosses a chunk
    boundary."""
    N = int(sum(row_chunks))
    if lengths is None:
        if len(row_chunks) > 1:
            raise ValueError(f"X is one sequence (lengths=None) in {len(row_chunks)} chunks: "
                             "pass lengths, with every chunk boundary between two sequences")
        return [None]
    offsets = V.lengths_to_offsets(lengths, N)
    bounds = np.concatenate([[0], np.cumsum(row_chunks)])
    at = np.searchsorted(offsets, bounds)
    crossing = [int(b) for b, i in zip(bounds, at) if i >= len(offsets) or offsets[i] != b]
    if crossing:
        raise ValueError("a sequence crosses the chunk boundary at row "
                         f"{crossing[0]}: rechunk X so that every chunk holds whole sequences "
                         "(e.g. X.rechunk({0: chunk_lengths}))")
    return [np.diff(offsets[a:b + 1]) for a, b in zip(at[:-1], at[1:])]
