"""emfast.show_config(): what this installation can do.

It imports no Numba (about 0.6 s) and compiles nothing: what numba would run with is read from
its package metadata and from the environment variables it reads when it starts, unless numba
is already running in this process, which then answers itself.
"""

import importlib.metadata
import os
import platform
import sys


def config_info():
    """Version, backends, OpenMP, threads and BLAS, as a dict."""
    import numpy as np

    import emfast
    from emfast import _config

    info = {
        "emfast": emfast.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": np.__version__,
        "backends": _config.available_backends(import_numba=False),
        "default_backend": None,
        "cython_builds": None,
        "openmp": False,
        "openmp_max_threads": None,
        "numba": None,
        "numba_threads": None,
        "numba_threading_layer": None,
        "n_threads_default": _config.cpu_count(),
        "blas": [],
    }
    try:
        info["default_backend"] = _config.default_backend()
    except ImportError:
        pass
    if "cython" in info["backends"]:
        mod = _config.get_backend("cython")
        # which instruction-set build of each kernel module this CPU runs
        info["cython_builds"] = {
            kind: _config.get_backend("cython", kind).__name__.rsplit(".", 1)[1]
            for kind in ("gaussian", "hmm")
            if "cython" in _config.available_backends(kind, import_numba=False)}
        info["openmp"] = bool(mod.openmp_enabled())
        info["openmp_max_threads"] = int(mod.openmp_max_threads())
    info.update(_numba_info())
    try:
        import scipy.linalg  # noqa: F401 - loads scipy's BLAS so threadpoolctl sees it
        from threadpoolctl import threadpool_info

        info["blas"] = [
            {k: d.get(k) for k in ("internal_api", "version", "num_threads", "architecture",
                                   "filepath")}
            for d in threadpool_info() if d.get("user_api") == "blas"
        ]
    except ImportError:
        pass
    return info


def _numba_info():
    """numba's version, thread-pool size and threading layer, without importing numba."""
    try:
        version = importlib.metadata.version("numba")
    except importlib.metadata.PackageNotFoundError:
        return {}
    numba = sys.modules.get("numba")
    if numba is not None:  # running already: its own answers (the layer once it has launched)
        try:
            layer = numba.threading_layer()
        except ValueError:  # no parallel kernel launched yet
            layer = numba.config.THREADING_LAYER
        return {"numba": version, "numba_threads": numba.config.NUMBA_NUM_THREADS,
                "numba_threading_layer": layer}
    # numba's own rule (numba/core/config.py): NUMBA_NUM_THREADS, else the CPUs of the
    # affinity mask; the layer is chosen at the first parallel launch.
    from emfast import _config

    threads = os.environ.get("NUMBA_NUM_THREADS", "").strip()
    return {"numba": version,
            "numba_threads": int(threads) if threads.isdigit() else _config.affinity_cpu_count(),
            "numba_threading_layer": os.environ.get("NUMBA_THREADING_LAYER", "default")}


def show_config(file=None):
    """Print the emfast version, kernel backends, OpenMP, thread counts and BLAS."""
    info = config_info()
    out = file or sys.stdout
    width = max(len(k) for k in info)
    for key, value in info.items():
        if key == "blas":
            continue
        print(f"{key:<{width}} : {value}", file=out)
    for lib in info["blas"]:
        print(f"{'blas':<{width}} : {lib['internal_api']} {lib['version']} "
              f"({lib['architecture']}, {lib['num_threads']} threads) {lib['filepath']}",
              file=out)
