#!/usr/bin/env python
"""Latent classes and acceleration: emfast's CategoricalMixture and PoissonMixture per EM
iteration beside a vectorised NumPy EM (and pomegranate where it is installed), and the
number of EM-map evaluations with and without SQUAREM.

    python benchmarks/compare_latent.py [--cases L1,P1,S1,S2] [--repeat 3] [--threads 2]
    python benchmarks/compare.py --latent        (the same)

L1: latent class analysis, N=200,000 rows, J=10 items of 4 categories each, K=6 classes.
P1: Poisson mixture, N=1,000,000 rows, D=5 counts, K=4.
Per iteration means compare.py's definition: (T_b - T_a) / (b - a) of two fits with
``tol=0`` and ``max_iter`` a and b from the same start (the same ``random_state``), the
median of ``--repeat``, so that validation and initialisation cancel. The NumPy EM is the
textbook vectorised one with BLAS for the heavy products: for L1 the one-hot encoding of X
(N x 40, made once, outside the timing) times the log-probability table, the log-sum-exp
over K, then the responsibilities' transpose times the one-hot matrix for the counts; for
P1 X times log(lambda)', the log-sum-exp, then R' X. It starts from emfast's parameters
after a iterations and runs b - a more; the log-likelihoods of the two after b iterations are
printed side by side, so that the table shows that both ran the same EM.

pomegranate (1.x, on PyTorch) is timed where ``EMFAST_POMEGRANATE_PYTHON`` names a Python
that has it (a separate environment: its CUDA-enabled PyTorch wheels are several GB): a fit
of ``max_iter`` a and b from the same parameters, in a child process.

S1: EM-map evaluations (``n_iter_``, one E-step each) and wall time to ``tol=1e-8``, with
``accelerate=None`` and ``accelerate="squarem"`` from the same start, on slow-converging
fits: a GaussianMixture with heavily overlapping components, an EMImputer (a correlated
normal whose two halves of features are observed together in 5% of the rows), a latent
class model whose classes overlap, and a GaussianHMM with similar states. The final mean
log-likelihoods per row are printed beside them.

S2: the same count over many fits, so that SQUAREM's gain is seen against how slowly plain
EM converges rather than on four chosen cases: Gaussian mixtures (three overlapping 2-D
clusters at two separations, K = 2 and 3), the EM imputer (the halves of a correlated
normal seen together in 5% or 2% of the rows; values missing completely at random, 30% or
50%), latent class and Bernoulli mixtures (classes of two overlaps) and a Poisson mixture
of close rates, each from seeds 0 to 5 (data and random_state): 78 fits. Two counts per fit:
``n_iter_`` of each to its own stop at ``tol=1e-8``, and the E-steps SQUAREM takes to first
reach plain EM's final log-likelihood. The first is the issue's; where SQUAREM ends at a
clearly higher log-likelihood (it left a plateau that plain EM stopped on, judging one
iteration's gain below tol) it also counts the E-steps spent beyond plain EM's point, and
the second says how much faster SQUAREM reaches what plain EM gave. The summary groups the
fits by plain EM's ``n_iter_``.
"""

import json
import os
import subprocess
import sys
import warnings

import numpy as np

if os.path.dirname(os.path.abspath(__file__)) not in map(os.path.abspath, sys.path):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compare as C  # noqa: E402

SEED = 2026
CASES = ("L1", "P1", "S1", "S2")
L1_SHAPE = (200_000, 10, 4, 6)      # N, J, categories per item, K
P1_SHAPE = (1_000_000, 5, 4)        # N, D, K
# b - a = 30 iterations: the ten of compare.py left the difference of two fits of 60 ms
# within the noise of a shared 2-core machine (L1 ranged 1.8-5.2 ms/iteration run to run)
ITERS = (2, 32)
WARM_UP_ROWS = 2_000


