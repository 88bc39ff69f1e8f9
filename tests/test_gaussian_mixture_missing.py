"""GaussianMixture on data with missing values (NaN): every covariance type, both backends."""

import numpy as np
import pytest

from conftest import COV_TYPES, make_blobs
from emfast import GaussianMixture
from emfast.impute import EMImputer
from emfast.mixture import _gaussian as G
from emfast.mixture._gaussian_missing import MissingEStep


def with_nan(X, fraction, seed=0):
    rng = np.random.default_rng(seed)
    Xm = X.copy()
    Xm[rng.random(X.shape) < fraction] = np.nan
    return Xm


@pytest.fixture(scope="module")
def blobs():
    X, y, _ = make_blobs(n_samples=1500, n_features=4, n_components=3, seed=3)
    return X, y


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_estep_on_complete_data_equals_the_complete_estep(backend, covariance_type):
    """The missing-value E-step with its full-matrix expansion and reduction gives the
    complete-data statistics of every covariance type when nothing is missing."""
    X, _ = make_blobs(n_samples=700, n_features=5, n_components=3, seed=1)[:2]
    params = GaussianMixture(3, covariance_type=covariance_type, backend=backend,
                             random_state=0).fit(X)._params()
    want = G.EStep(X, None, covariance_type, 3, backend, 2, float(len(X)))(params)
    got = MissingEStep(X, None, 3, backend, 2, float(len(X)))(params)
    np.testing.assert_allclose(got.loglik, want.loglik, rtol=1e-10)
    for name in ("nk", "s1", "s2"):
        a, b = getattr(got, name), getattr(want, name)
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9 * len(X), err_msg=name)


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_fit_and_inference_accept_nan(backend, covariance_type, blobs):
    X, y = blobs
    Xm = with_nan(X, 0.2)
    gm = GaussianMixture(3, covariance_type=covariance_type, backend=backend, random_state=0,
                         tol=1e-6, max_iter=300).fit(Xm)
    assert gm.converged_
    assert np.all(np.diff(gm.lower_bounds_) > -1e-9)
    complete = GaussianMixture(3, covariance_type=covariance_type, backend=backend,
                               random_state=0).fit(X)
    # the same clusters as on the complete data, up to the labels' order
    order = [np.argmin(np.abs(complete.means_ - m).sum(axis=1)) for m in gm.means_]
    assert sorted(order) == [0, 1, 2]
    np.testing.assert_allclose(gm.means_, complete.means_[order], atol=0.15)
    proba = gm.predict_proba(Xm)
    assert proba.shape == (len(X), 3) and np.all(np.isfinite(proba))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(gm.predict(Xm), proba.argmax(axis=1))
    assert (np.array(order)[gm.predict(Xm)] == complete.predict(X)).mean() > 0.97
    scores = gm.score_samples(Xm)
    assert np.all(np.isfinite(scores))
    assert gm.score(Xm) == pytest.approx(scores.mean())
    assert np.isfinite(gm.bic(Xm)) and np.isfinite(gm.aic(Xm))
    # complete rows are scored exactly as without NaN anywhere
    full = ~np.isnan(Xm).any(axis=1)
    np.testing.assert_allclose(scores[full], gm.score_samples(X[full]), rtol=1e-10)


def test_one_component_is_the_multivariate_normal_em(blobs):
    Xm = with_nan(blobs[0], 0.3, seed=4)
    gm = GaussianMixture(1, reg_covar=0.0, tol=1e-13, max_iter=5000).fit(Xm)
    imp = EMImputer(tol=1e-13, max_iter=5000).fit(Xm)
    np.testing.assert_allclose(gm.means_[0], imp.mean_, atol=1e-6)
    np.testing.assert_allclose(gm.covariances_[0], imp.covariance_, atol=1e-6)
    assert gm.score(Xm) * len(Xm) == pytest.approx(imp.loglik_, rel=1e-9)
    np.testing.assert_allclose(gm.impute(Xm), imp.transform(Xm), atol=1e-5)


def test_rows_missing_everywhere_are_left_out(backend, blobs):
    X = blobs[0]
    Xm = np.vstack([X, np.full((5, X.shape[1]), np.nan)])
    a = GaussianMixture(3, backend=backend, random_state=0).fit(X)
    b = GaussianMixture(3, backend=backend, random_state=0).fit(Xm)
    np.testing.assert_allclose(b.means_, a.means_, rtol=1e-8)
    np.testing.assert_allclose(b.covariances_, a.covariances_, rtol=1e-7)
    np.testing.assert_allclose(b.predict_proba(Xm[-5:]), np.tile(b.weights_, (5, 1)))


