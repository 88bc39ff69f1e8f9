"""Every bad input gives a clear ValueError/TypeError naming the problem; good input of any
shape gives well-formed output (Hypothesis); inputs are never modified."""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import emfast
from conftest import BACKENDS, COV_TYPES, make_blobs

GM = emfast.GaussianMixture


def _quiet():
    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.simplefilter("ignore", emfast.ConvergenceWarning)
    warnings.simplefilter("ignore", emfast.DegenerateComponentWarning)
    return ctx


@pytest.fixture(scope="module")
def X():
    return make_blobs(n_samples=60, n_features=3, n_components=2, seed=0)[0]


@pytest.fixture(scope="module")
def fitted(X):
    return GM(2, random_state=0).fit(X)


# ---------------------------------------------------------------- properties (Hypothesis)
@st.composite
def problems(draw):
    K = draw(st.integers(1, 4))
    D = draw(st.integers(1, 4))
    N = draw(st.integers(max(K, 2), 80))
    ct = draw(st.sampled_from(COV_TYPES))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    seed = draw(st.integers(0, 2**32 - 1))
    scale = draw(st.sampled_from([1e-3, 1.0, 1e3]))
    offset = draw(st.sampled_from([0.0, 1e3]))
    weighted = draw(st.booleans())
    backend = draw(st.sampled_from(BACKENDS))
    init = draw(st.sampled_from(["kmeans", "k-means++", "random", "random_from_data"]))
    rng = np.random.default_rng(seed)
    X = (offset + scale * rng.normal(size=(N, D))).astype(dtype)
    sw = rng.uniform(0.1, 3.0, size=N) if weighted else None
    return X, sw, K, ct, backend, init, seed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_fit_and_inference_shapes_and_values(problem):
    X, sw, K, ct, backend, init, seed = problem
    N, D = X.shape
    X_copy = X.copy()
    sw_copy = None if sw is None else sw.copy()
    est = GM(K, covariance_type=ct, backend=backend, init_params=init, random_state=seed % 1000,
             max_iter=10, n_threads=1)
    ctx = _quiet()
    try:
        est.fit(X, sample_weight=sw)
    finally:
        ctx.__exit__(None, None, None)
    np.testing.assert_array_equal(X, X_copy)
    if sw is not None:
        np.testing.assert_array_equal(sw, sw_copy)
    shapes = {"full": (K, D, D), "tied": (D, D), "diag": (K, D), "spherical": (K,)}[ct]
    assert est.means_.shape == (K, D)
    assert est.weights_.shape == (K,)
    assert est.covariances_.shape == shapes
    assert est.precisions_.shape == shapes
    assert est.precisions_cholesky_.shape == shapes
    assert est.n_features_in_ == D
    for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        value = getattr(est, name)
        assert value.dtype == np.float64, name
        assert np.all(np.isfinite(value)), name
    np.testing.assert_allclose(est.weights_.sum(), 1.0, rtol=1e-10)
    assert 1 <= est.n_iter_ <= 10
    assert len(est.lower_bounds_) == est.n_iter_
    assert np.isfinite(est.lower_bound_)
    labels = est.predict(X)
    assert labels.shape == (N,)
    assert np.issubdtype(labels.dtype, np.integer)
    assert labels.min() >= 0 and labels.max() < K
    proba = est.predict_proba(X)
    assert proba.shape == (N, K)
    assert np.all(np.isfinite(proba)) and np.all(proba >= 0) and np.all(proba <= 1)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-10)
    np.testing.assert_array_equal(proba.argmax(axis=1), labels)
    ll = est.score_samples(X)
    assert ll.shape == (N,) and np.all(np.isfinite(ll))
    np.testing.assert_allclose(est.score(X), ll.mean(), rtol=1e-12)
    Xs, ys = est.sample(5)
    assert Xs.shape == (5, D) and ys.shape == (5,)
    assert np.all(np.isfinite(Xs))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 30), d=st.integers(1, 4), dtype=st.sampled_from(["f4", "f8", "i8",
                                                                         "bool"]))
