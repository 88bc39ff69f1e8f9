"""Numba backend of the LDA kernels: the variational E-step of batch VB and the Dirichlet
expectation (contract: the "Topic models (LDA)" section of :mod:`emfast.kernels`; judge:
``tests/reference_lda.py``).

Exports four plain Python functions, called positionally with validated, C-contiguous
arrays (X, gamma and the statistics of X's dtype, float32 or float64; the rest as stated):

    lda_doc_pass(data, indices, indptr, topic_word_T, doc_topic, alpha, max_iter, tol, eps,
                 doc_exp, cal_bound, n_threads) -> word_bound
    lda_word_pass(cdata, cindices, cindptr, topic_word_T, doc_exp, eps, sstats, n_threads)
    dirichlet_expectation(alpha, out, exp, n_threads)
    digamma(x, out, n_threads)

exp_topic_word comes transposed, word-major (V, K_pad) in float64 with K padded to a
multiple of 8 by zero lanes (the binding makes it once per M-step): the row of a word is
contiguous and the loops over K_pad vectorise with no remainder. The document pass runs each
document's fixed point in float64 scratch (O(K) and 40 KiB per thread), dropping the topics
the document no longer uses and moving to its live topics' rows gathered topic-major once
they fit (the Cython kernels' rule, _lda.h), and leaves its final exp(E[log theta]) in
``doc_exp`` (N, K_pad). The word pass then builds the statistics column
by column from the CSC copy of X: column w of S is written by one thread, from its documents
in index order; no per-thread (K, V) buffer. Both passes are one weighted sum (_wsum).

Documents go in fixed blocks of ``LDA_DOC_BLOCK``, blocks in contiguous groups whose number
depends on the shapes only (:func:`emfast._layout.n_groups`); the word bound is summed per
group and the groups' sums added in group order: bit-identical results for any thread count.
"""

import numpy as np
from numba import njit, prange
from numba.core import types

from emfast._layout import LDA_DOC_BLOCK, LDA_TOPIC_MAJOR, LDA_WORD_BLOCK, n_groups
from emfast._numba._gaussian import _exp_nonpos, _log_pos
from emfast._numba._launch import run
from emfast._numba._settings import IN2, JIT, OUT2, array_arg, outlined, parallel_driver

__all__ = ["digamma", "dirichlet_expectation", "lda_doc_pass", "lda_word_pass"]

_I64 = types.int64
_F64 = types.float64
_FLOATS = (types.float64, types.float32)
_IDX = array_arg(types.int32, 1, True)
_PTR = array_arg(types.int64, 1, True)


def _in(t, ndim):
    return array_arg(t, ndim, True)


def _out(t, ndim):
    return array_arg(t, ndim, False)


# Declared signatures (see _settings.parallel_driver), one per dtype of X. A driver and its
# outlined group function take the same arguments: the group function's last two are its
# blocks, the driver's the number of groups and the group function's address (passed by
# run).
_DOC_SIGS = [_F64(_in(t, 1), _IDX, _PTR, IN2, _out(t, 2), _F64, _I64, _F64, _F64, OUT2, _I64,
                  _I64, _I64) for t in _FLOATS]
_WORD_SIGS = [types.void(_in(t, 1), _IDX, _PTR, IN2, IN2, _F64, _out(t, 2), _I64, _I64)
              for t in _FLOATS]
_DOC_GROUP_SIGS, _WORD_GROUP_SIGS = _DOC_SIGS, _WORD_SIGS
_DIRICHLET_SIGS = [types.void(_in(t, 2), _out(t, 2), _I64) for t in _FLOATS]
_DIGAMMA_SIGS = [types.void(array_arg(types.float64, 1, True), array_arg(types.float64, 1, False))]


