#!/usr/bin/env python
"""Batch fitting of HMMs: ``emfast.fit_many_hmm`` beside fitting the same problems one by one.

    python benchmarks/compare_hmm_batch.py [--cases HB1,HB1f] [--repeat 3] [--threads 2]

HB1: 1,000 problems, each 3 sequences of 100 frames, D=3, K=3 states, diagonal
covariances; every fit runs exactly 20 Baum-Welch iterations (``tol=-inf``) from the
estimator's default start (``random_state=0``). HB1f: the same with full covariances.
The problems: a sticky 3-state chain per problem, Gaussian emissions at random places.

Timed, each in this one process on the same problems (median of ``--repeat``):

* ``emfast.fit_many_hmm`` on all problems, with ``n_threads`` threads, and its
  initialisation alone (the same call with ``n_iter=0``: each problem's start, its random
  numbers drawn in Python as GaussianHMM draws them, its k-means with 10 restarts and its
  covariances in the kernel); the difference is the compiled Baum-Welch;
* emfast's GaussianHMM in a Python loop (``n_threads=1``), on the first
  ``--loop-problems`` problems (default 200), scaled to the full count;
* hmmlearn's GaussianHMM in a Python loop (BLAS limited to 1 thread) on the first 100
  problems, scaled.

The mean final log-likelihoods of the timed problems are printed beside the times
(hmmlearn starts from its own k-means, so its optima may differ).
"""

import os
import sys
import warnings

import numpy as np

if os.path.dirname(os.path.abspath(__file__)) not in map(os.path.abspath, sys.path):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from compare import median_time  # noqa: E402

# name: (problems, sequences, frames per sequence, D, K, covariance_type, n_iter)
HMM_BATCH_CASES = {
    "HB1": (1_000, 3, 100, 3, 3, "diag", 20),
    "HB1f": (1_000, 3, 100, 3, 3, "full", 20),
}
SEED = 12345


def make_problems(P, S, T, D, K, seed=SEED):
    """P problems of S sequences of T frames: a sticky K-state chain, unit-variance
    Gaussian emissions at uniform random centres in [-4, 4]^D."""
    rng = np.random.RandomState(seed)
    problems = []
    for _ in range(P):
        centres = rng.uniform(-4, 4, size=(K, D))
        stay = rng.rand(S * T) < 0.9
        z = rng.randint(K, size=S * T)
        for t in range(1, S * T):
            if stay[t]:
                z[t] = z[t - 1]
        problems.append((centres[z] + rng.standard_normal((S * T, D)), [T] * S))
    return problems


def _loop(make, problems):
    """Fit the problems one by one; the mean final log-likelihood."""
    return float(np.mean([make().fit(X, ln).monitor_.history[-1] for X, ln in problems]))


def run_case(name, repeat, threads, loop_problems, backends):
    from threadpoolctl import threadpool_limits
    import emfast
    from emfast.hmm import GaussianHMM

    P, S, T, D, K, cov, n_iter = HMM_BATCH_CASES[name]
    problems = make_problems(P, S, T, D, K)
    kw = dict(n_components=K, covariance_type=cov, n_iter=n_iter, tol=-np.inf,
              random_state=0)
    Pl = min(loop_problems, P)
    rows = []
    for be in backends:
        emfast.fit_many_hmm(problems[:20], backend=be, n_threads=threads, **kw)   # warm-up
        t, fits = median_time(lambda: emfast.fit_many_hmm(problems, backend=be,
                                                     n_threads=threads, **kw), repeat)
        t0, _ = median_time(lambda: emfast.fit_many_hmm(problems, backend=be, n_threads=threads,
                                                   **dict(kw, n_iter=0)), repeat)
        rows.append((f"emfast.fit_many_hmm ({be}, {threads} threads)", t, "measured",
                     float(fits.log_likelihood_[:Pl].mean()), P))
        rows.append((f"... of which the starts (n_iter=0)", t0, "measured", np.nan, P))
        rows.append((f"... of which Baum-Welch (the kernel)", t - t0, "difference", np.nan,
                     P))
    base = rows[0][1]
    for be in backends:
        GaussianHMM(**kw, backend=be, n_threads=1).fit(*problems[0])
        t, ll = median_time(lambda: _loop(lambda: GaussianHMM(**kw, backend=be, n_threads=1),
                                     problems[:Pl]), repeat)
        rows.append((f"emfast GaussianHMM ({be}), Python loop", t * P / Pl, "scaled", ll, Pl))
    try:
        from hmmlearn.hmm import GaussianHMM as HlHMM
    except ImportError:
        HlHMM = None
    if HlHMM is not None:
        Ph = min(100, P)
        with threadpool_limits(1):
            t, ll = median_time(lambda: _loop(lambda: HlHMM(**kw), problems[:Ph]), repeat)
        rows.append(("hmmlearn GaussianHMM, Python loop", t * P / Ph, "scaled", ll, Ph))
    print(f"\n## {name}: {P:,} problems of {S} sequences x {T} frames, D={D}, K={K}, {cov}, "
          f"{n_iter} iterations each (tol=-inf); median of {repeat}")
    print("| method | seconds | | problems timed | mean final log-likelihood | "
          "fit_many_hmm is faster by |")
    print("|---|---:|---|---:|---:|---:|")
    for label, t, how, ll, n in rows:
        ratio = "" if label.startswith("...") else f"{t / base:.1f}×"
        print(f"| {label} | {t:.2f} | {how} | {n:,} | {ll:.4f} | {ratio} |")


def main(argv=None):
    from compare import chosen_cases, print_header, side_parser, usable_cpus

    p = side_parser(__doc__, "HB1,HB1f", HMM_BATCH_CASES)
    p.add_argument("--loop-problems", type=int, default=200)
    args = p.parse_args(argv)
    from emfast._config import available_backends
    backends = [b for b in args.backends.split(",") if b in available_backends("hmm_batch")]
    cases = chosen_cases(p, args.cases, HMM_BATCH_CASES, "HMM batch case")
    threads = args.threads or usable_cpus()
    warnings.filterwarnings("ignore")
    import logging
    logging.getLogger("hmmlearn").setLevel(logging.ERROR)
    logging.getLogger("emfast").setLevel(logging.ERROR)
    print_header(threads)
    for name in cases:
        run_case(name, args.repeat, threads, args.loop_problems, backends)


if __name__ == "__main__":
    main()
