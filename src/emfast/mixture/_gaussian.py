"""Gaussian mixture model layer: parameters, M-step from statistics, initial statistics,
precision factors, sampling. Pure NumPy on K x D x D arrays; no loops over rows."""

import warnings

import numpy as np

from emfast import _unconstrained as U
from emfast import kernels
from emfast._config import get_backend
from emfast._stats import GaussianStats
from emfast.exceptions import DegenerateComponentWarning

# scikit-learn adds this to every component's responsibility sum; keeping it makes the
# two libraries' iterates agree to rounding error from the same start. It is relative to a
# mean sample weight of 1, never absolute: unweighted rows count 1 each, and
# emfast._validation.check_sample_weight scales weights by a power of two to a mean of
# about 1, so the floor cannot dominate tiny uniform weights.
NK_EPS = 10 * np.finfo(np.float64).eps
# A component whose weighted count falls below this fraction of the total is empty.
EMPTY_FRACTION = 1e-8
_MAX_JITTER_TRIES = 12


class GaussianParams:
    """weights (K,), means (K, D), covariances and prec_chol shaped by covariance type."""

    __slots__ = ("covariance_type", "weights", "means", "covariances", "prec_chol")

    def __init__(self, covariance_type, weights, means, covariances, prec_chol):
        self.covariance_type = covariance_type
        self.weights = weights
        self.means = means
        self.covariances = covariances
        self.prec_chol = prec_chol

    def log_const(self):
        with np.errstate(divide="ignore"):
            log_w = np.log(self.weights)
        return kernels.log_normalizer(self.prec_chol, self.covariance_type,
                                      self.means.shape[1], log_w)


class EStep:
    """The fused E-step kernel bound to one EM run over X (scikit-learn's k-means driver
    binds its kernel the same way before its loop).

    What the public ``kernels.gaussian_estep_stats`` does on every call -- check and convert
    the arrays, look up the backend, resolve the thread count, allocate the outputs -- is
    done here once: X (2-D C-contiguous float32/float64) and ``sample_weight`` (None or
    (N,) C-contiguous float64) come validated from the estimator. Each call then goes
    straight to the backend's unchecked kernel and overwrites the same nk, s1, s2 buffers,
    so the statistics it returns hold until the next call (the M-step consumes them first).
    The parameters must have the shapes of ``n_components`` and X's features; they are
    float64 C-contiguous after any M-step (``np.ascontiguousarray`` is a no-op then).
    """

    __slots__ = ("_kernel", "_X", "_blocks", "_sw", "_code", "_threads", "_nk", "_s1", "_s2",
                 "_weight_sum")

    def __init__(self, X, sample_weight, covariance_type, n_components, backend, n_threads,
                 weight_sum, blocks=None):
        N, D = X.shape
        mod = get_backend(backend)
        self._kernel = mod.estep_stats
        self._X = X
        self._threads = kernels._threads_for(N, n_threads)
        # X in the layout the kernel loads each block into, where the backend keeps one:
        # transposed once per fit instead of once per E-step (None: each E-step loads).
        # ``blocks``: the caller's estep_blocks(X), shared by its EM runs over X.
        self._blocks = mod.estep_blocks(X, self._threads) if blocks is None else blocks
        # the backend contract: an empty weight array means every weight is 1
        self._sw = np.empty(0) if sample_weight is None else sample_weight
        self._code = kernels._cov_code(covariance_type)
        self._nk = np.empty(n_components)
        self._s1 = np.empty((n_components, D))
        self._s2 = np.empty(kernels.prec_chol_shape(covariance_type, n_components, D))
        self._weight_sum = weight_sum

    def __call__(self, params):
        """Statistics about ``params.means`` (a GaussianStats over the shared buffers)."""
        means = np.ascontiguousarray(params.means, dtype=np.float64)
        loglik = self._kernel(self._X, self._sw, params.log_const(), means,
                              np.ascontiguousarray(params.prec_chol, dtype=np.float64),
                              self._code, self._nk, self._s1, self._s2, self._threads,
                              self._blocks)
        return GaussianStats(params.covariance_type, means, self._nk, self._s1, self._s2,
                             loglik, self._weight_sum)


