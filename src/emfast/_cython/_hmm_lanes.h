/* emfast: scaled forward-backward of EMFAST_LANES sequences at once, one per SIMD lane.
 *
 * Why: one sequence's recursion is a chain (frame t needs frame t-1), so its K-long loops
 * run at the latency of that chain; with K = 4..16 most of the machine idles. Advancing
 * EMFAST_LANES sequences together gives every operation that many independent values. The
 * state vectors are stored [frame][state] of lane vectors (GCC/Clang vector extensions:
 * the compiler emits whatever SIMD width the build targets: SSE2/NEON, AVX2 or AVX-512).
 *
 * Per lane the arithmetic is that of one sequence (see _hmm.pyx): b_t = exp(le_t - m_t),
 * u_t = (u_{t-1} A) * (b_t / c_{t-1}) unnormalised (the division of the previous frame is not
 * on the chain), c_t = sum u_t, alpha_t = u_t / c_t; backward w_t = b_t beta_t / c_t (0 where
 * alpha_t = 0), beta_{t-1} = A w_t, gamma_t = alpha_t beta_t, and R += alpha_{t-1} w_t^T in
 * rank-EMFAST_LRANK updates. Lanes whose sequence is shorter than the batch's longest run on
 * their last frame again and are masked out of every sum; a lane whose sequence becomes
 * impossible (c_t == 0) or meets NaN is finished with garbage that the caller discards.
 *
 * With diagonal-Gaussian emissions (emfast_lanes_gauss) the batch computes its own
 * log-emissions from the rows of X and, instead of writing posteriors, adds each frame's
 * posterior-weighted statistics about the means to per-lane sums: no (T, K) array is read
 * or written, and X is read twice (forward and backward) while it is in cache.
 *
 * The caller (_hmm_impl.pxi) adds each lane's results to its group slot in sequence order,
 * so the results depend on the lengths only, never on the thread count.
 */
#ifndef EMFAST_HMM_LANES_H
#define EMFAST_HMM_LANES_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "_fastexp.h"

/* One lane vector is one SIMD register of the build: 8 doubles with AVX-512, 4 with AVX2, 2
 * with SSE2 or NEON (vectors wider than the build's registers are lowered through memory by
 * GCC, measured 2x slower than one sequence at a time). */
#if defined(__AVX512F__)
#define EMFAST_LANES 8
#elif defined(__AVX__)
#define EMFAST_LANES 4
#else
#define EMFAST_LANES 2
#endif
#define EMFAST_LRANK 4
#define EMFAST_LOST_REL 0x1p-1000   /* LOST_REL, B_FLOOR and LOST_LOG2 of _hmm_impl.pxi */
#define EMFAST_B_FLOOR 0x1p-1020
#define EMFAST_LOST_PRETEST 0x1p-999
#define EMFAST_LOST_LOG2 927.0
#define EMFAST_LANES_MAX_K 64   /* the caller batches sequences only up to this many states */

/* Every helper of the batch is inlined into it: lane vectors passed to an out-of-line
 * function go through memory, and GCC's heuristics leave some out of line (measured: the
 * exp and the sum in a standalone build, 20% of the time). */
#define EMFAST_LV_INLINE static inline __attribute__((always_inline))

/* aligned(8): scratch comes from malloc; unaligned vector loads cost nothing extra here */
typedef double emfast_lv __attribute__((vector_size(8 * EMFAST_LANES), aligned(8)));
typedef int64_t emfast_li __attribute__((vector_size(8 * EMFAST_LANES), aligned(8)));

/* x in every lane, written as an initializer, which GCC turns into one broadcast: a loop
 * over the lanes became one masked broadcast per lane in the AVX-512 build (8 instructions
 * for each transition entry the many-state lane products broadcast) */
EMFAST_LV_INLINE emfast_lv emfast_lv_splat(double x)
{
#if EMFAST_LANES == 8
    return (emfast_lv) {x, x, x, x, x, x, x, x};
#elif EMFAST_LANES == 4
    return (emfast_lv) {x, x, x, x};
#else
    return (emfast_lv) {x, x};
#endif
}

/* m ? a : b, m a comparison result (all bits set or clear per lane) */
EMFAST_LV_INLINE emfast_lv emfast_lv_sel(emfast_li m, emfast_lv a, emfast_lv b)
{
    return (emfast_lv) (((emfast_li) a & m) | ((emfast_li) b & ~m));
}

/* (rows[0][k], rows[1][k], ...) built in registers: scalar stores into a vector in memory
 * followed by a vector load would stall on store-to-load forwarding */
EMFAST_LV_INLINE emfast_lv emfast_lv_gather(const double* const* rows, int k)
{
#if EMFAST_LANES == 8
    return (emfast_lv) {rows[0][k], rows[1][k], rows[2][k], rows[3][k],
                        rows[4][k], rows[5][k], rows[6][k], rows[7][k]};
#elif EMFAST_LANES == 4
    return (emfast_lv) {rows[0][k], rows[1][k], rows[2][k], rows[3][k]};
#else
    return (emfast_lv) {rows[0][k], rows[1][k]};
#endif
}

#if EMFAST_LANES >= 4
#include <immintrin.h>
/* 4 x 4 transpose: rows p[l][0..3] of four lanes <-> out[k] = (p[0][k], .., p[3][k]) (its own
 * inverse); 8 shuffles instead of 16 scalar moves each way */
EMFAST_LV_INLINE void emfast_transpose4(__m256d a, __m256d b, __m256d c, __m256d d, __m256d* out)
{
    __m256d t0 = _mm256_unpacklo_pd(a, b);   /* a0 b0 a2 b2 */
    __m256d t1 = _mm256_unpackhi_pd(a, b);   /* a1 b1 a3 b3 */
    __m256d t2 = _mm256_unpacklo_pd(c, d);   /* c0 d0 c2 d2 */
    __m256d t3 = _mm256_unpackhi_pd(c, d);   /* c1 d1 c3 d3 */
    out[0] = _mm256_permute2f128_pd(t0, t2, 0x20);
    out[1] = _mm256_permute2f128_pd(t1, t3, 0x20);
    out[2] = _mm256_permute2f128_pd(t0, t2, 0x31);
    out[3] = _mm256_permute2f128_pd(t1, t3, 0x31);
}

