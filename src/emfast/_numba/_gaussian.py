"""Numba backend of the Gaussian kernels (contract: :mod:`emfast.kernels`).

Exports plain Python functions, called positionally by ``emfast.kernels`` with validated,
C-contiguous arrays:

    estep_stats(X, sample_weight, log_const, means, prec_chol, cov_code, nk, s1, s2, n_threads,
                blocks=None, n_groups=0)
    weighted_stats(X, resp, means, cov_code, nk, s1, s2, n_threads)
    log_prob(X, log_const, means, prec_chol, cov_code, out, out_norm, resp, n_threads)

and ``estep_blocks`` and ``estep_groups`` (the E-step's group bounds, for passes over X in
pieces), as the Cython backend does.

Layout of the work (DESIGN.md "Numerics", "Threads"):

* Rows are processed in fixed blocks of ``BLOCK`` rows. A block is first copied *transposed*
  into a float64 scratch ``Xt`` (D, B): every inner loop then runs over the rows of the block,
  contiguous and long (B = 256), so LLVM vectorises it for the host CPU whatever D and K are,
  and float32 input is widened to float64 once per element.
* Per block: log-densities into a (K, B) scratch, log-sum-exp with the row max subtracted, and
  the responsibilities folded straight into centred float64 statistics. No (N, K) array.
  ``weighted_stats`` (given responsibilities, e.g. HMM posteriors) loads its (N, K) weights
  transposed into the same (K, B) scratch and shares the statistics code (:func:`_stats_block`)
  and the grouping with the E-step.
* Determinism: the blocks are split into ``G`` contiguous groups by a rule that does not look at
  the thread count (:func:`_n_groups`); ``prange`` runs over groups, each group sums its blocks
  in order into its own slot, and the slots are summed serially in group order. The result is
  bit-identical for any number of threads.
* The four covariance types reduce to two families: full and tied are the same code with a
  per-component or a shared Cholesky factor (offset ``k*D*D`` or 0), diag and spherical are the
  same code with a per-feature or a shared precision (stride 1 or 0). Each driver exists once
  per family (``_estep_tri_kernel``, ``_estep_diag_kernel``, ...), compiled only for the family
  and dtypes a fit uses: full / tied pass ``prec_chol`` and ``s2`` as stacked (D, D) blocks,
  2-D, diag / spherical flat, 1-D, and the helpers branch on that ``ndim``, which numba knows
  when it compiles them, so the other family's code is never compiled (a cold start pays
  seconds per family).
"""

import math

import numpy as np
from llvmlite import ir
from numba import njit, prange
from numba.core import types
from numba.extending import intrinsic

from emfast._layout import group_offsets, n_groups
from emfast._numba._launch import run
from emfast._numba._settings import (IN1, IN2, JIT, OUT1, OUT2, X_TYPES, array_arg,
                                     as_output, outlined, parallel_driver)

__all__ = ["estep_stats", "estep_blocks", "estep_groups", "weighted_stats", "log_prob"]

BLOCK = 256  # rows per block; the unit of the fixed summation order
MAX_GROUPS = 64  # upper bound on the number of per-group statistics slots
GROUP_STATS_BYTES = 64 << 20  # upper bound on the memory of all slots together

FULL, TIED, DIAG, SPHERICAL = 0, 1, 2, 3


# Declared signatures of the parallel drivers (see _settings.parallel_driver), one per dtype
# of X, each compiled (or loaded from the on-disk cache) the first time a fit calls it with
# that dtype; prec_chol and s2 2-D for full / tied, 1-D for diag / spherical.
# The last arguments of a driver are the addresses of the outlined functions it calls (its
# group function, then _sum_groups; see _settings.outlined), passed by run; the group
# functions' signatures follow their drivers'.
_FN = types.int64


def _estep_sigs(pc, s2):
    return [types.float64(x, IN1, IN1, IN2, pc, types.int64, OUT1, OUT2, s2, types.int64, _FN,
                          _FN) for x in X_TYPES]


def _estep_group_sigs(pc, s2):
    return [types.float64(x, IN1, IN1, IN2, pc, types.int64, types.int64, types.int64, OUT1,
                          OUT2, s2) for x in X_TYPES]


def _weighted_sigs(s2):
    return [types.void(x, IN2, IN2, types.int64, OUT1, OUT2, s2, _FN, _FN) for x in X_TYPES]


def _weighted_group_sigs(s2):
    return [types.void(x, IN2, IN2, types.int64, types.int64, types.int64, OUT1, OUT2, s2)
            for x in X_TYPES]


def _log_prob_sigs(pc):
    return [types.void(x, IN1, IN2, pc, types.int64, OUT2, OUT1, types.boolean, _FN)
            for x in X_TYPES]


def _log_prob_group_sigs(pc):
    return [types.void(x, IN1, IN2, pc, types.int64, OUT2, OUT1, types.boolean, types.int64,
                       types.int64) for x in X_TYPES]