def mstep_moments(stats, reg_covar):
    """New (weights, means, covariances) from statistics; scikit-learn's estimates exactly.

    With d_k = s1_k / nk_k the shift from the old to the new mean, the scatter about the new
    mean is s2_k - d s1^T - s1 d^T + nk d d^T, computed without forming E[x x^T].
    """
    ct = stats.covariance_type
    nk = stats.nk + NK_EPS
    d = stats.s1 / nk[:, None]
    means = stats.centre + d
    scatter = scatter_about(ct, stats.s1, stats.s2, stats.nk, d)
    if ct == "full":
        cov = scatter / nk[:, None, None]
        _add_diag(cov, reg_covar)
    elif ct == "tied":
        cov = scatter / nk.sum()
        cov = (cov + cov.T) * 0.5
        _add_diag(cov, reg_covar)
    elif ct == "diag":
        cov = scatter / nk[:, None] + reg_covar
    else:
        cov = scatter / (nk * means.shape[1]) + reg_covar
    return nk / nk.sum(), means, cov


def scatter_about(covariance_type, s1, s2, nk, shift):
    """The weighted scatter about ``centre + shift`` from the moments about ``centre``:
    ``s2 - (shift s1^T + s1 shift^T) + nk shift shift^T``, never the one-pass
    E[x x^T] - mu mu^T. ``s2`` is shaped by the covariance type: full (K, D, D); tied
    (D, D), summed over the components; diag (K, D); spherical (K,) summed over the
    features, or (K, D) per feature (what the HMM's spherical M-step averages). The
    M-step of every Gaussian model (mixture and HMM emissions, with or without priors)
    is this plus its own numerator and denominator terms."""
    if covariance_type in ("full", "tied"):
        # outer products by broadcasting: on K x D x D arrays einsum's set-up costs more
        outer_ds = shift[:, :, None] * s1[:, None, :]
        correction = outer_ds + outer_ds.transpose(0, 2, 1) - nk[:, None, None] * (
            shift[:, :, None] * shift[:, None, :])
        return s2 - (correction if covariance_type == "full" else correction.sum(axis=0))
    # shift (2 s1 - nk shift): four operations on (K, D) arrays, the M-step's largest cost
    # at small K and D (each costs its call, not its arithmetic)
    correction = shift * (s1 + s1 - nk[:, None] * shift)
    return s2 - (correction if s2.ndim == 2 else np.add.reduce(correction, axis=1))


def expected_log_joint(params, stats):
    """sum_n sum_k r_nk log(w_k N(x_n | k)) from the statistics ``stats`` taken at
    ``params`` (about its means): sum_k nk_k log_const_k - 1/2 sum_k tr(P_k S_k), with S_k
    the scatter s2 and P_k = U_k U_k^T the precision. The log-likelihood less this is the
    entropy of the responsibilities, without an (N, K) array."""
    ct, U, s2 = params.covariance_type, params.prec_chol, stats.s2
    if ct == "full":
        trace = np.einsum("kij,kij->", s2 @ U, U)
    elif ct == "tied":
        trace = np.sum((s2 @ U) * U)
    else:            # diag (K, D) and spherical (K,): s2 holds the sums of squares
        trace = np.sum(s2 * U * U)
    return float(stats.nk @ params.log_const()) - 0.5 * float(trace)


def recentre(stats, centre):
    """The same statistics taken about ``centre`` (K, D) instead of ``stats.centre``: s1
    and the scatter (:func:`scatter_about`) moved by the shift, so that they can be added
    to statistics taken about ``centre``."""
    shift = centre - stats.centre
    s1 = stats.s1 - stats.nk[:, None] * shift
    s2 = scatter_about(stats.covariance_type, stats.s1, stats.s2, stats.nk, shift)
    return GaussianStats(stats.covariance_type, centre, stats.nk, s1, s2, stats.loglik,
                         stats.weight_sum)


