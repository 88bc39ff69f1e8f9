"""The discrete-data kernels (kernel kind "discrete": categorical, Bernoulli, Poisson) of both
backends against the NumPy reference; impossible rows, zero rates, missing codes, sample
weights; thread-count independence; inputs left unmodified; the checked facade in
emfast.kernels (any shape, bad input)."""

import importlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reference_discrete as R
from conftest import assert_close
from emfast import kernels
from emfast._config import _cpu_has_avx2_fma, _cpu_has_avx512, available_backends, get_backend

# a partial last block, and more 256-row blocks than threads
N_THREADED = 23 * 256 + 45


def _modules():
    """The Numba kernels and every build of the Cython ones this CPU runs (each must match
    the reference, not only the one get_backend picks)."""
    mods = [get_backend("numba", "discrete")]
    if "cython" in available_backends("discrete"):
        mods.append(importlib.import_module("emfast._cython._discrete"))
        if _cpu_has_avx2_fma():
            mods.append(importlib.import_module("emfast._cython._discrete_avx2"))
        if _cpu_has_avx512():
            mods.append(importlib.import_module("emfast._cython._discrete_avx512"))
    return mods


@pytest.fixture(params=_modules(), ids=lambda m: m.__name__.rsplit(".", 2)[-2].strip("_") + "."
                + m.__name__.rsplit(".", 1)[-1].strip("_"))
def mod(request):
    return request.param


def _weights(rng, kind, N):
    """sample_weight as the kernels take it: (0,) for all weights 1."""
    return {"none": np.empty(0), "uniform": rng.uniform(0.0, 3.0, N),
            "zeros": np.zeros(N)}[kind]


def _categorical(rng, N, n_cats, K, missing=0.1, zero_probs=0):
    """(codes (N, J) int32 global codes with -1 missing, log_prob_T (C, K), log_weights):
    items of n_cats[j] categories; zero_probs entries of log_prob_T set to -inf."""
    offsets = np.concatenate([[0], np.cumsum(n_cats)])
    codes = np.stack([rng.integers(0, c, N) for c in n_cats], axis=1) + offsets[:-1]
    codes[rng.random(codes.shape) < missing] = -1
    lpT = np.ascontiguousarray(np.concatenate([np.log(rng.dirichlet(np.ones(c), size=K).T)
                                               for c in n_cats]))
    lpT.ravel()[rng.choice(lpT.size, min(zero_probs, lpT.size), replace=False)] = -np.inf
    log_weights = np.log(rng.dirichlet(np.ones(K)))
    return np.ascontiguousarray(codes, dtype=np.int32), lpT, log_weights


def _poisson(rng, N, D, K, dtype=np.float64, zero_rates=0):
    """(X (N, D) counts, log_lam (K, D), log_const (K,)): zero_rates entries of lambda 0."""
    lam = rng.uniform(0.2, 6.0, size=(K, D))
    lam.ravel()[rng.choice(lam.size, zero_rates, replace=False)] = 0.0
    X = rng.poisson(lam[rng.integers(0, K, N)]).astype(dtype)
    with np.errstate(divide="ignore"):
        log_lam = np.log(lam)
    log_const = np.log(rng.dirichlet(np.ones(K))) - lam.sum(axis=1)
    return X, log_lam, log_const


def _cat_estep(mod, codes, sw, lpT, lw, n_threads=2):
    C, K = lpT.shape
    nk, counts = np.full(K, np.nan), np.full((C, K), np.nan)   # overwritten, not added to
    ll = mod.categorical_estep_stats(codes, sw, lpT, lw, nk, counts, n_threads)
    return ll, nk, counts


def _cat_log_prob(mod, codes, lpT, lw, n_threads=2):
    out = np.full((len(codes), lpT.shape[1]), np.nan)
    mod.categorical_log_prob(codes, lpT, lw, out, n_threads)
    return out


def _row_const(mod, X, n_threads=2):
    out = np.full(len(X), np.nan)
    mod.poisson_row_const(X, out, n_threads)
    return out


def _poi_estep(mod, X, sw, log_lam, log_const, row_const, n_threads=2):
    K, D = log_lam.shape
    nk, s1 = np.full(K, np.nan), np.full((K, D), np.nan)
    ll = mod.poisson_estep_stats(X, sw, log_lam, log_const, row_const, nk, s1, n_threads)
    return ll, nk, s1


