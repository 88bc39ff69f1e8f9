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

Per pattern (a run of rows with the same missing coordinates; emfast's estimators sort the
rows by pattern, and the factors are computed again only when a row's pattern differs from
the previous row's): Lambda_MM = L D L' (unit L, no square roots on the pivot chain), its
inverse, the conditional covariance C, and log det Lambda_MM, for every component. With data
missing at random nearly every row has its own pattern, and this per-pattern work is then
much of the kernel's time, a chain of short dependent sums that one pattern leaves mostly
idle. So the patterns of a segment of rows (up to 256) are factored together before its
rows, those (of any component) with the same m one per SIMD lane (_missing_lanes.h, compiled
for each m up to 16 with m a constant; larger m one at a time). Lanes do not interact: a
pattern's factor does not depend on the batch it shares. A row's d_M = -C b and a run's C
into the second moments are compiled for each m up to 12 with m a constant, the general
code serving larger m.

Per block of rows (``emfast._layout``: the block and group sizes both backends share) and
component k: the rows centred on mu_k with zeros in their missing places form Z (B, D); one
dgemm gives Z Lambda_k, whose row holds Lambda_OO d_O at O and b at M. Per row, d_M = -C b is
written into Z's missing places. After the log-sum-exp over components each row of Z is
scaled by sqrt(w r) and one dsyrk per block adds Z'Z to the second moments; C is added once
per run of rows with the same pattern, weighted by the run's sum of w r.

One component without per-row outputs (no logp, no resp: EMImputer's iterations): every
r is 1 and only the block's sum of w log p(x_O) counts, so the dgemm goes. A row needs only
b (m dot products with rows of Lambda: d is zero at M), and since a row's Mahalanobis
distance d_O' Sigma_OO^-1 d_O equals d' Lambda d with d filled, the block's weighted sum is
tr(Lambda S) of the S = sum w d d' that the dsyrk forms anyway (into a block buffer, then
added to the second moments): one trace per block instead of a D x D product per row.

Long runs (at least ``emfast._layout.MISSING_RUN_MIN`` rows of one pattern with something
observed, as most rows are once sorted at a moderate missing rate in a few features): the
run is the complete-data E-step in its observed subspace (o features, precision
Sigma_OO^-1 = Lambda_OO - Lambda_OM Lambda_MM^-1 Lambda_MO,
factored once per run and component), through the complete-data kernels' vectorised block
arithmetic (_gaussian_simd.h), followed by a linear map: a row's centred, filled vector is
A d_O with A = [I_O; -Lambda_MM^-1 Lambda_MO], so the run's sums t1 = sum w r d_O and
t2 = sum w r d_O d_O' become s1 += A t1, s2 += A t2 A' + (sum w r) C once per run
(_missing_subspace.h). The rows between long runs keep the per-row path above.

Determinism: the blocks are split into contiguous groups whose number depends only on the
shapes; each group adds its blocks in order into its own buffer (runs of a pattern end at a
group's end), groups run in parallel, and the group buffers are summed in group order
(long runs are cut at a group's ends too). Results are bit-identical for every thread count.
"""

# Everything is in _missing_impl.pxi, which _missing_avx2.pyx and _missing_avx512.pyx include
# too.
include "_missing_impl.pxi"
