"""Small helpers for judging a clustering."""

import numpy as np


def label_agreement(pred, true):
    """Fraction of rows whose predicted cluster maps to their true one.

    Clusters are matched greedily, largest overlap first (each predicted and each true
    label used once), so the score does not depend on how the clusters are numbered.
    """
    pred = np.asarray(pred, dtype=np.int64)
    true = np.asarray(true, dtype=np.int64)
    table = np.zeros((pred.max() + 1, true.max() + 1), dtype=np.int64)
    np.add.at(table, (pred, true), 1)
    hits = 0
    while table.size and table.max() > 0:
        i, j = np.unravel_index(np.argmax(table), table.shape)
        hits += table[i, j]
        table[i, :] = 0
        table[:, j] = 0
    return hits / len(true)
