#!/usr/bin/env python
"""Small default fits in the main thread before and after another Python thread has run
emfast's OpenMP kernels (each such thread gets its own libgomp team; with more OpenMP threads
than cores libgomp sleeps between parallel regions), on 2 threads and on 1.

    python benchmarks/fit_from_threads.py [--repeat 30]

scikit-learn's digits (1,797 x 64), GaussianMixture(K, covariance_type="spherical",
random_state=0), K = 3 and 10: the median wall time of ``repeat`` fits per line.
"""

import argparse
import statistics
import time
import warnings
from concurrent.futures import ThreadPoolExecutor


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=30)
    args = p.parse_args(argv)
    from sklearn.datasets import load_digits

    from emfast import GaussianMixture

    X = load_digits().data.astype(float)

    def fit(K, n_threads):
        t0 = time.perf_counter()
        GaussianMixture(K, covariance_type="spherical", random_state=0,
                        n_threads=n_threads).fit(X)
        return time.perf_counter() - t0

    def line(label):
        for K in (3, 10):
            ms = {t: statistics.median(fit(K, t) for _ in range(args.repeat)) * 1e3
                  for t in (2, 1)}
            print(f"{label}, K={K}: n_threads=2 {ms[2]:.2f} ms, n_threads=1 {ms[1]:.2f} ms")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        line("main thread only")
        with ThreadPoolExecutor(1) as pool:
            pool.submit(fit, 3, 2).result()     # the pool's thread now has an OpenMP team
            line("after a fit in another thread")


if __name__ == "__main__":
    main()
