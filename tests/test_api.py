"""Public API surface: pickling, clone/get_params/set_params, repr, pandas feature names,
import hygiene, show_config and the command line."""

import io
import os
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

import emfast
from conftest import COV_TYPES, FITTED_ATTRS, assert_same_fit, make_blobs

GM = emfast.GaussianMixture


@pytest.fixture(scope="module")
def X():
    return make_blobs(n_samples=150, n_features=3, n_components=3, seed=2)[0]


def _env():
    env = dict(os.environ)
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    if os.path.isdir(src):  # running from a checkout; an installed emfast needs nothing
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return env


def _run(*args, timeout=120):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout, env=_env())


# ---------------------------------------------------------------- pickling
@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_pickle_round_trip(backend, covariance_type, X):
    est = GM(3, covariance_type=covariance_type, random_state=0, backend=backend).fit(X)
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        new = pickle.loads(pickle.dumps(est, protocol=protocol))
        assert type(new) is GM
        assert new.get_params() == est.get_params()
        assert_same_fit(est, new, exact=True)
        assert new.n_features_in_ == est.n_features_in_
        np.testing.assert_array_equal(new.predict(X), est.predict(X))
        np.testing.assert_array_equal(new.predict_proba(X), est.predict_proba(X))
        np.testing.assert_array_equal(new.score_samples(X), est.score_samples(X))
        np.testing.assert_array_equal(new.sample(7)[0], est.sample(7)[0])


def test_pickle_unfitted_and_refit(X):
    est = pickle.loads(pickle.dumps(GM(2, covariance_type="diag", n_threads=1)))
    assert est.covariance_type == "diag" and est.n_threads == 1
    with pytest.raises(emfast.NotFittedError):
        est.predict(X)
    est.fit(X)
    assert est.means_.shape == (2, 3)


def test_pickled_model_with_warm_start_continues(X):
    est = GM(3, warm_start=True, random_state=0).fit(X)
    new = pickle.loads(pickle.dumps(est))
    est.fit(X)
    new.fit(X)
    assert_same_fit(est, new, exact=True)


# ---------------------------------------------------------------- params protocol
def test_get_params_lists_every_constructor_parameter():
    params = GM().get_params()
    assert set(params) == {
        "n_components", "covariance_type", "tol", "reg_covar", "max_iter", "n_init",
        "init_params", "weights_init", "means_init", "precisions_init", "random_state",
        "warm_start", "verbose", "verbose_interval", "semi_supervised", "unlabeled_weight",
        "learning_decay", "learning_offset", "backend", "n_threads", "accelerate"}
    assert params["n_components"] == 1 and params["covariance_type"] == "full"
    assert params["backend"] == "auto" and params["n_threads"] is None


def test_defaults_are_sklearns():
    sk_mixture = pytest.importorskip("sklearn.mixture")
    sk = sk_mixture.GaussianMixture().get_params()
    em = GM().get_params()
    for name, value in sk.items():
        assert em[name] == value, name


def test_set_params_returns_self_and_sets(X):
    est = GM()
    assert est.set_params(n_components=2, covariance_type="tied") is est
    assert est.n_components == 2 and est.covariance_type == "tied"
    est.fit(X)
    assert est.covariances_.shape == (3, 3)


def test_clone(X):
    base = pytest.importorskip("sklearn.base")
    means_init = X[:3].copy()
    est = GM(3, covariance_type="diag", means_init=means_init, random_state=4, n_threads=1)
    est.fit(X)
    c = base.clone(est)
    assert c is not est
    assert c.get_params().keys() == est.get_params().keys()
    for k, v in est.get_params().items():
        if isinstance(v, np.ndarray):
            np.testing.assert_array_equal(c.get_params()[k], v)
        else:
            assert c.get_params()[k] == v, k
    assert not hasattr(c, "means_")  # unfitted
    c.fit(X)
    assert_same_fit(est, c, exact=True)


def test_usable_in_sklearn_grid_search(X):
    model_selection = pytest.importorskip("sklearn.model_selection")
    grid = model_selection.GridSearchCV(
        GM(random_state=0, n_threads=1),
        {"n_components": [1, 3], "covariance_type": ["full", "spherical"]},
        cv=model_selection.KFold(3, shuffle=True, random_state=0))  # rows are sorted by blob
    grid.fit(X)
    assert grid.best_params_["n_components"] == 3
    assert isinstance(grid.best_estimator_, GM)


def test_repr():
    assert repr(GM()) == "GaussianMixture()"
    r = repr(GM(3, covariance_type="diag", backend="numba", n_threads=2))
    assert r.startswith("GaussianMixture(")
    for part in ("n_components=3", "covariance_type='diag'", "backend='numba'",
                 "n_threads=2"):
        assert part in r
    assert "tol=" not in r  # defaults are not shown
    r = repr(GM(2, means_init=np.zeros((2, 2))))  # arrays do not break repr
    assert "means_init=" in r


def test_fit_returns_self_and_fitted_attributes(X):
    est = GM(3, random_state=0)
    assert est.fit(X) is est
    for name in FITTED_ATTRS + ("converged_", "n_iter_", "lower_bound_", "lower_bounds_",
                                "n_features_in_"):
        assert hasattr(est, name), name
    assert not hasattr(est, "feature_names_in_")


