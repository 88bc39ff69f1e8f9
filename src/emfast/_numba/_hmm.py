"""Numba backend of the HMM kernels (contract: the ``hmm_*`` functions of :mod:`emfast.kernels`).

Exports plain Python functions, called positionally by ``emfast.kernels`` with
validated, C-contiguous float64 arrays (``offsets`` int64, ``path`` int64):

    forward_backward(le, offsets, startprob, transmat, post, start_counts, trans_counts,
                     seq_ll, n_threads) -> total loglik
    gaussian_forward_backward(X, offsets, startprob, transmat, means, prec, log_const,
                              start_counts, trans_counts, seq_ll, nk, s1, s2, n_threads)
        -> total loglik (diagonal-Gaussian emissions computed per sequence into scratch,
           posterior-weighted statistics summed from it: no (T, K) array)
    categorical_forward_backward(sym, offsets, startprob, transmat, emissionprob,
                                 start_counts, trans_counts, seq_ll, counts, n_threads)
        -> total loglik (the same for symbols: log-emissions per sequence, symbol counts)
    viterbi(le, offsets, log_startprob, log_transmat, path, seq_lp, n_threads) -> total log-prob
    forward_filter(le, offsets, startprob, transmat, out, seq_ll, n_threads) -> total loglik
    symbol_counts(sym, w, out, n_threads)

Layout of the work (DESIGN.md "Numerics", "Threads"):

* Scaled forward-backward in probability space. Per frame m_t = max_k le[t, k] and
  b_t = exp(le[t] - m_t) (the largest is 1); alpha_t = (alpha_{t-1} @ A) * b_t normalised by
  its sum c_t; loglik = sum_t (log c_t + m_t). The backward pass uses the same scales:
  v = b_{t+1} * beta_{t+1} / c_{t+1}, beta_t = A @ v, gamma_t = alpha_t * beta_t. Zeros in
  startprob / transmat stay exact zeros (0 * finite = 0).
* The expected transition counts are sum_t alpha_t(i) A(i, j) v_{t+1}(j). A(i, j) does not
  depend on t, so the kernel accumulates the rank-1 updates alpha_t (x) v_{t+1} into a K x K
  slot and multiplies by A once at the end: no T x K x K array, one multiply per entry less
  per frame.
* Only b_t is recomputed in the backward pass (K vectorised exps per frame) instead of being
  stored: the scratch per group is alpha (only when posteriors are not requested; otherwise
  alpha lives in the posterior rows and is overwritten by gamma), m_t and c_t.
* Both mat-vecs are written as ``out = x @ M`` with M row-major (A forward, A^T backward), so
  every inner loop runs over a contiguous row of length K and stores, adds nothing across
  its iterations: no reassociated reduction, the same bits whether or not LLVM vectorises it.
* A sequence whose frame has all emissions -inf or whose scale c_t is 0 is impossible:
  seq_ll = -inf, zero posteriors, no counts. The filter writes the filtered probabilities of
  the frames before the failing one and zeros from it on (causal).
* Determinism: the S sequences are split into G = min(S, MAX_GROUPS) contiguous groups
  (group g = [g*S//G, (g+1)*S//G)), a rule that does not look at the thread count; ``prange``
  runs over groups, each group sums its sequences in order into its own slot, and the slots
  are summed serially in group order. Results are bit-identical for any number of threads.
"""

import numpy as np
from numba import njit, prange
from numba.core import types

from emfast._numba._gaussian import _exp_nonpos
from emfast._numba._launch import run
from emfast._numba._settings import (IN1, IN2, JIT, JIT_ORDERED, OUT1, OUT2, array_arg,
                                     as_output, outlined, parallel_driver)

__all__ = ["forward_backward", "gaussian_forward_backward", "categorical_forward_backward",
           "viterbi", "forward_filter", "symbol_counts"]

MAX_GROUPS = 64  # sequences are split into min(S, MAX_GROUPS) contiguous groups
# The fused kernels' per-sequence emission and statistics loops are slower than the blocked
# kernels run in turn (H1: 5.7 against 4.6 ms; CategoricalHMM.fit on H4: 6.5 against 5.8 ms
# per iteration), so the estimators run those; the fused kernels serve callers who want no
# (T, K) array.
PREFER_FUSED_GAUSSIAN = False
PREFER_FUSED_CATEGORICAL = False
CHUNK = 64  # frames whose emission likelihoods are computed together (one flat exp loop)
_NEG_INF = -np.inf


