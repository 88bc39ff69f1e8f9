"""emfast.LatentDirichletAllocation: variational Bayes for LDA, batch and online (Hoffman,
Blei & Bach 2010), a drop-in for scikit-learn's class with a compiled E-step.

The E-step is ``emfast.kernels.lda_estep`` (both backends), bound once per fit to each batch
of documents; everything here is small NumPy work on K x V arrays (the M-step, the Dirichlet
terms of the bound). No Python loop runs over documents.
"""

import math
import warnings

import numpy as np

from emfast import _validation as V
from emfast import kernels
from emfast._config import BACKENDS, resolve_n_threads
from emfast._estimator import OutputMixin, ParamsMixin
from emfast.exceptions import ConvergenceWarning, compatible

# scikit-learn's starting draws: Gamma(shape 100, scale 1/100), mean 1 and sd 0.1, for the
# topic-word parameters and for every training E-step's document-topic parameters
_INIT_SHAPE, _INIT_SCALE = 100.0, 0.01
_METHODS = ("batch", "online")


class LatentDirichletAllocation(OutputMixin, ParamsMixin):
    """Latent Dirichlet Allocation by variational Bayes, batch or online.

    A drop-in for ``sklearn.decomposition.LatentDirichletAllocation`` (scikit-learn 1.9):
    the same constructor parameters, fitted attributes and methods, and from the same
    ``random_state`` the same results to rounding (its random draws are reproduced: those
    of ``n_jobs=None``, one process). The per-document fixed-point iteration (the E-step)
    runs in compiled code on all cores, over each document's non-zero words only.

    Parameters
    ----------
    n_components : int, default=10
        Number of topics K.
    doc_topic_prior, topic_word_prior : float in (0, 1] or None, default=None
        Symmetric Dirichlet priors alpha on each document's topic proportions and eta on
        each topic's word distribution; None is 1 / n_components. (scikit-learn also
        accepts 0, which is no Dirichlet: emfast refuses it.)
    learning_method : {"batch", "online"}, default="batch"
        ``fit``'s method: "batch" runs one E-step over all documents per iteration and
        sets ``components_ = topic_word_prior + statistics``; "online" passes over the
        documents in mini-batches of ``batch_size`` and blends each batch's estimate into
        ``components_`` with weight rho = (learning_offset + n_batch_iter_) **
        -learning_decay.
    learning_decay : float in [0, 1], default=0.7
    learning_offset : float >= 1, default=10.0
    max_iter : int >= 0, default=10
        Passes over the data in ``fit`` (not used by ``partial_fit``).
    batch_size : int >= 1, default=128
        Documents per mini-batch of the online method (``fit`` online and ``partial_fit``).
    evaluate_every : int, default=-1
        > 0: the perplexity of the training data is computed every ``evaluate_every``
        passes, and ``fit`` stops when it changed by less than ``perp_tol`` since the last
        evaluation. If it never does after two evaluations or more, ``fit`` ends at
        ``max_iter`` with a ``ConvergenceWarning`` (scikit-learn ends silently). <= 0: no
        evaluation.
    total_samples : float > 0, default=1e6
        The number of documents that ``partial_fit``'s batches are a sample of.
    perp_tol : float >= 0, default=0.1
    mean_change_tol : float >= 0, default=1e-3
        A document's E-step stops when its topic parameters changed by less than this on
        average over the topics.
    max_doc_update_iter : int >= 0, default=100
        The most fixed-point iterations per document and E-step.
    n_jobs : int or None
        Accepted for scikit-learn compatibility and ignored: ``n_threads`` sets the threads.
    verbose : int, default=0
        > 0 prints one line per pass (and its perplexity when evaluated), as scikit-learn.
    random_state : int, RandomState or None
    backend : {"auto", "cython", "numba"}, default="auto"
    n_threads : int or None (all usable CPUs)
        Results do not depend on it.

    Attributes
    ----------
    components_ : (n_components, n_features)
        The variational parameters lambda of the topics' word distributions (pseudo-counts;
        ``components_ / components_.sum(axis=1)[:, None]`` are the topics).
    exp_dirichlet_component_ : (n_components, n_features)
        exp(E[log beta]) under lambda.
    n_batch_iter_ : int
        EM steps (mini-batches) taken, plus one (scikit-learn's count).
    n_iter_ : int
        Passes over the data in ``fit``.
    bound_ : float
        The training data's perplexity after ``fit``.
    doc_topic_prior_, topic_word_prior_ : float
        The priors used (1 / n_components where the parameter is None).
    random_state_ : RandomState
    n_features_in_, feature_names_in_ (DataFrame input with string column names)

    Input: documents x words counts, dense or any scipy.sparse format (duplicate entries
    are summed, on a copy); float32 is kept (``components_`` and the outputs are float32),
    other dtypes become float64. Counts must be finite and non-negative; a document with
    no words (an all-zero row) is allowed: it adds nothing to the statistics and its topic
    proportions are the prior's (uniform after normalisation).
    """

    def __init__(self, n_components=10, *, doc_topic_prior=None, topic_word_prior=None,
                 learning_method="batch", learning_decay=0.7, learning_offset=10.0,
                 max_iter=10, batch_size=128, evaluate_every=-1, total_samples=1e6,
                 perp_tol=1e-1, mean_change_tol=1e-3, max_doc_update_iter=100, n_jobs=None,
                 verbose=0, random_state=None, backend="auto", n_threads=None):
        self.n_components = n_components
        self.doc_topic_prior = doc_topic_prior
        self.topic_word_prior = topic_word_prior
        self.learning_method = learning_method
        self.learning_decay = learning_decay
        self.learning_offset = learning_offset
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.evaluate_every = evaluate_every
        self.total_samples = total_samples
        self.perp_tol = perp_tol
        self.mean_change_tol = mean_change_tol
        self.max_doc_update_iter = max_doc_update_iter
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.random_state = random_state
        self.backend = backend
        self.n_threads = n_threads

    def __sklearn_tags__(self):
        # Only scikit-learn calls this, so importing it here costs emfast users nothing.
        from sklearn.utils import InputTags, Tags, TargetTags, TransformerTags

        return Tags(estimator_type=None, target_tags=TargetTags(required=False),
                    transformer_tags=TransformerTags(preserves_dtype=["float32", "float64"]),
                    input_tags=InputTags(positive_only=True, sparse=True))

    # ------------------------------------------------------------------ checks
    def _check_parameters(self):
        """scikit-learn's parameter constraints (priors: > 0); returns the thread count."""
        V.check_int("n_components", self.n_components, 1)
        for name in ("doc_topic_prior", "topic_word_prior"):
            value = getattr(self, name)
            if value is not None and V.check_real(name, value, 0.0, 1.0) == 0:
                raise ValueError(f"The '{name}' parameter must be in (0, 1] (a Dirichlet "
                                 f"concentration), got {value!r}")
        V.check_option("learning_method", self.learning_method, _METHODS)
        V.check_real("learning_decay", self.learning_decay, 0.0, 1.0)
        V.check_real("learning_offset", self.learning_offset, 1.0)
        V.check_int("max_iter", self.max_iter, 0)
        V.check_int("batch_size", self.batch_size, 1)
        V.check_int("evaluate_every", self.evaluate_every, -math.inf)
        if V.check_real("total_samples", self.total_samples, 0.0) == 0:
            raise ValueError(f"The 'total_samples' parameter must be > 0, got "
                             f"{self.total_samples!r}")
        V.check_real("perp_tol", self.perp_tol, 0.0)
        V.check_real("mean_change_tol", self.mean_change_tol, 0.0)
        V.check_int("max_doc_update_iter", self.max_doc_update_iter, 0)
        if self.n_jobs is not None:
            V.check_int("n_jobs", self.n_jobs, -math.inf)
        V.check_int("verbose", int(self.verbose) if isinstance(self.verbose, (bool, np.bool_))
                    else self.verbose, 0)
        V.check_option("backend", self.backend, BACKENDS)
        return resolve_n_threads(self.n_threads)

    def _counts(self, X, whom, fitting):
        """X as the E-step reads it (canonical CSR of the model's dtype); a fitted model's
        vocabulary size and feature names must match."""
        name = type(self).__name__
        whom = f"{name}.{whom}"
        if not fitting:
            self._check_is_fitted("components_")
            V.check_feature_names(self, X)
        X = V.check_count_matrix(X, estimator=name, whom=whom,
                                 dtype=None if fitting else self.components_.dtype)
        if not fitting:
            V.check_n_features(name, X.shape[1], self.components_.shape[1])
        return X

    def _set_features(self, X_in, n_features):
        self.n_features_in_ = n_features
        V.set_feature_names(self, V.feature_names(X_in))

    # ------------------------------------------------------------------ fitting
    def _init_latent_vars(self, n_features, dtype):
        """scikit-learn's start: the priors, and lambda drawn from Gamma(100, 1/100)."""
        self.random_state_ = V.check_random_state(self.random_state)
        self.n_batch_iter_ = 1
        self.n_iter_ = 0
        K = self.n_components
        self.doc_topic_prior_ = 1.0 / K if self.doc_topic_prior is None \
            else float(self.doc_topic_prior)
        self.topic_word_prior_ = 1.0 / K if self.topic_word_prior is None \
            else float(self.topic_word_prior)
        self.components_ = self.random_state_.gamma(
            _INIT_SHAPE, _INIT_SCALE, (K, n_features)).astype(dtype, copy=False)
        self._update_exp_dirichlet()

    def _update_exp_dirichlet(self):
        self.exp_dirichlet_component_ = kernels.dirichlet_expectation(
            self.components_, exp=True, backend=self.backend)

    def fit(self, X, y=None):
        """Fit the topics to the documents X by batch or online variational Bayes
        (``learning_method``); ``y`` is ignored. Returns self."""
        self._fit(X)
        return self

    def fit_transform(self, X, y=None, *, normalize=True):
        """Fit, then return the documents' topic proportions, as ``fit(X).transform(X)``
        (from the E-step that computed ``bound_``: no extra pass)."""
        return self._finish(self._fit(X), normalize, X)

    def _fit(self, X_in):
        """Fit; returns the training documents' topic parameters (gamma) under the fit."""
        n_threads = self._check_parameters()
        X = self._counts(X_in, "fit", fitting=True)
        N, n_features = X.shape
        _word_count(X)       # an error now, not after the passes, if X has no words
        self._init_latent_vars(n_features, X.dtype)
        self._set_features(X_in, n_features)
        whole = _EStep(self, X, n_threads)
        if self.learning_method == "batch":
            passes = [whole]
        else:
            passes = [_EStep(self, X[s], n_threads) for s in _batches(N, self.batch_size)]
        evaluate = self.evaluate_every > 0
        last, converged, compared = None, False, False
        for i in range(self.max_iter):
            for estep in passes:
                self._em_step(estep, N, batch=self.learning_method == "batch")
            if evaluate and (i + 1) % self.evaluate_every == 0:
                perplexity = self._perplexity(whole, X)[0]
                if self.verbose:
                    print("iteration: %d of max_iter: %d, perplexity: %.4f"
                          % (i + 1, self.max_iter, perplexity))
                if last is not None:
                    compared = True
                    if abs(last - perplexity) < self.perp_tol:
                        converged = True
                        break      # before counting the pass, as scikit-learn
                last = perplexity
            elif self.verbose:
                print("iteration: %d of max_iter: %d" % (i + 1, self.max_iter))
            self.n_iter_ += 1
        if compared and not converged:      # two evaluations at least, and still moving
            warnings.warn(f"LatentDirichletAllocation did not converge: the perplexity "
                          f"changed by more than perp_tol={self.perp_tol} between the last "
                          f"evaluations in max_iter={self.max_iter} passes. Increase "
                          "max_iter or perp_tol.", compatible(ConvergenceWarning),
                          stacklevel=3)
        self.bound_, gamma = self._perplexity(whole, X)
        return gamma

    def partial_fit(self, X, y=None):
        """One online variational Bayes step per mini-batch of ``batch_size`` documents
        of X, as a sample of ``total_samples`` documents; the first call (on an unfitted
        model) starts the model from ``random_state``. ``y`` is ignored. Returns self."""
        n_threads = self._check_parameters()
        first = not hasattr(self, "components_")
        X_in, X = X, self._counts(X, "partial_fit", fitting=first)
        N, n_features = X.shape
        if first:
            self._init_latent_vars(n_features, X.dtype)
            self._set_features(X_in, n_features)
        elif self.n_components != self.components_.shape[0]:
            raise ValueError(f"n_components is {self.n_components} but the model has "
                             f"{self.components_.shape[0]} topics; refit it with fit")
        for s in _batches(N, self.batch_size):
            self._em_step(_EStep(self, X[s], n_threads), self.total_samples, batch=False)
        return self

    def _em_step(self, estep, total_samples, batch):
        """One E-step over ``estep``'s documents from random starting topic parameters (as
        scikit-learn: one draw per batch), then the batch or online M-step."""
        n_docs = estep.n_docs
        gamma = self.random_state_.gamma(
            _INIT_SHAPE, _INIT_SCALE, (n_docs, self.components_.shape[0])
        ).astype(self.components_.dtype, copy=False)
        sstats, _ = estep(self.exp_dirichlet_component_, gamma, cal_sstats=True)
        if batch:
            sstats += self.topic_word_prior_
            self.components_ = sstats
        else:
            # rho stays a float64 NumPy scalar so that float32 models round as scikit-learn's
            rho = np.power(self.learning_offset + self.n_batch_iter_, -self.learning_decay)
            sstats *= float(total_samples) / n_docs
            sstats += self.topic_word_prior_
            self.components_ *= 1 - rho
            self.components_ += rho * sstats
        self._update_exp_dirichlet()
        self.n_batch_iter_ += 1

    # ------------------------------------------------------------------ inference
    def _inference(self, X, cal_bound):
        """(gamma, word_bound) of the documents X (checked) under the fitted topics, the
        E-step from gamma = 1 (scikit-learn's, for transform and the bound)."""
        return _EStep(self, X, resolve_n_threads(self.n_threads)).infer(self, cal_bound)

    def _finish(self, gamma, normalize, X_in):
        if normalize:
            gamma /= gamma.sum(axis=1)[:, None]
        return self._output(gamma, X_in)

    def transform(self, X, *, normalize=True):
        """The topic proportions of each document of X (n_samples, n_components); with
        ``normalize=False`` the variational Dirichlet parameters gamma themselves."""
        counts = self._counts(X, "transform", fitting=False)
        return self._finish(self._inference(counts, cal_bound=False)[0], normalize, X)

    def _approx_bound(self, gamma, word_bound, sub_sampling):
        """The variational lower bound on the log-likelihood of the documents whose topic
        parameters are ``gamma`` (``word_bound``: their expected log-likelihood of the
        words, from the E-step), scaled to ``total_samples`` documents if ``sub_sampling``,
        plus the topics' prior terms."""
        K, n_features = self.components_.shape
        bound = word_bound + _dirichlet_terms(self.doc_topic_prior_, gamma, K, self.backend)
        if sub_sampling:
            bound *= float(self.total_samples) / gamma.shape[0]
        return bound + _dirichlet_terms(self.topic_word_prior_, self.components_, n_features,
                                        self.backend)

    def _perplexity(self, estep, X, sub_sampling=False):
        """(perplexity of X, X's gamma) from one inference E-step bound in ``estep``."""
        words = _word_count(X)
        gamma, word_bound = estep.infer(self, cal_bound=True)
        if sub_sampling:
            words *= float(self.total_samples) / X.shape[0]
        bound = self._approx_bound(gamma, word_bound, sub_sampling)
        return float(np.exp(-bound / words)), gamma

    def score(self, X, y=None):
        """The variational lower bound on the log-likelihood of the documents X."""
        X = self._counts(X, "score", fitting=False)
        gamma, word_bound = self._inference(X, cal_bound=True)
        return float(self._approx_bound(gamma, word_bound, sub_sampling=False))

    def perplexity(self, X, sub_sampling=False):
        """exp(-bound / number of words) on the documents X; ``sub_sampling``: X is a
        sample of ``total_samples`` documents and both are scaled to that many."""
        X = self._counts(X, "perplexity", fitting=False)
        return self._perplexity(_EStep(self, X, resolve_n_threads(self.n_threads)), X,
                                bool(sub_sampling))[0]

    # ------------------------------------------------------------------ output
    @property
    def _n_features_out(self):
        return self.components_.shape[0]

    def get_feature_names_out(self, input_features=None):
        """The output column names, scikit-learn's: "latentdirichletallocation0", ...;
        ``input_features`` (optional) must be the fitted input's."""
        self._check_is_fitted("components_")
        if input_features is not None:
            names = np.asarray(input_features, dtype=object)
            fitted = getattr(self, "feature_names_in_", None)
            if fitted is not None and not np.array_equal(names, fitted):
                raise ValueError("input_features is not equal to feature_names_in_")
            if len(names) != self.n_features_in_:
                raise ValueError(f"input_features should have length equal to number of "
                                 f"features ({self.n_features_in_}), got {len(names)}")
        prefix = type(self).__name__.lower()
        return np.asarray([f"{prefix}{k}" for k in range(self._n_features_out)], dtype=object)


