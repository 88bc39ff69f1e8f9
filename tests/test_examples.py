"""The scripts of examples/ run end to end and find what their docstrings say they find.

Marked ``examples`` (about 10 s in all): ``pytest -m "not examples"`` skips them. Each
script is run in-process through its ``main()`` (what ``python examples/NAME.py`` calls),
and one is run as a script, to check the command line path too.
"""

import os
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.examples

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
if not EXAMPLES.is_dir():      # tests run against an installed wheel, without the source tree
    pytest.skip("examples/ is not beside tests/ (no source tree)", allow_module_level=True)


def example_main(name):
    return runpy.run_path(str(EXAMPLES / f"{name}.py"))["main"]


def test_every_example_is_tested():
    tested = {"cluster_wine", "nile_hmm", "student_t_mixture"}
    assert {p.stem for p in EXAMPLES.glob("*.py")} == tested


def test_wine_clustering_with_bic(capsys):
    pytest.importorskip("sklearn")
    res = example_main("cluster_wine")([])
    # BIC's density-optimal choice splits a cultivar; the 3-component fit finds all three
    assert 3 <= res["best_params"]["n_components"] <= 5
    assert res["ari_best"] > 0.6
    assert res["ari_three"] > 0.85
    assert "ARI vs the cultivars" in capsys.readouterr().out


def test_nile_hmm_finds_the_1899_change(tmp_path):
    res = example_main("nile_hmm")([])
    assert len(res["change_years"]) == 1
    assert abs(res["change_years"][0] - 1899) <= 2          # Cobb (1978): after 1898
    low, high = res["means"]
    assert 800 < low < 900 < 1050 < high < 1150


def test_nile_hmm_plot(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    out = tmp_path / "nile.png"
    example_main("nile_hmm")(["--plot", str(out)])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_student_t_mixture_on_the_kernels():
    res = example_main("student_t_mixture")()
    assert res["loglik_t"] > res["loglik_gaussian"] + 100     # heavy tails: t wins clearly
    assert np.all(np.diff(res["trace"]) > -1e-6 * abs(res["trace"][-1]))   # EM ascends
    found = res["means"][np.argsort(res["means"].sum(1))]
    np.testing.assert_allclose(found, [[0, 0], [8, 0], [4, 7]], atol=0.3)


def test_example_runs_as_a_script():
    # the emfast under test: the source tree's (as PYTHONPATH=src runs it) or the installed one
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.run([sys.executable, str(EXAMPLES / "student_t_mixture.py")],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "EM on emfast.kernels" in proc.stdout
