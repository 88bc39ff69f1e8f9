"""Cython + OpenMP kernel of the E-step of Gaussian models with missing values.

The contract (shapes, conventions, meaning of every output) is ``missing_estep`` in
``emfast.kernels``; ``tests/reference_missing.py`` is the judge. This file is only about *how*.

The textbook E-step (Little & Rubin, ch. 11) regresses the missing coordinates M of a row on
its observed ones O through Sigma_OO^-1. This kernel works from the precision matrix
Lambda = Sigma^-1 instead, which needs a factor of Lambda_MM (m x m, m = number missing)
rather than of Sigma_OO (o x o): with d_O = x_O - mu_O and b = Lambda_MO d_O,

    E[x_M | x_O] - mu_M = d_M = -Lambda_MM^-1 b,     Cov[x_M | x_O] = Lambda_MM^-1,
    d_O' Sigma_OO^-1 d_O = d_O' Lambda_OO d_O + d_M' b,
    log det Sigma_OO = log det Lambda_MM - log det Lambda.

A row with nothing missing is the plain Gaussian density; a row with everything missing has
density 1 (it carries no information).

Rows are processed in fixed blocks (``emfast._layout``: the rule both backends share). Per block and component k, the rows centred on mu_k with
zeros in their missing places form Z (B, D). Per row, Lambda_k times its row of Z (only the
observed columns of the symmetric Lambda_k are read) holds both Lambda_OO d_O (at O) and b
(at M), and the factor of Lambda_MM comes from its missing
pattern, computed again only when the pattern differs from the previous row's (emfast's
estimators sort the rows by pattern, so each pattern is factored about once per group); the
two triangular solves give d_M, which is written into Z's missing places. After the
log-sum-exp over components each row of Z is scaled by sqrt(w r) and one dsyrk per block adds
Z'Z to the second moments; the conditional covariances are added once per run of rows with
the same pattern, weighted by the run's sum of w r.

Determinism: the blocks are split into contiguous groups whose number depends only on the
shapes; each group adds its blocks in order into its own buffer (runs of a pattern end at a
group's end), groups run in parallel, and the group buffers are summed in group order.
Results are bit-identical for every thread count.
"""

# Everything is in _missing_impl.pxi, which _missing_avx2.pyx includes too.
include "_missing_impl.pxi"
