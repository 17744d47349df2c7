"""A damaged record in a packed index file (a flipped byte in ``<stem>.idx``): readers skip it, so
its value is a miss and remade; ``cache verify`` reports it (it said the cache was fine) until a
run has stored the value again, and ``--repair`` drops it. A torn tail is not damage: a live
writer may still be writing it."""

from __future__ import annotations

import hashlib
import json

import numpy as np
from click.testing import CliRunner

from ldmprobe.cli.main import main
from ldmprobe.store import packed_format as fmt
from ldmprobe.store import packed_maint as maint
from ldmprobe.store.packed_store import PackedStore

KEY_FIELD = 8  # byte offsets inside a record: magic 4, kind 4, then the key
DIGEST_FIELD = fmt.RECORD.fields["digest"][1]


def key_of(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


def value_of(i: int) -> np.ndarray:
    return np.random.default_rng(i).standard_normal(16).astype(np.float32)


def flip_byte(path, offset: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0x01]))


def damaged_left(directory) -> int:
    return sum(len(fmt.damaged_records(p.read_bytes())) for p in directory.glob("*.idx"))


def test_damaged_index_records_are_found_until_their_values_are_stored_again(tmp_path):
    directory = tmp_path / "s"
    keys = [key_of(i) for i in range(20)]
    PackedStore(directory).put_many(keys, [value_of(i) for i in range(20)])  # closed at exit: sealed
    index = next(directory.glob("*.idx"))
    flip_byte(index, 3 * fmt.RECORD_SIZE + KEY_FIELD + 5)  # a key digit: '0'..'f' one bit off
    flip_byte(index, 7 * fmt.RECORD_SIZE + DIGEST_FIELD + 2)  # the value's digest: the key is intact
    with open(index, "ab") as fh:  # a torn tail, as a writer still writing leaves it: not damage
        fh.write(b"LPK1" + b"\0" * 60)
    store = PackedStore(directory)
    _values, found = store.get_many(keys)
    assert found.tolist() == [i not in (3, 7) for i in range(20)]  # readers skip both records
    assert store.repairs == {}
    assert maint.verify_keys(PackedStore(directory)) == (18, 2, 2)  # was (18, 0, 0): "all fine"

    PackedStore(directory).put_many([keys[3], keys[7]], [value_of(3), value_of(7)])  # a run remakes them
    assert maint.verify_keys(PackedStore(directory)) == (20, 2, 0)  # replaced: waiting for compaction

    maint.compact(PackedStore(directory))
    assert damaged_left(directory) == 0
    assert maint.verify_keys(PackedStore(directory)) == (20, 0, 0)
    values, found = PackedStore(directory).get_many(keys)
    assert found.all() and all((values[i] == value_of(i)).all() for i in range(20))


def test_cache_verify_reports_a_damaged_index_and_repair_removes_it(tmp_path, monkeypatch):
    from ldmprobe.store.packed_cache import VerifiedStore

    cache = tmp_path / "cache"
    monkeypatch.setenv("LDMPROBE_CACHE", str(cache))
    store = VerifiedStore("text/0123456789abcdef0123", "text embeddings", root=cache)
    store.put_many([key_of(i) for i in range(6)], [value_of(i) for i in range(6)])
    store.close()
    index = next(cache.glob("text/*/packed/*.idx"))
    flip_byte(index, 2 * fmt.RECORD_SIZE + KEY_FIELD + 10)

    result = CliRunner().invoke(main, ["cache", "verify", "--format", "json"])
    assert result.exit_code == 1, result.output
    bad = json.loads(result.stdout)["bad"]
    assert [(row["kind"], row["reason"]) for row in bad] == [("text embeddings", "1 packed value(s) fail their checksum or their index record is damaged")]

    result = CliRunner().invoke(main, ["cache", "verify", "--repair", "--format", "json"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["cache", "verify", "--format", "json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["ok"], result.output
    assert damaged_left(index.parent) == 0
