"""EMImputer: the maximum-likelihood normal of data with missing values, and imputation."""

import pickle

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy import optimize, stats

from emfast.impute import EMImputer


def correlated(N, D=4, seed=0, rho=0.7):
    rng = np.random.default_rng(seed)
    cov = rho ** np.abs(np.subtract.outer(np.arange(D), np.arange(D))) * np.linspace(1, 3, D)
    cov = 0.5 * (cov + cov.T) + 0.1 * np.eye(D)
    mean = np.arange(D, dtype=float)
    return rng.multivariate_normal(mean, cov, size=N), mean, cov, rng


def mcar(X, frac, rng):
    Xm = X.copy()
    Xm[rng.random(X.shape) < frac] = np.nan
    return Xm


def observed_loglik(Xm, mean, cov):
    total = 0.0
    for x in Xm:
        o = ~np.isnan(x)
        if o.any():
            total += stats.multivariate_normal.logpdf(x[o], mean[o], cov[np.ix_(o, o)])
    return total


def test_mle_equals_direct_maximisation(backend):
    """EM's fixed point is the maximiser of the observed-data log-likelihood: found here
    independently by BFGS over the mean and the Cholesky factor of the covariance."""
    X, _, _, rng = correlated(80, D=3, seed=1)
    Xm = mcar(X, 0.25, rng)
    imp = EMImputer(max_iter=5000, tol=1e-15, backend=backend).fit(Xm)
    D = 3
    tril = np.tril_indices(D)

    def unpack(theta):
        L = np.zeros((D, D))
        L[tril] = theta[D:]
        return theta[:D], L @ L.T

    def nll(theta):
        return -observed_loglik(Xm, *unpack(theta))

    L0 = np.linalg.cholesky(np.diag(np.nanvar(Xm, axis=0)))
    theta0 = np.concatenate([np.nanmean(Xm, axis=0), L0[tril]])
    res = optimize.minimize(nll, theta0, method="BFGS", options=dict(gtol=1e-9))
    mean, cov = unpack(res.x)
    np.testing.assert_allclose(imp.mean_, mean, atol=1e-6 * np.abs(mean).max())
    np.testing.assert_allclose(imp.covariance_, cov, atol=1e-6 * np.abs(cov).max())
    assert imp.loglik_ == pytest.approx(-res.fun, rel=1e-9, abs=1e-7)
    assert imp.loglik_ == pytest.approx(observed_loglik(Xm, imp.mean_, imp.covariance_),
                                        rel=1e-12)
    n_obs = np.count_nonzero(~np.isnan(Xm))
    assert imp.loglik_no_constant_ == pytest.approx(imp.loglik_ + 0.5 * n_obs *
                                                    np.log(2 * np.pi), rel=1e-12)


def test_loglik_never_decreases(backend):
    X, _, _, rng = correlated(3000, D=6, seed=2)
    imp = EMImputer(max_iter=200, tol=0.0, backend=backend)
    with pytest.warns(UserWarning, match="did not converge"):
        imp.fit(mcar(X, 0.5, rng))
    h = np.asarray(imp.loglik_history_)
    assert len(h) == 200 and np.all(np.diff(h) >= -1e-12 * np.abs(h[1:]))


@pytest.mark.parametrize("frac", [0.1, 0.3, 0.5])
@pytest.mark.parametrize("mechanism", ["MCAR", "MAR"])
def test_recovers_parameters_and_error_shrinks_with_n(frac, mechanism):
    errors = []
    for N in (500, 20_000):
        X, mean, cov, rng = correlated(N, D=4, seed=3)
        Xm = X.copy()
        if mechanism == "MCAR":
            Xm[rng.random(X.shape) < frac] = np.nan
        else:  # missing in columns 1.. more often where the always-observed column 0 is high
            p = np.clip(2 * frac * (X[:, :1] > np.median(X[:, 0])), 0, 0.95)
            Xm[:, 1:][rng.random((N, 3)) < p] = np.nan
        imp = EMImputer(max_iter=1000, tol=1e-10).fit(Xm)
        errors.append(max(np.abs(imp.mean_ - mean).max(), np.abs(imp.covariance_ - cov).max()))
    assert errors[1] < 0.1
    assert errors[1] < errors[0] / 2


