/* emfast: the arithmetic of one row block of the Gaussian kernels (_gaussian_impl.pxi), as
 * explicit SIMD with GCC/Clang vector extensions. The compiler emits whatever width the
 * build targets: one vector is 8 doubles with AVX-512, 4 with AVX2, 2 with SSE2/NEON.
 *
 * Layout: everything is feature- or component-major with rows of EMFAST_GBLOCK, so every
 * vector holds EMFAST_GW consecutive rows of the block and every inner loop is a straight
 * vector loop whatever D and K are (the block transposed xT (D, BLOCK), the log-densities and
 * then the weighted responsibilities lp (K, BLOCK); rows EMFAST_GLD apart). The caller pads
 * the block to mp rows, a multiple of EMFAST_GSTEP, with zero rows of weight 0, which add
 * exactly 0 to every sum.
 *
 * Several independent accumulators everywhere (two row vectors per step, 4 or 8 columns of
 * the Cholesky transform per tile, a tile of Gram products), so the loops run at the
 * machine's throughput, not at the latency of one chain of multiply-adds.
 *
 * Determinism: every sum has an order fixed by this code (row vectors in order, lanes folded
 * by gv_hsum), never by the compiler (no -ffast-math), the thread count or addresses.
 */
#ifndef EMFAST_GAUSSIAN_SIMD_H
#define EMFAST_GAUSSIAN_SIMD_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "_fastexp.h"

#if !(defined(__GNUC__) || defined(__clang__))
#error "emfast's Gaussian kernels need the GCC/Clang vector extensions"
#endif

#if defined(__AVX512F__)
#define EMFAST_GW 8
#elif defined(__AVX__)
#define EMFAST_GW 4
#else
#define EMFAST_GW 2
#endif
#define EMFAST_GSTEP (2 * EMFAST_GW)   /* rows per step of the two-vector loops */
#define EMFAST_GBLOCK 256              /* rows per block */
/* The row stride of every buffer: one cache line more than a block, so that the rows of a
 * buffer (walked across, K or D of them, for the same row vector) do not lie a multiple of
 * 4 KiB apart: loads would wait on unrelated stores (4K aliasing; measured on the
 * log-sum-exp: a fifth of its time with a 2 KiB stride) and share few cache sets. */
#define EMFAST_GLD (EMFAST_GBLOCK + 8)
/* Gram tiles are 4 x EMFAST_GTJ accumulators, transform tiles 2 x EMFAST_GTT: 16 fit
 * AVX-512's 32 registers, 8 AVX2's 16. Up to EMFAST_GTWHOLE features, one transform tile
 * spans all D columns (2 x 12 accumulators, two rows and a broadcast of U: 27 of AVX-512's
 * registers): every row of the block is loaded (and centred) once, not once per tile. */
#define EMFAST_GTJ (EMFAST_GW == 8 ? 4 : 2)
#define EMFAST_GTT (EMFAST_GW == 8 ? 8 : 4)
#define EMFAST_GTWHOLE (EMFAST_GW == 8 ? 12 : 4)

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"   /* vectors never cross a real call (all inline) */
#endif

/* Every helper is inlined: a vector passed to an out-of-line function goes through memory,
 * and the tile functions must see their sizes as constants to keep accumulators in registers. */
#define G_INLINE static inline __attribute__((always_inline))

/* Unroll the next loop fully: loops over a tile's accumulators whose bounds are constants
 * only after unrolling an outer loop (triangular tiles), which the compilers' own heuristics
 * leave rolled, the accumulators then living in memory. */
#if defined(__clang__)
#define G_UNROLL _Pragma("unroll")
#else
#define G_UNROLL _Pragma("GCC unroll 16")
#endif

typedef double emfast_gv __attribute__((vector_size(8 * EMFAST_GW), aligned(8)));
typedef int64_t emfast_gi __attribute__((vector_size(8 * EMFAST_GW), aligned(8)));

EMFAST_DEFINE_VEXP_NONPOS(emfast_gv_exp_nonpos, emfast_gv, emfast_gi)

/* Loads and stores through a may_alias vector type: plain vector moves, no alignment
 * assumed (aligned(8): scratch comes from malloc). memcpy would be the same in principle,
 * but GCC's AVX2 code then builds some vectors on the stack from two 16-byte halves and
 * reloads them whole: a store-forwarding stall per vector (measured 10x slower). */
typedef double emfast_gv_mem __attribute__((vector_size(8 * EMFAST_GW), aligned(8), may_alias));

G_INLINE emfast_gv gv_ld(const double* p) { return *(const emfast_gv_mem*) p; }

G_INLINE void gv_st(double* p, emfast_gv v) { *(emfast_gv_mem*) p = v; }

G_INLINE emfast_gv gv_set(double x)
{
    emfast_gv v = {0.0};
    return v + x;
}

/* m ? a : b, m a comparison result */
G_INLINE emfast_gv gv_sel(emfast_gi m, emfast_gv a, emfast_gv b)
{
    return (emfast_gv) (((emfast_gi) a & m) | ((emfast_gi) b & ~m));
}

/* the lanes' sum, halving: lane l + lane l + W/2 first; a fixed order. With the shuffle
 * builtin, the halves are vector adds (the same additions, the same result): the fold runs
 * once per statistic and block, a fifth of the statistics' work at D = 50 done lane by lane. */
#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector) && EMFAST_GW == 8
#define EMFAST_GV_HSUM_SHUFFLE 1
#endif
#endif

G_INLINE double gv_hsum(emfast_gv v)
{
#ifdef EMFAST_GV_HSUM_SHUFFLE
    typedef double v4 __attribute__((vector_size(32)));
    typedef double v2 __attribute__((vector_size(16)));
    v4 h = __builtin_shufflevector(v, v, 0, 1, 2, 3) + __builtin_shufflevector(v, v, 4, 5, 6, 7);
    v2 q = __builtin_shufflevector(h, h, 0, 1) + __builtin_shufflevector(h, h, 2, 3);
    return q[0] + q[1];
#else
    double t[EMFAST_GW];
    memcpy(t, &v, sizeof t);
    for (int w = EMFAST_GW / 2; w >= 1; w /= 2)
        for (int l = 0; l < w; l++)
            t[l] += t[l + w];
    return t[0];
#endif
}

