import numpy as np
import pytest

from emfast._config import available_backends

BACKENDS = available_backends()


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


def random_params(rng, K, D, covariance_type, spread=3.0):
    """Means, upper-triangular precision Cholesky factors and log_const for tests."""
    from emfast.kernels import log_normalizer

    means = rng.normal(scale=spread, size=(K, D))
    if covariance_type == "full":
        pc = np.triu(rng.normal(scale=0.3, size=(K, D, D)))
        idx = np.arange(D)
        pc[:, idx, idx] = rng.uniform(0.5, 1.5, size=(K, D))
    elif covariance_type == "tied":
        pc = np.triu(rng.normal(scale=0.3, size=(D, D)))
        pc[np.arange(D), np.arange(D)] = rng.uniform(0.5, 1.5, size=D)
    elif covariance_type == "diag":
        pc = rng.uniform(0.5, 1.5, size=(K, D))
    else:
        pc = rng.uniform(0.5, 1.5, size=K)
    w = rng.dirichlet(np.ones(K))
    return means, pc, log_normalizer(pc, covariance_type, D, np.log(w))
