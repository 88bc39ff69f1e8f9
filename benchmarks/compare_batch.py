#!/usr/bin/env python
"""Batch fitting: ``emfast.fit_many`` beside fitting the same problems one by one.

    python benchmarks/compare_batch.py [--cases B1,B1s,B1sw] [--repeat 3] [--threads 2]
    python benchmarks/compare.py --cases B1s         (the same)

B1: 10,000 problems of N=500 rows, D=2, K=3 components, full covariances, each from three
Gaussian blobs at random places; every fit runs exactly 100 EM iterations (``tol=0``,
``max_iter=100``) from GaussianMixture's default start (k-means, ``n_init=1``,
``random_state=0``). B1s: the same with 1,000 problems (a quick run). B1sw: B1s with
sample weights (uniform in [0.5, 2), one row in ten of weight 0); scikit-learn's
GaussianMixture takes no weights, so only emfast's rows are timed.

Timed, each in this one process on the same problems:

* ``emfast.fit_many`` on all problems (median of ``--repeat`` runs after a warm-up on 50
  problems), with ``n_threads`` threads;
* scikit-learn's GaussianMixture in a Python loop, one thread (BLAS limited to 1);
* the same loop spread over 2 worker processes by joblib (loky), problems in batches;
* emfast's own GaussianMixture in a Python loop (``n_threads=1``).

The three loops are linear in the number of problems; they are timed on the first
``--loop-problems`` problems (default 500; median of ``--repeat``) and scaled to the full
count (marked "scaled"). Ratios are against fit_many's median. The fits' mean lower bounds
are printed beside the times: the libraries end at the same optima (emfast's loop and
fit_many to rounding).
"""

import os
import sys
import warnings

import numpy as np

if os.path.dirname(os.path.abspath(__file__)) not in map(os.path.abspath, sys.path):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from compare import median_time  # noqa: E402

# name: (problems, N, D, K, covariance_type, max_iter)
BATCH_CASES = {
    "B1": (10_000, 500, 2, 3, "full", 100),
    "B1s": (1_000, 500, 2, 3, "full", 100),
    "B1sw": (1_000, 500, 2, 3, "full", 100),
}
WEIGHTED_CASES = {"B1sw"}
SEED = 12345


def make_problems(P, N, D, K, seed=SEED):
    """P problems of N rows: K blobs each, at uniform random centres in [-6, 6]^D, unit
    spread, stacked in one (P * N, D) array."""
    rng = np.random.RandomState(seed)
    centres = rng.uniform(-6, 6, size=(P, K, D))
    labels = rng.randint(K, size=(P, N))
    X = np.take_along_axis(centres, labels[:, :, None], axis=1) + rng.standard_normal((P, N, D))
    return X.reshape(P * N, D)


def make_weights(P, N, seed=SEED):
    """Per-row sample weights for P problems of N rows: uniform in [0.5, 2), a tenth 0."""
    rng = np.random.RandomState(seed + 1)
    return rng.uniform(0.5, 2.0, size=P * N) * (rng.uniform(size=P * N) >= 0.1)


def _params(K, cov, max_iter):
    return dict(n_components=K, covariance_type=cov, tol=0.0, max_iter=max_iter,
                random_state=0)


def _loop(cls, X, N, P, kw, sw=None):
    """Fit P problems one by one (sample weights sw over all rows, or None); mean lower
    bound."""
    weights = ({} if sw is None else dict(sample_weight=sw[i * N:(i + 1) * N])
               for i in range(P))       # scikit-learn's fit takes no sample_weight
    lbs = [cls(**kw).fit(X[i * N:(i + 1) * N], **w).lower_bound_
           for i, w in enumerate(weights)]
    return float(np.mean(lbs))


