"""The kernels of :mod:`emfast._cython._discrete`, compiled for x86-64 with AVX-512 (F, DQ,
VL): a categorical row's classes in vectors of 8 doubles (up to 16 classes in two).

Same source (``_discrete_impl.pxi``), same contract; ``emfast._config`` imports this module
when the CPU has AVX-512. Results may differ from the other builds in the last bits, never
in meaning, and are bit-identical for any thread count.
"""

include "_discrete_impl.pxi"
