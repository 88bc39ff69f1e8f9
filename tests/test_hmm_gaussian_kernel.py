"""``emfast.kernels.hmm_gaussian_forward_backward``: the forward-backward of a Gaussian HMM
with its posterior-weighted emission statistics in one call (fused for diag and spherical:
densities computed inside the recursion, no (T, K) array), against the NumPy references
(tests/reference.py for the densities and statistics, tests/reference_hmm.py for the
forward-backward)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reference as gref
import reference_hmm as ref
from conftest import COV_TYPES, assert_close, random_params
from emfast._config import available_backends
from emfast.kernels import hmm_gaussian_forward_backward
from test_dispatch import HMM_MODULES

HMM_BACKENDS = available_backends("hmm")
NAMES = ("loglik", "seq_ll", "start", "trans", "nk", "s1", "s2")


@pytest.fixture(params=HMM_BACKENDS)
def backend(request):
    return request.param


def _case(seed, K, D, lengths, covariance_type, offset=0.0):
    """X drawn from the model's own means, so that posteriors are not all flat."""
    rng = np.random.default_rng(seed)
    means, pc, lc = random_params(rng, K, D, covariance_type)
    means = means + offset
    lengths = np.asarray(lengths)
    X = means[rng.integers(K, size=int(lengths.sum()))] + rng.normal(size=(lengths.sum(), D))
    sp = rng.dirichlet(np.ones(K))
    A = rng.dirichlet(np.ones(K), size=K) * (rng.random((K, K)) < 0.7)
    A[np.arange(K), rng.integers(K, size=K)] += 0.3
    A /= A.sum(axis=1, keepdims=True)
    return X, lengths, sp, A, means, pc, lc


def _reference(X, lengths, sp, A, means, pc, covariance_type, lc):
    le = gref.weighted_log_prob(X, lc, means, pc, covariance_type)
    ll, seq_ll, post, start, trans = ref.forward_backward(le, lengths, sp, A)
    nk, s1, s2 = gref.weighted_stats(X, post, means, covariance_type)
    return ll, seq_ll, start, trans, nk, s1, s2


CASES = [  # (K, D, lengths): lane batches, ragged batches, single sequences, K > 16
    (1, 2, [7, 1, 4]),
    (3, 1, [30] * 9),
    (4, 3, [25] * 11),  # a short lane batch at the end (AVX-512 build: 8 + 3)
    (5, 3, [40, 38, 40, 33, 40, 40, 37, 40, 3, 40, 40, 40, 40, 39, 36, 40, 40, 1]),
    (8, 4, [25] * 16 + [60, 2, 9]),
    (13, 6, [20] * 8),
    (16, 2, [15] * 9),
    (20, 3, [50, 1, 31]),
    (17, 3, [30] * 9),
    (24, 2, [20] * 11 + [3]),
    (33, 4, [25] * 8 + [60, 2]),
    (64, 2, [12] * 10 + [30]),
]


