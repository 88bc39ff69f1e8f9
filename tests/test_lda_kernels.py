"""The LDA kernels (kernel kind "lda": the variational E-step of batch VB and the Dirichlet
expectation) of both backends against the NumPy reference; empty documents, one-word
documents, explicit zeros; thread-count independence; the digamma against scipy; the
checked facade in emfast.kernels (bad input, the caller's arrays left unmodified) and the
binding the estimator uses."""

import importlib

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.special import digamma as scipy_digamma

import reference_lda as R
from conftest import assert_close
from emfast import kernels
from emfast._config import _cpu_has_avx2_fma, _cpu_has_avx512, available_backends, get_backend
from emfast._layout import LDA_DOC_BLOCK, LDA_TOPIC_MAJOR

BACKENDS = available_backends("lda")
# several 64-document blocks per group, a partial last block
N_THREADED = 7 * LDA_DOC_BLOCK + 13


def _modules():
    """The Numba kernels and every build of the Cython ones this CPU runs."""
    mods = [get_backend("numba", "lda")]
    if "cython" in BACKENDS:
        mods.append(importlib.import_module("emfast._cython._lda"))
        if _cpu_has_avx2_fma():
            mods.append(importlib.import_module("emfast._cython._lda_avx2"))
        if _cpu_has_avx512():
            mods.append(importlib.import_module("emfast._cython._lda_avx512"))
    return mods


def _mod_id(m):
    return m.__name__.rsplit(".", 2)[-2].strip("_") + "." + m.__name__.rsplit(".", 1)[-1]


@pytest.fixture(params=_modules(), ids=_mod_id)
def mod(request):
    return request.param


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


def _corpus(rng, N, V, K, dtype=np.float64, mean_words=12):
    """(X CSR (N, V), exp_topic_word (K, V), gamma0 (N, K)) of ``dtype``: documents drawn
    from an LDA model, so the fixed point has something to find; the first document empty,
    the second of one word, and an explicit zero in the third."""
    topics = rng.dirichlet(np.full(V, 0.3), size=K)
    rows, cols, vals = [], [], []
    for d in range(N):
        n_tokens = 0 if d == 0 else 1 if d == 1 else rng.poisson(mean_words) + 1
        theta = rng.dirichlet(np.full(K, 0.5))
        words = rng.choice(V, size=n_tokens, p=theta @ topics)
        ids, counts = np.unique(words, return_counts=True)
        rows += [d] * len(ids)
        cols += list(ids)
        vals += list(counts)
    X = sp.csr_matrix((np.array(vals, dtype=dtype), (rows, cols)), shape=(N, V))
    if N > 2:
        X.data[X.indptr[2]] = 0.0      # an explicit zero, kept (csr_matrix would drop none)
    lam = rng.gamma(100.0, 0.01, (K, V))
    B = np.exp(R.dirichlet_expectation(lam)).astype(dtype)
    gamma0 = rng.gamma(100.0, 0.01, (N, K)).astype(dtype)
    return X, B, gamma0


def _run_module(mod, X, B, gamma, alpha, max_iter, tol, cal_bound, n_threads):
    """(gamma, sstats, word_bound) of a backend module's two passes on a CSR X."""
    eps = np.finfo(X.dtype).eps
    N, V = X.shape
    BT = kernels._lda_topic_word_T(B)
    g = gamma.copy()
    doc_exp = np.empty((N, BT.shape[1]))
    bound = mod.lda_doc_pass(X.data, X.indices.astype(np.int32), X.indptr.astype(np.int64),
                             BT, g, alpha, max_iter, tol, eps, doc_exp, cal_bound, n_threads)
    C = X.tocsc()
    S = np.empty(B.shape, dtype=X.dtype)
    mod.lda_word_pass(C.data, C.indices.astype(np.int32), C.indptr.astype(np.int64), BT,
                      doc_exp, eps, S, n_threads)
    return g, S, bound


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 2e-5)])
@pytest.mark.parametrize("tol", [0.0, 1e-3])
def test_estep_matches_reference(mod, dtype, rtol, tol):
    rng = np.random.default_rng(1)
    X, B, gamma0 = _corpus(rng, 90, 40, 5, dtype)
    want = R.lda_estep(X, B, gamma0, 0.2, 25, tol, True, True)
    got = _run_module(mod, X, B, gamma0, 0.2, 25, tol, True, 2)
    for g, w, name in zip(got, want, ("gamma", "sstats", "word_bound")):
        assert_close(g, w, rtol=rtol, err_msg=name)
    assert got[0][0] == pytest.approx(0.2, rel=1e-6)       # the empty document: alpha
    assert np.all(got[1] >= 0)