def test_inference_on_new_data_of_any_size(fitted, n, d, dtype):
    rng = np.random.default_rng(n * 7 + d)
    Z = (rng.normal(size=(n, 3)) * 3).astype(dtype)
    assert fitted.predict(Z).shape == (n,)
    p = fitted.predict_proba(Z)
    assert p.shape == (n, 2) and np.all(np.isfinite(p))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-10)
    assert fitted.score_samples(Z).shape == (n,)
    if d != 3:
        with pytest.raises(ValueError, match=f"X has {d} features"):
            fitted.predict(rng.normal(size=(n, d)))


# ---------------------------------------------------------------- bad X
BAD_X = [
    pytest.param(lambda X: np.where(np.arange(X.size).reshape(X.shape) == 5, np.inf, X),
                 ValueError, "infinity", id="inf"),
    pytest.param(lambda X: np.where(np.arange(X.size).reshape(X.shape) == 5, -np.inf, X),
                 ValueError, "infinity", id="-inf"),
    pytest.param(lambda X: X[:, 0], ValueError, "Expected 2D array, got 1D", id="1d"),
    pytest.param(lambda X: X[None], ValueError, "dim 3", id="3d"),
    pytest.param(lambda X: np.float64(1.0), ValueError, "2D array", id="scalar"),
    pytest.param(lambda X: X[:1], ValueError, "sample", id="one-sample"),
    pytest.param(lambda X: X[:0], ValueError, "sample", id="no-samples"),
    pytest.param(lambda X: X[:, :0], ValueError, "feature", id="no-features"),
    pytest.param(lambda X: X.astype(str).astype(object) + "x", ValueError, "numeric|float",
                 id="object-strings"),
    pytest.param(lambda X: np.full(X.shape, "abc"), ValueError, "numeric|float",
                 id="str-array"),
    pytest.param(lambda X: [["a", "b", "c"]] * 10, ValueError, "numeric|float",
                 id="list-of-strings"),
    pytest.param(lambda X: X + 1j, ValueError, "[Cc]omplex", id="complex"),
    pytest.param(lambda X: None, ValueError, "None", id="none"),
    pytest.param(lambda X: [[1.0, 2.0], [3.0]], ValueError, "could not be converted",
                 id="ragged"),
    pytest.param(lambda X: X.astype("datetime64[s]"), TypeError, "dtype", id="datetime"),
]


@pytest.mark.parametrize("make_bad, exc, match", BAD_X)
def test_bad_X_in_fit(X, make_bad, exc, match):
    with pytest.raises(exc, match=match):
        GM(2).fit(make_bad(X))


@pytest.mark.parametrize("make_bad, exc, match",
                         [p for p in BAD_X if p.id not in ("one-sample", "ragged")])
def test_bad_X_in_predict(X, fitted, make_bad, exc, match):
    bad = make_bad(X)
    for method in ("predict", "predict_proba", "score_samples", "score"):
        with pytest.raises(exc, match=match):
            getattr(fitted, method)(bad)


def test_object_array_with_a_dict_is_a_type_error(X):
    """scikit-learn raises TypeError here (check_dtype_object)."""
    bad = X.astype(object)
    bad[0, 0] = {"foo": "bar"}
    with pytest.raises(TypeError, match="argument must be a string.* number"):
        GM(2).fit(bad)


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_sparse_X_is_refused(X, fmt):
    sparse = pytest.importorskip("scipy.sparse")
    S = sparse.random(30, 3, density=0.5, format=fmt, random_state=0)
    with pytest.raises(TypeError, match="[Ss]parse"):
        GM(2).fit(S)
    with pytest.raises(TypeError, match="[Ss]parse"):
        GM(2).fit(X).predict(S)
    with pytest.raises(TypeError, match="[Ss]parse"):
        GM(2).fit(sparse.csr_array(S))


def test_fewer_samples_than_components(X):
    with pytest.raises(ValueError, match="n_samples >= n_components"):
        GM(5).fit(X[:4])


def test_predict_with_wrong_number_of_features(X, fitted):
    for method in ("predict", "predict_proba", "score_samples", "score", "bic", "aic"):
        with pytest.raises(ValueError, match="X has 2 features.*expecting 3 features"):
            getattr(fitted, method)(X[:, :2])


