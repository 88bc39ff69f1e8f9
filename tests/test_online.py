"""EM beyond one in-memory array: exact EM over chunks or a memmap (GaussianMixture.fit, equal
to the in-memory fit bit for bit) and online EM (GaussianMixture.partial_fit)."""

import numpy as np
import pytest

from emfast import GaussianMixture as GM
from emfast import kernels
from emfast._config import get_backend
from emfast.mixture import _gaussian as G

pytestmark = pytest.mark.filterwarnings("ignore:Best performing initialization")

COV_TYPES = ("full", "tied", "diag", "spherical")
FITTED = ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_",
          "lower_bound_", "lower_bounds_", "n_iter_", "converged_")


def blobs(N, D=3, K=3, seed=0, dtype=np.float64, spread=4.0):
    rng = np.random.RandomState(seed)
    centres = rng.normal(scale=spread, size=(K, D))
    y = rng.randint(0, K, N)
    return (centres[y] + rng.normal(size=(N, D)) * rng.uniform(0.5, 1.5, (K, 1))[y]).astype(
        dtype)


def assert_same_fit(a, b):
    for name in FITTED:
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


def memmap_of(X, tmp_path):
    path = tmp_path / "X.npy"
    np.save(path, X)
    return np.load(path, mmap_mode="r")


# ------------------------------------------------------------------ the kernel contract
@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_groups_summed_in_order_are_the_kernel_pass(backend, covariance_type):
    """estep_groups' ranges, each summed alone (n_groups=1), added in order from 0: the
    in-memory statistics bit for bit (the contract behind the chunked E-step)."""
    rng = np.random.RandomState(1)
    N, D, K = 70_000, 3, 2           # 274 blocks: 64 groups of 4 or 5 blocks
    X = rng.normal(size=(N, D))
    sw = rng.uniform(size=N)
    from conftest import random_params
    means, pc, log_const = random_params(rng, K, D, covariance_type)
    mod, code = get_backend(backend), kernels._cov_code(covariance_type)
    shape = kernels.prec_chol_shape(covariance_type, K, D)

    def stats(rows, w, n_groups=0):
        out = np.empty(K), np.empty((K, D)), np.empty(shape)
        ll = mod.estep_stats(rows, w, log_const, means, pc, code, *out, 2, None,
                             n_groups=n_groups)
        return (ll,) + out

    want = stats(X, sw)
    bounds = mod.estep_groups(N, D, K, code)
    assert len(bounds) == 65 and bounds[0] == 0 and bounds[-1] == N
    got = [0.0, np.zeros(K), np.zeros((K, D)), np.zeros(shape)]
    for a, b in zip(bounds[:-1], bounds[1:]):
        part = stats(np.ascontiguousarray(X[a:b]), sw[a:b], 1)
        for i in range(4):
            got[i] += part[i]
    for g, w in zip(got, want):
        assert np.array_equal(g, w)


# ------------------------------------------------------------------ chunked exact EM
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_chunked_fit_equals_in_memory_fit_bit_for_bit(backend, covariance_type, dtype):
    """40,000 rows (64 groups of the kernel's split, none aligned with the 7,777-row chunks)
    from a given start: the same fit, every attribute equal."""
    X = blobs(40_000, dtype=dtype)
    start = GM(3, covariance_type=covariance_type, max_iter=2, random_state=0,
               backend=backend).fit(X[:2000])
    kw = dict(n_components=3, covariance_type=covariance_type, tol=1e-8, max_iter=8,
              weights_init=start.weights_, means_init=start.means_,
              precisions_init=start.precisions_, backend=backend)
    want = GM(**kw).fit(X)
    assert want.n_iter_ > 2
    got = GM(**kw).fit([X[i:i + 7777] for i in range(0, len(X), 7777)])
    assert_same_fit(got, want)


@pytest.mark.parametrize("covariance_type", ["full", "spherical"])
def test_chunked_fit_with_default_start_weights_and_restarts(backend, covariance_type, tmp_path):
    """Up to 16,384 rows the start is computed on all rows: a memmap and a function of
    chunks then give the in-memory fit, with sample weights and n_init = 2, as float32."""
    X = blobs(9000, D=4, K=4, seed=3, dtype=np.float32)
    sw = np.random.RandomState(4).uniform(size=len(X))
    kw = dict(n_components=4, covariance_type=covariance_type, n_init=2, random_state=5,
              backend=backend)
    want = GM(**kw).fit(X, sample_weight=sw)
    assert_same_fit(GM(**kw).fit(memmap_of(X, tmp_path), sample_weight=sw), want)
    chunks = lambda: (X[i:i + 1000] for i in range(0, len(X), 1000))  # noqa: E731
    assert_same_fit(GM(**kw).fit(chunks, sample_weight=sw), want)


