"""Input checks shared by the estimators: every bad input becomes a clear ValueError/TypeError.

Messages follow scikit-learn's wording where a scikit-learn user would grep for it.
Nothing here modifies what the caller passed in.
"""

import math
import numbers

import numpy as np
from numpy.random.bit_generator import ISeedSequence


def _is_sparse(X):
    return hasattr(X, "tocsr") or hasattr(X, "toarray") and hasattr(X, "nnz")


def feature_names(X):
    """Column names of a DataFrame-like X when they are all strings, else None."""
    cols = getattr(X, "columns", None)
    if cols is None or not hasattr(X, "iloc"):
        return None
    names = np.asarray(list(cols), dtype=object)
    if len(names) and all(isinstance(c, str) for c in names):
        return names
    return None


def _check_shape(shape, min_samples, where):
    n, d = shape
    if n < min_samples:
        raise ValueError(
            f"Found array with {n} sample(s) (shape={shape}) while a minimum of "
            f"{min_samples} is required{where}."
        )
    if d < 1:
        raise ValueError(
            f"Found array with 0 feature(s) (shape={shape}) while a minimum of 1 is "
            f"required{where}."
        )


def check_array(X, *, name="X", min_samples=1, dtypes=(np.float64, np.float32),
                allow_nan=False, estimator=None, max_magnitude=None):
    """Return X as a 2-D C-contiguous float array (float32 kept), or raise.

    Lists, DataFrames and integer/bool/object-of-number arrays are converted to float64.
    ``max_magnitude``: a ValueError when a value's absolute size exceeds it (the Gaussian
    models pass MAX_GAUSSIAN_MAGNITUDE); checked in the same min/max pass as finiteness.
    """
    where = f" by {estimator}" if estimator else ""
    if X is None:
        raise ValueError(f"{name} is None; expected a 2-D array of shape (n_samples, n_features)")
    if _is_sparse(X):
        raise TypeError(
            f"Sparse data was passed for {name}, but dense data is required{where}. "
            "Use X.toarray() to convert to a dense numpy array."
        )
    if hasattr(X, "iloc") and hasattr(X, "dtypes"):  # pandas DataFrame
        try:
            X = X.to_numpy()
        except Exception as exc:  # noqa: BLE001 - re-raised with context
            raise TypeError(f"{name} could not be converted to a numeric array: {exc}") from exc
    try:
        arr = np.asarray(X)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{name} could not be converted to a 2-D numeric array: {exc}") from exc
    if np.iscomplexobj(arr):
        raise ValueError(f"Complex data not supported in {name}")
    if arr.dtype not in dtypes:
        if arr.dtype.kind in "biuf":
            arr = arr.astype(np.float64)
        elif arr.dtype.kind == "O" or arr.dtype.kind in "US":
            try:
                arr = arr.astype(np.float64)
            except (TypeError, ValueError) as exc:  # keep the kind: TypeError for non-numbers
                raise type(exc)(
                    f"{name} must be numeric; could not convert it to float: {exc}"
                ) from exc
        else:
            raise TypeError(f"{name} has unsupported dtype {arr.dtype}; expected numbers")
    if arr.ndim != 2:
        if arr.ndim == 1:
            raise ValueError(
                f"Expected 2D array, got 1D array instead: {name}.shape={arr.shape}. "
                "Reshape your data either using array.reshape(-1, 1) if your data has a "
                "single feature or array.reshape(1, -1) if it contains a single sample."
            )
        if arr.ndim == 0:
            raise ValueError(f"Expected 2D array, got scalar array instead: {name}={arr!r}.")
        raise ValueError(f"Found array with dim {arr.ndim}. Expected 2D array for {name}.")
    _check_shape(arr.shape, min_samples, where)
    # NaN and infinities reach the min or the max: one pass, no (N, D) temporary. With
    # allow_nan, NaN marks a missing value: fmin/fmax skip it, and infinity is still an error.
    if not arr.size:
        lo, hi = 0.0, 0.0
    elif allow_nan:
        lo, hi = float(np.fmin.reduce(arr, axis=None)), float(np.fmax.reduce(arr, axis=None))
        lo, hi = (0.0, 0.0) if math.isnan(lo) else (lo, hi)    # every value missing
    else:
        lo, hi = float(arr.min()), float(arr.max())
    if not (math.isfinite(lo) and math.isfinite(hi)):
        if allow_nan:
            raise ValueError(f"Input {name} contains infinity. NaN marks a missing value; "
                             "an infinite one is not missing: remove or replace it.")
        what = "NaN" if np.isnan(arr).any() else "infinity"
        raise ValueError(
            f"Input {name} contains {what}. emfast does not handle missing or infinite "
            "values yet; remove or impute them first."
        )
    if max_magnitude is not None and max(hi, -lo) > max_magnitude:
        raise ValueError(
            f"{name} has values of magnitude {max(hi, -lo):.3g}, beyond the "
            f"{max_magnitude:g} that {estimator or 'the model'}'s Gaussian statistics can "
            f"square in float64; rescale {name} (e.g. divide it by its largest absolute "
            "value)")
    return np.ascontiguousarray(arr)


