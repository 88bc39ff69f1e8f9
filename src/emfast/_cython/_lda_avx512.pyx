"""The kernels of :mod:`emfast._cython._lda`, compiled for x86-64 with AVX-512 (F, DQ, VL):
vectors of 8 doubles, K in steps of 8.

Same source (``_lda_impl.pxi``), same contract; ``emfast._config`` imports this module when
the CPU has AVX-512. Results may differ from the other builds in the last bits, never in
meaning, and are bit-identical for any thread count.
"""

include "_lda_impl.pxi"
