"""EMImputer: a fixed number of EM iterations on correlated data with 30% of the values
missing at random, for each kernel backend."""

import warnings

import numpy as np

from .common import BACKENDS, require_backend

N_SAMPLES, N_FEATURES, MISSING = 20_000, 20, 0.3
N_ITER = 5


class EMImputerFit:
    """``fit`` running exactly N_ITER iterations (tol=0) from the available-case start."""

    params = (BACKENDS,)
    param_names = ["backend"]
    timeout = 300

    def setup(self, backend):
        require_backend(backend, "missing")
        from emfast.impute import EMImputer

        warnings.filterwarnings("ignore", message=r"(?s).*did not converge")
        rng = np.random.default_rng(0)
        A = rng.normal(size=(N_FEATURES, N_FEATURES))
        cov = A @ A.T / N_FEATURES + 0.2 * np.eye(N_FEATURES)
        X = rng.multivariate_normal(np.zeros(N_FEATURES), cov, size=N_SAMPLES)
        X[rng.random(X.shape) < MISSING] = np.nan
        self.X = X
        self.imp = EMImputer(max_iter=N_ITER, tol=0.0, backend=backend)
        self.imp.fit(X[:1000])  # warm-up: JIT compilation and thread pools are not timed

    def time_fit(self, backend):
        self.imp.fit(self.X)

    def time_transform(self, backend):
        self.imp.transform(self.X)
