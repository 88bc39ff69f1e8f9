"""scikit-learn's own estimator checks (check_estimator) on emfast.GaussianMixture,
emfast.impute.EMImputer and the discrete mixtures (Bernoulli, categorical, Poisson)."""

import pytest

pytest.importorskip("sklearn")
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import emfast  # noqa: E402
from conftest import BACKENDS  # noqa: E402

# Checks that fail for a documented reason, not a defect. Each is reported to the lead.
EXPECTED_FAILED = {
    "check_sample_weight_equivalence_on_dense_data": (
        "k-means / k-means++ / random initialisation draws from the random stream once per "
        "row, so fitting on repeated rows and fitting with integer weights start from "
        "different points and can end in different local optima (scikit-learn marks KMeans "
        "the same way). Equivalence from the same starting parameters is tested in "
        "test_gaussian_mixture.py::test_integer_weights_equal_repeated_rows."),
}


# CategoricalMixture and PoissonMixture declare the "categorical" and "positive_only" input
# tags, so scikit-learn's checks hand them non-negative whole numbers; this check makes its
# own continuous data regardless.
CONTINUOUS_DATA = {
    "check_sample_weight_equivalence_on_dense_data": (
        "the check fits on continuous random data whatever the input tags; category codes "
        "and counts must be whole numbers (a ValueError). Equivalence of integer weights "
        "and repeated rows is tested in "
        "test_discrete_mixtures.py::test_integer_sample_weight_equals_repeated_rows."),
}

# No input tag makes scikit-learn's checks generate 0/1 data: each of these fits on its
# continuous (or integer) data, which BernoulliMixture refuses with a ValueError by design.
# Its 0/1 behaviour is tested in test_discrete_mixtures.py.
BERNOULLI_DOMAIN = "fits on continuous data; BernoulliMixture accepts only 0/1 (and NaN)"
BERNOULLI_EXPECTED_FAILED = {check: BERNOULLI_DOMAIN for check in (
    "check_fit_score_takes_y", "check_estimators_overwrite_params",
    "check_dont_overwrite_parameters", "check_estimators_fit_returns_self",
    "check_readonly_memmap_input", "check_n_features_in_after_fitting",
    "check_positive_only_tag_during_fit", "check_estimators_dtypes",
    "check_sample_weights_pandas_series", "check_sample_weights_not_an_array",
    "check_sample_weights_list", "check_all_zero_sample_weights_error",
    "check_sample_weights_shape", "check_sample_weights_not_overwritten",
    "check_sample_weight_equivalence_on_dense_data", "check_dtype_object",
    "check_pipeline_consistency", "check_estimators_pickle",
    "check_f_contiguous_array_estimator", "check_methods_sample_order_invariance",
    "check_methods_subset_invariance", "check_fit2d_1sample", "check_fit2d_1feature",
    "check_dict_unchanged", "check_fit_idempotent", "check_fit_check_is_fitted",
    "check_n_features_in", "check_fit2d_predict1d")}


def _estimators():
    from emfast.impute import EMImputer

    ests = [emfast.GaussianMixture(), EMImputer()]  # the defaults, as a user writes them
    for backend in BACKENDS:
        ests.append(emfast.GaussianMixture(n_components=2, covariance_type="diag",
                                           backend=backend, n_threads=2, max_iter=50))
    for cls in (emfast.CategoricalMixture, emfast.PoissonMixture, emfast.BernoulliMixture):
        ests += [cls(), cls(n_components=2, n_threads=2, max_iter=50)]
    return ests


def _expected_failed(estimator):
    if isinstance(estimator, emfast.BernoulliMixture):
        return BERNOULLI_EXPECTED_FAILED
    if isinstance(estimator, (emfast.CategoricalMixture, emfast.PoissonMixture)):
        return CONTINUOUS_DATA
    if getattr(estimator, "n_components", 1) == 1:  # weights cannot change the fit
        return {}
    return EXPECTED_FAILED


@parametrize_with_checks(_estimators(), expected_failed_checks=_expected_failed)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
