"""Semi-supervised EM for Gaussian mixtures (Nigam, McCallum, Thrun & Mitchell 2000): rows
with a known component keep it (responsibility 1 there, 0 elsewhere), the unlabelled rows'
statistics count ``unlabeled_weight`` (lambda) times. The objective is
sum_labelled log(pi_y p_y(x)) + lambda sum_unlabelled log p(x).

The labelled rows of each component go through the same E-step kernels as the data, with
that component alone (K = 1: its responsibility is 1, its log-likelihood log(pi_k p_k(x))),
so that labels work with every covariance type, both backends, and NaN in X.
"""

import threading

import numpy as np

from emfast._stats import GaussianStats
from emfast.mixture import _gaussian as G
from emfast.mixture import _gaussian_missing as GM


def component(params, k):
    """The GaussianParams of component ``k`` of ``params`` alone (its weight kept; the
    covariances may be None where only the precision factors are used)."""
    ct = params.covariance_type
    cov, pc = params.covariances, params.prec_chol
    if ct != "tied":
        cov, pc = (None if cov is None else cov[k:k + 1]), pc[k:k + 1]
    return G.GaussianParams(ct, params.weights[k:k + 1], params.means[k:k + 1], cov, pc)


class LabelledRows:
    """The labelled rows of a fit, split by component once: ``parts`` holds (k, X_k, w_k)
    for each component with at least one labelled row."""

    def __init__(self, X, sample_weight, y, n_components):
        self.parts = []
        for k in range(n_components):
            rows = np.flatnonzero(y == k)
            if len(rows):
                self.parts.append((k, np.ascontiguousarray(X[rows]),
                                   None if sample_weight is None else sample_weight[rows]))
        self.weight_sum = float(sum(len(Xk) if w is None else w.sum()
                                    for _, Xk, w in self.parts))

    def covers(self, n_components):
        return len(self.parts) == n_components


class SemiSupervisedFamily:
    """A mixture family (``_GaussianFamily``) whose E-step adds the labelled rows'
    statistics to those of the unlabelled rows (which the driver passes, weights already
    scaled by lambda); the M-step is the family's."""

    def __init__(self, family, labelled, weight_sum, missing):
        self.family = family
        self.natural_coordinates = getattr(family, "natural_coordinates", False)
        self.labelled = labelled
        self.weight_sum = weight_sum
        self.missing = missing
        self._bound = threading.local()

    def _esteps(self, n_threads):
        """The per-component E-steps over the labelled rows, bound once per thread."""
        b = self._bound
        if getattr(b, "n_threads", None) != n_threads:
            f = self.family
            b.esteps = [
                (k, GM.MissingEStep(Xk, w, 1, f.backend, n_threads, self.weight_sum)
                 if self.missing else
                 G.EStep(Xk, w, f.covariance_type, 1, f.backend, n_threads, self.weight_sum))
                for k, Xk, w in self.labelled.parts]
            b.n_threads = n_threads
        return b.esteps

    def e_step(self, X, sample_weight, params, n_threads):
        st = self.family.e_step(X, sample_weight, params, n_threads)
        nk, s1, s2, loglik = st.nk.copy(), st.s1.copy(), st.s2.copy(), st.loglik
        tied = params.covariance_type == "tied"
        for k, estep in self._esteps(n_threads):
            part = estep(component(params, k))
            nk[k] += part.nk[0]
            s1[k] += part.s1[0]
            if tied:
                s2 += part.s2
            else:
                s2[k] += part.s2[0]
            loglik += part.loglik
        return GaussianStats(params.covariance_type, st.centre, nk, s1, s2, loglik,
                             self.weight_sum)

    def m_step(self, X, sample_weight, stats, rng):
        return self.family.m_step(X, sample_weight, stats, rng)

    def pack(self, params):
        return self.family.pack(params)

    def unpack(self, vec, like):
        return self.family.unpack(vec, like)
