"""Emission models of the HMMs: log-likelihoods, statistics from posteriors, M-step,
initialisation, sampling and parameter counts. Nothing here knows about transitions.

Every model holds its priors and works on a plain dict of parameter arrays (float64):

* ``GaussianEmission``: ``means`` (K, D), ``covars`` in the compact form of the
  covariance type (spherical (K,), diag (K, D), full (K, D, D), tied (D, D)); ``prepare``
  adds ``prec_chol`` and ``log_const`` for the kernels.
* ``GMMEmission``: ``weights`` (K, M), ``means`` (K, M, D), ``covars`` (spherical (K, M),
  diag (K, M, D), full (K, M, D, D), tied (K, D, D): one matrix per state).
* ``CategoricalEmission`` / ``MultinomialEmission``: ``emissionprob`` (K, F).
* ``PoissonEmission``: ``lambdas`` (K, D).

``log_likelihood(X, p, backend, n_threads, out=None)`` returns the (T, K) log-emissions;
given ``out`` (T, K) float64, the Gaussian and categorical models write into it (the EM
loop passes the same array every iteration), the others return a new array.

The Gaussian models take X with missing values (NaN): a frame's
log-emission is then the marginal density of its observed values (0 when nothing is
observed: such a frame counts through the transitions only), and its statistics use the
conditional means and covariances of its missing values, from the missing-value kernel with
the state posteriors as sample weights (emfast.mixture._gaussian_missing).

M-step formulas (MAP estimates under hmmlearn's priors, with hmmlearn's default values) are
written on statistics centred on the current means, so they never form E[x x^T] - mu mu^T.
Loops run over states or mixture components, never over rows.
"""

import warnings

import numpy as np
from scipy.special import gammaln

from emfast import _unconstrained as U
from emfast import _validation as V
from emfast import kernels
from emfast._config import get_backend
from emfast._stats import GaussianStats
from emfast.exceptions import DegenerateComponentWarning
from emfast.mixture import _categorical as CAT
from emfast.mixture import _gaussian as G
from emfast.mixture import _poisson as POI
from emfast.mixture import _gaussian_missing as GM
from emfast.mixture._discrete import log0
from emfast.mixture._kmeans import kmeans
from emfast.mixture._semi_supervised import component
from emfast.hmm._stats import ArrayStats

# k-means restarts (the lowest inertia kept) for the initial emission means, as hmmlearn's
# KMeans(n_init=10): a single start can seed a mixture component where it collapses. The
# rows are clustered in sorted order, so the means do not depend on the order of the
# sequences. emfast.fit_many_hmm's kernels repeat this k-means (n_init from here, the other
# options kmeans' defaults): change them together.
KMEANS = dict(n_init=10, sort_rows=True)

# hmmlearn's retry floor when a covariance is not positive definite.
_CHOL_FLOOR = 1e-7


def _prior(value, shape, name):
    """A prior as a float64 array broadcast to ``shape``; a 1-D array of length K
    (n_components, the documented per-state form) applies per state."""
    arr = np.asarray(value, dtype=np.float64)
    K = shape[0]
    if arr.ndim == 1 and arr.shape[0] == K and len(shape) > 1:
        arr = arr.reshape((K,) + (1,) * (len(shape) - 1))
    try:
        return np.broadcast_to(arr, shape)
    except ValueError:
        raise ValueError(f"{name} has shape {np.shape(value)}, which does not broadcast to "
                         f"{shape} (or ({K},), one value per state)") from None


def _f64(a):
    """a as a C-contiguous float64 array (no copy when it is one already): what the
    kernels' unchecked entry points take."""
    return np.ascontiguousarray(a, dtype=np.float64)


# ----------------------------------------------------------------------------------------
# Gaussian


def _missing_log_likelihood(X, states, backend, n_threads, out=None):
    """(T, K) log-densities of each frame's observed values under each state's emission
    (``states``: a GaussianParams per state: one Gaussian, or the state's mixture)."""
    out = np.empty((X.shape[0], len(states))) if out is None else out
    for k, gp in enumerate(states):
        out[:, k] = GM.infer(X, gp, backend, n_threads, logp=True)["logp"]
    return out


def _missing_state_stats(X, post, states, backend, n_threads):
    """Per state k: the GaussianStats of its emission's components on X with missing
    values, the frames weighted by their posteriors ``post[:, k]``."""
    T = float(X.shape[0])
    for k, gp in enumerate(states):
        estep = GM.MissingEStep(X, np.ascontiguousarray(post[:, k]), gp.means.shape[0],
                                backend, n_threads, T)
        yield estep(gp)