/* b[k..k+3] = the states k..k+3 of every lane's row (4 lanes per 4 x 4 block) */
EMFAST_LV_INLINE void emfast_lv_load4(const double* const* rows, int k, emfast_lv* b)
{
#if EMFAST_LANES == 8
    __m256d lo[4], hi[4];
    emfast_transpose4(_mm256_loadu_pd(rows[0] + k), _mm256_loadu_pd(rows[1] + k),
                      _mm256_loadu_pd(rows[2] + k), _mm256_loadu_pd(rows[3] + k), lo);
    emfast_transpose4(_mm256_loadu_pd(rows[4] + k), _mm256_loadu_pd(rows[5] + k),
                      _mm256_loadu_pd(rows[6] + k), _mm256_loadu_pd(rows[7] + k), hi);
    for (int q = 0; q < 4; q++)
        b[q] = (emfast_lv) _mm512_insertf64x4(_mm512_castpd256_pd512(lo[q]), hi[q], 1);
#else
    __m256d o[4];
    emfast_transpose4(_mm256_loadu_pd(rows[0] + k), _mm256_loadu_pd(rows[1] + k),
                      _mm256_loadu_pd(rows[2] + k), _mm256_loadu_pd(rows[3] + k), o);
    for (int q = 0; q < 4; q++) b[q] = (emfast_lv) o[q];
#endif
}

/* the inverse: x[k..k+3] written to the states k..k+3 of the rows of the lanes with on[l] */
EMFAST_LV_INLINE void emfast_lv_store4(const emfast_lv* x, int k, double* const* row,
                                    const int* on)
{
    __m256d r[4];
#if EMFAST_LANES == 8
    for (int half = 0; half < 2; half++) {
        __m256d h[4];
        for (int q = 0; q < 4; q++)
            h[q] = half ? _mm512_extractf64x4_pd((__m512d) x[k + q], 1)
                        : _mm512_castpd512_pd256((__m512d) x[k + q]);
        emfast_transpose4(h[0], h[1], h[2], h[3], r);
        for (int l = 0; l < 4; l++)
            if (on[4 * half + l]) _mm256_storeu_pd(row[4 * half + l] + k, r[l]);
    }
#else
    emfast_transpose4((__m256d) x[k], (__m256d) x[k + 1], (__m256d) x[k + 2],
                      (__m256d) x[k + 3], r);
    for (int l = 0; l < 4; l++)
        if (on[l]) _mm256_storeu_pd(row[l] + k, r[l]);
#endif
}
#endif

/* x[k] (lane vectors, k < K) stored as the rows of the lanes with on[l]: row(l)[k] */
EMFAST_LV_INLINE void emfast_lv_scatter(const emfast_lv* x, int K, double* const* row,
                                     const int* on)
{
    int k = 0;
#if EMFAST_LANES >= 4
    for (; k + 3 < K; k += 4) emfast_lv_store4(x, k, row, on);
#endif
    for (; k < K; k++)
        for (int l = 0; l < EMFAST_LANES; l++)
            if (on[l]) row[l][k] = x[k][l];
}

/* b[k] = (rows[0][k], rows[1][k], ..) for k < K */
EMFAST_LV_INLINE void emfast_lv_load_rows(const double* const* rows, int K, emfast_lv* b)
{
    int k = 0;
#if EMFAST_LANES >= 4
    for (; k + 3 < K; k += 4) emfast_lv_load4(rows, k, b + k);
#endif
    for (; k < K; k++) b[k] = emfast_lv_gather(rows, k);
}

EMFAST_LV_INLINE int emfast_li_any(emfast_li m)
{
    int64_t r = 0;
    for (int l = 0; l < EMFAST_LANES; l++) r |= m[l];
    return r != 0;
}

/* emfast_exp_nonpos (_fastexp.h) on a lane vector: the same math, branch-free */
EMFAST_LV_INLINE emfast_lv emfast_lv_exp_nonpos(emfast_lv x)
{
    emfast_li tiny = (emfast_li) (x < -708.0);
    emfast_lv xc = emfast_lv_sel(tiny, emfast_lv_splat(-708.0), x);
    emfast_lv kd = xc * EMFAST_EXP_LOG2E + EMFAST_EXP_SHIFTER;
    emfast_lv nf = kd - EMFAST_EXP_SHIFTER;
    emfast_lv r = (xc - nf * EMFAST_EXP_LN2_HI) - nf * EMFAST_EXP_LN2_LO;
    emfast_lv p = EMFAST_EXP_TAYLOR(r);
    emfast_li bits = ((emfast_li) kd << 52) + ((int64_t) 1023 << 52);
    return (emfast_lv) ((emfast_li) (p * (emfast_lv) bits) & ~tiny);
}

/* log(x) for x in [1, 2) (the running product of the scales), on a lane vector: x above
 * sqrt(2) is halved (exactly) and ln 2 added back; then log(y) = 2 atanh(s) with
 * s = (y - 1) / (y + 1), |s| < 0.1716, by its series to s^23 (truncation < 1e-17 relative).
 * One vector of logs per batch instead of one libm call per lane (measured 14% of a batch
 * of ten-frame sequences). */
EMFAST_LV_INLINE emfast_lv emfast_lv_log_1_2(emfast_lv x)
{
    emfast_li big = (emfast_li) (x > 1.4142135623730951);
    emfast_lv y = emfast_lv_sel(big, x * 0.5, x);
    emfast_lv e = emfast_lv_sel(big, emfast_lv_splat(0.6931471805599453094), emfast_lv_splat(0.0));
    emfast_lv sv = (y - 1.0) / (y + 1.0);
    emfast_lv z = sv * sv;
    emfast_lv p = emfast_lv_splat(2.0 / 23.0);
    p = p * z + 2.0 / 21.0;
    p = p * z + 2.0 / 19.0;
    p = p * z + 2.0 / 17.0;
    p = p * z + 2.0 / 15.0;
    p = p * z + 2.0 / 13.0;
    p = p * z + 2.0 / 11.0;
    p = p * z + 2.0 / 9.0;
    p = p * z + 2.0 / 7.0;
    p = p * z + 2.0 / 5.0;
    p = p * z + 2.0 / 3.0;
    return e + sv * (p * z + 2.0);
}

