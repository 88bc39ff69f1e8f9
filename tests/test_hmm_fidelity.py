"""Drop-in fidelity of emfast.hmm, found by running hmmlearn-style code against it: what a
fit leaves is accepted by the same model, errors are hmmlearn's kinds, parameters can be set
in hmmlearn's layouts, and regularisation is announced."""

import logging
import warnings

import numpy as np
import pytest

from emfast import _validation as V
from emfast._config import available_backends
from emfast.exceptions import DegenerateComponentWarning
from emfast.hmm import GMMHMM, CategoricalHMM, GaussianHMM, MultinomialHMM, PoissonHMM

if not available_backends("hmm"):  # pragma: no cover
    pytest.skip("no HMM kernel backend is available", allow_module_level=True)

HMM_BACKENDS = available_backends("hmm")


@pytest.fixture(autouse=True)
def _quiet_logs():
    logging.getLogger("emfast.hmm").setLevel(logging.ERROR)
    yield
    logging.getLogger("emfast.hmm").setLevel(logging.NOTSET)


def degenerate_data(seed):
    """500 x 3 frames whose third feature is the sum of the other two, with a few far
    outliers: states that take the outliers own fewer points than dimensions, and every
    full covariance is singular up to the prior."""
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(500, 3))
    X[:, 2] = X[:, 0] + X[:, 1]
    X[rng.rand(500) < 0.01] += 30
    return X


def _stored_covariances(model):
    if isinstance(model, GaussianHMM):
        return model.covars_.reshape(-1, model.n_features, model.n_features)
    cv = np.asarray(model.covars_)
    if model.covariance_type in ("full", "tied"):
        return cv.reshape(-1, model.n_features, model.n_features)
    return cv.reshape(-1, 1, 1)


# ------------------------------------------------------------------ fits its own score accepts
MAKERS = {
    "gaussian-full": lambda s, b, **kw: GaussianHMM(4, "full", n_iter=5, random_state=s,
                                                    backend=b, **kw),
    "gaussian-tied": lambda s, b, **kw: GaussianHMM(4, "tied", n_iter=5, random_state=s,
                                                    backend=b, **kw),
    "gaussian-diag": lambda s, b, **kw: GaussianHMM(4, "diag", n_iter=5, random_state=s,
                                                    backend=b, **kw),
    "gmm-full": lambda s, b, **kw: GMMHMM(2, n_mix=3, covariance_type="full", n_iter=5,
                                          random_state=s, backend=b, **kw),
    "gmm-tied": lambda s, b, **kw: GMMHMM(2, n_mix=3, covariance_type="tied", n_iter=5,
                                          random_state=s, backend=b, **kw),
    "gmm-diag": lambda s, b, **kw: GMMHMM(2, n_mix=3, covariance_type="diag", n_iter=5,
                                          random_state=s, backend=b, **kw),
}


@pytest.mark.parametrize("backend", HMM_BACKENDS)
@pytest.mark.parametrize("name", sorted(MAKERS))
@pytest.mark.parametrize("extra", [{}, {"covars_prior": 0.0}])
def test_every_fit_is_accepted_by_its_own_score(name, backend, extra):
    """Before, up to half of these fits stored a covariance with an eigenvalue of -1e-15
    (or NaN) that the model's own score then refused."""
    if name.startswith("gmm") and extra:
        extra = {"covars_prior": 0.0 if name == "gmm-diag" else None}
    for seed in range(4):
        X = degenerate_data(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DegenerateComponentWarning)
            model = MAKERS[name](seed, backend, **extra).fit(X, [250, 250])
        assert np.isfinite(model.score(X, [250, 250]))
        model.predict(X)
        model.predict_proba(X)
        model.sample(5, random_state=0)
        for i, m in enumerate(_stored_covariances(model)):
            V.check_spd(m, f"stored covariance {i}")     # Cholesky, as the kernels need
        clone = MAKERS[name](seed, backend, init_params="", **extra)
        for attr in ("startprob_", "transmat_", "means_", "weights_"):
            if hasattr(model, attr):
                setattr(clone, attr, np.array(getattr(model, attr)))
        # GaussianHMM.covars_ reads as full matrices; the compact form is what one sets
        clone.covars_ = np.array(getattr(model, "_covars_", model.covars_))
        assert clone.score(X) == model.score(X)            # re-set by hand: accepted too