# Declared signatures (see _settings.parallel_driver): one version of each driver, compiled (or
# loaded from the cache) on its first call. The last argument of a driver (_INT) is the
# address of its group function (_settings.outlined), passed by run, declared beside it.
_OFF = array_arg(types.int64, 1, True)
_PATH = array_arg(types.int64, 1, False)
_INT = types.int64
_FB_SIG = types.float64(IN2, _OFF, IN1, IN2, OUT2, OUT1, OUT2, OUT1, _INT)
_FB_GROUP_SIG = types.float64(IN2, _OFF, IN1, IN2, OUT2, OUT2, _INT, _INT, OUT1, OUT1, OUT2)
_VIT_SIG = types.float64(IN2, _OFF, IN1, IN2, _PATH, OUT1, _INT)
_VIT_GROUP_SIG = types.float64(IN2, _OFF, IN1, IN2, _PATH, _INT, _INT, OUT1)
_FILT_SIG = types.float64(IN2, _OFF, IN1, IN2, OUT2, OUT1, _INT)
_FILT_GROUP_SIG = types.float64(IN2, _OFF, IN1, IN2, OUT2, _INT, _INT, OUT1)
_SYM = array_arg(types.int64, 1, True)
_CFB_SIG = types.float64(_SYM, _OFF, IN1, IN2, IN2, OUT1, OUT2, OUT1, OUT2, _INT)
_CFB_GROUP_SIG = types.float64(_SYM, _OFF, IN1, IN2, OUT2, OUT2, _INT, _INT, OUT1, OUT1, OUT2,
                               OUT2)
_GFB_SIG = types.float64(IN2, _OFF, IN1, IN2, IN2, IN2, IN1, OUT1, OUT2, OUT1, OUT1,
                         OUT2, OUT2, _INT)
_GFB_GROUP_SIG = types.float64(IN2, _OFF, IN1, IN2, OUT2, OUT2, OUT2, IN1, _INT, _INT, OUT1,
                               OUT1, OUT2, OUT1, OUT2, OUT2)
_COUNTS_SIG = types.void(_SYM, IN2, OUT2)


# --------------------------------------------------------------------------------------------
# Per-frame building blocks (K-long loops; every inner loop is contiguous)
# --------------------------------------------------------------------------------------------
@njit(**JIT)
def _vecmat(x, M, out):
    """IN: x (K,), M (K, K) row-major. OUT: out[j] = sum_i x[i] M[i, j], summed in i order.

    No loop here reassociates a sum: the order over i is fixed, so the bits do not depend on
    whether (or how) LLVM vectorises, nor on where the arrays lie.
    K <= 16: register tiles of 8 / 4 outputs (the sums stay in registers across i; LLVM packs
    the 8 scalar chains into vectors). Larger K: one row of M added to out per i (axpy over a
    contiguous row; more independent chains than registers would hold).
    """
    K = x.shape[0]
    if K > 16:
        x0 = x[0]
        for j in range(K):
            out[j] = x0 * M[0, j]
        for i in range(1, K):
            xi = x[i]
            for j in range(K):
                out[j] += xi * M[i, j]
        return
    j0 = 0
    while j0 + 8 <= K:
        s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
        for i in range(K):
            xi = x[i]
            r = M[i]
            s0 += xi * r[j0]
            s1 += xi * r[j0 + 1]
            s2 += xi * r[j0 + 2]
            s3 += xi * r[j0 + 3]
            s4 += xi * r[j0 + 4]
            s5 += xi * r[j0 + 5]
            s6 += xi * r[j0 + 6]
            s7 += xi * r[j0 + 7]
        out[j0] = s0
        out[j0 + 1] = s1
        out[j0 + 2] = s2
        out[j0 + 3] = s3
        out[j0 + 4] = s4
        out[j0 + 5] = s5
        out[j0 + 6] = s6
        out[j0 + 7] = s7
        j0 += 8
    if j0 + 4 <= K:
        s0 = s1 = s2 = s3 = 0.0
        for i in range(K):
            xi = x[i]
            r = M[i]
            s0 += xi * r[j0]
            s1 += xi * r[j0 + 1]
            s2 += xi * r[j0 + 2]
            s3 += xi * r[j0 + 3]
        out[j0] = s0
        out[j0 + 1] = s1
        out[j0 + 2] = s2
        out[j0 + 3] = s3
        j0 += 4
    for j in range(j0, K):
        s0 = 0.0
        for i in range(K):
            s0 += x[i] * M[i, j]
        out[j] = s0


@njit(**JIT)
def _frame_max(row):
    """IN: row (K,). OUT: max_k row[k] (a max is exact in any order)."""
    m = row[0]
    for k in range(1, row.shape[0]):
        v = row[k]
        m = v if v > m else m
    return m


@njit(**JIT)
def _sum(x):
    """IN: x (K,). OUT: sum_k x[k] (a pure reduction: the loop stores nothing)."""
    s = 0.0
    for k in range(x.shape[0]):
        s += x[k]
    return s


