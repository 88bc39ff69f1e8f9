"""Cython + OpenMP kernels for discrete data: categorical (and Bernoulli, its two-category
case) and Poisson mixtures -- the E-step with its statistics, the per-class
log-probabilities, and the Poisson rows' constant -sum_d log(x_nd!).

The contract (shapes, conventions, meaning of every output) is the "discrete" section of
``emfast.kernels``; ``tests/reference_discrete.py`` is the judge. This file is only about *how*.

A block's log-probabilities are built row by row into a (BLOCK, K) scratch, one sum per class
kept in a register: over the row's codes of ``log_prob_T[code, k]`` (categorical: a gather
from K-contiguous rows), or the short dot product of the row's counts with ``log_lam[k]``
(Poisson; a select, not a branch, makes a zero count add 0 also where log(lambda) = -inf).
Then the log-sum-exp with the row max (exp by _fastexp.h, in one flat loop over the block
that the compiler vectorises), and the weighted responsibilities scattered into the group's
slot: into the ``counts`` rows of the row's codes, or ``s1``. No (N, K) array.

Determinism: rows go in blocks of ``BLOCK``, blocks in contiguous groups whose number depends
only on the shapes (emfast._layout.n_groups, the Numba backend's rule too); each group adds
its blocks in order into its own slot, groups run in parallel, and the slots are summed in
group order. Results are bit-identical for every thread count.
"""

# Everything is in _discrete_impl.pxi, which _discrete_avx2.pyx includes too.
include "_discrete_impl.pxi"
