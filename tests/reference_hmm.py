"""Plain NumPy references for the HMM kernels: log-space recursions, and brute force over
every state path for tiny models. Every backend is judged by these."""

import itertools

import numpy as np
from scipy.special import logsumexp


def _log(a):
    with np.errstate(divide="ignore"):
        return np.log(a)


def _split(log_emission, lengths):
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return [log_emission[a:b] for a, b in zip(offsets[:-1], offsets[1:])]


def forward_backward(log_emission, lengths, startprob, transmat):
    """(loglik, seq_loglik, posteriors, start_counts, trans_counts) in log space."""
    lsp, ltm = _log(startprob), _log(transmat)
    K = len(startprob)
    posts, seq_ll = [], []
    start = np.zeros(K)
    trans = np.zeros((K, K))
    for le in _split(log_emission, lengths):
        T = len(le)
        la = np.empty((T, K))
        lb = np.zeros((T, K))
        la[0] = lsp + le[0]
        for t in range(1, T):
            la[t] = logsumexp(la[t - 1][:, None] + ltm, axis=0) + le[t]
        for t in range(T - 2, -1, -1):
            lb[t] = logsumexp(ltm + (le[t + 1] + lb[t + 1])[None, :], axis=1)
        ll = logsumexp(la[-1])
        seq_ll.append(ll)
        if not np.isfinite(ll):
            posts.append(np.zeros((T, K)))
            continue
        post = np.exp(la + lb - ll)
        posts.append(post)
        start += post[0]
        for t in range(T - 1):
            trans += np.exp(la[t][:, None] + ltm + (le[t + 1] + lb[t + 1])[None, :] - ll)
    seq_ll = np.array(seq_ll)
    return float(seq_ll.sum()), seq_ll, np.vstack(posts), start, trans


def viterbi(log_emission, lengths, startprob, transmat):
    """(total log-prob of the best paths, path, per-sequence log-probs); ties -> lowest index."""
    lsp, ltm = _log(startprob), _log(transmat)
    paths, lps = [], []
    for le in _split(log_emission, lengths):
        T, K = le.shape
        delta = lsp + le[0]
        back = np.zeros((T, K), dtype=np.int64)
        for t in range(1, T):
            cand = delta[:, None] + ltm
            back[t] = np.argmax(cand, axis=0)
            delta = cand[back[t], np.arange(K)] + le[t]
        path = np.empty(T, dtype=np.int64)
        path[-1] = np.argmax(delta)
        for t in range(T - 1, 0, -1):
            path[t - 1] = back[t, path[t]]
        paths.append(path)
        lps.append(delta.max())
    lps = np.array(lps)
    return float(lps.sum()), np.concatenate(paths), lps


def filtered(log_emission, lengths, startprob, transmat):
    """(loglik, p(z_t | x_1..t) for every frame, seq_loglik)."""
    lsp, ltm = _log(startprob), _log(transmat)
    out, seq_ll = [], []
    for le in _split(log_emission, lengths):
        T, K = le.shape
        la = np.empty((T, K))
        la[0] = lsp + le[0]
        for t in range(1, T):
            la[t] = logsumexp(la[t - 1][:, None] + ltm, axis=0) + le[t]
        norm = logsumexp(la, axis=1)
        out.append(np.exp(la - norm[:, None]))
        seq_ll.append(norm[-1])
    seq_ll = np.array(seq_ll)
    return float(seq_ll.sum()), np.vstack(out), seq_ll


def brute_force(log_emission, startprob, transmat):
    """One short sequence, every state path enumerated: (loglik, posteriors, best path,
    best log-prob, expected transition counts)."""
    T, K = log_emission.shape
    lsp, ltm = _log(startprob), _log(transmat)
    paths = np.array(list(itertools.product(range(K), repeat=T)))
    lp = lsp[paths[:, 0]] + log_emission[0, paths[:, 0]]
    for t in range(1, T):
        lp = lp + ltm[paths[:, t - 1], paths[:, t]] + log_emission[t, paths[:, t]]
    ll = logsumexp(lp)
    w = np.exp(lp - ll)
    post = np.zeros((T, K))
    trans = np.zeros((K, K))
    for p, wi in zip(paths, w):
        post[np.arange(T), p] += wi
        for t in range(T - 1):
            trans[p[t], p[t + 1]] += wi
    best = int(np.argmax(lp))
    return ll, post, paths[best], lp[best], trans
