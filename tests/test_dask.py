"""emfast.dask.fit on a real distributed.LocalCluster (2 worker processes): the same fit as
in memory, a worker killed mid-fit, the local scheduler, DataFrames, and bad input."""

import os
import signal
import subprocess
import sys
import numpy as np
import pytest

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import emfast.dask as ed  # noqa: E402
from conftest import assert_close, assert_same_fit, make_blobs, start_params  # noqa: E402
from emfast import GaussianMixture  # noqa: E402
from emfast.hmm import GaussianHMM  # noqa: E402
from emfast.impute import EMImputer  # noqa: E402

RTOL = 1e-10


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=":0") as cluster:
        with distributed.Client(cluster) as c:
            yield c


def blobs_with_nan(frac, seed=0):
    X, _, _ = make_blobs(3000, 4, 3, seed=seed)
    rng = np.random.default_rng(seed)
    X[rng.random(X.shape) < frac] = np.nan
    X[5] = np.nan                                    # a row missing everywhere
    return X


def uneven(X, fractions=(0.23, 0.37, 0.1, 0.3)):
    """X as a Dask array in chunks of unequal row counts (these fractions of X's rows)."""
    rows = [int(f * X.shape[0]) for f in fractions[:-1]]
    rows.append(X.shape[0] - sum(rows))
    return da.from_array(X, chunks=(tuple(rows), X.shape[1]))


def mixture(ct, **kw):
    return GaussianMixture(3, **{"covariance_type": ct, "tol": 1e-9, "max_iter": 60,
                                 "random_state": 0, **kw})


# ------------------------------------------------------------------ the in-memory fit again
@pytest.mark.parametrize("ct", ["full", "tied", "diag", "spherical"])
def test_mixture_equals_in_memory(client, ct):
    """The start drawn from all rows (fewer than sample_rows) is the in-memory one, so every
    fitted attribute agrees with the in-memory fit to rounding."""
    X, _, _ = make_blobs(3000, 4, 3)
    want = mixture(ct).fit(X)
    got = ed.fit(mixture(ct), uneven(X))
    assert_same_fit(got, want, exact=False, rtol=RTOL)
    assert got.lower_bound_ == pytest.approx(want.lower_bound_, rel=RTOL)
    assert got.n_features_in_ == 4


def test_mixture_restarts_and_given_start(client):
    """n_init restarts (restart 0 the n_init=1 run, the others on their own streams) and a
    start given by weights/means/precisions_init, as in memory."""
    X, _, _ = make_blobs(2000, 3, 3, seed=2)
    want = mixture("full", n_init=3).fit(X)
    assert_same_fit(ed.fit(mixture("full", n_init=3), uneven(X)), want, exact=False,
                    rtol=RTOL)
    start = start_params(X, 3, "diag")
    want = mixture("diag", **start).fit(X)
    assert_same_fit(ed.fit(mixture("diag", **start), uneven(X)), want, exact=False, rtol=RTOL)


def test_mixture_with_nan_equals_in_memory(client):
    """Chunks with NaN run the missing-value E-step on their rows grouped by pattern; one
    chunk without NaN runs the complete-data one; the sum is the in-memory fit's."""
    X = blobs_with_nan(0.1)
    X[:690] = make_blobs(3000, 4, 3)[0][:690]           # the first chunk complete
    want = mixture("full").fit(X)
    got = ed.fit(mixture("full"), uneven(X))
    assert_same_fit(got, want, exact=False, rtol=RTOL)


def test_imputer_equals_in_memory(client):
    X = blobs_with_nan(0.2, seed=3)
    want = EMImputer(tol=1e-10).fit(X)
    got = ed.fit(EMImputer(tol=1e-10), uneven(X))
    for name in ("mean_", "covariance_", "loglik_", "loglik_no_constant_",
                 "loglik_history_"):
        assert_close(getattr(got, name), getattr(want, name), rtol=RTOL, err_msg=name)
    assert (got.n_iter_, got.converged_, got.n_features_in_) == (
        want.n_iter_, want.converged_, want.n_features_in_)
    np.testing.assert_allclose(got.transform(X), want.transform(X), rtol=RTOL)


