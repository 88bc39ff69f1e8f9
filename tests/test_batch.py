"""emfast.fit_many: each problem's fit is GaussianMixture's with the same seed (all covariance
types, all init_params, restarts, with and without sample weights), both backends against
the NumPy reference of the whole small-problem EM (reference_batch.py), thread-count
independence, ragged input in both forms, degenerate problems handed to GaussianMixture,
bad input."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from emfast import GaussianMixture, fit_many
from emfast._config import available_backends
from emfast._validation import check_sample_weight
from emfast.batch import _Draws
from emfast.exceptions import ConvergenceWarning

import reference_batch as ref

BATCH_BACKENDS = available_backends("batch")
COV = ref.COV
INIT = ref.INIT


@pytest.fixture(params=BATCH_BACKENDS)
def batch_backend(request):
    return request.param


def _blobs(rng, n, D=2, centres=((0, 0, 1), (4, 4, 0), (0, 5, 3)), scale=1.0):
    centres = np.asarray(centres, dtype=float)[:, :D]
    labels = rng.randint(len(centres), size=n)
    return centres[labels] + scale * rng.standard_normal((n, D))


def _problems(seed=0, sizes=(40, 75, 120, 33), D=2):
    rng = np.random.RandomState(seed)
    return [_blobs(rng, n, D) for n in sizes]


def _match(means_a, means_b):
    """The permutation p with means_b[p] nearest means_a (restarts tied at the same optimum
    may list the components in another order)."""
    d = ((means_a[:, None, :] - means_b[None, :, :]) ** 2).sum(-1)
    return np.argmin(d, axis=1)


def assert_same_fit(got, want, cov, rtol=1e-8, atol=1e-10, one_run=True):
    """got, want: dicts with weights, means, covariances, lower_bound, n_iter, converged.
    With restarts (not ``one_run``) two of them may end at the same optimum, with lower
    bounds equal to rounding, and rounding decides which is kept: then the parameters are
    compared up to the order of the components, and n_iter and converged not at all."""
    g = {k: np.asarray(v) for k, v in got.items()}
    w = {k: np.asarray(v) for k, v in want.items()}
    np.testing.assert_allclose(g["lower_bound"], w["lower_bound"], rtol=rtol, atol=atol)
    p = np.arange(len(w["weights"]))
    if not np.allclose(g["means"], w["means"], rtol=rtol, atol=atol):
        p = _match(w["means"], g["means"])
        assert sorted(p) == list(range(len(p)))
    np.testing.assert_allclose(g["weights"][p], w["weights"], rtol=rtol, atol=atol)
    np.testing.assert_allclose(g["means"][p], w["means"], rtol=rtol, atol=atol)
    gc = g["covariances"] if cov == "tied" else g["covariances"][p]
    np.testing.assert_allclose(gc, w["covariances"], rtol=rtol, atol=atol)
    if one_run:
        assert int(g["n_iter"]) == int(w["n_iter"])
        assert bool(g["converged"]) == bool(w["converged"])


def _of_batch(fits, i):
    return dict(weights=fits.weights_[i], means=fits.means_[i],
                covariances=fits.covariances_[i], lower_bound=fits.lower_bound_[i],
                n_iter=fits.n_iter_[i], converged=fits.converged_[i])


def _of_model(gm):
    return dict(weights=gm.weights_, means=gm.means_, covariances=gm.covariances_,
                lower_bound=gm.lower_bound_, n_iter=gm.n_iter_, converged=gm.converged_)


@pytest.mark.parametrize("cov", COV)
@pytest.mark.parametrize("init", INIT)
@pytest.mark.parametrize("n_init", [1, 3])
def test_matches_gaussian_mixture(batch_backend, cov, init, n_init):
    Xs = _problems()
    kw = dict(n_components=3, covariance_type=cov, init_params=init, n_init=n_init,
              random_state=7, max_iter=40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits = fit_many(Xs, backend=batch_backend, **kw)
        assert not fits.fallback_.any()
        for i, X in enumerate(Xs):
            gm = GaussianMixture(**kw).fit(X)
            assert_same_fit(_of_batch(fits, i), _of_model(gm), cov, one_run=n_init == 1)
            if n_init == 1:
                np.testing.assert_allclose(fits.lower_bounds_[i, :fits.n_iter_[i]],
                                           gm.lower_bounds_, rtol=1e-8)


@pytest.mark.parametrize("cov", COV)
@pytest.mark.parametrize("init", INIT)
@pytest.mark.parametrize("weighted", [False, True])
def test_kernel_matches_reference(batch_backend, cov, init, weighted):
    """The kernel, given the random numbers, against the NumPy reference of the whole EM
    (a tight tol: most problems converge, some run to max_iter); weighted: sample weights
    with zeros, as GaussianMixture rescales them."""
    Xs = _problems(seed=3, sizes=(30, 64, 257, 90), D=3)
    K, n_init, max_iter, tol = 3, 2, 30, 1e-6
    ws = _weights(Xs, seed=4, zeros=0.2) if weighted else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits = fit_many(Xs, sample_weight=ws, n_components=K, covariance_type=cov,
                        init_params=init, n_init=n_init, max_iter=max_iter, tol=tol,
                        random_state=1, backend=batch_backend)
    sizes = np.array([len(X) for X in Xs])
    checked = None if ws is None else [check_sample_weight(w, len(w)) for w in ws]
    draws = _Draws(init, K, n_init, fits.random_states_, sizes, checked)
    for i, X in enumerate(Xs):
        s = draws.draw_of[i]
        resp = (draws.resp[draws.resp_off[s]:draws.resp_off[s + 1]].reshape(n_init, len(X), K)
                if init == "random" else None)
        want = ref.fit_problem(X, K, cov, 1e-6, tol, max_iter, n_init, init, draws.idx[s],
                               draws.u[s], resp, None if ws is None else checked[i])
        assert want is not None and not fits.fallback_[i]
        assert_same_fit(_of_batch(fits, i), want, cov, one_run=False)


@pytest.mark.parametrize("cov", ["full", "diag"])
def test_threads_bit_identical(batch_backend, cov):
    Xs = _problems(seed=5, sizes=(50, 90, 31, 64, 77, 40, 120))
    kw = dict(n_components=2, covariance_type=cov, n_init=2, random_state=None,
              backend=batch_backend)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = fit_many(Xs, n_threads=1, **dict(kw, random_state=np.random.RandomState(0)))
        b = fit_many(Xs, n_threads=2, **dict(kw, random_state=np.random.RandomState(0)))
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_",
                 "lower_bound_", "n_iter_", "converged_", "random_states_"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


def test_backends_agree():
    if len(BATCH_BACKENDS) < 2:
        pytest.skip("one batch backend built")
    Xs = _problems(seed=2)
    kw = dict(n_components=3, covariance_type="full", n_init=2, random_state=0)
    a, b = (fit_many(Xs, backend=be, **kw) for be in BATCH_BACKENDS)
    for i in range(len(Xs)):
        assert_same_fit(_of_batch(a, i), _of_batch(b, i), "full", one_run=False)


def test_ragged_forms_and_models():
    """A list of arrays and one array with lengths give the same fits; fits[i] is a fitted
    GaussianMixture; inputs are not modified."""
    Xs = _problems(seed=4)
    Xs[1] = Xs[1].astype(np.float32)
    stacked = np.concatenate(Xs).astype(np.float64)
    copies = [X.copy() for X in Xs]
    a = fit_many(Xs, n_components=2, random_state=0)
    b = fit_many(stacked, [len(X) for X in Xs], n_components=2, random_state=0)
    equal = fit_many(np.stack([X[:30] for X in Xs]), n_components=2, random_state=0)
    assert np.array_equal(equal.means_,
                          fit_many([X[:30] for X in Xs], n_components=2, random_state=0).means_)
    for X, c in zip(Xs, copies):
        assert np.array_equal(X, c)
    assert np.array_equal(a.means_, b.means_) and len(a) == len(Xs) == len(list(a))
    assert a.means_.shape == (4, 2, 2) and a.covariances_.shape == (4, 2, 2, 2)
    gm = a[-1]
    assert isinstance(gm, GaussianMixture) and gm.random_state == 0
    X = Xs[-1]
    alone = GaussianMixture(2, random_state=0).fit(X)
    np.testing.assert_allclose(gm.score_samples(X), alone.score_samples(X), rtol=1e-8)
    assert np.array_equal(gm.predict(X), alone.predict(X))
    np.testing.assert_allclose(a.precisions_[-1], alone.precisions_, rtol=1e-8)
    with pytest.raises(IndexError):
        a[len(Xs)]


def test_random_state_none_records_seeds():
    Xs = _problems(seed=6)
    fits = fit_many(Xs, n_components=2, random_state=None)
    assert len(set(fits.random_states_.tolist())) > 1
    gm = GaussianMixture(2, random_state=int(fits.random_states_[2])).fit(Xs[2])
    assert_same_fit(_of_batch(fits, 2), _of_model(gm), "full")


@pytest.mark.parametrize("weighted", [False, True])
def test_degenerate_problems_follow_gaussian_mixture(weighted):
    """Fewer distinct rows (of positive weight) than components: handed to GaussianMixture
    (its warnings, its re-seeding); the others stay in the batch."""
    rng = np.random.RandomState(0)
    dup = np.repeat(rng.standard_normal((2, 2)), 10, axis=0)     # 2 distinct rows, K = 3
    ok = _blobs(rng, 60)
    sw = None
    if weighted:     # a third distinct row, of weight 0: still 2 that count
        dup[0] += 1.0
        sw = [np.ones(len(ok)), np.r_[0.0, np.full(len(dup) - 1, 2.0)]]
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        fits = fit_many([ok, dup], sample_weight=sw, n_components=3, random_state=0)
        want = GaussianMixture(3, random_state=0).fit(
            dup, sample_weight=None if sw is None else sw[1])
    assert list(fits.fallback_) == [False, True]
    assert_same_fit(_of_batch(fits, 1), _of_model(want), "full")
    assert np.all(np.isfinite(fits.means_))


def test_fallback_problem_warns_once():
    """A problem fitted by GaussianMixture that does not converge: one ConvergenceWarning
    for the call (counting it), not its own fit's as well."""
    rng = np.random.RandomState(0)
    dup = np.repeat(rng.standard_normal((2, 2)), 10, axis=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fits = fit_many([_blobs(rng, 60), dup], n_components=3, random_state=0, max_iter=1)
    assert list(fits.fallback_) == [False, True] and not fits.converged_.any()
    msgs = [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert len(msgs) == 1 and msgs[0].startswith("2 of 2 problems")


def test_no_draws_for_problems_left_to_gaussian_mixture():
    """Problems the kernel does not fit draw no random numbers: no set of their own."""
    seeds, sizes = np.array([0, 1, 2]), np.array([30, 40, 50])
    draws = _Draws("kmeans", 3, 2, seeds, sizes, todo=np.array([True, False, True]))
    assert draws.idx.shape[0] == 2 and list(draws.draw_of) == [0, 0, 1]
    alone = _Draws("kmeans", 3, 2, seeds[2:], sizes[2:])
    assert np.array_equal(draws.idx[1], alone.idx[0])
    assert np.array_equal(draws.u[1], alone.u[0])


def test_kmeans_on_a_large_problem_is_gaussian_mixtures():
    """Above SAMPLE_ROWS rows GaussianMixture's k-means samples rows (other random draws):
    such a problem is fitted by GaussianMixture itself."""
    from emfast.mixture._kmeans import SAMPLE_ROWS
    rng = np.random.RandomState(3)
    big, small = _blobs(rng, SAMPLE_ROWS + 1), _blobs(rng, 50)
    kw = dict(n_components=3, random_state=0, max_iter=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits = fit_many([small, big], **kw)
        want = GaussianMixture(**kw).fit(big)
    assert list(fits.fallback_) == [False, True]
    assert_same_fit(_of_batch(fits, 1), _of_model(want), "full")


@pytest.mark.parametrize("cov", ["full", "tied", "diag"])
def test_singular_covariances_follow_gaussian_mixture(batch_backend, cov):
    """reg_covar=0 on rows along a line with a constant feature: a covariance that is not
    positive definite, regularised by GaussianMixture (with its warning), not crashed on
    (a spherical variance averages over the features: positive here)."""
    t = np.random.RandomState(1).standard_normal(40)
    line = np.c_[t, 2 * t, np.ones_like(t)]
    ok = _blobs(np.random.RandomState(2), 50, D=3)
    kw = dict(n_components=2, covariance_type=cov, reg_covar=0.0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits = fit_many([ok, line], backend=batch_backend, **kw)
        want = GaussianMixture(**kw, backend=batch_backend).fit(line)
    assert fits.fallback_[1]
    assert_same_fit(_of_batch(fits, 1), _of_model(want), cov)


@pytest.mark.parametrize("X, lengths, match", [
    ([np.zeros((5, 2)), np.zeros((5, 3))], None, "same number of features"),
    ([np.ones((5, 2)), np.ones((2, 2))], None, "problem 1 has 2 row"),
    ([np.array([[0.0, np.nan]] * 5)], None, "NaN"),
    ([np.array([[0.0, np.inf]] * 5)], None, "infinity|NaN"),
    (np.ones((10, 2)), [5, 4], "sum to 10"),
    (np.ones((10, 2)), [5, 0, 5], "positive"),
    (np.ones((10, 2)), None, "needs lengths"),
    ([], None, "empty list"),
    ([np.ones((5, 2))], [5], "lengths is for one stacked array"),
])
def test_bad_input(X, lengths, match):
    with pytest.raises(ValueError, match=match):
        fit_many(X, lengths, n_components=3)


@pytest.mark.parametrize("kw", [dict(n_components=0), dict(covariance_type="bad"),
                                dict(init_params="bad"), dict(tol=-1), dict(n_init=0),
                                dict(max_iter=-1), dict(random_state="x")])
def test_bad_parameters(kw):
    with pytest.raises(ValueError):
        fit_many([np.random.RandomState(0).standard_normal((20, 2))], **kw)


@pytest.mark.parametrize("backend", BATCH_BACKENDS)
@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(1, 12), min_size=1, max_size=5),
       D=st.integers(1, 3), K=st.integers(1, 4),
       cov=st.sampled_from(COV), init=st.sampled_from(INIT))
def test_any_shapes_fit_or_raise(backend, sizes, D, K, cov, init):
    """Tiny problems of any shape: a clear ValueError (too few rows), else finite fits
    whose problem i equals GaussianMixture's."""
    rng = np.random.RandomState(sum(sizes) + D + K)
    Xs = [rng.standard_normal((n, D)) for n in sizes]
    kw = dict(n_components=K, covariance_type=cov, init_params=init, random_state=0,
              max_iter=10, backend=backend)
    if min(sizes) < max(2, K):
        with pytest.raises(ValueError, match="needs at least"):
            fit_many(Xs, **kw)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits = fit_many(Xs, **kw)
        gm = GaussianMixture(**kw).fit(Xs[0])
    assert np.all(np.isfinite(fits.means_)) and np.all(np.isfinite(fits.lower_bound_))
    assert_same_fit(_of_batch(fits, 0), _of_model(gm), cov, rtol=1e-6, atol=1e-8)


def _weights(Xs, seed=0, zeros=0.0):
    """Uniform weights in [0, 3), a fraction ``zeros`` of them set to 0."""
    rng = np.random.RandomState(seed)
    return [rng.uniform(0.0, 3.0, size=len(X)) * (rng.uniform(size=len(X)) >= zeros)
            for X in Xs]


@pytest.mark.parametrize("cov", COV)
@pytest.mark.parametrize("init", INIT)
@pytest.mark.parametrize("n_init", [1, 3])
def test_sample_weight_matches_gaussian_mixture(batch_backend, cov, init, n_init):
    """Problem i with weights w_i is GaussianMixture's fit(X_i, sample_weight=w_i), in the
    kernel (no fallback): the weighted k-means(++) and random_from_data draws, the weighted
    statistics and lower bounds; the three forms of the weights give the same fits; the
    weights are not modified."""
    Xs = _problems(seed=8, sizes=(40, 40, 40))
    ws = _weights(Xs)
    ws[1][:5] = 0.0
    ws[2] *= 1e-300       # GaussianMixture rescales weights by a power of two: so must we
    copies = [w.copy() for w in ws]
    kw = dict(n_components=3, covariance_type=cov, init_params=init, n_init=n_init,
              random_state=3, max_iter=30, backend=batch_backend)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits = fit_many(Xs, sample_weight=ws, **kw)
        cube = fit_many(np.stack(Xs), sample_weight=np.stack(ws), **kw)
        flat = fit_many(np.concatenate(Xs), [40] * 3, sample_weight=np.concatenate(ws), **kw)
        assert not fits.fallback_.any()
        for i, X in enumerate(Xs):
            gm = GaussianMixture(**kw).fit(X, sample_weight=ws[i])
            assert_same_fit(_of_batch(fits, i), _of_model(gm), cov, one_run=n_init == 1)
            if n_init == 1:
                np.testing.assert_allclose(fits.lower_bounds_[i, :fits.n_iter_[i]],
                                           gm.lower_bounds_, rtol=1e-8)
    for other in (cube, flat):
        assert np.array_equal(other.means_, fits.means_)
        assert np.array_equal(other.lower_bound_, fits.lower_bound_)
    for w, c in zip(ws, copies):
        assert np.array_equal(w, c)


@pytest.mark.parametrize("cov", COV)
def test_integer_weights_are_repeated_rows(batch_backend, cov):
    """Integer weights (zeros included) fit as the rows repeated that many times, to
    rounding (from given starting parameters: the random draws of the two differ)."""
    Xs = _problems(seed=12, sizes=(30, 45))
    rng = np.random.RandomState(5)
    counts = [rng.randint(0, 4, size=len(X)) for X in Xs]
    K, D = 2, 2
    prec = {"full": np.tile(np.eye(D), (K, 1, 1)), "tied": np.eye(D),
            "diag": np.ones((K, D)), "spherical": np.ones(K)}[cov]
    kw = dict(n_components=K, covariance_type=cov, max_iter=50, tol=1e-8,
              backend=batch_backend, weights_init=[0.4, 0.6],
              means_init=[[0.0, 0.0], [4.0, 4.0]], precisions_init=prec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        weighted = fit_many(Xs, sample_weight=[c.astype(float) for c in counts], **kw)
        repeated = fit_many([np.repeat(X, c, axis=0) for X, c in zip(Xs, counts)], **kw)
    assert not weighted.fallback_.any()
    for i in range(len(Xs)):
        assert_same_fit(_of_batch(weighted, i), _of_batch(repeated, i), cov, rtol=1e-7)
        np.testing.assert_allclose(weighted.lower_bounds_[i], repeated.lower_bounds_[i],
                                   rtol=1e-7)


@pytest.mark.parametrize("backend", BATCH_BACKENDS)
@settings(max_examples=30, deadline=None)
@given(sizes=st.lists(st.integers(2, 12), min_size=1, max_size=4),
       D=st.integers(1, 3), K=st.integers(1, 3), cov=st.sampled_from(COV),
       init=st.sampled_from(INIT), data=st.data())
def test_weighted_tiny_shapes_match_gaussian_mixture(backend, sizes, D, K, cov, init, data):
    """Tiny problems with random weights, zeros included: the ValueError of GaussianMixture
    (fewer than K rows of positive weight, prefixed with the problem), else problem i is
    GaussianMixture's fit."""
    rng = np.random.RandomState(sum(sizes) + 10 * D + K)
    Xs = [rng.standard_normal((n, D)) for n in sizes]
    ws = [np.array(data.draw(st.lists(st.sampled_from([0.0, 0.25, 1.0, 3.0, 7.5]),
                                      min_size=n, max_size=n))) for n in sizes]
    kw = dict(n_components=K, covariance_type=cov, init_params=init, random_state=0,
              max_iter=10, backend=backend)
    if min(sizes) < K:
        return                                  # test_any_shapes_fit_or_raise's case
    short = [i for i, w in enumerate(ws) if np.count_nonzero(w) < K]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if short:
            i = short[0]
            with pytest.raises(ValueError) as want:
                GaussianMixture(**kw).fit(Xs[i], sample_weight=ws[i])
            with pytest.raises(ValueError) as got:
                fit_many(Xs, sample_weight=ws, **kw)
            assert str(got.value) == f"problem {i}: {want.value}"
            return
        fits = fit_many(Xs, sample_weight=ws, **kw)
        for i, X in enumerate(Xs):
            gm = GaussianMixture(**kw).fit(X, sample_weight=ws[i])
            assert_same_fit(_of_batch(fits, i), _of_model(gm), cov, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("cov", COV)
@pytest.mark.parametrize("given", [("weights_init",), ("means_init",), ("precisions_init",),
                                   ("weights_init", "means_init", "precisions_init")])
@pytest.mark.parametrize("n_init", [1, 3])
def test_inits_match_gaussian_mixture(batch_backend, cov, given, n_init):
    """*_init shared by all problems or stacked per problem (the rest from init_params), in
    the kernel: problem i is GaussianMixture's fit with problem i's values; inputs are not
    modified."""
    Xs = _problems(seed=9, sizes=(50, 70, 45))
    K, D, P = 3, 2, len(Xs)
    rng = np.random.RandomState(1)
    w = rng.uniform(1.0, 2.0, size=(P, K))
    w /= w.sum(axis=1, keepdims=True)
    prec = {"full": np.tile(np.eye(D), (P, K, 1, 1)) * rng.uniform(0.5, 2.0, (P, K, 1, 1)),
            "tied": np.tile(np.eye(D), (P, 1, 1)) * rng.uniform(0.5, 2.0, (P, 1, 1)),
            "diag": rng.uniform(0.5, 2.0, (P, K, D)), "spherical": rng.uniform(0.5, 2.0, (P, K))}
    values = dict(weights_init=w, means_init=rng.uniform(0.0, 5.0, (P, K, D)),
                  precisions_init=prec[cov])
    values = {name: values[name] for name in given}
    copies = {name: v.copy() for name, v in values.items()}
    kw = dict(n_components=K, covariance_type=cov, random_state=2, max_iter=30,
              n_init=n_init, init_params="k-means++", backend=batch_backend)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stacked = fit_many(Xs, **kw, **values)
        shared = fit_many(Xs, **kw, **{name: v[0] for name, v in values.items()})
        assert not stacked.fallback_.any() and not shared.fallback_.any()
        for i, X in enumerate(Xs):
            mine = GaussianMixture(**kw, **{name: v[i] for name, v in values.items()}).fit(X)
            assert_same_fit(_of_batch(stacked, i), _of_model(mine), cov, one_run=n_init == 1)
            first = GaussianMixture(**kw, **{name: v[0] for name, v in values.items()}).fit(X)
            assert_same_fit(_of_batch(shared, i), _of_model(first), cov, one_run=n_init == 1)
    for name, v in values.items():
        assert np.array_equal(v, copies[name])


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("init", INIT)
def test_weights_and_inits_thread_count_bit_identical(batch_backend, weighted, init):
    Xs = _problems(seed=10, sizes=(50, 90, 31, 64, 77, 40))
    means = np.random.RandomState(0).uniform(0.0, 4.0, size=(len(Xs), 2, 2))
    kw = dict(n_components=2, n_init=2, random_state=0, backend=batch_backend,
              init_params=init, means_init=means,
              sample_weight=_weights(Xs, zeros=0.2) if weighted else None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a, b = (fit_many(Xs, n_threads=t, **kw) for t in (1, 2))
    assert np.count_nonzero(a.fallback_) <= 1     # (the one degenerate problem: k-means++)
    for name in ("weights_", "means_", "covariances_", "lower_bound_", "n_iter_",
                 "fallback_"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


@pytest.mark.parametrize("X, kw, match", [
    ("list", dict(sample_weight=np.ones(40)), "list of 1-D arrays"),
    ("list", dict(sample_weight=[np.ones(20)] * 2), "2 arrays for 3 problems"),
    ("list", dict(sample_weight=[np.ones(20), np.ones(19), np.ones(20)]),
     r"problem 1: sample_weight.shape == \(19,\)"),
    ("list", dict(sample_weight=[np.ones(20), -np.ones(20), np.ones(20)]),
     "problem 1: Negative values"),
    ("list", dict(sample_weight=[np.ones(20), np.ones(20), np.full(20, np.nan)]),
     "problem 2: sample_weight contains NaN"),
    ("list", dict(sample_weight=[np.zeros(20), np.ones(20), np.ones(20)]),
     "problem 0: sample_weight is all zero"),
    ("list", dict(sample_weight=[np.ones(20), np.r_[1.0, np.zeros(19)], np.ones(20)]),
     "problem 1: Expected at least n_components = 2 samples with a positive"),
    ("cube", dict(sample_weight=np.ones((3, 19))), r"expected \(3, 20\)"),
    ("flat", dict(sample_weight=np.ones(59)), r"expected \(60,\)"),
    ("list", dict(weights_init=[0.5, 0.6]), "should be normalized"),
    ("list", dict(weights_init=[[0.5, 0.5]] * 2), "3 entries"),
    ("list", dict(weights_init=[[0.5, 0.5], [0.5, 0.5], [1.5, -0.5]]),
     r"problem 2: The parameter 'weights' should be in the range \[0, 1\]"),
    ("list", dict(means_init=np.zeros((3, 2))), "means_init"),
    ("list", dict(precisions_init=np.stack([np.eye(2), -np.eye(2)])),
     "'full precision' must be symmetric, positive-definite"),
    ("list", dict(warm_start=True), "does not support warm_start"),
])
def test_bad_weights_and_inits(X, kw, match):
    Xs = _problems(seed=11, sizes=(20, 20, 20))
    X = {"list": Xs, "cube": np.stack(Xs), "flat": np.concatenate(Xs)}[X]
    lengths = [20] * 3 if isinstance(X, np.ndarray) and X.ndim == 2 else None
    with pytest.raises(ValueError, match=match):
        fit_many(X, lengths, n_components=2, **kw)