def gaussian_posterior_stats(X, post, centre, covariance_type, backend, n_threads):
    """Mixture statistics weighted by the posteriors, centred on ``centre`` (float64).

    ``post`` (T, K) weights row t for state k; returns a GaussianStats with one component
    per state. Spherical models get per-feature ("diag") second moments, which their
    M-step averages. One call of :func:`emfast.kernels.gaussian_weighted_stats` with the
    posteriors as the given responsibilities: one compiled pass over X for all states,
    no (T, D) temporaries.
    """
    T = X.shape[0]
    ct = "diag" if covariance_type == "spherical" else covariance_type
    nk, s1, s2 = kernels.gaussian_weighted_stats(X, post, centre, ct, backend=backend,
                                                 n_threads=n_threads)
    return GaussianStats(ct, centre, nk, s1, s2, 0.0, float(T))


def _ratio_or_keep(numerator, denominator, old, what):
    """numerator / denominator where the denominator is positive; elsewhere (a state or
    mixture component with no posterior mass, where hmmlearn's estimate is 0/0 or x/0)
    the previous value is kept, with a DegenerateComponentWarning."""
    num, den = np.broadcast_arrays(numerator, denominator)
    ok = den > 0
    if ok.all():
        return numerator / denominator
    warnings.warn(f"{int(np.size(ok) - np.count_nonzero(ok))} {what} value(s) had no "
                  "posterior mass to estimate them from (a state or mixture component "
                  "that no frame visits); their previous values are kept. Consider fewer "
                  "states or mixture components.", DegenerateComponentWarning, stacklevel=4)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ok, num / np.where(ok, den, 1.0), np.broadcast_to(old, num.shape))


def _spd_factor(covars, covariance_type):
    """(prec_chol, covars): the kernels' precision factor and the covariances it belongs
    to. A covariance that is not positive (definite) -- a state whose posterior mass sits
    on fewer points than dimensions leaves one singular up to rounding -- is regularised
    with a DegenerateComponentWarning (hmmlearn's 1e-7 retry floor on the diagonal) and
    returned regularised, so that what a fit stores is what its own score accepts."""
    return G.precision_cholesky(np.array(covars, dtype=np.float64), covariance_type,
                                _CHOL_FLOOR)