# --------------------------------------------------------------------------------------------
# Vectorisable exp and log
# --------------------------------------------------------------------------------------------
# Without Intel SVML, LLVM turns math.exp / math.log in a loop into one libm call per element
# (measured here: 3 ms per million exps, 6 ms per million logs), which would dominate the E-step
# (N*K exps, N logs). These are branch-free arithmetic that LLVM vectorises (0.4 ms per million).
#
# exp: exp(x) = 2**n * exp(r), n = round(x / ln 2), |r| <= ln(2)/2, exp(r) by its Taylor series to
# r**13 (truncation error < 2e-17 relative). Measured: < 2e-15 relative error on [-40, 0],
# < 3e-14 on [-708, 0]; the kernels are checked to 1e-10.

_EXP_MIN = -708.0  # below this 2**n would be subnormal; exp(x) < 3.4e-308 is returned as 0
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 split in two (Cody-Waite) so n*ln2 stays exact
_LN2_LO = 1.90821492927058770002e-10
_C2, _C3, _C4, _C5, _C6, _C7, _C8, _C9, _C10, _C11, _C12, _C13 = (
    1.0 / math.factorial(i) for i in range(2, 14)
)


@intrinsic
def _int64_bits_as_float64(typingctx, bits):
    """Reinterpret the bits of an int64 as a float64 (a free register move, vectorisable)."""
    if bits != types.int64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@intrinsic
def _float64_bits_as_int64(typingctx, value):
    """Reinterpret the bits of a float64 as an int64 (a free register move, vectorisable)."""
    if value != types.float64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(types.float64), codegen


@njit(**JIT)
def _exp_nonpos(x):
    """exp(x) for x <= 0. IN: x float64 (<= 0, -inf or NaN). OUT: exp(x); NaN stays NaN."""
    xc = _EXP_MIN if x < _EXP_MIN else x  # -inf -> a finite value; the result is zeroed below
    t = xc * _LOG2E + 0.5
    # NaN would make the float->int conversion undefined behaviour in LLVM; NaN still
    # propagates through xc into the polynomial.
    t = t if t == t else 0.0
    n = np.int64(np.floor(t))
    nf = np.float64(n)
    r = (xc - nf * _LN2_HI) - nf * _LN2_LO
    p = _C12 + r * _C13
    p = _C11 + r * p
    p = _C10 + r * p
    p = _C9 + r * p
    p = _C8 + r * p
    p = _C7 + r * p
    p = _C6 + r * p
    p = _C5 + r * p
    p = _C4 + r * p
    p = _C3 + r * p
    p = _C2 + r * p
    p = 1.0 + r * p
    p = 1.0 + r * p
    # 2**n built in the exponent field; n >= -1022 thanks to the clamp above.
    e = p * _int64_bits_as_float64((n + 1023) << 52)
    return 0.0 if x < _EXP_MIN else e


# log: x = 2**e * m with m in [sqrt(1/2), sqrt(2)), log m = 2 atanh(s), s = (m-1)/(m+1),
# |s| < 0.172, by its series to s**21 (truncation < 1e-17). Measured: < 5e-16 relative error.
_SQRT_HALF_BITS = 0x3FE6A09E667F3BCD  # bits of sqrt(1/2): the mantissa range starts there


@njit(**JIT)
def _log_pos(x):
    """log(x) for positive normal x. IN: x float64 (> 0, finite, or NaN). OUT: log(x)."""
    bits = _float64_bits_as_int64(x)
    e = (bits - _SQRT_HALF_BITS) >> 52  # exponent such that m = x / 2**e is in range
    m = _int64_bits_as_float64(bits - (e << 52))
    s = (m - 1.0) / (m + 1.0)
    z = s * s
    p = 1.0 / 19.0 + z * (1.0 / 21.0)
    p = 1.0 / 17.0 + z * p
    p = 1.0 / 15.0 + z * p
    p = 1.0 / 13.0 + z * p
    p = 1.0 / 11.0 + z * p
    p = 1.0 / 9.0 + z * p
    p = 1.0 / 7.0 + z * p
    p = 1.0 / 5.0 + z * p
    p = 1.0 / 3.0 + z * p
    ef = np.float64(e)
    res = (ef * _LN2_HI + 2.0 * s) + (2.0 * s * z * p + ef * _LN2_LO)
    return res if x == x else x  # the bit tricks would turn NaN into a number


# --------------------------------------------------------------------------------------------
# Grouping of blocks (shared by both kernels; must not depend on the thread count)
# --------------------------------------------------------------------------------------------
@njit(**JIT)
def _n_groups(n_blocks, stats_doubles):
    """Number of groups G the blocks are split into.

    IN: n_blocks, stats_doubles (float64 values in one group's statistics slot).
    OUT: G = min(n_blocks, MAX_GROUPS, GROUP_STATS_BYTES // (8 * stats_doubles)), at least 1
    when there is a block. Group g covers blocks [g*n_blocks//G, (g+1)*n_blocks//G).
    """
    by_memory = GROUP_STATS_BYTES // (8 * max(stats_doubles, 1))
    return max(min(n_blocks, MAX_GROUPS, by_memory), min(n_blocks, 1))