@njit(**JIT)
def _emissions(le, t0, n, mch, bch):
    """Shifted emission likelihoods of the n <= CHUNK frames le[t0 : t0 + n].

    OUT: mch[f] = m = max_k le[t0 + f, k]; bch[f*K + k] = exp(le[t0 + f, k] - m) (NaN in a
    frame whose m is -inf; the caller checks m). The exps run as one flat loop over n*K
    values, so they vectorise even when K is tiny.
    """
    K = le.shape[1]
    for f in range(n):
        row = le[t0 + f]
        m = _frame_max(row)
        mch[f] = m
        o = f * K
        for k in range(K):
            bch[o + k] = row[k] - m
    for e in range(n * K):
        bch[e] = _exp_nonpos(bch[e])


# Lost precision: a sequence whose scaled arithmetic may have dropped a path is left to
# emfast._hmm_logspace (its seq_ll is +inf); see LOST_REL in _cython/_hmm_impl.pxi.
LOST_REL = 2.0 ** -1000
LOST_PRETEST = 2.0 ** -999  # c_t <= 1, so a state with a[k] >= this has lost nothing
B_FLOOR = 2.0 ** -1020
LOST_SCALE = 2.0 ** 1000
LOST_LOG2 = 927.0
LOG2E = 1.4426950408889634


@njit(**JIT)
def _rfloor(A):
    """2^927 min A / max A (see LOST_REL), 0 when A has a zero; once per group."""
    lo, hi = A.min(), A.max()
    return lo / hi * 2.0 ** 927 if lo > 0.0 else 0.0


@njit(**JIT)
def _finite(ll):
    """A sequence's log-likelihood neither impossible, NaN nor flagged: its sums wanted."""
    return ll == ll and ll != _NEG_INF and ll != np.inf


@njit(**JIT)
def _lost_mass(a, q, b, o, c):
    """A bound on the mass lost in a frame, times 2^1000: q[k] max(b[o + k], B_FLOOR) summed
    over the states whose scaled mass a[k] = q[k] b[o + k] fell below LOST_REL c."""
    small = False
    for k in range(a.shape[0]):
        small |= a[k] < LOST_PRETEST
    lm = 0.0
    if small:
        thr = c * LOST_REL
        for k in range(a.shape[0]):
            lm += q[k] * LOST_SCALE * max(b[o + k], B_FLOOR) if a[k] < thr else 0.0
    return lm


@njit(**JIT)
def _forward_seq(le, s0, L, sp, A, rf, al, base, wrap, cs, pred, mch, bch):
    """Scaled forward pass of the sequence le[s0 : s0 + L].

    IN: le (T, K); sp (K,) startprob; A (K, K) transmat; pred (K,), mch (CHUNK,),
    bch (CHUNK*K,) scratch.
    OUT: al[base + t] = alpha_t normalised (wrap False), or al[t & 1] (wrap True: only the
    last two rows are kept); cs[t] = c_t when cs has room (cs.shape[0] > 0).
    Returns the log-likelihood, or -inf when the sequence is impossible; then, unless wrap,
    the rows of al from the failing frame on are set to 0. +inf: precision may have been
    lost (see LOST_REL; rf = _rfloor(A)); the sequence is left to log space.
    """
    K = sp.shape[0]
    keep = cs.shape[0] > 0
    ll = 0.0
    lcs = 0.0  # sum_t log c_t
    worst = _NEG_INF  # see LOST_REL
    for t0 in range(0, L, CHUNK):
        n = min(CHUNK, L - t0)
        _emissions(le, s0 + t0, n, mch, bch)
        for f in range(n):
            t = t0 + f
            r = (t & 1) if wrap else base + t
            a = al[r]
            m = mch[f]
            o = f * K
            c = 0.0
            lm = 0.0
            if m != _NEG_INF:
                if t == 0:
                    for k in range(K):
                        a[k] = sp[k] * bch[o + k]
                    c = _sum(a)
                    lm = _lost_mass(a, sp, bch, o, c)
                else:
                    _vecmat(al[((t - 1) & 1) if wrap else r - 1], A, pred)
                    for k in range(K):
                        a[k] = pred[k] * bch[o + k]
                    c = _sum(a)
                    lm = _lost_mass(a, pred, bch, o, c)
            if c == 0.0 and worst > _NEG_INF:  # impossible after a loss: to log space
                return np.inf
            if c == 0.0:  # every path has probability 0 (NaN input propagates instead)
                if not wrap:
                    for u in range(base + t, base + L):
                        for k in range(K):
                            al[u, k] = 0.0
                return _NEG_INF
            inv = 1.0 / c
            for k in range(K):
                a[k] *= inv
            if keep:
                cs[t] = c
            lc = np.log(c)
            lcs += lc
            ll += lc + m
            if lm / c > rf:  # see LOST_REL
                worst = max(worst, LOG2E * (np.log(lm / c) + lcs))
    if worst - LOG2E * lcs > LOST_LOG2:
        return np.inf
    return ll


