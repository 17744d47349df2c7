"""Upkeep of a packed store: the per-file cache it replaces, compaction, a full audit."""

from __future__ import annotations

import os
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ldmprobe.store import packed_format as fmt
from ldmprobe.store.cleanup import pid_alive
from ldmprobe.store.files import atomic_write_bytes
from ldmprobe.store.packed_legacy import load_legacy
from ldmprobe.store.packed_store import LEGACY_MARKER, PackedStore

# ---------------------------------------------------------------------------- legacy cache


def migrate_legacy(store: PackedStore, legacy_dir: Path | None = None, batch: int = 4096) -> int:
    """Import a whole per-file namespace once (keys already packed are skipped); the count.

    Afterwards ``PackedStore.for_namespace`` no longer reads the per-file cache through; the
    ``.npy`` files are left for the user to delete (or for older versions of ldmprobe).
    """
    legacy_dir = Path(legacy_dir or store.legacy_dir)
    keys = sorted(p.name[:-4] for p in legacy_dir.glob("??/*.npy") if not p.name.startswith("."))
    keys = [k for k, have in zip(keys, store.has_many(keys) if keys else []) if not have]
    saved_dir, store.legacy_dir = store.legacy_dir, legacy_dir
    imported = 0
    try:
        for start in range(0, len(keys), batch):
            chunk = [(k, load_legacy(store, k)) for k in keys[start: start + batch]]
            chunk = [(k, v) for k, v in chunk if v is not None]
            if chunk:
                store.put_many([k for k, _ in chunk], [v for _, v in chunk])
                imported += len(chunk)
    finally:
        store.legacy_dir = saved_dir
    atomic_write_bytes(store.directory / LEGACY_MARKER, f"{imported}\n".encode())
    return imported


# ---------------------------------------------------------------------------- compaction


@dataclass
class CompactReport:
    files_merged: int = 0
    values_kept: int = 0
    values_dropped: int = 0  # failed their check, or a duplicate of a kept value
    bytes_before: int = 0
    bytes_after: int = 0
    leftovers_removed: list[str] = field(default_factory=list)


def retired(store: PackedStore, stem: str, stale_after: float, now: float) -> bool:
    """Whether no writer can still append to ``stem`` (so its files may be merged and removed).

    Sealed (closed cleanly, or a compaction's output); on this host, its process is gone; on
    another host (whose processes cannot be seen), unchanged for ``stale_after`` seconds.
    """
    if stem in fmt.OPEN_STEMS:
        return False
    info = store._files.get(stem)
    if info is not None and info.sealed:
        return True
    parsed = fmt.parse_stem(stem)
    if parsed is None:
        return False
    pid, host = parsed
    if host == fmt.host_name():
        return pid != os.getpid() and not pid_alive(pid) or pid == os.getpid()
    try:
        mtime = (store.directory / (stem + fmt.INDEX_SUFFIX)).stat().st_mtime
    except FileNotFoundError:
        return False
    return now - mtime > stale_after


def compact(store: PackedStore, stale_after: float = 24 * 3600) -> CompactReport:
    """Merge every retired shard and index file into one pair, atomically; drop bad values.

    Safe with concurrent readers (the merged pair is published before the old files go; a
    reader whose shard vanished refreshes and finds the value in the merged pair) and with
    live writers (their files are not touched). Two compactions at once waste work, lose none.
    """
    store._writer.close()
    store.refresh(force=True)
    now = time.time()
    report = CompactReport()
    stems = [s for s in store._stems if retired(store, s, stale_after, now)]
    report.leftovers_removed = _remove_leftovers(store, stale_after, now)
    if len(stems) < 2 and not _has_waste(store, stems):
        return report
    new_stem = fmt.new_stem("c")
    report.bytes_before = sum(_size(store.directory / (s + suf)) for s in stems
                              for suf in (fmt.SHARD_SUFFIX, fmt.INDEX_SUFFIX))
    recs = _write_merged_shard(store, stems, new_stem, report)
    index = fmt.seal_records(recs).tobytes() + fmt.seal_record().tobytes()
    atomic_write_bytes(store.directory / (new_stem + fmt.INDEX_SUFFIX), index)
    for suffix in (fmt.INDEX_SUFFIX, fmt.SHARD_SUFFIX):  # indexes first: no record outlives its shard
        for stem in stems:
            (store.directory / (stem + suffix)).unlink(missing_ok=True)
    report.files_merged = len(stems)
    report.bytes_after = _size(store.directory / (new_stem + fmt.SHARD_SUFFIX)) + len(index)
    store.refresh(force=True)
    return report


def _has_waste(store: PackedStore, stems: list[str]) -> bool:
    """A lone retired file still worth rewriting: duplicates, values known to be bad, or damaged
    index records."""
    if not stems:
        return False
    mask = np.isin(store._src, [store._stems.index(s) for s in stems])
    return (bool(store._badmask[mask].any()) or len(np.unique(store._recs["key"][mask])) < int(mask.sum())
            or any(stem in stems for stem, _rec in _damaged_index_records(store)))


