"""Sufficient statistics: the currency between E-step kernels, M-steps and drivers."""

import numpy as np


class GaussianStats:
    """Weighted sufficient statistics of a Gaussian mixture, centred on ``centre``.

    Attributes
    ----------
    covariance_type : str
    centre : (K, D) float64
        The means the moments are taken about (the means of the E-step's parameters).
    nk : (K,)   sum of weighted responsibilities
    s1 : (K, D) sum of w r (x - centre_k)
    s2 : second moments about ``centre``, shaped as in ``emfast.kernels.gaussian_estep_stats``
    loglik : float, sum of w log p(x)
    weight_sum : float, sum of the sample weights

    Statistics computed with the same centre add: ``stats(A) + stats(B) == stats(A u B)``.
    """

    __slots__ = ("covariance_type", "centre", "nk", "s1", "s2", "loglik", "weight_sum")

    def __init__(self, covariance_type, centre, nk, s1, s2, loglik, weight_sum):
        self.covariance_type = covariance_type
        self.centre = centre
        self.nk = nk
        self.s1 = s1
        self.s2 = s2
        self.loglik = float(loglik)
        self.weight_sum = float(weight_sum)

    def _check_compatible(self, other):
        if not isinstance(other, GaussianStats):
            return NotImplemented
        if other.covariance_type != self.covariance_type or not np.array_equal(
            other.centre, self.centre
        ):
            raise ValueError("only statistics taken about the same means with the same "
                             "covariance type can be added")
        return None

    def __add__(self, other):
        bad = self._check_compatible(other)
        if bad is NotImplemented:
            return bad
        return GaussianStats(self.covariance_type, self.centre, self.nk + other.nk,
                             self.s1 + other.s1, self.s2 + other.s2,
                             self.loglik + other.loglik, self.weight_sum + other.weight_sum)

    def __mul__(self, factor):
        factor = float(factor)
        return GaussianStats(self.covariance_type, self.centre, self.nk * factor,
                             self.s1 * factor, self.s2 * factor, self.loglik * factor,
                             self.weight_sum * factor)

    __rmul__ = __mul__


    def __repr__(self):
        K, D = self.centre.shape
        return (f"GaussianStats({self.covariance_type!r}, K={K}, D={D}, "
                f"weight_sum={self.weight_sum:g}, loglik={self.loglik:g})")
