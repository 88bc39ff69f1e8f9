"""Saved models: ``model.to_json(path)`` and ``emfast.load(path)``, no pickle.

One mechanism serves every emfast estimator and result object, with no serializer per class.
A file is one JSON object::

    {"format": "emfast-model", "version": 1, "emfast_version": "0.1.0",
     "class": "emfast.GaussianMixture",
     "params": {...},          # get_params(deep=False): the constructor's arguments
     "fitted": {...}}          # the object's state after fit

``fitted`` holds every instance attribute that is not a constructor parameter, except
private working state (names that start with "_" and do not end with "_", such as
``partial_fit``'s running statistics, which a loaded model restarts from its fitted
parameters as the first step, or ``set_output``'s choice). So it holds the public fitted
attributes (``means_``, ``monitor_``...), the private ones they are computed from
(GaussianHMM's ``_covars_``) and those hmmlearn names without "_" (``n_features``), whatever
an estimator adds in a later version. Result objects that are not estimators
(``emfast.fit_many``'s batch, a model selection, an HMM's ``ConvergenceMonitor``) have no
``params``: all their state is in ``fitted``. Loading builds the estimator from ``params``
(a parameter added in a later emfast version takes its default) and sets the attributes as
saved: the loaded model predicts, scores and transforms exactly as the saved one did, and
continues from its parameters with ``warm_start``.

Values: JSON's null, booleans, integers, strings and finite floats stand for themselves, a
JSON list for a Python list; everything else is a one-key object naming its kind:

    {"float": "nan" | "inf" | "-inf"}                 non-finite Python float
    {"tuple": [...]}, {"deque": [...]}, {"dict": {...}}  (string keys)
    {"ndarray": {"dtype": "<f8", "shape": [3, 2], "data": [[...], ...]}}
    {"ndarray": {"dtype": "<f8", "shape": [500, 2], "base64": "..."}}
    {"scalar": {...same as ndarray, shape []...}}     NumPy scalar (np.float64(1.5)...)
    {"RandomState": {"tuple": [...]}}                 its get_state()
    {"object": {"class": ..., "params": ..., "fitted": ...}}  a nested emfast object

Arrays keep their dtype and shape exactly. Small ones (at most ``LIST_MAX`` numbers, all
finite) are nested lists, to be read by eye; the others the base64 of their little-endian
bytes (exact for every value, NaN and infinities included). Structured arrays (a model
selection's ``table_``) store their fields' dtype as a list of [name, dtype]; arrays of
Python objects (``feature_names_in_``) their elements one by one, as values.

Only the classes of :data:`CLASSES` are ever built, found by their public name in that
table; the file cannot name a module to import. Unknown formats, versions and classes are
refused with a ValueError. A reader of format version 1 is kept by later emfast versions.
"""

import base64
import functools
import importlib
import json
import math
import os
from collections import deque

import numpy as np

FORMAT = "emfast-model"
VERSION = 1
# arrays with at most this many numbers (and all finite) are written as nested lists
LIST_MAX = 64

# The public name of every class a file may hold: module -> class names. Nothing else is
# built, and these modules are the only ones imported (lazily: emfast.hmm costs 18 MiB).
CLASSES = {
    "emfast": ("GaussianMixture", "BernoulliMixture", "CategoricalMixture", "PoissonMixture",
               "LatentDirichletAllocation"),
    "emfast.hmm": ("GaussianHMM", "GMMHMM", "CategoricalHMM", "MultinomialHMM", "PoissonHMM",
                   "ConvergenceMonitor"),
    "emfast.impute": ("EMImputer",),
    "emfast.batch": ("GaussianMixtureBatch",),
    "emfast.hmm_batch": ("GaussianHMMBatch",),
    "emfast.selection": ("GaussianMixtureSelection",),
}

__all__ = ["load", "loads", "save", "dumps", "JSONMixin", "FORMAT", "VERSION", "CLASSES"]


class JSONMixin:
    """``to_json`` for the estimators (through ``ParamsMixin``) and the result objects."""

    def to_json(self, path=None):
        """Write this object to ``path`` in emfast's JSON model format (see
        :mod:`emfast.io`); without ``path``, return the JSON text. ``emfast.load`` reads it
        back."""
        return save(self, path) if path is not None else dumps(self)


def dumps(obj):
    """The JSON text of ``obj`` (an emfast estimator or result object)."""
    return _layout(dict({"format": FORMAT, "version": VERSION,
                         "emfast_version": _emfast_version()}, **_encode_object(obj)))


def _layout(doc, depth=0):
    """JSON text of ``doc`` with one line per top-level key and per parameter or fitted
    attribute (each value on its one line: arrays stay compact)."""
    if not (isinstance(doc, dict) and doc and depth < 2):
        return json.dumps(doc, allow_nan=False)
    pad = " " * (depth + 1)
    body = ",\n".join(f"{pad}{json.dumps(k)}: {_layout(v, depth + 1)}" for k, v in doc.items())
    return f"{{\n{body}\n{' ' * depth}}}"


