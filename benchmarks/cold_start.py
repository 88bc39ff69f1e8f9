"""What a new user waits for: each step in a fresh interpreter, first with an empty Numba cache
(cold), then with the cache that run wrote.

    python benchmarks/cold_start.py [STEP ...]

STEP is "default" (import emfast, show_config(), two default fits), "gm-COV-DTYPE" (two
GaussianMixture fits with backend="numba", e.g. gm-full-float64) or "hmm-COV" (a GaussianHMM
fit with backend="numba"); all of them when none is given. Wall times and the process's CPU
time are printed: on a busy machine the CPU time is the better guess of the wall time on a
quiet one (compiling is single-threaded).
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

STEPS = ["default", "gm-full-float64", "gm-spherical-float64", "gm-full-float32", "hmm-diag",
         "hmm-full"]

_STEP = r'''
import io, json, sys, time
t0 = time.perf_counter(); c0 = time.process_time()
import numpy as np
import emfast
r = {"import emfast": time.perf_counter() - t0}
step = sys.argv[1]


def timed(name, fit):
    t, c = time.perf_counter(), time.process_time()
    fit()
    r[name] = time.perf_counter() - t
    r[name + " (cpu)"] = time.process_time() - c


X = np.random.default_rng(0).normal(size=(1000, 3))
if step == "default":
    timed("show_config", lambda: emfast.show_config(file=io.StringIO()))
    for name in ("first fit", "second fit"):
        timed(name, lambda: emfast.GaussianMixture(3, random_state=0).fit(X))
elif step.startswith("gm-"):
    _, cov, dtype = step.split("-")
    for name in ("first fit", "second fit"):
        timed(name, lambda: emfast.GaussianMixture(3, covariance_type=cov, backend="numba",
                                                   random_state=0).fit(X.astype(dtype)))
else:
    from emfast.hmm import GaussianHMM
    cov = step.split("-")[1]
    for name in ("first fit", "second fit"):
        timed(name, lambda: GaussianHMM(3, covariance_type=cov, backend="numba", n_iter=5,
                                        random_state=0).fit(X[:600], [200, 200, 200]))
r["numba imported"] = "numba" in sys.modules
r["process cpu"] = time.process_time() - c0
print(json.dumps(r))
'''


def run(step, cache_dir):
    src = Path(__file__).resolve().parent.parent / "src"
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir,
               PYTHONPATH=os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")])))
    res = subprocess.run([sys.executable, "-c", _STEP, step], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(steps):
    for step in steps:
        with tempfile.TemporaryDirectory() as cache_dir:
            for state in ("cold", "cached"):
                r = run(step, cache_dir)
                cells = [f"{k} {v:.3f} s" if isinstance(v, float) else f"{k} {v}"
                         for k, v in r.items()]
                print(f"{step:<21} {state:<6} load {os.getloadavg()[0]:4.1f}  "
                      + "  ".join(cells), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or STEPS)