def _poi_log_prob(mod, X, log_lam, log_const, row_const, n_threads=2):
    out = np.full((len(X), log_lam.shape[0]), np.nan)
    mod.poisson_log_prob(X, log_lam, log_const, row_const, out, n_threads)
    return out


def _assert_stats(got, want):
    assert_close(got[0], want[0], rtol=1e-10, err_msg="loglik")
    for g, w, name in zip(got[1:], want[1:], ("nk", "stats")):
        assert not np.isnan(g).any(), name
        assert_close(g, w, rtol=1e-10, err_msg=name)


# --------------------------------------------------------------------- categorical
@pytest.mark.parametrize("N", [1, 300, 1000])
# K: one vector or two of the row-vector path (4 lanes; 8 in the AVX-512 build), the
# class loops beyond
@pytest.mark.parametrize("n_cats, K", [([2] * 7, 1), ([2] * 7, 3), ([4] * 10, 6),
                                       ([3, 5, 2, 7], 4), ([2] * 5, 8), ([3] * 3, 11),
                                       ([2] * 6, 16), ([2] * 4, 17), ([3] * 4, 100)])
@pytest.mark.parametrize("weights", ["none", "uniform", "zeros"])
def test_categorical_matches_reference(mod, N, n_cats, K, weights):
    rng = np.random.default_rng(N + K + len(n_cats))
    codes, lpT, lw = _categorical(rng, N, n_cats, K)
    sw = _weights(rng, weights, N)
    _assert_stats(_cat_estep(mod, codes, sw, lpT, lw),
                  R.categorical_estep_stats(codes, sw, lpT, lw))
    assert_close(_cat_log_prob(mod, codes, lpT, lw), R.categorical_log_prob(codes, lpT, lw))


def test_categorical_zero_weights_add_nothing(mod):
    rng = np.random.default_rng(1)
    codes, lpT, lw = _categorical(rng, 700, [3] * 5, 4, zero_probs=6)
    ll, nk, counts = _cat_estep(mod, codes, np.zeros(700), lpT, lw)
    assert ll == 0.0 and not nk.any() and not counts.any()


def test_categorical_impossible_rows_and_zero_probabilities(mod):
    """-inf in log_prob_T and log_weights: rows impossible under every class add -inf to
    the log-likelihood and nothing to the statistics (no NaN); the others as usual."""
    rng = np.random.default_rng(2)
    N, K = 600, 3
    codes, lpT, lw = _categorical(rng, N, [3] * 4, K, zero_probs=3)
    lpT[0] = -np.inf          # category 0 of item 0 impossible under every class
    lw[2] = -np.inf           # an empty class
    codes[::7, 0] = 0
    want = R.categorical_estep_stats(codes, None, lpT, lw)
    assert want[0] == -np.inf
    got = _cat_estep(mod, codes, np.empty(0), lpT, lw)
    _assert_stats(got, want)
    assert got[1][2] == 0.0 and not got[2][:, 2].any()
    # without the impossible rows: finite, and the same statistics
    keep = codes[:, 0] != 0
    sub = np.ascontiguousarray(codes[keep])
    ll, nk, counts = _cat_estep(mod, sub, np.empty(0), lpT, lw)
    assert np.isfinite(ll)
    assert_close(nk, got[1])
    assert_close(counts, got[2])
    # an impossible row of weight 0 adds nothing at all
    sw = np.where(keep, 1.5, 0.0)
    ll0 = _cat_estep(mod, codes, sw, lpT, lw)[0]
    assert_close(ll0, 1.5 * ll)
    lp = _cat_log_prob(mod, codes, lpT, lw)
    assert not np.isnan(lp).any()
    assert_close(lp, R.categorical_log_prob(codes, lpT, lw))


def test_categorical_all_missing_rows(mod):
    """A row with every code missing has the class weights as responsibilities."""
    rng = np.random.default_rng(3)
    codes, lpT, lw = _categorical(rng, 50, [2] * 3, 4)
    codes[:] = -1
    ll, nk, counts = _cat_estep(mod, codes, np.empty(0), lpT, lw)
    assert_close(ll, 0.0, rtol=1e-12)
    assert_close(nk, 50 * np.exp(lw))
    assert not counts.any()


