"""Public low-level kernels: Gaussian log-densities and the fused E-step statistics pass;
below them the HMM, k-means, missing-value, discrete-data and LDA kernels, each section with
its own conventions (the discrete ones: :func:`categorical_estep_stats` and
:func:`categorical_log_prob` for categorical and Bernoulli mixtures,
:func:`poisson_estep_stats` and :func:`poisson_log_prob` for Poisson mixtures).

These functions take plain NumPy arrays and are what emfast's own estimators use. Another
library can build its own EM on them: compute ``log_const`` for its parameters, call
:func:`gaussian_estep_stats` once per iteration, and turn the returned statistics into new
parameters.

Conventions (the same as scikit-learn's ``GaussianMixture``):

* ``X`` has shape (N, D), float32 or float64. Accumulation is always float64.
* ``means`` has shape (K, D).
* ``prec_chol`` is the Cholesky factor of the precision matrices, shaped by
  ``covariance_type``: "full" (K, D, D), "tied" (D, D), "diag" (K, D), "spherical" (K,).
  For full/tied it is upper triangular ``U`` with ``precision = U @ U.T``; the squared
  Mahalanobis distance of ``x`` to component ``k`` is ``||(x - means[k]) @ U_k||**2``.
  For diag/spherical it is ``1 / sqrt(variance)``.
* ``log_const`` (K,) holds everything that does not depend on ``x``:
  ``log(weight_k) + log|det U_k| - D/2 log(2 pi)`` (see :func:`log_normalizer`).
  The weighted log-probability of row n under component k is
  ``log_const[k] - 0.5 * mahalanobis_sq[n, k]``.

All functions release the GIL while they compute and use ``n_threads`` threads (None: all
CPUs this process may use). Results do not depend on the thread count: rows are processed in
fixed blocks whose partial sums are added in a fixed order.
"""

import math
from typing import NamedTuple, Optional

import numpy as np

from emfast import _hmm_logspace as LS
from emfast import _validation as V
from emfast._config import get_backend, resolve_n_threads
from emfast._patterns import precision_inputs
from emfast._threads import single_threaded_blas

__all__ = [
    "COVARIANCE_TYPES",
    "log_normalizer",
    "gaussian_log_prob",
    "gaussian_estep_stats",
    "gaussian_weighted_stats",
]

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
_COV_CODE = {name: code for code, name in enumerate(COVARIANCE_TYPES)}


def _cov_code(covariance_type):
    try:
        return _COV_CODE[covariance_type]
    except (KeyError, TypeError):
        raise ValueError(
            f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}"
        ) from None


def prec_chol_shape(covariance_type, n_components, n_features):
    """Shape of ``prec_chol`` for a covariance type; covariances, precisions and the
    second-moment statistic ``s2`` have the same shape."""
    return {
        "full": (n_components, n_features, n_features),
        "tied": (n_features, n_features),
        "diag": (n_components, n_features),
        "spherical": (n_components,),
    }[covariance_type]


def log_normalizer(prec_chol, covariance_type, n_features, log_weights=None):
    """``log_const`` for the kernels: log|det U_k| - D/2 log(2 pi) (+ log weights), shape (K,)."""
    _cov_code(covariance_type)
    prec_chol = np.asarray(prec_chol, dtype=np.float64)
    if covariance_type == "full":
        log_det = np.log(np.diagonal(prec_chol, axis1=1, axis2=2)).sum(axis=1)
    elif covariance_type == "tied":
        log_det = np.log(np.diagonal(prec_chol)).sum()
    elif covariance_type == "diag":
        log_det = np.log(prec_chol).sum(axis=1)
    else:
        log_det = n_features * np.log(prec_chol)
    out = log_det - 0.5 * n_features * math.log(2.0 * math.pi)
    if log_weights is not None:
        out = out + np.asarray(log_weights, dtype=np.float64)
    return np.array(out, dtype=np.float64, ndmin=1)


# Rows per thread below which another thread costs more in start-up and waiting than it
# saves (four 256-row blocks). Capping cannot change results: they never depend on it.
_MIN_ROWS_PER_THREAD = 1024


