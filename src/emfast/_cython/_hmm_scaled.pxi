# The scaled forward-backward of one sequence (_forward, _backward), its scratch (Work) and
# its lost-precision rule (LOST_REL), shared by the HMM kernels (_hmm_impl.pxi) and the
# batch HMM kernel (_hmm_batch_impl.pxi): one source, so the batch kernel flags exactly the
# sequences the estimators' kernels flag. The design notes are the docstring of _hmm.pyx.

from cython.parallel cimport parallel, prange
from libc.math cimport fmax, log, INFINITY
from libc.stdint cimport int32_t, int64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset

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


cdef double _rfloor_of(const double* A, Py_ssize_t n) noexcept nogil:
    """2^927 min A / max A over the n entries of A (see LOST_REL), 0 when A has a zero."""
    cdef double lo = A[0], hi = A[0]
    cdef Py_ssize_t i
    for i in range(1, n):
        lo = A[i] if A[i] < lo else lo
        hi = A[i] if A[i] > hi else hi
    return lo / hi * 2.0 ** 927 if lo > 0.0 else 0.0


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

cdef enum:
    RANK = 4              # frames per rank-RANK update of the transition counts


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