# ----------------------------------------------------------------------------- Poisson
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("N, D, K", [(1, 1, 1), (300, 5, 4), (1000, 3, 7)])
@pytest.mark.parametrize("weights", ["none", "uniform", "zeros"])
def test_poisson_matches_reference(mod, dtype, N, D, K, weights):
    rng = np.random.default_rng(N + D + K)
    X, log_lam, log_const = _poisson(rng, N, D, K, dtype)
    sw = _weights(rng, weights, N)
    rc = _row_const(mod, X)
    assert_close(rc, R.poisson_row_const(X), rtol=1e-12)
    _assert_stats(_poi_estep(mod, X, sw, log_lam, log_const, rc),
                  R.poisson_estep_stats(X, sw, log_lam, log_const, rc))
    assert_close(_poi_log_prob(mod, X, log_lam, log_const, rc),
                 R.poisson_log_prob(X, log_lam, log_const, rc))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_poisson_zero_rates_and_impossible_rows(mod, dtype):
    """lambda = 0 (log -inf): a zero count adds 0 there; a row with a positive count where
    every class has rate 0 adds -inf and no statistics; no NaN anywhere."""
    rng = np.random.default_rng(4)
    X, log_lam, log_const = _poisson(rng, 900, 4, 3, dtype, zero_rates=3)
    log_lam[:, 3] = -np.inf                     # feature 3 impossible unless 0
    X[:, 3] = 0
    X[::11, 3] = 2
    rc = _row_const(mod, X)
    want = R.poisson_estep_stats(X, None, log_lam, log_const, rc)
    assert want[0] == -np.inf
    got = _poi_estep(mod, X, np.empty(0), log_lam, log_const, rc)
    _assert_stats(got, want)
    lp = _poi_log_prob(mod, X, log_lam, log_const, rc)
    assert not np.isnan(lp).any()
    assert_close(lp, R.poisson_log_prob(X, log_lam, log_const, rc))
    assert np.isneginf(lp[::11]).all()


def test_poisson_large_counts(mod):
    """Counts far from 0 (lgamma of large values, log-probabilities far below 0)."""
    rng = np.random.default_rng(5)
    X, log_lam, log_const = _poisson(rng, 400, 3, 2)
    X *= 1000
    rc = _row_const(mod, X)
    assert_close(rc, R.poisson_row_const(X), rtol=1e-12)
    _assert_stats(_poi_estep(mod, X, np.empty(0), log_lam, log_const, rc),
                  R.poisson_estep_stats(X, None, log_lam, log_const, rc))


# ---------------------------------------------------------- threads and inputs untouched
def _all_outputs(mod, rng, n_threads):
    """Every kernel's results on fixed data of N_THREADED rows, on n_threads threads."""
    codes, lpT, lw = _categorical(np.random.default_rng(6), N_THREADED, [4] * 10, 6,
                                  zero_probs=5)
    X, log_lam, log_const = _poisson(np.random.default_rng(7), N_THREADED, 5, 4, zero_rates=2)
    sw = np.random.default_rng(8).uniform(0, 2, N_THREADED)
    rc = _row_const(mod, X, n_threads)
    return (_cat_estep(mod, codes, sw, lpT, lw, n_threads),
            _cat_log_prob(mod, codes, lpT, lw, n_threads), rc,
            _poi_estep(mod, X, sw, log_lam, log_const, rc, n_threads),
            _poi_log_prob(mod, X, log_lam, log_const, rc, n_threads))


def _flat(results):
    out = []
    for r in results:
        out.extend(np.atleast_1d(np.asarray(x, dtype=float)) for x in
                   (r if isinstance(r, tuple) else (r,)))
    return out


def test_bit_identical_for_any_thread_count(mod):
    want = _flat(_all_outputs(mod, None, 1))
    for n_threads in (2, 3):
        got = _flat(_all_outputs(mod, None, n_threads))
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)


def test_inputs_unmodified(mod):
    rng = np.random.default_rng(9)
    codes, lpT, lw = _categorical(rng, 700, [3] * 5, 4, zero_probs=4)
    X, log_lam, log_const = _poisson(rng, 700, 3, 4, np.float32, zero_rates=2)
    sw = rng.uniform(0, 2, 700)
    rc = _row_const(mod, X)
    inputs = (codes, lpT, lw, X, log_lam, log_const, sw, rc)
    before = [a.copy() for a in inputs]
    _cat_estep(mod, codes, sw, lpT, lw)
    _cat_log_prob(mod, codes, lpT, lw)
    _poi_estep(mod, X, sw, log_lam, log_const, rc)
    _poi_log_prob(mod, X, log_lam, log_const, rc)
    for a, b in zip(inputs, before):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------ the checked facade
