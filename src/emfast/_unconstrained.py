"""Unconstrained parameter vectors, for SQUAREM (``emfast._em``).

SQUAREM extrapolates along a line through EM iterates; on the raw parameters the new point
could have negative weights or a covariance that is not positive definite. The families
therefore ``pack`` their parameters into a vector of unconstrained coordinates and
``unpack`` any such vector into valid parameters: probabilities as logs (re-normalised on
the way back), positive values as logs, covariances as Cholesky factors with a
log-diagonal. These are the shared pieces.

The mixtures (Gaussian, categorical, Bernoulli and Poisson) and the EM imputer are the
exception: their M-steps are ratios of expected counts or moments, so their EM maps are
nearer a line in the weights, probabilities, rates and covariances themselves, where SQUAREM's extrapolations go further
(their ``pack`` docstrings give the measurements); an extrapolated point outside the valid
set is refused by their ``unpack`` and SQUAREM takes the plain EM step instead.

Entries that are exactly 0 -- a forbidden transition, a symbol a state never emits, a rate
of 0 -- stay 0: EM never moves them off 0 (a zero probability gives zero expected counts),
so ``unpack`` takes them from its ``like`` argument, the iterate the vector came from. They
are packed as the log of the smallest normal double, finite as the contract asks.
"""

import numpy as np

LOG_FLOOR = float(np.log(np.finfo(np.float64).tiny))


def mixture_weights(w):
    """The mixtures' extrapolated weights (their own coordinates, not logs) divided by their
    sum; a ValueError where one is negative or none is positive: the vector is no model,
    and SQUAREM takes the plain EM step."""
    if np.any(w < 0) or not w.sum() > 0:
        raise ValueError("the extrapolated weights are negative")
    return w / w.sum()


def log_floor(a):
    """log(a), with entries <= 0 packed as :data:`LOG_FLOOR` (float64, a new array)."""
    a = np.asarray(a, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(a > 0, np.log(np.where(a > 0, a, 1.0)), LOG_FLOOR)


def positive(log_a, like):
    """exp(log_a), 0 where ``like`` is 0."""
    with np.errstate(over="ignore"):
        return np.where(np.asarray(like) == 0, 0.0, np.exp(log_a))


def simplex(log_p, like):
    """Probabilities along the last axis from their logs (up to a constant per row):
    exp(log_p - max), 0 where ``like`` is 0, each row divided by its sum (a row that is 0
    everywhere in ``like`` stays 0)."""
    zero = np.asarray(like) == 0
    log_p = np.where(zero, -np.inf, log_p)
    top = np.max(log_p, axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    p = np.exp(log_p - top)
    s = p.sum(axis=-1, keepdims=True)
    return p / np.where(s > 0, s, 1.0)


def pack_cholesky(L):
    """The lower triangles of a (K, D, D) stack of Cholesky factors, diagonal as logs,
    flattened."""
    D = L.shape[-1]
    rows, cols = np.tril_indices(D)
    tri = L[:, rows, cols]
    diag = rows == cols
    tri[:, diag] = np.log(tri[:, diag])
    return tri.ravel()


def unpack_cholesky(vec, K, D):
    """The (K, D, D) lower Cholesky factors packed by :func:`pack_cholesky`."""
    rows, cols = np.tril_indices(D)
    tri = np.array(vec, dtype=np.float64).reshape(K, len(rows))
    diag = rows == cols
    with np.errstate(over="ignore"):
        tri[:, diag] = np.exp(tri[:, diag])
    L = np.zeros((K, D, D))
    L[:, rows, cols] = tri
    return L


class Reader:
    """Consecutive pieces of a packed vector, in the order they were packed."""

    def __init__(self, vec):
        self._vec = np.asarray(vec, dtype=np.float64)
        self._at = 0

    def take(self, shape):
        """The next ``prod(shape)`` entries, as an array of ``shape`` (an int: 1-D)."""
        n = int(np.prod(shape))
        out = self._vec[self._at:self._at + n].reshape(shape)
        self._at += n
        return out

    def rest(self):
        """All the entries not read yet."""
        out = self._vec[self._at:]
        self._at = len(self._vec)
        return out

    def done(self):
        """Check that every entry was read (a family whose pack and unpack disagree)."""
        if self._at != len(self._vec):
            raise RuntimeError(f"the parameter vector has {len(self._vec)} entries; unpacking "
                               f"read {self._at}")
