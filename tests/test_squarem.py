"""SQUAREM (emfast._em.squarem_loop, accelerate="squarem"): the packed parameter vectors of
every family, the plain-EM optimum reached in fewer map evaluations on slowly converging
fits, the bookkeeping (n_iter_, lower bounds, max_iter, the convergence rule), and the
estimators' ``accelerate`` parameter."""

import math
import warnings

import numpy as np
import pytest

from emfast import GaussianMixture
from emfast import _em
from emfast.exceptions import DegenerateComponentWarning
from emfast.hmm import GMMHMM, CategoricalHMM, GaussianHMM, MultinomialHMM, PoissonHMM
from emfast.hmm import _base
from emfast.impute import EMImputer
from emfast.impute._em_imputer import _MissingNormalFamily, _Normal
from emfast.mixture import _gaussian as G
from emfast.mixture._gaussian_mixture import _GaussianFamily

TOL = 1e-8
COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]


# ---------------------------------------------------------------------------- slow cases
def overlapping_blobs(n=3000, seed=0):
    """Three heavily overlapping Gaussians: EM needs hundreds of iterations to 1e-8."""
    rng = np.random.RandomState(seed)
    return np.vstack([rng.randn(n, 2), rng.randn(n, 2) * 1.2 + [0.7, 0.3],
                      rng.randn(n // 2, 2) * 0.8 + [-0.5, 0.6]])


def file_matching(n=3000, seed=0):
    """Two blocks of correlated features, never observed together except in 2% of the rows:
    their cross-covariance is weakly identified and EM crawls."""
    rng = np.random.RandomState(seed)
    D = 6
    C = 0.8 * np.ones((D, D)) + 0.2 * np.eye(D)
    X = rng.multivariate_normal(np.zeros(D), C, size=n)
    half = rng.rand(n) < 0.5
    X[half, :3] = np.nan
    X[~half, 3:] = np.nan
    X[:n // 50] = rng.multivariate_normal(np.zeros(D), C, size=n // 50)
    return X


def two_state_chain(model, n, seed=0):
    """``n`` frames from ``model`` (its parameters set) with two sticky, alike states."""
    model.startprob_ = np.array([0.5, 0.5])
    model.transmat_ = np.array([[0.9, 0.1], [0.1, 0.9]])
    return model.sample(n, random_state=seed)[0]


def alike_gaussian_frames():
    m = GaussianHMM(2, covariance_type="full")
    m.means_ = np.array([[0.0, 0.0], [0.5, 0.3]])
    m.covars_ = np.tile(np.eye(2), (2, 1, 1))
    return two_state_chain(m, 2000)


def alike_counts():
    m = PoissonHMM(2)
    m.lambdas_ = np.array([[2.0, 3.0], [2.6, 3.3]])
    return two_state_chain(m, 1000)


def alike_multinomial():
    m = MultinomialHMM(2, n_trials=5)
    m.emissionprob_ = np.array([[0.3, 0.3, 0.4], [0.4, 0.3, 0.3]])
    return two_state_chain(m, 1000)


def alike_symbols():
    m = CategoricalHMM(2)
    m.emissionprob_ = np.array([[0.2, 0.3, 0.5], [0.4, 0.3, 0.3]])
    return two_state_chain(m, 2000)


@pytest.fixture
def hmm_evaluations(monkeypatch):
    """The log-likelihood of every E-step of the HMM fits that follow (one list, reset by
    the caller)."""
    seen = []
    e_step = _base._HMMFamily.e_step

    def counted(self, *args):
        stats = e_step(self, *args)
        seen.append(stats.loglik)
        return stats

    monkeypatch.setattr(_base._HMMFamily, "e_step", counted)
    return seen


def first_reaching(values, target):
    """The number of evaluations until one reaches ``target`` (None: none does)."""
    return next((i + 1 for i, v in enumerate(values) if v >= target), None)


# ---------------------------------------------------------------------------- pack/unpack
def assert_params_equal(got, want, atol=1e-12):
    if isinstance(want, dict):
        assert set(got) == set(want)
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=0, atol=atol, err_msg=key)
        return
    for name in want.__slots__:
        a, b = getattr(got, name), getattr(want, name)
        if isinstance(b, (str, type(None))):
            assert a == b, name
        elif isinstance(b, dict) or hasattr(b, "__slots__"):
            assert_params_equal(a, b, atol)
        else:
            np.testing.assert_allclose(a, b, rtol=0, atol=atol, err_msg=name)


@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_gaussian_mixture_round_trip(ct):
    X = overlapping_blobs(300)
    gm = GaussianMixture(3, covariance_type=ct, max_iter=3, tol=1.0, random_state=0).fit(X)
    family = _GaussianFamily(ct, 3, 1e-6, "auto", float(len(X)))
    params = gm._params()
    vec = family.pack(params)
    assert vec.ndim == 1 and vec.dtype == np.float64
    assert len(vec) == 3 + 3 * 2 + G.n_covariance_parameters(ct, 3, 2)
    assert_params_equal(family.unpack(vec, params), params)


@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_gaussian_unpack_gives_models_or_refuses(ct):
    """The mixture extrapolates along its weights, means and covariances: a vector near a
    model unpacks to weights on the simplex and the precision factor the M-step would
    compute; a negative weight, a negative variance or a covariance that is not positive
    definite is refused (SQUAREM's _unpack gives None: the plain EM step)."""
    like = GaussianMixture(3, covariance_type=ct, max_iter=2, tol=1.0, random_state=0).fit(
        overlapping_blobs(300))._params()
    vec = G.pack_params(like)
    moved = vec + 1e-3 * np.random.RandomState(1).normal(size=len(vec))
    p = G.unpack_params(moved, like)
    assert np.all(p.weights > 0) and abs(p.weights.sum() - 1) < 1e-12
    want, cov = G.precision_cholesky(p.covariances, ct, 0.0)
    np.testing.assert_allclose(p.prec_chol, want, rtol=1e-10)
    full = G.full_covariances(p.covariances, ct, 3, 2)
    assert np.all(np.linalg.eigvalsh(full) > 0)
    family = _GaussianFamily(ct, 3, 1e-6, "auto", 300.0)
    for at in (0, 3 + 3 * 2):                     # the first weight, the first variance
        bad = vec.copy()
        bad[at] = -1.0
        assert _em._unpack(family, bad, like) is None


def hmm_cases():
    """(model, X) fitted for a few iterations, for every emission and covariance type."""
    rng = np.random.RandomState(0)
    Xg = rng.randn(200, 2)
    cases = [(GaussianHMM(2, covariance_type=ct), Xg) for ct in COVARIANCE_TYPES]
    cases += [(GMMHMM(2, n_mix=2, covariance_type=ct), Xg) for ct in COVARIANCE_TYPES]
    cases += [(CategoricalHMM(2), rng.randint(0, 4, size=(200, 1))),
              (MultinomialHMM(2, n_trials=6), rng.multinomial(6, [0.2, 0.3, 0.5], size=200)),
              (PoissonHMM(2), rng.poisson(3.0, size=(200, 3)))]
    return cases


def fitted_family(model, X, letters=None):
    """(the EM family of ``model``'s fit on X, its parameters after a few iterations)."""
    model.set_params(n_iter=3, random_state=0)
    if letters is not None:
        model.set_params(params=letters)
    model.fit(X)
    emission = model._emission_model(model.n_features)
    params = model._params_from_attrs()
    params.emission = emission.prepare(params.emission)
    offsets = np.array([0, len(X)], dtype=np.int64)
    return _base._HMMFamily(emission, offsets, model.params, *model._priors(2),
                            "auto"), params


@pytest.mark.parametrize("case", range(11))
def test_hmm_round_trip(case):
    model, X = hmm_cases()[case]
    family, params = fitted_family(model, X)
    assert_params_equal(family.unpack(family.pack(params), params), params)


def test_hmm_packs_only_the_parameters_being_fitted():
    model, X = hmm_cases()[1]                     # diag GaussianHMM
    family, params = fitted_family(model, X, letters="st")
    vec = family.pack(params)
    assert len(vec) == 2 + 4
    got = family.unpack(vec + 0.1, params)
    assert got.emission is params.emission
    family, params = fitted_family(model, X, letters="m")
    assert len(family.pack(params)) == 2 * 2


def test_hmm_unpack_keeps_zeros():
    """Forbidden transitions, symbols a state never emits and zero rates stay exactly 0
    (EM never moves them), wherever the vector moves; rows still sum to 1."""
    rng = np.random.RandomState(0)
    for model, X in hmm_cases()[8:]:
        family, params = fitted_family(model, X)
        params.transmat = np.array([[1.0, 0.0], [0.3, 0.7]])
        em = dict(params.emission)
        key = "lambdas" if "lambdas" in em else "emissionprob"
        table = np.array(em[key])
        table[0, 0] = 0.0
        if key == "emissionprob":
            table /= table.sum(axis=1, keepdims=True)
        em[key] = table
        params.emission = family.emission.prepare(em)
        vec = family.pack(params)
        assert np.all(np.isfinite(vec))
        got = family.unpack(vec + rng.normal(size=len(vec)), params)
        assert got.transmat[0, 1] == 0.0 and got.emission[key][0, 0] == 0.0
        np.testing.assert_allclose(got.transmat.sum(axis=1), 1.0, rtol=1e-14)
        np.testing.assert_allclose(got.startprob.sum(), 1.0, rtol=1e-14)
        if key == "emissionprob":
            np.testing.assert_allclose(got.emission[key].sum(axis=1), 1.0, rtol=1e-14)


def test_natural_coordinates_refuse_what_no_model_has():
    """The imputer and the categorical mixtures extrapolate on their own parameters: a
    covariance that is not positive definite, or a negative weight or probability, is
    refused (SQUAREM's _unpack then gives None: the plain EM step), and a valid point
    comes back normalised."""
    from emfast.mixture._categorical import CategoricalFamily, CategoricalParams, offsets_of

    family = _MissingNormalFamily(None, 1.0, 0.0, np.eye(3))
    like = _Normal(np.zeros(3), np.eye(3))
    vec = family.pack(like)
    bad = vec.copy()
    bad[3] = -1.0                                   # a negative variance
    assert _em._unpack(family, bad, like) is None
    offsets = offsets_of(np.array([2, 3]))
    cat = CategoricalFamily.__new__(CategoricalFamily)
    cat.offsets = offsets
    like = CategoricalParams(np.array([0.4, 0.6]),
                             np.array([[0.5, 0.5, 0.2, 0.3, 0.5], [0.1, 0.9, 0.0, 0.5, 0.5]]),
                             offsets)
    vec = cat.pack(like)
    for i in (0, 3):                                # a weight, a probability
        bad = vec.copy()
        bad[i] = -0.01
        assert _em._unpack(cat, bad, like) is None
    got = cat.unpack(vec * 2.0, like)              # scaled: normalised again
    np.testing.assert_allclose(got.weights, like.weights, rtol=1e-15)
    np.testing.assert_allclose(got.probs, like.probs, rtol=1e-15)
    assert got.probs[1, 2] == 0.0
    from emfast.mixture._poisson import PoissonFamily, PoissonParams

    poi = PoissonFamily.__new__(PoissonFamily)
    like = PoissonParams(np.array([0.4, 0.6]), np.array([[1.0, 0.0], [2.5, 3.0]]))
    vec = poi.pack(like)
    bad = vec.copy()
    bad[3] = -0.5                                   # a negative rate
    assert _em._unpack(poi, bad, like) is None
    got = poi.unpack(vec, like)
    np.testing.assert_array_equal(got.lambdas, like.lambdas)


def test_imputer_round_trip():
    rng = np.random.RandomState(0)
    A = rng.randn(4, 4)
    params = _Normal(rng.randn(4), A @ A.T + np.eye(4))
    family = _MissingNormalFamily(None, 1.0, 0.0, np.eye(4))
    vec = family.pack(params)
    assert len(vec) == 4 + 10
    got = family.unpack(vec, params)
    for name in _Normal.__slots__:
        np.testing.assert_allclose(getattr(got, name), getattr(params, name), rtol=0,
                                   atol=1e-12, err_msg=name)


# ---------------------------------------------------------------------------- the optimum
@pytest.mark.parametrize("ct", COVARIANCE_TYPES)
def test_gaussian_mixture_reaches_plain_optimum_sooner(ct):
    X = overlapping_blobs()
    kw = dict(covariance_type=ct, tol=TOL, max_iter=100000, random_state=0)
    plain = GaussianMixture(3, **kw).fit(X)
    fast = GaussianMixture(3, accelerate="squarem", **kw).fit(X)
    assert plain.converged_ and fast.converged_
    assert fast.lower_bound_ >= plain.lower_bound_ - TOL
    assert fast.n_iter_ < plain.n_iter_ / 2
    assert len(fast.lower_bounds_) == fast.n_iter_
    # the lower bound is the log-likelihood at the point the returned parameters are the
    # EM image of: one more E-step (warm start, one iteration) scores them as score() does
    before = fast.score(X)
    assert before >= fast.lower_bound_
    fast.set_params(warm_start=True, max_iter=1, accelerate=None).fit(X)
    assert fast.lower_bound_ == pytest.approx(before, rel=1e-12)


def test_imputer_reaches_plain_optimum_sooner():
    X = file_matching()
    plain = EMImputer(tol=TOL, max_iter=100000).fit(X)
    fast = EMImputer(tol=TOL, max_iter=100000, accelerate="squarem").fit(X)
    assert plain.converged_ and fast.converged_
    assert fast.loglik_ >= plain.loglik_ - TOL * len(X)
    assert fast.n_iter_ < plain.n_iter_ / 3
    assert len(fast.loglik_history_) == fast.n_iter_
    target = plain.loglik_history_[-1] - TOL
    assert first_reaching(fast.loglik_history_, target) < plain.n_iter_ / 3


@pytest.mark.filterwarnings("error::emfast.exceptions.DegenerateComponentWarning")
@pytest.mark.parametrize("make, X, speedup", [
    (lambda **kw: GaussianHMM(2, covariance_type="full", **kw), alike_gaussian_frames, 2),
    (lambda **kw: GaussianHMM(2, covariance_type="diag", **kw), alike_gaussian_frames, 2),
    (lambda **kw: PoissonHMM(2, **kw), alike_counts, 3),
    (lambda **kw: MultinomialHMM(2, n_trials=5, **kw), alike_multinomial, 2),
    (lambda **kw: CategoricalHMM(2, **kw), alike_symbols, 2),
], ids=["gaussian-full", "gaussian-diag", "poisson", "multinomial", "categorical"])
def test_hmm_reaches_plain_optimum_sooner(hmm_evaluations, make, X, speedup):
    """From the same start, SQUAREM's log-likelihood reaches plain Baum-Welch's final one
    (less ``tol``) in fewer E-steps, and ends no lower."""
    X = X()
    kw = dict(tol=TOL, n_iter=20000, random_state=0)
    plain = make(**kw).fit(X)
    plain_evals = list(hmm_evaluations)
    hmm_evaluations.clear()
    fast = make(accelerate="squarem", **kw).fit(X)
    assert plain.monitor_.converged and fast.monitor_.converged
    assert fast.score(X) >= plain.score(X) - TOL
    assert first_reaching(hmm_evaluations, plain_evals[-1] - TOL) \
        < len(plain_evals) / speedup
    # the monitor sees SQUAREM's iterates: never decreasing, one per cycle
    history = np.array(fast.monitor_.history)
    assert np.all(np.diff(history) >= 0)
    assert fast.monitor_.iter == len(history) < len(hmm_evaluations) == fast.n_iter_
    assert plain.n_iter_ == plain.monitor_.iter == len(plain_evals)
    # score() is the log-likelihood at the fitted parameters: what an E-step there gives
    score = fast.score(X)
    fast.set_params(init_params="", n_iter=1, accelerate=None).fit(X)
    assert fast.monitor_.history[0] == pytest.approx(score, rel=1e-12)


@pytest.mark.filterwarnings("error::emfast.exceptions.DegenerateComponentWarning")
@pytest.mark.filterwarnings("error:invalid value:RuntimeWarning")
def test_gmmhmm_reaches_plain_optimum(hmm_evaluations):
    """No M-step runs at a rejected trial point: no warnings about components an
    extrapolation emptied."""
    X = alike_gaussian_frames()[:800]
    kw = dict(n_mix=2, covariance_type="diag", tol=TOL, n_iter=3000, random_state=0)
    plain = GMMHMM(2, **kw).fit(X)
    n_plain = len(hmm_evaluations)
    hmm_evaluations.clear()
    fast = GMMHMM(2, accelerate="squarem", **kw).fit(X)
    assert fast.score(X) >= plain.score(X) - TOL
    assert len(hmm_evaluations) < n_plain


# ---------------------------------------------------------------------------- other fits
def test_missing_values_and_semi_supervised_mixtures():
    X = overlapping_blobs(1000)
    Xn = X.copy()
    Xn[np.random.RandomState(0).rand(*X.shape) < 0.2] = np.nan
    Xn[np.isnan(Xn).all(axis=1), 0] = 0.0
    y = np.full(len(X), -1)
    y[:5], y[3000 // 3 + 5:3000 // 3 + 10] = 0, 1
    for data, extra in ((Xn, {}), (X, dict(semi_supervised=True))):
        kw = dict(covariance_type="diag", tol=TOL, max_iter=100000, random_state=0, **extra)
        fit_kw = {"y": y[:len(data)]} if extra else {}
        plain = GaussianMixture(3, **kw).fit(data, **fit_kw)
        fast = GaussianMixture(3, accelerate="squarem", **kw).fit(data, **fit_kw)
        assert fast.lower_bound_ >= plain.lower_bound_ - TOL
        assert fast.n_iter_ < plain.n_iter_


def test_chunked_fit_is_the_in_memory_fit():
    """The chunked E-step gives the in-memory statistics bit for bit, so SQUAREM takes the
    same path."""
    X = overlapping_blobs(1000)
    kw = dict(covariance_type="full", tol=TOL, max_iter=100000, random_state=0,
              accelerate="squarem")
    want = GaussianMixture(3, **kw).fit(X)
    got = GaussianMixture(3, **kw).fit(np.array_split(X, 3))
    assert got.n_iter_ == want.n_iter_
    np.testing.assert_array_equal(got.means_, want.means_)
    assert got.lower_bounds_ == want.lower_bounds_


def test_dask_fit():
    dask = pytest.importorskip("dask")
    da = pytest.importorskip("dask.array")
    import emfast.dask as ed

    X = overlapping_blobs(1000)
    kw = dict(covariance_type="diag", tol=TOL, max_iter=100000, random_state=0,
              accelerate="squarem")
    want = GaussianMixture(3, **kw).fit(X)
    with dask.config.set(scheduler="threads"):
        got = ed.fit(GaussianMixture(3, **kw), da.from_array(X, chunks=(1500, 2)))
    assert got.lower_bound_ == pytest.approx(want.lower_bound_, abs=10 * TOL)


def test_results_do_not_depend_on_threads():
    X = overlapping_blobs(1000)
    fits = [GaussianMixture(3, tol=TOL, max_iter=100000, random_state=0, n_threads=t,
                            accelerate="squarem").fit(X) for t in (1, 2)]
    np.testing.assert_array_equal(fits[0].means_, fits[1].means_)
    assert fits[0].lower_bounds_ == fits[1].lower_bounds_


# ---------------------------------------------------------------------------- bookkeeping
def test_accelerate_none_is_plain_em():
    X = overlapping_blobs(500)
    want = GaussianMixture(3, tol=1e-6, max_iter=3000, random_state=0).fit(X)
    got = GaussianMixture(3, tol=1e-6, max_iter=3000, random_state=0, accelerate=None).fit(X)
    assert got.n_iter_ == want.n_iter_ and got.lower_bounds_ == want.lower_bounds_
    np.testing.assert_array_equal(got.means_, want.means_)
    np.testing.assert_array_equal(got.covariances_, want.covariances_)


class _Halving:
    """A one-parameter EM map x -> x / 2 + 1 (fixed point 2) with lower bound -(x - 2)^2,
    and no pack/unpack unless ``packs``."""

    class Stats:
        def __init__(self, x):
            self.loglik, self.weight_sum, self.x = -(x - 2.0) ** 2, 1.0, x

    def e_step(self, X, sample_weight, params, n_threads):
        return self.Stats(params)

    def m_step(self, X, sample_weight, stats, rng):
        return stats.x / 2.0 + 1.0


class _PackedHalving(_Halving):
    def pack(self, params):
        return np.array([params])

    def unpack(self, vec, like):
        return float(vec[0])


def run(family, accelerate, max_iter=100, tol=1e-12):
    return _em.em_loop(family, None, None, 10.0, max_iter=max_iter, n_threads=1, rng=None,
                       rule=_em.ToleranceRule(tol), accelerate=accelerate)


def test_family_without_pack_is_refused():
    assert run(_Halving(), None).params == pytest.approx(2.0)
    with pytest.raises(ValueError, match="pack and unpack"):
        run(_Halving(), "squarem")


def test_linear_map_is_solved_by_one_extrapolation():
    """On a linear map S3's step is exact: x' is the fixed point. The first cycle's step is
    bounded by 1 (the plain double step), the second extrapolates to 2 exactly and the
    next cycle sees a gain of 0."""
    plain = run(_PackedHalving(), None)
    fast = run(_PackedHalving(), "squarem")
    assert fast.converged and fast.params == 2.0
    assert fast.n_iter < plain.n_iter
    assert fast.lower_bounds[5] == 0.0          # x' of the second cycle
    assert len(fast.lower_bounds) == fast.n_iter


@pytest.mark.parametrize("max_iter", range(0, 13))
def test_max_iter_counts_evaluations(max_iter):
    fast = run(_PackedHalving(), "squarem", max_iter=max_iter, tol=-1.0)
    assert fast.n_iter == max_iter == len(fast.lower_bounds)
    X = overlapping_blobs(300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = GaussianMixture(3, tol=0.0, max_iter=max_iter, random_state=0,
                             accelerate="squarem").fit(X)
    assert gm.n_iter_ == max_iter == len(gm.lower_bounds_)
    if max_iter:
        assert np.isfinite(gm.score(X))


def test_hmm_n_iter_bounds_evaluations(hmm_evaluations):
    X = alike_counts()
    for n_iter in (1, 2, 3, 7, 50):
        hmm_evaluations.clear()
        hmm = PoissonHMM(2, tol=-math.inf, n_iter=n_iter, random_state=0,
                         accelerate="squarem").fit(X)
        assert len(hmm_evaluations) == n_iter == hmm.n_iter_


def test_step_length():
    r, v = np.array([3.0, 4.0]), np.array([0.3, 0.4])
    assert _em._ratio(r, v) == pytest.approx(10.0)
    assert _em._step_length(10.0, 64.0) == (-10.0, False)
    assert _em._step_length(10.0, 4.0) == (-4.0, True)
    assert _em._step_length(_em._ratio(r, 100 * v), 4.0) == (-1.0, False)  # never below 1
    assert math.isnan(_em._ratio(r, 0 * v))                               # v = 0: plain
    assert math.isnan(_em._ratio(r * np.nan, v))
    assert _em._step_length(math.nan, 4.0) == (-1.0, False)


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.9, 0.999])
def test_gain_to_come_is_exact_for_a_linear_map(lam):
    """For x -> 2 + lam (x - 2) with lower bound -(x - 2)^2, the estimate from x0's EM step
    and |r| / |v| is the whole gain still to come from x0, -L(x0)."""
    x0 = 7.0
    x1 = 2 + lam * (x0 - 2)
    x2 = 2 + lam * (x1 - 2)
    r, v = np.array([x1 - x0]), np.array([x2 - 2 * x1 + x0])
    gain = (x0 - 2) ** 2 - (x1 - 2) ** 2
    assert _em._gain_to_come(gain, _em._ratio(r, v)) == pytest.approx((x0 - 2) ** 2,
                                                                       rel=1e-9)
    assert _em._gain_to_come(gain, math.nan) == gain       # undefined: the EM step's own


class _TwoRates:
    """A linear EM map x -> lam * x in two coordinates of different rates, lower bound
    -sum(w x^2), recording every point an E-step is taken at. S3's one step length
    overshoots along the fast coordinate now and then."""

    def __init__(self, lam, w):
        self.lam, self.w, self.points = np.array(lam), np.array(w), []

    class Stats:
        def __init__(self, x, w):
            self.loglik, self.weight_sum, self.x = -float(np.sum(w * x * x)), 1.0, x

    def e_step(self, X, sample_weight, params, n_threads):
        self.points.append(params)
        return self.Stats(params, self.w)

    def m_step(self, X, sample_weight, stats, rng):
        return self.lam * stats.x

    def pack(self, params):
        return np.array(params, dtype=float)

    def unpack(self, vec, like):
        return np.array(vec)


@pytest.mark.parametrize("natural", [True, False])
def test_rejected_step_is_retried_halfway_in_natural_coordinates(natural):
    """After a rejected x' (its bound below x1's), the next E-step is at the point of the
    step (alpha - 1) / 2 when the family's coordinates are natural (when that one wins,
    the cycle after starts from its EM image); otherwise the next cycle starts at x2."""
    fam = _TwoRates([0.95, 0.3], [1.0, 100.0])
    fam.natural_coordinates = natural
    fit = _em.em_loop(fam, None, None, np.array([1.0, 1.0]), max_iter=60, n_threads=1,
                      rng=None, rule=_em.ToleranceRule(1e-12), accelerate="squarem")
    lb, pts = fit.lower_bounds, fam.points
    drops = [i for i in range(2, len(lb) - 1) if lb[i] < lb[i - 1]]
    rejected = [i for i in drops if i - 1 not in drops]      # not a retry that lost too
    assert rejected
    for i in rejected[:3]:
        x0, x1 = pts[i - 2], pts[i - 1]
        r, v = x1 - x0, fam.lam * x1 - 2 * x1 + x0
        if not natural:
            np.testing.assert_allclose(pts[i + 1], fam.lam * x1, rtol=1e-12)     # x2
            continue
        # alpha of the rejected x': the root of -2 a r + a^2 v = x' - x0 that fits both
        d = pts[i] - x0
        roots = [(r[0] + sgn * math.sqrt(r[0] ** 2 + v[0] * d[0])) / v[0] for sgn in (1, -1)]
        alpha = next(a for a in roots if np.allclose(x0 - 2 * a * r + a * a * v, pts[i]))
        a = (alpha - 1.0) / 2.0
        np.testing.assert_allclose(pts[i + 1], x0 - 2 * a * r + a * a * v, rtol=1e-12)
        if lb[i + 1] >= lb[i - 1]:                           # the retry won: F(x'') next
            np.testing.assert_allclose(pts[i + 2], fam.lam * pts[i + 1], rtol=1e-12)


def test_stopping_on_the_gain_to_come_tells_the_rule():
    """A slow linear map stops on the estimated gain to come (one cycle still gains more
    than tol): the rule's last report is x1's bound, the bound returned."""
    class Rule(_em.ToleranceRule):
        def __init__(self, tol):
            super().__init__(tol)
            self.seen = []

        def update(self, n_iter, lower_bound, params):
            self.seen.append(lower_bound)
            return super().update(n_iter, lower_bound, params)

    fam = _TwoRates([0.99, 0.99], [1.0, 1.0])
    rule = Rule(1e-6)
    fit = _em.em_loop(fam, None, None, np.array([1.0, 1.0]), max_iter=1000, n_threads=1,
                      rng=None, rule=rule, accelerate="squarem")
    assert fit.converged and fit.n_iter < 1000
    assert rule.seen[-1] == fit.lower_bound == fit.lower_bounds[-1]     # x1's bound
    assert rule.seen[-2] == fit.lower_bounds[-2]                        # the cycle's x0
    assert rule.seen[-2] - rule.seen[-3] >= 1e-6         # the cycle test did not stop it
    np.testing.assert_allclose(fit.params, fam.lam * fam.points[-1])    # x2 = F(x1)


def test_natural_coordinates_of_each_family():
    """The families whose vectors hold their parameters say so, and the wrappers (the
    semi-supervised and Dask families) pass on what their family says."""
    from emfast.dask import _DaskFamily
    from emfast.mixture._bernoulli import BernoulliFamily
    from emfast.mixture._categorical import CategoricalFamily
    from emfast.mixture._poisson import PoissonFamily
    from emfast.mixture._semi_supervised import SemiSupervisedFamily
    for family in (_GaussianFamily, CategoricalFamily, BernoulliFamily, PoissonFamily,
                   _MissingNormalFamily):
        assert family.natural_coordinates is True
    assert not getattr(_base._HMMFamily, "natural_coordinates", False)
    for inner in (_PackedHalving(), _GaussianFamily):
        want = getattr(inner, "natural_coordinates", False)
        assert SemiSupervisedFamily(inner, [], 1.0, None).natural_coordinates is want
        assert _DaskFamily(inner, []).natural_coordinates is want


BAD = ["SQUAREM", "squarem2", "", True, 1, ["squarem"]]


@pytest.mark.parametrize("make", [
    lambda a: GaussianMixture(2, accelerate=a), lambda a: EMImputer(accelerate=a),
    lambda a: GaussianHMM(2, accelerate=a), lambda a: GMMHMM(2, accelerate=a),
    lambda a: CategoricalHMM(2, accelerate=a), lambda a: MultinomialHMM(2, accelerate=a),
    lambda a: PoissonHMM(2, accelerate=a)])
def test_bad_accelerate(make):
    est = make("squarem")
    assert est.get_params()["accelerate"] == "squarem"
    X = np.abs(np.random.RandomState(0).randint(0, 3, size=(50, 1)))
    for bad in BAD:
        est = make(bad)
        with pytest.raises(ValueError, match="'accelerate' parameter must be None"):
            est.fit(X)


def test_reseeding_does_not_break_squarem():
    """Empty components re-seeded inside SQUAREM: the fit ends valid, not below the start."""
    X = np.vstack([np.zeros((50, 2)), np.ones((50, 2))]) \
        + 1e-3 * np.random.RandomState(0).randn(100, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateComponentWarning)
        gm = GaussianMixture(6, tol=TOL, max_iter=500, random_state=0, init_params="random",
                             accelerate="squarem").fit(X)
    assert np.isfinite(gm.score(X)) and gm.lower_bound_ >= gm.lower_bounds_[0]
