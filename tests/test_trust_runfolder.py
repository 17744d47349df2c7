"""Issue 15, run folder and cache: a run folder is the user's (copies, never links; edits never
reach the cache or a later run), unique, never silently reused, safely named, checked before any
work; the cache detects a changed image, and every repair is said on stderr."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ldmprobe.cli.main import main
from ldmprobe.results.provenance import validate_document

SPEC = """\
name = "{name}"
templates = {templates}
baseline = ""
terms = ["red"]
probes = ["fire", "ocean"]
seeds = 2
"""
REPAIRED = "failed their integrity check"


def spec(tmp_path: Path, name: str = "mini", templates=("a photo of a {} car",)) -> Path:
    path = tmp_path / f"{abs(hash((name, templates)))}.toml"
    path.write_text(SPEC.format(name=name, templates=json.dumps(list(templates))))
    return path


def sweep(*args, expect=0, fmt="json"):
    result = CliRunner().invoke(main, ["sweep", *map(str, args), "--pipeline", "tiny", "--measurer", "tiny",
                                       "--format", fmt, "--permutations", "99", "--bootstrap", "99", "--no-report"])
    assert result.exit_code == expect, (result.output, result.exception)
    return result


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cached_pngs(root: Path) -> dict[str, str]:
    return {p.name: sha(p) for p in sorted((root / "images").rglob("*.png"))}


@pytest.mark.slow
def test_run_folder_images_are_copies_and_edits_reach_neither_cache_nor_later_runs(fresh_cache, tmp_path):
    from PIL import Image

    path = spec(tmp_path)
    sweep(path, "--out", tmp_path / "a")
    before = cached_pngs(fresh_cache)
    items = [json.loads(x) for x in (tmp_path / "a" / "items.jsonl").read_text().splitlines()]
    for item in items:
        copy, original = tmp_path / "a" / item["image"], fresh_cache / "images" / item["key"][:2] / f"{item['key']}.png"
        assert copy.stat().st_nlink == 1 and copy.stat().st_ino != original.stat().st_ino
        assert copy.read_bytes() == original.read_bytes()
    sheet_before = (tmp_path / "a" / "contact-00.png").read_bytes()
    victim = tmp_path / "a" / items[0]["image"]
    Image.open(victim).convert("L").save(victim)  # what an image editor's "greyscale" does
    doc = json.loads(sweep(path, "--out", tmp_path / "b").stdout)
    assert doc["counts"]["generated"] == 0
    assert cached_pngs(fresh_cache) == before
    again = tmp_path / "b" / items[0]["image"]
    assert Image.open(again).mode == "RGB" and sha(again) == before[again.name]
    assert (tmp_path / "b" / "contact-00.png").read_bytes() == sheet_before


@pytest.mark.slow
def test_an_edited_cached_image_is_detected_reported_and_remade(fresh_cache, tmp_path):
    """An edit inside the cache that keeps the recipe chunk (as some editors do) is still caught."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    path = spec(tmp_path)
    sweep(path, "--out", tmp_path / "a")
    victim = sorted((fresh_cache / "images").rglob("*.png"))[0]
    original = np.asarray(Image.open(victim).convert("RGB"), dtype=np.int16)
    with Image.open(victim) as im:
        info = PngInfo()
        for key, value in im.text.items():
            info.add_text(key, value)  # recipe and digest chunks kept, pixels changed
        im.convert("L").convert("RGB").save(victim, pnginfo=info)
    result = sweep(path, "--out", tmp_path / "b")
    assert json.loads(result.stdout)["counts"]["generated"] == 1
    lines = [line for line in result.stderr.splitlines() if REPAIRED in line]
    assert len(lines) == 1 and "images 1" in lines[0]
    from ldmprobe.store.png_check import check_png

    assert check_png(victim.read_bytes()) is None  # remade (in a batch of one: pixels within 1)
    assert np.abs(np.asarray(Image.open(victim).convert("RGB"), dtype=np.int16) - original).max() <= 1


@pytest.mark.slow
def test_truncated_cached_files_are_remade_and_said_on_stderr(fresh_cache, tmp_path):
    path = spec(tmp_path)
    sweep(path, "--out", tmp_path / "a")
    png = sorted((fresh_cache / "images").rglob("*.png"))[0]
    png.write_bytes(png.read_bytes()[:300])
    counts = sorted((fresh_cache / "token_counts").glob("*.json"))[0]
    counts.write_text(counts.read_text()[:10])
    result = sweep(path, "--out", tmp_path / "b")
    line = " ".join(line for line in result.stderr.splitlines() if REPAIRED in line)
    assert "images 1" in line and "token counts 1" in line
    assert json.loads(counts.read_text())  # rewritten whole
    assert REPAIRED not in sweep(path, "--out", tmp_path / "c").stderr