def _threads_for(n_rows, n_threads):
    return max(1, min(resolve_n_threads(n_threads), -(-n_rows // _MIN_ROWS_PER_THREAD)))


def _as_input(X):
    X = np.asarray(X)
    if X.dtype not in (np.float32, np.float64):
        raise TypeError(f"X must be float32 or float64, got dtype {X.dtype}")
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {X.shape}")
    if X.shape[1] == 0:
        raise ValueError(f"X has no features (shape {X.shape}); at least one is needed")
    return np.ascontiguousarray(X)


def _check_n_states(K, what):
    """K = 0 would leave the kernels' per-row log-sum-exp and forward recursions with
    nothing to normalise by: refused here, for every kernel alike."""
    if K == 0:
        raise ValueError(f"{what} has no components/states (K = 0); at least one is needed")


def _as_param(name, a, shape):
    a = np.ascontiguousarray(a, dtype=np.float64)
    if a.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {a.shape}")
    return a


def _check_inout(name, a, shape, dtype):
    """``a`` itself (it is updated in place): a writeable C-contiguous array of that shape
    and dtype."""
    if not isinstance(a, np.ndarray) or a.dtype != dtype or a.shape != tuple(shape):
        raise ValueError(f"{name} must be a {np.dtype(dtype).name} array of shape "
                         f"{tuple(shape)}")
    if not a.flags.c_contiguous or not a.flags.writeable:
        raise ValueError(f"{name} must be C-contiguous and writeable")
    return a


def _check_out(name, out, shape):
    """A new float64 output array, or the caller's ``out`` checked as :func:`_check_inout`."""
    if out is None:
        return np.empty(shape, dtype=np.float64)
    return _check_inout(name, out, shape, np.float64)


def _params(X, means, prec_chol, covariance_type, log_const):
    code = _cov_code(covariance_type)
    if not isinstance(means, np.ndarray) or means.ndim != 2:
        means = np.asarray(means, dtype=np.float64)
        if means.ndim != 2:
            raise ValueError(f"means must be 2-D (n_components, n_features), got {means.shape}")
    K, D = means.shape
    _check_n_states(K, "means")
    if X.shape[1] != D:
        raise ValueError(f"X has {X.shape[1]} features but means have {D}")
    means = _as_param("means", means, (K, D))
    prec_chol = _as_param("prec_chol", prec_chol, prec_chol_shape(covariance_type, K, D))
    try:  # a scalar (e.g. tied without weights) applies to every component
        log_const = np.broadcast_to(np.asarray(log_const, dtype=np.float64), (K,))
    except ValueError:
        raise ValueError(f"log_const must have shape ({K},), got {np.shape(log_const)}") from None
    log_const = np.ascontiguousarray(log_const)
    return code, K, D, means, prec_chol, log_const


def gaussian_log_prob(
    X,
    means,
    prec_chol,
    covariance_type,
    log_const,
    *,
    responsibilities=False,
    out=None,
    out_norm=None,
    norm=True,
    backend="auto",
    n_threads=None,
):
    """Per-row, per-component weighted log-probabilities or responsibilities.

    Parameters
    ----------
    X : (N, D) float32 or float64
    means, prec_chol, covariance_type, log_const : see the module docstring.
    responsibilities : bool
        False: ``out[n, k] = log_const[k] - 0.5 * maha[n, k]``.
        True: ``out[n, k]`` is the posterior probability of component k for row n.
    out : (N, K) float64, optional
        Written in place when given.
    out_norm : (N,) float64, optional
        Written in place when given: ``logsumexp_k`` of the weighted log-probabilities,
        i.e. the log-likelihood of each row.
    norm : bool, default True
        False: skip the per-row log-sum-exp (K exps and a log per row) and return None in
        its place, for callers that only need the log-probabilities (e.g. HMM emission
        log-likelihoods, or an argmax). ``out`` is bit-identical to ``norm=True``'s. Not
        allowed with ``responsibilities=True`` (they need the norm) or with ``out_norm``.

    Returns
    -------
    out, norm : the (N, K) array and the (N,) log-likelihoods (``out_norm`` if given;
    None when ``norm=False``).
    """
    if not norm:
        if responsibilities:
            raise ValueError("norm=False cannot be combined with responsibilities=True: "
                             "responsibilities need the per-row log-sum-exp")
        if out_norm is not None:
            raise ValueError("out_norm was given but norm=False: the norm is not computed")
    X = _as_input(X)
    code, K, D, means, prec_chol, log_const = _params(X, means, prec_chol, covariance_type, log_const)
    N = X.shape[0]
    out = _check_out("out", out, (N, K))
    # backend contract: out_norm of shape (0,) means "not wanted" (skips the log-sum-exp)
    norm_buf = _check_out("out_norm", out_norm, (N,)) if norm else np.empty(0)
    mod = get_backend(backend)
    mod.log_prob(X, log_const, means, prec_chol, code, out, norm_buf,
                 bool(responsibilities), _threads_for(N, n_threads))
    return out, (norm_buf if norm else None)


def gaussian_estep_stats(
    X,
    means,
    prec_chol,
    covariance_type,
    log_const,
    sample_weight=None,
    *,
    out=None,
    backend="auto",
    n_threads=None,
):
    """The fused E-step: responsibilities and weighted, centred sufficient statistics.

    One pass over X; no (N, K) array is formed. With ``r[n, k]`` the responsibilities
    and ``w[n]`` the sample weights (1 when ``sample_weight`` is None):

    * ``nk[k] = sum_n w[n] r[n, k]``, shape (K,)
    * ``s1[k] = sum_n w[n] r[n, k] (x_n - means[k])``, shape (K, D)
    * ``s2``: second moments about the current means, by covariance type:
      full (K, D, D) ``sum_n w r (x - mu_k)(x - mu_k)^T``; tied (D, D) the sum over k of
      those; diag (K, D) ``sum_n w r (x - mu_k)**2``; spherical (K,) ``sum_n w r ||x - mu_k||**2``
    * ``loglik = sum_n w[n] logsumexp_k(log_const[k] - 0.5 maha[n, k])``

    Parameters
    ----------
    out : tuple (nk, s1, s2) of float64 arrays, optional
        Overwritten in place when given.

    Returns
    -------
    loglik, nk, s1, s2
    """
    X = _as_input(X)
    code, K, D, means, prec_chol, log_const = _params(X, means, prec_chol, covariance_type, log_const)
    N = X.shape[0]
    if sample_weight is None:
        sw = np.empty(0, dtype=np.float64)
    else:
        sw = np.ascontiguousarray(sample_weight, dtype=np.float64)
        if sw.shape != (N,):
            raise ValueError(f"sample_weight must have shape ({N},), got {sw.shape}")
    if out is None:
        out = (None, None, None)
    nk = _check_out("nk", out[0], (K,))
    s1 = _check_out("s1", out[1], (K, D))
    s2 = _check_out("s2", out[2], prec_chol_shape(covariance_type, K, D))
    mod = get_backend(backend)
    loglik = mod.estep_stats(X, sw, log_const, means, prec_chol, code, nk, s1, s2,
                             _threads_for(N, n_threads))
    return float(loglik), nk, s1, s2




def gaussian_weighted_stats(X, resp, means, covariance_type, *, out=None, backend="auto",
                            n_threads=None):
    """Weighted, centred sufficient statistics for GIVEN responsibilities (no E-step).

    The statistics of :func:`gaussian_estep_stats` with ``w[n] r[n, k]`` replaced by
    ``resp[n, k]`` (any non-negative weights, e.g. HMM state posteriors): ``nk`` (K,),
    ``s1`` (K, D) and ``s2`` shaped by ``covariance_type``, all about ``means``. One pass
    over X; results do not depend on the thread count.

    Returns (nk, s1, s2).
    """
    X = _as_input(X)
    code = _cov_code(covariance_type)
    means = np.asarray(means, dtype=np.float64)
    if means.ndim != 2 or means.shape[1] != X.shape[1]:
        raise ValueError(f"means must have shape (K, {X.shape[1]}), got {means.shape}")
    K, D = means.shape
    _check_n_states(K, "means")
    means = np.ascontiguousarray(means)
    resp = _as_param("resp", resp, (X.shape[0], K))
    if out is None:
        out = (None, None, None)
    nk = _check_out("nk", out[0], (K,))
    s1 = _check_out("s1", out[1], (K, D))
    s2 = _check_out("s2", out[2], prec_chol_shape(covariance_type, K, D))
    get_backend(backend).weighted_stats(X, resp, means, code, nk, s1, s2,
                                        _threads_for(X.shape[0], n_threads))
    return nk, s1, s2


# ------------------------------------------------------------------------------------------
# Hidden Markov models: forward-backward, Viterbi and causal filtering over many sequences.
#
# All sequences travel as one concatenated array: ``log_emission`` (T, K) holds
# log p(x_t | z_t = k) for every frame of every sequence, and ``lengths`` (S,) the sequence
# lengths (sum = T). Threads split the sequences; per-sequence statistics are added in a
# fixed order (contiguous groups of sequences chosen from the lengths alone), so results do
# not depend on the thread count.
#
# Probabilities are scaled, never exponentiated raw: each frame's emission likelihoods are
# shifted by that frame's max before exp, alphas are normalised per frame, and the
# log-likelihood is accumulated from the scale factors and shifts. A sequence that is
# impossible under the model (every path has probability 0) gets log-likelihood -inf,
# posteriors of 0 and adds nothing to the counts; its filtered probabilities are kept up to
# the frame where it becomes impossible and are 0 from there on (the filter never looks
# ahead). "Impossible" is judged in scaled probability space: within a frame, a state whose
# emission log-likelihood is more than about 708 below the frame's best has likelihood 0
# there, so a sequence whose only allowed path runs through such states counts as
# impossible although its exact log-likelihood is finite.

__all__ += ["hmm_forward_backward", "hmm_gaussian_forward_backward",
            "hmm_categorical_forward_backward", "hmm_viterbi", "hmm_filter", "symbol_counts"]


def _hmm_offsets(lengths, T):
    """(S + 1,) int64 sequence offsets from lengths (None: one sequence of T frames)."""
    if T == 0:
        raise ValueError("there are no frames: an HMM needs at least one")
    return V.lengths_to_offsets(lengths, T)


def _hmm_inputs(log_emission, lengths, startprob, transmat):
    le = np.asarray(log_emission)
    if le.ndim != 2 or le.dtype != np.float64:
        le = np.asarray(le, dtype=np.float64)
        if le.ndim != 2:
            raise ValueError(f"log_emission must be 2-D (n_frames, n_states), got shape {le.shape}")
    le = np.ascontiguousarray(le)
    T, K = le.shape
    _check_n_states(K, "log_emission")
    offsets = _hmm_offsets(lengths, T)
    startprob = _as_param("startprob", startprob, (K,))
    transmat = _as_param("transmat", transmat, (K, K))
    return le, offsets, startprob, transmat


def hmm_forward_backward(log_emission, lengths, startprob, transmat, *, posteriors=True,
                         out=None, backend="auto", n_threads=None):
    """Scaled forward-backward over all sequences at once (a sequence whose scaling could
    lose a path, e.g. with zeros in transmat and emissions far apart, is recomputed in log
    space: the results are those of the log-space recursions).

    Parameters
    ----------
    log_emission : (T, K) float64, log p(x_t | state k) for every frame.
    lengths : (S,) ints summing to T, or None for one sequence.
    startprob : (K,) initial state distribution; transmat : (K, K) rows sum to 1.
    posteriors : bool, whether to return the (T, K) state posteriors.
    out : (T, K) float64 C-contiguous array, optional; the posteriors are written into it
        (an EM loop reuses one array instead of a fresh one per iteration).

    Returns
    -------
    loglik : float, total log-likelihood of all sequences.
    seq_loglik : (S,) per-sequence log-likelihoods.
    post : (T, K) posteriors p(z_t = k | x of its sequence), or None.
    start_counts : (K,) sum over sequences of the first frame's posteriors.
    trans_counts : (K, K) expected transition counts, sum_t p(z_t = i, z_t+1 = j | x).
    """
    le, offsets, sp, tm = _hmm_inputs(log_emission, lengths, startprob, transmat)
    T, K = le.shape
    S = len(offsets) - 1
    if out is not None and not posteriors:
        raise ValueError("out is for the posteriors, but posteriors=False")
    post = _check_out("out", out, (T, K)) if posteriors else np.empty((0, K))
    seq_ll = np.empty(S)
    start_counts = np.empty(K)
    trans_counts = np.empty((K, K))
    mod = get_backend(backend, "hmm")
    ll = mod.forward_backward(le, offsets, sp, tm, post, start_counts, trans_counts, seq_ll,
                              resolve_n_threads(n_threads))
    for s, rows, gamma in _redo_flagged(lambda rows: le[rows], offsets, sp, tm, seq_ll,
                                        start_counts, trans_counts):
        ll += seq_ll[s]
        if posteriors:
            post[rows] = gamma
    return float(ll), seq_ll, (post if posteriors else None), start_counts, trans_counts


def _redo_flagged(log_emission_of, offsets, sp, tm, seq_ll, start_counts, trans_counts):
    """The sequences a forward-backward kernel flagged (seq_ll = +inf: its scaled
    arithmetic may have lost a path, see emfast._hmm_logspace), recomputed exactly in log
    space, in sequence order: seq_ll[s] set, the start and transition counts added to.
    log_emission_of(rows) gives a sequence's (T, K) log-emissions. Yields (s, rows, gamma)
    for the caller to add its log-likelihood and emission statistics in the same order."""
    for s in LS.flagged(seq_ll):
        rows = slice(offsets[s], offsets[s + 1])
        seq_ll[s], gamma, xi = LS.forward_backward(log_emission_of(rows), sp, tm)
        start_counts += gamma[0]
        trans_counts += xi
        yield s, rows, gamma


def hmm_gaussian_forward_backward(X, lengths, startprob, transmat, means, prec_chol,
                                  covariance_type, log_const, *, backend="auto",
                                  n_threads=None):
    """Forward-backward of a Gaussian HMM and its emission statistics, in one call.

    The same numbers as :func:`gaussian_log_prob` (``norm=False``, the log-densities are
    the log-emissions) followed by :func:`hmm_forward_backward` and
    :func:`gaussian_weighted_stats` with the posteriors as weights, up to rounding. For
    "diag" and "spherical" the densities are computed inside the forward-backward and the
    statistics summed in its backward pass, so no (T, K) array is made and X is read
    while it is in cache; "full" and "tied" run the three kernels in turn.

    Parameters
    ----------
    X : (T, D) float32 or float64, the frames of all sequences.
    lengths, startprob, transmat : as :func:`hmm_forward_backward`.
    means, prec_chol, covariance_type, log_const : the emission densities, as
        :func:`gaussian_log_prob`; ``means`` is also the centre of the statistics.

    Returns
    -------
    loglik, seq_loglik, start_counts, trans_counts : as :func:`hmm_forward_backward`.
    nk, s1, s2 : as :func:`gaussian_weighted_stats` (``s2`` shaped by ``covariance_type``).
    """
    X = _as_input(X)
    code, K, D, means, prec_chol, log_const = _params(X, means, prec_chol, covariance_type,
                                                      log_const)
    offsets = _hmm_offsets(lengths, X.shape[0])
    sp = _as_param("startprob", startprob, (K,))
    tm = _as_param("transmat", transmat, (K, K))
    if covariance_type in ("full", "tied"):
        le, _ = gaussian_log_prob(X, means, prec_chol, covariance_type, log_const, norm=False,
                                  backend=backend, n_threads=n_threads)
        ll, seq_ll, post, start, trans = hmm_forward_backward(
            le, np.diff(offsets), sp, tm, backend=backend, n_threads=n_threads)
        nk, s1, s2 = gaussian_weighted_stats(X, post, means, covariance_type, backend=backend,
                                             n_threads=n_threads)
        return ll, seq_ll, start, trans, nk, s1, s2
    out = _gaussian_forward_backward(X, offsets, sp, tm, means, prec_chol, covariance_type,
                                     log_const, backend, n_threads)
    if covariance_type == "spherical":
        return out[:6] + (out[6].sum(axis=1),)
    return out


def _gaussian_forward_backward(X, offsets, startprob, transmat, means, prec_chol,
                               covariance_type, log_const, backend, n_threads):
    """hmm_gaussian_forward_backward for "diag" or "spherical" on validated inputs (offsets
    (S + 1,) int64, the parameters float64 C-contiguous of matching shapes); s2 is always
    per feature (K, D), the form a spherical M-step averages. The HMM estimators call it
    with offsets made once per fit."""
    K, D = means.shape
    prec = prec_chol if covariance_type == "diag" else np.repeat(prec_chol[:, None], D, axis=1)
    S = len(offsets) - 1
    seq_ll, start, trans = np.empty(S), np.empty(K), np.empty((K, K))
    nk, s1, s2 = np.empty(K), np.empty((K, D)), np.empty((K, D))
    X64 = np.ascontiguousarray(X, dtype=np.float64)
    ll = get_backend(backend, "hmm").gaussian_forward_backward(
        X64, offsets, startprob, transmat, means, np.ascontiguousarray(prec), log_const, start,
        trans, seq_ll, nk, s1, s2, resolve_n_threads(n_threads))

    def log_emission_of(rows):           # the kernel's densities, in NumPy
        return log_const - 0.5 * (((X64[rows, None, :] - means) * prec) ** 2).sum(axis=2)

    for s, rows, gamma in _redo_flagged(log_emission_of, offsets, startprob, transmat, seq_ll,
                                        start, trans):
        ll += seq_ll[s]
        diff = X64[rows, None, :] - means                  # (T, K, D) about the means
        nk += gamma.sum(axis=0)
        s1 += np.einsum("tk,tkd->kd", gamma, diff)
        s2 += np.einsum("tk,tkd->kd", gamma, diff * diff)
    return float(ll), seq_ll, start, trans, nk, s1, s2


def hmm_categorical_forward_backward(symbols, lengths, startprob, transmat, emissionprob, *,
                                     backend="auto", n_threads=None):
    """Forward-backward of a categorical HMM and its symbol counts, in one call.

    The same numbers as :func:`hmm_forward_backward` on the log-emissions
    ``log(emissionprob[:, symbols]).T`` followed by :func:`symbol_counts` with the
    posteriors as weights, up to rounding, without making either (T, K) array: the kernel
    reads the emission probabilities of each frame's symbol itself (the Cython backend in
    probability space: a frame where every state's probability of its symbol is below
    about 1e-300 counts as impossible) and sums the counts in its backward pass.

    Parameters
    ----------
    symbols : (T,) integers in [0, F), the frames of all sequences.
    lengths, startprob, transmat : as :func:`hmm_forward_backward`.
    emissionprob : (K, F), rows sum to 1: P(symbol f | state k).

    Returns
    -------
    loglik, seq_loglik, start_counts, trans_counts : as :func:`hmm_forward_backward`.
    counts : (F, K), ``counts[f, k]`` = sum of the posteriors of state k over the frames
        whose symbol is f (:func:`symbol_counts`).
    """
    ep = np.asarray(emissionprob, dtype=np.float64)
    if ep.ndim != 2:
        raise ValueError(f"emissionprob must be 2-D (n_states, n_symbols), got shape {ep.shape}")
    K, F = ep.shape
    _check_n_states(K, "emissionprob")
    if F == 0:
        raise ValueError("emissionprob has no symbols (shape (K, 0)); at least one is needed")
    sym = _check_symbols(symbols, F)
    return _categorical_forward_backward(sym, _hmm_offsets(lengths, len(sym)),
                                         _as_param("startprob", startprob, (K,)),
                                         _as_param("transmat", transmat, (K, K)),
                                         np.ascontiguousarray(ep), backend, n_threads)


def _categorical_forward_backward(sym, offsets, startprob, transmat, emissionprob, backend,
                                  n_threads):
    """hmm_categorical_forward_backward on validated inputs: sym int64 in [0, F), offsets
    (S + 1,) int64, the rest float64 C-contiguous of matching shapes (the HMM estimators
    check their symbols once per fit, not once per iteration)."""
    K, F = emissionprob.shape
    S = len(offsets) - 1
    seq_ll, start, trans, counts = np.empty(S), np.empty(K), np.empty((K, K)), np.empty((F, K))
    ll = get_backend(backend, "hmm").categorical_forward_backward(
        sym, offsets, startprob, transmat, emissionprob, start, trans, seq_ll, counts,
        resolve_n_threads(n_threads))

    def log_emission_of(rows):
        with np.errstate(divide="ignore"):
            return np.log(emissionprob.T[sym[rows]])

    for s, rows, gamma in _redo_flagged(log_emission_of, offsets, startprob, transmat, seq_ll,
                                        start, trans):
        ll += seq_ll[s]
        np.add.at(counts, sym[rows], gamma)
    return float(ll), seq_ll, start, trans, counts


def hmm_viterbi(log_emission, lengths, startprob, transmat, *, backend="auto", n_threads=None):
    """Most probable state path of every sequence, in log space.

    Returns (total log-probability of the best paths, path (T,) int64, (S,) per-sequence
    log-probabilities). Ties go to the lowest state index.
    """
    le, offsets, sp, tm = _hmm_inputs(log_emission, lengths, startprob, transmat)
    T, K = le.shape
    path = np.empty(T, dtype=np.int64)
    seq_lp = np.empty(len(offsets) - 1)
    mod = get_backend(backend, "hmm")
    with np.errstate(divide="ignore"):
        lsp, ltm = np.log(sp), np.log(tm)
    lp = mod.viterbi(le, offsets, lsp, np.ascontiguousarray(ltm), path, seq_lp,
                     resolve_n_threads(n_threads))
    return float(lp), path, seq_lp


def hmm_filter(log_emission, lengths, startprob, transmat, *, filtered=True, backend="auto",
               n_threads=None):
    """Causal (online) state probabilities p(z_t | x_1..t) by the scaled forward pass.

    Returns (total log-likelihood, (T, K) filtered probabilities or None, (S,) per-sequence
    log-likelihoods). With ``filtered=False`` only the log-likelihoods are computed (scoring).
    """
    le, offsets, sp, tm = _hmm_inputs(log_emission, lengths, startprob, transmat)
    T, K = le.shape
    out = np.empty((T if filtered else 0, K))
    seq_ll = np.empty(len(offsets) - 1)
    mod = get_backend(backend, "hmm")
    ll = mod.forward_filter(le, offsets, sp, tm, out, seq_ll, resolve_n_threads(n_threads))
    for s in LS.flagged(seq_ll):         # see _redo_flagged
        rows = slice(offsets[s], offsets[s + 1])
        seq_ll[s], probs = LS.filtered(le[rows], sp, tm)
        ll += seq_ll[s]
        if filtered:
            out[rows] = probs
    return float(ll), (out if filtered else None), seq_ll


def _check_symbols(symbols, n_symbols):
    """symbols as a C-contiguous int64 array, ValueError unless 1-D integers in
    [0, n_symbols)."""
    sym = np.asarray(symbols)
    if sym.ndim != 1 or sym.dtype.kind not in "iu":
        raise ValueError(f"symbols must be a 1-D integer array, got dtype {sym.dtype} and "
                         f"shape {sym.shape}")
    if sym.size and (sym.min() < 0 or sym.max() >= n_symbols):
        bad = int(np.flatnonzero((sym < 0) | (sym >= n_symbols))[0])
        raise ValueError(f"symbols must lie in [0, {n_symbols}): symbols[{bad}] = {sym[bad]}")
    return np.ascontiguousarray(sym, dtype=np.int64)


def symbol_counts(symbols, weights, n_symbols, *, out=None, backend="auto", n_threads=None):
    """Weighted counts of discrete symbols: ``out[f, k] = sum of weights[t, k] over the t
    with symbols[t] == f`` (the categorical emission statistics, weighted by the state
    posteriors). One pass over the rows; results do not depend on the thread count.

    Parameters
    ----------
    symbols : (T,) integers in [0, n_symbols).
    weights : (T, K) float64.
    n_symbols : int, F.
    out : (F, K) float64 C-contiguous array, optional.

    Returns the (F, K) counts.
    """
    n_symbols = V.check_int("n_symbols", n_symbols, 1)
    sym = _check_symbols(symbols, n_symbols)
    weights = np.asarray(weights)
    if weights.ndim != 2:
        raise ValueError(f"weights must be 2-D (T, K), got shape {weights.shape}")
    _check_n_states(weights.shape[1], "weights")
    w = _as_param("weights", weights, (len(sym), weights.shape[1]))
    return _symbol_counts(sym, w, _check_out("out", out, (n_symbols, w.shape[1])), backend,
                          n_threads)


def _symbol_counts(sym, w, out, backend, n_threads):
    """symbol_counts on validated inputs (sym int64 in [0, F), w float64 (T, K), out
    (F, K)): the HMM estimators check their symbols once per fit, not once per iteration."""
    get_backend(backend, "hmm").symbol_counts(sym, w, out, _threads_for(len(sym), n_threads))
    return out


# ------------------------------------------------------------------------------------------
# k-means: k-means++ seeding, Lloyd iterations and the Gaussian statistics of a hard
# assignment (a mixture's initial statistics).
#
# ``X`` (N, D) float32 or float64 and ``sample_weight`` (N,) (None: all 1) as above; all
# arithmetic is float64. Squared distances are ||x - c||^2; for D below about 16 they are
# summed directly, from there on computed as ||x||^2 - 2 x.c + ||c||^2 (clamped at 0) with
# BLAS or, for a few centres, a multiply-add kernel, so they may differ from the direct sum
# by rounding. A row is assigned to its nearest centre, ties to the lowest index. Rows travel
# in 256-row blocks whose partial sums are added in a fixed order: results do not depend on
# the thread count. No (N, K) array is formed.

__all__ += ["kmeans_plusplus_update", "kmeans_plusplus_potentials", "kmeans_lloyd_step",
            "kmeans_label_stats"]

KMEANS_BLOCK = 256
_NO_NORMS = np.empty(0)   # the k-means++ kernels' row norms: computed per pass


def _kmeans_inputs(X, sample_weight, min_features=1):
    """(X, sw) ready for the k-means kernels; sw of shape (0,) means all weights 1."""
    X = _as_input(X)
    N, D = X.shape
    if D < min_features:
        raise ValueError(f"X must have at least {min_features} feature(s), got shape {X.shape}")
    return X, _weights_input(sample_weight, N)


def _weights_input(sample_weight, N):
    """sample_weight as the kernels take it, unscaled: (N,) float64 finite and non-negative,
    or (0,) for all weights 1 (None)."""
    if sample_weight is None:
        return np.empty(0)
    sw = np.ascontiguousarray(sample_weight, dtype=np.float64)
    if sw.shape != (N,):
        raise ValueError(f"sample_weight must have shape ({N},), got {sw.shape}")
    if not np.all(np.isfinite(sw)) or np.any(sw < 0):
        raise ValueError("sample_weight must be finite and non-negative")
    return sw


def _centre_array(name, centres, D):
    c = np.asarray(centres, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] != D or c.shape[0] < 1:
        raise ValueError(f"{name} must have shape (n, {D}) with n >= 1, got {c.shape}")
    if not np.all(np.isfinite(c)):
        raise ValueError(f"{name} must be finite")
    return np.ascontiguousarray(c)


def kmeans_plusplus_update(X, centre, closest, sample_weight=None, *, block_pot=None,
                           backend="auto", n_threads=None):
    """Fold a newly chosen k-means++ centre into every row's distance to its nearest centre.

    Parameters
    ----------
    X : (N, D) float32 or float64
    centre : (D,) the centre just chosen.
    closest : (N,) float64, updated in place: ``closest[n] = min(closest[n],
        ||x_n - centre||^2)``; fill it with ``inf`` before the first centre.
    sample_weight : (N,), optional
    block_pot : (ceil(N / 256),) float64, optional, written in place.

    Returns
    -------
    closest, block_pot : ``block_pot[j]`` is the sum of ``w_n * closest[n]`` over rows
        ``256 j ... 256 j + 255`` (summed in row order). Their cumulative sum locates the
        block of a k-means++ draw without a cumulative sum over all N rows.
    """
    X, sw = _kmeans_inputs(X, sample_weight)
    N, D = X.shape
    centre = _centre_array("centre", np.reshape(centre, (1, -1)), D)[0]
    closest = _check_inout("closest", closest, (N,), np.float64)
    block_pot = _check_out("block_pot", block_pot, (-(-N // KMEANS_BLOCK),))
    get_backend(backend, "kmeans").plusplus_update(X, sw, _NO_NORMS, centre, closest,
                                                   block_pot, _threads_for(N, n_threads))
    return closest, block_pot


def kmeans_plusplus_potentials(X, closest, candidates, sample_weight=None, *, out=None,
                               backend="auto", n_threads=None):
    """The potential each k-means++ candidate would leave: ``pots[t] = sum_n w_n
    min(closest[n], ||x_n - candidates[t]||^2)``, shape (T,)."""
    X, sw = _kmeans_inputs(X, sample_weight)
    N, D = X.shape
    candidates = _centre_array("candidates", candidates, D)
    closest = _as_param("closest", closest, (N,))
    pots = _check_out("out", out, (len(candidates),))
    get_backend(backend, "kmeans").plusplus_potentials(X, sw, _NO_NORMS, closest, candidates,
                                                       pots, _threads_for(N, n_threads))
    return pots


def kmeans_lloyd_step(X, centres, labels, sample_weight=None, *, out=None, backend="auto",
                      n_threads=None):
    """One Lloyd iteration in one pass: assign every row to its nearest centre and sum the
    new clusters.

    Parameters
    ----------
    centres : (K, D)
    labels : (N,) int64, updated in place: the previous labels in (any values, e.g. -1),
        the index of each row's nearest centre out.
    out : tuple (counts (K,), sums (K, D)) of float64 arrays, optional.

    Returns
    -------
    n_changed : int, how many labels changed.
    inertia : float, ``sum_n w_n min_k ||x_n - centres[k]||^2``.
    labels, counts, sums : ``counts[k]`` the weight and ``sums[k]`` the weighted sum of the
        rows now labelled k (the new centre is ``sums[k] / counts[k]``).
    """
    X, sw = _kmeans_inputs(X, sample_weight)
    N, D = X.shape
    centres = _centre_array("centres", centres, D)
    K = len(centres)
    labels = _check_inout("labels", labels, (N,), np.int64)
    if out is None:
        out = (None, None)
    counts = _check_out("counts", out[0], (K,))
    sums = _check_out("sums", out[1], (K, D))
    changed, inertia = get_backend(backend, "kmeans").lloyd_step(
        X, sw, centres, labels, counts, sums, _threads_for(N, n_threads))
    return int(changed), float(inertia), labels, counts, sums


def kmeans_label_stats(X, centres, covariance_type, labels=None, sample_weight=None, *,
                       out=None, backend="auto", n_threads=None):
    """Gaussian sufficient statistics of a hard assignment, about ``centres``.

    The statistics of :func:`gaussian_estep_stats` with ``r[n, k] = 1`` for the cluster k
    of row n and 0 otherwise, centred on ``centres`` (K, D) instead of means:
    ``nk`` (K,), ``s1`` (K, D), ``s2`` shaped by ``covariance_type``.

    Parameters
    ----------
    labels : (N,) int64, optional. Given: the cluster of each row (a label outside [0, K)
        puts the row in no cluster), not modified. None: each row goes to its nearest centre.
    out : tuple (nk, s1, s2) of float64 arrays, optional.

    Returns
    -------
    labels, nk, s1, s2 : labels as used (a new array when None was given).
    """
    X, sw = _kmeans_inputs(X, sample_weight)
    N, D = X.shape
    code = _cov_code(covariance_type)
    centres = _centre_array("centres", centres, D)
    K = len(centres)
    assign = labels is None
    if assign:
        labels = np.empty(N, dtype=np.int64)
    else:
        lab = np.asarray(labels)
        if lab.shape != (N,) or lab.dtype.kind not in "iu":
            raise ValueError(f"labels must be a 1-D integer array of shape ({N},), got "
                             f"dtype {lab.dtype} and shape {lab.shape}")
        if lab.dtype.kind == "u" and lab.size and int(lab.max()) > np.iinfo(np.int64).max:
            raise ValueError("labels must be below 2**63")
        labels = np.array(lab, dtype=np.int64)   # a copy: the kernel may write it
    if out is None:
        out = (None, None, None)
    nk = _check_out("nk", out[0], (K,))
    s1 = _check_out("s1", out[1], (K, D))
    s2 = _check_out("s2", out[2], prec_chol_shape(covariance_type, K, D))
    get_backend(backend, "kmeans").label_stats(X, sw, centres, code, labels, assign, nk, s1,
                                               s2, _threads_for(N, n_threads))
    return labels, nk, s1, s2


# ------------------------------------------------------------------------------------------
# Gaussian models with missing values (NaN in X).

__all__ += ["missing_estep"]


def missing_estep(X, means, covariances, weights=None, sample_weight=None, *, filled=False,
                  logp=False, resp=False, noise=None, backend="auto", n_threads=None):
    """The E-step of a full-covariance Gaussian mixture (K = 1: one multivariate normal) on
    data with missing values: NaN in X marks a missing value.

    Each row counts through the marginal density of its observed coordinates O; its missing
    ones M are replaced by their conditional means under each component k,
    ``xhat_k,M = mu_k,M + Sigma_k,MO Sigma_k,OO^-1 (x_O - mu_k,O)``, and the second moments
    gain their conditional covariance ``C_k = Sigma_k,MM - Sigma_k,MO Sigma_k,OO^-1 Sigma_k,OM``.
    With responsibilities ``r[n, k]`` from those marginal densities and weights ``w[n]``:

    * ``nk[k] = sum_n w r``, ``s1[k] = sum_n w r (xhat_k - mu_k)`` (K, D),
    * ``s2[k] = sum_n w r ((xhat_k - mu_k)(xhat_k - mu_k)^T + C_k)`` (K, D, D),
    * ``loglik = sum_n w log p(x_O,n)`` (each row's constant counts only its observed
      coordinates; a row missing everywhere adds 0).

    Rows are best passed grouped by missing pattern: a pattern's factorisation is reused by
    the rows that follow it (any order gives the same statistics up to rounding).

    Parameters
    ----------
    X : (N, D) float32 or float64, NaN = missing; infinity is an error
    means : (K, D); covariances : (K, D, D) symmetric positive definite
    weights : (K,) mixing weights (default: 1 when K = 1)
    filled : bool
        Also return X with its missing values replaced by ``sum_k r_k xhat_k`` (N, D).
    logp : bool
        Also return each row's ``log p(x_O)`` (N,).
    resp : bool
        Also return the responsibilities ``r`` (N, K).
    noise : (N, D) standard normal draws, K = 1 only
        With ``filled``, each row's missing values are drawn from their conditional normal
        distribution instead: ``xhat_M + L^-T z_M`` with ``L L^T = Sigma^-1_MM``.

    Returns
    -------
    loglik, nk, s1, s2[, filled][, logp][, resp]
    """
    X = V.check_array(X, name="X", min_samples=0, allow_nan=True)
    N, D = X.shape
    means = np.ascontiguousarray(means, dtype=np.float64)
    if means.ndim != 2 or means.shape[1] != D:
        raise ValueError(f"means must have shape (K, {D}), got {means.shape}")
    K = means.shape[0]
    _check_n_states(K, "means")
    cov = _as_param("covariances", covariances, (K, D, D))
    if not np.all(np.isfinite(means)) or not np.all(np.isfinite(cov)):
        raise ValueError("means and covariances must be finite")
    for k in range(K):
        V.check_spd(cov[k], f"covariances[{k}]")
    if weights is None:
        if K != 1:
            raise ValueError("weights are needed when there is more than one component")
        weights = np.ones(1)
    weights = V.check_probabilities("weights", weights, (K,))
    sw = _weights_input(sample_weight, N)
    z = np.empty((0, 0))
    if noise is not None:
        if K != 1 or not filled:
            raise ValueError("noise draws need one component (K = 1) and filled=True")
        z = _as_param("noise", noise, (N, D))
    prec, log_det = precision_inputs(cov)
    nk, s1, s2 = np.empty(K), np.empty((K, D)), np.empty((K, D, D))
    out = np.empty((N, D)) if filled else np.empty((0, 0))
    lp = np.empty(N) if logp else np.empty(0)
    rs = np.empty((N, K)) if resp else np.empty((0, 0))
    with np.errstate(divide="ignore"):
        logw = np.log(weights)
    with single_threaded_blas():
        ll = get_backend(backend, "missing").missing_estep(
            X, sw, logw, means, prec, log_det, nk, s1, s2, out, lp, rs, z,
            _threads_for(N, n_threads))
    return ((float(ll), nk, s1, s2) + ((out,) if filled else ()) + ((lp,) if logp else ())
            + ((rs,) if resp else ()))


# ------------------------------------------------------------------------------------------
# Discrete data: categorical (Bernoulli: two categories) and Poisson mixtures.
#
# Categorical: J items, item j with C_j categories. ``codes`` (N, J) holds each row's
# categories as GLOBAL codes: item j's category c is code offset_j + c, offset_j = C_0 + ...
# + C_{j-1}, so one (C, K) table ``log_prob_T`` (C = sum_j C_j; row offset_j + c holds
# log P(item j = c | class k)) serves all items; -1 marks a missing value, which adds
# nothing. A Bernoulli mixture over D binary features is the case C_j = 2: code = 2 d + x.
# Poisson: ``X`` (N, D) counts, ``log_lam`` (K, D) the log-rates (-inf: rate 0, under which
# only a count of 0 is possible).
#
# Both: ``log_weights`` (K,) the log mixing weights (-inf: an empty class). A row that is
# impossible under every class (log-probability -inf under all of them) adds -inf to the
# log-likelihood and nothing to the statistics; a row of weight 0 adds nothing at all. Rows
# travel in 256-row blocks whose partial sums are added in a fixed order: results do not
# depend on the thread count. No (N, K) array is formed by the E-steps.

__all__ += ["categorical_estep_stats", "categorical_log_prob", "poisson_estep_stats",
            "poisson_log_prob"]

# codes are int32 and the kernels index with C int dimensions
_MAX_DIM = np.iinfo(np.int32).max
_MAX_COUNT = 2.0 ** 53


def _check_dims(**dims):
    for name, n in dims.items():
        if n == 0:
            raise ValueError(f"{name} is 0; at least one is needed")
        if n > _MAX_DIM:
            raise ValueError(f"{name} = {n} is more than the kernels index ({_MAX_DIM})")


def _log_table(name, a, ndim):
    """A float64 C-contiguous copy-if-needed of log-probabilities: ``ndim``-D, no NaN and no
    +inf (-inf, a probability or rate of 0, is allowed)."""
    a = np.asarray(a)
    if a.dtype.kind not in "fiu" or a.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array of real numbers, got dtype {a.dtype} "
                         f"and shape {a.shape}")
    a = np.ascontiguousarray(a, dtype=np.float64)
    if np.isnan(a).any() or np.isposinf(a).any():
        raise ValueError(f"{name} must not hold NaN or +inf (-inf is allowed)")
    return a


def _check_codes(codes, n_codes):
    """codes as the kernels take them: (N, J) int32 C-contiguous, N and J >= 1, values in
    [-1, n_codes) (checked before the cast, which would wrap large values)."""
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.dtype.kind not in "iu":
        raise ValueError(f"codes must be a 2-D integer array (n_samples, n_items), got dtype "
                         f"{codes.dtype} and shape {codes.shape}")
    _check_dims(**{"the number of rows of codes": codes.shape[0],
                   "the number of items (columns of codes)": codes.shape[1]})
    bad = (codes < -1) | (codes >= n_codes)
    if bad.any():
        n, j = np.argwhere(bad)[0]
        raise ValueError(f"codes must lie in [-1, {n_codes}) (-1: missing): codes[{n}, {j}] = "
                         f"{codes[n, j]}")
    return np.ascontiguousarray(codes, dtype=np.int32)


def _class_log_weights(log_weights, K, table):
    """log_weights checked against the K classes of ``table`` (checked too: K >= 1)."""
    _check_n_states(K, table)
    _check_dims(K=K)
    lw = _log_table("log_weights", log_weights, 1)
    if lw.shape != (K,):
        raise ValueError(f"log_weights must have shape ({K},), got {lw.shape}")
    return lw


def _categorical_inputs(codes, log_prob_T, log_weights):
    lpT = _log_table("log_prob_T", log_prob_T, 2)
    C, K = lpT.shape
    _check_dims(**{"the number of categories (rows of log_prob_T)": C})
    lw = _class_log_weights(log_weights, K, "log_prob_T")
    return _check_codes(codes, C), lpT, lw


def categorical_log_prob(codes, log_prob_T, log_weights, *, out=None, backend="auto",
                         n_threads=None):
    """Per-row, per-class log-probabilities of categorical data (see the section's notes).

    Parameters
    ----------
    codes : (N, J) integers in [-1, C), global category codes; -1 = missing.
    log_prob_T : (C, K) log P(category | class); -inf allowed, NaN and +inf not.
    log_weights : (K,) log mixing weights; -inf allowed.
    out : (N, K) float64 C-contiguous array, optional; written in place.

    Returns out: ``out[n, k] = log_weights[k] + sum over the non-missing j of
    log_prob_T[codes[n, j], k]``.
    """
    codes, lpT, lw = _categorical_inputs(codes, log_prob_T, log_weights)
    out = _check_out("out", out, (codes.shape[0], lpT.shape[1]))
    get_backend(backend, "discrete").categorical_log_prob(
        codes, lpT, lw, out, _threads_for(codes.shape[0], n_threads))
    return out


def categorical_estep_stats(codes, log_prob_T, log_weights, sample_weight=None, *, out=None,
                            backend="auto", n_threads=None):
    """The fused E-step of a categorical (or Bernoulli) mixture: one pass over the rows.

    With ``r[n, k]`` the responsibilities (the normalised exp of
    :func:`categorical_log_prob`) and ``w[n]`` the sample weights (1 when None):

    * ``nk[k] = sum_n w[n] r[n, k]``, shape (K,)
    * ``counts[c, k] = sum_n w[n] r[n, k] * #{j : codes[n, j] == c}``, shape (C, K): the
      expected category counts per class (the M-step normalises them per item)
    * ``loglik = sum_n w[n] logsumexp_k categorical_log_prob[n, k]``

    Parameters
    ----------
    codes, log_prob_T, log_weights : as :func:`categorical_log_prob`.
    sample_weight : (N,) finite, non-negative, optional.
    out : tuple (nk, counts) of float64 C-contiguous arrays, optional; overwritten.

    Returns
    -------
    loglik, nk, counts
    """
    codes, lpT, lw = _categorical_inputs(codes, log_prob_T, log_weights)
    N = codes.shape[0]
    sw = _weights_input(sample_weight, N)
    C, K = lpT.shape
    nk_out, counts_out = (None, None) if out is None else out
    nk = _check_out("nk", nk_out, (K,))
    counts = _check_out("counts", counts_out, (C, K))
    ll = get_backend(backend, "discrete").categorical_estep_stats(
        codes, sw, lpT, lw, nk, counts, _threads_for(N, n_threads))
    return float(ll), nk, counts


def _poisson_inputs(X, log_lam, log_weights, row_const, backend, n_threads):
    """(X, log_lam, log_const, row_const) as the Poisson kernels take them."""
    X = np.asarray(X)
    if X.ndim != 2 or X.dtype.kind not in "fiub":
        raise ValueError(f"X must be a 2-D array of counts (n_samples, n_features), got dtype "
                         f"{X.dtype} and shape {X.shape}")
    _check_dims(**{"the number of rows of X": X.shape[0],
                   "the number of features of X": X.shape[1]})
    X = np.ascontiguousarray(X, dtype=X.dtype if X.dtype.kind == "f" and X.itemsize in (4, 8)
                             else np.float64)
    if not np.isfinite(X).all() or (X < 0).any() or (X != np.floor(X)).any():
        raise ValueError("X must hold finite, non-negative integer counts")
    if (X > _MAX_COUNT).any():   # beyond it a count is not exact, x log(lambda) near overflow
        raise ValueError(f"X holds counts above 2**53 = {_MAX_COUNT}: not exact in float64")
    N, D = X.shape
    ll = _log_table("log_lam", log_lam, 2)
    K = ll.shape[0]
    lw = _class_log_weights(log_weights, K, "log_lam")
    if ll.shape != (K, D):
        raise ValueError(f"log_lam must have shape (K, {D}), got {ll.shape}")
    with np.errstate(over="ignore"):
        lam_sum = np.exp(ll).sum(axis=1)
    if not np.isfinite(lam_sum).all():
        raise ValueError("the rates exp(log_lam) must be finite (and so sum to a finite value)")
    if row_const is None:
        row_const = np.empty(N)
        get_backend(backend, "discrete").poisson_row_const(X, row_const,
                                                           _threads_for(N, n_threads))
    else:
        row_const = _log_table("row_const", row_const, 1)
        if row_const.shape != (N,) or np.isneginf(row_const).any():
            raise ValueError(f"row_const must have shape ({N},) and be finite")
    return X, ll, lw - lam_sum, row_const


def poisson_log_prob(X, log_lam, log_weights, *, row_const=None, out=None, backend="auto",
                     n_threads=None):
    """Per-row, per-class log-probabilities of a Poisson mixture (independent features).

    Parameters
    ----------
    X : (N, D) non-negative integer counts (any integer dtype, or float32/float64 holding
        integers).
    log_lam : (K, D) log-rates; -inf (rate 0) allowed, NaN and +inf not.
    log_weights : (K,) log mixing weights; -inf allowed.
    row_const : (N,) float64, optional: ``-sum_d log(x_nd!)``, e.g.
        ``-scipy.special.gammaln(X + 1).sum(axis=1)``; computed when None (an EM loop
        computes it once).
    out : (N, K) float64 C-contiguous array, optional; written in place.

    Returns out: ``out[n, k] = log_weights[k] - sum_d lam[k, d] + sum_d (x_nd log lam[k, d]
    - log x_nd!)``, a term with x_nd = 0 being 0 also where lam[k, d] = 0.
    """
    X, ll, log_const, rc = _poisson_inputs(X, log_lam, log_weights, row_const, backend,
                                           n_threads)
    out = _check_out("out", out, (X.shape[0], ll.shape[0]))
    get_backend(backend, "discrete").poisson_log_prob(X, ll, log_const, rc, out,
                                                      _threads_for(X.shape[0], n_threads))
    return out


def poisson_estep_stats(X, log_lam, log_weights, sample_weight=None, *, row_const=None,
                        out=None, backend="auto", n_threads=None):
    """The fused E-step of a Poisson mixture: one pass over the rows.

    * ``nk[k] = sum_n w[n] r[n, k]``, shape (K,)
    * ``s1[k] = sum_n w[n] r[n, k] x_n``, shape (K, D) (the M-step's rates are s1 / nk)
    * ``loglik = sum_n w[n] logsumexp_k poisson_log_prob[n, k]``

    Parameters
    ----------
    X, log_lam, log_weights, row_const : as :func:`poisson_log_prob`.
    sample_weight : (N,) finite, non-negative, optional.
    out : tuple (nk, s1) of float64 C-contiguous arrays, optional; overwritten.

    Returns
    -------
    loglik, nk, s1
    """
    X, ll, log_const, rc = _poisson_inputs(X, log_lam, log_weights, row_const, backend,
                                           n_threads)
    N, D = X.shape
    K = ll.shape[0]
    sw = _weights_input(sample_weight, N)
    nk_out, s1_out = (None, None) if out is None else out
    nk = _check_out("nk", nk_out, (K,))
    s1 = _check_out("s1", s1_out, (K, D))
    loglik = get_backend(backend, "discrete").poisson_estep_stats(
        X, sw, ll, log_const, rc, nk, s1, _threads_for(N, n_threads))
    return float(loglik), nk, s1


# ------------------------------------------------------------------------------------------
# Topic models (LDA): the variational E-step of batch VB (Hoffman, Blei and Bach 2010), the
# E-step of scikit-learn's LatentDirichletAllocation, and the Dirichlet expectation.
#
# ``X`` (N, V) non-negative counts as a scipy.sparse CSR matrix (another sparse format or a
# dense array is converted; the caller's X is never modified); its dtype, float32 or float64
# (an integer X becomes float64), is the dtype of every float array: ``exp_topic_word`` (K, V)
# = exp(E[log beta]) and ``doc_topic`` (N, K), the variational gamma, IN (the start) and OUT
# (the result, written in place). With e = exp(E[log theta_d]) = exp(psi(gamma_d) -
# psi(sum gamma_d)) and document d's words w_j with counts c_j, each of at most
# ``max_doc_update_iter`` steps sets
#     gamma_d[k] = alpha + e_k sum_j c_j B[k, w_j] / (sum_k' e_k' B[k', w_j] + EPS)
# (EPS: the machine epsilon of the dtype) and e from it, and stops after the step whose mean
# |change| of gamma_d is below ``mean_change_tol``. A topic whose update e_k sum_j (...), its
# expected count in the document, falls below 2^-64 min(alpha, 1) min(c_min, 1) (c_min the
# document's smallest positive count) is no longer updated: its gamma stays, its e leaves the
# sums. What the full update would still change is below rounding (the argument is in
# _cython/_lda.h); under scikit-learn's default alpha = 1/K and K of about 45 or more, most
# topics of a document go so, and the remaining steps cost only the live ones. From the
# final e:
#     sstats[k, w] = B[k, w] sum_d e_dk c_dw / (sum_k' e_dk' B[k', w] + EPS)
#     word_bound = sum_{d,j} c_j log(sum_k e_dk B[k, w_j])
# (scikit-learn's suff_stats, and the first term of its _approx_bound). Inside a document
# the arithmetic is float64. psi is the kernels' own digamma: against scipy.special.digamma
# on [1e-6, 1e300], |error| < 1e-12 max(|psi(x)|, 0.1) (relative 1e-12 away from the root
# 1.4616..., absolute 1e-13 near it).
# Documents go in 64-document blocks whose word bounds are added in a fixed order and each
# column of sstats is summed by one thread: results do not depend on the thread count.

__all__ += ["LDAEStep", "lda_estep", "bind_lda_estep", "dirichlet_expectation"]


class LDAEStep(NamedTuple):
    """What :func:`lda_estep` returns: ``sstats`` (K, V) of X's dtype (None unless
    cal_sstats) and ``word_bound``, a float (None unless cal_bound)."""

    sstats: Optional[np.ndarray]
    word_bound: Optional[float]


def _lda_corpus(X):
    """(data, indices int32, indptr int64, (N, V)): X as the LDA kernels take it, checked
    (finite non-negative counts, a well-formed CSR structure); arrays copied where the
    dtype changes, so the caller's X is never written."""
    import scipy.sparse as sp

    if not sp.issparse(X):
        X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D (n_documents, n_words), got shape {X.shape}")
    if X.dtype.kind not in "fiub":
        raise ValueError(f"X must hold real numbers, got dtype {X.dtype}")
    X = sp.csr_matrix(X)          # a CSR X stays as is (its arrays shared, never written)
    dtype = X.dtype if X.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    N, n_words = X.shape
    _check_dims(**{"the number of words (columns of X)": n_words})
    if N > _MAX_DIM:
        raise ValueError(f"X has {N} documents, more than the kernels index ({_MAX_DIM})")
    indptr = np.asarray(X.indptr)
    nnz = X.indices.shape[0]
    if indptr.dtype.kind == "u" and int(indptr[-1]) > np.iinfo(np.int64).max:
        raise ValueError("X.indptr holds offsets beyond the int64 range the kernels index")
    if (indptr.shape != (N + 1,) or indptr[0] != 0 or indptr[-1] != nnz
            or X.data.shape != (nnz,) or np.any(np.diff(indptr.astype(np.int64)) < 0)):
        raise ValueError("X is not a well-formed CSR matrix: indptr must rise from 0 to "
                         "nnz = len(indices) = len(data)")
    if nnz and (X.indices.min() < 0 or X.indices.max() >= n_words):
        raise ValueError(f"X has word indices outside [0, {n_words})")
    data = np.ascontiguousarray(X.data, dtype=dtype)
    if not np.all(np.isfinite(data)) or np.any(data < 0):
        raise ValueError("X must hold finite, non-negative counts")
    return (data, np.ascontiguousarray(X.indices, dtype=np.int32),
            np.ascontiguousarray(indptr, dtype=np.int64), (N, n_words))


_LDA_PAD = 8     # K_pad: K rounded up to a multiple of this (of every SIMD width)


def _lda_rows(n_rows, K):
    """A zeroed (n_rows, K_pad) float64 array whose rows start on 64-byte boundaries: K_pad
    doubles are whole cache lines, so no vector load of a row straddles two of them (NumPy
    aligns to 16 bytes only; measured on 2,000 T1 documents, Numba: ~10% less CPU time)."""
    Kp = -(-K // _LDA_PAD) * _LDA_PAD
    raw = np.zeros(n_rows * Kp + 8)
    start = (-raw.ctypes.data % 64) // 8
    return raw[start:start + n_rows * Kp].reshape(n_rows, Kp)


def _lda_topic_word_T(exp_topic_word):
    """exp_topic_word (K, V) as the kernels take it: transposed, word-major (V, K_pad) float64
    with K padded by zero lanes, so that a word's row is contiguous and every loop over K is
    a whole number of vectors."""
    K, n_words = exp_topic_word.shape
    BT = _lda_rows(n_words, K)
    BT[:, :K] = exp_topic_word.T
    return BT


class LDABoundEStep:
    """The LDA E-step bound to one X (see the section's notes): X checked and laid out once
    (CSR arrays; the CSC copy the statistics pass reads, made on the first call that asks
    for sstats; a (N, K) float64 scratch), then called once per iteration with no check of
    values, only O(1) checks of shapes and dtypes::

        estep(exp_topic_word, doc_topic, doc_topic_prior, max_doc_update_iter=100,
              mean_change_tol=1e-3, cal_sstats=True, cal_bound=False) -> LDAEStep

    exp_topic_word (K, V) of ``dtype`` (IN: finite, >= 0, not checked here); doc_topic
    (N, K) of ``dtype``, C-contiguous (IN/OUT: gamma, > 0 and finite, not checked here);
    doc_topic_prior > 0. Each call makes a word-major (V, K_pad) float64 copy of
    exp_topic_word, K_pad = K rounded up to a multiple of 8 (the kernels' inner loops run
    over K, contiguous, in whole vectors).

    Memory beyond X: the CSC copy (nnz values and int32 ids), (V, K_pad) float64 for the
    transpose, (N, K_pad) float64 for the documents' final exp(E[log theta]), the (K, V)
    result and O(K) doubles and 40 KiB per thread: no per-thread (K, V) buffer.
    """

    def __init__(self, X, *, n_threads=None, backend="auto"):
        self.data, self.indices, self.indptr, self.shape = _lda_corpus(X)
        self.dtype = self.data.dtype
        self._eps = float(np.finfo(self.dtype).eps)
        self._csc = None
        self._doc_exp = None
        self._n_threads = resolve_n_threads(n_threads)
        self._mod = get_backend("auto" if backend is None else backend, "lda")

    def _columns(self):
        """(data, document ids int32, indptr int64) of X in CSC order, made once."""
        if self._csc is None:
            import scipy.sparse as sp

            csc = sp.csr_matrix((self.data, self.indices, self.indptr), shape=self.shape,
                                copy=False).tocsc()
            self._csc = (np.ascontiguousarray(csc.data, dtype=self.dtype),
                         np.ascontiguousarray(csc.indices, dtype=np.int32),
                         np.ascontiguousarray(csc.indptr, dtype=np.int64))
        return self._csc

    def __call__(self, exp_topic_word, doc_topic, doc_topic_prior, max_doc_update_iter=100,
                 mean_change_tol=1e-3, cal_sstats=True, cal_bound=False):
        N, n_words = self.shape
        K = exp_topic_word.shape[0] if exp_topic_word.ndim == 2 else 0
        if (exp_topic_word.shape != (K, n_words) or exp_topic_word.dtype != self.dtype
                or K == 0):
            raise ValueError(f"exp_topic_word must be a {self.dtype.name} array of shape "
                             f"(K, {n_words}), K >= 1, got {exp_topic_word.dtype} "
                             f"{exp_topic_word.shape}")
        _check_dims(**{"the number of topics": K})      # K is a C int in the kernels
        _check_inout("doc_topic", doc_topic, (N, K), self.dtype)
        BT = _lda_topic_word_T(exp_topic_word)
        if self._doc_exp is None or self._doc_exp.shape != (N, BT.shape[1]):
            self._doc_exp = _lda_rows(N, K)
        bound = self._mod.lda_doc_pass(
            self.data, self.indices, self.indptr, BT, doc_topic, float(doc_topic_prior),
            int(max_doc_update_iter), float(mean_change_tol), self._eps, self._doc_exp,
            bool(cal_bound), self._n_threads)
        sstats = None
        if cal_sstats:
            sstats = np.empty((K, n_words), dtype=self.dtype)
            cdata, cids, cptr = self._columns()
            self._mod.lda_word_pass(cdata, cids, cptr, BT, self._doc_exp, self._eps, sstats,
                                    self._n_threads)
        return LDAEStep(sstats, float(bound) if cal_bound else None)


def bind_lda_estep(X, *, n_threads=None, backend="auto"):
    """The LDA E-step bound to ``X`` for a fit: an :class:`LDABoundEStep` (checks X once;
    its calls check only shapes and dtypes). Estimators call it once per fit (per
    mini-batch for online VB); :func:`lda_estep` is the checked one-off."""
    return LDABoundEStep(X, n_threads=n_threads, backend=backend)


def lda_estep(X, exp_topic_word, doc_topic, doc_topic_prior, *, max_doc_update_iter=100,
              mean_change_tol=1e-3, cal_sstats=True, cal_bound=False, n_threads=None,
              backend="auto"):
    """The variational E-step of LDA (see the section's notes), every input checked.

    Parameters
    ----------
    X : (N, V) non-negative counts, scipy.sparse CSR (other formats and dense arrays are
        converted; X is not modified).
    exp_topic_word : (K, V) exp(E[log beta]), finite and >= 0, of X's dtype.
    doc_topic : (N, K) C-contiguous, writeable, of X's dtype. IN: the initial gamma (finite,
        > 0); OUT: the final gamma, written in place.
    doc_topic_prior : alpha > 0.
    max_doc_update_iter : int >= 0; mean_change_tol : float >= 0.
    cal_sstats, cal_bound : whether to compute sstats and word_bound.
    n_threads, backend : as the other kernels (backend None: "auto").

    Memory beyond the inputs: as :class:`LDABoundEStep` (O(nnz + (N + V) K); no per-thread
    (K, V) buffer).

    Returns
    -------
    LDAEStep(sstats, word_bound)
    """
    bound = bind_lda_estep(X, n_threads=n_threads, backend=backend)
    N, n_words = bound.shape
    B = np.asarray(exp_topic_word)
    if B.ndim != 2 or B.shape[1] != n_words or B.shape[0] == 0:
        raise ValueError(f"exp_topic_word must have shape (K, {n_words}) with K >= 1, got "
                         f"{B.shape}")
    if B.dtype != bound.dtype:
        raise ValueError(f"exp_topic_word must have X's dtype {bound.dtype.name}, got "
                         f"{B.dtype}")
    if not np.all(np.isfinite(B)) or np.any(B < 0):
        raise ValueError("exp_topic_word must be finite and non-negative")
    K = B.shape[0]
    _check_dims(K=K)
    _check_inout("doc_topic", doc_topic, (N, K), bound.dtype)
    if not np.all(np.isfinite(doc_topic)) or np.any(doc_topic <= 0):
        raise ValueError("doc_topic (the initial gamma) must be finite and > 0")
    alpha = V.check_real("doc_topic_prior", doc_topic_prior)
    if alpha <= 0:
        raise ValueError(f"doc_topic_prior must be > 0, got {doc_topic_prior!r}")
    return bound(np.ascontiguousarray(B), doc_topic, alpha,
                 V.check_int("max_doc_update_iter", max_doc_update_iter, 0),
                 V.check_real("mean_change_tol", mean_change_tol, 0.0), bool(cal_sstats),
                 bool(cal_bound))


def dirichlet_expectation(alpha, *, exp=False, n_threads=None, backend="auto"):
    """E[log x] of Dirichlet rows: ``psi(alpha) - psi(alpha.sum(axis=-1))[..., None]`` (its
    exp when ``exp``), with the digamma of the LDA E-step.

    alpha : (R, C) or (C,) finite, > 0, float32 or float64 (other real dtypes: float64).
    Returns a new array of alpha's shape and float dtype.
    """
    a = np.asarray(alpha)
    if a.ndim not in (1, 2) or a.dtype.kind not in "fiu" or a.size == 0:
        raise ValueError(f"alpha must be a non-empty 1-D or 2-D array of real numbers, got "
                         f"dtype {a.dtype} and shape {a.shape}")
    dtype = a.dtype if a.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    a2 = np.ascontiguousarray(np.atleast_2d(a), dtype=dtype)
    if not np.all(np.isfinite(a2)) or np.any(a2 <= 0):
        raise ValueError("alpha must be finite and > 0")
    out = np.empty_like(a2)
    get_backend("auto" if backend is None else backend, "lda").dirichlet_expectation(
        a2, out, bool(exp), resolve_n_threads(n_threads))
    return out.reshape(a.shape)
