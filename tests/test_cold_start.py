"""Cold start: nobody compiles (or even imports) a Numba kernel they do not call, and the Numba
backend works where numba cannot cache (a read-only install without a writable cache).

Each test runs a fresh interpreter, so what it sees is what a new user's first process does.
Cold Numba compiles take seconds, so the tests call the smallest kernel where any kernel
would do, and the one GaussianMixture test shares numba's usual cache with the rest of the
suite.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import emfast

SRC = Path(emfast.__file__).resolve().parent.parent


def _python(code, env_extra=None, pythonpath=SRC, timeout=300):
    """Run ``code`` in a fresh interpreter that imports emfast from ``pythonpath``; returns
    the JSON object it prints last."""
    env = dict(os.environ, PYTHONPATH=str(pythonpath), PYTHONDONTWRITEBYTECODE="1")
    env.update(env_extra or {})
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=timeout)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_import_show_config_command_line_and_default_fits_import_no_numba():
    out = _python("""
import io, json, sys, contextlib
import numpy as np
import pytest

import emfast
from emfast.__main__ import main
from emfast.hmm import GaussianHMM
buf = io.StringIO()
emfast.show_config(file=buf)
X = np.random.default_rng(0).normal(size=(300, 2))
emfast.GaussianMixture(2, random_state=0).fit(X)
GaussianHMM(2, n_iter=3, random_state=0).fit(X)
with contextlib.redirect_stdout(io.StringIO()):
    main(["demo", "--n-init", "1"])
    main(["config"])
print(json.dumps({"numba_modules": sorted(m for m in sys.modules if m.startswith("numba")),
                  "config": buf.getvalue()}))
""")
    assert out["numba_modules"] == []
    # show_config still reports numba, from its metadata, without importing it
    import importlib.metadata

    assert importlib.metadata.version("numba") in out["config"]
    assert "numba_threads" in out["config"]


def _compiled_drivers_code(call):
    """Code that runs ``call`` and prints which parallel drivers (the ``*_kernel`` functions)
    and which outlined group functions of the Numba backend hold a compiled version, for
    which dtype of their first argument."""
    return f"""
import json, sys
import numpy as np
import pytest

import emfast
{call}
from emfast._numba import _settings
drivers = {{}}
helpers = []
for modname in ("emfast._numba._gaussian", "emfast._numba._hmm", "emfast._numba._kmeans",
                "emfast._numba._discrete"):
    mod = sys.modules.get(modname)
    for name in dir(mod) if mod else ():
        disp = getattr(mod, name)
        if name.endswith("_kernel") and hasattr(disp, "signatures"):
            drivers[modname.rsplit(".", 1)[1] + "." + name] = [
                str(sig[0].dtype) for sig in disp.signatures]
        elif hasattr(disp, "signatures") and disp.signatures:
            helpers.append(modname.rsplit(".", 1)[1] + "." + name)
groups = {{disp.py_func.__module__.rsplit(".", 1)[1] + "." + disp.py_func.__name__:
           [str(sig[0].dtype) for sig in disp.signatures]
           for disp in _settings._outlined.values() if disp.signatures}}
print(json.dumps({{"drivers": drivers, "helpers": helpers, "groups": groups,
                  "cache": _settings.JIT["cache"]}}))
