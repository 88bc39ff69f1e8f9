"""Categorical mixture family (latent class analysis): J items, item j with C_j categories,
independent within a component. The one place of its maths: parameters, M-step with the
Dirichlet prior, parameter count, sampling, log-likelihood helpers and the data encoding.
emfast.hmm's CategoricalEmission (one item) uses the same functions.

The probabilities live in one (K, C) table, C = sum_j C_j: item j's categories are columns
``offsets[j]:offsets[j + 1]``. The kernels (emfast._cython/_numba ``_discrete``) read the
data as int32 codes with the item's offset added (-1: missing), so one code indexes the
table's transposed log, ``log_prob_T`` (C, K).
"""

import threading

import numpy as np

from emfast import _unconstrained as U
from emfast import _validation as V
from emfast._config import get_backend
from emfast.kernels import _threads_for
from emfast.mixture._discrete import BoundFamily, CountStats, log0, mstep_weights

# Codes index a (C, K) table: refused beyond this many categories in all (a typo such as a
# code of 10**9 would otherwise allocate gigabytes).
MAX_CATEGORIES = 2 ** 24


class CategoricalParams:
    """weights (K,), probs (K, C) (each item's block of columns sums to 1 per component),
    offsets (J + 1,) int64."""

    __slots__ = ("weights", "probs", "offsets")

    def __init__(self, weights, probs, offsets):
        self.weights = weights
        self.probs = probs
        self.offsets = offsets

    def log_weights(self):
        return log0(self.weights)

    def log_prob_T(self):
        return log_table_T(self.probs)

    def blocks(self):
        """The probabilities as a list of J arrays (K, C_j)."""
        o = self.offsets
        return [self.probs[:, o[j]:o[j + 1]] for j in range(len(o) - 1)]


def log_table_T(probs):
    """The kernels' (C, K) table of log P(category | component) from probs (K, C)."""
    return np.ascontiguousarray(log0(probs).T)


def offsets_of(n_categories):
    """Item offsets (J + 1,) int64 from the category counts (J,)."""
    return np.concatenate([[0], np.cumsum(n_categories)]).astype(np.int64)


def block_sums(a, offsets):
    """(K, J): the sum of each component's block of each item of ``a`` (K, C), in one
    reduction (a loop over the items cost more than a latent class E-step's kernel)."""
    return np.add.reduceat(a, offsets[:-1], axis=-1)


def spread_blocks(a, offsets):
    """(K, C): each item's value of ``a`` (K, J) repeated over the item's categories (the
    converse of :func:`block_sums`)."""
    return np.repeat(a, np.diff(offsets), axis=-1)


def normalize_blocks(a, offsets):
    """Each component's block of each item divided by its sum; a block summing to 0 stays 0
    (hmmlearn's guard: a state no frame visits keeps an all-zero row)."""
    s = block_sums(a, offsets)
    s[s == 0] = 1.0
    return a / spread_blocks(s, offsets)


def mstep_probabilities(counts, prior, offsets):
    """MAP probabilities (K, C) from the weighted category counts (K, C) under a symmetric
    Dirichlet(``prior``) per item and component: (counts + prior - 1) / sum, negative
    numerators cut to 0 (hmmlearn's emissionprob_prior; 1 is the maximum-likelihood
    estimate). With missing values each item's sum runs over the rows that answered it.
    Where a prior below 1 cuts every numerator of a block that has counts, the block is
    its counts' maximum-likelihood estimate instead (an all-zero block is no distribution)."""
    numerators = np.maximum(prior - 1.0 + counts, 0.0)
    if np.any(np.asarray(prior) < 1.0):
        cut = (block_sums(numerators, offsets) == 0) & (block_sums(counts, offsets) > 0)
        if cut.any():
            cut = spread_blocks(cut, offsets)
            numerators[cut] = counts[cut]
    return normalize_blocks(numerators, offsets)


def n_parameters(n_components, n_categories):
    """Free scalars: K - 1 weights and K (C_j - 1) probabilities per item."""
    K = n_components
    return K - 1 + K * int(np.sum(np.asarray(n_categories) - 1))


