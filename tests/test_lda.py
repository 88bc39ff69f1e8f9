"""emfast.LatentDirichletAllocation against scikit-learn's (same random draws, same
trajectory), its convergence, diagnostics (UMass coherence) and bad input."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import digamma
from hypothesis import given, settings
from hypothesis import strategies as st

import emfast
from emfast.topics import LatentDirichletAllocation as LDA
from emfast.topics import umass_coherence

sklearn_lda = pytest.importorskip("sklearn.decomposition").LatentDirichletAllocation

# float64 trajectories agree to this (issue 12); float32 rounds every array to 7 digits and
# scikit-learn computes its digamma in float32 there
RTOL = {np.float64: 1e-8, np.float32: 5e-4}


@pytest.fixture
def sklearn_accurate_digamma(monkeypatch):
    """scikit-learn's LatentDirichletAllocation with an accurate digamma (scipy's).

    scikit-learn's digamma is a short asymptotic series with errors up to about 3e-9 (at
    x = 6, where it switches to the series); emfast's is accurate to 1e-12 (see
    emfast.kernels), as scipy's. The fixed-point iterations amplify the difference (to
    1e-8 relative and more after a few iterations: test_trajectory_close_to_plain_sklearn),
    so the trajectory tests swap scikit-learn's two Dirichlet-expectation helpers (module
    globals of sklearn.decomposition._lda) for scipy-based ones: every other step is
    scikit-learn's own.
    """
    import sklearn.decomposition._lda as sk

    def expectation_2d(arr):
        arr = np.asarray(arr)
        return (digamma(arr) - digamma(arr.sum(axis=1))[:, None]).astype(arr.dtype)

    def expectation_1d(doc_topic, prior, out):       # adds the prior in place, as sklearn's
        doc_topic += prior
        out[:] = np.exp(digamma(doc_topic) - digamma(doc_topic.sum()))

    monkeypatch.setattr(sk, "_dirichlet_expectation_2d", expectation_2d)
    monkeypatch.setattr(sk, "cy_dirichlet_expectation_1d",
                        {"float": expectation_1d, "double": expectation_1d})


def simulate(n_docs=120, n_words=40, n_topics=4, length=60, seed=0, word_conc=0.1):
    """(counts (n_docs, n_words) float64, topics (n_topics, n_words)) from an LDA model:
    each document's length is Poisson(length), its topic proportions Dirichlet(0.3)."""
    rng = np.random.RandomState(seed)
    topics = rng.dirichlet(np.full(n_words, word_conc), n_topics)
    theta = rng.dirichlet(np.full(n_topics, 0.3), n_docs)
    lengths = rng.poisson(length, n_docs)
    X = np.array([rng.multinomial(n, p) for n, p in zip(lengths, theta @ topics)], float)
    return X, topics


@pytest.fixture(scope="module")
def corpus():
    X, _ = simulate()
    X[[5, 17]] = 0.0          # empty documents are allowed: they contribute nothing
    return sp.csr_matrix(X)


def assert_same_model(ours, theirs, X, rtol):
    np.testing.assert_allclose(ours.components_, theirs.components_, rtol=rtol)
    np.testing.assert_allclose(ours.exp_dirichlet_component_,
                               theirs.exp_dirichlet_component_, rtol=rtol)
    assert ours.n_batch_iter_ == theirs.n_batch_iter_
    np.testing.assert_allclose(ours.transform(X), theirs.transform(X), rtol=rtol, atol=rtol)
    np.testing.assert_allclose(ours.perplexity(X), theirs.perplexity(X), rtol=rtol)
    np.testing.assert_allclose(ours.score(X), theirs.score(X), rtol=rtol)


# ---------------------------------------------------------------- scikit-learn's trajectory
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_batch_trajectory_equals_sklearn(corpus, backend, dtype, sklearn_accurate_digamma):
    X = corpus.astype(dtype)
    for max_iter in (1, 2, 5):
        kw = dict(n_components=4, max_iter=max_iter, random_state=0)
        ours = LDA(backend=backend, n_threads=2, **kw).fit(X)
        theirs = sklearn_lda(**kw).fit(X)
        assert ours.components_.dtype == dtype
        assert ours.n_iter_ == theirs.n_iter_ == max_iter
        np.testing.assert_allclose(ours.bound_, theirs.bound_, rtol=RTOL[dtype])
        assert_same_model(ours, theirs, X, RTOL[dtype])