def test_predict_before_fit(X):
    est = GM(2)
    for method in ("predict", "predict_proba", "score_samples", "score", "bic", "aic"):
        with pytest.raises(emfast.NotFittedError, match="not fitted"):
            getattr(est, method)(X)
    with pytest.raises(emfast.NotFittedError):
        est.sample(3)
    # emfast.NotFittedError is caught by the usual except clauses
    assert issubclass(emfast.NotFittedError, ValueError)
    assert issubclass(emfast.NotFittedError, AttributeError)


def test_predict_before_fit_raises_sklearns_not_fitted_error(X):
    """Drop-in: code that catches sklearn.exceptions.NotFittedError must catch emfast's
    (check_estimator's check_estimators_unfitted requires it)."""
    sk_exc = pytest.importorskip("sklearn.exceptions")
    with pytest.raises(sk_exc.NotFittedError):
        GM(2).predict(X)


# ---------------------------------------------------------------- bad parameters
BAD_PARAMS = [
    ("covariance_type", "bogus", ValueError, "covariance_type"),
    ("covariance_type", None, ValueError, "covariance_type"),
    ("init_params", "x", ValueError, "init_params"),
    ("n_components", 0, ValueError, "n_components"),
    ("n_components", -1, ValueError, "n_components"),
    ("n_components", 2.5, TypeError, "n_components"),
    ("n_components", "2", TypeError, "n_components"),
    ("tol", -1, ValueError, "tol"),
    ("tol", np.nan, ValueError, "tol"),
    ("tol", "a", TypeError, "tol"),
    ("reg_covar", -1e-3, ValueError, "reg_covar"),
    ("max_iter", -1, ValueError, "max_iter"),
    ("max_iter", 1.5, TypeError, "max_iter"),
    ("n_init", 0, ValueError, "n_init"),
    ("backend", "x", ValueError, "backend"),
    ("backend", None, ValueError, "backend"),
    ("n_threads", 0, ValueError, "n_threads"),
    ("n_threads", -2, ValueError, "n_threads"),
    ("n_threads", "two", TypeError, "n_threads"),
    ("n_threads", 1.5, TypeError, "n_threads"),
    ("warm_start", "yes", TypeError, "warm_start"),
    ("verbose", -1, ValueError, "verbose"),
    ("verbose_interval", 0, ValueError, "verbose_interval"),
    ("random_state", "seed", ValueError, "RandomState"),
]


@pytest.mark.parametrize("name, value, exc, match", BAD_PARAMS,
                         ids=[f"{p[0]}={p[1]!r}" for p in BAD_PARAMS])
def test_bad_parameter_values(X, name, value, exc, match):
    est = GM(**{"n_components": 2, name: value})  # the constructor only stores values
    assert est.get_params()[name] is value
    with pytest.raises(exc, match=match):
        est.fit(X)


def test_unknown_constructor_and_set_params_argument():
    with pytest.raises(TypeError):
        GM(2, bogus=1)
    with pytest.raises(ValueError, match="Invalid parameter 'bogus'"):
        GM(2).set_params(bogus=1)


