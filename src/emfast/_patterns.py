"""Missing-value patterns: rows grouped so that each pattern's conditional regression is
computed once per E-step pass, and the precision-matrix inputs of the missing-value kernel."""

import numpy as np


def pattern_order(mask):
    """A stable order of the rows that puts rows with the same missing pattern (rows of the
    boolean ``mask``, True = missing) next to each other, and the number of patterns."""
    packed = np.packbits(mask, axis=1)
    keys = np.ascontiguousarray(packed).view(np.dtype((np.void, packed.shape[1]))).ravel()
    _, inverse = np.unique(keys, return_inverse=True)
    return np.argsort(inverse.ravel(), kind="stable"), int(inverse.max(initial=-1)) + 1


def observed_rows(mask):
    """The rows with at least one observed value (``mask``: True = missing), in
    :func:`pattern_order`: rows missing everywhere carry no information for a fit."""
    order, _ = pattern_order(mask)
    return order[~mask[order].all(axis=1)]


def fill_with_column_means(X, rows=None):
    """X's rows ``rows`` (None: all) with each NaN replaced by its column's mean over X's
    observed values (accumulated in float64), in X's dtype: complete rows for what needs
    them (k-means starts)."""
    means = np.nanmean(X, axis=0, dtype=np.float64).astype(X.dtype)
    part = X if rows is None else np.ascontiguousarray(X[rows])
    return np.where(np.isnan(part), means, part)


def precision_inputs(covariances):
    """(precisions, log det of each) of a (K, D, D) stack of covariances, from their Cholesky
    factors; raises numpy.linalg.LinAlgError when one is not positive definite."""
    L = np.linalg.cholesky(covariances)
    eye = np.broadcast_to(np.eye(covariances.shape[-1]), covariances.shape)
    Linv = np.linalg.solve(L, eye)
    prec = np.ascontiguousarray(np.swapaxes(Linv, -1, -2) @ Linv)
    prec = 0.5 * (prec + np.swapaxes(prec, -1, -2))
    logdet = -2.0 * np.log(np.diagonal(L, axis1=-2, axis2=-1)).sum(axis=-1)
    return prec, np.ascontiguousarray(logdet)
