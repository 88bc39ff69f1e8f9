"""The HMM estimator base: validation, the EM loop on the shared driver, inference.

One EM iteration (``_HMMFamily``):

    E-step: log-emissions (T, K) from the emission model
            -> emfast.kernels.hmm_forward_backward (all sequences in one call)
            -> start counts, transition counts, posteriors
            -> emission statistics from the posteriors (the emission model's);
            or, where the emission model ``fuses`` (diagonal and spherical Gaussians and
            categorical emissions, on the Cython backend), all of it in one kernel call
            that makes no (T, K) array.
    M-step: startprob/transmat from the counts (Dirichlet priors), then the emission
            model's M-step.

The driver (``emfast._em.fit_restarts``) runs it with hmmlearn's convergence monitor as its
rule, and ``n_init`` restarts concurrently.
"""

import copy
import logging
import math
import numbers
import sys
import threading
from collections import deque

import numpy as np

from emfast import _unconstrained as U
from emfast import _validation as V
from emfast import kernels
from emfast._config import BACKENDS, get_backend, resolve_n_threads
from emfast._em import check_accelerate, fit_restarts
from emfast._estimator import ParamsMixin
from emfast._patterns import fill_with_column_means
from emfast._threads import single_threaded_blas
from emfast.hmm._stats import HMMStats

_log = logging.getLogger("emfast.hmm")

DECODER_ALGORITHMS = ("viterbi", "map")
IMPLEMENTATIONS = ("log", "scaling")


class ConvergenceMonitor:
    """hmmlearn's convergence monitor: the log-likelihood history of a fit.

    Attributes
    ----------
    history : deque of the total log-likelihood of the data at the parameters each
        iteration started from.
    iter : int, iterations done.
    tol, n_iter, verbose : as the estimator's (set from it at the start of ``fit``).

    ``converged`` is true once ``iter == n_iter`` or the last gain is below ``tol``. A
    subclass may redefine it; assign an instance to ``model.monitor_`` before ``fit``.
    """

    _template = "{iter:>10d} {log_prob:>16.8f} {delta:>+16.8f}"

    def __init__(self, tol, n_iter, verbose):
        self.tol = tol
        self.n_iter = n_iter
        self.verbose = verbose
        self.history = deque()
        self.iter = 0

    def __repr__(self):
        items = sorted(dict(vars(self), history=list(self.history)).items())
        body = "".join(f"    {k}={v},\n" for k, v in items)
        return f"{type(self).__name__}(\n{body})"

    def _reset(self):
        self.iter = 0
        self.history.clear()

    def report(self, log_prob):
        """Record ``log_prob``; print it when verbose; warn (logging) when it decreased by
        more than sqrt(machine epsilon)."""
        if self.verbose:
            delta = log_prob - self.history[-1] if self.history else np.nan
            print(self._template.format(iter=self.iter + 1, log_prob=log_prob, delta=delta),
                  file=sys.stderr)
        slack = np.finfo(float).eps ** 0.5
        if self.history and (log_prob - self.history[-1]) < -slack:
            _log.warning("Model is not converging.  Current: %s is not greater than %s. "
                         "Delta is %s", log_prob, self.history[-1],
                         log_prob - self.history[-1])
        self.history.append(log_prob)
        self.iter += 1

    @property
    def converged(self):
        return (self.iter == self.n_iter
                or (len(self.history) >= 2 and self.history[-1] - self.history[-2] < self.tol))


class _MonitorRule:
    """The driver's convergence rule for HMMs: total log-likelihood into the monitor."""

    def __init__(self, monitor):
        self.monitor = monitor

    def lower_bound(self, stats):
        return stats.loglik

    def update(self, n_iter, lower_bound, params):
        self.monitor.report(lower_bound)
        if self.monitor.converged:
            return True
        if (params.transmat.sum(axis=1) == 0).any():
            _log.warning("Some rows of transmat_ have zero sum because no transition from "
                         "the state was ever observed.")
        return False

    def small(self, gain):
        """The monitor's test of a gain, ``gain < tol`` (total log-likelihood)."""
        return gain < self.monitor.tol

    def finish(self, lower_bound, converged):
        """The monitor has reported every iteration already."""


class HMMParams:
    """startprob (K,), transmat (K, K) and the emission model's parameter dict."""

    __slots__ = ("startprob", "transmat", "emission")

    def __init__(self, startprob, transmat, emission):
        self.startprob = startprob
        self.transmat = transmat
        self.emission = emission