def test_at_the_fixed_point_one_step_stops(mod):
    """K = 5 leaves padding lanes in every build; with alpha != 1 they must not count in the
    mean change: a document started at its fixed point stops after one step, so at most
    100 steps give exactly what one step gives (the padding once kept every document
    going for a second step)."""
    rng = np.random.default_rng(4)
    X, B, gamma0 = _corpus(rng, 40, 30, 5)
    fixed = _run_module(mod, X, B, gamma0, 0.2, 1000, 1e-13, False, 1)[0]
    one = _run_module(mod, X, B, fixed, 0.2, 1, 1e-3, False, 1)[0]
    many = _run_module(mod, X, B, fixed, 0.2, 100, 1e-3, False, 1)[0]
    np.testing.assert_array_equal(many, one)


def test_facade_matches_reference(backend):
    rng = np.random.default_rng(2)
    X, B, gamma0 = _corpus(rng, 70, 30, 4)
    want = R.lda_estep(X, B, gamma0, 0.5, 100, 1e-3, True, True)
    gamma = gamma0.copy()
    got = kernels.lda_estep(X, B, gamma, 0.5, cal_bound=True, backend=backend)
    assert_close(gamma, want[0])
    assert_close(got.sstats, want[1])
    assert_close(got.word_bound, want[2])
    res = kernels.lda_estep(X, B, gamma0.copy(), 0.5, cal_sstats=False, backend=backend)
    assert res.sstats is None and res.word_bound is None


def test_one_word_and_zero_iterations(backend):
    """A one-word document reaches the fixed point gamma = alpha + c e B / (e B); with
    max_doc_update_iter = 0 gamma stays the start and sstats comes from the start's e."""
    X = sp.csr_matrix(np.array([[0.0, 3.0, 0.0]]))
    B = np.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]])
    gamma = np.array([[1.0, 2.0]])
    kernels.lda_estep(X, B, gamma, 0.1, max_doc_update_iter=500, mean_change_tol=0.0,
                      backend=backend)
    e = R.dirichlet_expectation(gamma[0], exp=True)
    assert_close(gamma[0], 0.1 + 3.0 * e * B[:, 1] / (e @ B[:, 1] + np.finfo(float).eps))
    gamma0 = np.array([[1.0, 2.0]])
    gamma = gamma0.copy()
    got = kernels.lda_estep(X, B, gamma, 0.1, max_doc_update_iter=0, backend=backend)
    assert np.array_equal(gamma, gamma0)
    assert_close(got.sstats, R.lda_estep(X, B, gamma0, 0.1, 0)[1])


def test_non_canonical_csr(mod):
    """Unsorted word ids and a word listed twice in a document (a CSR matrix as scipy keeps
    it before sum_duplicates): each entry is a term, as in the reference."""
    data = np.array([2.0, 1.0, 3.0, 1.0, 4.0, 2.0])
    indices = np.array([5, 1, 5, 0, 3, 2])
    X = sp.csr_matrix((data, indices, np.array([0, 3, 3, 6])), shape=(3, 6))
    assert not X.has_canonical_format
    rng = np.random.default_rng(7)
    B = np.exp(R.dirichlet_expectation(rng.gamma(1.0, 1.0, (3, 6))))
    gamma0 = rng.gamma(100.0, 0.01, (3, 3))
    want = R.lda_estep(X, B, gamma0, 0.1, 50, 0.0, True, True)
    got = _run_module(mod, X, B, gamma0, 0.1, 50, 0.0, True, 1)
    for g, w in zip(got, want):
        assert_close(g, w)


