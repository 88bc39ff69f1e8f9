"""emfast.select_gaussian_mixture: candidates over K and covariance types, BIC / AIC / ICL."""

import math

import numpy as np
import pytest

import emfast
from emfast import GaussianMixture as GM
from emfast import select_gaussian_mixture

pytestmark = pytest.mark.filterwarnings("ignore:Best performing initialization")


@pytest.fixture(scope="module")
def X():
    """Three well-separated clusters of different shapes in 2-D."""
    rng = np.random.RandomState(0)
    parts = [rng.normal(size=(300, 2)) * (0.6, 1.4) + (0, 0),
             rng.normal(size=(250, 2)) @ [[1.0, 0.5], [0.0, 0.8]] + (10, 0),
             rng.normal(size=(350, 2)) * 0.8 + (0, 10)]
    return np.vstack(parts)


@pytest.mark.parametrize("criterion", ["bic", "aic", "icl"])
def test_selection_picks_the_true_number_of_components(X, criterion):
    sel = select_gaussian_mixture(X, range(1, 7), criterion=criterion, random_state=0)
    assert sel.best_params_["n_components"] == 3
    assert sel.best_estimator_ is sel.estimators_[sel.best_index_]
    assert sel.table_[criterion][sel.best_index_] == np.nanmin(sel.table_[criterion])


def test_each_candidate_is_the_fit_alone_and_thread_count_independent(X):
    sel = select_gaussian_mixture(X, [2, 3], ("full", "spherical"), random_state=7,
                                  n_threads=2, max_iter=50)
    one = select_gaussian_mixture(X, [2, 3], ("full", "spherical"), random_state=7,
                                  n_threads=1, max_iter=50)
    assert sel.random_state_ == 7
    for row, est, est1 in zip(sel.table_, sel.estimators_, one.estimators_):
        alone = GM(int(row["n_components"]), covariance_type=str(row["covariance_type"]),
                   random_state=7, max_iter=50).fit(X)
        for name in ("weights_", "means_", "covariances_", "lower_bound_", "n_iter_"):
            assert np.array_equal(getattr(est, name), getattr(alone, name)), name
            assert np.array_equal(getattr(est1, name), getattr(alone, name)), name
    assert np.array_equal(sel.table_, one.table_)


def test_one_kmeans_per_number_of_components(X, monkeypatch):
    from emfast.mixture import _gaussian_mixture
    calls = []
    kmeans = _gaussian_mixture.kmeans

    def counted(X_, K, *args, **kwargs):
        calls.append(K)
        return kmeans(X_, K, *args, **kwargs)

    monkeypatch.setattr(_gaussian_mixture, "kmeans", counted)
    sel = select_gaussian_mixture(X, [2, 3], random_state=0, n_threads=2)
    assert sorted(calls) == [2, 3] and len(sel.table_) == 8
    calls.clear()
    select_gaussian_mixture(X, [2, 3], random_state=0, n_init=2)
    assert sorted(calls) == [2, 2, 3, 3]            # one per restart stream and K