def item_log_prob(codes, log_prob_T, out=None):
    """(N, K) log P(x_n | component) of one item's codes (N,) int64, checked in range:
    the table's rows picked, written into ``out`` where given."""
    # "clip" lets take write straight into out; the codes were range-checked
    return np.take(log_prob_T, codes, axis=0, out=out, mode="clip")


def draw(blocks, labels, rng):
    """Codes (N, J) int64 drawn for components ``labels`` (N,): per component (in order),
    per item, ``rng.choice`` from its probabilities (the stream of hmmlearn's sampler)."""
    X = np.empty((len(labels), len(blocks)), dtype=np.int64)
    for k in np.unique(labels):
        idx = np.flatnonzero(labels == k)
        for j, p in enumerate(blocks):
            X[idx, j] = rng.choice(p.shape[1], size=len(idx), p=p[k])
    return X


def sample(params, n_samples, rng):
    """(X (n, J) float64 codes, labels): components in order, as GaussianMixture's."""
    counts = rng.multinomial(n_samples, params.weights / params.weights.sum())
    labels = np.repeat(np.arange(len(counts)), counts)
    return draw(params.blocks(), labels, rng).astype(np.float64), labels


# ------------------------------------------------------------------------- data
# The dtypes check_codes keeps as they are: floats (NaN: missing) and integers
CODE_DTYPES = (np.float64, np.float32, np.int8, np.int16, np.int32, np.int64, np.uint8,
               np.uint16, np.uint32, np.uint64)


def check_codes(X, estimator, n_categories=None):
    """Validate categorical data (N, J) (integer codes, or floats with integer values; NaN
    missing) and encode it for the kernels.

    ``n_categories`` None (fit): C_j = the largest code of item j + 1 (an item with no
    observed value is an error); given (predict): a code >= C_j is an error.
    Returns (codes (N, J) int32 with item offsets added and -1 where missing,
    n_categories (J,) int64). The caller's X is not modified.
    """
    # integer codes stay integers: no NaN to look for, no fractions, no float copy of X (a
    # third of a default fit on 200,000 x 10 codes went to those passes)
    X = V.check_array(X, estimator=estimator, allow_nan=True, dtypes=CODE_DTYPES)
    if n_categories is not None and X.shape[1] != len(n_categories):
        raise ValueError(f"X has {X.shape[1]} features, but {estimator} is expecting "
                         f"{len(n_categories)} features as input.")
    missing = np.isnan(X) if X.dtype.kind == "f" else None
    seen = X if missing is None else np.where(missing, 0.0, X)
    V.check_whole_numbers(seen, estimator, "category codes",
                          "category codes must be integers (0, 1, ..., C_j - 1; NaN for "
                          "missing); X has non-integer values")
    # as floats: the checks below add them up (uint64 codes would wrap around)
    top = (X if missing is None else np.where(missing, -1.0, X)).max(axis=0).astype(np.float64)
    if n_categories is None:
        never = np.flatnonzero(top < 0)
        if len(never):
            raise ValueError(f"{estimator}: item(s) {never[:10].tolist()} of X are missing "
                             "(NaN) in every row")
        if top.sum() + len(top) > MAX_CATEGORIES:
            raise ValueError(f"{estimator}: the items have {int(top.sum() + len(top))} "
                             f"categories in all, more than {MAX_CATEGORIES}; recode each "
                             "item's categories as 0, 1, ..., C_j - 1")
        n_categories = top.astype(np.int64) + 1
    else:
        over = np.flatnonzero(top >= n_categories)
        if len(over):
            j = int(over[0])
            raise ValueError(f"{estimator}: item {j} has category code {int(top[j])}, but fit "
                             f"saw codes 0..{int(n_categories[j]) - 1} only (C_j = "
                             f"{int(n_categories[j])})")
    codes = (seen + offsets_of(n_categories)[:-1]).astype(np.int32)
    if missing is not None:
        codes[missing] = -1
    return codes, n_categories


