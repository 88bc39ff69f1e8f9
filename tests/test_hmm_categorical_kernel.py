"""``emfast.kernels.hmm_categorical_forward_backward``: the forward-backward of a categorical
HMM with its posterior-weighted symbol counts in one call (the emission probabilities read
inside the kernel, no (T, K) array), against the NumPy reference (tests/reference_hmm.py on
the log-emissions, ``np.add.at`` for the counts)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reference_hmm as ref
from conftest import assert_close
from emfast._config import available_backends
from emfast.kernels import hmm_categorical_forward_backward
from test_dispatch import HMM_MODULES

HMM_BACKENDS = available_backends("hmm")
NAMES = ("loglik", "seq_ll", "start", "trans", "counts")


@pytest.fixture(params=HMM_BACKENDS)
def backend(request):
    return request.param


def _case(seed, K, F, lengths):
    """Symbols drawn uniformly; emission rows with a few exact zeros."""
    rng = np.random.default_rng(seed)
    lengths = np.asarray(lengths)
    B = rng.dirichlet(np.ones(F), size=K) * (rng.random((K, F)) < 0.8)
    B[np.arange(K), rng.integers(F, size=K)] += 0.2
    B /= B.sum(axis=1, keepdims=True)
    sym = rng.integers(F, size=int(lengths.sum()))
    sp = rng.dirichlet(np.ones(K))
    A = rng.dirichlet(np.ones(K), size=K)
    return sym, lengths, sp, A, B


def _reference(sym, lengths, sp, A, B):
    with np.errstate(divide="ignore"):
        le = np.log(B[:, sym].T)
    ll, seq_ll, post, start, trans = ref.forward_backward(le, lengths, sp, A)
    counts = np.zeros((B.shape[1], B.shape[0]))
    np.add.at(counts, sym, post)
    return ll, seq_ll, start, trans, counts


CASES = [  # (K, F, lengths): lane batches, short batches, single sequences, K > 16
    (1, 3, [7, 1, 4]),
    (3, 5, [30] * 9),
    (4, 6, [25] * 11),  # a short lane batch at the end (AVX-512 build: 8 + 3)
    (5, 4, [40, 38, 40, 33, 40, 40, 37, 40, 3, 40, 40, 40, 40, 39, 36, 40, 40, 1]),
    (10, 50, [100] * 20 + [60, 2, 9]),
    (13, 6, [20] * 8),
    (16, 2, [15] * 9),
    (20, 7, [50, 1, 31]),
    (17, 5, [30] * 9),
    (24, 50, [20] * 11 + [3]),
    (33, 7, [25] * 8 + [60, 2]),
    (64, 9, [12] * 10 + [30]),
]


@pytest.mark.parametrize("K,F,lengths", CASES)
def test_matches_reference(backend, K, F, lengths):
    sym, lengths, sp, A, B = _case(K * 10 + F, K, F, lengths)
    inputs = [sym, lengths, sp, A, B]
    before = [a.copy() for a in inputs]
    got = hmm_categorical_forward_backward(sym, lengths, sp, A, B, backend=backend,
                                           n_threads=2)
    want = _reference(sym, lengths, sp, A, B)
    for g, w, name in zip(got, want, NAMES):
        assert_close(g, w, err_msg=name)
    # A symbol that a state never emits gets no count from it.
    assert np.all(got[4].T[B == 0] == 0.0)
    for a, b in zip(inputs, before):
        np.testing.assert_array_equal(a, b)


def test_thread_count_does_not_change_bits(backend):
    lengths = list(np.random.default_rng(0).integers(20, 26, size=70)) + [3, 90]
    sym, lengths, sp, A, B = _case(11, 6, 9, lengths)
    runs = [hmm_categorical_forward_backward(sym, lengths, sp, A, B, backend=backend,
                                             n_threads=n) for n in (1, 2, 3)]
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("K", [3, 8, 40])
def test_impossible_sequences_add_nothing(backend, K):
    """Symbol 0 has probability 0 in every state: the two sequences that contain it (one
    inside a lane batch, one alone) are impossible and add nothing; the others are
    unchanged."""
    lengths = [30] * 8 + [5, 12]
    sym, lengths, sp, A, B = _case(K, K, 4, lengths)
    B[:, 0] = 0.0
    B[:, 1] += 1e-3
    B /= B.sum(axis=1, keepdims=True)
    sym[sym == 0] = 1
    off = np.r_[0, np.cumsum(lengths)]
    bad = [2, 9]
    for s in bad:
        sym[off[s] + 1] = 0
    good = [s for s in range(len(lengths)) if s not in bad]
    rows = np.concatenate([np.arange(off[s], off[s + 1]) for s in good])
    got = hmm_categorical_forward_backward(sym, lengths, sp, A, B, backend=backend,
                                           n_threads=2)
    want = _reference(sym[rows], lengths[good], sp, A, B)
    assert got[0] == -np.inf and np.all(got[1][bad] == -np.inf)
    assert_close(got[1][good], want[1])
    for g, w, name in list(zip(got, want, NAMES))[2:]:
        assert_close(g, w, err_msg=name)


@pytest.mark.parametrize("change,match", [
    (dict(lengths=[3, 4]), "lengths array doesn't sum to 10 samples: the 2 lengths sum to 7"),
    (dict(lengths=[10, 0]), "lengths must be positive: lengths\\[1\\]"),
    (dict(symbols=np.zeros((10, 1), dtype=int)), "symbols must be a 1-D integer array"),
    (dict(symbols=np.zeros(10)), "symbols must be a 1-D integer array"),
    (dict(symbols=np.full(10, 4)), r"symbols must lie in \[0, 4\): symbols\[0\] = 4"),
    (dict(symbols=np.r_[np.zeros(9, dtype=int), -1]), r"symbols\[9\] = -1"),
    (dict(emissionprob=np.full(12, 0.25)), "emissionprob must be 2-D"),
    (dict(startprob=np.full(4, 0.25)), r"startprob must have shape \(3,\)"),
    (dict(transmat=np.full((3, 4), 0.25)), r"transmat must have shape \(3, 3\)"),
])
def test_bad_input_raises_value_error(change, match):
    args = dict(symbols=np.zeros(10, dtype=int), lengths=[4, 6],
                startprob=np.full(3, 1 / 3), transmat=np.full((3, 3), 1 / 3),
                emissionprob=np.full((3, 4), 0.25))
    args.update(change)
    with pytest.raises(ValueError, match=match):
        hmm_categorical_forward_backward(**args)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(K=st.integers(1, 40), F=st.integers(1, 12),
       lengths=st.lists(st.integers(1, 30), min_size=1, max_size=30),
       seed=st.integers(0, 2**31 - 1))
def test_any_lengths_and_shapes(K, F, lengths, seed):
    sym, lengths, sp, A, B = _case(seed, K, F, lengths)
    want = _reference(sym, lengths, sp, A, B)
    for backend in HMM_BACKENDS:
        got = hmm_categorical_forward_backward(sym, lengths, sp, A, B, backend=backend,
                                               n_threads=2)
        for g, w, name in zip(got, want, NAMES):
            assert_close(g, w, rtol=1e-9, err_msg=f"{backend} {name}")


@pytest.mark.parametrize("hmm_module", HMM_MODULES,
                         ids=lambda m: m.__name__.rsplit(".", 1)[-1])
@pytest.mark.parametrize("K", [17, 33, 64])
def test_each_hmm_build_many_states(hmm_module, K):
    """Every build (2, 4 or 8 sequences per lane batch) with more states than its lanes
    keep the transition matrix splat for: full and short lane batches, single sequences
    and an impossible sequence (a symbol no state emits) inside a batch."""
    sym, lengths, sp, A, B = _case(K, K, 6, [20] * 8 + [18, 20, 19, 70, 1])
    B[:, 0] = 0.0
    B[:, 1] += 1e-3
    B /= B.sum(axis=1, keepdims=True)
    sym[sym == 0] = 1
    off = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    sym[off[2] + 5] = 0
    good = [s for s in range(len(lengths)) if s != 2]
    rows = np.concatenate([np.arange(off[s], off[s + 1]) for s in good])
    want = _reference(sym[rows], lengths[good], sp, A, B)
    S, F = len(lengths), B.shape[1]
    got = (np.empty(K), np.empty((K, K)), np.empty(S), np.empty((F, K)))
    total = hmm_module.categorical_forward_backward(sym, off, sp, A, B, *got, 2)
    assert total == -np.inf and got[2][2] == -np.inf
    assert_close(got[2][good], want[1], err_msg="seq_ll")
    for g, w, name in zip(got[:2] + got[3:], want[2:], NAMES[2:]):
        assert_close(g, w, err_msg=name)
