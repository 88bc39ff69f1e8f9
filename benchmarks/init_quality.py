#!/usr/bin/env python
"""Does emfast's initialisation cost fit quality? And what does a whole default fit cost?

Quality (default): for each case, the default ``GaussianMixture(K, covariance_type=...)``
of both libraries is fitted with ``random_state`` 0..S-1 and the median of the final
``lower_bound_`` is printed side by side (higher is better; "ok" when emfast's median is not
below scikit-learn's, up to 1e-9 relative). Cases: E1-E4 (``compare.make_data``) and
scikit-learn's bundled iris, wine, breast_cancer and digits with K = 3 and 10 and all four
covariance types.

Speed (``--speed``): the same default fits with ``random_state=0``, both libraries in this
process on the same data, best of 3 after one warm-up fit each; the ratio is
scikit-learn's time over emfast's.

Usage:
    python benchmarks/init_quality.py                       # all cases, 10 seeds
    python benchmarks/init_quality.py --cases E1,E3 --seeds 3
    python benchmarks/init_quality.py --speed --cases E1,E2,E3,E4,digits-full-10
"""

import argparse
import os
import statistics
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import make_data  # noqa: E402

# name: (N, D, K, covariance_type, n_init)
E_CASES = {
    "E1": (100_000, 10, 10, "full", 1),
    "E2": (1_000_000, 10, 16, "diag", 1),
    "E3": (10_000, 2, 3, "full", 1),
    "E4": (50_000, 30, 8, "full", 4),
}
REAL_SETS = ("iris", "wine", "breast_cancer", "digits")
COV_TYPES = ("full", "tied", "diag", "spherical")


def all_cases():
    names = list(E_CASES)
    for data in REAL_SETS:
        for K in (3, 10):
            for ct in COV_TYPES:
                names.append(f"{data}-{ct}-{K}")
    return names


_data_cache = {}


def case(name):
    """(X, K, covariance_type, n_init) of a case name."""
    if name in E_CASES:
        N, D, K, ct, n_init = E_CASES[name]
        key = (N, D, K)
        if key not in _data_cache:
            _data_cache[key] = make_data(N, D, K)
        return _data_cache[key], K, ct, n_init
    data, ct, K = name.rsplit("-", 2)
    if data not in _data_cache:
        from sklearn import datasets

        _data_cache[data] = getattr(datasets, f"load_{data}")().data.astype(np.float64)
    return _data_cache[data], int(K), ct, 1


def fit(lib, X, K, ct, n_init, seed):
    if lib == "emfast":
        from emfast import GaussianMixture
    else:
        from sklearn.mixture import GaussianMixture
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GaussianMixture(K, covariance_type=ct, n_init=n_init, random_state=seed).fit(X)


def quality(names, seeds):
    print(f"median final lower_bound_ over random_state 0..{seeds - 1} (higher is better)")
    print(f"{'case':28s} {'scikit-learn':>14s} {'emfast':>14s}  verdict")
    bad = 0
    for name in names:
        X, K, ct, n_init = case(name)
        lb = {lib: statistics.median(fit(lib, X, K, ct, n_init, s).lower_bound_
                                     for s in range(seeds))
              for lib in ("sklearn", "emfast")}
        ok = lb["emfast"] >= lb["sklearn"] - 1e-9 * abs(lb["sklearn"])
        bad += not ok
        print(f"{name:28s} {lb['sklearn']:14.6f} {lb['emfast']:14.6f}  "
              f"{'ok' if ok else 'LOWER'}", flush=True)
    print(f"{len(names) - bad} of {len(names)} cases: emfast's median not below "
          "scikit-learn's")


def best_time(f, repeats=3):
    f()  # warm-up (first-call costs excluded)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def speed(names):
    print("whole default fit(), random_state=0, best of 3 after a warm-up (ms)")
    print(f"{'case':28s} {'scikit-learn':>12s} {'emfast':>10s} {'ratio':>7s}")
    for name in names:
        X, K, ct, n_init = case(name)
        t = {lib: best_time(lambda lib=lib: fit(lib, X, K, ct, n_init, 0))
             for lib in ("sklearn", "emfast")}
        print(f"{name:28s} {t['sklearn'] * 1e3:12.1f} {t['emfast'] * 1e3:10.1f} "
              f"{t['sklearn'] / t['emfast']:6.1f}x", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", help="comma-separated case names (default: all)")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--speed", action="store_true", help="time the fits instead")
    args = ap.parse_args()
    names = args.cases.split(",") if args.cases else all_cases()
    unknown = [n for n in names if n not in all_cases()]
    if unknown:
        ap.error(f"unknown cases {unknown}; known: {', '.join(all_cases())}")
    if args.speed:
        speed(names)
    else:
        quality(names, args.seeds)


if __name__ == "__main__":
    main()
