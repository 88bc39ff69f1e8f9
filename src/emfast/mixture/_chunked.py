"""Exact EM over data that is not held in memory: a NumPy memmap, or chunks of rows read
again for every pass.

The E-step kernel sums its row blocks in a fixed number of contiguous groups, then the
groups in order (``estep_groups`` of the backend gives their bounds). The chunked E-step
reads X one group at a time, has the kernel sum that group alone (``n_groups=1``: the
same sums, bit for bit) and adds the groups' statistics in group order from zero: each
iteration is one pass over X with the in-memory result, whatever the chunks' sizes.
Memory: the groups in flight (one per worker thread, and one being read), each about
N / 64 rows for large N (at most 256 rows per group below 16,384 rows).
"""

import ctypes
import ctypes.util
import mmap
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from emfast import _validation as V
from emfast import kernels
from emfast._config import get_backend
from emfast._stats import GaussianStats
from emfast.mixture import _gaussian as G
from emfast.mixture._kmeans import SAMPLE_ROWS, kmeans

# rows per piece when a memmap is read for the check and for take: bounded temporaries
_SCAN_ROWS = 65536


def is_chunked(X):
    """Whether ``fit`` reads X in pieces: a np.memmap, an iterator, a list or tuple holding
    2-D arrays (chunks; a list of rows is X itself), or a callable that returns an iterable
    of chunks (called once per pass)."""
    if isinstance(X, np.memmap) or callable(X) or hasattr(X, "__next__"):
        return True
    return isinstance(X, (list, tuple)) and any(
        isinstance(c, np.ndarray) and c.ndim == 2 for c in X)


