"""The kernels of :mod:`emfast._cython._kmeans`, compiled for x86-64 with AVX-512 (F, DQ, VL).

Same source (``_kmeans_impl.pxi``), same contract; ``emfast._config`` imports this module
instead of the AVX2 one when the CPU has AVX-512. The direct distances and the cluster sums
run on 8-lane vectors instead of 4 (twice the multiply-adds per instruction, the 32 vector
registers holding twice the sums), so results may differ from the other builds in the last
bits (lanes folded in another order), never in meaning, and are bit-identical for any
thread count like theirs.
"""

include "_kmeans_impl.pxi"
