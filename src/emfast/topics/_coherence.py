"""UMass topic coherence (Mimno, Wallach, Talley, Leenders & McCallum 2011)."""

import numpy as np

from emfast import _validation as V


def umass_coherence(topics, X, top_n=10):
    """UMass coherence of each topic on the documents X, shape (n_topics,).

    For topic t let v_1, ..., v_M (M = ``top_n``) be its M most probable words, in
    decreasing order of weight (ties: the lower word index first). With D(v) the number of
    documents of X that contain word v and D(v, v') the number that contain both, the
    coherence of Mimno et al. (2011, eq. 1) is

        C(t) = sum_{m=2..M} sum_{l=1..m-1} log((D(v_m, v_l) + 1) / D(v_l))

    a sum of M (M - 1) / 2 terms, each at most log(1 + 1 / D(v_l)) (the words always occur
    together). Higher (closer to 0) is more coherent; it is meant for the corpus that the
    topics were fitted on, where every word of a topic occurs.

    Parameters
    ----------
    topics : a fitted model with ``components_`` (LatentDirichletAllocation, scikit-learn's)
        or an array (n_topics, n_features) of topic-word weights (any non-negative
        scale: only each row's order is used).
    X : documents x words counts (n_documents, n_features), dense or scipy.sparse; a word
        is in a document when its count is > 0.
    top_n : int >= 2, at most n_features

    A ValueError when one of the first ``top_n - 1`` words of a topic never occurs in X
    (its D(v_l) = 0 leaves the formula undefined).
    """
    weights = np.asarray(getattr(topics, "components_", topics), dtype=np.float64)
    if weights.ndim != 2 or 0 in weights.shape:
        raise ValueError(f"topics must be a 2-D (n_topics, n_features) array or a fitted "
                         f"model with components_, got shape {weights.shape}")
    counts = V.check_count_matrix(X, estimator="umass_coherence")
    K, n_features = weights.shape
    if counts.shape[1] != n_features:
        raise ValueError(f"X has {counts.shape[1]} features but the topics have "
                         f"{n_features}")
    M = V.check_int("top_n", top_n, 2, n_features)
    top = np.argsort(-weights, axis=1, kind="stable")[:, :M]             # (K, M)
    words, pos = np.unique(top, return_inverse=True)
    pos = pos.reshape(K, M)
    # presence of the topics' words only: (N, U) 0/1, then co-document counts (U, U)
    present = (counts[:, words] > 0).astype(np.float64)
    co = np.asarray((present.T @ present).todense())
    doc_freq = np.diag(co)
    if np.any(doc_freq[pos[:, :-1]] == 0):
        k, m = np.argwhere(doc_freq[pos[:, :-1]] == 0)[0]
        raise ValueError(f"word {top[k, m]} (top word {m + 1} of topic {k}) never occurs in "
                         "X: UMass coherence needs D(v) > 0 for the top words; compute it "
                         "on the documents the topics were fitted on")
    pairs = co[pos[:, :, None], pos[:, None, :]]                          # (K, M, M)
    m, l = np.tril_indices(M, k=-1)                                       # m > l
    return np.log((pairs[:, m, l] + 1.0) / doc_freq[pos[:, l]]).sum(axis=1)
