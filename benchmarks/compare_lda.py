#!/usr/bin/env python
"""Latent Dirichlet Allocation: emfast's LatentDirichletAllocation beside scikit-learn's and
gensim's LdaMulticore, variational Bayes per iteration (batch) and per pass (online), and the
held-out perplexity each one reaches.

    python benchmarks/compare_lda.py [--cases T1,T2,T3] [--repeat 1] [--threads 2] [--small]
    python benchmarks/compare.py --lda           (the same; --quick runs --small)
    python benchmarks/compare_lda.py --cases T1,T2 --seeds 5 --iters 1,10   (quality only)

The corpora are simulated from an LDA model (seeded): K topics beta_k ~ Dirichlet(0.05) over
V=10,000 words (a small concentration, so that topics are distinct), document proportions
theta_d ~ Dirichlet(0.1), document lengths ~ Poisson(150); the counts are a CSR float64
matrix. 20,000 training documents and 2,000 held-out ones from the same model (``--small``:
2,000 and 500, for a quick check). Each case draws its own corpus with as many topics as it
fits. All three libraries fit with the same priors, scikit-learn's defaults made explicit:
doc_topic_prior = topic_word_prior = 1/K, and the same per-document E-step (at most 100
fixed-point updates, stopped when the mean change of gamma is below 1e-3).

T1 (K=50) and T2 (K=200): batch VB. Per iteration means compare.py's definition,
(T_b - T_a) / (b - a) of two fits with ``max_iter`` a and b from the same ``random_state``
(``evaluate_every=-1``, so that exactly that many iterations run), so that validation,
initialisation and the final E-step cancel. a=1, b=3 (``--iters``): scikit-learn takes about
10 s per iteration on T1 on 2 cores, and a fit of b iterations costs b + 1 E-steps. The cost
of an iteration grows as the topics sharpen (each document's fixed point needs more updates,
up to 100), so early iterations are the cheapest for every library: ``--iters 5,8`` times
later ones.
- emfast: ``learning_method="batch"``, ``n_threads`` = --threads, on each backend.
- scikit-learn 1.9: ``learning_method="batch"``, ``n_jobs=-1`` (all cores: joblib processes).
- gensim 4.4 ``LdaMulticore(workers=threads, batch=True, decay=0)``, time per pass with
  ``passes`` a and b. ``batch=True`` makes one M-step per pass over the whole corpus (the
  workers' E-steps run over chunks of ``chunksize=2000``, its default, all from the same
  topics), and ``decay=0`` makes its step size rho = (offset + ...)^0 = 1, so that the
  M-step replaces the topics by eta + the pass's statistics: exactly batch VB. Its E-step
  runs the same 100 updates / 1e-3 (``iterations=100``, ``gamma_threshold=1e-3``; its default
  is 50), ``eval_every=0`` (no perplexity logged during training), ``dtype`` float32 (its
  default). The corpus is a list of bag-of-words lists, made once outside the timing.

T3: online VB, K=50, 10 passes over T1's corpus in chunks of 1,000 documents; wall time per
pass (median total / 10). emfast and scikit-learn: ``partial_fit`` on each chunk in turn
(``batch_size=1000``, so one chunk = one update; ``total_samples`` = the corpus size,
learning_offset=10, learning_decay=0.7, scikit-learn's defaults; scikit-learn with
``n_jobs=-1``). gensim: ``LdaMulticore(passes=10, offset=10, decay=0.7)``, with
``chunksize = 1000 // workers``: LdaMulticore updates after ``chunksize x workers``
documents, so that it too makes one update per 1,000 documents, their E-steps split over its
workers. gensim's step size is its own: rho = (offset + pass + n / chunksize)^-decay, n the
documents seen so far in the first pass (it stops growing after it).

``--seeds S`` times nothing: it fits each library from random_state 0 .. S-1 for b batch
iterations (gensim: passes) and prints the median, range and each seed's held-out
perplexity, so that quality is compared beyond one draw (each library draws its start its
own way; scikit-learn with n_jobs=-1 draws otherwise than with n_jobs=None).

Held-out perplexity: ONE evaluator for all three, scikit-learn's
``perplexity(X_held, sub_sampling=True)`` with each model's variational topic-word
parameters (emfast and scikit-learn: ``components_``; gensim: ``state.get_lambda()``) and its
priors loaded into a ``sklearn.decomposition.LatentDirichletAllocation`` whose
``total_samples`` is the training corpus's size: exp(-bound / tokens), the bound of an E-step
from gamma = 1 on the held-out documents, scaled up to the training corpus's size, plus the
topic-word term E[log p(beta) - log q(beta)] (so spread over the training corpus, as in
Hoffman, Blei & Bach 2010 and gensim's ``log_perplexity(chunk, total_docs)``; without the
scaling that global term would swamp the held-out words). The term penalises topics far from
their prior: on small corpora and after few iterations the figure can exceed V. Each
library's own figure is printed beside it: emfast's and scikit-learn's ``perplexity`` (the
same definition), gensim's exp(-``log_perplexity(held_out, total_docs)``) (the per-word bound
in nats; gensim's log line prints 2^ of it instead).

A full run (T1, T2, T3 with --repeat 1) takes roughly half an hour on 2 idle cores (an
estimate from scikit-learn's ~10 s per T1 iteration and gensim's ~25 s per pass; T2 the
longest), nearly all of it scikit-learn's and gensim's, and much longer on a busy machine (T1
alone took 15 minutes at a load average of 12). Each library's result is printed (to stderr)
as it comes, each case's table when the case ends.
"""

