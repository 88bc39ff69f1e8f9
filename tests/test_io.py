"""Saved models (emfast.io): every estimator and result object round-trips through JSON
exactly; pickle keeps working; bad files are refused with a ValueError."""

import base64
import inspect
import json
import pickle
import warnings

import numpy as np
import pytest

import emfast
from emfast import hmm, impute, io
from emfast._estimator import ParamsMixin
from emfast.exceptions import NotFittedError

rng = np.random.RandomState(0)
X = np.vstack([rng.randn(60, 3) - 2, rng.randn(60, 3) + 2])
X_NAN = X.copy()
X_NAN[::7, 1] = np.nan
BINARY = (X > 0).astype(float)
CODES = np.digitize(X, [-1.0, 1.0]).astype(float)
COUNTS = rng.poisson(np.where(X > 0, 5.0, 1.0))
SYMBOLS = CODES[:, :1].astype(int)
WORDS = rng.poisson(np.repeat([[4.0, 1, 0.2, 0.1], [0.1, 0.2, 1, 4]], 60, axis=0))
LENGTHS = [50, 70]

# (estimator, fit data, fit keyword arguments, the methods compared after loading)
MIXTURE = ("predict", "predict_proba", "score_samples", "score")
HMM = ("predict", "predict_proba", "score", "decode", "filter")
CASES = {
    "GaussianMixture": (emfast.GaussianMixture(2, random_state=0), X, {}, MIXTURE),
    "GaussianMixture-nan": (emfast.GaussianMixture(2, covariance_type="diag",
                                                   random_state=0), X_NAN, {}, MIXTURE),
    "GaussianMixture-float32": (emfast.GaussianMixture(2, covariance_type="tied",
                                                       random_state=0),
                                X.astype(np.float32), {}, MIXTURE),
    "BernoulliMixture": (emfast.BernoulliMixture(2, random_state=0), BINARY, {}, MIXTURE),
    "CategoricalMixture": (emfast.CategoricalMixture(2, random_state=0), CODES, {}, MIXTURE),
    "PoissonMixture": (emfast.PoissonMixture(2, random_state=0), COUNTS, {}, MIXTURE),
    "GaussianHMM": (hmm.GaussianHMM(2, covariance_type="full", random_state=0), X,
                    {"lengths": LENGTHS}, HMM),
    "GaussianHMM-spherical": (hmm.GaussianHMM(2, covariance_type="spherical", random_state=0),
                              X, {}, HMM),
    "GMMHMM": (hmm.GMMHMM(2, n_mix=2, random_state=0), X, {}, HMM),
    "CategoricalHMM": (hmm.CategoricalHMM(2, random_state=0), SYMBOLS, {}, HMM),
    "MultinomialHMM": (hmm.MultinomialHMM(2, random_state=0), COUNTS, {}, HMM),
    "PoissonHMM": (hmm.PoissonHMM(2, random_state=0), COUNTS, {}, HMM),
    "EMImputer": (impute.EMImputer(), X_NAN, {}, ("transform",)),
    "LatentDirichletAllocation": (emfast.LatentDirichletAllocation(2, random_state=0), WORDS,
                                  {}, ("transform", "score", "perplexity")),
    "LatentDirichletAllocation-online": (
        emfast.LatentDirichletAllocation(2, learning_method="online", batch_size=50,
                                         random_state=0), WORDS, {}, ("transform",)),
}


def _fitted(name):
    est, data, kwargs, methods = CASES[name]
    est = pickle.loads(pickle.dumps(est))        # a fresh copy per test
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")           # convergence warnings of the tiny fits
        est.fit(data, **kwargs)
    return est, data, methods


def _assert_same_outputs(a, b, data, methods):
    for method in methods:
        got, want = getattr(b, method)(data), getattr(a, method)(data)
        if isinstance(want, tuple):
            for g, w in zip(got, want):
                np.testing.assert_array_equal(g, w, err_msg=method)
        else:
            np.testing.assert_array_equal(got, want, err_msg=method)


def _assert_same_state(a, b):
    assert type(a) is type(b)
    assert a.to_json() == b.to_json()           # every parameter and attribute, dtypes too
    for name, value in vars(a).items():
        if isinstance(value, np.ndarray):
            other = getattr(b, name)
            assert other.dtype == value.dtype and other.flags.writeable, name


@pytest.mark.parametrize("name", CASES)
def test_round_trip_is_exact(name, tmp_path):
    est, data, methods = _fitted(name)
    path = tmp_path / "model.json"
    assert est.to_json(path) is None
    loaded = emfast.load(path)
    _assert_same_state(est, loaded)
    _assert_same_outputs(est, loaded, data, methods)
    doc = json.loads(path.read_text())
    assert (doc["format"], doc["version"], doc["emfast_version"]) == (
        "emfast-model", 1, emfast.__version__)
    assert doc["class"] in io._registry()


