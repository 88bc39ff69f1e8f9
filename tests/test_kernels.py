"""Every kernel backend against the NumPy reference, and thread-count independence."""

import numpy as np
import pytest

import reference
from conftest import random_params
from emfast.kernels import gaussian_estep_stats, gaussian_log_prob, gaussian_weighted_stats

COV_TYPES = reference.COV_TYPES
# Sizes straddle the row-block size (256) and the code paths: small/large D, and many
# components with few features (the "dense" statistics path); (262, 9, 2) ends on a block
# whose row count and feature count are no multiples of the 4 x 4 transpose tiles;
# full covariances in the Cython kernels centre the rows as they load them up to D = 16
# (EMFAST_GFLY_MAX_D; (257, 16, 3) the widest, with 8-column transform tiles), store them
# centred from D = 17 ((2049, 24, 3), (300, 40, 13)).
SHAPES = [(1, 1, 1), (7, 3, 2), (300, 2, 5), (1000, 10, 4), (2049, 24, 3), (513, 5, 1),
          (600, 3, 12), (700, 12, 9), (262, 9, 2), (300, 40, 13), (257, 16, 3)]


def _data(shape, covariance_type, dtype, seed=0):
    N, D, K = shape
    rng = np.random.default_rng(seed)
    means, pc, lc = random_params(rng, K, D, covariance_type)
    X = (means[rng.integers(K, size=N)] + rng.normal(size=(N, D))).astype(dtype)
    return X, means, pc, lc, rng


def _rtol(dtype):
    return 1e-10 if dtype == np.float64 else 1e-4


@pytest.mark.parametrize("covariance_type", ["full", "spherical"])
def test_schedule_does_not_change_results(backend, covariance_type):
    """3.07 MB of rows: the Cython passes run their groups on the dynamic schedule on 1 and
    2 threads and on the static one on 3 (at most 1 MiB of rows per thread); the sums are
    the same to the bit."""
    X, means, pc, lc, rng = _data((4000, 96, 3), covariance_type, np.float64, seed=5)
    sw = rng.uniform(0, 2, size=len(X))
    runs = [gaussian_estep_stats(X, means, pc, covariance_type, lc, sw, backend=backend,
                                 n_threads=n) for n in (1, 2, 3)]
    for other in runs[1:]:
        assert runs[0][0] == other[0]
        for a, b in zip(runs[0][1:], other[1:]):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("covariance_type", COV_TYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted", [False, True])
def test_estep_stats_matches_reference(backend, covariance_type, shape, dtype, weighted):
    X, means, pc, lc, rng = _data(shape, covariance_type, dtype)
    sw = rng.uniform(0, 3, size=len(X)) if weighted else None
    X_before = X.copy()
    got = gaussian_estep_stats(X, means, pc, covariance_type, lc, sw, backend=backend, n_threads=2)
    # The reference sees exactly the values the kernel saw (float32 rounded to float64).
    want = reference.estep_stats(X.astype(np.float64), sw, lc, means, pc, covariance_type)
    rtol = 1e-10 if dtype == np.float64 else 1e-6
    scale_nk = np.sum(sw) if weighted else len(X)
    assert np.isclose(got[0], want[0], rtol=rtol, atol=rtol * abs(want[0]))
    np.testing.assert_allclose(got[1], want[1], rtol=rtol, atol=rtol * scale_nk)
    for g, w in zip(got[2:], want[2:]):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * np.abs(w).max() + 1e-300)
    np.testing.assert_array_equal(X, X_before)


