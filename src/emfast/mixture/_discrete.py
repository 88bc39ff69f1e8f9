"""What the discrete mixture families (Bernoulli, categorical, Poisson) share: their
statistics, the E-step kernel bound once per EM run and thread, the weights' M-step, the
re-seeding of empty components and the start from cluster frequencies. Pure NumPy on
small (K x C) arrays.

A family's data come encoded once per fit (see the family modules): int32 codes with the
item offsets added for categorical and Bernoulli data, the count matrix for Poisson data.
Every family also has a float "frequency encoding" of its rows (one-hot per item, 0/1, the
counts): k-means clusters it to start EM, and the mean of a cluster's encoded rows is the
cluster's own parameter estimate.
"""

import warnings

import numpy as np

from emfast._em import BoundEStep
from emfast.mixture._gaussian import empty_components
from emfast.exceptions import DegenerateComponentWarning

# The start shrinks each cluster's frequencies this far towards the whole data's, so that
# no probability or rate the data support starts at 0: EM can never move off a 0.
START_SHRINK = 0.1


def log0(a):
    """log(a) with log(0) = -inf and no warning."""
    with np.errstate(divide="ignore"):
        return np.log(a)


class CountStats:
    """Sufficient statistics of a discrete mixture: ``nk`` (K,) the weighted
    responsibility sums, ``sums`` the family's weighted sums (categorical: (C, K) category
    counts; Poisson: (K, D) sums of the counts), ``loglik`` the weighted log-likelihood and
    ``weight_sum`` the sum of the sample weights. Statistics of disjoint rows at the same
    parameters add."""

    __slots__ = ("nk", "sums", "loglik", "weight_sum")

    def __init__(self, nk, sums, loglik, weight_sum):
        self.nk = nk
        self.sums = sums
        self.loglik = float(loglik)
        self.weight_sum = float(weight_sum)

    def __add__(self, other):
        if not isinstance(other, CountStats):
            return NotImplemented
        return CountStats(self.nk + other.nk, self.sums + other.sums,
                          self.loglik + other.loglik, self.weight_sum + other.weight_sum)

    def __mul__(self, factor):
        f = float(factor)
        return CountStats(self.nk * f, self.sums * f, self.loglik * f, self.weight_sum * f)

    __rmul__ = __mul__


def mstep_weights(nk):
    """The mixture weights nk / sum(nk)."""
    return nk / nk.sum()


def shrunk(centres, marginal):
    """Cluster frequencies (K, E) moved START_SHRINK of the way to the data's (E,)."""
    return (1.0 - START_SHRINK) * centres + START_SHRINK * marginal


def warn_reseeded(empty):
    warnings.warn(
        f"{len(empty)} component(s) lost all their samples and were re-seeded at random "
        f"data points: {list(map(int, empty))}. Consider fewer components.",
        DegenerateComponentWarning, stacklevel=5)


class BoundFamily(BoundEStep):
    """The EM family protocol of emfast._em for a discrete mixture: the E-step kernel
    bound to X once per EM run and thread (restarts run concurrently, each on its own
    thread, with their own statistics buffers), the family's M-step, and the re-seeding of
    empty components from the frequency encoding of random rows.

    A subclass provides ``_bind(X, sample_weight, n_threads) -> callable(params) ->
    CountStats``, ``_mstep(stats) -> params`` and ``_from_frequencies(weights,
    frequencies) -> params``; ``encoded`` is the frequency encoding of (a sample of) the rows
    and ``marginal`` its weighted mean, for the re-seeding.
    """

    def __init__(self, n_components, backend, weight_sum, encoded, encoded_weight):
        self.n_components = n_components
        self.backend = backend
        self.weight_sum = weight_sum
        self.encoded = encoded
        self.encoded_weight = encoded_weight
        self.marginal = np.average(encoded, axis=0, weights=encoded_weight)
        self._init_binding()

    def m_step(self, X, sample_weight, stats, rng):
        params = self._mstep(stats)
        empty = empty_components(stats)
        if len(empty):
            params = self._reseed(params, empty, rng)
        return params

    def start(self, weights, centres):
        """Parameters from cluster weights (K,) and the clusters' frequency-encoded means
        (K, E), shrunk towards the data's (:func:`shrunk`)."""
        return self._from_frequencies(weights, shrunk(centres, self.marginal))

    def _reseed(self, params, empty, rng):
        """Each empty component starts again from a random row (drawn by weight), shrunk
        towards the data's frequencies as a start is, with an equal share of the weight."""
        w = self.encoded_weight
        p = None if w is None else w / w.sum()
        rows = rng.choice(self.encoded.shape[0], size=len(empty), p=p)
        freq = self._frequencies(params)
        freq[empty] = shrunk(self.encoded[rows], self.marginal)
        weights = params.weights.copy()
        weights[empty] = 1.0 / self.n_components
        warn_reseeded(empty)
        return self._from_frequencies(weights / weights.sum(), freq)
