"""The kernels of :mod:`emfast._cython._gaussian`, compiled for x86-64 with AVX-512 (F, DQ, VL).

Same source (``_gaussian_impl.pxi``), same contract; ``emfast._config`` imports this module
instead of the AVX2 one when the CPU has AVX-512. A vector holds 8 rows of a block instead of
4, so results may differ from the other builds in the last bits (the lanes of each sum are
folded in another order), never in meaning, and are bit-identical for any thread count like
theirs.
"""

include "_gaussian_impl.pxi"
