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
 * products in independent chains, then one update of acc with the four rows. A document's
 * fixed point (emfast_lda_doc) drops the topics it no longer uses and, once its live topics'
 * rows fit 32 KiB, moves to them gathered topic-major.
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

/* exp(psi(g) - psi_total) lane by lane, psi_total = psi(sum of the gammas): each value <= 1
 * (clamped: psi increases, every g_k <= the sum). */
G_INLINE emfast_gv lda_exp_e(emfast_gv g, emfast_gv psi_total)
{
    emfast_gv zero = gv_set(0.0), d = lda_psi(g) - psi_total;
    return emfast_gv_exp_nonpos(gv_sel((emfast_gi) (d < zero), d, zero));
}

/* OUT: e = exp(psi(g) - psi(sum_{k<K} g)) on the K_pad lanes, 0 from lane K on (where g
 * holds anything positive). */
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
        emfast_gv v = lda_exp_e(gv_ld(g + k), psi_total);
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

/* One document's fixed point (at most max_iter steps; see emfast.kernels), with the topics
 * the document has dropped.
 *
 * Dropping. Under a small doc_topic_prior (scikit-learn's default 1/K from K of about 45 on)
 * most topics of a document die within a few steps: gamma_k = alpha + e_k acc_k with e_k
 * acc_k, the topic's expected count in the document, far below alpha's last bit. A topic is
 * dropped once e_k acc_k < 2^-64 min(alpha, 1) min(c_min, 1), c_min the document's smallest
 * positive count: its gamma is kept as it is and its e leaves the dot products. Then gamma_k
 * is alpha + e_k acc_k to a thousandth of its last bit, and for every word j, e_k B[k, w_j]
 * <= e_k acc_k (u_j + eps) / c_j, so the term the dot product u_j = e . B[:, w_j] loses is
 * below 2^-64 u_j: what the dense iteration would still add is under rounding (on T1 the
 * largest later e_k acc_k of a dropped topic was 1.6 times the value it was dropped at).
 *
 * Two layouts. Word-major, the start: a step is one WSUM over the rows of BT (K_pad lanes; a
 * dropped topic's e lane is 0, so it adds exactly 0). Topic-major, once the live topics' rows
 * fit the scratch (A n_pad <= tm_cap doubles, n_pad = n rounded up to a vector, at most
 * tm_cap / 8): S (A, n_pad), S[a][j] = B[live_a, w_j], gathered then, with zero columns of
 * count 0 as padding; u = sum_a e_a S[a] is a vector loop over words, f = c / (u + eps) one
 * vector division per EMFAST_GW words, acc_a = S[a] . f one dot product per live topic: no
 * per-word horizontal sum or division, and dropped topics cost nothing. (Topic-major from the
 * start was slower where S overflows L1: 0.75x at K = 200 with nothing dropped.)
 *
 * IN: the document's n word ids and counts; BT (V, K_pad). IN/OUT: g (K_pad; lanes >= K
 * anything positive) gamma; e (K_pad) exp(E[log theta]) of g, on return that of the final
 * gamma for every topic, dropped ones too. work: emfast_lda_work_size(Kp, tm_cap) doubles,
 * 64-byte aligned; tm_cap a multiple of 64. Sums in orders this code fixes: u over the live
 * topics in topic order, acc_a over the word vectors in two chains then gv_hsum, gamma's
 * total as the dropped topics' values in the order they dropped plus the live ones in topic
 * order, the mean change likewise. */
static int64_t emfast_lda_work_size(int Kp, int64_t tm_cap)
{
    /* acc, the live lanes' mask, gamma and e of the live topics (K_pad each), the live
     * topics' ids and rows of S (2 K int32 in K_pad doubles); the counts and f (tm_cap / 8
     * each); S */
    return 5 * (int64_t) Kp + tm_cap / 4 + tm_cap;
}

