"""get_params/set_params/repr for estimators, without importing scikit-learn."""

import inspect

from emfast import _validation as V
from emfast.exceptions import NotFittedError, compatible
from emfast.io import JSONMixin


class ParamsMixin(JSONMixin):
    """The part of scikit-learn's BaseEstimator protocol that ``clone`` and grids need, and
    ``to_json`` (emfast.io)."""

    @classmethod
    def _param_names(cls):
        sig = inspect.signature(cls.__init__)
        return sorted(p.name for p in sig.parameters.values()
                      if p.name != "self" and p.kind != p.VAR_KEYWORD)

    def get_params(self, deep=True):
        out = {}
        for name in self._param_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{name}__{k}", v) for k, v in value.get_params().items())
            out[name] = value
        return out

    def set_params(self, **params):
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(
                    f"Invalid parameter {name!r} for estimator {type(self).__name__}. "
                    f"Valid parameters are: {valid!r}.")
            setattr(self, name, value)
        return self

    def __repr__(self):
        defaults = {p.name: p.default for p in
                    inspect.signature(type(self).__init__).parameters.values()}
        changed = []
        for name in self._param_names():
            value = getattr(self, name)
            default = defaults.get(name)
            try:
                same = value is default or (type(value) is type(default) and value == default)
            except (ValueError, TypeError):  # arrays
                same = False
            if not same:
                changed.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_tags__(self):
        # Only scikit-learn calls this, so importing it here costs emfast users nothing.
        from sklearn.utils import Tags, TargetTags, InputTags

        return Tags(estimator_type="density_estimator", target_tags=TargetTags(required=False),
                    input_tags=InputTags())

    def _check_is_fitted(self, attribute):
        if not hasattr(self, attribute):
            raise compatible(NotFittedError)(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                "appropriate arguments before using this estimator.")


class OutputMixin:
    """scikit-learn's ``set_output`` for a transformer: ``transform="pandas"`` makes
    ``transform`` and ``fit_transform`` return DataFrames (columns from
    ``get_feature_names_out``, the input's index), "default" (or None: unchanged) NumPy
    arrays. The transformer passes its result through ``self._output(values, X_in)``."""

    def set_output(self, *, transform=None):
        if transform is not None:
            V.check_option("transform", transform, ("default", "pandas"))
            self._output_kind = transform
        return self

    def _output(self, values, X_in):
        if getattr(self, "_output_kind", "default") != "pandas":
            return values
        import pandas as pd

        index = X_in.index if hasattr(X_in, "iloc") else None
        return pd.DataFrame(values, columns=self.get_feature_names_out(), index=index)
