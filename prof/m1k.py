"""M1 kernel alone (reps passes) for perf stat / perf record: backend n_threads reps."""
import sys, numpy as np
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
for _ in range(reps):
    kernels.missing_estep(X, mean, cov, backend=backend, n_threads=nth)
