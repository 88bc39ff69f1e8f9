"""Cython + OpenMP kernels for hidden Markov models: scaled forward-backward (posteriors,
start and transition counts; or, for diagonal Gaussians, with the emissions and their
statistics fused in), log-space Viterbi, and the causal forward filter.

The contract (shapes, conventions, meaning of every output) is ``emfast.kernels``
(hmm_forward_backward, hmm_gaussian_forward_backward,
hmm_viterbi, hmm_filter); ``tests/reference_hmm.py`` is the judge.
This file is only about *how*.

Forward pass, per frame t of a sequence (K small: 4..32):

1. m_t = max_k le[t, k]; b_t = exp(le[t] - m_t) with the vectorisable exp of _fastexp.h
   (the best state has b = 1, so the frame never underflows as a whole);
2. pred = alpha_{t-1} A (alpha_{-1} A := startprob) as K row-axpys of the row-major A,
   four rows at a time; alpha_t = b_t * pred / c_t with c_t = sum(b_t * pred);
3. loglik += log c_t + m_t. c_t == 0 (or a frame whose emissions are all -inf): the
   sequence is impossible: loglik -inf, posteriors 0, nothing added to the counts.
4. lost precision: per frame, a bound on the mass of the states whose scaled mass fell
   below 2^-1000 of the frame (a masked sum; logs only in frames where it could matter).
   A sequence where that mass could reach 2^-73 of the likelihood (see LOST_REL in
   _hmm_impl.pxi: zeros in A and emissions far apart) gets loglik +inf, no backward pass
   and nothing added; emfast.kernels recomputes it in log space (emfast._hmm_logspace)
   and adds it after the kernel's sums, in sequence order.

Backward pass with the same scales, beta_{T-1} = 1; per frame t = T-1 .. 1:
w_t = b_t * beta_t / c_t (0 where alpha_t == 0, see _backward), gamma_t = alpha_t * beta_t,
beta_{t-1} = A w_t as row-axpys of the stored A^T. The expected transition counts are
xi_t(i, j) = alpha_{t-1}[i] A[i, j] w_t[j]; A is the same for every frame, so only
R = sum_t alpha_{t-1} w_t^T is accumulated (rank-4 updates from a 4-frame ring, one pass
over R per four frames, never a T x K x K array), and trans_counts = A * R at the very
end: exact zeros of A stay exact zeros.

Alphas are written straight into the posterior output (and overwritten by gamma on the
way back); when posteriors are not wanted they go to per-thread scratch. b_t is kept for
the backward pass when it fits (CACHE_B_MAX) and recomputed from the stored shift when
not (same bits either way). All scratch is allocated once per thread, sized by the longest
sequence.

Viterbi: log space; per frame a K x K max-plus product as row sweeps with branch-free
selects (strict >, increasing i: ties go to the lowest state), int32 back-pointers in
per-thread (Tmax, K) scratch.

Lane batches (_hmm_lanes.h): one sequence's recursion is a chain, so with K = 4..16 its
K-long loops run at the chain's latency, and with more states its vector loops still end in
horizontal sums and partial vectors. When K <= 64, sequences are taken EMFAST_LANES at a
time (8 in the AVX-512 build, 4 in the AVX2 one, 2 in the baseline one: one SIMD register
of doubles) if their lengths are within 1.25x of each other; the batch's state vectors are
[frame][state] of lane vectors, shorter lanes are masked, and each lane does one
sequence's arithmetic. The last 2..EMFAST_LANES-1 sequences make a short batch (its spare
lanes repeat a sequence and are never added).
Everything else (long or unevenly long sequences, K > 64) runs one sequence at a time.

Gaussian HMMs with diagonal (or spherical) covariances (gaussian_forward_backward): the
kernel computes the log-emissions itself from the rows of X -- a lane batch frame by frame
from its lanes' rows, a single sequence into per-thread (T, K) scratch -- and sums the
posterior-weighted statistics nk, s1, s2 about the means in the backward pass (a lane
batch in rank-4 blocks of frames, per lane), so no (T, K) array is written or read and the
rows of X are read while in cache. Those sums travel in the same group slots as the counts.

Determinism: the sequences are cut, in order, into units (a lane batch of up to
EMFAST_LANES sequences or one sequence, by a rule that reads the lengths and K only,
_plan_units), and the units into G = min(U, 64) contiguous groups. A group adds its
sequences' log-likelihoods in sequence order, a single sequence's counts straight into the
group's slot and a lane batch's counts to per-lane sums that are reduced, lane by lane,
into the slot at the end of the group; groups run in parallel (dynamic schedule), and the
slots are summed in group order afterwards. Results are bit-identical for every thread
count.
"""

# Everything is in _hmm_impl.pxi, which _hmm_avx2.pyx includes too.
include "_hmm_impl.pxi"
