"""emfast.hmm against hmmlearn 0.3.3: EM trajectories from the same start, inference,
sampling, pickling, threads, structural zeros, restarts."""

import logging
import os
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

from emfast._config import available_backends
from emfast.hmm import (GMMHMM, CategoricalHMM, ConvergenceMonitor, GaussianHMM,
                        MultinomialHMM, PoissonHMM)

if not available_backends("hmm"):  # pragma: no cover - the kernels are part of emfast
    pytest.skip("no HMM kernel backend is available", allow_module_level=True)

hmm_ref = pytest.importorskip("hmmlearn.hmm")

COV_TYPES = ("spherical", "diag", "full", "tied")
K = 3
LENGTHS = [70, 50, 80]
T = sum(LENGTHS)
STARTPROB = np.array([0.5, 0.3, 0.2])
TRANSMAT = np.array([[0.8, 0.1, 0.1], [0.15, 0.7, 0.15], [0.1, 0.2, 0.7]])


@pytest.fixture(autouse=True)
def _quiet():
    logging.getLogger("hmmlearn").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _states(seed):
    rng = np.random.RandomState(seed)
    z = np.empty(T, dtype=int)
    z[0] = 0
    for t in range(1, T):
        z[t] = rng.choice(K, p=TRANSMAT[z[t - 1]])
    return z, rng


def gaussian_data(seed=0, D=2):
    z, rng = _states(seed)
    centres = np.array([[0.0] * D, [4.0] * D, [-4.0, 4.0] + [0.0] * (D - 2)])
    return centres[z] + rng.normal(size=(T, D)) * np.array([1.0, 0.6, 1.3])[z, None]


def gaussian_start(ct, D=2):
    means = np.array([[0.5] * D, [3.0] * D, [-3.0, 3.0] + [0.0] * (D - 2)])
    covars = {"spherical": np.array([1.0, 2.0, 1.5]),
              "diag": np.array([[1.0, 2.0], [1.5, 1.0], [2.0, 2.0]])[:, :D],
              "full": np.array([np.eye(D) * s + 0.2 * (1 - np.eye(D)) for s in (1.0, 1.5, 2.0)]),
              "tied": np.eye(D) * 1.5 + 0.3 * (1 - np.eye(D))}[ct]
    return {"means_": means, "covars_": covars}


def gmm_start(ct, D=2, M=2):
    base = np.array([[0.0] * D, [4.0] * D, [-4.0, 4.0] + [0.0] * (D - 2)])
    means = base[:, None, :] + np.array([[-0.5] * D, [0.5] * D])[None, :M]
    covars = {"spherical": np.full((K, M), 1.2),
              "diag": np.full((K, M, D), 1.1),
              "full": np.tile(np.eye(D) * 1.3, (K, M, 1, 1)),
              "tied": np.tile(np.eye(D) * 1.4, (K, 1, 1))}[ct]
    return {"weights_": np.tile([0.4, 0.6][:M], (K, 1)) / np.sum([0.4, 0.6][:M]),
            "means_": means, "covars_": covars}


def categorical_data(seed=0, F=4):
    z, rng = _states(seed)
    E = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.6, 0.2, 0.1], [0.05, 0.05, 0.2, 0.7]])[:, :F]
    E = E / E.sum(axis=1, keepdims=True)
    return np.array([[rng.choice(F, p=E[s])] for s in z])


CATEGORICAL_START = {"emissionprob_": np.array([[0.4, 0.2, 0.2, 0.2], [0.2, 0.4, 0.2, 0.2],
                                                [0.2, 0.2, 0.2, 0.4]])}


def poisson_data(seed=0):
    z, rng = _states(seed)
    lam = np.array([[1.0, 5.0], [4.0, 1.0], [8.0, 8.0]])
    return rng.poisson(lam[z])


POISSON_START = {"lambdas_": np.array([[2.0, 4.0], [3.0, 2.0], [6.0, 7.0]])}


def multinomial_data(seed=0, n_trials=5):
    z, rng = _states(seed)
    P = np.array([[0.6, 0.2, 0.2], [0.1, 0.7, 0.2], [0.2, 0.2, 0.6]])
    return np.array([rng.multinomial(n_trials, P[s]) for s in z])


