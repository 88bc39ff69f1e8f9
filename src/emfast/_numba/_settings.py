"""The one place that says how every ``@njit`` in emfast's Numba backend is compiled.

Every kernel module does ``from emfast._numba._settings import JIT`` and decorates its helpers
with ``@njit(**JIT)``, its ``prange`` drivers with ``@parallel_driver(*signatures)`` and the
function a driver runs per group with ``@outlined(*signatures)``, so a change of flags here
changes the whole backend at once; ``emfast._numba._launch.run`` calls the drivers.

Nothing is compiled when a module is imported: a function is compiled (or loaded from the disk
cache) the first time a fit calls it, for the dtypes it is called with, so a user pays only for
the kernels they use and importing emfast never waits for LLVM.
"""

import threading

import numpy as np
from numba import njit
from numba.core import cgutils, types
from numba.core.errors import TypingError
from numba.core.imputils import impl_ret_borrowed
from numba.extending import intrinsic

# Fastmath flags, chosen to keep IEEE NaN/inf semantics:
#   reassoc  lets LLVM reorder the float reductions (dot products over the rows of a block) so
#            that they vectorise into several SIMD accumulators. The order is still fixed by the
#            compiled code, so results stay bit-identical for any thread count -- provided a
#            sum is a loop that stores nothing: a loop that also writes memory is vectorised
#            behind a run-time check that its arrays do not overlap, and the scalar fallback
#            adds in another order, so the result would depend on where arrays lie in memory.
#   contract lets a*b+c become one fused multiply-add (faster, and one rounding instead of two).
#   arcp     lets x/y become x*(1/y) where LLVM finds that cheaper (one divide per row, many uses).
#   nsz      lets LLVM ignore the sign of zero (no kernel output depends on -0.0 vs +0.0).
# Deliberately left out:
#   nnan, ninf  would let LLVM assume no NaN/inf exists: comparisons and the row max in the
#               log-sum-exp could then silently turn NaN/inf input into finite garbage, and the
#               -inf of a zero-weight component would no longer be safe.
#   afn         would allow approximate exp/log; the kernels are checked to 1e-10 relative.
FASTMATH = {"reassoc", "contract", "arcp", "nsz"}  # numba wants a plain set



def _probe():  # compiled never: only decorated, to ask numba where it would cache
    pass


def _disk_cache_usable():
    """Whether numba finds a writable cache location for the functions of this directory.

    numba picks the location from the source file's directory (NUMBA_CACHE_DIR, else the
    __pycache__ beside the source, else the user's cache directory) and, when none of them is
    writable, fails every ``cache=True`` decoration with "cannot cache function ...: no locator
    available" -- a read-only site-packages in a container without a writable home. Every
    kernel module lives beside this file, so decorating one function here with numba's own
    rules answers for all of them.
    """
    try:
        njit(cache=True)(_probe)
    except RuntimeError:
        return False
    return True


# cache: compiled machine code is kept on disk where numba finds a writable location, so only
#        the first use of a kernel on a machine pays its compile time; where none is writable
#        the kernels are compiled in each process that uses them.
# nogil=True: kernels release the GIL, so several fits can run from Python threads at once.
# error_model="numpy": a float division by zero gives inf/NaN as NumPy does instead of raising;
#             this also removes the zero checks that would stop loops from vectorising.
# boundscheck=False: indices are computed from validated shapes; checks would block SIMD.
# no_cpython_wrapper, no_cfunc_wrapper: a helper is called from compiled code only, so the
#             entry points for Python and C (argument unboxing for every array) are not
#             built: about 0.5 s less compile time for a first fit. Drivers get the Python one.
JIT = dict(
    cache=_disk_cache_usable(),
    nogil=True,
    fastmath=FASTMATH,
    error_model="numpy",
    boundscheck=False,
    no_cpython_wrapper=True,
    no_cfunc_wrapper=True,
)

# The same without reassoc, for functions whose storing loops multiply three or more factors
# (the HMM backward pass: v = b * beta / c). reassoc lets LLVM group such a product one way
# in the vectorised loop and another in its scalar fallback, which runs when a run-time
# check finds the arrays may overlap -- so the last bit would depend on where the arrays
# lie, and on which thread allocated them.
JIT_ORDERED = dict(JIT, fastmath=FASTMATH - {"reassoc"})