"""


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_numba_fit_compiles_only_the_kernels_and_dtypes_it_uses(dtype):
    out = _python(_compiled_drivers_code(
        f"X = np.random.default_rng(0).normal(size=(300, 2)).astype('{dtype}')\n"
        "emfast.GaussianMixture(2, backend='numba', init_params='kmeans',\n"
        "                       random_state=0).fit(X)"))
    compiled = {name: dtypes for name, dtypes in out["drivers"].items() if dtypes}
    # the HMM kernels are not even imported; of the Gaussian ones only the E-step of the
    # full / tied family, for X's dtype, and the two k-means drivers of the initialisation
    # (k-means++; Lloyd steps and the statistics of the labels), for float64 only: k-means
    # runs on float64 rows
    assert not any(name.startswith("_hmm.") for name in out["drivers"])
    assert compiled == {"_gaussian._estep_tri_kernel": [dtype],
                        "_kmeans._plusplus_kernel": ["float64"],
                        "_kmeans._assign_kernel": ["float64"]}
    # the functions the drivers call by address (compiled on their own): one version each,
    # the driver's family and dtype, whatever else the fit did; one sum of the groups' slots
    # (all float64) for every driver
    assert out["groups"] == {"_gaussian._estep_group": [dtype],
                             "_gaussian._sum_groups": ["float64"],
                             "_kmeans._plusplus_group": ["float64"],
                             "_kmeans._assign_group": ["float64"]}
    for name in ("_estep_diag_kernel", "_log_prob_tri_kernel"):  # imported, not compiled
        assert "_gaussian." + name in out["drivers"]


def test_a_numba_kernel_compiles_only_its_covariance_familys_code(tmp_path):
    """Inside a driver too: diagonal log-probabilities compile no code of the full / tied
    family (the smallest Gaussian driver, compiled cold: helpers loaded from a cache would
    show nothing)."""
    out = _python(_compiled_drivers_code(
        "X = np.random.default_rng(0).normal(size=(50, 3))\n"
        "emfast.kernels.gaussian_log_prob(X, np.zeros((2, 3)), np.ones((2, 3)), 'diag',\n"
        "                                 np.zeros(2), backend='numba')"),
        env_extra={"NUMBA_CACHE_DIR": str(tmp_path)})
    compiled = {name: dtypes for name, dtypes in out["drivers"].items() if dtypes}
    assert compiled == {"_gaussian._log_prob_diag_kernel": ["float64"]}
    assert "_gaussian._maha_diag" in out["helpers"]
    assert not {"_gaussian._maha_tri", "_gaussian._centre"} & set(out["helpers"])


def _read_only_install(tmp_path):
    """A copy of the emfast package where numba finds no writable cache location, by its own
    rules (numba/core/caching.py): NUMBA_CACHE_DIR, the __pycache__ beside the source, the
    user's cache directory. Running as root, chmod would not stop a write, so each location
    is made impossible to create instead: a path below a regular file, and a regular file
    where the __pycache__ directory would go."""
    site = tmp_path / "site"
    shutil.copytree(SRC / "emfast", site / "emfast",
                    ignore=shutil.ignore_patterns("__pycache__", "*.c", "*.pyx", "*.pxi", "*.h"))
    for pkg in [p for p in (site / "emfast").rglob("*") if p.is_dir()] + [site / "emfast"]:
        (pkg / "__pycache__").write_text("not a directory")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, so nothing can be created below it")
    env = {"NUMBA_CACHE_DIR": str(blocker / "numba"), "XDG_CACHE_HOME": str(blocker / "xdg"),
           "HOME": str(blocker / "home")}
    return site, env, blocker


def test_numba_backend_works_where_nothing_can_be_cached(tmp_path):
    site, env, blocker = _read_only_install(tmp_path)
    out = _python(_compiled_drivers_code("""
from emfast._numba import _settings
from numba import njit
try:  # what every kernel decoration did before: numba has no locator here
    njit(cache=True)(_settings._probe)
    no_locator = False
except RuntimeError as exc:
    no_locator = "no locator" in str(exc)