def stats_of_params(params, reg_covar):
    """Statistics per unit weight whose M-step (:func:`mstep_moments` with ``reg_covar``)
    gives ``params`` back: nk the weights, s1 = 0 about the means, s2 the scatter that the
    covariances less ``reg_covar`` stand for (online EM continuing from a fitted model)."""
    ct, w = params.covariance_type, params.weights
    K, D = params.means.shape
    cov = np.array(params.covariances, dtype=np.float64)
    if ct in ("full", "tied"):
        _add_diag(cov, -reg_covar)
        s2 = cov * (w[:, None, None] if ct == "full" else w.sum())
    else:
        s2 = (cov - reg_covar) * (w[:, None] if ct == "diag" else w * D)
    return GaussianStats(ct, np.array(params.means, dtype=np.float64), w.astype(np.float64),
                         np.zeros((K, D)), s2, 0.0, float(w.sum()))


def _add_diag(a, value):
    idx = np.arange(a.shape[-1])
    a[..., idx, idx] += value


def empty_components(stats):
    """Indices of components whose weighted count is (numerically) zero."""
    return (stats.nk <= EMPTY_FRACTION * stats.weight_sum).nonzero()[0]


def precision_cholesky(covariances, covariance_type, reg_covar):
    """Upper-triangular precision factors; regularise (with a warning) where needed.

    Returns (prec_chol, covariances); covariances is a new array when something was
    regularised, so the returned pair always agrees.
    """
    if covariance_type in ("diag", "spherical"):
        bad = ~(covariances > 0)
        if bad.any():
            # relative to the variances that are fine (the data's scale); 1 only when
            # none is, and there is no scale to go by
            scale = float(np.max(covariances[~bad], initial=0.0)) or 1.0
            floor = max(reg_covar, 1e-12 * scale)
            covariances = np.where(bad, floor, covariances)
            warnings.warn(
                f"{int(bad.sum())} variance(s) were not positive; set to {floor:.3g}. "
                "Increase reg_covar, or check for duplicated or constant data.",
                DegenerateComponentWarning, stacklevel=3)
        return 1.0 / np.sqrt(covariances), covariances
    stack = covariances if covariance_type == "full" else covariances[None]
    try:
        chol = np.linalg.cholesky(stack)
    except np.linalg.LinAlgError:
        stack = stack.copy()
        chol = np.empty_like(stack)
        for k in range(stack.shape[0]):
            chol[k] = _regularised_cholesky(stack[k], reg_covar, k)
        covariances = stack if covariance_type == "full" else stack[0]
    prec = _inverse_transposed(chol)
    return (prec if covariance_type == "full" else prec[0]), covariances


def _inverse_transposed(chol):
    """inv(L)^T for each lower Cholesky factor L of the stack: the upper-triangular U with
    U U^T = inv(L L^T), scikit-learn's convention. A triangular inverse (LAPACK trtri)
    costs a fifth of a general solve against the identity at D = 64."""
    # scipy.linalg comes with the Cython kernels anyway; imported here, not at the top,
    # so that importing emfast stays light.
    from scipy.linalg.lapack import dtrtri

    prec = np.empty_like(chol)
    for k in range(chol.shape[0]):
        # L's upper triangle is 0 (np.linalg.cholesky), so is inv(L)'s
        inv, info = dtrtri(chol[k], lower=1)
        if info != 0:
            raise ValueError(f"component {k}: the Cholesky factor of its covariance is "
                             "singular; the data may contain huge or non-finite values.")
        prec[k] = inv.T
    return prec


def _regularised_cholesky(cov, reg_covar, k):
    """Cholesky of ``cov`` (modified in place), adding a growing diagonal floor on failure."""
    try:
        return np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        pass
    scale = float(np.mean(np.abs(np.diag(cov)))) or 1.0
    jitter = max(reg_covar, 1e-10 * scale)
    added = 0.0
    for _ in range(_MAX_JITTER_TRIES):
        _add_diag(cov, jitter)
        added += jitter
        try:
            chol = np.linalg.cholesky(cov)
        except np.linalg.LinAlgError:
            jitter *= 10.0
            continue
        warnings.warn(
            f"component {k}: covariance was not positive definite; added {added:.3g} to its "
            "diagonal. Increase reg_covar, use fewer components, or scale the data.",
            DegenerateComponentWarning, stacklevel=4)
        return chol
    raise ValueError(
        f"component {k}: covariance is not positive definite even after adding {added:.3g} "
        "to its diagonal; the data may contain huge or non-finite values.")


