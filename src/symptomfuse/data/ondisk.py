"""Arrays that stay on disk and are read a slice at a time, so that memory does not grow with a
recording's length.

Curation decodes a recording into scratch files (``RowWriter``) and its feature functions read windows
of them (``DiskArray``); the feature cache stores each array as a ``.npy`` file, written a run of rows at
a time, and the data set cuts training windows out of those files when a batch asks for them. Nothing is
memory-mapped: a read opens the file, reads the rows asked for and closes it, so no page of a long
recording stays resident and no file stays open (thousands of cached recordings would exhaust a
process's file descriptors).

A ``DiskArray`` answers ``len``, ``shape``, ``dtype``, slices and integer arrays on its first axis (the
rest of an index applies to the rows read), and ``np.asarray`` (which reads everything: for small arrays).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from symptomfuse.atomic import atomic_path


class DiskArray:
    """Rows of ``row_shape`` stored contiguously in ``path`` from byte ``offset``. ``index``, when given,
    maps this array's rows to the file's rows (e.g. each frame at the shared rate -> the decoded frame
    shown then); ``start``/``length`` select a run of the file's rows (e.g. the samples both streams
    cover)."""

    def __init__(self, path: Path, dtype, row_shape: tuple[int, ...], offset: int = 0,
                 index: np.ndarray | None = None, start: int = 0, length: int | None = None):
        self.path, self.dtype, self.row_shape, self.offset = Path(path), np.dtype(dtype), tuple(row_shape), int(offset)
        if self.dtype.hasobject:
            raise ValueError(f"{self.path.name}: object arrays are never read (they would need unpickling)")
        self.index = None if index is None else np.asarray(index, np.int64)
        self.start = int(start)
        if self.index is not None:
            self.length = len(self.index)
        elif length is None:
            self.length = (self.path.stat().st_size - self.offset) // self.row_bytes - self.start
        else:
            self.length = int(length)

    @property
    def row_bytes(self) -> int:
        return self.dtype.itemsize * int(np.prod(self.row_shape, dtype=np.int64))

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.length, *self.row_shape)

    @property
    def ndim(self) -> int:
        return 1 + len(self.row_shape)

    def __len__(self) -> int:
        return self.length

    def __repr__(self) -> str:
        return f"DiskArray({self.path.name}, shape={self.shape}, dtype={self.dtype})"

    def _read_run(self, fh, first: int, count: int) -> np.ndarray:
        """``count`` of the file's rows from file row ``first`` (read straight into the array)."""
        fh.seek(self.offset + first * self.row_bytes)
        per_row = self.row_bytes // self.dtype.itemsize
        out = np.fromfile(fh, self.dtype, count * per_row)
        if out.size != count * per_row:
            raise ValueError(f"{self.path.name} is shorter than its header says (truncated)")
        return out.reshape(count, *self.row_shape)

    def _file_rows(self, rows: np.ndarray) -> np.ndarray:
        """The file's rows for this array's ``rows`` (in range), read as few runs as there are gaps."""
        file_rows = self.index[rows] if self.index is not None else rows + self.start
        n = len(file_rows)
        if n == 0:
            return np.zeros((0, *self.row_shape), self.dtype)
        first = int(file_rows[0])
        if int(file_rows[-1]) - first == n - 1 and (n == 1 or bool(np.all(np.diff(file_rows) == 1))):
            with open(self.path, "rb") as fh:  # the usual case: one run of consecutive rows
                return self._read_run(fh, first, n)
        unique, inverse = np.unique(file_rows, return_inverse=True)
        breaks = np.flatnonzero(np.diff(unique) != 1) + 1
        with open(self.path, "rb") as fh:
            runs = [self._read_run(fh, int(r[0]), len(r)) for r in np.split(unique, breaks)]
        block = runs[0] if len(runs) == 1 else np.concatenate(runs)
        return block[inverse.ravel()]

    def __getitem__(self, key):
        rest = ()
        if isinstance(key, tuple):
            key, rest = (key[0] if key else slice(None)), key[1:]
        if key is Ellipsis:
            key, rest = slice(None), (Ellipsis, *rest)
        if isinstance(key, slice):
            a, b, step = key.indices(self.length)
            rows = np.arange(a, b, step, dtype=np.int64)
            out = self._file_rows(rows)
        elif isinstance(key, (int, np.integer)):
            i = int(key) + (self.length if key < 0 else 0)
            if not 0 <= i < self.length:
                raise IndexError(f"row {key} is outside {self.length} rows")
            out = self._file_rows(np.array([i]))[0]
            return out[rest] if rest else out
        else:
            rows = np.asarray(key)
            if rows.dtype == bool:
                if rows.shape != (self.length,):
                    raise IndexError(f"a boolean index of shape {rows.shape} for {self.length} rows")
                rows = np.flatnonzero(rows)
            rows = rows.astype(np.int64)
            rows = np.where(rows < 0, rows + self.length, rows)
            if np.any((rows < 0) | (rows >= self.length)):
                raise IndexError(f"a row outside {self.length} rows")
            out = self._file_rows(rows.ravel()).reshape(*rows.shape, *self.row_shape)
        return out[(slice(None), *rest)] if rest else out

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def chunks(self, rows: int):
        """This array's rows, ``rows`` at a time (to copy it without holding it)."""
        for a in range(0, self.length, rows):
            yield self[a:a + rows]


