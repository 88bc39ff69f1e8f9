"""LatentDirichletAllocation: the variational E-step (emfast.kernels.lda_estep) and fits of a
fixed number of iterations (batch) or passes (online), per kernel backend, on a small corpus
simulated from an LDA model (benchmarks/compare_lda.py times the full-size cases T1..T3
against scikit-learn and gensim)."""

import warnings

import numpy as np

from .common import BACKENDS, lda_corpus, require_backend

N_DOCS, N_WORDS, N_TOPICS, DOC_LENGTH = 2_000, 5_000, 20, 100
N_ITER = 3
ONLINE_BATCH = 1_000


class LDAEStep:
    """One E-step over the corpus from the same initial gamma: the document pass, the
    topic-word statistics and the bound."""

    params = (BACKENDS,)
    param_names = ["backend"]
    timeout = 300

    def setup(self, backend):
        require_backend(backend, "lda")
        from emfast.kernels import dirichlet_expectation, lda_estep

        self.estep = lda_estep
        self.X, _ = lda_corpus(N_DOCS, N_TOPICS, N_WORDS, DOC_LENGTH)
        rng = np.random.default_rng(1)
        # the random start of a fit (scikit-learn's draws): topics and document proportions
        topic_word = rng.gamma(100.0, 0.01, size=(N_TOPICS, N_WORDS))
        self.exp_topic_word = dirichlet_expectation(topic_word, exp=True, backend=backend)
        self.gamma0 = rng.gamma(100.0, 0.01, size=(N_DOCS, N_TOPICS))
        self.gamma = np.empty_like(self.gamma0)
        self.time_estep(backend)                # warm-up (numba JIT compilation)

    def time_estep(self, backend):
        np.copyto(self.gamma, self.gamma0)      # written in place: the same start each time
        self.estep(self.X, self.exp_topic_word, self.gamma, 1.0 / N_TOPICS, cal_bound=True,
                   backend=backend)


class LDAFit:
    """``fit``: N_ITER batch iterations (evaluate_every=-1, so exactly that many), or N_ITER
    online passes in mini-batches of ONLINE_BATCH documents, from random_state=0."""

    params = (["batch", "online"], BACKENDS)
    param_names = ["learning_method", "backend"]
    timeout = 300

    def setup(self, learning_method, backend):
        require_backend(backend, "lda")
        from emfast import LatentDirichletAllocation

        warnings.filterwarnings("ignore", message=r"(?s).*did not converge")
        self.X, _ = lda_corpus(N_DOCS, N_TOPICS, N_WORDS, DOC_LENGTH)
        self.lda = LatentDirichletAllocation(
            N_TOPICS, learning_method=learning_method, max_iter=N_ITER, evaluate_every=-1,
            batch_size=ONLINE_BATCH, random_state=0, backend=backend)
        self.lda.fit(self.X[:200])              # warm-up (numba JIT compilation)

    def time_fit(self, learning_method, backend):
        self.lda.fit(self.X)

    def peakmem_fit(self, learning_method, backend):
        self.lda.fit(self.X)

    def track_perplexity(self, learning_method, backend):
        return self.lda.fit(self.X).bound_

    track_perplexity.unit = "perplexity"
