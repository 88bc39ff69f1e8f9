"""Batch fitting: ``emfast.fit_many`` fits many small Gaussian mixtures in one compiled call.

Each problem's whole EM -- initialisation, iterations, M-step, convergence rule, restarts --
runs inside the kernel (``emfast._cython._batch`` / ``emfast._numba._batch``), one problem
per thread at a time, so that ten thousand fits of 500 rows cost no Python per problem and
per iteration. The result of problem i is that of ``GaussianMixture(**params).fit(X_i)``
with problem i's random state, to rounding:

* the random numbers of each start are drawn here, from each problem's RandomState, exactly
  as GaussianMixture draws them (they depend on the seed, the problem's number of rows and
  its sample weights only: the first k-means++ row, the uniforms of the later k-means++
  rounds, the rows of "random_from_data", the responsibilities of "random"); the kernel
  only uses them;
* sample weights are the kernel's too (weighted k-means++, Lloyd, statistics and
  log-likelihood), rescaled per problem as GaussianMixture rescales them;
* a problem that would need GaussianMixture's degenerate-case machinery (a cluster emptied
  by Lloyd, fewer distinct rows than components, a component losing all its rows, a
  covariance not positive definite, or nearly not: a Cholesky pivot below 1e-10 of its
  diagonal entry) is handed back by the kernel and fitted here by
  ``GaussianMixture`` itself: its re-seeding, regularisation and warnings are the same.
  ``fallback_[i]`` says which problems were.

Random states: with an int (or None) ``random_state`` see :func:`fit_many`.
"""

import numbers
import warnings

import numpy as np

from emfast import _validation as V
from emfast import kernels
from emfast._config import get_backend
from emfast._em import restart_rngs
from emfast.exceptions import ConvergenceWarning, compatible
from emfast.io import JSONMixin
from emfast.mixture import _gaussian as G
from emfast.mixture._gaussian_mixture import GaussianMixture
from emfast.mixture._kmeans import SAMPLE_ROWS, draw_row

__all__ = ["fit_many", "GaussianMixtureBatch"]

INIT_CODES = {"kmeans": 0, "k-means++": 1, "random": 2, "random_from_data": 3}
# the kernel's status_ codes
FITTED, FALLBACK = 0, 1
# the kernel's `given` bits: which of weights_init, means_init, precisions_init it gets
GIVEN_BITS = dict(weights_init=1, means_init=2, precisions_init=4)
ALL_GIVEN = 7


class ProblemBatch(JSONMixin):
    """What the batch results share: the stacked arrays as attributes, ``params`` (the
    estimator's constructor parameters), ``random_states_``, ``len``, iteration over the
    problems as fitted estimators (a subclass's ``__getitem__``) and ``to_json``."""

    def __init__(self, params, arrays, random_states):
        self.params = params
        for name, value in arrays.items():
            setattr(self, name, value)
        self.random_states_ = random_states

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def _problem_index(self, i):
        """``i`` as an index in [0, P), negative counting from the end."""
        if isinstance(i, bool) or not isinstance(i, numbers.Integral):
            raise TypeError(f"problem index must be an integer, got {i!r}")
        P = len(self)
        if not -P <= i < P:
            raise IndexError(f"problem index {i} out of range for {P} problems")
        return int(i) % P


class GaussianMixtureBatch(ProblemBatch):
    """The fits of :func:`fit_many`: stacked arrays with a leading problem axis, and
    ``fits[i]``, problem i as a fitted :class:`emfast.GaussianMixture`.

    Attributes (P problems, K components, D features): ``weights_`` (P, K), ``means_``
    (P, K, D), ``covariances_``, ``precisions_cholesky_`` and ``precisions_`` (P, ...) with
    GaussianMixture's per-type shapes, ``lower_bound_`` (P,), ``lower_bounds_`` (P,
    max_iter) with NaN after each problem's last iteration, ``n_iter_`` (P,),
    ``converged_`` (P,) bool, ``fallback_`` (P,) bool (the problems that were degenerate
    for the batch kernel and were fitted by GaussianMixture alone), ``random_states_`` (P,)
    the int seed of each problem, and ``params`` (GaussianMixture's constructor parameters).
    """

    def __len__(self):
        return len(self.lower_bound_)

    def __getitem__(self, i):
        """Problem ``i`` as a fitted emfast.GaussianMixture (its random_state: the seed it
        was fitted with)."""
        i = self._problem_index(i)
        gm = GaussianMixture(**self.params, random_state=int(self.random_states_[i]))
        gm.weights_ = self.weights_[i].copy()
        gm.means_ = self.means_[i].copy()
        gm.covariances_ = self.covariances_[i].copy()
        gm.precisions_cholesky_ = self.precisions_cholesky_[i].copy()
        gm.precisions_ = self.precisions_[i].copy()
        gm.converged_ = bool(self.converged_[i])
        gm.n_iter_ = int(self.n_iter_[i])
        gm.lower_bound_ = float(self.lower_bound_[i])
        gm.lower_bounds_ = [float(v) for v in self.lower_bounds_[i, :gm.n_iter_]]
        gm.n_features_in_ = self.means_.shape[2]
        return gm


