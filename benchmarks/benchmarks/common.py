"""Data and starting parameters shared by the asv suites (and, for the HMMs, by
benchmarks/compare_hmm.py): fixed seeds, sized for ~2 cores."""

import numpy as np

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
BACKENDS = ["cython", "numba"]


def make_data(n_samples, n_features, n_components, seed=0):
    """A mixture of ``n_components`` Gaussians with random full covariances (float64)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=4.0, size=(n_components, n_features))
    A = rng.normal(size=(n_components, n_features, n_features)) / np.sqrt(n_features)
    chols = np.linalg.cholesky(A @ np.swapaxes(A, 1, 2) + 0.1 * np.eye(n_features))
    z = rng.integers(n_components, size=n_samples)
    X = rng.standard_normal((n_samples, n_features))
    for k in range(n_components):
        rows = z == k
        X[rows] = X[rows] @ chols[k].T + means[k]
    return X


def make_start(X, n_components, covariance_type, seed=1):
    """weights_init, means_init, precisions_init: random rows as means, the data covariance."""
    rng = np.random.default_rng(seed)
    n_samples, n_features = X.shape
    means = X[np.sort(rng.choice(n_samples, size=n_components, replace=False))].copy()
    cov = np.atleast_2d(np.cov(X, rowvar=False)) + 1e-6 * np.eye(n_features)
    prec = np.linalg.inv(cov)
    prec = 0.5 * (prec + prec.T)
    precisions = {
        "full": lambda: np.repeat(prec[None], n_components, axis=0),
        "tied": lambda: prec,
        "diag": lambda: np.repeat((1.0 / np.diag(cov))[None], n_components, axis=0),
        "spherical": lambda: np.full(n_components, 1.0 / np.mean(np.diag(cov))),
    }[covariance_type]()
    return {
        "weights_init": np.full(n_components, 1.0 / n_components),
        "means_init": means,
        "precisions_init": np.ascontiguousarray(precisions),
    }


# scikit-learn's bundled data sets (no download): the real-data cases of the end-to-end
# comparison (benchmarks/compare.py --end-to-end) and of the asv suite.
REAL_DATASETS = ("iris", "wine", "breast_cancer", "digits")


def load_real(name):
    """The feature matrix (float64, C-contiguous) of scikit-learn's bundled data set ``name``
    (one of REAL_DATASETS)."""
    if name not in REAL_DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose from {REAL_DATASETS}")
    from sklearn import datasets

    return np.ascontiguousarray(getattr(datasets, f"load_{name}")().data, dtype=np.float64)


def require_backend(backend, kind="gaussian"):
    """Skip (asv: NotImplementedError in setup) when ``backend``'s ``kind`` kernels
    ("gaussian", "hmm") are not usable here."""
    from emfast._config import available_backends

    if backend not in available_backends(kind):
        raise NotImplementedError(f"emfast backend {backend!r} is not available ({kind})")


# ------------------------------------------------------------------------------------ HMMs
# Parameters are dicts keyed by the estimator attribute names shared by hmmlearn and
# emfast.hmm ("startprob_", "transmat_", "means_", "covars_", "emissionprob_"); covars_ is
# in the covariance type's compact form ("diag": (K, D), "full": (K, D, D)).

def make_hmm(n_components, n_features, emission="gaussian", covariance_type="diag", seed=0):
    """The true parameters of a well-posed random HMM: sticky transitions (self-transition
    probability >= 0.9), spread-out means with covariances of order 1 (Gaussian), or peaked,
    distinct symbol distributions over ``n_features`` symbols (categorical)."""
    rng = np.random.default_rng(seed)
    K, D = n_components, n_features
    p = {
        "startprob_": rng.dirichlet(np.full(K, 2.0)),
        "transmat_": 0.9 * np.eye(K) + 0.1 * rng.dirichlet(np.ones(K), size=K),
    }
    if emission == "categorical":
        p["emissionprob_"] = rng.dirichlet(np.full(D, 0.3), size=K)
    elif covariance_type == "diag":
        p["means_"] = rng.normal(scale=4.0, size=(K, D))
        p["covars_"] = rng.uniform(0.5, 1.5, size=(K, D))
    elif covariance_type == "full":
        p["means_"] = rng.normal(scale=4.0, size=(K, D))
        A = rng.normal(size=(K, D, D)) / np.sqrt(D)
        p["covars_"] = A @ np.swapaxes(A, 1, 2) + 0.3 * np.eye(D)
    else:
        raise ValueError(f"unsupported emission/covariance_type {emission}/{covariance_type}")
    return p


def sample_hmm(params, n_sequences, length, seed=0):
    """(X, lengths): ``n_sequences`` sequences of ``length`` frames drawn from ``params``
    (a :func:`make_hmm` dict), concatenated. Categorical X is (T, 1) int64 symbols."""
    rng = np.random.default_rng(seed)
    S, L = n_sequences, length
    K = len(params["startprob_"])
    # The state chains, all sequences at once: one step of inverse-CDF sampling per frame.
    z = np.empty((S, L), dtype=np.int64)
    u = rng.random((S, L))
    z[:, 0] = np.searchsorted(np.cumsum(params["startprob_"]), u[:, 0], side="right")
    np.minimum(z[:, 0], K - 1, out=z[:, 0])
    cdf = np.cumsum(params["transmat_"], axis=1)
    for t in range(1, L):
        z[:, t] = (u[:, t, None] >= cdf[z[:, t - 1]]).sum(axis=1)
        np.minimum(z[:, t], K - 1, out=z[:, t])
    z = z.ravel()
    if "emissionprob_" in params:
        ecdf = np.cumsum(params["emissionprob_"], axis=1)
        x = (rng.random(z.size)[:, None] >= ecdf[z]).sum(axis=1)
        X = np.minimum(x, ecdf.shape[1] - 1).reshape(-1, 1).astype(np.int64)
    else:
        means, covars = params["means_"], params["covars_"]
        X = rng.standard_normal((z.size, means.shape[1]))
        if covars.ndim == 2:  # diag
            X = X * np.sqrt(covars[z]) + means[z]
        else:  # full
            chols = np.linalg.cholesky(covars)
            for k in range(len(means)):
                rows = z == k
                X[rows] = X[rows] @ chols[k].T + means[k]
    return X, np.full(S, L, dtype=np.int64)


def perturb_hmm(params, seed=1):
    """A common EM start: the true parameters, perturbed (mixed towards uniform
    probabilities, means shifted, covariances rescaled)."""
    rng = np.random.default_rng(seed)
    p = {}
    K = len(params["startprob_"])
    p["startprob_"] = 0.5 * params["startprob_"] + 0.5 / K
    tm = 0.6 * params["transmat_"] + 0.4 * rng.dirichlet(np.ones(K), size=K)
    p["transmat_"] = tm / tm.sum(axis=1, keepdims=True)
    if "emissionprob_" in params:
        ep = params["emissionprob_"]
        ep = 0.6 * ep + 0.4 * rng.dirichlet(np.ones(ep.shape[1]), size=K)
        p["emissionprob_"] = ep / ep.sum(axis=1, keepdims=True)
    else:
        means, covars = params["means_"], params["covars_"]
        p["means_"] = means + rng.normal(scale=0.75, size=means.shape)
        scale = rng.uniform(0.7, 1.6, size=(K,) + (1,) * (covars.ndim - 1))
        p["covars_"] = covars * scale
    return p


def set_hmm_params(model, params):
    """Set ``params`` (copies) on an hmmlearn or emfast HMM; returns the model."""
    for name, value in params.items():
        setattr(model, name, np.array(value, dtype=np.float64))
    return model


# ------------------------------------------------------------------------------------- LDA
def _draw_categorical(cdf, rows, u):
    """One draw per entry of ``rows`` from the categorical distribution whose cumulative
    probabilities are ``cdf[rows[i]]``, by inverse CDF: all rows at once by one binary search
    in the rows' CDFs laid end to end (row r shifted by +r), ``u`` uniform on [0, 1)."""
    n_rows, n_cols = cdf.shape
    flat = (cdf + np.arange(n_rows)[:, None]).ravel()
    # side="right": a zero-probability category (a flat step of the CDF) is never drawn
    idx = np.searchsorted(flat, u + rows, side="right") - rows * n_cols
    return np.minimum(idx, n_cols - 1)          # u above a row's last CDF value (rounding)


def lda_corpus(n_docs, n_topics, n_words, doc_length, seed=0, topic_word_concentration=0.05,
               doc_topic_concentration=0.1):
    """(counts (n_docs, n_words) CSR float64, topics (n_topics, n_words)) drawn from an LDA
    model: topics ~ Dirichlet(topic_word_concentration), each document's proportions ~
    Dirichlet(doc_topic_concentration) and length ~ Poisson(doc_length); each token's topic
    from its document's proportions, then its word from that topic. No per-token Python:
    about 1.5 s for 3 million tokens."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    topics = rng.dirichlet(np.full(n_words, topic_word_concentration), size=n_topics)
    theta = rng.dirichlet(np.full(n_topics, doc_topic_concentration), size=n_docs)
    doc = np.repeat(np.arange(n_docs), rng.poisson(doc_length, size=n_docs))
    z = _draw_categorical(np.cumsum(theta, axis=1), doc, rng.random(doc.size))
    word = _draw_categorical(np.cumsum(topics, axis=1), z, rng.random(doc.size))
    X = sp.csr_matrix((np.ones(doc.size), (doc, word)), shape=(n_docs, n_words))
    X.sum_duplicates()                          # a word's tokens in a document: one count
    return X, topics
