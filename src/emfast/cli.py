"""The ``emfast`` command line (also ``python -m emfast``).

    emfast fit-gmm data.csv --components 5 --covariance full --out model.json
    emfast predict model.json data.csv [--proba] > labels.csv
    emfast select data.csv --components 1-10 --criterion bic [--out selection.json]
    emfast fit-hmm data.csv --lengths-column seq_id --states 4 --out hmm.json
    emfast impute data.csv --out filled.csv
    emfast fit-lca answers.csv --classes 3 [--out lca.json]
    emfast fit-lda counts.npz --topics 20 --out lda.json
    emfast benchmark [compare.py's options]
    emfast demo | emfast config

Data files: CSV (header detected), .npy, .npz, Parquet (with pyarrow): emfast._files. The fit
commands share ``--seed``, ``--max-iter``, ``--tol``, ``--threads`` and ``-q/--quiet``; a fit
that runs for more than a second shows a progress line on stderr (from the estimator's own
verbose output). Models are saved and loaded by emfast.io. A user error (a missing or bad
file, a wrong column, a bad option value) is one line ``emfast: error: ...`` on stderr and
exit code 2.
"""

import argparse
import contextlib
import csv
import io
import os
import re
import subprocess
import sys
import time
import warnings

import numpy as np

from emfast._files import read_counts, read_table

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
# a progress line appears once a fit has run this long, then at most once per interval
PROGRESS_DELAY = 1.0
PROGRESS_EVERY = 1.0


