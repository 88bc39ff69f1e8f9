#!/usr/bin/env python
"""Missing values: emfast's EMImputer beside scikit-learn's IterativeImputer and column-mean
imputation, on correlated Gaussian data with values missing completely at random.

    python benchmarks/compare_missing.py [--cases M1,M2,M3] [--repeat 3] [--threads 2]
    python benchmarks/compare.py --missing          (the same)

M1: N=100,000 rows, D=20, 30% MCAR. Each library fits and imputes (``fit_transform``) in this
one process on the same data; the time is the best of ``--repeat`` runs after a warm-up on
the first 2,000 rows. EMImputer runs to convergence (``tol=1e-8`` on the mean log-likelihood
per row); IterativeImputer runs with its defaults (which are ``max_iter=10``, BayesianRidge,
``tol=1e-3``). RMSE is over the missing values against the values that were removed. EMImputer's time per
iteration is given two ways, each set beside one BLAS pass over X (``X' X`` on the complete
data, dgemm, O(N D^2), with the same threads): its ``fit_transform`` time over ``n_iter_``
(which spreads the one-off work -- validation, grouping rows by pattern, the final
imputation pass -- over the iterations), and the time of one more iteration, (T_b - T_a) /
(b - a) of two ``fit`` calls with ``tol=0`` and ``max_iter`` a and b (the definition M2 and
compare.py's per-iteration cases use).

M2: GaussianMixture, full covariances, N=100,000, D=10, K=10 (compare.py's make_data), with
20% of the values missing at random: the per-iteration EM time (compare.py's method:
(T_b - T_a) / (b - a) from the same starting parameters, tol=0, median of ``--repeat``) on
the data with NaN, beside the same on the complete data.

M3: as M1, but every row has its own pattern of missing values (no two rows alike), so every
row needs its own conditional regression; its per-iteration time is set beside M1's.
"""

import os
import sys
import time
import warnings

import numpy as np

if os.path.dirname(os.path.abspath(__file__)) not in map(os.path.abspath, sys.path):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compare as C  # noqa: E402

SEED = 777
N, D, FRACTION = 100_000, 20, 0.3
WARM_UP_ROWS = 2_000
CASES = ("M1", "M2", "M3")
M2_SHAPE, M2_FRACTION, M2_ITERS = (100_000, 10, 10), 0.2, (2, 8)
M1_ITERS = (2, 12)


def correlated_data(seed=SEED):
    """(N, D) rows of a normal with a random correlated covariance (eigenvalues 0.2 .. ~5)."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(D, D))
    cov = A @ A.T / D + 0.2 * np.eye(D)
    return rng.multivariate_normal(rng.normal(size=D), cov, size=N), rng


def mcar_mask(rng, unique_rows):
    """A (N, D) boolean mask, True with probability FRACTION; with ``unique_rows`` drawn again
    where a row repeats an earlier row's pattern, until no two rows are alike."""
    mask = rng.random((N, D)) < FRACTION
    while unique_rows:
        _, first = np.unique(np.packbits(mask, axis=1), axis=0, return_index=True)
        repeat = np.setdiff1d(np.arange(N), first)
        if not len(repeat):
            break
        mask[repeat] = rng.random((len(repeat), D)) < FRACTION
    return mask


def best_time(fn, repeats):
    best, out = np.inf, None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def marginal_iteration(make, X, repeats):
    """Seconds of one more EM iteration: (T_b - T_a) / (b - a) of ``fit`` with tol=0 and
    max_iter a and b (M1_ITERS), each the median of ``repeats``."""
    a, b = M1_ITERS
    times = [np.median([best_time(lambda n=n: make(tol=0.0, max_iter=n).fit(X), 1)[0]
                        for _ in range(repeats)]) for n in (a, b)]
    return (times[1] - times[0]) / (b - a)


