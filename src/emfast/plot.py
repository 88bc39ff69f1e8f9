"""Pictures of fitted models: mixtures with their covariance ellipses, convergence traces,
model-selection curves, HMM state sequences and benchmark bar charts.

matplotlib is an optional dependency (``pip install "emfast[plot]"``); it is imported when a
function here is called, not when this module is, so ``import emfast.plot`` always works.
Every function draws on ``ax`` when given (else on a new figure) and returns what it drew
on: a matplotlib Axes (:func:`plot_hmm_states`: an array of two).

Colours: component or state k is drawn in colour k of matplotlib's "tab10" colours (up to
10 components; more: evenly spaced "turbo" colours), the same in every plot here.
"""

import math

import numpy as np

from emfast.mixture._gaussian import full_covariances

__all__ = ["plot_mixture", "plot_convergence", "plot_selection", "plot_hmm_states",
           "plot_benchmark"]


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("emfast.plot needs matplotlib, which is not installed: "
                          "pip install 'emfast[plot]' (or pip install matplotlib)") from exc
    return plt


def _axes(ax):
    """``ax`` itself, or the Axes of a new figure."""
    if ax is not None:
        return ax
    return _pyplot().subplots()[1]


def component_colors(n):
    """(n, 4) RGBA colours of components/states 0..n-1 as the plots here draw them."""
    _pyplot()
    from matplotlib import colormaps

    cmap = colormaps["tab10"] if n <= 10 else colormaps["turbo"].resampled(n)
    return cmap(np.arange(n))


# ------------------------------------------------------------------------------ mixtures
def _principal_axes(X):
    """(mean (D,), basis (2, D)): the data's first two principal directions, each signed so
    that its largest entry is positive (the picture does not flip between runs). The scatter
    is divided by n, not n - 1, so that one row (no spread: any basis) is no division by 0
    (nor np.cov, which takes a single row for one variable)."""
    center = X.mean(axis=0)
    Xc = X - center
    _, vecs = np.linalg.eigh(Xc.T @ Xc / len(X))
    basis = vecs[:, ::-1][:, :2].T                      # eigh sorts ascending
    signs = np.sign(basis[np.arange(2), np.argmax(np.abs(basis), axis=1)])
    return center, basis * signs[:, None]


def ellipse_geometry(mean, cov, n_std):
    """(center, width, height, angle in degrees) of the ``n_std`` standard-deviation ellipse
    of a 2-D Gaussian: the axes are 2 n_std sqrt(eigenvalue) along the eigenvectors of
    ``cov``; width lies along the largest, at ``angle`` from the horizontal."""
    vals, vecs = np.linalg.eigh(cov)
    vals = np.maximum(vals, 0.0)                        # rounding on a singular cov
    major = vecs[:, 1]
    angle = math.degrees(math.atan2(major[1], major[0]))
    return (tuple(mean), 2.0 * n_std * math.sqrt(vals[1]), 2.0 * n_std * math.sqrt(vals[0]),
            angle)


def plot_mixture(model, X, ax=None, *, n_std=(1, 2), point_size=8):
    """The rows of X coloured by ``model.predict(X)`` and each component's covariance
    ellipses at ``n_std`` standard deviations (one ``matplotlib.patches.Ellipse`` per
    component and n_std), for a fitted Gaussian mixture (emfast's or scikit-learn's) of
    any covariance type.

    With 2 features the data are drawn as they are. With more, everything is projected on
    the data's first two principal components: the rows, the means and the covariances
    (W C W^T for the (2, D) basis W), so the ellipses are those of the projected Gaussians.

    Returns the Axes.
    """
    for attr in ("means_", "covariances_", "covariance_type"):
        if not hasattr(model, attr):
            raise ValueError(f"plot_mixture needs a fitted Gaussian mixture; "
                             f"{type(model).__name__} has no {attr}")
    means = np.asarray(model.means_, dtype=np.float64)
    K, D = means.shape
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != D:
        raise ValueError(f"X must have shape (n_samples, {D}) like the model's means, "
                         f"got {X.shape}")
    if D < 2:
        raise ValueError("plot_mixture draws 2-D pictures: the model has 1 feature")
    if not np.all(np.isfinite(X)):
        raise ValueError("plot_mixture draws complete rows: X has NaN or infinite values "
                         "(drop or impute those rows first)")
    n_stds = np.atleast_1d(np.asarray(n_std, dtype=np.float64))
    if n_stds.ndim != 1 or not np.all(np.isfinite(n_stds) & (n_stds > 0)):
        raise ValueError(f"n_std must be positive numbers, got {n_std!r}")
    labels = model.predict(X)
    covs = full_covariances(np.asarray(model.covariances_, dtype=np.float64),
                            model.covariance_type, K, D)
    points = np.asarray(X, dtype=np.float64)
    if D == 2:
        names = ("x0", "x1")
    else:
        center, W = _principal_axes(points)
        points = (points - center) @ W.T
        means = (means - center) @ W.T
        covs = W @ covs @ W.T
        names = ("first principal component", "second principal component")

    from matplotlib.patches import Ellipse

    ax = _axes(ax)
    colors = component_colors(K)
    ax.scatter(points[:, 0], points[:, 1], c=colors[labels], s=point_size, linewidths=0)
    for k in range(K):
        for s in n_stds:
            xy, width, height, angle = ellipse_geometry(means[k], covs[k], s)
            ax.add_patch(Ellipse(xy, width, height, angle=angle, fill=False,
                                 edgecolor=colors[k], linewidth=1.5))
    ax.scatter(means[:, 0], means[:, 1], c="black", marker="x", s=40)
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.set_title(f"{K} components, {model.covariance_type} covariances "
                 f"(ellipses: {', '.join(f'{s:g}' for s in n_stds)} sd)")
    return ax