def chunk_rows(row_shape: tuple[int, ...], dtype, budget: int = 16 << 20) -> int:
    """How many rows fit in ``budget`` bytes (at least one)."""
    return max(1, budget // max(1, np.dtype(dtype).itemsize * int(np.prod(row_shape, dtype=np.int64))))


class RowWriter:
    """Appends rows of one shape and dtype to a raw scratch file; ``array()`` reads them back lazily."""

    def __init__(self, path: Path):
        self.path, self.rows, self.row_shape, self.dtype = Path(path), 0, None, None
        self._fh = open(self.path, "wb", buffering=1 << 20)  # frames come one at a time: few system calls

    def append(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows)
        if self.row_shape is None:
            self.row_shape, self.dtype = rows.shape[1:], rows.dtype
        elif rows.shape[1:] != self.row_shape or rows.dtype != self.dtype:
            raise ValueError(f"{self.path.name}: rows of {rows.shape[1:]} {rows.dtype} after {self.row_shape} {self.dtype}")
        self._fh.write(rows.data)  # the array's own bytes, not a copy
        self.rows += len(rows)

    def close(self) -> None:
        self._fh.close()

    def array(self, **view) -> DiskArray:
        """The rows written so far (after ``close``); ``view``: DiskArray's index/start/length."""
        return DiskArray(self.path, self.dtype, self.row_shape, **view)


def read_npy(path: Path) -> DiskArray:
    """A ``.npy`` file as a DiskArray (its header read and checked; object arrays refused)."""
    with open(path, "rb") as fh:
        try:
            version = np.lib.format.read_magic(fh)
            shape, fortran, dtype = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                     else np.lib.format.read_array_header_2_0)(fh)
        except ValueError as exc:
            raise ValueError(f"{path.name} is not a NumPy array file: {exc}") from None
        offset = fh.tell()
    if fortran:
        raise ValueError(f"{path.name} is stored in Fortran order; only C order is read")
    if not shape:
        raise ValueError(f"{path.name} holds a scalar, not rows")
    array = DiskArray(path, dtype, shape[1:], offset=offset, length=shape[0])
    if os.path.getsize(path) < offset + shape[0] * array.row_bytes:
        raise ValueError(f"{path.name} is shorter than its header says (truncated)")
    return array


class NpyWriter:
    """Writes one ``.npy`` file of ``rows`` rows a run at a time; ``close`` checks that every row came and
    moves the file into place (atomically)."""

    def __init__(self, path: Path, rows: int, row_shape: tuple[int, ...], dtype):
        self.path, self.expected, self.written = Path(path), int(rows), 0
        self.row_shape, self.dtype = tuple(row_shape), np.dtype(dtype)
        self._ctx = atomic_path(self.path)
        tmp = self._ctx.__enter__()
        self._fh = open(tmp, "wb")
        np.lib.format.write_array_header_1_0(self._fh, {"descr": np.lib.format.dtype_to_descr(self.dtype),
                                                         "fortran_order": False,
                                                         "shape": (self.expected, *self.row_shape)})

    def append(self, rows) -> None:
        rows = np.asarray(rows)
        if rows.shape[1:] != self.row_shape:
            raise ValueError(f"{self.path.name}: rows of shape {rows.shape[1:]}, expected {self.row_shape}")
        if self.written + len(rows) > self.expected:
            raise ValueError(f"{self.path.name}: more than the {self.expected} rows announced")
        self._fh.write(np.ascontiguousarray(rows, self.dtype).data)  # no copy when already C-ordered
        self.written += len(rows)

    def close(self) -> None:
        self._fh.close()
        if self.written != self.expected:
            self._ctx.__exit__(ValueError, None, None)
            raise ValueError(f"{self.path.name}: {self.written} rows written of the {self.expected} announced")
        self._ctx.__exit__(None, None, None)

    def abort(self) -> None:
        self._fh.close()
        try:
            self._ctx.__exit__(RuntimeError, None, None)
        except RuntimeError:
            pass


def write_npy(path: Path, array) -> None:
    """Write an ndarray or a DiskArray as ``.npy``, a bounded run of rows at a time."""
    if not isinstance(array, DiskArray):
        array = np.asarray(array)
        if array.ndim == 0:
            raise ValueError(f"{Path(path).name}: a scalar is not an array of rows")
    writer = NpyWriter(path, len(array), array.shape[1:], array.dtype)
    try:
        step = chunk_rows(array.shape[1:], array.dtype)
        for a in range(0, len(array), step):
            writer.append(array[a:a + step])
    except BaseException:
        writer.abort()
        raise
    writer.close()
