"""emfast.fit_many_hmm: each problem's fit is GaussianHMM's with the same seed (all covariance
types, priors, params subsets, restarts), both backends against the NumPy reference of
Baum-Welch (reference_hmm_batch.py), thread-count independence, ragged problems, problems
handed back to GaussianHMM (a covariance that is not positive definite, a sequence whose
scaled forward pass lost precision), bad input."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from emfast import fit_many_hmm, hmm_batch
from emfast._config import available_backends, get_backend
from emfast.hmm import GaussianHMM
from emfast.hmm_batch import FALLBACK, LETTER_BITS

import reference_hmm_batch as ref
from test_hmm_gaussian_kernel import _case

BACKENDS = available_backends("hmm_batch")
COV = ref.COV
PRIORS = dict(startprob_prior=1.0, transmat_prior=1.0, means_prior=0, means_weight=0,
              covars_prior=1e-2, covars_weight=1)
# not hmmlearn's defaults: every prior term of the M-step at work
STRONG_PRIORS = dict(startprob_prior=2.0, transmat_prior=1.5, means_prior=0.5,
                     means_weight=2.0, covars_prior=0.1, covars_weight=4.0)


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


def _sequences(rng, lengths, D=2, K=3, spread=4.0):
    """Frames of a sticky K-state chain with Gaussian emissions, one block per sequence."""
    centres = spread * rng.standard_normal((K, D))
    X = []
    for T in lengths:
        z = [rng.randint(K)]
        for _ in range(T - 1):
            z.append(z[-1] if rng.rand() < 0.8 else rng.randint(K))
        X.append(centres[z] + rng.standard_normal((T, D)))
    return np.concatenate(X)


def _problems(seed=0, shapes=((60, 40), (100,), (30, 30, 25), (80, 20)), D=2, K=3):
    rng = np.random.RandomState(seed)
    return [(_sequences(rng, lengths, D, K), list(lengths)) for lengths in shapes]


def _alone(X, lengths, seed, **params):
    return GaussianHMM(**params, random_state=seed).fit(X, lengths)


def assert_same_fit(got, want, rtol=1e-8, atol=1e-10):
    """got, want: fitted GaussianHMMs; the same iterations and parameters to rounding."""
    assert got.monitor_.iter == want.monitor_.iter
    assert got.monitor_.converged == want.monitor_.converged
    np.testing.assert_allclose(list(got.monitor_.history), list(want.monitor_.history),
                               rtol=rtol, atol=atol)
    for name in ("startprob_", "transmat_", "means_", "_covars_", "covars_"):
        np.testing.assert_allclose(getattr(got, name), getattr(want, name), rtol=rtol,
                                   atol=atol, err_msg=name)


def _no_python_start(*args):
    raise AssertionError("a start was made in Python, not in the kernel")


@pytest.mark.parametrize("covariance_type", COV)
def test_matches_gaussian_hmm(backend, covariance_type, monkeypatch):
    """Each problem's fit is GaussianHMM's; an ordinary batch makes every start in the
    kernel and hands no problem back."""
    problems = _problems()
    params = dict(n_components=3, covariance_type=covariance_type, n_iter=20, tol=1e-3,
                  backend=backend)
    monkeypatch.setattr(hmm_batch, "_starts", _no_python_start)
    fits = fit_many_hmm(problems, random_state=7, **params)
    monkeypatch.undo()
    assert not fits.fallback_.any()
    for i, (X, lengths) in enumerate(problems):
        want = _alone(X, lengths, 7, **params)
        assert_same_fit(fits[i], want)
        assert fits.n_iter_[i] == want.monitor_.iter
        assert fits.converged_[i] == want.monitor_.converged
        assert fits.log_likelihood_[i] == fits.history_[i, fits.n_iter_[i] - 1]
    assert fits.covars_.shape == (len(problems), 3, 2, 2)


@pytest.mark.parametrize("covariance_type", COV)
def test_priors_and_params_subsets(backend, covariance_type):
    problems = _problems(seed=1)
    for params_letters in ("stmc", "tm", "sc", "c"):
        params = dict(n_components=3, covariance_type=covariance_type, n_iter=6, tol=-np.inf,
                      params=params_letters, backend=backend, **STRONG_PRIORS)
        fits = fit_many_hmm(problems, random_state=3, **params)
        assert not fits.fallback_.any()
        for i, (X, lengths) in enumerate(problems):
            assert_same_fit(fits[i], _alone(X, lengths, 3, **params))


@pytest.mark.parametrize("covariance_type", COV)
@pytest.mark.parametrize("n_init", [1, 3])
def test_compiled_starts_are_gaussian_hmms(backend, covariance_type, n_init, monkeypatch):
    """Every run's start as the kernel makes it (n_iter=0; restarts included, problems of
    other sizes and seeds, one of more than 256 rows) is GaussianHMM's own initialisation
    (hmm_batch._starts: BaseHMM._initializer): the same random draws, so the same k-means
    restarts and the same kept one."""
    problems = _problems(seed=8, shapes=((60, 40), (100,), (7,), (300, 200)))
    K, R = 3, n_init
    params = GaussianHMM(n_components=K, covariance_type=covariance_type, n_iter=0,
                         n_init=R, backend=backend).get_params()
    del params["random_state"], params["verbose"]
    X, lengths = hmm_batch._check_problems(problems, K)
    seeds = hmm_batch._problem_seeds(np.random.RandomState(11), len(X))
    monkeypatch.setattr(hmm_batch, "_starts", _no_python_start)
    got, _, _, _, status = hmm_batch._fit_runs(params, X, lengths, seeds,
                                               get_backend(backend, "hmm_batch"), 1)
    monkeypatch.undo()
    assert not status.any()
    want = {name: np.empty_like(a) for name, a in got.items()}
    for i in range(len(X)):
        assert hmm_batch._starts(params, X[i], int(seeds[i]), want, slice(i * R, (i + 1) * R))
    for name in ("startprob", "transmat"):
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    for name in ("means", "covars"):
        np.testing.assert_allclose(got[name], want[name], rtol=1e-10, atol=1e-12,
                                   err_msg=name)


def test_python_starts_beside_compiled_ones(backend, monkeypatch):
    """A problem of more rows than k-means clusters whole (SAMPLE_ROWS, lowered here) takes
    GaussianHMM's Python start, then the kernel's Baum-Welch; its fit is still GaussianHMM's
    (which, at these sizes, clusters all rows)."""
    problems = _problems(seed=9)
    monkeypatch.setattr(hmm_batch, "SAMPLE_ROWS", 90)
    params = dict(n_components=3, covariance_type="full", n_init=2, backend=backend)
    fits = fit_many_hmm(problems, random_state=4, **params)
    assert not fits.fallback_.any()
    for i, (X, lengths) in enumerate(problems):
        assert_same_fit(fits[i], _alone(X, lengths, 4, **params))


def test_too_few_distinct_rows_falls_back(backend):
    """k-means++ short of distinct rows (2 for 3 states) draws other random numbers in
    GaussianHMM: the kernel hands the problem back, its neighbour stays."""
    rng = np.random.RandomState(10)
    problems = [rng.standard_normal((40, 2)), np.repeat([[0.0, 1.0], [2.0, 0.5]], 20, axis=0)]
    params = dict(n_components=3, covariance_type="diag", backend=backend)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits = fit_many_hmm(problems, random_state=0, **params)
        np.testing.assert_array_equal(fits.fallback_, [False, True])
        for i, X in enumerate(problems):
            assert_same_fit(fits[i], _alone(X, None, 0, **params))


def test_restarts(backend):
    problems = _problems(seed=2)
    params = dict(n_components=3, covariance_type="diag", n_init=3, backend=backend)
    fits = fit_many_hmm(problems, random_state=5, **params)
    for i, (X, lengths) in enumerate(problems):
        assert_same_fit(fits[i], _alone(X, lengths, 5, **params))


@pytest.mark.parametrize("covariance_type", COV)
@pytest.mark.parametrize("priors", [PRIORS, STRONG_PRIORS])
def test_matches_reference(backend, covariance_type, priors):
    problems = _problems(seed=3, shapes=((25, 15), (30,)))
    params = dict(n_components=2, covariance_type=covariance_type, backend=backend, **priors)
    starts = fit_many_hmm(problems, random_state=1, n_iter=0, **params)
    fits = fit_many_hmm(problems, random_state=1, n_iter=8, tol=1e-4, **params)
    for i, (X, lengths) in enumerate(problems):
        sp, A, mu, cov, hist = ref.fit_problem(
            X, lengths, starts.startprob_[i], starts.transmat_[i], starts.means_[i],
            starts.compact_covars_[i], covariance_type, priors, 8, 1e-4)
        assert fits.n_iter_[i] == len(hist)
        for got, want in ((fits.startprob_[i], sp), (fits.transmat_[i], A),
                          (fits.means_[i], mu), (fits.compact_covars_[i], cov),
                          (fits.history_[i, :len(hist)], hist)):
            np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("covariance_type", COV)
def test_thread_count_independent(backend, covariance_type):
    problems = _problems(seed=4, shapes=[(20 + 7 * i, 15) for i in range(9)])
    runs = [fit_many_hmm(problems, n_components=3, covariance_type=covariance_type,
                         random_state=0, backend=backend, n_threads=t) for t in (1, 2)]
    for name in ("startprob_", "transmat_", "means_", "compact_covars_", "history_",
                 "n_iter_", "converged_"):
        np.testing.assert_array_equal(getattr(runs[0], name), getattr(runs[1], name))


def test_ragged_and_plain_arrays(backend):
    """Problems of any sizes, as (X, lengths) tuples, (X, None) or plain arrays (one
    sequence each), with drawn seeds; inputs are not modified."""
    rng = np.random.RandomState(5)
    problems = [(_sequences(rng, [5, 50, 9]), [5, 50, 9]), _sequences(rng, [3]),
                (_sequences(rng, [70]), None), _sequences(rng, [33])]
    copies = [tuple(np.copy(a) for a in p) if isinstance(p, tuple) and p[1] is not None
              else np.copy(p[0] if isinstance(p, tuple) else p) for p in problems]
    fits = fit_many_hmm(problems, n_components=3, random_state=np.random.RandomState(9),
                        backend=backend)
    seeds = np.random.RandomState(9).randint(np.iinfo(np.int32).max, size=4)
    np.testing.assert_array_equal(fits.random_states_, seeds)
    for i, (p, c) in enumerate(zip(problems, copies)):
        X, lengths = p if isinstance(p, tuple) else (p, None)
        assert_same_fit(fits[i], _alone(X, lengths, int(seeds[i]), n_components=3))
        if isinstance(c, tuple):
            np.testing.assert_array_equal(p[0], c[0])
        else:
            np.testing.assert_array_equal(X, c)


def test_not_positive_definite_falls_back(backend):
    """Full covariances from 6 frames in 5 dimensions are singular: GaussianHMM regularises
    them with warnings; the batch hands that problem to it, the others stay in the kernel."""
    rng = np.random.RandomState(6)
    problems = [rng.standard_normal((60, 5)), rng.standard_normal((6, 5)),
                rng.standard_normal((50, 5))]
    params = dict(n_components=3, covariance_type="full", backend=backend)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fits = fit_many_hmm(problems, random_state=0, **params)
    np.testing.assert_array_equal(fits.fallback_, [False, True, False])
    assert caught          # GaussianHMM's own warnings, for problem 1
    for i, X in enumerate(problems):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = _alone(X, None, 0, **params)
        assert_same_fit(fits[i], want, rtol=0 if fits.fallback_[i] else 1e-8,
                        atol=0 if fits.fallback_[i] else 1e-10)


def _given_starts(n_rows, n_runs, K):
    """The kernel's start arguments (order, draw_of, first, u, n_trials, min_covar) for runs
    whose starts are all given."""
    return (np.zeros(n_rows, dtype=np.int64), np.full(n_runs, -1, dtype=np.int64),
            np.zeros((1, 10), dtype=np.int64), np.zeros((1, 1)), 2 + int(np.log(K)), 1e-3)


def test_lost_precision_hands_the_problem_back(backend):
    """A sequence the estimators' scaled forward pass flags for the log-space recompute
    (tests/test_hmm_lost_precision.py's reported case) ends its problem with FALLBACK; a
    problem beside it is fitted."""
    X, lengths, sp, A, means, pc, _ = _case(5134, 2, 4, [10], "diag")
    X2 = np.concatenate([X, X])
    K, D = means.shape
    seq = np.array([0, 10, 20], dtype=np.int64)
    runs = np.array([[0, 1], [1, 1]], dtype=np.int64)
    start = dict(startprob=np.array([sp, [0.5, 0.5]]), transmat=np.array([A, [[0.5, 0.5],
                                                                               [0.5, 0.5]]]),
                 means=np.array([means, means]), covars=np.array([pc ** -2.0] * 2).reshape(2, -1))
    priors = [np.ones(K), np.ones((K, K)), np.zeros((K, D)), np.zeros((K, D)),
              np.full(K * D, 1e-2), np.ones(K * D)]
    status = np.zeros(2, dtype=np.int8)
    get_backend(backend, "hmm_batch").fit_many_hmm(
        X2, seq, runs, 2, sum(LETTER_BITS.values()), 3, 1e-2, *priors, start["startprob"],
        start["transmat"], start["means"], start["covars"], *_given_starts(20, 2, K),
        np.empty((2, 3)), np.zeros(2, dtype=np.int64), np.zeros(2, dtype=np.int8), status, 1)
    np.testing.assert_array_equal(status, [FALLBACK, 0])


def test_unsupported_prior_shape_goes_to_gaussian_hmm(backend):
    """A means_weight per feature with full covariances is GaussianHMM's error, raised by
    GaussianHMM itself."""
    with pytest.raises(ValueError, match="means_weight must be a scalar"):
        fit_many_hmm(_problems(), n_components=3, covariance_type="full",
                     means_weight=np.ones((3, 2)), backend=backend)


@pytest.mark.parametrize("problems, match", [
    ([], "empty"),
    (np.zeros((2, 10, 2)), "must be a list"),
    ([np.zeros((10, 2)), np.zeros((10, 3))], "same number of features"),
    ([(np.ones((10, 2)), [4, 5])], "problem 0"),
    ([np.ones((10, 2)), np.full((10, 2), np.nan)], "problem 1"),
    ([np.ones((10, 2)), np.ones((2, 2))], "at least n_components"),
])
def test_bad_input(problems, match):
    with pytest.raises(ValueError, match=match):
        fit_many_hmm(problems, n_components=3)


def test_bad_parameters():
    with pytest.raises(ValueError):
        fit_many_hmm(_problems(), n_components=3, covariance_type="banana")
    with pytest.raises(ValueError):
        fit_many_hmm(_problems(), n_components=3, startprob_prior=np.ones(4))


def test_no_iterations():
    fits = fit_many_hmm(_problems(), n_components=3, n_iter=0, random_state=0)
    want = _alone(*_problems()[0], 0, n_components=3, n_iter=0)
    assert_same_fit(fits[0], want)
    assert np.all(fits.log_likelihood_ == -np.inf)


@pytest.mark.parametrize("backend", BACKENDS)
def test_transition_row_with_subnormal_mass(backend):
    """A state whose transition counts underflow to subnormals (3 frames, 3 states): the
    row still normalises to [0, 0, 1], as the one-model fit gives (Numba's arcp once made
    it x * (1 / s) = [nan, nan, inf])."""
    seed, K, D = 41725, 3, 3
    rng = np.random.RandomState(seed)
    X, ln = _sequences(rng, [3], D, K), [3]
    params = dict(n_components=K, covariance_type="spherical", n_iter=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits = fit_many_hmm([(X, ln)], random_state=seed, backend=backend, **params)
        want = _alone(X, ln, seed, backend=backend, **params)
    assert np.all(np.isfinite(fits[0].transmat_))
    assert_same_fit(fits[0], want, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=20, deadline=None)
@given(lengths=st.lists(st.lists(st.integers(1, 12), min_size=1, max_size=3), min_size=1,
                        max_size=4),
       K=st.integers(1, 3), D=st.integers(1, 3), cov=st.sampled_from(COV),
       seed=st.integers(0, 2 ** 16))
def test_tiny_shapes_match_gaussian_hmm(backend, lengths, K, D, cov, seed):
    rng = np.random.RandomState(seed)
    problems = [(_sequences(rng, ln, D, K), ln) for ln in lengths]
    problems = [p for p in problems if len(p[0]) >= K]
    if not problems:
        return
    params = dict(n_components=K, covariance_type=cov, n_iter=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits = fit_many_hmm(problems, random_state=seed, backend=backend, **params)
        for i, (X, ln) in enumerate(problems):
            want = _alone(X, ln, seed, backend=backend, **params)
            if fits.fallback_[i]:
                assert_same_fit(fits[i], want, rtol=0, atol=0)
            else:
                assert_same_fit(fits[i], want, rtol=1e-7, atol=1e-9)
