"""Run bad-input cases in a fresh interpreter, so that a regression that crashes a kernel
(SIGSEGV, SIGFPE, heap corruption) fails the one test that found it, not the whole run."""

import os
import subprocess
import sys
import textwrap

import emfast

_SRC = os.path.dirname(os.path.dirname(os.path.abspath(emfast.__file__)))

_PRELUDE = '''
import numpy as np
import emfast.kernels as k

def case(name, thunk):
    try:
        thunk()
        outcome = "no error"
    except Exception as exc:  # the parent judges the kind and the message
        outcome = f"{type(exc).__name__}: {exc}".replace("\\n", " ")
    print(f"{name}\\t{outcome}", flush=True)
'''


def run_cases(body, timeout=600):
    """Execute ``body`` (which calls ``case(name, thunk)`` for each case) after a prelude
    that imports numpy as np and emfast.kernels as k. Returns {name: "ExcType: message"
    or "no error"}; asserts that the interpreter exited cleanly and names the last case
    that finished when it did not."""
    env = dict(os.environ)
    env["PYTHONPATH"] = _SRC + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", _PRELUDE + textwrap.dedent(body)],
                          capture_output=True, text=True, timeout=timeout, env=env)
    lines = [ln.split("\t", 1) for ln in proc.stdout.splitlines() if "\t" in ln]
    last = lines[-1][0] if lines else "(none)"
    assert proc.returncode == 0, (
        f"the interpreter died (exit code {proc.returncode}) after case {last!r}:\n"
        f"{proc.stderr[-3000:]}")
    return dict(lines)


def assert_all_raise(results, exc_name, fragment):
    """Every case raised ``exc_name`` with ``fragment`` in its message."""
    assert results, "no case ran"
    wrong = {name: out for name, out in results.items()
             if not (out.startswith(exc_name + ":") and fragment in out)}
    assert not wrong, f"expected {exc_name} mentioning {fragment!r}; got {wrong}"