def test_without_nan_nothing_changes(blobs):
    """No NaN: the complete-data kernels, bit for bit (the NaN path is never entered)."""
    X = blobs[0]
    a = GaussianMixture(3, random_state=0).fit(X)
    b = GaussianMixture(3, random_state=0).fit(X.copy())
    np.testing.assert_array_equal(a.means_, b.means_)
    np.testing.assert_array_equal(a.impute(X), X)


def test_impute(backend, blobs):
    X = blobs[0]
    Xm = with_nan(X, 0.25, seed=5)
    miss = np.isnan(Xm)
    gm = GaussianMixture(3, backend=backend, random_state=0).fit(Xm)
    filled = gm.impute(Xm)
    np.testing.assert_array_equal(filled[~miss], Xm[~miss])
    colmean = np.where(miss, np.nanmean(Xm, axis=0), Xm)
    rmse = lambda F: np.sqrt(np.mean((F[miss] - X[miss]) ** 2))  # noqa: E731
    assert rmse(filled) < 0.6 * rmse(colmean)
    assert filled.dtype == X.dtype


def test_thread_counts_agree_with_nan(backend):
    X, _, _ = make_blobs(n_samples=30_000, n_features=5, n_components=4, seed=6)
    Xm = with_nan(X, 0.2, seed=6)
    fits = [GaussianMixture(4, backend=backend, random_state=0, n_threads=t, max_iter=20)
            .fit(Xm) for t in (1, 2)]
    np.testing.assert_array_equal(fits[0].means_, fits[1].means_)
    np.testing.assert_array_equal(fits[0].covariances_, fits[1].covariances_)
    assert fits[0].lower_bound_ == fits[1].lower_bound_


def test_integer_weights_equal_repeated_rows_with_nan(blobs):
    X = blobs[0][:300]
    Xm = with_nan(X, 0.2, seed=7)
    w = np.random.default_rng(7).integers(1, 4, size=len(X))
    start = dict(means_init=X[[0, 100, 200]], weights_init=np.full(3, 1 / 3),
                 precisions_init=np.tile(np.eye(X.shape[1]), (3, 1, 1)))
    with pytest.warns(UserWarning, match="did not converge"):
        a = GaussianMixture(3, max_iter=30, tol=0, **start).fit(Xm, sample_weight=w)
    with pytest.warns(UserWarning, match="did not converge"):
        b = GaussianMixture(3, max_iter=30, tol=0, **start).fit(np.repeat(Xm, w, axis=0))
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-9)
    np.testing.assert_allclose(a.covariances_, b.covariances_, rtol=1e-8)


@pytest.mark.parametrize("X,match", [
    (np.array([[1.0, np.nan], [2.0, np.nan], [0.0, np.nan]]), "missing .* in every row"),
    (np.array([[1.0, np.inf], [2.0, 1.0], [0.0, np.nan]]), "infinity"),
    (np.array([[np.nan, np.nan], [2.0, 1.0], [np.nan, np.nan]]), "n_samples >= n_components"),
])
def test_bad_data_with_nan(X, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(2).fit(X)


def test_input_not_modified(blobs):
    Xm = with_nan(blobs[0], 0.2)
    before = Xm.copy()
    gm = GaussianMixture(3, random_state=0).fit(Xm)
    gm.predict_proba(Xm)
    gm.impute(Xm)
    np.testing.assert_array_equal(Xm, before)


def test_constant_column_and_wide_data_are_regularised():
    """Documented behaviour: reg_covar keeps the covariances positive definite, with NaN as
    without (a constant column gets variance ~reg_covar; more features than rows fit)."""
    rng = np.random.default_rng(8)
    X = rng.normal(size=(200, 4))
    X[:, 2] = 5.0
    X[rng.random(X.shape) < 0.2] = np.nan
    gm = GaussianMixture(2, random_state=0).fit(X)
    assert np.all(gm.covariances_[:, 2, 2] < 1e-5)
    assert np.isfinite(gm.score(X))
    W = rng.normal(size=(8, 12))
    W[rng.random(W.shape) < 0.3] = np.nan
    assert np.isfinite(GaussianMixture(2, random_state=0).fit(W).score(W))
