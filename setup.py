"""Build the Cython kernels; probe for OpenMP. All metadata lives in pyproject.toml."""

import os
import platform
import re
import sys
import tempfile
import textwrap
import warnings
from glob import glob

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

OPENMP_TEST = textwrap.dedent(
    """
    #include <omp.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        return omp_get_max_threads() > 0 && n > 0 ? 0 : 1;
    }
    """
)


def openmp_flags(compiler):
    """(compile_args, link_args) that make OpenMP work with this compiler, or None."""
    if os.environ.get("EMFAST_NO_OPENMP", "") not in ("", "0"):
        return None
    if sys.platform == "win32":
        candidates = [(["/openmp"], [])]
    elif sys.platform == "darwin":
        # Apple clang needs -Xpreprocessor and Homebrew's libomp (the wheel workflow
        # installs it and exports CPPFLAGS/LDFLAGS pointing at it).
        candidates = [(["-Xpreprocessor", "-fopenmp"], ["-lomp"]), (["-fopenmp"], ["-fopenmp"])]
    else:
        candidates = [(["-fopenmp"], ["-fopenmp"])]
    extra_cflags = os.environ.get("CPPFLAGS", "").split() + os.environ.get("CFLAGS", "").split()
    extra_ldflags = os.environ.get("LDFLAGS", "").split()
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "omp_probe.c")
        with open(src, "w") as f:
            f.write(OPENMP_TEST)
        for cflags, ldflags in candidates:
            try:
                objs = compiler.compile([src], output_dir=tmp, extra_preargs=cflags + extra_cflags)
                compiler.link_executable(objs, "omp_probe", output_dir=tmp,
                                         extra_preargs=ldflags + extra_ldflags)
                return cflags, ldflags
            except Exception:  # noqa: BLE001 - any compile/link failure means "not this one"
                continue
    return None


CYTHON_DIRECTIVES = {
    "language_level": 3,
    "boundscheck": False,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": False,
}


class BuildExt(build_ext):
    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:   # pip and python -m build ask for no -j: use every core
            self.parallel = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
                else os.cpu_count() or 1

    def build_extensions(self):
        # Cython runs here, when extensions are built, not when setup.py is merely loaded
        # (an sdist or egg_info needs no C); in worker processes only where they fork (a
        # spawned worker would run this setup.py again: macOS, Windows)
        forks = sys.platform.startswith("linux")
        c_sources = {ext.name: ext.sources for ext in cythonize(
            self.extensions, compiler_directives=CYTHON_DIRECTIVES,
            shared_utility_qualified_name=SHARED_UTILITY,
            nthreads=int(self.parallel or 0) if forks else 0)}
        for ext in self.extensions:      # setuptools has set up these objects: keep them
            ext.sources = c_sources[ext.name]
        flags = openmp_flags(self.compiler)
        if flags is None:
            reason = ("EMFAST_NO_OPENMP is set" if os.environ.get("EMFAST_NO_OPENMP", "") not in ("", "0")
                      else "the compiler cannot build an OpenMP program")
            warnings.warn(
                f"emfast: building the Cython kernels WITHOUT OpenMP ({reason}); "
                "they will run on one thread. Install an OpenMP runtime (libgomp/libomp) "
                "and rebuild for multi-core kernels.",
                stacklevel=1,
            )
            print(f"*** emfast: OpenMP disabled: {reason}", file=sys.stderr)
        for ext in self.extensions:
            if flags is not None:
                ext.extra_compile_args += flags[0]
                ext.extra_link_args += flags[1]
            ext.define_macros.append(("EMFAST_OPENMP", "1" if flags else "0"))
        super().build_extensions()


# Modules named *_avx2 are a second build of the same kernels for x86-64 CPUs with AVX2
# and FMA; emfast._config picks one at import time. The wheel stays portable: the baseline
# module is always built and used elsewhere.
AVX2_SUFFIX = "_avx2"


def avx2_flags():
    """Compile flags for the AVX2+FMA build, or None where it is not built (not x86-64)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    return ["/arch:AVX2"] if sys.platform == "win32" else ["-mavx2", "-mfma"]


# Modules named *_avx512 are a third build for x86-64 CPUs with AVX-512 (F, DQ, VL): the HMM
# forward-backward advances 8 sequences per vector instead of 4, the Gaussian kernels take 8
# rows per vector and keep 16 accumulators in the 32 vector registers.
AVX512_SUFFIX = "_avx512"


def avx512_flags():
    """Compile flags for the AVX-512 build, or None where it is not built (not x86-64)."""
    if avx2_flags() is None:
        return None
    if sys.platform == "win32":
        return ["/arch:AVX512"]
    return ["-mavx512f", "-mavx512dq", "-mavx512vl", "-mavx2", "-mfma"]


ISA_FLAGS = {AVX2_SUFFIX: avx2_flags, AVX512_SUFFIX: avx512_flags}

# Cython's own helpers (memoryviews, buffer checks, error handling) are compiled once into
# this module and imported by every kernel module. Each module would otherwise carry its own
# copy: about 25,000 lines of C per module, which were half of the build time and of the
# wheel's size.
SHARED_UTILITY = "emfast._cython._cyutility"


def _local_includes(path, seen=None):
    """The .pxi and .h files of src/emfast/_cython that ``path`` includes, directly or
    through each other: a module rebuilds when one of its own files changes, not when any
    kernel header of another module does."""
    seen = set() if seen is None else seen
    with open(path) as f:
        names = re.findall(r'^\s*(?:include|cdef extern from|#include)\s+"([\w.]+)"', f.read(),
                           re.MULTILINE)
    for name in names:
        dep = os.path.join("src/emfast/_cython", name)
        if dep not in seen and os.path.exists(dep):
            seen.add(dep)
            _local_includes(dep, seen)
    return sorted(seen)


def extensions():
    """The Extension of every .pyx, not yet cythonized (BuildExt does that, so that making
    an sdist runs no Cython)."""
    # -fno-trapping-math: without it GCC keeps every branch-free select (a ? b : c on
    # doubles) out of vector loops, to preserve floating-point exception flags nobody reads.
    # It changes no result. -g0: Python's own CFLAGS ask for debug information, which was
    # three quarters of each extension's size.
    opt = [] if sys.platform == "win32" else ["-O3", "-fno-trapping-math", "-g0"]
    # a release build: no symbol table either (what remains is the code)
    strip = ["-s"] if sys.platform.startswith("linux") else []
    exts = [Extension(SHARED_UTILITY, ["src/emfast/_cython/_cyutility.c"],
                      extra_compile_args=opt, extra_link_args=strip)]
    for pyx in sorted(glob("src/emfast/_cython/*.pyx")):
        name = pyx[len("src/"):-len(".pyx")].replace("/", ".")
        args = list(opt)
        suffix = next((x for x in ISA_FLAGS if name.endswith(x)), None)
        macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
        if suffix is not None:
            flags = ISA_FLAGS[suffix]()
            if flags is None:  # an instruction set this platform does not have
                continue
            args += flags
        elif avx2_flags() is not None:
            # the x86-64 baseline build runs only on CPUs without AVX2: no K-specialised
            # copies of the HMM forward-backward there (_hmm_lanes.h)
            macros.append(("EMFAST_LANES_GENERIC_ONLY", "1"))
        exts.append(
            Extension(
                name,
                [pyx],
                include_dirs=[np.get_include(), "src/emfast/_cython"],
                define_macros=macros,
                extra_compile_args=args,
                extra_link_args=strip,
                depends=_local_includes(pyx),
            )
        )
    return exts


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