@st.composite
def categorical_problems(draw):
    K = draw(st.integers(1, 5))
    n_cats = draw(st.lists(st.integers(1, 5), min_size=1, max_size=6))
    N = draw(st.integers(1, 700))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    codes, lpT, lw = _categorical(rng, N, n_cats, K, missing=draw(st.sampled_from([0, 0.3])),
                                  zero_probs=draw(st.integers(0, 2)))
    dtype = draw(st.sampled_from([np.int8, np.int32, np.int64]))
    sw = draw(st.sampled_from([None, "uniform", "zeros"]))
    sw = None if sw is None else _weights(rng, sw, N)
    return codes.astype(dtype), lpT, lw, sw, draw(st.sampled_from(available_backends()))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(categorical_problems())
def test_categorical_facade_any_shape(problem):
    codes, lpT, lw, sw, backend = problem
    before = [a.copy() for a in (codes, lpT, lw) + (() if sw is None else (sw,))]
    ll, nk, counts = kernels.categorical_estep_stats(codes, lpT, lw, sw, backend=backend)
    lp = kernels.categorical_log_prob(codes, lpT, lw, backend=backend)
    _assert_stats((ll, nk, counts), R.categorical_estep_stats(codes, sw, lpT, lw))
    assert_close(lp, R.categorical_log_prob(codes, lpT, lw))
    assert isinstance(ll, float) and nk.shape == (lpT.shape[1],) and counts.shape == lpT.shape
    for a, b in zip((codes, lpT, lw) + (() if sw is None else (sw,)), before):
        np.testing.assert_array_equal(a, b)


@st.composite
def poisson_problems(draw):
    K, D, N = draw(st.integers(1, 5)), draw(st.integers(1, 6)), draw(st.integers(1, 700))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    X, log_lam, log_const = _poisson(rng, N, D, K, zero_rates=draw(st.integers(0, K * D)))
    dtype = draw(st.sampled_from([np.float32, np.float64, np.int64, np.uint8]))
    with np.errstate(over="ignore"):
        log_weights = log_const + np.exp(log_lam).sum(axis=1)
    sw = draw(st.sampled_from([None, "uniform", "zeros"]))
    sw = None if sw is None else _weights(rng, sw, N)
    return X.astype(dtype), log_lam, log_weights, sw, draw(st.sampled_from(available_backends()))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(poisson_problems())
def test_poisson_facade_any_shape(problem):
    X, log_lam, log_weights, sw, backend = problem
    before = [a.copy() for a in (X, log_lam, log_weights) + (() if sw is None else (sw,))]
    ll, nk, s1 = kernels.poisson_estep_stats(X, log_lam, log_weights, sw, backend=backend)
    lp = kernels.poisson_log_prob(X, log_lam, log_weights, backend=backend)
    rc = R.poisson_row_const(X)
    log_const = log_weights - np.exp(log_lam).sum(axis=1)
    _assert_stats((ll, nk, s1), R.poisson_estep_stats(X, sw, log_lam, log_const, rc))
    assert_close(lp, R.poisson_log_prob(X, log_lam, log_const, rc))
    # a given row_const is used as is
    lp2 = kernels.poisson_log_prob(X, log_lam, log_weights, row_const=rc + 1.0, backend=backend)
    assert_close(lp2, lp + 1.0)
    for a, b in zip((X, log_lam, log_weights) + (() if sw is None else (sw,)), before):
        np.testing.assert_array_equal(a, b)


def test_facade_out_arrays_are_overwritten():
    rng = np.random.default_rng(10)
    codes, lpT, lw = _categorical(rng, 300, [3, 2], 2)
    nk, counts = np.full(2, 7.0), np.full(lpT.shape, 7.0)
    ll, nk2, counts2 = kernels.categorical_estep_stats(codes, lpT, lw, out=(nk, counts))
    assert nk2 is nk and counts2 is counts
    _assert_stats((ll, nk, counts), R.categorical_estep_stats(codes, None, lpT, lw))
    out = np.empty((300, 2))
    assert kernels.categorical_log_prob(codes, lpT, lw, out=out) is out
    with pytest.raises(ValueError, match="counts"):
        kernels.categorical_estep_stats(codes, lpT, lw, out=(nk, np.empty((2, 2))))


def test_facade_is_public():
    names = ("categorical_estep_stats", "categorical_log_prob", "poisson_estep_stats",
             "poisson_log_prob")
    assert set(names) <= set(kernels.__all__)
    for name in names:
        assert name in kernels.__doc__ or getattr(kernels, name).__doc__