# --------------------------------------------------------------------------------------------
# Forward-backward
# --------------------------------------------------------------------------------------------
@njit(**JIT_ORDERED)
def _fb_seq(le, s0, L, sp, A, rf, At, al, base, has_post, cs, pred, mch, bch, v, beta,
            start, acc):
    """Forward-backward of the sequence le[s0 : s0 + L].

    IN: le, sp, A as :func:`_fb_kernel`; At = A^T; al the alpha storage (the posterior array
    with base = s0 when has_post, else scratch with base = 0); cs (>= L,), pred, v, beta
    (K,), mch (CHUNK,), bch (CHUNK*K,) scratch. OUT: al[base : base + L] = posteriors (has_post); added to: start (K,)
    the first frame's posteriors, acc (K, K) sum_t alpha_t(i) v_{t+1}(j).
    Returns the log-likelihood; -inf (zero posteriors, nothing added) when impossible.
    """
    K = sp.shape[0]
    ll = _forward_seq(le, s0, L, sp, A, rf, al, base, False, cs, pred, mch, bch)
    if ll == np.inf:   # left to log space: its rows are rewritten there
        return ll
    if ll == _NEG_INF:
        for u in range(base, base + L):  # rows before the failing frame hold alphas
            for k in range(K):
                al[u, k] = 0.0
        return ll
    # Backward pass. beta_{L-1} = 1, so gamma_{L-1} = alpha_{L-1} (already in place).
    for k in range(K):
        beta[k] = 1.0
    t0 = L  # first frame of the chunk whose emissions are in bch
    for t in range(L - 2, -1, -1):
        u = t + 1
        if u < t0:  # recompute that chunk's b exactly as the forward pass did
            t0 = u - u % CHUNK
            _emissions(le, s0 + t0, min(CHUNK, L - t0), mch, bch)
        # v = b_{t+1} * beta_{t+1} / c_{t+1}
        o = (u - t0) * K
        inv = 1.0 / cs[u]
        for k in range(K):
            v[k] = bch[o + k] * beta[k] * inv
        a = al[base + t]
        # xi: rank-1 update acc += alpha_t (x) v (multiplied by A once, at the end)
        for i in range(K):
            ai = a[i]
            for j in range(K):
                acc[i, j] += ai * v[j]
        # beta_t = A @ v = v @ A^T; gamma_t = alpha_t * beta_t
        _vecmat(v, At, beta)
        if has_post or t == 0:
            for k in range(K):
                a[k] *= beta[k]
    a = al[base]
    for k in range(K):
        start[k] += a[k]
    return ll


@njit(**JIT)
def _fused_scratch(offsets, s_lo, s_hi, K):
    """A fused kernel's scratch for sequences [s_lo, s_hi), sized by the longest: one
    sequence's log-emissions and posteriors (Lmax, K), then _fb_seq's cs, pred, mch, bch,
    v and beta."""
    Lmax = 0
    for s in range(s_lo, s_hi):
        Lmax = max(Lmax, offsets[s + 1] - offsets[s])
    return (np.empty((Lmax, K)), np.empty((Lmax, K)), np.empty(Lmax), np.empty(K),
            np.empty(CHUNK), np.empty(CHUNK * K), np.empty(K), np.empty(K))


@njit(**JIT)
def _sum_counts(ll_g, start_g, acc_g, A, start_counts, trans_counts):
    """The group slots of log-likelihoods, start counts and R summed in group order (the
    fixed order behind thread-independence) into start_counts and trans_counts = A * R;
    returns the total log-likelihood."""
    K = A.shape[0]
    total = 0.0
    start_counts[:] = 0.0
    trans_counts[:] = 0.0
    for g in range(ll_g.shape[0]):
        total += ll_g[g]
        for k in range(K):
            start_counts[k] += start_g[g, k]
        for i in range(K):
            for j in range(K):
                trans_counts[i, j] += acc_g[g, i, j]
    for i in range(K):
        for j in range(K):
            trans_counts[i, j] *= A[i, j]
    return total


