"""EM drivers, written once for every model family.

A family provides ``e_step(X, sample_weight, params, n_threads) -> stats`` (statistics with
``loglik`` and ``weight_sum``) and ``m_step(X, sample_weight, stats, rng) -> params``. The
drivers own everything else: the loop, restarts, and the convergence rule.

A convergence rule is an object with ``lower_bound(stats) -> float``,
``update(n_iter, lower_bound, params) -> bool`` (record the value, report it, say whether EM
has converged), ``small(gain) -> bool`` (whether a gain this small means convergence;
SQUAREM asks it of the gain it estimates is still to come) and ``finish(lower_bound,
converged)``. :class:`ToleranceRule` is scikit-learn's (mean log-likelihood, ``|change| <
tol``); the HMMs pass hmmlearn's monitor as a rule. The rule travels back in
``EMRun.rule`` with its history.

``accelerate="squarem"`` runs SQUAREM around the same EM map (:func:`squarem_loop`); the
family then also provides ``pack(params) -> vector`` and ``unpack(vector, like) ->
params`` (``emfast._unconstrained``; ``unpack`` may raise ValueError or LinAlgError for a
vector that is no model, which the loop treats as a rejected extrapolation), and may set
``natural_coordinates = True`` where the vector holds the parameters themselves rather
than logs or Cholesky factors (a rejected extrapolation is then retried at half the
step).
"""

import math
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from time import perf_counter

import numpy as np

from emfast._threads import single_threaded_blas
from emfast._validation import check_random_state
from emfast.exceptions import ConvergenceWarning, compatible


class BoundEStep:
    """``e_step`` for families whose E-step is a kernel bound to X once per EM run and
    thread (restarts run concurrently, each on its own thread with its own statistics
    buffers; a new thread count binds again). A subclass sets up ``self._bound =
    threading.local()`` (:meth:`_init_binding`) and provides ``_bind(X, sample_weight,
    n_threads) -> callable(params) -> stats``."""

    def _init_binding(self):
        self._bound = threading.local()

    def e_step(self, X, sample_weight, params, n_threads):
        b = self._bound
        if not (getattr(b, "X", None) is X and b.sw is sample_weight
                and b.n_threads == n_threads):
            b.estep = self._bind(X, sample_weight, n_threads)
            b.X, b.sw, b.n_threads = X, sample_weight, n_threads
        return b.estep(params)


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

    def small(self, gain):
        """Whether a gain this small in the lower bound means convergence, ``|gain| <
        tol`` as :meth:`update` judges a change (SQUAREM asks it of its estimate of the
        gain still to come; a loss, from an M-step that re-seeded a component, is no
        convergence)."""
        return abs(gain) < self.tol

    def finish(self, lower_bound, converged):
        if self.monitor is not None:
            self.monitor.init_end(lower_bound, converged)


ACCELERATIONS = (None, "squarem")


def check_accelerate(accelerate):
    """``accelerate`` checked: None (plain EM) or "squarem"."""
    if not (accelerate is None or (isinstance(accelerate, str)
                                   and accelerate in ACCELERATIONS)):
        raise ValueError("The 'accelerate' parameter must be None (plain EM) or 'squarem', "
                         f"got {accelerate!r}")
    return accelerate


def em_loop(family, X, sample_weight, params, *, max_iter, n_threads, rng, rule,
            accelerate=None):
    """Batch EM from ``params`` for at most ``max_iter`` iterations.

    Each iteration is one E-step pass (statistics at the current parameters, whose
    log-likelihood gives the lower bound) followed by the M-step, which comes before the
    convergence check so that even one iteration updates the parameters. ``n_threads``:
    the E-steps' thread count, or a :class:`ThreadShare` asked before each E-step.
    ``accelerate="squarem"``: :func:`squarem_loop` instead (``max_iter`` then bounds the
    E-steps).
    """
    if check_accelerate(accelerate) == "squarem":
        return squarem_loop(family, X, sample_weight, params, max_iter=max_iter,
                            n_threads=n_threads, rng=rng, rule=rule)
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


# SQUAREM's step-length safeguards (Varadhan & Roland 2008; the R package's defaults): the
# step is at most 1 at first (a plain EM double step), and its bound grows by MSTEP
# whenever it binds. A rejected step cuts the bound to the step / MSTEP (the R package
# cuts it only when the bound bound; a free step that overshoots was then retried at
# about the same length cycle after cycle: 2x the E-steps on a Poisson HMM), unless the
# retry halfway that natural coordinates get wins (squarem_loop). A step within
# SKIP_STEP of 1 is the EM double step itself, taken without an extrapolation.
MSTEP = 4.0
SKIP_STEP = 0.01