def latent_class_data(N, J, C_, K, seed=SEED, concentration=0.5):
    """(codes (N, J) int64, classes (N,)) from K classes with Dirichlet(concentration)
    category probabilities per item."""
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(K, 5.0))
    probs = rng.dirichlet(np.full(C_, concentration), size=(K, J))      # (K, J, C)
    z = rng.choice(K, size=N, p=weights)
    u = rng.random((N, J, 1))
    codes = (u > np.cumsum(probs[z], axis=2)).sum(axis=2)
    return np.minimum(codes, C_ - 1), z


def poisson_data(N, D, K, seed=SEED):
    rng = np.random.default_rng(seed)
    lam = rng.gamma(2.0, 3.0, size=(K, D))
    z = rng.choice(K, size=N, p=rng.dirichlet(np.full(K, 5.0)))
    return rng.poisson(lam[z]).astype(np.float64), z


def _logsumexp_rows(A):
    m = A.max(axis=1, keepdims=True)
    return (m + np.log(np.exp(A - m).sum(axis=1, keepdims=True)))[:, 0]


class NumpyLatentClassEM:
    """Vectorised EM of a latent class model on a one-hot matrix (N, sum C_j)."""

    def __init__(self, onehot, item_of_column):
        self.H = onehot
        self.item = item_of_column

    def run(self, weights, log_theta, n_iter):
        """n_iter EM iterations from (weights (K,), log_theta (K, sum C_j)); returns the
        log-likelihood per row at the last E-step and the final parameters."""
        for _ in range(n_iter):
            A = self.H @ log_theta.T + np.log(weights)
            norm = _logsumexp_rows(A)
            R = np.exp(A - norm[:, None])
            nk = R.sum(axis=0)
            counts = R.T @ self.H                                     # (K, sum C_j)
            totals = np.zeros((len(nk), self.item.max() + 1))
            np.add.at(totals.T, self.item, counts.T)
            weights = nk / nk.sum()
            with np.errstate(divide="ignore"):
                log_theta = np.log(counts / totals[:, self.item])
        return norm.mean(), weights, log_theta


class NumpyPoissonEM:
    def __init__(self, X):
        from scipy.special import gammaln

        self.X = X
        self.row_const = -gammaln(X + 1.0).sum(axis=1)

    def run(self, weights, lam, n_iter):
        for _ in range(n_iter):
            A = self.X @ np.log(lam).T - lam.sum(axis=1) + np.log(weights)
            A += self.row_const[:, None]
            norm = _logsumexp_rows(A)
            R = np.exp(A - norm[:, None])
            nk = R.sum(axis=0)
            weights = nk / nk.sum()
            lam = (R.T @ self.X) / nk[:, None]
        return norm.mean(), weights, lam


def pomegranate_per_iteration(case, X, start, repeats, threads):
    """pomegranate's seconds per iteration in a child process of EMFAST_POMEGRANATE_PYTHON,
    or None when that is not set."""
    python = os.environ.get("EMFAST_POMEGRANATE_PYTHON")
    if not python:
        return None, "set EMFAST_POMEGRANATE_PYTHON to a Python with pomegranate to time it"
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_pomegranate_child.py")
    np.save("/tmp/emfast_pom_X.npy", X)
    np.savez("/tmp/emfast_pom_start.npz", **start)
    out = subprocess.run([python, path, case, "/tmp/emfast_pom_X.npy",
                          "/tmp/emfast_pom_start.npz", str(repeats), str(threads),
                          str(ITERS[0]), str(ITERS[1])],
                         capture_output=True, text=True, check=False)
    if out.returncode:
        return None, f"pomegranate failed: {out.stderr.strip().splitlines()[-1:]}"
    res = json.loads(out.stdout.strip().splitlines()[-1])
    return res["seconds_per_iter"], res["note"]