def test_trajectory_equals_sklearn_with_topics_dropped(corpus, backend,
                                                      sklearn_accurate_digamma):
    """K = 60 under the default prior 1/K: most topics of each document die and the
    kernels stop updating them (emfast.kernels, the LDA section); the fit is still
    scikit-learn's."""
    kw = dict(n_components=60, max_iter=3, random_state=0)
    ours = LDA(backend=backend, n_threads=2, **kw).fit(corpus)
    theirs = sklearn_lda(**kw).fit(corpus)
    gamma = ours.transform(corpus, normalize=False)
    assert np.mean(gamma - 1 / 60 < 2.0 ** -60 / 60) > 0.5      # the case this is about
    np.testing.assert_allclose(ours.bound_, theirs.bound_, rtol=RTOL[np.float64])
    assert_same_model(ours, theirs, corpus, RTOL[np.float64])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_online_trajectory_equals_sklearn(corpus, backend, dtype,
                                          sklearn_accurate_digamma):
    X = corpus.astype(dtype)
    for max_iter in (1, 2):
        kw = dict(n_components=4, learning_method="online", batch_size=32, max_iter=max_iter,
                  random_state=1)
        ours = LDA(backend=backend, **kw).fit(X)
        theirs = sklearn_lda(**kw).fit(X)
        assert ours.n_batch_iter_ == 1 + 4 * max_iter
        np.testing.assert_allclose(ours.bound_, theirs.bound_, rtol=RTOL[dtype])
        assert_same_model(ours, theirs, X, RTOL[dtype])
    kw = dict(n_components=4, batch_size=25, total_samples=1000, random_state=2)
    ours, theirs = LDA(backend=backend, **kw), sklearn_lda(**kw)
    for start in range(0, 120, 40):          # several partial_fit calls of 2 batches each
        ours.partial_fit(X[start:start + 40])
        theirs.partial_fit(X[start:start + 40])
        assert_same_model(ours, theirs, X, RTOL[dtype])
        np.testing.assert_allclose(ours.perplexity(X, sub_sampling=True),
                                   theirs.perplexity(X, sub_sampling=True), rtol=RTOL[dtype])


def test_trajectory_close_to_plain_sklearn(corpus):
    """With scikit-learn's own digamma the trajectories differ by that digamma's error,
    amplified (about 1e-8 here after 1 to 5 batch iterations, 4e-8 online)."""
    for kw in (dict(max_iter=5), dict(learning_method="online", batch_size=32, max_iter=3)):
        ours = LDA(4, random_state=0, **kw).fit(corpus)
        theirs = sklearn_lda(4, random_state=0, **kw).fit(corpus)
        np.testing.assert_allclose(ours.components_, theirs.components_, rtol=1e-6)
        np.testing.assert_allclose(ours.bound_, theirs.bound_, rtol=1e-8)


def test_evaluate_every_stops_and_counts_as_sklearn(corpus, capsys, sklearn_accurate_digamma):
    """perp_tol stops fit at an evaluation (n_iter_ not counting that pass, as
    scikit-learn), and verbose prints scikit-learn's lines."""
    kw = dict(n_components=4, max_iter=30, evaluate_every=2, perp_tol=0.5, random_state=0,
              verbose=1)
    theirs = sklearn_lda(**kw).fit(corpus)
    want = capsys.readouterr().out
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = LDA(**kw).fit(corpus)
    assert capsys.readouterr().out == want
    assert ours.n_iter_ == theirs.n_iter_ < 29
    np.testing.assert_allclose(ours.components_, theirs.components_, rtol=1e-8)


def test_convergence_warning_when_perplexity_never_settles(corpus):
    with pytest.warns(emfast.ConvergenceWarning, match="perp_tol"):
        LDA(2, max_iter=3, evaluate_every=1, perp_tol=0.0, random_state=0).fit(corpus)
    with warnings.catch_warnings():          # no evaluation asked for: no warning
        warnings.simplefilter("error")
        LDA(2, max_iter=3, random_state=0).fit(corpus)
        # fewer than two evaluations: no change was measured, so no convergence test ran
        LDA(2, max_iter=2, evaluate_every=5, perp_tol=0.0, random_state=0).fit(corpus)
        LDA(2, max_iter=3, evaluate_every=2, perp_tol=0.0, random_state=0).fit(corpus)