def _normalize_rows(a):
    s = a.sum(axis=-1, keepdims=True)
    s[s == 0] = 1.0
    return a / s


class _HMMFamily:
    """E-step and M-step of one HMM, as the EM drivers want them."""

    def __init__(self, emission, offsets, params_letters, startprob_prior, transmat_prior,
                 backend, has_nan=False, labels=None, unlabeled_weight=1.0):
        self.emission = emission
        self.offsets = offsets   # sequence bounds, (S + 1,) int64, checked
        self.lengths = np.diff(offsets)
        self.letters = params_letters
        self.fit_emission = any(c in params_letters for c in emission.letters)
        # partial labels (T,), -1 = unlabelled: a labelled frame's state is fixed by giving
        # every other state log-emission -inf; the unlabelled frames' posteriors weigh
        # unlabeled_weight in the emission statistics
        self.forbidden = None
        self.unlabelled = None
        if labels is not None and (labels >= 0).any():
            K = emission.K
            self.forbidden = (labels[:, None] >= 0) & (labels[:, None] != np.arange(K))
            if unlabeled_weight != 1.0:
                self.unlabelled = (labels < 0, unlabeled_weight)
        self.fused = (self.fit_emission and hasattr(emission, "fuses") and not has_nan
                      and self.forbidden is None and emission.fuses(backend))
        self.startprob_prior = startprob_prior
        self.transmat_prior = transmat_prior
        self.backend = backend
        self._buffers = threading.local()

    def _buffer(self, name, shape):
        """A (T, K) float64 array kept across iterations, one per thread (restarts run
        concurrently): a fresh 8*T*K-byte array per iteration costs page faults and the
        kernel's zeroing of every page, measured at a third of an H1 iteration."""
        buf = getattr(self._buffers, name, None)
        if buf is None or buf.shape != shape:
            buf = np.empty(shape)
            setattr(self._buffers, name, buf)
        return buf

    def e_step(self, X, sample_weight, params, n_threads):
        if self.fused:
            ll, start, trans, em = self.emission.forward_backward_stats(
                X, self.offsets, params.startprob, params.transmat, params.emission,
                self.backend, n_threads)
            return HMMStats(params, start, trans, em, ll, len(self.lengths))
        shape = (X.shape[0], len(params.startprob))
        le = self.emission.log_likelihood(X, params.emission, self.backend, n_threads,
                                          out=self._buffer("le", shape))
        if self.forbidden is not None:
            le[self.forbidden] = -np.inf
        post = self._buffer("post", shape) if self.fit_emission else None
        ll, _, post, start, trans = kernels.hmm_forward_backward(
            le, self.lengths, params.startprob, params.transmat,
            posteriors=self.fit_emission, out=post, backend=self.backend,
            n_threads=n_threads)
        em = None
        if self.fit_emission:
            if self.unlabelled is not None:
                rows, weight = self.unlabelled
                post[rows] *= weight
            em = self.emission.stats(X, post, params.emission, self.backend, n_threads)
        return HMMStats(params, start, trans, em, ll, len(self.lengths))

    def m_step(self, X, sample_weight, stats, rng):
        old = stats.params
        startprob, transmat = old.startprob, old.transmat
        # A prior below 1 can make prior - 1 + counts negative: those entries are 0 at the
        # constrained maximum. Entries that are 0 (forbidden states or transitions) stay 0.
        if "s" in self.letters:
            sp = np.maximum(self.startprob_prior - 1.0 + stats.start, 0.0)
            sp = np.where(startprob == 0, 0.0, sp)
            startprob = sp / sp.sum()
        if "t" in self.letters:
            tm = np.maximum(self.transmat_prior - 1.0 + stats.trans, 0.0)
            tm = np.where(transmat == 0, 0.0, tm)
            transmat = _normalize_rows(tm)
        emission = old.emission
        if self.fit_emission:
            emission = self.emission.m_step(stats.emission, old.emission, self.letters)
        return HMMParams(startprob, transmat, emission)

    def pack(self, params):
        """SQUAREM's unconstrained vector of the parameters being fitted: the logs of
        startprob ("s") and transmat ("t"), then the emission model's ``pack``."""
        parts = []
        if "s" in self.letters:
            parts.append(U.log_floor(params.startprob))
        if "t" in self.letters:
            parts.append(U.log_floor(params.transmat).ravel())
        if self.fit_emission:
            parts.append(self.emission.pack(params.emission, self.letters))
        return np.concatenate(parts) if parts else np.empty(0)

    def unpack(self, vec, like):
        """The HMMParams of :meth:`pack`'s vector: probabilities re-normalised (by row),
        the zeros of ``like`` kept (forbidden states and transitions stay forbidden), the
        parameters not being fitted taken from ``like``."""
        K = len(like.startprob)
        read = U.Reader(vec)
        startprob, transmat, emission = like.startprob, like.transmat, like.emission
        if "s" in self.letters:
            startprob = U.simplex(read.take(K), like.startprob)
        if "t" in self.letters:
            transmat = U.simplex(read.take((K, K)), like.transmat)
        if self.fit_emission:
            emission = self.emission.unpack(read.rest(), like.emission, self.letters)
        read.done()
        return HMMParams(startprob, transmat, emission)