@pytest.mark.parametrize("name", ["gaussian-full", "gmm-full", "gmm-tied"])
def test_regularisation_during_fit_is_announced(name):
    """A covariance that the M-step leaves singular is floored (hmmlearn's 1e-7 retry);
    the fit says so, and what it stores is the floored matrix."""
    X = degenerate_data(1)
    kw = {"covars_prior": 0.0} if name.startswith("gaussian") else {}
    with pytest.warns(DegenerateComponentWarning, match="not positive definite"):
        model = MAKERS[name](1, HMM_BACKENDS[0], **kw).fit(X, [250, 250])
    assert np.isfinite(model.score(X))


@pytest.mark.parametrize("backend", HMM_BACKENDS)
def test_a_state_without_posterior_mass_keeps_its_covariance(backend):
    """hmmlearn's GMMHMM divides 0 by 0 for a mixture component no frame visits and goes
    NaN; emfast keeps the previous covariance and warns. The component is made unvisited
    by starting its mean far from every frame (not by a seed whose k-means happens to
    leave one empty)."""
    X = degenerate_data(20)
    model = GMMHMM(2, n_mix=3, covariance_type="full", n_iter=3, init_params="",
                   backend=backend)
    model.startprob_ = np.array([0.5, 0.5])
    model.transmat_ = np.array([[0.9, 0.1], [0.1, 0.9]])
    model.weights_ = np.full((2, 3), 1 / 3)
    means = np.zeros((2, 3, 3))
    means[0, 1] = 1.0
    means[:, 2] = 1e4  # no frame is near: no posterior mass
    model.means_ = means
    model.covars_ = np.broadcast_to(np.eye(3), (2, 3, 3, 3)).copy()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(X, [250, 250])
    assert any("no posterior mass" in str(w.message) for w in caught
               if issubclass(w.category, DegenerateComponentWarning))
    np.testing.assert_array_equal(model.covars_[:, 2], np.broadcast_to(np.eye(3), (2, 3, 3)))
    assert np.all(np.isfinite(model.covars_)) and np.all(np.isfinite(model.startprob_))
    assert np.isfinite(model.score(X))


# ------------------------------------------------------------------ errors as hmmlearn's
def _fitted(cls, X, **kw):
    return cls(2, n_iter=2, random_state=0, **kw).fit(X)


@pytest.mark.parametrize("cls", [GaussianHMM, GMMHMM])
def test_unknown_covariance_type_set_after_fit_is_a_value_error(cls):
    X = np.random.RandomState(0).normal(size=(60, 2))
    model = _fitted(cls, X)
    model.covariance_type = "banana"
    calls = {"score": lambda: model.score(X), "predict": lambda: model.predict(X),
             "predict_proba": lambda: model.predict_proba(X), "decode": lambda: model.decode(X),
             "sample": lambda: model.sample(3), "bic": lambda: model.bic(X),
             "fit": lambda: model.fit(X)}
    if cls is GaussianHMM:
        calls["covars_"] = lambda: model.covars_
    for name, call in calls.items():
        with pytest.raises(ValueError, match="covariance_type"):
            call()


def _hand_set(model, **attrs):
    model.startprob_ = np.array([0.5, 0.5])
    model.transmat_ = np.full((2, 2), 0.5)
    for name, value in attrs.items():
        setattr(model, name, value)
    return model


_G = np.random.RandomState(1).normal(size=(30, 2))
_COUNTS = np.array([[0, 3], [1, 2], [2, 1]])


