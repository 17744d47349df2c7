"""The image cache's save-time manifest: one stat per warm image, and nothing trusted that changed."""

from __future__ import annotations

import json
import os
import time

import pytest
from PIL import Image

from ldmprobe.store import images
from ldmprobe.store.images import ImageStore
from ldmprobe.store.png_check import PNG_RECIPE_KEY, _light_check
from ldmprobe.store.image_index import ImageIndex

KEY = "ab" + "0" * 62


def _save(root, key=KEY, colour=(200, 30, 30)):
    store = ImageStore(root)
    recipe = {"key": key, "prompt": "a photo of a fancy house", "seed": 3, "nsfw": False}
    store.save(key, Image.new("RGB", (32, 32), colour), recipe)
    return store, recipe


def _count_light_checks(monkeypatch):
    calls = []
    real = _light_check

    def counting(path, key=None):
        calls.append(key)
        return real(path, key)

    monkeypatch.setattr(images, "_light_check", counting)
    return calls


def test_saved_image_is_valid_with_one_stat_and_no_open(tmp_path, monkeypatch):
    _, recipe = _save(tmp_path)
    calls = _count_light_checks(monkeypatch)
    fresh = ImageStore(tmp_path)  # another process: reads the manifest from disk
    assert fresh.valid(KEY)
    assert fresh.metadata(KEY) == recipe
    assert calls == []
    assert fresh.valid_many([KEY, "cd" + "1" * 62]) == {KEY}


def test_metadata_from_manifest_equals_the_png_chunk(tmp_path):
    store, _ = _save(tmp_path)
    from_index = store.metadata(KEY)
    with Image.open(store.path(KEY)) as im:
        from_png = json.loads(im.info[PNG_RECIPE_KEY])
    assert from_index == from_png


def test_truncated_in_place_is_not_trusted_and_is_removed(tmp_path, monkeypatch):
    store, _ = _save(tmp_path)
    path = store.path(KEY)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # same inode, new size and mtime
    calls = _count_light_checks(monkeypatch)
    assert not ImageStore(tmp_path).valid(KEY)
    assert calls == [KEY]
    assert not path.exists()


def test_same_size_edit_falls_back_to_the_header_check_and_the_digest(tmp_path, monkeypatch):
    store, _ = _save(tmp_path)
    path = store.path(KEY)
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF  # inside the pixel data: same size
    st = path.stat()
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    calls = _count_light_checks(monkeypatch)
    fresh = ImageStore(tmp_path)
    fresh.valid(KEY)
    assert calls == [KEY]  # not answered from the manifest
    assert fresh.load(KEY) is None  # the digest of every byte catches it where pixels are read


def test_replaced_file_is_not_trusted(tmp_path, monkeypatch):
    store, _ = _save(tmp_path)
    path = store.path(KEY)
    other = tmp_path / "other.png"
    other.write_bytes(path.read_bytes())
    os.replace(other, path)  # same bytes, new inode
    calls = _count_light_checks(monkeypatch)
    assert ImageStore(tmp_path).valid(KEY)
    assert calls == [KEY]


def test_old_cache_joins_the_manifest_once(tmp_path, monkeypatch):
    store, recipe = _save(tmp_path)
    for f in (store.base / "index").glob("*"):
        f.unlink()
    calls = _count_light_checks(monkeypatch)
    assert ImageStore(tmp_path).valid(KEY)
    assert ImageStore(tmp_path).valid(KEY)
    assert calls == [KEY]
    assert ImageStore(tmp_path).metadata(KEY) == recipe


def test_torn_lines_and_foreign_rows_are_ignored(tmp_path):
    store, recipe = _save(tmp_path)
    with open(next((store.base / "index").glob("*.jsonl")), "a") as fh:
        fh.write('{"k": "ab00", "s": 1, "m"')  # a killed writer's last line
    bad = store.base / "index" / "zz.jsonl"
    bad.write_text('[1, 2]\n{"k": "x", "s": "?", "m": 0, "i": 0, "r": {}}\n')
    fresh = ImageStore(tmp_path)
    assert fresh.metadata(KEY) == recipe


def test_compact_folds_idle_files_and_keeps_every_entry(tmp_path):
    index = ImageIndex(tmp_path / "images")
    keys = [f"{i:02x}" + "e" * 62 for i in range(6)]
    for key in keys:
        (tmp_path / key).write_bytes(b"x")
        writer = ImageIndex(tmp_path / "images")  # one writer (file) per "process"
        writer.record(key, tmp_path / key, {"key": key})
    files = list(index.dir.glob("*.jsonl"))
    assert len(files) == 6
    old = time.time() - 7200
    for f in files:
        os.utime(f, (old, old))
    assert index.compact(at_files=3) == 6
    assert len(list(index.dir.glob("*.jsonl"))) == 1
    fresh = ImageIndex(tmp_path / "images")
    for key in keys:
        assert fresh.lookup(key, os.stat(tmp_path / key)) == {"key": key}


def test_compact_leaves_recent_files_alone(tmp_path):
    index = ImageIndex(tmp_path / "images")
    for i in range(5):
        (tmp_path / f"f{i}").write_bytes(b"x")
        ImageIndex(tmp_path / "images").record(f"k{i}", tmp_path / f"f{i}", {})
    assert index.compact(at_files=2) == 0
    assert len(list(index.dir.glob("*.jsonl"))) == 5


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_writes_its_own_file(tmp_path):
    index = ImageIndex(tmp_path / "images")
    (tmp_path / "a").write_bytes(b"a")
    index.record("a", tmp_path / "a", {"who": "parent"})
    pid = os.fork()
    if pid == 0:
        (tmp_path / "b").write_bytes(b"b")
        index.record("b", tmp_path / "b", {"who": "child"})
        os._exit(0)
    os.waitpid(pid, 0)
    assert len(list(index.dir.glob("*.jsonl"))) == 2
    fresh = ImageIndex(tmp_path / "images")
    assert fresh.lookup("b", os.stat(tmp_path / "b")) == {"who": "child"}


def test_cached_work_plans_what_is_missing_with_batched_lookups(tmp_path, monkeypatch):
    import numpy as np

    from ldmprobe.store.packed_cache import VerifiedStore
    from ldmprobe.engine.sweep_images import cached_work

    keys = [f"{i:02x}" + "a" * 62 for i in range(5)]
    store = ImageStore(tmp_path)
    for key in keys[:3]:
        store.save(key, Image.new("RGB", (16, 16)), {"key": key})
    store.save_failure(keys[3], {"key": keys[3], "failed": "black image"})
    emb = VerifiedStore("embeddings/test", "image embeddings", tmp_path)
    emb.put_many(keys[:2], [np.ones(4, np.float32), np.ones(4, np.float32)])
    calls = _count_light_checks(monkeypatch)
    per_key = []
    monkeypatch.setattr(VerifiedStore, "has", lambda self, key: per_key.append(key))
    to_make, to_embed = cached_work(ImageStore(tmp_path),
                                    VerifiedStore("embeddings/test", "image embeddings", tmp_path), keys + keys[:1])
    assert to_make == {keys[4]}  # no image, no failure record
    assert to_embed == {keys[2]}  # an image without an embedding; the failure needs none
    assert calls == [] and per_key == []  # manifest and one batched read answered everything
