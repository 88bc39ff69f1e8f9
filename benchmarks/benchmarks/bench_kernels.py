"""The public low-level kernels (emfast.kernels): one fused E-step pass and log-probabilities."""

import numpy as np

from .common import BACKENDS, COVARIANCE_TYPES, make_data, require_backend

N_SAMPLES, N_FEATURES, N_COMPONENTS = 200_000, 10, 8


def _params(rng, covariance_type, K, D):
    from emfast.kernels import log_normalizer

    means = rng.normal(scale=4.0, size=(K, D))
    if covariance_type == "full":
        pc = np.triu(rng.normal(scale=0.1, size=(K, D, D)))
        pc[:, np.arange(D), np.arange(D)] = rng.uniform(0.5, 1.5, size=(K, D))
    elif covariance_type == "tied":
        pc = np.triu(rng.normal(scale=0.1, size=(D, D)))
        pc[np.arange(D), np.arange(D)] = rng.uniform(0.5, 1.5, size=D)
    elif covariance_type == "diag":
        pc = rng.uniform(0.5, 1.5, size=(K, D))
    else:
        pc = rng.uniform(0.5, 1.5, size=K)
    return means, pc, log_normalizer(pc, covariance_type, D, np.full(K, -np.log(K)))


class Kernels:
    params = (COVARIANCE_TYPES, BACKENDS)
    param_names = ["covariance_type", "backend"]

    def setup(self, covariance_type, backend):
        require_backend(backend)
        from emfast.kernels import gaussian_estep_stats, gaussian_log_prob

        self.estep, self.logprob = gaussian_estep_stats, gaussian_log_prob
        self.X = make_data(N_SAMPLES, N_FEATURES, N_COMPONENTS, seed=2)
        self.means, self.pc, self.lc = _params(
            np.random.default_rng(3), covariance_type, N_COMPONENTS, N_FEATURES
        )
        self.out = np.empty((N_SAMPLES, N_COMPONENTS))
        self.norm = np.empty(N_SAMPLES)
        self.args = (self.X, self.means, self.pc, covariance_type, self.lc)
        # Warm-up (numba JIT compilation).
        self.estep(self.X[:512], *self.args[1:], backend=backend)
        self.logprob(self.X[:512], *self.args[1:], backend=backend)

    def time_estep_stats(self, covariance_type, backend):
        self.estep(*self.args, backend=backend)

    def time_log_prob_responsibilities(self, covariance_type, backend):
        self.logprob(*self.args, responsibilities=True, out=self.out, out_norm=self.norm,
                     backend=backend)
