"""emfast.plot: each plot rendered with the Agg backend, and what it drew checked against the
model (ellipse axes from the covariances, point colours from the predictions, line data
from the convergence traces, bar heights from the ratios, posterior stacks summing to 1)."""

import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Ellipse  # noqa: E402

from emfast import GaussianMixture, plot, select_gaussian_mixture  # noqa: E402
from emfast.datasets import load_blobs  # noqa: E402
from emfast.hmm import GaussianHMM  # noqa: E402
from emfast.impute import EMImputer  # noqa: E402

COV_TYPES = ("full", "tied", "diag", "spherical")


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def blobs():
    return load_blobs()


def full_covariances(model):
    """(K, D, D) covariances written out from the covariance type (test's own version)."""
    K, D = model.means_.shape
    c = model.covariances_
    return {"full": lambda: c,
            "tied": lambda: np.repeat(c[None], K, axis=0),
            "diag": lambda: np.stack([np.diag(v) for v in c]),
            "spherical": lambda: np.stack([v * np.eye(D) for v in c])}[model.covariance_type]()


def ellipses(ax):
    return [p for p in ax.patches if isinstance(p, Ellipse)]


def check_ellipse(e, mean, cov, n_std):
    """e is the n_std ellipse of N(mean, cov): width/height are 2 n_std sqrt(eigenvalues),
    its axes are eigenvectors of cov, and its axis end points have Mahalanobis distance n_std."""
    vals = np.linalg.eigvalsh(cov)
    np.testing.assert_allclose(e.center, mean, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose([e.width, e.height], 2 * n_std * np.sqrt(vals[::-1]),
                               rtol=1e-10)
    theta = np.radians(e.angle)
    u = np.array([np.cos(theta), np.sin(theta)])
    v = np.array([-np.sin(theta), np.cos(theta)])
    prec = np.linalg.inv(cov)
    for direction, half in ((u, e.width / 2), (v, e.height / 2)):
        d = half * direction
        np.testing.assert_allclose(d @ prec @ d, n_std ** 2, rtol=1e-8)
    if not np.isclose(vals[0], vals[1]):       # the major axis is the top eigenvector
        np.testing.assert_allclose(abs(u @ np.linalg.eigh(cov)[1][:, 1]), 1.0, rtol=1e-10)


def check_points(collection, points, labels, K):
    np.testing.assert_allclose(collection.get_offsets(), points, rtol=1e-10, atol=1e-12)
    colors = plot.component_colors(K)
    np.testing.assert_allclose(collection.get_facecolors(), colors[labels])


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_plot_mixture_2d(covariance_type):
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.multivariate_normal(m, c, 200) for m, c in (
        ([0, 0], [[2.0, 1.2], [1.2, 1.0]]), ([6, 1], [[0.5, -0.3], [-0.3, 1.5]]),
        ([2, 6], [[1.0, 0.0], [0.0, 0.2]]))])
    before = X.copy()
    gm = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    ax = plot.plot_mixture(gm, X)
    np.testing.assert_array_equal(X, before)
    found = ellipses(ax)
    assert len(found) == 2 * 3                          # 1 and 2 sd for each component
    covs = full_covariances(gm)
    for i, e in enumerate(found):
        k, n_std = divmod(i, 2)
        check_ellipse(e, gm.means_[k], covs[k], (1, 2)[n_std])
        np.testing.assert_allclose(e.get_edgecolor(), plot.component_colors(3)[k])
    labels = gm.predict(X)
    check_points(ax.collections[0], X, labels, 3)
    # every label's points have that component's colour, as many as predicted
    colors = ax.collections[0].get_facecolors()
    for k in range(3):
        n = np.sum(np.all(colors == plot.component_colors(3)[k], axis=1))
        assert n == np.sum(labels == k)


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_plot_mixture_projects_on_principal_components(blobs, covariance_type):
    from sklearn.decomposition import PCA

    X, _ = blobs
    gm = GaussianMixture(4, covariance_type=covariance_type, random_state=0).fit(X)
    ax = plot.plot_mixture(gm, X, n_std=(1.5,))
    pca = PCA(2).fit(X)
    # the axes' signs are a convention: compare up to one sign per component
    drawn = np.asarray(ax.collections[0].get_offsets())
    signs = np.sign(np.sum(drawn[:50] * pca.transform(X[:50]), axis=0))
    W = pca.components_ * signs[:, None]
    check_points(ax.collections[0], (X - X.mean(0)) @ W.T, gm.predict(X), 4)
    found = ellipses(ax)
    assert len(found) == 4
    projected = W @ full_covariances(gm) @ W.T
    for k, e in enumerate(found):
        check_ellipse(e, (gm.means_[k] - X.mean(0)) @ W.T, projected[k], 1.5)


