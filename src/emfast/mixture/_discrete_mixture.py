"""emfast.BernoulliMixture, CategoricalMixture (latent class analysis) and PoissonMixture:
GaussianMixture's conventions for mixtures of independent discrete features.

One base class does the fitting, inference and checks; each subclass names its family
(emfast.mixture._bernoulli, _categorical, _poisson: the maths) and its data encoding.
"""

import math

import numpy as np

from emfast import _validation as V
from emfast._config import BACKENDS, get_backend, resolve_n_threads
from emfast._em import check_accelerate, fit_mixture
from emfast._estimator import ParamsMixin
from emfast.kernels import _threads_for
from emfast.mixture import _bernoulli as B
from emfast.mixture import _categorical as C
from emfast.mixture import _poisson as P
from emfast.mixture._kmeans import SAMPLE_ROWS, kmeans, kmeans_plusplus

_INIT_PARAMS = ("kmeans", "k-means++", "random", "random_from_data")

_COMMON_DOC = """
    Constructor parameters, fitted attributes and methods follow
    :class:`emfast.GaussianMixture` (and so scikit-learn's GaussianMixture): ``tol`` on the
    mean log-likelihood, ``n_init`` restarts (run concurrently, the best kept),
    ``warm_start``, ``verbose``, ``backend`` ("auto", "cython", "numba") and ``n_threads``
    (results do not depend on it); ``fit(X, sample_weight=...)``, ``predict``,
    ``predict_proba``, ``score_samples``, ``score``, ``bic``, ``aic``, ``sample`` (returns
    (X, labels), components in order). ``accelerate="squarem"`` runs SQUAREM around the EM
    map (``n_iter_`` then counts EM-map evaluations); None is plain EM.

    Start (``init_params``): every row has a float "frequency encoding":
    %(encoding)s.
    Its mean over a cluster of rows is that cluster's estimate of the parameters. "kmeans"
    (default) runs k-means (one k-means++ start, Lloyd) on the encoded rows, "k-means++"
    and "random_from_data" take K encoded rows, "random" draws uniform random
    responsibilities (scikit-learn's); the start is the clusters' weights and mean
    encodings, moved 10%% of the way to those rows' mean encoding so that no
    probability or rate that the data support starts at 0 (EM never leaves a 0). The
    start uses all rows up to 16,384, else 16,384 rows at a fixed even stride (fewer on
    wide data: the encoding of the rows it uses stays within 256 MiB).

    A component that loses all its samples is re-seeded at a random row (encoded, moved
    as a start is) with a ``DegenerateComponentWarning``. Rows impossible under every
    component (a category, value or count that has probability 0 in every component)
    have ``score_samples`` -inf, and ``predict_proba`` returns the mixture weights for
    them (no NaN); ``predict`` their most probable component a priori.
"""