def has_nan(X):
    """Whether the float array X holds a NaN (a missing value): NaN propagates to the
    min, one pass with no temporary."""
    return bool(np.isnan(X.min()))


def check_sample_weight(sample_weight, n_samples):
    """None -> None; otherwise a float64 (n_samples,) array, finite, >= 0, not all zero,
    scaled by a power of two so that its mean lies in [1/sqrt(2), sqrt(2)].

    A fit never depends on the absolute scale of the weights: scaling by a power of two is
    exact, so uniform weights of 1e-300 or 1e300 give the fit of unit weights, and every
    count floor that the M-steps add is relative to a mean weight of about 1.
    """
    if sample_weight is None:
        return None
    if isinstance(sample_weight, numbers.Number) and not isinstance(sample_weight, bool):
        sw = np.full(n_samples, float(sample_weight))
    else:
        try:
            sw = np.array(sample_weight, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"sample_weight must be numeric: {exc}") from exc
    if sw.ndim != 1 or sw.shape[0] != n_samples:
        raise ValueError(
            f"sample_weight.shape == {sw.shape}, expected ({n_samples},)!"
        )
    if not np.all(np.isfinite(sw)):
        raise ValueError("sample_weight contains NaN or infinity")
    if np.any(sw < 0):
        raise ValueError("Negative values in sample_weight are not allowed")
    if not np.any(sw > 0):
        raise ValueError("sample_weight is all zero: at least one sample needs a positive weight")
    # first the largest weight into [0.5, 1) so that the sum cannot overflow, then the mean
    sw = np.ldexp(sw, -int(np.frexp(sw.max())[1]))
    sw = np.ldexp(sw, -int(round(math.log2(sw.mean()))))
    return np.ascontiguousarray(sw)


def _check_integral(arr, message, kinds):
    """ValueError(message + what was found) unless ``arr`` has an integer dtype of
    ``kinds`` or holds whole, finite floats."""
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError(f"{message}, got {arr[:10].tolist()}")
    elif arr.dtype.kind not in kinds:
        raise ValueError(f"{message}, got dtype {arr.dtype}")


def check_feature_names(estimator, X):
    """ValueError when both X (a DataFrame) and the fitted estimator have feature names and
    they differ."""
    names = feature_names(X)
    fitted = getattr(estimator, "feature_names_in_", None)
    if names is not None and fitted is not None and not np.array_equal(names, fitted):
        raise ValueError("The feature names should match those that were passed during fit.")


def set_feature_names(estimator, names):
    """``estimator.feature_names_in_`` = ``names`` (from :func:`feature_names` of fit's X),
    or no such attribute when X had none (a refit on an array drops a DataFrame's names)."""
    if names is not None:
        estimator.feature_names_in_ = names
    elif hasattr(estimator, "feature_names_in_"):
        del estimator.feature_names_in_


def check_like_fit(estimator, X):
    """X for a fitted estimator's predict/transform/score: the checks of ``check_array``
    (NaN allowed: a missing value), the number of features it was fitted on, and the same
    feature names when both have them."""
    name = type(estimator).__name__
    check_feature_names(estimator, X)
    X = check_array(X, estimator=name, allow_nan=True, max_magnitude=MAX_GAUSSIAN_MAGNITUDE)
    check_n_features(name, X.shape[1], estimator.n_features_in_)
    return X