# ---------------------------------------------------------------- properties of the fit
def test_bound_never_decreases_in_batch_mode(corpus, backend):
    """The bound after each batch iteration (the score of a fit stopped there: the same
    trajectory), with the E-steps run to tight convergence."""
    kw = dict(n_components=4, mean_change_tol=1e-10, max_doc_update_iter=2000,
              random_state=3, backend=backend)
    scores = [LDA(max_iter=i, **kw).fit(corpus).score(corpus) for i in range(1, 7)]
    assert np.all(np.diff(scores) >= -1e-9 * abs(scores[0])), scores
    assert scores[-1] > scores[0]


def test_recovers_simulated_topics(backend):
    from scipy.optimize import linear_sum_assignment

    X, topics = simulate(n_docs=600, n_words=50, n_topics=3, length=80, seed=4,
                         word_conc=0.05)
    lda = LDA(3, max_iter=60, random_state=0, backend=backend).fit(sp.csr_matrix(X))
    found = lda.components_ / lda.components_.sum(axis=1)[:, None]
    hellinger = np.sqrt(0.5 * ((np.sqrt(found)[:, None] - np.sqrt(topics)[None]) ** 2)
                        .sum(axis=-1))
    rows, cols = linear_sum_assignment(hellinger)
    assert hellinger[rows, cols].max() < 0.1, hellinger


@pytest.mark.parametrize("method", ["batch", "online"])
def test_results_do_not_depend_on_the_thread_count(corpus, backend, method):
    fits = [LDA(4, learning_method=method, batch_size=50, max_iter=3, random_state=0,
                backend=backend, n_threads=t).fit(corpus) for t in (1, 2)]
    np.testing.assert_array_equal(fits[0].components_, fits[1].components_)
    assert fits[0].bound_ == fits[1].bound_
    np.testing.assert_array_equal(fits[0].transform(corpus), fits[1].transform(corpus))


def test_empty_documents_contribute_nothing(corpus):
    """An empty document's topic proportions are the prior's, and the fit on a corpus with
    empty documents is scikit-learn's (whose empty documents add nothing)."""
    lda = LDA(4, max_iter=2, random_state=0).fit(corpus)
    gamma = lda.transform(corpus, normalize=False)
    np.testing.assert_allclose(gamma[[5, 17]], lda.doc_topic_prior_)
    np.testing.assert_allclose(lda.transform(corpus)[[5, 17]], 0.25)
    # an empty document's bound is 0: adding empty documents leaves the score as it was
    more = sp.vstack([corpus, sp.csr_matrix((3, corpus.shape[1]))]).tocsr()
    np.testing.assert_allclose(lda.score(more), lda.score(corpus), rtol=1e-12)


def test_fit_transform_is_fit_then_transform(corpus):
    lda = LDA(4, max_iter=3, random_state=0)
    got = lda.fit_transform(corpus)
    np.testing.assert_array_equal(got, lda.transform(corpus))
    np.testing.assert_array_equal(LDA(4, max_iter=3, random_state=0)
                                  .fit_transform(corpus, normalize=False),
                                  lda.transform(corpus, normalize=False))


# ---------------------------------------------------------------- input formats
def test_dense_and_every_sparse_format_give_the_same_fit(corpus):
    want = LDA(3, max_iter=2, random_state=0).fit(corpus).components_
    for X in (corpus.toarray(), corpus.tocsc(), corpus.tocoo(), sp.csr_array(corpus),
              corpus.astype(np.int64), corpus.toarray().astype(np.int32)):
        np.testing.assert_array_equal(LDA(3, max_iter=2, random_state=0).fit(X).components_,
                                      want)


def test_duplicate_entries_are_summed_on_a_copy(corpus):
    """A COO or CSR matrix with duplicate (unsorted) entries is the matrix of their sums;
    the caller's matrix is left as it was."""
    coo = corpus.tocoo()
    half = np.floor(coo.data / 2)
    rows = np.concatenate([coo.row, coo.row])[::-1]
    cols = np.concatenate([coo.col, coo.col])[::-1]
    data = np.concatenate([half, coo.data - half])[::-1]
    want = LDA(3, max_iter=2, random_state=0).fit(corpus).components_
    for X in (sp.coo_matrix((data, (rows, cols)), shape=corpus.shape),
              _csr_with_duplicates(data, rows, cols, corpus.shape)):
        index = X.col if sp.isspmatrix_coo(X) else X.indices
        before = (X.data.copy(), index.copy())
        np.testing.assert_allclose(LDA(3, max_iter=2, random_state=0).fit(X).components_,
                                   want, rtol=1e-12)
        np.testing.assert_array_equal(X.data, before[0])
        np.testing.assert_array_equal(index, before[1])