# --------------------------------------------------------------------------------------------
# digamma
# --------------------------------------------------------------------------------------------
# psi(x) = psi(x + 6) - sum_{i<6} 1/(x + i), for every x (no branch, no select: a loop over
# K digammas vectorises), and at y = x + 6 >= 6 the asymptotic series log y - 1/(2y) -
# sum_k B_2k / (2k y^2k) to y^-14 (truncation < 2e-13 at y = 6). Tested against
# scipy.special.digamma on [1e-6, 1e300] (tests/test_lda_kernels.py): |error| < 1e-12
# max(|psi(x)|, 0.1), i.e. relative 1e-12 except near the root 1.4616... (x in about
# [1.33, 1.6]), where no relative bound can hold and the absolute error is < 1e-13.
# B_2k / (2k) for k = 1..7, the coefficients of y^-2k
_PSI_C = (1.0 / 12.0, -1.0 / 120.0, 1.0 / 252.0, -1.0 / 240.0, 1.0 / 132.0, -691.0 / 32760.0,
          1.0 / 12.0)


@njit(**JIT)
def _digamma(x):
    """psi(x) for x > 0 (float64), the Cython kernels' lda_psi: below 6, psi(x + 6) less
    sum_{i<6} 1/(x + i) as one quotient Q'(x) / Q(x), Q = prod_{i<6} (x + i). NaN stays
    NaN; +inf gives +inf. Selects, not a branch, so that a loop of digammas vectorises."""
    small = x < 6.0
    xs = x if small else 6.0          # bounded: Q(6) = 332640
    q, dq = xs, 1.0
    for i in range(1, 6):
        t = xs + i
        dq = dq * t + q
        q = q * t
    shift = dq / q if small else 0.0
    y = x + 6.0 if small else x
    r = 1.0 / y
    z = r * r
    p = _PSI_C[6]
    p = _PSI_C[5] + z * p
    p = _PSI_C[4] + z * p
    p = _PSI_C[3] + z * p
    p = _PSI_C[2] + z * p
    p = _PSI_C[1] + z * p
    p = _PSI_C[0] + z * p
    return (_log_pos(y) - 0.5 * r) - z * p - shift


@njit(**JIT)
def _exp_dirichlet(g, K, e):
    """OUT: e[:K] = exp(psi(g) - psi(sum g)) (each <= 1: psi increases and g_k <= sum g);
    e[K:] (the padding) is left as it is. IN: g (K,) > 0. The sum is a loop that
    stores nothing (one order)."""
    total = 0.0
    for k in range(K):
        total += g[k]
    psi_total = _digamma(total)
    for k in range(K):
        e[k] = _exp_nonpos(min(_digamma(g[k]) - psi_total, 0.0))


# --------------------------------------------------------------------------------------------
# The weighted sum of both passes
# --------------------------------------------------------------------------------------------
@njit(**JIT)
def _dot(a, b):
    """sum_k a[k] b[k] over the K_pad lanes (a loop that stores nothing: one order)."""
    s = 0.0
    for k in range(a.shape[0]):
        s += a[k] * b[k]
    return s


@njit(**JIT)
def _wsum(x, base, idx, c, lo, hi, eps, acc):
    """OUT: acc (K_pad,) = sum_{lo<=j<hi} c[j] R_j / (x . R_j + eps), R_j = base[idx[j]]: a
    document's sums (x its e, the rows of its words) and a word's statistics (x its row, the
    e of its documents) alike. Four rows per step, as the Cython kernel (_lda.h): their dot
    products in four chains, then one update of acc with the four rows."""
    Kp = acc.shape[0]
    for k in range(Kp):
        acc[k] = 0.0
    j = lo
    while j + 4 <= hi:
        r0, r1, r2, r3 = base[idx[j]], base[idx[j + 1]], base[idx[j + 2]], base[idx[j + 3]]
        s0 = s1 = s2 = s3 = 0.0
        for k in range(Kp):       # stores nothing: one summation order
            s0 += x[k] * r0[k]
            s1 += x[k] * r1[k]
            s2 += x[k] * r2[k]
            s3 += x[k] * r3[k]
        f0 = np.float64(c[j]) / (s0 + eps)
        f1 = np.float64(c[j + 1]) / (s1 + eps)
        f2 = np.float64(c[j + 2]) / (s2 + eps)
        f3 = np.float64(c[j + 3]) / (s3 + eps)
        for k in range(Kp):
            acc[k] += (f0 * r0[k] + f1 * r1[k]) + (f2 * r2[k] + f3 * r3[k])
        j += 4
    for j in range(j, hi):
        row = base[idx[j]]
        f = np.float64(c[j]) / (_dot(x, row) + eps)
        for k in range(Kp):
            acc[k] += f * row[k]


