"""HMMs with Gaussian emissions on frames with missing values (NaN), and partial labels."""

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from conftest import COV_TYPES
from emfast.hmm import CategoricalHMM, GaussianHMM, GMMHMM
from emfast.hmm import _emissions as E


def sticky_hmm(T=1500, seed=0):
    rng = np.random.default_rng(seed)
    means = np.array([[0.0, 0.0, 0.0], [3.0, 3.0, 0.0], [0.0, 3.0, 3.0]])
    trans = np.full((3, 3), 0.05) + 0.85 * np.eye(3)
    z = np.zeros(T, dtype=int)
    for t in range(1, T):
        z[t] = rng.choice(3, p=trans[z[t - 1]])
    return means[z] + rng.normal(size=(T, 3)), z, rng


def never_decreases(history):
    h = np.asarray(list(history))
    return bool(np.all(np.diff(h) > -1e-9 * np.abs(h[1:])))


def with_nan(X, fraction, rng):
    Xm = X.copy()
    Xm[rng.random(X.shape) < fraction] = np.nan
    return Xm


def forward_loglik(log_emission, lengths, startprob, transmat):
    """Plain log-space forward algorithm, summed over sequences."""
    total, start = 0.0, 0
    for n in lengths:
        a = np.log(startprob) + log_emission[start]
        for t in range(start + 1, start + n):
            a = logsumexp(a[:, None] + np.log(transmat), axis=0) + log_emission[t]
        total += logsumexp(a)
        start += n
    return total


def marginal_log_densities(X, means, covs, weights=None):
    """log sum_m w_m N(x_O; mu_m,O, Sigma_m,OO) of every frame, per state (scipy)."""
    out = np.zeros((len(X), len(means)))
    for t, x in enumerate(X):
        o = ~np.isnan(x)
        if not o.any():
            continue
        for k in range(len(means)):
            mk = np.atleast_2d(means[k])
            ck = covs[k] if np.ndim(covs[k]) == 3 else covs[k][None]
            wk = np.ones(1) if weights is None else weights[k]
            out[t, k] = logsumexp([np.log(w) + multivariate_normal.logpdf(
                x[o], m[o], c[np.ix_(o, o)]) for w, m, c in zip(wk, mk, ck)])
    return out


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_gaussian_hmm_with_nan(backend, covariance_type):
    X, _, rng = sticky_hmm()
    Xm = with_nan(X, 0.2, rng)
    Xm[5] = np.nan
    lengths = [500, 500, 500]
    h = GaussianHMM(3, covariance_type=covariance_type, backend=backend, random_state=0,
                    n_iter=30).fit(Xm, lengths)
    assert never_decreases(h.monitor_.history)
    le = marginal_log_densities(Xm, h.means_, h.covars_)
    assert h.score(Xm, lengths) == pytest.approx(
        forward_loglik(le, lengths, h.startprob_, h.transmat_), rel=1e-9)
    ll, post = h.score_samples(Xm, lengths)
    assert np.all(np.isfinite(post)) and ll == pytest.approx(h.score(Xm, lengths))
    assert h.predict(Xm, lengths).shape == (1500,)
    assert np.isfinite(h.decode(Xm, lengths)[0])
    filtered = h.filter(Xm, lengths)
    assert filtered.shape == (1500, 3) and np.allclose(filtered.sum(axis=1), 1.0)


