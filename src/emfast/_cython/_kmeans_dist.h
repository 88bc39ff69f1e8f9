/* emfast: squared distances of a feature-major block of rows to a set of centres, for the
 * k-means kernels (_kmeans_impl.pxi); the same as ||x||^2 - 2 x.c + ||c||^2 from row-major
 * rows (emfast_sqdist_rows, the dgemm distances without dgemm); the k-means++ potential
 * sums; the row norms of those distances; the cluster sums of a block's rows.
 *
 * d[k * ld + b] = sum_i (xT[i * ld + b] - c[k * D + i])^2, summed over i in feature order, for
 * b < m rounded up to a multiple of 4 (the caller's buffers are ld >= that wide; the extra
 * entries are computed from whatever xT holds there and never read). Each distance is one
 * running sum in feature order, so its bits depend only on the data, never on addresses or
 * threads.
 *
 * Register tile: 4 rows (one 4-lane vector) x 4 centres. Each loaded vector of x serves four
 * centres, and the four sums stay in registers for all D features, instead of a load and a
 * store of the sums per feature (what the compiler makes of the plain loop). With GCC/Clang
 * the tile is vector extensions (on a baseline x86-64 build, pairs of SSE2 registers; in
 * the AVX2 build one register and fused multiply-adds); other compilers get the same
 * arithmetic in scalar code.
 */
#ifndef EMFAST_KMEANS_DIST_H
#define EMFAST_KMEANS_DIST_H

#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <string.h>
#ifdef __AVX__
#include <immintrin.h>
#endif

#if defined(__GNUC__) || defined(__clang__)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
typedef double emfast_km_v4d __attribute__((vector_size(32)));

/* The 4 x 4 register tile: the squared distances of rows b..b+3 to the centres cj[0..3],
 * each one running sum in feature order (the one definition of a distance's bits). */
static inline void emfast_km_tile(const double* xT, ptrdiff_t ld, int D,
                                  const double* const cj[4], ptrdiff_t b, emfast_km_v4d a[4])
{
    emfast_km_v4d a0 = {0.0, 0.0, 0.0, 0.0}, a1 = a0, a2 = a0, a3 = a0, x, t;
    int i;
    for (i = 0; i < D; i++) {
        memcpy(&x, xT + (ptrdiff_t)i * ld + b, sizeof x);
        t = x - cj[0][i];
        a0 += t * t;
        t = x - cj[1][i];
        a1 += t * t;
        t = x - cj[2][i];
        a2 += t * t;
        t = x - cj[3][i];
        a3 += t * t;
    }
    a[0] = a0;
    a[1] = a1;
    a[2] = a2;
    a[3] = a3;
}

/* The centres k0..k0+3 of a tile; a short last tile repeats its last centre */
static inline void emfast_km_tile_centres(const double* c, int K, int D, int k0,
                                          const double* cj[4])
{
    int j;
    for (j = 0; j < 4; j++)
        cj[j] = c + (ptrdiff_t)(k0 + j < K ? k0 + j : K - 1) * D;
}

static inline void emfast_sqdist_T(const double* xT, ptrdiff_t ld, int D, const double* c,
                                   int K, ptrdiff_t m, double* d)
{
    ptrdiff_t b;
    int k0, j;
    for (k0 = 0; k0 < K; k0 += 4) {
        /* a short last tile stores only the real centres */
        const double* cj[4];
        emfast_km_tile_centres(c, K, D, k0, cj);
        for (b = 0; b < m; b += 4) {
            emfast_km_v4d a[4];
            emfast_km_tile(xT, ld, D, cj, b, a);
            for (j = 0; j < 4 && k0 + j < K; j++)
                memcpy(d + (ptrdiff_t)(k0 + j) * ld + b, &a[j], sizeof a[j]);
        }
    }
}
typedef long long emfast_km_v4i __attribute__((vector_size(32)));
typedef double emfast_km_v4d_mem __attribute__((vector_size(32), aligned(8), may_alias));

