"""Imputation of missing values by maximum likelihood (EM)."""

from emfast.impute._em_imputer import EMImputer

__all__ = ["EMImputer"]
