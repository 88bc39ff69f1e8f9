"""An M2-like kernel call for instruction counts: K=10, D=10, 20% NaN in rows drawn from a
few hundred shared patterns, sorted by pattern; reps passes at 1 thread."""
import sys, numpy as np
from emfast._patterns import pattern_order
from emfast import kernels
reps = int(sys.argv[1])
rng = np.random.default_rng(0)
N, D, K = 20_000, 10, 10
A = rng.standard_normal((D, D))
X = rng.standard_normal((N, D)) @ A
masks = rng.random((300, D)) < 0.2
X[masks[rng.integers(0, 300, N)]] = np.nan
X = np.ascontiguousarray(X[pattern_order(np.isnan(X))[0]])
means = rng.standard_normal((K, D)); covs = np.stack([A.T @ A + (1 + k) * np.eye(D) for k in range(K)])
for _ in range(reps):
    kernels.missing_estep(X, means, covs, np.full(K, 1 / K), n_threads=1)