/* [the lane sum of a0, ..., of a3], each (l0 + l1) + (l2 + l3) */
static inline emfast_km_v4d emfast_km_hsum4(emfast_km_v4d a0, emfast_km_v4d a1,
                                            emfast_km_v4d a2, emfast_km_v4d a3)
{
#ifdef __AVX__
    /* hadd: [a0 l0+l1, a1 l0+l1, a0 l2+l3, a1 l2+l3]; the halves of the two, added */
    __m256d h01 = _mm256_hadd_pd((__m256d)a0, (__m256d)a1);
    __m256d h23 = _mm256_hadd_pd((__m256d)a2, (__m256d)a3);
    return (emfast_km_v4d)_mm256_add_pd(_mm256_permute2f128_pd(h01, h23, 0x20),
                                        _mm256_permute2f128_pd(h01, h23, 0x31));
#else
    emfast_km_v4d s = {(a0[0] + a0[1]) + (a0[2] + a0[3]), (a1[0] + a1[1]) + (a1[2] + a1[3]),
                       (a2[0] + a2[1]) + (a2[2] + a2[3]), (a3[0] + a3[1]) + (a3[2] + a3[3])};
    return s;
#endif
}

/* Unroll the next loop fully (loops over a tile's sums: rolled, the sums live in memory) */
#if defined(__clang__)
#define EMFAST_KM_UNROLL _Pragma("unroll")
#else
#define EMFAST_KM_UNROLL _Pragma("GCC unroll 16")
#endif

/* Centres per tile of the direct distances: 4 rows x J centres of sums, J centre vectors
 * and a row vector fit AVX2's 16 registers at J = 3 (J = 4 spills). */
#define EMFAST_KM_DIRECT_J 3
/* Vectors per chunk of the cluster sums: two rows' worth of sums, 8 registers */
#define EMFAST_KM_SUM_V 4
#define EMFAST_KM_W 4                 /* doubles per vector */

/* The n doubles at p, 0 < n <= 4, zeros after them */
static inline __attribute__((always_inline)) emfast_km_v4d emfast_km_ld(const double* p,
                                                                         int n)
{
    if (n >= EMFAST_KM_W)
        return *(const emfast_km_v4d_mem*)p;
#ifdef __AVX2__
    return (emfast_km_v4d)_mm256_maskload_pd(
        p, _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3)));
#else
    {
        emfast_km_v4d v = {0.0, 0.0, 0.0, 0.0};
        memcpy(&v, p, (size_t)n * sizeof(double));
        return v;
    }
#endif
}

/* a[j][r] += x_r . c_j over the n features at i (n <= 4; the same multiply-adds with
 * zeros past n) */
static inline __attribute__((always_inline)) void emfast_km_dot_step(
    const int J, const double* const xr[4], const double* const cj[], int i, int n,
    emfast_km_v4d a[][4])
{
    emfast_km_v4d x, c[EMFAST_KM_DIRECT_J];
    int j, r;
    EMFAST_KM_UNROLL
    for (j = 0; j < J; j++)
        c[j] = emfast_km_ld(cj[j] + i, n);
    EMFAST_KM_UNROLL
    for (r = 0; r < 4; r++) {
        x = emfast_km_ld(xr[r] + i, n);
        EMFAST_KM_UNROLL
        for (j = 0; j < J; j++)
            a[j][r] += x * c[j];
    }
}

/* dot[j][r] = x_r . c_j for the 4 rows xr and J (a constant once inlined) centres cj: per
 * pair 4 lane sums over the features i = l mod 4 (in order), the last partial vector
 * zero-filled, the lanes then added as emfast_km_hsum4 does. Each row vector loaded feeds
 * J multiply-adds, each centre vector 4, and the 4 J independent sums keep both FMA pipes
 * busy. */