def hmm_data(seed=0):
    """Sequences of a 3-state Gaussian HMM and their lengths."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(50, 150, size=30)
    means = np.array([[0.0, 0.0], [4.0, 1.0], [-3.0, 5.0]])
    trans = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    states, s = [], 0
    for L in lengths:
        for _ in range(L):
            states.append(s)
            s = rng.choice(3, p=trans[s])
    X = means[states] + rng.normal(size=(len(states), 2))
    return X, lengths


def test_hmm_equals_in_memory(client):
    """Sequences as chunks: chunk boundaries between sequences, the fit as in memory."""
    X, lengths = hmm_data()
    bounds = np.cumsum(lengths)
    chunks = np.diff(np.concatenate([[0], bounds[[6, 15, 22]], [len(X)]]))
    Xd = da.from_array(X, chunks=(tuple(chunks), 2))
    hmm = dict(n_components=3, covariance_type="full", n_iter=40, tol=1e-9, random_state=0)
    want = GaussianHMM(**hmm).fit(X, lengths)
    got = ed.fit(GaussianHMM(**hmm), Xd, lengths)
    for name in ("startprob_", "transmat_", "means_", "covars_"):
        assert_close(getattr(got, name), getattr(want, name), rtol=RTOL, err_msg=name)
    assert_close(list(got.monitor_.history), list(want.monitor_.history), rtol=RTOL)
    assert got.monitor_.iter == want.monitor_.iter
    assert got.score(X, lengths) == pytest.approx(want.score(X, lengths), rel=RTOL)


# ------------------------------------------------------------------------ a worker killed
def test_worker_killed_mid_fit(client, monkeypatch):
    """A worker process killed (SIGKILL) after the second M-step: its chunks are recomputed
    from X's graph and the fit ends where the in-memory one does, bit for bit where a fit
    without the kill ends (the statistics are summed in a fixed order, whichever worker
    computes them)."""
    X, _, _ = make_blobs(4000, 4, 3, seed=5)
    start = start_params(X, 3, "full")
    want = mixture("full", **start).fit(X)
    unharmed = ed.fit(mixture("full", **start), uneven(X))
    pids = client.run(os.getpid)
    victim = sorted(pids)[0]
    m_step = ed._DaskFamily.m_step
    calls = []

    def m_step_then_kill(self, *args):
        calls.append(1)
        if len(calls) == 2:
            os.kill(pids[victim], signal.SIGKILL)
        return m_step(self, *args)

    monkeypatch.setattr(ed._DaskFamily, "m_step", m_step_then_kill)
    got = ed.fit(mixture("full", **start), uneven(X))
    assert want.n_iter_ > 3                 # the kill came mid-fit
    assert_same_fit(got, want, exact=False, rtol=RTOL)
    assert_same_fit(got, unharmed, exact=True)
    client.wait_for_workers(2, timeout=60)  # the nanny restarted the killed worker
    assert pids[victim] not in client.run(os.getpid).values()


# ------------------------------------------------------------------ other schedulers, input
def test_local_scheduler_and_dataframe():
    """Without a client (the local threaded scheduler here), and from a DataFrame: the same
    fit, with the DataFrame's column names."""
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    X, _, _ = make_blobs(2000, 3, 3, seed=4)
    df = pd.DataFrame(X, columns=["a", "b", "c"])
    want = mixture("diag").fit(df)
    with dask.config.set(scheduler="threads"):
        got = ed.fit(mixture("diag"), dd.from_pandas(df, npartitions=3))
    assert_same_fit(got, want, exact=False, rtol=RTOL)
    assert list(got.feature_names_in_) == ["a", "b", "c"]


