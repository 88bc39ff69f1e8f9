"""Many models at once: fit_many over small problems, and model selection over K and
covariance types, for each kernel backend."""

import warnings

import numpy as np

from .common import BACKENDS, make_data, require_backend

N_PROBLEMS, PROBLEM_ROWS = 500, 500
N_ITER = 100


class FitMany:
    """``fit_many`` of N_PROBLEMS problems (N=500, D=2, K=3, full), exactly N_ITER iterations
    each (tol=0), as benchmarks/compare_batch.py's B1 at a twentieth of its size."""

    params = (BACKENDS,)
    param_names = ["backend"]
    timeout = 300

    def setup(self, backend):
        require_backend(backend, "batch")
        from emfast import fit_many

        warnings.filterwarnings("ignore", message=r"(?s).*did not converge")
        self.problems = [make_data(PROBLEM_ROWS, 2, 3, seed=i) for i in range(N_PROBLEMS)]
        self.fit_many = fit_many
        fit_many(self.problems[:4], n_components=3, backend=backend)   # warm-up (JIT)

    def time_fit_many(self, backend):
        self.fit_many(self.problems, n_components=3, covariance_type="full", tol=0.0,
                      max_iter=N_ITER, random_state=0, backend=backend)


class SelectGaussianMixture:
    """``select_gaussian_mixture`` over K = 1..6 and the four covariance types on 20,000
    rows, D=5 (B2 of benchmarks/compare_scale.py, smaller)."""

    params = (BACKENDS,)
    param_names = ["backend"]
    timeout = 300

    def setup(self, backend):
        require_backend(backend, "gaussian")
        from emfast import select_gaussian_mixture

        self.X = make_data(20_000, 5, 4)
        self.select = select_gaussian_mixture
        select_gaussian_mixture(self.X[:500], n_components=[1, 2], random_state=0,
                                backend=backend)   # warm-up (JIT)

    def time_select(self, backend):
        self.select(self.X, n_components=range(1, 7), random_state=0, backend=backend)
