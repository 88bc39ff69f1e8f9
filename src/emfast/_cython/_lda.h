/* emfast: the arithmetic of the LDA kernels (_lda_impl.pxi) as explicit SIMD with GCC/Clang
 * vector extensions: the vector type and helpers of _gaussian_simd.h (one vector is 8
 * doubles with AVX-512, 4 with AVX2, 2 with SSE2).
 *
 * Layout: every K-vector (a row of exp_topic_word transposed, a document's e, gamma, the
 * sums) is K_pad = K rounded up to a multiple of 8 doubles, the lanes from K on 0 in the
 * rows and in e: every loop over K is a straight vector loop, and the padding adds exact
 * zeros to every dot product and sum.
 *
 * Both passes of the E-step are the same weighted sum (emfast_lda_wsum): for a document,
 * acc = sum_j c_j R_j / (e . R_j + eps) over the rows R_j of its words; for a word, the same
 * over the e rows of its documents with x the word's row. Rows go four at a time: four dot
 * products in independent chains, then one update of acc with the four rows.
 *
 * Determinism: every sum has an order fixed by this code (rows in order, lanes folded by
 * gv_hsum), never by the compiler (no -ffast-math), the thread count or addresses.
 */
#ifndef EMFAST_LDA_H
#define EMFAST_LDA_H

#include <math.h>
#include <stdint.h>

#include "_gaussian_simd.h"

#define EMFAST_LDA_PAD 8     /* K_pad is a multiple of this: of every build's vector width */

/* psi(x) for x > 0, lane by lane: below 6, psi(x + 6) - sum_{i<6} 1/(x + i), the sum as one
 * quotient Q'(x) / Q(x) of Q = prod_{i<6} (x + i) (two divisions in all where six
 * reciprocals took seven; T1's E-step 7% faster); from 6 on, psi(x) itself. psi(y),
 * y >= 6, by the asymptotic series log y - 1/(2y) - sum_k B_2k / (2k y^2k) to y^-14
 * (truncation < 2e-13 at y = 6). The Numba backend's _digamma, the same arithmetic.
 * |error| < 1e-12 max(|psi(x)|, 0.1) on [1e-6, 1e300] (tests/test_lda_kernels.py); NaN
 * stays NaN, +inf gives +inf. */
G_INLINE emfast_gv lda_psi(emfast_gv x)
{
    emfast_gv one = gv_set(1.0), six = gv_set(6.0), zero = gv_set(0.0);
    emfast_gi small = (emfast_gi) (x < six);
    emfast_gv xs = gv_sel(small, x, six);   /* bounded: Q(6) = 332640 */
    emfast_gv q = xs, dq = one;
    for (int i = 1; i < 6; i++) {
        emfast_gv t = xs + (double) i;
        dq = dq * t + q;
        q = q * t;
    }
    emfast_gv shift = gv_sel(small, dq / q, zero);
    emfast_gv y = gv_sel(small, x + 6.0, x);
    emfast_gv r = one / y, z = r * r;
    emfast_gv p = gv_set(1.0 / 12.0);
    p = -691.0 / 32760.0 + z * p;
    p = 1.0 / 132.0 + z * p;
    p = -1.0 / 240.0 + z * p;
    p = 1.0 / 252.0 + z * p;
    p = -1.0 / 120.0 + z * p;
    p = 1.0 / 12.0 + z * p;
    return (gv_log_ge1(y) - 0.5 * r) - z * p - shift;
}

static inline double emfast_lda_psi1(double x)
{
    return lda_psi(gv_set(x))[0];
}

/* OUT: out[i] = psi(x[i]), i < n (the tests' window on lda_psi). */
static void emfast_lda_digamma(const double* x, int64_t n, double* out)
{
    int64_t i = 0;
    for (; i + EMFAST_GW <= n; i += EMFAST_GW)
        gv_st(out + i, lda_psi(gv_ld(x + i)));
    for (; i < n; i++)
        out[i] = emfast_lda_psi1(x[i]);
}

/* OUT: e = exp(psi(g) - psi(sum_{k<K} g)) on the K_pad lanes, 0 from lane K on (where g
 * holds anything positive). Each value <= 1 (clamped: psi increases, g_k <= sum g). */
