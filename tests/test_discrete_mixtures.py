"""BernoulliMixture, CategoricalMixture (latent class analysis) and PoissonMixture: parameter
recovery, EM's monotone likelihood, the compiled fits against NumPy-reference fits, sample
weights, missing values, information criteria, bad input, thread counts, SQUAREM, and the
HMM emissions' agreement with the mixture families."""

import itertools
import types
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference_discrete as R
from emfast import BernoulliMixture, CategoricalMixture, PoissonMixture
from emfast import _config
from emfast.exceptions import ConvergenceWarning, DegenerateComponentWarning

DISCRETE_BACKENDS = _config.available_backends("discrete")


@pytest.fixture(params=DISCRETE_BACKENDS)
def backend(request):
    return request.param


# ----------------------------------------------------------------------------- data
def lca_data(seed, N, K, n_categories, missing=0.0, concentration=0.3):
    """(X (N, J) float codes with NaN where missing, labels, weights, probability blocks)."""
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(K, 5.0))
    blocks = [rng.dirichlet(np.full(c, concentration), size=K) for c in n_categories]
    z = rng.choice(K, N, p=weights)
    X = np.column_stack([np.minimum((rng.random(N)[:, None] > np.cumsum(p[z], axis=1))
                                    .sum(axis=1), p.shape[1] - 1) for p in blocks])
    X = X.astype(np.float64)
    X[rng.random(X.shape) < missing] = np.nan
    return X, z, weights, blocks


def bernoulli_data(seed, N, K, D, missing=0.0):
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(K, 5.0))
    p = np.where(rng.random((K, D)) < 0.5, 0.15, 0.85)
    p[np.arange(K), np.arange(K)] = 0.15        # rows differ: component k has x_k rare ...
    p[np.arange(K), np.arange(K) + K] = 0.85    # ... and x_{k+K} common
    for k in range(K):
        p[k, [j for j in range(K) if j != k]] = 0.85
        p[k, [j + K for j in range(K) if j != k]] = 0.15
    z = rng.choice(K, N, p=weights)
    X = (rng.random((N, D)) < p[z]).astype(np.float64)
    X[rng.random(X.shape) < missing] = np.nan
    return X, z, weights, p


def poisson_data(seed, N, K, D):
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(K, 5.0))
    lambdas = rng.uniform(0.5, 4.0, size=(K, D)) + 6.0 * np.eye(K, D)
    z = rng.choice(K, N, p=weights)
    return rng.poisson(lambdas[z]).astype(np.float64), z, weights, lambdas


def best_permutation(true_params, est_params):
    """The component order of the estimate that matches the truth best."""
    K = len(true_params)
    return min(itertools.permutations(range(K)),
               key=lambda perm: np.abs(est_params[list(perm)] - true_params).sum())


def fit_quiet(est, X, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, **kw)


# ----------------------------------------------------------------------------- recovery
@pytest.mark.parametrize("K", [2, 3, 4])
def test_categorical_recovers_latent_classes(K):
    X, z, w, blocks = lca_data(K, 6000, K, [3, 4, 3, 5, 4, 3, 4, 3], missing=0.05)
    m = CategoricalMixture(K, n_init=3, random_state=0).fit(X)
    assert [p.shape for p in m.probabilities_] == [p.shape for p in blocks]
    np.testing.assert_array_equal(m.n_categories_, [3, 4, 3, 5, 4, 3, 4, 3])
    flat_true = np.hstack(blocks)
    flat_est = np.hstack(m.probabilities_)
    perm = list(best_permutation(flat_true, flat_est))
    np.testing.assert_allclose(m.weights_[perm], w, atol=0.03)
    np.testing.assert_allclose(flat_est[perm], flat_true, atol=0.07)
    for p in m.probabilities_:
        np.testing.assert_allclose(p.sum(axis=1), 1.0)


@pytest.mark.parametrize("K", [2, 3, 4])
def test_bernoulli_recovers_components(K):
    X, z, w, p = bernoulli_data(K, 6000, K, 2 * K + 4, missing=0.05)
    m = BernoulliMixture(K, n_init=3, random_state=0).fit(X)
    perm = list(best_permutation(p, m.probabilities_))
    np.testing.assert_allclose(m.weights_[perm], w, atol=0.03)
    np.testing.assert_allclose(m.probabilities_[perm], p, atol=0.05)


@pytest.mark.parametrize("K", [2, 3, 4])
def test_poisson_recovers_rates(K):
    X, z, w, lam = poisson_data(K, 6000, K, 5)
    m = PoissonMixture(K, n_init=3, random_state=0).fit(X)
    perm = list(best_permutation(lam, m.lambdas_))
    np.testing.assert_allclose(m.weights_[perm], w, atol=0.03)
    np.testing.assert_allclose(m.lambdas_[perm], lam, rtol=0.1, atol=0.15)


# ----------------------------------------------------------------------------- EM
def _three_fits(backend, **kw):
    """(estimator, X) of each family on data with missing values where the family has
    them, and random sample weights."""
    Xc = lca_data(1, 800, 3, [3, 4, 2, 5], missing=0.1, concentration=1.0)[0]
    Xb = bernoulli_data(2, 800, 3, 8, missing=0.1)[0]
    Xp = poisson_data(3, 800, 3, 4)[0]
    return [(CategoricalMixture(3, backend=backend, **kw), Xc),
            (BernoulliMixture(3, backend=backend, **kw), Xb),
            (PoissonMixture(3, backend=backend, **kw), Xp)]