def _csr_with_duplicates(data, rows, cols, shape):
    order = np.argsort(rows, kind="stable")
    indptr = np.searchsorted(rows[order], np.arange(shape[0] + 1))
    X = sp.csr_matrix((data[order], cols[order], indptr), shape=shape)
    assert not X.has_canonical_format
    return X


def test_float32_is_kept(corpus):
    lda = LDA(3, max_iter=2, random_state=0).fit(corpus.astype(np.float32))
    assert lda.components_.dtype == lda.exp_dirichlet_component_.dtype == np.float32
    assert lda.transform(corpus).dtype == np.float32          # the model's dtype
    assert LDA(3, max_iter=1).fit(corpus).transform(
        corpus.astype(np.float32)).dtype == np.float64


def test_feature_names_out(corpus):
    lda = LDA(3, max_iter=1, random_state=0).fit(corpus)
    np.testing.assert_array_equal(lda.get_feature_names_out(),
                                  [f"latentdirichletallocation{k}" for k in range(3)])
    with pytest.raises(ValueError, match="length"):
        lda.get_feature_names_out(["a", "b"])


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("make", [
    lambda X: X.multiply(-1).tocsr(),
    lambda X: -X.toarray(),
])
def test_negative_counts_are_refused(corpus, make):
    with pytest.raises(ValueError, match="Negative values in data passed to "
                                         "LatentDirichletAllocation.fit"):
        LDA(2).fit(make(corpus))


@settings(max_examples=25, deadline=None)
@given(bad=st.sampled_from([np.nan, np.inf, -np.inf, -1.0, -1e-300]),
       row=st.integers(0, 9), col=st.integers(0, 4), sparse=st.booleans(),
       method=st.sampled_from(["fit", "partial_fit", "transform", "score", "perplexity"]))
def test_bad_counts_are_a_value_error_in_every_method(bad, row, col, sparse, method):
    X = np.random.RandomState(0).poisson(2.0, (10, 5)).astype(float)
    lda = LDA(2, max_iter=1, random_state=0).fit(X)
    X[row, col] = bad
    Xin = sp.csr_matrix(X) if sparse else X
    with pytest.raises(ValueError, match="NaN|infinity|Negative"):
        getattr(lda, method)(Xin)


def test_wrong_shapes_are_refused(corpus):
    lda = LDA(2, max_iter=1, random_state=0).fit(corpus)
    for X, msg in ((np.ones(5), "2D"), (np.ones((2, 3, 4)), "dim 3"),
                   (np.ones((0, 40)), "0 sample"), (np.ones((3, 0)), "0 feature"),
                   (sp.csr_matrix((0, 40)), "0 sample")):
        with pytest.raises(ValueError, match=msg):
            LDA(2).fit(X)
    for method in ("transform", "score", "perplexity", "partial_fit"):
        with pytest.raises(ValueError, match="X has 39 features.*expecting 40"):
            getattr(lda, method)(corpus[:, :39])


def test_vocabulary_size_change_between_partial_fits():
    X = np.ones((4, 6))
    lda = LDA(2).partial_fit(X)
    with pytest.raises(ValueError, match="X has 7 features.*expecting 6"):
        lda.partial_fit(np.ones((4, 7)))
    lda.partial_fit(X)                       # the model is intact


def test_no_words_is_a_value_error():
    with pytest.raises(ValueError, match="no words"):
        LDA(2).fit(np.zeros((3, 4)))
    lda = LDA(2, max_iter=1).fit(np.ones((3, 4)))
    with pytest.raises(ValueError, match="no words"):
        lda.perplexity(np.zeros((2, 4)))


def test_unfitted_model_raises_not_fitted(corpus):
    for method in ("transform", "score", "perplexity", "get_feature_names_out"):
        with pytest.raises(emfast.NotFittedError):
            getattr(LDA(), method)(*(() if method == "get_feature_names_out" else (corpus,)))


