"""GaussianMixture.fit (a fixed number of EM iterations from fixed starting parameters), a
default fit() end to end, and predict_proba, for each covariance type and kernel backend."""

import warnings

from .common import (BACKENDS, COVARIANCE_TYPES, load_real, make_data, make_start,
                     require_backend)

N_SAMPLES, N_FEATURES, N_COMPONENTS = 100_000, 10, 8
N_ITER = 5


def _model(covariance_type, backend, max_iter):
    """(X, an unfitted GaussianMixture running exactly max_iter iterations from the fixed
    start)."""
    require_backend(backend)
    from emfast import GaussianMixture

    # tol=0 makes every fit "not converge": that warning is expected here.
    warnings.filterwarnings("ignore", message=r"(?s).*did not converge")
    X = make_data(N_SAMPLES, N_FEATURES, N_COMPONENTS)
    gm = GaussianMixture(
        n_components=N_COMPONENTS,
        covariance_type=covariance_type,
        tol=0.0,
        max_iter=max_iter,
        init_params="random_from_data",
        random_state=0,
        backend=backend,
        **make_start(X, N_COMPONENTS, covariance_type),
    )
    return X, gm


class GaussianMixtureFit:
    """``fit`` running exactly N_ITER EM iterations (tol=0), same start every time."""

    params = (COVARIANCE_TYPES, BACKENDS)
    param_names = ["covariance_type", "backend"]
    timeout = 300

    def setup(self, covariance_type, backend):
        self.X, self.gm = _model(covariance_type, backend, N_ITER)
        # Warm-up: JIT compilation (numba) and thread-pool start-up are not what we time.
        self.gm.fit(self.X[:2048])

    def time_fit(self, covariance_type, backend):
        self.gm.fit(self.X)

    def peakmem_fit(self, covariance_type, backend):
        self.gm.fit(self.X)

    def track_n_iter(self, covariance_type, backend):
        self.gm.fit(self.X)
        return self.gm.n_iter_

    track_n_iter.unit = "iterations"


# Data of the default-fit benchmark: as case E3 of compare.py --end-to-end (N, D, K), and
# scikit-learn's digits (1,797 x 64) with K = 10.
DEFAULT_FIT_DATA = {"E3": (10_000, 2, 3), "digits": 10}


class GaussianMixtureDefaultFit:
    """A default ``fit()`` end to end (initialisation, EM to convergence, random_state=0):
    what a user waits for, fixed costs included."""

    params = (list(DEFAULT_FIT_DATA), COVARIANCE_TYPES, BACKENDS)
    param_names = ["data", "covariance_type", "backend"]
    timeout = 300

    def setup(self, data, covariance_type, backend):
        require_backend(backend)
        from emfast import GaussianMixture

        warnings.filterwarnings("ignore", message=r"(?s).*did not converge")
        if data == "digits":
            self.X, K = load_real("digits"), DEFAULT_FIT_DATA["digits"]
        else:
            N, D, K = DEFAULT_FIT_DATA[data]
            self.X = make_data(N, D, K)
        self.gm = GaussianMixture(K, covariance_type=covariance_type, random_state=0,
                                  backend=backend)
        # Warm-up: JIT compilation (numba) and thread-pool start-up are not what we time.
        self.gm.fit(self.X[:2048])

    def time_default_fit(self, data, covariance_type, backend):
        self.gm.fit(self.X)

    def track_lower_bound(self, data, covariance_type, backend):
        return self.gm.fit(self.X).lower_bound_

    track_lower_bound.unit = "mean log-likelihood"


class GaussianMixturePredictProba:
    """``predict_proba`` on a fitted model (writes the N x K responsibilities)."""

    params = (COVARIANCE_TYPES, BACKENDS)
    param_names = ["covariance_type", "backend"]
    timeout = 300

    def setup(self, covariance_type, backend):
        self.X, self.gm = _model(covariance_type, backend, 3)
        self.gm.fit(self.X)
        self.gm.predict_proba(self.X[:2048])

    def time_predict_proba(self, covariance_type, backend):
        self.gm.predict_proba(self.X)

    def peakmem_predict_proba(self, covariance_type, backend):
        self.gm.predict_proba(self.X)
