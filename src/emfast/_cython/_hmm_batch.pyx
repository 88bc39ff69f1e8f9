"""Cython + OpenMP kernel of ``emfast.fit_many_hmm``: Baum-Welch of many small Gaussian
HMMs in one call, one problem per thread at a time.

The contract (arguments, layouts, status codes) is the argument list of
:func:`fit_many_hmm` below and ``emfast.hmm_batch``; ``tests/reference_hmm_batch.py``
(NumPy, log space) and ``emfast.hmm.GaussianHMM`` fitted problem by problem are the judges.
Each problem starts from the parameters GaussianHMM's own initialisation gives: the caller
draws its random numbers (startprob and transmat, the k-means++ first rows and uniforms)
and the kernel makes the means and covariances from them (_start_emissions:
GaussianEmission.init's k-means restarts on the sorted rows, with the GMM batch kernel's
k-means++ and Lloyd of _kmeans_batch.pxi, and the data's covariance), or the caller gives
them (draw_of -1: GaussianHMM's own start, where the kernel's k-means would not be its).
A k-means++ round short of distinct rows, or a cluster emptied by Lloyd, ends the problem
with status FALLBACK. Per iteration the kernel runs, serially within the problem:

* the log-emissions of the problem's frames (all four covariance types), into per-thread
  (N, K) scratch that then holds alphas and posteriors;
* the scaled forward-backward of each sequence in order -- the estimators' own
  single-sequence passes (_forward, _backward of _hmm_scaled.pxi), so the same
  lost-precision rule: a sequence they would flag for the log-space recompute (seq_ll
  +inf), or an impossible one, ends the problem with status FALLBACK;
* the posterior-weighted statistics about the current means, and GaussianEmission's
  M-step with hmmlearn's priors (the formulas of emfast.hmm._emissions, step for step);
  startprob and transmat from the counts with their Dirichlet priors;
* hmmlearn's monitor rule (stop at n_iter, or when the gain is below tol).

What GaussianHMM resolves with a warning (a covariance that is not, or nearly not,
positive definite, a full or tied M-step denominator <= 0) ends the problem with status
FALLBACK too; the caller then fits it with GaussianHMM itself. Problems are independent
and each is serial, so results do not depend on the thread count.
"""

# Everything is in _hmm_batch_impl.pxi, which _hmm_batch_avx2.pyx includes too.
include "_hmm_batch_impl.pxi"
