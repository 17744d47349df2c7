"""The packed embedding store: round trips, concurrent and killed writers, corruption, migration."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import time

import numpy as np
import pytest

from ldmprobe.store import packed_format as fmt
from ldmprobe.store import packed_maint as maint
from ldmprobe.store.packed_store import PackedStore

DIM = 32
_CTX = multiprocessing.get_context("fork") if hasattr(os, "fork") else multiprocessing.get_context()


def key_of(i: int, tag: str = "") -> str:
    return hashlib.sha256(f"{tag}{i}".encode()).hexdigest()


def value_of(key: str, dim: int = DIM) -> np.ndarray:
    """A value determined by its key, so any reader can check it."""
    seed = int(key[:8], 16)
    return np.random.default_rng(seed).standard_normal(dim).astype(np.float32)


def check_all(store: PackedStore, keys: list[str]) -> np.ndarray:
    values, found = store.get_many(keys)
    for j in np.flatnonzero(found):
        np.testing.assert_array_equal(values[j], value_of(keys[j]))
    return found


def _writer(directory, tag: str, count: int, batch: int) -> None:
    store = PackedStore(directory)
    for start in range(0, count, batch):
        keys = [key_of(i, tag) for i in range(start, min(start + batch, count))]
        store.put_many(keys, [value_of(k) for k in keys])
    store.close()


def _endless_writer(directory, tag: str) -> None:
    store = PackedStore(directory)
    i = 0
    while True:
        keys = [key_of(j, tag) for j in range(i, i + 7)]
        store.put_many(keys, np.stack([value_of(k) for k in keys]))
        i += 7


def _shard_and_index(directory):
    idx = sorted(directory.glob("*.idx"))
    return [p.with_suffix(".bin") for p in idx], idx


# --------------------------------------------------------------------------- round trip


def test_round_trip_keeps_values_dtypes_and_shapes(tmp_path):
    store = PackedStore(tmp_path / "s")
    keys = [key_of(i) for i in range(3000)]
    values = np.stack([value_of(k) for k in keys])
    store.put_many(keys[:1000], values[:1000])  # a stacked array's rows
    for start in range(1000, 3000, 250):  # lists of arrays, many appends
        store.put_many(keys[start:start + 250], list(values[start:start + 250]))
    store.put("half", np.arange(6, dtype=np.float16).reshape(2, 3))
    store.put("double", np.linspace(0, 1, 77 * 4).reshape(77, 4))
    store.close()

    reader = PackedStore(tmp_path / "s")
    got, found = reader.get_many(keys + ["absent"])
    assert found[:-1].all() and not found[-1]
    assert got.dtype == np.float32 and got.shape == (3001, DIM)
    np.testing.assert_array_equal(got[:-1], values)
    assert not got[-1].any()
    half, double = reader.get("half"), reader.get("double")
    assert half.dtype == np.float16 and half.shape == (2, 3)
    np.testing.assert_array_equal(half, np.arange(6, dtype=np.float16).reshape(2, 3))
    assert double.dtype == np.float64 and double.shape == (77, 4)
    assert reader.get("absent") is None
    assert len(reader) == 3002 and reader.has_many(["half", "absent"]).tolist() == [True, False]
    assert reader.get_many(keys[:3], dtype=np.float16)[0].dtype == np.float16
    with pytest.raises(ValueError, match="shapes"):
        reader.get_many(["half", "double"])
    with pytest.raises(ValueError, match="keys"):
        reader.put("not a hex key!", np.zeros(2))
    assert reader.repairs == {}


def test_a_reader_sees_values_written_after_it_opened(tmp_path):
    reader = PackedStore(tmp_path / "s")
    assert reader.get_many([key_of(1)])[1].tolist() == [False]
    writer = PackedStore(tmp_path / "s")
    writer.put(key_of(1), value_of(key_of(1)))
    assert check_all(reader, [key_of(1)]).all()


# --------------------------------------------------------------------------- concurrency


@pytest.mark.slow
def test_two_concurrent_writer_processes_lose_nothing(tmp_path):
    directory = tmp_path / "s"
    procs = [_CTX.Process(target=_writer, args=(directory, tag, 1500, 25)) for tag in ("a", "b")]
    for p in procs:
        p.start()
    reader = PackedStore(directory)
    while any(p.is_alive() for p in procs):  # reading while they write sees only good values
        check_all(reader, [key_of(i, "a") for i in range(0, 1500, 37)])
        time.sleep(0.01)
    for p in procs:
        p.join()
        assert p.exitcode == 0
    keys = [key_of(i, tag) for tag in ("a", "b") for i in range(1500)]
    assert check_all(PackedStore(directory), keys).all()
    assert reader.repairs == {}


@pytest.mark.slow
def test_killed_writers_leave_only_correct_values(tmp_path):
    directory = tmp_path / "s"
    rng = np.random.default_rng(0)
    for round_ in range(6):
        proc = _CTX.Process(target=_endless_writer, args=(directory, f"k{round_}"))
        proc.start()
        time.sleep(0.05 + rng.random() * 0.15)
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
    # A kill between a value's bytes and its record leaves orphan bytes; one mid-record leaves
    # a torn tail. Make both certain on top of whatever the kills left.
    shards, indexes = _shard_and_index(directory)
    with open(shards[0], "ab") as fh:
        fh.write(os.urandom(100))
    with open(indexes[0], "ab") as fh:
        fh.write(os.urandom(fmt.RECORD_SIZE // 2))
    store = PackedStore(directory)
    keys = store.keys()
    assert len(keys) > 6 * 7 and check_all(store, keys).all()  # every indexed value is correct
    assert store.repairs == {}
    present = set(keys)
    for r in range(6):  # and each writer's values are a prefix of what it wrote: no holes
        count = sum(key_of(i, f"k{r}") in present for i in range(len(keys) + 1))
        assert store.has_many([key_of(i, f"k{r}") for i in range(count)]).all()
    # A new writer after the kills appends normally, and compaction keeps every value.
    store.put_many(keys[:5], [value_of(k) for k in keys[:5]])
    report = maint.compact(store)
    assert report.files_merged == 7 and report.values_kept == len(keys)
    found = np.ones(len(keys), bool)
    assert (check_all(PackedStore(directory), keys) == found).all()


# --------------------------------------------------------------------------- corruption


def test_a_flipped_byte_is_a_reported_miss_and_the_remade_value_is_used(tmp_path):
    directory = tmp_path / "s"
    keys = [key_of(i) for i in range(200)]
    PackedStore(directory).put_many(keys, [value_of(k) for k in keys])
    shard = _shard_and_index(directory)[0][0]
    data = bytearray(shard.read_bytes())
    data[57 * DIM * 4 + 5] ^= 0x10  # inside the 58th value
    shard.write_bytes(bytes(data))

    reports = []
    store = PackedStore(directory, on_repair=lambda key, reason: reports.append((key, reason)))
    found = check_all(store, keys)
    assert found.sum() == 199 and not found[57]
    assert reports == [(keys[57], "checksum mismatch")] and store.repairs["checksum mismatch"] == 1
    assert maint.verify(PackedStore(directory)) == (199, 1)

    store.put(keys[57], value_of(keys[57]))  # the caller remakes it
    assert check_all(store, keys).all()
    assert check_all(PackedStore(directory), keys).all()  # a fresh reader skips the bad copy
    report = maint.compact(store)
    assert report.values_kept == 200 and report.values_dropped == 1
    assert maint.verify(PackedStore(directory)) == (200, 0)


def test_a_truncated_or_garbled_index_tail_is_ignored(tmp_path):
    directory = tmp_path / "s"
    keys = [key_of(i) for i in range(50)]
    PackedStore(directory, durable=False).put_many(keys, [value_of(k) for k in keys])
    index = _shard_and_index(directory)[1][0]
    size = index.stat().st_size
    with open(index, "r+b") as fh:
        fh.truncate(size - fmt.RECORD_SIZE - 70)  # the seal, and half of the last record
    store = PackedStore(directory)
    found = check_all(store, keys)
    assert found[:49].all() and not found[49]
    with open(index, "r+b") as fh:  # a record whose own checksum fails is skipped too
        fh.seek(3 * fmt.RECORD_SIZE + 80)
        fh.write(b"\xff")
    found = check_all(PackedStore(directory), keys)
    assert found.sum() == 48 and not found[3]
    assert store.repairs == {}


def test_a_truncated_shard_is_a_miss(tmp_path):
    directory = tmp_path / "s"
    keys = [key_of(i) for i in range(10)]
    PackedStore(directory).put_many(keys, [value_of(k) for k in keys])
    shard = _shard_and_index(directory)[0][0]
    with open(shard, "r+b") as fh:
        fh.truncate(9 * DIM * 4 + 3)
    store = PackedStore(directory)
    found = check_all(store, keys)
    assert found[:9].all() and not found[9]
    assert store.repairs["missing shard bytes"] == 1


# --------------------------------------------------------------------------- migration


def test_an_existing_per_file_cache_is_read_through_and_migrated(tmp_path):
    from ldmprobe.store.array_store import ArrayStore

    old = ArrayStore("embeddings/abc", root=tmp_path)
    keys = [key_of(i) for i in range(40)]
    for k in keys:
        old.save(k, value_of(k))
    old.path(keys[39]).write_bytes(b"\x93NUMPY garbage")

    reports = []
    store = PackedStore.for_namespace("embeddings/abc", root=tmp_path,
                                      on_repair=lambda k, r: reports.append(r))
    found = check_all(store, keys[:10])
    assert found.all()
    assert PackedStore(store.directory).has_many(keys[:10]).all()  # imported on read

    assert maint.migrate_legacy(store) == 29
    assert reports == ["unreadable legacy file"] and not old.has(keys[39])
    fresh = PackedStore.for_namespace("embeddings/abc", root=tmp_path)
    assert fresh.legacy_dir is None
    assert check_all(fresh, keys).tolist() == [True] * 39 + [False]


# --------------------------------------------------------------------------- compaction


@pytest.mark.slow
def test_compaction_keeps_everything_and_open_readers_keep_reading(tmp_path):
    directory = tmp_path / "s"
    keys = [key_of(i) for i in range(600)]
    for start in range(0, 600, 100):  # six writers, closed (sealed)
        with PackedStore(directory) as s:
            s.put_many(keys[start:start + 100], [value_of(k) for k in keys[start:start + 100]])
    proc = _CTX.Process(target=_writer, args=(directory, "dead", 50, 10))
    proc.start()
    proc.join()
    keys += [key_of(i, "dead") for i in range(50)]
    live = PackedStore(directory)
    live.put(key_of(0, "live"), value_of(key_of(0, "live")))  # a live writer: left alone
    keys.append(key_of(0, "live"))

    early = PackedStore(directory)
    early.refresh()  # holds the old index, maps no shard yet
    tmp = directory / ".leftover.tmp"
    tmp.write_bytes(b"x")
    os.utime(tmp, (time.time() - 7200,) * 2)

    report = maint.compact(PackedStore(directory))
    assert report.files_merged == 7 and report.values_kept == 650
    assert report.leftovers_removed == [".leftover.tmp"]
    assert len(list(directory.glob("*.idx"))) == 2  # the merged file and the live writer's
    assert check_all(early, keys).all() and early.repairs == {}
    assert check_all(PackedStore(directory), keys).all()
    live.put(key_of(1, "live"), value_of(key_of(1, "live")))
    assert check_all(PackedStore(directory), [key_of(1, "live")]).all()
    assert maint.compact(PackedStore(directory)).files_merged == 0  # nothing more to merge


def test_another_hosts_unsealed_files_are_merged_only_once_stale(tmp_path):
    directory = tmp_path / "s"
    keys = [key_of(i) for i in range(20)]
    PackedStore(directory).put_many(keys, [value_of(k) for k in keys])
    shard, index = (p[0] for p in _shard_and_index(directory))
    with open(index, "r+b") as fh:  # unsealed, as a writer on another node still open
        fh.truncate(index.stat().st_size - fmt.RECORD_SIZE)
    stem = f"{time.time_ns():016x}-1-abcd-othernode"
    shard.rename(directory / (stem + ".bin"))
    index.rename(directory / (stem + ".idx"))
    for i in range(2):
        with PackedStore(directory) as ours:
            ours.put(key_of(i, "x"), value_of(key_of(i, "x")))
    assert maint.compact(PackedStore(directory), stale_after=3600).files_merged == 2  # ours only
    assert (directory / (stem + ".idx")).exists()
    old = time.time() - 7200
    os.utime(directory / (stem + ".idx"), (old, old))
    assert maint.compact(PackedStore(directory), stale_after=3600).files_merged == 2
    assert check_all(PackedStore(directory), keys + [key_of(0, "x"), key_of(1, "x")]).all()
    assert len(list(directory.glob("*.idx"))) == 1


def _put_from_child(store: PackedStore) -> None:
    store.put(key_of(0, "child"), value_of(key_of(0, "child")))


def test_a_forked_child_writes_its_own_files(tmp_path):
    store = PackedStore(tmp_path / "s")
    store.put(key_of(0), value_of(key_of(0)))
    proc = _CTX.Process(target=_put_from_child, args=(store,))
    proc.start()
    proc.join()
    store.put(key_of(1), value_of(key_of(1)))
    assert len(list((tmp_path / "s").glob("*.idx"))) == 2
    assert check_all(PackedStore(tmp_path / "s"), [key_of(0), key_of(1), key_of(0, "child")]).all()