#define EMFAST_DEFINE_LDA_DOC(NAME, WSUM, T)                                                  \
    static void NAME(const int32_t* ids, const T* c, int64_t n, const double* BT, int K,     \
                     int Kp, double alpha, int64_t max_iter, double tol, double eps,          \
                     double* g, double* e, double* work, int64_t tm_cap)                      \
    {                                                                                         \
        const int W = EMFAST_GW;                                                              \
        const int64_t np = (n + W - 1) / W * W, tm_words = tm_cap / 8;                        \
        double *acc = work, *keep = acc + Kp, *gl = keep + Kp, *el = gl + Kp;                 \
        int32_t *live = (int32_t*) (el + Kp), *slot = live + K;                               \
        double *cp = el + 2 * Kp, *f = cp + tm_words, *S = f + tm_words;                      \
        double cmin = 1.0, frozen = 0.0;                                                      \
        for (int64_t j = 0; j < n; j++)                                                       \
            if (c[j] > 0 && (double) c[j] < cmin)                                             \
                cmin = (double) c[j];                                                         \
        const double thr = ldexp((alpha < 1.0 ? alpha : 1.0) * cmin, -64);                  \
        const emfast_gv zero = gv_set(0.0), epsv = gv_set(eps);                               \
        int A = K, tm = 0;                                                                    \
        for (int k = 0; k < Kp; k++)                                                          \
            keep[k] = k < K ? 1.0 : 0.0;                                                      \
        for (int64_t it = 0; it < max_iter; it++) {                                           \
            double change = 0.0;                                                              \
            if (!tm && np <= tm_words && (int64_t) A * np <= tm_cap) {                        \
                A = 0;                                                                        \
                for (int k = 0; k < K; k++) {                                                 \
                    if (keep[k] != 0.0)                                                       \
                        live[A++] = k;                                                        \
                    else                                                                      \
                        frozen += g[k];                                                       \
                }                                                                             \
                for (int64_t j = 0; j < np; j++)                                              \
                    cp[j] = j < n ? (double) c[j] : 0.0;                                      \
                for (int a = 0; a < A; a++) {                                                 \
                    double* row = S + (int64_t) a * np;                                       \
                    for (int64_t j = 0; j < n; j++)                                           \
                        row[j] = BT[(int64_t) ids[j] * Kp + live[a]];                         \
                    for (int64_t j = n; j < np; j++)                                          \
                        row[j] = 0.0;                                                         \
                    slot[a] = a;                                                              \
                    gl[a] = g[live[a]];                                                       \
                    el[a] = e[live[a]];                                                       \
                }                                                                             \
                tm = 1;                                                                       \
            }                                                                                 \
            if (tm) {                                                                         \
                int64_t q = 0;                                                                \
                int b = 0;                                                                    \
                for (; q + 4 * W <= np; q += 4 * W) {      /* four word vectors at a time */  \
                    emfast_gv u0 = zero, u1 = zero, u2 = zero, u3 = zero;                     \
                    for (int a = 0; a < A; a++) {                                             \
                        const double* r = S + (int64_t) slot[a] * np + q;                     \
                        emfast_gv ea = gv_set(el[a]);                                         \
                        u0 += ea * gv_ld(r);                                                  \
                        u1 += ea * gv_ld(r + W);                                              \
                        u2 += ea * gv_ld(r + 2 * W);                                          \
                        u3 += ea * gv_ld(r + 3 * W);                                          \
                    }                                                                         \
                    gv_st(f + q, gv_ld(cp + q) / (u0 + epsv));                                \
                    gv_st(f + q + W, gv_ld(cp + q + W) / (u1 + epsv));                        \
                    gv_st(f + q + 2 * W, gv_ld(cp + q + 2 * W) / (u2 + epsv));                \
                    gv_st(f + q + 3 * W, gv_ld(cp + q + 3 * W) / (u3 + epsv));                \
                }                                                                             \
                for (; q < np; q += W) {                                                      \
                    emfast_gv u0 = zero;                                                      \
                    for (int a = 0; a < A; a++)                                               \
                        u0 += gv_set(el[a]) * gv_ld(S + (int64_t) slot[a] * np + q);          \
                    gv_st(f + q, gv_ld(cp + q) / (u0 + epsv));                                \
                }                                                                             \
                for (int a = 0; a < A; a++) {                                                 \
                    const double* r = S + (int64_t) slot[a] * np;                             \
                    emfast_gv s0 = zero, s1 = zero;                                           \
                    for (q = 0; q + 2 * W <= np; q += 2 * W) {                                \
                        s0 += gv_ld(f + q) * gv_ld(r + q);                                    \
                        s1 += gv_ld(f + q + W) * gv_ld(r + q + W);                            \
                    }                                                                         \
                    if (q < np)                                                               \
                        s0 += gv_ld(f + q) * gv_ld(r + q);                                    \
                    double v = el[a] * gv_hsum(s0 + s1), new_ = alpha + v;                    \
                    change += fabs(new_ - gl[a]);                                             \
                    if (v < thr) {                                                            \
                        g[live[a]] = new_;                                                    \
                        frozen += new_;                                                       \
                    } else {                                                                  \
                        live[b] = live[a];                                                    \
                        slot[b] = slot[a];                                                    \
                        gl[b++] = new_;                                                       \
                    }                                                                         \
                }                                                                             \
                A = b;                                                                        \
                double total = frozen;                                                        \
                for (int a = 0; a < A; a++)                                                   \
                    total += gl[a];                                                           \
                emfast_gv psi_total = gv_set(emfast_lda_psi1(total));                         \
                for (int a = A; a < (A + W - 1) / W * W; a++)                                 \
                    gl[a] = 1.0;                              /* a positive filler */         \
                for (int a = 0; a < A; a += W)                                                \
                    gv_st(el + a, lda_exp_e(gv_ld(gl + a), psi_total));                       \
            } else {                                                                          \
                WSUM(e, BT, ids, c, n, Kp, eps, (int) (it & 1), acc);                         \
                emfast_gv ch = zero, thrv = gv_set(thr);                                      \
                emfast_gi dropped = {0};                                                      \
                for (int k = 0; k < Kp; k += W) {                                             \
                    emfast_gv old = gv_ld(g + k), kv = gv_ld(keep + k);                       \
                    emfast_gv v = gv_ld(e + k) * gv_ld(acc + k);                              \
                    emfast_gi on = (emfast_gi) (kv != zero);                                  \
                    emfast_gv new_ = gv_sel(on, alpha + v, old), d = new_ - old;              \
                    ch += gv_sel((emfast_gi) (d < zero), -d, d);                              \
                    emfast_gi gone = on & (emfast_gi) (v < thrv);                             \
                    dropped += gone;                                  /* -1 per lane */       \
                    gv_st(keep + k, gv_sel(gone, zero, kv));                                  \
                    gv_st(g + k, new_);                                                       \
                }                                                                             \
                change = gv_hsum(ch);                                                         \
                for (int l = 0; l < W; l++)                                                   \
                    A += (int) dropped[l];                                                    \
                emfast_lda_exp_dirichlet(g, K, Kp, e);                                        \
                if (A < K)                                                                    \
                    for (int k = 0; k < Kp; k += W)                                           \
                        gv_st(e + k, gv_ld(e + k) * gv_ld(keep + k));                         \
            }                                                                                 \
            if (change / K < tol)                                                             \
                break;                                                                        \
        }                                                                                     \
        if (tm)                                                                               \
            for (int a = 0; a < A; a++)                                                       \
                g[live[a]] = gl[a];                                                           \
        if (tm || A < K)                    /* else e is already that of the final gamma */   \
            emfast_lda_exp_dirichlet(g, K, Kp, e);                                            \
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
