"""Hidden Markov models fitted by EM (Baum-Welch): drop-ins for ``hmmlearn.hmm``.

``from emfast.hmm import GaussianHMM`` replaces ``from hmmlearn.hmm import GaussianHMM``:
the same constructor parameters, fitted attributes, methods, EM updates (priors included)
and convergence monitor. Beyond hmmlearn: ``n_init`` concurrent restarts, ``n_threads``,
``backend`` and ``filter`` (causal state probabilities).
"""

from emfast.hmm._base import ConvergenceMonitor
from emfast.hmm._hmm import GMMHMM, CategoricalHMM, GaussianHMM, MultinomialHMM, PoissonHMM

__all__ = ["GaussianHMM", "GMMHMM", "CategoricalHMM", "MultinomialHMM", "PoissonHMM",
           "ConvergenceMonitor"]
