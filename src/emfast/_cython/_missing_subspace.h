/* emfast: the algebra of the missing-value E-step's subspace path (_missing_impl.pxi).
 *
 * A run of rows sharing one missing pattern (M missing, O observed) is the complete-data
 * E-step in the observed subspace (_gaussian_simd.h, o = |O| features, precision
 * P = Sigma_OO^-1) followed by a linear map: with d_O = x_O - mu_O, the conditional mean's
 * offset is d_M = R d_O, R = -Lambda_MM^-1 Lambda_MO, so a row's centred, filled vector is
 * A d_O with A = [I_O; R], and its conditional covariance C = Lambda_MM^-1 does not depend
 * on the row. Sums over the run's rows therefore map once per run:
 *     s1 += A t1,    s2 += A t2 A' + nk C,    t1 = sum r d_O, t2 = sum r d_O d_O'.
 * Matrices are row-major with their own sizes as strides; obs and mis ascending.
 */
#ifndef EMFAST_MISSING_SUBSPACE_H
#define EMFAST_MISSING_SUBSPACE_H

#include <math.h>

#if defined(__GNUC__) && !defined(__clang__)
/* loops of a few iterations each (once per run and component): vectorising them only adds
 * prologues and epilogues */
#define EMFAST_M_SCALAR __attribute__((optimize("no-tree-vectorize")))
#else
#define EMFAST_M_SCALAR
#endif

/* log of a product of positive factors, one log per call (rescaled far from overflow) */
#define EMFAST_M_LOGPROD_ADD(acc, prod, f)                                                 \
    do {                                                                                   \
        (prod) *= (f);                                                                     \
        if ((prod) > 1e150 || (prod) < 1e-150) { (acc) += log(prod); (prod) = 1.0; }       \
    } while (0)

/* One component's model of the pattern, from its precision lam (D, D):
 *   linv (m, m): L^-1, lower triangular, with L L' = Lambda_MM (the noise draws' L^-T z);
 *   C (m, m) = Lambda_MM^-1 = L^-T L^-1;  R (m, o) = -C Lambda_MO;
 *   U (o, o), upper triangular (zeros below), U U' = P = Lambda_OO + Lambda_OM R: the
 *   complete-data kernels' factor of the subspace precision;  *logdet = log det P.
 * tmp: D * D doubles of scratch. Returns 0, or -1 when Lambda_MM or P is not numerically
 * positive definite. */
EMFAST_M_SCALAR
static int emfast_m_subspace(const double* lam, int D, const int* obs, int o, const int* mis,
                             int m, double* linv, double* C, double* R, double* U,
                             double* logdet, double* tmp)
{
    double* L = tmp;                              /* (m, m), then P (o, o) lower */
    for (int j = 0; j < m; j++) {                 /* Cholesky: Lambda_MM = L L' */
        for (int i = j; i < m; i++) {
            double s = lam[mis[i] * D + mis[j]];
            for (int l = 0; l < j; l++) s -= L[i * m + l] * L[j * m + l];
            if (i == j) {
                if (!(s > 0.0)) return -1;
                s = sqrt(s);
            } else {
                s /= L[j * m + j];
            }
            L[i * m + j] = s;
        }
    }
    for (int j = 0; j < m; j++) {                 /* linv = L^-1, column by column */
        for (int i = 0; i < j; i++) linv[i * m + j] = 0.0;
        linv[j * m + j] = 1.0 / L[j * m + j];
        for (int i = j + 1; i < m; i++) {
            double s = 0.0;
            for (int l = j; l < i; l++) s += L[i * m + l] * linv[l * m + j];
            linv[i * m + j] = -s / L[i * m + i];
        }
    }
    for (int a = 0; a < m; a++)                   /* C = linv' linv */
        for (int b = 0; b <= a; b++) {
            double s = 0.0;
            for (int l = a; l < m; l++) s += linv[l * m + a] * linv[l * m + b];
            C[a * m + b] = C[b * m + a] = s;
        }
    for (int a = 0; a < m; a++)                   /* R = -C Lambda_MO */
        for (int p = 0; p < o; p++) {
            double s = 0.0;
            for (int c = 0; c < m; c++) s -= C[a * m + c] * lam[mis[c] * D + obs[p]];
            R[a * o + p] = s;
        }
    double* P = tmp;                              /* lower triangle of Lambda_OO + Lambda_OM R */
    for (int p = 0; p < o; p++)
        for (int q = 0; q <= p; q++) {
            double s = lam[obs[p] * D + obs[q]];
            for (int a = 0; a < m; a++) s += lam[obs[p] * D + mis[a]] * R[a * o + q];
            P[p * o + q] = s;
        }
    /* P = U U' with U upper triangular: Cholesky from the last coordinate backwards,
     * (U U')_ij = sum_{l >= max(i, j)} U_il U_jl */
    double acc = 0.0, prod = 1.0;
    for (int j = o - 1; j >= 0; j--) {
        for (int i = j + 1; i < o; i++) U[i * o + j] = 0.0;
        for (int i = j; i >= 0; i--) {
            double s = P[j * o + i];              /* P_ij, i <= j: the lower triangle's P_ji */
            for (int l = j + 1; l < o; l++) s -= U[i * o + l] * U[j * o + l];
            if (i == j) {
                if (!(s > 0.0)) return -1;
                EMFAST_M_LOGPROD_ADD(acc, prod, s);
                s = sqrt(s);
            } else {
                s /= U[j * o + j];
            }
            U[i * o + j] = s;
        }
    }
    *logdet = acc + log(prod);
    return 0;
}

/* s2's lower-triangle slot of (i, j) */
static inline int emfast_m_low(int i, int j, int D) { return i >= j ? i * D + j : j * D + i; }

/* Add one component's run sums in the subspace -- nk, t1 (o,), t2 (o, o; lower triangle) --
 * to its statistics over all D coordinates, s1 (D,) and s2 (D, D; lower triangle):
 * s1 += A t1, s2 += A t2 A' + nk C with A = [I_O; R] (see the top of this file).
 * V: m * o doubles of scratch; t2's upper triangle is overwritten (mirrored). */
EMFAST_M_SCALAR
static void emfast_m_scatter(int D, const int* obs, int o, const int* mis, int m,
                             const double* R, const double* C, double nk, const double* t1,
                             double* t2, double* V, double* s1, double* s2)
{
    for (int p = 0; p < o; p++) {
        s1[obs[p]] += t1[p];
        for (int q = 0; q <= p; q++) {
            s2[obs[p] * D + obs[q]] += t2[p * o + q];    /* obs ascending: the lower slot */
            t2[q * o + p] = t2[p * o + q];
        }
    }
    for (int a = 0; a < m; a++) {
        double s = 0.0;
        for (int p = 0; p < o; p++) s += R[a * o + p] * t1[p];
        s1[mis[a]] += s;
        for (int p = 0; p < o; p++) {                    /* V = R t2: the (M, O) block */
            double v = 0.0;
            for (int q = 0; q < o; q++) v += R[a * o + q] * t2[q * o + p];
            V[a * o + p] = v;
            s2[emfast_m_low(mis[a], obs[p], D)] += v;
        }
        for (int b = 0; b <= a; b++) {                   /* V R' + nk C: the (M, M) block */
            double v = nk * C[a * m + b];
            for (int p = 0; p < o; p++) v += V[a * o + p] * R[b * o + p];
            s2[mis[a] * D + mis[b]] += v;
        }
    }
}

#endif /* EMFAST_MISSING_SUBSPACE_H */