class UsageError(ValueError):
    """A bad command line (argparse's complaints included)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{message} (usage: {self.prog} --help)")


def main(argv=None):
    """Run the command line ``argv`` (default: sys.argv[1:]); returns the exit code."""
    parser = build_parser()
    try:
        args, rest = parser.parse_known_args(argv)
        args.rest = rest                          # compare.py's options (benchmark)
        if args.rest and args.command != "benchmark":
            raise UsageError(f"unrecognized arguments: {' '.join(args.rest)}")
        out_dir = os.path.dirname(getattr(args, "out", None) or "") or "."
        if not os.path.isdir(out_dir):            # found out before the fit, not after
            raise UsageError(f"--out: no directory {out_dir}")
        return args.run(args) or 0
    except (ValueError, OSError) as exc:     # the files' and the estimators' checks
        print(f"emfast: error: {_message(exc)}", file=sys.stderr)
        return 2


def _message(exc):
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}"
    return " ".join(str(exc).split()) or type(exc).__name__


# ---------------------------------------------------------------------- the parser
def build_parser():
    parser = _Parser(prog="emfast", description="emfast: EM fits of data files; models "
                     "saved as JSON (emfast.load reads them)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    common = _Parser(add_help=False)
    common.add_argument("--seed", type=int, default=0,
                        help="random seed of the initialisation (default 0)")
    common.add_argument("--max-iter", type=int, default=None,
                        help="EM iterations at most (default: the estimator's)")
    common.add_argument("--tol", type=float, default=None,
                        help="convergence tolerance (default: the estimator's)")
    common.add_argument("--threads", type=int, default=None,
                        help="threads (default: all usable CPUs)")
    common.add_argument("-q", "--quiet", action="store_true",
                        help="no progress line and no warnings")

    def command(name, run, help, data="data", **kwargs):
        p = sub.add_parser(name, help=help, parents=[common] if data else [],
                           description=help, **kwargs)
        if data:
            p.add_argument(data, help="data file: .csv, .npy, .npz or .parquet")
        p.set_defaults(run=run)
        return p

    p = command("fit-gmm", _fit_gmm, "fit a Gaussian mixture")
    p.add_argument("--components", type=_positive, default=1)
    p.add_argument("--covariance", choices=COVARIANCE_TYPES, default="full")
    p.add_argument("--n-init", type=_positive, default=1, help="EM restarts (best kept)")
    p.add_argument("--out", help="save the model (JSON) here")

    p = command("predict", _predict, "labels (or probabilities) of a saved model on data",
                data=None)
    p.add_argument("model", help="a model saved by a fit command or to_json")
    p.add_argument("data", help="data file: .csv, .npy, .npz or .parquet")
    p.add_argument("--proba", action="store_true", help="one probability column per "
                   "component (state) instead of the labels")
    p.add_argument("--lengths-column", help="(HMM) the column of sequence ids")
    p.add_argument("--out", help="write the CSV here (default: stdout)")

    p = command("select", _select, "choose a Gaussian mixture by BIC, AIC or ICL")
    p.add_argument("--components", type=_components, default=list(range(1, 11)),
                   help="numbers of components: 1-10, 2,4,8 ... (default 1-10)")
    p.add_argument("--covariance", type=_covariances, default=list(COVARIANCE_TYPES),
                   help="covariance types, comma-separated (default: all four)")
    p.add_argument("--criterion", choices=("bic", "aic", "icl"), default="bic")
    p.add_argument("--out", help="save the selection (JSON; predict uses its best model)")

    p = command("fit-hmm", _fit_hmm, "fit a Gaussian hidden Markov model")
    p.add_argument("--states", type=_positive, default=2)
    p.add_argument("--covariance", choices=COVARIANCE_TYPES, default="diag")
    p.add_argument("--lengths-column", help="the column of sequence ids (rows of one id "
                   "form a sequence, in file order; not a feature)")
    p.add_argument("--n-init", type=_positive, default=1, help="EM restarts (best kept)")
    p.add_argument("--out", help="save the model (JSON) here")

    p = command("impute", _impute, "fill missing values (empty, NA, NaN) by EM")
    p.add_argument("--out", help="write the filled CSV here (default: stdout)")

    p = command("fit-lca", _fit_lca, "latent class analysis (categorical mixture) of "
                "answers coded 0, 1, 2...")
    p.add_argument("--classes", type=_positive, default=2)
    p.add_argument("--n-init", type=_positive, default=1, help="EM restarts (best kept)")
    p.add_argument("--out", help="save the model (JSON) here")

    p = command("fit-lda", _fit_lda, "topics of a document x word count matrix (LDA)",
                data="counts")
    p.add_argument("--topics", type=_positive, default=10)
    p.add_argument("--method", choices=("batch", "online"), default="batch")
    p.add_argument("--top-words", type=_positive, default=10,
                   help="words (column numbers) printed per topic")
    p.add_argument("--out", help="save the model (JSON) here")
    p.epilog = ("--tol: the perplexity (evaluated after every pass) changing by less stops "
                "the fit")

    command("benchmark", _benchmark, "the comparison tables of benchmarks/compare.py "
            "(from a source checkout; its options, -h too, follow)", data=None,
            add_help=False)

    p = command("demo", _demo, "fit the bundled data and print the model and timings",
                data=None)
    p.add_argument("--n-init", type=int, default=2)
    p.add_argument("--numba", action="store_true",
                   help="also time the Numba backend (its first use compiles its kernels)")
    command("config", _config, "print version, backends, OpenMP, threads and BLAS",
            data=None)
    return parser


def _positive(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _components(text):
    """'1-10', '2,4,8' or a mix ('1-3,8') as a list of positive integers."""
    out = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        first, last = _positive(lo), _positive(hi) if hi else None
        if last is not None and last < first:
            raise argparse.ArgumentTypeError(f"empty range {part!r}")
        out.extend(range(first, (last or first) + 1))
    return out


def _covariances(text):
    types = [t.strip() for t in text.split(",")]
    bad = [t for t in types if t not in COVARIANCE_TYPES]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown covariance type(s) {', '.join(bad)} "
                                         f"(choose from {', '.join(COVARIANCE_TYPES)})")
    return types


def _estimator_options(args, max_iter="max_iter", tol="tol"):
    """The common options as estimator parameters (``max_iter`` and ``tol``: the
    estimator's names of them)."""
    out = {"random_state": args.seed, "n_threads": args.threads}
    if args.max_iter is not None:
        out[max_iter] = args.max_iter
    if args.tol is not None:
        out[tol] = args.tol
    return out


# ---------------------------------------------------------------------- fitting
class _Progress:
    """A text stream for the estimators' verbose output during a fit: their iteration lines
    become a progress line on stderr (iteration, log-likelihood where the estimator prints
    it, change), once the fit has run ``PROGRESS_DELAY`` seconds and at most once per
    ``PROGRESS_EVERY``; other lines (logged warnings) pass through."""

    _LINES = (
        # GaussianMixture and the discrete mixtures (verbose=2), EMImputer
        re.compile(r"Iteration (?P<it>\d+)\t.*ll change (?P<change>\S+)"),
        # the HMMs' ConvergenceMonitor
        re.compile(r"^\s*(?P<it>\d+)\s+(?P<loglik>-?(?:[\d.]+(?:e[-+]\d+)?|inf))\s+"
                   r"(?P<change>[-+]\S+)\s*$"),
        # LatentDirichletAllocation
        re.compile(r"^iteration: (?P<it>\d+) of max_iter: \d+"
                   r"(?:, perplexity: (?P<perplexity>\S+))?$"),
    )

    def __init__(self, stream, quiet):
        self.stream = stream
        self.quiet = quiet
        self.start = time.monotonic()
        self.shown = None             # when the last progress line was written
        self._pending = ""

    def write(self, text):
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self._line(line)
        return len(text)

    def flush(self):
        self.stream.flush()

    def _line(self, line):
        found = next((m for m in (p.search(line) for p in self._LINES) if m), None)
        if found is None:
            if line.strip() and not line.startswith("Initialization") and not self.quiet:
                print(line, file=self.stream)
            return
        now = time.monotonic()
        if self.quiet or now - self.start < PROGRESS_DELAY or (
                self.shown is not None and now - self.shown < PROGRESS_EVERY):
            return
        self.shown = now
        values = found.groupdict()
        parts = [f"iteration {values['it']}"]
        for name, label, fmt in (("loglik", "log-likelihood", ".6g"),
                                 ("perplexity", "perplexity", ".6g"),
                                 ("change", "change", "+.3g")):
            value = float(values.get(name) or "nan")
            if np.isfinite(value):       # the first iteration's change is inf or nan
                parts.append(f"{label} {value:{fmt}}")
        print(f"emfast: {'  '.join(parts)}", file=self.stream)


def _fit(est, args, *fit_args, **fit_kwargs):
    """``est.fit(*fit_args, **fit_kwargs)`` with its progress on stderr (``est``'s verbose
    output read by _Progress) and its warnings as one line each; returns ``est``."""
    # quiet: no verbose output to read (and the restarts of a verbose fit run one by one)
    hooks = {} if args.quiet else _verbose_params(est)
    saved = {name: value for name, value in est.get_params().items() if name in hooks}
    est.set_params(**hooks)
    progress = _Progress(sys.stderr, args.quiet)
    try:
        with warnings.catch_warnings(record=True) as caught, \
                contextlib.redirect_stdout(progress), contextlib.redirect_stderr(progress):
            warnings.simplefilter("always")
            est.fit(*fit_args, **fit_kwargs)
    finally:
        est.set_params(**saved)                # the saved model prints nothing
    if not args.quiet:
        for message in dict.fromkeys(" ".join(str(w.message).split()) for w in caught):
            print(f"emfast: warning: {message}", file=sys.stderr)
    return est


def _verbose_params(est):
    """The parameters that make ``est`` print each iteration (with its change)."""
    from emfast.hmm._base import BaseHMM

    if isinstance(est, BaseHMM):
        return {"verbose": True}
    if "verbose_interval" in est.get_params():
        return {"verbose": 2, "verbose_interval": 1}
    return {"verbose": 2}


def _save(est, args):
    if args.out:
        est.to_json(args.out)
        print(f"saved to {args.out}")


def _fit_gmm(args):
    from emfast import GaussianMixture

    X = read_table(args.data).matrix()
    gm = _fit(GaussianMixture(args.components, covariance_type=args.covariance,
                              n_init=args.n_init, **_estimator_options(args)), args, X)
    print(f"GaussianMixture: {gm.n_components} components ({gm.covariance_type} "
          f"covariances), {X.shape[0]} rows x {X.shape[1]} features")
    print(f"{_run_summary(gm.n_iter_, gm.converged_)}, mean log-likelihood "
          f"{gm.lower_bound_:.6g}, BIC {gm.bic(X):.6g}")
    _print_rows("component", ["weight"] + [f"mean[{j}]" for j in range(X.shape[1])],
                np.column_stack([gm.weights_, gm.means_]))
    _save(gm, args)


def _select(args):
    from emfast.selection import select_gaussian_mixture

    X = read_table(args.data).matrix()
    with warnings.catch_warnings():
        # each candidate's warnings (convergence, re-seeded components) are its row's
        warnings.simplefilter("ignore")
        sel = select_gaussian_mixture(X, args.components, args.covariance, args.criterion,
                                      **_estimator_options(args))
    t = sel.table_
    print(f"{'':2}{'K':>3} {'covariance':<10} {'log-lik':>12} {'params':>6} {'bic':>12} "
          f"{'aic':>12} {'icl':>12} {'iter':>4}  converged")
    for i, row in enumerate(t):
        mark = "*" if i == sel.best_index_ else " "
        note = row["error"] or ("yes" if row["converged"] else "no")
        print(f"{mark:2}{row['n_components']:>3} {row['covariance_type']:<10} "
              f"{row['log_likelihood']:>12.6g} {row['n_parameters']:>6} {row['bic']:>12.6g} "
              f"{row['aic']:>12.6g} {row['icl']:>12.6g} {row['n_iter']:>4}  {note}")
    best = sel.best_params_
    print(f"best by {args.criterion}: {best['n_components']} components, "
          f"{best['covariance_type']} covariances")
    _save(sel, args)


def _fit_hmm(args):
    from emfast.hmm import GaussianHMM

    table = read_table(args.data)
    X, lengths, _ = _sequences(table, args.lengths_column)
    model = _fit(GaussianHMM(args.states, covariance_type=args.covariance, n_init=args.n_init,
                             **_estimator_options(args, "n_iter")), args, X, lengths)
    n_seq = 1 if lengths is None else len(lengths)
    print(f"GaussianHMM: {model.n_components} states ({model.covariance_type} covariances), "
          f"{n_seq} sequence(s), {X.shape[0]} rows x {X.shape[1]} features")
    print(f"{_run_summary(model.n_iter_, model.monitor_.converged)}, log-likelihood "
          f"{model.monitor_.history[-1] if model.monitor_.history else float('nan'):.6g}")
    K = model.n_components
    _print_rows("state", ["start"] + [f"to {k}" for k in range(K)],
                np.column_stack([model.startprob_, model.transmat_]))
    _print_rows("state", [f"mean[{j}]" for j in range(X.shape[1])], model.means_)
    _save(model, args)


def _fit_lca(args):
    from emfast import CategoricalMixture

    table = read_table(args.data)
    codes = table.matrix()
    lca = _fit(CategoricalMixture(args.classes, n_init=args.n_init,
                                  **_estimator_options(args)), args, codes)
    print(f"Latent class analysis: {lca.n_components} classes, {codes.shape[0]} rows x "
          f"{codes.shape[1]} items")
    print(f"{_run_summary(lca.n_iter_, lca.converged_)}, mean log-likelihood "
          f"{lca.lower_bound_:.6g}, BIC {lca.bic(codes):.6g}")
    _print_rows("class", ["weight"], lca.weights_[:, None])
    names = table.names or [str(j) for j in range(codes.shape[1])]
    for name, probs in zip(names, lca.probabilities_):
        print(f"\nitem {name}: P(answer | class)")
        _print_rows("class", [f"answer {c}" for c in range(probs.shape[1])], probs)
    _save(lca, args)


def _impute(args):
    from emfast.impute import EMImputer

    table = read_table(args.data)
    X = table.matrix()
    imputer = _fit(EMImputer(**_estimator_options(args)), args, X)
    filled = imputer.transform(X)
    _write_csv(args.out, table.names, filled)
    if not args.quiet:
        print(f"emfast: {int(np.isnan(X).sum())} missing values filled "
              f"({_run_summary(imputer.n_iter_, imputer.converged_)})", file=sys.stderr)


def _fit_lda(args):
    from emfast import LatentDirichletAllocation

    counts = read_counts(args.counts)
    options = _estimator_options(args, tol="perp_tol")
    if args.tol is not None:
        options["evaluate_every"] = 1
    lda = _fit(LatentDirichletAllocation(args.topics, learning_method=args.method,
                                         **options), args, counts)
    print(f"LatentDirichletAllocation: {lda.n_components} topics, {counts.shape[0]} "
          f"documents x {counts.shape[1]} words")
    print(f"{lda.n_iter_} passes ({lda.learning_method}), perplexity {lda.bound_:.6g}")
    print(f"top {min(args.top_words, counts.shape[1])} words (column numbers) per topic:")
    for k, row in enumerate(lda.components_):
        top = np.argsort(-row, kind="stable")[:args.top_words]
        print(f"  topic {k:>3}: {' '.join(map(str, top))}")
    _save(lda, args)


def _predict(args):
    import emfast

    try:
        model = emfast.load(args.model)
    except ValueError as exc:
        raise ValueError(f"{args.model}: {exc}") from None
    model = getattr(model, "best_estimator_", model)        # a saved model selection
    if not hasattr(model, "predict"):
        raise ValueError(f"{args.model} holds a {type(model).__name__}, which does not "
                         "predict")
    from emfast.hmm._base import BaseHMM

    hmm = isinstance(model, BaseHMM)
    if args.lengths_column and not hmm:
        raise UsageError("--lengths-column is for HMM models")
    table = read_table(args.data)
    X, lengths, order = _sequences(table, args.lengths_column)
    extra = (lengths,) if hmm else ()
    if args.proba:
        out = model.predict_proba(X, *extra)
        names = [f"p{k}" for k in range(out.shape[1])]
    else:
        out, names = model.predict(X, *extra)[:, None], ["label"]
    if order is not None:                 # back to the file's row order
        out = out[np.argsort(order, kind="stable")]
    _write_csv(args.out, names, out)


def _compare_script():
    """benchmarks/compare.py of the source checkout this emfast runs from (src/emfast)."""
    return os.path.normpath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir,
                                         "benchmarks", "compare.py"))