def prec_chol_from_precisions(precisions, covariance_type):
    """scikit-learn's upper-triangular factor U (U U^T = precision) via a flipped Cholesky."""
    if covariance_type in ("diag", "spherical"):
        return np.sqrt(precisions)
    stack = precisions if covariance_type == "full" else precisions[None]
    flipped = stack[:, ::-1, ::-1]
    u = np.linalg.cholesky(flipped)[:, ::-1, ::-1]
    u = np.ascontiguousarray(u)
    return u if covariance_type == "full" else u[0]


def precisions_from_chol(prec_chol, covariance_type):
    """The precisions of the factors (also of a stack of models' factors, any leading axes)."""
    if covariance_type in ("full", "tied"):
        return prec_chol @ np.swapaxes(prec_chol, -1, -2)
    return prec_chol ** 2


def covariances_from_chol(prec_chol, covariance_type):
    """Covariances implied by precision factors (used when only precisions_init is given)."""
    if covariance_type in ("diag", "spherical"):
        return 1.0 / prec_chol ** 2
    prec = precisions_from_chol(prec_chol, covariance_type)
    return np.linalg.inv(prec)


def pack_covariances(covariances, covariance_type):
    """Covariances in the compact form of their type as an unconstrained vector (the HMMs'
    SQUAREM, ``emfast._unconstrained``): full and tied by the lower Cholesky factor with a
    log-diagonal, diag and spherical by the log-variances; its length is
    :func:`n_covariance_parameters`."""
    if covariance_type in ("diag", "spherical"):
        return np.log(np.asarray(covariances, dtype=np.float64)).ravel()
    stack = covariances if covariance_type == "full" else covariances[None]
    return U.pack_cholesky(np.linalg.cholesky(stack))


def unpack_covariances(vec, covariance_type, n_components, n_features):
    """(covariances, prec_chol) of the vector made by :func:`pack_covariances`: positive
    (definite) by construction, the precision factor as the M-step makes it (the inverse
    of the covariance's Cholesky factor, transposed)."""
    ct, K, D = covariance_type, n_components, n_features
    if ct in ("diag", "spherical"):
        with np.errstate(over="ignore"):
            cov = np.exp(np.reshape(vec, (K, D) if ct == "diag" else (K,)))
        return cov, 1.0 / np.sqrt(cov)
    L = U.unpack_cholesky(vec, K if ct == "full" else 1, D)
    cov, prec = L @ np.swapaxes(L, -1, -2), _inverse_transposed(L)
    return (cov, prec) if ct == "full" else (cov[0], prec[0])


def pack_compact(covariances, covariance_type):
    """Covariances as the vector SQUAREM extrapolates the mixtures and the imputer along:
    their compact form (full and tied: upper triangles row by row; diag and spherical:
    the variances), length :func:`n_covariance_parameters`."""
    ct, cov = covariance_type, np.asarray(covariances, dtype=np.float64)
    if ct in ("full", "tied"):
        stack = cov if ct == "full" else cov[None]
        rows, cols = np.triu_indices(stack.shape[-1])
        cov = stack[:, rows, cols]
    return cov.ravel()


def unpack_compact(vec, covariance_type, n_components, n_features):
    """(covariances, prec_chol) of :func:`pack_compact`'s vector, the precision factor as
    the M-step makes it; a ValueError (a variance not positive) or LinAlgError (a
    covariance not positive definite) where the vector holds none."""
    ct, K, D = covariance_type, n_components, n_features
    if ct in ("diag", "spherical"):
        cov = np.reshape(vec, (K, D) if ct == "diag" else (K,)).copy()
        if not np.all(cov > 0):
            raise ValueError("the extrapolated variances are not positive")
        return cov, 1.0 / np.sqrt(cov)
    n = K if ct == "full" else 1
    rows, cols = np.triu_indices(D)
    stack = np.empty((n, D, D))
    stack[:, rows, cols] = np.reshape(vec, (n, -1))
    stack[:, cols, rows] = np.reshape(vec, (n, -1))
    prec = _inverse_transposed(np.linalg.cholesky(stack))
    return (stack, prec) if ct == "full" else (stack[0], prec[0])