def test_sampled_start():
    """More rows than sample_rows: the start comes from a sample, and EM on all rows still
    finds the blobs (the same optimum as in memory)."""
    X, _, _ = make_blobs(3000, 3, 3, seed=6)
    want = mixture("full").fit(X)
    with dask.config.set(scheduler="sync"):
        got = ed.fit(mixture("full"), uneven(X), sample_rows=300)
    order = np.argsort(got.means_[:, 0])
    want_order = np.argsort(want.means_[:, 0])
    np.testing.assert_allclose(got.means_[order], want.means_[want_order], rtol=1e-6)
    assert got.lower_bound_ == pytest.approx(want.lower_bound_, rel=1e-8)


def test_bad_input():
    X, _, _ = make_blobs(300, 3, 3)
    Xd = da.from_array(X, chunks=(100, 3))
    with dask.config.set(scheduler="sync"):
        with pytest.raises(TypeError, match="dask.array.Array or dask.dataframe"):
            ed.fit(mixture("full"), X)
        with pytest.raises(ValueError, match="chunked by rows only"):
            ed.fit(mixture("full"), da.from_array(X, chunks=(100, 2)))
        with pytest.raises(TypeError, match="GaussianMixture, EMImputer or GaussianHMM"):
            ed.fit(object(), Xd)
        with pytest.raises(ValueError, match="2-D"):
            ed.fit(mixture("full"), da.from_array(X[:, 0], chunks=100))
        with pytest.raises(TypeError, match="numbers"):
            ed.fit(mixture("full"), da.from_array(X.astype(str), chunks=(100, 3)))
        with pytest.raises(ValueError, match="sample_rows"):
            ed.fit(mixture("full"), Xd, sample_rows=1)
        with pytest.raises(ValueError, match="lengths is for GaussianHMM"):
            ed.fit(mixture("full"), Xd, [100, 200])
        with pytest.raises(ValueError, match="semi-supervised"):
            ed.fit(mixture("full", semi_supervised=True), Xd)
        bad = X.copy()
        bad[250, 1] = np.inf                       # in the last chunk, not in a small sample
        with pytest.raises(ValueError, match="infinity|inf"):
            ed.fit(mixture("full"), da.from_array(bad, chunks=(100, 3)), sample_rows=50)
        with pytest.raises(ValueError, match="crosses the chunk boundary at row 100"):
            ed.fit(GaussianHMM(2), Xd, [50, 60, 190])
        with pytest.raises(ValueError, match="pass lengths"):
            ed.fit(GaussianHMM(2), Xd)
        constant = X.copy()
        constant[:, 2] = 1.0
        with pytest.raises(ValueError, match="constant"):
            ed.fit(EMImputer(), da.from_array(constant, chunks=(100, 3)))


def test_import_emfast_does_not_import_dask():
    code = ("import sys, emfast, emfast.hmm, emfast.impute; "
            "assert not any(m == 'dask' or m.startswith(('dask.', 'distributed')) "
            "for m in sys.modules), 'dask imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_float32_equals_in_memory():
    """float32 chunks stay float32 (the kernels read them as they are), as in memory."""
    X = make_blobs(2000, 3, 3, seed=7, dtype=np.float32)[0]
    want = mixture("full", tol=1e-4).fit(X)
    with dask.config.set(scheduler="threads"):
        got = ed.fit(mixture("full", tol=1e-4), uneven(X))
    assert got.converged_
    assert_same_fit(got, want, exact=False, rtol=RTOL)


def test_many_chunks_two_reduction_levels():
    """More chunks than one reduction task sums (ed.SPLIT_EVERY): a tree of two levels."""
    X, _, _ = make_blobs(2000, 3, 3, seed=8)
    n_chunks = 3 * ed.SPLIT_EVERY - 1
    want = mixture("tied").fit(X)
    with dask.config.set(scheduler="threads"):
        got = ed.fit(mixture("tied"), da.from_array(X, chunks=(-(-2000 // n_chunks), 3)))
    assert_same_fit(got, want, exact=False, rtol=RTOL)
