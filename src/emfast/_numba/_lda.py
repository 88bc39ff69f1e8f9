"""Numba backend of the LDA kernels: the variational E-step of batch VB and the Dirichlet
expectation (contract: the "Topic models (LDA)" section of :mod:`emfast.kernels`; judge:
``tests/reference_lda.py``).

Exports three plain Python functions, called positionally with validated, C-contiguous
arrays (float arrays all of X's dtype, float32 or float64; integers as stated):

    lda_doc_pass(data, indices, indptr, topic_word_T, doc_topic, alpha, max_iter, tol, eps,
                 doc_exp, cal_bound, n_threads) -> word_bound
    lda_word_pass(cdata, cindices, cindptr, topic_word_T, doc_exp, eps, sstats, n_threads)
    dirichlet_expectation(alpha, out, exp, n_threads)
    digamma(x, out, n_threads)

The document pass runs each document's fixed-point iteration in float64 scratch of K values:
the normaliser of word j is a dot product with row w_j of ``topic_word_T`` (V, K), the
transpose the binding makes once per M-step, so the loops over K read contiguous memory and
vectorise. It leaves each document's final exp(E[log theta]) in ``doc_exp`` (N, K). The word
pass then builds the statistics column by column from the CSC copy of X: column w of S is
written by one thread, from its documents in index order; no per-thread (K, V) buffer.

Documents go in fixed blocks of ``LDA_DOC_BLOCK``, blocks in contiguous groups whose number
depends on the shapes only (:func:`emfast._layout.n_groups`); the word bound is summed per
group and the groups' sums added in group order: bit-identical results for any thread count.
"""

import numpy as np
from numba import njit, prange
from numba.core import types

from emfast._layout import LDA_DOC_BLOCK, LDA_WORD_BLOCK, n_groups
from emfast._numba._gaussian import _exp_nonpos, _log_pos
from emfast._numba._launch import run
from emfast._numba._settings import JIT, array_arg, outlined, parallel_driver

__all__ = ["digamma", "dirichlet_expectation", "lda_doc_pass", "lda_word_pass"]

_I64 = types.int64
_F64 = types.float64
_FLOATS = (types.float64, types.float32)
_IDX = array_arg(types.int32, 1, True)
_PTR = array_arg(types.int64, 1, True)
_E_ALL_IN = array_arg(types.float64, 2, True)
_E_ALL_OUT = array_arg(types.float64, 2, False)


def _in(t, ndim):
    return array_arg(t, ndim, True)


def _out(t, ndim):
    return array_arg(t, ndim, False)


# Declared signatures (see _settings.parallel_driver), one per dtype of X. The drivers' last
# argument is the address of their outlined group function, passed by run.
_DOC_GROUP_SIGS = [_F64(_in(t, 1), _IDX, _PTR, _in(t, 2), _out(t, 2), _F64, _I64, _F64, _F64,
                        _E_ALL_OUT, _I64, _I64, _I64) for t in _FLOATS]
_DOC_SIGS = [_F64(_in(t, 1), _IDX, _PTR, _in(t, 2), _out(t, 2), _F64, _I64, _F64, _F64,
                  _E_ALL_OUT, _I64, _I64, _I64) for t in _FLOATS]
_WORD_GROUP_SIGS = [types.void(_in(t, 1), _IDX, _PTR, _in(t, 2), _E_ALL_IN, _F64, _out(t, 2),
                               _I64, _I64) for t in _FLOATS]
_WORD_SIGS = [types.void(_in(t, 1), _IDX, _PTR, _in(t, 2), _E_ALL_IN, _F64, _out(t, 2), _I64,
                         _I64) for t in _FLOATS]
_DIRICHLET_SIGS = [types.void(_in(t, 2), _out(t, 2), _I64) for t in _FLOATS]
_DIGAMMA_SIGS = [types.void(array_arg(types.float64, 1, True), array_arg(types.float64, 1, False))]


# --------------------------------------------------------------------------------------------
# digamma
# --------------------------------------------------------------------------------------------
# psi(x) = psi(x + 6) - sum_{i<6} 1/(x + i) moves x < 6 to [6, 12); there the asymptotic
# series log x - 1/(2x) - sum_k B_2k / (2k x^2k) to x^-14 leaves < 2e-13 (the next term,
# 3617 / (8160 x^16) at x = 6). Each shift is a select, not a branch: a loop over K digammas
# vectorises. Tested against scipy.special.digamma on [1e-6, 1e300] (tests/test_lda_kernels.py):
# |error| < 1e-12 max(|psi(x)|, 0.1), i.e. relative 1e-12 except near the root 1.4616...
# (x in about [1.33, 1.6]), where no relative bound can hold and the absolute error is < 1e-13.
_PSI_SHIFT = 6.0
# B_2k / (2k) for k = 1..7, the coefficients of x^-2k
_PSI_C = (1.0 / 12.0, -1.0 / 120.0, 1.0 / 252.0, -1.0 / 240.0, 1.0 / 132.0, -691.0 / 32760.0,
          1.0 / 12.0)