# --------------------------------------------------------------------------------------------
# Per-block building blocks. Every loop over b (rows of the block) is the innermost one.
# --------------------------------------------------------------------------------------------
@njit(**JIT)
def _load_block(X, r0, nb, Xt):
    """IN: X (N, D) f32/f64, rows [r0, r0+nb). OUT: Xt[:, :nb] = X[r0:r0+nb].T as float64."""
    D = X.shape[1]
    # Measured (10M values): for short rows, walking X in order is fastest; from D ~ 16 on,
    # writing Xt in order is (up to 3x at D = 50, where the row-order walk writes 50 lines
    # 2 KiB apart per row and defeats write-combining).
    if D < 16:
        for b in range(nb):
            for i in range(D):
                Xt[i, b] = X[r0 + b, i]
    else:
        for i in range(D):
            for b in range(nb):
                Xt[i, b] = X[r0 + b, i]


@njit(**JIT)
def _centre(Xt, nb, mu, diff):
    """IN: Xt (D, B), mu (D,). OUT: diff[:, :nb] = Xt[:, :nb] - mu[:, None]."""
    for i in range(Xt.shape[0]):
        m = mu[i]
        for b in range(nb):
            diff[i, b] = Xt[i, b] - m


@njit(**JIT)
def _maha_tri(diff, nb, pc, off, y, out):
    """Squared Mahalanobis distance with an upper-triangular Cholesky factor.

    IN: diff (D, B) centred rows; pc flat, U[i, j] = pc[off + i*D + j] (upper triangular, so
    U[i, j] = 0 for i > j); y (4, B) scratch. OUT: out[:nb] = ||diff[:, b] @ U||**2.
    """
    D = diff.shape[0]
    for b in range(nb):
        out[b] = 0.0
    # Columns of y = diff.T @ U four at a time, rows of U four at a time: a 4x4 tile costs
    # 8 loads + 4 stores per 16 multiply-adds (vs 2 loads + 1 store per one, column by
    # column), which matters once diff (D x 256) no longer fits in L1. Rows i < j0 + 4 of a
    # column tile include a few zeros of the triangle; that is cheaper than ragged edges.
    j0 = 0
    while j0 + 4 <= D:
        for t in range(4):
            for b in range(nb):
                y[t, b] = 0.0
        for i in range(0, j0 + 4, 4):
            c0 = off + i * D + j0
            c1 = c0 + D
            c2 = c1 + D
            c3 = c2 + D
            u00, u01, u02, u03 = pc[c0], pc[c0 + 1], pc[c0 + 2], pc[c0 + 3]
            u10, u11, u12, u13 = pc[c1], pc[c1 + 1], pc[c1 + 2], pc[c1 + 3]
            u20, u21, u22, u23 = pc[c2], pc[c2 + 1], pc[c2 + 2], pc[c2 + 3]
            u30, u31, u32, u33 = pc[c3], pc[c3 + 1], pc[c3 + 2], pc[c3 + 3]
            for b in range(nb):
                d0 = diff[i, b]
                d1 = diff[i + 1, b]
                d2 = diff[i + 2, b]
                d3 = diff[i + 3, b]
                y[0, b] += (d0 * u00 + d1 * u10) + (d2 * u20 + d3 * u30)
                y[1, b] += (d0 * u01 + d1 * u11) + (d2 * u21 + d3 * u31)
                y[2, b] += (d0 * u02 + d1 * u12) + (d2 * u22 + d3 * u32)
                y[3, b] += (d0 * u03 + d1 * u13) + (d2 * u23 + d3 * u33)
        for b in range(nb):
            out[b] += (y[0, b] * y[0, b] + y[1, b] * y[1, b]) + (
                y[2, b] * y[2, b] + y[3, b] * y[3, b])
        j0 += 4
    # The last D % 4 columns one at a time (all of D when D < 4).
    for j in range(j0, D):
        u0 = pc[off + j]
        for b in range(nb):
            y[0, b] = diff[0, b] * u0
        for i in range(1, j + 1):
            u0 = pc[off + i * D + j]
            for b in range(nb):
                y[0, b] += diff[i, b] * u0
        for b in range(nb):
            out[b] += y[0, b] * y[0, b]


@njit(**JIT)
def _maha_diag(Xt, nb, mu, pc, off, stride, out):
    """Squared Mahalanobis distance with a diagonal precision Cholesky factor.

    IN: Xt (D, B); mu (D,); precision factor of feature i is pc[off + i*stride] (stride 1:
    diag, stride 0: spherical). OUT: out[:nb] = sum_i ((Xt[i, b] - mu[i]) * p_i)**2.
    """
    D = Xt.shape[0]
    for b in range(nb):
        out[b] = 0.0
    # Four features per pass over out: a quarter of the loads/stores of out per feature.
    i = 0
    while i + 4 <= D:
        m0, m1, m2, m3 = mu[i], mu[i + 1], mu[i + 2], mu[i + 3]
        p0 = pc[off + i * stride]
        p1 = pc[off + (i + 1) * stride]
        p2 = pc[off + (i + 2) * stride]
        p3 = pc[off + (i + 3) * stride]
        for b in range(nb):
            t0 = (Xt[i, b] - m0) * p0
            t1 = (Xt[i + 1, b] - m1) * p1
            t2 = (Xt[i + 2, b] - m2) * p2
            t3 = (Xt[i + 3, b] - m3) * p3
            out[b] += (t0 * t0 + t1 * t1) + (t2 * t2 + t3 * t3)
        i += 4
    while i < D:
        m0 = mu[i]
        p0 = pc[off + i * stride]
        for b in range(nb):
            t0 = (Xt[i, b] - m0) * p0
            out[b] += t0 * t0
        i += 1