static inline __attribute__((always_inline)) void emfast_km_dot_tile(
    const int J, const double* const xr[4], const double* const cj[], int D,
    emfast_km_v4d dot[])
{
    emfast_km_v4d a[EMFAST_KM_DIRECT_J][4];
    int i, j, r;
    EMFAST_KM_UNROLL
    for (j = 0; j < J; j++)
        EMFAST_KM_UNROLL
        for (r = 0; r < 4; r++)
            a[j][r] = (emfast_km_v4d){0.0};
    for (i = 0; i + EMFAST_KM_W <= D; i += EMFAST_KM_W)
        emfast_km_dot_step(J, xr, cj, i, EMFAST_KM_W, a);
    if (i < D)
        emfast_km_dot_step(J, xr, cj, i, D - i, a);
    EMFAST_KM_UNROLL
    for (j = 0; j < J; j++)
        dot[j] = emfast_km_hsum4(a[j][0], a[j][1], a[j][2], a[j][3]);
}

/* d[k * ld + b] = (xsq[r] - 2 x_r.c_k) + csq[k], clamped at 0 (cancellation can leave
 * -1e-16; NaN gives 0), for the m rows r = b (rows NULL) or r = rows[b] of the row-major
 * block xb (D features) and the K centres c (K, D), for b < m rounded up to 4 (the extra
 * entries: the last row's): what the dgemm distances compute, from the rows as they lie.
 * A row's distances are the same bits whichever rows share its tiles. For a few centres, dgemm runs
 * such a thin (m x D) by (D x K) product well below the multiply-add units' peak, which
 * this tile reaches (AVX2, 2-core Zen 5: 1.1 to 1.5 times faster Lloyd passes at K <= 8,
 * D = 16..64). */
static inline void emfast_sqdist_rows(const double* xb, int D, const double* xsq,
                                      const double* c, const double* csq, int K, ptrdiff_t m,
                                      ptrdiff_t ld, double* d, const int* rows)
{
    const emfast_km_v4d zero = {0.0, 0.0, 0.0, 0.0};
    ptrdiff_t b, row;
    int k0, j, r, J;
    for (b = 0; b < m; b += 4) {
        const double* xr[4];
        const double* cj[EMFAST_KM_DIRECT_J];
        emfast_km_v4d q, dot[EMFAST_KM_DIRECT_J], t;
        for (r = 0; r < 4; r++) {   /* past the last row: the last row again */
            row = b + r < m ? b + r : m - 1;
            if (rows != NULL)
                row = rows[row];
            xr[r] = xb + row * D;
            q[r] = xsq[row];
        }
        for (k0 = 0; k0 < K; k0 += J) {
            J = K - k0 < EMFAST_KM_DIRECT_J ? K - k0 : EMFAST_KM_DIRECT_J;
            for (j = 0; j < J; j++)
                cj[j] = c + (ptrdiff_t)(k0 + j) * D;
            switch (J) {     /* a constant J per instance: the sums stay in registers */
            case 1: emfast_km_dot_tile(1, xr, cj, D, dot); break;
            case 2: emfast_km_dot_tile(2, xr, cj, D, dot); break;
            default: emfast_km_dot_tile(EMFAST_KM_DIRECT_J, xr, cj, D, dot); break;
            }
            for (j = 0; j < J; j++) {
                t = (q - 2.0 * dot[j]) + csq[k0 + j];
                t = (emfast_km_v4d)((emfast_km_v4i)t & (emfast_km_v4i)(t > zero));
                memcpy(d + (ptrdiff_t)(k0 + j) * ld + b, &t, sizeof t);
            }
        }
    }
}

/* out[b] = ||x_b||^2 for the m rows of the row-major block xb (D features each). Two
 * 4-lane partial sums per row, lanes and halves added in a fixed order: a plain running sum
 * is one dependent add per feature, which made this the slowest part of a dgemm-distance
 * block at D = 64 (a quarter of a Lloyd pass on scikit-learn's digits). */