/* out[k] = sum_i x[i] M[i*K + k]: even and odd i in two running sums added at the end,
 * which halves the chain of dependent multiply-adds (the recursions wait on it every
 * frame); four outputs per pass over x. ENTRY(e) is M's entry e as a lane vector: up to
 * EMFAST_LANES_SPLAT_MAX_K states M is a copy with each entry splat across the lanes (once
 * per batch), so every product is one multiply-add with a memory operand; above it that
 * copy (K*K lane vectors: 256 KiB per matrix at K = 64 with 8 lanes) no longer fits the
 * first-level cache, and each entry is broadcast from the plain matrix where it is used
 * (measured 2x faster at K = 64). */
#define EMFAST_LANES_SPLAT_MAX_K 16
#define EMFAST_LV_VECMAT(NAME, MTYPE, ENTRY)                                                  \
    EMFAST_LV_INLINE void NAME(const emfast_lv* x, const MTYPE* M, int K, emfast_lv* out)    \
    {                                                                                         \
        int k = 0;                                                                            \
        for (; k + 3 < K; k += 4) {                                                           \
            emfast_lv e0 = x[0] * ENTRY(k), e1 = x[0] * ENTRY(k + 1);                         \
            emfast_lv e2 = x[0] * ENTRY(k + 2), e3 = x[0] * ENTRY(k + 3);                     \
            emfast_lv o0 = emfast_lv_splat(0.0), o1 = o0, o2 = o0, o3 = o0;                   \
            int i = 1;                                                                        \
            for (; i + 1 < K; i += 2) {                                                       \
                int64_t r = (int64_t) i * K + k;                                              \
                emfast_lv xi = x[i], xj = x[i + 1];                                           \
                o0 += xi * ENTRY(r);                                                          \
                o1 += xi * ENTRY(r + 1);                                                      \
                o2 += xi * ENTRY(r + 2);                                                      \
                o3 += xi * ENTRY(r + 3);                                                      \
                e0 += xj * ENTRY(r + K);                                                      \
                e1 += xj * ENTRY(r + K + 1);                                                  \
                e2 += xj * ENTRY(r + K + 2);                                                  \
                e3 += xj * ENTRY(r + K + 3);                                                  \
            }                                                                                 \
            if (i < K) {                                                                      \
                int64_t r = (int64_t) i * K + k;                                              \
                o0 += x[i] * ENTRY(r);                                                        \
                o1 += x[i] * ENTRY(r + 1);                                                    \
                o2 += x[i] * ENTRY(r + 2);                                                    \
                o3 += x[i] * ENTRY(r + 3);                                                    \
            }                                                                                 \
            out[k] = e0 + o0;                                                                 \
            out[k + 1] = e1 + o1;                                                             \
            out[k + 2] = e2 + o2;                                                             \
            out[k + 3] = e3 + o3;                                                             \
        }                                                                                     \
        for (; k < K; k++) {                                                                  \
            emfast_lv e = x[0] * ENTRY(k), o = emfast_lv_splat(0.0);                          \
            int i = 1;                                                                        \
            for (; i + 1 < K; i += 2) {                                                       \
                o += x[i] * ENTRY((int64_t) i * K + k);                                       \
                e += x[i + 1] * ENTRY((int64_t) (i + 1) * K + k);                             \
            }                                                                                 \
            if (i < K) o += x[i] * ENTRY((int64_t) i * K + k);                                \
            out[k] = e + o;                                                                   \
        }                                                                                     \
    }
#define EMFAST_LV_SPLAT_ENTRY(e) M[e]
#define EMFAST_LV_BCAST_ENTRY(e) emfast_lv_splat(M[e])
EMFAST_LV_VECMAT(emfast_lv_vecmat_splat, emfast_lv, EMFAST_LV_SPLAT_ENTRY)
EMFAST_LV_VECMAT(emfast_lv_vecmat_bcast, double, EMFAST_LV_BCAST_ENTRY)
#undef EMFAST_LV_SPLAT_ENTRY
#undef EMFAST_LV_BCAST_ENTRY
#undef EMFAST_LV_VECMAT

/* out = x M with M (K, K) given both ways (Mv: the splat copy, filled only up to
 * EMFAST_LANES_SPLAT_MAX_K states) */
EMFAST_LV_INLINE void emfast_lv_vecmat(const emfast_lv* x, const emfast_lv* Mv, const double* M,
                                       int K, emfast_lv* out)
{
    if (K <= EMFAST_LANES_SPLAT_MAX_K)
        emfast_lv_vecmat_splat(x, Mv, K, out);
    else
        emfast_lv_vecmat_bcast(x, M, K, out);
}

/* sum_k u[k] in four running sums (a short chain: the forward recursion waits on it) */
EMFAST_LV_INLINE emfast_lv emfast_lv_sum(const emfast_lv* u, int K)
{
    emfast_lv s0 = u[0], s1 = emfast_lv_splat(0.0), s2 = s1, s3 = s1;
    int k = 1;
    for (; k + 2 < K; k += 3) {
        s1 += u[k];
        s2 += u[k + 1];
        s3 += u[k + 2];
    }
    for (; k < K; k++) s1 += u[k];
    return (s0 + s1) + (s2 + s3);
}

/* Diagonal-Gaussian emissions: log p(x_t | k) = lc[k] - 0.5 sum_d ((x_td - mu_dk) p_dk)^2,
 * p = 1 / sigma (spherical models pass their precision repeated over the features). The
 * parameters and the statistics are (D, K), feature-major: the loops over them run over d
 * outside and over k inside, contiguous and vectorisable in a single sequence and unrolled
 * in the K-specialised lane copies (a run-time D inside costs more in loop control than in
 * arithmetic). */