/* The block transposed: xT[i * EMFAST_GLD + b] = x[b * D + i] as float64, for i < D, b < m.
 * In 4 x 4 tiles (four row loads, eight shuffles, four stores; feature-major, so that the
 * stores stream); element by element, the strided side of the copy cost more than all the
 * arithmetic of a diagonal or spherical E-step at D = 64. What the tiles leave (the last
 * m % 4 rows, the last D % 4 features) goes element by element in row order. */
typedef double emfast_g4d __attribute__((vector_size(32)));
typedef int64_t emfast_g4i __attribute__((vector_size(32)));
typedef double emfast_g4d_mem __attribute__((vector_size(32), aligned(8), may_alias));
typedef float emfast_g4f_mem __attribute__((vector_size(16), aligned(4), may_alias));

#if defined(__clang__) || __GNUC__ >= 12
#define G4_SHUF(a, b, i, j, k, l) __builtin_shufflevector(a, b, i, j, k, l)
#else
#define G4_SHUF(a, b, i, j, k, l) __builtin_shuffle(a, b, (emfast_g4i) {i, j, k, l})
#endif

G_INLINE emfast_g4d g4_ld_double(const double* p) { return *(const emfast_g4d_mem*) p; }

G_INLINE emfast_g4d g4_ld_float(const float* p)
{
    return __builtin_convertvector(*(const emfast_g4f_mem*) p, emfast_g4d);
}

G_INLINE void g4_st(double* p, emfast_g4d v) { *(emfast_g4d_mem*) p = v; }

#define EMFAST_DEFINE_LOAD_T(name, T)                                                      \
    static inline void name(const T* x, int D, int m, double* xT)                          \
    {                                                                                      \
        int dt = D - D % 4, mt = m - m % 4, b, i;                                          \
        for (i = 0; i < dt; i += 4)                                                        \
            for (b = 0; b < mt; b += 4) {                                                  \
                const T* r = x + (ptrdiff_t) b * D + i;                                    \
                double* o = xT + (ptrdiff_t) i * EMFAST_GLD + b;                           \
                emfast_g4d r0 = g4_ld_##T(r), r1 = g4_ld_##T(r + D);                       \
                emfast_g4d r2 = g4_ld_##T(r + 2 * D), r3 = g4_ld_##T(r + 3 * D);           \
                emfast_g4d t0 = G4_SHUF(r0, r1, 0, 4, 2, 6);   /* a0 b0 a2 b2 */           \
                emfast_g4d t1 = G4_SHUF(r0, r1, 1, 5, 3, 7);   /* a1 b1 a3 b3 */           \
                emfast_g4d t2 = G4_SHUF(r2, r3, 0, 4, 2, 6);   /* c0 d0 c2 d2 */           \
                emfast_g4d t3 = G4_SHUF(r2, r3, 1, 5, 3, 7);   /* c1 d1 c3 d3 */           \
                g4_st(o, G4_SHUF(t0, t2, 0, 1, 4, 5));                                     \
                g4_st(o + EMFAST_GLD, G4_SHUF(t1, t3, 0, 1, 4, 5));                        \
                g4_st(o + 2 * EMFAST_GLD, G4_SHUF(t0, t2, 2, 3, 6, 7));                    \
                g4_st(o + 3 * EMFAST_GLD, G4_SHUF(t1, t3, 2, 3, 6, 7));                    \
            }                                                                              \
        for (b = 0; b < m; b++)                                                            \
            for (i = b < mt ? dt : 0; i < D; i++)                                          \
                xT[(ptrdiff_t) i * EMFAST_GLD + b] = x[(ptrdiff_t) b * D + i];             \
    }

EMFAST_DEFINE_LOAD_T(emfast_g_load_T_double, double)
EMFAST_DEFINE_LOAD_T(emfast_g_load_T_float, float)

/* log(s) for s >= 1, and for s = 0 (-inf), +inf and NaN (themselves): the row sums of the
 * log-sum-exp. s = 2^e m, m in [1, 2) (halved above sqrt 2, e + 1), log m by the atanh
 * series; the exponent becomes a double through the 2^52 shifter (no int64 -> double
 * conversion on AVX2). Relative error < 3e-16, tested against np.log. */
G_INLINE emfast_gv gv_log_ge1(emfast_gv s)
{
    emfast_gi bits = (emfast_gi) s;
    emfast_gi mb = (bits & 0x000fffffffffffffLL) | 0x3ff0000000000000LL;
    emfast_gi eb = ((bits >> 52) - 1023) + 0x4330000000000000LL;  /* 2^52 + e as bits */
    emfast_gv m = (emfast_gv) mb, ef = (emfast_gv) eb - 4503599627370496.0;
    emfast_gi big = (emfast_gi) (m > 1.4142135623730951);
    m = gv_sel(big, m * 0.5, m);
    ef = ef + gv_sel(big, gv_set(1.0), gv_set(0.0));
    emfast_gv sv = (m - 1.0) / (m + 1.0), z = sv * sv;
    emfast_gv r = ef * EMFAST_EXP_LN2_HI + (EMFAST_LOG_ATANH_SERIES(sv, z) + ef * EMFAST_EXP_LN2_LO);
    r = gv_sel((emfast_gi) (s == 0.0), gv_set(-INFINITY), r);
    return gv_sel((emfast_gi) (s < INFINITY), r, s);           /* +inf and NaN: s itself */
}

/* ------------------------------------------------------------------------------------- */

