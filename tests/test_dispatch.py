"""The Cython kernels are built several times (baseline; AVX2+FMA and AVX-512 on x86-64) and
picked at run time; every build must meet the contract. See emfast._config._load_cython and
setup.py.

Strict where the build is promised (EMFAST_REQUIRE_CYTHON=1, as .ci/run sets): a build that
this CPU runs but that does not import fails the tests, for the Gaussian kernels as for the
HMM ones; it never shows as a skip while the kernels silently fall back to a narrower build.
"""

import importlib
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reference
from conftest import random_params
from emfast.kernels import _COV_CODE, prec_chol_shape

REQUIRED = os.environ.get("EMFAST_REQUIRE_CYTHON", "") not in ("", "0")


def _build_names(kind):
    """The builds of the ``kind`` kernels ("gaussian", "hmm") this CPU runs, narrowest first
    (the AVX builds exist on x86-64 only, where the CPU flags below can be set)."""
    from emfast._config import _AVX512_KINDS, _cpu_has_avx2_fma, _cpu_has_avx512

    names = [f"emfast._cython._{kind}"]
    names += [f"emfast._cython._{kind}_avx2"] if _cpu_has_avx2_fma() else []
    names += ([f"emfast._cython._{kind}_avx512"]
              if _cpu_has_avx512() and kind in _AVX512_KINDS else [])
    return names


def _cython_modules(kind):
    """Those builds, imported. Without the baseline build (a source checkout where the
    extension is not built) there are none, unless the build is promised (then the import
    error is raised: the test module fails to collect). With it, every wider build this CPU
    runs must import too: a broken one raises here as well, never drops out silently."""
    names = _build_names(kind)
    try:
        base = importlib.import_module(names[0])
    except ImportError:
        if REQUIRED:
            raise
        return []
    return [base] + [importlib.import_module(name) for name in names[1:]]


MODULES = _cython_modules("gaussian")
HMM_MODULES = _cython_modules("hmm")
MISSING_MODULES = _cython_modules("missing")
DISCRETE_MODULES = _cython_modules("discrete")
LDA_MODULES = _cython_modules("lda")
pytestmark = pytest.mark.skipif(not MODULES and not REQUIRED,
                                reason="the Cython extension is not built")


@pytest.mark.parametrize("kind", ["gaussian", "hmm", "missing", "discrete", "lda"])
def test_kernels_in_use_are_the_widest_build(monkeypatch, kind):
    """No silent fallback: where the extension is built, the kernels in use are the widest
    build this CPU runs (a broken wider build would have failed the import above)."""
    from emfast import _config

    monkeypatch.delenv("EMFAST_CYTHON_BASELINE", raising=False)
    monkeypatch.delenv("EMFAST_CYTHON_NO_AVX512", raising=False)
    mods = {"gaussian": MODULES, "hmm": HMM_MODULES, "missing": MISSING_MODULES,
            "discrete": DISCRETE_MODULES, "lda": LDA_MODULES}[kind]
    assert _config._load_cython(kind) is mods[-1]


