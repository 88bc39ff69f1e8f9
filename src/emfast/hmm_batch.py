"""Batch fitting of HMMs: ``emfast.fit_many_hmm`` fits many small Gaussian HMMs, the
Baum-Welch iterations of all of them in one compiled call.

The design is :func:`emfast.fit_many`'s (one problem per thread at a time, the whole EM of
a problem inside the kernel, degenerate problems handed back). Each problem's *start* is
GaussianHMM's (``BaseHMM._initializer``: Dirichlet draws of startprob and transmat,
k-means with restarts on the sorted rows for the means, the data's covariance for the
covariances): its random numbers are drawn here from the problem's RandomState exactly as
GaussianHMM draws them (``_StartDraws``), the rest -- k-means++ and Lloyd of every k-means
restart, the covariances -- runs in the kernel, with the GMM batch kernel's k-means. A
problem of more rows than k-means clusters whole (``SAMPLE_ROWS``: GaussianHMM's k-means
then samples rows), or of one row, gets its start here from GaussianHMM's own
initialisation instead. The kernels
(``emfast._cython._hmm_batch`` / ``emfast._numba._hmm_batch``) then run every iteration:
scaled forward-backward per sequence (the estimators' own single-sequence passes), the
Gaussian statistics, the M-step with hmmlearn's priors and the monitor's stopping rule.
Problem i's result is ``GaussianHMM(**params, random_state=s_i).fit(X_i, lengths_i)`` to
rounding.

A problem the kernel cannot finish as GaussianHMM would -- a k-means start short of
distinct rows or with a cluster emptied by Lloyd (GaussianHMM's k-means draws other random
numbers or relocates it), a sequence whose scaled forward pass lost precision (GaussianHMM
recomputes it in log space), an impossible sequence, a covariance that is not, or nearly
not, positive definite, a start that warned, priors of a shape the kernel does not take --
is fitted by GaussianHMM itself, with its warnings and errors; ``fallback_`` marks those
problems. Problems fitted in the kernel log none of GaussianHMM's fit-time messages ("not
converging", rows of transmat_ with zero sum, too few data for the free parameters).
"""

import warnings
from collections import deque

import numpy as np

from emfast import _validation as V
from emfast import kernels
from emfast._config import get_backend
from emfast._em import restart_rngs
from emfast.batch import ProblemBatch, _problem_seeds
from emfast.hmm._base import ConvergenceMonitor
from emfast.hmm._emissions import KMEANS, _prior
from emfast.hmm._hmm import GaussianHMM
from emfast.mixture import _gaussian as G
from emfast.mixture._kmeans import SAMPLE_ROWS, _lexicographic_order, choice_cdf

__all__ = ["fit_many_hmm", "GaussianHMMBatch"]

# the kernel's status codes
FITTED, FALLBACK = 0, 1
# the kernel's `letters` bits: the parameters EM updates (GaussianHMM's `params`)
LETTER_BITS = dict(s=1, t=2, m=4, c=8)


