import sys, time, numpy as np
from emfast._patterns import pattern_order
from emfast import kernels
backend = sys.argv[1]; nth = int(sys.argv[2]); reps = int(sys.argv[3])
rng = np.random.default_rng(0)
N, D = 100_000, 20
A = rng.standard_normal((D, D))
X = rng.standard_normal((N, D)) @ A
X = np.where(rng.random(X.shape) < 0.3, np.nan, X)
order, npat = pattern_order(np.isnan(X))
X = np.ascontiguousarray(X[order])
mean = np.zeros((1, D)); cov = (A.T @ A + np.eye(D))[None]
kernels.missing_estep(X, mean, cov, backend=backend, n_threads=nth)
ts = []
for _ in range(reps):
    t = time.perf_counter(); kernels.missing_estep(X, mean, cov, backend=backend, n_threads=nth); ts.append(time.perf_counter() - t)
Xc = np.nan_to_num(X); t=[]
for _ in range(reps):
    t0 = time.perf_counter(); Xc.T @ Xc; t.append(time.perf_counter() - t0)
print(backend, nth, "patterns", npat, "median ms", 1e3 * np.median(ts), "min", 1e3 * min(ts), "XtX min", 1e3*min(t))
