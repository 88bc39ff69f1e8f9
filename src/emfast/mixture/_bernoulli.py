"""Bernoulli mixture family: D binary features, independent within a component. A
Bernoulli feature is a categorical item with two categories, so the E-step, the M-step
(the Beta prior is the two-category Dirichlet) and SQUAREM's vector are the categorical
family's (emfast.mixture._categorical) on the codes 2 d + x; what is Bernoulli's own lives
here: the (K, D) probabilities P(x = 1), the data check, the parameter count and sampling.
"""

import numpy as np

from emfast import _validation as V
from emfast.mixture._categorical import CategoricalFamily, CategoricalParams


def table(p):
    """The categorical (K, 2 D) table of P(x = 1) (K, D): columns 2 d, 2 d + 1 hold
    P(x_d = 0), P(x_d = 1)."""
    K, D = p.shape
    out = np.empty((K, 2 * D))
    out[:, 0::2] = 1.0 - p
    out[:, 1::2] = p
    return out


def probabilities(params):
    """P(x = 1) (K, D) of categorical parameters on the codes 2 d + x."""
    return np.ascontiguousarray(params.probs[:, 1::2])


def params_of(weights, p):
    K, D = p.shape
    return CategoricalParams(weights, table(p), np.arange(0, 2 * D + 1, 2, dtype=np.int64))


def n_parameters(n_components, n_features):
    """Free scalars: K - 1 weights and K D probabilities."""
    return n_components - 1 + n_components * n_features


def sample(weights, p, n_samples, rng):
    """(X (n, D) float64 of 0/1, labels): components in order, as GaussianMixture's."""
    counts = rng.multinomial(n_samples, weights / weights.sum())
    parts = [(rng.uniform(size=(int(n), p.shape[1])) < p[k]).astype(np.float64)
             for k, n in enumerate(counts)]
    return np.vstack(parts), np.repeat(np.arange(len(counts)), counts)


def check_binary(X, estimator, fitting, threshold=None):
    """Validate binary data (N, D) (bool, integer or float 0/1; NaN missing) and encode it
    for the kernels: codes (N, D) int32 = 2 d + x, -1 where missing. With a ``threshold``
    (BernoulliMixture's ``binarize``) any finite values are accepted and x = value >
    threshold. A feature missing in every row is an error when ``fitting``. The caller's X
    is not modified."""
    X = V.check_array(X, estimator=estimator, allow_nan=True)
    missing = np.isnan(X)
    if threshold is None:
        bad = ~(missing | (X == 0) | (X == 1))
        if bad.any():
            raise ValueError(f"{estimator}: X must hold 0 and 1 only (NaN for missing), or "
                             "set binarize=<threshold>; it has "
                             f"{np.unique(X[bad])[:5].tolist()}")
        ones = X == 1
    else:
        # False where missing (NaN); compared in float64 whatever X's dtype, or NumPy would
        # compare float32 X in float32 (0.1f > 0.1 is True, but not against 0.1 rounded to
        # float32); NumPy 1 does so even for a float64 scalar threshold
        ones = X.astype(np.float64, copy=False) > float(threshold)
    if fitting:
        never = np.flatnonzero(missing.all(axis=0))
        if len(never):
            raise ValueError(f"{estimator}: feature(s) {never[:10].tolist()} of X are missing "
                             "(NaN) in every row")
    codes = (ones + 2 * np.arange(X.shape[1])).astype(np.int32)
    codes[missing] = -1
    return codes


def frequency_encoding(codes, sample_weight):
    """The 0/1 rows (N, D) float64; a missing value is its feature's (weighted) mean over
    these rows (1/2 where none has it)."""
    D = codes.shape[1]
    observed = codes >= 0
    x = np.where(observed, codes - 2 * np.arange(D), 0).astype(np.float64)
    if not observed.all():
        w = np.ones(len(x)) if sample_weight is None else sample_weight
        answered = w @ observed      # 0: the feature is missing in all these rows
        mean = np.where(answered > 0, w @ x, 0.5) / np.where(answered > 0, answered, 1.0)
        x = np.where(observed, x, mean)
    return x


class BernoulliFamily(CategoricalFamily):
    """The categorical family on two categories per feature; its frequencies (starts and
    re-seeding) are P(x = 1)."""

    def __init__(self, n_components, n_features, prior, backend, weight_sum, encoded,
                 encoded_weight):
        super().__init__(n_components, np.full(n_features, 2), prior, backend, weight_sum,
                         encoded, encoded_weight)

    def _frequencies(self, params):
        return probabilities(params).copy()

    def _from_frequencies(self, weights, frequencies):
        return params_of(weights, np.clip(frequencies, 0.0, 1.0))
