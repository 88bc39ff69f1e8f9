#!/usr/bin/env python
"""emfast vs scikit-learn (mixtures) and hmmlearn (HMMs), side by side: per-iteration EM
time and peak memory of ``fit``.

Both libraries run in this one process on the same data and from the same starting
parameters. For each library, ``fit`` is timed with ``max_iter=a`` and with ``max_iter=b``
(``tol=0``, so exactly that many iterations run) and the per-iteration time is

    (T_b - T_a) / (b - a)

so that the fixed costs of a fit (validation, initialisation, the final E-step) cancel.
Each (a, b) pair is repeated r times and the median is reported.

Peak extra memory of ``fit`` (case G2) is measured in a fresh subprocess per library: the
RSS high-water mark (VmHWM) after X is created and the library warmed up, subtracted from
the high-water mark after ``fit``; reported as a multiple of X's size.

The HMM cases H1..H10 (emfast.hmm vs hmmlearn 0.3.3, "log" and "scaling") are in
compare_hmm.py, by the same method; their table follows the mixture one. H1..H5 have 4 to 32
states; H6..H10 have 24 to 64 (where hmmlearn takes seconds per iteration).

``--end-to-end`` times what a user feels instead: the default ``fit()`` of each library
(defaults but for ``n_components``, ``covariance_type``, ``n_init`` and the same
``random_state``; initialisation and convergence included) on the same data, best of 3
after a warm-up fit on at most 4,096 of the rows (excluded), with the cool-down between
libraries. Cases E1..E4 use make_data; the real-data cases are scikit-learn's bundled data
sets (iris, wine, breast_cancer, digits) with K = 3 and 10 and every covariance type. The
final ``lower_bound_`` of each library is printed beside its time: the fits may end in
different optima, and speed is only half of the story.

Usage:
    python benchmarks/compare.py                 # all cases: mixtures (~10 min on 2 cores),
                                                 # then HMMs (H1..H5 ~4 min; H6..H10 more)
    python benchmarks/compare.py --quick --cases G1,G5
    python benchmarks/compare.py --hmm           # the HMM cases only (= --cases H1,...,H10)
    python benchmarks/compare.py --quick --cases H1,H4,H5
    python benchmarks/compare.py --threads 4
    python benchmarks/compare.py --scaling       # emfast only, 1, 2, 4, ... threads on G1, G2, H1, H4, H5
    python benchmarks/compare.py --end-to-end    # default fit(), E1..E4 and the real data
    python benchmarks/compare.py --end-to-end --cases E3,iris,digits --repeat 1
    python benchmarks/compare.py --missing       # missing values: M1..M3;
                                                 # see compare_missing.py
    python benchmarks/compare.py --scale         # model selection (B2), EM on a memmap
                                                 # (B4); see compare_scale.py
    python benchmarks/compare.py --cases B1s     # batch fitting (fit_many): B1, B1s, B1sw;
                                                 # see compare_batch.py
    python benchmarks/compare.py --latent        # latent classes L1, P1 vs a NumPy EM and
                                                 # SQUAREM S1; see compare_latent.py
    python benchmarks/compare.py --lda           # LDA T1..T3 vs scikit-learn and gensim
                                                 # (--quick: small corpora); see compare_lda.py
    python benchmarks/compare.py --dask          # B3: emfast.dask on 2 local workers vs
                                                 # in-memory emfast (needs dask[distributed])

``--dask`` (case B3) fits G2's data (N=1M, D=10, K=16, diag) with emfast in memory
(``threads`` threads) and with ``emfast.dask.fit`` on a ``distributed.LocalCluster`` of 2
worker processes (1 thread each when ``threads`` is 2: the same cores), X held on the
workers beforehand (scattered in row chunks) as data loaded there would be. Both from the
same start, ``tol=0``: the per-iteration time by the (T_b - T_a) / (b - a) rule above, and
the whole fit of b iterations (Dask's: binding the chunks, drawing the start sample, and
each iteration's scheduling and transfer of parameters and statistics), medians of r.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np

# Run as a script, this module is __main__: let compare_hmm's "import compare" find it.
sys.modules.setdefault("compare", sys.modules[__name__])

SEED = 12345

# name: (N, D, K, covariance_type, (a, b, repeats), (a, b, repeats) with --quick)
CASES = {
    "G1": (100_000, 10, 10, "full", (2, 12, 5), (1, 3, 1)),
    "G2": (1_000_000, 10, 16, "diag", (2, 8, 5), (1, 3, 1)),
    "G3": (200_000, 50, 20, "full", (1, 4, 3), (1, 3, 1)),
    "G4": (100_000, 2, 100, "full", (2, 12, 5), (1, 3, 1)),
    "G5": (10_000, 2, 3, "full", (10, 110, 7), (2, 12, 1)),
    "G1t": (100_000, 10, 10, "tied", (2, 12, 5), (1, 3, 1)),
    "G1s": (100_000, 10, 10, "spherical", (5, 45, 5), (1, 5, 1)),
}
# End-to-end (--end-to-end): name: (N, D, K, covariance_type, n_init), data from make_data.
END_TO_END_CASES = {
    "E1": (100_000, 10, 10, "full", 1),
    "E2": (1_000_000, 10, 16, "diag", 1),
    "E3": (10_000, 2, 3, "full", 1),
    "E4": (50_000, 30, 8, "full", 4),
}
# ... and every covariance type with each of these K on each real data set.
REAL_DATA_KS = (3, 10)
END_TO_END_REPEATS = 3
WARM_UP_ROWS = 4096
# --dask: name: (mixture case, Dask workers, rows per chunk, (a, b, repeats), with --quick)
DASK_CASES = {
    "B3": ("G2", 2, 125_000, (2, 8, 5), (1, 3, 1)),
}
SCALING_CASES = ("G1", "G2", "H1", "H4", "H5")
MEMORY_CASE = "G2"
MEMORY_ITERS = 3
EMFAST_BACKENDS = ("cython", "numba")


# ---------------------------------------------------------------------------- data, start
def make_data(N, D, K, seed=SEED, chunk=65_536):
    """A mixture of K Gaussians (random full covariances), float64, generated in chunks.

    Chunked so that the process's memory high-water mark after this is about X's size.
    """
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(K, 5.0))
    means = rng.normal(scale=4.0, size=(K, D))
    A = rng.normal(size=(K, D, D)) / np.sqrt(D)
    covs = A @ np.swapaxes(A, 1, 2) + 0.1 * np.eye(D)
    chols = np.linalg.cholesky(covs)
    X = np.empty((N, D), dtype=np.float64)
    for start in range(0, N, chunk):
        stop = min(N, start + chunk)
        z = rng.choice(K, size=stop - start, p=weights)
        noise = rng.standard_normal((stop - start, D))
        block = X[start:stop]
        for k in np.unique(z):
            rows = z == k
            block[rows] = noise[rows] @ chols[k].T + means[k]
    return X


def make_start(X, K, covariance_type, seed=SEED + 1):
    """Common starting parameters: K random rows as means, the data covariance for all."""
    rng = np.random.default_rng(seed)
    N, D = X.shape
    idx = np.sort(rng.choice(N, size=K, replace=False))
    means = np.array(X[idx], dtype=np.float64)
    sub = X[np.sort(rng.choice(N, size=min(N, 20_000), replace=False))]
    cov = np.atleast_2d(np.cov(sub, rowvar=False)) + 1e-6 * np.eye(D)
    prec = np.linalg.inv(cov)
    prec = 0.5 * (prec + prec.T)
    if covariance_type == "full":
        precisions = np.repeat(prec[None], K, axis=0)
    elif covariance_type == "tied":
        precisions = prec
    elif covariance_type == "diag":
        precisions = np.repeat((1.0 / np.diag(cov))[None], K, axis=0)
    elif covariance_type == "spherical":
        precisions = np.full(K, 1.0 / np.mean(np.diag(cov)))
    else:
        raise ValueError(covariance_type)
    return {
        "weights_init": np.full(K, 1.0 / K),
        "means_init": means,
        "precisions_init": np.ascontiguousarray(precisions),
    }


# ------------------------------------------------------------------------------ libraries
def emfast_backends():
    """The emfast backends usable here, or [] when emfast (or its estimator) is missing."""
    try:
        import emfast
        from emfast import GaussianMixture  # noqa: F401
    except ImportError as exc:
        print(f"# emfast.GaussianMixture unavailable ({exc}); timing scikit-learn only",
              file=sys.stderr)
        return []
    try:
        from emfast._config import available_backends
        names = available_backends()
    except ImportError:
        names = list(EMFAST_BACKENDS)
    del emfast
    return [b for b in EMFAST_BACKENDS if b in names]


def gaussian_mixture(lib, threads, **kw):
    """An unfitted GaussianMixture of ``lib`` ("sklearn" or "emfast-<backend>"); emfast's
    runs ``threads`` threads."""
    if lib == "sklearn":
        from sklearn.mixture import GaussianMixture
        return GaussianMixture(**kw)
    from emfast import GaussianMixture
    return GaussianMixture(**kw, backend=lib.split("-", 1)[1], n_threads=threads)


def make_estimator(lib, K, covariance_type, start, max_iter, threads):
    """Exactly ``max_iter`` iterations from the fixed ``start``."""
    return gaussian_mixture(lib, threads, n_components=K, covariance_type=covariance_type,
                            tol=0.0, max_iter=max_iter, init_params="random_from_data",
                            random_state=0, **start)


def quiet_convergence():
    """Ignore the 'did not converge' warnings that tol=0 provokes, and only those."""
    warnings.filterwarnings("ignore", message=r"(?s).*did not converge")
    try:
        from sklearn.exceptions import ConvergenceWarning
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
    except ImportError:
        pass
    try:
        import emfast
        cw = getattr(emfast, "ConvergenceWarning", None)
        if isinstance(cw, type) and issubclass(cw, Warning):
            warnings.filterwarnings("ignore", category=cw)
    except ImportError:
        pass


def timed_fit(lib, X, K, cov, start, max_iter, threads):
    est = make_estimator(lib, K, cov, start, max_iter, threads)
    t0 = time.perf_counter()
    est.fit(X)
    dt = time.perf_counter() - t0
    n_iter = getattr(est, "n_iter_", max_iter)
    if n_iter != max_iter:
        raise RuntimeError(f"{lib}: ran {n_iter} iterations, expected {max_iter} (tol=0)")
    return dt, float(est.lower_bound_)


# Seconds to wait before timing a library: after its last call, a BLAS or OpenMP thread pool
# keeps its idle threads spinning for a while (OpenBLAS: about 0.1 s, measured here), and on
# a machine with few cores they would slow down whichever library is timed next.
COOL_DOWN = 0.5


def median_time(fn, repeats):
    """(median seconds of ``repeats`` calls of fn, the last call's result)."""
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def median_per_iteration(fit, a, b, repeats):
    """((T_b - T_a) / (b - a) of ``fit(a)`` and ``fit(b)``, their medians of ``repeats``
    calls, in seconds; the model fitted with a; the one fitted with b). ``fit(n)`` fits
    with exactly n iterations (or passes) from the same start."""
    ta, fitted_a = median_time(lambda: fit(a), repeats)
    tb, fitted_b = median_time(lambda: fit(b), repeats)
    return (tb - ta) / (b - a), fitted_a, fitted_b


def cool_down():
    time.sleep(COOL_DOWN)


def per_iteration(lib, X, K, cov, start, a, b, repeats, threads):
    """Median over repeats of (T_b - T_a) / (b - a), in seconds; and lower_bound_ after b."""
    # Warm-up on a slice: imports, JIT compilation (numba), first-touch page faults.
    timed_fit(lib, X[: min(len(X), 4096)], K, cov, start, 1, threads)
    cool_down()
    samples, lb = [], float("nan")
    for _ in range(repeats):
        ta, _ = timed_fit(lib, X, K, cov, start, a, threads)
        tb, lb = timed_fit(lib, X, K, cov, start, b, threads)
        samples.append((tb - ta) / (b - a))
    return statistics.median(samples), lb


# ---------------------------------------------------------------------------- environment
def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"],
                                  capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            pass
    return platform.processor() or platform.machine()


def usable_cpus():
    try:
        from emfast._config import cpu_count
        return cpu_count()
    except ImportError:
        pass
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def version(mod):
    try:
        m = __import__(mod)
        return getattr(m, "__version__", "?")
    except ImportError:
        return "not installed"


def side_parser(doc, default_cases, known=None):
    """The parser of a comparison script beside this one: the arguments they all take (and
    this script passes on with :func:`side_argv`), --cases (``known``: the choices, for the
    help), --repeat, --threads, --backends; each script adds its own."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--cases", default=default_cases,
                   help=None if known is None else f"comma-separated subset of {list(known)}")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--backends", default=",".join(EMFAST_BACKENDS))
    return p


def side_argv(args, cases):
    """This script's --cases (``cases``, or the side script's default when empty),
    --repeat, --threads and --backends as a side script's command line."""
    return ((["--cases", cases] if cases else [])
            + (["--repeat", str(args.repeat)] if args.repeat else [])
            + (["--threads", str(args.threads)] if args.threads else [])
            + ["--backends", args.backends])


