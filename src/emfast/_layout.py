"""How rows are cut into blocks and groups, for kernels whose two backends share the rule as
well as the contract (so that both backends add in the same order).

Both numbers depend on the shapes only, never on the thread count: that is what makes a
kernel's results bit-identical for any number of threads.
"""

import numpy as np

MAX_GROUPS = 64                # fixed-order partial sums; more than any thread count we use
MAX_GROUP_BYTES = 64 << 20     # all groups' slots together stay under this
_MISSING_MAX_BLOCK = 256
# Runs of at least this many rows of one missing pattern (with something observed) take the
# missing-value E-step's subspace path: its per-run setup (K factors of the o x o subspace
# precision, the map of the sums) grows as o^3, its saving per row as D^2. Measured (Cython,
# one thread, 100k rows sorted by pattern): at D = 10, K = 10, 20-40% missing, any threshold
# from 1 to 16 is within 5% of the best (32: +8%, 128: +25%); at D = 30, K = 5, 5% missing,
# 8 to 32 are best and 2 takes twice as long.
MISSING_RUN_MIN = 16
_MISSING_SCRATCH_DOUBLES = 256 * 1024


def n_groups(n_blocks, slot_doubles):
    """Number of contiguous groups of blocks (group g takes blocks [g*n//G, (g+1)*n//G)):
    at most MAX_GROUPS, and slots of ``slot_doubles`` float64 values within MAX_GROUP_BYTES;
    at least 1."""
    by_memory = MAX_GROUP_BYTES // (8 * max(slot_doubles, 1))
    return max(1, min(n_blocks, MAX_GROUPS, by_memory))


def group_offsets(n_rows, block_rows, slot_doubles):
    """Row offsets (G + 1,) of the :func:`n_groups` groups of n_rows rows in blocks of
    ``block_rows``: group g is rows [offsets[g], offsets[g + 1]) (a kernel's
    ``estep_groups``, for passes over X in pieces that keep the in-memory sums)."""
    n_blocks = -(-n_rows // block_rows)
    G = n_groups(n_blocks, slot_doubles)
    return np.minimum(np.arange(G + 1, dtype=np.int64) * n_blocks // G * block_rows, n_rows)


def missing_block_rows(D, K):
    """Rows per block of the missing-value E-step: 256, halved (down to 16) while a thread's
    scratch of K centred blocks and their products (2 K x B x D doubles) exceeds 256 Ki
    doubles."""
    B = _MISSING_MAX_BLOCK
    while B > 16 and 2 * K * B * D > _MISSING_SCRATCH_DOUBLES:
        B //= 2
    return B


# LDA E-step (both backends): documents per block of the document pass, and columns (words)
# per block of the word pass; the groups of blocks come from n_groups.
LDA_DOC_BLOCK = 64
LDA_WORD_BLOCK = 256
# A document's fixed point moves to its live topics' rows gathered topic-major once they fit
# in this many doubles of a thread's scratch (32 KiB: in L1 with the rest of a step's data;
# larger, from the start of a K = 50 document of 145 words, it was slower than the word-major
# rows).
LDA_TOPIC_MAJOR = 4096