MULTINOMIAL_START = {"emissionprob_": np.array([[0.5, 0.25, 0.25], [0.2, 0.5, 0.3],
                                                [0.3, 0.3, 0.4]])}


def _case(name):
    """(emfast estimator class, hmmlearn class, constructor kwargs, X, start attributes)."""
    family, _, ct = name.partition("-")
    if family == "gaussian":
        return GaussianHMM, hmm_ref.GaussianHMM, {"covariance_type": ct}, gaussian_data(), \
            gaussian_start(ct)
    if family == "gmm":
        return GMMHMM, hmm_ref.GMMHMM, {"covariance_type": ct, "n_mix": 2}, \
            gaussian_data(), gmm_start(ct)
    if family == "categorical":
        return CategoricalHMM, hmm_ref.CategoricalHMM, {}, categorical_data(), \
            CATEGORICAL_START
    if family == "poisson":
        return PoissonHMM, hmm_ref.PoissonHMM, {}, poisson_data(), POISSON_START
    if family == "multinomial":
        return MultinomialHMM, hmm_ref.MultinomialHMM, {"n_trials": 5}, multinomial_data(), \
            MULTINOMIAL_START
    raise ValueError(name)


CASES = ([f"gaussian-{ct}" for ct in COV_TYPES] + [f"gmm-{ct}" for ct in COV_TYPES]
         + ["categorical", "poisson", "multinomial"])


def _set_start(model, start, startprob=STARTPROB, transmat=TRANSMAT):
    model.startprob_ = startprob.copy()
    model.transmat_ = transmat.copy()
    for name, value in start.items():
        setattr(model, name, np.array(value, copy=True))
    return model


def _pair(name, impl="scaling", **kw):
    ours_cls, ref_cls, ctor, X, start = _case(name)
    ctor = {**ctor, **kw}
    ours = _set_start(ours_cls(K, init_params="", **ctor), start)
    ref = _set_start(ref_cls(K, init_params="", implementation=impl, **ctor), start)
    return ours, ref, X


def _emission_attrs(model):
    if isinstance(model, (GaussianHMM, hmm_ref.GaussianHMM)):
        covars = np.asarray(model._covars_)
        if model.covariance_type == "spherical" and covars.ndim == 2:
            covars = covars[:, 0]  # hmmlearn keeps (K, D) copies after fitting
        return {"means_": model.means_, "_covars_": covars}
    if isinstance(model, (GMMHMM, hmm_ref.GMMHMM)):
        return {"weights_": model.weights_, "means_": model.means_, "covars_": model.covars_}
    if isinstance(model, (PoissonHMM, hmm_ref.PoissonHMM)):
        return {"lambdas_": model.lambdas_}
    return {"emissionprob_": model.emissionprob_}


def assert_same_params(ours, ref, rtol=1e-8, atol=1e-10):
    np.testing.assert_allclose(ours.startprob_, ref.startprob_, rtol=rtol, atol=atol)
    np.testing.assert_allclose(ours.transmat_, ref.transmat_, rtol=rtol, atol=atol)
    mine, theirs = _emission_attrs(ours), _emission_attrs(ref)
    for name in mine:
        np.testing.assert_allclose(mine[name], theirs[name], rtol=rtol, atol=atol, err_msg=name)


# ------------------------------------------------------------------ EM trajectories
@pytest.mark.parametrize("backend", available_backends("hmm"))
@pytest.mark.parametrize("impl", ["scaling", "log"])
@pytest.mark.parametrize("name", CASES)
def test_trajectory_matches_hmmlearn(name, impl, backend):
    """Every family (Poisson and multinomial included) on every backend: the numba
    forward-backward and the Cython one both reproduce hmmlearn's EM path."""
    ours, ref, X = _pair(name, impl, n_iter=10, tol=-np.inf)
    ours.set_params(backend=backend)
    ours.fit(X, LENGTHS)
    ref.fit(X, LENGTHS)
    assert len(ours.monitor_.history) == len(ref.monitor_.history) == 10
    np.testing.assert_allclose(list(ours.monitor_.history), list(ref.monitor_.history),
                               rtol=1e-8)
    assert ours.monitor_.iter == ref.monitor_.iter
    assert ours.monitor_.converged == ref.monitor_.converged
    assert_same_params(ours, ref)