@outlined(_FB_GROUP_SIG)
def _fb_group(le, offsets, sp, A, At, post, s_lo, s_hi, seq_ll, start, acc):
    """Forward-backward of sequences [s_lo, s_hi), serially in sequence order.

    IN: as :func:`_fb_kernel`; At = A^T (K, K). OUT: seq_ll[s] for those sequences, their
    posterior rows (when post has rows); added to this group's slot: start (K,), acc (K, K).
    Returns the sum of their log-likelihoods in order (-inf if one is impossible).
    Scratch is allocated once here, sized by the longest sequence of the group.
    """
    K = sp.shape[0]
    rf = _rfloor(A)
    has_post = post.shape[0] > 0
    Lmax = 0
    for s in range(s_lo, s_hi):
        Lmax = max(Lmax, offsets[s + 1] - offsets[s])
    # The alphas go into the posterior rows, or into scratch typed as the same kind of
    # array: one call site of _fb_seq, compiled once instead of once per case.
    al = post if has_post else as_output(np.empty((Lmax, K)))
    cs = np.empty(Lmax)
    pred = np.empty(K)
    mch = np.empty(CHUNK)
    bch = np.empty(CHUNK * K)
    v = np.empty(K)
    beta = np.empty(K)
    total = 0.0
    for s in range(s_lo, s_hi):
        s0 = offsets[s]
        L = offsets[s + 1] - s0
        ll = _fb_seq(le, s0, L, sp, A, rf, At, al, s0 if has_post else 0, has_post, cs, pred,
                     mch, bch, v, beta, start, acc)
        seq_ll[s] = ll
        if ll != np.inf:  # flagged: left to log space
            total += ll
    return total


@parallel_driver(_FB_SIG, calls=[(_fb_group, [_FB_GROUP_SIG])])
def _fb_kernel(le, offsets, sp, A, post, start_counts, trans_counts, seq_ll, fn):
    """Scaled forward-backward over all sequences.

    IN: le (T, K) log-emissions; offsets (S+1,) sequence bounds; sp (K,); A (K, K);
    post (T, K) or (0, K) (no posteriors). OUT (overwritten): post; start_counts (K,);
    trans_counts (K, K); seq_ll (S,). Returns the total log-likelihood. fn: the address of
    _fb_group.
    """
    K = sp.shape[0]
    S = offsets.shape[0] - 1
    At = as_output(np.empty((K, K)))
    for i in range(K):
        for j in range(K):
            At[j, i] = A[i, j]
    G = min(S, MAX_GROUPS)
    ll_g = np.zeros(G)
    start_g = np.zeros((G, K))
    acc_g = np.zeros((G, K, K))
    for g in prange(G):
        ll_g[g] = _fb_group(fn, le, offsets, sp, A, At, post, g * S // G, (g + 1) * S // G,
                            seq_ll, as_output(start_g[g]), as_output(acc_g[g]))
    return _sum_counts(ll_g, start_g, acc_g, A, start_counts, trans_counts)


# --------------------------------------------------------------------------------------------
# Forward-backward with diagonal-Gaussian emissions and their statistics
# --------------------------------------------------------------------------------------------
@njit(**JIT_ORDERED)
def _gauss_log_emission(X, s0, L, muT, pT, lc, le):
    """le[t, k] = lc[k] - 0.5 sum_d ((X[s0 + t, d] - muT[d, k]) pT[d, k])^2, t < L; the
    parameters (D, K) so that the inner loop runs over the states, contiguous."""
    D, K = muT.shape
    for t in range(L):
        x = X[s0 + t]
        row = le[t]
        for k in range(K):
            row[k] = 0.0
        for d in range(D):
            xd = x[d]
            for k in range(K):
                y = (xd - muT[d, k]) * pT[d, k]
                row[k] += y * y
        for k in range(K):
            row[k] = lc[k] - 0.5 * row[k]


@njit(**JIT_ORDERED)
def _gauss_stats(X, s0, L, muT, post, nk, s1T, s2T):
    """Add the statistics of X[s0 : s0 + L] weighted by post[:L] about the means: nk (K,)
    += gamma, s1T (D, K) += gamma (x - mu), s2T (D, K) += gamma (x - mu)^2."""
    D, K = muT.shape
    for t in range(L):
        x = X[s0 + t]
        w = post[t]
        for k in range(K):
            nk[k] += w[k]
        for d in range(D):
            xd = x[d]
            for k in range(K):
                df = xd - muT[d, k]
                gd = w[k] * df
                s1T[d, k] += gd
                s2T[d, k] += gd * df


@outlined(_GFB_GROUP_SIG)
def _gfb_group(X, offsets, sp, A, At, muT, pT, lc, s_lo, s_hi, seq_ll, start, acc, nk, s1T,
               s2T):
    """Sequences [s_lo, s_hi) in order: each one's log-emissions and posteriors in scratch
    sized by the group's longest sequence, its statistics added to this group's slots.
    Returns the sum of their log-likelihoods in order."""
    K = sp.shape[0]
    rf = _rfloor(A)
    le, post, cs, pred, mch, bch, v, beta = _fused_scratch(offsets, s_lo, s_hi, K)
    total = 0.0
    for s in range(s_lo, s_hi):
        s0 = offsets[s]
        L = offsets[s + 1] - s0
        _gauss_log_emission(X, s0, L, muT, pT, lc, le)
        ll = _fb_seq(le, 0, L, sp, A, rf, At, post, 0, True, cs, pred, mch, bch, v, beta,
                     start, acc)
        if _finite(ll):
            _gauss_stats(X, s0, L, muT, post, nk, s1T, s2T)
        seq_ll[s] = ll
        if ll != np.inf:  # flagged: left to log space
            total += ll
    return total


