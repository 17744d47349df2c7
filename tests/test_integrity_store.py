"""Issue 17 on the embedding caches: a flipped byte in a cached value is never used; it is
reported, remade, and the numbers equal the clean run's. An old per-file cache is still used."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ldmprobe.cli.main import main

SPEC = """\
name = "mini"
templates = ["a photo of a {} car", "a {} house at night"]
baseline = ""
terms = ["red", "blue"]
probes = ["fire", "ocean", "tree"]
seeds = 2
"""
REPORTED = "failed their integrity check"


def run_sweep(tmp_path: Path, name: str):
    spec = tmp_path / "mini.toml"
    spec.write_text(SPEC)
    result = CliRunner().invoke(main, [
        "sweep", str(spec), "--out", str(tmp_path / name), "--pipeline", "tiny", "--measurer", "tiny",
        "--format", "json", "--permutations", "99", "--bootstrap", "99", "--no-report"])
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout), result.stderr


def numbers(doc: dict) -> dict:
    """Everything but when / where it ran and how much was cached."""
    return {k: v for k, v in doc.items() if k not in ("provenance", "run", "counts")}


#: Every model call has a fixed shape (issue 28): a remade value equals the original exactly.
RTOL, ATOL = 0.0, 0.0
DIFFS: list = []


def close(a, b, where="") -> None:
    """Equal structure and values, floats included (both nan counts as equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            close(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        DIFFS.append((abs(a - b), where))
        assert a == pytest.approx(b, rel=RTOL, abs=ATOL, nan_ok=True), where
    else:
        assert a == b, where


def flip(path: Path, offset: int, n: int = 16) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        data = bytearray(fh.read(n))
        fh.seek(offset)
        fh.write(bytes(b ^ 0xFF for b in data))


def shards(root: Path, kind: str) -> list[Path]:
    return sorted((root / kind).glob("*/packed/*.bin"))


@pytest.mark.parametrize("kind", ["embeddings", "text", "conditioning"])
def test_flipped_bytes_in_a_cached_value_are_remade_and_reported(fresh_cache, tmp_path, kind):
    DIFFS.clear()
    cold, _ = run_sweep(tmp_path, "a")
    warm, err = run_sweep(tmp_path, "b")
    assert REPORTED not in err
    assert numbers(warm) == numbers(cold)  # the first run already uses what it stored
    files = shards(fresh_cache, kind)
    assert files, f"no packed {kind} shard"
    flip(files[0], 8)  # inside the first value (values start at offset 0 of a shard)
    repaired, err = run_sweep(tmp_path, "c")
    assert REPORTED in err and len([line for line in err.splitlines() if REPORTED in line]) == 1
    assert repaired["counts"]["generated"] == 0
    close(numbers(repaired), numbers(cold))
    assert max(DIFFS)[0] <= ATOL  # measured: 3.9e-4 (a df), text 1.4e-7, conditioning 0
    again, err = run_sweep(tmp_path, "d")  # the remade value is the one used from now on
    assert REPORTED not in err and numbers(again) == numbers(repaired)


def test_old_per_file_cache_is_still_used(fresh_cache, tmp_path, monkeypatch):
    """Values only in the old ``<ns>/ab/<key>.npy`` layout are read, imported, not recomputed."""
    from ldmprobe.engine import encode
    from ldmprobe.store.array_store import ArrayStore

    cold, _ = run_sweep(tmp_path, "a")
    for kind in ("embeddings", "text", "conditioning"):
        for packed in sorted((fresh_cache / kind).glob("*/packed")):
            from ldmprobe.store.packed_store import PackedStore

            with PackedStore(packed) as store:
                keys = store.keys()
                values = [store.get(k) for k in keys]
            legacy = ArrayStore(str(packed.parent.relative_to(fresh_cache)), root=fresh_cache)
            for key, value in zip(keys, values):
                legacy.save(key, value)
            shutil.rmtree(packed)

    def no_encoding(*args, **kwargs):
        raise AssertionError("an embedding was recomputed although the old cache holds it")

    monkeypatch.setattr(encode, "encode_images", no_encoding)
    monkeypatch.setattr(encode, "encode_in_templates", no_encoding)
    warm, err = run_sweep(tmp_path, "b")
    assert numbers(warm) == numbers(cold) and REPORTED not in err
    assert shards(fresh_cache, "embeddings")  # imported into the packed store as met


def test_verified_store_treats_a_bad_value_as_missing(tmp_path):
    from ldmprobe.store import packed_cache
    from ldmprobe.store.run_state import begin_run

    state = begin_run()
    store = packed_cache.VerifiedStore("embeddings/x", "image embeddings", root=tmp_path)
    keys = [f"{i:064x}" for i in range(5)]
    store.put_many(keys, np.arange(5 * 8, dtype=np.float32).reshape(5, 8))
    store.close()
    flip(next((tmp_path / "embeddings/x/packed").glob("*.bin")), 2 * 32 + 4, 4)  # the third value
    fresh = packed_cache.VerifiedStore("embeddings/x", "image embeddings", root=tmp_path)
    assert fresh.has_many(keys).tolist() == [True, True, False, True, True]
    assert "image embeddings 1" in state.repair_summary()
    assert state.repair_summary() is None