@pytest.mark.slow
def test_two_sweeps_in_one_second_get_their_own_folders(fresh_cache, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(time, "strftime", lambda fmt, *a: "20260101-000000")
    one = json.loads(sweep(spec(tmp_path)).stdout)
    two = json.loads(sweep(spec(tmp_path, templates=("a photo of a {} car", "a {} house"))).stdout)
    assert one["run"]["out"] != two["run"]["out"]
    assert sorted(p.name for p in (work / "runs").iterdir()) == ["mini-20260101-000000", "mini-20260101-000000-2"]
    for doc in (one, two):
        folder = Path(doc["run"]["out"])
        n_items = len((folder / "items.jsonl").read_text().splitlines())
        assert json.loads((folder / "results.json").read_text())["counts"]["planned"] == n_items


@pytest.mark.slow
def test_reserving_is_exclusive_and_a_failed_sweep_leaves_no_empty_folder(tmp_path, fresh_cache, monkeypatch):
    from ldmprobe.results.run_folder import prepare_out, release_out

    monkeypatch.setattr(time, "strftime", lambda fmt, *a: "STAMP")
    folders = [prepare_out(None, spec_name="x", runs_dir=tmp_path / "runs") for _ in range(3)]
    assert [f.name for f in folders] == ["x-STAMP", "x-STAMP-2", "x-STAMP-3"]
    assert not any(f.exists() for f in folders)  # reserved by a hidden file, made only when published
    release_out(folders[0])
    assert prepare_out(None, spec_name="x", runs_dir=tmp_path / "runs").name == "x-STAMP"
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    long = spec(tmp_path, "long", ("a " + "very " * 90 + "{} car",))
    assert "77" in sweep(long, expect=2).stderr
    assert not (work / "runs").exists() or not any((work / "runs").iterdir())


def test_a_folder_with_files_is_refused_before_any_work(fresh_cache, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = sweep(spec(tmp_path), "--out", out, expect=2)  # before any work: no images below (no clock: load)
    assert "--out" in result.stderr and "--replace" in result.stderr and result.stdout == ""
    assert not (fresh_cache / "images").exists()
    result = sweep(spec(tmp_path), "--out", out, "--replace", expect=2)  # not a run folder: never deleted
    assert "not a folder ldmprobe wrote" in " ".join(result.stderr.split())
    assert (out / "notes.txt").read_text() == "mine" and sorted(p.name for p in out.iterdir()) == ["notes.txt"]


@pytest.mark.slow
def test_replace_swaps_the_whole_folder_and_a_failure_loses_neither(fresh_cache, tmp_path, monkeypatch):
    out = tmp_path / "run"
    two = spec(tmp_path, "two", ("a photo of a {} car", "a {} house"))
    sweep(two, "--out", out)
    assert sorted(p.name for p in out.glob("contact-*.png")) == ["contact-00.png", "contact-01.png"]
    sweep(spec(tmp_path), "--out", out, expect=2)
    old_results = (out / "results.json").read_text()

    from ldmprobe.results import run_folder

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device", "contact-00.png")

    monkeypatch.setattr(run_folder, "contact_sheet", broken)
    sweep(spec(tmp_path), "--out", out, "--replace", expect=1)
    assert (out / "results.json").read_text() == old_results
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no staging left over
    monkeypatch.undo()
    doc = json.loads(sweep(spec(tmp_path), "--out", out, "--replace").stdout)
    assert doc["spec"]["name"] == "mini" and json.loads((out / "results.json").read_text())["spec"]["name"] == "mini"
    assert sorted(p.name for p in out.glob("contact-*.png")) == ["contact-00.png"]  # nothing stale left
    assert len(list((out / "images").iterdir())) == doc["counts"]["unique"]


@pytest.mark.slow
def test_spec_names_cannot_escape_the_runs_folder(fresh_cache, tmp_path, monkeypatch):
    from ldmprobe.results.run_folder import safe_name

    assert safe_name("../../escape") == "escape" and safe_name("..") == "sweep" and safe_name("a/b c") == "a-b-c"
    assert safe_name(".hidden") == "hidden" and safe_name("café 日本") == "café-日本" and len(safe_name("x" * 300)) == 80
    work = tmp_path / "a" / "b" / "work"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    doc = json.loads(sweep(spec(tmp_path, "../../escape")).stdout)
    folder = Path(doc["run"]["out"])
    assert folder.parent == work / "runs" and folder.name.startswith("escape-")
    assert not list(tmp_path.rglob("*escape*")) or all(work in p.parents for p in tmp_path.rglob("*escape*"))


def test_out_on_a_read_only_filesystem_exits_2_before_any_model_loads(fresh_cache, tmp_path):
    target = Path("/sys/ldmprobe-test-out")  # sysfs refuses mkdir, even to root
    if not Path("/sys").is_dir():
        pytest.skip("no /sys")
    try:
        target.mkdir()
    except OSError:
        pass
    else:
        target.rmdir()
        pytest.skip("/sys accepts folders here")
    result = sweep(spec(tmp_path), "--out", target / "run", expect=2)  # before any work: no images below
    assert "--out" in result.stderr and "cannot be written" in result.stderr
    assert not (fresh_cache / "images").exists()


def test_an_unusable_cache_is_named_with_ldmprobe_cache_before_any_work(tmp_path, monkeypatch):
    not_a_folder = tmp_path / "cache-file"
    not_a_folder.write_text("x")
    monkeypatch.setenv("LDMPROBE_CACHE", str(not_a_folder))
    out = tmp_path / "run"
    result = sweep(spec(tmp_path), "--out", out, expect=2)
    message = " ".join(result.stderr.split())
    assert "LDMPROBE_CACHE" in message and str(not_a_folder) in message and "not a folder" in message
    assert not out.exists()  # the reserved run folder was given back
    assert "LDMPROBE_CACHE" in " ".join(CliRunner().invoke(main, ["cache", "info"]).stderr.split())


@pytest.mark.slow
def test_provenance_jsonl_and_contact_sheet_say_how_and_that_models_are_tiny(fresh_cache, tmp_path, monkeypatch):
    from PIL import Image

    from ldmprobe.results.contact_sheet import contact_sheet

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "a"
    lines = sweep(spec(tmp_path), "--out", out, fmt="jsonl").stdout.splitlines()
    assert lines and all(json.loads(line)["tiny"] is True for line in lines)
    doc = json.loads((out / "results.json").read_text())
    validate_document(doc, "sweep")
    assert isinstance(doc["provenance"]["command"], list) and doc["provenance"]["cwd"] == str(tmp_path)

    from ldmprobe.results.contact_sheet import TEXT

    def red_pixels(image) -> int:  # the caption line's band: below the title (8 + TEXT + 8), TEXT high
        band = np.asarray(image.convert("RGB"))[8 + TEXT + 8:8 + 2 * TEXT + 8 + 4].astype(int)
        return int(((band[..., 0] > 120) & (band[..., 1] < 80)).sum())

    assert red_pixels(Image.open(out / "contact-00.png")) > 50  # the caption under the title
    assert red_pixels(contact_sheet("t", [("a", [None])], ["0"])) == 0
    assert red_pixels(contact_sheet("t", [("a", [None])], ["0"], note="tiny models")) > 20


def test_clone_file_shares_nothing(tmp_path):
    from ldmprobe.store.files import clone_file

    source = tmp_path / "s.bin"
    source.write_bytes(os.urandom(3 << 20))
    how = clone_file(source, tmp_path / "t.bin")
    assert how in ("reflink", "copy_file_range", "copy")
    target = tmp_path / "t.bin"
    assert target.read_bytes() == source.read_bytes() and target.stat().st_ino != source.stat().st_ino
    with open(target, "r+b") as fh:
        fh.write(b"edited")
    assert source.read_bytes()[:6] != b"edited"


def test_a_damaged_tiny_model_is_rebuilt_and_named(tmp_path, cache_root, monkeypatch):
    from ldmprobe.models import tiny
    from ldmprobe.store import run_state

    root = tmp_path / "cache"
    shutil.copytree(cache_root / "models" / "tiny-measurer-v1", root / "models" / "tiny-measurer-v1")
    monkeypatch.setenv("LDMPROBE_CACHE", str(root))
    weights = root / "models" / "tiny-measurer-v1" / "open_clip_model.safetensors"
    good = sha(weights)
    with open(weights, "r+b") as fh:
        fh.truncate(100_000)
    run_state.current.repair_summary()
    folder = tiny.ensure_tiny_measurer(root / "models")
    assert sha(weights) == good and tiny.damage(folder, "open_clip_config.json") is None
    line = run_state.current.repair_summary()
    assert "tiny models 1" in line and str(folder) in line and "safetensors" in line


@pytest.mark.slow
def test_bytes_changed_inside_tiny_weights_are_found_and_rebuilt(tmp_path, cache_root, monkeypatch):
    """4 KiB changed in the middle of the tiny UNet keep its size and header: only the recorded
    sha256 finds it; the rebuilt model is byte-identical to the first build."""
    from ldmprobe.models import tiny, weights_hash
    from ldmprobe.store import run_state

    root = tmp_path / "cache"
    shutil.copytree(cache_root / "models" / "tiny-generator-v1", root / "models" / "tiny-generator-v1")
    monkeypatch.setenv("LDMPROBE_CACHE", str(root))
    folder = root / "models" / "tiny-generator-v1"
    if not (folder / tiny.DIGESTS).is_file():
        pytest.skip("the session's tiny generator was built before digests were recorded")
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    good = sha(weights)
    assert tiny.damage(folder, "model_index.json") is None
    data = bytearray(weights.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 4096] = bytes(b ^ 0xFF for b in data[middle:middle + 4096])
    weights.write_bytes(bytes(data))
    assert "sha256" in tiny.damage(folder, "model_index.json")
    run_state.current.repair_summary()
    weights_hash.forget_memory()
    rebuilt = tiny.ensure_tiny_generator(root / "models")
    assert sha(weights) == good and tiny.damage(rebuilt, "model_index.json") is None
    line = run_state.current.repair_summary()
    assert "tiny models 1" in line and "does not match its sha256" in line