class _DiscreteMixture(ParamsMixin):
    """The shared fitting, inference and checks; subclasses provide the family."""

    def _init_common(self, n_components, tol, max_iter, n_init, init_params, random_state,
                     warm_start, verbose, verbose_interval, backend, n_threads, accelerate):
        self.n_components = n_components
        self.tol = tol
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.backend = backend
        self.n_threads = n_threads
        self.accelerate = accelerate

    # ------------------------------------------------------------------ checks
    def _check_parameters(self):
        V.check_em_parameters(self, _INIT_PARAMS, BACKENDS)
        check_accelerate(self.accelerate)
        self._check_priors()
        get_backend(self.backend, "discrete")
        return resolve_n_threads(self.n_threads)

    def _checked_data(self, X, fitting):
        """(kernel data (N, .), rows with an observed value: a bool (N,) or None for all,
        the family's shape information from fit's data)."""
        if not fitting:
            self._check_is_fitted("weights_")
            V.check_feature_names(self, X)
        data, info = self._encode(X, fitting)
        if not fitting and data.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {data.shape[1]} features, but {type(self).__name__} is "
                             f"expecting {self.n_features_in_} features as input.")
        if data.dtype == np.int32:
            observed = (data >= 0).any(axis=1)
            return data, (None if observed.all() else observed), info
        return data, None, info

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y=None, sample_weight=None):
        """Estimate the parameters by EM (``n_init`` starts, the best kept); ``y`` is
        ignored. Returns self. Rows with no observed value carry no information and are
        left out (they are still predicted: the mixture weights)."""
        self._fit(X, sample_weight)
        return self

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit, then return the most probable component of each row of X."""
        data = self._fit(X, sample_weight)
        return self._resp(self._weighted_log_prob(data))[0].argmax(axis=1)

    def _fit(self, X, sample_weight):
        """Fit; returns X as the kernels read it (all rows, in order)."""
        n_threads = self._check_parameters()
        names = V.feature_names(X)
        warm = bool(self.warm_start) and hasattr(self, "converged_")
        data_all, observed, info = self._checked_data(X, fitting=not warm)
        N = data_all.shape[0]
        sw = V.check_sample_weight(sample_weight, N)
        data = data_all
        if observed is not None:
            data = np.ascontiguousarray(data_all[observed])
            sw = None if sw is None else sw[observed]
        K = self.n_components
        if data.shape[0] < K:
            raise ValueError("Expected n_samples >= n_components but got n_components = "
                             f"{K}, n_samples = {data.shape[0]}"
                             + (" (rows with an observed value)" if observed is not None
                                else ""))
        if sw is not None and np.count_nonzero(sw) < K:
            raise ValueError(f"Expected at least n_components = {K} samples with a positive "
                             f"sample_weight, got {np.count_nonzero(sw)}")
        if not warm:
            self._set_shape(data, info)
        sample = _even_rows(data.shape[0], self._encoding_width(), K)
        enc_w = None if sw is None else sw[sample]
        if enc_w is not None and not enc_w.any():   # the strided rows all weigh 0
            enc_w = None
        family = self._family(data, sw, float(data.shape[0] if sw is None else sw.sum()),
                              self._frequencies(data[sample], enc_w), enc_w, n_threads)

        def start(X_, sw_, rng, threads):
            return self._start(family, rng, threads)

        self._run_em(family, data, sw, start, n_threads, warm)
        V.set_feature_names(self, names)
        return data_all

    def _start(self, family, rng, n_threads):
        """The starting parameters of ``init_params`` (see the class docstring)."""
        E, w = family.encoded, family.encoded_weight
        K, S = self.n_components, E.shape[0]
        if self.init_params == "kmeans":
            centres, labels, _ = kmeans(E, K, rng, w, backend=self.backend,
                                        n_threads=n_threads)
            nk = np.bincount(labels, weights=w, minlength=K)
            return family.start(nk / nk.sum(), centres)
        if self.init_params == "random":
            resp = rng.uniform(size=(S, K))
            resp /= resp.sum(axis=1)[:, None]
            if w is not None:
                resp *= w[:, None]
            nk = resp.sum(axis=0)
            return family.start(nk / nk.sum(), (resp.T @ E) / nk[:, None])
        if self.init_params == "k-means++":
            centres, _ = kmeans_plusplus(E, K, rng, w, backend=self.backend,
                                         n_threads=n_threads)
        else:
            # K distinct rows, drawn by weight; with fewer than K weighted rows among the
            # encoded ones, the weighted rows each once and the rest uniformly
            weighted = S if w is None else np.count_nonzero(w)
            p = None if w is None or weighted < K else w / w.sum()
            centres = E[rng.choice(S, size=K, replace=False, p=p)]
        return family.start(np.full(K, 1.0 / K), centres)

    def _run_em(self, family, X, sw, start, n_threads, warm):
        run = fit_mixture(self, family, X, sw, start, self._fitted_params() if warm else None,
                          n_threads=n_threads, sequential=bool(self.verbose))
        self._set_params(run.params)

    # ------------------------------------------------------------------ inference
    def _weighted_log_prob(self, data):
        """(N, K) log w_k + log P(x_n | k) from the compiled kernel."""
        out = np.empty((data.shape[0], self.n_components))
        self._log_prob_kernel(data, self._fitted_params(), out,
                              _threads_for(data.shape[0], resolve_n_threads(self.n_threads)))
        return out

    def _resp(self, logp):
        """(responsibilities, per-row log-likelihood) from weighted log-probabilities; a
        row impossible under every component: log-likelihood -inf, the weights."""
        top = logp.max(axis=1)
        impossible = top == -np.inf
        top[impossible] = 0.0
        with np.errstate(under="ignore"):
            resp = np.exp(logp - top[:, None])
        s = resp.sum(axis=1)
        s[impossible] = 1.0
        resp /= s[:, None]
        resp[impossible] = self.weights_
        return resp, np.where(impossible, -np.inf, top + np.log(s))

    def _infer(self, X):
        return self._resp(self._weighted_log_prob(self._checked_data(X, fitting=False)[0]))

    def predict(self, X):
        """Most probable component of each row."""
        return self._infer(X)[0].argmax(axis=1)

    def predict_proba(self, X):
        """Posterior probability of each component for each row, shape (n_samples, K)."""
        return self._infer(X)[0]

    def score_samples(self, X):
        """Log-likelihood of each row under the model (missing values marginalised)."""
        return self._infer(X)[1]

    def score(self, X, y=None):
        """Mean log-likelihood per row."""
        return float(np.mean(self.score_samples(X)))

    def bic(self, X):
        """Bayesian information criterion on X (lower is better)."""
        n = self._checked_data(X, fitting=False)[0].shape[0]
        return -2 * self.score(X) * n + self._n_parameters() * math.log(n)

    def aic(self, X):
        """Akaike information criterion on X (lower is better)."""
        n = self._checked_data(X, fitting=False)[0].shape[0]
        return -2 * self.score(X) * n + 2 * self._n_parameters()

    def sample(self, n_samples=1):
        """Draw (X, labels) from the fitted mixture; components in order, as
        GaussianMixture. X is float64 with no missing values."""
        self._check_is_fitted("weights_")
        if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) \
                or n_samples < 1:
            raise ValueError(f"Invalid value for 'n_samples': {n_samples!r}. The sampling "
                             "requires at least one sample.")
        return self._sample(self._fitted_params(), int(n_samples),
                            V.check_random_state(self.random_state))

    def _checked_weights(self):
        return V.check_probabilities("weights_", self.weights_, (self.n_components,))


# The start's frequency encoding (rows x encoded columns, float64) stays within this many
# doubles (256 MiB): with wide data (a binary feature per word, say) it takes fewer rows.
START_DOUBLES = 2 ** 25


def _even_rows(n, width, n_components):
    """The rows the start and the re-seeding see: all up to SAMPLE_ROWS (fewer where their
    encoding of ``width`` columns would exceed START_DOUBLES, but at least n_components),
    else that many rows at an even stride (fixed: every restart draws from the same rows)."""
    limit = min(SAMPLE_ROWS, max(n_components, START_DOUBLES // max(width, 1)))
    if n <= limit:
        return slice(None)
    return np.arange(limit) * n // limit


def _check_concentration(name, value):
    if V.check_real(name, value, 0.0) <= 0:
        raise ValueError(f"The '{name}' parameter must be > 0 (a Dirichlet concentration), "
                         f"got {value!r}")


class _CodedMixture(_DiscreteMixture):
    """Categorical and Bernoulli data: int32 codes for the categorical kernels, NaN
    missing, a symmetric Dirichlet (Beta) prior."""

    def __init__(self, n_components=1, *, tol=1e-3, max_iter=100, n_init=1,
                 init_params="kmeans", probabilities_prior=1.0, random_state=None,
                 warm_start=False, verbose=0, verbose_interval=10, backend="auto",
                 n_threads=None, accelerate=None):
        self._init_common(n_components, tol, max_iter, n_init, init_params, random_state,
                          warm_start, verbose, verbose_interval, backend, n_threads, accelerate)
        self.probabilities_prior = probabilities_prior

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags

    def _check_priors(self):
        _check_concentration("probabilities_prior", self.probabilities_prior)

    def _log_prob_kernel(self, codes, params, out, n_threads):
        get_backend(self.backend, "discrete").categorical_log_prob(
            codes, params.log_prob_T(), params.log_weights(), out, n_threads)


class CategoricalMixture(_CodedMixture):
    __doc__ = """Latent class analysis: a mixture of independent categorical items.

    X (n_samples, J) holds integer category codes 0, 1, ..., C_j - 1 per item j (ints, or
    floats with integer values); NaN marks a missing answer, skipped in the likelihood
    (poLCA's ``na.rm=FALSE``); a row with no answer at all says nothing and is left out
    of fit (predict_proba gives it the weights, score_samples 0). C_j is the largest code
    of item j seen in fit plus one (``n_categories_``); a larger code at predict time is an
    error, and a smaller code that fit never saw has probability 0 (with the default
    prior).

    ``probabilities_prior`` (default 1.0: none, the maximum-likelihood estimate): a
    symmetric Dirichlet concentration a per item and component, as hmmlearn's
    ``emissionprob_prior``; the M-step is the MAP (counts + a - 1) / sum. a > 1 keeps every
    probability off 0 (a = 2 adds one pseudo-count per category).

    Fitted: ``weights_`` (K,), ``probabilities_`` a list of J arrays (K, C_j) (as
    scikit-learn's CategoricalNB.feature_log_prob_, not padded), ``n_categories_`` (J,),
    ``converged_``, ``n_iter_``, ``lower_bound_``, ``lower_bounds_``, ``n_features_in_``.
""" + _COMMON_DOC % {"encoding": "one-hot per item, a missing item its frequencies"}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.categorical = True
        tags.input_tags.positive_only = True
        return tags

    def _encode(self, X, fitting):
        return C.check_codes(X, type(self).__name__, None if fitting else self.n_categories_)

    def _set_shape(self, codes, n_categories):
        self.n_categories_ = n_categories
        self.n_features_in_ = codes.shape[1]

    def _frequencies(self, codes, sample_weight):
        return C.frequency_encoding(codes, self.n_categories_, sample_weight)

    def _encoding_width(self):
        return int(np.sum(self.n_categories_))

    def _family(self, codes, sw, weight_sum, encoded, encoded_weight, n_threads):
        return C.CategoricalFamily(self.n_components, self.n_categories_,
                                   self.probabilities_prior, self.backend, weight_sum, encoded,
                                   encoded_weight)

    def _fitted_params(self):
        """The fitted parameters, checked against the fit's shapes: the kernels are called
        unchecked, and the attributes may have been reassigned."""
        K = self.n_components
        blocks = self.probabilities_
        if not isinstance(blocks, (list, tuple)) or len(blocks) != len(self.n_categories_):
            raise ValueError(f"probabilities_ must be a list of {len(self.n_categories_)} "
                             "arrays (one per item)")
        probs = np.hstack([V.check_probabilities(f"probabilities_[{j}]", b, (K, int(c)))
                           for j, (b, c) in enumerate(zip(blocks, self.n_categories_))])
        return C.CategoricalParams(self._checked_weights(), probs,
                                   C.offsets_of(self.n_categories_))

    def _set_params(self, params):
        self.weights_ = params.weights
        self.probabilities_ = [np.ascontiguousarray(b) for b in params.blocks()]

    def _n_parameters(self):
        return C.n_parameters(self.n_components, self.n_categories_)

    def _sample(self, params, n_samples, rng):
        return C.sample(params, n_samples, rng)


class BernoulliMixture(_CodedMixture):
    __doc__ = """Mixture of independent Bernoulli features.

    X (n_samples, D) holds 0 and 1 (bool, int or float); NaN marks a missing value,
    skipped in the likelihood; a row with no value at all says nothing and is left out of
    fit (predict_proba gives it the weights, score_samples 0).

    ``binarize`` (default None), as scikit-learn's BernoulliNB: None requires 0/1 data
    (any other value is a ValueError); a float threshold t instead reads each value as 1
    if it is > t, else 0, in fit and in every later call (predict, score, ...); NaN stays
    missing and the caller's X is not modified.

    ``probabilities_prior`` (default 1.0: none, the maximum-likelihood estimate): a
    symmetric Beta(a, a) per feature and component, the two-category case of
    CategoricalMixture's Dirichlet; the M-step is the MAP (n_1 + a - 1) / (n + 2 (a - 1)).
    a > 1 keeps every probability off 0 and 1.

    Fitted: ``weights_`` (K,), ``probabilities_`` (K, D) = P(x = 1 | component),
    ``converged_``, ``n_iter_``, ``lower_bound_``, ``lower_bounds_``, ``n_features_in_``.
""" + _COMMON_DOC % {"encoding": "the 0/1 values, a missing value its feature's mean"}

    def __init__(self, n_components=1, *, tol=1e-3, max_iter=100, n_init=1,
                 init_params="kmeans", probabilities_prior=1.0, binarize=None,
                 random_state=None, warm_start=False, verbose=0, verbose_interval=10,
                 backend="auto", n_threads=None, accelerate=None):
        super().__init__(n_components, tol=tol, max_iter=max_iter, n_init=n_init,
                         init_params=init_params, probabilities_prior=probabilities_prior,
                         random_state=random_state, warm_start=warm_start, verbose=verbose,
                         verbose_interval=verbose_interval, backend=backend,
                         n_threads=n_threads, accelerate=accelerate)
        self.binarize = binarize

    def _encode(self, X, fitting):
        # binarize is checked here, not in _check_priors: predict reads it too, and it may
        # have been set (set_params) since fit
        threshold = None if self.binarize is None else V.check_real("binarize", self.binarize)
        return B.check_binary(X, type(self).__name__, fitting, threshold), None

    def _set_shape(self, codes, info):
        self.n_features_in_ = codes.shape[1]

    def _frequencies(self, codes, sample_weight):
        return B.frequency_encoding(codes, sample_weight)

    def _encoding_width(self):
        return self.n_features_in_

    def _family(self, codes, sw, weight_sum, encoded, encoded_weight, n_threads):
        return B.BernoulliFamily(self.n_components, self.n_features_in_,
                                 self.probabilities_prior, self.backend, weight_sum, encoded,
                                 encoded_weight)

    def _fitted_params(self):
        K, D = self.n_components, self.n_features_in_
        p = V.check_float_array("probabilities_", self.probabilities_, (K, D))
        if np.any(p < 0) or np.any(p > 1):
            raise ValueError("probabilities_ must be in [0, 1]")
        return B.params_of(self._checked_weights(), p)

    def _set_params(self, params):
        self.weights_ = params.weights
        self.probabilities_ = B.probabilities(params)

    def _n_parameters(self):
        return B.n_parameters(self.n_components, self.n_features_in_)

    def _sample(self, params, n_samples, rng):
        return B.sample(params.weights, B.probabilities(params), n_samples, rng)


class PoissonMixture(_DiscreteMixture):
    __doc__ = """Mixture of independent Poisson count features.

    X (n_samples, D) holds non-negative integer counts (ints, or floats with integer
    values; float32 is kept); no missing values.

    ``lambdas_prior`` and ``lambdas_weight`` (defaults 0 and 0: none, the
    maximum-likelihood rates): hmmlearn's PoissonHMM Gamma prior and its M-step,
    lambda = (lambdas_prior + n y_bar) / (lambdas_weight + n), y_bar the component's mean
    counts and n the total sample weight.

    Fitted: ``weights_`` (K,), ``lambdas_`` (K, D) the rates, ``converged_``, ``n_iter_``,
    ``lower_bound_``, ``lower_bounds_``, ``n_features_in_``.
""" + _COMMON_DOC % {"encoding": "the counts"}

    def __init__(self, n_components=1, *, tol=1e-3, max_iter=100, n_init=1,
                 init_params="kmeans", lambdas_prior=0.0, lambdas_weight=0.0,
                 random_state=None, warm_start=False, verbose=0, verbose_interval=10,
                 backend="auto", n_threads=None, accelerate=None):
        self._init_common(n_components, tol, max_iter, n_init, init_params, random_state,
                          warm_start, verbose, verbose_interval, backend, n_threads, accelerate)
        self.lambdas_prior = lambdas_prior
        self.lambdas_weight = lambdas_weight

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.categorical = True       # integer counts
        tags.input_tags.positive_only = True
        return tags

    def _check_priors(self):
        V.check_real("lambdas_prior", self.lambdas_prior, 0.0)
        V.check_real("lambdas_weight", self.lambdas_weight, 0.0)

    def _encode(self, X, fitting):
        return P.check_counts(X, type(self).__name__), None

    def _set_shape(self, X, info):
        self.n_features_in_ = X.shape[1]

    def _frequencies(self, X, sample_weight):
        return np.asarray(X, dtype=np.float64)

    def _encoding_width(self):
        return self.n_features_in_

    def _family(self, X, sw, weight_sum, encoded, encoded_weight, n_threads):
        return P.PoissonFamily(self.n_components, float(self.lambdas_prior),
                               float(self.lambdas_weight), P.row_const(X, self.backend, n_threads),
                               self.backend, weight_sum, encoded, encoded_weight)

    def _fitted_params(self):
        K, D = self.n_components, self.n_features_in_
        lam = V.check_float_array("lambdas_", self.lambdas_, (K, D))
        if np.any(lam < 0):
            raise ValueError("lambdas_ must be non-negative")
        return P.PoissonParams(self._checked_weights(), lam)

    def _set_params(self, params):
        self.weights_ = params.weights
        self.lambdas_ = params.lambdas

    def _log_prob_kernel(self, X, params, out, n_threads):
        mod = get_backend(self.backend, "discrete")
        row_const = np.empty(X.shape[0])
        mod.poisson_row_const(X, row_const, n_threads)
        log_lam, log_const = params.kernel_args()
        mod.poisson_log_prob(X, log_lam, log_const, row_const, out, n_threads)

    def _n_parameters(self):
        return P.n_parameters(self.n_components, self.n_features_in_)

    def _sample(self, params, n_samples, rng):
        return P.sample(params, n_samples, rng)
