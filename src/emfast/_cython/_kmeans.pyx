"""Cython + OpenMP kernels for k-means: k-means++ seeding, Lloyd iterations, and the
Gaussian statistics of a hard assignment (the initial statistics of a mixture).

The contract (shapes, conventions, meaning of every output) is the "k-means" section of
``emfast.kernels``; ``tests/reference_kmeans.py`` is the judge. This file is only about *how*.

Rows are processed in fixed blocks of ``BLOCK`` rows, loaded as float64 (also for float32
``X``). Squared distances of a block to a set of centres are computed one of two ways:

* D < GEMM_MIN_D: the block is transposed to (D, BLOCK) and, per centre, sum_i (x_i - c_i)^2
  runs over the block's rows (long contiguous loops that vectorise); exact, no cancellation;
* D >= GEMM_MIN_D: ||x||^2 - 2 x.c + ||c||^2 (clamped at 0), as scikit-learn computes them,
  x.c for the whole block and all centres from one dgemm, or for up to DIRECT_MAX_K centres
  from a multiply-add kernel over the rows as they lie (emfast_sqdist_rows: dgemm runs
  such thin products far below peak). The row norms are computed once per Lloyd run
  (lloyd_run) or k-means++ run (row_norms, passed to the k-means++ kernels).

One Lloyd pass (lloyd_step) assigns each row to its nearest centre (ties: the lowest index)
and adds its weighted row to that cluster's sum in the same sweep: no (N, K) array, one
read of X per iteration (wide rows 64 at a time where that pays, so the sums find them in
L1). lloyd_run runs the passes and the centre updates of a whole Lloyd run in one call (one
parallel region per pass, buffers allocated once), handing back to Python only when a pass
leaves a cluster empty. k-means++ keeps one (N,) array of each row's distance to its
nearest centre; plusplus_potentials scores the local trials, plusplus_update folds the
chosen one in and returns per-block potentials, from which the next candidates are drawn
without a cumulative sum over all N rows; plusplus_step is one whole round (draw, trials,
fold) in one call, and plusplus_run all the rounds of a seeding from the draws made up front
(the trials' distances kept, so that the chosen one's fold reads no X).

Determinism: the blocks are split into contiguous groups whose number depends only on the
shapes; each group adds its blocks in order into its own buffer, groups run in parallel, and
the group buffers are summed in group order. Per-block outputs (plusplus_update) have no
cross-block sum at all. Results are bit-identical for every thread count.
"""

# Everything is in _kmeans_impl.pxi, which _kmeans_avx2.pyx includes too.
include "_kmeans_impl.pxi"
