"""HMM emission means seeded by k-means with restarts (hmmlearn's KMeans(n_init=10)), on
hmmlearn's own multi-sequence GMMHMM data: EM never loses log-likelihood, and the fit does
not depend on the order of the sequences beyond rounding."""

import itertools
import warnings

import numpy as np
import pytest

from emfast.hmm import GMMHMM

multiseq = pytest.importorskip("hmmlearn.tests.test_gmm_hmm_multisequence")
# hmmlearn's data: 3 sequences x 50 frames x 4 features (its issue 410)
SEQUENCES = multiseq.EXAMPLE_SEQUENCES_ISSUE_410_PRUNED


@pytest.mark.parametrize("covariance_type", ["diag", "spherical", "tied", "full"])
def test_gmmhmm_fit_is_monotone_and_invariant_to_sequence_order(backend, covariance_type):
    scores = []
    for perm in itertools.permutations(range(len(SEQUENCES))):
        seqs = SEQUENCES[list(perm)]
        X = np.concatenate(seqs)
        lengths = [len(s) for s in seqs]
        model = GMMHMM(n_components=2, n_mix=2, n_iter=100, covariance_type=covariance_type,
                       init_params="mcw", random_state=1234, backend=backend)
        model.startprob_ = np.full(2, 0.5)
        model.transmat_ = np.full((2, 2), 0.5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # hmmlearn-style notes about init_params
            model.fit(X, lengths)
        history = np.array(model.monitor_.history)
        assert model.monitor_.converged
        assert np.all(np.diff(history) >= -1e-9 * np.abs(history[1:])), history
        scores.append(model.score(X, lengths))
    np.testing.assert_allclose(scores, scores[0], rtol=1e-10)