@pytest.fixture(params=MODULES, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def module(request):
    return request.param


@pytest.mark.parametrize("covariance_type", reference.COV_TYPES)
@pytest.mark.parametrize("shape", [(700, 12, 9), (600, 2, 12), (513, 5, 3),
                                   # full and tied statistics: C rows centred on the fly
                                   # (D <= 48, EMFAST_GCFLY_MAX_D), or stored centred
                                   (300, 30, 4), (300, 48, 2), (270, 49, 2)])
def test_each_build_matches_reference(module, covariance_type, shape):
    N, D, K = shape
    rng = np.random.default_rng(7)
    means, pc, lc = random_params(rng, K, D, covariance_type)
    X = means[rng.integers(K, size=N)] + rng.normal(size=(N, D))
    sw = rng.uniform(0, 2, size=N)
    nk, s1 = np.empty(K), np.empty((K, D))
    s2 = np.empty(prec_chol_shape(covariance_type, K, D))
    ll = module.estep_stats(X, sw, lc, means, pc, _COV_CODE[covariance_type], nk, s1, s2, 2)
    want = reference.estep_stats(X, sw, lc, means, pc, covariance_type)
    assert np.isclose(ll, want[0], rtol=1e-10)
    for g, w in zip((nk, s1, s2), want[1:]):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-10 * np.abs(w).max())
    out, norm = np.empty((N, K)), np.empty(N)
    module.log_prob(X, lc, means, pc, _COV_CODE[covariance_type], out, norm, True, 2)
    _, resp, want_norm = reference.log_prob_resp(X, lc, means, pc, covariance_type)
    np.testing.assert_allclose(out, resp, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(norm, want_norm, rtol=1e-10, atol=1e-10 * np.abs(want_norm).max())


def test_each_build_reports_openmp(module):
    assert isinstance(module.openmp_enabled(), bool)
    assert module.openmp_max_threads() >= 1


def test_fast_exp_matches_numpy(module):
    """The kernels' own exp (no libm call, so it vectorises) on the range it is used on."""
    x = np.concatenate([np.linspace(-40.0, 0.0, 400_001), -np.logspace(-300, 1.6, 10_000),
                        [-0.0, -708.0, -707.9]])
    got = np.empty_like(x)
    module._exp_nonpos(x, got)
    np.testing.assert_allclose(got, np.exp(x), rtol=1e-15, atol=0)
    special = np.array([-np.inf, -709.0, -1e300, np.nan])
    out = np.empty_like(special)
    module._exp_nonpos(special, out)
    assert out[0] == 0.0 and out[1] == 0.0 and out[2] == 0.0 and np.isnan(out[3])


def test_env_var_forces_baseline_build():
    code = ("from emfast._config import get_backend; "
            "print(get_backend('cython').__name__)")
    env = {"EMFAST_CYTHON_BASELINE": "1", "PYTHONPATH": ":".join(sys.path)}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert res.stdout.strip() == "emfast._cython._gaussian"


@pytest.mark.parametrize("kind", ["gaussian", "hmm"])
def test_kernels_pick_the_widest_build(monkeypatch, kind):
    """AVX-512 before AVX2 before the baseline; the environment can stop at AVX2 or force
    the baseline. Where the CPU lacks a build's instructions it is skipped."""
    from emfast import _config

    monkeypatch.delenv("EMFAST_CYTHON_BASELINE", raising=False)
    monkeypatch.delenv("EMFAST_CYTHON_NO_AVX512", raising=False)
    assert _config._load_cython(kind).__name__ == _build_names(kind)[-1]
    monkeypatch.setenv("EMFAST_CYTHON_NO_AVX512", "1")
    assert _config._load_cython(kind).__name__ == _build_names(kind)[:2][-1]
    monkeypatch.setenv("EMFAST_CYTHON_BASELINE", "1")
    assert _config._load_cython(kind).__name__ == f"emfast._cython._{kind}"
    monkeypatch.setattr(_config, "_cpu_features", lambda: {})
    monkeypatch.delenv("EMFAST_CYTHON_BASELINE")
    monkeypatch.delenv("EMFAST_CYTHON_NO_AVX512")
    assert _config._load_cython(kind).__name__ == f"emfast._cython._{kind}"


# The block arithmetic (_gaussian_simd.h) works in tiles: 4 or 8 columns of the Cholesky
# transform (all D columns in one tile for 5 <= D <= 12 with AVX-512), 4 x (4 or 2) Gram
# products over (1, x - mu) (triangles on the diagonal), 4 features of the diagonal
# statistics, rows in steps of two vectors (up to 16 rows) with zero-weight padding; full
# and tied rows centred as they are loaded up to D = 16, stored centred from D = 17. Every
# remainder of D and of the rows, every tile width, in every build, on 1 and 2 threads.
@pytest.mark.parametrize("D", list(range(1, 18)) + [20])
@pytest.mark.parametrize("covariance_type", reference.COV_TYPES)
def test_every_tile_remainder_matches_reference(module, covariance_type, D):
    rng = np.random.default_rng(D)
    N, K = 531, 3
    means, pc, lc = random_params(rng, K, D, covariance_type)
    X = means[rng.integers(K, size=N)] + rng.normal(size=(N, D))
    sw = rng.uniform(0.5, 2.0, size=N)
    want = reference.estep_stats(X, sw, lc, means, pc, covariance_type)
    outs = []
    for n_threads in (1, 2):
        nk, s1 = np.empty(K), np.empty((K, D))
        s2 = np.empty(prec_chol_shape(covariance_type, K, D))
        ll = module.estep_stats(X, sw, lc, means, pc, _COV_CODE[covariance_type], nk, s1, s2,
                                n_threads)
        outs.append((ll, nk, s1, s2))
    for got in outs:
        assert np.isclose(got[0], want[0], rtol=1e-10)
        for g, w in zip(got[1:], want[1:]):
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-10 * np.abs(w).max())
    assert outs[0][0] == outs[1][0]
    for a, b in zip(outs[0][1:], outs[1][1:]):
        np.testing.assert_array_equal(a, b)
    resp = rng.uniform(0, 2, size=(N, K))
    nk, s1 = np.empty(K), np.empty((K, D))
    s2 = np.empty(prec_chol_shape(covariance_type, K, D))
    module.weighted_stats(X, resp, means, _COV_CODE[covariance_type], nk, s1, s2, 2)
    for g, w in zip((nk, s1, s2), reference.weighted_stats(X, resp, means, covariance_type)):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-10 * np.abs(w).max())


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(N=st.integers(1, 700), D=st.integers(1, 20), K=st.integers(1, 12),
       covariance_type=st.sampled_from(reference.COV_TYPES), seed=st.integers(0, 2**16))