@njit(**JIT)
def _log_prob_block(Xt, nb, log_const, means, pc, code, lp, diff, y):
    """Weighted log-densities of one block.

    IN: Xt (D, B) the block; log_const (K,); means (K, D); pc prec_chol, 2-D (full / tied:
    numba compiles only that branch) or flat; code cov type; diff (D, B), y (4, B) scratch.
    OUT: lp[k, :nb] = log_const[k] - 0.5 * maha[k, :nb].
    """
    K, D = means.shape
    flat = pc.reshape(pc.size)  # once per block: a reshape costs a call
    for k in range(K):
        row = lp[k]
        if pc.ndim == 2:
            _centre(Xt, nb, means[k], diff)
            _maha_tri(diff, nb, flat, k * D * D if code == FULL else 0, y, row)
        else:
            _maha_diag(Xt, nb, means[k], pc, k * D if code == DIAG else k,
                       1 if code == DIAG else 0, row)
        c = log_const[k]
        for b in range(nb):
            row[b] = c - 0.5 * row[b]


@njit(**JIT)
def _exp_normalise_block(lp, nb, mx, ssum):
    """Log-sum-exp over components, with the row max subtracted.

    IN: lp (K, B) log-probabilities. OUT: lp[k, :nb] = exp(lp - max_k lp) (unnormalised
    responsibilities, the largest is 1 so the sum never underflows), mx[:nb] the row max,
    ssum[:nb] = sum_k of the new lp. logsumexp = mx + log(ssum).
    """
    K = lp.shape[0]
    for b in range(nb):
        mx[b] = lp[0, b]
    for k in range(1, K):
        for b in range(nb):
            v = lp[k, b]
            mx[b] = v if v > mx[b] else mx[b]
    for b in range(nb):
        ssum[b] = 0.0
    for k in range(K):
        for b in range(nb):
            e = _exp_nonpos(lp[k, b] - mx[b])
            lp[k, b] = e
            ssum[b] += e


@njit(**JIT)
def _moments_tri(diff, r, nb, rd, s1k, s2, off):
    """Weighted centred first and second moments of one component (full / tied).

    IN: diff (D, B) rows minus the component mean; r (B,) weighted responsibilities; rd (D, B)
    scratch. OUT (added to): s1k[i] += sum_b r diff[i]; s2[off + i*D + j] += sum_b r diff[i]
    diff[j] for j <= i (the lower triangle; entries above the diagonal may receive partial
    sums too and are overwritten when the kernel mirrors the lower triangle at the end).
    """
    D = diff.shape[0]
    for i in range(D):
        for b in range(nb):
            rd[i, b] = r[b] * diff[i, b]
        acc = 0.0
        for b in range(nb):  # a pure reduction: see _estep_group on why sums store nothing
            acc += rd[i, b]
        s1k[i] += acc
    # 4x4 tiles of s2 on and below the diagonal: 16 dot products over the rows share 8 loads
    # (register blocking; 16 vector accumulators).
    D4 = D - D % 4
    for i0 in range(0, D4, 4):
        for j0 in range(0, i0 + 1, 4):
            _dot_tile4(rd, diff, nb, i0, j0, s2, off + i0 * D + j0, D)
    # The last D % 4 rows, one dot product at a time.
    for i in range(D4, D):
        for j in range(i + 1):
            a0 = 0.0
            for b in range(nb):
                a0 += rd[i, b] * diff[j, b]
            s2[off + i * D + j] += a0