def test_plot_mixture_bad_input(blobs):
    X, _ = blobs
    gm = GaussianMixture(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match=r"shape \(n_samples, 3\)"):
        plot.plot_mixture(gm, X[:, :2])
    with pytest.raises(ValueError, match="fitted Gaussian mixture"):
        plot.plot_mixture(GaussianMixture(2), X)
    with pytest.raises(ValueError, match="NaN"):
        plot.plot_mixture(gm, np.where(X > 3, np.nan, X))
    with pytest.raises(ValueError, match="n_std"):
        plot.plot_mixture(gm, X, n_std=(1, -2))
    gm1 = GaussianMixture(2, random_state=0).fit(X[:, :1])
    with pytest.raises(ValueError, match="1 feature"):
        plot.plot_mixture(gm1, X[:, :1])


def test_plot_mixture_of_one_row_in_3d(blobs):
    # one row has no spread to take principal axes from: a picture, not a LinAlgError
    X, _ = blobs
    gm = GaussianMixture(3, random_state=0).fit(X)
    ax = plot.plot_mixture(gm, X[:1])
    assert np.asarray(ax.collections[0].get_offsets()).shape == (1, 2)
    assert np.all(np.isfinite(ax.collections[0].get_offsets()))
    assert len(ellipses(ax)) == 3 * 2


def test_plot_mixture_on_given_axes(blobs):
    X, _ = blobs
    gm = GaussianMixture(4, random_state=0).fit(X)
    _, ax = plt.subplots()
    assert plot.plot_mixture(gm, X, ax=ax) is ax


def test_plot_convergence_traces(blobs):
    X, _ = blobs
    gm = GaussianMixture(4, random_state=0, tol=1e-6).fit(X)
    hmm = GaussianHMM(3, n_iter=15, random_state=0).fit(X)
    Xm = X.copy()
    Xm[np.random.default_rng(1).random(X.shape) < 0.2] = np.nan
    imp = EMImputer().fit(Xm)
    for model, trace in ((gm, gm.lower_bounds_), (hmm, list(hmm.monitor_.history)),
                         (imp, imp.loglik_history_)):
        ax = plot.plot_convergence(model)
        (line,) = ax.lines
        assert len(trace) > 1
        np.testing.assert_array_equal(line.get_ydata(), trace)
        np.testing.assert_array_equal(line.get_xdata(), np.arange(1, len(trace) + 1))
    with pytest.raises(ValueError, match="no convergence trace"):
        plot.plot_convergence(GaussianMixture(2))


def test_plot_convergence_of_a_batch(blobs):
    from emfast import fit_many

    X, _ = blobs
    batch = fit_many(X, [500, 500, 500], n_components=2, random_state=0)
    with pytest.raises(ValueError, match=r"result\[i\]"):
        plot.plot_convergence(batch)
    line = plot.plot_convergence(batch[1]).lines[0]
    np.testing.assert_array_equal(line.get_ydata(), batch.lower_bounds_[1, :batch.n_iter_[1]])


def test_plot_selection(blobs):
    X, _ = blobs
    sel = select_gaussian_mixture(X, [1, 2, 4, 6], ("full", "diag"), random_state=0)
    for criterion in ("bic", "icl"):
        ax = plot.plot_selection(sel, criterion=criterion)
        *curves, star = ax.lines
        assert [c.get_label() for c in curves] == ["full", "diag"]
        for curve in curves:
            rows = sel.table_[sel.table_["covariance_type"] == curve.get_label()]
            np.testing.assert_array_equal(curve.get_xdata(), rows["n_components"])
            np.testing.assert_array_equal(curve.get_ydata(), rows[criterion])
        best = sel.table_[np.argmin(sel.table_[criterion])]
        assert star.get_xdata()[0] == best["n_components"]
        assert star.get_ydata()[0] == best[criterion]
    with pytest.raises(ValueError, match="criterion"):
        plot.plot_selection(sel, criterion="likelihood")
    with pytest.raises(ValueError, match="select_gaussian_mixture"):
        plot.plot_selection(sel.best_estimator_)


def upper_edges(collection, t):
    """The upper boundary of a fill_between/stackplot polygon at each x of t."""
    verts = collection.get_paths()[0].vertices
    return np.array([verts[verts[:, 0] == x, 1].max() for x in t])