def test_any_shape_matches_reference_on_any_thread_count(module, N, D, K, covariance_type,
                                                         seed):
    """Shapes across the row padding, the tile sizes and the small-D register path."""
    rng = np.random.default_rng(seed)
    means, pc, lc = random_params(rng, K, D, covariance_type)
    X = means[rng.integers(K, size=N)] + rng.normal(size=(N, D))
    want = reference.estep_stats(X, None, lc, means, pc, covariance_type)
    outs = []
    for n_threads in (1, 2):
        nk, s1 = np.empty(K), np.empty((K, D))
        s2 = np.empty(prec_chol_shape(covariance_type, K, D))
        ll = module.estep_stats(X, np.empty(0), lc, means, pc, _COV_CODE[covariance_type], nk,
                                s1, s2, n_threads)
        outs.append((ll, nk, s1, s2))
    assert np.isclose(outs[0][0], want[0], rtol=1e-10)
    for g, w in zip(outs[0][1:], want[1:]):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-10 * np.abs(w).max())
    assert outs[0][0] == outs[1][0]
    for a, b in zip(outs[0][1:], outs[1][1:]):
        np.testing.assert_array_equal(a, b)


def test_fast_log_matches_numpy(module):
    """The log of the per-row sums of the log-sum-exp (sums >= 1), vectorised."""
    x = np.concatenate([np.linspace(1.0, 2.0, 100_001), np.linspace(1.0, 300.0, 100_001),
                        np.logspace(0, 300, 10_001), [np.sqrt(2.0), np.nextafter(np.sqrt(2.0), 3)],
                        1.0 + np.logspace(-15, -1, 1001)])
    got = np.empty_like(x)
    module._log_ge1(x, got)
    np.testing.assert_allclose(got, np.log(x), rtol=1e-15, atol=0)
    assert got[0] == 0.0
    special = np.array([0.0, np.inf, np.nan])
    out = np.empty_like(special)
    module._log_ge1(special, out)
    assert out[0] == -np.inf and out[1] == np.inf and np.isnan(out[2])


def test_hmm_emission_cache_does_not_change_bits():
    """The Cython forward-backward keeps b_t for the backward pass when it fits, else
    recomputes it from the stored shift: both must give the same bits."""
    from emfast._config import get_backend

    mod = get_backend("cython", "hmm")
    rng = np.random.default_rng(5)
    S, L, K = 7, 300, 6
    le = rng.normal(scale=3.0, size=(S * L, K))
    offsets = np.arange(0, S * L + 1, L, dtype=np.int64)
    sp, A = rng.dirichlet(np.ones(K)), rng.dirichlet(np.ones(K), size=K)

    def run():
        post, start, trans, seq_ll = (np.empty((S * L, K)), np.empty(K), np.empty((K, K)),
                                      np.empty(S))
        total = mod.forward_backward(le, offsets, sp, A, post, start, trans, seq_ll, 2)
        return post, start, trans, seq_ll, np.array([total])

    cached = run()
    old = mod._set_cache_b_max(0)
    try:
        recomputed = run()
    finally:
        mod._set_cache_b_max(old)
    for a, b in zip(cached, recomputed):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("hmm_module", HMM_MODULES,
                         ids=lambda m: m.__name__.rsplit(".", 1)[-1])