static inline void emfast_row_sqnorms(const double* xb, int D, ptrdiff_t m, double* out)
{
    ptrdiff_t b;
    int i;
    for (b = 0; b < m; b++) {
        const double* x = xb + b * (ptrdiff_t)D;
        emfast_km_v4d a0 = {0.0, 0.0, 0.0, 0.0}, a1 = a0, v, u;
        double s;
        for (i = 0; i + 8 <= D; i += 8) {
            memcpy(&v, x + i, sizeof v);
            memcpy(&u, x + i + 4, sizeof u);
            a0 += v * v;
            a1 += u * u;
        }
        a0 += a1;
        s = (a0[0] + a0[1]) + (a0[2] + a0[3]);
        for (; i < D; i++)
            s += x[i] * x[i];
        out[b] = s;
    }
}

/* Where v < best, take v and its index; elsewhere keep best and arg. */
static inline void emfast_km_take(emfast_km_v4d v, emfast_km_v4i idx, emfast_km_v4d* best,
                                  emfast_km_v4i* arg)
{
    emfast_km_v4i m = (emfast_km_v4i)(v < *best);   /* strict: ties keep the lower index */
#ifdef __AVX__
    /* vminpd is exactly v < best ? v : best (NaN: best), one instruction for a blend */
    *best = (emfast_km_v4d)_mm256_min_pd((__m256d)v, (__m256d)*best);
#else
    *best = (emfast_km_v4d)(((emfast_km_v4i)v & m) | ((emfast_km_v4i)*best & ~m));
#endif
    *arg = (idx & m) | (*arg & ~m);
}

/* best[b] = min_k d[k * ld + b], arg[b] = the lowest k attaining it, for b < m rounded up
 * to 4 (a NaN distance is never taken; all NaN: +inf and 0). */
static inline void emfast_argmin_cols(const double* d, ptrdiff_t ld, int K, ptrdiff_t m,
                                      double* best, int64_t* arg)
{
    ptrdiff_t b;
    int k;
    for (b = 0; b < m; b += 4) {
        emfast_km_v4d bv = {INFINITY, INFINITY, INFINITY, INFINITY}, v;
        emfast_km_v4i av = {0, 0, 0, 0};
        for (k = 0; k < K; k++) {
            emfast_km_v4i kv = {k, k, k, k};
            memcpy(&v, d + (ptrdiff_t)k * ld + b, sizeof v);
            emfast_km_take(v, kv, &bv, &av);
        }
        memcpy(best + b, &bv, sizeof bv);
        memcpy(arg + b, &av, sizeof av);
    }
}

/* The nearest-centre search of one row vector in two independent chains, over the even and
 * the odd centres (one chain of compares and blends, each waiting on the last, bounds the
 * search at ~5 cycles per centre; more chains spill AVX2's 16 registers). */
#define EMFAST_KM_CHAINS 2
typedef struct {
    emfast_km_v4d best[EMFAST_KM_CHAINS];
    emfast_km_v4i arg[EMFAST_KM_CHAINS];
} emfast_km_chains;

static inline void emfast_km_chains_init(emfast_km_chains* ch)
{
    int j;
    for (j = 0; j < EMFAST_KM_CHAINS; j++) {
        ch->best[j] = (emfast_km_v4d){INFINITY, INFINITY, INFINITY, INFINITY};
        ch->arg[j] = (emfast_km_v4i){0, 0, 0, 0};
    }
}

/* Fold a tile's sums a[j] (centre k0 + j) into chain j mod EMFAST_KM_CHAINS */
static inline void emfast_km_take_tile(const emfast_km_v4d a[4], int k0, emfast_km_chains* ch)
{
    int j;
    for (j = 0; j < 4; j++)
        emfast_km_take(a[j], (emfast_km_v4i){k0 + j, k0 + j, k0 + j, k0 + j},
                       &ch->best[j % EMFAST_KM_CHAINS], &ch->arg[j % EMFAST_KM_CHAINS]);
}

