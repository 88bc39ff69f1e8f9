"""emfast.GaussianMixture: a drop-in for sklearn.mixture.GaussianMixture."""

import math
import threading
import warnings

import numpy as np

from emfast import _validation as V
from emfast import kernels
from emfast._config import BACKENDS, get_backend, resolve_n_threads
from emfast._em import BoundEStep, check_accelerate, fit_mixture
from emfast._estimator import ParamsMixin
from emfast._stats import GaussianStats
from emfast._threads import single_threaded_blas
from emfast.exceptions import DegenerateComponentWarning
from emfast.mixture import _gaussian as G
from emfast.mixture import _gaussian_missing as GM
from emfast.mixture import _chunked, _kmeans
from emfast.mixture._semi_supervised import LabelledRows, SemiSupervisedFamily
from emfast.mixture._kmeans import kmeans, kmeans_plusplus

_INIT_PARAMS = ("kmeans", "k-means++", "random", "random_from_data")


class _GaussianFamily(BoundEStep):
    """E-step and M-step of a Gaussian mixture, as the EM drivers want them.

    The drivers hand every E-step the same X and weights; each thread (restarts run
    concurrently, one at a time per thread) binds the kernel to them once, with its own
    statistics buffers, and reuses that binding for every later iteration (until its
    thread count changes). X's blocks (the backend's ``estep_blocks``: X transposed as the
    kernel reads it, where the backend keeps it) are made once and shared by all threads.
    """

    natural_coordinates = True     # SQUAREM: pack gives the parameters themselves

    def __init__(self, covariance_type, n_components, reg_covar, backend, weight_sum,
                 filled_rows=None):
        self.covariance_type = covariance_type
        self.n_components = n_components
        self.reg_covar = reg_covar
        self.backend = backend
        self.weight_sum = weight_sum
        # X with NaN: its rows with each missing value filled (the column mean), row for
        # row; the E-step is then the missing-value kernel's, and empty components are
        # re-seeded from these rows
        self.filled_rows = filled_rows
        self._init_binding()
        self._blocks_lock = threading.Lock()
        self._blocks_of = self._blocks = None

    def _bind(self, X, sample_weight, n_threads):
        """The E-step bound to X and the weights (the complete-data or missing-value one)."""
        if self.filled_rows is None:
            return G.EStep(X, sample_weight, self.covariance_type, self.n_components,
                           self.backend, n_threads, self.weight_sum,
                           self._x_blocks(X, n_threads))
        return GM.MissingEStep(X, sample_weight, self.n_components, self.backend, n_threads,
                               self.weight_sum)

    def _x_blocks(self, X, n_threads):
        """X's estep_blocks (None where the backend keeps none), made by the first thread
        that asks: one copy per fit, not one per thread."""
        with self._blocks_lock:
            if self._blocks_of is not X:
                # on the E-step's thread count for X (a small X gets one thread: waking a
                # team for a few blocks cost 9 ms, more than a whole small fit)
                self._blocks = get_backend(self.backend).estep_blocks(
                    X, kernels._threads_for(X.shape[0], n_threads))
                self._blocks_of = X
            return self._blocks

    def m_step(self, X, sample_weight, stats, rng):
        weights, means, cov = G.mstep_moments(stats, self.reg_covar)
        empty = G.empty_components(stats)
        if len(empty):
            rows = X if self.filled_rows is None else self.filled_rows
            weights, means, cov = self._reseed(rows, sample_weight, empty, weights, means, cov,
                                               rng)
        prec_chol, cov = G.precision_cholesky(cov, self.covariance_type, self.reg_covar)
        return G.GaussianParams(self.covariance_type, weights, means, cov, prec_chol)

    def pack(self, params):
        """SQUAREM's vector of ``params``: G.pack_params."""
        return G.pack_params(params)

    def unpack(self, vec, like):
        """The parameters of :meth:`pack`'s vector: G.unpack_params."""
        return G.unpack_params(vec, like)

    def _reseed(self, X, sample_weight, empty, weights, means, cov, rng):
        """Give each empty component a random data row as its mean, the average covariance
        of the others, and an equal share of the weight; warn."""
        K = len(weights)
        keep = np.setdiff1d(np.arange(K), empty)
        p = (None if sample_weight is None or not sample_weight.sum() > 0
             else sample_weight / sample_weight.sum())
        rows = rng.choice(X.shape[0], size=len(empty), p=p)
        means = means.copy()
        means[empty] = X[rows]
        if self.covariance_type != "tied" and len(keep):
            cov = cov.copy()
            cov[empty] = np.average(cov[keep], axis=0, weights=weights[keep])
        weights = weights.copy()
        weights[empty] = 1.0 / K
        weights /= weights.sum()
        warnings.warn(
            f"{len(empty)} component(s) lost all their samples and were re-seeded at random "
            f"data points: {empty.tolist()}. Consider fewer components.",
            DegenerateComponentWarning, stacklevel=5)
        return weights, means, cov