# --------------------------------------------------------------------------- convergence
# (attribute, y label) of what each estimator keeps of its fit, first match wins: the
# mixtures (Gaussian and discrete) and fit_many's models, the HMMs, the EM imputer
_TRACES = (
    ("lower_bounds_", "lower bound (log-likelihood per row)"),
    ("monitor_", "log-likelihood"),
    ("loglik_history_", "log-likelihood per row"),
)


def convergence_trace(model):
    """(values, label): the log-likelihood after each EM iteration that ``model`` keeps
    (``lower_bounds_``, ``monitor_.history`` or ``loglik_history_``)."""
    for attr, label in _TRACES:
        trace = getattr(model, attr, None)
        if trace is None:
            continue
        values = np.asarray(trace.history if attr == "monitor_" else trace, dtype=np.float64)
        if values.ndim != 1:
            raise ValueError(f"{type(model).__name__} holds the traces of many fits: plot "
                             "one of them (fit_many's result[i] is a fitted model)")
        if values.size:
            return values, label
    raise ValueError(f"{type(model).__name__} has no convergence trace (lower_bounds_, "
                     "monitor_.history or loglik_history_): is it fitted?")


def plot_convergence(model, ax=None):
    """The log-likelihood (or lower bound) at each EM iteration of a fitted model: a
    mixture's ``lower_bounds_``, an HMM's ``monitor_.history`` or an EMImputer's
    ``loglik_history_``, against the iteration number (1, 2, ...).

    Returns the Axes.
    """
    values, label = convergence_trace(model)
    ax = _axes(ax)
    ax.plot(np.arange(1, len(values) + 1), values, marker="o", markersize=3)
    ax.set_xlabel("iteration")
    ax.set_ylabel(label)
    ax.set_title(f"{type(model).__name__}: {len(values)} iterations")
    return ax


# ------------------------------------------------------------------------------ selection
def plot_selection(selection, ax=None, *, criterion=None):
    """The criterion of every candidate of :func:`emfast.select_gaussian_mixture` against
    the number of components, one line per covariance type, the best candidate starred.

    ``criterion``: "bic", "aic" or "icl" (default: the one the selection chose by). Failed
    candidates (NaN) leave gaps. Returns the Axes.
    """
    table = getattr(selection, "table_", None)
    if table is None:
        raise ValueError("plot_selection needs the result of select_gaussian_mixture, got "
                         f"{type(selection).__name__}")
    criterion = selection.criterion if criterion is None else criterion
    if criterion not in ("bic", "aic", "icl"):
        raise ValueError(f"criterion must be 'bic', 'aic' or 'icl', got {criterion!r}")
    ax = _axes(ax)
    types = list(dict.fromkeys(table["covariance_type"]))     # in the order of the table
    for t in types:
        rows = np.sort(table[table["covariance_type"] == t], order="n_components")
        ax.plot(rows["n_components"], rows[criterion], marker="o", markersize=4, label=t)
    best = table[int(np.nanargmin(table[criterion]))]
    ax.plot([best["n_components"]], [best[criterion]], marker="*", markersize=16,
            color="black", linestyle="none",
            label=f"best: K={best['n_components']}, {best['covariance_type']}")
    ax.set_xlabel("number of components")
    ax.set_ylabel(f"{criterion.upper()} (smaller is better)")
    ax.legend()
    return ax