@pytest.mark.parametrize("init", ["kmeans", "k-means++", "random", "random_from_data"])
def test_plain_em_never_decreases_the_likelihood(backend, init):
    rng = np.random.default_rng(0)
    for est, X in _three_fits(backend, init_params=init, tol=0.0, max_iter=60,
                              random_state=1):
        sw = rng.uniform(0.2, 3.0, size=len(X))
        fit_quiet(est, X, sample_weight=sw)
        lb = np.asarray(est.lower_bounds_)
        assert len(lb) == 60 and np.all(np.isfinite(lb))
        assert np.all(np.diff(lb) >= -1e-12 * np.abs(lb[1:])), (type(est).__name__, init)


def test_priors_keep_probabilities_off_zero_and_one():
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]] * 5, dtype=float)
    X[:10, 0] = 0                        # feature 0 is 0 throughout the first half
    m = BernoulliMixture(2, probabilities_prior=2.0, random_state=0).fit(X)
    assert np.all(m.probabilities_ > 0) and np.all(m.probabilities_ < 1)
    codes = np.array([[0], [0], [1], [2]] * 5, dtype=float)
    c = CategoricalMixture(1, probabilities_prior=3.0).fit(codes)
    # the MAP estimate (counts + a - 1) / (n + C (a - 1)): one component, n = 20
    np.testing.assert_allclose(c.probabilities_[0][0], (np.array([10, 5, 5]) + 2) / 26)
    lam = PoissonMixture(1, lambdas_prior=2.0, lambdas_weight=3.0).fit(
        np.array([[0.0], [1.0], [2.0], [5.0]]))
    np.testing.assert_allclose(lam.lambdas_, [[(2.0 + 8.0) / (3.0 + 4.0)]])


# ----------------------------------------------------------------------------- references
def _reference_backend():
    """The NumPy references of tests/reference_discrete.py as a backend module (the
    backend contract: outputs written, the log-likelihood returned)."""
    def cat_stats(codes, sw, lpt, lw, nk, counts, n_threads):
        ll, nk[:], counts[:] = R.categorical_estep_stats(codes, sw, lpt, lw)
        return ll

    def cat_logp(codes, lpt, lw, out, n_threads):
        out[:] = R.categorical_log_prob(codes, lpt, lw)

    def poi_stats(X, sw, log_lam, log_const, row_const, nk, s1, n_threads):
        ll, nk[:], s1[:] = R.poisson_estep_stats(X, sw, log_lam, log_const, row_const)
        return ll

    def poi_logp(X, log_lam, log_const, row_const, out, n_threads):
        out[:] = R.poisson_log_prob(X, log_lam, log_const, row_const)

    def row_const(X, out, n_threads):
        out[:] = R.poisson_row_const(X)

    return types.SimpleNamespace(categorical_estep_stats=cat_stats,
                                 categorical_log_prob=cat_logp, poisson_estep_stats=poi_stats,
                                 poisson_log_prob=poi_logp, poisson_row_const=row_const)


def test_kernel_fits_agree_with_numpy_reference_fits(backend, monkeypatch):
    kw = dict(tol=0.0, max_iter=25, random_state=3)
    compiled = [fit_quiet(est, X, sample_weight=np.linspace(0.5, 2, len(X)))
                for est, X in _three_fits(backend, **kw)]
    # the reference under the "numba" name, for this test only
    monkeypatch.setitem(_config._cache, ("numba", "discrete"), (_reference_backend(), None))
    for want, (est, X) in zip(compiled, _three_fits("numba", **kw)):
        got = fit_quiet(est, X, sample_weight=np.linspace(0.5, 2, len(X)))
        np.testing.assert_allclose(got.lower_bounds_, want.lower_bounds_, rtol=1e-10)
        np.testing.assert_allclose(got.weights_, want.weights_, rtol=1e-8, atol=1e-12)
        for name in ("probabilities_", "lambdas_"):
            if hasattr(want, name):
                np.testing.assert_allclose(np.hstack(getattr(got, name)),
                                           np.hstack(getattr(want, name)), rtol=1e-8,
                                           atol=1e-12)
        np.testing.assert_allclose(got.score_samples(X), want.score_samples(X), rtol=1e-10)
        np.testing.assert_allclose(got.predict_proba(X), want.predict_proba(X), atol=1e-10)


def test_one_and_two_threads_give_identical_fits(backend):
    fits = []
    for n_threads in (1, 2):
        big = [(est.set_params(n_threads=n_threads), np.vstack([X] * 4))
               for est, X in _three_fits(backend, tol=0.0, max_iter=10, random_state=0,
                                         n_init=2)]
        fits.append([fit_quiet(est, X) for est, X in big])
    for a, b in zip(*fits):
        assert a.lower_bounds_ == b.lower_bounds_
        np.testing.assert_array_equal(a.weights_, b.weights_)
        for name in ("probabilities_", "lambdas_"):
            if hasattr(a, name):
                np.testing.assert_array_equal(np.hstack(getattr(a, name)),
                                              np.hstack(getattr(b, name)))


