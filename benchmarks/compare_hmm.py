#!/usr/bin/env python
"""emfast.hmm vs hmmlearn 0.3.3, side by side: per-iteration Baum-Welch time of ``fit``, and
(``--whole-fit``) the time of a whole default ``fit``.

Imported by benchmarks/compare.py, which runs these cases (H1..H10) after the mixture ones;
``python benchmarks/compare.py --hmm`` (or ``--cases H1,H3``) runs only these, and
``python benchmarks/compare_hmm.py [options]`` is the same as ``compare.py --hmm [options]``.

Method (as compare.py's for the mixtures): every library runs in this one process on the
same data (sampled from a random HMM with a fixed seed), from the same starting parameters
(a perturbed copy of the true ones, set as attributes on each model, ``init_params=""``),
with ``tol=-inf`` so that exactly ``n_iter`` iterations run (checked on ``monitor_.iter``).
``fit`` is timed with ``n_iter=a`` and ``n_iter=b`` and the per-iteration time is the median
over r repeats of (T_b - T_a) / (b - a). hmmlearn is timed with both of its
implementations, "log" (its default) and "scaling"; the ratio is the faster of the two
divided by emfast's time. The log-likelihood after b iterations (``monitor_.history[-1]``)
is printed for every library as a check that they did the same work.

``python benchmarks/compare_hmm.py --whole-fit [--cases H6,H7]`` times what a user runs
instead: the model with hmmlearn's defaults and ``random_state=0``, ``fit(X, lengths)`` from
the library's own initialisation (k-means means, random emission probabilities) to the end,
best of 3 after a warm-up; by default on the cases with more than 16 states (H6..H10).
"""

import os
import statistics
import sys
import time

import numpy as np

if os.path.dirname(os.path.abspath(__file__)) not in map(os.path.abspath, sys.path):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compare as C  # noqa: E402
from benchmarks.common import (  # noqa: E402
    make_hmm, perturb_hmm, sample_hmm, set_hmm_params)

SEED = 2024

# name: (description, emission, covariance_type, n_sequences, length, n_features,
#        n_components, (a, b, repeats), (a, b, repeats) with --quick)
# n_features is D for the Gaussian cases and the number of symbols for the categorical one.
# The plans keep the whole HMM table at ~3-4 min on 2 cores: hmmlearn ("log" + "scaling")
# takes ~0.2 s/iter on H1, ~0.3 s on H2 and H4, ~2 s on H3 and ~0.9 s on H5 there.
HMM_CASES = {
    "H1": ("GaussianHMM diag, 100 seq × 1,000 frames, D=4, K=8",
           "gaussian", "diag", 100, 1_000, 4, 8, (2, 12, 5), (1, 3, 1)),
    "H2": ("GaussianHMM full, 100 seq × 1,000 frames, D=4, K=8",
           "gaussian", "full", 100, 1_000, 4, 8, (2, 12, 5), (1, 3, 1)),
    "H3": ("GaussianHMM diag, 10 seq × 10,000 frames, D=4, K=32",
           "gaussian", "diag", 10, 10_000, 4, 32, (1, 5, 5), (1, 2, 1)),
    "H4": ("CategoricalHMM, 1,000 seq × 100 frames, 50 symbols, K=10",
           "categorical", None, 1_000, 100, 50, 10, (2, 12, 5), (1, 3, 1)),
    "H5": ("GaussianHMM diag, 10,000 seq × 10 frames, D=2, K=4",
           "gaussian", "diag", 10_000, 10, 2, 4, (2, 8, 5), (1, 3, 1)),
    # More than 16 states (hmmlearn: ~0.2 s/iter "scaling", ~1 s "log" at K=24..32; ~0.7 s
    # and ~4 s at K=64 on these sizes).
    "H6": ("GaussianHMM diag, 100 seq × 1,000 frames, D=4, K=32",
           "gaussian", "diag", 100, 1_000, 4, 32, (1, 4, 3), (1, 2, 1)),
    "H7": ("CategoricalHMM, 1,000 seq × 100 frames, 50 symbols, K=32",
           "categorical", None, 1_000, 100, 50, 32, (1, 4, 3), (1, 2, 1)),
    "H8": ("GaussianHMM diag, 100 seq × 1,000 frames, D=4, K=64",
           "gaussian", "diag", 100, 1_000, 4, 64, (1, 3, 3), (1, 2, 1)),
    "H9": ("CategoricalHMM, 1,000 seq × 100 frames, 50 symbols, K=64",
           "categorical", None, 1_000, 100, 50, 64, (1, 3, 3), (1, 2, 1)),
    "H10": ("GaussianHMM diag, 200 seq × 500 frames, D=4, K=24",
            "gaussian", "diag", 200, 500, 4, 24, (1, 4, 3), (1, 2, 1)),
}
# The cases of ``--whole-fit`` by default: those with more than 16 states.
WHOLE_FIT_CASES = ("H6", "H7", "H8", "H9", "H10")
THREADS_CASE = "H1"
HMMLEARN_IMPLS = ("log", "scaling")
LL_RTOL = 1e-8  # the libraries' log-likelihoods after b iterations should agree to this