PRIORS = {
    "gaussian-diag": dict(startprob_prior=2.0, transmat_prior=1.5, means_prior=0.5,
                          means_weight=2.0, covars_prior=0.3, covars_weight=3.0),
    "gaussian-spherical": dict(means_prior=-0.5, means_weight=1.0, covars_prior=0.2,
                               covars_weight=2.5),
    "gaussian-full": dict(transmat_prior=2.0, means_prior=0.5, means_weight=2.0,
                          covars_prior=0.3, covars_weight=4.0),
    "gaussian-tied": dict(means_prior=0.2, means_weight=1.0, covars_prior=0.4,
                          covars_weight=5.0),
    "gmm-diag": dict(weights_prior=2.0, means_prior=0.5, means_weight=1.0, covars_prior=0.5,
                     covars_weight=1.0),
    "gmm-full": dict(weights_prior=1.5, means_weight=0.5, covars_prior=0.2,
                     covars_weight=1.0),
    "categorical": dict(startprob_prior=3.0, emissionprob_prior=2.0),
    "poisson": dict(lambdas_prior=2.0, lambdas_weight=0.5, transmat_prior=1.2),
}


@pytest.mark.parametrize("name", sorted(PRIORS))
def test_trajectory_with_priors_matches_hmmlearn(name):
    ours, ref, X = _pair(name, n_iter=8, tol=-np.inf, **PRIORS[name])
    ours.fit(X, LENGTHS)
    ref.fit(X, LENGTHS)
    np.testing.assert_allclose(list(ours.monitor_.history), list(ref.monitor_.history),
                               rtol=1e-8)
    assert_same_params(ours, ref)


@pytest.mark.parametrize("params", ["st", "sm", "tm", "s", ""])
def test_params_letters_match_hmmlearn(params):
    ours, ref, X = _pair("gaussian-full", n_iter=5, tol=-np.inf, params=params)
    ours.fit(X, LENGTHS)
    ref.fit(X, LENGTHS)
    np.testing.assert_allclose(list(ours.monitor_.history), list(ref.monitor_.history),
                               rtol=1e-8)
    assert_same_params(ours, ref)
    if "m" not in params:
        np.testing.assert_array_equal(ours.means_, gaussian_start("full")["means_"])


def test_covars_without_means_is_exact_em():
    """params='stc': hmmlearn 0.3.3 drops the posterior sums when 'm' is absent (its
    variances explode); emfast does the exact update, so the likelihood keeps rising."""
    model = _set_start(GaussianHMM(K, init_params="", params="stc", n_iter=15, tol=-np.inf,
                                   covars_prior=0.0), gaussian_start("diag"))
    model.fit(gaussian_data(), LENGTHS)
    assert np.all(np.diff(model.monitor_.history) > -1e-8)
    assert np.all(model._covars_ < 10)


@pytest.mark.parametrize("name", ["gaussian-spherical", "gaussian-diag", "gaussian-full",
                                  "gaussian-tied", "categorical", "poisson", "multinomial"])
def test_loglik_never_decreases(name):
    ours_cls, _, ctor, X, start = _case(name)
    if name.startswith("gaussian"):
        ctor = {**ctor, "covars_prior": 0.0, "covars_weight": 1.0, "min_covar": 1e-3}
    if name == "categorical":
        ctor = {**ctor, "emissionprob_prior": 1.0}
    model = ours_cls(K, n_iter=30, tol=-np.inf, random_state=0, **ctor).fit(X, LENGTHS)
    h = np.array(model.monitor_.history)
    assert len(h) == 30
    assert np.all(np.diff(h) >= -1e-9 * np.abs(h[1:])), np.diff(h).min()


def test_convergence_rule_is_hmmlearns():
    ours, ref, X = _pair("gaussian-diag", n_iter=100, tol=1e-2)
    ours.fit(X, LENGTHS)
    ref.fit(X, LENGTHS)
    assert ours.monitor_.iter == ref.monitor_.iter < 100
    assert ours.monitor_.converged and ref.monitor_.converged
    h = list(ours.monitor_.history)
    assert h[-1] - h[-2] < 1e-2 and h[-2] - h[-3] >= 1e-2
    ours, ref, X = _pair("gaussian-diag", n_iter=3, tol=-np.inf)
    ours.fit(X, LENGTHS)
    assert ours.monitor_.iter == 3 and ours.monitor_.converged  # iter == n_iter counts


