"""The public HMM estimators: drop-ins for hmmlearn 0.3.3's ``hmmlearn.hmm`` classes.

Same constructor parameters (plus ``n_init``, ``n_threads`` and ``backend``), fitted
attributes, methods and EM updates (including the priors) as hmmlearn. ``implementation``
is accepted and ignored: emfast's forward-backward is always the scaled one.
"""

import numpy as np

from emfast import _validation as V
from emfast import kernels
from emfast.hmm._base import BaseHMM
from emfast.hmm import _emissions as E
from emfast.mixture import _gaussian as G


def _n_features_of(name, value, layout):
    """n_features read from a parameter set by hand, whose ``layout`` names its axes
    (e.g. ("n_components", "n_features")); ValueError when its shape does not fit."""
    shape = np.shape(value)
    if len(shape) != len(layout) or shape[-1] < 1:
        raise ValueError(f"{name} must have shape ({', '.join(layout)}) with "
                         f"n_features >= 1, got {shape}")
    return int(shape[-1])


class _CovarianceTypeMixin:
    """covariance_type checked wherever it is read, also when it was set after fit
    (hmmlearn's ValueError, never a KeyError)."""

    def _check_options(self):
        V.check_option("covariance_type", self.covariance_type, kernels.COVARIANCE_TYPES)


class _FeatureCountMixin:
    """n_features from X at fit time; the same number of columns afterwards."""

    def _set_or_check_n_features(self, X, fitting):
        D = X.shape[1]
        if fitting:
            self.n_features = D
        elif D != self.n_features:
            raise ValueError(f"X has {D} features, but {type(self).__name__} is expecting "
                             f"{self.n_features} features as input.")


class GaussianHMM(_CovarianceTypeMixin, _FeatureCountMixin, BaseHMM):
    """Hidden Markov model with Gaussian emissions; the API of ``hmmlearn.hmm.GaussianHMM``.

    Fitted attributes: ``startprob_`` (K,), ``transmat_`` (K, K), ``means_`` (K, D),
    ``covars_`` (K, D, D) full matrices whatever ``covariance_type`` (``_covars_`` holds the
    compact form: spherical (K,), diag (K, D), full (K, D, D), tied (D, D)), ``n_features``
    and ``monitor_``. Means are initialised by emfast's k-means.

    Extras: ``n_init`` concurrent restarts (the best final log-likelihood is kept),
    ``n_threads`` (None: all usable CPUs), ``backend`` ("auto", "cython", "numba") and
    :meth:`filter`. Spherical ``_covars_`` stays (K,) after fitting (hmmlearn's becomes
    (K, D)), so ``covars_`` is (K, D, D) as documented.

    ``accelerate="squarem"``: SQUAREM around Baum-Welch (see ``emfast.hmm.BaseHMM``).
    """

    _emission_attrs = {"m": "means_", "c": "covars_"}

    def __init__(self, n_components=1, covariance_type="diag", min_covar=1e-3,
                 startprob_prior=1.0, transmat_prior=1.0, means_prior=0, means_weight=0,
                 covars_prior=1e-2, covars_weight=1, algorithm="viterbi", random_state=None,
                 n_iter=10, tol=1e-2, verbose=False, params="stmc", init_params="stmc",
                 implementation="log", *, n_init=1, n_threads=None, backend="auto",
                 accelerate=None):
        self._base_init(n_components, startprob_prior, transmat_prior, algorithm,
                        random_state, n_iter, tol, verbose, params, init_params,
                        implementation, n_init, n_threads, backend, accelerate)
        self.covariance_type = covariance_type
        self.min_covar = min_covar
        self.means_prior = means_prior
        self.means_weight = means_weight
        self.covars_prior = covars_prior
        self.covars_weight = covars_weight

    @property
    def covars_(self):
        """Covariance matrices, (n_components, n_features, n_features)."""
        self._check_options()
        return G.full_covariances(self._covars_, self.covariance_type, self.n_components,
                             self._n_features_from_attrs())

    @covars_.setter
    def covars_(self, covars):
        self._check_options()
        self._covars_ = E.check_gaussian_covars(covars, self.covariance_type,
                                                self.n_components)

    def _check_parameters(self):
        self._check_options()
        V.check_real("min_covar", self.min_covar, 0.0)
        return super()._check_parameters()

    def _emission_model(self, n_features):
        return E.GaussianEmission(self.n_components, self.covariance_type, self.min_covar,
                                  self.means_prior, self.means_weight, self.covars_prior,
                                  self.covars_weight)

    def _check_X(self, X, fitting):
        return _check_gaussian_X(self, X, fitting)

    def _n_features_from_attrs(self):
        if getattr(self, "n_features", None) is not None:
            return self.n_features
        return _n_features_of("means_", self.means_, ("n_components", "n_features"))

    def _emission_from_attrs(self, keep):
        K, D, ct = self.n_components, self.n_features, self.covariance_type
        p = {}
        if keep["m"]:
            p["means"] = V.check_float_array("means_", self.means_, (K, D))
        if keep["c"]:
            cv = E.check_gaussian_covars(self._covars_, ct, K)
            if ct == "diag" and cv.shape == (K, 1):  # one variance per state, every feature
                cv = np.repeat(cv, D, axis=1)
            need = kernels.prec_chol_shape(ct, K, D)
            if cv.shape != need:
                raise ValueError(f"{ct!r} covars_ must have shape {need} for "
                                 f"n_features = {D}, got {cv.shape}")
            p["covars"] = cv
        return p

    def _set_emission_attrs(self, p):
        self.means_ = p["means"]
        self._covars_ = p["covars"]


