"""Disk space (issue 17): a sweep that cannot fit is refused before any model loads, with the
figures; a disk that fills while the run folder is written names the run folder, leaves no
part of it, and loses nothing cached."""

from __future__ import annotations

import errno
import json
from collections import namedtuple
from pathlib import Path

import pytest
from click.testing import CliRunner

from ldmprobe.store import diskspace
from ldmprobe.errors import BadInputError

SPEC = """name = "disk"
templates = ["a photo of a {} house"]
baseline = ""
terms = ["red"]
probes = ["tree"]
seeds = 2
"""
ARGS = ["--pipeline", "tiny", "--measurer", "tiny", "--steps", "2", "--permutations", "99", "--bootstrap", "99",
        "--format", "json"]
Usage = namedtuple("Usage", "total used free")


def sweep(tmp_path: Path, out: Path):
    from ldmprobe.cli.main import main

    spec = tmp_path / "disk.toml"
    spec.write_text(SPEC)
    return CliRunner().invoke(main, ["sweep", str(spec), *ARGS, "--out", str(out)])


def test_estimates_and_refusal_against_an_independent_sum(tmp_path):
    cache, out = tmp_path / "cache", tmp_path / "runs" / "x"
    cache.mkdir()
    (tmp_path / "runs").mkdir()
    pngs = []
    for i, size in enumerate((1000, 3000)):
        pngs.append(tmp_path / f"{i}.png")
        pngs[-1].write_bytes(b"x" * size)
    low, high = diskspace.image_size_range(64, 64, pngs)
    assert (low, high) == (1000, 3000)  # half and 1.5 times the measured mean of 2000
    assert diskspace.image_size_range(64, 64, []) == (64 * 64 * 3 // 4, 64 * 64 * 3 + 4096)
    wanted = diskspace.needs(n_new=10, n_run_images=20, image=(low, high), cache_root=cache, out=out, sheet_cell=16)
    assert len(wanted) == 1  # one filesystem: the cache's and the run folder's needs add up
    thumb = 16 * 16 * 3
    assert wanted[0].low == 10 * (1000 + diskspace.PER_ITEM_EXTRA) + 20 * (1000 + thumb // 8)
    assert wanted[0].high == (10 * (3000 + diskspace.PER_ITEM_EXTRA) + 20 * (3000 + thumb + diskspace.PER_ITEM_EXTRA)
                              + diskspace.MB)
    warnings = []

    class Reporter:
        def warn(self, message):
            warnings.append(message)

    diskspace.check_space(wanted, Reporter(), free=lambda folder: wanted[0].high)  # enough: silent
    assert not warnings
    diskspace.check_space(wanted, Reporter(), free=lambda folder: wanted[0].low)  # maybe: a warning
    assert len(warnings) == 1 and "may run out" in warnings[0]
    with pytest.raises(BadInputError, match="not enough disk space") as err:
        diskspace.check_space(wanted, Reporter(), free=lambda folder: wanted[0].low - 1)
    assert str(tmp_path) in str(err.value) and "LDMPROBE_CACHE" in str(err.value)


def test_a_sweep_that_cannot_fit_is_refused_before_any_model_loads(tmp_path, fresh_cache, monkeypatch):
    from ldmprobe.models import load

    monkeypatch.setattr(diskspace.shutil, "disk_usage", lambda path: Usage(10 ** 9, 10 ** 9, 2000))
    monkeypatch.setattr(load, "load_generator", lambda *a, **k: pytest.fail("a model loaded before the check"))
    result = sweep(tmp_path, tmp_path / "run")
    assert result.exit_code == 2, result.output
    assert "not enough disk space" in result.stderr and "2 KB free" in result.stderr
    assert not list(fresh_cache.rglob("*.png"))  # nothing was made
    assert not (tmp_path / "run").exists()  # the reserved folder is released


def test_a_disk_filling_during_the_run_folder_loses_nothing(tmp_path, fresh_cache, monkeypatch):
    from ldmprobe.results import run_folder

    real, calls = run_folder.clone_file, []

    def fills_up(source, target):
        calls.append(target)
        if len(calls) == 3:
            Path(target).write_bytes(Path(source).read_bytes()[:100])  # a partial copy, as a full disk leaves
            raise OSError(errno.ENOSPC, "No space left on device", str(target))
        return real(source, target)

    monkeypatch.setattr(run_folder, "clone_file", fills_up)
    result = sweep(tmp_path, tmp_path / "run")
    assert result.exit_code == 1, result.output
    message = " ".join(result.stderr.split())
    assert f"the run folder {tmp_path / 'run'} could not be written" in message and "is full" in message
    assert not (tmp_path / "run").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".run")] == []  # no staging folder left
    monkeypatch.setattr(run_folder, "clone_file", real)
    again = sweep(tmp_path, tmp_path / "run")
    assert again.exit_code == 0, again.output
    doc = json.loads(again.stdout)
    assert doc["counts"]["generated"] == 0 and doc["counts"]["cached"] == doc["counts"]["unique"]
    for item in (tmp_path / "run" / "items.jsonl").read_text().splitlines():
        image = json.loads(item)["image"]
        assert (tmp_path / "run" / image).stat().st_size > 100