def save(obj, path):
    """Write :func:`dumps` of ``obj`` to ``path``; returns None."""
    text = dumps(obj)
    with open(os.fspath(path), "w", encoding="utf-8") as f:
        f.write(text)


def loads(text):
    """The object of a JSON text (str or UTF-8 bytes) written by :func:`dumps`."""
    try:
        doc = json.loads(text)
    except ValueError as exc:          # UnicodeDecodeError too
        raise ValueError(f"not an emfast model file: not JSON ({exc})") from None
    except RecursionError:
        raise ValueError("not an emfast model file: JSON nested too deeply") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"not an emfast model file (its 'format' is not {FORMAT!r})")
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"emfast model file with an invalid format version {version!r}")
    if version > VERSION:
        raise ValueError(
            f"this emfast model file has format version {version}, written by emfast "
            f"{doc.get('emfast_version', '?')}; this emfast ({_emfast_version()}) reads "
            f"versions up to {VERSION}: upgrade emfast")
    try:
        return _decode_object(doc)
    except RecursionError:
        raise ValueError("emfast model file: values nested too deeply") from None


def load(path):
    """The emfast estimator or result object saved at ``path`` by ``to_json``."""
    with open(os.fspath(path), "rb") as f:
        return loads(f.read())


# ---------------------------------------------------------------------- classes
@functools.cache
def _registry():
    """{public name: class} of :data:`CLASSES` (imported on first use)."""
    out = {}
    for module, names in CLASSES.items():
        mod = importlib.import_module(module)
        out.update((f"{module}.{name}", getattr(mod, name)) for name in names)
    return out


def _class_name(obj, where):
    for name, cls in _registry().items():
        if type(obj) is cls:
            return name
    what = f"{type(obj).__module__}.{type(obj).__qualname__}"
    raise TypeError(f"cannot save {f'{where!r}, ' if where else ''}a {what}: only emfast's "
                    "own estimators and results can be saved (emfast.io.CLASSES)")


def _emfast_version():
    from emfast import __version__

    return __version__


# ---------------------------------------------------------------------- objects
def _state(obj):
    """(constructor parameters or None, fitted state) of ``obj`` (module docstring)."""
    params = obj.get_params(deep=False) if hasattr(obj, "get_params") else None
    fitted = {name: value for name, value in vars(obj).items()
              if not (params is not None and name in params)
              and not (name.startswith("_") and not name.endswith("_"))}
    return params, fitted


def _encode_object(obj, where=None):
    params, fitted = _state(obj)
    out = {"class": _class_name(obj, where)}
    if params is not None:
        out["params"] = {name: _encode(value, name) for name, value in params.items()}
    out["fitted"] = {name: _encode(value, name) for name, value in fitted.items()}
    return out


def _decode_object(doc):
    name = doc.get("class")
    cls = _registry().get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"emfast model file of an unknown class {name!r}; known: "
                         f"{', '.join(_registry())}")
    fitted = _decode_mapping(doc.get("fitted", {}), "fitted")
    if hasattr(cls, "get_params"):
        params = _decode_mapping(doc.get("params", {}), "params")
        unknown = sorted(set(params) - set(cls._param_names()))
        if unknown:
            raise ValueError(f"{name} has no parameter(s) {', '.join(unknown)} in this "
                             f"emfast ({_emfast_version()}): the file is from another version")
        obj = cls(**params)
    else:
        obj = cls.__new__(cls)
    # fitted state is the instance's own attributes: never a parameter, a method or another
    # attribute of the class (a file could otherwise hide predict)
    clash = sorted(n for n in fitted if not n.isidentifier() or hasattr(cls, n)
                   or (hasattr(cls, "get_params") and n in cls._param_names()))
    if clash:
        raise ValueError(f"emfast model file: {name} cannot have the fitted attribute(s) "
                         f"{', '.join(map(repr, clash[:5]))}")
    vars(obj).update(fitted)      # as saved: bypasses properties (GaussianHMM.covars_)
    return obj


def _decode_mapping(doc, what):
    if not isinstance(doc, dict):
        raise ValueError(f"emfast model file: {what!r} must be a JSON object")
    return {name: _decode(value) for name, value in doc.items()}