typedef struct {
    const double* X;      /* (T, D) rows of all sequences, concatenated */
    int D;
    const double* mu;     /* (D, K) means, also the centre of the statistics */
    const double* p;      /* (D, K) */
    const double* lc;     /* (K,) */
} emfast_lanes_gauss;

/* Categorical emissions: frame t of a sequence is the symbol sym[t] in [0, F), and
 * P(symbol f | state k) = BT[f K + k]. The batch uses the probabilities themselves (no log,
 * no exp, no per-frame shift: a frame where every state's probability of its symbol is 0
 * -- or below about 1e-300 -- is impossible) and adds the posterior-weighted symbol counts
 * of its lanes l < nl that did not fail to counts (F, K), frame by frame (backwards) and
 * lane by lane. */
typedef struct {
    const int64_t* sym;   /* (T,) symbols of all sequences, concatenated */
    const double* BT;     /* (F, K) */
    double* counts;       /* (F, K), added to */
    int nl;               /* lanes holding sequences (the others repeat one: not counted) */
} emfast_lanes_cat;

/* Scratch layout, in lane vectors: al (Tb, K), bc (Tb, K), ics (Tb,), then R (K, K), g0
 * (K,) and with Gaussian emissions the statistics nk (K,), s1 and s2 (D, K) -- read back by
 * emfast_lanes_accumulate --, then gam and cbuf (K,), rw (EMFAST_LRANK, K), Av and ATv
 * (K, K), and for Gaussians muv and pv (D, K), the frame ring gq (EMFAST_LRANK, K) and xs
 * (Tb, D), every frame's x_t. D = 0 without Gaussian emissions. */
static inline emfast_lv* emfast_lanes_R(const double* scratch, int K, int64_t Tb)
{
    return (emfast_lv*) scratch + (2 * Tb * K + Tb);
}

/* Doubles of scratch emfast_lanes_fb needs for K states, D features (0: log-emissions
 * given) and batches up to Tb frames. */
static inline int64_t emfast_lanes_scratch(int K, int D, int64_t Tb)
{
    int64_t KD = (int64_t) K * D, G = D ? K + 4 * KD + EMFAST_LRANK * K + Tb * D : 0;
    return (int64_t) EMFAST_LANES * (2 * Tb * K + Tb + 3 * K * K + (3 + EMFAST_LRANK) * K + G);
}

/* The n <= EMFAST_LRANK frames in the ring gq (posteriors; its frame q has x_t at
 * xq - q D, the frames run backwards) added to the statistics about the means muv:
 * nk += gamma, s1 += gamma (x - mu), s2 += gamma (x - mu)^2, each sum read and written once
 * per n frames. */
EMFAST_LV_INLINE void
emfast_lanes_gauss_flush(int K, int D, int n, const emfast_lv* gq, const emfast_lv* xq,
                         const emfast_lv* muv, emfast_lv* nk)
{
    emfast_lv* s1 = nk + K;
    emfast_lv* s2 = s1 + (int64_t) K * D;
    for (int k = 0; k < K; k++) {
        emfast_lv n0 = nk[k];
        for (int q = 0; q < n; q++) n0 += gq[q * K + k];
        nk[k] = n0;
    }
    for (int d = 0; d < D; d++) {
        emfast_lv x[EMFAST_LRANK];
        for (int q = 0; q < n; q++) x[q] = xq[d - q * D];
        for (int k = 0; k < K; k++) {
            int64_t e = (int64_t) d * K + k;
            emfast_lv m = muv[e], a1 = s1[e], a2 = s2[e];
            for (int q = 0; q < n; q++) {
                emfast_lv df = x[q] - m;
                emfast_lv gd = gq[q * K + k] * df;
                a1 += gd;
                a2 += gd * df;
            }
            s1[e] = a1;
            s2[e] = a2;
        }
    }
}

/* xv[d] = x_t of every lane (its last row where its sequence is shorter than t) */
EMFAST_LV_INLINE void emfast_lanes_gauss_rows(const emfast_lanes_gauss* g, int64_t t,
                                             const int64_t* base, const int64_t* Tl,
                                             emfast_lv* xv)
{
    const double* rows[EMFAST_LANES];
    for (int l = 0; l < EMFAST_LANES; l++)
        rows[l] = g->X + (base[l] + (t < Tl[l] ? t : Tl[l] - 1)) * g->D;
    emfast_lv_load_rows(rows, g->D, xv);
}

/* x[k] (k < K) written to row t of the posteriors of every lane whose sequence has a frame
 * t (all of them at t = 0) */
EMFAST_LV_INLINE void emfast_lanes_store_frame(const emfast_lv* x, int K, int64_t t,
                                            const int64_t* base, const int64_t* Tl,
                                            double* post)
{
    double* prow[EMFAST_LANES];
    int on[EMFAST_LANES];
    for (int l = 0; l < EMFAST_LANES; l++) {
        on[l] = t < Tl[l];
        prow[l] = post + (base[l] + (on[l] ? t : 0)) * K;
    }
    emfast_lv_scatter(x, K, prow, on);
}

/* The categorical counts of frame t: gamma_t (lane vectors) turned into one row per lane
 * (buf, EMFAST_LANES x K doubles), each added to its symbol's row of c->counts, lane by
 * lane, for the lanes that hold a sequence with a frame t and did not fail. */
EMFAST_LV_INLINE void emfast_lanes_cat_add(const emfast_lanes_cat* c, int K, int64_t t,
                                           const int64_t* base, const int64_t* Tl,
                                           emfast_li failed, const emfast_lv* gam,
                                           double* buf)
{
    double* row[EMFAST_LANES];
    int on[EMFAST_LANES];
    for (int l = 0; l < EMFAST_LANES; l++) {
        row[l] = buf + l * K;
        on[l] = l < c->nl && t < Tl[l] && !failed[l];
    }
    emfast_lv_scatter(gam, K, row, on);
    for (int l = 0; l < EMFAST_LANES; l++) {
        if (!on[l]) continue;
        double* dst = c->counts + c->sym[base[l] + t] * K;
        for (int k = 0; k < K; k++) dst[k] += row[l][k];
    }
}