def frequency_encoding(codes, n_categories, sample_weight):
    """One-hot rows (N, C) float64; a missing item's block holds the item's (weighted)
    frequencies in these rows, as a missing value's column mean (uniform where no row
    answered it)."""
    N = codes.shape[0]
    C = int(np.sum(n_categories))
    onehot = np.zeros((N, C))
    observed = codes >= 0
    rows = np.nonzero(observed)[0]
    onehot[rows, codes[observed]] = 1.0
    if not observed.all():
        freq = np.average(onehot, axis=0, weights=sample_weight)
        offsets = offsets_of(n_categories)
        for j in range(codes.shape[1]):
            miss = ~observed[:, j]
            if miss.any():
                lo, hi = offsets[j], offsets[j + 1]
                total = freq[lo:hi].sum()    # 0: the item is unanswered in these rows
                block = freq[lo:hi] / total if total > 0 else 1.0 / (hi - lo)
                onehot[np.ix_(miss, np.arange(lo, hi))] = block
    return onehot


# ------------------------------------------------------------------------- item groups
# The kernels spend a gather of K log-probabilities on each code of a row, and a scatter of
# K responsibilities on its statistics. They run on groups of neighbouring items instead:
# one "super-item" per group, whose categories are the group's combinations of its items'
# categories (at most MAX_COMBINATIONS), whose log-probability table is the sum of its
# items' tables, and whose counts, summed over the other items of the group, are each
# item's counts. This is exact (only the order of the adds changes) and cuts the gathers
# and scatters by the group size: 10 items of 4 categories are 3 groups (256, 256, 16).
# A missing answer is one more category of its item (where the item has any), with
# log-probability 0 and its counts dropped, so grouped codes are never missing. Binary items
# make a group's table much larger than its items' (256 rows for 8 items of 2 rows each):
# where the grouped table would exceed both the items' table and GROUPED_TABLE_DOUBLES, the
# items stay alone (a table beyond the caches costs more than the gathers it saves).
MAX_COMBINATIONS = 256
GROUPED_TABLE_DOUBLES = 32768
# Rows that repeat an earlier row's answers are one row of the E-step, with the weights of
# its repeats summed (survey data repeats itself: 200,000 rows of 10 items of 4 categories
# held 73,000 distinct patterns), where the patterns are at most PATTERN_SHARE of the rows;
# not looked for (no sort of all the keys) where PATTERN_SAMPLE rows spread over the data
# are more than SAMPLE_SHARE distinct (a sample repeats itself less than the whole: those
# 200,000 rows' sample was 86% distinct).
PATTERN_SHARE = 0.7
PATTERN_SAMPLE = 4096
SAMPLE_SHARE = 0.95