class _EStep:
    """The compiled E-step (``kernels.bind_lda_estep``) bound to one batch of documents (a
    checked CSR matrix) with the model's priors, tolerances, backend and threads: bound
    once per fit and batch, then called every pass without checking X again."""

    def __init__(self, model, X, n_threads):
        self.n_docs = X.shape[0]
        self._X = X
        self._kernel = kernels.bind_lda_estep(X, n_threads=n_threads, backend=model.backend)
        self._args = (model.doc_topic_prior_, model.max_doc_update_iter,
                      model.mean_change_tol)

    def __call__(self, exp_topic_word, gamma, *, cal_sstats=False, cal_bound=False):
        """(statistics or None, word bound or None); ``gamma`` is updated in place."""
        return self._kernel(exp_topic_word, gamma, *self._args, cal_sstats=cal_sstats,
                            cal_bound=cal_bound)

    def infer(self, model, cal_bound):
        """(gamma, word bound or None) from the E-step started at gamma = 1 under
        ``model``'s topics."""
        exp_topic_word = model.exp_dirichlet_component_
        gamma = np.ones((self.n_docs, exp_topic_word.shape[0]), dtype=exp_topic_word.dtype)
        bound = self(exp_topic_word, gamma, cal_bound=cal_bound)[1]
        if cal_bound and bound == -np.inf:
            # a word whose exp(E[log beta]) underflowed to 0 in every topic (a word unseen
            # in training under a small topic_word_prior): the kernel's log(e . B) is -inf
            # where the bound is finite; the word term again, in logs
            bound = _word_bound_in_logs(self._X, gamma, model.components_, model.backend)
        return gamma, bound


