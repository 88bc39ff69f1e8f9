/* emfast: squared distances of a feature-major block of rows to a set of centres, for the
 * k-means kernels (_kmeans_impl.pxi); and the row norms of the dgemm-distance path.
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

static inline void emfast_sqdist_T(const double* xT, ptrdiff_t ld, int D, const double* c,
                                   int K, ptrdiff_t m, double* d)
{
    ptrdiff_t b;
    int k0, j;
    for (k0 = 0; k0 < K; k0 += 4) {
        /* a short last tile repeats its last centre and stores only the real ones */
        const double* cj[4];
        for (j = 0; j < 4; j++)
            cj[j] = c + (ptrdiff_t)(k0 + j < K ? k0 + j : K - 1) * D;
        for (b = 0; b < m; b += 4) {
            emfast_km_v4d a[4];
            emfast_km_tile(xT, ld, D, cj, b, a);
            for (j = 0; j < 4 && k0 + j < K; j++)
                memcpy(d + (ptrdiff_t)(k0 + j) * ld + b, &a[j], sizeof a[j]);
        }
    }
}
typedef long long emfast_km_v4i __attribute__((vector_size(32)));

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

/* Where m is set, take v and its index; elsewhere keep best and arg. */
static inline void emfast_km_take(emfast_km_v4d v, emfast_km_v4i idx, emfast_km_v4d* best,
                                  emfast_km_v4i* arg)
{
    emfast_km_v4i m = (emfast_km_v4i)(v < *best);   /* strict: ties keep the lower index */
    *best = (emfast_km_v4d)(((emfast_km_v4i)v & m) | ((emfast_km_v4i)*best & ~m));
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

/* What emfast_sqdist_T followed by emfast_argmin_cols gives (the same sums, the same bits):
 * the nearest centre of each row, here with the 4 x 4 tile's sums compared in registers and
 * no distance stored (d, (K, ld) scratch, is used only by the scalar build). */
static inline void emfast_nearest_T(const double* xT, ptrdiff_t ld, int D, const double* c,
                                    int K, ptrdiff_t m, double* best, int64_t* arg,
                                    double* d)
{
    ptrdiff_t b;
    int k0, j;
    for (b = 0; b < m; b += 4) {
        emfast_km_v4d bv = {INFINITY, INFINITY, INFINITY, INFINITY};
        emfast_km_v4i av = {0, 0, 0, 0};
        for (k0 = 0; k0 < K; k0 += 4) {
            const double* cj[4];
            emfast_km_v4d a[4];
            for (j = 0; j < 4; j++)
                cj[j] = c + (ptrdiff_t)(k0 + j < K ? k0 + j : K - 1) * D;
            emfast_km_tile(xT, ld, D, cj, b, a);
            /* a repeated last centre never wins: equal sums keep the lower index */
            for (j = 0; j < 4; j++)
                emfast_km_take(a[j], (emfast_km_v4i){k0 + j, k0 + j, k0 + j, k0 + j}, &bv, &av);
        }
        memcpy(best + b, &bv, sizeof bv);
        memcpy(arg + b, &av, sizeof av);
    }
}
#else
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

static inline void emfast_nearest_T(const double* xT, ptrdiff_t ld, int D, const double* c,
                                    int K, ptrdiff_t m, double* best, int64_t* arg,
                                    double* d)
{
    emfast_sqdist_T(xT, ld, D, c, K, m, d);
    emfast_argmin_cols(d, ld, K, m, best, arg);
}
#endif

#endif