def test_table_rows_and_criteria(X):
    sel = select_gaussian_mixture(X, [1, 3], ("diag", "tied"), random_state=1)
    t = sel.table_
    assert t.dtype.names == ("n_components", "covariance_type", "log_likelihood",
                             "n_parameters", "bic", "aic", "icl", "converged", "n_iter",
                             "error")
    assert [(int(r["n_components"]), str(r["covariance_type"])) for r in t] == [
        (1, "diag"), (1, "tied"), (3, "diag"), (3, "tied")]
    n = len(X)
    for row, est in zip(t, sel.estimators_):
        assert row["error"] == ""
        assert row["n_parameters"] == est._n_parameters()
        assert row["converged"] == est.converged_ and row["n_iter"] == est.n_iter_
        np.testing.assert_allclose(row["log_likelihood"], est.score(X) * n, rtol=1e-12)
        np.testing.assert_allclose(row["bic"], est.bic(X), rtol=1e-12)
        np.testing.assert_allclose(row["aic"], est.aic(X), rtol=1e-12)
        resp = est.predict_proba(X)
        entropy = -np.sum(resp * np.log(np.where(resp > 0, resp, 1.0)))
        np.testing.assert_allclose(row["icl"], est.bic(X) + 2 * entropy, rtol=1e-12)
        # the entropy as L less the expected log-joint: to rounding relative to L
        np.testing.assert_allclose(row["icl"] - row["bic"], 2 * entropy, rtol=1e-9,
                                   atol=1e-12 * abs(row["log_likelihood"]))
    # one component: no entropy, ICL = BIC
    assert t["icl"][0] == t["bic"][0]
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(sel.table_)
    assert list(df["covariance_type"]) == ["diag", "tied", "diag", "tied"]


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_expected_log_joint_from_statistics(X, covariance_type):
    from emfast.mixture import _gaussian as G
    est = GM(3, covariance_type=covariance_type, random_state=0).fit(X)
    params = est._params()
    stats = G.EStep(X, None, covariance_type, 3, "auto", 1, float(len(X)))(params)
    log_joint = est._log_prob(X, norm=False)[0]          # log(w_k N(x_n | k)), (N, K)
    want = np.sum(est.predict_proba(X) * log_joint)
    np.testing.assert_allclose(G.expected_log_joint(params, stats), want, rtol=1e-11)


def test_criteria_with_missing_values(X):
    Xn = X.copy()
    Xn[::7, 1] = np.nan
    sel = select_gaussian_mixture(Xn, [1, 3], ("full",), random_state=0)
    assert sel.best_params_["n_components"] == 3
    est = sel.best_estimator_
    np.testing.assert_allclose(sel.table_["bic"][1], est.bic(Xn), rtol=1e-12)
    assert sel.table_["icl"][1] > sel.table_["bic"][1]


def test_failed_candidates_are_rows_with_the_reason(X):
    sel = select_gaussian_mixture(X[:4], [1, 2, 5], ("diag",), random_state=0)
    bad = sel.table_[2]
    assert "n_samples" in bad["error"] and math.isnan(bad["bic"]) and bad["n_iter"] == -1
    assert sel.estimators_[2] is None and sel.best_index_ in (0, 1)
    with pytest.raises(ValueError, match="no candidate"):
        select_gaussian_mixture(X[:4], [5, 6], ("diag",))


def test_random_state_instance_draws_one_seed(X):
    a = select_gaussian_mixture(X, [2], ("diag",), random_state=np.random.RandomState(3))
    b = select_gaussian_mixture(X, [2], ("diag",), random_state=np.random.RandomState(3))
    assert a.random_state_ == b.random_state_
    assert np.array_equal(a.best_estimator_.means_, b.best_estimator_.means_)


def test_exported_and_params_forwarded(X):
    assert emfast.select_gaussian_mixture is select_gaussian_mixture
    sel = select_gaussian_mixture(X, 2, "full", max_iter=1, random_state=0)
    assert sel.best_estimator_.max_iter == 1 and sel.table_["n_iter"][0] == 1


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(criterion="loglik"), ValueError, "criterion"),
    (dict(n_components=[]), ValueError, "empty"),
    (dict(n_components=[2, 2]), ValueError, "repeated"),
    (dict(n_components=[0]), ValueError, "n_components"),
    (dict(n_components="3"), TypeError, "n_components"),
    (dict(covariance_types=("full", "round")), ValueError, "covariance_type"),
    (dict(covariance_types=()), ValueError, "empty"),
    (dict(covariance_type="full"), TypeError, "covariance_type"),
    (dict(tol=-1.0), ValueError, "tol"),
    (dict(not_a_param=1), TypeError, "not_a_param"),
])
def test_bad_arguments(X, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        select_gaussian_mixture(X, **kwargs)