class ChunkedRows:
    """X as pieces of rows: ``n_samples``, ``n_features``, ``dtype``, the row ranges of
    :meth:`ranges` in order, and :meth:`take` of given rows. The whole source is read and
    checked here (shapes, one float dtype, finite values within the Gaussian range); at
    every later pass, a chunk is checked again unless it is the very array that passed
    the first check as it was (a function may give other arrays each time; a list's
    arrays are not scanned for finiteness at every iteration). Rows with NaN are refused
    (the missing-value fit needs its rows grouped by pattern, in memory).
    """

    def __init__(self, source, estimator):
        self._estimator = estimator
        if isinstance(source, np.memmap):
            self._memmap = _check_memmap(source)
            self._chunks = None
        else:
            if hasattr(source, "__next__"):
                raise ValueError(
                    "X is an iterator, which can be read once; EM reads X once per "
                    "iteration: pass a list of chunks, or a function that returns a new "
                    "iterator of chunks at each call")
            self._memmap = None
            self._chunks = source if callable(source) else (lambda: source)
        # a list's chunks that passed the first check unconverted, by index: the same
        # object at a later pass needs no new scan (a function's chunks are not kept: they
        # may be read from files, one pass at a time)
        self._keep_checked = not callable(source)
        self._checked = {}
        self.n_samples, self.n_features, self.dtype = self._scan()
        self.shape = (self.n_samples, self.n_features)

    # ------------------------------------------------------------------ reading
    def _pieces(self):
        """(start row, rows) of the source in order, as stored (empty chunks skipped)."""
        if self._memmap is not None:
            for a in range(0, len(self._memmap), _SCAN_ROWS):
                yield a, self._memmap[a:a + _SCAN_ROWS]
            return
        start = 0
        for i, chunk in enumerate(self._chunk_iter()):
            chunk = self._check_chunk(chunk, i)
            if len(chunk):
                yield start, chunk
                start += len(chunk)

    def _chunk_iter(self):
        chunks = self._chunks()
        try:
            return iter(chunks)
        except TypeError:
            raise TypeError("X, a function, must return an iterable of 2-D arrays (chunks "
                            f"of rows); it returned {type(chunks).__name__}") from None

    def _check_chunk(self, chunk, index):
        if self._checked.get(index) is chunk:
            return chunk
        chunk = V.check_array(chunk, name=f"chunk {index} of X", min_samples=0,
                              estimator=self._estimator,
                              max_magnitude=V.MAX_GAUSSIAN_MAGNITUDE)
        D = getattr(self, "n_features", None)
        if D is not None and (chunk.shape[1] != D or chunk.dtype != self.dtype):
            raise ValueError(
                f"chunk {index} of X has {chunk.shape[1]} features of dtype {chunk.dtype}; "
                f"the first chunk has {D} of dtype {self.dtype}: every chunk needs the same "
                "number of features and the same dtype")
        return chunk

    def _scan(self):
        if self._memmap is not None:
            for a, rows in self._pieces():
                V.check_array(rows, name=f"X (rows {a} to {a + len(rows) - 1})",
                              estimator=self._estimator, max_magnitude=V.MAX_GAUSSIAN_MAGNITUDE)
                release(rows)
            return self._memmap.shape + (self._memmap.dtype,)
        n = 0
        self.n_features = None
        for i, given in enumerate(self._chunk_iter()):
            chunk = self._check_chunk(given, i)
            if chunk is given and self._keep_checked:
                self._checked[i] = chunk
            if self.n_features is None:
                self.n_features, self.dtype = chunk.shape[1], chunk.dtype
            n += len(chunk)
        if self.n_features is None:
            raise ValueError("X has no chunks: the function or list gave nothing to fit")
        return n, self.n_features, self.dtype

    def ranges(self, bounds):
        """(row range index g, rows [bounds[g], bounds[g + 1]) as one C-contiguous array) for
        each g in order; a memmap's ranges are views, chunks are cut and joined (copies)."""
        if self._memmap is not None:
            for g in range(len(bounds) - 1):
                yield g, self._memmap[bounds[g]:bounds[g + 1]]
            return
        g, buf, filled = 0, None, 0
        for start, chunk in self._pieces():
            if start + len(chunk) > self.n_samples:
                raise _changed(self.n_samples)
            pos = 0
            while pos < len(chunk):
                while g < len(bounds) - 1 and bounds[g + 1] <= start + pos:
                    g += 1                       # (empty ranges)
                if buf is None:
                    buf = np.empty((bounds[g + 1] - bounds[g], self.n_features), self.dtype)
                take = min(len(chunk) - pos, len(buf) - filled)
                buf[filled:filled + take] = chunk[pos:pos + take]
                filled, pos = filled + take, pos + take
                if filled == len(buf):
                    yield g, buf
                    g, buf, filled = g + 1, None, 0
        if g < len(bounds) - 1:
            raise _changed(self.n_samples)

    def take(self, indices):
        """The rows ``indices`` (any order, repeats allowed) as a float array."""
        indices = np.asarray(indices, dtype=np.int64)
        order = np.argsort(indices, kind="stable")
        wanted = indices[order]
        out = np.empty((len(indices), self.n_features), self.dtype)
        for start, chunk in self._pieces():
            lo, hi = np.searchsorted(wanted, [start, start + len(chunk)])
            out[order[lo:hi]] = chunk[wanted[lo:hi] - start]
            # (a memmap read piece by piece: rows drawn all over it would map all its pages)
            release(chunk)
        return out

    def __getitem__(self, indices):
        """Rows by an index array, as in-memory X (the M-step's re-seeding draws rows)."""
        return self.take(indices)


def kmeans_start(rows, sample_weight, n_components, covariance_type, rng, backend, n_threads):
    """The statistics of GaussianMixture's "kmeans" start over ChunkedRows of more than
    SAMPLE_ROWS rows: the in-memory start up to rounding. k-means on the same random
    sample of rows (the same draws, so the same centres), then the statistics of the
    clusters of those centres over all rows, added piece by piece."""
    N = rows.n_samples
    pick = np.sort(rng.randint(0, N, size=SAMPLE_ROWS))      # kmeans' own draw
    sw = sample_weight
    centres = kmeans(rows.take(pick), n_components, rng, None if sw is None else sw[pick],
                     full_iter=0, final_labels=False, backend=backend,
                     n_threads=n_threads)[0]
    bounds = np.append(np.arange(0, N, _SCAN_ROWS), N)
    stats = None
    for g, piece in rows.ranges(bounds):
        part = G.stats_from_labels(piece, None if sw is None else sw[bounds[g]:bounds[g + 1]],
                                   covariance_type, None, centres, backend, n_threads)
        release(piece)
        stats = part if stats is None else stats + part
    return stats


def _changed(n_samples):
    return ValueError(f"X's chunks changed between passes: the first pass had {n_samples} "
                      "rows, this one another number; EM reads the same rows at every pass")


