"""The command line's data files, read in one place: CSV (a header detected: a first row
with a field that is not a number), ``.npy``, ``.npz`` (one dense array, or a scipy.sparse
matrix saved by ``scipy.sparse.save_npz``) and Parquet (with pyarrow).

Every problem with a file is a :class:`FileError` naming the file (and the line, column
and value where there is one), for the command line to print as one line.
"""

import csv
import os

import zipfile

import numpy as np

# CSV fields read as a missing value (NaN), compared without case or surrounding spaces
MISSING = ("", "na", "n/a", "nan", "null", "none")
PARQUET = (".parquet", ".pq")


class FileError(ValueError):
    """A data file that cannot be read as the command asks."""


class Table:
    """A data file's columns: ``names`` (from the header; None without one) and
    ``columns``, one 1-D array each (numbers, or the strings of a CSV or a Parquet text
    column)."""

    def __init__(self, path, names, columns, first_line=1):
        self.path = os.fspath(path)
        self.names = names
        self.columns = columns
        self.first_line = first_line       # the file line of row 0, for a text cell's error

    @property
    def n_rows(self):
        return len(self.columns[0]) if self.columns else 0

    def column_index(self, spec):
        """The index of the column named ``spec`` (or numbered: 0 is the first)."""
        if self.names is not None and spec in self.names:
            return self.names.index(spec)
        if spec.isdigit() and int(spec) < len(self.columns):
            return int(spec)
        known = (", ".join(self.names) if self.names is not None
                 else f"none named (no header): give a number 0..{len(self.columns) - 1}")
        raise FileError(f"{self.path}: no column {spec!r} (columns: {known})")

    def matrix(self, drop=None):
        """The columns (except index ``drop``) as a float64 (n_rows, n_columns) array;
        missing CSV values are NaN."""
        keep = [j for j in range(len(self.columns)) if j != drop]
        if not keep:
            raise FileError(f"{self.path}: no data columns")
        out = np.empty((self.n_rows, len(keep)))
        for i, j in enumerate(keep):
            out[:, i] = self._numbers(j)
        return out

    def _numbers(self, j):
        col = self.columns[j]
        if col.dtype.kind in "biuf":
            return col
        out = np.empty(len(col))
        for i, text in enumerate(col.tolist()):
            try:
                out[i] = float(text)
            except ValueError:
                if text.strip().lower() not in MISSING:
                    name = self.names[j] if self.names is not None else str(j)
                    raise FileError(f"{self.path}: line {self.first_line + i}, column "
                                    f"{name!r}: {text.strip()[:40]!r} is not a number"
                                    ) from None
                out[i] = np.nan
        return out


def read_table(path):
    """The :class:`Table` of a CSV, .npy, .npz or Parquet file."""
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if not os.path.isfile(path):
        raise FileError(f"{path}: no such file")
    if ext == ".npy":
        return _array_table(path, _load_npy(path))
    if ext == ".npz":
        return _array_table(path, _load_npz(path, sparse_ok=True))
    if ext in PARQUET:
        return _read_parquet(path)
    return _read_csv(path, "\t" if ext in (".tsv", ".tab") else ",")


def read_counts(path):
    """A count matrix as a scipy.sparse CSR matrix (a sparse .npz as saved) or a dense
    array (any other file of :func:`read_table`)."""
    path = os.fspath(path)
    if path.lower().endswith(".npz") and os.path.isfile(path):
        return _load_npz(path, sparse_ok=True, dense=False)
    return read_table(path).matrix()


def _read_csv(path, delimiter):
    """The Table of a CSV: all numbers read by NumPy's compiled reader, the rest (missing
    values, text, ragged or quoted rows) by the csv module, which also finds the line of an
    error."""
    first, line = _first_row(path, delimiter)
    header = not all(_is_number(v) or v.strip().lower() in MISSING for v in first)
    names = [v.strip() for v in first] if header else None
    try:
        a = np.loadtxt(path, delimiter=delimiter, skiprows=line if header else line - 1,
                       comments=None, ndmin=2, encoding="utf-8-sig")
    except ValueError:
        a = None
    if a is not None and a.shape[0] and a.shape[1] == len(first):
        return Table(path, names, list(a.T))
    return _read_csv_cells(path, delimiter, names)