/* R[i, j] += (a0 w0 + a1 w1) + (a2 w2 + a3 w3) for all i, j < K, with a_q = ra[q][i] and
 * w_q = rw[q K + j] (EMFAST_LRANK = 4 frames). Up to EMFAST_LANES_SPLAT_MAX_K states row by
 * row (unrolled over j); above it EMFAST_RANK_COLS columns at a time down all the rows,
 * their w held in registers: per element of R, 4 / EMFAST_RANK_COLS loads of alpha instead
 * of 4 of w, for the same multiply-adds. The same sum per element either way. */
#define EMFAST_RANK_COLS (EMFAST_LANES == 8 ? 4 : 2)   /* 4 x COLS w in registers */
EMFAST_LV_INLINE void emfast_lanes_rank4(emfast_lv* R, const emfast_lv* const* ra,
                                         const emfast_lv* rw, int K)
{
    if (K <= EMFAST_LANES_SPLAT_MAX_K) {
        for (int i = 0; i < K; i++) {
            emfast_lv* r = R + i * K;
            emfast_lv a0 = ra[0][i], a1 = ra[1][i], a2 = ra[2][i], a3 = ra[3][i];
            for (int j = 0; j < K; j++)
                r[j] += (a0 * rw[j] + a1 * rw[K + j]) + (a2 * rw[2 * K + j] + a3 * rw[3 * K + j]);
        }
        return;
    }
    int j = 0;
    for (; j + EMFAST_RANK_COLS <= K; j += EMFAST_RANK_COLS) {
        emfast_lv w[4][EMFAST_RANK_COLS];
        for (int q = 0; q < 4; q++)
            for (int c = 0; c < EMFAST_RANK_COLS; c++) w[q][c] = rw[q * K + j + c];
        for (int i = 0; i < K; i++) {
            emfast_lv a0 = ra[0][i], a1 = ra[1][i], a2 = ra[2][i], a3 = ra[3][i];
            emfast_lv* r = R + (int64_t) i * K + j;
            for (int c = 0; c < EMFAST_RANK_COLS; c++)
                r[c] += (a0 * w[0][c] + a1 * w[1][c]) + (a2 * w[2][c] + a3 * w[3][c]);
        }
    }
    for (; j < K; j++)
        for (int i = 0; i < K; i++)
            R[(int64_t) i * K + j] += (ra[0][i] * rw[j] + ra[1][i] * rw[K + j])
                                      + (ra[2][i] * rw[2 * K + j] + ra[3][i] * rw[3 * K + j]);
}

/* A frame where some state's scaled mass u_k fell below 2^-999 (LOST_REL in _hmm_impl.pxi):
 * lm = 2^1000 times a bound on the mass lost, q_k max(b_k, B_FLOOR) over the states with
 * u_k < LOST_REL c_t (q: the predicted mass, times c_{t-1} = 1 / icp); where the fraction
 * of the frame lm icp / c_t exceeds rfloor, worst takes its log2 plus that of the product
 * of the scales so far (2^ex e^lsmall), both rounded down, if that is larger. */
EMFAST_LV_INLINE emfast_lv emfast_lanes_lost(int K, const emfast_lv* q, const emfast_lv* b,
                                             const emfast_lv* u, emfast_lv c, emfast_lv icp,
                                             emfast_li ex, emfast_lv lsmall, emfast_li on,
                                             double rfloor, emfast_lv worst)
{
    emfast_lv thr = c * EMFAST_LOST_REL, lm = emfast_lv_splat(0.0);
    for (int k = 0; k < K; k++) {
        emfast_lv bf = emfast_lv_sel((emfast_li) (b[k] > EMFAST_B_FLOOR), b[k],
                                     emfast_lv_splat(EMFAST_B_FLOOR));
        lm += emfast_lv_sel((emfast_li) (u[k] < thr), (q[k] * 0x1p1000) * bf,
                            emfast_lv_splat(0.0));
    }
    emfast_lv r = (lm * icp) / c;
    emfast_li rb = (emfast_li) r;
    emfast_lv cand = __builtin_convertvector(((rb >> 52) & 0x7ff) - 1023 + ex, emfast_lv)
                     + lsmall * 1.4426950408889634;
    return emfast_lv_sel(on & (emfast_li) (r > rfloor) & (emfast_li) (cand > worst), cand,
                         worst);
}