@pytest.mark.parametrize("n_features", [1, 2])
def test_plot_hmm_states(n_features):
    rng = np.random.default_rng(3)
    z = np.repeat([0, 1, 0, 2, 1], 60)
    X = rng.normal(np.array([[0.0, 0.0], [4.0, 1.0], [-3.0, 3.0]])[z], 0.7)[:, :n_features]
    lengths = [120, 180]
    hmm = GaussianHMM(3, random_state=0, n_iter=30).fit(X, lengths)
    signal = X[:, 0] if n_features == 1 else X                  # 1-D input is accepted too
    axes = plot.plot_hmm_states(hmm, signal, lengths, time=np.arange(300) + 1900)
    assert isinstance(axes, np.ndarray) and axes.shape == (2,)
    top, bottom = axes
    states = hmm.predict(X, lengths)
    proba = hmm.predict_proba(X, lengths)
    t = np.arange(300) + 1900
    points = [c for c in top.collections]
    assert len(points) == n_features
    for d, c in enumerate(points):
        check_points(c, np.column_stack([t, X[:, d]]), states, 3)
    layers = bottom.collections
    assert len(layers) == 3
    for k, layer in enumerate(layers):
        np.testing.assert_allclose(upper_edges(layer, t), proba[:, :k + 1].sum(1), atol=1e-12)
    np.testing.assert_allclose(upper_edges(layers[-1], t), 1.0, atol=1e-12)
    # one dotted sequence boundary on each axes, at the second sequence's first time
    for a in axes:
        boundaries = [ln for ln in a.lines if ln.get_linestyle() == ":"]
        assert [ln.get_xdata()[0] for ln in boundaries] == [t[120]]


def test_plot_hmm_states_bad_input():
    X = np.random.default_rng(0).normal(size=(50, 1))
    hmm = GaussianHMM(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="time must have shape"):
        plot.plot_hmm_states(hmm, X, time=np.arange(49))
    with pytest.raises(ValueError, match="fitted HMM"):
        plot.plot_hmm_states(GaussianMixture(2).fit(X), X)
    _, ax = plt.subplots()
    with pytest.raises(ValueError, match="two Axes"):
        plot.plot_hmm_states(hmm, X, ax=ax)
    _, pair = plt.subplots(2, 1)
    assert list(plot.plot_hmm_states(hmm, X, ax=pair)) == list(pair)


def test_plot_benchmark_bars():
    rows = [("G1", 47.0), ("G2", 24.3), ("G5", 26.6)]
    ax = plot.plot_benchmark(rows)
    assert [p.get_height() for p in ax.patches] == [47.0, 24.3, 26.6]
    assert [tick.get_text() for tick in ax.get_xticklabels()] == ["G1", "G2", "G5"]
    assert [t.get_text() for t in ax.texts] == ["47.0×", "24.3×", "26.6×"]
    assert plot.plot_benchmark(dict(rows)).patches[1].get_height() == 24.3


def test_plot_benchmark_grouped():
    rows = {"G1": {"emfast-cython": 47.0, "emfast-numba": 18.8},
            "G2": {"emfast-cython": 24.3, "emfast-numba": float("nan")}}
    ax = plot.plot_benchmark(rows, reference="hmmlearn")
    heights = [p.get_height() for p in ax.patches]
    np.testing.assert_array_equal(heights, [47.0, 24.3, 18.8, np.nan])
    cython, numba = ax.patches[:2], ax.patches[2:]
    assert all(a.get_x() < b.get_x() for a, b in zip(cython, numba))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["emfast-cython",
                                                                   "emfast-numba"]
    assert "hmmlearn" in ax.get_ylabel()


@pytest.mark.parametrize("rows, match", [([], "empty"), ([("G1", "fast")], "number"),
                                         ([1.0, 2.0], "pairs")])
def test_plot_benchmark_bad_rows(rows, match):
    with pytest.raises(ValueError, match=match):
        plot.plot_benchmark(rows)


def test_missing_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)     # import fails
    X = np.random.default_rng(0).normal(size=(40, 2))
    with pytest.raises(ImportError, match=r"emfast\[plot\]"):
        plot.plot_convergence(GaussianMixture(2, random_state=0).fit(X))


def test_plot_mixture_of_scikit_learn(blobs):
    from sklearn.mixture import GaussianMixture as SkGaussianMixture

    X, _ = blobs
    X2 = X[:, :2]
    sk = SkGaussianMixture(3, covariance_type="tied", random_state=0).fit(X2)
    ax = plot.plot_mixture(sk, X2, n_std=(2,))
    for k, e in enumerate(ellipses(ax)):
        check_ellipse(e, sk.means_[k], sk.covariances_, 2)
    check_points(ax.collections[0], X2, sk.predict(X2), 3)