def side_main(argv, doc, known, run):
    """The whole ``main`` of a comparison script beside this one whose cases are ``known``:
    parse :func:`side_parser`'s arguments, print the header, then
    ``run(cases, threads, repeats, backends)``."""
    p = side_parser(doc, ",".join(known), known)
    args = p.parse_args(argv)
    cases = chosen_cases(p, args.cases, known)
    threads = args.threads or usable_cpus()
    print_header(threads)
    wanted = [b.strip() for b in args.backends.split(",") if b.strip()]
    run(cases, threads, args.repeat, [b for b in emfast_backends() if b in wanted])
    return 0


def chosen_cases(parser, text, known, what="case"):
    """The comma-separated names in ``text``, each one of ``known`` (else a usage error)."""
    names = [c.strip() for c in text.split(",") if c.strip()]
    unknown = [c for c in names if c not in known]
    if unknown:
        parser.error(f"unknown {what}(s) {unknown}; choose from {list(known)}")
    return names


def print_header(threads):
    from threadpoolctl import threadpool_info
    print(f"# machine: {cpu_model()}; {os.cpu_count()} logical CPUs, {usable_cpus()} usable; "
          f"{platform.system()} {platform.release()} {platform.machine()}")
    if threads is None:
        print("# threads: varied (emfast n_threads = BLAS threads = the count in each row)")
    else:
        print(f"# threads used: {threads} (emfast n_threads={threads}; BLAS limited to {threads} "
              f"via threadpoolctl for both libraries)")
    try:
        load = os.getloadavg()[0]
        busy = " -- the machine is busy: timings will be noisy" if load > 0.5 else ""
        print(f"# load average (1 min) at start: {load:.2f}{busy}")
    except (AttributeError, OSError):
        pass
    blas = [f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture', '?')}, "
            f"{i.get('threading_layer', '?')})"
            for i in threadpool_info() if i.get("user_api") == "blas"]
    print(f"# numpy BLAS: {'; '.join(sorted(set(blas))) or 'unknown'}")
    print(f"# python {platform.python_version()}, numpy {version('numpy')}, scipy {version('scipy')}, "
          f"scikit-learn {version('sklearn')}, emfast {version('emfast')}, numba {version('numba')}")


