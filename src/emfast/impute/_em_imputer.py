"""EMImputer: the maximum-likelihood multivariate normal of data with missing values (EM of
Dempster, Laird & Rubin 1977; Little & Rubin, ch. 11), and imputation from it."""

import math
import warnings

import numpy as np

from emfast import _validation as V
from emfast._config import BACKENDS, get_backend, resolve_n_threads
from emfast._em import ToleranceRule, VerboseMonitor, check_accelerate, em_loop
from emfast._estimator import OutputMixin, ParamsMixin
from emfast._stats import GaussianStats
from emfast._threads import single_threaded_blas
from emfast.exceptions import ConvergenceWarning, compatible
from emfast._patterns import observed_rows, precision_inputs
from emfast.mixture._gaussian import pack_compact, scatter_about, unpack_compact
from emfast.mixture._gaussian_missing import infer_arrays

_NONE = np.empty((0, 0))


class _Normal:
    """Mean, covariance and the kernel's precision inputs of one multivariate normal."""

    __slots__ = ("mean", "covariance", "precision", "log_det")

    def __init__(self, mean, covariance):
        self.mean = mean
        self.covariance = covariance
        try:
            prec, log_det = precision_inputs(covariance[None])
        except np.linalg.LinAlgError:
            raise ValueError(
                "the covariance estimate is not positive definite: some features are "
                "(nearly) linear combinations of others among the observed values, or there "
                "are fewer complete-enough rows than features. Set ridge > 0 (e.g. ridge=1) "
                "to shrink the correlations.") from None
        self.precision = prec
        self.log_det = log_det


class _MissingNormalFamily:
    """E-step (the missing-value kernel with K = 1) and M-step, as the EM drivers want them."""

    natural_coordinates = True     # SQUAREM: pack gives the parameters themselves

    def __init__(self, mod, weight_sum, ridge, prior_scale):
        self.mod = mod
        self.weight_sum = weight_sum
        self.ridge = ridge
        self.prior_scale = prior_scale

    def estep_pass(self, X, sample_weight, params, n_threads, filled=_NONE):
        """The kernel's pass over X: the statistics, and with ``filled`` (N, D) X's rows
        with their missing values replaced by the conditional means."""
        D = X.shape[1]
        nk, s1, s2 = np.empty(1), np.empty((1, D)), np.empty((1, D, D))
        sw = np.empty(0) if sample_weight is None else sample_weight
        ll = self.mod.missing_estep(X, sw, np.zeros(1), params.mean[None], params.precision,
                                    params.log_det, nk, s1, s2, filled, np.empty(0), _NONE,
                                    _NONE, n_threads)
        return GaussianStats("full", params.mean[None], nk, s1, s2, ll, self.weight_sum)

    def e_step(self, X, sample_weight, params, n_threads):
        return self.estep_pass(X, sample_weight, params, n_threads)

    def m_step(self, X, sample_weight, stats, rng):
        n = stats.nk[0]
        shift = stats.s1 / n
        scatter = scatter_about("full", stats.s1, stats.s2, stats.nk, shift)[0]
        # Schafer's ridge prior: `ridge` extra observations with the starting variances and
        # no correlation, which keeps the estimate positive definite when D is close to N.
        cov = (scatter + self.ridge * self.prior_scale) / (n + self.ridge)
        return _Normal(stats.centre[0] + shift[0], 0.5 * (cov + cov.T))

    def pack(self, params):
        """SQUAREM's vector: the mean, then the covariance's upper triangle, row by row.
        The M-step is a ratio of sums linear in the expected statistics: along these
        coordinates the EM map is nearer a line than along a Cholesky factor's, and the
        extrapolations go further (E-steps to tol=1e-8 with the halves of 10 features
        seen together in 5%, 2% and 1% of 5,000 rows: 3.2x, 3.7x and 3.7x fewer than
        plain EM through a log-Cholesky factor, 4.1x, 4.2x and 4.7x here)."""
        return np.concatenate([params.mean, pack_compact(params.covariance[None], "full")])

    def unpack(self, vec, like):
        """The mean and covariance of :meth:`pack`'s vector; a LinAlgError where that
        covariance is not positive definite (SQUAREM then takes the plain EM step)."""
        D = len(like.mean)
        cov = unpack_compact(vec[D:], "full", 1, D)[0][0]
        return _Normal(np.array(vec[:D]), cov)


