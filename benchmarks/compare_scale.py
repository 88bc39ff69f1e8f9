#!/usr/bin/env python
"""Model selection and data beyond memory: emfast.select_gaussian_mixture against
scikit-learn's loop (B2), and the peak memory of exact EM over a memmap (B4).

    python benchmarks/compare_scale.py [--cases B2,B4] [--repeat 3] [--threads 2]
                                       [--b4-gb 4] [--b4-dir /tmp]
    python benchmarks/compare.py --scale               (the same)

B2: N=50,000, D=5 (compare.py's make_data, 6 true components). Every K in 1..10 and every
covariance type (40 candidates), defaults otherwise (k-means start, tol=1e-3,
max_iter=100, random_state=0). scikit-learn: the usual loop, ``GaussianMixture(K,
covariance_type=t, random_state=0).fit(X)`` then ``.bic(X)`` for each candidate; emfast:
one ``select_gaussian_mixture(X, range(1, 11), criterion="bic", random_state=0)`` call
(which also gives AIC and ICL). Time: median of ``--repeat`` runs of each, interleaved,
after a warm-up on 4,096 rows; the chosen model and its BIC are printed beside.

B4: exact EM (``GaussianMixture.fit``) on a float64 ``np.memmap`` of ``--b4-gb`` GB
(D=16, K=5, diag, 3 iterations with tol=0; make_data written in chunks to ``--b4-dir``),
in a fresh process: the peak resident set size (VmHWM) of the process after the fit,
beside its size before the fit (imports and a warm-up fit on 4,096 in-memory rows done),
both as a fraction of the file size. The file is deleted afterwards.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

if os.path.dirname(os.path.abspath(__file__)) not in map(os.path.abspath, sys.path):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compare as C  # noqa: E402

CASES = ("B2", "B4")
B2_SHAPE = (50_000, 5, 6)           # N, D, true K
B2_KS = range(1, 11)
B4_SHAPE = (16, 5, "diag")          # D, K, covariance type
B4_ITERS = 3
TYPES = ("full", "diag", "tied", "spherical")


# ------------------------------------------------------------------------------------ B2
def sklearn_loop(X, threads):
    from sklearn.mixture import GaussianMixture
    best = None
    for K in B2_KS:
        for t in TYPES:
            bic = GaussianMixture(K, covariance_type=t, random_state=0).fit(X).bic(X)
            if best is None or bic < best[0]:
                best = (bic, K, t)
    return best


def emfast_selection(X, threads, backend):
    import emfast
    sel = emfast.select_gaussian_mixture(X, B2_KS, TYPES, criterion="bic", random_state=0,
                                         n_threads=threads, backend=backend)
    p = sel.best_params_
    return (float(sel.table_["bic"][sel.best_index_]), p["n_components"], p["covariance_type"])


def run_b2(threads, repeats, backends):
    from threadpoolctl import threadpool_limits
    N, D, K = B2_SHAPE
    X = C.make_data(N, D, K)
    runs = {"sklearn": lambda X_: sklearn_loop(X_, threads)}
    runs.update({f"emfast-{b}": (lambda X_, b=b: emfast_selection(X_, threads, b))
                 for b in backends})
    times = {name: [] for name in runs}
    best = {}
    with threadpool_limits(limits=threads):
        for run in runs.values():
            run(X[:4096])                                   # warm-up
        for _ in range(repeats):                            # interleaved
            for name, run in runs.items():
                C.cool_down()
                t0 = time.perf_counter()
                best[name] = run(X)
                times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["sklearn"])
    print(f"\nB2: selection over K = 1..10 x {len(TYPES)} covariance types, N={N:,}, D={D} "
          f"(true K = {K}); median of {repeats}, {threads} threads\n")
    C.print_table(["library", "time s", "speed-up", "best (K, type)", "its BIC"], 1, [
        [name, f"{statistics.median(ts):.2f}", C.fmt_ratio(base, statistics.median(ts)),
         f"{best[name][1]}, {best[name][2]}", f"{best[name][0]:.1f}"]
        for name, ts in times.items()])
    for name, ts in times.items():
        print(f"# {name}: " + ", ".join(f"{t:.2f}" for t in ts) + " s")


# ------------------------------------------------------------------------------------ B4
def write_memmap(path, gb):
    D, K, _ = B4_SHAPE
    N = int(gb * 1e9) // (8 * D)
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(N, D))
    centres = np.random.default_rng(C.SEED).normal(scale=4.0, size=(K, D))
    step = 1 << 20
    for start in range(0, N, step):          # one mixture, its rows drawn chunk by chunk
        stop = min(N, start + step)
        rng = np.random.default_rng((C.SEED, start // step))
        X[start:stop] = centres[rng.integers(0, K, stop - start)] + rng.standard_normal(
            (stop - start, D))
    X.flush()
    del X
    return N


def b4_child(path, threads, backend):
    """Runs in a fresh interpreter: print JSON with the file size and VmHWM before/after."""
    from threadpoolctl import threadpool_limits

    from emfast import GaussianMixture
    # (not C.quiet_convergence: it imports scikit-learn, 130 MiB of this process's peak)
    warnings.filterwarnings("ignore", message=r"(?s).*did not converge")
    D, K, cov = B4_SHAPE
    with threadpool_limits(limits=threads):
        GaussianMixture(K, covariance_type=cov, max_iter=1, backend=backend,
                        n_threads=threads).fit(C.make_data(4096, D, K))
        X = np.load(path, mmap_mode="r")
        before = C._vm_hwm_bytes()
        t0 = time.perf_counter()
        gm = GaussianMixture(K, covariance_type=cov, max_iter=B4_ITERS, tol=0, random_state=0,
                             backend=backend, n_threads=threads).fit(X)
        seconds = time.perf_counter() - t0
        after = C._vm_hwm_bytes()
    print(json.dumps({"file": os.path.getsize(path), "before": before, "after": after,
                      "seconds": seconds, "n_iter": gm.n_iter_}))


def run_b4(threads, gb, directory, backends):
    fd, path = tempfile.mkstemp(suffix=".npy", dir=directory)
    os.close(fd)
    try:
        t0 = time.perf_counter()
        N = write_memmap(path, gb)
        print(f"# B4: wrote {N:,} x {B4_SHAPE[0]} float64 rows ({os.path.getsize(path) / 1e9:.2f}"
              f" GB) to {path} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        rows = []
        for b in backends:
            proc = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "--_b4-child", path,
                 "--threads", str(threads), "--backends", b], capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"# B4 emfast-{b} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            f = r["file"]
            rows.append([f"emfast-{b}", f"{f / 1e9:.2f}", f"{r['before'] / 2**20:.0f}",
                         f"{r['after'] / 2**20:.0f}", f"{r['after'] / f:.1%}",
                         f"{(r['after'] - r['before']) / f:.1%}",
                         f"{r['seconds'] / r['n_iter']:.2f}"])
    finally:
        os.unlink(path)
    D, K, cov = B4_SHAPE
    print(f"\nB4: exact EM on a float64 memmap (D={D}, K={K}, {cov}, {B4_ITERS} iterations), "
          f"peak RSS (VmHWM), {threads} threads\n")
    C.print_table(["library", "file GB", "RSS before fit MiB", "peak RSS MiB",
                   "peak / file", "(peak - before) / file", "s / iteration"], 1, rows)


def main(argv=None):
    p = C.side_parser(__doc__, ",".join(CASES), CASES)
    p.add_argument("--b4-gb", type=float, default=0.5, help="size of B4's file (default 0.5 GB)")
    p.add_argument("--b4-dir", default=None, help="where B4's file goes (default: the temp dir)")
    p.add_argument("--_b4-child", dest="b4_child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    threads = args.threads or C.usable_cpus()
    if args.b4_child:
        # the one backend the parent chose: asking which are usable here would import
        # Numba (over 150 MiB) into the process whose memory is measured, Cython's too
        b4_child(args.b4_child, threads, args.backends)
        return 0
    backends = [b for b in C.emfast_backends()
                if b in [x.strip() for x in args.backends.split(",")]]
    cases = C.chosen_cases(p, args.cases, CASES)
    C.quiet_convergence()
    C.print_header(threads)
    if "B2" in cases:
        run_b2(threads, args.repeat, backends)
    if "B4" in cases:
        run_b4(threads, args.b4_gb, args.b4_dir, backends)
    return 0


if __name__ == "__main__":
    sys.exit(main())