def test_mnar_is_biased():
    """Documented limitation: when a value's own size makes it missing (MNAR), the estimate
    is biased, however many rows there are."""
    X, mean, _, rng = correlated(50_000, D=3, seed=4)
    Xm = X.copy()
    Xm[X[:, 1] > mean[1] + 0.5, 1] = np.nan     # large values of column 1 go missing
    imp = EMImputer(max_iter=1000, tol=1e-10).fit(Xm)
    assert imp.mean_[1] < mean[1] - 0.2


def test_transform_beats_column_means(backend):
    X, _, _, rng = correlated(5000, D=5, seed=5, rho=0.9)
    Xm = mcar(X, 0.3, rng)
    miss = np.isnan(Xm)
    filled = EMImputer(backend=backend).fit(Xm).transform(Xm)
    colmean = np.where(miss, np.nanmean(Xm, axis=0), Xm)
    rmse = lambda F: np.sqrt(np.mean((F[miss] - X[miss]) ** 2))  # noqa: E731
    assert rmse(filled) < 0.7 * rmse(colmean)
    np.testing.assert_array_equal(filled[~miss], Xm[~miss])


def test_fit_transform_equals_fit_then_transform(backend):
    X, _, _, rng = correlated(1000, seed=6)
    Xm = mcar(X, 0.3, rng)
    a = EMImputer(backend=backend).fit_transform(Xm)
    b = EMImputer(backend=backend).fit(Xm).transform(Xm)
    np.testing.assert_allclose(a, b, rtol=1e-14)


def test_backends_and_thread_counts_agree():
    X, _, _, rng = correlated(20_000, D=5, seed=7)
    Xm = mcar(X, 0.3, rng)
    fits = {(b, t): EMImputer(backend=b, n_threads=t, tol=1e-8).fit(Xm)
            for b in ("cython", "numba") for t in (1, 2)}
    for b in ("cython", "numba"):
        np.testing.assert_array_equal(fits[b, 1].covariance_, fits[b, 2].covariance_)
        assert fits[b, 1].loglik_ == fits[b, 2].loglik_
    np.testing.assert_allclose(fits["cython", 1].covariance_, fits["numba", 1].covariance_,
                               rtol=1e-10)


def test_rows_missing_everywhere_are_skipped_and_imputed_with_the_mean():
    X, _, _, rng = correlated(500, seed=8)
    Xm = mcar(X, 0.2, rng)
    with_empty = np.vstack([Xm, np.full((3, X.shape[1]), np.nan)])
    a = EMImputer().fit(Xm)
    b = EMImputer().fit(with_empty)
    np.testing.assert_allclose(a.covariance_, b.covariance_, rtol=1e-12)
    np.testing.assert_allclose(b.transform(with_empty)[-3:], np.tile(b.mean_, (3, 1)))


def test_float32_and_input_untouched():
    X, _, _, rng = correlated(800, seed=9)
    Xm = mcar(X, 0.3, rng).astype(np.float32)
    before = Xm.copy()
    imp = EMImputer().fit(Xm)
    out = imp.transform(Xm)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(Xm, before)
    ref = EMImputer().fit(Xm.astype(np.float64))
    np.testing.assert_allclose(imp.covariance_, ref.covariance_, rtol=1e-12)


def test_sample_imputations():
    X, _, _, rng = correlated(2000, D=4, seed=10)
    Xm = mcar(X, 0.3, rng)
    miss = np.isnan(Xm)
    imp = EMImputer(random_state=0).fit(Xm)
    draws = imp.sample_imputations(Xm, n_imputations=4)
    assert draws.shape == (4,) + Xm.shape
    for d in draws:
        np.testing.assert_array_equal(d[~miss], Xm[~miss])
        assert not np.isnan(d).any()
    np.testing.assert_array_equal(draws, imp.sample_imputations(Xm, n_imputations=4))
    assert not np.array_equal(draws[0], draws[1])
    # draws scatter around the conditional means by about the conditional spread
    spread = (draws[:, miss] - imp.transform(Xm)[miss]).std()
    assert 0.2 < spread < 2.0


