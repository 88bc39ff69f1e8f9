"""emfast.hmm turns every bad input into a clear ValueError/TypeError and never modifies
what it was given."""

import logging

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from emfast import kernels as k
from emfast._config import available_backends
from emfast.exceptions import NotFittedError
from emfast.hmm import GMMHMM, CategoricalHMM, GaussianHMM, MultinomialHMM, PoissonHMM

if not available_backends("hmm"):  # pragma: no cover
    pytest.skip("no HMM kernel backend is available", allow_module_level=True)

from isolated import assert_all_raise, run_cases  # noqa: E402

HMM_BACKENDS = available_backends("hmm")

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
    # hmmlearn 0.3.3 writes the training row sums into n_trials
    np.testing.assert_array_equal(model.n_trials, X.sum(axis=1))
    assert model.sample(3)[0].sum(axis=1).tolist() == [4, 4, 4]
    with pytest.raises(ValueError, match="number of trials"):   # as hmmlearn's refit
        model.fit(X[:10])
    bad = MultinomialHMM(K, n_iter=2, random_state=0).fit(
        np.vstack([X, [[5, 0, 0]]]))
    with pytest.raises(ValueError, match="single n_trials"):
        bad.sample(3)


# ------------------------------------------------------------------ non-finite X
# (NaN is a missing value for the Gaussian emissions: test_hmm_missing.py)
@pytest.mark.parametrize("family,value,match", [
    (family, value, match) for family in sorted(MODELS)
    for value, match in [(np.nan, "NaN"), (np.inf, "infinity"), (-np.inf, "infinity")]
    if not (family in ("gaussian", "gmm") and np.isnan(value))])
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


# ------------------------------------------------------------------ memory safety
# Each of these once crashed a kernel (SIGSEGV/SIGFPE) or returned garbage; they run in a
# fresh interpreter so that a regression fails its test instead of killing the run.

_OVERFLOWING = "[2**62] * 4 + [300]"   # the int64 sum wraps around to exactly 300


def test_overflowing_lengths_are_refused_by_every_estimator_method():
    results = run_cases(f"""
        from emfast.hmm import GMMHMM, CategoricalHMM, GaussianHMM, MultinomialHMM, PoissonHMM
        rng = np.random.RandomState(0)
        data = {{
            "gaussian": (lambda b: GaussianHMM(2, n_iter=2, random_state=0, backend=b),
                         rng.normal(size=(300, 2))),
            "gaussian-full": (lambda b: GaussianHMM(2, "full", n_iter=2, random_state=0,
                                                    backend=b), rng.normal(size=(300, 2))),
            "gmm": (lambda b: GMMHMM(2, n_mix=2, n_iter=2, random_state=0, backend=b),
                    rng.normal(size=(300, 2))),
            "categorical": (lambda b: CategoricalHMM(2, n_iter=2, random_state=0, backend=b),
                            rng.randint(0, 3, size=(300, 1))),
            "poisson": (lambda b: PoissonHMM(2, n_iter=2, random_state=0, backend=b),
                        rng.poisson(3.0, size=(300, 2))),
            "multinomial": (lambda b: MultinomialHMM(2, n_iter=2, random_state=0, backend=b),
                            rng.multinomial(4, [0.2, 0.3, 0.5], size=300)),
        }}
        bad = {_OVERFLOWING}
        for backend in {HMM_BACKENDS!r}:
            for family, (make, X) in data.items():
                case(f"{{backend}} {{family}} fit", lambda: make(backend).fit(X, bad))
                model = make(backend).fit(X)
                for method in ("score", "score_samples", "predict", "predict_proba",
                               "decode", "filter", "aic"):
                    case(f"{{backend}} {{family}} {{method}}",
                         lambda: getattr(model, method)(X, bad))
    """)
    assert len(results) == len(HMM_BACKENDS) * 6 * 8
    assert_all_raise(results, "ValueError", "doesn't sum to 300 samples")


