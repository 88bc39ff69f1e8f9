"""Model selection for Gaussian mixtures: every candidate (number of components, covariance
type) fitted, concurrently, and scored by BIC, AIC and ICL.

The criteria follow scikit-learn's sign convention: **smaller is better**. With L the
log-likelihood of X at the fitted parameters, p the number of free parameters
(``GaussianMixture._n_parameters``: means, covariances, K - 1 weights) and N the number of
rows:

    BIC = -2 L + p ln N                        (GaussianMixture.bic)
    AIC = -2 L + 2 p                           (GaussianMixture.aic)
    ICL = BIC + 2 EN,  EN = -sum_n sum_k r_nk ln r_nk

ICL (Biernacki, Celeux & Govaert 2000) adds the entropy EN of the responsibilities r_nk to
BIC: it penalises components that overlap (a cluster modelled by several Gaussians), so it
prefers well-separated clusters where BIC prefers the best density.
"""

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from emfast import _validation as V
from emfast import kernels
from emfast._config import resolve_n_threads
from emfast.io import JSONMixin
from emfast.mixture import GaussianMixture
from emfast.mixture import _gaussian as G
from emfast.mixture._kmeans import KMeansMemo

__all__ = ["select_gaussian_mixture", "GaussianMixtureSelection", "CRITERIA"]

CRITERIA = ("bic", "aic", "icl")
# set by the selection for each candidate, so not accepted among the forwarded parameters
_RESERVED = ("n_components", "covariance_type", "random_state", "n_threads")
# what a candidate's fit may raise on its own data (too few rows for K, a covariance that
# cannot be factored...): such a candidate is reported in the table, not raised
_CANDIDATE_ERRORS = (ValueError, ArithmeticError, np.linalg.LinAlgError)
# relative cost of an EM iteration by covariance type (for the order the candidates start in)
_COST = {"full": 4, "tied": 3, "diag": 2, "spherical": 1}


class GaussianMixtureSelection(JSONMixin):
    """The result of :func:`select_gaussian_mixture` (``to_json`` saves it, emfast.io).

    Attributes
    ----------
    criterion : str
        The criterion the best candidate was chosen by ("bic", "aic" or "icl").
    table_ : numpy structured array, one row per candidate
        Fields ``n_components``, ``covariance_type``, ``log_likelihood`` (L, summed over
        the rows), ``n_parameters``, ``bic``, ``aic``, ``icl``, ``converged``, ``n_iter``
        and ``error`` (empty, or why the candidate could not be fitted; its numbers are
        then NaN / -1). ``pandas.DataFrame(sel.table_)`` makes a data frame of it.
    estimators_ : list
        The fitted GaussianMixture of each row (None where it failed).
    best_index_ : int
        The row of the best candidate: the smallest criterion (the first on ties).
    best_estimator_ : GaussianMixture
    best_params_ : dict
        ``{"n_components": K, "covariance_type": type}`` of the best candidate.
    random_state_ : int
        The seed every candidate was fitted with.
    """

    def __init__(self, criterion, table, estimators, random_state):
        self.criterion = criterion
        self.table_ = table
        self.estimators_ = estimators
        self.random_state_ = random_state
        scores = table[criterion]
        if np.all(np.isnan(scores)):
            reasons = "; ".join(f"K={r['n_components']} {r['covariance_type']}: {r['error']}"
                                for r in table[:5])
            raise ValueError(f"no candidate could be fitted ({reasons})")
        self.best_index_ = int(np.nanargmin(scores))
        self.best_estimator_ = estimators[self.best_index_]
        best = table[self.best_index_]
        self.best_params_ = {"n_components": int(best["n_components"]),
                             "covariance_type": str(best["covariance_type"])}

    def __repr__(self):
        return (f"GaussianMixtureSelection(criterion={self.criterion!r}, "
                f"best_params_={self.best_params_!r}, candidates={len(self.table_)})")


