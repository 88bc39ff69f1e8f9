"""Run by compare_latent.py with a Python that has pomegranate (1.x): pomegranate's seconds
per EM iteration of a GeneralMixtureModel from given parameters, printed as one JSON line.

    python _pomegranate_child.py CASE X.npy START.npz REPEATS THREADS A B

CASE "L1": Categorical components (START has weights (K,) and probs (K, J, C)); "P1":
Poisson components (weights, lambdas (K, D)). Per iteration = (T_B - T_A) / (B - A) of fits
with max_iter A and B and no tolerance stop, medians of REPEATS, in float64 as emfast.
"""

import json
import sys
import time

import numpy as np
import torch
from pomegranate import __version__ as pomegranate_version
from pomegranate.distributions import Categorical, Poisson
from pomegranate.gmm import GeneralMixtureModel


def model(case, start, max_iter):
    weights = torch.tensor(start["weights"], dtype=torch.float64)
    if case == "L1":
        dists = [Categorical(probs=torch.tensor(p, dtype=torch.float64)) for p in start["probs"]]
    else:
        dists = [Poisson(lambdas=torch.tensor(lam, dtype=torch.float64))
                 for lam in start["lambdas"]]
    # tol=-inf: "improvement < tol" never holds, so exactly max_iter iterations run
    return GeneralMixtureModel(dists, priors=weights, max_iter=max_iter, tol=-float("inf"),
                               check_data=False)


def main():
    case, x_path, start_path, repeats, threads, a, b = sys.argv[1:]
    repeats, a, b = int(repeats), int(a), int(b)
    torch.set_num_threads(int(threads))
    X = np.load(x_path)
    X = torch.tensor(X.astype(np.int64) if case == "L1" else X, dtype=None)
    start = dict(np.load(start_path))
    model(case, start, 1).fit(X)              # warm-up: allocations, first-call set-up
    medians = []
    for n in (a, b):
        times = []
        for _ in range(repeats):
            m = model(case, start, n)
            t = time.perf_counter()
            m.fit(X)
            times.append(time.perf_counter() - t)
        medians.append(float(np.median(times)))
    print(json.dumps({"seconds_per_iter": (medians[1] - medians[0]) / (b - a),
                      "note": f"pomegranate {pomegranate_version}, torch {torch.__version__} "
                              f"({threads} threads, float64)"}))


if __name__ == "__main__":
    main()
