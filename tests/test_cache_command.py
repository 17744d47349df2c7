"""``ldmprobe cache info | verify | prune`` on a real cache made by a tiny sweep (issue 15)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from ldmprobe.cli.main import main
from ldmprobe.results.provenance import validate_document
from tests.support import MINI_SPEC

SPEC = MINI_SPEC  # one template, one term, two seeds


@pytest.fixture(scope="module")
def swept_once(tmp_path_factory, cache_root, tiny_generator, tiny_measurer):
    """A cache with its own copy of the tiny models after one sweep, made once for the module."""
    folder = tmp_path_factory.mktemp("swept")
    root = folder / "cache"
    shutil.copytree(cache_root / "models", root / "models", ignore=shutil.ignore_patterns(".*"))
    spec = folder / "mini.toml"
    spec.write_text(SPEC)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LDMPROBE_CACHE", str(root))
        sweep(spec, folder / "a")
    return root, spec


@pytest.fixture
def swept(swept_once, tmp_path, monkeypatch):
    """A copy of ``swept_once``'s cache for one test (verify, repair and prune change it), set as the cache."""
    made, spec = swept_once
    root = tmp_path / "cache"
    shutil.copytree(made, root, symlinks=True)
    monkeypatch.setenv("LDMPROBE_CACHE", str(root))
    return root, spec


def sweep(spec: Path, out: Path) -> dict:
    result = CliRunner().invoke(main, ["sweep", str(spec), "--out", str(out), "--pipeline", "tiny", "--measurer",
                                       "tiny", "--format", "json", "--permutations", "99", "--bootstrap", "99",
                                       "--no-report"])
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


def cache_cmd(*args, expect=0, fmt="json"):
    result = CliRunner().invoke(main, ["cache", *args, "--format", fmt])
    assert result.exit_code == expect, (result.output, result.exception)
    return result


def doc(*args, expect=0) -> dict:
    document = json.loads(cache_cmd(*args, expect=expect).stdout)
    validate_document(document, "cache")
    return document


def du(path: Path) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def test_info_sizes_by_kind_and_model(swept):
    root, _ = swept
    info = doc("info")
    kinds = {row["kind"]: row for row in info["by_kind"]}
    manifest = du(root / "images" / "index")
    assert kinds["images"]["entries"] == 4 and kinds["images"]["bytes"] == du(root / "images") - manifest
    assert manifest > 0 and kinds["image manifest"]["bytes"] == manifest
    assert kinds["models"]["bytes"] == du(root / "models")
    assert kinds["image embeddings"]["bytes"] == du(root / "embeddings")
    assert info["total_bytes"] == du(root)
    models = {(row["kind"], row["model"].split()[0]) for row in info["by_model"]}
    for kind in ("images", "image embeddings", "text embeddings", "conditionings"):
        assert (kind, "tiny") in models, (kind, models)
    table = cache_cmd("info", fmt="table").stdout
    assert "images" in table and "by model" in table
    lines = [json.loads(x) for x in cache_cmd("info", fmt="jsonl").stdout.splitlines()]
    assert len(lines) == len(info["by_model"])


