"""The command line (emfast.cli, emfast._files): each command against the estimator it runs,
the file readers, the progress line, and one-line errors with exit code 2."""

import subprocess
import sys

import numpy as np
import pytest

import emfast
from emfast import _files, cli
from emfast.hmm import GaussianHMM
from emfast.impute import EMImputer

rng = np.random.RandomState(0)
X = np.vstack([rng.randn(80, 2) - 3, rng.randn(80, 2) + 3])


def _csv(path, rows, header=None):
    lines = ([",".join(header)] if header else []) + [",".join(map(str, r)) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture
def data_csv(tmp_path):
    return _csv(tmp_path / "data.csv", X.tolist(), ["a", "b"])


def _run(capsys, *argv):
    """(exit code, stdout, stderr) of ``emfast argv`` in this process."""
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _read_csv(text):
    lines = text.strip().splitlines()
    return lines[0].split(","), np.array([[float(v) for v in ln.split(",")]
                                          for ln in lines[1:]])


def test_fit_gmm_saves_the_estimators_fit_and_predict_prints_it(capsys, data_csv, tmp_path):
    model = tmp_path / "model.json"
    code, out, err = _run(capsys, "fit-gmm", data_csv, "--components", 2, "--covariance",
                          "diag", "--seed", 3, "--out", model)
    assert code == 0 and err == ""
    assert "2 components (diag covariances), 160 rows x 2 features" in out
    want = emfast.GaussianMixture(2, covariance_type="diag", random_state=3).fit(X)
    got = emfast.load(model)
    np.testing.assert_array_equal(got.means_, want.means_)
    assert (got.verbose, got.verbose_interval) == (0, 10)   # the progress hook: not saved

    code, out, _ = _run(capsys, "predict", model, data_csv)
    names, labels = _read_csv(out)
    assert code == 0 and names == ["label"]
    np.testing.assert_array_equal(labels[:, 0], want.predict(X))
    code, out, _ = _run(capsys, "predict", model, data_csv, "--proba")
    names, proba = _read_csv(out)
    assert names == ["p0", "p1"]
    np.testing.assert_array_equal(proba, want.predict_proba(X))     # written exactly


def test_common_options_reach_the_estimator(capsys, data_csv, tmp_path):
    model = tmp_path / "m.json"
    _run(capsys, "fit-gmm", data_csv, "--components", 2, "--max-iter", 1, "--tol", 0.5,
         "--threads", 1, "--n-init", 2, "-q", "--out", model)
    gm = emfast.load(model)
    assert (gm.max_iter, gm.tol, gm.n_threads, gm.n_init, gm.random_state) == (1, 0.5, 1, 2, 0)


def test_readers_agree(tmp_path):
    pd = pytest.importorskip("pandas")
    paths = [_csv(tmp_path / "h.csv", X.tolist(), ["a", "b"]),
             _csv(tmp_path / "n.csv", X.tolist()),
             str(tmp_path / "d.npy"), str(tmp_path / "d.npz")]
    np.save(paths[2], X)
    np.savez(paths[3], data=X)
    if _has_pyarrow():
        paths.append(str(tmp_path / "d.parquet"))
        pd.DataFrame(X, columns=["a", "b"]).to_parquet(paths[-1])
    for path in paths:
        table = _files.read_table(path)
        np.testing.assert_array_equal(table.matrix(), X, err_msg=path)
    assert _files.read_table(paths[0]).names == ["a", "b"]
    assert _files.read_table(paths[1]).names is None


def test_csv_missing_values_and_sparse_counts(tmp_path):
    path = _csv(tmp_path / "m.csv", [["1", ""], ["NA", "2.5"], [" nan ", "3"]], ["x", "y"])
    got = _files.read_table(path).matrix()
    np.testing.assert_array_equal(np.isnan(got), [[False, True], [True, False], [True, False]])
    sparse = pytest.importorskip("scipy.sparse")
    counts = sparse.random(20, 30, density=0.2, random_state=0, format="csr")
    sparse.save_npz(tmp_path / "c.npz", counts)
    got = _files.read_counts(tmp_path / "c.npz")
    assert sparse.issparse(got) and (got != counts).nnz == 0
    np.testing.assert_array_equal(_files.read_table(tmp_path / "c.npz").matrix(),
                                  counts.toarray())


def test_select_prints_the_table_and_saves_the_selection(capsys, data_csv, tmp_path):
    out_path = tmp_path / "sel.json"
    code, out, _ = _run(capsys, "select", data_csv, "--components", "1-3", "--covariance",
                        "full,diag", "--criterion", "aic", "--out", out_path)
    want = emfast.select_gaussian_mixture(X, [1, 2, 3], ["full", "diag"], "aic",
                                          random_state=0)
    best = want.best_params_
    assert code == 0 and f"best by aic: {best['n_components']} components" in out
    assert len([ln for ln in out.splitlines() if ln.split()[:1] in (["1"], ["2"], ["3"],
                                                                     ["*"])]) == 6
    code, out, _ = _run(capsys, "predict", out_path, data_csv)   # the best model predicts
    np.testing.assert_array_equal(_read_csv(out)[1][:, 0], want.best_estimator_.predict(X))


def test_fit_hmm_groups_rows_by_the_lengths_column(capsys, tmp_path):
    ids = np.array(["b", "a", "b", "c", "a"] * 24)     # b first, then a, then c
    path = _csv(tmp_path / "seq.csv", [[i, *r] for i, r in zip(ids, X[:120].tolist())],
                ["seq_id", "x", "y"])
    model = tmp_path / "hmm.json"
    code, out, _ = _run(capsys, "fit-hmm", path, "--lengths-column", "seq_id", "--states",
                        2, "--out", model, "-q")
    assert code == 0 and "3 sequence(s), 120 rows x 2 features" in out
    order = np.concatenate([np.flatnonzero(ids == s) for s in "bac"])
    want = GaussianHMM(2, random_state=0).fit(X[:120][order], [48, 48, 24])
    got = emfast.load(model)
    np.testing.assert_array_equal(got.means_, want.means_)
    code, out, _ = _run(capsys, "predict", model, path, "--lengths-column", "seq_id")
    labels = np.empty(120)
    labels[order] = want.predict(X[:120][order], [48, 48, 24])
    np.testing.assert_array_equal(_read_csv(out)[1][:, 0], labels)   # in the file's order


def test_impute_writes_the_filled_csv(capsys, tmp_path):
    Xm = X.copy()
    Xm[::4, 0] = np.nan
    path = _csv(tmp_path / "m.csv", [["" if np.isnan(v) else v for v in r] for r in Xm],
                ["a", "b"])
    code, out, err = _run(capsys, "impute", path, "--out", tmp_path / "f.csv")
    assert code == 0 and "40 missing values filled" in err
    names, filled = _read_csv((tmp_path / "f.csv").read_text())
    assert names == ["a", "b"]
    np.testing.assert_array_equal(filled, EMImputer(random_state=0).fit_transform(Xm))


def test_fit_lca_prints_weights_and_item_probabilities(capsys, tmp_path):
    codes = (X > 0).astype(int) + (X > 2)
    path = _csv(tmp_path / "answers.csv", codes.tolist(), ["q1", "q2"])
    code, out, _ = _run(capsys, "fit-lca", path, "--classes", 2, "--out", tmp_path / "l.json")
    want = emfast.CategoricalMixture(2, random_state=0).fit(codes)
    assert code == 0 and "item q1: P(answer | class)" in out and "item q2" in out
    assert f"{want.weights_[0]:.4g}" in out and "answer 2" in out
    np.testing.assert_array_equal(emfast.load(tmp_path / "l.json").probabilities_[1],
                                  want.probabilities_[1])


def test_fit_lda_prints_top_words_and_saves(capsys, tmp_path):
    sparse = pytest.importorskip("scipy.sparse")
    words = np.random.RandomState(1).poisson(np.repeat([[6.0, 3, 0.1, 0.1, 0.1],
                                                        [0.1, 0.1, 0.1, 3, 6]], 30, axis=0))
    sparse.save_npz(tmp_path / "counts.npz", sparse.csr_matrix(words))
    code, out, _ = _run(capsys, "fit-lda", tmp_path / "counts.npz", "--topics", 2,
                        "--top-words", 2, "--out", tmp_path / "lda.json", "-q")
    want = emfast.LatentDirichletAllocation(2, random_state=0).fit(words)
    assert code == 0 and "2 topics, 60 documents x 5 words" in out
    tops = {ln.split(":")[1].strip() for ln in out.splitlines() if "topic " in ln}
    assert tops == {"0 1", "4 3"}
    np.testing.assert_array_equal(emfast.load(tmp_path / "lda.json").components_,
                                  want.components_)
    _run(capsys, "fit-lda", tmp_path / "counts.npz", "--topics", 2, "--tol", 0.5,
         "--out", tmp_path / "lda.json", "-q")
    lda = emfast.load(tmp_path / "lda.json")
    assert (lda.perp_tol, lda.evaluate_every) == (0.5, 1)


def test_progress_line_on_stderr_and_quiet(capsys, data_csv, monkeypatch, tmp_path):
    monkeypatch.setattr(cli, "PROGRESS_DELAY", 0.0)
    monkeypatch.setattr(cli, "PROGRESS_EVERY", 0.0)
    _, out, err = _run(capsys, "fit-gmm", data_csv, "--components", 3)
    assert "emfast: iteration 2  change" in err and "emfast: iteration" not in out
    _, _, err = _run(capsys, "fit-hmm", data_csv, "--states", 2)
    assert "emfast: iteration 2  log-likelihood" in err
    np.save(tmp_path / "counts.npy", (np.abs(X) * 3).astype(int))
    _, _, err = _run(capsys, "fit-lda", tmp_path / "counts.npy", "--topics", 2, "--tol", 0.1)
    assert "emfast: iteration 2  perplexity" in err
    _, out, err = _run(capsys, "fit-gmm", data_csv, "--components", 3, "--max-iter", 1, "-q")
    assert err == ""                                   # no progress, no warning
    _, _, err = _run(capsys, "fit-gmm", data_csv, "--components", 3, "--max-iter", 1)
    assert "emfast: warning: Best performing initialization did not converge" in err


def test_benchmark_outside_a_source_checkout(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(cli, "_compare_script", lambda: str(tmp_path / "none.py"))
    code, _, err = _run(capsys, "benchmark")
    assert code == 2 and "from a source checkout" in err


def _has_pyarrow():
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def _bad_files(tmp):
    ragged = _csv(tmp / "ragged.csv", [[1, 2], [3]], ["a", "b"])
    text = _csv(tmp / "text.csv", [[1, 2], [3, "abc"]], ["a", "b"])
    np.savez(tmp / "two.npz", a=X, b=X)
    np.save(tmp / "strings.npy", np.array(["x", "y"]))
    (tmp / "empty.csv").write_text("")
    (tmp / "model.json").write_text("{}")
    (tmp / "bad.parquet").write_text("not parquet")
    data = _csv(tmp / "data.csv", X.tolist(), ["a", "b"])
    three = _csv(tmp / "three.csv", np.hstack([X, X[:, :1]]).tolist())
    emfast.GaussianMixture(2).fit(X).to_json(tmp / "gm.json")
    np.save(tmp / "array.npy", X)
    (tmp / "array.npy").rename(tmp / "renamed.npz")
    np.savez(tmp / "cut.npz", a=X)
    (tmp / "cut.npz").write_bytes((tmp / "cut.npz").read_bytes()[:40])
    np.save(tmp / "cut.npy", X)
    (tmp / "cut.npy").write_bytes((tmp / "cut.npy").read_bytes()[:140])
    return {
        "missing file": (["fit-gmm", tmp / "nope.csv"], "nope.csv: no such file"),
        "ragged csv": (["fit-gmm", ragged], "line 3 has 1 fields, expected 2"),
        "non-numeric": (["fit-gmm", text], "line 3, column 'b': 'abc' is not a number"),
        "two arrays": (["fit-gmm", tmp / "two.npz"], "expected one array in the .npz"),
        "strings npy": (["fit-gmm", tmp / "strings.npy"], "expected numbers"),
        "empty": (["impute", tmp / "empty.csv"], "empty file"),
        "no column": (["fit-hmm", data, "--lengths-column", "seq"],
                      "no column 'seq' (columns: a, b)"),
        "not a model": (["predict", tmp / "model.json", data],
                        "model.json: not an emfast model file"),
        "missing model": (["predict", tmp / "none.json", data], "none.json"),
        "wrong columns": (["predict", tmp / "gm.json", three], "expecting 2 features"),
        "lengths not hmm": (["predict", tmp / "gm.json", data, "--lengths-column", "a"],
                            "--lengths-column is for HMM models"),
        "bad int": (["fit-gmm", data, "--components", "0"], "expected a positive integer"),
        "bad choice": (["fit-gmm", data, "--covariance", "round"], "invalid choice"),
        "bad range": (["select", data, "--components", "3-1"], "empty range"),
        "bad type": (["select", data, "--covariance", "full,oval"], "oval"),
        "too many K": (["fit-gmm", data, "--components", "500"], "n_components"),
        "bad tol": (["fit-gmm", data, "--tol", "-1"], "tol"),
        "unknown option": (["fit-gmm", data, "--bogus"], "unrecognized arguments: --bogus"),
        "no command": ([], "usage: emfast --help"),
        "bad parquet": (["fit-gmm", tmp / "bad.parquet"],
                        "not a Parquet file" if _has_pyarrow() else "needs pyarrow"),
        "unwritable out": (["fit-gmm", data, "-q", "--out", tmp / "no" / "m.json"],
                           "--out: no directory"),
        "npy named npz": (["fit-lda", tmp / "renamed.npz"], "not an .npz archive"),
        "truncated npz": (["fit-gmm", tmp / "cut.npz"], "not a NumPy .npz file"),
        "truncated npy": (["fit-gmm", tmp / "cut.npy"], "not a NumPy .npy file"),
    }


BAD = ("missing file", "ragged csv", "non-numeric", "two arrays", "strings npy", "empty",
       "no column", "not a model", "missing model", "wrong columns", "lengths not hmm",
       "bad int", "bad choice", "bad range", "bad type", "too many K", "bad tol",
       "unknown option", "no command", "bad parquet", "unwritable out", "npy named npz",
       "truncated npz", "truncated npy")


@pytest.mark.parametrize("case", BAD)
def test_user_errors_are_one_line_and_exit_2(capsys, tmp_path, case):
    cases = _bad_files(tmp_path)
    assert set(cases) == set(BAD)
    argv, message = cases[case]
    code, _, err = _run(capsys, *argv)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("emfast: error: "), err
    assert message in err


def test_parquet_without_pyarrow(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    (tmp_path / "d.parquet").write_text("x")
    code, _, err = _run(capsys, "fit-gmm", tmp_path / "d.parquet")
    assert code == 2 and "needs pyarrow (pip install pyarrow)" in err


def test_console_entry_runs_as_a_module(tmp_path, data_csv):
    model = tmp_path / "m.json"
    res = subprocess.run([sys.executable, "-m", "emfast", "fit-gmm", data_csv, "--components",
                          "2", "--out", str(model)], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert "saved to" in res.stdout and emfast.load(model).n_components == 2
    res = subprocess.run([sys.executable, "-m", "emfast", "predict", str(model),
                          str(tmp_path / "nope.csv")], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 2 and res.stderr.startswith("emfast: error:")
    assert "Traceback" not in res.stderr


def test_csv_header_names_are_quoted(tmp_path):
    import csv

    from emfast import cli

    path = tmp_path / "out.csv"
    cli._write_csv(path, ["a,b", 'say "x"', "c"], np.array([[1.0, 2.0, 3.0]]))
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["a,b", 'say "x"', "c"] and rows[1] == ["1.0", "2.0", "3.0"]