class GaussianHMMBatch(ProblemBatch):
    """The fits of :func:`fit_many_hmm`: stacked arrays with a leading problem axis, and
    ``fits[i]``, problem i as a fitted :class:`emfast.hmm.GaussianHMM`.

    Attributes (P problems, K states, D features): ``startprob_`` (P, K), ``transmat_``
    (P, K, K), ``means_`` (P, K, D), ``covars_`` (P, K, D, D) full matrices whatever the
    covariance type (GaussianHMM's ``covars_``), ``compact_covars_`` (P, ...) in the
    compact form of the type (GaussianHMM's ``_covars_``: spherical (K,), diag (K, D), full
    (K, D, D), tied (D, D)), the monitor's record: ``history_`` (P, n_iter) the
    log-likelihood of each iteration, NaN after a problem's last, ``log_likelihood_`` (P,)
    the last of them (-inf after no iteration), ``n_iter_`` (P,), ``converged_`` (P,) bool
    (the monitor's ``converged``); ``fallback_`` (P,) bool (the problems fitted by
    GaussianHMM alone), ``random_states_`` (P,) each problem's int seed, and ``params``
    (GaussianHMM's constructor parameters).
    """

    def __len__(self):
        return len(self.n_iter_)

    @property
    def covars_(self):
        """(P, K, D, D): every problem's covariances as full matrices (GaussianHMM's
        ``covars_``)."""
        P, K, D = self.means_.shape
        ct = self.params["covariance_type"]
        return np.array([G.full_covariances(c, ct, K, D) for c in self.compact_covars_]
                        ).reshape(P, K, D, D)

    def __getitem__(self, i):
        """Problem ``i`` as a fitted emfast.hmm.GaussianHMM (its random_state: the seed it
        was fitted with; its monitor_ holds the problem's history)."""
        i = self._problem_index(i)
        hmm = GaussianHMM(**self.params, random_state=int(self.random_states_[i]))
        hmm.n_features = self.means_.shape[2]
        hmm.startprob_ = self.startprob_[i].copy()
        hmm.transmat_ = self.transmat_[i].copy()
        hmm.means_ = self.means_[i].copy()
        hmm._covars_ = self.compact_covars_[i].copy()
        mon = ConvergenceMonitor(hmm.tol, hmm.n_iter, hmm.verbose)
        mon.history = deque(float(v) for v in self.history_[i, :self.n_iter_[i]])
        mon.iter = int(self.n_iter_[i])
        hmm.monitor_ = mon
        return hmm


def fit_many_hmm(problems, *, n_components=1, covariance_type="diag", min_covar=1e-3,
                 startprob_prior=1.0, transmat_prior=1.0, means_prior=0, means_weight=0,
                 covars_prior=1e-2, covars_weight=1, algorithm="viterbi", random_state=None,
                 n_iter=10, tol=1e-2, params="stmc", init_params="stmc",
                 implementation="log", n_init=1, backend="auto", n_threads=None):
    """Fit one Gaussian HMM per problem, the Baum-Welch iterations of all in compiled code.

    ``problems``: a list, one entry per problem: a tuple ``(X_i, lengths_i)`` (the frames
    of the problem's sequences stacked, and their lengths as GaussianHMM.fit takes them;
    ``lengths_i`` None: one sequence), or an array ``X_i`` alone (one sequence). Every
    problem has the same number of features, at least ``n_components`` frames and no
    missing values. The other parameters are GaussianHMM's, the same for every problem
    (``verbose`` is not taken: nothing is printed). Problem i's result is
    ``GaussianHMM(..., random_state=s_i).fit(X_i, lengths_i)`` to rounding, where s_i is
    ``random_state`` itself when it is an int, and otherwise an int drawn for problem i
    from ``random_state`` (None: NumPy's global RandomState); ``.random_states_`` holds
    them. Frames are used in float64; inputs are not modified. ``n_init`` restarts per
    problem run as separate kernel problems, the best final log-likelihood kept (the
    first on ties), as GaussianHMM keeps it.

    ``n_threads`` (None: all usable CPUs): problems run one per thread at a time; results
    do not depend on it. Returns a :class:`GaussianHMMBatch`; its ``fallback_`` marks the
    problems fitted by GaussianHMM alone (see the module docstring).
    """
    params = dict(n_components=n_components, covariance_type=covariance_type,
                  min_covar=min_covar, startprob_prior=startprob_prior,
                  transmat_prior=transmat_prior, means_prior=means_prior,
                  means_weight=means_weight, covars_prior=covars_prior,
                  covars_weight=covars_weight, algorithm=algorithm, n_iter=n_iter, tol=tol,
                  params=params, init_params=init_params, implementation=implementation,
                  n_init=n_init, backend=backend, n_threads=n_threads)
    # GaussianHMM's own parameter checks, and its wording
    n_threads = GaussianHMM(**params)._check_parameters()
    kernel = get_backend(backend, "hmm_batch")
    K, ct, R = int(n_components), covariance_type, int(n_init)
    X, lengths = _check_problems(problems, K)
    P, D = len(X), X[0].shape[1]
    seeds = _problem_seeds(random_state, P)
    start, history, n_iter_, converged, status = _fit_runs(params, X, lengths, seeds,
                                                            kernel, n_threads)
    S = kernels.prec_chol_shape(ct, K, D)
    best = _best_runs(history, n_iter_, status, P, R)
    out = dict(startprob_=start["startprob"][best], transmat_=start["transmat"][best],
               means_=start["means"][best],
               compact_covars_=start["covars"][best].reshape((P,) + S),
               history_=history[best, :int(n_iter)], n_iter_=n_iter_[best],
               converged_=converged[best].astype(bool) | (int(n_iter) == 0))
    fallback = (status.reshape(P, R) != FITTED).any(axis=1)
    for i in np.flatnonzero(fallback):
        _fit_alone(out, i, params, int(seeds[i]), X[i], lengths[i])
    out["log_likelihood_"] = _last_of(out["history_"], out["n_iter_"])
    out["fallback_"] = fallback
    return GaussianHMMBatch(params, out, seeds)


