"""The kernels of :mod:`emfast._cython._lda`, compiled for x86-64 with AVX2 and FMA.

Same source (``_lda_impl.pxi``), same contract; ``emfast._config`` imports this module
instead of the baseline one when the CPU has AVX2 and FMA. Results may differ from the
baseline module in the last bits, never in meaning, and are bit-identical for any thread
count like the baseline's.
"""

include "_lda_impl.pxi"
