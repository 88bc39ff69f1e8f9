"""The kernels of :mod:`emfast._cython._hmm`, compiled for x86-64 with AVX-512 (F, DQ, VL).

Same source (``_hmm_impl.pxi``), same contract; ``emfast._config`` imports this module
instead of the AVX2 one when the CPU has AVX-512. The forward-backward's lane batches hold
8 sequences (one per double of a 512-bit register) instead of 4, so results may differ from
the other builds in the last bits, never in meaning, and are bit-identical for any thread
count like theirs.
"""

include "_hmm_impl.pxi"