def fit_many(X, lengths=None, *, sample_weight=None, n_components=1, covariance_type="full",
             tol=1e-3, reg_covar=1e-6, max_iter=100, n_init=1, init_params="kmeans",
             weights_init=None, means_init=None, precisions_init=None, random_state=None,
             warm_start=False, backend="auto", n_threads=None):
    """Fit one Gaussian mixture per problem, the whole EM of each in compiled code.

    ``X``: a list of 2-D arrays (one per problem, any numbers of rows, the same number of
    features), a 3-D array (problems of equal size), or one 2-D array with ``lengths`` (the
    number of rows of each problem, in order, as the HMMs take sequences). The other
    parameters are GaussianMixture's, the same for every problem. Problem i's result is
    ``GaussianMixture(..., random_state=s_i).fit(X_i)`` to rounding, where s_i is
    ``random_state`` itself when it is an int (every problem gets the same seed, as a loop
    ``GaussianMixture(random_state=0).fit(X_i)`` would), and otherwise an int drawn for
    problem i from ``random_state`` (None: NumPy's global RandomState);
    ``fits.random_states_`` holds them. Rows are used in float64 (a float32 problem is
    fitted as its float64 copy). Inputs are not modified.

    ``sample_weight`` (per-row weights; problem i's result is then that of
    ``.fit(X_i, sample_weight=w_i)``): a list of 1-D arrays (one per problem) with a list
    ``X``, one (P, N) array with a 3-D ``X``, one 1-D array over all rows with ``X`` and
    ``lengths``; zero weights are allowed, each problem needs at least ``n_components`` rows
    of positive weight. ``weights_init``, ``means_init``, ``precisions_init``:
    GaussianMixture's, either one value for every problem (GaussianMixture's shapes) or one
    per problem stacked on a leading (P,) axis; what is not given comes from
    ``init_params``, as in GaussianMixture (with all three given, no initialisation runs),
    in the kernel. ``warm_start`` is not supported (there is no previous fit to continue):
    ``True`` raises ValueError.

    ``n_threads`` (None: all usable CPUs): problems run one per thread at a time; results do
    not depend on it. Returns a :class:`GaussianMixtureBatch`; its ``fallback_`` marks the
    problems that were degenerate for the batch kernel (see the module docstring) and were
    fitted by GaussianMixture alone, with its warnings (but one ConvergenceWarning for the
    whole call, counting every problem that did not converge).
    """
    if not isinstance(warm_start, (bool, np.bool_)) or warm_start:
        raise ValueError(f"fit_many does not support warm_start (got {warm_start!r}): it "
                         "continues a previous fit of one model; give weights_init, "
                         "means_init and precisions_init to start from known parameters")
    params = dict(n_components=n_components, covariance_type=covariance_type, tol=tol,
                  reg_covar=reg_covar, max_iter=max_iter, n_init=n_init,
                  init_params=init_params, backend=backend, n_threads=n_threads)
    # GaussianMixture's own parameter checks, and its wording
    n_threads = GaussianMixture(**params)._check_parameters()
    params["n_threads"] = None if params["n_threads"] is None else n_threads
    X, offsets, form = _check_problems(X, lengths, n_components)
    P, (D, K) = len(offsets) - 1, (X.shape[1], int(n_components))
    weights = _problem_weights(sample_weight, form, offsets, K)
    inits, given = _problem_inits(dict(weights_init=weights_init, means_init=means_init,
                                       precisions_init=precisions_init), params, P, D)
    seeds = _problem_seeds(random_state, P)
    sizes = np.diff(offsets)
    status = np.zeros(P, dtype=np.int8)
    if init_params == "kmeans" and given.bits != ALL_GIVEN:
        status[sizes > SAMPLE_ROWS] = FALLBACK     # GaussianMixture's k-means samples rows
    draws = _Draws(init_params, K, int(n_init), seeds, sizes, weights, status == FITTED)

    S = kernels.prec_chol_shape(covariance_type, K, D)
    out = dict(weights_=np.empty((P, K)), means_=np.empty((P, K, D)),
               covariances_=np.empty((P,) + S), precisions_cholesky_=np.empty((P,) + S),
               lower_bound_=np.empty(P), lower_bounds_=np.empty((P, max(int(max_iter), 1))),
               n_iter_=np.empty(P, dtype=np.int64), converged_=np.zeros(P, dtype=np.int8))
    if weights is None:
        sample_weight, weight_sum = np.empty(0), sizes.astype(np.float64)
    else:
        sample_weight = np.concatenate(weights)
        weight_sum = np.array([float(w.sum()) for w in weights])   # GaussianMixture's sums
    get_backend(backend, "batch").fit_many(
        X, offsets, sample_weight, weight_sum, K, kernels._cov_code(covariance_type),
        float(reg_covar), float(tol), int(max_iter), int(n_init), INIT_CODES[init_params],
        draws.n_trials, draws.draw_of, draws.idx, draws.u, draws.resp, draws.resp_off,
        given.bits, given.weights, given.means, given.covariances, given.prec_chol,
        out["weights_"], out["means_"],
        out["covariances_"].reshape(P, -1), out["precisions_cholesky_"].reshape(P, -1),
        out["lower_bound_"], out["lower_bounds_"], out["n_iter_"], out["converged_"], status,
        n_threads)
    out["lower_bounds_"] = out["lower_bounds_"][:, :int(max_iter)]
    for i in np.flatnonzero(status != FITTED):
        _fit_alone(out, i, X[offsets[i]:offsets[i + 1]], params, seeds[i],
                   None if weights is None else weights[i], {} if inits is None else inits[i])
    out["converged_"] = out["converged_"].astype(bool)
    out["fallback_"] = status != FITTED
    out["precisions_"] = G.precisions_from_chol(out["precisions_cholesky_"], covariance_type)
    n_bad = int(np.count_nonzero(~out["converged_"]))
    if n_bad and max_iter > 0:
        warnings.warn(f"{n_bad} of {P} problems did not converge. Try different init "
                      "parameters, or increase max_iter, tol, or check for degenerate data.",
                      compatible(ConvergenceWarning), stacklevel=2)
    return GaussianMixtureBatch(params, out, seeds)


