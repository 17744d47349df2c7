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

from ldmprobe.store.files import atomic_write_bytes, atomic_write_text
from ldmprobe.store import diskspace

Usage = namedtuple("Usage", "total used free")


def _full_fsync(monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")  # as a write or fsync raises it: no file name

    monkeypatch.setattr(os, "fsync", full)


def test_a_failed_atomic_write_names_its_file(tmp_path, monkeypatch):
    target = tmp_path / "deep" / "cache" / "images" / "ab" / "x.png"
    _full_fsync(monkeypatch)
    with pytest.raises(OSError) as err:
        atomic_write_bytes(target, b"data")
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(target)
    assert "the disk holding " + str(target.parent) in diskspace.disk_full_message(err.value.filename)
    assert not list(target.parent.iterdir())  # no temp file left


def test_a_failed_append_to_the_packed_store_names_its_shard(tmp_path, monkeypatch):
    from ldmprobe.store.packed_store import PackedStore

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
        atomic_write_text(report, "<html>")

    _full_fsync(monkeypatch)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(click.Group, "invoke", lambda self, ctx: writes_a_report())  # the command's body
    result = CliRunner().invoke(main, ["check"])
    assert result.exit_code == 1, result.output
    assert f"the disk holding {report.parent}" in " ".join(result.stderr.split())
    assert "the disk holding . " not in result.stderr


def test_a_cache_too_small_for_the_tiny_models_is_refused_before_building(tmp_path, monkeypatch):
    from ldmprobe.errors import BadInputError, LdmprobeError
    from ldmprobe.models import tiny

    built = []
    monkeypatch.setattr(diskspace.shutil, "disk_usage", lambda path: Usage(10 ** 9, 10 ** 9, 5 * diskspace.MB))
    monkeypatch.setattr(tiny, "build_tiny_generator", lambda folder: built.append(folder))
    with pytest.raises(BadInputError, match=r"not enough disk space: .* 5\.0 MB free; building the tiny-generator"):
        tiny.ensure_tiny_generator(tmp_path / "models")
    assert built == [] and not list((tmp_path / "models").glob("*"))

    def fills_up(folder):  # the disk fills while building: safetensors raises its own error
        monkeypatch.setattr(diskspace.shutil, "disk_usage", lambda path: Usage(10 ** 9, 10 ** 9, 1000))
        raise RuntimeError("SafetensorError: Error while serializing: IoError")

    monkeypatch.setattr(diskspace.shutil, "disk_usage", lambda path: Usage(10 ** 9, 10 ** 9, 10 ** 9))
    monkeypatch.setattr(tiny, "build_tiny_generator", fills_up)
    with pytest.raises(LdmprobeError, match="building the tiny-generator model failed: the disk holding .* is full"):
        tiny.ensure_tiny_generator(tmp_path / "models")
    assert not list((tmp_path / "models").glob("*"))  # no staging folder left