class ItemGroups:
    """The grouped codes of one data set and the maps between item and group tables.

    codes (N, J) int32 (item offsets added, -1 missing) and offsets (J + 1,) give
    ``self.codes`` (N, G) int32, each a row of the (sum of the groups' combinations, K)
    table that :meth:`table` builds from the items' (C, K) table; :meth:`item_counts` maps
    the group counts back to the items' (C, K). ``self.inverse`` (N,): each row's pattern,
    the row ``self.patterns[inverse]`` of the distinct rows of ``self.codes``; None where
    the rows repeat too little (:data:`PATTERN_SHARE`)."""

    def __init__(self, codes, offsets, n_components):
        N, J = codes.shape
        sizes = np.diff(offsets)
        radix = sizes + (codes < 0).any(axis=0)      # a missing slot where there is NaN
        self.patterns = self.inverse = None
        bounds = [0]
        while bounds[-1] < J:
            stop, combos = bounds[-1] + 1, int(radix[bounds[-1]])
            while stop < J and combos * int(radix[stop]) <= MAX_COMBINATIONS:
                combos *= int(radix[stop])
                stop += 1
            bounds.append(stop)
        self.offsets, self.sizes, self.radix = offsets, sizes, radix
        self.group_sizes = [int(np.prod(radix[a:b])) for a, b in zip(bounds[:-1], bounds[1:])]
        grouped_doubles = sum(self.group_sizes) * n_components
        # every item alone: the codes and tables as they are (no work per E-step)
        self.identity = (len(bounds) == J + 1 or grouped_doubles > max(
            int(offsets[-1]) * n_components, GROUPED_TABLE_DOUBLES))
        if self.identity:
            self.codes, self.group_sizes = codes, [int(offsets[-1])]
            # digits: an answer's category, a missing one the digit past the categories
            self._keep_patterns(radix, (np.where(codes[:, j] >= 0, codes[:, j] - offsets[j],
                                                 sizes[j]) for j in range(J)))
            return
        self.bounds = bounds
        grouped = np.empty((N, len(bounds) - 1), dtype=np.int32)
        # the items' counts from the groups': combination r of a group adds to the row of
        # each of its items' categories (not to a missing slot), one matrix product
        self._to_items = np.zeros((int(offsets[-1]), sum(self.group_sizes)))
        start = 0
        for g, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            value = np.zeros(N, dtype=np.int64)
            combos = np.arange(self.group_sizes[g])
            for j in range(a, b):        # row-major over the group's items
                c = codes[:, j]
                value = value * int(radix[j]) + np.where(c >= 0, c - offsets[j], sizes[j])
                digit = combos // int(np.prod(radix[j + 1:b])) % int(radix[j])
                real = digit < sizes[j]
                self._to_items[offsets[j] + digit[real], start + combos[real]] = 1.0
            grouped[:, g] = value + start
            start += self.group_sizes[g]
        self.codes = grouped
        starts = np.cumsum([0] + self.group_sizes)
        self._keep_patterns(np.array(self.group_sizes),
                            (grouped[:, g] - starts[g] for g in range(len(self.group_sizes))))

    def _keep_patterns(self, radix, digits):
        """self.patterns and self.inverse from each row's digits (a generator of (N,)
        columns) in the radices ``radix``."""
        found = _distinct_rows(self.codes.shape[0], radix, digits)
        if found is not None:
            self.patterns = np.ascontiguousarray(self.codes[found[0]])
            self.inverse = found[1]

    def pattern_weights(self, sample_weight):
        """(rows, weights) the E-step runs on: the distinct rows with the summed weights of
        their repeats, or the rows themselves with ``sample_weight`` ((0,): all 1)."""
        if self.inverse is None:
            return self.codes, np.empty(0) if sample_weight is None else sample_weight
        return self.patterns, np.bincount(self.inverse, weights=sample_weight,
                                          minlength=len(self.patterns)).astype(np.float64)

    def _items(self, g):
        return range(self.bounds[g], self.bounds[g + 1])

    def table(self, log_prob_T):
        """The groups' (combinations, K) log-probability table from the items' (C, K)."""
        if self.identity:
            return log_prob_T
        K = log_prob_T.shape[1]
        parts = []
        for g in range(len(self.group_sizes)):
            items = self._items(g)
            shape = [int(self.radix[j]) for j in items]
            t = np.zeros(shape + [K])
            for axis, j in enumerate(items):
                rows = np.zeros((int(self.radix[j]), K))       # the missing slot adds 0
                rows[:self.sizes[j]] = log_prob_T[self.offsets[j]:self.offsets[j + 1]]
                view = [1] * len(shape) + [K]
                view[axis] = int(self.radix[j])
                t += rows.reshape(view)
            parts.append(t.reshape(-1, K))
        return np.ascontiguousarray(np.concatenate(parts))

    def item_counts(self, group_counts):
        """The items' (C, K) counts from the groups' (combinations, K) counts."""
        if self.identity:
            return group_counts
        return self._to_items @ group_counts