class GaussianEmission:
    letters = "mc"

    def __init__(self, n_components, covariance_type, min_covar=1e-3, means_prior=0,
                 means_weight=0, covars_prior=1e-2, covars_weight=1):
        self.K = n_components
        self.covariance_type = covariance_type
        self.min_covar = float(min_covar)
        self.means_prior = means_prior
        self.means_weight = means_weight
        self.covars_prior = covars_prior
        self.covars_weight = covars_weight

    # parameters ---------------------------------------------------------------------
    def prepare(self, p):
        """Add the kernels' ``prec_chol`` and ``log_const`` to ``p``."""
        ct = self.covariance_type
        p = dict(p)
        p["prec_chol"], p["covars"] = _spd_factor(p["covars"], ct)
        D = p["means"].shape[1]
        p["log_const"] = kernels.log_normalizer(p["prec_chol"], ct, D) * np.ones(self.K)
        return p

    def init(self, X, rng, todo, p, n_threads=1):
        K, D = self.K, X.shape[1]
        p = dict(p)
        if todo.get("m"):
            if X.shape[0] < K:
                raise ValueError(f"Expected n_samples >= n_components = {K} to initialise the "
                                 f"means by k-means, got n_samples = {X.shape[0]}")
            p["means"], _, _ = kmeans(X, K, rng, n_threads=n_threads, **KMEANS)
        if todo.get("c"):
            Xd = np.asarray(X, dtype=np.float64)
            cv = np.atleast_2d(np.cov(Xd.T)) + self.min_covar * np.eye(D)
            p["covars"] = G.covariances_from_template(cv, self.covariance_type, K)
        return p

    def means_from_labels(self, X, labels, p):
        """The starting means of the states with labelled frames: those frames' mean (the
        labels name the states; k-means' clusters come in any order)."""
        p = dict(p)
        means = np.array(p["means"], dtype=np.float64)
        for k in range(self.K):
            rows = labels == k
            if rows.any():
                means[k] = X[rows].mean(axis=0)
        p["means"] = means
        return p

    # E-step pieces ------------------------------------------------------------------
    def _states(self, p):
        """Each state's emission as a one-component GaussianParams (spherical as diag, the
        per-feature form of the HMM's spherical statistics)."""
        ct, pc = self.covariance_type, p["prec_chol"]
        D = p["means"].shape[1]
        if ct == "spherical":
            ct, pc = "diag", G.per_feature_variances(pc, D)
        gp = G.GaussianParams(ct, np.ones(self.K), p["means"], None, pc)
        return [component(gp, k) for k in range(self.K)]

    def log_likelihood(self, X, p, backend, n_threads, out=None):
        if V.has_nan(X):
            return _missing_log_likelihood(X, self._states(p), backend, n_threads, out)
        # only the log-densities: forward-backward does its own per-frame shift
        out, _ = kernels.gaussian_log_prob(X, p["means"], p["prec_chol"],
                                           self.covariance_type, p["log_const"], norm=False,
                                           out=out, backend=backend, n_threads=n_threads)
        return out

    def stats(self, X, post, p, backend, n_threads):
        if V.has_nan(X):
            return self._stats_with_nan(X, post, p, backend, n_threads)
        return gaussian_posterior_stats(X, post, p["means"], self.covariance_type, backend,
                                        n_threads)

    def _stats_with_nan(self, X, post, p, backend, n_threads):
        """:meth:`stats` from the missing-value kernel (any X; the one way for X with NaN)."""
        states = self._states(p)
        kt = states[0].covariance_type
        K, D = p["means"].shape
        nk, s1 = np.empty(K), np.empty((K, D))
        s2 = np.zeros(kernels.prec_chol_shape(kt, K, D))
        for k, st in enumerate(_missing_state_stats(X, post, states, backend, n_threads)):
            nk[k], s1[k] = st.nk[0], st.s1[0]
            if kt == "tied":     # the tied moments: each state's about its own mean, summed
                s2 += st.s2
            else:
                s2[k] = st.s2[0]
        return GaussianStats(kt, p["means"], nk, s1, s2, 0.0, float(X.shape[0]))

    def fuses(self, backend):
        """Whether the fit's E-step is one :meth:`forward_backward_stats` call: diagonal
        and spherical covariances, on a backend whose fused kernel is faster than its
        three separate ones (``PREFER_FUSED_GAUSSIAN``: the Cython one)."""
        return (self.covariance_type in ("diag", "spherical")
                and get_backend(backend, "hmm").PREFER_FUSED_GAUSSIAN)

    def forward_backward_stats(self, X, offsets, startprob, transmat, p, backend, n_threads):
        """The whole E-step in one kernel call: (loglik, start counts, transition counts,
        emission statistics, with per-feature second moments also for spherical models,
        which their M-step averages). offsets (S + 1,) int64 bound the sequences."""
        ll, _, start, trans, nk, s1, s2 = kernels._gaussian_forward_backward(
            X, offsets, _f64(startprob), _f64(transmat), p["means"], p["prec_chol"],
            self.covariance_type, p["log_const"], backend, n_threads)
        return ll, start, trans, GaussianStats("diag", p["means"], nk, s1, s2, 0.0,
                                               float(X.shape[0]))

    # M-step -------------------------------------------------------------------------
    def _prior_of(self, name, shape):
        """The prior ``name`` broadcast to ``shape``, made once per fit (a model is made
        per fit) instead of once per iteration."""
        cache = self.__dict__.setdefault("_priors", {})
        key = (name, shape)
        if key not in cache:
            cache[key] = _prior(getattr(self, name), shape, name)
        return cache[key]

    def m_step(self, st, p, letters):
        ct = self.covariance_type
        c, N, s1, s2 = st.centre, st.nk, st.s1, st.s2
        K, D = c.shape
        m0 = self._prior_of("means_prior", (K, D))
        mw = self._prior_of("means_weight", (K, D))
        means = c
        if "m" in letters:
            denom = mw + N[:, None]
            with np.errstate(invalid="ignore", divide="ignore"):
                means = np.where(denom > 0, c + (mw * (m0 - c) + s1) / denom, c)
        out = dict(p)
        out["means"] = means
        if "c" in letters:
            d = means - c
            md = means - m0
            scatter = G.scatter_about(ct, s1, s2, N, d)  # about the new means
            if ct in ("diag", "spherical"):
                c_n = mw * md * md + scatter
                cw = self._prior_of("covars_weight", (K, D))
                c_d = np.maximum(cw - 1.0, 0.0) + N[:, None]
                cov = (self._prior_of("covars_prior", (K, D)) + c_n) \
                    / np.maximum(c_d, 1e-5)
                if ct == "spherical":
                    cov = cov.mean(axis=1)
            else:
                mwk = np.asarray(self.means_weight, dtype=np.float64)
                if mwk.ndim > 1 or (mwk.ndim == 1 and mwk.shape != (K,)):
                    raise ValueError("means_weight must be a scalar or have shape "
                                     f"({K},) for covariance_type={ct!r}")
                mwk = np.broadcast_to(mwk, (K,))
                prior_term = mwk[:, None, None] * np.einsum("ki,kj->kij", md, md)
                cw = np.asarray(self.covars_weight, dtype=np.float64)
                if ct == "full":
                    c_n = prior_term + scatter
                    cvw = np.maximum(_prior(cw, (K, 1, 1), "covars_weight") - D, 0.0)
                    cov = _ratio_or_keep((self._prior_of("covars_prior", (K, D, D)) + c_n),
                                         cvw + N[:, None, None], p["covars"], "covariance")
                else:
                    c_n = prior_term.sum(axis=0) + scatter
                    cvw = np.maximum(cw - D, 0.0)
                    cov = _ratio_or_keep(
                        np.broadcast_to(np.asarray(self.covars_prior, dtype=np.float64),
                                        (D, D)) + c_n, cvw + N.sum(), p["covars"],
                        "tied covariance")
                cov = 0.5 * (cov + np.swapaxes(cov, -1, -2))  # exactly symmetric
            out["covars"] = cov
        return self.prepare(out)

    # the rest -----------------------------------------------------------------------
    def sample(self, p, states, rng):
        ct = self.covariance_type
        means, cov = p["means"], p["covars"]
        X = np.empty((len(states), means.shape[1]))
        for k in np.unique(states):
            idx = np.flatnonzero(states == k)
            X[idx] = G.draw(rng, means[k], cov if ct == "tied" else cov[k], ct, len(idx))
        return X

    def n_fit_scalars(self, n_features):
        K, D = self.K, n_features
        return {"m": K * D, "c": G.n_covariance_parameters(self.covariance_type, K, D)}

    # SQUAREM (emfast._unconstrained) ------------------------------------------------
    def pack(self, p, letters):
        """The fitted parameters (``letters``) as an unconstrained vector: the means, the
        covariances as G.pack_covariances."""
        parts = [np.ravel(p["means"])] if "m" in letters else []
        if "c" in letters:
            parts.append(G.pack_covariances(p["covars"], self.covariance_type))
        return np.concatenate(parts) if parts else np.empty(0)

    def unpack(self, vec, like, letters):
        """The prepared parameters of :meth:`pack`'s vector; the others from ``like``."""
        K, D = like["means"].shape
        read = U.Reader(vec)
        p = dict(like)
        if "m" in letters:
            p["means"] = read.take((K, D)).copy()
        if "c" in letters:
            ct = self.covariance_type
            p["covars"] = G.unpack_covariances(
                read.take(G.n_covariance_parameters(ct, K, D)), ct, K, D)[0]
        read.done()
        return self.prepare(p)