@pytest.mark.parametrize("name", CASES)
def test_pickle_keeps_working(name):
    est, data, methods = _fitted(name)
    _assert_same_outputs(est, pickle.loads(pickle.dumps(est)), data, methods)


def test_every_estimator_is_registered_and_tested():
    """A new estimator in a public module must be saveable and in CASES above."""
    tested = {type(case[0]) for case in CASES.values()}
    for module in (emfast, hmm, impute, emfast.topics):
        for name in module.__all__:
            cls = getattr(module, name)
            if inspect.isclass(cls) and issubclass(cls, ParamsMixin):
                assert cls in tested, name
                assert cls in io._registry().values(), name


def test_unfitted_model_round_trips_and_is_not_fitted():
    loaded = io.loads(emfast.GaussianMixture(3, covariance_type="diag").to_json())
    assert (loaded.n_components, loaded.covariance_type) == (3, "diag")
    with pytest.raises(NotFittedError):
        loaded.predict(X)


@pytest.mark.parametrize("cls, data", [(emfast.GaussianMixture, X),
                                       (emfast.PoissonMixture, COUNTS)])
def test_warm_start_continues_from_the_loaded_parameters(cls, data):
    est = cls(2, max_iter=2, warm_start=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(data)
        loaded = io.loads(est.to_json())
        est.fit(data)
        loaded.fit(data)
    assert est.n_iter_ >= 1          # the warm fit ran EM steps from the saved state
    _assert_same_state(est, loaded)


def test_loaded_hmm_continues_with_init_params_empty():
    est, data, _ = _fitted("GaussianHMM-spherical")
    loaded = io.loads(est.to_json())
    for model in (est, loaded):
        model.set_params(init_params="", n_iter=3).fit(data)
    _assert_same_state(est, loaded)


def test_loaded_lda_continues_its_online_fit():
    """LDA's random_state_ (a RandomState) and n_batch_iter_ are saved: partial_fit after
    loading takes the same steps as the saved model would."""
    est, data, _ = _fitted("LatentDirichletAllocation-online")
    loaded = io.loads(est.to_json())
    for model in (est, loaded):
        model.partial_fit(data[:50])
    _assert_same_state(est, loaded)


def test_partial_fit_after_load_continues_from_the_parameters():
    est = emfast.GaussianMixture(2, random_state=0).fit(X)
    est.partial_fit(X[:40])
    assert "_online" not in json.loads(est.to_json())["fitted"]   # working state: not saved
    loaded = io.loads(est.to_json())
    loaded.partial_fit(X[40:80])        # from the fitted parameters, as after fit
    assert loaded.n_steps_ == 2 and np.all(np.isfinite(loaded.means_))


def test_batch_results_round_trip():
    fits = emfast.fit_many([X[:60], X[60:]], n_components=2, random_state=0)
    loaded = io.loads(fits.to_json())
    _assert_same_state(fits, loaded)
    _assert_same_outputs(fits[1], loaded[1], X, MIXTURE)

    hfits = emfast.fit_many_hmm([(X[:60], None), (X[60:], [30, 30])], n_components=2,
                                random_state=0)
    hloaded = io.loads(hfits.to_json())
    _assert_same_state(hfits, hloaded)
    np.testing.assert_array_equal(hloaded.covars_, hfits.covars_)
    _assert_same_outputs(hfits[0], hloaded[0], X, HMM)


def test_selection_round_trips(tmp_path):
    sel = emfast.select_gaussian_mixture(X, n_components=[1, 2, 150],
                                         covariance_types=("full", "diag"), random_state=0)
    sel.to_json(tmp_path / "sel.json")
    loaded = emfast.load(tmp_path / "sel.json")
    _assert_same_state(sel, loaded)
    assert loaded.table_.dtype == sel.table_.dtype and loaded.best_params_ == sel.best_params_
    assert loaded.estimators_[-1] is None           # K=150 > rows: failed, kept as None
    _assert_same_outputs(sel.best_estimator_, loaded.best_estimator_, X, MIXTURE)


def test_values_of_every_kind_round_trip():
    est = emfast.GaussianMixture(2, random_state=np.random.RandomState(5),
                                 means_init=np.array([[-2.0, 0, 0], [2, 0, 0]]))
    est.fit(X)
    rs_state = est.random_state.get_state()
    est.lower_bounds_ = [-np.inf, np.nan, 1.5]
    est.lower_bound_ = np.float32(-1.25)
    est.extra_ = {"t": (1, None, "a"), "big": np.arange(1000.0).reshape(10, 100),
                  "names": np.array(["a", "b"], dtype=object), "flags": np.array([True])}
    loaded = io.loads(est.to_json())
    assert loaded.random_state.get_state()[2:] == rs_state[2:]
    np.testing.assert_array_equal(loaded.random_state.get_state()[1], rs_state[1])
    np.testing.assert_array_equal(loaded.means_init, est.means_init)
    assert loaded.lower_bounds_[0] == -np.inf and np.isnan(loaded.lower_bounds_[1])
    assert type(loaded.lower_bound_) is np.float32 and loaded.lower_bound_ == -1.25
    assert loaded.extra_["t"] == (1, None, "a")
    np.testing.assert_array_equal(loaded.extra_["big"], est.extra_["big"])
    assert loaded.extra_["names"].dtype == object and list(loaded.extra_["names"]) == ["a", "b"]
    assert loaded.extra_["flags"].dtype == bool
    # strict JSON: no NaN/Infinity literals; small arrays as lists, large ones as base64
    doc = json.loads(est.to_json(), parse_constant=lambda c: pytest.fail(c))
    assert doc["fitted"]["means_"]["ndarray"]["data"] == est.means_.tolist()
    assert "base64" in doc["fitted"]["extra_"]["dict"]["big"]["ndarray"]


def test_feature_names_round_trip():
    pd = pytest.importorskip("pandas")
    est = emfast.GaussianMixture(2, random_state=0).fit(pd.DataFrame(X, columns=list("abc")))
    loaded = io.loads(est.to_json())
    np.testing.assert_array_equal(loaded.feature_names_in_, ["a", "b", "c"])
    np.testing.assert_array_equal(loaded.predict(pd.DataFrame(X, columns=list("abc"))),
                                  est.predict(pd.DataFrame(X, columns=list("abc"))))


def _doc():
    return json.loads(emfast.GaussianMixture(2, random_state=0).fit(X).to_json())


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(format="other"), "not an emfast model file"),
    (lambda d: d.update(version=2), "format version 2"),
    (lambda d: d.update(version="1"), "invalid format version"),
    (lambda d: d.update({"class": "os.system"}), "unknown class 'os.system'"),
    (lambda d: d.update({"class": "emfast.io.JSONMixin"}), "unknown class"),
    (lambda d: d["params"].update(n_bogus=1), "no parameter"),
    (lambda d: d["fitted"].update(x_={"object": {"class": "subprocess.Popen"}}),
     "unknown class"),
    (lambda d: d["fitted"].update(x_={"pickle": "gASV"}), "unexpected value"),
    (lambda d: d["fitted"]["weights_"]["ndarray"].update(dtype="O"), "unsupported dtype"),
    (lambda d: d["fitted"]["weights_"]["ndarray"].update(dtype="not a dtype"),
     "invalid dtype"),
    (lambda d: d["fitted"]["weights_"]["ndarray"].update(shape=[5]), "does not fit"),
    (lambda d: d["fitted"]["weights_"]["ndarray"].update(shape=[-1]), "valid 'shape'"),
    (lambda d: d["fitted"].update(w_={"ndarray": {"dtype": "<f8", "shape": [2],
                                                  "base64": "!!"}}), "does not fit"),
    (lambda d: d["fitted"].update(rs_={"RandomState": {"tuple": ["XX19937", 1]}}),
     "not a random state"),
    (lambda d: d["fitted"].update(rs_={"RandomState": {"list": []}}), "not a random state"),
    (lambda d: d["fitted"].update(predict=1), "cannot have the fitted attribute"),
    (lambda d: d["fitted"].update(n_components=5), "cannot have the fitted attribute"),
    (lambda d: d["fitted"].update(w_={"ndarray": {"dtype": "<U100000000", "shape": [1],
                                                  "data": ["a"]}}), "bytes an item"),
])
def test_bad_files_are_refused(change, message):
    doc = _doc()
    change(doc)
    with pytest.raises(ValueError, match=message):
        io.loads(json.dumps(doc))