@pytest.mark.parametrize("make,X", [
    (lambda: _hand_set(GaussianHMM(2), means_=np.zeros(2), covars_=np.ones((2, 2))), _G),
    (lambda: _hand_set(GaussianHMM(2), means_=np.zeros((0, 2)), covars_=np.ones((2, 2))), _G),
    (lambda: _hand_set(GaussianHMM(2), means_=np.zeros((2, 0)), covars_=np.ones((2, 2))), _G),
    (lambda: _hand_set(GaussianHMM(2), means_=np.zeros((2, 2)), covars_=np.ones((2, 0))), _G),
    (lambda: _hand_set(GMMHMM(2, n_mix=2), means_=np.zeros((2, 2)),
                       weights_=np.full((2, 2), 0.5), covars_=np.ones((2, 2, 2))), _G),
    (lambda: _hand_set(GMMHMM(2, n_mix=2), means_=np.zeros(0),
                       weights_=np.full((2, 2), 0.5), covars_=np.ones((2, 2, 2))), _G),
    (lambda: _hand_set(GMMHMM(2, n_mix=2), means_=np.zeros((2, 2, 2)),
                       weights_=np.zeros(0), covars_=np.ones((2, 2, 2))), _G),
    (lambda: _hand_set(CategoricalHMM(2), emissionprob_=np.array([0.5, 0.5])), [[0], [1]]),
    (lambda: _hand_set(CategoricalHMM(2), emissionprob_=np.zeros(0)), [[0], [1]]),
    (lambda: _hand_set(CategoricalHMM(2), emissionprob_=np.zeros((2, 0))), [[0], [1]]),
    (lambda: _hand_set(PoissonHMM(2), lambdas_=np.array([1.0, 2.0])), _COUNTS),
    (lambda: _hand_set(PoissonHMM(2), lambdas_=np.zeros(0)), _COUNTS),
    (lambda: _hand_set(PoissonHMM(2), lambdas_=np.zeros((2, 0))), _COUNTS),
    (lambda: _hand_set(MultinomialHMM(2, n_trials=3), emissionprob_=np.zeros(0)), _COUNTS),
    (lambda: _hand_set(MultinomialHMM(2, n_trials=3), emissionprob_=np.ones(2) / 2), _COUNTS),
    (lambda: _hand_set(GaussianHMM(2), means_=np.zeros((2, 2)), covars_=np.ones((2, 2)),
                       startprob_=np.zeros(0)), _G),
    (lambda: _hand_set(GaussianHMM(2), means_=np.zeros((2, 2)), covars_=np.ones((2, 2)),
                       transmat_=np.ones(2) / 2), _G),
])
def test_empty_or_misshaped_parameters_are_value_errors(make, X):
    """hmmlearn raises ValueError for these (emfast raised IndexError for several)."""
    X = np.asarray(X)
    for call in (lambda m: m.score(X), lambda m: m.predict(X), lambda m: m.sample(2)):
        with pytest.raises(ValueError, match="must have shape|must be"):
            call(make())


# ------------------------------------------------------------------ covars_ layouts
@pytest.mark.parametrize("value", [
    np.array([2.0, 3.0]), np.array([[2.0], [3.0]]), np.array([[[2.0]], [[3.0]]]),
    np.array([[[[2.0]]], [[[3.0]]]]), np.array([[2.0, 2.0], [3.0, 3.0]]), [2.0, 3.0],
])
def test_spherical_covars_layouts(value):
    """hmmlearn accepts any array with one positive value per state: (K,), (K, 1, ..., 1)
    and its own fitted (K, D) form."""
    X = np.random.RandomState(0).normal(size=(60, 2))
    want = GaussianHMM(2, "spherical", init_params="stm", n_iter=3, random_state=0)
    want.covars_ = np.array([2.0, 3.0])
    want.fit(X)
    got = GaussianHMM(2, "spherical", init_params="stm", n_iter=3, random_state=0)
    got.covars_ = value
    np.testing.assert_array_equal(got._covars_, [2.0, 3.0])
    got.fit(X)
    assert list(got.monitor_.history) == list(want.monitor_.history)
    assert got.covars_.shape == (2, 2, 2)