def test_chunked_fit_with_default_start_on_many_rows(tmp_path):
    """Beyond 16,384 rows: "kmeans" starts from the same k-means and its clusters'
    statistics summed over pieces (the in-memory fit to rounding), "random_from_data"
    from the same rows (exactly)."""
    X = blobs(140_000, D=2, K=3, seed=6)
    mm = memmap_of(X, tmp_path)
    for init, exact in (("kmeans", False), ("random_from_data", True)):
        want = GM(3, init_params=init, random_state=0).fit(X)
        got = GM(3, init_params=init, random_state=0).fit(mm)
        if exact:
            assert_same_fit(got, want)
        else:
            assert got.n_iter_ == want.n_iter_
            np.testing.assert_allclose(got.means_, want.means_, rtol=1e-9)
            np.testing.assert_allclose(got.covariances_, want.covariances_, rtol=1e-9)


def test_chunked_fit_is_thread_count_independent(tmp_path):
    X = blobs(30_000)
    mm = memmap_of(X, tmp_path)
    fits = [GM(3, random_state=0, n_threads=t, max_iter=5, tol=0).fit(mm) for t in (1, 2, 3)]
    for f in fits[1:]:
        assert_same_fit(f, fits[0])


def test_chunked_fit_reads_each_pass_once_and_warm_starts():
    X = blobs(5000)
    calls = []

    def chunks():
        calls.append(1)
        return iter([X[:1234], X[1234:1234], X[1234:]])     # an empty chunk is skipped

    gm = GM(3, max_iter=4, tol=0, random_state=0, init_params="random_from_data")
    gm.fit(chunks)
    # the check, the start's sample, then one per iteration
    assert len(calls) == 2 + 4
    ref = GM(3, max_iter=4, tol=0, random_state=0, init_params="random_from_data").fit(X)
    assert_same_fit(gm, ref)
    gm.set_params(warm_start=True, max_iter=3)
    ref.set_params(warm_start=True, max_iter=3)
    assert_same_fit(gm.fit(chunks), ref.fit(X))


def test_list_chunks_are_scanned_once_function_chunks_every_pass(monkeypatch):
    from emfast import _validation
    X = blobs(3000)
    scanned = []
    check_array = _validation.check_array

    def counting(A, **kw):
        scanned.append(kw.get("name"))
        return check_array(A, **kw)

    monkeypatch.setattr(_validation, "check_array", counting)
    as_int = np.round(X[2000:] * 100).astype(np.int64)     # converted: scanned every pass
    kw = dict(max_iter=3, tol=0, random_state=0, init_params="random_from_data")
    GM(3, **kw).fit([X[:1000], X[1000:2000], as_int])
    per_chunk = {c: scanned.count(f"chunk {c} of X") for c in range(3)}
    assert per_chunk[0] == per_chunk[1] == 1 and per_chunk[2] > 3
    scanned.clear()
    GM(3, **kw).fit(lambda: [X[:1000], X[1000:]])
    assert scanned.count("chunk 0 of X") > 3


def test_chunked_rows_take_and_reseeding_rows(tmp_path):
    from emfast.mixture._chunked import ChunkedRows
    X = blobs(3000)
    idx = np.array([2999, 0, 1500, 0, 700])
    for source in (memmap_of(X, tmp_path), [X[:1000], X[1000:2500], X[2500:]]):
        rows = ChunkedRows(source, "test")
        assert rows.shape == X.shape
        assert np.array_equal(rows[idx], X[idx])


@pytest.mark.parametrize("make_bad, match", [
    (lambda X: [X[:100], X[100:, :2]], "same number of features"),
    (lambda X: [X[:100], X[100:].astype(np.float32)], "same dtype"),
    (lambda X: [X[:100], np.where(np.arange(len(X) - 100)[:, None] == 5, np.nan, X[100:])],
     "NaN"),
    (lambda X: [X[:100], X[100:, 0]], "2D"),
    (lambda X: iter([X]), "iterator"),
    (lambda X: (lambda: iter([])), "no chunks"),
    (lambda X: [X[:1], np.empty((0, 3))], "rows"),
])
def test_chunked_fit_bad_input(make_bad, match):
    X = blobs(500)
    with pytest.raises(ValueError, match=match):
        GM(3).fit(make_bad(X))


@pytest.mark.parametrize("later", [lambda X: [X[:700]], lambda X: [X, X[:200]]])
def test_chunks_that_change_between_passes_are_refused(later):
    X = blobs(1000)
    passes = []

    def chunks():
        passes.append(1)
        return [X[:500], X[500:]] if len(passes) == 1 else later(X)

    with pytest.raises(ValueError, match="changed between passes"):
        GM(2, init_params="random_from_data", random_state=0).fit(chunks)


def test_chunked_fit_refuses_bad_memmaps_and_options(tmp_path):
    X = blobs(500)
    with pytest.raises(TypeError, match="iterable of 2-D arrays"):
        GM(2).fit(lambda: 5)
    with pytest.raises(ValueError, match="float32 or float64"):
        GM(2).fit(memmap_of(X.astype(np.int64), tmp_path))
    with pytest.raises(ValueError, match="sample_weight"):
        GM(2).fit([X], sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="in memory"):
        GM(2).fit_predict([X])
    with pytest.raises(ValueError, match="in memory"):
        GM(2, semi_supervised=True).fit([X], y=np.zeros(len(X), dtype=int))