def pack_params(params):
    """GaussianParams as SQUAREM's vector (``emfast._em``): the weights, the means, then
    :func:`pack_compact`. The M-step is ratios of moments, and along these coordinates the
    EM map is nearer a line than along log-weights and Cholesky factors
    (:func:`pack_covariances`, which the HMMs keep): from the same starts, E-steps to plain
    EM's final log-likelihood over 8 fits (2 data sets x 4 covariance types): 5.3, 6.2,
    5.1, 11.4, 3.4, 5.0, 3.2, 4.5x fewer than plain EM through the logs and factors; 7.5,
    6.7, 5.9, 11.4, 4.5, 5.0, 3.7, 5.1x here. Its length is :func:`n_parameters` + 1."""
    return np.concatenate([params.weights, np.ravel(params.means),
                           pack_compact(params.covariances, params.covariance_type)])


def unpack_params(vec, like):
    """The GaussianParams of :func:`pack_params`' vector (``like``: parameters of the same
    shapes): weights re-normalised, prec_chol as the M-step gives it. A ValueError (a
    negative weight or variance) or LinAlgError (a covariance that is not positive
    definite) where the vector holds no model: SQUAREM then takes the plain EM step."""
    ct = like.covariance_type
    K, D = like.means.shape
    read = U.Reader(vec)
    weights = U.mixture_weights(read.take(K))
    means = read.take((K, D)).copy()
    compact = read.take(n_covariance_parameters(ct, K, D))
    read.done()
    cov, prec_chol = unpack_compact(compact, ct, K, D)
    return GaussianParams(ct, weights, means, cov, prec_chol)