# ----------------------------------------------------------------------------- weights
def _params_of(est):
    return {name: (np.hstack(v) if isinstance(v, list) else v) for name, v in vars(est).items()
            if name in ("weights_", "probabilities_", "lambdas_")}


def test_integer_sample_weight_equals_repeated_rows(backend):
    rng = np.random.default_rng(5)
    for est, X in _three_fits(backend, tol=0.0, max_iter=15, random_state=0):
        start = fit_quiet(est, X[:200].copy())          # a common starting point
        n = rng.integers(0, 4, size=len(X))
        results = []
        for data, sw in ((X, n), (np.repeat(X, n, axis=0), None)):
            warm = fit_quiet(type(est)(**est.get_params()), X[:200])
            for name, v in vars(start).items():
                if name.endswith("_"):
                    setattr(warm, name, v)
            warm.set_params(warm_start=True)
            results.append(fit_quiet(warm, data, sample_weight=sw))
        a, b = results
        np.testing.assert_allclose(a.lower_bounds_, b.lower_bounds_, rtol=1e-9)
        for name, v in _params_of(a).items():
            np.testing.assert_allclose(v, _params_of(b)[name], rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------------------- missing
def test_missing_values_are_marginalised(backend):
    X = lca_data(7, 500, 3, [3, 4, 2], missing=0.3, concentration=1.0)[0]
    m = CategoricalMixture(3, random_state=0, backend=backend).fit(X)
    # by hand: log sum_k w_k prod over the observed items of p_jk(x_j)
    want = np.empty(len(X))
    for n, row in enumerate(X):
        like = m.weights_.copy()
        for j, x in enumerate(row):
            if not np.isnan(x):
                like *= m.probabilities_[j][:, int(x)]
        want[n] = np.log(like.sum())
    np.testing.assert_allclose(m.score_samples(X), want, rtol=1e-10, atol=1e-14)

    Xb = bernoulli_data(8, 500, 2, 6, missing=0.3)[0]
    b = BernoulliMixture(2, random_state=0, backend=backend).fit(Xb)
    p = b.probabilities_
    like = np.array([[np.prod([p[k, d] if x == 1 else 1 - p[k, d]
                               for d, x in enumerate(row) if not np.isnan(x)])
                      for k in range(2)] for row in Xb])
    np.testing.assert_allclose(b.score_samples(Xb), np.log(like @ b.weights_), rtol=1e-10)
    np.testing.assert_allclose(b.predict_proba(Xb),
                               like * b.weights_ / (like @ b.weights_)[:, None], atol=1e-12)


def test_rows_with_nothing_observed_are_left_out_of_the_fit(backend):
    X = lca_data(9, 400, 2, [3, 3, 4], missing=0.1, concentration=1.0)[0]
    X = X[~np.isnan(X).all(axis=1)]
    blank = np.full((50, 3), np.nan)
    a = CategoricalMixture(2, random_state=0, backend=backend).fit(X)
    b = CategoricalMixture(2, random_state=0, backend=backend).fit(np.vstack([X, blank]))
    np.testing.assert_allclose(a.weights_, b.weights_, rtol=1e-12)
    # a blank row says nothing: the weights, and log 1
    np.testing.assert_allclose(b.predict_proba(blank), np.tile(b.weights_, (50, 1)))
    np.testing.assert_allclose(b.score_samples(blank), 0.0, atol=1e-15)
    assert len(b.fit_predict(np.vstack([X, blank]))) == len(X) + 50


def test_rows_impossible_under_every_component():
    X = np.array([[0, 1], [1, 1], [0, 0], [1, 2]] * 10, dtype=float)
    m = CategoricalMixture(2, random_state=0).fit(X)
    codes = np.array([[0.0, 2.0], [1.0, 0.0]])
    m.probabilities_[1][:, 2] = 0.0                   # category 2 now impossible everywhere
    m.probabilities_[1] /= m.probabilities_[1].sum(axis=1, keepdims=True)
    s = m.score_samples(codes)
    assert s[0] == -np.inf and np.isfinite(s[1])
    proba = m.predict_proba(codes)
    assert not np.isnan(proba).any()
    np.testing.assert_allclose(proba[0], m.weights_)
    assert m.predict(codes)[0] == np.argmax(m.weights_)

    Xp = np.array([[0.0, 3.0], [0.0, 5.0], [0.0, 1.0]] * 5)
    p = PoissonMixture(2, random_state=0).fit(Xp)       # feature 0 is always 0: rate 0
    assert np.all(p.lambdas_[:, 0] == 0)
    out = p.score_samples(np.array([[1.0, 3.0], [0.0, 3.0]]))
    assert out[0] == -np.inf and np.isfinite(out[1])
    np.testing.assert_allclose(p.predict_proba(np.array([[1.0, 3.0]]))[0], p.weights_)


# ----------------------------------------------------------------------------- criteria
def test_bic_aic_count_the_free_parameters():
    cases = [(CategoricalMixture(3, random_state=0),
              lca_data(1, 300, 3, [3, 4, 2], concentration=1.0)[0], 2 + 3 * (2 + 3 + 1)),
             (BernoulliMixture(3, random_state=0), bernoulli_data(1, 300, 3, 7)[0],
              2 + 3 * 7),
             (PoissonMixture(2, random_state=0), poisson_data(1, 300, 2, 4)[0], 1 + 2 * 4)]
    for est, X, n_params in cases:
        est.fit(X)
        ll = est.score(X) * len(X)
        np.testing.assert_allclose(est.bic(X), -2 * ll + n_params * np.log(len(X)))
        np.testing.assert_allclose(est.aic(X), -2 * ll + 2 * n_params)


def test_sample_draws_from_the_fitted_mixture():
    for est, X in _three_fits("auto", random_state=0):
        est.fit(X)
        Xs, y = est.sample(4000)
        assert Xs.shape == (4000, X.shape[1]) and not np.isnan(Xs).any()
        assert np.all(np.diff(y) >= 0)                  # components in order
        np.testing.assert_allclose(np.bincount(y, minlength=3) / 4000, est.weights_,
                                   atol=0.04)
        est.score_samples(Xs)                           # within what fit saw
    m = CategoricalMixture(2, random_state=0).fit(lca_data(2, 300, 2, [3, 2])[0])
    Xs, y = m.sample(5000)
    for j, p in enumerate(m.probabilities_):
        for k in range(2):
            freq = np.bincount(Xs[y == k, j].astype(int), minlength=p.shape[1])
            np.testing.assert_allclose(freq / freq.sum(), p[k], atol=0.05)


# ----------------------------------------------------------------------------- SQUAREM
def test_squarem_reaches_the_plain_em_optimum_in_fewer_map_evaluations(backend):
    # overlapping components: plain EM crawls
    Xc = lca_data(11, 3000, 3, [3, 3, 3, 3, 3, 3], missing=0.1, concentration=1.5)[0]
    Xb = (np.random.default_rng(12).random((2000, 8))
          < np.where(np.random.default_rng(13).random(2000)[:, None] < 0.4, 0.6, 0.4))
    lam = np.array([[1.0, 5.0, 10.0], [2.0, 4.0, 8.0]])
    z = np.random.default_rng(14).choice(2, 4000)
    Xp = np.random.default_rng(15).poisson(lam[z]).astype(float)
    tol = 1e-8
    for cls, X, K in ((CategoricalMixture, Xc, 3), (BernoulliMixture, Xb.astype(float), 2),
                      (PoissonMixture, Xp, 2)):
        plain, fast = (cls(K, tol=tol, max_iter=5000, random_state=0, backend=backend,
                           accelerate=acc).fit(X) for acc in (None, "squarem"))
        assert plain.converged_ and fast.converged_
        assert fast.lower_bound_ >= plain.lower_bound_ - tol, cls.__name__
        assert fast.n_iter_ < 0.75 * plain.n_iter_, (cls.__name__, fast.n_iter_, plain.n_iter_)


def test_pack_unpack_round_trip():
    for est, X in _three_fits("auto", random_state=0):
        est.fit(X)
        family = est._family(*_family_args(est, X))
        params = est._fitted_params()
        back = family.unpack(family.pack(params), params)
        np.testing.assert_allclose(back.weights, params.weights, rtol=1e-12)
        np.testing.assert_allclose(getattr(back, "probs", getattr(back, "lambdas", None)),
                                   getattr(params, "probs", getattr(params, "lambdas", None)),
                                   rtol=1e-12, atol=1e-300)


def _family_args(est, X):
    data = est._checked_data(X, fitting=False)[0]
    if data.dtype == np.int32:
        data = data[(data >= 0).any(axis=1)]
    return data, None, float(len(data)), est._frequencies(data, None), None, 1


# ----------------------------------------------------------------------------- HMM
def test_hmm_emission_statistics_and_mstep_equal_the_mixture_family():
    from emfast.hmm._emissions import CategoricalEmission, PoissonEmission
    from emfast.mixture import _categorical as C
    from emfast.mixture import _poisson as P

    X = lca_data(4, 700, 3, [5], concentration=1.0)[0]
    m = CategoricalMixture(3, random_state=0).fit(X)
    family = m._family(*_family_args(m, X))
    stats = family.e_step(*_family_args(m, X)[:2], m._fitted_params(), 1)
    em = CategoricalEmission(3, 5, emissionprob_prior=1.5)
    post = m.predict_proba(X)
    hmm_stats = em.stats(X.astype(np.int64), post, {}, "auto", 1)
    np.testing.assert_allclose(hmm_stats["obs"], stats.sums.T, rtol=1e-10)
    hmm_p = em.m_step(hmm_stats, {"emissionprob": m.probabilities_[0]}, "e")["emissionprob"]
    np.testing.assert_array_equal(
        hmm_p, C.mstep_probabilities(hmm_stats["obs"], 1.5, np.array([0, 5])))

    Xp = poisson_data(5, 700, 3, 4)[0]
    p = PoissonMixture(3, random_state=0).fit(Xp)
    family = p._family(*_family_args(p, Xp))
    stats = family.e_step(Xp, None, p._fitted_params(), 1)
    pe = PoissonEmission(3, lambdas_prior=0.5, lambdas_weight=2.0)
    hmm_stats = pe.stats(Xp.astype(np.int64), p.predict_proba(Xp), {}, "auto", 1)
    np.testing.assert_allclose(hmm_stats["post"], stats.nk, rtol=1e-10)
    np.testing.assert_allclose(hmm_stats["obs"], stats.sums, rtol=1e-10)
    np.testing.assert_array_equal(
        pe.m_step(hmm_stats, {"lambdas": p.lambdas_}, "l")["lambdas"],
        P.mstep_lambdas(hmm_stats["post"], hmm_stats["obs"], 0.5, 2.0, p.lambdas_))
    np.testing.assert_allclose(pe.log_likelihood(Xp, {"lambdas": p.lambdas_}, "auto", 1)
                               + np.log(p.weights_), p._weighted_log_prob(Xp), rtol=1e-10)


# ----------------------------------------------------------------------------- binarize
def test_binarize_equals_fitting_the_thresholded_array(backend):
    """binarize=t fits, predicts and scores as the 0/1 array (X > t) does, at every call;
    NaN stays missing and the caller's X is not modified."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(300, 5)) + 2.0 * (rng.random((300, 1)) < 0.4)
    X[rng.random(X.shape) < 0.1] = np.nan
    before = X.copy()
    for t in (0.5, -1, np.float32(1.0)):
        by_hand = np.where(np.isnan(X), np.nan, X > t)
        got = BernoulliMixture(2, binarize=t, random_state=0, backend=backend).fit(X)
        want = BernoulliMixture(2, random_state=0, backend=backend).fit(by_hand)
        np.testing.assert_array_equal(got.weights_, want.weights_)
        np.testing.assert_array_equal(got.probabilities_, want.probabilities_)
        assert got.n_iter_ == want.n_iter_
        np.testing.assert_array_equal(got.predict_proba(X), want.predict_proba(by_hand))
        np.testing.assert_array_equal(got.score_samples(X), want.score_samples(by_hand))
        assert got.bic(X) == want.bic(by_hand)
        np.testing.assert_array_equal(got.fit_predict(X), want.fit_predict(by_hand))
    np.testing.assert_array_equal(X, before)


def test_binarize_keeps_nan_missing():
    """A NaN is a missing value, not a 0 (NaN > t is False): the row with only a NaN is
    scored 0 and gets the weights, a NaN feature is marginalised."""
    X = np.array([[0.2, 3.0], [-1.0, 0.5], [2.0, -4.0], [0.9, 1.1]])
    m = BernoulliMixture(2, binarize=1.0, random_state=0).fit(X)
    nan_rows = np.array([[np.nan, np.nan], [np.nan, 2.0]])
    assert m.score_samples(nan_rows)[0] == 0.0
    np.testing.assert_array_equal(m.predict_proba(nan_rows)[0], m.weights_)
    np.testing.assert_allclose(m.score_samples(nan_rows)[1],
                               np.log(m.weights_ @ m.probabilities_[:, 1]))
    with pytest.raises(ValueError, match="missing .* every row"):
        BernoulliMixture(1, binarize=0.0).fit(np.array([[np.nan, 1.0], [np.nan, 2.0]]))


def test_binarize_compares_float32_data_exactly():
    """0.1f is above 0.1 (float64); 0.1 must not be rounded to float32 for the test."""
    X = np.array([[0.1], [0.0], [1.0]], dtype=np.float32)
    m = BernoulliMixture(1, binarize=0.1).fit(X)
    np.testing.assert_allclose(m.probabilities_, [[2 / 3]])


@pytest.mark.parametrize("binarize, error", [
    (True, TypeError), ("0.5", TypeError), ([0.5], TypeError),
    (np.nan, ValueError), (np.inf, ValueError), (-np.inf, ValueError)])
def test_bad_binarize_is_refused_naming_the_parameter(binarize, error):
    X = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    with pytest.raises(error, match="'binarize'"):
        BernoulliMixture(1, binarize=binarize).fit(X)
    m = BernoulliMixture(1).fit(X)
    m.set_params(binarize=binarize)     # predict reads binarize too: checked there as well
    with pytest.raises(error, match="'binarize'"):
        m.predict(X)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("cls, X, match", [
    (CategoricalMixture, [[0, 1.5], [1, 0]], "integer"),
    (CategoricalMixture, [[0, -1], [1, 0]], "non-negative"),
    (CategoricalMixture, [[0, np.nan], [1, np.nan]], "missing .* every row"),
    (CategoricalMixture, [[0, np.inf], [1, 0]], "infinity"),
    (CategoricalMixture, [[0, 1e12], [1, 0]], "categories in all"),
    (BernoulliMixture, [[0, 2], [1, 0]], "0 and 1"),
    (BernoulliMixture, [[0, 0.5], [1, 0]], "0 and 1"),
    (BernoulliMixture, [[np.nan, 0], [np.nan, 1]], "missing .* every row"),
    (PoissonMixture, [[0, 1.5], [1, 0]], "integer"),
    (PoissonMixture, [[0, -2], [1, 0]], "non-negative"),
    (PoissonMixture, [[0, np.nan], [1, 0]], "NaN"),
])
def test_bad_values_are_refused_with_a_clear_error(cls, X, match):
    X = np.array(X, dtype=float)
    before = X.copy()
    with pytest.raises(ValueError, match=match):
        cls(1).fit(X)
    np.testing.assert_array_equal(X, before)


def test_predict_time_errors():
    X = np.array([[0, 1], [1, 2], [2, 0], [1, 1]], dtype=float)
    m = CategoricalMixture(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="item 1 has category code 3.*0..2"):
        m.predict(np.array([[0.0, 3.0]]))
    with pytest.raises(ValueError, match="3 features, but CategoricalMixture is expecting 2"):
        m.predict(np.zeros((2, 3)))
    b = BernoulliMixture(2, random_state=0).fit(X[:, :1] > 0)
    with pytest.raises(ValueError, match="0 and 1"):
        b.score(np.array([[3.0]]))
    p = PoissonMixture(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="expecting 2 features"):
        p.predict(X[:, :1])
    with pytest.raises(ValueError, match="n_samples >= n_components"):
        PoissonMixture(5).fit(X)
    with pytest.raises(ValueError, match="rows with an observed value"):
        CategoricalMixture(3).fit(np.array([[0.0], [1.0], [np.nan], [np.nan]]))
    for sw, match in (([1, -1, 1, 1], "Negative"), ([1, np.nan, 1, 1], "NaN"),
                      ([1, 0, 0, 0], "positive sample_weight"), ([1, 1], "shape")):
        with pytest.raises(ValueError, match=match):
            PoissonMixture(2).fit(X, sample_weight=sw)
    for params, match in ((dict(accelerate="fast"), "accelerate"),
                          (dict(probabilities_prior=0.0), "probabilities_prior"),
                          (dict(init_params="kmeans++"), "init_params")):
        with pytest.raises(ValueError, match=match):
            CategoricalMixture(2, **params).fit(X)
    with pytest.raises(ValueError, match="lambdas_weight"):
        PoissonMixture(2, lambdas_weight=-1.0).fit(X)


@settings(max_examples=25, deadline=None)
@given(shape=st.tuples(st.integers(0, 4), st.integers(0, 4)),
       ndim=st.sampled_from([0, 1, 2, 3]),
       cls=st.sampled_from([CategoricalMixture, BernoulliMixture, PoissonMixture]))
def test_any_shape_is_a_fit_or_a_clear_error(shape, ndim, cls):
    X = np.zeros(shape[:ndim] if ndim < 3 else shape + (2,))
    try:
        with warnings.catch_warnings():      # identical rows: a component is re-seeded
            warnings.simplefilter("ignore", DegenerateComponentWarning)
            m = cls(2, random_state=0).fit(X)
    except ValueError as exc:
        assert str(exc)
    else:
        assert ndim == 2 and shape[0] >= 2
        assert m.predict(X).shape == (shape[0],)


def test_caller_arrays_are_not_modified():
    X = lca_data(3, 200, 2, [3, 4], missing=0.2)[0]
    sw = np.linspace(1, 2, len(X))
    before, sw_before = X.copy(), sw.copy()
    m = CategoricalMixture(2, random_state=0).fit(X, sample_weight=sw)
    m.predict_proba(X)
    np.testing.assert_array_equal(X, before)
    np.testing.assert_array_equal(sw, sw_before)


def test_inputs_of_every_dtype_give_the_same_fit():
    X = lca_data(3, 300, 2, [3, 4])[0]
    want = CategoricalMixture(2, random_state=0).fit(X)
    for dtype in (np.int64, np.int32, np.uint8, np.float32):
        got = CategoricalMixture(2, random_state=0).fit(X.astype(dtype))
        np.testing.assert_array_equal(got.weights_, want.weights_)
    Xb = bernoulli_data(3, 300, 2, 5)[0]
    want = BernoulliMixture(2, random_state=0).fit(Xb)
    got = BernoulliMixture(2, random_state=0).fit(Xb.astype(bool))
    np.testing.assert_array_equal(got.probabilities_, want.probabilities_)
    Xp = poisson_data(3, 300, 2, 3)[0]
    want = PoissonMixture(2, random_state=0).fit(Xp)
    got = PoissonMixture(2, random_state=0).fit(Xp.astype(np.float32))
    np.testing.assert_allclose(got.lambdas_, want.lambdas_, rtol=1e-6)


def test_params_and_clone():
    m = CategoricalMixture(3, probabilities_prior=2.0, accelerate="squarem")
    params = m.get_params()
    assert params["probabilities_prior"] == 2.0 and params["accelerate"] == "squarem"
    assert set(PoissonMixture().get_params()) >= {"lambdas_prior", "lambdas_weight",
                                                  "init_params", "n_threads", "backend"}
    assert type(m)(**params).get_params() == params
    assert "probabilities_prior=2.0" in repr(m)


def test_exported_from_emfast():
    import emfast

    for name in ("BernoulliMixture", "CategoricalMixture", "PoissonMixture"):
        assert name in emfast.__all__ and getattr(emfast, name) is globals()[name]


def test_an_empty_component_is_reseeded_with_a_warning():
    X = np.array([[0.0, 0.0]] * 50 + [[1.0, 1.0]] * 50)     # two distinct rows, K = 3
    for cls in (BernoulliMixture, CategoricalMixture, PoissonMixture):
        with pytest.warns(DegenerateComponentWarning, match="re-seeded"):
            m = fit_quiet(cls(3, random_state=0, max_iter=5), X)
        np.testing.assert_allclose(m.weights_.sum(), 1.0)
        assert np.all(np.isfinite(m.score_samples(X)))


def test_verbose_reports_the_iterations(capsys):
    X = poisson_data(1, 300, 2, 3)[0]
    PoissonMixture(2, verbose=2, verbose_interval=1, random_state=0).fit(X)
    out = capsys.readouterr().out
    assert "Initialization 0" in out and "Iteration 1" in out and "converged" in out


def test_warm_start_continues_from_the_fitted_parameters():
    X = lca_data(6, 500, 2, [3, 3, 4], concentration=1.0)[0]
    full = fit_quiet(CategoricalMixture(2, tol=0.0, max_iter=20, random_state=0), X)
    half = fit_quiet(CategoricalMixture(2, tol=0.0, max_iter=10, random_state=0), X)
    fit_quiet(half.set_params(warm_start=True), X)
    np.testing.assert_allclose(np.hstack(half.probabilities_), np.hstack(full.probabilities_),
                               rtol=1e-10)
    with pytest.raises(ValueError, match="category code 4"):
        half.fit(np.array([[0.0, 0.0, 4.0]] * 3))


def test_convergence_warning_points_at_the_callers_fit():
    X = poisson_data(1, 300, 2, 3)[0]
    with pytest.warns(ConvergenceWarning) as record:
        PoissonMixture(2, max_iter=1, tol=0.0, random_state=0).fit(X)
    assert record[0].filename == __file__


# ------------------------------------------------------------------- item groups, edges
@pytest.mark.parametrize("n_categories, missing", [
    ([4] * 10, 0.0), ([4] * 10, 0.2), ([2] * 9, 0.1), ([3, 300, 2, 2, 5], 0.1), ([7], 0.3)])
def test_item_groups_give_the_items_statistics(n_categories, missing):
    """The kernels on grouped items (super-items) give the ungrouped statistics: the same
    log-likelihood and counts, with and without missing answers; binary items whose grouped
    table would outgrow the items' stay alone (the identity)."""
    from emfast._config import get_backend
    from emfast.mixture import _categorical as CAT

    X, _, _, _ = lca_data(7, 3000, 3, n_categories, missing=missing)
    offsets = CAT.offsets_of(np.asarray(n_categories))
    codes = np.where(np.isnan(X), -1, X + offsets[:-1]).astype(np.int32)
    rng = np.random.default_rng(1)
    K = 3
    log_prob_T = np.log(rng.dirichlet(np.ones(int(offsets[-1])), size=K)).T.copy()
    log_w = np.log(np.array([0.2, 0.3, 0.5]))
    groups = CAT.ItemGroups(codes, offsets, K)
    kernel = get_backend("auto", "discrete").categorical_estep_stats
    nk0, c0 = np.empty(K), np.empty((int(offsets[-1]), K))
    ll0 = kernel(codes, np.empty(0), log_prob_T, log_w, nk0, c0, 2)
    nk1, c1 = np.empty(K), np.empty((sum(groups.group_sizes), K))
    ll1 = kernel(groups.codes, np.empty(0), groups.table(log_prob_T), log_w, nk1, c1, 2)
    assert ll1 == pytest.approx(ll0, rel=1e-12)
    np.testing.assert_allclose(nk1, nk0, rtol=1e-12)
    np.testing.assert_allclose(groups.item_counts(c1), c0, rtol=1e-11, atol=1e-9)
    if n_categories == [4] * 10:      # 4 x 4 x 4 x 4 combinations; 5 x 5 x 5 with NaN
        assert groups.codes.shape[1] == (3 if missing == 0 else 4) and not groups.identity
    if n_categories == [7]:
        assert groups.identity


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.uint64])
def test_integer_codes_fit_as_their_float_values(dtype):
    """Integer codes are checked and encoded without a float copy: the same fit as the
    same codes in float64; a negative code or codes past any category table (uint64 at
    2**63, whose sum would wrap around) are refused."""
    X, _, _, _ = lca_data(4, 800, 3, [3, 4, 2])
    a = CategoricalMixture(3, max_iter=20, random_state=0).fit(X)
    b = CategoricalMixture(3, max_iter=20, random_state=0).fit(X.astype(dtype))
    assert a.lower_bound_ == b.lower_bound_
    for p, q in zip(a.probabilities_, b.probabilities_):
        np.testing.assert_array_equal(p, q)
    np.testing.assert_array_equal(a.predict(X), b.predict(X.astype(dtype)))
    if np.dtype(dtype).kind == "i":
        bad = X.astype(dtype)
        bad[0, 0] = -1
        with pytest.raises(ValueError, match="Negative values"):
            CategoricalMixture(2).fit(bad)
    huge = np.array([[2**63, 0], [2**63, 1], [0, 1]], dtype=np.uint64)
    with pytest.raises(ValueError, match="categories in all"):
        CategoricalMixture(2).fit(huge)