@parallel_driver(_GFB_SIG, calls=[(_gfb_group, [_GFB_GROUP_SIG])])
def _gfb_kernel(X, offsets, sp, A, means, prec, lc, start_counts, trans_counts, seq_ll, nk,
                s1, s2, fn):
    """Forward-backward with diagonal-Gaussian emissions: the outputs of _fb_kernel
    without posteriors, plus nk, s1, s2 (see gaussian_forward_backward). fn: the address of
    _gfb_group."""
    K, D = means.shape
    S = offsets.shape[0] - 1
    At = as_output(np.ascontiguousarray(A.T))
    muT = as_output(np.ascontiguousarray(means.T))
    pT = as_output(np.ascontiguousarray(prec.T))
    G = min(S, MAX_GROUPS)
    ll_g = np.zeros(G)
    start_g = np.zeros((G, K))
    acc_g = np.zeros((G, K, K))
    nk_g = np.zeros((G, K))
    s1_g = np.zeros((G, D, K))
    s2_g = np.zeros((G, D, K))
    for g in prange(G):
        ll_g[g] = _gfb_group(fn, X, offsets, sp, A, At, muT, pT, lc, g * S // G,
                             (g + 1) * S // G, seq_ll, as_output(start_g[g]),
                             as_output(acc_g[g]), as_output(nk_g[g]), as_output(s1_g[g]),
                             as_output(s2_g[g]))
    nk[:] = 0.0
    s1[:] = 0.0
    s2[:] = 0.0
    for g in range(G):               # group order: independent of the thread count
        nk += nk_g[g]
        s1 += s1_g[g].T
        s2 += s2_g[g].T
    return _sum_counts(ll_g, start_g, acc_g, A, start_counts, trans_counts)


# --------------------------------------------------------------------------------------------
# Forward-backward with categorical emissions and their counts
# --------------------------------------------------------------------------------------------
@outlined(_CFB_GROUP_SIG)
def _cfb_group(sym, offsets, sp, A, At, logBT, s_lo, s_hi, seq_ll, start, acc, counts):
    """Sequences [s_lo, s_hi) in order: each one's log-emissions (rows of logBT) and
    posteriors in scratch, its posterior-weighted symbol counts added to counts (F, K).
    Returns the sum of their log-likelihoods in order."""
    K = sp.shape[0]
    rf = _rfloor(A)
    le, post, cs, pred, mch, bch, v, beta = _fused_scratch(offsets, s_lo, s_hi, K)
    total = 0.0
    for s in range(s_lo, s_hi):
        s0 = offsets[s]
        L = offsets[s + 1] - s0
        for t in range(L):
            le[t, :] = logBT[sym[s0 + t]]
        ll = _fb_seq(le, 0, L, sp, A, rf, At, post, 0, True, cs, pred, mch, bch, v, beta,
                     start, acc)
        if _finite(ll):
            for t in range(L):
                row = counts[sym[s0 + t]]
                for k in range(K):
                    row[k] += post[t, k]
        seq_ll[s] = ll
        if ll != np.inf:  # flagged: left to log space
            total += ll
    return total


@parallel_driver(_CFB_SIG, calls=[(_cfb_group, [_CFB_GROUP_SIG])])
def _cfb_kernel(sym, offsets, sp, A, emissionprob, start_counts, trans_counts, seq_ll, counts,
                fn):
    """Forward-backward with categorical emissions: the outputs of _fb_kernel without
    posteriors, plus counts (F, K) (see categorical_forward_backward). fn: the address of
    _cfb_group."""
    K, F = emissionprob.shape
    S = offsets.shape[0] - 1
    At = as_output(np.ascontiguousarray(A.T))
    logBT = as_output(np.empty((F, K)))
    for f in range(F):
        for k in range(K):
            p = emissionprob[k, f]
            logBT[f, k] = np.log(p) if p > 0.0 else _NEG_INF
    G = min(S, MAX_GROUPS)
    ll_g = np.zeros(G)
    start_g = np.zeros((G, K))
    acc_g = np.zeros((G, K, K))
    counts_g = np.zeros((G, F, K))
    for g in prange(G):
        ll_g[g] = _cfb_group(fn, sym, offsets, sp, A, At, logBT, g * S // G, (g + 1) * S // G,
                             seq_ll, as_output(start_g[g]), as_output(acc_g[g]),
                             as_output(counts_g[g]))
    counts[:] = 0.0
    for g in range(G):               # group order: independent of the thread count
        counts += counts_g[g]
    return _sum_counts(ll_g, start_g, acc_g, A, start_counts, trans_counts)