def run_m2(threads, repeats, backends):
    """Per-iteration time of a full-covariance GaussianMixture with and without NaN."""
    N, D_, K = M2_SHAPE
    X = C.make_data(N, D_, K)
    start = C.make_start(X, K, "full")
    Xm = np.where(np.random.default_rng(SEED).random(X.shape) < M2_FRACTION, np.nan, X)
    a, b = M2_ITERS
    rows = []
    for backend in backends:
        lib = f"emfast-{backend}"
        complete, _ = C.per_iteration(lib, X, K, "full", start, a, b, repeats, threads)
        missing, _ = C.per_iteration(lib, Xm, K, "full", start, a, b, repeats, threads)
        rows.append(["M2", f"GaussianMixture full ({backend})", C.fmt_ms(complete),
                     C.fmt_ms(missing), f"{missing / complete:.1f}×"])
    C.print_table(["case", "model", "complete data ms/iter", f"{M2_FRACTION:.0%} NaN ms/iter",
                   "NaN / complete"], 2, rows)
    print(f"\nN={N:,}, D={D_}, K={K}, full; per iteration from iterations {a} and {b}, "
          f"median of {repeats}\n")


def run(cases, threads, repeats, backends):
    from threadpoolctl import threadpool_limits

    from emfast.impute import EMImputer

    if "M2" in cases:
        run_m2(threads, repeats, backends)
        cases = [c for c in cases if c != "M2"]
        if not cases:
            return
    X, rng = correlated_data()
    with threadpool_limits(limits=threads):
        blas_pass, _ = best_time(lambda: X.T @ X, 5)
    rows, per_iter = [], {}
    for case in cases:
        mask = mcar_mask(rng, unique_rows=case == "M3")
        Xm = np.where(mask, np.nan, X)
        n_patterns = len(np.unique(np.packbits(mask, axis=1), axis=0))

        def rmse(filled):
            return float(np.sqrt(np.mean((filled[mask] - X[mask]) ** 2)))

        libs = [(f"emfast EMImputer ({b})",
                 lambda b=b, **kw: EMImputer(**{"tol": 1e-8, "max_iter": 1000, "backend": b,
                                                "n_threads": threads, **kw}))
                for b in backends]
        if case == "M1":
            from sklearn.experimental import enable_iterative_imputer  # noqa: F401
            from sklearn.impute import IterativeImputer, SimpleImputer

            libs += [("sklearn IterativeImputer (defaults: max_iter=10)", IterativeImputer),
                     ("column means (SimpleImputer)", SimpleImputer)]
        base = None
        for name, make in libs:
            make().fit_transform(Xm[:WARM_UP_ROWS])
            with threadpool_limits(limits=threads), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                seconds, (est, filled) = best_time(
                    lambda: (lambda e: (e, e.fit_transform(Xm)))(make()), repeats)
                marginal = (marginal_iteration(make, Xm, repeats)
                            if name.startswith("emfast") else None)
            n_iter = getattr(est, "n_iter_", None)
            it = seconds / n_iter if n_iter else None
            if name.startswith("emfast"):
                per_iter.setdefault(case, marginal)
            if "IterativeImputer" in name:
                base = seconds
            rows.append([case, f"{n_patterns:,}", name, C.fmt_ms(seconds),
                         str(n_iter) if n_iter is not None else "", C.fmt_ms(it),
                         f"{it / blas_pass:.1f}×" if it and name.startswith("emfast") else "",
                         C.fmt_ms(marginal) if marginal else "",
                         f"{marginal / blas_pass:.1f}×" if marginal else "",
                         f"{rmse(filled):.4f}"])
        if base is not None:
            for row in rows:
                if row[0] == case and row[2].startswith("emfast"):
                    row.append(f"{base / (float(row[3]) / 1e3):.1f}×")
    for row in rows:
        row += [""] * (11 - len(row))
    C.print_table(["case", "patterns", "imputer", "fit_transform ms", "iterations",
                   "ms/iter (fit_transform / n_iter)", "/ BLAS pass",
                   "ms/iter (one more iteration)", "/ BLAS pass", "RMSE",
                   "vs IterativeImputer"], 3, rows)
    print(f"\nN={N:,}, D={D}, {FRACTION:.0%} MCAR; best of {repeats}; one BLAS pass over X "
          f"(X' X, {threads} threads) = {blas_pass * 1e3:.2f} ms")
    a, b = M1_ITERS
    print(f"one more iteration: (T_{b} - T_{a}) / {b - a} of fit(tol=0, max_iter={a} and {b}), "
          f"medians of {repeats}")
    if "M1" in per_iter and "M3" in per_iter and per_iter["M1"]:
        print(f"M3 per iteration / M1 per iteration (one more iteration) = "
              f"{per_iter['M3'] / per_iter['M1']:.2f}")


def main(argv=None):
    return C.side_main(argv, __doc__, CASES, run)


if __name__ == "__main__":
    sys.exit(main())
