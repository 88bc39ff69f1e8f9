"""Mixture models."""

from emfast.mixture._discrete_mixture import BernoulliMixture, CategoricalMixture, PoissonMixture
from emfast.mixture._gaussian_mixture import GaussianMixture

__all__ = ["BernoulliMixture", "CategoricalMixture", "GaussianMixture", "PoissonMixture"]