typedef struct {
    int cov;                    /* 0 full, 1 tied, 2 diag, 3 spherical */
    int D, K;
    const double* log_const;    /* (K,) */
    const double* means;        /* (K, D) the statistics are centred on these */
    const double* U;            /* full (K, D, D), tied (D, D): Cholesky factors of the
                                 * precisions, upper triangle, zeros below */
    const double* scale;        /* 1 / sigma: diag (K, D) per feature, spherical (K,) */
    const double* center;       /* tied (D,): rows are centred on it, then transformed once */
    const double* tmeans;       /* tied (K, D): (mu_k - center) U */
} emfast_gmodel;

/* Full and tied covariances with at most this many features centre on the fly: the
 * statistics (and the full transform) subtract the mean from each row of the block as they
 * load it, instead of first storing the block centred on each mean (a store per feature,
 * row and component). With more features the tiles load each row several times (once per
 * tile beside it) and centring it each time costs more than storing it centred once. */
#define EMFAST_GFLY_MAX_D 16

/* With more features, but at most this many, the full transform still centres on the fly,
 * and so do the statistics for the Gram matrix's C rows, storing only the A rows, r (x -
 * mu): half the stores of storing both, for the subtractions of the rows loaded beside
 * each tile. Measured against storing everything: on AVX-512 (Zen 5) the E-step 12-19%
 * faster at D = 20-30, 5% at D = 40-48; on AVX-512 (Xeon, 200,000 rows, K = 20) 12% at
 * D = 50 and 7% at D = 64; with AVX2 (Zen 5) 3-8% at D = 20-48, (Xeon) 4% at D = 50 but
 * 5% slower at D = 64. */
#define EMFAST_GCFLY_MAX_D (EMFAST_GW == 8 ? 64 : 48)

static inline int emfast_g_fly(const emfast_gmodel* M)
{
    return M->cov <= 1 && M->D <= EMFAST_GFLY_MAX_D;
}

typedef struct {                /* per-thread scratch, rows of EMFAST_GLD doubles */
    double* xT;                 /* (D,) the block, feature-major; the row before it is ones
                                 * (the statistics' augmented rows when centring on the fly) */
    double* lp;                 /* (K,) log-densities, then w * responsibilities */
    double* c;                  /* (D + 1,) row 0 ones, rows 1.. the block centred on a mean */
    double* a;                  /* (D,) those rows times the responsibilities */
    double* y;                  /* (D,) tied: the centred block times U */
    double* w;                  /* (1,) row weights, 0 on padding rows */
    double* norm;               /* (1,) per-row log-sum-exp */
    double* maha;               /* (K,) spherical: the squared distances to the means that
                                 * the log-densities summed (the statistics' s2 reuses them) */
} emfast_gwork;

/* doubles of scratch emfast_g_work_init needs for the model M */
static inline int64_t emfast_g_work_size(const emfast_gmodel* M)
{
    return (4 * (int64_t) M->D + 2 * (int64_t) M->K + 4) * EMFAST_GLD;
}

static inline void emfast_g_work_init(emfast_gwork* W, double* mem, const emfast_gmodel* M)
{
    const int64_t B = EMFAST_GLD;
    const int D = M->D, K = M->K;
    W->xT = mem + B;
    W->lp = W->xT + D * B;
    W->c = W->lp + K * B;
    W->a = W->c + (D + 1) * B;
    W->y = W->a + D * B;
    W->w = W->y + D * B;
    W->norm = W->w + B;
    W->maha = W->norm + B;
    for (int64_t b = 0; b < B; b++) W->xT[b - B] = W->c[b] = 1.0;
}

/* ----------------------------------------------------------------- log-densities */

/* One row i of U in a transform tile: y_q += d_i U_{i, j0 + q} for q = Q0 .. NJ - 1 (both
 * row vectors), u = U + i D + j0; d_i = dT's row i, minus mu_i if FLY. */
G_INLINE void g_tri_row(const int NJ, const int Q0, const int FLY, const double* dT,
                        const double* mu, const double* u, int i, int64_t b, emfast_gv* y0,
                        emfast_gv* y1)
{
    const int64_t B = EMFAST_GLD;
    emfast_gv d0 = gv_ld(dT + i * B + b), d1 = gv_ld(dT + i * B + b + EMFAST_GW);
    if (FLY) {
        d0 -= mu[i];
        d1 -= mu[i];
    }
    G_UNROLL
    for (int q = Q0; q < NJ; q++) {
        y0[q] += d0 * u[q];
        y1[q] += d1 * u[q];
    }
}

/* The Cholesky transform of two row vectors (rows b .. b + EMFAST_GSTEP) for the NJ
 * (<= EMFAST_GTT) columns j0 .. j0 + NJ - 1 of U: y_j = sum_{i <= j} d_i U_ij. Rows i < j0
 * fill the whole tile; row j0 + t only columns q >= t: U is zero below the diagonal, and
 * the products skipped would only add zeros (with 8-column tiles, 56 of every tile's
 * multiply-adds, an eighth of the transform at D = 50). Stores y in yT (if non-NULL) and
 * adds sum_j y_j^2 to (*m0, *m1). */
G_INLINE void g_tri_tile(const int NJ, const int FLY, const double* dT, const double* mu,
                         const double* U, int D, int j0, int64_t b, double* yT, emfast_gv* m0,
                         emfast_gv* m1)
{
    const int64_t B = EMFAST_GLD;
    emfast_gv y0[EMFAST_GTWHOLE > EMFAST_GTT ? EMFAST_GTWHOLE : EMFAST_GTT];
    emfast_gv y1[EMFAST_GTWHOLE > EMFAST_GTT ? EMFAST_GTWHOLE : EMFAST_GTT];
    for (int q = 0; q < NJ; q++) y0[q] = y1[q] = gv_set(0.0);
    for (int i = 0; i < j0; i++)
        g_tri_row(NJ, 0, FLY, dT, mu, U + (int64_t) i * D + j0, i, b, y0, y1);
    G_UNROLL
    for (int t = 0; t < NJ; t++)
        g_tri_row(NJ, t, FLY, dT, mu, U + (int64_t) (j0 + t) * D + j0, j0 + t, b, y0, y1);
    for (int q = 0; q < NJ; q++) {
        if (yT != NULL) {
            gv_st(yT + (j0 + q) * B + b, y0[q]);
            gv_st(yT + (j0 + q) * B + b + EMFAST_GW, y1[q]);
        }
        *m0 += y0[q] * y0[q];
        *m1 += y1[q] * y1[q];
    }
}