def test_custom_monitor_subclass_is_used():
    class Stop(ConvergenceMonitor):
        @property
        def converged(self):
            return self.iter >= 2

    model = GaussianHMM(K, n_iter=50, random_state=0)
    model.monitor_ = Stop(model.monitor_.tol, model.monitor_.n_iter, False)
    model.fit(gaussian_data(), LENGTHS)
    assert isinstance(model.monitor_, Stop)
    assert model.monitor_.iter == 2


def test_decreasing_loglik_is_logged(caplog):
    mon = ConvergenceMonitor(1e-2, 10, False)
    mon.report(-10.0)
    with caplog.at_level(logging.WARNING, logger="emfast.hmm"):
        mon.report(-11.0)
    assert "not converging" in caplog.text


def test_verbose_reports_to_stderr(capsys):
    GaussianHMM(K, n_iter=3, tol=-np.inf, verbose=True, random_state=0).fit(
        gaussian_data(), LENGTHS)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and err[0].split()[0] == "1"


# ------------------------------------------------------------------ initialisation
@pytest.mark.parametrize("cls,ref_cls,X", [
    (CategoricalHMM, "CategoricalHMM", categorical_data()),
    (PoissonHMM, "PoissonHMM", poisson_data()),
    (MultinomialHMM, "MultinomialHMM", multinomial_data()),
])
def test_random_init_draws_as_hmmlearn(cls, ref_cls, X):
    """Same seed, same starting startprob_/transmat_/emission parameters as hmmlearn."""
    ours = cls(K, n_iter=0, random_state=7).fit(X, LENGTHS)
    ref = getattr(hmm_ref, ref_cls)(K, n_iter=0, random_state=7).fit(X, LENGTHS)
    assert_same_params(ours, ref, rtol=1e-14, atol=0)


@pytest.mark.parametrize("ct", COV_TYPES)
def test_gaussian_init_covars_from_data(ct):
    X = gaussian_data()
    ours = GaussianHMM(K, covariance_type=ct, n_iter=0, random_state=0).fit(X)
    ref = hmm_ref.GaussianHMM(K, covariance_type=ct, n_iter=0, random_state=0).fit(X)
    np.testing.assert_allclose(ours.startprob_, ref.startprob_, rtol=1e-14)
    np.testing.assert_allclose(ours.transmat_, ref.transmat_, rtol=1e-14)
    np.testing.assert_allclose(_emission_attrs(ours)["_covars_"],
                               _emission_attrs(ref)["_covars_"], rtol=1e-12)
    # emfast's k-means is not scikit-learn's, but finds the same three clusters here
    np.testing.assert_allclose(np.sort(ours.means_, axis=0), np.sort(ref.means_, axis=0),
                               atol=0.2)


@pytest.mark.parametrize("name", CASES)
def test_fit_from_scratch(name):
    ours_cls, _, ctor, X, _ = _case(name)
    model = ours_cls(K, random_state=0, n_iter=5, **ctor).fit(X, LENGTHS)
    assert np.isfinite(model.score(X, LENGTHS))
    assert model.monitor_.iter >= 1
    assert np.allclose(model.transmat_.sum(axis=1), 1)


def test_float32_input():
    X = gaussian_data()
    a = _set_start(GaussianHMM(K, covariance_type="full", init_params="", n_iter=5,
                               tol=-np.inf), gaussian_start("full"))
    b = _set_start(GaussianHMM(K, covariance_type="full", init_params="", n_iter=5,
                               tol=-np.inf), gaussian_start("full"))
    a.fit(X.astype(np.float32), LENGTHS)
    b.fit(X.astype(np.float32).astype(np.float64), LENGTHS)
    assert a.means_.dtype == np.float64
    np.testing.assert_allclose(a.monitor_.history, b.monitor_.history, rtol=1e-6)
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ inference
INFERENCE_CASES = [f"gaussian-{ct}" for ct in COV_TYPES] + [
    "gmm-diag", "gmm-tied", "categorical", "poisson", "multinomial"]