static void emfast_lda_exp_dirichlet(const double* g, int K, int Kp, double* e)
{
    emfast_gv t = gv_set(0.0);
    int k;
    for (k = 0; k + EMFAST_GW <= K; k += EMFAST_GW)
        t += gv_ld(g + k);
    double total = gv_hsum(t);
    for (; k < K; k++)
        total += g[k];
    emfast_gv psi_total = gv_set(emfast_lda_psi1(total)), zero = gv_set(0.0);
    for (k = 0; k < Kp; k += EMFAST_GW) {
        emfast_gv d = lda_psi(gv_ld(g + k)) - psi_total;
        emfast_gv v = emfast_gv_exp_nonpos(gv_sel((emfast_gi) (d < zero), d, zero));
        emfast_gi lane = {0};
        for (int l = 0; l < EMFAST_GW; l++)
            lane[l] = k + l < K ? -1 : 0;
        gv_st(e + k, gv_sel(lane, v, zero));
    }
}

G_INLINE double lda_dot(const double* a, const double* b, int Kp)
{
    emfast_gv s = gv_ld(a) * gv_ld(b);
    for (int k = EMFAST_GW; k < Kp; k += EMFAST_GW)
        s += gv_ld(a + k) * gv_ld(b + k);
    return gv_hsum(s);
}

/* acc (K_pad, overwritten) = sum_{j<n} c[j] R_j / (x . R_j + eps), R_j = base + idx[j] K_pad.
 * IN: x (K_pad); counts c of type T; rev: take the rows from the last (a document's fixed
 * point alternates, so that each step starts on the rows the last one left in L1: its 145
 * rows of 448 bytes at K = 50 overflow L1, and in one order every row came from L2). Four
 * rows per step: their dot products in four chains, then acc += f0 R0 + f1 R1 + f2 R2 +
 * f3 R3 (one load and store of acc per four rows). */
#define EMFAST_DEFINE_LDA_WSUM(NAME, T)                                                        \
    static void NAME(const double* x, const double* base, const int32_t* idx, const T* c,     \
                     int64_t n, int Kp, double eps, int rev, double* acc)                     \
    {                                                                                         \
        int64_t j = 0;                                                                        \
        int64_t s = rev ? -1 : 1, o = rev ? n - 1 : 0;   /* row j is o + s j */              \
        int k;                                                                                \
        for (k = 0; k < Kp; k += EMFAST_GW)                                                   \
            gv_st(acc + k, gv_set(0.0));                                                      \
        for (; j + 4 <= n; j += 4) {                                                          \
            int64_t j0 = o + s * j, j1 = j0 + s, j2 = j1 + s, j3 = j2 + s;                    \
            const double* r0 = base + (int64_t) idx[j0] * Kp;                                 \
            const double* r1 = base + (int64_t) idx[j1] * Kp;                                 \
            const double* r2 = base + (int64_t) idx[j2] * Kp;                                 \
            const double* r3 = base + (int64_t) idx[j3] * Kp;                                 \
            emfast_gv xv = gv_ld(x);                                                          \
            emfast_gv s0 = xv * gv_ld(r0), s1 = xv * gv_ld(r1);                               \
            emfast_gv s2 = xv * gv_ld(r2), s3 = xv * gv_ld(r3);                               \
            for (k = EMFAST_GW; k < Kp; k += EMFAST_GW) {                                     \
                xv = gv_ld(x + k);                                                            \
                s0 += xv * gv_ld(r0 + k);                                                     \
                s1 += xv * gv_ld(r1 + k);                                                     \
                s2 += xv * gv_ld(r2 + k);                                                     \
                s3 += xv * gv_ld(r3 + k);                                                     \
            }                                                                                 \
            double f0 = (double) c[j0] / (gv_hsum(s0) + eps);                                 \
            double f1 = (double) c[j1] / (gv_hsum(s1) + eps);                                 \
            double f2 = (double) c[j2] / (gv_hsum(s2) + eps);                                 \
            double f3 = (double) c[j3] / (gv_hsum(s3) + eps);                                 \
            for (k = 0; k < Kp; k += EMFAST_GW)                                               \
                gv_st(acc + k, gv_ld(acc + k) + ((f0 * gv_ld(r0 + k) + f1 * gv_ld(r1 + k))    \
                                                 + (f2 * gv_ld(r2 + k) + f3 * gv_ld(r3 + k))));\
        }                                                                                     \
        for (; j < n; j++) {                                                                  \
            int64_t j0 = o + s * j;                                                           \
            const double* r0 = base + (int64_t) idx[j0] * Kp;                                 \
            double f0 = (double) c[j0] / (lda_dot(x, r0, Kp) + eps);                          \
            for (k = 0; k < Kp; k += EMFAST_GW)                                               \
                gv_st(acc + k, gv_ld(acc + k) + f0 * gv_ld(r0 + k));                          \
        }                                                                                     \
    }