def check_gaussian_covars(covars, covariance_type, K, name="covars_"):
    """A validated float64 copy of covariances in compact form; ValueError when the shape
    or positive definiteness is wrong. The layouts hmmlearn accepts on assignment are
    accepted: spherical (K,), (K, 1, ..., 1) and hmmlearn's fitted (K, D) form with equal
    entries in each row (all made (K,)); diag (K, D), or (K, 1) for one variance per
    state that applies to every feature (kept as given and broadcast where D is known);
    full (K, D, D); tied (D, D)."""
    try:
        cv = np.array(covars, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric array: {exc}") from exc
    if not np.all(np.isfinite(cv)):
        raise ValueError(f"{name} contains NaN or infinity")
    ct = covariance_type
    if ct not in kernels.COVARIANCE_TYPES:
        raise ValueError(f"covariance_type must be one of {kernels.COVARIANCE_TYPES}, got "
                         f"{ct!r}")
    if ct == "spherical":
        if cv.ndim >= 1 and cv.shape[0] == K and cv.size == K:
            cv = cv.reshape(K)
        elif cv.ndim == 2 and cv.shape[0] == K and np.allclose(cv, cv[:, :1]):
            cv = cv.mean(axis=1)
        if cv.shape != (K,):
            raise ValueError(f"'spherical' {name} must have shape (n_components,) = ({K},), "
                             f"got {cv.shape}")
        if np.any(cv <= 0):
            raise ValueError(f"'spherical' {name} must be positive")
    elif ct == "diag":
        if cv.ndim != 2 or cv.shape[0] != K:
            raise ValueError(f"'diag' {name} must have shape (n_components, n_features), "
                             f"got {cv.shape}")
        if np.any(cv <= 0):
            raise ValueError(f"'diag' {name} must be positive")
    elif ct == "tied":
        if cv.ndim != 2 or cv.shape[0] != cv.shape[1]:
            raise ValueError(f"'tied' {name} must have shape (n_features, n_features), "
                             f"got {cv.shape}")
        V.check_spd(cv, f"'tied' {name}")
    else:
        if cv.ndim != 3 or cv.shape[0] != K or cv.shape[1] != cv.shape[2]:
            raise ValueError(f"'full' {name} must have shape (n_components, n_features, "
                             f"n_features), got {cv.shape}")
        for k, m in enumerate(cv):
            V.check_spd(m, f"component {k} of 'full' {name}")
    return cv


# ----------------------------------------------------------------------------------------
# Gaussian mixtures per state


class GMMEmission:
    letters = "wmc"

    def __init__(self, n_components, n_mix, covariance_type, min_covar, weights_prior,
                 means_prior, means_weight, covars_prior, covars_weight):
        self.K = n_components
        self.M = n_mix
        self.covariance_type = covariance_type
        self.min_covar = float(min_covar)
        self.weights_prior = weights_prior
        self.means_prior = means_prior
        self.means_weight = means_weight
        self.covars_prior = covars_prior
        self.covars_weight = covars_weight

    def priors(self, D):
        """hmmlearn's defaults, broadcast to their full shapes."""
        K, M, ct = self.K, self.M, self.covariance_type
        cp, cw = self.covars_prior, self.covars_weight
        defaults = {"full": (0.0, -(1.0 + D + 1.0)), "tied": (0.0, -(M + D + 1.0)),
                    "diag": (-1.5, 0.0), "spherical": (-(M + 2.0) / 2.0, 0.0)}[ct]
        cp = defaults[0] if cp is None else cp
        cw = defaults[1] if cw is None else cw
        shapes = {"full": ((K, M, D, D), (K, M)), "tied": ((K, D, D), (K,)),
                  "diag": ((K, M, D), (K, M, D)), "spherical": ((K, M), (K, M))}[ct]
        return {
            "weights_prior": _prior(self.weights_prior, (K, M), "weights_prior"),
            "means_prior": _prior(self.means_prior, (K, M, D), "means_prior"),
            "means_weight": _prior(self.means_weight, (K, M), "means_weight"),
            "covars_prior": _prior(cp, shapes[0], "covars_prior"),
            "covars_weight": _prior(cw, shapes[1], "covars_weight"),
        }

    def _kernel_type(self):
        return "diag" if self.covariance_type == "spherical" else self.covariance_type

    def prepare(self, p):
        ct = self.covariance_type
        p = dict(p)
        K, M, D = p["means"].shape
        if ct == "spherical":  # the kernels get per-feature variances (K, M, D)
            cov = G.per_feature_variances(p["covars"], D)
        else:
            cov = p["covars"]
        kt = self._kernel_type()
        pcs, consts, covs = [], [], []
        for k in range(K):
            pc, cv = _spd_factor(cov[k], kt)
            pcs.append(pc)
            covs.append(cv)
            consts.append(kernels.log_normalizer(pc, kt, D, log0(p["weights"][k]))
                          * np.ones(M))
        p["prec_chol"] = np.stack(pcs)
        p["log_const"] = np.stack(consts)
        covs = np.stack(covs)
        p["covars"] = covs[:, :, 0] if ct == "spherical" else covs  # floors equal over D
        return p

    def init(self, X, rng, todo, p, n_threads=1):
        K, M = self.K, self.M
        N, D = X.shape
        Xd = np.asarray(X, dtype=np.float64)
        p = dict(p)

        def compute_cv():
            return np.atleast_2d(np.cov(Xd.T)) + self.min_covar * np.eye(D)

        cv = None
        if todo.get("m"):
            if N < K:
                raise ValueError(f"Expected n_samples >= n_components = {K} to initialise the "
                                 f"means by k-means, got n_samples = {N}")
            centres, labels, _ = kmeans(X, K, rng, n_threads=n_threads, **KMEANS)
            centroid = centres.mean(axis=0)
            means = np.empty((K, M, D))
            for k in range(K):
                rows = Xd[labels == k]
                if rows.shape[0] >= M:
                    means[k], _, _ = kmeans(rows, M, rng, n_threads=n_threads, **KMEANS)
                else:
                    if cv is None:
                        cv = compute_cv()
                    means[k] = rng.multivariate_normal(centroid, cv, size=M)
            p["means"] = means
        if todo.get("w"):
            p["weights"] = np.full((K, M), 1.0 / M)
        if todo.get("c"):
            if cv is None:
                cv = compute_cv()
            ct = self.covariance_type
            if ct == "tied":  # one matrix per state
                p["covars"] = G.covariances_from_template(cv, "full", K)
            else:             # the same M covariances in every state
                per_state = G.covariances_from_template(cv, ct, M)
                p["covars"] = np.tile(per_state, (K,) + (1,) * per_state.ndim)
        return p

    def _states(self, p):
        """Each state's mixture as a GaussianParams of the kernels' covariance type."""
        kt = self._kernel_type()
        return [G.GaussianParams(kt, p["weights"][k], p["means"][k], None, p["prec_chol"][k])
                for k in range(self.K)]

    def log_likelihood(self, X, p, backend, n_threads, out=None):
        if V.has_nan(X):
            return _missing_log_likelihood(X, self._states(p), backend, n_threads, out)
        K = self.K
        norms = np.empty((K, X.shape[0]))
        kt = self._kernel_type()
        for k in range(K):  # log sum_m w_km N(x | m): the kernel's per-row normaliser
            kernels.gaussian_log_prob(X, p["means"][k], p["prec_chol"][k], kt,
                                      p["log_const"][k], out_norm=norms[k],
                                      backend=backend, n_threads=n_threads)
        return np.ascontiguousarray(norms.T)

    def stats(self, X, post, p, backend, n_threads):
        """Per state, the fused mixture statistics with the posteriors as sample weights."""
        K, M, D = p["means"].shape
        kt = self._kernel_type()
        nk = np.empty((K, M))
        s1 = np.empty((K, M, D))
        s2 = np.empty((K,) + kernels.prec_chol_shape(kt, M, D))
        if V.has_nan(X):
            for k, st in enumerate(_missing_state_stats(X, post, self._states(p), backend,
                                                        n_threads)):
                nk[k], s1[k], s2[k] = st.nk, st.s1, st.s2
            return ArrayStats(post_sum=post.sum(axis=0), nk=nk, s1=s1, s2=s2)
        for k in range(K):
            w = np.ascontiguousarray(post[:, k])
            kernels.gaussian_estep_stats(X, p["means"][k], p["prec_chol"][k], kt,
                                         p["log_const"][k], w, out=(nk[k], s1[k], s2[k]),
                                         backend=backend, n_threads=n_threads)
        return ArrayStats(post_sum=post.sum(axis=0), nk=nk, s1=s1, s2=s2)

    def m_step(self, st, p, letters):
        """hmmlearn's GMMHMM M-step (its priors and denominators), from centred moments."""
        ct = self.covariance_type
        K, M, D = p["means"].shape
        pr = self.priors(D)
        nk, s1, s2, post_sum = st["nk"], st["s1"], st["s2"], st["post_sum"]
        out = dict(p)
        if "w" in letters:
            a1 = pr["weights_prior"] - 1.0
            out["weights"] = (nk + a1) / (post_sum + a1.sum(axis=1))[:, None]
        c = p["means"]
        lam, mu = pr["means_weight"], pr["means_prior"]
        means = c
        if "m" in letters:
            m_d = nk + lam
            # sum_t g x = s1 + nk c; with the prior: lam mu + s1 + nk c.
            m_n = lam[:, :, None] * mu + s1 + nk[:, :, None] * c
            m_d = np.where((out["weights"] == 0) & (m_n == 0).all(axis=-1), 1.0, m_d)
            means = m_n / m_d[:, :, None]
        out["means"] = means
        if "c" in letters:
            # hmmlearn's GMMHMM takes the scatter about the means of the E-step (the
            # centre of s2), not about the new means; kept so that trajectories agree.
            cm = means - mu
            if ct in ("full", "tied"):
                outer_cm = np.einsum("kmi,kmj->kmij", cm, cm)
                psis_t = np.swapaxes(pr["covars_prior"], -1, -2)
                if ct == "full":
                    c_n = psis_t + lam[:, :, None, None] * outer_cm + s2
                    c_d = (nk + 1.0 + pr["covars_weight"] + D + 1.0)[:, :, None, None]
                else:
                    c_n = np.einsum("km,kmij->kij", lam, outer_cm) + psis_t + s2
                    c_d = (post_sum + M + pr["covars_weight"] + D + 1.0)[:, None, None]
            elif ct == "diag":  # s2: per-feature moments (K, M, D)
                c_n = lam[:, :, None] * cm ** 2 + 2.0 * pr["covars_weight"] + s2
                c_d = nk[:, :, None] + 1.0 + 2.0 * (pr["covars_prior"] + 1.0)
            else:
                c_n = (lam * np.einsum("kmi,kmi->km", cm, cm)
                       + 2.0 * pr["covars_weight"] + s2.sum(axis=-1))
                c_d = D * (nk + 1.0) + 2.0 * (pr["covars_prior"] + 1.0)
            cov = _ratio_or_keep(c_n, c_d, p["covars"], "mixture covariance")
            if ct in ("full", "tied"):
                cov = 0.5 * (cov + np.swapaxes(cov, -1, -2))  # exactly symmetric
            out["covars"] = cov
        return self.prepare(out)

    def sample(self, p, states, rng):
        ct = self.covariance_type
        K, M, D = p["means"].shape
        X = np.empty((len(states), D))
        for k in np.unique(states):
            idx = np.flatnonzero(states == k)
            mix = rng.choice(M, size=len(idx), p=p["weights"][k])
            for m in np.unique(mix):
                rows = idx[mix == m]
                cov = p["covars"][k] if ct == "tied" else p["covars"][k, m]
                X[rows] = G.draw(rng, p["means"][k, m], cov, ct, len(rows))
        return X

    def n_fit_scalars(self, n_features):
        K, D, M = self.K, n_features, self.M
        # a state's emission is an M-component mixture; "w" is hmmlearn's count (M - 1)
        return {"m": K * M * D,
                "c": K * G.n_covariance_parameters(self.covariance_type, M, D),
                "w": M - 1}

    # SQUAREM (emfast._unconstrained) ------------------------------------------------
    def _stacked_type(self):
        """The covariances as one stack of mixture components: the covariance type of the
        stack (a state's tied matrix is one full matrix) and its number of matrices."""
        if self.covariance_type == "tied":
            return "full", self.K
        return self.covariance_type, self.K * self.M

    def pack(self, p, letters):
        """The fitted parameters (``letters``) as an unconstrained vector: the log-weights,
        the means, the covariances of all components as one G.pack_covariances stack."""
        parts = [U.log_floor(p["weights"]).ravel()] if "w" in letters else []
        if "m" in letters:
            parts.append(np.ravel(p["means"]))
        if "c" in letters:
            ct, n = self._stacked_type()
            D = p["means"].shape[-1]
            parts.append(G.pack_covariances(
                np.reshape(p["covars"], kernels.prec_chol_shape(ct, n, D)), ct))
        return np.concatenate(parts) if parts else np.empty(0)

    def unpack(self, vec, like, letters):
        """The prepared parameters of :meth:`pack`'s vector (weights re-normalised per
        state, zero weights kept); the others from ``like``."""
        K, M, D = like["means"].shape
        read = U.Reader(vec)
        p = dict(like)
        if "w" in letters:
            p["weights"] = U.simplex(read.take((K, M)), like["weights"])
        if "m" in letters:
            p["means"] = read.take((K, M, D)).copy()
        if "c" in letters:
            ct, n = self._stacked_type()
            cov = G.unpack_covariances(read.take(G.n_covariance_parameters(ct, n, D)), ct,
                                       n, D)[0]
            p["covars"] = cov.reshape(np.shape(like["covars"]))
        read.done()
        return self.prepare(p)


def check_gmm_covars(covars, covariance_type, K, M, D):
    cv = np.array(covars, dtype=np.float64)
    need = {"spherical": (K, M), "tied": (K, D, D), "diag": (K, M, D),
            "full": (K, M, D, D)}[covariance_type]
    if cv.shape != need:
        raise ValueError(f"{covariance_type!r} mixture covars must have shape {need}, "
                         f"actual shape: {cv.shape}")
    if not np.all(np.isfinite(cv)):
        raise ValueError("covars_ contains NaN or infinity")
    if covariance_type in ("spherical", "diag"):
        if np.any(cv <= 0):
            raise ValueError(f"{covariance_type!r} mixture covars must be positive")
    else:
        mats = cv.reshape(-1, D, D)
        for i, m in enumerate(mats):
            V.check_spd(m, f"covariance matrix {i} of covars_")
    return cv


# ----------------------------------------------------------------------------------------
# Categorical, multinomial, Poisson


class _EmissionProbEmission:
    """Shared by the categorical and multinomial emissions: a (K, n_features) table of
    symbol probabilities, initialised at random as hmmlearn does."""

    letters = "e"

    def __init__(self, n_components, n_features):
        self.K = n_components
        self.F = n_features

    def init(self, X, rng, todo, p, n_threads=1):
        p = dict(p)
        if todo.get("e"):
            e = rng.rand(self.K, self.F)
            p["emissionprob"] = e / e.sum(axis=1, keepdims=True)
        return p

    def n_fit_scalars(self, n_features):
        return {"e": self.K * (n_features - 1)}

    # SQUAREM (emfast._unconstrained) ------------------------------------------------
    def pack(self, p, letters):
        """The log-probabilities of the symbols, when "e" is fitted."""
        if "e" not in letters:
            return np.empty(0)
        return U.log_floor(p["emissionprob"]).ravel()

    def unpack(self, vec, like, letters):
        """The prepared parameters of :meth:`pack`'s vector: rows re-normalised, the
        zeros of ``like`` kept."""
        p = dict(like)
        read = U.Reader(vec)
        if "e" in letters:
            p["emissionprob"] = U.simplex(read.take((self.K, self.F)), like["emissionprob"])
        read.done()
        return self.prepare(p)


class CategoricalEmission(_EmissionProbEmission):
    def __init__(self, n_components, n_features, emissionprob_prior=1.0):
        super().__init__(n_components, n_features)
        self.emissionprob_prior = emissionprob_prior

    def prepare(self, p):
        p = dict(p)
        p["log_emissionprob_T"] = CAT.log_table_T(p["emissionprob"])
        return p

    def log_likelihood(self, X, p, backend, n_threads, out=None):
        # the symbols were range-checked with X
        return CAT.item_log_prob(X[:, 0], p["log_emissionprob_T"], out)

    def stats(self, X, post, p, backend, n_threads):
        # the symbols were range-checked when the fit began
        counts = kernels._symbol_counts(np.ascontiguousarray(X[:, 0], dtype=np.int64), post,
                                        np.empty((self.F, post.shape[1])), backend, n_threads)
        return ArrayStats(obs=np.ascontiguousarray(counts.T))

    def fuses(self, backend):
        """Whether the fit's E-step is one :meth:`forward_backward_stats` call (on a
        backend whose fused kernel is faster than its separate ones:
        ``PREFER_FUSED_CATEGORICAL``)."""
        return get_backend(backend, "hmm").PREFER_FUSED_CATEGORICAL

    def forward_backward_stats(self, X, offsets, startprob, transmat, p, backend, n_threads):
        """The whole E-step in one kernel call: (loglik, start counts, transition counts,
        emission statistics). offsets (S + 1,) int64 bound the sequences; X's symbols were
        range-checked when the fit began."""
        ll, _, start, trans, counts = kernels._categorical_forward_backward(
            np.ascontiguousarray(X[:, 0], dtype=np.int64), offsets, _f64(startprob),
            _f64(transmat), _f64(p["emissionprob"]), backend, n_threads)
        return ll, start, trans, ArrayStats(obs=np.ascontiguousarray(counts.T))

    def m_step(self, st, p, letters):
        out = dict(p)
        if "e" in letters:
            prior = _prior(self.emissionprob_prior, (self.K, self.F), "emissionprob_prior")
            out["emissionprob"] = CAT.mstep_probabilities(st["obs"], prior,
                                                          np.array([0, self.F]))
        return self.prepare(out)

    def sample(self, p, states, rng):
        return CAT.draw([p["emissionprob"]], states, rng)


class MultinomialEmission(_EmissionProbEmission):
    def prepare(self, p):
        return dict(p)

    def log_likelihood(self, X, p, backend, n_threads, out=None):
        Xf = np.asarray(X, dtype=np.float64)
        n = Xf.sum(axis=1)
        const = gammaln(n + 1.0) - gammaln(Xf + 1.0).sum(axis=1)
        out = POI.xlogp(Xf, p["emissionprob"])
        out += const[:, None]
        return out

    def stats(self, X, post, p, backend, n_threads):
        return ArrayStats(obs=post.T @ np.asarray(X, dtype=np.float64))

    def m_step(self, st, p, letters):
        out = dict(p)
        if "e" in letters:
            obs = st["obs"]
            with np.errstate(invalid="ignore", divide="ignore"):
                out["emissionprob"] = obs / obs.sum(axis=1, keepdims=True)
        return out

    def sample(self, p, states, rng, n_trials):
        X = np.empty((len(states), self.F), dtype=np.int64)
        for k in np.unique(states):
            idx = np.flatnonzero(states == k)
            X[idx] = rng.multinomial(n_trials, p["emissionprob"][k], size=len(idx))
        return X


class PoissonEmission:
    letters = "l"

    def __init__(self, n_components, lambdas_prior=0.0, lambdas_weight=0.0):
        self.K = n_components
        self.lambdas_prior = lambdas_prior
        self.lambdas_weight = lambdas_weight

    def prepare(self, p):
        return dict(p)

    def init(self, X, rng, todo, p, n_threads=1):
        p = dict(p)
        if todo.get("l"):
            Xf = np.asarray(X, dtype=np.float64)
            mean, var = Xf.mean(), Xf.var()
            if not (mean > 0 and var > 0):
                raise ValueError("cannot initialise lambdas_ by the method of moments: X has "
                                 f"mean {mean:g} and variance {var:g}; both must be positive "
                                 "(set lambdas_ and leave 'l' out of init_params)")
            p["lambdas"] = rng.gamma(shape=mean ** 2 / var, scale=var / mean,
                                     size=(self.K, X.shape[1]))
        return p

    def log_likelihood(self, X, p, backend, n_threads, out=None):
        return POI.log_prob(X, p["lambdas"])

    def stats(self, X, post, p, backend, n_threads):
        return ArrayStats(post=post.sum(axis=0), obs=post.T @ np.asarray(X, dtype=np.float64))

    def m_step(self, st, p, letters):
        out = dict(p)
        if "l" in letters:
            K, D = p["lambdas"].shape
            alphas = _prior(self.lambdas_prior, (K, D), "lambdas_prior")
            betas = _prior(self.lambdas_weight, (K, D), "lambdas_weight")
            out["lambdas"] = POI.mstep_lambdas(st["post"], st["obs"], alphas, betas,
                                               p["lambdas"])
        return out

    def sample(self, p, states, rng):
        return POI.draw(p["lambdas"], states, rng)

    def n_fit_scalars(self, n_features):
        return {"l": self.K * n_features}

    # SQUAREM (emfast._unconstrained) ------------------------------------------------
    def pack(self, p, letters):
        """The log-rates, when "l" is fitted."""
        if "l" not in letters:
            return np.empty(0)
        return U.log_floor(p["lambdas"]).ravel()

    def unpack(self, vec, like, letters):
        """The parameters of :meth:`pack`'s vector, the zero rates of ``like`` kept."""
        p = dict(like)
        read = U.Reader(vec)
        if "l" in letters:
            p["lambdas"] = U.positive(read.take(np.shape(like["lambdas"])), like["lambdas"])
        read.done()
        return self.prepare(p)


__all__ = ["GaussianEmission", "GMMEmission", "CategoricalEmission", "MultinomialEmission",
           "PoissonEmission", "gaussian_posterior_stats",
           "check_gaussian_covars", "check_gmm_covars"]