# ------------------------------------------------------------------------------------ HMM
def plot_hmm_states(model, X, lengths=None, ax=None, *, time=None):
    """A fitted HMM's view of a signal: on top, the signal (each feature a grey line) with
    every point coloured by its Viterbi state (``model.predict``); below, the posterior
    state probabilities (``model.predict_proba``) stacked, so they fill [0, 1].

    X : (N,) or (N, D) the signal (D = 1 or 2 reads best); lengths as for ``model.predict``
    (sequence boundaries are drawn as dotted lines). time : (N,) optional, the horizontal
    coordinates (e.g. years; default 0..N-1). ax : None or two Axes (signal, posteriors).

    Returns a NumPy array of the two Axes: [signal, posteriors].
    """
    if not hasattr(model, "predict_proba") or not hasattr(model, "transmat_"):
        raise ValueError(f"plot_hmm_states needs a fitted HMM, got {type(model).__name__}")
    X = np.asarray(X)
    signal = X[:, None] if X.ndim == 1 else X
    if signal.ndim != 2:
        raise ValueError(f"X must be 1-D or 2-D, got shape {X.shape}")
    N = len(signal)
    states = model.predict(signal, lengths)
    proba = model.predict_proba(signal, lengths)
    t = np.arange(N) if time is None else np.asarray(time)
    if t.shape != (N,):
        raise ValueError(f"time must have shape ({N},) like X's rows, got {t.shape}")
    if ax is None:
        _, ax = _pyplot().subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": (2, 1)})
    axes = np.asarray(ax, dtype=object)
    if axes.shape != (2,):
        raise ValueError("ax must be two Axes (signal, posteriors)")
    top, bottom = axes
    colors = component_colors(proba.shape[1])

    for d in range(signal.shape[1]):
        top.plot(t, signal[:, d], color="0.7", linewidth=1, zorder=1)
        top.scatter(t, signal[:, d], c=colors[states], s=14, zorder=2,
                    marker="os^v"[d % 4])
    top.set_ylabel("signal" if signal.shape[1] == 1 else "signal (features: o, s, ...)")
    top.set_title(f"{type(model).__name__}: Viterbi states (colours) and posteriors")
    bottom.stackplot(t, proba.T, colors=colors,
                     labels=[f"state {k}" for k in range(proba.shape[1])])
    bottom.set_ylim(0, 1)
    bottom.set_ylabel("P(state)")
    bottom.legend(loc="upper right", fontsize="small")
    if lengths is not None:
        for start in np.cumsum(lengths)[:-1]:
            for a in axes:
                a.axvline(t[start], color="black", linestyle=":", linewidth=1)
    return axes


# ------------------------------------------------------------------------------ benchmark
def _benchmark_table(rows):
    """(cases, series names, (n_cases, n_series) ratios) from plot_benchmark's ``rows``."""
    items = list(rows.items()) if isinstance(rows, dict) else list(rows)
    if not items:
        raise ValueError("rows is empty: give (case, ratio) pairs")
    try:
        cases = [str(case) for case, _ in items]
    except (TypeError, ValueError):
        raise ValueError("rows must be (case, ratio) or (case, {series: ratio}) pairs, "
                         "or a dict of them") from None
    per_case = [v if isinstance(v, dict) else {None: v} for _, v in items]
    series = list(dict.fromkeys(name for d in per_case for name in d))
    try:
        ratios = np.array([[float(d.get(s, np.nan)) for s in series] for d in per_case])
    except (TypeError, ValueError):
        raise ValueError("every ratio must be a number (NaN: not measured)") from None
    return cases, series, ratios


def plot_benchmark(rows, ax=None, *, reference="scikit-learn", ylabel=None):
    """Speed-ups as bars: ``reference``'s time / emfast's time per case, as the "ratio"
    columns of ``benchmarks/compare.py``'s tables (higher is faster; a line marks 1).

    rows : ``[(case, ratio), ...]`` or ``[(case, {series: ratio, ...}), ...]`` (grouped
    bars, one colour per series, e.g. ``{"emfast-cython": 47.0, "emfast-numba": 18.8}``
    for compare.py's G1 row), or a dict ``{case: ratio or {series: ratio}}``. NaN: not
    measured (no bar). Returns the Axes; each bar is labelled with its ratio.
    """
    cases, series, ratios = _benchmark_table(rows)
    ax = _axes(ax)
    x = np.arange(len(cases))
    width = 0.8 / len(series)
    for j, name in enumerate(series):
        bars = ax.bar(x + (j - (len(series) - 1) / 2) * width, ratios[:, j], width,
                      label=name)
        ax.bar_label(bars, labels=[f"{r:.1f}×" if np.isfinite(r) else "" for r in ratios[:, j]],
                     fontsize="small")
    ax.axhline(1.0, color="black", linewidth=1)
    ax.set_xticks(x, cases, rotation=45 if len(cases) > 6 else 0)
    ax.set_ylabel(ylabel or f"speed-up over {reference} (×)")
    if series != [None]:
        ax.legend()
    return ax
