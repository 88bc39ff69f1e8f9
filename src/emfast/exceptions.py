"""Warnings and errors raised by emfast (named as in scikit-learn, so filters read the same).

When scikit-learn is already imported, emfast raises subclasses that also derive from
scikit-learn's classes of the same name, so that code written for scikit-learn
(``except sklearn.exceptions.NotFittedError``, a warnings filter on its
``ConvergenceWarning``) keeps working after the import change. emfast itself never
imports scikit-learn.
"""

import sys


class ConvergenceWarning(UserWarning):
    """EM stopped at max_iter before the lower bound changed by less than tol."""


class DegenerateComponentWarning(UserWarning):
    """A covariance was not positive definite or a component lost all its samples; emfast
    regularised or re-seeded it and went on (where scikit-learn raises ValueError)."""


class NotFittedError(ValueError, AttributeError):
    """The estimator is used before ``fit``."""


_compat_cache = {}


def compatible(cls):
    """``cls``, or a subclass that is also scikit-learn's class of the same name when
    scikit-learn has been imported by someone else."""
    sk = sys.modules.get("sklearn.exceptions")
    sk_cls = getattr(sk, cls.__name__, None) if sk is not None else None
    if sk_cls is None:
        return cls
    if cls not in _compat_cache:
        _compat_cache[cls] = type(cls.__name__, (cls, sk_cls),
                                  {"__module__": cls.__module__, "__doc__": cls.__doc__})
    return _compat_cache[cls]


__all__ = ["ConvergenceWarning", "DegenerateComponentWarning", "NotFittedError"]