def _distinct_rows(N, radix, digits):
    """(rows, inverse): one row of each distinct pattern (in the order of their keys) and
    each row's pattern, from the rows' digits (a generator of (N,) columns) in the radices
    ``radix``; None where their keys would not fit an int64, or where the patterns are more
    than PATTERN_SHARE of the rows (or SAMPLE_SHARE of a sample). Keys below 8 N are
    counted in place of a sort."""
    if N < 2 or np.sum(np.log2(np.asarray(radix, dtype=np.float64))) >= 62:
        return None
    key = np.zeros(N, dtype=np.int64)
    for r, d in zip(radix, digits):
        key *= int(r)
        key += d
    step = max(1, N // PATTERN_SAMPLE)
    sample = key[::step]
    if len(sample) < N and len(np.unique(sample)) > SAMPLE_SHARE * len(sample):
        return None
    space = int(np.prod(np.asarray(radix, dtype=np.float64)))
    if space <= 8 * N:
        present = np.bincount(key, minlength=space) > 0
        pattern = np.cumsum(present) - 1
        inverse = pattern[key]
        rows = np.empty(int(pattern[-1]) + 1, dtype=np.int64)
        rows[inverse] = np.arange(N)          # any row of a pattern: they are alike
    else:
        _, rows, inverse = np.unique(key, return_index=True, return_inverse=True)
    if len(rows) > PATTERN_SHARE * N:
        return None
    return rows, inverse


# ------------------------------------------------------------------------- EM family
class CategoricalFamily(BoundFamily):
    """E-step (the compiled ``categorical_estep_stats``), M-step with the Dirichlet prior,
    and SQUAREM's pack/unpack, for emfast._em's drivers. X: the int32 codes."""

    natural_coordinates = True     # SQUAREM: pack gives the parameters themselves

    def __init__(self, n_components, n_categories, prior, backend, weight_sum, encoded,
                 encoded_weight):
        super().__init__(n_components, backend, weight_sum, encoded, encoded_weight)
        self.offsets = offsets_of(n_categories)
        self.prior = float(prior)
        self._groups_lock = threading.Lock()
        self._grouped_of = self._grouped = None

    def _groups(self, codes):
        """The ItemGroups of ``codes``, made by the first thread that asks (once per fit)."""
        with self._groups_lock:
            if self._grouped_of is not codes:
                self._grouped = ItemGroups(codes, self.offsets, self.n_components)
                self._grouped_of = codes
            return self._grouped

    def _bind(self, codes, sample_weight, n_threads):
        kernel = get_backend(self.backend, "discrete").categorical_estep_stats
        groups = self._groups(codes)
        rows, sw = groups.pattern_weights(sample_weight)     # sw (0,): weights 1
        threads = _threads_for(rows.shape[0], n_threads)
        nk = np.empty(self.n_components)
        group_counts = np.empty((sum(groups.group_sizes), self.n_components))

        def estep(params):
            loglik = kernel(rows, sw, groups.table(params.log_prob_T()),
                            params.log_weights(), nk, group_counts, threads)
            return CountStats(nk, groups.item_counts(group_counts), loglik, self.weight_sum)
        return estep

    def _mstep(self, stats):
        probs = mstep_probabilities(stats.sums.T, self.prior, self.offsets)
        # a component that no row answering the item reaches: uniform, not all zero
        # (hmmlearn's all-zero row is no distribution for predict to use)
        empty = block_sums(probs, self.offsets) == 0
        if empty.any():      # those blocks are all 0: 1 / C_j added there, 0 elsewhere
            probs = probs + spread_blocks(empty / np.diff(self.offsets), self.offsets)
        return CategoricalParams(mstep_weights(stats.nk), probs, self.offsets)

    def _frequencies(self, params):
        return params.probs.copy()

    def _from_frequencies(self, weights, frequencies):
        return CategoricalParams(weights, normalize_blocks(frequencies, self.offsets),
                                 self.offsets)

    # SQUAREM (emfast._em) on the weights and probabilities themselves: the M-step is a
    # ratio of expected counts, and along the probabilities the EM map is nearer a line
    # than along their logs (E-steps to tol=1e-8, 20,000 rows of 8 items of 3 categories,
    # K = 4, four data sets: 3.4x, 5.4x, 0.7x and 3.6x fewer than plain EM through the logs,
    # 3.7x, 6.8x, 0.8x and 4.0x here). A probability of 0 stays 0 (EM never moves it, so
    # neither does the extrapolation); a negative one is refused (a ValueError: SQUAREM then
    # takes the plain EM step).
    def pack(self, params):
        return np.concatenate([params.weights, params.probs.ravel()])

    def unpack(self, vector, like):
        r = U.Reader(vector)
        weights = U.mixture_weights(r.take(len(like.weights)))
        probs = r.take(like.probs.shape)
        r.done()
        if np.any(probs < 0):
            raise ValueError("the extrapolated probabilities are negative")
        return CategoricalParams(weights, normalize_blocks(probs, self.offsets), self.offsets)
