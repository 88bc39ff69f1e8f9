"""Topic models: :class:`LatentDirichletAllocation` (variational Bayes, batch and online) and
the UMass topic coherence (:func:`umass_coherence`) to compare fits and choose K."""

from emfast.topics._coherence import umass_coherence
from emfast.topics._lda import LatentDirichletAllocation

__all__ = ["LatentDirichletAllocation", "umass_coherence"]
