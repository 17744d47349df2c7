"""Issue 28: a disk that fills names the disk that is full (the path that got ENOSPC), wherever
it happens: a cached image, the packed embedding store, the run folder's report; and a cache
too small for the tiny models is refused with the figures before they are built."""

from __future__ import annotations

import errno
import os
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest

from ldmprobe import storage
from ldmprobe.engine import diskspace

Usage = namedtuple("Usage", "total used free")


def _full_fsync(monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")  # as a write or fsync raises it: no file name

    monkeypatch.setattr(os, "fsync", full)


def test_a_failed_atomic_write_names_its_file(tmp_path, monkeypatch):
    target = tmp_path / "deep" / "cache" / "images" / "ab" / "x.png"
    _full_fsync(monkeypatch)
    with pytest.raises(OSError) as err:
        storage.atomic_write_bytes(target, b"data")
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(target)
    assert "the disk holding " + str(target.parent) in diskspace.disk_full_message(err.value.filename)
    assert not list(target.parent.iterdir())  # no temp file left


def test_a_failed_append_to_the_packed_store_names_its_shard(tmp_path, monkeypatch):
    from ldmprobe.engine.packed_store import PackedStore

    store = PackedStore(tmp_path / "embeddings" / "ns")
    _full_fsync(monkeypatch)
    with pytest.raises(OSError) as err:
        store.put_many(["k" * 32], [np.ones(4, np.float32)])
    assert str(tmp_path / "embeddings" / "ns") in err.value.filename
    monkeypatch.undo()
    store.close()


def test_the_cli_names_the_full_disk_not_the_working_folder(tmp_path, monkeypatch):
    import click
    from click.testing import CliRunner

    from ldmprobe.cli.main import main

    report = tmp_path / "elsewhere" / "run" / "report.html"

    def writes_a_report():
        storage.atomic_write_text(report, "<html>")

    _full_fsync(monkeypatch)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(click.Group, "invoke", lambda self, ctx: writes_a_report())  # the command's body
    result = CliRunner().invoke(main, ["check"])
    assert result.exit_code == 1, result.output
    assert f"the disk holding {report.parent}" in " ".join(result.stderr.split())
    assert "the disk holding . " not in result.stderr