/* The body of emfast_lanes_fb (below), for any K. */
EMFAST_LV_INLINE void
emfast_lanes_fb_body(int K, const double* le, const emfast_lanes_gauss* g,
                     const emfast_lanes_cat* c, const int64_t* base, const int64_t* Tl,
                     const double* sp, const double* A, const double* AT, double rfloor,
                     double* post, double* scratch, double* ll)
{
    int D = g ? g->D : 0;
    int64_t Tb = 0;
    for (int l = 0; l < EMFAST_LANES; l++) Tb = Tl[l] > Tb ? Tl[l] : Tb;
    emfast_lv* al = (emfast_lv*) scratch;     /* (Tb, K) normalised alphas */
    emfast_lv* bc = al + Tb * K;              /* (Tb, K) b_t */
    emfast_lv* ics = bc + Tb * K;             /* (Tb,) 1 / c_t */
    emfast_lv* R = emfast_lanes_R(scratch, K, Tb);   /* (K, K) sum_t alpha_{t-1} w_t^T */
    emfast_lv* g0 = R + K * K;                /* (K,) gamma_0 */
    emfast_lv* gst = g0 + K;                  /* Gaussians: nk (K,), s1, s2 (K, D) */
    emfast_lv* gam = gst + (D ? K + 2 * K * D : 0);   /* (K,) gamma_t before it is scattered */
    emfast_lv* cbuf = gam + K;                /* (K,) categorical: gamma_t as lane rows */
    emfast_lv* rw = cbuf + K;                 /* (RANK, K) pending w_t */
    emfast_lv* Av = rw + EMFAST_LRANK * K;    /* (K, K) A and A^T splat across the lanes
                                               * (up to EMFAST_LANES_SPLAT_MAX_K states) */
    emfast_lv* ATv = Av + K * K;
    emfast_lv* muv = ATv + K * K;             /* Gaussians: (D, K) mu and p splat ... */
    emfast_lv* pv = muv + K * D;
    emfast_lv* gq = pv + K * D;               /* ... (RANK, K) pending gamma_t ... */
    emfast_lv* xs = gq + EMFAST_LRANK * K;    /* ... and (Tb, D) every frame's x_t, read
                                               * from X once (a transpose of the lanes' rows) */
    const emfast_lv* ra[EMFAST_LRANK];        /* their alpha_{t-1} (rows of al) */
    /* The vectors the recursions carry from frame to frame are locals, which the K-unrolled
     * copies keep in registers: through memory, every frame's chain would wait on
     * store-to-load forwarding. */
    emfast_lv u[EMFAST_LANES_MAX_K];          /* unnormalised alpha_t ... */
    emfast_lv up[EMFAST_LANES_MAX_K];         /* ... and alpha_{t-1} c_{t-1} */
    emfast_lv beta[EMFAST_LANES_MAX_K], wt[EMFAST_LANES_MAX_K];   /* beta_t, w_t */
    emfast_lv Tv, icp = emfast_lv_splat(1.0), pr = emfast_lv_splat(1.0);
    emfast_lv lsmall = emfast_lv_splat(0.0), msum = emfast_lv_splat(0.0);
    emfast_lv failv = emfast_lv_splat(0.0), worst = emfast_lv_splat(-INFINITY);
    emfast_li failed = (emfast_li) {0}, ex = (emfast_li) {0};
    for (int l = 0; l < EMFAST_LANES; l++) Tv[l] = (double) Tl[l];
    for (int64_t e = 0; e < (K <= EMFAST_LANES_SPLAT_MAX_K ? (int64_t) K * K : 0); e++) {
        Av[e] = emfast_lv_splat(A[e]);
        ATv[e] = emfast_lv_splat(AT[e]);
    }
    for (int64_t e = 0; e < (int64_t) D * K; e++) {
        muv[e] = emfast_lv_splat(g->mu[e]);
        pv[e] = emfast_lv_splat(g->p[e]);
    }

    /* forward, emissions first: the exps of every frame are independent work; kept out of
     * the recursion's loop, they do not wait behind its chain from frame to frame */
    for (int64_t t = 0; t < Tb; t++) {
        emfast_lv* b = bc + t * K;
        if (g) {
            emfast_lv* xv = xs + t * D;
            emfast_lv acc[EMFAST_LANES_MAX_K];
            emfast_lanes_gauss_rows(g, t, base, Tl, xv);
            for (int k = 0; k < K; k++) acc[k] = emfast_lv_splat(0.0);
            for (int d = 0; d < D; d++) {
                emfast_lv xd = xv[d];
                for (int k = 0; k < K; k++) {
                    emfast_lv y = (xd - muv[d * K + k]) * pv[d * K + k];
                    acc[k] += y * y;
                }
            }
            for (int k = 0; k < K; k++) b[k] = g->lc[k] - 0.5 * acc[k];
        } else if (c) {                        /* the probabilities as they are */
            const double* rows[EMFAST_LANES];
            for (int l = 0; l < EMFAST_LANES; l++)
                rows[l] = c->BT + c->sym[base[l] + (t < Tl[l] ? t : Tl[l] - 1)] * K;
            emfast_lv_load_rows(rows, K, b);
            continue;
        } else {
            const double* rows[EMFAST_LANES];
            for (int l = 0; l < EMFAST_LANES; l++) {
                rows[l] = le + (base[l] + (t < Tl[l] ? t : Tl[l] - 1)) * K;
                __builtin_prefetch(rows[l] + 8 * K);   /* EMFAST_LANES streams, a row a frame */
            }
            emfast_lv_load_rows(rows, K, b);
        }
        /* shift by the per-lane max (a NaN is never selected; all -inf: b = 0, c = 0) */
        emfast_lv m = b[0];
        for (int k = 1; k < K; k++) m = emfast_lv_sel((emfast_li) (b[k] > m), b[k], m);
        m = emfast_lv_sel((emfast_li) (m == -INFINITY), emfast_lv_splat(0.0), m);
        for (int k = 0; k < K; k++) b[k] = emfast_lv_exp_nonpos(b[k] - m);
        msum += emfast_lv_sel((emfast_li) ((double) t < Tv), m, emfast_lv_splat(0.0));
    }
    /* the recursion */
    for (int64_t t = 0; t < Tb; t++) {
        const emfast_lv* b = bc + t * K;
        emfast_lv q[EMFAST_LANES_MAX_K];      /* predicted mass (c_{t-1} alpha_{t-1}) A */
        if (t == 0) {
            for (int k = 0; k < K; k++) q[k] = emfast_lv_splat(sp[k]);
            for (int k = 0; k < K; k++) u[k] = sp[k] * b[k];
        } else {
            emfast_lv_vecmat(up, Av, A, K, q);
            for (int k = 0; k < K; k++) u[k] = (q[k] * b[k]) * icp;   /* icp comes last */
        }
        emfast_lv c = emfast_lv_sum(u, K);
        /* c_t <= 1 (b <= 1, rows of A sum to 1): a state whose u_k is not below 2^-999
         * has lost nothing (LOST_REL in _hmm_impl.pxi); one compare per state */
        emfast_li small = (emfast_li) (u[0] < EMFAST_LOST_PRETEST);
        for (int k = 1; k < K; k++) small |= (emfast_li) (u[k] < EMFAST_LOST_PRETEST);
        emfast_lv ic = 1.0 / c;
        emfast_lv* a = al + t * K;
        for (int k = 0; k < K; k++) a[k] = u[k] * ic;
        ics[t] = ic;
        emfast_li on = (emfast_li) ((double) t < Tv);
        emfast_li bad = on & ~(emfast_li) (c > 0.0) & ~failed;   /* first failure: 0 or NaN */
        failv = emfast_lv_sel(bad, c, failv);
        failed |= bad;
        /* sum_t log c_t as the log of a running product kept in [1, 2) by moving its binary
         * exponent into ex (exact); a c_t too small for that is logged on its own */
        emfast_li big = on & (emfast_li) (c >= 1e-300);
        pr *= emfast_lv_sel(big, c, emfast_lv_splat(1.0));
        emfast_li pb = (emfast_li) pr;
        ex += ((pb >> 52) & 0x7ff) - 1023;
        pr = (emfast_lv) ((pb & 0x000fffffffffffffLL) | 0x3ff0000000000000LL);
        emfast_li sm = on & (emfast_li) (c < 1e-300) & (emfast_li) (c > 0.0);
        if (emfast_li_any(sm))
            for (int l = 0; l < EMFAST_LANES; l++)
                if (sm[l]) lsmall[l] += log(c[l]);
        if (emfast_li_any(small))
            worst = emfast_lanes_lost(K, q, b, u, c, icp, ex, lsmall, on, rfloor, worst);
        icp = ic;
        for (int k = 0; k < K; k++) up[k] = u[k];
    }
    emfast_lv lpr = emfast_lv_log_1_2(pr);
    for (int l = 0; l < EMFAST_LANES; l++) {
        /* log2 of the product of all the scales, rounded down like the candidates */
        double rest = (double) ex[l] + lsmall[l] * 1.4426950408889634;
        if (worst[l] > -INFINITY && (failed[l] || worst[l] - rest > EMFAST_LOST_LOG2)) {
            ll[l] = INFINITY;
            failed[l] = -1;                   /* from here: lanes whose sums are unwanted */
        } else {
            ll[l] = failed[l] ? failv[l] - INFINITY
                              : msum[l] + ((lpr[l] + (double) ex[l] * 0.6931471805599453094)
                                           + lsmall[l]);
        }
    }

    /* backward */
    for (int64_t e = 0; e < (int64_t) K * K; e++) R[e] = emfast_lv_splat(0.0);
    for (int64_t e = 0; e < (D ? K + 2 * K * D : 0); e++) gst[e] = emfast_lv_splat(0.0);
    for (int k = 0; k < K; k++) beta[k] = emfast_lv_splat(1.0);
    int n = 0, ng = 0;
    for (int64_t t = Tb - 1; t > 0; t--) {
        const emfast_lv* a = al + t * K;
        const emfast_lv* b = bc + t * K;
        emfast_lv ic = ics[t];
        emfast_li on = (emfast_li) ((double) t < Tv);
        emfast_lv* w = rw + n * K;
        /* States with alpha_t = 0 get w = 0 (they add nothing in exact arithmetic): keeps
         * unreachable states' betas from growing without bound (then 0 * inf = NaN). */
        for (int k = 0; k < K; k++) {
            wt[k] = emfast_lv_sel(on & (emfast_li) (a[k] != 0.0), (b[k] * beta[k]) * ic,
                                  emfast_lv_splat(0.0));
            w[k] = wt[k];
        }
        ra[n] = a - K;
        if (post != NULL) {
            for (int k = 0; k < K; k++) gam[k] = a[k] * beta[k];
            emfast_lanes_store_frame(gam, K, t, base, Tl, post);
        }
        if (g) {                               /* masked frames weigh 0 */
            for (int k = 0; k < K; k++)
                gq[ng * K + k] = emfast_lv_sel(on, a[k] * beta[k], emfast_lv_splat(0.0));
            if (++ng == EMFAST_LRANK) {
                emfast_lanes_gauss_flush(K, D, EMFAST_LRANK, gq, xs + (t + ng - 1) * D, muv,
                                         gst);
                ng = 0;
            }
        }
        if (c) {
            for (int k = 0; k < K; k++) gam[k] = a[k] * beta[k];
            emfast_lanes_cat_add(c, K, t, base, Tl, failed, gam, (double*) cbuf);
        }
        emfast_lv_vecmat(wt, ATv, AT, K, beta);   /* beta_{t-1}[i] = sum_j A[i, j] w[j] */
        for (int k = 0; k < K; k++)            /* a lane not yet started keeps beta = 1 */
            beta[k] = emfast_lv_sel(on, beta[k], emfast_lv_splat(1.0));
        if (++n == EMFAST_LRANK || t == 1) {
            if (n == EMFAST_LRANK) {
                emfast_lanes_rank4(R, ra, rw, K);
            } else {
                for (int i = 0; i < K; i++) {
                    emfast_lv* r = R + i * K;
                    for (int q = 0; q < n; q++) {
                        emfast_lv aq = ra[q][i];
                        const emfast_lv* wq = rw + q * K;
                        for (int j = 0; j < K; j++) r[j] += aq * wq[j];
                    }
                }
            }
            n = 0;
        }
    }
    for (int k = 0; k < K; k++) g0[k] = al[k] * beta[k];
    if (post != NULL) emfast_lanes_store_frame(g0, K, 0, base, Tl, post);
    if (c) emfast_lanes_cat_add(c, K, 0, base, Tl, failed, g0, (double*) cbuf);
    if (g) {
        for (int k = 0; k < K; k++) gq[ng * K + k] = g0[k];
        emfast_lanes_gauss_flush(K, D, ng + 1, gq, xs + ng * D, muv, gst);
    }
}