class _ChunkedGaussianFamily(_GaussianFamily):
    """The Gaussian family over X read in pieces (_chunked.ChunkedRows): the same M-step,
    the E-step of :class:`_chunked.ChunkedEStep` (the in-memory one's statistics)."""

    def _bind(self, X, sample_weight, n_threads):
        return _chunked.ChunkedEStep(X, sample_weight, self.covariance_type,
                                     self.n_components, self.backend, n_threads,
                                     self.weight_sum)


class GaussianMixture(ParamsMixin):
    """Gaussian mixture fitted by EM; the API of ``sklearn.mixture.GaussianMixture``.

    Change ``from sklearn.mixture import GaussianMixture`` to ``from emfast import
    GaussianMixture``: the constructor parameters, fitted attributes and methods are the
    same, with the same meanings and convergence rule. Beyond scikit-learn:

    * ``fit(X, sample_weight=...)`` weights the samples (integer weights act like repeats);
    * ``n_init`` restarts run concurrently;
    * ``backend`` ("auto", "cython", "numba") and ``n_threads`` (None: all usable CPUs) pick
      the compiled kernels; results do not depend on ``n_threads``;
    * a covariance that is not positive definite is regularised and a component that lost
      all its samples is re-seeded, each with a ``DegenerateComponentWarning``, where
      scikit-learn raises ``ValueError``;
    * k-means and k-means++ initialisation are emfast's own (no scikit-learn needed), compiled
      like the EM kernels. Up to 16384 rows, "kmeans" draws the same random numbers as
      scikit-learn's ``KMeans(n_init=1)`` and ends at the same clusters; with more rows it
      runs k-means on a random sample of 16384 rows and starts EM from the full data's
      clusters around the sample's centres (one pass over X instead of a Lloyd run over
      all rows; fit quality: benchmarks/init_quality.py).

    * missing values: X may hold NaN (in ``fit``, ``predict``, ``predict_proba``,
      ``score_samples``, ``score``, ``bic``, ``aic``). Each row then counts through the
      marginal density of its observed values, and the M-step uses the conditional means
      and covariances of its missing ones (Ghahramani & Jordan 1994); ``impute(X)`` fills
      them with the mixture's conditional means. This is maximum likelihood when values are
      missing at random (MCAR or MAR), not when missingness depends on the missing value.
      The starting point is chosen by ``init_params`` from the rows with each missing value
      replaced by its column's mean; rows missing everywhere are left out of the fit. Without
      NaN nothing changes: the same kernels, the same results.

    * X too large for memory: ``fit`` takes a ``np.memmap`` or chunks of rows and runs the
      same exact EM, one pass per iteration (:meth:`fit`); ``partial_fit`` runs online EM
      over batches, its step sizes set by ``learning_decay`` and ``learning_offset``
      (:meth:`partial_fit`, which says when to use which).

    * ``accelerate="squarem"``: SQUAREM (Varadhan & Roland 2008) around the same EM map,
      extrapolating over the weights, means and covariances (a point that is no model is
      refused for the plain EM step: :func:`emfast.mixture._gaussian.pack_params`); the same
      optimum in far fewer iterations on slowly converging fits (overlapping components;
      on the benchmark's 25 Gaussian fits, from the same starts, never a lower
      ``lower_bound_`` than plain EM's).
      It stops when one SQUAREM cycle (two EM steps and an extrapolation) changes the
      lower bound by less than ``tol``, or when the gain still to come, estimated from an
      EM step's gain and the rate of convergence, is below ``tol`` (plain EM's own test
      where EM converges fast, far stricter where it crawls, so that SQUAREM stops near
      the optimum and not on a flat stretch: ``emfast._em.squarem_loop``). ``n_iter_``
      then counts E-steps (``max_iter`` bounds them) and ``lower_bounds_`` has one entry
      per E-step, rejected extrapolations included. It applies to every ``fit`` (missing
      values, chunks, semi-supervised, ``emfast.dask``), not to ``partial_fit``. None
      (default): plain EM.

    Parameters are stored in float64 whatever the dtype of X (float32 X is read as is and
    accumulated in float64).

    ``random_state`` (None, an int or a ``RandomState``, as in scikit-learn) gives the stream
    that initialisation and the re-seeding of empty components draw from. With ``n_init=1``
    the fit draws from it alone. With ``n_init > 1``, restart 0 draws from that same stream,
    so it is exactly the ``n_init=1`` fit and ``n_init > 1`` never ends with a lower
    ``lower_bound_``; restart i >= 1 draws from its own stream, fixed before any restart
    runs by the stream's state (``emfast._em.restart_rngs``), so the result does not depend
    on ``n_threads`` or on the order in which the concurrent restarts finish. scikit-learn
    instead runs its restarts one after another from the one stream, so restarts i >= 1
    start from other points than scikit-learn's restarts i >= 1.
    """

    def __init__(self, n_components=1, *, covariance_type="full", tol=1e-3, reg_covar=1e-6,
                 max_iter=100, n_init=1, init_params="kmeans", weights_init=None,
                 means_init=None, precisions_init=None, random_state=None, warm_start=False,
                 verbose=0, verbose_interval=10, semi_supervised=False, unlabeled_weight=1.0,
                 learning_decay=0.6, learning_offset=0.0, backend="auto", n_threads=None,
                 accelerate=None):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.semi_supervised = semi_supervised
        self.unlabeled_weight = unlabeled_weight
        self.learning_decay = learning_decay
        self.learning_offset = learning_offset
        self.backend = backend
        self.n_threads = n_threads
        self.accelerate = accelerate

    # A _kmeans.KMeansMemo shared by fits of the same X and sample weights that may start
    # from the same k-means (model selection: one per K for every covariance type); None:
    # each fit runs its own.
    _kmeans_memo = None

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags

    # ------------------------------------------------------------------ checks
    def _check_parameters(self):
        V.check_em_parameters(self, _INIT_PARAMS, BACKENDS)
        V.check_option("covariance_type", self.covariance_type, kernels.COVARIANCE_TYPES)
        V.check_real("reg_covar", self.reg_covar, 0.0)
        if not isinstance(self.semi_supervised, (bool, np.bool_)):
            raise TypeError("The 'semi_supervised' parameter must be a bool, got "
                            f"{self.semi_supervised!r}")
        V.check_real("unlabeled_weight", self.unlabeled_weight, 0.0)
        if not 0.5 < V.check_real("learning_decay", self.learning_decay, 0.0) <= 1.0:
            raise ValueError("The 'learning_decay' parameter must be in (0.5, 1] (online EM "
                             f"converges for those), got {self.learning_decay!r}")
        V.check_real("learning_offset", self.learning_offset, 0.0)
        check_accelerate(self.accelerate)
        get_backend(self.backend)
        return resolve_n_threads(self.n_threads)

    def _check_inits(self, n_features):
        """Validated float64 copies of weights_init, means_init, precisions_init (or None)."""
        K, D, ct = self.n_components, n_features, self.covariance_type
        weights = means = prec = None
        if self.weights_init is not None:
            weights = _init_array("weights_init", self.weights_init, (K,))
            if np.any(weights < 0) or np.any(weights > 1):
                raise ValueError(
                    "The parameter 'weights' should be in the range [0, 1], but got max value "
                    f"{weights.max():.5f}, min value {weights.min():.5f}")
            if abs(1.0 - weights.sum()) > 1e-8:
                raise ValueError("The parameter 'weights' should be normalized, but got "
                                 f"sum(weights) = {weights.sum():.5f}")
        if self.means_init is not None:
            means = _init_array("means_init", self.means_init, (K, D))
        if self.precisions_init is not None:
            prec = _init_array("precisions_init", self.precisions_init,
                             kernels.prec_chol_shape(ct, K, D))
            if ct in ("diag", "spherical"):
                if np.any(prec <= 0):
                    raise ValueError(f"'{ct} precision' should be positive")
            else:
                for p in (prec if ct == "full" else prec[None]):
                    V.check_spd(p, f"'{ct} precision'")
        return weights, means, prec

    def _validate_fit_data(self, X, sample_weight):
        """(X, sample_weight, feature names, missing): ``missing`` is None for complete X,
        else the GM.MissingData that the fit runs on."""
        names = V.feature_names(X)
        X = V.check_array(X, min_samples=2, estimator=type(self).__name__, allow_nan=True,
                          max_magnitude=V.MAX_GAUSSIAN_MAGNITUDE)
        N, D = X.shape
        sw = V.check_sample_weight(sample_weight, N)
        missing = None
        if V.has_nan(X):
            empty = np.flatnonzero(np.isnan(X).all(axis=0))
            if len(empty):
                raise ValueError(f"feature(s) {', '.join(map(str, empty[:10]))} of X are "
                                 "missing (NaN) in every row")
            missing = GM.MissingData(X, sw)
            N, sw = len(missing.X), missing.sample_weight
        if N < self.n_components:
            raise ValueError("Expected n_samples >= n_components but got n_components = "
                             f"{self.n_components}, n_samples = {N}"
                             + (" (rows with at least one observed value)" if missing else ""))
        if sw is not None and np.count_nonzero(sw) < self.n_components:
            raise ValueError(
                f"Expected at least n_components = {self.n_components} samples with a "
                f"positive sample_weight, got {np.count_nonzero(sw)}")
        return X, sw, names, missing

    def _validate_data(self, X):
        """X for predict/score: fitted, same number (and names) of features."""
        self._check_is_fitted("means_")
        return V.check_like_fit(self, X)

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y=None, sample_weight=None):
        """Estimate the parameters by EM (``n_init`` starts, the best kept). Returns self.

        ``y`` is ignored, as scikit-learn ignores it, unless ``semi_supervised=True``: it
        then holds partial labels, one per row: the component of a labelled row, -1 for an
        unlabelled one. Labelled rows keep their component (responsibility 1); the
        unlabelled rows' statistics count ``unlabeled_weight`` times (Nigam et al. 2000's
        lambda). When every component has labelled rows, EM starts from their means and
        covariances (``init_params`` is not used); otherwise from ``init_params`` on all
        rows. (Opt-in, because scikit-learn code passes class labels as ``y`` through
        pipelines and cross-validation and expects them ignored.)

        X too large for memory: a ``np.memmap``, a list of 2-D arrays (chunks of rows), or a
        function that returns an iterable of chunks afresh at each call (a reader of files,
        say). EM is then exact with bounded memory: each iteration reads X once, one
        group of the E-step kernel's fixed split at a time (about N / 64 rows for large N;
        a memmap's pages are given back once read), and gives the in-memory fit's
        statistics bit for bit, so from the same start the fit is the in-memory one
        exactly. The start is the in-memory fit's too, exactly up to 16,384 rows and with
        "random_from_data", to rounding with "kmeans" (the same k-means on the same
        sample of rows, its clusters' statistics summed over the pieces); "random" and
        "k-means++" start from 16,384 rows drawn at random.
        ``sample_weight`` is then one (N,) array for all rows, ``y`` is ignored; NaN is
        refused (the missing-value fit needs X in memory, grouped by pattern), as is
        ``semi_supervised``. Restarts run one after another, each on all threads. For data
        that arrives over time or is too large for many passes, see :meth:`partial_fit`.
        """
        if _chunked.is_chunked(X):
            self._fit_chunked(X, sample_weight, y)
        else:
            self._fit(X, sample_weight, y)
        return self

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit (``y``: as in :meth:`fit`), then return the most probable component of each
        row of X."""
        if _chunked.is_chunked(X):
            raise ValueError("fit_predict needs X in memory (one array); with chunks or a "
                             "memmap, call fit, then predict on each chunk")
        X = self._fit(X, sample_weight, y)
        return self._log_prob(X, norm=False)[0].argmax(axis=1)

    def _fit(self, X, sample_weight, y=None):
        """Fit; returns X as validated (the caller's rows, in order)."""
        n_threads = self._check_parameters()
        X_in, sw, names, missing = self._validate_fit_data(X, sample_weight)
        if not self.semi_supervised:
            if y is not None and np.any(np.asarray(y, dtype=object) == -1):
                warnings.warn("y is ignored, as scikit-learn ignores it; to use it as partial "
                              "labels (-1 = unlabelled), set semi_supervised=True.",
                              UserWarning, stacklevel=3)
            y = None
        y = V.check_partial_labels(y, X_in.shape[0], self.n_components)
        # with NaN: EM on the rows grouped by pattern, the start from their mean-filled copy
        X, start_X = (X_in, X_in) if missing is None else (missing.X, missing.filled)
        if y is not None and missing is not None:
            y = y[missing.order]
        inits = self._check_inits(X.shape[1])
        family, X, sw, start = self._family(X, sw, start_X, y, missing is not None, inits)
        self._run_em(family, X, sw, start, n_threads, names, sequential=bool(self.verbose))
        return X_in

    def partial_fit(self, X, y=None, sample_weight=None):
        """One step of online (stepwise) EM on the batch X; returns self.

        Cappe & Moulines (2009): the model keeps running sufficient statistics s (per unit
        of sample weight); each batch's statistics s_b at the current parameters are
        blended in, s <- (1 - g_t) s + g_t s_b, and the parameters are the M-step of s.
        The t-th batch has step g_t = (t + learning_offset) ** -learning_decay (the first
        batch: 1). ``learning_decay`` in (0.5, 1] makes the steps sum to infinity and
        their squares not, the condition for convergence to a stationary point of the
        likelihood. The default 0.6 forgets the first batches (taken at poor parameters)
        quickly while still averaging out the noise of single batches; 1 with offset 0
        is the plain running average of all batches, slow to leave a poor start.
        ``learning_offset`` (default 0) damps the first steps. Batches should be shuffled
        and of similar size (each counts by its step, not by its rows).

        The first call starts from ``init_params`` (and ``*_init``) on the batch (at least
        ``n_components`` rows); a model fitted by :meth:`fit` continues from its
        parameters (as the running statistics, step 1). ``y`` is ignored; NaN is refused.
        Sets ``n_steps_`` (batches seen) and ``lower_bound_`` (the batch's mean
        log-likelihood before its step); ``converged_`` is False (nothing to test).

        When to use what: ``fit`` on an array when X fits in memory; ``fit`` on a memmap
        or chunks for the same exact EM on X too large for memory (one pass per
        iteration); ``partial_fit`` when X arrives over time, or is so large that even a
        few dozen passes cost too much: one pass, or a few, over shuffled batches gets
        close to the batch optimum (not exactly: the last steps' noise remains).
        """
        n_threads = self._check_parameters()
        online = getattr(self, "_online", None)
        first = not hasattr(self, "means_")
        K, ct, reg = self.n_components, self.covariance_type, float(self.reg_covar)
        if first:
            names = V.feature_names(X)
            X = V.check_array(X, min_samples=max(2, K), estimator=type(self).__name__,
                              max_magnitude=V.MAX_GAUSSIAN_MAGNITUDE)
        else:
            X = V.check_like_fit(self, X)
            if V.has_nan(X):
                raise ValueError("partial_fit does not handle missing values (NaN): impute "
                                 "them, or fit X in memory")
        sw = V.check_sample_weight(sample_weight, X.shape[0])
        rng = V.check_random_state(self.random_state)
        family = _GaussianFamily(ct, K, reg, self.backend,
                                 float(X.shape[0] if sw is None else sw.sum()))
        with single_threaded_blas():
            if first:
                params = self._initial_params(X, sw, rng, self._check_inits(X.shape[1]),
                                              n_threads)
            else:
                params = self._warm_params(X.shape[1])
            batch = family.e_step(X, sw, params, n_threads)
            batch = batch * (1.0 / batch.weight_sum)      # per unit weight (and a copy)
            if online is None and not first:    # after fit: its parameters are step 1
                online = (G.stats_of_params(params, reg), 1)
            if online is None:
                running, t = batch, 1
            else:
                t = online[1] + 1
                step = (t + float(self.learning_offset)) ** -float(self.learning_decay)
                running = G.recentre(online[0], batch.centre) * (1.0 - step) + batch * step
            params = family.m_step(X, sw, running, rng)
        self._set_params(params)
        self._online = (running, t)
        self.n_steps_ = t
        self.lower_bound_ = batch.loglik
        self.converged_ = False
        self.n_iter_ = t
        if first:
            self.n_features_in_ = X.shape[1]
            if names is not None:
                self.feature_names_in_ = names
        return self

    def _fit_chunked(self, X, sample_weight, y):
        """fit on X read in pieces (see :meth:`fit`): the in-memory fit's EM, over
        _chunked.ChunkedRows."""
        n_threads = self._check_parameters()
        if self.semi_supervised:
            raise ValueError("semi-supervised fitting (y) needs X in memory, not in chunks")
        rows = _chunked.ChunkedRows(X, type(self).__name__)
        N, D = rows.shape
        K = self.n_components
        if N < max(2, K):
            raise ValueError(f"X has {N} rows in all its chunks; expected at least "
                             f"max(2, n_components = {K})")
        sw = V.check_sample_weight(sample_weight, N)
        if sw is not None and np.count_nonzero(sw) < K:
            raise ValueError(f"Expected at least n_components = {K} samples with a positive "
                             f"sample_weight, got {np.count_nonzero(sw)}")
        inits = self._check_inits(D)
        family = _ChunkedGaussianFamily(self.covariance_type, K, float(self.reg_covar),
                                        self.backend, float(N if sw is None else sw.sum()))

        def start(rows_, sw_, rng, threads):
            if all(i is not None for i in inits):                 # no rows needed
                return self._initial_params(None, None, rng, inits, threads)
            if N <= _kmeans.SAMPLE_ROWS:                          # all rows, in memory
                return self._initial_params(rows.take(np.arange(N)), sw, rng, inits, threads)
            if self.init_params == "random_from_data":            # K rows, taken
                return self._initial_params(rows, sw, rng, inits, threads)
            if self.init_params == "kmeans":
                stats = _chunked.kmeans_start(rows, sw, K, self.covariance_type, rng,
                                              self.backend, threads)
                return self._initial_params(None, None, rng, inits, threads, stats=stats)
            pick = np.sort(rng.randint(0, N, size=_kmeans.SAMPLE_ROWS))  # a sample of rows
            return self._initial_params(rows.take(pick), None if sw is None else sw[pick],
                                        rng, inits, threads)

        self._run_em(family, rows, sw, start, n_threads, None, sequential=True)

    def _run_em(self, family, X, sw, start, n_threads, names, sequential):
        """EM of ``family`` over X (a warm start, or ``n_init`` restarts from ``start``), and
        the fitted attributes from its best run. ``sequential``: restarts one after another.
        The chunked fit and ``emfast.dask`` call it with their own families (and, for Dask,
        X a sample of the rows, for the M-step's re-seeding)."""
        warm = bool(self.warm_start) and hasattr(self, "converged_")
        run = fit_mixture(self, family, X, sw, start,
                          self._warm_params(X.shape[1]) if warm else None,
                          n_threads=n_threads, sequential=sequential)
        self._set_params(run.params)
        self.n_features_in_ = X.shape[1]
        V.set_feature_names(self, names)
        self.__dict__.pop("_online", None)       # partial_fit's running statistics

    def _family(self, X, sw, start_X, y, has_nan, inits):
        """(family, the rows and weights the EM driver passes it, the starting-point
        function for fit_restarts). ``start_X``: X's rows with NaN filled (X itself without
        NaN); ``y``: validated partial labels in X's row order, or None."""
        K, ct, reg = self.n_components, self.covariance_type, float(self.reg_covar)
        labelled = None if y is None else y >= 0
        if labelled is None or not labelled.any():
            family = _GaussianFamily(ct, K, reg, self.backend,
                                     float(X.shape[0] if sw is None else sw.sum()),
                                     start_X if has_nan else None)
            return family, X, sw, (lambda X_, sw_, rng, threads: self._initial_params(
                start_X, sw_, rng, inits, threads))
        lam = float(self.unlabeled_weight)
        free = ~labelled
        sw_u = (np.ones(np.count_nonzero(free)) if sw is None else sw[free]) * lam
        sw_l = None if sw is None else sw[labelled]
        family = _GaussianFamily(ct, K, reg, self.backend, float(sw_u.sum()),
                                 np.ascontiguousarray(start_X[free]) if has_nan else None)
        rows = LabelledRows(X[labelled], sw_l, y[labelled], K)
        family = SemiSupervisedFamily(family, rows, float(sw_u.sum()) + rows.weight_sum,
                                      has_nan)
        if rows.covers(K):
            seed = LabelledRows(start_X[labelled], sw_l, y[labelled], K)
            start = (lambda X_, sw_, rng, threads: self._initial_params(
                None, None, rng, inits, threads, stats=_labelled_stats(seed, ct)))
        else:
            start = (lambda X_, sw_, rng, threads: self._initial_params(
                start_X, sw, rng, inits, threads))
        return family, np.ascontiguousarray(X[free]), sw_u, start

    def _initial_params(self, X, sw, rng, inits, n_threads, stats=None):
        """The starting parameters: ``inits`` where given, the rest from the statistics
        ``stats`` or else from those of ``init_params`` on X."""
        weights_init, means_init, prec_init = inits
        ct = self.covariance_type
        weights = means = cov = None
        if weights_init is None or means_init is None or prec_init is None:
            if stats is None:
                stats = self._initial_stats(X, sw, rng, n_threads)
            _, means, cov = G.mstep_moments(stats, self.reg_covar)
            # scikit-learn starts from unnormalised weights nk / n_samples.
            weights = (stats.nk + G.NK_EPS) / stats.weight_sum
        if weights_init is not None:
            weights = weights_init
        if means_init is not None:
            means = means_init
        if prec_init is None:
            prec_chol, cov = G.precision_cholesky(cov, ct, self.reg_covar)
        else:
            prec_chol = G.prec_chol_from_precisions(prec_init, ct)
            cov = G.covariances_from_chol(prec_chol, ct)
        return G.GaussianParams(ct, weights, means, cov, prec_chol)

    def _initial_stats(self, X, sw, rng, n_threads):
        """Statistics of the starting assignment chosen by ``init_params``.

        "kmeans": k-means (one k-means++ start, Lloyd to scikit-learn's stopping rule), then
        the statistics of the clusters of its centres from one compiled pass that also
        assigns the rows. With more than ``emfast.mixture._kmeans.SAMPLE_ROWS`` rows the
        k-means runs on a random sample of that many rows, and the statistics pass over all
        rows is the only full-data Lloyd step (its means are the full data's cluster means
        of the sample's centres): the EM iterations that follow refine far more than the
        remaining Lloyd steps would (benchmarks/init_quality.py: the final lower bounds are
        not below scikit-learn's). "k-means++" and
        "random_from_data": one row per component, no pass over X. "random": scikit-learn's
        uniform random responsibilities (the same stream), one compiled pass per chunk.
        """
        ct, K = self.covariance_type, self.n_components
        N = X.shape[0]
        if self.init_params == "kmeans":
            def run():
                return kmeans(X, K, rng, sw, full_iter=0, final_labels=False,
                              backend=self.backend, n_threads=n_threads)[0]
            memo = self._kmeans_memo
            centres = run() if memo is None else memo(K, rng, run)
            if N <= _kmeans.SAMPLE_ROWS and getattr(get_backend(self.backend, "kmeans"),
                                            "COMPILES_PER_DTYPE", False):
                # k-means ran on float64 rows: a float64 copy of a float32 X (no larger) keeps
                # the statistics pass on the kernels' one compiled dtype, at the same results
                X = X.astype(np.float64, copy=False)
            return G.stats_from_labels(X, sw, ct, None, centres, self.backend, n_threads)
        if self.init_params == "k-means++":
            _, idx = kmeans_plusplus(X, K, rng, sw, backend=self.backend, n_threads=n_threads)
            return G.stats_from_rows(X, sw, ct, idx)
        if self.init_params == "random_from_data":
            p = None if sw is None else sw / sw.sum()
            return G.stats_from_rows(X, sw, ct, rng.choice(N, size=K, replace=False, p=p))
        return G.stats_from_resp(X, sw, ct, K, _random_resp_chunks(N, K, rng), self.backend,
                                 n_threads)

    # ------------------------------------------------------------------ parameters
    def _params(self):
        return G.GaussianParams(self.covariance_type, self.weights_, self.means_,
                                self.covariances_, self.precisions_cholesky_)

    def _warm_params(self, n_features):
        """The fitted parameters to continue from, checked against this fit's shapes: the
        E-step kernel is called unchecked, and the attributes may have been reassigned."""
        K, ct = self.n_components, self.covariance_type
        weights, means, prec_chol = (
            V.check_float_array(name, getattr(self, name), shape)
            for name, shape in (("weights_", (K,)), ("means_", (K, n_features)),
                                ("precisions_cholesky_",
                                 kernels.prec_chol_shape(ct, K, n_features))))
        return G.GaussianParams(ct, weights, means, self.covariances_, prec_chol)

    def _set_params(self, params):
        self.weights_ = params.weights
        self.means_ = params.means
        self.covariances_ = params.covariances
        self.precisions_cholesky_ = params.prec_chol
        self.precisions_ = G.precisions_from_chol(params.prec_chol, self.covariance_type)

    # ------------------------------------------------------------------ inference
    def _log_prob(self, X, responsibilities=False, norm=True):
        """(weighted log-probabilities or responsibilities (N, K), per-row log-likelihood
        or None when ``norm`` is False). X with NaN: the responsibilities either way (they
        rank the components as the log-probabilities do) from the observed values."""
        if V.has_nan(X):
            out = GM.infer(X, self._params(), self.backend, resolve_n_threads(self.n_threads),
                           logp=norm, resp=True)
            return out["resp"], out.get("logp")
        return kernels.gaussian_log_prob(
            X, self.means_, self.precisions_cholesky_, self.covariance_type,
            self._params().log_const(), responsibilities=responsibilities, norm=norm,
            backend=self.backend, n_threads=resolve_n_threads(self.n_threads))

    def predict(self, X):
        """Most probable component of each row."""
        return self._log_prob(self._validate_data(X), norm=False)[0].argmax(axis=1)

    def predict_proba(self, X):
        """Posterior probability of each component for each row, shape (n_samples, K)."""
        return self._log_prob(self._validate_data(X), responsibilities=True)[0]

    def score_samples(self, X):
        """Log-likelihood of each row under the model."""
        return self._log_prob(self._validate_data(X))[1]

    def impute(self, X):
        """X with each missing value (NaN) replaced by its conditional mean under the fitted
        mixture, E[x_M | x_O] = sum_k r_k(x_O) E_k[x_M | x_O]; observed values are kept."""
        X = self._validate_data(X)
        if not V.has_nan(X):
            return X.copy()
        out = GM.infer(X, self._params(), self.backend, resolve_n_threads(self.n_threads),
                       filled=True)
        return out["filled"].astype(X.dtype, copy=False)

    def score(self, X, y=None):
        """Mean log-likelihood per row."""
        return float(np.mean(self.score_samples(X)))

    def _n_parameters(self):
        return G.n_parameters(self.covariance_type, self.n_components, self.means_.shape[1])

    def bic(self, X):
        """Bayesian information criterion on X (lower is better)."""
        return (-2 * self.score(X) * np.shape(X)[0]
                + self._n_parameters() * math.log(np.shape(X)[0]))

    def aic(self, X):
        """Akaike information criterion on X (lower is better)."""
        return -2 * self.score(X) * np.shape(X)[0] + 2 * self._n_parameters()

    def sample(self, n_samples=1):
        """Draw (X, y) from the fitted mixture; components in order, as scikit-learn."""
        self._check_is_fitted("means_")
        if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) \
                or n_samples < 1:
            raise ValueError(f"Invalid value for 'n_samples': {n_samples!r}. The sampling "
                             "requires at least one sample.")
        return G.sample(self._params(), int(n_samples), V.check_random_state(self.random_state))