@pytest.mark.parametrize("covariance_type", COV_TYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_log_prob_matches_reference(backend, covariance_type, shape, dtype):
    X, means, pc, lc, _ = _data(shape, covariance_type, dtype, seed=1)
    lp, resp, norm = reference.log_prob_resp(X.astype(np.float64), lc, means, pc, covariance_type)
    out, out_norm = gaussian_log_prob(X, means, pc, covariance_type, lc, backend=backend)
    rtol = 1e-10 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(out, lp, rtol=rtol, atol=rtol * np.abs(lp).max())
    np.testing.assert_allclose(out_norm, norm, rtol=rtol, atol=rtol * np.abs(norm).max())
    r, n2 = gaussian_log_prob(X, means, pc, covariance_type, lc, responsibilities=True,
                              backend=backend)
    np.testing.assert_allclose(r, resp, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(r.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(n2, out_norm)


# Shapes for norm=False: one block and a partial one, many components (K >= 8), and the
# dgemm path for full (D >= 10).
NORM_SHAPES = [(7, 3, 2), (600, 3, 12), (2049, 24, 3)]


@pytest.mark.parametrize("covariance_type", COV_TYPES)
@pytest.mark.parametrize("shape", NORM_SHAPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_log_prob_without_norm_is_bit_identical(backend, covariance_type, shape, dtype):
    """norm=False skips the log-sum-exp; the log-densities are exactly those of norm=True."""
    X, means, pc, lc, _ = _data(shape, covariance_type, dtype, seed=9)
    want, want_norm = gaussian_log_prob(X, means, pc, covariance_type, lc, backend=backend,
                                        n_threads=2)
    assert want_norm is not None
    got, got_norm = gaussian_log_prob(X, means, pc, covariance_type, lc, norm=False,
                                      backend=backend, n_threads=2)
    assert got_norm is None
    np.testing.assert_array_equal(got, want)
    # in place too
    out = np.full(want.shape, np.nan)
    got2, got2_norm = gaussian_log_prob(X, means, pc, covariance_type, lc, norm=False, out=out,
                                        backend=backend, n_threads=2)
    assert got2 is out and got2_norm is None
    np.testing.assert_array_equal(out, want)


def test_log_prob_without_norm_empty_input(backend):
    X, means, pc, lc, _ = _data((5, 3, 2), "diag", np.float64)
    out, norm = gaussian_log_prob(X[:0], means, pc, "diag", lc, norm=False, backend=backend)
    assert out.shape == (0, 2) and norm is None


def test_log_prob_without_norm_rejects_responsibilities(backend):
    X, means, pc, lc, _ = _data((300, 3, 4), "full", np.float64)
    with pytest.raises(ValueError, match="responsibilities"):
        gaussian_log_prob(X, means, pc, "full", lc, responsibilities=True, norm=False,
                          backend=backend)
    with pytest.raises(ValueError, match="out_norm"):
        gaussian_log_prob(X, means, pc, "full", lc, norm=False, out_norm=np.empty(len(X)),
                          backend=backend)
    # the backend contract: out_norm of shape (0,) means "not wanted", never with resp
    from emfast._config import get_backend
    from emfast.kernels import _params

    code, K, _, m, p, c = _params(X, means, pc, "full", lc)
    with pytest.raises(ValueError, match="responsibilities"):
        get_backend(backend).log_prob(X, c, m, p, code, np.empty((len(X), K)), np.empty(0),
                                      True, 1)


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_float32_input_matches_float64_reference(backend, covariance_type):
    """float32 data against the float64 reference on float64 data: 1e-4 relative."""
    X, means, pc, lc, _ = _data((1500, 6, 4), covariance_type, np.float64, seed=4)
    want = reference.estep_stats(X, None, lc, means, pc, covariance_type)
    got = gaussian_estep_stats(X.astype(np.float32), means, pc, covariance_type, lc,
                               backend=backend)
    assert np.isclose(got[0], want[0], rtol=1e-4)
    for g, w in zip(got[1:], want[1:]):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4 * np.abs(w).max())


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_thread_count_does_not_change_results(backend, covariance_type):
    X, means, pc, lc, rng = _data((5000, 7, 6), covariance_type, np.float64, seed=2)
    sw = rng.uniform(0, 2, size=len(X))
    one = gaussian_estep_stats(X, means, pc, covariance_type, lc, sw, backend=backend, n_threads=1)
    for n in (2, 3):
        other = gaussian_estep_stats(X, means, pc, covariance_type, lc, sw, backend=backend,
                                     n_threads=n)
        assert one[0] == other[0]
        for a, b in zip(one[1:], other[1:]):
            np.testing.assert_array_equal(a, b)
    lp1 = gaussian_log_prob(X, means, pc, covariance_type, lc, backend=backend, n_threads=1)
    lp2 = gaussian_log_prob(X, means, pc, covariance_type, lc, backend=backend, n_threads=2)
    np.testing.assert_array_equal(lp1[0], lp2[0])
    np.testing.assert_array_equal(lp1[1], lp2[1])


@pytest.mark.parametrize("covariance_type", COV_TYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_estep_with_the_blocks_kept_for_a_fit_is_bit_identical(backend, covariance_type,
                                                               shape, dtype):
    """The E-steps of a fit read X's blocks from estep_blocks (loaded once) where the backend
    keeps them: the same statistics, bit for bit, on any thread count."""
    from emfast import kernels
    from emfast._config import get_backend

    mod = get_backend(backend)
    X, means, pc, lc, rng = _data(shape, covariance_type, dtype)
    sw = rng.uniform(0, 3, size=len(X))
    code = kernels._cov_code(covariance_type)
    blocks = mod.estep_blocks(X, 2)
    if backend == "cython":
        assert blocks is not None and blocks.dtype == np.float64
    outs = []
    for b, n_threads in ((None, 1), (blocks, 1), (blocks, 2)):
        nk, s1 = np.empty(len(means)), np.empty(means.shape)
        s2 = np.empty(kernels.prec_chol_shape(covariance_type, *means.shape))
        ll = mod.estep_stats(X, sw, lc, means, pc, code, nk, s1, s2, n_threads, b)
        outs.append([np.float64(ll), nk, s1, s2])
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            assert a.tobytes() == b.tobytes()


def test_estep_blocks_only_for_small_x():
    """The copy is kept for small X only (its size is added to the fit's memory)."""
    from emfast._config import get_backend

    mod = get_backend("cython")
    assert mod.estep_blocks(np.zeros((4000, 64)), 1).nbytes < 8 * 2**20
    assert mod.estep_blocks(np.zeros((40000, 64)), 1) is None   # ~11 MB
    assert mod.estep_blocks(np.zeros((0, 3)), 1) is None
    X = np.ones((300, 3))
    with pytest.raises(ValueError, match="blocks"):
        mod.estep_stats(X, np.empty(0), np.zeros(2), np.zeros((2, 3)), np.ones(2), 3,
                        np.empty(2), np.empty((2, 3)), np.empty(2), 1,
                        mod.estep_blocks(X[:256], 1))


def test_backends_agree():
    from emfast._config import available_backends

    if len(available_backends()) < 2:
        pytest.skip("only one backend is built")  # the CI build has both; see test_build.py
    X, means, pc, lc, _ = _data((3000, 5, 4), "full", np.float64, seed=3)
    a = gaussian_estep_stats(X, means, pc, "full", lc, backend="cython")
    b = gaussian_estep_stats(X, means, pc, "full", lc, backend="numba")
    assert np.isclose(a[0], b[0], rtol=1e-12)
    for x, y in zip(a[1:], b[1:]):
        np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-10 * np.abs(y).max())


def test_far_apart_components_do_not_underflow(backend):
    """log-sum-exp with the row max: rows far from every mean still get finite values."""
    X = np.array([[1e3, -1e3], [0.0, 0.0]])
    means = np.array([[0.0, 0.0], [1.0, 1.0]])
    pc = np.ones((2, 2))
    from emfast.kernels import log_normalizer

    lc = log_normalizer(pc, "diag", 2, np.log([0.5, 0.5]))
    ll, nk, s1, s2 = gaussian_estep_stats(X, means, pc, "diag", lc, backend=backend)
    assert np.isfinite(ll) and np.all(np.isfinite(nk)) and np.isclose(nk.sum(), 2.0)
    r, norm = gaussian_log_prob(X, means, pc, "diag", lc, responsibilities=True, backend=backend)
    assert np.all(np.isfinite(r)) and np.allclose(r.sum(axis=1), 1.0)


# --------------------------------------------------------------------------------------------
# gaussian_weighted_stats: the statistics for given responsibilities (HMM emissions)


def _resp(rng, N, K):
    """Arbitrary non-negative weights (rows need not sum to 1), a few exact zeros."""
    resp = rng.uniform(0, 2, size=(N, K))
    resp[rng.uniform(size=(N, K)) < 0.1] = 0.0
    return resp


@pytest.mark.parametrize("covariance_type", COV_TYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_weighted_stats_matches_reference(backend, covariance_type, shape, dtype):
    X, means, _, _, rng = _data(shape, covariance_type, dtype, seed=5)
    resp = _resp(rng, len(X), means.shape[0])
    X_before, resp_before = X.copy(), resp.copy()
    got = gaussian_weighted_stats(X, resp, means, covariance_type, backend=backend, n_threads=2)
    want = reference.weighted_stats(X.astype(np.float64), resp, means, covariance_type)
    rtol = 1e-10 if dtype == np.float64 else 1e-6
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == np.float64
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * np.abs(w).max() + 1e-300)
    if covariance_type in ("full", "tied"):  # both triangles, exactly symmetric
        np.testing.assert_array_equal(got[2], np.swapaxes(got[2], -1, -2))
    np.testing.assert_array_equal(X, X_before)
    np.testing.assert_array_equal(resp, resp_before)


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_weighted_stats_out_is_overwritten(backend, covariance_type):
    X, means, pc, _, rng = _data((700, 5, 3), covariance_type, np.float64, seed=6)
    resp = _resp(rng, len(X), 3)
    out = tuple(np.full(a.shape, np.nan) for a in
                (np.empty(3), np.empty((3, 5)), np.empty(pc.shape)))
    got = gaussian_weighted_stats(X, resp, means, covariance_type, out=out, backend=backend)
    assert all(g is o for g, o in zip(got, out))
    want = gaussian_weighted_stats(X, resp, means, covariance_type, backend=backend)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_weighted_stats_thread_count_does_not_change_results(backend, covariance_type):
    X, means, _, _, rng = _data((5000, 7, 6), covariance_type, np.float64, seed=7)
    resp = _resp(rng, len(X), 6)
    one = gaussian_weighted_stats(X, resp, means, covariance_type, backend=backend, n_threads=1)
    for n in (2, 3):
        other = gaussian_weighted_stats(X, resp, means, covariance_type, backend=backend,
                                        n_threads=n)
        for a, b in zip(one, other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("covariance_type", COV_TYPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_weighted_stats_of_estep_responsibilities_equal_estep_stats(backend, covariance_type,
                                                                    dtype):
    """Fed the E-step's own responsibilities times the sample weights, the statistics are
    those of gaussian_estep_stats (to rounding: the kernels sum in their own orders)."""
    X, means, pc, lc, rng = _data((3000, 6, 4), covariance_type, dtype, seed=8)
    sw = rng.uniform(0, 3, size=len(X))
    resp, _ = gaussian_log_prob(X, means, pc, covariance_type, lc, responsibilities=True,
                                backend=backend)
    _, *want = gaussian_estep_stats(X, means, pc, covariance_type, lc, sw, backend=backend)
    got = gaussian_weighted_stats(X, resp * sw[:, None], means, covariance_type,
                                  backend=backend)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-10 * np.abs(w).max())
