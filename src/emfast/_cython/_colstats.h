/* emfast: column sums for the feature-major ("cols") statistics of _gaussian_impl.pxi.
 *
 * Every sum runs over the b < m entries of contiguous columns with 8 partial sums,
 * partial u taking entries b = u (mod 8) (the tail, m mod 8 entries, goes to partial 0),
 * combined as ((p0 + p4) + (p1 + p5)) + ((p2 + p6) + (p3 + p7)). The order is fixed by the
 * code, not by the compiler, so the result depends only on the data and m: never on
 * addresses, alignment or threads. With GCC/Clang the 8 partials are two 4-lane vector
 * registers (vector extensions; on a baseline x86-64 build each is two SSE2 registers);
 * other compilers get the same arithmetic in scalar code. Loads use memcpy (unaligned,
 * compiled to plain vector loads). No -ffast-math is needed or used.
 */
#ifndef EMFAST_COLSTATS_H
#define EMFAST_COLSTATS_H

#include <stddef.h>
#include <string.h>

#if defined(__GNUC__) || defined(__clang__)
#define EMFAST_COLS_VEC 1
/* All helpers are static inline: no vector ever crosses a real call, so the ABI note GCC
 * gives for 32-byte vectors in a build without AVX does not apply. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
typedef double emfast_v4d __attribute__((vector_size(32)));

static inline emfast_v4d emfast_ld4(const double* p)
{
    emfast_v4d v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void emfast_st4(double* p, emfast_v4d v)
{
    memcpy(p, &v, sizeof v);
}

static inline double emfast_fold8(emfast_v4d lo, emfast_v4d hi)
{
    /* lanes: lo = p0..p3, hi = p4..p7 */
    emfast_v4d s = lo + hi;                        /* p0+p4, p1+p5, p2+p6, p3+p7 */
    return (s[0] + s[1]) + (s[2] + s[3]);
}
#else
#define EMFAST_COLS_VEC 0
#endif

/* The scalar build's eight running sums p[0..7] folded in emfast_fold8's order. */
static inline double emfast_fold8_scalar(const double* p)
{
    return ((p[0] + p[4]) + (p[1] + p[5])) + ((p[2] + p[6]) + (p[3] + p[7]));
}

/* r[b] = resp[b * K] (one component's column of the (m, K) responsibilities);
 * return sum_b r[b]. */