def _labelled_stats(rows, covariance_type):
    """Statistics of the labelled rows of every component (LabelledRows covering all of
    them) about their weighted means: the M-step turns them into the means and covariances
    of the labelled rows."""
    K, D = len(rows.parts), rows.parts[0][1].shape[1]
    nk, centres, s2 = np.empty(K), np.empty((K, D)), np.empty((K, D, D))
    for k, Xk, w in rows.parts:
        w = np.ones(len(Xk)) if w is None else w
        nk[k] = w.sum()
        centres[k] = w @ Xk / nk[k]
        d = Xk - centres[k]
        s2[k] = (d * w[:, None]).T @ d
    return GaussianStats(covariance_type, centres, nk, np.zeros((K, D)),
                         GM.stats_of_type(covariance_type, s2), 0.0, float(nk.sum()))


def _init_array(name, value, shape):
    """An *_init parameter as float64, checked with scikit-learn's wording."""
    return V.check_float_array(name, value, shape, V.SKLEARN_SHAPE_ERROR)


def _random_resp_chunks(n_samples, n_components, rng, chunk=65536):
    """scikit-learn's uniform random responsibilities, drawn in row chunks (the same stream)."""
    for start in range(0, n_samples, chunk):
        rows = min(chunk, n_samples - start)
        resp = rng.uniform(size=(rows, n_components))
        resp /= resp.sum(axis=1)[:, None]
        yield start, resp
