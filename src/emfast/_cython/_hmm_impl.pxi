# The body of the Cython + OpenMP HMM kernels, shared by two extension modules built from
# it (see setup.py and emfast._config): _hmm.pyx (baseline instruction set, always built)
# and _hmm_avx2.pyx (compiled with -mavx2 -mfma on x86-64, imported at run time when the
# CPU has both). One source, so the two can never drift apart. The design notes are the
# docstring of _hmm.pyx.


from cython.parallel cimport parallel, prange
from libc.math cimport fmax, log, INFINITY
from libc.stdint cimport int32_t, int64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset

import numpy as np

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    /* x > 0 finite and normal: return its mantissa as a double in [1, 2) and add its
     * binary exponent to *e (x == mantissa * 2**exponent exactly). */
    static inline double emfast_split_exponent(double x, int64_t* e) {
        uint64_t b;
        memcpy(&b, &x, sizeof b);
        *e += (int64_t) ((b >> 52) & 0x7ff) - 1023;
        b = (b & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL;
        memcpy(&x, &b, sizeof x);
        return x;
    }
    """
    double emfast_split_exponent(double x, int64_t* e) noexcept nogil

cdef double LN2 = 0.6931471805599453094

# Lost precision (a sequence the scaled passes leave to emfast._hmm_logspace). A state k
# whose scaled mass u_k = q_k b_k (q_k its predicted mass) falls below LOST_REL times the
# frame's total c_t is near (or past) the bottom of the double range: its alpha may be
# denormal or 0, and so may b_k (exp underflows at e^-708 > B_FLOOR). At most
# q_k max(b_k, B_FLOOR) is lost, a fraction d_t of the frame. Two bounds on what that costs
# the likelihood, relative to it:
# - d_t R, R = max A / min A: every state's future is at most R times more likely than any
#   other's, so a lost path counts as one of the kept ones (infinite when A has a zero);
# - d_t / prod_{s>t} c_s: a lost path gains at most a factor 1 per later frame (b <= 1
#   after the shift, rows of A sum to 1), the kept ones c_s.
# A sequence is flagged when both reach 2^-73 for some t (or when it becomes impossible
# after a frame that passed the first): d_t 2^1000 > H.rfloor = 2^927 / R (0 when A has a
# zero), and, in log2 rounded down, worst_t [log2(d_t 2^1000) + sum_{s<=t} log2 c_s] minus
# sum_s log2 c_s above LOST_LOG2 = 1000 - 73. Mixing transitions with emissions far apart
# (one state's b underflowing every frame) stop at the first test.
cdef double LOST_REL = 2.0 ** -1000
cdef double LOST_PRETEST = 2.0 ** -999     # c_t <= 1, so u_k >= this has lost nothing
cdef double B_FLOOR = 2.0 ** -1020
cdef double LOST_SCALE = 2.0 ** 1000
cdef double LOST_LOG2 = 927.0
cdef double LOG2E = 1.4426950408889634


cdef double _rfloor(const double[:, ::1] A):
    """2^927 min A / max A (see LOST_REL), 0 when A has a zero."""
    a = np.asarray(A)
    lo, hi = a.min(), a.max()
    return float(lo / hi * 2.0 ** 927) if lo > 0.0 else 0.0


cdef extern from "_fastexp.h":
    # exp(x) for x <= 0 as branch-free arithmetic, so loops calling it vectorise (see there)
    double emfast_exp_nonpos(double x) noexcept nogil

cdef extern from "_hmm_lanes.h":
    # forward-backward of EMFAST_LANES sequences at once, one per SIMD lane (see there)
    int EMFAST_LANES
    int EMFAST_LANES_MAX_K              # the most states a lane batch takes
    ctypedef struct emfast_lanes_gauss:  # diagonal-Gaussian emissions computed in the kernel
        const double* X                  # (T, D)
        int D
        const double* mu                 # (D, K) means, the centre of the statistics
        const double* p                  # (D, K) 1 / sigma
        const double* lc                 # (K,) log-normalisers
    ctypedef struct emfast_lanes_cat:    # categorical emissions used in the kernel
        const int64_t* sym               # (T,) symbols in [0, F)
        const double* BT                 # (F, K) P(symbol | state)
        double* counts                   # (F, K) posterior-weighted counts, added to
        int nl                           # lanes holding sequences
    int64_t emfast_lanes_scratch(int K, int D, int64_t Tb) noexcept nogil
    void emfast_lanes_fb(int K, const double* le, const emfast_lanes_gauss* g,
                         const emfast_lanes_cat* c, const int64_t* base, const int64_t* Tl,
                         const double* sp, const double* A, const double* AT, double rfloor,
                         double* post, double* scratch, double* ll) noexcept nogil
    int64_t emfast_lanes_acc_size(int K, int D) noexcept nogil
    void emfast_lanes_accumulate(int K, int D, const double* scratch, int64_t Tb,
                                 const int64_t* ok, double* acc) noexcept nogil
    void emfast_lanes_reduce(int64_t n, const double* acc, double* slot) noexcept nogil

# gaussian_forward_backward is faster than gaussian_log_prob, forward_backward and
# gaussian_weighted_stats in turn (H1: 1.3 against 2.0 ms): the estimators call it.
PREFER_FUSED_GAUSSIAN = True
# categorical_forward_backward against the log-emission gather, forward_backward and
# symbol_counts in turn (CategoricalHMM.fit, H4: 1.07 against 1.78 ms per iteration).
PREFER_FUSED_CATEGORICAL = True

cdef enum:
    MAX_GROUPS = 64       # fixed-order partial sums; more than any thread count we use
    RANK = 4              # frames per rank-RANK update of the transition counts

# Lane batches are used when their alpha and b caches take at most this many doubles each
# per thread (8 MiB); longer sequences run one at a time.
cdef Py_ssize_t LANE_BUDGET = 1024 * 1024

# Per thread, the emission likelihoods b_t of the forward pass are kept for the backward
# pass when the longest sequence needs at most this many doubles (16 MiB); above it, the
# backward pass recomputes them from log_emission and the stored shifts (same function,
# same bits: the results do not depend on this choice).
cdef Py_ssize_t CACHE_B_MAX = 2 * 1024 * 1024


ctypedef struct Hmm:
    int K
    const double* le            # (T, K) log-emissions, all sequences concatenated ...
    const emfast_lanes_gauss* gauss  # ... or FB: Gaussian emissions computed in the kernel,
                                # posterior-weighted statistics instead of posteriors ...
    const emfast_lanes_cat* cat # ... or FB: categorical symbols and their counts, with
    const double* logBT         # (F, K) the log-probabilities (for single sequences)
    const int64_t* off          # (S + 1,) sequence offsets into the frames
    const double* sp            # (K,) start probabilities (Viterbi: their logs)
    const double* A             # (K, K) transition matrix, row-major (Viterbi: its log)
    const double* AT            # (K, K) its transpose (forward-backward only)
    double rfloor               # forward passes: 2^927 / R (see LOST_REL)
    bint cache_b                # keep b_t from the forward pass (see CACHE_B_MAX)
    Py_ssize_t n_units          # U units of work: one per sequence, or (FB) _plan_units's
    const int64_t* ustart       # (U + 1,) FB: first sequence of each unit ...
    const char* ubatch          # (U,) ... and its sequences if a lane batch (0: one sequence)


ctypedef struct Work:           # per-thread scratch, allocated once per thread
    double* alpha               # (Tmax, K) alphas, when the caller gives no (T, K) output
    double* b                   # (Tmax, K) b_t per frame if cache_b, else (K,) one frame
    double* m                   # (Tmax,) per-frame shift max_k le[t, k]
    double* ic                  # (Tmax,) per-frame 1 / c_t
    double* pred                # (K,) scratch (gamma_0 when posteriors are not wanted)
    double* ab                  # (2, K) unnormalised alphas of frames t and t-1
    double* beta                # (K,) beta_t
    double* beta2               # (K,) beta_{t-1}
    double* ra                  # (RANK, K) alpha_{t-1} of the pending xi frames
    double* rw                  # (RANK, K) w_t = b_t * beta_t / c_t of the same frames
    double* vd                  # (K,) Viterbi: best score of each state at t ...
    double* vn                  # (K,) ... and at t + 1
    double* vb                  # (K,) the argmax as a double (a vector select)
    int32_t* back               # (Tmax, K) Viterbi back-pointers
    double* lanes               # lane-batch scratch (emfast_lanes_scratch), or NULL
    double* lacc                # a group's lane-vector sums (emfast_lanes_acc_size), or NULL
    double* le                  # (Tmax, K) Gaussian/categorical FB: one sequence's log-emissions
    Py_ssize_t fail             # frame at which the last forward pass became impossible


# ---------------------------------------------------------------------------------------
# Scratch space


cdef Work* _work_alloc(int K, Py_ssize_t Tmax, bint alpha, bint cache_b,
                       bint viterbi, Py_ssize_t Bmax, int D, bint cat) noexcept nogil:
    """Scratch for one thread; NULL if out of memory. alpha: a (Tmax, K) alpha buffer;
    Bmax: the longest sequence of a lane batch (0: none); D > 0: Gaussian emissions with D
    features, cat: categorical ones (either: a (Tmax, K) log-emission buffer)."""
    cdef Work* W = <Work*> malloc(sizeof(Work))
    if W == NULL:
        return NULL
    memset(W, 0, sizeof(Work))
    cdef Py_ssize_t nb = Tmax * K if cache_b else K
    cdef Py_ssize_t na = Tmax * K if alpha else 0
    cdef double* mem = <double*> malloc((na + nb + 2 * Tmax + (8 + 2 * RANK) * K)
                                        * sizeof(double))
    if mem == NULL:
        free(W)
        return NULL
    W.alpha = mem
    W.b = W.alpha + na
    W.m = W.b + nb
    W.ic = W.m + Tmax
    W.pred = W.ic + Tmax
    W.ab = W.pred + K
    W.beta = W.ab + 2 * K
    W.beta2 = W.beta + K
    W.ra = W.beta2 + K
    W.rw = W.ra + RANK * K
    W.vd = W.rw + RANK * K
    W.vn = W.vd + K
    W.vb = W.vn + K
    if viterbi:
        W.back = <int32_t*> malloc(Tmax * K * sizeof(int32_t))
        if W.back == NULL:
            free(mem)
            free(W)
            return NULL
    if Bmax > 0:
        W.lanes = <double*> malloc(emfast_lanes_scratch(K, D, Bmax) * sizeof(double))
        W.lacc = <double*> malloc(emfast_lanes_acc_size(K, D) * sizeof(double))
        if W.lanes == NULL or W.lacc == NULL:
            _work_free(W)
            return NULL
    if (D > 0 or cat) and Tmax > 0:
        W.le = <double*> malloc(Tmax * K * sizeof(double))
        if W.le == NULL:
            _work_free(W)
            return NULL
    return W


cdef void _work_free(Work* W) noexcept nogil:
    if W != NULL:
        free(W.alpha)
        free(W.back)
        free(W.lanes)
        free(W.lacc)
        free(W.le)
        free(W)


# ---------------------------------------------------------------------------------------
# Small vector helpers. K is small (4..32), so every loop is short: the matrix loops take
# four rows at a time (one load and store of the output row per four), and sums use four
# accumulators (a plain C sum is one serial chain that no compiler may reorder).


cdef inline double _sum(const double* x, int K) noexcept nogil:
    cdef double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
    cdef int k = 0
    while k + 3 < K:
        s0 += x[k]
        s1 += x[k + 1]
        s2 += x[k + 2]
        s3 += x[k + 3]
        k += 4
    while k < K:
        s0 += x[k]
        k += 1
    return (s0 + s1) + (s2 + s3)


cdef void _vecmat(const double* x, const double* M, int K, double* out) noexcept nogil:
    """out[j] = sum_i x[i] M[i, j], M (K, K) row-major: rows scaled and added, so the inner
    loop runs along contiguous j; eight rows per pass over out, then four, then one."""
    cdef int i = 0, j
    cdef double x0, x1, x2, x3, x4, x5, x6, x7
    cdef const double* m0
    cdef const double* m1
    cdef const double* m2
    cdef const double* m3
    cdef const double* m4
    cdef const double* m5
    cdef const double* m6
    cdef const double* m7
    for j in range(K):
        out[j] = 0.0
    while i + 7 < K:
        x0 = x[i]
        x1 = x[i + 1]
        x2 = x[i + 2]
        x3 = x[i + 3]
        x4 = x[i + 4]
        x5 = x[i + 5]
        x6 = x[i + 6]
        x7 = x[i + 7]
        m0 = M + i * K
        m1 = m0 + K
        m2 = m1 + K
        m3 = m2 + K
        m4 = m3 + K
        m5 = m4 + K
        m6 = m5 + K
        m7 = m6 + K
        for j in range(K):
            out[j] += (((x0 * m0[j] + x1 * m1[j]) + (x2 * m2[j] + x3 * m3[j]))
                       + ((x4 * m4[j] + x5 * m5[j]) + (x6 * m6[j] + x7 * m7[j])))
        i += 8
    while i + 3 < K:
        x0 = x[i]
        x1 = x[i + 1]
        x2 = x[i + 2]
        x3 = x[i + 3]
        m0 = M + i * K
        m1 = m0 + K
        m2 = m1 + K
        m3 = m2 + K
        for j in range(K):
            out[j] += (x0 * m0[j] + x1 * m1[j]) + (x2 * m2[j] + x3 * m3[j])
        i += 4
    while i < K:
        x0 = x[i]
        m0 = M + i * K
        for j in range(K):
            out[j] += x0 * m0[j]
        i += 1


cdef void _rank_update(double* R, const double* ra, const double* rw, int n,
                       int K) noexcept nogil:
    """R[i, j] += sum_u ra[u, i] * rw[u, j] for u < n (n <= RANK)."""
    cdef int i, j, u
    cdef double a0, a1, a2, a3
    cdef double* r
    cdef const double* w0 = rw
    cdef const double* w1 = rw + K
    cdef const double* w2 = rw + 2 * K
    cdef const double* w3 = rw + 3 * K
    if n == 4:
        for i in range(K):
            a0 = ra[i]
            a1 = ra[K + i]
            a2 = ra[2 * K + i]
            a3 = ra[3 * K + i]
            r = R + i * K
            for j in range(K):
                r[j] += (a0 * w0[j] + a1 * w1[j]) + (a2 * w2[j] + a3 * w3[j])
        return
    for u in range(n):
        w0 = rw + u * K
        for i in range(K):
            a0 = ra[u * K + i]
            r = R + i * K
            for j in range(K):
                r[j] += a0 * w0[j]


cdef double _frame_b(const double* le, int K, double* b) noexcept nogil:
    """b[k] = exp(le[k] - m) with m = max_k le[k]; return m (0 when every le[k] is -inf:
    then b is all 0 and the frame is impossible)."""
    cdef int k
    cdef double m0 = -INFINITY, m1 = -INFINITY, mx
    for k in range(0, K - 1, 2):          # two running maxima: max is exact in any order
        m0 = le[k] if le[k] > m0 else m0
        m1 = le[k + 1] if le[k + 1] > m1 else m1
    if K % 2:
        m0 = le[K - 1] if le[K - 1] > m0 else m0
    mx = m0 if m0 > m1 else m1
    if mx == -INFINITY:
        mx = 0.0
    for k in range(K):
        b[k] = emfast_exp_nonpos(le[k] - mx)
    return mx


# ---------------------------------------------------------------------------------------
# One sequence


cdef double _lost_mass(const double* q, const double* b, const double* u, double c,
                       int K) noexcept nogil:
    """2^1000 times a bound on the mass a frame lost (see LOST_REL): q_k max(b_k, B_FLOOR)
    summed over the states whose scaled mass u_k fell below LOST_REL c."""
    cdef double lm = 0.0
    cdef int k
    for k in range(K):
        lm += q[k] * LOST_SCALE * fmax(b[k], B_FLOOR) if u[k] < c * LOST_REL else 0.0
    return lm


cdef double _forward(const Hmm* H, Work* W, Py_ssize_t t0, Py_ssize_t T, double* al,
                     bint keep) noexcept nogil:
    """Scaled forward pass over frames [t0, t0 + T) of log_emission.

    al: (T, K) normalised alphas out, or NULL (not stored).
    keep: store per frame what the backward pass needs (W.m, W.ic; W.b rows if cache_b).
    Returns the sequence's log-likelihood sum_t (log c_t + m_t); -inf when it is impossible
    (some c_t == 0), NaN when a NaN came in. Then W.fail is the first such frame and no
    alpha from it on has been written. +inf when precision may have been lost (see
    LOST_REL): the caller leaves the sequence to log space (alphas, W.fail: garbage).
    """
    cdef int K = H.K, k
    cdef bint cache = keep and H.cache_b
    cdef const double* le = H.le + t0 * K
    cdef const double* A = H.A
    cdef const double* sp = H.sp
    cdef double* u = W.ab                  # unnormalised alpha_t = (alpha_{t-1} A) * b_t ...
    cdef double* up = W.ab + K             # ... and alpha_{t-1} * c_{t-1}
    cdef double* tmp
    cdef double* b
    cdef double* a
    cdef const double* q                  # predicted mass (c_{t-1} alpha_{t-1}) A
    cdef double m, c, ic = 1.0, icp = 1.0, msum = 0.0, lsmall = 0.0, pr = 1.0
    cdef double lm, worst = -INFINITY     # see LOST_REL
    cdef int64_t ex = 0
    cdef Py_ssize_t t
    cdef bint small
    for t in range(T):
        b = W.b + t * K if cache else W.b
        m = _frame_b(le + t * K, K, b)
        small = False                    # some u_k < LOST_PRETEST (see LOST_REL)
        if t == 0:
            q = sp
            for k in range(K):
                u[k] = sp[k] * b[k]
                small |= u[k] < LOST_PRETEST
        else:
            # (c_{t-1} alpha_{t-1}) A, then times 1 / c_{t-1}: the division of the previous
            # frame is not on the chain from one frame's matrix-vector product to the next.
            _vecmat(up, A, K, W.pred)
            q = W.pred
            for k in range(K):
                u[k] = q[k] * (b[k] * icp)
                small |= u[k] < LOST_PRETEST
        c = _sum(u, K)
        if not c > 0.0:                  # 0: impossible (unless after a loss); NaN: propagate
            W.fail = t
            if c == c and worst > -INFINITY:
                return INFINITY
            return c - INFINITY if c == c else c
        ic = 1.0 / c
        if al != NULL:
            a = al + t * K
            for k in range(K):
                a[k] = u[k] * ic
        if keep:
            W.m[t] = m
            W.ic[t] = ic
        msum += m
        # sum_t log c_t as the log of a running product kept in [1, 2) by moving its
        # binary exponent into ex (exact); a c_t too small for that is logged on its own.
        if c >= 1e-300:
            pr = emfast_split_exponent(pr * c, &ex)
        else:
            lsmall += log(c)
        if small:
            lm = _lost_mass(q, b, u, c, K) * icp * ic    # d_t 2^1000 (see LOST_REL)
            if lm > H.rfloor:
                worst = fmax(worst, LOG2E * (log(lm) + log(pr) + lsmall) + <double> ex)
        icp = ic
        tmp = up
        up = u
        u = tmp
    if worst - (LOG2E * (log(pr) + lsmall) + <double> ex) > LOST_LOG2:
        return INFINITY
    return msum + ((log(pr) + <double> ex * LN2) + lsmall)
cdef void _backward(const Hmm* H, Work* W, Py_ssize_t t0, Py_ssize_t T, const double* al,
                    double* post, double* start, double* R) noexcept nogil:
    """Backward pass after a possible _forward(keep=True) of the same frames.

    al: (T, K) alphas; post: (T, K) posteriors out, or NULL; post may be al (each alpha
    row is read before it is overwritten). Adds gamma_0 to start (K,) and
    sum_t alpha_{t-1}[i] * w_t[j] to R (K, K), w_t = b_t * beta_t / c_t; the caller
    multiplies R by A elementwise once at the end (xi = A * R).
    """
    cdef int K = H.K, k, n = 0
    cdef bint cache = H.cache_b
    cdef const double* le = H.le + t0 * K
    cdef const double* AT = H.AT
    cdef double* beta = W.beta
    cdef double* nb = W.beta2
    cdef double* tmp
    cdef double* ra = W.ra
    cdef double* rw = W.rw
    cdef double* w
    cdef const double* b
    cdef const double* a
    cdef double* g
    cdef double ic, m
    cdef Py_ssize_t t
    for k in range(K):
        beta[k] = 1.0
    for t in range(T - 1, 0, -1):
        if cache:
            b = W.b + t * K
        else:                              # the forward pass's b_t again, same bits
            m = W.m[t]
            for k in range(K):
                W.b[k] = emfast_exp_nonpos(le[t * K + k] - m)
            b = W.b
        ic = W.ic[t]
        a = al + t * K
        w = rw + n * K
        # States with alpha_t = 0 get w = 0: in exact arithmetic they add nothing (their
        # gamma and every xi into them are 0), and it keeps the betas of unreachable
        # states from growing without bound (then 0 * inf = NaN) on long sequences.
        for k in range(K):
            w[k] = b[k] * beta[k] * ic if a[k] != 0.0 else 0.0
        memcpy(ra + n * K, a - K, K * sizeof(double))
        if post != NULL:
            g = post + t * K
            for k in range(K):
                g[k] = a[k] * beta[k]
        _vecmat(w, AT, K, nb)          # beta_{t-1}[i] = sum_j A[i, j] w_t[j]
        tmp = beta
        beta = nb
        nb = tmp
        n += 1
        if n == RANK:
            _rank_update(R, ra, rw, n, K)
            n = 0
    if n:
        _rank_update(R, ra, rw, n, K)
    g = post if post != NULL else W.pred
    for k in range(K):
        g[k] = al[k] * beta[k]
        start[k] += g[k]


cdef double _viterbi_seq(const Hmm* H, Work* W, Py_ssize_t t0, Py_ssize_t T,
                         int64_t* path) noexcept nogil:
    """Log-space Viterbi over frames [t0, t0 + T): path[t0:t0+T] and the best log-prob.
    H.sp, H.A hold log startprob, log transmat. Ties go to the lowest state index (strict >
    over increasing i, and the first maximum at the end)."""
    cdef int K = H.K, i, j, best
    cdef const double* le = H.le + t0 * K
    cdef const double* lA = H.A
    cdef const double* row
    cdef double* d = W.vd
    cdef double* nd = W.vn
    cdef double* bd = W.vb
    cdef double* tmp
    cdef int32_t* back
    cdef double di, v
    cdef Py_ssize_t t
    for j in range(K):
        d[j] = H.sp[j] + le[j]
    for t in range(1, T):
        back = W.back + t * K
        di = d[0]
        for j in range(K):
            nd[j] = di + lA[j]
            bd[j] = 0.0
        for i in range(1, K):
            di = d[i]
            row = lA + i * K
            for j in range(K):
                v = di + row[j]
                bd[j] = <double> i if v > nd[j] else bd[j]
                nd[j] = v if v > nd[j] else nd[j]
        for j in range(K):
            nd[j] = nd[j] + le[t * K + j]
            back[j] = <int32_t> bd[j]
        tmp = d
        d = nd
        nd = tmp
    best = 0
    for j in range(1, K):
        if d[j] > d[best]:
            best = j
    path += t0
    path[T - 1] = best
    for t in range(T - 1, 0, -1):
        path[t - 1] = W.back[t * K + path[t]]
    return d[best]


# ---------------------------------------------------------------------------------------
# Diagonal-Gaussian emissions of one sequence (the lane batches do their own)


cdef void _gauss_log_emission(const emfast_lanes_gauss* g, int K, Py_ssize_t t0,
                              Py_ssize_t T, double* le) noexcept nogil:
    """le (T, K) = log p(x_t | k) for frames [t0, t0 + T) of g.X (the lanes' arithmetic in
    the same order: features in turn, each over all states)."""
    cdef int D = g.D, k, d
    cdef Py_ssize_t t
    cdef const double* x
    cdef const double* mu
    cdef const double* p
    cdef double* row
    cdef double xd, y
    for t in range(T):
        x = g.X + (t0 + t) * D
        row = le + t * K
        for k in range(K):
            row[k] = 0.0
        for d in range(D):
            xd = x[d]
            mu = g.mu + d * K
            p = g.p + d * K
            for k in range(K):
                y = (xd - mu[k]) * p[k]
                row[k] += y * y
        for k in range(K):
            row[k] = g.lc[k] - 0.5 * row[k]


cdef void _gauss_stats(const emfast_lanes_gauss* g, int K, Py_ssize_t t0, Py_ssize_t T,
                       const double* post, double* gst) noexcept nogil:
    """gst = [nk (K,), s1 (D, K), s2 (D, K)] += the statistics of frames [t0, t0 + T)
    weighted by post (T, K), about the means: gamma, gamma (x - mu), gamma (x - mu)^2."""
    cdef int D = g.D, k, d
    cdef Py_ssize_t t
    cdef const double* x
    cdef const double* w
    cdef const double* mu
    cdef double* s1
    cdef double* s2
    cdef double xd, df, gd
    for t in range(T):
        x = g.X + (t0 + t) * D
        w = post + t * K
        for k in range(K):
            gst[k] += w[k]
        for d in range(D):
            xd = x[d]
            mu = g.mu + d * K
            s1 = gst + K + d * K
            s2 = s1 + D * K
            for k in range(K):
                df = xd - mu[k]
                gd = w[k] * df
                s1[k] += gd
                s2[k] += gd * df


cdef void _cat_log_emission(const int64_t* sym, const double* logBT, int K, Py_ssize_t t0,
                            Py_ssize_t T, double* le) noexcept nogil:
    """le (T, K) = log P(sym[t] | k) for frames [t0, t0 + T)."""
    cdef Py_ssize_t t
    for t in range(T):
        memcpy(le + t * K, logBT + sym[t0 + t] * K, K * sizeof(double))


cdef void _cat_counts(const int64_t* sym, int K, Py_ssize_t t0, Py_ssize_t T,
                      const double* post, double* counts) noexcept nogil:
    """counts (F, K) += post (T, K) row t added to the row of frame t0 + t's symbol."""
    cdef Py_ssize_t t
    cdef int k
    cdef double* dst
    for t in range(T):
        dst = counts + sym[t0 + t] * K
        for k in range(K):
            dst[k] += post[t * K + k]


# ---------------------------------------------------------------------------------------
# One group of sequences (one task of the parallel loop)


cdef inline bint _sums_wanted(double ll, double* acc) noexcept nogil:
    """A sequence's log-likelihood ll added to acc[0] unless it is flagged (+inf, left to
    log space); whether its backward pass and statistics are wanted (ll finite)."""
    if ll != INFINITY:
        acc[0] += ll
    return ll == ll and ll != -INFINITY and ll != INFINITY


cdef void _fb_group(const Hmm* H, Work* W, Py_ssize_t u0, Py_ssize_t u1, double* post,
                    double* seq_ll, double* acc) noexcept nogil:
    """Units [u0, u1) in order: seq_ll, posteriors; acc = [loglik, start (K), R (K, K)]
    and with Gaussian emissions [nk (K,), s1 (D, K), s2 (D, K)]. The log-likelihoods are
    added in sequence order; the lane batches' other sums go through per-lane sums
    (emfast_lanes_accumulate) reduced into acc at the end of the group."""
    cdef int K = H.K, l, L = EMFAST_LANES
    cdef int D = H.gauss.D if H.gauss != NULL else 0
    cdef Py_ssize_t u, s, t0, T, Tb, nl
    cdef bint batched = False
    cdef double ll
    cdef double* al
    cdef double* emis = acc + 1 + K + K * K    # the emission statistics' part of acc
    cdef int64_t base[8]                 # EMFAST_LANES <= 8
    cdef int64_t Tl[8]
    cdef int64_t ok[8]
    cdef double lll[8]
    cdef Hmm Hs = H[0]                   # Gaussian/categorical: single sequences read W.le
    Hs.le = W.le
    cdef emfast_lanes_cat cl             # categorical: counts into this group's slot
    if H.cat != NULL:
        cl = H.cat[0]
        cl.counts = emis
    for u in range(u0, u1):
        s = H.ustart[u]
        nl = H.ubatch[u]
        if nl:
            if not batched:
                memset(W.lacc, 0, emfast_lanes_acc_size(K, D) * sizeof(double))
                batched = True
            Tb = 0
            # Lanes past a short batch's last sequence repeat its first: the same numbers
            # (the same posteriors written twice), never added.
            for l in range(L):
                base[l] = H.off[s + l] if l < nl else base[0]
                Tl[l] = H.off[s + l + 1] - base[l] if l < nl else Tl[0]
                Tb = max(Tb, Tl[l])
            if H.cat != NULL:
                cl.nl = <int> nl
            emfast_lanes_fb(K, H.le, H.gauss, &cl if H.cat != NULL else NULL, base, Tl, H.sp,
                            H.A, H.AT, H.rfloor, post, W.lanes, lll)
            for l in range(L):
                ok[l] = 0
                if l < nl:
                    ll = lll[l]
                    seq_ll[s + l] = ll
                    ok[l] = _sums_wanted(ll, acc)
                    if not ok[l] and post != NULL and ll != INFINITY:
                        memset(post + base[l] * K, 0, Tl[l] * K * sizeof(double))
            emfast_lanes_accumulate(K, D, W.lanes, Tb, ok, W.lacc)
            continue
        t0 = H.off[s]
        T = H.off[s + 1] - t0
        if H.gauss != NULL:              # posteriors into W.alpha, then the statistics
            _gauss_log_emission(H.gauss, K, t0, T, W.le)
            ll = _forward(&Hs, W, 0, T, W.alpha, True)
            seq_ll[s] = ll
            if _sums_wanted(ll, acc):
                _backward(&Hs, W, 0, T, W.alpha, W.alpha, acc + 1, acc + 1 + K)
                _gauss_stats(H.gauss, K, t0, T, W.alpha, emis)
            continue
        if H.cat != NULL:                # posteriors into W.alpha, then the counts
            _cat_log_emission(H.cat.sym, H.logBT, K, t0, T, W.le)
            ll = _forward(&Hs, W, 0, T, W.alpha, True)
            seq_ll[s] = ll
            if _sums_wanted(ll, acc):
                _backward(&Hs, W, 0, T, W.alpha, W.alpha, acc + 1, acc + 1 + K)
                _cat_counts(H.cat.sym, K, t0, T, W.alpha, emis)
            continue
        al = post + t0 * K if post != NULL else W.alpha
        ll = _forward(H, W, t0, T, al, True)
        seq_ll[s] = ll
        if _sums_wanted(ll, acc):
            _backward(H, W, t0, T, al, post + t0 * K if post != NULL else NULL,
                      acc + 1, acc + 1 + K)
        elif post != NULL and ll != INFINITY:
            memset(post + t0 * K, 0, T * K * sizeof(double))
    if batched:
        emfast_lanes_reduce(emfast_lanes_acc_size(K, D) // L, W.lacc, acc + 1)


cdef void _filter_group(const Hmm* H, Work* W, Py_ssize_t s0, Py_ssize_t s1, double* out,
                        double* seq_ll, double* acc) noexcept nogil:
    """Sequences [s0, s1): filtered probabilities (if out) and log-likelihoods. Frames from
    the one at which a sequence becomes impossible on get 0 (the earlier ones are still
    the causal p(z_t | x_1..t))."""
    cdef int K = H.K
    cdef Py_ssize_t s, t0, T
    cdef double ll
    for s in range(s0, s1):
        t0 = H.off[s]
        T = H.off[s + 1] - t0
        ll = _forward(H, W, t0, T, out + t0 * K if out != NULL else NULL, False)
        seq_ll[s] = ll
        if not _sums_wanted(ll, acc) and out != NULL and ll != INFINITY:
            memset(out + (t0 + W.fail) * K, 0, (T - W.fail) * K * sizeof(double))


cdef void _viterbi_group(const Hmm* H, Work* W, Py_ssize_t s0, Py_ssize_t s1, int64_t* path,
                         double* seq_lp, double* acc) noexcept nogil:
    cdef Py_ssize_t s, t0
    cdef double lp
    for s in range(s0, s1):
        t0 = H.off[s]
        lp = _viterbi_seq(H, W, t0, H.off[s + 1] - t0, path)
        seq_lp[s] = lp
        acc[0] += lp


# ---------------------------------------------------------------------------------------
# Driver: sequences in G = min(S, MAX_GROUPS) contiguous groups (a function of S only),
# each summed in order into its own slot; the slots are summed in group order afterwards.


cdef Py_ssize_t _plan_units(int K, const int64_t* off, Py_ssize_t S, int64_t* ustart,
                            char* ubatch) noexcept nogil:
    """Split the sequences, in order, into units of work: a batch of up to EMFAST_LANES
    sequences or one sequence; return the number U of units (ustart (U + 1,), ubatch (U,)
    the batch's sequence count, 0 for one sequence). A batch is used when K is small, its
    longest sequence is at most 1.25x its mean length (padding wastes < 20%) and its caches
    fit LANE_BUDGET; it has EMFAST_LANES sequences except at the end, where the last 2 or
    more sequences make a short batch (its lanes cost the same as a full one's, and less
    than those sequences one by one). The rule reads the lengths only."""
    cdef Py_ssize_t s = 0, q, n = 0, T, longest, total, nb
    cdef int L = EMFAST_LANES
    cdef bint use
    while s < S:
        nb = min(<Py_ssize_t> L, S - s)
        use = False
        if K <= EMFAST_LANES_MAX_K and nb >= 2:
            longest = 0
            total = 0
            for q in range(s, s + nb):
                T = off[q + 1] - off[q]
                longest = max(longest, T)
                total += T
            use = longest * nb * 4 <= total * 5 and longest * K * L <= LANE_BUDGET
        ustart[n] = s
        ubatch[n] = nb if use else 0
        n += 1
        s += nb if use else 1
    ustart[n] = S
    return n


cdef enum Kernel:
    FB = 0
    FILTER = 1
    VITERBI = 2


cdef int _run(int kind, Hmm* H, Py_ssize_t S, double* post, int64_t* path,
              double* seq_out, double* slots, Py_ssize_t width, int n_threads) except -1:
    """Run kernel ``kind`` over all sequences; slots: (G, width) zeroed group buffers, G =
    min(U, MAX_GROUPS) for U units of work (FB: see _plan_units; else one per sequence)."""
    cdef Py_ssize_t U = H.n_units
    cdef Py_ssize_t G = min(U, <Py_ssize_t> MAX_GROUPS), g, s, Tmax = 0, Bmax = 0
    cdef int K = H.K
    cdef bint need_alpha = kind == FB and post == NULL
    cdef int oom[1]
    cdef int* oomp = oom                 # shared: a plain local would be thread-private
    cdef Work* W = NULL
    oom[0] = 0
    if kind == FB:
        for g in range(U):
            for s in range(H.ustart[g], H.ustart[g + 1]):
                if H.ubatch[g]:
                    Bmax = max(Bmax, H.off[s + 1] - H.off[s])
                else:
                    Tmax = max(Tmax, H.off[s + 1] - H.off[s])
    else:
        for s in range(S):
            Tmax = max(Tmax, H.off[s + 1] - H.off[s])
    H.cache_b = kind == FB and Tmax * K <= CACHE_B_MAX
    with nogil, parallel(num_threads=max(1, min(<Py_ssize_t> n_threads, G))):
        W = _work_alloc(K, Tmax, need_alpha, H.cache_b, kind == VITERBI, Bmax,
                        H.gauss.D if H.gauss != NULL else 0, H.cat != NULL)
        # Every thread enters the loop (a work-sharing loop must be met by all of them).
        for g in prange(G, schedule="dynamic"):
            if W == NULL:
                oomp[0] = 1              # reported after the region
            elif kind == FB:
                _fb_group(H, W, g * U // G, (g + 1) * U // G, post, seq_out,
                          slots + g * width)
            elif kind == FILTER:
                _filter_group(H, W, g * S // G, (g + 1) * S // G, post, seq_out,
                              slots + g * width)
            else:
                _viterbi_group(H, W, g * S // G, (g + 1) * S // G, path, seq_out,
                               slots + g * width)
        _work_free(W)
    if oom[0]:
        raise MemoryError("emfast: out of memory for the HMM kernels' per-thread scratch")
    return 0


def categorical_forward_backward(
    const int64_t[::1] sym,             # IN  (T,) symbols of all sequences, in [0, F)
    const int64_t[::1] offsets,         # IN  (S + 1,) sequence s is frames [off[s], off[s+1])
    const double[::1] startprob,        # IN  (K,)
    const double[:, ::1] transmat,      # IN  (K, K) rows sum to 1
    const double[:, ::1] emissionprob,  # IN  (K, F) rows sum to 1
    double[::1] start_counts,           # OUT (K,) sum over sequences of gamma_0
    double[:, ::1] trans_counts,        # OUT (K, K) sum_t xi_t
    double[::1] seq_ll,                 # OUT (S,) per-sequence log-likelihoods
    double[:, ::1] counts,              # OUT (F, K) sum_t gamma_t where sym[t] = f
    int n_threads,                      # IN  OpenMP threads
):
    """Forward-backward of a categorical HMM with the emission probabilities read in the
    kernel and the posterior-weighted symbol counts summed in its backward pass (no (T, K)
    array); overwrite the outputs; return the total log-likelihood."""
    cdef int K = emissionprob.shape[0], F = emissionprob.shape[1]
    B = np.asarray(emissionprob)
    cdef const double[:, ::1] BT = np.ascontiguousarray(B.T)
    with np.errstate(divide="ignore"):
        logB = np.log(B.T)
    cdef const double[:, ::1] logBT = np.ascontiguousarray(logB)
    cdef const double[:, ::1] AT = np.ascontiguousarray(np.asarray(transmat).T)  # kept alive
    cdef emfast_lanes_cat c
    c.sym = &sym[0] if sym.shape[0] > 0 else NULL
    c.BT = &BT[0, 0]
    c.counts = NULL                      # each group points it at its own slot
    c.nl = 0
    cdef Hmm H = _hmm(K, NULL, offsets, startprob, transmat, AT)
    H.cat = &c
    H.logBT = &logBT[0, 0]
    tot = _fb_sums(&H, offsets, NULL, F * K, seq_ll, n_threads)
    _fb_counts(tot, transmat, start_counts, trans_counts)
    np.asarray(counts)[...] = tot[1 + K + K * K:].reshape(F, K)
    return float(tot[0])


cdef inline const double* _rows(const double[:, ::1] a):
    """The first element of a, or NULL when a has no rows (nothing to read or write)."""
    return &a[0, 0] if a.shape[0] > 0 else NULL


cdef Hmm _hmm(int K, const double* le, const int64_t[::1] offsets, const double[::1] sp,
              const double[:, ::1] A, const double[:, ::1] AT):
    cdef Hmm H
    H.K = K
    H.le = le
    H.off = &offsets[0]
    H.sp = &sp[0]
    H.A = &A[0, 0]
    H.AT = &AT[0, 0] if AT is not None else NULL
    H.rfloor = _rfloor(A)
    H.gauss = NULL
    H.cat = NULL
    H.logBT = NULL
    H.cache_b = False
    H.n_units = offsets.shape[0] - 1
    H.ustart = NULL
    H.ubatch = NULL
    return H


# ---------------------------------------------------------------------------------------
# Public kernels (called positionally by emfast.kernels; arrays already validated)


def forward_backward(
    const double[:, ::1] le,            # IN  (T, K) log p(x_t | z_t = k), all sequences
    const int64_t[::1] offsets,         # IN  (S + 1,) sequence s is frames [off[s], off[s+1])
    const double[::1] startprob,        # IN  (K,)
    const double[:, ::1] transmat,      # IN  (K, K) rows sum to 1
    double[:, ::1] post,                # OUT (T, K) posteriors, or (0, K): not wanted
    double[::1] start_counts,           # OUT (K,) sum over sequences of gamma_0
    double[:, ::1] trans_counts,        # OUT (K, K) sum_t xi_t
    double[::1] seq_ll,                 # OUT (S,) per-sequence log-likelihoods
    int n_threads,                      # IN  OpenMP threads
):
    """Scaled forward-backward: overwrite the outputs; return the total log-likelihood."""
    cdef const double[:, ::1] AT = np.ascontiguousarray(np.asarray(transmat).T)  # kept alive
    cdef Hmm H = _hmm(le.shape[1], _rows(le), offsets, startprob, transmat, AT)
    tot = _fb_sums(&H, offsets, &post[0, 0] if post.shape[0] > 0 else NULL, 0, seq_ll,
                   n_threads)
    _fb_counts(tot, transmat, start_counts, trans_counts)
    return float(tot[0])


def gaussian_forward_backward(
    const double[:, ::1] X,             # IN  (T, D) frames of all sequences, concatenated
    const int64_t[::1] offsets,         # IN  (S + 1,) sequence s is frames [off[s], off[s+1])
    const double[::1] startprob,        # IN  (K,)
    const double[:, ::1] transmat,      # IN  (K, K) rows sum to 1
    const double[:, ::1] means,         # IN  (K, D), also the centre of the statistics
    const double[:, ::1] prec,          # IN  (K, D) 1 / sigma per feature
    const double[::1] log_const,        # IN  (K,) log p(x | k) = log_const[k] - 0.5 |(x - mu_k) prec_k|^2
    double[::1] start_counts,           # OUT (K,) sum over sequences of gamma_0
    double[:, ::1] trans_counts,        # OUT (K, K) sum_t xi_t
    double[::1] seq_ll,                 # OUT (S,) per-sequence log-likelihoods
    double[::1] nk,                     # OUT (K,) sum_t gamma_t
    double[:, ::1] s1,                  # OUT (K, D) sum_t gamma_t (x_t - mu)
    double[:, ::1] s2,                  # OUT (K, D) sum_t gamma_t (x_t - mu)^2
    int n_threads,                      # IN  OpenMP threads
):
    """Forward-backward with diagonal-Gaussian emissions computed inside it and the
    posterior-weighted statistics accumulated in its backward pass (no (T, K) array);
    overwrite the outputs; return the total log-likelihood."""
    cdef int K = means.shape[0], D = means.shape[1]
    cdef const double[:, ::1] muT = np.ascontiguousarray(np.asarray(means).T)  # (D, K)
    cdef const double[:, ::1] pT = np.ascontiguousarray(np.asarray(prec).T)
    cdef emfast_lanes_gauss g
    g.X = _rows(X)
    g.D = D
    g.mu = &muT[0, 0]
    g.p = &pT[0, 0]
    g.lc = &log_const[0]
    cdef const double[:, ::1] AT = np.ascontiguousarray(np.asarray(transmat).T)  # kept alive
    cdef Hmm H = _hmm(K, NULL, offsets, startprob, transmat, AT)
    H.gauss = &g
    tot = _fb_sums(&H, offsets, NULL, K + 2 * K * D, seq_ll, n_threads)
    _fb_counts(tot, transmat, start_counts, trans_counts)
    cdef Py_ssize_t o = 1 + K + K * K
    np.asarray(nk)[...] = tot[o:o + K]
    np.asarray(s1)[...] = tot[o + K:o + K + K * D].reshape(D, K).T
    np.asarray(s2)[...] = tot[o + K + K * D:].reshape(D, K).T
    return float(tot[0])


cdef _fb_sums(Hmm* H, const int64_t[::1] offsets, double* post, Py_ssize_t extra,
              double[::1] seq_ll, int n_threads):
    """Run the forward-backward over the units of _plan_units; return the group slots
    [loglik, start (K,), R (K, K), extra more] summed in group order (independent of the
    thread count)."""
    cdef Py_ssize_t S = offsets.shape[0] - 1
    cdef int K = H.K
    cdef Py_ssize_t width = 1 + K + K * K + extra
    cdef int64_t[::1] ustart = np.empty(S + 1, dtype=np.int64)
    cdef char[::1] ubatch = np.empty(max(S, 1), dtype=np.int8)
    H.n_units = _plan_units(K, &offsets[0], S, &ustart[0], &ubatch[0])
    H.ustart = &ustart[0]
    H.ubatch = &ubatch[0]
    slots = np.zeros((max(1, min(H.n_units, <Py_ssize_t> MAX_GROUPS)), width))
    cdef double[:, ::1] sl = slots
    if S > 0:
        _run(FB, H, S, post, NULL, &seq_ll[0], &sl[0, 0], width, n_threads)
    return slots.sum(axis=0)             # row after row: the same order for any thread count


cdef _fb_counts(tot, const double[:, ::1] transmat, double[::1] start_counts,
                double[:, ::1] trans_counts):
    """start and transition counts out of the summed slots: xi = A * R."""
    cdef int K = start_counts.shape[0]
    np.asarray(start_counts)[...] = tot[1:1 + K]
    np.multiply(np.asarray(transmat), tot[1 + K:1 + K + K * K].reshape(K, K),
                out=np.asarray(trans_counts))


def viterbi(
    const double[:, ::1] le,            # IN  (T, K) log-emissions
    const int64_t[::1] offsets,         # IN  (S + 1,)
    const double[::1] log_startprob,    # IN  (K,) (-inf allowed)
    const double[:, ::1] log_transmat,  # IN  (K, K) (-inf allowed)
    int64_t[::1] path,                  # OUT (T,) best state path of every sequence
    double[::1] seq_lp,                 # OUT (S,) log-prob of each best path
    int n_threads,                      # IN  OpenMP threads
):
    """Log-space Viterbi; return the total log-probability of the best paths."""
    cdef Py_ssize_t S = offsets.shape[0] - 1
    cdef Hmm H = _hmm(le.shape[1], _rows(le), offsets, log_startprob, log_transmat, None)
    slots = np.zeros((max(1, min(S, <Py_ssize_t> MAX_GROUPS)), 1))
    cdef double[:, ::1] sl = slots
    if S > 0:
        _run(VITERBI, &H, S, NULL, &path[0], &seq_lp[0], &sl[0, 0], 1, n_threads)
    tot = 0.0
    for g in range(slots.shape[0]):
        tot += slots[g, 0]
    return float(tot)


def forward_filter(
    const double[:, ::1] le,            # IN  (T, K) log-emissions
    const int64_t[::1] offsets,         # IN  (S + 1,)
    const double[::1] startprob,        # IN  (K,)
    const double[:, ::1] transmat,      # IN  (K, K)
    double[:, ::1] out,                 # OUT (T, K) p(z_t | x_1..t), or (0, K): loglik only
    double[::1] seq_ll,                 # OUT (S,) per-sequence log-likelihoods
    int n_threads,                      # IN  OpenMP threads
):
    """Scaled forward pass; return the total log-likelihood."""
    cdef Py_ssize_t S = offsets.shape[0] - 1
    cdef Hmm H = _hmm(le.shape[1], _rows(le), offsets, startprob, transmat, None)
    slots = np.zeros((max(1, min(S, <Py_ssize_t> MAX_GROUPS)), 1))
    cdef double[:, ::1] sl = slots
    cdef double* outp = &out[0, 0] if out.shape[0] > 0 else NULL
    if S > 0:
        _run(FILTER, &H, S, outp, NULL, &seq_ll[0], &sl[0, 0], 1, n_threads)
    tot = 0.0
    for g in range(slots.shape[0]):
        tot += slots[g, 0]
    return float(tot)


cdef void _count_rows(const int64_t* sym, const double* w, Py_ssize_t t0, Py_ssize_t t1,
                      Py_ssize_t K, double* slot) noexcept nogil:
    """slot[sym[t], :] += w[t, :] for rows t0 <= t < t1, in row order."""
    cdef Py_ssize_t t, k
    cdef double* row
    cdef const double* wt
    for t in range(t0, t1):
        row = slot + sym[t] * K
        wt = w + t * K
        for k in range(K):
            row[k] += wt[k]


def symbol_counts(
    const int64_t[::1] sym,             # IN  (T,) symbols, validated to lie in [0, F)
    const double[:, ::1] w,             # IN  (T, K) weights (e.g. state posteriors)
    double[:, ::1] out,                 # OUT (F, K) out[f, k] = sum of w[t, k] where sym[t] = f
    int n_threads,                      # IN  OpenMP threads
):
    """Weighted symbol counts. Rows are cut into G contiguous groups (a function of T only),
    each summed in order into its own (F, K) slot; the slots are added in group order."""
    cdef Py_ssize_t T = w.shape[0], K = w.shape[1], F = out.shape[0], g
    cdef Py_ssize_t G = max(1, min((T + 4095) // 4096, <Py_ssize_t> MAX_GROUPS))
    slots = np.zeros((G, F, K))
    cdef double[:, :, ::1] sl = slots
    if T > 0 and K > 0:
        with nogil, parallel(num_threads=max(1, min(<Py_ssize_t> n_threads, G))):
            for g in prange(G, schedule="static"):
                _count_rows(&sym[0], &w[0, 0], g * T // G, (g + 1) * T // G, K,
                            &sl[g, 0, 0])
    res = np.asarray(out)
    res[...] = slots[0]
    for g in range(1, G):
        res += slots[g]


def _set_cache_b_max(Py_ssize_t n):
    """Tuning/test hook: per-thread doubles up to which b_t is cached for the backward pass
    (0: always recompute). Returns the old value. Not part of the kernel contract."""
    global CACHE_B_MAX
    old = CACHE_B_MAX
    CACHE_B_MAX = n
    return old


include "_openmp.pxi"