def hmmlearn_available():
    try:
        import hmmlearn.hmm  # noqa: F401
    except ImportError as exc:
        print(f"# hmmlearn unavailable ({exc}); timing emfast.hmm only", file=sys.stderr)
        return False
    return True


def emfast_hmm_backends():
    """The emfast backends whose HMM kernels are usable here ([] without emfast.hmm)."""
    try:
        import emfast.hmm  # noqa: F401
        from emfast._config import available_backends
    except ImportError as exc:
        print(f"# emfast.hmm unavailable ({exc}); timing hmmlearn only", file=sys.stderr)
        return []
    names = available_backends("hmm")
    return [b for b in C.EMFAST_BACKENDS if b in names]


def make_case(name):
    """(X, lengths, the common start, n_features) of an HMM case."""
    _, emission, cov, S, L, D, K = HMM_CASES[name][:7]
    truth = make_hmm(K, D, emission, cov, seed=SEED)
    X, lengths = sample_hmm(truth, S, L, seed=SEED + 1)
    return X, lengths, perturb_hmm(truth, seed=SEED + 2), D


def make_hmm_estimator(lib, name, start, n_features, n_iter, threads):
    """An unfitted model of case ``name`` at ``start``; ``lib`` is "hmmlearn-<log|scaling>"
    or "emfast-<backend>"."""
    _, emission, cov, _, _, _, K = HMM_CASES[name][:7]
    family, variant = lib.split("-", 1)
    kw = dict(n_components=K, n_iter=n_iter, tol=-np.inf, init_params="")
    if family == "hmmlearn":
        from hmmlearn import hmm
        kw["implementation"] = variant
    else:
        from emfast import hmm
        kw.update(backend=variant, n_threads=threads)
    if emission == "categorical":
        model = hmm.CategoricalHMM(n_features=n_features, **kw)
    else:
        model = hmm.GaussianHMM(covariance_type=cov, **kw)
    return set_hmm_params(model, start)


def timed_fit(lib, name, X, lengths, start, n_features, n_iter, threads):
    model = make_hmm_estimator(lib, name, start, n_features, n_iter, threads)
    t0 = time.perf_counter()
    model.fit(X, lengths)
    dt = time.perf_counter() - t0
    if model.monitor_.iter != n_iter:
        raise RuntimeError(f"{lib}: ran {model.monitor_.iter} iterations, expected {n_iter}")
    return dt, float(model.monitor_.history[-1])


