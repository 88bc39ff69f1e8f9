"""Mixture models."""

from emfast.mixture._gaussian_mixture import GaussianMixture

__all__ = ["GaussianMixture"]