# --------------------------------------------------------------------------------------------
# Causal filter
# --------------------------------------------------------------------------------------------
@outlined(_FILT_GROUP_SIG)
def _filter_group(le, offsets, sp, A, out, s_lo, s_hi, seq_ll):
    """Scaled forward pass of sequences [s_lo, s_hi). OUT: their rows of out (when out has
    rows) and seq_ll. Returns the sum of their log-likelihoods in order."""
    K = sp.shape[0]
    rf = _rfloor(A)
    has_out = out.shape[0] > 0
    ring = np.empty((2, K))
    none = np.empty(0)
    pred = np.empty(K)
    mch = np.empty(CHUNK)
    bch = np.empty(CHUNK * K)
    total = 0.0
    for s in range(s_lo, s_hi):
        s0 = offsets[s]
        L = offsets[s + 1] - s0
        if has_out:
            ll = _forward_seq(le, s0, L, sp, A, rf, out, s0, False, none, pred, mch, bch)
        else:
            ll = _forward_seq(le, s0, L, sp, A, rf, ring, 0, True, none, pred, mch, bch)
        seq_ll[s] = ll
        if ll != np.inf:  # flagged: left to log space
            total += ll
    return total


@parallel_driver(_FILT_SIG, calls=[(_filter_group, [_FILT_GROUP_SIG])])
def _filter_kernel(le, offsets, sp, A, out, seq_ll, fn):
    """Filtered probabilities p(z_t | x_1..t) and log-likelihoods.

    IN: as :func:`_fb_kernel`; out (T, K) or (0, K) (log-likelihoods only).
    OUT (overwritten): out, seq_ll (S,). Returns the total log-likelihood. fn: the address
    of _filter_group.
    """
    S = offsets.shape[0] - 1
    G = min(S, MAX_GROUPS)
    ll_g = np.zeros(G)
    for g in prange(G):
        ll_g[g] = _filter_group(fn, le, offsets, sp, A, out, g * S // G, (g + 1) * S // G,
                                seq_ll)
    total = 0.0
    for g in range(G):
        total += ll_g[g]
    return total


# --------------------------------------------------------------------------------------------
# Viterbi (log space)
# --------------------------------------------------------------------------------------------
@outlined(_VIT_GROUP_SIG)
def _viterbi_group(le, offsets, lsp, lA, path, s_lo, s_hi, seq_lp):
    """Best paths of sequences [s_lo, s_hi). OUT: their path entries and seq_lp.
    Returns the sum of their best log-probabilities in order."""
    K = lsp.shape[0]
    Lmax = 0
    for s in range(s_lo, s_hi):
        Lmax = max(Lmax, offsets[s + 1] - offsets[s])
    back = np.empty((Lmax, K), dtype=np.int32)
    delta = np.empty(K)
    best = np.empty(K)
    total = 0.0
    for s in range(s_lo, s_hi):
        s0 = offsets[s]
        L = offsets[s + 1] - s0
        for k in range(K):
            delta[k] = lsp[k] + le[s0, k]
        for t in range(1, L):
            # best[j] = max_i (delta[i] + lA[i, j]); strict > keeps the lowest i on ties
            bk = back[t]
            d0 = delta[0]
            for j in range(K):
                best[j] = d0 + lA[0, j]
                bk[j] = 0
            for i in range(1, K):
                di = delta[i]
                for j in range(K):
                    cand = di + lA[i, j]
                    if cand > best[j]:
                        best[j] = cand
                        bk[j] = i
            row = le[s0 + t]
            for j in range(K):
                delta[j] = best[j] + row[j]
        q = 0
        for k in range(1, K):
            if delta[k] > delta[q]:
                q = k
        lp = delta[q]
        path[s0 + L - 1] = q
        for t in range(L - 1, 0, -1):
            q = back[t, q]
            path[s0 + t - 1] = q
        seq_lp[s] = lp
        total += lp
    return total


@parallel_driver(_VIT_SIG, calls=[(_viterbi_group, [_VIT_GROUP_SIG])])
def _viterbi_kernel(le, offsets, lsp, lA, path, seq_lp, fn):
    """Most probable state paths. IN: le (T, K); offsets (S+1,); lsp (K,) log startprob;
    lA (K, K) log transmat. OUT (overwritten): path (T,), seq_lp (S,). Returns their sum.
    fn: the address of _viterbi_group."""
    S = offsets.shape[0] - 1
    G = min(S, MAX_GROUPS)
    lp_g = np.zeros(G)
    for g in prange(G):
        lp_g[g] = _viterbi_group(fn, le, offsets, lsp, lA, path, g * S // G, (g + 1) * S // G,
                                 seq_lp)
    total = 0.0
    for g in range(G):
        total += lp_g[g]
    return total