def squarem_loop(family, X, sample_weight, params, *, max_iter, n_threads, rng, rule):
    """SQUAREM (Varadhan & Roland 2008, scheme S3) around the family's EM map F, on the
    family's parameter vector (``family.pack``/``family.unpack``).

    One cycle from x0: x1 = F(x0) and x2 = F(x1) (two E-steps, at x0 and x1), then with r =
    x1 - x0, v = x2 - 2 x1 + x0 and the step alpha = -|r| / |v|, clamped to [-step_max, -1],
    the extrapolated point x' = x0 - 2 alpha r + alpha^2 v (alpha = -1 gives x2). The E-step
    at x' gives its log-likelihood: when that is at least x1's (the last EM iterate; a
    stricter test than the R package's, which compares F(x') with x0 and allows a small
    loss), the next cycle starts from F(x') (SQUAREM's stabilising EM step, whose
    log-likelihood the next cycle's first E-step gives). Otherwise (or when not finite) x'
    is rejected, its M-step skipped, the next cycle starts from x2, the plain EM result, and
    the step bound is cut. Where the family's ``pack`` gives the parameters themselves
    (``natural_coordinates``: the mixtures and the imputer, whose M-steps are ratios of
    expected counts and moments, so that the EM map is near a line), a rejected step mostly
    overshoots along the right line, and it is first tried once more at (alpha - 1) / 2,
    halfway to the EM double step (one more E-step); when that wins, the next cycle starts
    from its EM image and the bound stays. Over the 81 mixture and imputer fits of the
    benchmark's S1 and S2 this took 18% fewer E-steps to reach plain EM's final
    log-likelihood. Along logs and Cholesky factors (the HMMs) the path bends: retrying
    there, with the bound cut or kept, gained nothing or cost E-steps on 12 HMM fits.
    Testing x' itself rather than F(x') costs no E-step when x' wins and one when it loses,
    and no M-step runs at a losing point (a point that empties a component would warn
    there). A step within 1% of -1, or an undefined one (v = 0 near convergence, a
    non-finite vector), is the plain double step: the next cycle starts from x2 without
    evaluating x'. Every E-step yields the log-likelihood of the point it was taken at: a
    cycle costs three E-steps (two after a plain step, four after a retry), none repeated.

    Convergence, two tests, either of which stops:

    * the rule sees the sequence of SQUAREM iterates -- the log-likelihood of each cycle's
      start x0, which the cycle's first E-step gives -- as plain EM's rule sees the EM
      iterates (it never decreases), and stops when one cycle gains less than ``tol`` (or
      hmmlearn's monitor says so of a cycle);
    * the gain still to come: near an optimum EM converges linearly, the error shrinking
      by a rate lam each step along its slowest direction, so |r| / |v| = 1 / (1 - lam)
      and the log-likelihood, quadratic in the error, gains g (1 + lam^2 + lam^4 + ...)
      = g / (1 - lam^2) from x0 on, g being the EM step's gain from x0 to x1. SQUAREM
      stops when ``rule.small`` says that estimate is below ``tol``. With lam = 0 it is
      plain EM's own test at x0; on a slow fit (lam near 1) it asks for a gain about
      |r| / (2 |v|) times smaller than plain EM's test, so SQUAREM stops near the optimum
      and not on a flat stretch, where plain EM stops with as much as g / (1 - lam^2)
      still to gain. Stopping then keeps x2 and x1's bound (its M-step and bound, as
      below), and the rule is told x1's bound too, so that its history ends at the bound
      returned.

    The first test alone stops only where plain EM would stop too but spends, on slow fits,
    many cycles that each gain little more than ``tol``. With the second, those 81 fits took
    21% fewer E-steps in all, none of them ending below plain EM's final log-likelihood.
    SQUAREM stops after ``max_iter`` E-steps, wherever in a cycle that falls. As in plain
    EM, the result is the M-step of the last accepted point (``EMRun.params = F(x)``,
    ``EMRun.lower_bound`` the lower bound at x). ``EMRun.n_iter`` counts E-steps (map
    evaluations) and ``EMRun.lower_bounds`` has one entry per E-step, in order (x0, x1, x'
    of each cycle, and the retried x': a rejected x' is lower than the entry before).

    Empty components re-seeded by an M-step make the map jump; an extrapolation through
    the jump is then most likely rejected by the log-likelihood test, which is what guards
    every step; an accepted point whose EM image is not finite is rejected too.

    Like any accelerator, SQUAREM can converge to a saddle point that plain EM, crawling,
    would have drifted past (measured: a 3-state GaussianHMM whose states start alike sat
    at a saddle that plain EM left after some 15,000 iterations); restarts (``n_init``)
    are the remedy there as for any local optimum.
    """
    if not (hasattr(family, "pack") and hasattr(family, "unpack")):
        raise ValueError(f"accelerate='squarem' needs an EM family with pack and unpack; "
                         f"{type(family).__name__} has none")
    path = _Path(family, X, sample_weight, n_threads, rng, rule, max_iter)
    natural = getattr(family, "natural_coordinates", False)
    step_max = 1.0
    x0 = params
    result = (params, -math.inf)  # what stopping now returns: F(x), and the bound at x
    while not path.done():
        stats, bound0 = path.e_step(x0)
        x1 = path.m_step(stats)
        result = (x1, bound0)
        path.report(bound0, x1)
        if path.done():
            break
        stats, floor = path.e_step(x1)     # x1's bound: what an extrapolation must reach
        x2 = path.m_step(stats)
        result = (x2, floor)
        p0 = family.pack(x0)
        r = family.pack(x1) - p0
        v = family.pack(x2) - p0 - 2.0 * r
        ratio = _ratio(r, v)
        if rule.small(_gain_to_come(floor - bound0, ratio)):
            path.report(floor, x2)
            path.converged = True
        if path.done():
            break
        alpha, bound = _step_length(ratio, step_max)
        x0 = x2                            # the next start, unless the extrapolation wins
        if alpha < -1.0 - SKIP_STEP:
            won = _extrapolate(path, p0, r, v, alpha, x2, floor)
            if (won is None and natural and not path.done()
                    and (alpha - 1.0) / 2.0 < -1.0 - SKIP_STEP):
                won = _extrapolate(path, p0, r, v, (alpha - 1.0) / 2.0, x2, floor)
            if won is None:
                step_max, bound = max(1.0, -alpha / MSTEP), False
            else:
                x0 = won[0]
                result = won
        if bound:
            step_max *= MSTEP
    return path.result(*result)