def _check_problems(X, lengths, n_components):
    """(rows stacked as one float64 C-contiguous array, offsets (P + 1,) int64, the form of
    X: "list", "3d" or "stacked"), checked with GaussianMixture's rules for each problem
    (finite, at least max(2, K) rows)."""
    form = "list"
    if isinstance(X, np.ndarray) and X.ndim == 3:
        X, form = list(X), "3d"
    if isinstance(X, (list, tuple)):
        if lengths is not None:
            raise ValueError("lengths is for one stacked array; a list of arrays gives each "
                             "problem's rows itself")
        if len(X) == 0:
            raise ValueError("X is an empty list; expected at least one problem")
        parts = [V.check_array(x, name=f"X[{i}]", min_samples=1,
                               max_magnitude=V.MAX_GAUSSIAN_MAGNITUDE)
                 for i, x in enumerate(X)]
        D = {p.shape[1] for p in parts}
        if len(D) > 1:
            first = next(i for i, p in enumerate(parts) if p.shape[1] != parts[0].shape[1])
            raise ValueError(f"every problem must have the same number of features: X[0] has "
                             f"{parts[0].shape[1]}, X[{first}] has {parts[first].shape[1]}")
        sizes = np.array([len(p) for p in parts], dtype=np.int64)
        rows = np.concatenate(parts, axis=0).astype(np.float64, copy=False)
        offsets = np.zeros(len(parts) + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
    else:
        rows = V.check_array(X, min_samples=1, max_magnitude=V.MAX_GAUSSIAN_MAGNITUDE)
        rows = rows.astype(np.float64, copy=False)
        if lengths is None:
            raise ValueError("one array of stacked problems needs lengths (rows per problem); "
                             "or pass a list of arrays")
        offsets = V.lengths_to_offsets(lengths, rows.shape[0])
        form = "stacked"
    sizes = np.diff(offsets)
    need = max(2, int(n_components))
    if sizes.min() < need:
        i = int(np.argmin(sizes))
        raise ValueError(f"problem {i} has {int(sizes[i])} row(s); each problem needs at least "
                         f"{need} (n_samples >= n_components = {int(n_components)}, and 2)")
    return np.ascontiguousarray(rows), offsets, form


def _problem_weights(sample_weight, form, offsets, n_components):
    """Each problem's sample weights as float64 copies (None: unweighted), checked and
    rescaled by a power of two with GaussianMixture's rules (finite, >= 0, at least
    n_components positive; _validation.check_sample_weight) and its wording, prefixed
    with the problem."""
    if sample_weight is None:
        return None
    P, sizes = len(offsets) - 1, np.diff(offsets)
    if form == "list":
        if isinstance(sample_weight, np.ndarray) or not isinstance(sample_weight, (list, tuple)):
            raise ValueError("with X a list of arrays, sample_weight must be a list of 1-D "
                             f"arrays (one per problem), got {type(sample_weight).__name__}")
        parts = list(sample_weight)
    else:
        try:
            sw = np.array(sample_weight, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"sample_weight must be numeric: {exc}") from exc
        if form == "3d" and sw.shape != (P, int(sizes[0])):
            raise ValueError(f"sample_weight.shape == {sw.shape}, expected "
                             f"({P}, {int(sizes[0])}) with a 3-D X of {P} problems")
        if form == "stacked" and sw.shape != (int(offsets[-1]),):
            raise ValueError(f"sample_weight.shape == {sw.shape}, expected "
                             f"({int(offsets[-1])},): one weight per row of X")
        parts = list(sw) if form == "3d" else np.split(sw, offsets[1:-1])
    if len(parts) != P:
        raise ValueError(f"sample_weight has {len(parts)} arrays for {P} problems")
    out = []
    for i, (w, n) in enumerate(zip(parts, sizes.tolist())):
        try:
            w = V.check_sample_weight(np.array(w, dtype=np.float64), n)
        except ValueError as exc:
            raise ValueError(f"problem {i}: {exc}") from exc
        if np.count_nonzero(w) < n_components:
            raise ValueError(f"problem {i}: Expected at least n_components = {n_components} "
                             f"samples with a positive sample_weight, got "
                             f"{np.count_nonzero(w)}")
        out.append(w)
    return out


def _problem_inits(given, params, n_problems, n_features):
    """(each problem's *_init keyword arguments, or None when none is given; the kernel's
    _GivenParams), each value either shared (GaussianMixture's shape) or problem i's slice
    of a stacked one, checked by GaussianMixture._check_inits (its wording; prefixed with
    the problem when stacked)."""
    given = {name: value for name, value in given.items() if value is not None}
    K, ct = int(params["n_components"]), params["covariance_type"]
    shapes = dict(weights_init=(K,), means_init=(K, n_features),
                  precisions_init=kernels.prec_chol_shape(ct, K, n_features))
    if not given:
        return None, _GivenParams(shapes, ct, [{}])
    stacked = set()
    for name, value in given.items():
        try:
            value = np.array(value, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be numeric: {exc}") from exc
        if value.ndim == len(shapes[name]) + 1:
            if len(value) != n_problems:
                raise ValueError(f"{name} stacked per problem must have {n_problems} "
                                 f"entries (one per problem), got {len(value)}")
            stacked.add(name)
        given[name] = value          # a copy: the caller's array is never used
    inits = [{name: value[i] if name in stacked else value for name, value in given.items()}
             for i in range(n_problems if stacked else 1)]
    for i, kw in enumerate(inits):
        try:
            GaussianMixture(**params, **kw)._check_inits(n_features)
        except ValueError as exc:
            raise (ValueError(f"problem {i}: {exc}") if stacked else exc) from None
    return (inits if stacked else inits * n_problems), _GivenParams(shapes, ct, inits)


class _GivenParams:
    """The kernel's starting parameters from *_init: ``bits`` (GIVEN_BITS of those given),
    ``weights`` (R, K), ``means`` (R, K, D), ``covariances`` and ``prec_chol`` (R, S) as
    GaussianMixture._initial_params derives them from precisions_init; R = 1 (shared, or
    nothing given: zeros) or P (stacked), the kernel takes row 0 or row p."""

    def __init__(self, shapes, covariance_type, inits):
        self.bits = sum(GIVEN_BITS[name] for name in inits[0])
        R, prec_shape = len(inits), shapes["precisions_init"]
        self.weights = np.zeros((R,) + shapes["weights_init"])
        self.means = np.zeros((R,) + shapes["means_init"])
        self.prec_chol = np.zeros((R, int(np.prod(prec_shape))))
        self.covariances = np.zeros_like(self.prec_chol)
        for r, kw in enumerate(inits):
            if "weights_init" in kw:
                self.weights[r] = kw["weights_init"]
            if "means_init" in kw:
                self.means[r] = kw["means_init"]
            if "precisions_init" in kw:
                pc = G.prec_chol_from_precisions(kw["precisions_init"], covariance_type)
                self.prec_chol[r] = pc.ravel()
                self.covariances[r] = G.covariances_from_chol(pc, covariance_type).ravel()


def _problem_seeds(random_state, n_problems):
    """Each problem's int seed: an int random_state for all, else one drawn per problem."""
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        V.check_random_state(random_state)        # its range, as GaussianMixture checks it
        return np.full(n_problems, int(random_state), dtype=np.int64)
    rng = V.check_random_state(random_state)
    return rng.randint(np.iinfo(np.int32).max, size=n_problems).astype(np.int64)


class _Draws:
    """The random numbers of every problem's starts, as GaussianMixture draws them from
    ``RandomState(seed)`` (restart 0) and the restart streams of emfast._em.restart_rngs.
    ``weights``: each problem's (checked) sample weights, or None; ``todo``: the problems
    the kernel will fit (the others draw nothing: GaussianMixture fits them). Problems with
    the same seed, number of rows and (where the draws use them) weights share one set
    (they draw the same); ``draw_of`` of a problem not fitted is 0, a set it never reads."""

    def __init__(self, init_params, K, n_init, seeds, sizes, weights=None, todo=None):
        self.n_trials = 2 + int(np.log(K))
        # "random" draws uniform responsibilities whatever the weights
        weighted_draws = weights is not None and init_params != "random"
        keys, first = {}, {}
        self.draw_of = np.zeros(len(seeds), dtype=np.int64)
        for p, (seed, N) in enumerate(zip(seeds.tolist(), sizes.tolist())):
            if todo is not None and not todo[p]:
                continue
            key = (seed, N, weights[p].tobytes() if weighted_draws else None)
            self.draw_of[p] = keys.setdefault(key, len(keys))
            first.setdefault(self.draw_of[p], p)
        n_sets, T = max(len(keys), 1), self.n_trials
        self.idx = np.zeros((n_sets, n_init, K), dtype=np.int64)
        self.u = np.zeros((n_sets, n_init, max((K - 1) * T, 1)))
        resp = []
        self.resp_off = np.zeros(n_sets + 1, dtype=np.int64)
        for (seed, N, _), s in keys.items():
            w = None if weights is None else weights[first[s]]
            for r, rng in enumerate(restart_rngs(np.random.RandomState(seed), n_init)):
                if init_params in ("kmeans", "k-means++"):
                    # emfast.mixture._kmeans.kmeans_plusplus: the first row (p by weight),
                    # then per round T uniforms (while the potential is positive; else the
                    # kernel hands the problem back)
                    p = np.full(N, 1.0 / N) if w is None else w / w.sum()
                    self.idx[s, r, 0] = draw_row(rng, p)
                    for c in range(1, K):
                        self.u[s, r, (c - 1) * T:c * T] = rng.uniform(size=T)
                elif init_params == "random_from_data":
                    # GaussianMixture._initial_stats
                    p = None if w is None else w / w.sum()
                    self.idx[s, r] = rng.choice(N, size=K, replace=False, p=p)
                else:   # GaussianMixture._random_resp_chunks: the same stream in one draw
                    part = rng.uniform(size=(N, K))
                    part /= part.sum(axis=1)[:, None]
                    resp.append(part.ravel())
            self.resp_off[s + 1] = self.resp_off[s] + (N * K * n_init
                                                         if init_params == "random" else 0)
        self.resp = np.concatenate(resp) if resp else np.empty(0)


def _fit_alone(out, i, X, params, seed, sample_weight, inits):
    """Problem i fitted by GaussianMixture itself (its degenerate-case handling and
    warnings, but ConvergenceWarning: fit_many warns once for all problems; its sample
    weights and *_init parameters), written into the stacked outputs."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        gm = GaussianMixture(**params, **inits, random_state=int(seed)).fit(
            X, sample_weight=sample_weight)
    out["weights_"][i] = gm.weights_
    out["means_"][i] = gm.means_
    out["covariances_"][i] = gm.covariances_
    out["precisions_cholesky_"][i] = gm.precisions_cholesky_
    out["lower_bound_"][i] = gm.lower_bound_
    out["lower_bounds_"][i] = np.nan
    out["lower_bounds_"][i, :len(gm.lower_bounds_)] = gm.lower_bounds_
    out["n_iter_"][i] = gm.n_iter_
    out["converged_"][i] = gm.converged_
