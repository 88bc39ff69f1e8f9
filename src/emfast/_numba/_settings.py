"""The one place that says how every ``@njit`` in emfast's Numba backend is compiled.

Every kernel module does ``from emfast._numba._settings import JIT`` and decorates with
``@njit(**JIT)`` (plus ``parallel=True`` for the few drivers that ``prange``), so a change of
flags here changes the whole backend at once (stumpy's habit).
"""

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

# cache=True: compiled machine code is kept on disk (__pycache__), so only the first import on a
#             machine pays the compile time.
# nogil=True: kernels release the GIL, so several fits can run from Python threads at once.
# error_model="numpy": a float division by zero gives inf/NaN as NumPy does instead of raising;
#             this also removes the zero checks that would stop loops from vectorising.
# boundscheck=False: indices are computed from validated shapes; checks would block SIMD.
JIT = dict(
    cache=True,
    nogil=True,
    fastmath=FASTMATH,
    error_model="numpy",
    boundscheck=False,
)

# The same without reassoc, for functions whose storing loops multiply three or more factors
# (the HMM backward pass: v = b * beta / c). reassoc lets LLVM group such a product one way
# in the vectorised loop and another in its scalar fallback, which runs when a run-time
# check finds the arrays may overlap -- so the last bit would depend on where the arrays
# lie, and on which thread allocated them.
JIT_ORDERED = dict(JIT, fastmath=FASTMATH - {"reassoc"})