def check_n_features(estimator_name, n_features, expected):
    """ValueError, in scikit-learn's wording, when X's number of features is not the
    fitted one."""
    if n_features != expected:
        raise ValueError(f"X has {n_features} features, but {estimator_name} is expecting "
                         f"{expected} features as input.")


def check_partial_labels(y, n_samples, n_labels, name="y"):
    """Partial labels for semi-supervised EM: None (none), or an int64 (n_samples,) array of
    values in [0, n_labels) for labelled rows and -1 for unlabelled ones; ValueError
    naming the problem otherwise."""
    if y is None:
        return None
    try:
        arr = np.asarray(y)
    except Exception as exc:  # noqa: BLE001 - re-raised with context
        raise ValueError(f"{name} could not be converted to an array: {exc}") from exc
    if arr.ndim != 1 or arr.shape[0] != n_samples:
        raise ValueError(f"{name} must be 1-D with one label per row ({n_samples},), got "
                         f"shape {arr.shape}")
    _check_integral(arr, f"{name} must hold integer labels (-1 for unlabelled rows)",
                    kinds="iub")
    if arr.size and (arr.min() < -1 or arr.max() >= n_labels):
        raise ValueError(f"{name} labels must be -1 (unlabelled) or in [0, {n_labels - 1}], "
                         f"got values from {arr.min()} to {arr.max()}")
    return arr.astype(np.int64)


def check_int(name, value, low, high=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"The '{name}' parameter must be an int, got {value!r}")
    if value < low or (high is not None and value > high):
        rng = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"The '{name}' parameter must be an int {rng}, got {value!r}")
    return int(value)


def check_real(name, value, low=None, high=None):
    """A finite real number (not a bool) in [``low``, ``high``] (None: no bound on that
    side); returns a float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"The '{name}' parameter must be a float, got {value!r}")
    if not np.isfinite(value) or (low is not None and value < low) or (
            high is not None and value > high):
        bound = ("" if low is None and high is None else f" >= {low}" if high is None
                 else f" in [{low}, {high}]")
        raise ValueError(f"The '{name}' parameter must be a finite float{bound}, got {value!r}")
    return float(value)


def check_option(name, value, options):
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"The '{name}' parameter must be one of {sorted(options)}, got {value!r}")
    return value


def check_whole_numbers(values, estimator, what, not_integer):
    """ValueError unless every value is a non-negative whole number (category codes, counts);
    the negative case in scikit-learn's wording, which its checks grep for."""
    if values.min() < 0:
        raise ValueError(f"Negative values in data passed to {estimator}: {what} must be "
                         f"non-negative; X has {values.min():g}")
    if values.dtype.kind == "f" and np.any(values != np.floor(values)):
        raise ValueError(f"{estimator}: {not_integer}")


def check_em_parameters(est, init_params_choices, backends):
    """The constructor parameters every mixture estimator shares (GaussianMixture's):
    n_components, tol, max_iter, n_init, init_params, backend, warm_start, verbose,
    verbose_interval."""
    check_int("n_components", est.n_components, 1)
    check_real("tol", est.tol, 0.0)
    check_int("max_iter", est.max_iter, 0)
    check_int("n_init", est.n_init, 1)
    check_option("init_params", est.init_params, init_params_choices)
    check_option("backend", est.backend, backends)
    if not isinstance(est.warm_start, (bool, np.bool_)):
        raise TypeError(f"The 'warm_start' parameter must be a bool, got {est.warm_start!r}")
    check_int("verbose", int(est.verbose) if isinstance(est.verbose, bool) else est.verbose, 0)
    check_int("verbose_interval", est.verbose_interval, 1)


class _NoEntropy(ISeedSequence):
    """Zeros for a bit generator's first state: ``RandomState(seed)`` first seeds its
    MT19937 from fresh OS entropy (624 words through a SeedSequence, about 60 us, a few
    percent of a small fit) and then overwrites every word of that state by the legacy
    seeding of ``seed``; with this the first state costs nothing."""

    def generate_state(self, n_words, dtype=np.uint32):
        # a list, not an array: MT19937 copies the words one index at a time, and 624
        # NumPy scalars cost 26 of the 28 us of making the generator
        return [0] * n_words