# --------------------------------------------------------------------------------------------
# Weighted symbol counts (categorical emission statistics)
# --------------------------------------------------------------------------------------------
@parallel_driver(_COUNTS_SIG)
def _symbol_counts_kernel(sym, w, out):
    """IN: sym (T,) int64 in [0, F); w (T, K). OUT: out (F, K) = per-symbol sums of the rows
    of w. Rows in G contiguous groups (a function of T only), each summed in order into its
    own slot; the slots are added serially in group order."""
    T, K = w.shape
    F = out.shape[0]
    G = max(1, min((T + 4095) // 4096, MAX_GROUPS))
    slots = np.zeros((G, F, K))
    for g in prange(G):
        sl = slots[g]
        for t in range(g * T // G, (g + 1) * T // G):
            row = sl[sym[t]]
            wt = w[t]
            for k in range(K):
                row[k] += wt[k]
    out[:] = slots[0]
    for g in range(1, G):
        for f in range(F):
            for k in range(K):
                out[f, k] += slots[g, f, k]


# --------------------------------------------------------------------------------------------
# Python entry points (called positionally by emfast.kernels)
# --------------------------------------------------------------------------------------------
def forward_backward(le, offsets, startprob, transmat, post, start_counts, trans_counts,
                     seq_ll, n_threads):
    """Scaled forward-backward; see :func:`emfast.kernels.hmm_forward_backward`.

    IN: le (T, K); offsets (S+1,) int64; startprob (K,); transmat (K, K); post (T, K) or
    (0, K) = no posteriors; n_threads >= 1. OUT (overwritten): post, start_counts (K,),
    trans_counts (K, K), seq_ll (S,). Returns the total log-likelihood (float).
    """
    return run(_fb_kernel, n_threads, le, offsets, startprob, transmat, post, start_counts,
               trans_counts, seq_ll)


def gaussian_forward_backward(X, offsets, startprob, transmat, means, prec, log_const,
                              start_counts, trans_counts, seq_ll, nk, s1, s2, n_threads):
    """Forward-backward with diagonal-Gaussian emissions; see
    :func:`emfast.kernels.hmm_gaussian_forward_backward`. IN: X (T, D); offsets; startprob;
    transmat; means, prec (K, D) (prec = 1 / sigma); log_const (K,). OUT (overwritten):
    start_counts, trans_counts, seq_ll, nk (K,), s1, s2 (K, D). Returns the total
    log-likelihood."""
    return run(_gfb_kernel, n_threads, X, offsets, startprob, transmat, means, prec,
               log_const, start_counts, trans_counts, seq_ll, nk, s1, s2)


def categorical_forward_backward(sym, offsets, startprob, transmat, emissionprob,
                                 start_counts, trans_counts, seq_ll, counts, n_threads):
    """Forward-backward with categorical emissions; see
    :func:`emfast.kernels.hmm_categorical_forward_backward`. IN: sym (T,) int64 in [0, F);
    offsets; startprob; transmat; emissionprob (K, F). OUT (overwritten): start_counts,
    trans_counts, seq_ll, counts (F, K). Returns the total log-likelihood."""
    return run(_cfb_kernel, n_threads, sym, offsets, startprob, transmat, emissionprob,
               start_counts, trans_counts, seq_ll, counts)


def viterbi(le, offsets, log_startprob, log_transmat, path, seq_lp, n_threads):
    """Viterbi paths; see :func:`emfast.kernels.hmm_viterbi`. OUT (overwritten): path (T,)
    int64, seq_lp (S,). Returns the total log-probability of the best paths."""
    return run(_viterbi_kernel, n_threads, le, offsets, log_startprob, log_transmat, path,
               seq_lp)


def forward_filter(le, offsets, startprob, transmat, out, seq_ll, n_threads):
    """Causal filter; see :func:`emfast.kernels.hmm_filter`. OUT (overwritten): out (T, K) or
    (0, K) = log-likelihoods only, seq_ll (S,). Returns the total log-likelihood."""
    return run(_filter_kernel, n_threads, le, offsets, startprob, transmat, out, seq_ll)


def symbol_counts(sym, w, out, n_threads):
    """Weighted symbol counts; see :func:`emfast.kernels.symbol_counts`. OUT: out (F, K)."""
    run(_symbol_counts_kernel, n_threads, sym, w, out)
