"""Warnings and errors raised by emfast (named as in scikit-learn, so filters read the same)."""



class DegenerateComponentWarning(UserWarning):
    """A covariance was not positive definite or a component lost all its samples; emfast
    regularised or re-seeded it and went on (where scikit-learn raises ValueError)."""


class ConvergenceWarning(UserWarning):
    """EM stopped at max_iter before the lower bound changed by less than tol."""


class NotFittedError(ValueError, AttributeError):
    """The estimator is used before ``fit``."""


__all__ = ["ConvergenceWarning", "DegenerateComponentWarning", "NotFittedError"]