def _check_problems(problems, n_components):
    """(each problem's frames as a float64 C-contiguous copy, each problem's sequence
    lengths as an int64 array), checked with GaussianHMM's rules and wording, prefixed
    with the problem; no missing values; the same number of features everywhere."""
    if isinstance(problems, np.ndarray) or not isinstance(problems, (list, tuple)):
        raise ValueError("problems must be a list of (X, lengths) tuples or of arrays X, "
                         f"got {type(problems).__name__}")
    if len(problems) == 0:
        raise ValueError("problems is empty; expected at least one problem")
    X, lengths = [], []
    for i, prob in enumerate(problems):
        x, ln = prob if isinstance(prob, tuple) and len(prob) == 2 else (prob, None)
        try:
            x = V.check_array(x, estimator="GaussianHMM",
                              max_magnitude=V.MAX_GAUSSIAN_MAGNITUDE)
            offsets = V.lengths_to_offsets(ln, x.shape[0])
        except (ValueError, TypeError) as exc:
            raise ValueError(f"problem {i}: {exc}") from None
        if X and x.shape[1] != X[0].shape[1]:
            raise ValueError(f"every problem must have the same number of features: problem "
                             f"0 has {X[0].shape[1]}, problem {i} has {x.shape[1]}")
        if x.shape[0] < n_components:
            raise ValueError(f"problem {i} has {x.shape[0]} frame(s); each problem needs at "
                             f"least n_components = {n_components}")
        X.append(np.array(x, dtype=np.float64, order="C"))
        lengths.append(np.diff(offsets))
    return X, lengths


def _fit_runs(params, X, lengths, seeds, kernel, n_threads):
    """Every run (n_init per problem, run i * n_init + r restart r of problem i) fitted by
    the kernel: (start: the runs' parameters, fitted in place of their starts; history;
    n_iter; converged; status, FALLBACK where GaussianHMM must fit the problem).

    Each start's random numbers are drawn here, as GaussianHMM draws them; its means and
    covariances are made in the kernel from them, or here by GaussianHMM's own
    initialisation where the kernel's k-means would not be GaussianHMM's (k-means samples
    the rows of a problem of more than SAMPLE_ROWS rows; np.cov of one row warns)."""
    K, ct, R, n_iter = (int(params["n_components"]), params["covariance_type"],
                        int(params["n_init"]), int(params["n_iter"]))
    P, D = len(X), X[0].shape[1]
    letters = sum(bit for c, bit in LETTER_BITS.items() if c in params["params"])
    S = kernels.prec_chol_shape(ct, K, D)
    start = dict(startprob=np.empty((P * R, K)), transmat=np.empty((P * R, K, K)),
                 means=np.empty((P * R, K, D)), covars=np.empty((P * R, int(np.prod(S)))))
    status = np.zeros(P * R, dtype=np.int8)
    history = np.full((P * R, max(n_iter, 1)), np.nan)
    n_iter_ = np.zeros(P * R, dtype=np.int64)
    converged = np.zeros(P * R, dtype=np.int8)
    priors = _kernel_priors(params, K, D)
    if priors is None:
        status[:] = FALLBACK
        return start, history, n_iter_, converged, status
    sizes = np.array([len(x) for x in X])
    in_kernel = (sizes >= 2) & (sizes <= SAMPLE_ROWS)
    draws = _StartDraws(seeds, sizes, in_kernel, K, R, start)
    for i in np.flatnonzero(~in_kernel):
        if not _starts(params, X[i], int(seeds[i]), start, slice(i * R, (i + 1) * R)):
            status[i * R:(i + 1) * R] = FALLBACK
    seq_offsets, runs = _layout(lengths, R)
    order = np.concatenate([_lexicographic_order(x) if ok else np.zeros(len(x), np.int64)
                            for x, ok in zip(X, in_kernel)])
    kernel.fit_many_hmm(
        np.ascontiguousarray(np.concatenate(X)), seq_offsets, runs, kernels._cov_code(ct),
        letters, n_iter, float(params["tol"]), *priors, start["startprob"],
        start["transmat"], start["means"], start["covars"], order, draws.draw_of,
        draws.first, draws.u, draws.n_trials, float(params["min_covar"]), history, n_iter_,
        converged, status, n_threads)
    return start, history, n_iter_, converged, status


