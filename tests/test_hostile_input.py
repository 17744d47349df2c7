"""Careless or hostile input gets a clear exit 2 before any model loads (issues 28 and 33):
control characters and NUL, huge plans and seed lists, odd files given as .npz, huge images
and decompression bombs, sizes that cannot fit, run folders inside the cache, absent devices,
unknown models to prune, and `report` on a trace folder."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ldmprobe.cli.main import main

SPEC = 'name = "h"\ntemplates = ["a photo of a {} house"]\nterms = ["fancy"]\nbaseline = ""\nprobes = ["red"]\n'
TINY = ["--pipeline", "tiny", "--measurer", "tiny"]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    root.mkdir()
    monkeypatch.setenv("LDMPROBE_CACHE", str(root))
    return root


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def spec(tmp_path: Path, text: str = SPEC) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_nul_in_a_spec_is_refused(cache, tmp_path):
    escaped = invoke("sweep", spec(tmp_path, SPEC.replace('"fancy"', '"fan\\u0000cy"')), "--dry-run", "--offline")
    assert escaped.exit_code == 2 and "terms[0] holds a NUL character" in escaped.stderr
    raw = tmp_path / "raw.toml"
    raw.write_bytes(SPEC.encode() + b"# \x00\n")
    result = invoke("sweep", raw, "--dry-run", "--offline")
    assert result.exit_code == 2 and "line 6: holds a NUL character" in result.stderr


@pytest.mark.slow
def test_escape_sequences_in_terms_never_reach_the_terminal(cache, tmp_path):
    hostile = SPEC.replace('"fancy"', '"fancy\\u001b]0;owned\\u0007\\u001b[2J"').replace('"h"', '"h\\u001b[31m"')
    result = invoke("sweep", spec(tmp_path, hostile), *TINY, "--dry-run", "--offline", "--format", "table")
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "\\x1b]0;owned\\x07\\x1b[2J" in result.stdout


def test_plans_over_the_item_limit_are_refused_unless_raised(cache, tmp_path):
    wide = SPEC.replace('["a photo of a {} house"]', '["a {} house", "a {} car", "a {} hat", "a {} dog"]')
    result = invoke("sweep", spec(tmp_path, wide.replace('["fancy"]', '["fancy", "old"]')), *TINY,
                    "--seeds", "100000", "--dry-run", "--offline")
    assert result.exit_code == 2 and "1,200,000 images" in result.stderr and "--max-items" in result.stderr
    result = invoke("sweep", spec(tmp_path), *TINY, "--seeds", "5", "--max-items", "9", "--dry-run", "--offline")
    assert result.exit_code == 2 and "more than the 9 allowed" in result.stderr


@pytest.mark.slow
def test_a_million_listed_seeds_parse_in_linear_time(tmp_path):
    from ldmprobe.specs import sweep_fields
    from ldmprobe.specs.sweep import load_spec

    calls = []
    original = sweep_fields._Ctx.label
    sweep_fields._Ctx.label = lambda self, *a, **k: calls.append(a) or original(self, *a, **k)
    try:
        seeds = ", ".join(map(str, range(10 ** 6)))
        loaded = load_spec(spec(tmp_path, SPEC + f"seeds = [{seeds}]\n"))
    finally:
        sweep_fields._Ctx.label = original
    assert len(loaded.seeds) == 10 ** 6
    per_seed = [a for a in calls if len(a) > 1 and a[0] == "seeds"]
    assert not per_seed  # no line search per seed (it made a million seeds quadratic); a bad seed still gets one


@pytest.mark.parametrize("args, named", [
    (["--width", "100000"], "100000 is not in the range 8<=x<=4096"),
    (["--height", "8192"], "8192 is not in the range 8<=x<=4096"),
])
def test_sizes_that_cannot_fit_are_refused_at_parse_time(cache, tmp_path, args, named):
    result = invoke("sweep", spec(tmp_path), *TINY, *args, "--dry-run")
    assert result.exit_code == 2 and named in result.stderr
    result = invoke("sweep", spec(tmp_path, SPEC + "width = 12000\n"), *TINY, "--dry-run")
    assert result.exit_code == 2 and "width = 12000 is more than the 4096" in result.stderr


def test_out_inside_the_cache_is_refused(cache, tmp_path):
    for command in (["sweep", spec(tmp_path), *TINY], ["trace", spec(tmp_path), *TINY]):
        result = invoke(*command, "--out", cache / "runs" / "mine")
        assert result.exit_code == 2 and "is inside the cache" in result.stderr, result.output
    assert not (cache / "runs").exists()


@pytest.mark.parametrize("device, named", [("cuda", "CUDA is not available"), ("cuda:1", "CUDA is not available"),
                                           ("mps", "MPS")])
def test_absent_devices_are_refused_before_models_load(cache, device, named, monkeypatch):
    from ldmprobe.models import load

    if not load._surely_cpu_only():
        pytest.skip("this machine has a GPU device node")
    monkeypatch.setattr("sys.platform", "linux")
    result = invoke("check", *TINY, "--device", device)
    assert result.exit_code == 2 and named in result.stderr


def _byo_spec(tmp_path):
    return spec(tmp_path, SPEC + "seeds = 2\n")


@pytest.mark.parametrize("content, words", [
    (b"just some text, not an archive\n", ["is not an npz/zip file", "numpy.savez"]),
    (None, ["is a single .npy array", ".npz archive"]),
])
def test_wrong_files_given_as_embeddings_are_named_for_what_they_are(cache, tmp_path, content, words):
    path = tmp_path / ("e.npz" if content is not None else "e.npy")
    if content is None:
        np.save(path, np.zeros((4, 8)))
    else:
        path.write_bytes(content)
    result = invoke("sweep", _byo_spec(tmp_path), "--embeddings", path, "--out", tmp_path / "run")
    assert result.exit_code == 2, result.output
    for word in words:
        assert word in result.stderr, result.stderr
    assert "pickled" not in result.stderr and "unexpected" not in result.stderr


def test_an_unused_member_is_never_loaded_and_a_huge_needed_one_is_refused(tmp_path, monkeypatch):
    from ldmprobe.specs import sweep_sources
    from ldmprobe.errors import BadInputError

    path = tmp_path / "e.npz"
    np.savez(path, image=np.ones((2, 4)), unused=np.zeros(50_000))
    monkeypatch.setattr(sweep_sources, "MAX_MEMBER_BYTES", 100_000)  # 'unused' is 400,000 bytes
    members, digest = sweep_sources._load_npz(path)
    assert set(members) == {"image", "unused"} and members["image"].shape == (2, 4)
    assert "unused" not in members.loaded and len(digest) == 64
    with pytest.raises(BadInputError, match="'unused' is 0.0 GiB uncompressed"):
        members["unused"]


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` (a bomb's header: opening reads only this)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side, words", [(9000, "9000 x 9000 pixels is more than"),
                                         (20000, "decompression bomb")])
def test_huge_images_and_bombs_exit_2(cache, tmp_path, side, words):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "big.png").write_bytes(_png_header_only(side, side))
    rows = ["template,term,seed,path"] + [f"a photo of a {{}} house,{t},{s},big.png" for t in ("", "fancy")
                                           for s in (0, 1)]
    manifest = folder / "m.csv"
    manifest.write_text("\n".join(rows) + "\n")
    result = invoke("sweep", _byo_spec(tmp_path), "--images", manifest, "--measurer", "tiny", "--out", tmp_path / "r")
    assert result.exit_code == 2, result.output
    assert words in result.stderr and "unexpected" not in result.stderr


def test_prune_of_an_unknown_model_names_the_known_ones(cache):
    from PIL import Image

    from ldmprobe.store.images import ImageStore

    ImageStore().save("f" * 64, Image.new("RGB", (8, 8)), {"key": "f" * 64, "pipeline": {"source": "hub",
                                                                                          "id": "org/other"}})
    result = invoke("cache", "prune", "--model", "nosuchmodel")
    assert result.exit_code == 2 and "'nosuchmodel'" in result.stderr and "'org/other'" in result.stderr


def test_cache_info_names_trace_maps_by_their_image_model(cache):
    from PIL import Image

    from ldmprobe.store.array_store import ArrayStore
    from ldmprobe.store.images import ImageStore
    from ldmprobe.usecases.cache import cache_info

    for key in ("ab" + "1" * 62, "cd" + "2" * 62):
        ImageStore().save(key, Image.new("RGB", (8, 8)), {"key": key, "pipeline": {"source": "hub", "id": "org/gen"}})
        ArrayStore("trace_attention").save(key, np.ones((2, 3), dtype=np.float32))
    rows = [r for r in cache_info()["by_model"] if r["kind"] == "trace attention maps"]
    assert rows == [{**rows[0], "model": "org/gen", "entries": 2}]


def test_report_on_a_trace_folder_says_what_to_run(tmp_path):
    folder = tmp_path / "t"
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps({"kind": "trace"}))
    result = invoke("report", folder)
    assert result.exit_code == 2 and "holds a trace run" in result.stderr and "ldmprobe trace SPEC" in result.stderr