def test_kernels_refuse_overflowing_lengths():
    results = run_cases(f"""
        le = np.zeros((300, 2))
        X = np.random.RandomState(0).normal(size=(300, 2))
        sp, tm = np.full(2, 0.5), np.full((2, 2), 0.5)
        means = np.zeros((2, 2))
        bad = np.array({_OVERFLOWING})
        for b in {HMM_BACKENDS!r}:
            case(f"{{b}} forward_backward", lambda: k.hmm_forward_backward(le, bad, sp, tm,
                                                                          backend=b))
            case(f"{{b}} viterbi", lambda: k.hmm_viterbi(le, bad, sp, tm, backend=b))
            case(f"{{b}} filter", lambda: k.hmm_filter(le, bad, sp, tm, backend=b))
            case(f"{{b}} filter unfiltered", lambda: k.hmm_filter(le, bad, sp, tm,
                                                                 filtered=False, backend=b))
            for ct, pc in (("diag", np.ones((2, 2))), ("spherical", np.ones(2)),
                           ("full", np.broadcast_to(np.eye(2), (2, 2, 2))),
                           ("tied", np.eye(2))):
                case(f"{{b}} gaussian {{ct}}", lambda: k.hmm_gaussian_forward_backward(
                    X, bad, sp, tm, means, pc, ct, np.zeros(2), backend=b))
            case(f"{{b}} categorical", lambda: k.hmm_categorical_forward_backward(
                np.zeros(300, dtype=np.int64), bad, sp, tm, np.full((2, 3), 1 / 3),
                backend=b))
            case(f"{{b}} uint64 lengths", lambda: k.hmm_forward_backward(
                le, np.array([2**63, 2**63, 300], dtype=np.uint64), sp, tm, backend=b))
    """)
    assert len(results) == len(HMM_BACKENDS) * 10
    assert_all_raise(results, "ValueError", "doesn't sum to 300 samples")


def test_kernels_refuse_empty_axes():
    results = run_cases(f"""
        for b in {HMM_BACKENDS!r}:
            no_states = (np.zeros((30, 0)), None, np.zeros(0), np.zeros((0, 0)))
            case(f"{{b}} fb K=0", lambda: k.hmm_forward_backward(*no_states, backend=b))
            case(f"{{b}} viterbi K=0", lambda: k.hmm_viterbi(*no_states, backend=b))
            case(f"{{b}} filter K=0", lambda: k.hmm_filter(*no_states, backend=b))
            case(f"{{b}} categorical K=0", lambda: k.hmm_categorical_forward_backward(
                np.zeros(30, dtype=np.int64), None, np.zeros(0), np.zeros((0, 0)),
                np.zeros((0, 3)), backend=b))
            case(f"{{b}} gaussian K=0", lambda: k.hmm_gaussian_forward_backward(
                np.zeros((30, 2)), None, np.zeros(0), np.zeros((0, 0)), np.zeros((0, 2)),
                np.zeros((0, 2)), "diag", np.zeros(0), backend=b))
            case(f"{{b}} symbol_counts K=0", lambda: k.symbol_counts(
                np.zeros(30, dtype=np.int64), np.zeros((30, 0)), 3, backend=b))
            case(f"{{b}} gaussian D=0", lambda: k.hmm_gaussian_forward_backward(
                np.zeros((30, 0)), None, [1.0], [[1.0]], np.zeros((1, 0)), np.zeros((1, 0)),
                "diag", np.zeros(1), backend=b))
            case(f"{{b}} categorical F=0", lambda: k.hmm_categorical_forward_backward(
                np.zeros(0, dtype=np.int64), None, [1.0], [[1.0]], np.zeros((1, 0)),
                backend=b))
            case(f"{{b}} fb T=0", lambda: k.hmm_forward_backward(
                np.zeros((0, 2)), None, np.full(2, 0.5), np.full((2, 2), 0.5), backend=b))
    """)
    assert len(results) == len(HMM_BACKENDS) * 9
    assert_all_raise(results, "ValueError", "")
    for name, out in results.items():
        assert any(w in out for w in ("no components/states", "no features", "no symbols",
                                      "no frames")), (name, out)