@pytest.mark.parametrize("name", INFERENCE_CASES)
def test_inference_matches_hmmlearn(name):
    ours, ref, X = _pair(name)
    rtol = 1e-9
    np.testing.assert_allclose(ours.score(X, LENGTHS), ref.score(X, LENGTHS), rtol=rtol)
    lp, post = ours.score_samples(X, LENGTHS)
    rlp, rpost = ref.score_samples(X, LENGTHS)
    np.testing.assert_allclose(lp, rlp, rtol=rtol)
    np.testing.assert_allclose(post, rpost, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(ours.predict_proba(X, LENGTHS), rpost, rtol=1e-7, atol=1e-10)
    for algorithm in ("viterbi", "map"):
        lp, states = ours.decode(X, LENGTHS, algorithm=algorithm)
        rlp, rstates = ref.decode(X, LENGTHS, algorithm=algorithm)
        np.testing.assert_allclose(lp, rlp, rtol=rtol)
        np.testing.assert_array_equal(states, rstates)
    np.testing.assert_array_equal(ours.predict(X, LENGTHS), ref.predict(X, LENGTHS))
    np.testing.assert_allclose(ours.score(X), ref.score(X), rtol=rtol)  # one sequence
    np.testing.assert_allclose(ours.aic(X, LENGTHS), ref.aic(X, LENGTHS), rtol=rtol)
    np.testing.assert_allclose(ours.bic(X, LENGTHS), ref.bic(X, LENGTHS), rtol=rtol)
    np.testing.assert_allclose(ours.get_stationary_distribution(),
                               ref.get_stationary_distribution(), rtol=1e-10)


@pytest.mark.parametrize("ct", COV_TYPES)
def test_covars_property_is_full_matrices(ct):
    model = _set_start(GaussianHMM(K, covariance_type=ct), gaussian_start(ct))
    ref = _set_start(hmm_ref.GaussianHMM(K, covariance_type=ct), gaussian_start(ct))
    ref.n_features = 2
    assert model.covars_.shape == (K, 2, 2)
    np.testing.assert_array_equal(model.covars_, ref.covars_)
    np.testing.assert_array_equal(model._covars_, gaussian_start(ct)["covars_"])


@pytest.mark.parametrize("name", ["gaussian-full", "categorical"])
def test_filter(name):
    ours, _, X = _pair(name)
    filt = ours.filter(X)
    assert filt.shape == (T, K)
    np.testing.assert_allclose(filt.sum(axis=1), 1)
    np.testing.assert_allclose(filt[-1], ours.predict_proba(X)[-1], rtol=1e-10, atol=1e-12)
    # every sequence's last frame, and causality: the filter does not look ahead
    filt = ours.filter(X, LENGTHS)
    post = ours.predict_proba(X, LENGTHS)
    ends = np.cumsum(LENGTHS) - 1
    np.testing.assert_allclose(filt[ends], post[ends], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours.filter(X[:50])[:50], ours.filter(X)[:50], rtol=1e-12)


# ------------------------------------------------------------------ sampling
@pytest.mark.parametrize("name,shape,kind", [
    ("gaussian-full", (40, 2), "f"), ("gaussian-spherical", (40, 2), "f"),
    ("gmm-diag", (40, 2), "f"), ("gmm-tied", (40, 2), "f"),
    ("categorical", (40, 1), "i"), ("poisson", (40, 2), "i"), ("multinomial", (40, 3), "i")])
def test_sample(name, shape, kind):
    ours, _, _ = _pair(name)
    if name == "multinomial":
        ours.n_features = 3
    X, Z = ours.sample(40, random_state=0)
    assert X.shape == shape and X.dtype.kind == kind
    assert Z.shape == (40,) and Z.min() >= 0 and Z.max() < K
    X2, Z2 = ours.sample(40, random_state=0)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(Z, Z2)
    _, Z3 = ours.sample(5, random_state=1, currstate=2)
    assert Z3[0] == 2
    if name == "multinomial":
        assert np.all(X.sum(axis=1) == 5)


def test_sample_statistics():
    model = _set_start(GaussianHMM(K, covariance_type="diag"), gaussian_start("diag"))
    X, Z = model.sample(20000, random_state=0)
    for k in range(K):
        np.testing.assert_allclose(X[Z == k].mean(axis=0), model.means_[k], atol=0.1)
    counts = np.zeros((K, K))
    np.add.at(counts, (Z[:-1], Z[1:]), 1)
    np.testing.assert_allclose(counts / counts.sum(axis=1, keepdims=True), TRANSMAT,
                               atol=0.02)


# ------------------------------------------------------------------ API
@pytest.mark.parametrize("name", ["gaussian-tied", "gmm-full", "categorical", "poisson",
                                  "multinomial"])
def test_pickle_round_trip(name):
    ours_cls, _, ctor, X, _ = _case(name)
    model = ours_cls(K, random_state=0, n_iter=4, **ctor).fit(X, LENGTHS)
    new = pickle.loads(pickle.dumps(model))
    assert type(new) is type(model)
    assert new.get_params().keys() == model.get_params().keys()
    assert list(new.monitor_.history) == list(model.monitor_.history)
    assert new.score(X, LENGTHS) == model.score(X, LENGTHS)
    np.testing.assert_array_equal(new.predict(X, LENGTHS), model.predict(X, LENGTHS))


def _many_sequences(name, n_seq=60):
    """(X, lengths): n_seq sequences of T frames from ``name``'s family, 12,000 frames in
    all, so that the row-blocked kernels give each of 2 threads several blocks and the
    forward-backward's sequence groups split too (the 200 frames of the other tests run
    on one thread)."""
    make = {"gaussian": gaussian_data, "gmm": gaussian_data, "categorical": categorical_data,
            "poisson": poisson_data, "multinomial": multinomial_data}[name.partition("-")[0]]
    return np.concatenate([make(seed) for seed in range(n_seq)]), [T] * n_seq


@pytest.mark.parametrize("backend", available_backends("hmm"))
@pytest.mark.parametrize("name", ["gaussian-full", "gaussian-diag", "gaussian-spherical",
                                  "gmm-diag", "categorical", "poisson"])
def test_threads_bit_identical(name, backend):
    from emfast.kernels import _threads_for
    ours_cls, _, ctor, _, _ = _case(name)
    X, lengths = _many_sequences(name)
    assert _threads_for(len(X), 2) == 2 and len(lengths) >= 2   # 2 threads do split it
    fits = [ours_cls(K, random_state=0, n_iter=4, tol=-np.inf, n_threads=n, backend=backend,
                     **ctor).fit(X, lengths) for n in (1, 2)]
    assert list(fits[0].monitor_.history) == list(fits[1].monitor_.history)
    for a, b in zip(_emission_attrs(fits[0]).values(), _emission_attrs(fits[1]).values()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(fits[0].transmat_, fits[1].transmat_)
    np.testing.assert_array_equal(fits[0].predict_proba(X, lengths),
                                  fits[1].predict_proba(X, lengths))
    np.testing.assert_array_equal(fits[0].filter(X, lengths), fits[1].filter(X, lengths))


@pytest.mark.parametrize("name", ["gaussian-diag", "categorical"])
def test_left_right_zeros_stay_zero(name):
    ours_cls, _, ctor, X, start = _case(name)
    transmat = np.array([[0.6, 0.4, 0.0], [0.0, 0.7, 0.3], [0.0, 0.0, 1.0]])
    startprob = np.array([1.0, 0.0, 0.0])
    model = _set_start(ours_cls(K, init_params="", n_iter=10, **ctor), start, startprob,
                       transmat)
    model.fit(X, LENGTHS)
    assert np.all(model.transmat_[transmat == 0] == 0)
    assert np.all(model.startprob_[1:] == 0)
    assert np.all(np.triu(model.transmat_) == model.transmat_)
    np.testing.assert_allclose(model.transmat_.sum(axis=1), 1)


def test_n_init_keeps_the_best_restart(monkeypatch):
    """n_init=6 runs six restarts that end at different log-likelihoods; the fitted model
    is the restart whose final log-likelihood is the highest, parameters and history."""
    import emfast._em as em

    seen = []
    choose = em.best_run

    def recording_best_run(runs):
        seen.append(runs)
        return choose(runs)

    monkeypatch.setattr(em, "best_run", recording_best_run)
    X = gaussian_data()
    for seed in range(10):  # a seed whose best restart is not the first one
        kw = dict(n_iter=8, tol=-np.inf, random_state=seed, covariance_type="full")
        seen.clear()
        many = GaussianHMM(K, n_init=6, **kw).fit(X, LENGTHS)
        (runs,) = seen
        finals = [run.lower_bound for run in runs]
        if int(np.argmax(finals)) != 0:
            break
    else:
        pytest.fail("no seed in 10 has a best restart other than the first")
    best = runs[int(np.argmax(finals))]
    assert many.monitor_.history[-1] == max(finals) > finals[0]
    assert list(many.monitor_.history) == list(best.rule.monitor.history)
    np.testing.assert_array_equal(many.means_, best.params.emission["means"])
    np.testing.assert_array_equal(many.transmat_, best.params.transmat)
    # the choice does not depend on how the restarts were scheduled
    monkeypatch.setattr(em, "best_run", choose)
    again = GaussianHMM(K, n_init=6, n_threads=1, **kw).fit(X, LENGTHS)
    assert list(again.monitor_.history) == list(many.monitor_.history)
    np.testing.assert_array_equal(again.means_, many.means_)


@pytest.mark.parametrize("backend", available_backends("hmm"))
@pytest.mark.parametrize("cls", [GaussianHMM, CategoricalHMM])
def test_n_init_starts_from_the_n_init_1_fit(cls, backend, monkeypatch):
    """Restart 0 of ``n_init=5`` is the ``n_init=1`` fit with the same random_state, bit for
    bit (also when the restarts run concurrently), so more restarts never end worse; for
    some seeds they end better."""
    import emfast._em as em

    seen = []
    choose = em.best_run
    monkeypatch.setattr(em, "best_run", lambda runs: seen.append(runs) or choose(runs))
    X = gaussian_data() if cls is GaussianHMM else categorical_data()
    ctor = {"covariance_type": "full"} if cls is GaussianHMM else {}
    gained = []
    for seed in range(6):
        kw = dict(n_iter=10, random_state=seed, backend=backend, **ctor)
        one = cls(K, **kw).fit(X, LENGTHS)
        seen.clear()
        many = cls(K, n_init=5, n_threads=2, **kw).fit(X, LENGTHS)
        first = seen[0][0]
        assert list(first.rule.monitor.history) == list(one.monitor_.history)
        np.testing.assert_array_equal(first.params.startprob, one.startprob_)
        np.testing.assert_array_equal(first.params.transmat, one.transmat_)
        for attr in one._emission_attrs.values():
            np.testing.assert_array_equal(first.params.emission[attr.rstrip("_")],
                                          getattr(one, attr))
        assert many.monitor_.history[-1] >= one.monitor_.history[-1]
        assert many.score(X, LENGTHS) >= one.score(X, LENGTHS)
        gained.append(many.monitor_.history[-1] > one.monitor_.history[-1])
    assert any(gained), "no seed where a later restart beats the first: the test shows nothing"


def test_get_set_params_and_repr():
    model = GaussianHMM(2, covariance_type="full", n_init=3)
    params = model.get_params()
    assert params["covariance_type"] == "full" and params["n_init"] == 3
    assert "implementation" in params and "backend" in params
    model.set_params(n_iter=5)
    assert model.n_iter == 5
    assert "covariance_type='full'" in repr(model)
    assert set(CategoricalHMM().get_params()) >= {"emissionprob_prior", "n_features"}
    assert set(GMMHMM().get_params()) >= {"n_mix", "weights_prior", "covars_weight"}
    assert set(PoissonHMM().get_params()) >= {"lambdas_prior", "lambdas_weight"}
    assert "n_trials" in MultinomialHMM().get_params()


def test_import_emfast_does_not_import_sklearn_or_hmmlearn():
    env = dict(os.environ)
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    if os.path.isdir(src):
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    code = ("import sys, emfast, emfast.hmm; "
            "bad = [m for m in ('sklearn', 'hmmlearn') if m in sys.modules]; "
            "assert not bad, bad")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("backend", available_backends("hmm"))
@pytest.mark.parametrize("name", ["gaussian-full", "gmm-diag", "categorical"])
def test_every_backend_matches_hmmlearn(name, backend):
    ours, ref, X = _pair(name, n_iter=6, tol=-np.inf)
    ours.set_params(backend=backend, n_threads=2)
    ours.fit(X, LENGTHS)
    ref.fit(X, LENGTHS)
    np.testing.assert_allclose(list(ours.monitor_.history), list(ref.monitor_.history),
                               rtol=1e-8)
    assert_same_params(ours, ref)
    np.testing.assert_array_equal(ours.predict(X, LENGTHS), ref.predict(X, LENGTHS))