def _check_memmap(X):
    if X.ndim != 2 or X.dtype not in (np.float32, np.float64) or not X.flags.c_contiguous:
        raise ValueError(
            f"a memmap X must be 2-D, C-contiguous, float32 or float64; got shape {X.shape}, "
            f"dtype {X.dtype}" + ("" if X.flags.c_contiguous else ", not C-contiguous"))
    return X


class ChunkedEStep:
    """The E-step of a Gaussian mixture over ChunkedRows, equal bit for bit to the
    in-memory kernel's on the same rows: each group of the kernel's split summed alone
    (``n_groups=1``) on a pool of ``n_threads`` Python threads (the kernels release the
    GIL), then the groups added in order."""

    def __init__(self, rows, sample_weight, covariance_type, n_components, backend, n_threads,
                 weight_sum):
        self._rows = rows
        self._sw = sample_weight
        self._ct = covariance_type
        self._K = n_components
        self._mod = get_backend(backend)
        self._code = kernels._cov_code(covariance_type)
        self._bounds = self._mod.estep_groups(rows.n_samples, rows.n_features, n_components,
                                              self._code)
        self._threads = max(1, min(n_threads, len(self._bounds) - 1))
        self._weight_sum = weight_sum

    def __call__(self, params):
        K, D, ct = self._K, self._rows.n_features, self._ct
        means = np.ascontiguousarray(params.means, dtype=np.float64)
        prec_chol = np.ascontiguousarray(params.prec_chol, dtype=np.float64)
        log_const = params.log_const()
        s2_shape = kernels.prec_chol_shape(ct, K, D)

        def group(g, rows):
            a, b = self._bounds[g], self._bounds[g + 1]
            sw = np.empty(0) if self._sw is None else self._sw[a:b]
            nk, s1, s2 = np.empty(K), np.empty((K, D)), np.empty(s2_shape)
            ll = self._mod.estep_stats(rows, sw, log_const, means, prec_chol, self._code, nk,
                                       s1, s2, 1, None, n_groups=1)
            release(rows)
            return ll, nk, s1, s2

        loglik, nk, s1, s2 = 0.0, np.zeros(K), np.zeros((K, D)), np.zeros(s2_shape)
        # the groups in order, at most one per thread in flight (and one being read)
        with ThreadPoolExecutor(max_workers=self._threads) as pool:
            pending = deque()
            for g, rows in self._rows.ranges(self._bounds):
                if len(pending) == self._threads:
                    loglik = _add(pending.popleft().result(), loglik, nk, s1, s2)
                pending.append(pool.submit(group, g, rows))
            while pending:
                loglik = _add(pending.popleft().result(), loglik, nk, s1, s2)
        return GaussianStats(ct, means, nk, s1, s2, loglik, self._weight_sum)


def _add(part, loglik, nk, s1, s2):
    """Add one group's (loglik, nk, s1, s2) into the running sums; return the log-likelihood."""
    ll, pnk, ps1, ps2 = part
    nk += pnk
    s1 += ps1
    s2 += ps2
    return loglik + ll


# ---------------------------------------------------------------------------------- memory
# A memmap's pages stay mapped in the process (and counted in its RSS) once read, until the
# memory is needed elsewhere; a pass over a large file would look as large as the file.
# After a piece has been read it is given back to the page cache (MADV_DONTNEED: the next
# read maps it again, from the cache or the disk). Only for shared mappings (modes r, r+,
# w+): a copy-on-write one ("c") would lose its private changes.
_libc = None


def _madvise():
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c") if sys.platform != "win32" else None
        lib = ctypes.CDLL(name, use_errno=True) if name else None
        _libc = getattr(lib, "madvise", False) if lib is not None else False
        if _libc:
            _libc.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    return _libc


def release(rows):
    """Let go of the whole pages under ``rows`` if it is a view of a shared memmap."""
    if not isinstance(rows, np.memmap) or rows.mode == "c" or not rows.size \
            or not hasattr(mmap, "MADV_DONTNEED") or not _madvise():
        return
    page = mmap.PAGESIZE
    lo = rows.ctypes.data
    hi = lo + rows.nbytes
    lo, hi = -(-lo // page) * page, hi // page * page
    if hi > lo:
        _madvise()(lo, hi - lo, mmap.MADV_DONTNEED)