@njit(**JIT)
def _dot_tile4(a, c, nb, i0, j0, s2, base, D):
    """IN: a, c (D, B); OUT (added to): s2[base + p*D + q] += sum_b a[i0+p, b] c[j0+q, b]."""
    s00 = s01 = s02 = s03 = 0.0
    s10 = s11 = s12 = s13 = 0.0
    s20 = s21 = s22 = s23 = 0.0
    s30 = s31 = s32 = s33 = 0.0
    for b in range(nb):
        a0 = a[i0, b]
        a1 = a[i0 + 1, b]
        a2 = a[i0 + 2, b]
        a3 = a[i0 + 3, b]
        c0 = c[j0, b]
        c1 = c[j0 + 1, b]
        c2 = c[j0 + 2, b]
        c3 = c[j0 + 3, b]
        s00 += a0 * c0
        s01 += a0 * c1
        s02 += a0 * c2
        s03 += a0 * c3
        s10 += a1 * c0
        s11 += a1 * c1
        s12 += a1 * c2
        s13 += a1 * c3
        s20 += a2 * c0
        s21 += a2 * c1
        s22 += a2 * c2
        s23 += a2 * c3
        s30 += a3 * c0
        s31 += a3 * c1
        s32 += a3 * c2
        s33 += a3 * c3
    s2[base] += s00
    s2[base + 1] += s01
    s2[base + 2] += s02
    s2[base + 3] += s03
    base += D
    s2[base] += s10
    s2[base + 1] += s11
    s2[base + 2] += s12
    s2[base + 3] += s13
    base += D
    s2[base] += s20
    s2[base + 1] += s21
    s2[base + 2] += s22
    s2[base + 3] += s23
    base += D
    s2[base] += s30
    s2[base + 1] += s31
    s2[base + 2] += s32
    s2[base + 3] += s33


@njit(**JIT)
def _moments_diag(Xt, nb, mu, r, s1k, s2, off, stride):
    """Weighted centred first and squared moments of one component (diag / spherical).

    IN: Xt (D, B); mu (D,); r (B,) weighted responsibilities. OUT (added to):
    s1k[i] += sum_b r (x_i - mu_i); s2[off + i*stride] += sum_b r (x_i - mu_i)**2
    (stride 1: one per feature, diag; stride 0: summed over features, spherical).
    """
    for i in range(Xt.shape[0]):
        m = mu[i]
        a1 = 0.0
        a2 = 0.0
        for b in range(nb):
            d = Xt[i, b] - m
            t = r[b] * d
            a1 += t
            a2 += t * d
        s1k[i] += a1
        s2[off + i * stride] += a2


@njit(**JIT)
def _stats_block(Xt, nb, means, code, W, nk, s1, s2, diff, rd):
    """Weighted centred statistics of one block, all components (E-step and given weights).

    IN: Xt (D, B) the block; means (K, D); code cov type; W (K, B) the weight of row b for
    component k (w * resp in the E-step, the given responsibilities otherwise); diff, rd
    (D, B) scratch. OUT (added to, a group's slot): nk (K,), s1 (K, D), s2 (full / tied: 2-D,
    lower triangles, see :func:`_moments_tri`; numba compiles only that branch; else flat).
    """
    D = Xt.shape[0]
    flat = s2.reshape(s2.size)  # once per block: a reshape costs a call
    for k in range(means.shape[0]):
        r = W[k]
        acc = 0.0
        for b in range(nb):  # a pure reduction (_settings.py: sums store nothing)
            acc += r[b]
        nk[k] += acc
        if s2.ndim == 2:
            _centre(Xt, nb, means[k], diff)
            _moments_tri(diff, r, nb, rd, s1[k], flat, k * D * D if code == FULL else 0)
        else:
            _moments_diag(Xt, nb, means[k], r, s1[k], s2,
                          k * D if code == DIAG else k, 1 if code == DIAG else 0)


# Of every driver with statistics slots, whatever the dtype of X: all its arrays are float64.
_SUM_GROUPS_SIG = types.float64(OUT1, OUT2, array_arg(types.float64, 3, False), OUT2, OUT1, OUT2,
                                OUT1, types.boolean)


@outlined(_SUM_GROUPS_SIG)
def _sum_groups(ll_g, nk_g, s1_g, s2_g, nk, s1, s2, mirror):
    """Serial sum of the group slots in group order: the fixed order behind thread-independence.

    IN: ll_g (G,) per-group log-likelihoods or (0,) (none); nk_g (G, K), s1_g (G, K, D),
    s2_g (G, S). OUT (overwritten): nk, s1, s2 (flat; the lower triangles mirrored onto the
    upper ones when ``mirror``, i.e. full/tied). Returns the sum of ll_g (0.0 if empty).
    """
    G, K, D = s1_g.shape
    has_ll = ll_g.shape[0] > 0
    loglik = 0.0
    nk[:] = 0.0
    s1[:] = 0.0
    s2[:] = 0.0
    for g in range(G):
        # Added inside this loop, which also stores, so it stays one serial chain (a loop
        # of its own would be a reassociated, vectorised reduction: other bits).
        if has_ll:
            loglik += ll_g[g]
        for k in range(K):
            nk[k] += nk_g[g, k]
            for i in range(D):
                s1[k, i] += s1_g[g, k, i]
        for t in range(s2.shape[0]):
            s2[t] += s2_g[g, t]
    if mirror:
        _mirror_lower(s2, D)
    return loglik