class GMMHMM(_CovarianceTypeMixin, _FeatureCountMixin, BaseHMM):
    """Hidden Markov model with Gaussian-mixture emissions; the API of
    ``hmmlearn.hmm.GMMHMM``.

    Fitted attributes: ``startprob_``, ``transmat_``, ``weights_`` (K, n_mix), ``means_``
    (K, n_mix, D), ``covars_`` (spherical (K, n_mix), diag (K, n_mix, D), full
    (K, n_mix, D, D), tied (K, D, D): one matrix shared by the mixture of each state),
    ``n_features`` and ``monitor_``. The M-step is hmmlearn's, priors and all (its default
    covariance priors depend on ``covariance_type`` when ``covars_prior``/``covars_weight``
    are None); emission statistics come from emfast's fused mixture kernel with the state
    posteriors as sample weights.

    ``accelerate="squarem"``: SQUAREM around Baum-Welch (see ``emfast.hmm.BaseHMM``).
    """

    _emission_attrs = {"w": "weights_", "m": "means_", "c": "covars_"}

    def __init__(self, n_components=1, n_mix=1, min_covar=1e-3, startprob_prior=1.0,
                 transmat_prior=1.0, weights_prior=1.0, means_prior=0.0, means_weight=0.0,
                 covars_prior=None, covars_weight=None, algorithm="viterbi",
                 covariance_type="diag", random_state=None, n_iter=10, tol=1e-2,
                 verbose=False, params="stmcw", init_params="stmcw", implementation="log",
                 *, n_init=1, n_threads=None, backend="auto", accelerate=None):
        self._base_init(n_components, startprob_prior, transmat_prior, algorithm,
                        random_state, n_iter, tol, verbose, params, init_params,
                        implementation, n_init, n_threads, backend, accelerate)
        self.n_mix = n_mix
        self.min_covar = min_covar
        self.weights_prior = weights_prior
        self.means_prior = means_prior
        self.means_weight = means_weight
        self.covars_prior = covars_prior
        self.covars_weight = covars_weight
        self.covariance_type = covariance_type

    def _check_parameters(self):
        self._check_options()
        V.check_real("min_covar", self.min_covar, 0.0)
        V.check_int("n_mix", self.n_mix, 1)
        return super()._check_parameters()

    def _emission_model(self, n_features):
        return E.GMMEmission(self.n_components, self.n_mix, self.covariance_type,
                             self.min_covar, self.weights_prior, self.means_prior,
                             self.means_weight, self.covars_prior, self.covars_weight)

    def _check_X(self, X, fitting):
        return _check_gaussian_X(self, X, fitting)

    def _n_features_from_attrs(self):
        return _n_features_of("means_", self.means_, ("n_components", "n_mix", "n_features"))

    def _emission_from_attrs(self, keep):
        K, M, D = self.n_components, self.n_mix, self.n_features
        p = {}
        if keep["w"]:
            p["weights"] = V.check_probabilities("weights_", self.weights_, (K, M))
        if keep["m"]:
            p["means"] = V.check_float_array("means_", self.means_, (K, M, D))
        if keep["c"]:
            p["covars"] = E.check_gmm_covars(self.covars_, self.covariance_type, K, M, D)
        return p

    def _set_emission_attrs(self, p):
        self.weights_ = p["weights"]
        self.means_ = p["means"]
        self.covars_ = p["covars"]


