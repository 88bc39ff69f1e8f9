"""HMM kernels (forward-backward, Viterbi, filter) of every backend against the NumPy
reference and brute force over all state paths (tests/reference_hmm.py), plus the numerics,
determinism and validation promises of the public ``emfast.kernels.hmm_*`` functions."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reference_hmm as ref
from conftest import assert_close
from emfast._config import available_backends
from emfast.kernels import hmm_filter, hmm_forward_backward, hmm_viterbi, symbol_counts

HMM_BACKENDS = available_backends("hmm")
RTOL = 1e-10


@pytest.fixture(params=HMM_BACKENDS)
def backend(request):
    return request.param


def test_numba_backend_is_available():
    assert "numba" in HMM_BACKENDS


def _model(rng, K, zeros="none"):
    """startprob (K,), transmat (K, K). zeros: "none"; "left_right" (upper-triangular
    transmat with band 2, startprob on state 0 only); "random" (random zero entries in both,
    every row keeps one positive entry)."""
    sp = rng.dirichlet(np.ones(K))
    A = rng.dirichlet(np.ones(K), size=K)
    if zeros == "left_right":
        A = np.triu(A) - np.triu(A, 3)
        sp = np.zeros(K)
        sp[0] = 1.0
    elif zeros == "random":
        A = A * (rng.random((K, K)) < 0.6)
        A[np.arange(K), rng.integers(K, size=K)] += 0.5
        sp = sp * (rng.random(K) < 0.6)
        sp[rng.integers(K)] += 0.5
    return sp / sp.sum(), A / A.sum(axis=1, keepdims=True)


def _data(seed, K, lengths, zeros="none", spread=3.0):
    rng = np.random.default_rng(seed)
    sp, A = _model(rng, K, zeros)
    le = rng.normal(scale=spread, size=(int(np.sum(lengths)), K)) - 5.0
    return le, np.asarray(lengths), sp, A


CASES = [  # (K, lengths, zeros)
    (1, [5, 1, 3], "none"),
    (2, [1], "none"),
    (3, [4, 1, 7, 1, 2], "random"),
    (4, [60, 1, 33, 2, 9], "none"),
    (5, [40, 17, 1, 25], "left_right"),
    (8, [120, 1, 64, 65, 3], "random"),
    (13, [50, 30, 1], "none"),
    (17, [70, 1, 20], "left_right"),
    (32, [40, 1, 9], "random"),
]


@pytest.mark.parametrize("K,lengths,zeros", CASES)
def test_forward_backward_matches_reference(backend, K, lengths, zeros):
    le, lengths, sp, A = _data(K, K, lengths, zeros)
    before = [x.copy() for x in (le, lengths, sp, A)]
    ll, seq_ll, post, start, trans = hmm_forward_backward(le, lengths, sp, A, backend=backend,
                                                          n_threads=2)
    wll, wseq, wpost, wstart, wtrans = ref.forward_backward(le, lengths, sp, A)
    assert np.isfinite(ll)
    assert_close(ll, wll, err_msg="loglik")
    assert_close(seq_ll, wseq, err_msg="seq_ll")
    assert_close(post, wpost, err_msg="posteriors")
    assert_close(start, wstart, err_msg="start counts")
    assert_close(trans, wtrans, err_msg="trans counts")
    # Exact zeros stay exact: impossible transitions get no counts, impossible first states
    # no posterior mass.
    assert np.all(trans[A == 0] == 0.0)
    assert np.all(post[np.cumsum(np.r_[0, lengths[:-1]])][:, sp == 0] == 0.0)
    assert np.all(start[sp == 0] == 0.0)
    # The counts are consistent with the posteriors they come from.
    assert_close(trans.sum(), len(le) - len(lengths))
    assert_close(post.sum(axis=1), np.ones(len(le)))
    for x, y in zip((le, lengths, sp, A), before):
        np.testing.assert_array_equal(x, y)
    # Without posteriors: the same numbers, bit for bit.
    ll2, seq2, none, start2, trans2 = hmm_forward_backward(
        le, lengths, sp, A, posteriors=False, backend=backend, n_threads=2)
    assert none is None
    assert ll2 == ll
    np.testing.assert_array_equal(seq2, seq_ll)
    np.testing.assert_array_equal(start2, start)
    np.testing.assert_array_equal(trans2, trans)


@pytest.mark.parametrize("K,lengths,zeros", CASES)
def test_viterbi_matches_reference(backend, K, lengths, zeros):
    le, lengths, sp, A = _data(K + 100, K, lengths, zeros)
    lp, path, seq_lp = hmm_viterbi(le, lengths, sp, A, backend=backend, n_threads=2)
    wlp, wpath, wseq = ref.viterbi(le, lengths, sp, A)
    assert path.dtype == np.int64
    np.testing.assert_array_equal(path, wpath)
    assert_close(lp, wlp)
    assert_close(seq_lp, wseq)


def test_viterbi_ties_go_to_lowest_state(backend):
    """Every state equally likely everywhere: the best path is all zeros, as np.argmax."""
    K, T = 4, 9
    le = np.zeros((T, K))
    sp = np.full(K, 1 / K)
    A = np.full((K, K), 1 / K)
    lp, path, seq_lp = hmm_viterbi(le, None, sp, A, backend=backend)
    np.testing.assert_array_equal(path, np.zeros(T, dtype=np.int64))
    assert_close(lp, T * np.log(1 / K))
    # Ties broken at the last frame only: states 1 and 3 best, 1 wins.
    le[-1] = [-1.0, 0.0, -2.0, 0.0]
    _, path, _ = hmm_viterbi(le, None, sp, A, backend=backend)
    assert path[-1] == 1


@pytest.mark.parametrize("K,lengths,zeros", CASES)
def test_filter_matches_reference(backend, K, lengths, zeros):
    le, lengths, sp, A = _data(K + 200, K, lengths, zeros)
    ll, filt, seq_ll = hmm_filter(le, lengths, sp, A, backend=backend, n_threads=2)
    wll, wfilt, wseq = ref.filtered(le, lengths, sp, A)
    assert_close(ll, wll)
    assert_close(filt, wfilt)
    assert_close(seq_ll, wseq)
    # Filtering and smoothing agree on the likelihood and on the last frame of a sequence.
    fll, fseq, post, _, _ = hmm_forward_backward(le, lengths, sp, A, backend=backend)
    assert_close(seq_ll, fseq, rtol=1e-12)
    last = np.cumsum(lengths) - 1
    assert_close(filt[last], post[last], rtol=1e-12)
    ll2, none, seq2 = hmm_filter(le, lengths, sp, A, filtered=False, backend=backend)
    assert none is None
    assert ll2 == ll
    np.testing.assert_array_equal(seq2, seq_ll)


# ------------------------------------------------------------------------------------------
# Brute force: every state path of tiny models enumerated.
@pytest.mark.parametrize("K", [2, 3])
@pytest.mark.parametrize("T", [1, 2, 3, 6])
@pytest.mark.parametrize("zeros", ["none", "random"])
def test_brute_force(backend, K, T, zeros):
    rng = np.random.default_rng(10 * K + T)
    for _ in range(3):
        sp, A = _model(rng, K, zeros)
        le = rng.normal(scale=2.0, size=(T, K))
        bll, bpost, bpath, blp, btrans = ref.brute_force(le, sp, A)
        ll, seq_ll, post, start, trans = hmm_forward_backward(le, [T], sp, A, backend=backend)
        assert_close(ll, bll)
        assert_close(seq_ll, [bll])
        assert_close(post, bpost)
        assert_close(start, bpost[0])
        assert_close(trans, btrans)
        lp, path, seq_lp = hmm_viterbi(le, [T], sp, A, backend=backend)
        # The enumeration's argmax takes the lexicographically first of tied paths; random
        # continuous emissions make ties impossible.
        np.testing.assert_array_equal(path, bpath)
        assert_close(lp, blp)
        assert_close(seq_lp, [blp])
        fll, _, _ = hmm_filter(le, [T], sp, A, filtered=False, backend=backend)
        assert_close(fll, bll)


# ------------------------------------------------------------------------------------------
# Numerics at scale.
def test_million_frames_far_apart_emissions(backend):
    """10^6 frames whose emissions are 1e4 nats apart: everything stays finite, and the
    log-likelihood is that of the one path the emissions allow (the others weigh exp(-1e4))."""
    rng = np.random.default_rng(3)
    K, T = 3, 1_000_000
    sp, A = _model(rng, K)
    steps = rng.random(T) < 0.3  # change state now and then
    z = np.cumsum(steps) % K
    le = np.full((T, K), -1e4)
    le[np.arange(T), z] = -3.0 - rng.random(T)  # the true state's emission
    want = np.log(sp[z[0]]) + np.log(A[z[:-1], z[1:]]).sum() + le[np.arange(T), z].sum()
    ll, seq_ll, post, start, trans = hmm_forward_backward(le, None, sp, A, backend=backend)
    assert np.isfinite(ll)
    assert_close(ll, want)
    assert np.all(np.argmax(post, axis=1) == z)
    assert_close(post[np.arange(T), z], np.ones(T))
    counts = np.zeros((K, K))
    np.add.at(counts, (z[:-1], z[1:]), 1.0)
    assert_close(trans, counts)
    lp, path, _ = hmm_viterbi(le, None, sp, A, backend=backend)
    np.testing.assert_array_equal(path, z)
    assert_close(lp, want)
    fll, _, _ = hmm_filter(le, None, sp, A, filtered=False, backend=backend)
    assert_close(fll, want)


def test_long_sequence_no_underflow(backend):
    """A long sequence: its likelihood exp(-1e6) underflows any unscaled recursion; the
    scaled one matches the log-space reference. The reference's own posteriors carry an
    error of about |loglik| * eps * sqrt(T) ~ 1e-8 (exp of a difference of log-alphas and
    log-betas of size 1e6), hence the looser tolerance there."""
    le, lengths, sp, A = _data(5, 4, [5_000], spread=30.0)
    le -= 200.0
    ll, _, post, _, trans = hmm_forward_backward(le, lengths, sp, A, backend=backend)
    wll, _, wpost, _, wtrans = ref.forward_backward(le, lengths, sp, A)
    assert ll < -5e5
    assert_close(ll, wll)
    assert_close(post, wpost, rtol=1e-6)
    assert_close(trans, wtrans, rtol=1e-6)
    assert_close(post.sum(axis=1), np.ones(len(le)), rtol=1e-12)
    assert_close(trans.sum(), len(le) - 1.0, rtol=1e-12)


# ------------------------------------------------------------------------------------------
# Determinism.
def _many_sequences(seed, S, K=6, zeros="random"):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 40, size=S)
    lengths[::7] = 1
    le = rng.normal(scale=3.0, size=(int(lengths.sum()), K))
    sp, A = _model(rng, K, zeros)
    return le, lengths, sp, A


@pytest.mark.parametrize("S,K", [(1, 6), (5, 6), (64, 6), (150, 6), (90, 40)])
def test_thread_count_does_not_change_bits(backend, S, K):
    le, lengths, sp, A = _many_sequences(S, S, K)
    runs = []
    for n in (1, 2, 3):
        fb = hmm_forward_backward(le, lengths, sp, A, backend=backend, n_threads=n)
        vit = hmm_viterbi(le, lengths, sp, A, backend=backend, n_threads=n)
        filt = hmm_filter(le, lengths, sp, A, backend=backend, n_threads=n)
        runs.append(fb + vit + filt)
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            if isinstance(a, float):
                assert a == b
            else:
                np.testing.assert_array_equal(a, b)


def test_bits_do_not_depend_on_array_addresses_or_threads(backend):
    """Outputs written at different memory offsets, by 1 or 2 threads, are the same bits.

    A compiled loop may be vectorised behind a run-time check that its arrays do not
    overlap; if its fallback rounds differently, results depend on where arrays lie (this
    once broke the Numba backward pass at K = 8)."""
    from emfast._config import get_backend

    mod = get_backend(backend, "hmm")
    rng = np.random.default_rng(0)
    S, L, K = 100, 1000, 8
    T = S * L
    le = rng.normal(size=(T, K)) * 2.0 - 3.0
    offsets = np.arange(0, T + 1, L, dtype=np.int64)
    sp, A = rng.dirichlet(np.ones(K)), rng.dirichlet(np.ones(K), size=K)
    ref = None
    for shift in range(4):
        for n in (1, 2):
            buf = np.empty(T * K + 8)
            post = buf[shift:shift + T * K].reshape(T, K)
            lbuf = np.empty(T * K + 8)
            le_s = lbuf[shift:shift + T * K].reshape(T, K)
            le_s[:] = le
            start, trans, seq_ll = np.empty(K), np.empty((K, K)), np.empty(S)
            total = mod.forward_backward(le_s, offsets, sp, A, post, start, trans, seq_ll, n)
            got = (post.copy(), trans, seq_ll, start, np.array([total]))
            if ref is None:
                ref = got
            for a, b in zip(ref, got):
                np.testing.assert_array_equal(a, b)


def test_sequence_order_only_permutes_outputs(backend):
    le, lengths, sp, A = _many_sequences(7, 90)
    S = len(lengths)
    perm = np.random.default_rng(8).permutation(S)
    off = np.r_[0, np.cumsum(lengths)]
    rows = np.concatenate([np.arange(off[s], off[s + 1]) for s in perm])
    le_p, len_p = le[rows], lengths[perm]

    ll, seq_ll, post, start, trans = hmm_forward_backward(le, lengths, sp, A, backend=backend)
    ll_p, seq_p, post_p, start_p, trans_p = hmm_forward_backward(le_p, len_p, sp, A,
                                                                 backend=backend)
    assert_close(ll_p, ll, rtol=1e-12)
    assert_close(start_p, start, rtol=1e-12)
    assert_close(trans_p, trans, rtol=1e-12)
    assert_close(seq_p, seq_ll[perm], rtol=1e-12)
    assert_close(post_p, post[rows], rtol=1e-12)

    lp, path, seq_lp = hmm_viterbi(le, lengths, sp, A, backend=backend)
    lp_p, path_p, seq_lp_p = hmm_viterbi(le_p, len_p, sp, A, backend=backend)
    assert_close(lp_p, lp, rtol=1e-12)
    np.testing.assert_array_equal(path_p, path[rows])
    assert_close(seq_lp_p, seq_lp[perm], rtol=1e-12)

    fll, filt, fseq = hmm_filter(le, lengths, sp, A, backend=backend)
    fll_p, filt_p, fseq_p = hmm_filter(le_p, len_p, sp, A, backend=backend)
    assert_close(fll_p, fll, rtol=1e-12)
    assert_close(filt_p, filt[rows], rtol=1e-12)
    assert_close(fseq_p, fseq[perm], rtol=1e-12)


# ------------------------------------------------------------------------------------------
# Impossible sequences.
def _impossible_case():
    """Left-right model, 4 states; sequence 1 has a frame impossible in every state,
    sequence 3 needs a backward transition (state 2 then state 0); 0, 2 and 4 are fine."""
    rng = np.random.default_rng(11)
    K = 4
    sp, A = _model(rng, K, "left_right")
    lengths = np.array([6, 5, 4, 7, 1])
    le = rng.normal(size=(lengths.sum(), K)) - 2.0
    off = np.r_[0, np.cumsum(lengths)]
    le[off[1] + 2] = -np.inf
    le[off[3]:off[3] + 3] = [0.0, -np.inf, -np.inf, -np.inf]  # state 0 ...
    le[off[3] + 3] = [-np.inf, -np.inf, 0.0, -np.inf]  # ... then state 2 ...
    le[off[3] + 4] = [0.0, -np.inf, -np.inf, -np.inf]  # ... then state 0: impossible
    return le, lengths, sp, A, off, [1, 3], [0, 2, 4]


def test_impossible_sequences(backend):
    le, lengths, sp, A, off, bad, good = _impossible_case()
    ll, seq_ll, post, start, trans = hmm_forward_backward(le, lengths, sp, A, backend=backend)
    assert ll == -np.inf
    assert np.all(seq_ll[bad] == -np.inf)
    assert np.all(np.isfinite(seq_ll[good]))
    rows_bad = np.concatenate([np.arange(off[s], off[s + 1]) for s in bad])
    rows_good = np.concatenate([np.arange(off[s], off[s + 1]) for s in good])
    assert np.all(post[rows_bad] == 0.0)
    # The possible sequences alone: same numbers; the impossible ones add no counts.
    wll, wseq, wpost, wstart, wtrans = ref.forward_backward(le[rows_good], lengths[good], sp, A)
    assert_close(seq_ll[good], wseq)
    assert_close(post[rows_good], wpost)
    assert_close(start, wstart)
    assert_close(trans, wtrans)
    assert np.all(np.isfinite(post)) and np.all(np.isfinite(trans))
    # No posteriors requested: the same.
    ll2, seq2, _, start2, trans2 = hmm_forward_backward(le, lengths, sp, A, posteriors=False,
                                                        backend=backend)
    assert ll2 == -np.inf
    np.testing.assert_array_equal(seq2, seq_ll)
    np.testing.assert_array_equal(start2, start)
    np.testing.assert_array_equal(trans2, trans)

    lp, path, seq_lp = hmm_viterbi(le, lengths, sp, A, backend=backend)
    wlp, wpath, wseq_lp = ref.viterbi(le, lengths, sp, A)
    assert lp == -np.inf
    assert np.all(seq_lp[bad] == -np.inf)
    assert_close(seq_lp[good], wseq_lp[good])
    np.testing.assert_array_equal(path[rows_good], wpath[rows_good])
    assert np.all((path >= 0) & (path < A.shape[0]))

    fll, filt, fseq = hmm_filter(le, lengths, sp, A, backend=backend)
    with np.errstate(invalid="ignore"):  # the reference's -inf - -inf
        wfll, wfilt, wfseq = ref.filtered(le, lengths, sp, A)
    assert fll == -np.inf
    assert np.all(fseq[bad] == -np.inf) and np.all(wfseq[bad] == -np.inf)
    assert_close(fseq[good], wfseq[good])
    assert_close(filt[rows_good], wfilt[rows_good])
    # Causal: the frames before the impossible one are filtered as usual, the rest are 0.
    for s, first_bad in ((1, 2), (3, 4)):
        ok = np.arange(off[s], off[s] + first_bad)
        assert_close(filt[ok], wfilt[ok])
        assert np.all(filt[off[s] + first_bad:off[s + 1]] == 0.0)


# Sequences of similar length are advanced several at a time, one per SIMD lane (the
# Cython backend, K <= 64): lanes that end early, turn impossible or meet NaN must not
# change any other sequence's numbers.
LANE_CASES = [  # (K, lengths)
    (3, [6] * 8),
    (6, [20] * 13),  # a short batch at the end (8 + 5, 4 x 3 + 1, 2 x 6 + 1)
    (8, [40, 38, 40, 33, 40, 40, 37, 40, 3, 40, 40, 40, 40, 39, 36, 40, 40, 1]),
    (13, [20] * 8),  # a K without its own compiled copy of the lane kernel
    (16, [25] * 9),
    # more states than the lanes keep the transition matrix splat for
    (17, [12] * 11),
    (33, [10, 9, 10, 10, 8, 10, 10, 10, 10, 10, 2]),
    (64, [8] * 10),
]


@pytest.mark.parametrize("K,lengths", LANE_CASES)
def test_lanes_ragged_and_impossible(backend, K, lengths):
    le, lengths, sp, A = _data(K + 40, K, lengths, "random")
    off = np.r_[0, np.cumsum(lengths)]
    bad = [1, len(lengths) - 3]
    for s in bad:
        le[off[s] + lengths[s] // 2] = -np.inf
    good = [s for s in range(len(lengths)) if s not in bad]
    rows_good = np.concatenate([np.arange(off[s], off[s + 1]) for s in good])
    rows_bad = np.concatenate([np.arange(off[s], off[s + 1]) for s in bad])
    for posteriors in (True, False):
        ll, seq_ll, post, start, trans = hmm_forward_backward(
            le, lengths, sp, A, posteriors=posteriors, backend=backend, n_threads=2)
        wll, wseq, wpost, wstart, wtrans = ref.forward_backward(le[rows_good], lengths[good],
                                                                 sp, A)
        assert ll == -np.inf
        assert np.all(seq_ll[bad] == -np.inf)
        assert_close(seq_ll[good], wseq)
        assert_close(start, wstart)
        assert_close(trans, wtrans)
        if posteriors:
            assert_close(post[rows_good], wpost)
            assert np.all(post[rows_bad] == 0.0)


def test_nan_sequence_leaves_the_others_alone(backend):
    le, lengths, sp, A = _data(5, 6, [30] * 12, "none")
    off = np.r_[0, np.cumsum(lengths)]
    le[off[2] + 7, 3] = np.nan
    good = [s for s in range(len(lengths)) if s != 2]
    rows_good = np.concatenate([np.arange(off[s], off[s + 1]) for s in good])
    _, seq_ll, post, _, _ = hmm_forward_backward(le, lengths, sp, A, backend=backend)
    _, wseq, wpost, _, _ = ref.forward_backward(le[rows_good], lengths[good], sp, A)
    assert np.isnan(seq_ll[2])
    assert_close(seq_ll[good], wseq)
    assert_close(post[rows_good], wpost)


def test_impossible_start(backend):
    """The first frame can only come from a state that startprob rules out."""
    sp = np.array([1.0, 0.0])
    A = np.array([[0.5, 0.5], [0.5, 0.5]])
    le = np.array([[-np.inf, 0.0], [0.0, 0.0]])
    ll, seq_ll, post, start, trans = hmm_forward_backward(le, [2], sp, A, backend=backend)
    assert ll == -np.inf and seq_ll[0] == -np.inf
    assert np.all(post == 0.0) and np.all(start == 0.0) and np.all(trans == 0.0)


# ------------------------------------------------------------------------------------------
# Inputs.
def test_read_only_and_strided_inputs(backend):
    le, lengths, sp, A = _data(21, 5, [30, 4, 1])
    want = hmm_forward_backward(le, lengths, sp, A, backend=backend)
    le_ro, sp_ro, A_ro = le.copy(), sp.copy(), A.copy()
    for x in (le_ro, sp_ro, A_ro):
        x.flags.writeable = False
    got = hmm_forward_backward(le_ro, lengths, sp_ro, A_ro, backend=backend)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    wide = np.zeros((len(le), 10))
    wide[:, ::2] = le
    got = hmm_forward_backward(wide[:, ::2], list(lengths), sp, np.asfortranarray(A),
                               backend=backend)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    _, path, _ = hmm_viterbi(le_ro, lengths, sp_ro, A_ro, backend=backend)
    np.testing.assert_array_equal(path, hmm_viterbi(le, lengths, sp, A, backend=backend)[1])


def test_out_without_posteriors_raises():
    le, lengths, sp, A = _data(23, 3, [12])
    with pytest.raises(ValueError, match="out is for the posteriors, but posteriors=False"):
        hmm_forward_backward(le, lengths, sp, A, posteriors=False, out=np.empty_like(le))


def test_lengths_none_is_one_sequence(backend):
    le, _, sp, A = _data(22, 3, [12])
    a = hmm_forward_backward(le, None, sp, A, backend=backend)
    b = hmm_forward_backward(le, [12], sp, A, backend=backend)
    for g, w in zip(a, b):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("func", [hmm_forward_backward, hmm_viterbi, hmm_filter])
@pytest.mark.parametrize("change,match", [
    (dict(lengths=[3, 4]), "lengths array doesn't sum to 10 samples: the 2 lengths sum to 7"),
    (dict(lengths=[5, 6]), "lengths array doesn't sum to 10 samples: the 2 lengths sum to 11"),
    (dict(lengths=[10, 0]), "lengths must be positive: lengths\\[1\\]"),
    (dict(lengths=[12, -2]), "lengths must be positive: lengths\\[1\\]"),
    (dict(lengths=[[5, 5]]), "lengths must be a non-empty 1-D sequence of integers"),
    (dict(lengths=[]), "lengths must be a non-empty 1-D sequence of integers"),
    (dict(lengths=[5.5, 4.5]), "lengths must be integers"),
    (dict(lengths=["5", "5"]), "lengths must be integers"),
    (dict(lengths=[2**62] * 4 + [10]), "doesn't sum to 10 samples"),
    (dict(lengths=np.array([2**63, 2**63, 10], dtype=np.uint64)),
     "doesn't sum to 10 samples"),
    (dict(log_emission=np.zeros(10)), "log_emission must be 2-D"),
    (dict(log_emission=np.zeros((10, 3, 1))), "log_emission must be 2-D"),
    (dict(startprob=np.full(4, 0.25)), r"startprob must have shape \(3,\)"),
    (dict(transmat=np.full((3, 4), 0.25)), r"transmat must have shape \(3, 3\)"),
    (dict(transmat=np.full(9, 1 / 3)), r"transmat must have shape \(3, 3\)"),
])
def test_bad_input_raises_value_error(func, change, match):
    args = dict(log_emission=np.zeros((10, 3)), lengths=[4, 6], startprob=np.full(3, 1 / 3),
                transmat=np.full((3, 3), 1 / 3))
    args.update(change)
    with pytest.raises(ValueError, match=match):
        func(args["log_emission"], args["lengths"], args["startprob"], args["transmat"])


# ------------------------------------------------------------------------------------------
# Weighted symbol counts (the categorical emission statistics).
@pytest.mark.parametrize("T,F,K", [(0, 3, 2), (1, 1, 1), (5000, 50, 10), (70_000, 7, 3)])
def test_symbol_counts_match_add_at(backend, T, F, K):
    rng = np.random.default_rng(T + F)
    sym = rng.integers(F, size=T)
    w = rng.random((T, K))
    want = np.zeros((F, K))
    np.add.at(want, sym, w)
    before = sym.copy(), w.copy()
    runs = [symbol_counts(sym, w, F, backend=backend, n_threads=n) for n in (1, 2, 3)]
    assert_close(runs[0], want, rtol=1e-12)
    for other in runs[1:]:
        np.testing.assert_array_equal(other, runs[0])
    np.testing.assert_array_equal(sym, before[0])
    np.testing.assert_array_equal(w, before[1])
    out = np.empty((F, K))
    assert symbol_counts(sym.astype(np.int32), w, F, out=out, backend=backend) is out
    np.testing.assert_array_equal(out, runs[0])


@pytest.mark.parametrize("sym,w,F,match", [
    ([0, 3], np.ones((2, 1)), 3, r"symbols\[1\] = 3"),
    ([0, -1], np.ones((2, 1)), 3, r"symbols\[1\] = -1"),
    ([0.0, 1.0], np.ones((2, 1)), 3, "integer"),
    ([[0, 1]], np.ones((2, 1)), 3, "1-D"),
    ([0, 1], np.ones((3, 1)), 3, "shape"),
    ([0, 1], np.ones(2), 3, "2-D"),
    ([0, 1], np.ones((2, 1)), 0, "n_symbols.*>= 1"),
])
def test_symbol_counts_bad_input(sym, w, F, match):
    with pytest.raises(ValueError, match=match):
        symbol_counts(np.asarray(sym), w, F)


# ------------------------------------------------------------------------------------------
# Property-based: any lengths (lane batches, single sequences and their mixtures) and any
# symbols give the reference's numbers.
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(K=st.integers(1, 40),
       lengths=st.lists(st.integers(1, 40), min_size=1, max_size=40),
       seed=st.integers(0, 2**31 - 1))
def test_forward_backward_any_lengths(K, lengths, seed):
    le, lengths, sp, A = _data(seed, K, lengths, "random")
    want = ref.forward_backward(le, lengths, sp, A)
    for backend in HMM_BACKENDS:
        got = hmm_forward_backward(le, lengths, sp, A, backend=backend, n_threads=2)
        for g, w, what in zip(got, want, ("loglik", "seq_ll", "post", "start", "trans")):
            assert_close(g, w, rtol=1e-9, err_msg=f"{backend} {what}")


@settings(max_examples=40, deadline=None)
@given(T=st.integers(0, 9000), F=st.integers(1, 60), K=st.integers(1, 12),
       seed=st.integers(0, 2**31 - 1))
def test_symbol_counts_any_shape(T, F, K, seed):
    rng = np.random.default_rng(seed)
    sym = rng.integers(F, size=T)
    w = rng.random((T, K))
    want = np.zeros((F, K))
    np.add.at(want, sym, w)
    for backend in HMM_BACKENDS:
        assert_close(symbol_counts(sym, w, F, backend=backend, n_threads=2), want, rtol=1e-12)