/* y = d U (stored in yT if non-NULL) and, if maha is non-NULL, maha = sum_j y_j^2 per row,
 * rows < mp, for d = dT (FLY = 0) or dT - mu (FLY = 1). */
G_INLINE void g_transform_tiles(const int FLY, const double* dT, const double* mu,
                                const double* U, int D, int mp, double* yT, double* maha)
{
#define G_TILE(NJ) g_tri_tile(NJ, FLY, dT, mu, U, D, j0, b, yT, &m0, &m1)
    for (int64_t b = 0; b < mp; b += EMFAST_GSTEP) {
        emfast_gv m0 = gv_set(0.0), m1 = m0;
        int j0 = 0;
#if EMFAST_GTWHOLE == 12
        switch (D) {             /* one tile (EMFAST_GTWHOLE); j0 = D: nothing left */
        case 5: G_TILE(5); j0 = D; break;
        case 6: G_TILE(6); j0 = D; break;
        case 7: G_TILE(7); j0 = D; break;
        case 8: G_TILE(8); j0 = D; break;
        case 9: G_TILE(9); j0 = D; break;
        case 10: G_TILE(10); j0 = D; break;
        case 11: G_TILE(11); j0 = D; break;
        case 12: G_TILE(12); j0 = D; break;
        default: break;
        }
#endif
        /* 8-column tiles only from D = 16: they do no more multiply-adds (see g_tri_tile)
         * and load dT less often, yet at D = 10 (before the whole-width tiles) the 4-column
         * tiles measured 3-8% faster than 8 + 2 */
        if (D >= 16)
            for (; j0 + EMFAST_GTT <= D; j0 += EMFAST_GTT) G_TILE(EMFAST_GTT);
        for (; j0 + 4 <= D; j0 += 4) G_TILE(4);
        switch (D - j0) {
        case 3: G_TILE(3); break;
        case 2: G_TILE(2); break;
        case 1: G_TILE(1); break;
        default: break;
        }
        if (maha != NULL) {
            gv_st(maha + b, m0);
            gv_st(maha + b + EMFAST_GW, m1);
        }
    }
#undef G_TILE
}

/* d = xT - mu (rows < mp), then y = d U (stored in yT if non-NULL) and, if maha is non-NULL,
 * maha = sum_j y_j^2 per row. dT non-NULL: d is stored there first; NULL: each row is
 * centred as the tiles load it (see EMFAST_GFLY_MAX_D); the same bits either way. */
static void emfast_g_transform(const double* xT, const double* mu, const double* U, int D,
                               int mp, double* dT, double* yT, double* maha)
{
    const int64_t B = EMFAST_GLD;
    if (dT == NULL) {
        g_transform_tiles(1, xT, mu, U, D, mp, yT, maha);
        return;
    }
    for (int i = 0; i < D; i++) {
        emfast_gv m = gv_set(mu[i]);
        for (int64_t b = 0; b < mp; b += EMFAST_GW)
            gv_st(dT + i * B + b, gv_ld(xT + i * B + b) - m);
    }
    g_transform_tiles(0, dT, NULL, U, D, mp, yT, maha);
}

/* Full (or tied) with D <= EMFAST_SMALL_D features: everything about a row vector stays in
 * registers, lp = log_const - 0.5 ||(x - mu) U||^2 in one pass (the general path's stored
 * centred rows and distances cost more than the arithmetic at this size). */
#define EMFAST_SMALL_D 3

G_INLINE void g_small_log_prob(const int D, const double* xT, const double* mu,
                               const double* U, double lc, int mp, double* lp)
{
    const int64_t B = EMFAST_GLD;
    for (int64_t b = 0; b < mp; b += EMFAST_GW) {
        emfast_gv d[EMFAST_SMALL_D], maha = gv_set(0.0);
        for (int i = 0; i < D; i++) d[i] = gv_ld(xT + i * B + b) - mu[i];
        for (int j = 0; j < D; j++) {
            emfast_gv y = d[0] * U[j];
            for (int i = 1; i <= j; i++) y += d[i] * U[i * D + j];
            maha += y * y;
        }
        gv_st(lp + b, lc - 0.5 * maha);
    }
}

/* lp = lc - 0.5 f maha for the NV row vectors from row b, with maha = sum_i ((x_i - mu_i)
 * s_i)^2 (SCALED: diag) or sum_i (x_i - mu_i)^2 (spherical: f = 1 / sigma^2, one multiply
 * per row instead of one per feature; tied: x the transformed rows, f = 1); even and odd
 * features in separate sums; maha itself into mh where non-NULL. Each row vector's sums are
 * the same whatever NV: NV only sets how many vectors share a feature's broadcast mu_i, s_i
 * and the loop's overhead. */
G_INLINE void g_lp_rows(const int NV, const int SCALED, const double* xT, const double* mu,
                        const double* s, double f, int D, double lc, int64_t b, double* lp,
                        double* mh)
{
    const int64_t B = EMFAST_GLD;
    emfast_gv e[4], o[4];
    for (int v = 0; v < NV; v++) e[v] = o[v] = gv_set(0.0);
    int i = 0;
    for (; i + 1 < D; i += 2) {
        const double* x = xT + i * B + b;
        for (int v = 0; v < NV; v++) {
            emfast_gv t = gv_ld(x + v * EMFAST_GW) - mu[i];
            emfast_gv u = gv_ld(x + B + v * EMFAST_GW) - mu[i + 1];
            if (SCALED) {
                t *= s[i];
                u *= s[i + 1];
            }
            e[v] += t * t;
            o[v] += u * u;
        }
    }
    if (i < D) {
        const double* x = xT + i * B + b;
        for (int v = 0; v < NV; v++) {
            emfast_gv t = gv_ld(x + v * EMFAST_GW) - mu[i];
            if (SCALED) t *= s[i];
            e[v] += t * t;
        }
    }
    for (int v = 0; v < NV; v++) {
        gv_st(lp + b + v * EMFAST_GW, lc - (0.5 * f) * (e[v] + o[v]));
        if (mh != NULL) gv_st(mh + b + v * EMFAST_GW, e[v] + o[v]);
    }
}