class _EmissionProbAttrs:
    """emissionprob_ (K, n_features) as the fitted emission attribute (categorical and
    multinomial emissions)."""

    _emission_attrs = {"e": "emissionprob_"}

    def _n_features_from_attrs(self):
        return _n_features_of("emissionprob_", self.emissionprob_,
                              ("n_components", "n_features"))

    def _emission_from_attrs(self, keep):
        p = {}
        if keep["e"]:
            p["emissionprob"] = V.check_probabilities(
                "emissionprob_", np.atleast_2d(self.emissionprob_),
                (self.n_components, self.n_features))
        return p

    def _set_emission_attrs(self, p):
        self.emissionprob_ = p["emissionprob"]


class CategoricalHMM(_EmissionProbAttrs, BaseHMM):
    """Hidden Markov model with categorical emissions; the API of
    ``hmmlearn.hmm.CategoricalHMM``. X has shape (n_samples, 1) and holds symbols
    0 .. n_features - 1 (integers; floats with integral values are accepted).

    Fitted attributes: ``startprob_``, ``transmat_``, ``emissionprob_`` (K, n_features),
    ``n_features`` (inferred from X when None, as hmmlearn) and ``monitor_``.

    ``accelerate="squarem"``: SQUAREM around Baum-Welch (see ``emfast.hmm.BaseHMM``).
    """

    def __init__(self, n_components=1, startprob_prior=1.0, transmat_prior=1.0, *,
                 emissionprob_prior=1.0, n_features=None, algorithm="viterbi",
                 random_state=None, n_iter=10, tol=1e-2, verbose=False, params="ste",
                 init_params="ste", implementation="log", n_init=1, n_threads=None,
                 backend="auto", accelerate=None):
        self._base_init(n_components, startprob_prior, transmat_prior, algorithm,
                        random_state, n_iter, tol, verbose, params, init_params,
                        implementation, n_init, n_threads, backend, accelerate)
        self.emissionprob_prior = emissionprob_prior
        self.n_features = n_features

    def _check_parameters(self):
        if self.n_features is not None:
            V.check_int("n_features", self.n_features, 1)
        return super()._check_parameters()

    def _emission_model(self, n_features):
        return E.CategoricalEmission(self.n_components, n_features, self.emissionprob_prior)

    def _check_X(self, X, fitting):
        name = type(self).__name__
        X = V.check_count_array(X, estimator=name, what="symbols")
        if X.shape[1] != 1:
            raise ValueError(f"{name} expects X of shape (n_samples, 1) holding one symbol "
                             f"per sample, got shape {X.shape}")
        top = int(X.max())
        if fitting and self.n_features is None:
            if hasattr(self, "emissionprob_") and "e" not in self.init_params:
                self.n_features = int(np.shape(self.emissionprob_)[1])
            else:
                self.n_features = top + 1
        if top > self.n_features - 1:
            raise ValueError(f"Largest symbol is {top} but the model only emits symbols up to "
                             f"{self.n_features - 1} (n_features = {self.n_features})")
        return X