def side_by_side(case, title, shape, cls, K, X, numpy_em, pom_start, threads, repeats,
                 backends):
    """One per-iteration table: emfast's ``cls`` on each backend, the NumPy EM from emfast's
    parameters after a iterations (``numpy_em(fitted) -> log-likelihood after b - a more``)
    and pomegranate from the same parameters (``pom_start(fitted)``), where it is set up."""
    a, b = ITERS
    rows = []
    for backend in backends:
        def make(**kw):
            return cls(K, random_state=0, backend=backend, n_threads=threads, **kw)

        make(max_iter=1).fit(X[:WARM_UP_ROWS])
        t_em, est_a, est_b = C.median_per_iteration(
            lambda n: make(tol=0.0, max_iter=n).fit(X), *ITERS, repeats)
        rows.append([f"emfast {cls.__name__} ({backend})", C.fmt_ms(t_em),
                     f"{est_b.lower_bound_:.6f}"])
    t_np, ll = C.median_time(lambda: numpy_em(est_a), repeats)
    t_np /= b - a
    rows.append(["NumPy EM (vectorised, BLAS)", C.fmt_ms(t_np), f"{ll:.6f}"])
    t_pom, note = pomegranate_per_iteration(case, X, pom_start(est_a), repeats, threads)
    if t_pom is not None:
        family = "Categorical" if case == "L1" else "Poisson"
        rows.append([f"pomegranate GeneralMixtureModel({family})", C.fmt_ms(t_pom), ""])
    for row in rows:
        row.append(f"{t_np / (float(row[1]) / 1e3):.1f}×")
    C.print_table([title, "ms / iteration", "log-likelihood after b", "NumPy EM / this"], 1,
                  rows)
    print(f"\n{shape}; per iteration = (T_{b} - T_{a}) / {b - a}, medians of {repeats}; "
          f"{note}\n")


def run_l1(threads, repeats, backends):
    from emfast import CategoricalMixture

    N, J, C_, K = L1_SHAPE
    X, _ = latent_class_data(N, J, C_, K)
    onehot = np.zeros((N, J * C_))
    onehot[np.arange(N)[:, None], X + C_ * np.arange(J)] = 1.0
    em = NumpyLatentClassEM(onehot, np.repeat(np.arange(J), C_))
    steps = ITERS[1] - ITERS[0]

    def numpy_em(est):
        log_theta = np.log(np.concatenate(est.probabilities_, axis=1))
        return em.run(est.weights_, log_theta, steps)[0]

    side_by_side("L1", "L1 latent class", f"N={N:,}, J={J} items x {C_} categories, K={K}",
                 CategoricalMixture, K, X, numpy_em,
                 lambda est: {"weights": est.weights_,
                              "probs": np.stack(est.probabilities_, axis=1)},
                 threads, repeats, backends)


def run_p1(threads, repeats, backends):
    from emfast import PoissonMixture

    N, D, K = P1_SHAPE
    X, _ = poisson_data(N, D, K)
    em = NumpyPoissonEM(X)
    steps = ITERS[1] - ITERS[0]
    side_by_side("P1", "P1 Poisson mixture", f"N={N:,}, D={D}, K={K}", PoissonMixture, K, X,
                 lambda est: em.run(est.weights_, est.lambdas_, steps)[0],
                 lambda est: {"weights": est.weights_, "lambdas": est.lambdas_},
                 threads, repeats, backends)


def correlated_cov(rng, D):
    """A random (D, D) covariance with correlated features."""
    A = rng.normal(size=(D, D))
    return A @ A.T / D + 0.2 * np.eye(D)


