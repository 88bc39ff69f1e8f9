"""Backend selection and thread counts, resolved in one place."""

import functools
import importlib
import importlib.util
import os
import threading

BACKENDS = ("auto", "cython", "numba")

_lock = threading.Lock()
_cache = {}


def _load(name, kind):
    """(module, None) or (None, ImportError) for backend ``name``'s kernels of ``kind``
    ("gaussian", "hmm")."""
    key = (name, kind)
    with _lock:
        if key not in _cache:
            try:
                if name == "cython":
                    mod = _load_cython(kind)
                else:
                    mod = importlib.import_module(f"emfast._numba._{kind}")
                _cache[key] = (mod, None)
            except ImportError as exc:  # extension not built, or numba missing
                _cache[key] = (None, exc)
        return _cache[key]


def _cpu_features():
    """NumPy's run-time CPU feature detection ({} when it is not available)."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:
        try:  # NumPy < 2
            from numpy.core._multiarray_umath import __cpu_features__
        except ImportError:
            return {}
    return __cpu_features__


def _cpu_has_avx2_fma():
    """Whether this CPU runs AVX2 and FMA code."""
    f = _cpu_features()
    return bool(f.get("AVX2") and f.get("FMA3"))


def _cpu_has_avx512():
    """Whether this CPU runs the AVX-512 build (F, DQ and VL, besides AVX2 and FMA)."""
    f = _cpu_features()
    return _cpu_has_avx2_fma() and all(f.get(n) for n in ("AVX512F", "AVX512DQ", "AVX512VL"))


# Kernel kinds that also have an AVX-512 build (see setup.py).
_AVX512_KINDS = ("hmm", "gaussian", "missing", "lda", "discrete")


def _load_cython(kind):
    """The Cython kernel module this CPU should run: the widest build of the kernels that is
    built (x86-64 only) and that the CPU runs -- AVX-512 (the kinds in _AVX512_KINDS),
    AVX2+FMA, else the baseline build. EMFAST_CYTHON_BASELINE=1 forces the baseline build;
    EMFAST_CYTHON_NO_AVX512=1 stops at AVX2."""
    if os.environ.get("EMFAST_CYTHON_BASELINE", "") in ("", "0"):
        candidates = []
        if (kind in _AVX512_KINDS and _cpu_has_avx512()
                and os.environ.get("EMFAST_CYTHON_NO_AVX512", "") in ("", "0")):
            candidates.append(f"emfast._cython._{kind}_avx512")
        if _cpu_has_avx2_fma():
            candidates.append(f"emfast._cython._{kind}_avx2")
        for name in candidates:
            try:
                return importlib.import_module(name)
            except ImportError:  # not built on this platform
                pass
    return importlib.import_module(f"emfast._cython._{kind}")


def available_backends(kind="gaussian", import_numba=True):
    """Names of the kernel backends whose ``kind`` kernels import in this process.

    With ``import_numba=False`` numba is named when it is installed and has not failed to
    import here, without importing it (about 0.6 s): for reports such as show_config().
    """
    names = []
    for name in ("cython", "numba"):
        if name == "numba" and not import_numba and (name, kind) not in _cache:
            usable = importlib.util.find_spec("numba") is not None
        else:
            usable = _load(name, kind)[0] is not None
        if usable:
            names.append(name)
    return names


def get_backend(backend="auto", kind="gaussian"):
    """Return the ``kind`` kernel module ("gaussian", "hmm") of ``backend`` ("auto",
    "cython" or "numba").

    "auto" is Cython when the extension is built, else Numba.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        for name in ("cython", "numba"):
            mod, _ = _load(name, kind)
            if mod is not None:
                return mod
        raise ImportError(
            "no emfast kernel backend is usable: the Cython extension is not built "
            "and numba does not import"
        )
    mod, exc = _load(backend, kind)
    if mod is None:
        raise ImportError(f"emfast backend {backend!r} is not available: {exc}")
    return mod


def default_backend(kind="gaussian"):
    """Name of the backend ("cython" or "numba") that "auto" picks for ``kind``."""
    return get_backend("auto", kind).__name__.split(".")[-2].lstrip("_")


@functools.lru_cache(maxsize=None)
def _cgroup_cpu_limit():
    """CPUs allowed by a cgroup v2/v1 quota, or None when unlimited. Read once per process:
    the three file reads cost ~60 us, more than a kernel call on a small X, and every
    ``n_threads=None`` call resolves the thread count."""
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            return max(1, int(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as f:
            quota = int(f.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as f:
            period = int(f.read())
        if quota > 0:
            return max(1, quota // period)
    except (OSError, ValueError):
        pass
    return None


def affinity_cpu_count():
    """CPUs in this process's affinity mask (all CPUs where there is none, as on macOS)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def cpu_count():
    """CPUs this process may use: affinity mask, cgroup quota and OMP_NUM_THREADS."""
    n = affinity_cpu_count()
    limit = _cgroup_cpu_limit()
    if limit is not None:
        n = min(n, limit)
    omp = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if omp.isdigit() and int(omp) > 0:
        n = min(n, int(omp))
    return max(1, n)


def resolve_n_threads(n_threads):
    """None -> all usable CPUs; a positive int is taken as is; 0 or negative is an error."""
    if n_threads is None:
        return cpu_count()
    if isinstance(n_threads, bool) or not isinstance(n_threads, (int,)) and not hasattr(
        n_threads, "__index__"
    ):
        raise TypeError(f"n_threads must be None or a positive integer, got {n_threads!r}")
    n = int(n_threads)
    if n < 1:
        raise ValueError(f"n_threads must be None or a positive integer, got {n_threads!r}")
    return n
