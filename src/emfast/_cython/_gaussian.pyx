"""Cython + OpenMP kernels for Gaussian mixtures: log-densities and the fused E-step pass.

The contract (shapes, conventions, meaning of every output) is the docstring of
``emfast.kernels``; ``tests/reference.py`` is the judge. This file is only about *how*.

Rows are processed in fixed blocks of ``BLOCK`` (256) rows. Per block (the arithmetic is
explicit SIMD in ``_gaussian_simd.h``, one vector = 2, 4 or 8 consecutive rows by build):

1. load the rows transposed, feature-major (D, BLOCK), as float64 (also for float32 ``X``:
   all arithmetic is float64), padded with zero rows of weight 0 to a whole number of
   two-vector steps (for a small X, estep_blocks does this once per fit and the E-steps
   read its copy);
2. log-densities of every row under every component into (K, BLOCK):
   full: per component, the rows centred on its mean times its Cholesky factor U_k, 8
   (AVX-512) or 4 columns of U at a time for two row vectors (16 or 8 independent
   accumulators; AVX-512 with 5 <= D <= 12: all D columns in one tile), summing the
   squares as they come; with D <= 3 all in registers; with D <= 48 each row is centred
   as it is loaded, not stored centred first; tied:
   the rows centred once on the mean of the means and transformed once by U, then squared
   distances to (mu_k - center) U; diag/spherical:
   sum_i ((x_i - mu_i) / sigma_i)^2, even and odd features in separate sums;
3. per row, log-sum-exp with the row max subtracted (vector exp and log, no libm call),
   turned in place into w_n * r_nk;
4. (E-step only) nk, s1 and s2 centred on the current means: full/tied as the lower
   triangle of sum_n r_nk z z^T with z = (1, x_n - mu_k) in register tiles of 4 x 4 (AVX-512)
   or 4 x 2 accumulators (triangles on the diagonal), whose first column is nk and s1
   (full and tied with D <= 16: z and r_nk z formed in registers from the block, nothing
   stored; with D <= 48: z so, only r_nk z stored);
   diag/spherical four features at a time.

``weighted_stats`` is the same pass with the caller's responsibilities (e.g. HMM state
posteriors) transposed into the (K, BLOCK) buffer in place of steps 2-3: same blocks,
groups and scratch; ``log_prob`` is steps 1-3 written out row-major.

Determinism: the blocks are split into contiguous groups whose number depends only on
the shapes; each group adds its blocks in order into its own buffer, groups run in
parallel, and the group buffers are summed in group order. Inside a block every sum has a
fixed order (row vectors in order, lanes folded by halving). Results are bit-identical for
every thread count. ``log_prob`` has no cross-row sums at all.
"""

# Everything is in _gaussian_impl.pxi, which _gaussian_avx2.pyx and _gaussian_avx512.pyx
# include too.
include "_gaussian_impl.pxi"