def _sklearn_chunk(X, N, kw):
    """One joblib task: a batch of problems (rows stacked), fitted in a loop."""
    import warnings as w
    from sklearn.mixture import GaussianMixture
    from threadpoolctl import threadpool_limits
    w.filterwarnings("ignore")
    with threadpool_limits(1):
        return [GaussianMixture(**kw).fit(X[i * N:(i + 1) * N]).lower_bound_
                for i in range(len(X) // N)]


def _joblib_loop(X, N, P, kw, workers=2):
    from joblib import Parallel, delayed
    chunks = np.array_split(np.arange(P), workers * 4)
    parts = Parallel(n_jobs=workers)(
        delayed(_sklearn_chunk)(X[c[0] * N:(c[-1] + 1) * N], N, kw) for c in chunks if len(c))
    return float(np.mean([v for part in parts for v in part]))


def run_case(name, repeat, threads, loop_problems, backends):
    from threadpoolctl import threadpool_limits
    import emfast
    from sklearn.mixture import GaussianMixture as SkGM

    P, N, D, K, cov, max_iter = BATCH_CASES[name]
    X = make_problems(P, N, D, K)
    sw = make_weights(P, N) if name in WEIGHTED_CASES else None
    kw = _params(K, cov, max_iter)
    lengths = np.full(P, N)
    Pl = min(loop_problems, P)
    rows = []
    for be in backends:
        emfast.fit_many(X[:50 * N], lengths[:50], backend=be, n_threads=threads,
                        sample_weight=None if sw is None else sw[:50 * N], **kw)
        t, fits = median_time(lambda: emfast.fit_many(X, lengths, backend=be, n_threads=threads,
                                                 sample_weight=sw, **kw), repeat)
        rows.append((f"emfast.fit_many ({be}, {threads} threads)", t, "measured",
                     float(fits.lower_bound_[:Pl].mean()), P))
    base = rows[0][1]
    scale = P / Pl
    if sw is None:               # scikit-learn's GaussianMixture takes no sample weights
        with threadpool_limits(1):
            t, lb = median_time(lambda: _loop(SkGM, X, N, Pl, kw), repeat)
        rows.append(("scikit-learn GaussianMixture, Python loop", t * scale, "scaled", lb,
                     Pl))
        _joblib_loop(X[:8 * N], N, 8, kw)      # start the workers
        t, lb = median_time(lambda: _joblib_loop(X, N, Pl, kw), repeat)
        rows.append(("scikit-learn, joblib over 2 processes", t * scale, "scaled", lb, Pl))
    for be in backends:
        emfast.GaussianMixture(**kw, backend=be, n_threads=1).fit(X[:N])
        t, lb = median_time(lambda: _loop(lambda **a: emfast.GaussianMixture(
            **a, backend=be, n_threads=1), X, N, Pl, kw, sw), repeat)
        rows.append((f"emfast GaussianMixture ({be}), Python loop", t * scale, "scaled", lb,
                     Pl))
    print(f"\n## {name}: {P:,} problems, N={N}, D={D}, K={K}, {cov}, {max_iter} iterations "
          f"each (tol=0){', sample weights' if sw is not None else ''}; median of {repeat}")
    print("| method | seconds | | problems timed | mean lower bound (first "
          f"{Pl}) | fit_many is faster by |")
    print("|---|---:|---|---:|---:|---:|")
    for label, t, how, lb, n in rows:
        print(f"| {label} | {t:.2f} | {how} | {n:,} | {lb:.6f} | {t / base:.1f}× |")


def main(argv=None):
    from compare import chosen_cases, print_header, quiet_convergence, side_parser, usable_cpus

    p = side_parser(__doc__, "B1", BATCH_CASES)
    p.add_argument("--loop-problems", type=int, default=500)
    args = p.parse_args(argv)
    from emfast._config import available_backends
    backends = [b for b in args.backends.split(",") if b in available_backends("batch")]
    cases = chosen_cases(p, args.cases, BATCH_CASES, "batch case")
    threads = args.threads or usable_cpus()
    quiet_convergence()
    warnings.filterwarnings("ignore", message=r"(?s).*did not converge")
    print_header(threads)
    for name in cases:
        run_case(name, args.repeat, threads, args.loop_problems, backends)
    return 0


if __name__ == "__main__":
    sys.exit(main())
