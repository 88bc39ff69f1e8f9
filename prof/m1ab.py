"""Interleaved timing of the M1 kernel at 1 and 2 threads, and of X'X: reps."""
import sys, time, numpy as np
from emfast._patterns import pattern_order
from emfast import kernels
reps = int(sys.argv[1])
rng = np.random.default_rng(0)
N, D = 100_000, 20
A = rng.standard_normal((D, D))
X = rng.standard_normal((N, D)) @ A
X = np.where(rng.random(X.shape) < 0.3, np.nan, X)
order, npat = pattern_order(np.isnan(X))
X = np.ascontiguousarray(X[order])
mean = np.zeros((1, D)); cov = (A.T @ A + np.eye(D))[None]
Xc = np.nan_to_num(X)
ts = {1: [], 2: [], "XtX": []}
for _ in range(reps):
    for nth in (1, 2):
        t = time.perf_counter(); kernels.missing_estep(X, mean, cov, n_threads=nth)
        ts[nth].append(time.perf_counter() - t)
    t = time.perf_counter(); Xc.T @ Xc; ts["XtX"].append(time.perf_counter() - t)
print({k: f"median {1e3*np.median(v):.2f} min {1e3*min(v):.2f} ms" for k, v in ts.items()})
