"""emfast.hmm: GaussianHMM.fit (diag, full) and CategoricalHMM.fit, a fixed number of
Baum-Welch iterations from a fixed start, and the kernels (emfast.kernels:
hmm_forward_backward, hmm_gaussian_forward_backward, hmm_categorical_forward_backward,
symbol_counts), for each backend.

The data are sampled from a random HMM (benchmarks.common.make_hmm / sample_hmm) and every
fit starts from the same perturbed copy of the true parameters (``init_params=""``,
``tol=-inf``, so exactly N_ITER iterations run).
"""

import numpy as np

from .common import BACKENDS, make_hmm, perturb_hmm, require_backend, sample_hmm, set_hmm_params

N_ITER = 5
# Gaussian: 50 sequences x 1,000 frames, D=4, K=8. Categorical: 500 x 100, 50 symbols, K=10.
GAUSSIAN = dict(n_sequences=50, length=1_000, n_features=4, n_components=8)
CATEGORICAL = dict(n_sequences=500, length=100, n_features=50, n_components=10)
# Kernel: 200 sequences x 1,000 frames, K=16 states.
KERNEL_SEQUENCES, KERNEL_LENGTH, KERNEL_STATES = 200, 1_000, 16


def _fit_setup(emission, covariance_type, backend, sizes):
    """(X, lengths, a function returning a fresh model at the common start)."""
    require_backend(backend, "hmm")
    from emfast import hmm

    K, D = sizes["n_components"], sizes["n_features"]
    truth = make_hmm(K, D, emission, covariance_type, seed=0)
    X, lengths = sample_hmm(truth, sizes["n_sequences"], sizes["length"], seed=1)
    start = perturb_hmm(truth, seed=2)
    kw = dict(n_components=K, n_iter=N_ITER, tol=-np.inf, init_params="", backend=backend)

    def model():
        if emission == "categorical":
            m = hmm.CategoricalHMM(n_features=D, **kw)
        else:
            m = hmm.GaussianHMM(covariance_type=covariance_type, **kw)
        return set_hmm_params(m, start)

    # Warm-up: JIT compilation (numba) and thread-pool start-up are not what we time.
    n = max(2, 2_000 // sizes["length"])
    model().fit(X[: n * sizes["length"]], lengths[:n])
    return X, lengths, model


class GaussianHMMFit:
    """``GaussianHMM.fit`` running exactly N_ITER iterations from the same start."""

    params = (["diag", "full"], BACKENDS)
    param_names = ["covariance_type", "backend"]
    timeout = 300

    def setup(self, covariance_type, backend):
        self.X, self.lengths, self.model = _fit_setup("gaussian", covariance_type, backend,
                                                      GAUSSIAN)

    def time_fit(self, covariance_type, backend):
        self.model().fit(self.X, self.lengths)

    def peakmem_fit(self, covariance_type, backend):
        self.model().fit(self.X, self.lengths)

    def track_n_iter(self, covariance_type, backend):
        return self.model().fit(self.X, self.lengths).monitor_.iter

    track_n_iter.unit = "iterations"


class CategoricalHMMFit:
    """``CategoricalHMM.fit`` running exactly N_ITER iterations from the same start."""

    params = (BACKENDS,)
    param_names = ["backend"]
    timeout = 300

    def setup(self, backend):
        self.X, self.lengths, self.model = _fit_setup("categorical", None, backend,
                                                      CATEGORICAL)

    def time_fit(self, backend):
        self.model().fit(self.X, self.lengths)

    def peakmem_fit(self, backend):
        self.model().fit(self.X, self.lengths)


class ForwardBackward:
    """One call of ``emfast.kernels.hmm_forward_backward`` over all sequences, with and
    without the (T, K) posteriors."""

    params = ([True, False], BACKENDS)
    param_names = ["posteriors", "backend"]

    def setup(self, posteriors, backend):
        require_backend(backend, "hmm")
        from emfast.kernels import hmm_forward_backward

        self.fb = hmm_forward_backward
        K = KERNEL_STATES
        truth = make_hmm(K, 1, "gaussian", "diag", seed=3)
        self.startprob, self.transmat = truth["startprob_"], truth["transmat_"]
        rng = np.random.default_rng(4)
        self.log_emission = rng.normal(scale=2.0, size=(KERNEL_SEQUENCES * KERNEL_LENGTH, K))
        self.lengths = np.full(KERNEL_SEQUENCES, KERNEL_LENGTH, dtype=np.int64)
        self.fb(self.log_emission[:KERNEL_LENGTH], self.lengths[:1], self.startprob,
                self.transmat, posteriors=posteriors, backend=backend)

    def time_forward_backward(self, posteriors, backend):
        self.fb(self.log_emission, self.lengths, self.startprob, self.transmat,
                posteriors=posteriors, backend=backend)

    def peakmem_forward_backward(self, posteriors, backend):
        self.fb(self.log_emission, self.lengths, self.startprob, self.transmat,
                posteriors=posteriors, backend=backend)


class SymbolCounts:
    """One call of ``emfast.kernels.symbol_counts`` (the categorical emission statistics):
    100,000 symbols out of 50, weighted by 10 states' posteriors."""

    params = (BACKENDS,)
    param_names = ["backend"]

    def setup(self, backend):
        require_backend(backend, "hmm")
        from emfast.kernels import symbol_counts

        self.counts = symbol_counts
        rng = np.random.default_rng(5)
        self.symbols = rng.integers(50, size=100_000)
        self.weights = rng.random((100_000, 10))
        self.counts(self.symbols[:10], self.weights[:10], 50, backend=backend)

    def time_symbol_counts(self, backend):
        self.counts(self.symbols, self.weights, 50, backend=backend)


class GaussianForwardBackward:
    """One call of ``emfast.kernels.hmm_gaussian_forward_backward``: the E-step of a
    diagonal GaussianHMM (densities, forward-backward and posterior-weighted statistics)
    over 100 sequences x 1,000 frames, D=4, K=8, 32 or 64 (the H1, H6 and H8 cases of
    compare.py)."""

    params = ([8, 32, 64], BACKENDS)
    param_names = ["n_states", "backend"]

    def setup(self, n_states, backend):
        require_backend(backend, "hmm")
        from emfast.kernels import hmm_gaussian_forward_backward, log_normalizer

        self.fb = hmm_gaussian_forward_backward
        truth = make_hmm(n_states, 4, "gaussian", "diag", seed=6)
        self.X, self.lengths = sample_hmm(truth, 100, 1_000, seed=7)
        self.startprob, self.transmat = truth["startprob_"], truth["transmat_"]
        self.means = truth["means_"]
        self.prec_chol = 1.0 / np.sqrt(truth["covars_"])
        self.log_const = log_normalizer(self.prec_chol, "diag", 4)
        self.backend = backend
        self.fb(self.X[:1_000], self.lengths[:1], *self._params(), backend=backend)

    def _params(self):
        return (self.startprob, self.transmat, self.means, self.prec_chol, "diag",
                self.log_const)

    def time_gaussian_forward_backward(self, n_states, backend):
        self.fb(self.X, self.lengths, *self._params(), backend=backend)

    def peakmem_gaussian_forward_backward(self, n_states, backend):
        self.fb(self.X, self.lengths, *self._params(), backend=backend)


class CategoricalForwardBackward:
    """One call of ``emfast.kernels.hmm_categorical_forward_backward``: the E-step of a
    CategoricalHMM (forward-backward and posterior-weighted symbol counts) over 1,000
    sequences x 100 frames, 50 symbols, K=10, 32 or 64 (the H4, H7 and H9 cases of
    compare.py)."""

    params = ([10, 32, 64], BACKENDS)
    param_names = ["n_states", "backend"]

    def setup(self, n_states, backend):
        require_backend(backend, "hmm")
        from emfast.kernels import hmm_categorical_forward_backward

        self.fb = hmm_categorical_forward_backward
        truth = make_hmm(n_states, 50, "categorical", None, seed=8)
        X, self.lengths = sample_hmm(truth, 1_000, 100, seed=9)
        self.symbols = np.ascontiguousarray(X[:, 0])
        self.hmm = (truth["startprob_"], truth["transmat_"], truth["emissionprob_"])
        self.fb(self.symbols[:100], self.lengths[:1], *self.hmm, backend=backend)

    def time_categorical_forward_backward(self, n_states, backend):
        self.fb(self.symbols, self.lengths, *self.hmm, backend=backend)