_CODES = np.array([[0, 2], [1, -1], [1, 3]])
_LPT = np.log(np.full((4, 2), 0.5))
_LW = np.log([0.5, 0.5])


@pytest.mark.parametrize("kwargs, match", [
    (dict(codes=np.zeros((0, 2), int)), "rows of codes is 0"),
    (dict(codes=np.zeros((3, 0), int)), "items"),
    (dict(codes=_CODES[:, 0]), "2-D integer"),
    (dict(codes=_CODES.astype(float)), "2-D integer"),
    (dict(codes=_CODES.astype(bool)), "2-D integer"),
    (dict(codes=np.array([["a"]])), "2-D integer"),
    (dict(codes=_CODES - 1), r"\[-1, 4\).*codes\[1, 1\] = -2"),
    (dict(codes=_CODES + 1), r"codes\[2, 1\] = 4"),
    (dict(codes=np.array([[2**40]])), "codes"),
    (dict(log_prob_T=_LPT[:0]), "categories"),
    (dict(log_prob_T=_LPT[:, :0]), "no components"),
    (dict(log_prob_T=_LPT[0]), "2-D"),
    (dict(log_prob_T=np.where(_LPT == _LPT[0, 0], np.nan, _LPT)), "NaN"),
    (dict(log_prob_T=np.full((4, 2), np.inf)), r"\+inf"),
    (dict(log_prob_T=np.full((4, 2), "x")), "real numbers"),
    (dict(log_weights=_LW[:1]), r"shape \(2,\)"),
    (dict(log_weights=[np.nan, 0.0]), "NaN"),
    (dict(sample_weight=np.ones(2)), "sample_weight"),
    (dict(sample_weight=[1.0, -1.0, 1.0]), "non-negative"),
    (dict(sample_weight=[1.0, np.nan, 1.0]), "finite"),
])
def test_categorical_bad_input(backend, kwargs, match):
    args = dict(codes=_CODES, log_prob_T=_LPT, log_weights=_LW)
    args.update(kwargs)
    sw = args.pop("sample_weight", None)
    with pytest.raises(ValueError, match=match):
        kernels.categorical_estep_stats(**args, sample_weight=sw, backend=backend)
    if sw is None:
        with pytest.raises(ValueError, match=match):
            kernels.categorical_log_prob(**args, backend=backend)


_X = np.array([[0, 2], [1, 0], [3, 1]])
_LL = np.log([[1.0, 2.0], [0.5, 3.0]])


@pytest.mark.parametrize("kwargs, match", [
    (dict(X=np.zeros((0, 2))), "rows of X is 0"),
    (dict(X=np.zeros((3, 0))), "features"),
    (dict(X=_X[:, 0]), "2-D array of counts"),
    (dict(X=_X.astype(complex)), "2-D array of counts"),
    (dict(X=_X - 1.0), "non-negative integer"),
    (dict(X=_X + 0.5), "non-negative integer"),
    (dict(X=np.where(_X == 3, np.nan, _X)), "finite"),
    (dict(X=np.where(_X == 3, np.inf, _X)), "finite"),
    (dict(X=_X * 2.0**60), "2\\*\\*53"),
    (dict(log_lam=_LL[:, :1]), r"shape \(K, 2\)"),
    (dict(log_lam=_LL[:0]), "no components"),
    (dict(log_lam=np.full((2, 2), np.nan)), "NaN"),
    (dict(log_lam=np.full((2, 2), np.inf)), r"\+inf"),
    (dict(log_lam=np.full((2, 2), 800.0)), "finite"),
    (dict(log_weights=_LW[:1]), r"shape \(2,\)"),
    (dict(log_weights=[np.inf, 0.0]), r"\+inf"),
    (dict(row_const=np.zeros(2)), "row_const"),
    (dict(row_const=np.full(3, -np.inf)), "row_const"),
    (dict(sample_weight=np.ones(4)), "sample_weight"),
    (dict(sample_weight=[1.0, -1.0, 1.0]), "non-negative"),
])
def test_poisson_bad_input(backend, kwargs, match):
    args = dict(X=_X, log_lam=_LL, log_weights=_LW)
    args.update(kwargs)
    sw = args.pop("sample_weight", None)
    rc = args.pop("row_const", None)
    with pytest.raises(ValueError, match=match):
        kernels.poisson_estep_stats(**args, sample_weight=sw, row_const=rc, backend=backend)
    if sw is None:
        with pytest.raises(ValueError, match=match):
            kernels.poisson_log_prob(**args, row_const=rc, backend=backend)