# ---------------------------------------------------------------- bad init arrays
def _inits(K, D, ct):
    return dict(
        weights_init=np.full(K, 1.0 / K),
        means_init=np.arange(K * D, dtype=float).reshape(K, D),
        precisions_init={"full": np.stack([np.eye(D)] * K), "tied": np.eye(D),
                         "diag": np.ones((K, D)), "spherical": np.ones(K)}[ct])


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_good_inits_are_accepted_and_not_modified(X, covariance_type):
    inits = _inits(2, 3, covariance_type)
    copies = {k: v.copy() for k, v in inits.items()}
    ctx = _quiet()
    try:
        est = GM(2, covariance_type=covariance_type, **inits).fit(X)
    finally:
        ctx.__exit__(None, None, None)
    for k in inits:
        np.testing.assert_array_equal(inits[k], copies[k])
        assert est.get_params()[k] is inits[k]
    # fitted parameters are not views of the user's arrays
    assert not np.shares_memory(est.means_, inits["means_init"])
    assert not np.shares_memory(est.weights_, inits["weights_init"])


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_inits_with_wrong_shape(X, covariance_type):
    good = _inits(2, 3, covariance_type)
    wrong = _inits(3, 3, covariance_type)
    for name in good:
        if good[name].shape == wrong[name].shape:  # tied precisions do not depend on K
            continue
        with pytest.raises(ValueError, match=f"'{name}'.*shape"):
            GM(2, covariance_type=covariance_type, **{name: wrong[name]}).fit(X)
    wrong_d = _inits(2, 4, covariance_type)
    for name in ("means_init", "precisions_init"):
        if good[name].shape == wrong_d[name].shape:  # spherical precisions: (K,)
            continue
        with pytest.raises(ValueError, match=f"'{name}'.*shape"):
            GM(2, covariance_type=covariance_type, **{name: wrong_d[name]}).fit(X)


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_precisions_init_not_positive_definite(X, covariance_type):
    K, D = 2, 3
    bad = {"full": np.stack([np.eye(D), np.diag([1.0, -1.0, 1.0])]),
           "tied": np.diag([1.0, 0.0, 1.0]),
           "diag": np.array([[1.0, 1.0, 1.0], [1.0, -2.0, 1.0]]),
           "spherical": np.array([1.0, 0.0])}[covariance_type]
    with pytest.raises(ValueError, match="positive"):
        GM(K, covariance_type=covariance_type, precisions_init=bad).fit(X)
    if covariance_type in ("full", "tied"):
        asym = np.eye(D) + np.triu(np.ones((D, D)), 1) * 0.3
        if covariance_type == "full":
            asym = np.stack([asym, np.eye(D)])
        with pytest.raises(ValueError, match="symmetric"):
            GM(K, covariance_type=covariance_type, precisions_init=asym).fit(X)


@pytest.mark.parametrize("value, match", [
    (np.array([0.3, 0.3]), "normalized"),
    (np.array([0.7, 0.7]), "normalized"),
    (np.array([1.5, -0.5]), r"range \[0, 1\]"),
    (np.array([-0.1, 1.1]), r"range \[0, 1\]"),
    (np.array([np.nan, 0.5]), "NaN"),
    (np.array([0.5, 0.25, 0.25]), "shape"),
    (np.array(["a", "b"]), "numeric"),
])
def test_bad_weights_init(X, value, match):
    with pytest.raises(ValueError, match=match):
        GM(2, weights_init=value).fit(X)


def test_non_finite_means_init(X):
    with pytest.raises(ValueError, match="means_init.*NaN or infinity"):
        GM(2, means_init=np.array([[0.0, 0, 0], [np.inf, 0, 0]])).fit(X)


# ---------------------------------------------------------------- bad sample_weight
@pytest.mark.parametrize("make_sw, match", [
    (lambda n: -np.ones(n), "Negative"),
    (lambda n: np.r_[-1.0, np.ones(n - 1)], "Negative"),
    (lambda n: np.zeros(n), "all zero"),
    (lambda n: np.ones(n - 1), r"sample_weight.shape.*expected"),
    (lambda n: np.ones(n + 1), r"sample_weight.shape.*expected"),
    (lambda n: np.ones((n, 1)), r"sample_weight.shape.*expected"),
    (lambda n: np.r_[np.nan, np.ones(n - 1)], "NaN"),
    (lambda n: np.r_[np.inf, np.ones(n - 1)], "infinity"),
    (lambda n: np.array(["a"] * n), "numeric"),
    (lambda n: np.r_[1.0, np.zeros(n - 1)], "positive sample_weight"),
    (lambda n: -1.0, "Negative"),
])
def test_bad_sample_weight(X, make_sw, match):
    sw = make_sw(len(X))
    with pytest.raises(ValueError, match=match):
        GM(2).fit(X, sample_weight=sw)
    with pytest.raises(ValueError, match=match):
        GM(2).fit_predict(X, sample_weight=sw)