def _layout(lengths, n_init):
    """(seq_offsets (S + 1,): the rows of every sequence of every problem, stacked; runs
    (P * n_init, 2): each kernel problem's first sequence and number of sequences, the
    n_init restarts of a problem on the same sequences)."""
    n_seq = np.array([len(x) for x in lengths], dtype=np.int64)
    seq_offsets = np.zeros(int(n_seq.sum()) + 1, dtype=np.int64)
    np.cumsum(np.concatenate(lengths), out=seq_offsets[1:])
    runs = np.empty((len(lengths) * n_init, 2), dtype=np.int64)
    runs[:, 0] = np.repeat(np.cumsum(n_seq) - n_seq, n_init)
    runs[:, 1] = np.repeat(n_seq, n_init)
    return seq_offsets, runs


class _StartDraws:
    """The random numbers of the starts the kernel makes (problems ``in_kernel``, R restarts
    each), drawn as GaussianHMM's initialisation (``BaseHMM._initializer``) draws them.

    Restart r's stream is restart_rngs(RandomState(seed), R)[r]. From it, startprob and
    transmat (Dirichlet draws, written into ``start`` here); then the emission start's
    k-means draws, from a second RandomState(seed) for restart 0 (hmmlearn's two
    check_random_state calls) and from the same stream after the Dirichlet draws for the
    others: per k-means restart (KMEANS["n_init"] of them) the first k-means++ row, one
    uniform through rng.choice(N, p=uniform), then T = 2 + int(log K) uniforms per later
    round -- one run of uniforms in all, drawn at once. The streams depend on the seed
    alone, the first rows also on N: problems sharing both share a set (``draw_of``, -1
    for a run whose start is made by GaussianHMM: the kernel then takes it as given)."""

    def __init__(self, seeds, sizes, in_kernel, K, R, start):
        self.n_trials = T = 2 + int(np.log(K))
        M, per_round = KMEANS["n_init"], (K - 1) * T
        streams, sets = {}, {}
        self.draw_of = np.full(len(seeds) * R, -1, dtype=np.int64)
        for i in np.flatnonzero(in_kernel):
            seed = int(seeds[i])
            if seed not in streams:
                streams[seed] = _restart_draws(seed, K, R, M * (1 + per_round))
            for r, (sp, tm, _) in enumerate(streams[seed]):
                start["startprob"][i * R + r] = sp
                start["transmat"][i * R + r] = tm
                self.draw_of[i * R + r] = sets.setdefault((seed, r, int(sizes[i])), len(sets))
        self.first = np.zeros((max(len(sets), 1), M), dtype=np.int64)
        self.u = np.zeros((max(len(sets), 1), max(M * per_round, 1)))
        cdfs = {}
        for (seed, r, N), s in sets.items():
            v = streams[seed][r][2].reshape(M, 1 + per_round)
            if N not in cdfs:
                cdfs[N] = choice_cdf(np.full(N, 1.0 / N))
            self.first[s] = cdfs[N].searchsorted(v[:, 0], side="right")
            self.u[s, :M * per_round] = v[:, 1:].ravel()


def _restart_draws(seed, K, R, n_uniforms):
    """[(startprob, transmat, the k-means uniforms)] of each of the R restarts from
    ``seed`` (see _StartDraws)."""
    rng = V.check_random_state(seed)
    alpha = np.full(K, 1.0 / K)
    out = []
    for r, stream in enumerate(restart_rngs(rng, R)):
        sp = stream.dirichlet(alpha)
        tm = stream.dirichlet(alpha, size=K)
        em = V.check_random_state(seed) if r == 0 else stream
        out.append((sp, tm, em.random_sample(n_uniforms)))
    return out