/* Tied, diagonal or spherical log-densities of component k for NV row vectors from row b:
 * tied from the transformed block W->y and the transformed means, the others from the block */
G_INLINE void g_lp_component(const emfast_gmodel* M, const emfast_gwork* W, const int NV,
                             int k, int64_t b)
{
    const int D = M->D;
    const double lc = M->log_const[k];
    const double* s = M->scale + (M->cov == 3 ? (int64_t) k : (int64_t) k * D);
    double* lp = W->lp + k * EMFAST_GLD;
    if (M->cov == 1)
        g_lp_rows(NV, 0, W->y, M->tmeans + (int64_t) k * D, NULL, 1.0, D, lc, b, lp, NULL);
    else if (M->cov == 2)
        g_lp_rows(NV, 1, W->xT, M->means + (int64_t) k * D, s, 1.0, D, lc, b, lp, NULL);
    else
        g_lp_rows(NV, 0, W->xT, M->means + (int64_t) k * D, NULL, s[0] * s[0], D, lc, b, lp,
                  W->maha + k * EMFAST_GLD);
}

/* W->lp[k] = log_const[k] - 0.5 maha(row, k) for the mp rows in W->xT */
static void emfast_g_log_prob(const emfast_gmodel* M, emfast_gwork* W, int mp)
{
    const int64_t B = EMFAST_GLD;
    const int D = M->D, K = M->K;
    if (M->cov <= 1 && D <= EMFAST_SMALL_D) {
        for (int k = 0; k < K; k++) {
            const double* mu = M->means + (int64_t) k * D;
            const double* U = M->U + (M->cov == 0 ? (int64_t) k * D * D : 0);
            double* lp = W->lp + k * B;
            switch (D) {
            case 1: g_small_log_prob(1, W->xT, mu, U, M->log_const[k], mp, lp); break;
            case 2: g_small_log_prob(2, W->xT, mu, U, M->log_const[k], mp, lp); break;
            default: g_small_log_prob(3, W->xT, mu, U, M->log_const[k], mp, lp); break;
            }
        }
        return;
    }
    if (M->cov >= 1) {
        if (M->cov == 1)               /* tied: one transform, then distances to the means */
            emfast_g_transform(W->xT, M->center, M->U, D, mp, W->c + B, W->y, NULL);
        /* rows outer, components inner: a strip of 4 row vectors (D x 32 rows, 16 KiB at
         * D = 64) stays in L1 for every component, where a whole block (135 KiB) would be
         * read from L2 once per component; the same sums per row either way. Four row
         * vectors per step (on AVX2, two left the loop bound by the broadcasts and the short
         * feature loop's overhead: measured 8% of the diagonal E-step at D = 10, K = 16),
         * two in the last one if the mp rows (a multiple of EMFAST_GSTEP) need it. */
        int64_t b = 0;
        for (; b + 2 * EMFAST_GSTEP <= mp; b += 2 * EMFAST_GSTEP)
            for (int k = 0; k < K; k++) g_lp_component(M, W, 4, k, b);
        if (b < mp)
            for (int k = 0; k < K; k++) g_lp_component(M, W, 2, k, b);
        return;
    }
    for (int k = 0; k < K; k++) {      /* full: a transform per component */
        double* lp = W->lp + k * B;
        emfast_g_transform(W->xT, M->means + (int64_t) k * D, M->U + (int64_t) k * D * D, D,
                           mp, D <= EMFAST_GCFLY_MAX_D ? NULL : W->c + B, NULL, lp);
        emfast_gv c = gv_set(M->log_const[k]);
        for (int64_t b = 0; b < mp; b += EMFAST_GW)
            gv_st(lp + b, c - 0.5 * gv_ld(lp + b));
    }
}

/* Log-sum-exp over the K components of each row, the row max subtracted (the best
 * component gives exp(0) = 1, the sum never underflows; a row where every component is
 * -inf gets -inf, NaN stays NaN). norm (if non-NULL) = the per-row log-sum-exp. With
 * to_resp, lp becomes w * responsibilities (w NULL: weight 1; 0 where exp gave 0, also when
 * the row is impossible). Returns sum_rows w * logsumexp in a fixed order (0 if w NULL). */