# --------------------------------------------------------------------------------------------
# Document pass
# --------------------------------------------------------------------------------------------
@njit(**JIT)
def _doc_fixed_point(data, indices, lo, hi, BT, K, g, e, alpha, max_iter, tol, eps, acc, keep,
                     gl, el, live, slot, cp, f, S):
    """One document's iteration, with the topics it has dropped, word-major and then
    topic-major: the Cython kernels' emfast_lda_doc (_lda.h) says why, when a topic is
    dropped and when the layout changes. IN: its terms data/indices[lo:hi]; BT (V, K_pad).
    IN/OUT: g (K,) float64 gamma; e (K_pad,) its exp(E[log theta]), 0 from lane K on (on
    return that of the final gamma, for every topic). Scratch: acc and keep (K_pad,), gl and
    el (K,), live and slot (K,) int64, cp and f (LDA_TOPIC_MAJOR // 8,), S
    (LDA_TOPIC_MAJOR,)."""
    n = hi - lo
    npad = (n + 7) // 8 * 8
    cmin = 1.0
    for j in range(lo, hi):
        c = np.float64(data[j])
        if 0.0 < c < cmin:
            cmin = c
    thr = min(alpha, 1.0) * cmin * 2.0 ** -64
    for k in range(keep.shape[0]):
        keep[k] = 1.0 if k < K else 0.0
    A, tm, frozen = K, False, 0.0
    for _ in range(max_iter):
        change = 0.0
        if not tm and npad <= LDA_TOPIC_MAJOR // 8 and A * npad <= LDA_TOPIC_MAJOR:
            A = 0
            for k in range(K):
                if keep[k] != 0.0:
                    live[A] = k
                    A += 1
                else:
                    frozen += g[k]
            for j in range(npad):
                cp[j] = np.float64(data[lo + j]) if j < n else 0.0
            for a in range(A):
                base = a * npad
                for j in range(n):
                    S[base + j] = BT[indices[lo + j], live[a]]
                for j in range(n, npad):
                    S[base + j] = 0.0
                slot[a] = a
                gl[a] = g[live[a]]
                el[a] = e[live[a]]
            tm = True
        if tm:
            for j in range(npad):
                f[j] = 0.0
            for a in range(A):
                base, ea = slot[a] * npad, el[a]
                for j in range(npad):
                    f[j] += ea * S[base + j]
            for j in range(npad):
                f[j] = cp[j] / (f[j] + eps)
            b = 0
            for a in range(A):
                base = slot[a] * npad
                s = 0.0
                for j in range(npad):     # stores nothing: one summation order
                    s += f[j] * S[base + j]
                v = el[a] * s
                new = alpha + v
                change += abs(new - gl[a])
                if v < thr:
                    g[live[a]] = new
                    frozen += new
                else:
                    live[b] = live[a]
                    slot[b] = slot[a]
                    gl[b] = new
                    b += 1
            A = b
            total = frozen
            for a in range(A):
                total += gl[a]
            psi_total = _digamma(total)
            for a in range(A):
                el[a] = _exp_nonpos(min(_digamma(gl[a]) - psi_total, 0.0))
        else:
            _wsum(e, BT, indices, data, lo, hi, eps, acc)
            for k in range(K):
                if keep[k] != 0.0:
                    v = e[k] * acc[k]
                    new = alpha + v
                    change += abs(new - g[k])
                    g[k] = new
                    if v < thr:
                        keep[k] = 0.0
                        A -= 1
            _exp_dirichlet(g, K, e)
            if A < K:
                for k in range(K):
                    e[k] *= keep[k]
        if change / K < tol:
            break
    if tm:
        for a in range(A):
            g[live[a]] = gl[a]
    if tm or A < K:                 # else e is already that of the final gamma
        _exp_dirichlet(g, K, e)