def test_frames_missing_everywhere_count_through_transitions_only():
    X, _, _ = sticky_hmm(T=300)
    h = GaussianHMM(3, random_state=0, n_iter=5).fit(X)
    empty = np.full((40, 3), np.nan)
    assert h.score(empty) == pytest.approx(0.0, abs=1e-9)
    post = h.predict_proba(empty)
    np.testing.assert_allclose(post[0], h.startprob_, rtol=1e-9)


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_missing_value_pieces_equal_the_complete_ones(backend, covariance_type):
    """On complete frames, the NaN path's log-emissions and statistics are the complete
    path's (so the NaN path is the right generalisation of it)."""
    X, _, rng = sticky_hmm(T=400)
    h = GaussianHMM(3, covariance_type=covariance_type, random_state=0, n_iter=5).fit(X)
    em = h._emission_model(3)
    p = em.prepare(h._params_from_attrs().emission)
    want = em.log_likelihood(X, p, backend, 2)
    got = E._missing_log_likelihood(X, em._states(p), backend, 2)
    np.testing.assert_allclose(got, want, rtol=1e-10)
    post = rng.dirichlet(np.ones(3), size=len(X))
    a = em.stats(X, post, p, backend, 2)
    b = em._stats_with_nan(X, post, p, backend, 2)
    assert b.covariance_type == a.covariance_type
    for name in ("nk", "s1", "s2"):
        np.testing.assert_allclose(getattr(b, name), getattr(a, name), rtol=1e-9,
                                   atol=1e-9 * len(X), err_msg=name)


def test_gmm_hmm_with_nan(backend):
    X, _, rng = sticky_hmm(T=900)
    Xm = with_nan(X, 0.2, rng)
    lengths = [300, 300, 300]
    g = GMMHMM(3, n_mix=2, covariance_type="full", backend=backend, random_state=0,
               n_iter=15).fit(Xm, lengths)
    assert never_decreases(g.monitor_.history)
    le = marginal_log_densities(Xm, g.means_, g.covars_, g.weights_)
    assert g.score(Xm, lengths) == pytest.approx(
        forward_loglik(le, lengths, g.startprob_, g.transmat_), rel=1e-9)


def test_every_frame_labelled_is_the_supervised_estimate():
    X, z, _ = sticky_hmm(T=1200, seed=3)
    h = GaussianHMM(3, random_state=0, n_iter=3, params="stm", init_params="stmc")
    h.fit(X, [1200], z)
    np.testing.assert_allclose(h.means_, [X[z == k].mean(0) for k in range(3)], rtol=1e-9)
    counts = np.zeros((3, 3))
    np.add.at(counts, (z[:-1], z[1:]), 1)
    np.testing.assert_allclose(h.transmat_, counts / counts.sum(1, keepdims=True), rtol=1e-9)


def test_labels_steer_the_fit_and_work_with_nan(backend):
    X, z, rng = sticky_hmm(T=3000, seed=4)
    Xm = with_nan(X, 0.15, rng)
    y = np.where(rng.random(3000) < 0.03, z, -1)
    h = GaussianHMM(3, backend=backend, random_state=0, n_iter=300, tol=1e-6)
    h.fit(Xm, [1000] * 3, y)
    assert np.mean(h.predict(Xm, [1000] * 3) == z) > 0.95    # states named by the labels
    h0 = GaussianHMM(3, backend=backend, random_state=0, n_iter=40)
    h0.fit(Xm, [1000] * 3, y, unlabeled_weight=0.0)
    labelled = y >= 0
    np.testing.assert_allclose(h0.means_[0], np.nanmean(Xm[labelled & (z == 0)], axis=0),
                               atol=0.3)


@pytest.mark.parametrize("y,match", [(np.zeros(5, dtype=int), "one label per row"),
                                     (np.full(30, 3), r"in \[0, 2\]"),
                                     (np.full(30, 0.5), "integer")])
def test_bad_labels(y, match):
    X = np.random.default_rng(0).normal(size=(30, 2))
    with pytest.raises(ValueError, match=match):
        GaussianHMM(3).fit(X, None, y)


def test_bad_nan_input():
    X = np.random.default_rng(0).normal(size=(30, 2))
    X[:, 1] = np.nan
    with pytest.raises(ValueError, match="missing .* in every frame"):
        GaussianHMM(2).fit(X)
    X[0, 1] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        GaussianHMM(2).fit(X)
    with pytest.raises(ValueError, match="NaN"):
        CategoricalHMM(2).fit(np.array([[0.0], [np.nan], [1.0]]))
