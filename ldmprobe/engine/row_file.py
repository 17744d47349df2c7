"""An (n, *shape) array of one dtype held in an unnamed temporary file instead of memory.

A sweep's image embeddings are written here as they are read from the cache or made, and read
back a block at a time (one term of one template, one term, one cell), so that a run's memory
does not grow with the number of images (issue 32). The file has no name (``TemporaryFile``):
it goes when the array is closed or the process ends, whatever the way. Where no temporary
file can be made, the rows are held in memory instead (the same answers).
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

#: Rows written are gathered up to this many before they go to the file in contiguous runs.
WRITE_BUFFER_ROWS = 4096
#: The most bytes one system call reads or writes (Linux moves at most ~2 GiB per call).
IO_CHUNK = 1 << 30


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    """All of ``data`` at ``offset``: a short write (a signal, a filling disk) is continued, and a
    write that moves nothing is an error, never a silently missing part of a row."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view[:IO_CHUNK], offset)
        if written <= 0:
            raise OSError(f"could not write the run's embeddings to their temporary file ({len(view)} bytes left)")
        view, offset = view[written:], offset + written


def _pread_all(fd: int, size: int, offset: int) -> bytes:
    """Exactly ``size`` bytes from ``offset`` (in calls of at most :data:`IO_CHUNK`)."""
    parts, left = [], size
    while left:
        part = os.pread(fd, min(left, IO_CHUNK), offset)
        if not part:
            raise OSError(f"the run's embeddings' temporary file ended {left} bytes early")
        parts.append(part)
        left, offset = left - len(part), offset + len(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)


class RowFile:
    """``n`` rows of ``shape`` and ``dtype``; a row never written reads as NaN (0 for integers)."""

    def __init__(self, n: int, shape: tuple[int, ...], dtype, *, in_memory: bool = False, folder=None):
        self.n, self.row_shape, self.dtype = int(n), tuple(shape), np.dtype(dtype)
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        fill = np.nan if np.issubdtype(self.dtype, np.floating) else 0
        self._memory: np.ndarray | None = None
        self._file = None
        self._pending: dict[int, np.ndarray] = {}
        if not in_memory:
            try:
                self._file = tempfile.TemporaryFile(dir=folder)
                block = np.full((min(self.n, WRITE_BUFFER_ROWS), *self.row_shape), fill, self.dtype).tobytes()
                for start in range(0, self.n, WRITE_BUFFER_ROWS):
                    rows = min(WRITE_BUFFER_ROWS, self.n - start)
                    _pwrite_all(self._file.fileno(), block[: rows * self.row_bytes], start * self.row_bytes)
            except OSError:  # no temporary folder to write in: the rows are held in memory
                self.close()
                self._file = None
        if self._file is None:
            self._memory = np.full((self.n, *self.row_shape), fill, self.dtype)

    @property
    def on_disk(self) -> bool:
        return self._file is not None

    def __len__(self) -> int:
        return self.n

    def set(self, i: int, row) -> None:
        row = np.asarray(row, dtype=self.dtype)
        if row.shape != self.row_shape:
            raise ValueError(f"a row of shape {self.row_shape} was expected, not {row.shape}")
        if self._memory is not None:
            self._memory[i] = row
            return
        self._pending[int(i)] = row.copy()
        if len(self._pending) >= WRITE_BUFFER_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        rows = np.fromiter(self._pending, np.int64, len(self._pending))
        rows.sort()
        for run in np.split(rows, np.flatnonzero(np.diff(rows) != 1) + 1):  # contiguous runs, one write each
            data = b"".join(self._pending[int(i)].tobytes() for i in run)
            _pwrite_all(self._file.fileno(), data, int(run[0]) * self.row_bytes)
        self._pending.clear()

    def take(self, rows) -> np.ndarray:
        """The rows at ``rows`` (any shape of indices), as a new array of shape (*rows.shape, *row shape)."""
        rows = np.asarray(rows, dtype=np.int64)
        if self._memory is not None:
            return self._memory[rows]
        self.flush()
        flat = rows.ravel()
        if len(flat) and (flat.min() < 0 or flat.max() >= self.n):
            raise IndexError(f"row index out of range (0 to {self.n - 1})")
        out = np.empty((len(flat), *self.row_shape), self.dtype)
        order = np.argsort(flat, kind="stable")
        wanted = flat[order]
        breaks = np.flatnonzero(np.diff(wanted) > 1) + 1  # runs of rows next to each other (repeats included)
        for positions in np.split(np.arange(len(wanted)), breaks):
            first, last = int(wanted[positions[0]]), int(wanted[positions[-1]])
            data = _pread_all(self._file.fileno(), (last - first + 1) * self.row_bytes, first * self.row_bytes)
            block = np.frombuffer(data, self.dtype).reshape(-1, *self.row_shape)
            out[order[positions]] = block[wanted[positions] - first]
        return out.reshape(*rows.shape, *self.row_shape)

    def read(self) -> np.ndarray:
        """Every row, as one array."""
        return self.take(np.arange(self.n))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._pending.clear()

    def __del__(self):
        self.close()