@njit(**JIT)
def _digamma(x):
    """psi(x) for x > 0 (float64). NaN stays NaN; +inf gives +inf."""
    shift = 0.0
    for _ in range(6):
        small = x < _PSI_SHIFT
        shift += 1.0 / x if small else 0.0
        x = x + 1.0 if small else x
    r = 1.0 / x
    z = r * r
    p = _PSI_C[6]
    p = _PSI_C[5] + z * p
    p = _PSI_C[4] + z * p
    p = _PSI_C[3] + z * p
    p = _PSI_C[2] + z * p
    p = _PSI_C[1] + z * p
    p = _PSI_C[0] + z * p
    return (_log_pos(x) - 0.5 * r) - z * p - shift


@njit(**JIT)
def _exp_dirichlet(g, e, psi):
    """OUT: e = exp(psi(g) - psi(sum g)) (each <= 1: psi increases and g_k <= sum g).
    IN: g (K,) > 0. psi (K,) scratch. The sum is a loop that stores nothing (one order)."""
    K = g.shape[0]
    total = 0.0
    for k in range(K):
        total += g[k]
    psi_total = _digamma(total)
    for k in range(K):
        psi[k] = _digamma(g[k])
    for k in range(K):
        e[k] = _exp_nonpos(min(psi[k] - psi_total, 0.0))


# --------------------------------------------------------------------------------------------
# Document pass
# --------------------------------------------------------------------------------------------
@njit(**JIT)
def _normaliser(e, row):
    """sum_k e[k] row[k] (a loop that stores nothing: one summation order)."""
    s = 0.0
    for k in range(e.shape[0]):
        s += e[k] * row[k]
    return s


@njit(**JIT)
def _doc_fixed_point(data, indices, lo, hi, BT, g, e, acc, psi, alpha, max_iter, tol, eps):
    """One document's iteration. IN: its terms data/indices[lo:hi]; BT (V, K). IN/OUT: g
    (K,) float64 gamma; e (K,) its exp(E[log theta]). acc, psi (K,) scratch."""
    K = g.shape[0]
    for _ in range(max_iter):
        for k in range(K):
            acc[k] = 0.0
        for j in range(lo, hi):
            row = BT[indices[j]]
            f = np.float64(data[j]) / (_normaliser(e, row) + eps)
            for k in range(K):
                acc[k] += f * row[k]
        change = 0.0
        for k in range(K):
            new = alpha + e[k] * acc[k]
            change += abs(new - g[k])
            g[k] = new
        _exp_dirichlet(g, e, psi)
        if change / K < tol:
            break


@outlined(*_DOC_GROUP_SIGS)
def _doc_group(data, indices, indptr, BT, doc_topic, alpha, max_iter, tol, eps, doc_exp,
               cal_bound, blk_lo, blk_hi):
    """Documents of blocks [blk_lo, blk_hi) in order. IN/OUT: doc_topic rows (gamma). OUT:
    doc_exp rows (the final e). Returns the blocks' word bound (0 unless cal_bound)."""
    N, K = doc_topic.shape
    g, e, acc, psi = np.empty(K), np.empty(K), np.empty(K), np.empty(K)
    bound = 0.0
    for d in range(blk_lo * LDA_DOC_BLOCK, min(blk_hi * LDA_DOC_BLOCK, N)):
        for k in range(K):
            g[k] = doc_topic[d, k]
        _exp_dirichlet(g, e, psi)
        lo, hi = indptr[d], indptr[d + 1]
        _doc_fixed_point(data, indices, lo, hi, BT, g, e, acc, psi, alpha, max_iter, tol, eps)
        for k in range(K):
            doc_topic[d, k] = g[k]
            doc_exp[d, k] = e[k]
        if cal_bound:
            for j in range(lo, hi):
                c = np.float64(data[j])
                if c != 0.0:   # an explicit zero adds 0, even where the normaliser is 0
                    bound += c * np.log(_normaliser(e, BT[indices[j]]))
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
    documents d of column w of e[d, k] c_dw / (sum_k e[d, k] B[k, w] + eps)."""
    K = doc_exp.shape[1]
    acc = np.empty(K)
    for w in range(w_lo, w_hi):
        row = BT[w]
        for k in range(K):
            acc[k] = 0.0
        for j in range(cindptr[w], cindptr[w + 1]):
            e = doc_exp[cindices[j]]
            f = np.float64(cdata[j]) / (_normaliser(e, row) + eps)
            for k in range(K):
                acc[k] += f * e[k]
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
    topic_word_T (V, K) exp(E[log beta]) transposed; alpha, tol, eps floats; max_iter int.
    IN/OUT: doc_topic (N, K) gamma. OUT: doc_exp (N, K) float64, the final exp(E[log theta]).
    Returns the word bound when cal_bound (else 0.0)."""
    N = doc_topic.shape[0]
    G = n_groups((N + LDA_DOC_BLOCK - 1) // LDA_DOC_BLOCK, 1)
    return run(_doc_kernel, n_threads, data, indices, indptr, topic_word_T, doc_topic,
               float(alpha), int(max_iter), float(tol), float(eps), doc_exp, int(cal_bound), G)


def lda_word_pass(cdata, cindices, cindptr, topic_word_T, doc_exp, eps, sstats, n_threads):
    """IN: CSC data (nnz,), cindices (nnz,) int32 document ids, cindptr (V + 1,) int64;
    topic_word_T (V, K); doc_exp (N, K) from lda_doc_pass. OUT: sstats (K, V)."""
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