def test_sample_weight_list_and_int_are_accepted(X):
    a = GM(2, random_state=0).fit(X, sample_weight=[1] * len(X))
    b = GM(2, random_state=0).fit(X)
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-12)


# ---------------------------------------------------------------- inputs left alone
@pytest.mark.parametrize("covariance_type", COV_TYPES)
@pytest.mark.parametrize("layout", ["C", "F", "strided", "float32", "int", "list"])
def test_inputs_are_never_modified(covariance_type, layout):
    base, _, _ = make_blobs(n_samples=80, n_features=3, n_components=2, seed=4)
    X = {"C": base.copy(), "F": np.asfortranarray(base), "strided": np.repeat(base, 2, 1)[:, ::2],
         "float32": base.astype(np.float32), "int": (base * 10).astype(np.int64),
         "list": base.tolist()}[layout]
    sw = np.random.default_rng(0).uniform(0.2, 2.0, size=len(base))
    inits = _inits(2, 3, covariance_type)
    inits["means_init"] = base[:2].copy()
    X_copy = [row[:] for row in X] if layout == "list" else X.copy()
    sw_copy = sw.copy()
    init_copies = {k: v.copy() for k, v in inits.items()}
    ctx = _quiet()
    try:
        est = GM(2, covariance_type=covariance_type, **inits).fit(X, sample_weight=sw)
        est.fit_predict(X, sample_weight=sw)
        est.predict(X), est.predict_proba(X), est.score_samples(X), est.bic(X)
        GM(2, covariance_type=covariance_type, init_params="random_from_data",
           random_state=0).fit(X, sample_weight=sw)
    finally:
        ctx.__exit__(None, None, None)
    if layout == "list":
        assert X == X_copy
    else:
        np.testing.assert_array_equal(X, X_copy)
        assert X.dtype == X_copy.dtype
    np.testing.assert_array_equal(sw, sw_copy)
    for k in inits:
        np.testing.assert_array_equal(inits[k], init_copies[k])


def test_non_contiguous_and_float32_input_give_the_same_fit():
    base, _, _ = make_blobs(n_samples=200, n_features=3, n_components=2, seed=4)
    ref = GM(2, random_state=0).fit(base)
    for X in (np.asfortranarray(base), np.repeat(base, 2, 1)[:, ::2], base.tolist()):
        est = GM(2, random_state=0).fit(X)
        np.testing.assert_array_equal(est.means_, ref.means_)


# ---------------------------------------------------------------- scale of the weights
@pytest.mark.parametrize("covariance_type", COV_TYPES)
@pytest.mark.parametrize("scale", [1e-16, 1e-300, 1e300])
def test_fit_does_not_depend_on_the_scale_of_sample_weight(backend, covariance_type, scale):
    """A fixed epsilon added to the weighted counts once dominated tiny uniform weights."""
    X = make_blobs(n_samples=150, n_features=3, n_components=3, seed=2)[0]
    kw = dict(covariance_type=covariance_type, random_state=0, backend=backend)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = GM(3, **kw).fit(X)
        b = GM(3, **kw).fit(X, sample_weight=scale)
        sw = np.random.default_rng(0).uniform(0.5, 2.0, size=len(X))
        c = GM(3, **kw).fit(X, sample_weight=sw)
        d = GM(3, **kw).fit(X, sample_weight=sw * scale)
    for x, y in ((a, b), (c, d)):
        assert x.n_iter_ == y.n_iter_
        np.testing.assert_allclose(x.lower_bounds_, y.lower_bounds_, rtol=1e-12, atol=1e-12)
        for name in ("weights_", "means_", "covariances_"):
            np.testing.assert_allclose(getattr(x, name), getattr(y, name), rtol=1e-10,
                                       atol=1e-12, err_msg=name)


