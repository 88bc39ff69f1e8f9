"""A/B timing of two builds of the Cython missing-value kernel in one process, interleaved,
on M1: OLD_SO n_threads reps (OLD_SO: a copy of an earlier _missing_avx2 .so)."""
import importlib.util, sys, time, numpy as np
from emfast._cython import _missing_avx2 as new
from emfast._patterns import pattern_order, precision_inputs
from emfast._threads import single_threaded_blas
spec = importlib.util.spec_from_file_location("_missing_avx2", sys.argv[1])
old = importlib.util.module_from_spec(spec); spec.loader.exec_module(old)
nth, reps = int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
N, D = 100_000, 20
A = rng.standard_normal((D, D))
X = rng.standard_normal((N, D)) @ A
X = np.where(rng.random(X.shape) < 0.3, np.nan, X)
X = np.ascontiguousarray(X[pattern_order(np.isnan(X))[0]])
prec, logdet = precision_inputs((A.T @ A + np.eye(D))[None])
args = lambda: (X, np.zeros(0), np.zeros(1), np.zeros((1, D)), prec, logdet, np.zeros(1),
                np.zeros((1, D)), np.zeros((1, D, D)), np.zeros((0, 0)), np.zeros(0),
                np.zeros((0, 0)), np.zeros((0, 0)), nth)
ts = {"old": [], "new": []}
with single_threaded_blas():
    for _ in range(reps):
        for name, mod in (("old", old), ("new", new)):
            a = args(); t = time.perf_counter(); mod.missing_estep(*a)
            ts[name].append(time.perf_counter() - t)
print(f"{nth} thread(s):", {k: f"median {1e3*np.median(v):.2f} min {1e3*min(v):.2f} ms" for k, v in ts.items()})