# The same without arcp, for functions that divide by a sum which can be subnormal (a
# probability row whose mass underflowed): arcp turns x / s into x * (1 / s), and 1 / s
# overflows to inf for a subnormal s (an HMM's transition row became [nan, nan, inf]).
JIT_EXACT_DIVISION = dict(JIT, fastmath=FASTMATH - {"arcp"})


# parallel=True would also turn each whole-array NumPy call of a driver (the np.zeros of its
# per-group slots) into a parallel loop compiled as a function of its own: about a fifth of the
# compile time of a first Numba fit, for arrays of a few hundred numbers. Only the prange is
# parallel here. numba empties the dict it is given: each driver gets a copy.
_PRANGE_ONLY = dict(prange=True, reduction=False, comprehension=False, inplace_binop=False,
                    setitem=False, numpy=False, stencil=False, fusion=False)

def array_arg(dtype, ndim, readonly):
    """The type of a C-contiguous array argument in a declared signature. Inputs are declared
    read-only (a writeable array converts to that for free, and a read-only one -- a memmap,
    the result of log_normalizer() -- is accepted), and every array unaligned (accepts any
    array; x86 SIMD loads do not care), so exactly one version per dtype exists."""
    return types.Array(dtype, ndim, "C", readonly=readonly, aligned=False)


@intrinsic
def as_output(typingctx, arr):
    """``arr`` (C-contiguous) typed as a declared output, writeable and unaligned: the same
    array, no copy. Scratch from np.empty is typed aligned; passed where a caller's output
    also goes, it would compile the callee a second time (numba cannot cast between the two
    types of one variable)."""
    if not isinstance(arr, types.Array) or arr.layout != "C":
        return None

    def codegen(context, builder, signature, args):
        return impl_ret_borrowed(context, builder, signature.return_type, args[0])

    return array_arg(arr.dtype, arr.ndim, False)(arr), codegen


IN1, IN2 = array_arg(types.float64, 1, True), array_arg(types.float64, 2, True)
OUT1, OUT2 = array_arg(types.float64, 1, False), array_arg(types.float64, 2, False)
# X of the Gaussian and k-means drivers: one declared signature per dtype.
X_TYPES = [array_arg(types.float64, 2, True), array_arg(types.float32, 2, True)]

# Declared signatures of the parallel drivers not compiled yet: {dispatcher: {dtype: sig}}.
_pending = {}
# Of drivers that call outlined functions: {dispatcher: {dtype: [(function, sig), ...]}} and,
# once compiled, {dispatcher: {dtype: (address of each function's version, ...)}}.
_callee_sigs = {}
_callee_fns = {}
_compile_lock = threading.Lock()


def parallel_driver(*signatures, calls=()):
    """Decorator of a ``prange`` driver: ``@njit(parallel=..., **JIT)`` that accepts exactly
    ``signatures``, at most one per dtype of its first argument, each compiled the first time
    a call needs it (:func:`compile_for`).

    ``calls=[(function, function_signatures), ...]``: the outlined functions (see
    :func:`outlined`: the group function, the sum of the groups' slots) the driver calls,
    each with ``function_signatures[i]`` when the driver has ``signatures[i]``; those
    versions are compiled with the driver's, and ``emfast._numba._launch.run`` passes their
    addresses (int64) to the driver as its last arguments, in this order.

    Declared signatures keep one version per dtype: left to itself numba would compile a new
    one (seconds each, for a parallel driver) for every mix of read-only / writeable and
    aligned / unaligned inputs, so inputs are declared read-only and unaligned, which any
    array converts to for free. Compiling them only on first use is what keeps a fit from
    paying for the drivers and dtypes it never calls.
    """
    by_dtype = {np.dtype(sig.args[0].dtype.name): sig for sig in signatures}
    if len(by_dtype) != len(signatures):
        raise ValueError("a parallel driver takes one signature per dtype of its first argument")

    def decorate(func):
        kernel = njit(parallel=dict(_PRANGE_ONLY), **dict(JIT, no_cpython_wrapper=False))(func)
        _pending[kernel] = by_dtype
        if any(f not in _outlined or len(sigs) != len(signatures) for f, sigs in calls):
            raise ValueError("calls: outlined functions, each with one signature per driver's")
        _callee_sigs[kernel] = {dtype: [(f, sigs[i]) for f, sigs in calls]
                               for i, dtype in enumerate(by_dtype)}
        _callee_fns[kernel] = {}
        return kernel

    return decorate