# ---------------------------------------------------------------------------------- memory
def _vm_hwm_bytes():
    """Peak resident set size of this process so far, in bytes."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def memory_child(lib, case, threads):
    """Runs in a fresh interpreter: print JSON with X's size and fit's extra peak RSS."""
    from threadpoolctl import threadpool_limits
    quiet_convergence()
    N, D, K, cov = CASES[case][:4]
    with threadpool_limits(limits=threads):
        X = make_data(N, D, K)
        start = make_start(X, K, cov)
        # Imports, JIT compilation, thread pools: all before the baseline.
        timed_fit(lib, X[:4096], K, cov, start, 1, threads)
        X.sum()  # touch every page of X
        before = _vm_hwm_bytes()
        timed_fit(lib, X, K, cov, start, MEMORY_ITERS, threads)
        after = _vm_hwm_bytes()
    print(json.dumps({"lib": lib, "x_bytes": X.nbytes, "before": before, "after": after}))


def measure_memory(lib, case, threads):
    cmd = [sys.executable, os.path.abspath(__file__), "--_memory-child", lib,
           "--cases", case, "--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"# memory measurement for {lib} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    return (res["after"] - res["before"]) / res["x_bytes"]


# ----------------------------------------------------------------------------------- modes
def print_table(header, n_text, rows):
    """A Markdown table: the first ``n_text`` columns left-aligned, the rest (numbers) right."""
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(["---"] * n_text + ["---:"] * (len(header) - n_text)) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def fmt_ms(t):
    if t is None:
        return "n/a"
    if t <= 0:  # T_b <= T_a: the noise is larger than (b - a) iterations
        return "noise"
    return f"{t * 1e3:.3g}" if t < 0.1 else f"{t * 1e3:.0f}"


def fmt_ratio(base, t):
    if base is None or t is None or base <= 0 or t <= 0:
        return "n/a"
    return f"{base / t:.1f}×"


def run_compare(cases, threads, quick, repeats, libs_emfast, memory):
    from threadpoolctl import threadpool_limits
    libs = ["sklearn"] + [f"emfast-{b}" for b in libs_emfast]
    rows, notes = [], []
    t_start = time.perf_counter()
    with threadpool_limits(limits=threads):
        for name in cases:
            N, D, K, cov, full_plan, quick_plan = CASES[name]
            a, b, r = quick_plan if quick else full_plan
            if repeats is not None:
                r = repeats
            t0 = time.perf_counter()
            X = make_data(N, D, K)
            start = make_start(X, K, cov)
            res = {}
            for lib in libs:
                try:
                    res[lib] = per_iteration(lib, X, K, cov, start, a, b, r, threads)
                except Exception as exc:  # noqa: BLE001 - report and keep going
                    print(f"# {name} {lib}: {type(exc).__name__}: {exc}", file=sys.stderr)
                    res[lib] = (None, float("nan"))
            base = res["sklearn"][0]
            row = [name, f"{N:,}", str(D), str(K), cov, fmt_ms(base)]
            for backend in EMFAST_BACKENDS:
                t = res.get(f"emfast-{backend}", (None,))[0]
                row += [fmt_ms(t), fmt_ratio(base, t)]
            rows.append(row)
            lbs = ", ".join(f"{lib} {res[lib][1]:.6f}" for lib in libs)
            notes.append(f"{name}: a={a}, b={b}, r={r}; lower_bound_ after {b} iterations: {lbs}")
            print(f"# {name} done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
            del X

    print()
    print_table(["case", "N", "D", "K", "cov", "sklearn ms/iter", "emfast-cython ms/iter",
                 "ratio", "emfast-numba ms/iter", "ratio"], 5, rows)
    print()
    print("ratio = sklearn time / emfast time (higher is faster); per-iteration time = "
          "median over r of (T(max_iter=b) - T(max_iter=a)) / (b - a), tol=0, same start.")
    for note in notes:
        print(f"# {note}")

    if memory and MEMORY_CASE in cases:
        N, D, K, cov = CASES[MEMORY_CASE][:4]
        print()
        print(f"Peak extra memory of fit on {MEMORY_CASE} (N={N:,}, D={D}, K={K}, {cov}; "
              f"X = {N * D * 8 / 2**20:.0f} MiB), as a multiple of X's size:")
        print()
        print("| library | peak extra RSS / size of X |")
        print("|---|---:|")
        for lib in libs:
            m = measure_memory(lib, MEMORY_CASE, threads)
            print(f"| {lib} | {'n/a' if m is None else f'{m:.2f}×'} |", flush=True)
    print(f"\n# total {time.perf_counter() - t_start:.0f} s", file=sys.stderr)


def end_to_end_cases(names):
    """(label, data loader, K, covariance_type, n_init) for each selected name: an E case, or
    a real data set (every K in REAL_DATA_KS and every covariance type)."""
    from benchmarks.common import COVARIANCE_TYPES, load_real

    cases = []
    for name in names:
        if name in END_TO_END_CASES:
            N, D, K, cov, n_init = END_TO_END_CASES[name]
            cases.append((name, lambda N=N, D=D, K=K: make_data(N, D, K), K, cov, n_init))
        else:
            for K in REAL_DATA_KS:
                for cov in COVARIANCE_TYPES:
                    cases.append((name, lambda name=name: load_real(name), K, cov, 1))
    return cases


def default_fit(lib, X, K, cov, n_init, random_state, threads):
    """Seconds of one default ``fit`` and its final lower_bound_."""
    est = gaussian_mixture(lib, threads, n_components=K, covariance_type=cov, n_init=n_init,
                           random_state=random_state)
    t0 = time.perf_counter()
    est.fit(X)
    return time.perf_counter() - t0, float(est.lower_bound_)


def best_default_fit(lib, X, K, cov, n_init, random_state, threads, repeats):
    """(best time over ``repeats`` default fits, their lower_bound_) after a warm-up fit on
    at most WARM_UP_ROWS rows (imports, JIT compilation, thread pools) and the cool-down."""
    default_fit(lib, X[:WARM_UP_ROWS], K, cov, n_init, random_state, threads)
    cool_down()
    runs = [default_fit(lib, X, K, cov, n_init, random_state, threads)
            for _ in range(repeats)]
    return min(t for t, _ in runs), runs[0][1]


def run_end_to_end(names, threads, repeats, libs_emfast, random_state):
    from threadpoolctl import threadpool_limits
    libs = ["sklearn"] + [f"emfast-{b}" for b in libs_emfast]
    rows = []
    t_start = time.perf_counter()
    cached = {}
    with threadpool_limits(limits=threads), warnings.catch_warnings():
        # degenerate-component and convergence warnings are part of a default fit
        warnings.simplefilter("ignore")
        for name, load, K, cov, n_init in end_to_end_cases(names):
            if name not in cached:
                cached.clear()
                cached[name] = load()
            X = cached[name]
            res = {}
            for lib in libs:
                try:
                    res[lib] = best_default_fit(lib, X, K, cov, n_init, random_state, threads,
                                                repeats)
                except Exception as exc:  # noqa: BLE001 - report and keep going
                    print(f"# {name} K={K} {cov} {lib}: {type(exc).__name__}: {exc}",
                          file=sys.stderr)
                    res[lib] = (None, float("nan"))
            base, base_lb = res["sklearn"]
            row = [name, f"{X.shape[0]:,}", str(X.shape[1]), str(K), cov, str(n_init),
                   fmt_ms(base), f"{base_lb:.4f}"]
            for backend in EMFAST_BACKENDS:
                t, lb = res.get(f"emfast-{backend}", (None, float("nan")))
                row += [fmt_ms(t), fmt_ratio(base, t), f"{lb:.4f}"]
            rows.append(row)
            print(f"# {name} K={K} {cov} done", file=sys.stderr, flush=True)
    print()
    print_table(["case", "N", "D", "K", "cov", "n_init", "sklearn ms", "sklearn lower_bound_",
                 "emfast-cython ms", "ratio", "lower_bound_", "emfast-numba ms", "ratio",
                 "lower_bound_"], 5, rows)
    print()
    print(f"Default fit() (random_state={random_state}, otherwise the defaults), best of "
          f"{repeats} after a warm-up on at most {WARM_UP_ROWS:,} rows; ratio = sklearn time / "
          "emfast time; lower_bound_ = the final mean log-likelihood per row (higher is "
          "better).")
    print(f"\n# total {time.perf_counter() - t_start:.0f} s", file=sys.stderr)


def run_scaling(cases, hmm_cases, quick, repeats, libs_emfast, libs_hmm):
    """emfast alone at 1, 2, 4, ... threads (up to the usable CPUs) on mixture and HMM
    cases: ms/iter, speed-up over one thread and parallel efficiency."""
    from threadpoolctl import threadpool_limits

    import compare_hmm as H

    ncpu = usable_cpus()
    counts = [t for t in (1, 2, 4, 8, 16, 32, 64) if t <= ncpu] or [1]
    if counts[-1] != ncpu and ncpu <= 64:
        counts.append(ncpu)
    timers = []  # (case, backend, per-iteration seconds at t threads)
    for name in cases:
        N, D, K, cov, full_plan, quick_plan = CASES[name]
        a, b, r = quick_plan if quick else full_plan
        X = make_data(N, D, K)
        start = make_start(X, K, cov)
        for backend in libs_emfast:
            timers.append((name, backend, lambda t, X=X, K=K, cov=cov, start=start, a=a,
                           b=b, r=r, be=backend:
                           per_iteration(f"emfast-{be}", X, K, cov, start, a, b,
                                         repeats or r, t)[0]))
    for name in hmm_cases:
        a, b, r = H._plan(name, quick, repeats)
        X, lengths, start, D = H.make_case(name)
        for backend in libs_hmm:
            timers.append((name, backend, lambda t, name=name, X=X, lengths=lengths,
                           start=start, D=D, a=a, b=b, r=r, be=backend:
                           H.per_iteration(f"emfast-{be}", name, X, lengths, start, D, a, b,
                                           r, t)[0]))
    if not timers:
        print("--scaling: no emfast backend to time", file=sys.stderr)
        return 1
    print("| case | backend | threads | ms/iter | speed-up | parallel efficiency |")
    print("|---|---|---:|---:|---:|---:|")
    for name, backend, timer in timers:
        t1 = None
        for t in counts:
            with threadpool_limits(limits=t):
                s = timer(t)
            t1 = s if t1 is None else t1
            if s > 0 and t1 > 0:
                speedup, eff = f"{t1 / s:.2f}×", f"{t1 / (t * s):.0%}"
            else:
                speedup = eff = "n/a"
            print(f"| {name} | {backend} | {t} | {fmt_ms(s)} | {speedup} | {eff} |", flush=True)
    return 0


def dask_fit(X, K, cov, start, max_iter, threads):
    """Seconds of one emfast.dask.fit of ``max_iter`` iterations (tol=0; on the current
    Dask client, ``threads`` threads per chunk task) and its lower_bound_."""
    import emfast.dask

    est = make_estimator("emfast-cython", K, cov, start, max_iter, threads)
    t0 = time.perf_counter()
    emfast.dask.fit(est, X)
    dt = time.perf_counter() - t0
    if est.n_iter_ != max_iter:
        raise RuntimeError(f"emfast.dask: ran {est.n_iter_} iterations, expected {max_iter}")
    return dt, float(est.lower_bound_)


def run_dask(names, threads, quick, repeats):
    """B3: emfast.dask on a LocalCluster beside in-memory emfast (Cython backend), the same
    data and start: ms/iter, the overhead per iteration, and the whole fit of b iterations."""
    import dask.array as da
    from distributed import Client, LocalCluster
    from threadpoolctl import threadpool_limits

    rows = []
    for name in names:
        case, workers, chunk_rows, full_plan, quick_plan = DASK_CASES[name]
        N, D, K, cov = CASES[case][:4]
        a, b, r = quick_plan if quick else full_plan
        r = repeats or r
        X = make_data(N, D, K)
        start = make_start(X, K, cov)
        per_worker = max(1, threads // workers)
        with threadpool_limits(limits=threads):
            memory = per_iteration("emfast-cython", X, K, cov, start, a, b, r, threads)[0]
            whole = statistics.median(
                timed_fit("emfast-cython", X, K, cov, start, b, threads)[0] for _ in range(r))
        with LocalCluster(n_workers=workers, processes=True, threads_per_worker=per_worker,
                          dashboard_address=":0") as cluster, Client(cluster) as client:
            client.wait_for_workers(workers)
            # X's row chunks onto the workers (as data loaded there would be), not into
            # each fit's graph
            Xd = da.concatenate([
                da.from_delayed(f, (min(chunk_rows, N - i), D), X.dtype) for i, f in zip(
                    range(0, N, chunk_rows),
                    client.scatter([X[i:i + chunk_rows] for i in range(0, N, chunk_rows)]))])
            dask_fit(Xd[:4096], K, cov, start, 1, per_worker)   # imports on the workers
            cool_down()
            samples, totals = [], []
            for _ in range(r):
                ta, _ = dask_fit(Xd, K, cov, start, a, per_worker)
                tb, lb = dask_fit(Xd, K, cov, start, b, per_worker)
                samples.append((tb - ta) / (b - a))
                totals.append(tb)
            on_dask, whole_dask = statistics.median(samples), statistics.median(totals)
        rows.append([name, f"{N:,}", str(D), str(K), cov,
                     f"{workers} x {per_worker} thread(s), chunks of {chunk_rows:,} rows",
                     fmt_ms(memory), fmt_ms(on_dask), fmt_ms(on_dask - memory),
                     f"{whole:.2f}", f"{whole_dask:.2f}", f"{whole_dask - whole:.2f}"])
        print(f"# {name}: a={a}, b={b}, r={r}; in-memory threads={threads}; lower_bound_ "
              f"after {b} iterations on Dask {lb:.6f}", file=sys.stderr, flush=True)
        del X
    print()
    print_table(["case", "N", "D", "K", "cov", "Dask workers", "in-memory ms/iter",
                 "Dask ms/iter", "overhead ms/iter", "in-memory fit s", "Dask fit s",
                 "overhead s"], 6, rows)
    print()
    print("ms/iter: median over r of (T(max_iter=b) - T(max_iter=a)) / (b - a), tol=0, same "
          "start; fit s: median of the whole fit with max_iter=b.")


def main(argv=None):
    from compare_hmm import HMM_CASES, emfast_hmm_backends, run_hmm  # benchmarks/ on sys.path

    from benchmarks.common import REAL_DATASETS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default=None,
                   help=f"comma-separated subset of {','.join(list(CASES) + list(HMM_CASES))}"
                        f" (default: all; --hmm: {','.join(HMM_CASES)}; "
                        f"--scaling: {','.join(SCALING_CASES)})")
    p.add_argument("--hmm", action="store_true",
                   help="only the HMM cases H1..H10 (emfast.hmm vs hmmlearn; H6..H10 with "
                        "24 to 64 states); see compare_hmm.py")
    p.add_argument("--repeat", type=int, default=None, help="repeats per case (default: per case)")
    p.add_argument("--quick", action="store_true", help="few iterations, one repeat: a smoke test")
    p.add_argument("--threads", type=int, default=None, help="threads (default: all usable CPUs)")
    p.add_argument("--scaling", action="store_true",
                   help="emfast only: time at 1, 2, 4, ... threads and print parallel efficiency "
                        "(mixture and HMM cases)")
    p.add_argument("--backends", default=",".join(EMFAST_BACKENDS),
                   help="emfast backends to time (default: cython,numba; those available)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    p.add_argument("--end-to-end", action="store_true",
                   help="time the default fit() instead (E1..E4 and the real data sets "
                        f"{','.join(REAL_DATASETS)}; --cases picks among them)")
    p.add_argument("--missing", action="store_true",
                   help="the missing-value cases M1..M3 (EMImputer vs IterativeImputer, "
                        "GaussianMixture with NaN); "
                        "see compare_missing.py")
    p.add_argument("--scale", action="store_true",
                   help="model selection (B2: select_gaussian_mixture vs scikit-learn's loop) "
                        "and exact EM on a memmap (B4: peak memory); see compare_scale.py")
    p.add_argument("--latent", action="store_true",
                   help="latent classes and acceleration: L1 (CategoricalMixture), P1 "
                        "(PoissonMixture) vs a NumPy EM, S1 (SQUAREM evaluations); see "
                        "compare_latent.py")
    p.add_argument("--lda", action="store_true",
                   help="Latent Dirichlet Allocation: T1, T2 (batch VB, K=50, 200), T3 "
                        "(online) vs scikit-learn and gensim; see compare_lda.py")
    p.add_argument("--dask", action="store_true",
                   help=f"{','.join(DASK_CASES)}: emfast.dask.fit on a local Dask cluster vs "
                        "in-memory emfast (needs dask[distributed])")
    p.add_argument("--random-state", type=int, default=0,
                   help="random_state of both libraries' fits with --end-to-end (default 0)")
    p.add_argument("--_memory-child", dest="memory_child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.repeat is not None and args.repeat < 1:
        p.error("--repeat must be >= 1")
    if args.missing:
        import compare_missing

        return compare_missing.main(side_argv(args, args.cases))
    if args.latent:
        import compare_latent

        return compare_latent.main(side_argv(args, args.cases))
    if args.lda:
        import compare_lda

        return compare_lda.main(side_argv(args, args.cases) + (["--small"] if args.quick else []))
    if args.scale:
        import compare_scale

        return compare_scale.main(side_argv(args, args.cases))
    if args.dask:
        names = chosen_cases(p, args.cases or ",".join(DASK_CASES), DASK_CASES, "Dask case")
        threads = args.threads or usable_cpus()
        quiet_convergence()
        print_header(threads)
        run_dask(names, threads, args.quick, args.repeat)
        return 0
    batch = [c.strip() for c in (args.cases or "").split(",") if c.strip().startswith("B")]
    if batch:
        import compare_batch

        return compare_batch.main(side_argv(args, ",".join(batch)))
    if args.end_to_end:
        known = list(END_TO_END_CASES) + list(REAL_DATASETS)
        names = chosen_cases(p, args.cases or ",".join(known), known, "end-to-end case")
        threads = args.threads or usable_cpus()
        quiet_convergence()
        print_header(threads)
        wanted = [b.strip() for b in args.backends.split(",") if b.strip()]
        repeats = args.repeat or (1 if args.quick else END_TO_END_REPEATS)
        run_end_to_end(names, threads, repeats,
                       [b for b in emfast_backends() if b in wanted], args.random_state)
        return 0
    if args.cases:
        cases = args.cases
    elif args.scaling:
        cases = ",".join(SCALING_CASES)
    else:
        cases = ",".join(([] if args.hmm else list(CASES)) + list(HMM_CASES))
    cases = chosen_cases(p, cases, list(CASES) + list(HMM_CASES))
    hmm_cases = [c for c in cases if c in HMM_CASES]
    cases = [c for c in cases if c in CASES]
    if args.hmm and cases:
        p.error(f"--hmm runs the HMM cases only, but mixture case(s) {cases} were given")
    threads = args.threads or usable_cpus()
    if threads < 1:
        p.error("--threads must be >= 1")

    if args.memory_child:
        memory_child(args.memory_child, cases[0], threads)
        return 0

    quiet_convergence()
    wanted = [b.strip() for b in args.backends.split(",") if b.strip()]
    print_header(None if args.scaling else threads)
    if args.scaling:
        return run_scaling(cases, hmm_cases, args.quick, args.repeat,
                           [b for b in emfast_backends() if b in wanted],
                           [b for b in emfast_hmm_backends() if b in wanted])
    if cases:
        libs_emfast = [b for b in emfast_backends() if b in wanted]
        run_compare(cases, threads, args.quick, args.repeat, libs_emfast, not args.no_memory)
    if hmm_cases:
        libs_emfast = [b for b in emfast_hmm_backends() if b in wanted]
        run_hmm(hmm_cases, threads, args.quick, args.repeat, libs_emfast)
    return 0


if __name__ == "__main__":
    sys.exit(main())