def test_symbols_beyond_int64_are_refused_not_wrapped():
    # 2**63 as uint64 used to become symbol 0 (or -2**63, clipped to 0) without a word
    X = np.array([[0], [1], [2**63], [1]] * 10, dtype=np.uint64)
    for backend in HMM_BACKENDS:
        with pytest.raises(ValueError, match="below 2\\*\\*63"):
            CategoricalHMM(K, n_iter=2, random_state=0, backend=backend).fit(X)
        model = CategoricalHMM(K, n_iter=2, random_state=0, backend=backend).fit(_cat_X())
        with pytest.raises(ValueError, match="below 2\\*\\*63"):
            model.predict(X)
        with pytest.raises(ValueError, match="below 2\\*\\*63"):  # the same as floats
            CategoricalHMM(K, n_features=3, backend=backend).fit(X.astype(float))
    # the kernels' own symbol check compares in the symbols' dtype
    with pytest.raises(ValueError, match="symbols must lie in"):
        k.hmm_categorical_forward_backward(np.array([0, 2**63], dtype=np.uint64), None,
                                           [1.0], [[1.0]], [[1.0]])
    # counts too: Poisson and multinomial refuse what int64 cannot hold
    for make in (lambda: PoissonHMM(K), lambda: MultinomialHMM(K)):
        with pytest.raises(ValueError, match="below 2\\*\\*63"):
            make().fit(np.array([[1, 2**63], [3, 4]] * 5, dtype=np.uint64))
    # large integers below 2**63 are not rounded through float64
    big = np.array([[2**53 + 1, 0]] * 4, dtype=np.int64)
    from emfast._validation import check_count_array
    assert check_count_array(big, estimator="t")[0, 0] == 2**53 + 1


@pytest.mark.parametrize("family", ["gaussian", "gmm"])
def test_gaussian_hmms_refuse_values_they_cannot_square(family):
    make, data = MODELS[family]
    X = data()
    for backend in HMM_BACKENDS:
        with pytest.raises(ValueError, match="magnitude"):
            make(backend=backend).fit(X * 1e300)
        model = make(backend=backend).fit(X)
        for method in ("score", "predict", "predict_proba"):
            with pytest.raises(ValueError, match="magnitude"):
                getattr(model, method)(X * 1e300)


def test_gaussian_hmm_fit_is_scale_equivariant_up_to_1e140():
    """Far from the refusal threshold a rescaled problem is the same problem."""
    X = _gauss_X(n=200)
    for backend in HMM_BACKENDS:
        for ct in ("full", "diag"):
            a = GaussianHMM(K, ct, n_iter=5, random_state=0, backend=backend).fit(X)
            c = 1e140
            b = GaussianHMM(K, ct, n_iter=5, random_state=0, backend=backend,
                            min_covar=1e-3 * c * c, covars_prior=1e-2 * c * c).fit(X * c)
            np.testing.assert_allclose(b.means_ / c, a.means_, rtol=1e-8, atol=1e-10)
            np.testing.assert_allclose(b.transmat_, a.transmat_, rtol=1e-8, atol=1e-12)


@settings(max_examples=300, deadline=None)
@given(lengths=st.lists(st.one_of(st.integers(-3, 40), st.integers(-2**63, 2**63 - 1),
                                  st.sampled_from([2**62, 2**63 - 1, -2**63])),
                        min_size=1, max_size=8),
       n=st.integers(1, 100))
@example(lengths=[2**62] * 4 + [7], n=7)              # the int64 sum wraps to exactly 7
@example(lengths=[2**63 - 1, 2**63 - 1, 9], n=7)
def test_lengths_to_offsets_never_wraps(lengths, n):
    """Any int64 lengths: either offsets whose steps are exactly the lengths, or a
    ValueError; never offsets that only agree with N after an overflow."""
    from emfast._validation import lengths_to_offsets
    exact_ok = all(v > 0 for v in lengths) and sum(lengths) == n
    arr = np.array(lengths, dtype=np.int64)
    if exact_ok:
        offsets = lengths_to_offsets(arr, n)
        assert offsets[0] == 0 and offsets[-1] == n
        assert np.diff(offsets).tolist() == lengths
    else:
        with pytest.raises(ValueError, match="lengths"):
            lengths_to_offsets(arr, n)
