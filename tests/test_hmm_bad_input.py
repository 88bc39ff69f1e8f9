"""emfast.hmm turns every bad input into a clear ValueError/TypeError and never modifies
what it was given."""

import logging

import numpy as np
import pytest

from emfast._config import available_backends
from emfast.exceptions import NotFittedError
from emfast.hmm import GMMHMM, CategoricalHMM, GaussianHMM, MultinomialHMM, PoissonHMM

if not available_backends("hmm"):  # pragma: no cover
    pytest.skip("no HMM kernel backend is available", allow_module_level=True)

K = 2


@pytest.fixture(autouse=True)
def _quiet():
    logging.getLogger("emfast.hmm").setLevel(logging.ERROR)
    yield
    logging.getLogger("emfast.hmm").setLevel(logging.NOTSET)


def _gauss_X(n=40, D=2, seed=0):
    rng = np.random.RandomState(seed)
    return np.vstack([rng.normal(size=(n // 2, D)), rng.normal(4, 1, size=(n - n // 2, D))])


def _cat_X(n=40, seed=0):
    return np.random.RandomState(seed).randint(0, 3, size=(n, 1))


def _pois_X(n=40, seed=0):
    return np.random.RandomState(seed).poisson(3.0, size=(n, 2))


def _mult_X(n=40, seed=0):
    return np.random.RandomState(seed).multinomial(4, [0.2, 0.3, 0.5], size=n)


MODELS = {
    "gaussian": (lambda **kw: GaussianHMM(K, n_iter=3, random_state=0, **kw), _gauss_X),
    "gmm": (lambda **kw: GMMHMM(K, n_mix=2, n_iter=3, random_state=0, **kw), _gauss_X),
    "categorical": (lambda **kw: CategoricalHMM(K, n_iter=3, random_state=0, **kw), _cat_X),
    "poisson": (lambda **kw: PoissonHMM(K, n_iter=3, random_state=0, **kw), _pois_X),
    "multinomial": (lambda **kw: MultinomialHMM(K, n_iter=3, random_state=0, **kw), _mult_X),
}


# ------------------------------------------------------------------ lengths
@pytest.mark.parametrize("family", sorted(MODELS))
@pytest.mark.parametrize("lengths,match", [
    ([10, 10], "doesn't sum to 40"),
    ([20, 25], "doesn't sum to 40"),
    ([40, 0], "positive"),
    ([50, -10], "positive"),
    ([20.5, 19.5], "integers"),
    ([[20, 20]], "1-D"),
    ([], "non-empty"),
    (["a", "b"], "integers"),
])
def test_bad_lengths(family, lengths, match):
    make, data = MODELS[family]
    X = data()
    with pytest.raises(ValueError, match=match):
        make().fit(X, lengths)
    model = make().fit(X)
    for method in ("score", "score_samples", "predict", "predict_proba", "decode", "filter"):
        with pytest.raises(ValueError, match=match):
            getattr(model, method)(X, lengths)


def test_float_lengths_with_integral_values_are_accepted():
    X = _gauss_X()
    a = GaussianHMM(K, n_iter=2, random_state=0).fit(X, np.array([20.0, 20.0]))
    b = GaussianHMM(K, n_iter=2, random_state=0).fit(X, [20, 20])
    assert list(a.monitor_.history) == list(b.monitor_.history)


# ------------------------------------------------------------------ distributions set by hand
@pytest.mark.parametrize("family", sorted(MODELS))
def test_startprob_not_summing_to_one(family):
    make, data = MODELS[family]
    model = make(init_params="tmcwel")
    model.startprob_ = np.array([0.6, 0.6])
    with pytest.raises(ValueError, match="startprob_ must sum to 1"):
        model.fit(data())


@pytest.mark.parametrize("family", sorted(MODELS))
def test_transmat_rows_not_summing_to_one(family):
    make, data = MODELS[family]
    model = make(init_params="smcwel")
    model.transmat_ = np.array([[0.5, 0.4], [0.5, 0.5]])
    with pytest.raises(ValueError, match="transmat_ rows must sum to 1"):
        model.fit(data())


def test_bad_distributions_after_fit_are_caught_at_inference():
    X = _gauss_X()
    model = GaussianHMM(K, n_iter=2, random_state=0).fit(X)
    model.transmat_ = np.array([[0.9, 0.2], [0.5, 0.5]])
    for method in ("score", "predict", "predict_proba", "filter"):
        with pytest.raises(ValueError, match="transmat_ rows must sum to 1"):
            getattr(model, method)(X)
    with pytest.raises(ValueError, match="transmat_ rows must sum to 1"):
        model.sample(5)


@pytest.mark.parametrize("startprob,match", [
    (np.array([1.2, -0.2]), "non-negative"),
    (np.array([np.nan, 1.0]), "NaN"),
    (np.array([0.2, 0.3, 0.5]), "shape"),
])
def test_bad_startprob_values(startprob, match):
    model = GaussianHMM(K, init_params="mc", n_iter=2)
    model.startprob_ = startprob
    model.transmat_ = np.full((K, K), 0.5)
    with pytest.raises(ValueError, match=match):
        model.fit(_gauss_X())


def test_bad_emission_parameters():
    X = _cat_X()
    model = CategoricalHMM(K, init_params="st", n_iter=2)
    model.emissionprob_ = np.array([[0.5, 0.5, 0.5], [0.2, 0.3, 0.5]])
    with pytest.raises(ValueError, match="emissionprob_ rows must sum to 1"):
        model.fit(X)
    model = GaussianHMM(K, covariance_type="full", init_params="stm")
    with pytest.raises(ValueError, match="positive-definite"):
        model.covars_ = np.array([np.eye(2), -np.eye(2)])
    with pytest.raises(ValueError, match="positive"):
        GaussianHMM(K, covariance_type="diag").covars_ = np.array([[1.0, 0.0], [1.0, 1.0]])
    model = PoissonHMM(K, init_params="st", n_iter=2)
    model.lambdas_ = np.array([[1.0, -2.0], [1.0, 1.0]])
    with pytest.raises(ValueError, match="lambdas_ must be non-negative"):
        model.fit(_pois_X())
    model = GaussianHMM(K, init_params="stc", n_iter=2)
    model.means_ = np.zeros((K, 3))
    with pytest.raises(ValueError, match="means_ must have shape"):
        model.fit(_gauss_X())


# ------------------------------------------------------------------ counts and symbols
@pytest.mark.parametrize("family", ["categorical", "poisson", "multinomial"])
def test_negative_counts(family):
    make, data = MODELS[family]
    X = data()
    X[3, 0] = -1
    with pytest.raises(ValueError, match="nonnegative"):
        make().fit(X)
    model = make().fit(data())
    with pytest.raises(ValueError, match="nonnegative"):
        model.score(X)


@pytest.mark.parametrize("family", ["categorical", "poisson", "multinomial"])
def test_fractional_counts(family):
    make, data = MODELS[family]
    X = data().astype(float)
    X[0, 0] += 0.5
    with pytest.raises(ValueError, match="integers"):
        make().fit(X)


def test_symbols_out_of_range():
    X = _cat_X()
    X[5, 0] = 3
    with pytest.raises(ValueError, match="Largest symbol is 3"):
        CategoricalHMM(K, n_features=3).fit(X)
    model = CategoricalHMM(K, n_iter=2, random_state=0).fit(_cat_X())
    assert model.n_features == 3
    for method in ("score", "predict", "predict_proba", "decode", "filter", "score_samples"):
        with pytest.raises(ValueError, match="Largest symbol is 3"):
            getattr(model, method)(X)


def test_categorical_needs_one_column():
    with pytest.raises(ValueError, match=r"\(n_samples, 1\)"):
        CategoricalHMM(K).fit(np.zeros((10, 2), dtype=int))
    with pytest.raises(ValueError, match="2D"):
        CategoricalHMM(K).fit(np.zeros(10, dtype=int))


def test_multinomial_rows_must_sum_to_n_trials():
    X = _mult_X()
    with pytest.raises(ValueError, match="number of trials"):
        MultinomialHMM(K, n_trials=5).fit(X)
    model = MultinomialHMM(K, n_iter=2, random_state=0).fit(X)
    assert model.n_trials is None and np.all(model.n_trials_ == 4)
    bad = MultinomialHMM(K, n_iter=2, random_state=0).fit(
        np.vstack([X, [[5, 0, 0]]]))
    with pytest.raises(ValueError, match="single n_trials"):
        bad.sample(3)


# ------------------------------------------------------------------ non-finite X
@pytest.mark.parametrize("family", sorted(MODELS))
@pytest.mark.parametrize("value,match", [(np.nan, "NaN"), (np.inf, "infinity"),
                                         (-np.inf, "infinity")])
def test_non_finite_X(family, value, match):
    make, data = MODELS[family]
    X = data().astype(float)
    X[2, 0] = value
    with pytest.raises(ValueError, match=match):
        make().fit(X)
    model = make().fit(data())
    with pytest.raises(ValueError, match=match):
        model.predict(X)


def test_wrong_number_of_features():
    model = GaussianHMM(K, n_iter=2, random_state=0).fit(_gauss_X(D=2))
    with pytest.raises(ValueError, match="expecting 2 features"):
        model.score(_gauss_X(D=3))
    model = PoissonHMM(K, n_iter=2, random_state=0).fit(_pois_X())
    with pytest.raises(ValueError, match="expecting 2 features"):
        model.score(np.ones((5, 3), dtype=int))


# ------------------------------------------------------------------ inputs never modified
@pytest.mark.parametrize("family", sorted(MODELS))
def test_inputs_not_modified(family):
    make, data = MODELS[family]
    X = data()
    X_copy = X.copy()
    lengths = np.array([15, 25])
    lengths_copy = lengths.copy()
    model = make(init_params="")
    model2 = make().fit(X)
    start = {name: np.array(getattr(model2, name), copy=True) for name in
             ("startprob_", "transmat_", "means_", "_covars_", "weights_", "covars_",
              "emissionprob_", "lambdas_") if hasattr(model2, name)}
    if "_covars_" in start:  # GaussianHMM: covars_ is the full-matrix view of _covars_
        del start["covars_"]
    for name, value in start.items():
        setattr(model, name, value)
    held = {name: value.copy() for name, value in start.items()}
    model.n_features = model2.n_features
    model.fit(X, lengths)
    model.score_samples(X, lengths)
    model.decode(X, lengths, algorithm="map")
    model.filter(X, lengths)
    np.testing.assert_array_equal(X, X_copy)
    np.testing.assert_array_equal(lengths, lengths_copy)
    for name, value in held.items():  # the arrays the user handed over are untouched
        np.testing.assert_array_equal(start[name], value, err_msg=name)


# ------------------------------------------------------------------ parameters
@pytest.mark.parametrize("kwargs,exc,match", [
    ({"covariance_type": "banana"}, ValueError, "covariance_type"),
    ({"algorithm": "forward"}, ValueError, "algorithm"),
    ({"implementation": "fast"}, ValueError, "implementation"),
    ({"n_iter": -1}, ValueError, "n_iter"),
    ({"n_init": 0}, ValueError, "n_init"),
    ({"n_components": 0}, ValueError, "n_components"),
    ({"tol": "small"}, TypeError, "tol"),
    ({"min_covar": -1.0}, ValueError, "min_covar"),
    ({"backend": "fortran"}, ValueError, "backend"),
    ({"n_threads": 0}, ValueError, "n_threads"),
    ({"params": 5}, TypeError, "params"),
    ({"startprob_prior": np.ones(5)}, ValueError, "startprob_prior"),
])
def test_bad_constructor_parameters(kwargs, exc, match):
    kwargs = {"n_components": K, **kwargs}
    with pytest.raises(exc, match=match):
        GaussianHMM(**kwargs).fit(_gauss_X())


def test_unknown_decoder_and_not_fitted():
    model = GaussianHMM(K)
    with pytest.raises(NotFittedError):
        model.predict(_gauss_X())
    with pytest.raises(NotFittedError):
        model.sample(3)
    model.fit(_gauss_X())
    with pytest.raises(ValueError, match="Unknown decoder"):
        model.decode(_gauss_X(), algorithm="greedy")
    with pytest.raises(ValueError, match="n_samples"):
        model.sample(0)
    with pytest.raises(ValueError, match="currstate"):
        model.sample(3, currstate=5)


def test_too_few_samples_for_kmeans():
    with pytest.raises(ValueError, match="n_samples >= n_components"):
        GaussianHMM(5).fit(_gauss_X(n=3))