_NO_ENTROPY = _NoEntropy()


def check_random_state(seed):
    """None, an int or a RandomState -> a numpy RandomState (as scikit-learn). An int gives
    the state of ``np.random.RandomState(seed)`` exactly (same errors for bad seeds)."""
    if seed is None or seed is np.random:
        return np.random.mtrand._rand
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        rng = np.random.RandomState(np.random.MT19937(_NO_ENTROPY))
        rng.seed(int(seed))
        return rng
    if isinstance(seed, np.random.RandomState):
        return seed
    raise ValueError(f"{seed!r} cannot be used to seed a numpy.random.RandomState instance")


def lengths_to_offsets(lengths, n_samples, name="lengths"):
    """Sequence offsets (S + 1,) int64 from sequence lengths, checked before any kernel
    reads memory with them; None is one sequence of all ``n_samples`` rows.

    Each length must be a positive integer no larger than ``n_samples`` and the lengths
    must add up to ``n_samples`` exactly. Values are range-checked in their own dtype
    before the cast to int64 (a uint64 2**63 or a float 1e300 never wraps), and the
    running sum is checked to stay within ``n_samples`` at every step: the first partial
    sum to pass it is at most ``2 * n_samples``, so it is exact, and a later overflow
    cannot hide it.
    """
    if lengths is None:
        return np.array([0, n_samples], dtype=np.int64)
    try:
        arr = np.asarray(lengths)
    except Exception as exc:  # noqa: BLE001 - ragged lists and the like
        raise ValueError(f"{name} must be a 1-D sequence of integers: {exc}") from exc
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of integers, got shape "
                         f"{arr.shape}")
    _check_integral(arr, f"{name} must be integers", kinds="iu")
    if arr.min() <= 0:
        bad = np.flatnonzero(arr <= 0)
        raise ValueError(f"{name} must be positive: {name}[{int(bad[0])}] = {arr[bad[0]]}"
                         f" ({len(bad)} zero or negative length(s))")
    offsets = np.zeros(len(arr) + 1, dtype=np.int64)
    if len(arr) <= n_samples and arr.max() <= n_samples:
        np.cumsum(arr, dtype=np.int64, out=offsets[1:])
    if offsets[-1] != n_samples or offsets.max() > n_samples:
        total = sum(int(v) for v in arr)  # exact; only on this error path
        raise ValueError(f"{name} array doesn't sum to {n_samples} samples: the {len(arr)} "
                         f"lengths sum to {total}")
    return offsets


_INT64_MAX = np.iinfo(np.int64).max


def check_count_array(X, *, estimator, what="counts"):
    """X as a 2-D int64 array of non-negative integers, or a ValueError/TypeError.

    Integer input is range-checked in its own dtype (uint64 values of 2**63 and above
    do not fit int64 and are refused, never wrapped); floats must be finite, integral
    and below 2**63. Nothing is converted through a type that would round it.
    """
    try:
        raw = None if _is_sparse(X) else np.asarray(X)
    except Exception:  # noqa: BLE001 - check_array below says what is wrong
        raw = None
    if raw is not None and raw.dtype.kind in "iu":
        arr = check_array(raw, estimator=estimator, dtypes=(raw.dtype,))
    else:
        arr = check_array(X, estimator=estimator)
        if np.any(arr != np.floor(arr)):
            raise ValueError(f"{estimator}: {what} should be integers; X has non-integral "
                             "values")
    if np.any(arr < 0):
        raise ValueError(f"{estimator}: {what} should be nonnegative; X has negative values "
                         f"(min {arr.min()})")
    top = arr.max()
    # int(): NumPy 1 compares a uint64 with a Python int in float64, where 2**63 == 2**63 - 1
    if (int(top) > _INT64_MAX) if arr.dtype.kind in "iu" else (top >= 2.0 ** 63):
        raise ValueError(f"{estimator}: {what} must be below 2**63 (they are used as int64); "
                         f"X has {top}")
    return arr.astype(np.int64)


# Rows whose coordinates reach this size give squared distances and second moments beyond
# float64's range (sqrt(max) is about 1.3e154, and the statistics sum many squares): the
# Gaussian estimators refuse them, alike on both backends, instead of returning NaN
# parameters or all-zero responsibilities.
MAX_GAUSSIAN_MAGNITUDE = 1e150