def halves_apart(rng, cov, N, together):
    """N rows of N(0, cov) whose two halves of the features are seen together in a
    fraction ``together`` of the rows only, each other row missing one half (chosen at
    random): their cross-covariance is learnt slowly (EM's rate is the fraction of missing
    information)."""
    D = len(cov)
    X = rng.multivariate_normal(np.zeros(D), cov, size=N)
    half = rng.random(N) < 0.5
    both = rng.random(N) < together
    X[half & ~both, D // 2:] = np.nan
    X[~half & ~both, :D // 2] = np.nan
    return X


def s1_cases(threads):
    """(name, fit(accelerate, tol=1e-8, max_iter=100_000) -> (E-steps, final mean
    log-likelihood, the mean log-likelihood at every E-step or None where the estimator
    keeps none))."""
    from emfast import CategoricalMixture, GaussianMixture
    from emfast.hmm import GaussianHMM
    from emfast.impute import EMImputer

    rng = np.random.default_rng(SEED)
    cases = []
    # three heavily overlapping 2-D Gaussians
    X = np.concatenate([rng.normal(m, 1.0, size=(4000, 2)) for m in ([0, 0], [1, 0.5],
                                                                    [0.5, 1.2])])

    def gm(acc, tol=1e-8, max_iter=100_000, X=X):
        est = GaussianMixture(3, tol=tol, max_iter=max_iter, random_state=0,
                              n_threads=threads, accelerate=acc).fit(X)
        return est.n_iter_, est.lower_bound_, est.lower_bounds_

    cases.append(("GaussianMixture, 3 overlapping components, N=12,000, D=2, full", gm))
    cov = correlated_cov(rng, 10)
    Xm = halves_apart(rng, cov, 5000, 0.05)

    def imp(acc, tol=1e-8, max_iter=100_000, Xm=Xm):
        est = EMImputer(tol=tol, max_iter=max_iter, n_threads=threads,
                        accelerate=acc).fit(Xm)
        return est.n_iter_, est.loglik_history_[-1], est.loglik_history_

    cases.append(("EMImputer (MVN), N=5,000, D=10, halves seen together in 5% of rows", imp))
    codes, _ = latent_class_data(20_000, 8, 3, 4, seed=SEED + 1, concentration=3.0)

    def lca(acc, tol=1e-8, max_iter=100_000, codes=codes):
        est = CategoricalMixture(4, tol=tol, max_iter=max_iter, random_state=0,
                                 n_threads=threads, accelerate=acc).fit(codes)
        return est.n_iter_, est.lower_bound_, est.lower_bounds_

    cases.append(("CategoricalMixture, 4 overlapping classes, N=20,000, 8 items x 3", lca))
    states = np.repeat(rng.integers(0, 3, size=400), 10)
    Xh = rng.normal(states[:, None] * 0.6, 1.0, size=(len(states), 2))

    def hmm(acc, tol=1e-8, max_iter=100_000, Xh=Xh):
        est = GaussianHMM(3, tol=tol, n_iter=max_iter, random_state=0,
                          n_threads=threads, accelerate=acc).fit(Xh, [100] * 40)
        return est.n_iter_, est.monitor_.history[-1] / len(Xh), None

    cases.append(("GaussianHMM, 3 similar states, 40 x 100 frames, D=2, diag", hmm))
    return cases


S1_LONG_EM = 60_000
S1_LONG_SQUAREM = 5_000


def first_at(path, level):
    """The number of E-steps until ``path`` (a lower bound per E-step) first reaches
    ``level``; None if it never does."""
    return next((i + 1 for i, v in enumerate(path) if v >= level), None)


def near_optimum(fit):
    """"EM / SQUAREM (ratio)": the E-steps each takes to come within 1e-8 per row of the
    optimum, found as the best log-likelihood of a long run of each with ``tol=0``. Plain
    EM's count at ``tol=1e-8`` says where one step gains little; on a flat likelihood
    that is far from the optimum, and this count compares the two at one accuracy."""
    paths = [np.asarray(fit(acc, tol=0.0, max_iter=n)[2])
             for acc, n in ((None, S1_LONG_EM), ("squarem", S1_LONG_SQUAREM))]
    best = max(p.max() for p in paths)
    em, sq = (first_at(p, best - 1e-8) for p in paths)
    if em is None:
        return f"> {S1_LONG_EM:,} / {sq}"
    return f"{em:,} / {sq} ({em / sq:.1f}×)"


def run_s1(threads, repeats):
    rows = []
    for name, fit in s1_cases(threads):
        res = {}
        for acc in (None, "squarem"):
            fit(acc)                                    # warm-up (imports, kernels)
            seconds, out = C.median_time(lambda acc=acc: fit(acc), repeats)
            res[acc] = (seconds,) + out
        (t0, n0, l0, _), (t1, n1, l1, path) = res[None], res["squarem"]
        # E-steps until SQUAREM's log-likelihood first reaches plain EM's final one
        reach = None if path is None else first_at(path, l0 - 1e-8)
        rows.append([name, str(n0), str(n1), f"{n0 / n1:.1f}×",
                     "n/a" if reach is None else f"{reach} ({n0 / reach:.1f}×)",
                     "n/a" if path is None else near_optimum(fit),
                     C.fmt_ms(t0), C.fmt_ms(t1), f"{t0 / t1:.1f}×", f"{l0:.8f}", f"{l1:.8f}",
                     f"{l1 - l0:+.1e}"])
    C.print_table(["S1 (tol=1e-8)", "EM evaluations", "SQUAREM evaluations", "fewer",
                   "SQUAREM evaluations to EM's final log-lik",
                   "to within 1e-8 of the optimum: EM / SQUAREM", "EM ms", "SQUAREM ms",
                   "faster", "EM log-lik", "SQUAREM log-lik", "difference"], 1, rows)
    print(f"\nevaluations = n_iter_ (E-steps) to convergence: plain EM stops when one "
          "iteration gains less than tol, SQUAREM when one cycle (two EM steps and an "
          "extrapolation) does or when the gain still to come, g / (1 - lam^2) from an EM "
          "step's gain g and rate lam, is below tol; to EM's final log-lik = the E-steps "
          "until SQUAREM's log-likelihood first reaches plain EM's final value (less 1e-8); "
          "to within 1e-8 of the optimum = the E-steps until each first comes within 1e-8 "
          "per row of the best log-likelihood of two runs with tol=0, plain EM for "
          f"{S1_LONG_EM:,} E-steps and SQUAREM for {S1_LONG_SQUAREM:,}; times are "
          f"medians of {repeats}; log-lik: the mean per row at the last accepted point "
          "(lower_bound_; EMImputer: the last loglik_history_; GaussianHMM: the monitor's "
          "last value / frames)\n")


S2_SEEDS = 6


def s2_cases(threads):
    """(family, setting, seed, fit(accelerate) -> (n_iter_, final mean log-likelihood, the
    mean log-likelihood at every E-step)) for S2."""
    from emfast import BernoulliMixture, CategoricalMixture, GaussianMixture, PoissonMixture
    from emfast.impute import EMImputer

    def mixture(cls, K, X, seed):
        def fit(acc):
            est = cls(K, tol=1e-8, max_iter=100_000, random_state=seed, n_threads=threads,
                      accelerate=acc).fit(X)
            return est.n_iter_, est.lower_bound_, est.lower_bounds_
        return fit

    def imputer(X):
        def fit(acc):
            est = EMImputer(tol=1e-8, max_iter=100_000, n_threads=threads,
                            accelerate=acc).fit(X)
            return est.n_iter_, est.loglik_history_[-1], est.loglik_history_
        return fit

    cases = []
    for seed in range(S2_SEEDS):
        rng = np.random.default_rng(seed)
        for sep in (1.0, 0.7):
            X = np.concatenate([rng.normal(np.array(m) * sep, 1.0, size=(4000, 2))
                                for m in ([0, 0], [1, 0.5], [0.5, 1.2])])
            for K in (2, 3):
                cases.append(("GaussianMixture", f"separation {sep}, K={K}", seed,
                              mixture(GaussianMixture, K, X, seed)))
        cov = correlated_cov(rng, 10)
        for together in (0.05, 0.02):
            cases.append(("EMImputer", f"halves together in {together:.0%}", seed,
                          imputer(halves_apart(rng, cov, 5000, together))))
        for frac in (0.3, 0.5):
            X = rng.multivariate_normal(np.zeros(len(cov)), cov, size=5000)
            X[rng.random(X.shape) < frac] = np.nan
            X = X[~np.all(np.isnan(X), axis=1)]
            cases.append(("EMImputer", f"{frac:.0%} missing at random", seed, imputer(X)))
        for conc in (3.0, 6.0):
            codes, _ = latent_class_data(20_000, 8, 3, 4, seed=100 + seed, concentration=conc)
            cases.append(("CategoricalMixture", f"8 items x 3, K=4, overlap {conc:g}", seed,
                          mixture(CategoricalMixture, 4, codes, seed)))
            codes, _ = latent_class_data(20_000, 12, 2, 4, seed=200 + seed, concentration=conc)
            cases.append(("BernoulliMixture", f"12 items, K=4, overlap {conc:g}", seed,
                          mixture(BernoulliMixture, 4, codes, seed)))
        lam = np.array([[2.0, 3.0, 4.0], [2.5, 3.0, 3.5], [3.0, 2.5, 4.5]])
        counts = rng.poisson(lam[rng.integers(0, 3, 20_000)])
        cases.append(("PoissonMixture", "3 close rate profiles, K=3", seed,
                      mixture(PoissonMixture, 3, counts, seed)))
    return cases


S2_GROUPS = ((0, 300), (300, 1000), (1000, None))


def run_s2(threads):
    rows, fits = [], []
    for family, setting, seed, fit in s2_cases(threads):
        n0, l0, _ = fit(None)
        n1, l1, path = fit("squarem")
        # the first E-step at which SQUAREM's log-likelihood is at least plain EM's final one
        # (its own final one, should SQUAREM end lower: the difference column shows that)
        reach = first_at(path, min(l0, l1))
        fits.append((n0, n0 / n1, n0 / reach, l1 - l0))
        rows.append([family, setting, str(seed), str(n0), str(n1), f"{n0 / n1:.1f}×",
                     f"{reach} ({n0 / reach:.1f}×)", f"{l1 - l0:+.1e}"])
    C.print_table(["S2 (tol=1e-8)", "setting", "seed", "EM evaluations",
                   "SQUAREM evaluations", "fewer", "SQUAREM evaluations to EM's final "
                   "log-lik", "log-lik difference"], 3, rows)
    summary = []
    for lo, hi in S2_GROUPS:
        group = [f for f in fits if f[0] >= lo and (hi is None or f[0] < hi)]
        if not group:
            continue
        fewer, reach, diff = (np.array([f[i] for f in group]) for i in (1, 2, 3))
        summary.append([f"{lo:,}+" if hi is None else f"{lo:,}-{hi - 1:,}", str(len(group)),
                        f"{np.median(fewer):.1f}× (min {fewer.min():.1f}×)",
                        f"{np.median(reach):.1f}× (min {reach.min():.1f}×)",
                        f"{int(np.sum(fewer >= 5.0))} of {len(group)}",
                        f"{int(np.sum(reach >= 5.0))} of {len(group)}", f"{diff.min():+.1e}"])
    print()
    C.print_table(["plain EM evaluations", "fits", "fewer to own stop, median",
                   "fewer to EM's final log-lik, median", "≥ 5× to own stop",
                   "≥ 5× to EM's final log-lik",
                   "smallest log-lik difference (SQUAREM - EM)"], 1, summary)
    print("\nlog-lik = mean per row at the last accepted point (lower_bound_; EMImputer: the "
          "last loglik_history_); difference > 0: SQUAREM ended higher\n")


def run(cases, threads, repeats, backends):
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if "L1" in cases:
            run_l1(threads, repeats, backends)
        if "P1" in cases:
            run_p1(threads, repeats, backends)
        if "S1" in cases:
            run_s1(threads, repeats)
        if "S2" in cases:
            run_s2(threads)


def main(argv=None):
    return C.side_main(argv, __doc__, CASES, run)


if __name__ == "__main__":
    sys.exit(main())