def _write_merged_shard(store: PackedStore, stems: list[str], new_stem: str, report) -> np.ndarray:
    """Copy one good value per key of the retired files into a new shard; its records."""
    src_ids = {store._stems.index(s) for s in stems}
    order = [i for i in range(len(store._recs)) if int(store._src[i]) in src_ids]
    fd, tmp = tempfile.mkstemp(dir=store.directory, prefix=f".{new_stem}.", suffix=".tmp")
    kept, done, offset = [], set(), 0
    try:
        with os.fdopen(fd, "wb") as fh:
            for i in reversed(order):  # newest first: the value a reader would prefer
                rec = store._recs[i]
                key = bytes(rec["key"])
                if key in done:
                    report.values_dropped += 1
                    continue
                data = _checked_bytes(store, i, strong=True)
                if data is None:
                    report.values_dropped += 1
                    continue
                new = rec.copy()
                new["offset"] = offset
                pad = (-len(data)) % fmt.ALIGN
                fh.write(data + b"\0" * pad)
                offset += len(data) + pad
                kept.append(new)
                done.add(key)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, fmt_mode())
        os.replace(tmp, store.directory / (new_stem + fmt.SHARD_SUFFIX))
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    report.values_kept = len(kept)
    recs = np.array(kept[::-1], fmt.RECORD) if kept else np.zeros(0, fmt.RECORD)
    return recs


def fmt_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _checked_bytes(store: PackedStore, record: int, strong: bool) -> bytes | None:
    """A record's value bytes when its crc32 (and, if ``strong``, blake2b digest) match."""
    rec = store._recs[record]
    stem = store._stems[store._src[record]]
    off, n = int(rec["offset"]), int(rec["nbytes"])
    view = store._view(stem, off + n)
    if view is None or off + n > len(view):
        store._mark_bad(bytes(rec["key"]), record, "missing shard bytes")
        return None
    data = bytes(view[off: off + n])
    if zlib.crc32(data) != int(rec["crc"]) or (strong and not fmt.digest_matches(data, rec["digest"])):
        store._mark_bad(bytes(rec["key"]), record, "checksum mismatch")
        return None
    return data


def verify(store: PackedStore) -> tuple[int, int]:
    """Check every value's crc32 and blake2b digest (an audit, not the warm path): (good, bad)."""
    return verify_keys(store)[:2]


def verify_keys(store: PackedStore) -> tuple[int, int, int]:
    """``verify``, and how many keys have no good value at all: the damage a read would meet. A
    bad value whose key also has a good one (a sweep appended a repaired copy) is only waiting
    for compaction; reads skip it. Damaged index records (:func:`~packed_format.damaged_records`)
    count as bad values, lost unless a good value has their key (when it is still readable) or their
    checksums (the flip hit another field; a value is remade bit-identical)."""
    store.refresh(force=True)
    n = len(store._recs)
    ok = np.fromiter((_checked_bytes(store, i, strong=True) is not None for i in range(n)), bool, n)
    keys = store._recs["key"]
    good = set(keys[ok].tolist())
    lost: set = set(keys[~ok].tolist()) - good
    good_sums = set(zip(store._recs["crc"][ok].tolist(), store._recs["digest"][ok].tolist()))
    damaged = _damaged_index_records(store)
    for i, (stem, rec) in enumerate(damaged):
        key = fmt.readable_key(rec)
        if key not in good and (int(rec["crc"]), bytes(rec["digest"])) not in good_sums:
            lost.add(key if key is not None else (stem, i))
    return int(ok.sum()), int(n - ok.sum()) + len(damaged), len(lost)


def _damaged_index_records(store: PackedStore) -> list[tuple[str, np.void]]:
    """(stem, record) of every damaged record in the store's index files."""
    found = []
    for stem in store._stems:
        try:
            data = (store.directory / (stem + fmt.INDEX_SUFFIX)).read_bytes()
        except FileNotFoundError:  # compacted away meanwhile: its records are in the new file
            continue
        found += [(stem, rec) for rec in fmt.damaged_records(data)]
    return found


def _remove_leftovers(store: PackedStore, stale_after: float, now: float) -> list[str]:
    """Temp files older than an hour, and shards whose index is gone and writer retired."""
    removed = []
    indexed = set(store._stems)
    for entry in os.scandir(store.directory):
        name = entry.name
        try:
            old = now - entry.stat().st_mtime > min(stale_after, 3600)
        except FileNotFoundError:
            continue
        orphan = (name.endswith(fmt.SHARD_SUFFIX) and name[: -len(fmt.SHARD_SUFFIX)] not in indexed
                  and not (store.directory / (name[: -len(fmt.SHARD_SUFFIX)] + fmt.INDEX_SUFFIX)).exists()
                  and retired(store, name[: -len(fmt.SHARD_SUFFIX)], stale_after, now))
        if (name.startswith(".") and name.endswith(".tmp") and old) or orphan:
            Path(entry.path).unlink(missing_ok=True)
            removed.append(name)
    return removed


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


#: A namespace with this many shard files is compacted at the end of a sweep: each run and each
#: rank leaves its own pair, and a warm read opens every shard once.
COMPACT_AT_SHARDS = 64
KINDS = ("embeddings", "text", "conditioning")


def compact_crowded(root: Path, at_shards: int = COMPACT_AT_SHARDS) -> list[tuple[Path, CompactReport]]:
    """Compact every packed namespace under ``root`` holding ``at_shards`` shard files or more.

    Counting is one directory listing per namespace; only a crowded one is opened. Live writers'
    files are left alone (see :func:`compact`), so this is safe while other sweeps run.
    """
    done = []
    for kind in KINDS:
        for packed in sorted(Path(root, kind).glob("*/packed")):
            try:
                shards = sum(1 for name in os.listdir(packed) if name.endswith(fmt.SHARD_SUFFIX))
            except OSError:
                continue
            if shards < at_shards:
                continue
            with PackedStore(packed) as store:
                report = compact(store)
            if report.files_merged:
                done.append((packed, report))
    return done
