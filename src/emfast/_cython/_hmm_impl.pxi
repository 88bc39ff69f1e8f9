# The body of the Cython + OpenMP HMM kernels, shared by two extension modules built from
# it (see setup.py and emfast._config): _hmm.pyx (baseline instruction set, always built)
# and _hmm_avx2.pyx (compiled with -mavx2 -mfma on x86-64, imported at run time when the
# CPU has both). One source, so the two can never drift apart. The design notes are the
# docstring of _hmm.pyx.

include "_hmm_scaled.pxi"

import numpy as np

cdef double _rfloor(const double[:, ::1] A):
    """2^927 min A / max A (see LOST_REL), 0 when A has a zero."""
    return _rfloor_of(&A[0, 0], A.shape[0] * A.shape[1])


# gaussian_forward_backward is faster than gaussian_log_prob, forward_backward and
# gaussian_weighted_stats in turn (H1: 1.3 against 2.0 ms): the estimators call it.
PREFER_FUSED_GAUSSIAN = True
# categorical_forward_backward against the log-emission gather, forward_backward and
# symbol_counts in turn (CategoricalHMM.fit, H4: 1.07 against 1.78 ms per iteration).
PREFER_FUSED_CATEGORICAL = True

cdef enum:
    MAX_GROUPS = 64       # fixed-order partial sums; more than any thread count we use

# Lane batches are used when their alpha and b caches take at most this many doubles each
# per thread (8 MiB); longer sequences run one at a time.
cdef Py_ssize_t LANE_BUDGET = 1024 * 1024

# Per thread, the emission likelihoods b_t of the forward pass are kept for the backward
# pass when the longest sequence needs at most this many doubles (16 MiB); above it, the
# backward pass recomputes them from log_emission and the stored shifts (same function,
# same bits: the results do not depend on this choice).
cdef Py_ssize_t CACHE_B_MAX = 2 * 1024 * 1024


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