@pytest.mark.parametrize("K", [3, 8, 10, 13])
def test_each_hmm_build_matches_reference(hmm_module, K):
    """Every build's forward-backward, whose lane batches differ in width (2 sequences per
    SSE2 vector, 4 per AVX2 vector, 8 per AVX-512 vector), on ragged lengths, single
    sequences between batches and an impossible sequence inside a batch."""
    import reference_hmm

    rng = np.random.default_rng(K)
    lengths = np.array([30, 29, 30, 27, 30, 30, 1, 55, 30, 30, 24, 30, 30, 30, 30, 2, 30])
    T = int(lengths.sum())
    off = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    le = rng.normal(scale=2.0, size=(T, K)) - 3.0
    le[off[9] + 11] = -np.inf  # sequence 9 lies in a lane batch in both builds
    sp, A = rng.dirichlet(np.ones(K)), rng.dirichlet(np.ones(K), size=K)
    A[0, 1] = 0.0
    A[0] /= A[0].sum()
    good = np.array([s for s in range(len(lengths)) if s != 9])
    rows = np.concatenate([np.arange(off[s], off[s + 1]) for s in good])
    want = reference_hmm.forward_backward(le[rows], lengths[good], sp, A)
    post, start, trans, seq_ll = np.empty((T, K)), np.empty(K), np.empty((K, K)), np.empty(17)
    total = hmm_module.forward_backward(le, off, sp, A, post, start, trans, seq_ll, 2)
    assert total == -np.inf and seq_ll[9] == -np.inf
    np.testing.assert_allclose(seq_ll[good], want[1], rtol=1e-10)
    np.testing.assert_allclose(post[rows], want[2], rtol=1e-9, atol=1e-12)
    assert np.all(post[off[9]:off[10]] == 0.0)
    np.testing.assert_allclose(start, want[3], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(trans, want[4], rtol=1e-10, atol=1e-12)
    assert trans[0, 1] == 0.0


@pytest.mark.parametrize("hmm_module", HMM_MODULES,
                         ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_each_hmm_build_lane_logliks_are_exact_to_rounding(hmm_module):
    """A lane batch takes the log of its running product of scales with its own vector
    log (emfast_lv_log_1_2): across many short sequences, whose products cover [1, 2), the
    log-likelihoods agree with the reference to a few units in the last place."""
    import reference_hmm

    for seed in range(6):
        rng = np.random.default_rng(seed)
        K, S = 2 + seed, 64
        lengths = rng.integers(5, 7, size=S)
        off = np.r_[0, np.cumsum(lengths)].astype(np.int64)
        le = rng.normal(scale=2.0, size=(int(off[-1]), K)) - 3.0
        sp, A = rng.dirichlet(np.ones(K)), rng.dirichlet(np.ones(K), size=K)
        post, start, trans, seq_ll = (np.empty((int(off[-1]), K)), np.empty(K),
                                      np.empty((K, K)), np.empty(S))
        hmm_module.forward_backward(le, off, sp, A, post, start, trans, seq_ll, 1)
        want = reference_hmm.forward_backward(le, lengths, sp, A)[1]
        np.testing.assert_allclose(seq_ll, want, rtol=1e-14)


@pytest.mark.parametrize("module", MISSING_MODULES, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_each_missing_value_build_matches_reference(module):
    from reference_missing import missing_estep as missing_reference

    rng = np.random.default_rng(3)
    N, D, K = 900, 6, 2
    A = rng.normal(size=(D, D))
    covs = np.stack([A @ A.T + D * np.eye(D)] * K) * np.array([1.0, 1.5])[:, None, None]
    X = rng.multivariate_normal(np.zeros(D), covs[0], size=N)
    X[rng.random((N, D)) < 0.3] = np.nan
    means, logw = rng.normal(size=(K, D)), np.log([0.3, 0.7])
    prec = np.linalg.inv(covs)
    log_det = np.linalg.slogdet(prec)[1]
    nk, s1, s2, filled = np.empty(K), np.empty((K, D)), np.empty((K, D, D)), np.empty((N, D))
    ll = module.missing_estep(X, np.empty(0), logw, means, prec, log_det, nk, s1, s2, filled,
                              np.empty(0), np.empty((0, 0)), np.empty((0, 0)), 2)
    want = missing_reference(X, None, logw, means, covs)
    for got, ref in zip((ll, nk, s1, s2, filled), want):
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-9 * np.abs(ref).max())


@pytest.mark.parametrize("covariance_type", reference.COV_TYPES)
@pytest.mark.parametrize("D", [3, 10, 20])
def test_each_build_reads_kept_blocks_bit_identically(module, covariance_type, D):
    """Every build's E-step gives the same bits from X's blocks kept by estep_blocks as from
    blocks it loads itself (full and tied statistics with small D also read the ones row
    kept before each block)."""
    from emfast.kernels import _COV_CODE

    rng = np.random.default_rng(D)
    X = rng.normal(size=(700, D))
    means, pc, lc = random_params(rng, 4, D, covariance_type)
    outs = []
    for blocks in (None, module.estep_blocks(X, 2)):
        nk, s1 = np.empty(4), np.empty((4, D))
        s2 = np.empty(prec_chol_shape(covariance_type, 4, D))
        ll = module.estep_stats(X, np.empty(0), lc, means, pc, _COV_CODE[covariance_type],
                                nk, s1, s2, 2, blocks)
        outs.append(np.concatenate([[ll], nk, s1.ravel(), s2.ravel()]))
    assert np.isfinite(outs[0]).all()
    assert outs[0].tobytes() == outs[1].tobytes()