# --------------------------------------------------------------------------------------------
# E-step with statistics
# --------------------------------------------------------------------------------------------
@outlined(*_estep_group_sigs(IN2, OUT2), *_estep_group_sigs(IN1, OUT1))
def _estep_group(X, sw, log_const, means, pc, code, blk_lo, blk_hi, nk, s1, s2):
    """Fused E-step over blocks [blk_lo, blk_hi), serially in block order.

    IN: as :func:`_estep`. OUT (added to, this group's slot): nk (K,), s1 (K, D),
    s2 flat (lower triangles for full/tied). Returns sum_n w_n logsumexp_k over the blocks.
    Scratch is allocated once here, per group, never per row or block.
    """
    N, D = X.shape
    K = means.shape[0]
    has_w = sw.shape[0] > 0
    Xt = np.empty((D, BLOCK))
    lp = np.empty((K, BLOCK))
    diff = np.empty((D, BLOCK))
    rd = np.empty((D, BLOCK))
    y = np.empty((4, BLOCK))
    mx = np.empty(BLOCK)
    ssum = np.empty(BLOCK)
    scale = np.empty(BLOCK)
    loglik = 0.0
    for blk in range(blk_lo, blk_hi):
        r0 = blk * BLOCK
        nb = min(BLOCK, N - r0)
        _load_block(X, r0, nb, Xt)
        _log_prob_block(Xt, nb, log_const, means, pc, code, lp, diff, y)
        _exp_normalise_block(lp, nb, mx, ssum)
        # Every sum below (and in _stats_block) is a loop that writes no memory. A loop that
        # also stores would be vectorised behind a run-time aliasing check on the arrays'
        # addresses, and its scalar fallback adds in another order: results would depend on
        # where the arrays happen to lie.
        # Per row: w / sum turns exp(lp - max) into w * resp; then the log-likelihood.
        for b in range(nb):
            w = sw[r0 + b] if has_w else 1.0
            scale[b] = w / ssum[b]
            mx[b] = w * (mx[b] + _log_pos(ssum[b]))
        for b in range(nb):
            loglik += mx[b]
        for k in range(K):  # exp(lp - max) -> w * resp, in place
            for b in range(nb):
                lp[k, b] *= scale[b]
        _stats_block(Xt, nb, means, code, lp, nk, s1, s2, diff, rd)
    return loglik


@njit(**JIT)
def _mirror_lower(s2, D):
    """IN/OUT: s2 flat stack of (D, D) matrices; copies each lower triangle onto the upper."""
    for base in range(0, s2.shape[0], D * D):
        for i in range(D):
            for j in range(i):
                s2[base + j * D + i] = s2[base + i * D + j]


def _estep(X, sw, log_const, means, pc, code, nk, s1, s2, G, fn, sum_fn):
    """Fused E-step and centred sufficient statistics over all rows.

    IN: X (N, D) f32/f64; sw (N,) or (0,) (all weights 1); log_const (K,); means (K, D);
    pc prec_chol (2-D, full / tied; flat, diag / spherical); code 0 full, 1 tied, 2 diag,
    3 spherical; G >= 1 the number of groups (estep_stats: :func:`_estep_n_groups`'s).
    OUT (overwritten): nk (K,); s1 (K, D); s2 as pc (both triangles, full / tied).
    Returns loglik = sum_n w_n logsumexp_k(log_const[k] - 0.5 maha[n, k]). fn, sum_fn: the
    addresses of _estep_group and _sum_groups (passed by run).
    """
    N, D = X.shape
    K = means.shape[0]
    S = s2.size
    n_blocks = (N + BLOCK - 1) // BLOCK
    nk_g = np.zeros((G, K))
    s1_g = np.zeros((G, K, D))
    s2_g = np.zeros((G,) + s2.shape)
    ll_g = np.zeros(G)
    for g in prange(G):
        ll_g[g] = _estep_group(fn, X, sw, log_const, means, pc, code,
                               g * n_blocks // G, (g + 1) * n_blocks // G,
                               as_output(nk_g[g]), as_output(s1_g[g]), as_output(s2_g[g]))
    return _sum_groups(sum_fn, as_output(ll_g), as_output(nk_g), as_output(s1_g),
                       as_output(s2_g.reshape((G, S))), nk, s1, as_output(s2.reshape(S)),
                       s2.ndim == 2)


_SUMS = (_sum_groups, [_SUM_GROUPS_SIG] * len(X_TYPES))
_estep_tri_kernel = parallel_driver(
    *_estep_sigs(IN2, OUT2), calls=[(_estep_group, _estep_group_sigs(IN2, OUT2)), _SUMS])(_estep)
_estep_diag_kernel = parallel_driver(
    *_estep_sigs(IN1, OUT1), calls=[(_estep_group, _estep_group_sigs(IN1, OUT1)), _SUMS])(_estep)


# --------------------------------------------------------------------------------------------
# Statistics for given responsibilities
# --------------------------------------------------------------------------------------------
@outlined(*_weighted_group_sigs(OUT2), *_weighted_group_sigs(OUT1))
def _weighted_group(X, resp, means, code, blk_lo, blk_hi, nk, s1, s2):
    """Statistics of blocks [blk_lo, blk_hi) for given weights, serially in block order.

    IN: as :func:`_weighted`. OUT (added to, this group's slot): nk (K,), s1 (K, D),
    s2 flat (lower triangles for full/tied). Scratch is allocated once per group.
    """
    N, D = X.shape
    K = means.shape[0]
    Xt = np.empty((D, BLOCK))
    W = np.empty((K, BLOCK))
    diff = np.empty((D, BLOCK))
    rd = np.empty((D, BLOCK))
    for blk in range(blk_lo, blk_hi):
        r0 = blk * BLOCK
        nb = min(BLOCK, N - r0)
        _load_block(X, r0, nb, Xt)
        _load_block(resp, r0, nb, W)  # (B, K) -> (K, B): one contiguous row per component
        _stats_block(Xt, nb, means, code, W, nk, s1, s2, diff, rd)


