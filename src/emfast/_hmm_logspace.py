"""Exact log-space forward-backward for the few sequences the scaled kernels flag.

The compiled HMM kernels run scaled (per-frame max-shifted emission likelihoods, normalised
alphas). When a state's scaled forward mass falls below the double range while it could
still matter (structural zeros in the transitions, left-right models: the lost path may be
the only one left later), they stop on that sequence, mark its log-likelihood +inf
("recompute me") and add nothing of it to their sums (see LOST_REL in
_cython/_hmm_impl.pxi). emfast.kernels then recomputes exactly those sequences here and adds
their contributions after the kernel's sums, in sequence order, so the totals do not depend
on the thread count.

NumPy, one frame per step (the K x K work of a frame vectorised): flagged sequences are rare
-- the kernels flag only when the lost mass could reach 2^-73 of the likelihood -- so a
compiled log-space twin of every kernel, in both backends, is not worth its weight.
"""

import numpy as np

FLAGGED = np.inf        # the kernels' seq_ll marker of a sequence to recompute here


def _logsumexp(a, axis):
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return np.squeeze(np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True)) + m, axis)


def _logs(startprob, transmat):
    with np.errstate(divide="ignore"):
        return np.log(startprob), np.log(transmat)


def forward(le, lsp, lA):
    """(T, K) log alphas of one sequence: log p(x_0..t, z_t = k)."""
    la = np.empty_like(le)
    la[0] = lsp + le[0]
    for t in range(1, len(le)):
        la[t] = _logsumexp(la[t - 1][:, None] + lA, 0) + le[t]
    return la


def forward_backward(le, startprob, transmat):
    """One sequence's (T, K) log-emissions -> (loglik, gamma (T, K), xi summed (K, K)).
    An impossible sequence gives (-inf, zeros, zeros) like the kernels."""
    lsp, lA = _logs(startprob, transmat)
    T, K = le.shape
    la = forward(le, lsp, lA)
    ll = float(_logsumexp(la[-1], 0))
    if not np.isfinite(ll):
        return ll, np.zeros((T, K)), np.zeros((K, K))
    lb = np.zeros_like(le)
    xi = np.zeros((K, K))
    for t in range(T - 1, 0, -1):
        nxt = le[t] + lb[t]                         # log b_t(j) beta_t(j)
        lx = la[t - 1][:, None] + lA + nxt[None, :] - ll
        xi += np.exp(lx)
        lb[t - 1] = _logsumexp(lA + nxt[None, :], 1)
    gamma = np.exp(la + lb - ll)
    return ll, gamma, xi


def filtered(le, startprob, transmat):
    """One sequence -> (loglik, (T, K) p(z_t | x_0..t)); rows from an impossible frame on
    are 0, like the kernels."""
    lsp, lA = _logs(startprob, transmat)
    la = forward(le, lsp, lA)
    norm = _logsumexp(la, 1)
    with np.errstate(invalid="ignore"):
        out = np.where(np.isfinite(norm)[:, None], np.exp(la - norm[:, None]), 0.0)
    return float(norm[-1]), out


def flagged(seq_ll):
    """Indices of the sequences a kernel left for recomputation, in sequence order."""
    return np.flatnonzero(seq_ll == FLAGGED)