/* One copy of the body per small K, where the compiler unrolls every K-long loop and
 * keeps the state vectors in registers (a run-time K cost half the instructions in loop
 * control and reloads); any other K takes the generic copy. These copies are two thirds of
 * the compile time of a build of the HMM kernels: the x86-64 baseline build, which only
 * CPUs without AVX2 run (setup.py defines EMFAST_LANES_GENERIC_ONLY there), has the
 * generic copy alone. */
#ifndef EMFAST_LANES_GENERIC_ONLY
#define EMFAST_LANES_FB_K(KK)                                                                 \
    static void emfast_lanes_fb_##KK(const double* le, const emfast_lanes_gauss* g,          \
                                     const emfast_lanes_cat* c, const int64_t* base,          \
                                     const int64_t* Tl, const double* sp, const double* A,    \
                                     const double* AT, double rfloor, double* post,           \
                                     double* scratch, double* ll)                             \
    {                                                                                         \
        if (g)                                                                                \
            emfast_lanes_fb_body(KK, NULL, g, NULL, base, Tl, sp, A, AT, rfloor, post, scratch,\
                                 ll);                                                         \
        else if (c)                                                                           \
            emfast_lanes_fb_body(KK, NULL, NULL, c, base, Tl, sp, A, AT, rfloor, post, scratch,\
                                 ll);                                                         \
        else                                                                                  \
            emfast_lanes_fb_body(KK, le, NULL, NULL, base, Tl, sp, A, AT, rfloor, post, scratch,\
                                 ll);                                                         \
    }