@pytest.mark.parametrize("covariance_type", COV_TYPES)
@pytest.mark.parametrize("K,D,lengths", CASES)
def test_matches_reference(backend, covariance_type, K, D, lengths):
    X, lengths, sp, A, means, pc, lc = _case(K * 10 + D, K, D, lengths, covariance_type)
    inputs = [X, lengths, sp, A, means, pc, lc]
    before = [a.copy() for a in inputs]
    got = hmm_gaussian_forward_backward(X, lengths, sp, A, means, pc, covariance_type, lc,
                                        backend=backend, n_threads=2)
    want = _reference(X, lengths, sp, A, means, pc, covariance_type, lc)
    assert np.isfinite(got[0])
    for g, w, name in zip(got, want, NAMES):
        assert_close(g, w, err_msg=name)
    assert np.all(got[3][A == 0] == 0.0)
    for a, b in zip(inputs, before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("covariance_type", ["diag", "spherical"])
def test_statistics_are_centred_far_from_the_origin(backend, covariance_type):
    """Data at 1e6 with unit spread: the statistics about the means keep their digits (the
    uncentred sums would lose about twelve)."""
    X, lengths, sp, A, means, pc, lc = _case(3, 4, 3, [50] * 10, covariance_type, offset=1e6)
    got = hmm_gaussian_forward_backward(X, lengths, sp, A, means, pc, covariance_type, lc,
                                        backend=backend)
    want = _reference(X, lengths, sp, A, means, pc, covariance_type, lc)
    assert_close(got[5], want[5], rtol=1e-8, err_msg="s1")
    assert_close(got[6], want[6], rtol=1e-8, err_msg="s2")


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_thread_count_does_not_change_bits(backend, covariance_type):
    X, lengths, sp, A, means, pc, lc = _case(
        11, 6, 3, list(np.random.default_rng(0).integers(20, 26, size=70)) + [3, 90],
        covariance_type)
    runs = [hmm_gaussian_forward_backward(X, lengths, sp, A, means, pc, covariance_type, lc,
                                          backend=backend, n_threads=n) for n in (1, 2, 3)]
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("K", [3, 8, 40])
def test_impossible_sequences_add_nothing(backend, K):
    """startprob rules out every state but 0, and at the first frame of two sequences (one
    inside a lane batch, one alone) state 0's density is 0 in double precision next to
    state 1's: those sequences get -inf and add nothing; the others are unchanged."""
    lengths = [30] * 8 + [5, 12]
    X, lengths, sp, A, means, pc, lc = _case(K, K, 2, lengths, "diag")
    sp = np.zeros(K)
    sp[0] = 1.0
    off = np.r_[0, np.cumsum(lengths)]
    bad = [2, 9]
    means[1] = means[0] + 1e3
    for s in bad:
        X[off[s]] = means[1]
    good = [s for s in range(len(lengths)) if s not in bad]
    rows = np.concatenate([np.arange(off[s], off[s + 1]) for s in good])
    got = hmm_gaussian_forward_backward(X, lengths, sp, A, means, pc, "diag", lc,
                                        backend=backend, n_threads=2)
    want = _reference(X[rows], lengths[good], sp, A, means, pc, "diag", lc)
    assert got[0] == -np.inf and np.all(got[1][bad] == -np.inf)
    assert_close(got[1][good], want[1])
    for g, w, name in list(zip(got, want, NAMES))[2:]:
        assert_close(g, w, err_msg=name)


def test_float32_input_is_computed_in_float64(backend):
    X, lengths, sp, A, means, pc, lc = _case(4, 5, 3, [40] * 10, "diag")
    X32 = X.astype(np.float32)
    got = hmm_gaussian_forward_backward(X32, lengths, sp, A, means, pc, "diag", lc,
                                        backend=backend)
    want = hmm_gaussian_forward_backward(X32.astype(np.float64), lengths, sp, A, means, pc,
                                         "diag", lc, backend=backend)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("change,match", [
    (dict(lengths=[3, 4]), "lengths array doesn't sum to 10 samples: the 2 lengths sum to 7"),
    (dict(lengths=[10, 0]), "lengths must be positive: lengths\\[1\\]"),
    (dict(X=np.zeros(10)), "X must be 2-D"),
    (dict(X=np.zeros((10, 2), dtype=np.int64)), "X must be float32 or float64"),
    (dict(X=np.zeros((10, 3))), "X has 3 features but means have 2"),
    (dict(means=np.zeros((4, 2))), r"prec_chol must have shape \(4, 2\)"),
    (dict(prec_chol=np.ones((3, 3))), r"prec_chol must have shape \(3, 2\)"),
    (dict(log_const=np.zeros(4)), r"log_const must have shape \(3,\)"),
    (dict(startprob=np.full(4, 0.25)), r"startprob must have shape \(3,\)"),
    (dict(transmat=np.full((3, 4), 0.25)), r"transmat must have shape \(3, 3\)"),
    (dict(covariance_type="diagonal"), "covariance_type must be one of"),
])
def test_bad_input_raises_value_error(change, match):
    args = dict(X=np.zeros((10, 2)), lengths=[4, 6], startprob=np.full(3, 1 / 3),
                transmat=np.full((3, 3), 1 / 3), means=np.zeros((3, 2)),
                prec_chol=np.ones((3, 2)), covariance_type="diag", log_const=np.zeros(3))
    args.update(change)
    with pytest.raises((ValueError, TypeError), match=match):
        hmm_gaussian_forward_backward(**args)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(K=st.integers(1, 40), D=st.integers(1, 6),
       lengths=st.lists(st.integers(1, 30), min_size=1, max_size=30),
       covariance_type=st.sampled_from(["diag", "spherical"]),
       seed=st.integers(0, 2**31 - 1))
def test_any_lengths_and_shapes(K, D, lengths, covariance_type, seed):
    X, lengths, sp, A, means, pc, lc = _case(seed, K, D, lengths, covariance_type)
    want = _reference(X, lengths, sp, A, means, pc, covariance_type, lc)
    for backend in HMM_BACKENDS:
        got = hmm_gaussian_forward_backward(X, lengths, sp, A, means, pc, covariance_type, lc,
                                            backend=backend, n_threads=2)
        for g, w, name in zip(got, want, NAMES):
            assert_close(g, w, rtol=1e-9, err_msg=f"{backend} {name}")


@pytest.mark.parametrize("hmm_module", HMM_MODULES,
                         ids=lambda m: m.__name__.rsplit(".", 1)[-1])
@pytest.mark.parametrize("K", [17, 33, 64])
def test_each_hmm_build_many_states(hmm_module, K):
    """Every build (2, 4 or 8 sequences per lane batch) with more states than its lanes
    keep the transition matrix splat for: full and short lane batches, single sequences
    and an impossible sequence inside a batch."""
    X, lengths, sp, A, means, pc, lc = _case(K, K, 3, [20] * 8 + [18, 20, 19, 70, 1], "diag")
    sp = np.zeros(K)
    sp[0] = 1.0
    off = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    means[1] = means[0] + 1e3
    X[off[2]] = means[1]
    good = [s for s in range(len(lengths)) if s != 2]
    rows = np.concatenate([np.arange(off[s], off[s + 1]) for s in good])
    want = _reference(X[rows], lengths[good], sp, A, means, pc, "diag", lc)
    S, D = len(lengths), X.shape[1]
    got = (np.empty(K), np.empty((K, K)), np.empty(S), np.empty(K), np.empty((K, D)),
           np.empty((K, D)))
    total = hmm_module.gaussian_forward_backward(X, off, sp, A, means, pc, lc, *got, 2)
    assert total == -np.inf and got[2][2] == -np.inf
    assert_close(got[2][good], want[1], err_msg="seq_ll")
    for g, w, name in zip(got[:2] + got[3:], want[2:], NAMES[2:]):
        assert_close(g, w, err_msg=name)