static double emfast_g_resp(int K, int mp, double* lp, const double* w, double* norm,
                            int to_resp)
{
    const int64_t B = EMFAST_GLD;
    emfast_gv ll = gv_set(0.0);
    for (int64_t b = 0; b < mp; b += EMFAST_GW) {
        emfast_gv mx0 = gv_set(-INFINITY), mx1 = mx0;
        int k = 0;
        for (; k + 1 < K; k += 2) {
            emfast_gv v0 = gv_ld(lp + k * B + b), v1 = gv_ld(lp + (k + 1) * B + b);
            mx0 = gv_sel((emfast_gi) (v0 > mx0), v0, mx0);
            mx1 = gv_sel((emfast_gi) (v1 > mx1), v1, mx1);
        }
        if (k < K) {
            emfast_gv v0 = gv_ld(lp + k * B + b);
            mx0 = gv_sel((emfast_gi) (v0 > mx0), v0, mx0);
        }
        emfast_gv mx = gv_sel((emfast_gi) (mx1 > mx0), mx1, mx0);
        mx = gv_sel((emfast_gi) (mx == -INFINITY), gv_set(0.0), mx);
        emfast_gv s0 = gv_set(0.0), s1 = s0;
        for (k = 0; k + 1 < K; k += 2) {
            emfast_gv e0 = emfast_gv_exp_nonpos(gv_ld(lp + k * B + b) - mx);
            emfast_gv e1 = emfast_gv_exp_nonpos(gv_ld(lp + (k + 1) * B + b) - mx);
            gv_st(lp + k * B + b, e0);
            gv_st(lp + (k + 1) * B + b, e1);
            s0 += e0;
            s1 += e1;
        }
        if (k < K) {
            emfast_gv e0 = emfast_gv_exp_nonpos(gv_ld(lp + k * B + b) - mx);
            gv_st(lp + k * B + b, e0);
            s0 += e0;
        }
        emfast_gv s = s0 + s1;
        emfast_gv l = mx + gv_log_ge1(s);
        if (norm != NULL) gv_st(norm + b, l);
        emfast_gv wv = w != NULL ? gv_ld(w + b) : gv_set(1.0);
        if (w != NULL) ll += wv * l;
        if (to_resp) {
            /* s == 0 only for an impossible row (every e == 0): responsibilities 0, not
             * 0 * inf; otherwise s >= 1 (the best component has e = 1) */
            emfast_gv sc = gv_sel((emfast_gi) (s == 0.0), gv_set(0.0), wv / s);
            for (k = 0; k < K; k++) gv_st(lp + k * B + b, gv_ld(lp + k * B + b) * sc);
        }
    }
    return gv_hsum(ll);
}

/* ------------------------------------------------------------------------ statistics */

/* Diagonal statistics of NF features i0.. of one component, responsibilities r:
 * s1[i] += sum r (x_i - mu_i), s2[i] += sum r (x_i - mu_i)^2. */
G_INLINE void g_diag_tile(const int NF, const double* xT, const double* mu, const double* r,
                          int mp, int i0, double* s1, double* s2)
{
    const int64_t B = EMFAST_GLD;
    emfast_gv a1[4], a2[4];
    for (int f = 0; f < NF; f++) a1[f] = a2[f] = gv_set(0.0);
    for (int64_t b = 0; b < mp; b += EMFAST_GW) {
        emfast_gv rv = gv_ld(r + b);
        for (int f = 0; f < NF; f++) {
            emfast_gv d = gv_ld(xT + (i0 + f) * B + b) - mu[i0 + f];
            emfast_gv t = rv * d;
            a1[f] += t;
            a2[f] += t * d;
        }
    }
    for (int f = 0; f < NF; f++) {
        s1[i0 + f] += gv_hsum(a1[f]);
        s2[i0 + f] += gv_hsum(a2[f]);
    }
}

/* Full/tied statistics of one component with D <= EMFAST_SMALL_D, every sum a register:
 * nk += sum r, s1 += sum r d, s2 (lower triangle) += sum r d d^T, d = x - mu. */
G_INLINE void g_small_stats(const int D, const double* xT, const double* mu, const double* r,
                            int mp, double* nk, double* s1, double* s2)
{
    const int64_t B = EMFAST_GLD;
    emfast_gv n = gv_set(0.0), a1[EMFAST_SMALL_D], a2[EMFAST_SMALL_D][EMFAST_SMALL_D];
    for (int i = 0; i < D; i++) {
        a1[i] = n;
        for (int j = 0; j <= i; j++) a2[i][j] = n;
    }
    for (int64_t b = 0; b < mp; b += EMFAST_GW) {
        emfast_gv rv = gv_ld(r + b), d[EMFAST_SMALL_D], rd[EMFAST_SMALL_D];
        n += rv;
        for (int i = 0; i < D; i++) {
            d[i] = gv_ld(xT + i * B + b) - mu[i];
            rd[i] = rv * d[i];
            a1[i] += rd[i];
        }
        for (int i = 0; i < D; i++)
            for (int j = 0; j <= i; j++) a2[i][j] += rd[i] * d[j];
    }
    *nk += gv_hsum(n);
    for (int i = 0; i < D; i++) {
        s1[i] += gv_hsum(a1[i]);
        for (int j = 0; j <= i; j++) s2[i * D + j] += gv_hsum(a2[i][j]);
    }
}

/* Spherical statistics of NF features i0.. of one component: s1[i] += sum r (x_i - mu_i)
 * and, if Q, *s2 += sum r q with q the row's sum of those features' (x_i - mu_i)^2 (one
 * multiply by r per row, not per feature). Without Q (s2 comes from the log-densities'
 * distances), s1 is sum r x_i - mu_i sum r: a multiply-add per value instead of a
 * subtraction and a multiply-add (the block's sum is at most 256 rows' worth; its rounding
 * moves the new mean by about one unit in the last place of the data's values). */
G_INLINE void g_sph_tile(const int NF, const int Q, const double* xT, const double* mu,
                         const double* r, int mp, int i0, double* s1, double* s2)
{
    const int64_t B = EMFAST_GLD;
    emfast_gv a1[4], a2 = gv_set(0.0);
    for (int f = 0; f < NF; f++) a1[f] = a2;
    for (int64_t b = 0; b < mp; b += EMFAST_GW) {
        emfast_gv rv = gv_ld(r + b), q = gv_set(0.0);
        for (int f = 0; f < NF; f++) {
            if (Q) {
                emfast_gv d = gv_ld(xT + (i0 + f) * B + b) - mu[i0 + f];
                a1[f] += rv * d;
                q += d * d;
            } else {
                a1[f] += rv * gv_ld(xT + (i0 + f) * B + b);
            }
        }
        a2 += Q ? rv * q : rv;     /* without Q: the sum of r */
    }
    const double n = Q ? 0.0 : gv_hsum(a2);
    for (int f = 0; f < NF; f++)
        s1[i0 + f] += Q ? gv_hsum(a1[f]) : gv_hsum(a1[f]) - mu[i0 + f] * n;
    if (Q) *s2 += gv_hsum(a2);
}