EMFAST_DEFINE_LDA_WSUM(emfast_lda_wsum_f64, double)
EMFAST_DEFINE_LDA_WSUM(emfast_lda_wsum_f32, float)

/* One document's fixed point (at most max_iter steps; see emfast.kernels).
 * IN: its n words' ids and counts; BT (V, K_pad) exp_topic_word transposed and padded.
 * IN/OUT: g (K_pad; lanes >= K anything positive) gamma; e (K_pad) exp(E[log theta]) of g.
 * acc (K_pad) scratch. */
#define EMFAST_DEFINE_LDA_DOC(NAME, WSUM, T)                                                  \
    static void NAME(const int32_t* ids, const T* c, int64_t n, const double* BT, int K,     \
                     int Kp, double alpha, int64_t max_iter, double tol, double eps,          \
                     double* g, double* e, double* acc)                                       \
    {                                                                                         \
        for (int64_t it = 0; it < max_iter; it++) {                                           \
            WSUM(e, BT, ids, c, n, Kp, eps, (int) (it & 1), acc);                             \
            emfast_gv change = gv_set(0.0);                                                   \
            for (int k = 0; k < Kp; k += EMFAST_GW) {                                         \
                emfast_gv old = gv_ld(g + k);                                                 \
                emfast_gv new_ = alpha + gv_ld(e + k) * gv_ld(acc + k);                       \
                emfast_gv d = new_ - old;                                                     \
                change += gv_sel((emfast_gi) (d < 0.0), -d, d);                               \
                gv_st(g + k, new_);                                                           \
            }                                                                                 \
            emfast_lda_exp_dirichlet(g, K, Kp, e);                                            \
            if (gv_hsum(change) / K < tol)                                                    \
                break;                                                                        \
        }                                                                                     \
    }

EMFAST_DEFINE_LDA_DOC(emfast_lda_doc_f64, emfast_lda_wsum_f64, double)
EMFAST_DEFINE_LDA_DOC(emfast_lda_doc_f32, emfast_lda_wsum_f32, float)

/* sum_{j<n} c[j] log(e . R_j), R_j = BT + ids[j] K_pad: the document's word bound; a count
 * of 0 adds 0 (also where the dot product is 0). */
#define EMFAST_DEFINE_LDA_BOUND(NAME, T)                                                      \
    static double NAME(const int32_t* ids, const T* c, int64_t n, const double* BT, int Kp,  \
                       const double* e)                                                       \
    {                                                                                         \
        double b = 0.0;                                                                       \
        for (int64_t j = 0; j < n; j++)                                                       \
            if (c[j] != 0)                                                                    \
                b += (double) c[j] * log(lda_dot(e, BT + (int64_t) ids[j] * Kp, Kp));         \
        return b;                                                                             \
    }

EMFAST_DEFINE_LDA_BOUND(emfast_lda_bound_f64, double)
EMFAST_DEFINE_LDA_BOUND(emfast_lda_bound_f32, float)

/* OUT: out[c] = psi(a[c]) - psi(sum a) (its exp when do_exp), c < C; a (C) > 0. */
static void emfast_lda_dirichlet_row(const double* a, int64_t C, int do_exp, double* out)
{
    double total = 0.0;
    int64_t c;
    for (c = 0; c < C; c++)
        total += a[c];
    emfast_lda_digamma(a, C, out);
    double psi_total = emfast_lda_psi1(total);
    for (c = 0; c < C; c++) {
        double d = out[c] - psi_total;
        out[c] = do_exp && d > 0.0 ? 0.0 : d;   /* the exp's argument, clamped as in e */
    }
    if (do_exp) {
        for (c = 0; c + EMFAST_GW <= C; c += EMFAST_GW)
            gv_st(out + c, emfast_gv_exp_nonpos(gv_ld(out + c)));
        for (; c < C; c++)
            out[c] = emfast_exp_nonpos(out[c]);
    }
}

#endif
