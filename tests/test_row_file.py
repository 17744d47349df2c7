"""The run's embeddings in an unnamed temporary file: the same rows as in memory, whatever the
system calls do (short reads and writes continued, never a silently missing part of a row)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from ldmprobe.engine import row_file
from ldmprobe.engine.row_file import RowFile


def _filled(n=50, d=6, **kwargs):
    rng = np.random.default_rng(3)
    rows = rng.standard_normal((n, d)).astype(np.float32)
    f = RowFile(n, (d,), np.float32, **kwargs)
    for i in rng.permutation(n)[: n - 5]:  # five rows never written
        f.set(int(i), rows[i])
    return f, rows


def test_file_and_memory_give_the_same_rows():
    disk, rows = _filled()
    memory, _ = _filled(in_memory=True)
    assert disk.on_disk and not memory.on_disk
    index = np.array([[3, 3, 49], [0, 17, 16]])  # repeats, unsorted, two dimensions
    assert np.array_equal(disk.take(index), memory.take(index), equal_nan=True)
    whole = disk.read()
    written = ~np.isnan(whole[:, 0])
    assert written.sum() == 45 and np.array_equal(whole[written], rows[written])
    with pytest.raises(IndexError):
        disk.take([50])


def test_short_writes_and_reads_are_continued(monkeypatch):
    real_write, real_read = os.pwrite, os.pread
    monkeypatch.setattr(row_file, "IO_CHUNK", 64)  # many calls per block
    monkeypatch.setattr(row_file.os, "pwrite", lambda fd, data, off: real_write(fd, bytes(data[:5]), off))
    monkeypatch.setattr(row_file.os, "pread", lambda fd, n, off: real_read(fd, min(n, 7), off))
    disk, rows = _filled()
    monkeypatch.undo()
    memory, _ = _filled(in_memory=True)
    assert np.array_equal(disk.read(), memory.read(), equal_nan=True)


def test_a_write_that_moves_nothing_is_an_error(monkeypatch):
    f = RowFile(3, (2,), np.float32)
    f.set(0, [1, 2])
    monkeypatch.setattr(row_file.os, "pwrite", lambda fd, data, off: 0)
    with pytest.raises(OSError, match="could not write"):
        f.flush()