def n_covariance_parameters(covariance_type, n_components, n_features):
    """Free scalars of the covariances of K components in D dimensions."""
    K, D = n_components, n_features
    return {"full": K * D * (D + 1) // 2, "diag": K * D,
            "tied": D * (D + 1) // 2, "spherical": K}[covariance_type]


def n_parameters(covariance_type, n_components, n_features):
    """Free scalars of a mixture: covariances, means and K - 1 weights."""
    K, D = n_components, n_features
    return n_covariance_parameters(covariance_type, K, D) + D * K + K - 1


def full_covariances(covariances, covariance_type, n_components, n_features):
    """Covariances as (K, D, D) matrices whatever their type (a diag (K, 1) or spherical
    value applies to every feature)."""
    K, D = n_components, n_features
    cv = np.asarray(covariances)
    if covariance_type == "full":
        return cv
    if covariance_type == "tied":
        return np.tile(cv, (K, 1, 1))
    if covariance_type == "diag":
        return np.broadcast_to(cv, (K, D))[:, :, None] * np.eye(D)
    return cv.reshape(-1)[:, None, None] * np.eye(D)


def per_feature_variances(covariances, n_features):
    """Spherical variances (..., ) as per-feature (diag) ones (..., D)."""
    cv = np.asarray(covariances)
    return np.repeat(cv[..., None], n_features, axis=-1)


def covariances_from_template(template, covariance_type, n_components):
    """K covariances of a type, all made from one (D, D) template (the data's covariance,
    say): full copies it, diag keeps its diagonal, spherical the mean of that diagonal,
    tied is the template itself."""
    K = n_components
    if covariance_type == "full":
        return np.tile(template, (K, 1, 1))
    if covariance_type == "diag":
        return np.tile(np.diag(template), (K, 1))
    if covariance_type == "spherical":
        return np.full(K, template.mean())
    return np.array(template)


def draw(rng, mean, covariance, covariance_type, n_samples):
    """``n_samples`` rows from N(mean, covariance), the covariance in the compact form of
    its type for one component ((D, D) for full and tied, (D,) for diag, a scalar for
    spherical); the random stream of scikit-learn's and hmmlearn's samplers."""
    if covariance_type in ("full", "tied"):
        return rng.multivariate_normal(mean, covariance, int(n_samples))
    return mean + rng.standard_normal(size=(int(n_samples), len(mean))) * np.sqrt(covariance)


def _empty_stats(covariance_type, K, D, weight_sum, centre):
    return GaussianStats(covariance_type, centre, np.zeros(K), np.zeros((K, D)),
                         np.zeros(kernels.prec_chol_shape(covariance_type, K, D)), 0.0, weight_sum)


def _kernel_weights(sample_weight):
    """The k-means kernels' weight argument: (0,) stands for all weights 1."""
    return np.empty(0) if sample_weight is None else sample_weight


def stats_from_labels(X, sample_weight, covariance_type, labels, centres, backend, n_threads):
    """Statistics of a hard assignment about ``centres`` (K, D), from one compiled pass over
    X; no (N, K) array. ``labels`` (N,): the component of each row (outside [0, K): none);
    None: each row goes to its nearest centre. Used for initialisation: the M-step moves
    each mean from its centre by s1 / nk."""
    N, D = X.shape
    K = len(centres)
    centres = np.ascontiguousarray(centres, dtype=np.float64)
    st = _empty_stats(covariance_type, K, D,
                      float(N if sample_weight is None else sample_weight.sum()), centres)
    assign = labels is None
    labels = (np.empty(N, dtype=np.int64) if assign
              else np.ascontiguousarray(labels, dtype=np.int64))
    get_backend(backend, "kmeans").label_stats(
        X, _kernel_weights(sample_weight), centres, kernels._cov_code(covariance_type),
        labels, assign, st.nk, st.s1, st.s2, kernels._threads_for(N, n_threads))
    return st


def stats_from_rows(X, sample_weight, covariance_type, rows):
    """Statistics of components that hold one row each (component k: row ``rows[k]``, with
    its sample weight); a row may serve several components. Each component is centred on
    its row, so s1 and s2 are exactly 0 and no pass over X is needed."""
    K, D = len(rows), X.shape[1]
    sw = sample_weight
    st = _empty_stats(covariance_type, K, D, float(X.shape[0] if sw is None else sw.sum()),
                      np.asarray(X[rows], dtype=np.float64))
    st.nk[:] = 1.0 if sw is None else sw[rows]
    return st


def stats_from_resp(X, sample_weight, covariance_type, n_components, resp_chunks, backend,
                    n_threads):
    """Statistics of soft responsibilities given as (start_row, (rows, K) array) chunks,
    one compiled pass (:func:`emfast.kernels.gaussian_weighted_stats`) per chunk.

    Moments are taken about the weighted column mean of X, a common reference for every
    component (soft initial assignments put every mean near it). Used for initialisation.
    """
    N, D = X.shape
    sw = sample_weight
    centre_row = np.average(X, axis=0, weights=sw).astype(np.float64)
    centres = np.ascontiguousarray(np.broadcast_to(centre_row, (n_components, D)))
    st = _empty_stats(covariance_type, n_components, D, float(N if sw is None else sw.sum()),
                      centres)
    for start, resp in resp_chunks:
        stop = start + resp.shape[0]
        if sw is not None:
            resp *= sw[start:stop, None]
        nk, s1, s2 = kernels.gaussian_weighted_stats(
            X[start:stop], resp, centres, covariance_type, backend=backend,
            n_threads=n_threads)
        st.nk += nk
        st.s1 += s1
        st.s2 += s2
    return st


def sample(params, n_samples, rng):
    """(X, y) drawn from the mixture, scikit-learn's order: component by component."""
    ct = params.covariance_type
    counts = rng.multinomial(n_samples, params.weights / params.weights.sum())
    parts = []
    for k, (mean, n) in enumerate(zip(params.means, counts)):
        cov = params.covariances if ct == "tied" else params.covariances[k]
        parts.append(draw(rng, mean, cov, ct, n))
    y = np.concatenate([np.full(int(n), k, dtype=np.int64) for k, n in enumerate(counts)])
    return np.vstack(parts), y