def test_diag_covars_of_one_value_per_state_apply_to_every_feature():
    """hmmlearn accepts (K, 1) diag covars but then sums the log of one variance where its
    density needs D of them; emfast reads (K, 1) as that variance for every feature, the
    model hmmlearn fits from the explicit (K, D) layout."""
    hmm_ref = pytest.importorskip("hmmlearn.hmm")
    X = np.random.RandomState(0).normal(size=(60, 2))
    fits = []
    for cls, covars in ((GaussianHMM, [[2.0], [3.0]]), (GaussianHMM, [[2.0, 2.0], [3.0, 3.0]]),
                        (hmm_ref.GaussianHMM, [[2.0, 2.0], [3.0, 3.0]])):
        model = cls(2, "diag", init_params="st", params="stmc", n_iter=4, random_state=0)
        model.means_ = np.array([[0.0, 0.0], [1.0, 1.0]])
        model.covars_ = np.array(covars)
        if cls is GaussianHMM:  # (hmmlearn's getter needs n_features, set by fit)
            np.testing.assert_array_equal(model.covars_, [np.eye(2) * 2, np.eye(2) * 3])
        fits.append(model.fit(X))
    assert list(fits[0].monitor_.history) == list(fits[1].monitor_.history)
    np.testing.assert_allclose(fits[0].monitor_.history, fits[2].monitor_.history, rtol=1e-10)
    np.testing.assert_allclose(fits[0]._covars_, fits[2]._covars_, rtol=1e-10)


@pytest.mark.parametrize("ct,value", [
    ("spherical", np.ones((2, 2, 2))), ("spherical", np.array([1.0, 0.0])),
    ("spherical", np.ones(3)), ("diag", np.ones((2, 2, 2))), ("diag", -np.ones((2, 2))),
    ("full", np.ones((2, 2))), ("full", np.ones((2, 2, 2))), ("tied", np.ones((2, 2, 2))),
    ("tied", np.array([[1.0, 2.0], [0.0, 1.0]])), ("banana", np.ones(2)),
])
def test_bad_covars_assignments(ct, value):
    model = GaussianHMM(2, covariance_type=ct)
    with pytest.raises(ValueError):
        model.covars_ = value


# ------------------------------------------------------------------ the shared Gaussian maths
@pytest.mark.parametrize("ct", ["full", "tied", "diag", "spherical", "spherical-per-feature"])
def test_scatter_about_a_new_centre_matches_the_direct_sum(ct):
    """mixture._gaussian.scatter_about, which the mixture and the HMM M-steps share,
    against the weighted scatter computed directly about the new centre."""
    from emfast.mixture import _gaussian as G
    rng = np.random.default_rng(0)
    K, D, N = 3, 4, 200
    X = rng.normal(size=(N, D)) * 3 + 10
    r = rng.dirichlet(np.ones(K), size=N)
    centre, new = rng.normal(size=(K, D)) + 10, rng.normal(size=(K, D)) + 10
    xc = X[:, None, :] - centre[None]                      # (N, K, D)
    nk, s1 = r.sum(axis=0), np.einsum("nk,nkd->kd", r, xc)
    xn = X[:, None, :] - new[None]
    full = np.einsum("nk,nki,nkj->kij", r, xn, xn)
    kind = ct.partition("-")[0]
    s2_full = np.einsum("nk,nki,nkj->kij", r, xc, xc)
    s2, want = {
        "full": (s2_full, full),
        "tied": (s2_full.sum(axis=0), full.sum(axis=0)),
        "diag": (np.einsum("kii->ki", s2_full), np.einsum("kii->ki", full)),
        "spherical": (np.einsum("kii->k", s2_full), np.einsum("kii->k", full)),
        "spherical-per-feature": (np.einsum("kii->ki", s2_full), np.einsum("kii->ki", full)),
    }[ct]
    got = G.scatter_about(kind, s1, s2, nk, new - centre)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("ct", ["diag", "spherical"])
def test_variance_floor_follows_the_scale_of_the_data(ct):
    """A non-positive variance is floored relative to the others (with reg_covar = 0),
    so a problem scaled by c is floored at c times the floor: no absolute epsilon."""
    from emfast.mixture import _gaussian as G
    cov = np.array([[2.0, 0.0, 1.0], [3.0, 4.0, -1e-3]]) if ct == "diag" else \
        np.array([2.0, 0.0, 4.0])
    floors = []
    for c in (1.0, 1e-20, 1e20):
        with pytest.warns(DegenerateComponentWarning, match="not positive"):
            _, floored = G.precision_cholesky(cov * c, ct, 0.0)
        floors.append(floored[~(cov > 0)] / c)
    np.testing.assert_allclose(floors[1], floors[0], rtol=1e-12)
    np.testing.assert_allclose(floors[2], floors[0], rtol=1e-12)