def _dropped(gamma, alpha):
    """How many of gamma's entries are alpha to within 2^-60 of it: topics whose expected
    count in the document fell below the kernels' drop threshold (2^-64 alpha), so that the
    kernels stopped updating them."""
    return int(np.sum(gamma - alpha < alpha * 2.0 ** -60))


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 2e-5)])
@pytest.mark.parametrize("tol", [0.0, 1e-3])
def test_dropped_topics_match_reference(mod, dtype, rtol, tol):
    """Under a small doc_topic_prior most topics of a document die; the kernels stop
    updating a topic once its expected count is below 2^-64 alpha. What the dense iteration
    (the reference) would still change is under rounding: the same results to 1e-10."""
    rng = np.random.default_rng(11)
    X, B, gamma0 = _corpus(rng, 80, 200, 20, dtype, mean_words=40)
    want = R.lda_estep(X, B, gamma0, 0.01, 100, tol, True, True)
    assert _dropped(want[0], 0.01) > want[0].size // 2      # the case this test is about
    got = _run_module(mod, X, B, gamma0, 0.01, 100, tol, True, 2)
    for g, w, name in zip(got, want, ("gamma", "sstats", "word_bound")):
        assert_close(g, w, rtol=rtol, err_msg=name)


def test_long_document_stays_word_major(mod):
    """A document of more than LDA_TOPIC_MAJOR / 8 distinct words never moves to the
    topic-major rows: its dropped topics are masked out of the word-major steps instead.
    Beside short documents that do move, both match the reference."""
    rng = np.random.default_rng(12)
    K, V = 30, 900
    X, B, gamma0 = _corpus(rng, 6, V, K, mean_words=60)
    long_doc = np.zeros((1, V))
    long_doc[0, rng.choice(V, size=LDA_TOPIC_MAJOR // 8 + 100, replace=False)] = 1.0
    long_doc[0, :K] = 50.0                   # words of a few topics dominate: topics die
    X = sp.vstack([X, sp.csr_matrix(long_doc)]).tocsr()
    gamma0 = np.vstack([gamma0, rng.gamma(100.0, 0.01, (1, K))])
    want = R.lda_estep(X, B, gamma0, 0.005, 100, 1e-3, True, True)
    assert _dropped(want[0][-1:], 0.005) > 0
    got = _run_module(mod, X, B, gamma0, 0.005, 100, 1e-3, True, 2)
    for g, w, name in zip(got, want, ("gamma", "sstats", "word_bound")):
        assert_close(g, w, rtol=1e-10, err_msg=name)


@pytest.mark.parametrize("alpha", [0.1, 0.01])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_thread_count_independence(mod, dtype, alpha):
    """Bit for bit: the word bound's groups are fixed by the shapes, each column of sstats is
    summed by one thread (alpha = 0.01: with topics dropped)."""
    rng = np.random.default_rng(3)
    X, B, gamma0 = _corpus(rng, N_THREADED, 300, 6, dtype, mean_words=6)
    runs = [_run_module(mod, X, B, gamma0, alpha, 100, 1e-3, True, t) for t in (1, 2, 3)]
    for other in runs[1:]:
        assert np.array_equal(runs[0][0], other[0])
        assert np.array_equal(runs[0][1], other[1])
        assert runs[0][2] == other[2]


def test_digamma_accuracy(mod):
    """|error| < 1e-12 max(|psi(x)|, 0.1) on [1e-6, 1e300]: relative 1e-12 except near the
    root x0 = 1.4616... (where psi crosses 0 and no relative bound can hold), absolute 1e-13
    there."""
    x = np.concatenate([np.logspace(-6, 300, 5000), np.linspace(1e-6, 20, 5001),
                        np.linspace(1.3, 1.6, 3001)])
    got = np.empty_like(x)
    mod.digamma(x, got, 2)
    want = scipy_digamma(x)
    assert np.all(np.abs(got - want) <= 1e-12 * np.maximum(np.abs(want), 0.1))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("exp", [False, True])
def test_dirichlet_expectation(backend, dtype, exp):
    rng = np.random.default_rng(4)
    alpha = rng.gamma(0.5, 2.0, (13, 70)).astype(dtype) + np.asarray(1e-6, dtype)
    got = kernels.dirichlet_expectation(alpha, exp=exp, backend=backend)
    assert got.dtype == dtype and got.shape == alpha.shape
    assert_close(got, R.dirichlet_expectation(alpha, exp), rtol=1e-12 if dtype == np.float64
                 else 1e-6)
    row = kernels.dirichlet_expectation(alpha[3], exp=exp, backend=backend)
    assert np.array_equal(row, got[3])


def test_caller_arrays_unmodified(backend):
    """X (CSR, COO, dense, int counts), exp_topic_word: unchanged; doc_topic is the output."""
    rng = np.random.default_rng(5)
    X, B, gamma0 = _corpus(rng, 40, 25, 3)
    want = R.lda_estep(X, B, gamma0, 0.3)
    for Xin in (X, X.tocoo(), X.toarray(), sp.csr_array(X), X.astype(np.int64)):
        before = Xin.copy()
        B_before = B.copy()
        gamma = gamma0.copy()
        got = kernels.lda_estep(Xin, B, gamma, 0.3, backend=backend)
        if sp.issparse(Xin):
            assert (Xin != before).nnz == 0 and Xin.format == before.format
        else:
            assert np.array_equal(Xin, before)
        assert np.array_equal(B, B_before)
        assert_close(gamma, want[0])
        assert_close(got.sstats, want[1])


def test_binding_reused(backend):
    """The bound E-step gives the facade's results call after call (the CSC copy and the
    scratch are made once), and checks shapes and dtypes."""
    rng = np.random.default_rng(6)
    X, B, gamma0 = _corpus(rng, 50, 20, 4)
    estep = kernels.bind_lda_estep(X, backend=backend)
    for _ in range(2):
        gamma = gamma0.copy()
        got = estep(B, gamma, 0.2, 100, 1e-3, True, True)
        want = R.lda_estep(X, B, gamma0, 0.2, 100, 1e-3, True, True)
        assert_close(gamma, want[0])
        assert_close(got.sstats, want[1])
        assert_close(got.word_bound, want[2])
    with pytest.raises(ValueError, match="exp_topic_word"):
        estep(B[:, :-1], gamma0.copy(), 0.2)
    with pytest.raises(ValueError, match="doc_topic"):
        estep(B, gamma0[:, :-1].copy(), 0.2)
    with pytest.raises(ValueError, match="exp_topic_word"):
        estep(B.astype(np.float32), gamma0.copy(), 0.2)


def _bad_inputs():
    """(name, mutate) pairs: mutate(X, B, gamma, kwargs) -> (X, B, gamma, kwargs) with one
    thing wrong."""
    def csr_with(X, **parts):
        arrays = dict(data=X.data.copy(), indices=X.indices.copy(), indptr=X.indptr.copy())
        arrays.update(parts)
        return sp.csr_matrix((arrays["data"], arrays["indices"], arrays["indptr"]),
                             shape=X.shape)

    def negative(X):
        X = X.copy()
        X.data[-1] = -1.0
        return X

    def with_value(X, v):
        X = X.copy()
        X.data[-1] = v
        return X

    def index_out(X):
        ind = X.indices.copy()
        ind[-1] = X.shape[1]
        return csr_with(X, indices=ind)

    def with_kw(**kw):
        return lambda X, B, g, k: (X, B, g, {**k, **kw})

    return {
        "negative count": lambda X, B, g, k: (negative(X), B, g, k),
        "NaN count": lambda X, B, g, k: (with_value(X, np.nan), B, g, k),
        "inf count": lambda X, B, g, k: (with_value(X, np.inf), B, g, k),
        "index out of range": lambda X, B, g, k: (index_out(X), B, g, k),
        "complex X": lambda X, B, g, k: (X.astype(np.complex128), B, g, k),
        "3-D dense X": lambda X, B, g, k: (X.toarray()[None], B, g, k),
        "V mismatch": lambda X, B, g, k: (X, B[:, :-1].copy(), g, k),
        "K mismatch": lambda X, B, g, k: (X, B, g[:, :-1].copy(), k),
        "K = 0": lambda X, B, g, k: (X, B[:0].copy(), g[:, :0].copy(), k),
        "N mismatch": lambda X, B, g, k: (X, B, g[:-1].copy(), k),
        "B float32": lambda X, B, g, k: (X, B.astype(np.float32), g, k),
        "gamma float32": lambda X, B, g, k: (X, B, g.astype(np.float32), k),
        "X float32": lambda X, B, g, k: (X.astype(np.float32), B, g, k),
        "B NaN": lambda X, B, g, k: (X, np.where(B == B.max(), np.nan, B), g, k),
        "B negative": lambda X, B, g, k: (X, -B, g, k),
        "B 1-D": lambda X, B, g, k: (X, B[0].copy(), g, k),
        "gamma zero": lambda X, B, g, k: (X, B, np.zeros_like(g), k),
        "gamma NaN": lambda X, B, g, k: (X, B, np.full_like(g, np.nan), k),
        "gamma not contiguous": lambda X, B, g, k: (X, B, np.repeat(g, 2, axis=1)[:, ::2], k),
        "gamma read-only": lambda X, B, g, k: (X, B, np.broadcast_to(g[:1], g.shape), k),
        "gamma a list": lambda X, B, g, k: (X, B, g.tolist(), k),
        "alpha 0": with_kw(doc_topic_prior=0.0),
        "alpha negative": with_kw(doc_topic_prior=-1.0),
        "alpha NaN": with_kw(doc_topic_prior=np.nan),
        "alpha a string": with_kw(doc_topic_prior="0.1"),
        "max_iter negative": with_kw(max_doc_update_iter=-1),
        "max_iter float": with_kw(max_doc_update_iter=1.5),
        "tol negative": with_kw(mean_change_tol=-1e-3),
        "tol NaN": with_kw(mean_change_tol=np.nan),
        "no words": lambda X, B, g, k: (X[:, :0], B[:, :0].copy(), g, k),
        "bad backend": with_kw(backend="fortran"),
    }


BAD = _bad_inputs()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(BAD)), n_docs=st.integers(3, 12), K=st.integers(1, 4))
def test_bad_input_raises(name, n_docs, K):
    """Every bad input is a ValueError (or TypeError for a non-number parameter) naming the
    problem, never a crash, and leaves the caller's X and exp_topic_word unmodified."""
    rng = np.random.default_rng(n_docs)
    X, B, gamma = _corpus(rng, n_docs, 9, K)
    X, B, gamma, kw = BAD[name](X, B, gamma, {"doc_topic_prior": 0.1})
    X_values = (X.data if sp.issparse(X) else X).copy()
    B_before = B.copy()
    with pytest.raises((ValueError, TypeError)):
        kernels.lda_estep(X, B, gamma, **kw)
    assert np.array_equal(X.data if sp.issparse(X) else X, X_values, equal_nan=True)
    assert np.array_equal(B, B_before, equal_nan=True)


@pytest.mark.parametrize("alpha", [np.zeros((2, 3)), -np.ones(3), np.full(3, np.nan),
                                   np.ones((2, 2, 2)), np.ones((0, 3)), np.array(["a"])])
def test_dirichlet_expectation_bad_input(alpha):
    with pytest.raises(ValueError):
        kernels.dirichlet_expectation(alpha)


def test_malformed_csr():
    X = sp.csr_matrix(np.eye(3))
    bad = sp.csr_matrix((3, 3))
    bad.data, bad.indices, bad.indptr = X.data, X.indices, np.array([0, 2, 1, 3])
    with pytest.raises(ValueError, match="CSR"):
        kernels.lda_estep(bad, np.ones((2, 3)), np.ones((3, 2)), 0.1)