@outlined(*_DOC_GROUP_SIGS)
def _doc_group(data, indices, indptr, BT, doc_topic, alpha, max_iter, tol, eps, doc_exp,
               cal_bound, blk_lo, blk_hi):
    """Documents of blocks [blk_lo, blk_hi) in order. IN/OUT: doc_topic rows (gamma). OUT:
    doc_exp rows (the final e, K_pad lanes). Returns the blocks' word bound (0 unless
    cal_bound)."""
    N, K = doc_topic.shape
    Kp = BT.shape[1]
    g, acc, keep = np.empty(K), np.empty(Kp), np.empty(Kp)
    gl, el = np.empty(K), np.empty(K)
    live, slot = np.empty(K, dtype=np.int64), np.empty(K, dtype=np.int64)
    cp, f = np.empty(LDA_TOPIC_MAJOR // 8), np.empty(LDA_TOPIC_MAJOR // 8)
    S = np.empty(LDA_TOPIC_MAJOR)
    bound = 0.0
    for d in range(blk_lo * LDA_DOC_BLOCK, min(blk_hi * LDA_DOC_BLOCK, N)):
        e = doc_exp[d]
        for k in range(K):
            g[k] = doc_topic[d, k]
        for k in range(K, Kp):
            e[k] = 0.0
        _exp_dirichlet(g, K, e)
        lo, hi = indptr[d], indptr[d + 1]
        _doc_fixed_point(data, indices, lo, hi, BT, K, g, e, alpha, max_iter, tol, eps, acc,
                         keep, gl, el, live, slot, cp, f, S)
        for k in range(K):
            doc_topic[d, k] = g[k]
        if cal_bound:
            for j in range(lo, hi):
                c = np.float64(data[j])
                if c != 0.0:   # an explicit zero adds 0, even where the normaliser is 0
                    bound += c * np.log(_dot(e, BT[indices[j]]))
    return bound


@parallel_driver(*_DOC_SIGS, calls=[(_doc_group, _DOC_GROUP_SIGS)])
def _doc_kernel(data, indices, indptr, BT, doc_topic, alpha, max_iter, tol, eps, doc_exp,
                cal_bound, G, fn):
    """The document pass over G groups of blocks; returns the word bound."""
    N = doc_topic.shape[0]
    n_blocks = (N + LDA_DOC_BLOCK - 1) // LDA_DOC_BLOCK
    bound_g = np.zeros(G)
    for g in prange(G):
        bound_g[g] = _doc_group(fn, data, indices, indptr, BT, doc_topic, alpha, max_iter, tol,
                                eps, doc_exp, cal_bound, g * n_blocks // G,
                                (g + 1) * n_blocks // G)
    bound = 0.0
    for g in range(G):
        bound += bound_g[g]
    return bound


# --------------------------------------------------------------------------------------------
# Word pass
# --------------------------------------------------------------------------------------------
@outlined(*_WORD_GROUP_SIGS)
def _word_group(cdata, cindices, cindptr, BT, doc_exp, eps, sstats, w_lo, w_hi):
    """OUT: columns [w_lo, w_hi) of sstats (K, V): S[k, w] = B[k, w] * sum over the
    documents d of column w of e[d, k] c_dw / (e_d . B[:, w] + eps)."""
    K = sstats.shape[0]
    acc = np.empty(BT.shape[1])
    for w in range(w_lo, w_hi):
        row = BT[w]
        _wsum(row, doc_exp, cindices, cdata, cindptr[w], cindptr[w + 1], eps, acc)
        for k in range(K):
            sstats[k, w] = acc[k] * row[k]


@parallel_driver(*_WORD_SIGS, calls=[(_word_group, _WORD_GROUP_SIGS)])
def _word_kernel(cdata, cindices, cindptr, BT, doc_exp, eps, sstats, G, fn):
    """The word pass over G groups of LDA_WORD_BLOCK columns (each column is written by one
    group alone: any split gives the same bits)."""
    V = BT.shape[0]
    n_blocks = (V + LDA_WORD_BLOCK - 1) // LDA_WORD_BLOCK
    for g in prange(G):
        _word_group(fn, cdata, cindices, cindptr, BT, doc_exp, eps, sstats,
                    min(g * n_blocks // G * LDA_WORD_BLOCK, V),
                    min((g + 1) * n_blocks // G * LDA_WORD_BLOCK, V))


# --------------------------------------------------------------------------------------------
# Dirichlet expectation
# --------------------------------------------------------------------------------------------
@parallel_driver(*_DIRICHLET_SIGS)
def _dirichlet_kernel(alpha, out, exp):
    """OUT: out[r] = psi(alpha[r]) - psi(sum alpha[r]) (exp of it when exp != 0); each row on
    its own, its sum in one order."""
    R, C = alpha.shape
    for r in prange(R):
        total = 0.0
        for c in range(C):
            total += np.float64(alpha[r, c])
        psi_total = _digamma(total)
        if exp:
            for c in range(C):
                out[r, c] = _exp_nonpos(min(_digamma(np.float64(alpha[r, c])) - psi_total, 0.0))
        else:
            for c in range(C):
                out[r, c] = _digamma(np.float64(alpha[r, c])) - psi_total


@parallel_driver(*_DIGAMMA_SIGS)
def _digamma_kernel(x, out):
    """OUT: out = psi(x), elementwise (for the accuracy tests)."""
    for i in prange(x.shape[0]):
        out[i] = _digamma(x[i])


# --------------------------------------------------------------------------------------------
# Python entry points (called positionally by emfast.kernels)
# --------------------------------------------------------------------------------------------
def lda_doc_pass(data, indices, indptr, topic_word_T, doc_topic, alpha, max_iter, tol, eps,
                 doc_exp, cal_bound, n_threads):
    """IN: CSR data (nnz,) f32/f64, indices (nnz,) int32, indptr (N + 1,) int64;
    topic_word_T (V, K_pad) float64 exp(E[log beta]) transposed, K padded to a multiple of 8
    by zero lanes; alpha, tol, eps floats; max_iter int. IN/OUT: doc_topic (N, K) gamma.
    OUT: doc_exp (N, K_pad) float64, the final exp(E[log theta]) (0 from lane K on).
    Returns the word bound when cal_bound (else 0.0)."""
    N = doc_topic.shape[0]
    G = n_groups((N + LDA_DOC_BLOCK - 1) // LDA_DOC_BLOCK, 1)
    return run(_doc_kernel, n_threads, data, indices, indptr, topic_word_T, doc_topic,
               float(alpha), int(max_iter), float(tol), float(eps), doc_exp, int(cal_bound), G)


def lda_word_pass(cdata, cindices, cindptr, topic_word_T, doc_exp, eps, sstats, n_threads):
    """IN: CSC data (nnz,), cindices (nnz,) int32 document ids, cindptr (V + 1,) int64;
    topic_word_T (V, K_pad) as lda_doc_pass's; doc_exp (N, K_pad) from lda_doc_pass. OUT:
    sstats (K, V)."""
    V = topic_word_T.shape[0]
    G = n_groups((V + LDA_WORD_BLOCK - 1) // LDA_WORD_BLOCK, 1)
    run(_word_kernel, n_threads, cdata, cindices, cindptr, topic_word_T, doc_exp, float(eps),
        sstats, G)


def dirichlet_expectation(alpha, out, exp, n_threads):
    """IN: alpha (R, C) > 0 f32/f64. OUT: out (R, C) of the same dtype."""
    run(_dirichlet_kernel, n_threads, alpha, out, int(exp))


def digamma(x, out, n_threads):
    """IN: x (M,) float64 > 0. OUT: out (M,) float64 = psi(x), by the kernels' digamma."""
    run(_digamma_kernel, n_threads, x, out)