def test_memmap_fit_does_not_touch_the_file(tmp_path):
    X = blobs(20_000)
    mm = memmap_of(X, tmp_path)
    GM(3, max_iter=3, random_state=0).fit(mm)
    assert np.array_equal(np.load(tmp_path / "X.npy"), X) and np.array_equal(mm, X)


# ------------------------------------------------------------------ online EM
def test_partial_fit_over_shuffled_batches_approaches_the_batch_optimum():
    """Two epochs of 500-row batches of a simulated mixture (four clusters of different
    shapes, apart enough for one optimum): the mean log-likelihood within 1% of the batch
    fit's, for every covariance type."""
    rng = np.random.RandomState(8)
    centres = np.array([[0, 0, 0], [9, 0, 0], [0, 9, 0], [0, 0, 9]], dtype=float)
    y = rng.choice(4, size=10_000, p=[0.4, 0.3, 0.2, 0.1])
    scales = rng.uniform(0.5, 2.0, size=(4, 3))
    X = centres[y] + rng.normal(size=(10_000, 3)) * scales[y]
    for ct in COV_TYPES:
        batch = GM(4, covariance_type=ct, n_init=2, random_state=0).fit(X).score(X)
        online = GM(4, covariance_type=ct, random_state=0)
        for _ in range(2):
            order = rng.permutation(len(X))
            for i in range(0, len(X), 500):
                online.partial_fit(X[order[i:i + 500]])
        assert online.n_steps_ == 40 and not online.converged_
        assert abs(online.score(X) - batch) <= 0.01 * abs(batch), ct


def test_partial_fit_steps_follow_the_documented_schedule():
    """Three batches by hand: s1 = the first batch's statistics at the start, then
    s_t = (1 - g_t) s_{t-1} (re-centred) + g_t stats(batch_t), g_t = (t + t0)^-alpha."""
    X = blobs(3000, seed=2)
    batches = [X[:1000], X[1000:2000], X[2000:]]
    gm = GM(3, covariance_type="diag", random_state=0, learning_decay=0.7,
            learning_offset=1.5)
    gm.partial_fit(batches[0])
    running = gm._online[0]
    for t, b in ((2, batches[1]), (3, batches[2])):
        params = gm._params()
        stats = G.EStep(b, None, "diag", 3, "auto", 1, float(len(b)))(params) * (1 / len(b))
        step = (t + 1.5) ** -0.7
        running = G.recentre(running, stats.centre) * (1 - step) + stats * step
        _, means, cov = G.mstep_moments(running, gm.reg_covar)
        gm.partial_fit(b)
        np.testing.assert_allclose(gm.means_, means, rtol=1e-12)
        np.testing.assert_allclose(gm.covariances_, cov, rtol=1e-12)
    assert gm.n_steps_ == 3


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_statistics_of_fitted_parameters_give_them_back(covariance_type):
    gm = GM(3, covariance_type=covariance_type, random_state=0).fit(blobs(2000))
    weights, means, cov = G.mstep_moments(G.stats_of_params(gm._params(), gm.reg_covar),
                                          gm.reg_covar)
    np.testing.assert_allclose(weights, gm.weights_, rtol=1e-12)
    np.testing.assert_allclose(means, gm.means_, rtol=1e-12)
    np.testing.assert_allclose(cov, gm.covariances_, rtol=1e-10, atol=1e-14)


def test_recentre_is_the_statistics_about_the_new_centre():
    X = blobs(2000)
    gm = GM(3, random_state=0, max_iter=2).fit(X)
    params = gm._params()
    stats = G.EStep(X, None, "full", 3, "auto", 1, 2000.0)(params) * 1.0
    new = params.means + 0.25
    moved = G.recentre(stats, new)
    resp = gm.predict_proba(X)
    for k in range(3):
        d = X - new[k]
        np.testing.assert_allclose(moved.s1[k], resp[:, k] @ d, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(moved.s2[k], (d * resp[:, k, None]).T @ d, rtol=1e-9)


def test_partial_fit_after_fit_continues_from_the_fit():
    X = blobs(5000, seed=4)
    gm = GM(3, random_state=0).fit(X)
    before = gm.score(X)
    gm.partial_fit(X[:2500]).partial_fit(X[2500:])
    assert gm.n_steps_ == 3 and abs(gm.score(X) - before) < 0.01 * abs(before)
    gm.fit(X)                                   # fit starts afresh
    assert not hasattr(gm, "_online")


def test_partial_fit_bad_input():
    X = blobs(600)
    gm = GM(3, random_state=0)
    with pytest.raises(ValueError, match="minimum of 3"):
        gm.partial_fit(X[:2])
    gm.partial_fit(X[:300])
    with pytest.raises(ValueError, match="features"):
        gm.partial_fit(X[300:, :2])
    bad = X[300:].copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        gm.partial_fit(bad)
    with pytest.raises(ValueError, match="learning_decay"):
        GM(3, learning_decay=0.5).partial_fit(X)
    with pytest.raises(ValueError, match="learning_offset"):
        GM(3, learning_offset=-1.0).partial_fit(X)