def _extrapolate(path, p0, r, v, alpha, like, floor):
    """:func:`_try` at x' = x0 - 2 alpha r + alpha^2 v; None where x' is no model."""
    x_new = _unpack(path.family, p0 - 2.0 * alpha * r + alpha * alpha * v, like)
    return None if x_new is None else _try(path, x_new, floor)


def _try(path, x_new, floor):
    """(F(x'), the bound at x') when the bound at the extrapolated point x' is at least
    ``floor`` and its EM image is finite (an extrapolation can empty a state or component,
    which the M-step leaves undefined); None otherwise, without the M-step."""
    stats, bound = path.e_step(x_new)
    if not bound >= floor:                 # NaN too
        return None
    x_stab = path.m_step(stats)
    return (x_stab, bound) if np.all(np.isfinite(path.family.pack(x_stab))) else None


class _Path:
    """The E-steps of one SQUAREM run, with the bookkeeping that :func:`squarem_loop`
    describes: the evaluation count, every lower bound, what the rule is told."""

    def __init__(self, family, X, sample_weight, n_threads, rng, rule, max_iter):
        self.family = family
        self.X = X
        self.sample_weight = sample_weight
        self.n_threads = n_threads
        self.rng = rng
        self.rule = rule
        self.max_iter = max_iter
        self.n_iter = 0
        self.lower_bounds = []
        self.converged = False

    def done(self):
        return self.converged or self.n_iter >= self.max_iter

    def e_step(self, params):
        """(statistics at ``params``, the lower bound there); one map evaluation."""
        threads = self.n_threads() if isinstance(self.n_threads, ThreadShare) \
            else self.n_threads
        stats = self.family.e_step(self.X, self.sample_weight, params, threads)
        self.n_iter += 1
        lower_bound = self.rule.lower_bound(stats)
        self.lower_bounds.append(lower_bound)
        return stats, lower_bound

    def m_step(self, stats):
        return self.family.m_step(self.X, self.sample_weight, stats, self.rng)

    def report(self, lower_bound, params):
        """Tell the rule the bound at a cycle's start (``params``: its EM image)."""
        self.converged = self.rule.update(self.n_iter, lower_bound, params)

    def result(self, params, lower_bound):
        if self.max_iter > 0:
            self.rule.finish(lower_bound, self.converged)
        return EMRun(params, lower_bound, self.lower_bounds, self.n_iter, self.converged,
                     self.rule)