assert no_locator, "the set-up does not take numba's cache locations away"
rng = np.random.default_rng(0)
sym = rng.integers(0, 5, size=1000)
w = rng.random((1000, 3))
got = emfast.kernels.symbol_counts(sym, w, 5, backend="numba", n_threads=2)
want = np.zeros((5, 3))
np.add.at(want, sym, w)
np.testing.assert_allclose(got, want, rtol=1e-12)
assert emfast._numba._settings.__file__.startswith(%r)
""" % str(site)), env_extra=env, pythonpath=site)
    assert out["cache"] is False
    compiled = {name: dtypes for name, dtypes in out["drivers"].items() if dtypes}
    assert compiled == {"_hmm._symbol_counts_kernel": ["int64"]}
    assert out["groups"] == {}
    assert blocker.read_text().startswith("a file")
    assert not any(p.is_dir() for p in site.rglob("__pycache__"))


def test_numba_backend_caches_where_it_can(tmp_path):
    cache_dir = tmp_path / "numba-cache"
    # first calls from several threads at once (as parallel n_init makes them)
    code = _compiled_drivers_code("""
from concurrent.futures import ThreadPoolExecutor
sym = np.arange(10) % 3
def count(_):
    return emfast.kernels.symbol_counts(sym, np.ones((10, 2)), 3, backend="numba", n_threads=1)
with ThreadPoolExecutor(3) as pool:
    assert all((c == [[4, 4], [3, 3], [3, 3]]).all() for c in pool.map(count, range(3)))
""")
    out = _python(code, env_extra={"NUMBA_CACHE_DIR": str(cache_dir)})
    assert out["cache"] is True
    # one version, the declared one, compiled by one of the threads
    assert out["drivers"]["_hmm._symbol_counts_kernel"] == ["int64"]
    cached = [p.name for p in cache_dir.rglob("*") if p.is_file()]
    assert any(n.startswith("_hmm._symbol_counts_kernel") and n.endswith(".nbi")
               for n in cached), cached
    # nothing else was compiled, so nothing else was cached
    assert all(n.startswith("_hmm._symbol_counts_kernel") for n in cached), cached


def test_importing_every_numba_module_compiles_nothing():
    """Every module of the Numba backend, present and future: a kernel decorated with eager
    signatures (``@njit(SIGS, ...)``) would compile here, at import; declare them with
    ``emfast._numba._settings.parallel_driver`` instead."""
    out = _python("""
import importlib, json, pkgutil
import emfast._numba as pkg
compiled = {}
for info in pkgutil.iter_modules(pkg.__path__):
    mod = importlib.import_module(f"emfast._numba.{info.name}")
    for name, obj in vars(mod).items():
        if hasattr(obj, "signatures") and obj.signatures:
            compiled[f"{info.name}.{name}"] = len(obj.signatures)
print(json.dumps(compiled))
""")
    assert out == {}


@pytest.mark.parametrize("pool", [None, "3"])
def test_show_config_tells_the_numba_pool_numba_then_starts(pool):
    env = {"NUMBA_NUM_THREADS": pool} if pool else {}
    code = """
import json, sys
from emfast._info import config_info
told = config_info()["numba_threads"]
assert "numba" not in sys.modules
import numba
print(json.dumps([told, numba.config.NUMBA_NUM_THREADS]))
"""
    if pool is None:  # not inherited from conftest.py's setting
        code = "import os; os.environ.pop('NUMBA_NUM_THREADS', None)\n" + code
    told, actual = _python(code, env_extra=env)
    assert told == actual
    if pool:
        assert actual == int(pool)


def test_an_outlined_function_called_with_undeclared_types_is_a_typing_error():
    """The call by address trusts the declared signature: any other argument types (here a
    scratch array typed aligned, where the group function declares unaligned outputs) must
    stop the compile, never reach the call."""
    out = _python("""
import json
import numpy as np
from numba import njit
from numba.core.errors import TypingError
from emfast._numba import _gaussian

@njit
def bad(X):
    K = 2
    return _gaussian._log_prob_group(0, X, np.zeros(K), np.zeros((K, 2)), np.ones(2 * K),
                                     2, np.empty((1, K)), np.empty(1), False, 0, 0)
try:
    bad(np.zeros((1, 2)))
    res = "compiled"
except TypingError as exc:
    res = "declared signatures" in str(exc)
print(json.dumps(res))
""")
    assert out is True