def _starts(params, X, seed, start, rows):
    """Write problem X's starts (one per restart) into ``start[...][rows]``, made by
    GaussianHMM's own initialisation exactly as its fit makes them; False (the problem
    goes to GaussianHMM) when that warned: the kernel would not repeat the warning."""
    hmm = GaussianHMM(**dict(params, n_threads=1), random_state=seed)
    hmm._check_X(X, fitting=True)
    emission = hmm._emission_model(hmm.n_features)
    rng = V.check_random_state(seed)
    init = hmm._initializer(X, None, emission, rng)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runs = [init(X, None, r, 1) for r in restart_rngs(rng, int(params["n_init"]))]
    if caught:
        return False
    for r, p in zip(range(rows.start, rows.stop), runs):
        start["startprob"][r] = p.startprob
        start["transmat"][r] = p.transmat
        start["means"][r] = p.emission["means"]
        start["covars"][r] = np.ravel(p.emission["covars"])
    return True


def _kernel_priors(params, K, D):
    """The priors as the kernel takes them (see fit_many_hmm in _hmm_batch_impl.pxi), or
    None where GaussianHMM's M-step takes a shape the kernel does not (or refuses it:
    GaussianHMM then raises its own error)."""
    ct = params["covariance_type"]
    sp, tp = GaussianHMM(**params)._priors(K)
    try:
        m0 = _prior(params["means_prior"], (K, D), "means_prior")
        mw = _prior(params["means_weight"], (K, D), "means_weight")
        if ct in ("diag", "spherical"):
            cp = _prior(params["covars_prior"], (K, D), "covars_prior")
            cw = _prior(params["covars_weight"], (K, D), "covars_weight")
        else:
            mwk = np.asarray(params["means_weight"], dtype=np.float64)
            if mwk.ndim > 1 or (mwk.ndim == 1 and mwk.shape != (K,)):
                return None
            if ct == "full":
                cp = _prior(params["covars_prior"], (K, D, D), "covars_prior")
                cw = _prior(params["covars_weight"], (K, 1, 1), "covars_weight")
            else:
                cp = np.broadcast_to(np.asarray(params["covars_prior"], dtype=np.float64),
                                     (D, D))
                cw = np.asarray(params["covars_weight"], dtype=np.float64)
                if cw.size != 1:
                    return None
    except ValueError:
        return None
    flat = [np.ascontiguousarray(a, dtype=np.float64) for a in (sp, tp, m0, mw)]
    return flat + [np.ascontiguousarray(np.ravel(a), dtype=np.float64) for a in (cp, cw)]


def _best_runs(history, n_iter, status, P, R):
    """The index of each problem's best restart: the highest final log-likelihood, the
    first on ties (emfast._em.best_run)."""
    last = np.where(status == FITTED, _last_of(history, n_iter), -np.inf).reshape(P, R)
    return np.arange(P) * R + np.argmax(last, axis=1)


def _last_of(history, n_iter):
    """Each row's log-likelihood of its last iteration; -inf after none."""
    if history.shape[1] == 0:
        return np.full(len(n_iter), -np.inf)
    last = history[np.arange(len(n_iter)), np.maximum(n_iter - 1, 0)]
    return np.where(n_iter > 0, last, -np.inf)


def _fit_alone(out, i, params, seed, X, lengths):
    """Problem i fitted by GaussianHMM itself, written into the stacked outputs."""
    hmm = GaussianHMM(**params, random_state=seed).fit(X, lengths)
    out["startprob_"][i] = hmm.startprob_
    out["transmat_"][i] = hmm.transmat_
    out["means_"][i] = hmm.means_
    out["compact_covars_"][i] = hmm._covars_
    mon = hmm.monitor_
    out["history_"][i] = np.nan
    out["history_"][i, :len(mon.history)] = list(mon.history)
    out["n_iter_"][i] = mon.iter
    out["converged_"][i] = mon.converged