import argparse
import os
import sys
import time
import warnings

import numpy as np

if os.path.dirname(os.path.abspath(__file__)) not in map(os.path.abspath, sys.path):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compare as C  # noqa: E402

from benchmarks.common import lda_corpus  # noqa: E402

SEED = 2026
CASES = ("T1", "T2", "T3")
BATCH_K = {"T1": 50, "T2": 200}
ONLINE_K, ONLINE_PASSES, CHUNK = 50, 10, 1_000
N_WORDS, DOC_LENGTH = 10_000, 150
N_DOCS, N_HELD_OUT = 20_000, 2_000
SMALL_DOCS, SMALL_HELD_OUT = 2_000, 500
ITERS = (1, 3)
# E-step settings shared by all three (scikit-learn's defaults)
MAX_DOC_UPDATE_ITER, MEAN_CHANGE_TOL = 100, 1e-3
GENSIM_BATCH_CHUNK = 2_000
WARM_UP_DOCS = 200


# ----------------------------------------------------------------------------------- data
def train_and_held_out(K, small):
    """The training and held-out documents of a case with K topics (one model, one draw)."""
    n_train, n_held = (SMALL_DOCS, SMALL_HELD_OUT) if small else (N_DOCS, N_HELD_OUT)
    t = time.perf_counter()
    X, _ = lda_corpus(n_train + n_held, K, N_WORDS, DOC_LENGTH, seed=SEED + K)
    print(f"# corpus K={K}: {n_train:,} + {n_held:,} documents, V={N_WORDS:,}, "
          f"{X.nnz / X.shape[0]:.0f} distinct words and {X.sum() / X.shape[0]:.0f} tokens per "
          f"document, drawn in {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
    return X[:n_train], X[n_train:]


def bag_of_words(X):
    """gensim's in-memory corpus: per document a list of (word id, count)."""
    ids, counts = X.indices.tolist(), X.data.tolist()
    return [list(zip(ids[a:b], counts[a:b])) for a, b in zip(X.indptr[:-1], X.indptr[1:])]


# ------------------------------------------------------------------------------ libraries
def lda_backends(wanted):
    """The emfast backends to time: [] when emfast has no LatentDirichletAllocation."""
    try:
        from emfast import LatentDirichletAllocation  # noqa: F401
        from emfast._config import available_backends
    except ImportError as exc:
        print(f"# emfast.LatentDirichletAllocation unavailable ({exc}); timing scikit-learn "
              "and gensim only", file=sys.stderr)
        return []
    return [b for b in available_backends("lda") if b in wanted]


def priors(K):
    return {"doc_topic_prior": 1.0 / K, "topic_word_prior": 1.0 / K}


def emfast_lda(K, backend, threads, seed=0, **kw):
    from emfast import LatentDirichletAllocation

    return LatentDirichletAllocation(K, **priors(K), random_state=seed, backend=backend,
                                     n_threads=threads, **kw)


def sklearn_lda(K, seed=0, **kw):
    from sklearn.decomposition import LatentDirichletAllocation

    return LatentDirichletAllocation(K, **priors(K), random_state=seed, n_jobs=-1, **kw)


def gensim_lda(corpus, K, threads, seed=0, **kw):
    """gensim's LdaMulticore trained on ``corpus`` (its constructor trains) with the same
    priors and E-step as the others, no evaluation during training."""
    from gensim.models import LdaMulticore

    return LdaMulticore(corpus, num_topics=K, id2word={w: str(w) for w in range(N_WORDS)},
                        workers=threads, alpha=1.0 / K, eta=1.0 / K,
                        iterations=MAX_DOC_UPDATE_ITER, gamma_threshold=MEAN_CHANGE_TOL,
                        eval_every=0, random_state=seed, **kw)


def held_out_perplexity(topic_word, doc_topic_prior, topic_word_prior, X_held, n_train):
    """The one evaluator: scikit-learn's ``perplexity(X_held, sub_sampling=True)`` under
    variational topic-word parameters ``topic_word`` (K, V) and the two (symmetric) priors,
    the held-out documents standing for a corpus of ``n_train`` documents."""
    from scipy.special import psi
    from sklearn.decomposition import LatentDirichletAllocation

    lam = np.asarray(topic_word, dtype=np.float64)
    ev = LatentDirichletAllocation(len(lam), doc_topic_prior=doc_topic_prior,
                                   topic_word_prior=topic_word_prior, total_samples=n_train)
    ev.components_ = lam
    ev.exp_dirichlet_component_ = np.exp(psi(lam) - psi(lam.sum(axis=1))[:, None])
    ev.doc_topic_prior_, ev.topic_word_prior_ = doc_topic_prior, topic_word_prior
    ev.n_features_in_ = lam.shape[1]
    return ev.perplexity(X_held, sub_sampling=True)


def sklearn_api_perplexities(est, X_held, n_train):
    """(the evaluator's, the estimator's own) held-out perplexity of a fitted emfast or
    scikit-learn LatentDirichletAllocation."""
    own = est.set_params(total_samples=n_train).perplexity(X_held, sub_sampling=True)
    return (held_out_perplexity(est.components_, est.doc_topic_prior_,
                                est.topic_word_prior_, X_held, n_train), own)


def gensim_perplexities(model, held_bow, X_held, n_train):
    """(the evaluator's, gensim's own exp(-per-word bound)) held-out perplexity."""
    alpha, eta = np.asarray(model.alpha), np.asarray(model.eta)
    if np.ptp(alpha) or np.ptp(eta):
        raise RuntimeError("gensim's priors are not symmetric: the evaluator takes scalars")
    return (held_out_perplexity(model.state.get_lambda(), float(alpha[0]), float(eta[0]),
                                X_held, n_train),
            float(np.exp(-model.log_perplexity(held_bow, total_docs=n_train))))


# -------------------------------------------------------------------------------- timings
def check_iterations(est, n):
    if est.n_iter_ != n:
        raise RuntimeError(f"{type(est).__module__}: ran {est.n_iter_} iterations, not {n}")
    return est


def report(label, seconds, perplexities):
    print(f"# {label}: {C.fmt_ms(seconds)} ms, held-out perplexity {perplexities[0]:.2f} "
          f"(its own {perplexities[1]:.2f})", file=sys.stderr, flush=True)


def print_rows(title, unit, results, note):
    """One table: per library its time, the evaluator's held-out perplexity, its own, and
    scikit-learn's and gensim's time over its time."""
    base = {name.split()[0]: t for name, t, _ in results}
    rows = [[name, C.fmt_ms(t), f"{p[0]:.2f}", f"{p[1]:.2f}",
             C.fmt_ratio(base.get("scikit-learn"), t), C.fmt_ratio(base.get("gensim"), t)]
            for name, t, p in results]
    print()
    C.print_table([title, f"ms / {unit}", "held-out perplexity (one evaluator)",
                   "its own perplexity", "scikit-learn / this", "gensim / this"], 1, rows)
    print(f"\n{note}\n", flush=True)


def run_batch(case, threads, repeats, backends, small, iters):
    K = BATCH_K[case]
    X, X_held = train_and_held_out(K, small)
    n_train, results = X.shape[0], []
    for backend in backends:
        def fit(n, backend=backend):
            est = emfast_lda(K, backend, threads, learning_method="batch", max_iter=n,
                             evaluate_every=-1)
            return check_iterations(est.fit(X), n)

        emfast_lda(K, backend, threads, max_iter=1).fit(X[:WARM_UP_DOCS])   # JIT, threads
        C.cool_down()
        t, _, est = C.median_per_iteration(fit, *iters, repeats)
        results.append((f"emfast ({backend}, {threads} threads)", t,
                        sklearn_api_perplexities(est, X_held, n_train)))
        report(f"{case} {results[-1][0]}", t, results[-1][2])

    def sk_fit(n):
        est = sklearn_lda(K, learning_method="batch", max_iter=n, evaluate_every=-1)
        return check_iterations(est.fit(X), n)

    sklearn_lda(K, max_iter=1).fit(X[:WARM_UP_DOCS])              # the worker processes
    C.cool_down()
    t, _, est = C.median_per_iteration(sk_fit, *iters, repeats)
    results.append(("scikit-learn (n_jobs=-1)", t,
                    sklearn_api_perplexities(est, X_held, n_train)))
    report(f"{case} {results[-1][0]}", t, results[-1][2])

    corpus, held_bow = bag_of_words(X), bag_of_words(X_held)
    C.cool_down()
    t, _, model = C.median_per_iteration(
        lambda n: gensim_lda(corpus, K, threads, passes=n, batch=True, decay=0.0,
                             chunksize=GENSIM_BATCH_CHUNK), *iters, repeats)
    results.append((f"gensim LdaMulticore (batch, {threads} workers)", t,
                    gensim_perplexities(model, held_bow, X_held, n_train)))
    report(f"{case} {results[-1][0]}", t, results[-1][2])
    a, b = iters
    print_rows(f"{case} batch VB, K={K}", "iteration (gensim: pass)", results,
               f"{X.shape[0]:,} documents (+{X_held.shape[0]:,} held out), V={N_WORDS:,}, "
               f"K={K}; per iteration = (T_{b} - T_{a}) / {b - a}, medians of {repeats}; "
               f"perplexities after {b} iterations / passes")


def run_seeds(case, threads, seeds, backends, small, n_iter):
    """Quality without one draw deciding: the evaluator's held-out perplexity after
    ``n_iter`` batch iterations (gensim: passes) from ``random_state`` 0 .. seeds - 1, per
    library (one emfast backend: both give the same numbers)."""
    K = BATCH_K[case]
    X, X_held = train_and_held_out(K, small)
    n_train, corpus, held_bow = X.shape[0], bag_of_words(X), bag_of_words(X_held)
    batch = {"learning_method": "batch", "max_iter": n_iter, "evaluate_every": -1}
    libraries = [(f"emfast ({b})", lambda s, b=b: sklearn_api_perplexities(
                     check_iterations(emfast_lda(K, b, threads, s, **batch).fit(X), n_iter),
                     X_held, n_train)) for b in backends[:1]]
    libraries.append(("scikit-learn (n_jobs=-1)", lambda s: sklearn_api_perplexities(
        check_iterations(sklearn_lda(K, s, **batch).fit(X), n_iter), X_held, n_train)))
    libraries.append(("gensim LdaMulticore (batch)", lambda s: gensim_perplexities(
        gensim_lda(corpus, K, threads, s, passes=n_iter, batch=True, decay=0.0,
                   chunksize=GENSIM_BATCH_CHUNK), held_bow, X_held, n_train)))
    rows = []
    for label, perplexities in libraries:
        found = []
        for seed in range(seeds):
            found.append(perplexities(seed)[0])
            print(f"# {case} {label} seed {seed}: held-out perplexity {found[-1]:.2f}",
                  file=sys.stderr, flush=True)
        rows.append([label, f"{np.median(found):.2f}", f"{min(found):.2f}", f"{max(found):.2f}",
                     " ".join(f"{p:.1f}" for p in found)])
    print()
    C.print_table([f"{case} batch VB, K={K}", "median held-out perplexity", "min", "max",
                   "per seed"], 1, rows)
    print(f"\n{X.shape[0]:,} documents (+{X_held.shape[0]:,} held out), V={N_WORDS:,}, K={K}; "
          f"after {n_iter} iterations / passes; random_state 0..{seeds - 1}; one evaluator "
          "(scikit-learn's perplexity, sub_sampling=True)\n", flush=True)


def online_passes(make, chunks):
    """ONLINE_PASSES passes of ``partial_fit`` over ``chunks`` on ``make()``'s estimator."""
    est = make()
    for _ in range(ONLINE_PASSES):
        for chunk in chunks:
            est.partial_fit(chunk)
    return est


def run_online(threads, repeats, backends, small):
    K = ONLINE_K
    X, X_held = train_and_held_out(K, small)
    n_train = X.shape[0]
    chunks = [X[i:i + CHUNK] for i in range(0, X.shape[0], CHUNK)]
    online = {"batch_size": CHUNK, "total_samples": n_train}
    makers = [(f"emfast ({backend}, {threads} threads)",
               lambda backend=backend: emfast_lda(K, backend, threads, **online))
              for backend in backends]
    makers.append(("scikit-learn (n_jobs=-1)", lambda: sklearn_lda(K, **online)))
    results = []
    for label, make in makers:
        make().partial_fit(X[:WARM_UP_DOCS])
        C.cool_down()
        t, est = C.median_time(lambda make=make: online_passes(make, chunks), repeats)
        results.append((label, t / ONLINE_PASSES,
                        sklearn_api_perplexities(est, X_held, n_train)))
        report(f"T3 {label}", t / ONLINE_PASSES, results[-1][2])

    corpus, held_bow = bag_of_words(X), bag_of_words(X_held)
    C.cool_down()
    t, model = C.median_time(
        lambda: gensim_lda(corpus, K, threads, passes=ONLINE_PASSES,
                           chunksize=max(1, CHUNK // threads), offset=10.0, decay=0.7),
        repeats)
    results.append((f"gensim LdaMulticore (online, {threads} workers)", t / ONLINE_PASSES,
                    gensim_perplexities(model, held_bow, X_held, n_train)))
    report(f"T3 {results[-1][0]}", t / ONLINE_PASSES, results[-1][2])
    print_rows(f"T3 online VB, K={K}", "pass", results,
               f"{X.shape[0]:,} documents (+{X_held.shape[0]:,} held out), V={N_WORDS:,}, "
               f"K={K}; {ONLINE_PASSES} passes of {CHUNK:,}-document chunks; per pass = "
               f"the whole fit / {ONLINE_PASSES}, medians of {repeats}; perplexities after "
               f"{ONLINE_PASSES} passes")


def run(cases, threads, repeats, backends, small=False, iters=ITERS, seeds=0):
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for case in cases:
            t = time.perf_counter()
            if seeds:
                run_seeds(case, threads, seeds, backends, small, iters[1])
            elif case in BATCH_K:
                run_batch(case, threads, repeats, backends, small, iters)
            else:
                run_online(threads, repeats, backends, small)
            print(f"# {case} done in {time.perf_counter() - t:.0f} s", file=sys.stderr,
                  flush=True)


def iteration_pair(text):
    a, b = (int(v) for v in text.split(","))
    if not 1 <= a < b:
        raise argparse.ArgumentTypeError("--iters a,b needs 1 <= a < b")
    return a, b


def main(argv=None):
    p = C.side_parser(__doc__, ",".join(CASES), CASES)
    p.set_defaults(repeat=1)                # scikit-learn: ~10 s an iteration on T1
    p.add_argument("--small", action="store_true",
                   help=f"{SMALL_DOCS:,} training and {SMALL_HELD_OUT} held-out documents")
    p.add_argument("--iters", type=iteration_pair, default=ITERS,
                   help="a,b: the two max_iter / passes of the batch cases (default 1,3)")
    p.add_argument("--seeds", type=int, default=0,
                   help="instead of timing: the held-out perplexity of each library after b "
                        "batch iterations (--iters a,b) from random_state 0 .. SEEDS-1 (T1, T2)")
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error("--repeat must be >= 1")
    cases = C.chosen_cases(p, args.cases, CASES)
    if args.seeds < 0 or (args.seeds and "T3" in cases):
        p.error("--seeds takes a positive count and the batch cases only (--cases T1,T2)")
    threads = args.threads or C.usable_cpus()
    C.print_header(threads)
    print(f"# gensim {C.version('gensim')}")
    wanted = [b.strip() for b in args.backends.split(",") if b.strip()]
    run(cases, threads, args.repeat, lda_backends(wanted), args.small, args.iters, args.seeds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