def _word_bound_in_logs(X, gamma, components, backend, chunk=1 << 22):
    """sum_{d,w} X[d, w] logsumexp_k(E[log theta_dk] + E[log beta_kw]), the word term of the
    bound that the kernels compute as log(exp(E[log theta_d]) . exp(E[log beta_w])), in logs
    (no underflow); at most ``chunk`` numbers at a time."""
    from scipy.special import logsumexp

    e_theta = kernels.dirichlet_expectation(gamma.astype(np.float64), backend=backend)
    e_beta_T = np.ascontiguousarray(
        kernels.dirichlet_expectation(components.astype(np.float64), backend=backend).T)
    rows_per_chunk = max(1, chunk // max(1, gamma.shape[1] * max(1, X.nnz // X.shape[0])))
    total = 0.0
    for lo in range(0, X.shape[0], rows_per_chunk):
        hi = min(lo + rows_per_chunk, X.shape[0])
        a, b = X.indptr[lo], X.indptr[hi]
        docs = np.repeat(np.arange(lo, hi), np.diff(X.indptr[lo:hi + 1]))
        terms = logsumexp(e_theta[docs] + e_beta_T[X.indices[a:b]], axis=1)
        total += float(np.dot(X.data[a:b].astype(np.float64), terms))
    return total


def _word_count(X):
    """The number of words in the documents X (> 0, else a ValueError: the perplexity
    divides by it)."""
    words = float(X.data.sum(dtype=np.float64))
    if words <= 0:
        raise ValueError("X has no words (every document is empty): the perplexity and "
                         "the fit's bound_ are undefined")
    return words


def _batches(n, size):
    """Consecutive row slices of ``size`` (the last one shorter), scikit-learn's
    gen_batches."""
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


def _dirichlet_terms(prior, distr, size, backend):
    """E[log p(x | prior)] - E[log q(x | distr)] summed over the rows of ``distr``: each row
    a Dirichlet(distr[i]) distribution q, p the symmetric Dirichlet(prior) on ``size``
    values (the terms of the bound that are not the words' likelihood)."""
    # here, not at the top: scipy.special would add 0.17 s to every `import emfast`
    from scipy.special import gammaln

    e_log = kernels.dirichlet_expectation(distr, backend=backend)
    d = distr.astype(np.float64, copy=False)
    rows = d.shape[0]
    return (np.vdot(prior - d, e_log) + gammaln(d).sum() - d.size * gammaln(prior)
            + rows * gammaln(prior * size) - gammaln(d.sum(axis=1)).sum())