def test_ridge_keeps_wide_data_fittable():
    rng = np.random.default_rng(11)
    X = rng.normal(size=(6, 10))        # 6 rows cannot span 10 dimensions
    with pytest.raises(ValueError, match="ridge"):
        EMImputer(max_iter=500).fit(X)
    X[rng.random(X.shape) < 0.3] = np.nan
    X[:, 0] = rng.normal(size=6)        # no column empty or constant
    imp = EMImputer(ridge=2.0, max_iter=500).fit(X)
    assert np.all(np.linalg.eigvalsh(imp.covariance_) > 0)
    assert np.isfinite(imp.transform(X)).all()


@pytest.mark.parametrize("X,match", [
    (np.array([[1.0, np.inf], [2.0, 1.0], [0.0, 3.0]]), "infinity"),
    (np.array([[1.0, np.nan], [2.0, np.nan], [0.0, np.nan]]), "missing in every row"),
    (np.array([[1.0, 5.0], [2.0, 5.0], [0.0, np.nan]]), "constant"),
    (np.zeros((3, 0)), "0 feature"),
    (np.zeros(3), "2D"),
])
def test_bad_data(X, match):
    with pytest.raises(ValueError, match=match):
        EMImputer().fit(X)


@pytest.mark.parametrize("param,value,exc", [("max_iter", 0, ValueError),
                                              ("tol", -1.0, ValueError),
                                              ("ridge", -0.5, ValueError),
                                              ("backend", "fortran", ValueError),
                                              ("max_iter", 2.5, TypeError)])
def test_bad_parameters(param, value, exc):
    X, _, _, _ = correlated(50)
    with pytest.raises(exc, match=param):
        EMImputer(**{param: value}).fit(X)


def test_transform_checks():
    X, _, _, rng = correlated(200, D=3)
    imp = EMImputer()
    with pytest.raises(Exception, match="not fitted"):
        imp.transform(X)
    imp.fit(mcar(X, 0.2, rng))
    with pytest.raises(ValueError, match="features"):
        imp.transform(X[:, :2])


def test_pickle_clone_and_pandas_output():
    pd = pytest.importorskip("pandas")
    from sklearn.base import clone

    X, _, _, rng = correlated(300, D=3, seed=12)
    df = pd.DataFrame(mcar(X, 0.2, rng), columns=["a", "b", "c"], index=np.arange(300) + 7)
    imp = EMImputer(tol=1e-9).set_output(transform="pandas")
    out = imp.fit_transform(df)
    assert list(out.columns) == ["a", "b", "c"] and (out.index == df.index).all()
    assert list(imp.feature_names_in_) == ["a", "b", "c"]
    again = pickle.loads(pickle.dumps(imp))
    pd.testing.assert_frame_equal(again.transform(df), imp.transform(df))
    assert clone(imp).get_params() == imp.get_params()
    assert isinstance(EMImputer().fit(df).transform(df), np.ndarray)


@settings(max_examples=25, deadline=None)
@given(N=st.integers(1, 30), D=st.integers(1, 4), frac=st.floats(0.0, 0.6),
       seed=st.integers(0, 2**16))
def test_any_small_data_fits_or_explains(N, D, frac, seed):
    """Whatever the shape and the pattern of NaN, fit either works (and then imputes every
    missing value with a finite number) or raises a ValueError that says what is wrong."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, D))
    X[rng.random((N, D)) < frac] = np.nan
    try:
        imp = EMImputer(max_iter=50, ridge=1.0).fit(X)
    except ValueError as exc:
        assert any(w in str(exc) for w in ("constant", "missing in every row",
                                           "positive definite", "minimum of 2"))
        return
    assert np.isfinite(imp.transform(X)).all()