EMFAST_LANES_FB_K(2)
EMFAST_LANES_FB_K(3)
EMFAST_LANES_FB_K(4)
EMFAST_LANES_FB_K(5)
EMFAST_LANES_FB_K(6)
EMFAST_LANES_FB_K(7)
EMFAST_LANES_FB_K(8)
EMFAST_LANES_FB_K(9)
EMFAST_LANES_FB_K(10)
EMFAST_LANES_FB_K(11)
EMFAST_LANES_FB_K(12)
EMFAST_LANES_FB_K(16)
#endif

/* Forward-backward of one batch.
 *
 * IN  K; le (T, K) log-emissions of all sequences, or g: Gaussian emissions computed here,
 *     or c: categorical symbols (then le is not read; c->counts is added to); base[l],
 *     Tl[l] first frame and length of lane l's sequence
 *     (Tl >= 1); sp (K,); A (K, K) row-major; AT its transpose; scratch of
 *     emfast_lanes_scratch(K, g ? g->D : 0, max Tl) doubles; rfloor: H.rfloor (LOST_REL in
 *     _hmm_impl.pxi).
 * OUT post (T, K) rows of the lanes' sequences: posteriors (garbage for a failed lane), or
 *     NULL; ll[l] the log-likelihood of lane l, -inf (impossible), NaN, or +inf (precision
 *     lost: left to log space, its sums garbage); and in scratch
 *     (see emfast_lanes_add) gamma_0, R and (g) the Gaussian statistics of every lane.
 */
static void emfast_lanes_fb(int K, const double* le, const emfast_lanes_gauss* g,
                            const emfast_lanes_cat* c, const int64_t* base, const int64_t* Tl,
                            const double* sp, const double* A, const double* AT,
                            double rfloor, double* post, double* scratch, double* ll)
{
#ifndef EMFAST_LANES_GENERIC_ONLY
    switch (K) {
#define EMFAST_CASE(KK)                                                                       \
    case KK:                                                                                  \
        emfast_lanes_fb_##KK(le, g, c, base, Tl, sp, A, AT, rfloor, post, scratch, ll);       \
        return;
    EMFAST_CASE(2) EMFAST_CASE(3) EMFAST_CASE(4) EMFAST_CASE(5) EMFAST_CASE(6)
    EMFAST_CASE(7) EMFAST_CASE(8) EMFAST_CASE(9) EMFAST_CASE(10) EMFAST_CASE(11)
    EMFAST_CASE(12) EMFAST_CASE(16)
#undef EMFAST_CASE
    }
#endif
    emfast_lanes_fb_body(K, le, g, c, base, Tl, sp, A, AT, rfloor, post, scratch, ll);
}

/* Lane-vector sums of a group's batches: acc holds, per lane, start (K,), R (K, K) and
 * with D > 0 Gaussian features nk (K,), s1 and s2 (D, K): emfast_lanes_acc_size(K, D)
 * doubles. Summing whole lane vectors and reducing the lanes once per group costs a
 * fraction of adding every lane's numbers to the group's slot after every batch (measured
 * a fifth of a batch of ten-frame sequences). The order of the sums depends on the plan of
 * units only, never on the thread count. */
static inline int64_t emfast_lanes_acc_size(int K, int D)
{
    return (int64_t) EMFAST_LANES * (K + (int64_t) K * K + (D ? K + 2 * (int64_t) D * K : 0));
}

/* After emfast_lanes_fb: the batch's gamma_0, R and Gaussian sums of the lanes l with
 * ok[l] != 0 added to acc (the others are impossible, NaN or padding). */
static inline void emfast_lanes_accumulate(int K, int D, const double* scratch, int64_t Tb,
                                           const int64_t* ok, double* acc)
{
    const emfast_lv* R = emfast_lanes_R(scratch, K, Tb);
    const emfast_lv* g0 = R + K * K;
    emfast_lv* a = (emfast_lv*) acc;
    emfast_li m;
    for (int l = 0; l < EMFAST_LANES; l++) m[l] = ok[l] ? -1 : 0;
    emfast_lv zero = emfast_lv_splat(0.0);
    for (int k = 0; k < K; k++) a[k] += emfast_lv_sel(m, g0[k], zero);
    for (int64_t e = 0; e < (int64_t) K * K; e++) a[K + e] += emfast_lv_sel(m, R[e], zero);
    a += K + (int64_t) K * K;
    for (int64_t e = 0; e < (D ? K + 2 * (int64_t) D * K : 0); e++)
        a[e] += emfast_lv_sel(m, g0[K + e], zero);
}

/* slot[e] += the lanes of acc[e] in lane order, for the n sums of emfast_lanes_accumulate
 * (n = emfast_lanes_acc_size / EMFAST_LANES). */
static inline void emfast_lanes_reduce(int64_t n, const double* acc, double* slot)
{
    const emfast_lv* a = (const emfast_lv*) acc;
    for (int64_t e = 0; e < n; e++) {
        double t = a[e][0];
        for (int l = 1; l < EMFAST_LANES; l++) t += a[e][l];
        slot[e] += t;
    }
}

#endif