@pytest.mark.filterwarnings("ignore::emfast.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("n_categories, missing", [([4] * 6, 0.0), ([4] * 6, 0.1),
                                                   ([2] * 9, 0.05), ([3, 2], 0.2), ([7], 0.0)])
def test_repeated_answer_patterns_are_one_weighted_row(n_categories, missing):
    """Rows that repeat earlier answers run once with their weights summed: the patterns
    are the distinct rows (grouped or not, missing answers too), every row maps to its own
    pattern, and a weighted fit is the fit on every row to rounding."""
    from emfast.mixture import _categorical as CAT

    X, _, _, _ = lca_data(3, 6000, 3, n_categories, missing=missing)
    offsets = CAT.offsets_of(np.asarray(n_categories))
    codes = np.where(np.isnan(X), -1, X + offsets[:-1]).astype(np.int32)
    groups = CAT.ItemGroups(codes, offsets, 3)
    assert groups.patterns is not None
    np.testing.assert_array_equal(groups.patterns[groups.inverse], groups.codes)
    assert len(np.unique(groups.patterns, axis=0)) == len(groups.patterns)
    w = np.random.default_rng(2).uniform(0.0, 2.0, size=len(X))
    rows, pw = groups.pattern_weights(w)
    assert rows is groups.patterns
    np.testing.assert_allclose(pw, np.bincount(groups.inverse, weights=w), rtol=1e-15)
    assert groups.pattern_weights(None)[1].sum() == len(X)
    fits = []
    for share in (CAT.PATTERN_SHARE, 0.0):          # 0: every row on its own
        old, CAT.PATTERN_SHARE = CAT.PATTERN_SHARE, share
        try:
            est = CategoricalMixture(3, max_iter=15, tol=0.0, random_state=0).fit(X, w)
        finally:
            CAT.PATTERN_SHARE = old
        fits.append(est)
    assert fits[0].lower_bound_ == pytest.approx(fits[1].lower_bound_, rel=1e-12)
    np.testing.assert_allclose(fits[0].weights_, fits[1].weights_, rtol=1e-9)
    for a, b in zip(fits[0].probabilities_, fits[1].probabilities_):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_distinct_rows_counted_or_sorted_alike():
    """Keys below 8 N are counted, larger ones sorted: the same patterns either way."""
    from emfast.mixture import _categorical as CAT

    rng = np.random.default_rng(5)
    digits = [rng.integers(0, 3, size=2000) for _ in range(4)]      # 81 keys: counted
    rows, inverse = CAT._distinct_rows(2000, [3, 3, 3, 3], iter(digits))
    wide = [3, 3, 3, 3 * 10**6]                                     # the same digits, sorted
    rows2, inverse2 = CAT._distinct_rows(2000, wide, iter(digits))
    np.testing.assert_array_equal(inverse, inverse2)
    key = sum(d * 3 ** (3 - i) for i, d in enumerate(digits))
    np.testing.assert_array_equal(key[rows], np.unique(key))
    # distinct rows only: none
    assert CAT._distinct_rows(2000, [2000], iter([np.arange(2000)])) is None