/* Chain q into chain p: the smaller sum, on equal sums the lower index */
static inline void emfast_km_merge(emfast_km_chains* ch, int p, int q)
{
    emfast_km_v4d v = ch->best[q], b = ch->best[p];
    emfast_km_v4i m = (emfast_km_v4i)(v < b)
                      | ((emfast_km_v4i)(v == b) & (ch->arg[q] < ch->arg[p]));
    ch->best[p] = (emfast_km_v4d)(((emfast_km_v4i)v & m) | ((emfast_km_v4i)b & ~m));
    ch->arg[p] = (ch->arg[q] & m) | (ch->arg[p] & ~m);
}

/* Store the nearest centre of the 4 rows at b: what one chain over k = 0, 1, ... (strict <)
 * gives, the lowest index among equal sums (a repeated last centre of a short tile never
 * wins), +inf and 0 where every sum is NaN */
static inline void emfast_km_chains_store(emfast_km_chains* ch, ptrdiff_t b, double* best,
                                          int64_t* arg)
{
    emfast_km_merge(ch, 0, 1);
    memcpy(best + b, &ch->best[0], sizeof ch->best[0]);
    memcpy(arg + b, &ch->arg[0], sizeof ch->arg[0]);
}

/* v = d where d < closest, else closest, for the 4 rows at b (stored to out if non-NULL);
 * returns w * v */
static inline emfast_km_v4d emfast_km_min_w4(const double* d, const double* closest,
                                             const double* w, ptrdiff_t b, double* out)
{
    emfast_km_v4d dv, cv, wv;
    memcpy(&dv, d + b, sizeof dv);
    memcpy(&cv, closest + b, sizeof cv);
    memcpy(&wv, w + b, sizeof wv);
    emfast_km_v4i lt = (emfast_km_v4i)(dv < cv);
    cv = (emfast_km_v4d)(((emfast_km_v4i)dv & lt) | ((emfast_km_v4i)cv & ~lt));
    if (out != NULL)
        memcpy(out + b, &cv, sizeof cv);
    return wv * cv;
}

/* sum_b w[b] v[b] with v[b] = d[b] if d[b] < closest[b] else closest[b], for b < m: the
 * potential a candidate leaves, or with out = closest, the fold of a new centre into the
 * closest distances (out[b] = v[b]; out may be NULL). Two vector sums over 8-row steps,
 * lanes folded in a fixed order, then the last m % 8 rows one by one: an order fixed by m
 * alone (the scalar chain this replaces ran at the latency of one add per row). */
static inline double emfast_min_wsum(const double* d, const double* closest, const double* w,
                                     ptrdiff_t m, double* out)
{
    emfast_km_v4d s0 = {0.0, 0.0, 0.0, 0.0}, s1 = s0;
    ptrdiff_t b;
    double s;
    for (b = 0; b + 8 <= m; b += 8) {
        s0 += emfast_km_min_w4(d, closest, w, b, out);
        s1 += emfast_km_min_w4(d, closest, w, b + 4, out);
    }
    s0 += s1;
    s = (s0[0] + s0[2]) + (s0[1] + s0[3]);
    for (; b < m; b++) {
        double v = d[b] < closest[b] ? d[b] : closest[b];
        if (out != NULL)
            out[b] = v;
        s += w[b] * v;
    }
    return s;
}

/* The nearest of the K centres c to each row b < m (best, arg), with D a compile-time
 * constant when inlined from emfast_nearest_T's switch: a row vector's D features are loaded
 * once and stay in registers for every centre, the feature loop unrolls. Same sums as
 * emfast_km_tile (t = x - c, a += t * t in feature order), so the same bits. */