def test_sample_weight_is_scaled_exactly_and_not_modified():
    from emfast._validation import check_sample_weight
    sw = np.array([3.0, 1e-300, 5.0, 0.0])
    held = sw.copy()
    out = check_sample_weight(sw, 4)
    np.testing.assert_array_equal(sw, held)
    ratio = out[out > 0] / sw[sw > 0]
    assert np.all(ratio == ratio[0])                       # one factor for all
    assert np.frexp(ratio[0])[0] == 0.5                     # a power of two: exact
    assert 2 ** -0.5 <= out.mean() <= 2 ** 0.5
    huge = check_sample_weight(np.full(10, 1e308), 10)      # the sum would overflow
    np.testing.assert_array_equal(huge, np.ones(10) * huge[0])
    assert np.isfinite(huge.sum())


# ---------------------------------------------------------------- magnitude of X
def test_values_too_large_to_square_are_refused_alike_by_both_backends(X):
    big = X * 1e300
    messages = set()
    for backend in BACKENDS:
        with pytest.raises(ValueError, match="magnitude") as info:
            GM(2, backend=backend).fit(big)
        messages.add(str(info.value))
        model = GM(2, random_state=0, backend=backend).fit(X)
        for method in ("predict", "predict_proba", "score_samples", "score"):
            with pytest.raises(ValueError, match="magnitude"):
                getattr(model, method)(big)
    assert len(messages) == 1


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_large_but_squarable_values_give_the_rescaled_fit(backend, covariance_type):
    X = make_blobs(n_samples=150, n_features=2, n_components=2, seed=3)[0]
    c = 1e140
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = GM(2, covariance_type=covariance_type, random_state=0, backend=backend).fit(X)
        b = GM(2, covariance_type=covariance_type, random_state=0, backend=backend,
               reg_covar=1e-6 * c * c).fit(X * c)
    np.testing.assert_allclose(b.means_ / c, a.means_, rtol=1e-9)
    np.testing.assert_allclose(b.predict_proba(X * c), a.predict_proba(X), atol=1e-9)
    np.testing.assert_allclose(b.lower_bound_ + X.shape[1] * np.log(c), a.lower_bound_,
                               rtol=1e-9)


# ---------------------------------------------------------------- public kernels: empty axes
def test_gaussian_kernels_refuse_empty_axes():
    from isolated import assert_all_raise, run_cases
    results = run_cases(f"""
        for b in {list(BACKENDS)!r}:
            for ct, pc0 in (("full", np.zeros((2, 0, 0))), ("diag", np.zeros((2, 0)))):
                X0, m0 = np.zeros((30, 0)), np.zeros((2, 0))
                case(f"{{b}} log_prob D=0 {{ct}}", lambda: k.gaussian_log_prob(
                    X0, m0, pc0, ct, np.zeros(2), backend=b))
                case(f"{{b}} estep D=0 {{ct}}", lambda: k.gaussian_estep_stats(
                    X0, m0, pc0, ct, np.zeros(2), backend=b))
                case(f"{{b}} weighted D=0 {{ct}}", lambda: k.gaussian_weighted_stats(
                    X0, np.ones((30, 2)), m0, ct, backend=b))
            X, m = np.zeros((30, 2)), np.zeros((0, 2))
            for ct, pc in (("full", np.zeros((0, 2, 2))), ("diag", np.zeros((0, 2))),
                           ("spherical", np.zeros(0)), ("tied", np.eye(2))):
                case(f"{{b}} log_prob K=0 {{ct}}", lambda: k.gaussian_log_prob(
                    X, m, pc, ct, np.zeros(0), backend=b))
                case(f"{{b}} resp K=0 {{ct}}", lambda: k.gaussian_log_prob(
                    X, m, pc, ct, np.zeros(0), responsibilities=True, backend=b))
                case(f"{{b}} estep K=0 {{ct}}", lambda: k.gaussian_estep_stats(
                    X, m, pc, ct, np.zeros(0), backend=b))
                case(f"{{b}} weighted K=0 {{ct}}", lambda: k.gaussian_weighted_stats(
                    X, np.zeros((30, 0)), m, ct, backend=b))
    """)
    assert len(results) == len(BACKENDS) * 22
    assert_all_raise(results, "ValueError", "")
    for name, out in results.items():
        assert ("no features" in out) == ("D=0" in name), (name, out)
        assert ("no components" in out) == ("K=0" in name), (name, out)