class MultinomialHMM(_EmissionProbAttrs, _FeatureCountMixin, BaseHMM):
    """Hidden Markov model with multinomial emissions; the API of
    ``hmmlearn.hmm.MultinomialHMM``. Each row of X holds non-negative integer counts; with
    ``n_trials`` given, every row must sum to it.

    Fitted attributes: ``startprob_``, ``transmat_``, ``emissionprob_`` (K, n_features),
    ``n_features`` and ``monitor_``. As in hmmlearn 0.3.3, ``fit`` with ``n_trials=None``
    sets ``n_trials`` to the row sums of the training X (an array), which a later ``fit``
    then checks its X against and ``sample`` draws with when they are all equal.

    ``accelerate="squarem"``: SQUAREM around Baum-Welch (see ``emfast.hmm.BaseHMM``).
    """

    def __init__(self, n_components=1, n_trials=None, startprob_prior=1.0,
                 transmat_prior=1.0, algorithm="viterbi", random_state=None, n_iter=10,
                 tol=1e-2, verbose=False, params="ste", init_params="ste",
                 implementation="log", *, n_init=1, n_threads=None, backend="auto",
                 accelerate=None):
        self._base_init(n_components, startprob_prior, transmat_prior, algorithm,
                        random_state, n_iter, tol, verbose, params, init_params,
                        implementation, n_init, n_threads, backend, accelerate)
        self.n_trials = n_trials

    def _emission_model(self, n_features):
        return E.MultinomialEmission(self.n_components, n_features)

    def _check_X(self, X, fitting):
        X = V.check_count_array(X, estimator=type(self).__name__, what="symbol counts")
        self._set_or_check_n_features(X, fitting)
        if fitting:
            sums = X.sum(axis=1)
            if self.n_trials is None:
                self.n_trials = sums
            else:
                nt = np.asarray(self.n_trials)
                if not (nt.ndim == 0 or nt.shape == sums.shape) or not np.all(sums == nt):
                    raise ValueError("Total count for each sample should add up to the number "
                                     f"of trials (n_trials = {self.n_trials!r})")
        return X

    def _sample_emissions(self, emission, p, states, rng):
        values = [] if self.n_trials is None else np.unique(np.asarray(self.n_trials))
        if len(values) != 1:
            raise ValueError("For sampling, a single n_trials must be given")
        return emission.sample(p, states, rng, int(values[0]))


class PoissonHMM(_FeatureCountMixin, BaseHMM):
    """Hidden Markov model with Poisson emissions; the API of ``hmmlearn.hmm.PoissonHMM``.
    X holds non-negative integer counts.

    Fitted attributes: ``startprob_``, ``transmat_``, ``lambdas_`` (K, n_features),
    ``n_features`` and ``monitor_``.

    ``accelerate="squarem"``: SQUAREM around Baum-Welch (see ``emfast.hmm.BaseHMM``).
    """

    _emission_attrs = {"l": "lambdas_"}

    def __init__(self, n_components=1, startprob_prior=1.0, transmat_prior=1.0,
                 lambdas_prior=0.0, lambdas_weight=0.0, algorithm="viterbi",
                 random_state=None, n_iter=10, tol=1e-2, verbose=False, params="stl",
                 init_params="stl", implementation="log", *, n_init=1, n_threads=None,
                 backend="auto", accelerate=None):
        self._base_init(n_components, startprob_prior, transmat_prior, algorithm,
                        random_state, n_iter, tol, verbose, params, init_params,
                        implementation, n_init, n_threads, backend, accelerate)
        self.lambdas_prior = lambdas_prior
        self.lambdas_weight = lambdas_weight

    def _emission_model(self, n_features):
        return E.PoissonEmission(self.n_components, self.lambdas_prior, self.lambdas_weight)

    def _check_X(self, X, fitting):
        X = V.check_count_array(X, estimator=type(self).__name__, what="counts")
        self._set_or_check_n_features(X, fitting)
        return X

    def _n_features_from_attrs(self):
        return _n_features_of("lambdas_", self.lambdas_, ("n_components", "n_features"))

    def _emission_from_attrs(self, keep):
        p = {}
        if keep["l"]:
            lam = V.check_float_array("lambdas_", np.atleast_2d(self.lambdas_),
                                     (self.n_components, self.n_features))
            if np.any(lam < 0):
                raise ValueError("lambdas_ must be non-negative")
            p["lambdas"] = lam
        return p

    def _set_emission_attrs(self, p):
        self.lambdas_ = p["lambdas"]


def _check_gaussian_X(est, X, fitting):
    """Frames of a Gaussian-emission HMM: NaN marks a missing value (a feature missing in
    every frame has nothing to be learnt from and is refused when fitting)."""
    X = V.check_array(X, estimator=type(est).__name__, allow_nan=True,
                      max_magnitude=V.MAX_GAUSSIAN_MAGNITUDE)
    if fitting and V.has_nan(X):
        empty = np.flatnonzero(np.isnan(X).all(axis=0))
        if len(empty):
            raise ValueError(f"feature(s) {', '.join(map(str, empty[:10]))} of X are "
                             "missing (NaN) in every frame")
    est._set_or_check_n_features(X, fitting)
    return X