class EMImputer(OutputMixin, ParamsMixin):
    """Impute missing values (NaN) from the maximum-likelihood multivariate normal.

    ``fit`` finds the mean and covariance that maximise the observed-data log-likelihood by
    EM: every row contributes the marginal density of its observed coordinates, and the
    expected statistics include the conditional covariance of the missing ones (what naive
    "fill, then re-estimate" loops leave out). Valid when values are missing completely at
    random (MCAR) or at random given the observed ones (MAR); not when whether a value is
    missing depends on the value itself (MNAR).

    ``transform`` replaces each missing value by its conditional mean E[x_M | x_O] under the
    fitted normal. ``sample_imputations`` gives proper multiple imputations by bootstrap EM:
    for each imputation, EM (warm-started at the fit) on a bootstrap resample of the rows
    gives a parameter draw, and the missing values are drawn from their conditional normal
    distribution under it (as Amelia II; Honaker, King & Blackwell 2011).

    Parameters
    ----------
    max_iter : int, default=100
    tol : float, default=1e-6
        EM stops when the mean observed-data log-likelihood per row changes by less.
    ridge : float, default=0.0
        Schafer's ridge prior (1997, §5.2.3): the covariance estimate is the posterior mode
        with ``ridge`` extra observations of the available-case variances and zero
        correlations, (n S + ridge diag(s²)) / (n + ridge). Use it when the number of
        features is close to the number of rows, or features are collinear.
    random_state : int, RandomState or None
        For ``sample_imputations``.
    backend : {"auto", "cython", "numba"}
    n_threads : int or None (all usable CPUs)
    verbose : int
    accelerate : None or "squarem", default=None
        "squarem": SQUAREM (Varadhan & Roland 2008) around the same EM map, over the mean
        and the covariance (a covariance that is not positive definite is refused for the
        plain EM step): the same maximum in far fewer passes when
        many values are missing (EM's rate is the fraction of missing information). It
        stops when one SQUAREM cycle gains less than ``tol``, or when the gain still to
        come, estimated from an EM step's gain and rate, is below it
        (``emfast._em.squarem_loop``);
        ``n_iter_`` then counts E-steps (at most ``max_iter``) and ``loglik_history_`` has
        one entry per E-step, rejected extrapolations included. Bootstrap EM in
        ``sample_imputations`` uses it too.

    Attributes
    ----------
    mean_ : (D,)             covariance_ : (D, D)
    loglik_ : float           observed-data log-likelihood at mean_, covariance_
    loglik_no_constant_ : float
        the same without its -o/2 log(2 pi) terms, as R's norm and mvnmle report it
    n_iter_, converged_, loglik_history_ (log-likelihood per row before each M-step),
    n_features_in_, feature_names_in_ (DataFrame input with string column names)

    Rows missing everywhere carry no information: ``fit`` skips them and ``transform``
    imputes them with the mean. A feature missing in every row, or constant among its
    observed values, is an error.
    """

    def __init__(self, *, max_iter=100, tol=1e-6, ridge=0.0, random_state=None,
                 backend="auto", n_threads=None, verbose=0, accelerate=None):
        self.max_iter = max_iter
        self.tol = tol
        self.ridge = ridge
        self.random_state = random_state
        self.backend = backend
        self.n_threads = n_threads
        self.verbose = verbose
        self.accelerate = accelerate

    def __sklearn_tags__(self):
        # Only scikit-learn calls this, so importing it here costs emfast users nothing.
        from sklearn.utils import InputTags, Tags, TargetTags, TransformerTags

        return Tags(estimator_type=None, target_tags=TargetTags(required=False),
                    transformer_tags=TransformerTags(), input_tags=InputTags(allow_nan=True))

    # ------------------------------------------------------------------ checks
    def _check_parameters(self):
        V.check_int("max_iter", self.max_iter, 1)
        V.check_real("tol", self.tol, 0.0)
        V.check_real("ridge", self.ridge, 0.0)
        V.check_int("verbose", self.verbose, 0)
        V.check_option("backend", self.backend, BACKENDS)
        check_accelerate(self.accelerate)
        return resolve_n_threads(self.n_threads)

    def _validate_fit_data(self, X):
        names = V.feature_names(X)
        X = V.check_array(X, min_samples=2, estimator=type(self).__name__, allow_nan=True,
                          max_magnitude=V.MAX_GAUSSIAN_MAGNITUDE)
        mask = np.isnan(X)
        n_obs = X.shape[0] - mask.sum(axis=0)
        _refuse_columns(np.flatnonzero(n_obs == 0), "is missing in every row")
        with np.errstate(invalid="ignore"):
            lo, hi = np.nanmin(X, axis=0), np.nanmax(X, axis=0)
        _refuse_columns(np.flatnonzero(lo == hi),
                        "is constant among its observed values: its variance is 0 and the "
                        "normal model is degenerate; drop it")
        return X, mask, names

    def _validate_data(self, X):
        self._check_is_fitted("mean_")
        return V.check_like_fit(self, X)

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y=None):
        """Estimate the mean and covariance by EM. Returns self."""
        self._fit(X)
        return self

    def fit_transform(self, X, y=None):
        """Fit, then return X with its missing values replaced by their conditional means."""
        return self._output(self._fit(X, want_filled=True), X)

    def _fit(self, X_in, want_filled=False):
        n_threads = self._check_parameters()
        X, mask, names = self._validate_fit_data(X_in)
        order = observed_rows(mask)
        Xs = np.ascontiguousarray(X[order])
        mean = np.nanmean(X, axis=0, dtype=np.float64)
        var = np.nanvar(X, axis=0, dtype=np.float64)
        family = _MissingNormalFamily(get_backend(self.backend, "missing"), float(len(Xs)),
                                      float(self.ridge), np.diag(var))
        # the log-likelihood at the final parameters (and, for fit_transform, the rows
        # filled in the same pass)
        filled = np.empty(Xs.shape) if want_filled else _NONE
        params = self._run_em(
            family, Xs, _Normal(mean, np.diag(var)), n_threads,
            lambda p: family.estep_pass(Xs, None, p, n_threads, filled=filled),
            float(np.count_nonzero(~mask)), names)
        if want_filled:
            out = np.empty(X.shape, dtype=X.dtype)
            out[...] = params.mean                # rows missing everywhere: the mean
            out[order] = filled
            return out
        return None

    def _run_em(self, family, X, start, n_threads, final_pass, n_observed, names):
        """EM of ``family`` over X from ``start``; ``final_pass(params) -> stats`` gives the
        log-likelihood at the final parameters; sets the fitted attributes and returns the
        final parameters. ``emfast.dask`` calls it with a family whose E-step runs on Dask."""
        monitor = VerboseMonitor(self.verbose, 1) if self.verbose else None
        if monitor is not None:
            monitor.init_begin(0)
        rule = ToleranceRule(self.tol, monitor=monitor)
        with single_threaded_blas():
            run = em_loop(family, X, None, start, max_iter=self.max_iter, n_threads=n_threads,
                          rng=None, rule=rule, accelerate=self.accelerate)
            params = run.params
            stats = final_pass(params)
        if not run.converged:
            warnings.warn(f"EM did not converge in {self.max_iter} iterations; increase "
                          "max_iter or tol.", compatible(ConvergenceWarning), stacklevel=4)
        self.mean_ = params.mean
        self.covariance_ = params.covariance
        self.loglik_ = stats.loglik
        self.loglik_no_constant_ = stats.loglik + 0.5 * n_observed * math.log(2 * math.pi)
        self.n_iter_ = run.n_iter
        self.converged_ = run.converged
        self.loglik_history_ = run.lower_bounds
        self.n_features_in_ = len(params.mean)
        V.set_feature_names(self, names)
        return params

    # ------------------------------------------------------------------ imputing
    def _impute(self, X, params, noise=None, n_threads=None):
        with single_threaded_blas():
            out = infer_arrays(X, np.zeros(1), params.mean[None], params.precision,
                               params.log_det, self.backend,
                               n_threads or resolve_n_threads(self.n_threads), filled=True,
                               noise=noise)
        return out["filled"].astype(X.dtype, copy=False)

    def transform(self, X):
        """X with each missing value replaced by its conditional mean E[x_M | x_O]."""
        Xc = self._validate_data(X)
        return self._output(self._impute(Xc, self._params()), X)

    def _params(self):
        return _Normal(self.mean_, self.covariance_)

    def sample_imputations(self, X, n_imputations=5, random_state=None):
        """``n_imputations`` completed copies of X, shape (n_imputations, N, D): proper
        multiple imputations by bootstrap EM (see the class docstring). Observed values are
        kept; each copy has its own parameter draw and its own conditional draws."""
        Xc = self._validate_data(X)
        V.check_int("n_imputations", n_imputations, 1)
        n_threads = self._check_parameters()
        rng = V.check_random_state(self.random_state if random_state is None else random_state)
        Xs = np.ascontiguousarray(Xc[observed_rows(np.isnan(Xc))])
        if len(Xs) == 0:
            raise ValueError("every row of X is missing everywhere: nothing to bootstrap")
        family = _MissingNormalFamily(get_backend(self.backend, "missing"), float(len(Xs)),
                                      float(self.ridge), np.diag(np.diag(self.covariance_)))
        out = np.empty((n_imputations,) + Xc.shape, dtype=Xc.dtype)
        for m in range(n_imputations):
            # a bootstrap resample as integer weights: no copy of X
            counts = rng.multinomial(len(Xs), np.full(len(Xs), 1.0 / len(Xs))).astype(float)
            family.weight_sum = float(len(Xs))
            with single_threaded_blas():
                run = em_loop(family, Xs, counts, self._params(), max_iter=self.max_iter,
                              n_threads=n_threads, rng=None, rule=ToleranceRule(self.tol),
                              accelerate=self.accelerate)
            noise = rng.standard_normal(Xc.shape)
            out[m] = self._impute(Xc, run.params, noise, n_threads)
        return out

    # ------------------------------------------------------------------ output
    def get_feature_names_out(self, input_features=None):
        """The output column names: the input's (imputation keeps the columns)."""
        self._check_is_fitted("mean_")
        fitted = getattr(self, "feature_names_in_", None)
        if input_features is not None:
            names = np.asarray(input_features, dtype=object)
            if len(names) != self.n_features_in_ or (
                    fitted is not None and not np.array_equal(names, fitted)):
                raise ValueError("input_features is not equal to feature_names_in_")
            return names
        if fitted is not None:
            return fitted.copy()
        return np.asarray([f"x{i}" for i in range(self.n_features_in_)], dtype=object)


def _refuse_columns(cols, what):
    if len(cols):
        names = ", ".join(str(c) for c in cols[:10]) + (" ..." if len(cols) > 10 else "")
        raise ValueError(f"feature(s) {names} {what}")