def _weighted(X, resp, means, code, nk, s1, s2, fn, sum_fn):
    """Centred sufficient statistics for given responsibilities over all rows.

    IN: X (N, D) f32/f64; resp (N, K) weights; means (K, D); code 0 full, 1 tied, 2 diag,
    3 spherical. OUT (overwritten): nk (K,) = sum_n resp; s1 (K, D); s2 (2-D with both
    triangles for full / tied, flat otherwise). Same blocks, groups and group-order sum as
    the E-step. fn, sum_fn: the addresses of _weighted_group and _sum_groups.
    """
    N, D = X.shape
    K = means.shape[0]
    S = s2.size
    n_blocks = (N + BLOCK - 1) // BLOCK
    G = _n_groups(n_blocks, K + K * D + S)
    nk_g = np.zeros((G, K))
    s1_g = np.zeros((G, K, D))
    s2_g = np.zeros((G,) + s2.shape)
    for g in prange(G):
        _weighted_group(fn, X, resp, means, code, g * n_blocks // G, (g + 1) * n_blocks // G,
                        as_output(nk_g[g]), as_output(s1_g[g]), as_output(s2_g[g]))
    _sum_groups(sum_fn, as_output(np.empty(0)), as_output(nk_g), as_output(s1_g),
                as_output(s2_g.reshape((G, S))), nk, s1, as_output(s2.reshape(S)), s2.ndim == 2)


_weighted_tri_kernel = parallel_driver(
    *_weighted_sigs(OUT2), calls=[(_weighted_group, _weighted_group_sigs(OUT2)), _SUMS]
)(_weighted)
_weighted_diag_kernel = parallel_driver(
    *_weighted_sigs(OUT1), calls=[(_weighted_group, _weighted_group_sigs(OUT1)), _SUMS]
)(_weighted)


# --------------------------------------------------------------------------------------------
# Log-probabilities / responsibilities
# --------------------------------------------------------------------------------------------
@outlined(*_log_prob_group_sigs(IN2), *_log_prob_group_sigs(IN1))
def _log_prob_group(X, log_const, means, pc, code, out, out_norm, resp, blk_lo, blk_hi):
    """Log-probabilities or responsibilities of blocks [blk_lo, blk_hi).

    IN: as :func:`_log_prob`. OUT: the rows of those blocks in out (N, K) and
    out_norm (N,) (not touched, and no exp / log computed, when out_norm has shape (0,)).
    Scratch is allocated once per group.
    """
    N, D = X.shape
    K = means.shape[0]
    want_norm = out_norm.shape[0] > 0
    Xt = np.empty((D, BLOCK))
    lp = np.empty((K, BLOCK))
    diff = np.empty((D, BLOCK))
    y = np.empty((4, BLOCK))
    mx = np.empty(BLOCK)
    ssum = np.empty(BLOCK)
    for blk in range(blk_lo, blk_hi):
        r0 = blk * BLOCK
        nb = min(BLOCK, N - r0)
        _load_block(X, r0, nb, Xt)
        _log_prob_block(Xt, nb, log_const, means, pc, code, lp, diff, y)
        if not resp:
            for b in range(nb):
                for k in range(K):
                    out[r0 + b, k] = lp[k, b]
        if not want_norm:
            continue
        _exp_normalise_block(lp, nb, mx, ssum)
        for b in range(nb):
            out_norm[r0 + b] = mx[b] + _log_pos(ssum[b])
        if resp:
            for b in range(nb):
                inv = 1.0 / ssum[b]
                for k in range(K):
                    out[r0 + b, k] = lp[k, b] * inv


