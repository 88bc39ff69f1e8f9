"""Sufficient statistics of an HMM: transition counts plus the emission model's statistics.

Emission statistics are those of the matching mixture with every row weighted by its state
posterior: for Gaussian emissions an :class:`emfast._stats.GaussianStats` (one component per
state, centred on the current means, float64); for count-valued emissions an
:class:`ArrayStats` of named arrays. Both add, so statistics of disjoint sets of sequences
taken at the same parameters sum to the statistics of their union.
"""

import numpy as np


class ArrayStats:
    """Named float64 arrays that add elementwise (e.g. ``post`` (K,), ``obs`` (K, F))."""

    __slots__ = ("arrays",)

    def __init__(self, **arrays):
        self.arrays = arrays

    def __getitem__(self, name):
        return self.arrays[name]

    def __add__(self, other):
        if not isinstance(other, ArrayStats):
            return NotImplemented
        if other.arrays.keys() != self.arrays.keys():
            raise ValueError("only statistics with the same fields can be added")
        return ArrayStats(**{k: v + other.arrays[k] for k, v in self.arrays.items()})

    def __mul__(self, factor):
        return ArrayStats(**{k: v * float(factor) for k, v in self.arrays.items()})

    __rmul__ = __mul__

    def __getstate__(self):
        return {"arrays": self.arrays}

    def __setstate__(self, state):
        self.arrays = state["arrays"]

    def __repr__(self):
        fields = ", ".join(f"{k}={np.shape(v)}" for k, v in self.arrays.items())
        return f"ArrayStats({fields})"


class HMMStats:
    """What one E-step over a set of sequences yields.

    Attributes
    ----------
    params : HMMParams the statistics were taken at (the M-step keeps their zeros and, for
        Gaussians, the means are the centre of the moments).
    start : (K,) expected first states, summed over sequences.
    trans : (K, K) expected transition counts.
    emission : emission statistics (see the module docstring) or None when no emission
        parameter is being fitted.
    loglik : float, total log-likelihood of the sequences at ``params``.
    n_sequences : int
    """

    __slots__ = ("params", "start", "trans", "emission", "loglik", "n_sequences")

    def __init__(self, params, start, trans, emission, loglik, n_sequences):
        self.params = params
        self.start = start
        self.trans = trans
        self.emission = emission
        self.loglik = float(loglik)
        self.n_sequences = int(n_sequences)

    def __add__(self, other):
        if not isinstance(other, HMMStats):
            return NotImplemented
        if other.params is not self.params:
            raise ValueError("only statistics taken at the same parameters can be added")
        emission = None if self.emission is None else self.emission + other.emission
        return HMMStats(self.params, self.start + other.start, self.trans + other.trans,
                        emission, self.loglik + other.loglik,
                        self.n_sequences + other.n_sequences)