def test_cache_commands_import_no_torch(swept):
    code = ("import sys\nfrom click.testing import CliRunner\nfrom ldmprobe.cli.main import main\n"
            "for args in (['info'], ['verify'], ['prune', '--model', 'tiny', '--dry-run']):\n"
            "    assert CliRunner().invoke(main, ['cache', *args, '--format', 'json']).exit_code == 0, args\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, check=True)
    assert out.stdout.strip() == "False", out.stderr


def flip(path: Path, offset: int, n: int = 16) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        data = bytearray(fh.read(n))
        fh.seek(offset)
        fh.write(bytes(b ^ 0xFF for b in data))


def test_verify_finds_each_damage_and_repair_removes_it(swept, tmp_path):
    root, spec = swept
    clean = json.loads(CliRunner().invoke(main, ["cache", "verify", "--format", "json"]).stdout)
    assert clean["ok"] and clean["bad"] == [] and clean["checked"] >= 10, clean["bad"]
    png = sorted((root / "images").rglob("*.png"))[0]
    png.write_bytes(png.read_bytes()[:500])
    flip(sorted((root / "embeddings").glob("*/packed/*.bin"))[0], 8)
    counts = sorted((root / "token_counts").glob("*.json"))[0]
    counts.write_text("{")
    weights = root / "models" / "tiny-measurer-v1" / "open_clip_model.safetensors"
    with open(weights, "r+b") as fh:
        fh.truncate(50_000)
    found = doc("verify", expect=1)
    bad = {row["kind"]: row for row in found["bad"]}
    assert set(bad) == {"images", "image embeddings", "token counts", "models"}, found["bad"]
    assert bad["images"]["path"] == str(png) and bad["token counts"]["path"] == str(counts)
    assert "safetensors" in bad["models"]["reason"] and not found["ok"]
    assert "--repair" in cache_cmd("verify", fmt="table", expect=1).stdout
    repaired = doc("verify", "--repair")
    assert repaired["ok"] and len(repaired["bad"]) == 4 and not png.exists() and not counts.exists()
    assert doc("verify")["bad"] == []
    again = sweep(spec, tmp_path / "b")  # what was removed is remade
    assert again["counts"]["generated"] == 1 and png.is_file()
    assert doc("verify")["bad"] == []


def test_prune_by_model_and_age(swept):
    from ldmprobe.store.images import ImageStore
    from PIL import Image

    root, _ = swept
    key = "f" * 64
    ImageStore().save(key, Image.new("RGB", (8, 8)), {"key": key, "pipeline": {"source": "hub", "id": "org/other",
                                                                                 "revision": "abc123"}})
    before = {p for p in root.rglob("*") if p.is_file()}
    dry = doc("prune", "--model", "tiny", "--dry-run")
    assert dry["dry_run"] and {p for p in root.rglob("*") if p.is_file()} == before
    kinds = {row["kind"] for row in dry["removed"]}
    assert {"images", "image embeddings", "text embeddings", "conditionings", "models"} <= kinds
    assert all(key not in row["path"] for row in dry["removed"])
    pruned = doc("prune", "--model", "tiny")
    assert pruned["removed"] == dry["removed"] and pruned["removed_bytes"] > 0
    assert [p.name for p in (root / "images").rglob("*.png")] == [f"{key}.png"]
    assert not (root / "models" / "tiny-generator-v1").exists()
    old = time.time() - 40 * 86400
    os.utime(root / "images" / "ff" / f"{key}.png", (old, old))
    assert [Path(r["path"]).name for r in doc("prune", "--older-than", "30d")["removed"]] == [f"{key}.png"]
    assert not list((root / "images").rglob("*.png"))


@pytest.mark.parametrize("args", [["prune"], ["prune", "--model", "x", "--older-than", "3d"],
                                  ["prune", "--older-than", "soon"]])
def test_prune_needs_one_clear_criterion(args, tmp_path, monkeypatch):
    monkeypatch.setenv("LDMPROBE_CACHE", str(tmp_path))
    result = cache_cmd(*args, expect=2)
    assert "--model" in result.stderr or "--older-than" in result.stderr


def test_a_value_a_sweep_replaced_is_not_reported_as_damage(swept, tmp_path):
    """A flipped packed embedding is damage until a sweep appends a good copy of it; after that the
    bad copy only waits for compaction (reads skip it), so verify is clean, not exit 1 forever."""
    root, spec = swept
    flip(sorted((root / "embeddings").glob("*/packed/*.bin"))[0], 8)
    found = doc("verify", expect=1)
    assert [row["kind"] for row in found["bad"]] == ["image embeddings"], found["bad"]
    again = sweep(spec, tmp_path / "b")  # the sweep finds the bad value and embeds the image again
    assert again["counts"]["planned"] >= 1
    clean = doc("verify")
    assert clean["ok"] and clean["bad"] == [], clean["bad"]
