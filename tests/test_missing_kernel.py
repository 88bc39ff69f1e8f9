"""The missing-value E-step kernel (emfast.kernels.missing_estep), both backends, against the
row-by-row NumPy reference (tests/reference_missing.py)."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from conftest import assert_close
from reference_missing import missing_estep as reference
from emfast._layout import MISSING_RUN_MIN
from emfast._patterns import pattern_order
from emfast.kernels import missing_estep


def _problem(seed, N, D, K, frac, dtype=np.float64):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(D, D))
    cov = A @ A.T + D * np.eye(D)
    X = rng.multivariate_normal(np.zeros(D), cov, size=N)
    X[rng.random((N, D)) < frac] = np.nan
    if N > 3:
        X[3] = np.nan            # a row missing everywhere
    means = rng.normal(size=(K, D))
    covs = np.stack([cov * (1 + 0.3 * k) for k in range(K)])
    weights = rng.dirichlet(np.ones(K))
    return X.astype(dtype), means, covs, weights, rng


def _check_every_output(backend, X, means, covs, weights, rng):
    """Every output of the kernel against the reference, with random sample weights (and
    noise draws when K = 1)."""
    N, D = X.shape
    sw = rng.random(N)
    noise = rng.normal(size=(N, D)) if means.shape[0] == 1 else None
    got = missing_estep(X, means, covs, weights, sw, filled=True, logp=True, resp=True,
                        noise=noise, backend=backend)
    want = reference(X, sw, np.log(weights), means, covs, noise)
    for name, g, w in zip(["loglik", "nk", "s1", "s2", "filled", "logp", "resp"], got, want):
        assert_close(g, w, rtol=1e-9, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("N,D,K,frac", [(60, 4, 1, 0.3), (700, 5, 3, 0.4), (300, 1, 2, 0.5),
                                         (600, 7, 2, 0.0), (530, 3, 1, 0.9)])
def test_matches_reference(backend, dtype, N, D, K, frac):
    X, means, covs, weights, rng = _problem(N + D + K, N, D, K, frac, dtype)
    _check_every_output(backend, X, means, covs, weights, rng)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_every_number_of_missing_coordinates(backend, dtype):
    """Rows with each number m of missing coordinates from 0 to D (the Cython kernel has a
    compile-time body for each small m and a general one beyond), in any order, with
    weights and noise, against the reference; the same pattern repeated in a run too."""
    D = 15
    X, means, covs, _, rng = _problem(23, 4 * (D + 1), D, 1, 0.0, dtype)
    for n in range(len(X)):
        X[n, rng.permutation(D)[:n % (D + 1)]] = np.nan
    X = np.concatenate([X[rng.permutation(len(X))], np.repeat(X[5:8], 3, axis=0)])
    N = len(X)
    sw, noise = rng.random(N), rng.normal(size=(N, D))
    got = missing_estep(X, means, covs, None, sw, filled=True, logp=True, resp=True,
                        noise=noise, backend=backend)
    want = reference(X, sw, np.zeros(1), means, covs, noise)
    for name, g, w in zip(["loglik", "nk", "s1", "s2", "filled", "logp", "resp"], got, want):
        assert_close(g, w, rtol=1e-9, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("outputs", ["none", "filled", "noise"])
def test_one_component_without_row_log_densities(backend, dtype, outputs):
    """K = 1 without logp or resp: the log-likelihood's quadratic terms come as one trace per
    block instead of one Mahalanobis distance per row. Rows with every number of missing
    coordinates, shuffled, several blocks, weights; against the reference and against the
    same call asking for logp (the per-row route)."""
    D = 9
    X, means, covs, _, rng = _problem(29, 1200, D, 1, 0.0, dtype)
    for n in range(len(X)):
        X[n, rng.permutation(D)[:n % (D + 1)]] = np.nan
    X = X[rng.permutation(len(X))]
    N = len(X)
    sw = rng.random(N)
    noise = rng.normal(size=(N, D)) if outputs == "noise" else None
    got = missing_estep(X, means, covs, None, sw, filled=outputs != "none", noise=noise,
                        backend=backend)
    want = reference(X, sw, np.zeros(1), means, covs, noise)
    for name, g, w in zip(["loglik", "nk", "s1", "s2", "filled"], got, want):
        assert_close(g, w, rtol=1e-9, err_msg=name)
    per_row = missing_estep(X, means, covs, None, sw, filled=outputs != "none", logp=True,
                            noise=noise, backend=backend)
    for g, w in zip(got, per_row):
        assert_close(g, w, rtol=1e-11)


def test_sorted_and_unsorted_rows_agree(backend):
    """Grouping rows by pattern is an optimisation: the statistics and each row's own
    outputs are the same up to rounding (sorted, the long runs of one pattern take the
    subspace path, whose arithmetic differs from the per-row path's)."""
    X, means, covs, weights, _ = _problem(5, 2000, 6, 2, 0.3)
    order, n_patterns = pattern_order(np.isnan(X))
    assert 1 < n_patterns < len(X)
    a = missing_estep(X, means, covs, weights, filled=True, logp=True, resp=True,
                      backend=backend)
    b = missing_estep(X[order], means, covs, weights, filled=True, logp=True, resp=True,
                      backend=backend)
    for g, w in zip(a[:4], b[:4]):
        assert_close(g, w, rtol=1e-11)
    for g, w in zip(a[4:], b[4:]):
        assert_close(g[order], w, rtol=1e-11)


def _runs_problem(seed, lengths, D, K, dtype=np.float64):
    """Rows in runs of one missing pattern each, of the given lengths: the first run has
    nothing missing, the second everything, the others a random nonempty pattern each."""
    X, means, covs, weights, rng = _problem(seed, sum(lengths), D, K, 0.0, dtype)
    n = 0
    for i, length in enumerate(lengths):
        miss = np.zeros(D, bool) if i == 0 else np.ones(D, bool) if i == 1 else \
            rng.permutation(np.arange(D) < rng.integers(1, D))
        X[n:n + length, miss] = np.nan
        n += length
    return X, means, covs, weights, rng


# Runs around the subspace path's threshold, one crossing blocks and groups of the kernels'
# layout (256 rows each here), short runs between the long ones, and a long run missing
# everywhere (always the per-row path).
RUN_LENGTHS = [300, 40, 5, MISSING_RUN_MIN - 1, MISSING_RUN_MIN, MISSING_RUN_MIN + 1, 1, 1, 2,
               700, 3, 64, 290]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("K", [1, 3])
@pytest.mark.parametrize("D", [5, 20])     # 20: subspaces past the block code's small sizes
def test_runs_of_one_pattern_match_reference(backend, dtype, K, D):
    X, means, covs, weights, rng = _runs_problem(K + D, RUN_LENGTHS, D, K, dtype)
    _check_every_output(backend, X, means, covs, weights, rng)


@pytest.mark.parametrize("K", [1, 3])
def test_long_runs_agree_with_the_per_row_path(backend, K):
    """Runs longer than a block of the subspace path, within groups of several blocks
    (20k rows: 64 groups), against the same rows shuffled (no long runs: the per-row path,
    which the tests above hold to the reference); every output, sample weights."""
    X, means, covs, weights, rng = _runs_problem(K + 20, [6000, 30, 9000, 4000, 1000], 4, K)
    N, D = X.shape
    sw = rng.random(N)
    noise = rng.normal(size=(N, D)) if K == 1 else None
    perm = rng.permutation(N)
    a = missing_estep(X, means, covs, weights, sw, filled=True, logp=True, resp=True,
                      noise=noise, backend=backend)
    b = missing_estep(X[perm], means, covs, weights, sw[perm], filled=True, logp=True,
                      resp=True, noise=None if noise is None else noise[perm], backend=backend)
    for g, w in zip(a[:4], b[:4]):
        assert_close(g, w, rtol=1e-10)
    for g, w in zip(a[4:], b[4:]):
        assert_close(g[perm], w, rtol=1e-10)


def _mixed_rows(seed, N, D, K, runs):
    """Rows missing from nothing to nearly everything (a row's own rate up to 0.95), in runs
    of one pattern of 1 .. runs rows (all shorter than the subspace path's threshold)."""
    X, means, covs, weights, rng = _problem(seed, N, D, K, 0.0)
    X[rng.random((N, D)) < rng.uniform(0, 0.95, size=(N, 1))] = np.nan
    X = np.repeat(X, rng.integers(1, runs + 1, size=N), axis=0)[:N]
    return X, means, covs, weights, rng


@pytest.mark.parametrize("K", [1, 2])
def test_many_missing_in_wide_rows(backend, K):
    """40 coordinates, rows with every number missing, in short runs: in the Cython kernel
    the patterns of more than 16 missing (factored one at a time, the others in SIMD lanes)
    fill its store of factors before a segment of 256 rows ends, so segments end early and
    runs continue across their ends; every output against the reference."""
    X, means, covs, weights, rng = _mixed_rows(K + 41, 1500, 40, K, 5)
    _check_every_output(backend, X, means, covs, weights, rng)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_row_order_does_not_change_filled_rows(backend, dtype):
    """K = 1 without logp and resp, no long runs: a row's filled values (conditional mean and
    noise draw) depend on its own values and pattern only -- bit for bit whatever the rows
    around it, so whichever batch of SIMD lanes its pattern's factor shared in the Cython
    kernel (shuffled rows, short runs, every number missing)."""
    X, means, covs, _, rng = _mixed_rows(43, 3000, 14, 1, 3)
    X = X.astype(dtype)
    noise = rng.normal(size=X.shape)
    perm = rng.permutation(len(X))
    a = missing_estep(X, means, covs, filled=True, noise=noise, backend=backend)
    b = missing_estep(X[perm], means, covs, filled=True, noise=noise[perm], backend=backend)
    np.testing.assert_array_equal(a[4][perm], b[4])


def test_complete_data_is_the_gaussian_estep(backend):
    """Without NaN the kernel is the ordinary full-covariance E-step."""
    from emfast.kernels import gaussian_estep_stats, log_normalizer

    X, means, covs, weights, _ = _problem(7, 900, 4, 3, 0.0)
    X[3] = 0.5                                      # _problem's row missing everywhere
    prec_chol = np.swapaxes(np.linalg.inv(np.linalg.cholesky(covs)), 1, 2)  # U U' = Sigma^-1
    log_const = log_normalizer(prec_chol, "full", 4, np.log(weights))
    want = gaussian_estep_stats(X, means, prec_chol, "full", log_const, backend=backend)
    got = missing_estep(X, means, covs, weights, backend=backend)
    for g, w in zip(got, want):
        assert_close(g, w, rtol=1e-9)


@pytest.mark.parametrize("K,row_outputs", [(1, True), (1, False), (3, True)])
@pytest.mark.parametrize("sort", [False, True])
def test_thread_count_does_not_change_results(backend, K, row_outputs, sort):
    """Bit for bit; K = 1 without logp and resp takes its own per-row route (a trace per
    block for the log-likelihood)."""
    X, means, covs, weights, _ = _problem(11, 20_000, 5, K, 0.3)
    if sort:                                        # runs of one pattern: the subspace path
        X = X[pattern_order(np.isnan(X))[0]]
    one = missing_estep(X, means, covs, weights, filled=True, logp=row_outputs,
                        resp=row_outputs, backend=backend, n_threads=1)
    for n in (2, 3):
        many = missing_estep(X, means, covs, weights, filled=True, logp=row_outputs,
                             resp=row_outputs, backend=backend, n_threads=n)
        for a, b in zip(one, many):
            np.testing.assert_array_equal(a, b)


def test_backends_agree():
    X, means, covs, weights, _ = _problem(13, 3000, 6, 2, 0.25)
    a = missing_estep(X, means, covs, weights, filled=True, backend="cython")
    b = missing_estep(X, means, covs, weights, filled=True, backend="numba")
    for g, w in zip(a, b):
        assert_close(g, w, rtol=1e-12)


def test_inputs_not_modified(backend):
    X, means, covs, weights, _ = _problem(17, 400, 3, 2, 0.3)
    copies = [a.copy() for a in (X, means, covs, weights)]
    missing_estep(X, means, covs, weights, filled=True, backend=backend)
    for a, c in zip((X, means, covs, weights), copies):
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("bad,match", [
    (dict(X=np.array([[1.0, np.inf]])), "infinity"),
    (dict(means=np.zeros((1, 3))), "means must have shape"),
    (dict(covariances=-np.eye(2)[None]), "positive-definite"),
    (dict(covariances=np.eye(2)), "covariances must have shape"),
    (dict(means=np.zeros((2, 2)), covariances=np.stack([np.eye(2)] * 2)), "weights are needed"),
    (dict(weights=np.array([0.5])), "weights"),
    (dict(means=np.zeros((0, 2)), covariances=np.zeros((0, 2, 2))), "no components"),
    (dict(noise=np.zeros((2, 2))), "filled=True"),
    (dict(sample_weight=np.array([1.0, -1.0])), "sample_weight"),
    (dict(X=np.zeros((2, 0))), "0 feature"),
])
def test_bad_input(bad, match):
    args = dict(X=np.array([[1.0, np.nan], [0.5, 2.0]]), means=np.zeros((1, 2)),
                covariances=np.eye(2)[None], weights=None, sample_weight=None, noise=None)
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        missing_estep(args["X"], args["means"], args["covariances"], args["weights"],
                      args["sample_weight"], noise=args["noise"])


@settings(max_examples=30, deadline=None)
@given(N=st.integers(0, 40), D=st.integers(1, 5), frac=st.sampled_from([0.0, 0.3, 1.0]),
       seed=st.integers(0, 2**16))
def test_any_shape_and_pattern_mix(N, D, frac, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, D))
    X[rng.random((N, D)) < frac] = np.nan
    means, covs = np.zeros((1, D)), (np.eye(D) + 0.5)[None]
    for backend in ("cython", "numba"):
        ll, nk, s1, s2, filled = missing_estep(X, means, covs, filled=True, backend=backend)
        want = reference(X, None, np.zeros(1), means, covs)
        assert_close(ll, want[0], rtol=1e-9)
        assert_close(s2, want[3], rtol=1e-9)
        assert not np.isnan(filled).any()
        assert nk[0] == N