@pytest.mark.parametrize("param, value, error", [
    ("n_components", 0, ValueError), ("n_components", 2.0, TypeError),
    ("doc_topic_prior", 0.0, ValueError), ("doc_topic_prior", 1.5, ValueError),
    ("topic_word_prior", -0.1, ValueError), ("topic_word_prior", "x", TypeError),
    ("learning_method", "stochastic", ValueError), ("learning_decay", 1.1, ValueError),
    ("learning_offset", 0.5, ValueError), ("max_iter", -1, ValueError),
    ("batch_size", 0, ValueError), ("evaluate_every", 1.5, TypeError),
    ("total_samples", 0, ValueError), ("perp_tol", -1.0, ValueError),
    ("mean_change_tol", np.nan, ValueError), ("max_doc_update_iter", -1, ValueError),
    ("n_jobs", "all", TypeError), ("verbose", -1, ValueError),
    ("random_state", "seed", ValueError), ("backend", "cuda", ValueError),
    ("n_threads", 0, ValueError),
])
def test_bad_parameters_are_refused_with_sklearn_error_types(corpus, param, value, error):
    """scikit-learn raises InvalidParameterError (a ValueError and a TypeError) for each
    (but a prior of 0, which it accepts); emfast raises ValueError for values out of range,
    TypeError for values of the wrong type."""
    kw = {"n_components": 2, "max_iter": 1, param: value}
    with pytest.raises(error, match=param if param != "random_state" else "seed"):
        LDA(**kw).fit(corpus)
    if param not in ("backend", "n_threads") and (param, value) != ("doc_topic_prior", 0.0):
        with pytest.raises((ValueError, TypeError)):
            sklearn_lda(**kw).fit(corpus)


# ---------------------------------------------------------------- UMass coherence
def _umass_loop(weights, X, top_n):
    """Mimno et al. (2011)'s formula, word pair by word pair."""
    present = np.asarray(X) > 0
    out = []
    for row in weights:
        top = np.argsort(-row, kind="stable")[:top_n]
        total = 0.0
        for m in range(1, top_n):
            for l in range(m):
                both = np.sum(present[:, top[m]] & present[:, top[l]])
                total += np.log((both + 1.0) / present[:, top[l]].sum())
        out.append(total)
    return np.array(out)


def test_umass_coherence_is_mimno_et_al(corpus):
    lda = LDA(4, max_iter=5, random_state=0).fit(corpus)
    for top_n in (2, 5, 10):
        want = _umass_loop(lda.components_, corpus.toarray(), top_n)
        np.testing.assert_allclose(umass_coherence(lda, corpus, top_n=top_n), want,
                                   rtol=1e-12)
        np.testing.assert_allclose(umass_coherence(lda.components_, corpus.toarray(),
                                                   top_n=top_n), want, rtol=1e-12)
    # fitted topics are more coherent than shuffled ones (over the words that occur)
    shuffled = np.random.RandomState(0).permutation(lda.components_.T).T
    shuffled[:, corpus.getnnz(axis=0) == 0] = 0.0
    assert umass_coherence(lda, corpus).mean() > umass_coherence(shuffled, corpus).mean()


def test_umass_coherence_bad_input(corpus):
    weights = np.ones((2, corpus.shape[1]))
    with pytest.raises(ValueError, match="top_n"):
        umass_coherence(weights, corpus, top_n=1)
    with pytest.raises(ValueError, match="features"):
        umass_coherence(weights[:, :5], corpus)
    absent = corpus.tolil()
    absent[:, 0] = 0
    weights[:, 0] = 2.0                       # word 0: every topic's first word
    with pytest.raises(ValueError, match="word 0 .*never occurs"):
        umass_coherence(weights, absent.tocsr())


def test_score_of_a_word_unseen_in_training(backend, sklearn_accurate_digamma):
    """Under a small topic_word_prior a word never seen in training has exp(E[log beta])
    = 0 in float64 in every topic; the bound is still finite (the kernels' log(e . B) was
    -inf, so the word term is then taken in logs), as scikit-learn's."""
    X, _ = simulate(60, 20, 3, seed=5)
    X[:, -1] = 0.0
    held = X[:10].copy()
    held[:, -1] = 2.0
    kw = dict(n_components=3, topic_word_prior=1e-3, max_iter=3, random_state=0)
    ours = LDA(backend=backend, **kw).fit(X)
    theirs = sklearn_lda(**kw).fit(X)
    assert np.all(ours.exp_dirichlet_component_[:, -1] == 0.0)
    assert np.isfinite(ours.score(held))
    np.testing.assert_allclose(ours.score(held), theirs.score(held), rtol=1e-8)
    np.testing.assert_allclose(ours.perplexity(held), theirs.perplexity(held), rtol=1e-8)