def _log_prob(X, log_const, means, pc, code, out, out_norm, resp, fn):
    """Per-row, per-component weighted log-probabilities or responsibilities.

    IN: X (N, D) f32/f64; log_const (K,); means (K, D); pc prec_chol (as for the E-step);
    code cov type;
    resp bool. OUT (overwritten): out (N, K) log_const[k] - 0.5 maha (resp False) or the
    responsibilities (resp True); out_norm (N,) the per-row logsumexp, or (0,): not wanted
    (resp False only; the log-sum-exp is then skipped). Rows are independent,
    so any split gives the same bits; the grouping only bounds the scratch allocations.
    fn: the address of _log_prob_group.
    """
    N = X.shape[0]
    n_blocks = (N + BLOCK - 1) // BLOCK
    G = min(n_blocks, MAX_GROUPS)
    for g in prange(G):
        _log_prob_group(fn, X, log_const, means, pc, code, out, out_norm, resp,
                        g * n_blocks // G, (g + 1) * n_blocks // G)


_log_prob_tri_kernel = parallel_driver(
    *_log_prob_sigs(IN2), calls=[(_log_prob_group, _log_prob_group_sigs(IN2))])(_log_prob)
_log_prob_diag_kernel = parallel_driver(
    *_log_prob_sigs(IN1), calls=[(_log_prob_group, _log_prob_group_sigs(IN1))])(_log_prob)


# --------------------------------------------------------------------------------------------
# Python entry points (called positionally by emfast.kernels)
# --------------------------------------------------------------------------------------------
def _by_family(a, cov_code, D):
    """prec_chol or s2 as its family's driver takes it: stacked (D, D) blocks for full / tied,
    flat for diag / spherical (a view)."""
    return a.reshape(-1, D) if cov_code == FULL or cov_code == TIED else a.reshape(-1)


def estep_blocks(X, n_threads):
    """X's blocks as estep_stats loads them, for its ``blocks`` argument: None, these kernels
    keep no copy (the Cython backend's one saves its block transposition)."""
    return None


def _estep_slot_doubles(D, K, cov_code):
    """Doubles of one group's slot of the E-step: loglik, nk, s1 and s2 by type."""
    S = K * D * D if cov_code == FULL else (D * D if cov_code == TIED else
                                             K * D if cov_code == DIAG else K)
    return 1 + K + K * D + S


def _estep_n_groups(N, D, K, cov_code):
    """The number of groups of the E-step over N rows (a function of the shapes only)."""
    return n_groups((N + BLOCK - 1) // BLOCK, _estep_slot_doubles(D, K, cov_code))


def estep_groups(N, D, K, cov_code):
    """Row offsets (G + 1,) of the groups estep_stats splits N rows into: group g is rows
    [offsets[g], offsets[g + 1]). estep_stats with n_groups=1 on one group's rows gives
    that group's sums exactly (the sum of one group's slot starts from 0), so adding the
    groups' results in group order from 0 reproduces estep_stats on all N rows bit for
    bit: a pass over X in pieces can keep the in-memory result."""
    return group_offsets(N, BLOCK, _estep_slot_doubles(D, K, cov_code))


def estep_stats(X, sample_weight, log_const, means, prec_chol, cov_code, nk, s1, s2, n_threads,
                blocks=None, n_groups=0):
    """Fused E-step statistics; see :func:`emfast.kernels.gaussian_estep_stats`.

    IN: X (N, D) f32/f64; sample_weight (N,) or (0,); log_const (K,); means (K, D); prec_chol
    by type; cov_code 0..3; n_threads >= 1 (clamped to NUMBA_NUM_THREADS, with a warning);
    blocks: estep_blocks(X), always None here; n_groups > 0: that many groups (at most one
    per block; see :func:`estep_groups`) instead of the shapes' rule. OUT (overwritten): nk
    (K,), s1 (K, D), s2 by type. Returns loglik (float).
    """
    N, D = X.shape
    G = (_estep_n_groups(N, D, means.shape[0], cov_code) if n_groups <= 0
         else max(1, min(n_groups, (N + BLOCK - 1) // BLOCK)))
    pc, s2 = _by_family(prec_chol, cov_code, D), _by_family(s2, cov_code, D)
    kernel = _estep_tri_kernel if pc.ndim == 2 else _estep_diag_kernel
    return run(kernel, n_threads, X, sample_weight, log_const, means, pc, cov_code, nk, s1, s2,
               G)


def weighted_stats(X, resp, means, cov_code, nk, s1, s2, n_threads):
    """Statistics for given responsibilities; see :func:`emfast.kernels.gaussian_weighted_stats`.

    IN: X (N, D) f32/f64; resp (N, K) float64; means (K, D); cov_code 0..3; n_threads >= 1
    (clamped to NUMBA_NUM_THREADS, with a warning). OUT (overwritten): nk (K,), s1 (K, D),
    s2 by type.
    """
    s2 = _by_family(s2, cov_code, X.shape[1])
    kernel = _weighted_tri_kernel if s2.ndim == 2 else _weighted_diag_kernel
    run(kernel, n_threads, X, resp, means, cov_code, nk, s1, s2)


def log_prob(X, log_const, means, prec_chol, cov_code, out, out_norm, resp, n_threads):
    """Log-probabilities or responsibilities; see :func:`emfast.kernels.gaussian_log_prob`.

    IN: as :func:`estep_stats`; resp bool. OUT (overwritten): out (N, K), out_norm (N,), or
    out_norm (0,) when the log-sum-exp is not wanted (resp False only: it is skipped).
    """
    if resp and out_norm.shape[0] == 0 and X.shape[0] > 0:
        raise ValueError("responsibilities need the log-sum-exp: out_norm must have shape (N,)")
    pc = _by_family(prec_chol, cov_code, X.shape[1])
    kernel = _log_prob_tri_kernel if pc.ndim == 2 else _log_prob_diag_kernel
    run(kernel, n_threads, X, log_const, means, pc, cov_code, out, out_norm, bool(resp))
