"""GaussianMixture(semi_supervised=True).fit(X, y) with partial labels (-1 = unlabelled)."""

import numpy as np
import pytest

from conftest import COV_TYPES
from emfast import GaussianMixture as _GM


def GaussianMixture(*args, **kw):
    return _GM(*args, semi_supervised=True, **kw)


def parallel_bands(N=2000, seed=1):
    """Two long parallel classes: the likelihood alone splits them the wrong way (along the
    long axis); a few labels say which way is meant."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, N)
    X = np.c_[rng.normal(scale=10, size=N), rng.normal(size=N) + 3.0 * truth]
    y = np.where(rng.random(N) < 0.05, truth, -1)
    return X, y, truth


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_five_percent_labels_beat_unsupervised(backend, covariance_type):
    X, y, truth = parallel_bands()
    unsup = GaussianMixture(2, covariance_type=covariance_type, backend=backend,
                            random_state=0).fit(X).predict(X)
    unsup_acc = max(np.mean(unsup == truth), np.mean(unsup != truth))  # best labelling
    semi = GaussianMixture(2, covariance_type=covariance_type, backend=backend,
                           random_state=0).fit(X, y)
    assert np.mean(semi.predict(X) == truth) > unsup_acc + 0.2
    assert np.all(np.diff(semi.lower_bounds_) > -1e-9)


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_all_rows_labelled_is_the_per_class_estimate(backend, covariance_type):
    """Labelled rows keep their component: with every row labelled, one M-step gives the
    labelled classes' weights, means and covariances, and EM stays there."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(600, 3)) * [1.0, 2.0, 0.5]
    y = rng.integers(0, 3, 600)
    X += 4.0 * y[:, None]
    gm = GaussianMixture(3, covariance_type=covariance_type, reg_covar=0.0, backend=backend)
    gm.fit(X, y)
    ref = GaussianMixture(3, covariance_type=covariance_type, reg_covar=0.0,
                          init_params="random_from_data", max_iter=1,
                          weights_init=np.bincount(y) / 600,
                          means_init=np.array([X[y == k].mean(0) for k in range(3)]))
    np.testing.assert_allclose(gm.weights_, np.bincount(y) / 600, rtol=1e-12)
    np.testing.assert_allclose(gm.means_, ref.means_init, rtol=1e-10)
    full = np.array([np.cov(X[y == k].T, bias=True) for k in range(3)])
    want = {"full": full,
            "tied": np.einsum("k,kij->ij", np.bincount(y) / 600, full),
            "diag": np.diagonal(full, axis1=1, axis2=2),
            "spherical": np.diagonal(full, axis1=1, axis2=2).mean(axis=1)}[covariance_type]
    np.testing.assert_allclose(gm.covariances_, want, rtol=1e-9)
    assert gm.n_iter_ <= 2


def test_zero_unlabeled_weight_ignores_the_unlabelled_rows():
    X, y, _ = parallel_bands(seed=3)
    lab = y >= 0
    a = GaussianMixture(2, unlabeled_weight=0.0, reg_covar=0.0).fit(X, y)
    b = GaussianMixture(2, reg_covar=0.0).fit(X[lab], y[lab])
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-10)
    np.testing.assert_allclose(a.covariances_, b.covariances_, rtol=1e-9)


def test_no_labels_is_the_unsupervised_fit():
    X, _, _ = parallel_bands(seed=4)
    a = GaussianMixture(2, random_state=0).fit(X)
    b = GaussianMixture(2, random_state=0).fit(X, np.full(len(X), -1))
    np.testing.assert_array_equal(a.means_, b.means_)
    np.testing.assert_array_equal(a.covariances_, b.covariances_)


def test_labels_with_nan_and_weights(backend):
    X, y, truth = parallel_bands(N=3000, seed=5)
    rng = np.random.default_rng(5)
    Xm = X.copy()
    Xm[rng.random(X.shape) < 0.1] = np.nan
    gm = GaussianMixture(2, backend=backend, random_state=0).fit(Xm, y)
    observed = ~np.isnan(Xm[:, 1])            # the class shows in the second feature only
    assert np.mean(gm.predict(Xm)[observed] == truth[observed]) > 0.85
    w = rng.integers(1, 3, len(X))
    start = dict(weights_init=[0.5, 0.5], means_init=[[0, 0], [0, 3]],
                 precisions_init=np.tile(np.eye(2), (2, 1, 1)))
    a = GaussianMixture(2, backend=backend, **start).fit(Xm, y, sample_weight=w)
    b = GaussianMixture(2, backend=backend, **start).fit(np.repeat(Xm, w, axis=0),
                                                          np.repeat(y, w))
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-8)


def test_thread_counts_agree(backend):
    X, y, _ = parallel_bands(N=40_000, seed=6)
    fits = [GaussianMixture(2, backend=backend, random_state=0, n_threads=t).fit(X, y)
            for t in (1, 2)]
    np.testing.assert_array_equal(fits[0].means_, fits[1].means_)
    assert fits[0].lower_bound_ == fits[1].lower_bound_


@pytest.mark.parametrize("y,match", [
    (np.zeros(5, dtype=int), "one label per row"),
    (np.full(10, 2), r"in \[0, 1\]"),
    (np.full(10, -2), r"-1 \(unlabelled\)"),
    (np.full(10, 0.5), "integer labels"),
    (np.array(["a"] * 10), "integer labels"),
    (np.zeros((10, 1), dtype=int), "1-D"),
])
def test_bad_labels(y, match):
    X = np.random.default_rng(0).normal(size=(10, 2))
    with pytest.raises(ValueError, match=match):
        GaussianMixture(2).fit(X, y)


def test_bad_unlabeled_weight():
    X = np.random.default_rng(0).normal(size=(10, 2))
    with pytest.raises(ValueError, match="unlabeled_weight"):
        GaussianMixture(2, unlabeled_weight=-1.0).fit(X)


def test_y_is_ignored_unless_asked_for():
    """scikit-learn code passes class labels as y (pipelines, cross-validation): ignored,
    with a warning when they look like partial labels."""
    X, y, _ = parallel_bands(seed=7)
    a = _GM(2, random_state=0).fit(X)
    b = _GM(2, random_state=0).fit(X, np.arange(len(X)) % 5)
    np.testing.assert_array_equal(a.means_, b.means_)
    with pytest.warns(UserWarning, match="semi_supervised=True"):
        c = _GM(2, random_state=0).fit(X, y)
    np.testing.assert_array_equal(a.means_, c.means_)
    with pytest.raises(TypeError, match="semi_supervised"):
        _GM(2, semi_supervised="yes").fit(X)
