"""Sequences whose scaled forward-backward would lose a path: a reachable state's forward
mass below the double range while the transition matrix (structural zeros, left-right
models) later leaves that path the only one. The kernels flag such sequences and
emfast.kernels recomputes them in log space (emfast._hmm_logspace); every result must equal
the log-space references, bit-identically for any thread count."""

import numpy as np
import pytest

import reference_hmm as ref
from conftest import assert_close
from emfast import kernels
from emfast._config import available_backends, get_backend
from emfast.hmm import CategoricalHMM, GaussianHMM
from test_dispatch import HMM_MODULES
from test_hmm_gaussian_kernel import _case, _reference

HMM_BACKENDS = available_backends("hmm")


@pytest.fixture(params=HMM_BACKENDS)
def backend(request):
    return request.param


def _left_right(K, stay=0.6):
    """(startprob, transmat) of a left-right model: state k stays or moves to k + 1."""
    A = np.diag(np.full(K, stay)) + np.diag(np.full(K - 1, 1.0 - stay), 1)
    A[-1, -1] = 1.0
    sp = np.zeros(K)
    sp[0] = 1.0
    return sp, A


def _flagged_log_emission(rng, T, K):
    """Log-emissions with gaps of thousands of nats between states: the path that wins in
    the end is, on two frames, e^-750 less likely than the best state of that frame."""
    le = rng.normal(size=(T, K)) - 1500.0 * (np.arange(K)[None, :] != 0)
    le[T // 2:] = rng.normal(size=(T - T // 2, K)) - 1500.0 * (np.arange(K)[None, :] != K - 1)
    le[1:3, 0] += 750.0     # state 0 looks far better for two frames, then leads nowhere
    le[1:3, 1:] -= 750.0
    return le


def _flagged(backend, le, lengths, sp, A):
    """The sequences the backend's kernel leaves to log space (seq_ll +inf)."""
    off = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    K = A.shape[0]
    seq_ll = np.empty(len(lengths))
    get_backend(backend, "hmm").forward_backward(le, off, sp, A, np.empty((0, K)),
                                                 np.empty(K), np.empty((K, K)), seq_ll, 1)
    return np.flatnonzero(seq_ll == np.inf)


def test_reported_case_matches_log_space(backend):
    """hypothesis's case: K = 2, one ten-frame sequence, a transition matrix with a zero."""
    X, lengths, sp, A, means, pc, lc = _case(5134, 2, 4, [10], "diag")
    want = _reference(X, lengths, sp, A, means, pc, "diag", lc)
    for n_threads in (1, 2):
        got = kernels.hmm_gaussian_forward_backward(X, lengths, sp, A, means, pc, "diag", lc,
                                                    backend=backend, n_threads=n_threads)
        for g, w in zip(got, want):
            assert_close(g, w, rtol=1e-9)


@pytest.mark.parametrize("K", [3, 5])
def test_left_right_with_huge_gaps(backend, K):
    """Left-right model, emission gaps > 700 nats: forward-backward, filter and categorical
    emissions all equal their log-space references."""
    rng = np.random.default_rng(K)
    sp, A = _left_right(K)
    lengths = np.array([12, 9, 14])
    le = np.vstack([_flagged_log_emission(rng, T, K) for T in lengths])
    assert len(_flagged(backend, le, lengths, sp, A)) == len(lengths)
    want = ref.forward_backward(le, lengths, sp, A)
    got = kernels.hmm_forward_backward(le, lengths, sp, A, backend=backend)
    for g, w in zip(got, want):
        assert_close(g, w, rtol=1e-9)
    want_f = ref.filtered(le, lengths, sp, A)
    got_f = kernels.hmm_filter(le, lengths, sp, A, backend=backend)
    for g, w in zip(got_f, want_f):
        assert_close(g, w, rtol=1e-9)
    assert_close(kernels.hmm_filter(le, lengths, sp, A, filtered=False, backend=backend)[0],
                 want_f[0], rtol=1e-9)
    # categorical: symbol f is emitted by state f with probability 1 - (K - 1) 1e-320...
    B = np.full((K, K), 1e-300)
    np.fill_diagonal(B, 1.0 - (K - 1) * 1e-300)
    sym = np.argmax(le, axis=1)
    sym[1:3] = 0
    want_c = ref.forward_backward(np.log(B[:, sym].T), lengths, sp, A)
    got_c = kernels.hmm_categorical_forward_backward(sym, lengths, sp, A, B, backend=backend)
    for g, w in zip(got_c[:4], (want_c[0], want_c[1], want_c[3], want_c[4])):
        assert_close(g, w, rtol=1e-9)
    counts = np.zeros((K, K))
    np.add.at(counts, sym, want_c[2])
    assert_close(got_c[4], counts, rtol=1e-9)


def test_flagged_and_normal_sequences_mixed(backend):
    """Many sequences, lane batches mixing flagged and normal ones: the same numbers as the
    reference and the same bits for one and two threads."""
    rng = np.random.default_rng(7)
    K = 4
    sp, A = _left_right(K)
    lengths = np.array([10] * 21 + [11, 40, 3] + [10] * 9)
    flag = (rng.random(len(lengths)) < 0.3) & (lengths >= 10)   # long enough to need it
    le = np.vstack([_flagged_log_emission(rng, T, K) if f else rng.normal(size=(T, K))
                    for T, f in zip(lengths, flag)])
    np.testing.assert_array_equal(_flagged(backend, le, lengths, sp, A), np.flatnonzero(flag))
    want = ref.forward_backward(le, lengths, sp, A)
    runs = [kernels.hmm_forward_backward(le, lengths, sp, A, backend=backend, n_threads=n)
            for n in (1, 2)]
    for g1, g2, w in zip(*runs, want):
        np.testing.assert_array_equal(g1, g2)
        assert_close(g1, w, rtol=1e-9)


def test_gaussian_and_categorical_hmm_estimators(backend):
    """The estimators' score, predict_proba and fit on data that needs log space."""
    rng = np.random.default_rng(3)
    K, D = 3, 2
    sp, A = _left_right(K)
    means = np.array([[0.0, 0.0], [60.0, 0.0], [0.0, 60.0]])
    lengths = np.array([15, 12, 20])
    X = np.vstack([means[np.minimum(np.arange(T) * K // T, K - 1)] for T in lengths])
    X = X + rng.normal(size=X.shape)
    X[[1, 2, 16, 17]] = means[1]       # two frames each that look like a later state
    model = GaussianHMM(K, "diag", init_params="", params="stmc", n_iter=3, backend=backend)
    model.startprob_, model.transmat_ = sp, A
    model.means_, model.covars_ = means, np.ones((K, D))
    le = np.stack([-0.5 * (((X - m) ** 2).sum(axis=1) + D * np.log(2 * np.pi))
                   for m in means], axis=1)
    want = ref.forward_backward(le, lengths, sp, A)
    assert len(_flagged(backend, le, lengths, sp, A)) > 0
    assert_close(model.score(X, lengths), want[0], rtol=1e-9)
    assert_close(model.predict_proba(X, lengths), want[2], rtol=1e-9)
    model.fit(X, lengths)
    assert np.all(model.transmat_[A == 0] == 0) and np.isfinite(model.score(X, lengths))
    cat = CategoricalHMM(K, init_params="", params="st", n_iter=1, backend=backend)
    cat.startprob_, cat.transmat_ = sp, A
    cat.emissionprob_ = np.full((K, K), 1e-300) + np.eye(K)
    sym = np.argmax(le, axis=1)
    want_c = ref.forward_backward(np.log(cat.emissionprob_[:, sym].T), lengths, sp, A)
    assert_close(cat.score(sym[:, None], lengths), want_c[0], rtol=1e-9)


@pytest.mark.parametrize("hmm_module", HMM_MODULES,
                         ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_each_build_flags_the_same_sequences(hmm_module):
    """Every Cython build (lane batches of 2, 4 or 8 sequences) flags exactly the sequences
    that need log space and gives the others their scaled results."""
    rng = np.random.default_rng(11)
    K = 3
    sp, A = _left_right(K)
    lengths = np.array([12] * 19 + [30, 2, 12])
    flag = (rng.random(len(lengths)) < 0.4) & (lengths >= 10)
    le = np.vstack([_flagged_log_emission(rng, T, K) if f else rng.normal(size=(T, K))
                    for T, f in zip(lengths, flag)])
    off = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    seq_ll, start, trans = np.empty(len(lengths)), np.empty(K), np.empty((K, K))
    hmm_module.forward_backward(le, off, sp, A, np.empty((0, K)), start, trans, seq_ll, 2)
    np.testing.assert_array_equal(np.flatnonzero(seq_ll == np.inf), np.flatnonzero(flag))
    want = ref.forward_backward(le, lengths, sp, A)[1]
    assert_close(seq_ll[~flag], want[~flag], rtol=1e-9)
