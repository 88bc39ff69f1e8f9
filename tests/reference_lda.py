"""Plain NumPy reference of the LDA kernels (kernel kind "lda"): the variational E-step of
batch VB (Hoffman et al. 2010, scikit-learn's ``_update_doc_distribution``) and the Dirichlet
expectation, as the contract of issue 12 states them (helpers' LDA_CONTRACT.md).

Written for clarity, one document at a time, digamma from scipy: both backends are tested
against these. float32 inputs are computed here in float64 (the kernels compute inside a
document in float64 too, and round gamma and the statistics to the dtype when they store).
"""

import numpy as np
import scipy.sparse as sp
from scipy.special import psi


def dirichlet_expectation(alpha, exp=False):
    """psi(alpha) - psi(alpha.sum(axis=-1)) (or its exp) of a 1-D or 2-D array, in float64."""
    alpha = np.asarray(alpha, dtype=np.float64)
    out = psi(alpha) - psi(alpha.sum(axis=-1, keepdims=True))
    return np.exp(out) if exp else out


def lda_estep(X, exp_topic_word, doc_topic, doc_topic_prior, max_doc_update_iter=100,
              mean_change_tol=1e-3, cal_sstats=True, cal_bound=False):
    """(gamma (N, K), sstats (K, V) or None, word_bound or None), all float64.

    X: (N, V) counts (anything scipy.sparse.csr_matrix takes; explicit zeros are terms of
    count 0); exp_topic_word (K, V); doc_topic (N, K) the initial gamma (not modified here).
    EPS, the guard of the normalisers, is the machine epsilon of X's dtype.
    """
    X = sp.csr_matrix(X)
    eps = np.finfo(X.dtype).eps
    B = np.asarray(exp_topic_word, dtype=np.float64)
    gamma = np.array(doc_topic, dtype=np.float64)
    alpha = float(doc_topic_prior)
    K, V = B.shape
    sstats = np.zeros((K, V)) if cal_sstats else None
    word_bound = 0.0
    for d in range(X.shape[0]):
        lo, hi = X.indptr[d], X.indptr[d + 1]
        ids = X.indices[lo:hi]
        counts = X.data[lo:hi].astype(np.float64)
        B_d = B[:, ids]                                        # (K, n_d)
        g = gamma[d]
        e = dirichlet_expectation(g, exp=True)
        for _ in range(max_doc_update_iter):
            last = g
            norm = e @ B_d + eps                               # (n_d,)
            g = alpha + e * (B_d @ (counts / norm))
            e = dirichlet_expectation(g, exp=True)
            if np.mean(np.abs(g - last)) < mean_change_tol:
                break
        gamma[d] = g
        if cal_sstats:
            norm = e @ B_d + eps
            # np.add.at: a word listed twice in a row (a non-canonical CSR) adds twice
            np.add.at(sstats.T, ids, np.outer(counts / norm, e))
        if cal_bound:
            word_bound += float(np.sum(counts * np.log(e @ B_d)))
    if cal_sstats:
        sstats *= B
    return gamma, sstats, (word_bound if cal_bound else None)