# ---------------------------------------------------------------------- values
def _encode(value, where):
    """The JSON value of ``value`` (module docstring); ``where`` names it in errors."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"float": repr(value)}
    if isinstance(value, np.ndarray):
        return {"ndarray": _encode_array(value, where)}
    if isinstance(value, np.generic):
        return {"scalar": _encode_array(np.asarray(value), where)}
    if isinstance(value, list):
        return [_encode(v, where) for v in value]
    if isinstance(value, (tuple, deque)):
        return {type(value).__name__: [_encode(v, where) for v in value]}
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"cannot save {where!r}: a dict with keys that are not strings")
        return {"dict": {k: _encode(v, f"{where}[{k!r}]") for k, v in value.items()}}
    if type(value) is np.random.RandomState:
        return {"RandomState": _encode(value.get_state(), where)}
    if hasattr(value, "__dict__"):
        return {"object": _encode_object(value, where)}
    raise TypeError(f"cannot save {where!r}: a value of type {type(value).__name__}")


def _decode(doc):
    if doc is None or isinstance(doc, (bool, int, float, str)):
        return doc
    if isinstance(doc, list):
        return [_decode(v) for v in doc]
    if not isinstance(doc, dict) or len(doc) != 1:
        raise ValueError(f"emfast model file: unexpected value {_short(doc)}")
    (kind, body), = doc.items()
    if kind == "float" and body in ("nan", "inf", "-inf"):
        return float(body)
    if kind in ("tuple", "deque") and isinstance(body, list):
        return (tuple if kind == "tuple" else deque)(_decode(v) for v in body)
    if kind == "dict" and isinstance(body, dict):
        return {k: _decode(v) for k, v in body.items()}
    if kind == "ndarray":
        return _decode_array(body)
    if kind == "scalar":
        return _decode_array(body)[()]
    if kind == "RandomState":
        rs = np.random.RandomState()
        try:
            rs.set_state(_decode(body))
        except (TypeError, IndexError, ValueError) as exc:
            raise ValueError(f"emfast model file: not a random state ({exc})") from None
        return rs
    if kind == "object" and isinstance(body, dict):
        return _decode_object(body)
    raise ValueError(f"emfast model file: unexpected value {_short(doc)}")


def _short(doc):
    text = json.dumps(doc)
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------------- arrays
def _encode_array(a, where):
    if a.dtype.kind == "O":
        return {"dtype": "object", "shape": list(a.shape),
                "data": [_encode(v, where) for v in a.ravel().tolist()]}
    if a.dtype.hasobject or (a.dtype.kind == "V" and a.dtype.names is None):
        raise TypeError(f"cannot save {where!r}: an array of dtype {a.dtype}")
    little = a.dtype.newbyteorder("<")          # also each field of a structured dtype
    out = {"dtype": little.descr if a.dtype.names else little.str, "shape": list(a.shape)}
    if a.size <= LIST_MAX and a.dtype.kind in "biuf" and np.all(np.isfinite(a)):
        out["data"] = a.tolist()
    else:
        out["base64"] = base64.b64encode(np.ascontiguousarray(a, dtype=little).tobytes()
                                         ).decode("ascii")
    return out


def _decode_array(doc):
    if not isinstance(doc, dict) or not _is_shape(doc.get("shape")):
        raise ValueError("emfast model file: an array without a valid 'shape'")
    shape = tuple(doc["shape"])
    if doc.get("dtype") == "object":
        data = doc.get("data")
        if not isinstance(data, list) or len(data) != math.prod(shape):
            raise ValueError("emfast model file: an object array's 'data' does not fit its "
                             "shape")
        out = np.empty(len(data), dtype=object)
        out[:] = [_decode(v) for v in data]
        return out.reshape(shape)
    dtype = _decode_dtype(doc.get("dtype"))
    try:
        if "data" in doc:
            a = np.array(doc["data"], dtype=dtype).reshape(shape)
        else:
            raw = base64.b64decode(doc["base64"], validate=True)
            a = np.frombuffer(raw, dtype=dtype).reshape(shape)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"emfast model file: an array's data does not fit its dtype "
                         f"{dtype} and shape {shape} ({exc})") from None
    return a.astype(dtype.newbyteorder("="))     # native byte order, writable, owned


# The widest item a saved array may have (a feature name of 16,384 characters as UTF-32)
_MAX_ITEMSIZE = 1 << 16


def _decode_dtype(spec):
    """A NumPy dtype from a saved dtype string or field list, numbers, booleans and strings
    only (never object)."""
    try:
        if isinstance(spec, str):
            dtype = np.dtype(spec)
        elif isinstance(spec, list) and all(isinstance(f, list) and len(f) == 2 for f in spec):
            dtype = np.dtype([(str(n), _decode_dtype(t)) for n, t in spec])
        else:
            raise TypeError
    except (TypeError, ValueError):
        raise ValueError(f"emfast model file: invalid dtype {spec!r}") from None
    if dtype.hasobject or (dtype.names is None and dtype.kind not in "biufcUS"):
        raise ValueError(f"emfast model file: unsupported dtype {spec!r}")
    if dtype.itemsize > _MAX_ITEMSIZE:      # a few bytes of JSON must not allocate gigabytes
        raise ValueError(f"emfast model file: dtype {spec!r} of {dtype.itemsize} bytes an item")
    return dtype


def _is_shape(shape):
    return isinstance(shape, list) and all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