static inline double emfast_gather_sum(const double* resp, ptrdiff_t K, ptrdiff_t m,
                                       double* r)
{
    ptrdiff_t b = 0;
    for (b = 0; b < m; b++)
        r[b] = resp[b * K];
    b = 0;
#if EMFAST_COLS_VEC
    emfast_v4d lo = {0.0, 0.0, 0.0, 0.0}, hi = lo;
    for (; b + 8 <= m; b += 8) {
        lo += emfast_ld4(r + b);
        hi += emfast_ld4(r + b + 4);
    }
    double t = 0.0;
    for (; b < m; b++)
        t += r[b];
    lo[0] += t;
    return emfast_fold8(lo, hi);
#else
    double p[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int u;
    for (; b + 8 <= m; b += 8)
        for (u = 0; u < 8; u++)
            p[u] += r[b + u];
    double t = 0.0;
    for (; b < m; b++)
        t += r[b];
    p[0] += t;
    return emfast_fold8_scalar(p);
#endif
}

/* One feature column x against one mean mu with weights r:
 * *s1 += sum_b r (x - mu), *s2 += sum_b r (x - mu)^2;
 * if d != NULL, also d[b] = x[b] - mu and rd[b] = r[b] (x[b] - mu). */
static inline void emfast_moments_col(const double* x, double mu, const double* r,
                                      ptrdiff_t m, double* d, double* rd,
                                      double* s1, double* s2)
{
    ptrdiff_t b = 0;
    double ta = 0.0, tq = 0.0, e, f;
#if EMFAST_COLS_VEC
    emfast_v4d a0 = {0.0, 0.0, 0.0, 0.0}, a1 = a0, q0 = a0, q1 = a0;
    emfast_v4d mv = {mu, mu, mu, mu};
    if (d != NULL) {
        for (; b + 8 <= m; b += 8) {
            emfast_v4d e0 = emfast_ld4(x + b) - mv, e1 = emfast_ld4(x + b + 4) - mv;
            emfast_v4d f0 = emfast_ld4(r + b) * e0, f1 = emfast_ld4(r + b + 4) * e1;
            a0 += f0; a1 += f1; q0 += f0 * e0; q1 += f1 * e1;
            emfast_st4(d + b, e0); emfast_st4(d + b + 4, e1);
            emfast_st4(rd + b, f0); emfast_st4(rd + b + 4, f1);
        }
    } else {
        for (; b + 8 <= m; b += 8) {
            emfast_v4d e0 = emfast_ld4(x + b) - mv, e1 = emfast_ld4(x + b + 4) - mv;
            emfast_v4d f0 = emfast_ld4(r + b) * e0, f1 = emfast_ld4(r + b + 4) * e1;
            a0 += f0; a1 += f1; q0 += f0 * e0; q1 += f1 * e1;
        }
    }
#else
    double a[8] = {0, 0, 0, 0, 0, 0, 0, 0}, q[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int u;
    for (; b + 8 <= m; b += 8)
        for (u = 0; u < 8; u++) {
            e = x[b + u] - mu;
            f = r[b + u] * e;
            a[u] += f;
            q[u] += f * e;
            if (d != NULL) { d[b + u] = e; rd[b + u] = f; }
        }
#endif
    for (; b < m; b++) {
        e = x[b] - mu;
        f = r[b] * e;
        ta += f;
        tq += f * e;
        if (d != NULL) { d[b] = e; rd[b] = f; }
    }
#if EMFAST_COLS_VEC
    a0[0] += ta;
    q0[0] += tq;
    *s1 += emfast_fold8(a0, a1);
    *s2 += emfast_fold8(q0, q1);
#else
    a[0] += ta;
    q[0] += tq;
    *s1 += emfast_fold8_scalar(a);
    *s2 += emfast_fold8_scalar(q);
#endif
}

/* *s0 += sum_b a[b] c0[b]; *s1 += sum_b a[b] c1[b]. */
static inline void emfast_dot2_col(const double* a, const double* c0, const double* c1,
                                   ptrdiff_t m, double* s0, double* s1)
{
    ptrdiff_t b = 0;
    double t0 = 0.0, t1 = 0.0;
#if EMFAST_COLS_VEC
    emfast_v4d p0 = {0.0, 0.0, 0.0, 0.0}, p1 = p0, q0 = p0, q1 = p0;
    for (; b + 8 <= m; b += 8) {
        emfast_v4d x0 = emfast_ld4(a + b), x1 = emfast_ld4(a + b + 4);
        p0 += x0 * emfast_ld4(c0 + b);
        p1 += x1 * emfast_ld4(c0 + b + 4);
        q0 += x0 * emfast_ld4(c1 + b);
        q1 += x1 * emfast_ld4(c1 + b + 4);
    }
#else
    double p[8] = {0, 0, 0, 0, 0, 0, 0, 0}, q[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int u;
    for (; b + 8 <= m; b += 8)
        for (u = 0; u < 8; u++) {
            p[u] += a[b + u] * c0[b + u];
            q[u] += a[b + u] * c1[b + u];
        }
#endif
    for (; b < m; b++) {
        t0 += a[b] * c0[b];
        t1 += a[b] * c1[b];
    }
#if EMFAST_COLS_VEC
    p0[0] += t0;
    q0[0] += t1;
    *s0 += emfast_fold8(p0, p1);
    *s1 += emfast_fold8(q0, q1);
#else
    p[0] += t0;
    q[0] += t1;
    *s0 += emfast_fold8_scalar(p);
    *s1 += emfast_fold8_scalar(q);
#endif
}

#endif /* EMFAST_COLSTATS_H */