def select_gaussian_mixture(X, n_components=range(1, 16),
                            covariance_types=("full", "diag", "tied", "spherical"),
                            criterion="bic", *, random_state=None, n_threads=None, **params):
    """Fit a GaussianMixture for every number of components in ``n_components`` and every
    type in ``covariance_types``; keep the one with the smallest ``criterion``.

    Each candidate is exactly ``GaussianMixture(n_components=K, covariance_type=type,
    random_state=seed, n_threads=..., **params).fit(X)`` (the result does not depend on
    ``n_threads``), with one integer ``seed`` for all: ``random_state`` itself when it is
    an int, else drawn once from it (None: NumPy's global stream). ``params`` are any other
    GaussianMixture parameters (``tol``, ``max_iter``, ``n_init``, ``init_params``,
    ``reg_covar``, ``backend``...).

    The candidates run concurrently on Python threads (the kernels release the GIL), at most
    ``n_threads`` at a time (None: all usable CPUs), costliest first, each fit on its share
    of the threads; with ``init_params="kmeans"`` the candidates of one K share one k-means
    run (it depends on K, X and the seed only). A candidate whose fit fails (more components
    than rows, say) is a row of the table with the reason, not an exception; a ValueError
    is raised only when none could be fitted.

    Criteria (module docstring; scikit-learn's sign, smaller is better): "bic", "aic",
    "icl" = BIC + 2 x the entropy of the responsibilities. All three are in the table.

    Returns a :class:`GaussianMixtureSelection` (``best_estimator_``, ``table_``...).
    """
    V.check_option("criterion", criterion, CRITERIA)
    ks = _check_components(n_components)
    types = _check_types(covariance_types)
    bad = sorted(set(params) & set(_RESERVED))
    if bad:
        raise TypeError(f"{', '.join(bad)} cannot be passed in params: the selection sets "
                        "them (n_components and covariance_types are its own arguments)")
    user_threads, n_threads = n_threads, resolve_n_threads(n_threads)
    GaussianMixture(n_threads=n_threads, **params)._check_parameters()   # fail early
    X = V.check_array(X, min_samples=2, estimator="select_gaussian_mixture", allow_nan=True,
                      max_magnitude=V.MAX_GAUSSIAN_MAGNITUDE)
    seed = (int(random_state) if isinstance(random_state, (int, np.integer))
            and not isinstance(random_state, bool)
            else int(V.check_random_state(random_state).randint(np.iinfo(np.int32).max)))

    candidates = [(k, t) for k in ks for t in types]
    workers = min(n_threads, len(candidates))
    share = max(1, n_threads // workers)

    # the candidates of one K start from the same k-means (init_params="kmeans"): run once
    memo = KMeansMemo()

    def fit_one(candidate):
        k, t = candidate
        est = GaussianMixture(k, covariance_type=t, random_state=seed, n_threads=share,
                              **params)
        est._kmeans_memo = memo
        try:
            est.fit(X)
        except _CANDIDATE_ERRORS as exc:
            return None, f"{type(exc).__name__}: {exc}", None
        finally:
            del est._kmeans_memo
        return est, "", _criteria(est, X)

    # the costliest covariance type first, largest K first: long fits start at once, short
    # ones fill the gaps at the end, and the first fits of a type have different K (each
    # computes its k-means, none waits for another's)
    order = sorted(range(len(candidates)),
                   key=lambda i: (-_COST[candidates[i][1]], -candidates[i][0]))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        done = dict(zip(order, pool.map(fit_one, [candidates[i] for i in order])))
    results = [done[i] for i in range(len(candidates))]
    for est, _, _ in results:
        if est is not None:
            est.n_threads = user_threads     # the fitted models predict on all the threads
    table = _table(candidates, results)
    return GaussianMixtureSelection(criterion, table, [est for est, _, _ in results], seed)


def _check_components(n_components):
    try:
        ks = [n_components] if isinstance(n_components, (int, np.integer)) else list(
            n_components)
    except TypeError:
        raise TypeError("n_components must be an int or an iterable of ints, got "
                        f"{n_components!r}") from None
    if not ks:
        raise ValueError("n_components is empty: give at least one number of components")
    for k in ks:
        V.check_int("n_components", k, 1)
    if len(set(ks)) != len(ks):
        raise ValueError(f"n_components has repeated values: {ks}")
    return [int(k) for k in ks]


def _check_types(covariance_types):
    types = [covariance_types] if isinstance(covariance_types, str) else list(covariance_types)
    if not types:
        raise ValueError("covariance_types is empty")
    for t in types:
        V.check_option("covariance_type", t, kernels.COVARIANCE_TYPES)
    if len(set(types)) != len(types):
        raise ValueError(f"covariance_types has repeated values: {types}")
    return types


def _criteria(est, X):
    """(L, p, BIC, AIC, ICL) of a fitted candidate on X. One fused E-step pass at the
    fitted parameters gives L and the statistics whose expected log-joint leaves the
    entropy (no (N, K) array); with NaN, the responsibilities of the observed values."""
    if V.has_nan(X):
        resp, logp = est._log_prob(X, responsibilities=True)
        L = float(np.sum(logp))
        log_r = np.maximum(resp, 1e-300)           # 0 ln 0 = 0
        entropy = -float(np.vdot(resp, np.log(log_r, out=log_r)))
    else:
        params = est._params()
        stats = G.EStep(X, None, est.covariance_type, est.n_components, est.backend,
                        resolve_n_threads(est.n_threads), float(len(X)))(params)
        L = stats.loglik
        entropy = max(0.0, L - G.expected_log_joint(params, stats))   # (>= 0; rounding)
    p = est._n_parameters()
    bic = -2.0 * L + p * math.log(len(X))
    return L, p, bic, -2.0 * L + 2.0 * p, bic + 2.0 * entropy


def _table(candidates, results):
    errors = [err for _, err, _ in results]
    dtype = [("n_components", np.int64), ("covariance_type", "U9"),
             ("log_likelihood", np.float64), ("n_parameters", np.int64),
             ("bic", np.float64), ("aic", np.float64), ("icl", np.float64),
             ("converged", np.bool_), ("n_iter", np.int64),
             ("error", f"U{max(1, max(map(len, errors)))}")]
    table = np.zeros(len(candidates), dtype=dtype)
    for row, (k, t), (est, err, criteria) in zip(table, candidates, results):
        row["n_components"], row["covariance_type"], row["error"] = k, t, err
        if est is None:
            for name in ("log_likelihood", "bic", "aic", "icl"):
                row[name] = np.nan
            row["n_parameters"] = row["n_iter"] = -1
            continue
        (row["log_likelihood"], row["n_parameters"], row["bic"], row["aic"],
         row["icl"]) = criteria
        row["converged"], row["n_iter"] = est.converged_, est.n_iter_
    return table