# ---------------------------------------------------------------- pandas
def test_feature_names_from_dataframe(X):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(X, columns=["a", "b", "c"])
    est = GM(3, random_state=0).fit(df)
    np.testing.assert_array_equal(est.feature_names_in_, ["a", "b", "c"])
    assert est.feature_names_in_.dtype == object
    ref = GM(3, random_state=0).fit(X)
    np.testing.assert_array_equal(est.means_, ref.means_)
    np.testing.assert_array_equal(est.predict(df), ref.predict(X))
    np.testing.assert_array_equal(est.predict(X), ref.predict(X))  # plain arrays still work
    with pytest.raises(ValueError, match="feature names should match"):
        est.predict(df[["b", "a", "c"]])
    with pytest.raises(ValueError, match="feature names should match"):
        est.predict(df.rename(columns={"a": "z"}))
    # refitting on an array forgets the names
    est.fit(X)
    assert not hasattr(est, "feature_names_in_")


def test_dataframe_with_non_string_columns_and_mixed_dtypes(X):
    pd = pytest.importorskip("pandas")
    est = GM(2, random_state=0).fit(pd.DataFrame(X))  # integer column labels
    assert not hasattr(est, "feature_names_in_")
    df = pd.DataFrame({"a": X[:, 0], "b": (X[:, 1] * 10).astype(int),
                       "c": X[:, 2].astype(np.float32)})
    est = GM(2, random_state=0).fit(df)
    assert est.means_.shape == (2, 3)
    bad = df.assign(c=["x"] * len(df))
    with pytest.raises((ValueError, TypeError), match="numeric|float|convert"):
        GM(2).fit(bad)


# ---------------------------------------------------------------- import, config, CLI
def test_import_emfast_does_not_import_sklearn():
    code = ("import sys, emfast; emfast.GaussianMixture(2); "
            "import numpy as np; emfast.GaussianMixture(2, random_state=0)"
            ".fit(np.random.RandomState(0).normal(size=(50, 2))); "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('sklearn', 'pandas', 'matplotlib', 'dask')); "
            "assert not bad, bad")
    res = _run("-c", code)
    assert res.returncode == 0, res.stderr


def test_import_emfast_leaves_the_hmm_package_for_later():
    # import emfast stays light: emfast.fit_many_hmm imports the HMM package on first use
    code = ("import sys, emfast; "
            "assert 'emfast.hmm' not in sys.modules and 'scipy.special' not in sys.modules; "
            "f = emfast.fit_many_hmm; assert 'emfast.hmm' in sys.modules; "
            "from emfast import fit_many_hmm; assert fit_many_hmm is f")
    res = _run("-c", code)
    assert res.returncode == 0, res.stderr


def test_public_names():
    for name in ("GaussianMixture", "fit_many", "fit_many_hmm", "show_config",
                 "ConvergenceWarning",
                 "DegenerateComponentWarning", "NotFittedError", "__version__"):
        assert hasattr(emfast, name)
        assert name in emfast.__all__
    assert issubclass(emfast.ConvergenceWarning, UserWarning)
    assert issubclass(emfast.DegenerateComponentWarning, UserWarning)
    assert isinstance(emfast.__version__, str)


def test_show_config_prints_version_backends_openmp_threads_blas():
    buf = io.StringIO()
    emfast.show_config(file=buf)
    out = buf.getvalue()
    assert emfast.__version__ in out
    for word in ("emfast", "backends", "openmp", "n_threads", "blas", "numpy", "numba"):
        assert word in out, word
    from emfast._config import available_backends

    for b in available_backends():
        assert b in out
    if "cython" in available_backends("hmm"):
        from emfast._config import get_backend

        assert get_backend("cython", "hmm").__name__.rsplit(".", 1)[1] in out


def test_show_config_prints_to_stdout(capsys):
    emfast.show_config()
    assert emfast.__version__ in capsys.readouterr().out


def test_cli_config():
    res = _run("-m", "emfast", "config")
    assert res.returncode == 0, res.stderr
    assert emfast.__version__ in res.stdout and "backends" in res.stdout


def test_cli_demo_prints_a_bic_table():
    res = _run("-m", "emfast", "demo", "--n-init", "1", timeout=300)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "BIC" in out
    rows = [ln for ln in out.splitlines() if "BIC" in ln and "iterations" in ln]
    assert [ln.split()[0] for ln in rows] == ["full", "tied", "diag", "spherical"]
    for ln in rows:
        float(ln.split("BIC")[1].split()[0])  # a number
    assert "Agreement" in out


def test_cli_without_a_command_fails_cleanly():
    res = _run("-m", "emfast")
    assert res.returncode != 0
    assert "usage" in res.stderr.lower()


def test_warnings_are_emfast_classes(X):
    """Warnings carry emfast's classes (usable in warnings filters without scikit-learn)."""
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        GM(3, max_iter=1, random_state=0).fit(X)
    assert any(issubclass(w.category, emfast.ConvergenceWarning) for w in rec)
    # and the warning points at the caller, not at emfast's internals
    conv = [w for w in rec if issubclass(w.category, emfast.ConvergenceWarning)]
    assert conv[0].filename == __file__