def check_spd(matrix, what):
    """ValueError unless ``matrix`` is symmetric (to rounding) and positive definite in
    the sense the kernels need: its Cholesky factorisation succeeds. (An eigenvalue test
    can disagree with Cholesky by rounding at the edge; this is the one the fit's own
    factorisation applies, so a matrix a fit stored is always accepted.)"""
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"{what} must be a square matrix, got shape {m.shape}")
    if not np.allclose(m, m.T):
        raise ValueError(f"{what} must be symmetric, positive-definite (it is not symmetric)")
    try:
        np.linalg.cholesky(m)
    except np.linalg.LinAlgError:
        raise ValueError(f"{what} must be symmetric, positive-definite") from None
    return m


SHAPE_ERROR = "{name} must have shape {shape}, got {got}"
# scikit-learn's wording, for the mixture estimators' *_init parameters
SKLEARN_SHAPE_ERROR = "The parameter '{name}' should have the shape of {shape}, but got {got}"


def check_float_array(name, value, shape, shape_error=SHAPE_ERROR):
    """A float64 copy of ``value`` of exactly ``shape``, finite; ValueError otherwise
    (``shape_error`` formats the shape message with name, shape and got)."""
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric: {exc}") from exc
    if arr.shape != tuple(shape):
        raise ValueError(shape_error.format(name=name, shape=tuple(shape), got=arr.shape))
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinity")
    return arr


def check_probabilities(name, value, shape):
    """A float64 copy of probability vectors of ``shape`` (the last axis sums to 1, to
    rounding), non-negative and finite; ValueError naming the problem otherwise."""
    arr = check_float_array(name, value, shape)
    if np.any(arr < 0):
        raise ValueError(f"{name} must be non-negative (it holds probabilities)")
    s = arr.sum(axis=-1)
    if not np.allclose(s, 1):
        if arr.ndim == 1:
            raise ValueError(f"{name} must sum to 1 (got {float(s):.4f})")
        raise ValueError(f"{name} rows must sum to 1 (got row sums of {s})")
    return arr


def check_count_matrix(X, *, estimator, whom=None, dtype=None):
    """Documents x words counts as a CSR matrix in canonical form (sorted indices, no
    duplicate entries: duplicates summed), float64 or float32 (other dtypes: float64), or a
    ValueError/TypeError.

    ``dtype`` not None: X is converted to it (a fitted model's dtype). Dense arrays and any
    scipy.sparse format are accepted; the counts may be any non-negative finite numbers
    (tf-idf weights too, as scikit-learn's LatentDirichletAllocation). ``whom`` (default
    ``estimator``) names the method in the negative-values message, scikit-learn's wording.
    A copy is made only where a conversion or the summing of duplicates needs one: the
    caller's matrix is never modified.
    """
    import scipy.sparse as sp

    where = f" by {estimator}"
    if _is_sparse(X):
        if getattr(X, "ndim", 2) != 2:
            raise ValueError(f"Expected a 2D sparse matrix, got {X.ndim} dimension(s){where}.")
        _check_shape(X.shape, 1, where)
        csr = X.tocsr()
        if np.iscomplexobj(csr.data):
            raise ValueError("Complex data not supported in X")
    else:
        csr = sp.csr_matrix(check_array(X, estimator=estimator))
    target = dtype if dtype is not None else (
        csr.dtype if csr.dtype in (np.float64, np.float32) else np.float64)
    if csr.dtype != target:
        csr = csr.astype(target)
    if not csr.has_canonical_format:
        if csr is X:
            csr = csr.copy()
        csr.sum_duplicates()
    if csr.nnz:
        lo, hi = float(csr.data.min()), float(csr.data.max())
        if not (math.isfinite(lo) and math.isfinite(hi)):
            what = "NaN" if np.isnan(csr.data).any() else "infinity"
            raise ValueError(f"Input X contains {what}: word counts must be finite.")
        if lo < 0:
            raise ValueError(f"Negative values in data passed to {whom or estimator}: word "
                             f"counts must be non-negative; X has {lo:g}")
    return csr
