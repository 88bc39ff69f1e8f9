"""EM drivers, written once for every model family.

A family provides ``e_step(X, sample_weight, params, n_threads) -> stats`` (statistics with
``loglik`` and ``weight_sum``) and ``m_step(X, sample_weight, stats, rng) -> params``. The
drivers own everything else: the loop, restarts, and the convergence rule.

A convergence rule is an object with ``lower_bound(stats) -> float``,
``update(n_iter, lower_bound, params) -> bool`` (record the value, report it, say whether EM
has converged) and ``finish(lower_bound, converged)``. :class:`ToleranceRule` is
scikit-learn's (mean log-likelihood, ``|change| < tol``); the HMMs pass hmmlearn's monitor
as a rule. The rule travels back in ``EMRun.rule`` with its history.
"""

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from time import perf_counter

import numpy as np


class EMRun:
    """Result of one EM run from one starting point."""

    __slots__ = ("params", "lower_bound", "lower_bounds", "n_iter", "converged", "rule")

    def __init__(self, params, lower_bound, lower_bounds, n_iter, converged, rule=None):
        self.params = params
        self.lower_bound = lower_bound
        self.lower_bounds = lower_bounds
        self.n_iter = n_iter
        self.converged = converged
        self.rule = rule


class VerboseMonitor:
    """scikit-learn's verbose messages (verbose=1: iterations; verbose>=2: timings too)."""

    def __init__(self, verbose, interval):
        self.verbose = verbose
        self.interval = interval

    def init_begin(self, index):
        if self.verbose:
            print(f"Initialization {index}")
        self._t_init = self._t_iter = perf_counter()

    def iteration(self, n_iter, change):
        if self.verbose and n_iter % self.interval == 0:
            if self.verbose == 1:
                print(f"  Iteration {n_iter}")
            else:
                now = perf_counter()
                print(f"  Iteration {n_iter}\t time lapse {now - self._t_iter:.5f}s\t "
                      f"ll change {change:.5f}")
                self._t_iter = now

    def init_end(self, lower_bound, converged):
        msg = "converged" if converged else "did not converge"
        if self.verbose == 1:
            print(f"Initialization {msg}.")
        elif self.verbose >= 2:
            print(f"Initialization {msg}. time lapse {perf_counter() - self._t_init:.5f}s\t "
                  f"lower bound {lower_bound:.5f}.")


class ToleranceRule:
    """scikit-learn's rule: the lower bound is the mean log-likelihood at the current
    parameters; EM has converged when it changes by less than ``tol``."""

    def __init__(self, tol, lower_bound=-math.inf, monitor=None):
        self.tol = tol
        self._prev = lower_bound
        self.monitor = monitor

    def lower_bound(self, stats):
        return stats.loglik / stats.weight_sum

    def update(self, n_iter, lower_bound, params):
        change = lower_bound - self._prev
        self._prev = lower_bound
        if self.monitor is not None:
            self.monitor.iteration(n_iter, change)
        return abs(change) < self.tol

    def finish(self, lower_bound, converged):
        if self.monitor is not None:
            self.monitor.init_end(lower_bound, converged)


def em_loop(family, X, sample_weight, params, *, max_iter, n_threads, rng, rule):
    """Batch EM from ``params`` for at most ``max_iter`` iterations.

    Each iteration is one E-step pass (statistics at the current parameters, whose
    log-likelihood gives the lower bound) followed by the M-step, which comes before the
    convergence check so that even one iteration updates the parameters. ``n_threads``:
    the E-steps' thread count, or a :class:`ThreadShare` asked before each E-step.
    """
    lower_bounds = []
    lower_bound = -math.inf
    converged = False
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        threads = n_threads() if isinstance(n_threads, ThreadShare) else n_threads
        stats = family.e_step(X, sample_weight, params, threads)
        params = family.m_step(X, sample_weight, stats, rng)
        lower_bound = rule.lower_bound(stats)
        lower_bounds.append(lower_bound)
        if rule.update(n_iter, lower_bound, params):
            converged = True
            break
    if max_iter > 0:
        rule.finish(lower_bound, converged)
    return EMRun(params, lower_bound, lower_bounds, n_iter, converged, rule)


def restart_rngs(rng, n):
    """The random streams of ``n`` restarts, fixed before any of them runs.

    Restart 0 draws from ``rng`` itself, exactly as a single run would, so ``n_init > 1``
    repeats the ``n_init=1`` fit as its first restart and can only improve on it. Restart
    i >= 1 draws from its own MT19937 stream, the (i - 1)-th child of a SeedSequence made
    from ``rng``'s state at the start (read, not advanced: its key as the entropy, its
    position as the spawn key). The streams therefore depend on ``rng``'s state alone,
    never on how the restarts are scheduled.
    """
    if n == 1:
        return [rng]
    _, key, pos = rng.get_state()[:3]
    children = np.random.SeedSequence(key, spawn_key=(int(pos),)).spawn(n - 1)
    return [rng] + [np.random.RandomState(np.random.MT19937(c)) for c in children]


class ThreadShare:
    """The threads of concurrent restarts: ``n_threads`` split evenly between the restarts
    still running, at most ``workers`` at a time. Once fewer restarts are left than
    workers, those still running take the threads of the idle ones (with 4 restarts on 2
    threads, the last runs its remaining iterations on both instead of leaving one idle).
    The kernels' results do not depend on their thread count, so neither does the fit."""

    def __init__(self, n_threads, n_runs, workers):
        self._n_threads = n_threads
        self._workers = workers
        self._left = n_runs            # restarts not finished, running or waiting
        self._lock = threading.Lock()

    def __call__(self):
        """The thread count for a running restart's next pass."""
        return max(1, self._n_threads // max(1, min(self._workers, self._left)))

    def finished(self):
        with self._lock:
            self._left -= 1


def fit_restarts(family, X, sample_weight, init_params, make_rule, *, n_init, rng, max_iter,
                 n_threads, sequential=False):
    """Run EM from ``n_init`` starting points and keep the best (scikit-learn's choice rule).

    ``init_params(X, sample_weight, rng, n_threads) -> params`` (``n_threads``: the restart's
    share, for a compiled initialisation); ``make_rule(index) -> rule`` gives each restart its
    own convergence rule. Restarts run concurrently on Python threads (the
    kernels release the GIL), splitting ``n_threads`` between them (:class:`ThreadShare`:
    those left at the end take the threads of finished ones); each restart has its own
    random stream (:func:`restart_rngs`: restart 0 is the run ``n_init=1`` would make), so
    the result does not depend on the scheduling. ``sequential`` runs them one after
    another (verbose output stays in order).
    """
    rngs = restart_rngs(rng, n_init)
    workers = 1 if sequential else max(1, min(n_init, n_threads))

    share = ThreadShare(n_threads, n_init, workers)

    def one(index):
        try:
            rule = make_rule(index)
            params = init_params(X, sample_weight, rngs[index], share())
            if max_iter == 0:
                return EMRun(params, -math.inf, [], 0, False, rule)
            return em_loop(family, X, sample_weight, params, max_iter=max_iter,
                           n_threads=share, rng=rngs[index], rule=rule)
        finally:
            share.finished()

    if workers == 1:
        runs = [one(i) for i in range(n_init)]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            runs = list(pool.map(one, range(n_init)))
    return best_run(runs)


def best_run(runs):
    """The run with the highest final lower bound; the first one on ties (as scikit-learn)."""
    best = runs[0]
    for run in runs[1:]:
        if run.lower_bound > best.lower_bound:
            best = run
    return best
