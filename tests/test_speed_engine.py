"""The warm path's bulk look-ups give what the per-key look-ups give (issue 32)."""

from __future__ import annotations

import hashlib

from ldmprobe.engine import sweep_images
from ldmprobe.store.images import ImageStore
from ldmprobe.engine.sweep_images import failure_records


def _keys(n: int) -> list[str]:
    return [hashlib.sha256(f"item {i}".encode()).hexdigest() for i in range(n)]


def test_failure_records_listed_once_are_the_ones_found_per_key(tmp_path, monkeypatch):
    store = ImageStore(tmp_path)
    keys = _keys(300)
    for key in keys[::7]:
        store.save_failure(key, {"failed": "out of memory"})
    other = _keys(310)[300:]  # failure records of keys outside the plan are not reported
    for key in other:
        store.save_failure(key, {"failed": "nsfw"})
    assert failure_records(store, keys) is None  # few keys: asked per key
    monkeypatch.setattr(sweep_images, "LIST_FAILURES_FROM", 1)
    listed = failure_records(store, keys)
    assert listed == {key for key in keys if store.failure(key) is not None} == set(keys[::7])
    assert failure_records(ImageStore(tmp_path / "empty"), keys) == set()
