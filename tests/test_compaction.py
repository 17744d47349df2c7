"""Compaction at the end of a sweep (issue 16): a namespace crowded with shard files is folded
into one, every value still readable; an uncrowded one is left as it is."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

from ldmprobe.store import packed_maint
from ldmprobe.store.packed_store import PackedStore


def shard_count(packed) -> int:
    return len(list(packed.glob("*.bin")))


def fill(packed, writers: int) -> dict:
    """``writers`` separate writers (runs, ranks), each leaving its own sealed shard pair."""
    values = {}
    for w in range(writers):
        store = PackedStore(packed)
        keys = [f"{w:032x}{i:032x}" for i in range(3)]
        vectors = np.random.default_rng(w).normal(size=(3, 8)).astype(np.float32)
        store.put_many(keys, vectors)
        store.close()
        values.update(zip(keys, vectors))
    return values


def test_crowded_namespaces_are_folded_and_lose_nothing(tmp_path):
    crowded, quiet = tmp_path / "embeddings" / "a" / "packed", tmp_path / "text" / "b" / "packed"
    values = fill(crowded, 12)
    fill(quiet, 3)
    assert shard_count(crowded) == 12 and shard_count(quiet) == 3
    done = packed_maint.compact_crowded(tmp_path, at_shards=10)
    assert [packed for packed, _ in done] == [crowded] and done[0][1].files_merged == 12
    assert shard_count(crowded) == 1 and shard_count(quiet) == 3
    reader = PackedStore(crowded)
    for key, vector in values.items():
        np.testing.assert_array_equal(reader.get(key), vector)
    reader.close()
    assert packed_maint.compact_crowded(tmp_path, at_shards=10) == []  # one file now: nothing to do


def test_a_sweep_compacts_a_crowded_cache_at_its_end(tmp_path, fresh_cache, monkeypatch):
    from ldmprobe.cli.main import main

    spec = tmp_path / "s.toml"
    spec.write_text('name = "s"\ntemplates = ["a {} house"]\nbaseline = ""\nterms = ["red"]\nprobes = ["tree"]\n'
                    "seeds = 2\n")
    args = ["sweep", str(spec), "--pipeline", "tiny", "--measurer", "tiny", "--steps", "2", "--permutations", "99",
            "--bootstrap", "99", "--no-report", "--format", "json"]
    real = packed_maint.compact_crowded
    monkeypatch.setattr(packed_maint, "compact_crowded", lambda root: real(root, at_shards=2))
    first = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "a")])
    assert first.exit_code == 0, first.output
    (tmp_path / "s.toml").write_text(spec.read_text().replace('"red"', '"red", "blue"'))
    second = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "b")])
    assert second.exit_code == 0, second.output
    assert "compacted" in second.stderr
    for packed in (fresh_cache / "embeddings").glob("*/packed"):
        assert shard_count(packed) == 1
    third = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "c")])
    assert json.loads(third.stdout)["counts"]["generated"] == 0
    assert json.loads(third.stdout)["terms"] == json.loads(second.stdout)["terms"]


def test_each_image_records_the_batch_it_was_made_in(tmp_path, fresh_cache):
    """Images made in calls of 2: the one left over is padded to a call of 2 (a fixed call shape,
    so an image never depends on what else was made with it), and the recipe chunk says so per image."""
    from ldmprobe.cli.main import main
    from ldmprobe.store.images import ImageStore

    spec = tmp_path / "s.toml"
    spec.write_text('name = "s"\ntemplates = ["a {} house"]\nbaseline = ""\nterms = ["red", "blue"]\n'
                    'probes = ["tree"]\nseeds = 1\n')
    result = CliRunner().invoke(main, ["sweep", str(spec), "--pipeline", "tiny", "--measurer", "tiny", "--steps", "2",
                                       "--call-shape", "2", "--permutations", "99", "--bootstrap", "99", "--no-report",
                                       "--format", "json", "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    items = [json.loads(line) for line in (tmp_path / "a" / "items.jsonl").read_text().splitlines()]
    store = ImageStore()
    sizes = sorted(store.load(item["key"])[1]["batch_size"] for item in items)
    assert sizes == [2, 2, 2]  # 3 images, two calls of 2 (the second padded)