def _ratio(r, v):
    """|r| / |v|, NaN where it is undefined (v = 0, non-finite norms)."""
    nr, nv = float(np.linalg.norm(r)), float(np.linalg.norm(v))
    if not (nv > 0 and math.isfinite(nr) and math.isfinite(nv)):
        return math.nan
    return nr / nv


def _step_length(ratio, step_max):
    """(alpha, whether the bound -step_max binds): S3's -|r| / |v| (``ratio``) clamped to
    [-step_max, -1]; -1 (the plain double step) where it is undefined (NaN)."""
    if not ratio >= 0:
        return -1.0, False
    if ratio >= step_max:
        return -step_max, True
    return -max(ratio, 1.0), False


def _gain_to_come(gain, ratio):
    """The log-likelihood still to gain from x0, g / (1 - lam^2) with lam = 1 - 1 / a and
    a = |r| / |v| at least 1 (:func:`squarem_loop`); the EM step's gain g itself where
    the ratio is undefined."""
    a = ratio if ratio >= 1.0 else 1.0
    return gain * a * a / (2.0 * a - 1.0)


def _unpack(family, vec, like):
    """``family.unpack(vec, like)``, or None when the extrapolated vector is not finite or
    its parameters cannot be formed (a covariance that is numerically not positive
    definite): SQUAREM then takes the plain EM step."""
    if not np.all(np.isfinite(vec)):
        return None
    try:
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            return family.unpack(vec, like)
    except (ValueError, np.linalg.LinAlgError):
        return None


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
                 n_threads, sequential=False, accelerate=None):
    """Run EM from ``n_init`` starting points and keep the best (scikit-learn's choice rule).

    ``init_params(X, sample_weight, rng, n_threads) -> params`` (``n_threads``: the restart's
    share, for a compiled initialisation); ``make_rule(index) -> rule`` gives each restart its
    own convergence rule. Restarts run concurrently on Python threads (the
    kernels release the GIL), splitting ``n_threads`` between them (:class:`ThreadShare`:
    those left at the end take the threads of finished ones); each restart has its own
    random stream (:func:`restart_rngs`: restart 0 is the run ``n_init=1`` would make), so
    the result does not depend on the scheduling. ``sequential`` runs them one after
    another (verbose output stays in order). ``accelerate``: as :func:`em_loop`'s.
    """
    check_accelerate(accelerate)
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
                           n_threads=share, rng=rngs[index], rule=rule,
                           accelerate=accelerate)
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


def fit_mixture(est, family, X, sample_weight, start, warm_params, *, n_threads, sequential):
    """EM for a mixture estimator with scikit-learn's conventions, and its fitted run
    attributes (``converged_``, ``n_iter_``, ``lower_bound_``, ``lower_bounds_``); returns
    the best run (its parameters are the estimator's to store).

    ``warm_params`` not None: a warm start, EM from them with the rule starting at
    ``est.lower_bound_``; else ``est.n_init`` restarts from ``start`` (fit_restarts).
    Reads ``est``'s tol, max_iter, n_init, random_state, verbose, verbose_interval and
    accelerate; warns as scikit-learn does when the best run did not converge (its
    stacklevel is the user's call of ``est.fit`` -> ``_fit`` -> ``_run_em`` -> here).
    """
    rng = check_random_state(est.random_state)

    def make_rule(index, lower_bound=-math.inf):
        if not est.verbose:
            return ToleranceRule(est.tol, lower_bound)
        monitor = VerboseMonitor(est.verbose, est.verbose_interval)
        monitor.init_begin(index)
        return ToleranceRule(est.tol, lower_bound, monitor)

    with single_threaded_blas():
        if warm_params is not None:
            run = em_loop(family, X, sample_weight, warm_params, max_iter=est.max_iter,
                          n_threads=n_threads, rng=rng, rule=make_rule(0, est.lower_bound_),
                          accelerate=est.accelerate)
        else:
            run = fit_restarts(family, X, sample_weight, start, make_rule, n_init=est.n_init,
                               rng=rng, max_iter=est.max_iter, n_threads=n_threads,
                               sequential=sequential, accelerate=est.accelerate)
    if not run.converged and est.max_iter > 0:
        warnings.warn("Best performing initialization did not converge. Try different "
                      "init parameters, or increase max_iter, tol, or check for "
                      "degenerate data.", compatible(ConvergenceWarning), stacklevel=5)
    est.converged_ = run.converged
    est.n_iter_ = run.n_iter
    est.lower_bound_ = run.lower_bound
    est.lower_bounds_ = run.lower_bounds
    return run
