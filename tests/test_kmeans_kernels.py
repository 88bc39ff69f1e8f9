"""The k-means kernels (emfast.kernels "k-means" section) against the NumPy reference, on
both backends; thread-count independence; degenerate data; bad input; the k-means driver."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference_kmeans as R
from conftest import assert_close, make_blobs
from emfast import kernels
from emfast.mixture import _kmeans

COV_TYPES = ("full", "tied", "diag", "spherical")
# more than three threads' worth of rows (the facade gives a thread 1024 rows at least) and
# a partial last block
N_THREADED = 13 * 256 + 17


def _data(rng, N, D, dtype=np.float64, weighted=True):
    X = rng.normal(scale=2.0, size=(N, D)).astype(dtype)
    w = rng.uniform(0.2, 3.0, size=N) if weighted else None
    return X, w


# ------------------------------------------------------------------ against the reference
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("D", [1, 3, 10, 30])   # 30: the dgemm distances (D >= 16)
@pytest.mark.parametrize("weighted", [False, True])
def test_plusplus_kernels_match_reference(backend, dtype, D, weighted):
    rng = np.random.default_rng(D)
    X, w = _data(rng, 700, D, dtype, weighted)
    closest = np.full(700, np.inf)
    want_closest, want_pot = R.plusplus_update(X, X[5], closest, w)
    got_closest, got_pot = kernels.kmeans_plusplus_update(X, X[5], closest.copy(), w,
                                                          backend=backend)
    assert_close(got_closest, want_closest, rtol=1e-10)
    assert got_closest[5] == 0.0 or D >= 16   # the chosen row itself (direct sums: exact)
    assert_close(got_pot, want_pot, rtol=1e-10)
    cand = rng.normal(size=(5, D))
    got = kernels.kmeans_plusplus_potentials(X, want_closest, cand, w, backend=backend)
    assert_close(got, R.plusplus_potentials(X, want_closest, cand, w), rtol=1e-10)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("D, K", [(1, 1), (2, 3), (5, 9), (10, 16), (30, 7)])
@pytest.mark.parametrize("weighted", [False, True])
def test_lloyd_step_matches_reference(backend, dtype, D, K, weighted):
    rng = np.random.default_rng(K)
    X, w = _data(rng, 900, D, dtype, weighted)
    centres = rng.normal(scale=2.0, size=(K, D))
    prev = rng.integers(-1, K, size=900)
    want = R.lloyd_step(X, centres, prev, w)
    changed, inertia, labels, counts, sums = kernels.kmeans_lloyd_step(
        X, centres, prev.copy(), w, backend=backend)
    np.testing.assert_array_equal(labels, want[0])
    assert_close(counts, want[1], rtol=1e-12)
    assert_close(sums, want[2], rtol=1e-10)
    assert changed == want[3]
    assert_close(inertia, want[4], rtol=1e-10)


@pytest.mark.parametrize("covariance_type", COV_TYPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("D", [1, 4, 30])
def test_label_stats_match_reference(backend, covariance_type, dtype, D):
    rng = np.random.default_rng(D)
    K = 5
    X, w = _data(rng, 800, D, dtype)
    centres = rng.normal(scale=2.0, size=(K, D))
    # given labels, some outside [0, K): those rows belong to no cluster
    labels = rng.integers(-2, K + 2, size=800)
    before = labels.copy()
    got = kernels.kmeans_label_stats(X, centres, covariance_type, labels, w, backend=backend)
    np.testing.assert_array_equal(labels, before)   # the caller's labels are not modified
    want = R.label_stats(X, centres, covariance_type, labels, w)
    for g, r, name in zip(got[1:], want, ("nk", "s1", "s2")):
        assert_close(g, r, rtol=1e-10, err_msg=name)
    # labels=None: each row to its nearest centre, the labels of a Lloyd step
    got = kernels.kmeans_label_stats(X, centres, covariance_type, None, w, backend=backend)
    nearest = R.lloyd_step(X, centres, labels, w)[0]
    np.testing.assert_array_equal(got[0], nearest)
    want = R.label_stats(X, centres, covariance_type, nearest, w)
    for g, r, name in zip(got[1:], want, ("nk", "s1", "s2")):
        assert_close(g, r, rtol=1e-10, err_msg=name)


@pytest.mark.parametrize("covariance_type", ["diag", "spherical"])
def test_label_stats_far_from_the_origin(backend, covariance_type):
    """Rows 1e6 from the origin, centres near their clusters' means: the new means c + s1 /
    nk are the reference's to about an ulp of the data's values (Cython sums a block's w x
    and subtracts c times its weight), and the scatter, summed centred, loses nothing to
    the offset."""
    rng = np.random.default_rng(11)
    X, w = _data(rng, 900, 20, np.float64)
    X += 1e6
    labels = rng.integers(0, 3, size=900)
    centres = np.array([X[labels == k].mean(axis=0) for k in range(3)]) + 0.25
    got = kernels.kmeans_label_stats(X, centres, covariance_type, labels, w, backend=backend)
    want = R.label_stats(X, centres, covariance_type, labels, w)
    nk = got[1][:, None]
    # 1e-15 of the values: a few units in the last place of 1e6
    assert_close(centres + got[2] / nk, centres + want[1] / nk, rtol=1e-15)
    assert_close(got[3], want[2], rtol=1e-10)


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_numba_statistics_of_float32_rows_are_those_of_their_float64_copy(covariance_type):
    """GaussianMixture hands the Numba kernel a float64 copy of a small float32 X, so that a
    k-means start compiles one dtype; that must not change a bit."""
    pytest.importorskip("numba")
    rng = np.random.default_rng(4)
    X, w = _data(rng, 900, 3, np.float32)
    centres = rng.normal(scale=2.0, size=(4, 3))
    got = [kernels.kmeans_label_stats(Xd, centres, covariance_type, None, w, backend="numba")
           for Xd in (X, X.astype(np.float64))]
    for a, b in zip(*got):
        assert a.tobytes() == b.tobytes()


@settings(max_examples=40, deadline=None)
@given(N=st.integers(0, 600), D=st.integers(1, 30), K=st.integers(1, 8),
       weighted=st.booleans(), f32=st.booleans(), seed=st.integers(0, 2**16))
def test_random_shapes_match_reference(N, D, K, weighted, f32, seed):
    from conftest import BACKENDS

    rng = np.random.default_rng(seed)
    X, w = _data(rng, N, D, np.float32 if f32 else np.float64, weighted)
    centres = rng.normal(scale=2.0, size=(K, D))
    want = R.lloyd_step(X, centres, np.full(N, -1), w)
    want_stats = R.label_stats(X, centres, "full", want[0], w)
    for backend in BACKENDS:
        changed, inertia, labels, counts, sums = kernels.kmeans_lloyd_step(
            X, centres, np.full(N, -1, dtype=np.int64), w, backend=backend)
        np.testing.assert_array_equal(labels, want[0])
        assert changed == want[3]
        assert_close(counts, want[1], rtol=1e-12)
        assert_close(sums, want[2], rtol=1e-10)
        assert_close(inertia, want[4], rtol=1e-10)
        got = kernels.kmeans_label_stats(X, centres, "full", None, w, backend=backend)
        for g, r in zip(got[1:], want_stats):
            assert_close(g, r, rtol=1e-10)
        pots = kernels.kmeans_plusplus_potentials(X, np.full(N, 1.0), centres, w,
                                                  backend=backend)
        assert_close(pots, R.plusplus_potentials(X, np.full(N, 1.0), centres, w), rtol=1e-10)


def _plusplus_step(backend, X, closest, values, cand, w=None, n_threads=1, norms=True):
    """The backend's plusplus_step (internal: called by k-means++, not in the facade) on
    copies, with the row norms of row_norms (norms) or none; returns what the reference
    returns."""
    from emfast._config import get_backend

    mod = get_backend(backend, "kmeans")
    xsq = mod.row_norms(X, n_threads) if norms else np.empty(0)
    closest = closest.copy()
    block_pot = np.add.reduceat(closest * (1.0 if w is None else w),
                                np.arange(0, len(X), 256))
    cand = np.array(cand, dtype=np.int64)
    pots = np.empty(len(cand))
    best = mod.plusplus_step(
        X, np.empty(0) if w is None else w, xsq, closest, block_pot,
        np.empty(0) if values is None else values, cand, pots, n_threads)
    return cand, pots, best, closest, block_pot


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("D", [3, 30])   # 30: the dgemm distances (D >= 16)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("drawn", [False, True])
def test_plusplus_step_matches_reference(backend, dtype, D, weighted, drawn):
    rng = np.random.default_rng(D)
    X, w = _data(rng, 1000, D, dtype, weighted)
    # the distances to two centres chosen so far
    closest = np.minimum(R.sq_dist(X, X[:1])[:, 0], R.sq_dist(X, X[500:501])[:, 0])
    total = (closest if w is None else w * closest).sum()
    # values near the ends and the block edges too
    values = np.r_[rng.uniform(size=4), 0.0, 255.5 / 1000, 0.999999] * total
    cand = rng.integers(0, 1000, size=len(values))
    want = R.plusplus_step(X, closest, values if drawn else None, cand, w)
    got = _plusplus_step(backend, X, closest, values if drawn else None, cand, w)
    np.testing.assert_array_equal(got[0], want[0])
    assert_close(got[1], want[1], rtol=1e-10)
    assert got[2] == want[2]
    for g, r in zip(got[3:], want[3:]):
        assert_close(g, r, rtol=1e-10)
    # the norms given once per run are those each pass would compute: the same bits
    without = _plusplus_step(backend, X, closest, values if drawn else None, cand, w,
                             norms=False)
    for g, r in zip(got, without):
        np.testing.assert_array_equal(g, r)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("N", [0, 1, 255, 700])
def test_centre_rows_is_numpys_subtraction(backend, dtype, N):
    """The rows k-means runs on: X - offset in float64, exactly NumPy's values, for any
    thread count, with their row_norms (the same bits); the input untouched."""
    from emfast._config import get_backend

    mod = get_backend(backend, "kmeans")
    for D in (7, 16, 37):
        X = np.random.default_rng(N).normal(3.0, 2.0, size=(N, D)).astype(dtype)
        before = X.copy()
        offset = np.linspace(-1.0, 2.0, D)
        want = X.astype(np.float64) - offset
        for threads in (1, 2):
            got, xsq = mod.centre_rows(X, offset, threads)
            assert got.dtype == np.float64 and got.flags.c_contiguous
            np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(xsq, mod.row_norms(want, threads))
        np.testing.assert_array_equal(X, before)


def test_centre_rows_and_row_norms_arguments_of_another_length_are_refused(backend):
    from emfast._config import get_backend

    mod = get_backend(backend, "kmeans")
    X = np.random.default_rng(0).normal(size=(10, 20))
    for offset in (np.zeros(3), np.zeros(1), np.zeros(21)):
        with pytest.raises(ValueError, match="offset"):
            mod.centre_rows(X, offset, 1)
    if backend == "cython":     # (Numba computes its distances directly: xsq unused)
        closest, block_pot = np.full(10, np.inf), np.empty(1)
        with pytest.raises(ValueError, match="xsq"):
            mod.plusplus_update(X, np.empty(0), np.zeros(3), X[0].copy(), closest,
                                block_pot, 1)


@pytest.mark.parametrize("D", [3, 15, 16, 30])
def test_row_norms(backend, D):
    """(N,) squared norms where the backend's distances use them (Cython from D = 16 on, as
    ||x||^2 - 2 x.c + ||c||^2), else (0,)."""
    from emfast._config import get_backend

    X = np.random.default_rng(D).normal(size=(700, D))
    got = get_backend(backend, "kmeans").row_norms(X, 2)
    if backend == "cython" and D >= 16:
        assert_close(got, (X * X).sum(axis=1), rtol=1e-13)
    else:
        assert got.shape == (0,)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("D", [16, 17, 19, 30, 64])    # the direct kernel's partial vectors
@pytest.mark.parametrize("K", [1, 2, 3, 4, 7, 8, 9, 12])   # its tiles, the dgemm crossover
def test_wide_distances_direct_and_dgemm(dtype, D, K):
    """Cython's wide-row distances, by the direct kernel (few centres) and by dgemm: Lloyd
    steps and k-means++ potentials match the reference either way, and each other up to
    rounding, on 1 and 2 threads bit for bit."""
    from emfast._cython import _kmeans as base
    from emfast._config import get_backend

    mod = get_backend("cython", "kmeans")
    rng = np.random.default_rng(10 * D + K)
    N = 3 * 256 + 70                     # partial 64-row steps and blocks
    X, w = _data(rng, N, D, dtype, True)
    centres = rng.normal(scale=2.0, size=(K, D))
    want = R.lloyd_step(X, centres, np.full(N, -1), w)
    want_pots = R.plusplus_potentials(X, np.full(N, 50.0), centres, w)
    runs = {}
    for direct_max_k in (0, 64):         # dgemm for every K; direct for every K
        olds = [m._set_direct_max_k(direct_max_k) for m in (mod, base)]
        try:
            for nt in (1, 2):
                labels, counts, sums = np.full(N, -1), np.empty(K), np.empty((K, D))
                changed, inertia = mod.lloyd_step(X, w, centres, labels, counts, sums, nt)
                pots = np.empty(K)
                mod.plusplus_potentials(X, w, np.empty(0), np.full(N, 50.0), centres, pots, nt)
                runs[direct_max_k, nt] = (labels, counts, sums, inertia, pots)
        finally:
            for m, old in zip((mod, base), olds):
                m._set_direct_max_k(old)
    for direct_max_k in (0, 64):
        labels, counts, sums, inertia, pots = runs[direct_max_k, 1]
        for g, r in zip(runs[direct_max_k, 1], runs[direct_max_k, 2]):
            np.testing.assert_array_equal(g, r)
        np.testing.assert_array_equal(labels, want[0])
        assert_close(counts, want[1], rtol=1e-12)
        assert_close(sums, want[2], rtol=1e-10)
        assert_close(inertia, want[4], rtol=1e-10)
        assert_close(pots, want_pots, rtol=1e-10)


def _lloyd_run(backend, X, centres, labels, max_iter, abs_tol, w=None, n_threads=1,
               incremental=False, xsq=None):
    """The backend's lloyd_run (internal: called by the k-means driver, not in the facade)
    on copies; returns what the reference returns."""
    from emfast._config import get_backend

    X = np.ascontiguousarray(X)
    centres = np.array(centres, dtype=np.float64)
    labels = np.array(labels, dtype=np.int64)
    K, D = centres.shape
    counts, sums = np.empty(K), np.empty((K, D))
    n, stop, inertia = get_backend(backend, "kmeans").lloyd_run(
        X, np.empty(0) if w is None else w, centres, labels, counts, sums, max_iter, abs_tol,
        n_threads, incremental, xsq)
    return centres, labels, counts, sums, n, stop, inertia


@pytest.mark.parametrize("D", [5, 30])
@pytest.mark.parametrize("incremental", [False, True])
def test_lloyd_run_with_the_row_norms_given_is_the_same_run(backend, D, incremental):
    """Row norms passed in (centre_rows gives them with the centred rows) are those the
    run would compute: the same run bit for bit; norms of another length are refused."""
    from emfast._config import get_backend

    X, w = _data(np.random.default_rng(D), 700, D, np.float64, True)
    start = X[::140] + 0.1
    xsq = get_backend(backend, "kmeans").row_norms(X, 2)
    want = _lloyd_run(backend, X, start, np.full(700, -1), 40, 0.0, w, 2, incremental)
    got = _lloyd_run(backend, X, start, np.full(700, -1), 40, 0.0, w, 2, incremental, xsq)
    for a, b in zip(got, want):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    if backend == "cython":     # (Numba's distances are direct: xsq unused)
        with pytest.raises(ValueError, match="xsq"):
            _lloyd_run(backend, X, start, np.full(700, -1), 40, 0.0, w, 2, incremental,
                       np.zeros(699))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("D, K", [(2, 3), (5, 9), (30, 7)])   # 30: the dgemm distances
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("max_iter, tol", [(300, 0.0), (300, 1e-3), (2, 0.0)])
def test_lloyd_run_matches_reference(backend, dtype, D, K, weighted, max_iter, tol):
    # tol 0: until no label changes; 1e-3: until the centres barely move; 2 steps: max_iter
    X, _, _ = make_blobs(n_samples=900, n_features=D, n_components=K, seed=K)
    X = X.astype(dtype)
    w = np.random.default_rng(K).uniform(0.2, 3.0, size=900) if weighted else None
    start = X[::900 // K][:K].astype(np.float64) + 0.1   # one row of each blob
    want = R.lloyd_run(X, start, np.full(900, -1), max_iter, tol * D, w)
    got = _lloyd_run(backend, X, start, np.full(900, -1), max_iter, tol * D, w)
    assert got[4:6] == want[4:6]             # steps run, why it stopped
    np.testing.assert_array_equal(got[1], want[1])
    for g, r in zip(got[:1] + got[2:4] + got[6:], want[:1] + want[2:4] + want[6:]):
        assert_close(g, r, rtol=1e-10)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("D", [3, 30])   # 30: the dgemm distances, row norms kept per run
@pytest.mark.parametrize("offset", [0.0, 300.0])
@pytest.mark.parametrize("incremental", [False, True])
def test_lloyd_run_is_a_loop_of_lloyd_steps(backend, dtype, D, offset, incremental):
    """Every pass's labels are lloyd_step's from the same centres, also where the bounds
    skip rows (many passes over data without clusters; and far from the origin, where the
    dgemm-form distances lose digits to cancellation and the bounds must allow for it):
    bit for bit, centres, sums and inertia too; with sums moved by the rows that moved
    (incremental), the centres between passes to rounding."""
    from emfast._config import get_backend

    mod = get_backend(backend, "kmeans")
    X, w = _data(np.random.default_rng(D), 700, D, dtype)
    X = (X + offset).astype(dtype)
    start = X[::140].astype(np.float64) + 0.1
    labels, c = np.full(700, -1), start.copy()
    counts, sums = np.empty(5), np.empty((5, D))
    for n in range(1, 13):
        _, inertia = mod.lloyd_step(X, w, c, labels, counts, sums, 1)
        got = _lloyd_run(backend, X, start, np.full(700, -1), n, -1.0, w,
                         incremental=incremental)
        assert got[4:6] == (n, R.MAX_ITER)
        np.testing.assert_array_equal(got[1], labels)
        c = sums / counts[:, None]
        want = (c, counts, sums, inertia)
        if not incremental:
            for a, b in zip(got[:1] + got[2:4] + got[6:], want):
                assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
            continue
        for a, b in zip(got[:1] + got[2:4], want):
            assert_close(a, b, rtol=1e-12)
        # the inertia of dgemm-form distances, which cancel far from the origin: centres a
        # unit in the last place apart move it by about offset^2 / distance units
        assert_close(got[6], inertia, rtol=1e-9)


@pytest.mark.parametrize("weighted", [False, True])
def test_incremental_lloyd_summed_again_is_the_plain_run(weighted):
    """A pass whose moved counts leave some cluster suspect of being empty is summed again
    as lloyd_step sums it; with every pass suspect (the hook), the incremental run is the
    plain one bit for bit."""
    from emfast._config import get_backend

    mod = get_backend("cython", "kmeans")
    X, w = _data(np.random.default_rng(5), 700, 30, np.float64, weighted)
    start = X[::140] + 0.1
    old = mod._set_empty_suspect(2.0)
    try:
        got = _lloyd_run("cython", X, start, np.full(700, -1), 40, 0.0, w, incremental=True)
    finally:
        mod._set_empty_suspect(old)
    want = _lloyd_run("cython", X, start, np.full(700, -1), 40, 0.0, w)
    assert got[4] > 4          # passes with bounds ran
    for a, b in zip(got, want):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


def test_lloyd_run_stops_its_rules(backend):
    X, _, _ = make_blobs(n_samples=700, n_features=3, n_components=4, seed=5)
    start = X[::175] + 0.1          # one row of each blob
    stops = {}
    for max_iter, tol in ((300, 0.0), (300, 1e300), (1, 0.0)):
        got = _lloyd_run(backend, X, start, np.full(700, -1), max_iter, tol)
        stops[got[5]] = got[4]
    assert stops[R.SAME_LABELS] > 1 and stops[R.SMALL_SHIFT] == 1 and stops[R.MAX_ITER] == 1
    # a centre that no row is nearest to: the first step stops, the centres not moved
    far = np.vstack([start[:3], np.full((1, 3), 1e6)])
    got = _lloyd_run(backend, X, far, np.full(700, -1), 300, 0.0)
    assert got[4:6] == (1, R.EMPTY) and got[2][3] == 0.0
    np.testing.assert_array_equal(got[0], far)


def test_lloyd_driver_resumes_after_an_empty_cluster(backend):
    """The driver relocates an empty cluster (scikit-learn's rule) and goes on iterating:
    the result is what a plain Python loop of steps and relocations gives."""
    X, _, _ = make_blobs(n_samples=700, n_features=3, n_components=4, seed=5)
    far = np.vstack([X[::175][:3] + 0.1, np.full((1, 3), 1e6)])
    from emfast._config import get_backend

    mod = get_backend(backend, "kmeans")
    got = _kmeans._lloyd(X, far, None, 300, 0.0, True, mod, 1)
    labels, c, n_iter = np.full(700, -1), far.copy(), 0
    while True:
        n_iter += 1
        labels, counts, sums, changed, inertia = R.lloyd_step(X, c, labels)
        if changed == 0:
            break
        if not np.all(counts > 0):
            _kmeans._relocate_empty(X, None, c, labels, counts, sums)
        c = sums / counts[:, None]
    assert n_iter > 2 and got[3] == n_iter
    np.testing.assert_array_equal(got[1], labels)
    assert_close(got[0], c, rtol=1e-10)
    assert_close(got[2], inertia, rtol=1e-10)


# ------------------------------------------------------------------ threads
@pytest.mark.parametrize("D", [3, 30])
def test_results_do_not_depend_on_the_thread_count(backend, D):
    rng = np.random.default_rng(0)
    X, w = _data(rng, N_THREADED, D)
    centres = rng.normal(scale=2.0, size=(6, D))
    outs = []
    for n_threads in (1, 2, 3):
        closest, pot = kernels.kmeans_plusplus_update(
            X, X[0], np.full(N_THREADED, np.inf), w, backend=backend, n_threads=n_threads)
        pots = kernels.kmeans_plusplus_potentials(X, closest, centres, w, backend=backend,
                                                  n_threads=n_threads)
        step = kernels.kmeans_lloyd_step(X, centres, np.full(N_THREADED, -1), w,
                                         backend=backend, n_threads=n_threads)
        stats = [kernels.kmeans_label_stats(X, centres, ct, None, w, backend=backend,
                                            n_threads=n_threads) for ct in COV_TYPES]
        run = _lloyd_run(backend, X, centres, np.full(N_THREADED, -1), 300, 0.0, w,
                         n_threads)
        values = np.linspace(0.0, pot.sum(), 5, endpoint=False)
        pp = _plusplus_step(backend, X, closest, values, np.zeros(5), w, n_threads)
        outs.append([closest, pot, pots, step[0], step[1], *step[2:],
                     *[a for s in stats for a in s], *run, *pp])
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


@pytest.mark.parametrize("N", [1, 2, 7, 1797, 100_000])
@pytest.mark.parametrize("weighted", [False, True])
def test_draw_row_picks_the_row_choice_picks(N, weighted):
    """kmeans_plusplus's (and the batch's) first row: draw_row, choice_cdf's search with one
    uniform, is RandomState.choice(N, p=p), row and stream."""
    for seed in range(20):
        w = np.random.RandomState(seed + 100).rand(N) if weighted else np.ones(N)
        p = w / w.sum()
        a, b = np.random.RandomState(seed), np.random.RandomState(seed)
        assert a.choice(N, p=p) == _kmeans.draw_row(b, p)
        assert a.random_sample() == b.random_sample()


def test_schedule_does_not_change_results(backend):
    """3.07 MB of rows: the Cython passes run their groups on the dynamic schedule on 1 and
    2 threads and on the static one on 3 (at most 1 MiB of rows per thread)."""
    rng = np.random.default_rng(1)
    X, w = _data(rng, 4000, 96)
    centres = X[:5] + 0.5
    outs = []
    for n_threads in (1, 2, 3):
        closest, pot = kernels.kmeans_plusplus_update(
            X, X[7], np.full(len(X), np.inf), w, backend=backend, n_threads=n_threads)
        pots = kernels.kmeans_plusplus_potentials(X, closest, centres, w, backend=backend,
                                                  n_threads=n_threads)
        stats = kernels.kmeans_label_stats(X, centres, "diag", None, w, backend=backend,
                                           n_threads=n_threads)
        run = _lloyd_run(backend, X, centres, np.full(len(X), -1), 50, 0.0, w, n_threads)
        outs.append([closest, pot, pots, *stats, *run])
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


def test_kmeans_driver_does_not_depend_on_the_thread_count(backend, monkeypatch):
    monkeypatch.setattr(_kmeans, "SAMPLE_ROWS", 2000)   # the sampled path too
    X, _, _ = make_blobs(n_samples=N_THREADED, n_features=4, n_components=5, seed=2)
    runs = [_kmeans.kmeans(X, 5, np.random.RandomState(3), backend=backend, n_threads=n)
            for n in (1, 2, 3)]
    for run in runs[1:]:
        for a, b in zip(runs[0], run):
            assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


# ------------------------------------------------------------------ degenerate data
def test_empty_clusters_get_no_rows_and_zero_sums(backend):
    rng = np.random.default_rng(1)
    X, w = _data(rng, 500, 3)
    centres = np.vstack([rng.normal(size=(3, 3)), np.full((2, 3), 1e6)])
    _, _, labels, counts, sums = kernels.kmeans_lloyd_step(X, centres, np.full(500, -1), w,
                                                           backend=backend)
    assert labels.max() < 3
    np.testing.assert_array_equal(counts[3:], 0.0)
    np.testing.assert_array_equal(sums[3:], 0.0)
    for ct in COV_TYPES:
        _, nk, s1, s2 = kernels.kmeans_label_stats(X, centres, ct, None, w, backend=backend)
        np.testing.assert_array_equal(nk[3:], 0.0)
        np.testing.assert_array_equal(s1[3:], 0.0)


def test_equal_distances_go_to_the_lowest_index(backend):
    X = np.array([[0.0, 0.0], [2.0, 0.0]])
    centres = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    _, _, labels, _, _ = kernels.kmeans_lloyd_step(X, centres, np.full(2, -1),
                                                   backend=backend)
    np.testing.assert_array_equal(labels, [0, 0])


@pytest.mark.parametrize("D", [4, 12])   # a per-D instance of the search, the generic one
@pytest.mark.parametrize("first", [1, 2, 5, 6])
def test_equal_distances_in_any_tile_slot_go_to_the_lowest_index(backend, D, first):
    # the nearest centre is searched in several chains of centres (even and odd slots of
    # 4-centre tiles) merged at the end: the tied copies sit in every slot and tile position
    rng = np.random.default_rng(first)
    X = rng.integers(-3, 4, size=(300, D)).astype(np.float64)
    centres = rng.integers(-3, 4, size=(11, D)).astype(np.float64) + 10.0   # far: never nearest
    centres[first::3] = 0.5                    # equal, each the nearest of many rows
    _, _, labels, _, _ = kernels.kmeans_lloyd_step(X, centres, np.full(300, -1),
                                                   backend=backend)
    np.testing.assert_array_equal(labels, R.lloyd_step(X, centres, np.full(300, -1))[0])
    assert set(labels) == {first}


def test_fewer_distinct_points_than_clusters(backend):
    X = np.repeat(np.array([[0.0, 0.0], [5.0, 5.0]]), 50, axis=0)
    centres, labels, inertia = _kmeans.kmeans(X, 4, np.random.RandomState(0),
                                              backend=backend)
    assert centres.shape == (4, 2) and np.all(np.isfinite(centres))
    assert inertia == 0.0
    np.testing.assert_array_equal(centres[labels], X)
    _, idx = _kmeans.kmeans_plusplus(X, 4, np.random.RandomState(1), backend=backend)
    assert {tuple(X[i]) for i in idx} == {(0.0, 0.0), (5.0, 5.0)}


def _plusplus_rounds(X, K, rng, w, backend):
    """k-means++ round by round through plusplus_step (the loop plusplus_run replaces):
    (indices, closest, block_pot), leaving rng where the rounds leave it."""
    from emfast._config import get_backend

    mod = get_backend(backend, "kmeans")
    N, T = len(X), 2 + int(np.log(K))
    sw = np.empty(0) if w is None else w
    xsq = mod.row_norms(X, 1)
    idx = np.empty(K, dtype=np.int64)
    idx[0] = rng.choice(N, p=np.full(N, 1.0 / N) if w is None else w / w.sum())
    closest, block_pot = np.full(N, np.inf), np.empty(-(-N // 256))
    mod.plusplus_update(X, sw, xsq, X[idx[0]].astype(np.float64), closest, block_pot, 1)
    cand, pots = np.empty(T, dtype=np.int64), np.empty(T)
    for c in range(1, K):
        pot = np.cumsum(block_pot)[-1]
        if pot <= 0:
            cand[:] = rng.choice(N, size=T)
            values = np.empty(0)
        else:
            values = rng.uniform(size=T) * pot
        idx[c] = cand[mod.plusplus_step(X, sw, xsq, closest, block_pot, values, cand, pots,
                                        1)]
    return idx, closest, block_pot


@pytest.mark.parametrize("D", [3, 30])     # 30: the candidates' distances kept (T <= D)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_plusplus_run_is_a_loop_of_plusplus_steps_bit_for_bit(backend, D, weighted, n_threads):
    from emfast._config import get_backend

    mod = get_backend(backend, "kmeans")
    X, w = _data(np.random.default_rng(D), N_THREADED, D, np.float64, weighted)
    K = 12
    want_rng = np.random.RandomState(3)
    want_idx, want_closest, want_pot = _plusplus_rounds(X, K, want_rng, w, backend)
    rng = np.random.RandomState(3)
    idx = np.empty(K, dtype=np.int64)
    idx[0] = rng.choice(len(X), p=np.full(len(X), 1.0 / len(X)) if w is None else w / w.sum())
    sw = np.empty(0) if w is None else w
    xsq = mod.row_norms(X, n_threads)
    closest, block_pot = np.full(len(X), np.inf), np.empty(-(-len(X) // 256))
    mod.plusplus_update(X, sw, xsq, X[idx[0]].copy(), closest, block_pot, n_threads)
    assert mod.plusplus_run(X, sw, xsq, closest, block_pot, rng, 2 + int(np.log(K)), idx,
                            n_threads) == K
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(closest, want_closest)
    np.testing.assert_array_equal(block_pot, want_pot)
    # the draws are RandomState.uniform's: the stream is left where the rounds leave it
    assert rng.randint(1 << 30) == want_rng.randint(1 << 30)


def test_plusplus_with_no_potential_left_draws_as_round_by_round(backend):
    """Three distinct rows, six centres: the rounds stop having rows to draw by their
    potential, and the driver goes on round by round from the same random stream."""
    X = np.repeat(np.array([[0.0, 0.0], [5.0, 5.0], [0.0, 9.0]]), 40, axis=0)
    for seed in range(4):
        want_idx = _plusplus_rounds(X, 6, want_rng := np.random.RandomState(seed), None,
                                    backend)[0]
        _, idx = _kmeans.kmeans_plusplus(X, 6, rng := np.random.RandomState(seed),
                                         backend=backend)
        np.testing.assert_array_equal(idx, want_idx)
        assert rng.randint(1 << 30) == want_rng.randint(1 << 30)   # the stream left alike


def test_zero_weight_rows_are_not_seeds_and_do_not_count(backend):
    X, _, _ = make_blobs(n_samples=300, n_features=2, n_components=3, seed=4)
    X = np.vstack([X, np.full((20, 2), 1e4)])
    w = np.r_[np.ones(300), np.zeros(20)]
    for seed in range(5):
        _, idx = _kmeans.kmeans_plusplus(X, 3, np.random.RandomState(seed), w,
                                         backend=backend)
        assert np.all(idx < 300)
    _, inertia, _, counts, _ = kernels.kmeans_lloyd_step(X, X[:3], np.full(320, -1), w,
                                                         backend=backend)
    assert counts.sum() == 300.0 and np.isfinite(inertia)


# ------------------------------------------------------------------ the driver
@pytest.mark.parametrize("seed", [0, 1, 5])
def test_kmeans_plusplus_picks_sklearns_rows(backend, seed):
    """The same random state draws the same random numbers: the same seeds."""
    cluster = pytest.importorskip("sklearn.cluster")
    X, _, _ = make_blobs(n_samples=2000, n_features=3, n_components=6, seed=seed)
    w = np.random.default_rng(seed).uniform(0.5, 2.0, size=len(X))
    for sw in (None, w):
        _, want = cluster.kmeans_plusplus(X, 6, random_state=np.random.RandomState(seed),
                                          sample_weight=sw)
        _, got = _kmeans.kmeans_plusplus(X, 6, np.random.RandomState(seed), sw,
                                         backend=backend)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("seed", [0, 1, 3])
def test_kmeans_ends_where_sklearns_kmeans_ends(backend, seed):
    """Same random state: the same k-means++ start and the same Lloyd iterations."""
    cluster = pytest.importorskip("sklearn.cluster")
    X, _, _ = make_blobs(n_samples=1200, n_features=3, n_components=4, seed=7)
    want = cluster.KMeans(4, n_init=1, random_state=seed).fit(X)
    got, labels, inertia = _kmeans.kmeans(X, 4, np.random.RandomState(seed), backend=backend)
    np.testing.assert_array_equal(labels, want.labels_)
    np.testing.assert_allclose(got, want.cluster_centers_, rtol=1e-10)
    np.testing.assert_allclose(inertia, want.inertia_, rtol=1e-10)


def test_n_init_keeps_the_lowest_inertia(backend):
    X, _, _ = make_blobs(n_samples=600, n_features=2, n_components=6, separation=2.0,
                         seed=3)
    rng = np.random.RandomState(11)
    single = []
    for _ in range(4):   # the same stream, one start at a time
        single.append(_kmeans.kmeans(X, 6, rng, backend=backend)[2])
    assert len(set(single)) > 1, "the starts should differ for this test to mean anything"
    best = _kmeans.kmeans(X, 6, np.random.RandomState(11), n_init=4, backend=backend)
    assert best[2] == min(single)


def test_sampled_kmeans_ends_at_a_full_data_fixed_point(backend, monkeypatch):
    monkeypatch.setattr(_kmeans, "SAMPLE_ROWS", 500)
    X, y, _ = make_blobs(n_samples=5000, n_features=3, n_components=4, seed=8)
    centres, labels, inertia = _kmeans.kmeans(X, 4, np.random.RandomState(0),
                                              backend=backend)
    step = kernels.kmeans_lloyd_step(X, centres, labels.copy(), backend=backend)
    assert step[0] == 0                      # the labels are the nearest centres
    assert_close(step[1], inertia, rtol=1e-12)
    from conftest import label_agreement

    assert label_agreement(labels, y) == 1.0


# ------------------------------------------------------------------ bad input
def _bad_calls(X, C):
    N, D = X.shape
    cl = np.full(N, np.inf)
    lab = np.full(N, -1, dtype=np.int64)
    return {
        "int X": lambda: kernels.kmeans_lloyd_step(X.astype(int), C, lab.copy()),
        "1-D X": lambda: kernels.kmeans_lloyd_step(X[:, 0], C, lab.copy()),
        "no features": lambda: kernels.kmeans_lloyd_step(np.empty((N, 0)), C[:, :0],
                                                         lab.copy()),
        "centres of another width": lambda: kernels.kmeans_lloyd_step(X, C[:, :1], lab.copy()),
        "no centres": lambda: kernels.kmeans_lloyd_step(X, C[:0], lab.copy()),
        "NaN centre": lambda: kernels.kmeans_lloyd_step(X, np.where(C == C[0, 0], np.nan, C),
                                                        lab.copy()),
        "int32 labels": lambda: kernels.kmeans_lloyd_step(X, C, lab.astype(np.int32)),
        "short labels": lambda: kernels.kmeans_lloyd_step(X, C, lab[1:].copy()),
        "read-only labels": lambda: kernels.kmeans_lloyd_step(X, C, _readonly(lab)),
        "negative weight": lambda: kernels.kmeans_lloyd_step(X, C, lab.copy(),
                                                             -np.ones(N)),
        "NaN weight": lambda: kernels.kmeans_lloyd_step(X, C, lab.copy(),
                                                        np.full(N, np.nan)),
        "short weights": lambda: kernels.kmeans_lloyd_step(X, C, lab.copy(), np.ones(N - 1)),
        "wrong counts out": lambda: kernels.kmeans_lloyd_step(X, C, lab.copy(),
                                                              out=(np.empty(1), None)),
        "float32 closest": lambda: kernels.kmeans_plusplus_update(X, C[0],
                                                                  cl.astype(np.float32)),
        "read-only closest": lambda: kernels.kmeans_plusplus_update(X, C[0], _readonly(cl)),
        "centre of another width": lambda: kernels.kmeans_plusplus_update(X, C[0, :1], cl),
        "short closest": lambda: kernels.kmeans_plusplus_potentials(X, cl[1:], C),
        "1-D candidates": lambda: kernels.kmeans_plusplus_potentials(X, cl, C[0]),
        "unknown covariance type": lambda: kernels.kmeans_label_stats(X, C, "round"),
        "float labels": lambda: kernels.kmeans_label_stats(X, C, "full", lab * 1.0),
        "labels of another length": lambda: kernels.kmeans_label_stats(X, C, "full", lab[1:]),
        "huge unsigned labels": lambda: kernels.kmeans_label_stats(
            X, C, "full", np.full(N, 2**64 - 1, dtype=np.uint64)),
        "unsigned labels of 2**63": lambda: kernels.kmeans_label_stats(  # float64 == 2**63 - 1
            X, C, "full", np.full(N, 2**63, dtype=np.uint64)),
        "unknown backend": lambda: kernels.kmeans_lloyd_step(X, C, lab.copy(),
                                                             backend="fortran"),
    }


def _readonly(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def test_bad_input_raises_a_clear_error():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    C = rng.normal(size=(4, 3))
    X0, C0 = X.copy(), C.copy()
    for name, call in _bad_calls(X, C).items():
        with pytest.raises((ValueError, TypeError)):
            call()
            pytest.fail(f"no error for {name}")
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(C, C0)


def test_empty_x_is_fine(backend):
    X = np.empty((0, 3))
    C = np.ones((2, 3))
    changed, inertia, labels, counts, sums = kernels.kmeans_lloyd_step(
        X, C, np.empty(0, dtype=np.int64), backend=backend)
    assert (changed, inertia) == (0, 0.0)
    np.testing.assert_array_equal(counts, 0.0)
    closest, pot = kernels.kmeans_plusplus_update(X, C[0], np.empty(0), backend=backend)
    assert pot.shape == (0,)
    _, nk, s1, s2 = kernels.kmeans_label_stats(X, C, "full", None, backend=backend)
    np.testing.assert_array_equal(s2, 0.0)


# ------------------------------------------------------------------ the mixture's start
@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_mixture_with_sampled_kmeans_start(backend, covariance_type, monkeypatch):
    """More rows than SAMPLE_ROWS: k-means on a sample, then one statistics pass over all
    rows. The fit finds the clusters, and does not depend on the thread count."""
    import emfast
    from conftest import label_agreement

    monkeypatch.setattr(_kmeans, "SAMPLE_ROWS", 700)
    X, y, _ = make_blobs(n_samples=N_THREADED, n_features=3, n_components=4, seed=9)
    fits = [emfast.GaussianMixture(4, covariance_type=covariance_type, random_state=2,
                                   backend=backend, n_threads=n, max_iter=0).fit(X)
            for n in (1, 2)]
    for name in ("weights_", "means_", "covariances_"):
        assert getattr(fits[0], name).tobytes() == getattr(fits[1], name).tobytes(), name
    # the starting means already separate the clusters
    nearest = kernels.kmeans_label_stats(X, fits[0].means_, "diag")[0]
    assert label_agreement(nearest, y) == 1.0
    fit = emfast.GaussianMixture(4, covariance_type=covariance_type, random_state=2,
                                 backend=backend).fit(X)
    assert label_agreement(fit.predict(X), y) == 1.0


@settings(max_examples=60, deadline=None)
@given(N=st.integers(1, 200), D=st.integers(1, 5), levels=st.integers(1, 1000),
       seed=st.integers(0, 2**31 - 1))
def test_lexicographic_order_is_lexsort(N, D, levels, seed):
    """The one-sort shortcut gives np.lexsort's order exactly, with ties in the first column
    (few levels) and without (many)."""
    X = np.random.default_rng(seed).integers(0, levels, size=(N, D)).astype(np.float64)
    np.testing.assert_array_equal(_kmeans._lexicographic_order(X), np.lexsort(X.T[::-1]))