class BaseHMM(ParamsMixin):
    """Shared machinery of the HMM estimators (see ``emfast.hmm``).

    ``accelerate="squarem"`` (every HMM estimator; default None, plain Baum-Welch) runs
    SQUAREM (Varadhan & Roland 2008) around the same EM map, extrapolating over the logs of
    startprob and transmat rows (re-normalised; zero entries stay 0) and the emission
    model's unconstrained parameters (log-probabilities, log-rates, Cholesky factors of the
    covariances), only those whose letter is in ``params``. It reaches the same optimum
    in far fewer passes over the data when Baum-Welch crawls (states that look alike). On
    a flat likelihood both stop short of it by more than ``tol``, and not always in the
    same order: of 12 fits measured from the same starts, one (3 Gaussian states) ended
    5.6e-7 per frame below plain Baum-Welch, both about 1.5e-6 short of the optimum. The
    monitor sees SQUAREM's iterates: ``monitor_.history`` holds the log-likelihood at the
    start of each SQUAREM cycle (two EM steps and an extrapolation; it never decreases)
    and ``monitor_.iter`` counts cycles (``n_iter_``, set by every fit, counts the E-steps,
    the EM-map evaluations), so the fit stops when one cycle gains less than ``tol``, or
    when the gain still to come, estimated from a Baum-Welch step's gain and the rate of
    convergence, is below ``tol`` (the history then ends with the bound after that step,
    the one the fit returns), or after ``n_iter`` E-steps (``emfast._em.squarem_loop``).

    Subclasses define the constructor, ``_emission_model(n_features)``, ``_emission_attrs``
    (letter -> attribute name), ``_check_X``, ``_emission_from_attrs`` and
    ``_set_emission_attrs``.
    """

    _emission_attrs = {}

    def _base_init(self, n_components, startprob_prior, transmat_prior, algorithm,
                   random_state, n_iter, tol, verbose, params, init_params, implementation,
                   n_init, n_threads, backend, accelerate):
        self.n_components = n_components
        self.startprob_prior = startprob_prior
        self.transmat_prior = transmat_prior
        self.algorithm = algorithm
        self.random_state = random_state
        self.n_iter = n_iter
        self.tol = tol
        self.verbose = verbose
        self.params = params
        self.init_params = init_params
        self.implementation = implementation
        self.n_init = n_init
        self.n_threads = n_threads
        self.backend = backend
        self.accelerate = accelerate
        self.monitor_ = ConvergenceMonitor(tol, n_iter, verbose)

    # ------------------------------------------------------------------ checks
    def _check_parameters(self):
        K = V.check_int("n_components", self.n_components, 1)
        V.check_int("n_iter", self.n_iter, 0)
        if isinstance(self.tol, bool) or not isinstance(self.tol, numbers.Real) \
                or math.isnan(self.tol):
            raise TypeError(f"The 'tol' parameter must be a real number (-inf: never stop "
                            f"early), got {self.tol!r}")
        V.check_int("n_init", self.n_init, 1)
        V.check_option("algorithm", self.algorithm, DECODER_ALGORITHMS)
        V.check_option("implementation", self.implementation, IMPLEMENTATIONS)
        V.check_option("backend", self.backend, BACKENDS)
        check_accelerate(self.accelerate)
        for name in ("params", "init_params"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"The '{name}' parameter must be a string of letters, got "
                                f"{getattr(self, name)!r}")
        get_backend(self.backend, "hmm")
        self._priors(K)
        return resolve_n_threads(self.n_threads)

    def _priors(self, K):
        sp = np.asarray(self.startprob_prior, dtype=np.float64)
        tp = np.asarray(self.transmat_prior, dtype=np.float64)
        try:
            sp = np.broadcast_to(sp, (K,))
        except ValueError:
            raise ValueError(f"startprob_prior must be a scalar or have shape ({K},), got "
                             f"{sp.shape}") from None
        try:
            tp = np.broadcast_to(tp, (K, K))
        except ValueError:
            raise ValueError(f"transmat_prior must be a scalar or have shape ({K}, {K}), got "
                             f"{tp.shape}") from None
        if not (np.all(np.isfinite(sp)) and np.all(np.isfinite(tp))):
            raise ValueError("startprob_prior and transmat_prior must be finite")
        return sp, tp

    def _needs_init(self, code, name):
        if code in self.init_params:
            if hasattr(self, name):
                _log.warning("Even though the %r attribute is set, it will be overwritten "
                             "during initialization because 'init_params' contains %r",
                             name, code)
            return True
        return not hasattr(self, name)

    def _check_is_fitted_hmm(self):
        self._check_is_fitted("startprob_")
        self._check_is_fitted("transmat_")

    def _params_from_attrs(self, todo=None):
        """Validated HMMParams from the fitted attributes; with ``todo`` (letter -> will be
        initialised), only the attributes that are kept are read (the rest are None)."""
        K = self.n_components
        todo = todo or {}
        sp = tm = None
        if not todo.get("s"):
            sp = V.check_probabilities("startprob_", self.startprob_, (K,))
        if not todo.get("t"):
            tm = V.check_probabilities("transmat_", self.transmat_, (K, K))
        em = self._emission_from_attrs({c: not todo.get(c) for c in self._emission_attrs})
        return HMMParams(sp, tm, em)

    # ------------------------------------------------------------------ fitting
    def fit(self, X, lengths=None, y=None, *, unlabeled_weight=1.0):
        """Estimate the parameters by EM (Baum-Welch). Returns self.

        Parameters whose letter is in ``init_params`` (or that are not set yet) are
        initialised first; those whose letter is in ``params`` are then updated.

        ``y`` (optional, beyond hmmlearn): partial labels, one per frame: the state of a
        labelled frame, -1 for an unlabelled one. A labelled frame's state is fixed (every
        other state has probability 0 there), so the labels shape the transitions around
        them too; the unlabelled frames' posteriors count ``unlabeled_weight`` times in the
        emission statistics. Gaussian and GMM emissions also accept NaN in X (see
        :class:`GaussianHMM`).
        """
        n_threads = self._check_parameters()
        X = self._check_X(X, fitting=True)
        offsets = V.lengths_to_offsets(lengths, X.shape[0])
        labels = V.check_partial_labels(y, X.shape[0], self.n_components)
        V.check_real("unlabeled_weight", unlabeled_weight, 0.0)
        has_nan = X.dtype.kind == "f" and V.has_nan(X)
        # the starting point comes from complete rows: each missing value its column's mean
        X_start = fill_with_column_means(X) if has_nan else X
        self._run_em(X, X_start, n_threads, labels, lambda emission, sp_prior, tp_prior: (
            _HMMFamily(emission, offsets, self.params, sp_prior, tp_prior, self.backend,
                       has_nan, labels, float(unlabeled_weight))))
        return self

    def _run_em(self, X, X_start, n_threads, labels, make_family):
        """Baum-Welch over X from starting parameters drawn from ``X_start`` (initialised
        where ``init_params`` or a missing attribute asks), ``n_init`` restarts; sets the
        fitted attributes. ``make_family(emission, startprob_prior, transmat_prior)``: the
        EM family. ``emfast.dask`` calls it with a family whose E-step runs on Dask, X a
        Dask array and ``X_start`` a sample of its rows."""
        emission = self._emission_model(self.n_features)
        rng = V.check_random_state(self.random_state)
        init = self._initializer(X_start, labels, emission, rng)
        self._warn_few_data(X, emission)
        family = make_family(emission, *self._priors(self.n_components))
        n_init = self.n_init

        monitor = self.monitor_
        monitor.tol, monitor.n_iter, monitor.verbose = self.tol, self.n_iter, self.verbose

        def make_rule(index):
            mon = monitor if n_init == 1 else copy.deepcopy(monitor)
            mon._reset()
            return _MonitorRule(mon)

        with single_threaded_blas():
            run = fit_restarts(family, X, None, init, make_rule, n_init=n_init, rng=rng,
                               max_iter=self.n_iter, n_threads=n_threads,
                               sequential=bool(self.verbose), accelerate=self.accelerate)
        self.startprob_ = run.params.startprob
        self.transmat_ = run.params.transmat
        self._set_emission_attrs(run.params.emission)
        self.monitor_ = run.rule.monitor
        self.n_iter_ = run.n_iter      # E-steps (monitor_.iter counts SQUAREM's cycles)

    def _initializer(self, X_start, labels, emission, rng):
        """``init(X_, sw_, rng_, threads) -> HMMParams``: the starting parameters of a
        restart drawing from ``rng_`` (``rng``: the fit's own stream), from ``X_start``;
        what ``init_params`` names (or is not set yet) is initialised, the rest kept.
        emfast.fit_many_hmm draws its random numbers the same way (hmm_batch._StartDraws:
        change both together), and starts with it the problems its kernel does not."""
        K = self.n_components
        todo = {"s": self._needs_init("s", "startprob_"),
                "t": self._needs_init("t", "transmat_")}
        for code, name in self._emission_attrs.items():
            todo[code] = self._needs_init(code, name)
        fixed = self._params_from_attrs(todo)

        def init(X_, sw_, rng_, threads):
            # hmmlearn draws startprob and transmat from check_random_state(random_state),
            # then the emission parameters from a second check_random_state(random_state).
            # A restart the driver gives the fit's own stream (n_init=1, or a driver whose
            # restart 0 is the n_init=1 run) draws exactly so; the others use their stream.
            em_rng = V.check_random_state(self.random_state) if rng_ is rng else rng_
            sp = fixed.startprob
            tm = fixed.transmat
            alpha = np.full(K, 1.0 / K)
            if todo["s"]:
                sp = rng_.dirichlet(alpha)
            if todo["t"]:
                tm = rng_.dirichlet(alpha, size=K)
            em = emission.init(X_start, em_rng, todo, fixed.emission, threads)
            if labels is not None and todo.get("m") and hasattr(emission, "means_from_labels"):
                em = emission.means_from_labels(X_start, labels, em)
            return HMMParams(sp, tm, emission.prepare(em))

        return init

    def _warn_few_data(self, X, emission):
        counts = self._get_n_fit_scalars_per_param()
        n_fit = sum(counts.get(c, 0) for c in set(self.params))
        if X.size < n_fit:
            _log.warning("Fitting a model with %d free scalar parameters with only %d data "
                         "points will result in a degenerate solution.", n_fit, X.size)

    def _check_options(self):
        """Check the options that inference reads and a user may have changed after fit
        (a model with such options overrides this)."""

    def _get_n_fit_scalars_per_param(self):
        self._check_options()
        K = self.n_components
        out = {"s": K - 1, "t": K * (K - 1)}
        out.update(self._emission_model(self.n_features).n_fit_scalars(self.n_features))
        return out

    # ------------------------------------------------------------------ inference
    def _prepare_inference(self, X, lengths):
        self._check_is_fitted_hmm()
        self._check_options()
        self._infer_n_features()
        V.check_option("implementation", self.implementation, IMPLEMENTATIONS)
        V.check_option("backend", self.backend, BACKENDS)
        params = self._params_from_attrs()
        emission = self._emission_model(self.n_features)
        params.emission = emission.prepare(params.emission)
        X = self._check_X(X, fitting=False)
        lengths = np.diff(V.lengths_to_offsets(lengths, X.shape[0]))
        n_threads = resolve_n_threads(self.n_threads)
        le = emission.log_likelihood(X, params.emission, self.backend, n_threads)
        return params, le, lengths, n_threads

    def score_samples(self, X, lengths=None):
        """(log-likelihood of X, (n_samples, n_components) state posteriors)."""
        params, le, lengths, n_threads = self._prepare_inference(X, lengths)
        ll, _, post, _, _ = kernels.hmm_forward_backward(
            le, lengths, params.startprob, params.transmat, posteriors=True,
            backend=self.backend, n_threads=n_threads)
        return ll, post

    def score(self, X, lengths=None):
        """Log-likelihood of X (summed over sequences)."""
        params, le, lengths, n_threads = self._prepare_inference(X, lengths)
        ll, _, _ = kernels.hmm_filter(le, lengths, params.startprob, params.transmat,
                                      filtered=False, backend=self.backend,
                                      n_threads=n_threads)
        return ll

    def filter(self, X, lengths=None):
        """Causal state probabilities p(z_t | x_1..x_t) of each frame, (n_samples, K)
        (emfast only: the forward pass without the backward one)."""
        params, le, lengths, n_threads = self._prepare_inference(X, lengths)
        _, out, _ = kernels.hmm_filter(le, lengths, params.startprob, params.transmat,
                                       backend=self.backend, n_threads=n_threads)
        return out

    def decode(self, X, lengths=None, algorithm=None):
        """(log-probability, most likely state sequence) by ``algorithm`` ("viterbi": the
        best path and its log-probability; "map": the most probable state of each frame,
        with hmmlearn's score, the sum of those probabilities)."""
        algorithm = algorithm or self.algorithm
        if algorithm not in DECODER_ALGORITHMS:
            raise ValueError(f"Unknown decoder {algorithm!r}")
        params, le, lengths, n_threads = self._prepare_inference(X, lengths)
        if algorithm == "viterbi":
            lp, path, _ = kernels.hmm_viterbi(le, lengths, params.startprob, params.transmat,
                                              backend=self.backend, n_threads=n_threads)
            return lp, path
        _, _, post, _, _ = kernels.hmm_forward_backward(
            le, lengths, params.startprob, params.transmat, posteriors=True,
            backend=self.backend, n_threads=n_threads)
        return float(post.max(axis=1).sum()), post.argmax(axis=1)

    def predict(self, X, lengths=None):
        """Most likely state of each sample (by ``algorithm``)."""
        return self.decode(X, lengths)[1]

    def predict_proba(self, X, lengths=None):
        """State posteriors, (n_samples, n_components)."""
        return self.score_samples(X, lengths)[1]

    def sample(self, n_samples=1, random_state=None, currstate=None):
        """Draw (X, state_sequence) from the model; ``currstate`` fixes the first state."""
        self._check_is_fitted_hmm()
        self._check_options()
        if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral) \
                or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
        self._infer_n_features()
        params = self._params_from_attrs()
        K = self.n_components
        rng = V.check_random_state(self.random_state if random_state is None
                                   else random_state)
        u = rng.rand(int(n_samples))
        states = np.empty(int(n_samples), dtype=int)
        tm_cdf = np.cumsum(params.transmat, axis=1)
        if currstate is None:
            state = int((np.cumsum(params.startprob) > u[0]).argmax())
        else:
            state = int(currstate)
            if not 0 <= state < K:
                raise ValueError(f"currstate must be in [0, {K}), got {currstate!r}")
        states[0] = state
        for t in range(1, int(n_samples)):  # the Markov chain itself is sequential
            state = int((tm_cdf[state] > u[t]).argmax())
            states[t] = state
        emission = self._emission_model(self.n_features)
        return self._sample_emissions(emission, params.emission, states, rng), states

    def _infer_n_features(self):
        """Set ``n_features`` from the emission parameters when the user set those by hand
        (as hmmlearn does before scoring or sampling)."""
        if getattr(self, "n_features", None) is None:
            self.n_features = self._n_features_from_attrs()

    def _sample_emissions(self, emission, p, states, rng):
        return emission.sample(p, states, rng)

    def get_stationary_distribution(self):
        """The stationary distribution of the states (left eigenvector of transmat_ for
        its largest eigenvalue, normalised to sum to 1)."""
        self._check_is_fitted("transmat_")
        vals, vecs = np.linalg.eig(np.asarray(self.transmat_, dtype=np.float64).T)
        v = vecs[:, np.argmax(vals.real)]
        v = np.real_if_close(v)
        if np.iscomplexobj(v):
            v = v.real
        return v / v.sum()

    def _n_parameters(self):
        return sum(self._get_n_fit_scalars_per_param().values())

    def aic(self, X, lengths=None):
        """Akaike information criterion: -2 log L + 2 (number of free parameters)."""
        return -2 * self.score(X, lengths) + 2 * self._n_parameters()

    def bic(self, X, lengths=None):
        """Bayesian information criterion: -2 log L + (free parameters) log(n_samples)."""
        return -2 * self.score(X, lengths) + self._n_parameters() * np.log(len(X))