def compile_for(kernel, first):
    """Compile (or load from the disk cache) the declared signature of ``kernel`` for the dtype
    of its first argument ``first``, unless done before, with the outlined functions it
    calls; returns the tuple of their versions' addresses (empty: none, or a driver not made
    by :func:`parallel_driver`). Any call after the first costs two dict look-ups.
    """
    pending = _pending.get(kernel)
    if pending and first.dtype in pending:  # (dtype.name would cost ~10 us a call)
        with _compile_lock:
            # Removed only once compiled: a thread that arrives meanwhile (parallel n_init)
            # waits here instead of calling a kernel that has no version yet.
            sig = pending.get(first.dtype)
            if sig is not None:
                # Compilation stays disabled outside this block, as for an eagerly typed
                # njit: a call that matches no declared signature is a TypeError, not a new
                # version compiled behind the caller's back.
                if kernel.signatures:
                    kernel.disable_compile(False)
                try:
                    kernel.compile(sig)
                finally:
                    if kernel.signatures:
                        kernel.disable_compile()
                _callee_fns[kernel][first.dtype] = tuple(
                    _compile_outlined(f, fsig) for f, fsig in _callee_sigs[kernel][first.dtype])
                del pending[first.dtype]
    fns = _callee_fns.get(kernel)
    # (an undeclared dtype: no addresses, and the call finds no signature: a TypeError)
    return () if fns is None else fns.get(first.dtype, ())


# Outlined functions: {call intrinsic: dispatcher}.
_outlined = {}


def outlined(*signatures):
    """Decorator of a function that ``prange`` drivers call (the one a driver runs per group,
    the sum of the groups' slots): ``@njit(**JIT)`` compiled on its own for exactly
    ``signatures`` (each when a driver that calls it is compiled, see :func:`parallel_driver`)
    and called from the driver by the address of that version, which the driver gets as an
    argument ``fn``: in the driver, ``function(fn, *args)`` calls it; ``args`` must have
    exactly the types of a declared signature (see :func:`as_output`).

    Why not a plain call: numba builds a ``prange`` driver as four LLVM modules (the loop
    body, two wrappers around it, the driver), and each one links in, optimises and emits
    machine code again for everything the loop body calls. The group function is nearly all
    the code of a driver: called by address it is compiled once instead of five times, a
    cold fit about 30 % sooner. The call costs nothing measurable: one per group of blocks
    or sequences.
    """
    def decorate(func):
        dispatcher = njit(**JIT)(func)

        @intrinsic
        def call(typingctx, fn, *args):
            sig = next((s for s in signatures if s.args == tuple(args)), None)
            if not isinstance(fn, types.Integer) or sig is None:
                raise TypingError(f"{func.__name__} called with {args}, not with the types of "
                                  f"one of its declared signatures {signatures}")

            def codegen(context, builder, signature, llargs):
                conv = context.call_conv
                fnty = conv.get_function_type(sig.return_type, sig.args)
                ptr = builder.inttoptr(llargs[0], fnty.as_pointer())
                status, res = conv.call_function(builder, ptr, sig.return_type, sig.args,
                                                 cgutils.unpack_tuple(builder, llargs[1]))
                with cgutils.if_unlikely(builder, status.is_error):
                    conv.return_status_propagate(builder, status)
                return res

            # numba passes *args to the codegen as one tuple
            return sig.return_type(fn, types.StarArgTuple.from_types(args)), codegen

        _outlined[call] = dispatcher
        return call

    return decorate


def _compile_outlined(function, sig):
    """Compile (or load from the disk cache) the version ``sig`` of the outlined ``function``;
    returns its address (numba's calling convention)."""
    dispatcher = _outlined[function]
    dispatcher.compile(sig)
    cres = dispatcher.overloads[sig.args]
    return cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name)
