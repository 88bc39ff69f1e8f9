"""Cython + OpenMP kernels for Gaussian mixtures: log-densities and the fused E-step pass.

The contract (shapes, conventions, meaning of every output) is the docstring of
``emfast.kernels``; ``tests/reference.py`` is the judge. This file is only about *how*.

Rows are processed in fixed blocks of ``BLOCK`` rows. Per block:

1. load the rows as float64 (also for float32 ``X``: all arithmetic is float64);
2. weighted log-densities of every row under every component into a BLOCK x K buffer;
3. per row, log-sum-exp with the row max subtracted, turned in place into w_n * r_nk;
4. (E-step only) accumulate nk, s1 and s2 centred on the current means.

Log-densities (step 2):

* diag/spherical, and full with small D: the block is transposed to (D, BLOCK) and every
  inner loop runs over the rows of the block (long and contiguous, so it vectorises);
* tied, and full with larger D: rows are centred once on ``center`` (the mean of the
  means) and transformed by U with one dgemm for a chunk of components; the distance
  to component k is then ||(x - c) U_k - (mu_k - c) U_k||^2. Centring on c removes the
  data's common offset; the rest is the same computation scikit-learn does.

Statistics (step 4), three ways chosen once per call:

* "dense" (D <= DENSE_MAX_D, K >= DENSE_MIN_K): per row, vectorised over the K components, into a
  component-minor layout. Few features means many components overlap, and the work per
  (row, component) is too small for anything but straight vector loops.
* "sparse": per row, only the components with a non-zero responsibility (after the
  log-sum-exp cut-off most are exactly 0 when components are separated).
* "blas" (full/tied, D >= BLAS_MIN_D): per component, the rows with a non-zero
  responsibility are gathered as sqrt(w r) (x - mu_k) and added with one dsyrk.
* "cols" (``weighted_stats`` below BLAS_MIN_D or diag/spherical): per component, every
  statistic is a sum down the block's feature-major columns, as explicit vector code
  with a fixed order (``_colstats.h``).

``weighted_stats`` is the same pass with the caller's responsibilities (e.g. HMM state
posteriors) in place of steps 2-3: same blocks, groups, scratch and final unpacking.

Determinism: the blocks are split into contiguous groups whose number depends only on
the shapes; each group adds its blocks in order into its own buffer, groups run in
parallel, and the group buffers are summed in group order. Results are bit-identical
for every thread count. ``log_prob`` has no cross-row sums at all.
"""

# Everything is in _gaussian_impl.pxi, which _gaussian_avx2.pyx includes too.
include "_gaussian_impl.pxi"
