"""The kernel of :mod:`emfast._cython._missing`, compiled for x86-64 with AVX-512 (F, DQ, VL).

Same source (``_missing_impl.pxi``), same contract; ``emfast._config`` imports this module
instead of the AVX2 one when the CPU has AVX-512. The long runs of one missing pattern go
through the complete-data block arithmetic (``_gaussian_simd.h``), which then holds 8 rows
per vector instead of 4: results may differ from the other builds in the last bits, never
in meaning, and are bit-identical for any thread count like theirs.
"""

include "_missing_impl.pxi"