#define EMFAST_KM_FIXED_D 8        /* largest D with a compile-time instance */
static inline __attribute__((always_inline)) void emfast_km_nearest_fixed(
    const int D, const double* xT, ptrdiff_t ld, const double* c, int K, ptrdiff_t m,
    double* best, int64_t* arg)
{
    ptrdiff_t b;
    for (b = 0; b < m; b += 4) {
        emfast_km_v4d x[EMFAST_KM_FIXED_D];
        emfast_km_chains ch;
        int i, k0, j;
        emfast_km_chains_init(&ch);
        for (i = 0; i < D; i++)
            memcpy(&x[i], xT + (ptrdiff_t)i * ld + b, sizeof x[i]);
        for (k0 = 0; k0 < K; k0 += 4) {
            const double* cj[4];
            emfast_km_v4d a[4] = {{0.0, 0.0, 0.0, 0.0}, {0.0, 0.0, 0.0, 0.0},
                                  {0.0, 0.0, 0.0, 0.0}, {0.0, 0.0, 0.0, 0.0}}, t;
            emfast_km_tile_centres(c, K, D, k0, cj);
            for (i = 0; i < D; i++)
                for (j = 0; j < 4; j++) {
                    t = x[i] - cj[j][i];
                    a[j] += t * t;
                }
            emfast_km_take_tile(a, k0, &ch);
        }
        emfast_km_chains_store(&ch, b, best, arg);
    }
}

/* What emfast_sqdist_T followed by emfast_argmin_cols gives (the same sums, the same bits):
 * the nearest centre of each row, here with the 4 x 4 tile's sums compared in registers and
 * no distance stored (d, (K, ld) scratch, is used only by the scalar build). Up to
 * EMFAST_KM_FIXED_D features, a per-D instance. With the two chains and vminpd, a Lloyd
 * pass over 16,384 x 4 rows (AVX2 build, 1 thread) went from 316 to 292 us at K = 32 and
 * from 532 to 456 us at K = 64. */
static inline void emfast_nearest_T(const double* xT, ptrdiff_t ld, int D, const double* c,
                                    int K, ptrdiff_t m, double* best, int64_t* arg,
                                    double* d)
{
    ptrdiff_t b;
    int k0;
    (void) d;
    switch (D) {
#define EMFAST_KM_CASE(DD) \
    case DD: emfast_km_nearest_fixed(DD, xT, ld, c, K, m, best, arg); return;
    EMFAST_KM_CASE(1) EMFAST_KM_CASE(2) EMFAST_KM_CASE(3) EMFAST_KM_CASE(4)
    EMFAST_KM_CASE(5) EMFAST_KM_CASE(6) EMFAST_KM_CASE(7) EMFAST_KM_CASE(8)
#undef EMFAST_KM_CASE
    default: break;
    }
    for (b = 0; b < m; b += 4) {
        emfast_km_chains ch;
        emfast_km_chains_init(&ch);
        for (k0 = 0; k0 < K; k0 += 4) {
            const double* cj[4];
            emfast_km_v4d a[4];
            emfast_km_tile_centres(c, K, D, k0, cj);
            emfast_km_tile(xT, ld, D, cj, b, a);
            emfast_km_take_tile(a, k0, &ch);
        }
        emfast_km_chains_store(&ch, b, best, arg);
    }
}

/* s[l] += sum over the n rows r = rows[0..n) of w[r] v_r, v_r = x[r * D + i + l] (c NULL)
 * or (x[r * D + i + l] - c[i + l])^2, for the V vectors of features at i (the last holding
 * f <= EMFAST_KM_W of them): the rows in pairs, the first of each pair (and an odd last
 * row) into sums started from s, the second into sums started from 0, the two added at the
 * end; an order fixed by n. The sums stay in registers for all n rows, and the two chains
 * of each vector keep the FMA pipes busy (one chain waits a multiply-add's latency per
 * row). */
static inline __attribute__((always_inline)) emfast_km_v4d emfast_km_term(
    const double* x, const double* c, int f)
{
    emfast_km_v4d v = emfast_km_ld(x, f);
    if (c != NULL) {
        v -= emfast_km_ld(c, f);
        v *= v;
    }
    return v;
}