/* Diagonal (sph = 0) or spherical (component k's sum over features goes to s2[k D]: sph =
 * 1 from the block, sph = 2 s1 only, s2 being the caller's) statistics of the K components
 * (means mu (K, D), responsibilities r (K, BLOCK), s1 and s2 (K, D)) over all D features:
 * tiles of 4 features, then one of D % 4, so that NF is a constant in every tile. Features
 * outer, components inner: a tile's rows (4 x 256, 8 KiB) stay in L1 for every component
 * instead of the whole block coming from L2 once per component; each sum adds the same
 * terms in the same order either way. */
G_INLINE void g_diag_stats(int sph, const double* xT, const double* mu, const double* r,
                           int mp, int D, int K, double* s1, double* s2)
{
#define G_TILE(NF) for (int k = 0; k < K; k++) {                                           \
        const double* muk = mu + (int64_t) k * D, *rk = r + (int64_t) k * EMFAST_GLD;    \
        double* s1k = s1 + (int64_t) k * D, *s2k = s2 + (int64_t) k * D;                 \
        if (sph == 1) g_sph_tile(NF, 1, xT, muk, rk, mp, i0, s1k, s2k);                   \
        else if (sph == 2) g_sph_tile(NF, 0, xT, muk, rk, mp, i0, s1k, s2k);              \
        else g_diag_tile(NF, xT, muk, rk, mp, i0, s1k, s2k);                              \
    }
    int i0 = 0;
    for (; i0 + 4 <= D; i0 += 4) G_TILE(4);
    switch (D - i0) {
    case 3: G_TILE(3); break;
    case 2: G_TILE(2); break;
    case 1: G_TILE(1); break;
    default: break;
    }
#undef G_TILE
}

/* Row q of the Gram matrix's C rows at the row vector b: c's row q, minus mu1[q] if FLY
 * (centring on the fly; a flag here) */
G_INLINE emfast_gv g_crow(const int FLY, const double* c, const double* mu1, int q, int64_t b)
{
    emfast_gv v = gv_ld(c + (int64_t) q * EMFAST_GLD + b);
    return FLY ? v - mu1[q] : v;
}

/* One NI x NJ tile of the Gram matrix G = sum_rows A C^T (p = p0.., q = q0..) of the
 * augmented rows C_0 = 1, C_q = d_{q-1} and A_p = r C_p: G_00 = nk, G_p0 = s1_{p-1},
 * G_pq = s2_{p-1, q-1}. FLY = 1: C from the block itself (c = its rows with the ones row
 * before them, mu1 = 0 then the mean: 1 - 0 = 1 exactly) and A = r C formed here, in
 * registers; FLY = 2: C so, A from a (A_0 = r, rows a = r d); FLY = 0: C from the centred
 * rows c (row 0 ones), A from a. The products are the same bits either way. DIAG: a tile on the diagonal (p0 == q0, NI == NJ),
 * only its lower triangle q <= p is computed (the upper one would repeat it). */
G_INLINE void g_gram_tile(const int NI, const int NJ, const int FLY, const int DIAG,
                          const double* r, const double* a, const double* c,
                          const double* mu1, int mp, int p0, int q0, int D, double* nk,
                          double* s1, double* s2)
{
    const int64_t B = EMFAST_GLD;
    emfast_gv acc[4][4];
    const double* ap[4];        /* !FLY: the A rows */
    for (int p = 0; p < NI; p++) {
        ap[p] = FLY == 1 || p0 + p == 0 ? r : a + (int64_t) (p0 + p - 1) * B;
        for (int q = 0; q < NJ; q++) acc[p][q] = gv_set(0.0);
    }
    for (int64_t b = 0; b < mp; b += EMFAST_GW) {
        emfast_gv av[4], rv = gv_ld(r + b);
        for (int p = 0; p < NI; p++)
            av[p] = FLY == 1 ? rv * g_crow(1, c, mu1, p0 + p, b) : gv_ld(ap[p] + b);
        for (int q = 0; q < NJ; q++) {
            emfast_gv cv = g_crow(FLY != 0, c, mu1, q0 + q, b);
            for (int p = 0; p < NI; p++)
                if (!DIAG || q <= p) acc[p][q] += av[p] * cv;
        }
    }
    for (int p = 0; p < NI; p++)
        for (int q = 0; q < NJ; q++) {
            int pp = p0 + p, qq = q0 + q;
            if (DIAG && q > p) continue;
            double v = gv_hsum(acc[p][q]);
            if (pp == 0)
                *nk += v;
            else if (qq == 0)
                s1[pp - 1] += v;
            else
                s2[(int64_t) (pp - 1) * D + (qq - 1)] += v;
        }
}

/* dT = xT - mu (if dT is non-NULL) and a = r (xT - mu), rows < mp (the Gram matrix's C
 * and A rows) */
G_INLINE void g_centre_rows(const double* xT, const double* mu, const double* r, int D, int mp,
                            double* dT, double* a)
{
    const int64_t B = EMFAST_GLD;
    for (int i = 0; i < D; i++) {
        emfast_gv m = gv_set(mu[i]);
        for (int64_t b = 0; b < mp; b += EMFAST_GW) {
            emfast_gv dv = gv_ld(xT + i * B + b) - m;
            if (dT != NULL) gv_st(dT + i * B + b, dv);
            gv_st(a + i * B + b, gv_ld(r + b) * dv);
        }
    }
}

/* The lower triangle of the (D + 1) x (D + 1) Gram matrix of one component in tiles: rows
 * p0 .. p0 + 3 (NI = ni <= 4, a constant in each tile) take EMFAST_GTJ-column tiles left of
 * the diagonal, then their triangular diagonal tile. FLY, c, a, mu1: see g_gram_tile. */
