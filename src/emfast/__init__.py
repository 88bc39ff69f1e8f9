"""emfast: fast Expectation-Maximization for latent-variable models.

``from emfast import GaussianMixture`` is a drop-in for scikit-learn's. The compiled
kernels are in two backends (Cython+OpenMP, Numba) behind one contract; the low-level
functions are public in :mod:`emfast.kernels`.
"""

__version__ = "0.1.0"

from emfast._info import show_config
from emfast.batch import fit_many
from emfast.exceptions import ConvergenceWarning, DegenerateComponentWarning, NotFittedError
from emfast.mixture import BernoulliMixture, CategoricalMixture, GaussianMixture, PoissonMixture
from emfast.selection import select_gaussian_mixture
from emfast.topics import LatentDirichletAllocation

__all__ = ["GaussianMixture", "BernoulliMixture", "CategoricalMixture", "PoissonMixture",
           "LatentDirichletAllocation", "fit_many", "fit_many_hmm", "select_gaussian_mixture",
           "show_config",
           "ConvergenceWarning", "DegenerateComponentWarning", "NotFittedError", "__version__"]


def __getattr__(name):
    # fit_many_hmm on first use: its module imports the HMM package and scipy.special, which
    # would add 18 MiB and 0.17 s to every `import emfast` (PEP 562)
    if name == "fit_many_hmm":
        from emfast.hmm_batch import fit_many_hmm

        return fit_many_hmm
    raise AttributeError(f"module 'emfast' has no attribute {name!r}")