def _benchmark(args):
    script = _compare_script()
    if not os.path.isfile(script):
        raise UsageError("emfast benchmark runs benchmarks/compare.py from a source checkout "
                         "of emfast (git clone, then pip install -e .); this emfast is "
                         f"installed at {os.path.dirname(__file__)} without it")
    return subprocess.call([sys.executable, script, *args.rest])


# ---------------------------------------------------------------------- helpers
def _sequences(table, column):
    """(X, lengths, order): the rows grouped into sequences by the ids of ``column``
    (sequences in order of first appearance, rows in file order within each; ``order``
    the file rows in that order), the column itself not a feature; without a column,
    (all columns, None, None)."""
    if column is None:
        return table.matrix(), None, None
    j = table.column_index(column)
    _, first, group = np.unique(table.columns[j], return_index=True, return_inverse=True)
    rank = np.empty_like(first)
    rank[np.argsort(first)] = np.arange(len(first))
    group = rank[group.ravel()]
    order = np.argsort(group, kind="stable")
    return table.matrix(drop=j)[order], np.bincount(group), order


def _run_summary(n_iter, converged):
    return f"{n_iter} iterations, {'converged' if converged else 'not converged'}"


def _print_rows(label, columns, values, max_columns=8):
    """A small table: one row per component (state, class) of ``values``, its first
    ``max_columns`` columns (and "..." when there are more)."""
    more = " ..." if len(columns) > max_columns else ""
    print(f"{label:>10} " + " ".join(f"{c:>11}" for c in columns[:max_columns]) + more)
    for k, row in enumerate(np.atleast_2d(values)):
        print(f"{k:>10} " + " ".join(f"{v:>11.4g}" for v in row[:max_columns]) + more)


def _write_csv(path, names, values):
    """``values`` (N, D) as CSV to ``path`` (stdout when None), with the header ``names``
    when given; numbers written exactly (shortest round-trip form)."""
    header = io.StringIO()
    if names is not None:        # quoted where a name holds a comma or a quote
        csv.writer(header, lineterminator="").writerow(names)
    lines = [] if names is None else [header.getvalue()]
    lines.extend(",".join(map(repr, row)) for row in values.tolist())
    text = "\n".join(lines) + "\n"
    if path is None:
        sys.stdout.write(text)
    else:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)


# ---------------------------------------------------------------------- demo, config
def _config(args):
    import emfast

    emfast.show_config()


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
    for ct in COVARIANCE_TYPES:
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