static inline __attribute__((always_inline)) void emfast_km_add_rows_chunk(
    const int V, int f, const double* x, int D, int i, const int* rows, int n,
    const double* w, const double* c, double* s)
{
    emfast_km_v4d a[EMFAST_KM_SUM_V], e[EMFAST_KM_SUM_V];
    int j, r;
    EMFAST_KM_UNROLL
    for (j = 0; j < V; j++) {
        a[j] = emfast_km_ld(s + i + j * EMFAST_KM_W, j < V - 1 ? EMFAST_KM_W : f);
        e[j] = (emfast_km_v4d){0.0};
    }
    for (r = 0; r + 2 <= n; r += 2) {
        const double* x0 = x + (ptrdiff_t)rows[r] * D + i;
        const double* x1 = x + (ptrdiff_t)rows[r + 1] * D + i;
        double w0 = w[rows[r]], w1 = w[rows[r + 1]];
        EMFAST_KM_UNROLL
        for (j = 0; j < V; j++) {
            int fj = j < V - 1 ? EMFAST_KM_W : f;
            const double* cj = c == NULL ? NULL : c + i + j * EMFAST_KM_W;
            a[j] += w0 * emfast_km_term(x0 + j * EMFAST_KM_W, cj, fj);
            e[j] += w1 * emfast_km_term(x1 + j * EMFAST_KM_W, cj, fj);
        }
    }
    if (r < n) {
        const double* x0 = x + (ptrdiff_t)rows[r] * D + i;
        EMFAST_KM_UNROLL
        for (j = 0; j < V; j++)
            a[j] += w[rows[r]] * emfast_km_term(x0 + j * EMFAST_KM_W,
                                                c == NULL ? NULL : c + i + j * EMFAST_KM_W,
                                                j < V - 1 ? EMFAST_KM_W : f);
    }
    EMFAST_KM_UNROLL
    for (j = 0; j < V; j++) {
        emfast_km_v4d t = a[j] + e[j];
        memcpy(s + i + j * EMFAST_KM_W, &t,
               (size_t)(j < V - 1 ? EMFAST_KM_W : f) * sizeof(double));
    }
}

/* s[i] += sum of w[r] * x[r * D + i] over the n rows r = rows[0], ..., rows[n - 1], for
 * i < D: features in chunks of EMFAST_KM_SUM_V vectors, then vector by vector, the last
 * one partial (emfast_km_add_rows_chunk). Storing and reloading every sum per row instead
 * (each waiting on the last row's store) made the cluster sums the slowest part of a
 * Lloyd pass at D = 64. And count[0] += w[r], r in that order (the weight a row-by-row
 * loop adds, in a register instead of through memory). */
static inline void emfast_km_add_terms(const double* x, int D, const int* rows, int n,
                                       const double* w, const double* c, double* s)
{
    int i = 0;
    for (; i + EMFAST_KM_SUM_V * EMFAST_KM_W <= D; i += EMFAST_KM_SUM_V * EMFAST_KM_W)
        emfast_km_add_rows_chunk(EMFAST_KM_SUM_V, EMFAST_KM_W, x, D, i, rows, n, w, c, s);
    for (; i + EMFAST_KM_W <= D; i += EMFAST_KM_W)
        emfast_km_add_rows_chunk(1, EMFAST_KM_W, x, D, i, rows, n, w, c, s);
    if (i < D)
        emfast_km_add_rows_chunk(1, D - i, x, D, i, rows, n, w, c, s);
}

static inline void emfast_add_rows(const double* x, int D, const int* rows, int n,
                                   const double* w, double* s, double* count)
{
    double c = count[0];
    int r;
    for (r = 0; r < n; r++)
        c += w[rows[r]];
    count[0] = c;
    emfast_km_add_terms(x, D, rows, n, w, NULL, s);
}

/* s[i] += sum of w[r] (x[r * D + i] - c[i])^2 over the n rows r = rows[0], ...,
 * rows[n - 1], for i < D: the cluster scatter's diagonal, in emfast_add_rows' order */