G_INLINE void g_gram(const int FLY, const double* r, const double* a, const double* c,
                     const double* mu1, int mp, int D, double* nk, double* s1, double* s2)
{
#define G_TILE(NI, NJ, DIAG) \
    g_gram_tile(NI, NJ, FLY, DIAG, r, a, c, mu1, mp, p0, q0, D, nk, s1, s2)
    for (int p0 = 0; p0 < D + 1; p0 += 4) {
        int ni = D + 1 - p0 < 4 ? D + 1 - p0 : 4, q0 = 0;
        for (; q0 < p0; q0 += EMFAST_GTJ) {   /* EMFAST_GTJ divides 4: full tiles */
            switch (ni) {
            case 4: G_TILE(4, EMFAST_GTJ, 0); break;
            case 3: G_TILE(3, EMFAST_GTJ, 0); break;
            case 2: G_TILE(2, EMFAST_GTJ, 0); break;
            default: G_TILE(1, EMFAST_GTJ, 0); break;
            }
        }
        switch (ni) {
        case 4: G_TILE(4, 4, 1); break;
        case 3: G_TILE(3, 3, 1); break;
        case 2: G_TILE(2, 2, 1); break;
        default: G_TILE(1, 1, 1); break;
        }
    }
#undef G_TILE
}

/* Add the statistics of the mp rows in W->xT with w * responsibilities resp (K, BLOCK) to
 * nk (K,), s1 (K, D) and s2: full (K, D, D) and tied (D, D) lower triangles, diag (K, D),
 * spherical (K, D) with everything in column 0 (the caller sums each row). maha: W->maha
 * where emfast_g_log_prob has just filled it for these rows and means (spherical), so that
 * s2 sums r maha, a multiply-add per row and component instead of one per feature; else
 * NULL. */
static void emfast_g_stats(const emfast_gmodel* M, emfast_gwork* W, int mp, const double* resp,
                           const double* maha, double* nk, double* s1, double* s2)
{
    const int64_t B = EMFAST_GLD;
    const int D = M->D, K = M->K;
    if (M->cov >= 2) {
        const int sph = M->cov == 3 ? (maha != NULL ? 2 : 1) : 0;
        for (int k = 0; k < K; k++) {
            const double* r = resp + k * B;
            emfast_gv n0 = gv_set(0.0), n1 = n0, q0 = n0, q1 = n0;
            for (int64_t b = 0; b < mp; b += EMFAST_GSTEP) {
                n0 += gv_ld(r + b);
                n1 += gv_ld(r + b + EMFAST_GW);
                if (sph == 2) {
                    q0 += gv_ld(r + b) * gv_ld(maha + k * B + b);
                    q1 += gv_ld(r + b + EMFAST_GW) * gv_ld(maha + k * B + b + EMFAST_GW);
                }
            }
            nk[k] += gv_hsum(n0 + n1);
            if (sph == 2) s2[(int64_t) k * D] += gv_hsum(q0 + q1);
        }
        g_diag_stats(sph, W->xT, M->means, resp, mp, D, K, s1, s2);
        return;
    }
    for (int k = 0; k < K; k++) {
        const double* r = resp + k * B;
        const double* mu = M->means + (int64_t) k * D;
        double* s1k = s1 + (int64_t) k * D;
        double* s2k = s2 + (M->cov == 0 ? (int64_t) k * D * D : 0);
        if (D <= EMFAST_SMALL_D) {
            switch (D) {
            case 1: g_small_stats(1, W->xT, mu, r, mp, nk + k, s1k, s2k); break;
            case 2: g_small_stats(2, W->xT, mu, r, mp, nk + k, s1k, s2k); break;
            default: g_small_stats(3, W->xT, mu, r, mp, nk + k, s1k, s2k); break;
            }
            continue;
        }
        if (D <= EMFAST_GCFLY_MAX_D) {  /* C rows: the block less mu1 = (0, mu) */
            double mu1[EMFAST_GCFLY_MAX_D + 1];
            mu1[0] = 0.0;
            memcpy(mu1 + 1, mu, D * sizeof(double));
            if (emfast_g_fly(M)) {
                g_gram(1, r, NULL, W->xT - B, mu1, mp, D, nk + k, s1k, s2k);
            } else {
                g_centre_rows(W->xT, mu, r, D, mp, NULL, W->a);
                g_gram(2, r, W->a, W->xT - B, mu1, mp, D, nk + k, s1k, s2k);
            }
        } else {
            g_centre_rows(W->xT, mu, r, D, mp, W->c + B, W->a);
            g_gram(0, r, W->a, W->c, NULL, mp, D, nk + k, s1k, s2k);
        }
    }
}

/* out[i] = the kernels' vector exp of x[i] <= 0 (test hook: the code the log-sum-exp runs) */
static inline void emfast_g_exp_array(const double* x, int64_t n, double* out)
{
    for (int64_t i = 0; i < n; i += EMFAST_GW) {
        double t[EMFAST_GW] = {0.0};
        int64_t len = n - i < EMFAST_GW ? n - i : EMFAST_GW;
        memcpy(t, x + i, len * sizeof(double));
        emfast_gv e = emfast_gv_exp_nonpos(gv_ld(t));
        memcpy(t, &e, sizeof t);
        memcpy(out + i, t, len * sizeof(double));
    }
}

/* out[i] = the kernels' vector log of x[i] (>= 1, 0, inf or NaN; test hook) */
static inline void emfast_g_log_array(const double* x, int64_t n, double* out)
{
    for (int64_t i = 0; i < n; i += EMFAST_GW) {
        double t[EMFAST_GW];
        for (int l = 0; l < EMFAST_GW; l++) t[l] = 1.0;
        int64_t len = n - i < EMFAST_GW ? n - i : EMFAST_GW;
        memcpy(t, x + i, len * sizeof(double));
        emfast_gv e = gv_log_ge1(gv_ld(t));
        memcpy(t, &e, sizeof t);
        memcpy(out + i, t, len * sizeof(double));
    }
}

#endif /* EMFAST_GAUSSIAN_SIMD_H */