def test_not_json_is_refused(tmp_path):
    path = tmp_path / "model.json"
    path.write_bytes(pickle.dumps(emfast.GaussianMixture()))
    with pytest.raises(ValueError, match="not an emfast model file"):
        emfast.load(path)
    with pytest.raises(ValueError, match="not an emfast model file"):
        io.loads("[1, 2]")
    with pytest.raises(ValueError, match="nested too deeply"):
        io.loads("[" * 100_000)


def test_only_emfast_objects_are_saved():
    class Mine(emfast.GaussianMixture):
        pass

    with pytest.raises(TypeError, match="only emfast's own"):
        Mine().to_json()
    est = emfast.GaussianMixture()
    est.extra_ = lambda: None
    with pytest.raises(TypeError, match="extra_"):
        est.to_json()
    est.extra_ = {1: 2}
    with pytest.raises(TypeError, match="keys that are not strings"):
        est.to_json()


def test_base64_is_little_endian_bytes():
    doc = json.loads(emfast.GaussianMixture().set_params(means_init=np.arange(100.0)
                                                        .reshape(50, 2)).to_json())
    arr = doc["params"]["means_init"]["ndarray"]
    assert arr["dtype"] == "<f8" and arr["shape"] == [50, 2]
    raw = base64.b64decode(arr["base64"])
    np.testing.assert_array_equal(np.frombuffer(raw, "<f8"), np.arange(100.0))