def per_iteration(lib, name, X, lengths, start, n_features, a, b, repeats, threads):
    """Median over repeats of (T_b - T_a) / (b - a), in seconds; log-likelihood after b."""
    # Warm-up on the first few sequences: imports, JIT compilation (numba), thread pools.
    n_seq = max(1, min(len(lengths), 4096 // int(lengths[0])))
    timed_fit(lib, name, X[: int(lengths[:n_seq].sum())], lengths[:n_seq], start, n_features,
              1, threads)
    C.cool_down()
    samples, ll = [], float("nan")
    for _ in range(repeats):
        ta, _ = timed_fit(lib, name, X, lengths, start, n_features, a, threads)
        tb, ll = timed_fit(lib, name, X, lengths, start, n_features, b, threads)
        samples.append((tb - ta) / (b - a))
    return statistics.median(samples), ll


def _plan(name, quick, repeats):
    a, b, r = HMM_CASES[name][8 if quick else 7]
    return a, b, (r if repeats is None else repeats)


def _rel(x, ref):
    if not (np.isfinite(x) and np.isfinite(ref)):
        return "n/a"
    return f"{abs(x - ref) / max(abs(ref), 1e-300):.1e}"


def run_hmm(cases, threads, quick, repeats, libs_emfast):
    """Time the HMM cases and print their table; returns 0."""
    from threadpoolctl import threadpool_limits

    libs = ([f"hmmlearn-{impl}" for impl in HMMLEARN_IMPLS] if hmmlearn_available() else [])
    libs += [f"emfast-{b}" for b in libs_emfast]
    print(f"\n# HMMs: hmmlearn {C.version('hmmlearn')} (its forward-backward is "
          f"single-threaded; BLAS limited to {threads} thread(s)), emfast.hmm n_threads={threads}",
          flush=True)
    rows, notes = [], []
    t_start = time.perf_counter()
    with threadpool_limits(limits=threads):
        for name in cases:
            desc = HMM_CASES[name][0]
            a, b, r = _plan(name, quick, repeats)
            t0 = time.perf_counter()
            X, lengths, start, D = make_case(name)
            res = {}
            for lib in libs:
                try:
                    res[lib] = per_iteration(lib, name, X, lengths, start, D, a, b, r, threads)
                except Exception as exc:  # noqa: BLE001 - report and keep going
                    print(f"# {name} {lib}: {type(exc).__name__}: {exc}", file=sys.stderr)
                    res[lib] = (None, float("nan"))
            ref = [res[f"hmmlearn-{i}"][0] for i in HMMLEARN_IMPLS if f"hmmlearn-{i}" in res]
            ref = [t for t in ref if t is not None and t > 0]
            base = min(ref) if ref else None
            row = [name, desc]
            row += [C.fmt_ms(res.get(f"hmmlearn-{i}", (None,))[0]) for i in HMMLEARN_IMPLS]
            for backend in C.EMFAST_BACKENDS:
                t = res.get(f"emfast-{backend}", (None,))[0]
                row += [C.fmt_ms(t), C.fmt_ratio(base, t)]
            rows.append(row)
            ll_ref = res.get("hmmlearn-log", (None, float("nan")))[1]
            lls = ", ".join(f"{lib} {res[lib][1]:.10g}"
                            + (f" (rel. diff. {_rel(res[lib][1], ll_ref)})"
                               if lib != "hmmlearn-log" and "hmmlearn-log" in res else "")
                            for lib in libs)
            vals = [res[lib][1] for lib in libs]
            spread = ((max(vals) - min(vals)) / max(abs(min(vals)), 1e-300)
                      if len(vals) > 1 and all(np.isfinite(vals)) else float("nan"))
            verdict = ("agree" if spread <= LL_RTOL else
                       "n/a" if not np.isfinite(spread) else "DISAGREE")
            notes.append(f"{name}: a={a}, b={b}, r={r}; {len(X):,} frames; log-likelihood at "
                         f"iteration {b}: {lls}; {verdict} (max rel. spread {spread:.1e}, "
                         f"tolerance {LL_RTOL:g})")
            print(f"# {name} done in {time.perf_counter() - t0:.0f} s", file=sys.stderr,
                  flush=True)

        threads_line = None
        if THREADS_CASE in cases and libs_emfast:
            threads_line = _threads_vs_one(threads, quick, repeats, libs_emfast)

    print()
    C.print_table(["case", "description", "hmmlearn log ms/iter", "hmmlearn scaling ms/iter",
                   "emfast-cython ms/iter", "ratio", "emfast-numba ms/iter", "ratio"], 2, rows)
    print()
    print("ratio = the faster of hmmlearn's two implementations / emfast (higher is faster); "
          "per-iteration time = median over r of (T(n_iter=b) - T(n_iter=a)) / (b - a), "
          "tol=-inf, init_params=\"\", same start.")
    for note in notes:
        print(f"# {note}")
    if threads_line:
        print()
        print(threads_line)
    print(f"\n# HMM total {time.perf_counter() - t_start:.0f} s", file=sys.stderr)
    return 0


def _threads_vs_one(threads, quick, repeats, libs_emfast):
    """emfast on THREADS_CASE with n threads (``threads``, at least 2) vs one thread."""
    from threadpoolctl import threadpool_limits

    n = max(2, threads)
    a, b, r = _plan(THREADS_CASE, quick, repeats)
    X, lengths, start, D = make_case(THREADS_CASE)
    parts = []
    for backend in libs_emfast:
        t = {}
        for k in (1, n):
            with threadpool_limits(limits=k):
                t[k] = per_iteration(f"emfast-{backend}", THREADS_CASE, X, lengths, start, D,
                                     a, b, r, k)[0]
        speedup = f"{t[1] / t[n]:.2f}×" if t[1] > 0 and t[n] > 0 else "n/a"
        parts.append(f"{backend} {C.fmt_ms(t[1])} → {C.fmt_ms(t[n])} ms/iter, {speedup}")
    return (f"emfast {n} threads vs 1 thread on {THREADS_CASE} (speed-up = T(1) / T({n})): "
            + "; ".join(parts))


# --------------------------------------------------------------------------- whole fit
WHOLE_FIT_REPEATS = 3


def make_default_estimator(lib, name, n_features, threads):
    """The model of case ``name`` as a user writes it: hmmlearn's defaults (n_iter=10,
    tol=1e-2, every parameter initialised by the library: k-means means for Gaussians,
    random emission probabilities for categorical models) and random_state=0."""
    _, emission, cov, _, _, _, K = HMM_CASES[name][:7]
    family, variant = lib.split("-", 1)
    kw = dict(n_components=K, random_state=0)
    if family == "hmmlearn":
        from hmmlearn import hmm
        kw["implementation"] = variant
    else:
        from emfast import hmm
        kw.update(backend=variant, n_threads=threads)
    if emission == "categorical":
        return hmm.CategoricalHMM(n_features=n_features, **kw)
    return hmm.GaussianHMM(covariance_type=cov, **kw)


def whole_fit(lib, name, X, lengths, n_features, repeats, threads):
    """Best of ``repeats`` default fits after a warm-up on the first few sequences, in
    seconds; (iterations run, final log-likelihood) of the last one."""
    n_seq = max(1, min(len(lengths), 4096 // int(lengths[0])))
    make_default_estimator(lib, name, n_features, threads).fit(
        X[: int(lengths[:n_seq].sum())], lengths[:n_seq])
    C.cool_down()
    best, model = float("inf"), None
    for _ in range(repeats):
        model = make_default_estimator(lib, name, n_features, threads)
        t0 = time.perf_counter()
        model.fit(X, lengths)
        best = min(best, time.perf_counter() - t0)
    return best, model.monitor_.iter, float(model.monitor_.history[-1])


def run_whole_fit(cases, threads, repeats, libs_emfast, impls=HMMLEARN_IMPLS):
    """Time whole default fits (initialisation included) and print their table; ``impls``:
    the hmmlearn implementations to time."""
    from threadpoolctl import threadpool_limits

    libs = ([f"hmmlearn-{impl}" for impl in impls] if impls and hmmlearn_available() else [])
    libs += [f"emfast-{b}" for b in libs_emfast]
    r = WHOLE_FIT_REPEATS if repeats is None else repeats
    print(f"\n# HMMs, whole default fit: hmmlearn {C.version('hmmlearn')}, emfast.hmm "
          f"n_threads={threads}, BLAS limited to {threads} thread(s)", flush=True)
    rows, notes = [], []
    with threadpool_limits(limits=threads):
        for name in cases:
            X, lengths, _, D = make_case(name)
            res = {}
            for lib in libs:
                try:
                    res[lib] = whole_fit(lib, name, X, lengths, D, r, threads)
                except Exception as exc:  # noqa: BLE001 - report and keep going
                    print(f"# {name} {lib}: {type(exc).__name__}: {exc}", file=sys.stderr)
            ref = [res[lib][0] for lib in res if lib.startswith("hmmlearn-")]
            base = min(ref) if ref else None
            row = [name, HMM_CASES[name][0]]
            row += [C.fmt_ms(res[f"hmmlearn-{i}"][0]) if f"hmmlearn-{i}" in res else "n/a"
                    for i in HMMLEARN_IMPLS]
            for backend in C.EMFAST_BACKENDS:
                t = res[f"emfast-{backend}"][0] if f"emfast-{backend}" in res else None
                row += [C.fmt_ms(t), C.fmt_ratio(base, t)]
            rows.append(row)
            notes.append(f"{name}: {len(X):,} frames; iterations run and final "
                         "log-likelihood: " + ", ".join(
                             f"{lib} {it} {ll:.10g}" for lib, (_, it, ll) in res.items()))
            print(f"# {name} done", file=sys.stderr, flush=True)
    print()
    C.print_table(["case", "description", "hmmlearn log ms/fit", "hmmlearn scaling ms/fit",
                   "emfast-cython ms/fit", "ratio", "emfast-numba ms/fit", "ratio"], 2, rows)
    print()
    print(f"ratio = the faster of hmmlearn's two implementations / emfast; ms/fit = best of {r} "
          "whole fit() calls with the defaults (n_iter=10, tol=1e-2, initialisation included) "
          "and random_state=0, after a warm-up fit on a few sequences. The libraries "
          "initialise differently, so their iterations and log-likelihoods may differ.")
    for note in notes:
        print(f"# {note}")
    return 0


def main(argv):
    """``--whole-fit [--cases, --threads, --repeat, --backends, --hmmlearn]``: the whole
    default fit table; anything else is ``compare.py --hmm`` with the same options."""
    if "--whole-fit" not in argv:
        return C.main(["--hmm"] + argv)
    import argparse
    p = argparse.ArgumentParser(description="emfast.hmm vs hmmlearn: whole default fit()")
    p.add_argument("--whole-fit", action="store_true", required=True)
    p.add_argument("--cases", default=",".join(WHOLE_FIT_CASES))
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeat", type=int, default=None)
    p.add_argument("--backends", default=",".join(C.EMFAST_BACKENDS))
    p.add_argument("--hmmlearn", default=",".join(HMMLEARN_IMPLS),
                   help="hmmlearn implementations to time (\"scaling\" alone saves most of "
                        "the time: \"log\" is the slower one on every case; \"\": none)")
    args = p.parse_args(argv)
    cases = C.chosen_cases(p, args.cases, HMM_CASES)
    if args.repeat is not None and args.repeat < 1:
        p.error("--repeat must be >= 1")
    threads = args.threads or C.usable_cpus()
    wanted = [b.strip() for b in args.backends.split(",") if b.strip()]
    C.quiet_convergence()
    C.print_header(threads)
    impls = [i.strip() for i in args.hmmlearn.split(",") if i.strip()]
    if any(i not in HMMLEARN_IMPLS for i in impls):
        p.error(f"--hmmlearn: choose from {HMMLEARN_IMPLS}")
    return run_whole_fit(cases, threads, args.repeat,
                         [b for b in emfast_hmm_backends() if b in wanted], impls)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