def test_binary_items_beyond_the_table_budget_stay_alone():
    from emfast.mixture import _categorical as CAT

    codes = (np.random.default_rng(0).integers(0, 2, size=(50, 2000))
             + 2 * np.arange(2000)).astype(np.int32)
    groups = CAT.ItemGroups(codes, CAT.offsets_of(np.full(2000, 2)), 20)
    assert groups.identity and groups.codes is codes


@pytest.mark.parametrize("cls, low", [(CategoricalMixture, 4), (BernoulliMixture, 2)])
def test_prior_below_one_leaves_a_usable_model(cls, low):
    """A Dirichlet prior below 1 can cut every numerator of a block: that block is then its
    counts' maximum-likelihood estimate, never all zero (which predict would refuse, or a
    Bernoulli model would read as P(x = 1) = 0)."""
    rng = np.random.default_rng(3)
    for seed in range(20):
        X = rng.integers(0, low, size=(40, 5)).astype(float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            m = cls(8, probabilities_prior=0.05, max_iter=1 + seed % 5,
                    random_state=seed).fit(X)
        if cls is CategoricalMixture:
            for p in m.probabilities_:
                np.testing.assert_allclose(p.sum(axis=1), 1.0)
        else:   # no block read as P(x = 1) = 0 for want of a distribution
            assert np.all((m.probabilities_ >= 0) & (m.probabilities_ <= 1))
        # a MAP below 1 may make rows impossible (-inf), never NaN
        assert not np.any(np.isnan(m.score_samples(X)))
        assert not np.any(np.isnan(m.predict_proba(X)))
        m.predict(X)


def test_random_from_data_with_few_weighted_rows():
    """Fewer than K weighted rows among the rows the start is drawn from: the start still
    draws K distinct rows (the fit's weights then decide)."""
    X, _, _, _ = lca_data(5, 20000, 3, [3, 3, 3, 3])
    w = np.zeros(len(X))
    w[[0, 5, 17000]] = 1.0
    m = CategoricalMixture(3, init_params="random_from_data", random_state=0,
                           max_iter=5).fit(X, sample_weight=w)
    assert np.isclose(m.weights_.sum(), 1.0)


def test_wide_data_starts_from_fewer_rows(monkeypatch):
    """The start's encoding stays within START_DOUBLES: wide data starts from fewer rows."""
    from emfast.mixture import _discrete_mixture as DM

    monkeypatch.setattr(DM, "START_DOUBLES", 600 * 50)
    seen = []
    frequencies = DM.BernoulliMixture._frequencies

    def spy(self, codes, sample_weight):
        out = frequencies(self, codes, sample_weight)
        seen.append(out.shape)
        return out

    monkeypatch.setattr(DM.BernoulliMixture, "_frequencies", spy)
    X = (np.random.default_rng(0).random((2000, 50)) < 0.3).astype(float)
    m = BernoulliMixture(3, random_state=0, max_iter=5).fit(X)
    assert seen == [(600, 50)]
    assert np.all(np.isfinite(m.score_samples(X)))