static inline void emfast_add_sq_rows(const double* x, int D, const int* rows, int n,
                                      const double* w, const double* c, double* s)
{
    emfast_km_add_terms(x, D, rows, n, w, c, s);
}
#else
static inline void emfast_add_rows(const double* x, int D, const int* rows, int n,
                                   const double* w, double* s, double* count)
{
    int i, r;
    for (r = 0; r < n; r++) {
        count[0] += w[rows[r]];
        for (i = 0; i < D; i++)
            s[i] += w[rows[r]] * x[(ptrdiff_t)rows[r] * D + i];
    }
}
static inline void emfast_add_sq_rows(const double* x, int D, const int* rows, int n,
                                      const double* w, const double* c, double* s)
{
    int i, r;
    for (r = 0; r < n; r++)
        for (i = 0; i < D; i++) {
            double d = x[(ptrdiff_t)rows[r] * D + i] - c[i];
            s[i] += w[rows[r]] * d * d;
        }
}
static inline void emfast_row_sqnorms(const double* xb, int D, ptrdiff_t m, double* out)
{
    ptrdiff_t b;
    int i;
    for (b = 0; b < m; b++) {
        double s = 0.0;
        for (i = 0; i < D; i++)
            s += xb[b * (ptrdiff_t)D + i] * xb[b * (ptrdiff_t)D + i];
        out[b] = s;
    }
}

static inline void emfast_sqdist_rows(const double* xb, int D, const double* xsq,
                                      const double* c, const double* csq, int K, ptrdiff_t m,
                                      ptrdiff_t ld, double* d, const int* rows)
{
    ptrdiff_t b, row;
    int k, i;
    double s, t;
    for (k = 0; k < K; k++)
        for (b = 0; b < m; b++) {
            row = rows != NULL ? rows[b] : b;
            s = 0.0;
            for (i = 0; i < D; i++)
                s += xb[row * (ptrdiff_t)D + i] * c[(ptrdiff_t)k * D + i];
            t = (xsq[row] - 2.0 * s) + csq[k];
            d[(ptrdiff_t)k * ld + b] = t > 0.0 ? t : 0.0;
        }
}

static inline void emfast_sqdist_T(const double* xT, ptrdiff_t ld, int D, const double* c,
                                   int K, ptrdiff_t m, double* d)
{
    ptrdiff_t b;
    int k, i;
    double s, t;
    for (k = 0; k < K; k++)
        for (b = 0; b < m; b++) {
            s = 0.0;
            for (i = 0; i < D; i++) {
                t = xT[(ptrdiff_t)i * ld + b] - c[(ptrdiff_t)k * D + i];
                s += t * t;
            }
            d[(ptrdiff_t)k * ld + b] = s;
        }
}
static inline void emfast_argmin_cols(const double* d, ptrdiff_t ld, int K, ptrdiff_t m,
                                      double* best, int64_t* arg)
{
    ptrdiff_t b;
    int k;
    for (b = 0; b < m; b++) {
        best[b] = INFINITY;
        arg[b] = 0;
        for (k = 0; k < K; k++)
            if (d[(ptrdiff_t)k * ld + b] < best[b]) {
                best[b] = d[(ptrdiff_t)k * ld + b];
                arg[b] = k;
            }
    }
}

static inline double emfast_min_wsum(const double* d, const double* closest, const double* w,
                                     ptrdiff_t m, double* out)
{
    ptrdiff_t b;
    double s = 0.0;
    for (b = 0; b < m; b++) {
        double v = d[b] < closest[b] ? d[b] : closest[b];
        if (out != NULL)
            out[b] = v;
        s += w[b] * v;
    }
    return s;
}

static inline void emfast_nearest_T(const double* xT, ptrdiff_t ld, int D, const double* c,
                                    int K, ptrdiff_t m, double* best, int64_t* arg,
                                    double* d)
{
    emfast_sqdist_T(xT, ld, D, c, K, m, d);
    emfast_argmin_cols(d, ld, K, m, best, arg);
}
#endif

#endif