def _csv_rows(path, delimiter):
    """(file line, fields) of each non-blank row."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, delimiter=delimiter)
            for row in reader:
                if row:                            # blank lines are skipped
                    yield reader.line_num, row
    except (UnicodeDecodeError, csv.Error) as exc:
        raise FileError(f"{path}: not a CSV text file ({exc})") from None


def _first_row(path, delimiter):
    for line, row in _csv_rows(path, delimiter):
        return row, line
    raise FileError(f"{path}: empty file")


def _read_csv_cells(path, delimiter, names):
    """The Table of a CSV whose cells are kept as text (see Table.matrix)."""
    rows = list(_csv_rows(path, delimiter))[names is not None:]
    if not rows:
        raise FileError(f"{path}: a header and no data rows")
    width = len(names) if names is not None else len(rows[0][1])
    for line, row in rows:
        if len(row) != width:
            raise FileError(f"{path}: line {line} has {len(row)} fields, expected {width}")
    columns = [np.array(col, dtype=object) for col in zip(*(row for _, row in rows))]
    return Table(path, names, columns, first_line=rows[0][0])


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


# what np.load raises on a file that is not what its name says: a truncated one (EOFError),
# a damaged zip (zipfile.BadZipFile), a .npy where an .npz was expected (no mapping)
_LOAD_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile)


def _load_npy(path):
    try:
        a = np.load(path, allow_pickle=False)
    except _LOAD_ERRORS as exc:
        raise FileError(f"{path}: not a NumPy .npy file of numbers ({exc})") from None
    if not isinstance(a, np.ndarray):
        raise FileError(f"{path}: an .npz archive, not a .npy array")
    return a


def _load_npz(path, sparse_ok, dense=True):
    """The one array of an .npz (a scipy sparse matrix's as dense when ``dense``)."""
    try:
        npz = np.load(path, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise FileError(f"{path}: a .npy array, not an .npz archive")
        with npz:
            keys = list(npz.keys())
            if sparse_ok and {"format", "shape", "data"} <= set(keys):
                import scipy.sparse

                matrix = scipy.sparse.load_npz(path).tocsr()
                return matrix.toarray() if dense else matrix
            if len(keys) != 1:
                raise FileError(f"{path}: expected one array in the .npz, found "
                                f"{len(keys)} ({', '.join(keys[:10])})")
            return npz[keys[0]]
    except _LOAD_ERRORS as exc:
        if isinstance(exc, FileError):
            raise
        raise FileError(f"{path}: not a NumPy .npz file of numbers ({exc})") from None


def _array_table(path, a):
    if a.dtype.kind not in "biuf":
        raise FileError(f"{path}: holds {a.dtype} values, expected numbers")
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] == 0:
        raise FileError(f"{path}: expected a 2-D array (rows x columns), got shape {a.shape}")
    return Table(path, None, list(a.T))


def _read_parquet(path):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise FileError(f"{path}: reading Parquet files needs pyarrow "
                        "(pip install pyarrow)") from None
    try:
        table = pq.read_table(path)
    except (ValueError, OSError) as exc:      # pyarrow's ArrowInvalid, ArrowIOError
        raise FileError(f"{path}: not a Parquet file ({exc})") from None
    columns = []
    for name, col in zip(table.column_names, table.columns):
        values = col.to_numpy(zero_copy_only=False)
        columns.append(values.astype(np.float64) if values.dtype.kind in "biuf"
                       else values.astype(str))
    if not columns or table.num_rows == 0:
        raise FileError(f"{path}: no data")
    return Table(path, list(table.column_names), columns)
