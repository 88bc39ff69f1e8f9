"""Command line: ``python -m emfast demo`` and ``python -m emfast config``."""

import argparse
import sys
import time

import numpy as np


def _demo(args):
    import emfast
    from emfast._config import available_backends, default_backend
    from emfast.datasets import load_blobs
    from emfast.metrics import label_agreement

    X, y = load_blobs()
    print(f"emfast {emfast.__version__} demo: bundled data, {X.shape[0]} rows x "
          f"{X.shape[1]} features, {len(np.unique(y))} true clusters\n")
    print("Model selection by BIC over covariance types (K = 4):")
    best = None
    for ct in ("full", "tied", "diag", "spherical"):
        t0 = time.perf_counter()
        gm = emfast.GaussianMixture(4, covariance_type=ct, n_init=args.n_init,
                                    random_state=0).fit(X)
        dt = time.perf_counter() - t0
        bic = gm.bic(X)
        print(f"  {ct:<9} BIC {bic:10.1f}   {gm.n_iter_:3d} iterations   "
              f"converged={gm.converged_}   {dt * 1e3:7.1f} ms")
        if best is None or bic < best[0]:
            best = (bic, gm)
    gm = best[1]
    print(f"\nBest: covariance_type={gm.covariance_type!r}")
    order = np.argsort(-gm.weights_)
    np.set_printoptions(precision=3, suppress=True)
    for k in order:
        print(f"  weight {gm.weights_[k]:.3f}  mean {gm.means_[k]}")
    labels = gm.predict(X)
    agree = label_agreement(labels, y)
    print(f"\nAgreement of predicted clusters with the true ones: {agree:.1%}")
    print(f"Mean log-likelihood: {gm.score(X):.4f}")
    # The Numba backend compiles its kernels on first use (seconds, once per machine where
    # numba can cache them): timed only when asked for.
    backends = available_backends() if args.numba else [default_backend()]
    print("\nTime per fit (full covariance, n_init=1) by backend:")
    for backend in backends:
        emfast.GaussianMixture(4, backend=backend, random_state=0).fit(X)  # compile/warm up
        t0 = time.perf_counter()
        emfast.GaussianMixture(4, backend=backend, random_state=0).fit(X)
        print(f"  {backend:<7} {(time.perf_counter() - t0) * 1e3:7.2f} ms")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="emfast", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="fit the bundled data and print the model and timings")
    demo.add_argument("--n-init", type=int, default=2)
    demo.add_argument("--numba", action="store_true",
                      help="also time the Numba backend (its first use compiles its kernels)")
    sub.add_parser("config", help="print version, backends, OpenMP, threads and BLAS")
    args = parser.parse_args(argv)
    if args.command == "config":
        import emfast

        emfast.show_config()
        return 0
    return _demo(args)


if __name__ == "__main__":
    sys.exit(main())
