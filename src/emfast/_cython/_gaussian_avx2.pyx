"""The kernels of :mod:`emfast._cython._gaussian`, compiled for x86-64 with AVX2 and FMA.

Same source (``_gaussian_impl.pxi``), same contract; ``emfast._config`` imports this module
instead of the baseline one when the CPU has AVX2 and FMA (and no AVX-512). A vector holds
4 rows of a block instead of 2 and multiply-adds are fused (one rounding), so results may
differ from the baseline module in the last bits, never in meaning, and are bit-identical
for any thread count like the baseline's.
"""

include "_gaussian_impl.pxi"
